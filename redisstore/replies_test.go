package redisstore

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/reservation"
)

// TestReplyLayouts pins every reply layout of replies.go against what the
// scripts return: each reply is produced by its script on miniredis, must
// have exactly its layout's length, and must decode to the values the test
// set up. A script that moves, adds or drops a value fails here, not
// silently in a caller.
func TestReplyLayouts(t *testing.T) {
	ctx := context.Background()
	mr, rdb := redistest.Miniredis(t)
	s, err := New(ctx, rdb, "rl", WithPipelines(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_800_000_000_000).UTC()
	mr.SetTime(now)
	run := func(t *testing.T, sc *goredis.Script, bucket string, args ...any) scriptReply {
		t.Helper()
		rep, err := reply(sc.Run(ctx, rdb, s.keys(bucket), args...).Result())
		if err != nil {
			t.Fatalf("script: %v", err)
		}
		return rep
	}
	wantLen := func(t *testing.T, rep scriptReply, code string, n int) {
		t.Helper()
		if rep.code() != code || len(rep) != n {
			t.Fatalf("reply %v: want code %q and %d values", []any(rep), code, n)
		}
	}
	spec := reservation.ItemSpec{SKU: "pin", Name: "Pinned", Stock: 6, PerUserLimit: 3, Hold: 5 * time.Second,
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), Buckets: 1}

	t.Run("seed created: item_reply", func(t *testing.T) {
		rep := run(t, s.seed, "pin", s.seedArgs(spec, "s1")...)
		wantLen(t, rep, "created", itemLen)
		it, err := rep.item("pin")
		want := reservation.Item{SKU: "pin", Name: "Pinned", Stock: 6, Available: 6, PerUserLimit: 3, Hold: 5 * time.Second,
			StartsAt: spec.StartsAt, EndsAt: spec.EndsAt, Buckets: 1, CreatedAt: now, UpdatedAt: now}
		if err != nil || it != want {
			t.Fatalf("item %+v, %v\nwant %+v", it, err, want)
		}
		if rep.int(itemNow) != now.UnixMilli() || rep.int(itemStock) != 6 {
			t.Fatalf("now_ms %d, stock %d", rep.int(itemNow), rep.int(itemStock))
		}
	})
	t.Run("ratelimit allowed and limited", func(t *testing.T) {
		keys := []reservation.RateKey{{Policy: "user", Subject: "pin", Limit: reservation.Limit{Rate: 4, Per: time.Second, Burst: 1}},
			{Policy: "ip", Subject: "pin", Limit: reservation.Limit{Rate: 1, Per: time.Second, Burst: 3}}}
		take := func(code string) []reservation.RateState {
			t.Helper()
			c := s.rateCall([]budgetOp{{key: keys[0]}, {key: keys[1]}})
			rep, err := reply(rateLimitScript.Run(ctx, rdb, c.keys, c.args...).Result())
			if err != nil {
				t.Fatal(err)
			}
			wantLen(t, rep, code, rateFirst+2*rateEach)
			var res spent
			if err := rep.spent(&res, len(keys)); err != nil {
				t.Fatal(err)
			}
			states, err := res.states(keys)
			if (code == "limited") != (err != nil) {
				t.Fatalf("%s: %v", code, err)
			}
			return states
		}
		want := []reservation.RateState{{Policy: "user", Limit: keys[0].Limit, Remaining: 0, Reset: 250 * time.Millisecond},
			{Policy: "ip", Limit: keys[1].Limit, Remaining: 2, Reset: time.Second}}
		if got := take("allowed"); got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("allowed: %+v, want %+v", got, want)
		}
		if got := take("limited"); got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("limited: %+v, want %+v (unchanged)", got, want)
		}
	})
	t.Run("reserve created: reply", func(t *testing.T) {
		rep := run(t, s.reserve, "pin", "pin.r1", "alice", 2, "", 64, 1)
		wantLen(t, rep, "created", createdLen)
		r, err := rep.created("pin.r1", "pin", "alice", 2)
		want := reservation.Reservation{ID: "pin.r1", SKU: "pin", UserID: "alice", Quantity: 2, Status: reservation.StatusPending,
			CreatedAt: now, ExpiresAt: now.Add(5 * time.Second), UpdatedAt: now}
		if err != nil || r != want {
			t.Fatalf("reservation %+v, %v\nwant %+v", r, err, want)
		}
		// The same call again answers the whole record, from Redis.
		rep = run(t, s.reserve, "pin", "pin.r1", "alice", 2, "", 64, 1)
		wantLen(t, rep, "replayed", resLen)
		if r, err := rep.reservation("pin"); err != nil || r != want {
			t.Fatalf("replayed %+v, %v\nwant %+v", r, err, want)
		}
	})
	t.Run("reserve limit_exceeded", func(t *testing.T) {
		rep := run(t, s.reserve, "pin", "pin.r2", "alice", 2, "", 64, 1)
		wantLen(t, rep, "limit_exceeded", 3)
		if got := rep.limitExceeded(); got != (limitReply{held: 2, limit: 3}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("reserve sold_out", func(t *testing.T) {
		rep := run(t, s.reserve, "pin", "pin.r3", "bob", 3, "", 64, 1)
		if rep.code() != "created" {
			t.Fatalf("%v", []any(rep))
		}
		mr.HSet(s.key("pin", "item"), "recount", "1")
		defer mr.HDel(s.key("pin", "item"), "recount")
		rep = run(t, s.reserve, "pin", "pin.r4", "carol", 3, "", 64, 1)
		wantLen(t, rep, "sold_out", 4)
		if got := rep.soldOut(); got != (soldOutReply{available: 1, nextDueIn: 5000, recount: true}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("reserve layout", func(t *testing.T) {
		rep := run(t, s.reserve, "pin", "pin.r5", "dave", 1, "", 64, 4)
		wantLen(t, rep, "layout", 2)
		if rep.count() != 1 {
			t.Fatalf("%v", []any(rep))
		}
	})
	t.Run("seed stock_below_committed", func(t *testing.T) {
		low := spec
		low.Stock = 1
		rep := run(t, s.seed, "pin", s.seedArgs(low, "s2")...)
		wantLen(t, rep, "stock_below_committed", 4)
		if got := rep.belowCommitted(); got != (belowCommittedReply{reserved: 5, sold: 0, buckets: 1}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("seed buckets_immutable", func(t *testing.T) {
		other := spec
		other.Buckets = 3
		rep := run(t, s.seed, "pin", s.seedArgs(other, "s3")...)
		wantLen(t, rep, "buckets_immutable", 2)
		if rep.count() != 1 {
			t.Fatalf("%v", []any(rep))
		}
	})
	t.Run("expire ok", func(t *testing.T) {
		mr.HSet(s.key("pin", "xout"), "x1", "pin~1|1|1")
		defer mr.HDel(s.key("pin", "xout"), "x1")
		mr.HSet(s.key("pin", "item"), "recount", "1")
		defer mr.HDel(s.key("pin", "item"), "recount")
		later := now.Add(6 * time.Second)
		mr.SetTime(later)
		rep := run(t, s.expire, "pin", 1) // two holds due, one settled per call
		wantLen(t, rep, "ok", expireLen)
		got, err := rep.expire("pin")
		if err != nil || got.expired != 1 || !got.moreDue || got.transfersOut != 1 || !got.recount ||
			got.nowMS != later.UnixMilli() || got.share != 6 || got.item.Stock != 6 || got.item.Reserved+got.item.Available != 6 {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("take taken and empty", func(t *testing.T) {
		rep := run(t, s.take, "pin", "t1", "pin~1", 2, "0", 64, 1)
		wantLen(t, rep, "taken", 2)
		if rep.count() != 2 {
			t.Fatalf("%v", []any(rep))
		}
		rep = run(t, s.take, "pin", "t2", "pin~1", 100, "0", 64, 1)
		if rep.code() != "taken" {
			t.Fatalf("%v", []any(rep))
		}
		rep = run(t, s.take, "pin", "t3", "pin~1", 1, "0", 64, 1)
		wantLen(t, rep, "empty", 3)
		if got := rep.empty(); got != (emptyReply{nextDueIn: -1}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("freeze ok", func(t *testing.T) {
		rep := run(t, s.freeze, "pin", 1000, "count-1")
		wantLen(t, rep, "ok", 5)
		// Everything available was taken out (two transfers), none reserved.
		if got := rep.frozen(); got != (freezeReply{stock: 0, transfersOut: 2, frozenFor: 1000, total: 6}) {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("restore records ok", func(t *testing.T) {
		rec := "pending|2|1|2|1|erin"
		conf := "confirmed|3|1|2|1|fred"
		rep := run(t, s.restore, "gone", "records", "gone.a", rec, "", "gone.b", conf, "")
		wantLen(t, rep, "ok", 4)
		if got := rep.restoredRecords(); got != (restoredRecords{written: 2, reserved: 2, sold: 3}) {
			t.Fatalf("%+v", got)
		}
	})
}

func TestReplyMillis(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_123).UTC()
	r := scriptReply{int64(1_780_000_000_123), "1780000000123", "", nil}
	for _, tc := range []struct {
		name string
		i    int
		want time.Time
	}{
		{"integer", 0, at},
		{"string", 1, at},
		{"empty", 2, time.Time{}},
		{"nil", 3, time.Time{}},
		{"missing", 4, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.millis(tc.i); !got.Equal(tc.want) || got.Location() != tc.want.Location() {
				t.Errorf("millis(%d) = %v, want %v", tc.i, got, tc.want)
			}
		})
	}
}
