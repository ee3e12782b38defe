"""A plain WSGI app with a module global: GET /state?set=X sets it, and
GET /state returns it ("" when unset)."""

from urllib.parse import parse_qs

STATE = ""


def application(environ, start_response):
    global STATE
    args = parse_qs(environ.get("QUERY_STRING", ""))
    if "set" in args:
        STATE = args["set"][0]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [STATE.encode()]
