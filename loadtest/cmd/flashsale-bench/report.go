package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/flashsale/flashsale/loadtest"
)

// row is one line of the table.
type row struct {
	Name       string
	Requests   int64
	Elapsed    time.Duration
	Throughput float64 // requests per second, refusals included
	Purchases  float64 // holds or orders granted per second
	P50, P99   time.Duration
	Oversold   *int64 // nil where the row cannot oversell or does not say
	Errors     int64
	Detail     string
	FirstError string
	Failure    string // why the row could not be measured, or failed its verification
	CPU        cpuUse // CPU time of each process over the row; a process missing was not measured
	// rounds are the row's every round, in order, when it ran more than
	// once: a ratio between two rows is taken round by round (see ratio).
	rounds []row
}

func (r *row) fromResult(res loadtest.Result) {
	r.Requests, r.Elapsed, r.Throughput, r.P50, r.P99 = res.Requests, res.Elapsed, res.Throughput, res.P50, res.P99
	r.Errors, r.FirstError = res.Errors, res.FirstError
}

type rowJSON struct {
	Name       string  `json:"name"`
	Requests   int64   `json:"requests"`
	ElapsedMS  float64 `json:"elapsed_ms"`
	Throughput float64 `json:"throughput_rps"`
	Purchases  float64 `json:"purchases_rps"`
	P50MS      float64 `json:"p50_ms"`
	P99MS      float64 `json:"p99_ms"`
	Oversold   *int64  `json:"oversold"`
	Errors     int64   `json:"errors"`
	Detail     string  `json:"detail,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
	Failure    string  `json:"failure,omitempty"`
	// CPUPerRequest is microseconds of CPU per request by process.
	CPUPerRequest map[string]float64 `json:"cpu_us_per_request,omitempty"`
}

// MarshalJSON writes durations as milliseconds.
func (r row) MarshalJSON() ([]byte, error) {
	return json.Marshal(rowJSON{Name: r.Name, Requests: r.Requests, ElapsedMS: ms(r.Elapsed), Throughput: r.Throughput,
		Purchases: r.Purchases, P50MS: ms(r.P50), P99MS: ms(r.P99), Oversold: r.Oversold, Errors: r.Errors,
		Detail: r.Detail, FirstError: r.FirstError, Failure: r.Failure, CPUPerRequest: r.cpuPerRequest()})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// The verdicts of a check.
const (
	pass    = "PASS"
	fail    = "FAIL"
	notRun  = "n/a"
	atLeast = ">="
	atMost  = "<="
)

// check is one target, a ratio between rows of the same run or a bound.
type check struct {
	Name    string  `json:"name"`
	Value   float64 `json:"value"`
	Op      string  `json:"op"` // >= or <=
	Want    float64 `json:"want"`
	Unit    string  `json:"unit,omitempty"`
	Verdict string  `json:"verdict"`
	Why     string  `json:"why,omitempty"` // for n/a: the rows missing
}

// report is the whole run.
type report struct {
	RunID    string
	Clients  int
	Duration time.Duration
	LoadAvg  string   // 1, 5 and 15 minutes, from /proc/loadavg where there is one
	Notes    []string // how the servers' CPU was read, where not from /proc
	Idle     []idleRow
	Rows     []row
	Checks   []check
	Pass     bool // every check that could be evaluated passed, and every row was measured
}

type reportJSON struct {
	RunID      string    `json:"run_id"`
	Clients    int       `json:"clients"`
	DurationMS float64   `json:"duration_ms"`
	LoadAvg    string    `json:"load_average,omitempty"`
	Notes      []string  `json:"notes,omitempty"`
	Idle       []idleRow `json:"idle,omitempty"`
	Rows       []row     `json:"rows"`
	Checks     []check   `json:"checks"`
	Pass       bool      `json:"pass"`
}

// MarshalJSON writes durations as milliseconds.
func (r report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{RunID: r.RunID, Clients: r.Clients, DurationMS: ms(r.Duration),
		LoadAvg: r.LoadAvg, Notes: r.Notes, Idle: r.Idle, Rows: r.Rows, Checks: r.Checks, Pass: r.Pass})
}

// evaluate computes the checks from the rows: the targets (targets.go),
// each a ratio inside this one run or a bound, and that nothing which must
// not oversell did.
func (r *report) evaluate() {
	byName := make(map[string]*row, len(r.Rows))
	for i := range r.Rows {
		byName[r.Rows[i].Name] = &r.Rows[i]
	}
	r.Checks = append(targets(byName), r.idleTarget(), r.neverOversold(byName))

	r.Pass = true
	for _, c := range r.Checks {
		if c.Verdict == fail {
			r.Pass = false
		}
	}
	for _, rw := range r.Rows {
		if rw.Failure != "" {
			r.Pass = false
		}
	}
	for _, ir := range r.Idle {
		if ir.Failure != "" {
			r.Pass = false
		}
	}
}

// neverOversold: every row of the service and of the locking approaches
// that ran sold at most its stock. The naive rows are expected to fail it
// and are reported, not checked.
func (r *report) neverOversold(byName map[string]*row) check {
	c := check{Name: "units oversold by the service and the locking approaches", Op: atMost, Want: 0, Unit: "units"}
	ran := 0
	for _, n := range []string{rowSvcSuccess, rowSvcSoldOut, rowSvcFlashCrowd, rowForUpdate, rowConditional} {
		if rw, ok := byName[n]; ok && rw.Oversold != nil {
			ran++
			c.Value += float64(*rw.Oversold)
		}
	}
	if ran == 0 {
		c.Verdict, c.Why = notRun, "no row that reports oversell ran"
		return c
	}
	c.Verdict = verdict(c.Value == 0)
	return c
}

func verdict(ok bool) string {
	if ok {
		return pass
	}
	return fail
}

func (r report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.writeTable(w)
}

// writeTable prints the rows, then the checks with their verdicts.
func (r report) writeTable(w io.Writer) error {
	fmt.Fprintf(w, "flashsale-bench run %s: %d clients, %v per timed row", r.RunID, r.Clients, r.Duration)
	if r.LoadAvg != "" {
		// Everything shares the machine: a busy one shows in every row.
		fmt.Fprintf(w, ", load average at start %s", r.LoadAvg)
	}
	fmt.Fprint(w, "\n")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w, "CPU columns: microseconds of user + system CPU per request of each process over the row")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\treq/s\tp50\tp99\toversold\terrors\t"+cpuHeader+"\tdetail")
	for _, rw := range r.Rows {
		if rw.Failure != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t%d\t%s\tFAILED: %s\n", rw.Name, oversold(rw.Oversold), rw.Errors, cpuDashes, rw.Failure)
			continue
		}
		detail := rw.Detail
		if rw.FirstError != "" {
			detail += "; first error: " + rw.FirstError
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\n", rw.Name, rw.Throughput, latency(rw.P50), latency(rw.P99),
			oversold(rw.Oversold), rw.Errors, rw.cpuCells(), detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeIdle(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\twant\tverdict")
	for _, c := range r.Checks {
		value := formatValue(c.Value, c.Unit)
		if c.Verdict == notRun {
			value = "-"
		}
		v := c.Verdict
		if c.Why != "" {
			v += " (" + c.Why + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\n", c.Name, value, c.Op, formatValue(c.Want, c.Unit), v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	overall := "PASS"
	if !r.Pass {
		overall = "FAIL"
	}
	_, err := fmt.Fprintf(w, "\noverall: %s\n", overall)
	return err
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "units":
		return fmt.Sprintf("%.0f units", v)
	case "ms":
		return fmt.Sprintf("%.2fms", v)
	case "us":
		return fmt.Sprintf("%.1fus", v)
	}
	return fmt.Sprintf("%.2f%s", v, unit)
}

func latency(d time.Duration) string {
	if d >= 100*time.Millisecond {
		return d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%.2fms", ms(d))
}

func oversold(n *int64) string {
	if n == nil {
		return "-"
	}
	return fmt.Sprint(*n)
}
