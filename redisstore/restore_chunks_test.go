package redisstore_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/proptest"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// restoreChunkSize is redisstore's restoreChunk: the records one restore
// script call takes at most.
const restoreChunkSize = 500

// TestPropertyRestoreAroundTheChunk restores items of one or two buckets
// whose buckets hold a random number of records around multiples of the
// chunk (0, 1, 2 chunks, give or take two), of random statuses, quantities,
// users and idempotency keys. Every record must be back in its bucket as
// written, every pending one in the holds index at its expiry, every key in
// the idempotency hash, every user's allowance counted, and each bucket's
// counters must be the sums over all its records, not over one chunk.
func TestPropertyRestoreAroundTheChunk(t *testing.T) {
	proptest.Checks(t, 40)
	mr, rdb := redistest.Miniredis(t)
	s := newTestStore(t, rdb, mr, "rk")
	ctx := context.Background()
	start := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	statuses := []reservation.Status{reservation.StatusPending, reservation.StatusConfirmed,
		reservation.StatusCancelled, reservation.StatusExpired}
	overOneChunk := 0 // runs with a bucket of more records than one chunk
	defer func() { t.Logf("%d runs restored a bucket of more than %d records", overOneChunk, restoreChunkSize) }()
	rapid.Check(t, func(rt *rapid.T) {
		mr.FlushAll()
		mr.SetTime(start)
		const sku = "rk"
		n := rapid.IntRange(1, 2).Draw(rt, "buckets")
		names := redisstore.Buckets(sku, n)
		// The records' details come from a drawn seed: a draw per record
		// would make rapid's input thousands of values long.
		seed := rapid.Uint64().Draw(rt, "seed")
		rng := rand.New(rand.NewPCG(seed, seed^0xc4a2))

		type bucketWant struct {
			res, idem        map[string]string
			holds            map[string]float64
			users            map[string]int64
			reserved, sold   int64
			records, pending int
		}
		want := map[string]*bucketWant{}
		var snap reservation.Snapshot
		var committed, reserved, sold int64
		next := 0
		for _, name := range names {
			count := max(0, rapid.IntRange(0, 2).Draw(rt, "chunks")*restoreChunkSize+rapid.IntRange(-2, 2).Draw(rt, "off the boundary"))
			w := &bucketWant{res: map[string]string{}, idem: map[string]string{}, holds: map[string]float64{}, users: map[string]int64{}}
			want[name] = w
			for range count {
				next++
				r := reservation.Reservation{
					ID: fmt.Sprintf("%s.%022d", name, next), SKU: sku,
					UserID: "u" + strconv.Itoa(rng.IntN(40)), Quantity: 1 + rng.IntN(3),
					Status:    statuses[rng.IntN(len(statuses))],
					CreatedAt: start.Add(-time.Minute), UpdatedAt: start.Add(-time.Second),
					// Distinct expiries, in the future: pending holds stay pending.
					ExpiresAt: start.Add(time.Duration(next) * time.Second),
				}
				idem := ""
				if rng.IntN(3) == 0 {
					idem = strconv.Itoa(len(r.UserID)) + ":" + r.UserID + ":k" + strconv.Itoa(next)
					w.idem[idem] = r.ID
				}
				snap.Reservations = append(snap.Reservations, reservation.RecordedReservation{Reservation: r, IdempotencyField: idem})
				w.records++
				w.res[r.ID] = fmt.Sprintf("%s|%d|%d|%d|%d|%s", r.Status, r.Quantity,
					r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(), r.UpdatedAt.UnixMilli(), r.UserID)
				q := int64(r.Quantity)
				switch r.Status {
				case reservation.StatusPending:
					w.pending++
					w.holds[r.ID] = float64(r.ExpiresAt.UnixMilli())
					w.reserved += q
					w.users[r.UserID] += q
				case reservation.StatusConfirmed:
					w.sold += q
					w.users[r.UserID] += q
				}
			}
			committed += w.reserved + w.sold
			reserved += w.reserved
			sold += w.sold
		}
		// Shuffled: the record does not list reservations by bucket.
		rng.Shuffle(len(snap.Reservations), func(i, j int) {
			snap.Reservations[i], snap.Reservations[j] = snap.Reservations[j], snap.Reservations[i]
		})
		stock := committed + int64(rng.IntN(10))
		snap.Item = reservation.ItemRecord{
			ItemSpec: reservation.ItemSpec{SKU: sku, Name: "Chunked", Stock: stock, PerUserLimit: 1000,
				Hold: 10 * time.Minute, Buckets: n},
			Rev: 3, CreatedAt: start.Add(-time.Hour), UpdatedAt: start.Add(-time.Minute),
		}

		for _, w := range want {
			if w.records > restoreChunkSize {
				overOneChunk++
				break
			}
		}
		restored, err := s.Restore(ctx, snap)
		if err != nil || !restored {
			rt.Fatalf("Restore of %d records over %d buckets = %v, %v; want restored", len(snap.Reservations), n, restored, err)
		}
		for i, name := range names {
			w := want[name]
			what := fmt.Sprintf("bucket %s (%d records, %d pending)", name, w.records, w.pending)
			if got := s.rdb.HGetAll(ctx, s.key(name, "res")).Val(); !maps.Equal(got, w.res) {
				missing := 0
				for id := range w.res {
					if _, ok := got[id]; !ok {
						missing++
					}
				}
				rt.Fatalf("%s: %d records back, want %d (%d missing)", what, len(got), len(w.res), missing)
			}
			if got := idemFields(s.rdb.HGetAll(ctx, s.key(name, "idem")).Val()); !maps.Equal(got, w.idem) {
				rt.Fatalf("%s: %d idempotency fields back, want %d", what, len(got), len(w.idem))
			}
			holds := map[string]float64{}
			for _, z := range s.rdb.ZRangeWithScores(ctx, s.key(name, "holds"), 0, -1).Val() {
				holds[z.Member.(string)] = z.Score
			}
			if !maps.Equal(holds, w.holds) {
				rt.Fatalf("%s: %d holds back, want %d", what, len(holds), len(w.holds))
			}
			users := map[string]int64{}
			for u, v := range s.rdb.HGetAll(ctx, s.key(name, "users")).Val() {
				users[u], _ = strconv.ParseInt(v, 10, 64)
			}
			if !maps.Equal(users, w.users) {
				rt.Fatalf("%s: users %v, want %v", what, users, w.users)
			}
			c := bucketCounters(rt, s, name)
			if c.Reserved != w.reserved || c.Sold != w.sold {
				rt.Fatalf("%s: reserved %d sold %d, want %d and %d", what, c.Reserved, c.Sold, w.reserved, w.sold)
			}
			if c.Available+c.Reserved+c.Sold != c.Stock || c.Available < 0 {
				rt.Fatalf("%s: counters %+v do not add up", what, c)
			}
			// A bucket other than the head is rebuilt with its committed units.
			if i > 0 && c.Stock != w.reserved+w.sold {
				rt.Fatalf("%s: stock %d, want its committed %d", what, c.Stock, w.reserved+w.sold)
			}
		}
		it, err := s.Item(ctx, sku)
		if err != nil {
			rt.Fatalf("Item: %v", err)
		}
		if it.Stock != stock || it.Reserved != reserved || it.Sold != sold || it.Available != stock-reserved-sold {
			rt.Fatalf("restored item %+v, want stock %d, reserved %d, sold %d", it, stock, reserved, sold)
		}
		if n > 1 {
			if sum := readBuckets(rt, s, sku, n); sum.stock != stock || sum.transit != 0 {
				rt.Fatalf("buckets %+v, want stock %d and nothing in transit", sum, stock)
			}
		}
	})
}

// bucketCounters is rawCounters for a test that may be rapid's.
func bucketCounters(t failer, s *testStore, bucket string) counters {
	vals, err := s.rdb.HMGet(context.Background(), s.key(bucket, "item"), "stock", "available", "reserved", "sold").Result()
	if err != nil {
		t.Fatalf("HMGET %s: %v", bucket, err)
	}
	var n [4]int64
	for i, v := range vals {
		str, _ := v.(string)
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			t.Fatalf("bucket %s: counter %d = %v: %v", bucket, i, v, err)
		}
	}
	return counters{Stock: n[0], Available: n[1], Reserved: n[2], Sold: n[3]}
}
