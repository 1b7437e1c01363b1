package loadtest_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/loadtest"
)

func sampleReport() loadtest.Report {
	return loadtest.Report{
		Result: loadtest.Result{
			Name: "flashcrowd", Requests: 2000, Errors: 1, Dropped: 3, Elapsed: 2 * time.Second, Throughput: 1000,
			P50: 1500 * time.Microsecond, P90: 4 * time.Millisecond, P99: 12 * time.Millisecond,
			P999: 20 * time.Millisecond, Max: 1200 * time.Millisecond,
			Outcomes: map[string]int64{"created": 100, "sold_out": 1899, "http_500": 1}, FirstError: "HTTP 500",
		},
		Verification: loadtest.Verification{
			SKU: "lt-x", Stock: 100, Reserved: 100, Granted: 100, GrantedUnits: 100, SyncChecked: true,
			MySQLRows: 100, SyncedIn: 250 * time.Millisecond, OK: true, Problems: []string{},
		},
	}
}

func TestReportJSON(t *testing.T) {
	rep := sampleReport()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	// The wire names the orchestrator reads, and milliseconds for latency.
	var flat map[string]any
	if err := json.Unmarshal(b, &flat); err != nil {
		t.Fatalf("Unmarshal into a map: %v", err)
	}
	want := map[string]any{
		"name": "flashcrowd", "requests": 2000.0, "errors": 1.0, "dropped": 3.0, "elapsed_ns": 2e9,
		"throughput_rps": 1000.0, "p50_ms": 1.5, "p90_ms": 4.0, "p99_ms": 12.0, "p999_ms": 20.0, "max_ms": 1200.0,
		"first_error": "HTTP 500",
	}
	for k, v := range want {
		if flat[k] != v {
			t.Errorf("%s = %v, want %v (JSON %s)", k, flat[k], v, b)
		}
	}
	if ver, ok := flat["verification"].(map[string]any); !ok || ver["ok"] != true || ver["mysql_rows"] != 100.0 {
		t.Errorf("verification = %v, want an object with ok true and mysql_rows 100", flat["verification"])
	}

	var back loadtest.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(back, rep) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, rep)
	}
}

func TestWriteTable(t *testing.T) {
	failed := sampleReport()
	failed.Name = "success"
	failed.Verification.OK = false
	failed.Verification.Problems = []string{"OVERSOLD by 3"}
	var b strings.Builder
	if err := loadtest.WriteTable(&b, sampleReport(), failed); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	out := b.String()
	for _, want := range []string{
		"scenario", "p99.9", "flashcrowd", "2000", "1.5ms", "12ms", "1.2s",
		"flashcrowd outcomes: created=100 http_500=1 sold_out=1899",
		"flashcrowd first error: HTTP 500",
		"flashcrowd verification OK", "mysql_rows=100 synced_in=250ms",
		"success verification FAILED", "  - OVERSOLD by 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
