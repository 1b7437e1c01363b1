//go:build integration

package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
)

// TestMeasureIdle seeds a small catalogue on a Redis of the test's own and
// measures a known load on it as the idle rows do: every PING sent in the
// window is counted, and PING is the busiest command.
func TestMeasureIdle(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.Client(t)
	ctx := context.Background()
	const items = 100
	if err := seedCatalogue(ctx, rdb, "idletest", items); err != nil {
		t.Fatalf("seedCatalogue: %v", err)
	}
	store, err := redisstore.New(ctx, rdb, "idletest")
	if err != nil {
		t.Fatal(err)
	}
	for _, sku := range []string{"idle-0", "idle-99"} {
		if _, err := store.Item(ctx, sku); err != nil {
			t.Errorf("item %s: %v", sku, err)
		}
	}

	var pings atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if rdb.Ping(ctx).Err() == nil {
				pings.Add(1)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	before := pings.Load()
	row, err := measureIdle(ctx, rdb, testenvPID(t, redis.Addr()), nil, nil, 500*time.Millisecond)
	after := pings.Load()
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("measureIdle: %v", err)
	}
	t.Logf("%+v", row)
	// The PINGs counted here span measureIdle's whole call, its INFO calls
	// and whatever delays a busy machine adds around its window: Redis's
	// count over the window is at most what was sent (PINGs in flight at
	// either end blur it by a few), and most of it.
	sent := float64(after - before)
	if inWindow := row.Commands * row.Window.Seconds(); inWindow > sent+10 || inWindow < 0.3*sent {
		t.Errorf("%.0f commands in the %v window, want most of the %.0f PINGs sent around it", inWindow, row.Window, sent)
	}
	if len(row.TopCommands) == 0 || row.TopCommands[0].Name != "ping" {
		t.Errorf("top commands %+v, want ping first", row.TopCommands)
	}
	if row.RedisCPU <= 0 || row.RedisCPU > 1.5 || row.Instances != 0 || row.MySQLCPU != -1 {
		t.Errorf("Redis CPU share %v, instances %d, MySQL %v: want a share of a busy core, none, not measured (-1)",
			row.RedisCPU, row.Instances, row.MySQLCPU)
	}
}

// testenvPID is the pid of the redis-server listening on addr.
func testenvPID(t *testing.T, addr string) int {
	t.Helper()
	pid, err := localServerPID(addr, func() (int, error) { return 0, context.Canceled }, "redis-server")
	if err != nil {
		t.Fatalf("find the redis-server on %s: %v", addr, err)
	}
	return pid
}
