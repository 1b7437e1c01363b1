package prommetrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

var _ httpapi.Metrics = (*prommetrics.Metrics)(nil)

const adminToken = "metrics-test-admin-token"

const reserveRoute = "/v1/items/:sku/reservations"

// fakeSync is a syncer state with every value distinct from the others.
type fakeSync struct {
	stats  persistence.SyncStats
	status persistence.SyncStatus
}

func (f *fakeSync) Stats() *persistence.SyncStats  { return &f.stats }
func (f *fakeSync) Status() persistence.SyncStatus { return f.status }

type fakeRecovery struct{ rebuilding, restored int }

func (f fakeRecovery) Rebuilding() int { return f.rebuilding }
func (f fakeRecovery) Restored() int   { return f.restored }

func newFakeSync() *fakeSync {
	f := &fakeSync{status: persistence.SyncStatus{
		Backlog:   reservation.Backlog{Entries: 7, Oldest: 1500 * time.Millisecond, Dead: 2},
		CheckedAt: time.UnixMilli(1_700_000_000_250),
		DBErr:     errors.New("connection refused"),
	}}
	f.stats.Synced.Store(42)
	f.stats.Batches.Store(5)
	f.stats.Retries.Store(3)
	f.stats.Dead.Store(1)
	return f
}

// stack is the real service in-process: httpapi over reservation.Service
// over redisstore on a miniredis, with the Prometheus metrics wired in.
type stack struct {
	app     *fiber.App
	metrics *prommetrics.Metrics
}

func newStack(t *testing.T) *stack {
	t.Helper()
	_, client := redistest.Miniredis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, "metricstest")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	m := prommetrics.New(prommetrics.Config{
		Items: store, Sync: newFakeSync(), Recovery: fakeRecovery{rebuilding: 1, restored: 4},
	})
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:    []string{adminToken},
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:        m,
		MetricsHandler: m.Handler(),
	})
	return &stack{app: srv.App(), metrics: m}
}

func (s *stack) do(t *testing.T, method, path, body string, header map[string]string) int {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// scrape GETs /metrics and parses the text format.
func (s *stack) scrape(t *testing.T) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := s.app.Test(httptest.NewRequest("GET", "/metrics", nil), -1)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d: %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, raw)
	}
	return families, string(raw)
}

// sample is the value of the series of name with exactly these labels: a
// counter's or gauge's value, a histogram's count. ok is false when the
// series does not exist.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestScrapeAfterLoad(t *testing.T) {
	s := newStack(t)
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if got := s.do(t, "PUT", "/admin/v1/items/tee", `{"stock":5,"per_user_limit":1}`, admin); got != 201 {
		t.Fatalf("seed: %d", got)
	}
	reserve := func(sku, user string, header map[string]string) int {
		return s.do(t, "POST", "/v1/items/"+sku+"/reservations", `{"user_id":"`+user+`","quantity":1}`, header)
	}
	idem := map[string]string{"Idempotency-Key": "order-1"}
	statuses := map[int]int{}
	for i := 1; i <= 8; i++ {
		var h map[string]string
		if i == 1 {
			h = idem
		}
		statuses[reserve("tee", fmt.Sprintf("user%d", i), h)]++
	}
	if statuses[201] != 5 || statuses[409] != 3 {
		t.Fatalf("8 reserves of 5 units: statuses %v, want 5×201 and 3×409", statuses)
	}
	if got := reserve("tee", "user1", idem); got != 200 {
		t.Fatalf("replay: %d", got)
	}
	if got := reserve("ghost", "user1", nil); got != 404 {
		t.Fatalf("unknown sku: %d", got)
	}
	if got := s.do(t, "POST", "/v1/items/tee/reservations", `{"user_id":"user1","quantity":0}`, nil); got != 400 {
		t.Fatalf("invalid: %d", got)
	}
	s.metrics.ObserveBatch(3, 20*time.Millisecond)
	s.metrics.ObserveBatch(5, 30*time.Millisecond)

	families, raw := s.scrape(t)
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"created", "flashsale_reservations_total", []string{"sku", "tee", "outcome", "created"}, 5},
		{"sold out", "flashsale_reservations_total", []string{"sku", "tee", "outcome", "sold_out"}, 3},
		{"replayed", "flashsale_reservations_total", []string{"sku", "tee", "outcome", "replayed"}, 1},
		{"unknown item", "flashsale_reservations_total", []string{"sku", httpapi.UnknownSKU, "outcome", "item_not_found"}, 1},
		{"invalid", "flashsale_reservations_total", []string{"sku", httpapi.UnknownSKU, "outcome", "invalid_request"}, 1},

		{"201s", "flashsale_http_requests_total", []string{"route", reserveRoute, "method", "POST", "code", "201"}, 5},
		{"409s", "flashsale_http_requests_total", []string{"route", reserveRoute, "method", "POST", "code", "409"}, 3},
		{"200s", "flashsale_http_requests_total", []string{"route", reserveRoute, "method", "POST", "code", "200"}, 1},
		{"404s", "flashsale_http_requests_total", []string{"route", reserveRoute, "method", "POST", "code", "404"}, 1},
		{"400s", "flashsale_http_requests_total", []string{"route", reserveRoute, "method", "POST", "code", "400"}, 1},
		{"seed", "flashsale_http_requests_total", []string{"route", "/admin/v1/items/:sku", "method", "PUT", "code", "201"}, 1},
		{"reserve latency count", "flashsale_http_request_duration_seconds", []string{"route", reserveRoute, "method", "POST"}, 11},

		{"available", "flashsale_item_units", []string{"sku", "tee", "state", "available"}, 0},
		{"reserved", "flashsale_item_units", []string{"sku", "tee", "state", "reserved"}, 5},
		{"sold", "flashsale_item_units", []string{"sku", "tee", "state", "sold"}, 0},
		{"catalogue", "flashsale_catalog_items", nil, 1},
		{"redis up", "flashsale_redis_up", nil, 1},

		{"backlog", "flashsale_sync_backlog_entries", nil, 7},
		{"lag", "flashsale_sync_lag_seconds", nil, 1.5},
		{"dead letters", "flashsale_sync_dead_letters", nil, 2},
		{"backlog read at", "flashsale_sync_backlog_read_timestamp_seconds", nil, 1_700_000_000.25},
		{"database down", "flashsale_sync_database_up", nil, 0},
		{"synced", "flashsale_sync_synced_total", nil, 42},
		{"batches", "flashsale_sync_batches_total", nil, 5},
		{"retries", "flashsale_sync_retries_total", nil, 3},
		{"dead lettered", "flashsale_sync_dead_lettered_total", nil, 1},
		{"batch size count", "flashsale_sync_batch_size", nil, 2},
		{"batch duration count", "flashsale_sync_batch_duration_seconds", nil, 2},
		{"rebuilding", "flashsale_recovery_rebuilding_items", nil, 1},
		{"restored", "flashsale_recovery_restored_total", nil, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sample(families, tc.metric, tc.labels...)
			if !ok || got != tc.want {
				t.Errorf("%s%v = %v (present %v), want %v", tc.metric, tc.labels, got, ok, tc.want)
			}
		})
	}
	t.Run("no series for unknown skus", func(t *testing.T) {
		if n := len(families["flashsale_reservations_total"].GetMetric()); n != 5 {
			t.Errorf("%d flashsale_reservations_total series, want the 5 above", n)
		}
		if strings.Contains(raw, "ghost") {
			t.Errorf("the unknown sku appears in the scrape")
		}
		for _, m := range families["flashsale_http_requests_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && strings.Contains(l.GetValue(), "tee") {
					t.Errorf("a raw path as route label: %v", m)
				}
			}
		}
	})
	t.Run("runtime collectors", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
			if families[name] == nil {
				t.Errorf("%s missing", name)
			}
		}
	})
	t.Run("batch size sum", func(t *testing.T) {
		if got := families["flashsale_sync_batch_size"].GetMetric()[0].GetHistogram().GetSampleSum(); got != 8 {
			t.Errorf("batch size sum %v, want 8", got)
		}
	})
}

// failingItems is a store that cannot be read.
type failingItems struct{}

func (failingItems) Counters(context.Context, int) ([]reservation.Item, int, error) {
	return nil, 0, reservation.ErrUnavailable
}

// catalogue is a store of n items that honours the limit like redisstore.
type catalogue struct{ n int }

func (c catalogue) Counters(_ context.Context, limit int) ([]reservation.Item, int, error) {
	items := make([]reservation.Item, min(c.n, limit))
	for i := range items {
		items[i] = reservation.Item{SKU: fmt.Sprintf("sku%03d", i), Stock: 1, Available: 1}
	}
	return items, c.n, nil
}

// TestStateSources: each source adds its metrics, a missing one leaves them
// out, and a store that cannot be read costs only the item metrics.
func TestStateSources(t *testing.T) {
	tests := []struct {
		name        string
		cfg         prommetrics.Config
		wantPresent []string
		wantAbsent  []string
		wantValues  map[string]float64
		wantUnits   int // flashsale_item_units series
	}{
		{
			name:       "no sources",
			wantAbsent: []string{"flashsale_redis_up", "flashsale_sync_backlog_entries", "flashsale_recovery_restored_total"},
		},
		{
			name:        "redis down",
			cfg:         prommetrics.Config{Items: failingItems{}, Sync: newFakeSync(), Recovery: fakeRecovery{}},
			wantPresent: []string{"flashsale_sync_backlog_entries", "flashsale_recovery_restored_total"},
			wantAbsent:  []string{"flashsale_catalog_items", "flashsale_item_units"},
			wantValues:  map[string]float64{"flashsale_redis_up": 0},
		},
		{
			name:       "items capped",
			cfg:        prommetrics.Config{Items: catalogue{n: 12}, MaxItems: 10},
			wantValues: map[string]float64{"flashsale_redis_up": 1, "flashsale_catalog_items": 12},
			wantUnits:  30,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prommetrics.New(tc.cfg).Registry()
			for _, name := range tc.wantPresent {
				if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
					t.Errorf("%s: %d series, %v; want some", name, n, err)
				}
			}
			for _, name := range tc.wantAbsent {
				if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
					t.Errorf("%s: %d series, %v; want none", name, n, err)
				}
			}
			for name, want := range tc.wantValues {
				families, err := reg.Gather()
				if err != nil {
					t.Fatal(err)
				}
				byName := map[string]*dto.MetricFamily{}
				for _, f := range families {
					byName[f.GetName()] = f
				}
				if got, ok := sample(byName, name); !ok || got != want {
					t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
				}
			}
			if n, err := testutil.GatherAndCount(reg, "flashsale_item_units"); err != nil || n != tc.wantUnits {
				t.Errorf("flashsale_item_units: %d series, %v; want %d", n, err, tc.wantUnits)
			}
		})
	}
}

func TestReservationSeriesCapped(t *testing.T) {
	m := prommetrics.New(prommetrics.Config{MaxItems: 2})
	for _, sku := range []string{"a", "b", "c", "d", "a"} {
		m.ObserveReserve(sku, "created")
	}
	m.ObserveReserve("a", "sold_out") // a known SKU keeps its label with a new outcome
	want := `
# HELP flashsale_reservations_total Reservation requests by item and outcome (created, replayed or the problem code). sku is _unknown unless the outcome proves the item exists, _other beyond the item cap.
# TYPE flashsale_reservations_total counter
flashsale_reservations_total{outcome="created",sku="_other"} 2
flashsale_reservations_total{outcome="created",sku="a"} 2
flashsale_reservations_total{outcome="created",sku="b"} 1
flashsale_reservations_total{outcome="sold_out",sku="a"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "flashsale_reservations_total"); err != nil {
		t.Error(err)
	}
}

func TestMetricsLint(t *testing.T) {
	m := prommetrics.New(prommetrics.Config{Items: catalogue{n: 2}, Sync: newFakeSync(), Recovery: fakeRecovery{}})
	m.ObserveRequest(reserveRoute, "POST", 201, time.Millisecond)
	m.ObserveReserve("tee", "created")
	m.ObserveBatch(1, time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "flashsale_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// TestObserveAllocatesNothing: once a label set has been seen, observing
// it again allocates nothing; the reserve route calls both per request.
func TestObserveAllocatesNothing(t *testing.T) {
	m := prommetrics.New(prommetrics.Config{})
	// Labels as the middleware passes them: fresh strings each request.
	route, method, sku := strings.Clone(reserveRoute), strings.Clone("POST"), strings.Clone("tee")
	tests := []struct {
		name string
		f    func()
	}{
		{"request", func() { m.ObserveRequest(route, method, 201, 300*time.Microsecond) }},
		{"reserve", func() { m.ObserveReserve(sku, "created") }},
		{"batch", func() { m.ObserveBatch(500, 20*time.Millisecond) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.f); n != 0 {
				t.Errorf("%v allocations per observation, want 0", n)
			}
		})
	}
}

// BenchmarkObserveReserveRequest is the metrics cost of one reservation
// request: both calls the middleware makes, from every core at once.
func BenchmarkObserveReserveRequest(b *testing.B) {
	m := prommetrics.New(prommetrics.Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveReserve("tee", "created")
			m.ObserveRequest(reserveRoute, "POST", 201, 300*time.Microsecond)
		}
	})
}
