//go:build integration

package redisstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// BenchmarkOverview10000 is the console poller's read of a 10,000-item
// catalogue on the real Redis.
func BenchmarkOverview10000(b *testing.B) {
	client, prefix := redistest.Client(b)
	ctx := context.Background()
	s, err := redisstore.New(ctx, client, prefix)
	if err != nil {
		b.Fatal(err)
	}
	specs := make([]reservation.ItemSpec, 10_000)
	for i := range specs {
		specs[i] = reservation.ItemSpec{SKU: fmt.Sprintf("bench-%05d", i), Name: "item", Stock: 100,
			PerUserLimit: 1, Hold: reservation.DefaultHold}
	}
	if _, errs := s.SeedMany(ctx, specs); errs[0] != nil {
		b.Fatal(errs[0])
	}
	b.ReportAllocs()
	for b.Loop() {
		items, err := s.Overview(ctx)
		if err != nil || len(items) != 10_000 {
			b.Fatalf("Overview: %d items, %v", len(items), err)
		}
	}
}
