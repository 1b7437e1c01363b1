package reservation

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Bounds of what a client may ask for. They are part of the API contract.
const (
	MaxSKULen            = 64
	MaxUserIDLen         = 64
	MaxIdempotencyKeyLen = 128
	MaxNameLen           = 200
	MaxStock             = 1_000_000_000
	MaxPerUserLimit      = 1000
	MaxHold              = 24 * time.Hour
	MaxBuckets           = 64
	DefaultPerUserLimit  = 1
	DefaultHold          = 10 * time.Minute
)

// idRandomBytes is 128 bits: far above the 96 the guarantee needs, so an id
// cannot be guessed from another.
const (
	idRandomBytes = 16
	idRandomLen   = 22 // base64url, unpadded, of 16 bytes
)

// ValidSKU reports whether s matches [A-Za-z0-9._-]{1,64}.
func ValidSKU(s string) bool {
	return len(s) >= 1 && len(s) <= MaxSKULen && allIn(s, &skuBytes)
}

// ValidUserID reports whether s matches [A-Za-z0-9._:@-]{1,64}.
func ValidUserID(s string) bool {
	return len(s) >= 1 && len(s) <= MaxUserIDLen && allIn(s, &userIDBytes)
}

// The bytes of a SKU and of a user id, as tables: every request checks
// both, most more than once, and a table load per byte beats a call of a
// predicate per byte. Never written after they are built.
var (
	skuBytes    = byteClass("._-")
	userIDBytes = byteClass("._:@-")
)

// byteClass is the letters, the digits and extra.
func byteClass(extra string) (class [256]bool) {
	for c := 0; c < 256; c++ {
		class[c] = isAlnum(byte(c)) || strings.IndexByte(extra, byte(c)) >= 0
	}
	return class
}

func allIn(s string, class *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !class[s[i]] {
			return false
		}
	}
	return true
}

// ValidIdempotencyKey reports whether s is 1..128 visible ASCII characters.
func ValidIdempotencyKey(s string) bool {
	return len(s) >= 1 && len(s) <= MaxIdempotencyKeyLen && allBytes(s, func(c byte) bool {
		return c >= 0x21 && c <= 0x7e
	})
}

// NewID returns a fresh reservation id: the SKU, a dot, and 128 random bits
// in base64url. The SKU lets any instance find the item's keys (and, on a
// cluster, its slot) from the id alone; the random part makes it unguessable.
func NewID(sku string) (string, error) {
	var b [idRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reservation id: %w", err)
	}
	var enc [idRandomLen]byte
	base64.RawURLEncoding.Encode(enc[:], b[:])
	// One allocation: the Builder's buffer becomes the string.
	var id strings.Builder
	id.Grow(len(sku) + 1 + len(enc))
	id.WriteString(sku)
	id.WriteByte('.')
	id.Write(enc[:])
	return id.String(), nil
}

// BucketSep joins an item's SKU and a bucket's tag into the bucket's name
// ("sku~17"). SKUs cannot contain it, so a name is never mistaken for a SKU.
const BucketSep = '~'

// ParseID returns the SKU a reservation id belongs to, or ok=false when id
// is not of the form NewID makes. A store that splits an item into buckets
// may put the bucket's tag after the SKU ("sku~17.<random>"): the id then
// names the bucket its hold lives in, and it still parses to the SKU.
func ParseID(id string) (sku string, ok bool) {
	dot := strings.LastIndexByte(id, '.')
	if dot < 0 || len(id)-dot-1 != idRandomLen {
		return "", false
	}
	sku, random := id[:dot], id[dot+1:]
	if i := strings.IndexByte(sku, BucketSep); i >= 0 {
		tag := sku[i+1:]
		if len(tag) == 0 || len(tag) > 9 || !allBytes(tag, func(c byte) bool { return c >= '0' && c <= '9' }) {
			return "", false
		}
		sku = sku[:i]
	}
	if !ValidSKU(sku) || !allBytes(random, func(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }) {
		return "", false
	}
	return sku, true
}

// Validate checks an item spec. Defaults are the caller's to fill.
func (s ItemSpec) Validate() error {
	switch {
	case !ValidSKU(s.SKU):
		return ErrInvalidSKU
	case s.Stock < 0 || s.Stock > MaxStock:
		return fmt.Errorf("%w: stock must be 0..%d", ErrInvalid, MaxStock)
	case s.PerUserLimit < 1 || s.PerUserLimit > MaxPerUserLimit:
		return fmt.Errorf("%w: per_user_limit must be 1..%d", ErrInvalid, MaxPerUserLimit)
	case s.Hold < time.Second || s.Hold > MaxHold || s.Hold%time.Second != 0:
		return fmt.Errorf("%w: hold_seconds must be 1..%d", ErrInvalid, int(MaxHold/time.Second))
	case s.Buckets < 0 || s.Buckets > MaxBuckets:
		return fmt.Errorf("%w: buckets must be 1..%d", ErrInvalid, MaxBuckets)
	case len(s.Name) > MaxNameLen || strings.ContainsRune(s.Name, 0):
		return fmt.Errorf("%w: name must be at most %d bytes", ErrInvalid, MaxNameLen)
	case !s.StartsAt.IsZero() && !s.EndsAt.IsZero() && !s.EndsAt.After(s.StartsAt):
		return fmt.Errorf("%w: ends_at must be after starts_at", ErrInvalid)
	}
	return nil
}

// Validate checks a reserve request as a client sent it (ID not yet set).
func (r ReserveRequest) Validate() error {
	switch {
	case !ValidSKU(r.SKU):
		return ErrInvalidSKU
	case !ValidUserID(r.UserID):
		return fmt.Errorf("%w: user_id must match [A-Za-z0-9._:@-]{1,64}", ErrInvalid)
	case r.Quantity < 1 || r.Quantity > MaxPerUserLimit:
		return fmt.Errorf("%w: quantity must be 1..per_user_limit (at most %d)", ErrInvalid, MaxPerUserLimit)
	case r.IdempotencyKey != "" && !ValidIdempotencyKey(r.IdempotencyKey):
		return fmt.Errorf("%w: Idempotency-Key must be 1..%d visible ASCII characters", ErrInvalid, MaxIdempotencyKeyLen)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}
