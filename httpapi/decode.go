package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/flashsale/flashsale/reservation"
)

// The parsers below are pure functions of what the client sent, so the fuzz
// tests can drive them without a server.

// checkJSON answers 415 unless the body is declared as JSON. An empty body
// (confirm, cancel) needs no declaration.
func checkJSON(contentType []byte, body []byte) error {
	if len(body) == 0 && len(contentType) == 0 || string(contentType) == "application/json" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(string(contentType))
	if err != nil || mt != "application/json" {
		return errMediaType
	}
	return nil
}

// strictJSON is how every body decodes. Beyond refusing unknown fields, the
// v2 decoder's defaults refuse what encoding/json let through: a name
// repeated in one object (the last would silently win) and a field spelled
// in another case ("USER_ID" would fill user_id). It does so in one pass,
// where encoding/json needed a second token scan, in a sixth of the time or
// less and a thirteenth of the allocations (BenchmarkDecodeStrict). Invalid
// UTF-8 still reads as U+FFFD, as with encoding/json, so the validators see
// what they saw before.
var strictJSON = json.JoinOptions(json.RejectUnknownMembers(true), jsontext.AllowInvalidUTF8(true))

// decodeStrict decodes exactly one JSON value into v, refusing unknown,
// repeated and miscased fields and anything after the value.
func decodeStrict(body []byte, v any) error {
	if err := json.Unmarshal(body, v, strictJSON); err != nil {
		return refusal(body, err)
	}
	return nil
}

// refusal words why decodeStrict refused body, for a client, without Go type
// names. The syntax of the whole body is judged first, so a body that is both
// malformed and wrong reads as malformed wherever the decoder stopped; only a
// refused body pays for that second look.
func refusal(body []byte, err error) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("malformed JSON body: empty body")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if serr := dec.SkipValue(); serr != nil {
		return invalid("malformed JSON body: %s", syntaxDetail(serr))
	}
	if _, serr := dec.ReadToken(); !errors.Is(serr, io.EOF) {
		return invalid("malformed JSON body: unexpected data after the JSON value")
	}
	var synErr *jsontext.SyntacticError
	var semErr *json.SemanticError
	var parseErr *time.ParseError
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &synErr):
		return invalid("field %q appears twice", synErr.JSONPointer.LastToken())
	case errors.Is(err, json.ErrUnknownName) && errors.As(err, &semErr):
		name := semErr.JSONPointer.LastToken()
		if name != strings.ToLower(name) {
			return invalid("unknown field %q (field names are lower case)", name)
		}
		return invalid("malformed JSON body: unknown field %q", name)
	case errors.As(err, &parseErr):
		return invalid("malformed JSON body: timestamps must be RFC 3339, such as 2026-12-12T00:00:00Z")
	case errors.As(err, &semErr):
		return invalid("malformed JSON body: field %q has the wrong type (got JSON %s)",
			strings.Join(slices.Collect(semErr.JSONPointer.Tokens()), "."), kindOf(semErr))
	}
	return invalid("malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func syntaxDetail(err error) string {
	var synErr *jsontext.SyntacticError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated body"
	case errors.As(err, &synErr):
		return fmt.Sprintf("syntax error at byte %d", synErr.ByteOffset)
	}
	return strings.TrimPrefix(err.Error(), "jsontext: ")
}

// kindOf names the JSON a field could not take, as encoding/json did
// ("number 1.5", "string", "array").
func kindOf(err *json.SemanticError) string {
	switch err.JSONKind {
	case '0':
		return "number " + string(err.JSONValue)
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return err.JSONKind.String()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{reservation.ErrInvalid}, args...)...)
}

// itemBody is an admin's item; pointers tell an absent field from a zero.
type itemBody struct {
	Stock        *int64     `json:"stock"`
	PerUserLimit *int64     `json:"per_user_limit"`
	HoldSeconds  *int64     `json:"hold_seconds"`
	StartsAt     *time.Time `json:"starts_at"`
	EndsAt       *time.Time `json:"ends_at"`
	Name         *string    `json:"name"`
	Buckets      *int64     `json:"buckets"`
}

func (b itemBody) spec(sku string) (reservation.ItemSpec, error) {
	spec := reservation.ItemSpec{
		SKU:          sku,
		PerUserLimit: reservation.DefaultPerUserLimit,
		Hold:         reservation.DefaultHold,
	}
	if b.Stock == nil {
		return spec, invalid("stock is required")
	}
	if *b.Stock < 0 || *b.Stock > reservation.MaxStock {
		return spec, invalid("stock must be 0..%d", reservation.MaxStock)
	}
	spec.Stock = *b.Stock
	if b.PerUserLimit != nil {
		if *b.PerUserLimit < 1 || *b.PerUserLimit > reservation.MaxPerUserLimit {
			return spec, invalid("per_user_limit must be 1..%d", reservation.MaxPerUserLimit)
		}
		spec.PerUserLimit = int(*b.PerUserLimit)
	}
	if b.HoldSeconds != nil {
		maxHold := int64(reservation.MaxHold / time.Second)
		if *b.HoldSeconds < 1 || *b.HoldSeconds > maxHold {
			return spec, invalid("hold_seconds must be 1..%d", maxHold)
		}
		spec.Hold = time.Duration(*b.HoldSeconds) * time.Second
	}
	if b.Name != nil {
		spec.Name = *b.Name
	}
	if b.Buckets != nil {
		if *b.Buckets < 1 || *b.Buckets > reservation.MaxBuckets {
			return spec, invalid("buckets must be 1..%d", reservation.MaxBuckets)
		}
		spec.Buckets = int(*b.Buckets)
	}
	for _, t := range []struct {
		name string
		at   *time.Time
		dst  *time.Time
	}{{"starts_at", b.StartsAt, &spec.StartsAt}, {"ends_at", b.EndsAt, &spec.EndsAt}} {
		if t.at == nil {
			continue
		}
		// Millisecond precision in Redis; years outside 1970..9999 are typos.
		// The year is checked in UTC, where the instant is stored and shown:
		// 9999-12-31T23:00:00-05:00 is in 10000, which RFC 3339 cannot write.
		at := t.at.UTC().Truncate(time.Millisecond)
		if at.Year() < 1970 || at.Year() > 9999 {
			return spec, invalid("%s must be between 1970 and 9999 (UTC)", t.name)
		}
		*t.dst = at
	}
	return spec, spec.Validate()
}

// decodeItem parses PUT /admin/v1/items/{sku}.
func decodeItem(sku string, body []byte) (reservation.ItemSpec, error) {
	if !reservation.ValidSKU(sku) {
		return reservation.ItemSpec{}, reservation.ErrInvalidSKU
	}
	var b itemBody
	if err := decodeStrict(body, &b); err != nil {
		return reservation.ItemSpec{}, err
	}
	return b.spec(sku)
}

type bulkBody struct {
	Items []bulkItem `json:"items"`
}

type bulkItem struct {
	SKU *string `json:"sku"`
	itemBody
}

// decodeBulk parses PUT /admin/v1/items: every item must be valid, or
// nothing is applied.
func decodeBulk(body []byte) ([]reservation.ItemSpec, error) {
	var b bulkBody
	if err := decodeStrict(body, &b); err != nil {
		return nil, err
	}
	if b.Items == nil {
		return nil, invalid("items is required")
	}
	if len(b.Items) > maxBulkItems {
		return nil, invalid("at most %d items per call", maxBulkItems)
	}
	specs := make([]reservation.ItemSpec, len(b.Items))
	for i, it := range b.Items {
		if it.SKU == nil || !reservation.ValidSKU(*it.SKU) {
			return nil, invalid("items[%d]: sku must match [A-Za-z0-9._-]{1,64}", i)
		}
		spec, err := it.spec(*it.SKU)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		specs[i] = spec
	}
	return specs, nil
}

type reserveBody struct {
	UserID   *string `json:"user_id"`
	Quantity *int64  `json:"quantity"`
}

// DecodeReserve parses the body of POST /v1/items/{sku}/reservations as the
// service does; the benchmark's bare HTTP ceiling decodes with it too.
// idemKey is nil when the header was absent (an empty header is invalid).
func DecodeReserve(sku string, body []byte, idemKey []byte) (reservation.ReserveRequest, error) {
	return decodeReserve(sku, body, idemKey)
}

// decodeReserve parses POST /v1/items/{sku}/reservations. idemKey is nil when
// the header was absent (an empty header is present and invalid).
func decodeReserve(sku string, body []byte, idemKey []byte) (reservation.ReserveRequest, error) {
	return decodeReserveAs(sku, body, idemKey, "")
}

// decodeReserveAs is decodeReserve for a request whose buyer the bearer
// token named (buyer; "" when buyers are not authenticated, and user_id is
// then required). The body's user_id may be left out; one that names
// someone else is refused rather than overridden, as the client is either
// confused or trying to act for another buyer.
func decodeReserveAs(sku string, body []byte, idemKey []byte, buyer string) (reservation.ReserveRequest, error) {
	req := reservation.ReserveRequest{SKU: sku}
	if !reservation.ValidSKU(sku) {
		return req, reservation.ErrInvalidSKU
	}
	if idemKey != nil {
		if !reservation.ValidIdempotencyKey(string(idemKey)) {
			return req, invalid("Idempotency-Key must be 1..%d visible ASCII characters", reservation.MaxIdempotencyKeyLen)
		}
		req.IdempotencyKey = string(idemKey)
	}
	user, qty, ok := parseReserveFast(body)
	if !ok {
		var err error
		if user, qty, err = parseReserveStrict(body, buyer == ""); err != nil {
			return req, err
		}
	}
	if buyer != "" {
		if user != "" && user != buyer {
			return req, errForbiddenUser
		}
		user = buyer
	}
	if qty < 1 || qty > reservation.MaxPerUserLimit {
		return req, invalid("quantity must be 1..per_user_limit (at most %d)", reservation.MaxPerUserLimit)
	}
	req.UserID, req.Quantity = user, int(qty)
	return req, req.Validate()
}

// parseReserveStrict reads any body parseReserveFast leaves, and words the
// refusal of a bad one.
// user is "" when the body has no user_id and userRequired is false.
func parseReserveStrict(body []byte, userRequired bool) (user string, qty int64, err error) {
	var b reserveBody
	if err := decodeStrict(body, &b); err != nil {
		return "", 0, err
	}
	if b.UserID == nil && userRequired {
		return "", 0, invalid("user_id is required")
	}
	if b.Quantity == nil {
		return "", 0, invalid("quantity is required")
	}
	if b.UserID != nil {
		user = *b.UserID
	}
	return user, *b.Quantity, nil
}

// decodeEmpty accepts no body, or an empty JSON object.
func decodeEmpty(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return decodeStrict(body, &struct{}{})
}
