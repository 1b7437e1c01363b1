package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// syncedItem seeds sku, takes three holds of one unit, confirms one and
// cancels one, and waits until the record has all of it.
func syncedItem(t *testing.T, env *syncEnv, sku string) (confirmed, pending string) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := env.store.Seed(ctx, reservation.ItemSpec{SKU: sku, Name: "Audited", Stock: 10, PerUserLimit: 2, Hold: time.Hour}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	ids := make([]string, 3)
	for i, user := range []string{"ann", "bob", "cid"} {
		id, err := reservation.NewID(sku)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := env.store.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: sku, UserID: user, Quantity: 1}); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		ids[i] = id
	}
	if _, err := env.store.Confirm(ctx, ids[0]); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if _, err := env.store.Cancel(ctx, ids[1]); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	env.waitSynced(t, 0, env.startSyncer(t, "c1", time.Minute))
	return ids[0], ids[2]
}

func TestAudit(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		ctx := testCtx(t)
		syncedItem(t, env, "aud")
		a := &persistence.Auditor{Store: env.store, DB: env.db}

		au, err := a.Audit(ctx, "aud")
		if err != nil || !au.InSync() {
			t.Fatalf("Audit = %+v, %v; want in sync", au, err)
		}
		want := reservation.Counts{Pending: 1, Confirmed: 1, Cancelled: 1, Rows: 3}
		if au.Counts != want || au.Store.Reserved != 1 || au.Store.Sold != 1 || au.Record.Stock != 10 {
			t.Fatalf("Audit = %+v; want counts %+v, reserved 1, sold 1, recorded stock 10", au, want)
		}

		// A counter that no script wrote: the audit must name it.
		env.rdb.HIncrBy(ctx, env.key("aud", "item"), "reserved", 1)
		env.rdb.HIncrBy(ctx, env.key("aud", "item"), "available", -1)
		au, err = a.Audit(ctx, "aud")
		if err != nil || au.InSync() || len(au.Drift) != 2 ||
			!strings.HasPrefix(au.Drift[0], "reserved (pending units): redis 2, record 1") ||
			!strings.HasPrefix(au.Drift[1], "available") {
			t.Fatalf("Audit after tampering = %+v, %v; want reserved and available drift", au.Drift, err)
		}

		if _, err := a.Audit(ctx, "nope"); err != reservation.ErrItemNotFound {
			t.Fatalf("Audit of an unknown item: %v, want ErrItemNotFound", err)
		}
	})
}

func TestRecovererRebuildsLostItems(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		ctx := testCtx(t)
		confirmed, pending := syncedItem(t, env, "lost")
		before, err := env.store.Item(ctx, "lost")
		if err != nil {
			t.Fatal(err)
		}
		rec := startRecoverer(t, env)

		// Redis loses everything under the prefix, the epoch key with it.
		keys, err := env.rdb.Keys(ctx, env.prefix+":*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("keys: %v %v", keys, err)
		}
		env.rdb.Del(ctx, keys...)

		svc := reservation.NewService(env.store, rec)
		if _, err := svc.Item(ctx, "unknown"); err == nil || !isAny(err, reservation.ErrItemNotFound) {
			t.Fatalf("unknown item: %v, want ErrItemNotFound", err)
		}
		it := waitRebuilt(t, svc, "lost")
		if it.Stock != before.Stock || it.Available != before.Available || it.Reserved != before.Reserved || it.Sold != before.Sold {
			t.Fatalf("rebuilt %+v, want the counters of %+v", it, before)
		}
		if r, err := svc.Confirm(ctx, pending); err != nil || r.Status != reservation.StatusConfirmed {
			t.Fatalf("confirm the restored hold: %+v, %v", r, err)
		}
		if r, err := svc.Reservation(ctx, confirmed); err != nil || r.Status != reservation.StatusConfirmed {
			t.Fatalf("read the restored sale: %+v, %v", r, err)
		}
		// ann holds her allowance's one unit... of two; the restored users
		// hash must still count it.
		id, _ := reservation.NewID("lost")
		if _, _, err := env.store.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: "lost", UserID: "ann", Quantity: 2}); !isAny(err, reservation.ErrLimitExceeded) {
			t.Fatalf("reserve 2 more for ann: %v, want ErrLimitExceeded", err)
		}
		if n := restoredCount(rec, 1); n != 1 {
			t.Fatalf("Restored = %d, want 1", n)
		}
	})
}

// waitRebuilt reads sku through svc until the rebuild is done, failing on
// any answer but ErrRecovering meanwhile, and returns the item.
func waitRebuilt(t *testing.T, svc *reservation.Service, sku string) reservation.Item {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		it, err := svc.Item(context.Background(), sku)
		if err == nil {
			return it
		}
		if !isAny(err, reservation.ErrRecovering) {
			t.Fatalf("Item(%s) while rebuilding: %v, want ErrRecovering", sku, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not rebuilt after 10 s: %v", sku, err)
		}
	}
}

// startRecoverer runs a Recoverer on env with short intervals until the
// test ends.
func startRecoverer(t *testing.T, env *syncEnv) *persistence.Recoverer {
	t.Helper()
	rec := &persistence.Recoverer{Store: env.store, DB: env.db, Interval: 20 * time.Millisecond,
		Grace: 50 * time.Millisecond, Log: env.log}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	return rec
}

// restoredCount is rec's count of rebuilt items once it reaches want or a
// second has passed: the rebuild counts an item just after restoring it, so
// the item can be read a moment before the count.
func restoredCount(rec *persistence.Recoverer, want int) int {
	deadline := time.Now().Add(time.Second)
	for {
		if n := rec.Restored(); n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scriptedStore is a Restorer kept in memory, whose epoch marker a test
// loses at will and whose calls it can step into.
type scriptedStore struct {
	// duringScan, when set, runs inside Missing (scan is its call's number,
	// from 1) as if it happened while the scan ran; its error is Missing's.
	duringScan func(scan int) error
	// beforeRead, when set, runs as Unsynced or Restore is called, before
	// it answers: what the syncer did meanwhile.
	beforeRead func()

	mu       sync.Mutex
	epoch    int64
	lost     bool            // the marker is gone: the next MarkEpoch writes it and reports fresh
	missing  map[string]bool // items the store lacks
	outbox   []reservation.Change
	scans    int
	restored []reservation.Snapshot
}

func (s *scriptedStore) MarkEpoch(_ context.Context, epoch int64) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost {
		s.epoch, s.lost = epoch, false
		return epoch, true, nil
	}
	return s.epoch, false, nil
}

// loseData is Redis losing its data: the epoch marker goes with it.
func (s *scriptedStore) loseData() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = true
}

func (s *scriptedStore) Missing(_ context.Context, skus []string) ([]string, error) {
	s.mu.Lock()
	s.scans++
	scan := s.scans
	s.mu.Unlock()
	if s.duringScan != nil {
		if err := s.duringScan(scan); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sku := range skus {
		if s.missing[sku] {
			out = append(out, sku)
		}
	}
	return out, nil
}

func (s *scriptedStore) scanCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scans
}

func (s *scriptedStore) Unsynced(context.Context, string, int) ([]reservation.Change, error) {
	if s.beforeRead != nil {
		s.beforeRead()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox), nil
}

// takeOutbox empties the outbox and returns what it held, as a syncer
// acknowledging it does.
func (s *scriptedStore) takeOutbox() []reservation.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.outbox
	s.outbox = nil
	return out
}

func (s *scriptedStore) Restore(_ context.Context, snap reservation.Snapshot) (bool, error) {
	if s.beforeRead != nil {
		s.beforeRead()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restored = append(s.restored, snap)
	delete(s.missing, snap.Item.SKU)
	return true, nil
}

// waitRestored returns the first snapshot restored, waiting for it up to
// ten seconds.
func (s *scriptedStore) waitRestored(t *testing.T) reservation.Snapshot {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		restored := slices.Clone(s.restored)
		s.mu.Unlock()
		if len(restored) > 0 {
			return restored[0]
		}
	}
	t.Fatal("nothing restored after 10 s")
	return reservation.Snapshot{}
}

// TestRecovererScansAgainForALossDuringAScan: a loss noticed while a scan
// runs (a request for an unlisted item finds the epoch marker gone again)
// may have dropped items the scan already looked at, so it is owed a scan
// of its own; a scan that failed is owed again; a scan is owed once.
func TestRecovererScansAgainForALossDuringAScan(t *testing.T) {
	cases := []struct {
		name       string
		duringScan func(ctx context.Context, rec *persistence.Recoverer, st *scriptedStore) error
		wantScans  int // after the second and third Check
	}{
		{name: "nothing happens meanwhile", wantScans: 1},
		{
			name: "the scan fails",
			duringScan: func(context.Context, *persistence.Recoverer, *scriptedStore) error {
				return errors.New("redis: i/o timeout")
			},
			wantScans: 2,
		},
		{
			name: "redis loses its data again",
			duringScan: func(ctx context.Context, rec *persistence.Recoverer, st *scriptedStore) error {
				st.loseData()
				if rec.Lost(ctx, "unlisted") {
					return errors.New("an unrecorded item was reported lost")
				}
				return nil
			},
			wantScans: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			db := openSQLite(t)
			mustApply(t, db, offer("a", 1, 10, "A"))
			st := &scriptedStore{lost: true}
			rec := &persistence.Recoverer{Store: st, DB: db, Interval: time.Hour, Grace: time.Millisecond,
				Log: slog.New(slog.NewTextHandler(newTestLog(t), nil))}
			if tc.duringScan != nil {
				st.duringScan = func(scan int) error {
					if scan > 1 {
						return nil
					}
					return tc.duringScan(ctx, rec, st)
				}
			}

			_ = rec.Check(ctx) // the case decides whether the scan fails
			if n := st.scanCount(); n != 1 {
				t.Fatalf("first Check: %d scans, want 1 (the marker was missing)", n)
			}
			for i := 2; i <= 3; i++ {
				if err := rec.Check(ctx); err != nil {
					t.Fatalf("Check %d: %v", i, err)
				}
				if n := st.scanCount(); n != tc.wantScans {
					t.Fatalf("after Check %d: %d scans, want %d", i, n, tc.wantScans)
				}
			}
		})
	}
}

// TestRebuildMissesNoEntrySyncedBetweenItsReads: the syncer commits an
// outbox entry to the record and deletes it from the outbox right after the
// rebuild has read the record. The rebuild must have it all the same.
func TestRebuildMissesNoEntrySyncedBetweenItsReads(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			mustApply(t, db, offer("race", 1, 10, "Race"))
			hold := created("race", 1, "ann", 1, 1000, idemField("ann", "k1"))
			st := &scriptedStore{lost: true, missing: map[string]bool{"race": true}, outbox: []reservation.Change{hold}}

			// A snapshot reads the item's reservations last: after that
			// query the record has been read.
			var recordRead atomic.Bool
			persistence.AfterQuery(t, db, func(table string) {
				if table == "reservations" {
					recordRead.Store(true)
				}
			})
			// The syncer's commit and acknowledgement land at the next call
			// to the store after the record was read: nothing else happens
			// in between.
			st.beforeRead = func() {
				if !recordRead.Load() {
					return
				}
				if changes := st.takeOutbox(); len(changes) > 0 {
					if err := db.Apply(context.Background(), changes); err != nil {
						t.Errorf("the syncer's Apply: %v", err)
					}
				}
			}
			rec := &persistence.Recoverer{Store: st, DB: db, Interval: time.Hour, Grace: time.Millisecond,
				Log: slog.New(slog.NewTextHandler(newTestLog(t), nil))}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- rec.Run(ctx) }()
			t.Cleanup(func() { stop(); <-done })

			snap := st.waitRestored(t)
			want := []reservation.RecordedReservation{recorded(hold, idemField("ann", "k1"))}
			if !reflect.DeepEqual(snap.Reservations, want) {
				t.Fatalf("rebuilt reservations:\n got %+v\nwant %+v", snap.Reservations, want)
			}
			if st.takeOutbox() != nil {
				t.Fatal("the syncer never synced the entry: the test did not race the rebuild")
			}
		})
	}
}

// countingItems counts the items an auditor reads.
type countingItems struct {
	persistence.ItemReader
	n atomic.Int64
}

func (c *countingItems) Item(ctx context.Context, sku string) (reservation.Item, error) {
	c.n.Add(1)
	return c.ItemReader.Item(ctx, sku)
}

// TestAuditorRunsOnlyWithTheLease: with a Lease, only the auditor holding
// it audits, so a deployment audits its catalogue once per interval, not
// once per instance; it asks for two intervals' worth each time.
func TestAuditorRunsOnlyWithTheLease(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		syncedItem(t, env, "aud")
		for _, held := range []bool{false, true} {
			t.Run(fmt.Sprintf("held=%v", held), func(t *testing.T) {
				ctx, cancel := context.WithCancel(testCtx(t))
				items := &countingItems{ItemReader: env.store}
				var asked atomic.Int64
				a := &persistence.Auditor{Store: items, DB: env.db, Interval: 5 * time.Millisecond, Log: slog.New(slog.DiscardHandler),
					Lease: func(_ context.Context, ttl time.Duration) (bool, error) {
						if ttl != 10*time.Millisecond {
							t.Errorf("lease asked for %v, want two intervals", ttl)
						}
						asked.Add(1)
						return held, nil
					}}
				done := make(chan error, 1)
				go func() { done <- a.Run(ctx) }()
				time.Sleep(100 * time.Millisecond)
				cancel()
				<-done
				if asked.Load() == 0 {
					t.Fatal("the lease was never asked for")
				}
				if got := items.n.Load() > 0; got != held {
					t.Fatalf("audited %d items holding the lease=%v", items.n.Load(), held)
				}
			})
		}
	})
}

// TestAuditorPacesAPass: with a Rate, a pass reads at most that many items
// a second, so a large catalogue costs Redis the same per second as a
// small one.
func TestAuditorPacesAPass(t *testing.T) {
	const n, rate = 40, 100
	items := &countingItems{ItemReader: fixedItem{}}
	a := &persistence.Auditor{Store: items, Rate: rate, Log: slog.New(slog.DiscardHandler)}
	skus := make([]string, n)
	for i := range skus {
		skus[i] = fmt.Sprintf("p%d", i)
	}
	start := time.Now()
	a.Pass(testCtx(t), skus)
	took := time.Since(start)
	if items.n.Load() != n {
		t.Fatalf("read %d items, want all %d", items.n.Load(), n)
	}
	if want := time.Duration(n-1) * time.Second / rate; took < want {
		t.Fatalf("a pass of %d items at %d/s took %v, want at least %v", n, rate, took, want)
	}
}
