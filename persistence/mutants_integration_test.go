//go:build integration

package persistence_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// The tests in this file close holes that hand-made mutants of the
// production code slipped through (issue 18), on MariaDB: each fails on its
// mutant. The ones that need no server are in mutants_test.go.

// miniredisBackend is the in-process Redis of redisBackends, for the tests
// here whose point is MySQL's behaviour, not Redis's.
func miniredisBackend() redisBackend {
	for _, rb := range redisBackends() {
		if rb.name == "miniredis" {
			return rb
		}
	}
	panic("no miniredis backend")
}

// TestRecovererRecordedWhileMySQLIsDown: the recoverer lists the record
// while MySQL is up; then MySQL is cut and Redis loses the item. An admin
// seeding the item meanwhile must get ErrRecovering, and the item must not
// be created afresh: its held and sold units would sell again. Once MySQL
// is back the item is rebuilt with the counters it had.
func TestRecovererRecordedWhileMySQLIsDown(t *testing.T) {
	dsn := testenv.SharedMySQL(t)
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	proxy := testenv.StartProxy(t, cfg.Addr)
	cfg.Addr = proxy.Addr()
	proxied := cfg.FormatDSN()
	env := newSyncEnv(t, miniredisBackend(), backend{name: "mysql", open: func(t testing.TB) *persistence.DB {
		t.Helper()
		return openDB(t, proxied, "")
	}})
	ctx := testCtx(t)

	syncedItem(t, env, "lost") // 1 held, 1 sold, 1 cancelled of 10
	before, err := env.store.Item(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	rec := startRecoverer(t, env)
	// The listing the fallback answers from, read while MySQL is up.
	if err := rec.Check(ctx); err != nil {
		t.Fatalf("Check with MySQL up: %v", err)
	}
	svc := reservation.NewService(env.store, rec)

	proxy.Down(t)
	keys, err := env.rdb.Keys(ctx, env.prefix+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	env.rdb.Del(ctx, keys...)

	spec := reservation.ItemSpec{SKU: "lost", Name: "Audited", Stock: 10, PerUserLimit: 2, Hold: time.Hour}
	for attempt := range 2 { // the admin tries again: still refused
		res, err := svc.Seed(ctx, spec)
		if !errors.Is(err, reservation.ErrRecovering) {
			t.Fatalf("seed %d of the lost item while MySQL is down = %+v, %v; want ErrRecovering", attempt+1, res, err)
		}
		if n := env.rdb.Exists(ctx, env.key("lost", "item")).Val(); n != 0 {
			t.Fatalf("seed %d created the lost item afresh: %v", attempt+1,
				env.rdb.HGetAll(ctx, env.key("lost", "item")).Val())
		}
	}
	if _, err := svc.Item(ctx, "lost"); !errors.Is(err, reservation.ErrRecovering) {
		t.Fatalf("Item while MySQL is down: %v, want ErrRecovering", err)
	}

	proxy.Up(t)
	it := waitRebuilt(t, svc, "lost")
	if it.Stock != before.Stock || it.Available != before.Available || it.Reserved != before.Reserved || it.Sold != before.Sold {
		t.Fatalf("rebuilt %+v, want the counters of %+v", it, before)
	}
}

// mysqlOutage is a proxy in front of MariaDB that plays a server going
// down as MariaDB does at shutdown: once Down, every command on a
// connection already open is answered with ER_CONNECTION_KILLED (1927,
// which the record does not count as transient), pings included, and new
// connections are refused. Until then, and after Up, it forwards faithfully.
type mysqlOutage struct {
	ln       net.Listener
	upstream string
	down     atomic.Bool

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

const (
	erConnectionKilled = 1927
	comQuit            = 0x01
)

// startMySQLOutage starts the proxy in front of upstream (host:port); it
// is closed when the test ends.
func startMySQLOutage(t testing.TB, upstream string) *mysqlOutage {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &mysqlOutage{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		p.closed = true
		for c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *mysqlOutage) Addr() string { return p.ln.Addr().String() }
func (p *mysqlOutage) Down()        { p.down.Store(true) }
func (p *mysqlOutage) Up()          { p.down.Store(false) }

// track notes a connection pair for closing at the end, and reports false
// (having closed them) when the proxy is closed already.
func (p *mysqlOutage) track(client, server net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = client.Close()
		_ = server.Close()
		return false
	}
	p.conns[client], p.conns[server] = true, true
	return true
}

func (p *mysqlOutage) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			_ = client.Close()
			continue
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			continue
		}
		p.wg.Add(2)
		var wmu sync.Mutex // the client's stream: the server's replies and ours
		closeBoth := func() { _ = client.Close(); _ = server.Close() }
		go func() {
			defer p.wg.Done()
			defer closeBoth()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 {
					wmu.Lock()
					_, werr := client.Write(buf[:n])
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.wg.Done()
			defer closeBoth()
			p.clientToServer(client, server, &wmu)
		}()
	}
}

// clientToServer forwards the client's packets; while the proxy is down it
// answers each command (a packet with sequence number 0) itself.
func (p *mysqlOutage) clientToServer(client, server net.Conn, wmu *sync.Mutex) {
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(client, hdr); err != nil {
			return
		}
		body := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if p.down.Load() && hdr[3] == 0 {
			if len(body) > 0 && body[0] == comQuit {
				return
			}
			wmu.Lock()
			_, err := client.Write(errPacket(1, erConnectionKilled, "70100", "Connection was killed"))
			wmu.Unlock()
			if err != nil {
				return
			}
			continue
		}
		if _, err := server.Write(append(hdr, body...)); err != nil {
			return
		}
	}
}

// errPacket is a MySQL ERR packet with sequence number seq.
func errPacket(seq byte, code uint16, state, msg string) []byte {
	payload := append([]byte{0xff, byte(code), byte(code >> 8), '#'}, state...)
	payload = append(payload, msg...)
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// TestSyncerBlamesNoEntryWhileMySQLIsDown: MySQL goes down in a way that
// fails writes with an error that is not transient (the server kills its
// connections). The syncer must ask MySQL whether it is up before blaming
// the entries: the ping fails too, so no entry's try is counted and none
// is dead-lettered; once MySQL is back every entry is synced.
func TestSyncerBlamesNoEntryWhileMySQLIsDown(t *testing.T) {
	for _, rb := range redisBackends() {
		t.Run(rb.name+"/mysql", func(t *testing.T) {
			dsn := testenv.SharedMySQL(t)
			cfg, err := mysqldrv.ParseDSN(dsn)
			if err != nil {
				t.Fatalf("parse DSN: %v", err)
			}
			outage := startMySQLOutage(t, cfg.Addr)
			cfg.Addr = outage.Addr()
			proxied := cfg.FormatDSN()
			env := newSyncEnv(t, rb, backend{name: "mysql", open: func(t testing.TB) *persistence.DB {
				t.Helper()
				return openDB(t, proxied, "")
			}})
			ctx := testCtx(t)

			// The proxy answers as MySQL would while down.
			outage.Down()
			var me *mysqldrv.MySQLError
			if err := env.db.Ping(ctx); !errors.As(err, &me) || me.Number != erConnectionKilled {
				t.Fatalf("Ping while down: %v, want MySQL error %d", err, erConnectionKilled)
			}
			outage.Up()

			const sku = "down"
			if _, err := env.store.Seed(ctx, reservation.ItemSpec{SKU: sku, Name: "Down", Stock: 10, PerUserLimit: 1, Hold: time.Hour}); err != nil {
				t.Fatalf("seed: %v", err)
			}
			for _, user := range []string{"ann", "bob", "cid"} {
				id, err := reservation.NewID(sku)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := env.store.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: sku, UserID: user, Quantity: 1}); err != nil {
					t.Fatalf("reserve: %v", err)
				}
			}
			const entries = 4 // the seed and three holds

			outage.Down()
			s := env.startSyncer(t, "solo", 100*time.Millisecond)
			// Each failed write of the batch is a retry; MaxTries (3)
			// blamed rounds would park every entry. Wait for four, or for
			// the first entry blamed.
			for deadline := time.Now().Add(syncWait); s.Stats().Retries.Load() < 4 && len(env.ledger.failures()) == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the syncer tried %d writes in %v, want 4", s.Stats().Retries.Load(), syncWait)
				}
			}
			if f := env.ledger.failures(); len(f) != 0 {
				t.Errorf("entries blamed while MySQL was down: %v, want none", f)
			}
			if d := s.Stats().Dead.Load(); d != 0 {
				t.Errorf("Stats().Dead = %d, want 0", d)
			}
			if n, err := env.rdb.Exists(ctx, env.key(sku, "tries"), env.key(sku, "dead")).Result(); err != nil || n != 0 {
				t.Errorf("tries or dead-letter stream of %s exist (%d, %v); want neither", sku, n, err)
			}
			if err := s.Status().DBErr; !errors.As(err, &me) {
				t.Errorf("Status().DBErr = %v, want the MySQL error", err)
			}

			outage.Up()
			env.waitSynced(t, 0, s)
			if acks := env.ledger.snapshot(); len(acks) != entries {
				t.Errorf("%d entries acknowledged, want %d", len(acks), entries)
			}
			if c, err := env.db.Counts(ctx, sku); err != nil || c.Pending != 3 || c.Rows != 3 {
				t.Errorf("Counts(%s) = %+v, %v; want 3 pending units in 3 rows", sku, c, err)
			}
		})
	}
}
