package httpapi

import (
	"context"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/reservation"
)

// BuyerVerifier tells who a buyer is from their bearer token
// (buyerauth.Verifier). The text of its error is shown to the client, so it
// must say why the token was refused and nothing more.
type BuyerVerifier interface {
	Verify(ctx context.Context, token string) (userID string, err error)
}

type buyerKey struct{}

// asBuyer is the handlers of a buyer route: identifyBuyer first when buyers
// are authenticated; without, the handler alone, one hop fewer for every
// request.
func (s *Server) asBuyer(h fiber.Handler) []fiber.Handler {
	if s.buyers == nil {
		return []fiber.Handler{h}
	}
	return []fiber.Handler{s.identifyBuyer, h}
}

// identifyBuyer guards the buyer routes (reserve, read and cancel a
// reservation) when buyers are authenticated: the request must carry a
// bearer token the verifier accepts, naming a valid user id, which the
// handlers then use instead of trusting the body. Without a verifier it
// lets every request through, as the service always did.
func (s *Server) identifyBuyer(c *fiber.Ctx) error {
	if s.buyers == nil {
		return c.Next()
	}
	authorization := c.Get(fiber.HeaderAuthorization)
	scheme, token, _ := strings.Cut(authorization, " ")
	if authorization == "" || !strings.EqualFold(scheme, "Bearer") {
		// No credentials of this scheme: the challenge carries no error
		// code (RFC 6750, section 3.1).
		return errBuyerUnauthorized
	}
	user, err := s.buyers.Verify(c.UserContext(), strings.TrimSpace(token))
	if err != nil {
		return &challengeError{
			httpError: &httpError{errBuyerUnauthorized.kind, "the bearer token was refused: " + err.Error()},
			challenge: buyerChallenge + `, error="invalid_token"`,
		}
	}
	if !reservation.ValidUserID(user) {
		return &challengeError{
			httpError: &httpError{errBuyerUnauthorized.kind, "the bearer token was refused: its user is not a valid user id " +
				"([A-Za-z0-9._:@-]{1,64})"},
			challenge: buyerChallenge + `, error="invalid_token"`,
		}
	}
	c.Locals(buyerKey{}, user)
	return c.Next()
}

// buyerOf is the buyer the token named; ok is false when buyers are not
// authenticated.
func buyerOf(c *fiber.Ctx) (user string, ok bool) {
	user, ok = c.Locals(buyerKey{}).(string)
	return user, ok
}

const buyerChallenge = `Bearer realm="flashsale-buyer"`

// challengeError is an httpError answered with its own WWW-Authenticate.
type challengeError struct {
	*httpError
	challenge string
}

func (e *challengeError) Unwrap() error { return e.httpError }
