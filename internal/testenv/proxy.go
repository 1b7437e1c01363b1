package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy is a toxiproxy proxy run inside the test binary, between a client
// under test and a server, to cut or break the connection without touching
// the server.
type Proxy struct {
	addr     string
	upstream string
	px       *toxiproxy.Proxy
}

// resetPeerToxic is the name ResetPeer gives its toxic, so that calling it
// again replaces the toxic instead of failing.
const resetPeerToxic = "reset_peer"

// StartProxy starts a proxy on a free 127.0.0.1 port that forwards every
// connection to upstream (host:port). It is closed when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	// No API server runs: the proxy is driven through its methods. The
	// logger is silenced because toxiproxy logs every connection.
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	// Port 0 lets the kernel pick a port atomically; toxiproxy records the
	// one it got, and Up listens on that same port again.
	px := toxiproxy.NewProxy(server, "testenv", "127.0.0.1:0", upstream)
	if err := px.Start(); err != nil {
		t.Fatalf("testenv: start proxy to %s: %v", upstream, err)
	}
	t.Cleanup(px.Stop)
	return &Proxy{addr: px.Listen, upstream: upstream, px: px}
}

// Addr returns the host:port clients should dial instead of the upstream.
// It stays the same across Down and Up.
func (p *Proxy) Addr() string { return p.addr }

// Down closes the listener and every open connection, both ways: to the
// client the upstream is gone (new connections are refused, open ones end),
// while the upstream itself keeps running.
func (p *Proxy) Down(t testing.TB) {
	t.Helper()
	p.px.Stop()
}

// Up listens again on the same port, so clients reconnect to the same
// address. It does nothing if the proxy is up.
func (p *Proxy) Up(t testing.TB) {
	t.Helper()
	if err := p.px.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		t.Fatalf("testenv: proxy to %s up again on %s: %v", p.upstream, p.addr, err)
	}
}

// ResetPeer makes every connection end with a TCP RST ("connection reset
// by peer") `after` the upstream next sends data on it. The toxic sits on
// the upstream-to-client stream, so what the client sent still reaches the
// upstream and takes effect; only the reply is lost. That is the case a
// client cannot tell apart from a request that never arrived. A MariaDB
// server speaks first, so new connections to one are reset `after` they
// connect.
//
// Connections opened after the call are reset with RST. Toxiproxy sets the
// zero linger that makes a close an RST only when a connection opens, so
// connections already open are closed with FIN instead: the client sees
// EOF rather than ECONNRESET.
func (p *Proxy) ResetPeer(t testing.TB, after time.Duration) {
	t.Helper()
	if after < 0 {
		t.Fatalf("testenv: ResetPeer: negative delay %v", after)
	}
	err := p.px.Toxics.RemoveToxic(context.Background(), resetPeerToxic)
	if err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
		t.Fatalf("testenv: ResetPeer: remove the previous toxic: %v", err)
	}
	spec := fmt.Sprintf(`{"name":%q,"type":"reset_peer","stream":"downstream","toxicity":1,"attributes":{"timeout":%d}}`,
		resetPeerToxic, after.Milliseconds())
	if _, err := p.px.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		t.Fatalf("testenv: ResetPeer: %v", err)
	}
}

// RemoveToxics makes the proxy forward faithfully again. Connections the
// toxics already broke stay broken.
func (p *Proxy) RemoveToxics(t testing.TB) {
	t.Helper()
	p.px.Toxics.ResetToxics(context.Background())
}
