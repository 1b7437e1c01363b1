package testenv_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

func TestFreePort(t *testing.T) {
	p := testenv.FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", p, err)
	}
	l.Close()
}

func TestProxy(t *testing.T) {
	upstream := startEcho(t)
	p := testenv.StartProxy(t, upstream)

	held := dial(t, p.Addr())
	if err := roundTrip(held, "hello"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Down(t)
	if err := roundTrip(held, "cut"); err == nil {
		t.Fatal("an open connection survived Down")
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded while the proxy is down")
	}

	p.Up(t)
	p.Up(t) // Up on a proxy that is up is a no-op
	held = dial(t, p.Addr())
	if err := roundTrip(held, "again"); err != nil {
		t.Fatalf("after Up: %v", err)
	}

	begin := time.Now()
	p.ResetPeer(t, 100*time.Millisecond)
	p.ResetPeer(t, 100*time.Millisecond) // replaces, not fails
	fresh := dial(t, p.Addr())
	err := roundTrip(fresh, "reset me")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("new connection under ResetPeer: err = %v, want ECONNRESET", err)
	}
	if d := time.Since(begin); d < 100*time.Millisecond {
		t.Fatalf("reset after %v, before the 100ms delay", d)
	}
	if err := roundTrip(held, "old"); err == nil {
		t.Fatal("a connection opened before ResetPeer survived it")
	}

	p.RemoveToxics(t)
	c := dial(t, p.Addr())
	if err := roundTrip(c, "healed"); err != nil {
		t.Fatalf("after RemoveToxics: %v", err)
	}
}

// startEcho runs a TCP server that writes back every line it reads.
func startEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads it back within two seconds.
func roundTrip(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return errors.New("echo returned " + line)
	}
	return nil
}
