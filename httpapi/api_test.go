package httpapi_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gofiber/fiber/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/contract"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

const adminToken = "s3cret-admin-token"

// serviceTokens are the payment backend's tokens, for confirm: two, as
// during a rotation.
var serviceTokens = []string{"s3cret-service-token-old", "s3cret-service-token-new"}

// env is one server over the real redisstore on a miniredis whose clock the
// test moves.
type env struct {
	m     *miniredis.Miniredis
	srv   *httpapi.Server
	app   *fiber.App
	store *redisstore.Store // set where a test counts Redis's commands
	// limiter, where one is on, owes Redis charges a few milliseconds
	// after a request: a test counting commands flushes it first.
	limiter *redisstore.LocalLimiter
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// miniStore is a store under prefix on a miniredis of the test's own.
func miniStore(t *testing.T, prefix string, opts ...redisstore.Option) (*miniredis.Miniredis, *redisstore.Store) {
	t.Helper()
	m, client := redistest.Miniredis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, prefix, opts...)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return m, store
}

func newServer(t *testing.T, client goredis.UniversalClient) *httpapi.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, "apitest")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	return httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:   []string{adminToken},
		ServiceTokens: serviceTokens,
		ReadyTimeout:  2 * time.Second,
		Log:           quietLog(),
	})
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m, client := redistest.Miniredis(t)
	srv := newServer(t, client)
	return &env{m: m, srv: srv, app: srv.App()}
}

// downEnv is a server whose Redis has gone away after the store started.
func downEnv(t *testing.T) *env {
	t.Helper()
	m := miniredis.RunT(t)
	client := goredis.NewClient(&goredis.Options{Addr: m.Addr(), MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	srv := newServer(t, client)
	m.Close()
	return &env{m: m, srv: srv, app: srv.App()}
}

// h is a request's extra headers. A key mapped to "" is sent with an empty
// value; Content-Type defaults to application/json when there is a body.
type h map[string]string

var admin = h{"Authorization": "Bearer " + adminToken}

// service is the payment backend's credential, which confirm needs.
var service = h{"Authorization": "Bearer " + serviceTokens[0]}

func (hd h) with(k, v string) h {
	out := h{}
	for kk, vv := range hd {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// response is what the tests look at: status, headers, the raw body and the
// body decoded as a JSON object (nil when it is not one).
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r response) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (r response) num(key string) float64 {
	n, _ := r.body[key].(float64)
	return n
}

// do sends one request through app.Test.
func do(t *testing.T, app *fiber.App, method, path, body string, headers h) response {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if _, ok := headers["Content-Type"]; !ok && body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	res, err := serve(app, req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	// Checked when the test ends, so that the tests that time what the
	// service does (a sold-out memory of 50 ms) time the service alone.
	// Routes a test adds to the app (a handler that panics) are not the API.
	if !strings.HasPrefix(path, "/test-only/") {
		status, header := res.StatusCode, res.Header
		t.Cleanup(func() {
			if err := contract.MustLoad(t).Check(req, []byte(body), status, header, raw); err != nil {
				t.Errorf("contract: %v", err)
			}
		})
	}
	out := response{status: res.StatusCode, header: res.Header, raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return out
}

// serve is app.Test, but over a pipe for a body larger than the small
// limit: fasthttp may refuse it by its length, answering and then closing
// the connection, and app.Test reports the close, not the answer.
func serve(app *fiber.App, req *http.Request) (*http.Response, error) {
	if req.ContentLength > 4<<10 {
		return overPipe(app, req)
	}
	return app.Test(req, -1)
}

// overPipe serves req on an in-memory connection and reads what the server
// answered, however the connection ended.
func overPipe(app *fiber.App, req *http.Request) (*http.Response, error) {
	pc := fasthttputil.NewPipeConns()
	defer pc.Close()
	go func() { _ = app.Server().ServeConn(pc.Conn1()) }()
	go func() { _ = req.Write(pc.Conn2()) }() // may stop early: the server need not read it all
	res, err := http.ReadResponse(bufio.NewReader(pc.Conn2()), req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(raw))
	return res, err
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.raw)
	}
}

// wantOK checks a success: the status and a JSON body.
func wantOK(t *testing.T, r response, status int) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if r.body == nil {
		t.Fatalf("body is not a JSON object: %s", r.raw)
	}
}

// wantProblem checks an RFC 9457 problem document with the given status and
// stable code.
func wantProblem(t *testing.T, r response, status int, code string) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	checkProblem(t, r.body, status, code)
}

// checkProblem checks a problem document's fields: type, title, detail and
// code non-empty, status equal to the HTTP status, and the expected code.
func checkProblem(t *testing.T, p map[string]any, status int, code string) {
	t.Helper()
	if p == nil {
		t.Fatalf("problem body is not a JSON object")
	}
	for _, f := range []string{"type", "title", "detail", "code"} {
		if s, ok := p[f].(string); !ok || s == "" {
			t.Errorf("problem field %q = %#v, want a non-empty string (problem %v)", f, p[f], p)
		}
	}
	if got, ok := p["status"].(float64); !ok || int(got) != status {
		t.Errorf("problem status = %#v, want %d", p["status"], status)
	}
	if p["code"] != code {
		t.Errorf("problem code = %#v, want %q (detail %v)", p["code"], code, p["detail"])
	}
}

// counters are an item's numbers that a refused request must not move.
type counters struct {
	Stock, Available, Reserved, Sold int64
	PerUserLimit, HoldSeconds        int64
}

func getItem(t *testing.T, app *fiber.App, sku string) counters {
	t.Helper()
	r := do(t, app, "GET", "/v1/items/"+sku, "", nil)
	wantOK(t, r, 200)
	c := counters{
		Stock: int64(r.num("stock")), Available: int64(r.num("available")),
		Reserved: int64(r.num("reserved")), Sold: int64(r.num("sold")),
		PerUserLimit: int64(r.num("per_user_limit")), HoldSeconds: int64(r.num("hold_seconds")),
	}
	if c.Available+c.Reserved+c.Sold != c.Stock {
		t.Fatalf("item %s: available+reserved+sold != stock: %+v", sku, c)
	}
	return c
}

func wantItem(t *testing.T, app *fiber.App, sku string, want counters) {
	t.Helper()
	if got := getItem(t, app, sku); got != want {
		t.Fatalf("item %s = %+v, want %+v", sku, got, want)
	}
}

func wantNoItem(t *testing.T, app *fiber.App, sku string) {
	t.Helper()
	wantProblem(t, do(t, app, "GET", "/v1/items/"+sku, "", nil), 404, "item_not_found")
}

func seed(t *testing.T, app *fiber.App, sku, body string) response {
	t.Helper()
	r := do(t, app, "PUT", "/admin/v1/items/"+sku, body, admin)
	if r.status != 201 && r.status != 200 {
		t.Fatalf("seed %s: status %d: %s", sku, r.status, r.raw)
	}
	return r
}

func reserve(t *testing.T, app *fiber.App, sku, user string, qty int) string {
	t.Helper()
	r := do(t, app, "POST", "/v1/items/"+sku+"/reservations",
		fmt.Sprintf(`{"user_id":%q,"quantity":%d}`, user, qty), nil)
	wantOK(t, r, 201)
	return r.str("id")
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %q is not RFC 3339: %v", s, err)
	}
	return at
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	r := do(t, e.app, "GET", "/healthz", "", nil)
	wantOK(t, r, 200)
	r = do(t, e.app, "GET", "/readyz", "", nil)
	wantOK(t, r, 200)
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-ID on the response")
	}
}

// TestUnavailable: with Redis gone every call that needs it is 503
// unavailable, and the liveness probe still answers.
func TestUnavailable(t *testing.T) {
	e := downEnv(t)
	id := "sku1.AAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name, method, path, body string
		headers                  h
	}{
		{"readyz", "GET", "/readyz", "", nil},
		{"reserve", "POST", "/v1/items/sku1/reservations", `{"user_id":"u1","quantity":1}`, nil},
		{"reserve with key", "POST", "/v1/items/sku1/reservations", `{"user_id":"u1","quantity":1}`, h{"Idempotency-Key": "k1"}},
		{"get item", "GET", "/v1/items/sku1", "", nil},
		{"get reservation", "GET", "/v1/reservations/" + id, "", nil},
		{"confirm", "POST", "/v1/reservations/" + id + "/confirm", "", service},
		{"cancel", "POST", "/v1/reservations/" + id + "/cancel", "", nil},
		{"seed", "PUT", "/admin/v1/items/sku1", `{"stock":5}`, admin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, tc.method, tc.path, tc.body, tc.headers)
			wantProblem(t, r, 503, "unavailable")
			// The cause (the store's address, the adapter's words) is for
			// the logs only.
			if d := r.str("detail"); strings.Contains(d, "127.0.0.1") || strings.Contains(d, "redis") || strings.Contains(d, "dial") {
				t.Errorf("detail leaks the cause: %q", d)
			}
		})
	}
	t.Run("bulk seed", func(t *testing.T) {
		// Nothing could be applied: one 503, not a 200 listing it per item.
		r := do(t, e.app, "PUT", "/admin/v1/items", `{"items":[{"sku":"a","stock":1},{"sku":"b","stock":2}]}`, admin)
		wantProblem(t, r, 503, "unavailable")
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After = %q, want 1", got)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		wantOK(t, do(t, e.app, "GET", "/healthz", "", nil), 200)
	})
}

func TestAdminAuth(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "held", `{"stock":3}`)
	before := getItem(t, e.app, "held")
	for _, tc := range []struct {
		name string
		auth *string
	}{
		{"missing", nil},
		{"empty", ptr("")},
		{"wrong token", ptr("Bearer nope")},
		{"token prefix", ptr("Bearer " + adminToken[:len(adminToken)-1])},
		{"token with suffix", ptr("Bearer " + adminToken + "x")},
		{"basic scheme", ptr("Basic " + adminToken)},
		{"token without scheme", ptr(adminToken)},
		{"scheme without token", ptr("Bearer")},
		{"scheme and space", ptr("Bearer ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hd := h{}
			if tc.auth != nil {
				hd["Authorization"] = *tc.auth
			}
			for _, req := range []struct{ path, body string }{
				{"/admin/v1/items/held", `{"stock":100}`},
				{"/admin/v1/items/fresh", `{"stock":100}`},
				{"/admin/v1/items", `{"items":[{"sku":"held","stock":100},{"sku":"fresh","stock":1}]}`},
			} {
				r := do(t, e.app, "PUT", req.path, req.body, hd)
				wantProblem(t, r, 401, "unauthorized")
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: WWW-Authenticate %q", req.path, r.header.Get("WWW-Authenticate"))
				}
			}
			wantItem(t, e.app, "held", before)
			wantNoItem(t, e.app, "fresh")
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSeedItem(t *testing.T) {
	e := newEnv(t)

	r := do(t, e.app, "PUT", "/admin/v1/items/SKU-1.a_b", `{"stock":10}`, admin)
	wantOK(t, r, 201)
	for k, want := range map[string]any{
		"sku": "SKU-1.a_b", "name": "", "stock": 10.0, "available": 10.0, "reserved": 0.0, "sold": 0.0,
		"per_user_limit": 1.0, "hold_seconds": 600.0, "starts_at": nil, "ends_at": nil,
	} {
		if got, ok := r.body[k]; !ok || got != want {
			t.Errorf("created item %s = %#v, want %#v", k, got, want)
		}
	}

	body := `{"stock":20,"per_user_limit":3,"hold_seconds":30,"name":"Red shoes",
		"starts_at":"2020-01-01T00:00:00+02:00","ends_at":"2999-01-01T00:00:00.123Z"}`
	r = do(t, e.app, "PUT", "/admin/v1/items/SKU-1.a_b", body, admin)
	wantOK(t, r, 200)
	if r.str("name") != "Red shoes" || r.num("per_user_limit") != 3 || r.num("hold_seconds") != 30 {
		t.Errorf("updated item: %s", r.raw)
	}
	if got := parseTime(t, r.str("starts_at")); !got.Equal(time.Date(2019, 12, 31, 22, 0, 0, 0, time.UTC)) {
		t.Errorf("starts_at = %v", got)
	}
	if got := parseTime(t, r.str("ends_at")); !got.Equal(time.Date(2999, 1, 1, 0, 0, 0, 123e6, time.UTC)) {
		t.Errorf("ends_at = %v", got)
	}
	wantItem(t, e.app, "SKU-1.a_b", counters{Stock: 20, Available: 20, PerUserLimit: 3, HoldSeconds: 30})

	g := do(t, e.app, "GET", "/v1/items/SKU-1.a_b", "", nil)
	wantOK(t, g, 200)
	for _, k := range []string{"sku", "name", "stock", "available", "reserved", "sold",
		"per_user_limit", "hold_seconds", "starts_at", "ends_at"} {
		if _, ok := g.body[k]; !ok {
			t.Errorf("GET item lacks %q: %s", k, g.raw)
		}
	}
	if g.str("starts_at") != r.str("starts_at") || g.str("ends_at") != r.str("ends_at") {
		t.Errorf("GET item window %s..%s, PUT answered %s..%s",
			g.str("starts_at"), g.str("ends_at"), r.str("starts_at"), r.str("ends_at"))
	}

	// Dropping the window on update clears it.
	r = do(t, e.app, "PUT", "/admin/v1/items/SKU-1.a_b", `{"stock":20}`, admin)
	wantOK(t, r, 200)
	if r.body["starts_at"] != nil || r.body["ends_at"] != nil || r.num("per_user_limit") != 1 {
		t.Errorf("update without window/limit: %s", r.raw)
	}

	t.Run("bounds accepted", func(t *testing.T) {
		for i, body := range []string{
			`{"stock":0}`,
			`{"stock":1000000000,"per_user_limit":1000,"hold_seconds":86400}`,
			`{"stock":1,"per_user_limit":1,"hold_seconds":1}`,
			`{"stock":1,"name":"` + strings.Repeat("n", 200) + `"}`,
			`{"stock":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-01T00:00:00.001Z"}`,
			`{"stock":1,"starts_at":"1970-01-01T00:00:00Z","ends_at":"9999-12-31T23:59:59Z"}`,
		} {
			sku := fmt.Sprintf("bound-%d", i)
			wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/"+sku, body, admin), 201)
		}
	})

	t.Run("charset parameter", func(t *testing.T) {
		r := do(t, e.app, "PUT", "/admin/v1/items/cs", `{"stock":1}`,
			admin.with("Content-Type", "application/json; charset=utf-8"))
		wantOK(t, r, 201)
	})

	t.Run("body of exactly 4 KiB", func(t *testing.T) {
		body := `{"stock":7}`
		body += strings.Repeat(" ", 4096-len(body))
		wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/four-k", body, admin), 201)
		wantItem(t, e.app, "four-k", counters{Stock: 7, Available: 7, PerUserLimit: 1, HoldSeconds: 600})
	})
}

// TestSeedRefused: every refusal of PUT /admin/v1/items/{sku} leaves an
// existing item as it was and creates no new one.
func TestSeedRefused(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "it", `{"stock":10,"per_user_limit":2,"hold_seconds":60}`)
	reserve(t, e.app, "it", "u1", 2)
	before := getItem(t, e.app, "it")

	big := `{"stock":1,"name":"` + strings.Repeat("x", 4096) + `"}`
	for i, tc := range []struct {
		name, body string
		headers    h
		status     int
		code       string
	}{
		{"text/plain", `{"stock":1}`, admin.with("Content-Type", "text/plain"), 415, "unsupported_media_type"},
		{"no content type", `{"stock":1}`, admin.with("Content-Type", ""), 415, "unsupported_media_type"},
		{"form content type", `stock=1`, admin.with("Content-Type", "application/x-www-form-urlencoded"), 415, "unsupported_media_type"},
		{"4 KiB + 1", (`{"stock":1}` + strings.Repeat(" ", 4096))[:4097], admin, 413, "payload_too_large"},
		{"far too large", big, admin, 413, "payload_too_large"},
		{"empty body", "", admin, 400, "invalid_request"},
		{"unknown field", `{"stock":1,"colour":"red"}`, admin, 400, "invalid_request"},
		{"sku in body", `{"stock":1,"sku":"it"}`, admin, 400, "invalid_request"},
		{"malformed JSON", `{"stock":1`, admin, 400, "invalid_request"},
		{"not JSON", `stock=1`, admin, 400, "invalid_request"},
		{"trailing garbage", `{"stock":1} x`, admin, 400, "invalid_request"},
		{"two values", `{"stock":1}{"stock":2}`, admin, 400, "invalid_request"},
		{"array", `[{"stock":1}]`, admin, 400, "invalid_request"},
		{"stock missing", `{"per_user_limit":1}`, admin, 400, "invalid_request"},
		{"stock null", `{"stock":null}`, admin, 400, "invalid_request"},
		{"stock string", `{"stock":"5"}`, admin, 400, "invalid_request"},
		{"stock fraction", `{"stock":1.5}`, admin, 400, "invalid_request"},
		{"stock -1", `{"stock":-1}`, admin, 400, "invalid_request"},
		{"stock 1000000001", `{"stock":1000000001}`, admin, 400, "invalid_request"},
		{"stock overflows int64", `{"stock":99999999999999999999}`, admin, 400, "invalid_request"},
		{"per_user_limit 0", `{"stock":1,"per_user_limit":0}`, admin, 400, "invalid_request"},
		{"per_user_limit 1001", `{"stock":1,"per_user_limit":1001}`, admin, 400, "invalid_request"},
		{"per_user_limit -1", `{"stock":1,"per_user_limit":-1}`, admin, 400, "invalid_request"},
		{"hold_seconds 0", `{"stock":1,"hold_seconds":0}`, admin, 400, "invalid_request"},
		{"hold_seconds 86401", `{"stock":1,"hold_seconds":86401}`, admin, 400, "invalid_request"},
		{"hold_seconds string", `{"stock":1,"hold_seconds":"60"}`, admin, 400, "invalid_request"},
		{"starts_at not a time", `{"stock":1,"starts_at":"tomorrow"}`, admin, 400, "invalid_request"},
		{"starts_at date only", `{"stock":1,"starts_at":"2026-01-01"}`, admin, 400, "invalid_request"},
		{"starts_at no zone", `{"stock":1,"starts_at":"2026-01-01T00:00:00"}`, admin, 400, "invalid_request"},
		{"starts_at month 13", `{"stock":1,"starts_at":"2026-13-01T00:00:00Z"}`, admin, 400, "invalid_request"},
		{"starts_at number", `{"stock":1,"starts_at":1767225600}`, admin, 400, "invalid_request"},
		{"ends_at not a time", `{"stock":1,"ends_at":"soon"}`, admin, 400, "invalid_request"},
		{"ends_at equals starts_at", `{"stock":1,"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-01T01:00:00+01:00"}`, admin, 400, "invalid_request"},
		{"ends_at before starts_at", `{"stock":1,"starts_at":"2026-01-02T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"}`, admin, 400, "invalid_request"},
		{"starts_at before 1970", `{"stock":1,"starts_at":"1969-12-31T23:59:59Z"}`, admin, 400, "invalid_request"},
		{"starts_at before 1970 in UTC", `{"stock":1,"starts_at":"1970-01-01T00:30:00+01:00"}`, admin, 400, "invalid_request"},
		{"ends_at after 9999 in UTC", `{"stock":1,"ends_at":"9999-12-31T23:00:00-05:00"}`, admin, 400, "invalid_request"},
		{"name 201 bytes", `{"stock":1,"name":"` + strings.Repeat("n", 201) + `"}`, admin, 400, "invalid_request"},
		{"name not a string", `{"stock":1,"name":5}`, admin, 400, "invalid_request"},
		{"name with NUL", `{"stock":1,"name":"a\u0000b"}`, admin, 400, "invalid_request"},
		{"stock below committed", `{"stock":1}`, admin, 409, "stock_below_committed"},
	} {
		fresh := fmt.Sprintf("new-%d", i)
		t.Run(tc.name, func(t *testing.T) {
			for _, sku := range []string{"it", fresh} {
				r := do(t, e.app, "PUT", "/admin/v1/items/"+sku, tc.body, tc.headers)
				if sku == fresh && tc.code == "stock_below_committed" {
					wantOK(t, r, 201) // nothing is committed on a new item
					continue
				}
				wantProblem(t, r, tc.status, tc.code)
				wantNoItem(t, e.app, fresh)
			}
			wantItem(t, e.app, "it", before)
		})
	}

	t.Run("bad path sku", func(t *testing.T) {
		for _, path := range []string{
			"/admin/v1/items/" + strings.Repeat("s", 65),
			"/admin/v1/items/bad%21sku",
			"/admin/v1/items/bad%20sku",
			"/admin/v1/items/bad%7Bsku%7D",
		} {
			r := do(t, e.app, "PUT", path, `{"stock":1}`, admin)
			wantProblem(t, r, 400, "invalid_request")
		}
		// 64 characters is still a SKU.
		wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/"+strings.Repeat("s", 64), `{"stock":1}`, admin), 201)
	})
}

func TestStockBelowCommitted(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "shoe", `{"stock":10,"per_user_limit":5}`)
	reserve(t, e.app, "shoe", "a", 3)
	sold := reserve(t, e.app, "shoe", "b", 2)
	wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+sold+"/confirm", "", service), 200)
	want := counters{Stock: 10, Available: 5, Reserved: 3, Sold: 2, PerUserLimit: 5, HoldSeconds: 600}
	wantItem(t, e.app, "shoe", want)

	r := do(t, e.app, "PUT", "/admin/v1/items/shoe", `{"stock":4,"per_user_limit":7}`, admin)
	wantProblem(t, r, 409, "stock_below_committed")
	wantItem(t, e.app, "shoe", want)

	r = do(t, e.app, "PUT", "/admin/v1/items/shoe", `{"stock":5,"per_user_limit":5}`, admin)
	wantOK(t, r, 200)
	wantItem(t, e.app, "shoe", counters{Stock: 5, Available: 0, Reserved: 3, Sold: 2, PerUserLimit: 5, HoldSeconds: 600})
}

func bulkBody(items ...string) string { return `{"items":[` + strings.Join(items, ",") + `]}` }

func results(t *testing.T, r response) []map[string]any {
	t.Helper()
	raw, ok := r.body["results"].([]any)
	if !ok {
		t.Fatalf("no results: %s", r.raw)
	}
	out := make([]map[string]any, len(raw))
	for i, x := range raw {
		out[i] = x.(map[string]any)
	}
	return out
}

func TestBulkSeed(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "old", `{"stock":5,"per_user_limit":3}`)
	reserve(t, e.app, "old", "u", 3)
	old := getItem(t, e.app, "old")

	r := do(t, e.app, "PUT", "/admin/v1/items", bulkBody(
		`{"sku":"a","stock":1}`,
		`{"sku":"b","stock":2,"per_user_limit":2,"hold_seconds":5,"name":"B","starts_at":"2026-01-01T00:00:00Z","ends_at":"2999-01-01T00:00:00Z"}`,
		`{"sku":"old","stock":2,"per_user_limit":3}`, // below the 3 reserved
	), admin)
	wantOK(t, r, 200)
	res := results(t, r)
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	for i, want := range []struct {
		sku, result string
		status      float64
	}{{"a", "created", 201}, {"b", "created", 201}, {"old", "error", 409}} {
		got := res[i]
		if got["sku"] != want.sku || got["result"] != want.result || got["status"] != want.status {
			t.Errorf("results[%d] = %v, want %+v", i, got, want)
		}
	}
	if item, _ := res[1]["item"].(map[string]any); item["name"] != "B" || item["stock"] != 2.0 || item["hold_seconds"] != 5.0 {
		t.Errorf("results[1].item = %v", res[1]["item"])
	}
	if _, has := res[2]["item"]; has {
		t.Errorf("an error result carries an item: %v", res[2])
	}
	checkProblem(t, res[2]["problem"].(map[string]any), 409, "stock_below_committed")
	wantItem(t, e.app, "a", counters{Stock: 1, Available: 1, PerUserLimit: 1, HoldSeconds: 600})
	wantItem(t, e.app, "b", counters{Stock: 2, Available: 2, PerUserLimit: 2, HoldSeconds: 5})
	wantItem(t, e.app, "old", old)

	r = do(t, e.app, "PUT", "/admin/v1/items", bulkBody(`{"sku":"a","stock":4}`), admin)
	wantOK(t, r, 200)
	if res := results(t, r); res[0]["result"] != "updated" || res[0]["status"] != 200.0 {
		t.Errorf("re-seed a: %v", res[0])
	}
	wantItem(t, e.app, "a", counters{Stock: 4, Available: 4, PerUserLimit: 1, HoldSeconds: 600})

	r = do(t, e.app, "PUT", "/admin/v1/items", `{"items":[]}`, admin)
	wantOK(t, r, 200)
	if res := results(t, r); len(res) != 0 {
		t.Errorf("empty bulk: %s", r.raw)
	}

	// The bulk endpoint takes bodies up to 8 MiB.
	const limit = 8 << 20
	body := bulkBody(`{"sku":"big","stock":8}`)
	body = body[:len(body)-2] + strings.Repeat(" ", limit-len(body)) + "]}"
	r = do(t, e.app, "PUT", "/admin/v1/items", body, admin)
	wantOK(t, r, 200)
	wantItem(t, e.app, "big", counters{Stock: 8, Available: 8, PerUserLimit: 1, HoldSeconds: 600})
}

// TestBulkSeedTooLarge: a body over its route's limit is refused before it
// is read: over 8 MiB for the bulk seed with an admin token, over 4 KiB for
// every other request, the bulk seed without a valid token included. It goes over a real socket, sending only
// the headers: the length alone refuses it. fasthttp refuses it before any
// middleware runs, and the answer still carries a request id, a gateway's
// kept.
func TestBulkSeedTooLarge(t *testing.T) {
	e := newEnv(t)
	addr := testenv.Serve(t, e.srv)
	for _, tc := range []struct {
		name, path string
		length     int
		requestID  string // sent; "": none
	}{
		{"bulk 8 MiB + 1", "/admin/v1/items", 8<<20 + 1, ""},
		{"bulk 1 GiB", "/admin/v1/items", 1 << 30, ""},
		{"bulk with a gateway's id", "/admin/v1/items", 8<<20 + 1, "gw-413"},
		{"single 4 KiB + 1", "/admin/v1/items/x", 4<<10 + 1, ""},
		{"reserve 4 KiB + 1", "/v1/items/x/reservations", 4<<10 + 1, ""},
		{"healthz 8 MiB", "/healthz", 8 << 20, ""},
		{"bulk 1 MiB without a token", "/admin/v1/items", 1 << 20, "no-token"},
		{"bulk 1 MiB with a wrong token", "/admin/v1/items", 1 << 20, "wrong-token"},
		{"single 8 MiB + 1", "/admin/v1/items/x", 8<<20 + 1, ""},
		{"reserve 8 MiB + 1", "/v1/items/x/reservations", 8<<20 + 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			method := "PUT"
			switch {
			case strings.HasPrefix(tc.path, "/v1/"):
				method = "POST"
			case tc.path == "/healthz":
				method = "GET"
			}
			ridHeader, token := "", adminToken
			switch tc.requestID {
			case "no-token":
				token = ""
			case "wrong-token":
				token = adminToken + "x"
			case "":
			default:
				ridHeader = "X-Request-ID: " + tc.requestID + "\r\n"
			}
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: flashsale\r\nAuthorization: Bearer %s\r\n%s"+
				"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, tc.path, token, ridHeader, tc.length)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			var p map[string]any
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("status %d, body %q: %v", res.StatusCode, raw, err)
			}
			wantProblem(t, response{status: res.StatusCode, header: res.Header, raw: raw, body: p}, 413, "payload_too_large")
			rid := res.Header.Get("X-Request-ID")
			if rid == "" || p["request_id"] != rid || ridHeader != "" && rid != tc.requestID {
				t.Errorf("X-Request-ID %q, request_id %v; want the same id (%q if sent)", rid, p["request_id"], tc.requestID)
			}
		})
	}
	wantNoItem(t, e.app, "x")
}

// TestBulkSeedRefused: an invalid catalogue is refused whole.
func TestBulkSeedRefused(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "a", `{"stock":5}`)
	before := getItem(t, e.app, "a")

	var many strings.Builder
	many.WriteString(`{"items":[`)
	for i := 0; i <= 10_000; i++ {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"sku":"n%d","stock":1}`, i)
	}
	many.WriteString(`]}`)

	for _, tc := range []struct {
		name, body string
		headers    h
		status     int
		code       string
	}{
		{"invalid last item", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n1","stock":1}`, `{"sku":"n2","stock":-1}`), admin, 400, "invalid_request"},
		{"invalid first item", bulkBody(`{"sku":"n1","stock":1,"per_user_limit":0}`, `{"sku":"a","stock":50}`), admin, 400, "invalid_request"},
		{"unknown field in an item", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n1","stock":1,"price":3}`), admin, 400, "invalid_request"},
		{"missing sku", bulkBody(`{"sku":"a","stock":50}`, `{"stock":1}`), admin, 400, "invalid_request"},
		{"bad sku", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n 1","stock":1}`), admin, 400, "invalid_request"},
		{"missing stock", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n1"}`), admin, 400, "invalid_request"},
		{"bad window", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n1","stock":1,"starts_at":"2026-01-02T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"}`), admin, 400, "invalid_request"},
		{"duplicate sku", bulkBody(`{"sku":"a","stock":50}`, `{"sku":"n1","stock":1}`, `{"sku":"a","stock":51}`), admin, 400, "invalid_request"},
		{"items missing", `{}`, admin, 400, "invalid_request"},
		{"items null", `{"items":null}`, admin, 400, "invalid_request"},
		{"items not a list", `{"items":{"sku":"n1","stock":1}}`, admin, 400, "invalid_request"},
		{"unknown top-level field", `{"items":[],"dry_run":true}`, admin, 400, "invalid_request"},
		{"malformed JSON", `{"items":[{"sku":"n1","stock":1}`, admin, 400, "invalid_request"},
		{"trailing garbage", bulkBody(`{"sku":"n1","stock":1}`) + `]`, admin, 400, "invalid_request"},
		{"over 10,000 items", many.String(), admin, 400, "invalid_request"},
		{"text/plain", bulkBody(`{"sku":"n1","stock":1}`), admin.with("Content-Type", "text/plain"), 415, "unsupported_media_type"},
		{"unauthorized", bulkBody(`{"sku":"n1","stock":1}`), nil, 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, "PUT", "/admin/v1/items", tc.body, tc.headers)
			wantProblem(t, r, tc.status, tc.code)
			wantItem(t, e.app, "a", before)
			wantNoItem(t, e.app, "n1")
			wantNoItem(t, e.app, "n0")
		})
	}
}

func TestGetItem(t *testing.T) {
	e := newEnv(t)
	wantProblem(t, do(t, e.app, "GET", "/v1/items/nope", "", nil), 404, "item_not_found")
	wantProblem(t, do(t, e.app, "GET", "/v1/items/"+strings.Repeat("a", 65), "", nil), 400, "invalid_request")
	wantProblem(t, do(t, e.app, "GET", "/v1/items/bad%21", "", nil), 400, "invalid_request")
}

func TestReserve(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "tv", `{"stock":5,"per_user_limit":2,"hold_seconds":90}`)

	r := do(t, e.app, "POST", "/v1/items/tv/reservations", `{"user_id":"alice@example.com","quantity":2}`, nil)
	wantOK(t, r, 201)
	id := r.str("id")
	if sku, ok := reservation.ParseID(id); !ok || sku != "tv" {
		t.Fatalf("id %q is not a reservation id of tv", id)
	}
	if loc := r.header.Get("Location"); loc != "/v1/reservations/"+id {
		t.Errorf("Location %q, want /v1/reservations/%s", loc, id)
	}
	if r.str("sku") != "tv" || r.str("user_id") != "alice@example.com" || r.num("quantity") != 2 || r.str("status") != "pending" {
		t.Errorf("reservation: %s", r.raw)
	}
	created, expires := parseTime(t, r.str("created_at")), parseTime(t, r.str("expires_at"))
	if expires.Sub(created) != 90*time.Second {
		t.Errorf("expires_at - created_at = %v, want 90s", expires.Sub(created))
	}
	if now := redistest.Now(e.m); created.Before(now.Add(-time.Second)) || created.After(now.Add(time.Second)) {
		t.Errorf("created_at %v, Redis time %v", created, now)
	}
	wantItem(t, e.app, "tv", counters{Stock: 5, Available: 3, Reserved: 2, PerUserLimit: 2, HoldSeconds: 90})

	g := do(t, e.app, "GET", "/v1/reservations/"+id, "", nil)
	wantOK(t, g, 200)
	for _, k := range []string{"id", "sku", "user_id", "quantity", "status", "created_at", "expires_at"} {
		if g.body[k] != r.body[k] {
			t.Errorf("GET reservation %s = %v, POST answered %v", k, g.body[k], r.body[k])
		}
	}

	// A body of exactly 4 KiB is accepted.
	body := `{"user_id":"bob","quantity":1}`
	body += strings.Repeat("\n", 4096-len(body))
	wantOK(t, do(t, e.app, "POST", "/v1/items/tv/reservations", body, nil), 201)
	wantItem(t, e.app, "tv", counters{Stock: 5, Available: 2, Reserved: 3, PerUserLimit: 2, HoldSeconds: 90})
}

// TestReserveRefused: each refused reservation answers its problem and
// leaves the item's counters as they were.
func TestReserveRefused(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "cup", `{"stock":3,"per_user_limit":2}`)
	reserve(t, e.app, "cup", "holder", 2)
	seed(t, e.app, "later", fmt.Sprintf(`{"stock":3,"starts_at":%q}`, redistest.Now(e.m).Add(time.Hour).Format(time.RFC3339)))
	seed(t, e.app, "over", fmt.Sprintf(`{"stock":3,"ends_at":%q}`, redistest.Now(e.m).Add(-time.Second).Format(time.RFC3339)))
	cup, later, over := getItem(t, e.app, "cup"), getItem(t, e.app, "later"), getItem(t, e.app, "over")

	const ok = `{"user_id":"u1","quantity":1}`
	for _, tc := range []struct {
		name, sku, body string
		headers         h
		status          int
		code            string
	}{
		{"text/plain", "cup", ok, h{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"no content type", "cup", ok, h{"Content-Type": ""}, 415, "unsupported_media_type"},
		{"json-ish content type", "cup", ok, h{"Content-Type": "application/jsonx"}, 415, "unsupported_media_type"},
		{"4 KiB + 1", "cup", ok + strings.Repeat(" ", 4097-len(ok)), nil, 413, "payload_too_large"},
		{"4 KiB + 1 as text/plain", "cup", ok + strings.Repeat(" ", 4097-len(ok)), h{"Content-Type": "text/plain"}, 413, "payload_too_large"},
		{"64 KiB", "cup", ok + strings.Repeat(" ", 64<<10), nil, 413, "payload_too_large"},
		{"empty body", "cup", "", nil, 400, "invalid_request"},
		{"unknown field", "cup", `{"user_id":"u1","quantity":1,"coupon":"X"}`, nil, 400, "invalid_request"},
		{"malformed JSON", "cup", `{"user_id":"u1","quantity":1`, nil, 400, "invalid_request"},
		{"single quotes", "cup", `{'user_id':'u1','quantity':1}`, nil, 400, "invalid_request"},
		{"trailing garbage", "cup", ok + `garbage`, nil, 400, "invalid_request"},
		{"trailing comma", "cup", `{"user_id":"u1","quantity":1,}`, nil, 400, "invalid_request"},
		{"second value", "cup", ok + ok, nil, 400, "invalid_request"},
		{"array", "cup", `[` + ok + `]`, nil, 400, "invalid_request"},
		{"null", "cup", `null`, nil, 400, "invalid_request"},
		{"user_id missing", "cup", `{"quantity":1}`, nil, 400, "invalid_request"},
		{"user_id not a string", "cup", `{"user_id":5,"quantity":1}`, nil, 400, "invalid_request"},
		{"user_id empty", "cup", `{"user_id":"","quantity":1}`, nil, 400, "invalid_request"},
		{"user_id 65 chars", "cup", `{"user_id":"` + strings.Repeat("u", 65) + `","quantity":1}`, nil, 400, "invalid_request"},
		{"user_id with space", "cup", `{"user_id":"u 1","quantity":1}`, nil, 400, "invalid_request"},
		{"user_id with pipe", "cup", `{"user_id":"u|1","quantity":1}`, nil, 400, "invalid_request"},
		{"user_id non-ASCII", "cup", `{"user_id":"jürgen","quantity":1}`, nil, 400, "invalid_request"},
		{"quantity missing", "cup", `{"user_id":"u1"}`, nil, 400, "invalid_request"},
		{"quantity 0", "cup", `{"user_id":"u1","quantity":0}`, nil, 400, "invalid_request"},
		{"quantity -1", "cup", `{"user_id":"u1","quantity":-1}`, nil, 400, "invalid_request"},
		{"quantity 1001", "cup", `{"user_id":"u1","quantity":1001}`, nil, 400, "invalid_request"},
		{"quantity 1.5", "cup", `{"user_id":"u1","quantity":1.5}`, nil, 400, "invalid_request"},
		{"quantity 1e0", "cup", `{"user_id":"u1","quantity":1e0}`, nil, 400, "invalid_request"},
		{"quantity string", "cup", `{"user_id":"u1","quantity":"1"}`, nil, 400, "invalid_request"},
		{"quantity null", "cup", `{"user_id":"u1","quantity":null}`, nil, 400, "invalid_request"},
		{"quantity huge", "cup", `{"user_id":"u1","quantity":18446744073709551617}`, nil, 400, "invalid_request"},
		{"Idempotency-Key empty", "cup", ok, h{"Idempotency-Key": ""}, 400, "invalid_request"},
		{"Idempotency-Key 129 chars", "cup", ok, h{"Idempotency-Key": strings.Repeat("k", 129)}, 400, "invalid_request"},
		{"Idempotency-Key non-ASCII", "cup", ok, h{"Idempotency-Key": "clé-1"}, 400, "invalid_request"},
		{"Idempotency-Key inner space", "cup", ok, h{"Idempotency-Key": "k 1"}, 400, "invalid_request"},
		{"Idempotency-Key control char", "cup", ok, h{"Idempotency-Key": "k\x7f1"}, 400, "invalid_request"},
		{"sku 65 chars", strings.Repeat("c", 65), ok, nil, 400, "invalid_request"},
		{"sku with !", "cup%21", ok, nil, 400, "invalid_request"},
		{"sku with encoded slash", "c%2Fup", ok, nil, 400, "invalid_request"},
		{"unknown item", "nope", ok, nil, 404, "item_not_found"},
		{"quantity above per_user_limit", "cup", `{"user_id":"u1","quantity":3}`, nil, 409, "limit_exceeded"},
		{"limit reached", "cup", `{"user_id":"holder","quantity":1}`, nil, 409, "limit_exceeded"},
		{"sold out, all or nothing", "cup", `{"user_id":"u1","quantity":2}`, nil, 409, "sold_out"},
		{"sale not started", "later", ok, nil, 409, "sale_not_active"},
		{"sale ended", "over", ok, nil, 409, "sale_not_active"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, "POST", "/v1/items/"+tc.sku+"/reservations", tc.body, tc.headers)
			wantProblem(t, r, tc.status, tc.code)
			if r.header.Get("Location") != "" {
				t.Errorf("refusal carries Location %q", r.header.Get("Location"))
			}
			wantItem(t, e.app, "cup", cup)
			wantItem(t, e.app, "later", later)
			wantItem(t, e.app, "over", over)
			wantNoItem(t, e.app, "nope")
		})
	}
}

func TestReserveAllOrNothing(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "pen", `{"stock":5,"per_user_limit":10}`)
	reserve(t, e.app, "pen", "a", 3)
	r := do(t, e.app, "POST", "/v1/items/pen/reservations", `{"user_id":"b","quantity":3}`, nil)
	wantProblem(t, r, 409, "sold_out")
	wantItem(t, e.app, "pen", counters{Stock: 5, Available: 2, Reserved: 3, PerUserLimit: 10, HoldSeconds: 600})
	reserve(t, e.app, "pen", "b", 2)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/pen/reservations", `{"user_id":"c","quantity":1}`, nil), 409, "sold_out")
	wantItem(t, e.app, "pen", counters{Stock: 5, Available: 0, Reserved: 5, PerUserLimit: 10, HoldSeconds: 600})
}

func TestPerUserLimit(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "hat", `{"stock":10,"per_user_limit":2}`)
	first := reserve(t, e.app, "hat", "u", 1)
	second := reserve(t, e.app, "hat", "u", 1)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/hat/reservations", `{"user_id":"u","quantity":1}`, nil), 409, "limit_exceeded")
	// Confirmed units still count against the limit.
	wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+first+"/confirm", "", service), 200)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/hat/reservations", `{"user_id":"u","quantity":1}`, nil), 409, "limit_exceeded")
	// A cancelled hold gives its units back to the user's allowance.
	wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+second+"/cancel", "", nil), 200)
	reserve(t, e.app, "hat", "u", 1)
	// The limit is per user.
	reserve(t, e.app, "hat", "v", 2)
	wantItem(t, e.app, "hat", counters{Stock: 10, Available: 6, Reserved: 3, Sold: 1, PerUserLimit: 2, HoldSeconds: 600})
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "bag", `{"stock":10,"per_user_limit":3}`)
	key := h{"Idempotency-Key": "order-42!~"}
	r := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"u","quantity":2}`, key)
	wantOK(t, r, 201)
	id, loc := r.str("id"), r.header.Get("Location")
	after := counters{Stock: 10, Available: 8, Reserved: 2, PerUserLimit: 3, HoldSeconds: 600}
	wantItem(t, e.app, "bag", after)

	for i := 0; i < 2; i++ {
		rr := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"u","quantity":2}`, key)
		wantOK(t, rr, 200)
		if rr.str("id") != id || rr.header.Get("Location") != loc {
			t.Fatalf("replay answered %s at %q, want %s at %q", rr.str("id"), rr.header.Get("Location"), id, loc)
		}
		for _, k := range []string{"status", "quantity", "created_at", "expires_at", "user_id", "sku"} {
			if rr.body[k] != r.body[k] {
				t.Errorf("replay %s = %v, original %v", k, rr.body[k], r.body[k])
			}
		}
		wantItem(t, e.app, "bag", after)
	}

	rr := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"u","quantity":1}`, key)
	wantProblem(t, rr, 422, "idempotency_key_reused")
	wantItem(t, e.app, "bag", after)

	// The key is scoped to the user: another user's identical key is new.
	other := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"v","quantity":2}`, key)
	wantOK(t, other, 201)
	if other.str("id") == id {
		t.Fatal("another user's request replayed the first user's reservation")
	}
	// ...and so is a user whose id and key would run together with another's:
	// (user "w", key "k:x") and (user "w:k", key "x").
	wk := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"w","quantity":1}`, h{"Idempotency-Key": "k:x"})
	wantOK(t, wk, 201)
	split := do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"w:k","quantity":1}`, h{"Idempotency-Key": "x"})
	wantOK(t, split, 201)
	if split.str("id") == wk.str("id") {
		t.Fatal("(w:k, x) replayed (w, k:x)")
	}
	// Without a key every request is new.
	reserve(t, e.app, "bag", "u", 1)
	wantItem(t, e.app, "bag", counters{Stock: 10, Available: 3, Reserved: 7, PerUserLimit: 3, HoldSeconds: 600})

	// A replay still answers after the hold was confirmed, and takes nothing.
	wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+id+"/confirm", "", service), 200)
	rr = do(t, e.app, "POST", "/v1/items/bag/reservations", `{"user_id":"u","quantity":2}`, key)
	wantOK(t, rr, 200)
	if rr.str("id") != id || rr.str("status") != "confirmed" {
		t.Errorf("replay after confirm: %s", rr.raw)
	}
	wantItem(t, e.app, "bag", counters{Stock: 10, Available: 3, Reserved: 5, Sold: 2, PerUserLimit: 3, HoldSeconds: 600})
}

func TestSaleWindow(t *testing.T) {
	e := newEnv(t)
	now := redistest.Now(e.m)
	starts, ends := now.Add(time.Hour), now.Add(2*time.Hour)
	seed(t, e.app, "drop", fmt.Sprintf(`{"stock":5,"per_user_limit":5,"hold_seconds":86400,"starts_at":%q,"ends_at":%q}`,
		starts.Format(time.RFC3339Nano), ends.Format(time.RFC3339Nano)))
	closed := counters{Stock: 5, Available: 5, PerUserLimit: 5, HoldSeconds: 86400}

	wantProblem(t, do(t, e.app, "POST", "/v1/items/drop/reservations", `{"user_id":"u","quantity":1}`, nil), 409, "sale_not_active")
	wantItem(t, e.app, "drop", closed)

	redistest.Advance(e.m, starts.Sub(redistest.Now(e.m))-time.Millisecond)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/drop/reservations", `{"user_id":"u","quantity":1}`, nil), 409, "sale_not_active")

	redistest.Advance(e.m, time.Millisecond)
	reserve(t, e.app, "drop", "u", 1)

	redistest.Advance(e.m, ends.Sub(redistest.Now(e.m))-time.Millisecond)
	reserve(t, e.app, "drop", "u", 1)

	redistest.Advance(e.m, time.Millisecond)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/drop/reservations", `{"user_id":"u","quantity":1}`, nil), 409, "sale_not_active")
	wantItem(t, e.app, "drop", counters{Stock: 5, Available: 3, Reserved: 2, PerUserLimit: 5, HoldSeconds: 86400})
}

func TestExpiry(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "lamp", `{"stock":2,"per_user_limit":2,"hold_seconds":60}`)
	a := reserve(t, e.app, "lamp", "u", 1)
	b := reserve(t, e.app, "lamp", "u", 1)
	wantProblem(t, do(t, e.app, "POST", "/v1/items/lamp/reservations", `{"user_id":"w","quantity":1}`, nil), 409, "sold_out")

	redistest.Advance(e.m, 59*time.Second)
	r := do(t, e.app, "GET", "/v1/reservations/"+a, "", nil)
	wantOK(t, r, 200)
	if r.str("status") != "pending" {
		t.Fatalf("status %q before expiry", r.str("status"))
	}
	wantItem(t, e.app, "lamp", counters{Stock: 2, Available: 0, Reserved: 2, PerUserLimit: 2, HoldSeconds: 60})
	wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+b+"/confirm", "", service), 200)

	redistest.Advance(e.m, time.Second)
	r = do(t, e.app, "GET", "/v1/reservations/"+a, "", nil)
	wantOK(t, r, 200)
	if r.str("status") != "expired" {
		t.Fatalf("status %q after expiry, want expired", r.str("status"))
	}
	expired := counters{Stock: 2, Available: 1, Reserved: 0, Sold: 1, PerUserLimit: 2, HoldSeconds: 60}
	wantItem(t, e.app, "lamp", expired)

	wantProblem(t, do(t, e.app, "POST", "/v1/reservations/"+a+"/confirm", "", service), 409, "reservation_expired")
	wantItem(t, e.app, "lamp", expired)
	wantProblem(t, do(t, e.app, "POST", "/v1/reservations/"+a+"/cancel", "", nil), 409, "reservation_expired")
	wantItem(t, e.app, "lamp", expired)
	// The confirmed one does not expire.
	r = do(t, e.app, "GET", "/v1/reservations/"+b, "", nil)
	wantOK(t, r, 200)
	if r.str("status") != "confirmed" {
		t.Errorf("confirmed reservation reads %q", r.str("status"))
	}
	// The freed unit sells again.
	reserve(t, e.app, "lamp", "w", 1)
}

// TestExpiryWithoutReads: the expired hold is settled by the next buyer
// even if nobody read the item in between.
func TestExpiryWithoutReads(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "one", `{"stock":1,"hold_seconds":1}`)
	id := reserve(t, e.app, "one", "u", 1)
	redistest.Advance(e.m, time.Second)
	reserve(t, e.app, "one", "w", 1)
	r := do(t, e.app, "GET", "/v1/reservations/"+id, "", nil)
	wantOK(t, r, 200)
	if r.str("status") != "expired" {
		t.Errorf("status %q, want expired", r.str("status"))
	}
	wantItem(t, e.app, "one", counters{Stock: 1, Available: 0, Reserved: 1, PerUserLimit: 1, HoldSeconds: 1})
}

func TestConfirmCancel(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "kit", `{"stock":10,"per_user_limit":10}`)
	a := reserve(t, e.app, "kit", "u", 3)
	b := reserve(t, e.app, "kit", "u", 2)
	state := counters{Stock: 10, Available: 5, Reserved: 5, PerUserLimit: 10, HoldSeconds: 600}
	wantItem(t, e.app, "kit", state)

	step := func(name, id, op, body string, headers h, status int, want string) {
		t.Helper()
		if op == "confirm" {
			headers = headers.with("Authorization", service["Authorization"])
		}
		r := do(t, e.app, "POST", "/v1/reservations/"+id+"/"+op, body, headers)
		if status >= 400 {
			wantProblem(t, r, status, want)
		} else {
			wantOK(t, r, status)
			if r.str("status") != want || r.str("id") != id {
				t.Errorf("%s: %s", name, r.raw)
			}
		}
		wantItem(t, e.app, "kit", state)
	}

	state = counters{Stock: 10, Available: 5, Reserved: 2, Sold: 3, PerUserLimit: 10, HoldSeconds: 600}
	step("confirm", a, "confirm", "", nil, 200, "confirmed")
	step("confirm again", a, "confirm", "", nil, 200, "confirmed")
	step("confirm with {}", a, "confirm", `{}`, nil, 200, "confirmed")
	step("cancel confirmed", a, "cancel", "", nil, 409, "reservation_confirmed")

	state = counters{Stock: 10, Available: 7, Reserved: 0, Sold: 3, PerUserLimit: 10, HoldSeconds: 600}
	step("cancel", b, "cancel", ` { } `, nil, 200, "cancelled")
	step("cancel again", b, "cancel", "", nil, 200, "cancelled")
	step("confirm cancelled", b, "confirm", "", nil, 409, "reservation_cancelled")

	g := do(t, e.app, "GET", "/v1/reservations/"+b, "", nil)
	wantOK(t, g, 200)
	if g.str("status") != "cancelled" {
		t.Errorf("cancelled reservation reads %q", g.str("status"))
	}

	c := reserve(t, e.app, "kit", "v", 1)
	state = counters{Stock: 10, Available: 6, Reserved: 1, Sold: 3, PerUserLimit: 10, HoldSeconds: 600}
	for _, op := range []string{"confirm", "cancel"} {
		for _, tc := range []struct {
			name, body string
			headers    h
			status     int
			code       string
		}{
			{"unknown field", `{"force":true}`, nil, 400, "invalid_request"},
			{"malformed", `{`, nil, 400, "invalid_request"},
			{"not an object", `[]`, nil, 400, "invalid_request"},
			{"trailing garbage", `{}x`, nil, 400, "invalid_request"},
			{"text/plain", `{}`, h{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
			{"4 KiB + 1", "{}" + strings.Repeat(" ", 4095), nil, 413, "payload_too_large"},
		} {
			step(op+" "+tc.name, c, op, tc.body, tc.headers, tc.status, tc.code)
		}
	}
	g = do(t, e.app, "GET", "/v1/reservations/"+c, "", nil)
	if g.str("status") != "pending" {
		t.Errorf("refused calls moved the reservation to %q", g.str("status"))
	}
}

func TestReservationLookup(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "mug", `{"stock":1}`)
	unknown := "mug.AAAAAAAAAAAAAAAAAAAAAA"
	noItem := "ghost.AAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name, id string
		status   int
		code     string
	}{
		{"unknown id", unknown, 404, "reservation_not_found"},
		{"id of an unknown item", noItem, 404, "reservation_not_found"},
		{"no dot", "mugAAAAAAAAAAAAAAAAAAAAAA", 400, "invalid_request"},
		{"short random part", "mug.AAAA", 400, "invalid_request"},
		{"long random part", "mug.AAAAAAAAAAAAAAAAAAAAAAA", 400, "invalid_request"},
		{"bad random part", "mug.AAAAAAAAAAAAAAAAAAAAA%21", 400, "invalid_request"},
		{"empty sku", ".AAAAAAAAAAAAAAAAAAAAAA", 400, "invalid_request"},
		{"bad sku", "m%21g.AAAAAAAAAAAAAAAAAAAAAA", 400, "invalid_request"},
		{"long sku", strings.Repeat("m", 65) + ".AAAAAAAAAAAAAAAAAAAAAA", 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []struct{ method, suffix string }{
				{"GET", ""}, {"POST", "/confirm"}, {"POST", "/cancel"},
			} {
				r := do(t, e.app, req.method, "/v1/reservations/"+tc.id+req.suffix, "", service)
				wantProblem(t, r, tc.status, tc.code)
			}
		})
	}
	wantItem(t, e.app, "mug", counters{Stock: 1, Available: 1, PerUserLimit: 1, HoldSeconds: 600})
}

func TestRoutingProblems(t *testing.T) {
	e := newEnv(t)
	wantProblem(t, do(t, e.app, "GET", "/v2/items/x", "", nil), 404, "not_found")
	r := do(t, e.app, "DELETE", "/v1/items/x", "", nil)
	wantProblem(t, r, 405, "method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Errorf("Allow %q", allow)
	}
}

func TestPanicRecovered(t *testing.T) {
	e := newEnv(t)
	e.app.Get("/test-only/panic", func(*fiber.Ctx) error { panic("secret internals") })
	r := do(t, e.app, "GET", "/test-only/panic", "", nil)
	wantProblem(t, r, 500, "internal")
	if bytes.Contains(r.raw, []byte("secret internals")) {
		t.Errorf("the panic value reached the client: %s", r.raw)
	}
	// The server still serves.
	wantOK(t, do(t, e.app, "GET", "/healthz", "", nil), 200)
}

// TestNilLogger: a Config without a logger still answers refusals (the
// error handler logs every one).
func TestNilLogger(t *testing.T) {
	_, client := redistest.Miniredis(t)
	store, err := redisstore.New(context.Background(), client, "nolog")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{AdminTokens: []string{adminToken}})
	srv.App().Get("/test-only/panic", func(*fiber.Ctx) error { panic("boom") })
	wantProblem(t, do(t, srv.App(), "GET", "/v1/items/nope", "", nil), 404, "item_not_found")
	wantProblem(t, do(t, srv.App(), "GET", "/test-only/panic", "", nil), 500, "internal")
}

// TestContentEncodingRefused: a compressed body is not decompressed (a
// small gzip body can inflate past any limit); it is 415.
func TestContentEncodingRefused(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "zip", `{"stock":1}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"user_id":"u","quantity":1}`))
	_ = zw.Close()
	for _, enc := range []string{"gzip", "deflate", "br", "GZIP", "identity, gzip"} {
		r := do(t, e.app, "POST", "/v1/items/zip/reservations", gz.String(), h{"Content-Encoding": enc})
		wantProblem(t, r, 415, "unsupported_media_type")
		if r.header.Get("Accept-Encoding") != "identity" {
			t.Errorf("Content-Encoding %s: Accept-Encoding %q, want identity", enc, r.header.Get("Accept-Encoding"))
		}
	}
	r := do(t, e.app, "PUT", "/admin/v1/items", gz.String(), admin.with("Content-Encoding", "gzip"))
	wantProblem(t, r, 415, "unsupported_media_type")
	wantItem(t, e.app, "zip", counters{Stock: 1, Available: 1, PerUserLimit: 1, HoldSeconds: 600})
	// A header name in any case, and a second Content-Encoding after an
	// identity one, are found (the header is looked up by the name fasthttp
	// normalises every parsed name to, then walked whole).
	for _, hdr := range [][]string{{"content-encoding", "gzip"}, {"CONTENT-ENCODING", "br"}} {
		req := httptest.NewRequest("POST", "/v1/items/zip/reservations", strings.NewReader(gz.String()))
		req.Header.Set("Content-Type", "application/json")
		req.Header[hdr[0]] = []string{hdr[1]} // written as given, not canonicalised
		res, err := serve(e.app, req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != 415 {
			t.Errorf("%s: %s: status %d, want 415", hdr[0], hdr[1], res.StatusCode)
		}
	}
	req := httptest.NewRequest("POST", "/v1/items/zip/reservations", strings.NewReader(gz.String()))
	req.Header.Set("Content-Type", "application/json")
	req.Header["Content-Encoding"] = []string{"identity", "gzip"}
	res, err := serve(e.app, req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != 415 {
		t.Errorf("Content-Encoding identity then gzip: status %d, want 415", res.StatusCode)
	}
	// identity is no encoding at all.
	wantOK(t, do(t, e.app, "POST", "/v1/items/zip/reservations", `{"user_id":"u","quantity":1}`,
		h{"Content-Encoding": "identity"}), 201)
}
