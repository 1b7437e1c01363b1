// Package redistest gives tests a Redis to run against: a real one, isolated by key prefix, or an in-process miniredis.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
)

// AddrEnv names the environment variable holding the address of the real
// Redis that integration tests use; DefaultAddr is used when it is unset.
const (
	AddrEnv     = "FLASHSALE_TEST_REDIS_ADDR"
	DefaultAddr = "127.0.0.1:6379"
)

// Client returns a client to the real Redis at $FLASHSALE_TEST_REDIS_ADDR
// (default 127.0.0.1:6379) and a key prefix no other test shares, of the
// form "fstest-<16 hex digits>". Keep every key the test writes under that
// prefix: the Redis may be shared, and when the test ends every key starting
// with the prefix is deleted (never FLUSHDB) and the client closed.
//
// When Redis does not answer the test is skipped, except under CI=true,
// where it fails: integration tests must never pass by skipping in CI.
func Client(t testing.TB) (*goredis.Client, string) {
	t.Helper()
	addr := os.Getenv(AddrEnv)
	if addr == "" {
		addr = DefaultAddr
	}
	client := goredis.NewClient(&goredis.Options{
		Addr:        addr,
		DialTimeout: 2 * time.Second,
	})
	// A probe that gives up at once, so that skipping costs no retries.
	probe := goredis.NewClient(&goredis.Options{
		Addr: addr, DialTimeout: 2 * time.Second, DialerRetries: 1, MaxRetries: -1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := probe.Ping(ctx).Err()
	_ = probe.Close()
	if err != nil {
		_ = client.Close()
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("redistest: Redis at %s (set %s) is required under CI: %v", addr, AddrEnv, err)
		}
		t.Skipf("redistest: no Redis at %s (set %s): %v", addr, AddrEnv, err)
	}

	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		_ = client.Close()
		t.Fatalf("redistest: key prefix: %v", err)
	}
	prefix := "fstest-" + hex.EncodeToString(b[:])

	t.Cleanup(func() {
		// The test's own context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		defer client.Close()
		if err := deletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("redistest: delete keys %s*: %v", prefix, err)
		}
	})
	return client, prefix
}

// deletePrefix unlinks every key that starts with prefix. The prefix is
// hex and dashes only, so it holds no glob characters.
func deletePrefix(ctx context.Context, client *goredis.Client, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := client.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Miniredis starts an in-process miniredis whose clock is frozen at the
// current time (move it with Advance) and returns it with a client to it.
// Both are closed when the test ends.
func Miniredis(t testing.TB) (*miniredis.Miniredis, *goredis.Client) {
	t.Helper()
	m := miniredis.RunT(t)
	m.SetTime(time.Now())
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	return m, client
}

// Advance moves m's clock forward by d.
//
// miniredis has two notions of time and FastForward moves only one of them:
// it shortens key TTLs, but the clock that TIME answers with (and so
// redis.call('TIME') in a Lua script) stays where SetTime left it, or
// follows the wall clock if SetTime was never called. The reservation
// scripts take every expiry decision from TIME, so a test that only
// fast-forwards never sees a hold expire. Advance therefore reads the
// server's current TIME, sets the clock to that plus d, and fast-forwards
// TTLs by d as well. The server is the only place the time is kept, so
// there is no state here to get out of step with it.
func Advance(m *miniredis.Miniredis, d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("redistest: Advance(%v): time only moves forward", d))
	}
	m.SetTime(Now(m).Add(d))
	m.FastForward(d)
}

// Now returns the time m's TIME command (and every script) sees, to the
// microsecond.
func Now(m *miniredis.Miniredis) time.Time {
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	defer client.Close()
	now, err := client.Time(context.Background()).Result()
	if err != nil {
		// Only a closed miniredis fails here: a bug in the calling test.
		panic(fmt.Sprintf("redistest: miniredis TIME: %v", err))
	}
	return now
}
