//go:build integration

package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// The tests here start a private Redis Cluster (internal/testenv), so they
// are built only with the integration tag (make test-integration, make test).

// TestRunOnRedisCluster runs the service and `flashsale sync` on a Redis
// Cluster (FLASHSALE_REDIS_CLUSTER_ADDRS): items whose hash tags land on
// different masters are seeded and reserved, and the in-process syncer
// writes every one to the record, which the audit confirms per item.
func TestRunOnRedisCluster(t *testing.T) {
	const token = "cluster-test-token-0123"
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	seeds := strings.Join(rc.Addrs(), ",")
	svc := startRun(t, map[string]string{
		"FLASHSALE_REDIS_CLUSTER_ADDRS": seeds, "FLASHSALE_ADMIN_TOKEN": token, "FLASHSALE_AUDIT_INTERVAL": "0",
		"FLASHSALE_SYNC_SCAN": "50ms",
	})
	if !strings.Contains(svc.logs.String(), seeds) {
		t.Errorf("the start did not name the cluster %s; logs:\n%s", seeds, svc.logs)
	}
	call := func(method, path, body string) (int, string) { return svc.call(t, token, method, path, body) }

	skus := rc.OnEachMaster(t, "sku")
	for _, sku := range skus {
		if status, body := call("PUT", "/admin/v1/items/"+sku, `{"stock":2}`); status != http.StatusCreated {
			t.Fatalf("seed %s: %d %s", sku, status, body)
		}
		for _, user := range []string{"alice", "bob", "carol"} {
			status, body := call("POST", "/v1/items/"+sku+"/reservations", `{"user_id":"`+user+`","quantity":1}`)
			want := http.StatusCreated
			if user == "carol" {
				want = http.StatusConflict // stock 2
			}
			if status != want {
				t.Fatalf("reserve %s for %s: %d %s, want %d", sku, user, status, body, want)
			}
		}
	}
	for _, sku := range skus {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			status, body := call("GET", "/admin/v1/items/"+sku+"/audit", "")
			if status == http.StatusOK && strings.Contains(body, `"in_sync":true`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("audit of %s after 10s: %d %s", sku, status, body)
			}
		}
	}
	svc.shutdown(t)

	// `flashsale sync` accepts a cluster too.
	logs := &syncBuffer{}
	syncCtx, stopSync := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runSync(syncCtx, env(map[string]string{
			"FLASHSALE_REDIS_CLUSTER_ADDRS": seeds, "FLASHSALE_SQLITE_PATH": filepath.Join(t.TempDir(), "sync.db"),
		}), logs)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "flashsale syncing"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			stopSync()
			t.Fatalf("flashsale sync did not start on the cluster; logs:\n%s", logs)
		}
	}
	stopSync()
	if err := <-done; err != nil {
		t.Errorf("runSync = %v", err)
	}
}
