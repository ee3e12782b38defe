"""Run once in every interpreter a gowsgi handler creates, as module _gowsgi.

It loads the application and holds the few helpers that read better in Python
than in C: the file wrapper and traceback formatting.  Nothing here runs per
request except FileWrapper iteration for file-likes that have no usable
fileno().
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback


def _python_executable():
    """Points sys.executable at a Python when it names the Go program that
    embeds us (CPython's default): subprocess and multiprocessing use it to
    start Python, and must not start the Go server again."""
    if os.path.basename(sys.executable or "").startswith("python"):
        return
    v = sys.version_info
    for name in (f"python{v.major}.{v.minor}", f"python{v.major}"):
        path = os.path.join(sys.base_prefix, "bin", name)
        if os.access(path, os.X_OK):
            sys.executable = sys._base_executable = path
            return


_python_executable()


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
    """A path with a slash, a name ending in .py, or an existing .wsgi file
    is a script; "mysite.wsgi" (Django's module) is a module otherwise."""
    if "/" in path or path.endswith(".py"):
        return True
    return path.endswith(".wsgi") and os.path.isfile(path)


def _load_target(spec):
    """Returns (module, attrs, where) for spec."""
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
        return module, attrs, f"script {path}"
    return importlib.import_module(target), attrs, f"module {target!r}"


# What the last load used, for reload() and for the files to watch.
_loaded = {"spec": None, "middleware": (), "modules": []}


def _forget_bytecode(modules):
    """Removes the cached bytecode of modules' sources.  A .pyc is trusted
    while the source's size and mtime in whole seconds match, so an edit
    that keeps the size within the same second would load the old code."""
    for m in modules:
        source = getattr(m, "__file__", None)
        if source and source.endswith(".py"):
            try:
                os.remove(importlib.util.cache_from_source(source))
            except (OSError, ValueError, NotImplementedError):
                pass


def load(spec, middleware=(), reloading=False):
    """Returns the WSGI callable named by spec, wrapped in middleware.

    spec is "module.path:callable" or "/path/to/script.wsgi[:callable]"; the
    callable defaults to "application", may be dotted ("app.wsgi_app") and
    may end in "()" to call a factory ("app:create_app()").  middleware is a
    list of (module, callable); the first is the outermost.  With reloading,
    the app's code is always compiled from its source files.
    """
    if reloading:
        sys.dont_write_bytecode = True
    module, attrs, where = _load_target(spec)
    modules = [module]
    app = _resolve(module, attrs, where)
    if not callable(app):
        raise TypeError(f"{attrs} in {where} is not callable (it is {type(app).__name__})")
    for mod_name, attr in reversed(middleware):
        mw_module = importlib.import_module(mod_name)
        modules.append(mw_module)
        wrap = _resolve(mw_module, attr, f"middleware module {mod_name!r}")
        if not callable(wrap):
            raise TypeError(f"middleware {mod_name}:{attr} is not callable")
        app = wrap(app)
        if not callable(app):
            raise TypeError(f"middleware {mod_name}:{attr} returned {type(app).__name__}, not a WSGI callable")
    _loaded.update(spec=spec, middleware=tuple(middleware), modules=modules)
    if reloading:
        _forget_bytecode(modules)
    return app


def files():
    """The source files of the app's and the middleware's modules."""
    out = []
    for m in _loaded["modules"]:
        f = getattr(m, "__file__", None)
        if f and f not in out:
            out.append(os.path.abspath(f))
    return out


def reload():
    """Drops the app's and middleware's modules and loads them again.  If
    loading fails, the old modules are put back and the error raised."""
    saved = {}
    for m in _loaded["modules"]:
        name = m.__name__
        if sys.modules.get(name) is m:
            saved[name] = sys.modules.pop(name)
    importlib.invalidate_caches()
    try:
        return load(_loaded["spec"], _loaded["middleware"], reloading=True)
    except BaseException:
        sys.modules.update(saved)
        raise


def live_threads():
    """Names of the threads the app started that are still running."""
    import threading
    names = [t.name + ("" if t.daemon else " (non-daemon)")
             for t in threading.enumerate()
             if type(t).__name__ not in ("_MainThread", "_DummyThread") and t.is_alive()]
    return ", ".join(names)


class RequestTimeout(BaseException):
    """Raised in a request's thread when it runs past the handler's request
    timeout.  A BaseException, like KeyboardInterrupt, so that an app's
    "except Exception" does not swallow it."""


RequestTimeout.__module__ = "gowsgi"


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
