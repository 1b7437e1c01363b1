package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestBurstOfExpiriesNeverRefuses: one script call settles at most 64 due
// holds. When more fell due at once and the answer would otherwise be a
// refusal, the store goes round until every due hold is settled, so a burst
// of expiries never causes a false sold_out, limit_exceeded or
// stock_below_committed.
func TestBurstOfExpiriesNeverRefuses(t *testing.T) {
	const holds = 150 // more than two rounds of 64
	ctx := context.Background()
	cases := []struct {
		name string
		act  func(t *testing.T, s *testStore) error
		want counters
	}{
		{
			name: "reserve every unit at once",
			act: func(t *testing.T, s *testStore) error {
				_, _, err := s.Reserve(ctx, request(t, "sku", "whale", holds, ""))
				return err
			},
			want: counters{Stock: holds, Reserved: holds},
		},
		{
			name: "the same user's expired units free the limit",
			act: func(t *testing.T, s *testStore) error {
				_, _, err := s.Reserve(ctx, request(t, "sku", "u0", holds, ""))
				return err
			},
			want: counters{Stock: holds, Reserved: holds},
		},
		{
			name: "restock to zero",
			act: func(t *testing.T, s *testStore) error {
				spec := itemSpec("sku", 0, holds)
				spec.Hold = time.Minute
				_, err := s.Seed(ctx, spec)
				return err
			},
			want: counters{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			spec := itemSpec("sku", holds, holds)
			spec.Hold = time.Minute
			mustSeed(t, s, spec)
			for i := range holds {
				user := "u" + strconv.Itoa(i)
				if tc.name == "the same user's expired units free the limit" {
					user = "u0"
				}
				if _, _, err := s.Reserve(ctx, request(t, "sku", user, 1, "")); err != nil {
					t.Fatalf("hold %d: %v", i, err)
				}
			}
			s.advance(t, 2*time.Minute)
			if err := tc.act(t, s); err != nil {
				t.Fatalf("%s after %d holds fell due: %v", tc.name, holds, err)
			}
			wantCounters(t, s, "sku", tc.want)
			assertInvariant(t, s, "sku")
			if n := s.rdb.ZCard(ctx, s.key("sku", "holds")).Val(); n != int64(tc.want.Reserved/holds) {
				t.Fatalf("holds index has %d entries, want %d", n, tc.want.Reserved/holds)
			}
			var expired int
			for _, m := range s.rdb.XRange(ctx, s.key("sku", "outbox"), "-", "+").Val() {
				if rec, _ := m.Values["rec"].(string); len(rec) > 8 && rec[:8] == "expired|" {
					expired++
				}
			}
			if expired != holds {
				t.Fatalf("outbox has %d expired entries, want %d", expired, holds)
			}
		})
	}
}
