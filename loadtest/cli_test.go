package loadtest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/loadtest"
)

func TestMainFails(t *testing.T) {
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string // in the error
		out  string // on stdout
	}{
		{"unknown scenario", func(*testing.T) []string { return []string{"-scenario", "stampede"} }, "unknown scenario", ""},
		{"bad flag", func(*testing.T) []string { return []string{"-clients", "many"} }, "invalid value", ""},
		{"stray argument", func(*testing.T) []string { return []string{"now"} }, "unexpected arguments", ""},
		{"oversold", func(t *testing.T) []string {
			return []string{"-url", overseller(t, 10), "-stock", "10", "-requests", "30", "-users", "30", "-no-sync-check"}
		}, "verification failed: OVERSOLD by 20: sold 0 + reserved 30 > stock 10", "flashcrowd verification FAILED"},
		{"confirms without a service token", func(t *testing.T) []string {
			t.Setenv("FLASHSALE_SERVICE_TOKENS", "")
			return []string{"-url", "http://127.0.0.1:1", "-admin-token", testToken, "-scenario", "mixed"}
		}, "confirm needs -service-token", ""},
		{"JWT key without an issuer", func(t *testing.T) []string {
			t.Setenv("FLASHSALE_JWT_ISSUER", "")
			return []string{"-jwt-key", filepath.Join(keygen(t), loadtest.JWTKeyFile), "-jwt-audience", "flashsale"}
		}, "-jwt-issuer", ""},
		{"JWT key missing", func(*testing.T) []string { return []string{"-jwt-key", "/nonexistent/key.pem"} }, "no such file", ""},
		{"no audit endpoint", func(t *testing.T) []string {
			return []string{"-url", startService(t, serviceOpts{}), "-admin-token", testToken,
				"-stock", "5", "-requests", "20", "-users", "20", "-clients", "2"}
		}, "no audit endpoint", "verification FAILED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := loadtest.Main(testCtx(t), tt.args(t), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Main err = %v, want one containing %q", err, tt.want)
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("stdout lacks %q:\n%s", tt.out, stdout.String())
			}
		})
	}
}

// TestMainJWTKeygen: -jwt-keygen writes the three files under the kid asked
// for and says how to use them, without loading anything.
func TestMainJWTKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	var stdout, stderr bytes.Buffer
	if err := loadtest.Main(testCtx(t), []string{"-jwt-keygen", dir, "-jwt-kid", "sale-1", "-url", "http://127.0.0.1:1"}, &stdout, &stderr); err != nil {
		t.Fatalf("Main: %v\n%s", err, stderr.String())
	}
	for _, f := range []string{loadtest.JWTKeyFile, loadtest.JWTPrivateJWKFile, loadtest.JWTJWKSFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	jwks, _ := os.ReadFile(filepath.Join(dir, loadtest.JWTJWKSFile))
	if !strings.Contains(string(jwks), `"kid":"sale-1"`) {
		t.Errorf("JWKS %s lacks kid sale-1", jwks)
	}
	if out := stdout.String(); !strings.Contains(out, "FLASHSALE_JWT_JWKS_FILE="+filepath.Join(dir, loadtest.JWTJWKSFile)) {
		t.Errorf("stdout does not say how to give the service its JWKS:\n%s", out)
	}
}
