package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// TestConfirmNeedsServiceToken: a buyer holding its own reservation id, on a
// running server, tries to confirm the hold (to take the unit without
// paying) with every credential it might have or forge. Only a service token,
// either entry of the list, confirms; every other attempt is 401
// unauthorized with a Bearer challenge, and the hold stays pending with the
// item's counters unchanged.
func TestConfirmNeedsServiceToken(t *testing.T) {
	_, client := redistest.Miniredis(t)
	base := "http://" + testenv.Serve(t, newServer(t, client))
	hc := &http.Client{Timeout: 5 * time.Second}

	// call sends one request with authorization as its Authorization header
	// ("": none) and decodes the JSON object it answers.
	call := func(method, path, body, authorization string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, raw, err)
		}
		return res.StatusCode, res.Header, v
	}
	type counts struct{ available, reserved, sold float64 }
	item := func() counts {
		t.Helper()
		status, _, v := call("GET", "/v1/items/ticket", "", "")
		if status != http.StatusOK {
			t.Fatalf("get item: %d %v", status, v)
		}
		n := func(k string) float64 { f, _ := v[k].(float64); return f }
		return counts{n("available"), n("reserved"), n("sold")}
	}

	if status, _, v := call("PUT", "/admin/v1/items/ticket", `{"stock":100,"per_user_limit":100}`,
		"Bearer "+adminToken); status != http.StatusCreated {
		t.Fatalf("seed: %d %v", status, v)
	}
	for _, tc := range []struct {
		name          string
		authorization string // "": no Authorization header
		confirms      bool
	}{
		{"buyer without a token", "", false},
		{"buyer with the admin token", "Bearer " + adminToken, false},
		{"buyer with a wrong token", "Bearer not-a-service-token-0123", false},
		{"service token under another scheme", "Basic " + serviceTokens[0], false},
		{"service token without a scheme", serviceTokens[0], false},
		{"the list's first service token", "Bearer " + serviceTokens[0], true},
		{"the list's second service token", "Bearer " + serviceTokens[1], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, res := call("POST", "/v1/items/ticket/reservations", `{"user_id":"mallory","quantity":1}`, "")
			if status != http.StatusCreated {
				t.Fatalf("reserve: %d %v", status, res)
			}
			id, _ := res["id"].(string)
			before := item()

			status, header, body := call("POST", "/v1/reservations/"+id+"/confirm", "", tc.authorization)
			if tc.confirms {
				if status != http.StatusOK || body["status"] != "confirmed" {
					t.Fatalf("confirm: %d %v, want 200 confirmed", status, body)
				}
				want := counts{before.available, before.reserved - 1, before.sold + 1}
				if after := item(); after != want {
					t.Errorf("after confirm: %+v, want %+v", after, want)
				}
				return
			}
			if status != http.StatusUnauthorized || body["code"] != "unauthorized" {
				t.Errorf("confirm: %d %v, want 401 unauthorized", status, body)
			}
			if got := header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", got)
			}
			if got := header.Get("Content-Type"); !strings.HasPrefix(got, "application/problem+json") {
				t.Errorf("Content-Type %q", got)
			}
			if after := item(); after != before {
				t.Errorf("the refused confirm changed the item: %+v, then %+v", before, after)
			}
			if _, _, r := call("GET", "/v1/reservations/"+id, "", ""); r["status"] != "pending" {
				t.Errorf("the refused confirm left the hold %v, want pending", r["status"])
			}
		})
	}
}

// TestAdminTokenRotation: during a rotation both admin tokens admit, and a
// service token, which only confirms, does not.
func TestAdminTokenRotation(t *testing.T) {
	_, client := redistest.Miniredis(t)
	store, err := redisstore.New(context.Background(), client, "apitest")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	const oldToken, newToken = "admin-token-being-retired", "admin-token-taking-over"
	app := httpapi.New(reservation.NewService(store, nil), httpapi.Config{
		AdminTokens: []string{oldToken, newToken}, ServiceTokens: serviceTokens, Log: quietLog(),
	}).App()
	for _, tc := range []struct {
		name, token string
		status      int
	}{
		{"the old token", oldToken, 201},
		{"the new token", newToken, 200},
		{"a service token", serviceTokens[0], 401},
		{"both tokens in one", oldToken + "," + newToken, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, app, "PUT", "/admin/v1/items/mug", `{"stock":5}`, h{"Authorization": "Bearer " + tc.token})
			wantStatus(t, r, tc.status)
		})
	}
}
