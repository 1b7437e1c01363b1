// Package baseline is what flashsale replaces, kept only to be measured
// against it: three ways of selling one MySQL inventory row, from the naive
// read-then-write that oversold on 12.12 to the two correct locking ones.
package baseline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// Approach is one way of checking and taking stock in MySQL.
type Approach int

const (
	// Naive reads available, then writes back what it computed, with no
	// lock and no transaction: the 12.12 incident.
	Naive Approach = iota + 1
	// ForUpdate locks the row with SELECT ... FOR UPDATE inside a
	// transaction, checks, then writes.
	ForUpdate
	// Conditional lets the UPDATE check: available = available - q WHERE
	// available >= q, one statement, one row lock.
	Conditional
)

// Approaches lists every approach, in the order they are reported.
func Approaches() []Approach { return []Approach{Naive, ForUpdate, Conditional} }

func (a Approach) String() string {
	switch a {
	case Naive:
		return "naive"
	case ForUpdate:
		return "for_update"
	case Conditional:
		return "conditional"
	}
	return fmt.Sprintf("Approach(%d)", int(a))
}

// The outcomes of Buy that are not errors.
const (
	Purchased = "purchased"
	SoldOut   = "sold_out"
)

// sku is the one item every Shop sells: the benchmark measures contention
// on a single hot row, the case a flash sale is.
const sku = "flash-item"

// poolSize matches the benchmark's 64 clients, so no buyer waits for a
// connection rather than for the row.
const poolSize = 64

// Shop sells one item from a MySQL inventory row by one Approach.
type Shop struct {
	db       *sql.DB
	approach Approach
	// afterRead, when set, runs in Naive between the read and the write.
	// Tests use it to hold every buyer at that point, so the interleaving
	// the incident needs happens every time instead of by luck.
	afterRead func()
}

// Open creates the tables inventory and orders in the DSN's database, which
// must not have them yet (the caller makes a database of its own), and
// stocks the item with stock units.
func Open(ctx context.Context, dsn string, a Approach, stock int64) (*Shop, error) {
	switch a {
	case Naive, ForUpdate, Conditional:
	default:
		return nil, fmt.Errorf("baseline: unknown approach %d", int(a))
	}
	if stock < 0 {
		return nil, fmt.Errorf("baseline: stock %d is negative", stock)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("baseline: parse DSN: %w", err)
	}
	// Without interpolation every statement with arguments costs a
	// prepare, an execute and a close: three round trips. The baselines
	// must not lose on a driver setting the comparison is not about.
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("baseline: connector: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)

	s := &Shop{db: db, approach: a}
	if err := s.setUp(ctx, stock); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return s, nil
}

func (s *Shop) setUp(ctx context.Context, stock int64) error {
	stmts := []string{
		`CREATE TABLE inventory (
			sku       VARCHAR(64) NOT NULL PRIMARY KEY,
			stock     BIGINT      NOT NULL,
			available BIGINT      NOT NULL
		) ENGINE=InnoDB`,
		`CREATE TABLE orders (
			id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
			sku        VARCHAR(64) NOT NULL,
			user_id    VARCHAR(64) NOT NULL,
			quantity   INT         NOT NULL,
			created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
		) ENGINE=InnoDB`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("baseline: create tables (the database must be fresh): %w", err)
		}
	}
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO inventory (sku, stock, available) VALUES (?, ?, ?)`, sku, stock, stock); err != nil {
		return fmt.Errorf("baseline: stock the item: %w", err)
	}
	return nil
}

// Close closes the connection pool; the tables stay.
func (s *Shop) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("baseline: close: %w", err)
	}
	return nil
}

// Approach reports how the shop sells.
func (s *Shop) Approach() Approach { return s.approach }

// Buy tries to sell qty units to userID: Purchased with an order row
// written, or SoldOut with nothing written.
func (s *Shop) Buy(ctx context.Context, userID string, qty int) (string, error) {
	if qty < 1 {
		return "", fmt.Errorf("baseline: quantity %d must be at least 1", qty)
	}
	var (
		outcome string
		err     error
	)
	switch s.approach {
	case Naive:
		outcome, err = s.buyNaive(ctx, userID, qty)
	case ForUpdate:
		outcome, err = s.inTx(ctx, func(tx *sql.Tx) (string, error) { return buyForUpdate(ctx, tx, userID, qty) })
	case Conditional:
		outcome, err = s.inTx(ctx, func(tx *sql.Tx) (string, error) { return buyConditional(ctx, tx, userID, qty) })
	}
	if err != nil {
		return "", fmt.Errorf("baseline: %s buy: %w", s.approach, err)
	}
	return outcome, nil
}

// buyNaive is the bug: between the SELECT and the UPDATE any number of
// other buyers read the same value, and each writes back its own
// "available - qty", so all of them sell the same units.
func (s *Shop) buyNaive(ctx context.Context, userID string, qty int) (string, error) {
	var available int64
	if err := s.db.QueryRowContext(ctx,
		`SELECT available FROM inventory WHERE sku = ?`, sku).Scan(&available); err != nil {
		return "", fmt.Errorf("read available: %w", err)
	}
	if s.afterRead != nil {
		s.afterRead()
	}
	if available < int64(qty) {
		return SoldOut, nil
	}
	if _, err := s.db.ExecContext(ctx,
		`UPDATE inventory SET available = ? WHERE sku = ?`, available-int64(qty), sku); err != nil {
		return "", fmt.Errorf("write available: %w", err)
	}
	if err := insertOrder(ctx, s.db, userID, qty); err != nil {
		return "", err
	}
	return Purchased, nil
}

func buyForUpdate(ctx context.Context, tx *sql.Tx, userID string, qty int) (string, error) {
	var available int64
	if err := tx.QueryRowContext(ctx,
		`SELECT available FROM inventory WHERE sku = ? FOR UPDATE`, sku).Scan(&available); err != nil {
		return "", fmt.Errorf("lock the row: %w", err)
	}
	if available < int64(qty) {
		return SoldOut, nil
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE inventory SET available = available - ? WHERE sku = ?`, qty, sku); err != nil {
		return "", fmt.Errorf("take stock: %w", err)
	}
	if err := insertOrder(ctx, tx, userID, qty); err != nil {
		return "", err
	}
	return Purchased, nil
}

func buyConditional(ctx context.Context, tx *sql.Tx, userID string, qty int) (string, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE inventory SET available = available - ? WHERE sku = ? AND available >= ?`, qty, sku, qty)
	if err != nil {
		return "", fmt.Errorf("take stock: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", fmt.Errorf("rows affected: %w", err)
	}
	if n == 0 {
		return SoldOut, nil
	}
	if err := insertOrder(ctx, tx, userID, qty); err != nil {
		return "", err
	}
	return Purchased, nil
}

// inTx runs buy in a transaction and commits whatever it decided, a sale
// or nothing; an error rolls back.
func (s *Shop) inTx(ctx context.Context, buy func(tx *sql.Tx) (string, error)) (string, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("begin: %w", err)
	}
	outcome, err := buy(tx)
	if err != nil {
		return "", errors.Join(err, tx.Rollback())
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return outcome, nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertOrder(ctx context.Context, db execer, userID string, qty int) error {
	if _, err := db.ExecContext(ctx,
		`INSERT INTO orders (sku, user_id, quantity) VALUES (?, ?, ?)`, sku, userID, qty); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// Verification is what the tables say after a run.
type Verification struct {
	Stock        int64 // units offered
	Available    int64 // what the inventory row claims is left
	Orders       int64 // order rows
	UnitsOrdered int64 // units across the order rows
	// Oversold is how many units the orders promise beyond the stock: the
	// number that must be zero.
	Oversold int64
}

// Verify reads the inventory row and counts the orders.
func (s *Shop) Verify(ctx context.Context) (Verification, error) {
	var v Verification
	if err := s.db.QueryRowContext(ctx,
		`SELECT stock, available FROM inventory WHERE sku = ?`, sku).Scan(&v.Stock, &v.Available); err != nil {
		return Verification{}, fmt.Errorf("baseline: verify inventory: %w", err)
	}
	if err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM orders WHERE sku = ?`, sku).Scan(&v.Orders, &v.UnitsOrdered); err != nil {
		return Verification{}, fmt.Errorf("baseline: verify orders: %w", err)
	}
	v.Oversold = max(0, v.UnitsOrdered-v.Stock)
	return v, nil
}
