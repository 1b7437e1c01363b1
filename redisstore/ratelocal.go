package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// LocalLimiter is the store's rate limiter as an instance runs it. Store.Take
// asks Redis on every request, a script and a round trip before each hold;
// with both limits on, that cost the success path more than the 15 % issue
// 12 allows. LocalLimiter asks only when an answer could be no:
//
//   - A budget this instance last knew to be full admits a request without
//     asking. A full budget allows at least one request, so the only error is
//     what other instances spent meanwhile: one request per instance. The
//     request is charged to the shared budget later, in one call with other
//     such charges, as of when it came and whatever the budget holds by then
//     (it was served). Until the charge has been made, the budget's next
//     request here asks Redis, carrying the charge along. (The charge is
//     written even when the budget is full again by then: another
//     instance's charge for the same moment may still come, and must add
//     to it. Not writing it let a client spread over the instances get one
//     request per interval from each, past the budget.)
//   - A budget this instance asks about again and again (an address many
//     buyers share) leases requests ahead: Redis takes them from the budget at
//     once and this instance hands them out. Redis grants a lease only from a
//     budget that keeps three quarters of its room after it, so a lease never
//     admits what the budget did not have; its only error is towards
//     refusing, while requests leased here wait to be used (at most
//     leaseLife, then they are given back).
//
// Refusals are still Redis's alone: a request is refused only on Redis's
// answer (or the server's deny cache of one).
type LocalLimiter struct {
	store *Store
	now   func() time.Time // monotonic: the only times compared are this instance's own

	mu       sync.Mutex
	budgets  map[budgetID]*localBudget
	work     map[*localBudget]struct{} // holding leased requests
	due      chargeQueue               // budgets owing a charge, in the order they fall due
	running  bool
	manual   bool // tests: settle only when told (Settle, Flush), never in the background
	sweptAt  time.Time
	settling sync.Mutex // one settle at a time, so Flush waits for one under way
}

// Limits of LocalLimiter.
const (
	// chargeEvery is how long a charge waits for others to share its call,
	// and how often the settler runs.
	chargeEvery = 5 * time.Millisecond
	// leaseLife is how long leased requests wait to be used before they go
	// back to the budget.
	leaseLife = 50 * time.Millisecond
	// maxLease bounds the requests one call leases ahead. A lease takes at
	// most a quarter of a budget's room, so this matters only for a budget
	// generous enough to be shared by a crowd (an address behind which many
	// buyers sit), and there a lease of 64 lasted less than a round trip at
	// 100k requests a second: every request past it asked Redis.
	maxLease = 1024
	// maxLocalBudgets bounds the budgets an instance keeps: past it, new
	// budgets are simply asked about every time.
	maxLocalBudgets = 100_000
)

type budgetID struct{ policy, subject string }

// localBudget is what this instance knows of one shared budget and what it
// owes it.
type localBudget struct {
	key       reservation.RateKey
	fullAt    time.Time // when the budget is full again, as last heard, or as this instance's own admissions make it
	remaining int       // requests it allowed at once, as last heard
	pending   int       // admitted without asking, not yet charged
	pendingAt time.Time
	charging  int // charges in a call under way
	credit    int // leased: taken from the budget, not yet used here
	creditEnd time.Time
	leasing   chan struct{} // a call under way asks for a lease: closed when it is back
	askedAt   time.Time     // when this instance last asked Redis
	usedAt    time.Time     // when a leased request was last handed out here
	lease     int           // what it asks for next: doubles while the budget stays busy
	op        int           // 1 + its op's index in the settle being built; 0 outside one
}

// idle reports whether b owes nothing, holds nothing and is full as far as
// this instance knows: then forgetting it loses nothing.
func (b *localBudget) idle(now time.Time) bool {
	return b.pending == 0 && b.charging == 0 && b.credit == 0 && b.leasing == nil && !now.Before(b.fullAt)
}

// LocalLimiter returns the store's rate limiter for this instance. Flush
// sends what it owes the shared budgets; call it before the store closes.
func (s *Store) LocalLimiter() *LocalLimiter {
	return &LocalLimiter{store: s, now: time.Now, budgets: map[budgetID]*localBudget{},
		work: map[*localBudget]struct{}{}}
}

// chargeQueue holds the budgets owing a charge, in the order they fall due.
type chargeQueue struct {
	entries []dueCharge
	head    int
}

type dueCharge struct {
	b  *localBudget
	at time.Time
}

func (q *chargeQueue) push(b *localBudget, at time.Time) {
	q.entries = append(q.entries, dueCharge{b, at})
}

func (q *chargeQueue) empty() bool { return q.head == len(q.entries) }

// pop returns the first entry due by now (any with all), or nil.
func (q *chargeQueue) pop(now time.Time, all bool) *localBudget {
	if q.empty() || (!all && q.entries[q.head].at.After(now)) {
		return nil
	}
	b := q.entries[q.head].b
	q.entries[q.head] = dueCharge{}
	q.head++
	if q.head == len(q.entries) {
		q.entries, q.head = q.entries[:0], 0
	}
	return b
}

var _ reservation.RateLimiter = (*LocalLimiter)(nil)

// Take spends one request from every budget of keys, all or nothing, as
// Store.Take does, asking Redis only when this instance cannot answer yes on
// its own.
func (l *LocalLimiter) Take(ctx context.Context, keys []reservation.RateKey) ([]reservation.RateState, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	waited, waitedCharge := false, false
	for {
		now := l.now()
		l.mu.Lock()
		if states, ok := l.admit(keys, now); ok {
			l.mu.Unlock()
			return states, nil
		}
		// A charge of one of these budgets is on its way to Redis: asking
		// before it lands would let Redis answer without it. Wait once for
		// the settle under way (it holds l.settling for its whole round).
		if !waitedCharge && l.chargeUnderWay(keys) {
			l.mu.Unlock()
			waitedCharge = true
			l.settling.Lock()
			//lint:ignore SA2001 empty on purpose: it only waits for the round under way
			l.settling.Unlock()
			continue
		}
		// A lease asked for by a request before this one is on its way:
		// its requests are this one's to use. Once: then ask.
		if ch := l.leaseUnderWay(keys); ch != nil && !waited {
			l.mu.Unlock()
			waited = true
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("redisstore: rate limit: %w", ctx.Err())
			}
		}
		return l.ask(ctx, keys, now)
	}
}

// chargeUnderWay reports whether a budget of keys has a charge in a call
// under way. l.mu is held.
func (l *LocalLimiter) chargeUnderWay(keys []reservation.RateKey) bool {
	for _, k := range keys {
		if b := l.budgets[budgetID{k.Policy, k.Subject}]; b != nil && b.charging > 0 {
			return true
		}
	}
	return false
}

// leaseUnderWay is closed when the lease a budget of keys waits for has
// come; nil when none does. l.mu is held.
func (l *LocalLimiter) leaseUnderWay(keys []reservation.RateKey) chan struct{} {
	for _, k := range keys {
		if b := l.budgets[budgetID{k.Policy, k.Subject}]; b != nil && b.leasing != nil {
			return b.leasing
		}
	}
	return nil
}

// ask takes the request from Redis, carrying what this instance owes the
// budgets and asking busy ones for a lease. l.mu is held; ask releases it.
func (l *LocalLimiter) ask(ctx context.Context, keys []reservation.RateKey, now time.Time) ([]reservation.RateState, error) {
	bs := make([]*localBudget, len(keys))
	ops := make([]budgetOp, len(keys))
	for i, k := range keys {
		ops[i].key = k
		b := l.budget(k, now)
		if b == nil {
			continue
		}
		bs[i] = b
		// What is owed travels with the request, so a refusal is made
		// knowing it.
		ops[i].charge, ops[i].age = b.pending, now.Sub(b.pendingAt)
		b.charging += b.pending
		b.pending = 0
		// A budget asked about or served from a lease within a lease's
		// life is busy here. (Served counts: a lease that lasted longer
		// than its life went back unused in part, and the next ask must
		// not start again from one. It did, and a steady crowd behind one
		// address then asked a dozen times every lease life to grow back.)
		switch {
		case now.Sub(b.askedAt) >= leaseLife && now.Sub(b.usedAt) >= leaseLife:
			b.lease = 0
		case b.leasing == nil:
			b.lease = min(2*b.lease+1, maxLease)
			ops[i].lease = b.lease
			b.leasing = make(chan struct{})
		}
		b.askedAt = now
	}
	l.mu.Unlock()

	res, err := l.store.spend(ctx, ops)

	l.mu.Lock()
	defer l.mu.Unlock()
	now = l.now()
	for i, b := range bs {
		if b == nil {
			continue
		}
		b.charging -= ops[i].charge
		if ops[i].lease > 0 {
			close(b.leasing)
			b.leasing = nil
		}
		if err != nil {
			// Not known to be charged: owed still. Charged twice would be
			// the worse error for a buyer, and a Redis that failed the
			// call most likely ran none of it.
			l.owe(b, ops[i].charge, now.Add(-ops[i].age))
			continue
		}
		st := res.budgets[i]
		b.fullAt, b.remaining = now.Add(st.reset), st.remaining
		if st.leased > 0 {
			b.credit += st.leased
			b.creditEnd = now.Add(leaseLife)
			l.work[b] = struct{}{}
			l.start()
		}
	}
	if err != nil {
		return nil, err
	}
	return res.states(keys)
}

// admit answers yes without Redis when every budget of keys can: from
// leased requests, or because this instance last knew it full and owes it
// nothing. l.mu is held.
func (l *LocalLimiter) admit(keys []reservation.RateKey, now time.Time) ([]reservation.RateState, bool) {
	var found [2]*localBudget
	bs := found[:0]
	for _, k := range keys {
		b := l.budgets[budgetID{k.Policy, k.Subject}]
		switch {
		case b != nil && b.key.Limit != k.Limit:
			return nil, false // the limit changed: ask
		case b != nil && b.credit > 0 && now.Before(b.creditEnd):
		case b != nil && (b.pending > 0 || b.charging > 0 || now.Before(b.fullAt)):
			return nil, false
		case b == nil && len(l.budgets) >= maxLocalBudgets:
			return nil, false
		}
		bs = append(bs, b)
	}
	states := make([]reservation.RateState, len(keys))
	for i, k := range keys {
		b := bs[i]
		if b == nil {
			b = l.budget(k, now) // room was checked above
		}
		iv := k.Limit.Interval()
		if b.credit > 0 && now.Before(b.creditEnd) {
			b.credit--
			b.usedAt = now
			states[i] = reservation.RateState{Policy: k.Policy, Limit: k.Limit,
				Remaining: b.remaining + b.credit, Reset: max(b.fullAt.Sub(now), iv)}
			continue
		}
		// Full as far as this instance knows: this request leaves it one short.
		l.owe(b, 1, now)
		b.fullAt = now.Add(iv)
		states[i] = reservation.RateState{Policy: k.Policy, Limit: k.Limit, Remaining: k.Limit.Burst - 1, Reset: iv}
	}
	return states, true
}

// owe records n requests admitted at without asking. l.mu is held.
func (l *LocalLimiter) owe(b *localBudget, n int, at time.Time) {
	if n <= 0 {
		return
	}
	if b.pending == 0 {
		l.due.push(b, l.now().Add(chargeEvery))
		b.pendingAt = at
	} else {
		b.pendingAt = minTime(b.pendingAt, at)
	}
	b.pending += n
	l.start()
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// budget is k's local budget, made if there is room; nil when there is
// none. l.mu is held.
func (l *LocalLimiter) budget(k reservation.RateKey, now time.Time) *localBudget {
	id := budgetID{k.Policy, k.Subject}
	b := l.budgets[id]
	if b != nil && b.key.Limit != k.Limit && b.idle(now) {
		b = nil // the limit changed and nothing is owed: start again
	}
	if b == nil {
		if len(l.budgets) >= maxLocalBudgets {
			return nil
		}
		b = &localBudget{key: k}
		l.budgets[id] = b
	}
	return b
}

// start runs the settler unless it runs; l.mu is held.
func (l *LocalLimiter) start() {
	if l.running || l.manual {
		return
	}
	l.running = true
	go l.loop()
}

// loop settles every chargeEvery and ends once nothing is owed or held.
func (l *LocalLimiter) loop() {
	for {
		time.Sleep(chargeEvery)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.settle(ctx, false)
		cancel()
		l.mu.Lock()
		if len(l.work) == 0 && len(l.budgets) == 0 && l.due.empty() {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
	}
}

// Flush settles everything owed and gives back every lease now: at
// shutdown, so no charge is lost with the process.
func (l *LocalLimiter) Flush(ctx context.Context) {
	l.settle(ctx, true)
}

// settle sends the charges owed and the leases whose life is over (all of
// them with all), and forgets budgets that hold nothing.
func (l *LocalLimiter) settle(ctx context.Context, all bool) {
	l.settling.Lock()
	defer l.settling.Unlock()
	now := l.now()
	l.mu.Lock()
	var bs []*localBudget
	var ops []budgetOp
	// A budget gets one op per call (b.op), though it may be owed a charge
	// and hold leased requests both.
	add := func(b *localBudget, refund int) {
		if b.op == 0 && b.pending == 0 && refund == 0 {
			return // its charge was carried meanwhile
		}
		if b.op == 0 {
			bs, ops = append(bs, b), append(ops, budgetOp{key: b.key})
			b.op = len(ops)
		}
		i := b.op - 1
		ops[i].refund += refund
		if b.pending > 0 {
			ops[i].charge, ops[i].age = b.pending, now.Sub(b.pendingAt)
			b.charging += b.pending
			b.pending = 0
		}
	}
	// A budget whose charge a request carried meanwhile owes nothing.
	for b := l.due.pop(now, all); b != nil; b = l.due.pop(now, all) {
		add(b, 0)
	}
	for b := range l.work {
		if b.credit > 0 && (all || !now.Before(b.creditEnd)) {
			refund := b.credit
			b.credit = 0
			add(b, refund)
		}
		if b.credit == 0 {
			delete(l.work, b)
		}
	}
	for _, b := range bs {
		b.op = 0
	}
	// Budgets the instance is done with go, now and then: a flood of
	// one-off buyers must not grow the map for long.
	if now.Sub(l.sweptAt) >= 100*time.Millisecond {
		l.sweptAt = now
		for id, b := range l.budgets {
			if b.idle(now) {
				delete(l.budgets, id)
			}
		}
	}
	l.mu.Unlock()

	var res []budgetState
	var err error
	if len(ops) > 0 {
		res, err = l.store.charge(ctx, ops)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	now = l.now()
	for i, b := range bs {
		b.charging -= ops[i].charge
		if err != nil {
			// Owed still: the next call for it, or the next settle, carries
			// it. Refunds are dropped: that errs towards refusing.
			l.owe(b, ops[i].charge, now.Add(-ops[i].age))
			continue
		}
		st := res[i]
		if b.pending == 0 && b.charging == 0 {
			b.fullAt, b.remaining = now.Add(st.reset), st.remaining
		}
	}
}
