"""Run once in every interpreter a gowsgi handler creates, as module _gowsgi.

It loads the application and holds the few helpers that read better in Python
than in C: the file wrapper and traceback formatting.  Nothing here runs per
request except FileWrapper iteration for file-likes that have no usable
fileno().  It also cleans a closed handler's interpreter for the next handler
(recycle, below).
"""

import atexit
import gc
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading  # threading and weakref: for the recycling's baseline,
import traceback
import weakref  # which puts back state inside them (_INSIDE, below)


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


# ------------------------------------------------------------------ recycling
#
# A sub-interpreter that shares the GIL cannot be ended safely (see the
# README), so when its handler closes, recycle() cleans it for the next
# handler instead.  The state it comes back to is the baseline taken when
# this module has run: the interpreter as gowsgi sets it up, before any app.

# Modules of the standard library are not dropped: the first time an app
# has imported one, recycle() imports it again, afresh, in the cleaned
# interpreter and adds it to the baseline, so that from then on it is put
# back rather than imported again.  A dropped copy could not be freed for
# several of them (threading, random, logging and, from 3.12, asyncio
# register os.register_at_fork hooks, which nothing removes; _ctypes and
# _sqlite3 keep registries in C), and importing them for each app would
# take most of the time a framework's import takes.
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) - {
    "this", "antigravity", "idlelib", "test", "__hello__", "__phello__"}
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def _is_stdlib(name, module):
    """Whether module, imported as name, is the standard library's own (not
    a module of the same name on the app's path, not a __main__)."""
    if name.partition(".")[0] not in _STDLIB or name.endswith(".__main__"):
        return False
    where = getattr(module, "__file__", None)
    return where is None or os.path.abspath(where).startswith(_STDLIB_DIR)


def _copies(namespace):
    """Shallow copies of the lists, dicts and sets among namespace's values,
    by name: registries and caches that code changes in place."""
    out = {}
    for name, value in namespace.items():
        kind = type(value)
        if kind is list or kind is dict or kind is set:
            out[name] = kind(value)
    return out


# State kept inside objects of some baseline modules, which putting their
# globals back does not reach: (take, put back), by module name.

def _take_logging(logging):
    manager = logging.Logger.manager
    loggers = [logging.root] + [l for l in manager.loggerDict.values()
                                if isinstance(l, logging.Logger)]
    return ([(l, l.level, list(l.handlers), list(l.filters), l.propagate,
              l.disabled) for l in loggers], dict(manager.loggerDict), manager.disable)


def _put_logging(logging, state):
    loggers, logger_dict, disable = state
    manager = logging.Logger.manager
    manager.loggerDict.clear()
    manager.loggerDict.update(logger_dict)
    for logger, level, handlers, filters, propagate, disabled in loggers:
        logger.level = level
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.propagate = propagate
        logger.disabled = disabled
    manager.disable = disable
    getattr(manager, "_clear_cache", lambda: None)()


def _take_threading(threading):
    # Apps keep per-thread data on the thread objects too (asgiref's Local,
    # under Django, does): the request threads' objects are dropped with
    # threading._active, the baseline's are put back as they were.
    return [(t, dict(t.__dict__)) for t in threading._active.values()]


def _put_threading(threading, state):
    for thread, saved in state:
        thread.__dict__.clear()
        thread.__dict__.update(saved)


def _take_weakref(weakref):
    return set(weakref.finalize._registry)


def _put_weakref(weakref, state):
    # weakref.finalize keeps its callbacks, which may reach the app, until
    # their object dies; those registered since are run now if they would
    # run when the interpreter ends (atexit), and forgotten otherwise.
    for f in [f for f in list(weakref.finalize._registry) if f not in state]:
        try:
            f() if f.atexit else f.detach()
        except Exception:
            sys.excepthook(*sys.exc_info())


_INSIDE = {
    "logging": (_take_logging, _put_logging),
    "threading": (_take_threading, _put_threading),
    "weakref": (_take_weakref, _put_weakref),
}


def _snapshot():
    base = {
        "recursionlimit": sys.getrecursionlimit(),
        "int_max_str_digits": getattr(sys, "get_int_max_str_digits", lambda: None)(),
        "gc": (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()),
    }
    _take_modules(base)
    return base


def _take_modules(base):
    """Records the modules in sys.modules, with their state as it is now,
    as the baseline's."""
    base["modules"] = dict(sys.modules)
    base["namespaces"] = {}
    base["inside"] = {}
    for name, module in base["modules"].items():
        ns = getattr(module, "__dict__", None)
        if name != __name__ and type(ns) is dict:
            base["namespaces"][name] = (module, dict(ns), _copies(ns))
        if name in _INSIDE:
            try:
                base["inside"][name] = _INSIDE[name][0](module)
            except Exception:
                pass  # a Python whose module differs: its inner state stays
    base["caches"] = _caches(base["modules"])


def _same(a, b):
    """Whether a == b, for a namespace or container and its saved copy: at
    C speed, since most values are the very same objects.  A value whose
    comparison raises (an array, say) counts as changed."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _restore_namespace(module, saved, containers):
    """Puts module's globals back as saved: names added since are removed,
    names rebound are bound again, and lists, dicts and sets get their saved
    contents back."""
    ns = module.__dict__
    if not _same(ns, saved):
        for name in [n for n in ns if n not in saved]:
            del ns[name]
        for name, value in saved.items():
            if ns.get(name, ns) is not value:
                ns[name] = value
    for name, copy in containers.items():
        value = saved[name]
        if (module is sys and name == "modules") or _same(value, copy):
            continue
        if type(value) is list:
            value[:] = copy
        else:
            value.clear()
            value.update(copy)


def _close_logging(logging, base):
    """Flushes and closes the logging handlers the app made, as the end of
    an interpreter does.  A logging module the app imported, which cannot
    be freed (see _STDLIB), also lets go of its loggers."""
    state = base["inside"].get("logging")
    keep = {h for entry in state[0] for h in entry[2]} if state else set()
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        if handler is None or handler in keep:
            continue
        try:
            handler.acquire()
            try:
                handler.flush()
                handler.close()
            finally:
                handler.release()
        except Exception:
            pass
    if state is None:
        manager = logging.Logger.manager
        for logger in [logging.root] + list(manager.loggerDict.values()):
            if isinstance(logger, logging.Logger):
                logger.handlers.clear()
                logger.filters.clear()
        manager.loggerDict.clear()


def _caches(modules):
    """The functools.lru_cache functions among the modules' globals, and
    typing's cache cleaners: caches that may come to hold an app's
    objects."""
    import functools
    wrapper = getattr(functools, "_lru_cache_wrapper", None)
    clears = []
    for module in modules.values():
        ns = getattr(module, "__dict__", None)
        if type(ns) is not dict or wrapper is None:
            continue
        clears += [v.cache_clear for v in ns.values() if isinstance(v, wrapper)]
    typing = modules.get("typing")
    return clears + list(getattr(typing, "_cleanups", ()))


def _warnings_mutated():
    """Tells the warnings machinery that its filters changed (they were put
    back), so that it drops the caches it keeps of them: before 3.14 with
    _filters_mutated(), from 3.14 with _filters_mutated_lock_held() under
    the module's lock."""
    import _warnings
    mutated = getattr(_warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()
        return
    mutated = getattr(_warnings, "_filters_mutated_lock_held", None)
    if mutated is None:
        return
    acquire = getattr(_warnings, "_acquire_lock", None)
    release = getattr(_warnings, "_release_lock", None)
    if acquire is None or release is None:
        return
    acquire()
    try:
        mutated()
    finally:
        release()


def recycle():
    """Cleans the interpreter of the app a closed handler loaded, for the
    next handler.

    Every module imported since the baseline is dropped from sys.modules,
    and the baseline's modules are put back there; standard modules the
    app imported are then imported afresh and join the baseline (see
    _STDLIB).  The baseline's globals are put back, with the contents of
    their lists, dicts and sets (sys.path, sys.meta_path, sys.argv,
    warnings filters, registries, caches), and so are builtins' and
    __main__'s.  The logging handlers the app made are closed, and the
    loggers' configuration, the thread objects and weakref finalizers of
    the baseline, the recursion limit, the garbage collector's settings
    and the atexit functions (which never run: gowsgi does not finalize
    interpreters) are put back; the garbage is collected.  What stays: the
    C state of extension modules, os.environ changes in the process,
    os.register_at_fork and codecs registrations, audit hooks, and changes
    made inside other objects of the baseline (a class attribute of a
    standard module, say).
    """
    base = _baseline
    if base is None:
        raise RuntimeError("no baseline was taken when the interpreter was set up")
    modules = sys.modules
    kept = [n for n, m in modules.items() if n not in base["modules"] and _is_stdlib(n, m)]
    if "logging" in modules:
        _close_logging(modules["logging"], base)
    if "weakref" in base["inside"]:
        _put_weakref(modules["weakref"], base["inside"]["weakref"])
    for name in [n for n in modules if n not in base["modules"]]:
        del modules[name]
    for name, module in base["modules"].items():
        if modules.get(name) is not module:
            modules[name] = module
    for module, saved, containers in base["namespaces"].values():
        _restore_namespace(module, saved, containers)
    _warnings_mutated()
    for name, state in base["inside"].items():
        if name != "weakref":
            _INSIDE[name][1](base["modules"][name], state)
    atexit._clear()
    sys.setrecursionlimit(base["recursionlimit"])
    if base["int_max_str_digits"] is not None:
        sys.set_int_max_str_digits(base["int_max_str_digits"])
    enabled, threshold, frozen = base["gc"]
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.enable() if enabled else gc.disable()
    for clear in base["caches"]:
        clear()
    importlib.invalidate_caches()
    _loaded.update(spec=None, middleware=(), modules=[])
    gc.collect()
    if kept:
        for name in kept:
            try:
                importlib.import_module(name)
            except Exception:
                pass  # it does not import on its own: dropped each time
        # The baseline, now with them (and their names in their packages).
        _take_modules(base)


def reuse(environ):
    """Readies a cleaned interpreter for a new handler.  environ is the
    process's environment now, as a list of b"NAME=value": os.environ is
    read once, when an interpreter starts, and a fresh interpreter would
    see what was set since (t.Setenv in a Go test, say)."""
    data = {}
    for item in environ:
        name, sep, value = item.partition(b"=")
        if sep and name and name not in data:
            data[name] = value
    os.environ._data.clear()
    os.environ._data.update(data)


try:
    _baseline = _snapshot()
except Exception:  # not recycled, then; the handler works as before
    _baseline = None
