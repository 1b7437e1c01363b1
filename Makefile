# flashsale: the two commands a newcomer needs are `make run` and `make test`;
# `make check` is the edit-test loop.
GO      ?= go
BIN     := bin/flashsale
PKGS    := ./...
# Integration tests use the Redis at this address (a unique key prefix per run).
export FLASHSALE_TEST_REDIS_ADDR ?= 127.0.0.1:6379
# Tests that need more than the test process sit behind build tags:
# integration: the real Redis above, the MariaDB at 127.0.0.1:3306
#   (FLASHSALE_TEST_MYSQL_ADDR), or redis-server, a Redis Cluster or the
#   flashsale binary started by internal/testenv;
# fault: internal/faulttest, which kills and restarts those processes.
# Untagged tests need nothing running: unit, miniredis and in-process HTTP.
TAGS    := integration,fault
# Pinned; it supports the go version in go.mod. The first run downloads it.
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   := $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

.PHONY: build run check test test-integration test-fault lint fuzz bench bench-go bench-cluster clean check-rules check-dashboard contract postman

build:
	$(GO) build -o $(BIN) ./app

## run: serve on :3004. With no Redis configured (FLASHSALE_REDIS_ADDR and
## FLASHSALE_REDIS_CLUSTER_ADDRS unset) it asks for the embedded in-memory
## Redis, which the binary never picks on its own. With no
## FLASHSALE_ADMIN_TOKEN it uses the token in ADMIN_TOKEN_FILE, and with no
## FLASHSALE_SERVICE_TOKENS the one in SERVICE_TOKEN_FILE (confirm needs it),
## each made on first use and readable by its owner alone: the README's
## walkthrough reads them there.
ADMIN_TOKEN_FILE ?= bin/admin-token
SERVICE_TOKEN_FILE ?= bin/service-token
run: build
	@if [ -z "$$FLASHSALE_REDIS_ADDR$$FLASHSALE_REDIS_CLUSTER_ADDRS" ]; then export FLASHSALE_REDIS_ADDR=embedded; fi; \
	token_in() { \
		if [ ! -s "$$1" ]; then \
			mkdir -p "$$(dirname "$$1")" && \
			(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$$1") || return 1; \
		fi; \
		cat "$$1"; \
	}; \
	if [ -z "$$FLASHSALE_ADMIN_TOKEN" ]; then \
		FLASHSALE_ADMIN_TOKEN=$$(token_in '$(ADMIN_TOKEN_FILE)') && export FLASHSALE_ADMIN_TOKEN || exit 1; \
		echo "make run: the admin token is in $(ADMIN_TOKEN_FILE)" >&2; \
	fi; \
	if [ -z "$$FLASHSALE_SERVICE_TOKENS" ]; then \
		FLASHSALE_SERVICE_TOKENS=$$(token_in '$(SERVICE_TOKEN_FILE)') && export FLASHSALE_SERVICE_TOKENS || exit 1; \
		echo "make run: the service token, which confirm needs, is in $(SERVICE_TOKEN_FILE)" >&2; \
	fi; \
	exec ./$(BIN)

## check: the edit-test loop, under a minute: lint, then the untagged tests
## (no server needed) with the race detector and -short (property tests run
## a fifth of their cases). Results are cached while nothing they use changes.
## atexit_sleep_ms=0: a race binary otherwise sleeps 1 s as it exits, a
## second per package; a race in a test is still reported by that test.
check: lint
	GORACE=atexit_sleep_ms=0 $(GO) test -race -short $(PKGS)

## test: the whole suite, what CI runs: lint, then every test (untagged,
## integration and fault) with the race detector, at full strength.
## Under CI=true an integration test that cannot reach its server fails
## instead of skipping.
test: lint check-rules contract
	$(GO) test -race -count=1 -timeout 15m -tags $(TAGS) $(PKGS)

## contract: the API contract (api/openapi.yaml) checked by tools that
## share no code with the service, pinned in api/contract/package-lock.json
## (npm ci into bin/contract on first use): Redocly's linter, Portman's
## collection (api/postman.json must be current) run by Newman against a
## live serve, and Prism's proxy under a mixed loadtest. About 15 s.
contract: build
	api/contract/run.sh

## postman: regenerate api/postman.json from the spec (Portman), to commit.
postman:
	api/contract/run.sh postman

## test-integration: the untagged tests plus those on the real Redis,
## MariaDB, private redis-servers and a Redis Cluster.
test-integration:
	$(GO) test -race -count=1 -timeout 15m -tags integration $(PKGS)

## test-fault: the process-killing fault tests of internal/faulttest.
test-fault:
	$(GO) test -race -count=1 -timeout 15m -tags fault ./internal/faulttest

## lint: go vet and staticcheck over every file (all tags), gofmt, and the
## k6 scripts' syntax.
lint:
	$(GO) vet -tags $(TAGS) $(PKGS)
	$(STATICCHECK) -tags $(TAGS) $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@# k6 cannot run here; Node parses the k6 scripts as ES modules, which k6 requires.
	@if command -v node >/dev/null 2>&1; then \
		for f in loadtest/k6/*.js; do \
			node --input-type=module --check < "$$f" || { echo "$$f: not a valid ES module"; exit 1; }; \
		done; \
	else case "$$CI" in 1|t|T|true|TRUE|True) echo "node is required under CI to check loadtest/k6/*.js"; exit 1;; \
		*) echo "warning: node not found, loadtest/k6/*.js not syntax-checked";; esac; fi

## check-rules: promtool (Debian's prometheus package; .ci/run installs it)
## checks deploy/prometheus's config and alert rules and runs the rules' unit
## tests. Without promtool it warns, and fails under CI=true.
check-rules:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check config deploy/prometheus/prometheus.yml && \
		promtool check rules deploy/prometheus/alerts.yml && \
		promtool test rules deploy/prometheus/alerts_test.yml && \
		$(MAKE) -s check-dashboard; \
	else case "$$CI" in 1|t|T|true|TRUE|True) echo "promtool is required under CI (apt-get install prometheus)"; exit 1;; \
		*) echo "warning: promtool not found, deploy/prometheus not checked";; esac; fi

# check-dashboard: every query of the Grafana dashboard parses as PromQL
# (promtool checks them as recording rules; Grafana's $__rate_interval and
# $__range become fixed ranges).
check-dashboard:
	@tmp=$$(mktemp --suffix=.yml) && trap 'rm -f "$$tmp"' EXIT && \
	{ echo "groups: [{name: dashboard, rules: ["; \
	  jq -r '.. | .expr? // empty' deploy/grafana/flashsale.json | \
	  sed 's/\$$__rate_interval/1m/g; s/\$$__range/1h/g' | \
	  awk '{ printf "{record: \"dashboard:panel_%d\", expr: '"'"'%s'"'"'},\n", NR, $$0 }'; \
	  echo "]}]"; } > "$$tmp" && \
	echo "deploy/grafana/flashsale.json:" && promtool check rules "$$tmp"

## fuzz: run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./httpapi | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./httpapi || exit 1; \
	done

## bench: three interleaved rounds at 64 clients, each row reporting its median
## round: the limits (redis-benchmark on the reserve
## script, a bare Fiber server, the plain endpoint), the service (also with rate
## limits on, and with a local replica and FLASHSALE_REDIS_ACK_REPLICAS=1), the MySQL
## approaches it replaces, with each process's CPU per request; then the idle
## cost of 10,000 and 100,000 items; one table and the targets, in about eight minutes
## (BENCHFLAGS=-rounds=1: one round, about three). Redis and MySQL
## from FLASHSALE_BENCH_REDIS_ADDR and FLASHSALE_BENCH_MYSQL_DSN (default the
## local ones); flags through BENCHFLAGS, e.g. BENCHFLAGS='-only http-ceiling -json'.
bench: build
	$(GO) build -o bin/flashsale-bench ./loadtest/cmd/flashsale-bench
	./bin/flashsale-bench -flashsale $(BIN) -rounds 3 $(BENCHFLAGS)

## bench-go: the hand-written code against what libraries do (the strict
## JSON decoder, the coalescer against go-redis AutoPipeline; see
## docs/performance.md): ten interleaved rounds, then benchstat. Real Redis at
## FLASHSALE_TEST_REDIS_ADDR; about three minutes.
BENCHDIR := bin/bench-go
bench-go:
	@mkdir -p $(BENCHDIR) && rm -f $(BENCHDIR)/*.txt
	$(GO) test -c -o $(BENCHDIR)/httpapi.test ./httpapi
	$(GO) test -c -tags integration -o $(BENCHDIR)/redisstore.test ./redisstore
	@for i in 1 2 3 4 5 6 7 8 9 10; do \
		(cd httpapi && ../$(BENCHDIR)/httpapi.test -test.run '^$$' -test.bench DecodeStrict -test.benchmem) >> $(BENCHDIR)/decode.txt || exit 1; \
		(cd redisstore && ../$(BENCHDIR)/redisstore.test -test.run '^$$' -test.bench ReservePipelining -test.benchtime 3s -test.benchmem) >> $(BENCHDIR)/pipelining.txt || exit 1; \
	done
	$(BENCHSTAT) $(BENCHDIR)/decode.txt
	$(BENCHSTAT) $(BENCHDIR)/pipelining.txt

## bench-cluster: the flash crowd on one item with 1 and 3 stock buckets on a
## local 3-master Redis Cluster, then the reserve script's rate per shard with
## shards pinned to cores (loadtest/cluster/bench.sh; about a minute).
bench-cluster: build
	$(GO) build -o bin/flashsale-bench ./loadtest/cmd/flashsale-bench
	loadtest/cluster/bench.sh

clean:
	rm -rf bin
