package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/client"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/contract"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

const (
	adminToken   = "client-admin-token-0123456"
	serviceToken = "client-service-token-0123456"
)

// startService serves the real API (httpapi over reservation.Service over
// redisstore on a miniredis, with an SQLite record for the audit) on a
// loopback port until the test ends.
func startService(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	m := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := redisstore.New(ctx, rdb, "client")
	if err != nil {
		t.Fatal(err)
	}
	db, err := persistence.Open(ctx, "", filepath.Join(t.TempDir(), "record.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens: []string{adminToken}, ServiceTokens: []string{serviceToken},
		Log: slog.New(slog.DiscardHandler), Auditor: &persistence.Auditor{Store: store, DB: db},
	})
	return "http://" + testenv.Serve(t, srv)
}

// checked is fasthttp's transport with every exchange checked against
// api/openapi.yaml.
type checked struct{ t *testing.T }

func (c checked) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	retry, err := fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
	if err != nil {
		return retry, err
	}
	hreq, herr := http.NewRequest(string(req.Header.Method()), req.URI().String(), bytes.NewReader(req.Body()))
	if herr != nil {
		c.t.Errorf("contract: %v", herr)
		return retry, nil
	}
	req.Header.VisitAll(func(k, v []byte) { hreq.Header.Add(string(k), string(v)) })
	header := http.Header{}
	resp.Header.VisitAll(func(k, v []byte) { header.Add(string(k), string(v)) })
	if cerr := contract.MustLoad(c.t).Check(hreq, req.Body(), resp.StatusCode(), header, resp.Body()); cerr != nil {
		c.t.Errorf("contract: %v", cerr)
	}
	return retry, nil
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, append([]client.Option{client.WithTransport(checked{t})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestClient drives every call against the real API, each exchange checked
// against the spec: a sale from seed to confirm and cancel, and each class
// of refusal as a *Problem with its code.
func TestClient(t *testing.T) {
	ctx := context.Background()
	url := startService(t)
	admin := newClient(t, url, client.WithAdminToken(adminToken))
	buyer := newClient(t, url)
	payments := newClient(t, url, client.WithServiceToken(serviceToken))

	it, created, err := admin.Seed(ctx, "mug", client.ItemSpec{Name: "Mug", Stock: 2, PerUserLimit: 1})
	if err != nil || !created || it.Available != 2 || it.Name != "Mug" {
		t.Fatalf("Seed: %+v created=%v err=%v", it, created, err)
	}
	if _, created, err := admin.Seed(ctx, "mug", client.ItemSpec{Name: "Mug", Stock: 2, PerUserLimit: 1}); err != nil || created {
		t.Fatalf("Seed again: created=%v err=%v, want an update", created, err)
	}
	results, err := admin.SeedMany(ctx, []client.ItemSpec{{SKU: "cap", Stock: 1}, {SKU: "gone", Stock: 0}})
	if err != nil || len(results) != 2 || results[0].Result != "created" || results[0].Item == nil {
		t.Fatalf("SeedMany: %+v, %v", results, err)
	}

	r, replayed, err := buyer.Reserve(ctx, "mug", client.ReserveRequest{UserID: "alice", Quantity: 1, IdempotencyKey: "order-1"})
	if err != nil || replayed || r.Status != "pending" || r.SKU != "mug" || r.ExpiresAt.IsZero() {
		t.Fatalf("Reserve: %+v replayed=%v err=%v", r, replayed, err)
	}
	again, replayed, err := buyer.Reserve(ctx, "mug", client.ReserveRequest{UserID: "alice", Quantity: 1, IdempotencyKey: "order-1"})
	if err != nil || !replayed || again.ID != r.ID {
		t.Fatalf("Reserve replayed: %+v replayed=%v err=%v, want %s", again, replayed, err, r.ID)
	}
	if got, err := buyer.Reservation(ctx, r.ID, "alice"); err != nil || got.ID != r.ID {
		t.Fatalf("Reservation: %+v, %v", got, err)
	}
	if got, err := payments.Confirm(ctx, r.ID); err != nil || got.Status != "confirmed" {
		t.Fatalf("Confirm: %+v, %v", got, err)
	}
	bob, _, err := buyer.Reserve(ctx, "mug", client.ReserveRequest{UserID: "bob", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := buyer.Cancel(ctx, bob.ID, "bob"); err != nil || got.Status != "cancelled" {
		t.Fatalf("Cancel: %+v, %v", got, err)
	}
	if got, err := buyer.Item(ctx, "mug"); err != nil || got.Sold != 1 || got.Available != 1 {
		t.Fatalf("Item: %+v, %v", got, err)
	}
	if _, err := admin.Audit(ctx, "mug"); err != nil {
		t.Fatalf("Audit: %v", err)
	}

	refusals := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"sold out", func() error {
			_, _, err := buyer.Reserve(ctx, "gone", client.ReserveRequest{UserID: "carol", Quantity: 1})
			return err
		}, 409, "sold_out"},
		{"over the limit", func() error {
			_, _, err := buyer.Reserve(ctx, "mug", client.ReserveRequest{UserID: "alice", Quantity: 1})
			return err
		}, 409, "limit_exceeded"},
		{"key reused", func() error {
			_, _, err := buyer.Reserve(ctx, "mug", client.ReserveRequest{UserID: "alice", Quantity: 2, IdempotencyKey: "order-1"})
			return err
		}, 422, "idempotency_key_reused"},
		{"confirm a cancelled hold", func() error { _, err := payments.Confirm(ctx, bob.ID); return err }, 409, "reservation_cancelled"},
		{"confirm without the service token", func() error { _, err := buyer.Confirm(ctx, bob.ID); return err }, 401, "unauthorized"},
		{"seed without the admin token", func() error { _, _, err := buyer.Seed(ctx, "x", client.ItemSpec{Stock: 1}); return err }, 401, "unauthorized"},
		{"unknown item", func() error { _, err := buyer.Item(ctx, "nope"); return err }, 404, "item_not_found"},
		{"bad sku", func() error { _, err := buyer.Item(ctx, "no spaces"); return err }, 400, "invalid_request"},
		{"unknown reservation", func() error {
			_, err := buyer.Reservation(ctx, "mug.AAAAAAAAAAAAAAAAAAAAAA", "alice")
			return err
		}, 404, "reservation_not_found"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var p *client.Problem
			if !errors.As(err, &p) || p.Status != tc.status || !client.IsCode(err, tc.code) || p.RequestID == "" {
				t.Fatalf("err = %#v, want a *Problem %d %s with a request id", err, tc.status, tc.code)
			}
		})
	}
}

// TestTryCalls: the load generators' calls count a 409 as an outcome and
// anything else unexpected as a *Problem.
func TestTryCalls(t *testing.T) {
	ctx := context.Background()
	url := startService(t)
	c := newClient(t, url, client.WithAdminToken(adminToken), client.WithServiceToken(serviceToken))
	if _, _, err := c.Seed(ctx, "tee", client.ItemSpec{Stock: 1}); err != nil {
		t.Fatal(err)
	}
	id, outcome, err := c.TryReserve(ctx, "tee", "u", 1, 1)
	if err != nil || outcome != "created" || id == "" {
		t.Fatalf("TryReserve: %q %q %v", id, outcome, err)
	}
	if _, outcome, err := c.TryReserve(ctx, "tee", "u", 2, 1); err != nil || outcome != "sold_out" {
		t.Fatalf("TryReserve sold out: %q %v", outcome, err)
	}
	if outcome, err := c.TryConfirm(ctx, id); err != nil || outcome != "confirmed" {
		t.Fatalf("TryConfirm: %q %v", outcome, err)
	}
	if outcome, err := c.TryCancel(ctx, id, "u1"); err != nil || outcome != "reservation_confirmed" {
		t.Fatalf("TryCancel a confirmed hold: %q %v", outcome, err)
	}
	if _, outcome, err := c.TryReserve(ctx, "nope", "u", 3, 1); !client.IsCode(err, "item_not_found") || outcome != "item_not_found" {
		t.Fatalf("TryReserve unknown item: %q %v", outcome, err)
	}
}

// TestProblemRetryAfter: a 503's Retry-After reaches the caller.
func TestProblemRetryAfter(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := redisstore.New(context.Background(), rdb, "down")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{AdminTokens: []string{adminToken}, Log: slog.New(slog.DiscardHandler)})
	url := "http://" + testenv.Serve(t, srv)
	m.Close()
	c := newClient(t, url, client.WithTimeout(5*time.Second))
	_, err = c.Item(context.Background(), "mug")
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != 503 || p.RetryAfter != time.Second {
		t.Fatalf("err = %#v, want a 503 with Retry-After 1s", err)
	}
}
