package httpapi

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// TestBodiesRefuseRepeatedAndMiscasedFields: encoding/json would accept a
// repeated key (the last wins) and a field in another case; the API refuses
// both with 400, as it does unknown fields.
func TestBodiesRefuseRepeatedAndMiscasedFields(t *testing.T) {
	cases := []struct {
		name    string
		decode  func(body []byte) error
		body    string
		wantErr string // substring; "" means accepted
	}{
		{"reserve as documented", reserveDecoder, `{"user_id":"u1","quantity":1}`, ""},
		{"reserve with a repeated quantity", reserveDecoder, `{"user_id":"u1","quantity":1,"quantity":5}`, `"quantity" appears twice`},
		{"reserve with an upper-case field", reserveDecoder, `{"USER_ID":"u1","quantity":1}`, `unknown field "USER_ID"`},
		{"reserve with a mixed-case field", reserveDecoder, `{"user_id":"u1","Quantity":1}`, `unknown field "Quantity"`},
		{"item as documented", itemDecoder, `{"stock":5,"name":"x","per_user_limit":2}`, ""},
		{"item with a repeated stock", itemDecoder, `{"stock":5,"stock":0}`, `"stock" appears twice`},
		{"bulk as documented", bulkDecoder, `{"items":[{"sku":"a","stock":1},{"sku":"b","stock":2}]}`, ""},
		{"bulk with a repeated key in one item", bulkDecoder, `{"items":[{"sku":"a","stock":1},{"sku":"b","stock":2,"stock":3}]}`, `"stock" appears twice`},
		{"bulk with the same key in two items", bulkDecoder, `{"items":[{"sku":"a","stock":1},{"stock":2,"sku":"b"}]}`, ""},
		{"bulk with a miscased item field", bulkDecoder, `{"items":[{"SKU":"a","stock":1}]}`, `unknown field "SKU"`},
		{"bulk with a repeated items", bulkDecoder, `{"items":[],"items":[{"sku":"a","stock":1}]}`, `"items" appears twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.decode([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused %s: %v", tc.body, err)
				}
				return
			}
			if !errors.Is(err, reservation.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("decode %s = %v, want ErrInvalid naming %s", tc.body, err, tc.wantErr)
			}
		})
	}
}

func reserveDecoder(body []byte) error { _, err := decodeReserve("sku", body, nil); return err }
func itemDecoder(body []byte) error    { _, err := decodeItem("sku", body); return err }
func bulkDecoder(body []byte) error    { _, err := decodeBulk(body); return err }

// TestAdminSchemeIsCaseInsensitive: RFC 9110 makes the auth scheme
// case-insensitive; the token itself is compared exactly.
func TestAdminSchemeIsCaseInsensitive(t *testing.T) {
	s := New(reservation.NewService(nil, nil), Config{AdminTokens: []string{"0123456789abcdef0123"}})
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"canonical", "Bearer 0123456789abcdef0123", 0},
		{"lower case scheme", "bearer 0123456789abcdef0123", 0},
		{"upper case scheme", "BEARER 0123456789abcdef0123", 0},
		{"token in another case", "Bearer 0123456789ABCDEF0123", 401},
		{"two spaces", "Bearer  0123456789abcdef0123", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/admin/v1/items/x/audit", nil)
			req.Header.Set("Authorization", tc.auth)
			resp, err := s.App().Test(req)
			if err != nil {
				t.Fatal(err)
			}
			// Past the admin check the request meets "no such endpoint"
			// (no Auditor configured): 404, not 401.
			if got := resp.StatusCode; (tc.want == 401) != (got == 401) {
				t.Fatalf("status %d, want 401: %v", got, tc.want == 401)
			}
		})
	}
}
