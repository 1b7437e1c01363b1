// Package ceiling is the bare HTTP ceiling of the benchmark: a Fiber server
// built with the service's own settings that decodes a reservation exactly as
// the service does and answers sold out without touching any store. No
// service can answer faster over HTTP on the same machine; the sold-out path
// of the real service is measured against it.
package ceiling

import (
	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/httpapi"
)

// ReservePath is the one route, the service's reserve endpoint.
const ReservePath = "/v1/items/:sku/reservations"

const problemContentType = "application/problem+json"

// soldOut is the shape and size of the service's sold_out problem document
// (instance and request_id included), so the ceiling writes as many bytes
// per answer as the service does.
var soldOut = []byte(`{"type":"urn:flashsale:problem:sold_out","title":"Sold out","status":409,` +
	`"detail":"sold out: 0 units available","code":"sold_out",` +
	`"instance":"/v1/items/ceiling/reservations","request_id":"000000000000000000000000"}`)

// invalid answers a body the service would refuse, so a broken load
// generator shows up as errors instead of as a fast ceiling.
var invalid = []byte(`{"type":"urn:flashsale:problem:invalid_request","title":"Invalid request",` +
	`"status":400,"detail":"the reservation could not be decoded","code":"invalid_request"}`)

// New returns the ceiling app: POST /v1/items/:sku/reservations decodes the
// body with httpapi.DecodeReserve and answers 409 sold_out.
func New() *fiber.App {
	app := fiber.New(httpapi.FiberConfig(httpapi.Config{
		ReadTimeout:  httpapi.DefaultReadTimeout,
		WriteTimeout: httpapi.DefaultWriteTimeout,
		IdleTimeout:  httpapi.DefaultIdleTimeout,
	}))
	app.Post(ReservePath, reserve)
	return app
}

func reserve(c *fiber.Ctx) error {
	// The header is passed as Peek returns it: nil when absent, which is
	// what DecodeReserve expects.
	if _, err := httpapi.DecodeReserve(c.Params("sku"), c.Request().Body(),
		c.Request().Header.Peek("Idempotency-Key")); err != nil {
		c.Set(fiber.HeaderContentType, problemContentType)
		return c.Status(fiber.StatusBadRequest).Send(invalid)
	}
	c.Set(fiber.HeaderContentType, problemContentType)
	return c.Status(fiber.StatusConflict).Send(soldOut)
}
