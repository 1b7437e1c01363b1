package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/loadtest"
	"github.com/flashsale/flashsale/loadtest/baseline"
	"github.com/flashsale/flashsale/loadtest/redisbench"
)

// The rows, in the order they run and are printed.
const (
	rowRedisSuccess  = "redis-evalsha-success"
	rowRedisSoldOut  = "redis-evalsha-soldout"
	rowCeiling       = "http-ceiling"
	rowPlain         = "plain-endpoint"
	rowSvcSuccess    = "service-success"
	rowSvcSoldOut    = "service-soldout"
	rowSvcFlashCrowd = "service-flashcrowd"
	// The same paths with both rate limits on (issue 12): every request
	// then spends from a user's and an address's budget in Redis.
	rowSvcSuccessLimited = "service-success-limits"
	rowSvcSoldOutLimited = "service-soldout-limits"
	// The success path with FLASHSALE_REDIS_ACK_REPLICAS=1 (issue 13) on a
	// Redis with a replica: every change waits for the replica's WAIT.
	rowSvcSuccessAck = "service-success-ack1"
	// The success path on a service without its syncer (FLASHSALE_SYNC=false):
	// nothing reaches MySQL, so beside service-success it shows what the
	// durable record costs, and beside plain-endpoint (which writes no
	// record either) what the rest of the guarantee does.
	rowSvcSuccessNoSync = "service-success-nosync"
	rowNaive            = "mysql-naive"
	rowForUpdate        = "mysql-for-update"
	rowConditional      = "mysql-conditional"
	rowIncident         = "mysql-naive-incident"
)

var rowNames = []string{rowRedisSuccess, rowRedisSoldOut, rowCeiling, rowPlain, rowSvcSuccess, rowSvcSoldOut,
	rowSvcFlashCrowd, rowSvcSuccessLimited, rowSvcSoldOutLimited, rowSvcSuccessAck, rowSvcSuccessNoSync, rowNaive, rowForUpdate, rowConditional, rowIncident}

// The flash crowd and the incident are fixed by the issue, not by flags.
const (
	crowdStock    = 1_000
	crowdRequests = 200_000
	crowdUsers    = 100_000
	incidentBuyer = 50
	incidentStock = 5
	// baselineStock is more than any MySQL approach sells in a run, so the
	// rate rows measure selling, not refusing.
	baselineStock = 1_000_000_000
	// calibrationCalls sizes the redis-benchmark runs: redis-benchmark
	// stops after a count, not a time, so a short run finds the rate first.
	calibrationCalls = 20_000
	maxRedisCalls    = 20_000_000
)

// bench holds what every row needs; one per run.
type bench struct {
	s       settings
	runID   string // in every key prefix and database name of the run's round
	redis   *goredis.Client
	admin   *sql.DB // the MySQL server, for creating and dropping databases
	log     io.Writer
	cleanup cleanups
	cpuBase []cpuSource // Redis and MySQL, measured in every row
	svcPID  int         // the flashsale process startService started last
	// idleResults are the idle rows, reported apart from the load rows.
	idleResults []idleRow
	rows        map[string]row // the load rows so far, by name
}

// benchmark runs every selected row and evaluates the targets. The report
// holds the rows measured so far even when err is set (ctx cancelled, or a
// server missing).
func benchmark(ctx context.Context, s settings, log io.Writer) (rep report, err error) {
	b := &bench{s: s, runID: randomHex(6), log: log, rows: map[string]row{}}
	rep = report{Clients: s.clients, Duration: s.duration, RunID: b.runID, LoadAvg: loadAvg()}
	defer func() {
		// Cleaning up must happen even when ctx is what stopped the run.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, b.cleanup.run(cctx))
		rep.Idle = b.idleResults
		rep.evaluate()
	}()

	if s.privateRedis {
		// Redis's CPU per request is then the rows' alone, whoever else
		// uses the machine's Redis.
		rdb, _, err := b.privateRedis(ctx)
		if err != nil {
			return rep, fmt.Errorf("-private-redis: %w", err)
		}
		s.redisAddr, b.s.redisAddr = rdb.Options().Addr, rdb.Options().Addr
		rep.Notes = append(rep.Notes, "redis: a redis-server of the run's own at "+s.redisAddr+" (-private-redis)")
	}
	b.redis = goredis.NewClient(&goredis.Options{Addr: s.redisAddr})
	b.cleanup.add(func(context.Context) error { return b.redis.Close() })
	if err := b.redis.Ping(ctx).Err(); err != nil {
		return rep, fmt.Errorf("redis at %s (FLASHSALE_BENCH_REDIS_ADDR): %w", s.redisAddr, err)
	}
	if b.admin, err = sql.Open("mysql", s.mysqlDSN); err != nil {
		return rep, fmt.Errorf("mysql DSN (FLASHSALE_BENCH_MYSQL_DSN): %w", err)
	}
	b.cleanup.add(func(context.Context) error { return b.admin.Close() })
	if err := b.admin.PingContext(ctx); err != nil {
		return rep, fmt.Errorf("mysql (FLASHSALE_BENCH_MYSQL_DSN): %w", err)
	}
	var notes []string
	b.cpuBase, notes = serverSources(ctx, b.redis, s.redisAddr, b.admin, mysqlAddr(s.mysqlDSN))
	rep.Notes = append(rep.Notes, notes...)

	steps := []struct {
		rows []string
		run  func(ctx context.Context, add func(row)) error
	}{
		{[]string{rowRedisSuccess, rowRedisSoldOut}, b.redisRows},
		{[]string{rowCeiling}, b.ceilingRow},
		{[]string{rowPlain}, b.plainRow},
		{[]string{rowSvcSuccess, rowSvcSoldOut, rowSvcFlashCrowd}, b.serviceRows},
		{[]string{rowSvcSuccessLimited, rowSvcSoldOutLimited}, b.limitedServiceRows},
		{[]string{rowSvcSuccessAck}, b.ackedServiceRow},
		{[]string{rowSvcSuccessNoSync}, b.unsyncedServiceRow},
		{[]string{rowNaive, rowForUpdate, rowConditional, rowIncident}, b.mysqlRows},
	}
	var order []string
	rounds := map[string][]row{}
	add := func(r row) {
		if _, seen := rounds[r.Name]; !seen {
			order = append(order, r.Name)
		}
		rounds[r.Name] = append(rounds[r.Name], r)
		b.rows[r.Name] = r
		status := "done"
		if r.Failure != "" {
			status = "FAILED: " + r.Failure
		}
		fmt.Fprintf(log, "flashsale-bench: %s %s\n", r.Name, status)
	}
	defer func() {
		for _, name := range order {
			rep.Rows = append(rep.Rows, medianRow(rounds[name]))
		}
	}()
	for round := 1; round <= s.rounds; round++ {
		if s.rounds > 1 {
			fmt.Fprintf(log, "flashsale-bench: round %d of %d\n", round, s.rounds)
		}
		if round > 1 {
			// Every round's rows get key prefixes and databases of their own.
			b.runID = rep.RunID + "r" + strconv.Itoa(round)
		}
		for _, st := range steps {
			if !anySelected(s, st.rows) {
				continue
			}
			if err := st.run(ctx, add); err != nil {
				return rep, err
			}
		}
	}
	if s.selected(rowIdle) {
		if err := b.idleRows(ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// medianRow is what a row of several rounds reports: the round of median
// throughput, whole, so its CPU figures are that round's, with every
// round's rate in its detail. A round that failed or oversold is reported
// instead: one bad round is never hidden behind good ones.
func medianRow(rounds []row) row {
	if len(rounds) == 1 {
		return rounds[0]
	}
	rates := make([]string, len(rounds))
	for i, r := range rounds {
		rates[i] = fmt.Sprintf("%.0f", r.Throughput)
	}
	sorted := slices.Clone(rounds)
	slices.SortStableFunc(sorted, func(a, b row) int { return cmp.Compare(a.Throughput, b.Throughput) })
	pick := sorted[(len(sorted)-1)/2]
	for _, r := range rounds {
		if r.Failure != "" || (r.Oversold != nil && *r.Oversold > 0) {
			pick = r
			break
		}
	}
	pick.Detail += fmt.Sprintf("; median of %d rounds, req/s %s", len(rounds), strings.Join(rates, ", "))
	pick.rounds = rounds
	return pick
}

func anySelected(s settings, rows []string) bool {
	for _, r := range rows {
		if s.selected(r) {
			return true
		}
	}
	return false
}

func (b *bench) start(name string) { fmt.Fprintf(b.log, "flashsale-bench: %s ...\n", name) }

// redisRows runs the reserve script under redis-benchmark on both paths.
func (b *bench) redisRows(ctx context.Context, add func(row)) error {
	for _, p := range []struct {
		name string
		path redisbench.Path
	}{{rowRedisSuccess, redisbench.Success}, {rowRedisSoldOut, redisbench.SoldOut}} {
		if !b.s.selected(p.name) {
			continue
		}
		b.start(p.name)
		r := row{Name: p.name}
		res, err := b.redisRun(ctx, p.path)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.Failure = err.Error()
		} else {
			r.Requests, r.Elapsed, r.Throughput, r.P50, r.P99 = int64(res.Requests), res.Elapsed, res.Throughput, res.P50, res.P99
			r.CPU = res.cpu
			// At redis-benchmark's own rate: Elapsed includes its start-up.
			r.Purchases = res.Throughput * float64(res.Granted) / float64(res.Requests)
			r.Detail = fmt.Sprintf("%d EVALSHA calls, %d holds granted", res.Requests, res.Granted)
		}
		add(r)
	}
	return nil
}

func (b *bench) redisRun(ctx context.Context, path redisbench.Path) (measuredRun, error) {
	prefix := "fsbench-" + b.runID + "-rb-" + path.String()
	cal, err := redisbench.Run(ctx, b.redis, path, redisbench.Config{Prefix: prefix + "-cal", Clients: b.s.clients, Requests: calibrationCalls})
	if err != nil {
		return measuredRun{}, fmt.Errorf("calibration: %w", err)
	}
	calls := int(min(max(cal.Throughput*b.s.duration.Seconds(), calibrationCalls), maxRedisCalls))
	var use cpuUse
	res, err := redisbench.Run(ctx, b.redis, path, redisbench.Config{Prefix: prefix, Clients: b.s.clients, Requests: calls,
		Around: func() func() {
			done := b.measure(ctx)
			return func() { use = done() }
		}})
	if err == nil {
		use[procLoadGen] = res.ClientCPU
	}
	return measuredRun{res, use}, err
}

// measuredRun is a redis-benchmark run with the CPU each process spent on it.
type measuredRun struct {
	redisbench.Result
	cpu cpuUse
}

// ceilingRow loads the bare Fiber server, started as a process of its own
// (this binary with -internal-ceiling), with the same client as the service.
func (b *bench) ceilingRow(ctx context.Context, add func(row)) error {
	b.start(rowCeiling)
	r := row{Name: rowCeiling}
	if err := b.ceiling(ctx, &r); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.Failure = err.Error()
	}
	add(r)
	return nil
}

func (b *bench) ceiling(ctx context.Context, r *row) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to start the ceiling: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	c, err := startChild("the HTTP ceiling", self, []string{"-" + internalCeilingFlag, addr}, childEnv(), "", b.log)
	if err != nil {
		return err
	}
	// Stopped when the row ends, and by the run's cleanup if the row
	// never gets there.
	defer b.cleanup.add(func(context.Context) error { return c.stop() })()
	if err := c.waitReady(ctx, tcpOpen(addr)); err != nil {
		return err
	}
	client, err := loadtest.NewClient("http://"+addr, "", b.s.clients)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	done := b.measure(ctx, procSource(procService, c.cmd.Process.Pid), selfSource())
	res, err := loadtest.Run(ctx, loadtest.Config{Clients: b.s.clients, Duration: b.s.duration, Progress: b.log},
		func(ctx context.Context, _ int, seq int64) (string, error) {
			_, outcome, err := client.ReserveUser(ctx, "ceiling", "u", seq, 1)
			if err == nil && outcome != "sold_out" {
				err = fmt.Errorf("the ceiling answered %s, not sold_out", outcome)
			}
			return outcome, err
		})
	if err != nil {
		return err
	}
	r.fromResult(res)
	r.CPU = done()
	r.Detail = fmt.Sprintf("%d requests, %d answered 409 sold_out", res.Requests, res.Outcomes["sold_out"])
	return nil
}

// tcpOpen is ready once addr accepts a connection.
func tcpOpen(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// serviceRows starts bin/flashsale with real Redis and MySQL and runs the
// service's rows against it, each on an item of its own.
func (b *bench) serviceRows(ctx context.Context, add func(row)) error {
	return b.runServiceRows(ctx, add, "service", rowSvcSuccess, rowSvcSoldOut, rowSvcFlashCrowd)
}

// The rate limits' budgets in the limits rows. No request of the run is
// refused, so the rows measure what spending from the budgets costs: each
// buyer's is a buyer's budget (every request is a new buyer, whose key
// Redis keeps for an interval), and every request comes from one address,
// whose budget is high enough for the whole run.
const (
	benchLimitUser = "5/s burst 10"
	benchLimitIP   = "1000000/s burst 1000000"
)

// limitedServiceRows runs the success and sold-out paths again on a
// service with FLASHSALE_RATE_PER_USER and FLASHSALE_RATE_PER_IP on.
func (b *bench) limitedServiceRows(ctx context.Context, add func(row)) error {
	return b.runServiceRows(ctx, add, "limits", rowSvcSuccessLimited, rowSvcSoldOutLimited, "",
		"FLASHSALE_RATE_PER_USER="+benchLimitUser, "FLASHSALE_RATE_PER_IP="+benchLimitIP)
}

// ackedServiceRow runs the success path on a service with
// FLASHSALE_REDIS_ACK_REPLICAS=1, its Redis given a replica of the row's
// own: each pipeline of changes then ends with a WAIT for it. Its Redis
// column is the primary's and the replica's CPU together; the detail gives
// its cost against the success path without (ack 0) in the same run.
func (b *bench) ackedServiceRow(ctx context.Context, add func(row)) error {
	if !b.s.selected(rowSvcSuccessAck) {
		return nil
	}
	replicaPID, stopReplica, err := b.replica(ctx, b.s.redisAddr)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		add(row{Name: rowSvcSuccessAck, Failure: "a replica: " + err.Error()})
		return nil
	}
	defer stopReplica()
	base := b.cpuBase
	b.cpuBase = append(slices.Clone(base), procSource(procRedis, replicaPID))
	defer func() { b.cpuBase = base }()
	return b.runServiceRows(ctx, func(r row) {
		if plain, ok := b.rows[rowSvcSuccess]; ok && r.Failure == "" && plain.Failure == "" && plain.Throughput > 0 {
			r.Detail += fmt.Sprintf("; %.2fx the req/s of %s (ack 0) in this run", r.Throughput/plain.Throughput, rowSvcSuccess)
			if a, ok := r.perRequest(procRedis); ok {
				if p, ok := plain.perRequest(procRedis); ok {
					r.Detail += fmt.Sprintf(", Redis (primary + replica) %+.1f us per hold", a-p)
				}
			}
		}
		r.Detail += "; redis us/req: primary + replica"
		add(r)
	}, "ack", rowSvcSuccessAck, "", "", "FLASHSALE_REDIS_ACK_REPLICAS=1")
}

// syncOff starts a service without its syncer: it has no record to check.
const syncOff = "FLASHSALE_SYNC=false"

// unsyncedServiceRow runs the success path on a service without its
// syncer, its detail set against plain-endpoint and service-success of the
// same run (recordCost).
func (b *bench) unsyncedServiceRow(ctx context.Context, add func(row)) error {
	return b.runServiceRows(ctx, func(r row) {
		// A row not run this round is the zero row: recordCost leaves it out.
		r.Detail += recordCost(r, b.rows[rowPlain], b.rows[rowSvcSuccess])
		add(r)
	}, "nosync", rowSvcSuccessNoSync, "", "", syncOff)
}

// recordCost is what the durable record costs, read from the success path
// without the syncer (unsynced) against the plain endpoint and the success
// path with it (synced), each a row of the same round: the rates' ratios
// and each process's CPU per hold with the syncer on, less without. A row
// not run or failed (zero rate) leaves its part out.
func recordCost(unsynced, plain, synced row) string {
	if unsynced.Failure != "" || unsynced.Throughput <= 0 {
		return ""
	}
	var b strings.Builder
	if plain.Failure == "" && plain.Throughput > 0 {
		fmt.Fprintf(&b, "; %.2fx the req/s of %s", unsynced.Throughput/plain.Throughput, rowPlain)
	}
	if synced.Failure != "" || synced.Throughput <= 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "; %s (syncer on) %.2fx of this", rowSvcSuccess, synced.Throughput/unsynced.Throughput)
	sep := ", the record's us per hold: "
	for _, p := range []string{procService, procRedis, procMySQL} {
		on, ok1 := synced.perRequest(p)
		off, ok2 := unsynced.perRequest(p)
		if ok1 && ok2 {
			fmt.Fprintf(&b, "%s%s %+.1f", sep, p, on-off)
			sep = ", "
		}
	}
	return b.String()
}

// runServiceRows runs the success, sold-out and flash-crowd paths under
// the names given ("": skip that path) on a service started with env added,
// its database and keys named after purpose.
func (b *bench) runServiceRows(ctx context.Context, add func(row), purpose, success, soldOutRow, crowd string, env ...string) error {
	var names []string
	for _, n := range []string{success, soldOutRow, crowd} {
		if n != "" {
			names = append(names, n)
		}
	}
	url, token, stop, err := b.startService(ctx, purpose, env...)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// The other rows do not need the service: they still run.
		for _, n := range names {
			if b.s.selected(n) {
				add(row{Name: n, Failure: "start the service: " + err.Error()})
			}
		}
		return nil
	}
	defer stop()
	client, err := loadtest.NewClient(url, token, b.s.clients)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()

	soldOut := loadtest.Scenario{Name: "soldout", Stock: 0}
	successScenario := loadtest.Success()
	successScenario.NoSyncCheck = slices.Contains(env, syncOff)
	for _, sc := range []struct {
		name     string
		scenario loadtest.Scenario
		cfg      loadtest.Config
	}{
		{success, successScenario, loadtest.Config{Duration: b.s.duration}},
		{soldOutRow, soldOut, loadtest.Config{Duration: b.s.duration}},
		{crowd, loadtest.FlashCrowd(crowdStock, crowdRequests, crowdUsers), loadtest.Config{}},
	} {
		if sc.name == "" || !b.s.selected(sc.name) {
			continue
		}
		b.start(sc.name)
		cfg := sc.cfg
		cfg.Clients, cfg.Progress = b.s.clients, b.log
		done := b.measure(ctx, procSource(procService, b.svcPID), selfSource())
		rep, err := loadtest.RunScenario(ctx, client, sc.scenario, cfg)
		if err != nil && ctx.Err() != nil {
			return err
		}
		r := row{Name: sc.name}
		switch {
		case err != nil:
			r.Failure = err.Error()
		default:
			r.fromResult(rep.Result)
			r.CPU = done()
			v := rep.Verification
			r.Oversold = &v.Oversold
			r.Purchases = float64(v.Granted) / rep.Elapsed.Seconds()
			r.Detail = fmt.Sprintf("%d requests: %d holds of %d units, %d sold out", rep.Requests, v.Granted, v.Stock, rep.Outcomes["sold_out"])
			if v.SyncChecked && v.OK {
				r.Detail += fmt.Sprintf("; MySQL in sync %v after", v.SyncedIn.Round(10*time.Millisecond))
			}
			if !v.OK {
				r.Failure = fmt.Sprintf("verification: %v", v.Problems)
			}
		}
		add(r)
	}
	return nil
}

// startService runs the flashsale binary on a free port with a key prefix
// and a database of the run's own, and waits for /readyz. stop ends it and
// deletes its keys; the database goes with the run's cleanup.
func (b *bench) startService(ctx context.Context, purpose string, env ...string) (url, token string, stop func(), err error) {
	addr, err := freeAddr()
	if err != nil {
		return "", "", nil, err
	}
	dsn, err := b.createDB(ctx, purpose)
	if err != nil {
		return "", "", nil, err
	}
	prefix := "fsbench-" + b.runID + "-" + purpose
	token = randomHex(16)
	logPath := filepath.Join(os.TempDir(), "flashsale-bench-"+b.runID+"-"+purpose+".log")
	c, err := startChild("flashsale", b.s.flashsale, []string{"serve"}, childEnv(append([]string{
		"FLASHSALE_HTTP_ADDR=" + addr,
		"FLASHSALE_REDIS_ADDR=" + b.s.redisAddr,
		"FLASHSALE_KEY_PREFIX=" + prefix,
		"FLASHSALE_MYSQL_DSN=" + dsn,
		"FLASHSALE_ADMIN_TOKEN=" + token,
		"FLASHSALE_LOG_LEVEL=warn",
	}, env...)...), logPath, b.log)
	if err != nil {
		return "", "", nil, fmt.Errorf("%w (make build first, or pass -flashsale)", err)
	}
	// Registered now so that an interrupted run still stops the process,
	// deletes its keys and log; stop does the same at once and only once.
	stop = b.cleanup.add(func(ctx context.Context) error {
		err := c.stop()
		_, derr := redisbench.DeleteKeys(ctx, b.redis, prefix)
		if err == nil && derr == nil {
			_ = os.Remove(logPath) // kept when something went wrong
		}
		return errors.Join(err, derr)
	})
	b.svcPID = c.cmd.Process.Pid
	url = "http://" + addr
	if err := c.waitReady(ctx, httpOK(url+"/readyz")); err != nil {
		stop()
		return "", "", nil, err
	}
	return url, token, stop, nil
}

// mysqlRows runs the three approaches at full concurrency on stock that
// does not run out, then the incident itself on the naive one.
func (b *bench) mysqlRows(ctx context.Context, add func(row)) error {
	timed := loadtest.Config{Clients: b.s.clients, Duration: b.s.duration, Progress: b.log}
	for _, m := range []struct {
		name     string
		approach baseline.Approach
		stock    int64
		cfg      loadtest.Config
	}{
		{rowNaive, baseline.Naive, baselineStock, timed},
		{rowForUpdate, baseline.ForUpdate, baselineStock, timed},
		{rowConditional, baseline.Conditional, baselineStock, timed},
		// Every buyer at once, as on 12.12: one request each.
		{rowIncident, baseline.Naive, incidentStock, loadtest.Config{Clients: incidentBuyer, Requests: incidentBuyer}},
	} {
		if !b.s.selected(m.name) {
			continue
		}
		b.start(m.name)
		r := row{Name: m.name}
		if err := b.mysqlRow(ctx, &r, m.approach, m.stock, m.cfg); err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.Failure = err.Error()
		}
		add(r)
	}
	return nil
}

func (b *bench) mysqlRow(ctx context.Context, r *row, a baseline.Approach, stock int64, cfg loadtest.Config) error {
	dsn, err := b.createDB(ctx, r.Name)
	if err != nil {
		return err
	}
	shop, err := baseline.Open(ctx, dsn, a, stock)
	if err != nil {
		return err
	}
	defer shop.Close()
	// The MySQL approaches run inside this process: its CPU is the load
	// generator's and the approach's together, reported as the generator's.
	done := b.measure(ctx, selfSource())
	res, err := loadtest.Run(ctx, cfg, func(ctx context.Context, _ int, seq int64) (string, error) {
		outcome, err := shop.Buy(ctx, "u"+strconv.FormatInt(seq, 10), 1)
		if err != nil {
			return "error", err
		}
		return outcome, nil
	})
	if err != nil {
		return err
	}
	v, err := shop.Verify(ctx)
	if err != nil {
		return err
	}
	r.fromResult(res)
	r.CPU = done()
	r.Oversold = &v.Oversold
	r.Purchases = float64(res.Outcomes[baseline.Purchased]) / res.Elapsed.Seconds()
	// Units the orders promise that the inventory row does not count: sold
	// twice. Below the stock they are invisible; at the end of a sale they
	// are the oversell.
	lost := v.UnitsOrdered - (v.Stock - v.Available)
	r.Detail = fmt.Sprintf("%d buyers, %d units: %d orders", res.Requests, v.Stock, v.Orders)
	if stock == baselineStock {
		r.Detail = fmt.Sprintf("%d purchases", v.Orders)
	}
	if lost != 0 {
		r.Detail += fmt.Sprintf(", %d units sold twice (lost updates)", lost)
		if a != baseline.Naive {
			r.Failure = fmt.Sprintf("%s lost %d updates", a, lost)
		}
	}
	return nil
}

// createDB creates a database of the run's own and returns a DSN for it;
// it is dropped with the run's cleanup.
func (b *bench) createDB(ctx context.Context, purpose string) (string, error) {
	cfg, err := mysql.ParseDSN(b.s.mysqlDSN)
	if err != nil {
		return "", fmt.Errorf("FLASHSALE_BENCH_MYSQL_DSN: %w", err)
	}
	name := "fsbench_" + b.runID + "_" + sanitize(purpose)
	if _, err := b.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	b.cleanup.add(func(ctx context.Context) error {
		if _, err := b.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	})
	cfg.DBName = name
	return cfg.FormatDSN(), nil
}

// sanitize keeps a row name usable in a database name.
func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			out[i] = '_'
		}
	}
	return string(out)
}

// loadAvg is the first three fields of /proc/loadavg, "" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails: it panics instead
	return hex.EncodeToString(b)
}

// cleanups are run once each, last added first, at the end of the run; a
// caller may run one early through the func add returns.
type cleanups struct {
	fns []*cleanupFn
}

type cleanupFn struct {
	fn   func(context.Context) error
	done bool
	err  error
}

func (c *cleanupFn) run(ctx context.Context) error {
	if !c.done {
		c.done = true
		c.err = c.fn(ctx)
	}
	return c.err
}

// add registers fn and returns a func that runs it now (once); its error
// is reported with the run's cleanup.
func (c *cleanups) add(fn func(context.Context) error) func() {
	f := &cleanupFn{fn: fn}
	c.fns = append(c.fns, f)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = f.run(ctx)
	}
}

func (c *cleanups) run(ctx context.Context) error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		errs = append(errs, c.fns[i].run(ctx))
	}
	return errors.Join(errs...)
}
