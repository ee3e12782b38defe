"""Exercise testdata/app.py in-process, without the Go gateway.

Runs every route through a tiny strict gateway written here, against both
``app.validated`` (wsgiref.validate) and the bare ``app.application``, to show
the app itself is correct.  Usage: python3 testdata/check_app.py
Exits non-zero (with a traceback) on the first failure.
"""

import gc
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import threading
import urllib.parse
import warnings
import wsgiref.util
import wsgiref.validate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import app  # noqa: E402

warnings.simplefilter("error", wsgiref.validate.WSGIWarning)

STATUS_RE = re.compile(r"[1-9][0-9]{2} [^\x00-\x1f\x7f]*\Z")
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate",
              "proxy-authorization", "te", "trailers", "transfer-encoding",
              "upgrade"}


class Response:
    def __init__(self, status, headers, body, errors):
        self.status = status
        self.headers = headers
        self.body = body
        self.errors = errors

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class Partial(Exception):
    """The app failed after output started; .sent holds what went out."""

    def __init__(self, cause, sent):
        super().__init__(repr(cause))
        self.cause = cause
        self.sent = sent


def check_start_args(status, headers):
    if not isinstance(status, str) or not STATUS_RE.match(status):
        raise ValueError("bad status %r" % (status,))
    if type(headers) is not list:
        raise TypeError("headers must be a list")
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError("bad header item %r" % (item,))
        name, value = item
        if not isinstance(name, str) or not TOKEN_RE.match(name):
            raise ValueError("bad header name %r" % (name,))
        if not isinstance(value, str) or BAD_VALUE_RE.search(value):
            raise ValueError("bad header value %r" % (value,))
        value.encode("latin-1")
        if name.lower() in HOP_BY_HOP:
            raise ValueError("hop-by-hop header %r" % (name,))


def call(wsgi_app, path, query="", method="GET", body=b"", length=True,
         environ_extra=None):
    """Run one request; return a Response, or raise.

    Raises the app's exception when it fails before any body byte went
    out, and Partial when it fails after."""
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": not length,
        "wsgi.file_wrapper": wsgiref.util.FileWrapper,
    }
    if length and body:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(environ_extra or {})
    wsgiref.util.setup_testing_defaults(environ)
    errors = environ["wsgi.errors"]

    state = {"status": None, "headers": None, "sent": False}
    out = []

    def start_response(status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if state["sent"]:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif state["status"] is not None:
            raise AssertionError("start_response called twice without exc_info")
        check_start_args(status, headers)
        state["status"], state["headers"] = status, list(headers)
        return write

    def write(data):
        if type(data) is not bytes:
            raise TypeError("write() wants bytes, got %r" % (type(data),))
        if state["status"] is None:
            raise AssertionError("write() before start_response")
        state["sent"] = True
        out.append(data)

    result = wsgi_app(environ, start_response)
    try:
        for data in result:
            if type(data) is not bytes:
                raise TypeError("body yielded %r" % (type(data),))
            if state["status"] is None:
                raise AssertionError("body before start_response")
            if data:
                state["sent"] = True
                out.append(data)
        if state["status"] is None:
            raise AssertionError("start_response never called")
    except Exception as exc:
        if state["sent"]:
            raise Partial(exc, b"".join(out))
        raise
    finally:
        if hasattr(result, "close"):
            result.close()
    return Response(state["status"], state["headers"], b"".join(out),
                    errors.getvalue())


def raises(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s(%r) did not raise %s" % (fn.__name__, args, exc_type))


def check(wsgi_app, tmpdir):
    validated = wsgi_app is app.validated
    ok = lambda *a, **k: expect_status(call(wsgi_app, *a, **k), "200")

    # /environ, including the Latin-1 round trip of raw request bytes.
    script = "/caf\u00c3\u00a9\u00ff"  # b"/caf\xc3\xa9\xff" decoded as Latin-1
    env = ok("/environ", "a=1", environ_extra={
        "SCRIPT_NAME": script, "HTTP_X_TEST": "\u00e2\u0098\u0083"}).json()
    assert env["SCRIPT_NAME"] == "/caf\u00e9\udcff", env["SCRIPT_NAME"]
    assert env["raw:SCRIPT_NAME"] == [ord(c) for c in script]
    assert env["raw:PATH_INFO"] == [ord(c) for c in "/environ"]
    assert env["HTTP_X_TEST"] == "\u2603"
    assert env["QUERY_STRING"] == "a=1"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True and env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is False
    assert env["types"]["wsgi.version"] == "tuple"
    assert env["types"]["REQUEST_METHOD"] == "str"
    assert env["not_latin1"] == []

    # Request bodies.
    data = bytes(range(256)) * 41 + b"\nlast line\n"
    r = ok("/echo", method="POST", body=data,
           environ_extra={"CONTENT_TYPE": "text/x-check"})
    assert r.body == data and r.header("Content-Type") == "text/x-check"
    assert r.header("Content-Length") == str(len(data))
    r = ok("/echo", method="POST", body=data, length=False)
    assert r.body == data
    assert r.header("Content-Type") == "application/octet-stream"
    assert ok("/echo").body == b""

    r = ok("/echo-chunks", "size=1000", method="POST", body=data).json()
    assert sum(r["sizes"]) == r["total"] == len(data)
    assert all(s <= 1000 for s in r["sizes"])
    assert r["sha256"] == hashlib.sha256(data).hexdigest()

    lines = b"one\ntwo\n\nthree \xff\nno newline"
    expected = [x.decode("latin-1") for x in io.BytesIO(lines).readlines()]
    assert ok("/readline", method="POST", body=lines).json() == expected
    r = ok("/readline", "size=3", method="POST", body=lines).json()
    assert "".join(r) == lines.decode("latin-1") and max(map(len, r)) <= 3
    assert ok("/readlines", method="POST", body=lines).json() == expected
    r = ok("/readlines", "hint=5", method="POST", body=lines).json()
    assert r == expected[:2], r
    assert ok("/iter-input", method="POST", body=lines).json() == expected
    if not validated:  # read() without an argument is a validator error
        r = ok("/read-past-end", method="POST", body=data).json()
        assert r == {"after": ["b''", "b''", "b''"]}, r
    else:
        raises(AssertionError, call, wsgi_app, "/read-past-end",
               method="POST", body=data)

    # Body shapes.
    r = ok("/stream")
    assert r.body == (b"x" * 1023 + b"\n") * 100
    assert ok("/stream", "n=3&size=4").body == b"xxx\n" * 3
    assert ok("/stream-empty-first").body == b"data"
    assert ok("/list", "n=2&size=3").body == b"xx\nxx\n"
    assert ok("/tuple").body == b"tuple one\ntuple two\n"

    # Failures.
    raises(RuntimeError, call, wsgi_app, "/raise")
    exc = raises(Partial, call, wsgi_app, "/raise-after-start")
    assert isinstance(exc.cause, RuntimeError) and exc.sent == b"partial\n"
    raises(RuntimeError, call, wsgi_app, "/raise-in-first-next")
    r = call(wsgi_app, "/exc-info")
    assert r.status.startswith("500 ") and r.header("X-Handled") == "yes"
    assert r.body == b"handled\n"
    exc = raises(Partial, call, wsgi_app, "/exc-info-after-headers")
    assert isinstance(exc.cause, ZeroDivisionError) and exc.sent == b"sent\n"
    assert ok("/start-twice").body == b"AssertionError"
    bad_body = (TypeError, AssertionError)
    raises(bad_body, call, wsgi_app, "/str-body")
    exc = raises(Partial, call, wsgi_app, "/str-mid-stream")
    assert isinstance(exc.cause, bad_body) and exc.sent == b"ok\n"
    for path in app.BAD_START:
        # wsgiref.validate catches most of these itself (AssertionError);
        # our check_start_args catches the rest.
        raises(Exception, call, wsgi_app, path)

    # write().
    assert ok("/write").body == b"via write; via iterable"
    assert ok("/write-only", "n=3").body == b"w" * 300

    # file_wrapper.
    path = os.path.join(tmpdir, "f \u00e9.bin")
    with open(path, "wb") as f:
        f.write(data)
    qpath = "path=" + urllib.parse.quote(path)
    r = ok("/file", qpath)
    assert r.body == data and r.header("Content-Type") == "application/octet-stream"
    r = ok("/file", qpath + "&offset=10&length=20")
    assert r.body == data[10:] and r.header("Content-Length") == "20"
    assert call(wsgi_app, "/file", "path=/nonexistent/x").status.startswith("404 ")
    assert ok("/filelike", "size=20000").body == b"f" * 20000

    # Content-Length mismatches are the gateway's job; just run them.
    assert ok("/cl-short").header("Content-Length") == "100"
    assert ok("/cl-long").body == b"0123456789abcdefghij"

    # close().
    del app.CLOSED[:]
    assert ok("/close-marker", "tag=a").body == b"chunk one\nchunk two\n"
    exc = raises(Partial, call, wsgi_app, "/close-marker-raise", "tag=b")
    assert isinstance(exc.cause, RuntimeError) and exc.sent == b"chunk one\n"
    assert len(ok("/close-marker-slow", "n=3").body) == 3 * 65536
    assert ok("/closed").json() == ["tag=a", "tag=b", "n=3"]

    # Thread-local and ContextVar survive iteration and close().
    del app.TL_CLOSE[:]
    assert ok("/threadlocal").body == b"ok\n" * 5
    assert ok("/threadlocal-close").json() == [True]

    # Misc.
    r = call(wsgi_app, "/status", "code=204")
    assert r.status == "204 Whatever" and r.body == b""
    r = call(wsgi_app, "/status", "code=418")
    assert r.status == "418 Whatever" and r.header("Content-Type") == "text/plain"
    r = ok("/head", method="HEAD")
    assert r.body == b"head body" and r.header("Content-Length") == "9"
    r = ok("/set-header", "name=X-Foo&value=b%20r")
    assert r.header("X-Foo") == "b r" and r.body == b"ok"
    raises(Exception, call, wsgi_app, "/set-header", "name=X-Foo&value=a%0Db")
    assert ok("/sleep", "ms=5").body == b"slept"
    r = ok("/errors")
    assert r.body == b"logged" and r.errors == "line one\nline two\na\nb\n"
    r = ok("/module-state", "set=abc").json()
    assert r == {"state": "abc", "id": id(sys.modules)}
    assert ok("/module-state").json()["state"] == "abc"

    start = ok("/counter").json()
    threads = [threading.Thread(target=lambda: [ok("/counter") for _ in range(50)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ok("/counter").json() == start + 201

    r = call(wsgi_app, "/no-such-route")
    assert r.status.startswith("404 ") and r.header("Content-Type") == "text/plain"

    gc.collect()
    assert ok("/unraisable").json() == 0, app.UNRAISABLE


def expect_status(response, code):
    assert response.status.startswith(code + " "), response.status
    assert response.header("Content-Type"), response.headers
    return response


def check_unraisable_hook():
    """A validator iterator dropped without close() must be counted."""
    before = len(app.UNRAISABLE)
    environ = {"QUERY_STRING": ""}
    wsgiref.util.setup_testing_defaults(environ)
    environ["PATH_INFO"] = "/tuple"
    result = app.validated(environ, lambda s, h, e=None: None)
    stderr, sys.stderr = sys.stderr, io.StringIO()  # the default hook prints
    try:
        del result
        gc.collect()
    finally:
        sys.stderr = stderr
    assert len(app.UNRAISABLE) == before + 1, app.UNRAISABLE


def main():
    with tempfile.TemporaryDirectory() as tmpdir:
        for wsgi_app in (app.validated, app.application):
            check(wsgi_app, tmpdir)
    check_unraisable_hook()
    print("check_app: all routes OK on Python %s" % sys.version.split()[0])


if __name__ == "__main__":
    main()
