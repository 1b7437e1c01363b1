package redisstore_test

// A randomized, model-based test of the reservation engine: random sequences
// of seeds, restocks, offer changes, reserves (with and without idempotency
// keys), confirms, cancels, clock jumps and sweeps run against the real Lua
// scripts on miniredis, through reservation.Service, and after every step
// Redis is compared with a small in-memory model of the rules.
//
// Runs are seeded by pgregory.net/rapid. A failure prints the seed and
// writes a fail file under testdata/rapid/; reproduce it with
//
//	go test ./redisstore/ -run TestPropertyReservations -rapid.seed=<seed>
//
// or with -rapid.failfile=<the printed file>; the failing run's log lists
// every step. -rapid.checks=N runs more sequences (default 100, of 50..100
// steps: ~7s, ~25s with -race); -short runs 20 of 25..50 steps (~4s with
// -race); -v prints how often each outcome was met.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

const propPrefix = "prop"

var (
	propStart = time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC)
	propUsers = []string{"u1", "u2", "u3", "u4", "u5"}
	// "" is "no Idempotency-Key"; it is drawn more often than any one key.
	propKeys  = []string{"", "", "k1", "k2", "k3"}
	propNames = []string{"", "Widget", "Jacket | red, ü"}
)

// The model.

// propRes is a reservation as the model expects Redis to store it. status is
// the stored status: a pending hold past its expiry stays "pending" here
// until some script settles it, exactly as in Redis; effective() is what
// every reader must see.
type propRes struct {
	id, sku, user             string
	qty                       int
	status                    reservation.Status
	created, expires, updated time.Time
}

type propItem struct {
	sku              string
	seeded           bool
	spec             reservation.ItemSpec // the last spec Redis accepted
	created, updated time.Time
}

type propIdemKey struct{ sku, user, key string }

type propModel struct {
	now   time.Time
	items []*propItem
	res   map[string]*propRes
	ids   []string // reservation ids in creation order (deterministic picks)
	idem  map[propIdemKey]string
	// units per (sku, user) at the previous check, for the per-user limit
	// invariant across limit changes.
	prevUnits map[[2]string]int64
}

// The model treats every due hold as expired at once. The scripts settle at
// most 64 due holds of an item per call (settleLimit) and, on the way of a
// reserve or seed, count only those as freed; this test never has that many
// due at once (the check after every step settles them all through Item, and
// the per-user limits keep the pending holds of an item far below 64), so it
// does not exercise that bound.

// effective is the status every reader must report: a pending hold is
// expired as soon as now >= expires_at.
func (m *propModel) effective(r *propRes) reservation.Status {
	if r.status == reservation.StatusPending && !m.now.Before(r.expires) {
		return reservation.StatusExpired
	}
	return r.status
}

func (m *propModel) view(r *propRes) reservation.Reservation {
	return reservation.Reservation{
		ID: r.id, SKU: r.sku, UserID: r.user, Quantity: r.qty, Status: m.effective(r),
		CreatedAt: r.created, ExpiresAt: r.expires, UpdatedAt: r.updated,
	}
}

// counters sums reserved and sold units and each user's units (pending +
// confirmed) of one item, by stored status (raw) or as readers see it.
func (m *propModel) counters(sku string, raw bool) (reserved, sold int64, users map[string]int64) {
	users = map[string]int64{}
	for _, id := range m.ids {
		r := m.res[id]
		if r.sku != sku {
			continue
		}
		st := m.effective(r)
		if raw {
			st = r.status
		}
		switch st {
		case reservation.StatusPending:
			reserved += int64(r.qty)
			users[r.user] += int64(r.qty)
		case reservation.StatusConfirmed:
			sold += int64(r.qty)
			users[r.user] += int64(r.qty)
		}
	}
	return reserved, sold, users
}

// settle marks the item's due pending holds expired, as the scripts do when
// they settle; it returns how many it settled.
func (m *propModel) settle(sku string) int {
	n := 0
	for _, id := range m.ids {
		r := m.res[id]
		if r.sku == sku && r.status == reservation.StatusPending && !m.now.Before(r.expires) {
			r.status, r.updated = reservation.StatusExpired, m.now
			n++
		}
	}
	return n
}

func (m *propModel) expectedItem(it *propItem) reservation.Item {
	reserved, sold, _ := m.counters(it.sku, false)
	return reservation.Item{
		SKU: it.sku, Name: it.spec.Name, Stock: it.spec.Stock,
		Available: it.spec.Stock - reserved - sold, Reserved: reserved, Sold: sold,
		PerUserLimit: it.spec.PerUserLimit, Hold: it.spec.Hold,
		StartsAt: it.spec.StartsAt, EndsAt: it.spec.EndsAt,
		CreatedAt: it.created, UpdatedAt: it.updated,
	}
}

// The harness.

type propTest struct {
	ctx   context.Context
	mr    *miniredis.Miniredis
	store *redisstore.Store
	svc   *reservation.Service
	m     *propModel
	// touched and touchedItems collect the reservations and items the
	// current step may have changed (all items when the clock moved or a
	// sweep ran); check reads them back.
	touched      map[string]bool
	touchedItems map[string]bool
	touchedAll   bool
	// stats counts the outcomes met, across all runs, for -v.
	stats map[string]int
}

func TestPropertyReservations(t *testing.T) {
	mr := miniredis.RunT(t)
	// In-memory connections to the miniredis server: no TCP, which saves
	// about a quarter of the run time.
	client := goredis.NewClient(&goredis.Options{
		Addr: mr.Addr(),
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			c, s := net.Pipe()
			mr.Server().ServeConn(s)
			return c, nil
		},
	})
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background()
	store, err := redisstore.New(ctx, client, propPrefix)
	if err != nil {
		t.Fatal(err)
	}
	svc := reservation.NewService(store, nil)

	stats := map[string]int{}
	defer logOutcomes(t, stats)
	rapid.Check(t, func(rt *rapid.T) {
		mr.FlushAll()
		mr.SetTime(propStart)
		p := &propTest{
			ctx: ctx, mr: mr, store: store, svc: svc, stats: stats,
			touched: map[string]bool{}, touchedItems: map[string]bool{},
			m: &propModel{
				now:       propStart,
				res:       map[string]*propRes{},
				idem:      map[propIdemKey]string{},
				prevUnits: map[[2]string]int64{},
			},
		}
		nItems := rapid.IntRange(1, 3).Draw(rt, "items")
		for i := range nItems {
			p.m.items = append(p.m.items, &propItem{sku: fmt.Sprintf("sku-%d", i+1)})
		}
		// Weighted: reserves, confirms and cancels dominate.
		actions := []propAction{
			{"reserve", 8, p.reserve},
			{"reserveAgain", 2, p.reserveAgain},
			{"confirm", 3, p.confirm},
			{"cancel", 3, p.cancel},
			{"seed", 1, p.seed},
			{"restock", 2, p.restock},
			{"setLimit", 1, p.setLimit},
			{"setHold", 1, p.setHold},
			{"setWindow", 1, p.setWindow},
			{"advance", 3, p.advance},
			{"sweep", 2, p.sweep},
		}
		// Seed every item first so most steps act on live items; the
		// seed action still creates an unseeded one now and then.
		for _, it := range p.m.items {
			if rapid.IntRange(0, 4).Draw(rt, "seedAtStart") > 0 {
				p.doSeed(rt, it, p.randomSpec(rt, it.sku), false)
			}
		}
		p.check(rt, false)
		lo, hi := 50, 100
		if testing.Short() {
			lo, hi = 25, 50
		}
		runActions(rt, actions, rapid.IntRange(lo, hi).Draw(rt, "steps"), p.m, p.check)
	})
}

// propAction is one kind of step of a property test, drawn with its weight.
type propAction struct {
	name   string
	weight int
	run    func(*rapid.T)
}

// runActions draws and runs steps actions by weight, calling check after
// each (last: after the final step).
func runActions(rt *rapid.T, actions []propAction, steps int, m *propModel, check func(rt *rapid.T, last bool)) {
	var pick []int
	for i, a := range actions {
		for range a.weight {
			pick = append(pick, i)
		}
	}
	for step := range steps {
		a := actions[rapid.SampledFrom(pick).Draw(rt, "action")]
		rt.Logf("step %d: %s (now %s)", step, a.name, m.now.Format("15:04:05.000"))
		a.run(rt)
		check(rt, step == steps-1)
	}
}

// Draws.

func (p *propTest) drawItem(t *rapid.T) *propItem {
	return p.m.items[rapid.IntRange(0, len(p.m.items)-1).Draw(t, "item")]
}

// drawWindow draws no window half of the time; otherwise a start, an end or
// both around now, leaning towards open so that reserves mostly get through.
func (p *propTest) drawWindow(t *rapid.T) (starts, ends time.Time) {
	// rapid leans towards small numbers; sample the scale, then jitter.
	at := func(label string, scale []time.Duration) time.Time {
		d := rapid.SampledFrom(scale).Draw(t, label)
		return p.m.now.Add(d + time.Duration(rapid.IntRange(0, 999).Draw(t, label+"Ms"))*time.Millisecond)
	}
	startScale := []time.Duration{-time.Hour, -2 * time.Minute, -time.Second, 0, time.Second, 30 * time.Second, 2 * time.Minute}
	endScale := []time.Duration{time.Hour, 10 * time.Minute, 2 * time.Minute, 10 * time.Second, 0, -30 * time.Second}
	switch rapid.IntRange(0, 5).Draw(t, "window") {
	case 1:
		starts = at("startsAt", startScale)
	case 2:
		ends = at("endsAt", endScale)
	case 3:
		starts = at("startsAt", startScale)
		if ends = at("endsAt", endScale); !ends.After(starts) {
			ends = starts.Add(time.Millisecond)
		}
	}
	return starts, ends
}

func (p *propTest) drawLimit(t *rapid.T) int {
	return rapid.SampledFrom([]int{1, 2, 3, 4, 6}).Draw(t, "limit")
}

var propHolds = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 10 * time.Minute, 17 * time.Second}

func (p *propTest) drawHold(t *rapid.T) time.Duration {
	return rapid.SampledFrom(propHolds).Draw(t, "hold")
}

func (p *propTest) randomSpec(t *rapid.T, sku string) reservation.ItemSpec {
	starts, ends := p.drawWindow(t)
	return reservation.ItemSpec{
		SKU:          sku,
		Name:         rapid.SampledFrom(propNames).Draw(t, "name"),
		Stock:        rapid.SampledFrom([]int64{0, 1, 3, 6, 10, 15, 25}).Draw(t, "stock"),
		PerUserLimit: p.drawLimit(t),
		Hold:         p.drawHold(t),
		StartsAt:     starts,
		EndsAt:       ends,
	}
}

// drawID picks a known reservation id, now and then one that was never issued.
func (p *propTest) drawID(t *rapid.T) string {
	if len(p.m.ids) == 0 || rapid.IntRange(0, 14).Draw(t, "unknownID") == 0 {
		id, err := reservation.NewID(p.drawItem(t).sku)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if rapid.Bool().Draw(t, "recentID") {
		// Recent holds are more often still pending.
		return rapid.SampledFrom(p.m.ids[max(0, len(p.m.ids)-3):]).Draw(t, "id")
	}
	return rapid.SampledFrom(p.m.ids).Draw(t, "id")
}

// Clock.

// setNow moves the clock forward: SetTime is what the scripts' TIME reads,
// FastForward moves TTLs (the scripts set none, but real time moves both).
func (p *propTest) setNow(t *rapid.T, to time.Time) {
	if !to.After(p.m.now) {
		return
	}
	d := to.Sub(p.m.now)
	p.m.now = to
	p.touchedAll = true
	p.mr.SetTime(to)
	p.mr.FastForward(d)
	t.Logf("  clock +%s -> %s", d, to.Format("15:04:05.000"))
}

// advance jumps the clock: by a little, by a lot, or exactly onto (or 1ms
// before) a hold's expiry or a sale window's edge.
func (p *propTest) advance(t *rapid.T) {
	var targets []time.Time
	for _, id := range p.m.ids {
		if r := p.m.res[id]; r.status == reservation.StatusPending && r.expires.After(p.m.now) {
			targets = append(targets, r.expires)
		}
	}
	for _, it := range p.m.items {
		for _, e := range []time.Time{it.spec.StartsAt, it.spec.EndsAt} {
			if it.seeded && !e.IsZero() && e.After(p.m.now) {
				targets = append(targets, e)
			}
		}
	}
	kind := rapid.IntRange(0, 5).Draw(t, "advanceKind")
	switch {
	case kind == 0:
		p.setNow(t, p.m.now.Add(time.Duration(rapid.IntRange(1, 2000).Draw(t, "ms"))*time.Millisecond))
	case kind == 1:
		p.setNow(t, p.m.now.Add(time.Duration(rapid.IntRange(1, 90).Draw(t, "s"))*time.Second))
	case kind == 2:
		p.setNow(t, p.m.now.Add(time.Duration(rapid.IntRange(1, 15).Draw(t, "min"))*time.Minute))
	case len(targets) > 0:
		to := rapid.SampledFrom(targets).Draw(t, "target")
		if kind == 3 {
			to = to.Add(-time.Millisecond)
		}
		p.setNow(t, to)
	}
}

// maybeAdvance jumps the clock before an operation now and then, so the
// operation itself meets holds that are due but not settled yet (the check
// after every step settles them through Item).
func (p *propTest) maybeAdvance(t *rapid.T) {
	if rapid.IntRange(0, 4).Draw(t, "advanceFirst") == 0 {
		p.advance(t)
	}
}

// Actions.

func (p *propTest) reserve(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	user := rapid.SampledFrom(propUsers).Draw(t, "user")
	qty := rapid.IntRange(1, 4).Draw(t, "qty")
	key := rapid.SampledFrom(propKeys).Draw(t, "key")
	p.doReserve(t, it, user, qty, key)
}

// reserveAgain resends a recorded (item, user, idempotency key), with the
// same quantity (a replay) or maybe another (key reuse).
func (p *propTest) reserveAgain(t *rapid.T) {
	if len(p.m.idem) == 0 {
		p.reserve(t)
		return
	}
	p.maybeAdvance(t)
	keys := slices.SortedFunc(maps.Keys(p.m.idem), func(a, b propIdemKey) int {
		return strings.Compare(a.sku+"\x00"+a.user+"\x00"+a.key, b.sku+"\x00"+b.user+"\x00"+b.key)
	})
	k := rapid.SampledFrom(keys).Draw(t, "idem")
	qty := p.m.res[p.m.idem[k]].qty
	if rapid.Bool().Draw(t, "otherQty") {
		qty = rapid.IntRange(1, 4).Draw(t, "qty")
	}
	var it *propItem
	for _, i := range p.m.items {
		if i.sku == k.sku {
			it = i
		}
	}
	p.doReserve(t, it, k.user, qty, k.key)
}

func (p *propTest) doReserve(t *rapid.T, it *propItem, user string, qty int, key string) {
	m := p.m
	p.touchedItems[it.sku] = true
	t.Logf("  reserve %s user=%s qty=%d key=%q", it.sku, user, qty, key)
	got, replayed, err := p.svc.Reserve(p.ctx, reservation.ReserveRequest{
		SKU: it.sku, UserID: user, Quantity: qty, IdempotencyKey: key,
	})
	t.Logf("  -> %s %v replayed=%v err=%v", got.ID, got.Status, replayed, err)

	fail := func(want error) {
		if !errors.Is(err, want) {
			t.Fatalf("reserve %s user=%s qty=%d key=%q: err = %v, want %v", it.sku, user, qty, key, err, want)
		}
		if replayed || got != (reservation.Reservation{}) {
			t.Fatalf("reserve refused with %v but returned %+v replayed=%v", err, got, replayed)
		}
		p.stats["reserve: "+want.Error()]++
	}
	if !it.seeded {
		fail(reservation.ErrItemNotFound)
		return
	}
	// 1. Replay of an idempotency key: the original, whatever its state.
	if key != "" {
		if id, ok := m.idem[propIdemKey{it.sku, user, key}]; ok {
			orig := m.res[id]
			want := m.view(orig)
			p.touched[id] = true
			if orig.qty != qty {
				if !errors.Is(err, reservation.ErrIdempotencyKeyReused) {
					t.Fatalf("reserve reusing key %q with qty %d (first %d): err = %v, want %v",
						key, qty, orig.qty, err, reservation.ErrIdempotencyKeyReused)
				}
			} else if err != nil || !replayed {
				t.Fatalf("replay of key %q: replayed=%v err=%v, want replayed", key, replayed, err)
			}
			if !propSameRes(got, want) {
				t.Fatalf("replay of key %q returned\n  %+v\nwant the original\n  %+v", key, got, want)
			}
			if orig.qty != qty {
				p.stats["reserve: key reused, original "+string(want.Status)]++
			} else {
				p.stats["reserve: replayed, original "+string(want.Status)]++
			}
			return
		}
	}
	// 2. The sale window, after replay.
	spec := it.spec
	nowMs := m.now.UnixMilli()
	if (!spec.StartsAt.IsZero() && nowMs < spec.StartsAt.UnixMilli()) ||
		(!spec.EndsAt.IsZero() && nowMs >= spec.EndsAt.UnixMilli()) {
		fail(reservation.ErrSaleNotActive)
		return
	}
	// 3. The per-user limit; due holds no longer count.
	reserved, sold, users := m.counters(it.sku, false)
	if users[user]+int64(qty) > int64(spec.PerUserLimit) {
		fail(reservation.ErrLimitExceeded)
		return
	}
	// 4. Availability; the script settles due holds on the way.
	rawReserved, _, rawUsers := m.counters(it.sku, true)
	if spec.Stock-reserved-sold < int64(qty) {
		if m.settle(it.sku) > 0 {
			p.stats["reserve: sold out, settled due holds"]++
		}
		fail(reservation.ErrSoldOut)
		return
	}
	if rawUsers[user]+int64(qty) > int64(spec.PerUserLimit) {
		p.stats["reserve: allowed by a due hold's units"]++
	}
	if spec.Stock-rawReserved-sold < int64(qty) {
		p.stats["reserve: available by due holds' stock"]++
	}
	if err != nil || replayed {
		t.Fatalf("reserve %s user=%s qty=%d key=%q: err=%v replayed=%v, want a new hold", it.sku, user, qty, key, err, replayed)
	}
	if sku, ok := reservation.ParseID(got.ID); !ok || sku != it.sku {
		t.Fatalf("reserve returned id %q, not one of item %s", got.ID, it.sku)
	}
	if _, dup := m.res[got.ID]; dup {
		t.Fatalf("reserve returned id %q twice", got.ID)
	}
	if m.settle(it.sku) > 0 {
		p.stats["reserve: created, settled due holds"]++
	}
	p.stats["reserve: created"]++
	r := &propRes{id: got.ID, sku: it.sku, user: user, qty: qty, status: reservation.StatusPending,
		created: m.now, expires: m.now.Add(spec.Hold), updated: m.now}
	m.res[r.id] = r
	m.ids = append(m.ids, r.id)
	p.touched[r.id] = true
	if key != "" {
		m.idem[propIdemKey{it.sku, user, key}] = r.id
	}
	if want := m.view(r); !propSameRes(got, want) {
		t.Fatalf("reserve returned\n  %+v\nwant\n  %+v", got, want)
	}
}

func (p *propTest) confirm(t *rapid.T) {
	p.maybeAdvance(t)
	id := p.drawID(t)
	got, err := p.svc.Confirm(p.ctx, id)
	t.Logf("  confirm %s -> %v err=%v", id, got.Status, err)
	p.expectByID(t, "confirm", id, got, err)
}

func (p *propTest) cancel(t *rapid.T) {
	p.maybeAdvance(t)
	id := p.drawID(t)
	got, err := p.svc.Cancel(p.ctx, id)
	t.Logf("  cancel %s -> %v err=%v", id, got.Status, err)
	p.expectByID(t, "cancel", id, got, err)
}

// expectByID applies confirm or cancel to the model and checks the answer.
func (p *propTest) expectByID(t *rapid.T, op, id string, got reservation.Reservation, err error) {
	m := p.m
	sku, _ := reservation.ParseID(id)
	p.touchedItems[sku] = true
	r, ok := m.res[id]
	if !ok {
		if _, err := p.svc.Reservation(p.ctx, id); !errors.Is(err, reservation.ErrReservationNotFound) {
			t.Fatalf("Reservation of unknown %s: err = %v, want %v", id, err, reservation.ErrReservationNotFound)
		}
		if !errors.Is(err, reservation.ErrReservationNotFound) || got != (reservation.Reservation{}) {
			t.Fatalf("%s of unknown %s: %+v err=%v, want %v", op, id, got, err, reservation.ErrReservationNotFound)
		}
		p.stats[op+": unknown id"]++
		return
	}
	p.touched[id] = true
	var want error
	switch st := m.effective(r); {
	case st == reservation.StatusExpired:
		if r.status == reservation.StatusPending {
			// Due but not settled: the script settles it now.
			r.status, r.updated = reservation.StatusExpired, m.now
			p.stats[op+": due hold settled by it"]++
		}
		want = reservation.ErrReservationExpired
	case op == "confirm" && st == reservation.StatusCancelled:
		want = reservation.ErrReservationCancelled
	case op == "cancel" && st == reservation.StatusConfirmed:
		want = reservation.ErrReservationConfirmed
	case st == reservation.StatusPending && op == "confirm":
		r.status, r.updated = reservation.StatusConfirmed, m.now
	case st == reservation.StatusPending && op == "cancel":
		r.status, r.updated = reservation.StatusCancelled, m.now
	default:
		// Confirming a confirmed or cancelling a cancelled one: a no-op success.
	}
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s %s (stored %s, expires %s, now %s): err = %v, want %v",
			op, id, r.status, r.expires.Format("15:04:05.000"), m.now.Format("15:04:05.000"), err, want)
	}
	if w := m.view(r); !propSameRes(got, w) {
		t.Fatalf("%s %s returned\n  %+v\nwant\n  %+v", op, id, got, w)
	}
	if want == nil {
		p.stats[op+": ok, now "+string(r.status)]++
	} else {
		p.stats[op+": "+want.Error()]++
	}
}

// seed replaces the offer with a random one (or creates the item).
func (p *propTest) seed(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	p.doSeed(t, it, p.randomSpec(t, it.sku), rapid.Bool().Draw(t, "viaStore"))
}

// currentSpec is the item's offer, or a fresh one if it has none yet.
func (p *propTest) currentSpec(t *rapid.T, it *propItem) reservation.ItemSpec {
	if !it.seeded {
		return p.randomSpec(t, it.sku)
	}
	return it.spec
}

// restock changes only the stock: up, down, to exactly what is committed,
// or to one unit below it.
func (p *propTest) restock(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	spec := p.currentSpec(t, it)
	reserved, sold, _ := p.m.counters(it.sku, false)
	spec.Stock = drawStock(t, spec.Stock, reserved+sold, 20)
	p.doSeed(t, it, spec, rapid.Bool().Draw(t, "viaStore"))
}

// drawStock draws a restock of an item with stock units of which committed
// are reserved or sold: to exactly the committed units or one below, up or
// down by a few, or anywhere in 0..most.
func drawStock(t *rapid.T, stock, committed int64, most int) int64 {
	switch rapid.IntRange(0, 4).Draw(t, "restockKind") {
	case 0:
		return max(0, committed-1)
	case 1:
		return committed
	case 2:
		return stock + int64(rapid.IntRange(1, 10).Draw(t, "up"))
	case 3:
		return max(0, stock-int64(rapid.IntRange(1, 10).Draw(t, "down")))
	default:
		return int64(rapid.IntRange(0, most).Draw(t, "stock"))
	}
}

func (p *propTest) setLimit(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	spec := p.currentSpec(t, it)
	spec.PerUserLimit = p.drawLimit(t)
	p.doSeed(t, it, spec, false)
}

func (p *propTest) setHold(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	spec := p.currentSpec(t, it)
	spec.Hold = p.drawHold(t)
	p.doSeed(t, it, spec, false)
}

func (p *propTest) setWindow(t *rapid.T) {
	p.maybeAdvance(t)
	it := p.drawItem(t)
	spec := p.currentSpec(t, it)
	spec.StartsAt, spec.EndsAt = p.drawWindow(t)
	p.doSeed(t, it, spec, false)
}

func (p *propTest) doSeed(t *rapid.T, it *propItem, spec reservation.ItemSpec, viaStore bool) {
	m := p.m
	p.touchedItems[it.sku] = true
	t.Logf("  seed %s stock=%d limit=%d hold=%s starts=%s ends=%s viaStore=%v", spec.SKU, spec.Stock,
		spec.PerUserLimit, spec.Hold, propFmtTime(spec.StartsAt), propFmtTime(spec.EndsAt), viaStore)
	var got reservation.SeedResult
	var err error
	if viaStore {
		got, err = p.store.Seed(p.ctx, spec)
	} else {
		got, err = p.svc.Seed(p.ctx, spec)
	}
	t.Logf("  -> created=%v err=%v", got.Created, err)

	if it.seeded {
		reserved, sold, _ := m.counters(it.sku, false)
		if spec.Stock < reserved+sold {
			if !errors.Is(err, reservation.ErrStockBelowCommitted) || got != (reservation.SeedResult{}) {
				t.Fatalf("seed %s stock %d below %d reserved + %d sold: %+v err=%v, want %v",
					it.sku, spec.Stock, reserved, sold, got, err, reservation.ErrStockBelowCommitted)
			}
			p.stats["seed: stock below committed"]++
			return // nothing changed: the check compares everything
		}
	}
	if err != nil {
		t.Fatalf("seed %s: %v", it.sku, err)
	}
	created := !it.seeded
	if created {
		it.seeded, it.created = true, m.now
	}
	if m.settle(it.sku) > 0 {
		p.stats["seed: settled due holds"]++
	}
	if created {
		p.stats["seed: created"]++
	} else {
		p.stats["seed: updated"]++
	}
	it.spec, it.updated = spec, m.now
	if want := (reservation.SeedResult{Item: m.expectedItem(it), Created: created}); got.Created != want.Created || !propSameItem(got.Item, want.Item) {
		t.Fatalf("seed %s returned\n  %+v\nwant\n  %+v", it.sku, got, want)
	}
}

// sweep settles every due hold of every item, in batches of 1..4.
func (p *propTest) sweep(t *rapid.T) {
	p.maybeAdvance(t)
	p.touchedAll = true
	batch := rapid.IntRange(1, 4).Draw(t, "batch")
	got, err := p.store.SweepDue(p.ctx, batch)
	t.Logf("  sweep batch=%d -> %d err=%v", batch, got, err)
	want := 0
	for _, it := range p.m.items {
		want += p.m.settle(it.sku)
	}
	if err != nil || got != want {
		t.Fatalf("SweepDue(%d) = %d, %v; want %d due holds settled", batch, got, err, want)
	}
	if want > batch {
		p.stats["sweep: more due holds than a batch"]++
	} else if want > 0 {
		p.stats["sweep: settled due holds"]++
	}
}

// Checks.

// check compares Redis with the model after every step:
//
//   - every stored key of every item as it is, nothing settled: counters,
//     holds index, user allowances, every record, idempotency keys;
//   - through Reservation, as a reader sees them: the reservations the step
//     answered for and every hold that is due but not settled yet (stored
//     pending, read as expired); every reservation after the last step;
//   - through Item, which settles due holds: every item the step may have
//     changed (all of them when the clock moved or a sweep ran; all after
//     the last step); then the stored keys again;
//   - the invariants: available+reserved+sold == stock, none negative,
//     per-user units within the limit.
//
// A reservation or item skipped here cannot have changed since it was last
// read: its stored keys are compared in full above, and without a clock
// move its effective state is its stored state. (Every script call costs
// miniredis a fresh Lua state, ~0.5ms, several times that with -race, so
// reading everything after every step would make the test several times
// slower for no more coverage.)
func (p *propTest) check(t *rapid.T, all bool) {
	m := p.m
	p.checkStored(t, "before Item")
	read, readItems, readAll := p.touched, p.touchedItems, p.touchedAll || all
	p.touched, p.touchedItems, p.touchedAll = map[string]bool{}, map[string]bool{}, false
	for _, id := range m.ids {
		r := m.res[id]
		if all || read[id] || r.status != m.effective(r) {
			got, err := p.svc.Reservation(p.ctx, id)
			if want := m.view(r); err != nil || !propSameRes(got, want) {
				t.Fatalf("Reservation(%s) = %+v, %v\nwant %+v", id, got, err, want)
			}
		}
	}
	for _, it := range m.items {
		if !readAll && !readItems[it.sku] {
			continue
		}
		got, err := p.svc.Item(p.ctx, it.sku)
		if !it.seeded {
			if !errors.Is(err, reservation.ErrItemNotFound) {
				t.Fatalf("Item(%s) of an unseeded item: %+v, %v; want %v", it.sku, got, err, reservation.ErrItemNotFound)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Item(%s): %v", it.sku, err)
		}
		if got.Available+got.Reserved+got.Sold != got.Stock ||
			got.Available < 0 || got.Reserved < 0 || got.Sold < 0 {
			t.Fatalf("Item(%s) counters broken: %+v", it.sku, got)
		}
		want := m.expectedItem(it)
		m.settle(it.sku)
		if !propSameItem(got, want) {
			t.Fatalf("Item(%s) =\n  %+v\nwant\n  %+v", it.sku, got, want)
		}
	}
	p.checkStored(t, "after Item")

	// Per-user units never exceed the limit, except that lowering the limit
	// below what a user already holds leaves those units alone: they may
	// then only shrink.
	for _, it := range m.items {
		if !it.seeded {
			continue
		}
		k := p.keys(it.sku)
		for _, user := range propUsers {
			units := int64(0)
			if s := p.mr.HGet(k.users, user); s != "" {
				units = propInt(t, s)
			}
			prev := m.prevUnits[[2]string{it.sku, user}]
			if units < 0 || units > int64(it.spec.PerUserLimit) && units > prev {
				t.Fatalf("user %s holds %d units of %s: limit %d, held %d before",
					user, units, it.sku, it.spec.PerUserLimit, prev)
			}
			if units > int64(it.spec.PerUserLimit) {
				p.stats["limit: user above a lowered limit"]++
			}
			m.prevUnits[[2]string{it.sku, user}] = units
		}
	}
}

type propKeys5 struct{ item, holds, users, res, idem string }

// keys mirrors Store.keys: the layout documented in luascripts/lib.lua.
func (p *propTest) keys(sku string) propKeys5 {
	pre := propPrefix + ":{" + sku + "}:"
	return propKeys5{pre + "item", pre + "holds", pre + "users", pre + "res", pre + "idem"}
}

// checkStored reads the item's keys straight from miniredis, without any
// script settling anything, and compares them with the model's stored view:
// counters, holds index, user allowances, records, idempotency keys.
func (p *propTest) checkStored(t *rapid.T, when string) {
	m := p.m
	for _, it := range m.items {
		k := p.keys(it.sku)
		if !it.seeded {
			for _, key := range []string{k.item, k.holds, k.users, k.res, k.idem} {
				if p.mr.Exists(key) {
					t.Fatalf("%s: key %s exists for an unseeded item", when, key)
				}
			}
			continue
		}
		reserved, sold, users := m.counters(it.sku, true)
		stock := propInt(t, p.mr.HGet(k.item, "stock"))
		gotCounters := [4]int64{stock, propInt(t, p.mr.HGet(k.item, "available")),
			propInt(t, p.mr.HGet(k.item, "reserved")), propInt(t, p.mr.HGet(k.item, "sold"))}
		wantCounters := [4]int64{it.spec.Stock, it.spec.Stock - reserved - sold, reserved, sold}
		if gotCounters != wantCounters {
			t.Fatalf("%s: %s stored stock/available/reserved/sold = %v, want %v", when, it.sku, gotCounters, wantCounters)
		}

		gotUsers := map[string]int64{}
		for _, f := range propHashFields(p.mr, k.users) {
			gotUsers[f] = propInt(t, p.mr.HGet(k.users, f))
		}
		for u, n := range users {
			if n == 0 {
				delete(users, u)
			}
		}
		if !maps.Equal(gotUsers, users) {
			t.Fatalf("%s: %s stored user units = %v, want %v", when, it.sku, gotUsers, users)
		}

		wantHolds, wantRecs := map[string]float64{}, map[string]string{}
		for _, id := range m.ids {
			r := m.res[id]
			if r.sku != it.sku {
				continue
			}
			if r.status == reservation.StatusPending {
				wantHolds[id] = float64(r.expires.UnixMilli())
			}
			wantRecs[id] = fmt.Sprintf("%s|%d|%d|%d|%d|%s", r.status, r.qty,
				r.created.UnixMilli(), r.expires.UnixMilli(), r.updated.UnixMilli(), r.user)
		}
		gotHolds, err := p.mr.SortedSet(k.holds)
		if errors.Is(err, miniredis.ErrKeyNotFound) {
			gotHolds, err = map[string]float64{}, nil
		}
		if err != nil || !maps.Equal(gotHolds, wantHolds) {
			t.Fatalf("%s: %s holds index = %v (%v), want %v", when, it.sku, gotHolds, err, wantHolds)
		}
		gotRecs := map[string]string{}
		for _, f := range propHashFields(p.mr, k.res) {
			gotRecs[f] = p.mr.HGet(k.res, f)
		}
		if !maps.Equal(gotRecs, wantRecs) {
			t.Fatalf("%s: %s records =\n  %v\nwant\n  %v", when, it.sku, gotRecs, wantRecs)
		}

		wantIdem, gotIdem := map[string]string{}, map[string]string{}
		for ik, id := range m.idem {
			if ik.sku == it.sku {
				wantIdem[strconv.Itoa(len(ik.user))+":"+ik.user+":"+ik.key] = id
			}
		}
		for _, f := range propHashFields(p.mr, k.idem) {
			gotIdem[f] = p.mr.HGet(k.idem, f)
		}
		gotIdem = idemFields(gotIdem)
		if !maps.Equal(gotIdem, wantIdem) {
			t.Fatalf("%s: %s idempotency keys = %v, want %v", when, it.sku, gotIdem, wantIdem)
		}
	}
}

func propHashFields(mr *miniredis.Miniredis, key string) []string {
	fs, err := mr.HKeys(key)
	if err != nil {
		return nil // no such key: an empty hash
	}
	sort.Strings(fs)
	return fs
}

func propInt(t *rapid.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("stored %q is not an integer: %v", s, err)
	}
	return n
}

func propFmtTime(tm time.Time) string {
	if tm.IsZero() {
		return "-"
	}
	return tm.Format("15:04:05.000")
}

// propSameRes and propSameItem compare field by field, times with Equal.
func propSameRes(a, b reservation.Reservation) bool {
	return a.ID == b.ID && a.SKU == b.SKU && a.UserID == b.UserID && a.Quantity == b.Quantity &&
		a.Status == b.Status && a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt)
}

func propSameItem(a, b reservation.Item) bool {
	return a.SKU == b.SKU && a.Name == b.Name && a.Stock == b.Stock && a.Available == b.Available &&
		a.Reserved == b.Reserved && a.Sold == b.Sold && a.PerUserLimit == b.PerUserLimit &&
		a.Hold == b.Hold && a.StartsAt.Equal(b.StartsAt) && a.EndsAt.Equal(b.EndsAt) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// logOutcomes lists how often each outcome was met over a property test's
// runs, so a reader can see the test reached the cases it is meant to.
func logOutcomes(t *testing.T, stats map[string]int) {
	if t.Failed() {
		return
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(stats)) {
		fmt.Fprintf(&b, "\n  %-40s %d", k, stats[k])
	}
	t.Logf("outcomes met:%s", b.String())
}
