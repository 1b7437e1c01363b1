//go:build integration

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestRunOnRedisTLSWithACLUser runs the service on a Redis reached over TLS
// (a CA of the test's own, FLASHSALE_REDIS_TLS_CA_FILE) as an ACL user
// allowed only redisACL: items are seeded, reserved, confirmed and
// cancelled, the in-process syncer writes them to the record (the audit
// says in sync), and Redis's ACL LOG shows no command refused. Without the
// CA the start fails on the certificate.
func TestRunOnRedisTLSWithACLUser(t *testing.T) {
	const admin, service, pass = "tls-test-admin-token-0123", "tls-test-service-token-0123", "acl-secret-4567"
	rt := testenv.StartRedisTLS(t, "flashsale on >"+pass+" "+redisACL)
	vars := map[string]string{
		"FLASHSALE_REDIS_ADDR": rt.TLSAddr, "FLASHSALE_REDIS_TLS": "true", "FLASHSALE_REDIS_TLS_CA_FILE": rt.CAFile,
		"FLASHSALE_REDIS_USERNAME": "flashsale", "FLASHSALE_REDIS_PASSWORD": pass, "FLASHSALE_KEY_PREFIX": "tlsacl",
		"FLASHSALE_ADMIN_TOKEN": admin, "FLASHSALE_SERVICE_TOKENS": service, "FLASHSALE_AUDIT_INTERVAL": "0",
		"FLASHSALE_SYNC_SCAN": "50ms",
	}
	svc := startRun(t, vars)
	if status, body := svc.call(t, admin, "PUT", "/admin/v1/items/tls-1", `{"stock":3}`); status != http.StatusCreated {
		t.Fatalf("seed: %d %s", status, body)
	}
	var ids []string
	for _, user := range []string{"alice", "bob", "carol"} {
		status, body := svc.call(t, "", "POST", "/v1/items/tls-1/reservations", `{"user_id":"`+user+`","quantity":1}`)
		var res struct{ ID string }
		if status != http.StatusCreated || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("reserve for %s: %d %s", user, status, body)
		}
		ids = append(ids, res.ID)
	}
	if status, body := svc.call(t, service, "POST", "/v1/reservations/"+ids[0]+"/confirm", ""); status != http.StatusOK {
		t.Fatalf("confirm: %d %s", status, body)
	}
	if status, body := svc.call(t, "", "POST", "/v1/reservations/"+ids[1]+"/cancel", ""); status != http.StatusOK {
		t.Fatalf("cancel: %d %s", status, body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, body := svc.call(t, admin, "GET", "/admin/v1/items/tls-1/audit", "")
		if status == http.StatusOK && strings.Contains(body, `"in_sync":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit after 10s: %d %s", status, body)
		}
	}
	svc.shutdown(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	denied, err := rt.Client(t).Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(denied) > 0 {
		t.Errorf("Redis refused the service %d times: %v", len(denied), denied)
	}

	// Without the CA the server's certificate is unknown: no start.
	delete(vars, "FLASHSALE_REDIS_TLS_CA_FILE")
	vars["FLASHSALE_HTTP_ADDR"] = freeAddr(t)
	runCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := run(runCtx, env(vars), &syncBuffer{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("run without the CA = %v, want a certificate error", err)
	}
}
