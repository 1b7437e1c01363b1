package buyerauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/buyerauth"
	"github.com/flashsale/flashsale/internal/jwttest"
)

// TestVerify: a JWKS file with an RSA and an EC key; every token a buyer
// could forge or mangle is refused with a *TokenError, and good ones name
// their user.
func TestVerify(t *testing.T) {
	rsaKey, ecKey := jwttest.RSA(t, "rsa-1"), jwttest.EC(t, "ec-1")
	stranger := jwttest.RSA(t, "rsa-1") // same kid, not in the set
	v, err := buyerauth.New(t.Context(), buyerauth.Options{
		JWKSFile: jwttest.JWKSFile(t, rsaKey, ecKey),
		Issuer:   jwttest.Issuer,
		Audience: jwttest.Audience,
	})
	if err != nil {
		t.Fatal(err)
	}
	good := jwttest.Claims("alice")
	now := time.Now()
	for _, tc := range []struct {
		name  string
		token string
		user  string // "": refused
		is    error  // the library's reason, when refused
	}{
		{"RS256", rsaKey.Sign(t, good), "alice", nil},
		{"ES256", ecKey.Sign(t, good), "alice", nil},
		{"PS256", jwttest.Mint(t, jwt.SigningMethodPS256, "rsa-1", rsaKey.Private, good), "alice", nil},
		{"no kid: tried against every key", jwttest.Mint(t, jwt.SigningMethodES256, "", ecKey.Private, good), "alice", nil},
		{"expired within the leeway", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})), "alice", nil},
		{"aud as a list holding ours", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"aud": []string{"other", jwttest.Audience}})), "alice", nil},

		{"alg none", jwttest.Mint(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, good), "", jwt.ErrTokenSignatureInvalid},
		{"HS256 with the public key as secret", jwttest.Mint(t, jwt.SigningMethodHS256, "rsa-1", rsaKey.PublicPEM(t), good), "", jwt.ErrTokenSignatureInvalid},
		{"expired", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"exp": now.Add(-2 * time.Minute).Unix()})), "", jwt.ErrTokenExpired},
		{"no exp", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"exp": nil})), "", jwt.ErrTokenRequiredClaimMissing},
		{"nbf in the future", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"nbf": now.Add(2 * time.Minute).Unix()})), "", jwt.ErrTokenNotValidYet},
		{"iat in the future", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"iat": now.Add(2 * time.Minute).Unix()})), "", jwt.ErrTokenUsedBeforeIssued},
		{"wrong iss", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"iss": "https://evil.test/"})), "", jwt.ErrTokenInvalidIssuer},
		{"wrong aud", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"aud": "another-service"})), "", jwt.ErrTokenInvalidAudience},
		{"unknown kid", jwttest.Mint(t, jwt.SigningMethodRS256, "rsa-9", rsaKey.Private, good), "", jwt.ErrTokenUnverifiable},
		{"known kid, another key", stranger.Sign(t, good), "", jwt.ErrTokenSignatureInvalid},
		{"tampered signature", jwttest.Tampered(rsaKey.Sign(t, good)), "", jwt.ErrTokenSignatureInvalid},
		{"tampered claims", rsaKey.Sign(t, good)[:40] + "x" + rsaKey.Sign(t, good)[41:], "", nil},
		{"malformed", "not.a.jwt", "", jwt.ErrTokenMalformed},
		{"empty", "", "", jwt.ErrTokenMalformed},
		{"no sub", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"sub": nil})), "", jwt.ErrTokenRequiredClaimMissing},
		{"sub not a string", rsaKey.Sign(t, jwttest.With(good, jwt.MapClaims{"sub": 42})), "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := v.Verify(context.Background(), tc.token)
			if tc.user != "" {
				if err != nil || user != tc.user {
					t.Fatalf("Verify = %q, %v; want %q", user, err, tc.user)
				}
				return
			}
			var te *buyerauth.TokenError
			if !errors.As(err, &te) || user != "" {
				t.Fatalf("Verify = %q, %v; want a *TokenError", user, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Verify: %v (%v), want one that is %v", err, te.Err, tc.is)
			}
		})
	}
}

// TestVerifyUserClaim: the user may come from another claim.
func TestVerifyUserClaim(t *testing.T) {
	k := jwttest.EC(t, "ec-1")
	v, err := buyerauth.New(t.Context(), buyerauth.Options{
		JWKSFile: jwttest.JWKSFile(t, k), Issuer: jwttest.Issuer, Audience: jwttest.Audience, UserClaim: "uid",
	})
	if err != nil {
		t.Fatal(err)
	}
	if user, err := v.Verify(t.Context(), k.Sign(t, jwttest.With(jwttest.Claims("alice"), jwt.MapClaims{"uid": "u-7"}))); err != nil || user != "u-7" {
		t.Fatalf("Verify = %q, %v; want u-7", user, err)
	}
	if _, err := v.Verify(t.Context(), k.Sign(t, jwttest.Claims("alice"))); err == nil {
		t.Fatal("a token without uid was accepted")
	}
}

// jwksServer serves a JWKS the test swaps, and counts its fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, jwks []byte) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&jwks)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(jwks []byte) { s.body.Store(&jwks) }

// TestJWKSURL: keys fetched from a URL are cached (one fetch serves many
// requests); a token with an unknown kid fetches the set again, but a
// burst of them fetches once per RefetchEvery; a key rotated in is picked
// up that way, and one rotated out is refused.
func TestJWKSURL(t *testing.T) {
	const every = 400 * time.Millisecond
	oldKey, newKey := jwttest.RSA(t, "rsa-1"), jwttest.EC(t, "ec-2")
	srv := newJWKSServer(t, jwttest.JWKS(t, oldKey))
	v, err := buyerauth.New(t.Context(), buyerauth.Options{
		JWKSURL: srv.URL, Issuer: jwttest.Issuer, Audience: jwttest.Audience,
		RefetchEvery: every, RefreshInterval: time.Hour, HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(token string) error { _, err := v.Verify(t.Context(), token); return err }
	wantFetches := func(step string, n int64) {
		t.Helper()
		if got := srv.fetches.Load(); got != n {
			t.Fatalf("%s: %d fetches of the JWKS, want %d", step, got, n)
		}
	}

	wantFetches("at start", 1)
	good := oldKey.Sign(t, jwttest.Claims("alice"))
	for range 50 {
		if err := verify(good); err != nil {
			t.Fatal(err)
		}
	}
	wantFetches("after 50 good tokens", 1)

	unknown := jwttest.Mint(t, jwt.SigningMethodRS256, "made-up", oldKey.Private, jwttest.Claims("alice"))
	for range 20 {
		if verify(unknown) == nil {
			t.Fatal("a token with an unknown kid was accepted")
		}
	}
	wantFetches("after unknown kids right after start (the start's fetch is this period's)", 1)
	time.Sleep(every + 100*time.Millisecond)
	for range 20 {
		if verify(unknown) == nil {
			t.Fatal("a token with an unknown kid was accepted")
		}
	}
	wantFetches("after a burst of unknown kids one period later", 2)

	// The provider rotates: the new key in, the old one out.
	srv.serve(jwttest.JWKS(t, newKey))
	rotated := newKey.Sign(t, jwttest.Claims("alice"))
	if verify(rotated) == nil {
		t.Fatal("a token with the new kid was accepted before any fetch could have seen it")
	}
	wantFetches("the new kid within the period", 2)
	time.Sleep(every + 100*time.Millisecond)
	if err := verify(rotated); err != nil {
		t.Fatalf("the rotated-in key, one period later: %v", err)
	}
	wantFetches("the new kid one period later", 3)
	if err := verify(good); err == nil {
		t.Fatal("a token of the key rotated out was still accepted")
	}
}

// TestJWKSURLRefresh: the set is fetched again every RefreshInterval, so a
// rotation is picked up with no unknown kid asking.
func TestJWKSURLRefresh(t *testing.T) {
	oldKey, newKey := jwttest.RSA(t, "rsa-1"), jwttest.EC(t, "ec-2")
	srv := newJWKSServer(t, jwttest.JWKS(t, oldKey))
	v, err := buyerauth.New(t.Context(), buyerauth.Options{
		JWKSURL: srv.URL, Issuer: jwttest.Issuer, Audience: jwttest.Audience,
		RefetchEvery: time.Hour, RefreshInterval: 200 * time.Millisecond, HTTPClient: srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.serve(jwttest.JWKS(t, oldKey, newKey))
	token := newKey.Sign(t, jwttest.Claims("alice"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(t.Context(), token)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key was not picked up by the periodic refresh: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNewRefuses: a verifier that could verify nothing does not start.
func TestNewRefuses(t *testing.T) {
	k := jwttest.RSA(t, "rsa-1")
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	empty := newJWKSServer(t, []byte(`{"keys":[]}`))
	for _, tc := range []struct {
		name string
		o    buyerauth.Options
	}{
		{"no source", buyerauth.Options{Issuer: "i", Audience: "a"}},
		{"both sources", buyerauth.Options{JWKSURL: empty.URL, JWKSFile: jwttest.JWKSFile(t, k), Issuer: "i", Audience: "a"}},
		{"no issuer", buyerauth.Options{JWKSFile: jwttest.JWKSFile(t, k), Audience: "a"}},
		{"no audience", buyerauth.Options{JWKSFile: jwttest.JWKSFile(t, k), Issuer: "i"}},
		{"missing file", buyerauth.Options{JWKSFile: t.TempDir() + "/nope.json", Issuer: "i", Audience: "a"}},
		{"URL down", buyerauth.Options{JWKSURL: down.URL, Issuer: "i", Audience: "a", FetchTimeout: time.Second}},
		{"empty set", buyerauth.Options{JWKSURL: empty.URL, Issuer: "i", Audience: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := buyerauth.New(t.Context(), tc.o); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}
