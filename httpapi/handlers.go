package httpapi

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/reservation"
)

// TimeLayout is how the API writes times: RFC 3339 with the milliseconds
// Redis keeps. /readyz's detail, built outside this package, uses it too.
const TimeLayout = timeLayout

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

type itemJSON struct {
	SKU          string  `json:"sku"`
	Name         string  `json:"name"`
	Stock        int64   `json:"stock"`
	Available    int64   `json:"available"`
	Reserved     int64   `json:"reserved"`
	Sold         int64   `json:"sold"`
	PerUserLimit int     `json:"per_user_limit"`
	HoldSeconds  int64   `json:"hold_seconds"`
	StartsAt     *string `json:"starts_at"`
	EndsAt       *string `json:"ends_at"`
	Buckets      int     `json:"buckets"`
	CreatedAt    string  `json:"created_at"`
	UpdatedAt    string  `json:"updated_at"`
}

func toItemJSON(it reservation.Item) itemJSON {
	return itemJSON{
		SKU:          it.SKU,
		Name:         it.Name,
		Stock:        it.Stock,
		Available:    it.Available,
		Reserved:     it.Reserved,
		Sold:         it.Sold,
		PerUserLimit: it.PerUserLimit,
		HoldSeconds:  int64(it.Hold / time.Second),
		StartsAt:     optionalTime(it.StartsAt),
		EndsAt:       optionalTime(it.EndsAt),
		Buckets:      max(it.Buckets, 1),
		CreatedAt:    it.CreatedAt.Format(timeLayout),
		UpdatedAt:    it.UpdatedAt.Format(timeLayout),
	}
}

func optionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.Format(timeLayout)
	return &s
}

type reservationJSON struct {
	ID        string `json:"id"`
	SKU       string `json:"sku"`
	UserID    string `json:"user_id"`
	Quantity  int    `json:"quantity"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
	UpdatedAt string `json:"updated_at"`
}

func toReservationJSON(r reservation.Reservation) reservationJSON {
	return reservationJSON{
		ID:        r.ID,
		SKU:       r.SKU,
		UserID:    r.UserID,
		Quantity:  r.Quantity,
		Status:    string(r.Status),
		CreatedAt: r.CreatedAt.Format(timeLayout),
		ExpiresAt: r.ExpiresAt.Format(timeLayout),
		UpdatedAt: r.UpdatedAt.Format(timeLayout),
	}
}

// param copies a path parameter out of fasthttp's reused buffer: the value
// outlives the handler in errors and logs.
func param(c *fiber.Ctx, name string) string { return strings.Clone(c.Params(name)) }

func (s *Server) seed(c *fiber.Ctx) error {
	if err := checkJSON(c.Request().Header.ContentType(), c.Request().Body()); err != nil {
		return err
	}
	spec, err := decodeItem(param(c, "sku"), c.Request().Body())
	if err != nil {
		return err
	}
	res, err := s.svc.Seed(c.UserContext(), spec)
	if err != nil {
		return err
	}
	status := fiber.StatusOK
	if res.Created {
		status = fiber.StatusCreated
	}
	return s.sendJSON(c, status, toItemJSON(res.Item))
}

type bulkResult struct {
	SKU     string    `json:"sku"`
	Status  int       `json:"status"`
	Result  string    `json:"result"` // created, updated or error
	Item    *itemJSON `json:"item,omitempty"`
	Problem *problem  `json:"problem,omitempty"`
}

func (s *Server) seedMany(c *fiber.Ctx) error {
	if err := checkJSON(c.Request().Header.ContentType(), c.Request().Body()); err != nil {
		return err
	}
	specs, err := decodeBulk(c.Request().Body())
	if err != nil {
		return err
	}
	results, errs, err := s.svc.SeedMany(c.UserContext(), specs)
	if err != nil {
		return err
	}
	// When Redis could not be reached for any item, nothing was applied:
	// one 503 says so better than a 200 listing the same failure per item.
	if len(errs) > 0 && allUnavailable(errs) {
		return errs[0]
	}
	out := struct {
		Results []bulkResult `json:"results"`
	}{Results: make([]bulkResult, len(specs))}
	for i, spec := range specs {
		r := bulkResult{SKU: spec.SKU}
		switch {
		case errs[i] != nil:
			k, detail := classify(errs[i])
			if k.status >= 500 {
				s.log.Error("bulk seed item failed", "request_id", requestID(c), "sku", spec.SKU, "err", errs[i])
			}
			r.Status, r.Result = k.status, "error"
			r.Problem = &problem{Type: k.typ(), Title: k.title,
				Status: k.status, Detail: detail, Code: k.code}
		case results[i].Created:
			item := toItemJSON(results[i].Item)
			r.Status, r.Result, r.Item = fiber.StatusCreated, "created", &item
		default:
			item := toItemJSON(results[i].Item)
			r.Status, r.Result, r.Item = fiber.StatusOK, "updated", &item
		}
		out.Results[i] = r
	}
	return s.sendJSON(c, fiber.StatusOK, out)
}

func (s *Server) item(c *fiber.Ctx) error {
	if err := s.limitBuyer(c, ""); err != nil {
		return err
	}
	it, err := s.svc.Item(c.UserContext(), param(c, "sku"))
	if err != nil {
		return err
	}
	return s.sendJSON(c, fiber.StatusOK, toItemJSON(it))
}

func (s *Server) reserve(c *fiber.Ctx) error {
	if err := checkJSON(c.Request().Header.ContentType(), c.Request().Body()); err != nil {
		return err
	}
	buyer, _ := buyerOf(c)
	// The SKU as Fiber has it, in the request's own buffer: a refusal is
	// answered before the handler returns, so only a request that goes on
	// past the sold-out memory pays for a copy.
	req, err := decodeReserveAs(c.Params("sku"), c.Request().Body(), c.Request().Header.Peek("Idempotency-Key"), buyer)
	if err != nil {
		return err
	}
	// What the instance answers from memory comes first; whatever would
	// reach Redis passes the limit first, Idempotency-Key or not.
	if err := s.svc.RefusedFromMemory(req); err != nil {
		return err
	}
	req.SKU = strings.Clone(req.SKU)
	if err := s.limitBuyer(c, req.UserID); err != nil {
		return err
	}
	r, replayed, err := s.svc.Reserve(c.UserContext(), req)
	if err != nil {
		return err
	}
	status := fiber.StatusCreated
	if replayed {
		status = fiber.StatusOK
	}
	var buf [512]byte
	// Written from bytes: a string built for the header would be one more
	// allocation per hold.
	c.Response().Header.SetCanonical(headerLocation, append(append(buf[:0], reservationsPath...), r.ID...))
	return sendRaw(c, status, fiber.MIMEApplicationJSON, appendReservation(buf[:0], r))
}

func (s *Server) reservation(c *fiber.Ctx) error {
	buyer, ok := buyerOf(c)
	if err := s.limitBuyer(c, buyer); err != nil {
		return err
	}
	var r reservation.Reservation
	var err error
	if ok {
		r, err = s.svc.ReservationFor(c.UserContext(), buyer, param(c, "id"))
	} else {
		r, err = s.svc.Reservation(c.UserContext(), param(c, "id"))
	}
	if err != nil {
		return err
	}
	return s.sendJSON(c, fiber.StatusOK, toReservationJSON(r))
}

func (s *Server) confirm(c *fiber.Ctx) error {
	return s.transition(c, s.svc.Confirm)
}

func (s *Server) cancel(c *fiber.Ctx) error {
	buyer, ok := buyerOf(c)
	if err := s.limitBuyer(c, buyer); err != nil {
		return err
	}
	if ok {
		return s.transition(c, func(ctx context.Context, id string) (reservation.Reservation, error) {
			return s.svc.CancelFor(ctx, buyer, id)
		})
	}
	return s.transition(c, s.svc.Cancel)
}

// transition runs confirm or cancel: both take no body (or {}) and answer
// with the reservation.
func (s *Server) transition(c *fiber.Ctx, apply func(context.Context, string) (reservation.Reservation, error)) error {
	if err := checkJSON(c.Request().Header.ContentType(), c.Request().Body()); err != nil {
		return err
	}
	if err := decodeEmpty(c.Request().Body()); err != nil {
		return err
	}
	r, err := apply(c.UserContext(), param(c, "id"))
	if err != nil {
		return err
	}
	return s.sendJSON(c, fiber.StatusOK, toReservationJSON(r))
}

// AuditDocument is the body of GET /admin/v1/items/{sku}/audit; the load
// generator decodes it with this type too.
type AuditDocument struct {
	SKU    string `json:"sku"`
	InSync bool   `json:"in_sync"`
	Redis  struct {
		Stock     int64 `json:"stock"`
		Available int64 `json:"available"`
		Reserved  int64 `json:"reserved"`
		Sold      int64 `json:"sold"`
	} `json:"redis"`
	Record struct {
		Stock          int64 `json:"stock"`
		PendingUnits   int64 `json:"pending_units"`
		ConfirmedUnits int64 `json:"confirmed_units"`
		CancelledUnits int64 `json:"cancelled_units"`
		ExpiredUnits   int64 `json:"expired_units"`
		Reservations   int64 `json:"reservations"`
	} `json:"record"`
	Backlog int64    `json:"backlog"`
	Drift   []string `json:"drift"`
}

// audit compares the item in Redis with the durable record.
func (s *Server) audit(c *fiber.Ctx) error {
	sku := param(c, "sku")
	if !reservation.ValidSKU(sku) {
		return reservation.ErrInvalidSKU
	}
	au, err := s.auditor.Audit(c.UserContext(), sku)
	if err != nil {
		return err
	}
	var out AuditDocument
	out.SKU, out.InSync, out.Backlog, out.Drift = au.SKU, au.InSync(), au.Backlog, au.Drift
	if out.Drift == nil {
		out.Drift = []string{}
	}
	out.Redis.Stock, out.Redis.Available, out.Redis.Reserved, out.Redis.Sold =
		au.Store.Stock, au.Store.Available, au.Store.Reserved, au.Store.Sold
	out.Record.Stock = au.Record.Stock
	out.Record.PendingUnits, out.Record.ConfirmedUnits = au.Counts.Pending, au.Counts.Confirmed
	out.Record.CancelledUnits, out.Record.ExpiredUnits = au.Counts.Cancelled, au.Counts.Expired
	out.Record.Reservations = au.Counts.Rows
	return s.sendJSON(c, fiber.StatusOK, out)
}

func allUnavailable(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, reservation.ErrUnavailable) {
			return false
		}
	}
	return true
}
