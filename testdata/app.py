"""A WSGI router app used by the Go test suite.

``application`` dispatches on PATH_INFO to one small function per route;
``validated`` is the same app wrapped in wsgiref.validate.validator.

Standard library only; Python 3.10 to 3.13.
"""

import contextvars
import hashlib
import io
import itertools
import json
import sys
import threading
import time
import urllib.parse
import uuid
import wsgiref.validate

TEXT = ("Content-Type", "text/plain")
OCTET = ("Content-Type", "application/octet-stream")

# Module-level state inspected by tests through other routes.
CLOSED = []  # QUERY_STRING of every close-marker whose close() ran
TL_CLOSE = []  # per /threadlocal request: were both values intact in close()?
STATE = None  # /module-state
COUNTER = 0  # /counter
COUNTER_LOCK = threading.Lock()
UNRAISABLE = []  # records seen by our sys.unraisablehook

_previous_unraisablehook = sys.unraisablehook


def _record_unraisable(unraisable):
    UNRAISABLE.append(unraisable)
    _previous_unraisablehook(unraisable)


sys.unraisablehook = _record_unraisable

_local = threading.local()
_ctxvar = contextvars.ContextVar("gowsgi_testdata_ctxvar", default=None)


# ---------------------------------------------------------------- helpers

def query(environ):
    """Query arguments as a dict (first value wins).

    QUERY_STRING is Latin-1-decoded bytes; turn it back into bytes so that
    raw UTF-8 and %-escapes both decode to the same text."""
    qs = environ.get("QUERY_STRING", "")
    qs = qs.encode("latin-1").decode("utf-8", "surrogateescape")
    pairs = urllib.parse.parse_qsl(qs, keep_blank_values=True,
                                   encoding="utf-8", errors="surrogateescape")
    args = {}
    for name, value in pairs:
        args.setdefault(name, value)
    return args


def int_arg(environ, name, default):
    value = query(environ).get(name)
    return default if value is None or value == "" else int(value)


def text(start_response, body, status="200 OK", content_type="text/plain"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body)))])
    return [body]


def json_response(start_response, obj, status="200 OK"):
    return text(start_response, json.dumps(obj), status, "application/json")


def chunk_of(size):
    """size bytes of b"x" whose last byte is b"\\n"."""
    if size <= 0:
        return b""
    return b"x" * (size - 1) + b"\n"


def latin1_lines(lines):
    return [line.decode("latin-1") for line in lines]


def read_all(stream):
    """Read to EOF with read(n) calls only (wsgiref.validate forbids read())."""
    parts = []
    while True:
        data = stream.read(65536)
        if not data:
            return b"".join(parts)
        parts.append(data)


# ------------------------------------------------------------------ environ

BOOL_KEYS = ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
             "wsgi.input_terminated")


def environ_route(environ, start_response):
    out = {}
    not_latin1 = []
    for key, value in environ.items():
        if isinstance(value, str):
            try:
                raw = value.encode("latin-1")
            except UnicodeEncodeError:
                not_latin1.append(key)  # a gateway bug; report it as is
                out[key] = value
            else:
                out[key] = raw.decode("utf-8", "surrogateescape")
    for key in ("PATH_INFO", "SCRIPT_NAME"):
        if isinstance(environ.get(key), str):
            out["raw:" + key] = [ord(c) for c in environ[key]]
    version = environ.get("wsgi.version")
    out["wsgi.version"] = list(version) if isinstance(version, tuple) else repr(version)
    for key in BOOL_KEYS:
        value = environ.get(key)
        out[key] = value if isinstance(value, (bool, type(None))) else repr(value)
    out["types"] = {str(k): type(v).__name__ for k, v in environ.items()}
    out["not_latin1"] = sorted(not_latin1)
    return json_response(start_response, out)


# -------------------------------------------------------------------- input

def echo(environ, start_response):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        remaining = int(length)
        parts = []
        while remaining > 0:
            data = stream.read(remaining)
            if not data:
                break  # short body; return what arrived
            parts.append(data)
            remaining -= len(data)
        body = b"".join(parts)
    else:
        body = read_all(stream)
    content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response("200 OK", [("Content-Type", content_type),
                              ("Content-Length", str(len(body)))])
    return [body]


def echo_chunks(environ, start_response):
    size = int_arg(environ, "size", 65536)
    stream = environ["wsgi.input"]
    sizes = []
    digest = hashlib.sha256()
    while True:
        data = stream.read(size)
        if not data:
            break
        sizes.append(len(data))
        digest.update(data)
    return json_response(start_response, {"sizes": sizes, "total": sum(sizes),
                                          "sha256": digest.hexdigest()})


def readline_route(environ, start_response):
    size = query(environ).get("size")
    stream = environ["wsgi.input"]
    lines = []
    while True:
        line = stream.readline() if size is None else stream.readline(int(size))
        if not line:
            break
        lines.append(line)
    return json_response(start_response, latin1_lines(lines))


def readlines_route(environ, start_response):
    hint = query(environ).get("hint")
    stream = environ["wsgi.input"]
    lines = stream.readlines() if hint is None else stream.readlines(int(hint))
    return json_response(start_response, latin1_lines(lines))


def iter_input(environ, start_response):
    lines = [line for line in environ["wsgi.input"]]
    return json_response(start_response, latin1_lines(lines))


def read_past_end(environ, start_response):
    # Note: read() with no argument is not allowed by wsgiref.validate.
    stream = environ["wsgi.input"]
    read_all(stream)
    after = [stream.read(10), stream.read(), stream.readline()]
    return json_response(start_response, {"after": [repr(x) for x in after]})


# ------------------------------------------------------------ body shapes

def stream(environ, start_response):
    n = int_arg(environ, "n", 100)
    chunk = chunk_of(int_arg(environ, "size", 1024))

    def body():
        start_response("200 OK", [TEXT])
        for _ in range(n):
            yield chunk
    return body()


def stream_empty_first(environ, start_response):
    def body():
        start_response("200 OK", [TEXT])
        yield b""
        yield b""
        yield b"data"
    return body()


def list_route(environ, start_response):
    n = int_arg(environ, "n", 100)
    chunk = chunk_of(int_arg(environ, "size", 1024))
    start_response("200 OK", [TEXT])
    return [chunk] * n


def tuple_route(environ, start_response):
    start_response("200 OK", [TEXT])
    return (b"tuple one\n", b"tuple two\n")


def str_body(environ, start_response):
    start_response("200 OK", [TEXT])
    return ["a str, not bytes"]


def str_mid_stream(environ, start_response):
    def body():
        start_response("200 OK", [TEXT])
        yield b"ok\n"
        yield "a str, not bytes"
    return body()


# --------------------------------------------------------------- failures

def raise_route(environ, start_response):
    raise RuntimeError("boom before start")


def raise_after_start(environ, start_response):
    def body():
        start_response("200 OK", [TEXT])
        yield b"partial\n"
        raise RuntimeError("boom after start")
    return body()


def raise_in_first_next(environ, start_response):
    def body():
        start_response("200 OK", [TEXT])
        raise RuntimeError("boom in first next")
        yield b"never"  # makes this a generator
    return body()


def exc_info_route(environ, start_response):
    start_response("200 OK", [TEXT])
    try:
        1 / 0
    except ZeroDivisionError:
        start_response("500 Internal Server Error",
                       [TEXT, ("X-Handled", "yes")], sys.exc_info())
    return [b"handled\n"]


def exc_info_after_headers(environ, start_response):
    def body():
        start_response("200 OK", [TEXT])
        yield b"sent\n"
        try:
            1 / 0
        except ZeroDivisionError:
            # Headers are out: the gateway must re-raise; let it propagate.
            start_response("500 Internal Server Error", [TEXT], sys.exc_info())
        yield b"should not be sent\n"
    return body()


def start_twice(environ, start_response):
    start_response("200 OK", [TEXT])
    try:
        start_response("500 Internal Server Error", [TEXT])
    except Exception as exc:
        return [type(exc).__name__.encode("ascii")]
    return [b"no error"]


# Routes whose start_response call the gateway must reject (answer 500,
# never send the header).  If it does not raise, the body goes out.
BAD_START = {
    "/crlf-header": ("200 OK", [TEXT, ("X-Evil", "a\r\nSet-Cookie: pwned=1")]),
    "/lf-header": ("200 OK", [TEXT, ("X-Evil", "a\nb")]),
    "/nul-header": ("200 OK", [TEXT, ("X-Evil", "a\x00b")]),
    "/bad-header-name": ("200 OK", [TEXT, ("Bad Name", "v")]),
    "/colon-header-name": ("200 OK", [TEXT, ("X-A:b", "v")]),
    "/non-latin1-header": ("200 OK", [TEXT, ("X-Snow", "\u2603")]),
    "/bad-status": ("200OK", [TEXT]),
    "/bad-status-code": ("2x0 Weird", [TEXT]),
    "/status-crlf": ("200 OK\r\nX-Evil: 1", [TEXT]),
    "/headers-not-list": ("200 OK", (TEXT,)),
    "/hop-by-hop": ("200 OK", [TEXT, ("Connection", "close")]),
}


def bad_start(environ, start_response):
    status, headers = BAD_START[environ["PATH_INFO"]]
    if isinstance(headers, list):
        headers = list(headers)  # never hand out the shared table's list
    start_response(status, headers)  # an exception propagates
    return [b"should not be sent"]


# ------------------------------------------------------------------ write()

def write_route(environ, start_response):
    write = start_response("200 OK", [TEXT])
    write(b"via write; ")
    return [b"via iterable"]


def write_only(environ, start_response):
    n = int_arg(environ, "n", 10)
    write = start_response("200 OK", [TEXT])
    for _ in range(n):
        write(b"w" * 100)
    return []


# ------------------------------------------------------------ file_wrapper

def file_route(environ, start_response):
    args = query(environ)
    try:
        f = open(args["path"], "rb")
    except (KeyError, OSError) as exc:
        return text(start_response, "cannot open: %r\n" % (exc,), "404 Not Found")
    try:
        if args.get("offset"):
            f.seek(int(args["offset"]))
        headers = [OCTET]
        if args.get("length"):
            headers.append(("Content-Length", str(int(args["length"]))))
        start_response("200 OK", headers)
    except BaseException:
        f.close()
        raise
    return environ["wsgi.file_wrapper"](f, 8192)


def filelike(environ, start_response):
    size = int_arg(environ, "size", 100000)
    start_response("200 OK", [OCTET])
    # BytesIO.fileno() raises io.UnsupportedOperation.
    return environ["wsgi.file_wrapper"](io.BytesIO(b"f" * size))


# ---------------------------------------------------------- Content-Length

def cl_short(environ, start_response):
    start_response("200 OK", [TEXT, ("Content-Length", "100")])
    return [b"0123456789"]


def cl_long(environ, start_response):
    start_response("200 OK", [TEXT, ("Content-Length", "5")])
    return [b"0123456789", b"abcdefghij"]


# ---------------------------------------------------------------- close()

class CloseMarker:
    """Iterable body whose close() is recorded in CLOSED."""

    def __init__(self, tag, chunks):
        self.tag = tag
        self.chunks = chunks  # a generator

    def __iter__(self):
        return self.chunks

    def close(self):
        self.chunks.close()
        CLOSED.append(self.tag)


def close_marker(environ, start_response):
    def chunks():
        yield b"chunk one\n"
        yield b"chunk two\n"
    start_response("200 OK", [TEXT])
    return CloseMarker(environ.get("QUERY_STRING", ""), chunks())


def close_marker_raise(environ, start_response):
    def chunks():
        yield b"chunk one\n"
        raise RuntimeError("boom in close-marker body")
    start_response("200 OK", [TEXT])
    return CloseMarker(environ.get("QUERY_STRING", ""), chunks())


class CloseRaises(CloseMarker):
    """Iterable body whose close() raises after a complete iteration."""

    def close(self):
        super().close()
        raise ValueError("boom in close")


def close_raises(environ, start_response):
    def chunks():
        yield b"chunk one\n"
        yield b"chunk two\n"
    start_response("200 OK", [TEXT])
    return CloseRaises(environ.get("QUERY_STRING", ""), chunks())


def close_marker_slow(environ, start_response):
    n = int_arg(environ, "n", 100)

    def chunks():
        for i in range(n):
            if i:
                time.sleep(0.01)
            yield b"s" * 65536
    start_response("200 OK", [OCTET])
    return CloseMarker(environ.get("QUERY_STRING", ""), chunks())


def closed(environ, start_response):
    return json_response(start_response, CLOSED)


def errors_parts(environ, start_response):
    """Writes ?first= to wsgi.errors, waits for the file ?gate=, writes
    ?second= and a newline, then ?tail= with no newline."""
    import os
    args = query(environ)
    err = environ["wsgi.errors"]
    err.write(args["first"])
    deadline = time.monotonic() + 10
    while not os.path.exists(args["gate"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    err.write(args["second"] + "\n" + args.get("tail", ""))
    return text(start_response, b"logged")


def big_stream(environ, start_response):
    """A fast generator of n chunks of size bytes whose close() is
    recorded in CLOSED under ?tag=."""
    n, size = int_arg(environ, "n", 100), int_arg(environ, "size", 65536)
    tag = query(environ).get("tag", "")

    def chunks():
        for _ in range(n):
            yield b"g" * size
    start_response("200 OK", [OCTET])
    return CloseMarker(tag, chunks())


def write_big(environ, start_response):
    """Sends n x size bytes through write(), then records ?tag= in CLOSED."""
    n, size = int_arg(environ, "n", 100), int_arg(environ, "size", 65536)
    write = start_response("200 OK", [OCTET])
    try:
        for _ in range(n):
            write(b"w" * size)
    finally:
        CLOSED.append(query(environ).get("tag", ""))
    return []


def native_thread(environ, start_response):
    """The OS thread running this request."""
    return text(start_response, str(threading.get_native_id()).encode())


# ------------------------------------------------- thread / context state

class ThreadLocalBody:
    """Checks that the thread-local and the ContextVar set in the app call
    are still visible while iterating and in close()."""

    def __init__(self, token):
        self.token = token

    def intact(self):
        return (getattr(_local, "token", None) == self.token
                and _ctxvar.get() == self.token)

    def __iter__(self):
        for _ in range(5):
            yield b"ok\n" if self.intact() else b"lost\n"

    def close(self):
        TL_CLOSE.append(self.intact())


def threadlocal(environ, start_response):
    token = uuid.uuid4().hex
    _local.token = token
    _ctxvar.set(token)
    start_response("200 OK", [TEXT])
    return ThreadLocalBody(token)


def threadlocal_close(environ, start_response):
    return json_response(start_response, TL_CLOSE)


# ------------------------------------------------------------------- misc

def status_route(environ, start_response):
    code = int_arg(environ, "code", 200)
    # 204 and 304 have no body; wsgiref.validate forbids a Content-Type there.
    headers = [] if code in (204, 304) else [TEXT]
    start_response("%d Whatever" % code, headers)
    return []


def head(environ, start_response):
    start_response("200 OK", [TEXT, ("Content-Length", "9")])
    return [b"head body"]


def set_header(environ, start_response):
    args = query(environ)
    start_response("200 OK", [TEXT, (args.get("name", ""), args.get("value", ""))])
    return [b"ok"]


def sleep(environ, start_response):
    time.sleep(int_arg(environ, "ms", 100) / 1000.0)
    return text(start_response, b"slept")


def errors(environ, start_response):
    err = environ["wsgi.errors"]
    err.write("line one\nline two\n")
    err.writelines(["a\n", "b\n"])
    err.flush()
    return text(start_response, b"logged")


def module_state(environ, start_response):
    global STATE
    args = query(environ)
    if "set" in args:
        STATE = args["set"]
    return json_response(start_response, {"state": STATE, "id": id(sys.modules)})


def counter(environ, start_response):
    global COUNTER
    with COUNTER_LOCK:
        COUNTER += 1
        value = COUNTER
    return json_response(start_response, value)


def unraisable(environ, start_response):
    return json_response(start_response, len(UNRAISABLE))


KEPT = {}  # wsgi.input, start_response and write kept past their request


def keep(environ, start_response):
    KEPT["input"] = environ["wsgi.input"]
    KEPT["start_response"] = start_response
    KEPT["write"] = start_response("200 OK", [TEXT])
    return [b"kept"]


def use_kept(environ, start_response):
    """Uses what /keep kept; each must raise now that its request ended."""
    calls = {
        "read": lambda: KEPT["input"].read(1),
        "start_response": lambda: KEPT["start_response"]("200 OK", [TEXT]),
        "write": lambda: KEPT["write"](b"late"),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = "no error"
        except Exception as exc:  # the test wants the type
            out[name] = type(exc).__name__
    return json_response(start_response, out)


EVENTS = {}  # /wait-stream waits on these until /release sets them
EVENTS_LOCK = threading.Lock()


def event(environ):
    with EVENTS_LOCK:
        return EVENTS.setdefault(query(environ).get("key", ""), threading.Event())


def wait_stream(environ, start_response):
    """Yields two chunks, then waits (GIL released) until /release?key=."""
    ev = event(environ)
    start_response("200 OK", [TEXT])

    def chunks():
        yield b"first\n"
        yield b"second\n"
        ev.wait(30)
        yield b"third\n"
    return chunks()


def release(environ, start_response):
    event(environ).set()
    return [b""] if start_response("200 OK", [TEXT]) else [b""]


def wait_file(environ, start_response):
    """Marks that it started (creates PATH.started), then waits until a
    file at PATH exists: a release a test can give without a request."""
    import os
    path = query(environ)["path"]
    open(path + ".started", "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return text(start_response, b"released")


STEPS = {}  # generator steps taken, per ?key=, for early-stop tests


def step(environ, n):
    STEPS[query(environ).get("key", "")] = n


def stream_cl(environ, start_response):
    """A generator with a Content-Length: n chunks of size bytes, chunk i
    filled with the letter chr(ord('a') + i % 26); ?etag= sets an ETag."""
    args = query(environ)
    n, size = int_arg(environ, "n", 10), int_arg(environ, "size", 10)
    headers = [OCTET, ("Content-Length", str(n * size))]
    if "etag" in args:
        headers.append(("ETag", args["etag"]))
    start_response("200 OK", headers)

    def chunks():
        for i in range(n):
            step(environ, i + 1)
            yield bytes([ord("a") + i % 26]) * size
    return chunks()


def stream_sizes(environ, start_response):
    """A generator of chunks of the ?sizes= given (comma-separated), chunk
    i filled with the letter chr(ord('a') + i % 26); no Content-Length."""
    sizes = [int(n) for n in query(environ)["sizes"].split(",")]
    start_response("200 OK", [OCTET])

    def chunks():
        for i, size in enumerate(sizes):
            yield bytes([ord("a") + i % 26]) * size
    return chunks()


def gen_empty_first(environ, start_response):
    """start_response, yield b"", then the body: for wsgi_optimize_send_headers."""
    status = query(environ).get("status", "200")
    start_response(f"{status} Whatever", [TEXT] if status == "200" else [])

    def chunks():
        step(environ, 1)
        yield b""
        step(environ, 2)
        yield b"the body"
        step(environ, 3)
    return chunks()


def steps(environ, start_response):
    return json_response(start_response, STEPS)


def write_spill(environ, start_response):
    """Writes n x 100 bytes, then how many files are under ?dir= (the
    gateway's write buffer spills there), waiting up to 5 s for ?want= of
    them: the gateway takes what write() queued while the app goes on."""
    import os
    write = start_response("200 OK", [TEXT])
    for _ in range(int_arg(environ, "n", 1)):
        write(b"w" * 100)
    want = int_arg(environ, "want", 0)
    deadline = time.monotonic() + 5
    while True:
        count = sum(len(files) for _, _, files in os.walk(query(environ)["dir"]))
        if count >= want or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    write(f"files={count}".encode())
    return []


def write_mid_stream(environ, start_response):
    """Yields a chunk, calls write(), yields another."""
    write = start_response("200 OK", [TEXT])

    def chunks():
        yield b"yielded, "
        write(b"written, ")
        yield b"yielded"
    return chunks()


def write_then_raise(environ, start_response):
    write = start_response("200 OK", [TEXT])
    write(b"w" * 10000)
    raise RuntimeError("after write")


def busy(environ, start_response):
    """Runs Python (no blocking call) for ?ms=, then answers."""
    end = time.monotonic() + int_arg(environ, "ms", 1000) / 1000.0
    while time.monotonic() < end:
        pass
    return text(start_response, b"done")


OVERLAP = {"active": {}, "starts": [], "seq": itertools.count(1)}  # for the scheduling tests


def _cpu_since(samples, since):
    """The CPU time a request's thread used from wall time since on, from
    its (wall, cpu) samples: up to one sample step (half a millisecond of
    wall time) more than it used, as the sample it counts from may be that
    much older than since."""
    ref = samples[0][1]
    for wall, cpu in samples:
        if wall > since:
            break
        ref = cpu
    return samples[-1][1] - ref


def overlap(environ, start_response):
    """Sleeps ?sleep= ms (the GIL released), then runs Python for ?ms= of
    its thread's CPU time. As it starts running Python it records, under
    ?tag=, its number, the numbers of the other requests of this kind in
    the app, and the least CPU time any of them had in the switch interval
    of wall time before (None if none was there): one that had less than it
    needed to end was cut by CPython's rule, a thread waiting for the GIL
    that long takes it by force. It records when it did so (at, from
    time.monotonic) and on which thread (tid) as well."""
    if int_arg(environ, "sleep", 0):
        time.sleep(int_arg(environ, "sleep", 0) / 1000.0)
    now, cpu = time.monotonic(), time.thread_time()
    seq = next(OVERLAP["seq"])
    # One copy, made in C: another thread may change the dict in between
    # two steps of Python.
    others = dict(OVERLAP["active"])
    since = now - sys.getswitchinterval()
    least = min((_cpu_since(s, since) for s in others.values()), default=None)
    OVERLAP["starts"].append({"tag": query(environ).get("tag", ""), "seq": seq,
                              "others": sorted(others), "least": least, "at": now,
                              "tid": threading.get_native_id()})
    # One sample each half millisecond, and the last one kept current.
    samples = [(now, cpu)] * 2
    OVERLAP["active"][seq] = samples
    end = cpu + int_arg(environ, "ms", 1) / 1000.0
    while samples[-1][1] < end:
        sample = (time.monotonic(), time.thread_time())
        if sample[0] - samples[-2][0] >= 0.0005:
            samples.append(sample)
        else:
            samples[-1] = sample
    del OVERLAP["active"][seq]
    return text(start_response, b"done")


def overlap_starts(environ, start_response):
    """What /overlap recorded, as tag, seq, others, least, at and tid;
    then forgets it."""
    starts, OVERLAP["starts"] = OVERLAP["starts"], []
    return json_response(start_response, starts)


def switch_interval(environ, start_response):
    """Sets sys.setswitchinterval to ?s= if given; answers the old value."""
    old = sys.getswitchinterval()
    if query(environ).get("s"):
        sys.setswitchinterval(float(query(environ)["s"]))
    return json_response(start_response, old)


def busy_stream(environ, start_response):
    """Sends a chunk, then runs Python for ?ms= before the next."""
    ms = int_arg(environ, "ms", 1000)
    start_response("200 OK", [TEXT])

    def chunks():
        yield b"first\n"
        end = time.monotonic() + ms / 1000.0
        while time.monotonic() < end:
            pass
        yield b"late\n"
    return CloseMarker(environ.get("QUERY_STRING", ""), chunks())


def hold_then_stream(environ, start_response):
    """Holds the GIL for ?ms= of pure Python with a long switch interval,
    so that threads waiting for the GIL keep waiting (it creates
    PATH.holding first), then sends a chunk and waits for a file at PATH
    before the last one."""
    import os
    import sys
    path = query(environ)["path"]
    ms = int_arg(environ, "ms", 300)
    start_response("200 OK", [TEXT])

    def chunks():
        old = sys.getswitchinterval()
        sys.setswitchinterval(10.0)
        try:
            open(path + ".holding", "w").close()
            end = time.monotonic() + ms / 1000.0
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(old)
        yield b"first\n"
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        yield b"released\n" if os.path.exists(path) else b"timed out\n"
    return chunks()


READ_ERRORS = []  # what wsgi.input.read raised, per /read-catch request


def read_catch(environ, start_response):
    """Reads the body; records the exception type read() raised, if any."""
    try:
        read_all(environ["wsgi.input"])
        READ_ERRORS.append(None)
    except Exception as exc:
        READ_ERRORS.append({"type": type(exc).__name__, "oserror": isinstance(exc, OSError)})
        raise
    return text(start_response, b"read")


def read_errors(environ, start_response):
    return json_response(start_response, READ_ERRORS)


class Custom(BaseException):
    pass


def hostile(kind):
    def route(environ, start_response):
        if kind == "sys-exit":
            raise SystemExit(3)
        if kind == "keyboard-interrupt":
            raise KeyboardInterrupt
        if kind == "base-exception":
            raise Custom("not an Exception")
        if kind == "no-start-response":
            return [b"no start_response"]
        start_response("200 OK", [TEXT])
        if kind == "return-none":
            return None
        if kind == "iter-raises":
            class Bad:
                def __iter__(self):
                    raise ValueError("cannot iterate")
            return Bad()
        if kind == "exit-mid-stream":
            def chunks():
                yield b"ok\n"
                raise SystemExit(4)
            return chunks()
        raise AssertionError(kind)
    return route


THREADS = []


def spawn_thread(environ, start_response):
    """Starts a thread (?daemon=1 for a daemon) that runs for ?ms=."""
    ms = int_arg(environ, "ms", 60000)
    t = threading.Thread(target=time.sleep, args=(ms / 1000.0,),
                         daemon=query(environ).get("daemon") == "1",
                         name=query(environ).get("name", "worker"))
    t.start()
    THREADS.append(t)
    return text(start_response, b"spawned")


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]


def not_found(environ, start_response):
    return text(start_response, "not found: %r\n" % environ.get("PATH_INFO"),
                "404 Not Found")


# ----------------------------------------------------------------- router

ROUTES = {
    "/environ": environ_route,
    "/echo": echo,
    "/echo-chunks": echo_chunks,
    "/readline": readline_route,
    "/readlines": readlines_route,
    "/iter-input": iter_input,
    "/read-past-end": read_past_end,
    "/stream": stream,
    "/stream-empty-first": stream_empty_first,
    "/list": list_route,
    "/tuple": tuple_route,
    "/raise": raise_route,
    "/raise-after-start": raise_after_start,
    "/raise-in-first-next": raise_in_first_next,
    "/exc-info": exc_info_route,
    "/exc-info-after-headers": exc_info_after_headers,
    "/start-twice": start_twice,
    "/write": write_route,
    "/write-only": write_only,
    "/file": file_route,
    "/filelike": filelike,
    "/str-body": str_body,
    "/str-mid-stream": str_mid_stream,
    "/cl-short": cl_short,
    "/cl-long": cl_long,
    "/close-marker": close_marker,
    "/close-marker-raise": close_marker_raise,
    "/close-raises": close_raises,
    "/close-marker-slow": close_marker_slow,
    "/closed": closed,
    "/threadlocal": threadlocal,
    "/threadlocal-close": threadlocal_close,
    "/status": status_route,
    "/head": head,
    "/set-header": set_header,
    "/sleep": sleep,
    "/hold-then-stream": hold_then_stream,
    "/errors": errors,
    "/module-state": module_state,
    "/counter": counter,
    "/unraisable": unraisable,
    "/keep": keep,
    "/use-kept": use_kept,
    "/hello": hello,
    "/big-stream": big_stream,
    "/errors-parts": errors_parts,
    "/write-big": write_big,
    "/native-thread": native_thread,
    "/busy": busy,
    "/busy-stream": busy_stream,
    "/overlap": overlap,
    "/overlap-starts": overlap_starts,
    "/switch-interval": switch_interval,
    "/read-catch": read_catch,
    "/read-errors": read_errors,
    "/spawn-thread": spawn_thread,
    "/stream-cl": stream_cl,
    "/stream-sizes": stream_sizes,
    "/gen-empty-first": gen_empty_first,
    "/steps": steps,
    "/write-then-raise": write_then_raise,
    "/write-spill": write_spill,
    "/write-mid-stream": write_mid_stream,
    "/wait-stream": wait_stream,
    "/release": release,
    "/wait-file": wait_file,
}
ROUTES.update(dict.fromkeys(BAD_START, bad_start))
for _kind in ("sys-exit", "keyboard-interrupt", "base-exception", "no-start-response",
              "return-none", "iter-raises", "exit-mid-stream"):
    ROUTES["/" + _kind] = hostile(_kind)


def application(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", ""), not_found)
    return route(environ, start_response)


validated = wsgiref.validate.validator(application)
