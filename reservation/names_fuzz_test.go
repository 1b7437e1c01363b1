package reservation_test

import (
	"regexp"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// FuzzValidNames holds the table-driven checks of SKUs and user ids to the
// patterns the API documents.
func FuzzValidNames(f *testing.F) {
	sku := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	user := regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,64}$`)
	for _, s := range []string{"", "a", "sku-1.AbC_", "a:b", "u@x", "a b", "é", "\x00", "~", "/", "\xff",
		"1234567890123456789012345678901234567890123456789012345678901234",
		"12345678901234567890123456789012345678901234567890123456789012345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := reservation.ValidSKU(s), sku.MatchString(s); got != want {
			t.Errorf("ValidSKU(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := reservation.ValidUserID(s), user.MatchString(s); got != want {
			t.Errorf("ValidUserID(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
