package main

import (
	"context"
	"fmt"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/loadtest"
	"github.com/flashsale/flashsale/loadtest/plain"
	"github.com/flashsale/flashsale/loadtest/redisbench"
)

// internalPlainFlag makes the binary serve the plain endpoint on the given
// address (Redis from FLASHSALE_BENCH_REDIS_ADDR, keys under the prefix of
// internalPlainPrefixFlag) instead of benchmarking, so that it is a process
// of its own, as the service is.
const (
	internalPlainFlag       = "internal-plain"
	internalPlainPrefixFlag = "internal-plain-prefix"
)

// plainSKU is the plain endpoint row's one item; plainStock is more than
// any run sells, so the row measures taking holds, not refusing.
const (
	plainSKU   = "plain"
	plainStock = 1_000_000_000
)

// plainRow loads the plain endpoint (loadtest/plain) with the service's
// client and success path: every request a new user taking one unit.
func (b *bench) plainRow(ctx context.Context, add func(row)) error {
	b.start(rowPlain)
	r := row{Name: rowPlain}
	if err := b.plain(ctx, &r); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.Failure = err.Error()
	}
	add(r)
	return nil
}

func (b *bench) plain(ctx context.Context, r *row) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to start the plain endpoint: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	prefix := "fsbench-" + b.runID + "-plain"
	defer b.cleanup.add(func(ctx context.Context) error {
		_, err := redisbench.DeleteKeys(ctx, b.redis, prefix)
		return err
	})()
	if err := plain.Seed(ctx, b.redis, prefix, plainSKU, plainStock); err != nil {
		return err
	}
	c, err := startChild("the plain endpoint", self,
		[]string{"-" + internalPlainFlag, addr, "-" + internalPlainPrefixFlag, prefix},
		childEnv("FLASHSALE_BENCH_REDIS_ADDR="+b.s.redisAddr), "", b.log)
	if err != nil {
		return err
	}
	defer b.cleanup.add(func(context.Context) error { return c.stop() })()
	if err := c.waitReady(ctx, tcpOpen(addr)); err != nil {
		return err
	}
	client, err := loadtest.NewClient("http://"+addr, "", b.s.clients)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	user := "p" + randomHex(3) + "-"
	done := b.measure(ctx, procSource(procService, c.cmd.Process.Pid), selfSource())
	res, err := loadtest.Run(ctx, loadtest.Config{Clients: b.s.clients, Duration: b.s.duration, Progress: b.log},
		func(ctx context.Context, _ int, seq int64) (string, error) {
			_, outcome, err := client.ReserveUser(ctx, plainSKU, user, seq, 1)
			if err == nil && outcome != "created" {
				err = fmt.Errorf("the plain endpoint answered %s, not created", outcome)
			}
			return outcome, err
		})
	if err != nil {
		return err
	}
	r.fromResult(res)
	r.CPU = done()
	st, err := plain.Read(ctx, b.redis, prefix, plainSKU)
	if err != nil {
		return err
	}
	created := res.Outcomes["created"]
	var oversold int64
	if st.Holds > plainStock {
		oversold = st.Holds - plainStock
	}
	r.Oversold = &oversold
	r.Purchases = float64(created) / res.Elapsed.Seconds()
	r.Detail = fmt.Sprintf("%d requests: %d holds, %d outbox entries", res.Requests, st.Holds, st.Outbox)
	if err := st.Check(plainStock, 1); err != nil {
		return err
	}
	if st.Holds != created {
		return fmt.Errorf("%d answers 201 but %d holds in Redis", created, st.Holds)
	}
	return nil
}

// servePlain serves the plain endpoint until ctx is done (SIGTERM from the
// bench).
func servePlain(ctx context.Context, addr, redisAddr, prefix string) error {
	// RESP2, as the service talks to Redis; otherwise go-redis's defaults.
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr, Protocol: 2})
	defer rdb.Close()
	app := plain.New(rdb, prefix, randomHex(4)+".")
	errc := make(chan error, 1)
	go func() { errc <- app.Listen(addr) }()
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", addr, err)
	case <-ctx.Done():
	}
	if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
