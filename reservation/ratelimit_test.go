package reservation

import (
	"strings"
	"testing"
	"time"
)

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    Limit
		wantErr string
	}{
		{in: "", want: Limit{}},
		{in: "10/s", want: Limit{Rate: 10, Per: time.Second, Burst: 10}},
		{in: " 10/s burst 20 ", want: Limit{Rate: 10, Per: time.Second, Burst: 20}},
		{in: "600/m burst 1", want: Limit{Rate: 600, Per: time.Minute, Burst: 1}},
		{in: "1/h", want: Limit{Rate: 1, Per: time.Hour, Burst: 1}},
		{in: "1000000/s", want: Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}},
		{in: "10/d", wantErr: "/s, /m or /h"},
		{in: "10", wantErr: "/s, /m or /h"},
		{in: "0/s", wantErr: "rate must be"},
		{in: "-1/s", wantErr: "rate must be"},
		{in: "1000001/s", wantErr: "rate must be"},
		{in: "10/s burst 0", wantErr: "burst must be"},
		{in: "10/s burst", wantErr: "want N/s"},
		{in: "10/s bursts 5", wantErr: "want N/s"},
		{in: "10/s burst 5 extra", wantErr: "want N/s"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLimit(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLimit(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.On() {
				if again, err := ParseLimit(got.String()); err != nil || again != got {
					t.Errorf("String() %q does not parse back: %+v, %v", got.String(), again, err)
				}
			}
		})
	}
}

// FuzzParseLimit: no input panics, and every limit accepted is usable (a
// positive interval and burst) and prints as text that parses back to it.
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"10/s", "10/s burst 20", "1/h", "", "x/s", "9999999/s burst 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLimit(s)
		if err != nil || !l.On() {
			return
		}
		if l.Interval() <= 0 || l.Burst < 1 || l.Window() <= 0 {
			t.Fatalf("ParseLimit(%q) = %+v: not usable", s, l)
		}
		if again, err := ParseLimit(l.String()); err != nil || again != l {
			t.Fatalf("ParseLimit(%q) = %+v prints as %q, which parses to %+v, %v", s, l, l.String(), again, err)
		}
	})
}
