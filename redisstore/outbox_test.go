package redisstore_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// These tests read the outbox that every script appends to (lib.lua's
// emit_res and emit_item) on miniredis, and drive redisstore.Outbox over it.

// entry is an outbox stream entry's fields, as the scripts write them.
type entry map[string]string

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func optMS(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ms(t)
}

// resEntry is what emit_res appends for r: "idem" only when there is one.
func resEntry(r reservation.Reservation, idem string) entry {
	e := entry{
		"k": "res", "id": r.ID,
		"rec": fmt.Sprintf("%s|%d|%s|%s|%s|%s", r.Status, r.Quantity, ms(r.CreatedAt), ms(r.ExpiresAt), ms(r.UpdatedAt), r.UserID),
	}
	if idem != "" {
		e["idem"] = idem
	}
	return e
}

// itemEntry is what emit_item appends for an item at revision rev.
func itemEntry(rev int64, it reservation.Item) entry {
	return entry{
		"k": "item", "rev": strconv.FormatInt(rev, 10), "stock": strconv.FormatInt(it.Stock, 10),
		"limit": strconv.Itoa(it.PerUserLimit), "hold": strconv.FormatInt(it.Hold.Milliseconds(), 10),
		"starts": optMS(it.StartsAt), "ends": optMS(it.EndsAt), "name": it.Name,
		"created": ms(it.CreatedAt), "updated": ms(it.UpdatedAt), "buckets": strconv.Itoa(max(it.Buckets, 1)),
	}
}

// settledAs is r as a script that settles it at `at` records it.
func settledAs(r reservation.Reservation, st reservation.Status, at time.Time) reservation.Reservation {
	r.Status, r.UpdatedAt = st, at
	return r
}

func streamMessages(t testing.TB, s *testStore, key string) []goredis.XMessage {
	t.Helper()
	msgs, err := s.rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", key, err)
	}
	return msgs
}

func fieldsOf(m goredis.XMessage) entry {
	e := entry{}
	for k, v := range m.Values {
		e[k] = fmt.Sprint(v)
	}
	return e
}

// wantStream checks the exact fields of every entry of a stream, in order.
func wantStream(t testing.TB, s *testStore, key string, want ...entry) {
	t.Helper()
	msgs := streamMessages(t, s, key)
	got := make([]entry, len(msgs))
	for i, m := range msgs {
		got[i] = fieldsOf(m)
	}
	if len(want) == 0 {
		want = []entry{}
	}
	if !reflect.DeepEqual(got, want) {
		var b strings.Builder
		for i := range max(len(got), len(want)) {
			var g, w entry
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			mark := " "
			if !reflect.DeepEqual(g, w) {
				mark = "!"
			}
			fmt.Fprintf(&b, "%s %d\n   got  %v\n   want %v\n", mark, i, g, w)
		}
		t.Fatalf("stream %s:\n%s", key, b.String())
	}
}

func wantOutbox(t testing.TB, s *testStore, sku string, want ...entry) {
	t.Helper()
	wantStream(t, s, s.key(sku, "outbox"), want...)
}

func TestOutboxEmission(t *testing.T) {
	ctx := context.Background()
	// Each case works on item "sku" of a fresh store and returns every
	// entry it expects in the item's outbox, in order.
	cases := []struct {
		name string
		run  func(t *testing.T, s *testStore) []entry
	}{
		{
			name: "seed creates the item at revision 1",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				return []entry{itemEntry(1, seed.Item)}
			},
		},
		{
			name: "seed with a sale window",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				spec.StartsAt, spec.EndsAt = s.now(t).Add(-time.Hour), s.now(t).Add(time.Hour)
				seed := mustSeed(t, s, spec)
				e := itemEntry(1, seed.Item)
				if e["starts"] != ms(spec.StartsAt) || e["ends"] != ms(spec.EndsAt) {
					t.Fatalf("seed answered window %v..%v, want %v..%v", seed.Item.StartsAt, seed.Item.EndsAt, spec.StartsAt, spec.EndsAt)
				}
				return []entry{e}
			},
		},
		{
			name: "restock appends revision 2",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				first := mustSeed(t, s, spec)
				s.advance(t, time.Second)
				spec.Stock, spec.Name = 8, "renamed"
				second := mustSeed(t, s, spec)
				if second.Item.Stock != 8 || !second.Item.UpdatedAt.Equal(first.Item.UpdatedAt.Add(time.Second)) {
					t.Fatalf("restock answered %+v", second.Item)
				}
				return []entry{itemEntry(1, first.Item), itemEntry(2, second.Item)}
			},
		},
		{
			name: "seed settles due holds before its own entry",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				first := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, spec.Hold)
				spec.Stock = 1 // below the due hold's 2 units: they are not committed
				second := mustSeed(t, s, spec)
				return []entry{itemEntry(1, first.Item), resEntry(r, ""),
					resEntry(settledAs(r, reservation.StatusExpired, s.now(t)), ""), itemEntry(2, second.Item)}
			},
		},
		{
			name: "stock below committed appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 5)
				first := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "alice", 3)
				spec.Stock = 2
				_, err := s.Seed(ctx, spec)
				wantErr(t, "seed below committed", err, reservation.ErrStockBelowCommitted)
				return []entry{itemEntry(1, first.Item), resEntry(r, "")}
			},
		},
		{
			name: "reserve without a key",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				r := mustReserve(t, s, "sku", "alice", 2)
				return []entry{itemEntry(1, seed.Item), resEntry(r, "")}
			},
		},
		{
			name: "reserve with a key carries the idempotency field",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				r, replayed, err := s.Reserve(ctx, request(t, "sku", "alice", 1, "key-1"))
				if err != nil || replayed {
					t.Fatalf("reserve: replayed=%v err=%v", replayed, err)
				}
				return []entry{itemEntry(1, seed.Item), resEntry(r, "5:alice:key-1")}
			},
		},
		{
			name: "a replay of the same id appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				req := request(t, "sku", "alice", 1, "")
				r, _, err := s.Reserve(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				s.advance(t, time.Second)
				if _, replayed, err := s.Reserve(ctx, req); err != nil || !replayed {
					t.Fatalf("replay: replayed=%v err=%v", replayed, err)
				}
				return []entry{itemEntry(1, seed.Item), resEntry(r, "")}
			},
		},
		{
			name: "a replay of the same key appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				r, _, err := s.Reserve(ctx, request(t, "sku", "alice", 1, "k"))
				if err != nil {
					t.Fatal(err)
				}
				if _, replayed, err := s.Reserve(ctx, request(t, "sku", "alice", 1, "k")); err != nil || !replayed {
					t.Fatalf("replay: replayed=%v err=%v", replayed, err)
				}
				_, _, err = s.Reserve(ctx, request(t, "sku", "alice", 2, "k"))
				wantErr(t, "key reused", err, reservation.ErrIdempotencyKeyReused)
				return []entry{itemEntry(1, seed.Item), resEntry(r, "5:alice:k")}
			},
		},
		{
			name: "sold out appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 1, 1))
				r := mustReserve(t, s, "sku", "bob", 1)
				_, _, err := s.Reserve(ctx, request(t, "sku", "alice", 1, ""))
				wantErr(t, "reserve", err, reservation.ErrSoldOut)
				return []entry{itemEntry(1, seed.Item), resEntry(r, "")}
			},
		},
		{
			name: "sold out appends the expiry of the due holds it settles",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 2, 5)
				seed := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "bob", 2)
				s.advance(t, spec.Hold)
				_, _, err := s.Reserve(ctx, request(t, "sku", "alice", 3, ""))
				wantErr(t, "reserve", err, reservation.ErrSoldOut)
				if st := rawStatus(t, s, r.ID); st != "expired" {
					t.Fatalf("due hold stored as %q after the refusal, want expired", st)
				}
				return []entry{itemEntry(1, seed.Item), resEntry(r, ""),
					resEntry(settledAs(r, reservation.StatusExpired, s.now(t)), "")}
			},
		},
		{
			name: "limit exceeded appends nothing and settles nothing",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 1)
				seed := mustSeed(t, s, spec)
				bob := mustReserve(t, s, "sku", "bob", 1)
				s.advance(t, spec.Hold/2)
				alice := mustReserve(t, s, "sku", "alice", 1)
				s.advance(t, spec.Hold/2) // bob's hold is due, alice's is not
				_, _, err := s.Reserve(ctx, request(t, "sku", "alice", 1, ""))
				wantErr(t, "reserve", err, reservation.ErrLimitExceeded)
				if st := rawStatus(t, s, bob.ID); st != "pending" {
					t.Fatalf("bob's due hold stored as %q, want pending (unsettled)", st)
				}
				return []entry{itemEntry(1, seed.Item), resEntry(bob, ""), resEntry(alice, "")}
			},
		},
		{
			name: "sale not active appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 1)
				spec.StartsAt = s.now(t).Add(time.Hour)
				seed := mustSeed(t, s, spec)
				_, _, err := s.Reserve(ctx, request(t, "sku", "alice", 1, ""))
				wantErr(t, "reserve", err, reservation.ErrSaleNotActive)
				return []entry{itemEntry(1, seed.Item)}
			},
		},
		{
			name: "an unknown item gets no outbox",
			run: func(t *testing.T, s *testStore) []entry {
				_, _, err := s.Reserve(ctx, request(t, "sku", "alice", 1, ""))
				wantErr(t, "reserve", err, reservation.ErrItemNotFound)
				_, err = s.Item(ctx, "sku")
				wantErr(t, "item", err, reservation.ErrItemNotFound)
				if n := s.rdb.Exists(ctx, s.key("sku", "outbox")).Val(); n != 0 {
					t.Fatalf("outbox of an unknown item exists")
				}
				return nil
			},
		},
		{
			name: "confirm appends one entry, a repeat none",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, time.Second)
				c := mustConfirm(t, s, r.ID)
				s.advance(t, time.Second)
				mustConfirm(t, s, r.ID)
				_, err := s.Cancel(ctx, r.ID)
				wantErr(t, "cancel after confirm", err, reservation.ErrReservationConfirmed)
				want := settledAs(r, reservation.StatusConfirmed, r.CreatedAt.Add(time.Second))
				wantReservation(t, c, want)
				return []entry{itemEntry(1, seed.Item), resEntry(r, ""), resEntry(want, "")}
			},
		},
		{
			name: "cancel appends one entry, a repeat none",
			run: func(t *testing.T, s *testStore) []entry {
				seed := mustSeed(t, s, itemSpec("sku", 5, 2))
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, time.Second)
				c := mustCancel(t, s, r.ID)
				s.advance(t, time.Second)
				mustCancel(t, s, r.ID)
				_, err := s.Confirm(ctx, r.ID)
				wantErr(t, "confirm after cancel", err, reservation.ErrReservationCancelled)
				want := settledAs(r, reservation.StatusCancelled, r.CreatedAt.Add(time.Second))
				wantReservation(t, c, want)
				return []entry{itemEntry(1, seed.Item), resEntry(r, ""), resEntry(want, "")}
			},
		},
		{
			name: "confirm of a due hold appends its expiry once",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				seed := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, spec.Hold)
				at := s.now(t)
				_, err := s.Confirm(ctx, r.ID)
				wantErr(t, "confirm", err, reservation.ErrReservationExpired)
				s.advance(t, time.Second)
				_, err = s.Confirm(ctx, r.ID)
				wantErr(t, "confirm again", err, reservation.ErrReservationExpired)
				_, err = s.Cancel(ctx, r.ID)
				wantErr(t, "cancel", err, reservation.ErrReservationExpired)
				return []entry{itemEntry(1, seed.Item), resEntry(r, ""),
					resEntry(settledAs(r, reservation.StatusExpired, at), "")}
			},
		},
		{
			name: "cancel of a due hold appends its expiry once",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				seed := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, spec.Hold)
				_, err := s.Cancel(ctx, r.ID)
				wantErr(t, "cancel", err, reservation.ErrReservationExpired)
				_, err = s.Cancel(ctx, r.ID)
				wantErr(t, "cancel again", err, reservation.ErrReservationExpired)
				return []entry{itemEntry(1, seed.Item), resEntry(r, ""),
					resEntry(settledAs(r, reservation.StatusExpired, s.now(t)), "")}
			},
		},
		{
			name: "reading a due reservation appends nothing",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				seed := mustSeed(t, s, spec)
				r := mustReserve(t, s, "sku", "alice", 2)
				s.advance(t, spec.Hold)
				got, err := s.Reservation(ctx, r.ID)
				if err != nil || got.Status != reservation.StatusExpired {
					t.Fatalf("Reservation = %s, %v; want expired", got.Status, err)
				}
				return []entry{itemEntry(1, seed.Item), resEntry(r, "")}
			},
		},
		{
			name: "Item appends an expiry per due hold",
			run: func(t *testing.T, s *testStore) []entry {
				return expiryOfThree(t, s, func() {
					it, err := s.Item(ctx, "sku")
					if err != nil || it.Reserved != 0 || it.Available != 10 {
						t.Fatalf("Item = %+v, %v; want all 10 available", it, err)
					}
				})
			},
		},
		{
			name: "SweepDue appends an expiry per due hold",
			run: func(t *testing.T, s *testStore) []entry {
				return expiryOfThree(t, s, func() {
					if n, err := s.SweepDue(ctx, 2); err != nil || n != 3 {
						t.Fatalf("SweepDue = %d, %v; want 3", n, err)
					}
				})
			},
		},
		{
			name: "a reserve appends the expiry of due holds before its own hold",
			run: func(t *testing.T, s *testStore) []entry {
				spec := itemSpec("sku", 5, 2)
				seed := mustSeed(t, s, spec)
				old := mustReserve(t, s, "sku", "bob", 2)
				s.advance(t, spec.Hold)
				r := mustReserve(t, s, "sku", "alice", 1)
				return []entry{itemEntry(1, seed.Item), resEntry(old, ""),
					resEntry(settledAs(old, reservation.StatusExpired, s.now(t)), ""), resEntry(r, "")}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			want := tc.run(t, s)
			wantOutbox(t, s, "sku", want...)
			if len(want) > 0 {
				assertInvariant(t, s, "sku")
			}
		})
	}
}

// expiryOfThree holds three units one millisecond apart (so their expiry
// order is their creation order), lets them fall due and settles them with
// settle. It returns the outbox expected after.
func expiryOfThree(t *testing.T, s *testStore, settle func()) []entry {
	t.Helper()
	spec := itemSpec("sku", 10, 1)
	seed := mustSeed(t, s, spec)
	want := []entry{itemEntry(1, seed.Item)}
	var held []reservation.Reservation
	for _, user := range []string{"u1", "u2", "u3"} {
		r := mustReserve(t, s, "sku", user, 1)
		held = append(held, r)
		want = append(want, resEntry(r, ""))
		s.advance(t, time.Millisecond)
	}
	s.advance(t, spec.Hold)
	at := s.now(t)
	settle()
	for _, r := range held {
		want = append(want, resEntry(settledAs(r, reservation.StatusExpired, at), ""))
	}
	return want
}

func TestSeedRecorded(t *testing.T) {
	ctx := context.Background()
	t.Run("a recorded item that is missing was lost: nothing is created", func(t *testing.T) {
		s := newMiniStore(t)
		spec := itemSpec("sku", 5, 1)
		spec.Recorded = true
		res, err := s.Seed(ctx, spec)
		wantErr(t, "seed", err, reservation.ErrRecovering)
		if res != (reservation.SeedResult{}) {
			t.Fatalf("refused seed answered %+v", res)
		}
		for _, name := range []string{"item", "holds", "users", "res", "idem", "outbox"} {
			if n := s.rdb.Exists(ctx, s.key("sku", name)).Val(); n != 0 {
				t.Fatalf("refused seed created %s", s.key("sku", name))
			}
		}
		_, err = s.Item(ctx, "sku")
		wantErr(t, "item", err, reservation.ErrItemNotFound)
	})
	t.Run("a recorded item that exists is updated", func(t *testing.T) {
		s := newMiniStore(t)
		spec := itemSpec("sku", 5, 1)
		first := mustSeed(t, s, spec)
		r := mustReserve(t, s, "sku", "alice", 1)
		spec.Recorded, spec.Stock = true, 7
		res := mustSeed(t, s, spec)
		if res.Created || res.Item.Stock != 7 || res.Item.Available != 6 || res.Item.Reserved != 1 {
			t.Fatalf("seed = %+v, want an update to stock 7", res)
		}
		wantOutbox(t, s, "sku", itemEntry(1, first.Item), resEntry(r, ""), itemEntry(2, res.Item))
		if rev := s.rdb.HGet(ctx, s.key("sku", "item"), "rev").Val(); rev != "2" {
			t.Fatalf("rev = %q, want 2", rev)
		}
	})
	t.Run("SeedMany decides per item", func(t *testing.T) {
		s := newMiniStore(t)
		mustSeed(t, s, itemSpec("kept", 3, 1))
		lost, fresh, kept := itemSpec("lost", 5, 1), itemSpec("fresh", 5, 1), itemSpec("kept", 4, 1)
		lost.Recorded, kept.Recorded = true, true
		results, errs := s.SeedMany(ctx, []reservation.ItemSpec{lost, fresh, kept})
		wantErr(t, "lost", errs[0], reservation.ErrRecovering)
		wantErr(t, "fresh", errs[1], nil)
		wantErr(t, "kept", errs[2], nil)
		if !results[1].Created || results[2].Created || results[2].Item.Stock != 4 {
			t.Fatalf("results = %+v", results)
		}
		if n := s.rdb.Exists(ctx, s.key("lost", "item"), s.key("lost", "outbox")).Val(); n != 0 {
			t.Fatalf("lost item was created")
		}
	})
}

func newOutbox(t testing.TB, s *testStore, consumer string) *redisstore.Outbox {
	t.Helper()
	return newOutboxIdle(t, s, consumer, time.Second)
}

func newOutboxIdle(t testing.TB, s *testStore, consumer string, claimIdle time.Duration) *redisstore.Outbox {
	t.Helper()
	o, err := s.Outbox(redisstore.OutboxOptions{Consumer: consumer, ClaimIdle: claimIdle, MaxTries: 2, Scan: time.Millisecond})
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	return o
}

func mustRead(t testing.TB, o *redisstore.Outbox, max int) []reservation.OutboxEntry {
	t.Helper()
	got, err := o.Read(context.Background(), max)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return got
}

// bySKU groups entries by item, keeping their order within each: items
// come in the catalogue's (unordered) order.
func bySKU(entries []reservation.OutboxEntry) map[string][]reservation.OutboxEntry {
	out := map[string][]reservation.OutboxEntry{}
	for _, e := range entries {
		out[e.SKU] = append(out[e.SKU], e)
	}
	return out
}

func itemRecord(rev int64, it reservation.Item) reservation.ItemRecord {
	return reservation.ItemRecord{
		ItemSpec: reservation.ItemSpec{SKU: it.SKU, Name: it.Name, Stock: it.Stock, PerUserLimit: it.PerUserLimit,
			Hold: it.Hold, StartsAt: it.StartsAt, EndsAt: it.EndsAt, Buckets: max(it.Buckets, 1)},
		Rev: rev, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt,
	}
}

func showChange(c reservation.Change) string {
	var b strings.Builder
	if c.Reservation != nil {
		fmt.Fprintf(&b, "res %+v", *c.Reservation)
	}
	if c.Item != nil {
		fmt.Fprintf(&b, "item %+v", *c.Item)
	}
	fmt.Fprintf(&b, " idem %q", c.IdempotencyField)
	return b.String()
}

// wantEntries checks the entries of one item: their stream ids (the
// outbox's, in order) and their changes.
func wantEntries(t testing.TB, s *testStore, sku string, got []reservation.OutboxEntry, want ...reservation.Change) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for _, m := range streamMessages(t, s, s.key(sku, "outbox")) {
		ids = append(ids, m.ID)
	}
	if len(got) != len(want) {
		t.Fatalf("item %s: %d entries, want %d: %+v", sku, len(got), len(want), got)
	}
	for i, e := range got {
		if e.SKU != sku || e.Err != nil || i >= len(ids) || e.ID != ids[i] {
			t.Fatalf("item %s entry %d: sku %q id %q err %v; outbox ids %v", sku, i, e.SKU, e.ID, e.Err, ids)
		}
		if !reflect.DeepEqual(e.Change, want[i]) {
			t.Fatalf("item %s entry %d:\ngot  %s\nwant %s", sku, i, showChange(e.Change), showChange(want[i]))
		}
	}
}

func pendingCount(t testing.TB, s *testStore, sku string) int64 {
	t.Helper()
	p, err := s.rdb.XPending(context.Background(), s.key(sku, "outbox"), redisstore.SyncGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

func TestOutboxOptionsRequired(t *testing.T) {
	s := newMiniStore(t)
	ok := redisstore.OutboxOptions{Consumer: "c1", ClaimIdle: time.Second, MaxTries: 2, Scan: time.Millisecond}
	cases := []struct {
		name string
		edit func(o *redisstore.OutboxOptions)
	}{
		{"no consumer", func(o *redisstore.OutboxOptions) { o.Consumer = "" }},
		{"no claim idle", func(o *redisstore.OutboxOptions) { o.ClaimIdle = 0 }},
		{"no tries", func(o *redisstore.OutboxOptions) { o.MaxTries = 0 }},
		{"no scan", func(o *redisstore.OutboxOptions) { o.Scan = 0 }},
	}
	if _, err := s.Outbox(ok); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opt := ok
			tc.edit(&opt)
			if o, err := s.Outbox(opt); err == nil || o != nil {
				t.Fatalf("Outbox(%+v) = %v, %v; want an error", opt, o, err)
			}
		})
	}
}

func TestOutboxReadAndAck(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	seedA := mustSeed(t, s, itemSpec("a", 5, 2))
	r, _, err := s.Reserve(ctx, request(t, "a", "alice", 1, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	c := mustConfirm(t, s, r.ID)
	spec := itemSpec("b", 3, 1)
	spec.StartsAt, spec.EndsAt = s.now(t).Add(-time.Minute), s.now(t).Add(time.Hour)
	seedB := mustSeed(t, s, spec)

	o := newOutbox(t, s, "c1")
	got := mustRead(t, o, 100)
	if len(got) != 4 {
		t.Fatalf("Read = %d entries, want 4: %+v", len(got), got)
	}
	groups := bySKU(got)
	recA, recB := itemRecord(1, seedA.Item), itemRecord(1, seedB.Item)
	wantEntries(t, s, "a", groups["a"],
		reservation.Change{Item: &recA},
		reservation.Change{Reservation: &r, IdempotencyField: "5:alice:k1"},
		reservation.Change{Reservation: &c})
	wantEntries(t, s, "b", groups["b"], reservation.Change{Item: &recB})
	if recB.StartsAt.IsZero() || recB.EndsAt.IsZero() {
		t.Fatalf("item b lost its window: %+v", recB)
	}

	// Delivered to c1 and not acknowledged: not delivered again.
	if again := mustRead(t, o, 100); len(again) != 0 {
		t.Fatalf("second Read = %+v, want nothing", again)
	}
	if n := pendingCount(t, s, "a"); n != 3 {
		t.Fatalf("a: %d pending, want 3", n)
	}
	b, err := o.Backlog(ctx)
	if err != nil || b.Entries != 4 || b.Dead != 0 {
		t.Fatalf("Backlog = %+v, %v; want 4 entries", b, err)
	}

	if err := o.Ack(ctx, got); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for _, sku := range []string{"a", "b"} {
		wantOutbox(t, s, sku)
		if n := pendingCount(t, s, sku); n != 0 {
			t.Fatalf("%s: %d pending after Ack", sku, n)
		}
	}
	if b, err := o.Backlog(ctx); err != nil || b != (reservation.Backlog{}) {
		t.Fatalf("Backlog after Ack = %+v, %v; want zero", b, err)
	}

	// New changes after the ack are read, and only they.
	r2 := mustReserve(t, s, "a", "bob", 1)
	got = mustRead(t, o, 100)
	wantEntries(t, s, "a", got, reservation.Change{Reservation: &r2})
	if err := o.Ack(ctx, nil); err != nil {
		t.Fatalf("Ack of nothing: %v", err)
	}
}

func TestOutboxReadMax(t *testing.T) {
	s := newMiniStore(t)
	mustSeed(t, s, itemSpec("a", 5, 5))
	for range 4 {
		mustReserve(t, s, "a", "alice", 1)
	}
	o := newOutbox(t, s, "c1")
	var ids []string
	for i, want := range []int{2, 2, 1, 0} {
		got := mustRead(t, o, 2)
		if len(got) != want {
			t.Fatalf("Read %d: %d entries, want %d", i, len(got), want)
		}
		for _, e := range got {
			ids = append(ids, e.ID)
		}
	}
	var all []string
	for _, m := range streamMessages(t, s, s.key("a", "outbox")) {
		all = append(all, m.ID)
	}
	if !slices.Equal(ids, all) {
		t.Fatalf("read %v, outbox holds %v", ids, all)
	}
}

func TestOutboxParse(t *testing.T) {
	id := "a.AAAAAAAAAAAAAAAAAAAAAA"
	other := "b.AAAAAAAAAAAAAAAAAAAAAA"
	at := func(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
	cases := []struct {
		name    string
		fields  []any
		want    reservation.Change
		wantErr string // substring of Err; "" means it parses
	}{
		{
			name:   "reservation with an idempotency field",
			fields: []any{"k", "res", "id", id, "rec", "pending|2|1000|61000|1500|alice", "idem", "5:alice:k"},
			want: reservation.Change{
				Reservation: &reservation.Reservation{ID: id, SKU: "a", UserID: "alice", Quantity: 2,
					Status: reservation.StatusPending, CreatedAt: at(1000), ExpiresAt: at(61000), UpdatedAt: at(1500)},
				IdempotencyField: "5:alice:k",
			},
		},
		{
			name:   "reservation with every character a user id may have",
			fields: []any{"k", "res", "id", id, "rec", "expired|1|1|2|3|a.b_c:d@e-F9", "idem", ""},
			want: reservation.Change{Reservation: &reservation.Reservation{ID: id, SKU: "a", UserID: "a.b_c:d@e-F9",
				Quantity: 1, Status: reservation.StatusExpired, CreatedAt: at(1), ExpiresAt: at(2), UpdatedAt: at(3)}},
		},
		{
			name:   "reservation without an idempotency field, as lib.lua writes it when there is none",
			fields: []any{"k", "res", "id", id, "rec", "pending|1|1000|61000|1000|bob"},
			want: reservation.Change{Reservation: &reservation.Reservation{ID: id, SKU: "a", UserID: "bob",
				Quantity: 1, Status: reservation.StatusPending, CreatedAt: at(1000), ExpiresAt: at(61000), UpdatedAt: at(1000)}},
		},
		{
			name: "item with a sale window",
			fields: []any{"k", "item", "rev", "3", "stock", "10", "limit", "2", "hold", "60000",
				"starts", "1000", "ends", "2000", "name", "Phone | X", "created", "500", "updated", "600"},
			want: reservation.Change{Item: &reservation.ItemRecord{
				ItemSpec: reservation.ItemSpec{SKU: "a", Name: "Phone | X", Stock: 10, PerUserLimit: 2,
					Hold: time.Minute, StartsAt: at(1000), EndsAt: at(2000), Buckets: 1},
				Rev: 3, CreatedAt: at(500), UpdatedAt: at(600),
			}},
		},
		{
			name: "item without a window or a name",
			fields: []any{"k", "item", "rev", "1", "stock", "0", "limit", "1", "hold", "1000",
				"starts", "", "ends", "", "name", "", "created", "0", "updated", "0"},
			want: reservation.Change{Item: &reservation.ItemRecord{
				ItemSpec: reservation.ItemSpec{SKU: "a", PerUserLimit: 1, Hold: time.Second, Buckets: 1},
				Rev:      1, CreatedAt: at(0), UpdatedAt: at(0),
			}},
		},
		{name: "unknown kind", fields: []any{"k", "box"}, wantErr: `unknown kind "box"`},
		{name: "no kind", fields: []any{"id", id}, wantErr: `unknown kind ""`},
		{name: "record of five fields", fields: []any{"k", "res", "id", id, "rec", "pending|1|1|1|1"}, wantErr: "want 6 fields"},
		{name: "reservation of another item", fields: []any{"k", "res", "id", other, "rec", "pending|1|1|1|1|alice"},
			wantErr: "is not of item a"},
		{name: "malformed reservation id", fields: []any{"k", "res", "id", "a.short", "rec", "pending|1|1|1|1|alice"},
			wantErr: "is not of item a"},
		{name: "unknown status", fields: []any{"k", "res", "id", id, "rec", "held|1|1|1|1|alice"}, wantErr: "unknown status"},
		{name: "negative quantity", fields: []any{"k", "res", "id", id, "rec", "pending|-1|1|1|1|alice"},
			wantErr: "field 2 is not a count"},
		{name: "time not a number", fields: []any{"k", "res", "id", id, "rec", "pending|1|1|soon|1|alice"},
			wantErr: "field 4 is not a count"},
		{name: "zero quantity", fields: []any{"k", "res", "id", id, "rec", "pending|0|1|1|1|alice"},
			wantErr: "bad user or quantity"},
		{name: "user with a bar", fields: []any{"k", "res", "id", id, "rec", "pending|1|1|1|1|al|ice"},
			wantErr: "bad user or quantity"},
		{name: "empty user", fields: []any{"k", "res", "id", id, "rec", "pending|1|1|1|1|"},
			wantErr: "bad user or quantity"},
		{name: "item at revision 0", fields: []any{"k", "item", "rev", "0", "stock", "1", "limit", "1", "hold", "1",
			"created", "1", "updated", "1"}, wantErr: `item field rev="0"`},
		{name: "item without a limit", fields: []any{"k", "item", "rev", "1", "stock", "1", "hold", "1",
			"created", "1", "updated", "1"}, wantErr: `item field limit=""`},
		{name: "item with a bad start", fields: []any{"k", "item", "rev", "1", "stock", "1", "limit", "1", "hold", "1",
			"starts", "soon", "created", "1", "updated", "1"}, wantErr: `item field starts="soon"`},
		{name: "item with every bad field named", fields: []any{"k", "item", "rev", "x", "stock", "-1", "limit", "1", "hold", "0",
			"created", "1", "updated", "1"}, wantErr: `item field rev="x"` + "\n" + `item field stock="-1"` + "\n" + `item field hold="0"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			if err := s.rdb.SAdd(ctx, s.prefix+":catalog", "a").Err(); err != nil {
				t.Fatal(err)
			}
			entryID, err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.key("a", "outbox"), Values: tc.fields}).Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.MarkDirty(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			got := mustRead(t, newOutbox(t, s, "c1"), 10)
			if len(got) != 1 || got[0].SKU != "a" || got[0].ID != entryID {
				t.Fatalf("Read = %+v, want the one entry %s of a", got, entryID)
			}
			e := got[0]
			if tc.wantErr == "" {
				if e.Err != nil {
					t.Fatalf("Err = %v", e.Err)
				}
				if !reflect.DeepEqual(e.Change, tc.want) {
					t.Fatalf("change:\ngot  %s\nwant %s", showChange(e.Change), showChange(tc.want))
				}
				return
			}
			if e.Err == nil {
				t.Fatalf("garbage parsed: %s", showChange(e.Change))
			}
			prefix := "outbox entry " + entryID + " of a: "
			if msg := e.Err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.wantErr) {
				t.Fatalf("Err = %q, want %q...%q", msg, prefix, tc.wantErr)
			}
			if !reflect.DeepEqual(e.Change, reservation.Change{}) {
				t.Fatalf("a bad entry came with a change: %s", showChange(e.Change))
			}
		})
	}
}

func TestOutboxFailParksAfterMaxTries(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// add appends the entry that fails to item a's outbox (after its
		// seed entry) and returns its fields.
		add func(t *testing.T, s *testStore) entry
	}{
		{
			name: "a parsed entry",
			add: func(t *testing.T, s *testStore) entry {
				return resEntry(mustReserve(t, s, "a", "alice", 1), "")
			},
		},
		{
			name: "a garbage entry",
			add: func(t *testing.T, s *testStore) entry {
				if err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.key("a", "outbox"), Values: []any{"k", "junk", "x", "1"}}).Err(); err != nil {
					t.Fatal(err)
				}
				if err := s.MarkDirty(ctx, "a"); err != nil {
					t.Fatal(err)
				}
				return entry{"k": "junk", "x": "1"}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			seed := mustSeed(t, s, itemSpec("a", 5, 1))
			fields := tc.add(t, s)
			o := newOutbox(t, s, "c1")
			got := mustRead(t, o, 10)
			if len(got) != 2 {
				t.Fatalf("Read = %+v, want 2 entries", got)
			}
			failing := got[1]

			dead, err := o.Fail(ctx, failing, "db said no")
			if err != nil || dead {
				t.Fatalf("first Fail = %v, %v; want counted, not dead", dead, err)
			}
			// "tries|token" (see ack.lua): one try, of some attempt.
			if n := s.rdb.HGet(ctx, s.key("a", "tries"), failing.ID).Val(); !strings.HasPrefix(n, "1|") || len(n) == len("1|") {
				t.Fatalf("tries = %q, want 1 and the attempt's token", n)
			}
			wantOutbox(t, s, "a", itemEntry(1, seed.Item), fields)
			wantStream(t, s, s.key("a", "dead"))

			dead, err = o.Fail(ctx, failing, "db said no again")
			if err != nil || !dead {
				t.Fatalf("second Fail = %v, %v; want dead", dead, err)
			}
			parked := entry{"entry": failing.ID, "reason": "db said no again"}
			for k, v := range fields {
				parked[k] = v
			}
			wantStream(t, s, s.key("a", "dead"), parked)
			wantOutbox(t, s, "a", itemEntry(1, seed.Item))
			if n := s.rdb.Exists(ctx, s.key("a", "tries")).Val(); n != 0 {
				t.Fatalf("tries hash left behind: %v", s.rdb.HGetAll(ctx, s.key("a", "tries")).Val())
			}
			if n := pendingCount(t, s, "a"); n != 1 {
				t.Fatalf("%d pending, want 1 (the seed entry)", n)
			}
			b, err := o.Backlog(ctx)
			if err != nil || b.Entries != 1 || b.Dead != 1 {
				t.Fatalf("Backlog = %+v, %v; want 1 entry and 1 dead", b, err)
			}

			if err := o.Ack(ctx, got[:1]); err != nil {
				t.Fatal(err)
			}
			if b, err := o.Backlog(ctx); err != nil || b != (reservation.Backlog{Dead: 1}) {
				t.Fatalf("Backlog = %+v, %v; want only the dead entry", b, err)
			}
		})
	}
}

func TestBacklog(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	if b, err := s.Backlog(ctx); err != nil || b != (reservation.Backlog{}) {
		t.Fatalf("Backlog of nothing = %+v, %v", b, err)
	}
	t0 := s.now(t)
	mustSeed(t, s, itemSpec("a", 5, 1))
	mustReserve(t, s, "a", "alice", 1)
	s.advance(t, 2*time.Second)
	mustSeed(t, s, itemSpec("b", 5, 1))
	s.advance(t, 3*time.Second)

	b, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The oldest entry is a's seed, appended at t0 (to the millisecond).
	now := redistestNow(t, s)
	if b.Entries != 3 || b.Dead != 0 || b.Oldest != now.Sub(t0) {
		t.Fatalf("Backlog = %+v, want 3 entries, oldest %v", b, now.Sub(t0))
	}
	for sku, want := range map[string]int64{"a": 2, "b": 1, "none": 0} {
		if n, err := s.ItemBacklog(ctx, sku); err != nil || n != want {
			t.Fatalf("ItemBacklog(%s) = %d, %v; want %d", sku, n, err, want)
		}
	}
}

// redistestNow is the server's TIME to the microsecond, which Backlog
// measures the age of entries against.
func redistestNow(t testing.TB, s *testStore) time.Time {
	t.Helper()
	now, err := s.rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

func TestOutboxClaimsIdleEntries(t *testing.T) {
	// miniredis's XAUTOCLAIM measures idleness on its own clock (the one
	// redistest.Advance moves), so no test sleeps. A fresh Outbox claims on
	// its first Read of an item it takes from the dirty index; later Reads
	// claim again only every ClaimIdle/2 of wall time, which an hour's
	// ClaimIdle keeps out of this test, so each Read below does exactly what
	// the test says. Each fresh reader finds the index released, as if the
	// reader before it had died and its hold run out.
	const idle = time.Hour
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("a", 5, 5))
	for range 2 {
		mustReserve(t, s, "a", "alice", 1)
	}
	c1 := newOutboxIdle(t, s, "c1", idle)
	taken := mustRead(t, c1, 10)
	if len(taken) != 3 {
		t.Fatalf("c1 read %d entries, want 3", len(taken))
	}

	release := func() {
		t.Helper()
		if err := s.ReleaseIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	release()
	if got := mustRead(t, newOutboxIdle(t, s, "c2", idle), 10); len(got) != 0 {
		t.Fatalf("c2 took %d entries c1 read just now", len(got))
	}
	s.advance(t, idle-time.Millisecond)
	release()
	if got := mustRead(t, newOutboxIdle(t, s, "c2", idle), 10); len(got) != 0 {
		t.Fatalf("c2 took %d entries idle for less than ClaimIdle", len(got))
	}
	s.advance(t, 2*time.Millisecond)

	// More idle entries than one Read takes: the next Read goes on where
	// the claim stopped.
	release()
	c2 := newOutboxIdle(t, s, "c2", idle)
	var claimed []reservation.OutboxEntry
	for i, want := range []int{2, 1, 0} {
		got := mustRead(t, c2, 2)
		if len(got) != want {
			t.Fatalf("c2 Read %d: %d entries, want %d", i, len(got), want)
		}
		claimed = append(claimed, got...)
	}
	if !reflect.DeepEqual(claimed, taken) {
		t.Fatalf("c2 claimed %+v\nc1 had taken %+v", claimed, taken)
	}
	p, err := s.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{
		Stream: s.key("a", "outbox"), Group: redisstore.SyncGroup, Start: "-", End: "+", Count: 10,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 {
		t.Fatalf("pending = %+v, want 3", p)
	}
	for _, e := range p {
		if e.Consumer != "c2" || e.RetryCount != 2 {
			t.Fatalf("pending %+v: want owned by c2, delivered twice", e)
		}
	}
	if got := mustRead(t, c1, 10); len(got) != 0 {
		t.Fatalf("c1 read %d entries after c2 claimed them", len(got))
	}
	if err := c2.Ack(ctx, claimed); err != nil {
		t.Fatal(err)
	}
	wantOutbox(t, s, "a")
}

func TestOutboxRecreatesLostGroup(t *testing.T) {
	// Redis lost the stream and its group (FLUSHALL, failover) while the
	// Outbox still believes the group exists; new changes must still be read.
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("a", 5, 1))
	o := newOutbox(t, s, "c1")
	if err := o.Ack(ctx, mustRead(t, o, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.Del(ctx, s.key("a", "outbox")).Err(); err != nil {
		t.Fatal(err)
	}
	r := mustReserve(t, s, "a", "bob", 1)
	var got []reservation.OutboxEntry
	for range 2 {
		got = append(got, mustRead(t, o, 10)...)
	}
	wantEntries(t, s, "a", got, reservation.Change{Reservation: &r})
}

func TestUnsynced(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	if got, err := s.Unsynced(ctx, "a", 1); err != nil || len(got) != 0 {
		t.Fatalf("Unsynced of nothing = %+v, %v", got, err)
	}
	seed := mustSeed(t, s, itemSpec("a", 5, 1))
	if err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.key("a", "outbox"), Values: []any{"k", "junk"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDirty(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.Reserve(ctx, request(t, "a", "alice", 1, "k"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Unsynced(ctx, "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := itemRecord(1, seed.Item)
	want := []reservation.Change{{Item: &rec}, {Reservation: &r, IdempotencyField: "5:alice:k"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unsynced = %v, want %v", got, want)
	}

	o := newOutbox(t, s, "c1")
	if err := o.Ack(ctx, mustRead(t, o, 10)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Unsynced(ctx, "a", 1); err != nil || len(got) != 0 {
		t.Fatalf("Unsynced after Ack = %+v, %v", got, err)
	}
}

// TestOutboxFailAfterAnotherAck: an entry another syncer acknowledged
// between our read and our Fail is neither counted nor parked.
func TestOutboxFailAfterAnotherAck(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	mustSeed(t, s, itemSpec("a", 5, 1))
	o := newOutbox(t, s, "c1")
	got := mustRead(t, o, 10)
	if len(got) != 1 {
		t.Fatalf("Read = %+v, want the seed's entry", got)
	}
	if err := o.Ack(ctx, got); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for range 3 { // beyond MaxTries 2
		dead, err := o.Fail(ctx, got[0], "late failure")
		if err != nil || dead {
			t.Fatalf("Fail after Ack = %v, %v; want neither dead nor an error", dead, err)
		}
	}
	wantStream(t, s, s.key("a", "dead"))
	if n := s.rdb.Exists(ctx, s.key("a", "tries")).Val(); n != 0 {
		t.Fatalf("tries hash left behind: %v", s.rdb.HGetAll(ctx, s.key("a", "tries")).Val())
	}
}
