package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// Defaults of a scenario's settings left at zero.
const (
	DefaultHoldSeconds = 600
	DefaultSyncTimeout = 30 * time.Second
	// syncPoll is how often the audit endpoint is asked whether the record
	// has caught up; SyncedIn is accurate to about this much.
	syncPoll = 50 * time.Millisecond
)

// Scenario is one kind of load: how the item is seeded, who reserves, and
// what each iteration does with a hold it gets. An iteration is one
// reservation, followed for a share of the holds by a confirm or a cancel;
// its latency covers both requests.
type Scenario struct {
	Name         string
	Stock        int64
	PerUserLimit int   // 0: 1
	HoldSeconds  int   // 0: DefaultHoldSeconds
	Buckets      int   // buckets the item's stock is split over; 0: the service's default (1)
	Quantity     int   // units per reservation; 0: 1
	Users        int64 // iteration i is user i mod Users; 0: every iteration a new user
	// ConfirmPercent and CancelPercent are the shares of granted holds that
	// are confirmed or cancelled at once; the rest stay pending (and expire
	// after the hold time).
	ConfirmPercent int
	CancelPercent  int

	// Bounds used when the run's Config sets neither.
	Requests int64
	Duration time.Duration

	SKU         string        // the item to sell; "" seeds a fresh, uniquely named one
	SyncTimeout time.Duration // how long to wait for the record to catch up; 0: DefaultSyncTimeout
	NoSyncCheck bool          // skip the record check (a service without an audit endpoint)
}

// FlashCrowd is many buyers racing for little stock: iteration i is user
// i mod users, reserving one unit with a limit of one per user. Every unit
// must be granted (when enough distinct users try), none twice.
func FlashCrowd(stock, requests, users int64) Scenario {
	return Scenario{Name: "flashcrowd", Stock: stock, Users: users, Requests: requests}
}

// Success is the steady success path: stock no run can exhaust and every
// request a new user, so every reservation is granted.
func Success() Scenario {
	return Scenario{Name: "success", Stock: reservation.MaxStock, Duration: 10 * time.Second}
}

// Mixed reserves for a new user each time, then confirms about half of the
// holds and cancels about a quarter; the rest are left to expire.
func Mixed(stock int64) Scenario {
	return Scenario{Name: "mixed", Stock: stock, ConfirmPercent: 50, CancelPercent: 25, Duration: 10 * time.Second}
}

// K6 is the scenario of loadtest/k6/flashsale.js: the item seeded through
// the admin API with a limit of one per user, every iteration a new buyer
// reserving one unit, half of the granted holds confirmed at once (chosen
// by sequence number where the script draws at random); only 201 and 409
// are acceptable answers to a reserve, and the state must end with
// sold + reserved <= stock. Like the script it runs 30s by default.
func K6(stock int64) Scenario {
	return Scenario{Name: "k6", Stock: stock, ConfirmPercent: 50, Duration: 30 * time.Second}
}

func (sc Scenario) withDefaults() Scenario {
	if sc.PerUserLimit == 0 {
		sc.PerUserLimit = 1
	}
	if sc.HoldSeconds == 0 {
		sc.HoldSeconds = DefaultHoldSeconds
	}
	if sc.Quantity == 0 {
		sc.Quantity = 1
	}
	if sc.SyncTimeout == 0 {
		sc.SyncTimeout = DefaultSyncTimeout
	}
	return sc
}

func (sc Scenario) validate() error {
	var errs []error
	if sc.Name == "" {
		errs = append(errs, errors.New("a name is required"))
	}
	if sc.Stock < 0 || sc.Stock > reservation.MaxStock {
		errs = append(errs, fmt.Errorf("stock must be 0..%d, got %d", reservation.MaxStock, sc.Stock))
	}
	if sc.Users < 0 {
		errs = append(errs, fmt.Errorf("users must not be negative, got %d", sc.Users))
	}
	if sc.Buckets < 0 || sc.Buckets > reservation.MaxBuckets {
		errs = append(errs, fmt.Errorf("buckets must be 1..%d, got %d", reservation.MaxBuckets, sc.Buckets))
	}
	if sc.Quantity < 1 || sc.Quantity > sc.PerUserLimit {
		errs = append(errs, fmt.Errorf("quantity must be 1..per-user limit (%d), got %d", sc.PerUserLimit, sc.Quantity))
	}
	if sc.ConfirmPercent < 0 || sc.CancelPercent < 0 || sc.ConfirmPercent+sc.CancelPercent > 100 {
		errs = append(errs, fmt.Errorf("confirm and cancel percentages must be >= 0 and add up to at most 100, got %d and %d",
			sc.ConfirmPercent, sc.CancelPercent))
	}
	if sc.SKU != "" && !reservation.ValidSKU(sc.SKU) {
		errs = append(errs, reservation.ErrInvalidSKU)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scenario %q: %w", sc.Name, err)
	}
	return nil
}

// Verification is what the state left by a run was checked against.
type Verification struct {
	SKU            string        `json:"sku"`
	Stock          int64         `json:"stock"`
	Available      int64         `json:"available"`
	Reserved       int64         `json:"reserved"`
	Sold           int64         `json:"sold"`
	Granted        int64         `json:"granted"` // reservations answered 201
	GrantedUnits   int64         `json:"granted_units"`
	ConfirmedUnits int64         `json:"confirmed_units"`
	CancelledUnits int64         `json:"cancelled_units"`
	Oversold       int64         `json:"oversold"` // sold + reserved beyond stock
	SyncChecked    bool          `json:"sync_checked"`
	MySQLRows      int64         `json:"mysql_rows"`   // reservations in the durable record
	SyncedIn       time.Duration `json:"synced_in_ns"` // from the end of the load to the record caught up
	OK             bool          `json:"ok"`
	Problems       []string      `json:"problems"`
	Notes          []string      `json:"notes,omitempty"` // checks skipped, and why
}

func (v *Verification) problem(format string, args ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
}

func (v *Verification) note(format string, args ...any) {
	v.Notes = append(v.Notes, fmt.Sprintf(format, args...))
}

// tally is what the buyers were told, kept with atomics because every
// worker adds to it; a few adds per iteration cost nothing beside a
// network round trip.
type tally struct {
	granted, grantedUnits, confirmedUnits, cancelledUnits atomic.Int64
}

// op is one iteration of sc against sku.
func (sc Scenario) op(c *Client, sku, userPrefix string, t *tally) Op {
	qty := int64(sc.Quantity)
	return func(ctx context.Context, _ int, seq int64) (string, error) {
		user := seq
		if sc.Users > 0 {
			user = seq % sc.Users
		}
		id, outcome, err := c.ReserveUser(ctx, sku, userPrefix, user, sc.Quantity)
		if err != nil || outcome != "created" {
			return outcome, err
		}
		t.granted.Add(1)
		t.grantedUnits.Add(qty)
		switch share := int(seq % 100); {
		case share < sc.ConfirmPercent:
			outcome, err = c.Confirm(ctx, id)
			if err == nil && outcome == "confirmed" {
				t.confirmedUnits.Add(qty)
			}
		case share < sc.ConfirmPercent+sc.CancelPercent:
			// The owner's id, built only for a cancel: its token goes with it.
			outcome, err = c.Cancel(ctx, id, userPrefix+strconv.FormatInt(user, 10))
			if err == nil && outcome == "cancelled" {
				t.cancelledUnits.Add(qty)
			}
		}
		return outcome, err
	}
}

// RunScenario seeds the scenario's item, runs the load under cfg (with the
// scenario's own bounds when cfg sets none), and verifies the state it
// left. The error is for a run that could not be done (or was cancelled);
// what verification found is in Report.Verification.
func RunScenario(ctx context.Context, c *Client, sc Scenario, cfg Config) (Report, error) {
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return Report{}, err
	}
	if cfg.Requests == 0 && cfg.Duration == 0 {
		cfg.Requests, cfg.Duration = sc.Requests, sc.Duration
	}
	sku := sc.SKU
	if sku == "" {
		sku = "lt-" + sc.Name + "-" + randomHex(6)
	}
	if err := c.Seed(ctx, sku, sc.Stock, sc.PerUserLimit, sc.HoldSeconds, sc.Buckets); err != nil {
		return Report{}, err
	}
	// The ledger checks assume the item started untouched.
	it, err := c.Item(ctx, sku)
	if err != nil {
		return Report{}, err
	}
	if it.Reserved != 0 || it.Sold != 0 {
		return Report{}, fmt.Errorf("item %s already has %d units reserved and %d sold: verification needs a fresh item", sku, it.Reserved, it.Sold)
	}

	var t tally
	// A run-unique prefix keeps this run's users apart from any other
	// run's, even on a reused SKU.
	res, err := Run(ctx, cfg, sc.op(c, sku, "lt"+randomHex(3)+"-", &t))
	res.Name = sc.Name
	loadEnd := time.Now()
	if err != nil {
		return Report{Result: res}, err
	}
	return Report{Result: res, Verification: sc.verify(ctx, c, sku, res, &t, loadEnd)}, nil
}

// verify checks the item's counters against each other and against what
// the buyers were told, then waits for the durable record to hold exactly
// the granted reservations.
func (sc Scenario) verify(ctx context.Context, c *Client, sku string, res Result, t *tally, loadEnd time.Time) (v Verification) {
	v = Verification{
		SKU: sku, Stock: sc.Stock,
		Granted: t.granted.Load(), GrantedUnits: t.grantedUnits.Load(),
		ConfirmedUnits: t.confirmedUnits.Load(), CancelledUnits: t.cancelledUnits.Load(),
	}
	defer func() {
		v.OK = len(v.Problems) == 0
		if v.Problems == nil {
			v.Problems = []string{} // JSON readers get a list either way
		}
	}()

	it, err := c.Item(ctx, sku)
	if err != nil {
		v.problem("read the item: %v", err)
		return v
	}
	v.Available, v.Reserved, v.Sold = it.Available, it.Reserved, it.Sold
	v.Oversold = max(0, it.Sold+it.Reserved-it.Stock)
	if v.Oversold > 0 {
		v.problem("OVERSOLD by %d: sold %d + reserved %d > stock %d", v.Oversold, it.Sold, it.Reserved, it.Stock)
	}
	if it.Stock != sc.Stock {
		v.problem("stock is %d, seeded %d", it.Stock, sc.Stock)
	}
	if it.Available < 0 || it.Reserved < 0 || it.Sold < 0 {
		v.problem("a counter is negative: available %d, reserved %d, sold %d", it.Available, it.Reserved, it.Sold)
	}
	if it.Available+it.Reserved+it.Sold != it.Stock {
		v.problem("available %d + reserved %d + sold %d = %d, not the stock %d",
			it.Available, it.Reserved, it.Sold, it.Available+it.Reserved+it.Sold, it.Stock)
	}

	// The ledger: every unit a buyer was granted is reserved or sold unless
	// it was cancelled. A hold that expired, or a request whose answer was
	// lost, would make a correct service fail it.
	mayExpire := res.Elapsed+time.Second >= time.Duration(sc.HoldSeconds)*time.Second
	switch {
	case mayExpire:
		v.note("unit ledger not checked: holds of %ds may have expired during the run", sc.HoldSeconds)
	case res.Errors > 0:
		v.note("unit ledger not checked: %d requests failed, so what they changed is unknown", res.Errors)
	default:
		if held := v.GrantedUnits - v.CancelledUnits; held != it.Reserved+it.Sold {
			v.problem("granted %d units, cancelled %d: %d should be reserved or sold, the item shows %d",
				v.GrantedUnits, v.CancelledUnits, held, it.Reserved+it.Sold)
		}
		if v.ConfirmedUnits != it.Sold {
			v.problem("confirmed %d units, the item shows %d sold", v.ConfirmedUnits, it.Sold)
		}
		// With one unit per user and nothing handed back, the winners are
		// exactly the first distinct users while stock lasted.
		if sc.Quantity == 1 && sc.PerUserLimit == 1 && sc.CancelPercent == 0 && res.Dropped == 0 {
			distinct := res.Requests
			if sc.Users > 0 {
				distinct = min(distinct, sc.Users)
			}
			if want := min(sc.Stock, distinct); v.Granted != want {
				v.problem("granted %d reservations to %d distinct users for %d units, want %d", v.Granted, distinct, sc.Stock, want)
			}
		}
	}

	if sc.NoSyncCheck {
		v.note("durable record not checked (no sync check asked)")
		return v
	}
	v.SyncChecked = true
	v.checkRecord(ctx, c, sc.SyncTimeout, loadEnd)
	return v
}

// checkRecord polls the audit endpoint until the record holds every
// granted reservation with nothing left to sync, or timeout passes.
func (v *Verification) checkRecord(ctx context.Context, c *Client, timeout time.Duration, loadEnd time.Time) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	var last Audit
	var lastErr error
	for {
		au, err := c.Audit(ctx, v.SKU)
		switch {
		case errors.Is(err, ErrNoAudit):
			v.problem("the service has no audit endpoint, so the durable record cannot be checked (skip with -no-sync-check)")
			return
		case err != nil && ctx.Err() != nil:
			// The deadline cut this call short; the last answer says more.
		case err != nil:
			var se *StatusError
			if errors.As(err, &se) && (se.Status == 401 || se.Status == 403) {
				v.problem("audit refused (%v): pass the admin token", err)
				return
			}
			lastErr = err
		default:
			last, lastErr = au, nil
			v.MySQLRows = au.Record.Reservations
			if au.Backlog == 0 && au.InSync && au.Record.Reservations == v.Granted {
				v.SyncedIn = time.Since(loadEnd)
				return
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				v.problem("the record did not catch up within %v; last audit failed: %v", timeout, lastErr)
			} else {
				v.problem("the record did not catch up within %v: backlog %d, in_sync %t, %d reservations recorded for %d granted, drift %v",
					timeout, last.Backlog, last.InSync, last.Record.Reservations, v.Granted, last.Drift)
			}
			return
		case <-tick.C:
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b)
}
