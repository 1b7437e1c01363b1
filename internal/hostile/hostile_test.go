//go:build integration

// Package hostile_test is the hostile-client suite of issue 12: it replays,
// against a running `flashsale serve` with FLASHSALE_BUYER_AUTH=jwt, what an
// attacker tried on sale night (the rows) and every bad credential,
// and asserts that each is refused and that nothing changed: the item's
// counters, the reservations involved, the item's keys in Redis and the
// durable record are the same before and after every case.
//
// Each case is one entry of attacks(), named "row<N>/..." for a row of the
// issue or "token/..." and "credential/..." for a bad token or a credential
// on the wrong route; docs/security.md links each hostile case to its name.
// A new case is one more entry: its requests and the answer each must get.
package hostile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/jwttest"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
)

const (
	adminToken   = "hostile-admin-token-0123456789"
	serviceToken = "hostile-service-token-0123456789"
	sku          = "hostile"
	// aliceKey is the Idempotency-Key alice reserved with: what row 4's
	// attacker replays.
	aliceKey = "alice-checkout-1"
)

// env is the running service and what the attacks aim at: alice's pending
// hold (the victim's) and mallory's own (the attacker's; mallory is at the
// item's per-user limit of one).
type env struct {
	base        string
	hc          *http.Client
	rdb         *goredis.Client
	keys        []string // the item's keys in Redis
	rsa, ec     jwttest.Key
	alice       string // "Bearer <alice's valid token>"
	mallory     string
	aliceHold   string // reservation ids
	malloryHold string
	pid         int    // the service's process
	prefix      string // its key prefix in Redis
}

// call is one request of an attack and the answer it must get.
type call struct {
	method, path, body string
	header             map[string]string
	status             int
	code               string // the problem document's code
	// notIn is text the answer must not contain (the victim's id).
	notIn string
}

// attack is one hostile case: its requests, each with the answer it must
// get, then send, for an attack that is more than a list (a loop, requests
// in parallel), which checks its own answers with e.expect.
type attack struct {
	name  string
	calls []call
	send  func(t *testing.T, e *env)
}

func TestHostileClient(t *testing.T) {
	e := start(t)
	for _, a := range attacks(t, e) {
		t.Run(a.name, func(t *testing.T) {
			e.settle(t)
			before := e.snapshot(t)
			for _, c := range a.calls {
				e.expect(t, c)
			}
			if a.send != nil {
				a.send(t, e)
			}
			after := e.snapshot(t)
			before.diff(t, after)
		})
	}
}

// attacks is the table. Every case uses the state start() left, and must
// leave it as it found it.
func attacks(t *testing.T, e *env) []attack {
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	as := func(auth string) map[string]string { return map[string]string{"Authorization": auth} }
	reserve := func(h map[string]string, body string, status int, code string) call {
		return call{method: "POST", path: "/v1/items/" + sku + "/reservations", body: body, header: h, status: status, code: code}
	}
	read := func(id string, h map[string]string, status int, code string) call {
		return call{method: "GET", path: "/v1/reservations/" + id, header: h, status: status, code: code}
	}
	cancel := func(id string, h map[string]string, status int, code string) call {
		return call{method: "POST", path: "/v1/reservations/" + id + "/cancel", header: h, status: status, code: code}
	}
	confirm := func(id string, h map[string]string) call {
		return call{method: "POST", path: "/v1/reservations/" + id + "/confirm", header: h, status: 401, code: "unauthorized"}
	}
	one := `{"quantity":1}`

	cases := []attack{
		{name: "row5/fresh Idempotency-Keys against a sold-out item", send: randomKeysSoldOut},
		{name: "row6/reserve then cancel, 200 times, one user", send: reserveCancelLoop},
		{name: "row7/8 MiB bodies, 16 at a time, to reserve, healthz and the bulk seed without a token", send: bigBodies},
		{name: "row8/parallel scrapes of a large catalogue", send: parallelScrapes},
		{name: "row1/buyer confirms own hold", calls: []call{
			confirm(e.malloryHold, as(e.mallory)),
			confirm(e.malloryHold, nil),
		}},
		{name: "row2/one client, many user ids", calls: func() []call {
			var cs []call
			for _, u := range []string{"a1", "a2", "a3", "a4", "a5", "a6"} {
				cs = append(cs, reserve(as(e.mallory), `{"user_id":"`+u+`","quantity":1}`, 403, "forbidden"))
			}
			// As the token's own user: over the per-user limit, as a
			// buyer should be.
			return append(cs, reserve(as(e.mallory), one, 409, "limit_exceeded"))
		}()},
		{name: "row3/body names another user", calls: []call{
			reserve(as(e.mallory), `{"user_id":"bob","quantity":1}`, 403, "forbidden"),
			reserve(as(e.mallory), `{"quantity":1,"user_id":"alice"}`, 403, "forbidden"),
		}},
		{name: "row4/victim's reservation id", calls: []call{
			read(e.aliceHold, as(e.mallory), 404, "reservation_not_found"),
			cancel(e.aliceHold, as(e.mallory), 404, "reservation_not_found"),
			confirm(e.aliceHold, as(e.mallory)),
		}},
		{name: "row4/victim's idempotency key", calls: []call{
			withKey(reserve(as(e.mallory), `{"user_id":"alice","quantity":1}`, 403, "forbidden"), e.aliceHold),
			// Under her own token the key is looked up among mallory's own
			// requests: no replay of alice's reservation, and a new hold
			// would be over mallory's limit.
			withKey(reserve(as(e.mallory), one, 409, "limit_exceeded"), e.aliceHold),
		}},
		{name: "credential/admin token confirms", calls: []call{confirm(e.malloryHold, bearer(adminToken))}},
		{name: "credential/service token on admin routes", calls: []call{
			{method: "PUT", path: "/admin/v1/items/" + sku, body: `{"stock":1000,"per_user_limit":100}`, header: bearer(serviceToken), status: 401, code: "unauthorized"},
			{method: "GET", path: "/admin/v1/items/" + sku + "/audit", header: bearer(serviceToken), status: 401, code: "unauthorized"},
		}},
		{name: "credential/buyer token on admin routes", calls: []call{
			{method: "PUT", path: "/admin/v1/items/" + sku, body: `{"stock":1000,"per_user_limit":100}`, header: as(e.mallory), status: 401, code: "unauthorized"},
		}},
	}

	// Every bad token, on each buyer route: reserving as a fresh user eve
	// (granted if the token were accepted), and reading and cancelling
	// alice's hold with a token forged in her name.
	for _, bad := range badTokens(t, e) {
		cases = append(cases, attack{name: "token/" + bad.name, calls: []call{
			reserve(bad.header("eve"), one, 401, "unauthorized"),
			read(e.aliceHold, bad.header("alice"), 401, "unauthorized"),
			cancel(e.aliceHold, bad.header("alice"), 401, "unauthorized"),
		}})
	}
	return cases
}

// withKey sends c with the victim's Idempotency-Key, and requires that the
// answer does not carry the victim's reservation id.
func withKey(c call, victimHold string) call {
	h := map[string]string{"Idempotency-Key": aliceKey}
	for k, v := range c.header {
		h[k] = v
	}
	c.header, c.notIn = h, victimHold
	return c
}

// badToken is a credential the buyer routes must refuse, made for a user.
type badToken struct {
	name   string
	header func(user string) map[string]string
}

func badTokens(t *testing.T, e *env) []badToken {
	now := time.Now()
	strangerRSA, strangerEC := jwttest.RSA(t, "rsa-1"), jwttest.EC(t, "ec-1") // known kids, keys not in the JWKS
	tok := func(name string, mint func(claims jwt.MapClaims) string) badToken {
		return badToken{name, func(user string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + mint(jwttest.Claims(user))}
		}}
	}
	with := func(set jwt.MapClaims) func(jwt.MapClaims) jwt.MapClaims {
		return func(c jwt.MapClaims) jwt.MapClaims { return jwttest.With(c, set) }
	}
	expired := with(jwt.MapClaims{"iat": now.Add(-10 * time.Minute).Unix(), "nbf": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(-2 * time.Minute).Unix()})
	notYet := with(jwt.MapClaims{"nbf": now.Add(5 * time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	return []badToken{
		{"missing", func(string) map[string]string { return nil }},
		{"another scheme", func(user string) map[string]string {
			return map[string]string{"Authorization": "Basic " + user}
		}},
		{"malformed", func(string) map[string]string { return map[string]string{"Authorization": "Bearer not.a.jwt"} }},
		tok("alg none", func(c jwt.MapClaims) string {
			return jwttest.Mint(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, c)
		}),
		tok("HS256 with the public key as secret", func(c jwt.MapClaims) string {
			return jwttest.Mint(t, jwt.SigningMethodHS256, "rsa-1", e.rsa.PublicPEM(t), c)
		}),
		tok("expired", func(c jwt.MapClaims) string { return e.ec.Sign(t, expired(c)) }),
		tok("not yet valid", func(c jwt.MapClaims) string { return e.ec.Sign(t, notYet(c)) }),
		tok("wrong issuer", func(c jwt.MapClaims) string {
			return e.ec.Sign(t, jwttest.With(c, jwt.MapClaims{"iss": "https://id.evil.test/"}))
		}),
		tok("wrong audience", func(c jwt.MapClaims) string {
			return e.rsa.Sign(t, jwttest.With(c, jwt.MapClaims{"aud": "another-service"}))
		}),
		tok("unknown kid", func(c jwt.MapClaims) string {
			return jwttest.Mint(t, jwt.SigningMethodRS256, "rsa-9", e.rsa.Private, c)
		}),
		tok("RSA key not in the JWKS", func(c jwt.MapClaims) string { return strangerRSA.Sign(t, c) }),
		tok("EC key not in the JWKS", func(c jwt.MapClaims) string { return strangerEC.Sign(t, c) }),
		tok("tampered signature", func(c jwt.MapClaims) string { return jwttest.Tampered(e.rsa.Sign(t, c)) }),
		{"admin token", func(string) map[string]string { return map[string]string{"Authorization": "Bearer " + adminToken} }},
		{"service token", func(string) map[string]string { return map[string]string{"Authorization": "Bearer " + serviceToken} }},
	}
}

// start runs the service with buyers authenticated against a JWKS file of
// an RSA and an EC key, seeds the item, and takes alice's and mallory's
// holds.
func start(t *testing.T) *env {
	t.Helper()
	bin := testenv.BuildFlashsale(t)
	rdb, prefix := redistest.Client(t)
	redisAddr := os.Getenv(redistest.AddrEnv)
	if redisAddr == "" {
		redisAddr = redistest.DefaultAddr
	}
	e := &env{hc: &http.Client{Timeout: 10 * time.Second}, rdb: rdb, rsa: jwttest.RSA(t, "rsa-1"), ec: jwttest.EC(t, "ec-1")}
	svc := testenv.StartService(t, bin, map[string]string{
		"FLASHSALE_REDIS_ADDR":     redisAddr,
		"FLASHSALE_KEY_PREFIX":     prefix,
		"FLASHSALE_MYSQL_DSN":      testenv.SharedMySQL(t),
		"FLASHSALE_ADMIN_TOKEN":    adminToken,
		"FLASHSALE_SERVICE_TOKENS": serviceToken,
		"FLASHSALE_BUYER_AUTH":     "jwt",
		"FLASHSALE_JWT_JWKS_FILE":  jwttest.JWKSFile(t, e.rsa, e.ec),
		"FLASHSALE_JWT_ISSUER":     jwttest.Issuer,
		"FLASHSALE_JWT_AUDIENCE":   jwttest.Audience,
		"FLASHSALE_LOG_LEVEL":      "warn",
	})
	e.base, e.pid, e.prefix = svc.URL(), svc.Pid(), prefix
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, rdb, prefix)
	if err != nil {
		t.Fatal(err)
	}
	e.keys = store.ScriptKeys(sku)
	e.alice = "Bearer " + e.ec.Sign(t, jwttest.Claims("alice"))
	e.mallory = "Bearer " + e.rsa.Sign(t, jwttest.Claims("mallory"))

	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if st, _, body := e.do(t, "PUT", "/admin/v1/items/"+sku, `{"stock":10,"per_user_limit":1,"hold_seconds":600}`, admin); st != 201 {
		t.Fatalf("seed: %d %s", st, body)
	}
	hold := func(user, auth string, h map[string]string) string {
		h["Authorization"] = auth
		st, _, body := e.do(t, "POST", "/v1/items/"+sku+"/reservations", `{"user_id":"`+user+`","quantity":1}`, h)
		var r struct{ ID string }
		if st != 201 || json.Unmarshal(body, &r) != nil || r.ID == "" {
			t.Fatalf("setup reserve: %d %s", st, body)
		}
		return r.ID
	}
	e.aliceHold = hold("alice", e.alice, map[string]string{"Idempotency-Key": aliceKey})
	e.malloryHold = hold("mallory", e.mallory, map[string]string{})
	return e
}

// do sends one request and returns the status, headers and body.
func (e *env) do(t *testing.T, method, path, body string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res.StatusCode, res.Header, raw
}

// expect sends c and checks its answer: the status, the problem code, and
// for a 401 a Bearer challenge.
func (e *env) expect(t *testing.T, c call) {
	t.Helper()
	status, header, body := e.do(t, c.method, c.path, c.body, c.header)
	where := c.method + " " + c.path
	var p struct{ Code string }
	_ = json.Unmarshal(body, &p)
	if status != c.status || p.Code != c.code {
		t.Errorf("%s: %d %s, want %d %s", where, status, body, c.status, c.code)
	}
	if status == http.StatusUnauthorized {
		if ch := header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
			t.Errorf("%s: 401 with WWW-Authenticate %q, want a Bearer challenge", where, ch)
		}
	}
	if c.notIn != "" && strings.Contains(string(body), c.notIn) {
		t.Errorf("%s: the answer carries the victim's reservation %s: %s", where, c.notIn, body)
	}
}

// settle waits until the durable record has caught up, so no write of the
// syncer's from before a case lands during it.
func (e *env) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		au := e.audit(t)
		if au["backlog"] == float64(0) && au["in_sync"] == true {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record did not catch up: %v", au)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) audit(t *testing.T) map[string]any {
	t.Helper()
	st, _, body := e.do(t, "GET", "/admin/v1/items/"+sku+"/audit", "", map[string]string{"Authorization": "Bearer " + adminToken})
	var au map[string]any
	if st != 200 || json.Unmarshal(body, &au) != nil {
		t.Fatalf("audit: %d %s", st, body)
	}
	return au
}

// snapshot is everything an attack could have changed, each part as text.
type snapshot struct {
	parts map[string]string
	names []string // in the order taken
}

func (s *snapshot) add(name, v string) {
	s.parts[name] = v
	s.names = append(s.names, name)
}

func (e *env) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{parts: map[string]string{}}
	getJSON := func(path, auth string) string {
		st, _, body := e.do(t, "GET", path, "", map[string]string{"Authorization": auth})
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("GET %s: %d %s", path, st, body)
		}
		return fmt.Sprint(st, " ", v)
	}
	s.add("item", getJSON("/v1/items/"+sku, ""))
	s.add("alice's hold", getJSON("/v1/reservations/"+e.aliceHold, e.alice))
	s.add("mallory's hold", getJSON("/v1/reservations/"+e.malloryHold, e.mallory))
	s.add("audit", fmt.Sprint(e.audit(t)))
	for _, k := range e.keys {
		s.add("redis "+k, redisValue(t, e.rdb, k))
	}
	return s
}

// redisValue is a key's content, by its type; for a stream, the entries
// ever added and the last id, which trimming by the syncer leaves alone.
func redisValue(t *testing.T, rdb *goredis.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		t.Fatalf("TYPE %s: %v", key, err)
	}
	var v any
	switch typ {
	case "none":
		return "none"
	case "string":
		v, err = rdb.Get(ctx, key).Result()
	case "hash":
		v, err = rdb.HGetAll(ctx, key).Result()
	case "zset":
		v, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	case "set":
		var m []string
		m, err = rdb.SMembers(ctx, key).Result()
		slices.Sort(m)
		v = m
	case "list":
		v, err = rdb.LRange(ctx, key, 0, -1).Result()
	case "stream":
		var info *goredis.XInfoStream
		info, err = rdb.XInfoStream(ctx, key).Result()
		if err == nil {
			v = fmt.Sprintf("entries added %d, last %s", info.EntriesAdded, info.LastGeneratedID)
		}
	default:
		v = "unexpected type " + typ
	}
	if err != nil {
		t.Fatalf("%s %s: %v", typ, key, err)
	}
	return typ + " " + fmt.Sprint(v)
}

// diff fails the test for every part that changed.
func (s snapshot) diff(t *testing.T, after snapshot) {
	t.Helper()
	for _, name := range s.names {
		if s.parts[name] != after.parts[name] {
			t.Errorf("the attack changed %s:\nbefore %v\nafter  %v", name, s.parts[name], after.parts[name])
		}
	}
}
