package redisstore_test

import (
	"context"
	"testing"
	"time"
)

// TestOverview: the console's read gives each item's counters summed over
// its buckets, its name and window, sorted by SKU, leaves out a catalogued
// item without a hash, and writes nothing (a due hold stays reserved).
func TestOverview(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	starts := time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC)
	windowed := itemSpec("b", 5, 2)
	windowed.StartsAt, windowed.EndsAt = starts, starts.Add(2*time.Hour)
	mustSeed(t, s, windowed)
	mustSeed(t, s, itemSpec("a", 3, 1))
	split := itemSpec("c", 8, 1)
	split.Buckets = 4
	mustSeed(t, s, split)
	s.advance(t, time.Until(starts)+time.Minute)
	mustReserve(t, s, "b", "alice", 2)
	for _, u := range []string{"u1", "u2", "u3"} {
		mustReserve(t, s, "c", u, 1)
	}
	if err := s.rdb.SAdd(ctx, s.prefix+":catalog", "ghost").Err(); err != nil {
		t.Fatal(err)
	}
	s.advance(t, 11*time.Minute)       // b's holds are due, not yet swept
	s.FlushHints(context.Background()) // hints of the setup land before the snapshot
	before := s.mr.Dump()

	got, err := s.Overview(ctx)
	if err != nil {
		t.Fatalf("Overview: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("Overview = %+v, want a, b, c", got)
	}
	tests := []struct {
		name                             string
		sku                              string
		stock, available, reserved, sold int64
		buckets                          int
		starts, ends                     time.Time
	}{
		{"no window", "a", 3, 3, 0, 0, 1, time.Time{}, time.Time{}},
		{"window and a due hold", "b", 5, 3, 2, 0, 1, starts, starts.Add(2 * time.Hour)},
		{"summed over buckets", "c", 8, 8 - 3, 3, 0, 4, time.Time{}, time.Time{}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			it := got[i]
			if it.SKU != tc.sku || it.Name != "Item "+tc.sku || it.Stock != tc.stock || it.Available != tc.available ||
				it.Reserved != tc.reserved || it.Sold != tc.sold || it.Buckets != tc.buckets ||
				!it.StartsAt.Equal(tc.starts) || !it.EndsAt.Equal(tc.ends) {
				t.Errorf("item %d = %+v, want %s stock %d available %d reserved %d sold %d buckets %d window %v..%v",
					i, it, tc.sku, tc.stock, tc.available, tc.reserved, tc.sold, tc.buckets, tc.starts, tc.ends)
			}
		})
	}
	if after := s.mr.Dump(); after != before {
		t.Errorf("Overview changed Redis")
	}
}
