package redisstore

// Slot is slot, for the external tests that check where buckets land.
var Slot = slot
