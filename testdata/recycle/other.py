"""Another app for the recycling tests: reports the modules loaded in its
interpreter."""

import json
import sys


def application(environ, start_response):
    body = json.dumps(sorted(sys.modules)).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
