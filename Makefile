# gowsgi developer targets. See scripts/setup.sh and scripts/test.sh.

# scripts/setup.sh accepts a Go at /usr/local/go/bin that is not on PATH;
# make it reachable for the recipes below.
export PATH := $(PATH):/usr/local/go/bin

BIND ?= 127.0.0.1:8000
APP ?= examples/hello.py
# Extra go test flags for `make test`, e.g. ARGS="-run TestX -short".
ARGS ?=

# The command links CPython in statically when libpython's archive is there
# (scripts/static-ldflags.sh): Python code costs less CPU than from the
# shared libpython. Without the archive it says so and links the shared one.
STATIC = $$(scripts/static-ldflags.sh || echo >&2 "make: linking the shared libpython instead")

.PHONY: setup build test serve vet soak bench bench-isolated bench-slow

setup:
	scripts/setup.sh

test:
	scripts/test.sh $(ARGS)

# ./gowsgi, the command.
build:
	scripts/setup.sh
	CGO_LDFLAGS="$$CGO_LDFLAGS $(STATIC)" go build -o gowsgi ./cmd/gowsgi

serve:
	scripts/setup.sh
	CGO_LDFLAGS="$$CGO_LDFLAGS $(STATIC)" go run ./cmd/gowsgi --bind $(BIND) $(APP)

vet:
	scripts/setup.sh
	go vet ./...

# A million mixed requests against the command; prints RSS, goroutines,
# file descriptors and threads after the warm-up and at the end.
soak:
	scripts/setup.sh
	go run ./bench/soak

# gowsgi (one process, and --processes 2) against a bare Go handler, uWSGI,
# gunicorn and waitress on loopback, with the views' cost in a plain Python
# loop and the targets set against it (installs what is missing); writes
# bench/RESULTS.md.
bench:
	scripts/setup.sh
	go run ./bench/compare

# One own-GIL interpreter against two, on a Python 3.12+ build; writes
# bench/ISOLATED.md.
bench-isolated:
	scripts/setup.sh
	go run ./bench/isolated

# Slow clients: hello beside 100 slow downloads, and 1,000 slow readers of a
# 1 MiB body and of a generator, for gowsgi, uWSGI and gunicorn (installs
# what is missing); writes bench/SLOWCLIENTS.md.
bench-slow:
	scripts/setup.sh
	go run ./bench/slowclients
