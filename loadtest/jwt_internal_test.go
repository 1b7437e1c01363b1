package loadtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestBuyerTokensRenew: a user's token is reused until half its lifetime
// has passed, then minted again with a later expiry, so a long run never
// sends one close to expiring.
func TestBuyerTokensRenew(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBuyerTokens(JWTOptions{Key: key, Issuer: "iss", Audience: "aud", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_800_000_000, 0)
	b.now = func() time.Time { return clock }
	expiry := func(tok string) int64 {
		t.Helper()
		claims := jwt.MapClaims{}
		if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
			t.Fatal(err)
		}
		exp, _ := claims.GetExpirationTime()
		return exp.Unix()
	}

	first, _ := b.Token("alice")
	if got := expiry(first); got != clock.Add(time.Minute).Unix() {
		t.Fatalf("exp %d, want now + 1m", got)
	}
	clock = clock.Add(29 * time.Second)
	if again, _ := b.Token("alice"); again != first {
		t.Errorf("at 29s of 60s: a new token, want the cached one")
	}
	clock = clock.Add(time.Second)
	renewed, _ := b.Token("alice")
	if renewed == first || expiry(renewed) != clock.Add(time.Minute).Unix() {
		t.Errorf("at 30s of 60s: same token %t, exp %d; want a new one expiring a minute from now", renewed == first, expiry(renewed))
	}
}

// TestTokenShardBounded: a full shard drops the tokens due for renewal,
// and everything when none is, so the cache never outgrows its bound.
func TestTokenShardBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	fill := func(stale int) *tokenShard {
		sh := &tokenShard{m: map[string]mintedToken{}}
		for i := range tokensPerShard {
			renew := now.Add(time.Minute)
			if i < stale {
				renew = now
			}
			sh.m["u"+strconv.Itoa(i)] = mintedToken{bearer: "Bearer x", renewAt: renew}
		}
		return sh
	}
	sh := fill(10)
	sh.evict(now)
	if len(sh.m) != tokensPerShard-10 {
		t.Errorf("10 due for renewal: %d left, want %d", len(sh.m), tokensPerShard-10)
	}
	sh = fill(0)
	sh.evict(now)
	if len(sh.m) != 0 {
		t.Errorf("none due: %d left, want 0", len(sh.m))
	}
}
