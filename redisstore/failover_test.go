package redisstore

import (
	"context"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// redisErr is an error reply of Redis, as go-redis returns it.
type redisErr string

func (e redisErr) Error() string { return string(e) }
func (redisErr) RedisError()     {}

// TestNodeLost pins which failures make a cluster client reload its slot
// map: those where the node did not answer (a dead master answers no
// MOVED), not Redis's own answers nor the caller's deadline.
func TestNodeLost(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"connection refused", refused, true},
		{"wrapped refusal", fmt.Errorf("pipeline: %w", refused), true},
		{"connection reset", io.EOF, true},
		{"pool timeout", goredis.ErrPoolTimeout, true},
		{"clusterdown", redisErr("CLUSTERDOWN The cluster is down"), true},
		{"masterdown", redisErr("MASTERDOWN Link with MASTER is down"), true},
		{"script error", redisErr("ERR user_script:1: boom"), false},
		{"noscript", redisErr("NOSCRIPT No matching script"), false},
		{"nil reply", goredis.Nil, false},
		{"caller's deadline", context.DeadlineExceeded, false},
		{"caller cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"client closed", goredis.ErrClosed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nodeLost(tc.err); got != tc.want {
				t.Errorf("nodeLost(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
