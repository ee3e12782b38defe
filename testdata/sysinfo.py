"""Reports the interpreter's process-wide settings, for the WithPython* tests."""

import json
import sys


def application(environ, start_response):
    asserts_run = False
    try:
        assert False
    except AssertionError:
        asserts_run = True
    try:
        import gowsgi_venv_probe
        probe = gowsgi_venv_probe.WHERE
    except ImportError:
        probe = None
    body = json.dumps({
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "optimize": sys.flags.optimize,
        "asserts_run": asserts_run,
        "docstring": documented.__doc__,
        "version": "%d.%d" % sys.version_info[:2],
        "probe": probe,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def documented():
    """kept"""
