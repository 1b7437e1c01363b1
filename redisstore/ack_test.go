package redisstore_test

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// failingEntry seeds item a, holds a unit and reads both outbox entries
// through the group; it returns the hold's entry, the one tests fail.
func failingEntry(t *testing.T, s *testStore) reservation.OutboxEntry {
	t.Helper()
	mustSeed(t, s, itemSpec("a", 5, 1))
	mustReserve(t, s, "a", "alice", 1)
	got := mustRead(t, newOutbox(t, s, "c1"), 10)
	if len(got) != 2 {
		t.Fatalf("Read = %+v, want 2 entries", got)
	}
	return got[1]
}

// TestAckTryCountsEachAttemptOnce: ack.lua's "try" counts an attempt once
// however often its call is resent (same token), and every attempt of its
// own (new token).
func TestAckTryCountsEachAttemptOnce(t *testing.T) {
	ctx := context.Background()
	script := goredis.NewScript(string(luascripts.Ack()))
	type try struct {
		token string
		want  []any // the script's reply
	}
	cases := []struct {
		name      string
		stored    string // the tries hash's value for the entry beforehand, "" for none
		maxTries  int
		tries     []try
		wantTries string // the hash's value afterwards, "" for none
		wantDead  int64
	}{
		{
			name: "a resent attempt counts one try", maxTries: 3,
			tries:     []try{{"t1", []any{"counted", int64(1)}}, {"t1", []any{"counted", int64(1)}}},
			wantTries: "1|t1",
		},
		{
			name: "two attempts count two tries", maxTries: 3,
			tries:     []try{{"t1", []any{"counted", int64(1)}}, {"t2", []any{"counted", int64(2)}}},
			wantTries: "2|t2",
		},
		{
			name: "a resent attempt at the bound is not parked", maxTries: 3,
			tries: []try{
				{"t1", []any{"counted", int64(1)}}, {"t2", []any{"counted", int64(2)}}, {"t2", []any{"counted", int64(2)}},
			},
			wantTries: "2|t2",
		},
		{
			name: "the attempt at the bound parks; its resend finds the entry gone", maxTries: 2,
			tries:    []try{{"t1", []any{"counted", int64(1)}}, {"t2", []any{"dead"}}, {"t2", []any{"gone"}}},
			wantDead: 1,
		},
		{
			name: "a count stored before tokens goes on", stored: "1", maxTries: 3,
			tries:     []try{{"t1", []any{"counted", int64(2)}}, {"t1", []any{"counted", int64(2)}}},
			wantTries: "2|t1",
		},
		{
			name: "no token counts every call", maxTries: 5,
			tries:     []try{{"", []any{"counted", int64(1)}}, {"", []any{"counted", int64(2)}}},
			wantTries: "2|",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			id := failingEntry(t, s).ID
			keys := []string{s.key("a", "outbox"), s.key("a", "tries"), s.key("a", "dead")}
			if tc.stored != "" {
				s.rdb.HSet(ctx, keys[1], id, tc.stored)
			}
			for i, tr := range tc.tries {
				got, err := script.Run(ctx, s.rdb, keys, redisstore.SyncGroup, "try", id, "db said no", tc.maxTries, tr.token).Slice()
				if err != nil || !reflect.DeepEqual(got, tr.want) {
					t.Fatalf("try %d (token %q) = %v, %v; want %v", i+1, tr.token, got, err, tr.want)
				}
			}
			if got, _ := s.rdb.HGet(ctx, keys[1], id).Result(); got != tc.wantTries {
				t.Errorf("tries of the entry = %q, want %q", got, tc.wantTries)
			}
			if n := s.rdb.XLen(ctx, keys[2]).Val(); n != tc.wantDead {
				t.Errorf("%d dead entries, want %d", n, tc.wantDead)
			}
		})
	}
}

// TestOutboxFailCountsAResentTryOnce: go-redis resends a script call whose
// reply missed the read deadline, though the call ran. Fail's attempt counts
// once all the same, so with two tries allowed the entry is not parked after
// one.
func TestOutboxFailCountsAResentTryOnce(t *testing.T) {
	ctx := context.Background()
	mr, _ := redistest.Miniredis(t)
	lose := &loseReply{match: [][]byte{[]byte("evalsha"), []byte("try")}}
	rdb := goredis.NewClient(&goredis.Options{
		Addr:        mr.Addr(),
		ReadTimeout: 200 * time.Millisecond, // how long the lost reply is waited for
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &lossyConn{Conn: c, lose: lose}, nil
		},
	})
	t.Cleanup(func() { _ = rdb.Close() })
	s := newTestStore(t, rdb, mr, "fs")
	failing := failingEntry(t, s)

	lose.arm()
	dead, err := newOutbox(t, s, "c1").Fail(ctx, failing, "db said no") // MaxTries 2
	if err != nil || dead {
		t.Fatalf("Fail = %v, %v; want counted, not dead", dead, err)
	}
	if sent := lose.sent(); sent < 2 {
		t.Fatalf("the call was sent %d times: go-redis did not resend it, the test proves nothing", sent)
	}
	if got := s.rdb.HGet(ctx, s.key("a", "tries"), failing.ID).Val(); !strings.HasPrefix(got, "1|") {
		t.Fatalf("tries = %q, want 1", got)
	}
}

// loseReply, once armed, loses the reply to the first command that holds
// every one of match, and counts how often such a command is sent.
type loseReply struct {
	match [][]byte

	mu    sync.Mutex
	armed bool
	calls int
}

func (l *loseReply) arm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armed = true
}

func (l *loseReply) sent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// take reports whether the reply to the command in b is to be lost.
func (l *loseReply) take(b []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.armed {
		return false
	}
	for _, m := range l.match {
		if !bytes.Contains(b, m) {
			return false
		}
	}
	l.calls++
	return l.calls == 1
}

// lossyConn is a client connection whose replies a loseReply may lose.
type lossyConn struct {
	net.Conn
	lose     *loseReply
	dropping bool // the reply to the command written last is to be lost
}

func (c *lossyConn) Write(b []byte) (int, error) {
	if c.lose.take(b) {
		c.dropping = true
	}
	return c.Conn.Write(b)
}

func (c *lossyConn) Read(b []byte) (int, error) {
	if !c.dropping {
		return c.Conn.Read(b)
	}
	c.dropping = false
	// The reply comes, so the command ran; it is lost on the way, and the
	// client waits for it until its read deadline.
	if _, err := c.Conn.Read(b); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// TestAckRemovesExactlyTheSyncedEntries: ack.lua's "ack" trims the outbox
// below its oldest pending entry and deletes what was acknowledged above it,
// so the stream keeps exactly the entries not acknowledged: pending ones
// (of any consumer) and those not read yet, whatever the order of the acks.
func TestAckRemovesExactlyTheSyncedEntries(t *testing.T) {
	ctx := context.Background()
	script := goredis.NewScript(string(luascripts.Ack()))
	type read struct {
		consumer string
		count    int
	}
	cases := []struct {
		name    string
		entries int
		noGroup bool
		reads   []read
		acks    [][]int // entry numbers (1-based), one call each
		wantN   []int64 // each call's entries_acknowledged
		keep    []int   // entry numbers left in the stream
		pending []int   // entry numbers left pending
	}{
		{name: "read and acknowledged in order", entries: 6, reads: []read{{"c1", 4}},
			acks: [][]int{{1, 2, 3, 4}}, wantN: []int64{4}, keep: []int{5, 6}},
		{name: "an earlier entry still pending stays", entries: 6, reads: []read{{"c1", 4}},
			acks: [][]int{{2, 3, 4}}, wantN: []int64{3}, keep: []int{1, 5, 6}, pending: []int{1}},
		{name: "out of order above a pending entry", entries: 6, reads: []read{{"c1", 4}},
			acks: [][]int{{3, 1}}, wantN: []int64{2}, keep: []int{2, 4, 5, 6}, pending: []int{2, 4}},
		{name: "the gap acknowledged last", entries: 6, reads: []read{{"c1", 4}},
			acks: [][]int{{2, 4}, {1}, {3}}, wantN: []int64{2, 1, 1}, keep: []int{5, 6}},
		{name: "another consumer's pending entries below stay", entries: 6, reads: []read{{"c1", 2}, {"c2", 2}},
			acks: [][]int{{3, 4}}, wantN: []int64{2}, keep: []int{1, 2, 5, 6}, pending: []int{1, 2}},
		{name: "a resent acknowledgement changes nothing", entries: 6, reads: []read{{"c1", 4}},
			acks: [][]int{{1, 2, 3, 4}, {1, 2, 3, 4}}, wantN: []int64{4, 0}, keep: []int{5, 6}},
		{name: "over several nodes of the stream, one entry left pending", entries: 250, reads: []read{{"c1", 230}},
			acks: [][]int{append(span(1, 6), span(8, 230)...)}, wantN: []int64{229}, keep: append([]int{7}, span(231, 250)...), pending: []int{7}},
		{name: "no group: only the named entries go", entries: 4, noGroup: true,
			acks: [][]int{{1, 2}}, wantN: []int64{0}, keep: []int{3, 4}},
	}
	for _, kind := range storeKinds {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				s := kind.open(t)
				keys := []string{s.key("a", "outbox"), s.key("a", "tries"), s.key("a", "dead")}
				if !tc.noGroup {
					if err := s.rdb.XGroupCreateMkStream(ctx, keys[0], redisstore.SyncGroup, "0").Err(); err != nil {
						t.Fatal(err)
					}
				}
				ids := make([]string, tc.entries+1)
				for i := 1; i <= tc.entries; i++ {
					ids[i] = s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: keys[0], Values: []any{"n", i}}).Val()
				}
				for _, r := range tc.reads {
					if err := s.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redisstore.SyncGroup, Consumer: r.consumer,
						Streams: []string{keys[0], ">"}, Count: int64(r.count), Block: -1}).Err(); err != nil {
						t.Fatal(err)
					}
				}
				for i, ack := range tc.acks {
					args := []any{redisstore.SyncGroup, "ack"}
					for _, n := range ack {
						args = append(args, ids[n])
					}
					got, err := script.Run(ctx, s.rdb, keys, args...).Slice()
					if want := []any{"ok", tc.wantN[i]}; err != nil || !reflect.DeepEqual(got, want) {
						t.Fatalf("ack %d = %v, %v; want %v", i+1, got, err, want)
					}
				}
				number := map[string]int{}
				for i, id := range ids {
					number[id] = i
				}
				var keep []int
				for _, m := range s.rdb.XRange(ctx, keys[0], "-", "+").Val() {
					keep = append(keep, number[m.ID])
				}
				if !reflect.DeepEqual(keep, tc.keep) {
					t.Errorf("stream keeps entries %v, want %v", keep, tc.keep)
				}
				if tc.noGroup {
					return
				}
				var pending []int
				for _, p := range s.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: keys[0], Group: redisstore.SyncGroup,
					Start: "-", End: "+", Count: 1000}).Val() {
					pending = append(pending, number[p.ID])
				}
				if !reflect.DeepEqual(pending, tc.pending) {
					t.Errorf("pending entries %v, want %v", pending, tc.pending)
				}
			})
		}
	}
}

// TestAckRefusesABadIDBeforeWriting: an argument that is not an entry id
// stops the call before anything is acknowledged or removed.
func TestAckRefusesABadIDBeforeWriting(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) { ackRefusesABadID(t, kind.open(t)) })
	}
}

func ackRefusesABadID(t *testing.T, s *testStore) {
	ctx := context.Background()
	out := s.key("a", "outbox")
	if err := s.rdb.XGroupCreateMkStream(ctx, out, redisstore.SyncGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	id := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: out, Values: []any{"n", 1}}).Val()
	s.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redisstore.SyncGroup, Consumer: "c1", Streams: []string{out, ">"}, Block: -1})
	err := goredis.NewScript(string(luascripts.Ack())).Run(ctx, s.rdb,
		[]string{out, s.key("a", "tries"), s.key("a", "dead")}, redisstore.SyncGroup, "ack", id, "not-an-id").Err()
	if err == nil || !strings.Contains(err.Error(), "not an entry id") {
		t.Fatalf("err = %v, want a refusal of the bad id", err)
	}
	if n := s.rdb.XPending(ctx, out, redisstore.SyncGroup).Val().Count; n != 1 || s.rdb.XLen(ctx, out).Val() != 1 {
		t.Fatalf("after a refused call: %d pending, %d in the stream; want 1 and 1", n, s.rdb.XLen(ctx, out).Val())
	}
}

// TestAckTakesAnIDWrittenAsItsTime: Redis's XACK reads "6" as 6-0; ack.lua
// then deletes it by name instead of failing after it acknowledged it.
// (miniredis reads "6" as no id at all: nothing is acknowledged there, and
// nothing may fail either.)
func TestAckTakesAnIDWrittenAsItsTime(t *testing.T) {
	ctx := context.Background()
	for _, kind := range storeKinds {
		wantN, wantKeep := int64(1), []string{"5-0", "7-0"}
		if kind.name == "miniredis" {
			wantN, wantKeep = 0, []string{"5-0", "6-0", "7-0"}
		}
		t.Run(kind.name, func(t *testing.T) {
			s := kind.open(t)
			out := s.key("a", "outbox")
			if err := s.rdb.XGroupCreateMkStream(ctx, out, redisstore.SyncGroup, "0").Err(); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"5-0", "6-0", "7-0"} {
				s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: out, ID: id, Values: []any{"n", id}})
			}
			s.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: redisstore.SyncGroup, Consumer: "c1",
				Streams: []string{out, ">"}, Count: 2, Block: -1})
			got, err := goredis.NewScript(string(luascripts.Ack())).Run(ctx, s.rdb,
				[]string{out, s.key("a", "tries"), s.key("a", "dead")}, redisstore.SyncGroup, "ack", "6").Slice()
			if want := []any{"ok", wantN}; err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ack 6 = %v, %v; want %v", got, err, want)
			}
			var keep []string
			for _, m := range s.rdb.XRange(ctx, out, "-", "+").Val() {
				keep = append(keep, m.ID)
			}
			if !reflect.DeepEqual(keep, wantKeep) {
				t.Fatalf("stream keeps %v, want %v (5-0 still pending, 7-0 not read)", keep, wantKeep)
			}
		})
	}
}

// span is the numbers from..to.
func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
