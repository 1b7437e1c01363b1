//go:build fault

// Package faulttest breaks the servers flashsale depends on, under load, and checks that no acknowledged reservation is lost or duplicated and nothing is oversold.
package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/client"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
)

// adminToken is the admin bearer token every instance started here uses.
const adminToken = "faulttest-admin-token-0123"

// serviceToken is the backend token (confirm: payment captured) every
// instance started here accepts.
const serviceToken = "faulttest-service-token-0123"

// holdSeconds is the hold every seeded item gets: long enough that nothing
// expires during a test, so the end check never races the sweeper.
const holdSeconds = 600

// syncGroup is redisstore.SyncGroup, the consumer group of every outbox.
const syncGroup = "flashsale-sync"

// instance is one running flashsale process and the key prefix it uses.
type instance struct {
	*testenv.Service
	Prefix string
}

// startFlashsale starts the real binary against redisAddr and mysqlDSN with
// fast sync and recovery settings and a key prefix of the test's own; extra
// overrides or adds environment variables.
func startFlashsale(t testing.TB, redisAddr, mysqlDSN string, extra map[string]string) *instance {
	t.Helper()
	return startFlashsaleBin(t, testenv.BuildFlashsale(t), redisAddr, mysqlDSN, extra)
}

// startFlashsaleBin is startFlashsale with a binary of the caller's.
func startFlashsaleBin(t testing.TB, bin, redisAddr, mysqlDSN string, extra map[string]string) *instance {
	t.Helper()
	prefix := "ft-" + randomHex(t, 6)
	env := map[string]string{
		"FLASHSALE_REDIS_ADDR":        redisAddr,
		"FLASHSALE_MYSQL_DSN":         mysqlDSN,
		"FLASHSALE_KEY_PREFIX":        prefix,
		"FLASHSALE_ADMIN_TOKEN":       adminToken,
		"FLASHSALE_SERVICE_TOKENS":    serviceToken,
		"FLASHSALE_SYNC_WAIT":         "20ms",
		"FLASHSALE_SYNC_TIMEOUT":      "1s",
		"FLASHSALE_SYNC_CLAIM_IDLE":   "2s",
		"FLASHSALE_SYNC_SCAN":         "200ms",
		"FLASHSALE_RECOVERY_INTERVAL": "200ms",
		"FLASHSALE_RECOVERY_GRACE":    "2500ms",
		"FLASHSALE_LOG_LEVEL":         "warn",
	}
	for k, v := range extra {
		if k == "FLASHSALE_KEY_PREFIX" {
			prefix = v
		}
		env[k] = v
	}
	svc := testenv.StartService(t, bin, env)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("flashsale log (prefix %s):\n%s", prefix, tail(svc.Log(), 60))
		}
	})
	return &instance{Service: svc, Prefix: prefix}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// proxiedDSN starts a proxy in front of the MySQL server dsn names and
// returns it with dsn rewritten to go through it.
func proxiedDSN(t testing.TB, dsn string) (*testenv.Proxy, string) {
	t.Helper()
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	p := testenv.StartProxy(t, cfg.Addr)
	cfg.Addr = p.Addr()
	return p, cfg.FormatDSN()
}

// seed creates or updates sku with a 600 s hold, failing unless 200/201.
func seed(t testing.TB, baseURL, sku string, stock int64, perUserLimit int) {
	t.Helper()
	seedBuckets(t, baseURL, sku, stock, perUserLimit, 1)
}

// seedBuckets is seed with the stock split over buckets.
func seedBuckets(t testing.TB, baseURL, sku string, stock int64, perUserLimit, buckets int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := client.ItemSpec{Stock: stock, PerUserLimit: perUserLimit, HoldSeconds: holdSeconds, Buckets: buckets}
	if _, _, err := apiClient(t, baseURL).Seed(ctx, sku, spec); err != nil {
		t.Fatalf("seed %s: %v", sku, err)
	}
}

// apiClient is the Go client of the service at baseURL with the admin's
// and the payment backend's tokens.
func apiClient(t testing.TB, baseURL string) *client.Client {
	t.Helper()
	c, err := client.New(baseURL, client.WithAdminToken(adminToken), client.WithServiceToken(serviceToken))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// syncStatus is the "sync" part of /readyz.
type syncStatus struct {
	Enabled     bool  `json:"enabled"`
	Backlog     int64 `json:"backlog"`
	LagMS       int64 `json:"lag_ms"`
	DeadLetters int64 `json:"dead_letters"`
	Synced      int64 `json:"synced"`
	Retries     int64 `json:"retries"`
	DatabaseOK  bool  `json:"database_ok"`
}

// readyzSync reads /readyz (whatever its status code) and returns its
// "sync" object.
func readyzSync(ctx context.Context, baseURL string) (syncStatus, error) {
	var out struct {
		Sync syncStatus `json:"sync"`
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/readyz", nil)
	if err != nil {
		return out.Sync, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out.Sync, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out.Sync, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out.Sync, fmt.Errorf("/readyz answered %s: %q: %w", resp.Status, b, err)
	}
	return out.Sync, nil
}

// ---------------------------------------------------------------------------
// Load

// loadResult is what a load saw.
type loadResult struct {
	// Acked maps every reservation that was answered 201 to the last status
	// a 2xx answer reported for it. "" means a confirm or cancel was sent
	// and its outcome could not be learnt (the service did not answer even
	// a GET by the end): the reservation exists, its status is unknown.
	Acked map[string]string
	// Errors counts non-2xx answers by problem code ("sold_out",
	// "unavailable", "recovering", "http_502" when the body has none) and
	// transport errors as "transport".
	Errors   map[string]int
	Requests int
	// Unresolved is how many Acked entries are "".
	Unresolved int
}

// load buys from sku with a number of workers until Stop.
//
// Two contexts drive it: stopping ends the workers' loops (Stop), while
// requests run under hard, cancelled only after Stop has resolved what it
// could (or by the test's cleanup), so that Stop never cuts a request short
// and leaves the service to apply a change the load did not see.
type load struct {
	t          testing.TB
	sku        string
	client     *http.Client
	stopping   context.Context
	stop, hard context.CancelFunc
	hardCtx    context.Context
	wg         sync.WaitGroup

	mu        sync.Mutex
	bases     []string // requests go to each in turn
	next      int      // index into bases of the next request
	acked     map[string]string
	inDoubt   map[string]string // id -> transition sent without a definite answer
	errs      map[string]int
	requests  int
	stopped   bool
	result    loadResult
	firstErrs map[string]string // code -> one example, for messages
	grants    [][2]time.Time    // each 201 of a worker: when its request was sent, when it was answered
}

// startLoad starts workers goroutines, each reserving 1 unit for a fresh
// user and then confirming (1/3), cancelling (1/3) or leaving it (1/3).
func startLoad(t testing.TB, baseURL, sku string, workers int) *load {
	t.Helper()
	stopping, stop := context.WithCancel(context.Background())
	hardCtx, hard := context.WithCancel(context.Background())
	l := &load{
		t:   t,
		sku: sku,
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2, MaxIdleConns: workers * 2},
		},
		stopping:  stopping,
		stop:      stop,
		hardCtx:   hardCtx,
		hard:      hard,
		bases:     []string{baseURL},
		acked:     map[string]string{},
		inDoubt:   map[string]string{},
		errs:      map[string]int{},
		firstErrs: map[string]string{},
	}
	runID := randomHex(t, 3)
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go l.worker(fmt.Sprintf("ft%s-w%d", runID, w))
	}
	t.Cleanup(func() { // a test that fails before Stop leaves no goroutine behind
		stop()
		hard()
		l.wg.Wait()
	})
	return l
}

// SetBase points the load at another instance from its next request on.
func (l *load) SetBase(url string) { l.SetBases(url) }

// SetBases spreads the load's requests round-robin over several instances
// from its next request on, as a load balancer would: a buyer's reserve and
// its confirm or cancel may reach different instances.
func (l *load) SetBases(urls ...string) {
	if len(urls) == 0 {
		l.t.Fatalf("load: SetBases needs at least one URL")
	}
	l.mu.Lock()
	l.bases = append([]string(nil), urls...)
	l.mu.Unlock()
}

func (l *load) baseURL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next = (l.next + 1) % len(l.bases)
	return l.bases[l.next]
}

// AckedCount is how many reservations have been answered 201 so far.
func (l *load) AckedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// FirstGrantAfter returns when the first reservation requested after since
// was granted, and false while there is none. Requested after: a request
// sent before since may be answered after it, from before.
func (l *load) FirstGrantAfter(since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, g := range l.grants {
		if g[0].After(since) && (first.IsZero() || g[1].Before(first)) {
			first = g[1]
		}
	}
	return first, !first.IsZero()
}

// ErrorCounts is a copy of the error counts so far.
func (l *load) ErrorCounts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.errs))
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}

// ErrorExamples returns one example message per error code seen.
func (l *load) ErrorExamples() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.firstErrs))
	for k, v := range l.firstErrs {
		out[k] = v
	}
	return out
}

func (l *load) worker(name string) {
	defer l.wg.Done()
	for n := 0; l.stopping.Err() == nil; n++ {
		user := name + "-" + strconv.Itoa(n)
		body := fmt.Sprintf(`{"user_id":%q,"quantity":1}`, user)
		sent := time.Now()
		status, res, code := l.do(l.hardCtx, http.MethodPost, "/v1/items/"+l.sku+"/reservations", body)
		if status == 0 && code == "" { // cancelled by the cleanup
			return
		}
		if status != http.StatusCreated {
			if status == http.StatusOK { // a replay; we never send idempotency keys
				l.fail("unexpected_200", "reserve answered 200 without an idempotency key")
			}
			pause(l.stopping, status)
			continue
		}
		l.record(res.ID, res.Status)
		l.mu.Lock()
		l.grants = append(l.grants, [2]time.Time{sent, time.Now()})
		l.mu.Unlock()
		switch mathrand.IntN(3) {
		case 0:
			l.transition(res.ID, "confirm", l.stopping)
		case 1:
			l.transition(res.ID, "cancel", l.stopping)
		}
	}
}

// pause backs off a little after a 5xx or a transport error, as a real
// client honouring Retry-After would (shortened).
func pause(ctx context.Context, status int) {
	d := 5 * time.Millisecond
	if status == 0 || status >= 500 {
		d = 50 * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// transition sends confirm or cancel until its outcome is known: a 2xx
// (which names the status) or a 409 that names the state the reservation is
// in. It gives up when until is done, leaving the reservation in doubt.
// Sending the same transition again is what makes the outcome certain: a
// copy that the service applies late can no longer change the state.
func (l *load) transition(id, op string, until context.Context) bool {
	for until.Err() == nil {
		status, res, code := l.do(l.hardCtx, http.MethodPost, "/v1/reservations/"+id+"/"+op, "")
		switch {
		case status >= 200 && status < 300:
			l.record(id, res.Status)
			l.resolve(id)
			return true
		case status == http.StatusConflict && strings.HasPrefix(code, "reservation_"):
			l.record(id, strings.TrimPrefix(code, "reservation_"))
			l.resolve(id)
			return true
		case status == 0 && code == "": // cancelled by the cleanup
			l.doubt(id, op)
			return false
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			// The load's own credentials are wrong: every confirm would be
			// refused and the fault under test never meet a sale.
			l.t.Errorf("load: %s %s: %d %s", op, id, status, code)
			l.resolve(id)
			return true
		case status > 0 && status < 500:
			// A refusal that says nothing about the state and changed
			// nothing (404 would be a lost reservation, which the end
			// check reports).
			l.resolve(id)
			return true
		}
		l.doubt(id, op) // 5xx or transport: it may or may not have happened
		pause(until, status)
	}
	return false
}

func (l *load) record(id, status string) {
	l.mu.Lock()
	l.acked[id] = status
	l.mu.Unlock()
}

func (l *load) doubt(id, op string) {
	l.mu.Lock()
	l.inDoubt[id] = op
	l.mu.Unlock()
}

func (l *load) resolve(id string) {
	l.mu.Lock()
	delete(l.inDoubt, id)
	l.mu.Unlock()
}

func (l *load) fail(code, example string) {
	l.mu.Lock()
	l.errs[code]++
	if _, ok := l.firstErrs[code]; !ok {
		l.firstErrs[code] = example
	}
	l.mu.Unlock()
}

type resJSON struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Code   string `json:"code"`
}

// do sends one request to the current base. It returns the status (0 for
// a transport error), the decoded body and, for a failure, its code; a
// request cut short by the load's own context returns (0, _, "") and is not
// counted.
func (l *load) do(ctx context.Context, method, path, body string) (int, resJSON, string) {
	var res resJSON
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.baseURL()+path, rd)
	if err != nil {
		l.t.Errorf("load: %v", err)
		return 0, res, "bad_request"
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if strings.HasSuffix(path, "/confirm") {
		req.Header.Set("Authorization", "Bearer "+serviceToken)
	}
	resp, err := l.client.Do(req)
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return 0, res, ""
	}
	l.mu.Lock()
	l.requests++
	l.mu.Unlock()
	if err != nil {
		l.fail("transport", method+" "+path+": "+err.Error())
		return 0, res, "transport"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return 0, res, ""
		}
		l.fail("transport", method+" "+path+": read body: "+err.Error())
		return 0, res, "transport"
	}
	_ = json.Unmarshal(b, &res)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if res.ID == "" || res.Status == "" {
			l.fail("bad_body", fmt.Sprintf("%s %s: %s: %q", method, path, resp.Status, b))
			return 0, res, "bad_body"
		}
		return resp.StatusCode, res, ""
	}
	code := res.Code
	if code == "" {
		code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	l.fail(code, fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b)))
	return resp.StatusCode, res, code
}

// Stop ends the load: workers finish the request they are in and stop.
// A confirm or cancel whose outcome is unknown (a transport error or a 5xx)
// is sent again until it is answered, for up to 20 s, so that Acked holds
// each reservation's real status. It returns what the load saw; later calls
// return the same result.
func (l *load) Stop() loadResult {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	if l.stopped {
		defer l.mu.Unlock()
		return l.result
	}
	inDoubt := make(map[string]string, len(l.inDoubt))
	for id, op := range l.inDoubt {
		inDoubt[id] = op
	}
	l.mu.Unlock()

	resolveCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	for id, op := range inDoubt {
		l.transition(id, op, resolveCtx)
	}
	cancel()
	l.hard()

	l.mu.Lock()
	defer l.mu.Unlock()
	r := loadResult{Acked: make(map[string]string, len(l.acked)), Errors: map[string]int{}, Requests: l.requests}
	for id, st := range l.acked {
		r.Acked[id] = st
	}
	for id := range l.inDoubt {
		r.Acked[id] = ""
		r.Unresolved++
	}
	for k, v := range l.errs {
		r.Errors[k] = v
	}
	if len(inDoubt) > 0 || r.Unresolved > 0 {
		l.t.Logf("load: %d confirms/cancels were in doubt at Stop; %d stay unresolved (only their existence is checked)",
			len(inDoubt), r.Unresolved)
	}
	l.stopped, l.result = true, r
	return r
}

// String summarises a load result for logs.
func (r loadResult) String() string {
	byStatus := map[string]int{}
	for _, st := range r.Acked {
		byStatus[st]++
	}
	return fmt.Sprintf("requests=%d acked=%d by_status=%v errors=%v", r.Requests, len(r.Acked), byStatus, r.Errors)
}

// ---------------------------------------------------------------------------
// End checks

// scanKeys lists the keys matching <prefix>:{*}:<suffix>, on every master
// of a cluster.
func scanKeys(ctx context.Context, rdb goredis.UniversalClient, prefix, suffix string) ([]string, error) {
	scan := func(ctx context.Context, c goredis.Cmdable) ([]string, error) {
		var keys []string
		iter := c.Scan(ctx, 0, prefix+":{*}:"+suffix, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return keys, iter.Err()
	}
	cc, ok := rdb.(*goredis.ClusterClient)
	if !ok {
		return scan(ctx, rdb)
	}
	var mu sync.Mutex
	var keys []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		k, err := scan(ctx, c)
		mu.Lock()
		keys = append(keys, k...)
		mu.Unlock()
		return err
	})
	return keys, err
}

// backlog returns the unsynced entries and the entries delivered but not
// acknowledged over every outbox of prefix, and the dead-lettered entries.
func backlog(ctx context.Context, rdb goredis.UniversalClient, prefix string) (entries, pending, dead int64, err error) {
	keys, err := scanKeys(ctx, rdb, prefix, "outbox")
	if err != nil {
		return 0, 0, 0, err
	}
	for _, k := range keys {
		n, err := rdb.XLen(ctx, k).Result()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("XLEN %s: %w", k, err)
		}
		entries += n
		p, err := rdb.XPending(ctx, k, syncGroup).Result()
		switch {
		case err != nil && strings.HasPrefix(err.Error(), "NOGROUP"):
		case err != nil:
			return 0, 0, 0, fmt.Errorf("XPENDING %s: %w", k, err)
		default:
			pending += p.Count
		}
	}
	deadKeys, err := scanKeys(ctx, rdb, prefix, "dead")
	if err != nil {
		return 0, 0, 0, err
	}
	for _, k := range deadKeys {
		n, err := rdb.XLen(ctx, k).Result()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("XLEN %s: %w", k, err)
		}
		dead += n
	}
	return entries, pending, dead, nil
}

// waitDrained polls until every outbox of prefix is empty with nothing
// pending, for at most timeout, and returns how long that took. It fails the
// test with the backlog if it does not drain, and if any entry was parked in
// a dead-letter stream (that change never reached the record).
func waitDrained(t testing.TB, rdb goredis.UniversalClient, prefix string, timeout time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(timeout)
	var entries, pending, dead int64
	var err error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		entries, pending, dead, err = backlog(ctx, rdb, prefix)
		cancel()
		if err == nil && dead > 0 {
			t.Fatalf("waitDrained: %d outbox entries of %s were dead-lettered", dead, prefix)
		}
		if err == nil && entries == 0 && pending == 0 {
			took := time.Since(begin)
			t.Logf("waitDrained: outboxes of %s drained in %v", prefix, took.Round(time.Millisecond))
			return took
		}
		if time.Now().After(deadline) {
			t.Fatalf("waitDrained: outboxes of %s not drained after %v: %d entries, %d pending, %d dead (last error: %v)",
				prefix, timeout, entries, pending, dead, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkOptions relax checkConsistentWith for tests that lose data on
// purpose.
type checkOptions struct {
	// AllowLost accepts acknowledged reservations that neither store holds
	// any more and record rows that Redis does not hold (a Redis that lost
	// its data without AOF).
	AllowLost bool
}

// redisBuckets reads the item's buckets: the item's total stock, the
// buckets' counters added up (units in transit between buckets count as
// available), and every reservation record. Each bucket must keep
// available + reserved + sold == its stock, none negative.
func redisBuckets(ctx context.Context, t testing.TB, rdb goredis.UniversalClient, prefix, sku string,
	problem func(string, ...any)) (stock, available, reserved, sold int64, recs map[string]string) {
	t.Helper()
	head, err := rdb.HGetAll(ctx, prefix+":{"+sku+"}:item").Result()
	if err != nil {
		t.Fatalf("checkConsistent: HGETALL item of %s: %v", sku, err)
	}
	if len(head) == 0 {
		t.Fatalf("checkConsistent: Redis holds no item %s under prefix %s", sku, prefix)
	}
	n, _ := strconv.Atoi(head["buckets"])
	recs = map[string]string{}
	var shares, transit int64
	for _, bucket := range redisstore.Buckets(sku, max(n, 1)) {
		base := prefix + ":{" + bucket + "}:"
		item, err := rdb.HGetAll(ctx, base+"item").Result()
		if err != nil {
			t.Fatalf("checkConsistent: HGETALL %sitem: %v", base, err)
		}
		counter := func(name string) int64 {
			v, err := strconv.ParseInt(item[name], 10, 64)
			if err != nil || v < 0 {
				problem("Redis %sitem field %s = %q is not a count", base, name, item[name])
			}
			return v
		}
		s, a, r, d := counter("stock"), counter("available"), counter("reserved"), counter("sold")
		if a+r+d != s {
			problem("bucket %s: available %d + reserved %d + sold %d != stock %d", bucket, a, r, d, s)
		}
		shares, available, reserved, sold = shares+s, available+a, reserved+r, sold+d
		out, err := rdb.HVals(ctx, base+"xout").Result()
		if err != nil {
			t.Fatalf("checkConsistent: HVALS %sxout: %v", base, err)
		}
		for _, rec := range out {
			parts := strings.Split(rec, "|")
			units, err := strconv.ParseInt(parts[min(1, len(parts)-1)], 10, 64)
			if len(parts) != 3 || err != nil {
				problem("bucket %s: transfer record %q", bucket, rec)
			}
			transit += units
		}
		res, err := rdb.HGetAll(ctx, base+"res").Result()
		if err != nil {
			t.Fatalf("checkConsistent: HGETALL %sres: %v", base, err)
		}
		for id, rec := range res {
			recs[id] = rec
		}
	}
	stock = shares
	if total, err := strconv.ParseInt(head["total"], 10, 64); err == nil {
		stock = total
	}
	if shares+transit != stock {
		problem("buckets hold %d units and %d are in transit, but the item's stock is %d", shares, transit, stock)
	}
	return stock, available + transit, reserved, sold, recs
}

// checkConsistent is the end check of every fault test; see
// checkConsistentWith.
func checkConsistent(t testing.TB, rdb goredis.UniversalClient, prefix, sku, mysqlDSN string, acked map[string]string) {
	t.Helper()
	checkConsistentWith(t, rdb, prefix, sku, mysqlDSN, acked, checkOptions{})
}

type sqlRow struct {
	sku, user, status string
	qty               int64
}

type redisRec struct {
	status, user string
	qty          int64
}

// checkConsistentWith checks, once the outbox has drained:
//   - every acknowledged reservation has exactly one record row, with the
//     status, quantity and user of its Redis record, and the status the
//     buyer was last told (a pending one may since have expired);
//   - Redis and the record hold the same reservations of sku;
//   - no user of the load holds two reservations (a duplicate);
//   - the Redis counters equal the record's sums and add up to the stock,
//     none negative, and the record's item has the same stock;
//   - nothing is oversold.
func checkConsistentWith(t testing.TB, rdb goredis.UniversalClient, prefix, sku, mysqlDSN string, acked map[string]string, opt checkOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Redis: every bucket of the item (one unless it was seeded with more).
	stock, available, reserved, sold, rawRecs := redisBuckets(ctx, t, rdb, prefix, sku, problem)
	recs := make(map[string]redisRec, len(rawRecs))
	for id, s := range rawRecs {
		parts := strings.SplitN(s, "|", 6)
		if len(parts) != 6 {
			problem("Redis record %s = %q: want 6 fields", id, s)
			continue
		}
		q, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			problem("Redis record %s = %q: bad quantity", id, s)
		}
		recs[id] = redisRec{status: parts[0], qty: q, user: parts[5]}
	}

	// The record.
	db, err := sql.Open("mysql", mysqlDSN)
	if err != nil {
		t.Fatalf("checkConsistent: %v", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id, sku, user_id, quantity, status FROM reservations WHERE sku = ?", sku)
	if err != nil {
		t.Fatalf("checkConsistent: query reservations: %v", err)
	}
	sqlRows := map[string]sqlRow{}
	dupIDs := 0
	for rows.Next() {
		var id string
		var r sqlRow
		if err := rows.Scan(&id, &r.sku, &r.user, &r.qty, &r.status); err != nil {
			t.Fatalf("checkConsistent: scan: %v", err)
		}
		if _, ok := sqlRows[id]; ok {
			dupIDs++
			problem("reservation %s has more than one record row", id)
		}
		sqlRows[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("checkConsistent: reservations: %v", err)
	}
	rows.Close()
	var sqlStock int64
	if err := db.QueryRowContext(ctx, "SELECT stock FROM items WHERE sku = ?", sku).Scan(&sqlStock); err != nil {
		problem("record item %s: %v", sku, err)
	} else if sqlStock != stock {
		problem("stock: Redis %d, record %d", stock, sqlStock)
	}

	// Acknowledged reservations.
	lost, missingSQL, missingRedis := 0, 0, 0
	for id, want := range acked {
		row, inSQL := sqlRows[id]
		rec, inRedis := recs[id]
		switch {
		case !inSQL && !inRedis:
			lost++
			if !opt.AllowLost {
				problem("acknowledged reservation %s (last told %q) is in neither Redis nor the record", id, want)
			}
			continue
		case !inSQL:
			missingSQL++
			problem("acknowledged reservation %s (last told %q, Redis %q) has no record row", id, want, rec.status)
			continue
		case !inRedis:
			missingRedis++
			if !opt.AllowLost {
				problem("acknowledged reservation %s (last told %q, record %q) is not in Redis", id, want, row.status)
			}
		}
		switch want {
		case "":
		case "pending":
			if row.status != "pending" && row.status != "expired" {
				problem("reservation %s was last told pending; the record says %s", id, row.status)
			}
		default:
			if row.status != want {
				problem("reservation %s was last told %s; the record says %s", id, want, row.status)
			}
		}
	}

	// Redis and the record hold the same reservations.
	perUser := map[string]int{}
	var sqlPending, sqlConfirmed int64
	for id, row := range sqlRows {
		perUser[row.user]++
		switch row.status {
		case "pending":
			sqlPending += row.qty
		case "confirmed":
			sqlConfirmed += row.qty
		case "cancelled", "expired":
		default:
			problem("record row %s has unknown status %q", id, row.status)
		}
		if row.qty < 1 {
			problem("record row %s has quantity %d", id, row.qty)
		}
		rec, ok := recs[id]
		if !ok {
			if !opt.AllowLost {
				problem("record row %s (%s) is not in Redis", id, row.status)
			}
			continue
		}
		if rec.status != row.status || rec.qty != row.qty || rec.user != row.user {
			problem("reservation %s: Redis %s/%d/%s, record %s/%d/%s", id,
				rec.status, rec.qty, rec.user, row.status, row.qty, row.user)
		}
	}
	var redisPending, redisConfirmed int64
	for id, rec := range recs {
		switch rec.status {
		case "pending":
			redisPending += rec.qty
		case "confirmed":
			redisConfirmed += rec.qty
		}
		if _, ok := sqlRows[id]; !ok {
			problem("Redis reservation %s (%s) has no record row", id, rec.status)
		}
	}
	for user, n := range perUser {
		if n > 1 && strings.HasPrefix(user, "ft") {
			problem("user %s holds %d reservations; the load made one per user", user, n)
		}
	}

	// Counters.
	if stock < 0 || available < 0 || reserved < 0 || sold < 0 {
		problem("negative counter: stock=%d available=%d reserved=%d sold=%d", stock, available, reserved, sold)
	}
	if available+reserved+sold != stock {
		problem("available %d + reserved %d + sold %d != stock %d", available, reserved, sold, stock)
	}
	if reserved != sqlPending {
		problem("Redis reserved %d != record pending units %d", reserved, sqlPending)
	}
	if sold != sqlConfirmed {
		problem("Redis sold %d != record confirmed units %d", sold, sqlConfirmed)
	}
	if reserved != redisPending || sold != redisConfirmed {
		problem("Redis counters reserved=%d sold=%d, Redis records pending=%d confirmed=%d",
			reserved, sold, redisPending, redisConfirmed)
	}
	if sqlPending+sqlConfirmed > stock {
		problem("OVERSOLD: record pending %d + confirmed %d > stock %d", sqlPending, sqlConfirmed, stock)
	}

	t.Logf("checkConsistent %s: stock=%d available=%d reserved=%d sold=%d; %d Redis records, %d record rows, %d acked (lost %d)",
		sku, stock, available, reserved, sold, len(recs), len(sqlRows), len(acked), lost)
	if len(problems) > 0 {
		sort.Strings(problems)
		const show = 30
		more := ""
		if len(problems) > show {
			more = fmt.Sprintf("\n... and %d more", len(problems)-show)
			problems = problems[:show]
		}
		t.Errorf("checkConsistent %s: %d problems (no record row %d, not in Redis %d, lost %d, duplicate ids %d):\n%s%s",
			sku, len(problems), missingSQL, missingRedis, lost, dupIDs, strings.Join(problems, "\n"), more)
	}
}

// errorsExcept returns the error codes in errs other than allowed.
func errorsExcept(errs map[string]int, allowed ...string) map[string]int {
	out := map[string]int{}
	for k, v := range errs {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			out[k] = v
		}
	}
	return out
}
