package loadtest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/internal/jwttest"
	"github.com/flashsale/flashsale/loadtest"
)

// verifier is the service's own check of buyers' tokens over jwksFile.
func verifier(t *testing.T, jwksFile string) *buyerauth.Verifier {
	t.Helper()
	v, err := buyerauth.New(context.Background(), buyerauth.Options{JWKSFile: jwksFile, Issuer: jwttest.Issuer, Audience: jwttest.Audience})
	if err != nil {
		t.Fatalf("buyerauth.New: %v", err)
	}
	return v
}

// keygen writes a key with -jwt-keygen's code and returns its directory.
func keygen(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "jwt")
	if err := loadtest.WriteJWTKey(dir, ""); err != nil {
		t.Fatalf("WriteJWTKey: %v", err)
	}
	return dir
}

func minter(t *testing.T, keyFile, kid string) *loadtest.BuyerTokens {
	t.Helper()
	key, err := loadtest.ReadJWTKey(keyFile)
	if err != nil {
		t.Fatalf("ReadJWTKey: %v", err)
	}
	b, err := loadtest.NewBuyerTokens(loadtest.JWTOptions{Key: key, KID: kid, Issuer: jwttest.Issuer, Audience: jwttest.Audience})
	if err != nil {
		t.Fatalf("NewBuyerTokens: %v", err)
	}
	return b
}

// TestMintedTokensVerify: tokens minted from -jwt-keygen's key, and from an
// RSA key as openssl writes it, pass the service's verification as the
// user they were minted for.
func TestMintedTokensVerify(t *testing.T) {
	dir := keygen(t)
	rsaKey := jwttest.RSA(t, "rsa-1")
	rsaPEM := filepath.Join(t.TempDir(), "rsa.pem")
	der := x509.MarshalPKCS1PrivateKey(rsaKey.Private.(*rsa.PrivateKey))
	if err := os.WriteFile(rsaPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes the curve's parameters first, then the
	// key in SEC 1.
	ecKey := jwttest.EC(t, "ec-1")
	sec1, err := x509.MarshalECPrivateKey(ecKey.Private.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := filepath.Join(t.TempDir(), "ec.pem")
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	if err := os.WriteFile(ecPEM, append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, kid, jwks string
	}{
		{"an EC key in SEC 1 after its parameters", ecPEM, "ec-1", jwttest.JWKSFile(t, ecKey)},
		{"keygen's EC key", filepath.Join(dir, loadtest.JWTKeyFile), loadtest.DefaultJWTKID, filepath.Join(dir, loadtest.JWTJWKSFile)},
		{"an RSA key in PKCS #1", rsaPEM, "rsa-1", jwttest.JWKSFile(t, rsaKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, v := minter(t, tc.key, tc.kid), verifier(t, tc.jwks)
			for _, user := range []string{"alice", "lt0a1b2c-17"} {
				tok, err := b.Token(user)
				if err != nil {
					t.Fatalf("Token(%s): %v", user, err)
				}
				if got, err := v.Verify(context.Background(), tok); err != nil || got != user {
					t.Errorf("Verify(token of %s) = %q, %v; want %q", user, got, err, user)
				}
			}
			a1, _ := b.Token("alice")
			a2, _ := b.Token("alice")
			bob, _ := b.Token("bob")
			if a1 != a2 || a1 == bob {
				t.Errorf("alice's tokens equal: %t (want the cached one again), alice's equals bob's: %t", a1 == a2, a1 == bob)
			}
		})
	}
}

// TestWriteJWTKey pins what -jwt-keygen leaves: the private files readable
// by their owner alone, a private JWK k6 can import (EC, P-256, with d and
// the kid), a public JWKS without d, and no overwriting.
func TestWriteJWTKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := loadtest.WriteJWTKey(dir, "kid-7"); err != nil {
		t.Fatal(err)
	}
	for name, perm := range map[string]os.FileMode{loadtest.JWTKeyFile: 0o600, loadtest.JWTPrivateJWKFile: 0o600, loadtest.JWTJWKSFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: %v, mode %v; want mode %v", name, err, fi.Mode().Perm(), perm)
		}
	}
	var jwk map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, loadtest.JWTPrivateJWKFile))
	if err := json.Unmarshal(raw, &jwk); err != nil || jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk["kid"] != "kid-7" || jwk["d"] == nil {
		t.Errorf("private JWK %s (%v): want kty EC, crv P-256, kid kid-7 and d", raw, err)
	}
	var set struct{ Keys []map[string]any }
	raw, _ = os.ReadFile(filepath.Join(dir, loadtest.JWTJWKSFile))
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["d"] != nil || set.Keys[0]["kid"] != "kid-7" {
		t.Errorf("JWKS %s (%v): want one public key under kid-7", raw, err)
	}
	if err := loadtest.WriteJWTKey(dir, "kid-8"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("WriteJWTKey into a used directory: %v, want already exists", err)
	}
}

func TestNewBuyerTokensRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := jwttest.EC(t, "ec").Private.(*ecdsa.PrivateKey)
	ok := loadtest.JWTOptions{Key: ec, Issuer: jwttest.Issuer, Audience: jwttest.Audience}
	for _, tc := range []struct {
		name string
		edit func(o *loadtest.JWTOptions)
		want string
	}{
		{"P-384", func(o *loadtest.JWTOptions) { o.Key = p384 }, "P-256"},
		{"no key", func(o *loadtest.JWTOptions) { o.Key = nil }, "want an EC P-256 or an RSA"},
		{"no issuer", func(o *loadtest.JWTOptions) { o.Issuer = "" }, "-jwt-issuer"},
		{"no audience", func(o *loadtest.JWTOptions) { o.Audience = "" }, "-jwt-audience"},
		{"lifetime too short", func(o *loadtest.JWTOptions) { o.TTL = time.Second }, "at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			if _, err := loadtest.NewBuyerTokens(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewBuyerTokens: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := loadtest.NewBuyerTokens(ok); err != nil {
		t.Errorf("NewBuyerTokens(valid options): %v", err)
	}
}

// TestLoadWithBuyerTokens drives a service that authenticates buyers: with
// the minted tokens every reserve, cancel and read goes through and the
// run verifies; the same load without them is refused, so the tokens are
// what made it pass.
func TestLoadWithBuyerTokens(t *testing.T) {
	dir := keygen(t)
	url := startService(t, serviceOpts{buyers: verifier(t, filepath.Join(dir, loadtest.JWTJWKSFile))})
	b := minter(t, filepath.Join(dir, loadtest.JWTKeyFile), loadtest.DefaultJWTKID)
	sc := loadtest.FlashCrowd(100, 200, 100) // the first 100 requests are granted: shares 0-29 confirm, 30-59 cancel
	sc.ConfirmPercent, sc.CancelPercent, sc.NoSyncCheck = 30, 30, true

	c := newClient(t, url, 4)
	c.SetBuyerTokens(b)
	rep, err := loadtest.RunScenario(testCtx(t), c, sc, loadtest.Config{Clients: 4})
	if err != nil {
		t.Fatalf("RunScenario: %v", err)
	}
	if rep.Errors != 0 || !rep.Verification.OK || rep.Outcomes["created"] == 0 || rep.Outcomes["cancelled"] == 0 || rep.Outcomes["confirmed"] == 0 {
		t.Errorf("with tokens: %d errors (first %q), outcomes %v, verification %+v; want no error, holds created, cancelled and confirmed, OK",
			rep.Errors, rep.FirstError, rep.Outcomes, rep.Verification)
	}

	ctx := testCtx(t)
	if err := c.Seed(ctx, "owned", 5, 1, 600, 0); err != nil {
		t.Fatal(err)
	}
	id, outcome, err := c.Reserve(ctx, "owned", "olivia", 1)
	if err != nil || outcome != "created" {
		t.Fatalf("Reserve as olivia: %q %v", outcome, err)
	}
	if status, err := c.Reservation(ctx, id, "olivia"); err != nil || status != "pending" {
		t.Errorf("olivia reads her hold: %q %v, want pending", status, err)
	}
	var se *loadtest.StatusError
	if _, err := c.Reservation(ctx, id, "mallory"); !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("mallory reads olivia's hold: %v, want 404 (her token names her)", err)
	}
	if outcome, err := c.Cancel(ctx, id, "olivia"); err != nil || outcome != "cancelled" {
		t.Errorf("olivia cancels her hold: %q %v", outcome, err)
	}

	bare := newClient(t, url, 4)
	rep, err = loadtest.RunScenario(testCtx(t), bare, sc, loadtest.Config{Clients: 4})
	if err != nil {
		t.Fatalf("RunScenario without tokens: %v", err)
	}
	if rep.Errors != rep.Requests || !strings.Contains(rep.FirstError, "401 unauthorized") {
		t.Errorf("without tokens: %d of %d failed, first %q; want every one 401 unauthorized", rep.Errors, rep.Requests, rep.FirstError)
	}
}
