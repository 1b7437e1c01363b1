package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// The fast encoders and the fast reserve parser must agree with
// encoding/json and the strict decoder: they are only a shortcut.

func FuzzReserveFastAgrees(f *testing.F) {
	for _, body := range reserveBodies {
		f.Add([]byte(body))
	}
	for _, body := range []string{
		`{"user_id":"u1","quantity":1}`, ` {"quantity" : 2 ,"user_id":"a.b@c:d-e_f"} `, "{\n\t\"user_id\":\"u\",\r\"quantity\":999999999}",
		`{"user_id":"u","quantity":01}`, `{"user_id":"u","quantity":1.0}`, `{"user_id":"u","quantity":1e0}`,
		`{"user_id":"u","quantity":-1}`, `{"user_id":"u","user_id":"v","quantity":1}`, `{"user_id":"u","quantity":1}x`,
		`{"user_id":"u","quantity":1,}`, `{"user_id":"\u0075","quantity":1}`, `{"USER_ID":"u","quantity":1}`,
		`{"user_id":"u","quantity":1234567890}`, `{"user_id":"","quantity":1}`, `{"user_id":"u"}`, `{}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		user, qty, ok := parseReserveFast(body)
		if !ok {
			return
		}
		var b reserveBody
		if err := decodeStrict(body, &b); err != nil {
			t.Fatalf("fast path accepted %q, the strict decoder refuses it: %v", body, err)
		}
		if b.UserID == nil || *b.UserID != user || b.Quantity == nil || *b.Quantity != qty {
			t.Fatalf("fast path read %q as (%q, %d), the strict decoder as %+v", body, user, qty, b)
		}
	})
}

func TestParseReserveFast(t *testing.T) {
	tests := []struct {
		name string
		body string
		user string
		qty  int64
		ok   bool
	}{
		{"plain", `{"user_id":"u1","quantity":1}`, "u1", 1, true},
		{"keys swapped, spaces", ` { "quantity" : 12 , "user_id" : "a.b" } `, "a.b", 12, true},
		{"escape left to strict", `{"user_id":"\u0075","quantity":1}`, "", 0, false},
		{"duplicate left to strict", `{"user_id":"u","user_id":"v","quantity":1}`, "", 0, false},
		{"unknown field left to strict", `{"user_id":"u","quantity":1,"x":1}`, "", 0, false},
		{"missing quantity", `{"user_id":"u"}`, "", 0, false},
		{"float", `{"user_id":"u","quantity":1.5}`, "", 0, false},
		{"leading zero", `{"user_id":"u","quantity":01}`, "", 0, false},
		{"trailing data", `{"user_id":"u","quantity":1} {}`, "", 0, false},
		{"ten digits", `{"user_id":"u","quantity":1000000000}`, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, qty, ok := parseReserveFast([]byte(tt.body))
			if user != tt.user || qty != tt.qty || ok != tt.ok {
				t.Fatalf("got (%q, %d, %v), want (%q, %d, %v)", user, qty, ok, tt.user, tt.qty, tt.ok)
			}
		})
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "<a&b>", "\x00\x01\b\f\n\r\t\x1f", "é", "\u2028", "\xff", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json says %s", s, got, want)
		}
		if got := appendJSONChars([]byte("x"), []byte(s)); string(got) != "x"+string(want[1:len(want)-1]) {
			t.Fatalf("appendJSONChars(x, []byte(%q)) = %s, encoding/json says %s", s, got, want)
		}
	})
}

func FuzzAppendReservationAndProblem(f *testing.F) {
	f.Add("sku-1.AbC", "sku-1", "user@x", 3, "pending", int64(1_780_000_000_123), "sold out: 0 units available", "/v1/items/a<b>")
	f.Add("", "", "", 0, "", int64(0), "", "")
	f.Fuzz(func(t *testing.T, id, sku, user string, qty int, status string, ms int64, detail, instance string) {
		at := time.UnixMilli(ms % 253_402_300_799_000).UTC() // RFC 3339 years only
		r := reservation.Reservation{ID: id, SKU: sku, UserID: user, Quantity: qty, Status: reservation.Status(status),
			CreatedAt: at, ExpiresAt: at.Add(time.Minute), UpdatedAt: at}
		want, _ := json.Marshal(toReservationJSON(r))
		if got := appendReservation(nil, r); string(got) != string(want) {
			t.Fatalf("appendReservation = %s, encoding/json says %s", got, want)
		}
		for _, p := range []problem{
			{Type: "urn:flashsale:problem:" + status, Title: user, Status: qty, Detail: detail, Code: status, Instance: instance, RequestID: id},
			{Type: "urn:flashsale:problem:sold_out", Title: "x", Status: 409, Detail: detail, Code: "sold_out"},
		} {
			want, _ := json.Marshal(p)
			k := kind{status: p.Status, code: p.Code, title: p.Title}
			if got := appendProblem(nil, k, p.Detail, p.Instance, []byte(p.RequestID)); string(got) != string(want) {
				t.Fatalf("appendProblem = %s, encoding/json says %s", got, want)
			}
		}
	})
}

func FuzzAppendTime(f *testing.F) {
	for _, ms := range []int64{0, 1_780_000_000_123, -1, 253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_001} {
		f.Add(ms, false)
	}
	f.Add(int64(1_780_000_000_123), true)
	f.Fuzz(func(t *testing.T, ms int64, local bool) {
		at := time.UnixMilli(ms).UTC()
		if local {
			at = at.In(time.FixedZone("x", 5*3600+30*60))
		}
		want := at.AppendFormat([]byte("x"), timeLayout)
		if got := appendTime([]byte("x"), at); string(got) != string(want) {
			t.Fatalf("appendTime(%v) = %s, AppendFormat says %s", at, got, want)
		}
	})
}

func TestDecodeReserveFastPathAllocations(t *testing.T) {
	body := []byte(`{"user_id":"buyer-123","quantity":1}`)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := decodeReserve("sku-1", body, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the user id string
		t.Fatalf("decodeReserve allocates %.0f times per call, want at most 1", allocs)
	}
	if !strings.Contains(string(body), "buyer") {
		t.Fatal("unreachable")
	}
}
