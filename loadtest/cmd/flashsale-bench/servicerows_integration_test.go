//go:build integration

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestSuccessRowsWithAndWithoutTheSyncer runs the success path on the
// flashsale binary as make bench does, once with its syncer and once
// without: the row with the syncer is verified against the record; the row
// without cannot be (nothing reaches MySQL: were it checked, the row would
// fail), is not, and tells what the record costs against the first. The
// CPU figures are not compared: other tests share the machine's MariaDB.
func TestSuccessRowsWithAndWithoutTheSyncer(t *testing.T) {
	rep, log := benchOnItsOwnRedis(t, settings{clients: 8, duration: 500 * time.Millisecond, rounds: 1,
		only: []string{rowSvcSuccess, rowSvcSuccessNoSync}, flashsale: testenv.BuildFlashsaleFast(t)})
	rows := map[string]row{}
	for _, r := range rep.Rows {
		rows[r.Name] = r
		t.Logf("%s: %.0f req/s, %s us per request (svc, redis, mysql, gen); %s", r.Name, r.Throughput, r.cpuCells(), r.Detail)
		if r.Failure != "" || r.Errors != 0 || r.Requests == 0 || r.Oversold == nil || *r.Oversold != 0 {
			t.Errorf("row %s: %+v; log:\n%s", r.Name, r, log)
		}
	}
	if len(rows) != 2 {
		t.Fatalf("rows %v, want %s and %s", rep.Rows, rowSvcSuccess, rowSvcSuccessNoSync)
	}
	if d := rows[rowSvcSuccess].Detail; !strings.Contains(d, "MySQL in sync") {
		t.Errorf("%s detail %q: want the record checked", rowSvcSuccess, d)
	}
	d := rows[rowSvcSuccessNoSync].Detail
	if strings.Contains(d, "MySQL in sync") || !strings.Contains(d, rowSvcSuccess+" (syncer on)") ||
		!strings.Contains(d, "the record's us per hold: service ") {
		t.Errorf("%s detail %q: want no record check and the record's cost against %s", rowSvcSuccessNoSync, d, rowSvcSuccess)
	}
}
