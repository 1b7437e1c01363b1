package loadtest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/loadtest"
)

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

// overseller is a fake flashsale that grants every reservation whatever
// its stock: the bug the verification exists to catch.
func overseller(t *testing.T, stock int64) string {
	t.Helper()
	var granted atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /admin/v1/items/{sku}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{}`)
	})
	mux.HandleFunc("POST /v1/items/{sku}/reservations", func(w http.ResponseWriter, r *http.Request) {
		n := granted.Add(1)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"%s.r%d","status":"pending"}`, r.PathValue("sku"), n)
	})
	mux.HandleFunc("GET /v1/items/{sku}", func(w http.ResponseWriter, r *http.Request) {
		g := granted.Load()
		fmt.Fprintf(w, `{"sku":%q,"stock":%d,"available":%d,"reserved":%d,"sold":0}`, r.PathValue("sku"), stock, stock-g, g)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestVerificationCatchesOversell(t *testing.T) {
	c := newClient(t, overseller(t, 10), 4)
	sc := loadtest.FlashCrowd(10, 50, 50)
	sc.NoSyncCheck = true
	rep, err := loadtest.RunScenario(testCtx(t), c, sc, loadtest.Config{Clients: 4})
	if err != nil {
		t.Fatalf("RunScenario: %v", err)
	}
	v := rep.Verification
	if v.OK || v.Oversold != 40 || v.Granted != 50 {
		t.Fatalf("verification %+v; want failed, oversold 40, granted 50", v)
	}
	for _, want := range []string{"OVERSOLD by 40", "available -40", "granted 50 reservations to 50 distinct users for 10 units, want 10"} {
		if !strings.Contains(strings.Join(v.Problems, "\n"), want) {
			t.Errorf("problems %q: none mentions %q", v.Problems, want)
		}
	}
}

func TestVerificationWithoutRecord(t *testing.T) {
	url := startService(t, serviceOpts{})
	tests := []struct {
		name    string
		noSync  bool
		ok      bool
		message string // in Problems when !ok, in Notes when ok
	}{
		{"sync check asked", false, false, "no audit endpoint"},
		{"sync check skipped", true, true, "durable record not checked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := loadtest.FlashCrowd(5, 20, 20)
			sc.NoSyncCheck, sc.SyncTimeout = tt.noSync, 2*time.Second
			rep, err := loadtest.RunScenario(testCtx(t), newClient(t, url, 2), sc, loadtest.Config{Clients: 2})
			if err != nil {
				t.Fatalf("RunScenario: %v", err)
			}
			v := rep.Verification
			msgs := v.Problems
			if tt.ok {
				msgs = v.Notes
			}
			if v.OK != tt.ok || !strings.Contains(strings.Join(msgs, "\n"), tt.message) {
				t.Errorf("verification %+v; want ok %t and a message with %q", v, tt.ok, tt.message)
			}
		})
	}
}

func TestRunScenarioRefusesUsedItem(t *testing.T) {
	c := newClient(t, startService(t, serviceOpts{}), 2)
	ctx := testCtx(t)
	if err := c.Seed(ctx, "used", 10, 1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Reserve(ctx, "used", "someone", 1); err != nil {
		t.Fatal(err)
	}
	sc := loadtest.FlashCrowd(10, 20, 20)
	sc.SKU, sc.NoSyncCheck = "used", true
	if _, err := loadtest.RunScenario(ctx, c, sc, loadtest.Config{Clients: 2}); err == nil || !strings.Contains(err.Error(), "fresh item") {
		t.Errorf("RunScenario on an item with a reservation: %v, want a refusal asking for a fresh item", err)
	}
}
