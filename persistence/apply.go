package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/flashsale/flashsale/reservation"
)

// Apply writes changes in one transaction. It is idempotent and
// order-insensitive: a reservation keeps its status unless a change carries
// a later one (pending -> final), an item keeps its offer unless a change
// carries a higher revision. Delivering a change twice, late or out of order
// leaves the same rows.
func (db *DB) Apply(ctx context.Context, changes []reservation.Change) error {
	items, res := merge(changes)
	if len(items) == 0 && len(res) == 0 {
		return nil
	}
	var err error
	// Two syncers upserting the same rows can deadlock in InnoDB; the loser
	// is rolled back whole and simply goes again.
	for attempt := 0; attempt < 5; attempt++ {
		err = db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if len(items) > 0 {
				if err := tx.Clauses(db.itemUpsert()).CreateInBatches(&items, 500).Error; err != nil {
					return err
				}
			}
			if err := db.upsertReservations(tx, res); err != nil {
				return err
			}
			if len(items) == 0 {
				return nil
			}
			// Last: the row is then locked only for the commit, and a
			// transaction holding it waits for nothing else.
			return tx.Model(&catalogueRow{}).Where("id = ?", 1).UpdateColumn("gen", gorm.Expr("gen + 1")).Error
		})
		if !retryable(err) || ctx.Err() != nil {
			break
		}
		sleep(ctx, time.Duration(attempt+1)*10*time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("persistence: apply %d items, %d reservations: %w", len(items), len(res), translate(err))
	}
	return nil
}

func retryable(err error) bool {
	var me *mysqldrv.MySQLError
	// 1213 deadlock, 1205 lock wait timeout.
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// merge folds a batch into one row per key, the furthest state of each, in
// key order (a fixed lock order makes deadlocks between syncers rarer).
func merge(changes []reservation.Change) ([]itemRow, []reservationRow) {
	// Rows are kept in slices and found through maps of their index: a batch
	// is mostly one change per reservation, and copying rows in and out of
	// a map of values was the syncer's largest cost in the service after
	// the SQL itself.
	var itemRows []itemRow
	var items map[string]int
	resRows := make([]reservationRow, 0, len(changes))
	res := make(map[string]int, len(changes))
	for _, c := range changes {
		if it := c.Item; it != nil {
			if items == nil {
				items = map[string]int{}
			}
			if i, ok := items[it.SKU]; !ok {
				items[it.SKU] = len(itemRows)
				itemRows = append(itemRows, toItemRow(*it))
			} else if it.Rev > itemRows[i].Rev {
				itemRows[i] = toItemRow(*it)
			}
		}
		if r := c.Reservation; r != nil {
			i, ok := res[r.ID]
			if !ok {
				res[r.ID] = len(resRows)
				resRows = append(resRows, toReservationRow(*r, c.IdempotencyField))
				continue
			}
			old := &resRows[i]
			switch row := toReservationRow(*r, c.IdempotencyField); {
			case row.StatusRank > old.StatusRank:
				if row.IdempotencyField == "" {
					row.IdempotencyField = old.IdempotencyField
				}
				*old = row
			case old.IdempotencyField == "" && row.IdempotencyField != "":
				old.IdempotencyField = row.IdempotencyField
			}
		}
	}
	slices.SortFunc(itemRows, func(a, b itemRow) int { return strings.Compare(a.SKU, b.SKU) })
	slices.SortFunc(resRows, func(a, b reservationRow) int { return strings.Compare(a.ID, b.ID) })
	return itemRows, resRows
}

// itemUpsert takes the incoming offer only when its revision is higher.
// MySQL applies ON DUPLICATE KEY assignments left to right, each seeing the
// ones before, so rev is assigned last.
func (db *DB) itemUpsert() clause.OnConflict {
	cols := []string{"name", "stock", "per_user_limit", "hold_ms", "starts_at", "ends_at", "buckets", "updated_at"}
	return db.upsert("sku", "items", "rev", cols)
}

// upsertReservations writes rows as reservationUpsert says. The statement
// is written here, not by GORM's Create: its reflection over every field of
// every row (ConvertToCreateValues) was 2.6 % of the service's CPU on the
// success path, where every hold is a row. TestApplyStatementMatchesGORM
// holds it to what Create writes.
//
// On MySQL, whole chunks of preparedRows go through one statement prepared
// once per connection of the pool: the values travel binary and MariaDB
// does not parse the statement again (parsing was a sixth of its CPU per
// row). The rest, and everything on SQLite, goes as text, 500 rows a
// statement.
func (db *DB) upsertReservations(tx *gorm.DB, rows []reservationRow) error {
	ctx := tx.Statement.Context
	if sqlTx, ok := tx.Statement.ConnPool.(*sql.Tx); ok && db.mysql {
		for len(rows) >= preparedRows {
			stmt, err := db.preparedUpsert(ctx)
			if err != nil {
				break // as text below; a dead server fails there too
			}
			args := appendReservationArgs(make([]any, 0, reservationColumns*preparedRows), rows[:preparedRows])
			if _, err := sqlTx.StmtContext(ctx, stmt).ExecContext(ctx, args...); err != nil {
				return err
			}
			rows = rows[preparedRows:]
		}
	}
	for chunk := range slices.Chunk(rows, 500) {
		args := appendReservationArgs(make([]any, 0, reservationColumns*len(chunk)), chunk)
		if err := tx.Exec(db.reservationUpsertSQL(len(chunk)), args...).Error; err != nil {
			return err
		}
	}
	return nil
}

// preparedRows is how many reservations the prepared upsert writes: a
// whole batch at the default FLASHSALE_SYNC_BATCH, which is what the
// syncer reads at full load. (Chunks of 100 saved nothing: five statements
// a batch cost MariaDB what the parsing of one had.)
const preparedRows = 500

// preparedUpsert is the upsert of preparedRows rows, prepared on first use
// and kept until Close.
func (db *DB) preparedUpsert(ctx context.Context) (*sql.Stmt, error) {
	db.prepMu.Lock()
	defer db.prepMu.Unlock()
	if db.resPrepared != nil {
		return db.resPrepared, nil
	}
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return nil, err
	}
	stmt, err := sqlDB.PrepareContext(ctx, db.reservationUpsertSQL(preparedRows))
	if err != nil {
		return nil, err
	}
	db.resPrepared = stmt
	return stmt, nil
}

// reservationUpsertSQL is the upsert of n rows, with placeholders.
func (db *DB) reservationUpsertSQL(n int) string {
	var b strings.Builder
	b.Grow(len(reservationInsert) + n*(len(reservationPlaceholders)+1) + len(db.resConflict))
	b.WriteString(reservationInsert)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(reservationPlaceholders)
	}
	b.WriteString(db.resConflict)
	return b.String()
}

// appendReservationArgs appends the values of rows in the statement's order.
func appendReservationArgs(args []any, rows []reservationRow) []any {
	for _, r := range rows {
		args = append(args, r.ID, r.SKU, r.UserID, r.Quantity, r.Status, r.StatusRank, r.IdempotencyField,
			r.CreatedAt, r.ExpiresAt, r.UpdatedAt)
	}
	return args
}

// The columns upsertReservations writes, in reservationRow's order.
const (
	reservationInsert = "INSERT INTO reservations (id,sku,user_id,quantity,status,status_rank,idempotency_field," +
		"created_at,expires_at,updated_at) VALUES "
	reservationPlaceholders = "(?,?,?,?,?,?,?,?,?,?)"
	reservationColumns      = 10
)

// conflictSQL is up as SQL, after the VALUES of an INSERT.
func (db *DB) conflictSQL(up clause.OnConflict) string {
	var b strings.Builder
	if db.mysql {
		b.WriteString(" ON DUPLICATE KEY UPDATE ")
	} else {
		b.WriteString(" ON CONFLICT (" + up.Columns[0].Name + ") DO UPDATE SET ")
	}
	for i, a := range up.DoUpdates {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(a.Column.Name + "=" + a.Value.(clause.Expr).SQL)
	}
	return b.String()
}

// reservationUpsert takes the incoming status only when it is further along,
// and the idempotency field whenever the row has none yet.
func (db *DB) reservationUpsert() clause.OnConflict {
	up := db.upsert("id", "reservations", "status_rank", []string{"status", "updated_at"})
	var keep string
	if db.mysql {
		keep = "IF(idempotency_field = '', VALUES(idempotency_field), idempotency_field)"
	} else {
		keep = "CASE WHEN reservations.idempotency_field = '' THEN excluded.idempotency_field ELSE reservations.idempotency_field END"
	}
	// Before the rank column, which must stay last.
	up.DoUpdates = slices.Insert(up.DoUpdates, len(up.DoUpdates)-1,
		clause.Assignment{Column: clause.Column{Name: "idempotency_field"}, Value: gorm.Expr(keep)})
	return up
}

// upsert builds "on conflict: take cols from the incoming row when its
// order column is greater; then keep the greater order".
func (db *DB) upsert(key, table, order string, cols []string) clause.OnConflict {
	set := make(clause.Set, 0, len(cols)+1)
	for _, c := range cols {
		var expr string
		if db.mysql {
			expr = fmt.Sprintf("IF(VALUES(%[1]s) > %[1]s, VALUES(%[2]s), %[2]s)", order, c)
		} else {
			expr = fmt.Sprintf("CASE WHEN excluded.%[1]s > %[3]s.%[1]s THEN excluded.%[2]s ELSE %[3]s.%[2]s END", order, c, table)
		}
		set = append(set, clause.Assignment{Column: clause.Column{Name: c}, Value: gorm.Expr(expr)})
	}
	var last string
	if db.mysql {
		last = fmt.Sprintf("GREATEST(%[1]s, VALUES(%[1]s))", order)
	} else {
		last = fmt.Sprintf("MAX(%[2]s.%[1]s, excluded.%[1]s)", order, table)
	}
	set = append(set, clause.Assignment{Column: clause.Column{Name: order}, Value: gorm.Expr(last)})
	return clause.OnConflict{Columns: []clause.Column{{Name: key}}, DoUpdates: set}
}

func toItemRow(it reservation.ItemRecord) itemRow {
	return itemRow{
		SKU: it.SKU, Name: it.Name, Stock: it.Stock, PerUserLimit: it.PerUserLimit,
		HoldMS: it.Hold.Milliseconds(), StartsAt: optional(it.StartsAt), EndsAt: optional(it.EndsAt),
		Buckets: max(it.Buckets, 1), Rev: it.Rev, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt,
	}
}

func toReservationRow(r reservation.Reservation, idem string) reservationRow {
	return reservationRow{
		ID: r.ID, SKU: r.SKU, UserID: r.UserID, Quantity: r.Quantity, Status: string(r.Status),
		StatusRank: rank(r.Status), IdempotencyField: idem,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, UpdatedAt: r.UpdatedAt,
	}
}

func optional(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
