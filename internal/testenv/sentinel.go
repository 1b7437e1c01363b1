package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelGroup is a private Redis primary with replicas and three
// Sentinels watching it, as a production Sentinel deployment runs: when
// the primary dies, the Sentinels agree (quorum 2) and promote a replica.
type SentinelGroup struct {
	Name      string // the primary's name at the Sentinels
	Primary   *Redis
	Replicas  []*Redis
	sentinels []*Redis
}

// sentinelDownAfter is how long the Sentinels wait on a silent primary
// before they call it down: short, so a test's failover takes a second or
// two, as a tuned production setup would.
const sentinelDownAfter = 500 * time.Millisecond

// StartSentinels starts the primary, replicas (at least one) in sync with
// it and three Sentinels on free ports, and waits until every Sentinel
// knows the primary and its replicas. Everything is killed when the test
// ends. Two replicas leave one after a failover, for a primary that waits
// for a replica's acknowledgement.
func StartSentinels(t testing.TB, name string, replicas int) *SentinelGroup {
	t.Helper()
	begin := time.Now()
	g := &SentinelGroup{Name: name}
	g.Primary, g.Replicas = StartReplicated(t, max(replicas, 1))
	host, port, _ := net.SplitHostPort(g.Primary.addr)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	bin := lookBinary(t, "redis-server", "/usr/sbin", "/usr/local/bin")
	for range 3 {
		dir := t.TempDir()
		p := FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		// Sentinels rewrite their config file as they learn: it must be theirs.
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 5000\n",
			p, dir, name, host, port, name, sentinelDownAfter.Milliseconds(), name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, "sentinel.log")
		s := &Redis{
			addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)),
			dir:  dir,
			p: &proc{name: "redis sentinel on port " + strconv.Itoa(p), path: bin,
				args: []string{conf, "--sentinel", "--logfile", logPath, "--daemonize", "no"}, dir: dir, logPath: logPath},
		}
		s.p.cleanupKill(t)
		s.p.startAndWait(t, s.ready)
		g.sentinels = append(g.sentinels, s)
	}
	if err := poll(ctx, func() error {
		for _, s := range g.sentinels {
			if got, err := g.masterAt(ctx, s); err != nil || got != g.Primary.addr {
				return fmt.Errorf("sentinel %s names %q for %s: %v", s.addr, got, name, err)
			}
			c := s.adminClient()
			n, err := c.Do(ctx, "SENTINEL", "REPLICAS", name).Slice()
			_ = c.Close()
			if err != nil || len(n) < len(g.Replicas) {
				return fmt.Errorf("sentinel %s knows %d of the %d replicas of %s yet: %v", s.addr, len(n), len(g.Replicas), name, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Logf("testenv: Redis primary, %d replicas and 3 Sentinels for %q ready in %v", len(g.Replicas), name, time.Since(begin).Round(time.Millisecond))
	return g
}

// StartReplicated starts a primary and n replicas of it, and waits until
// they are in sync. All are killed when the test ends.
func StartReplicated(t testing.TB, n int) (primary *Redis, replicas []*Redis) {
	t.Helper()
	primary = StartRedis(t, RedisOptions{})
	host, port, _ := net.SplitHostPort(primary.addr)
	for range n {
		r := newRedis(t, RedisOptions{}, "--replicaof", host, port, "--repl-diskless-sync-delay", "0")
		r.p.startAndWait(t, r.ready)
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		r.WaitInSync(t)
	}
	return primary, replicas
}

// WaitInSync waits until this replica's link to its primary is up.
func (r *Redis) WaitInSync(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := poll(ctx, func() error {
		c := r.adminClient()
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica %s not in sync: %v", r.addr, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// AddSentinelUser creates an ACL user on every Sentinel with password pass
// and only the given rules (such as "+sentinel|get-master-addr-by-name"),
// and turns the Sentinels' ACL log on for it: SentinelACLLog then lists
// what it was refused. The default user stays, for the group's own checks.
func (g *SentinelGroup) AddSentinelUser(t testing.TB, user, pass string, rules ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">" + pass}
	for _, r := range rules {
		args = append(args, r)
	}
	for _, s := range g.sentinels {
		c := s.adminClient()
		err := c.Do(ctx, args...).Err()
		_ = c.Close()
		if err != nil {
			t.Fatalf("testenv: ACL SETUSER %s on sentinel %s: %v", user, s.addr, err)
		}
	}
}

// SentinelACLLog returns the entries of every Sentinel's ACL LOG: the
// commands, keys and channels refused to a user.
func (g *SentinelGroup) SentinelACLLog(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var out []string
	for _, s := range g.sentinels {
		c := s.adminClient()
		entries, err := c.Do(ctx, "ACL", "LOG").Slice()
		_ = c.Close()
		if err != nil {
			t.Fatalf("testenv: ACL LOG on sentinel %s: %v", s.addr, err)
		}
		for _, e := range entries {
			out = append(out, fmt.Sprintf("sentinel %s: %v", s.addr, e))
		}
	}
	return out
}

// Addrs are the Sentinels' addresses.
func (g *SentinelGroup) Addrs() []string {
	out := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		out[i] = s.addr
	}
	return out
}

// KillPrimary kills the primary outright (SIGKILL) and waits until the
// Sentinels have promoted a replica; it returns that replica and the moment
// the first Sentinel named it as the primary.
func (g *SentinelGroup) KillPrimary(t testing.TB) (*Redis, time.Time) {
	t.Helper()
	begin := time.Now()
	g.Primary.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		for _, s := range g.sentinels {
			got, err := g.masterAt(ctx, s)
			if err != nil {
				continue
			}
			for _, r := range g.Replicas {
				if got == r.addr {
					at := time.Now()
					t.Logf("testenv: %s killed; the Sentinels promoted %s %v later", g.Primary.addr, r.addr, at.Sub(begin).Round(time.Millisecond))
					return r, at
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: the Sentinels promoted no replica within %v\n%s", startTimeout, logTail(g.sentinels[0].p.logPath))
		case <-time.After(pollInterval):
		}
	}
}

func (g *SentinelGroup) masterAt(ctx context.Context, s *Redis) (string, error) {
	c := s.adminClient()
	defer c.Close()
	addr, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.Name).StringSlice()
	if err != nil || len(addr) != 2 {
		return "", err
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// poll runs check every pollInterval until it succeeds or ctx ends.
func poll(ctx context.Context, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pollInterval):
		}
	}
}

// adminClient is a client for one command or a few, closed by the caller.
func (r *Redis) adminClient() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: r.addr, DialTimeout: time.Second, MaxRetries: -1, Protocol: 2})
}
