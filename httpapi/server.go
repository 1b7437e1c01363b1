// Package httpapi serves the flash sale over HTTP with Fiber: buyers reserve,
// confirm and cancel; admins seed stock. Every error is a problem document.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/console"
	"github.com/flashsale/flashsale/reservation"
)

// Body limits. Buyers' bodies are tiny; the bulk seed carries a catalogue,
// and only an admin may send one that large (see bodyLimitFor).
const (
	bodyLimit     = 4 << 10
	bulkBodyLimit = 8 << 20
	maxBulkItems  = 10_000
)

// The HTTP timeouts the service runs with unless configured otherwise.
const (
	DefaultReadTimeout  = 5 * time.Second
	DefaultWriteTimeout = 5 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
)

// Config is what the HTTP layer needs from the outside.
type Config struct {
	// AdminTokens admit to /admin/v1; ServiceTokens to confirm, the payment
	// backend's call. Any token of a list admits, so one can be rotated
	// without downtime; an empty list admits no one.
	AdminTokens   []string
	ServiceTokens []string
	ReadTimeout   time.Duration
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
	ReadyTimeout  time.Duration // how long /readyz waits for the store
	Log           *slog.Logger
	// Buyers, when set, authenticates buyers on reserve, reading and
	// cancelling a reservation: each acts as the user its token names, on
	// its own reservations only. Nil: the body's user_id is believed.
	Buyers BuyerVerifier
	// Auditor serves GET /admin/v1/items/{sku}/audit; nil: 404.
	Auditor Auditor
	// Status adds detail to /readyz (sync backlog, lag, recovery); may be nil.
	Status func(ctx context.Context) map[string]any
	// Metrics observes every request (see metrics.go); nil: none.
	Metrics Metrics
	// MetricsHandler serves GET /metrics; nil: 404.
	MetricsHandler http.Handler
	// Limits rate-limits the buyer routes (the zero value: none).
	Limits RateLimits
	// Internal moves /metrics, /admin/v1, the console and confirm (the
	// backend's routes) to a second app, Server.Internal, served on a
	// listener of their own (ListenInternal) that a deployment keeps off the
	// public network. The public app then answers them 404, as unknown
	// routes. False: one app serves everything.
	Internal bool
	// Console serves the sale console under /admin/console; nil: 404.
	Console *console.Hub
}

// Auditor compares an item's counters in Redis with the durable record.
type Auditor interface {
	Audit(ctx context.Context, sku string) (reservation.Audit, error)
}

// Server is the HTTP API over a reservation.Service.
type Server struct {
	app       *fiber.App
	internal  *fiber.App // nil: app serves the internal routes too
	svc       *reservation.Service
	log       *slog.Logger
	admin     tokenSet
	service   tokenSet
	buyers    BuyerVerifier
	readyWait time.Duration
	auditor   Auditor
	status    func(ctx context.Context) map[string]any
	ids       *requestIDs

	metrics        Metrics
	metricsHandler http.Handler
	console        *console.Hub

	limits RateLimits
	denied denyCache
}

// New builds the Fiber app with every route and middleware.
func New(svc *reservation.Service, cfg Config) *Server {
	s := &Server{
		svc:       svc,
		log:       cfg.Log,
		admin:     newTokenSet(cfg.AdminTokens),
		service:   newTokenSet(cfg.ServiceTokens),
		buyers:    cfg.Buyers,
		readyWait: cfg.ReadyTimeout,
		auditor:   cfg.Auditor,
		status:    cfg.Status,
		ids:       newRequestIDs(),

		metrics:        cfg.Metrics,
		metricsHandler: cfg.MetricsHandler,
		console:        cfg.Console,
		limits:         cfg.Limits,
	}
	if s.readyWait <= 0 {
		s.readyWait = time.Second
	}
	if s.log == nil {
		// Every refusal is logged: a nil logger would panic in the error
		// handler, outside the recover middleware, and take the process down.
		s.log = slog.New(slog.DiscardHandler)
	}
	fc := FiberConfig(cfg)
	fc.ErrorHandler = s.errorHandler
	s.app = fiber.New(fc)
	if cfg.Internal {
		s.internal = fiber.New(fc)
	}
	s.internalApp().Server().HeaderReceived = s.bodyLimitFor
	s.routes()
	return s
}

// internalApp is the app that serves the internal routes.
func (s *Server) internalApp() *fiber.App {
	if s.internal != nil {
		return s.internal
	}
	return s.app
}

// FiberConfig is the server's Fiber settings without its error handler, so
// the benchmark's bare HTTP ceiling runs with exactly the service's settings.
func FiberConfig(cfg Config) fiber.Config {
	return fiber.Config{
		AppName:               "flashsale",
		DisableStartupMessage: true,
		// fasthttp refuses a larger body by its Content-Length before
		// reading any of it (a chunked one after bodyLimit bytes); the bulk
		// seed's larger limit is granted per request by bodyLimitFor.
		BodyLimit:     bodyLimit,
		ReadTimeout:   cfg.ReadTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		IdleTimeout:   cfg.IdleTimeout,
		CaseSensitive: true,
	}
}

// App exposes the public Fiber app, for tests through app.Test. Without
// Config.Internal it serves every route.
func (s *Server) App() *fiber.App { return s.app }

// Internal exposes the internal routes' app (Config.Internal); nil without.
func (s *Server) Internal() *fiber.App { return s.internal }

// Listen serves the public app on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// ListenInternal serves the internal app on addr until Shutdown.
func (s *Server) ListenInternal(addr string) error {
	if s.internal == nil {
		return errors.New("httpapi: ListenInternal without Config.Internal")
	}
	return s.internal.Listen(addr)
}

// Shutdown stops accepting connections on every listener and waits for
// in-flight requests until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.console != nil {
		s.console.Close() // open event streams would hold the drain to its timeout
	}
	err := s.app.ShutdownWithContext(ctx)
	if s.internal != nil {
		err = errors.Join(err, s.internal.ShutdownWithContext(ctx))
	}
	return err
}

func (s *Server) routes() {
	in := s.internalApp()
	spec := api.Spec() // the contract the service was built with, served as is
	apps := []*fiber.App{s.app}
	if s.internal != nil {
		apps = append(apps, s.internal)
	}
	for _, app := range apps {
		app.Use(s.front)
		app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
		app.Get("/readyz", s.ready)
		app.Get("/openapi.yaml", func(c *fiber.Ctx) error { return sendRaw(c, fiber.StatusOK, "application/yaml", spec) })
	}
	s.serveMetrics(in)

	admin := in.Group("/admin/v1", s.requireAdmin)
	admin.Put("/items", s.seedMany) // bulkPath
	admin.Put("/items/:sku", s.seed)
	if s.auditor != nil {
		admin.Get("/items/:sku/audit", s.audit)
	}
	s.consoleRoutes(in, admin)
	// Confirm is the payment backend's call: internal, beside the admin's.
	in.Post("/v1/reservations/:id/confirm", s.requireService, s.confirm)

	v1 := s.app.Group("/v1")
	v1.Get("/items/:sku", s.item)
	v1.Post("/items/:sku/reservations", s.asBuyer(s.reserve)...)
	v1.Get("/reservations/:id", s.asBuyer(s.reservation)...)
	v1.Post("/reservations/:id/cancel", s.asBuyer(s.cancel)...)
}

// front is the one middleware every request passes, outermost. It gives the
// request its id, runs the rest of the chain (refusing an encoded body,
// recovering a panic), writes any error's problem document itself, so the
// error is classified once and the status it reports is final, and then
// tells the metrics. It is one middleware, not four, because every hop
// through Fiber's router is paid by every request, a sold-out crowd's
// included.
func (s *Server) front(c *fiber.Ctx) error {
	var buf [maxRequestID]byte
	rid := s.assignRequestID(c, buf[:0])
	code := ""
	if err := s.guarded(c); err != nil {
		k, detail := classify(err)
		code = k.code
		if err := s.writeProblem(c, err, k, detail, rid); err != nil {
			return err
		}
	}
	if s.metrics != nil {
		s.observe(c, code)
	}
	return nil
}

// guarded runs the chain after front, turning a panic into an error that
// answers 500 (its value goes to the log, never to the client).
func (s *Server) guarded(c *fiber.Ctx) (err error) {
	defer func() {
		if e := recover(); e != nil {
			s.log.Error("panic", "request_id", requestID(c), "panic", fmt.Sprint(e), "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", e)
		}
	}()
	if encodedBody(c) {
		c.Set(fiber.HeaderAcceptEncoding, "identity")
		return errContentEncoding
	}
	return c.Next()
}

// assignRequestID gives c its request id, answered in X-Request-ID: the
// client's own when sane (so a gateway's id runs through our logs), else
// one minted into buf. The id lives in the response header alone (see
// requestID); what is returned is valid until the handler returns.
func (s *Server) assignRequestID(c *fiber.Ctx, buf []byte) []byte {
	rid := c.Request().Header.PeekBytes(headerRequestID)
	if !validRequestID(rid) {
		rid = s.ids.append(buf)
	}
	// SetCanonical: the name is already in canonical form, so fasthttp
	// need not copy and normalise it; it copies the value.
	c.Response().Header.SetCanonical(headerRequestID, rid)
	return rid
}

// headerRequestID is fiber.HeaderXRequestID as fasthttp normalises it.
var headerRequestID = []byte("X-Request-Id")

// headerLocation is fiber.HeaderLocation, already canonical; reservationsPath
// is where a reservation lives, before its id.
var (
	headerLocation   = []byte(fiber.HeaderLocation)
	reservationsPath = []byte("/v1/reservations/")
)

// requestIDs mints request ids: a random prefix per server and a counter,
// unique without a system call per request (ids only correlate logs; they
// need not be secret).
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

// append appends the next id to dst: at most 13 + 20 bytes.
func (g *requestIDs) append(dst []byte) []byte {
	return strconv.AppendUint(append(dst, g.prefix...), g.n.Add(1), 10)
}

// requestID is the id assignRequestID gave c, for the log ("" before it).
func requestID(c *fiber.Ctx) string { return string(requestIDBytes(c)) }

// requestIDBytes is requestID as the response header holds it.
func requestIDBytes(c *fiber.Ctx) []byte { return c.Response().Header.PeekBytes(headerRequestID) }

// maxRequestID bounds a request id, the client's or ours.
const maxRequestID = 64

// validRequestID accepts what may be echoed unescaped in a header, a log
// and a JSON string.
func validRequestID(s []byte) bool {
	if len(s) == 0 || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// bulkPath is the bulk seed's route, the one route whose body may exceed
// bodyLimit.
const bulkPath = "/admin/v1/items"

// bodyLimitFor is fasthttp's HeaderReceived hook: it runs once a request's
// headers are in and before any of its body is read, and grants the bulk
// seed's limit to a PUT of bulkPath with a valid admin token only. Every
// other request, the bulk seed without the token included, keeps
// bodyLimit: fasthttp refuses a longer body by its Content-Length unread
// (a chunked one after bodyLimit bytes), so a flood of 8 MiB bodies costs
// the process kilobytes, not megabytes each.
func (s *Server) bodyLimitFor(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if s.bulkAdmitted(h) {
		return fasthttp.RequestConfig{MaxRequestBodySize: bulkBodyLimit}
	}
	return fasthttp.RequestConfig{} // the server's: bodyLimit
}

// bulkAdmitted reports whether h is a bulk seed with a valid admin token.
// The path is compared as sent (a query or one trailing slash aside): a
// spelling that would still route to the bulk seed only gets the small
// limit, which errs on the safe side.
func (s *Server) bulkAdmitted(h *fasthttp.RequestHeader) bool {
	if string(h.Method()) != fiber.MethodPut {
		return false
	}
	path, _, _ := bytes.Cut(h.RequestURI(), []byte("?"))
	path = bytes.TrimSuffix(path, []byte("/"))
	return string(path) == bulkPath && s.admin.admits(string(h.Peek(fiber.HeaderAuthorization)))
}

// encodedBody reports a body sent with a Content-Encoding, which the API
// answers 415. The API reads bodies as sent (c.Request().Body(), never
// Fiber's c.Body(), which would inflate gzip, deflate or brotli without
// bound before any body limit is checked: a 1 MiB gzip body can inflate to
// a gigabyte).
func encodedBody(c *fiber.Ctx) bool {
	// ContentEncoding finds the first Content-Encoding header by its
	// canonical name, as fasthttp stores every name it parses: none at all
	// is every buyer's case, and needs no walk over the headers.
	if len(c.Request().Body()) == 0 || c.Request().Header.ContentEncoding() == nil {
		return false
	}
	var encoded bool
	c.Request().Header.VisitAll(func(k, v []byte) {
		if !bytes.EqualFold(k, headerContentEncoding) {
			return
		}
		for coding := range bytes.SplitSeq(v, []byte(",")) {
			if coding = bytes.TrimSpace(coding); len(coding) > 0 && !bytes.EqualFold(coding, []byte("identity")) {
				encoded = true
			}
		}
	})
	return encoded
}

var headerContentEncoding = []byte(fiber.HeaderContentEncoding)

func (s *Server) requireAdmin(c *fiber.Ctx) error {
	if !s.admin.admits(c.Get(fiber.HeaderAuthorization)) {
		return errUnauthorized
	}
	return c.Next()
}

// requireService guards confirm: it means "payment captured", so only the
// payment backend, holding a service token, may say it. A buyer holding
// the reservation id may not, and neither may the admin token: each
// credential unlocks its own routes (docs/security.md).
func (s *Server) requireService(c *fiber.Ctx) error {
	if !s.service.admits(c.Get(fiber.HeaderAuthorization)) {
		return errServiceUnauthorized
	}
	return c.Next()
}

// tokenSet holds the SHA-256 of each accepted bearer token.
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens []string) tokenSet {
	set := make(tokenSet, 0, len(tokens))
	for _, t := range tokens {
		if t != "" { // an empty token would admit "Bearer " with nothing after it
			set = append(set, sha256.Sum256([]byte(t)))
		}
	}
	return set
}

// admits reports whether authorization is "Bearer <one of the tokens>". It
// compares hashes in constant time and against every token without
// stopping at a match, so neither a token, its length nor its place in the
// list leaks through timing.
func (ts tokenSet) admits(authorization string) bool {
	// The scheme is case-insensitive (RFC 9110, section 11.1); the token is not.
	scheme, token, _ := strings.Cut(authorization, " ")
	got := sha256.Sum256([]byte(token))
	ok := 0
	for i := range ts {
		ok |= subtle.ConstantTimeCompare(got[:], ts[i][:])
	}
	return strings.EqualFold(scheme, "Bearer") && ok == 1
}

func (s *Server) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), s.readyWait)
	defer cancel()
	if err := s.svc.Ready(ctx); err != nil {
		return err
	}
	body := fiber.Map{"status": "ready"}
	if s.status != nil {
		// Detail only: a slow or down MySQL never makes the service unready,
		// because buyers do not need it.
		for k, v := range s.status(ctx) {
			body[k] = v
		}
	}
	return c.JSON(body)
}

// sendRaw answers with body, which it copies: callers may build it in a
// buffer of their own.
func sendRaw(c *fiber.Ctx, status int, contentType string, body []byte) error {
	c.Response().Header.SetContentType(contentType) // not Set: no name to normalise
	c.Status(status).Response().SetBody(body)
	return nil
}

func (s *Server) sendJSON(c *fiber.Ctx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sendRaw(c, status, fiber.MIMEApplicationJSON, body)
}
