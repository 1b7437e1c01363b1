package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale/client"
)

// DefaultRequestTimeout bounds a request whose context has no deadline.
const DefaultRequestTimeout = client.DefaultTimeout

// ErrNoAudit is returned by Client.Audit when the service has no audit
// endpoint (it runs without a durable record to compare with).
var ErrNoAudit = errors.New("the service has no audit endpoint")

// StatusError is an answer the client did not expect: anything but a 2xx
// or a 409 (which is the sale's own verdict, not a failure).
type StatusError = client.Problem

// Item is an item as GET /v1/items/{sku} shows it.
type Item = client.Item

// Audit is GET /admin/v1/items/{sku}/audit: the item's counters in Redis
// against the durable record.
type Audit = client.Audit

// Client is the load generator's view of the service: the flashsale Go
// client's allocation-free calls (client.Client's Try calls), which count a
// 409 as an outcome, plus the few typed calls a run needs around the load.
// Configure it (the Set methods) before it is in use.
type Client struct {
	*client.Client
	baseURL              string
	adminToken, svcToken string
	maxConns             int
	timeout              time.Duration
	buyers               *BuyerTokens
}

// NewClient returns a client for the service at baseURL (http or https)
// holding at most maxConns connections. adminToken is needed only for
// Seed and Audit.
func NewClient(baseURL, adminToken string, maxConns int) (*Client, error) {
	if maxConns < 1 {
		return nil, fmt.Errorf("loadtest: maxConns must be at least 1, got %d", maxConns)
	}
	c := &Client{baseURL: baseURL, adminToken: adminToken, maxConns: maxConns, timeout: DefaultRequestTimeout}
	return c, c.rebuild()
}

func (c *Client) rebuild() error {
	opts := []client.Option{client.WithAdminToken(c.adminToken), client.WithServiceToken(c.svcToken),
		client.WithMaxConns(c.maxConns), client.WithTimeout(c.timeout), client.WithUserAgent("flashsale-loadtest")}
	if c.buyers != nil {
		opts = append(opts, client.WithBuyerToken(c.buyers.Token))
	}
	cl, err := client.New(c.baseURL, opts...)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	c.Client = cl
	return nil
}

// SetServiceToken sets the service token Confirm sends, as the payment
// backend does: the service refuses a confirm without one (401).
func (c *Client) SetServiceToken(token string) {
	c.svcToken = token
	_ = c.rebuild() // the URL was good when NewClient took it
}

// SetBuyerTokens makes every buyer call (Reserve, Reservation, Cancel)
// carry the user's own JWT, minted by b, as a service run with
// FLASHSALE_BUYER_AUTH=jwt requires.
func (c *Client) SetBuyerTokens(b *BuyerTokens) {
	c.buyers = b
	_ = c.rebuild()
}

// SetTimeout sets the bound on a request whose context has no deadline.
func (c *Client) SetTimeout(d time.Duration) {
	if d > 0 {
		c.timeout = d
		_ = c.rebuild()
	}
}

// Reserve asks for qty units of sku for userID, which must match the API's
// user id pattern (it is sent unescaped). A 201 gives outcome "created", a
// 200 "replayed"; a 409 gives its problem code ("sold_out",
// "limit_exceeded", ...) and no error; any other answer is a *StatusError
// with the problem code as outcome.
func (c *Client) Reserve(ctx context.Context, sku, userID string, qty int) (id string, outcome string, err error) {
	return c.TryReserve(ctx, sku, userID, -1, qty)
}

// ReserveUser is Reserve for the user id userPrefix+strconv(user), built
// without an allocation: for scenarios where every request is a new user.
func (c *Client) ReserveUser(ctx context.Context, sku, userPrefix string, user int64, qty int) (id string, outcome string, err error) {
	return c.TryReserve(ctx, sku, userPrefix, user, qty)
}

// Confirm confirms reservation id with the service token: outcome
// "confirmed", or a 409's code ("reservation_expired", ...) without an
// error.
func (c *Client) Confirm(ctx context.Context, id string) (outcome string, err error) {
	return c.TryConfirm(ctx, id)
}

// Cancel cancels reservation id as userID, its owner: outcome "cancelled",
// or a 409's code without an error.
func (c *Client) Cancel(ctx context.Context, id, userID string) (outcome string, err error) {
	return c.TryCancel(ctx, id, userID)
}

// Reservation reads reservation id as userID, its owner, and returns its
// status ("pending", "confirmed", ...).
func (c *Client) Reservation(ctx context.Context, id, userID string) (string, error) {
	r, err := c.Client.Reservation(ctx, id, userID)
	return r.Status, err
}

// Seed creates or replaces sku with stock units, a per-user limit and a
// hold time (0 for the service's defaults) through the admin API.
// buckets 0 leaves the service's default (one bucket).
func (c *Client) Seed(ctx context.Context, sku string, stock int64, perUserLimit, holdSeconds, buckets int) error {
	_, _, err := c.Client.Seed(ctx, sku, client.ItemSpec{Stock: stock, PerUserLimit: perUserLimit, HoldSeconds: holdSeconds, Buckets: buckets})
	if err != nil {
		return fmt.Errorf("seed %s: %w", sku, err)
	}
	return nil
}

// Audit compares sku in Redis with the durable record. It returns an error
// wrapping ErrNoAudit when the service has no audit endpoint.
func (c *Client) Audit(ctx context.Context, sku string) (Audit, error) {
	au, err := c.Client.Audit(ctx, sku)
	if client.IsCode(err, "not_found") {
		return au, fmt.Errorf("audit %s: %w", sku, ErrNoAudit)
	}
	return au, err
}
