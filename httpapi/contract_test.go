package httpapi_test

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/console"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/contract"
	"github.com/flashsale/flashsale/reservation"
)

// TestRoutesInSpec: every route the service serves, on either listener and
// with every optional part on (console, audit, metrics), is an operation of
// api/openapi.yaml, and every operation of the spec is served: a route
// added without its contract, or a contract for a route that went, fails.
func TestRoutesInSpec(t *testing.T) {
	_, store := miniStore(t, "routes")
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:    []string{adminToken},
		ServiceTokens:  serviceTokens,
		Log:            quietLog(),
		Auditor:        &fakeAuditor{},
		MetricsHandler: http.NotFoundHandler(),
		Console:        console.New(console.Options{Items: store}),
		Internal:       true,
	})
	param := regexp.MustCompile(`:([a-z]+)`)
	var served []string
	for _, app := range []*fiber.App{srv.App(), srv.Internal()} {
		for _, r := range app.GetRoutes(true) {
			if r.Method == http.MethodHead {
				continue // fiber serves HEAD beside each GET
			}
			op := r.Method + " " + param.ReplaceAllString(r.Path, "{$1}")
			if !slices.Contains(served, op) {
				served = append(served, op)
			}
		}
	}
	spec := contract.MustLoad(t).Paths()
	for _, op := range served {
		if !slices.Contains(spec, op) {
			t.Errorf("%s is served but not in api/openapi.yaml", op)
		}
	}
	for _, op := range spec {
		if !slices.Contains(served, op) {
			t.Errorf("%s is in api/openapi.yaml but not served", op)
		}
	}
}

// TestOpenAPIServed: both listeners serve the embedded spec as is.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	r := do(t, e.app, "GET", "/openapi.yaml", "", nil)
	if r.status != 200 {
		t.Fatalf("GET /openapi.yaml: %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", ct)
	}
	if !bytes.Equal(r.raw, api.Spec()) {
		t.Errorf("served %d bytes, not the embedded spec's %d", len(r.raw), len(api.Spec()))
	}
}
