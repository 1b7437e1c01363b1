//go:build integration

package hostile_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// bigBodies is row 7: 8 MiB bodies to the reserve route, to /healthz and to
// the bulk seed without a token, 16 in parallel, each with its length
// declared and each sent chunked. Every one is refused 413 before it is
// read (the bulk seed's larger limit needs a valid admin token): the process's peak memory grows by far less than
// one of the bodies, where reading them whole took it from 34 to 132 MB.
func bigBodies(t *testing.T, e *env) {
	const size, parallel = 8 << 20, 16
	before := vmHWM(t, e.pid)
	targets := []struct {
		method, path string
		auth         string
		status       int
	}{
		{"POST", "/v1/items/" + sku + "/reservations", e.mallory, 413},
		{"GET", "/healthz", "", 413},
		{"PUT", "/admin/v1/items", "", 413},
		{"PUT", "/admin/v1/items", "Bearer " + serviceToken, 413},
	}
	for _, tg := range targets {
		for _, chunked := range []bool{false, true} {
			var wg sync.WaitGroup
			for range parallel {
				wg.Go(func() {
					if got := sendBig(t, e.base, tg.method, tg.path, tg.auth, size, chunked); got != tg.status {
						t.Errorf("%s %s, %d bytes (chunked %v): %d, want %d", tg.method, tg.path, size, chunked, got, tg.status)
					}
				})
			}
			wg.Wait()
		}
	}
	after := vmHWM(t, e.pid)
	t.Logf("service peak memory (VmHWM) %d KiB before, %d KiB after %d bodies of %d MiB",
		before, after, len(targets)*2*parallel, size>>20)
	// One body read whole would be 8 MiB; sixteen, 128.
	if grew := after - before; grew > 8<<10 {
		t.Errorf("the service's peak memory grew by %d KiB: the bodies were read", grew)
	}
}

// sendBig sends headers announcing size bytes (or a chunked body) and then
// the body, as fast as the server takes it, and returns the status the
// server answered. The server may answer and close before the body is sent:
// that is the point.
func sendBig(t *testing.T, base, method, path, auth string, size int, chunked bool) int {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", method, path, u.Host)
	if auth != "" {
		fmt.Fprintf(&hdr, "Authorization: %s\r\n", auth)
	}
	if chunked {
		hdr.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	} else {
		fmt.Fprintf(&hdr, "Content-Length: %d\r\n\r\n", size)
	}
	if _, err := io.WriteString(conn, hdr.String()); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Write errors are expected once the server has answered and closed.
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			var err error
			if chunked {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = conn.Write(chunk)
			}
			if err != nil {
				return
			}
		}
		if chunked {
			_, _ = io.WriteString(conn, "0\r\n\r\n")
		}
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Errorf("%s %s: no answer: %v", method, path, err)
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// vmHWM is a process's peak resident memory in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("the service's memory: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kib
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// parallelScrapes is row 8: six scrapes of /metrics at once over a
// catalogue of thousands of items each read every item from Redis (one
// HMGET per item), four of six were refused 503, and every item's stock was
// public. It runs on a service of its own, with its own Redis, and with
// FLASHSALE_INTERNAL_ADDR, as a deployment keeps /metrics private: on the
// public address /metrics is unknown (404); on the internal one every
// scrape answers 200 and they read the catalogue at most once a second,
// however many there are: the HMGETs grow by the catalogue's size once per
// second the scrapes took (rounded up), not once per scrape.
func parallelScrapes(t *testing.T, _ *env) {
	const items, scrapers = 5000, 6
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	internal := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	svc := testenv.StartService(t, testenv.BuildFlashsale(t), map[string]string{
		"FLASHSALE_REDIS_ADDR":     redis.Addr(),
		"FLASHSALE_SQLITE_PATH":    filepath.Join(t.TempDir(), "record.db"),
		"FLASHSALE_INTERNAL_ADDR":  internal,
		"FLASHSALE_ADMIN_TOKEN":    adminToken,
		"FLASHSALE_SERVICE_TOKENS": serviceToken,
		"FLASHSALE_LOG_LEVEL":      "warn",
	})
	pub := &env{base: svc.URL(), hc: &http.Client{Timeout: 30 * time.Second}}
	in := &env{base: "http://" + internal, hc: pub.hc}
	seedCatalogue(t, in, items)
	if st, _, body := pub.do(t, "GET", "/metrics", "", nil); st != 404 {
		t.Errorf("/metrics on the public address: %d %.200s, want 404", st, body)
	}
	time.Sleep(1100 * time.Millisecond) // past the cache's age: the scrapes below must read

	count := monitorHMGETs(t, redis.Addr())
	start := time.Now()
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			st, _, body := in.do(t, "GET", "/metrics", "", nil)
			if st != 200 || !strings.Contains(string(body), `flashsale_item_units{sku="catalogue-04999",state="available"} 5`) {
				t.Errorf("scrape: %d (%d bytes), want 200 with every item", st, len(body))
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	hmgets := count()
	t.Logf("%d parallel scrapes of %d items took %v and %d HMGETs", scrapers, items, took, hmgets)
	if reads := int(took/time.Second) + 1; hmgets < items || hmgets > reads*items {
		t.Errorf("%d HMGETs for %d scrapes of %d items in %v, want at most %d reads of the catalogue (one a second)",
			hmgets, scrapers, items, took, reads)
	}
}

// monitorHMGETs watches the Redis at addr with redis-cli's MONITOR and
// returns a func that stops and reports how many HMGETs clients sent. The
// ones scripts run (the sweeper's, every item twice a second) are left
// out: they are marked "lua", and Redis's own command counts would include
// them.
func monitorHMGETs(t *testing.T, addr string) func() int {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("redis-cli", "-h", host, "-p", port, "monitor")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-cli monitor: %v", err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			if first {
				close(started) // "OK": MONITOR is on
				first = false
			}
			if line := sc.Text(); strings.Contains(line, `"hmget"`) && !strings.Contains(line, " lua]") {
				n.Add(1)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("redis-cli monitor did not start")
	}
	return func() int {
		time.Sleep(200 * time.Millisecond) // the last lines arrive
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		return int(n.Load())
	}
}

// seedCatalogue adds n items beside the suite's own, in one bulk seed.
func seedCatalogue(t *testing.T, e *env, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"catalogue-%05d","stock":5}`, i)
	}
	b.WriteString(`]}`)
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if st, _, body := e.do(t, "PUT", "/admin/v1/items", b.String(), admin); st != 200 {
		t.Fatalf("bulk seed of %d items: %d %.200s", n, st, body)
	}
}
