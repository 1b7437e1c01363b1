package ceiling

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReserve(t *testing.T) {
	app := New()
	tests := []struct {
		name       string
		path       string
		body       string
		idemKey    *string
		wantStatus int
		wantCode   string
	}{
		{name: "valid reservation is sold out", path: "/v1/items/mug/reservations",
			body: `{"user_id":"u1","quantity":1}`, wantStatus: 409, wantCode: "sold_out"},
		{name: "valid idempotency key is sold out", path: "/v1/items/mug/reservations",
			body: `{"user_id":"u1","quantity":1}`, idemKey: ptr("order-1"), wantStatus: 409, wantCode: "sold_out"},
		{name: "malformed body is refused", path: "/v1/items/mug/reservations",
			body: `{"user_id":`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field is refused", path: "/v1/items/mug/reservations",
			body: `{"user_id":"u1","quantity":1,"qty":2}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "empty idempotency key is refused", path: "/v1/items/mug/reservations",
			body: `{"user_id":"u1","quantity":1}`, idemKey: ptr(""), wantStatus: 400, wantCode: "invalid_request"},
		{name: "bad sku is refused", path: "/v1/items/" + strings.Repeat("s", 200) + "/reservations",
			body: `{"user_id":"u1","quantity":1}`, wantStatus: 400, wantCode: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.idemKey != nil {
				req.Header.Set("Idempotency-Key", *tt.idemKey)
			}
			resp, err := app.Test(req, -1)
			if err != nil {
				t.Fatalf("app.Test: %v", err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problemContentType {
				t.Errorf("Content-Type = %q, want %q", ct, problemContentType)
			}
			var p struct {
				Code   string `json:"code"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, raw)
			}
			if p.Code != tt.wantCode || p.Status != tt.wantStatus {
				t.Errorf("problem code %q status %d, want %q %d", p.Code, p.Status, tt.wantCode, tt.wantStatus)
			}
		})
	}
}

func ptr(s string) *string { return &s }
