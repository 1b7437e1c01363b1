package prommetrics_test

import (
	"reflect"
	"testing"

	"github.com/flashsale/flashsale/prommetrics"
)

// TestVisitReservations: the console's rates read the reservation counters
// as Prometheus would scrape them, the cap's _other included.
func TestVisitReservations(t *testing.T) {
	m := prommetrics.New(prommetrics.Config{MaxItems: 2})
	for _, o := range []struct{ sku, outcome string }{
		{"a", "created"}, {"a", "created"}, {"a", "sold_out"}, {"b", "created"}, {"c", "created"},
	} {
		m.ObserveReserve(o.sku, o.outcome)
	}
	got := map[[2]string]uint64{}
	m.VisitReservations(func(sku, outcome string, n uint64) { got[[2]string{sku, outcome}] += n })
	want := map[[2]string]uint64{{"a", "created"}: 2, {"a", "sold_out"}: 1, {"b", "created"}: 1, {prommetrics.OtherSKU, "created"}: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("visited %v, want %v", got, want)
	}
}
