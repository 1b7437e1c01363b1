package reservation_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// TestServiceOwnership: ReservationFor and CancelFor answer another buyer's
// reservation exactly as an unknown id: the same error, the same text, and
// the same path through the service (the durable record is asked whether
// the item was lost, once per call, as for an unknown id), and the hold is
// left as it was. The owner reads and cancels it.
func TestServiceOwnership(t *testing.T) {
	ctx := context.Background()
	fake := &fakeRecovery{}
	svc, _, _ := newService(t, fake)
	r, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "here", UserID: "alice", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	unknown := mustID(t, "here")
	for _, tc := range []struct {
		name string
		call func(user, id string) error
	}{
		{"ReservationFor", func(user, id string) error { _, err := svc.ReservationFor(ctx, user, id); return err }},
		{"CancelFor", func(user, id string) error { _, err := svc.CancelFor(ctx, user, id); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			askedBefore := len(fake.asked())
			errTheirs := tc.call("bob", r.ID)
			askedTheirs := fake.asked()[askedBefore:]
			errUnknown := tc.call("bob", unknown)
			askedUnknown := fake.asked()[askedBefore+len(askedTheirs):]
			if !errors.Is(errTheirs, reservation.ErrReservationNotFound) || !errors.Is(errUnknown, reservation.ErrReservationNotFound) {
				t.Fatalf("another's: %v; unknown: %v; want both ErrReservationNotFound", errTheirs, errUnknown)
			}
			if errTheirs.Error() != errUnknown.Error() {
				t.Errorf("another's %q, unknown %q: the text differs", errTheirs, errUnknown)
			}
			if !slices.Equal(askedTheirs, askedUnknown) || len(askedTheirs) == 0 {
				t.Errorf("the record was asked %v for another's, %v for an unknown id: the paths differ", askedTheirs, askedUnknown)
			}
			got, err := svc.Reservation(ctx, r.ID)
			if err != nil || got.Status != reservation.StatusPending {
				t.Fatalf("alice's hold after bob's %s: %+v, %v; want pending", tc.name, got, err)
			}
		})
	}
	if got, err := svc.ReservationFor(ctx, "alice", r.ID); err != nil || got.ID != r.ID {
		t.Fatalf("alice reads her own: %+v, %v", got, err)
	}
	if got, err := svc.CancelFor(ctx, "alice", r.ID); err != nil || got.Status != reservation.StatusCancelled {
		t.Fatalf("alice cancels her own: %+v, %v", got, err)
	}
}
