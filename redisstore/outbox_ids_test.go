package redisstore_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
)

// idKind is a way to write a reservation id into an item's outbox, and
// whether the parser must take it as the item's.
type idKind struct {
	name  string
	valid bool
	draw  func(t *rapid.T) string
}

// randomPart draws the random part of an id of length n, of the characters
// NewID uses.
func randomPart(t *rapid.T, n int) string {
	return rapid.StringOfN(rapid.SampledFrom([]rune("ABCXYZabcxyz0189-_")), n, n, -1).Draw(t, "random part")
}

func outboxIDKinds(sku string) []idKind {
	r22 := func(t *rapid.T) string { return randomPart(t, 22) }
	return []idKind{
		{"the item's", true, func(t *rapid.T) string { return sku + "." + r22(t) }},
		{"the item's, naming a bucket", true, func(t *rapid.T) string {
			return sku + "~" + rapid.StringMatching(`[1-9][0-9]{0,8}`).Draw(t, "tag") + "." + r22(t)
		}},
		{"another item's", false, func(t *rapid.T) string {
			other := rapid.SampledFrom([]string{"b", sku + "b", sku + "_", sku + "-1", strings.ToUpper(sku), "x" + sku}).Draw(t, "other sku")
			return other + "." + r22(t)
		}},
		{"another item's, naming a bucket", false, func(t *rapid.T) string {
			return rapid.SampledFrom([]string{"b", sku + "b"}).Draw(t, "other sku") + "~1." + r22(t)
		}},
		{"a random part too short or too long", false, func(t *rapid.T) string {
			return sku + "." + randomPart(t, rapid.SampledFrom([]int{0, 1, 21, 23, 30}).Draw(t, "length"))
		}},
		{"a random part with a character NewID never writes", false, func(t *rapid.T) string {
			p := []rune(r22(t))
			p[rapid.IntRange(0, 21).Draw(t, "at")] = rapid.SampledFrom([]rune("+/=|~ ")).Draw(t, "bad")
			return sku + "." + string(p)
		}},
		{"no dot", false, func(t *rapid.T) string { return sku + r22(t) }},
		{"no sku", false, func(t *rapid.T) string { return "." + r22(t) }},
		{"a malformed bucket tag", false, func(t *rapid.T) string {
			tag := rapid.SampledFrom([]string{"", "x", "1x", "1234567890", "1~2", "-1"}).Draw(t, "tag")
			return sku + "~" + tag + "." + r22(t)
		}},
	}
}

// TestPropertyOutboxEntryIDs writes reservation entries whose ids are drawn
// from kinds that do and do not name the outbox's item into the outboxes of
// an item's buckets. Reading through the consumer group, every entry whose
// id is not of the item comes with Err set and no change; the others parse
// to a change of that reservation. Unsynced, which recovery reads, returns
// exactly the changes of the item's own ids.
func TestPropertyOutboxEntryIDs(t *testing.T) {
	mr, rdb := redistest.Miniredis(t)
	s := newTestStore(t, rdb, mr, "oi")
	ctx := context.Background()
	const sku = "a"
	kinds := outboxIDKinds(sku)
	rapid.Check(t, func(rt *rapid.T) {
		mr.FlushAll()
		n := rapid.IntRange(1, 3).Draw(rt, "buckets")
		names := redisstore.Buckets(sku, n)
		for _, name := range names {
			if err := s.rdb.SAdd(ctx, s.prefix+":catalog", name).Err(); err != nil {
				rt.Fatalf("SADD: %v", err)
			}
		}
		type written struct {
			kind idKind
			id   string // the reservation id
		}
		// By bucket and entry id: entries of two streams may share an id.
		byEntry := map[[2]string]written{}
		var wantUnsynced []string
		for range rapid.IntRange(1, 8).Draw(rt, "entries") {
			k := rapid.SampledFrom(kinds).Draw(rt, "kind")
			id := k.draw(rt)
			bucket := rapid.SampledFrom(names).Draw(rt, "outbox")
			entry, err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.key(bucket, "outbox"),
				Values: []any{"k", "res", "id", id, "rec", "pending|1|1000|61000|1000|alice", "idem", ""}}).Result()
			if err != nil {
				rt.Fatalf("XADD: %v", err)
			}
			if err := s.MarkDirty(ctx, bucket); err != nil {
				rt.Fatal(err)
			}
			byEntry[[2]string{bucket, entry}] = written{kind: k, id: id}
			if k.valid {
				wantUnsynced = append(wantUnsynced, id)
			}
		}

		ob, err := s.Outbox(redisstore.OutboxOptions{Consumer: "c1", ClaimIdle: time.Minute, MaxTries: 3, Scan: time.Millisecond})
		if err != nil {
			rt.Fatalf("Outbox: %v", err)
		}
		got, err := ob.Read(ctx, 100)
		if err != nil || len(got) != len(byEntry) {
			rt.Fatalf("Read = %d entries, %v; want the %d written", len(got), err, len(byEntry))
		}
		for _, e := range got {
			w, ok := byEntry[[2]string{e.Bucket, e.ID}]
			if !ok {
				rt.Fatalf("Read an entry %s of %s never written", e.ID, e.Bucket)
			}
			if e.SKU != sku {
				rt.Fatalf("entry %s (%s id %q): SKU %q, want %q", e.ID, w.kind.name, w.id, e.SKU, sku)
			}
			switch {
			case w.kind.valid && e.Err != nil:
				rt.Fatalf("entry %s (%s id %q): %v, want it parsed", e.ID, w.kind.name, w.id, e.Err)
			case w.kind.valid && (e.Change.Reservation == nil || e.Change.Reservation.ID != w.id || e.Change.Reservation.SKU != sku):
				rt.Fatalf("entry %s (%s id %q): change %+v, want reservation %s of %s", e.ID, w.kind.name, w.id, e.Change.Reservation, w.id, sku)
			case !w.kind.valid && e.Err == nil:
				rt.Fatalf("entry %s (%s id %q) parsed to %+v, want an error: the id is not of item %s",
					e.ID, w.kind.name, w.id, e.Change.Reservation, sku)
			case !w.kind.valid && (e.Change.Reservation != nil || e.Change.Item != nil):
				rt.Fatalf("entry %s (%s id %q): error %v with a change %+v, want none", e.ID, w.kind.name, w.id, e.Err, e.Change)
			}
		}

		changes, err := s.Unsynced(ctx, sku, n)
		if err != nil {
			rt.Fatalf("Unsynced: %v", err)
		}
		var ids []string
		for _, c := range changes {
			if c.Reservation == nil {
				rt.Fatalf("Unsynced returned a change without a reservation: %+v", c)
			}
			ids = append(ids, c.Reservation.ID)
		}
		slices.Sort(ids)
		slices.Sort(wantUnsynced)
		if !slices.Equal(ids, wantUnsynced) {
			rt.Fatalf("Unsynced = %q, want the item's own ids %q", ids, wantUnsynced)
		}
	})
}
