package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	mathrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/flashsale/flashsale/reservation"
)

// An item created with buckets > 1 keeps its stock in that many buckets,
// each a full set of the item's keys under its own hash tag, so that on a
// cluster its buyers spread over several shards. The first bucket (the head)
// is the SKU itself and holds the offer and the item's total; the others
// are named "SKU~N".
//
// Why the invariants hold across slots:
//   - Never oversold: every bucket keeps available + reserved + sold == stock
//     inside its own scripts, and units only leave a bucket through take.lua,
//     which records them until give.lua has added them elsewhere exactly once
//     (its receipt makes a repeat count nothing). So the buckets' stocks plus
//     the units in transit always add up to the head's total.
//   - The per-user limit: a user's holds on an item all live in one bucket,
//     chosen from the user id and the bucket count (home), which is fixed for
//     the item's life. The limit is checked and the hold taken in that one
//     bucket's script, exactly as for an item of one bucket.
//   - No false sold_out: a bucket that cannot serve a buyer pulls units from
//     the others (take + give; half of what a donor has while it has
//     plenty, just the quantity near the end) and asks its own bucket once
//     more before the buyer is refused, so a refusal means every bucket was
//     asked and none had the units at that moment. The window: units in
//     transit (a transfer takes three round trips; one whose mover died is
//     finished by the sweeper after transferStale plus its interval), a
//     count after a lost bucket (freezeFor, see reconcile.go), and the
//     sold-out memory that instances already keep (at most MaxSoldOutMemory).

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// transferStale: a transfer recorded this long ago and not finished has lost
// its mover; the sweeper finishes it.
const transferStale = 2000 // ms

// layout is an item's buckets: names[0] is the head (the SKU).
type layout struct {
	names []string
}

// n is the bucket count. A nil layout is an item of one bucket: the
// layouts cache returns nil for those, so the hot path of an item never
// split allocates no layout per request.
func (l *layout) n() int {
	if l == nil {
		return 1
	}
	return len(l.names)
}

// home is the bucket of sku (laid out as l) that keeps user's holds.
func (l *layout) home(sku, user string) string {
	if l.n() == 1 {
		return sku
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return l.names[h.Sum32()%uint32(len(l.names))]
}

// newLayout names the n buckets of sku. Tags are chosen so that the buckets'
// slots are spread evenly around the slot ring from the head's: a cluster
// assigns slots to masters in contiguous ranges, so n buckets over n masters
// land on n different masters instead of colliding by chance.
func newLayout(sku string, n int) *layout {
	l := &layout{names: make([]string, n)}
	l.names[0] = sku
	head := slot(sku)
	width := clusterSlots / n
	for b := 1; b < n; b++ {
		lo := (head + b*clusterSlots/n) % clusterSlots
		for k := 1; ; k++ {
			name := sku + string(reservation.BucketSep) + strconv.Itoa(k)
			if (slot(name)-lo+clusterSlots)%clusterSlots < width || k >= 1_000_000 {
				l.names[b] = name
				break
			}
		}
	}
	return l
}

// slot is the cluster hash slot of a key whose hash tag is tag.
func slot(tag string) int { return int(crc16(tag)) % clusterSlots }

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// bucketSKU is the SKU of a bucket's name.
func bucketSKU(name string) string {
	if i := strings.IndexByte(name, reservation.BucketSep); i >= 0 {
		return name[:i]
	}
	return name
}

// idBucket is the bucket a reservation id lives in: the part before its
// random suffix (see bucketID).
func idBucket(id string) string { return id[:strings.LastIndexByte(id, '.')] }

// bucketID turns the id the service made ("SKU.<random>") into the id of a
// hold kept in bucket: the bucket's name replaces the SKU, so the id alone
// finds the hold. A retried call makes the same id again.
func bucketID(id, sku, bucket string) string {
	if bucket == sku {
		return id
	}
	return bucket + id[len(sku):]
}

// layouts caches the bucket layout of items with more than one bucket. The
// count never changes for an item, and a stale entry is caught anyway: every
// script that takes stock checks the count it was given (the "layout" reply).
type layouts struct {
	mu sync.RWMutex
	m  map[string]*layout
}

// of returns sku's layout, nil (one bucket) for an item never seen split.
func (ls *layouts) of(sku string) *layout {
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	return ls.m[sku]
}

func (ls *layouts) set(sku string, n int) *layout {
	n = min(max(n, 1), reservation.MaxBuckets)
	l := newLayout(sku, n)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if n == 1 {
		delete(ls.m, sku)
		return l
	}
	if ls.m == nil {
		ls.m = map[string]*layout{}
	}
	if old := ls.m[sku]; old != nil && old.n() == n {
		return old
	}
	ls.m[sku] = l
	return l
}

// pull is what one transfer, or a gather of several, brought.
type pull struct {
	moved   int64 // units that left the donors (and arrived, unless err)
	nextDue int64 // soonest time (ms) a pending hold of an empty donor falls due, -1 if none
	// unsure: a donor could not be asked (lost, frozen for a count, or
	// rebuilt and waiting for it), so "nothing found" is not final: units may
	// be on their way back to the item.
	unsure bool
}

// transfer moves up to want units (at least half of what from has, with
// half) from one bucket to another. A failure after the take leaves the
// transfer recorded in from; the sweeper finishes it.
func (s *Store) transfer(ctx context.Context, l *layout, from, to string, want int64, half bool) (pull, error) {
	id := randomToken()
	res := s.runSettled(ctx, s.take, []call{{keys: s.keys(from),
		args: []any{id, to, want, flag(half), settleLimit, l.n()}}})[0]
	p := pull{nextDue: -1}
	rep, err := reply(res.val, res.err)
	if err != nil {
		return p, fmt.Errorf("redisstore: take from %s: %w", from, err)
	}
	switch rep.code() {
	case "taken":
		p.moved = rep.count()
	case "finished":
		// A retry of this take (go-redis resends after a read timeout) whose
		// first run was taken and then delivered by the sweeper.
		return p, nil
	case "empty":
		e := rep.empty()
		p.nextDue, p.unsure = e.nextDueIn, e.recount
		return p, nil
	case "item_not_found", "frozen":
		// A bucket Redis lost, or one frozen for a count, has nothing to
		// give now, but its units may come back to the item.
		p.unsure = true
		return p, nil
	case "layout":
		return p, nil // a stale count: the buyer's own bucket says so next
	default:
		return p, rep.unexpected("take")
	}
	if err := s.deliver(ctx, from, id, to, p.moved); errors.Is(err, errRecountOwed) {
		// The units stay in transit until the count voids the transfer.
		return pull{nextDue: -1, unsure: true}, nil
	} else if err != nil {
		return p, err
	}
	return p, nil
}

// randomToken names a transfer or a count: 96 random bits, so two never meet.
func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// errRecountOwed: the receiving bucket was rebuilt and waits for the count of
// its item's units; the transfer stays recorded, for the count to void.
var errRecountOwed = errors.New("the bucket awaits a count")

// deliver adds a taken transfer to its bucket and then forgets it in the
// giving one. Both steps may run twice (the sweeper racing a slow mover):
// give.lua counts a transfer once.
func (s *Store) deliver(ctx context.Context, from, id, to string, units int64) error {
	rep, err := reply(s.run(ctx, call{sc: s.give, keys: s.keys(to), args: []any{id, units}}).Result())
	if err != nil {
		return fmt.Errorf("redisstore: give to %s: %w", to, err)
	}
	switch rep.code() {
	case "given", "duplicate":
	case "recount":
		return errRecountOwed
	default:
		return fmt.Errorf("redisstore: give to %s: %s", to, rep.code())
	}
	if err := s.client.HDel(ctx, s.key(from, "xout"), id).Err(); err != nil {
		return fmt.Errorf("redisstore: finish transfer %s: %w", id, translate(err))
	}
	return nil
}

// gather pulls units into bucket to from the others until it has received
// want or every other bucket was asked.
func (s *Store) gather(ctx context.Context, l *layout, to string, want int64, half bool) (pull, error) {
	all := pull{nextDue: -1}
	// Starting at a random bucket spreads concurrent pullers over the donors.
	start := mathrand.IntN(l.n())
	for i := range l.n() {
		from := l.names[(start+i)%l.n()]
		if from == to {
			continue
		}
		p, err := s.transfer(ctx, l, from, to, want-all.moved, half)
		all.moved += p.moved
		all.unsure = all.unsure || p.unsure
		if err != nil {
			return all, err
		}
		all.nextDue = minDue(all.nextDue, p.nextDue)
		if all.moved >= want {
			break
		}
	}
	return all, nil
}

// outTransfer is one record of a bucket's xout: units taken out by the
// transfer id, on their way to bucket to since at (ms, Redis time).
type outTransfer struct {
	id, to    string
	units, at int64
}

// transfersOut reads bucket's transfer records. One that take.lua did not
// write is skipped: it is never finished, so a count stays owed and says so.
func (s *Store) transfersOut(ctx context.Context, bucket string) ([]outTransfer, error) {
	recs, err := s.client.HGetAll(ctx, s.key(bucket, "xout")).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: transfers of %s: %w", bucket, translate(err))
	}
	out := make([]outTransfer, 0, len(recs))
	for id, rec := range recs {
		parts := strings.Split(rec, "|") // "to_bucket|units|created_ms"
		if len(parts) != 3 {
			continue
		}
		units, err1 := strconv.ParseInt(parts[1], 10, 64)
		at, err2 := strconv.ParseInt(parts[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, outTransfer{id: id, to: parts[0], units: units, at: at})
	}
	return out, nil
}

// finishTransfers delivers the transfers of bucket recorded at or before
// cutoff (ms, Redis time): the sweeper passes transferStale ago (their mover
// died between take and give).
func (s *Store) finishTransfers(ctx context.Context, bucket string, cutoff int64) error {
	xs, err := s.transfersOut(ctx, bucket)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if x.at > cutoff {
			continue
		}
		if err := s.deliver(ctx, bucket, x.id, x.to, x.units); err != nil && !errors.Is(err, errRecountOwed) {
			return err
		}
	}
	return nil
}

// spread gives each other bucket an even share of what the head has
// available, so buyers seldom need to pull units at all. It runs after every
// seed of an item with buckets; a failure leaves units at the head, where
// buyers' pulls find them.
func (s *Store) spread(ctx context.Context, l *layout, headAvailable int64) error {
	share := headAvailable / int64(l.n())
	if share <= 0 {
		return nil
	}
	for _, to := range l.names[1:] {
		if _, err := s.transfer(ctx, l, l.names[0], to, share, false); err != nil {
			return err
		}
	}
	return nil
}

// aggregate reads the other buckets of an item whose head reading is head:
// the counters become the item's (available is what is neither reserved nor
// sold, which counts units in transit between buckets as available).
func (s *Store) aggregate(ctx context.Context, l *layout, head reservation.Item) (reservation.Item, error) {
	calls := make([]call, 0, l.n()-1)
	for _, b := range l.names[1:] {
		calls = append(calls, call{keys: s.keys(b), args: []any{settleLimit}})
	}
	it := head
	for i, res := range s.runMany(ctx, s.expire, calls) {
		rep, err := reply(res.val, res.err)
		if err != nil {
			return reservation.Item{}, fmt.Errorf("redisstore: item %s: %w", l.names[i+1], err)
		}
		if rep.code() != "ok" {
			continue // a bucket Redis lost counts nothing; the audit reports the gap
		}
		b, err := rep.expire(l.names[i+1])
		if err != nil {
			return reservation.Item{}, err
		}
		it.Reserved += b.item.Reserved
		it.Sold += b.item.Sold
	}
	it.Available = it.Stock - it.Reserved - it.Sold
	return it, nil
}
