package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunMetrics runs the whole service with FLASHSALE_METRICS on and off:
// on, /metrics shows the store, the recoverer and the syncer (whose batch
// hook is wired: a reservation ends up in the batch histogram); off, there
// is no such route.
func TestRunMetrics(t *testing.T) {
	const token = "metrics-test-token-0123"
	tests := []struct {
		name       string
		metrics    string
		wantStatus int
		wantLines  []string // lines /metrics must hold once the syncer has caught up
	}{
		{"on by default", "", http.StatusOK, []string{
			"flashsale_redis_up 1", "flashsale_catalog_items 1", `flashsale_item_units{sku="tee",state="reserved"} 1`,
			"flashsale_recovery_rebuilding_items 0", "flashsale_sync_backlog_entries", "flashsale_sync_batch_size_count",
			`flashsale_reservations_total{outcome="created",sku="tee"} 1`,
		}},
		{"off", "false", http.StatusNotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := startRun(t, map[string]string{
				"FLASHSALE_ADMIN_TOKEN": token, "FLASHSALE_METRICS": tc.metrics, "FLASHSALE_AUDIT_INTERVAL": "0",
			})
			call := func(method, path, body string) (int, string) { return svc.call(t, token, method, path, body) }
			deadline := time.Now().Add(10 * time.Second)
			if status, body := call("PUT", "/admin/v1/items/tee", `{"stock":3}`); status != http.StatusCreated {
				t.Fatalf("seed: %d %s", status, body)
			}
			if status, body := call("POST", "/v1/items/tee/reservations", `{"user_id":"alice","quantity":1}`); status != http.StatusCreated {
				t.Fatalf("reserve: %d %s", status, body)
			}
			for {
				status, body := call("GET", "/metrics", "")
				if status != tc.wantStatus {
					t.Fatalf("GET /metrics: %d, want %d: %s", status, tc.wantStatus, body)
				}
				missing := missingLines(body, tc.wantLines)
				if len(missing) == 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("/metrics lacks %q:\n%s", missing, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// missingLines lists the wanted prefixes no line of body starts with.
func missingLines(body string, want []string) []string {
	var missing []string
	for _, w := range want {
		found := false
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, w) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return missing
}
