package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/internal/contract"
)

// TestSeedBuckets: PUT /admin/v1/items/{sku} takes "buckets" (1..64) on
// creation; GET shows it; a seed naming another count is 409
// buckets_immutable and changes nothing, one without it keeps the count.
func TestSeedBuckets(t *testing.T) {
	e := newEnv(t)
	for i, tc := range []struct{ name, body string }{
		{"0", `{"stock":1,"buckets":0}`},
		{"65", `{"stock":1,"buckets":65}`},
		{"-1", `{"stock":1,"buckets":-1}`},
		{"a string", `{"stock":1,"buckets":"x"}`},
		{"a numeric string", `{"stock":1,"buckets":"3"}`},
		{"a fraction", `{"stock":1,"buckets":1.5}`},
		{"an object", `{"stock":1,"buckets":{}}`},
		{"twice", `{"stock":1,"buckets":2,"buckets":3}`},
	} {
		t.Run("buckets "+tc.name, func(t *testing.T) {
			sku := fmt.Sprintf("bad-%d", i)
			wantProblem(t, do(t, e.app, "PUT", "/admin/v1/items/"+sku, tc.body, admin), 400, "invalid_request")
			wantNoItem(t, e.app, sku)
		})
	}

	r := seed(t, e.app, "split", `{"stock":9,"per_user_limit":2,"buckets":3}`)
	wantOK(t, r, 201)
	if r.num("buckets") != 3 || r.num("stock") != 9 || r.num("available") != 9 {
		t.Fatalf("created: %s", r.raw)
	}
	reserve(t, e.app, "split", "u1", 2)
	before := getItem(t, e.app, "split")
	for _, body := range []string{
		`{"stock":9,"per_user_limit":2,"buckets":5}`,
		`{"stock":9,"per_user_limit":2,"buckets":1}`,
		`{"stock":12,"per_user_limit":2,"buckets":64}`,
	} {
		wantProblem(t, do(t, e.app, "PUT", "/admin/v1/items/split", body, admin), 409, "buckets_immutable")
		wantItem(t, e.app, "split", before)
	}
	for _, body := range []string{
		`{"stock":12,"per_user_limit":2}`,
		`{"stock":12,"per_user_limit":2,"buckets":3}`,
	} {
		r := do(t, e.app, "PUT", "/admin/v1/items/split", body, admin)
		wantOK(t, r, 200)
		if r.num("buckets") != 3 || r.num("stock") != 12 || r.num("reserved") != 2 {
			t.Fatalf("update %s: %s", body, r.raw)
		}
	}
	if g := do(t, e.app, "GET", "/v1/items/split", "", nil); g.num("buckets") != 3 {
		t.Fatalf("GET: %s", g.raw)
	}

	// Items created without the field have one bucket, for good.
	seed(t, e.app, "solo", `{"stock":2}`)
	if g := do(t, e.app, "GET", "/v1/items/solo", "", nil); g.num("buckets") != 1 {
		t.Fatalf("GET of an item of one bucket: %s", g.raw)
	}
	wantProblem(t, do(t, e.app, "PUT", "/admin/v1/items/solo", `{"stock":2,"buckets":2}`, admin), 409, "buckets_immutable")
	if r := seed(t, e.app, "wide", `{"stock":100,"buckets":64}`); r.num("buckets") != 64 || r.num("available") != 100 {
		t.Fatalf("64 buckets: %s", r.raw)
	}

	// The bulk endpoint answers per item.
	r = do(t, e.app, "PUT", "/admin/v1/items", bulkBody(
		`{"sku":"split","stock":12,"per_user_limit":2,"buckets":2}`,
		`{"sku":"bulk3","stock":6,"buckets":3}`,
	), admin)
	wantOK(t, r, 200)
	res := results(t, r)
	if len(res) != 2 || res[0]["status"] != 409.0 || res[1]["status"] != 201.0 {
		t.Fatalf("bulk: %s", r.raw)
	}
	checkProblem(t, res[0]["problem"].(map[string]any), 409, "buckets_immutable")
	if item, _ := res[1]["item"].(map[string]any); item["buckets"] != 3.0 || item["available"] != 6.0 {
		t.Fatalf("bulk created %v", res[1]["item"])
	}
}

// TestBucketedReservations: holds of a bucketed item, whose ids name their
// bucket, are read, confirmed and cancelled through the API, and GET of the
// item adds up every bucket.
func TestBucketedReservations(t *testing.T) {
	e := newEnv(t)
	seed(t, e.app, "tri", `{"stock":12,"per_user_limit":2,"buckets":3}`)
	var ids []string
	for u := range 6 {
		ids = append(ids, reserve(t, e.app, "tri", fmt.Sprintf("user-%d", u), 2))
	}
	var other []string // ids of holds outside the head
	for _, id := range ids {
		if strings.HasPrefix(id, "tri~") {
			other = append(other, id)
		} else if !strings.HasPrefix(id, "tri.") {
			t.Fatalf("reservation id %q", id)
		}
	}
	if len(other) < 2 {
		t.Fatalf("ids %v: want at least two holds outside the head", ids)
	}
	wantItem(t, e.app, "tri", counters{Stock: 12, Reserved: 12, PerUserLimit: 2, HoldSeconds: 600})
	wantProblem(t, do(t, e.app, "POST", "/v1/items/tri/reservations", `{"user_id":"user-0","quantity":1}`, nil), 409, "limit_exceeded")
	wantProblem(t, do(t, e.app, "POST", "/v1/items/tri/reservations", `{"user_id":"late","quantity":1}`, nil), 409, "sold_out")

	g := do(t, e.app, "GET", "/v1/reservations/"+other[0], "", nil)
	wantOK(t, g, 200)
	if g.str("id") != other[0] || g.str("sku") != "tri" || g.str("status") != "pending" {
		t.Fatalf("GET %s: %s", other[0], g.raw)
	}
	c := do(t, e.app, "POST", "/v1/reservations/"+other[0]+"/confirm", "", service)
	wantOK(t, c, 200)
	if c.str("status") != "confirmed" {
		t.Fatalf("confirm: %s", c.raw)
	}
	x := do(t, e.app, "POST", "/v1/reservations/"+other[1]+"/cancel", "", nil)
	wantOK(t, x, 200)
	if x.str("status") != "cancelled" {
		t.Fatalf("cancel: %s", x.raw)
	}
	wantProblem(t, do(t, e.app, "POST", "/v1/reservations/"+other[0]+"/cancel", "", nil), 409, "reservation_confirmed")
	wantItem(t, e.app, "tri", counters{Stock: 12, Available: 2, Reserved: 8, Sold: 2, PerUserLimit: 2, HoldSeconds: 600})

	// The cancelled units go to the next buyer, whichever bucket is theirs.
	reserve(t, e.app, "tri", "late", 2)
	wantItem(t, e.app, "tri", counters{Stock: 12, Reserved: 10, Sold: 2, PerUserLimit: 2, HoldSeconds: 600})
	unknown := other[0][:strings.LastIndexByte(other[0], '.')] + ".AAAAAAAAAAAAAAAAAAAAAA"
	wantProblem(t, do(t, e.app, "GET", "/v1/reservations/"+unknown, "", nil), 404, "reservation_not_found")
}

// TestBucketsConcurrentBuyers: buyers race for a 3-bucket item with a
// limit of one: exactly the stock is held, every other buyer is told
// sold_out, and GET adds up to the stock.
func TestBucketsConcurrentBuyers(t *testing.T) {
	const (
		stock   = 60
		buyers  = 300
		workers = 24
	)
	e := newEnv(t)
	seed(t, e.app, "rush", fmt.Sprintf(`{"stock":%d,"per_user_limit":1,"buckets":3}`, stock))

	type answer struct {
		status int
		code   string
		err    error
	}
	answers := make([]answer, buyers)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				answers[i].status, answers[i].code, answers[i].err = buy(e.app, "rush", fmt.Sprintf("buyer-%d", i))
			}
		}()
	}
	for i := range buyers {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	held, soldOut := 0, 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Fatalf("buyer %d: %v", i, a.err)
		case a.status == 201:
			held++
		case a.status == 409 && a.code == "sold_out":
			soldOut++
		default:
			t.Fatalf("buyer %d: status %d code %q", i, a.status, a.code)
		}
	}
	if held != stock || soldOut != buyers-stock {
		t.Fatalf("%d held, %d sold out; want %d and %d", held, soldOut, stock, buyers-stock)
	}
	wantItem(t, e.app, "rush", counters{Stock: stock, Reserved: stock, PerUserLimit: 1, HoldSeconds: 600})
}

// buy posts one reservation of one unit; safe to call from any goroutine.
// It returns the status and, for a problem, its code.
func buy(app *fiber.App, sku, user string) (int, string, error) {
	sent := fmt.Sprintf(`{"user_id":%q,"quantity":1}`, user)
	req := httptest.NewRequest("POST", "/v1/items/"+sku+"/reservations", strings.NewReader(sent))
	req.Header.Set("Content-Type", "application/json")
	res, err := app.Test(req, -1)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, "", err
	}
	spec, err := contract.Load()
	if err != nil {
		return 0, "", err
	}
	if err := spec.Check(req, []byte(sent), res.StatusCode, res.Header, raw); err != nil {
		return res.StatusCode, "", fmt.Errorf("contract: %w", err)
	}
	var body struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return res.StatusCode, "", fmt.Errorf("body %q: %w", raw, err)
	}
	return res.StatusCode, body.Code, nil
}
