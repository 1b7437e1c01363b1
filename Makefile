# flashsale: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin/flashsale
PKGS    := ./...
# Integration tests use the Redis at this address (a unique key prefix per run).
export FLASHSALE_TEST_REDIS_ADDR ?= 127.0.0.1:6379

.PHONY: build run test lint fuzz clean

build:
	$(GO) build -o $(BIN) ./app

## run: serve on :3004; without FLASHSALE_REDIS_ADDR it uses an embedded Redis.
run: build
	./$(BIN)

## test: vet, format check, then every test with the race detector.
## Under CI=true an integration test that cannot reach Redis fails instead of skipping.
test: lint
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## fuzz: run each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for t in $$($(GO) test -list 'Fuzz.*' ./httpapi | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./httpapi || exit 1; \
	done

clean:
	rm -rf bin
