package persistence_test

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// splitSpec is an item whose stock is split over three buckets.
func splitSpec(sku string) reservation.ItemSpec {
	return reservation.ItemSpec{SKU: sku, Name: "Split", Stock: 12, PerUserLimit: 2, Hold: time.Hour, Buckets: 3}
}

// splitWorkload seeds a bucketed item and makes holds of eight users (so
// in every bucket), one with an idempotency key; it confirms two and
// cancels two. It returns the reservation ids and the idempotency field of
// each that has one.
func splitWorkload(t *testing.T, env *syncEnv, sku string) ([]string, map[string]string) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := env.store.Seed(ctx, splitSpec(sku)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	var ids []string
	idem := map[string]string{}
	for u := range 8 {
		id, err := reservation.NewID(sku)
		if err != nil {
			t.Fatal(err)
		}
		user, key := "user-"+strconv.Itoa(u), ""
		if u == 5 {
			key = "k5"
		}
		r, _, err := env.store.Reserve(ctx, reservation.ReserveRequest{ID: id, SKU: sku, UserID: user, Quantity: 1 + u%2, IdempotencyKey: key})
		if err != nil {
			t.Fatalf("reserve for %s: %v", user, err)
		}
		ids = append(ids, r.ID)
		if key != "" {
			idem[r.ID] = idemField(user, key)
		}
	}
	for _, i := range []int{0, 3} {
		if _, err := env.store.Confirm(ctx, ids[i]); err != nil {
			t.Fatalf("confirm: %v", err)
		}
	}
	for _, i := range []int{1, 4} {
		if _, err := env.store.Cancel(ctx, ids[i]); err != nil {
			t.Fatalf("cancel: %v", err)
		}
	}
	return ids, idem
}

// wantSplitRecord fails unless the record holds every reservation as Redis
// reports it, the item's offer with its bucket count, and counts that match
// the item's counters.
func wantSplitRecord(t *testing.T, env *syncEnv, sku string, ids []string, idem map[string]string) {
	t.Helper()
	ctx := testCtx(t)
	var counts reservation.Counts
	for _, id := range ids {
		want, err := env.store.Reservation(ctx, id)
		if err != nil {
			t.Fatalf("Redis reservation %s: %v", id, err)
		}
		if got, err := env.db.Reservation(ctx, id); err != nil || got != want {
			t.Errorf("reservation %s:\n recorded %+v, %v\n in Redis %+v", id, got, err, want)
		}
		count(&counts, want)
	}
	item, err := env.store.Item(ctx, sku)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := env.db.Counts(ctx, sku); err != nil || got != counts || got.Pending != item.Reserved || got.Confirmed != item.Sold {
		t.Errorf("Counts = %+v, %v; Redis's reservations sum to %+v, its item %+v", got, err, counts, item)
	}
	spec := splitSpec(sku)
	want := reservation.ItemRecord{ItemSpec: spec, Rev: 1, CreatedAt: item.CreatedAt, UpdatedAt: item.UpdatedAt}
	if got, err := env.db.Item(ctx, sku); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("recorded item:\n got  %+v, %v\n want %+v", got, err, want)
	}
	snap, err := env.db.Snapshot(ctx, sku)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range snap.Reservations {
		if r.IdempotencyField != idem[r.ID] {
			t.Errorf("reservation %s: idempotency field %q, want %q", r.ID, r.IdempotencyField, idem[r.ID])
		}
	}
}

// TestSyncerBuckets: the syncer reads the outbox of every bucket of an
// item and copies each entry to the record once; the item's row has the
// bucket count.
func TestSyncerBuckets(t *testing.T) {
	forEachSyncEnv(t, func(t *testing.T, env *syncEnv) {
		ctx := testCtx(t)
		ids, idem := splitWorkload(t, env, "bsync")
		// One entry for the seed, one per hold, one per confirm or cancel.
		entries, err := env.store.ItemBacklog(ctx, "bsync")
		if err != nil || entries != 1+8+4 {
			t.Fatalf("ItemBacklog = %d, %v; want 13", entries, err)
		}
		streams := 0
		for _, name := range redisstore.Buckets("bsync", 3) {
			if env.rdb.XLen(ctx, env.key(name, "outbox")).Val() > 0 {
				streams++
			}
		}
		if streams != 3 {
			t.Fatalf("entries in %d of the 3 buckets' outboxes, want all", streams)
		}

		s := env.startSyncer(t, "c1", time.Minute)
		env.waitSynced(t, 0, s)
		if got := syncedCount(t, entries, s); got != entries {
			t.Errorf("Stats().Synced = %d, want %d: every entry once", got, entries)
		}
		wantSplitRecord(t, env, "bsync", ids, idem)

		// Later changes, in a bucket other than the head, follow.
		if _, err := env.store.Confirm(ctx, ids[2]); err != nil {
			t.Fatal(err)
		}
		env.waitSynced(t, 0, s)
		if got := syncedCount(t, entries+1, s); got != entries+1 {
			t.Errorf("Stats().Synced = %d, want %d", got, entries+1)
		}
		wantSplitRecord(t, env, "bsync", ids, idem)
	})
}
