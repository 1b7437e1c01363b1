package loadtest

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgressRender(t *testing.T) {
	tests := []struct {
		name     string
		p        progress
		n        int64
		elapsed  time.Duration
		wantPart string
	}{
		{"by requests", progress{total: 200}, 50, time.Second, "[=======                       ]  25% 50 req 50/s"},
		{"by time", progress{duration: 4 * time.Second}, 10, 3 * time.Second, "[======================        ]  75% 10 req"},
		{"nearer bound wins", progress{total: 100, duration: 10 * time.Second}, 90, time.Second, "  90% 90 req"},
		{"past the end", progress{total: 10}, 12, time.Second, "[==============================] 100% 12 req"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.render(tt.n, tt.elapsed); !strings.Contains(got, tt.wantPart) {
				t.Errorf("render(%d, %v) = %q, want it to contain %q", tt.n, tt.elapsed, got, tt.wantPart)
			}
		})
	}
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		name string
		w    io.Writer
	}{
		{"nil", nil},
		{"buffer", &bytes.Buffer{}},
		{"regular file", f},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := newProgress(tt.w, 10, 0); p != nil {
				t.Errorf("newProgress(%T) drew a bar on something that is not a terminal", tt.w)
			}
		})
	}
}
