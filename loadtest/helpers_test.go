package loadtest_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/loadtest"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

const (
	testToken    = "loadtest-admin-token-0123"
	serviceToken = "loadtest-service-token-0123"
)

// serviceOpts shape the in-process service.
type serviceOpts struct {
	// realRedis runs on the shared Redis (under a key prefix of the
	// test's own) instead of a miniredis, whose Lua interpreter is too
	// slow for thousands of requests in a test's time.
	realRedis bool
	// record adds a durable record (SQLite) with its syncer and the audit
	// endpoint.
	record bool
	// buyers, when set, authenticates buyers (FLASHSALE_BUYER_AUTH=jwt).
	buyers httpapi.BuyerVerifier
}

// startService serves the real API (httpapi over reservation.Service over
// redisstore) on a loopback port until the test ends, and returns its base
// URL.
func startService(t *testing.T, opts serviceOpts) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		rdb    *goredis.Client
		prefix = "lt"
	)
	if opts.realRedis {
		rdb, prefix = redistest.Client(t) // skips without Redis, fails under CI
	} else {
		// The wall clock, not a frozen one: the syncer's claim timing and
		// the holds follow real time, as against a real Redis.
		m := miniredis.RunT(t)
		rdb = goredis.NewClient(&goredis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
	}
	store, err := redisstore.New(ctx, rdb, prefix)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	cfg := httpapi.Config{AdminTokens: []string{testToken}, ServiceTokens: []string{serviceToken}, Log: log, Buyers: opts.buyers}
	if opts.record {
		db, err := persistence.Open(ctx, "", filepath.Join(t.TempDir(), "record.db"))
		if err != nil {
			t.Fatalf("persistence.Open: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		outbox, err := store.Outbox(redisstore.OutboxOptions{
			Consumer: "loadtest", ClaimIdle: 5 * time.Second, MaxTries: 3, Scan: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("Outbox: %v", err)
		}
		syncer := &persistence.Syncer{Outbox: outbox, DB: db, BatchSize: 500, BatchWait: 10 * time.Millisecond,
			Timeout: 10 * time.Second, Log: log}
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- syncer.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("syncer: %v", err)
			}
		})
		// Assigned only here: a nil *Auditor in the interface would not be
		// a nil interface, and the server would route the audit to it.
		cfg.Auditor = &persistence.Auditor{Store: store, DB: db}
	}
	srv := httpapi.New(reservation.NewService(store, nil), cfg)
	return "http://" + testenv.Serve(t, srv)
}

func newClient(t testing.TB, url string, conns int) *loadtest.Client {
	t.Helper()
	c, err := loadtest.NewClient(url, testToken, conns)
	if err != nil {
		t.Fatalf("NewClient(%q): %v", url, err)
	}
	c.SetServiceToken(serviceToken)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
