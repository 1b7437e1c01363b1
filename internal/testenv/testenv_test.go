//go:build integration

package testenv_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
	goredis "github.com/redis/go-redis/v9"
)

// The tests here start redis-server, mariadbd and the flashsale binary, or
// use the shared MariaDB, so they are built only with the integration tag
// (make test-integration, make test). proxy_test.go has the ones that need
// no server.

func TestRedisAOFSurvivesKill(t *testing.T) {
	ctx := context.Background()
	r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := r.Addr()

	begin := time.Now()
	r.Kill(t)
	t.Logf("Kill took %v", time.Since(begin))
	if err := noRetry(t, addr).Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	begin = time.Now()
	r.Restart(t)
	t.Logf("Restart (AOF replay) took %v", time.Since(begin))

	if r.Addr() != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, r.Addr())
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
	r.Stop(t)
	r.Stop(t) // stopping a stopped server is a no-op
}

func TestRedisWithoutAOFLosesDataOnKill(t *testing.T) {
	ctx := context.Background()
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Kill(t)
	r.Restart(t)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("after restart without AOF GET k: err = %v, want redis.Nil", err)
	}
	// Restart of a running server stops it first.
	r.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestMariaDBSurvivesKill(t *testing.T) {
	ctx := context.Background()
	begin := time.Now()
	m := testenv.StartMariaDB(t)
	t.Logf("StartMariaDB took %v", time.Since(begin))

	dsn := m.DSN(t)
	for _, want := range []string{"/flashsale?", "parseTime=true", "loc=UTC", "timeout=2s", "readTimeout=5s", "writeTimeout=5s"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN %q lacks %q", dsn, want)
		}
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, at DATETIME(6) NOT NULL) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1, ?)", at); err != nil {
		t.Fatal(err)
	}

	begin = time.Now()
	m.Kill(t)
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("ping succeeded after Kill")
	}
	m.Restart(t)
	t.Logf("kill + restart (with crash recovery) took %v", time.Since(begin))

	var got time.Time
	if err := db.QueryRowContext(ctx, "SELECT at FROM t WHERE id = 1").Scan(&got); err != nil {
		t.Fatalf("row committed before Kill: %v", err)
	}
	if !got.Equal(at) || got.Location() != time.UTC {
		t.Fatalf("at = %v, want %v in UTC", got, at)
	}
	var charset string
	if err := db.QueryRowContext(ctx, "SELECT @@character_set_server").Scan(&charset); err != nil || charset != "utf8mb4" {
		t.Fatalf("character_set_server = %q, %v; want utf8mb4", charset, err)
	}

	begin = time.Now()
	m.Stop(t)
	t.Logf("graceful stop took %v", time.Since(begin))
}

func TestSharedMySQL(t *testing.T) {
	ctx := context.Background()
	var dsn string
	t.Run("user", func(t *testing.T) {
		dsn = testenv.SharedMySQL(t)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
	})
	if dsn == "" {
		t.Skip("no shared MariaDB")
	}
	name := dsn[strings.Index(dsn, ")/")+2 : strings.Index(dsn, "?")]
	if !strings.HasPrefix(name, "fstest_") || len(name) != len("fstest_")+16 {
		t.Fatalf("database name %q, want fstest_<16 hex>", name)
	}
	db, err := sql.Open("mysql", strings.Replace(dsn, "/"+name+"?", "/?", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s outlived its test", name)
	}
}

func TestProxyInFrontOfRedis(t *testing.T) {
	ctx := context.Background()
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	p := testenv.StartProxy(t, r.Addr())
	c := noRetry(t, p.Addr())

	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Down(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through a downed proxy succeeded")
	}
	if err := r.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("Down stopped the upstream itself: %v", err)
	}
	p.Up(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Up: %v", err)
	}

	// The write goes through; only its reply is lost.
	p.ResetPeer(t, 0)
	if err := c.Incr(ctx, "n").Err(); err == nil {
		t.Fatal("INCR under ResetPeer succeeded")
	}
	p.RemoveToxics(t)
	if n, err := c.Get(ctx, "n").Int(); err != nil || n != 1 {
		t.Fatalf("GET n = %d, %v; want 1: the INCR whose reply was reset still ran", n, err)
	}
}

// TestService runs the real binary. It is opt-in while the app is being
// reworked: FLASHSALE_TESTENV_SERVICE=1 go test -run TestService ./internal/testenv/
func TestService(t *testing.T) {
	if os.Getenv("FLASHSALE_TESTENV_SERVICE") != "1" {
		t.Skip("set FLASHSALE_TESTENV_SERVICE=1 to build and run the flashsale binary")
	}
	bin := testenv.BuildFlashsale(t)
	if again := testenv.BuildFlashsale(t); again != bin {
		t.Fatalf("second build returned %s, first %s", again, bin)
	}
	// The embedded Redis is asked for by name; the binary refuses to start
	// with no Redis configured.
	s := testenv.StartService(t, bin, map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_LOG_LEVEL": "debug"})
	get := func() int {
		t.Helper()
		resp, err := http.Get(s.URL() + "/healthz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("healthz = %d", code)
	}
	s.Kill(t)
	if code := get(); code != 0 {
		t.Fatalf("healthz answered %d after Kill", code)
	}
	s.Restart(t)
	if code := get(); code != http.StatusOK {
		t.Fatalf("healthz after Restart = %d", code)
	}
	s.Stop(t)
	if s.Log() == "" {
		t.Fatal("empty service log")
	}
	t.Logf("service log:\n%s", s.Log())
}

// noRetry returns a client that reports the first failure instead of
// retrying, so that asserting an outage takes no time.
func noRetry(t *testing.T, addr string) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}
