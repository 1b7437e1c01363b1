//go:build integration

package loadtest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/loadtest"
)

// TestLoadtestCommand runs `flashsale loadtest` as users do, against the
// flashsale binary on the shared Redis and MariaDB, and checks the JSON it
// prints: every unit granted once, the record caught up.
func TestLoadtestCommand(t *testing.T) {
	bin := testenv.BuildFlashsale(t)
	_, prefix := redistest.Client(t) // its keys are deleted after the service is gone
	redisAddr := os.Getenv(redistest.AddrEnv)
	if redisAddr == "" {
		redisAddr = redistest.DefaultAddr
	}
	svc := testenv.StartService(t, bin, map[string]string{
		"FLASHSALE_REDIS_ADDR":  redisAddr,
		"FLASHSALE_KEY_PREFIX":  prefix,
		"FLASHSALE_MYSQL_DSN":   testenv.SharedMySQL(t),
		"FLASHSALE_ADMIN_TOKEN": testToken,
		"FLASHSALE_LOG_LEVEL":   "warn",
	})

	ctx := testCtx(t)
	begin := time.Now()
	cmd := exec.CommandContext(ctx, bin, "loadtest", "-url", svc.URL(), "-admin-token", testToken,
		"-scenario", "flashcrowd", "-stock", "200", "-requests", "5000", "-users", "2500", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("flashsale loadtest: %v\nstdout:\n%s\nstderr:\n%s\nservice log:\n%s", err, stdout.String(), stderr.String(), svc.Log())
	}
	var rep loadtest.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, stdout.String())
	}
	t.Logf("%d requests in %v (%.0f/s, p99 %v), record synced %v after; whole command %v",
		rep.Requests, rep.Elapsed, rep.Throughput, rep.P99, rep.Verification.SyncedIn, time.Since(begin))
	v := rep.Verification
	if rep.Requests != 5000 || rep.Errors != 0 || rep.Outcomes["created"] != 200 {
		t.Errorf("%d requests, %d errors, outcomes %v; want 5000, 0, 200 created", rep.Requests, rep.Errors, rep.Outcomes)
	}
	if !v.OK || v.Granted != 200 || v.Reserved != 200 || v.Available != 0 || v.Oversold != 0 || !v.SyncChecked || v.MySQLRows != 200 {
		t.Errorf("verification %+v; want OK, 200 granted, reserved and recorded, nothing available or oversold", v)
	}
}

// TestLoadtestCommandJWT runs the service as a shop would put it in front of
// real buyers, FLASHSALE_BUYER_AUTH=jwt, with the JWKS `flashsale loadtest
// -jwt-keygen` wrote, and loads it with `flashsale loadtest -jwt-key`: every
// reserve and cancel carries the buyer's own minted token, every confirm the
// service token, and nothing is refused.
func TestLoadtestCommandJWT(t *testing.T) {
	bin := testenv.BuildFlashsale(t)
	ctx := testCtx(t)
	keys := t.TempDir() + "/jwt"
	if out, err := exec.CommandContext(ctx, bin, "loadtest", "-jwt-keygen", keys).CombinedOutput(); err != nil {
		t.Fatalf("flashsale loadtest -jwt-keygen: %v\n%s", err, out)
	}
	_, prefix := redistest.Client(t)
	redisAddr := os.Getenv(redistest.AddrEnv)
	if redisAddr == "" {
		redisAddr = redistest.DefaultAddr
	}
	const issuer, audience = "https://id.loadtest.test/", "flashsale-loadtest"
	svc := testenv.StartService(t, bin, map[string]string{
		"FLASHSALE_REDIS_ADDR":     redisAddr,
		"FLASHSALE_KEY_PREFIX":     prefix,
		"FLASHSALE_MYSQL_DSN":      testenv.SharedMySQL(t),
		"FLASHSALE_ADMIN_TOKEN":    testToken,
		"FLASHSALE_SERVICE_TOKENS": serviceToken,
		"FLASHSALE_BUYER_AUTH":     "jwt",
		"FLASHSALE_JWT_JWKS_FILE":  keys + "/" + loadtest.JWTJWKSFile,
		"FLASHSALE_JWT_ISSUER":     issuer,
		"FLASHSALE_JWT_AUDIENCE":   audience,
		"FLASHSALE_LOG_LEVEL":      "warn",
	})

	cmd := exec.CommandContext(ctx, bin, "loadtest", "-url", svc.URL(), "-admin-token", testToken, "-service-token", serviceToken,
		"-jwt-key", keys+"/"+loadtest.JWTKeyFile, "-jwt-issuer", issuer, "-jwt-audience", audience,
		"-scenario", "flashcrowd", "-stock", "300", "-requests", "3000", "-users", "1000",
		"-confirm-percent", "30", "-cancel-percent", "30", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("flashsale loadtest: %v\nstdout:\n%s\nstderr:\n%s\nservice log:\n%s", err, stdout.String(), stderr.String(), svc.Log())
	}
	var rep loadtest.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, stdout.String())
	}
	t.Logf("%d requests in %v (%.0f/s, p99 %v), outcomes %v", rep.Requests, rep.Elapsed, rep.Throughput, rep.P99, rep.Outcomes)
	v := rep.Verification
	// Any 401 or 403 would be an error. A thousand distinct users want 300
	// units, so all of them are granted, and the cancelled ones again.
	if rep.Requests != 3000 || rep.Errors != 0 || rep.Outcomes["confirmed"] == 0 || rep.Outcomes["cancelled"] == 0 || v.Granted < 300 {
		t.Errorf("%d requests, %d errors (first %q), outcomes %v, %d granted; want 3000, none, confirms and cancels, at least 300 granted",
			rep.Requests, rep.Errors, rep.FirstError, rep.Outcomes, v.Granted)
	}
	if !v.OK || v.Oversold != 0 || !v.SyncChecked || v.MySQLRows != v.Granted {
		t.Errorf("verification %+v; want OK, nothing oversold, every grant recorded", v)
	}
}
