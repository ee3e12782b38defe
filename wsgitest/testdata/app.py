"""The app wsgitest's own tests run: each path does one thing right or
wrong, so that a test can see what the harness makes of it."""

import logging
import os
import sys
import threading
import time
import traceback
from urllib.parse import parse_qs

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))

    # Right.
    if path == "/":
        start_response("200 OK", TEXT)
        return [b"ok"]
    if path == "/echo":
        stream, length = environ["wsgi.input"], environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(int(length))
        else:  # chunked: read to the end, with a size as PEP 3333 asks
            body = b"".join(iter(lambda: stream.read(8192), b""))
        kind = environ.get("CONTENT_TYPE", "")
        start_response("200 OK", TEXT)
        return [f"{environ['REQUEST_METHOD']} {kind} ".encode() + body]
    if path == "/environ":
        keys = ["wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME", "REQUEST_URI", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"]
        start_response("200 OK", TEXT)
        return ["\n".join(f"{k}={environ.get(k, '')}" for k in keys).encode()]
    if path == "/stream":
        start_response("200 OK", TEXT)
        return (f"chunk {i}\n".encode() for i in range(int(query.get("n", ["3"])[0])))
    if path == "/sys.path":
        start_response("200 OK", TEXT)
        return ["\n".join(sys.path).encode()]
    if path == "/cookie/set":
        headers = TEXT + [("Set-Cookie", f"{k}={v[0]}; Path=/") for k, v in sorted(query.items())]
        start_response("200 OK", headers)
        return [b"set"]
    if path == "/cookie/show":
        start_response("200 OK", TEXT)
        return [environ.get("HTTP_COOKIE", "").encode()]

    # Errors of the app.
    if path == "/log":
        environ["wsgi.errors"].write("something odd happened\nand a second line\n")
        start_response("200 OK", TEXT)
        return [b"logged"]
    if path == "/log-later":
        # A thread that writes once the request is over: once the test,
        # which has the response, creates the file at ?gate=.
        errors = environ["wsgi.errors"]
        threading.Thread(target=_log_later, args=(errors, query["gate"][0])).start()
        start_response("200 OK", TEXT)
        return [b"later"]
    if path == "/spin":
        # Busy in Python until a request timeout interrupts it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass
        start_response("200 OK", TEXT)
        return [b"not interrupted"]
    if path == "/boom":
        # The app's own words: CPython's for 1 // 0 changed in 3.14.
        raise ZeroDivisionError("the app divided 1 by 0")
    if path == "/assert":
        assert query.get("ok"), "the app's own assertion"
    if path == "/logging":
        logging.getLogger("x").error("boom")
        start_response("200 OK", TEXT)
        return [b"logged"]
    if path == "/logging/exception":
        try:
            raise ZeroDivisionError("the app divided 1 by 0")
        except ZeroDivisionError:
            logging.getLogger("testdata.app").exception("while dividing")
        start_response("500 Internal Server Error", TEXT)
        return [b"caught"]
    if path == "/logging/warning":
        logging.getLogger("x").warning("only a warning")
        start_response("200 OK", TEXT)
        return [b"warned"]
    if path == "/logging/own-handler":
        # A handler of the app's own that writes to wsgi.errors: the record
        # must not come twice.
        log = logging.getLogger("testdata.own")
        handler = logging.StreamHandler(environ["wsgi.errors"])
        log.addHandler(handler)
        try:
            log.error("once")
        finally:
            log.removeHandler(handler)
        start_response("200 OK", TEXT)
        return [b"logged"]
    if path == "/logging/configure":
        # As an app's logging configuration may: the root logger's
        # handlers replaced.
        logging.getLogger().handlers.clear()
        start_response("200 OK", TEXT)
        return [b"configured"]
    if path == "/logging/stream":
        start_response("200 OK", TEXT)
        return _log_while_streaming()
    if path == "/abort":
        start_response("200 OK", TEXT)
        return _then_fail()
    if path == "/short":
        start_response("200 OK", TEXT + [("Content-Length", "100")])
        return [b"only this"]

    # Breaches of PEP 3333 that the handler lets through; wsgiref.validate
    # finds them.
    if path == "/no-content-type":
        start_response("200 OK", [])
        return [b"what am I?"]
    if path == "/header-name-dash":
        start_response("200 OK", TEXT + [("X-Trailing-", "1")])
        return [b"x"]
    if path == "/close-input":
        environ["wsgi.input"].close()
    if path == "/close-input-caught":
        # As a framework does: catch the exception, log it, answer 500.
        try:
            environ["wsgi.input"].close()
        except Exception:
            traceback.print_exc(file=environ["wsgi.errors"])
            start_response("500 Internal Server Error", TEXT)
            return [b"caught"]
    if path == "/close-input-logged":
        # As Django does: catch it and log it through logging.
        try:
            environ["wsgi.input"].close()
        except Exception:
            logging.getLogger("testdata.app").exception("Internal Server Error: %s", path)
            start_response("500 Internal Server Error", TEXT)
            return [b"caught"]

    # Not a breach: PEP 3333 gives read() a size, but the handler sets
    # wsgi.input_terminated, which allows reading to the end without one.
    if path == "/read-all":
        stream = environ["wsgi.input"]
        size = query.get("size", [""])[0]
        if size == "":
            body = stream.read()
        elif size == "none":
            body = stream.read(None)
        else:
            body = stream.read(int(size))
        start_response("200 OK", TEXT)
        return [body]

    # Breaches that the handler refuses as well.
    if path == "/status-int":
        start_response(200, TEXT)
        return [b"x"]
    if path == "/header-value-int":
        start_response("200 OK", TEXT + [("X-Count", 5)])
        return [b"x"]
    if path == "/body-str":
        start_response("200 OK", TEXT)
        return ["a str, not bytes"]
    if path == "/return-str":
        start_response("200 OK", TEXT)
        return "a str, not a list of bytes"

    start_response("404 Not Found", TEXT)
    return [b"not found"]


def _then_fail():
    yield b"partial"
    raise RuntimeError("the generator failed after the headers were sent")


def _log_while_streaming():
    yield b"first\n"
    logging.getLogger("x").error("while streaming")
    yield b"second\n"


def _log_later(errors, gate):
    deadline = time.monotonic() + 10
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    errors.write("written after the response\n")
