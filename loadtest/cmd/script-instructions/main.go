// Command script-instructions drives a Redis with the reserve script as the
// service does (merged calls, pipelined) and, optionally, with the syncer's
// reads and acknowledgements of the entries it wrote: run.sh starts a
// redis-server under callgrind, runs this twice with different counts and
// prints the Redis instructions per hold, a count that does not drift with
// the machine the way CPU seconds do (docs/performance.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "script-instructions:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:6391", "the Redis to drive")
	calls := flag.Int("calls", 1000, "reserve script calls")
	per := flag.Int("per", 8, "requests merged into each call, each a new user")
	sync := flag.Bool("sync", false, "then read and acknowledge every outbox entry as the syncer does, 500 at a time")
	flag.Parse()

	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: *addr, Protocol: 2, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer rdb.Close()
	st, err := redisstore.New(ctx, rdb, "instr")
	if err != nil {
		return err
	}
	const sku = "sku1"
	if _, err := st.Seed(ctx, reservation.ItemSpec{SKU: sku, Stock: 1_000_000_000, PerUserLimit: 5, Hold: 10 * time.Minute}); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	keys := st.ScriptKeys(sku)
	reserve := goredis.NewScript(string(luascripts.Reserve()))
	if err := reserve.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	n := 0
	for c := 0; c < *calls; c += 50 {
		pipe := rdb.Pipeline()
		for j := c; j < min(c+50, *calls); j++ {
			var args []any
			for range *per {
				n++
				args = append(args, sku+".r"+strconv.Itoa(n)+"-0123456789abcdef", "user-"+strconv.Itoa(n), 1, "", 64, 1)
			}
			reserve.EvalSha(ctx, pipe, keys, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
	}
	if *sync {
		if err := drain(ctx, rdb, keys[5]); err != nil {
			return err
		}
	}
	fmt.Println("holds", n)
	return nil
}

// drain reads the outbox through a consumer group and acknowledges each
// batch with ack.lua, until nothing is left to read.
func drain(ctx context.Context, rdb *goredis.Client, outbox string) error {
	if err := rdb.XGroupCreateMkStream(ctx, outbox, redisstore.SyncGroup, "0").Err(); err != nil {
		return fmt.Errorf("group: %w", err)
	}
	ack := goredis.NewScript(string(luascripts.Ack()))
	for {
		res, err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redisstore.SyncGroup, Consumer: "c",
			Streams: []string{outbox, ">"}, Count: 500, Block: -1}).Result()
		if err == goredis.Nil || (err == nil && (len(res) == 0 || len(res[0].Messages) == 0)) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		args := []any{redisstore.SyncGroup, "ack"}
		for _, m := range res[0].Messages {
			args = append(args, m.ID)
		}
		if err := ack.Run(ctx, rdb, []string{outbox, outbox + ":tries", outbox + ":dead"}, args...).Err(); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}
