package httpapi

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// The reserve endpoint is the one a flash crowd hits. These helpers handle
// the bodies buyers actually send and the answers they get, without
// reflection. They were written when the strict decoder was encoding/json
// plus a duplicate-key scan (about 12µs and 45 allocations for a reserve
// body); its go-json-experiment replacement takes under 1µs and 3, against
// about 70ns and 1 here (BenchmarkDecodeStrict), so parsing's share of a
// request is now small either way. Parsing is conservative: anything
// unusual (escapes, other fields, null, floats) is left to the strict
// decoder, so the fast path can never accept what the strict one refuses;
// FuzzReserveFastAgrees holds it to that.

// parseReserveFast reads {"user_id":"...","quantity":N} in either key order,
// with any JSON whitespace. ok is false for anything else.
func parseReserveFast(b []byte) (user string, qty int64, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", 0, false
	}
	var haveUser, haveQty bool
	for {
		i = skipSpace(b, i+1)
		key, next, ok := plainString(b, i)
		if !ok {
			return "", 0, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return "", 0, false
		}
		i = skipSpace(b, i+1)
		switch {
		case string(key) == "user_id" && !haveUser:
			v, next, ok := plainString(b, i)
			if !ok {
				return "", 0, false
			}
			user, haveUser, i = string(v), true, next
		case string(key) == "quantity" && !haveQty:
			n, next, ok := smallInt(b, i)
			if !ok {
				return "", 0, false
			}
			qty, haveQty, i = n, true, next
		default:
			return "", 0, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return "", 0, false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return "", 0, false
		}
	}
	if skipSpace(b, i+1) != len(b) || !haveUser || !haveQty {
		return "", 0, false
	}
	return user, qty, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] made only of the bytes user ids
// and field names may hold, so its raw bytes are its value.
func plainString(b []byte, i int) (v []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// smallInt reads a JSON integer of at most nine digits without a sign,
// leading zero, fraction or exponent.
func smallInt(b []byte, i int) (n int64, next int, ok bool) {
	j := i
	for j < len(b) && j-i < 10 && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		j++
	}
	digits := j - i
	if digits == 0 || digits > 9 || (digits > 1 && b[i] == '0') {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] >= '0' && b[j] <= '9') {
		return 0, 0, false
	}
	return n, j, true
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (HTML characters included), so both encoders agree byte for byte.
func appendJSONString(dst []byte, s string) []byte {
	return append(appendJSONChars(append(dst, '"'), s), '"')
}

// appendJSONChars is appendJSONString without the quotes around, for a
// string or its bytes.
func appendJSONChars[T string | []byte](dst []byte, s T) []byte {
	const hex = "0123456789abcdef"
	mark := len(dst)
	start := 0
	for i := 0; i < len(s); {
		// One table load per byte: every answer's strings pass here, and
		// nearly all of them are plain ASCII with nothing to escape.
		if jsonPlain[s[i]] {
			i++
			continue
		}
		c := s[i]
		if c >= 0x80 {
			// Multi-byte UTF-8, invalid bytes and U+2028/9 need encoding/json's
			// rules; such strings are rare in answers, so defer to it.
			return appendSlowString(dst[:mark], string(s))
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

// jsonPlain marks the bytes encoding/json writes as they are: printable
// ASCII but for the quote, the backslash and the HTML characters. Never
// written after it is built.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

func appendSlowString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals, quoted
	return append(dst, b[1:len(b)-1]...)
}

// appendReservation is json.Marshal(toReservationJSON(r)), without reflection.
func appendReservation(dst []byte, r reservation.Reservation) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, r.ID)
	dst = append(dst, `,"sku":`...)
	dst = appendJSONString(dst, r.SKU)
	dst = append(dst, `,"user_id":`...)
	dst = appendJSONString(dst, r.UserID)
	dst = append(dst, `,"quantity":`...)
	dst = strconv.AppendInt(dst, int64(r.Quantity), 10)
	dst = append(dst, `,"status":`...)
	dst = appendJSONString(dst, string(r.Status))
	// Timestamps in this layout are digits and "-:.TZ+", nothing to escape.
	dst = append(dst, `,"created_at":"`...)
	dst = appendTime(dst, r.CreatedAt)
	dst = append(dst, `","expires_at":"`...)
	dst = appendTime(dst, r.ExpiresAt)
	dst = append(dst, `","updated_at":"`...)
	dst = appendTime(dst, r.UpdatedAt)
	return append(dst, `"}`...)
}

// appendTime is t.AppendFormat(dst, timeLayout) without reading the layout
// again for every time (that was 1.6 % of the service's CPU on the success
// path, three times per reservation). The store's times are UTC; any other
// location, or a year past four digits, takes AppendFormat.
func appendTime(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if t.Location() != time.UTC || year < 0 || year > 9999 {
		return t.AppendFormat(dst, timeLayout)
	}
	hour, minute, second := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = appendDigits(append(dst, '-'), int(month), 2)
	dst = appendDigits(append(dst, '-'), day, 2)
	dst = appendDigits(append(dst, 'T'), hour, 2)
	dst = appendDigits(append(dst, ':'), minute, 2)
	dst = appendDigits(append(dst, ':'), second, 2)
	dst = appendDigits(append(dst, '.'), t.Nanosecond()/int(time.Millisecond), 3)
	return append(dst, 'Z')
}

// appendDigits appends n, 0 <= n < 10^width, in exactly width digits.
func appendDigits(dst []byte, n, width int) []byte {
	var b [4]byte
	for i := width - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, b[:width]...)
}

// appendProblem is json.Marshal of the problem document of k with this
// detail, instance and request id (empty: left out), without reflection.
// The type is written from k.code, not built as a string first.
func appendProblem(dst []byte, k kind, detail, instance string, requestID []byte) []byte {
	dst = append(dst, `{"type":"`+problemTypePrefix...)
	dst = appendJSONChars(dst, k.code)
	dst = append(dst, `","title":`...)
	dst = appendJSONString(dst, k.title)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(k.status), 10)
	dst = append(dst, `,"detail":`...)
	dst = appendJSONString(dst, detail)
	dst = append(dst, `,"code":`...)
	dst = appendJSONString(dst, k.code)
	if instance != "" {
		dst = append(dst, `,"instance":`...)
		dst = appendJSONString(dst, instance)
	}
	if len(requestID) > 0 {
		dst = append(dst, `,"request_id":"`...)
		dst = append(appendJSONChars(dst, requestID), '"')
	}
	return append(dst, '}')
}
