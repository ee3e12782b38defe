"""Hello, World! as a WSGI app: `make serve`, then `curl http://127.0.0.1:8000/`."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"Hello, World!\n"]
