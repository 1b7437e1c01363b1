package redisstore

import (
	"slices"
	"strconv"
	"testing"
)

// TestKeyCache: a bucket's keys are built once and shared, and a flood of
// SKUs (any a client names reaches the store) never grows the cache past
// its bound.
func TestKeyCache(t *testing.T) {
	s := &Store{prefix: "kc"}
	first := s.keys("tee")
	if want := s.keysOf("tee", "item", "holds", "users", "res", "idem", "outbox", "xout", "xin", "xtaken", "final"); !slices.Equal(first, want) {
		t.Fatalf("keys(tee) = %v, want %v", first, want)
	}
	if again := s.keys("tee"); &again[0] != &first[0] {
		t.Error("a second reserve of an item built its keys again")
	}
	for i := range 2*maxCachedKeySets + 3 {
		s.keys("sku-" + strconv.Itoa(i))
	}
	if n := len(s.keyCache.m); n > maxCachedKeySets {
		t.Errorf("%d key sets cached, want at most %d", n, maxCachedKeySets)
	}
	if got := s.keys("tee"); !slices.Equal(got, first) {
		t.Errorf("after the flood keys(tee) = %v, want %v", got, first)
	}
}
