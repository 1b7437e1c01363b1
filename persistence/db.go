// Package persistence is the durable record of flashsale: items and
// reservations in MySQL (or an embedded SQLite file) through GORM, the
// syncer that copies the Redis outbox into it, the recovery that rebuilds
// Redis from it, and the audit that compares the two.
package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/glebarez/sqlite"
	mysqldrv "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/flashsale/flashsale/reservation"
)

// itemRow is an item's offer. Rev is the seed revision from Redis; a row
// only takes an offer with a higher one.
type itemRow struct {
	SKU          string     `gorm:"column:sku;primaryKey;size:64"`
	Name         string     `gorm:"size:200;not null"`
	Stock        int64      `gorm:"not null"`
	PerUserLimit int        `gorm:"not null"`
	HoldMS       int64      `gorm:"column:hold_ms;not null"`
	StartsAt     *time.Time `gorm:"precision:3"`
	EndsAt       *time.Time `gorm:"precision:3"`
	Buckets      int        `gorm:"not null;default:1"`
	Rev          int64      `gorm:"not null"`
	CreatedAt    time.Time  `gorm:"precision:3;not null;autoCreateTime:false"`
	UpdatedAt    time.Time  `gorm:"precision:3;not null;autoUpdateTime:false"`
}

func (itemRow) TableName() string { return "items" }

// reservationRow is one reservation. StatusRank orders statuses (pending 0,
// any final status 1) so that an older change can never overwrite a newer
// one, whatever order the syncer delivers them in.
type reservationRow struct {
	ID               string    `gorm:"primaryKey;size:100"`
	SKU              string    `gorm:"column:sku;size:64;not null;index:idx_reservations_sku_status,priority:1"`
	UserID           string    `gorm:"size:64;not null"`
	Quantity         int       `gorm:"not null"`
	Status           string    `gorm:"size:16;not null;index:idx_reservations_sku_status,priority:2"`
	StatusRank       int       `gorm:"not null"`
	IdempotencyField string    `gorm:"size:200;not null;default:''"`
	CreatedAt        time.Time `gorm:"precision:3;not null;autoCreateTime:false"`
	ExpiresAt        time.Time `gorm:"precision:3;not null"`
	UpdatedAt        time.Time `gorm:"precision:3;not null;autoUpdateTime:false"`
}

func (reservationRow) TableName() string { return "reservations" }

// catalogueRow is the record's one row (ID 1) counting the transactions
// that wrote items: seeding, the only writer of items, moves it. An
// instance lists the record's items again only when it moved
// (Recoverer.Check), so keeping that list current costs one row's read,
// whatever the size of the catalogue.
type catalogueRow struct {
	ID  int   `gorm:"primaryKey;autoIncrement:false"`
	Gen int64 `gorm:"not null"`
}

func (catalogueRow) TableName() string { return "item_catalogue" }

func rank(s reservation.Status) int {
	if s == reservation.StatusPending {
		return 0
	}
	return 1
}

// DB is the durable record.
type DB struct {
	gorm  *gorm.DB
	mysql bool
	// resConflict is reservationUpsert as SQL, built once.
	resConflict string
	// resPrepared is the upsert of preparedRows reservations, prepared on
	// MySQL at first use (see upsertReservations); nil until then.
	prepMu      sync.Mutex
	resPrepared *sql.Stmt
}

// Open connects to MySQL when dsn is set (go-sql-driver syntax), else to the
// SQLite file at sqlitePath, and creates the tables.
func Open(ctx context.Context, dsn, sqlitePath string) (*DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true}
	var (
		g   *gorm.DB
		err error
	)
	if dsn != "" {
		mc, perr := mysqldrv.ParseDSN(dsn)
		if perr != nil {
			return nil, fmt.Errorf("persistence: mysql dsn: %w", perr)
		}
		// Times are stored and read in UTC whatever the DSN says.
		mc.ParseTime, mc.Loc = true, time.UTC
		// A statement of a size that will not come again (a partial batch)
		// goes with its values in: one round trip instead of prepare,
		// execute and close, and MySQL keeps no statement it will never
		// reuse. The one size that does come again, a full batch of
		// reservations, is prepared once and kept (upsertReservations).
		mc.InterpolateParams = true
		g, err = gorm.Open(mysql.Open(mc.FormatDSN()), cfg)
	} else {
		// WAL and a busy timeout: the syncer writes while recovery and the
		// audit read.
		g, err = gorm.Open(sqlite.Open(sqlitePath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"), cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: open: %w", err)
	}
	db := &DB{gorm: g, mysql: dsn != ""}
	db.resConflict = db.conflictSQL(db.reservationUpsert())
	sqlDB, err := g.DB()
	if err != nil {
		return nil, fmt.Errorf("persistence: open: %w", err)
	}
	if db.mysql {
		sqlDB.SetMaxOpenConns(16)
		sqlDB.SetMaxIdleConns(8)
		sqlDB.SetConnMaxLifetime(5 * time.Minute)
	} else {
		sqlDB.SetMaxOpenConns(1) // SQLite has one writer; queue here, not in busy loops
	}
	if err := g.WithContext(ctx).AutoMigrate(&itemRow{}, &reservationRow{}, &catalogueRow{}); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("persistence: create tables: %w", translate(err))
	}
	// Instances starting together each try; the first one's row stands.
	if err := g.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&catalogueRow{ID: 1}).Error; err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("persistence: create tables: %w", translate(err))
	}
	return db, nil
}

// Close closes the connections.
func (db *DB) Close() error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return err
	}
	db.prepMu.Lock()
	stmt := db.resPrepared
	db.resPrepared = nil
	db.prepMu.Unlock()
	var serr error
	if stmt != nil {
		serr = stmt.Close()
	}
	return errors.Join(serr, sqlDB.Close())
}

// Ping reports whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	sqlDB, err := db.gorm.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("persistence: ping: %w", translate(err))
	}
	return nil
}

// translate marks failures to reach the database as ErrUnavailable.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var me *mysqldrv.MySQLError
	if errors.As(err, &me) {
		if transient[me.Number] {
			// The server answered, but about itself, not the data: the
			// write is retried without counting against the entries.
			return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
		}
		return err // a query or data problem
	}
	if errors.Is(err, reservation.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", reservation.ErrUnavailable, err)
}

// transient are server errors that say nothing about the rows written:
// lock wait timeout, deadlock, too many connections, shutdown in progress,
// read-only (a failover in progress), out of resources.
var transient = map[uint16]bool{
	1205: true, 1213: true, 1040: true, 1053: true, 1290: true, 1836: true, 1792: true,
	1041: true, 1203: true, 1226: true, 3024: true,
}
