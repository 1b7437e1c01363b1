package baseline

import (
	"context"
	"testing"
	"time"
)

// TestOpenRefuses: what Open refuses before it connects. A database already
// used is refused too (TestOpenRefusesAUsedDatabase, on MariaDB).
func TestOpenRefuses(t *testing.T) {
	ctx := testCtx(t)
	tests := []struct {
		name     string
		approach Approach
		stock    int64
	}{
		{name: "unknown approach", approach: Approach(0), stock: 1},
		{name: "negative stock", approach: ForUpdate, stock: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Refused before any connection is made, so no server is needed.
			if shop, err := Open(ctx, "root@tcp(127.0.0.1:1)/none", tt.approach, tt.stock); err == nil {
				_ = shop.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
