package persistence

import (
	"strings"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// TestApplyStatementMatchesGORM: the reservations upsert written by hand
// (upsertReservations) is the statement GORM's Create writes with the same
// ON CONFLICT clause, in both dialects, but for identifier quoting.
func TestApplyStatementMatchesGORM(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_123).UTC()
	rows := []reservationRow{
		{ID: "a.1", SKU: "a", UserID: "u1", Quantity: 1, Status: "pending", CreatedAt: at, ExpiresAt: at, UpdatedAt: at},
		{ID: "a.2", SKU: "a", UserID: "u2", Quantity: 2, Status: "confirmed", StatusRank: 1, IdempotencyField: "1:u:k",
			CreatedAt: at, ExpiresAt: at, UpdatedAt: at},
	}
	for _, tc := range []struct {
		name  string
		mysql bool
		open  gorm.Dialector
	}{
		{"mysql", true, mysql.New(mysql.Config{DSN: "root@tcp(127.0.0.1:1)/none", SkipInitializeWithVersion: true})},
		{"sqlite", false, sqlite.Open(t.TempDir() + "/dry.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gorm.Open(tc.open, &gorm.Config{DryRun: true, DisableAutomaticPing: true, SkipDefaultTransaction: true, Logger: logger.Discard})
			if err != nil {
				t.Fatal(err)
			}
			db := &DB{gorm: g, mysql: tc.mysql}
			db.resConflict = db.conflictSQL(db.reservationUpsert())
			created := g.Clauses(db.reservationUpsert()).Create(&rows)
			if created.Error != nil {
				t.Fatal(created.Error)
			}
			want := created.Statement

			var got *gorm.Statement
			g.Callback().Raw().Register("capture", func(tx *gorm.DB) { got = tx.Statement })
			if err := db.upsertReservations(g, rows); err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Fatal("no statement was built")
			}
			if g, w := plain(got.SQL.String()), plain(want.SQL.String()); g != w {
				t.Errorf("statement\n%s\nwant what GORM writes\n%s", g, w)
			}
			if len(got.Vars) != len(want.Vars) {
				t.Fatalf("%d values, GORM sends %d", len(got.Vars), len(want.Vars))
			}
			for i := range got.Vars {
				if got.Vars[i] != want.Vars[i] {
					t.Errorf("value %d is %#v, GORM sends %#v", i, got.Vars[i], want.Vars[i])
				}
			}
		})
	}
}

// plain is a statement without identifier quotes and spaces.
func plain(sql string) string {
	return strings.NewReplacer("`", "", `"`, "", " ", "").Replace(sql)
}
