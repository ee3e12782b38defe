"""Middleware for the WithMiddleware tests. Each appends its name to the
X-Order request header, so the app sees who ran before it, and to the
X-Response-Order response header, so the client sees in which order the
start_response calls went back out."""


def _make(name):
    def middleware(app):
        def wrapped(environ, start_response):
            seen = environ.get("HTTP_X_ORDER")
            environ["HTTP_X_ORDER"] = f"{seen},{name}" if seen else name

            def sr(status, headers, exc_info=None):
                others = [h for h in headers if h[0] != "X-Response-Order"]
                before = [v for k, v in headers if k == "X-Response-Order"]
                order = f"{before[0]},{name}" if before else name
                return start_response(status, others + [("X-Response-Order", order)], exc_info)
            return app(environ, sr)
        return wrapped
    return middleware


first = _make("first")
second = _make("second")
middleware = _make("default")
not_callable = 42
