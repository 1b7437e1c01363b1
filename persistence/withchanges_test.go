package persistence

import (
	"reflect"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// TestWithChanges: surviving outbox entries fold into a rebuild's snapshot
// by the syncer's rules, whatever their order.
func TestWithChanges(t *testing.T) {
	t0 := time.UnixMilli(1_764_000_000_000).UTC()
	res := func(id string, st reservation.Status, at time.Duration) reservation.Reservation {
		return reservation.Reservation{ID: "s." + id, SKU: "s", UserID: "u-" + id, Quantity: 1, Status: st,
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), UpdatedAt: t0.Add(at)}
	}
	item := func(rev, stock int64) reservation.ItemRecord {
		return reservation.ItemRecord{ItemSpec: reservation.ItemSpec{SKU: "s", Name: "n", Stock: stock, PerUserLimit: 1,
			Hold: time.Hour, Buckets: 1}, Rev: rev, CreatedAt: t0, UpdatedAt: t0.Add(time.Duration(rev) * time.Second)}
	}
	pending, confirmed := res("a", reservation.StatusPending, 0), res("b", reservation.StatusConfirmed, time.Second)
	snap := reservation.Snapshot{Item: item(2, 10), Reservations: []reservation.RecordedReservation{
		{Reservation: pending}, {Reservation: confirmed, IdempotencyField: "3:u-b:k"},
	}}
	cancelled := res("a", reservation.StatusCancelled, 2*time.Second)
	fresh := res("c", reservation.StatusPending, 3*time.Second)
	stalePending := res("b", reservation.StatusPending, 0)
	cases := []struct {
		name    string
		changes []reservation.Change
		want    reservation.Snapshot
	}{
		{name: "nothing survived", want: snap},
		{
			name: "newer states and a new reservation",
			changes: []reservation.Change{
				{Reservation: &cancelled},
				{Reservation: &fresh, IdempotencyField: "3:u-c:k"},
				{Item: ptr(item(3, 12))},
			},
			want: reservation.Snapshot{Item: item(3, 12), Reservations: []reservation.RecordedReservation{
				{Reservation: cancelled}, {Reservation: confirmed, IdempotencyField: "3:u-b:k"},
				{Reservation: fresh, IdempotencyField: "3:u-c:k"},
			}},
		},
		{
			name: "older states change nothing but fill a missing key",
			changes: []reservation.Change{
				{Reservation: &stalePending, IdempotencyField: "other"},
				{Reservation: &pending, IdempotencyField: "3:u-a:k"},
				{Item: ptr(item(1, 5))},
			},
			want: reservation.Snapshot{Item: item(2, 10), Reservations: []reservation.RecordedReservation{
				{Reservation: pending, IdempotencyField: "3:u-a:k"}, {Reservation: confirmed, IdempotencyField: "3:u-b:k"},
			}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := withChanges(snap, tc.changes); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("withChanges:\ngot  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
