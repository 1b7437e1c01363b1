//go:build fault

package faulttest

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestClusterMasterKilledUnderLoad: the master that owns a hot item's slot
// dies outright (kill -9) under load; the cluster promotes its replica by
// itself. Sales on that item must resume within 5s of the promotion (they
// took about 55s while go-redis kept its slot map for its default 60s), and
// the item's counters still add up to its stock.
func TestClusterMasterKilledUnderLoad(t *testing.T) {
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{Replicas: 1})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, nil))
	sku := rc.OnEachMaster(t, "killed")[0]
	seed(t, fs.URL(), sku, 1_000_000, 1)
	slot, err := cc.ClusterKeySlot(context.Background(), "{"+sku+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, fs.URL(), sku, 8)
	time.Sleep(time.Second)
	waitAcked(t, l, 0, 10*time.Second)
	old := rc.MasterOf(t, int(slot))
	_, promotedAt := rc.KillMaster(t, old)
	ackedAt := l.AckedCount()
	for l.AckedCount() <= ackedAt+10 {
		if time.Since(promotedAt) > 30*time.Second {
			t.Fatalf("no sale within 30s of the promotion; errors %v, e.g. %v", l.ErrorCounts(), l.ErrorExamples())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resumed := time.Since(promotedAt)
	res := l.Stop()
	t.Logf("sales resumed %v after the promotion; load %v; errors %v, e.g. %v", resumed.Round(time.Millisecond), res, l.ErrorCounts(), l.ErrorExamples())
	if resumed > 5*time.Second {
		t.Errorf("sales resumed %v after the promotion, want within 5s", resumed.Round(time.Millisecond))
	}
	resp, err := http.Get(fs.URL() + "/v1/items/" + sku)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var it struct{ Stock, Available, Reserved, Sold int64 }
	if err := json.NewDecoder(resp.Body).Decode(&it); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("item after the failover: %d, %v", resp.StatusCode, err)
	}
	if it.Available+it.Reserved+it.Sold != it.Stock || it.Available < 0 || it.Reserved < 0 || it.Sold < 0 {
		t.Errorf("item after the failover: %+v, want available + reserved + sold == stock, none below zero", it)
	}
}
