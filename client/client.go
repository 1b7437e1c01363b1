// Package client is a Go client for the flashsale API (api/openapi.yaml):
// typed calls for a shop's services, and allocation-free calls for load
// generators. A payment service confirms a hold in three lines:
//
//	fs, err := client.New("http://flashsale:3004", client.WithServiceToken(token))
//	r, err := fs.Confirm(ctx, id)
//	if client.IsCode(err, "reservation_expired") { /* refund */ }
package client

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
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// Client talks to one flashsale service. It is safe for concurrent use;
// make one and share it. It runs on fasthttp, whose pooled requests and
// responses let a load generator send tens of thousands of calls a second
// without leaving the machine's cores to the garbage collector.
type Client struct {
	hc          *fasthttp.HostClient
	base        string // scheme://host[:port][/prefix], no trailing slash
	adminAuth   string // "Bearer <token>", "" for none
	serviceAuth string
	buyerAuth   func(user string) (string, error) // a buyer's Authorization header; nil: none
	timeout     time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithAdminToken sets the admin token that Seed, SeedMany and Audit send.
func WithAdminToken(token string) Option { return func(c *Client) { c.adminAuth = bearer(token) } }

// WithServiceToken sets the payment backend's token that Confirm sends.
func WithServiceToken(token string) Option { return func(c *Client) { c.serviceAuth = bearer(token) } }

// WithBuyerToken makes the buyer calls (Reserve, Reservation, Cancel) carry
// the buyer's own JWT, as a service run with FLASHSALE_BUYER_AUTH=jwt
// requires: token returns it for a user id.
func WithBuyerToken(token func(user string) (string, error)) Option {
	return func(c *Client) {
		c.buyerAuth = func(user string) (string, error) {
			t, err := token(user)
			if err != nil {
				return "", fmt.Errorf("client: buyer token for %s: %w", user, err)
			}
			return bearer(t), nil
		}
	}
}

// WithMaxConns bounds the connections to the service (default 64).
func WithMaxConns(n int) Option {
	return func(c *Client) {
		if n > 0 {
			c.hc.MaxConns = n
		}
	}
}

// WithTimeout bounds a request whose context has no deadline (default
// DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout, c.hc.MaxConnWaitTimeout = d, d
		}
	}
}

// WithUserAgent sets the User-Agent sent (default none).
func WithUserAgent(ua string) Option { return func(c *Client) { c.hc.Name = ua } }

// WithTransport replaces how requests are sent (fasthttp's transport): for
// tests that check every exchange, or a proxy.
func WithTransport(t fasthttp.RoundTripper) Option { return func(c *Client) { c.hc.Transport = t } }

func bearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// New returns a client for the service at baseURL (http or https, with an
// optional path prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: base url %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("client: base url %q: want scheme://host[:port][/path] and nothing else", baseURL)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	c := &Client{
		hc: &fasthttp.HostClient{
			Addr:                     addr,
			IsTLS:                    u.Scheme == "https",
			MaxConns:                 64,
			MaxConnWaitTimeout:       DefaultTimeout,
			MaxIdleConnDuration:      time.Minute,
			DisablePathNormalizing:   true,
			NoDefaultUserAgentHeader: true,
		},
		base:    u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"),
		timeout: DefaultTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// CloseIdleConnections closes the keep-alive connections not in use.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Item is an item's offer and stock, summed over its buckets.
type Item struct {
	SKU          string     `json:"sku"`
	Name         string     `json:"name"`
	Stock        int64      `json:"stock"`
	Available    int64      `json:"available"`
	Reserved     int64      `json:"reserved"`
	Sold         int64      `json:"sold"`
	PerUserLimit int        `json:"per_user_limit"`
	HoldSeconds  int64      `json:"hold_seconds"`
	StartsAt     *time.Time `json:"starts_at"`
	EndsAt       *time.Time `json:"ends_at"`
	Buckets      int        `json:"buckets"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// ItemSpec is what a seed sets; zero fields take the service's defaults.
type ItemSpec struct {
	SKU          string     `json:"sku,omitempty"` // SeedMany only
	Name         string     `json:"name,omitempty"`
	Stock        int64      `json:"stock"`
	PerUserLimit int        `json:"per_user_limit,omitempty"`
	HoldSeconds  int        `json:"hold_seconds,omitempty"`
	StartsAt     *time.Time `json:"starts_at,omitempty"`
	EndsAt       *time.Time `json:"ends_at,omitempty"`
	Buckets      int        `json:"buckets,omitempty"`
}

// Reservation is a hold and what became of it.
type Reservation struct {
	ID        string    `json:"id"`
	SKU       string    `json:"sku"`
	UserID    string    `json:"user_id"`
	Quantity  int       `json:"quantity"`
	Status    string    `json:"status"` // pending, confirmed, cancelled, expired
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ReserveRequest asks for Quantity units for UserID. Under
// FLASHSALE_BUYER_AUTH=jwt UserID is also the user WithBuyerToken is asked a
// token for; the body then carries it too, which the service accepts as the
// token's own. A retry with the same IdempotencyKey answers the original
// reservation.
type ReserveRequest struct {
	UserID         string
	Quantity       int
	IdempotencyKey string
}

// SeedResult is one item's result of SeedMany.
type SeedResult struct {
	SKU     string   `json:"sku"`
	Status  int      `json:"status"`
	Result  string   `json:"result"` // created, updated or error
	Item    *Item    `json:"item,omitempty"`
	Problem *Problem `json:"problem,omitempty"`
}

// Audit is an item's counters in Redis against the durable record.
type Audit struct {
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

// Item reads sku.
func (c *Client) Item(ctx context.Context, sku string) (Item, error) {
	var it Item
	err := c.call(ctx, fasthttp.MethodGet, "/v1/items/"+url.PathEscape(sku), nil, "", nil, &it, fasthttp.StatusOK)
	return it, err
}

// Reserve asks for a hold. replayed is true when the Idempotency-Key
// answered an earlier reservation (200) rather than a new one (201).
func (c *Client) Reserve(ctx context.Context, sku string, r ReserveRequest) (res Reservation, replayed bool, err error) {
	body := struct {
		UserID   string `json:"user_id,omitempty"`
		Quantity int    `json:"quantity"`
	}{r.UserID, r.Quantity}
	raw, err := json.Marshal(body)
	if err != nil {
		return res, false, err
	}
	auth, err := c.buyer(r.UserID)
	if err != nil {
		return res, false, err
	}
	var hdr []string
	if r.IdempotencyKey != "" {
		hdr = []string{"Idempotency-Key", r.IdempotencyKey}
	}
	status := 0
	err = c.callStatus(ctx, fasthttp.MethodPost, "/v1/items/"+url.PathEscape(sku)+"/reservations", raw, auth, hdr, &res, &status,
		fasthttp.StatusCreated, fasthttp.StatusOK)
	return res, status == fasthttp.StatusOK, err
}

// Reservation reads a reservation as its buyer (user's token is sent under
// WithBuyerToken).
func (c *Client) Reservation(ctx context.Context, id, user string) (Reservation, error) {
	var r Reservation
	auth, err := c.buyer(user)
	if err != nil {
		return r, err
	}
	err = c.call(ctx, fasthttp.MethodGet, "/v1/reservations/"+url.PathEscape(id), nil, auth, nil, &r, fasthttp.StatusOK)
	return r, err
}

// Cancel cancels a pending hold as its buyer.
func (c *Client) Cancel(ctx context.Context, id, user string) (Reservation, error) {
	var r Reservation
	auth, err := c.buyer(user)
	if err != nil {
		return r, err
	}
	err = c.call(ctx, fasthttp.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/cancel", nil, auth, nil, &r, fasthttp.StatusOK)
	return r, err
}

// Confirm marks a hold paid: the payment backend's call, with the service
// token (WithServiceToken). A hold that expired or was cancelled is a
// *Problem with code reservation_expired or reservation_cancelled.
func (c *Client) Confirm(ctx context.Context, id string) (Reservation, error) {
	var r Reservation
	err := c.call(ctx, fasthttp.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/confirm", nil, c.serviceAuth, nil, &r, fasthttp.StatusOK)
	return r, err
}

// Seed creates (created true) or replaces an item's offer, with the admin
// token.
func (c *Client) Seed(ctx context.Context, sku string, spec ItemSpec) (it Item, created bool, err error) {
	spec.SKU = ""
	raw, err := json.Marshal(spec)
	if err != nil {
		return it, false, err
	}
	status := 0
	err = c.callStatus(ctx, fasthttp.MethodPut, "/admin/v1/items/"+url.PathEscape(sku), raw, c.adminAuth, nil, &it, &status,
		fasthttp.StatusCreated, fasthttp.StatusOK)
	return it, status == fasthttp.StatusCreated, err
}

// SeedMany seeds up to 10,000 items in one call, each applied on its own:
// a refused item is a result with its Problem, not an error.
func (c *Client) SeedMany(ctx context.Context, items []ItemSpec) ([]SeedResult, error) {
	raw, err := json.Marshal(struct {
		Items []ItemSpec `json:"items"`
	}{items})
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []SeedResult `json:"results"`
	}
	err = c.call(ctx, fasthttp.MethodPut, "/admin/v1/items", raw, c.adminAuth, nil, &out, fasthttp.StatusOK)
	return out.Results, err
}

// Audit compares sku in Redis with the durable record, with the admin
// token. A service without a record answers a *Problem with code not_found.
func (c *Client) Audit(ctx context.Context, sku string) (Audit, error) {
	var a Audit
	err := c.call(ctx, fasthttp.MethodGet, "/admin/v1/items/"+url.PathEscape(sku)+"/audit", nil, c.adminAuth, nil, &a, fasthttp.StatusOK)
	return a, err
}

func (c *Client) buyer(user string) (string, error) {
	if c.buyerAuth == nil {
		return "", nil
	}
	return c.buyerAuth(user)
}

func (c *Client) call(ctx context.Context, method, path string, body []byte, auth string, hdr []string, out any, ok ...int) error {
	var status int
	return c.callStatus(ctx, method, path, body, auth, hdr, out, &status, ok...)
}

// callStatus sends one request and decodes a 2xx in ok into out; anything
// else is a *Problem.
func (c *Client) callStatus(ctx context.Context, method, path string, body []byte, auth string, hdr []string, out any, status *int, ok ...int) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.base + path)
	req.Header.SetMethod(method)
	// fasthttp would otherwise label an empty POST a form, which the API
	// refuses with 415.
	req.Header.SetContentType("application/json")
	if auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != nil {
		req.SetBodyRaw(body)
	}
	if err := c.do(ctx, req, resp); err != nil {
		return err
	}
	*status = resp.StatusCode()
	for _, s := range ok {
		if *status == s {
			if err := json.Unmarshal(resp.Body(), out); err != nil {
				return fmt.Errorf("client: %s %s: %d answer: %w", method, path, *status, err)
			}
			return nil
		}
	}
	return problemOf(resp)
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
		return fmt.Errorf("client: %s %s: %w", req.Header.Method(), req.URI().Path(), err)
	}
	return nil
}

// Problem is an answer other than the call's success: the service's RFC
// 9457 problem document, with Code the stable name to switch on.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// RetryAfter is the Retry-After the service sent (429, 503), 0 if none.
	RetryAfter time.Duration `json:"-"`
}

func (p *Problem) Error() string {
	msg := "flashsale: HTTP " + strconv.Itoa(p.Status)
	if p.Code != "" {
		msg += " " + p.Code
	}
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return msg
}

// IsCode reports whether err is a *Problem with the given code, such as
// "sold_out" or "reservation_expired".
func IsCode(err error, code string) bool {
	var p *Problem
	return errors.As(err, &p) && p.Code == code
}

func problemOf(resp *fasthttp.Response) *Problem {
	p := &Problem{}
	if json.Unmarshal(resp.Body(), p) != nil || p.Status == 0 {
		p = &Problem{Detail: fmt.Sprintf("%.200q", resp.Body())}
	}
	p.Status = resp.StatusCode()
	if s, err := strconv.Atoi(string(resp.Header.Peek(fasthttp.HeaderRetryAfter))); err == nil && s >= 0 {
		p.RetryAfter = time.Duration(s) * time.Second
	}
	return p
}

// appendURI builds base + parts into buf, which callers keep on their
// stack: fasthttp copies the URI, so nothing here needs the heap.
func (c *Client) appendURI(buf []byte, parts ...string) []byte {
	buf = append(buf[:0], c.base...)
	for _, p := range parts {
		buf = append(buf, p...)
	}
	return buf
}

// field returns the JSON string value that follows key (such as `"id":"`)
// in body: for the API's own ids and codes, which never hold an escape.
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
