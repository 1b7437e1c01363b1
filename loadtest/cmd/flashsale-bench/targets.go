package main

import (
	"slices"
	"strings"
	"time"
)

// The targets of issue 16, all in one run at one concurrency: the service
// at the plain endpoint's rate with no more Redis CPU per hold, little CPU
// of its own, p99 under 5 ms on both paths, refusals near the bare HTTP
// ceiling, and far beyond the row lock MySQL would need.
const (
	p99Max = 5 * time.Millisecond
	// svcCPUMax is the service's CPU per hold on the success path.
	svcCPUMax = 25 * time.Microsecond
	// successVsPlain: the success path's req/s over the plain endpoint's.
	successVsPlain = 1.0
	// soldOutVsCeiling: the sold-out path's req/s over the bare ceiling's.
	soldOutVsCeiling = 0.9
	// successVsForUpdate: holds/s of the success path over the purchases/s
	// of SELECT ... FOR UPDATE.
	successVsForUpdate = 20
	// With both rate limits on (issue 12): the sold-out path at least this
	// share of the bare ceiling, the success path at least this share of
	// itself without limits.
	limitedSoldOutVsCeiling = 0.8
	limitedSuccessVsSuccess = 0.85
)

// targets evaluates each target on the rows by name; one whose rows did
// not run or failed is n/a with the reason.
func targets(byName map[string]*row) []check {
	t := targetRows(byName)
	throughput := func(rw *row) float64 { return rw.Throughput }
	purchases := func(rw *row) float64 { return rw.Purchases }
	return []check{
		t.ratio("success path: service / plain endpoint (req/s)", rowSvcSuccess, rowPlain, throughput, successVsPlain),
		t.cpuVsRow("success path: Redis CPU per hold, at most the plain endpoint's", procRedis, rowSvcSuccess, rowPlain),
		t.cpuBound("success path: service CPU per hold", procService, rowSvcSuccess, svcCPUMax),
		t.p99("success path p99 at the run's clients", rowSvcSuccess),
		t.p99("sold-out path p99 at the run's clients", rowSvcSoldOut),
		t.ratio("sold-out path: service / bare HTTP ceiling (req/s)", rowSvcSoldOut, rowCeiling, throughput, soldOutVsCeiling),
		t.ratio("holds/s: service success path / MySQL FOR UPDATE purchases/s", rowSvcSuccess, rowForUpdate, purchases, successVsForUpdate),
		t.ratio("rate limits on: sold-out path / bare HTTP ceiling (req/s)", rowSvcSoldOutLimited, rowCeiling, throughput, limitedSoldOutVsCeiling),
		t.ratio("rate limits on: success path / success path without (req/s)", rowSvcSuccessLimited, rowSvcSuccess, throughput, limitedSuccessVsSuccess),
	}
}

type targetRows map[string]*row

// get returns the rows, or why a check on them cannot be made.
func (t targetRows) get(names ...string) ([]*row, string) {
	var rows []*row
	var missing []string
	for _, n := range names {
		switch rw, ok := t[n]; {
		case !ok:
			missing = append(missing, n+" not run")
		case rw.Failure != "":
			missing = append(missing, n+" failed")
		default:
			rows = append(rows, rw)
		}
	}
	return rows, strings.Join(missing, ", ")
}

// ratio: value(num) / value(den) at least want. Rows of several rounds
// are compared round by round, each round's two rows a minute apart at
// most, and the median of those ratios is the value: the ratio of two
// rows' medians could pair rounds far apart on a machine whose speed
// drifts.
func (t targetRows) ratio(name, num, den string, value func(*row) float64, want float64) check {
	c := check{Name: name, Op: atLeast, Want: want, Unit: "x"}
	rows, why := t.get(num, den)
	if why != "" {
		c.Verdict, c.Why = notRun, why
		return c
	}
	c.Value = pairedRatio(rows[0], rows[1], value)
	c.Verdict = verdict(c.Value >= want)
	return c
}

// pairedRatio is value(num) / value(den), round by round when both ran
// the same rounds: the median of the rounds' ratios (the lower middle of
// an even count).
func pairedRatio(num, den *row, value func(*row) float64) float64 {
	if len(num.rounds) < 2 || len(num.rounds) != len(den.rounds) {
		if d := value(den); d > 0 {
			return value(num) / d
		}
		return 0
	}
	ratios := make([]float64, len(num.rounds))
	for i := range num.rounds {
		if d := value(&den.rounds[i]); d > 0 {
			ratios[i] = value(&num.rounds[i]) / d
		}
	}
	slices.Sort(ratios)
	return ratios[(len(ratios)-1)/2]
}

// p99: the row's p99 at most p99Max.
func (t targetRows) p99(name, of string) check {
	c := check{Name: name, Op: atMost, Want: ms(p99Max), Unit: "ms"}
	rows, why := t.get(of)
	if why != "" {
		c.Verdict, c.Why = notRun, why
		return c
	}
	c.Value = ms(rows[0].P99)
	c.Verdict = verdict(rows[0].P99 <= p99Max)
	return c
}

// cpuBound: proc's CPU per request in row of at most limit.
func (t targetRows) cpuBound(name, proc, of string, limit time.Duration) check {
	c := check{Name: name, Op: atMost, Want: float64(limit) / float64(time.Microsecond), Unit: "us"}
	rows, why := t.get(of)
	if why == "" {
		var ok bool
		if c.Value, ok = rows[0].perRequest(proc); !ok {
			why = proc + " CPU not measured in " + of
		}
	}
	if why != "" {
		c.Verdict, c.Why = notRun, why
		return c
	}
	c.Verdict = verdict(c.Value <= c.Want)
	return c
}

// cpuVsRow: proc's CPU per request in row of at most what it is in ref.
func (t targetRows) cpuVsRow(name, proc, of, ref string) check {
	c := check{Name: name, Op: atMost, Unit: "us"}
	rows, why := t.get(of, ref)
	if why == "" {
		v, okV := rows[0].perRequest(proc)
		w, okW := rows[1].perRequest(proc)
		if !okV || !okW {
			why = proc + " CPU not measured"
		}
		c.Value, c.Want = v, w
	}
	if why != "" {
		c.Verdict, c.Why = notRun, why
		return c
	}
	c.Verdict = verdict(c.Value <= c.Want)
	return c
}
