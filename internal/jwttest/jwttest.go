// Package jwttest makes what tests of buyer authentication need: signing
// keys generated per test, their public JWKS, and tokens minted with them,
// good and bad. Keys and signatures come from the standard library and
// golang-jwt; nothing here is crypto of its own.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// The issuer and audience tokens carry unless a test says otherwise.
const (
	Issuer   = "https://id.shop.test/"
	Audience = "flashsale"
)

// Key is a signing key and the kid its public half is published under.
type Key struct {
	KID     string
	Private any // *rsa.PrivateKey or *ecdsa.PrivateKey
}

// RSA generates an RSA key published as kid.
func RSA(t testing.TB, kid string) Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return Key{kid, k}
}

// EC generates a P-256 key published as kid.
func EC(t testing.TB, kid string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{kid, k}
}

// Public is the key's public half.
func (k Key) Public() any {
	switch p := k.Private.(type) {
	case *rsa.PrivateKey:
		return &p.PublicKey
	case *ecdsa.PrivateKey:
		return &p.PublicKey
	}
	panic("jwttest: unknown key type")
}

// PublicPEM is the public key as an identity provider publishes it in PEM:
// what an attacker signing HS256 "with the public key" uses as the secret.
func (k Key) PublicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS is the public JWK Set of keys.
func JWKS(t testing.TB, keys ...Key) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.KID, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// JWKSFile writes the JWKS of keys to a file in a temporary directory.
func JWKSFile(t testing.TB, keys ...Key) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, JWKS(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Claims are a valid token's claims for user: the default issuer and
// audience, issued now, valid for five minutes.
func Claims(user string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": Issuer,
		"aud": Audience,
		"sub": user,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	}
}

// With is claims with the given ones set (a nil value deletes the claim).
func With(claims jwt.MapClaims, set jwt.MapClaims) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range set {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// Mint signs claims with method and key (a private key, or the secret for
// HMAC and none), with kid in the header unless it is "".
func Mint(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Sign mints claims with k, RS256 for an RSA key and ES256 for an EC one.
func (k Key) Sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	var method jwt.SigningMethod = jwt.SigningMethodRS256
	if _, ok := k.Private.(*ecdsa.PrivateKey); ok {
		method = jwt.SigningMethodES256
	}
	return Mint(t, method, k.KID, k.Private, claims)
}

// Tampered is token with one byte of its signature changed.
func Tampered(token string) string {
	b := []byte(token)
	i := len(b) - 10 // inside the signature, clear of base64's padding bits
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
