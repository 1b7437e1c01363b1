package loadtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Defaults of the test JWTs the load generator mints for its buyers, for a
// service run with FLASHSALE_BUYER_AUTH=jwt.
const (
	// DefaultJWTKID is the kid -jwt-keygen publishes its key under and the
	// tokens carry unless -jwt-kid says otherwise.
	DefaultJWTKID = "loadtest"
	// DefaultJWTTTL is a minted token's lifetime: short, as an identity
	// provider's access tokens are. A token is minted again once half of it
	// has passed, so a long run never sends one near its expiry.
	DefaultJWTTTL = 5 * time.Minute
	// minJWTTTL keeps the re-mint margin (half the lifetime) well above a
	// request's own duration.
	minJWTTTL = 30 * time.Second
)

// The files -jwt-keygen writes.
const (
	JWTKeyFile        = "key.pem"      // the private key, PKCS #8 PEM: -jwt-key
	JWTPrivateJWKFile = "key.jwk.json" // the same key as a private JWK: the k6 script's JWT_PRIVATE_JWK
	JWTJWKSFile       = "jwks.json"    // the public JWK Set: the service's FLASHSALE_JWT_JWKS_FILE
)

// JWTOptions say how buyers' tokens are minted.
type JWTOptions struct {
	Key      crypto.Signer // *ecdsa.PrivateKey on P-256 (ES256) or *rsa.PrivateKey (RS256)
	KID      string        // the kid header; DefaultJWTKID if empty
	Issuer   string        // iss: the service's FLASHSALE_JWT_ISSUER
	Audience string        // aud: the service's FLASHSALE_JWT_AUDIENCE
	TTL      time.Duration // DefaultJWTTTL if zero
}

// Token cache bounds: tokenShards maps behind their own locks, so 64
// workers rarely wait on each other, each holding at most
// tokensPerShard tokens (about 30 MB in all). A run with more distinct users
// than that mints again for a user whose token was dropped, which costs a
// signature, never a failed request.
const (
	tokenShards    = 64
	tokensPerShard = 1024
)

// BuyerTokens mints each buyer's JWT (sub = the user id) once and reuses it
// until half its lifetime has passed. It is safe for concurrent use.
type BuyerTokens struct {
	method jwt.SigningMethod
	key    crypto.Signer
	kid    string
	iss    string
	aud    string
	ttl    time.Duration
	now    func() time.Time // time.Now; tests move it
	shards [tokenShards]tokenShard
}

type tokenShard struct {
	mu sync.Mutex
	m  map[string]mintedToken
}

type mintedToken struct {
	bearer  string    // "Bearer <jwt>", ready for the header
	renewAt time.Time // half the lifetime: mint again from here on
}

// NewBuyerTokens checks o and returns a minter.
func NewBuyerTokens(o JWTOptions) (*BuyerTokens, error) {
	var method jwt.SigningMethod
	switch k := o.Key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("loadtest: JWT key: an EC key must be on P-256 (ES256), got %s", k.Curve.Params().Name)
		}
		method = jwt.SigningMethodES256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	default:
		return nil, fmt.Errorf("loadtest: JWT key: want an EC P-256 or an RSA private key, got %T", o.Key)
	}
	if o.Issuer == "" || o.Audience == "" {
		return nil, errors.New("loadtest: buyers' JWTs need the issuer and the audience the service expects (-jwt-issuer, -jwt-audience)")
	}
	if o.KID == "" {
		o.KID = DefaultJWTKID
	}
	if o.TTL == 0 {
		o.TTL = DefaultJWTTTL
	}
	if o.TTL < minJWTTTL {
		return nil, fmt.Errorf("loadtest: JWT lifetime %v: want at least %v", o.TTL, minJWTTTL)
	}
	b := &BuyerTokens{method: method, key: o.Key, kid: o.KID, iss: o.Issuer, aud: o.Audience, ttl: o.TTL, now: time.Now}
	for i := range b.shards {
		b.shards[i].m = make(map[string]mintedToken)
	}
	return b, nil
}

// Token returns user's token.
func (b *BuyerTokens) Token(user string) (string, error) {
	bearer, err := b.bearer(user)
	if err != nil {
		return "", err
	}
	return bearer[len("Bearer "):], nil
}

// bearer returns "Bearer <user's token>", minting one when the user has none
// or theirs is past half its lifetime.
func (b *BuyerTokens) bearer(user string) (string, error) {
	now := b.now()
	sh := &b.shards[shardOf(user)]
	sh.mu.Lock()
	tok, ok := sh.m[user]
	sh.mu.Unlock()
	if ok && now.Before(tok.renewAt) {
		return tok.bearer, nil
	}
	// Signed outside the lock: two workers minting for the same user at
	// once both get a valid token, and the map keeps one of them.
	signed, err := b.mint(user, now)
	if err != nil {
		return "", err
	}
	tok = mintedToken{bearer: "Bearer " + signed, renewAt: now.Add(b.ttl / 2)}
	sh.mu.Lock()
	if len(sh.m) >= tokensPerShard {
		sh.evict(now)
	}
	sh.m[user] = tok
	sh.mu.Unlock()
	return tok.bearer, nil
}

// evict drops the tokens due for renewal and, when that frees nothing,
// all of them: the cache only saves signatures.
func (sh *tokenShard) evict(now time.Time) {
	for u, t := range sh.m {
		if !now.Before(t.renewAt) {
			delete(sh.m, u)
		}
	}
	if len(sh.m) >= tokensPerShard {
		clear(sh.m)
	}
}

func (b *BuyerTokens) mint(user string, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(b.method, jwt.MapClaims{
		"iss": b.iss,
		"aud": b.aud,
		"sub": user,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(b.ttl).Unix(),
	})
	tok.Header["kid"] = b.kid
	s, err := tok.SignedString(b.key)
	if err != nil {
		return "", fmt.Errorf("loadtest: mint a JWT for %s: %w", user, err)
	}
	return s, nil
}

// shardOf is FNV-1a of user, without an allocation.
func shardOf(user string) int {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return int(h % tokenShards)
}

// ReadJWTKey reads a PEM private key: PKCS #8, or SEC 1 ("EC PRIVATE KEY")
// or PKCS #1 ("RSA PRIVATE KEY") as openssl writes them.
func ReadJWTKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: JWT key: %w", err)
	}
	for {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			return nil, fmt.Errorf("loadtest: JWT key %s: no PEM private key in it", path)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue // "EC PARAMETERS" and the like, which openssl writes first
		}
		if err != nil {
			return nil, fmt.Errorf("loadtest: JWT key %s: %w", path, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("loadtest: JWT key %s: %T cannot sign", path, key)
		}
		return signer, nil
	}
}

// WriteJWTKey makes an EC P-256 key for test tokens and writes, into dir,
// the private key for -jwt-key (JWTKeyFile), the same key as a private JWK
// for the k6 script (JWTPrivateJWKFile), and the public JWK Set to give the
// service (JWTJWKSFile), published under kid. It refuses to overwrite a
// file already there.
func WriteJWTKey(dir, kid string) error {
	if kid == "" {
		kid = DefaultJWTKID
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("loadtest: generate a JWT key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("loadtest: JWT key: %w", err)
	}
	meta := jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig}
	private, err := jwkJSON(key, meta, true)
	if err != nil {
		return err
	}
	public, err := jwkJSON(&key.PublicKey, meta, false)
	if err != nil {
		return err
	}
	jwks, err := json.Marshal(map[string][]json.RawMessage{"keys": {public}})
	if err != nil {
		return fmt.Errorf("loadtest: JWKS: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{JWTKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
		{JWTPrivateJWKFile, append(private, '\n'), 0o600},
		{JWTJWKSFile, append(jwks, '\n'), 0o644},
	}
	// All or none: a key beside another key's JWKS would refuse every token.
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f.name)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loadtest: %s already exists (or cannot be checked: %v); choose an empty directory", filepath.Join(dir, f.name), err)
		}
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

func jwkJSON(key any, meta jwkset.JWKMetadataOptions, private bool) ([]byte, error) {
	jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: meta, Marshal: jwkset.JWKMarshalOptions{Private: private}})
	if err != nil {
		return nil, fmt.Errorf("loadtest: JWK: %w", err)
	}
	raw, err := json.Marshal(jwk.Marshal())
	if err != nil {
		return nil, fmt.Errorf("loadtest: JWK: %w", err)
	}
	return raw, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("loadtest: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("loadtest: write %s: %w", path, err)
	}
	return nil
}
