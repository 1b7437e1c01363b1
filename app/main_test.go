package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

func env(vars map[string]string) Environ { return Environ(vars) }

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name       string
		vars       map[string]string
		wantErr    []string // substrings; empty means valid
		wantNotErr []string // variables the error must not name
		check      func(t *testing.T, c Config)
	}{
		{
			name: "defaults",
			vars: map[string]string{"FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				if c.HTTPAddr != ":3004" || !c.EmbeddedRedis() || c.KeyPrefix != "flashsale" ||
					c.SweepInterval != 250*time.Millisecond || c.SweepScan != 25 || c.AuditRate != 50 || c.LogLevel != slog.LevelInfo || c.LogFormat != "json" {
					t.Errorf("defaults = %+v", c)
				}
			},
		},
		{
			name: "all set",
			vars: map[string]string{
				"FLASHSALE_HTTP_ADDR": "127.0.0.1:8080", "FLASHSALE_REDIS_ADDR": "redis:6379",
				"FLASHSALE_REDIS_DB": "3", "FLASHSALE_KEY_PREFIX": "sale12", "FLASHSALE_ADMIN_TOKEN": "0123456789abcdef",
				"FLASHSALE_SWEEP_INTERVAL": "400ms", "FLASHSALE_SWEEP_SCAN": "7", "FLASHSALE_LOG_LEVEL": "debug", "FLASHSALE_LOG_FORMAT": "text",
			},
			check: func(t *testing.T, c Config) {
				if c.HTTPAddr != "127.0.0.1:8080" || c.RedisAddr != "redis:6379" || c.RedisDB != 3 ||
					c.KeyPrefix != "sale12" || c.SweepInterval != 400*time.Millisecond || c.SweepScan != 7 ||
					c.LogLevel != slog.LevelDebug || c.LogFormat != "text" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name:    "every bad value reported at once",
			vars:    map[string]string{"FLASHSALE_REDIS_DB": "x", "FLASHSALE_SWEEP_INTERVAL": "1h", "FLASHSALE_LOG_FORMAT": "xml"},
			wantErr: []string{"FLASHSALE_REDIS_DB", "FLASHSALE_SWEEP_INTERVAL", "FLASHSALE_LOG_FORMAT"},
		},
		{name: "bad http addr", vars: map[string]string{"FLASHSALE_HTTP_ADDR": "3004"}, wantErr: []string{"FLASHSALE_HTTP_ADDR"}},
		{name: "sentinels without a master name", vars: map[string]string{"FLASHSALE_REDIS_SENTINEL_ADDRS": "10.0.0.1:26379,bad"},
			wantErr: []string{"FLASHSALE_REDIS_MASTER_NAME", `FLASHSALE_REDIS_SENTINEL_ADDRS="bad"`}},
		{name: "sentinels beside an address", vars: map[string]string{"FLASHSALE_REDIS_SENTINEL_ADDRS": "10.0.0.1:26379",
			"FLASHSALE_REDIS_MASTER_NAME": "sale", "FLASHSALE_REDIS_ADDR": "10.0.0.2:6379"}, wantErr: []string{"exactly one of"}},
		{name: "replicated acks on a cluster", vars: map[string]string{"FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000", "FLASHSALE_REDIS_ACK_REPLICAS": "1"},
			check: func(t *testing.T, c Config) {
				if c.AckReplicas != 1 || len(c.RedisCluster) != 1 {
					t.Errorf("config = %+v, want one ack replica on the cluster", c)
				}
			}},
		{name: "replicated acks on the embedded redis", vars: map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_REDIS_ACK_REPLICAS": "1"},
			wantErr: []string{"FLASHSALE_REDIS_ACK_REPLICAS", "no replica"}},
		{name: "a master name without sentinels", vars: map[string]string{"FLASHSALE_REDIS_MASTER_NAME": "sale", "FLASHSALE_REDIS_ADDR": "embedded"},
			wantErr: []string{"FLASHSALE_REDIS_MASTER_NAME", "only with FLASHSALE_REDIS_SENTINEL_ADDRS"}},
		{name: "a sentinel user without sentinels", vars: map[string]string{"FLASHSALE_REDIS_SENTINEL_USERNAME": "sentinel-client", "FLASHSALE_REDIS_ADDR": "embedded"},
			wantErr: []string{"FLASHSALE_REDIS_SENTINEL_USERNAME", "only with FLASHSALE_REDIS_SENTINEL_ADDRS"}},
		{
			name: "sentinels",
			vars: map[string]string{"FLASHSALE_REDIS_SENTINEL_ADDRS": "10.0.0.1:26379, 10.0.0.2:26379", "FLASHSALE_REDIS_MASTER_NAME": "sale"},
			check: func(t *testing.T, c Config) {
				if c.RedisMaster != "sale" || len(c.RedisSentinels) != 2 || c.RedisSentinels[1] != "10.0.0.2:26379" {
					t.Errorf("sentinels %v, master %q", c.RedisSentinels, c.RedisMaster)
				}
			},
		},
		{name: "bad rate limits", vars: map[string]string{"FLASHSALE_RATE_PER_USER": "10/d", "FLASHSALE_RATE_PER_IP": "fast",
			"FLASHSALE_TRUSTED_PROXIES": "10.0.0.0/8,nowhere"},
			wantErr: []string{"FLASHSALE_RATE_PER_USER", "FLASHSALE_RATE_PER_IP", `FLASHSALE_TRUSTED_PROXIES="nowhere"`}},
		{
			name: "rate limits",
			vars: map[string]string{"FLASHSALE_RATE_PER_USER": "10/s burst 20", "FLASHSALE_RATE_PER_IP": "600/m",
				"FLASHSALE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7, 2001:db8::/32", "FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				if c.RatePerUser != (reservation.Limit{Rate: 10, Per: time.Second, Burst: 20}) ||
					c.RatePerIP != (reservation.Limit{Rate: 600, Per: time.Minute, Burst: 600}) ||
					fmt.Sprint(c.TrustedProxies) != "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32]" {
					t.Errorf("limits %+v %+v, proxies %v", c.RatePerUser, c.RatePerIP, c.TrustedProxies)
				}
			},
		},
		{name: "bad internal addr", vars: map[string]string{"FLASHSALE_INTERNAL_ADDR": "3005"}, wantErr: []string{"FLASHSALE_INTERNAL_ADDR", "host:port"}},
		{name: "internal addr on the public port", vars: map[string]string{"FLASHSALE_HTTP_ADDR": ":3004", "FLASHSALE_INTERNAL_ADDR": "127.0.0.1:3004"},
			wantErr: []string{"FLASHSALE_INTERNAL_ADDR", "another port"}},
		{name: "tls CA without tls", vars: map[string]string{"FLASHSALE_REDIS_ADDR": "redis:6379", "FLASHSALE_REDIS_TLS_CA_FILE": "/ca.pem"}, wantErr: []string{"FLASHSALE_REDIS_TLS_CA_FILE"}},
		{name: "tls on the embedded redis", vars: map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_REDIS_TLS": "true"}, wantErr: []string{"FLASHSALE_REDIS_ADDR"}},
		{
			name: "acl user and tls",
			vars: map[string]string{"FLASHSALE_REDIS_ADDR": "redis:6379", "FLASHSALE_REDIS_USERNAME": "flashsale", "FLASHSALE_REDIS_TLS": "true", "FLASHSALE_REDIS_TLS_CA_FILE": "/ca.pem"},
			check: func(t *testing.T, c Config) {
				if c.RedisUsername != "flashsale" || !c.RedisTLS || c.RedisTLSCAFile != "/ca.pem" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{name: "bad redis addr", vars: map[string]string{"FLASHSALE_REDIS_ADDR": "localhost"}, wantErr: []string{"FLASHSALE_REDIS_ADDR"}},
		{
			name: "redis unset",
			vars: map[string]string{"FLASHSALE_SQLITE_PATH": "x.db"},
			wantErr: []string{"FLASHSALE_REDIS_ADDR is unset: set it to the Redis host:port",
				"FLASHSALE_REDIS_CLUSTER_ADDRS", "or set FLASHSALE_REDIS_ADDR=embedded for a local in-memory Redis"},
		},
		{
			name:    "redis set empty",
			vars:    map[string]string{"FLASHSALE_REDIS_ADDR": ""},
			wantErr: []string{"FLASHSALE_REDIS_ADDR is unset"},
		},
		{
			name: "redis embedded",
			vars: map[string]string{"FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				if !c.EmbeddedRedis() || c.RedisAddr != "embedded" || len(c.RedisCluster) != 0 {
					t.Errorf("addr %q cluster %q, want embedded", c.RedisAddr, c.RedisCluster)
				}
			},
		},
		{
			name:    "redis embedded spelled otherwise",
			vars:    map[string]string{"FLASHSALE_REDIS_ADDR": "Embedded"},
			wantErr: []string{`FLASHSALE_REDIS_ADDR="Embedded": must be host:port, such as 127.0.0.1:6379, or embedded`},
		},
		{
			name:    "redis embedded with mysql",
			vars:    map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_MYSQL_DSN": "u:p@tcp(db:3306)/flashsale"},
			wantErr: []string{`FLASHSALE_REDIS_ADDR="embedded": cannot be used with FLASHSALE_MYSQL_DSN`},
		},
		{
			name:    "redis embedded and cluster",
			vars:    map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000"},
			wantErr: []string{"FLASHSALE_REDIS_CLUSTER_ADDRS", "not both"},
		},
		{
			name:       "unknown variable",
			vars:       map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_REDIS_URL": "redis:6379"},
			wantErr:    []string{"unknown variable FLASHSALE_REDIS_URL (did you mean FLASHSALE_REDIS_ADDR?)"},
			wantNotErr: []string{"is unset"},
		},
		{
			name: "unknown variable instead of the address",
			vars: map[string]string{"FLASHSALE_REDIS_URL": "redis:6379"},
			// The misspelling comes first: it explains the error after it.
			wantErr: []string{"unknown variable FLASHSALE_REDIS_URL (did you mean FLASHSALE_REDIS_ADDR?)\nFLASHSALE_REDIS_ADDR is unset"},
		},
		{
			name: "every unknown variable named with the closest known one",
			vars: map[string]string{
				"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_SYNC_WIAT": "1s", "FLASHSALE_LOGLEVEL": "debug",
				"FLASHSALE_REDIS_HOST": "redis", "FLASHSALE_REDIS_PASS": "pw", "flashsale_sqlite_path": "x.db", "FLASHSALE_": "",
			},
			wantErr: []string{
				"unknown variable FLASHSALE_SYNC_WIAT (did you mean FLASHSALE_SYNC_WAIT?)",
				"unknown variable FLASHSALE_LOGLEVEL (did you mean FLASHSALE_LOG_LEVEL?)",
				"unknown variable FLASHSALE_REDIS_HOST (did you mean FLASHSALE_REDIS_ADDR?)",
				"unknown variable FLASHSALE_REDIS_PASS (did you mean FLASHSALE_REDIS_PASSWORD?)",
				"unknown variable flashsale_sqlite_path (did you mean FLASHSALE_SQLITE_PATH?)",
				"unknown variable FLASHSALE_ (did you mean",
			},
			wantNotErr: []string{`"pw"`},
		},
		{
			name: "reserved prefixes",
			vars: map[string]string{
				"FLASHSALE_REDIS_ADDR":      "redis:6379",
				"FLASHSALE_TEST_REDIS_ADDR": "127.0.0.1:6379", "FLASHSALE_TEST_MYSQL_ADDR": "127.0.0.1:3306",
				"FLASHSALE_TEST_SEED": "7", "FLASHSALE_TESTENV_SERVICE": "1",
				"FLASHSALE_BENCH_REDIS_ADDR": "127.0.0.1:6379", "FLASHSALE_BENCH_MYSQL_DSN": "root@tcp(127.0.0.1:3306)/",
				"FLASHSALE_TEST_SOMETHING_NEW": "x", "OTHER_VARIABLE": "x", "REDIS_URL": "x",
			},
			check: func(t *testing.T, c Config) {
				for _, s := range c.Settings {
					if reservedVariable(s.Name) {
						t.Errorf("the service reads %s, which is reserved for tests and benchmarks", s.Name)
					}
				}
			},
		},
		{
			name: "redis cluster seeds",
			vars: map[string]string{"FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000, 10.0.0.2:7000,[::1]:7001"},
			check: func(t *testing.T, c Config) {
				if want := []string{"10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7001"}; !slices.Equal(c.RedisCluster, want) || c.RedisAddr != "" {
					t.Errorf("cluster %q addr %q, want %q and none", c.RedisCluster, c.RedisAddr, want)
				}
			},
		},
		{
			name:       "bad redis cluster seeds",
			vars:       map[string]string{"FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000,redis,,10.0.0.3"},
			wantErr:    []string{`FLASHSALE_REDIS_CLUSTER_ADDRS="redis"`, `FLASHSALE_REDIS_CLUSTER_ADDRS=""`, `FLASHSALE_REDIS_CLUSTER_ADDRS="10.0.0.3"`},
			wantNotErr: []string{`"10.0.0.1:7000"`},
		},
		{
			name:    "redis cluster and single redis",
			vars:    map[string]string{"FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000", "FLASHSALE_REDIS_ADDR": "redis:6379"},
			wantErr: []string{"FLASHSALE_REDIS_CLUSTER_ADDRS", "not both"},
		},
		{
			name:    "redis cluster with a database",
			vars:    map[string]string{"FLASHSALE_REDIS_CLUSTER_ADDRS": "10.0.0.1:7000", "FLASHSALE_REDIS_DB": "2"},
			wantErr: []string{`FLASHSALE_REDIS_DB="2": must be 0 with FLASHSALE_REDIS_CLUSTER_ADDRS`},
		},
		{name: "prefix with hash tag", vars: map[string]string{"FLASHSALE_KEY_PREFIX": "a{b}"}, wantErr: []string{"FLASHSALE_KEY_PREFIX"}},
		{name: "short admin token", vars: map[string]string{"FLASHSALE_ADMIN_TOKEN": "short"}, wantErr: []string{"FLASHSALE_ADMIN_TOKEN"}},
		{
			name: "token lists, for rotation",
			vars: map[string]string{
				"FLASHSALE_REDIS_ADDR":     "embedded",
				"FLASHSALE_ADMIN_TOKEN":    "admin-token-old-0123, admin-token-new-0123",
				"FLASHSALE_SERVICE_TOKENS": "service-token-0123",
			},
			check: func(t *testing.T, c Config) {
				if !slices.Equal(c.AdminTokens, []string{"admin-token-old-0123", "admin-token-new-0123"}) ||
					!slices.Equal(c.ServiceTokens, []string{"service-token-0123"}) {
					t.Errorf("admin tokens %q, service tokens %q", c.AdminTokens, c.ServiceTokens)
				}
			},
		},
		{
			name:    "a short token in a list",
			vars:    map[string]string{"FLASHSALE_SERVICE_TOKENS": "service-token-0123,short"},
			wantErr: []string{"FLASHSALE_SERVICE_TOKENS", "at least 16 characters"},
		},
		{
			name:    "an empty token in a list",
			vars:    map[string]string{"FLASHSALE_ADMIN_TOKEN": "admin-token-0123456,"},
			wantErr: []string{"FLASHSALE_ADMIN_TOKEN", "at least 16 characters"},
		},
		{name: "bad log level", vars: map[string]string{"FLASHSALE_LOG_LEVEL": "loud"}, wantErr: []string{"FLASHSALE_LOG_LEVEL"}},
		{
			name: "persistence defaults",
			vars: map[string]string{"FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				want := Config{
					MySQLDSN: "", SQLitePath: "flashsale.db",
					Sync: true, SyncBatch: 500, SyncWait: 50 * time.Millisecond, SyncTimeout: 3 * time.Second,
					SyncClaimIdle: 6100 * time.Millisecond, SyncMaxTries: 5, SyncScan: 250 * time.Millisecond,
					RecoveryInterval: time.Second, RecoveryGrace: 6100 * time.Millisecond, AuditInterval: time.Minute,
				}
				if got := persistenceOf(c); !reflect.DeepEqual(got, want) {
					t.Errorf("persistence defaults:\ngot  %+v\nwant %+v", got, want)
				}
			},
		},
		{
			name: "persistence all set",
			vars: map[string]string{
				"FLASHSALE_MYSQL_DSN": "u:p@tcp(db:3306)/flashsale?parseTime=true", "FLASHSALE_SQLITE_PATH": "/data/x.db",
				"FLASHSALE_SYNC": "false", "FLASHSALE_SYNC_BATCH": "10000", "FLASHSALE_SYNC_WAIT": "1ms",
				"FLASHSALE_SYNC_TIMEOUT": "100ms", "FLASHSALE_SYNC_CLAIM_IDLE": "102ms", "FLASHSALE_SYNC_MAX_TRIES": "1",
				"FLASHSALE_SYNC_SCAN": "1m", "FLASHSALE_RECOVERY_INTERVAL": "10ms", "FLASHSALE_RECOVERY_GRACE": "1h",
				"FLASHSALE_AUDIT_INTERVAL": "24h", "FLASHSALE_REDIS_ADDR": "redis:6379",
			},
			check: func(t *testing.T, c Config) {
				want := Config{
					MySQLDSN: "u:p@tcp(db:3306)/flashsale?parseTime=true", SQLitePath: "/data/x.db",
					Sync: false, SyncBatch: 10000, SyncWait: time.Millisecond, SyncTimeout: 100 * time.Millisecond,
					SyncClaimIdle: 102 * time.Millisecond, SyncMaxTries: 1, SyncScan: time.Minute,
					RecoveryInterval: 10 * time.Millisecond, RecoveryGrace: time.Hour, AuditInterval: 24 * time.Hour,
				}
				if got := persistenceOf(c); !reflect.DeepEqual(got, want) {
					t.Errorf("persistence:\ngot  %+v\nwant %+v", got, want)
				}
			},
		},
		{
			name: "claim idle and grace default to twice sync wait plus timeout",
			vars: map[string]string{"FLASHSALE_SYNC_TIMEOUT": "4s", "FLASHSALE_SYNC_WAIT": "1s", "FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				if c.SyncClaimIdle != 10*time.Second || c.RecoveryGrace != 10*time.Second {
					t.Errorf("claim idle %v grace %v, want 10s and 10s", c.SyncClaimIdle, c.RecoveryGrace)
				}
			},
		},
		{
			name: "audit off and sync spelled 0",
			vars: map[string]string{"FLASHSALE_AUDIT_INTERVAL": "0s", "FLASHSALE_SYNC": "0", "FLASHSALE_REDIS_ADDR": "embedded"},
			check: func(t *testing.T, c Config) {
				if c.AuditInterval != 0 || c.Sync {
					t.Errorf("audit %v sync %v, want 0 and false", c.AuditInterval, c.Sync)
				}
			},
		},
		{
			name: "every bad persistence value named",
			vars: map[string]string{
				"FLASHSALE_SYNC": "maybe", "FLASHSALE_SYNC_BATCH": "0", "FLASHSALE_SYNC_WAIT": "11s",
				"FLASHSALE_SYNC_TIMEOUT": "99ms", "FLASHSALE_SYNC_CLAIM_IDLE": "soon", "FLASHSALE_SYNC_MAX_TRIES": "1001",
				"FLASHSALE_SYNC_SCAN": "9ms", "FLASHSALE_RECOVERY_INTERVAL": "2m", "FLASHSALE_RECOVERY_GRACE": "-1s",
				"FLASHSALE_AUDIT_INTERVAL": "25h",
			},
			wantErr: []string{
				`FLASHSALE_SYNC="maybe": must be true or false`,
				`FLASHSALE_SYNC_BATCH="0": must be an integer in 1..10000`,
				`FLASHSALE_SYNC_WAIT="11s"`, `FLASHSALE_SYNC_TIMEOUT="99ms"`, `FLASHSALE_SYNC_CLAIM_IDLE="soon"`,
				`FLASHSALE_SYNC_MAX_TRIES="1001": must be an integer in 1..1000`, `FLASHSALE_SYNC_SCAN="9ms"`,
				`FLASHSALE_RECOVERY_INTERVAL="2m"`, `FLASHSALE_RECOVERY_GRACE="-1s"`, `FLASHSALE_AUDIT_INTERVAL="25h"`,
			},
		},
		{
			name:       "recovery grace equal to sync wait plus timeout",
			vars:       map[string]string{"FLASHSALE_SYNC_TIMEOUT": "3s", "FLASHSALE_SYNC_WAIT": "50ms", "FLASHSALE_RECOVERY_GRACE": "3050ms"},
			wantErr:    []string{`FLASHSALE_RECOVERY_GRACE="3.05s": must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT`},
			wantNotErr: []string{"FLASHSALE_SYNC_CLAIM_IDLE", `FLASHSALE_SYNC_WAIT="`, `FLASHSALE_SYNC_TIMEOUT="`},
		},
		{
			name:    "recovery grace above the sync timeout but not the wait on top",
			vars:    map[string]string{"FLASHSALE_SYNC_TIMEOUT": "3s", "FLASHSALE_SYNC_WAIT": "2s", "FLASHSALE_RECOVERY_GRACE": "4s"},
			wantErr: []string{`FLASHSALE_RECOVERY_GRACE="4s": must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT`},
		},
		{
			name:       "recovery grace of zero",
			vars:       map[string]string{"FLASHSALE_RECOVERY_GRACE": "0s"},
			wantErr:    []string{`FLASHSALE_RECOVERY_GRACE="0s": must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT`},
			wantNotErr: []string{"FLASHSALE_SYNC_CLAIM_IDLE"},
		},
		{
			name: "recovery grace just above sync wait plus timeout",
			vars: map[string]string{
				"FLASHSALE_SYNC_TIMEOUT": "3s", "FLASHSALE_SYNC_WAIT": "50ms", "FLASHSALE_RECOVERY_GRACE": "3051ms",
				"FLASHSALE_REDIS_ADDR": "embedded",
			},
			check: func(t *testing.T, c Config) {
				if c.RecoveryGrace != 3051*time.Millisecond {
					t.Errorf("grace %v", c.RecoveryGrace)
				}
			},
		},
		{
			name:       "claim idle below sync wait plus timeout",
			vars:       map[string]string{"FLASHSALE_SYNC_CLAIM_IDLE": "3s"},
			wantErr:    []string{`FLASHSALE_SYNC_CLAIM_IDLE="3s": must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT`},
			wantNotErr: []string{"FLASHSALE_RECOVERY_GRACE"},
		},
		{
			name:       "grace below sync wait plus timeout",
			vars:       map[string]string{"FLASHSALE_RECOVERY_GRACE": "3050ms"},
			wantErr:    []string{`FLASHSALE_RECOVERY_GRACE="3.05s": must exceed FLASHSALE_SYNC_WAIT + FLASHSALE_SYNC_TIMEOUT`},
			wantNotErr: []string{"FLASHSALE_SYNC_CLAIM_IDLE"},
		},
		{
			name:    "both cross-checks at once",
			vars:    map[string]string{"FLASHSALE_SYNC_TIMEOUT": "10s", "FLASHSALE_SYNC_CLAIM_IDLE": "10s", "FLASHSALE_RECOVERY_GRACE": "9s"},
			wantErr: []string{`FLASHSALE_SYNC_CLAIM_IDLE="10s"`, `FLASHSALE_RECOVERY_GRACE="9s"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadConfig(env(tt.vars))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig accepted %v", tt.vars)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			for _, not := range tt.wantNotErr {
				if strings.Contains(err.Error(), not) {
					t.Errorf("error %q names %s", err, not)
				}
			}
			if strings.Contains(err.Error(), "short\"") || strings.Contains(err.Error(), `"pw"`) {
				t.Errorf("error leaks the admin token: %q", err)
			}
		})
	}
}

// persistenceOf keeps only the durable-record settings of c.
func persistenceOf(c Config) Config {
	return Config{
		MySQLDSN: c.MySQLDSN, SQLitePath: c.SQLitePath,
		Sync: c.Sync, SyncBatch: c.SyncBatch, SyncWait: c.SyncWait, SyncTimeout: c.SyncTimeout,
		SyncClaimIdle: c.SyncClaimIdle, SyncMaxTries: c.SyncMaxTries, SyncScan: c.SyncScan,
		RecoveryInterval: c.RecoveryInterval, RecoveryGrace: c.RecoveryGrace, AuditInterval: c.AuditInterval,
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunEmbeddedServesAndShutsDown starts the whole service the way
// `make run` does (FLASHSALE_REDIS_ADDR=embedded), uses it, and stops it as
// SIGTERM would: run must return nil after finishing.
func TestRunEmbeddedServesAndShutsDown(t *testing.T) {
	svc := startRun(t, nil)
	if !strings.Contains(svc.logs.String(), "EMBEDDED IN-MEMORY Redis") {
		t.Errorf("embedded mode was not announced; logs:\n%s", svc.logs)
	}
	if !strings.Contains(svc.logs.String(), "admin_token") {
		t.Errorf("generated admin token was not logged; logs:\n%s", svc.logs)
	}
	// Unset, the service token is generated too, so confirm is never open.
	m := regexp.MustCompile(`"service_token":"([0-9a-f]{48})"`).FindStringSubmatch(svc.logs.String())
	if m == nil {
		t.Fatalf("generated service token was not logged; logs:\n%s", svc.logs)
	}
	const confirm = "/v1/reservations/nothing-here.AAAAAAAAAAAAAAAAAAAAAA/confirm"
	if status, body := svc.call(t, "", "POST", confirm, ""); status != http.StatusUnauthorized {
		t.Errorf("confirm without a token = %d %s", status, body)
	}
	if status, body := svc.call(t, m[1], "POST", confirm, ""); status != http.StatusNotFound {
		t.Errorf("confirm with the generated service token = %d %s, want 404", status, body)
	}

	resp, err := http.Get(svc.base + "/v1/items/nothing-here")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "item_not_found") {
		t.Errorf("GET unknown item = %d %s", resp.StatusCode, body)
	}

	svc.shutdown(t)
	if _, err := http.Get(svc.base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

// TestRunInternalListener: with FLASHSALE_INTERNAL_ADDR the admin routes,
// confirm and /metrics answer there, not on the public address, and both
// listeners stop on shutdown.
func TestRunInternalListener(t *testing.T) {
	internal := freeAddr(t)
	const admin, service = "internal-test-admin-token", "internal-test-service-token"
	svc := startRun(t, map[string]string{"FLASHSALE_INTERNAL_ADDR": internal,
		"FLASHSALE_ADMIN_TOKEN": admin, "FLASHSALE_SERVICE_TOKENS": service})
	in := &running{base: "http://" + internal}
	const confirm = "/v1/reservations/nothing-here.AAAAAAAAAAAAAAAAAAAAAA/confirm"
	for _, tc := range []struct {
		name, token, method, path, body string
		public, internal                int
	}{
		{"seed", admin, "PUT", "/admin/v1/items/mug", `{"stock":2}`, 404, 201},
		{"confirm", service, "POST", confirm, "", 404, 404}, // unknown reservation internally
		{"metrics", "", "GET", "/metrics", "", 404, 200},
		{"item", "", "GET", "/v1/items/mug", "", 200, 404},
		{"readyz", "", "GET", "/readyz", "", 200, 200},
	} {
		if status, body := svc.call(t, tc.token, tc.method, tc.path, tc.body); status != tc.public {
			t.Errorf("%s on the public address = %d %s, want %d", tc.name, status, body, tc.public)
		}
		status, body := in.call(t, tc.token, tc.method, tc.path, tc.body)
		if status != tc.internal {
			t.Errorf("%s on the internal address = %d %s, want %d", tc.name, status, body, tc.internal)
		}
		if tc.name == "confirm" && !strings.Contains(body, "reservation_not_found") {
			t.Errorf("confirm on the internal address did not reach the handler: %s", body)
		}
	}
	svc.shutdown(t)
	if _, err := http.Get(in.base + "/healthz"); err == nil {
		t.Error("the internal listener still answers after shutdown")
	}
}

// running is run() serving in the background of a test.
type running struct {
	base string
	logs *syncBuffer
	stop context.CancelFunc
	done chan error
}

// startRun runs the service as `make run` does (embedded Redis unless vars
// name a cluster, an SQLite file in a temp dir) with vars added, waits until
// /readyz answers 200, and shuts it down when the test ends.
func startRun(t *testing.T, vars map[string]string) *running {
	t.Helper()
	addr := freeAddr(t)
	all := map[string]string{"FLASHSALE_HTTP_ADDR": addr, "FLASHSALE_SQLITE_PATH": filepath.Join(t.TempDir(), "flashsale.db")}
	if _, ok := vars["FLASHSALE_REDIS_CLUSTER_ADDRS"]; !ok {
		all["FLASHSALE_REDIS_ADDR"] = "embedded"
	}
	for k, v := range vars {
		all[k] = v
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &running{base: "http://" + addr, logs: &syncBuffer{}, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, env(all), r.logs) }()
	t.Cleanup(func() { r.shutdown(t) })

	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(r.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service never became ready; logs:\n%s", r.logs)
		}
	}
}

// call sends one request with the admin token and returns the status and
// body; 0 and the error when the request could not be sent.
func (r *running) call(t *testing.T, token, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// shutdown stops the service as SIGTERM would: run must return nil after
// finishing. Later calls do nothing.
func (r *running) shutdown(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("run did not return after shutdown")
	}
	r.done = nil
}

func TestRunRefusesBadConfig(t *testing.T) {
	err := run(context.Background(), env(map[string]string{"FLASHSALE_SWEEP_INTERVAL": "never"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "FLASHSALE_SWEEP_INTERVAL") {
		t.Fatalf("run = %v, want a config error naming FLASHSALE_SWEEP_INTERVAL", err)
	}
}

func TestRunFailsWhenRedisIsUnreachable(t *testing.T) {
	addr := freeAddr(t) // nothing listens there now
	err := run(context.Background(), env(map[string]string{
		"FLASHSALE_HTTP_ADDR": freeAddr(t), "FLASHSALE_REDIS_ADDR": addr,
	}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run = %v, want a start failure naming %s", err, addr)
	}
}
