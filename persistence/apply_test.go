package persistence_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// snapshot builds the record expected for an item.
func snapshot(item reservation.Change, res ...reservation.RecordedReservation) reservation.Snapshot {
	return reservation.Snapshot{Item: *item.Item, Reservations: res}
}

// withWindow gives an item change a sale window.
func withWindow(c reservation.Change, starts, ends time.Time) reservation.Change {
	it := *c.Item
	it.StartsAt, it.EndsAt = starts, ends
	return reservation.Change{Item: &it}
}

type batches = [][]reservation.Change

// TestApply delivers changes in the orders and repetitions a syncer may
// deliver them in and checks what the record holds afterwards, through every
// read path. Each case works on an item of its own in one shared database
// per backend.
func TestApply(t *testing.T) {
	cases := []struct {
		name  string
		build func(sku string) (batches, reservation.Snapshot)
	}{
		{
			name: "new reservation",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "alice", 2, 10, idemField("alice", "k1"))
				return batches{{item, p}}, snapshot(item, recorded(p, idemField("alice", "k1")))
			},
		},
		{
			name: "new reservation without idempotency key",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "alice", 1, 10, "")
				return batches{{item}, {p}}, snapshot(item, recorded(p, ""))
			},
		},
		{
			name: "same changes again change nothing",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "alice", 2, 10, idemField("alice", "k1"))
				return batches{{item, p}, {item, p}, {p}, {item}}, snapshot(item, recorded(p, idemField("alice", "k1")))
			},
		},
		{
			name: "pending then confirmed",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "bob", 3, 10, idemField("bob", "k"))
				c := settled(p, reservation.StatusConfirmed, 500)
				return batches{{item, p}, {c}}, snapshot(item, recorded(c, idemField("bob", "k")))
			},
		},
		{
			name: "final status then a late pending: stays final, takes the pending's idempotency field",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "bob", 3, 10, idemField("bob", "k"))
				c := settled(p, reservation.StatusConfirmed, 500)
				return batches{{item}, {c}, {p}}, snapshot(item, recorded(c, idemField("bob", "k")))
			},
		},
		{
			name: "final status then a late pending in one batch",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "bob", 3, 10, idemField("bob", "k"))
				c := settled(p, reservation.StatusCancelled, 500)
				return batches{{item, c, p}}, snapshot(item, recorded(c, idemField("bob", "k")))
			},
		},
		{
			name: "two final statuses across batches: the first wins",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "carol", 1, 10, "")
				cancelled := settled(p, reservation.StatusCancelled, 400)
				expired := settled(p, reservation.StatusExpired, 60_010)
				return batches{{item, p}, {cancelled}, {expired}, {p}}, snapshot(item, recorded(cancelled, ""))
			},
		},
		{
			name: "two final statuses in one batch: the first wins",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "carol", 1, 10, "")
				expired := settled(p, reservation.StatusExpired, 60_010)
				confirmed := settled(p, reservation.StatusConfirmed, 400)
				return batches{{item, expired, confirmed, p}}, snapshot(item, recorded(expired, ""))
			},
		},
		{
			name: "final status lands on a final row in the same batch as its pending",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "carol", 1, 10, idemField("carol", "x"))
				confirmed := settled(p, reservation.StatusConfirmed, 400)
				cancelled := settled(p, reservation.StatusCancelled, 450)
				return batches{{item, confirmed}, {p, cancelled}}, snapshot(item, recorded(confirmed, idemField("carol", "x")))
			},
		},
		{
			name: "duplicates inside one batch",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "dave", 2, 10, idemField("dave", "dup"))
				c := settled(p, reservation.StatusConfirmed, 300)
				return batches{{item, p, c, p, item, c, p}}, snapshot(item, recorded(c, idemField("dave", "dup")))
			},
		},
		{
			name: "the first idempotency field stays",
			build: func(sku string) (batches, reservation.Snapshot) {
				item := offer(sku, 1, 10, "Ten")
				p := created(sku, 1, "erin", 1, 10, idemField("erin", "first"))
				again := created(sku, 1, "erin", 1, 10, idemField("erin", "second"))
				return batches{{item, p}, {again}}, snapshot(item, recorded(p, idemField("erin", "first")))
			},
		},
		{
			name: "item revision 2 then 1 keeps 2",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1, r2 := offer(sku, 1, 10, "Old"), offer(sku, 2, 25, "New")
				return batches{{r2}, {r1}}, snapshot(r2)
			},
		},
		{
			name: "item revision 1 then 2 takes 2",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1, r2 := offer(sku, 1, 10, "Old"), offer(sku, 2, 25, "New")
				return batches{{r1}, {r2}}, snapshot(r2)
			},
		},
		{
			name: "item revisions out of order in one batch",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1, r2, r3 := offer(sku, 1, 10, "One"), offer(sku, 2, 20, "Two"), offer(sku, 3, 30, "Three")
				return batches{{r3, r1, r2}, {r2}}, snapshot(r3)
			},
		},
		{
			name: "item revision seen twice keeps the first copy",
			build: func(sku string) (batches, reservation.Snapshot) {
				first, other := offer(sku, 4, 10, "First"), offer(sku, 4, 99, "Other")
				return batches{{first}, {other}}, snapshot(first)
			},
		},
		{
			name: "item revision seen twice in one batch keeps the first copy",
			build: func(sku string) (batches, reservation.Snapshot) {
				first, other := offer(sku, 4, 10, "First"), offer(sku, 4, 99, "Other")
				return batches{{first, other}, {other}}, snapshot(first)
			},
		},
		{
			name: "higher revision clears the sale window",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1 := withWindow(offer(sku, 1, 10, "Windowed"), at(-3_600_000), at(3_600_000))
				r2 := offer(sku, 2, 10, "Open")
				return batches{{r1}, {r2}, {r1}}, snapshot(r2)
			},
		},
		{
			name: "lower revision does not bring the sale window back",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1 := withWindow(offer(sku, 1, 10, "Windowed"), at(-3_600_000), at(3_600_000))
				r2 := withWindow(offer(sku, 2, 10, "Ends later"), time.Time{}, at(7_200_000))
				return batches{{r2}, {r1}}, snapshot(r2)
			},
		},
		{
			name: "reservations and item together, every status",
			build: func(sku string) (batches, reservation.Snapshot) {
				r1, r2 := offer(sku, 1, 100, "Old"), offer(sku, 2, 120, "New")
				p1 := created(sku, 1, "u1", 1, 10, idemField("u1", "a"))
				p2 := created(sku, 2, "u2", 2, 20, "")
				p3 := created(sku, 3, "u3", 3, 30, idemField("u3", "c"))
				p4 := created(sku, 4, "u4", 4, 40, "")
				p5 := created(sku, 5, "u1", 5, 50, "")
				c2 := settled(p2, reservation.StatusConfirmed, 200)
				c3 := settled(p3, reservation.StatusCancelled, 300)
				c4 := settled(p4, reservation.StatusExpired, 60_040)
				return batches{{p1, r2, c3}, {p2, p3, p4, c4}, {r1, p5, c2, p1}},
					snapshot(r2, recorded(p1, idemField("u1", "a")), recorded(c2, ""),
						recorded(c3, idemField("u3", "c")), recorded(c4, ""), recorded(p5, ""))
			},
		},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					sku := fmt.Sprintf("apply-%02d", i)
					batches, want := c.build(sku)
					for _, batch := range batches {
						mustApply(t, db, batch...)
					}
					checkSnapshot(t, db, want)
				})
			}
		})
	}
}

// TestApplyTimesRoundTrip: times in any zone are recorded as instants and
// come back in UTC, to the millisecond.
func TestApplyTimesRoundTrip(t *testing.T) {
	east := time.FixedZone("UTC+05:30", 5*3600+1800)
	west := time.FixedZone("UTC-07:00", -7*3600)
	cases := []struct {
		name                     string
		created, expires, update time.Time
		starts, ends             time.Time
	}{
		{
			name:    "utc",
			created: at(1), expires: at(600_001), update: at(2),
			starts: at(-1000), ends: at(86_400_999),
		},
		{
			name:    "other zones",
			created: at(3).In(east), expires: at(600_003).In(west), update: at(4).In(east),
			starts: at(-999).In(west), ends: at(86_400_001).In(east),
		},
		{
			name:    "whole seconds and no sale window",
			created: base.Truncate(time.Second), expires: base.Truncate(time.Second).Add(time.Hour),
			update: base.Truncate(time.Second).Add(time.Second),
		},
		{
			name:    "epoch milliseconds of today",
			created: time.UnixMilli(1_767_225_600_001), expires: time.UnixMilli(1_767_225_660_999),
			update: time.UnixMilli(1_767_225_600_500),
			starts: time.UnixMilli(1_767_225_000_000), ends: time.UnixMilli(1_767_312_000_999),
		},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					sku := fmt.Sprintf("times-%02d", i)
					item := offer(sku, 1, 5, "Timed")
					item.Item.StartsAt, item.Item.EndsAt = c.starts, c.ends
					item.Item.CreatedAt, item.Item.UpdatedAt = c.created, c.update
					r := reservation.Reservation{
						ID: resID(sku, 1), SKU: sku, UserID: "zoe", Quantity: 1, Status: reservation.StatusPending,
						CreatedAt: c.created, ExpiresAt: c.expires, UpdatedAt: c.update,
					}
					ch := reservation.Change{Reservation: &r}
					mustApply(t, db, item, ch)
					checkSnapshot(t, db, snapshot(item, recorded(ch, "")))
				})
			}
		})
	}
}

// TestApplyNothing: batches with nothing to write succeed and write nothing.
func TestApplyNothing(t *testing.T) {
	cases := []struct {
		name    string
		changes []reservation.Change
	}{
		{name: "nil", changes: nil},
		{name: "empty", changes: []reservation.Change{}},
		{name: "empty changes", changes: []reservation.Change{{}, {IdempotencyField: "1:a:b"}}},
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ctx := testCtx(t)
					if err := db.Apply(ctx, c.changes); err != nil {
						t.Fatalf("Apply: %v", err)
					}
					skus, err := db.SKUs(ctx)
					if err != nil || len(skus) != 0 {
						t.Errorf("SKUs = %v, %v; want none", skus, err)
					}
				})
			}
		})
	}
}

// TestReadMissing: reads of what the record does not hold.
func TestReadMissing(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			// Something else is recorded, so the tables are not empty.
			mustApply(t, db, offer("other", 1, 1, "Other"), created("other", 1, "u", 1, 0, ""))
			cases := []struct {
				name string
				read func() error
				want error
			}{
				{name: "Item", want: reservation.ErrItemNotFound, read: func() error {
					_, err := db.Item(testCtx(t), "nope")
					return err
				}},
				{name: "Snapshot", want: reservation.ErrItemNotFound, read: func() error {
					_, err := db.Snapshot(testCtx(t), "nope")
					return err
				}},
				{name: "Reservation", want: reservation.ErrReservationNotFound, read: func() error {
					_, err := db.Reservation(testCtx(t), resID("nope", 1))
					return err
				}},
				{name: "Reservations", read: func() error {
					got, err := db.Reservations(testCtx(t), "nope")
					if err == nil && len(got) != 0 {
						return fmt.Errorf("got %v", got)
					}
					return err
				}},
				{name: "Counts", read: func() error {
					got, err := db.Counts(testCtx(t), "nope")
					if err == nil && got != (reservation.Counts{}) {
						return fmt.Errorf("got %+v", got)
					}
					return err
				}},
				{name: "Recorded", read: func() error {
					got, err := db.Recorded(testCtx(t), []string{"nope", "neither"})
					if err == nil && len(got) != 0 {
						return fmt.Errorf("got %v", got)
					}
					return err
				}},
				{name: "Recorded of nothing", read: func() error {
					got, err := db.Recorded(testCtx(t), nil)
					if err == nil && (got == nil || len(got) != 0) {
						return fmt.Errorf("got %#v, want an empty map", got)
					}
					return err
				}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if err := c.read(); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
						t.Errorf("err = %v, want %v", err, c.want)
					}
				})
			}
		})
	}
}

// TestSKUsAndRecorded: the item list is sorted, and Recorded answers for
// more SKUs than one query takes (it asks in chunks of 1000).
func TestSKUsAndRecorded(t *testing.T) {
	const items = 40
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			ctx := testCtx(t)
			var batch []reservation.Change
			var all []string
			for i := range items {
				all = append(all, fmt.Sprintf("sku-%05d", i))
				// Inserted in reverse, so sorted output is the reader's work.
				batch = append(batch, offer(fmt.Sprintf("sku-%05d", items-1-i), 1, int64(i), "Item"))
			}
			mustApply(t, db, batch...)
			skus, err := db.SKUs(ctx)
			if err != nil {
				t.Fatalf("SKUs: %v", err)
			}
			if !reflect.DeepEqual(skus, all) {
				t.Fatalf("SKUs = %v, want %v", skus, all)
			}

			cases := []struct {
				name  string
				asked int // SKUs asked about; recorded ones sit at positions 0, 37, 74, ...
			}{
				{name: "one", asked: 1},
				{name: "one chunk", asked: 1000},
				{name: "chunk and one", asked: 1001},
				{name: "three chunks", asked: 2999},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ask := make([]string, c.asked)
					want := map[string]bool{}
					for i := range ask {
						ask[i] = fmt.Sprintf("absent-%05d", i)
						if i%37 == 0 && i/37 < items {
							ask[i] = all[i/37]
							want[ask[i]] = true
						}
					}
					got, err := db.Recorded(ctx, ask)
					if err != nil {
						t.Fatalf("Recorded: %v", err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("Recorded of %d skus = %v, want %v", len(ask), got, want)
					}
				})
			}
		})
	}
}

// TestApplyConcurrent: several writers apply shuffled copies of the same
// changes at once, as syncers that were handed the same entries do. The
// rows end as if each change was applied once, in order, and no writer
// fails (MySQL deadlocks are retried inside Apply).
func TestApplyConcurrent(t *testing.T) {
	const (
		writers = 4
		items   = 3
		perItem = 20
	)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			var history []reservation.Change
			want := map[string]reservation.Snapshot{}
			for i := range items {
				sku := fmt.Sprintf("conc-%d", i)
				r1, r2 := offer(sku, 1, 50, "One"), offer(sku, 2, 60, "Two")
				history = append(history, r1, r2)
				snap := snapshot(r2)
				for n := range perItem {
					p := created(sku, n, fmt.Sprintf("u%d", n%7), 1+n%3, int64(n), idemField("u", fmt.Sprint(n)))
					history = append(history, p)
					last := p
					if n%4 != 0 {
						last = settled(p, []reservation.Status{reservation.StatusConfirmed, reservation.StatusCancelled, reservation.StatusExpired}[n%3], int64(1000+n))
						history = append(history, last)
					}
					snap.Reservations = append(snap.Reservations, recorded(last, idemField("u", fmt.Sprint(n))))
				}
				// Ids sort as the numbers do (zero-padded).
				want[sku] = snap
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				rng := rand.New(rand.NewPCG(uint64(w), 42))
				changes := append([]reservation.Change(nil), history...)
				rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
				wg.Add(1)
				go func() {
					defer wg.Done()
					for lo := 0; lo < len(changes); {
						hi := min(len(changes), lo+1+rng.IntN(15))
						if err := db.Apply(testCtx(t), changes[lo:hi]); err != nil {
							errs <- err
							return
						}
						lo = hi
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("concurrent Apply: %v", err)
			}
			for _, snap := range want {
				checkSnapshot(t, db, snap)
			}
		})
	}
}

// TestApplyLargeBatch: one batch may hold more items than one statement
// takes placeholders for (SQLite allows 32766 variables, MySQL 65535; an
// item row has ten columns), as a syncer's batch can when many items were
// reseeded.
func TestApplyLargeBatch(t *testing.T) {
	cases := map[string]int{"sqlite": 3300, "mysql": 6600}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			n := cases[b.name]
			if testing.Short() && b.name == "sqlite" {
				t.Skip("slow under -race on SQLite; run without -short")
			}
			db := b.open(t)
			batch := make([]reservation.Change, 0, n+2)
			for i := range n {
				batch = append(batch, offer(fmt.Sprintf("big-%05d", i), 1+int64(i%3), int64(i), "Big"))
			}
			p := created("big-00007", 1, "u", 1, 0, "")
			batch = append(batch, p, settled(p, reservation.StatusConfirmed, 10))
			mustApply(t, db, batch...)
			skus, err := db.SKUs(testCtx(t))
			if err != nil || len(skus) != n {
				t.Fatalf("SKUs: %d, %v; want %d", len(skus), err, n)
			}
			checkSnapshot(t, db, snapshot(offer("big-00007", 2, 7, "Big"), recorded(settled(p, reservation.StatusConfirmed, 10), "")))
		})
	}
}

// TestApplyManyReservations: a batch of more reservations than the prepared
// statement takes (on MySQL, whole chunks of 500 rows go through it
// and the rest as text) records every row, and a second batch moves the
// status of some forward, never back, through either statement, keeping
// the idempotency field a row already has.
func TestApplyManyReservations(t *testing.T) {
	const n = 1100 // two prepared chunks and 100 rows as text
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			sku := "many"
			first := []reservation.Change{offer(sku, 1, 1000, "Many")}
			var holds []reservation.Change
			for i := range n {
				idem := ""
				if i%7 == 0 {
					idem = idemField(fmt.Sprintf("u%03d", i), "k")
				}
				c := created(sku, i, fmt.Sprintf("u%03d", i), 1+i%3, int64(i), idem)
				holds = append(holds, c)
				first = append(first, c)
			}
			mustApply(t, db, first...)

			// Every third hold confirmed, every fifth cancelled (a later
			// status where both apply: the first in the batch wins by rank,
			// equal ranks keep the row), and the pending creations again,
			// which must change nothing.
			var second []reservation.Change
			want := make([]reservation.RecordedReservation, n)
			for i, c := range holds {
				want[i] = recorded(c, c.IdempotencyField)
				switch {
				case i%3 == 0:
					s := settled(c, reservation.StatusConfirmed, 100_000)
					second = append(second, s)
					want[i] = recorded(s, c.IdempotencyField)
				case i%5 == 0:
					s := settled(c, reservation.StatusCancelled, 100_000)
					second = append(second, s)
					want[i] = recorded(s, c.IdempotencyField)
				}
				second = append(second, reservation.Change{Reservation: c.Reservation})
			}
			mustApply(t, db, second...)
			checkSnapshot(t, db, snapshot(offer(sku, 1, 1000, "Many"), want...))
		})
	}
}
