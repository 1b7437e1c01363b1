//go:build integration

package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/flashsale/flashsale/client"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
)

const browserAdminToken = "console-browser-admin-token"

// chromium finds the browser: Debian's chromium package (.ci/run and
// `make browser-deps` install it). Missing, the test skips, and fails under
// CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("chromium is not installed (required under CI=true; .ci/run installs Debian's chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or make browser-deps)")
	return ""
}

// screenshotDir is where the screenshots stay after the test, for a person
// to look at: console/testdata/out, ignored by git.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "out"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleInBrowser drives the console in headless Chromium against a
// real flashsale process on the real Redis, with a catalogue of 2,000
// items: sign in with the admin token, page through them, search them,
// seed an item through the form (confirmed in the dialog), make holds and
// refusals through the API, and see the bar and the rates move within two
// seconds; then end the sale with the button and see buyers refused. It
// saves a wide and a narrow (phone) screenshot, and fails on any script
// error or on a page wider than the phone.
func TestConsoleInBrowser(t *testing.T) {
	browser := chromium(t)
	_, prefix := redistest.Client(t)
	addr := os.Getenv(redistest.AddrEnv)
	if addr == "" {
		addr = redistest.DefaultAddr
	}
	svc := testenv.StartService(t, testenv.BuildFlashsale(t), map[string]string{
		"FLASHSALE_REDIS_ADDR":     addr,
		"FLASHSALE_KEY_PREFIX":     prefix,
		"FLASHSALE_ADMIN_TOKEN":    browserAdminToken,
		"FLASHSALE_SERVICE_TOKENS": "console-browser-service-token",
		"FLASHSALE_SQLITE_PATH":    filepath.Join(t.TempDir(), "record.db"),
	})

	// A catalogue of 2,000 items: the console pages and searches it. (The
	// hub's paging of 10,000 is TestPagesAndSearch; here a race-built
	// service on a shared CI machine must still answer within two seconds.)
	items := make([]client.ItemSpec, 1_999)
	for i := range items {
		items[i] = client.ItemSpec{SKU: fmt.Sprintf("cat-%05d", i), Stock: 100, Name: fmt.Sprintf("Catalogue item %d", i)}
	}
	admin, err := client.New(svc.URL(), client.WithAdminToken(browserAdminToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SeedMany(context.Background(), items); err != nil {
		t.Fatalf("bulk seed: %v", err)
	}
	// The timed part below measures the console, not a race-built syncer
	// writing 10,000 items to SQLite on a shared machine: let it drain.
	waitDrained(t, svc.URL(), time.Minute)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	scriptErrors := make(chan string, 16)
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			select {
			case scriptErrors <- exceptionText(e.ExceptionDetails):
			default:
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	const sku = "browser-mug"
	item := `article[data-sku="` + sku + `"]`
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Sign in: the token goes to sessionStorage, the feed opens.
	run("open the console",
		chromedp.Navigate(svc.URL()+"/admin/console"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), browserAdminToken),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("main")),
	)
	waitJS(t, ctx, "the feed to go live", `document.getElementById("conn").textContent.startsWith("live")`, 5*time.Second)
	waitJS(t, ctx, "40 pages of 50", `document.getElementById("pageinfo").textContent === "1 / 40 (1999)" &&
		document.querySelectorAll("#items article").length === 50`, 3*time.Second)
	run("next page", chromedp.Click(chromedp.ID("next")))
	waitJS(t, ctx, "the second page", `document.getElementById("pageinfo").textContent === "2 / 40 (1999)" &&
		document.querySelector("#items article").dataset.sku === "cat-00050"`, 3*time.Second)

	// Seed through the form; nothing happens until the dialog is confirmed.
	run("fill the seed form",
		chromedp.SendKeys(chromedp.ID("f-sku"), sku),
		chromedp.SendKeys(chromedp.ID("f-name"), "Browser mug"),
		chromedp.SendKeys(chromedp.ID("f-stock"), "20"),
		chromedp.SetValue(chromedp.ID("f-limit"), "5"),
		chromedp.Click(chromedp.ID("f-submit")),
		chromedp.WaitVisible(chromedp.ID("confirm-yes")),
	)
	if resp := get(t, svc.URL()+"/v1/items/"+sku); resp != http.StatusNotFound {
		t.Fatalf("before confirming, GET the item answered %d, want 404", resp)
	}
	run("confirm the seed", chromedp.Click(chromedp.ID("confirm-yes")))
	waitJS(t, ctx, "the seed's answer", `document.getElementById("seed-result").textContent.startsWith("created browser-mug")`, 5*time.Second)
	run("search", chromedp.SendKeys(chromedp.ID("search"), "mug"))
	waitJS(t, ctx, "the search to find the one item", `document.getElementById("pageinfo").textContent === "1 / 1 (1)" &&
		document.querySelectorAll("#items article").length === 1`, 3*time.Second)
	waitJS(t, ctx, "the item's bar", `(() => { const n = document.querySelector('`+item+` .nums');
		return n && n.dataset.available === "20" && n.dataset.reserved === "0"; })()`, 2*time.Second)

	// Holds and refusals through the API: the bar and the rates follow
	// within two seconds.
	began := time.Now()
	for i := range 6 {
		reserve(t, svc.URL(), sku, fmt.Sprintf("buyer-%d", i), 2, http.StatusCreated)
	}
	for i := range 3 { // over the per-user limit of 5: refused
		reserve(t, svc.URL(), sku, fmt.Sprintf("buyer-%d", i), 4, http.StatusConflict)
	}
	waitJS(t, ctx, "the bar and rates to move", `(() => {
		const n = document.querySelector('`+item+` .nums'), r = document.querySelector('`+item+` .rate-text');
		const seg = document.querySelector('`+item+` .seg-reserved');
		return n.dataset.available === "8" && n.dataset.reserved === "12" && Math.abs(parseFloat(seg.style.width) - 60) < 0.01 &&
			Number(r.dataset.grants) > 0 && Number(r.dataset.refusals) > 0; })()`, 2*time.Second)
	t.Logf("bar and rates moved %v after the first reservation", time.Since(began).Round(time.Millisecond))

	dir := screenshotDir(t)
	shot := func(what string) []byte {
		t.Helper()
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return img
	}
	wide := shot("wide screenshot")
	run("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	waitJS(t, ctx, "a layout that fits a phone", `document.documentElement.scrollWidth <= 390`, 2*time.Second)
	narrow := shot("narrow screenshot")
	for name, img := range map[string][]byte{"console-wide.png": wide, "console-narrow.png": narrow} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(img))
	}

	// End the sale now: confirmed, the window ends and buyers are refused.
	run("end the sale",
		chromedp.Click(chromedp.CSS(item+` button.end`)),
		chromedp.WaitVisible(chromedp.ID("confirm-yes")),
		chromedp.Click(chromedp.ID("confirm-yes")),
	)
	waitJS(t, ctx, "the item to show its sale ended", `document.querySelector('`+item+` .phase').textContent === "ended"`, 3*time.Second)
	reserve(t, svc.URL(), sku, "late-buyer", 1, http.StatusConflict)

	select {
	case e := <-scriptErrors:
		t.Errorf("the page threw: %s", e)
	default:
	}
}

// waitJS polls expr in the page until it is true or within passes.
func waitJS(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("conn").textContent + " | " +
				document.getElementById("redis").textContent + " " + document.getElementById("redis").title + " | " +
				document.getElementById("pageinfo").textContent + " | " +
				document.getElementById("seed-result").textContent + " | " +
				(document.querySelector("#items") || {}).innerText`))
			t.Fatalf("waited %v for %s (last error %v); page: %s", within, what, err, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reserve(t *testing.T, base, sku, user string, qty, want int) {
	t.Helper()
	buyer, err := client.New(base)
	if err != nil {
		t.Fatal(err)
	}
	defer buyer.CloseIdleConnections()
	_, _, err = buyer.Reserve(context.Background(), sku, client.ReserveRequest{UserID: user, Quantity: qty})
	var p *client.Problem
	switch {
	case err == nil && want != http.StatusCreated:
		t.Fatalf("reserve %d of %s for %s: created, want %d", qty, sku, user, want)
	case err != nil && !errors.As(err, &p):
		t.Fatal(err)
	case err != nil && p.Status != want:
		t.Fatalf("reserve %d of %s for %s: %v, want %d", qty, sku, user, err, want)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	msg := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		msg += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1)
}

// waitDrained waits until /readyz shows an empty sync backlog.
func waitDrained(t *testing.T, base string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ready struct {
			Sync struct {
				Backlog *int64 `json:"backlog"`
			} `json:"sync"`
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
		}
		if err == nil && ready.Sync.Backlog != nil && *ready.Sync.Backlog == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync backlog not drained within %v (last error %v)", within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
