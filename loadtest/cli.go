package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Flash-crowd defaults: a sale far smaller than its crowd.
const (
	defaultCrowdStock    = 1_000
	defaultCrowdRequests = 200_000
	defaultCrowdUsers    = 100_000
	defaultMixedStock    = 1_000_000_000
	defaultK6Stock       = 100 // the k6 script's STOCK
)

// scenarioNamed builds the named scenario with its defaults.
func scenarioNamed(name string) (Scenario, bool) {
	switch name {
	case "flashcrowd":
		return FlashCrowd(defaultCrowdStock, defaultCrowdRequests, defaultCrowdUsers), true
	case "success":
		return Success(), true
	case "mixed":
		return Mixed(defaultMixedStock), true
	case "k6":
		return K6(defaultK6Stock), true
	}
	return Scenario{}, false
}

const scenarioNames = "flashcrowd, success, mixed or k6"

// Main is the `flashsale loadtest` command. It returns an error when the
// run could not be done, when any request failed, or when verification
// found a problem; the report is written to stdout either way.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, os.Getenv, stdout, stderr)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flashsale loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		baseURL      = fs.String("url", "http://127.0.0.1:3004", "base URL of the flashsale service")
		adminToken   = fs.String("admin-token", firstToken(getenv("FLASHSALE_ADMIN_TOKEN")), "admin bearer token, to seed and audit (default: the first of $FLASHSALE_ADMIN_TOKEN)")
		serviceToken = fs.String("service-token", firstToken(getenv("FLASHSALE_SERVICE_TOKENS")), "service bearer token, to confirm as the payment backend does (default: the first of $FLASHSALE_SERVICE_TOKENS)")
		name         = fs.String("scenario", "flashcrowd", "the load: "+scenarioNames)
		clients      = fs.Int("clients", 64, "closed loop: concurrent clients; open loop: max requests in flight")
		rate         = fs.Float64("rate", 0, "open loop: requests per second (0: closed loop)")
		duration     = fs.Duration("duration", 0, "stop after this long (default: the scenario's bound)")
		requests     = fs.Int64("requests", 0, "stop after this many requests (default: the scenario's bound)")
		stock        = fs.Int64("stock", 0, "units to seed (default: the scenario's)")
		users        = fs.Int64("users", 0, "distinct users; request i is user i mod users (default: the scenario's; 0 in the scenario means every request a new user)")
		hold         = fs.Int("hold", 0, "hold seconds of the seeded item (default 600)")
		buckets      = fs.Int("buckets", 0, "split the seeded item's stock over this many buckets, 1..64 (default: the service's, 1)")
		confirmPct   = fs.Int("confirm-percent", 0, "share of granted holds confirmed at once (default: the scenario's)")
		cancelPct    = fs.Int("cancel-percent", 0, "share of granted holds cancelled at once (default: the scenario's)")
		sku          = fs.String("sku", "", "item to sell (default: a fresh, uniquely named one; a given one must have no reservations)")
		asJSON       = fs.Bool("json", false, "write the report as JSON")
		syncTimeout  = fs.Duration("timeout", DefaultSyncTimeout, "how long to wait for the durable record to catch up after the load")
		noSync       = fs.Bool("no-sync-check", false, "do not check the durable record (for a service without the audit endpoint)")
		reqTimeout   = fs.Duration("request-timeout", DefaultRequestTimeout, "bound on one request")
		jwtKey       = fs.String("jwt-key", "", "PEM private key (EC P-256 or RSA) to mint each buyer a JWT with, for a service run with FLASHSALE_BUYER_AUTH=jwt")
		jwtIssuer    = fs.String("jwt-issuer", getenv("FLASHSALE_JWT_ISSUER"), "iss of the minted JWTs (default: $FLASHSALE_JWT_ISSUER)")
		jwtAudience  = fs.String("jwt-audience", getenv("FLASHSALE_JWT_AUDIENCE"), "aud of the minted JWTs (default: $FLASHSALE_JWT_AUDIENCE)")
		jwtKID       = fs.String("jwt-kid", DefaultJWTKID, "kid of the minted JWTs: the key's kid in the service's JWKS")
		jwtTTL       = fs.Duration("jwt-ttl", DefaultJWTTTL, "lifetime of a minted JWT; each is minted again once half of it has passed")
		jwtKeygen    = fs.String("jwt-keygen", "", "write a new EC P-256 key into this directory ("+JWTKeyFile+" for -jwt-key, "+
			JWTPrivateJWKFile+" for the k6 script, "+JWTJWKSFile+" for the service's FLASHSALE_JWT_JWKS_FILE) under -jwt-kid, and exit")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *jwtKeygen != "" {
		if err := WriteJWTKey(*jwtKeygen, *jwtKID); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "wrote %[1]s, %[2]s and %[3]s in %[4]s (kid %[5]q)\n"+
			"service: FLASHSALE_BUYER_AUTH=jwt FLASHSALE_JWT_JWKS_FILE=%[6]s plus FLASHSALE_JWT_ISSUER and FLASHSALE_JWT_AUDIENCE\n"+
			"load:    flashsale loadtest -jwt-key %[7]s -jwt-kid %[5]s -jwt-issuer <the same> -jwt-audience <the same> ...\n",
			JWTKeyFile, JWTPrivateJWKFile, JWTJWKSFile, *jwtKeygen, *jwtKID,
			filepath.Join(*jwtKeygen, JWTJWKSFile), filepath.Join(*jwtKeygen, JWTKeyFile))
		return err
	}
	var buyers *BuyerTokens
	if *jwtKey != "" {
		key, err := ReadJWTKey(*jwtKey)
		if err != nil {
			return err
		}
		if buyers, err = NewBuyerTokens(JWTOptions{Key: key, KID: *jwtKID, Issuer: *jwtIssuer, Audience: *jwtAudience, TTL: *jwtTTL}); err != nil {
			return err
		}
	}
	sc, ok := scenarioNamed(*name)
	if !ok {
		return fmt.Errorf("unknown scenario %q (want %s)", *name, scenarioNames)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["stock"] {
		sc.Stock = *stock
	}
	if set["users"] {
		sc.Users = *users
	}
	if set["confirm-percent"] {
		sc.ConfirmPercent = *confirmPct
	}
	if set["cancel-percent"] {
		sc.CancelPercent = *cancelPct
	}
	sc.HoldSeconds, sc.Buckets, sc.SKU, sc.SyncTimeout, sc.NoSyncCheck = *hold, *buckets, *sku, *syncTimeout, *noSync
	if sc.ConfirmPercent > 0 && *serviceToken == "" {
		// Every confirm would be a 401: say so before loading the service.
		return fmt.Errorf("scenario %s confirms %d%% of the holds: confirm needs -service-token or $FLASHSALE_SERVICE_TOKENS (or -confirm-percent 0)",
			sc.Name, sc.ConfirmPercent)
	}

	client, err := NewClient(*baseURL, *adminToken, *clients)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	client.SetTimeout(*reqTimeout)
	client.SetServiceToken(*serviceToken)
	client.SetBuyerTokens(buyers)

	rep, err := RunScenario(ctx, client, sc, Config{
		Clients:  *clients,
		Rate:     *rate,
		Duration: *duration,
		Requests: *requests,
		Progress: stderr,
	})
	if err != nil && rep.Requests == 0 {
		return err
	}
	if werr := writeReport(stdout, rep, *asJSON); werr != nil {
		return errors.Join(err, werr)
	}
	if err != nil {
		return err
	}
	var errs []error
	if rep.Errors > 0 {
		errs = append(errs, fmt.Errorf("%d of %d requests failed; the first: %s", rep.Errors, rep.Requests, rep.FirstError))
	}
	if !rep.Verification.OK {
		errs = append(errs, fmt.Errorf("verification failed: %s", strings.Join(rep.Verification.Problems, "; ")))
	}
	return errors.Join(errs...)
}

// firstToken is the first of a comma-separated token list, as the service
// reads FLASHSALE_ADMIN_TOKEN and FLASHSALE_SERVICE_TOKENS: any entry admits.
func firstToken(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

func writeReport(w io.Writer, rep Report, asJSON bool) error {
	if !asJSON {
		return WriteTable(w, rep)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
