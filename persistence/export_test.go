package persistence

import (
	"context"
	"testing"

	"gorm.io/gorm"
)

// AfterQuery runs fn after every query db makes, with the table it read, so
// that a test can act at an exact point between two reads. fn runs on the
// reader's goroutine, inside its transaction if it has one.
func AfterQuery(t testing.TB, db *DB, fn func(table string)) {
	t.Helper()
	err := db.gorm.Callback().Query().After("gorm:query").Register("test:after_query", func(tx *gorm.DB) {
		fn(tx.Statement.Table)
	})
	if err != nil {
		t.Fatalf("register the query callback: %v", err)
	}
}

// Pass runs one pass of the periodic audit over skus.
func (a *Auditor) Pass(ctx context.Context, skus []string) map[string][]string {
	return a.pass(ctx, skus, map[string][]string{})
}

// Knows reports whether the last listing Check took holds sku.
func (r *Recoverer) Knows(sku string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known[sku]
}

// DeleteCatalogueRow removes the record's catalogue generation, as an
// operator emptying the table would.
func DeleteCatalogueRow(t testing.TB, db *DB) {
	t.Helper()
	if err := db.gorm.Exec("DELETE FROM item_catalogue").Error; err != nil {
		t.Fatalf("delete the catalogue row: %v", err)
	}
}
