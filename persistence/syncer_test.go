package persistence_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// syncWait bounds every wait for the syncers to catch up. It is a bound, not
// an expectation: on an idle machine they catch up in well under a second.
const syncWait = 30 * time.Second

// redisBackend gives a syncer test a Redis and a key prefix of its own.
type redisBackend struct {
	name string
	open func(t testing.TB) (*goredis.Client, string)
}

// realRedisBackends is empty unless the tests are built with the
// integration tag, when integration_test.go adds the shared real Redis,
// isolated by key prefix.
var realRedisBackends []redisBackend

func redisBackends() []redisBackend {
	return append([]redisBackend{
		// An in-process miniredis. Its clock follows the wall clock (no
		// SetTime), so holds expire and entries go idle as on a real Redis.
		{name: "miniredis", open: func(t testing.TB) (*goredis.Client, string) {
			m := miniredis.RunT(t)
			c := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return c, "fs"
		}},
	}, realRedisBackends...)
}

// forEachSyncEnv runs test over every pair of Redis and database backends.
func forEachSyncEnv(t *testing.T, test func(t *testing.T, env *syncEnv)) {
	for _, rb := range redisBackends() {
		for _, db := range backends() {
			t.Run(rb.name+"/"+db.name, func(t *testing.T) {
				test(t, newSyncEnv(t, rb, db))
			})
		}
	}
}

// syncEnv is a store, a record and what a test needs to look behind them.
type syncEnv struct {
	rdb    *goredis.Client
	prefix string
	store  *redisstore.Store
	db     *persistence.DB
	ledger *ledger
	log    *slog.Logger
}

func newSyncEnv(t *testing.T, rb redisBackend, b backend) *syncEnv {
	t.Helper()
	rdb, prefix := rb.open(t)
	st, err := redisstore.New(testCtx(t), rdb, prefix)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return &syncEnv{
		rdb: rdb, prefix: prefix, store: st, db: b.open(t),
		ledger: &ledger{acks: map[string][]string{}, fails: map[string]int{}},
		log:    slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// key is one of an item's Redis keys: outbox, tries, dead, ...
func (e *syncEnv) key(sku, name string) string { return e.prefix + ":{" + sku + "}:" + name }

// outbox opens a reader of the store's outboxes.
func (e *syncEnv) outbox(t *testing.T, consumer string, claimIdle time.Duration) *redisstore.Outbox {
	t.Helper()
	ob, err := e.store.Outbox(redisstore.OutboxOptions{
		Consumer: consumer, ClaimIdle: claimIdle, MaxTries: 3, Scan: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	return ob
}

// startSyncer runs a syncer reading as consumer until the test ends; its
// acknowledgements go into the ledger.
func (e *syncEnv) startSyncer(t *testing.T, consumer string, claimIdle time.Duration) *persistence.Syncer {
	t.Helper()
	s := &persistence.Syncer{
		Outbox:    &ackRecorder{Outbox: e.outbox(t, consumer, claimIdle), consumer: consumer, ledger: e.ledger},
		DB:        e.db,
		BatchSize: 64,
		BatchWait: 10 * time.Millisecond,
		Timeout:   20 * time.Second,
		Log:       e.log.With("consumer", consumer),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer %s: Run: %v", consumer, err)
		}
	})
	return s
}

// waitSynced waits until every outbox is empty and dead entries number
// dead, and returns the backlog.
func (e *syncEnv) waitSynced(t *testing.T, dead int64, syncers ...*persistence.Syncer) reservation.Backlog {
	t.Helper()
	ctx := testCtx(t)
	deadline := time.Now().Add(syncWait)
	for {
		b, err := e.store.Backlog(ctx)
		if err == nil && b.Dead > dead {
			t.Fatalf("backlog %+v: more than %d dead entries", b, dead)
		}
		// The ledger must have caught up too: it notes an Ack once Redis
		// has answered it, after the backlog already shows it.
		if err == nil && b.Entries == 0 && b.Dead == dead && e.ledger.acking.Load() == 0 {
			return b
		}
		if time.Now().After(deadline) {
			var stats []string
			for _, s := range syncers {
				st := s.Stats()
				stats = append(stats, fmt.Sprintf("{synced %d batches %d retries %d dead %d db_err %v}",
					st.Synced.Load(), st.Batches.Load(), st.Retries.Load(), st.Dead.Load(), s.Status().DBErr))
			}
			t.Fatalf("not synced after %v: backlog %+v, err %v; syncers %s", syncWait, b, err, strings.Join(stats, " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncedCount is the syncers' count of synced entries once it reaches want
// or a second has passed: a syncer counts a batch just after acknowledging
// it, so an empty outbox can be seen a moment before the count.
func syncedCount(t *testing.T, want int64, syncers ...*persistence.Syncer) int64 {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		var got int64
		for _, s := range syncers {
			got += s.Stats().Synced.Load()
		}
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ledger records which consumer acknowledged which outbox entry.
type ledger struct {
	// acking counts Ack calls under way: Redis may have dropped their
	// entries from the outbox (the backlog reads empty) before they are
	// noted here.
	acking atomic.Int64

	mu    sync.Mutex
	acks  map[string][]string // "sku/entry id" -> consumers, one per Ack
	fails map[string]int      // "sku/entry id" -> calls of Fail
}

func (l *ledger) failed(e reservation.OutboxEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails[e.SKU+"/"+e.ID]++
}

func (l *ledger) failures() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.fails)
}

func (l *ledger) add(consumer string, entries []reservation.OutboxEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		k := e.SKU + "/" + e.ID
		l.acks[k] = append(l.acks[k], consumer)
	}
}

func (l *ledger) snapshot() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acks)
}

// checkExactlyOnce fails unless exactly entries outbox entries were
// acknowledged, each once, and returns how many each consumer took.
func (l *ledger) checkExactlyOnce(t *testing.T, entries int) map[string]int {
	t.Helper()
	acks := l.snapshot()
	per := map[string]int{}
	twice := 0
	for k, by := range acks {
		if len(by) != 1 {
			twice++
			if twice <= 5 {
				t.Errorf("entry %s acknowledged %d times, by %v", k, len(by), by)
			}
		}
		for _, c := range by {
			per[c]++
		}
	}
	if len(acks) != entries {
		t.Errorf("%d entries acknowledged, want %d", len(acks), entries)
	}
	if f := l.failures(); len(f) != 0 {
		t.Errorf("entries failed: %v, want none", f)
	}
	return per
}

// ackRecorder is an Outbox that notes every successful Ack in a ledger.
type ackRecorder struct {
	reservation.Outbox
	consumer string
	ledger   *ledger
}

func (a *ackRecorder) Ack(ctx context.Context, entries []reservation.OutboxEntry) error {
	a.ledger.acking.Add(1)
	defer a.ledger.acking.Add(-1)
	err := a.Outbox.Ack(ctx, entries)
	if err == nil {
		a.ledger.add(a.consumer, entries)
	}
	return err
}

func (a *ackRecorder) Fail(ctx context.Context, e reservation.OutboxEntry, reason string) (bool, error) {
	a.ledger.failed(e)
	return a.Outbox.Fail(ctx, e, reason)
}

// testLog writes log lines to the test log until the test's cleanups have
// run, then drops them: a syncer's backlog watcher may outlive Run briefly.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// workload drives the store the way buyers and admins do, from a seeded
// generator, and remembers what it created.
type workload struct {
	env   *syncEnv
	rng   *rand.Rand
	skus  []string
	specs map[string]reservation.ItemSpec
	revs  map[string]int64 // successful seeds per item: the item's revision
	ids   []string
	idem  map[string]string // reservation id -> idempotency field
	// shortSKU's holds expire within milliseconds; lastShortExpiry is the
	// latest expiry among them.
	shortSKU        string
	lastShortExpiry time.Time
}

// workloadSeed is the seed of the workloads: FLASHSALE_TEST_SEED, or a
// fixed one.
func workloadSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(20310506)
	if s := os.Getenv("FLASHSALE_TEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FLASHSALE_TEST_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("workload seed %d (set FLASHSALE_TEST_SEED to change)", seed)
	return seed
}

// newWorkload seeds three items: a large one, one whose holds expire at
// once (so expiries flow through the outbox too), and a small one with a
// sale window that sells out.
func newWorkload(t *testing.T, env *syncEnv) *workload {
	t.Helper()
	seed := workloadSeed(t)
	now := time.Now().Truncate(time.Millisecond)
	w := &workload{
		env: env, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		specs: map[string]reservation.ItemSpec{}, revs: map[string]int64{}, idem: map[string]string{},
		shortSKU: "sku-short",
	}
	for _, spec := range []reservation.ItemSpec{
		{SKU: "sku-large", Name: "Large", Stock: 400, PerUserLimit: 6, Hold: 10 * time.Minute},
		{SKU: "sku-short", Name: "Short", Stock: 60, PerUserLimit: 3, Hold: 25 * time.Millisecond},
		{SKU: "sku-small", Name: "Small", Stock: 15, PerUserLimit: 2, Hold: 10 * time.Minute,
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)},
	} {
		if _, err := env.store.Seed(testCtx(t), spec); err != nil {
			t.Fatalf("seed %s: %v", spec.SKU, err)
		}
		w.skus = append(w.skus, spec.SKU)
		w.specs[spec.SKU] = spec
		w.revs[spec.SKU] = 1
	}
	return w
}

func (w *workload) newID(sku string) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return sku + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// run makes n operations.
func (w *workload) run(t *testing.T, n int) {
	t.Helper()
	ctx := testCtx(t)
	for range n {
		w.step(t, ctx)
	}
}

func (w *workload) step(t *testing.T, ctx context.Context) {
	t.Helper()
	st := w.env.store
	sku := w.skus[w.rng.IntN(len(w.skus))]
	var id string
	if len(w.ids) > 0 {
		id = w.ids[w.rng.IntN(len(w.ids))]
	}
	switch p := w.rng.IntN(100); {
	case p < 50 || id == "":
		user := fmt.Sprintf("u%02d", w.rng.IntN(25))
		key := ""
		if w.rng.IntN(3) == 0 {
			key = fmt.Sprintf("k%d", w.rng.IntN(8))
		}
		req := reservation.ReserveRequest{ID: w.newID(sku), SKU: sku, UserID: user, Quantity: 1 + w.rng.IntN(3), IdempotencyKey: key}
		r, replayed, err := st.Reserve(ctx, req)
		switch {
		case err == nil && !replayed:
			w.ids = append(w.ids, r.ID)
			if key != "" {
				w.idem[r.ID] = idemField(user, key)
			}
			if sku == w.shortSKU && r.ExpiresAt.After(w.lastShortExpiry) {
				w.lastShortExpiry = r.ExpiresAt
			}
		case err == nil:
		case !isAny(err, reservation.ErrSoldOut, reservation.ErrLimitExceeded, reservation.ErrIdempotencyKeyReused):
			t.Fatalf("reserve %+v: %v", req, err)
		}
	case p < 70:
		if _, err := st.Confirm(ctx, id); err != nil && !isAny(err,
			reservation.ErrReservationExpired, reservation.ErrReservationCancelled, reservation.ErrReservationConfirmed) {
			t.Fatalf("confirm %s: %v", id, err)
		}
	case p < 88:
		if _, err := st.Cancel(ctx, id); err != nil && !isAny(err,
			reservation.ErrReservationExpired, reservation.ErrReservationCancelled, reservation.ErrReservationConfirmed) {
			t.Fatalf("cancel %s: %v", id, err)
		}
	case p < 94:
		spec := w.specs[sku]
		spec.Stock += int64(w.rng.IntN(20))
		spec.Name = fmt.Sprintf("%s v%d", strings.Fields(spec.Name)[0], w.revs[sku]+1)
		_, err := st.Seed(ctx, spec)
		switch {
		case err == nil:
			w.specs[sku] = spec
			w.revs[sku]++
		case !isAny(err, reservation.ErrStockBelowCommitted):
			t.Fatalf("seed %+v: %v", spec, err)
		}
	default:
		// Reading an item settles its due holds.
		if _, err := st.Item(ctx, sku); err != nil {
			t.Fatalf("item %s: %v", sku, err)
		}
	}
}

// settle waits (bounded) until Redis's clock has passed every short hold
// and then settles every due hold. Afterwards no reservation is due but
// unsettled, which Redis would report as expired while the record, which
// only learns of the expiry from the outbox, rightly says pending.
func (w *workload) settle(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	deadline := time.Now().Add(syncWait)
	for {
		now, err := w.env.rdb.Time(ctx).Result()
		if err != nil {
			t.Fatalf("TIME: %v", err)
		}
		if now.After(w.lastShortExpiry) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis clock %v never passed %v", now, w.lastShortExpiry)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := w.env.store.SweepDue(ctx, 1000); err != nil {
		t.Fatalf("SweepDue: %v", err)
	}
}

// checkRecord fails unless the record holds exactly what Redis holds: every
// reservation as Redis reports it, each item's offer at its revision, and
// counts that match the item's counters. It returns the number of outbox
// entries the workload made: one per seed, one per reservation and one per
// reservation that reached a final status.
func (w *workload) checkRecord(t *testing.T) int {
	t.Helper()
	ctx := testCtx(t)
	st, db := w.env.store, w.env.db
	entries := 0
	tally := map[string]reservation.Counts{}
	for _, id := range w.ids {
		want, err := st.Reservation(ctx, id)
		if err != nil {
			t.Fatalf("Redis reservation %s: %v", id, err)
		}
		got, err := db.Reservation(ctx, id)
		if err != nil {
			t.Errorf("recorded reservation %s: %v", id, err)
		} else if got != want {
			t.Errorf("reservation %s:\n recorded %+v\n in Redis %+v", id, got, want)
		}
		entries++
		c := tally[want.SKU]
		count(&c, want)
		if want.Status != reservation.StatusPending {
			entries++
		}
		tally[want.SKU] = c
	}
	for _, sku := range w.skus {
		entries += int(w.revs[sku])
		item, err := st.Item(ctx, sku)
		if err != nil {
			t.Fatalf("Redis item %s: %v", sku, err)
		}
		counts, err := db.Counts(ctx, sku)
		if err != nil {
			t.Fatalf("Counts(%s): %v", sku, err)
		}
		if counts != tally[sku] {
			t.Errorf("Counts(%s) = %+v, Redis's reservations sum to %+v", sku, counts, tally[sku])
		}
		if counts.Pending != item.Reserved || counts.Confirmed != item.Sold {
			t.Errorf("Counts(%s) = %+v, Redis item has reserved %d sold %d", sku, counts, item.Reserved, item.Sold)
		}
		spec := w.specs[sku]
		want := reservation.ItemRecord{
			ItemSpec: reservation.ItemSpec{
				SKU: sku, Name: spec.Name, Stock: spec.Stock, PerUserLimit: spec.PerUserLimit, Hold: spec.Hold,
				StartsAt: utc(spec.StartsAt), EndsAt: utc(spec.EndsAt), Buckets: max(spec.Buckets, 1),
			},
			Rev: w.revs[sku], CreatedAt: item.CreatedAt, UpdatedAt: item.UpdatedAt,
		}
		if item.Name != spec.Name || item.Stock != spec.Stock {
			t.Errorf("Redis item %s: %+v, want the last seed %+v", sku, item, spec)
		}
		got, err := db.Item(ctx, sku)
		if err != nil {
			t.Errorf("recorded item %s: %v", sku, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("item %s:\n recorded %+v\n want     %+v", sku, got, want)
		}
		snap, err := db.Snapshot(ctx, sku)
		if err != nil {
			t.Fatalf("Snapshot(%s): %v", sku, err)
		}
		for _, r := range snap.Reservations {
			if r.IdempotencyField != w.idem[r.ID] {
				t.Errorf("reservation %s: idempotency field %q, want %q", r.ID, r.IdempotencyField, w.idem[r.ID])
			}
		}
	}
	// The reads above must not have changed Redis (settled a hold): else
	// the comparison was against a state the record had not seen yet.
	if b, err := st.Backlog(ctx); err != nil || b.Entries != 0 {
		t.Errorf("backlog after the comparison: %+v, %v; want no entries", b, err)
	}
	return entries
}

// TestSyncerEndToEnd: one syncer copies a few hundred operations' changes
// into the record while they happen; once the outbox is empty the record
// equals Redis, and every entry was written and acknowledged exactly once.
func TestSyncerEndToEnd(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		w := newWorkload(t, env)
		s := env.startSyncer(t, "solo", 30*time.Second)
		w.run(t, 400)
		w.settle(t)
		env.waitSynced(t, 0, s)
		entries := w.checkRecord(t)
		env.ledger.checkExactlyOnce(t, entries)
		st := s.Stats()
		if got := syncedCount(t, int64(entries), s); got != int64(entries) {
			t.Errorf("Stats().Synced = %d, want %d", got, entries)
		}
		if st.Dead.Load() != 0 {
			t.Errorf("Stats().Dead = %d, want 0", st.Dead.Load())
		}
		if err := s.Status().DBErr; err != nil {
			t.Errorf("Status().DBErr = %v", err)
		}
		t.Logf("%d reservations, %d entries in %d batches, %d retries",
			len(w.ids), entries, st.Batches.Load(), st.Retries.Load())
	})
}

// TestSyncerPoisonEntry: an entry that cannot be parsed is tried MaxTries
// times and parked in the item's dead-letter stream, while the entries
// around it flow.
func TestSyncerPoisonEntry(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		ctx := testCtx(t)
		w := newWorkload(t, env)
		s := env.startSyncer(t, "solo", 200*time.Millisecond)
		w.run(t, 100)
		sku := "sku-large"
		poison, err := env.rdb.XAdd(ctx, &goredis.XAddArgs{
			Stream: env.key(sku, "outbox"),
			Values: []any{"k", "res", "id", "garbage", "rec", "garbage"},
		}).Result()
		if err != nil {
			t.Fatalf("XADD poison: %v", err)
		}
		w.run(t, 100)
		w.settle(t)
		b := env.waitSynced(t, 1, s)
		entries := w.checkRecord(t)

		// Every real entry went through (a slow batch may have been
		// claimed again and acknowledged twice; that is allowed here).
		acks := env.ledger.snapshot()
		if len(acks) != entries {
			t.Errorf("%d distinct entries acknowledged, want %d", len(acks), entries)
		}
		if _, ok := acks[sku+"/"+poison]; ok {
			t.Errorf("poison entry %s was acknowledged as synced", poison)
		}

		dead, err := env.rdb.XRange(ctx, env.key(sku, "dead"), "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE dead: %v", err)
		}
		if len(dead) != 1 {
			t.Fatalf("dead-letter stream of %s: %d entries %v, want 1", sku, len(dead), dead)
		}
		v := dead[0].Values
		for field, want := range map[string]string{"entry": poison, "k": "res", "id": "garbage", "rec": "garbage"} {
			if v[field] != want {
				t.Errorf("dead entry field %s = %v, want %q (entry %v)", field, v[field], want, v)
			}
		}
		if reason, _ := v["reason"].(string); !strings.Contains(reason, poison) {
			t.Errorf("dead entry reason %q does not name the entry %s", reason, poison)
		}
		if n, err := env.rdb.Exists(ctx, env.key(sku, "tries")).Result(); err != nil || n != 0 {
			t.Errorf("tries hash of %s still exists (%d, %v); want it emptied", sku, n, err)
		}
		if f := env.ledger.failures(); !reflect.DeepEqual(f, map[string]int{sku + "/" + poison: 3}) {
			t.Errorf("failed entries %v, want only the poison entry, MaxTries (3) times", f)
		}
		if got := s.Stats().Dead.Load(); got != 1 {
			t.Errorf("Stats().Dead = %d, want 1", got)
		}
		if b.Dead != 1 {
			t.Errorf("Backlog().Dead = %d, want 1", b.Dead)
		}
		for _, other := range w.skus {
			if other == sku {
				continue
			}
			if n, err := env.rdb.XLen(ctx, env.key(other, "dead")).Result(); err != nil || n != 0 {
				t.Errorf("dead-letter stream of %s: %d entries (%v), want none", other, n, err)
			}
		}
	})
}

// TestSyncerSharedWork: two syncers in the same consumer group split the
// entries between them; each entry is written and acknowledged once.
func TestSyncerSharedWork(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		w := newWorkload(t, env)
		s1 := env.startSyncer(t, "one", 30*time.Second)
		s2 := env.startSyncer(t, "two", 30*time.Second)
		w.run(t, 400)
		w.settle(t)
		env.waitSynced(t, 0, s1, s2)
		entries := w.checkRecord(t)
		per := env.ledger.checkExactlyOnce(t, entries)
		if synced := syncedCount(t, int64(entries), s1, s2); synced != int64(entries) {
			t.Errorf("syncers synced %d + %d entries, want %d in all", s1.Stats().Synced.Load(), s2.Stats().Synced.Load(), entries)
		}
		if d := s1.Stats().Dead.Load() + s2.Stats().Dead.Load(); d != 0 {
			t.Errorf("%d entries dead, want none", d)
		}
		// How the work was split depends on timing; it is reported, not checked.
		t.Logf("%d entries: one took %d, two took %d", entries, per["one"], per["two"])
	})
}

// TestSyncerTakesOverAbandonedEntries: a consumer reads entries and dies
// before acknowledging them; a syncer claims them once they have been idle
// for ClaimIdle and syncs them.
func TestSyncerTakesOverAbandonedEntries(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		ctx := testCtx(t)
		w := newWorkload(t, env)
		w.run(t, 200)
		w.settle(t)

		var inOutbox int64
		for _, sku := range w.skus {
			n, err := env.rdb.XLen(ctx, env.key(sku, "outbox")).Result()
			if err != nil {
				t.Fatalf("XLEN: %v", err)
			}
			inOutbox += n
		}
		gone := env.outbox(t, "gone", 200*time.Millisecond)
		abandoned, err := gone.Read(ctx, 100_000)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if int64(len(abandoned)) != inOutbox || inOutbox == 0 {
			t.Fatalf("the dying consumer read %d entries, the outboxes hold %d", len(abandoned), inOutbox)
		}
		for _, sku := range w.skus {
			p, err := env.rdb.XPending(ctx, env.key(sku, "outbox"), redisstore.SyncGroup).Result()
			if err != nil {
				t.Fatalf("XPENDING: %v", err)
			}
			if n, _ := env.rdb.XLen(ctx, env.key(sku, "outbox")).Result(); p.Count != n || (n > 0 && p.Consumers["gone"] != n) {
				t.Fatalf("%s: %+v pending, want all %d entries pending to gone", sku, p, n)
			}
		}

		heir := env.startSyncer(t, "heir", 200*time.Millisecond)
		w.run(t, 50) // new entries flow meanwhile
		w.settle(t)
		env.waitSynced(t, 0, heir)
		entries := w.checkRecord(t)

		acks := env.ledger.snapshot()
		if len(acks) != entries {
			t.Errorf("%d distinct entries acknowledged, want %d", len(acks), entries)
		}
		for _, e := range abandoned {
			if by := acks[e.SKU+"/"+e.ID]; !slices.Contains(by, "heir") {
				t.Errorf("abandoned entry %s/%s acknowledged by %v, want heir", e.SKU, e.ID, by)
			}
		}
		for _, sku := range w.skus {
			p, err := env.rdb.XPending(ctx, env.key(sku, "outbox"), redisstore.SyncGroup).Result()
			if err != nil {
				t.Fatalf("XPENDING: %v", err)
			}
			if p.Count != 0 {
				t.Errorf("%s: %+v still pending", sku, p)
			}
		}
		if f := env.ledger.failures(); len(f) != 0 {
			t.Errorf("entries failed: %v, want none", f)
		}
		if d := heir.Stats().Dead.Load(); d != 0 {
			t.Errorf("%d entries dead, want none", d)
		}
	})
}
