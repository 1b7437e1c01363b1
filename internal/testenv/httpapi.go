package testenv

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/flashsale/flashsale/httpapi"
)

// Serve serves srv in this process on a free loopback port until the test
// ends, then shuts it down and checks that it stopped cleanly. It returns
// the address, for clients that need a real socket (fasthttp, net/http).
func Serve(t testing.TB, srv *httpapi.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.App().Listener(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
