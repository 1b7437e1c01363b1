package redisstore_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// recordedRes is one reservation of item "r" as the durable record keeps it.
func recordedRes(t testing.TB, user string, qty int, st reservation.Status, created, expires, updated time.Time, idem string) reservation.RecordedReservation {
	t.Helper()
	return reservation.RecordedReservation{
		Reservation: reservation.Reservation{
			ID: newID(t, "r"), SKU: "r", UserID: user, Quantity: qty, Status: st,
			CreatedAt: created, ExpiresAt: expires, UpdatedAt: updated,
		},
		IdempotencyField: idem,
	}
}

// restoredItem is item "r"'s recorded offer, relative to t0.
func restoredItem(t0 time.Time, stock int64) reservation.ItemRecord {
	return reservation.ItemRecord{
		ItemSpec: reservation.ItemSpec{
			SKU: "r", Name: "Restored item", Stock: stock, PerUserLimit: 3, Hold: 10 * time.Minute,
			StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour), Buckets: 1,
		},
		Rev: 4, CreatedAt: t0.Add(-2 * time.Hour), UpdatedAt: t0.Add(-90 * time.Minute),
	}
}

func mustRestore(t testing.TB, s *testStore, snap reservation.Snapshot) {
	t.Helper()
	restored, err := s.Restore(context.Background(), snap)
	if err != nil || !restored {
		t.Fatalf("Restore = %v, %v; want restored", restored, err)
	}
	assertInvariant(t, s, snap.Item.SKU)
}

// wantRestored checks every key of a restored item against its snapshot:
// the records as written, the holds index (pending ones at their expiry),
// the idempotency fields, the users' allowances, the counters, the offer,
// and that nothing went to the outbox.
func wantRestored(t *testing.T, s *testStore, snap reservation.Snapshot, want counters, wantUsers map[string]int64) {
	t.Helper()
	ctx := context.Background()
	sku := snap.Item.SKU
	wantCounters(t, s, sku, want)

	wantRes, wantIdem := map[string]string{}, map[string]string{}
	var wantHolds []goredis.Z
	for _, r := range snap.Reservations {
		wantRes[r.ID] = fmt.Sprintf("%s|%d|%d|%d|%d|%s", r.Status, r.Quantity,
			r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(), r.UpdatedAt.UnixMilli(), r.UserID)
		if r.IdempotencyField != "" {
			wantIdem[r.IdempotencyField] = r.ID
		}
		if r.Status == reservation.StatusPending {
			wantHolds = append(wantHolds, goredis.Z{Score: float64(r.ExpiresAt.UnixMilli()), Member: r.ID})
		}
	}
	if got := s.rdb.HGetAll(ctx, s.key(sku, "res")).Val(); !maps.Equal(got, wantRes) {
		t.Fatalf("records:\ngot  %v\nwant %v", got, wantRes)
	}
	if got := idemFields(s.rdb.HGetAll(ctx, s.key(sku, "idem")).Val()); !maps.Equal(got, wantIdem) {
		t.Fatalf("idempotency fields:\ngot  %v\nwant %v", got, wantIdem)
	}
	slices.SortFunc(wantHolds, func(a, b goredis.Z) int {
		if a.Score != b.Score {
			return int(a.Score - b.Score)
		}
		return cmpString(a.Member.(string), b.Member.(string))
	})
	gotHolds := s.rdb.ZRangeWithScores(ctx, s.key(sku, "holds"), 0, -1).Val()
	if len(gotHolds) == 0 {
		gotHolds = nil
	}
	if !reflect.DeepEqual(gotHolds, wantHolds) {
		t.Fatalf("holds:\ngot  %v\nwant %v", gotHolds, wantHolds)
	}
	gotUsers := map[string]int64{}
	for u, v := range s.rdb.HGetAll(ctx, s.key(sku, "users")).Val() {
		gotUsers[u], _ = strconv.ParseInt(v, 10, 64)
	}
	if !maps.Equal(gotUsers, wantUsers) {
		t.Fatalf("users:\ngot  %v\nwant %v", gotUsers, wantUsers)
	}

	it := snap.Item
	fields := s.rdb.HGetAll(ctx, s.key(sku, "item")).Val()
	wantFields := map[string]string{
		"stock": strconv.FormatInt(want.Stock, 10), "available": strconv.FormatInt(want.Available, 10),
		"reserved": strconv.FormatInt(want.Reserved, 10), "sold": strconv.FormatInt(want.Sold, 10),
		"per_user_limit": strconv.Itoa(it.PerUserLimit), "hold_ms": strconv.FormatInt(it.Hold.Milliseconds(), 10),
		"name": it.Name, "created_ms": ms(it.CreatedAt), "updated_ms": ms(it.UpdatedAt),
		"rev": strconv.FormatInt(it.Rev, 10), "buckets": "1", "total": strconv.FormatInt(want.Stock, 10),
	}
	if !it.StartsAt.IsZero() {
		wantFields["starts_ms"] = ms(it.StartsAt)
	}
	if !it.EndsAt.IsZero() {
		wantFields["ends_ms"] = ms(it.EndsAt)
	}
	if !maps.Equal(fields, wantFields) {
		t.Fatalf("item hash:\ngot  %v\nwant %v", fields, wantFields)
	}
	if ok, err := s.rdb.SIsMember(ctx, s.prefix+":catalog", sku).Result(); err != nil || !ok {
		t.Fatalf("restored item is not in the catalogue: %v %v", ok, err)
	}
	if n := s.rdb.Exists(ctx, s.key(sku, "outbox")).Val(); n != 0 {
		t.Fatalf("Restore appended to the outbox: %v", streamMessages(t, s, s.key(sku, "outbox")))
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestRestore(t *testing.T) {
	const (
		pending   = reservation.StatusPending
		confirmed = reservation.StatusConfirmed
		cancelled = reservation.StatusCancelled
		expired   = reservation.StatusExpired
	)
	minute := time.Minute
	cases := []struct {
		name      string
		stock     int64
		res       func(t *testing.T, t0 time.Time) []reservation.RecordedReservation
		noWindow  bool
		want      counters
		wantUsers map[string]int64
		afterRead *counters // what Item reads, when it settles due holds; nil: want
	}{
		{
			name: "every status", stock: 10,
			res: func(t *testing.T, t0 time.Time) []reservation.RecordedReservation {
				return []reservation.RecordedReservation{
					recordedRes(t, "alice", 2, pending, t0.Add(-minute), t0.Add(9*minute), t0.Add(-minute), "5:alice:k1"),
					recordedRes(t, "bob", 1, confirmed, t0.Add(-5*minute), t0.Add(5*minute), t0.Add(-4*minute), "3:bob:kb"),
					recordedRes(t, "carol", 2, cancelled, t0.Add(-5*minute), t0.Add(5*minute), t0.Add(-3*minute), ""),
					recordedRes(t, "alice", 1, expired, t0.Add(-30*minute), t0.Add(-20*minute), t0.Add(-20*minute), "5:alice:old"),
					recordedRes(t, "alice", 1, confirmed, t0.Add(-40*minute), t0.Add(-30*minute), t0.Add(-35*minute), ""),
					recordedRes(t, "dave", 1, pending, t0.Add(-5*minute), t0.Add(5*minute), t0.Add(-5*minute), ""),
				}
			},
			want:      counters{Stock: 10, Available: 5, Reserved: 3, Sold: 2},
			wantUsers: map[string]int64{"alice": 3, "bob": 1, "dave": 1},
		},
		{
			name: "no reservations", stock: 4,
			want: counters{Stock: 4, Available: 4}, wantUsers: map[string]int64{},
		},
		{
			name: "no sale window", stock: 4, noWindow: true,
			want: counters{Stock: 4, Available: 4}, wantUsers: map[string]int64{},
		},
		{
			name: "only final reservations", stock: 4,
			res: func(t *testing.T, t0 time.Time) []reservation.RecordedReservation {
				return []reservation.RecordedReservation{
					recordedRes(t, "carol", 2, cancelled, t0.Add(-5*minute), t0.Add(5*minute), t0.Add(-3*minute), "5:carol:x"),
					recordedRes(t, "erin", 3, expired, t0.Add(-30*minute), t0.Add(-20*minute), t0.Add(-20*minute), ""),
				}
			},
			want: counters{Stock: 4, Available: 4}, wantUsers: map[string]int64{},
		},
		{
			name: "stock below the committed units is raised to them", stock: 2,
			res: func(t *testing.T, t0 time.Time) []reservation.RecordedReservation {
				return []reservation.RecordedReservation{
					recordedRes(t, "alice", 2, pending, t0.Add(-minute), t0.Add(9*minute), t0.Add(-minute), ""),
					recordedRes(t, "bob", 1, confirmed, t0.Add(-minute), t0.Add(9*minute), t0, ""),
				}
			},
			want:      counters{Stock: 3, Available: 0, Reserved: 2, Sold: 1},
			wantUsers: map[string]int64{"alice": 2, "bob": 1},
		},
		{
			name: "a pending hold already due is restored pending", stock: 5,
			res: func(t *testing.T, t0 time.Time) []reservation.RecordedReservation {
				return []reservation.RecordedReservation{
					recordedRes(t, "alice", 2, pending, t0.Add(-20*minute), t0.Add(-10*minute), t0.Add(-20*minute), ""),
				}
			},
			want:      counters{Stock: 5, Available: 3, Reserved: 2},
			wantUsers: map[string]int64{"alice": 2},
			afterRead: &counters{Stock: 5, Available: 5},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			t0 := s.now(t)
			snap := reservation.Snapshot{Item: restoredItem(t0, tc.stock)}
			if tc.noWindow {
				snap.Item.StartsAt, snap.Item.EndsAt = time.Time{}, time.Time{}
			}
			if tc.res != nil {
				snap.Reservations = tc.res(t, t0)
			}
			if missing, err := s.Missing(context.Background(), []string{"r"}); err != nil || !slices.Equal(missing, []string{"r"}) {
				t.Fatalf("Missing before = %v, %v", missing, err)
			}
			mustRestore(t, s, snap)
			wantRestored(t, s, snap, tc.want, tc.wantUsers)
			if missing, err := s.Missing(context.Background(), []string{"r"}); err != nil || len(missing) != 0 {
				t.Fatalf("Missing after = %v, %v", missing, err)
			}

			read := tc.want
			if tc.afterRead != nil {
				read = *tc.afterRead
			}
			it, err := s.Item(context.Background(), "r")
			if err != nil {
				t.Fatal(err)
			}
			wantItem(t, it, reservation.Item{
				SKU: "r", Name: snap.Item.Name, Stock: read.Stock, Available: read.Available,
				Reserved: read.Reserved, Sold: read.Sold, PerUserLimit: snap.Item.PerUserLimit, Hold: snap.Item.Hold,
				StartsAt: snap.Item.StartsAt, EndsAt: snap.Item.EndsAt, CreatedAt: snap.Item.CreatedAt, UpdatedAt: snap.Item.UpdatedAt,
			})
		})
	}
}

func TestRestoredItemLivesOn(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	t0 := s.now(t)
	minute := time.Minute
	held := recordedRes(t, "alice", 2, reservation.StatusPending, t0.Add(-minute), t0.Add(9*minute), t0.Add(-minute), "5:alice:k1")
	due := recordedRes(t, "dave", 1, reservation.StatusPending, t0.Add(-20*minute), t0.Add(-10*minute), t0.Add(-20*minute), "")
	bought := recordedRes(t, "alice", 1, reservation.StatusConfirmed, t0.Add(-5*minute), t0.Add(5*minute), t0.Add(-4*minute), "")
	snap := reservation.Snapshot{
		Item:         restoredItem(t0, 10),
		Reservations: []reservation.RecordedReservation{held, due, bought},
	}
	mustRestore(t, s, snap)

	t.Run("restoring again changes nothing", func(t *testing.T) {
		before := snapshot(t, s, "r")
		for _, again := range []reservation.Snapshot{
			snap,
			{Item: snap.Item}, // no reservations: straight to the item call
			{Item: restoredItem(t0, 99), Reservations: []reservation.RecordedReservation{
				recordedRes(t, "zed", 1, reservation.StatusPending, t0, t0.Add(minute), t0, ""),
			}},
		} {
			restored, err := s.Restore(ctx, again)
			if err != nil || restored {
				t.Fatalf("Restore of an existing item = %v, %v; want false", restored, err)
			}
			wantUnchanged(t, s, "r", before)
		}
	})
	t.Run("the per-user limit counts restored units", func(t *testing.T) {
		_, _, err := s.Reserve(ctx, request(t, "r", "alice", 1, ""))
		wantErr(t, "reserve over the limit", err, reservation.ErrLimitExceeded)
		if err.Error() != "per-user limit exceeded: user holds 3 of at most 3 units" {
			t.Fatalf("error %q", err)
		}
	})
	t.Run("a restored idempotency key replays", func(t *testing.T) {
		r, replayed, err := s.Reserve(ctx, request(t, "r", "alice", 2, "k1"))
		if err != nil || !replayed {
			t.Fatalf("replay: replayed=%v err=%v", replayed, err)
		}
		wantReservation(t, r, held.Reservation)
		_, _, err = s.Reserve(ctx, request(t, "r", "alice", 1, "k1"))
		wantErr(t, "key reused", err, reservation.ErrIdempotencyKeyReused)
	})
	t.Run("a restored hold confirms into the outbox", func(t *testing.T) {
		c := mustConfirm(t, s, held.ID)
		wantOutbox(t, s, "r", resEntry(c, ""))
	})
	t.Run("a restored due hold is settled", func(t *testing.T) {
		it, err := s.Item(ctx, "r")
		if err != nil || it.Available != 7 || it.Reserved != 0 || it.Sold != 3 {
			t.Fatalf("Item = %+v, %v; want 7 available, 3 sold", it, err)
		}
		if st := rawStatus(t, s, due.ID); st != "expired" {
			t.Fatalf("due hold stored as %q", st)
		}
	})
	t.Run("the next seed is the next revision", func(t *testing.T) {
		spec := snap.Item.ItemSpec
		spec.Stock = 12
		res := mustSeed(t, s, spec)
		msgs := streamMessages(t, s, s.key("r", "outbox"))
		if last := fieldsOf(msgs[len(msgs)-1]); !reflect.DeepEqual(last, itemEntry(5, res.Item)) {
			t.Fatalf("seed entry %v, want %v", last, itemEntry(5, res.Item))
		}
	})
}

func TestRestoreRefusesAnExistingItem(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	t0 := s.now(t)
	spec := itemSpec("r", 5, 2)
	seed := mustSeed(t, s, spec)
	r := mustReserve(t, s, "r", "alice", 2)
	before := snapshot(t, s, "r")
	for _, snap := range []reservation.Snapshot{
		{Item: restoredItem(t0, 10)},
		{Item: restoredItem(t0, 10), Reservations: []reservation.RecordedReservation{
			recordedRes(t, "bob", 1, reservation.StatusConfirmed, t0, t0.Add(time.Minute), t0, "3:bob:k"),
		}},
	} {
		restored, err := s.Restore(ctx, snap)
		if err != nil || restored {
			t.Fatalf("Restore = %v, %v; want false", restored, err)
		}
		wantUnchanged(t, s, "r", before)
		wantOutbox(t, s, "r", itemEntry(1, seed.Item), resEntry(r, ""))
	}
}

func TestRestoreInChunks(t *testing.T) {
	// 1201 records: three "records" calls of at most 500.
	s := newMiniStore(t)
	t0 := s.now(t)
	statuses := []reservation.Status{reservation.StatusPending, reservation.StatusConfirmed,
		reservation.StatusCancelled, reservation.StatusExpired}
	snap := reservation.Snapshot{Item: restoredItem(t0, 1000)}
	users := map[string]int64{}
	for i := range 1201 {
		user := "u" + strconv.Itoa(i)
		st := statuses[i%4]
		idem := ""
		if i%3 == 0 {
			idem = strconv.Itoa(len(user)) + ":" + user + ":k"
		}
		// Distinct expiries, so the holds index has one order.
		exp := t0.Add(time.Duration(i+1) * time.Second)
		snap.Reservations = append(snap.Reservations,
			recordedRes(t, user, 1, st, t0.Add(-time.Minute), exp, t0.Add(-time.Minute), idem))
		if st == reservation.StatusPending || st == reservation.StatusConfirmed {
			users[user] = 1
		}
	}
	mustRestore(t, s, snap)
	// 301 pending (i = 0, 4, ..., 1200), 300 confirmed.
	wantRestored(t, s, snap, counters{Stock: 1000, Available: 399, Reserved: 301, Sold: 300}, users)
}

func TestRestoreAfterAnInterruptedRestore(t *testing.T) {
	// A rebuild that wrote its first records and died before the item call
	// leaves records behind; the next rebuild must not count them twice.
	s := newMiniStore(t)
	t0 := s.now(t)
	minute := time.Minute
	snap := reservation.Snapshot{
		Item: restoredItem(t0, 10),
		Reservations: []reservation.RecordedReservation{
			recordedRes(t, "alice", 2, reservation.StatusPending, t0, t0.Add(9*minute), t0, "5:alice:k"),
			recordedRes(t, "alice", 1, reservation.StatusConfirmed, t0, t0.Add(9*minute), t0, ""),
			recordedRes(t, "bob", 1, reservation.StatusPending, t0, t0.Add(8*minute), t0, ""),
		},
	}
	// The first record as the earlier rebuild wrote it; a record already
	// present is kept.
	partial := slices.Clone(snap.Reservations[:2])
	partial[0].UpdatedAt = t0.Add(-time.Second)
	restoreRecords(t, s, "r", partial...)
	mustRestore(t, s, snap)
	kept := snap
	kept.Reservations = append([]reservation.RecordedReservation{partial[0]}, snap.Reservations[1:]...)
	wantRestored(t, s, kept, counters{Stock: 10, Available: 6, Reserved: 3, Sold: 1},
		map[string]int64{"alice": 3, "bob": 1})
}

func TestMissing(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("a", 1, 1))
	mustSeed(t, s, itemSpec("b", 1, 1))
	// An item seeded before there were buckets has no count: it is there.
	if err := s.rdb.HDel(ctx, s.key("b", "item"), "buckets").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.SAdd(ctx, s.prefix+":catalog", "x").Err(); err != nil {
		t.Fatal(err) // in the catalogue without an item is still missing
	}
	var many []string
	for i := range 1001 {
		many = append(many, "m"+strconv.Itoa(i))
	}
	cases := []struct {
		name string
		skus []string
		want []string
	}{
		{"none asked", nil, nil},
		{"all present", []string{"a", "b"}, nil},
		{"in the order asked", []string{"y", "a", "x", "b"}, []string{"y", "x"}},
		{"across chunks", append(append([]string{"a"}, many...), "b"), many},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Missing(ctx, tc.skus)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Missing = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestMarkEpoch(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	key := s.prefix + ":epoch"
	steps := []struct {
		name   string
		before func()
		epoch  int64
		want   bool
		stored string
	}{
		{name: "a new Redis", epoch: 100, want: true, stored: "100"},
		{name: "the same Redis", epoch: 200, want: false, stored: "100"},
		{name: "after the data is lost", before: func() { s.rdb.Del(ctx, key) }, epoch: 300, want: true, stored: "300"},
		{name: "and then kept", epoch: 400, want: false, stored: "300"},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		current, got, err := s.MarkEpoch(ctx, st.epoch)
		if err != nil || got != st.want || strconv.FormatInt(current, 10) != st.stored {
			t.Fatalf("%s: MarkEpoch = %d, %v, %v; want %s, %v", st.name, current, got, err, st.stored, st.want)
		}
		if v := s.rdb.Get(ctx, key).Val(); v != st.stored {
			t.Fatalf("%s: marker = %q, want %q", st.name, v, st.stored)
		}
		if ttl := s.rdb.TTL(ctx, key).Val(); ttl != -1 {
			t.Fatalf("%s: marker TTL %v, want none", st.name, ttl)
		}
	}
}

// restoreRecords runs restore.lua's "records" call alone, as a rebuild does
// before its "item" call: the state of a rebuild in progress.
func restoreRecords(t testing.TB, s *testStore, sku string, recs ...reservation.RecordedReservation) {
	t.Helper()
	script := goredis.NewScript(string(luascripts.Restore()))
	keys := s.ScriptKeys(sku)
	args := []any{"records"}
	for _, r := range recs {
		args = append(args, r.ID, fmt.Sprintf("%s|%d|%d|%d|%d|%s", r.Status, r.Quantity,
			r.CreatedAt.UnixMilli(), r.ExpiresAt.UnixMilli(), r.UpdatedAt.UnixMilli(), r.UserID), r.IdempotencyField)
	}
	var pending, confirmed int64
	for _, r := range recs {
		switch r.Status {
		case reservation.StatusPending:
			pending += int64(r.Quantity)
		case reservation.StatusConfirmed:
			confirmed += int64(r.Quantity)
		}
	}
	got, err := script.Run(context.Background(), s.rdb, keys, args...).Result()
	if err != nil || !reflect.DeepEqual(got, []any{"ok", int64(len(recs)), pending, confirmed}) {
		t.Fatalf("records call = %v, %v", got, err)
	}
}

func TestConfirmCancelDuringRestore(t *testing.T) {
	// Buyers retry a 503 "recovering" every second, so a confirm or cancel
	// can land between a rebuild's "records" calls and its "item" call. It
	// must touch nothing: the item does not exist yet, and a counter written
	// now would create a partial item hash that the "item" call then takes
	// for an existing item, and refuse to restore it for good.
	ctx := context.Background()
	cases := []struct {
		name string
		due  bool // the hold's expiry has passed
		call func(s *testStore, id string) error
	}{
		{"confirm", false, func(s *testStore, id string) error { _, err := s.Confirm(ctx, id); return err }},
		{"cancel", false, func(s *testStore, id string) error { _, err := s.Cancel(ctx, id); return err }},
		{"confirm of a due hold", true, func(s *testStore, id string) error { _, err := s.Confirm(ctx, id); return err }},
		{"cancel of a due hold", true, func(s *testStore, id string) error { _, err := s.Cancel(ctx, id); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			t0 := s.now(t)
			exp := t0.Add(time.Minute)
			if tc.due {
				exp = t0.Add(-time.Minute)
			}
			held := recordedRes(t, "alice", 2, reservation.StatusPending, t0.Add(-2*time.Minute), exp, t0.Add(-2*time.Minute), "")
			snap := reservation.Snapshot{Item: restoredItem(t0, 10), Reservations: []reservation.RecordedReservation{held}}
			restoreRecords(t, s, "r", held)
			before := snapshot(t, s, "r")

			wantErr(t, tc.name, tc.call(s, held.ID), reservation.ErrReservationNotFound)
			wantUnchanged(t, s, "r", before)
			if n := s.rdb.Exists(ctx, s.key("r", "item"), s.key("r", "outbox")).Val(); n != 0 {
				t.Fatalf("%s during a rebuild created the item or its outbox: %v", tc.name, s.rdb.HGetAll(ctx, s.key("r", "item")).Val())
			}

			mustRestore(t, s, snap)
			wantRestored(t, s, snap, counters{Stock: 10, Available: 8, Reserved: 2}, map[string]int64{"alice": 2})
		})
	}
}

// TestRestoreCountsKeptRecords: a record an interrupted rebuild already
// wrote is kept, and the counters follow the kept record, not the
// snapshot's copy, so counters and records always agree.
func TestRestoreCountsKeptRecords(t *testing.T) {
	s := newMiniStore(t)
	t0 := s.now(t)
	held := recordedRes(t, "alice", 2, reservation.StatusPending, t0, t0.Add(time.Hour), t0, "")
	restoreRecords(t, s, "r", held)

	confirmed := held
	confirmed.Status = reservation.StatusConfirmed
	mustRestore(t, s, reservation.Snapshot{Item: restoredItem(t0, 10),
		Reservations: []reservation.RecordedReservation{confirmed}})

	it, err := s.Item(context.Background(), "r")
	if err != nil || it.Reserved != 2 || it.Sold != 0 || it.Available != 8 {
		t.Fatalf("Item = %+v, %v; want reserved 2 (the kept pending record), sold 0, available 8", it, err)
	}
	assertInvariant(t, s, "r")
}
