package persistence_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
)

// TestRecovererListsTheRecordOnlyWhenItMoved: the recoverer's list of
// recorded items is read from the record again exactly when something can
// have changed it (an item written, the store's epoch moved, a scan owed,
// the listing too old), so an idle instance's check costs the record one
// row, not the catalogue; and a listing taken again holds what changed.
func TestRecovererListsTheRecordOnlyWhenItMoved(t *testing.T) {
	cases := []struct {
		name         string
		relist       time.Duration // 0: the default, a minute
		between      func(t *testing.T, db *persistence.DB, st *scriptedStore)
		wantListings int // after the first Check and the one after between
		wantScans    int
		wantKnown    []string
	}{
		{name: "nothing moved", wantListings: 1, wantKnown: []string{"a"}},
		{
			name: "an item recorded",
			between: func(t *testing.T, db *persistence.DB, _ *scriptedStore) {
				mustApply(t, db, offer("b", 1, 5, "B"))
			},
			wantListings: 2, wantKnown: []string{"a", "b"},
		},
		{
			name: "a recorded item seeded again",
			between: func(t *testing.T, db *persistence.DB, _ *scriptedStore) {
				mustApply(t, db, offer("a", 2, 20, "A"))
			},
			wantListings: 2, wantKnown: []string{"a"},
		},
		{
			name: "reservations only",
			between: func(t *testing.T, db *persistence.DB, _ *scriptedStore) {
				c := created("a", 1, "ann", 1, 0, "")
				mustApply(t, db, c, created("a", 2, "bob", 1, 5, ""), settled(c, "confirmed", 10))
			},
			wantListings: 1, wantKnown: []string{"a"},
		},
		{
			name: "redis lost its data",
			between: func(_ *testing.T, _ *persistence.DB, st *scriptedStore) {
				st.loseData()
			},
			wantListings: 2, wantScans: 1, wantKnown: []string{"a"},
		},
		{
			name: "another instance found the loss",
			between: func(_ *testing.T, _ *persistence.DB, st *scriptedStore) {
				st.mu.Lock()
				st.epoch++
				st.mu.Unlock()
			},
			wantListings: 2, wantKnown: []string{"a"},
		},
		{
			name: "the generation's row is gone",
			between: func(t *testing.T, db *persistence.DB, _ *scriptedStore) {
				persistence.DeleteCatalogueRow(t, db)
				mustApply(t, db, offer("b", 1, 5, "B")) // writing items does not fail for it
			},
			wantListings: 3, wantKnown: []string{"a", "b"},
		},
		{
			name:   "the listing is older than Relist",
			relist: 20 * time.Millisecond,
			between: func(*testing.T, *persistence.DB, *scriptedStore) {
				time.Sleep(30 * time.Millisecond)
			},
			wantListings: 2, wantKnown: []string{"a"},
		},
	}
	for _, b := range backends() {
		for _, tc := range cases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				ctx := testCtx(t)
				db := b.open(t)
				mustApply(t, db, offer("a", 1, 10, "A"))
				listings := 0 // reads of the items table: Check's listings
				persistence.AfterQuery(t, db, func(table string) {
					if table == "items" {
						listings++
					}
				})
				st := &scriptedStore{epoch: 1}
				rec := &persistence.Recoverer{Store: st, DB: db, Interval: time.Hour, Grace: time.Millisecond, Relist: tc.relist,
					Log: slog.New(slog.NewTextHandler(newTestLog(t), nil))}
				if err := rec.Check(ctx); err != nil {
					t.Fatalf("first Check: %v", err)
				}
				if tc.between != nil {
					tc.between(t, db, st)
				}
				for i := 2; i <= 3; i++ {
					if err := rec.Check(ctx); err != nil {
						t.Fatalf("Check %d: %v", i, err)
					}
				}
				if n := listings; n != tc.wantListings {
					t.Errorf("%d listings of the record over three Checks, want %d", n, tc.wantListings)
				}
				if n := st.scanCount(); n != tc.wantScans {
					t.Errorf("%d scans, want %d", n, tc.wantScans)
				}
				for _, sku := range tc.wantKnown {
					if !rec.Knows(sku) {
						t.Errorf("the listing lacks %q", sku)
					}
				}
			})
		}
	}
}

// TestCatalogueGen: the generation moves once per transaction that wrote
// items, whatever else it wrote, never for reservations alone, and a
// second Open of the same record (another instance starting) keeps it.
func TestCatalogueGen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flashsale.db")
	db := openDB(t, "", path)
	gen := func(db *persistence.DB) int64 {
		t.Helper()
		g, err := db.CatalogueGen(ctx)
		if err != nil {
			t.Fatalf("CatalogueGen: %v", err)
		}
		return g
	}
	steps := []struct {
		name  string
		apply func()
		want  int64
	}{
		{name: "a new record", apply: func() {}, want: 0},
		{name: "two items in one batch", apply: func() { mustApply(t, db, offer("a", 1, 10, "A"), offer("b", 1, 10, "B")) }, want: 1},
		{name: "reservations only", apply: func() { mustApply(t, db, created("a", 1, "ann", 1, 0, "")) }, want: 1},
		{name: "an item with reservations", apply: func() { mustApply(t, db, offer("c", 1, 10, "C"), created("c", 1, "ann", 1, 0, "")) }, want: 2},
		{name: "an older offer the record keeps out", apply: func() { mustApply(t, db, offer("a", 0, 1, "old")) }, want: 3},
	}
	for _, s := range steps {
		s.apply()
		if got := gen(db); got != s.want {
			t.Fatalf("after %s: generation %d, want %d", s.name, got, s.want)
		}
	}
	if got := gen(openDB(t, "", path)); got != 3 {
		t.Errorf("a second Open reads generation %d, want 3 (kept)", got)
	}
}
