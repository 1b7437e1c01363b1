package redisstore

import (
	"context"
	"fmt"
	"slices"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// coalescer sends the script calls of concurrent requests to Redis in shared
// pipelines. A call on its own costs Redis (and this process) one read and
// one write system call; in a pipeline of thirty they share them, which is
// most of the difference between about 55k and 88k script runs a second on
// one Redis core. Each call stays its own script, so atomicity is unchanged.
//
// There is no background goroutine: the first caller that finds a free
// pipeline slot sends whatever is queued, and when its pipeline comes back it
// hands the slot to the oldest waiting caller, who sends the next batch. A
// lone caller therefore pays no wait, and under load batches grow to match
// Redis's round trip by themselves.
//
// go-redis's AutoPipeline (v9.23, experimental) batches as well, and as fast
// (BenchmarkReservePipelining: the two tie, both about twice the reserves a
// second of no pipelining). It is not used because its queued commands no
// longer heed the caller's context, where a caller here leaves the queue when
// its request ends, and because its pipelines would not get reply.go's
// resends of TRYAGAIN and ASK during a cluster slot migration.
type coalescer struct {
	client   goredis.UniversalClient
	slots    int // pipelines in flight at most
	maxBatch int
	ack      ackPolicy // set by the store once its options are applied

	mu       sync.Mutex
	inflight int
	queue    []*job
	jobs     sync.Pool
}

// job is one caller's call waiting in the queue.
type job struct {
	ctx   context.Context
	c     call
	res   result
	lead  bool          // woken to send the next batch rather than with a result
	ready chan struct{} // one signal per use: a result, or the lead
}

func newCoalescer(client goredis.UniversalClient, slots, maxBatch int) *coalescer {
	c := &coalescer{client: client, slots: slots, maxBatch: maxBatch}
	c.jobs.New = func() any { return &job{ready: make(chan struct{}, 1)} }
	return c
}

// run executes one script call, in a pipeline with whatever other calls are
// waiting.
func (c *coalescer) run(ctx context.Context, cl call) result {
	j := c.jobs.Get().(*job)
	j.ctx, j.c, j.res, j.lead = ctx, cl, result{}, false

	c.mu.Lock()
	if c.inflight < c.slots {
		c.inflight++
		c.mu.Unlock()
		c.send(j)
	} else {
		c.queue = append(c.queue, j)
		c.mu.Unlock()
		if !c.wait(j) {
			return c.release(j, result{err: ctx.Err()})
		}
	}
	return c.release(j, j.res)
}

// wait blocks until j has its result (true) or leaves the queue because its
// context ended first (false). A job already taken into a batch is waited
// for: its pipeline is bounded by the client's timeouts, and a caller that
// left could not be told the outcome of a call Redis may have run.
func (c *coalescer) wait(j *job) bool {
	select {
	case <-j.ready:
	case <-j.ctx.Done():
		c.mu.Lock()
		if i := slices.Index(c.queue, j); i >= 0 {
			c.queue = slices.Delete(c.queue, i, i+1)
			c.mu.Unlock()
			return false
		}
		c.mu.Unlock()
		<-j.ready
	}
	if j.lead {
		c.send(j)
	}
	return true
}

func (c *coalescer) release(j *job, res result) result {
	j.ctx, j.c, j.res = nil, call{}, result{}
	c.jobs.Put(j)
	return res
}

// send runs first and the queued jobs as one pipeline, delivers every result,
// then passes the pipeline slot on.
func (c *coalescer) send(first *job) {
	c.mu.Lock()
	n := min(len(c.queue), c.maxBatch-1)
	batch := make([]*job, 0, n+1)
	batch = append(append(batch, first), c.queue[:n]...)
	c.queue = slices.Delete(c.queue, 0, n)
	c.mu.Unlock()

	calls := make([]call, len(batch))
	for i, j := range batch {
		calls[i] = j.c
	}
	merged, members := merge(calls)
	// One caller's cancellation must not fail the others' calls; the client's
	// own read and write timeouts bound the pipeline.
	results := split(pipelined(context.WithoutCancel(first.ctx), c.client, merged, c.ack), members, len(calls))
	first.res = results[0]
	for i, j := range batch[1:] {
		j.res, j.lead = results[i+1], false
		j.ready <- struct{}{}
	}

	c.mu.Lock()
	if len(c.queue) == 0 {
		c.inflight--
		c.mu.Unlock()
		return
	}
	next := c.queue[0]
	c.queue = slices.Delete(c.queue, 0, 1)
	c.mu.Unlock()
	next.lead = true
	next.ready <- struct{}{}
}

// merge folds the calls that may run as one (call.merge: one script on the
// same keys) into one call each, their arguments in turn, so a batch of
// reserves of one bucket costs Redis one script's overhead, not one each.
// members lists, for every call to send, the indexes of the calls it
// carries.
func merge(calls []call) (out []call, members [][]int) {
	for i, c := range calls {
		g := -1
		if c.merge {
			g = slices.IndexFunc(out, func(o call) bool { return o.merge && o.sc == c.sc && slices.Equal(o.keys, c.keys) })
		}
		if g < 0 {
			out, members = append(out, c), append(members, []int{i})
			continue
		}
		if len(members[g]) == 1 {
			// The first call's arguments are its caller's: the merged call
			// gets its own.
			out[g].args = slices.Clip(slices.Clone(out[g].args))
		}
		out[g].args = append(out[g].args, c.args...)
		out[g].ack = out[g].ack || c.ack
		members[g] = append(members[g], i)
	}
	return out, members
}

// split hands each of n calls its own result from the results of the calls
// merge made: a merged call's error is every member's, and its reply the
// list of theirs.
func split(results []result, members [][]int, n int) []result {
	out := make([]result, n)
	for g, res := range results {
		m := members[g]
		if len(m) == 1 {
			out[m[0]] = res
			continue
		}
		replies, ok := res.val.([]any)
		if res.err == nil && (!ok || len(replies) != len(m)) {
			res.err = fmt.Errorf("redisstore: %d calls merged into one answered %v", len(m), res.val)
		}
		for k, i := range m {
			if res.err != nil {
				out[i] = result{err: res.err}
			} else {
				out[i] = result{val: replies[k]}
			}
		}
	}
	return out
}
