// Command flashsale serves a flash sale over HTTP, with stock in Redis.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/loadtest"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := EnvironOf(os.Environ())
	var err error
	switch cmd := firstArg(os.Args); cmd {
	case "", "serve":
		err = run(ctx, env, os.Stderr)
	case "sync":
		err = runSync(ctx, env, os.Stderr)
	case "config":
		err = printConfig(env, os.Stdout)
	case "healthcheck":
		err = healthcheck(ctx, env)
	case "loadtest":
		err = loadtest.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = fmt.Errorf("unknown command %q (want serve, sync, config, healthcheck or loadtest)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
		os.Exit(1)
	}
}

// run opens every resource, defers its close, and serves until ctx is done;
// then it drains in-flight requests before returning.
func run(ctx context.Context, env Environ, logOut io.Writer) error {
	d, err := open(ctx, env, logOut, nil)
	if err != nil {
		return err
	}
	defer d.close()
	cfg, log, store, db := d.cfg, d.log, d.store, d.db

	recoverer := &persistence.Recoverer{Store: store, DB: db, Interval: cfg.RecoveryInterval, Grace: cfg.RecoveryGrace, Log: log}
	svc := reservation.NewService(store, recoverer, reservation.WithSoldOutMemory(cfg.SoldOutMemory),
		reservation.WithArchive(db))
	var syncer *persistence.Syncer
	if cfg.Sync {
		if syncer, err = newSyncer(cfg, store, db, log); err != nil {
			return err
		}
	}

	adminTokens, err := tokensOrGenerated(cfg.AdminTokens, "FLASHSALE_ADMIN_TOKEN", "admin_token", log)
	if err != nil {
		return err
	}
	// Unset, confirm must still be closed to buyers: a generated token keeps
	// it for whoever reads the log, never for whoever holds a reservation id.
	serviceTokens, err := tokensOrGenerated(cfg.ServiceTokens, "FLASHSALE_SERVICE_TOKENS", "service_token", log)
	if err != nil {
		return err
	}

	buyers, err := buyerVerifier(ctx, cfg, log)
	if err != nil {
		return err
	}

	metrics, metricsHandler := newMetrics(cfg, store, syncer, recoverer, log)
	limiter := store.LocalLimiter()
	srv := httpapi.New(svc, httpapi.Config{
		AdminTokens:   adminTokens,
		ServiceTokens: serviceTokens,
		Buyers:        buyers,
		ReadTimeout:   cfg.ReadTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		IdleTimeout:   cfg.IdleTimeout,
		Log:           log,
		Auditor:       &persistence.Auditor{Store: auditSource{svc, store}, DB: db},
		Status:        statusReport(syncer, recoverer),

		Metrics:        metrics,
		MetricsHandler: metricsHandler,
		Internal:       cfg.InternalAddr != "",
		Console:        newConsole(store, syncer, recoverer, db, metrics, log),
		Limits: httpapi.RateLimits{Limiter: limiter, PerUser: cfg.RatePerUser, PerIP: cfg.RatePerIP,
			TrustedProxies: cfg.TrustedProxies},
	})

	// Background work stops after the HTTP server has drained, so requests
	// in flight still see a recovering item rebuilt.
	// Last, with Redis still open: the index hints of the last requests and
	// sweeps (otherwise the safety-net scan finds their items, later), and
	// the rate-limit charges and leases this instance still owes.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		store.FlushHints(ctx)
		limiter.Flush(ctx)
	}()
	bg := newBackground()
	defer bg.stop()
	bg.run(func(ctx context.Context) error {
		return (&reservation.Sweeper{Store: store, Interval: cfg.SweepInterval, Batch: cfg.SweepBatch, Log: log}).Run(ctx)
	})
	bg.run(recoverer.Run)
	if syncer != nil {
		bg.run(syncer.Run)
	}
	if cfg.AuditInterval > 0 {
		bg.run((&persistence.Auditor{Store: store, DB: db, Interval: cfg.AuditInterval, Log: log, Rate: cfg.AuditRate,
			Lease: func(ctx context.Context, ttl time.Duration) (bool, error) { return store.Lease(ctx, "audit", ttl) }}).Run)
	}

	serveErr := make(chan error, 2)
	go func() { serveErr <- fmt.Errorf("http: %w", srv.Listen(cfg.HTTPAddr)) }()
	if cfg.InternalAddr != "" {
		go func() { serveErr <- fmt.Errorf("internal http: %w", srv.ListenInternal(cfg.InternalAddr)) }()
	}
	log.Info("flashsale serving", "addr", cfg.HTTPAddr, "internal_addr", cfg.InternalAddr, "redis", d.redisAddr,
		"key_prefix", cfg.KeyPrefix, "record", recordName(cfg), "sync", cfg.Sync, "metrics", cfg.Metrics)

	select {
	case err := <-serveErr:
		// One listener failed (its port taken, say): stop the other too.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// runSync runs only the syncer: for deployments that keep it apart from the
// instances serving buyers. Any number may run beside the in-process ones.
func runSync(ctx context.Context, env Environ, logOut io.Writer) error {
	d, err := open(ctx, env, logOut, func(cfg Config) error {
		if cfg.EmbeddedRedis() {
			return errors.New("sync needs a real Redis in FLASHSALE_REDIS_ADDR or FLASHSALE_REDIS_CLUSTER_ADDRS: an embedded Redis has no outbox to share")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer d.close()
	syncer, err := newSyncer(d.cfg, d.store, d.db, d.log)
	if err != nil {
		return err
	}
	d.log.Info("flashsale syncing", "redis", d.redisAddr, "key_prefix", d.cfg.KeyPrefix, "record", recordName(d.cfg))
	_ = syncer.Run(ctx)
	d.log.Info("stopped", "synced", syncer.Stats().Synced.Load())
	return nil
}

// tokensOrGenerated is tokens, or, when none are set, one random token for
// this run, logged once under key with a warning naming the variable.
func tokensOrGenerated(tokens []string, variable, key string, log *slog.Logger) ([]string, error) {
	if len(tokens) > 0 {
		return tokens, nil
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	token := hex.EncodeToString(b[:])
	log.Warn(variable+" is unset: generated a token for this run", key, token)
	return []string{token}, nil
}

// buyerVerifier verifies buyers' tokens under FLASHSALE_BUYER_AUTH=jwt, its
// keys refreshed until ctx is done; under none it is nil, and says at start
// that the body's user_id is believed, so no one runs that way unawares.
func buyerVerifier(ctx context.Context, cfg Config, log *slog.Logger) (httpapi.BuyerVerifier, error) {
	if cfg.BuyerAuth != buyerAuthJWT {
		log.Warn("FLASHSALE_BUYER_AUTH=none: buyers are NOT authenticated; the body's user_id is believed, so anyone " +
			"who reaches the port can reserve, read and cancel as any user. For make run and networks where a " +
			"gateway sets user_id; set FLASHSALE_BUYER_AUTH=jwt otherwise (docs/security.md)")
		return nil, nil
	}
	v, err := buyerauth.New(ctx, buyerauth.Options{
		JWKSURL:   cfg.JWTJWKSURL,
		JWKSFile:  cfg.JWTJWKSFile,
		Issuer:    cfg.JWTIssuer,
		Audience:  cfg.JWTAudience,
		UserClaim: cfg.JWTUserClaim,
		Log:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("FLASHSALE_BUYER_AUTH=jwt: %w", err)
	}
	log.Info("buyers authenticated by JWT", "issuer", cfg.JWTIssuer, "audience", cfg.JWTAudience,
		"user_claim", cfg.JWTUserClaim, "leeway", buyerauth.DefaultLeeway)
	return v, nil
}

// deps is what serve and sync both start from: the validated configuration,
// the logger, the Redis store and the durable record.
type deps struct {
	cfg       Config
	log       *slog.Logger
	store     *redisstore.Store
	redisAddr string
	db        *persistence.DB
	closers   []func()
}

// open loads the configuration, refuses it when check does, and opens Redis
// and the record within 10 s. What it opened is closed again if a later
// step fails; otherwise by close, in reverse order.
func open(ctx context.Context, env Environ, logOut io.Writer, check func(Config) error) (_ *deps, err error) {
	cfg, err := LoadConfig(env)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	d := &deps{cfg: cfg, log: newLogger(cfg, logOut)}
	if check != nil {
		if err := check(cfg); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, redisAddr, closeRedis, err := openStore(startCtx, cfg, d.log)
	if err != nil {
		return nil, err
	}
	d.store, d.redisAddr, d.closers = store, redisAddr, append(d.closers, closeRedis)
	db, closeDB, err := openDB(startCtx, cfg, d.log)
	if err != nil {
		return nil, err
	}
	d.db, d.closers = db, append(d.closers, closeDB)
	return d, nil
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// openStore connects to FLASHSALE_REDIS_CLUSTER_ADDRS or FLASHSALE_REDIS_ADDR,
// or starts the embedded Redis when FLASHSALE_REDIS_ADDR=embedded, and loads
// the scripts.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (*redisstore.Store, string, func(), error) {
	addr := cfg.RedisAddr
	closeEmbedded := func() {}
	if cfg.EmbeddedRedis() {
		embedded, err := miniredis.Run()
		if err != nil {
			return nil, "", nil, fmt.Errorf("embedded redis: %w", err)
		}
		closeEmbedded = embedded.Close
		addr = embedded.Addr()
		log.Warn("FLASHSALE_REDIS_ADDR=embedded: running on an EMBEDDED IN-MEMORY Redis. " +
			"Everything is lost on exit and only this one instance can sell. For demos and development only.")
	}
	tlsConfig, err := redisTLS(cfg)
	if err != nil {
		closeEmbedded()
		return nil, "", nil, err
	}
	var client goredis.UniversalClient
	switch {
	case len(cfg.RedisSentinels) > 0:
		addr = cfg.RedisMaster + " at Sentinels " + strings.Join(cfg.RedisSentinels, ",")
		// The failover client asks the Sentinels for the primary and
		// follows it through a failover: it drops its connections when a
		// Sentinel announces a new primary. Scripts need no reload: the
		// store runs EVALSHA, then EVAL on NOSCRIPT.
		client = goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:       cfg.RedisMaster,
			SentinelAddrs:    cfg.RedisSentinels,
			SentinelUsername: cfg.SentinelUser,
			SentinelPassword: cfg.SentinelPass,
			Username:         cfg.RedisUsername,
			Password:         cfg.RedisPassword,
			TLSConfig:        tlsConfig,
			DB:               cfg.RedisDB,
			PoolSize:         cfg.RedisPoolSize,
			Protocol:         2, // as below
		})
	case len(cfg.RedisCluster) > 0:
		addr = strings.Join(cfg.RedisCluster, ",")
		client = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:     cfg.RedisCluster,
			Username:  cfg.RedisUsername,
			Password:  cfg.RedisPassword,
			TLSConfig: tlsConfig,
			PoolSize:  cfg.RedisPoolSize,
			Protocol:  2, // as below
			// Every command goes to the slot's master: a replica may lag,
			// and the scripts write anyway.
			ReadOnly: false,
			// A redirect and each retry of a TRYAGAIN count against this
			// bound (go-redis's default is 3). While a slot migrates, a
			// script whose keys are split between the two nodes answers
			// TRYAGAIN until the move ends; 8 retries with go-redis's
			// backoff (10 ms doubling, capped at 1 s) wait it out, where 3
			// gave up after about 100 ms.
			MaxRedirects: 8,
			// How stale the slot map may get before a request reloads it
			// (CLUSTER SLOTS, in the background). A master that dies
			// outright answers no MOVED, go-redis's only other trigger, so
			// with its default of 60s its slots stayed on the dead address
			// for up to a minute after the cluster had promoted its replica.
			// The store also reloads at once when a call fails for want of
			// its node (redisstore/failover.go); this bounds what that
			// misses. One reload a second per instance is cheap.
			ClusterStateReloadInterval: time.Second,
		})
	default:
		client = goredis.NewClient(&goredis.Options{
			Addr:      addr,
			Username:  cfg.RedisUsername,
			Password:  cfg.RedisPassword,
			TLSConfig: tlsConfig,
			DB:        cfg.RedisDB,
			PoolSize:  cfg.RedisPoolSize,
			// RESP2: the service subscribes to nothing, and under RESP3 go-redis
			// checks every connection for push notifications before each read.
			Protocol: 2,
		})
	}
	closeAll := func() { _ = client.Close(); closeEmbedded() }
	store, err := redisstore.New(ctx, client, cfg.KeyPrefix,
		redisstore.WithPipelines(cfg.RedisPipelines, redisstore.DefaultPipelineBatch),
		redisstore.WithRetention(cfg.Retention),
		// Held for two sweeps: an instance that dies holding items leaves
		// them to the others within about a second of their falling due.
		redisstore.WithSweep(2*cfg.SweepInterval, cfg.SweepScan),
		redisstore.WithReplicatedAck(cfg.AckReplicas, cfg.AckTimeout))
	if err != nil {
		closeAll()
		return nil, "", nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	return store, addr, closeAll, nil
}

// openDB opens the durable record: MySQL, or the SQLite file, which it
// locks for this process alone until closeDB. Two processes on one SQLite
// file would each rebuild a lost item from it into their own Redis and both
// sell it; MySQL is the record to share.
func openDB(ctx context.Context, cfg Config, log *slog.Logger) (db *persistence.DB, closeDB func(), err error) {
	unlock := func() {}
	if cfg.MySQLDSN == "" {
		log.Warn("FLASHSALE_MYSQL_DSN is unset: the durable record is the SQLite file "+
			"FLASHSALE_SQLITE_PATH. For demos and development only.", "path", cfg.SQLitePath)
		if unlock, err = lockSQLite(cfg.SQLitePath, log); err != nil {
			return nil, nil, fmt.Errorf("durable record (%s): %w", recordName(cfg), err)
		}
	}
	db, err = persistence.Open(ctx, cfg.MySQLDSN, cfg.SQLitePath)
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("durable record (%s): %w", recordName(cfg), err)
	}
	// The lock outlives every connection to the file.
	return db, func() { _ = db.Close(); unlock() }, nil
}

func recordName(cfg Config) string {
	if cfg.MySQLDSN == "" {
		return "sqlite:" + cfg.SQLitePath
	}
	return "mysql"
}

func newSyncer(cfg Config, store *redisstore.Store, db *persistence.DB, log *slog.Logger) (*persistence.Syncer, error) {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	outbox, err := store.Outbox(redisstore.OutboxOptions{
		// Unique per process: a restarted syncer must not inherit a dead
		// one's pending entries by name; it claims them once they idle.
		Consumer:  fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:])),
		ClaimIdle: cfg.SyncClaimIdle,
		MaxTries:  cfg.SyncMaxTries,
		Scan:      cfg.SyncScan,
	})
	if err != nil {
		return nil, err
	}
	return &persistence.Syncer{Outbox: outbox, DB: db, BatchSize: cfg.SyncBatch, BatchWait: cfg.SyncWait,
		Timeout: cfg.SyncTimeout, Log: log}, nil
}

// statusReport is the detail /readyz shows: the sync backlog and lag and
// the recovery state.
func statusReport(syncer *persistence.Syncer, rec *persistence.Recoverer) func(context.Context) map[string]any {
	return func(context.Context) map[string]any {
		out := map[string]any{
			"recovery": map[string]any{"rebuilding": rec.Rebuilding(), "restored": rec.Restored()},
		}
		if syncer == nil {
			out["sync"] = map[string]any{"enabled": false}
			return out
		}
		sync := syncDetail(syncer.Status())
		stats := syncer.Stats()
		sync["synced"], sync["retries"] = stats.Synced.Load(), stats.Retries.Load()
		out["sync"] = sync
		return out
	}
}

// syncDetail is /readyz's view of the syncer's last backlog reading.
func syncDetail(st persistence.SyncStatus) map[string]any {
	sync := map[string]any{
		"enabled":      true,
		"backlog":      st.Backlog.Entries,
		"lag_ms":       st.Backlog.Oldest.Milliseconds(),
		"dead_letters": st.Backlog.Dead,
		"database_ok":  st.DBErr == nil,
	}
	// Before the first reading there is no time to show, not year 1.
	if !st.CheckedAt.IsZero() {
		sync["backlog_read_at"] = st.CheckedAt.UTC().Format(httpapi.TimeLayout)
	}
	if st.DBErr != nil {
		sync["database_error"] = "the last write to the durable record failed; see the logs"
	}
	return sync
}

// auditSource reads items through the Service, so auditing an item Redis
// lost answers 503 recovering (and starts the rebuild) like any other read.
type auditSource struct {
	svc   *reservation.Service
	store *redisstore.Store
}

func (a auditSource) Item(ctx context.Context, sku string) (reservation.Item, error) {
	return a.svc.Item(ctx, sku)
}

func (a auditSource) ItemBacklog(ctx context.Context, sku string) (int64, error) {
	return a.store.ItemBacklog(ctx, sku)
}

// background runs long-lived loops and stops them together.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBackground() *background {
	ctx, cancel := context.WithCancel(context.Background())
	return &background{ctx: ctx, cancel: cancel}
}

func (b *background) run(fn func(context.Context) error) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = fn(b.ctx)
	}()
}

func (b *background) stop() {
	b.cancel()
	b.wg.Wait()
}

func firstArg(args []string) string {
	if len(args) < 2 {
		return ""
	}
	return args[1]
}

// healthcheck asks the local instance's /readyz; it is the container health
// check, for images that carry no curl.
func healthcheck(ctx context.Context, env Environ) error {
	cfg, err := LoadConfig(env)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %s", resp.Status)
	}
	return nil
}

// printConfig is `flashsale config`: every variable the service reads, its
// effective value, and whether that is the default, secrets masked. An
// invalid configuration is printed too, then refused with serve's errors.
func printConfig(env Environ, out io.Writer) error {
	cfg, err := LoadConfig(env)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, s := range cfg.Settings {
		source := "set"
		if s.Default {
			source = "default"
		}
		fmt.Fprintf(tw, "%s=%s\t# %s\n", s.Name, s.Value, source)
	}
	if ferr := tw.Flush(); ferr != nil {
		return fmt.Errorf("config: %w", ferr)
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: durationsAsText}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationsAsText writes a duration as Go writes it ("6.1s"), where the JSON
// handler would write its nanoseconds (6100000000), which nobody reads.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
