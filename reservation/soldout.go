package reservation

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SoldOutError is ErrSoldOut with what the store saw, so an instance can
// remember the refusal for a moment (see WithSoldOutMemory).
type SoldOutError struct {
	Available int64
	// NextExpiry is how long until the item's next pending hold falls due
	// and may hand units back, by the store's clock; negative when no hold
	// is pending.
	NextExpiry time.Duration
}

// Error is the detail every refusal of a sold-out crowd shows, so it is
// built without fmt (Sprintf was 1.5 % of the service's CPU on that path),
// and the common one, nothing left at all, is not built at all.
func (e *SoldOutError) Error() string {
	if e.Available == 0 {
		return soldOutNone
	}
	return ErrSoldOut.Error() + ": " + strconv.FormatInt(e.Available, 10) + " units available"
}

// soldOutNone is SoldOutError.Error with no unit available; a test holds it
// to the general form.
const soldOutNone = "sold out: 0 units available"

// Is makes errors.Is(err, ErrSoldOut) hold.
func (e *SoldOutError) Is(target error) bool { return target == ErrSoldOut }

// MaxSoldOutMemory bounds WithSoldOutMemory: units handed back by a cancel
// or a restock on another instance are sellable everywhere within it.
const MaxSoldOutMemory = 100 * time.Millisecond

// soldOutMemory lets an instance answer a flash crowd's refusals from memory:
// once the store says an item is sold out, the same answer stands for a few
// milliseconds. Without it every refusal runs a script, and a crowd of
// buyers for units already gone costs as much as one that buys.
//
// A remembered refusal ends at the first of: the memory's lifetime, the
// moment the item's next hold falls due (its units may come back), or a
// cancel or restock through this instance. So units that come back are
// sellable again within the lifetime from any instance, and at once through
// this one. Only items the store reported on are remembered, so the map is
// bounded by the catalogue.
type soldOutMemory struct {
	ttl   time.Duration
	now   func() time.Duration // monotonic, since the memory was made
	marks sync.Map             // sku -> *soldOutMark
	// gen grows with every forget: a refusal read from the store before a
	// cancel must not be remembered after it.
	gen atomic.Uint64
}

type soldOutMark struct {
	until     time.Duration // on the now clock
	available int64
}

func newSoldOutMemory(ttl time.Duration) *soldOutMemory {
	start := time.Now()
	return &soldOutMemory{ttl: ttl, now: func() time.Duration { return time.Since(start) }}
}

// refuses reports whether a request for qty units of sku can be refused
// from memory, and with how many units available.
func (m *soldOutMemory) refuses(sku string, qty int) (int64, bool) {
	v, ok := m.marks.Load(sku)
	if !ok {
		return 0, false
	}
	mark := v.(*soldOutMark)
	if int64(qty) <= mark.available || m.now() >= mark.until {
		return 0, false
	}
	return mark.available, true
}

// remember records the store's refusal, unless a forget happened since gen
// was read.
func (m *soldOutMemory) remember(sku string, gen uint64, e *SoldOutError) {
	life := m.ttl
	if e.NextExpiry >= 0 {
		life = min(life, e.NextExpiry)
	}
	if life <= 0 || m.gen.Load() != gen {
		return
	}
	m.marks.Store(sku, &soldOutMark{until: m.now() + life, available: e.Available})
}

// forget drops what is remembered of sku: units came back through here.
func (m *soldOutMemory) forget(sku string) {
	m.gen.Add(1)
	m.marks.Delete(sku)
}
