package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
)

// TestLogDurations: durations in log lines read as Go writes them, in both
// formats, never as nanoseconds.
func TestLogDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := newLogger(Config{LogFormat: format}, &buf)
		log.Info("rebuilding", "grace", 6100*time.Millisecond)
		line := buf.String()
		if !strings.Contains(line, "6.1s") || strings.Contains(line, "6100000000") {
			t.Errorf("%s: %s; want grace as 6.1s", format, line)
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil || m["grace"] != "6.1s" {
				t.Errorf("json: grace = %v (%v); want \"6.1s\"", m["grace"], err)
			}
		}
	}
}

// TestDurationSuggestionInRange: the example a refused duration suggests is
// one the variable accepts: its default.
func TestDurationSuggestionInRange(t *testing.T) {
	_, err := LoadConfig(Environ{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_SOLD_OUT_MEMORY": "200ms"})
	if err == nil || !strings.Contains(err.Error(), "FLASHSALE_SOLD_OUT_MEMORY") {
		t.Fatalf("LoadConfig = %v; want FLASHSALE_SOLD_OUT_MEMORY refused", err)
	}
	_, suggestion, _ := strings.Cut(err.Error(), "such as ")
	suggestion, _, _ = strings.Cut(suggestion, "\n")
	if _, err := LoadConfig(Environ{"FLASHSALE_REDIS_ADDR": "embedded", "FLASHSALE_SOLD_OUT_MEMORY": suggestion}); err != nil {
		t.Errorf("the suggested %q is refused too: %v", suggestion, err)
	}
}

// TestReadyzBacklogTime: /readyz's backlog_read_at is absent before the
// syncer's first reading (not 0001-01-01), and in the API's millisecond
// layout after it.
func TestReadyzBacklogTime(t *testing.T) {
	st := persistence.SyncStatus{}
	if _, ok := syncDetail(st)["backlog_read_at"]; ok {
		t.Errorf("backlog_read_at shown before the first reading: %v", syncDetail(st))
	}
	st.CheckedAt = time.Date(2026, 12, 4, 22, 10, 3, 284973467, time.FixedZone("x", 3600))
	if got := syncDetail(st)["backlog_read_at"]; got != "2026-12-04T21:10:03.284Z" {
		t.Errorf("backlog_read_at = %v; want 2026-12-04T21:10:03.284Z", got)
	}
	st.DBErr = errors.New("down")
	if syncDetail(st)["database_ok"] != false {
		t.Error("database_ok with a failed write")
	}
}
