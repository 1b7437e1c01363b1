#!/usr/bin/env bash
# make contract: the API contract checked by tools that share no code with
# the service, pinned in package-lock.json:
#   1. Redocly's linter (recommended rules): no errors;
#   2. api/postman.json is what Portman makes of the spec now;
#   3. Newman runs it against a live `flashsale serve` (embedded Redis):
#      every response as the spec says, the variations' documented 4xx;
#   4. Prism proxies the service while `flashsale loadtest` runs a mixed
#      scenario through it: no request or response breaking the spec.
# `run.sh postman` only regenerates api/postman.json (make postman).
set -euo pipefail
cd "$(dirname "$0")/../.."

tools_dir=bin/contract
if [ ! -x "$tools_dir/node_modules/.bin/newman" ] || ! cmp -s api/contract/package-lock.json "$tools_dir/package-lock.json"; then
	echo "contract: installing the pinned tools (npm ci)"
	rm -rf "$tools_dir" && mkdir -p "$tools_dir"
	cp api/contract/package.json api/contract/package-lock.json "$tools_dir/"
	(cd "$tools_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
bin="$tools_dir/node_modules/.bin"
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

portman() {
	"$bin/portman" -l api/openapi.yaml -c api/contract/portman-config.json --filterFile api/contract/filter.json \
		-b '{{baseUrl}}' -o "$1" >"$work/portman.log" 2>&1 || { cat "$work/portman.log"; return 1; }
}
# Portman mints fresh ids on every run; the rest must match.
normalize() { jq -S 'walk(if type == "object" then del(.id, ._postman_id, .postman_id) else . end)' "$1"; }

if [ "${1:-}" = postman ]; then
	portman api/postman.json
	echo "contract: api/postman.json regenerated"
	exit 0
fi

echo "contract: 1/4 redocly lint"
"$bin/redocly" lint api/openapi.yaml --format=summary

echo "contract: 2/4 api/postman.json up to date"
portman "$work/postman.json"
if ! diff <(normalize api/postman.json) <(normalize "$work/postman.json") >"$work/postman.diff"; then
	head -40 "$work/postman.diff"
	echo "contract: api/postman.json is stale: run make postman and commit it" >&2
	exit 1
fi

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	return 1
}
wait_http() { # wait_http <url> <what>
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "contract: $2 did not come up" >&2
	return 1
}

svc=$(free_port)
admin=contract-admin-$RANDOM$RANDOM$RANDOM
service=contract-service-$RANDOM$RANDOM$RANDOM
FLASHSALE_HTTP_ADDR=127.0.0.1:$svc FLASHSALE_REDIS_ADDR=embedded FLASHSALE_ADMIN_TOKEN=$admin \
	FLASHSALE_SERVICE_TOKENS=$service FLASHSALE_SQLITE_PATH="$work/record.db" FLASHSALE_LOG_LEVEL=warn \
	bin/flashsale serve >"$work/serve.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$svc/readyz" "flashsale serve" || { cat "$work/serve.log"; exit 1; }

echo "contract: 3/4 newman run api/postman.json"
"$bin/newman" run api/postman.json --env-var "baseUrl=http://127.0.0.1:$svc" --env-var "adminToken=$admin" \
	--env-var "serviceToken=$service" --reporters cli --reporter-cli-no-banner --reporter-cli-no-assertions \
	--reporter-cli-no-console

echo "contract: 4/4 prism proxy under flashsale loadtest"
proxy=$(free_port)
"$bin/prism" proxy api/openapi.yaml "http://127.0.0.1:$svc" --errors -h 127.0.0.1 -p "$proxy" >"$work/prism.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$proxy/healthz" "prism proxy" || { cat "$work/prism.log"; exit 1; }
status=0
# Holds confirmed and cancelled, then a crowd mostly refused (409 sold_out,
# limit_exceeded), all through the proxy.
bin/flashsale loadtest -url "http://127.0.0.1:$proxy" -admin-token "$admin" -service-token "$service" \
	-scenario mixed -requests 600 -clients 8 -timeout 10s || status=$?
bin/flashsale loadtest -url "http://127.0.0.1:$proxy" -admin-token "$admin" -service-token "$service" \
	-scenario flashcrowd -stock 50 -requests 400 -users 200 -clients 8 -timeout 10s || status=$?
seen=$(grep -c '\[HTTP SERVER\]' "$work/prism.log" || true)
violations=$(grep -ci 'violation' "$work/prism.log" || true)
echo "contract: prism saw $seen requests, $violations breaking the spec"
if [ "$status" -ne 0 ] || [ "$violations" -ne 0 ] || [ "$seen" -lt 1000 ]; then
	grep -i -B2 -A8 'violation' "$work/prism.log" | head -60
	echo "contract: prism found requests or responses that break the spec (loadtest exit $status)" >&2
	exit 1
fi
echo "contract: OK"
