"""Run once in every interpreter a gowsgi handler creates, as module _gowsgi.

It loads the application and holds the few helpers that read better in Python
than in C: the file wrapper, wsgi.errors and traceback formatting.  Nothing
here runs per request except FileWrapper iteration for file-likes that have no
usable fileno() and Errors.write.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback


def format_exception(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def add_paths(paths):
    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)


def _resolve(obj, attrs, where):
    for part in attrs.split("."):
        call = part.endswith("()")
        name = part[:-2] if call else part
        if not name.isidentifier():
            raise ValueError(f"{attrs!r} is not a dotted name in {where}")
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AttributeError(f"{where} has no attribute {name!r}") from None
        if call:
            obj = obj()
    return obj


def is_script(path):
    return "/" in path or path.endswith((".py", ".wsgi"))


def load(spec):
    """Returns the WSGI callable named by spec.

    spec is "module.path:callable" or "/path/to/script.wsgi[:callable]"; the
    callable defaults to "application", may be dotted ("app.wsgi_app") and
    may end in "()" to call a factory ("app:create_app()").
    """
    target, sep, attrs = spec.rpartition(":")
    if not sep or (is_script(attrs) and not is_script(target)):
        target, attrs = spec, ""
    attrs = attrs or "application"
    if is_script(target):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such script file: {path}")
        name = "_gowsgi_script_" + "".join(c if c.isalnum() else "_" for c in path)
        add_paths([os.path.dirname(path)])
        loader = importlib.machinery.SourceFileLoader(name, path)
        mspec = importlib.util.spec_from_file_location(name, path, loader=loader)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        try:
            mspec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        where = f"script {path}"
    else:
        module = importlib.import_module(target)
        where = f"module {target!r}"
    app = _resolve(module, attrs, where)
    if not callable(app):
        raise TypeError(f"{attrs} in {where} is not callable (it is {type(app).__name__})")
    return app


class FileWrapper:
    """wsgi.file_wrapper (PEP 3333).  The gateway sends a real file with
    sendfile; iteration is the fallback for file-likes without fileno()."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class Errors:
    """wsgi.errors: text goes to the handler's logger, one record a line."""

    def __init__(self, emit):
        self._emit = emit
        self._partial = ""

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"wsgi.errors.write() needs str, not {type(s).__name__}")
        text = self._partial + s
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._emit(line)
        return len(s)

    def writelines(self, seq):
        for s in seq:
            self.write(s)

    def flush(self):
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)
