package reservation_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// TestReserveRequestValidateBounds pins every bound of a reserve request at
// the bound and one past it: a request at the bound is taken, one past it
// is refused as invalid (a malformed SKU as ErrInvalidSKU).
func TestReserveRequestValidateBounds(t *testing.T) {
	longestSKU := strings.Repeat("s", reservation.MaxSKULen)
	longestUser := strings.Repeat("u", reservation.MaxUserIDLen)
	longestKey := strings.Repeat("k", reservation.MaxIdempotencyKeyLen)
	valid := reservation.ReserveRequest{SKU: "tee", UserID: "alice", Quantity: 1}
	with := func(change func(r *reservation.ReserveRequest)) reservation.ReserveRequest {
		r := valid
		change(&r)
		return r
	}
	cases := []struct {
		name string
		req  reservation.ReserveRequest
		want error // nil: valid
	}{
		{"quantity 0", with(func(r *reservation.ReserveRequest) { r.Quantity = 0 }), reservation.ErrInvalid},
		{"quantity -1", with(func(r *reservation.ReserveRequest) { r.Quantity = -1 }), reservation.ErrInvalid},
		{"quantity 1", with(func(r *reservation.ReserveRequest) { r.Quantity = 1 }), nil},
		{"quantity at the limit", with(func(r *reservation.ReserveRequest) { r.Quantity = reservation.MaxPerUserLimit }), nil},
		{"quantity one past the limit", with(func(r *reservation.ReserveRequest) { r.Quantity = reservation.MaxPerUserLimit + 1 }), reservation.ErrInvalid},
		{"the longest user id", with(func(r *reservation.ReserveRequest) { r.UserID = longestUser }), nil},
		{"a user id one character longer", with(func(r *reservation.ReserveRequest) { r.UserID = longestUser + "u" }), reservation.ErrInvalid},
		{"a user id of one character", with(func(r *reservation.ReserveRequest) { r.UserID = "u" }), nil},
		{"an empty user id", with(func(r *reservation.ReserveRequest) { r.UserID = "" }), reservation.ErrInvalid},
		{"the longest sku", with(func(r *reservation.ReserveRequest) { r.SKU = longestSKU }), nil},
		{"a sku one character longer", with(func(r *reservation.ReserveRequest) { r.SKU = longestSKU + "s" }), reservation.ErrInvalidSKU},
		{"a sku of one character", with(func(r *reservation.ReserveRequest) { r.SKU = "s" }), nil},
		{"an empty sku", with(func(r *reservation.ReserveRequest) { r.SKU = "" }), reservation.ErrInvalidSKU},
		{"the longest idempotency key", with(func(r *reservation.ReserveRequest) { r.IdempotencyKey = longestKey }), nil},
		{"an idempotency key one character longer", with(func(r *reservation.ReserveRequest) { r.IdempotencyKey = longestKey + "k" }), reservation.ErrInvalid},
		{"everything at its bound at once", reservation.ReserveRequest{SKU: longestSKU, UserID: longestUser,
			Quantity: reservation.MaxPerUserLimit, IdempotencyKey: longestKey}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Validate()
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("Validate(%+v) = %v, want valid", tc.req, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Validate(%+v) = %v, want %v", tc.req, err, tc.want)
			}
		})
	}
	// The bounds are part of the API contract (the README names them): a
	// change to one must be deliberate.
	if reservation.MaxSKULen != 64 || reservation.MaxUserIDLen != 64 || reservation.MaxPerUserLimit != 1000 ||
		reservation.MaxIdempotencyKeyLen != 128 {
		t.Errorf("bounds sku %d, user id %d, quantity %d, idempotency key %d; want 64, 64, 1000, 128",
			reservation.MaxSKULen, reservation.MaxUserIDLen, reservation.MaxPerUserLimit, reservation.MaxIdempotencyKeyLen)
	}
}

// TestNewIDParsesBack: an id is the SKU, a dot and 22 characters of
// unpadded base64url, it parses back to its SKU, and two are never alike.
func TestNewIDParsesBack(t *testing.T) {
	for _, sku := range []string{"a", "sku-1", strings.Repeat("s", reservation.MaxSKULen)} {
		a, errA := reservation.NewID(sku)
		b, errB := reservation.NewID(sku)
		if errA != nil || errB != nil {
			t.Fatalf("NewID(%q): %v, %v", sku, errA, errB)
		}
		if a == b {
			t.Fatalf("NewID(%q) twice = %q", sku, a)
		}
		if len(a) != len(sku)+1+22 || !strings.HasPrefix(a, sku+".") {
			t.Fatalf("NewID(%q) = %q, want %q, a dot and %d characters", sku, a, sku, 22)
		}
		if got, ok := reservation.ParseID(a); !ok || got != sku {
			t.Fatalf("ParseID(%q) = %q, %v; want %q", a, got, ok, sku)
		}
	}
}
