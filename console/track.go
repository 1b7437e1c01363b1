package console

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// timeLayout is the API's (httpapi.TimeLayout), which this package cannot
// import: httpapi imports it.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// The rates keep RateWindow in slots of slotSeconds: 30 counters of each
// kind per item, 10,000 items in under 3 MB, where a sample a second would
// need 24 MB.
const (
	slotSeconds = 10
	slots       = int(RateWindow / (slotSeconds * time.Second))
)

type slot struct {
	epoch            int64 // unix seconds / slotSeconds this slot counts
	grants, refusals uint32
}

// itemTrack is what the hub remembers of an item between reads.
type itemTrack struct {
	grants, refusals uint64 // the counters at the last read
	ring             [slots]slot
	soldOutAt        time.Time
	soldOutBefore    bool // sold out when first seen: the moment is earlier than soldOutAt
	wasSoldOut       bool
	name, key        string // key: the search's lower-case SKU and name, kept while the name is
}

// tracker holds the per-item memory; the poller is its only writer, but a
// stopping poller may overlap a starting one, hence the lock.
type tracker struct {
	mu    sync.Mutex
	items map[string]*itemTrack
	since time.Time // start of the counted time (the last re-base)
}

// itemView is one item as consoles see it.
type itemView struct {
	SKU          string  `json:"sku"`
	Name         string  `json:"name"`
	Stock        int64   `json:"stock"`
	Available    int64   `json:"available"`
	Reserved     int64   `json:"reserved"`
	Sold         int64   `json:"sold"`
	Buckets      int     `json:"buckets"`
	StartsAt     *string `json:"starts_at"`
	EndsAt       *string `json:"ends_at"`
	Phase        string  `json:"phase"`        // scheduled, open, sold_out or ended
	GrantsPerS   float64 `json:"grants_per_s"` // 0 when the update's rates is false
	RefusalsPerS float64 `json:"refusals_per_s"`
	// Per ten-second slot, oldest first; arrays, so a reading of 10,000
	// items allocates them with its one slice of views.
	GrantsSeries  [slots]uint32 `json:"grants_series"`
	RefusalSeries [slots]uint32 `json:"refusals_series"`
	SoldOutAt     *string       `json:"sold_out_at"`
	SoldOutBefore bool          `json:"sold_out_before,omitempty"`

	key string // lower-case SKU and name, for the search
}

// state is one reading, shared by every subscriber's encode.
type state struct {
	at         time.Time
	redisUp    bool
	redisErr   string
	health     *Health
	ratesOn    bool
	windowSecs float64
	items      []itemView
	soldOut    int
	grantsPerS float64
	refusePerS float64

	cache map[View][]byte // encoded pages; used under Hub.mu only
}

func (h *Hub) tracker() *tracker {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tr == nil {
		h.tr = &tracker{items: map[string]*itemTrack{}}
	}
	return h.tr
}

// track turns one read into a state: rates from the counters' deltas,
// sold-out moments from the transitions. A failed read keeps the previous
// items, marked as such by redisUp.
func (h *Hub) track(items []reservation.Item, readErr error, health *Health, prev *state, rebase bool) *state {
	now := h.opts.Now()
	st := &state{at: now, redisUp: readErr == nil, health: health, ratesOn: h.opts.Counts != nil,
		cache: map[View][]byte{}}
	if readErr != nil {
		st.redisErr = readErr.Error()
		if prev != nil {
			st.items, st.soldOut, st.windowSecs = prev.items, prev.soldOut, prev.windowSecs
			st.grantsPerS, st.refusePerS = prev.grantsPerS, prev.refusePerS
		}
		return st
	}
	tr := h.tracker()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if rebase || tr.since.IsZero() {
		// Nobody watched since the last poller stopped: what happened
		// meanwhile has no time to spread over. Start counting afresh.
		tr.since = now
		for _, t := range tr.items {
			t.ring = [slots]slot{}
		}
	}
	counts := make(map[string][2]uint64, len(items))
	if h.opts.Counts != nil {
		h.opts.Counts(func(sku, outcome string, n uint64) {
			c := counts[sku]
			switch outcome {
			case "created":
				c[0] += n
			case "replayed": // the same grant answered again
				return
			default:
				c[1] += n
			}
			counts[sku] = c
		})
	}
	epoch := now.Unix() / slotSeconds
	oldest := epoch - int64(slots) + 1
	window := now.Sub(tr.since)
	if window > RateWindow {
		window = RateWindow
	}
	st.windowSecs = max(window.Seconds(), 1)

	seen := make(map[string]struct{}, len(items))
	st.items = make([]itemView, len(items))
	for i, it := range items {
		seen[it.SKU] = struct{}{}
		t := tr.items[it.SKU]
		fresh := t == nil
		if fresh {
			t = &itemTrack{}
			tr.items[it.SKU] = t
		}
		var g, r uint64
		if c, ok := counts[it.SKU]; ok {
			g, r = c[0], c[1]
		}
		if !fresh && !rebase && g >= t.grants && r >= t.refusals {
			s := &t.ring[epoch%int64(slots)]
			if s.epoch != epoch {
				*s = slot{epoch: epoch}
			}
			s.grants += uint32(g - t.grants)
			s.refusals += uint32(r - t.refusals)
		}
		t.grants, t.refusals = g, r

		soldOut := it.Stock > 0 && it.Available <= 0
		switch {
		case soldOut && !t.wasSoldOut:
			t.soldOutAt, t.soldOutBefore = now, fresh || rebase
		case !soldOut:
			t.soldOutAt, t.soldOutBefore = time.Time{}, false
		}
		t.wasSoldOut = soldOut

		v := itemView{
			SKU: it.SKU, Name: it.Name, Stock: it.Stock, Available: it.Available, Reserved: it.Reserved,
			Sold: it.Sold, Buckets: max(it.Buckets, 1), StartsAt: optTime(it.StartsAt), EndsAt: optTime(it.EndsAt),
			Phase: phase(it, now), SoldOutAt: optTime(t.soldOutAt), SoldOutBefore: t.soldOutBefore,
		}
		if t.key == "" || t.name != it.Name {
			t.name, t.key = it.Name, strings.ToLower(it.SKU+"\x00"+it.Name)
		}
		v.key = t.key
		if soldOut {
			st.soldOut++
		}
		if st.ratesOn {
			var sg, sr uint64
			for k := range slots {
				e := oldest + int64(k)
				s := t.ring[e%int64(slots)]
				if s.epoch == e {
					v.GrantsSeries[k], v.RefusalSeries[k] = s.grants, s.refusals
					sg += uint64(s.grants)
					sr += uint64(s.refusals)
				}
			}
			v.GrantsPerS, v.RefusalsPerS = float64(sg)/st.windowSecs, float64(sr)/st.windowSecs
			st.grantsPerS += v.GrantsPerS
			st.refusePerS += v.RefusalsPerS
		}
		st.items[i] = v
	}
	for sku := range tr.items {
		if _, ok := seen[sku]; !ok {
			delete(tr.items, sku)
		}
	}
	return st
}

// phase is where an item stands in its sale.
func phase(it reservation.Item, now time.Time) string {
	switch {
	case !it.EndsAt.IsZero() && !now.Before(it.EndsAt):
		return "ended"
	case !it.StartsAt.IsZero() && now.Before(it.StartsAt):
		return "scheduled"
	case it.Stock > 0 && it.Available <= 0:
		return "sold_out"
	}
	return "open"
}

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeLayout)
	return &s
}

// View is what one console asks to see: a search, a page, an order.
type View struct {
	Query string // substring of the SKU or name, case-insensitive
	Page  int    // from 0
	Sort  string // "sku" (default) or "busy" (most grants per second first)
}

func (v View) normal() View {
	v.Query = strings.ToLower(strings.TrimSpace(v.Query))
	if len(v.Query) > 100 {
		v.Query = v.Query[:100]
	}
	v.Page = max(v.Page, 0)
	if v.Sort != "busy" {
		v.Sort = "sku"
	}
	return v
}

// update is the document each event carries.
type update struct {
	At          string     `json:"at"`
	RedisUp     bool       `json:"redis_up"`
	RedisError  string     `json:"redis_error,omitempty"`
	Health      *Health    `json:"health"`
	Rates       bool       `json:"rates"`
	RateWindowS float64    `json:"rate_window_s"`
	SlotSeconds int        `json:"slot_seconds"`
	Items       int        `json:"items"`
	SoldOut     int        `json:"sold_out"`
	GrantsPerS  float64    `json:"grants_per_s"`
	RefusePerS  float64    `json:"refusals_per_s"`
	Query       string     `json:"query"`
	Sort        string     `json:"sort"`
	Matched     int        `json:"matched"`
	Page        int        `json:"page"`
	Pages       int        `json:"pages"`
	PageSize    int        `json:"page_size"`
	PageItems   []itemView `json:"page_items"`
}

// encode writes view's page of st; pages asked for twice in one reading
// are encoded once. Callers hold Hub.mu.
func (st *state) encode(view View) []byte {
	if b, ok := st.cache[view]; ok {
		return b
	}
	matched := st.items
	if view.Query != "" {
		matched = make([]itemView, 0, 64)
		for _, it := range st.items {
			if strings.Contains(it.key, view.Query) {
				matched = append(matched, it)
			}
		}
	}
	if view.Sort == "busy" {
		matched = slices.Clone(matched)
		slices.SortStableFunc(matched, func(a, b itemView) int {
			ga, gb := a.GrantsPerS+a.RefusalsPerS, b.GrantsPerS+b.RefusalsPerS
			switch {
			case ga > gb:
				return -1
			case ga < gb:
				return 1
			}
			return 0
		})
	}
	pages := max((len(matched)+PageSize-1)/PageSize, 1)
	page := min(view.Page, pages-1)
	lo := page * PageSize
	u := update{
		At: st.at.UTC().Format(timeLayout), RedisUp: st.redisUp, RedisError: st.redisErr, Health: st.health,
		Rates: st.ratesOn, RateWindowS: st.windowSecs, SlotSeconds: slotSeconds,
		Items: len(st.items), SoldOut: st.soldOut, GrantsPerS: st.grantsPerS, RefusePerS: st.refusePerS,
		Query: view.Query, Sort: view.Sort, Matched: len(matched), Page: page, Pages: pages, PageSize: PageSize,
		PageItems: matched[lo:min(lo+PageSize, len(matched))],
	}
	b, err := json.Marshal(u)
	if err != nil { // only plain data: cannot happen
		b = []byte(`{"error":"encode"}`)
	}
	st.cache[view] = b
	return b
}
