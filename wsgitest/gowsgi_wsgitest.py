"""The Python side of wsgitest, imported by the handler as middleware.

validator(app) is strict mode: wsgiref.validate's checks, except that
wsgi.input.read() may read to the end when the gateway sets
wsgi.input_terminated.

capture_logging(app) remembers, while the app runs for a request, that
request's wsgi.errors. A handler on the root logger, added when this module
is imported, writes every record of level ERROR or above there, with its
traceback, so that an exception a framework logs (Django's django.request)
reaches wsgitest like a line the app wrote itself.

wsgitest writes this file to a temporary directory for each app it loads;
it is not meant to be imported otherwise.
"""

import contextvars
import logging
import sys
import wsgiref.validate

# How much each sized read asks for when read() reads to the end.
READ_CHUNK = 64 * 1024


# ---------------------------------------------------------------- strict mode


def _to_the_end(args):
    """Whether read(*args) asks for the whole rest of the stream."""
    if not args:
        return True
    if len(args) != 1:
        return False
    size = args[0]
    return size is None or (type(size) is int and size < 0)


class TerminatedInput:
    """wsgi.input for an environ with wsgi.input_terminated.

    It stands in front of the validator's own input wrapper and hands every
    call on to it, except read() with no size (or a negative one, or
    None): that the validator refuses, since PEP 3333 gives read() a size,
    while a gateway that sets wsgi.input_terminated promises that reading
    to the end is safe. Such a read is made of sized reads through the
    validator's wrapper, so every piece is still checked to be bytes.
    """

    def __init__(self, checked):
        self._checked = checked

    def read(self, *args):
        if not _to_the_end(args):
            return self._checked.read(*args)
        pieces = []
        while True:
            piece = self._checked.read(READ_CHUNK)
            if not piece:
                return b"".join(pieces)
            pieces.append(piece)

    def readline(self, *args):
        return self._checked.readline(*args)

    def readlines(self, *args):
        return self._checked.readlines(*args)

    def __iter__(self):
        return iter(self._checked)

    def close(self):
        return self._checked.close()


def validator(app):
    """Wraps app in wsgiref.validate's validator, letting it read
    wsgi.input to the end when the environ has wsgi.input_terminated."""

    def terminated(environ, start_response):
        if environ.get("wsgi.input_terminated"):
            environ["wsgi.input"] = TerminatedInput(environ["wsgi.input"])
        return app(environ, start_response)

    return wsgiref.validate.validator(terminated)


# -------------------------------------------------------------------- logging


class _Request:
    """What the log handler needs of the request being served."""

    __slots__ = ("environ", "errors")

    def __init__(self, environ):
        self.environ = environ
        self.errors = environ.get("wsgi.errors")

    def is_errors(self, stream):
        """Whether stream is this request's wsgi.errors, as the gateway
        gave it or as a validator wrapped it."""
        while stream is not None:
            if stream is self.errors or stream is self.environ.get("wsgi.errors"):
                return True
            if not isinstance(stream, wsgiref.validate.ErrorWrapper):
                return False
            stream = stream.errors
        return False


_current = contextvars.ContextVar("gowsgi_wsgitest_request", default=None)


def _flask_default_handler():
    flask_logging = sys.modules.get("flask.logging")
    return getattr(flask_logging, "default_handler", None)


def _writes_to(handler, request):
    """Whether handler writes to request's wsgi.errors: Flask's default
    handler, or any handler whose stream is wsgi.errors, directly or
    through a Werkzeug LocalProxy such as flask.logging.wsgi_errors_stream."""
    if handler is _flask_default_handler():
        return True
    stream = getattr(handler, "stream", None)
    if stream is None:
        return False
    try:
        resolve = object.__getattribute__(stream, "_get_current_object")
    except AttributeError:
        resolve = None
    if callable(resolve):
        try:
            stream = resolve()
        except Exception:
            return False
    return request.is_errors(stream)


def _written_on_the_way(record, request):
    """Whether a handler of the loggers between the record's logger and the
    root (the root excluded) already wrote the record to wsgi.errors."""
    logger = logging.getLogger(record.name)
    while logger is not None and logger is not logging.root:
        for handler in logger.handlers:
            if record.levelno >= handler.level and _writes_to(handler, request):
                return True
        if not logger.propagate:
            break
        logger = logger.parent
    return False


class ToWsgiErrors(logging.Handler):
    """A root logger handler, level ERROR, that writes each record it gets,
    with its traceback, to the wsgi.errors of the request being served
    (sys.stderr outside one), unless a handler closer to the record's
    logger has already written it there."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(levelname)s in logger %(name)s: %(message)s"))

    def emit(self, record):
        try:
            request = _current.get()
            if request is None:
                stream = sys.stderr
            elif _written_on_the_way(record, request):
                return
            else:
                stream = request.errors
            if stream is None:
                return
            stream.write(self.format(record) + "\n")
            if request is None:
                # sys.stderr only: wsgi.errors needs no flush after a whole
                # line, and a flush there could cut short a line that
                # another request is writing.
                stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _install():
    """Puts a ToWsgiErrors on the root logger, replacing one left by an
    earlier import of this module (a reload)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "gowsgi_wsgitest", False):
            root.removeHandler(old)
    handler = ToWsgiErrors()
    handler.gowsgi_wsgitest = True
    root.addHandler(handler)
    return handler


_handler = _install()


class _Body:
    """The app's iterable, iterated and closed with the request remembered."""

    def __init__(self, iterable, request):
        self._iterable = iterable
        self._iterator = None
        self._request = request

    def __iter__(self):
        return self

    def __next__(self):
        token = _current.set(self._request)
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        finally:
            _current.reset(token)

    def close(self):
        close = getattr(self._iterable, "close", None)
        if close is None:
            return
        token = _current.set(self._request)
        try:
            close()
        finally:
            _current.reset(token)


def capture_logging(app):
    """Wraps app so that, while it runs for a request (the call, the
    iteration of its response and close()), ToWsgiErrors writes to that
    request's wsgi.errors. A list, a tuple or a wsgi.file_wrapper response
    is returned as it is, so the gateway still sends it its own way."""

    def captured(environ, start_response):
        root = logging.getLogger()
        if _handler not in root.handlers:
            # The app's logging configuration took it away.
            root.addHandler(_handler)
        request = _Request(environ)
        token = _current.set(request)
        try:
            result = app(environ, start_response)
        finally:
            _current.reset(token)
        kind = type(result)
        if kind is list or kind is tuple or kind is environ.get("wsgi.file_wrapper"):
            return result
        return _Body(result, request)

    return captured
