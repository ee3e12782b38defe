"""What a view costs in Python alone: calls a WSGI callable in a plain loop,
with no server, and prints the CPU time per call.

    python3 loop.py [--batches 7] [--batch-time 0.2] [NAME ...]

NAME is one of hello, flask, django, mixed (all by default); run it from
bench/apps. Each call builds a minimal environ (wsgiref's testing defaults
and the path the benchmarks request), calls the callable with a
start_response that only keeps the status, iterates the result and closes
it: what a server does, without the HTTP. After a warm-up, the calls run in
batches of a fixed count, each lasting about --batch-time seconds; a batch's
cost is the CPU time of this thread (time.thread_time) divided by its
calls, so that other work on the machine does not count. One line per name:

    NAME CPU_US WALL_US CALLS

with the median over batches of the CPU and of the wall-clock microseconds
per call (wall includes mixed's sleep), and the calls per batch.
"""

import argparse
import importlib
import statistics
import sys
import time
from wsgiref.util import setup_testing_defaults

# name: (module, callable, path)
VIEWS = {
    "hello": ("apps", "hello", "/hello"),
    "flask": ("flaskapp", "app", "/flask"),
    "django": ("djangoapp", "app", "/django"),
    "mixed": ("apps", "mixed", "/mixed"),
}


def call(app, path):
    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)
        return lambda data: None

    result = app(environ, start_response)
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0] if status else ""


def measure(app, path, batches, batch_time):
    status = call(app, path)
    if not status.startswith("200"):
        raise SystemExit(f"{path}: status {status!r}")
    # Warm-up, which also sizes the batches.
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < batch_time:
        call(app, path)
        n += 1
    per_batch = max(n, 1)
    cpu, wall = [], []
    for _ in range(batches):
        t0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(per_batch):
            call(app, path)
        cpu.append((time.thread_time() - t0) / per_batch * 1e6)
        wall.append((time.perf_counter() - w0) / per_batch * 1e6)
    return statistics.median(cpu), statistics.median(wall), per_batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=7)
    ap.add_argument("--batch-time", type=float, default=0.2)
    ap.add_argument("names", nargs="*", default=list(VIEWS))
    args = ap.parse_args()
    sys.path.insert(0, ".")
    for name in args.names:
        if name not in VIEWS:
            ap.error(f"unknown view {name!r}; choose among {', '.join(VIEWS)}")
        module, attr, path = VIEWS[name]
        app = getattr(importlib.import_module(module), attr)
        cpu, wall, n = measure(app, path, args.batches, args.batch_time)
        print(f"{name} {cpu:.2f} {wall:.2f} {n}", flush=True)


if __name__ == "__main__":
    main()
