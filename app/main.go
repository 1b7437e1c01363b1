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
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd := firstArg(os.Args); cmd {
	case "", "serve":
		err = run(ctx, os.Getenv, os.Stderr)
	case "healthcheck":
		err = healthcheck(ctx, os.Getenv)
	default:
		err = fmt.Errorf("unknown command %q (want serve or healthcheck)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flashsale:", err)
		os.Exit(1)
	}
}

// run opens every resource, defers its close, and serves until ctx is done;
// then it drains in-flight requests before returning.
func run(ctx context.Context, getenv func(string) string, logOut io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := newLogger(cfg, logOut)

	redisAddr := cfg.RedisAddr
	if redisAddr == "" {
		embedded, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer embedded.Close()
		redisAddr = embedded.Addr()
		log.Warn("FLASHSALE_REDIS_ADDR is unset: running on an EMBEDDED IN-MEMORY Redis. " +
			"Everything is lost on exit and only this one instance can sell. For demos and development only.")
	}
	client := goredis.NewClient(&goredis.Options{
		Addr:     redisAddr,
		Password: cfg.RedisPassword,
		DB:       cfg.RedisDB,
		PoolSize: cfg.RedisPoolSize,
	})
	defer client.Close()

	startCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := redisstore.New(startCtx, client, cfg.KeyPrefix)
	if err != nil {
		return fmt.Errorf("redis at %s: %w", redisAddr, err)
	}
	svc := reservation.NewService(store)

	token := cfg.AdminToken
	if token == "" {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		token = hex.EncodeToString(b[:])
		log.Warn("FLASHSALE_ADMIN_TOKEN is unset: generated an admin token for this run", "admin_token", token)
	}

	srv := httpapi.New(svc, httpapi.Config{
		AdminToken:   token,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		Log:          log,
	})

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweeper := &reservation.Sweeper{Store: store, Interval: cfg.SweepInterval, Batch: cfg.SweepBatch, Log: log}
		_ = sweeper.Run(sweepCtx)
	}()
	defer func() { stopSweep(); <-sweepDone }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Listen(cfg.HTTPAddr) }()
	log.Info("flashsale serving", "addr", cfg.HTTPAddr, "redis", redisAddr, "key_prefix", cfg.KeyPrefix)

	select {
	case err := <-serveErr:
		return fmt.Errorf("http: %w", err)
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

func firstArg(args []string) string {
	if len(args) < 2 {
		return ""
	}
	return args[1]
}

// healthcheck asks the local instance's /readyz; it is the container health
// check, for images that carry no curl.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	cfg, err := LoadConfig(getenv)
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

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
