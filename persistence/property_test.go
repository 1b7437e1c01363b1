package persistence_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/proptest"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// history is a valid life of a few items and reservations, as the outbox
// would carry it: each item's revisions in increasing order, each
// reservation created pending and then at most one final status, the
// entities interleaved at random.
type history struct {
	skus    []string
	changes []reservation.Change
	want    map[string]reservation.Snapshot // what applying it must leave, by sku
}

var finalStatuses = []reservation.Status{reservation.StatusConfirmed, reservation.StatusCancelled, reservation.StatusExpired}

// drawHistory draws a history whose SKUs all start with ns, so histories of
// different iterations never share rows.
func drawHistory(t *rapid.T, ns string) history {
	h := history{want: map[string]reservation.Snapshot{}}
	var lives [][]reservation.Change // per entity, in the order they happened

	nItems := rapid.IntRange(1, 3).Draw(t, "items")
	for i := range nItems {
		sku := fmt.Sprintf("%s-%d", ns, i)
		h.skus = append(h.skus, sku)
		createdMS := rapid.Int64Range(0, 1_000_000).Draw(t, "item created")
		var life []reservation.Change
		var last reservation.ItemRecord
		revs := int64(rapid.IntRange(1, 4).Draw(t, "revisions"))
		for rev := int64(1); rev <= revs; rev++ {
			it := reservation.ItemRecord{
				ItemSpec: reservation.ItemSpec{
					SKU:          sku,
					Name:         rapid.StringMatching(`[A-Za-z0-9 ]{0,12}`).Draw(t, "name"),
					Stock:        rapid.Int64Range(0, 1000).Draw(t, "stock"),
					PerUserLimit: rapid.IntRange(1, 10).Draw(t, "limit"),
					Hold:         time.Duration(rapid.IntRange(1, 3600).Draw(t, "hold seconds")) * time.Second,
					Buckets:      1,
				},
				Rev: rev, CreatedAt: at(createdMS), UpdatedAt: at(createdMS + rev*1000),
			}
			if rapid.Bool().Draw(t, "has start") {
				it.StartsAt = at(rapid.Int64Range(0, 1_000_000).Draw(t, "starts"))
			}
			if rapid.Bool().Draw(t, "has end") {
				it.EndsAt = at(rapid.Int64Range(1_000_001, 2_000_000).Draw(t, "ends"))
			}
			life = append(life, reservation.Change{Item: &it})
			last = it
		}
		lives = append(lives, life)
		h.want[sku] = reservation.Snapshot{Item: last}
	}

	nRes := rapid.IntRange(0, 10).Draw(t, "reservations")
	for n := range nRes {
		sku := rapid.SampledFrom(h.skus).Draw(t, "sku")
		user := rapid.SampledFrom([]string{"ann", "bo", "cy:1", "d@e"}).Draw(t, "user")
		idem := ""
		if rapid.Bool().Draw(t, "idempotency key") {
			idem = idemField(user, fmt.Sprintf("key-%d", n))
		}
		ms := rapid.Int64Range(0, 1_000_000).Draw(t, "reserved at")
		p := created(sku, n, user, rapid.IntRange(1, 5).Draw(t, "quantity"), ms, idem)
		life, last := []reservation.Change{p}, p
		if rapid.Bool().Draw(t, "settled") {
			st := rapid.SampledFrom(finalStatuses).Draw(t, "final status")
			last = settled(p, st, ms+rapid.Int64Range(0, 120_000).Draw(t, "settled after"))
			life = append(life, last)
		}
		lives = append(lives, life)
		snap := h.want[sku]
		snap.Reservations = append(snap.Reservations, recorded(last, idem))
		h.want[sku] = snap
	}
	for sku, snap := range h.want {
		slices.SortFunc(snap.Reservations, func(a, b reservation.RecordedReservation) int { return strings.Compare(a.ID, b.ID) })
		if snap.Reservations == nil {
			snap.Reservations = []reservation.RecordedReservation{}
		}
		h.want[sku] = snap
	}

	// Interleave the lives, each kept in its own order.
	for {
		var open []int
		for i, life := range lives {
			if len(life) > 0 {
				open = append(open, i)
			}
		}
		if len(open) == 0 {
			break
		}
		i := open[rapid.IntRange(0, len(open)-1).Draw(t, "next entity")]
		h.changes = append(h.changes, lives[i][0])
		lives[i] = lives[i][1:]
	}
	return h
}

// drawDelivery draws how a syncer might hand the history to Apply: every
// change one to three times, in any order, cut into batches of any size.
func drawDelivery(t *rapid.T, changes []reservation.Change) [][]reservation.Change {
	var idx []int
	for i := range changes {
		for range rapid.IntRange(1, 3).Draw(t, "copies") {
			idx = append(idx, i)
		}
	}
	idx = rapid.Permutation(idx).Draw(t, "delivery order")
	var batches [][]reservation.Change
	for lo := 0; lo < len(idx); {
		hi := lo + rapid.IntRange(1, len(idx)-lo).Draw(t, "batch size")
		batch := make([]reservation.Change, 0, hi-lo)
		for _, i := range idx[lo:hi] {
			batch = append(batch, changes[i])
		}
		batches = append(batches, batch)
		lo = hi
	}
	return batches
}

// TestPropertyConvergence: however a history is duplicated, reordered and
// batched on the way, the record ends exactly as applying it once, change
// by change in order, leaves it, and as the life cycle says it must.
// Reproduce a failure with the -rapid.seed (or fail file) it prints.
func TestPropertyConvergence(t *testing.T) {
	checks := map[string]int{"sqlite": 100, "mysql": 30}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			got, ref := b.open(t), b.open(t)
			proptest.Checks(t, checks[b.name])
			ctx := testCtx(t)
			iteration := 0
			rapid.Check(t, func(t *rapid.T) {
				iteration++
				h := drawHistory(t, fmt.Sprintf("p%04d", iteration))
				for _, c := range h.changes {
					if err := ref.Apply(ctx, []reservation.Change{c}); err != nil {
						t.Fatalf("apply in order: %v", err)
					}
				}
				for i, batch := range drawDelivery(t, h.changes) {
					if err := got.Apply(ctx, batch); err != nil {
						t.Fatalf("apply batch %d: %v", i, err)
					}
				}
				for _, sku := range h.skus {
					want := h.want[sku]
					inOrder := readRecord(ctx, t, ref, sku)
					if !reflect.DeepEqual(inOrder.snap, want) {
						t.Fatalf("%s applied in order:\n got %+v\nwant %+v", sku, inOrder.snap, want)
					}
					delivered := readRecord(ctx, t, got, sku)
					if !reflect.DeepEqual(delivered, inOrder) {
						t.Fatalf("%s delivered at random:\n got %+v\nwant %+v", sku, delivered, inOrder)
					}
				}
			})
		})
	}
}

// record is what the record reports about one item.
type record struct {
	snap   reservation.Snapshot
	counts reservation.Counts
	res    []reservation.Reservation
}

func readRecord(ctx context.Context, t *rapid.T, db *persistence.DB, sku string) record {
	var r record
	var err error
	if r.snap, err = db.Snapshot(ctx, sku); err != nil {
		t.Fatalf("Snapshot(%s): %v", sku, err)
	}
	if r.counts, err = db.Counts(ctx, sku); err != nil {
		t.Fatalf("Counts(%s): %v", sku, err)
	}
	if r.res, err = db.Reservations(ctx, sku); err != nil {
		t.Fatalf("Reservations(%s): %v", sku, err)
	}
	return r
}
