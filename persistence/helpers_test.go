package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// backend opens a fresh, empty record of one kind for a test. Every test
// that touches the database runs over all of them.
type backend struct {
	name string
	open func(t testing.TB) *persistence.DB
}

// mysqlBackends is empty unless the tests are built with the integration
// tag, when integration_test.go adds the shared MariaDB.
var mysqlBackends []backend

func backends() []backend {
	return append([]backend{{name: "sqlite", open: openSQLite}}, mysqlBackends...)
}

// openSQLite opens a record in a SQLite file of the test's own.
func openSQLite(t testing.TB) *persistence.DB {
	t.Helper()
	return openDB(t, "", filepath.Join(t.TempDir(), "flashsale.db"))
}

func openDB(t testing.TB, dsn, sqlitePath string) *persistence.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := persistence.Open(ctx, dsn, sqlitePath)
	if err != nil {
		t.Fatalf("persistence.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close the record: %v", err)
		}
	})
	return db
}

// testCtx is a context for one test's database calls, bounded so that a
// hung server fails the test instead of hanging it.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustApply(t testing.TB, db *persistence.DB, changes ...reservation.Change) {
	t.Helper()
	if err := db.Apply(testCtx(t), changes); err != nil {
		t.Fatalf("Apply(%d changes): %v", len(changes), err)
	}
}

// base is a millisecond-precision instant, as every time Redis hands out is.
var base = time.Date(2031, 5, 6, 7, 8, 9, 123_000_000, time.UTC)

// at is base plus ms milliseconds.
func at(ms int64) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

// resID is a reservation id of the form reservation.NewID makes, numbered.
func resID(sku string, n int) string { return fmt.Sprintf("%s.%022d", sku, n) }

// idemField is what the reserve script records for an Idempotency-Key.
func idemField(user, key string) string { return strconv.Itoa(len(user)) + ":" + user + ":" + key }

// created is the change that creates reservation n of sku: pending, made at
// at(ms), holding until a minute later.
func created(sku string, n int, user string, qty int, ms int64, idem string) reservation.Change {
	return reservation.Change{
		Reservation: &reservation.Reservation{
			ID: resID(sku, n), SKU: sku, UserID: user, Quantity: qty, Status: reservation.StatusPending,
			CreatedAt: at(ms), ExpiresAt: at(ms + 60_000), UpdatedAt: at(ms),
		},
		IdempotencyField: idem,
	}
}

// settled is the change that moves c's reservation to a final status at
// at(ms). Like the scripts' emit_res, it carries no idempotency field.
func settled(c reservation.Change, st reservation.Status, ms int64) reservation.Change {
	r := *c.Reservation
	r.Status, r.UpdatedAt = st, at(ms)
	return reservation.Change{Reservation: &r}
}

// offer is an item change at revision rev.
func offer(sku string, rev, stock int64, name string) reservation.Change {
	return reservation.Change{Item: &reservation.ItemRecord{
		ItemSpec: reservation.ItemSpec{
			SKU: sku, Name: name, Stock: stock, PerUserLimit: 2, Hold: 10 * time.Minute, Buckets: 1,
		},
		Rev: rev, CreatedAt: at(0), UpdatedAt: at(rev * 1000),
	}}
}

// recorded is what the record should hold for a reservation change.
func recorded(c reservation.Change, idem string) reservation.RecordedReservation {
	return reservation.RecordedReservation{Reservation: utcRes(*c.Reservation), IdempotencyField: idem}
}

func utcRes(r reservation.Reservation) reservation.Reservation {
	r.CreatedAt, r.ExpiresAt, r.UpdatedAt = utc(r.CreatedAt), utc(r.ExpiresAt), utc(r.UpdatedAt)
	return r
}

func utcItem(it reservation.ItemRecord) reservation.ItemRecord {
	it.StartsAt, it.EndsAt = utc(it.StartsAt), utc(it.EndsAt)
	it.CreatedAt, it.UpdatedAt = utc(it.CreatedAt), utc(it.UpdatedAt)
	it.Recorded = false
	return it
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// checkSnapshot reads the item want describes through every read path of
// the record and fails unless each agrees with want exactly (times included,
// in UTC).
func checkSnapshot(t testing.TB, db *persistence.DB, want reservation.Snapshot) {
	t.Helper()
	ctx := testCtx(t)
	sku := want.Item.SKU
	want.Item = utcItem(want.Item)
	if want.Reservations == nil {
		want.Reservations = []reservation.RecordedReservation{}
	}
	for i := range want.Reservations {
		want.Reservations[i].Reservation = utcRes(want.Reservations[i].Reservation)
	}

	snap, err := db.Snapshot(ctx, sku)
	if err != nil {
		t.Fatalf("Snapshot(%s): %v", sku, err)
	}
	if !reflect.DeepEqual(snap, want) {
		t.Errorf("Snapshot(%s):\n got %+v\nwant %+v", sku, snap, want)
	}
	for _, r := range snap.Reservations {
		checkUTC(t, r.ID, r.CreatedAt, r.ExpiresAt, r.UpdatedAt)
	}
	checkUTC(t, sku, snap.Item.CreatedAt, snap.Item.UpdatedAt, snap.Item.StartsAt, snap.Item.EndsAt)

	it, err := db.Item(ctx, sku)
	if err != nil {
		t.Fatalf("Item(%s): %v", sku, err)
	}
	if !reflect.DeepEqual(it, want.Item) {
		t.Errorf("Item(%s):\n got %+v\nwant %+v", sku, it, want.Item)
	}

	wantRes := make([]reservation.Reservation, len(want.Reservations))
	var counts reservation.Counts
	for i, r := range want.Reservations {
		wantRes[i] = r.Reservation
		count(&counts, r.Reservation)
		one, err := db.Reservation(ctx, r.ID)
		if err != nil {
			t.Errorf("Reservation(%s): %v", r.ID, err)
		} else if !reflect.DeepEqual(one, r.Reservation) {
			t.Errorf("Reservation(%s):\n got %+v\nwant %+v", r.ID, one, r.Reservation)
		}
	}
	all, err := db.Reservations(ctx, sku)
	if err != nil {
		t.Fatalf("Reservations(%s): %v", sku, err)
	}
	if !reflect.DeepEqual(all, wantRes) {
		t.Errorf("Reservations(%s):\n got %+v\nwant %+v", sku, all, wantRes)
	}
	got, err := db.Counts(ctx, sku)
	if err != nil {
		t.Fatalf("Counts(%s): %v", sku, err)
	}
	if got != counts {
		t.Errorf("Counts(%s) = %+v, want %+v", sku, got, counts)
	}
}

// checkUTC fails for a non-zero time that is not in UTC.
func checkUTC(t testing.TB, what string, times ...time.Time) {
	t.Helper()
	for _, tm := range times {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("%s: time %v is in %v, want UTC", what, tm, tm.Location())
		}
	}
}

// isAny reports whether err is one of targets.
func isAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// count adds r to c as the record's Counts reports it: one row, and its
// units under its status.
func count(c *reservation.Counts, r reservation.Reservation) {
	c.Rows++
	q := int64(r.Quantity)
	switch r.Status {
	case reservation.StatusPending:
		c.Pending += q
	case reservation.StatusConfirmed:
		c.Confirmed += q
	case reservation.StatusCancelled:
		c.Cancelled += q
	case reservation.StatusExpired:
		c.Expired += q
	}
}
