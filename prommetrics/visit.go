package prommetrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// VisitReservations calls visit with every (sku, outcome) count of
// flashsale_reservations_total so far: the sale console's rates come from
// the same counters Prometheus scrapes, without a scrape's Redis read.
func (m *Metrics) VisitReservations(visit func(sku, outcome string, n uint64)) {
	ch := make(chan prometheus.Metric, 256)
	go func() {
		m.reservations.Collect(ch)
		close(ch)
	}()
	var d dto.Metric
	for metric := range ch {
		d.Reset()
		if metric.Write(&d) != nil || d.Counter == nil {
			continue
		}
		var sku, outcome string
		for _, l := range d.Label {
			switch l.GetName() {
			case "sku":
				sku = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			}
		}
		visit(sku, outcome, uint64(d.Counter.GetValue()))
	}
}
