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
