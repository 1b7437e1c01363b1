package persistence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/flashsale/flashsale/reservation"
)

// SKUs returns every item the record holds.
func (db *DB) SKUs(ctx context.Context) ([]string, error) {
	var skus []string
	if err := db.gorm.WithContext(ctx).Model(&itemRow{}).Order("sku").Pluck("sku", &skus).Error; err != nil {
		return nil, fmt.Errorf("persistence: list items: %w", translate(err))
	}
	return skus, nil
}

// CatalogueGen returns the count of transactions that wrote items to the
// record: when it has not moved, neither has the list SKUs returns.
func (db *DB) CatalogueGen(ctx context.Context) (int64, error) {
	var row catalogueRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", 1).Take(&row).Error; err != nil {
		return 0, fmt.Errorf("persistence: catalogue generation: %w", translate(err))
	}
	return row.Gen, nil
}

// Recorded reports which of skus the record holds.
func (db *DB) Recorded(ctx context.Context, skus []string) (map[string]bool, error) {
	out := make(map[string]bool, len(skus))
	for lo := 0; lo < len(skus); lo += 1000 {
		var found []string
		part := skus[lo:min(lo+1000, len(skus))]
		if err := db.gorm.WithContext(ctx).Model(&itemRow{}).Where("sku IN ?", part).Pluck("sku", &found).Error; err != nil {
			return nil, fmt.Errorf("persistence: look up items: %w", translate(err))
		}
		for _, sku := range found {
			out[sku] = true
		}
	}
	return out, nil
}

// Snapshot reads everything the record holds about one item, in one
// transaction so the item and its reservations agree.
func (db *DB) Snapshot(ctx context.Context, sku string) (reservation.Snapshot, error) {
	var snap reservation.Snapshot
	err := db.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		it, err := itemOf(tx, sku)
		if err != nil {
			return err
		}
		rows, err := reservationsOf(tx, sku)
		if err != nil {
			return err
		}
		snap.Item = fromItemRow(it)
		snap.Reservations = make([]reservation.RecordedReservation, len(rows))
		for i, r := range rows {
			snap.Reservations[i] = reservation.RecordedReservation{Reservation: fromReservationRow(r), IdempotencyField: r.IdempotencyField}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, reservation.ErrItemNotFound) {
			return snap, err
		}
		return snap, fmt.Errorf("persistence: snapshot %s: %w", sku, translate(err))
	}
	return snap, nil
}

// Item reads one item's recorded offer.
func (db *DB) Item(ctx context.Context, sku string) (reservation.ItemRecord, error) {
	it, err := itemOf(db.gorm.WithContext(ctx), sku)
	if err != nil {
		if errors.Is(err, reservation.ErrItemNotFound) {
			return reservation.ItemRecord{}, err
		}
		return reservation.ItemRecord{}, fmt.Errorf("persistence: item %s: %w", sku, translate(err))
	}
	return fromItemRow(it), nil
}

// itemOf reads an item's row; ErrItemNotFound when there is none.
func itemOf(q *gorm.DB, sku string) (itemRow, error) {
	var it itemRow
	err := q.Where("sku = ?", sku).Take(&it).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return it, reservation.ErrItemNotFound
	}
	return it, err
}

// reservationsOf reads an item's reservation rows, by id.
func reservationsOf(q *gorm.DB, sku string) ([]reservationRow, error) {
	var rows []reservationRow
	err := q.Where("sku = ?", sku).Order("id").Find(&rows).Error
	return rows, err
}

// Counts sums one item's reserved units by status.
func (db *DB) Counts(ctx context.Context, sku string) (reservation.Counts, error) {
	var rows []struct {
		Status string
		Units  int64
		Rows   int64
	}
	err := db.gorm.WithContext(ctx).Model(&reservationRow{}).
		Select("status, COALESCE(SUM(quantity), 0) AS units, COUNT(*) AS `rows`").
		Where("sku = ?", sku).Group("status").Scan(&rows).Error
	if err != nil {
		return reservation.Counts{}, fmt.Errorf("persistence: counts of %s: %w", sku, translate(err))
	}
	var c reservation.Counts
	for _, r := range rows {
		c.Rows += r.Rows
		switch reservation.Status(r.Status) {
		case reservation.StatusPending:
			c.Pending = r.Units
		case reservation.StatusConfirmed:
			c.Confirmed = r.Units
		case reservation.StatusCancelled:
			c.Cancelled = r.Units
		case reservation.StatusExpired:
			c.Expired = r.Units
		}
	}
	return c, nil
}

// Reservation reads one recorded reservation.
func (db *DB) Reservation(ctx context.Context, id string) (reservation.Reservation, error) {
	var r reservationRow
	if err := db.gorm.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return reservation.Reservation{}, reservation.ErrReservationNotFound
		}
		return reservation.Reservation{}, fmt.Errorf("persistence: reservation %s: %w", id, translate(err))
	}
	return fromReservationRow(r), nil
}

// Reservations reads every recorded reservation of an item, by id.
func (db *DB) Reservations(ctx context.Context, sku string) ([]reservation.Reservation, error) {
	rows, err := reservationsOf(db.gorm.WithContext(ctx), sku)
	if err != nil {
		return nil, fmt.Errorf("persistence: reservations of %s: %w", sku, translate(err))
	}
	out := make([]reservation.Reservation, len(rows))
	for i, r := range rows {
		out[i] = fromReservationRow(r)
	}
	return out, nil
}

func fromItemRow(it itemRow) reservation.ItemRecord {
	rec := reservation.ItemRecord{
		ItemSpec: reservation.ItemSpec{
			SKU: it.SKU, Name: it.Name, Stock: it.Stock, PerUserLimit: it.PerUserLimit,
			Hold: time.Duration(it.HoldMS) * time.Millisecond, Buckets: max(it.Buckets, 1),
		},
		Rev: it.Rev, CreatedAt: it.CreatedAt.UTC(), UpdatedAt: it.UpdatedAt.UTC(),
	}
	if it.StartsAt != nil {
		rec.StartsAt = it.StartsAt.UTC()
	}
	if it.EndsAt != nil {
		rec.EndsAt = it.EndsAt.UTC()
	}
	return rec
}

func fromReservationRow(r reservationRow) reservation.Reservation {
	return reservation.Reservation{
		ID: r.ID, SKU: r.SKU, UserID: r.UserID, Quantity: r.Quantity, Status: reservation.Status(r.Status),
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}
}
