"""Apps that misuse the gateway from threads of their own, for the
hardening tests: the gateway must answer with Python exceptions, never a
crash."""

import os
import sys
import threading
import time
import urllib.parse

STATE = {}
EVENTS = {"read": threading.Event(), "asked": threading.Event()}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/bg-read", "/bg-readline"):
        stream = environ["wsgi.input"]
        method = stream.read if path == "/bg-read" else stream.readline

        def reader():
            # The first read may block until the client sends the body,
            # after the app has answered; the second comes after the
            # response is over: once /state is asked for, which the client
            # does after it has the whole response.
            for attempt in ("first", "second"):
                if attempt == "second":
                    EVENTS["asked"].wait(10)
                try:
                    STATE[path + " " + attempt] = repr(method())
                except BaseException as exc:
                    STATE[path + " " + attempt] = type(exc).__name__
            EVENTS["read"].set()
        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.2)  # the reader is now blocked waiting for the body
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"answered before the body came"]
    if path == "/ok":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/state":
        EVENTS["asked"].set()
        EVENTS["read"].wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(STATE).encode()]
    if path == "/bg-log":
        # ?PATH: a file created once the thread has stopped, for the test
        # to wait on (the thread shares the GIL with the tests after it).
        errors = environ["wsgi.errors"]
        done = urllib.parse.unquote(environ.get("QUERY_STRING", ""))

        def logger():
            for _ in range(25):  # outlives Close, then stops
                errors.write("tick\n")
                time.sleep(0.02)
            if done:
                open(done, "w").close()
        threading.Thread(target=logger, daemon=True).start()
        start_response("200 OK", [])
        return [b"logging"]
    if path == "/two-readers":
        stream = environ["wsgi.input"]
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # set back below: it is the process's
        out = {}

        def reader(name):
            n = 0
            try:
                while True:
                    line = stream.readline()
                    if not line:
                        break
                    if line.strip(b"x\n"):
                        out[name + "-garbage"] = True
                    n += len(line)
            except RuntimeError:
                out[name + "-refused"] = True
            out[name] = n
        threads = [threading.Thread(target=reader, args=(n,)) for n in ("a", "b")]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old_interval)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(sorted(out.items())).encode()]
    if path == "/write-from-thread":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        out = []

        def writer():
            try:
                write(b"from another thread")
                out.append(b"no error")
            except RuntimeError:
                out.append(b"RuntimeError")
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        return out
    if path == "/exc-info-buffered":
        def body():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial;"
            try:
                raise ValueError("boom")
            except ValueError:
                start_response("500 Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"error page"
        return body()
    if path == "/file-no-start-response":
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    if path == "/fds":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(os.listdir("/proc/self/fd"))).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b""]
