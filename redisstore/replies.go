package redisstore

import (
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// Reply layouts: where each script puts its values after the code (see each
// script's header comment). Positions live here and nowhere else; callers
// read the named fields of the decoded structs, and TestReplyLayouts pins
// every layout against what the scripts return.

// lib.lua's item_reply: {code, stock, available, reserved, sold,
// per_user_limit, hold_ms, starts_ms, ends_ms, name, created_ms, updated_ms,
// now_ms, buckets, total}.
const (
	itemStock = iota + 1 // this bucket's share
	itemAvailable
	itemReserved
	itemSold
	itemLimit
	itemHold
	itemStarts
	itemEnds
	itemName
	itemCreated
	itemUpdated
	itemNow
	itemBuckets
	itemTotal
	itemLen
)

// expire.lua: item_reply, then these.
const (
	expireExpired = itemLen + iota
	expireMoreDue
	expireTransfersOut
	expireRecount
	expireDropped
	expireNext
	expireOutbox
	expireLen
)

// ratelimit.lua: {code, retry_us, then per budget remaining, reset_us, leased}.
const (
	rateRetry = iota + 1
	rateFirst // budget i's remaining is at rateFirst + rateEach*i, its reset and lease after it; also the length with no budget
)

const rateEach = 3

// lib.lua's reply (a reservation): {code, id, status, quantity, user,
// created_ms, expires_ms, updated_ms}.
const (
	resID = iota + 1
	resStatus
	resQuantity
	resUser
	resCreated
	resExpires
	resUpdated
	resLen
)

// reserve.lua's "created": {code, created_ms, expires_ms}. The hold's id,
// user and quantity are the request's, so the reply leaves them out: a
// granted hold, the hot path, costs Redis and the decoder three values
// instead of eight.
const (
	createdAt = iota + 1
	createdExpires
	createdLen
)

// item reads the item layout of lib.lua's item_reply. Stock is the item's
// total; the counters are the bucket's own (the whole item's when it has one).
func (r scriptReply) item(sku string) (reservation.Item, error) {
	if len(r) < itemLen {
		return reservation.Item{}, r.unexpected("item")
	}
	return reservation.Item{
		SKU:          sku,
		Stock:        r.int(itemTotal),
		Buckets:      int(r.int(itemBuckets)),
		Available:    r.int(itemAvailable),
		Reserved:     r.int(itemReserved),
		Sold:         r.int(itemSold),
		PerUserLimit: int(r.int(itemLimit)),
		Hold:         time.Duration(r.int(itemHold)) * time.Millisecond,
		StartsAt:     r.millis(itemStarts),
		EndsAt:       r.millis(itemEnds),
		Name:         r.str(itemName),
		CreatedAt:    r.millis(itemCreated),
		UpdatedAt:    r.millis(itemUpdated),
	}, nil
}

// reservation reads the layout of lib.lua's reply.
func (r scriptReply) reservation(sku string) (reservation.Reservation, error) {
	if len(r) < resLen {
		return reservation.Reservation{}, r.unexpected("reservation")
	}
	return reservation.Reservation{
		ID:        r.str(resID),
		SKU:       sku,
		Status:    reservation.Status(r.str(resStatus)),
		Quantity:  int(r.int(resQuantity)),
		UserID:    r.str(resUser),
		CreatedAt: r.millis(resCreated),
		ExpiresAt: r.millis(resExpires),
		UpdatedAt: r.millis(resUpdated),
	}, nil
}

// created reads reserve.lua's "created": the new pending hold id of user's
// quantity units.
func (r scriptReply) created(id, sku, user string, quantity int) (reservation.Reservation, error) {
	if len(r) < createdLen {
		return reservation.Reservation{}, r.unexpected("created")
	}
	at := r.millis(createdAt)
	return reservation.Reservation{
		ID:        id,
		SKU:       sku,
		Status:    reservation.StatusPending,
		Quantity:  quantity,
		UserID:    user,
		CreatedAt: at,
		ExpiresAt: r.millis(createdExpires),
		UpdatedAt: at,
	}, nil
}

// expireReply is expire.lua's "ok": the bucket after settling.
type expireReply struct {
	item         reservation.Item // the bucket's counters, the item's total
	share        int64            // this bucket's stock
	nowMS        int64            // Redis's clock when the script ran
	expired      int64            // holds settled by this call
	moreDue      bool             // due holds remain beyond the call's limit
	transfersOut int64            // transfers out of this bucket not known to have arrived
	recount      bool             // rebuilt, and the count of its item's units is owed
	dropped      int64            // final reservations past the retention removed by this call
	nextMS       int64            // when the bucket next needs expire.lua (Redis time), -1 never
	outbox       int64            // changes not yet synced
}

func (r scriptReply) expire(sku string) (expireReply, error) {
	it, err := r.item(sku)
	if err != nil || len(r) < expireLen {
		return expireReply{}, r.unexpected("expire")
	}
	return expireReply{
		item:         it,
		share:        r.int(itemStock),
		nowMS:        r.int(itemNow),
		expired:      r.int(expireExpired),
		moreDue:      r.int(expireMoreDue) == 1,
		transfersOut: r.int(expireTransfersOut),
		recount:      r.int(expireRecount) == 1,
		dropped:      r.int(expireDropped),
		nextMS:       r.int(expireNext),
		outbox:       r.int(expireOutbox),
	}, nil
}

// count is the single number of a {code, n} reply: reserve's and take's
// "layout" and seed's and bucket's "buckets_immutable" (a bucket count),
// take's "taken" (units).
func (r scriptReply) count() int64 { return r.int(1) }

// soldOutReply is reserve.lua's "sold_out".
type soldOutReply struct {
	available int64 // in the buyer's bucket
	nextDueIn int64 // ms until the next pending hold falls due, -1 when none
	recount   bool  // the bucket awaits the count of its item's units
}

func (r scriptReply) soldOut() soldOutReply {
	return soldOutReply{available: r.int(1), nextDueIn: r.int(2), recount: r.int(3) == 1}
}

// limitReply is reserve.lua's "limit_exceeded".
type limitReply struct{ held, limit int64 }

func (r scriptReply) limitExceeded() limitReply { return limitReply{held: r.int(1), limit: r.int(2)} }

// belowCommittedReply is seed.lua's "stock_below_committed": the head's
// counts and the item's bucket count.
type belowCommittedReply struct{ reserved, sold, buckets int64 }

func (r scriptReply) belowCommitted() belowCommittedReply {
	return belowCommittedReply{reserved: r.int(1), sold: r.int(2), buckets: r.int(3)}
}

// emptyReply is take.lua's "empty".
type emptyReply struct {
	nextDueIn int64 // as in soldOutReply
	recount   bool  // the giving bucket awaits the count of its item's units
}

func (r scriptReply) empty() emptyReply {
	return emptyReply{nextDueIn: r.int(1), recount: r.int(2) == 1}
}

// freezeReply is freeze.lua's "ok": what an exact count needs of a bucket.
type freezeReply struct {
	stock, transfersOut, frozenFor, total int64
}

func (r scriptReply) frozen() freezeReply {
	return freezeReply{stock: r.int(1), transfersOut: r.int(2), frozenFor: r.int(3), total: r.int(4)}
}

// restoredRecords is restore.lua's "ok" for a "records" call.
type restoredRecords struct {
	written, reserved, sold int64
}

func (r scriptReply) restoredRecords() restoredRecords {
	return restoredRecords{written: r.int(1), reserved: r.int(2), sold: r.int(3)}
}

// err is the refusal a buyer gets: sold out, and for how long that may be
// remembered.
func (so soldOutReply) err() error {
	next := time.Duration(-1)
	if so.nextDueIn >= 0 {
		next = time.Duration(so.nextDueIn) * time.Millisecond
	}
	return &reservation.SoldOutError{Available: so.available, NextExpiry: next}
}
