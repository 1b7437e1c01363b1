package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// call is one script invocation of a pipelined batch.
type call struct {
	sc   *goredis.Script
	keys []string
	args []any
	// ack: a buyer's or an admin's change (reserve, confirm, cancel,
	// seed), answered only once the replicas WithReplicatedAck asks for
	// have it.
	ack bool
	// merge: calls of this script on the same keys may run as one call,
	// their arguments in turn, answering the list of their replies
	// (reserve.lua); the coalescer does so for calls it sends together.
	merge bool
}

// ackPolicy is WithReplicatedAck's: how many replicas must have a change
// before it is answered, and how long to wait for them.
type ackPolicy struct {
	replicas int // 0: the primary's answer is enough
	timeout  time.Duration
}

type result struct {
	val any
	err error
}

// Result returns the reply of a single script call as Cmd.Result would.
func (r result) Result() (any, error) { return r.val, r.err }

// runMany runs sc once per call: in one pipeline of its own when there are
// several, through the coalescer (shared with other requests) when there is
// one.
func (s *Store) runMany(ctx context.Context, sc *goredis.Script, calls []call) []result {
	for i := range calls {
		calls[i].sc = sc
	}
	if len(calls) == 1 {
		return []result{s.run(ctx, calls[0])}
	}
	out := pipelined(ctx, s.client, calls, s.ack)
	for i, c := range calls {
		s.noteCall(c, out[i])
	}
	return out
}

// run executes one script call and hints the indexes of what it changed.
func (s *Store) run(ctx context.Context, c call) result {
	res := s.runOne(ctx, c)
	s.noteCall(c, res)
	return res
}

func (s *Store) runOne(ctx context.Context, c call) result {
	if s.shards != nil {
		return s.shards.of(ctx, c).run(ctx, c)
	}
	if s.co != nil {
		return s.co.run(ctx, c)
	}
	if c.ack && s.ack.replicas > 0 {
		// WAIT must follow the script on its connection: a pipeline of one.
		return pipelined(ctx, s.client, []call{c}, s.ack)[0]
	}
	// Run does EVALSHA, then EVAL on NOSCRIPT.
	v, err := c.sc.Run(ctx, s.client, c.keys, c.args...).Result()
	return result{v, err}
}

// pipelined sends EVALSHA for every call in one pipeline and resends those
// that met an empty script cache (SCRIPT FLUSH, failover) as EVAL, like
// Script.Run does for a single call.
//
// With ack, a pipeline that carries a change ends with one WAIT on the same
// connection, so one WAIT covers every change before it; when fewer
// replicas than asked confirm in time, each change of the pipeline answers
// ErrUnavailable: it ran on the primary but may not survive a failover, and
// a retry (the same reservation id or Idempotency-Key) finds it and answers
// it once it is replicated.
func pipelined(ctx context.Context, client goredis.UniversalClient, calls []call, ack ackPolicy) []result {
	if cc, ok := client.(*goredis.ClusterClient); ok && ack.replicas > 0 && anyAck(calls) {
		return pipelinedOnMasters(ctx, cc, calls, ack)
	}
	return pipelinedOn(ctx, client, calls, ack)
}

func anyAck(calls []call) bool {
	for _, c := range calls {
		if c.ack {
			return true
		}
	}
	return false
}

// pipelinedOnMasters is pipelined on a Redis Cluster when changes must be
// replicated. WAIT names no key, so in a cluster pipeline go-redis would
// send it to any node, where it covers nothing the scripts wrote; and it
// counts the writes of its own connection only. So each master's calls go
// in a pipeline of their own on that master's connection, ending with its
// WAIT: one WAIT per shard. That connection follows no redirect: a call
// answered MOVED or ASK (a slot moved or moving; the script did not run)
// is sent again once the slot map is reloaded, to whichever master then
// serves it, for about a second at most, like a TRYAGAIN.
func pipelinedOnMasters(ctx context.Context, cc *goredis.ClusterClient, calls []call, ack ackPolicy) []result {
	out := make([]result, len(calls))
	send := func(idx []int) {
		byMaster := map[*goredis.Client][]int{}
		for _, i := range idx {
			if len(calls[i].keys) == 0 {
				out[i].err = errors.New("redisstore: a script call without keys has no master")
				continue
			}
			node, err := cc.MasterForKey(ctx, calls[i].keys[0])
			if err != nil {
				out[i].err = err
				continue
			}
			byMaster[node] = append(byMaster[node], i)
		}
		var wg sync.WaitGroup
		for node, group := range byMaster {
			wg.Go(func() {
				batch := make([]call, len(group))
				for j, i := range group {
					batch[j] = calls[i]
				}
				for j, r := range pipelinedOn(ctx, node, batch, ack) {
					out[group[j]] = r // each group its own indexes
				}
			})
		}
		wg.Wait()
		for _, i := range idx {
			if nodeLost(out[i].err) || redirected(out[i].err) {
				// A node's own client tells the cluster client nothing.
				cc.ReloadState(ctx)
				break
			}
		}
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	send(all)
	retryWhile(ctx, out, redirected, send)
	return out
}

// redirected reports a reply that names another node for the slot: the
// script did not run.
func redirected(err error) bool {
	return goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK")
}

// pipelinedOn is pipelined on one client: a node, a Sentinel's primary, or
// a cluster client when no change waits for replicas.
func pipelinedOn(ctx context.Context, client goredis.UniversalClient, calls []call, ack ackPolicy) []result {
	out := make([]result, len(calls))
	send := func(pending []int, eval bool) {
		pipe := client.Pipeline()
		cmds := make([]*goredis.Cmd, len(pending))
		needAck := false
		for j, i := range pending {
			c := calls[i]
			if eval {
				cmds[j] = c.sc.Eval(ctx, pipe, c.keys, c.args...)
			} else {
				cmds[j] = c.sc.EvalSha(ctx, pipe, c.keys, c.args...)
			}
			needAck = needAck || c.ack
		}
		var wait *goredis.IntCmd
		if needAck && ack.replicas > 0 {
			wait = goredis.NewIntCmd(ctx, "wait", ack.replicas, ack.timeout.Milliseconds())
			_ = pipe.Process(ctx, wait)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		for j, i := range pending {
			out[i].val, out[i].err = cmds[j].Result()
		}
		if wait == nil {
			return
		}
		if n, err := wait.Result(); err != nil || n < int64(ack.replicas) {
			why := fmt.Errorf("%w: the change ran on the Redis primary, but %d of %d replicas confirmed it within %v (%v); "+
				"retry with the same Idempotency-Key", reservation.ErrUnavailable, n, ack.replicas, ack.timeout, err)
			for _, i := range pending {
				if calls[i].ack && out[i].err == nil {
					out[i].val, out[i].err = nil, why
				}
			}
		}
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	send(all, false)
	var noscript []int
	for i, r := range out {
		if goredis.HasErrorPrefix(r.err, "NOSCRIPT") {
			noscript = append(noscript, i)
		}
	}
	if len(noscript) > 0 {
		send(noscript, true)
	}
	retryWhile(ctx, out, tryAgain, func(again []int) { send(again, true) })
	return out
}

// tryAgainBackoff is the pause before each resend of calls that met
// TRYAGAIN: about one second in all.
var tryAgainBackoff = []time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
	80 * time.Millisecond, 160 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
}

// retryWhile resends the calls of out whose error retryable says did not
// run the script, after a pause, until none is left or tryAgainBackoff runs
// out. With tryAgain: TRYAGAIN (or ASK). On a Redis Cluster
// a script whose slot is migrating answers TRYAGAIN while its keys are
// split between the two nodes or some of them do not exist (an item without
// idempotency keys yet), that is until the migration of the slot ends,
// milliseconds later. go-redis retries it for a lone command but not in a
// pipeline, where it would reach the buyer as a 503; and when a TRYAGAIN
// leads its node's batch, go-redis sends the batch back to the slot's old
// owner, whose ASK is what is left once its redirects run out. Neither ran
// the script: resending is safe. resend sends EVAL, as the other node may
// not have the script cached.
func retryWhile(ctx context.Context, out []result, retryable func(error) bool, resend func(again []int)) {
	for _, pause := range tryAgainBackoff {
		var again []int
		for i, r := range out {
			if retryable(r.err) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		resend(again)
	}
}

// tryAgain reports a reply of a migrating slot that did not run the
// script (see retryWhile).
func tryAgain(err error) bool {
	return goredis.HasErrorPrefix(err, "TRYAGAIN") || goredis.HasErrorPrefix(err, "ASK")
}

// runSettled is runMany for scripts that may answer "more_due" (reserve,
// seed): the answer would have rested on more due holds than one call
// settles, so the call goes again, each round settling another settleLimit
// of them, until the answer stands or maxSettleRounds is reached.
func (s *Store) runSettled(ctx context.Context, sc *goredis.Script, calls []call) []result {
	out := s.runMany(ctx, sc, calls)
	for round := 1; round <= maxSettleRounds; round++ {
		var again []int
		for i, res := range out {
			if moreDue(res) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		batch := make([]call, len(again))
		for j, i := range again {
			batch[j] = calls[i]
		}
		for j, res := range s.runMany(ctx, sc, batch) {
			out[again[j]] = res
		}
	}
	return out
}

// runSettledOne is runSettled for a single call, without its slices: the
// path of every reserve.
func (s *Store) runSettledOne(ctx context.Context, sc *goredis.Script, c call) result {
	c.sc = sc
	res := s.run(ctx, c)
	for round := 1; round <= maxSettleRounds && moreDue(res); round++ {
		res = s.run(ctx, c)
	}
	return res
}

// moreDue reports whether res is a "more_due": the call must go again.
func moreDue(res result) bool {
	rep, err := reply(res.val, res.err)
	return err == nil && rep.code() == "more_due"
}

// scriptReply is a script's answer: an explicit code first, then values.
type scriptReply []any

// reply turns a script's raw answer into a scriptReply, or its error into
// one of reservation's.
func reply(v any, err error) (scriptReply, error) {
	if err != nil {
		return nil, translate(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, fmt.Errorf("unexpected script reply %v", v)
	}
	return scriptReply(arr), nil
}

func (r scriptReply) code() string { return r.str(0) }

func (r scriptReply) str(i int) string {
	if i >= len(r) {
		return ""
	}
	switch v := r[i].(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}

// int reads field i; Lua numbers arrive as integers, hash fields as strings.
// A missing or empty field reads as 0.
func (r scriptReply) int(i int) int64 {
	if i < len(r) {
		if v, ok := r[i].(int64); ok {
			return v
		}
	}
	n, _ := strconv.ParseInt(r.str(i), 10, 64)
	return n
}

// millis reads field i as a time in Unix milliseconds; missing or empty is
// the zero time. (An integer is read as it is: formatting it only to see it
// was not empty cost three allocations per hold.)
func (r scriptReply) millis(i int) time.Time {
	if i >= len(r) {
		return time.Time{}
	}
	switch v := r[i].(type) {
	case int64:
		return time.UnixMilli(v).UTC()
	case string:
		if v == "" {
			return time.Time{}
		}
		return time.UnixMilli(r.int(i)).UTC()
	}
	return time.Time{}
}

func (r scriptReply) unexpected(op string) error {
	return fmt.Errorf("redisstore: %s: unexpected script reply %v", op, []any(r))
}

// translate maps a go-redis error to reservation.ErrUnavailable when Redis
// could not serve the call (down, unreachable, loading, out of memory, a
// cluster without quorum). Anything else, such as a script error, is a bug
// and stays as it is.
func translate(err error) error {
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, goredis.ErrClosed), errors.Is(err, goredis.ErrPoolTimeout):
		return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
	}
	// ASK and MOVED: redirects left over when go-redis ran out of them, a
	// cluster whose slots are still moving.
	for _, prefix := range []string{"LOADING", "BUSY", "OOM", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "NOREPLICAS", "ASK", "MOVED"} {
		if goredis.HasErrorPrefix(err, prefix) {
			return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
		}
	}
	if strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
	}
	return err
}
