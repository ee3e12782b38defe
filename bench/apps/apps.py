"""WSGI apps for the benchmarks in bench/compare and bench/isolated.

Each callable is one workload, so every server (gowsgi, uWSGI, gunicorn,
waitress) loads the same code the same way, e.g. `gunicorn apps:hello` with
bench/apps as the working directory. The paths of the requests are ignored.

- hello:  13 bytes, "Hello, World!"
- big:    a 1 MiB body, one bytes object in a list
- echo:   the request body (read by CONTENT_LENGTH), sent back
- stream: a generator of 100 chunks of 1 KiB
- cpu:    about 2 ms of pure-Python work (a loop summing squares), then a
          short body; used by bench/isolated to see whether interpreters
          with their own GIL run in parallel
"""

HELLO = b"Hello, World!"
BIG = b"x" * (1 << 20)
CHUNK = b"s" * 1024
CHUNKS = 100
# Iterations of the loop in cpu(): about 2 ms on the pyenv builds of Python
# 3.12 and 3.13 of the benchmark machine (1.2 ms on Debian's 3.11).
CPU_LOOPS = 44_000


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


def cpu(environ, start_response):
    s = 0
    for i in range(CPU_LOOPS):
        s += i * i
    body = b"%d\n" % s
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
