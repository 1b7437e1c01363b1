package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/reservation"
)

// TestInternalListener: with Config.Internal the admin routes, confirm and
// /metrics answer only on the internal app; on the public one they are
// unknown routes (404 not_found), so a deployment that keeps the internal
// listener off the public network keeps them, and every item's stock in
// /metrics, away from buyers. Buyer routes stay public only; health on both.
func TestInternalListener(t *testing.T) {
	_, store := miniStore(t, "internaltest")
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:    []string{adminToken},
		ServiceTokens:  serviceTokens,
		Log:            quietLog(),
		MetricsHandler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) }),
		Internal:       true,
	})
	pub, in := srv.App(), srv.Internal()
	if in == nil {
		t.Fatal("Internal() is nil with Config.Internal")
	}

	// The item and a hold, made where each route lives.
	wantOK(t, do(t, in, "PUT", "/admin/v1/items/mug", `{"stock":3}`, admin), 201)
	r := do(t, pub, "POST", "/v1/items/mug/reservations", `{"user_id":"u1","quantity":1}`, nil)
	wantOK(t, r, 201)
	id := r.body["id"].(string)

	tests := []struct {
		name, method, path, body string
		headers                  h
		public, internal         int // status on each app
	}{
		{"seed", "PUT", "/admin/v1/items/cup", `{"stock":1}`, admin, 404, 201},
		{"bulk seed", "PUT", "/admin/v1/items", `{"items":[{"sku":"pan","stock":1}]}`, admin, 404, 200},
		{"metrics", "GET", "/metrics", "", nil, 404, 200},
		{"confirm", "POST", "/v1/reservations/" + id + "/confirm", "", service, 404, 200},
		{"item", "GET", "/v1/items/mug", "", nil, 200, 404},
		{"reserve", "POST", "/v1/items/mug/reservations", `{"user_id":"u2","quantity":1}`, nil, 201, 404},
		{"read", "GET", "/v1/reservations/" + id, "", nil, 200, 404},
		{"healthz", "GET", "/healthz", "", nil, 200, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The internal answer second: the public one must not have
			// changed anything (confirm's 200 below proves it was pending).
			for _, side := range []struct {
				app  string
				want int
			}{{"public", tt.public}, {"internal", tt.internal}} {
				app := pub
				if side.app == "internal" {
					app = in
				}
				r := do(t, app, tt.method, tt.path, tt.body, tt.headers)
				if side.want == 404 {
					wantProblem(t, r, 404, "not_found")
					continue
				}
				if r.status != side.want {
					t.Errorf("%s: status %d, want %d: %s", side.app, r.status, side.want, r.raw)
				}
			}
		})
	}

	// A bulk seed larger than the buyers' limit, with a valid admin token,
	// is taken on the internal listener only: the public one has no bulk
	// route and grants no large body.
	big := `{"items":[{"sku":"big","stock":1}]}` + strings.Repeat(" ", 8<<10)
	wantProblem(t, do(t, pub, "PUT", "/admin/v1/items", big, admin), 413, "payload_too_large")
	wantOK(t, do(t, in, "PUT", "/admin/v1/items", big, admin), 200)
}
