package reservation_test

import (
	"context"
	"errors"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// fakeArchive is a durable record holding reservations by id.
type fakeArchive struct {
	res map[string]reservation.Reservation
	err error
}

func (a fakeArchive) Reservation(_ context.Context, id string) (reservation.Reservation, error) {
	if a.err != nil {
		return reservation.Reservation{}, a.err
	}
	r, ok := a.res[id]
	if !ok {
		return reservation.Reservation{}, reservation.ErrReservationNotFound
	}
	return r, nil
}

// TestArchive: a final reservation the store dropped after its retention is
// answered from the durable record as the store would have answered: read
// as it was, a repeated confirm or cancel as a repeat, the other as the
// conflict, another buyer's as unknown; a pending one, or one the record
// lacks, stays unknown; a record that cannot be read is unavailable.
func TestArchive(t *testing.T) {
	_, store, _ := newService(t, nil)
	cancelled, confirmed, pending := mustID(t, "here"), mustID(t, "here"), mustID(t, "here")
	arch := fakeArchive{res: map[string]reservation.Reservation{
		cancelled: {ID: cancelled, SKU: "here", UserID: "alice", Quantity: 1, Status: reservation.StatusCancelled},
		confirmed: {ID: confirmed, SKU: "here", UserID: "bob", Quantity: 1, Status: reservation.StatusConfirmed},
		pending:   {ID: pending, SKU: "here", UserID: "carol", Quantity: 1, Status: reservation.StatusPending},
	}}
	svc := reservation.NewService(store, nil, reservation.WithArchive(arch))
	ctx := context.Background()
	tests := []struct {
		name       string
		call       func() (reservation.Reservation, error)
		wantStatus reservation.Status
		wantErr    error
	}{
		{"read a cancelled one", func() (reservation.Reservation, error) { return svc.Reservation(ctx, cancelled) }, reservation.StatusCancelled, nil},
		{"cancel it again", func() (reservation.Reservation, error) { return svc.Cancel(ctx, cancelled) }, reservation.StatusCancelled, nil},
		{"confirm it", func() (reservation.Reservation, error) { return svc.Confirm(ctx, cancelled) }, "", reservation.ErrReservationCancelled},
		{"confirm a confirmed one again", func() (reservation.Reservation, error) { return svc.Confirm(ctx, confirmed) }, reservation.StatusConfirmed, nil},
		{"cancel a confirmed one", func() (reservation.Reservation, error) { return svc.Cancel(ctx, confirmed) }, "", reservation.ErrReservationConfirmed},
		{"its owner reads it", func() (reservation.Reservation, error) { return svc.ReservationFor(ctx, "alice", cancelled) }, reservation.StatusCancelled, nil},
		{"another buyer reads it", func() (reservation.Reservation, error) { return svc.ReservationFor(ctx, "mallory", cancelled) }, "", reservation.ErrReservationNotFound},
		{"another buyer cancels it", func() (reservation.Reservation, error) { return svc.CancelFor(ctx, "mallory", cancelled) }, "", reservation.ErrReservationNotFound},
		{"a pending one is not the record's to answer", func() (reservation.Reservation, error) { return svc.Reservation(ctx, pending) }, "", reservation.ErrReservationNotFound},
		{"unknown everywhere", func() (reservation.Reservation, error) { return svc.Reservation(ctx, mustID(t, "here")) }, "", reservation.ErrReservationNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.call()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && r.Status != tt.wantStatus) {
				t.Fatalf("= %+v, %v; want status %q, error %v", r, err, tt.wantStatus, tt.wantErr)
			}
		})
	}
	t.Run("a record that cannot be read", func(t *testing.T) {
		svc := reservation.NewService(store, nil, reservation.WithArchive(fakeArchive{err: errors.New("mysql down")}))
		if _, err := svc.Reservation(ctx, cancelled); !errors.Is(err, reservation.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
	})
}
