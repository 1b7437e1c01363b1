//go:build integration

package loadtest_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/loadtest"
)

// The tests here run the load generator against the in-process service on
// the real Redis (see internal/redistest; miniredis's Lua is too slow for
// thousands of requests in a test's time), so they are built only with the
// integration tag (make test-integration, make test): without Redis they
// skip, or fail under CI=true.

func TestMainJSON(t *testing.T) {
	url := startService(t, serviceOpts{realRedis: true, record: true})
	t.Setenv("FLASHSALE_ADMIN_TOKEN", testToken) // the token's default
	var stdout, stderr bytes.Buffer
	err := loadtest.Main(testCtx(t), []string{"-url", url, "-scenario", "flashcrowd",
		"-stock", "20", "-requests", "300", "-users", "150", "-clients", "8", "-json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Main: %v\nstderr: %s", err, stderr.String())
	}
	var rep loadtest.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	v := rep.Verification
	if rep.Name != "flashcrowd" || rep.Requests != 300 || !v.OK || v.Granted != 20 || v.MySQLRows != 20 || !strings.HasPrefix(v.SKU, "lt-flashcrowd-") {
		t.Errorf("report %+v; want flashcrowd, 300 requests, verified, 20 granted and recorded, a fresh SKU", rep)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr is not a terminal, yet got %q", stderr.String())
	}
}

// wantVerified fails the test with the report when verification failed.
func wantVerified(t *testing.T, rep loadtest.Report) {
	t.Helper()
	if !rep.Verification.OK || rep.Errors != 0 {
		var b strings.Builder
		_ = loadtest.WriteTable(&b, rep)
		t.Fatalf("want a clean, verified run; got:\n%s", b.String())
	}
}

// TestRunScenarioFlashCrowd: 3,000 requests from 1,500 users for 100
// units, through the real API, with the record synced to SQLite.
func TestRunScenarioFlashCrowd(t *testing.T) {
	c := newClient(t, startService(t, serviceOpts{realRedis: true, record: true}), 32)
	rep, err := loadtest.RunScenario(testCtx(t), c, loadtest.FlashCrowd(100, 3000, 1500), loadtest.Config{Clients: 32})
	if err != nil {
		t.Fatalf("RunScenario: %v", err)
	}
	wantVerified(t, rep)
	v := rep.Verification
	t.Logf("%d requests in %v, record synced %v later", rep.Requests, rep.Elapsed, v.SyncedIn)
	if rep.Requests != 3000 || v.Granted != 100 || rep.Outcomes["created"] != 100 {
		t.Errorf("%d requests, %d granted (created %d); want 3000 and 100", rep.Requests, v.Granted, rep.Outcomes["created"])
	}
	if refused := rep.Outcomes["sold_out"] + rep.Outcomes["limit_exceeded"]; refused != 2900 {
		t.Errorf("sold_out + limit_exceeded = %d, want 2900 (outcomes %v)", refused, rep.Outcomes)
	}
	if v.Available != 0 || v.Reserved != 100 || v.Sold != 0 || v.Oversold != 0 {
		t.Errorf("item available %d reserved %d sold %d oversold %d; want 0, 100, 0, 0", v.Available, v.Reserved, v.Sold, v.Oversold)
	}
	if !v.SyncChecked || v.MySQLRows != 100 || v.SyncedIn <= 0 {
		t.Errorf("record: checked %t, %d rows, synced in %v; want checked, 100 rows, a positive time", v.SyncChecked, v.MySQLRows, v.SyncedIn)
	}
}

func TestRunScenarios(t *testing.T) {
	url := startService(t, serviceOpts{realRedis: true, record: true})
	tests := []struct {
		name string
		sc   loadtest.Scenario
		cfg  loadtest.Config
		// check looks at what only this scenario guarantees.
		check func(t *testing.T, rep loadtest.Report)
	}{
		{"success", loadtest.Success(), loadtest.Config{Clients: 8, Requests: 400}, func(t *testing.T, rep loadtest.Report) {
			if rep.Verification.Granted != 400 || rep.Verification.Reserved != 400 {
				t.Errorf("granted %d, reserved %d; want every one of 400", rep.Verification.Granted, rep.Verification.Reserved)
			}
		}},
		{"mixed", loadtest.Mixed(1_000_000), loadtest.Config{Clients: 8, Requests: 400}, func(t *testing.T, rep loadtest.Report) {
			// seq % 100 picks the share: 50 confirm, 25 cancel, 25 stay.
			want := map[string]int64{"confirmed": 200, "cancelled": 100, "created": 100}
			for k, n := range want {
				if rep.Outcomes[k] != n {
					t.Errorf("outcome %s = %d, want %d (all: %v)", k, rep.Outcomes[k], n, rep.Outcomes)
				}
			}
			if v := rep.Verification; v.Sold != 200 || v.Reserved != 100 {
				t.Errorf("sold %d reserved %d, want 200 and 100", v.Sold, v.Reserved)
			}
		}},
		{"k6 sells out", loadtest.K6(150), loadtest.Config{Clients: 8, Requests: 400}, func(t *testing.T, rep loadtest.Report) {
			// Which seqs win the race decides how many are confirmed; the
			// ledger check already holds sold to the confirmations.
			if v := rep.Verification; v.Granted != 150 || v.Sold+v.Reserved != 150 || v.Sold == 0 || rep.Outcomes["sold_out"] != 250 {
				t.Errorf("granted %d, sold %d, reserved %d, sold_out %d; want 150, some, the rest, 250", v.Granted, v.Sold, v.Reserved, rep.Outcomes["sold_out"])
			}
		}},
		{"flash crowd open loop", loadtest.FlashCrowd(50, 0, 100), loadtest.Config{Clients: 16, Rate: 2000, Requests: 300}, func(t *testing.T, rep loadtest.Report) {
			if rep.Requests+rep.Dropped != 300 || rep.Verification.Granted > 50 {
				t.Errorf("sent %d + dropped %d, granted %d; want 300 in all and at most 50 granted", rep.Requests, rep.Dropped, rep.Verification.Granted)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, url, tt.cfg.Clients)
			rep, err := loadtest.RunScenario(testCtx(t), c, tt.sc, tt.cfg)
			if err != nil {
				t.Fatalf("RunScenario: %v", err)
			}
			wantVerified(t, rep)
			tt.check(t, rep)
		})
	}
}
