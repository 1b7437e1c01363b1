package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/console"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/contract"
	"github.com/flashsale/flashsale/reservation"
)

// consoleEnv is a server with the console on a miniredis, listening on a
// real port (event streams do not fit app.Test).
type consoleEnv struct {
	srv  *httpapi.Server
	hub  *console.Hub
	base string
}

func newConsoleEnv(t *testing.T) *consoleEnv {
	t.Helper()
	_, store := miniStore(t, "consoletest")
	hub := console.New(console.Options{Items: store, Interval: 100 * time.Millisecond, Buffer: 100})
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:   []string{adminToken},
		ServiceTokens: serviceTokens,
		Log:           quietLog(),
		Console:       hub,
		// Far shorter than a stream lives: each event must move the
		// deadline, or the stream dies after the first 300ms.
		WriteTimeout: 300 * time.Millisecond,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.App().Listener(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &consoleEnv{srv: srv, hub: hub, base: "http://" + ln.Addr().String()}
}

func (e *consoleEnv) do(t *testing.T, method, path, auth, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Transport: contract.Transport(t, nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestConsolePage: the page and its files are served without a token,
// confined by a content security policy that allows no other origin and
// no inline script.
func TestConsolePage(t *testing.T) {
	e := newConsoleEnv(t)
	tests := []struct {
		name, path, ctype, contains string
	}{
		{"page", "/admin/console", "text/html", `src="/admin/console/console.js"`},
		{"script", "/admin/console/console.js", "text/javascript", "sessionStorage"},
		{"style", "/admin/console/console.css", "text/css", ".bar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, "GET", tc.path, "", "")
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) ||
				!strings.Contains(string(body), tc.contains) {
				t.Fatalf("%s: %d %s, body has %q: %v", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"),
					tc.contains, strings.Contains(string(body), tc.contains))
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") {
				t.Errorf("CSP %q allows inline code", csp)
			}
		})
	}
}

// TestConsoleEventsNeedAdmin: the feed is an admin route: no token, a
// wrong one or the payment backend's are refused.
func TestConsoleEventsNeedAdmin(t *testing.T) {
	e := newConsoleEnv(t)
	for name, token := range map[string]string{"none": "", "wrong": "nope", "service": serviceTokens[0]} {
		t.Run(name, func(t *testing.T) {
			resp := e.do(t, "GET", "/admin/v1/console/events", token, "")
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
		})
	}
	if e.hub.Running() {
		t.Error("a refused request started the poller")
	}
}

type consoleUpdate struct {
	RedisUp   bool `json:"redis_up"`
	Items     int  `json:"items"`
	PageItems []struct {
		SKU                        string `json:"sku"`
		Stock, Available, Reserved int64
	} `json:"page_items"`
}

// events reads a stream's update events into a channel.
func events(t *testing.T, resp *http.Response) <-chan consoleUpdate {
	t.Helper()
	out := make(chan consoleUpdate, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var u consoleUpdate
			if json.Unmarshal([]byte(data), &u) == nil {
				out <- u
			}
		}
	}()
	return out
}

// TestConsoleEventsStream: two consoles get the same live counts; a hold
// made through the API shows in both within two seconds; the hub reads the
// store about once an interval for both together; a shutdown ends the
// open streams at once instead of waiting out its timeout. The streams
// outlive the server's write timeout.
func TestConsoleEventsStream(t *testing.T) {
	e := newConsoleEnv(t)
	if r := e.do(t, "PUT", "/admin/v1/items/mug", adminToken, `{"stock": 5}`); r.StatusCode != 201 {
		t.Fatalf("seed: %d", r.StatusCode)
	}
	var feeds []<-chan consoleUpdate
	for range 2 {
		resp := e.do(t, "GET", "/admin/v1/console/events", adminToken, "")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		t.Cleanup(func() { resp.Body.Close() })
		feeds = append(feeds, events(t, resp))
	}
	start, reads := time.Now(), e.hub.Reads()
	wait := func(f <-chan consoleUpdate, reserved int64) {
		t.Helper()
		deadline := time.After(2 * time.Second)
		for {
			select {
			case u, ok := <-f:
				if !ok {
					t.Fatal("stream ended")
				}
				if u.Items == 1 && len(u.PageItems) == 1 && u.PageItems[0].SKU == "mug" && u.PageItems[0].Reserved == reserved {
					if u.PageItems[0].Available != 5-reserved {
						t.Errorf("available %d with %d reserved of 5", u.PageItems[0].Available, reserved)
					}
					return
				}
			case <-deadline:
				t.Fatalf("no update with %d reserved within 2s", reserved)
			}
		}
	}
	for _, f := range feeds {
		wait(f, 0)
	}
	if r := e.do(t, "POST", "/v1/items/mug/reservations", "", `{"user_id": "alice", "quantity": 1}`); r.StatusCode != 201 {
		t.Fatalf("reserve: %d", r.StatusCode)
	}
	for _, f := range feeds {
		wait(f, 1)
	}
	// The streams outlive the server's WriteTimeout many times over.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		for _, f := range feeds {
			wait(f, 1)
		}
	}
	elapsed, n := time.Since(start), e.hub.Reads()-reads
	if most := int64(elapsed/(100*time.Millisecond)) + 2; n > most {
		t.Errorf("%d reads in %v for two consoles, want at most %d (one per interval)", n, elapsed, most)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("shutdown with two open streams took %v", took)
	}
	for _, f := range feeds {
		for range f {
		}
	}
}
