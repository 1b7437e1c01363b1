// Package redisbench measures the limit Redis itself sets: redis-benchmark
// running the project's own reserve script with EVALSHA, with the keys and
// arguments the service passes, so the HTTP rows of the benchmark have the
// script's raw rate to be compared with.
package redisbench

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// Path is which branch of the reserve script every call takes.
type Path int

const (
	// Success: the item has stock to spare, every call takes a hold.
	Success Path = iota + 1
	// SoldOut: the item has no stock, every call is refused sold_out.
	SoldOut
)

func (p Path) String() string {
	switch p {
	case Success:
		return "success"
	case SoldOut:
		return "sold_out"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

const (
	sku = "bench"
	// randRange is redis-benchmark's -r: each __rand_int__ becomes a number
	// below it. At a billion, a run of a million calls repeats an id or a
	// user about 500 times, which verification allows for.
	randRange = 1_000_000_000
	// settleLimit is what redisstore passes as the reserve script's ARGV[5];
	// ARGV[6] is the item's bucket count, 1 for the benchmark's item.
	settleLimit = "64"
	// granted must reach this share of the calls; the rest is what random
	// ids that came up twice (replayed, nothing taken) can explain.
	minGrantedShare = 0.99
)

// Config is one redis-benchmark run.
type Config struct {
	// Prefix starts every key of the run, so it must be unique to the run;
	// every key under it is deleted afterwards.
	Prefix   string
	Clients  int    // parallel connections; 64 when zero
	Requests int    // calls in total, at least 1
	Binary   string // redis-benchmark when empty
	// Around, when set, is called just before redis-benchmark starts, and
	// what it returns as soon as redis-benchmark has exited: a caller can
	// measure the run alone, without the seeding, probe and checks.
	Around func() (done func())
}

// Result is what redis-benchmark reported, checked against Redis.
type Result struct {
	Path       Path
	Clients    int
	Requests   int
	Throughput float64 // calls per second
	P50, P99   time.Duration
	Elapsed    time.Duration // redis-benchmark's wall clock, start-up included
	// Granted is how many holds the run took (the success path's proof that
	// the calls ran the script); zero on the sold-out path.
	Granted int64
	// ClientCPU is the user + system CPU time redis-benchmark itself used.
	ClientCPU time.Duration
}

// Run seeds an item under cfg.Prefix for path, runs redis-benchmark against
// the server client talks to, verifies the item, and deletes every key under
// the prefix whatever happened.
func Run(ctx context.Context, client *goredis.Client, path Path, cfg Config) (res Result, err error) {
	if err := cfg.check(path); err != nil {
		return Result{}, err
	}
	var store *redisstore.Store
	defer func() {
		// The caller's context may be what ended the run; cleaning up must
		// still happen.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if store != nil {
			// Reading the item back notes an index hint that the store sends
			// a few milliseconds later: sent now, it cannot land after the
			// keys are gone.
			store.FlushHints(cctx)
		}
		if _, derr := DeleteKeys(cctx, client, cfg.Prefix); derr != nil {
			err = errors.Join(err, derr)
		}
	}()

	// redisstore seeds and loads the script, so keys and script text are
	// exactly the service's.
	store, err = redisstore.New(ctx, client, cfg.Prefix)
	if err != nil {
		return Result{}, fmt.Errorf("redisbench: %w", err)
	}
	spec := reservation.ItemSpec{SKU: sku, Stock: reservation.MaxStock, PerUserLimit: reservation.MaxPerUserLimit,
		Hold: reservation.DefaultHold}
	if path == SoldOut {
		spec.Stock, spec.PerUserLimit = 0, reservation.DefaultPerUserLimit
	}
	if _, err := store.Seed(ctx, spec); err != nil {
		return Result{}, fmt.Errorf("redisbench: seed: %w", err)
	}

	sha := scriptSHA()
	keys := store.ScriptKeys(sku)
	argv := reserveArgs()
	want := map[Path]string{Success: "created", SoldOut: "sold_out"}[path]
	if err := probe(ctx, client, sha, keys, argv, want); err != nil {
		return Result{}, err
	}

	res = Result{Path: path, Clients: cfg.Clients, Requests: cfg.Requests}
	cmd, err := command(ctx, client.Options(), cfg, append(append([]string{"EVALSHA", sha, strconv.Itoa(len(keys))}, keys...), argv...))
	if err != nil {
		return Result{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := func() {}
	if cfg.Around != nil {
		done = cfg.Around()
	}
	start := time.Now()
	err = cmd.Run()
	res.Elapsed = time.Since(start)
	done()
	if err != nil {
		// redis-benchmark exits 1 on the first error reply and says which.
		return Result{}, fmt.Errorf("redisbench: %s: %w: %s", cmd.Path, err, strings.TrimSpace(stderr.String()))
	}
	res.ClientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if res.Throughput, res.P50, res.P99, err = parseCSV(stdout.Bytes()); err != nil {
		return Result{}, err
	}

	// A command that ran but did not do the work (wrong keys, a branch
	// other than intended) must not pass for a fast one.
	item, err := store.Item(ctx, sku)
	if err != nil {
		return Result{}, fmt.Errorf("redisbench: read the item back: %w", err)
	}
	res.Granted = item.Reserved
	if path == Success {
		res.Granted-- // the probe's hold
	}
	if err := verify(path, cfg.Requests, res.Granted); err != nil {
		return Result{}, err
	}
	return res, nil
}

func (cfg *Config) check(path Path) error {
	if path != Success && path != SoldOut {
		return fmt.Errorf("redisbench: unknown path %d", int(path))
	}
	if cfg.Prefix == "" || strings.ContainsAny(cfg.Prefix, "{} *?[]\\") {
		// SCAN matches the prefix as a glob: it must match only itself.
		return fmt.Errorf("redisbench: key prefix %q must be non-empty, without braces, spaces or glob characters", cfg.Prefix)
	}
	if cfg.Requests < 1 {
		return fmt.Errorf("redisbench: requests %d must be at least 1", cfg.Requests)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 64
	}
	if cfg.Clients < 1 {
		return fmt.Errorf("redisbench: clients %d must be at least 1", cfg.Clients)
	}
	if cfg.Binary == "" {
		cfg.Binary = "redis-benchmark"
	}
	return nil
}

func verify(path Path, requests int, granted int64) error {
	switch path {
	case Success:
		if float64(granted) < minGrantedShare*float64(requests) || granted > int64(requests) {
			return fmt.Errorf("redisbench: %d calls granted %d holds: the command did not run the success path", requests, granted)
		}
	case SoldOut:
		if granted != 0 {
			return fmt.Errorf("redisbench: the sold-out item granted %d holds", granted)
		}
	}
	return nil
}

// scriptSHA is the SHA1 EVALSHA names the reserve script by, the same
// redisstore.New loaded.
func scriptSHA() string {
	sum := sha1.Sum([]byte(luascripts.Reserve()))
	return hex.EncodeToString(sum[:])
}

// reserveArgs is ARGV as redisstore.Reserve passes it, with redis-benchmark's
// placeholder making the reservation id and the user new on every call. The
// id has the length of the service's (22 characters after "<sku>.").
func reserveArgs() []string {
	return []string{sku + ".__rand_int__0000000000", "u__rand_int__", "1", "", settleLimit, "1"}
}

// probe runs the command once, placeholders filled in, and checks that the
// script answers code: proof that the exact command redis-benchmark repeats
// reaches the intended branch.
func probe(ctx context.Context, client *goredis.Client, sha string, keys, argv []string, code string) error {
	args := make([]any, len(argv))
	for i, a := range argv {
		args[i] = strings.ReplaceAll(a, "__rand_int__", "probe0000000")
	}
	v, err := client.EvalSha(ctx, sha, keys, args...).Slice()
	if err != nil {
		return fmt.Errorf("redisbench: probe EVALSHA: %w", err)
	}
	if len(v) == 0 || v[0] != code {
		return fmt.Errorf("redisbench: probe EVALSHA answered %v, want %s", v, code)
	}
	return nil
}

// command builds the redis-benchmark invocation: cfg.Clients connections,
// no pipelining, CSV output.
func command(ctx context.Context, opt *goredis.Options, cfg Config, call []string) (*exec.Cmd, error) {
	if opt.Network != "" && opt.Network != "tcp" {
		return nil, fmt.Errorf("redisbench: network %q: only tcp is supported", opt.Network)
	}
	host, port, err := net.SplitHostPort(opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("redisbench: redis address %q: %w", opt.Addr, err)
	}
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(opt.DB),
		"-c", strconv.Itoa(cfg.Clients), "-n", strconv.Itoa(cfg.Requests), "-P", "1",
		"-r", strconv.Itoa(randRange), "--csv"}
	if opt.Password != "" {
		args = append(args, "-a", opt.Password)
		if opt.Username != "" {
			args = append(args, "--user", opt.Username)
		}
	}
	return exec.CommandContext(ctx, cfg.Binary, append(args, call...)...), nil
}

// parseCSV reads redis-benchmark 7's --csv output: a header row naming the
// columns ("rps", "p50_latency_ms", "p99_latency_ms", ...) and one row per
// test; a command given on the command line is the only test.
func parseCSV(out []byte) (rps float64, p50, p99 time.Duration, err error) {
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("redisbench: parse CSV: %w: %q", err, out)
	}
	if len(rows) != 2 {
		return 0, 0, 0, fmt.Errorf("redisbench: want a header and one result row, got %d rows: %q", len(rows), out)
	}
	col := make(map[string]string, len(rows[0]))
	for i, name := range rows[0] {
		if i < len(rows[1]) {
			col[name] = rows[1][i]
		}
	}
	num := func(name string) (float64, error) {
		v, err := strconv.ParseFloat(col[name], 64)
		if err != nil {
			return 0, fmt.Errorf("redisbench: column %q of %q: %w", name, out, err)
		}
		return v, nil
	}
	ms := func(name string) (time.Duration, error) {
		v, err := num(name)
		return time.Duration(v * float64(time.Millisecond)), err
	}
	if rps, err = num("rps"); err != nil {
		return 0, 0, 0, err
	}
	if p50, err = ms("p50_latency_ms"); err != nil {
		return 0, 0, 0, err
	}
	if p99, err = ms("p99_latency_ms"); err != nil {
		return 0, 0, 0, err
	}
	return rps, p50, p99, nil
}

// DeleteKeys unlinks every key that starts with prefix (SCAN, never
// FLUSHDB: the Redis may be shared) and reports how many. prefix must hold
// no glob characters.
func DeleteKeys(ctx context.Context, client goredis.UniversalClient, prefix string) (int, error) {
	if prefix == "" || strings.ContainsAny(prefix, "*?[]\\") {
		return 0, fmt.Errorf("redisbench: refusing to delete keys under %q", prefix)
	}
	var (
		cursor  uint64
		deleted int
	)
	for {
		keys, next, err := client.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return deleted, fmt.Errorf("redisbench: scan %s*: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := client.Unlink(ctx, keys...).Err(); err != nil {
				return deleted, fmt.Errorf("redisbench: unlink under %s: %w", prefix, err)
			}
			deleted += len(keys)
		}
		if next == 0 {
			return deleted, nil
		}
		cursor = next
	}
}
