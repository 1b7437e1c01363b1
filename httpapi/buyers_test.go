package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/jwttest"
	"github.com/flashsale/flashsale/reservation"
)

// buyerEnv is a server with FLASHSALE_BUYER_AUTH=jwt: buyers' tokens are
// verified against a JWKS file with an RSA and an EC key.
type buyerEnv struct {
	app     *fiber.App
	rsa, ec jwttest.Key
	alice   h // alice's good token
	bob     h // bob's good token
}

func newBuyerEnv(t *testing.T) *buyerEnv {
	t.Helper()
	_, store := miniStore(t, "buyertest")
	e := &buyerEnv{rsa: jwttest.RSA(t, "rsa-1"), ec: jwttest.EC(t, "ec-1")}
	v, err := buyerauth.New(t.Context(), buyerauth.Options{
		JWKSFile: jwttest.JWKSFile(t, e.rsa, e.ec), Issuer: jwttest.Issuer, Audience: jwttest.Audience,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app = httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:   []string{adminToken},
		ServiceTokens: serviceTokens,
		Buyers:        v,
		Log:           quietLog(),
	}).App()
	e.alice = bearer(e.rsa.Sign(t, jwttest.Claims("alice")))
	e.bob = bearer(e.ec.Sign(t, jwttest.Claims("bob")))
	seed(t, e.app, "ticket", `{"stock":10,"per_user_limit":5}`)
	return e
}

func bearer(token string) h { return h{"Authorization": "Bearer " + token} }

// wantUnauthorized checks a refused buyer: 401 unauthorized with a Bearer
// challenge, error="invalid_token" when a token was sent and refused.
func wantUnauthorized(t *testing.T, r response, invalidToken bool) {
	t.Helper()
	wantProblem(t, r, 401, "unauthorized")
	challenge := r.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(challenge, "Bearer ") {
		t.Errorf("WWW-Authenticate %q, want a Bearer challenge", challenge)
	}
	if got := strings.Contains(challenge, `error="invalid_token"`); got != invalidToken {
		t.Errorf("WWW-Authenticate %q: error=\"invalid_token\" present %v, want %v", challenge, got, invalidToken)
	}
}

// TestBuyerTokenRefused: under jwt, reserve refuses every request whose
// token is missing, forged or not valid now, as 401 with a Bearer
// challenge, and nothing is reserved.
func TestBuyerTokenRefused(t *testing.T) {
	e := newBuyerEnv(t)
	before := getItem(t, e.app, "ticket")
	good := jwttest.Claims("alice")
	now := time.Now()
	for _, tc := range []struct {
		name         string
		headers      h
		invalidToken bool // a token was sent and refused
	}{
		{name: "missing header", headers: nil},
		{name: "another scheme", headers: h{"Authorization": "Basic YWxpY2U6c2VjcmV0"}},
		{name: "the admin token", headers: admin, invalidToken: true},
		{name: "the service token", headers: service, invalidToken: true},
		{name: "empty bearer", headers: h{"Authorization": "Bearer "}, invalidToken: true},
		{name: "malformed token", headers: bearer("not.a.jwt"), invalidToken: true},
		{name: "alg none", headers: bearer(jwttest.Mint(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, good)), invalidToken: true},
		{name: "HS256 with the public key as secret", headers: bearer(jwttest.Mint(t, jwt.SigningMethodHS256, "rsa-1", e.rsa.PublicPEM(t), good)), invalidToken: true},
		{name: "expired", headers: bearer(e.rsa.Sign(t, jwttest.With(good, jwt.MapClaims{"exp": now.Add(-2 * time.Minute).Unix()}))), invalidToken: true},
		{name: "nbf in the future", headers: bearer(e.rsa.Sign(t, jwttest.With(good, jwt.MapClaims{"nbf": now.Add(2 * time.Minute).Unix()}))), invalidToken: true},
		{name: "wrong iss", headers: bearer(e.ec.Sign(t, jwttest.With(good, jwt.MapClaims{"iss": "https://evil.test/"}))), invalidToken: true},
		{name: "wrong aud", headers: bearer(e.ec.Sign(t, jwttest.With(good, jwt.MapClaims{"aud": "another-service"}))), invalidToken: true},
		{name: "unknown kid", headers: bearer(jwttest.Mint(t, jwt.SigningMethodRS256, "rsa-9", e.rsa.Private, good)), invalidToken: true},
		{name: "tampered signature", headers: bearer(jwttest.Tampered(e.rsa.Sign(t, good))), invalidToken: true},
		{name: "user not a valid user id", headers: bearer(e.rsa.Sign(t, jwttest.Claims("not a user id!"))), invalidToken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, e.app, "POST", "/v1/items/ticket/reservations", `{"user_id":"alice","quantity":1}`, tc.headers)
			wantUnauthorized(t, r, tc.invalidToken)
			wantItem(t, e.app, "ticket", before)
		})
	}
}

// TestBuyerIdentity: under jwt the token names the buyer. The body's
// user_id may be left out; one naming someone else is 403 forbidden with
// nothing reserved.
func TestBuyerIdentity(t *testing.T) {
	e := newBuyerEnv(t)
	for _, tc := range []struct {
		name    string
		body    string
		headers h
		status  int
		code    string // for a refusal
		user    string // the reservation's user, for a success
	}{
		{"no user_id", `{"quantity":1}`, e.alice, 201, "", "alice"},
		{"the token's user_id", `{"user_id":"alice","quantity":1}`, e.alice, 201, "", "alice"},
		{"EC key, no user_id", `{"quantity":1}`, e.bob, 201, "", "bob"},
		{"another user_id", `{"user_id":"bob","quantity":1}`, e.alice, 403, "forbidden", ""},
		{"another user_id, keys reordered", `{"quantity":1,"user_id":"bob"}`, e.alice, 403, "forbidden", ""},
		{"no quantity", `{"user_id":"alice"}`, e.alice, 400, "invalid_request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getItem(t, e.app, "ticket")
			r := do(t, e.app, "POST", "/v1/items/ticket/reservations", tc.body, tc.headers)
			if tc.code != "" {
				wantProblem(t, r, tc.status, tc.code)
				wantItem(t, e.app, "ticket", before)
				return
			}
			wantOK(t, r, tc.status)
			if r.str("user_id") != tc.user {
				t.Errorf("reservation user_id %q, want %q", r.str("user_id"), tc.user)
			}
		})
	}
}

// TestBuyerOwnsReservations: under jwt a buyer reads and cancels only their
// own reservations. Another buyer's is 404 reservation_not_found, with the
// same body as an id that does not exist, and stays as it was.
func TestBuyerOwnsReservations(t *testing.T) {
	e := newBuyerEnv(t)
	r := do(t, e.app, "POST", "/v1/items/ticket/reservations", `{"quantity":2}`, e.alice)
	wantOK(t, r, 201)
	id := r.str("id")
	unknown := id[:len(id)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(id, "A")]
	after := getItem(t, e.app, "ticket")

	// problemBody is a refusal's body without what differs per request.
	problemBody := func(r response) string {
		return fmt.Sprintf("%d %v %v %v %v %v", r.status, r.body["type"], r.body["title"], r.body["status"], r.body["detail"], r.body["code"])
	}
	for _, tc := range []struct {
		name, method, path string
	}{
		{"read", "GET", "/v1/reservations/"},
		{"cancel", "POST", "/v1/reservations/%s/cancel"},
	} {
		path := func(id string) string {
			if strings.Contains(tc.path, "%s") {
				return fmt.Sprintf(tc.path, id)
			}
			return tc.path + id
		}
		t.Run(tc.name+" another buyer's", func(t *testing.T) {
			theirs := do(t, e.app, tc.method, path(id), "", e.bob)
			wantProblem(t, theirs, 404, "reservation_not_found")
			none := do(t, e.app, tc.method, path(unknown), "", e.bob)
			wantProblem(t, none, 404, "reservation_not_found")
			if problemBody(theirs) != problemBody(none) {
				t.Errorf("another buyer's reservation answers\n%s\nan unknown id\n%s", problemBody(theirs), problemBody(none))
			}
			mine := do(t, e.app, "GET", "/v1/reservations/"+id, "", e.alice)
			wantOK(t, mine, 200)
			if mine.str("status") != "pending" {
				t.Fatalf("alice's hold is %q after bob's %s, want pending", mine.str("status"), tc.name)
			}
			wantItem(t, e.app, "ticket", after)
		})
		t.Run(tc.name+" without a token", func(t *testing.T) {
			wantUnauthorized(t, do(t, e.app, tc.method, path(id), "", nil), false)
			wantItem(t, e.app, "ticket", after)
		})
	}

	t.Run("read own", func(t *testing.T) {
		r := do(t, e.app, "GET", "/v1/reservations/"+id, "", e.alice)
		wantOK(t, r, 200)
		if r.str("id") != id || r.str("user_id") != "alice" {
			t.Fatalf("alice reads %s: %s", id, r.raw)
		}
	})
	t.Run("cancel own", func(t *testing.T) {
		r := do(t, e.app, "POST", "/v1/reservations/"+id+"/cancel", "", e.alice)
		wantOK(t, r, 200)
		if r.str("status") != "cancelled" {
			t.Fatalf("alice cancels %s: %s", id, r.raw)
		}
		want := after
		want.Available, want.Reserved = after.Available+2, after.Reserved-2
		wantItem(t, e.app, "ticket", want)
	})
	t.Run("confirm needs the service token, not a buyer's", func(t *testing.T) {
		r := do(t, e.app, "POST", "/v1/items/ticket/reservations", `{"quantity":1}`, e.alice)
		wantOK(t, r, 201)
		held := r.str("id")
		wantProblem(t, do(t, e.app, "POST", "/v1/reservations/"+held+"/confirm", "", e.alice), 401, "unauthorized")
		wantOK(t, do(t, e.app, "POST", "/v1/reservations/"+held+"/confirm", "", service), 200)
	})
}
