package httpapi

import (
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
)

// Metrics receives what the API observes. It is called on every request
// from many goroutines, the reserve route included: implementations must
// not block, and should not allocate once a label set has been seen.
type Metrics interface {
	// ObserveRequest counts a request. route is the pattern that answered
	// (never the raw path, so the set stays bounded); status is final.
	ObserveRequest(route, method string, status int, d time.Duration)
	// ObserveReserve counts a request that reached the reserve handler. sku
	// is UnknownSKU unless the outcome proves the item exists, so a client
	// cannot mint series by naming items.
	ObserveReserve(sku, outcome string)
}

// UnknownSKU stands for the item of a reservation whose outcome does not
// prove the item exists (not found, invalid, Redis unreachable...).
const UnknownSKU = "_unknown"

// reserveRoute is the pattern of the reserve handler, as Fiber reports it.
const reserveRoute = "/v1/items/:sku/reservations"

// serveMetrics registers GET /metrics on app. Like most exporters it needs
// no credentials: it shows counts, never user ids. It does show every
// item's stock, sales window or not: a deployment that wants that private
// serves it on the internal listener (Config.Internal).
func (s *Server) serveMetrics(app *fiber.App) {
	if s.metricsHandler != nil {
		app.Get("/metrics", adaptor.HTTPHandler(s.metricsHandler))
	}
}

// observe reports a request that has been answered; code is its problem
// code, "" when it succeeded. front calls it last, so the status is final.
func (s *Server) observe(c *fiber.Ctx, code string) {
	// After the chain, Route is the last route that ran: the handler's, or
	// a middleware's prefix (/, /v1, /admin/v1) when one answered first.
	r := c.Route()
	status := c.Response().StatusCode()
	if r.Path == reserveRoute && r.Method == fiber.MethodPost {
		outcome := code
		if outcome == "" {
			outcome = "created"
			if status == fiber.StatusOK {
				outcome = "replayed"
			}
		}
		sku := UnknownSKU
		if itemExists(outcome) {
			sku = c.Params("sku")
		}
		s.metrics.ObserveReserve(sku, outcome)
	}
	s.metrics.ObserveRequest(r.Path, c.Method(), status, sinceArrival(c))
}

// sinceArrival is how long ago fasthttp handed the request to the router
// (it reads the clock for every request anyway), at least a nanosecond.
func sinceArrival(c *fiber.Ctx) time.Duration {
	return max(time.Since(c.Context().Time()), time.Nanosecond)
}

// itemExists reports whether a reserve outcome proves the item exists:
// the store answered about it (or the durable record knows it, when it is
// recovering). The rest may name any SKU a client makes up.
func itemExists(outcome string) bool {
	switch outcome {
	case "created", "replayed", "sold_out", "limit_exceeded", "sale_not_active", "idempotency_key_reused", "recovering":
		return true
	}
	return false
}
