package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what one run measured. In JSON the percentiles are
// milliseconds (p50_ms, ...), which is what people read and plot.
type Result struct {
	Name       string           `json:"name"`
	Requests   int64            `json:"requests"` // completed, errors included, dropped excluded
	Errors     int64            `json:"errors"`
	Dropped    int64            `json:"dropped"` // open loop only: due while Clients were in flight
	Elapsed    time.Duration    `json:"elapsed_ns"`
	Throughput float64          `json:"throughput_rps"`
	P50        time.Duration    `json:"-"`
	P90        time.Duration    `json:"-"`
	P99        time.Duration    `json:"-"`
	P999       time.Duration    `json:"-"`
	Max        time.Duration    `json:"-"`
	Outcomes   map[string]int64 `json:"outcomes"`
	FirstError string           `json:"first_error,omitempty"`
}

// resultJSON is Result's wire form. It has no methods, so a struct that
// embeds it (Report's wire form) gets its fields inline.
type resultJSON struct {
	Name       string           `json:"name"`
	Requests   int64            `json:"requests"`
	Errors     int64            `json:"errors"`
	Dropped    int64            `json:"dropped"`
	Elapsed    time.Duration    `json:"elapsed_ns"`
	Throughput float64          `json:"throughput_rps"`
	P50        float64          `json:"p50_ms"`
	P90        float64          `json:"p90_ms"`
	P99        float64          `json:"p99_ms"`
	P999       float64          `json:"p999_ms"`
	Max        float64          `json:"max_ms"`
	Outcomes   map[string]int64 `json:"outcomes"`
	FirstError string           `json:"first_error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMS(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func (r Result) wire() resultJSON {
	return resultJSON{
		Name: r.Name, Requests: r.Requests, Errors: r.Errors, Dropped: r.Dropped,
		Elapsed: r.Elapsed, Throughput: r.Throughput,
		P50: ms(r.P50), P90: ms(r.P90), P99: ms(r.P99), P999: ms(r.P999), Max: ms(r.Max),
		Outcomes: r.Outcomes, FirstError: r.FirstError,
	}
}

func (w resultJSON) result() Result {
	return Result{
		Name: w.Name, Requests: w.Requests, Errors: w.Errors, Dropped: w.Dropped,
		Elapsed: w.Elapsed, Throughput: w.Throughput,
		P50: fromMS(w.P50), P90: fromMS(w.P90), P99: fromMS(w.P99), P999: fromMS(w.P999), Max: fromMS(w.Max),
		Outcomes: w.Outcomes, FirstError: w.FirstError,
	}
}

// MarshalJSON writes the percentiles as milliseconds.
func (r Result) MarshalJSON() ([]byte, error) { return json.Marshal(r.wire()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w resultJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = w.result()
	return nil
}

// Report is a scenario's Result and the verification of the state it left.
type Report struct {
	Result
	Verification Verification `json:"verification"`
}

// reportJSON flattens the Result's fields beside "verification", as
// embedding would have without Result's own MarshalJSON taking over.
type reportJSON struct {
	resultJSON
	Verification Verification `json:"verification"`
}

// MarshalJSON writes the Result's fields and "verification" side by side.
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{r.Result.wire(), r.Verification})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	var w reportJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Report{Result: w.result(), Verification: w.Verification}
	return nil
}

// WriteTable writes reports as a table for people: one row per run, then
// each run's outcomes and verification.
func WriteTable(w io.Writer, reports ...Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\terrors\tdropped\telapsed\treq/s\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Name, r.Requests, r.Errors, r.Dropped, r.Elapsed.Round(time.Millisecond), r.Throughput,
			fmtLatency(r.P50), fmtLatency(r.P90), fmtLatency(r.P99), fmtLatency(r.P999), fmtLatency(r.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range reports {
		fmt.Fprintf(&b, "\n%s outcomes:", r.Name)
		for _, k := range slices.Sorted(maps.Keys(r.Outcomes)) {
			fmt.Fprintf(&b, " %s=%d", k, r.Outcomes[k])
		}
		b.WriteByte('\n')
		if r.FirstError != "" {
			fmt.Fprintf(&b, "%s first error: %s\n", r.Name, r.FirstError)
		}
		v := r.Verification
		verdict := "OK"
		if !v.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(&b, "%s verification %s: stock=%d available=%d reserved=%d sold=%d granted=%d (%d units) cancelled_units=%d oversold=%d",
			r.Name, verdict, v.Stock, v.Available, v.Reserved, v.Sold, v.Granted, v.GrantedUnits, v.CancelledUnits, v.Oversold)
		if v.SyncChecked {
			fmt.Fprintf(&b, " mysql_rows=%d synced_in=%s", v.MySQLRows, v.SyncedIn.Round(time.Millisecond))
		} else {
			b.WriteString(" (record not checked)")
		}
		b.WriteByte('\n')
		for _, p := range v.Problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtLatency keeps three significant digits, the histogram's precision.
func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", ms(d))
	default:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	}
}
