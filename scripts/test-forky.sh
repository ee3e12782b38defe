#!/usr/bin/env bash
# Run the gowsgi test suite with the race detector against the Pythons of
# Debian testing ("forky"): 3.13, 3.14 and 3.15, with forky's Flask, Django,
# Falcon, Bottle, Pyramid and httpbin.
#
# Usage: scripts/test-forky.sh [go test flags...]
#
# Their libraries need forky's C library, so they run in a Debian root of
# their own, made with debootstrap (about 1 GB, a few minutes) the first
# time and kept for the next runs in
#   ${GOWSGI_FORKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gowsgi/forky}
# It is made again when the list of packages below changes, or when
# GOWSGI_FORKY_REBUILD=1. Go, the Go module cache and this checkout are
# bind-mounted into it, in a mount namespace of the run's own, so nothing
# stays mounted afterwards.
#
# Environment:
#   GOWSGI_FORKY=0        skip these tests.
#   GOWSGI_FORKY=1        run them, and fail when they cannot run.
#   (unset)               run them in CI (CI set) and as root on Debian;
#                         elsewhere skip them, saying why. As root on Debian
#                         outside CI, a mirror that cannot be reached when
#                         the root must be made is a skip too.
#   GOWSGI_FORKY_PYTHONS  the versions to test (default: 3.13 3.14 3.15).
#   GOWSGI_FORKY_MIRROR   the Debian mirror (default: the one apt uses here).
#   GOWSGI_FORKY_SHORT    versions to test with -short (default: none).
set -euo pipefail

cd "$(dirname "$0")/.."
src=$(pwd)

suite=forky
all_versions=(3.13 3.14 3.15)
read -r -a versions <<<"${GOWSGI_FORKY_PYTHONS:-${all_versions[*]}}"
short=" ${GOWSGI_FORKY_SHORT:-} "

# What the root holds, whichever versions a run tests. Debian's python3-*
# packages are built for the suite's supported versions only (3.14 and
# 3.15 in forky); pure-Python ones import in every Python.
# python3-cffi-backend is named since debootstrap does not resolve the
# virtual packages python3-brotlicffi depends on.
pkgs=(gcc libc6-dev pkg-config ca-certificates python3-cffi-backend
	python3-flask python3-django python3-werkzeug python3-falcon
	python3-bottle python3-pyramid python3-httpbin)
for v in "${all_versions[@]}"; do
	pkgs+=("python$v-dev" "python$v-venv")
done
for v in "${versions[@]}"; do
	[[ " ${all_versions[*]} " == *" $v "* ]] || {
		echo "test-forky: GOWSGI_FORKY_PYTHONS: $v is not one of ${all_versions[*]}" >&2
		exit 1
	}
done

say() { echo "test-forky: $*"; }
die() {
	echo "test-forky: $*" >&2
	exit 1
}

# --- Whether to run ---------------------------------------------------------

mode=${GOWSGI_FORKY:-}
required=0
case "$mode" in
0 | no | off | false)
	say "skipped: GOWSGI_FORKY=$mode"
	exit 0
	;;
1 | yes | on | true) required=1 ;;
"")
	if [[ -n "${CI:-}" ]]; then
		required=1
	elif [[ "$(id -u)" != 0 ]]; then
		say "skipped: making the Debian $suite root needs root (debootstrap, chroot, mounts); GOWSGI_FORKY=0 silences this"
		exit 0
	elif [[ ! -f /etc/debian_version ]]; then
		say "skipped: not a Debian system, so debootstrap is not installed from apt here; GOWSGI_FORKY=1 to insist"
		exit 0
	fi
	;;
*) die "GOWSGI_FORKY must be 0 or 1, not '$mode'" ;;
esac

# cannot says why the tests cannot run: a failure when they are required,
# else a skip.
cannot() {
	if ((required)); then
		die "cannot run: $*"
	fi
	say "skipped: $*"
	exit 0
}

[[ "$(id -u)" == 0 ]] || cannot "making and entering the Debian $suite root needs root"
command -v unshare >/dev/null 2>&1 || cannot "unshare (util-linux) is missing"
command -v chroot >/dev/null 2>&1 || cannot "chroot (coreutils) is missing"
command -v go >/dev/null 2>&1 || die "go is not on PATH (see scripts/setup.sh)"

goroot=$(go env GOROOT)
gomodcache=$(go env GOMODCACHE)
cache=${GOWSGI_FORKY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gowsgi/$suite}
root=$cache/root
stamp=$cache/root.stamp
case "$cache/" in
"$src"/*) die "GOWSGI_FORKY_CACHE ($cache) must be outside the checkout" ;;
esac
mkdir -p "$cache"

# One run at a time per cache: a second waits for the first.
exec 9>"$cache/lock"
if ! flock -n 9; then
	say "another run uses $cache; waiting for it"
	flock 9
fi

# --- The root ---------------------------------------------------------------

# The stamp names what the root was made from; a root whose stamp differs
# (or that has none: a make that did not finish) is made again.
want_stamp=$(printf '%s\n' "suite=$suite" "variant=minbase" "${pkgs[@]}" | sha256sum | cut -d' ' -f1)

mirror_of_host() {
	local f uri
	# deb822 sources: the first URIs line of a Debian archive.
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f "$f" ]] || continue
		uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
		if [[ -n "$uri" ]]; then
			echo "${uri%/}"
			return
		fi
	done
	# One-line sources.
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f "$f" ]] || continue
		uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")
		if [[ -n "$uri" ]]; then
			echo "${uri%/}"
			return
		fi
	done
	echo http://deb.debian.org/debian
}

make_root() {
	local mirror script log
	mirror=${GOWSGI_FORKY_MIRROR:-$(mirror_of_host)}
	if ! command -v debootstrap >/dev/null 2>&1 || ! command -v wget >/dev/null 2>&1; then
		[[ -f /etc/debian_version ]] || cannot "debootstrap is not installed, and this is not Debian, where apt would install it"
		scripts/setup.sh --forky || cannot "scripts/setup.sh --forky could not install debootstrap (no network?)"
	fi
	# Bookworm's debootstrap has no script for forky; sid's makes any
	# current suite.
	script=/usr/share/debootstrap/scripts/sid
	[[ -f "$script" ]] || cannot "$script is missing: this debootstrap is too old for Debian $suite"
	if ! wget -q -O /dev/null --timeout=30 --tries=2 "$mirror/dists/$suite/InRelease"; then
		cannot "$mirror/dists/$suite/InRelease cannot be fetched (no network?); GOWSGI_FORKY_MIRROR sets another mirror"
	fi

	say "making the Debian $suite root in $root from $mirror (about 1 GB; a few minutes)"
	rm -f "$stamp"
	if [[ -e "$root" ]]; then
		rm -rf --one-file-system "$root"
	fi
	# Builds made with the old root's compiler and headers go too.
	rm -rf "$cache/gocache"
	log=$cache/debootstrap.log
	local include
	include=$(
		IFS=,
		echo "${pkgs[*]}"
	)
	if ! debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" "$script" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		[[ -f "$root/debootstrap/debootstrap.log" ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
		die "debootstrap failed; its output is in $log"
	fi
	# debootstrap can end well with packages left unconfigured.
	local audit
	audit=$(chroot "$root" dpkg --audit 2>&1 || true)
	[[ -z "$audit" ]] || die "packages of the new root are not all installed:"$'\n'"$audit"
	for v in "${all_versions[@]}"; do
		[[ -x "$root/usr/bin/python$v" ]] || die "the new root has no python$v"
	done
	echo "$want_stamp" >"$stamp"
	say "root ready: $(du -sh --one-file-system "$root" | cut -f1)"
}

setup_start=$SECONDS
if [[ "${GOWSGI_FORKY_REBUILD:-0}" == 1 || ! -f "$stamp" || "$(cat "$stamp")" != "$want_stamp" ]]; then
	make_root
else
	say "reusing the Debian $suite root in $root"
fi

# Show what is being tested.
echo "test-forky: packages: $(chroot "$root" dpkg-query -W -f='${Package}=${Version} ' "${pkgs[@]}")"

# --- The runs ---------------------------------------------------------------

# The host's module cache serves the root's builds, which run with
# GOPROXY=off: fetch what go.mod needs now.
go mod download
setup_took=$((SECONDS - setup_start))
echo "== root set-up: ${setup_took}s =="

gocache=$cache/gocache
mkdir -p "$gocache" "$root/src" "$root/usr/local/go" "$root/gomodcache" "$root/gocache"

# run_in_root runs a shell command in the root, as root, with Go, the module
# cache, the build cache and this checkout mounted, in a mount namespace of
# its own (the mounts end with it).
run_in_root() {
	local cmd=$1
	shift
	unshare --mount --propagation private -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		ROOT="$root" SRC="$src" GOROOT_HOST="$goroot" MODCACHE="$gomodcache" GOCACHE_HOST="$gocache" \
		bash -euo pipefail -c '
			mount -t proc proc "$ROOT/proc"
			mount --rbind /dev "$ROOT/dev"
			mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
			mount --bind "$GOROOT_HOST" "$ROOT/usr/local/go"
			mount -o remount,bind,ro "$ROOT/usr/local/go"
			mount --bind "$MODCACHE" "$ROOT/gomodcache"
			mount --bind "$GOCACHE_HOST" "$ROOT/gocache"
			mount --bind "$SRC" "$ROOT/src"
			exec chroot "$ROOT" "$@"
		' bash env -i \
		PATH=/usr/local/go/bin:/usr/bin:/bin HOME=/root TMPDIR=/tmp LANG=C.UTF-8 \
		GOCACHE=/gocache GOMODCACHE=/gomodcache GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
		GOPROXY=off CI="${CI:-}" \
		"$@" bash -euo pipefail -c "cd /src && $cmd"
}

summary=("root set-up: ${setup_took}s")
failed=0
for v in "${versions[@]}"; do
	# cgo takes Python from `pkg-config python3-embed`: a directory of the
	# root's own with that name for this version comes first. The go build
	# cache does not hash pkg-config output but does hash CGO_LDFLAGS, so
	# an rpath to this version's LIBPL (where its libpython is linked
	# from) keeps each version's builds apart; without it a 3.14 build
	# could silently link 3.13's.
	pcdir=/usr/local/lib/gowsgi-pkgconfig/$v
	mkdir -p "$root$pcdir"
	pc=$(chroot "$root" pkg-config --variable=pcfiledir "python-$v-embed")/python-$v-embed.pc
	ln -sfn "$pc" "$root$pcdir/python3-embed.pc"
	libpl=$(chroot "$root" "python$v" -c 'import sysconfig; print(sysconfig.get_config_var("LIBPL"))')
	full=$(chroot "$root" "python$v" -c 'import platform; print(platform.python_version())')
	flags=(-race -count=1)
	label="Python $full (Debian $suite)"
	if [[ "$short" == *" $v "* ]]; then
		flags+=(-short)
		label+=", -short"
	fi
	echo "== $label =="
	start=$SECONDS
	if run_in_root "go test ${flags[*]} ./... $(printf '%q ' "$@")" \
		PKG_CONFIG_PATH="$pcdir" CGO_LDFLAGS="-Wl,-rpath,$libpl" GOWSGI_TEST_PYTHON="$full"; then
		result=ok
	else
		result=FAIL
		failed=1
	fi
	took=$((SECONDS - start))
	summary+=("$label: $result (${took}s)")
	echo "== $label: $result in ${took}s =="

	# No free-threaded build can be installed here: check at least that
	# the C compiles against this version's headers with Py_GIL_DISABLED,
	# as a free-threaded build defines it.
	label="Python $full (Debian $suite), compiled with Py_GIL_DISABLED"
	if run_in_root "go build -o /dev/null ." \
		PKG_CONFIG_PATH="$pcdir" CGO_LDFLAGS="-Wl,-rpath,$libpl" CGO_CFLAGS="-O2 -g -Wall -Werror -DPy_GIL_DISABLED=1"; then
		result=ok
	else
		result=FAIL
		failed=1
	fi
	summary+=("$label: $result")
	echo "== $label: $result =="
done

echo "== Summary (Debian $suite) =="
printf '%s\n' "${summary[@]}"
exit "$failed"
