package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// Config is every setting of the service, read once from the environment
// and validated as a whole before anything starts.
type Config struct {
	HTTPAddr        string        // FLASHSALE_HTTP_ADDR
	RedisAddr       string        // FLASHSALE_REDIS_ADDR; empty (and no cluster) runs an embedded Redis
	RedisCluster    []string      // FLASHSALE_REDIS_CLUSTER_ADDRS: seed host:port list of a Redis Cluster
	RedisPassword   string        // FLASHSALE_REDIS_PASSWORD
	RedisDB         int           // FLASHSALE_REDIS_DB
	RedisPoolSize   int           // FLASHSALE_REDIS_POOL_SIZE; 0 is go-redis's default
	RedisPipelines  int           // FLASHSALE_REDIS_PIPELINES: concurrent calls share this many pipelines; 0: none
	SoldOutMemory   time.Duration // FLASHSALE_SOLD_OUT_MEMORY: how long a sold-out answer is reused; 0: never
	KeyPrefix       string        // FLASHSALE_KEY_PREFIX
	AdminToken      string        // FLASHSALE_ADMIN_TOKEN; empty generates one
	SweepInterval   time.Duration // FLASHSALE_SWEEP_INTERVAL
	SweepBatch      int           // FLASHSALE_SWEEP_BATCH
	ReadTimeout     time.Duration // FLASHSALE_READ_TIMEOUT
	WriteTimeout    time.Duration // FLASHSALE_WRITE_TIMEOUT
	IdleTimeout     time.Duration // FLASHSALE_IDLE_TIMEOUT
	ShutdownTimeout time.Duration // FLASHSALE_SHUTDOWN_TIMEOUT
	LogLevel        slog.Level    // FLASHSALE_LOG_LEVEL: debug, info, warn, error
	LogFormat       string        // FLASHSALE_LOG_FORMAT: json or text

	MySQLDSN   string // FLASHSALE_MYSQL_DSN; empty uses the SQLite file below
	SQLitePath string // FLASHSALE_SQLITE_PATH

	Sync          bool          // FLASHSALE_SYNC: run the syncer inside serve
	SyncBatch     int           // FLASHSALE_SYNC_BATCH: entries per transaction
	SyncWait      time.Duration // FLASHSALE_SYNC_WAIT: how long a partial batch waits
	SyncTimeout   time.Duration // FLASHSALE_SYNC_TIMEOUT: one batch's write
	SyncClaimIdle time.Duration // FLASHSALE_SYNC_CLAIM_IDLE: take over entries idle this long
	SyncMaxTries  int           // FLASHSALE_SYNC_MAX_TRIES: then an entry is dead-lettered
	SyncScan      time.Duration // FLASHSALE_SYNC_SCAN: every outbox polled at least this often

	RecoveryInterval time.Duration // FLASHSALE_RECOVERY_INTERVAL: epoch check
	RecoveryGrace    time.Duration // FLASHSALE_RECOVERY_GRACE: > SyncTimeout
	AuditInterval    time.Duration // FLASHSALE_AUDIT_INTERVAL; 0 turns the periodic audit off

	Metrics bool // FLASHSALE_METRICS: serve GET /metrics
}

// LoadConfig reads the environment through getenv, applies defaults and
// reports every bad value at once.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envReader{getenv: getenv}
	cfg := Config{
		HTTPAddr:        r.str("FLASHSALE_HTTP_ADDR", ":3004"),
		RedisAddr:       r.str("FLASHSALE_REDIS_ADDR", ""),
		RedisCluster:    r.list("FLASHSALE_REDIS_CLUSTER_ADDRS"),
		RedisPassword:   r.str("FLASHSALE_REDIS_PASSWORD", ""),
		RedisDB:         r.int("FLASHSALE_REDIS_DB", 0, 0, 15),
		RedisPoolSize:   r.int("FLASHSALE_REDIS_POOL_SIZE", 0, 0, 10_000),
		RedisPipelines:  r.int("FLASHSALE_REDIS_PIPELINES", redisstore.DefaultPipelines, 0, 1024),
		SoldOutMemory:   r.duration("FLASHSALE_SOLD_OUT_MEMORY", 50*time.Millisecond, 0, reservation.MaxSoldOutMemory),
		KeyPrefix:       r.str("FLASHSALE_KEY_PREFIX", "flashsale"),
		AdminToken:      r.str("FLASHSALE_ADMIN_TOKEN", ""),
		SweepInterval:   r.duration("FLASHSALE_SWEEP_INTERVAL", 500*time.Millisecond, 10*time.Millisecond, 2*time.Second),
		SweepBatch:      r.int("FLASHSALE_SWEEP_BATCH", 256, 1, 10_000),
		ReadTimeout:     r.duration("FLASHSALE_READ_TIMEOUT", httpapi.DefaultReadTimeout, time.Millisecond, time.Hour),
		WriteTimeout:    r.duration("FLASHSALE_WRITE_TIMEOUT", httpapi.DefaultWriteTimeout, time.Millisecond, time.Hour),
		IdleTimeout:     r.duration("FLASHSALE_IDLE_TIMEOUT", httpapi.DefaultIdleTimeout, time.Millisecond, time.Hour),
		ShutdownTimeout: r.duration("FLASHSALE_SHUTDOWN_TIMEOUT", 15*time.Second, 0, time.Hour),
		LogLevel:        r.level("FLASHSALE_LOG_LEVEL", slog.LevelInfo),
		LogFormat:       r.oneOf("FLASHSALE_LOG_FORMAT", "json", "json", "text"),

		MySQLDSN:   r.str("FLASHSALE_MYSQL_DSN", ""),
		SQLitePath: r.str("FLASHSALE_SQLITE_PATH", "flashsale.db"),

		Sync:         r.bool("FLASHSALE_SYNC", true),
		SyncBatch:    r.int("FLASHSALE_SYNC_BATCH", 500, 1, 10_000),
		SyncWait:     r.duration("FLASHSALE_SYNC_WAIT", 50*time.Millisecond, time.Millisecond, 10*time.Second),
		SyncTimeout:  r.duration("FLASHSALE_SYNC_TIMEOUT", 3*time.Second, 100*time.Millisecond, time.Minute),
		SyncMaxTries: r.int("FLASHSALE_SYNC_MAX_TRIES", 5, 1, 1000),
		SyncScan:     r.duration("FLASHSALE_SYNC_SCAN", time.Second, 10*time.Millisecond, time.Minute),

		RecoveryInterval: r.duration("FLASHSALE_RECOVERY_INTERVAL", time.Second, 10*time.Millisecond, time.Minute),
		AuditInterval:    r.duration("FLASHSALE_AUDIT_INTERVAL", time.Minute, 0, 24*time.Hour),

		Metrics: r.bool("FLASHSALE_METRICS", true),
	}
	// Defaults that must exceed the batch bound follow it, so setting only
	// FLASHSALE_SYNC_TIMEOUT never fails on a variable the user did not set.
	batchBound := cfg.SyncWait + cfg.SyncTimeout
	cfg.SyncClaimIdle = r.duration("FLASHSALE_SYNC_CLAIM_IDLE", max(5*time.Second, 2*batchBound), 10*time.Millisecond, time.Hour)
	cfg.RecoveryGrace = r.duration("FLASHSALE_RECOVERY_GRACE", 2*batchBound, 0, time.Hour)
	if cfg.RecoveryGrace <= cfg.SyncWait+cfg.SyncTimeout {
		r.fail("FLASHSALE_RECOVERY_GRACE", cfg.RecoveryGrace.String(),
			"must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT, so no batch read before a Redis loss lands after the rebuild")
	}
	if cfg.SyncClaimIdle <= batchBound {
		r.fail("FLASHSALE_SYNC_CLAIM_IDLE", cfg.SyncClaimIdle.String(),
			"must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT, so a live syncer's batch is not taken over mid-write")
	}
	if _, _, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
		r.fail("FLASHSALE_HTTP_ADDR", cfg.HTTPAddr, "must be host:port, such as :3004")
	}
	if cfg.RedisAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.RedisAddr); err != nil {
			r.fail("FLASHSALE_REDIS_ADDR", cfg.RedisAddr, "must be host:port, such as 127.0.0.1:6379")
		}
	}
	for _, a := range cfg.RedisCluster {
		if _, _, err := net.SplitHostPort(a); err != nil {
			r.fail("FLASHSALE_REDIS_CLUSTER_ADDRS", a, "each must be host:port, such as 10.0.0.1:7000")
		}
	}
	if len(cfg.RedisCluster) > 0 && cfg.RedisAddr != "" {
		r.fail("FLASHSALE_REDIS_CLUSTER_ADDRS", strings.Join(cfg.RedisCluster, ","), "set it or FLASHSALE_REDIS_ADDR, not both")
	}
	if len(cfg.RedisCluster) > 0 && cfg.RedisDB != 0 {
		r.fail("FLASHSALE_REDIS_DB", strconv.Itoa(cfg.RedisDB), "must be 0 with FLASHSALE_REDIS_CLUSTER_ADDRS: a cluster has database 0 only")
	}
	if cfg.KeyPrefix == "" || strings.ContainsAny(cfg.KeyPrefix, "{} \t") {
		r.fail("FLASHSALE_KEY_PREFIX", cfg.KeyPrefix, "must be non-empty, without braces or spaces")
	}
	if cfg.AdminToken != "" && len(cfg.AdminToken) < 16 {
		r.fail("FLASHSALE_ADMIN_TOKEN", "(hidden)", "must be at least 16 characters")
	}
	return cfg, errors.Join(r.errs...)
}

// envReader collects every bad variable instead of stopping at the first.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (r *envReader) fail(name, value, why string) {
	r.errs = append(r.errs, fmt.Errorf("%s=%q: %s", name, value, why))
}

func (r *envReader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// list reads a comma-separated list; blanks around items are dropped, and
// empty items are kept for the caller's check to report.
func (r *envReader) list(name string) []string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return nil
	}
	items := strings.Split(v, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

func (r *envReader) int(name string, def, lo, hi int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, v, fmt.Sprintf("must be an integer in %d..%d", lo, hi))
		return def
	}
	return n
}

func (r *envReader) duration(name string, def, lo, hi time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.fail(name, v, fmt.Sprintf("must be a duration in %s..%s, such as 500ms", lo, hi))
		return def
	}
	return d
}

func (r *envReader) bool(name string, def bool) bool {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, v, "must be true or false")
		return def
	}
	return b
}

func (r *envReader) level(name string, def slog.Level) slog.Level {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, v, "must be debug, info, warn or error")
		return def
	}
	return l
}

func (r *envReader) oneOf(name, def string, allowed ...string) string {
	v := r.str(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, v, "must be one of "+strings.Join(allowed, ", "))
	return def
}
