package persistence

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// Syncer copies the outbox into the record: it reads batches through the
// consumer group, writes each in one transaction and acknowledges only after
// the commit. Delivery is at least once; Apply makes it exactly-once rows.
// Any number of Syncers may run at once, in one process or many.
type Syncer struct {
	Outbox    reservation.Outbox
	DB        *DB
	BatchSize int           // entries per transaction at most
	BatchWait time.Duration // how long a partial batch waits for more
	// Timeout bounds a batch from its first read to its last write: what
	// is not written by then stays pending for a later claim. Recovery waits
	// longer than BatchWait + Timeout before reading the record, so no batch
	// read before Redis lost its data can land after the rebuild.
	Timeout time.Duration
	Log     *slog.Logger
	// Observe, when set, is told the size of every batch committed and how
	// long its write took (for metrics). It runs on the syncer's goroutine,
	// so it must be quick.
	Observe func(batchSize int, took time.Duration)

	stats  SyncStats
	mu     sync.Mutex
	status SyncStatus
	// read counts the entries (and failed reads) Run met, so watch can tell
	// a syncer with work from an idle one.
	read atomic.Int64
}

// idleBacklogCheck is how often watch reads the whole backlog while the
// syncer meets no work: reading it costs three commands per item, which
// once a second was 16 % of a Redis core for 10,000 idle items (issue 16).
const idleBacklogCheck = 10 * time.Second

// SyncStats counts what the syncer did since it started.
type SyncStats struct {
	Synced    atomic.Int64 // entries committed and acknowledged
	Batches   atomic.Int64
	Retries   atomic.Int64 // failed batch writes, to be tried again
	Dead      atomic.Int64 // entries parked in a dead-letter stream
	LastBatch atomic.Int64
}

// SyncStatus is the syncer's view of the backlog, refreshed by Run.
type SyncStatus struct {
	Backlog   reservation.Backlog
	CheckedAt time.Time
	DBErr     error // the last write's failure, nil once a write succeeds
}

// Stats returns the live counters.
func (s *Syncer) Stats() *SyncStats { return &s.stats }

// Status returns the last backlog reading and the database's state.
func (s *Syncer) Status() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run syncs until ctx is done. It also measures the backlog every second and
// logs it while it is not empty.
func (s *Syncer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.watch(ctx) }()
	defer wg.Wait()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		readAt := time.Now()
		batch, err := s.collect(ctx)
		if err != nil || len(batch) > 0 {
			s.read.Add(int64(max(len(batch), 1)))
		}
		if err != nil {
			backoff = nextBackoff(backoff)
			if ctx.Err() == nil {
				s.Log.Warn("outbox read failed", "err", err, "retry_in", backoff)
			}
			sleep(ctx, backoff)
			continue
		}
		if len(batch) == 0 {
			sleep(ctx, s.BatchWait)
			continue
		}
		deadline, cancel := context.WithDeadline(ctx, readAt.Add(s.BatchWait+s.Timeout))
		ok := s.process(deadline, batch)
		cancel()
		s.read.Add(1) // what process wrote, acknowledged or parked shows in the next reading
		if ok {
			backoff = 0
			continue
		}
		// The database is down: what was read stays pending and is claimed
		// again (by us or another syncer) once idle; meanwhile, back off.
		backoff = nextBackoff(backoff)
		sleep(ctx, backoff)
	}
	return nil
}

// collect reads until a full batch or BatchWait after the first entry.
func (s *Syncer) collect(ctx context.Context) ([]reservation.OutboxEntry, error) {
	batch, err := s.Outbox.Read(ctx, s.BatchSize)
	if err != nil || len(batch) == 0 || len(batch) >= s.BatchSize {
		return batch, err
	}
	deadline := time.Now().Add(s.BatchWait)
	for len(batch) < s.BatchSize {
		wait := min(time.Until(deadline), s.BatchWait/5)
		if wait <= 0 {
			break
		}
		sleep(ctx, wait)
		more, err := s.Outbox.Read(ctx, s.BatchSize-len(batch))
		if err != nil {
			break // send what we have; the error shows again on the next read
		}
		batch = append(batch, more...)
	}
	return batch, nil
}

// process writes a batch before ctx's deadline and reports whether the
// database took it (entries that failed on their own count as taken: they
// are retried or parked).
func (s *Syncer) process(ctx context.Context, batch []reservation.OutboxEntry) bool {
	good := batch[:0:0]
	for _, e := range batch {
		if e.Err != nil {
			s.fail(ctx, e, e.Err)
			continue
		}
		good = append(good, e)
	}
	for lo := 0; lo < len(good); lo += s.BatchSize {
		part := good[lo:min(lo+s.BatchSize, len(good))]
		err := s.write(ctx, part)
		if err == nil {
			s.ack(ctx, part)
			continue
		}
		s.stats.Retries.Add(1)
		s.setDBErr(err)
		if errors.Is(err, reservation.ErrUnavailable) || s.pingDB(ctx) != nil {
			if ctx.Err() == nil {
				s.Log.Warn("sync write failed; database unreachable", "entries", len(part), "err", err)
			}
			return false
		}
		// The database answers, so something in the batch is wrong: write
		// entries one by one to find it and let the rest through.
		s.Log.Warn("sync batch failed; retrying entries one by one", "entries", len(part), "err", err)
		for _, e := range part {
			if err := s.write(ctx, []reservation.OutboxEntry{e}); err != nil {
				if errors.Is(err, reservation.ErrUnavailable) {
					return false // not the entry's fault: it stays pending
				}
				s.fail(ctx, e, err)
				continue
			}
			s.ack(ctx, []reservation.OutboxEntry{e})
		}
	}
	return true
}

func (s *Syncer) write(ctx context.Context, entries []reservation.OutboxEntry) error {
	changes := make([]reservation.Change, len(entries))
	for i, e := range entries {
		changes[i] = e.Change
	}
	start := time.Now()
	err := s.DB.Apply(ctx, changes)
	if err == nil && s.Observe != nil {
		s.Observe(len(entries), time.Since(start))
	}
	return err
}

func (s *Syncer) ack(ctx context.Context, entries []reservation.OutboxEntry) {
	s.setDBErr(nil)
	s.stats.Batches.Add(1)
	s.stats.LastBatch.Store(int64(len(entries)))
	if err := s.Outbox.Ack(ctx, entries); err != nil {
		// Committed but not acknowledged: the entries come round again and
		// are written again, which changes nothing.
		s.Log.Warn("outbox ack failed", "entries", len(entries), "err", err)
		return
	}
	s.stats.Synced.Add(int64(len(entries)))
}

func (s *Syncer) fail(ctx context.Context, e reservation.OutboxEntry, cause error) {
	dead, err := s.Outbox.Fail(ctx, e, cause.Error())
	switch {
	case err != nil:
		s.Log.Warn("outbox entry failed; could not count the try", "sku", e.SKU, "entry", e.ID, "cause", cause, "err", err)
	case dead:
		s.stats.Dead.Add(1)
		s.Log.Error("outbox entry parked in the dead-letter stream", "sku", e.SKU, "entry", e.ID, "cause", cause)
	default:
		s.Log.Warn("outbox entry failed; will retry", "sku", e.SKU, "entry", e.ID, "cause", cause)
	}
}

func (s *Syncer) pingDB(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	return s.DB.Ping(ctx)
}

func (s *Syncer) setDBErr(err error) {
	s.mu.Lock()
	s.status.DBErr = err
	s.mu.Unlock()
}

// watch refreshes the backlog every second while there is work (the last
// reading was not empty, the syncer read entries or failed to since, or the
// database failed) and every idleBacklogCheck otherwise, and logs it every
// ten seconds while entries wait. Every entry appended is read by a syncer's
// poll within FLASHSALE_SYNC_SCAN, so an idle syncer's reading of an empty
// backlog stays true until its next read; another instance's syncer may read
// entries this one never sees, so an instance whose syncer is idle while
// others work may show a reading up to idleBacklogCheck old.
func (s *Syncer) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastLog, lastCheck time.Time
	var lastRead int64 = -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		busy := s.status.Backlog.Entries > 0 || s.status.DBErr != nil
		s.mu.Unlock()
		read := s.read.Load()
		if !busy && read == lastRead && time.Since(lastCheck) < idleBacklogCheck {
			continue
		}
		b, err := s.Outbox.Backlog(ctx)
		if err != nil {
			continue
		}
		lastRead, lastCheck = read, time.Now()
		s.mu.Lock()
		s.status.Backlog, s.status.CheckedAt = b, lastCheck
		dbErr := s.status.DBErr
		s.mu.Unlock()
		if (b.Entries > 0 || b.Dead > 0) && time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			s.Log.Info("sync backlog", "entries", b.Entries, "lag", b.Oldest.Round(time.Millisecond),
				"dead", b.Dead, "synced", s.stats.Synced.Load(), "db_err", dbErr)
		}
	}
}

// nextBackoff is the wait after one more failure when the last wait was d:
// 50ms after the first, doubling up to 2s, so a database that is down for
// long is asked about every 2s rather than hammered.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 50 * time.Millisecond
	}
	return min(2*d, 2*time.Second)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
