package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/httpapi"
)

// DefaultRequestTimeout bounds a request whose context has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// ErrNoAudit is returned by Client.Audit when the service has no audit
// endpoint (it runs without a durable record to compare with).
var ErrNoAudit = errors.New("the service has no audit endpoint")

// StatusError is an answer the client did not expect: anything but a 2xx
// or a 409 (which is the sale's own verdict, not a failure).
type StatusError struct {
	Status int
	Code   string // the problem document's code, "" if there was none
	Detail string
}

func (e *StatusError) Error() string {
	msg := "HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Client is a fast HTTP client for the flashsale API over fasthttp (one per
// run, safe for concurrent use). The buyer calls (Reserve, Confirm, Cancel)
// allocate only the reservation id they return: requests and responses
// come from fasthttp's pools and bodies are built and read without
// encoding/json, so the generator leaves the cores to the service.
type Client struct {
	hc          *fasthttp.HostClient
	base        string       // scheme://host[:port][/prefix], no trailing slash
	adminAuth   string       // "Bearer <token>"
	serviceAuth string       // "Bearer <token>" for Confirm; "": none sent
	buyers      *BuyerTokens // nil: buyers send no token (FLASHSALE_BUYER_AUTH=none)
	timeout     time.Duration
}

// NewClient returns a client for the service at baseURL (http or https)
// holding at most maxConns connections. adminToken is needed only for
// Seed and Audit.
func NewClient(baseURL, adminToken string, maxConns int) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("loadtest: base url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("loadtest: base url %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("loadtest: base url %q: want scheme://host[:port][/path] and nothing else", baseURL)
	}
	if maxConns < 1 {
		return nil, fmt.Errorf("loadtest: maxConns must be at least 1, got %d", maxConns)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	return &Client{
		hc: &fasthttp.HostClient{
			Addr:                     addr,
			IsTLS:                    u.Scheme == "https",
			Name:                     "flashsale-loadtest",
			MaxConns:                 maxConns,
			MaxConnWaitTimeout:       DefaultRequestTimeout,
			MaxIdleConnDuration:      time.Minute,
			DisablePathNormalizing:   true,
			NoDefaultUserAgentHeader: true,
		},
		base:      u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"),
		adminAuth: "Bearer " + adminToken,
		timeout:   DefaultRequestTimeout,
	}, nil
}

// SetServiceToken sets the service token Confirm sends, as the payment
// backend does: the service refuses a confirm without one (401). Call it
// before the client is in use.
func (c *Client) SetServiceToken(token string) {
	c.serviceAuth = ""
	if token != "" {
		c.serviceAuth = "Bearer " + token
	}
}

// SetBuyerTokens makes every buyer call (Reserve, Reservation, Cancel)
// carry the user's own JWT, minted by b, as a service run with
// FLASHSALE_BUYER_AUTH=jwt requires. Call it before the client is in use.
func (c *Client) SetBuyerTokens(b *BuyerTokens) { c.buyers = b }

// buyerAuth is the Authorization header for user+num (num < 0: user alone),
// "" when buyers send no token. Only then does it build the user id, so the
// path without tokens allocates nothing.
func (c *Client) buyerAuth(user string, num int64) (string, error) {
	if c.buyers == nil {
		return "", nil
	}
	if num >= 0 {
		user += strconv.FormatInt(num, 10)
	}
	return c.buyers.bearer(user)
}

// SetTimeout sets the bound on a request whose context has no deadline.
// Call it before the client is in use.
func (c *Client) SetTimeout(d time.Duration) {
	if d > 0 {
		c.timeout = d
		c.hc.MaxConnWaitTimeout = d
	}
}

// CloseIdleConnections closes the keep-alive connections not in use.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// uri builds base + parts into buf, which callers keep on their stack:
// fasthttp copies the URI, so nothing here needs the heap.
func (c *Client) uri(buf []byte, parts ...string) []byte {
	buf = append(buf[:0], c.base...)
	for _, p := range parts {
		buf = append(buf, p...)
	}
	return buf
}

// do sends req within ctx's deadline, or the client's timeout if sooner.
func (c *Client) do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		return fmt.Errorf("%s %s: %w", req.Header.Method(), req.URI().Path(), err)
	}
	return nil
}

// Reserve asks for qty units of sku for userID, which must match the API's
// user id pattern (it is sent unescaped). A 201 gives outcome "created", a
// 200 "replayed"; a 409 gives its problem code ("sold_out",
// "limit_exceeded", ...) and no error; any other answer is a *StatusError
// with the problem code as outcome.
func (c *Client) Reserve(ctx context.Context, sku, userID string, qty int) (id string, outcome string, err error) {
	return c.reserve(ctx, sku, userID, -1, qty)
}

// ReserveUser is Reserve for the user id userPrefix+strconv(user), built
// without an allocation: for scenarios where every request is a new user.
func (c *Client) ReserveUser(ctx context.Context, sku, userPrefix string, user int64, qty int) (id string, outcome string, err error) {
	return c.reserve(ctx, sku, userPrefix, user, qty)
}

func (c *Client) reserve(ctx context.Context, sku, user string, userNum int64, qty int) (string, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	auth, err := c.buyerAuth(user, userNum)
	if err != nil {
		return "", "jwt", err
	}
	var ub [256]byte
	req.SetRequestURIBytes(c.uri(ub[:0], "/v1/items/", sku, "/reservations"))
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, auth)
	}
	var nb [20]byte
	req.AppendBodyString(`{"user_id":"`)
	req.AppendBodyString(user)
	if userNum >= 0 {
		req.AppendBody(strconv.AppendInt(nb[:0], userNum, 10))
	}
	req.AppendBodyString(`","quantity":`)
	req.AppendBody(strconv.AppendInt(nb[:0], int64(qty), 10))
	req.AppendBodyString(`}`)

	if err := c.do(ctx, req, resp); err != nil {
		return "", "transport", err
	}
	body := resp.Body()
	switch status := resp.StatusCode(); status {
	case fasthttp.StatusCreated, fasthttp.StatusOK:
		id, ok := field(body, `"id":"`)
		if !ok {
			return "", "bad_answer", fmt.Errorf("reserve: %d answer without an id: %.200s", status, body)
		}
		outcome := "created"
		if status == fasthttp.StatusOK {
			outcome = "replayed"
		}
		return string(id), outcome, nil
	default:
		outcome, err := refusal(status, body)
		return "", outcome, err
	}
}

// Confirm confirms reservation id with the service token (SetServiceToken):
// outcome "confirmed", or a 409's code ("reservation_expired", ...) without
// an error.
func (c *Client) Confirm(ctx context.Context, id string) (outcome string, err error) {
	return c.transition(ctx, id, "/confirm", "confirmed", c.serviceAuth)
}

// Cancel cancels reservation id as userID, its owner (whose token is sent
// when buyers carry one): outcome "cancelled", or a 409's code without an
// error.
func (c *Client) Cancel(ctx context.Context, id, userID string) (outcome string, err error) {
	auth, err := c.buyerAuth(userID, -1)
	if err != nil {
		return "jwt", err
	}
	return c.transition(ctx, id, "/cancel", "cancelled", auth)
}

// Reservation reads reservation id as userID, its owner (whose token is
// sent when buyers carry one), and returns its status ("pending",
// "confirmed", ...).
func (c *Client) Reservation(ctx context.Context, id, userID string) (string, error) {
	auth, err := c.buyerAuth(userID, -1)
	if err != nil {
		return "", err
	}
	path := "/v1/reservations/" + id
	status, body, err := c.send(ctx, fasthttp.MethodGet, path, nil, auth)
	if err != nil {
		return "", err
	}
	if status != fasthttp.StatusOK {
		_, err := refusal(status, body)
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	var r struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		return "", fmt.Errorf("GET %s: no status in %.200q", path, body)
	}
	return r.Status, nil
}

// transition sends action with auth as its Authorization header ("": none).
func (c *Client) transition(ctx context.Context, id, action, done, auth string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	var ub [256]byte
	req.SetRequestURIBytes(c.uri(ub[:0], "/v1/reservations/", id, action))
	req.Header.SetMethod(fasthttp.MethodPost)
	// fasthttp would otherwise label the empty POST as a form, which the
	// API refuses with 415.
	req.Header.SetContentType("application/json")
	if auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, auth)
	}
	if err := c.do(ctx, req, resp); err != nil {
		return "transport", err
	}
	if status := resp.StatusCode(); status != fasthttp.StatusOK {
		return refusal(status, resp.Body())
	}
	return done, nil
}

// field returns the JSON string value that follows key (such as `"id":"`)
// in body. It is for the API's own ids and codes, which never contain an
// escaped character.
func field(body []byte, key string) ([]byte, bool) {
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return nil, false
	}
	v := body[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return nil, false
	}
	return v[:j], true
}

// refusal labels a non-2xx answer by its problem code. A 409 is the sale
// saying no (sold out, over the limit, ...): an outcome, not an error.
// Anything else is an error.
func refusal(status int, body []byte) (string, error) {
	code, _ := field(body, `"code":"`)
	outcome := knownCode(code)
	if status == fasthttp.StatusConflict && outcome != "" {
		return outcome, nil
	}
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) != nil {
		p.Detail = fmt.Sprintf("%.200q", body)
	}
	if outcome == "" {
		outcome = p.Code
	}
	if outcome == "" {
		outcome = "http_" + strconv.Itoa(status)
	}
	return outcome, &StatusError{Status: status, Code: p.Code, Detail: p.Detail}
}

// knownCode returns the API's problem code as a constant string, so the
// common refusals cost no allocation; "" for a code it does not know.
func knownCode(code []byte) string {
	switch string(code) { // the compiler does not allocate for a switch
	case "sold_out":
		return "sold_out"
	case "limit_exceeded":
		return "limit_exceeded"
	case "sale_not_active":
		return "sale_not_active"
	case "reservation_expired":
		return "reservation_expired"
	case "reservation_cancelled":
		return "reservation_cancelled"
	case "reservation_confirmed":
		return "reservation_confirmed"
	case "unavailable":
		return "unavailable"
	case "recovering":
		return "recovering"
	}
	return ""
}

// Item is an item as GET /v1/items/{sku} shows it.
type Item struct {
	SKU          string `json:"sku"`
	Stock        int64  `json:"stock"`
	Available    int64  `json:"available"`
	Reserved     int64  `json:"reserved"`
	Sold         int64  `json:"sold"`
	PerUserLimit int    `json:"per_user_limit"`
	HoldSeconds  int64  `json:"hold_seconds"`
}

// Audit is GET /admin/v1/items/{sku}/audit: the item's counters in Redis
// against the durable record.
type Audit = httpapi.AuditDocument

// Seed creates or replaces sku with stock units, a per-user limit and a
// hold time (0 for the service's defaults) through the admin API.
// buckets 0 leaves the service's default (one bucket).
func (c *Client) Seed(ctx context.Context, sku string, stock int64, perUserLimit, holdSeconds, buckets int) error {
	spec := struct {
		Stock        int64 `json:"stock"`
		PerUserLimit int   `json:"per_user_limit,omitempty"`
		HoldSeconds  int   `json:"hold_seconds,omitempty"`
		Buckets      int   `json:"buckets,omitempty"`
	}{stock, perUserLimit, holdSeconds, buckets}
	body, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	status, answer, err := c.roundTrip(ctx, fasthttp.MethodPut, "/admin/v1/items/"+sku, body, true)
	if err != nil {
		return fmt.Errorf("seed %s: %w", sku, err)
	}
	if status != fasthttp.StatusOK && status != fasthttp.StatusCreated {
		_, err := refusal(status, answer)
		return fmt.Errorf("seed %s: %w", sku, err)
	}
	return nil
}

// Item reads sku.
func (c *Client) Item(ctx context.Context, sku string) (Item, error) {
	var it Item
	err := c.getJSON(ctx, "/v1/items/"+sku, false, &it)
	return it, err
}

// Audit compares sku in Redis with the durable record. It returns an error
// wrapping ErrNoAudit when the service has no audit endpoint.
func (c *Client) Audit(ctx context.Context, sku string) (Audit, error) {
	var au Audit
	err := c.getJSON(ctx, "/admin/v1/items/"+sku+"/audit", true, &au)
	var se *StatusError
	if errors.As(err, &se) && se.Status == fasthttp.StatusNotFound && se.Code == "not_found" {
		return au, fmt.Errorf("audit %s: %w", sku, ErrNoAudit)
	}
	return au, err
}

func (c *Client) getJSON(ctx context.Context, path string, admin bool, v any) error {
	status, body, err := c.roundTrip(ctx, fasthttp.MethodGet, path, nil, admin)
	if err != nil {
		return err
	}
	if status != fasthttp.StatusOK {
		_, err := refusal(status, body)
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// roundTrip is the plain path for the few calls outside the load: it
// returns a copy of the body.
func (c *Client) roundTrip(ctx context.Context, method, path string, body []byte, admin bool) (int, []byte, error) {
	auth := ""
	if admin {
		auth = c.adminAuth
	}
	return c.send(ctx, method, path, body, auth)
}

// send is roundTrip with auth as the Authorization header ("": none).
func (c *Client) send(ctx context.Context, method, path string, body []byte, auth string) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod(method)
	if auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, auth)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if err := c.do(ctx, req, resp); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), bytes.Clone(resp.Body()), nil
}
