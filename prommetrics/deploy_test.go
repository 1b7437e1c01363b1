package prommetrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/reservation"
)

// oneItem is a catalogue of one item, for the per-item gauges.
type oneItem struct{}

func (oneItem) Counters(context.Context, int) ([]reservation.Item, int, error) {
	return []reservation.Item{{SKU: "mug", Stock: 5, Available: 3, Reserved: 1, Sold: 1}}, 1, nil
}

// metricRef matches a metric name the deploy files use: every name the
// service exports starts with one of these prefixes.
var metricRef = regexp.MustCompile(`\b(?:flashsale|go|process)_[a-zA-Z0-9_]+`)

// TestDeployFilesNameExportedMetrics: every metric the Grafana dashboard
// and the alert rules (and their unit tests) name is one a scrape of the
// service returns, so a renamed metric cannot leave a panel empty or an
// alert silent. It scrapes a test server's /metrics with every source set
// and every instrument used once.
func TestDeployFilesNameExportedMetrics(t *testing.T) {
	m := prommetrics.New(prommetrics.Config{Items: oneItem{}, Sync: newFakeSync(), Recovery: fakeRecovery{1, 2}})
	m.ObserveRequest("/v1/items/:sku/reservations", "POST", 201, time.Millisecond)
	m.ObserveReserve("mug", "created")
	m.ObserveBatch(3, time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	exported := map[string]bool{}
	for name, f := range families {
		exported[name] = true
		switch f.GetType().String() {
		case "HISTOGRAM":
			exported[name+"_bucket"], exported[name+"_sum"], exported[name+"_count"] = true, true, true
		case "SUMMARY":
			exported[name+"_sum"], exported[name+"_count"] = true, true
		}
	}

	files := []string{
		"../deploy/grafana/flashsale.json",
		"../deploy/prometheus/alerts.yml",
		"../deploy/prometheus/alerts_test.yml",
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			refs := metricRef.FindAllString(string(b), -1)
			if len(refs) == 0 {
				t.Fatalf("%s names no metric", file)
			}
			var unknown []string
			for _, ref := range refs {
				if !exported[ref] && !slices.Contains(unknown, ref) {
					unknown = append(unknown, ref)
				}
			}
			if len(unknown) > 0 {
				t.Errorf("%s names metrics the service does not export: %v", file, unknown)
			}
		})
	}
}
