"""WSGI apps for the benchmarks in bench/compare, bench/isolated and
bench/slowclients.

Each callable is one workload, so every server (gowsgi, uWSGI, gunicorn,
waitress) loads the same code the same way, e.g. `gunicorn apps:hello` with
bench/apps as the working directory. The paths of the requests are ignored,
except by router.

- hello:    13 bytes, "Hello, World!"
- big:      a 1 MiB body, one bytes object in a list
- echo:     the request body (read by CONTENT_LENGTH), sent back
- stream:   a generator of 100 chunks of 1 KiB
- stream64: a generator of 100 chunks of 64 KiB
- io:       sleeps 2 ms (a stand-in for a database or another service),
            then answers as hello does
- mixed:    sleeps 1 ms, then about 0.2 ms of pure-Python work, then
            answers as hello does
- cpu:      about 2 ms of pure-Python work (a loop summing squares), then a
            short body; used by bench/isolated to see whether interpreters
            with their own GIL run in parallel
- router:   hello, big or stream64 by PATH_INFO (/hello, /big, /stream64),
            so that one server serves the three; used by bench/slowclients
"""

import time

HELLO = b"Hello, World!"
BIG = b"x" * (1 << 20)
CHUNK = b"s" * 1024
CHUNKS = 100
# Iterations of the loop in cpu(): about 2 ms on the pyenv builds of Python
# 3.12 and 3.13 of the benchmark machine (1.2 ms on Debian's 3.11).
CPU_LOOPS = 44_000
CHUNK64 = b"s" * (64 << 10)
# Iterations of the loop in mixed(): about 0.2 ms on Debian's 3.11 of the
# benchmark machine (bench/apps/loop.py prints what it costs).
MIXED_LOOPS = 7_300


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))])
    return [BIG]


def echo(environ, start_response):
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    body = environ["wsgi.input"].read(n) if n > 0 else b""
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    # No Content-Length: the server decides the framing (chunked on HTTP/1.1).
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _chunks()


def _chunks():
    for _ in range(CHUNKS):
        yield CHUNK


def stream64(environ, start_response):
    # No Content-Length, as stream.
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _chunks64()


def _chunks64():
    for _ in range(CHUNKS):
        yield CHUNK64


def io(environ, start_response):
    time.sleep(0.002)
    return hello(environ, start_response)


def mixed(environ, start_response):
    time.sleep(0.001)
    s = 0
    for i in range(MIXED_LOOPS):
        s += i * i
    return hello(environ, start_response)


def cpu(environ, start_response):
    s = 0
    for i in range(CPU_LOOPS):
        s += i * i
    body = b"%d\n" % s
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


_ROUTES = {"/hello": hello, "/big": big, "/stream64": stream64}


def router(environ, start_response):
    view = _ROUTES.get(environ.get("PATH_INFO", ""))
    if view is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    return view(environ, start_response)
