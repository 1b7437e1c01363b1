//go:build integration

package hostile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// reserveCancelLoop is row 6: reserve then cancel, 200 times, one user,
// each with its own Idempotency-Key, kept 200 records and 200 keys in Redis
// for good (about 330 bytes a cycle): with noeviction, a full Redis then
// refuses every buyer. With a retention of a second (FLASHSALE_RETENTION),
// each final reservation and its key leave Redis once the record has it,
// and Redis's memory for the service's keys comes back to where it was
// before the loop; the reservations are still answered, from the record.
func reserveCancelLoop(t *testing.T, _ *env) {
	envs, rdb := limitedServices(t, 1, map[string]string{"FLASHSALE_RETENTION": "1s"})
	e := envs[0]
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if st, _, body := e.do(t, "PUT", "/admin/v1/items/loop", `{"stock":10,"per_user_limit":1}`, admin); st != 201 {
		t.Fatalf("seed: %d %s", st, body)
	}
	cycle := func(i int) string {
		st, _, body := e.do(t, "POST", "/v1/items/loop/reservations", `{"user_id":"looper","quantity":1}`,
			map[string]string{"Idempotency-Key": fmt.Sprintf("cycle-%d", i)})
		var r struct{ ID string }
		if st != 201 || json.Unmarshal(body, &r) != nil {
			t.Fatalf("cycle %d reserve: %d %s", i, st, body)
		}
		if st, _, body := e.do(t, "POST", "/v1/reservations/"+r.ID+"/cancel", "", nil); st != 200 {
			t.Fatalf("cycle %d cancel: %d %s", i, st, body)
		}
		return r.ID
	}
	// One cycle first, gone before the baseline: every key the item has
	// while it sells exists then, as after the loop.
	cycle(-1)
	waitNoFinal(t, rdb)
	before := keysMemory(t, rdb)

	var ids []string
	for i := range 200 {
		ids = append(ids, cycle(i))
	}
	during := keysMemory(t, rdb)
	waitNoFinal(t, rdb)
	after := keysMemory(t, rdb)
	t.Logf("Redis memory of the service's keys: %d bytes before, %d after 200 reserve+cancel cycles, %d once retained for 1s", before, during, after)
	if during-before < 200*100 {
		t.Errorf("the loop added only %d bytes: the test does not see the records", during-before)
	}
	if after > before+256 {
		t.Errorf("Redis memory did not come back: %d bytes before the loop, %d after (+%d)", before, after, after-before)
	}
	// The reservations are still answered, from the record.
	for _, c := range []call{
		{method: "GET", path: "/v1/reservations/" + ids[0], status: 200},
		{method: "POST", path: "/v1/reservations/" + ids[0] + "/cancel", status: 200},
		{method: "POST", path: "/v1/reservations/" + ids[0] + "/confirm", header: map[string]string{"Authorization": "Bearer " + serviceToken},
			status: 409, code: "reservation_cancelled"},
		// The key of a dropped reservation makes a new hold (it is a new request now).
		{method: "POST", path: "/v1/items/loop/reservations", body: `{"user_id":"looper","quantity":1}`,
			header: map[string]string{"Idempotency-Key": "cycle-0"}, status: 201},
	} {
		e.expect(t, c)
	}
}

// waitNoFinal waits until Redis tracks no final reservation: every one has
// been synced and dropped.
func waitNoFinal(t *testing.T, rdb *goredis.Client) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		keys, err := rdb.Keys(ctx, "*:final").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("final reservations still in Redis after 30s: %v", keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// keysMemory is the memory Redis reports for every key (MEMORY USAGE), the
// service's alone on this Redis of its own.
func keysMemory(t *testing.T, rdb *goredis.Client) int64 {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, k := range keys {
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err != nil && err != goredis.Nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		total += n
	}
	return total
}
