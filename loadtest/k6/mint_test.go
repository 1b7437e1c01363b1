package k6_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/internal/jwttest"
	"github.com/flashsale/flashsale/loadtest"
)

// The script's tokens are minted by jwt.js with WebCrypto, which k6 and
// Node 20 both provide as crypto.subtle: Node runs jwt.js here, on the key
// `flashsale loadtest -jwt-keygen` writes for k6, and the service's own
// verifier checks what it minted against the JWKS written beside it.

// mintDriver imports jwt.js (its file URL in JWTJS) and prints one token per
// subject in SUBJECTS, or the error. $K6_TEST_NODE_FLAGS adds node flags, such
// as --no-experimental-global-webcrypto to run it as on Node 18.
const mintDriver = `
if (globalThis.crypto?.subtle === undefined) {
  // Node 18 (Debian 12's) has WebCrypto, but not yet as a global.
  globalThis.crypto = (await import('node:crypto')).webcrypto;
}
const { importSigningKey, mintToken } = await import(process.env.JWTJS);
const key = await importSigningKey(process.env.JWK);
for (const subject of JSON.parse(process.env.SUBJECTS)) {
  console.log(await mintToken(key, { kid: process.env.KID, issuer: process.env.ISS, audience: process.env.AUD, subject, ttlSeconds: 120 }));
}
`

// nodeMint runs mintDriver under node and returns its output lines.
func nodeMint(t *testing.T, jwk, kid, issuer string, subjects []string) ([]string, error) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("node is required under CI=true to run jwt.js: %v", err)
		}
		t.Skipf("node not found, jwt.js not run: %v", err)
	}
	abs, err := filepath.Abs("jwt.js")
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := json.Marshal(subjects)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(strings.Fields(os.Getenv("K6_TEST_NODE_FLAGS")), "--input-type=module", "-")
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Stdin = strings.NewReader(mintDriver)
	cmd.Env = append(os.Environ(), "JWTJS="+(&url.URL{Scheme: "file", Path: abs}).String(), "JWK="+jwk, "KID="+kid,
		"ISS="+issuer, "AUD="+jwttest.Audience, "SUBJECTS="+string(subj))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &nodeError{err: err, stderr: stderr.String()}
	}
	return strings.Fields(stdout.String()), nil
}

type nodeError struct {
	err    error
	stderr string
}

func (e *nodeError) Error() string { return e.err.Error() + ": " + e.stderr }

func TestJWTMintedUnderNodeVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := loadtest.WriteJWTKey(dir, "k6-node"); err != nil {
		t.Fatal(err)
	}
	jwk, err := os.ReadFile(filepath.Join(dir, loadtest.JWTPrivateJWKFile))
	if err != nil {
		t.Fatal(err)
	}
	// Two- and four-byte UTF-8 in the issuer; subjects of every length
	// modulo three, so base64url ends each way.
	const issuer = "https://id.shöp.test/🛒"
	subjects := []string{"a", "ab", "abc", "lt-k6-17-3", "m0xq2-1-0"}
	tokens, err := nodeMint(t, string(jwk), "k6-node", issuer, subjects)
	if err != nil {
		t.Fatalf("jwt.js under node: %v", err)
	}
	if len(tokens) != len(subjects) {
		t.Fatalf("node printed %d tokens for %d subjects: %q", len(tokens), len(subjects), tokens)
	}
	ctx := context.Background()
	v, err := buyerauth.New(ctx, buyerauth.Options{JWKSFile: filepath.Join(dir, loadtest.JWTJWKSFile), Issuer: issuer, Audience: jwttest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range tokens {
		if got, err := v.Verify(ctx, tok); err != nil || got != subjects[i] {
			t.Errorf("token for %q: Verify = %q, %v", subjects[i], got, err)
		}
		claims := jwt.MapClaims{}
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, claims)
		if err != nil {
			t.Fatal(err)
		}
		iat, _ := claims.GetIssuedAt()
		exp, _ := claims.GetExpirationTime()
		if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] != "k6-node" || exp.Sub(iat.Time) != 120*time.Second ||
			time.Since(iat.Time).Abs() > time.Minute {
			t.Errorf("token for %q: header %v, iat %v, exp %v; want ES256, kid k6-node, issued now for 120s", subjects[i], parsed.Header, iat, exp)
		}
	}

	// The same tokens against a JWKS holding another key under that kid:
	// the verification above is what a wrong signature would fail.
	other := jwttest.EC(t, "k6-node")
	vOther, err := buyerauth.New(ctx, buyerauth.Options{JWKSFile: jwttest.JWKSFile(t, other), Issuer: issuer, Audience: jwttest.Audience})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vOther.Verify(ctx, tokens[0]); err == nil {
		t.Errorf("a token verified against another key")
	}
}

// TestJWTImportRefusesPublicKey: handed the public JWKS entry instead of
// the private JWK, the script stops with a message that says so.
func TestJWTImportRefusesPublicKey(t *testing.T) {
	t.Parallel()
	key := jwttest.EC(t, "pub")
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwttest.JWKS(t, key), &set); err != nil {
		t.Fatal(err)
	}
	_, err := nodeMint(t, string(set.Keys[0]), "pub", jwttest.Issuer, []string{"a"})
	if err == nil || !strings.Contains(err.Error(), "want a private EC P-256 JWK") {
		t.Errorf("minting with a public JWK: %v, want the script's refusal", err)
	}
}
