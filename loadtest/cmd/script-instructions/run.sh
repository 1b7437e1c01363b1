#!/bin/sh
# Redis instructions per hold of the checked-out scripts, counted by
# callgrind: run from the repository's root, with valgrind and redis-server
# installed. Usage: loadtest/cmd/script-instructions/run.sh [per] [sync]
#   per   requests merged into one reserve call (default 8)
#   sync  true to count the syncer's reads and acknowledgements too
set -eu
per=${1:-8}
sync=${2:-false}
port=6391
bin=$(mktemp -d)/script-instructions
go build -o "$bin" ./loadtest/cmd/script-instructions

count() { # calls -> instructions of a redis-server that served them
	dir=$(mktemp -d)
	valgrind --tool=callgrind --callgrind-out-file="$dir/out" \
		redis-server --port $port --save "" --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
	i=0
	until redis-cli -p $port ping >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 150 ] || { echo "redis-server did not start" >&2; exit 1; }
		sleep 0.2
	done
	"$bin" -addr 127.0.0.1:$port -calls "$1" -per "$per" -sync="$sync" >/dev/null
	redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
	wait
	awk '/^(summary|totals):/ {print $2; exit}' "$dir/out"
	rm -rf "$dir"
}

a=$(count 1000)
b=$(count 2000)
echo "instructions per hold ($per per call, sync $sync): $(( (b - a) / (1000 * per) ))"
