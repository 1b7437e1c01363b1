//go:build integration

package redistest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/redistest"
)

// TestClientDeletesItsKeys needs the real Redis that Client connects to, so
// it is built only with the integration tag (make test-integration, make
// test).

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
