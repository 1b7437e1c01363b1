//go:build integration

package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// TestFlashCrowd: 2,000 buyers, 200 at a time, over real HTTP against a
// real Redis, race for 100 units with a limit of one each. Exactly 100 win,
// every other buyer is told sold_out, and the counters add up; then half the
// winners confirm and half cancel.
func TestFlashCrowd(t *testing.T) {
	const (
		stock   = 100
		buyers  = 2000
		workers = 200
		sku     = "flash-1"
	)
	client, prefix := redistest.Client(t) // skips without Redis, fails under CI
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, prefix)
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	srv := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens:   []string{adminToken},
		ServiceTokens: serviceTokens,
		ReadTimeout:   10 * time.Second,
		WriteTimeout:  10 * time.Second,
		IdleTimeout:   30 * time.Second,
		Log:           quietLog(),
	})
	base := "http://" + testenv.Serve(t, srv) // shut down before redistest deletes the keys

	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	// send makes one request with token as its bearer token ("": none); a
	// transport error is recorded as status 0.
	type answer struct {
		status int
		code   string // problem code
		id     string // reservation id
		state  string // reservation status
		loc    string
		err    error
	}
	send := func(method, path, body, token string) answer {
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			return answer{err: err}
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			return answer{err: err}
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil {
			return answer{status: res.StatusCode, err: err}
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return answer{status: res.StatusCode, err: fmt.Errorf("body %q: %w", raw, err)}
		}
		a := answer{status: res.StatusCode, loc: res.Header.Get("Location")}
		a.id, _ = v["id"].(string)
		if res.StatusCode >= 400 {
			a.code, _ = v["code"].(string)
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				a.err = fmt.Errorf("problem with Content-Type %q", ct)
			}
		} else {
			a.state, _ = v["status"].(string)
		}
		return a
	}
	// pool runs job(i) for i in [0, n) on workers goroutines.
	pool := func(n int, job func(i int)) {
		jobs := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					job(i)
				}
			}()
		}
		for i := 0; i < n; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
	}
	item := func() (c struct{ Stock, Available, Reserved, Sold int64 }) {
		t.Helper()
		res, err := hc.Get(base + "/v1/items/" + sku)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET item: status %d", res.StatusCode)
		}
		if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	if a := send("PUT", "/admin/v1/items/"+sku,
		fmt.Sprintf(`{"stock":%d,"per_user_limit":1,"hold_seconds":600}`, stock), adminToken); a.status != http.StatusCreated {
		t.Fatalf("seed: %+v", a)
	}

	start := time.Now()
	answers := make([]answer, buyers)
	pool(buyers, func(i int) {
		answers[i] = send("POST", "/v1/items/"+sku+"/reservations",
			fmt.Sprintf(`{"user_id":"buyer-%04d","quantity":1}`, i), "")
	})
	t.Logf("%d reservations, %d at a time, in %v", buyers, workers, time.Since(start))

	var won []string
	ids := map[string]bool{}
	soldOut, other := 0, 0
	for i, a := range answers {
		switch {
		case a.err == nil && a.status == http.StatusCreated && a.state == "pending" && a.loc == "/v1/reservations/"+a.id:
			if ids[a.id] {
				t.Errorf("buyer %d: id %s handed out twice", i, a.id)
			}
			ids[a.id] = true
			won = append(won, a.id)
		case a.err == nil && a.status == http.StatusConflict && a.code == "sold_out":
			soldOut++
		default:
			if other++; other <= 5 {
				t.Errorf("buyer %d: unexpected answer %+v (err %v)", i, a, a.err)
			}
		}
	}
	if len(won) != stock || soldOut != buyers-stock || other != 0 {
		t.Fatalf("%d reserved, %d sold_out, %d other; want %d, %d, 0", len(won), soldOut, other, stock, buyers-stock)
	}
	if c := item(); c.Stock != stock || c.Available != 0 || c.Reserved != stock || c.Sold != 0 {
		t.Fatalf("after the rush: %+v, want available 0 reserved %d sold 0", c, stock)
	}

	// Half the winners pay, half give up, all at once.
	done := make([]answer, len(won))
	pool(len(won), func(i int) {
		op := "confirm"
		if i%2 == 1 {
			op = "cancel"
		}
		done[i] = send("POST", "/v1/reservations/"+won[i]+"/"+op, "", serviceTokens[0])
	})
	for i, a := range done {
		want := map[bool]string{true: "confirmed", false: "cancelled"}[i%2 == 0]
		if a.err != nil || a.status != http.StatusOK || a.state != want || a.id != won[i] {
			t.Errorf("reservation %s: %+v, want 200 %s", won[i], a, want)
		}
	}
	if c := item(); c.Stock != stock || c.Sold != stock/2 || c.Available != stock/2 || c.Reserved != 0 {
		t.Fatalf("after confirm and cancel: %+v, want sold %d available %d reserved 0", c, stock/2, stock/2)
	}

	// The cancelled units sell again, once each, and only to new buyers.
	again := make([]answer, 2*stock)
	pool(len(again), func(i int) {
		user := fmt.Sprintf("late-%04d", i/2) // each late buyer tries twice
		again[i] = send("POST", "/v1/items/"+sku+"/reservations", fmt.Sprintf(`{"user_id":%q,"quantity":1}`, user), "")
	})
	got := map[string]int{}
	for _, a := range again {
		got[fmt.Sprintf("%d %s", a.status, a.code)]++
	}
	if got["201 "] != stock/2 || got["201 "]+got["409 sold_out"]+got["409 limit_exceeded"] != len(again) {
		t.Fatalf("second wave: %v, want %d created and the rest sold_out or limit_exceeded", got, stock/2)
	}
	if c := item(); c.Available != 0 || c.Reserved != stock/2 || c.Sold != stock/2 {
		t.Fatalf("after the second wave: %+v", c)
	}
}
