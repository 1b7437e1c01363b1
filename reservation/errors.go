package reservation

import (
	"errors"
	"fmt"
)

// The errors a caller can act on. Adapters wrap them with %w; callers test
// with errors.Is. The HTTP layer maps each to a status and a stable code.
var (
	ErrInvalid              = errors.New("invalid request")
	ErrItemNotFound         = errors.New("item not found")
	ErrReservationNotFound  = errors.New("reservation not found")
	ErrSoldOut              = errors.New("sold out")
	ErrLimitExceeded        = errors.New("per-user limit exceeded")
	ErrSaleNotActive        = errors.New("sale not active")
	ErrReservationExpired   = errors.New("reservation expired")
	ErrReservationCancelled = errors.New("reservation cancelled")
	ErrReservationConfirmed = errors.New("reservation confirmed")
	ErrStockBelowCommitted  = errors.New("stock below committed units")
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
	ErrBucketsImmutable     = errors.New("an item's bucket count cannot change")
	// ErrUnavailable: the store could not be reached. For reads and for
	// refusals nothing changed; a write whose answer was lost may have applied,
	// which is why the reserve script is idempotent on its ID.
	ErrUnavailable = errors.New("store unavailable")
)

// ErrRecovering: the store lost the item (Redis restarted without its data,
// a failover, FLUSHALL) and it is being rebuilt from the durable record.
// Nothing was changed; retry shortly.
var ErrRecovering = errors.New("item is being recovered")

// ErrInvalidSKU is the ErrInvalid every layer answers for a malformed SKU.
var ErrInvalidSKU = fmt.Errorf("%w: sku must match [A-Za-z0-9._-]{1,64}", ErrInvalid)
