package loadtest

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
)

// progressEvery is how often the bar is redrawn: often enough to look
// alive, rarely enough to cost the generator nothing measurable.
const progressEvery = 200 * time.Millisecond

const barWidth = 30

// progress draws a one-line bar. A nil *progress draws nothing.
type progress struct {
	w        io.Writer
	total    int64         // request bound, 0 if none
	duration time.Duration // time bound, 0 if none
}

// newProgress returns a bar on w, or nil when w is not a terminal: a bar's
// carriage returns would garble a log file or a pipe.
func newProgress(w io.Writer, total int64, duration time.Duration) *progress {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || !(isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return nil
	}
	return &progress{w: w, total: total, duration: duration}
}

// start redraws the bar until the returned stop is called; stop draws it
// one last time and ends the line.
func (p *progress) start(begin time.Time, done *atomic.Int64) (stop func()) {
	if p == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Fprint(p.w, "\r"+p.render(done.Load(), time.Since(begin)))
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		fmt.Fprint(p.w, "\r"+p.render(done.Load(), time.Since(begin))+"\n")
	}
}

// render is the bar for n requests done after elapsed: the fraction is of
// whichever bound is nearer to being reached.
func (p *progress) render(n int64, elapsed time.Duration) string {
	var frac float64
	if p.total > 0 {
		frac = float64(n) / float64(p.total)
	}
	if p.duration > 0 {
		frac = max(frac, elapsed.Seconds()/p.duration.Seconds())
	}
	frac = min(max(frac, 0), 1)
	filled := int(frac * barWidth)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(n) / elapsed.Seconds()
	}
	return fmt.Sprintf("[%s%s] %3.0f%% %d req %.0f/s %s ",
		strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled), frac*100, n, rate,
		elapsed.Round(100*time.Millisecond))
}
