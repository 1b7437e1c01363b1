package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// The fuzz targets drive the request parsers with arbitrary input. Each
// asserts: no panic; a refusal wraps reservation.ErrInvalid (or is the 415
// error); and whatever is accepted obeys every rule of the API contract, so
// nothing invalid can reach the store. `go test` runs the seed corpus
// (plus testdata/fuzz); `make fuzz` or `go test -fuzz` explores further.

var itemBodies = []string{
	`{"stock":10}`,
	`{"stock":0}`,
	`{"stock":1000000000,"per_user_limit":1000,"hold_seconds":86400}`,
	`{"stock":5,"per_user_limit":2,"hold_seconds":30,"name":"Red shoes","starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00.5+01:00"}`,
	`{"stock":1,"starts_at":"1970-01-01T00:00:00Z","ends_at":"9999-12-31T23:59:59.999Z"}`,
	`{"stock":1,"starts_at":"2026-01-01T00:00:00.123456789Z","ends_at":"2026-01-01T00:00:00.124Z"}`,
	`{"stock":1,"starts_at":"1970-01-01T00:30:00+01:00"}`,
	`{"stock":1,"ends_at":"9999-12-31T23:00:00-05:00"}`,
	`{"stock":1,"name":"` + strings.Repeat("é", 100) + `"}`,
	`{"stock":1,"name":"\u0000"}`,
	`{"stock":1,"name":"\ud800"}`,
	`{"stock":-1}`,
	`{"stock":1000000001}`,
	`{"stock":1.5}`,
	`{"stock":"1"}`,
	`{"stock":1e3}`,
	`{"stock":null}`,
	`{"stock":1,"per_user_limit":0}`,
	`{"stock":1,"per_user_limit":1001}`,
	`{"stock":1,"hold_seconds":0}`,
	`{"stock":1,"hold_seconds":86401}`,
	`{"stock":1,"starts_at":"2026-01-01"}`,
	`{"stock":1,"starts_at":"2026-01-02T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"}`,
	`{"stock":1,"starts_at":"0000-01-01T00:00:00Z"}`,
	`{"stock":1,"colour":"red"}`,
	`{"Stock":1}`,
	`{"stock":1,"stock":2}`,
	`{"stock":1} {}`,
	`{"stock":1`,
	`[]`,
	`null`,
	``,
	`   `,
}

var reserveBodies = []string{
	`{"user_id":"u1","quantity":1}`,
	`{"user_id":"alice@example.com:42","quantity":1000}`,
	`{"quantity":2,"user_id":"A.b_c-d"}`,
	`{"user_id":"u1","quantity":0}`,
	`{"user_id":"u1","quantity":-1}`,
	`{"user_id":"u1","quantity":1001}`,
	`{"user_id":"u1","quantity":1.5}`,
	`{"user_id":"u1","quantity":"1"}`,
	`{"user_id":"u1","quantity":9223372036854775808}`,
	`{"user_id":"","quantity":1}`,
	`{"user_id":"u|1","quantity":1}`,
	`{"user_id":"jürgen","quantity":1}`,
	`{"user_id":"` + strings.Repeat("u", 65) + `","quantity":1}`,
	`{"user_id":"u1"}`,
	`{"quantity":1}`,
	`{"user_id":"u1","quantity":1,"x":1}`,
	`{"user_id":"u1","quantity":1}garbage`,
	`{"USER_ID":"u1","Quantity":1}`,
	`{"user_id":null,"quantity":null}`,
	`{"user_id":"u1","quantity":1,}`,
	`null`,
	`[1]`,
	``,
}

// checkSpec fails the test unless spec is something the store may be given.
func checkSpec(t *testing.T, spec reservation.ItemSpec, sku string) {
	t.Helper()
	if spec.SKU != sku || !reservation.ValidSKU(spec.SKU) {
		t.Fatalf("accepted sku %q (path %q)", spec.SKU, sku)
	}
	if err := spec.Validate(); err != nil {
		t.Fatalf("accepted a spec that does not validate: %v (%+v)", err, spec)
	}
	if spec.Stock < 0 || spec.Stock > reservation.MaxStock {
		t.Fatalf("accepted stock %d", spec.Stock)
	}
	if spec.PerUserLimit < 1 || spec.PerUserLimit > reservation.MaxPerUserLimit {
		t.Fatalf("accepted per_user_limit %d", spec.PerUserLimit)
	}
	if spec.Hold < time.Second || spec.Hold > reservation.MaxHold || spec.Hold%time.Second != 0 {
		t.Fatalf("accepted hold %v", spec.Hold)
	}
	if len(spec.Name) > reservation.MaxNameLen || strings.ContainsRune(spec.Name, 0) {
		t.Fatalf("accepted name %q", spec.Name)
	}
	for _, at := range []time.Time{spec.StartsAt, spec.EndsAt} {
		if at.IsZero() {
			continue
		}
		if at.Location() != time.UTC {
			t.Fatalf("accepted time %v not in UTC", at)
		}
		if !at.Equal(at.Truncate(time.Millisecond)) {
			t.Fatalf("accepted time %v finer than Redis keeps", at)
		}
		if y := at.Year(); y < 1970 || y > 9999 {
			t.Fatalf("accepted time %v outside 1970..9999 UTC", at)
		}
		// What the API answers with must read back as the same instant.
		back, err := time.Parse(time.RFC3339Nano, at.Format(timeLayout))
		if err != nil || !back.Equal(at) {
			t.Fatalf("accepted time %v answers as %q, which reads back as %v (%v)", at, at.Format(timeLayout), back, err)
		}
	}
	if !spec.StartsAt.IsZero() && !spec.EndsAt.IsZero() && !spec.EndsAt.After(spec.StartsAt) {
		t.Fatalf("accepted ends_at %v not after starts_at %v", spec.EndsAt, spec.StartsAt)
	}
}

// itemJSONOf writes spec as an admin would send it, every field explicit.
func itemJSONOf(spec reservation.ItemSpec) []byte {
	m := map[string]any{
		"stock":          spec.Stock,
		"per_user_limit": spec.PerUserLimit,
		"hold_seconds":   int64(spec.Hold / time.Second),
		"name":           spec.Name,
	}
	if !spec.StartsAt.IsZero() {
		m["starts_at"] = spec.StartsAt.Format(timeLayout)
	}
	if !spec.EndsAt.IsZero() {
		m["ends_at"] = spec.EndsAt.Format(timeLayout)
	}
	b, _ := json.Marshal(m)
	return b
}

func sameSpec(a, b reservation.ItemSpec) bool {
	return a.SKU == b.SKU && a.Name == b.Name && a.Stock == b.Stock && a.PerUserLimit == b.PerUserLimit &&
		a.Hold == b.Hold && a.StartsAt.Equal(b.StartsAt) && a.EndsAt.Equal(b.EndsAt)
}

func wantInvalid(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, reservation.ErrInvalid) {
		t.Fatalf("refusal %v does not wrap reservation.ErrInvalid", err)
	}
}

func FuzzDecodeItem(f *testing.F) {
	for _, body := range itemBodies {
		f.Add("sku-1", []byte(body))
	}
	f.Add(strings.Repeat("s", 64), []byte(`{"stock":1}`))
	f.Add(strings.Repeat("s", 65), []byte(`{"stock":1}`))
	f.Add("", []byte(`{"stock":1}`))
	f.Add("bad!", []byte(`{"stock":1}`))
	f.Add("a{b}", []byte(`{"stock":1}`))
	f.Fuzz(func(t *testing.T, sku string, body []byte) {
		spec, err := decodeItem(sku, body)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		checkSpec(t, spec, sku)
		// What was accepted, sent again as the API writes it, means the same.
		again, err := decodeItem(sku, itemJSONOf(spec))
		if err != nil || !sameSpec(spec, again) {
			t.Fatalf("re-sending %+v as %s: %+v, %v", spec, itemJSONOf(spec), again, err)
		}
	})
}

func FuzzDecodeBulk(f *testing.F) {
	for _, body := range itemBodies {
		if strings.HasPrefix(body, "{") && json.Valid([]byte(body)) {
			f.Add([]byte(`{"items":[{"sku":"a",` + body[1:] + `]}`))
		}
	}
	for _, body := range []string{
		`{"items":[]}`,
		`{"items":[{"sku":"a","stock":1},{"sku":"b","stock":2,"per_user_limit":3,"hold_seconds":4,"name":"B"}]}`,
		`{"items":[{"sku":"a","stock":1},{"sku":"a","stock":2}]}`,
		`{"items":[{"stock":1}]}`,
		`{"items":[{"sku":"","stock":1}]}`,
		`{"items":[{"sku":null,"stock":1}]}`,
		`{"items":[null]}`,
		`{"items":[{"sku":"a","stock":1,"itemBody":{}}]}`,
		`{"items":null}`,
		`{"items":{}}`,
		`{}`,
		`{"items":[],"extra":1}`,
		`{"items":[{"sku":"a","stock":1}]}]`,
		`[]`,
		``,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		specs, err := decodeBulk(body)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		if specs == nil || len(specs) > maxBulkItems {
			t.Fatalf("accepted %d items (nil %v)", len(specs), specs == nil)
		}
		for _, spec := range specs {
			checkSpec(t, spec, spec.SKU)
		}
	})
}

func FuzzDecodeReserve(f *testing.F) {
	for _, body := range reserveBodies {
		f.Add("sku-1", []byte(body), []byte(nil), false)
		f.Add("sku-1", []byte(body), []byte("order-42"), true)
	}
	for _, key := range []string{"", "k", strings.Repeat("k", 128), strings.Repeat("k", 129), "k 1", "clé", "k\x7f", "k\t", "!~"} {
		f.Add("sku-1", []byte(reserveBodies[0]), []byte(key), true)
	}
	for _, sku := range []string{"", strings.Repeat("s", 64), strings.Repeat("s", 65), "a!b", "a%21b", "a/b", "a{b}"} {
		f.Add(sku, []byte(reserveBodies[0]), []byte(nil), false)
	}
	f.Fuzz(func(t *testing.T, sku string, body, key []byte, hasKey bool) {
		if !hasKey {
			key = nil
		} else if key == nil {
			key = []byte{}
		}
		req, err := decodeReserve(sku, body, key)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		switch {
		case req.SKU != sku || !reservation.ValidSKU(req.SKU):
			t.Fatalf("accepted sku %q (path %q)", req.SKU, sku)
		case !reservation.ValidUserID(req.UserID):
			t.Fatalf("accepted user_id %q", req.UserID)
		case req.Quantity < 1 || req.Quantity > reservation.MaxPerUserLimit:
			t.Fatalf("accepted quantity %d", req.Quantity)
		case key == nil && req.IdempotencyKey != "":
			t.Fatalf("no header, key %q", req.IdempotencyKey)
		case key != nil && (req.IdempotencyKey != string(key) || !reservation.ValidIdempotencyKey(req.IdempotencyKey)):
			t.Fatalf("header %q accepted as key %q", key, req.IdempotencyKey)
		case req.ID != "":
			t.Fatalf("the parser chose an id %q", req.ID)
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted a request that does not validate: %v", err)
		}
		// The key does not change how the body reads.
		plain, err := decodeReserve(sku, body, nil)
		if err != nil || plain.UserID != req.UserID || plain.Quantity != req.Quantity {
			t.Fatalf("without the key: %+v, %v; with it: %+v", plain, err, req)
		}
	})
}

func FuzzDecodeEmpty(f *testing.F) {
	for _, body := range []string{``, ` `, "\n\t", `{}`, ` { } `, `{"a":1}`, `{`, `{}{}`, `{} x`, `[]`, `null`, `""`, `0`, `{"":null}`} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := decodeEmpty(body)
		if err != nil {
			wantInvalid(t, err)
			return
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return
		}
		// Accepted: an empty object (or JSON null, which encoding/json
		// decodes into a struct as nothing at all).
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		if m, isObj := v.(map[string]any); v != nil && (!isObj || len(m) != 0) {
			t.Fatalf("accepted a body with content: %q", body)
		}
	})
}

func FuzzCheckJSON(f *testing.F) {
	for _, ct := range []string{
		"", "application/json", "application/json; charset=utf-8", "Application/JSON", " application/json ",
		"application/json;charset=", "application/json; charset", "application/problem+json", "text/plain",
		"application/jsonx", "application/json, text/plain", "multipart/form-data; boundary=x", ";", "application/",
	} {
		f.Add(ct, []byte(`{}`))
		f.Add(ct, []byte(nil))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		err := checkJSON([]byte(contentType), body)
		if err != nil {
			if err != errMediaType { //nolint:errorlint // the sentinel itself, unwrapped
				t.Fatalf("refusal %v is not the 415 error", err)
			}
			if k, _ := classify(err); k.status != 415 || k.code != "unsupported_media_type" {
				t.Fatalf("refusal classifies as %+v", k)
			}
			return
		}
		if len(body) == 0 && contentType == "" {
			return
		}
		mt, _, _ := strings.Cut(contentType, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			t.Fatalf("accepted Content-Type %q", contentType)
		}
	})
}

// TestDecodeBulkItemCount: 10,000 items is the most one call takes.
func TestDecodeBulkItemCount(t *testing.T) {
	body := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"items":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"sku":"s%d","stock":%d}`, i, i)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	specs, err := decodeBulk(body(maxBulkItems))
	if err != nil || len(specs) != maxBulkItems {
		t.Fatalf("%d items: %d specs, %v", maxBulkItems, len(specs), err)
	}
	if len(body(maxBulkItems)) > bulkBodyLimit {
		t.Fatalf("a catalogue of %d small items does not fit the bulk body limit", maxBulkItems)
	}
	if _, err := decodeBulk(body(maxBulkItems + 1)); !errors.Is(err, reservation.ErrInvalid) {
		t.Fatalf("%d items: %v, want invalid", maxBulkItems+1, err)
	}
}
