package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// AOF turns on appendonly with appendfsync always, so that every write
	// Redis acknowledged before a Kill is there after the Restart. Without
	// it, nothing survives a Kill: RDB snapshots are off either way, so a
	// test never depends on when one happened to run.
	AOF bool

	// taken are ports other servers of the same start will listen on (a
	// cluster's nodes and their bus ports, port+10000): this one's port
	// and bus port must be none of them, since none is bound yet.
	taken map[int]bool
}

// Redis is a private redis-server that a test may kill and restart.
type Redis struct {
	addr string
	dir  string
	p    *proc
}

// StartRedis runs a redis-server of the test's own and waits until it
// answers PING. It is killed when the test ends.
func StartRedis(t testing.TB, opt RedisOptions) *Redis {
	t.Helper()
	r := newRedis(t, opt)
	r.p.startAndWait(t, r.ready)
	return r
}

// newRedis prepares a redis-server on a free port and a directory of its
// own, with extraArgs after the common ones (cluster nodes add theirs), and
// registers its kill at cleanup. It does not start it.
func newRedis(t testing.TB, opt RedisOptions, extraArgs ...string) *Redis {
	t.Helper()
	bin := lookBinary(t, "redis-server", "/usr/sbin", "/usr/local/bin")
	dir := t.TempDir()
	port := FreePort(t)
	for tries := 0; opt.taken[port] || opt.taken[port+10000]; tries++ {
		if tries == 200 {
			t.Fatalf("testenv: no port clear of %d others after 200 tries", len(opt.taken))
		}
		port = FreePort(t)
	}
	if opt.taken != nil {
		opt.taken[port], opt.taken[port+10000] = true, true
	}
	appendonly := "no"
	if opt.AOF {
		appendonly = "yes"
	}
	logPath := filepath.Join(dir, "redis.log")
	r := &Redis{
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:  dir,
		p: &proc{
			name: "redis-server on port " + strconv.Itoa(port),
			path: bin,
			args: append([]string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--save", "",
				"--appendonly", appendonly,
				"--appendfsync", "always",
				"--logfile", logPath,
				"--daemonize", "no",
			}, extraArgs...),
			dir:     dir,
			logPath: logPath,
		},
	}
	r.p.cleanupKill(t)
	return r
}

// ready succeeds once PING answers PONG. While Redis loads its AOF it
// answers LOADING, which counts as not ready: a test that restarts Redis
// wants to see the data, not an error. The probe speaks RESP over a bare
// connection because a go-redis client retries dials and logs every
// failure, both of which startup polling makes routine.
func (r *Redis) ready(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Addr returns host:port, which stays the same across restarts.
func (r *Redis) Addr() string { return r.addr }

// Dir returns the server's working directory, where its AOF files are.
func (r *Redis) Dir() string { return r.dir }

// Client returns a new client for this server, closed when the test ends.
// It keeps working across Kill and Restart: go-redis redials.
func (r *Redis) Client(t testing.TB) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.addr, DialTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// chance to flush anything.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	r.p.killT(t)
}

// Stop shuts Redis down with SIGTERM, killing it if it takes longer than
// 15s (which fails the test).
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	r.p.stopT(t)
}

// Restart starts Redis again on the same port and directory and waits until
// it has loaded its data. A server still running is stopped first.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.p.restartT(t, r.ready)
}
