"""The first app of the recycling tests: /change changes what an app can
change in its interpreter, /state reports it, and recycle_helper is a module
of its own. recycle_test.go checks that the next handler in the recycled
interpreter sees none of it.

Standard library only; Python 3.10 to 3.13.
"""

import atexit
import builtins
import json
import logging
import os
import sys
import threading
import time
import warnings

import recycle_helper

LOADED = time.monotonic_ns()  # module-level code runs again in a new app
STATE = None


class Thing:
    value = "class default"


def _report(environ):
    root = logging.getLogger()
    return {
        "loaded": LOADED,
        "state": STATE,
        "thing": Thing.value,
        "helper": recycle_helper.VALUE,
        "builtin": hasattr(builtins, "gowsgi_recycle_probe"),
        "argv": sys.argv,
        "path_probe": "/nonexistent/gowsgi-recycle" in sys.path,
        "recursionlimit": sys.getrecursionlimit(),
        "root_handlers": [type(h).__name__ for h in root.handlers],
        "root_level": logging.getLevelName(root.level),
        "warning_filter": any(f[1] is not None and f[1].pattern == "gowsgi recycle probe"
                              for f in warnings.filters),
        "executable": sys.executable,
        "dont_write_bytecode": sys.dont_write_bytecode,
        "env": os.environ.get("GOWSGI_RECYCLE_ENV"),
        "thread_attr": hasattr(threading.main_thread(), "gowsgi_recycle_probe"),
        "modules": sorted(m for m in sys.modules if "recycle" in m),
    }


class _Probe(logging.Handler):
    def emit(self, record):
        pass


def application(environ, start_response):
    global STATE
    path = environ["PATH_INFO"]
    if path == "/change":
        STATE = "changed"
        Thing.value = "changed"
        recycle_helper.VALUE = "changed"
        builtins.gowsgi_recycle_probe = True
        sys.argv.append("--changed")
        sys.path.append("/nonexistent/gowsgi-recycle")
        sys.setrecursionlimit(4321)
        logging.getLogger().addHandler(_Probe())
        logging.getLogger().setLevel(logging.DEBUG)
        warnings.filterwarnings("error", message="gowsgi recycle probe")
        sys.executable = "/nonexistent/python"
        sys.dont_write_bytecode = True
        threading.main_thread().gowsgi_recycle_probe = True
        atexit.register(print, "never printed")
    elif path == "/errors":
        environ["wsgi.errors"].write("a line from %s\n" % environ.get("QUERY_STRING"))
    elif path == "/thread":
        threading.Thread(target=time.sleep, args=(float(environ["QUERY_STRING"]),),
                         name="recycle-sleeper", daemon=True).start()
    elif path == "/break-cleaning":
        import _gowsgi

        def broken():
            raise RuntimeError("the app broke the cleaning")
        _gowsgi.recycle = broken
    body = json.dumps(_report(environ)).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
