package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// embeddedRedis is the FLASHSALE_REDIS_ADDR that runs an in-memory Redis
// inside the process. It must be asked for by name: an unset address used to
// mean it, and two instances started that way over one record each rebuilt
// the items from it and both sold them.
const embeddedRedis = "embedded"

// Config is every setting of the service, read once from the environment
// and validated as a whole before anything starts.
type Config struct {
	HTTPAddr        string            // FLASHSALE_HTTP_ADDR
	InternalAddr    string            // FLASHSALE_INTERNAL_ADDR: /metrics, admin and confirm on their own listener; "": on HTTPAddr
	RedisAddr       string            // FLASHSALE_REDIS_ADDR: host:port, or "embedded"; required unless the cluster is set
	RedisCluster    []string          // FLASHSALE_REDIS_CLUSTER_ADDRS: seed host:port list of a Redis Cluster
	RedisSentinels  []string          // FLASHSALE_REDIS_SENTINEL_ADDRS: host:port of the Sentinels watching the primary
	RedisMaster     string            // FLASHSALE_REDIS_MASTER_NAME: the primary's name at the Sentinels
	SentinelPass    string            // FLASHSALE_REDIS_SENTINEL_PASSWORD
	SentinelUser    string            // FLASHSALE_REDIS_SENTINEL_USERNAME: the Sentinels' ACL user, not the primary's
	AckReplicas     int               // FLASHSALE_REDIS_ACK_REPLICAS: replicas that must have a change before it is answered
	AckTimeout      time.Duration     // FLASHSALE_REDIS_ACK_TIMEOUT: how long to wait for them
	RedisPassword   string            // FLASHSALE_REDIS_PASSWORD
	RedisUsername   string            // FLASHSALE_REDIS_USERNAME: ACL user; empty is "default"
	RedisTLS        bool              // FLASHSALE_REDIS_TLS: connect to Redis over TLS
	RedisTLSCAFile  string            // FLASHSALE_REDIS_TLS_CA_FILE: PEM CAs to trust instead of the system's
	RedisDB         int               // FLASHSALE_REDIS_DB
	RedisPoolSize   int               // FLASHSALE_REDIS_POOL_SIZE; 0 is go-redis's default
	RedisPipelines  int               // FLASHSALE_REDIS_PIPELINES: concurrent calls share this many pipelines; 0: none
	SoldOutMemory   time.Duration     // FLASHSALE_SOLD_OUT_MEMORY: how long a sold-out answer is reused; 0: never
	Retention       time.Duration     // FLASHSALE_RETENTION: how long a final reservation stays in Redis once synced
	KeyPrefix       string            // FLASHSALE_KEY_PREFIX
	AdminTokens     []string          // FLASHSALE_ADMIN_TOKEN: comma-separated, any of them admits; empty generates one
	ServiceTokens   []string          // FLASHSALE_SERVICE_TOKENS: comma-separated, for confirm; empty generates one
	BuyerAuth       string            // FLASHSALE_BUYER_AUTH: none (the body's user_id) or jwt
	RatePerUser     reservation.Limit // FLASHSALE_RATE_PER_USER: each buyer's budget; zero: none
	RatePerIP       reservation.Limit // FLASHSALE_RATE_PER_IP: each client address's budget; zero: none
	TrustedProxies  []netip.Prefix    // FLASHSALE_TRUSTED_PROXIES: peers whose X-Forwarded-For is believed
	JWTJWKSURL      string            // FLASHSALE_JWT_JWKS_URL: under jwt, the identity provider's keys
	JWTJWKSFile     string            // FLASHSALE_JWT_JWKS_FILE: or a file of them; exactly one of the two
	JWTIssuer       string            // FLASHSALE_JWT_ISSUER: the iss a buyer's token must carry
	JWTAudience     string            // FLASHSALE_JWT_AUDIENCE: the aud it must hold
	JWTUserClaim    string            // FLASHSALE_JWT_USER_CLAIM: the claim naming the buyer
	SweepInterval   time.Duration     // FLASHSALE_SWEEP_INTERVAL
	SweepBatch      int               // FLASHSALE_SWEEP_BATCH
	SweepScan       int               // FLASHSALE_SWEEP_SCAN
	ReadTimeout     time.Duration     // FLASHSALE_READ_TIMEOUT
	WriteTimeout    time.Duration     // FLASHSALE_WRITE_TIMEOUT
	IdleTimeout     time.Duration     // FLASHSALE_IDLE_TIMEOUT
	ShutdownTimeout time.Duration     // FLASHSALE_SHUTDOWN_TIMEOUT
	LogLevel        slog.Level        // FLASHSALE_LOG_LEVEL: debug, info, warn, error
	LogFormat       string            // FLASHSALE_LOG_FORMAT: json or text

	MySQLDSN   string // FLASHSALE_MYSQL_DSN; empty uses the SQLite file below
	SQLitePath string // FLASHSALE_SQLITE_PATH

	Sync          bool          // FLASHSALE_SYNC: run the syncer inside serve
	SyncBatch     int           // FLASHSALE_SYNC_BATCH: entries per transaction
	SyncWait      time.Duration // FLASHSALE_SYNC_WAIT: how long a partial batch waits
	SyncTimeout   time.Duration // FLASHSALE_SYNC_TIMEOUT: one batch's write
	SyncClaimIdle time.Duration // FLASHSALE_SYNC_CLAIM_IDLE: take over entries idle this long
	SyncMaxTries  int           // FLASHSALE_SYNC_MAX_TRIES: then an entry is dead-lettered
	SyncScan      time.Duration // FLASHSALE_SYNC_SCAN: how often the index of items with changes is read

	RecoveryInterval time.Duration // FLASHSALE_RECOVERY_INTERVAL: epoch check
	RecoveryGrace    time.Duration // FLASHSALE_RECOVERY_GRACE: > SyncTimeout
	AuditInterval    time.Duration // FLASHSALE_AUDIT_INTERVAL; 0 turns the periodic audit off
	AuditRate        int           // FLASHSALE_AUDIT_RATE: items audited per second at most

	Metrics bool // FLASHSALE_METRICS: serve GET /metrics

	// Settings is every variable read above, in order, as `flashsale config`
	// prints it. It is also the list of known variables that an unknown
	// FLASHSALE_* name is refused against, so a variable read here cannot be
	// missing from either.
	Settings []Setting
}

// Setting is one variable as LoadConfig read it.
type Setting struct {
	Name    string
	Value   string // the effective value; a secret's is masked
	Default bool   // unset (or empty): Value is the default
}

// EmbeddedRedis reports whether the service runs its own in-memory Redis.
func (c Config) EmbeddedRedis() bool { return c.RedisAddr == embeddedRedis }

// Environ is the environment the service reads, by name. The names matter
// as well as the values: a FLASHSALE_* name the service does not read is
// refused.
type Environ map[string]string

// EnvironOf parses "NAME=value" entries, as os.Environ returns them.
func EnvironOf(entries []string) Environ {
	env := make(Environ, len(entries))
	for _, kv := range entries {
		if name, value, ok := strings.Cut(kv, "="); ok && name != "" {
			env[name] = value
		}
	}
	return env
}

// LoadConfig reads env, applies defaults and reports every bad value at
// once, unknown FLASHSALE_* variables first: a misspelled name usually
// explains the errors after it.
func LoadConfig(env Environ) (Config, error) {
	r := envReader{env: env}
	cfg := Config{
		HTTPAddr:        r.str("FLASHSALE_HTTP_ADDR", ":3004"),
		InternalAddr:    r.str("FLASHSALE_INTERNAL_ADDR", ""),
		RedisAddr:       r.str("FLASHSALE_REDIS_ADDR", ""),
		RedisCluster:    r.list("FLASHSALE_REDIS_CLUSTER_ADDRS"),
		RedisSentinels:  r.list("FLASHSALE_REDIS_SENTINEL_ADDRS"),
		RedisMaster:     r.str("FLASHSALE_REDIS_MASTER_NAME", ""),
		SentinelPass:    r.secret("FLASHSALE_REDIS_SENTINEL_PASSWORD", maskSecret),
		SentinelUser:    r.str("FLASHSALE_REDIS_SENTINEL_USERNAME", ""),
		AckReplicas:     r.int("FLASHSALE_REDIS_ACK_REPLICAS", 0, 0, 5),
		AckTimeout:      r.duration("FLASHSALE_REDIS_ACK_TIMEOUT", 100*time.Millisecond, time.Millisecond, 10*time.Second),
		RedisPassword:   r.secret("FLASHSALE_REDIS_PASSWORD", maskSecret),
		RedisUsername:   r.str("FLASHSALE_REDIS_USERNAME", ""),
		RedisTLS:        r.bool("FLASHSALE_REDIS_TLS", false),
		RedisTLSCAFile:  r.str("FLASHSALE_REDIS_TLS_CA_FILE", ""),
		RedisDB:         r.int("FLASHSALE_REDIS_DB", 0, 0, 15),
		RedisPoolSize:   r.int("FLASHSALE_REDIS_POOL_SIZE", 0, 0, 10_000),
		RedisPipelines:  r.int("FLASHSALE_REDIS_PIPELINES", redisstore.DefaultPipelines, 0, 1024),
		SoldOutMemory:   r.duration("FLASHSALE_SOLD_OUT_MEMORY", 50*time.Millisecond, 0, reservation.MaxSoldOutMemory),
		Retention:       r.duration("FLASHSALE_RETENTION", redisstore.DefaultRetention, time.Second, 90*24*time.Hour),
		KeyPrefix:       r.str("FLASHSALE_KEY_PREFIX", "flashsale"),
		AdminTokens:     r.secretList("FLASHSALE_ADMIN_TOKEN"),
		ServiceTokens:   r.secretList("FLASHSALE_SERVICE_TOKENS"),
		SweepInterval:   r.duration("FLASHSALE_SWEEP_INTERVAL", 250*time.Millisecond, 10*time.Millisecond, 2*time.Second),
		SweepBatch:      r.int("FLASHSALE_SWEEP_BATCH", 256, 1, 10_000),
		SweepScan:       r.int("FLASHSALE_SWEEP_SCAN", redisstore.DefaultSweepScan, 1, 10_000),
		ReadTimeout:     r.duration("FLASHSALE_READ_TIMEOUT", httpapi.DefaultReadTimeout, time.Millisecond, time.Hour),
		WriteTimeout:    r.duration("FLASHSALE_WRITE_TIMEOUT", httpapi.DefaultWriteTimeout, time.Millisecond, time.Hour),
		IdleTimeout:     r.duration("FLASHSALE_IDLE_TIMEOUT", httpapi.DefaultIdleTimeout, time.Millisecond, time.Hour),
		ShutdownTimeout: r.duration("FLASHSALE_SHUTDOWN_TIMEOUT", 15*time.Second, 0, time.Hour),
		LogLevel:        r.level("FLASHSALE_LOG_LEVEL", slog.LevelInfo),
		LogFormat:       r.oneOf("FLASHSALE_LOG_FORMAT", "json", "json", "text"),

		MySQLDSN:   r.secret("FLASHSALE_MYSQL_DSN", maskDSN),
		SQLitePath: r.str("FLASHSALE_SQLITE_PATH", "flashsale.db"),

		Sync:         r.bool("FLASHSALE_SYNC", true),
		SyncBatch:    r.int("FLASHSALE_SYNC_BATCH", 500, 1, 10_000),
		SyncWait:     r.duration("FLASHSALE_SYNC_WAIT", 50*time.Millisecond, time.Millisecond, 10*time.Second),
		SyncTimeout:  r.duration("FLASHSALE_SYNC_TIMEOUT", 3*time.Second, 100*time.Millisecond, time.Minute),
		SyncMaxTries: r.int("FLASHSALE_SYNC_MAX_TRIES", 5, 1, 1000),
		SyncScan:     r.duration("FLASHSALE_SYNC_SCAN", 250*time.Millisecond, 10*time.Millisecond, time.Minute),

		RecoveryInterval: r.duration("FLASHSALE_RECOVERY_INTERVAL", time.Second, 10*time.Millisecond, time.Minute),
		AuditInterval:    r.duration("FLASHSALE_AUDIT_INTERVAL", time.Minute, 0, 24*time.Hour),
		AuditRate:        r.int("FLASHSALE_AUDIT_RATE", 50, 1, 100_000),

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
	if cfg.InternalAddr != "" {
		if _, port, err := net.SplitHostPort(cfg.InternalAddr); err != nil {
			r.fail("FLASHSALE_INTERNAL_ADDR", cfg.InternalAddr, "must be host:port, such as 127.0.0.1:3005, or unset")
		} else if _, httpPort, _ := net.SplitHostPort(cfg.HTTPAddr); port == httpPort {
			r.fail("FLASHSALE_INTERNAL_ADDR", cfg.InternalAddr, "must listen on another port than FLASHSALE_HTTP_ADDR")
		}
	}
	switch {
	case cfg.RedisAddr == "" && len(cfg.RedisCluster) == 0 && len(cfg.RedisSentinels) == 0:
		r.errs = append(r.errs, errors.New("FLASHSALE_REDIS_ADDR is unset: set it to the Redis host:port, such as 127.0.0.1:6379 "+
			"(or set FLASHSALE_REDIS_CLUSTER_ADDRS to a cluster's seeds, or FLASHSALE_REDIS_SENTINEL_ADDRS and "+
			"FLASHSALE_REDIS_MASTER_NAME to the Sentinels of a primary), or set FLASHSALE_REDIS_ADDR="+embeddedRedis+
			" for a local in-memory Redis that loses everything on exit (development only)"))
	case cfg.EmbeddedRedis() && cfg.MySQLDSN != "":
		r.fail("FLASHSALE_REDIS_ADDR", cfg.RedisAddr, "cannot be used with FLASHSALE_MYSQL_DSN: each instance's in-memory Redis "+
			"would rebuild the items from the shared record and sell them again; use a real Redis, "+
			"or leave FLASHSALE_MYSQL_DSN unset for a local SQLite record")
	case cfg.RedisAddr != "" && !cfg.EmbeddedRedis():
		if _, _, err := net.SplitHostPort(cfg.RedisAddr); err != nil {
			r.fail("FLASHSALE_REDIS_ADDR", cfg.RedisAddr, "must be host:port, such as 127.0.0.1:6379, or "+embeddedRedis)
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
	checkSentinels(&r, cfg)
	if cfg.AckReplicas > 0 && cfg.EmbeddedRedis() {
		r.fail("FLASHSALE_REDIS_ACK_REPLICAS", strconv.Itoa(cfg.AckReplicas),
			"an embedded Redis has no replica")
	}
	if len(cfg.RedisCluster) > 0 && cfg.RedisDB != 0 {
		r.fail("FLASHSALE_REDIS_DB", strconv.Itoa(cfg.RedisDB), "must be 0 with FLASHSALE_REDIS_CLUSTER_ADDRS: a cluster has database 0 only")
	}
	if cfg.RedisTLSCAFile != "" && !cfg.RedisTLS {
		r.fail("FLASHSALE_REDIS_TLS_CA_FILE", cfg.RedisTLSCAFile, "needs FLASHSALE_REDIS_TLS=true")
	}
	if (cfg.RedisTLS || cfg.RedisUsername != "") && cfg.EmbeddedRedis() {
		r.fail("FLASHSALE_REDIS_ADDR", cfg.RedisAddr, "the embedded Redis takes no FLASHSALE_REDIS_TLS or FLASHSALE_REDIS_USERNAME")
	}
	if cfg.KeyPrefix == "" || strings.ContainsAny(cfg.KeyPrefix, "{} \t") {
		r.fail("FLASHSALE_KEY_PREFIX", cfg.KeyPrefix, "must be non-empty, without braces or spaces")
	}
	// A list of tokens lets one be rotated without downtime: instances take
	// the new one beside the old, callers switch, then the old one is dropped.
	for _, v := range []struct {
		name   string
		tokens []string
	}{{"FLASHSALE_ADMIN_TOKEN", cfg.AdminTokens}, {"FLASHSALE_SERVICE_TOKENS", cfg.ServiceTokens}} {
		for _, tok := range v.tokens {
			if len(tok) < minTokenLen {
				r.fail(v.name, "(hidden)", fmt.Sprintf("each comma-separated token must be at least %d characters", minTokenLen))
				break
			}
		}
	}
	cfg.BuyerAuth = r.oneOf("FLASHSALE_BUYER_AUTH", buyerAuthNone, buyerAuthNone, buyerAuthJWT)
	cfg.JWTJWKSURL = r.str("FLASHSALE_JWT_JWKS_URL", "")
	cfg.JWTJWKSFile = r.str("FLASHSALE_JWT_JWKS_FILE", "")
	cfg.JWTIssuer = r.str("FLASHSALE_JWT_ISSUER", "")
	cfg.JWTAudience = r.str("FLASHSALE_JWT_AUDIENCE", "")
	cfg.JWTUserClaim = r.str("FLASHSALE_JWT_USER_CLAIM", "sub")
	checkBuyerAuth(&r, cfg)
	cfg.RatePerUser = r.limit("FLASHSALE_RATE_PER_USER")
	cfg.RatePerIP = r.limit("FLASHSALE_RATE_PER_IP")
	cfg.TrustedProxies = r.prefixes("FLASHSALE_TRUSTED_PROXIES")
	cfg.Settings = r.settings
	return cfg, errors.Join(append(unknownVariables(env, r.settings), r.errs...)...)
}

// checkSentinels: Sentinels are one of the three ways to Redis, with the
// primary's name; the other ways refuse the Sentinel settings.
func checkSentinels(r *envReader, cfg Config) {
	joined := strings.Join(cfg.RedisSentinels, ",")
	if len(cfg.RedisSentinels) == 0 {
		for _, name := range []string{"FLASHSALE_REDIS_MASTER_NAME", "FLASHSALE_REDIS_SENTINEL_PASSWORD", "FLASHSALE_REDIS_SENTINEL_USERNAME"} {
			if r.env[name] != "" {
				r.fail(name, r.env[name], "is read only with FLASHSALE_REDIS_SENTINEL_ADDRS")
			}
		}
		return
	}
	for _, a := range cfg.RedisSentinels {
		if _, _, err := net.SplitHostPort(a); err != nil {
			r.fail("FLASHSALE_REDIS_SENTINEL_ADDRS", a, "each must be host:port, such as 10.0.0.1:26379")
		}
	}
	if cfg.RedisAddr != "" || len(cfg.RedisCluster) > 0 {
		r.fail("FLASHSALE_REDIS_SENTINEL_ADDRS", joined,
			"set exactly one of FLASHSALE_REDIS_ADDR, FLASHSALE_REDIS_CLUSTER_ADDRS and FLASHSALE_REDIS_SENTINEL_ADDRS")
	}
	if cfg.RedisMaster == "" {
		r.fail("FLASHSALE_REDIS_MASTER_NAME", "", "is required with FLASHSALE_REDIS_SENTINEL_ADDRS: the name the Sentinels monitor the primary by")
	}
}

// The values of FLASHSALE_BUYER_AUTH.
const (
	buyerAuthNone = "none"
	buyerAuthJWT  = "jwt"
)

// checkBuyerAuth: under jwt the keys have one source and a token's issuer
// and audience are pinned; under none a FLASHSALE_JWT_* setting is refused,
// as it suggests the operator believes buyers are authenticated when the
// body's user_id is believed instead.
func checkBuyerAuth(r *envReader, cfg Config) {
	if cfg.BuyerAuth != buyerAuthJWT {
		for _, name := range []string{"FLASHSALE_JWT_JWKS_URL", "FLASHSALE_JWT_JWKS_FILE", "FLASHSALE_JWT_ISSUER",
			"FLASHSALE_JWT_AUDIENCE", "FLASHSALE_JWT_USER_CLAIM"} {
			if r.env[name] != "" {
				r.fail(name, r.env[name], "is read only with FLASHSALE_BUYER_AUTH=jwt (it is "+cfg.BuyerAuth+")")
			}
		}
		return
	}
	switch {
	case cfg.JWTJWKSURL == "" && cfg.JWTJWKSFile == "":
		r.errs = append(r.errs, errors.New("FLASHSALE_BUYER_AUTH=jwt needs the keys: set FLASHSALE_JWT_JWKS_URL "+
			"(the identity provider's JWKS, fetched and refreshed) or FLASHSALE_JWT_JWKS_FILE (a JWKS file)"))
	case cfg.JWTJWKSURL != "" && cfg.JWTJWKSFile != "":
		r.fail("FLASHSALE_JWT_JWKS_FILE", cfg.JWTJWKSFile, "set it or FLASHSALE_JWT_JWKS_URL, not both")
	case cfg.JWTJWKSURL != "":
		if u, err := url.Parse(cfg.JWTJWKSURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname()))) {
			r.fail("FLASHSALE_JWT_JWKS_URL", cfg.JWTJWKSURL, "must be an https:// URL (http:// only to localhost): "+
				"whoever can change the keys in transit can mint any buyer")
		}
	}
	if cfg.JWTIssuer == "" {
		r.errs = append(r.errs, errors.New("FLASHSALE_JWT_ISSUER is unset: FLASHSALE_BUYER_AUTH=jwt needs the iss tokens must carry"))
	}
	if cfg.JWTAudience == "" {
		r.errs = append(r.errs, errors.New("FLASHSALE_JWT_AUDIENCE is unset: FLASHSALE_BUYER_AUTH=jwt needs the aud tokens must carry, "+
			"so a token the provider issued for another service is refused"))
	}
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reservedVariable reports whether name belongs to the project's own test
// and benchmark settings, which the service never reads and never refuses:
// FLASHSALE_TEST_* (the Redis and MariaDB the tests use, their seed),
// FLASHSALE_TESTENV_* (opt-in internal/testenv tests) and FLASHSALE_BENCH_*
// (flashsale-bench's servers). The Makefile exports FLASHSALE_TEST_REDIS_ADDR
// into every process it starts, `make run` included, and tests start the
// binary with the environment they inherit.
func reservedVariable(name string) bool {
	for _, prefix := range []string{"FLASHSALE_TEST_", "FLASHSALE_TESTENV_", "FLASHSALE_BENCH_"} {
		if strings.HasPrefix(strings.ToUpper(name), prefix) {
			return true
		}
	}
	return false
}

// unknownVariables refuses every FLASHSALE_* name in env that is neither
// read (known) nor reserved, naming the closest known one: a misspelled
// variable would otherwise leave its default in force without a word. The
// prefix is matched in any case, as flashsale_redis_addr is a misspelling
// too.
func unknownVariables(env Environ, known []Setting) []error {
	isKnown := make(map[string]bool, len(known))
	for _, s := range known {
		isKnown[s.Name] = true
	}
	var names []string
	for name := range env {
		if strings.HasPrefix(strings.ToUpper(name), "FLASHSALE_") && !isKnown[name] && !reservedVariable(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	errs := make([]error, 0, len(names))
	for _, name := range names {
		errs = append(errs, fmt.Errorf("unknown variable %s (did you mean %s?)", name, closestVariable(name, known)))
	}
	return errs
}

// closestVariable is the known name nearest to name by edit distance, after
// other tools' words for the same thing are read as ours: REDIS_URL is the
// usual name elsewhere, and by edit distance alone it is nearer
// FLASHSALE_REDIS_DB than FLASHSALE_REDIS_ADDR.
func closestVariable(name string, known []Setting) string {
	synonyms := map[string]string{
		"URL": "ADDR", "URI": "ADDR", "HOST": "ADDR", "ADDRESS": "ADDR", "ADDRESSES": "ADDRS",
		"PASS": "PASSWORD", "PASSWD": "PASSWORD", "PWD": "PASSWORD",
	}
	words := strings.Split(strings.ToUpper(name), "_")
	for i, w := range words {
		if s, ok := synonyms[w]; ok {
			words[i] = s
		}
	}
	target := strings.Join(words, "_")
	best, bestDist := "", -1
	for _, s := range known {
		if d := editDistance(target, s.Name); bestDist < 0 || d < bestDist {
			best, bestDist = s.Name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, bytewise.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// minTokenLen is the shortest admin or service token accepted.
const minTokenLen = 16

// masked stands for a secret in `flashsale config`, whatever its length.
const masked = "*****"

// maskSecret hides a secret's value, and shows only whether it is set.
func maskSecret(v string) string {
	if v == "" {
		return ""
	}
	return masked
}

// maskDSN hides the password of a MySQL DSN,
// user:password@protocol(address)/dbname?params, the rest being what an
// operator checks. It finds the password as the driver does: the user
// info ends at the last '@' before the last '/'. A DSN it cannot read that
// way is hidden whole.
func maskDSN(dsn string) string {
	slash := strings.LastIndex(dsn, "/")
	if slash < 0 {
		return maskSecret(dsn)
	}
	at := strings.LastIndex(dsn[:slash], "@")
	if at < 0 {
		return dsn // no user info, no password
	}
	user, _, hasPassword := strings.Cut(dsn[:at], ":")
	if !hasPassword {
		return dsn
	}
	return user + ":" + masked + dsn[at:]
}

// envReader collects every bad variable instead of stopping at the first,
// and every variable it reads, with its effective value, as Settings.
type envReader struct {
	env      Environ
	errs     []error
	settings []Setting
}

func (r *envReader) fail(name, value, why string) {
	r.errs = append(r.errs, fmt.Errorf("%s=%q: %s", name, value, why))
}

// record notes that name was read: raw is what the environment holds, shown
// the effective value as `flashsale config` prints it.
func (r *envReader) record(name, raw, shown string) {
	r.settings = append(r.settings, Setting{Name: name, Value: shown, Default: raw == ""})
}

func (r *envReader) str(name, def string) string {
	v := r.env[name]
	if v == "" {
		v = def
	}
	r.record(name, r.env[name], v)
	return v
}

// secret reads a variable with no default whose value is shown through mask.
func (r *envReader) secret(name string, mask func(string) string) string {
	v := r.env[name]
	r.record(name, v, mask(v))
	return v
}

// secretList reads a comma-separated list of secrets, shown masked; blanks
// around items are dropped, and empty items are kept for the caller's check
// to report (a stray comma must not pass as a token of length zero).
func (r *envReader) secretList(name string) []string {
	v := strings.TrimSpace(r.env[name])
	r.record(name, v, maskSecret(v))
	return splitList(v)
}

// list reads a comma-separated list; blanks around items are dropped, and
// empty items are kept for the caller's check to report.
func (r *envReader) list(name string) []string {
	v := strings.TrimSpace(r.env[name])
	r.record(name, v, v)
	return splitList(v)
}

// splitList splits a trimmed comma-separated value, trimming each item;
// empty items stay, for the caller's check to report.
func splitList(v string) []string {
	if v == "" {
		return nil
	}
	items := strings.Split(v, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// limit reads a rate limit such as "10/s burst 20"; unset is none.
func (r *envReader) limit(name string) reservation.Limit {
	v := r.env[name]
	l, err := reservation.ParseLimit(v)
	if err != nil {
		r.record(name, v, v)
		r.fail(name, v, "must be a rate such as 10/s, 600/m or 10/s burst 20, or unset for none")
		return reservation.Limit{}
	}
	r.record(name, v, l.String()) // "" when off
	return l
}

// prefixes reads a comma-separated list of CIDRs (a bare address is its
// own /32 or /128).
func (r *envReader) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, item := range r.list(name) {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil {
				r.fail(name, item, "each entry must be a CIDR such as 10.0.0.0/8 or an address")
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func (r *envReader) int(name string, def, lo, hi int) int {
	v := r.env[name]
	if v == "" {
		r.record(name, v, strconv.Itoa(def))
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.record(name, v, v)
		r.fail(name, v, fmt.Sprintf("must be an integer in %d..%d", lo, hi))
		return def
	}
	r.record(name, v, strconv.Itoa(n))
	return n
}

func (r *envReader) duration(name string, def, lo, hi time.Duration) time.Duration {
	v := r.env[name]
	if v == "" {
		r.record(name, v, def.String())
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.record(name, v, v)
		r.fail(name, v, fmt.Sprintf("must be a duration in %s..%s, such as %s", lo, hi, def))
		return def
	}
	r.record(name, v, d.String())
	return d
}

func (r *envReader) bool(name string, def bool) bool {
	v := r.env[name]
	if v == "" {
		r.record(name, v, strconv.FormatBool(def))
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.record(name, v, v)
		r.fail(name, v, "must be true or false")
		return def
	}
	r.record(name, v, strconv.FormatBool(b))
	return b
}

func (r *envReader) level(name string, def slog.Level) slog.Level {
	v := r.env[name]
	if v == "" {
		r.record(name, v, strings.ToLower(def.String()))
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.record(name, v, v)
		r.fail(name, v, "must be debug, info, warn or error")
		return def
	}
	r.record(name, v, strings.ToLower(l.String()))
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
