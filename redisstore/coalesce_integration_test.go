//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// These tests drive the coalescer against the real Redis (see
// internal/redistest), so they are built only with the integration tag.

// pipelineHook counts the pipelines a client sends and can hold them back,
// so a test can fill the coalescer's queue while its only slot is busy.
type pipelineHook struct {
	pipelines atomic.Int64
	cmds      atomic.Int64
	maxBatch  atomic.Int64
	hold      atomic.Bool   // hold script pipelines at gate
	held      atomic.Int64  // pipelines waiting at the gate
	gate      chan struct{} // closed to let every held pipeline go
}

// indexCall reports whether cmd is a call of the index script: its first
// key is an index shard's.
func indexCall(cmd goredis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 4 {
		return false
	}
	key, _ := args[3].(string)
	return strings.Contains(key, ":{idx-")
}

func (h *pipelineHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *pipelineHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return next
}

func (h *pipelineHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if indexCall(cmds[0]) {
			return next(ctx, cmds) // the store's index hints, sent beside the calls measured
		}
		// Only script pipelines: go-redis also pipelines a new connection's
		// handshake through the hook.
		if _, script := cmds[0].(*goredis.Cmd); script && h.hold.Load() {
			h.held.Add(1)
			<-h.gate
		}
		h.pipelines.Add(1)
		h.cmds.Add(int64(len(cmds)))
		for {
			m := h.maxBatch.Load()
			if int64(len(cmds)) <= m || h.maxBatch.CompareAndSwap(m, int64(len(cmds))) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

func newPipelinedStore(t *testing.T, slots, batch int, hook *pipelineHook) *redisstore.Store {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	st, err := redisstore.New(context.Background(), rdb, prefix, redisstore.WithPipelines(slots, batch))
	if err != nil {
		t.Fatal(err)
	}
	rdb.AddHook(hook) // after New: loading the scripts is not under test
	return st
}

// Every caller must get its own answer back, whatever batch it rode in,
// and the reserves a pipeline carries for one item share a script call.
func TestCoalescedCallsGetTheirOwnAnswers(t *testing.T) {
	tests := []struct {
		name         string
		slots, batch int
	}{
		{"one slot", 1, 128},
		{"small batches", 2, 3},
		{"default", redisstore.DefaultPipelines, redisstore.DefaultPipelineBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := &pipelineHook{}
			st := newPipelinedStore(t, tt.slots, tt.batch, hook)
			ctx := context.Background()
			if _, err := st.Seed(ctx, reservation.ItemSpec{SKU: "hot", Stock: 150, PerUserLimit: 1, Hold: time.Minute}); err != nil {
				t.Fatal(err)
			}
			const buyers = 200
			var wg sync.WaitGroup
			var created, soldOut atomic.Int64
			for i := range buyers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id, _ := reservation.NewID("hot")
					user := "u" + strconv.Itoa(i)
					r, replayed, err := st.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: "hot", UserID: user, Quantity: 1})
					switch {
					case errors.Is(err, reservation.ErrSoldOut):
						soldOut.Add(1)
					case err != nil:
						t.Errorf("reserve %s: %v", user, err)
					case r.ID != id || r.UserID != user || replayed:
						t.Errorf("buyer %s (id %s) got %+v replayed=%v", user, id, r, replayed)
					default:
						created.Add(1)
					}
				}()
			}
			wg.Wait()
			if created.Load() != 150 || soldOut.Load() != buyers-150 {
				t.Fatalf("created %d, sold out %d; want 150 and %d", created.Load(), soldOut.Load(), buyers-150)
			}
			if hook.maxBatch.Load() > int64(tt.batch) {
				t.Fatalf("a pipeline carried %d calls, more than the batch of %d", hook.maxBatch.Load(), tt.batch)
			}
			if hook.pipelines.Load() >= buyers {
				t.Fatalf("%d pipelines for %d concurrent calls: nothing was coalesced", hook.pipelines.Load(), buyers)
			}
			// Reserves of one bucket in one pipeline are one script call.
			if hook.cmds.Load() >= buyers {
				t.Fatalf("%d script calls for %d concurrent reserves of one item: none was merged", hook.cmds.Load(), buyers)
			}
			t.Logf("%d calls in %d pipelines (largest %d)", hook.cmds.Load(), hook.pipelines.Load(), hook.maxBatch.Load())
		})
	}
}

// A caller whose context ends while it waits in the queue leaves at once and
// its call is never sent; the callers behind it are still served.
func TestCoalescerCallerLeavesQueue(t *testing.T) {
	hook := &pipelineHook{gate: make(chan struct{})}
	st := newPipelinedStore(t, 1, 128, hook)
	ctx := context.Background()
	if _, err := st.Seed(ctx, reservation.ItemSpec{SKU: "q", Stock: 10, PerUserLimit: 1, Hold: time.Minute}); err != nil {
		t.Fatal(err)
	}
	reserve := func(ctx context.Context, user string) error {
		id, _ := reservation.NewID("q")
		_, _, err := st.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: "q", UserID: user, Quantity: 1})
		return err
	}
	// The first call takes the only slot and is held at the gate.
	hook.hold.Store(true)
	first := make(chan error, 1)
	go func() { first <- reserve(ctx, "first") }()
	waitFor(t, func() bool { return hook.held.Load() == 1 })

	// Queue a caller that gives up, then one that waits.
	leaving, cancel := context.WithCancel(ctx)
	left := make(chan error, 1)
	go func() { left <- reserve(leaving, "leaves") }()
	time.Sleep(20 * time.Millisecond)
	stays := make(chan error, 1)
	go func() { stays <- reserve(ctx, "stays") }()
	time.Sleep(20 * time.Millisecond)

	cancel()
	select {
	case err := <-left:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the caller that left got %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a cancelled caller stayed stuck in the queue")
	}
	close(hook.gate) // release the first pipeline and every later one
	for name, ch := range map[string]chan error{"first": first, "stays": stays} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s was never served", name)
		}
	}
	it, err := st.Item(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if it.Reserved != 2 {
		t.Fatalf("reserved = %d, want 2: the cancelled call must not have been sent", it.Reserved)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
