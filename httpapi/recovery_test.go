package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// lostRecovery is a reservation.Recovery that holds "lost" as recorded and
// lost, and "live" as recorded; recordedErr makes the record unreadable.
type lostRecovery struct{ recordedErr error }

func (f lostRecovery) Recorded(_ context.Context, skus []string) (map[string]bool, error) {
	if f.recordedErr != nil {
		return nil, f.recordedErr
	}
	out := map[string]bool{}
	for _, sku := range skus {
		out[sku] = sku == "lost" || sku == "live"
	}
	return out, nil
}

func (lostRecovery) Lost(_ context.Context, sku string) bool { return sku == "lost" }

// fakeAuditor answers every audit with audit (its SKU set to the one asked)
// or err, and notes the skus it was asked about.
type fakeAuditor struct {
	audit reservation.Audit
	err   error

	mu    sync.Mutex
	asked []string
}

func (f *fakeAuditor) Audit(_ context.Context, sku string) (reservation.Audit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, sku)
	if f.err != nil {
		return reservation.Audit{}, f.err
	}
	au := f.audit
	au.SKU = sku
	return au, nil
}

func (f *fakeAuditor) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

// newRecoveryEnv is a server over a miniredis store with rec as its
// Recovery and cfg's Auditor and Status.
func newRecoveryEnv(t *testing.T, client goredis.UniversalClient, rec reservation.Recovery, cfg httpapi.Config) *env {
	t.Helper()
	store, err := redisstore.New(context.Background(), client, "apitest")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	cfg.AdminTokens, cfg.ServiceTokens = []string{adminToken}, serviceTokens
	cfg.ReadyTimeout, cfg.Log = 2*time.Second, quietLog()
	srv := httpapi.New(reservation.NewService(store, rec), cfg)
	return &env{srv: srv, app: srv.App()}
}

const recoveringDetail = "the store lost this item and it is being rebuilt from the durable record; nothing was changed, retry shortly"

func wantRecovering(t *testing.T, r response) {
	t.Helper()
	wantProblem(t, r, 503, "recovering")
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if r.str("title") != "Item recovering" || r.str("detail") != recoveringDetail ||
		r.str("type") != "urn:flashsale:problem:recovering" {
		t.Errorf("problem %v", r.body)
	}
}

func TestRecovering(t *testing.T) {
	_, client := redistest.Miniredis(t)
	// "live" is recorded and present (seeded before the record knew it):
	// seeding it updates it.
	seed(t, newServer(t, client).App(), "live", `{"stock":5}`)
	e := newRecoveryEnv(t, client, lostRecovery{}, httpapi.Config{})
	id := "lost.AAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name, method, path, body string
		headers                  h
	}{
		{"get item", "GET", "/v1/items/lost", "", nil},
		{"reserve", "POST", "/v1/items/lost/reservations", `{"user_id":"u1","quantity":1}`, nil},
		{"reserve with key", "POST", "/v1/items/lost/reservations", `{"user_id":"u1","quantity":1}`, h{"Idempotency-Key": "k1"}},
		{"get reservation", "GET", "/v1/reservations/" + id, "", nil},
		{"confirm", "POST", "/v1/reservations/" + id + "/confirm", "", service},
		{"cancel", "POST", "/v1/reservations/" + id + "/cancel", "", nil},
		{"seed", "PUT", "/admin/v1/items/lost", `{"stock":5}`, admin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, tc.method, tc.path, tc.body, tc.headers)
			wantRecovering(t, r)
			if r.str("instance") != tc.path {
				t.Errorf("instance %q, want %q", r.str("instance"), tc.path)
			}
		})
	}
	t.Run("the seed refused created nothing", func(t *testing.T) {
		wantRecovering(t, do(t, e.app, "GET", "/v1/items/lost", "", nil))
	})
	t.Run("bulk seed", func(t *testing.T) {
		r := do(t, e.app, "PUT", "/admin/v1/items", bulkBody(`{"sku":"lost","stock":1}`, `{"sku":"fresh","stock":2}`,
			`{"sku":"live","stock":3}`), admin)
		wantOK(t, r, 200)
		res := results(t, r)
		for i, want := range []struct {
			sku, result string
			status      float64
		}{{"lost", "error", 503}, {"fresh", "created", 201}, {"live", "updated", 200}} {
			if got := res[i]; got["sku"] != want.sku || got["result"] != want.result || got["status"] != want.status {
				t.Errorf("results[%d] = %v, want %+v", i, got, want)
			}
		}
		checkProblem(t, res[0]["problem"].(map[string]any), 503, "recovering")
		if d := res[0]["problem"].(map[string]any)["detail"]; d != recoveringDetail {
			t.Errorf("detail %v", d)
		}
	})
	t.Run("an item never recorded is not found", func(t *testing.T) {
		r := do(t, e.app, "GET", "/v1/items/gone", "", nil)
		wantProblem(t, r, 404, "item_not_found")
		if got := r.header.Get("Retry-After"); got != "" {
			t.Errorf("Retry-After %q on a 404", got)
		}
	})
	t.Run("other items serve", func(t *testing.T) {
		reserve(t, e.app, "live", "u1", 1)
		wantItem(t, e.app, "live", counters{Stock: 3, Available: 2, Reserved: 1, PerUserLimit: 1, HoldSeconds: 600})
	})
}

func TestSeedWhenTheRecordIsUnreadable(t *testing.T) {
	_, client := redistest.Miniredis(t)
	e := newRecoveryEnv(t, client, lostRecovery{recordedErr: errors.New("dial tcp 10.0.0.7:3306: connection refused")}, httpapi.Config{})
	for _, tc := range []struct{ name, path, body string }{
		{"seed", "/admin/v1/items/fresh", `{"stock":5}`},
		{"bulk seed", "/admin/v1/items", bulkBody(`{"sku":"fresh","stock":5}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, "PUT", tc.path, tc.body, admin)
			wantProblem(t, r, 503, "unavailable")
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After %q, want 1", got)
			}
			if d := r.str("detail"); d != "the reservation store did not answer; try again later" {
				t.Errorf("detail %q leaks or changed", d)
			}
			wantNoItem(t, e.app, "fresh")
		})
	}
}

func TestAudit(t *testing.T) {
	drifting := reservation.Audit{
		Store:   reservation.Item{Stock: 10, Available: 4, Reserved: 3, Sold: 3},
		Record:  reservation.ItemRecord{ItemSpec: reservation.ItemSpec{Stock: 9}, Rev: 2},
		Counts:  reservation.Counts{Pending: 2, Confirmed: 3, Cancelled: 1, Expired: 4, Rows: 7},
		Backlog: 2,
		Drift:   []string{"stock: redis 10, record 9", "reserved (pending units): redis 3, record 2"},
	}
	inSync := reservation.Audit{
		Store:  reservation.Item{Stock: 5, Available: 5},
		Record: reservation.ItemRecord{ItemSpec: reservation.ItemSpec{Stock: 5}, Rev: 1},
	}
	cases := []struct {
		name      string
		audit     reservation.Audit
		err       error
		path      string
		headers   h
		status    int
		code      string         // problem code, for errors
		want      map[string]any // body, for 200
		wantAsked []string
	}{
		{name: "no token", path: "/admin/v1/items/a/audit", status: 401, code: "unauthorized"},
		{name: "wrong token", path: "/admin/v1/items/a/audit", headers: h{"Authorization": "Bearer nope-nope-nope-nope"},
			status: 401, code: "unauthorized"},
		{name: "bad sku", path: "/admin/v1/items/a*b/audit", headers: admin, status: 400, code: "invalid_request"},
		{name: "sku too long", path: "/admin/v1/items/" + fmt.Sprintf("%065d", 0) + "/audit", headers: admin,
			status: 400, code: "invalid_request"},
		{
			name: "drift", audit: drifting, path: "/admin/v1/items/a/audit", headers: admin, status: 200,
			want: map[string]any{
				"sku": "a", "in_sync": false, "backlog": 2.0,
				"redis": map[string]any{"stock": 10.0, "available": 4.0, "reserved": 3.0, "sold": 3.0},
				"record": map[string]any{"stock": 9.0, "pending_units": 2.0, "confirmed_units": 3.0,
					"cancelled_units": 1.0, "expired_units": 4.0, "reservations": 7.0},
				"drift": []any{"stock: redis 10, record 9", "reserved (pending units): redis 3, record 2"},
			},
			wantAsked: []string{"a"},
		},
		{
			name: "in sync", audit: inSync, path: "/admin/v1/items/b.2_x-y/audit", headers: admin, status: 200,
			want: map[string]any{
				"sku": "b.2_x-y", "in_sync": true, "backlog": 0.0,
				"redis":  map[string]any{"stock": 5.0, "available": 5.0, "reserved": 0.0, "sold": 0.0},
				"record": map[string]any{"stock": 5.0, "pending_units": 0.0, "confirmed_units": 0.0, "cancelled_units": 0.0, "expired_units": 0.0, "reservations": 0.0},
				"drift":  []any{}, // never null
			},
			wantAsked: []string{"b.2_x-y"},
		},
		{
			name: "backlog alone is not in sync", audit: reservation.Audit{Backlog: 1},
			path: "/admin/v1/items/a/audit", headers: admin, status: 200,
			want: map[string]any{
				"sku": "a", "in_sync": false, "backlog": 1.0,
				"redis":  map[string]any{"stock": 0.0, "available": 0.0, "reserved": 0.0, "sold": 0.0},
				"record": map[string]any{"stock": 0.0, "pending_units": 0.0, "confirmed_units": 0.0, "cancelled_units": 0.0, "expired_units": 0.0, "reservations": 0.0},
				"drift":  []any{},
			},
			wantAsked: []string{"a"},
		},
		{name: "the record is unreachable", err: fmt.Errorf("audit: %w: mysql at 10.0.0.7 refused", reservation.ErrUnavailable),
			path: "/admin/v1/items/a/audit", headers: admin, status: 503, code: "unavailable", wantAsked: []string{"a"}},
		{name: "the item is unknown", err: reservation.ErrItemNotFound,
			path: "/admin/v1/items/a/audit", headers: admin, status: 404, code: "item_not_found", wantAsked: []string{"a"}},
		{name: "an unexpected failure", err: errors.New("boom"),
			path: "/admin/v1/items/a/audit", headers: admin, status: 500, code: "internal", wantAsked: []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, client := redistest.Miniredis(t)
			aud := &fakeAuditor{audit: tc.audit, err: tc.err}
			e := newRecoveryEnv(t, client, nil, httpapi.Config{Auditor: aud})
			r := do(t, e.app, "GET", tc.path, "", tc.headers)
			if tc.status != 200 {
				wantProblem(t, r, tc.status, tc.code)
				if tc.status == 503 && r.header.Get("Retry-After") != "1" {
					t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
				}
				if d := r.str("detail"); tc.status >= 500 && (strings.Contains(d, "10.0.0.7") || strings.Contains(d, "boom")) {
					t.Errorf("detail leaks the cause: %q", r.str("detail"))
				}
			} else {
				wantOK(t, r, 200)
				if !reflect.DeepEqual(r.body, tc.want) {
					t.Fatalf("body:\ngot  %v\nwant %v", r.body, tc.want)
				}
			}
			if got := aud.calls(); !slices.Equal(got, tc.wantAsked) {
				t.Fatalf("Auditor asked about %v, want %v", got, tc.wantAsked)
			}
		})
	}
}

func TestAuditWithoutAuditor(t *testing.T) {
	e := newEnv(t)
	wantProblem(t, do(t, e.app, "GET", "/admin/v1/items/a/audit", "", admin), 404, "not_found")
}

func TestReadyzStatus(t *testing.T) {
	type call struct{ hasDeadline bool }
	var (
		mu    sync.Mutex
		calls []call
	)
	status := func(ctx context.Context) map[string]any {
		_, ok := ctx.Deadline()
		mu.Lock()
		calls = append(calls, call{hasDeadline: ok})
		mu.Unlock()
		return map[string]any{
			"sync":       map[string]any{"backlog": 3, "dead": 0, "oldest_ms": 1500},
			"recovering": 2,
		}
	}
	t.Run("ready with detail", func(t *testing.T) {
		_, client := redistest.Miniredis(t)
		e := newRecoveryEnv(t, client, nil, httpapi.Config{Status: status})
		r := do(t, e.app, "GET", "/readyz", "", nil)
		wantOK(t, r, 200)
		want := map[string]any{
			"status":     "ready",
			"sync":       map[string]any{"backlog": 3.0, "dead": 0.0, "oldest_ms": 1500.0},
			"recovering": 2.0,
		}
		if !reflect.DeepEqual(r.body, want) {
			t.Fatalf("body:\ngot  %v\nwant %v", r.body, want)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(calls) != 1 || !calls[0].hasDeadline {
			t.Fatalf("Status calls %+v, want one with the ready deadline", calls)
		}
	})
	t.Run("not ready: no detail asked", func(t *testing.T) {
		mu.Lock()
		calls = nil
		mu.Unlock()
		m := miniredis.RunT(t)
		client := goredis.NewClient(&goredis.Options{Addr: m.Addr(), MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
		t.Cleanup(func() { _ = client.Close() })
		e := newRecoveryEnv(t, client, nil, httpapi.Config{Status: status})
		m.Close()
		wantProblem(t, do(t, e.app, "GET", "/readyz", "", nil), 503, "unavailable")
		mu.Lock()
		defer mu.Unlock()
		if len(calls) != 0 {
			t.Fatalf("Status asked while Redis is down: %+v", calls)
		}
	})
}
