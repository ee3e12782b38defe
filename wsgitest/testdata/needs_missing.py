"""An app that needs a module no Python here has."""

import wsgitest_no_such_module  # noqa: F401


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unreachable"]
