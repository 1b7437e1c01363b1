// Package loadtest drives load against a running flashsale deployment and
// verifies afterwards that nothing was oversold and the record caught up.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op performs one request (or one iteration of a scenario); outcome is a
// short label ("created", "sold_out", "limit_exceeded", "confirmed",
// "http_503", ...). err != nil counts as an error (transport failure or
// unexpected status).
type Op func(ctx context.Context, worker int, seq int64) (outcome string, err error)

// Config shapes one run.
type Config struct {
	Clients  int           // closed loop: concurrent clients; open loop: max requests in flight
	Rate     float64       // requests per second for an open loop; 0 = closed loop
	Duration time.Duration // stop after this long (0: no time bound)
	Requests int64         // stop after this many requests (0: no count bound); at least one bound required
	Progress io.Writer     // where to draw a progress bar, nil for none (draw only when it is a terminal)
}

// OutcomeDropped labels an open-loop request that was due while Clients
// requests were already in flight: the generator could not offer the
// target rate, so the request was never sent.
const OutcomeDropped = "dropped"

// Histogram bounds: 1µs..60s at 3 significant digits, in microseconds.
const (
	histMin     = 1
	histMax     = int64(60 * time.Second / time.Microsecond)
	histSigFigs = 3
)

func (c Config) validate() error {
	var errs []error
	if c.Clients < 1 {
		errs = append(errs, fmt.Errorf("clients must be at least 1, got %d", c.Clients))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate must not be negative, got %g", c.Rate))
	}
	if c.Duration < 0 || c.Requests < 0 {
		errs = append(errs, errors.New("duration and requests must not be negative"))
	}
	if c.Duration == 0 && c.Requests == 0 {
		errs = append(errs, errors.New("a duration or a request count is required: the run would never end"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loadtest config: %w", err)
	}
	return nil
}

// workerStats is what one worker records. Each worker owns its own, so the
// hot path takes no lock; they are merged once the run is over.
type workerStats struct {
	hist     *hdrhistogram.Histogram
	max      time.Duration
	requests int64
	errors   int64
	outcomes map[string]int64
	firstErr error
	firstAt  time.Time
}

func newWorkerStats() *workerStats {
	return &workerStats{
		hist:     hdrhistogram.New(histMin, histMax, histSigFigs),
		outcomes: make(map[string]int64, 8),
	}
}

func (w *workerStats) record(latency time.Duration, outcome string, err error) {
	w.requests++
	w.outcomes[outcome]++
	if err != nil {
		w.errors++
		if w.firstErr == nil {
			w.firstErr, w.firstAt = err, time.Now()
		}
	}
	if latency > w.max {
		w.max = latency
	}
	us := int64(latency / time.Microsecond)
	// Out-of-range values are clamped rather than lost: a request slower
	// than the histogram's top still counts in every percentile.
	us = min(max(us, histMin), histMax)
	_ = w.hist.RecordValue(us)
}

// Run drives op under cfg until a bound is reached or ctx is done, and
// returns what it measured. Requests in flight when the time bound passes
// are allowed to finish and are counted. A cancelled ctx stops the run
// early: the partial result comes back with ctx's error.
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	stats := make([]*workerStats, cfg.Clients)
	for i := range stats {
		stats[i] = newWorkerStats()
	}
	var done atomic.Int64 // completed requests, for the progress bar only
	bar := newProgress(cfg.Progress, cfg.Requests, cfg.Duration)

	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	stopBar := bar.start(start, &done)

	var dropped int64
	if cfg.Rate > 0 {
		dropped = runOpen(ctx, cfg, op, stats, start, deadline, &done)
	} else {
		runClosed(ctx, cfg, op, stats, deadline, &done)
	}
	elapsed := time.Since(start)
	stopBar()

	res := merge(stats, elapsed)
	if dropped > 0 {
		res.Outcomes[OutcomeDropped] += dropped
		res.Dropped = dropped
	}
	return res, ctx.Err()
}

// runClosed runs cfg.Clients workers, each issuing its next request as soon
// as the previous one answers. Sequence numbers are handed out from one
// counter, so the requests run are exactly 0..n-1 whatever stops the run.
func runClosed(ctx context.Context, cfg Config, op Op, stats []*workerStats, deadline time.Time, done *atomic.Int64) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Go(func() {
			st := stats[w]
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				seq := next.Add(1) - 1
				if cfg.Requests > 0 && seq >= cfg.Requests {
					return
				}
				begin := time.Now()
				outcome, err := op(ctx, w, seq)
				st.record(time.Since(begin), outcome, err)
				done.Add(1)
			}
		})
	}
	wg.Wait()
}

// job is one open-loop request: its sequence number and when it was meant
// to start, counted from the run's start.
type job struct {
	seq      int64
	intended time.Duration
}

// runOpen issues requests at cfg.Rate whatever the service's latency.
// Latency is measured from each request's intended start, so a stalled
// service shows in the percentiles instead of silently lowering the rate
// (coordinated omission). A request due while cfg.Clients are in flight is
// dropped and counted, never queued: a queue would hide the same stall.
// It returns the number dropped.
func runOpen(ctx context.Context, cfg Config, op Op, stats []*workerStats, start, deadline time.Time, done *atomic.Int64) int64 {
	jobs := make(chan job, cfg.Clients) // never blocks: at most Clients in flight
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Go(func() {
			st := stats[w]
			for j := range jobs {
				outcome, err := op(ctx, w, j.seq)
				st.record(time.Since(start.Add(j.intended)), outcome, err)
				inFlight.Add(-1)
				done.Add(1)
			}
		})
	}

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	var seq, dropped int64
	timer := time.NewTimer(0)
	defer timer.Stop()
schedule:
	for {
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		// Everything due by now goes out at once: sleeping per request
		// cannot be done precisely at thousands per second.
		due := int64(float64(now.Sub(start))*cfg.Rate/float64(time.Second)) + 1
		if cfg.Requests > 0 {
			due = min(due, cfg.Requests)
		}
		for ; seq < due; seq++ {
			if inFlight.Load() >= int64(cfg.Clients) {
				dropped++
				done.Add(1)
				continue
			}
			inFlight.Add(1)
			jobs <- job{seq: seq, intended: time.Duration(seq) * interval}
		}
		if cfg.Requests > 0 && seq >= cfg.Requests {
			break
		}
		timer.Reset(time.Until(start.Add(time.Duration(seq) * interval)))
		select {
		case <-ctx.Done():
			break schedule
		case <-timer.C:
		}
	}
	close(jobs)
	wg.Wait()
	return dropped
}

// merge adds up the workers' stats into one Result.
func merge(stats []*workerStats, elapsed time.Duration) Result {
	res := Result{Elapsed: elapsed, Outcomes: make(map[string]int64)}
	hist := hdrhistogram.New(histMin, histMax, histSigFigs)
	var firstAt time.Time
	for _, st := range stats {
		hist.Merge(st.hist)
		res.Requests += st.requests
		res.Errors += st.errors
		res.Max = max(res.Max, st.max)
		for k, v := range st.outcomes {
			res.Outcomes[k] += v
		}
		if st.firstErr != nil && (firstAt.IsZero() || st.firstAt.Before(firstAt)) {
			firstAt, res.FirstError = st.firstAt, st.firstErr.Error()
		}
	}
	if elapsed > 0 {
		res.Throughput = float64(res.Requests) / elapsed.Seconds()
	}
	q := func(p float64) time.Duration { return time.Duration(hist.ValueAtQuantile(p)) * time.Microsecond }
	// A bucket's upper edge can lie above the slowest request itself.
	res.P50, res.P90, res.P99, res.P999 = min(q(50), res.Max), min(q(90), res.Max), min(q(99), res.Max), min(q(99.9), res.Max)
	return res
}
