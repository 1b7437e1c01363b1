package redisstore

import "github.com/flashsale/flashsale/reservation"

// Slot is slot, for the external tests that check where buckets land.
var Slot = slot

// SeedArgs are the seed script's arguments for spec under seedID, for the
// tests that run the script as a retry would.
func (s *Store) SeedArgs(spec reservation.ItemSpec, seedID string) []any {
	return s.seedArgs(spec, seedID)
}
