package httpapi

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// BenchmarkDecodeStrict compares decodeStrict (go-json-experiment/json,
// which refuses repeated and miscased names itself) with the decoder it
// replaced (encoding/json, then a second token scan for those two rules), on
// the bodies the API takes: a buyer's reserve body, an admin's item, and a
// bulk seed of 100 items. The reserve body takes the strict decoder only
// when parseReserveFast leaves it (escapes, other key spellings); the fast
// row shows what that costs instead.
//
//	go test -run '^$' -bench DecodeStrict -benchmem ./httpapi
func BenchmarkDecodeStrict(b *testing.B) {
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf(`{"sku":"item-%d","stock":1000,"per_user_limit":2,"hold_seconds":300,`+
			`"name":"Red shoes","starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00Z"}`, i)
	}
	bodies := []struct {
		name string
		body string
		into func() any
	}{
		{"reserve", `{"user_id":"u1234567","quantity":1}`, func() any { return new(reserveBody) }},
		{"item", `{"stock":1000,"per_user_limit":2,"hold_seconds":300,"name":"Red shoes",` +
			`"starts_at":"2026-01-01T00:00:00Z","ends_at":"2026-01-02T00:00:00Z","buckets":4}`, func() any { return new(itemBody) }},
		{"bulk100", `{"items":[` + strings.Join(items, ",") + `]}`, func() any { return new(bulkBody) }},
	}
	decoders := []struct {
		name   string
		decode func([]byte, any) error
	}{
		{"jsonv2", decodeStrict},
		{"stdjson+scan", decodeStrictStd},
	}
	for _, bd := range bodies {
		for _, dec := range decoders {
			b.Run(bd.name+"/"+dec.name, func(b *testing.B) {
				body := []byte(bd.body)
				b.ReportAllocs()
				for b.Loop() {
					if err := dec.decode(body, bd.into()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("reserve/fast", func(b *testing.B) {
		body := []byte(bodies[0].body)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := parseReserveFast(body); !ok {
				b.Fatal("fast path refused the reserve body")
			}
		}
	})
}

// TestDecodeStrictStdAgrees keeps the comparison honest: the replaced
// decoder, kept below for the benchmark only, must still accept and refuse
// what decodeStrict does on the fuzz seed bodies.
func TestDecodeStrictStdAgrees(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bodies []string
		into   func() any
	}{
		{"item", itemBodies, func() any { return new(itemBody) }},
		{"reserve", reserveBodies, func() any { return new(reserveBody) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, body := range tc.bodies {
				got, want := decodeStrict([]byte(body), tc.into()), decodeStrictStd([]byte(body), tc.into())
				if (got == nil) != (want == nil) {
					t.Errorf("%s: jsonv2 %v, encoding/json %v", body, got, want)
				}
			}
		})
	}
}

// decodeStrictStd is the decoder decodeStrict replaced, kept only so that
// BenchmarkDecodeStrict can be run again: encoding/json refusing unknown
// fields and trailing data, then checkKeysStd for repeated and miscased keys.
func decodeStrictStd(body []byte, v any) error {
	dec := stdjson.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("malformed JSON body: unexpected data after the JSON value")
	}
	return checkKeysStd(body)
}

var fieldNamesStd = map[string]bool{
	"stock": true, "per_user_limit": true, "hold_seconds": true, "starts_at": true, "ends_at": true,
	"name": true, "items": true, "sku": true, "user_id": true, "quantity": true, "buckets": true,
}

func checkKeysStd(body []byte) error {
	type frame struct {
		object  bool
		wantKey bool
		seen    map[string]bool
	}
	var stack []*frame
	dec := stdjson.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return invalid("malformed JSON body: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(stdjson.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key, _ := tok.(string)
			if !fieldNamesStd[key] {
				return invalid("unknown field %q (field names are lower case)", key)
			}
			if top.seen[key] {
				return invalid("field %q appears twice", key)
			}
			top.seen[key] = true
			top.wantKey = false
			continue
		}
		if top != nil && top.object {
			top.wantKey = true // this token starts the value
		}
		switch tok {
		case stdjson.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true, seen: map[string]bool{}})
		case stdjson.Delim('['):
			stack = append(stack, &frame{})
		case stdjson.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
