#!/usr/bin/env bash
# make bench-cluster: the flash crowd on one hot item, with its stock in 1
# bucket and in 3, against a local 3-master Redis Cluster, through one
# flashsale instance and MySQL; then the per-shard model: the reserve
# script's rate on one Redis pinned to one core, and on two Redis processes
# pinned to two cores at once (taskset). Everything it starts lives in a temp
# dir and is stopped on exit; the shared Redis and MySQL are not touched
# (MySQL gets a database of its own, dropped at the end).
#
# Env: FLASHSALE (binary, default bin/flashsale), BENCH (default
# bin/flashsale-bench), MYSQL_DSN (server DSN without a database, default
# root@tcp(127.0.0.1:3306)/), PORT_BASE (default 7100), CLIENTS (default 64),
# SUCCESS_FOR (default 10s).
set -euo pipefail
cd "$(dirname "$0")/../.."

FLASHSALE=${FLASHSALE:-bin/flashsale}
BENCH=${BENCH:-bin/flashsale-bench}
MYSQL_DSN=${MYSQL_DSN:-root@tcp(127.0.0.1:3306)/}
PORT_BASE=${PORT_BASE:-7100}
CLIENTS=${CLIENTS:-64}
SUCCESS_FOR=${SUCCESS_FOR:-10s}
HTTP_PORT=$((PORT_BASE + 80))
DB=flashsale_clusterbench_$$
TOKEN=cluster-bench-token-0123456789
CPUS=$(nproc)

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	mariadb -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

# redis <port> <cpu or ""> [extra args...]: a redis-server of the bench's own.
redis() {
	local port=$1 cpu=$2; shift 2
	mkdir -p "$dir/$port"
	local pin=()
	[ -n "$cpu" ] && pin=(taskset -c "$cpu")
	"${pin[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --save "" \
		--appendonly no --logfile "$dir/$port/log" --daemonize no "$@" &
	pids+=($!)
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
	echo "redis on $port did not start" >&2; exit 1
}

echo "== Redis Cluster: 3 masters on ports $((PORT_BASE+1))-$((PORT_BASE+3)), $CPUS cores"
seeds=()
for i in 1 2 3; do
	redis $((PORT_BASE + i)) "" --cluster-enabled yes --cluster-config-file "$dir/nodes-$i.conf" --cluster-node-timeout 2000
	seeds+=("127.0.0.1:$((PORT_BASE + i))")
done
redis-cli --cluster create "${seeds[@]}" --cluster-yes >/dev/null
for _ in $(seq 100); do
	redis-cli -p $((PORT_BASE + 1)) cluster info | grep -q cluster_state:ok && break
	sleep 0.1
done

mariadb -h 127.0.0.1 -uroot -e "CREATE DATABASE $DB"
FLASHSALE_HTTP_ADDR=127.0.0.1:$HTTP_PORT \
	FLASHSALE_REDIS_CLUSTER_ADDRS=$(IFS=,; echo "${seeds[*]}") \
	FLASHSALE_MYSQL_DSN="${MYSQL_DSN}${DB}" \
	FLASHSALE_ADMIN_TOKEN=$TOKEN FLASHSALE_LOG_LEVEL=warn \
	"$FLASHSALE" >"$dir/flashsale.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done

load() { # load <scenario> <buckets> [flags...]
	local sc=$1 b=$2; shift 2
	echo "-- $sc, buckets=$b"
	"$FLASHSALE" loadtest -url "http://127.0.0.1:$HTTP_PORT" -admin-token "$TOKEN" \
		-scenario "$sc" -buckets "$b" -clients "$CLIENTS" "$@" 2>/dev/null || echo "(the run reported a failure)"
}
for b in 1 3; do
	load flashcrowd "$b"
	load success "$b" -duration "$SUCCESS_FOR"
done

echo "== per-shard model: the reserve script under redis-benchmark (EVALSHA, $CLIENTS clients)"
one=$((PORT_BASE + 11)); two=$((PORT_BASE + 12))
redis "$one" 0
echo "-- one Redis pinned to cpu 0, the load generator on cpu 1"
FLASHSALE_BENCH_REDIS_ADDR=127.0.0.1:$one taskset -c 1 "$BENCH" -flashsale "$FLASHSALE" \
	-only redis-evalsha-success -clients "$CLIENTS" 2>/dev/null | grep -E 'redis-evalsha' || true
if [ "$CPUS" -ge 2 ]; then
	redis "$two" 1
	echo "-- two Redis pinned to cpus 0 and 1, one load generator each, at once"
	benches=()
	for port in "$one" "$two"; do
		FLASHSALE_BENCH_REDIS_ADDR=127.0.0.1:$port "$BENCH" -flashsale "$FLASHSALE" \
			-only redis-evalsha-success -clients "$CLIENTS" 2>/dev/null | grep -E 'redis-evalsha' &
		benches+=($!)
	done
	wait "${benches[@]}" || true
fi
