package redisstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

func TestCounters(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("b", 5, 2))
	mustSeed(t, s, itemSpec("a", 3, 1))
	mustSeed(t, s, itemSpec("c", 2, 1))
	mustReserve(t, s, "b", "alice", 2)
	// Catalogued without an item hash: lost by Redis, or never created.
	if err := s.rdb.SAdd(ctx, s.prefix+":catalog", "ghost").Err(); err != nil {
		t.Fatal(err)
	}
	counters := func(sku string, stock, available, reserved, sold int64) reservation.Item {
		return reservation.Item{SKU: sku, Stock: stock, Available: available, Reserved: reserved, Sold: sold}
	}
	all := []reservation.Item{counters("a", 3, 3, 0, 0), counters("b", 5, 3, 2, 0), counters("c", 2, 2, 0, 0)}
	tests := []struct {
		name  string
		limit int
		want  []reservation.Item
	}{
		{"no limit", 0, all},
		{"limit above the catalogue", 10, all},
		{"limit keeps the first SKUs", 2, all[:2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := s.Counters(ctx, tc.limit)
			if err != nil {
				t.Fatalf("Counters: %v", err)
			}
			if total != 4 {
				t.Errorf("total %d, want 4 (the catalogue, ghost included)", total)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Counters(%d) = %+v, want %+v", tc.limit, got, tc.want)
			}
		})
	}
}

// TestCountersWriteNothing: a metrics scrape reads; settling the holds that
// fell due is the sweeper's and the buyers' business.
func TestCountersWriteNothing(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("tee", 5, 2))
	mustReserve(t, s, "tee", "alice", 2)
	s.advance(t, 11*time.Minute)       // the 10-minute hold is due
	s.FlushHints(context.Background()) // hints of the setup land before the snapshot
	before := s.mr.Dump()

	got, _, err := s.Counters(ctx, 0)
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	if len(got) != 1 || got[0].Reserved != 2 || got[0].Available != 3 {
		t.Errorf("Counters = %+v, want the due hold still counted as reserved", got)
	}
	if after := s.mr.Dump(); after != before {
		t.Errorf("Counters changed Redis:\nbefore %s\nafter  %s", before, after)
	}
	// Item settles it, which is why the scrape must not use it.
	it, err := s.Item(ctx, "tee")
	if err != nil || it.Reserved != 0 {
		t.Errorf("Item = %+v, %v; want the due hold settled", it, err)
	}
}
