package redisstore_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// When Redis cannot be reached, every caller in the batch gets ErrUnavailable.
func TestCoalescedCallsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if _, err := redisstore.New(ctx, rdb, "x", redisstore.WithPipelines(1, 8)); !errors.Is(err, reservation.ErrUnavailable) {
		t.Fatalf("New against nothing: %v, want ErrUnavailable", err)
	}
}
