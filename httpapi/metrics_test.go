package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/reservation"
)

// outcomeStore answers Reserve by SKU, so one server shows every outcome
// without Redis and without allocations of its own. Only Reserve is used.
type outcomeStore struct{ reservation.Store }

func (outcomeStore) Reserve(_ context.Context, req reservation.ReserveRequest) (reservation.Reservation, bool, error) {
	r := reservation.Reservation{ID: req.ID, SKU: req.SKU, UserID: req.UserID, Quantity: req.Quantity,
		Status: reservation.StatusPending}
	switch req.SKU {
	case "sold":
		return reservation.Reservation{}, false, reservation.ErrSoldOut
	case "gone":
		return reservation.Reservation{}, false, reservation.ErrItemNotFound
	case "down":
		return reservation.Reservation{}, false, reservation.ErrUnavailable
	case "again":
		r.ID = req.SKU + ".earlier" // the store's own earlier hold: a replay
		return r, true, nil
	}
	return r, false, nil
}

type observedRequest struct {
	route, method string
	status        int
}

type observedReserve struct{ sku, outcome string }

// recordingMetrics keeps every observation; app.Test runs handlers on
// another goroutine, hence the lock.
type recordingMetrics struct {
	mu       sync.Mutex
	requests []observedRequest
	reserves []observedReserve
}

func (m *recordingMetrics) ObserveRequest(route, method string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d <= 0 {
		panic("non-positive request duration")
	}
	m.requests = append(m.requests, observedRequest{strings.Clone(route), strings.Clone(method), status})
}

func (m *recordingMetrics) ObserveReserve(sku, outcome string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserves = append(m.reserves, observedReserve{strings.Clone(sku), strings.Clone(outcome)})
}

func (m *recordingMetrics) take() ([]observedRequest, []observedReserve) {
	m.mu.Lock()
	defer m.mu.Unlock()
	req, res := m.requests, m.reserves
	m.requests, m.reserves = nil, nil
	return req, res
}

// nopMetrics costs nothing, so allocation counts measure the middleware.
type nopMetrics struct{}

func (nopMetrics) ObserveRequest(string, string, int, time.Duration) {}
func (nopMetrics) ObserveReserve(string, string)                     {}

func metricsServer(t *testing.T, m httpapi.Metrics) *httpapi.Server {
	t.Helper()
	cfg := httpapi.Config{AdminTokens: []string{adminToken}, Log: quietLog()}
	if m != nil {
		cfg.Metrics = m
	}
	return httpapi.New(reservation.NewService(outcomeStore{}, nil), cfg)
}

const reserveBody = `{"user_id":"u1","quantity":1}`

func TestMetricsMiddlewareObserves(t *testing.T) {
	rec := &recordingMetrics{}
	app := metricsServer(t, rec).App()
	const reserveRoute = "/v1/items/:sku/reservations"
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		auth        bool
		wantStatus  int
		wantCode    string // problem code; "" for success
		wantRoute   string
		wantReserve *observedReserve
	}{
		{"created", "POST", "/v1/items/tee/reservations", reserveBody, false, 201, "", reserveRoute,
			&observedReserve{"tee", "created"}},
		{"replayed", "POST", "/v1/items/again/reservations", reserveBody, false, 200, "", reserveRoute,
			&observedReserve{"again", "replayed"}},
		{"sold out names the item", "POST", "/v1/items/sold/reservations", reserveBody, false, 409, "sold_out", reserveRoute,
			&observedReserve{"sold", "sold_out"}},
		{"unknown item is not a label", "POST", "/v1/items/gone/reservations", reserveBody, false, 404, "item_not_found", reserveRoute,
			&observedReserve{httpapi.UnknownSKU, "item_not_found"}},
		{"invalid body is not a label", "POST", "/v1/items/tee/reservations", `{"user_id":"u1","quantity":0}`, false, 400, "invalid_request", reserveRoute,
			&observedReserve{httpapi.UnknownSKU, "invalid_request"}},
		{"unavailable is not a label", "POST", "/v1/items/down/reservations", reserveBody, false, 503, "unavailable", reserveRoute,
			&observedReserve{httpapi.UnknownSKU, "unavailable"}},
		{"other routes count no reservation", "GET", "/healthz", "", false, 200, "", "/healthz", nil},
		{"unknown path is labelled by the prefix that answered", "GET", "/no/such/path", "", false, 404, "not_found", "/", nil},
		{"admin refusal is labelled by its group", "PUT", "/admin/v1/items/tee", `{"stock":1}`, false, 401, "unauthorized", "/admin/v1", nil},
		{"body too large is refused before any route, unread", "POST", "/v1/items/tee/reservations",
			`{"user_id":"` + strings.Repeat("u", 5000) + `","quantity":1}`, false, 413, "payload_too_large", "/", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := httptest.NewRequest(tc.method, tc.path, body)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := serve(app, req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, raw)
			}
			if tc.wantCode != "" {
				// The middleware writes problem documents itself: they must
				// be the error handler's, request id included.
				var doc map[string]any
				if err := json.Unmarshal(raw, &doc); err != nil {
					t.Fatalf("problem body: %v: %s", err, raw)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q", ct)
				}
				if doc["code"] != tc.wantCode || doc["request_id"] != resp.Header.Get("X-Request-ID") {
					t.Errorf("problem %v, want code %s and the X-Request-ID", doc, tc.wantCode)
				}
			}
			requests, reserves := rec.take()
			want := observedRequest{tc.wantRoute, tc.method, tc.wantStatus}
			if len(requests) != 1 || requests[0] != want {
				t.Errorf("requests observed %v, want [%v]", requests, want)
			}
			switch {
			case tc.wantReserve == nil && len(reserves) != 0:
				t.Errorf("reservations observed %v, want none", reserves)
			case tc.wantReserve != nil && (len(reserves) != 1 || reserves[0] != *tc.wantReserve):
				t.Errorf("reservations observed %v, want [%v]", reserves, *tc.wantReserve)
			}
		})
	}
}

// TestMetricsMiddlewareAllocatesNothing serves the same request through
// the same handler with and without the middleware: the reserve route is
// the hot path, and the middleware may not add an allocation to it.
func TestMetricsMiddlewareAllocatesNothing(t *testing.T) {
	with := metricsServer(t, nopMetrics{}).App().Handler()
	without := metricsServer(t, nil).App().Handler()
	tests := []struct {
		name, method, path, body string
		wantStatus               int
	}{
		{"created", "POST", "/v1/items/tee/reservations", reserveBody, 201},
		{"sold out", "POST", "/v1/items/sold/reservations", reserveBody, 409},
		{"unknown item", "POST", "/v1/items/gone/reservations", reserveBody, 404},
		{"health", "GET", "/healthz", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.SetRequestURI(tc.path)
			if tc.body != "" {
				ctx.Request.Header.SetContentType("application/json")
				ctx.Request.SetBodyString(tc.body)
			}
			serve := func(h fasthttp.RequestHandler) func() {
				return func() {
					ctx.Response.Reset()
					h(&ctx)
					if got := ctx.Response.StatusCode(); got != tc.wantStatus {
						t.Fatalf("status %d, want %d: %s", got, tc.wantStatus, ctx.Response.Body())
					}
				}
			}
			base, got := allocsPerRun(2000, serve(without)), allocsPerRun(2000, serve(with))
			// One allocation per request shows as +1.0. The slack absorbs the
			// race detector's random sync.Pool drops (Fiber pools its Ctx),
			// which move both counts by a few hundredths on average.
			if got > base+0.5 {
				t.Errorf("%.2f allocations per request with the metrics middleware, %.2f without", got, base)
			}
		})
	}
}

// allocsPerRun is testing.AllocsPerRun without its rounding down to whole
// allocations, which would turn the race detector's noise into ±1.
func allocsPerRun(runs int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up: first-time series, pools
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}
