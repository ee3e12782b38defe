"""A plain WSGI app: GET /?name=gopher says hello to gopher."""

from urllib.parse import parse_qs


def application(environ, start_response):
    name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["world"])[0]
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"Hello, {name}!".encode()]
