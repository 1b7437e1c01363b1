package redisstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/reservation"
)

// TestMergeSplit: the coalescer folds calls of one script on the same keys
// that may merge into one call, leaves every other call as it was, never
// touches a caller's arguments, and hands each caller its own reply, or the
// merged call's error.
func TestMergeSplit(t *testing.T) {
	a, b := goredis.NewScript("return 'a'"), goredis.NewScript("return 'b'")
	k1, k2 := []string{"{x}:1", "{x}:2"}, []string{"{y}:1", "{y}:2"}
	calls := []call{
		{sc: a, keys: k1, args: []any{"r1", 1}, merge: true},
		{sc: a, keys: k2, args: []any{"r2", 2}, merge: true},
		{sc: b, keys: k1, args: []any{"c1"}},
		{sc: a, keys: slices.Clone(k1), args: []any{"r3", 3}, merge: true, ack: true},
		{sc: a, keys: k1, args: []any{"r4", 4}}, // may not merge
		{sc: a, keys: k2, args: []any{"r5", 5}, merge: true},
		{sc: a, keys: k1, args: []any{"r6", 6}, merge: true},
	}
	firstArgs := slices.Clone(calls[0].args)
	merged, members := merge(calls)

	wantMembers := [][]int{{0, 3, 6}, {1, 5}, {2}, {4}}
	if !reflect.DeepEqual(members, wantMembers) {
		t.Fatalf("members %v, want %v", members, wantMembers)
	}
	if got := merged[0].args; !reflect.DeepEqual(got, []any{"r1", 1, "r3", 3, "r6", 6}) || !merged[0].ack {
		t.Errorf("merged call: args %v, ack %v; want r1, r3, r6 and ack", got, merged[0].ack)
	}
	if !reflect.DeepEqual(calls[0].args, firstArgs) {
		t.Errorf("the first caller's arguments changed: %v", calls[0].args)
	}
	if merged[1].ack || !reflect.DeepEqual(merged[1].args, []any{"r2", 2, "r5", 5}) {
		t.Errorf("second merged call: %+v", merged[1])
	}

	boom := errors.New("boom")
	results := split([]result{
		{val: []any{[]any{"created", "r1"}, []any{"sold_out"}, []any{"created", "r6"}}},
		{err: boom},
		{val: "c1"},
		{val: []any{"not merged"}},
	}, members, len(calls))
	want := []result{
		{val: []any{"created", "r1"}}, {err: boom}, {val: "c1"}, {val: []any{"sold_out"}},
		{val: []any{"not merged"}}, {err: boom}, {val: []any{"created", "r6"}},
	}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("split:\n got %v\nwant %v", results, want)
	}

	// A merged call whose reply is not one per member fails every member.
	for _, res := range split([]result{{val: []any{"only one"}}}, [][]int{{0, 1}}, 2) {
		if res.err == nil {
			t.Errorf("a short reply was handed out: %v", res.val)
		}
	}
}

// TestReserveMergedAsIfAlone: reserve.lua given several requests in one call
// answers each exactly as it would have alone, one after the other, and
// leaves Redis as those calls would: randomized over stock, the per-user
// limit, repeated ids and idempotency keys, holds falling due in between
// and a settle limit small enough to answer more_due.
func TestReserveMergedAsIfAlone(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		alone, together := mergeStore(rt), mergeStore(rt)
		defer alone.close()
		defer together.close()
		spec := reservation.ItemSpec{SKU: "m", Stock: rapid.Int64Range(0, 8).Draw(rt, "stock"),
			PerUserLimit: rapid.IntRange(1, 4).Draw(rt, "limit"), Hold: time.Second}
		users := []string{"u1", "u2", "u3"}
		keys := []string{"", "", "k1", "k2"}
		settle := rapid.IntRange(1, 3).Draw(rt, "settle")
		var ids []string
		draw := func(label string) call {
			id := "m.r" + strconv.Itoa(len(ids))
			if len(ids) > 0 && rapid.IntRange(0, 5).Draw(rt, label+" repeat") == 0 {
				id = ids[rapid.IntRange(0, len(ids)-1).Draw(rt, label+" id")]
			}
			ids = append(ids, id)
			user := rapid.SampledFrom(users).Draw(rt, label+" user")
			idem := ""
			if k := rapid.SampledFrom(keys).Draw(rt, label+" key"); k != "" {
				idem = strconv.Itoa(len(user)) + ":" + user + ":" + k
			}
			return call{keys: alone.keys("m"), args: []any{id, user, rapid.IntRange(1, 3).Draw(rt, label+" qty"), idem, settle, 1}, merge: true}
		}
		for _, st := range []*mergeTestStore{alone, together} {
			if _, err := st.Seed(ctx, spec); err != nil {
				rt.Fatal(err)
			}
		}
		// Holds taken earlier, some of which fall due before the batch.
		for i := range rapid.IntRange(0, 6).Draw(rt, "earlier") {
			c := draw("earlier " + strconv.Itoa(i))
			for _, st := range []*mergeTestStore{alone, together} {
				c.sc = st.reserve
				if res := st.runOne(ctx, c); res.err != nil {
					rt.Fatal(res.err)
				}
			}
		}
		wait := time.Duration(rapid.IntRange(0, 1500).Draw(rt, "wait ms")) * time.Millisecond
		alone.advance(wait)
		together.advance(wait)

		batch := make([]call, rapid.IntRange(2, 10).Draw(rt, "batch"))
		for i := range batch {
			batch[i] = draw("batch " + strconv.Itoa(i))
		}
		checkMergedAsIfAlone(rt, alone, together, batch)
	})
}

// TestReserveMergedCountsWhatTheCallMoved: the requests of one merged call
// share one read of the item, so each must count what the ones before it
// moved of available: units freed by settling due holds (whether the
// request then answered more_due, sold_out or took them) and units taken.
// Named cases for what the property test above reaches only now and then.
func TestReserveMergedCountsWhatTheCallMoved(t *testing.T) {
	cases := []struct {
		name    string
		stock   int64
		earlier []int         // quantities of holds taken before, by users e1, e2...
		wait    time.Duration // then: past the one-second hold, they fall due
		settle  int           // due holds a request may settle
		batch   []int         // quantities of the merged requests, by users b1, b2...
	}{
		{"taken by the one before", 3, nil, 0, 3, []int{2, 1, 1}},
		{"freed by a more_due before", 3, []int{1, 1, 1}, 1500 * time.Millisecond, 1, []int{2, 2, 1}},
		{"freed by a sold_out before", 2, []int{1, 1}, 1500 * time.Millisecond, 2, []int{3, 2}},
		{"freed and taken by a grant before", 2, []int{1, 1}, 1500 * time.Millisecond, 2, []int{1, 1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			alone, together := mergeStore(t), mergeStore(t)
			defer alone.close()
			defer together.close()
			spec := reservation.ItemSpec{SKU: "m", Stock: tc.stock, PerUserLimit: 4, Hold: time.Second}
			for _, st := range []*mergeTestStore{alone, together} {
				if _, err := st.Seed(ctx, spec); err != nil {
					t.Fatal(err)
				}
				for i, q := range tc.earlier {
					c := call{sc: st.reserve, keys: st.keys("m"), args: []any{"m.e" + strconv.Itoa(i), "e" + strconv.Itoa(i), q, "", tc.settle, 1}}
					if res := st.runOne(ctx, c); res.err != nil {
						t.Fatal(res.err)
					}
				}
				st.advance(tc.wait)
			}
			batch := make([]call, len(tc.batch))
			for i, q := range tc.batch {
				batch[i] = call{keys: alone.keys("m"), args: []any{"m.b" + strconv.Itoa(i), "b" + strconv.Itoa(i), q, "", tc.settle, 1}, merge: true}
			}
			checkMergedAsIfAlone(t, alone, together, batch)
		})
	}
}

// checkMergedAsIfAlone runs batch one call at a time on alone and merged
// into one call on together, and fails unless both give every request the
// same reply and leave Redis the same.
func checkMergedAsIfAlone(tb fataler, alone, together *mergeTestStore, batch []call) {
	ctx := context.Background()
	var want []result
	for _, c := range batch {
		c.sc = alone.reserve
		want = append(want, alone.runOne(ctx, c))
	}
	calls := make([]call, len(batch))
	for i, c := range batch {
		c.sc = together.reserve
		calls[i] = c
	}
	merged, members := merge(calls)
	if len(merged) != 1 {
		tb.Fatalf("%d calls after merging, want 1", len(merged))
	}
	got := split(pipelined(ctx, together.client, merged, ackPolicy{}), members, len(calls))
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			tb.Fatalf("request %d %v: merged %v, alone %v", i, batch[i].args, got[i], want[i])
		}
	}
	if a, b := alone.dump(tb), together.dump(tb); !reflect.DeepEqual(a, b) {
		tb.Fatalf("Redis differs:\nalone    %v\ntogether %v", a, b)
	}
}

// fataler is what the helpers need of a *testing.T or a *rapid.T.
type fataler interface {
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

type mergeTestStore struct {
	*Store
	mr  *miniredis.Miniredis
	rdb *goredis.Client
}

// mergeStore is a store on a miniredis of its own; close it before the
// check ends (a rapid run makes hundreds).
func mergeStore(rt fataler) *mergeTestStore {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		rt.Fatal(err)
	}
	mr.SetTime(time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC))
	rdb := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	s, err := New(context.Background(), rdb, "mt")
	if err != nil {
		rt.Fatal(err)
	}
	return &mergeTestStore{Store: s, mr: mr, rdb: rdb}
}

func (s *mergeTestStore) close() {
	_ = s.rdb.Close()
	s.mr.Close()
}

func (s *mergeTestStore) advance(d time.Duration) { redistest.Advance(s.mr, d) }

// dump is the item's keys as values a test can compare; outbox entries by
// their fields, since their ids come from each Redis's own sequence.
func (s *mergeTestStore) dump(rt fataler) map[string]any {
	out := map[string]any{}
	for _, k := range s.keys("m") {
		if !s.mr.Exists(k) {
			continue
		}
		switch typ := s.mr.Type(k); typ {
		case "hash":
			fields, err := s.mr.HKeys(k)
			if err != nil {
				rt.Fatal(err)
			}
			h := map[string]string{}
			for _, f := range fields {
				if f != "seed_id" { // each Seed's own random id
					h[f] = s.mr.HGet(k, f)
				}
			}
			out[k] = h
		case "zset":
			members, err := s.mr.ZMembers(k)
			if err != nil {
				rt.Fatal(err)
			}
			z := map[string]float64{}
			for _, m := range members {
				z[m], _ = s.mr.ZScore(k, m)
			}
			out[k] = z
		case "stream":
			entries, err := s.mr.Stream(k)
			if err != nil {
				rt.Fatal(err)
			}
			var values []string
			for _, e := range entries {
				values = append(values, fmt.Sprint(e.Values))
			}
			out[k] = values
		default:
			rt.Fatalf("%s: type %s", k, typ)
		}
	}
	return out
}
