package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/internal/jwttest"
)

// TestLoadConfigBuyerAuth: FLASHSALE_BUYER_AUTH is none or jwt; under jwt
// the keys come from exactly one of the URL and the file, and the issuer
// and audience are required; under none a FLASHSALE_JWT_* setting is
// refused rather than silently ignored.
func TestLoadConfigBuyerAuth(t *testing.T) {
	jwtVars := func(set map[string]string) map[string]string {
		vars := map[string]string{
			"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_BUYER_AUTH": "jwt",
			"FLASHSALE_JWT_JWKS_URL": "https://id.shop.test/.well-known/jwks.json",
			"FLASHSALE_JWT_ISSUER":   "https://id.shop.test/", "FLASHSALE_JWT_AUDIENCE": "flashsale",
		}
		for k, v := range set {
			if v == "" {
				delete(vars, k)
			} else {
				vars[k] = v
			}
		}
		return vars
	}
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		wantErr []string // substrings; empty means valid
		want    func(c Config) bool
	}{
		{"default none", map[string]string{"FLASHSALE_REDIS_ADDR": "embedded"}, nil,
			func(c Config) bool { return c.BuyerAuth == "none" && c.JWTUserClaim == "sub" }},
		{"jwt with a URL", jwtVars(nil), nil, func(c Config) bool {
			return c.BuyerAuth == "jwt" && c.JWTJWKSURL == "https://id.shop.test/.well-known/jwks.json" &&
				c.JWTIssuer == "https://id.shop.test/" && c.JWTAudience == "flashsale" && c.JWTUserClaim == "sub"
		}},
		{"jwt with a file and a user claim", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_URL": "",
			"FLASHSALE_JWT_JWKS_FILE": "/etc/flashsale/jwks.json", "FLASHSALE_JWT_USER_CLAIM": "uid"}), nil,
			func(c Config) bool { return c.JWTJWKSFile == "/etc/flashsale/jwks.json" && c.JWTUserClaim == "uid" }},
		{"jwt with http to localhost", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_URL": "http://127.0.0.1:8080/jwks"}), nil,
			func(c Config) bool { return c.JWTJWKSURL == "http://127.0.0.1:8080/jwks" }},

		{"neither none nor jwt", map[string]string{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_BUYER_AUTH": "oauth"},
			[]string{"FLASHSALE_BUYER_AUTH", "none, jwt"}, nil},
		{"jwt without keys", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_URL": ""}),
			[]string{"FLASHSALE_JWT_JWKS_URL", "FLASHSALE_JWT_JWKS_FILE"}, nil},
		{"jwt with both sources", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_FILE": "/etc/jwks.json"}),
			[]string{"FLASHSALE_JWT_JWKS_FILE", "not both"}, nil},
		{"jwt without issuer", jwtVars(map[string]string{"FLASHSALE_JWT_ISSUER": ""}), []string{"FLASHSALE_JWT_ISSUER is unset"}, nil},
		{"jwt without audience", jwtVars(map[string]string{"FLASHSALE_JWT_AUDIENCE": ""}), []string{"FLASHSALE_JWT_AUDIENCE is unset"}, nil},
		{"jwt without issuer, audience or keys: all reported", jwtVars(map[string]string{"FLASHSALE_JWT_ISSUER": "",
			"FLASHSALE_JWT_AUDIENCE": "", "FLASHSALE_JWT_JWKS_URL": ""}),
			[]string{"FLASHSALE_JWT_ISSUER", "FLASHSALE_JWT_AUDIENCE", "FLASHSALE_JWT_JWKS_FILE"}, nil},
		{"jwt with plain http", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_URL": "http://id.shop.test/jwks"}),
			[]string{"FLASHSALE_JWT_JWKS_URL", "https://"}, nil},
		{"jwt with a URL that is not one", jwtVars(map[string]string{"FLASHSALE_JWT_JWKS_URL": "id.shop.test/jwks"}),
			[]string{"FLASHSALE_JWT_JWKS_URL"}, nil},
		{"a JWT setting under none", map[string]string{"FLASHSALE_REDIS_ADDR": "embedded",
			"FLASHSALE_JWT_ISSUER": "https://id.shop.test/"}, []string{"FLASHSALE_JWT_ISSUER", "FLASHSALE_BUYER_AUTH=jwt"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(env(tc.vars))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				if !tc.want(c) {
					t.Fatalf("config = %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadConfig accepted %v", tc.vars)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
		})
	}
}

// TestBuyerVerifier: serve builds the verifier under jwt, and under none
// has none and says so in a warning.
func TestBuyerVerifier(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	v, err := buyerVerifier(t.Context(), Config{BuyerAuth: "none"}, log)
	if err != nil || v != nil {
		t.Fatalf("none: %v, %v; want no verifier", v, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "NOT authenticated") {
		t.Fatalf("none: no warning logged: %s", logs.String())
	}

	key := jwttest.EC(t, "ec-1")
	cfg := Config{BuyerAuth: "jwt", JWTJWKSFile: jwttest.JWKSFile(t, key), JWTIssuer: jwttest.Issuer,
		JWTAudience: jwttest.Audience, JWTUserClaim: "sub"}
	v, err = buyerVerifier(t.Context(), cfg, log)
	if err != nil || v == nil {
		t.Fatalf("jwt: %v, %v; want a verifier", v, err)
	}
	if user, err := v.Verify(context.Background(), key.Sign(t, jwttest.Claims("alice"))); err != nil || user != "alice" {
		t.Fatalf("Verify = %q, %v", user, err)
	}

	cfg.JWTJWKSFile = t.TempDir() + "/missing.json"
	if _, err := buyerVerifier(t.Context(), cfg, log); err == nil || !strings.Contains(err.Error(), "FLASHSALE_BUYER_AUTH=jwt") {
		t.Fatalf("jwt with a missing JWKS file: %v, want an error", err)
	}
}
