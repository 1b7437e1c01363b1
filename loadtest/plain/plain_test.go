package plain

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
)

func TestReserve(t *testing.T) {
	ctx := context.Background()
	m := miniredis.RunT(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: m.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	const prefix = "pt"
	if err := Seed(ctx, rdb, prefix, "mug", 2); err != nil {
		t.Fatal(err)
	}
	app := New(rdb, prefix, "x")

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantInBody string
	}{
		{name: "first user takes a hold", body: `{"user_id":"u1","quantity":1}`, wantStatus: 201, wantInBody: `"id":"mug.x`},
		{name: "same user again is over the limit", body: `{"user_id":"u1","quantity":1}`, wantStatus: 409, wantInBody: `"code":"limit_exceeded"`},
		{name: "second user takes the last unit", body: `{"user_id":"u2","quantity":1}`, wantStatus: 201, wantInBody: `"user_id":"u2"`},
		{name: "third user finds it sold out", body: `{"user_id":"u3","quantity":1}`, wantStatus: 409, wantInBody: `"code":"sold_out"`},
		{name: "malformed body", body: `{"user_id":`, wantStatus: 400, wantInBody: `"code":"invalid_request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/items/mug/reservations", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := app.Test(req, -1)
			if err != nil {
				t.Fatalf("app.Test: %v", err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(raw), tt.wantInBody) {
				t.Errorf("answer %d %s, want %d with %s", resp.StatusCode, raw, tt.wantStatus, tt.wantInBody)
			}
		})
	}

	st, err := Read(ctx, rdb, prefix, "mug")
	if err != nil {
		t.Fatal(err)
	}
	if st != (State{Available: 0, Holds: 2, Outbox: 2}) {
		t.Errorf("state %+v, want 0 left, 2 holds, 2 outbox entries", st)
	}
	if err := st.Check(2, 1); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestStateCheck(t *testing.T) {
	tests := []struct {
		name    string
		st      State
		wantErr bool
	}{
		{name: "consistent", st: State{Available: 7, Holds: 3, Outbox: 3}},
		{name: "more holds than stock", st: State{Available: 0, Holds: 11, Outbox: 11}, wantErr: true},
		{name: "negative stock", st: State{Available: -1, Holds: 10, Outbox: 10}, wantErr: true},
		{name: "units taken without a hold", st: State{Available: 6, Holds: 3, Outbox: 3}, wantErr: true},
		{name: "hold without an outbox entry", st: State{Available: 7, Holds: 3, Outbox: 2}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.st.Check(10, 1); (err != nil) != tt.wantErr {
				t.Errorf("Check = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}
