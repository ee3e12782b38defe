#!/usr/bin/env bash
# Run the whole gowsgi test suite: set-up, go vet, gofmt, then
# `go test -race` against the system Python (linked as a shared library, then
# statically), each extra Python build, and Debian testing's Pythons
# (scripts/test-forky.sh). Prints how long each
# part took.
#
# Usage: scripts/test.sh [go test flags...]   e.g. scripts/test.sh -run TestX -short
#
# GOWSGI_PYTHONS: space-separated list of Python install prefixes to test
# against besides the system one. A prefix without
# lib/pkgconfig/python3-embed.pc is skipped. By default: every pyenv build of
# Python 3.10 or newer (under $PYENV_ROOT, or ~/.pyenv), if there are any.
#
# GOWSGI_FORKY=0 skips the runs against Debian testing's Python 3.13, 3.14
# and 3.15, which need root and a Debian root of about 1 GB made with
# debootstrap (see scripts/test-forky.sh).
set -euo pipefail

cd "$(dirname "$0")/.."

started=$SECONDS
times=()
# took LABEL SINCE: records how long LABEL took since SECONDS was SINCE.
took() {
	local s=$((SECONDS - $2))
	times+=("$(printf '%-44s %4dm%02ds' "$1" $((s / 60)) $((s % 60)))")
	echo "== $1: ${s}s =="
}

if [[ -z "${GOWSGI_PYTHONS+x}" ]]; then
	GOWSGI_PYTHONS=""
	for d in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*; do
		v=${d##*/}
		minor=${v#3.}
		minor=${minor%%.*}
		[[ "$minor" =~ ^[0-9]+$ ]] && ((minor >= 10)) && GOWSGI_PYTHONS+=" $d"
	done
fi
pythons=$GOWSGI_PYTHONS

t0=$SECONDS
scripts/setup.sh --tests
took "set-up" "$t0"

if ! command -v go >/dev/null 2>&1; then
	echo "test: go is not on PATH (see scripts/setup.sh)" >&2
	exit 1
fi

echo "== go vet =="
t0=$SECONDS
go vet ./...
took "go vet" "$t0"

echo "== gofmt =="
t0=$SECONDS
# Tracked and untracked (not ignored) Go files that still exist; testdata is
# skipped as the go tool skips it.
go_files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	while IFS= read -r f; do
		[[ -f "$f" ]] && go_files+=("$f")
	done < <(git ls-files --cached --others --exclude-standard -- '*.go' | grep -v -E '(^|/)testdata/' || true)
else
	while IFS= read -r f; do
		go_files+=("$f")
	done < <(find . -name '*.go' -not -path '*/testdata/*' -not -path './.git/*')
fi
if ((${#go_files[@]} > 0)); then
	unformatted=$(gofmt -l "${go_files[@]}")
	if [[ -n "$unformatted" ]]; then
		echo "test: these files need gofmt -w:" >&2
		mapfile -t bad <<<"$unformatted"
		printf '  %s\n' "${bad[@]}" >&2
		exit 1
	fi
fi
took "gofmt" "$t0"

summary=()
failed=0

# The go build cache does not hash pkg-config output, but it does hash
# CGO_LDFLAGS; the per-prefix rpath below therefore also keeps the builds
# for different Pythons apart in the cache.

sys_ver=$(pkg-config --modversion python3-embed 2>/dev/null | cut -d. -f1,2 || true)
label="Python ${sys_ver:-?} (system)"
echo "== $label =="
t0=$SECONDS
if GOWSGI_TEST_PYTHON="$sys_ver" GOWSGI_TEST_STATIC=0 go test -race -count=1 ./... "$@"; then
	summary+=("$label: ok")
else
	summary+=("$label: FAIL")
	failed=1
fi
took "$label" "$t0"

# The same Python linked in statically (scripts/static-ldflags.sh), the way
# the command is built by make serve and the benchmarks. A build against
# another Python's headers (the first other version among the extra
# Pythons) must refuse to start there.
other=""
read -r -a python_dirs <<<"$pythons"
for dir in ${python_dirs[@]+"${python_dirs[@]}"}; do
	dir=${dir%/}
	[[ -f "$dir/lib/pkgconfig/python3-embed.pc" ]] || continue
	v=$(PKG_CONFIG_PATH="$dir/lib/pkgconfig" pkg-config --modversion python3-embed 2>/dev/null | cut -d. -f1,2 || true)
	if [[ -n "$v" && "$v" != "$sys_ver" ]]; then
		other=$dir
		break
	fi
done
label="Python ${sys_ver:-?} (system), linked statically"
echo "== $label =="
t0=$SECONDS
if ! static=$(scripts/static-ldflags.sh); then
	echo "== $label: no static libpython, skipped =="
	summary+=("$label: skipped (no static libpython)")
elif CGO_LDFLAGS="$static" GOWSGI_TEST_PYTHON="$sys_ver" GOWSGI_TEST_STATIC=1 \
	GOWSGI_TEST_OTHER_PYTHON="$other" go test -race -count=1 ./... "$@"; then
	summary+=("$label: ok")
else
	summary+=("$label: FAIL")
	failed=1
fi
took "$label" "$t0"

read -r -a python_dirs <<<"$pythons"
for dir in ${python_dirs[@]+"${python_dirs[@]}"}; do
	dir=${dir%/}
	libdir=$dir/lib
	if [[ ! -f "$libdir/pkgconfig/python3-embed.pc" ]]; then
		echo "== Python at $dir: not present, skipped =="
		summary+=("Python at $dir: skipped")
		continue
	fi
	ver=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion python3-embed 2>/dev/null | cut -d. -f1,2 || true)
	label="Python ${ver:-?} ($dir)"
	echo "== $label =="
	t0=$SECONDS
	if PKG_CONFIG_PATH="$libdir/pkgconfig" \
		CGO_LDFLAGS="-Wl,-rpath,$libdir" \
		LD_LIBRARY_PATH="$libdir" \
		GOWSGI_TEST_PYTHON="$ver" \
		go test -race -count=1 ./... "$@"; then
		summary+=("$label: ok")
	else
		summary+=("$label: FAIL")
		failed=1
	fi
	took "$label" "$t0"
done

# Debian testing's Pythons, in a root of their own; it prints its own
# times, and decides itself whether it runs (GOWSGI_FORKY).
t0=$SECONDS
if scripts/test-forky.sh "$@"; then
	summary+=("Debian forky's Pythons: ok (or skipped, as said above)")
else
	summary+=("Debian forky's Pythons: FAIL")
	failed=1
fi
took "Debian forky's Pythons, with the root" "$t0"

echo "== Summary =="
printf '%s\n' "${summary[@]}"
echo "== Times =="
printf '%s\n' "${times[@]}"
took "make test, in all" "$started"
exit "$failed"
