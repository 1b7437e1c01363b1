package client

import (
	"context"
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"
)

// The Try calls are for load generators and other callers that count what
// the sale said rather than handle it: a 409 (sold out, over the limit, a
// hold no longer pending) is an outcome, not an error, and the calls
// allocate only the reservation id they return. Any other refusal is a
// *Problem, with its code (or "http_<status>") as the outcome too.

// TryReserve asks for qty units of sku for the user id user+userNum
// (userNum < 0: user alone), which must match the API's user id pattern: it
// is sent unescaped. outcome is "created" (201), "replayed" (200) or the
// refusal's code.
func (c *Client) TryReserve(ctx context.Context, sku, user string, userNum int64, qty int) (id, outcome string, err error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	auth := ""
	if c.buyerAuth != nil {
		u := user
		if userNum >= 0 {
			u += strconv.FormatInt(userNum, 10)
		}
		if auth, err = c.buyerAuth(u); err != nil {
			return "", "jwt", err
		}
	}
	var ub [256]byte
	req.SetRequestURIBytes(c.appendURI(ub[:0], "/v1/items/", sku, "/reservations"))
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
			return "", "bad_answer", fmt.Errorf("client: reserve: %d answer without an id: %.200s", status, body)
		}
		outcome := "created"
		if status == fasthttp.StatusOK {
			outcome = "replayed"
		}
		return string(id), outcome, nil
	default:
		outcome, err := refusal(resp)
		return "", outcome, err
	}
}

// TryConfirm confirms id with the service token: outcome "confirmed", or a
// 409's code without an error.
func (c *Client) TryConfirm(ctx context.Context, id string) (outcome string, err error) {
	return c.transition(ctx, id, "/confirm", "confirmed", c.serviceAuth)
}

// TryCancel cancels id as user, its buyer: outcome "cancelled", or a 409's
// code without an error.
func (c *Client) TryCancel(ctx context.Context, id, user string) (outcome string, err error) {
	auth, err := c.buyer(user)
	if err != nil {
		return "jwt", err
	}
	return c.transition(ctx, id, "/cancel", "cancelled", auth)
}

func (c *Client) transition(ctx context.Context, id, action, done, auth string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	var ub [256]byte
	req.SetRequestURIBytes(c.appendURI(ub[:0], "/v1/reservations/", id, action))
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, auth)
	}
	if err := c.do(ctx, req, resp); err != nil {
		return "transport", err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return refusal(resp)
	}
	return done, nil
}

// refusal labels a non-2xx answer by its problem code. A 409 is the sale
// saying no: an outcome, not an error.
func refusal(resp *fasthttp.Response) (string, error) {
	code, _ := field(resp.Body(), `"code":"`)
	outcome := knownCode(code)
	if resp.StatusCode() == fasthttp.StatusConflict && outcome != "" {
		return outcome, nil
	}
	p := problemOf(resp)
	if outcome == "" {
		outcome = p.Code
	}
	if outcome == "" {
		outcome = "http_" + strconv.Itoa(p.Status)
	}
	return outcome, p
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
	case "rate_limited":
		return "rate_limited"
	}
	return ""
}
