#!/bin/sh
# Prints the CGO_LDFLAGS that link CPython into a Go program statically:
# the libpython archive of the Python that `pkg-config python3-embed` names,
# the libraries its built-in modules need, and the flags that export its
# symbols to the extension modules it loads. Fails, saying why, when that
# Python has no archive.
#
#	CGO_LDFLAGS="$(scripts/static-ldflags.sh)" go build ./cmd/gowsgi
#
# For another Python, export PKG_CONFIG_PATH first, so that this script and
# go build see the same one (a program built against one Python's headers
# and another's library refuses to start).
#
# The trailing --as-needed drops the shared libpython that the package's
# `#cgo pkg-config: python3-embed` line names after these flags: nothing
# is left for it to provide. It applies to every library after it, so a
# library that a program links only for its constructors, with nothing
# referenced, would be dropped too.
set -eu
version=$(pkg-config --modversion python3-embed)
python=$(pkg-config --variable=exec_prefix python3-embed)/bin/python$version
if [ ! -x "$python" ]; then
	echo "static-ldflags: $python, the interpreter of pkg-config's python3-embed, is missing" >&2
	exit 1
fi
exec "$python" -I -c '
import os, sys, sysconfig
v = sysconfig.get_config_var
archive = os.path.join(v("LIBPL") or "", v("LIBRARY") or "")
if not archive.endswith(".a") or not os.path.isfile(archive):
    sys.exit("static-ldflags: %s has no static libpython (looked for %s); "
             "on Debian it comes with libpython%s-dev" % (sys.executable, archive, v("VERSION")))
libs = " ".join(" ".join(v(k) or "" for k in ("MODLIBS", "LIBS", "SYSLIBS")).split())
print("-Wl,--export-dynamic", archive, libs, "-Wl,--as-needed")
'
