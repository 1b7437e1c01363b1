package redistest_test

import (
	"context"
	"strings"
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

func TestClientDeletesItsKeys(t *testing.T) {
	ctx := context.Background()
	var prefix string
	t.Run("user", func(t *testing.T) {
		c, p := redistest.Client(t)
		prefix = p
		if !strings.HasPrefix(p, "fstest-") {
			t.Fatalf("prefix %q", p)
		}
		for _, k := range []string{p + ":a", p + ":{x}:b", p} {
			if err := c.Set(ctx, k, 1, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if prefix == "" {
		t.Skip("no Redis")
	}
	c, other := redistest.Client(t)
	if other == prefix {
		t.Fatalf("two tests share prefix %q", prefix)
	}
	var left []string
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		left = append(left, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(left) != 0 {
		t.Fatalf("keys left after the test: %v", left)
	}
}
