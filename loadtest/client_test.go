package loadtest_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/loadtest"
)

func TestNewClientRefusesBadURLs(t *testing.T) {
	tests := []struct {
		name, url string
		conns     int
	}{
		{"no scheme", "127.0.0.1:3004", 1},
		{"ftp", "ftp://127.0.0.1:3004", 1},
		{"no host", "http://", 1},
		{"query", "http://127.0.0.1:3004/?a=b", 1},
		{"no connections", "http://127.0.0.1:3004", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := loadtest.NewClient(tt.url, testToken, tt.conns); err == nil {
				t.Errorf("NewClient(%q, %d) = %v, nil; want an error", tt.url, tt.conns, c)
			}
		})
	}
}

// TestClient walks the buyer and admin calls through the real API.
func TestClient(t *testing.T) {
	c := newClient(t, startService(t, serviceOpts{}), 4)
	ctx := testCtx(t)
	if err := c.Seed(ctx, "tee", 2, 1, 600, 0); err != nil {
		t.Fatalf("Seed: %v", err)
	}

	id, outcome, err := c.Reserve(ctx, "tee", "alice", 1)
	if err != nil || outcome != "created" || !strings.HasPrefix(id, "tee.") {
		t.Fatalf("Reserve alice = %q, %q, %v; want an id, created, nil", id, outcome, err)
	}
	bobID, outcome, err := c.ReserveUser(ctx, "tee", "bob-", 7, 1)
	if err != nil || outcome != "created" || bobID == id {
		t.Fatalf("ReserveUser bob-7 = %q, %q, %v; want a new id, created, nil", bobID, outcome, err)
	}

	refusals := []struct {
		name, sku, user string
		qty             int
		outcome         string
		status          int // 0: a 409, which is no error
	}{
		{"same user again", "tee", "alice", 1, "limit_exceeded", 0},
		{"sold out", "tee", "carol", 1, "sold_out", 0},
		{"unknown item", "nope", "carol", 1, "item_not_found", 404},
		{"bad user id", "tee", "not valid", 1, "invalid_request", 400},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			id, outcome, err := c.Reserve(ctx, tt.sku, tt.user, tt.qty)
			if id != "" || outcome != tt.outcome {
				t.Errorf("Reserve = %q, %q; want no id, %q", id, outcome, tt.outcome)
			}
			wantStatus(t, err, tt.status)
		})
	}

	transitions := []struct {
		name    string
		call    func() (string, error)
		outcome string
		status  int
	}{
		{"confirm", func() (string, error) { return c.Confirm(ctx, id) }, "confirmed", 0},
		{"confirm again", func() (string, error) { return c.Confirm(ctx, id) }, "confirmed", 0},
		{"cancel confirmed", func() (string, error) { return c.Cancel(ctx, id, "alice") }, "reservation_confirmed", 0},
		{"cancel", func() (string, error) { return c.Cancel(ctx, bobID, "bob-7") }, "cancelled", 0},
		{"confirm cancelled", func() (string, error) { return c.Confirm(ctx, bobID) }, "reservation_cancelled", 0},
		{"confirm unknown", func() (string, error) { return c.Confirm(ctx, "tee.AAAAAAAAAAAAAAAAAAAAAA") }, "reservation_not_found", 404},
	}
	for _, tt := range transitions {
		t.Run(tt.name, func(t *testing.T) {
			outcome, err := tt.call()
			if outcome != tt.outcome {
				t.Errorf("outcome %q, want %q", outcome, tt.outcome)
			}
			wantStatus(t, err, tt.status)
		})
	}

	it, err := c.Item(ctx, "tee")
	if err != nil {
		t.Fatalf("Item: %v", err)
	}
	if it.Stock != 2 || it.Available != 1 || it.Reserved != 0 || it.Sold != 1 || it.PerUserLimit != 1 || it.HoldSeconds != 600 {
		t.Errorf("Item = %+v; want stock 2, available 1, reserved 0, sold 1, limit 1, hold 600", it)
	}
	if _, err := c.Item(ctx, "nope"); err == nil {
		t.Error("Item of an unknown SKU: no error")
	}
	if _, err := c.Audit(ctx, "tee"); !errors.Is(err, loadtest.ErrNoAudit) {
		t.Errorf("Audit without a record: %v, want ErrNoAudit", err)
	}
}

func TestClientAdminToken(t *testing.T) {
	url := startService(t, serviceOpts{})
	c, err := loadtest.NewClient(url, "wrong-token-0123456789", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	wantStatus(t, c.Seed(testCtx(t), "tee", 1, 0, 0, 0), 401)
}

// TestClientServiceToken: Confirm sends the service token it was given, and
// without one (or with the admin token in its place) it is refused, 401,
// and the hold stays pending.
func TestClientServiceToken(t *testing.T) {
	url := startService(t, serviceOpts{})
	ctx := testCtx(t)
	admin := newClient(t, url, 1)
	if err := admin.Seed(ctx, "tee", 10, 10, 0, 0); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	for _, tt := range []struct {
		name    string
		token   string
		outcome string
		status  int
	}{
		{"no service token", "", "unauthorized", 401},
		{"the admin token", testToken, "unauthorized", 401},
		{"a wrong token", "wrong-token-0123456789", "unauthorized", 401},
		{"the service token", serviceToken, "confirmed", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, _, err := admin.Reserve(ctx, "tee", "alice", 1)
			if err != nil {
				t.Fatalf("Reserve: %v", err)
			}
			c, err := loadtest.NewClient(url, testToken, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			c.SetServiceToken(tt.token)
			outcome, err := c.Confirm(ctx, id)
			if outcome != tt.outcome {
				t.Errorf("Confirm outcome %q, want %q", outcome, tt.outcome)
			}
			wantStatus(t, err, tt.status)
		})
	}
	if it, err := admin.Item(ctx, "tee"); err != nil || it.Sold != 1 || it.Reserved != 3 {
		t.Errorf("Item = %+v, %v; want sold 1 (the one confirmed) and reserved 3 (the refused)", it, err)
	}
}

func TestClientTransportError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := newClient(t, "http://"+addr, 1)
	_, outcome, err := c.Reserve(testCtx(t), "tee", "alice", 1)
	var se *loadtest.StatusError
	if err == nil || errors.As(err, &se) || outcome != "transport" {
		t.Errorf("Reserve against a closed port = %q, %v; want outcome transport and a transport error", outcome, err)
	}
}

// wantStatus checks err is nil for status 0, else a *StatusError with it.
func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
		return
	}
	var se *loadtest.StatusError
	if !errors.As(err, &se) || se.Status != status {
		t.Errorf("err = %v, want a StatusError with status %d", err, status)
	}
}

// cannedServer answers every request with the same 201 reservation, so
// the client's own allocations can be measured apart from the service's.
func cannedServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	body := []byte(`{"id":"bench.Xq1vN0Q8b2xk7r9wAy5JdA","sku":"bench","user_id":"u1","quantity":1,"status":"pending"}`)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusCreated)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// TestReserveAllocations holds the hot path to the one allocation it must
// make: the reservation id it returns.
func TestReserveAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops objects at random); run without -race")
	}
	c := newClient(t, cannedServer(t), 1)
	ctx := testCtx(t)
	allocs := testing.AllocsPerRun(500, func() {
		if _, _, err := c.ReserveUser(ctx, "bench", "u", 1, 1); err != nil {
			t.Fatal(err)
		}
	})
	// Shared with the server in this process, which allocates nothing per
	// request for a canned answer once its connection is up.
	if allocs > 2 {
		t.Errorf("ReserveUser allocates %.1f times per call, want at most 2", allocs)
	}
}

// BenchmarkClientReserve is one reserve round trip against a canned
// answer: the generator's own cost per request (run with -benchmem).
func BenchmarkClientReserve(b *testing.B) {
	c := newClient(b, cannedServer(b), 1)
	ctx := testCtx(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := c.ReserveUser(ctx, "bench", "u", int64(i), 1); err != nil {
			b.Fatal(err)
		}
	}
}
