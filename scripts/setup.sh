#!/usr/bin/env bash
# Make a machine ready to build (and with --tests, to test) gowsgi.
#
# Usage: scripts/setup.sh [--tests] [--forky]
#
# On Debian/Ubuntu it installs the missing Debian packages (as root) or
# prints the apt-get command to run (otherwise). It also checks for Go 1.26+.
# It prints nothing when nothing is missing.
#
# --forky installs debootstrap, for the runs of the suite against Debian
# testing's ("forky") Python 3.13, 3.14 and 3.15 that `make test` makes as
# root (scripts/test-forky.sh). Those runs make a Debian root of about 1 GB
# with debootstrap, in ${XDG_CACHE_HOME:-~/.cache}/gowsgi/forky, and keep
# it for the next run; GOWSGI_FORKY=0 skips them.
set -euo pipefail

min_go_major=1
min_go_minor=26
min_py_major=3
min_py_minor=10

usage() {
	echo "usage: $0 [--tests] [--forky]" >&2
	exit 2
}

tests=0
forky=0
for arg in "$@"; do
	case "$arg" in
	--tests) tests=1 ;;
	--forky) forky=1 ;;
	-h | --help) usage ;;
	*)
		echo "setup: unknown argument: $arg" >&2
		usage
		;;
	esac
done

build_pkgs=(python3-dev pkg-config gcc libc6-dev)
test_pkgs=(python3-flask python3-django python3-falcon python3-bottle
	python3-pyramid python3-httpbin python3-werkzeug python3-venv)

# debootstrap brings wget, with which the Debian root's mirror is checked.
forky_pkgs=(debootstrap wget)

pkgs=("${build_pkgs[@]}")
if ((tests)); then
	pkgs+=("${test_pkgs[@]}")
fi
if ((forky)); then
	pkgs+=("${forky_pkgs[@]}")
fi

failed=0

# --- Go ---------------------------------------------------------------------

go_bin=""
if command -v go >/dev/null 2>&1; then
	go_bin=$(command -v go)
elif [[ -x /usr/local/go/bin/go ]]; then
	go_bin=/usr/local/go/bin/go
	echo "setup: go is at /usr/local/go/bin/go but not on PATH; run: export PATH=\"\$PATH:/usr/local/go/bin\""
fi

go_help() {
	echo "setup: install Go ${min_go_major}.${min_go_minor} or newer: download the linux tarball from https://go.dev/dl/," >&2
	echo "setup:   unpack it with 'tar -C /usr/local -xzf go1.*.linux-*.tar.gz' and add /usr/local/go/bin to PATH" >&2
}

if [[ -z "$go_bin" ]]; then
	echo "setup: go not found (neither on PATH nor at /usr/local/go/bin/go)" >&2
	go_help
	failed=1
else
	# GOTOOLCHAIN=local: report the installed toolchain; never try to
	# download the one go.mod asks for.
	go_ver=$(GOTOOLCHAIN=local "$go_bin" version 2>/dev/null | awk '{print $3}' || true)
	if [[ "$go_ver" =~ ^go([0-9]+)\.([0-9]+) ]]; then
		major=${BASH_REMATCH[1]}
		minor=${BASH_REMATCH[2]}
		if ((major < min_go_major || (major == min_go_major && minor < min_go_minor))); then
			echo "setup: $go_bin is $go_ver; gowsgi needs go${min_go_major}.${min_go_minor} or newer" >&2
			go_help
			failed=1
		fi
	elif [[ "$go_ver" != devel* ]]; then
		echo "setup: cannot tell the version of $go_bin (got '${go_ver}')" >&2
		go_help
		failed=1
	fi
fi

# --- Python, pkg-config, C compiler -----------------------------------------

check_python_embed() {
	if ! pkg-config --exists python3-embed 2>/dev/null; then
		echo "setup: pkg-config cannot find python3-embed (the Python 3 development files)" >&2
		return 1
	fi
	local v
	v=$(pkg-config --modversion python3-embed)
	if [[ "$v" =~ ^([0-9]+)\.([0-9]+) ]]; then
		local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
		if ((major < min_py_major || (major == min_py_major && minor < min_py_minor))); then
			echo "setup: python3-embed is Python $v; gowsgi needs Python ${min_py_major}.${min_py_minor} or newer" >&2
			return 1
		fi
	fi
	return 0
}

if [[ ! -f /etc/debian_version ]]; then
	echo "setup: not Debian/Ubuntu, so no packages are checked. gowsgi needs:"
	echo "setup:   - Python ${min_py_major}.${min_py_minor}+ with its development headers and the python3-embed pkg-config file"
	echo "setup:   - pkg-config"
	echo "setup:   - a C compiler (gcc or clang) and the C library headers"
	if ((tests)); then
		echo "setup:   - for the tests, in that Python: flask, django, falcon, bottle, pyramid, httpbin, werkzeug, and venv"
	fi
	if ((forky)); then
		echo "setup:   - for the runs against Debian testing's Pythons: debootstrap (or GOWSGI_FORKY=0 to skip them)"
	fi
	if ! command -v pkg-config >/dev/null 2>&1; then
		echo "setup: pkg-config not found" >&2
		exit 1
	fi
	check_python_embed || exit 1
	exit "$failed"
fi

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} > 0)); then
	if [[ "$(id -u)" != 0 ]]; then
		echo "setup: missing Debian packages: ${missing[*]}" >&2
		echo "setup: run: sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
	echo "setup: apt-get update"
	apt-get update -qq >/dev/null
	echo "setup: apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

check_python_embed || exit 1

exit "$failed"
