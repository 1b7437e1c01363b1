package httpapi

import (
	"errors"
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/reservation"
)

// problem is an RFC 9457 problem document. Code is the stable, machine-readable
// name clients switch on; Title and Detail are for people.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

const problemContentType = "application/problem+json"

// kind is the status, code and title of one class of error.
type kind struct {
	status int
	code   string
	title  string
}

// typ is the problem type URI of k.
func (k kind) typ() string { return problemTypePrefix + k.code }

const problemTypePrefix = "urn:flashsale:problem:"

// domainKinds is the one place where domain errors meet HTTP.
var domainKinds = []struct {
	err error
	kind
}{
	{reservation.ErrInvalid, kind{fiber.StatusBadRequest, "invalid_request", "Invalid request"}},
	{reservation.ErrItemNotFound, kind{fiber.StatusNotFound, "item_not_found", "Item not found"}},
	{reservation.ErrReservationNotFound, kind{fiber.StatusNotFound, "reservation_not_found", "Reservation not found"}},
	{reservation.ErrSoldOut, kindSoldOut},
	{reservation.ErrLimitExceeded, kind{fiber.StatusConflict, "limit_exceeded", "Per-user limit exceeded"}},
	{reservation.ErrSaleNotActive, kind{fiber.StatusConflict, "sale_not_active", "Sale not active"}},
	{reservation.ErrReservationExpired, kind{fiber.StatusConflict, "reservation_expired", "Reservation expired"}},
	{reservation.ErrReservationCancelled, kind{fiber.StatusConflict, "reservation_cancelled", "Reservation cancelled"}},
	{reservation.ErrReservationConfirmed, kind{fiber.StatusConflict, "reservation_confirmed", "Reservation confirmed"}},
	{reservation.ErrStockBelowCommitted, kind{fiber.StatusConflict, "stock_below_committed", "Stock below committed units"}},
	{reservation.ErrBucketsImmutable, kind{fiber.StatusConflict, "buckets_immutable", "Bucket count cannot change"}},
	{reservation.ErrIdempotencyKeyReused, kind{fiber.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency key reused"}},
	{reservation.ErrRateLimited, kind{fiber.StatusTooManyRequests, "rate_limited", "Too many requests"}},
	{reservation.ErrRecovering, kind{fiber.StatusServiceUnavailable, "recovering", "Item recovering"}},
	{reservation.ErrUnavailable, kind{fiber.StatusServiceUnavailable, "unavailable", "Service unavailable"}},
}

// Errors that come from HTTP itself rather than from the domain.
var (
	errUnauthorized = &httpError{kindUnauthorized,
		"a valid admin bearer token is required"}
	errServiceUnauthorized = &httpError{kindUnauthorized,
		"a valid service bearer token is required: confirm is the payment backend's call"}
	errBuyerUnauthorized = &httpError{kindUnauthorized,
		"a buyer bearer token (a JWT from the shop's identity provider) is required"}
	errForbiddenUser = &httpError{kind{fiber.StatusForbidden, "forbidden", "Forbidden"},
		"user_id is not the user the bearer token names: a buyer reserves for itself only (leave user_id out)"}
	errTooLarge = &httpError{kind{fiber.StatusRequestEntityTooLarge, "payload_too_large", "Payload too large"},
		"the request body is larger than this endpoint accepts"}
	errMediaType = &httpError{kind{fiber.StatusUnsupportedMediaType, "unsupported_media_type", "Unsupported media type"},
		"the request body must be JSON, sent with Content-Type: application/json"}
	errContentEncoding = &httpError{kind{fiber.StatusUnsupportedMediaType, "unsupported_media_type", "Unsupported media type"},
		"the request body must be sent without a Content-Encoding (no gzip, deflate or br)"}
	kindSoldOut  = kind{fiber.StatusConflict, "sold_out", "Sold out"}
	kindInternal = kind{fiber.StatusInternalServerError, "internal", "Internal server error"}
	// kindUnauthorized is shared by every missing or refused credential:
	// the detail and the challenge say which one was wanted.
	kindUnauthorized = kind{fiber.StatusUnauthorized, "unauthorized", "Unauthorized"}
)

// httpError is an error raised by the HTTP layer with its own kind.
type httpError struct {
	kind
	detail string
}

func (e *httpError) Error() string { return e.detail }

// classify finds the kind of err and the detail to show the client.
func classify(err error) (kind, string) {
	// A sold-out crowd's refusal and the HTTP layer's own come as they are,
	// unwrapped: found without errors.As's reflection.
	switch e := err.(type) {
	case *reservation.SoldOutError:
		return kindSoldOut, e.Error()
	case *httpError:
		return e.kind, e.detail
	}
	var he *httpError
	if errors.As(err, &he) {
		return he.kind, he.detail
	}
	for _, d := range domainKinds {
		if errors.Is(err, d.err) {
			if d.err == reservation.ErrUnavailable {
				// The cause names the store's host and port and the
				// adapter's internals: that is for the logs, not clients.
				return d.kind, "the reservation store did not answer; try again later"
			}
			if d.err == reservation.ErrRecovering {
				return d.kind, "the store lost this item and it is being rebuilt from the durable record; nothing was changed, retry shortly"
			}
			return d.kind, err.Error()
		}
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			return errTooLarge.kind, errTooLarge.detail
		case fiber.StatusNotFound:
			return kind{fe.Code, "not_found", "Not found"}, "no such endpoint"
		case fiber.StatusMethodNotAllowed:
			return kind{fe.Code, "method_not_allowed", "Method not allowed"}, fe.Message
		}
		if fe.Code < 500 {
			return kind{fe.Code, "invalid_request", "Invalid request"}, fe.Message
		}
	}
	// Never show a client the text of an error we did not expect.
	return kindInternal, "the server failed to handle the request; see its logs"
}

// errorHandler is Fiber's ErrorHandler: every error any handler or
// middleware returns ends here as a problem document.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	k, detail := classify(err)
	if err := s.writeProblem(c, err, k, detail, requestIDBytes(c)); err != nil {
		return err
	}
	if s.metrics != nil {
		// front handles every error of the chain; what ends here was
		// refused by fasthttp before any route ran (a body over its limit,
		// headers too large), so nothing counted it yet.
		s.metrics.ObserveRequest("/", c.Method(), c.Response().StatusCode(), sinceArrival(c))
	}
	return nil
}

// writeProblem logs err as its kind deserves and answers its problem
// document; front calls it with the kind it classified and the request's
// id (empty: the request has none yet).
func (s *Server) writeProblem(c *fiber.Ctx, err error, k kind, detail string, rid []byte) error {
	var idBuf [maxRequestID]byte
	if len(rid) == 0 {
		rid = s.assignRequestID(c, idBuf[:0])
	}
	// Refusals are the flash crowd's common answer: the debug lines' arguments
	// are built only when someone reads them.
	debug := s.log.Enabled(c.UserContext(), slog.LevelDebug)
	switch {
	case k.status == fiber.StatusServiceUnavailable:
		// Redis down or an item being rebuilt: the cause is logged where it
		// is noticed; one line per refused buyer would flood the log.
		if debug {
			s.log.Debug("request refused: unavailable", "request_id", string(rid), "method", c.Method(), "path", c.Path(),
				"code", k.code, "err", err)
		}
		c.Set(fiber.HeaderRetryAfter, "1")
	case k.status >= 500:
		s.log.Error("request failed", "request_id", string(rid), "method", c.Method(), "path", c.Path(),
			"status", k.status, "err", err)
	case debug:
		s.log.Debug("request refused", "request_id", string(rid), "method", c.Method(), "path", c.Path(),
			"status", k.status, "code", k.code, "detail", detail)
	}
	if k.status == fiber.StatusUnauthorized {
		realm := "flashsale-admin"
		if errors.Is(err, errServiceUnauthorized) {
			realm = "flashsale-service"
		}
		challenge := `Bearer realm="` + realm + `"`
		var ce *challengeError
		switch {
		case errors.As(err, &ce): // a refused buyer token says why (buyer.go)
			challenge = ce.challenge
		case errors.Is(err, errBuyerUnauthorized):
			challenge = buyerChallenge
		}
		c.Set(fiber.HeaderWWWAuthenticate, challenge)
	}
	var buf [1024]byte
	return sendRaw(c, k.status, problemContentType, appendProblem(buf[:0], k, detail, c.OriginalURL(), rid))
}
