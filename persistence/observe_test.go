package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// onceOutbox hands out its entries on the first Read and then nothing.
type onceOutbox struct {
	mu      sync.Mutex
	entries []reservation.OutboxEntry
	acked   chan int
}

func (o *onceOutbox) Read(context.Context, int) ([]reservation.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entries
	o.entries = nil
	return e, nil
}

func (o *onceOutbox) Ack(_ context.Context, entries []reservation.OutboxEntry) error {
	o.acked <- len(entries)
	return nil
}

func (o *onceOutbox) Fail(context.Context, reservation.OutboxEntry, string) (bool, error) {
	return false, errors.New("no entry should fail")
}

func (o *onceOutbox) Backlog(context.Context) (reservation.Backlog, error) {
	return reservation.Backlog{}, nil
}

func TestSyncerObservesCommittedBatches(t *testing.T) {
	changes := []reservation.Change{
		offer("tee", 1, 5, "Tee"),
		created("tee", 1, "alice", 1, 10, ""),
		created("tee", 2, "bob", 1, 20, ""),
	}
	ob := &onceOutbox{acked: make(chan int, 1)}
	for i, c := range changes {
		ob.entries = append(ob.entries, reservation.OutboxEntry{SKU: "tee", ID: fmt.Sprintf("%d-0", i+1), Change: c})
	}
	type batch struct {
		size int
		took time.Duration
	}
	observed := make(chan batch, 10)
	s := &persistence.Syncer{
		Outbox: ob, DB: openSQLite(t), BatchSize: 64, BatchWait: 5 * time.Millisecond, Timeout: 10 * time.Second,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observe: func(size int, took time.Duration) { observed <- batch{size, took} },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	select {
	case n := <-ob.acked:
		if n != len(changes) {
			t.Fatalf("acknowledged %d entries, want %d", n, len(changes))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch was not acknowledged within 10s")
	}
	// Observe runs after the commit and before the acknowledgement.
	select {
	case b := <-observed:
		if b.size != len(changes) || b.took <= 0 {
			t.Errorf("observed batch %+v, want size %d and a positive duration", b, len(changes))
		}
	default:
		t.Fatal("a committed batch was not observed")
	}
	if len(observed) != 0 {
		t.Errorf("%d more batches observed, want none", len(observed))
	}
}
