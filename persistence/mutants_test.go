package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"slices"
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
// production code slipped through (issue 18): each fails on its mutant.

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

// fixedItem is an ItemReader that answers one item's counters as set.
type fixedItem struct{ item reservation.Item }

func (f fixedItem) Item(_ context.Context, sku string) (reservation.Item, error) {
	if sku != f.item.SKU {
		return reservation.Item{}, reservation.ErrItemNotFound
	}
	return f.item, nil
}

func (f fixedItem) ItemBacklog(context.Context, string) (int64, error) { return 0, nil }

// TestAuditComparesEachCounter: Redis's counters are tampered with one at a
// time (stock with available, so that only the stock disagrees); the audit
// names exactly the counter that differs, each in a drift line of its own.
func TestAuditComparesEachCounter(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			held := created("aud", 1, "ann", 2, 10, "")
			sold := created("aud", 2, "bob", 1, 20, "")
			gone := created("aud", 3, "cid", 1, 30, "")
			mustApply(t, db, offer("aud", 1, 10, "Audited"), held, sold, gone,
				settled(sold, reservation.StatusConfirmed, 40), settled(gone, reservation.StatusCancelled, 50))
			inSync := reservation.Item{SKU: "aud", Stock: 10, Available: 7, Reserved: 2, Sold: 1}

			cases := []struct {
				name   string
				tamper func(it *reservation.Item)
				want   []string
			}{
				{"nothing", func(*reservation.Item) {}, nil},
				{"sold alone", func(it *reservation.Item) { it.Sold++ },
					[]string{"sold (confirmed units): redis 2, record 1"}},
				{"sold down alone", func(it *reservation.Item) { it.Sold-- },
					[]string{"sold (confirmed units): redis 0, record 1"}},
				{"reserved alone", func(it *reservation.Item) { it.Reserved++ },
					[]string{"reserved (pending units): redis 3, record 2"}},
				{"available alone", func(it *reservation.Item) { it.Available-- },
					[]string{"available (stock - pending - confirmed): redis 6, record 7"}},
				{"stock with available", func(it *reservation.Item) { it.Stock++; it.Available++ },
					[]string{"stock: redis 11, record 10"}},
				{"a sale counted as a hold", func(it *reservation.Item) { it.Sold--; it.Reserved++ },
					[]string{"reserved (pending units): redis 3, record 2", "sold (confirmed units): redis 0, record 1"}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					it := inSync
					tc.tamper(&it)
					a := &persistence.Auditor{Store: fixedItem{it}, DB: db}
					au, err := a.Audit(testCtx(t), "aud")
					if err != nil {
						t.Fatalf("Audit: %v", err)
					}
					if !slices.Equal(au.Drift, tc.want) {
						t.Fatalf("Drift = %q, want %q", au.Drift, tc.want)
					}
					if au.InSync() != (tc.want == nil) {
						t.Fatalf("InSync() = %v with drift %q", au.InSync(), au.Drift)
					}
					want := reservation.Counts{Pending: 2, Confirmed: 1, Cancelled: 1, Rows: 3}
					if au.Counts != want || au.Store != it || au.Record.Stock != 10 {
						t.Fatalf("Audit = %+v; want counts %+v, the store's item %+v, recorded stock 10", au, want, it)
					}
				})
			}
		})
	}
}

// batchOutbox hands out its entries in reads of at most chunk (0: as many
// as asked), and notes what each read asked for and how many entries were
// in flight (handed out, not yet acknowledged) at most.
type batchOutbox struct {
	mu        sync.Mutex
	pending   []reservation.OutboxEntry
	chunk     int
	asked     []int
	inFlight  int
	maxFlight int
	acked     int
}

func (o *batchOutbox) Read(_ context.Context, limit int) ([]reservation.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, limit)
	n := min(limit, len(o.pending))
	if o.chunk > 0 {
		n = min(n, o.chunk)
	}
	n = max(n, 0)
	out := o.pending[:n:n]
	o.pending = o.pending[n:]
	o.inFlight += n
	o.maxFlight = max(o.maxFlight, o.inFlight)
	return out, nil
}

func (o *batchOutbox) Ack(_ context.Context, entries []reservation.OutboxEntry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight -= len(entries)
	o.acked += len(entries)
	return nil
}

func (o *batchOutbox) Fail(context.Context, reservation.OutboxEntry, string) (bool, error) {
	return false, errors.New("no entry should fail")
}

func (o *batchOutbox) Backlog(context.Context) (reservation.Backlog, error) {
	return reservation.Backlog{}, nil
}

func (o *batchOutbox) state() (asked []int, maxFlight, acked int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.asked), o.maxFlight, o.acked
}

// TestSyncerReadsAtMostABatch: with three full batches waiting, the syncer
// never asks the outbox for more than a batch still has room for, never
// holds more than a batch, and writes each full batch in one transaction,
// whether one read fills a batch or several small ones do.
func TestSyncerReadsAtMostABatch(t *testing.T) {
	const batchSize, batches = 8, 3
	cases := []struct {
		name  string
		chunk int
	}{
		{"one read fills a batch", 0},
		{"small reads fill a batch", 3},
		{"reads of a batch less one", batchSize - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ob := &batchOutbox{chunk: tc.chunk}
			sku := "col"
			ob.pending = append(ob.pending, reservation.OutboxEntry{SKU: sku, ID: "1-0", Change: offer(sku, 1, 1000, "Col")})
			for i := 1; i < batchSize*batches; i++ {
				ob.pending = append(ob.pending, reservation.OutboxEntry{SKU: sku, ID: fmt.Sprintf("%d-0", i+1),
					Change: created(sku, i, fmt.Sprintf("u%d", i), 1, int64(i), "")})
			}
			var mu sync.Mutex
			var sizes []int
			s := &persistence.Syncer{
				Outbox: ob, DB: openSQLite(t), BatchSize: batchSize,
				// Long, so a slow machine still fills each batch from small reads.
				BatchWait: time.Second, Timeout: 10 * time.Second,
				Log: slog.New(slog.NewTextHandler(newTestLog(t), nil)),
				Observe: func(size int, _ time.Duration) {
					mu.Lock()
					sizes = append(sizes, size)
					mu.Unlock()
				},
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			stop := func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}
			for deadline := time.Now().Add(syncWait); ; time.Sleep(10 * time.Millisecond) {
				if _, _, acked := ob.state(); acked >= batchSize*batches {
					break
				}
				if time.Now().After(deadline) {
					stop()
					_, _, acked := ob.state()
					t.Fatalf("%d of %d entries acknowledged after %v", acked, batchSize*batches, syncWait)
				}
			}
			stop()

			asked, maxFlight, acked := ob.state()
			for i, n := range asked {
				if n < 1 || n > batchSize {
					t.Errorf("read %d asked for %d entries, want 1..%d (reads %v)", i, n, batchSize, asked)
				}
			}
			if maxFlight != batchSize {
				t.Errorf("at most %d entries were read and unacknowledged at once, want %d (a batch)", maxFlight, batchSize)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []int{batchSize, batchSize, batchSize}; !reflect.DeepEqual(sizes, want) {
				t.Errorf("transactions of %v entries, want one per full batch: %v (reads %v)", sizes, want, asked)
			}
			if acked != batchSize*batches {
				t.Errorf("%d entries acknowledged, want %d", acked, batchSize*batches)
			}
			if st := s.Stats(); st.Batches.Load() != batches || st.Synced.Load() != batchSize*batches {
				t.Errorf("Stats: %d batches, %d synced; want %d and %d", st.Batches.Load(), st.Synced.Load(), batches, batchSize*batches)
			}
		})
	}
}
