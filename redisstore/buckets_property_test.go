package redisstore_test

// A randomized, model-based test of items split over buckets. Each run
// seeds one item over 1..8 buckets and drives it through reservation.Service
// with random reserves (with and without idempotency keys), replays,
// confirms, cancels, clock jumps, restocks up and down, sweeps, transfers
// whose mover dies after take.lua (and sometimes after give.lua), and Redis
// losing some or all buckets. While buckets are lost, buyers go on and the
// admin seeds and restocks: a seed must be refused as recovering and must
// not create a lost bucket, a buyer gets a hold, "recovering" or the limit,
// never sold_out; then Restore rebuilds them from what the model holds (the
// record), and from there on exactly the units the record does not hold are
// sellable (the checks below and the reserves' no false sold_out).
// It reuses property_test.go's model (propModel) and its confirm, cancel,
// advance and sweep actions; what is new is the bucket bookkeeping. After
// every step:
//
//   - each bucket's available+reserved+sold == stock, none negative, and the
//     buckets' stocks plus the units in transit equal the head's total
//     (readBuckets), the units in transit being exactly the dead movers' ones;
//   - nothing is oversold: reserved+sold over all buckets <= total;
//   - every user's units (the users hashes summed over the buckets) live in
//     the user's home bucket and stay within the limit, and equal the model's;
//   - every record is in the bucket its id names, as the model has it;
//   - Item and Counters report the model's counters, units in transit
//     counted as available;
//   - no false sold_out: a reserve refused as sold out had fewer free units
//     (total - committed - in transit) than it asked for, and one that had
//     enough got its hold.
//
// The store picks donors at random, so a replayed seed makes the same
// requests but may move units differently; the checks hold either way.
// Reproduce a failure with -rapid.seed or -rapid.failfile as printed;
// -rapid.checks=N runs more sequences (default 100 of 5..12 steps, ~5s with
// -race; -short: 3..6 steps); -v prints how often each outcome was met.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// bucketUsers are more than propUsers, so that most buckets have buyers.
var bucketUsers = []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}

// bucketProp is one run: property_test.go's harness (model, service, clock
// and the actions that need nothing bucket-specific) plus the item's
// buckets and the transfers whose mover died.
type bucketProp struct {
	*propTest
	s       *testStore
	it      *propItem
	names   []string
	transit []stuckUnits // taken and never given: only the sweeper delivers them
	lost    []string     // buckets Redis lost and recovery has not rebuilt yet
}

type stuckUnits struct {
	units int64
	at    time.Time
}

func TestPropertyBuckets(t *testing.T) {
	mr, rdb := redistest.Miniredis(t)
	ctx := context.Background()
	// One store for every run: its cache of bucket counts outlives FLUSHALL,
	// but each run begins with the seed, which sets it.
	s := newTestStore(t, rdb, mr, "pb")
	rec := &propRecovery{}
	svc := reservation.NewService(s.Store, rec)
	stats := map[string]int{}
	defer logOutcomes(t, stats)
	rapid.Check(t, func(rt *rapid.T) {
		mr.FlushAll()
		mr.SetTime(propStart)
		p := &bucketProp{s: s, propTest: &propTest{
			ctx: ctx, mr: mr, store: s.Store, svc: svc, stats: stats,
			touched: map[string]bool{}, touchedItems: map[string]bool{},
			m: &propModel{now: propStart, res: map[string]*propRes{}, idem: map[propIdemKey]string{},
				prevUnits: map[[2]string]int64{}},
		}}
		n := rapid.IntRange(1, 8).Draw(rt, "buckets")
		const sku = "pb"
		spec := reservation.ItemSpec{
			SKU: sku, Name: "Split", Buckets: n,
			Stock:        int64(rapid.IntRange(0, 50).Draw(rt, "stock")),
			PerUserLimit: rapid.IntRange(1, 5).Draw(rt, "limit"),
			Hold:         p.drawHold(rt),
		}
		p.it = &propItem{sku: sku}
		p.m.items = []*propItem{p.it}
		p.names = redisstore.Buckets(sku, n)
		*rec = propRecovery{p: p}
		res, err := svc.Seed(ctx, spec)
		rec.recorded = true // the syncer has written the item
		if err != nil || !res.Created || res.Item.Buckets != n {
			rt.Fatalf("seed %+v: %+v, %v", spec, res, err)
		}
		p.it.seeded, p.it.spec, p.it.created, p.it.updated = true, spec, propStart, propStart
		p.checkBuckets(rt, false)

		// While buckets are lost, what cannot run then (confirms, cancels,
		// sweeps, movers) stands for recovery rebuilding them.
		actions := []propAction{
			{"reserve", 8, p.whole(p.reserve, p.reserveWhileLost)},
			{"reserveAgain", 2, p.whole(p.reserveAgain, p.reserveWhileLost)},
			{"confirm", 3, p.whole(p.confirm, p.restore)},
			{"cancel", 3, p.whole(p.cancel, p.restore)},
			{"restock", 2, p.whole(p.restock, p.seedWhileLost)},
			{"advance", 2, p.advance},
			{"sweep", 3, p.whole(p.sweepTransfers, p.restore)},
			{"crash", 3, p.whole(p.crash, p.restore)},
			{"lose", 2, p.whole(p.lose, p.seedWhileLost)},
		}
		lo, hi := 5, 12
		if testing.Short() {
			lo, hi = 3, 6
		}
		runActions(rt, actions, rapid.IntRange(lo, hi).Draw(rt, "steps"), p.m, p.checkBuckets)
	})
}

// inTransit is the units the dead movers took and nobody has delivered.
func (p *bucketProp) inTransit() int64 {
	var n int64
	for _, x := range p.transit {
		n += x.units
	}
	return n
}

func (p *bucketProp) reserve(t *rapid.T) {
	p.maybeAdvance(t)
	p.doReserve(t, rapid.SampledFrom(bucketUsers).Draw(t, "user"), rapid.IntRange(1, 3).Draw(t, "qty"),
		rapid.SampledFrom(propKeys).Draw(t, "key"))
}

// reserveAgain resends a recorded (user, key), with the first quantity (a
// replay) or maybe another (a reused key).
func (p *bucketProp) reserveAgain(t *rapid.T) {
	if len(p.m.idem) == 0 {
		p.reserve(t)
		return
	}
	p.maybeAdvance(t)
	keys := slices.SortedFunc(maps.Keys(p.m.idem), func(a, b propIdemKey) int {
		return strings.Compare(a.user+"\x00"+a.key, b.user+"\x00"+b.key)
	})
	k := rapid.SampledFrom(keys).Draw(t, "idem")
	qty := p.m.res[p.m.idem[k]].qty
	if rapid.Bool().Draw(t, "otherQty") {
		qty = rapid.IntRange(1, 3).Draw(t, "qty")
	}
	p.doReserve(t, k.user, qty, k.key)
}

// doReserve reserves through the service and checks the answer against the
// model: replay, limit, then availability, where the units in transit are
// the only ones not free.
func (p *bucketProp) doReserve(t *rapid.T, user string, qty int, key string) {
	m, it := p.m, p.it
	p.touchedItems[it.sku] = true
	got, replayed, err := p.svc.Reserve(p.ctx, reservation.ReserveRequest{SKU: it.sku, UserID: user, Quantity: qty, IdempotencyKey: key})
	t.Logf("  reserve user=%s qty=%d key=%q -> %s replayed=%v err=%v", user, qty, key, got.ID, replayed, err)
	if key != "" {
		if id, ok := m.idem[propIdemKey{it.sku, user, key}]; ok {
			orig := m.res[id]
			p.touched[id] = true
			switch {
			case orig.qty != qty && !errors.Is(err, reservation.ErrIdempotencyKeyReused):
				t.Fatalf("key %q reused with qty %d (first %d): err %v, want key reused", key, qty, orig.qty, err)
			case orig.qty == qty && (err != nil || !replayed):
				t.Fatalf("replay of key %q: replayed=%v err=%v", key, replayed, err)
			}
			if !propSameRes(got, m.view(orig)) {
				t.Fatalf("replay of key %q returned %+v, want %+v", key, got, m.view(orig))
			}
			p.stats["reserve: replayed or key reused"]++
			return
		}
	}
	reserved, sold, users := m.counters(it.sku, false)
	free := it.spec.Stock - reserved - sold - p.inTransit()
	var want error
	switch {
	case users[user]+int64(qty) > int64(it.spec.PerUserLimit):
		want = reservation.ErrLimitExceeded
	case free < int64(qty):
		want = reservation.ErrSoldOut
	}
	if errors.Is(err, reservation.ErrSoldOut) && want == nil {
		t.Fatalf("false sold out: %d asked, %d free (stock %d, reserved %d, sold %d, in transit %d)",
			qty, free, it.spec.Stock, reserved, sold, p.inTransit())
	}
	if want != nil {
		if !errors.Is(err, want) || replayed || got != (reservation.Reservation{}) {
			t.Fatalf("reserve %d for %s (%d free, %d held): %+v replayed=%v err=%v, want %v",
				qty, user, free, users[user], got, replayed, err, want)
		}
		if want == reservation.ErrSoldOut && p.inTransit() > 0 && free+p.inTransit() >= int64(qty) {
			p.stats["reserve: sold out, units in transit"]++
		}
		p.stats["reserve: "+want.Error()]++
		return
	}
	if err != nil || replayed {
		t.Fatalf("reserve %d for %s with %d free: replayed=%v err=%v, want a new hold", qty, user, free, replayed, err)
	}
	home := homeOf(p.names, user)
	if bucketOf(got.ID) != home {
		t.Fatalf("hold %s of %s is not in its home bucket %s", got.ID, user, home)
	}
	if _, dup := m.res[got.ID]; dup {
		t.Fatalf("reserve returned id %q twice", got.ID)
	}
	p.stats["reserve: created"]++
	if home != it.sku {
		p.stats["reserve: created in another bucket than the head"]++
	}
	r := &propRes{id: got.ID, sku: it.sku, user: user, qty: qty, status: reservation.StatusPending,
		created: m.now, expires: m.now.Add(it.spec.Hold), updated: m.now}
	m.res[r.id] = r
	m.ids = append(m.ids, r.id)
	p.touched[r.id] = true
	if key != "" {
		m.idem[propIdemKey{it.sku, user, key}] = r.id
	}
	if !propSameRes(got, m.view(r)) {
		t.Fatalf("reserve returned %+v, want %+v", got, m.view(r))
	}
}

// restock changes the total: up, down, to the committed units or one
// below. Down gathers the other buckets' units into the head; units in
// transit cannot be gathered, so the total may not go below committed +
// in transit until the sweeper delivers them.
func (p *bucketProp) restock(t *rapid.T) {
	p.maybeAdvance(t)
	m, it := p.m, p.it
	p.touchedItems[it.sku] = true
	spec := it.spec
	reserved, sold, _ := m.counters(it.sku, false)
	committed := reserved + sold
	spec.Stock = drawStock(t, spec.Stock, committed, 50)
	if rapid.Bool().Draw(t, "bucketsUnset") {
		spec.Buckets = 0 // unchanged
	}
	got, err := p.svc.Seed(p.ctx, spec)
	t.Logf("  restock %d -> %d (committed %d, in transit %d): err=%v", it.spec.Stock, spec.Stock, committed, p.inTransit(), err)
	if spec.Stock < committed+p.inTransit() {
		if !errors.Is(err, reservation.ErrStockBelowCommitted) {
			t.Fatalf("restock to %d with %d committed and %d in transit: %+v, %v; want stock below committed",
				spec.Stock, committed, p.inTransit(), got, err)
		}
		if spec.Stock >= committed {
			p.stats["restock: refused, units in transit"]++
		}
		p.stats["restock: below committed"]++
		return
	}
	if err != nil || got.Created || got.Item.Buckets != len(p.names) {
		t.Fatalf("restock to %d: %+v, %v", spec.Stock, got, err)
	}
	if spec.Stock < it.spec.Stock {
		p.stats["restock: down"]++
	} else {
		p.stats["restock: up or same"]++
	}
	spec.Buckets = len(p.names)
	it.spec, it.updated = spec, m.now
	m.settle(it.sku)
	if want := m.expectedItem(it); !propSameItem(got.Item, want) {
		t.Fatalf("restock returned %+v, want %+v", got.Item, want)
	}
}

// crash is a mover that dies after take.lua, or after give.lua but before
// forgetting the record.
func (p *bucketProp) crash(t *rapid.T) {
	n := len(p.names)
	if n == 1 {
		return
	}
	p.maybeAdvance(t)
	// Mostly from a bucket that has units to take.
	var givers []int
	for b, name := range p.names {
		if p.mr.HGet(p.s.key(name, "item"), "available") != "0" {
			givers = append(givers, b)
		}
	}
	from := rapid.IntRange(0, n-1).Draw(t, "from")
	if len(givers) > 0 && rapid.IntRange(0, 3).Draw(t, "fromGiver") > 0 {
		from = rapid.SampledFrom(givers).Draw(t, "giver")
	}
	to := (from + rapid.IntRange(1, n-1).Draw(t, "toOffset")) % n
	give := rapid.IntRange(0, 2).Draw(t, "giveToo") == 0
	_, units := stuckTransfer(t, p.s, n, p.names[from], p.names[to], int64(rapid.IntRange(1, 3).Draw(t, "want")), give)
	t.Logf("  crash %s -> %s: %d units, given=%v", p.names[from], p.names[to], units, give)
	switch {
	case units == 0:
		p.stats["crash: giver empty"]++
	case give:
		p.stats["crash: after give"]++
	default:
		p.stats["crash: after take"]++
		p.transit = append(p.transit, stuckUnits{units: units, at: p.m.now})
	}
}

// propRecovery is the Service's view of the durable record: it holds the
// item once seeded, and the item is lost while some of its buckets are.
type propRecovery struct {
	p        *bucketProp
	recorded bool
}

func (r *propRecovery) Recorded(_ context.Context, skus []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, sku := range skus {
		out[sku] = r.recorded
	}
	return out, nil
}

func (r *propRecovery) Lost(context.Context, string) bool { return len(r.p.lost) > 0 }

// whole runs normal while every bucket exists, and whileLost otherwise.
func (p *bucketProp) whole(normal, whileLost func(*rapid.T)) func(*rapid.T) {
	return func(t *rapid.T) {
		if len(p.lost) > 0 {
			whileLost(t)
			return
		}
		normal(t)
	}
}

// lose is Redis losing some or all of the item's buckets (a cluster
// master's data, or everything). They stay lost until restore.
func (p *bucketProp) lose(t *rapid.T) {
	var lost []string
	for b, name := range p.names {
		if rapid.IntRange(0, 2).Draw(t, "lose"+strconv.Itoa(b)) == 0 {
			lost = append(lost, name)
		}
	}
	if len(lost) == 0 {
		lost = append(lost, rapid.SampledFrom(p.names).Draw(t, "loseOne"))
	}
	for _, key := range p.mr.Keys() {
		for _, name := range lost {
			if strings.HasPrefix(key, p.s.key(name, "")) {
				p.mr.Del(key)
			}
		}
	}
	p.lost = lost
	t.Logf("  lose %v (in transit %d)", lost, p.inTransit())
}

// restore is recovery rebuilding the lost buckets from a record that holds
// what the model holds. The rebuilt buckets hold their reservations; the
// exact count gives the head every unit no bucket accounts for, including
// those that were in transit.
func (p *bucketProp) restore(t *rapid.T) {
	m, it := p.m, p.it
	idem := map[string]string{}
	for k, id := range m.idem {
		idem[id] = strconv.Itoa(len(k.user)) + ":" + k.user + ":" + k.key
	}
	snap := reservation.Snapshot{Item: reservation.ItemRecord{ItemSpec: it.spec, Rev: 1,
		CreatedAt: it.created, UpdatedAt: it.updated}}
	for _, id := range m.ids {
		r := m.res[id]
		snap.Reservations = append(snap.Reservations, reservation.RecordedReservation{
			Reservation: reservation.Reservation{ID: r.id, SKU: r.sku, UserID: r.user, Quantity: r.qty, Status: r.status,
				CreatedAt: r.created, ExpiresAt: r.expires, UpdatedAt: r.updated},
			IdempotencyField: idem[id],
		})
	}
	restored, err := p.store.Restore(p.ctx, snap)
	t.Logf("  restore %v (in transit %d) -> restored=%v err=%v", p.lost, p.inTransit(), restored, err)
	if err != nil || !restored {
		t.Fatalf("Restore after losing %v: %v, %v", p.lost, restored, err)
	}
	switch {
	case len(p.lost) == len(p.names):
		p.stats["lose: every bucket"]++
	case slices.Contains(p.lost, it.sku):
		p.stats["lose: the head and some"]++
	default:
		p.stats["lose: some, the head kept"]++
	}
	if p.inTransit() > 0 {
		p.stats["lose: with units in transit"]++
	}
	p.lost = nil
	p.transit = nil // finished by the count, or lost and counted back
	p.touchedAll = true
}

// seedWhileLost is the admin seeding or restocking the item while buckets
// are lost: refused as recovering, with nothing changed and no lost bucket
// created (recovery rebuilds it with its holds).
func (p *bucketProp) seedWhileLost(t *rapid.T) {
	spec := p.it.spec
	reserved, sold, _ := p.m.counters(p.it.sku, false)
	spec.Stock = drawStock(t, spec.Stock, reserved+sold, 50)
	if rapid.Bool().Draw(t, "bucketsUnset") {
		spec.Buckets = 0
	}
	before := p.survivors()
	got, err := p.svc.Seed(p.ctx, spec)
	t.Logf("  seed %d while %v are lost: %+v, %v", spec.Stock, p.lost, got, err)
	if !errors.Is(err, reservation.ErrRecovering) {
		t.Fatalf("seed while %v are lost: %+v, %v; want recovering", p.lost, got, err)
	}
	if after := p.survivors(); !maps.EqualFunc(before, after, maps.Equal) {
		t.Fatalf("a refused seed changed the buckets left:\n%v\n%v", before, after)
	}
	p.stats["seed while lost: recovering"]++
}

// survivors are the item hashes of the buckets that are not lost.
func (p *bucketProp) survivors() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, name := range p.names {
		if !slices.Contains(p.lost, name) {
			f := map[string]string{}
			for _, k := range propHashFields(p.mr, p.s.key(name, "item")) {
				f[k] = p.mr.HGet(p.s.key(name, "item"), k)
			}
			out[name] = f
		}
	}
	return out
}

// reserveWhileLost is a buyer while buckets are lost: a hold from the
// buckets left (never more than the record leaves free), the limit (from a
// home bucket that is left), or "recovering"; sold_out would rest on
// buckets nobody could ask.
func (p *bucketProp) reserveWhileLost(t *rapid.T) {
	m, it := p.m, p.it
	p.maybeAdvance(t)
	user := rapid.SampledFrom(bucketUsers).Draw(t, "user")
	qty := rapid.IntRange(1, 3).Draw(t, "qty")
	got, replayed, err := p.svc.Reserve(p.ctx, reservation.ReserveRequest{SKU: it.sku, UserID: user, Quantity: qty})
	t.Logf("  reserve while %v are lost: user=%s qty=%d -> %s replayed=%v err=%v", p.lost, user, qty, got.ID, replayed, err)
	home := homeOf(p.names, user)
	homeLost := slices.Contains(p.lost, home)
	reserved, sold, users := m.counters(it.sku, false)
	free := it.spec.Stock - reserved - sold - p.inTransit()
	overLimit := users[user]+int64(qty) > int64(it.spec.PerUserLimit)
	switch {
	case errors.Is(err, reservation.ErrRecovering):
		p.stats["reserve while lost: recovering"]++
	case errors.Is(err, reservation.ErrLimitExceeded):
		if !overLimit || homeLost {
			t.Fatalf("limit exceeded for %s (holds %d, home lost %v)", user, users[user], homeLost)
		}
		p.stats["reserve while lost: limit"]++
	case err != nil:
		t.Fatalf("reserve while %v are lost: %v, want a hold, the limit or recovering", p.lost, err)
	default:
		if homeLost || overLimit || free < int64(qty) || replayed || bucketOf(got.ID) != home {
			t.Fatalf("hold %s of %d for %s (home %s lost %v, over limit %v, %d free)", got.ID, qty, user, home, homeLost, overLimit, free)
		}
		r := &propRes{id: got.ID, sku: it.sku, user: user, qty: qty, status: reservation.StatusPending,
			created: m.now, expires: m.now.Add(it.spec.Hold), updated: m.now}
		m.res[r.id] = r
		m.ids = append(m.ids, r.id)
		p.touched[r.id] = true
		p.stats["reserve while lost: created"]++
	}
}

// checkLost is the check while buckets are lost: no lost bucket came back
// but through recovery, and each bucket left keeps its invariant.
func (p *bucketProp) checkLost(t *rapid.T) {
	// Settle the due holds of the buckets left, as the whole check does
	// through Item, so that the model's records keep Redis's settle times;
	// the lost buckets' holds are settled once rebuilt.
	expire := goredis.NewScript(string(luascripts.Expire()))
	for _, name := range p.names {
		if slices.Contains(p.lost, name) {
			continue
		}
		if err := expire.Run(p.ctx, p.s.rdb, p.s.ScriptKeys(name), 1_000_000).Err(); err != nil {
			t.Fatalf("expire %s: %v", name, err)
		}
	}
	for _, id := range p.m.ids {
		r := p.m.res[id]
		if r.status == reservation.StatusPending && !p.m.now.Before(r.expires) && !slices.Contains(p.lost, bucketOf(id)) {
			r.status, r.updated = reservation.StatusExpired, p.m.now
		}
	}
	for _, key := range p.mr.Keys() {
		for _, name := range p.lost {
			if strings.HasPrefix(key, p.s.key(name, "")) {
				t.Fatalf("lost bucket %s has key %s before recovery rebuilt it", name, key)
			}
		}
	}
	for name, f := range p.survivors() {
		n := func(k string) int64 { return propInt(t, f[k]) }
		if n("available") < 0 || n("reserved") < 0 || n("sold") < 0 || n("available")+n("reserved")+n("sold") != n("stock") {
			t.Fatalf("bucket %s: %v", name, f)
		}
	}
}

// sweepTransfers is property_test.go's sweep (due holds, counted), after
// which the transfers recorded 2 s or more ago have arrived.
func (p *bucketProp) sweepTransfers(t *rapid.T) {
	if len(p.transit) > 0 && rapid.Bool().Draw(t, "toStale") {
		// Onto the first stuck transfer's staleness, or 1 ms before it.
		at := p.transit[0].at.Add(2 * time.Second)
		if rapid.Bool().Draw(t, "justBefore") {
			at = at.Add(-time.Millisecond)
		}
		p.setNow(t, at)
	}
	p.sweep(t)
	var left []stuckUnits
	for _, x := range p.transit {
		if p.m.now.Sub(x.at) < 2*time.Second {
			left = append(left, x)
		}
	}
	if len(left) < len(p.transit) {
		p.stats["sweep: delivered stuck transfers"]++
	}
	p.transit = left
}

// checkBuckets checks the invariants on the stored buckets, reads the item
// (which settles every due hold) and compares it, the records, the users'
// units and Counters with the model; then the reservations the step
// answered for (all of them after the last step).
func (p *bucketProp) checkBuckets(t *rapid.T, all bool) {
	if len(p.lost) > 0 {
		p.checkLost(t)
		if !all {
			return
		}
		p.restore(t) // the run ends with the item whole
	}
	m, it := p.m, p.it
	limit := int64(it.spec.PerUserLimit)
	// Before anything settles: the invariants, with due holds still counted.
	sum := readBuckets(t, p.s, it.sku, len(p.names))
	if sum.total != it.spec.Stock || sum.transit != p.inTransit() {
		t.Fatalf("buckets %+v: want total %d, %d in transit", sum, it.spec.Stock, p.inTransit())
	}
	if sum.reserved+sum.sold > sum.total {
		t.Fatalf("oversold: %+v", sum)
	}
	for user, units := range heldByUser(t, p.s, p.names) {
		if units > limit {
			t.Fatalf("user %s holds %d units, limit %d", user, units, limit)
		}
	}

	// Without due holds the stored state is the model's as it is. With
	// them, which bucket settled which hold depends on the donors a pull
	// happened to ask: Item settles them all first (and is read after the
	// last step and now and then anyway, to check the aggregate).
	due := false
	for _, r := range m.res {
		due = due || (r.status == reservation.StatusPending && !m.now.Before(r.expires))
	}
	if due || all || rapid.IntRange(0, 3).Draw(t, "readItem") == 0 {
		got, err := p.svc.Item(p.ctx, it.sku)
		want := m.expectedItem(it)
		m.settle(it.sku)
		if err != nil || !propSameItem(got, want) || got.Buckets != len(p.names) {
			t.Fatalf("Item = %+v, %v\nwant %+v over %d buckets", got, err, want, len(p.names))
		}
	}
	reserved, sold, users := m.counters(it.sku, true)
	counters, _, err := p.store.Counters(p.ctx, 0)
	wantCounters := []reservation.Item{{SKU: it.sku, Stock: it.spec.Stock,
		Available: it.spec.Stock - reserved - sold, Reserved: reserved, Sold: sold}}
	if err != nil || !slices.Equal(counters, wantCounters) {
		t.Fatalf("Counters = %+v, %v; want %+v", counters, err, wantCounters)
	}

	// The stored records, holds and users of each bucket are the model's.
	maps.DeleteFunc(users, func(_ string, n int64) bool { return n == 0 })
	if got := heldByUser(t, p.s, p.names); !maps.Equal(got, users) {
		t.Fatalf("users' units %v, model %v", got, users)
	}
	wantRecs := map[string]map[string]string{}
	wantHolds := map[string]map[string]float64{}
	for _, name := range p.names {
		wantRecs[name], wantHolds[name] = map[string]string{}, map[string]float64{}
	}
	for _, id := range m.ids {
		r := m.res[id]
		b := bucketOf(id)
		wantRecs[b][id] = fmt.Sprintf("%s|%d|%d|%d|%d|%s", r.status, r.qty,
			r.created.UnixMilli(), r.expires.UnixMilli(), r.updated.UnixMilli(), r.user)
		if r.status == reservation.StatusPending {
			wantHolds[b][id] = float64(r.expires.UnixMilli())
		}
	}
	for _, name := range p.names {
		gotRecs := map[string]string{}
		for _, f := range propHashFields(p.mr, p.s.key(name, "res")) {
			gotRecs[f] = p.mr.HGet(p.s.key(name, "res"), f)
		}
		if !maps.Equal(gotRecs, wantRecs[name]) {
			t.Fatalf("bucket %s records %v\nwant %v", name, gotRecs, wantRecs[name])
		}
		gotHolds, err := p.mr.SortedSet(p.s.key(name, "holds"))
		if err != nil {
			gotHolds = map[string]float64{}
		}
		if !maps.Equal(gotHolds, wantHolds[name]) {
			t.Fatalf("bucket %s holds %v, want %v", name, gotHolds, wantHolds[name])
		}
		var reserved, sold int64
		for id := range wantRecs[name] {
			switch r := m.res[id]; r.status {
			case reservation.StatusPending:
				reserved += int64(r.qty)
			case reservation.StatusConfirmed:
				sold += int64(r.qty)
			}
		}
		f := func(k string) int64 { return propInt(t, p.mr.HGet(p.s.key(name, "item"), k)) }
		if f("reserved") != reserved || f("sold") != sold {
			t.Fatalf("bucket %s counts reserved %d sold %d, its records %d and %d", name, f("reserved"), f("sold"), reserved, sold)
		}
	}

	read := p.touched
	p.touched, p.touchedItems, p.touchedAll = map[string]bool{}, map[string]bool{}, false
	for _, id := range m.ids {
		if all || read[id] {
			got, err := p.svc.Reservation(p.ctx, id)
			if want := m.view(m.res[id]); err != nil || !propSameRes(got, want) {
				t.Fatalf("Reservation(%s) = %+v, %v\nwant %+v", id, got, err, want)
			}
		}
	}
}
