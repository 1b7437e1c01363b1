//go:build integration

package persistence_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// The tests and backends here need the shared MariaDB or a real Redis (see
// internal/testenv and internal/redistest), so they are built only with the
// integration tag (make test-integration, make test): without a server they
// skip, or fail under CI=true. The record and Redis kinds added here join
// every test that loops over backends() and redisBackends().

func init() {
	mysqlBackends = append(mysqlBackends, backend{name: "mysql", open: openMySQL})
	realRedisBackends = append(realRedisBackends, redisBackend{name: "redis", open: redistest.Client})
}

// TestSyncerEntryTheDatabaseRefuses: an entry that parses but that MySQL
// refuses (a name longer than the column) fails its batch; the syncer then
// writes the batch's entries one by one, so the others go through, and the
// refused one is parked after MaxTries. SQLite does not enforce column
// sizes, so this runs on MySQL only.
func TestSyncerEntryTheDatabaseRefuses(t *testing.T) {
	for _, rb := range redisBackends() {
		t.Run(rb.name+"/mysql", func(t *testing.T) {
			env := newSyncEnv(t, rb, backend{name: "mysql", open: openMySQL})
			ctx := testCtx(t)
			w := newWorkload(t, env)
			w.run(t, 60)
			sku := "sku-small"
			refused, err := env.rdb.XAdd(ctx, &goredis.XAddArgs{
				Stream: env.key(sku, "outbox"),
				Values: []any{"k", "item", "rev", "999", "stock", "5", "limit", "1", "hold", "1000",
					"starts", "", "ends", "", "name", strings.Repeat("n", 300), "created", "1", "updated", "2"},
			}).Result()
			if err != nil {
				t.Fatalf("XADD: %v", err)
			}
			w.run(t, 60)
			w.settle(t)
			// Started only now, so the refused entry shares a batch with others.
			s := env.startSyncer(t, "solo", 200*time.Millisecond)
			env.waitSynced(t, 1, s)
			entries := w.checkRecord(t) // the item keeps its real revision
			if acks := env.ledger.snapshot(); len(acks) != entries {
				t.Errorf("%d distinct entries acknowledged, want %d", len(acks), entries)
			}
			dead, err := env.rdb.XRange(ctx, env.key(sku, "dead"), "-", "+").Result()
			if err != nil || len(dead) != 1 || dead[0].Values["entry"] != refused {
				t.Errorf("dead-letter stream of %s: %v (%v), want the refused entry %s", sku, dead, err, refused)
			}
			if f := env.ledger.failures(); !reflect.DeepEqual(f, map[string]int{sku + "/" + refused: 3}) {
				t.Errorf("failed entries %v, want only the refused entry, MaxTries (3) times", f)
			}
			if st := s.Stats(); st.Dead.Load() != 1 || st.Retries.Load() < 1 {
				t.Errorf("Stats(): dead %d retries %d, want 1 dead and at least 1 retry", st.Dead.Load(), st.Retries.Load())
			}
		})
	}
}

// openMySQL opens a record in a database of the test's own on the shared
// MariaDB (dropped when the test ends). No server: skipped, or failed under
// CI=true.
func openMySQL(t testing.TB) *persistence.DB {
	t.Helper()
	return openDB(t, testenv.SharedMySQL(t), "")
}

// TestRecovererRebuildsBuckets: a private Redis loses everything
// (FLUSHALL); the Recoverer rebuilds the bucketed item from the record:
// every bucket, every reservation under its id, the counters, the users'
// allowances, and exactly the units that were available are sold after.
func TestRecovererRebuildsBuckets(t *testing.T) {
	private := redisBackend{name: "private", open: func(t testing.TB) (*goredis.Client, string) {
		return testenv.StartRedis(t, testenv.RedisOptions{}).Client(t), "fs"
	}}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			env := newSyncEnv(t, private, b)
			ctx := testCtx(t)
			ids, idem := splitWorkload(t, env, "blost")
			env.waitSynced(t, 0, env.startSyncer(t, "c1", time.Minute))
			before, err := env.store.Item(ctx, "blost")
			if err != nil {
				t.Fatal(err)
			}
			var recs []reservation.Reservation
			for _, id := range ids {
				r, err := env.store.Reservation(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
			rec := startRecoverer(t, env)

			if err := env.rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			svc := reservation.NewService(env.store, rec)
			it := waitRebuilt(t, svc, "blost")
			if it.Buckets != 3 || it.Stock != before.Stock || it.Available != before.Available ||
				it.Reserved != before.Reserved || it.Sold != before.Sold {
				t.Fatalf("rebuilt %+v, want the counters of %+v over 3 buckets", it, before)
			}
			if missing, err := env.store.Missing(ctx, []string{"blost"}); err != nil || len(missing) != 0 {
				t.Fatalf("Missing after the rebuild = %v, %v", missing, err)
			}
			for _, want := range recs {
				if got, err := svc.Reservation(ctx, want.ID); err != nil || got != want {
					t.Fatalf("restored %s = %+v, %v\nwant %+v", want.ID, got, err, want)
				}
			}
			wantSplitRecord(t, env, "blost", ids, idem)

			// The restored holds and allowances live on.
			if r, err := svc.Confirm(ctx, ids[2]); err != nil || r.Status != reservation.StatusConfirmed {
				t.Fatalf("confirm a restored hold: %+v, %v", r, err)
			}
			if _, replayed, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "blost", UserID: "user-5", Quantity: 2, IdempotencyKey: "k5"}); err != nil || !replayed {
				t.Fatalf("replay of a restored key: replayed=%v, %v", replayed, err)
			}
			if _, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "blost", UserID: "user-3", Quantity: 1}); !isAny(err, reservation.ErrLimitExceeded) {
				t.Fatalf("user-3 bought 2 of 2 before the loss: %v, want ErrLimitExceeded", err)
			}
			for i := range before.Available {
				if _, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "blost", UserID: "after-" + strconv.FormatInt(i, 10), Quantity: 1}); err != nil {
					t.Fatalf("reserve unit %d of the %d available: %v", i+1, before.Available, err)
				}
			}
			if _, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "blost", UserID: "one-more", Quantity: 1}); !isAny(err, reservation.ErrSoldOut) {
				t.Fatalf("reserve past the stock: %v, want ErrSoldOut", err)
			}
			if n := restoredCount(rec, 1); n != 1 {
				t.Fatalf("Restored = %d, want 1", n)
			}
		})
	}
}
