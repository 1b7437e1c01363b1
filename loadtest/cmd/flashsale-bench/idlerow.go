package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// rowIdle selects the idle rows (-only idle): what a catalogue costs Redis
// while nobody buys (issue 16).
const rowIdle = "idle"

const (
	// idleItems is the catalogue of the idle rows; idleLargeItems the one
	// measured again with idleTargetInstances only, to show the cost flat
	// in the catalogue.
	idleItems      = 10_000
	idleLargeItems = 100_000
	// idleWarm is how long after instances start before the window opens:
	// the first instance syncs the seeding to MySQL, and an outbox that had
	// entries is polled on every read for 5 s after (redisstore's hotFor).
	idleWarm = 6 * time.Second
	// idleSyncWait bounds the wait for the seeding to reach MySQL.
	idleSyncWait = 5 * time.Minute
	// idleMaxRedisCPU: with idleTargetInstances idle instances, Redis under
	// this share of a core, whatever the catalogue.
	idleMaxRedisCPU     = 0.05
	idleTargetInstances = 4
)

// idleInstances are the instance counts measured, each adding instances to
// the ones already running.
var idleInstances = []int{1, 2, idleTargetInstances}

// idleRow is one idle measurement: Redis's CPU and command rate, and the
// instances' own CPU, over the window.
type idleRow struct {
	Items       int           `json:"items"`
	Instances   int           `json:"instances"`
	Window      time.Duration `json:"-"`
	RedisCPU    float64       `json:"redis_cpu_share"`     // of one core
	Commands    float64       `json:"redis_commands_rps"`  // per second
	InstanceCPU float64       `json:"instances_cpu_share"` // all instances together, of one core
	// MySQLCPU is the record's server's share of one core; -1 when its
	// process could not be read (a MySQL elsewhere).
	MySQLCPU float64 `json:"mysql_cpu_share"`
	// TopCommands are the commands called most per second over the window
	// (those run by scripts counted too), busiest first.
	TopCommands []commandRate `json:"top_commands,omitempty"`
	Failure     string        `json:"failure,omitempty"`
}

// idleRows seeds idleItems items on a Redis of the row's own (the shared one
// has other clients whose commands would be counted), then starts idle
// flashsale serve instances on it (syncer on, MySQL a database of the run's
// own) and measures each count of them in idleInstances.
func (b *bench) idleRows(ctx context.Context) error {
	b.start(rowIdle)
	for _, c := range []struct {
		items     int
		instances []int
	}{{idleItems, idleInstances}, {idleLargeItems, []int{idleTargetInstances}}} {
		err := b.idle(ctx, c.items, c.instances)
		if err != nil && ctx.Err() == nil {
			b.idleResults = append(b.idleResults, idleRow{Items: c.items, Failure: err.Error()})
			fmt.Fprintf(b.log, "flashsale-bench: %s (%d items) FAILED: %v\n", rowIdle, c.items, err)
			continue
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(b.log, "flashsale-bench: %s done\n", rowIdle)
	return nil
}

// idle measures a catalogue of items on a Redis of its own, with each count
// of instances, and stops its instances before it returns.
func (b *bench) idle(ctx context.Context, items int, counts []int) error {
	rdb, redisPID, err := b.privateRedis(ctx)
	if err != nil {
		return err
	}
	prefix := "fsbench-" + b.runID + "-idle" + strconv.Itoa(items)
	seeded := time.Now()
	if err := seedCatalogue(ctx, rdb, prefix, items); err != nil {
		return err
	}
	fmt.Fprintf(b.log, "flashsale-bench: %s: %d items seeded in %v\n", rowIdle, items, time.Since(seeded).Round(time.Millisecond))
	dsn, err := b.createDB(ctx, "idle"+strconv.Itoa(items))
	if err != nil {
		return err
	}
	redisAddr := rdb.Options().Addr
	var instances []cpuSource
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, n := range counts {
		for len(instances) < n {
			pid, stop, err := b.startIdleInstance(ctx, len(instances), redisAddr, prefix, dsn)
			if err != nil {
				return err
			}
			instances = append(instances, procSource(procService, pid))
			stops = append(stops, stop)
		}
		// The seeding must reach MySQL first; the items then stay with the
		// syncer that took them for hotFor before they go back to the index.
		synced := time.Now()
		if err := waitSynced(ctx, rdb, prefix); err != nil {
			return err
		}
		fmt.Fprintf(b.log, "flashsale-bench: %s: %d items, %d instances: synced after %v, %v to settle, then %v measured\n",
			rowIdle, items, n, time.Since(synced).Round(time.Millisecond), idleWarm, b.s.duration)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(idleWarm):
		}
		row, err := measureIdle(ctx, rdb, redisPID, instances, b.mysqlSource(), b.s.duration)
		if err != nil {
			return err
		}
		row.Items = items
		b.idleResults = append(b.idleResults, row)
	}
	return nil
}

// waitSynced waits until no outbox of the catalogue holds a change (the
// dirty index is empty), at most idleSyncWait.
func waitSynced(ctx context.Context, rdb *goredis.Client, prefix string) error {
	store, err := redisstore.New(ctx, rdb, prefix)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	deadline := time.Now().Add(idleSyncWait)
	for {
		b, err := store.Backlog(ctx)
		if err == nil && b.Entries == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("idle: seeding not synced after %v: backlog %+v, %v", idleSyncWait, b, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mysqlSource is the MySQL server's CPU source found at the run's start,
// if any: in the idle rows, what keeping a catalogue current costs the
// record.
func (b *bench) mysqlSource() []cpuSource {
	for _, src := range b.cpuBase {
		if src.proc == procMySQL {
			return []cpuSource{src}
		}
	}
	return nil
}

// measureIdle reads Redis's CPU and commands processed, the instances' CPU
// and, when mysql holds its source, MySQL's, across window.
func measureIdle(ctx context.Context, rdb *goredis.Client, redisPID int, instances, mysql []cpuSource, window time.Duration) (idleRow, error) {
	srcs := append(append([]cpuSource{procSource(procRedis, redisPID)}, instances...), mysql...)
	commands := func() (int64, error) {
		s, err := rdb.Info(ctx, "stats").Result()
		if err != nil {
			return 0, err
		}
		return infoInt(s, "total_commands_processed")
	}
	before, err := commands()
	if err != nil {
		return idleRow{}, fmt.Errorf("INFO stats: %w", err)
	}
	statsBefore, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return idleRow{}, fmt.Errorf("INFO commandstats: %w", err)
	}
	start := time.Now()
	done := meter(ctx, srcs)
	select {
	case <-ctx.Done():
		return idleRow{}, ctx.Err()
	case <-time.After(window):
	}
	use := done()
	elapsed := time.Since(start)
	after, err := commands()
	if err != nil {
		return idleRow{}, fmt.Errorf("INFO stats: %w", err)
	}
	statsAfter, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return idleRow{}, fmt.Errorf("INFO commandstats: %w", err)
	}
	redisCPU, ok := use[procRedis]
	if !ok {
		return idleRow{}, errors.New("the idle Redis's CPU could not be read")
	}
	mysqlCPU := -1.0
	if d, ok := use[procMySQL]; ok {
		mysqlCPU = share(d, elapsed)
	}
	return idleRow{
		MySQLCPU:    mysqlCPU,
		Instances:   len(instances),
		Window:      elapsed,
		RedisCPU:    share(redisCPU, elapsed),
		InstanceCPU: share(use[procService], elapsed),
		// A reply counts the commands before it: the window's count
		// includes the first INFO stats and INFO commandstats.
		Commands:    float64(after-before-2) / elapsed.Seconds(),
		TopCommands: topCommands(parseCommandStats(statsBefore), parseCommandStats(statsAfter), elapsed, 10),
	}, nil
}

// share is CPU time as a share of one core over elapsed.
func share(cpu, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(cpu) / float64(elapsed)
}

// infoInt is the integer field name of an INFO reply.
func infoInt(info, name string) (int64, error) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO has no %s", name)
}

// seedCatalogue creates items idle-0 .. idle-(n-1) under prefix, with stock
// and the default hold, as the admin's bulk seeding would.
func seedCatalogue(ctx context.Context, rdb *goredis.Client, prefix string, n int) error {
	store, err := redisstore.New(ctx, rdb, prefix)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	specs := make([]reservation.ItemSpec, n)
	for i := range specs {
		specs[i] = reservation.ItemSpec{SKU: "idle-" + strconv.Itoa(i), Stock: 100, PerUserLimit: 1, Hold: reservation.DefaultHold}
	}
	_, errs := store.SeedMany(ctx, specs)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("idle: seed %d items: %w", n, err)
	}
	return nil
}

// privateRedis starts a redis-server of the row's own on a free port, with
// nothing written to disk, stopped with the run's cleanup.
func (b *bench) privateRedis(ctx context.Context) (*goredis.Client, int, error) {
	addr, c, _, err := b.startRedisServer("the idle rows' redis-server")
	if err != nil {
		return nil, 0, err
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2})
	b.cleanup.add(func(context.Context) error { return rdb.Close() })
	if err := c.waitReady(ctx, func(ctx context.Context) error { return rdb.Ping(ctx).Err() }); err != nil {
		return nil, 0, err
	}
	return rdb, c.cmd.Process.Pid, nil
}

// replica starts a redis-server replicating primary, stopped with the
// run's cleanup or by stop, and waits until it is in sync.
func (b *bench) replica(ctx context.Context, primary string) (pid int, stop func(), err error) {
	phost, pport, err := net.SplitHostPort(primary)
	if err != nil {
		return 0, nil, fmt.Errorf("primary %q: %w", primary, err)
	}
	addr, c, stop, err := b.startRedisServer("a replica's redis-server",
		"--replicaof", phost, pport, "--repl-diskless-sync-delay", "0")
	if err != nil {
		return 0, nil, err
	}
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: 2})
	defer rdb.Close()
	inSync := func(ctx context.Context) error {
		info, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("replica not in sync yet")
		}
		// In sync is not yet acknowledging promptly: right after the
		// first sync a WAIT of the service's 100 ms could time out.
		pipe := b.redis.Pipeline()
		pipe.Set(ctx, "fsbench-"+b.runID+"-replica-probe", 1, time.Minute)
		wait := pipe.Do(ctx, "wait", 1, 100)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		if n, err := wait.Int64(); err != nil || n < 1 {
			return errors.New("replica does not acknowledge within 100ms yet")
		}
		return nil
	}
	if err := c.waitReady(ctx, inSync); err != nil {
		stop()
		return 0, nil, err
	}
	return c.cmd.Process.Pid, stop, nil
}

// startRedisServer starts redis-server (what names it in errors) on a free
// port with a directory of its own and nothing written to disk, extra
// arguments last. The run's cleanup stops it and removes the directory;
// stop stops it sooner.
func (b *bench) startRedisServer(what string, extra ...string) (addr string, c *child, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if addr, err = freeAddr(); err != nil {
		return "", nil, nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "flashsale-bench-redis-")
	if err != nil {
		return "", nil, nil, fmt.Errorf("%s: directory: %w", what, err)
	}
	b.cleanup.add(func(context.Context) error { return os.RemoveAll(dir) })
	args := append([]string{"--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	if c, err = startChild(what, bin, args, childEnv(), "", b.log); err != nil {
		return "", nil, nil, err
	}
	return addr, c, b.cleanup.add(func(context.Context) error { return c.stop() }), nil
}

// startIdleInstance runs flashsale serve number i on redisAddr, as one of
// several instances of one deployment (same prefix, same database).
func (b *bench) startIdleInstance(ctx context.Context, i int, redisAddr, prefix, dsn string) (int, func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, nil, err
	}
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("flashsale-bench-%s-idle-%d.log", b.runID, i))
	c, err := startChild(fmt.Sprintf("idle flashsale %d", i), b.s.flashsale, []string{"serve"}, childEnv(
		"FLASHSALE_HTTP_ADDR="+addr,
		"FLASHSALE_REDIS_ADDR="+redisAddr,
		"FLASHSALE_KEY_PREFIX="+prefix,
		"FLASHSALE_MYSQL_DSN="+dsn,
		"FLASHSALE_ADMIN_TOKEN="+randomHex(16),
		"FLASHSALE_LOG_LEVEL=warn",
	), logPath, b.log)
	if err != nil {
		return 0, nil, fmt.Errorf("%w (make build first, or pass -flashsale)", err)
	}
	stop := b.cleanup.add(func(context.Context) error {
		err := c.stop()
		if err == nil {
			_ = os.Remove(logPath) // kept when something went wrong
		}
		return err
	})
	if err := c.waitReady(ctx, httpOK("http://"+addr+"/readyz")); err != nil {
		return 0, nil, err
	}
	return c.cmd.Process.Pid, stop, nil
}

// idleTarget: Redis under idleMaxRedisCPU of a core with
// idleTargetInstances idle instances, for every catalogue measured (the
// highest counts).
func (r *report) idleTarget() check {
	c := check{Name: fmt.Sprintf("idle: Redis CPU with %d idle instances (share of a core)", idleTargetInstances),
		Op: atMost, Want: 100 * idleMaxRedisCPU, Unit: "%"}
	var items []string
	worst := -1.0
	for _, ir := range r.Idle {
		if ir.Failure != "" {
			c.Verdict, c.Why = notRun, fmt.Sprintf("idle (%d items) failed", ir.Items)
			return c
		}
		if ir.Instances == idleTargetInstances {
			items = append(items, strconv.Itoa(ir.Items))
			worst = max(worst, ir.RedisCPU)
		}
	}
	if worst < 0 {
		c.Verdict, c.Why = notRun, "idle not run"
		return c
	}
	c.Name = fmt.Sprintf("idle: Redis CPU, %s items and %d idle instances (the highest)", strings.Join(items, " and "), idleTargetInstances)
	c.Value = 100 * worst
	c.Verdict = verdict(worst < idleMaxRedisCPU)
	return c
}

// writeIdle prints the idle rows, if any ran.
func (r report) writeIdle(w io.Writer) error {
	if len(r.Idle) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "idle (nobody buying)\titems\tinstances\tRedis CPU\tRedis commands/s\tinstances' CPU\tMySQL CPU\tbusiest commands")
	for _, ir := range r.Idle {
		if ir.Failure != "" {
			fmt.Fprintf(tw, "%s\t%d\t-\t-\t-\t-\t-\tFAILED: %s\n", rowIdle, ir.Items, ir.Failure)
			continue
		}
		mysql := "-"
		if ir.MySQLCPU >= 0 {
			mysql = fmt.Sprintf("%.1f%%", 100*ir.MySQLCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\t%.0f\t%.1f%%\t%s\t%s\n", rowIdle, ir.Items, ir.Instances, 100*ir.RedisCPU, ir.Commands,
			100*ir.InstanceCPU, mysql, formatCommands(ir.TopCommands))
	}
	return tw.Flush()
}

// commandRate is one command's calls per second over a window.
type commandRate struct {
	Name  string  `json:"name"`
	Calls float64 `json:"calls_per_second"`
}

// parseCommandStats reads INFO commandstats: calls by command name.
func parseCommandStats(info string) map[string]int64 {
	calls := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					calls[strings.TrimPrefix(name, "cmdstat_")] = n
				}
			}
		}
	}
	return calls
}

// topCommands are the n commands called most between before and after.
func topCommands(before, after map[string]int64, elapsed time.Duration, n int) []commandRate {
	var out []commandRate
	for name, a := range after {
		if d := a - before[name]; d > 0 && elapsed > 0 {
			out = append(out, commandRate{Name: name, Calls: float64(d) / elapsed.Seconds()})
		}
	}
	slices.SortFunc(out, func(x, y commandRate) int {
		if c := cmp.Compare(y.Calls, x.Calls); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	return out[:min(n, len(out))]
}

// formatCommands is "evalsha 20k/s, zrangebyscore 20k/s, ...".
func formatCommands(cs []commandRate) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %.1fk/s", c.Name, c.Calls/1000)
	}
	return strings.Join(parts, ", ")
}
