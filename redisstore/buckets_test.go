package redisstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// bucketSums adds up the item hashes of sku's buckets and the units
// recorded as in transit, straight from Redis.
type bucketSums struct {
	total, stock, available, reserved, sold, transit int64
}

// failer is what the bucket helpers need of a test: testing.TB has it, and
// so has rapid's T (which has no Helper method).
type failer interface {
	Fatalf(format string, args ...any)
}

// readBuckets checks each bucket's available+reserved+sold == stock (none
// negative) and that the buckets' stocks plus the units in transit add up
// to the head's total. A transfer whose give ran but whose record the mover
// did not delete yet is in the receiver's stock already (its receipt is in
// the receiver's xin), so it does not count as in transit.
func readBuckets(t failer, s *testStore, sku string, n int) bucketSums {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	ctx := context.Background()
	names := redisstore.Buckets(sku, n)
	// One round trip: the property test calls this after every step.
	pipe := s.rdb.Pipeline()
	items := make([]*goredis.MapStringStringCmd, n)
	xouts := make([]*goredis.MapStringStringCmd, n)
	for i, name := range names {
		items[i] = pipe.HGetAll(ctx, s.key(name, "item"))
		xouts[i] = pipe.HGetAll(ctx, s.key(name, "xout"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("read the buckets of %s: %v", sku, err)
	}
	var sum bucketSums
	for i, name := range names {
		f := items[i].Val()
		num := func(k string) int64 {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			return v
		}
		if i == 0 {
			sum.total = num("total")
		}
		for _, v := range []int64{num("available"), num("reserved"), num("sold")} {
			if v < 0 {
				t.Fatalf("bucket %s has a negative counter: %v", name, f)
			}
		}
		if num("available")+num("reserved")+num("sold") != num("stock") {
			t.Fatalf("bucket %s: available+reserved+sold != stock: %v", name, f)
		}
		sum.stock += num("stock")
		sum.available += num("available")
		sum.reserved += num("reserved")
		sum.sold += num("sold")
		for id, rec := range xouts[i].Val() {
			// "to_bucket|units|created_ms"
			parts := strings.Split(rec, "|")
			if len(parts) != 3 {
				t.Fatalf("bucket %s: transfer record %q", name, rec)
			}
			if s.rdb.ZScore(ctx, s.key(parts[0], "xin"), id).Err() == nil {
				continue // delivered; only the giver's record is left
			}
			units, _ := strconv.ParseInt(parts[1], 10, 64)
			sum.transit += units
		}
	}
	if sum.stock+sum.transit != sum.total {
		t.Fatalf("%s: buckets hold %d and %d are in transit, total is %d", sku, sum.stock, sum.transit, sum.total)
	}
	return sum
}

func TestBucketsSellExactlyTheStock(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	spec := itemSpec("hot", 30, 1)
	spec.Buckets = 3
	res := mustSeed(t, s, spec)
	if res.Item.Buckets != 3 || res.Item.Stock != 30 || res.Item.Available != 30 {
		t.Fatalf("seeded item = %+v", res.Item)
	}
	sum := readBuckets(t, s, "hot", 3)
	if sum.available != 30 {
		t.Fatalf("after seeding, buckets have %+v", sum)
	}
	created, soldOut := 0, 0
	for u := range 100 {
		_, _, err := s.Reserve(ctx, request(t, "hot", "user-"+strconv.Itoa(u), 1, ""))
		var so *reservation.SoldOutError
		switch {
		case err == nil:
			created++
		case errors.As(err, &so):
			soldOut++
		default:
			t.Fatalf("reserve: %v", err)
		}
	}
	if created != 30 || soldOut != 70 {
		t.Fatalf("created %d, sold out %d; want 30 and 70", created, soldOut)
	}
	it, err := s.Item(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if it.Available != 0 || it.Reserved != 30 || it.Stock != 30 {
		t.Fatalf("item = %+v", it)
	}
	readBuckets(t, s, "hot", 3)
}

// homeOf is the bucket among names that keeps user's holds, as the feature
// defines it: FNV-1a (32 bits) of the user id, modulo the bucket count.
func homeOf(names []string, user string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return names[h.Sum32()%uint32(len(names))]
}

// userIn returns a user id starting with tag whose home is names[b].
func userIn(t testing.TB, names []string, b int, tag string) string {
	t.Helper()
	for i := range 100_000 {
		if u := tag + "-" + strconv.Itoa(i); homeOf(names, u) == names[b] {
			return u
		}
	}
	t.Fatalf("no user %s-N lives in bucket %s", tag, names[b])
	return ""
}

// bucketOf is the bucket a reservation id names: what precedes its random part.
func bucketOf(id string) string { return id[:strings.LastIndexByte(id, '.')] }

// seedSplit creates sku with stock spread over n buckets and returns their names.
func seedSplit(t testing.TB, s *testStore, sku string, stock int64, limit, n int) []string {
	t.Helper()
	spec := itemSpec(sku, stock, limit)
	spec.Buckets = n
	res, err := s.Seed(context.Background(), spec)
	if err != nil || !res.Created || res.Item.Buckets != n || res.Item.Stock != stock || res.Item.Available != stock {
		t.Fatalf("seed %s over %d buckets: %+v, %v", sku, n, res, err)
	}
	names := redisstore.Buckets(sku, n)
	checkBuckets(t, s, sku, names)
	return names
}

// checkBuckets checks every bucket's counters against its records
// (assertInvariant) and the buckets together against the total (readBuckets).
func checkBuckets(t testing.TB, s *testStore, sku string, names []string) bucketSums {
	t.Helper()
	for _, name := range names {
		assertInvariant(t, s, name)
	}
	return readBuckets(t, s, sku, len(names))
}

// availableByBucket is each bucket's stored available count.
func availableByBucket(t testing.TB, s *testStore, names []string) []int64 {
	t.Helper()
	out := make([]int64, len(names))
	for i, name := range names {
		out[i] = rawCounters(t, s, name).Available
	}
	return out
}

// heldByUser sums the users hashes of every bucket, and fails when a user
// has units outside its home bucket.
func heldByUser(t failer, s *testStore, names []string) map[string]int64 {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	ctx := context.Background()
	pipe := s.rdb.Pipeline()
	users := make([]*goredis.MapStringStringCmd, len(names))
	for i, name := range names {
		users[i] = pipe.HGetAll(ctx, s.key(name, "users"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("read the users of %v: %v", names, err)
	}
	out := map[string]int64{}
	for i, name := range names {
		for user, v := range users[i].Val() {
			if home := homeOf(names, user); home != name {
				t.Fatalf("user %s has units in bucket %s, home is %s", user, name, home)
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			out[user] += n
		}
	}
	return out
}

// stuckTransfer moves up to want units from bucket from towards bucket to
// as a mover that dies right after take.lua, or after give.lua too when
// give is set: either way the transfer's record stays in from's xout for
// the sweeper. It returns the transfer's id and the units taken (0: from
// had none).
func stuckTransfer(t failer, s *testStore, n int, from, to string, want int64, give bool) (string, int64) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	ctx := context.Background()
	id := "stuck-" + rand.Text()
	rep, err := goredis.NewScript(string(luascripts.Take())).Run(ctx, s.rdb, s.ScriptKeys(from),
		id, to, want, "0", 64, n).Slice()
	if err != nil || len(rep) < 2 {
		t.Fatalf("take from %s: %v, %v", from, rep, err)
	}
	if rep[0] == "empty" {
		return id, 0
	}
	units, ok := rep[1].(int64)
	if rep[0] != "taken" || !ok {
		t.Fatalf("take from %s: %v", from, rep)
	}
	if give {
		rep, err := goredis.NewScript(string(luascripts.Give())).Run(ctx, s.rdb, s.ScriptKeys(to), id, units).Slice()
		if err != nil || len(rep) != 1 || rep[0] != "given" {
			t.Fatalf("give to %s: %v, %v", to, rep, err)
		}
	}
	return id, units
}

// item reads sku through Store.Item and checks available+reserved+sold == stock.
func mustItem(t testing.TB, s *testStore, sku string) reservation.Item {
	t.Helper()
	it, err := s.Item(context.Background(), sku)
	if err != nil {
		t.Fatalf("Item(%s): %v", sku, err)
	}
	if it.Available+it.Reserved+it.Sold != it.Stock || it.Available < 0 || it.Reserved < 0 || it.Sold < 0 {
		t.Fatalf("Item(%s) counters broken: %+v", sku, it)
	}
	return it
}

func itemCounters(it reservation.Item) counters {
	return counters{Stock: it.Stock, Available: it.Available, Reserved: it.Reserved, Sold: it.Sold}
}

// TestBucketsPerUserLimit: a user's holds all live in the home bucket, so
// the limit is exact however many buckets the item has, whether the user
// asks one unit at a time or two.
func TestBucketsPerUserLimit(t *testing.T) {
	type step struct {
		op   string // "reserve", "confirm" or "cancel" (the last hold made)
		qty  int
		want error
	}
	steps := []step{
		{"reserve", 1, nil},
		{"reserve", 2, reservation.ErrLimitExceeded},
		{"reserve", 1, nil},
		{"reserve", 1, reservation.ErrLimitExceeded},
		{"confirm", 0, nil}, // a sale counts as a hold does
		{"reserve", 1, reservation.ErrLimitExceeded},
		{"reserve", 2, reservation.ErrLimitExceeded},
		{"cancel", 0, reservation.ErrReservationConfirmed},
	}
	for _, n := range []int{1, 2, 3, 8} {
		t.Run(fmt.Sprintf("%d buckets", n), func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "lim", 40, 2, n)
			for b := range names {
				user := userIn(t, names, b, "buyer")
				var last string
				for i, st := range steps {
					var err error
					switch st.op {
					case "reserve":
						var r reservation.Reservation
						r, _, err = s.Reserve(ctx, request(t, "lim", user, st.qty, ""))
						if err == nil {
							if bucketOf(r.ID) != names[b] {
								t.Fatalf("hold %s of %s is not in the home bucket %s", r.ID, user, names[b])
							}
							last = r.ID
						}
					case "confirm":
						_, err = s.Confirm(ctx, last)
					case "cancel":
						_, err = s.Cancel(ctx, last)
					}
					wantErr(t, fmt.Sprintf("%s step %d: %s %d", user, i, st.op, st.qty), err, st.want)
					if held := heldByUser(t, s, names)[user]; held > 2 {
						t.Fatalf("%s holds %d units, limit 2", user, held)
					}
				}
				if held := heldByUser(t, s, names)[user]; held != 2 {
					t.Fatalf("%s holds %d units at the end, want 2", user, held)
				}
			}
			sum := checkBuckets(t, s, "lim", names)
			if sum.reserved+sum.sold != int64(2*n) {
				t.Fatalf("buckets hold %+v, want %d units committed", sum, 2*n)
			}
		})
	}
}

// TestBucketsIdempotency: a key replays the same hold whichever bucket
// serves the retry, a reused key with another quantity is refused, and a
// resent call (same reservation id) makes no second hold.
func TestBucketsIdempotency(t *testing.T) {
	for _, n := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("%d buckets", n), func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			// Two units over n buckets: most homes are empty, so the first
			// call pulls units before it holds them.
			names := seedSplit(t, s, "idem", 2, 2, n)
			user := userIn(t, names, n-1, "keyed")
			first, replayed, err := s.Reserve(ctx, request(t, "idem", user, 1, "k1"))
			if err != nil || replayed || bucketOf(first.ID) != names[n-1] {
				t.Fatalf("first reserve: %+v replayed=%v err=%v", first, replayed, err)
			}
			for i := range 3 {
				again, replayed, err := s.Reserve(ctx, request(t, "idem", user, 1, "k1"))
				if err != nil || !replayed || again.ID != first.ID {
					t.Fatalf("replay %d: %+v replayed=%v err=%v; want %s replayed", i, again, replayed, err, first.ID)
				}
			}
			if _, _, err := s.Reserve(ctx, request(t, "idem", user, 2, "k1")); !errors.Is(err, reservation.ErrIdempotencyKeyReused) {
				t.Fatalf("key reused with quantity 2: %v, want %v", err, reservation.ErrIdempotencyKeyReused)
			}
			req := request(t, "idem", user, 1, "")
			r1, replayed1, err1 := s.Reserve(ctx, req)
			r2, replayed2, err2 := s.Reserve(ctx, req)
			if err1 != nil || err2 != nil || replayed1 || !replayed2 || r1.ID != r2.ID || bucketOf(r1.ID) != names[n-1] {
				t.Fatalf("resent call: %+v %v %v / %+v %v %v; want one hold, replayed", r1, replayed1, err1, r2, replayed2, err2)
			}
			if got := heldByUser(t, s, names)[user]; got != 2 {
				t.Fatalf("%s holds %d units, want 2", user, got)
			}
			if it := mustItem(t, s, "idem"); it.Reserved != 2 || it.Available != 0 {
				t.Fatalf("item = %+v, want both units held", it)
			}
			checkBuckets(t, s, "idem", names)
		})
	}
}

// TestBucketsNoFalseSoldOut: a buyer whose home bucket is empty gets units
// from the others; a buyer is refused only when the whole item has fewer
// units than asked for.
func TestBucketsNoFalseSoldOut(t *testing.T) {
	type buy struct {
		home  int     // index of the buyer's home bucket
		avail []int64 // each bucket's available units before the buy (nil: not checked)
		qty   int
		want  error
	}
	soldOut := reservation.ErrSoldOut
	cases := []struct {
		name  string
		n     int
		stock int64
		limit int
		buys  []buy
	}{
		{name: "stock below the count stays in the head; homes pull from it", n: 3, stock: 2, limit: 1, buys: []buy{
			{home: 1, avail: []int64{2, 0, 0}, qty: 1},
			{home: 2, avail: []int64{1, 0, 0}, qty: 1},
			{home: 1, avail: []int64{0, 0, 0}, qty: 1, want: soldOut},
			{home: 0, qty: 1, want: soldOut},
		}},
		{name: "the last unit sits in a third bucket", n: 3, stock: 3, limit: 1, buys: []buy{
			{home: 0, avail: []int64{1, 1, 1}, qty: 1},
			{home: 1, avail: []int64{0, 1, 1}, qty: 1},
			{home: 0, avail: []int64{0, 0, 1}, qty: 1},
			{home: 2, avail: []int64{0, 0, 0}, qty: 1, want: soldOut},
		}},
		{name: "a quantity gathered from several buckets", n: 4, stock: 8, limit: 8, buys: []buy{
			{home: 1, avail: []int64{2, 2, 2, 2}, qty: 7},
			{home: 2, qty: 2, want: soldOut},
			{home: 3, qty: 1},
			{home: 0, qty: 1, want: soldOut},
		}},
		{name: "refused only when the whole item is short", n: 3, stock: 9, limit: 5, buys: []buy{
			{home: 1, avail: []int64{3, 3, 3}, qty: 4},
			{home: 2, qty: 4},
			{home: 0, qty: 2, want: soldOut},
			{home: 2, qty: 2, want: soldOut},
			{home: 0, qty: 1},
			{home: 1, qty: 1, want: soldOut},
		}},
		{name: "64 buckets, 10 units", n: 64, stock: 10, limit: 1, buys: func() []buy {
			var b []buy
			for i := 1; i <= 10; i++ {
				b = append(b, buy{home: i * 6, qty: 1})
			}
			return append(b, buy{home: 63, qty: 1, want: soldOut}, buy{home: 0, qty: 1, want: soldOut})
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "nfs", tc.stock, tc.limit, tc.n)
			for i, b := range tc.buys {
				if b.avail != nil {
					if got := availableByBucket(t, s, names); !slices.Equal(got, b.avail) {
						t.Fatalf("buy %d: buckets have %v available, want %v", i, got, b.avail)
					}
				}
				before := mustItem(t, s, "nfs")
				user := userIn(t, names, b.home, fmt.Sprintf("buyer%d", i))
				r, _, err := s.Reserve(ctx, request(t, "nfs", user, b.qty, ""))
				wantErr(t, fmt.Sprintf("buy %d: %d for %s (home %s, item %+v)", i, b.qty, user, names[b.home], before), err, b.want)
				if (before.Available >= int64(b.qty)) != (err == nil) {
					t.Fatalf("buy %d of %d: err %v with %d available", i, b.qty, err, before.Available)
				}
				var so *reservation.SoldOutError
				if errors.As(err, &so) && so.Available != before.Available {
					t.Fatalf("buy %d: sold out says %d available, the item has %d", i, so.Available, before.Available)
				}
				if err == nil && bucketOf(r.ID) != names[b.home] {
					t.Fatalf("buy %d: hold %s is not in the home bucket %s", i, r.ID, names[b.home])
				}
				checkBuckets(t, s, "nfs", names)
			}
		})
	}
}

// TestBucketsByID: a hold in a bucket other than the head is read,
// confirmed and cancelled by its id alone, also by an instance that never
// saw the item; a cancel returns the units to that bucket, and a buyer of
// any other bucket gets them.
func TestBucketsByID(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "byid", 4, 1, 3) // available 2, 1, 1
	holds := make([]reservation.Reservation, 3)
	for b := range names {
		user := userIn(t, names, b, "holder")
		holds[b] = mustReserve(t, s, "byid", user, 1)
		if want := names[b] + "."; !strings.HasPrefix(holds[b].ID, want) || holds[b].SKU != "byid" {
			t.Fatalf("hold %+v: want id %s<random> and SKU byid", holds[b], want)
		}
		if sku, ok := reservation.ParseID(holds[b].ID); !ok || sku != "byid" {
			t.Fatalf("ParseID(%s) = %q, %v", holds[b].ID, sku, ok)
		}
	}
	// A second instance with an empty layout cache: it tries the head first,
	// learns the count from the "layout" reply, and holds in the home bucket.
	other := newTestStore(t, s.rdb, s.mr, s.prefix)
	late, _, err := other.Reserve(ctx, request(t, "byid", userIn(t, names, 1, "late"), 1, ""))
	if err != nil || bucketOf(late.ID) != names[1] {
		t.Fatalf("reserve through a fresh instance: %+v, %v; want a hold in %s", late, err, names[1])
	}
	for _, st := range []*testStore{s, other} {
		for _, h := range append(holds, late) {
			got, err := st.Reservation(ctx, h.ID)
			if err != nil {
				t.Fatalf("Reservation(%s): %v", h.ID, err)
			}
			wantReservation(t, got, h)
		}
	}

	steps := []struct {
		name string
		run  func() (reservation.Reservation, error)
		want reservation.Status
		err  error
	}{
		{"confirm in bucket 2", func() (reservation.Reservation, error) { return other.Confirm(ctx, holds[2].ID) }, reservation.StatusConfirmed, nil},
		{"cancel the confirmed", func() (reservation.Reservation, error) { return s.Cancel(ctx, holds[2].ID) }, reservation.StatusConfirmed, reservation.ErrReservationConfirmed},
		{"cancel in bucket 1", func() (reservation.Reservation, error) { return s.Cancel(ctx, holds[1].ID) }, reservation.StatusCancelled, nil},
		{"confirm the cancelled", func() (reservation.Reservation, error) { return other.Confirm(ctx, holds[1].ID) }, reservation.StatusCancelled, reservation.ErrReservationCancelled},
		{"read the cancelled", func() (reservation.Reservation, error) { return other.Reservation(ctx, holds[1].ID) }, reservation.StatusCancelled, nil},
	}
	for _, st := range steps {
		r, err := st.run()
		wantErr(t, st.name, err, st.err)
		if r.Status != st.want || r.SKU != "byid" {
			t.Fatalf("%s: %+v, want status %s", st.name, r, st.want)
		}
	}
	if got := rawCounters(t, s, names[1]); got.Available != 1 || got.Reserved != 1 {
		t.Fatalf("bucket %s after the cancel: %+v; want its unit back (and late's hold)", names[1], got)
	}
	checkBuckets(t, s, "byid", names)

	// The cancelled unit is the item's last: a buyer of bucket 2 gets it.
	r := mustReserve(t, s, "byid", userIn(t, names, 2, "next"), 1)
	if bucketOf(r.ID) != names[2] {
		t.Fatalf("next buyer's hold %s, want it in %s", r.ID, names[2])
	}
	if _, _, err := s.Reserve(ctx, request(t, "byid", userIn(t, names, 0, "after"), 1, "")); !errors.Is(err, reservation.ErrSoldOut) {
		t.Fatalf("reserve after the last unit: %v, want sold out", err)
	}
	wantCounters(t, s, names[1], counters{Stock: 1, Reserved: 1})
	if it := mustItem(t, s, "byid"); itemCounters(it) != (counters{Stock: 4, Reserved: 3, Sold: 1}) {
		t.Fatalf("item = %+v", it)
	}
	checkBuckets(t, s, "byid", names)

	random := strings.TrimPrefix(newID(t, "byid"), "byid")
	for _, id := range []string{"byid~1" + random, names[1] + random, "byid~999999" + random} {
		if _, err := s.Reservation(ctx, id); !errors.Is(err, reservation.ErrReservationNotFound) {
			t.Fatalf("Reservation(%s) of an id never issued: %v, want not found", id, err)
		}
		if _, err := s.Cancel(ctx, id); !errors.Is(err, reservation.ErrReservationNotFound) {
			t.Fatalf("Cancel(%s) of an id never issued: %v, want not found", id, err)
		}
	}
}

// TestBucketsExpiry: holds that fall due in any bucket give their units
// back, whether a reader or the sweeper settles them, and buyers of another
// bucket get them.
func TestBucketsExpiry(t *testing.T) {
	cases := []struct {
		name   string
		settle func(t *testing.T, s *testStore)
	}{
		{"a read settles them", func(t *testing.T, s *testStore) {
			if it := mustItem(t, s, "exp"); itemCounters(it) != (counters{Stock: 3, Available: 3}) {
				t.Fatalf("Item after expiry = %+v, want every unit back", it)
			}
		}},
		{"the sweeper settles them", func(t *testing.T, s *testStore) {
			if n, err := s.SweepDue(context.Background(), 1); err != nil || n != 3 {
				t.Fatalf("SweepDue = %d, %v; want 3 holds expired", n, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "exp", 3, 1, 3)
			var holds []reservation.Reservation
			for b := range names {
				holds = append(holds, mustReserve(t, s, "exp", userIn(t, names, b, "early"), 1))
			}
			s.advance(t, 10*time.Minute) // the holds' expiry
			tc.settle(t, s)
			for b, h := range holds {
				raw := s.rdb.HGet(ctx, s.key(names[b], "res"), h.ID).Val()
				if rec := parseRecord(t, h.ID, raw); rec.status != "expired" {
					t.Fatalf("hold %s stored as %q after settling", h.ID, rec.status)
				}
				wantCounters(t, s, names[b], counters{Stock: 1, Available: 1})
				if got, err := s.Reservation(ctx, h.ID); err != nil || got.Status != reservation.StatusExpired {
					t.Fatalf("Reservation(%s) = %+v, %v; want expired", h.ID, got, err)
				}
				if _, err := s.Confirm(ctx, h.ID); !errors.Is(err, reservation.ErrReservationExpired) {
					t.Fatalf("Confirm(%s): %v, want expired", h.ID, err)
				}
			}
			if sum := checkBuckets(t, s, "exp", names); sum.available != 3 {
				t.Fatalf("buckets after expiry: %+v", sum)
			}
			// Three buyers of one bucket take the units of all three.
			for i := range 3 {
				mustReserve(t, s, "exp", userIn(t, names, 1, fmt.Sprintf("late%d", i)), 1)
			}
			if _, _, err := s.Reserve(ctx, request(t, "exp", userIn(t, names, 2, "last"), 1, "")); !errors.Is(err, reservation.ErrSoldOut) {
				t.Fatalf("fourth buyer: %v, want sold out", err)
			}
			if sum := checkBuckets(t, s, "exp", names); sum.reserved != 3 || sum.transit != 0 {
				t.Fatalf("buckets after the resale: %+v", sum)
			}
		})
	}
}

// TestBucketsRestock: the total moves up and down; down gathers the other
// buckets' available units into the head first; below the committed units
// it is refused with the whole item's reserved and sold units. Afterwards
// exactly the available units can still be sold.
func TestBucketsRestock(t *testing.T) {
	cases := []struct {
		name  string
		stock int64
		err   error
		want  counters
	}{
		{"up", 40, nil, counters{Stock: 40, Available: 27, Reserved: 8, Sold: 5}},
		{"down, gathering units into the head", 15, nil, counters{Stock: 15, Available: 2, Reserved: 8, Sold: 5}},
		{"down to exactly the committed units", 13, nil, counters{Stock: 13, Reserved: 8, Sold: 5}},
		{"one below the committed units", 12, reservation.ErrStockBelowCommitted, counters{Stock: 30, Available: 17, Reserved: 8, Sold: 5}},
		{"to zero", 0, reservation.ErrStockBelowCommitted, counters{Stock: 30, Available: 17, Reserved: 8, Sold: 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "rs", 30, 5, 3) // 10 in each bucket
			mustReserve(t, s, "rs", userIn(t, names, 0, "head"), 3)
			mustReserve(t, s, "rs", userIn(t, names, 1, "one"), 5)
			mustConfirm(t, s, mustReserve(t, s, "rs", userIn(t, names, 2, "two"), 5).ID)

			spec := itemSpec("rs", tc.stock, 5) // Buckets 0: unchanged
			res, err := s.Seed(ctx, spec)
			wantErr(t, "restock", err, tc.err)
			if err != nil && !strings.Contains(err.Error(), "8 units are reserved and 5 sold") {
				t.Fatalf("refusal %q does not name the item's committed units", err)
			}
			if err == nil && (res.Item.Buckets != 3 || itemCounters(res.Item) != tc.want) {
				t.Fatalf("restock answered %+v, want %+v over 3 buckets", res.Item, tc.want)
			}
			if it := mustItem(t, s, "rs"); itemCounters(it) != tc.want || it.Buckets != 3 {
				t.Fatalf("item = %+v, want %+v", it, tc.want)
			}
			if sum := checkBuckets(t, s, "rs", names); sum.total != tc.want.Stock {
				t.Fatalf("buckets %+v, want total %d", sum, tc.want.Stock)
			}
			// Exactly the available units are left to sell, wherever they are.
			for i := range tc.want.Available {
				mustReserve(t, s, "rs", userIn(t, names, int(i)%3, fmt.Sprintf("rest%d", i)), 1)
			}
			if _, _, err := s.Reserve(ctx, request(t, "rs", "one-more", 1, "")); !errors.Is(err, reservation.ErrSoldOut) {
				t.Fatalf("reserve past the available units: %v, want sold out", err)
			}
			checkBuckets(t, s, "rs", names)
		})
	}
}

// TestBucketsOfferChanges: every change of the offer reaches every bucket,
// where the buyers' scripts read it.
func TestBucketsOfferChanges(t *testing.T) {
	cases := []struct {
		name   string
		change func(spec *reservation.ItemSpec, now time.Time)
		check  func(t *testing.T, s *testStore, names []string)
	}{
		{"per-user limit", func(spec *reservation.ItemSpec, _ time.Time) { spec.PerUserLimit = 1 },
			func(t *testing.T, s *testStore, names []string) {
				for b := range names {
					user := userIn(t, names, b, "lim")
					mustReserve(t, s, "offer", user, 1)
					if _, _, err := s.Reserve(context.Background(), request(t, "offer", user, 1, "")); !errors.Is(err, reservation.ErrLimitExceeded) {
						t.Fatalf("second unit for %s: %v, want limit exceeded", user, err)
					}
				}
			}},
		{"hold", func(spec *reservation.ItemSpec, _ time.Time) { spec.Hold = 30 * time.Second },
			func(t *testing.T, s *testStore, names []string) {
				now := s.now(t)
				for b := range names {
					if r := mustReserve(t, s, "offer", userIn(t, names, b, "hold"), 1); !r.ExpiresAt.Equal(now.Add(30 * time.Second)) {
						t.Fatalf("hold in %s expires %v, want %v", names[b], r.ExpiresAt, now.Add(30*time.Second))
					}
				}
			}},
		{"name", func(spec *reservation.ItemSpec, _ time.Time) { spec.Name = "Renamed | ü" },
			func(t *testing.T, s *testStore, _ []string) {
				if it := mustItem(t, s, "offer"); it.Name != "Renamed | ü" {
					t.Fatalf("name %q", it.Name)
				}
			}},
		{"sale window closed", func(spec *reservation.ItemSpec, now time.Time) {
			spec.StartsAt, spec.EndsAt = now.Add(time.Hour), now.Add(2*time.Hour)
		}, func(t *testing.T, s *testStore, names []string) {
			for b := range names {
				if _, _, err := s.Reserve(context.Background(), request(t, "offer", userIn(t, names, b, "early"), 1, "")); !errors.Is(err, reservation.ErrSaleNotActive) {
					t.Fatalf("reserve in %s before the sale: %v, want not active", names[b], err)
				}
			}
		}},
		{"sale window open", func(spec *reservation.ItemSpec, now time.Time) {
			spec.StartsAt, spec.EndsAt = now.Add(-time.Hour), now.Add(time.Hour)
		}, func(t *testing.T, s *testStore, names []string) {
			for b := range names {
				mustReserve(t, s, "offer", userIn(t, names, b, "open"), 1)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "offer", 12, 2, 3)
			s.advance(t, time.Second)
			spec := itemSpec("offer", 12, 2)
			tc.change(&spec, s.now(t))
			res, err := s.Seed(ctx, spec)
			if err != nil || res.Created || res.Item.Buckets != 3 {
				t.Fatalf("update with Buckets 0: %+v, %v; want updated, still 3 buckets", res, err)
			}
			head := s.rdb.HGetAll(ctx, s.key("offer", "item")).Val()
			for _, name := range names[1:] {
				f := s.rdb.HGetAll(ctx, s.key(name, "item")).Val()
				for _, k := range []string{"per_user_limit", "hold_ms", "name", "starts_ms", "ends_ms", "buckets"} {
					if f[k] != head[k] {
						t.Fatalf("bucket %s has %s=%q, the head %q", name, k, f[k], head[k])
					}
				}
			}
			tc.check(t, s, names)
			checkBuckets(t, s, "offer", names)
		})
	}
}

// TestBucketsCountImmutable: the count is set when the item is created; a
// seed naming another count changes nothing, Buckets 0 keeps it.
func TestBucketsCountImmutable(t *testing.T) {
	cases := []struct {
		name        string
		create, set int
		err         error
		want        int
	}{
		{"3 to 5", 3, 5, reservation.ErrBucketsImmutable, 3},
		{"3 to 1", 3, 1, reservation.ErrBucketsImmutable, 3},
		{"3 to 2", 3, 2, reservation.ErrBucketsImmutable, 3},
		{"1 to 3", 1, 3, reservation.ErrBucketsImmutable, 1},
		{"the default to 2", 0, 2, reservation.ErrBucketsImmutable, 1},
		{"3 to 0 keeps 3", 3, 0, nil, 3},
		{"3 to 3", 3, 3, nil, 3},
		{"1 to 1", 1, 1, nil, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			spec := itemSpec("fix", 9, 2)
			spec.Buckets = tc.create
			mustSeed(t, s, spec)
			names := redisstore.Buckets("fix", max(tc.create, 1))
			mustReserve(t, s, "fix", userIn(t, names, len(names)-1, "u"), 2)
			before := map[string]map[string]any{}
			for _, name := range names {
				before[name] = snapshot(t, s, name)
			}
			spec.Buckets, spec.Stock, spec.Name = tc.set, 11, "changed"
			res, err := s.Seed(ctx, spec)
			wantErr(t, "seed", err, tc.err)
			if err != nil {
				for _, name := range names {
					wantUnchanged(t, s, name, before[name])
				}
			} else if res.Item.Buckets != tc.want || res.Item.Stock != 11 {
				t.Fatalf("seed = %+v, want %d buckets", res.Item, tc.want)
			}
			if it := mustItem(t, s, "fix"); it.Buckets != tc.want {
				t.Fatalf("item has %d buckets, want %d", it.Buckets, tc.want)
			}
			checkBuckets(t, s, "fix", names)
		})
	}
}

// TestBucketsInterruptedTransfer: a mover that dies between take and give
// (or between give and forgetting the record) loses no unit: readers count
// the units in transit as available, the invariant holds throughout, and
// the sweeper delivers the transfer exactly once after transferStale (2 s).
func TestBucketsInterruptedTransfer(t *testing.T) {
	cases := []struct {
		name        string
		give        bool
		wantTransit int64
	}{
		{"died after take", false, 2},
		{"died after give, before forgetting the record", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			names := seedSplit(t, s, "xfer", 9, 9, 3) // 3 in each bucket
			id, units := stuckTransfer(t, s, 3, names[1], names[2], 2, tc.give)
			if units != 2 {
				t.Fatalf("take moved %d units, want 2", units)
			}
			whole := counters{Stock: 9, Available: 9}
			check := func(when string, transit, stock2 int64) {
				t.Helper()
				if it := mustItem(t, s, "xfer"); itemCounters(it) != whole {
					t.Fatalf("%s: Item = %+v, want %+v (units in transit are available)", when, it, whole)
				}
				got, _, err := s.Counters(ctx, 0)
				if err != nil || len(got) != 1 || got[0] != (reservation.Item{SKU: "xfer", Stock: 9, Available: 9}) {
					t.Fatalf("%s: Counters = %+v, %v", when, got, err)
				}
				if sum := checkBuckets(t, s, "xfer", names); sum.transit != transit {
					t.Fatalf("%s: %d units in transit, want %d", when, sum.transit, transit)
				}
				if got := rawCounters(t, s, names[2]).Stock; got != stock2 {
					t.Fatalf("%s: receiver holds %d units, want %d", when, got, stock2)
				}
			}
			delivered := int64(3 + 2)
			check("stuck", tc.wantTransit, 3+2-tc.wantTransit)

			// Not stale yet: the mover might still be on its way.
			s.advance(t, 1900*time.Millisecond)
			if _, err := s.SweepDue(ctx, 64); err != nil {
				t.Fatal(err)
			}
			if s.rdb.HExists(ctx, s.key(names[1], "xout"), id).Val() != true {
				t.Fatalf("the sweeper finished a transfer younger than 2 s")
			}
			check("young", tc.wantTransit, 3+2-tc.wantTransit)

			s.advance(t, 100*time.Millisecond)
			for i := range 2 {
				if _, err := s.SweepDue(ctx, 64); err != nil {
					t.Fatal(err)
				}
				if n := s.rdb.HLen(ctx, s.key(names[1], "xout")).Val(); n != 0 {
					t.Fatalf("sweep %d: %d transfers still recorded", i, n)
				}
				check(fmt.Sprintf("swept %d times", i+1), 0, delivered)
			}
			// The mover wakes up and delivers again: counted once.
			rep, err := goredis.NewScript(string(luascripts.Give())).Run(ctx, s.rdb, s.ScriptKeys(names[2]), id, units).Slice()
			if err != nil || rep[0] != "duplicate" {
				t.Fatalf("late give: %v, %v; want duplicate", rep, err)
			}
			check("late give", 0, delivered)

			// All nine units sell, to one buyer.
			if _, _, err := s.Reserve(ctx, request(t, "xfer", userIn(t, names, 0, "all"), 9, "")); err != nil {
				t.Fatalf("reserve all 9: %v", err)
			}
			checkBuckets(t, s, "xfer", names)
		})
	}
}

// TestBucketsInTransitNotSellable documents the window the design names:
// units in transit are counted as available but cannot be held until they
// arrive (at the latest when the sweeper finishes the transfer).
func TestBucketsInTransitNotSellable(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "window", 6, 6, 2) // 3 and 3
	stuckTransfer(t, s, 2, names[0], names[1], 3, false)
	user := userIn(t, names, 1, "all")
	if _, _, err := s.Reserve(ctx, request(t, "window", user, 6, "")); !errors.Is(err, reservation.ErrSoldOut) {
		t.Fatalf("reserve 6 with 3 in transit: %v, want sold out", err)
	}
	s.advance(t, 2*time.Second)
	if _, err := s.SweepDue(ctx, 64); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Reserve(ctx, request(t, "window", user, 6, "")); err != nil {
		t.Fatalf("reserve 6 after the sweep: %v", err)
	}
	checkBuckets(t, s, "window", names)
}

// TestBucketsCountersAndCatalogue: the catalogue names every bucket (the
// sweeper and the outbox reader walk it); Counters folds them into one
// entry per SKU, units in transit counted as available.
func TestBucketsCountersAndCatalogue(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("solo", 5, 2))
	names := seedSplit(t, s, "split", 9, 3, 3)
	mustReserve(t, s, "split", userIn(t, names, 1, "r"), 2)
	mustConfirm(t, s, mustReserve(t, s, "split", userIn(t, names, 2, "c"), 1).ID)
	stuckTransfer(t, s, 3, names[0], names[1], 1, false)

	catalogue := s.rdb.SMembers(ctx, s.prefix+":catalog").Val()
	slices.Sort(catalogue)
	want := append([]string{"solo"}, names...)
	slices.Sort(want)
	if !slices.Equal(catalogue, want) {
		t.Fatalf("catalogue %v, want %v", catalogue, want)
	}
	got, total, err := s.Counters(ctx, 0)
	wantItems := []reservation.Item{
		{SKU: "solo", Stock: 5, Available: 5},
		{SKU: "split", Stock: 9, Available: 6, Reserved: 2, Sold: 1},
	}
	if err != nil || total != 2 || !slices.Equal(got, wantItems) {
		t.Fatalf("Counters = %+v, %d, %v; want %+v of 2 items", got, total, err, wantItems)
	}
	if got, _, err := s.Counters(ctx, 1); err != nil || !slices.Equal(got, wantItems[:1]) {
		t.Fatalf("Counters(1) = %+v, %v", got, err)
	}
	if it := mustItem(t, s, "split"); itemCounters(it) != (counters{Stock: 9, Available: 6, Reserved: 2, Sold: 1}) {
		t.Fatalf("Item = %+v", it)
	}
}

// TestBucketsOutbox: each bucket appends to its own outbox; the reader
// gives its entries the item's SKU and the bucket's name, and acknowledges
// and counts failures on that bucket's stream. Item entries come from the
// head only and carry the count.
func TestBucketsOutbox(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "ob", 9, 3, 3)
	var ids []string
	for b := range names {
		ids = append(ids, mustReserve(t, s, "ob", userIn(t, names, b, "u"), 1).ID)
	}
	mustConfirm(t, s, ids[1])
	// head: item, hold; bucket 1: hold, confirm; bucket 2: hold.
	wantLen := []int64{2, 2, 1}
	if n, err := s.ItemBacklog(ctx, "ob"); err != nil || n != 5 {
		t.Fatalf("ItemBacklog = %d, %v; want 5", n, err)
	}
	if changes, err := s.Unsynced(ctx, "ob", 3); err != nil || len(changes) != 5 {
		t.Fatalf("Unsynced = %d changes, %v; want 5", len(changes), err)
	}

	o := newOutbox(t, s, "c1")
	entries := mustRead(t, o, 100)
	byBucket := map[string][]reservation.OutboxEntry{}
	for _, e := range entries {
		if e.Err != nil || e.SKU != "ob" {
			t.Fatalf("entry %+v: want SKU ob, no error", e)
		}
		byBucket[e.Bucket] = append(byBucket[e.Bucket], e)
		switch c := e.Change; {
		case c.Item != nil:
			if e.Bucket != "ob" || c.Item.SKU != "ob" || c.Item.Buckets != 3 || c.Item.Stock != 9 {
				t.Fatalf("item entry %+v from %s: want the head's, 3 buckets, stock 9", *c.Item, e.Bucket)
			}
		case c.Reservation != nil:
			if c.Reservation.SKU != "ob" || bucketOf(c.Reservation.ID) != e.Bucket {
				t.Fatalf("reservation entry %+v from %s", *c.Reservation, e.Bucket)
			}
		default:
			t.Fatalf("empty change %+v", e)
		}
	}
	for b, name := range names {
		if got := int64(len(byBucket[name])); got != wantLen[b] {
			t.Fatalf("%d entries from %s, want %d: %+v", got, name, wantLen[b], byBucket[name])
		}
	}

	if err := o.Ack(ctx, byBucket[names[1]]); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for b, name := range names {
		want := wantLen[b]
		if b == 1 {
			want = 0
		}
		if n := s.rdb.XLen(ctx, s.key(name, "outbox")).Val(); n != want {
			t.Fatalf("after acking bucket 1: %s outbox has %d entries, want %d", name, n, want)
		}
		if n := pendingCount(t, s, name); n != want {
			t.Fatalf("after acking bucket 1: %s has %d pending, want %d", name, n, want)
		}
	}

	bad := byBucket[names[2]][0]
	for try, wantDead := range []bool{false, true} {
		dead, err := o.Fail(ctx, bad, "test")
		if err != nil || dead != wantDead {
			t.Fatalf("Fail %d = %v, %v; want dead=%v", try, dead, err, wantDead)
		}
	}
	if n := s.rdb.XLen(ctx, s.key(names[2], "dead")).Val(); n != 1 {
		t.Fatalf("%s dead letters: %d, want 1", names[2], n)
	}
	for _, name := range names[:2] {
		if n := s.rdb.Exists(ctx, s.key(name, "dead"), s.key(name, "tries")).Val(); n != 0 {
			t.Fatalf("a failure of %s's entry touched %s", names[2], name)
		}
	}
	if n, err := s.ItemBacklog(ctx, "ob"); err != nil || n != 2 {
		t.Fatalf("ItemBacklog after ack and park = %d, %v; want the head's 2", n, err)
	}
}

// TestBucketsRestore: a bucketed item rebuilt from its record, after Redis
// lost all of it or some of its buckets (the head among them or not).
// Reservations go back to the buckets their ids name, a rebuilt bucket
// other than the head holds just their units, a surviving one keeps its
// own; the head ends up with the rest of the total, so nothing is counted
// twice or lost, and exactly the available units can be sold afterwards.
func TestBucketsRestore(t *testing.T) {
	cases := []struct {
		name string
		lost []int // the buckets Redis lost, by index (0: the head)
	}{
		{"every bucket lost", []int{0, 1, 2}},
		{"the head and bucket 2 lost", []int{0, 2}},
		{"the head and bucket 1 lost", []int{0, 1}},
		{"bucket 2 lost, the head kept", []int{2}},
		{"buckets 1 and 2 lost, the head kept", []int{1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			spec := itemSpec("rst", 12, 3)
			spec.Buckets = 3
			names := seedSplit(t, s, "rst", 12, 3, 3) // 4 in each bucket
			u := []string{userIn(t, names, 0, "u"), userIn(t, names, 1, "u"), userIn(t, names, 2, "u")}
			type made struct {
				id   string
				idem string
			}
			var all []made
			hold := func(b, qty int, key string) string {
				r, _, err := s.Reserve(ctx, request(t, "rst", u[b], qty, key))
				if err != nil {
					t.Fatalf("reserve: %v", err)
				}
				idem := ""
				if key != "" {
					idem = strconv.Itoa(len(u[b])) + ":" + u[b] + ":" + key
				}
				all = append(all, made{r.ID, idem})
				return r.ID
			}
			headHold := hold(0, 2, "")
			mustConfirm(t, s, hold(1, 2, ""))
			keyed := hold(1, 1, "k")
			mustCancel(t, s, hold(2, 2, ""))
			lastHold := hold(2, 1, "")
			survivor := -1 // a bucket other than the head that Redis kept
			for b := 1; b < 3 && survivor < 0; b++ {
				if !slices.Contains(tc.lost, b) {
					survivor = b
				}
			}
			if survivor > 0 {
				// Its mover died mid-transfer, to the head.
				if _, n := stuckTransfer(t, s, 3, names[survivor], names[0], 1, false); n != 1 {
					t.Fatalf("take moved %d", n)
				}
			}
			before := mustItem(t, s, "rst")
			if want := (counters{Stock: 12, Available: 6, Reserved: 4, Sold: 2}); itemCounters(before) != want {
				t.Fatalf("before the loss: %+v, want %+v", before, want)
			}
			snap := reservation.Snapshot{Item: reservation.ItemRecord{ItemSpec: spec, Rev: 1,
				CreatedAt: before.CreatedAt, UpdatedAt: before.UpdatedAt}}
			for _, m := range all {
				r, err := s.Reservation(ctx, m.id)
				if err != nil {
					t.Fatal(err)
				}
				snap.Reservations = append(snap.Reservations, reservation.RecordedReservation{Reservation: r, IdempotencyField: m.idem})
			}
			var survivorStock int64
			if survivor > 0 {
				survivorStock = rawCounters(t, s, names[survivor]).Stock
			}
			for _, b := range tc.lost {
				name := names[b]
				keys := s.rdb.Keys(ctx, s.prefix+":{"+name+"}:*").Val()
				if len(keys) == 0 {
					t.Fatalf("no keys of %s", name)
				}
				s.rdb.Del(ctx, keys...)
			}

			restored, err := s.Restore(ctx, snap)
			if err != nil || !restored {
				t.Fatalf("Restore = %v, %v", restored, err)
			}
			if restored, err := s.Restore(ctx, snap); err != nil || restored {
				t.Fatalf("second Restore = %v, %v; want nothing to do", restored, err)
			}
			for _, r := range snap.Reservations {
				if !s.rdb.HExists(ctx, s.key(bucketOf(r.ID), "res"), r.ID).Val() {
					t.Fatalf("reservation %s not back in %s", r.ID, bucketOf(r.ID))
				}
			}
			// Rebuilt buckets other than the head hold their committed units,
			// a survivor what it held; the head the rest of the total
			// (checkBuckets: the stocks and the units in transit add up to it).
			committed := map[int]counters{1: {Stock: 3, Reserved: 1, Sold: 2}, 2: {Stock: 1, Reserved: 1}}
			for b := 1; b < 3; b++ {
				switch {
				case b == survivor:
					if got := rawCounters(t, s, names[b]).Stock; got != survivorStock {
						t.Fatalf("the surviving bucket holds %d, held %d", got, survivorStock)
					}
				case slices.Contains(tc.lost, b):
					wantCounters(t, s, names[b], committed[b])
				}
			}
			if it := mustItem(t, s, "rst"); itemCounters(it) != itemCounters(before) || it.Buckets != 3 {
				t.Fatalf("restored item %+v, want the counters of %+v", it, before)
			}
			checkBuckets(t, s, "rst", names)

			// The restored holds live on, under their ids.
			if r, replayed, err := s.Reserve(ctx, request(t, "rst", u[1], 1, "k")); err != nil || !replayed || r.ID != keyed {
				t.Fatalf("replay of the restored key: %+v %v %v", r, replayed, err)
			}
			if _, _, err := s.Reserve(ctx, request(t, "rst", u[1], 1, "")); !errors.Is(err, reservation.ErrLimitExceeded) {
				t.Fatalf("%s holds 3 of 3 after the restore: %v, want limit exceeded", u[1], err)
			}
			mustConfirm(t, s, lastHold)
			mustCancel(t, s, headHold)
			s.advance(t, 2*time.Second) // the stuck transfer, if any, is stale
			if _, err := s.SweepDue(ctx, 64); err != nil {
				t.Fatal(err)
			}
			if sum := checkBuckets(t, s, "rst", names); sum.transit != 0 {
				t.Fatalf("after the sweep: %+v", sum)
			}
			// 6 available + 2 cancelled: exactly 8 more units sell.
			for i := range 8 {
				mustReserve(t, s, "rst", fmt.Sprintf("after-%d", i), 1)
			}
			if _, _, err := s.Reserve(ctx, request(t, "rst", "after-x", 1, "")); !errors.Is(err, reservation.ErrSoldOut) {
				t.Fatalf("reserve past the total: %v, want sold out", err)
			}
			if sum := checkBuckets(t, s, "rst", names); sum.reserved+sum.sold != 12 || sum.available != 0 {
				t.Fatalf("at the end: %+v, want all 12 committed", sum)
			}
		})
	}
}

// TestBucketsSpreadOverTheSlotRing: bucket b of n lies in the b-th n-th of
// the slot ring counted from the head's slot, so n buckets land in n
// disjoint ranges (on n masters when each owns one range).
func TestBucketsSpreadOverTheSlotRing(t *testing.T) {
	// Published values: the CRC-16/XMODEM check value, and CLUSTER KEYSLOT
	// answers from the Redis documentation.
	for key, want := range map[string]int{"123456789": 0x31C3 % 16384, "foo": 12182, "somekey": 11058} {
		if got := redisstore.Slot(key); got != want {
			t.Fatalf("slot(%q) = %d, want %d", key, got, want)
		}
	}
	for _, sku := range []string{"hot", "sku-123", "a.b_c"} {
		for _, n := range []int{1, 2, 3, 4, 8, 64} {
			t.Run(fmt.Sprintf("%s over %d", sku, n), func(t *testing.T) {
				names := redisstore.Buckets(sku, n)
				if len(names) != n || names[0] != sku {
					t.Fatalf("Buckets = %v", names)
				}
				head := redisstore.Slot(sku)
				seen := map[int]string{}
				for b, name := range names {
					if b > 0 && !strings.HasPrefix(name, sku+"~") {
						t.Fatalf("bucket %d named %q", b, name)
					}
					if bucketOf(name+".x") != name {
						t.Fatalf("bucket name %q contains a dot", name)
					}
					off := (redisstore.Slot(name) - head + 16384) % 16384
					lo := b * 16384 / n
					if off < lo || off >= lo+16384/n {
						t.Fatalf("bucket %d (%s) is %d slots after the head, want %d..%d", b, name, off, lo, lo+16384/n-1)
					}
					part := off * n / 16384
					if prev, dup := seen[part]; dup {
						t.Fatalf("buckets %s and %s share part %d of the ring", prev, name, part)
					}
					seen[part] = name
				}
				if !slices.Equal(names, redisstore.Buckets(sku, n)) {
					t.Fatalf("Buckets is not deterministic")
				}
			})
		}
	}
}

// TestBucketsStaleLayout: an instance caches an item's bucket count. When
// Redis lost the item and it was created again with another count (no
// record held it, so nothing was restored), the cached count names buckets
// that no longer exist; a buyer must still reach the item.
func TestBucketsStaleLayout(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("5 buckets, then %d", n), func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			old := seedSplit(t, s, "again", 10, 2, 5)
			names := redisstore.Buckets("again", n)
			// A buyer whose home under the old count is a bucket the new
			// count does not have.
			var user string
			for i := 0; user == ""; i++ {
				u := "buyer-" + strconv.Itoa(i)
				if h := homeOf(old, u); !slices.Contains(names, h) {
					user = u
				}
			}
			mustReserve(t, s, "again", user, 1) // the instance learns 5
			s.mr.FlushAll()
			seedSplit(t, s, "again", 10, 2, n)
			r, _, err := s.Reserve(ctx, request(t, "again", user, 1, ""))
			if err != nil || bucketOf(r.ID) != homeOf(names, user) {
				t.Fatalf("reserve after the item came back with %d buckets: %+v, %v", n, r, err)
			}
			checkBuckets(t, s, "again", names)
		})
	}
}

// beforeFirstTake is a go-redis hook that runs move once, just before the
// first take.lua call its client sends: a way to put another buyer's pull
// between a buyer's refusal in its home bucket and its own pull.
type beforeFirstTake struct {
	sha  string
	move func() error

	done atomic.Bool // the store's index hints share the client
	err  error
}

func (h *beforeFirstTake) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *beforeFirstTake) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.check(cmd)
		return next(ctx, cmd)
	}
}

func (h *beforeFirstTake) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, cmd := range cmds {
			h.check(cmd)
		}
		return next(ctx, cmds)
	}
}

func (h *beforeFirstTake) check(cmd goredis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && args[1] == h.sha && h.done.CompareAndSwap(false, true) {
		h.err = h.move()
	}
}

// TestBucketsRefusalAsksHomeAgain: a buyer whose home bucket is empty pulls
// from the others; when another buyer of the same bucket pulled the units
// into it first, the pull finds nothing, yet the units are at home.
func TestBucketsRefusalAsksHomeAgain(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "home", 1, 1, 2) // the one unit stays in the head
	// The other buyer's pull, finished: take.lua, give.lua, record forgotten.
	pull := func() error {
		take := goredis.NewScript(string(luascripts.Take()))
		rep, err := take.Run(ctx, s.rdb, s.ScriptKeys(names[0]), "other", names[1], 1, "1", 64, 2).Slice()
		if err != nil || rep[0] != "taken" {
			return fmt.Errorf("take: %v, %v", rep, err)
		}
		give := goredis.NewScript(string(luascripts.Give()))
		if rep, err := give.Run(ctx, s.rdb, s.ScriptKeys(names[1]), "other", 1).Slice(); err != nil || rep[0] != "given" {
			return fmt.Errorf("give: %v, %v", rep, err)
		}
		return s.rdb.HDel(ctx, s.key(names[0], "xout"), "other").Err()
	}
	hook := &beforeFirstTake{sha: goredis.NewScript(string(luascripts.Take())).Hash(), move: pull}
	client := goredis.NewClient(&goredis.Options{Addr: s.mr.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(hook)
	buyer := newTestStore(t, client, s.mr, s.prefix)

	r, _, err := buyer.Reserve(ctx, request(t, "home", userIn(t, names, 1, "buyer"), 1, ""))
	if !hook.done.Load() || hook.err != nil {
		t.Fatalf("the other buyer's pull did not run: done=%v err=%v", hook.done.Load(), hook.err)
	}
	if err != nil || bucketOf(r.ID) != names[1] {
		t.Fatalf("reserve with the unit pulled home by another buyer: %+v, %v; want a hold in %s", r, err, names[1])
	}
	checkBuckets(t, s, "home", names)
}

// TestBucketsSweepPastAnUndeliverableTransfer: a stale transfer whose
// receiving bucket is gone (Redis lost it, recovery has not rebuilt it)
// stays recorded and is reported, but the sweep goes on: the other items'
// stale transfers are delivered and their due holds settled.
func TestBucketsSweepPastAnUndeliverableTransfer(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	lost := seedSplit(t, s, "a", 4, 1, 2)
	fine := seedSplit(t, s, "b", 4, 1, 2)
	lostID, _ := stuckTransfer(t, s, 2, lost[0], lost[1], 1, false)
	fineID, _ := stuckTransfer(t, s, 2, fine[0], fine[1], 1, false)
	mustReserve(t, s, "b", userIn(t, fine, 0, "due"), 1)
	s.rdb.Del(ctx, s.rdb.Keys(ctx, s.prefix+":{"+lost[1]+"}:*").Val()...)
	s.advance(t, 10*time.Minute)

	n, err := s.SweepDue(ctx, 64)
	if err == nil || !strings.Contains(err.Error(), lost[1]) {
		t.Fatalf("SweepDue error %v, want one naming the lost bucket %s", err, lost[1])
	}
	if n != 1 {
		t.Fatalf("SweepDue expired %d holds, want 1", n)
	}
	if !s.rdb.HExists(ctx, s.key(lost[0], "xout"), lostID).Val() {
		t.Fatalf("the undeliverable transfer's record is gone")
	}
	if s.rdb.HExists(ctx, s.key(fine[0], "xout"), fineID).Val() {
		t.Fatalf("the other item's stale transfer was not delivered")
	}
	if sum := checkBuckets(t, s, "b", fine); sum.transit != 0 || sum.available != 4 {
		t.Fatalf("item b after the sweep: %+v", sum)
	}
}

// TestBucketsRestoreAfterAGivenTransfer: a mover died after give.lua but
// before forgetting its record; then Redis lost the receiving bucket, and
// its receipt with it. The units arrived (and were sold there) before the
// loss: the rebuild must not add them to the rebuilt bucket again.
func TestBucketsRestoreAfterAGivenTransfer(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	spec := itemSpec("given", 6, 3)
	spec.Buckets = 3
	names := seedSplit(t, s, "given", 6, 3, 3) // 2 in each bucket
	id, _ := stuckTransfer(t, s, 3, names[2], names[1], 1, true)
	held := mustReserve(t, s, "given", userIn(t, names, 1, "r"), 3) // bucket 1's three units
	before := mustItem(t, s, "given")
	rec, err := s.Reservation(ctx, held.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.rdb.Del(ctx, s.rdb.Keys(ctx, s.prefix+":{"+names[1]+"}:*").Val()...)

	snap := reservation.Snapshot{
		Item:         reservation.ItemRecord{ItemSpec: spec, Rev: 1, CreatedAt: before.CreatedAt, UpdatedAt: before.UpdatedAt},
		Reservations: []reservation.RecordedReservation{{Reservation: rec}},
	}
	if restored, err := s.Restore(ctx, snap); err != nil || !restored {
		t.Fatalf("Restore = %v, %v", restored, err)
	}
	if s.rdb.HExists(ctx, s.key(names[2], "xout"), id).Val() {
		t.Fatalf("the transfer is still recorded after the rebuild")
	}
	if it := mustItem(t, s, "given"); itemCounters(it) != itemCounters(before) {
		t.Fatalf("after the rebuild %+v, before %+v", it, before)
	}
	checkBuckets(t, s, "given", names)
	for i := range before.Available {
		mustReserve(t, s, "given", fmt.Sprintf("rest-%d", i), 1)
	}
	if _, _, err := s.Reserve(ctx, request(t, "given", "one-more", 1, "")); !errors.Is(err, reservation.ErrSoldOut) {
		t.Fatalf("reserve past the total: %v, want sold out", err)
	}
}
