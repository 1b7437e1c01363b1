package k6_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/jwttest"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// k6 cannot run here, so the script is checked the other way round: every
// request it makes is read out of its source and sent to the real API, and
// every response field it reads must be in what the API answers. A renamed
// route or field in either the script or the API fails this test.

const (
	scriptPath   = "flashsale.js"
	adminToken   = "k6-check-admin-token"
	serviceToken = "k6-check-service-token"
)

// buyerTokenVar is the script's variable holding the buyer's minted JWT;
// the check sends one minted for the sample user in its place.
const buyerTokenVar = "buyerToken"

// buyerRoutes need the buyer's own token when the deployment authenticates
// buyers (FLASHSALE_BUYER_AUTH=jwt), which the check's API does.
var buyerRoutes = []string{
	"POST /v1/items/{sku}/reservations",
	"GET /v1/reservations/{id}",
	"POST /v1/reservations/{id}/cancel",
}

// request is one HTTP call as the script writes it.
type request struct {
	line    int
	name    string // the const the response is bound to
	method  string
	path    string   // after ${BASE_URL}, placeholders still in
	body    []string // keys of the JSON body; nil: no body
	reads   []string // fields read from the response, dotted for nesting
	auth    string   // the script's variable sent as the bearer token; "": none
	asRoute string   // method and path with placeholders as {name}: what the coverage check compares
}

// Calls on the k6/http module that send nothing.
var notRequests = map[string]bool{"expectedStatuses": true, "setResponseCallback": true, "file": true, "cookieJar": true}

var methods = map[string]string{
	"get": http.MethodGet, "post": http.MethodPost, "put": http.MethodPut, "patch": http.MethodPatch,
	"del": http.MethodDelete, "head": http.MethodHead, "options": http.MethodOptions,
}

var (
	httpCall    = regexp.MustCompile(`\bhttp\.(\w+)\(`)
	bound       = regexp.MustCompile(`(?:const|let|var)\s+(\w+)\s*=\s*$`)
	placeholder = regexp.MustCompile(`\$\{([^}]*)\}`)
	// res.json('a.b') or res.json().a
	jsonRead = regexp.MustCompile(`(\w+)\.json\(\s*(?:'([^']*)'|"([^"]*)")?\s*\)(?:\.([A-Za-z_$][\w$]*))?`)
	// Authorization: `Bearer ${ADMIN_TOKEN}` in a call's params.
	// The buyer's, sent only when there is one, is spread in:
	// ...(buyerToken && { Authorization: `Bearer ${buyerToken}` }).
	bearer = regexp.MustCompile("Authorization:\\s*`Bearer \\$\\{(\\w+)\\}`")
)

// parseScript reads every request and every response read out of src. It
// knows only the forms the script's header comment asks for; anything else
// is a problem, never silently skipped, so the check cannot be dodged by
// writing a request in a form it does not see.
func parseScript(src string) ([]request, []string) {
	var reqs []request
	var problems []string
	at := func(pos int) int { return strings.Count(src[:pos], "\n") + 1 }
	byName := map[string]int{}

	for _, m := range httpCall.FindAllStringSubmatchIndex(src, -1) {
		fn, line := src[m[2]:m[3]], at(m[0])
		if notRequests[fn] {
			continue
		}
		method, ok := methods[fn]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s:%d: cannot check http.%s; use http.get/post/put/patch/del", scriptPath, line, fn))
			continue
		}
		r := request{line: line, method: method}
		if b := bound.FindStringSubmatch(src[:m[0]]); b != nil {
			r.name = b[1]
		} else {
			problems = append(problems, fmt.Sprintf("%s:%d: bind the response of http.%s to a const so its reads can be checked", scriptPath, line, fn))
			continue
		}
		if _, dup := byName[r.name]; dup {
			problems = append(problems, fmt.Sprintf("%s:%d: response name %q is used for two requests", scriptPath, line, r.name))
			continue
		}
		args := strings.TrimLeft(src[m[1]:], " \t\n")
		tmpl, rest, ok := cutTemplate(args)
		if !ok || !strings.HasPrefix(tmpl, "${BASE_URL}/") {
			problems = append(problems, fmt.Sprintf("%s:%d: the URL must be a template literal starting with ${BASE_URL}/", scriptPath, line))
			continue
		}
		r.path = strings.TrimPrefix(tmpl, "${BASE_URL}")
		r.asRoute = method + " " + placeholder.ReplaceAllStringFunc(r.path, func(p string) string {
			return "{" + lastIdent(placeholder.FindStringSubmatch(p)[1]) + "}"
		})
		// k6's get, head and options take (url, params): no body.
		if method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions {
			body, err := parseBody(rest)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: %v", scriptPath, line, err))
				continue
			}
			r.body = body
		}
		if call, ok := balanced(src[m[1]-1:]); ok {
			if b := bearer.FindStringSubmatch(call); b != nil {
				r.auth = b[1]
			}
		}
		byName[r.name] = len(reqs)
		reqs = append(reqs, r)
	}

	for _, m := range jsonRead.FindAllStringSubmatchIndex(src, -1) {
		name, line := src[m[2]:m[3]], at(m[0])
		i, ok := byName[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s:%d: %s.json(...) reads a response this check cannot tie to a request", scriptPath, line, name))
			continue
		}
		// The groups: 'selector', "selector", then a .field after the call;
		// res.json('a').b reads a.b.
		var path []string
		for _, g := range []int{4, 6, 8} {
			if m[g] >= 0 && m[g] < m[g+1] {
				path = append(path, src[m[g]:m[g+1]])
			}
		}
		field := strings.Join(path, ".")
		if field == "" {
			problems = append(problems, fmt.Sprintf("%s:%d: read fields in place, as %s.json('field')", scriptPath, line, name))
			continue
		}
		reqs[i].reads = append(reqs[i].reads, field)
	}
	return reqs, problems
}

// cutTemplate splits a leading template literal off s.
func cutTemplate(s string) (tmpl, rest string, ok bool) {
	if !strings.HasPrefix(s, "`") {
		return "", s, false
	}
	end := strings.IndexByte(s[1:], '`')
	if end < 0 {
		return "", s, false
	}
	return s[1 : end+1], s[end+2:], true
}

// parseBody reads the body argument that follows the URL: null, nothing, or
// JSON.stringify of an object literal, whose keys it returns.
func parseBody(rest string) ([]string, error) {
	rest = strings.TrimLeft(rest, " \t\n")
	if strings.HasPrefix(rest, ")") {
		return nil, nil
	}
	rest = strings.TrimLeft(strings.TrimPrefix(rest, ","), " \t\n")
	if strings.HasPrefix(rest, "null") {
		return nil, nil
	}
	const stringify = "JSON.stringify({"
	if !strings.HasPrefix(rest, stringify) {
		return nil, fmt.Errorf("the body must be null or an inline JSON.stringify({...})")
	}
	obj, ok := balanced(rest[len(stringify)-1:])
	if !ok {
		return nil, fmt.Errorf("unterminated object literal in the body")
	}
	keys := []string{}
	for _, part := range splitTop(obj[1 : len(obj)-1]) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // trailing comma
		}
		if strings.HasPrefix(part, "...") {
			return nil, fmt.Errorf("a spread (%s) hides the body's fields from this check", part)
		}
		key, _, _ := strings.Cut(part, ":") // shorthand {stock} has no colon
		keys = append(keys, strings.Trim(strings.TrimSpace(key), `'"`))
	}
	return keys, nil
}

// balanced returns the bracketed prefix of s (s starts with an opening
// bracket), skipping brackets inside string and template literals.
func balanced(s string) (string, bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '{' || c == '(' || c == '[':
			depth++
		case c == '}' || c == ')' || c == ']':
			depth--
			if depth == 0 {
				return s[:i+1], true
			}
		}
	}
	return "", false
}

// splitTop splits an object literal's inside at the commas between its
// properties, not those inside values.
func splitTop(s string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '(', '[', '\'', '"', '`':
			inner, ok := balancedOrQuoted(s[i:])
			if ok {
				i += len(inner) - 1
			}
		case ',':
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func balancedOrQuoted(s string) (string, bool) {
	if q := s[0]; q == '\'' || q == '"' || q == '`' {
		for i := 1; i < len(s); i++ {
			if s[i] == '\\' {
				i++
			} else if s[i] == q {
				return s[:i+1], true
			}
		}
		return "", false
	}
	return balanced(s)
}

// lastIdent is the name a placeholder stands for: ${data.sku} is a sku.
func lastIdent(expr string) string {
	expr = strings.TrimSpace(expr)
	return expr[strings.LastIndexByte(expr, '.')+1:]
}

// sampleUser is the user the check's buyer is: its body's user_id and its
// token's sub.
const sampleUser = "k6-check-buyer"

// buyerToken is a valid JWT for sampleUser.
func (a *api) buyerToken(t *testing.T) string {
	t.Helper()
	return a.buyers.Sign(t, jwttest.Claims(sampleUser))
}

// sampleValues are valid values for every field the script may send; a
// field the API does not have still goes out (as a string) and is refused,
// which is the point.
var sampleValues = map[string]any{
	"stock": 100, "per_user_limit": 1, "hold_seconds": 600, "name": "k6 check", "buckets": 1,
	"starts_at": "2000-01-01T00:00:00Z", "ends_at": "9999-01-01T00:00:00Z",
	"user_id": sampleUser, "quantity": 1,
}

// api is the real server (httpapi over reservation.Service over redisstore)
// on a miniredis, authenticating buyers as FLASHSALE_BUYER_AUTH=jwt does.
type api struct {
	app     *fiber.App
	items   int
	problem map[string]any // one problem document: every endpoint may answer with one
	buyers  jwttest.Key    // signs the buyers' tokens the API accepts
}

func newAPI(t *testing.T) *api {
	t.Helper()
	_, client := redistest.Miniredis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, "k6check")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	key := jwttest.EC(t, "k6-check")
	verifier, err := buyerauth.New(ctx, buyerauth.Options{JWKSFile: jwttest.JWKSFile(t, key), Issuer: jwttest.Issuer, Audience: jwttest.Audience})
	if err != nil {
		t.Fatalf("buyerauth.New: %v", err)
	}
	a := &api{buyers: key, app: httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens: []string{adminToken}, ServiceTokens: []string{serviceToken}, Buyers: verifier,
	}).App()}
	status, p := a.send(t, http.MethodGet, "/v1/items/k6-check-missing", nil, "")
	if status != http.StatusNotFound || p["code"] != "item_not_found" {
		t.Fatalf("GET a missing item: %d %v, want 404 item_not_found", status, p)
	}
	a.problem = p
	return a
}

// send makes one request through app.Test, with token as its bearer token
// ("": none), and decodes the JSON object it answers (nil if it is not one).
func (a *api) send(t *testing.T, method, path string, body map[string]any, token string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(raw))
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		out = nil // not a JSON object: every read from it fails, as it should
	}
	return res.StatusCode, out
}

// fixtures fills a path's placeholders with a freshly seeded item and, when
// asked for, a pending reservation on it, so every request meets the state
// it expects whatever ran before.
func (a *api) fixtures(t *testing.T, path string) (string, error) {
	t.Helper()
	var names []string
	for _, m := range placeholder.FindAllStringSubmatch(path, -1) {
		name := lastIdent(m[1])
		if name != "sku" && name != "id" {
			return "", fmt.Errorf("placeholder %s is neither a sku nor a reservation id", m[0])
		}
		names = append(names, name)
	}
	a.items++
	values := map[string]string{"sku": fmt.Sprintf("k6-check-%d", a.items)}
	seed := map[string]any{"stock": 10, "per_user_limit": 1}
	if status, body := a.send(t, http.MethodPut, "/admin/v1/items/"+values["sku"], seed, adminToken); status != http.StatusCreated {
		t.Fatalf("seed fixture %s: %d %v", values["sku"], status, body)
	}
	if slices.Contains(names, "id") {
		// The sample buyer's, so a read or cancel as that buyer finds it.
		hold := map[string]any{"user_id": sampleUser, "quantity": 1}
		status, body := a.send(t, http.MethodPost, "/v1/items/"+values["sku"]+"/reservations", hold, a.buyerToken(t))
		if status != http.StatusCreated {
			t.Fatalf("reserve fixture on %s: %d %v", values["sku"], status, body)
		}
		values["id"], _ = body["id"].(string)
	}
	return placeholder.ReplaceAllStringFunc(path, func(p string) string {
		return values[lastIdent(placeholder.FindStringSubmatch(p)[1])]
	}), nil
}

// verify sends every request to the API and returns what did not hold: a
// route it does not have, a body it refuses, a field it does not answer with.
func (a *api) verify(t *testing.T, reqs []request) []string {
	t.Helper()
	var problems []string
	for _, r := range reqs {
		where := fmt.Sprintf("%s:%d: %s %s", scriptPath, r.line, r.method, r.path)
		path, err := a.fixtures(t, r.path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		var body map[string]any
		if r.body != nil {
			body = map[string]any{}
			for _, k := range r.body {
				v, ok := sampleValues[k]
				if !ok {
					v = "k6-check"
				}
				body[k] = v
			}
		}
		var token string
		switch r.auth {
		case "":
		case "ADMIN_TOKEN":
			token = adminToken
		case "SERVICE_TOKEN":
			token = serviceToken
		case buyerTokenVar:
			token = a.buyerToken(t)
		default:
			problems = append(problems, fmt.Sprintf("%s: sends ${%s} as its bearer token, which is none of ADMIN_TOKEN, SERVICE_TOKEN and %s",
				where, r.auth, buyerTokenVar))
			continue
		}
		status, got := a.send(t, r.method, path, body, token)
		if status < 200 || status > 299 {
			problems = append(problems, fmt.Sprintf("%s: %s", where, refusal(status, got)))
			continue
		}
		for _, f := range r.reads {
			if !has(got, f) && !has(a.problem, f) {
				problems = append(problems, fmt.Sprintf("%s: reads %q, which the API answers with in neither %v nor a problem document", where, f, keys(got)))
			}
		}
	}
	return problems
}

// refusal words a non-2xx answer by what it says about the script.
func refusal(status int, p map[string]any) string {
	code, _ := p["code"].(string)
	detail, _ := p["detail"].(string)
	switch {
	case status == http.StatusNotFound && code == "not_found":
		return "no such endpoint (404 not_found)"
	case status == http.StatusMethodNotAllowed:
		return "method not allowed on this path (405)"
	case status == http.StatusBadRequest:
		return fmt.Sprintf("body refused: %s (400)", detail)
	}
	return fmt.Sprintf("answered %d %s: %s", status, code, detail)
}

// has reports whether the dotted field is in the JSON object.
func has(obj map[string]any, field string) bool {
	var v any = obj
	for _, name := range strings.Split(field, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[name]; !ok {
			return false
		}
	}
	return true
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func readScript(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(scriptPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(src)
}

// check is the whole check of one script source.
func check(t *testing.T, src string) ([]request, []string) {
	t.Helper()
	reqs, problems := parseScript(src)
	return reqs, append(problems, newAPI(t).verify(t, reqs)...)
}

func TestScriptCallsOnlyTheAPI(t *testing.T) {
	t.Parallel()
	reqs, problems := check(t, readScript(t))
	for _, p := range problems {
		t.Error(p)
	}
	// What the issue asks of the script; it also proves the parser found the
	// requests rather than passing because it saw none.
	routes := make([]string, len(reqs))
	for i, r := range reqs {
		routes[i] = r.asRoute
		t.Logf("%s:%d: %s, body %v, reads %v", scriptPath, r.line, r.asRoute, r.body, r.reads)
	}
	for _, want := range []string{
		"PUT /admin/v1/items/{sku}",          // setup seeds
		"POST /v1/items/{sku}/reservations",  // buyers reserve
		"POST /v1/reservations/{id}/confirm", // and confirm part of the holds
		"GET /v1/items/{sku}",                // teardown reads the item
	} {
		if !slices.Contains(routes, want) {
			t.Errorf("the script makes no %s request (it makes %v)", want, routes)
		}
	}
	var reads int
	for _, r := range reqs {
		reads += len(r.reads)
		// The check's API refuses a buyer route without the token anyway;
		// this says which variable it must be, so a script that sends some
		// other credential there is caught by name.
		if slices.Contains(buyerRoutes, r.asRoute) && r.auth != buyerTokenVar {
			t.Errorf("%s:%d: %s sends %q as its bearer, want ${%s}, the buyer's minted JWT", scriptPath, r.line, r.asRoute, r.auth, buyerTokenVar)
		}
	}
	if reads == 0 {
		t.Errorf("found no response reads in the script: the field check checked nothing")
	}
}

// TestCheckCatchesMutations proves the check fails a script that is wrong
// the ways a script drifts from the API.
func TestCheckCatchesMutations(t *testing.T) {
	t.Parallel()
	src := readScript(t)
	for _, tc := range []struct {
		name     string
		old, new string
		want     string // in one of the problems
	}{
		{"body field misspelled", "user_id: user", "user: user", `unknown field "user"`},
		{"admin body field misspelled", "per_user_limit: 1", "per_user_limt: 1", "per_user_limt"},
		{"path misspelled", "/v1/items/${data.sku}/reservations`", "/v1/item/${data.sku}/reservations`", "no such endpoint"},
		{"method wrong", "http.post(`${BASE_URL}/v1/reservations/${id}/confirm`", "http.put(`${BASE_URL}/v1/reservations/${id}/confirm`", "405"},
		{"reservation field misspelled", "reservation.json('id')", "reservation.json('reservation_id')", `"reservation_id"`},
		{"item field misspelled", "item.json('sold')", "item.json('sold_units')", `"sold_units"`},
		{"request in a form the parser does not know", "http.get(`", "http.request('GET', `", "http.request"},
		{"placeholder neither sku nor id", "${data.sku}/reservations`", "${data.item}/reservations`", "${data.item}"},
		{"body hidden in a variable", "JSON.stringify({ user_id: user, quantity: 1 })", "reserveBody", "inline JSON.stringify"},
		{"confirm without the service token", "headers: { Authorization: `Bearer ${SERVICE_TOKEN}` },", "", "401 unauthorized"},
		{"confirm with the admin token", "{ Authorization: `Bearer ${SERVICE_TOKEN}` }", "{ Authorization: `Bearer ${ADMIN_TOKEN}` }", "401 unauthorized"},
		{"reserve without the buyer's token", "...(buyerToken && { Authorization: `Bearer ${buyerToken}` })", "", "401 unauthorized"},
		{"reserve with the service token", "Authorization: `Bearer ${buyerToken}`", "Authorization: `Bearer ${SERVICE_TOKEN}`", "401 unauthorized"},
		{"seed without the admin token", "Authorization: `Bearer ${ADMIN_TOKEN}`", "'X-Token': ADMIN_TOKEN", "401 unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(src, tc.old) {
				t.Fatalf("the script no longer contains %q: update this case", tc.old)
			}
			_, problems := check(t, strings.Replace(src, tc.old, tc.new, 1))
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					t.Logf("caught: %s", p)
					return
				}
			}
			t.Errorf("no problem mentions %q; got %q", tc.want, problems)
		})
	}
}

// TestParseScript pins down the forms the parser reads, on snippets.
func TestParseScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		src       string
		wantRoute string
		wantBody  []string
		wantReads []string
		wantAuth  string
	}{
		{
			name:      "body keys, nested values and a trailing comma",
			src:       "const r = http.post(`${BASE_URL}/v1/items/${sku}/x`, JSON.stringify({ a: f(1, 2), 'b': { c: [3, 4] }, d, }), {});",
			wantRoute: "POST /v1/items/{sku}/x",
			wantBody:  []string{"a", "b", "d"},
		},
		{
			name:      "no body, reads by selector and by property",
			src:       "const r = http.post(`${BASE_URL}/v1/r/${data.id}/confirm`, null);\nr.json('a.b'); r.json().c; r.json('d').e;",
			wantRoute: "POST /v1/r/{id}/confirm",
			wantReads: []string{"a.b", "c", "d.e"},
		},
		{
			name:      "get takes params, not a body",
			src:       "const item = http.get(`${BASE_URL}/v1/items/${sku}`, { tags: { name: 'item' } });",
			wantRoute: "GET /v1/items/{sku}",
		},
		{
			name:      "a bearer token in the params",
			src:       "const c = http.post(`${BASE_URL}/v1/r/${id}/confirm`, null, {\n  headers: { Authorization: `Bearer ${SERVICE_TOKEN}` },\n});",
			wantRoute: "POST /v1/r/{id}/confirm",
			wantAuth:  "SERVICE_TOKEN",
		},
		{
			name:      "a buyer's token spread in when there is one",
			src:       "const r = http.post(`${BASE_URL}/v1/items/${sku}/reservations`, null, {\n  headers: { ...h, ...(buyerToken && { Authorization: `Bearer ${buyerToken}` }) },\n});",
			wantRoute: "POST /v1/items/{sku}/reservations",
			wantAuth:  "buyerToken",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reqs, problems := parseScript(tc.src)
			if len(problems) > 0 || len(reqs) != 1 {
				t.Fatalf("got %d requests, problems %q; want one request", len(reqs), problems)
			}
			r := reqs[0]
			if r.asRoute != tc.wantRoute || !slices.Equal(r.body, tc.wantBody) || !slices.Equal(r.reads, tc.wantReads) || r.auth != tc.wantAuth {
				t.Errorf("got %s body %q reads %q auth %q; want %s body %q reads %q auth %q",
					r.asRoute, r.body, r.reads, r.auth, tc.wantRoute, tc.wantBody, tc.wantReads, tc.wantAuth)
			}
		})
	}
}
