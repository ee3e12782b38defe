#!/usr/bin/env bash
# Run the suite while the machine takes the CPU away: each package's test
# binary (built with -race) is stopped with SIGSTOP for STOP_MS, then let go
# on for RUN_MS, over and over, as a virtual machine's host or an overloaded
# machine may do to any process. A test that holds only on a quiet machine
# (a margin of wall time against CPU time, a deadline too short for a
# pause) fails here.
#
# Usage: scripts/test-paused.sh [STOP_MS [RUN_MS [test binary flags...]]]
#   e.g. scripts/test-paused.sh 120 1000 -test.shuffle=on
#
# The Python is the one `pkg-config python3-embed` finds, as with go test.
set -euo pipefail

cd "$(dirname "$0")/.."

stop_ms=${1:-120}
run_ms=${2:-1000}
shift $(($# < 2 ? $# : 2))

secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

bindir=$(mktemp -d)
pid=
cleanup() {
	# Never leave a test binary stopped behind.
	if [[ -n "$pid" ]]; then
		kill -CONT "$pid" 2>/dev/null || true
	fi
	rm -rf "$bindir"
}
trap cleanup EXIT

failed=0
for pkg in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}|{{.Dir}}{{end}}' ./...); do
	path=${pkg%%|*}
	dir=${pkg#*|}
	bin=$bindir/$(basename "$path").test
	go test -race -c -o "$bin" "$path"
	echo "== $path, stopped ${stop_ms} ms in every $((stop_ms + run_ms)) =="
	# The test binary runs in its package's directory, as under go test.
	(cd "$dir" && exec "$bin" -test.timeout 30m "$@") &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep "$(secs "$run_ms")"
		kill -STOP "$pid" 2>/dev/null || break
		sleep "$(secs "$stop_ms")"
		kill -CONT "$pid" 2>/dev/null || break
	done
	if wait "$pid"; then
		echo "== $path: ok =="
	else
		echo "== $path: FAIL =="
		failed=1
	fi
done
exit "$failed"
