// Command flashsale-bench is `make bench`: in one run on one machine, at one
// concurrency, it measures the limits (the reserve script under
// redis-benchmark, a bare Fiber server), the service over HTTP with real
// Redis and MySQL, and the MySQL approaches the service replaces, then
// prints one table and the ratios between its rows against the targets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flashsale/flashsale/loadtest/ceiling"
)

// Exit codes: a target missed or a row that could not be measured is 1, so
// a script can tell a slow run from a broken command line (2).
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// internalCeilingFlag makes the binary serve the HTTP ceiling on the given
// address instead of benchmarking: the bench re-executes itself with it so
// the ceiling is a process of its own, as the service is.
const internalCeilingFlag = "internal-ceiling"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// settings is the command line and environment, checked.
type settings struct {
	clients   int
	duration  time.Duration
	only      []string // row names; empty: every row
	asJSON    bool
	flashsale string // path of the flashsale binary
	redisAddr string
	// privateRedis: the rows run on a redis-server the bench starts, not
	// on FLASHSALE_BENCH_REDIS_ADDR.
	privateRedis bool
	mysqlDSN     string // server DSN without a database; each row gets its own
	// rounds: every timed row runs this many times, the rows of one round
	// before the next, and reports its median round (see medianRow).
	rounds int
}

func (s settings) selected(row string) bool { return len(s.only) == 0 || slices.Contains(s.only, row) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flashsale-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		s                      settings
		only                   string
		ceilAddr               string
		plainAddr, plainPrefix string
	)
	fs.IntVar(&s.clients, "clients", 64, "concurrent clients of every row")
	fs.DurationVar(&s.duration, "duration", 10*time.Second, "length of each timed row (the flash crowd is bounded by its requests)")
	fs.StringVar(&only, "only", "", "comma-separated rows to run (default all): "+strings.Join(rowNames, ", ")+", "+rowIdle)
	fs.BoolVar(&s.privateRedis, "private-redis", false, "run every row on a redis-server of the run's own (a shared Redis's other clients would count in its CPU per request)")
	fs.IntVar(&s.rounds, "rounds", 1, "run the timed rows this many times, interleaved, and report each row's median round: the ratios between rows then hold on a machine whose speed drifts (the idle rows run once)")
	fs.BoolVar(&s.asJSON, "json", false, "write the report as JSON instead of a table")
	fs.StringVar(&s.flashsale, "flashsale", "bin/flashsale", "the flashsale binary (make build)")
	fs.StringVar(&ceilAddr, internalCeilingFlag, "", "")
	fs.StringVar(&plainAddr, internalPlainFlag, "", "")
	fs.StringVar(&plainPrefix, internalPlainPrefixFlag, "", "")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flashsale-bench [flags]\n\n"+
			"Environment: FLASHSALE_BENCH_REDIS_ADDR (default %s), FLASHSALE_BENCH_MYSQL_DSN (default %s).\n\nFlags:\n",
			defaultRedisAddr, defaultMySQLDSN)
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.HasPrefix(f.Name, "internal-") {
				fmt.Fprintf(stderr, "  -%s\n\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if ceilAddr != "" {
		if err := serveCeiling(ctx, ceilAddr); err != nil {
			fmt.Fprintln(stderr, "flashsale-bench ceiling:", err)
			return exitFailed
		}
		return exitOK
	}
	s.redisAddr = envOr(getenv, "FLASHSALE_BENCH_REDIS_ADDR", defaultRedisAddr)
	if plainAddr != "" {
		if err := servePlain(ctx, plainAddr, s.redisAddr, plainPrefix); err != nil {
			fmt.Fprintln(stderr, "flashsale-bench plain endpoint:", err)
			return exitFailed
		}
		return exitOK
	}
	s.mysqlDSN = envOr(getenv, "FLASHSALE_BENCH_MYSQL_DSN", defaultMySQLDSN)
	var err error
	if s.only, err = parseOnly(only); err != nil {
		fmt.Fprintln(stderr, "flashsale-bench:", err)
		return exitUsage
	}
	if s.clients < 1 || s.duration <= 0 || s.rounds < 1 || s.rounds > 20 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "flashsale-bench: -clients must be at least 1, -duration positive, -rounds 1..20, and no arguments given")
		return exitUsage
	}

	rep, err := benchmark(ctx, s, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "flashsale-bench:", err)
		if len(rep.Rows) == 0 {
			return exitFailed
		}
	}
	if werr := rep.write(stdout, s.asJSON); werr != nil {
		fmt.Fprintln(stderr, "flashsale-bench: write the report:", werr)
		return exitFailed
	}
	if err != nil || !rep.Pass {
		return exitFailed
	}
	return exitOK
}

const (
	defaultRedisAddr = "127.0.0.1:6379"
	defaultMySQLDSN  = "root@tcp(127.0.0.1:3306)/"
)

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// parseOnly splits -only and checks every name, so a typo is an error
// rather than a run that silently measures less.
func parseOnly(only string) ([]string, error) {
	if strings.TrimSpace(only) == "" {
		return nil, nil
	}
	var rows []string
	for name := range strings.SplitSeq(only, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(rowNames, name) && name != rowIdle {
			return nil, fmt.Errorf("-only: unknown row %q (want some of %s, %s)", name, strings.Join(rowNames, ", "), rowIdle)
		}
		if !slices.Contains(rows, name) {
			rows = append(rows, name)
		}
	}
	return rows, nil
}

// serveCeiling serves the bare HTTP ceiling until ctx is done (SIGTERM
// from the bench).
func serveCeiling(ctx context.Context, addr string) error {
	app := ceiling.New()
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
