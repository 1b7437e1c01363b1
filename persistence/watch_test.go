package persistence_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// countingOutbox has nothing to read and answers every Backlog with backlog,
// counting the calls: reading the whole backlog costs three Redis commands
// per item, so an idle syncer must not do it every second (issue 16).
type countingOutbox struct {
	backlog reservation.Backlog
	calls   atomic.Int64
}

func (o *countingOutbox) Read(context.Context, int) ([]reservation.OutboxEntry, error) {
	return nil, nil
}
func (o *countingOutbox) Ack(context.Context, []reservation.OutboxEntry) error { return nil }
func (o *countingOutbox) Fail(context.Context, reservation.OutboxEntry, string) (bool, error) {
	return false, nil
}
func (o *countingOutbox) Backlog(context.Context) (reservation.Backlog, error) {
	o.calls.Add(1)
	return o.backlog, nil
}

func TestSyncerBacklogReadingFollowsTheWork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		backlog reservation.Backlog
		// wantMore: after the first reading, whether more follow within the
		// next few seconds (each second while entries wait).
		wantMore bool
	}{
		{name: "idle: one reading, then none for idleBacklogCheck", wantMore: false},
		{name: "entries waiting: a reading every second", backlog: reservation.Backlog{Entries: 3, Oldest: time.Second}, wantMore: true},
		{name: "dead letters alone do not keep it reading", backlog: reservation.Backlog{Dead: 2}, wantMore: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ob := &countingOutbox{backlog: tc.backlog}
			s := &persistence.Syncer{Outbox: ob, BatchSize: 10, BatchWait: 20 * time.Millisecond,
				Timeout: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			waitFor := func(n int64, within time.Duration) bool {
				t.Helper()
				for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if ob.calls.Load() >= n {
						return true
					}
				}
				return false
			}
			if !waitFor(1, 10*time.Second) {
				t.Fatal("no backlog reading within 10s")
			}
			if got := s.Status().Backlog; got != tc.backlog {
				t.Errorf("Status().Backlog = %+v, want %+v", got, tc.backlog)
			}
			if tc.wantMore {
				if !waitFor(3, 10*time.Second) {
					t.Errorf("%d backlog readings within 10s while entries wait, want 3", ob.calls.Load())
				}
				return
			}
			time.Sleep(3 * time.Second) // well under idleBacklogCheck (10s)
			if got := ob.calls.Load(); got != 1 {
				t.Errorf("%d backlog readings in 3s of an idle syncer, want 1", got)
			}
		})
	}
}
