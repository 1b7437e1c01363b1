// Package contract checks HTTP exchanges against the API contract,
// api/openapi.yaml, so that the spec cannot drift from what the service
// does: every test that talks to the service sends its exchanges here.
package contract

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/flashsale/flashsale/api"
)

// Spec is the loaded contract.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	loadOnce sync.Once
	loaded   *Spec
	loadErr  error
)

// Load parses and validates the embedded spec once per test binary.
func Load() (*Spec, error) {
	loadOnce.Do(func() {
		// kin-openapi decodes bodies by media type from a registry of its
		// own; the text bodies of the spec are checked as strings.
		for _, mt := range []string{"application/yaml", "text/event-stream", "text/html", "text/javascript", "text/css"} {
			openapi3filter.RegisterBodyDecoder(mt, openapi3filter.FileBodyDecoder)
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(api.Spec())
		if err != nil {
			loadErr = fmt.Errorf("contract: load api/openapi.yaml: %w", err)
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			loadErr = fmt.Errorf("contract: api/openapi.yaml is not valid: %w", err)
			return
		}
		// Match on paths alone: the tests talk to in-process servers on
		// whatever host.
		doc.Servers = nil
		r, err := gorillamux.NewRouter(doc)
		if err != nil {
			loadErr = fmt.Errorf("contract: router: %w", err)
			return
		}
		loaded = &Spec{doc: doc, router: r}
	})
	return loaded, loadErr
}

// MustLoad is Load for tests.
func MustLoad(t testing.TB) *Spec {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Paths returns the spec's path templates with their methods, such as
// "GET /v1/items/{sku}".
func (s *Spec) Paths() []string {
	var out []string
	for path, item := range s.doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	return out
}

// Check validates one exchange. A request the spec refuses must have been
// refused by the service too (4xx); the response must be one the spec
// documents for the operation, status, headers and body. An exchange on a
// route the spec does not have must be answered 404 or 405.
func (s *Spec) Check(req *http.Request, reqBody []byte, status int, header http.Header, resBody []byte) error {
	ctx := context.Background()
	req = req.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	if req.URL.Host == "" {
		req.URL.Host, req.URL.Scheme = "localhost", "http"
	}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return checkProblemType(header)
		}
		return fmt.Errorf("%s %s answered %d, but the spec has no such operation: %w", req.Method, req.URL.Path, status, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			// Credentials are the service's to check; the spec says which
			// scheme a route takes, not whether a token is good.
			AuthenticationFunc: func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
			MultiError:         true,
		},
	}
	if reqErr := openapi3filter.ValidateRequest(ctx, in); reqErr != nil && (status < 400 || status >= 500) {
		return fmt.Errorf("%s %s: the spec refuses this request, yet the service answered %d: %v", req.Method, req.URL.Path, status, reqErr)
	}
	in.Request.Body = io.NopCloser(bytes.NewReader(reqBody))
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(resBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s %s: the response %d breaks the spec: %v\n%s", req.Method, req.URL.Path, status, err, clip(resBody))
	}
	return nil
}

func checkProblemType(h http.Header) error {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/problem+json" {
		return fmt.Errorf("a 404 or 405 answers application/problem+json, not %q", h.Get("Content-Type"))
	}
	return nil
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// Transport returns a RoundTripper that checks every exchange it carries
// with s, failing t on a mismatch. Event streams are passed through
// unread (their body never ends).
func Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	s := MustLoad(t)
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{t: t, s: s, next: next}
}

type roundTripper struct {
	t    testing.TB
	s    *Spec
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	res, err := rt.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return res, nil
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	if cerr := rt.s.Check(req, reqBody, res.StatusCode, res.Header, body); cerr != nil {
		rt.t.Errorf("contract: %v", cerr)
	}
	return res, nil
}
