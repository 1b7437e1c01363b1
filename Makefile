# flashsale: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/flashsale
PKGS    := ./...
# Integration tests use the Redis at this address (a unique key prefix per run).
export FLASHSALE_TEST_REDIS_ADDR ?= 127.0.0.1:6379

.PHONY: build run test lint fuzz bench bench-cluster clean

build:
	$(GO) build -o $(BIN) ./app

## run: serve on :3004. With no Redis configured (FLASHSALE_REDIS_ADDR and
## FLASHSALE_REDIS_CLUSTER_ADDRS unset) it asks for the embedded in-memory
## Redis, which the binary never picks on its own.
run: build
	@if [ -z "$$FLASHSALE_REDIS_ADDR$$FLASHSALE_REDIS_CLUSTER_ADDRS" ]; then export FLASHSALE_REDIS_ADDR=embedded; fi; \
	exec ./$(BIN)

## test: vet, format check, then every test with the race detector.
## Under CI=true an integration test that cannot reach Redis fails instead of skipping.
test: lint
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@# k6 cannot run here; Node parses the k6 scripts as ES modules, which k6 requires.
	@if command -v node >/dev/null 2>&1; then \
		for f in loadtest/k6/*.js; do \
			node --input-type=module --check < "$$f" || { echo "$$f: not a valid ES module"; exit 1; }; \
		done; \
	else case "$$CI" in 1|t|T|true|TRUE|True) echo "node is required under CI to check loadtest/k6/*.js"; exit 1;; \
		*) echo "warning: node not found, loadtest/k6/*.js not syntax-checked";; esac; fi

## fuzz: run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./httpapi | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./httpapi || exit 1; \
	done

## bench: one run at 64 clients: the limits (redis-benchmark on the reserve
## script, a bare Fiber server), the service, and the MySQL approaches it
## replaces; one table and the targets, in about two minutes. Redis and MySQL
## from FLASHSALE_BENCH_REDIS_ADDR and FLASHSALE_BENCH_MYSQL_DSN (default the
## local ones); flags through BENCHFLAGS, e.g. BENCHFLAGS='-only http-ceiling -json'.
bench: build
	$(GO) build -o bin/flashsale-bench ./loadtest/cmd/flashsale-bench
	./bin/flashsale-bench -flashsale $(BIN) $(BENCHFLAGS)

## bench-cluster: the flash crowd on one item with 1 and 3 stock buckets on a
## local 3-master Redis Cluster, then the reserve script's rate per shard with
## shards pinned to cores (loadtest/cluster/bench.sh; about a minute).
bench-cluster: build
	$(GO) build -o bin/flashsale-bench ./loadtest/cmd/flashsale-bench
	loadtest/cluster/bench.sh

clean:
	rm -rf bin
