package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// The tests in this file close holes that hand-made mutants of the
// production code slipped through (issue 18): each fails on its mutant.
// Those that need MariaDB are in mutants_integration_test.go.

// fixedItem is an ItemReader that answers one item's counters as set.
type fixedItem struct{ item reservation.Item }

func (f fixedItem) Item(_ context.Context, sku string) (reservation.Item, error) {
	if sku != f.item.SKU {
		return reservation.Item{}, reservation.ErrItemNotFound
	}
	return f.item, nil
}

func (f fixedItem) ItemBacklog(context.Context, string) (int64, error) { return 0, nil }

// TestAuditComparesEachCounter: Redis's counters are tampered with one at a
// time (stock with available, so that only the stock disagrees); the audit
// names exactly the counter that differs, each in a drift line of its own.
func TestAuditComparesEachCounter(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			held := created("aud", 1, "ann", 2, 10, "")
			sold := created("aud", 2, "bob", 1, 20, "")
			gone := created("aud", 3, "cid", 1, 30, "")
			mustApply(t, db, offer("aud", 1, 10, "Audited"), held, sold, gone,
				settled(sold, reservation.StatusConfirmed, 40), settled(gone, reservation.StatusCancelled, 50))
			inSync := reservation.Item{SKU: "aud", Stock: 10, Available: 7, Reserved: 2, Sold: 1}

			cases := []struct {
				name   string
				tamper func(it *reservation.Item)
				want   []string
			}{
				{"nothing", func(*reservation.Item) {}, nil},
				{"sold alone", func(it *reservation.Item) { it.Sold++ },
					[]string{"sold (confirmed units): redis 2, record 1"}},
				{"sold down alone", func(it *reservation.Item) { it.Sold-- },
					[]string{"sold (confirmed units): redis 0, record 1"}},
				{"reserved alone", func(it *reservation.Item) { it.Reserved++ },
					[]string{"reserved (pending units): redis 3, record 2"}},
				{"available alone", func(it *reservation.Item) { it.Available-- },
					[]string{"available (stock - pending - confirmed): redis 6, record 7"}},
				{"stock with available", func(it *reservation.Item) { it.Stock++; it.Available++ },
					[]string{"stock: redis 11, record 10"}},
				{"a sale counted as a hold", func(it *reservation.Item) { it.Sold--; it.Reserved++ },
					[]string{"reserved (pending units): redis 3, record 2", "sold (confirmed units): redis 0, record 1"}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					it := inSync
					tc.tamper(&it)
					a := &persistence.Auditor{Store: fixedItem{it}, DB: db}
					au, err := a.Audit(testCtx(t), "aud")
					if err != nil {
						t.Fatalf("Audit: %v", err)
					}
					if !slices.Equal(au.Drift, tc.want) {
						t.Fatalf("Drift = %q, want %q", au.Drift, tc.want)
					}
					if au.InSync() != (tc.want == nil) {
						t.Fatalf("InSync() = %v with drift %q", au.InSync(), au.Drift)
					}
					want := reservation.Counts{Pending: 2, Confirmed: 1, Cancelled: 1, Rows: 3}
					if au.Counts != want || au.Store != it || au.Record.Stock != 10 {
						t.Fatalf("Audit = %+v; want counts %+v, the store's item %+v, recorded stock 10", au, want, it)
					}
				})
			}
		})
	}
}

// batchOutbox hands out its entries in reads of at most chunk (0: as many
// as asked), and notes what each read asked for and how many entries were
// in flight (handed out, not yet acknowledged) at most.
type batchOutbox struct {
	mu        sync.Mutex
	pending   []reservation.OutboxEntry
	chunk     int
	asked     []int
	inFlight  int
	maxFlight int
	acked     int
}

func (o *batchOutbox) Read(_ context.Context, limit int) ([]reservation.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, limit)
	n := min(limit, len(o.pending))
	if o.chunk > 0 {
		n = min(n, o.chunk)
	}
	n = max(n, 0)
	out := o.pending[:n:n]
	o.pending = o.pending[n:]
	o.inFlight += n
	o.maxFlight = max(o.maxFlight, o.inFlight)
	return out, nil
}

func (o *batchOutbox) Ack(_ context.Context, entries []reservation.OutboxEntry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight -= len(entries)
	o.acked += len(entries)
	return nil
}

func (o *batchOutbox) Fail(context.Context, reservation.OutboxEntry, string) (bool, error) {
	return false, errors.New("no entry should fail")
}

func (o *batchOutbox) Backlog(context.Context) (reservation.Backlog, error) {
	return reservation.Backlog{}, nil
}

func (o *batchOutbox) state() (asked []int, maxFlight, acked int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.asked), o.maxFlight, o.acked
}

// TestSyncerReadsAtMostABatch: with three full batches waiting, the syncer
// never asks the outbox for more than a batch still has room for, never
// holds more than a batch, and writes each full batch in one transaction,
// whether one read fills a batch or several small ones do.
func TestSyncerReadsAtMostABatch(t *testing.T) {
	const batchSize, batches = 8, 3
	cases := []struct {
		name  string
		chunk int
	}{
		{"one read fills a batch", 0},
		{"small reads fill a batch", 3},
		{"reads of a batch less one", batchSize - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ob := &batchOutbox{chunk: tc.chunk}
			sku := "col"
			ob.pending = append(ob.pending, reservation.OutboxEntry{SKU: sku, ID: "1-0", Change: offer(sku, 1, 1000, "Col")})
			for i := 1; i < batchSize*batches; i++ {
				ob.pending = append(ob.pending, reservation.OutboxEntry{SKU: sku, ID: fmt.Sprintf("%d-0", i+1),
					Change: created(sku, i, fmt.Sprintf("u%d", i), 1, int64(i), "")})
			}
			var mu sync.Mutex
			var sizes []int
			s := &persistence.Syncer{
				Outbox: ob, DB: openSQLite(t), BatchSize: batchSize,
				// Long, so a slow machine still fills each batch from small reads.
				BatchWait: time.Second, Timeout: 10 * time.Second,
				Log: slog.New(slog.NewTextHandler(newTestLog(t), nil)),
				Observe: func(size int, _ time.Duration) {
					mu.Lock()
					sizes = append(sizes, size)
					mu.Unlock()
				},
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			stop := func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}
			for deadline := time.Now().Add(syncWait); ; time.Sleep(10 * time.Millisecond) {
				if _, _, acked := ob.state(); acked >= batchSize*batches {
					break
				}
				if time.Now().After(deadline) {
					stop()
					_, _, acked := ob.state()
					t.Fatalf("%d of %d entries acknowledged after %v", acked, batchSize*batches, syncWait)
				}
			}
			stop()

			asked, maxFlight, acked := ob.state()
			for i, n := range asked {
				if n < 1 || n > batchSize {
					t.Errorf("read %d asked for %d entries, want 1..%d (reads %v)", i, n, batchSize, asked)
				}
			}
			if maxFlight != batchSize {
				t.Errorf("at most %d entries were read and unacknowledged at once, want %d (a batch)", maxFlight, batchSize)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []int{batchSize, batchSize, batchSize}; !reflect.DeepEqual(sizes, want) {
				t.Errorf("transactions of %v entries, want one per full batch: %v (reads %v)", sizes, want, asked)
			}
			if acked != batchSize*batches {
				t.Errorf("%d entries acknowledged, want %d", acked, batchSize*batches)
			}
			if st := s.Stats(); st.Batches.Load() != batches || st.Synced.Load() != batchSize*batches {
				t.Errorf("Stats: %d batches, %d synced; want %d and %d", st.Batches.Load(), st.Synced.Load(), batches, batchSize*batches)
			}
		})
	}
}
