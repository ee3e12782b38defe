"""Calls a view of bench/apps/loop.py N times, for instruction counts:

    calls.py VIEW N

run from bench/apps. Two runs with different N, counted by valgrind, give
the instructions of one call by their difference, without start-up."""

import sys

sys.path.insert(0, ".")

import importlib  # noqa: E402

from loop import VIEWS, call  # noqa: E402

module, name, path = VIEWS[sys.argv[1]]
app = getattr(importlib.import_module(module), name)
for _ in range(int(sys.argv[2])):
    call(app, path)
