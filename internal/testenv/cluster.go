package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// clusterNodeTimeout is cluster-node-timeout. Short, because a node's
// gossip pings every other node at least every half of it, which is what
// makes a new cluster agree on its layout quickly; not shorter, because a
// node whose event loop stalls for this long (an fsync under AOF, a busy CI
// machine) is flagged as failing and the cluster stops serving its slots.
const clusterNodeTimeout = 2 * time.Second

// migrateBatch is how many keys MoveSlot hands to one MIGRATE, as
// redis-cli's --cluster-pipeline does (its default is 10; an item's keys
// are fewer than this, so one item moves at once).
const migrateBatch = 100

// ClusterOptions configures StartRedisCluster.
type ClusterOptions struct {
	Masters  int  // 0 means 3 (redis-cli refuses fewer)
	Replicas int  // replicas per master, 0 to 2
	AOF      bool // appendonly yes, appendfsync always, as RedisOptions.AOF
	// NodeTimeout is cluster-node-timeout, 0 meaning clusterNodeTimeout.
	// A master that stops answering is failed over about this long after
	// its death (CrashMaster): tests of that shorten it.
	NodeTimeout time.Duration
}

// RedisCluster is a private Redis Cluster: redis-server processes in
// cluster mode, each with a directory of its own, joined by redis-cli.
type RedisCluster struct {
	nodes []*Redis
	admin map[string]*goredis.Client // by address, for one node's own commands
}

// StartRedisCluster starts Masters*(1+Replicas) cluster-enabled
// redis-server processes, joins them with redis-cli --cluster create and
// waits until every node reports the cluster ok with every slot covered
// and, with replicas, every replica in sync with its master. Everything is
// killed when the test ends.
func StartRedisCluster(t testing.TB, opt ClusterOptions) *RedisCluster {
	t.Helper()
	if opt.Masters == 0 {
		opt.Masters = 3
	}
	if opt.Masters < 3 || opt.Replicas < 0 || opt.Replicas > 2 {
		t.Fatalf("testenv: a cluster needs at least 3 masters and 0 to 2 replicas each, not %d and %d", opt.Masters, opt.Replicas)
	}
	cli := lookBinary(t, "redis-cli", "/usr/local/bin")
	begin := time.Now()
	if opt.NodeTimeout == 0 {
		opt.NodeTimeout = clusterNodeTimeout
	}

	n := opt.Masters * (1 + opt.Replicas)
	c := &RedisCluster{admin: make(map[string]*goredis.Client, n)}
	// The nodes start together, so a port FreePort found free may be
	// another node's, or its bus port: each picks clear of the others'.
	taken := map[int]bool{}
	for range n {
		// The node's directory is only known once newRedis made it, so the
		// config file is named relative to it: redis-server resolves it
		// against --dir.
		r := newRedis(t, RedisOptions{AOF: opt.AOF, taken: taken},
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(opt.NodeTimeout/time.Millisecond)),
			// A replica's first sync would otherwise wait 5s for
			// more replicas to join the same transfer.
			"--repl-diskless-sync-delay", "0")
		c.nodes = append(c.nodes, r)
	}
	// All processes start before the first wait, so their startups overlap.
	for _, r := range c.nodes {
		if err := r.p.start(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	for _, r := range c.nodes {
		if err := r.p.waitReady(startTimeout, r.ready); err != nil {
			t.Fatalf("testenv: %v\n%s", err, logTail(r.p.logPath))
		}
		cl := goredis.NewClient(&goredis.Options{Addr: r.addr, DialTimeout: 2 * time.Second, Protocol: 2})
		t.Cleanup(func() { _ = cl.Close() })
		c.admin[r.addr] = cl
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opt.Replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitConsistent(ctx, opt.Replicas > 0); err != nil {
		t.Fatalf("testenv: cluster of %d nodes: %v\n%s", n, err, logTail(c.nodes[0].p.logPath))
	}
	t.Logf("testenv: redis cluster of %d masters, %d replicas each, ready in %v", opt.Masters, opt.Replicas, time.Since(begin).Round(time.Millisecond))
	return c
}

// waitConsistent polls until every node says cluster_state:ok, knows every
// node and sees every slot assigned and ok, every node's view of every
// node's role agrees with that node's own, and (withReplicas) every
// replica's link to its master is up. A node that has not heard of the
// others yet answers ok for its own view, and a client that took the slot
// map from it would miss masters: hence every node, not one. And a master
// that still takes a replica for an empty master refuses it its vote in a
// failover.
func (c *RedisCluster) waitConsistent(ctx context.Context, withReplicas bool) error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_slots_ok":       "16384",
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
	}
	var last error
	for {
		last = c.consistent(ctx, want, withReplicas)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not consistent after %v: %w", startTimeout, last)
		case <-time.After(pollInterval):
		}
	}
}

func (c *RedisCluster) consistent(ctx context.Context, want map[string]string, withReplicas bool) error {
	for _, r := range c.nodes {
		info, err := c.admin[r.addr].ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", r.addr, err)
		}
		got := infoFields(info)
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s: %s:%s, want %s", r.addr, k, got[k], v)
			}
		}
		if withReplicas {
			if err := c.replicaInSync(ctx, r.addr); err != nil {
				return err
			}
		}
	}
	return c.rolesAgree(ctx)
}

func (c *RedisCluster) replicaInSync(ctx context.Context, addr string) error {
	repl, err := c.admin[addr].Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("%s: INFO replication: %w", addr, err)
	}
	f := infoFields(repl)
	if f["role"] == "slave" && f["master_link_status"] != "up" {
		return fmt.Errorf("%s: replica's master_link_status:%s", addr, f["master_link_status"])
	}
	// The master counts a replica in WAIT only once it has put it online,
	// which after a diskless sync waits for the replica's first ACK (sent
	// once a second): until then a replicated acknowledgement times out.
	for k, v := range f {
		if n, ok := strings.CutPrefix(k, "slave"); ok && n != "" && strings.Trim(n, "0123456789") == "" &&
			!strings.Contains(v, "state=online") {
			return fmt.Errorf("%s: master's %s:%s", addr, k, v)
		}
	}
	return nil
}

func (c *RedisCluster) rolesAgree(ctx context.Context) error {
	views := make(map[string][]clusterNode, len(c.nodes))
	selves := make(map[string]clusterNode, len(c.nodes)) // by id
	for _, r := range c.nodes {
		v, err := c.view(ctx, r.addr)
		if err != nil {
			return err
		}
		views[r.addr] = v
		for _, n := range v {
			if n.has("myself") {
				selves[n.id] = n
			}
		}
	}
	for addr, v := range views {
		for _, n := range v {
			if s := selves[n.id]; s.master != n.master || s.of != n.of {
				return fmt.Errorf("%s takes %s for master %v of %q, it says master %v of %q", addr, n.addr, n.master, n.of, s.master, s.of)
			}
		}
	}
	return nil
}

// infoFields parses the key:value lines of INFO and CLUSTER INFO.
func infoFields(s string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Addrs returns every node's host:port, masters and replicas, in the order
// they were started: the seeds a cluster client needs.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, r := range c.nodes {
		addrs[i] = r.addr
	}
	return addrs
}

// Client returns a new cluster client seeded with every node, closed when
// the test ends.
func (c *RedisCluster) Client(t testing.TB) *goredis.ClusterClient {
	t.Helper()
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), DialTimeout: 2 * time.Second, Protocol: 2})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id     string
	addr   string // host:port, without the cluster bus port
	flags  []string
	master bool
	of     string   // the master's id, for a replica
	epoch  int      // config epoch: of two masters claiming a slot, the higher wins
	slots  [][2]int // ranges this node serves, inclusive
}

func (n clusterNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// parseClusterNodes parses CLUSTER NODES; importing and migrating markers
// ("[slot->-id]") are not ranges the node serves and are skipped.
func parseClusterNodes(s string) ([]clusterNode, error) {
	var nodes []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: too few fields", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ",")}
		n.master = n.has("master")
		if !n.master {
			n.of = f[3]
		}
		epoch, err := strconv.Atoi(f[6])
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %q: bad config epoch: %w", line, err)
		}
		n.epoch = epoch
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES line %q: bad slot range %q", line, r)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// view returns what the node at addr says of every node, itself included.
func (c *RedisCluster) view(ctx context.Context, addr string) ([]clusterNode, error) {
	s, err := c.admin[addr].ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: CLUSTER NODES: %w", addr, err)
	}
	nodes, err := parseClusterNodes(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return nodes, nil
}

// self returns the node's own line of CLUSTER NODES: what it says about
// itself is authoritative, what it says about others is gossip that may lag.
func (c *RedisCluster) self(ctx context.Context, addr string) (clusterNode, error) {
	nodes, err := c.view(ctx, addr)
	if err != nil {
		return clusterNode{}, err
	}
	for _, n := range nodes {
		if n.has("myself") {
			n.addr = addr // a node may not know the address others reach it on
			return n, nil
		}
	}
	return clusterNode{}, fmt.Errorf("%s: CLUSTER NODES has no myself line", addr)
}

// Masters returns the addresses of the masters, in the order of Addrs. A
// node's own account of itself decides, except that a master whose slots
// another master claims with a higher config epoch has lost them (a
// failover it has not heard of yet) and is left out, as is a node that does
// not answer.
func (c *RedisCluster) Masters() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	masters, _ := c.masters(ctx, false)
	addrs := make([]string, len(masters))
	for i, m := range masters {
		addrs[i] = m.addr
	}
	return addrs
}

// masters returns the current masters as Masters describes them; strict
// makes a node that does not answer an error.
func (c *RedisCluster) masters(ctx context.Context, strict bool) ([]clusterNode, error) {
	var claims []clusterNode
	for _, r := range c.nodes {
		n, err := c.self(ctx, r.addr)
		if err != nil {
			if strict {
				return nil, err
			}
			continue
		}
		if n.master {
			claims = append(claims, n)
		}
	}
	return slices.DeleteFunc(claims, func(m clusterNode) bool {
		return slices.ContainsFunc(claims, func(o clusterNode) bool { return o.epoch > m.epoch && overlap(o.slots, m.slots) })
	}), nil
}

func overlap(a, b [][2]int) bool {
	for _, x := range a {
		for _, y := range b {
			if x[0] <= y[1] && y[0] <= x[1] {
				return true
			}
		}
	}
	return false
}

// MasterOf returns the address of the master that serves slot. It fails the
// test when a node does not answer or no master claims the slot.
func (c *RedisCluster) MasterOf(t testing.TB, slot int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owner, _, err := c.masterOf(ctx, slot)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return owner.addr
}

func (c *RedisCluster) masterOf(ctx context.Context, slot int) (owner clusterNode, masters []clusterNode, err error) {
	masters, err = c.masters(ctx, true)
	if err != nil {
		return clusterNode{}, nil, err
	}
	var owners []clusterNode
	for _, m := range masters {
		if overlap(m.slots, [][2]int{{slot, slot}}) {
			owners = append(owners, m)
		}
	}
	if len(owners) != 1 {
		return clusterNode{}, nil, fmt.Errorf("slot %d is claimed by %d masters, want 1", slot, len(owners))
	}
	return owners[0], masters, nil
}

// MoveSlot migrates slot and its keys to the master at address to, the way
// redis-cli --cluster reshard does: the target marks the slot IMPORTING and
// the source MIGRATING, the keys go over in batches of MIGRATE, then every
// master is told the target owns it (the target first, which bumps its
// config epoch so that its claim wins the gossip). While it runs, clients
// see ASK redirections and, for scripts whose keys are split between the
// two nodes or partly missing, TRYAGAIN. A slot already on to is left alone.
func (c *RedisCluster) MoveSlot(t testing.TB, slot int, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.moveSlot(ctx, slot, to, 0); err != nil {
		t.Fatalf("testenv: move slot %d to %s: %v", slot, to, err)
	}
}

// MoveSlotPaused is MoveSlot with a pause once the slot is marked migrating
// and another once its keys are on the target: clients meet the
// migration's ASK redirections and TRYAGAIN answers for at least twice
// pause, where MoveSlot's window is a few milliseconds.
func (c *RedisCluster) MoveSlotPaused(t testing.TB, slot int, to string, pause time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout+2*pause)
	defer cancel()
	if err := c.moveSlot(ctx, slot, to, pause); err != nil {
		t.Fatalf("testenv: move slot %d to %s: %v", slot, to, err)
	}
}

func (c *RedisCluster) moveSlot(ctx context.Context, slot int, to string, pause time.Duration) error {
	src, masters, err := c.masterOf(ctx, slot)
	if err != nil {
		return err
	}
	if src.addr == to {
		return nil
	}
	i := slices.IndexFunc(masters, func(n clusterNode) bool { return n.addr == to })
	if i < 0 {
		return fmt.Errorf("%s is not a master of this cluster", to)
	}
	dst := masters[i]
	srcC, dstC := c.admin[src.addr], c.admin[dst.addr]
	if err := dstC.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id).Err(); err != nil {
		return fmt.Errorf("%s: SETSLOT IMPORTING: %w", dst.addr, err)
	}
	if err := srcC.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id).Err(); err != nil {
		return fmt.Errorf("%s: SETSLOT MIGRATING: %w", src.addr, err)
	}
	host, port, err := net.SplitHostPort(dst.addr)
	if err != nil {
		return err
	}
	time.Sleep(pause)
	for {
		keys, err := srcC.ClusterGetKeysInSlot(ctx, slot, migrateBatch).Result()
		if err != nil {
			return fmt.Errorf("%s: GETKEYSINSLOT: %w", src.addr, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := srcC.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("%s: MIGRATE %d keys: %w", src.addr, len(keys), err)
		}
	}
	time.Sleep(pause)
	// Target, then source, then the others: once the source gives the slot
	// up it redirects with MOVED, and the target must already serve it.
	order := []clusterNode{dst, src}
	for _, m := range masters {
		if m.id != dst.id && m.id != src.id {
			order = append(order, m)
		}
	}
	for _, m := range order {
		if err := c.admin[m.addr].Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.id).Err(); err != nil {
			return fmt.Errorf("%s: SETSLOT NODE: %w", m.addr, err)
		}
	}
	return nil
}

// OnEachMaster returns one name per master, in the order of Masters: base
// followed by "-" and a number, chosen so that the hash tag "{name}" falls
// in a slot of that master. Tests use them as SKUs to spread items over
// the whole cluster.
func (c *RedisCluster) OnEachMaster(t testing.TB, base string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	masters, err := c.masters(ctx, true)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	names := make([]string, len(masters))
	left := len(masters)
	cli := c.admin[masters[0].addr]
	for i := 0; left > 0; i++ {
		if i == 10_000 {
			t.Fatalf("testenv: no %s-N of the first 10000 hashes to each of %d masters", base, len(masters))
		}
		name := base + "-" + strconv.Itoa(i)
		slot, err := cli.ClusterKeySlot(ctx, "{"+name+"}").Result()
		if err != nil {
			t.Fatalf("testenv: CLUSTER KEYSLOT: %v", err)
		}
		for j, m := range masters {
			if names[j] == "" && overlap(m.slots, [][2]int{{int(slot), int(slot)}}) {
				names[j] = name
				left--
			}
		}
	}
	return names
}

// Failover promotes a replica of the master at addr with CLUSTER FAILOVER,
// a manual failover (the master stops writes until the replica has all of
// them, so nothing acknowledged is lost), waits until the masters agree on
// the new one and returns its address. It needs Replicas: 1.
func (c *RedisCluster) Failover(t testing.TB, master string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	replicas, err := c.replicasOf(ctx, master)
	if err != nil {
		t.Fatalf("testenv: failover: %v", err)
	}
	replica := replicas[0].addr
	begin := time.Now()
	if err := c.admin[replica].Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("testenv: CLUSTER FAILOVER on %s: %v", replica, err)
	}
	for {
		masters := c.Masters()
		if slices.Contains(masters, replica) && !slices.Contains(masters, master) {
			t.Logf("testenv: %s took over from %s in %v", replica, master, time.Since(begin).Round(time.Millisecond))
			return replica
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: %s did not take over from %s within %v; masters %v\n%s", replica, master, startTimeout, masters, logTail(c.logOf(replica)))
		case <-time.After(pollInterval):
		}
	}
}

func (c *RedisCluster) logOf(addr string) string {
	for _, r := range c.nodes {
		if r.addr == addr {
			return r.p.logPath
		}
	}
	return ""
}

// replicasOf returns the replicas of the master at addr, as their own
// views of the cluster name their master.
func (c *RedisCluster) replicasOf(ctx context.Context, addr string) ([]*Redis, error) {
	m, err := c.self(ctx, addr)
	if err != nil {
		return nil, err
	}
	var out []*Redis
	for _, r := range c.nodes {
		if n, err := c.self(ctx, r.addr); err == nil && n.of == m.id {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("master %s has no replica", addr)
	}
	return out, nil
}

// ReplicasOf returns the replicas of master (at least one: the test fails
// without).
func (c *RedisCluster) ReplicasOf(t testing.TB, master string) []*Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	replicas, err := c.replicasOf(ctx, master)
	if err != nil {
		t.Fatalf("testenv: replicas of %s: %v", master, err)
	}
	return replicas
}
