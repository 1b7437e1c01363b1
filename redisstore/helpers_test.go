package redisstore_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// testStore is the Store under test plus what the tests need to look behind
// it: the raw client, the key prefix, and the miniredis (nil on real Redis).
type testStore struct {
	*redisstore.Store
	rdb    *goredis.Client
	mr     *miniredis.Miniredis
	prefix string
}

// newMiniStore returns a Store on a fresh miniredis whose clock stands still
// until advanced.
func newMiniStore(t testing.TB) *testStore {
	t.Helper()
	mr, rdb := redistest.Miniredis(t)
	return newTestStore(t, rdb, mr, "fs")
}

// storeKind is a Redis a test can run on. storeKinds holds miniredis, and
// the real Redis too when the tests are built with the integration tag
// (integration_test.go adds it).
type storeKind struct {
	name string
	open func(testing.TB) *testStore
}

var storeKinds = []storeKind{{name: "miniredis", open: newMiniStore}}

func newTestStore(t testing.TB, rdb *goredis.Client, mr *miniredis.Miniredis, prefix string) *testStore {
	t.Helper()
	st, err := redisstore.New(context.Background(), rdb, prefix)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return &testStore{Store: st, rdb: rdb, mr: mr, prefix: prefix}
}

// key is one of an item's keys as lib.lua lists them: item, holds, users, res, idem.
func (s *testStore) key(sku, name string) string {
	return s.prefix + ":{" + sku + "}:" + name
}

// now is the time the scripts see, to the millisecond they work in.
func (s *testStore) now(t testing.TB) time.Time {
	t.Helper()
	now, err := s.rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return now.Truncate(time.Millisecond)
}

// advance moves the miniredis clock that the scripts read.
func (s *testStore) advance(t testing.TB, d time.Duration) {
	t.Helper()
	if s.mr == nil {
		t.Fatalf("advance needs miniredis")
	}
	redistest.Advance(s.mr, d)
}

func itemSpec(sku string, stock int64, perUserLimit int) reservation.ItemSpec {
	return reservation.ItemSpec{
		SKU:          sku,
		Name:         "Item " + sku,
		Stock:        stock,
		PerUserLimit: perUserLimit,
		Hold:         10 * time.Minute,
	}
}

func mustSeed(t testing.TB, s *testStore, spec reservation.ItemSpec) reservation.SeedResult {
	t.Helper()
	res, err := s.Seed(context.Background(), spec)
	if err != nil {
		t.Fatalf("seed %+v: %v", spec, err)
	}
	assertInvariant(t, s, spec.SKU)
	return res
}

func newID(t testing.TB, sku string) string {
	t.Helper()
	id, err := reservation.NewID(sku)
	if err != nil {
		t.Fatalf("NewID: %v", err)
	}
	return id
}

func request(t testing.TB, sku, user string, qty int, idemKey string) reservation.ReserveRequest {
	t.Helper()
	return reservation.ReserveRequest{ID: newID(t, sku), SKU: sku, UserID: user, Quantity: qty, IdempotencyKey: idemKey}
}

// mustReserve takes a fresh hold and fails the test unless it is created.
func mustReserve(t testing.TB, s *testStore, sku, user string, qty int) reservation.Reservation {
	t.Helper()
	req := request(t, sku, user, qty, "")
	r, replayed, err := s.Reserve(context.Background(), req)
	if err != nil || replayed {
		t.Fatalf("reserve %d of %s for %s: replayed=%v err=%v", qty, sku, user, replayed, err)
	}
	assertInvariant(t, s, sku)
	return r
}

func mustConfirm(t testing.TB, s *testStore, id string) reservation.Reservation {
	t.Helper()
	r, err := s.Confirm(context.Background(), id)
	if err != nil {
		t.Fatalf("confirm %s: %v", id, err)
	}
	sku, _ := reservation.ParseID(id)
	assertInvariant(t, s, sku)
	return r
}

func mustCancel(t testing.TB, s *testStore, id string) reservation.Reservation {
	t.Helper()
	r, err := s.Cancel(context.Background(), id)
	if err != nil {
		t.Fatalf("cancel %s: %v", id, err)
	}
	sku, _ := reservation.ParseID(id)
	assertInvariant(t, s, sku)
	return r
}

// wantErr fails the test unless err is want (nil: no error), by errors.Is.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// counters are an item's counters as stored, read without running any
// script (so without settling anything).
type counters struct{ Stock, Available, Reserved, Sold int64 }

func rawCounters(t testing.TB, s *testStore, sku string) counters {
	t.Helper()
	vals, err := s.rdb.HMGet(context.Background(), s.key(sku, "item"), "stock", "available", "reserved", "sold").Result()
	if err != nil {
		t.Fatalf("HMGET %s: %v", sku, err)
	}
	n := make([]int64, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			t.Fatalf("item %s: counter %d missing (%v)", sku, i, vals)
		}
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			t.Fatalf("item %s: counter %d = %q: %v", sku, i, str, err)
		}
	}
	return counters{Stock: n[0], Available: n[1], Reserved: n[2], Sold: n[3]}
}

// wantCounters checks the stored counters and the invariant.
func wantCounters(t testing.TB, s *testStore, sku string, want counters) {
	t.Helper()
	if got := rawCounters(t, s, sku); got != want {
		t.Fatalf("item %s counters = %+v, want %+v", sku, got, want)
	}
	assertInvariant(t, s, sku)
}

// assertInvariant checks, on the stored data of one item, that
// available+reserved+sold == stock with none negative, and that the counters
// agree with the records behind them: reserved is the units of pending
// records, each of which is in the holds index at its expiry; sold is the
// units of confirmed records; each user's allowance is their pending plus
// confirmed units.
func assertInvariant(t testing.TB, s *testStore, sku string) {
	t.Helper()
	ctx := context.Background()
	c := rawCounters(t, s, sku)
	if c.Stock < 0 || c.Available < 0 || c.Reserved < 0 || c.Sold < 0 {
		t.Fatalf("item %s: negative counter: %+v", sku, c)
	}
	if c.Available+c.Reserved+c.Sold != c.Stock {
		t.Fatalf("item %s: available+reserved+sold = %d+%d+%d != stock %d",
			sku, c.Available, c.Reserved, c.Sold, c.Stock)
	}

	recs, err := s.rdb.HGetAll(ctx, s.key(sku, "res")).Result()
	if err != nil {
		t.Fatalf("HGETALL res: %v", err)
	}
	holds, err := s.rdb.ZRangeWithScores(ctx, s.key(sku, "holds"), 0, -1).Result()
	if err != nil {
		t.Fatalf("ZRANGE holds: %v", err)
	}
	users, err := s.rdb.HGetAll(ctx, s.key(sku, "users")).Result()
	if err != nil {
		t.Fatalf("HGETALL users: %v", err)
	}
	held := make(map[string]float64, len(holds)) // id -> expires_ms
	for _, z := range holds {
		held[z.Member.(string)] = z.Score
	}
	var pending, confirmed int64
	byUser := map[string]int64{}
	for id, raw := range recs {
		rec := parseRecord(t, id, raw)
		switch rec.status {
		case "pending":
			pending += rec.qty
			byUser[rec.user] += rec.qty
			exp, ok := held[id]
			if !ok || int64(exp) != rec.expires {
				t.Fatalf("item %s: pending %s (expires %d) not in holds at its expiry (%v, %v)", sku, id, rec.expires, exp, ok)
			}
			delete(held, id)
		case "confirmed":
			confirmed += rec.qty
			byUser[rec.user] += rec.qty
		case "cancelled", "expired":
		default:
			t.Fatalf("item %s: record %s has status %q", sku, id, rec.status)
		}
	}
	if len(held) > 0 {
		t.Fatalf("item %s: holds without a pending record: %v", sku, held)
	}
	if pending != c.Reserved || confirmed != c.Sold {
		t.Fatalf("item %s: records hold %d pending and %d confirmed units, counters say reserved %d sold %d",
			sku, pending, confirmed, c.Reserved, c.Sold)
	}
	gotUsers := make(map[string]int64, len(users))
	for u, v := range users {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("item %s: user %s allowance %q", sku, u, v)
		}
		gotUsers[u] = n
	}
	if !maps.Equal(gotUsers, byUser) {
		t.Fatalf("item %s: users hash %v, records say %v", sku, gotUsers, byUser)
	}
}

type record struct {
	status  string
	qty     int64
	expires int64
	user    string
}

// parseRecord reads lib.lua's "status|quantity|created_ms|expires_ms|updated_ms|user".
func parseRecord(t testing.TB, id, raw string) record {
	t.Helper()
	f := strings.SplitN(raw, "|", 6)
	if len(f) != 6 {
		t.Fatalf("record %s = %q: not 6 fields", id, raw)
	}
	qty, err1 := strconv.ParseInt(f[1], 10, 64)
	exp, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("record %s = %q: bad number", id, raw)
	}
	return record{status: f[0], qty: qty, expires: exp, user: f[5]}
}

// rawStatus is the status a record has in storage, which stays "pending"
// after its expiry until something settles it.
func rawStatus(t testing.TB, s *testStore, id string) string {
	t.Helper()
	sku, _ := reservation.ParseID(id)
	raw, err := s.rdb.HGet(context.Background(), s.key(sku, "res"), id).Result()
	if err != nil {
		t.Fatalf("HGET res %s: %v", id, err)
	}
	return parseRecord(t, id, raw).status
}

// snapshot is everything stored for one item, to show that a refused call
// changed nothing.
func snapshot(t testing.TB, s *testStore, sku string) map[string]any {
	t.Helper()
	ctx := context.Background()
	out := map[string]any{}
	for _, name := range []string{"item", "users", "res", "idem"} {
		v, err := s.rdb.HGetAll(ctx, s.key(sku, name)).Result()
		if err != nil {
			t.Fatalf("HGETALL %s: %v", name, err)
		}
		out[name] = v
	}
	z, err := s.rdb.ZRangeWithScores(ctx, s.key(sku, "holds"), 0, -1).Result()
	if err != nil {
		t.Fatalf("ZRANGE holds: %v", err)
	}
	out["holds"] = z
	return out
}

func wantUnchanged(t testing.TB, s *testStore, sku string, before map[string]any) {
	t.Helper()
	if after := snapshot(t, s, sku); !reflect.DeepEqual(before, after) {
		t.Fatalf("item %s changed:\nbefore %v\nafter  %v", sku, before, after)
	}
}

// idemFields is an idem hash's idempotency fields, without the reverse
// fields ("#<reservation id>" -> field) that let a key leave with its
// reservation; it checks that each reverse field names its forward one.
func idemFields(h map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	for k, v := range h {
		if id, ok := strings.CutPrefix(k, "#"); ok && out[v] != id {
			out["reverse field "+k] = v // a dangling reverse field shows in the comparison
		}
	}
	return out
}
