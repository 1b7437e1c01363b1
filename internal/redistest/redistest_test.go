package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
)

func TestAdvanceMovesScriptClockAndTTLs(t *testing.T) {
	m, c := redistest.Miniredis(t)
	ctx := context.Background()
	t0 := redistest.Now(m)
	if err := c.Set(ctx, "k", "v", 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	scriptNow := func() int64 {
		t.Helper()
		ms, err := c.Eval(ctx, `local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000)`, nil).Int64()
		if err != nil {
			t.Fatalf("EVAL TIME: %v", err)
		}
		return ms
	}
	before := scriptNow()

	redistest.Advance(m, 10*time.Second-time.Millisecond)
	if n, _ := c.Exists(ctx, "k").Result(); n != 1 {
		t.Fatalf("key expired early")
	}
	redistest.Advance(m, time.Millisecond)

	if got, want := redistest.Now(m), t0.Add(10*time.Second); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
	if got := scriptNow() - before; got != 10_000 {
		t.Fatalf("a script's clock moved %d ms, want 10000", got)
	}
	if n, _ := c.Exists(ctx, "k").Result(); n != 0 {
		t.Fatalf("key with a 10s TTL outlived 10s")
	}
}
