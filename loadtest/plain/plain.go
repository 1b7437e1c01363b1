// Package plain is the plainest reserve endpoint the benchmark compares the
// service with (issue 16): a Fiber server built with the service's own
// settings that decodes a reservation as the service does and takes the hold
// with one go-redis EVALSHA of DECRBY, INCRBY, INCR, HSET and XADD. It has no
// expiry, idempotency, sync, metrics or sold-out memory; it is benchmark-only
// code, like the bare ceiling, and never part of the service. Whatever the
// service does beyond it has to be paid for out of what this costs.
package plain

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/httpapi"
)

// ReservePath is the one route, the service's reserve endpoint.
const ReservePath = "/v1/items/:sku/reservations"

// PerUserLimit is the limit every user has on every item: the benchmark's
// buyers are all new users taking one unit.
const PerUserLimit = 1

//go:embed plain.lua
var reserveLua string

var reserveScript = goredis.NewScript(reserveLua)

const problemContentType = "application/problem+json"

var (
	soldOut = []byte(`{"type":"urn:flashsale:problem:sold_out","title":"Sold out","status":409,` +
		`"detail":"sold out","code":"sold_out"}`)
	limitExceeded = []byte(`{"type":"urn:flashsale:problem:limit_exceeded","title":"Limit exceeded",` +
		`"status":409,"detail":"per-user limit reached","code":"limit_exceeded"}`)
	invalid = []byte(`{"type":"urn:flashsale:problem:invalid_request","title":"Invalid request",` +
		`"status":400,"detail":"the reservation could not be decoded","code":"invalid_request"}`)
	internal = []byte(`{"type":"urn:flashsale:problem:internal","title":"Internal error",` +
		`"status":500,"detail":"redis failed","code":"internal"}`)
)

// Keys names the keys of one item under a prefix; they share the item's
// hash tag, as the service's do.
type Keys struct {
	prefix, sku string
}

// KeysFor returns the keys of sku under prefix.
func KeysFor(prefix, sku string) Keys { return Keys{prefix: prefix, sku: sku} }

func (k Keys) base() string            { return k.prefix + ":{" + k.sku + "}:" }
func (k Keys) Stock() string           { return k.base() + "stock" }
func (k Keys) Holds() string           { return k.base() + "holds" }
func (k Keys) Outbox() string          { return k.base() + "outbox" }
func (k Keys) User(user string) string { return k.base() + "u:" + user }
func (k Keys) Hold(id string) string   { return k.base() + "r:" + id }

// server is one process's endpoint.
type server struct {
	rdb    goredis.UniversalClient
	prefix string
	idBase string // this process's start, so ids of two runs differ
	seq    atomic.Uint64
}

// New returns the app: POST /v1/items/:sku/reservations decodes the body
// with httpapi.DecodeReserve, runs the script on the item's keys under
// prefix and answers 201 with the hold, or 409 with the refusal.
func New(rdb goredis.UniversalClient, prefix, idBase string) *fiber.App {
	s := &server{rdb: rdb, prefix: prefix, idBase: idBase}
	app := fiber.New(httpapi.FiberConfig(httpapi.Config{
		ReadTimeout:  httpapi.DefaultReadTimeout,
		WriteTimeout: httpapi.DefaultWriteTimeout,
		IdleTimeout:  httpapi.DefaultIdleTimeout,
	}))
	app.Post(ReservePath, s.reserve)
	return app
}

func (s *server) reserve(c *fiber.Ctx) error {
	req, err := httpapi.DecodeReserve(c.Params("sku"), c.Request().Body(),
		c.Request().Header.Peek("Idempotency-Key"))
	if err != nil {
		return problem(c, fiber.StatusBadRequest, invalid)
	}
	id := req.SKU + "." + s.idBase + strconv.FormatUint(s.seq.Add(1), 36)
	k := KeysFor(s.prefix, req.SKU)
	v, err := reserveScript.Run(c.UserContext(), s.rdb,
		[]string{k.Stock(), k.User(req.UserID), k.Holds(), k.Hold(id), k.Outbox()},
		id, req.UserID, req.Quantity, PerUserLimit).Slice()
	if err != nil || len(v) == 0 {
		return problem(c, fiber.StatusInternalServerError, internal)
	}
	switch v[0] {
	case "created":
		b := make([]byte, 0, 128)
		b = append(b, `{"id":"`...)
		b = append(b, id...)
		b = append(b, `","sku":"`...)
		b = append(b, req.SKU...)
		b = append(b, `","user_id":"`...)
		b = append(b, req.UserID...)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, int64(req.Quantity), 10)
		b = append(b, `,"status":"pending"}`...)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(fiber.StatusCreated).Send(b)
	case "sold_out":
		return problem(c, fiber.StatusConflict, soldOut)
	case "limit_exceeded":
		return problem(c, fiber.StatusConflict, limitExceeded)
	}
	return problem(c, fiber.StatusInternalServerError, internal)
}

func problem(c *fiber.Ctx, status int, body []byte) error {
	c.Set(fiber.HeaderContentType, problemContentType)
	return c.Status(status).Send(body)
}

// Seed gives sku stock units under prefix, replacing whatever was there.
func Seed(ctx context.Context, rdb goredis.UniversalClient, prefix, sku string, stock int64) error {
	if err := rdb.Set(ctx, KeysFor(prefix, sku).Stock(), stock, 0).Err(); err != nil {
		return fmt.Errorf("plain: seed %s: %w", sku, err)
	}
	return nil
}

// State is an item's counters after a run.
type State struct {
	Available int64 // stock left
	Holds     int64 // holds taken
	Outbox    int64 // entries in the outbox
}

// Check is nil when the counters account for every hold: each took qty
// units of stock and wrote one outbox entry, and no more was handed out
// than there was.
func (st State) Check(stock, qty int64) error {
	switch {
	case st.Holds*qty > stock || st.Available < 0:
		return fmt.Errorf("plain: %d holds of %d units from %d units: oversold", st.Holds, qty, stock)
	case stock-st.Available != st.Holds*qty:
		return fmt.Errorf("plain: %d units taken for %d holds of %d", stock-st.Available, st.Holds, qty)
	case st.Outbox != st.Holds:
		return fmt.Errorf("plain: %d outbox entries for %d holds", st.Outbox, st.Holds)
	}
	return nil
}

// Read returns sku's counters, so a run can check that every 201 it got is
// one hold in Redis and no unit was given twice.
func Read(ctx context.Context, rdb goredis.UniversalClient, prefix, sku string) (State, error) {
	k := KeysFor(prefix, sku)
	var st State
	var err error
	if st.Available, err = rdb.Get(ctx, k.Stock()).Int64(); err != nil {
		return State{}, fmt.Errorf("plain: read %s: %w", k.Stock(), err)
	}
	if st.Holds, err = rdb.Get(ctx, k.Holds()).Int64(); err != nil && !errors.Is(err, goredis.Nil) {
		return State{}, fmt.Errorf("plain: read %s: %w", k.Holds(), err)
	}
	if st.Outbox, err = rdb.XLen(ctx, k.Outbox()).Result(); err != nil {
		return State{}, fmt.Errorf("plain: read %s: %w", k.Outbox(), err)
	}
	return st, nil
}
