// Package buyerauth tells who a buyer is from the bearer token (a JWT) the
// shop's identity provider issued them. It verifies tokens with maintained
// libraries (golang-jwt and keyfunc/jwkset): it holds no crypto of its own.
package buyerauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Algorithms are the signing algorithms accepted: asymmetric ones only. A
// symmetric one (HS256) would let anyone holding the public key, which is
// public, sign tokens with it as the secret; "none" signs nothing.
var Algorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Defaults for Options' zero values.
const (
	// DefaultLeeway absorbs clock skew between the identity provider and
	// this host when checking exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// DefaultRefreshInterval is how often the JWKS URL is fetched anyway.
	DefaultRefreshInterval = time.Hour
	// DefaultRefetchEvery bounds the fetches an unknown kid triggers: a key
	// the provider just rotated in is found within this long, and a flood
	// of tokens with made-up kids costs the provider one fetch per period.
	DefaultRefetchEvery = time.Minute
	// DefaultFetchTimeout bounds one fetch of the JWKS URL.
	DefaultFetchTimeout = 10 * time.Second
)

// Options say where the keys are and what a valid token must claim.
type Options struct {
	JWKSURL  string // fetched at start, every RefreshInterval, and for an unknown kid
	JWKSFile string // read once at start; exactly one of the two
	Issuer   string // the iss a token must carry
	Audience string // one of the token's aud must be this
	// UserClaim names the claim holding the buyer's user id ("sub" if empty).
	UserClaim string

	Leeway          time.Duration // DefaultLeeway if zero
	RefreshInterval time.Duration // DefaultRefreshInterval if zero
	RefetchEvery    time.Duration // DefaultRefetchEvery if zero
	FetchTimeout    time.Duration // DefaultFetchTimeout if zero
	HTTPClient      *http.Client  // http.DefaultClient if nil
	Log             *slog.Logger  // failed fetches; discarded if nil
}

// Verifier checks buyers' tokens. Its JWKS refresh runs until the context
// given to New is done.
type Verifier struct {
	parser    *jwt.Parser
	userClaim string
	known     keyfunc.Keyfunc // the keys held; never fetches
	refetch   keyfunc.Keyfunc // nil for a file; fetches before answering
	gate      *rate.Limiter   // admits one refetch per RefetchEvery
}

// New loads the keys (a URL that does not answer at start is an error: a
// service that can verify no token should not start as if it could) and
// starts the periodic refresh.
func New(ctx context.Context, o Options) (*Verifier, error) {
	if (o.JWKSURL == "") == (o.JWKSFile == "") {
		return nil, errors.New("buyerauth: exactly one of the JWKS URL and the JWKS file is required")
	}
	if o.Issuer == "" || o.Audience == "" {
		return nil, errors.New("buyerauth: the issuer and the audience are required")
	}
	v := &Verifier{
		parser: jwt.NewParser(
			jwt.WithValidMethods(Algorithms),
			jwt.WithIssuer(o.Issuer),
			jwt.WithAudience(o.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(orDefault(o.Leeway, DefaultLeeway)),
		),
		userClaim: o.UserClaim,
	}
	if v.userClaim == "" {
		v.userClaim = "sub"
	}
	var err error
	if o.JWKSFile != "" {
		err = v.loadFile(o.JWKSFile)
	} else {
		err = v.loadURL(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Verifier) loadFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("buyerauth: JWKS file: %w", err)
	}
	if v.known, err = keyfunc.NewJWKSetJSON(raw); err != nil {
		return fmt.Errorf("buyerauth: JWKS file %s: %w", path, err)
	}
	return v.checkKeys(context.Background(), path)
}

func (v *Verifier) loadURL(ctx context.Context, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fetchTimeout := orDefault(o.FetchTimeout, DefaultFetchTimeout)
	// One storage, fetched at start and every RefreshInterval, seen through
	// two clients: one that never fetches, and one that fetches before
	// looking again. jwkset's own unknown-kid limiter waits for its next
	// token, so a flood of made-up kids would park every request; the gate
	// here refuses at once instead, and jwkset's limiter is left open.
	store, err := jwkset.NewStorageFromHTTP(o.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:          o.HTTPClient,
		Ctx:             ctx,
		HTTPTimeout:     fetchTimeout,
		RefreshInterval: orDefault(o.RefreshInterval, DefaultRefreshInterval),
		RefreshErrorHandler: func(_ context.Context, err error) {
			log.Error("JWKS refresh failed; the keys fetched before stay in use", "url", o.JWKSURL, "err", err)
		},
	})
	if err != nil {
		return fmt.Errorf("buyerauth: JWKS URL %s: %w", o.JWKSURL, err)
	}
	urls := map[string]jwkset.Storage{o.JWKSURL: store}
	known, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{HTTPURLs: urls})
	if err != nil {
		return fmt.Errorf("buyerauth: %w", err)
	}
	refetching, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          urls,
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
		RateLimitWaitMax:  fetchTimeout, // also the refetch's own timeout
	})
	if err != nil {
		return fmt.Errorf("buyerauth: %w", err)
	}
	if v.known, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: known}); err != nil {
		return fmt.Errorf("buyerauth: %w", err)
	}
	if v.refetch, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: refetching}); err != nil {
		return fmt.Errorf("buyerauth: %w", err)
	}
	v.gate = rate.NewLimiter(rate.Every(orDefault(o.RefetchEvery, DefaultRefetchEvery)), 1)
	v.gate.Allow() // the fetch at start was this period's
	return v.checkKeys(ctx, o.JWKSURL)
}

// checkKeys refuses a key set with no key in it: every token would fail.
func (v *Verifier) checkKeys(ctx context.Context, from string) error {
	keys, err := v.known.Storage().KeyReadAll(ctx)
	if err != nil {
		return fmt.Errorf("buyerauth: keys from %s: %w", from, err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("buyerauth: %s holds no usable key", from)
	}
	return nil
}

// TokenError is why a token was refused. Its text is fixed per reason and
// safe to show the client; the library's error is kept for errors.Is.
type TokenError struct {
	Reason string
	Err    error
}

func (e *TokenError) Error() string { return e.Reason }
func (e *TokenError) Unwrap() error { return e.Err }

// Verify checks token and returns the user id it names. Every refusal is a
// *TokenError.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyFor(ctx))
	if err != nil {
		return "", &TokenError{Reason: reason(err), Err: err}
	}
	user, ok := claims[v.userClaim].(string)
	if !ok || user == "" {
		return "", &TokenError{Reason: "the token has no string claim " + v.userClaim, Err: jwt.ErrTokenRequiredClaimMissing}
	}
	return user, nil
}

// keyFor finds the token's key among those held and, for a kid not held,
// fetches the set again when the gate allows (a rotated-in key).
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	known := v.known.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		key, err := known(t)
		if err != nil && v.refetch != nil && errors.Is(err, jwkset.ErrKeyNotFound) && v.gate.Allow() {
			key, err = v.refetch.KeyfuncCtx(ctx)(t)
		}
		return key, err
	}
}

// reason words a refusal for the client, from the library's sentinels.
func reason(err error) string {
	switch {
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return "the token's key (kid) is unknown"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "the token's signature is invalid or its algorithm is not accepted"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token's issuer is not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token's audience is not this service"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim"
	}
	return "the token cannot be verified"
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
