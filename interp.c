/* The runtime, thread states and interpreters: starting Python, creating,
 * loading, reloading and ending the interpreters handlers own. */
#include "gowsgi.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

static PyThreadState *main_ts; /* the control thread's state */
static PyInterpreterState *main_interp;
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gowsgi_interp *registry; /* live interpreters */

/* ------------------------------------------------------------- runtime */

static int status_fail(PyStatus st, gowsgi_error *err)
{
	err_set(err, "PyStatus", st.err_msg ? st.err_msg : "Python failed to start");
	return -1;
}

int gowsgi_runtime_init(const gowsgi_settings *s, gowsgi_error *err)
{
	PyConfig config;
	PyStatus st;

	/* The headers this was compiled with and the library it runs must be
	 * the same Python: another's structures and macros crash it later.
	 * Py_GetVersion needs no running Python. */
	int major = 0, minor = 0;
	if (sscanf(Py_GetVersion(), "%d.%d", &major, &minor) != 2 || major != PY_MAJOR_VERSION ||
	    minor != PY_MINOR_VERSION) {
		char msg[256];
		snprintf(msg, sizeof msg,
			 "compiled with the headers of Python %s but running Python %d.%d: build with the "
			 "same Python for pkg-config and for the library (with scripts/static-ldflags.sh, "
			 "export PKG_CONFIG_PATH before running it)",
			 PY_VERSION, major, minor);
		err_set(err, "RuntimeError", msg);
		return -1;
	}

	PyConfig_InitIsolatedConfig(&config);
	/* Go owns signals; CPython would otherwise set SIGPIPE to ignored and
	 * install a SIGINT handler. */
	config.install_signal_handlers = 0;
	config.optimization_level = s->optimize;
	config.parse_argv = 0;
	if (s->executable && *s->executable) {
		st = PyConfig_SetBytesString(&config, &config.executable, s->executable);
		if (PyStatus_Exception(st))
			goto failure;
		st = PyConfig_SetBytesString(&config, &config.program_name, s->executable);
		if (PyStatus_Exception(st))
			goto failure;
	}
	if (s->home && *s->home) {
		st = PyConfig_SetBytesString(&config, &config.home, s->home);
		if (PyStatus_Exception(st))
			goto failure;
	}
	st = Py_InitializeFromConfig(&config);
	if (PyStatus_Exception(st))
		goto failure;
	PyConfig_Clear(&config);
	main_interp = PyInterpreterState_Main();
	main_ts = PyEval_SaveThread();
	return 0;

failure:
	PyConfig_Clear(&config);
	return status_fail(st, err);
}

void gowsgi_runtime_version(char *buf, size_t n)
{
	snprintf(buf, n, "%s", Py_GetVersion());
}

int gowsgi_python_static(void)
{
	/* A string libpython returns lies in its own object, where the
	 * address of one of its functions may be a stub in the program's. */
	Dl_info py, ours;
	if (!dladdr((const void *)Py_GetCompiler(), &py) || !dladdr((void *)gowsgi_python_static, &ours))
		return 0;
	return py.dli_fbase == ours.dli_fbase;
}

/* -------------------------------------------------------- thread states */

/* Per OS thread: a thread state of the main interpreter, created first, so
 * it is the one PyGILState_* binds to this thread; and a small cache of
 * sub-interpreter thread states keyed by interpreter ID (IDs are never
 * reused, so an entry of an ended interpreter never matches). */
#define TS_CACHE 16
static __thread PyThreadState *ts_anchor;
static __thread struct {
	int64_t id;
	PyThreadState *ts;
} ts_cache[TS_CACHE];

static int interp_alive(int64_t id)
{
	int alive = 0;
	pthread_mutex_lock(&registry_mu);
	for (gowsgi_interp *p = registry; p; p = p->next)
		if (p->id == id)
			alive = 1;
	pthread_mutex_unlock(&registry_mu);
	return alive;
}

/* Records ts as one of gi's.  Returns 0, or -1 out of memory. */
static int ts_register(gowsgi_interp *gi, PyThreadState *ts)
{
	int rc = 0;
	pthread_mutex_lock(&registry_mu);
	if (gi->ntstates == gi->captstates) {
		size_t cap = gi->captstates ? 2 * gi->captstates : 8;
		PyThreadState **n = realloc(gi->tstates, cap * sizeof *n);
		if (n == NULL) {
			rc = -1;
			goto out;
		}
		gi->tstates = n;
		gi->captstates = cap;
	}
	gi->tstates[gi->ntstates++] = ts;
out:
	pthread_mutex_unlock(&registry_mu);
	return rc;
}

PyThreadState *ts_get(gowsgi_interp *gi, int *temp)
{
	*temp = 0;
	if (ts_anchor == NULL)
		ts_anchor = PyThreadState_New(main_interp);
	if (gi->is_main)
		return ts_anchor;
	int free_slot = -1;
	for (int i = 0; i < TS_CACHE; i++) {
		if (ts_cache[i].ts == NULL) {
			if (free_slot < 0)
				free_slot = i;
		} else if (ts_cache[i].id == gi->id) {
			return ts_cache[i].ts;
		}
	}
	if (free_slot < 0) {
		for (int i = 0; i < TS_CACHE && free_slot < 0; i++)
			if (!interp_alive(ts_cache[i].id))
				free_slot = i;
	}
	PyThreadState *ts = PyThreadState_New(gi->interp);
	if (ts == NULL)
		return NULL;
	if (free_slot < 0 || ts_register(gi, ts) < 0) {
		/* More live interpreters than cache entries: rare enough to
		 * pay for a thread state per call. */
		*temp = 1;
		return ts;
	}
	ts_cache[free_slot].id = gi->id;
	ts_cache[free_slot].ts = ts;
	return ts;
}

PyThreadState *gi_enter(gowsgi_interp *gi, int *temp)
{
	PyThreadState *ts = ts_get(gi, temp);
	if (ts == NULL)
		Py_FatalError("gowsgi: out of memory for a thread state");
	PyEval_RestoreThread(ts);
	return ts;
}

void gi_leave(PyThreadState *ts, int temp)
{
	if (temp) {
		PyThreadState_Clear(ts);
		PyThreadState_DeleteCurrent();
		return;
	}
	PyEval_SaveThread();
}

/* Deletes the state (without the GIL) of a thread that is exiting, as
 * ts_get gave it, and the thread's main-interpreter anchor. */
void ts_release(gowsgi_interp *gi, PyThreadState *ts, int temp)
{
	if (ts == NULL)
		return;
	if (!gi->is_main && !temp) {
		pthread_mutex_lock(&registry_mu);
		for (size_t i = 0; i < gi->ntstates; i++) {
			if (gi->tstates[i] == ts) {
				gi->tstates[i] = gi->tstates[--gi->ntstates];
				break;
			}
		}
		pthread_mutex_unlock(&registry_mu);
		for (int i = 0; i < TS_CACHE; i++)
			if (ts_cache[i].ts == ts)
				ts_cache[i].ts = NULL;
	}
	if (ts != ts_anchor) {
		PyEval_RestoreThread(ts);
		PyThreadState_Clear(ts);
		PyThreadState_DeleteCurrent();
	}
	if (ts_anchor != NULL) {
		PyEval_RestoreThread(ts_anchor);
		PyThreadState_Clear(ts_anchor);
		PyThreadState_DeleteCurrent();
		ts_anchor = NULL;
	}
}

/* ---------------------------------------------------------- interpreters */

/* Fills gi's references from the bootstrap module.  Needs gi's GIL. */
static int interp_setup(gowsgi_interp *gi, const char *bootstrap)
{
	PyObject *mod = NULL, *code = NULL, *res = NULL, *version = NULL, *dict;
	int rc = -1;

	mod = PyImport_AddModule("_gowsgi"); /* borrowed */
	if (mod == NULL)
		goto failure;
	Py_INCREF(mod);
	dict = PyModule_GetDict(mod);
	code = Py_CompileString(bootstrap, "<gowsgi bootstrap>", Py_file_input);
	if (code == NULL)
		goto failure;
	res = PyEval_EvalCode(code, dict, dict);
	if (res == NULL)
		goto failure;
	PyObject *format = PyDict_GetItemString(dict, "format_exception");
	PyObject *wrapper = PyDict_GetItemString(dict, "FileWrapper");
	PyObject *timeout = PyDict_GetItemString(dict, "RequestTimeout");
	if (!format || !wrapper || !timeout) {
		PyErr_SetString(PyExc_SystemError, "bootstrap is incomplete");
		goto failure;
	}
	Py_XSETREF(gi->format_exception, Py_NewRef(format));
	Py_XSETREF(gi->file_wrapper, Py_NewRef(wrapper));
	Py_XSETREF(gi->timeout_exc, Py_NewRef(timeout));
	PyObject *interval = PySys_GetObject("getswitchinterval"); /* borrowed */
	if (interval == NULL) {
		PyErr_SetString(PyExc_SystemError, "sys.getswitchinterval is missing");
		goto failure;
	}
	Py_XSETREF(gi->switch_interval, Py_NewRef(interval));
	if (input_setup(gi) < 0 || environ_setup(gi) < 0)
		goto failure;
	version = Py_BuildValue("(ii)", 1, 0);
	if (version == NULL)
		goto failure;
	gi->environ_base = Py_BuildValue(
		"{s:O,s:s,s:O,s:O,s:O,s:O,s:O}",
		"wsgi.version", version, "wsgi.url_scheme", "http",
		"wsgi.multithread", Py_True, "wsgi.multiprocess", Py_False,
		"wsgi.run_once", Py_False, "wsgi.input_terminated", Py_True,
		"wsgi.file_wrapper", gi->file_wrapper);
	if (gi->environ_base == NULL)
		goto failure;
	rc = 0;
failure:
	Py_XDECREF(version);
	Py_XDECREF(res);
	Py_XDECREF(code);
	Py_XDECREF(mod);
	return rc;
}

/* Marks C extension modules that are not safe in an own-GIL interpreter
 * of this Python as unavailable, so the standard library's pure-Python
 * versions load instead.  Needs the new interpreter's GIL. */
#if PY_VERSION_HEX >= 0x030C0000
static int guard_isolated(void)
{
	/* _datetime and _decimal keep state that own-GIL interpreters end up
	 * sharing: with a pool of them importing datetime and decimal, 3.12.1
	 * died with "double free or corruption" and 3.13.0 with SIGSEGV when
	 * the pool ended (TestIsolatedDatetimeDecimal without this guard).
	 * CPython's work on it: gh-117398 (isolating _datetime, 3.13),
	 * gh-136421 and gh-136423 (concurrent init and teardown of _datetime,
	 * fixed after 3.13.0).  datetime and decimal then use _pydatetime and
	 * _pydecimal, the same API in pure Python.  Py_Version is the running
	 * library's version, which may differ from the headers'. */
	if (Py_Version < 0x030E0000) {
		PyObject *modules = PyImport_GetModuleDict();
		if (PyDict_SetItemString(modules, "_datetime", Py_None) < 0 ||
		    PyDict_SetItemString(modules, "_decimal", Py_None) < 0)
			return -1;
	}
	return 0;
}
#endif

gowsgi_interp *gowsgi_interp_new(int kind, uintptr_t handler, gowsgi_error *err)
{
	gowsgi_interp *gi = calloc(1, sizeof *gi);
	if (gi == NULL) {
		err_set(err, "MemoryError", "out of memory");
		return NULL;
	}
	gi->is_main = kind == GOWSGI_MAIN;
	gi->isolated = kind == GOWSGI_ISOLATED;
	gi->handler = handler;
	PyEval_RestoreThread(main_ts);
	if (gi->is_main) {
		gi->interp = main_interp;
		gi->id = PyInterpreterState_GetID(gi->interp);
		PyEval_SaveThread();
		goto registered;
	}
	PyThreadState *ts = NULL;
	if (kind == GOWSGI_ISOLATED) {
#if PY_VERSION_HEX >= 0x030C0000
		PyInterpreterConfig config = {
			.use_main_obmalloc = 0,
			.allow_fork = 0,
			.allow_exec = 0,
			.allow_threads = 1,
			.allow_daemon_threads = 0,
			.check_multi_interp_extensions = 1,
			.gil = PyInterpreterConfig_OWN_GIL,
		};
		/* With its own GIL, the new interpreter's GIL is held on return
		 * and the main interpreter's is released. */
		PyStatus st = Py_NewInterpreterFromConfig(&ts, &config);
		if (PyStatus_Exception(st) || ts == NULL) {
			err_set(err, "RuntimeError", st.err_msg ? st.err_msg : "Py_NewInterpreterFromConfig failed");
			PyThreadState_Swap(main_ts);
			PyEval_SaveThread();
			free(gi);
			return NULL;
		}
		if (guard_isolated() < 0) {
			err_fill(NULL, err);
			Py_EndInterpreter(ts);
			free(gi);
			return NULL;
		}
#else
		err_set(err, "RuntimeError", "own-GIL interpreters need Python 3.12 or newer");
		PyEval_SaveThread();
		free(gi);
		return NULL;
#endif
	} else {
		ts = Py_NewInterpreter();
		if (ts == NULL) {
			if (PyErr_Occurred())
				err_fill(NULL, err);
			else
				err_set(err, "RuntimeError", "Py_NewInterpreter failed");
			PyThreadState_Swap(main_ts);
			PyEval_SaveThread();
			free(gi);
			return NULL;
		}
	}
	gi->owner = ts;
	gi->interp = ts->interp;
	gi->id = PyInterpreterState_GetID(gi->interp);
	PyEval_SaveThread();

registered:
	pthread_mutex_lock(&registry_mu);
	gi->next = registry;
	registry = gi;
	pthread_mutex_unlock(&registry_mu);
	return gi;
}

/* Splits n bytes of NUL-terminated strings into a new list of str. */
static PyObject *strings_list(const char *p, size_t n)
{
	PyObject *list = PyList_New(0);
	for (size_t i = 0; list != NULL && i < n;) {
		size_t len = strnlen(p + i, n - i);
		PyObject *s = PyUnicode_DecodeFSDefaultAndSize(p + i, len);
		if (s == NULL || PyList_Append(list, s) < 0)
			Py_CLEAR(list);
		Py_XDECREF(s);
		i += len + 1;
	}
	return list;
}

/* Fills *files with the app's source files from _gowsgi.files(), as
 * malloc'd NUL-terminated strings one after the other; *fileslen is their
 * total size.  Returns 0 or -1 with an exception set. */
static int files_out(PyObject *mod, char **files, size_t *fileslen)
{
	char *out = NULL;
	int rc = -1;
	PyObject *list = PyObject_CallMethod(mod, "files", NULL);
	if (list == NULL)
		return -1;
	if (!PyList_Check(list)) {
		PyErr_SetString(PyExc_TypeError, "_gowsgi.files() must return a list");
		goto failure;
	}
	size_t total = 0;
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
		const char *f = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
		if (f == NULL)
			goto failure;
		total += strlen(f) + 1;
	}
	out = malloc(total ? total : 1);
	if (out == NULL) {
		PyErr_NoMemory();
		goto failure;
	}
	char *p = out;
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
		const char *f = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
		size_t n = strlen(f) + 1;
		memcpy(p, f, n);
		p += n;
	}
	free(*files);
	*files = out;
	*fileslen = total;
	rc = 0;
failure:
	Py_DECREF(list);
	return rc;
}

/* Makes app (a reference it steals) the interpreter's app.  Requests
 * running the old one hold their own reference to it. */
static void set_app(gowsgi_interp *gi, PyObject *app)
{
	SHARED_LOCK();
	PyObject *old = gi->app;
	gi->app = app;
	SHARED_UNLOCK();
	Py_XDECREF(old);
}

/* Makes app, what the bootstrap's load or reload returned (a new reference,
 * or NULL with an exception set), gi's app, and fills the files to watch.
 * Returns 0, or -1 with an exception set. */
static int take_app(gowsgi_interp *gi, PyObject *mod, PyObject *app, char **files,
		    size_t *fileslen)
{
	if (app == NULL)
		return -1;
	if (files_out(mod, files, fileslen) < 0) {
		Py_DECREF(app);
		return -1;
	}
	set_app(gi, app);
	return 0;
}

/* Makes the middleware list, (module, callable) pairs from the strings of
 * mw (mwlen bytes).  Returns a new list, or NULL with an exception set. */
static PyObject *middleware_pairs(const char *mw, size_t mwlen)
{
	PyObject *list = strings_list(mw, mwlen), *pairs = NULL, *t = NULL;
	if (list == NULL)
		return NULL;
	pairs = PyList_New(0);
	if (pairs == NULL)
		goto failure;
	for (Py_ssize_t i = 0; i + 1 < PyList_GET_SIZE(list); i += 2) {
		t = PyTuple_Pack(2, PyList_GET_ITEM(list, i), PyList_GET_ITEM(list, i + 1));
		if (t == NULL || PyList_Append(pairs, t) < 0)
			goto failure;
		Py_CLEAR(t);
	}
	Py_DECREF(list);
	return pairs;
failure:
	Py_XDECREF(t);
	Py_XDECREF(pairs);
	Py_DECREF(list);
	return NULL;
}

int gowsgi_interp_load(gowsgi_interp *gi, const char *bootstrap, const char *paths,
		       size_t pathslen, const char *spec, const char *mw, size_t mwlen,
		       int reloading, int multiprocess, char **files, size_t *fileslen,
		       gowsgi_error *err)
{
	int temp, rc = -1;
	PyObject *mod = NULL, *list = NULL, *pairs = NULL, *res = NULL;
	PyThreadState *ts = gi_enter(gi, &temp);

	if (gi->environ_base == NULL && interp_setup(gi, bootstrap) < 0)
		goto failure;
	if (PyDict_SetItemString(gi->environ_base, "wsgi.multiprocess",
				 multiprocess ? Py_True : Py_False) < 0)
		goto failure;
	mod = PyImport_ImportModule("_gowsgi");
	if (mod == NULL)
		goto failure;
	list = strings_list(paths, pathslen);
	if (list == NULL)
		goto failure;
	res = PyObject_CallMethod(mod, "add_paths", "O", list);
	if (res == NULL)
		goto failure;
	Py_CLEAR(res);
	pairs = middleware_pairs(mw, mwlen);
	if (pairs == NULL)
		goto failure;
	rc = take_app(gi, mod, PyObject_CallMethod(mod, "load", "sOi", spec, pairs, reloading),
		      files, fileslen);
failure:
	if (rc < 0)
		err_fill(gi->format_exception, err);
	Py_XDECREF(res);
	Py_XDECREF(pairs);
	Py_XDECREF(list);
	Py_XDECREF(mod);
	gi_leave(ts, temp);
	return rc;
}

int gowsgi_interp_reload(gowsgi_interp *gi, char **files, size_t *fileslen, gowsgi_error *err)
{
	int temp, rc = -1;
	PyThreadState *ts = gi_enter(gi, &temp);
	PyObject *mod = PyImport_ImportModule("_gowsgi");
	if (mod != NULL)
		rc = take_app(gi, mod, PyObject_CallMethod(mod, "reload", NULL), files, fileslen);
	if (rc < 0)
		err_fill(gi->format_exception, err);
	Py_XDECREF(mod);
	gi_leave(ts, temp);
	return rc;
}

/* Counts the thread states of gi's interpreter that this file did not
 * create: threads the app started.  Needs gi's GIL. */
static int foreign_threads(gowsgi_interp *gi, PyThreadState *self)
{
	int n = 0;
	pthread_mutex_lock(&registry_mu);
	for (PyThreadState *t = PyInterpreterState_ThreadHead(gi->interp); t; t = PyThreadState_Next(t)) {
		int ours = t == self || t == gi->owner;
		for (size_t i = 0; !ours && i < gi->ntstates; i++)
			ours = gi->tstates[i] == t;
		n += !ours;
	}
	pthread_mutex_unlock(&registry_mu);
	return n;
}

int gowsgi_interp_threads(gowsgi_interp *gi, char **names)
{
	int temp;
	PyThreadState *ts = gi_enter(gi, &temp);
	int n = gi->is_main ? 0 : foreign_threads(gi, ts);
	*names = NULL;
	if (n > 0) {
		PyObject *mod = PyImport_ImportModule("_gowsgi");
		PyObject *r = mod ? PyObject_CallMethod(mod, "live_threads", NULL) : NULL;
		const char *s = r ? PyUnicode_AsUTF8(r) : NULL;
		*names = strdup(s ? s : "?");
		PyErr_Clear();
		Py_XDECREF(r);
		Py_XDECREF(mod);
	}
	gi_leave(ts, temp);
	return n;
}

/* Whether an interpreter can be ended safely.
 *
 * A legacy sub-interpreter (sharing the GIL) never is: extension modules
 * with single-phase init, common outside the standard library, are set up
 * once and each later interpreter gets a copy of the first importer's
 * module dict, so ending that first interpreter leaves the copies pointing
 * at its freed objects (CPython gh-116510 for interned strings on 3.12 and
 * 3.13.0).  Such interpreters are left alive without the handler's
 * references: a leak, not a crash.  An own-GIL interpreter refuses those
 * modules, and is ended. */
static int can_end(gowsgi_interp *gi)
{
#if PY_VERSION_HEX >= 0x030C0000
	return gi->isolated;
#else
	(void)gi;
	return 0;
#endif
}

int gowsgi_interp_end(gowsgi_interp *gi)
{
	pthread_mutex_lock(&registry_mu);
	for (gowsgi_interp **pp = &registry; *pp; pp = &(*pp)->next) {
		if (*pp == gi) {
			*pp = gi->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_mu);

	PyEval_RestoreThread(gi->is_main ? main_ts : gi->owner);
	/* Py_EndInterpreter joins non-daemon threads (which may never end)
	 * and aborts the process if any other thread remains. */
	int threads = gi->is_main ? 0 : foreign_threads(gi, gi->owner);
	int end = !gi->is_main && threads == 0 && can_end(gi);
	pthread_mutex_lock(&registry_mu);
	if (end) {
		/* Only what is ended loses its thread states: one freed under
		 * an interpreter left alive is a pointer other code may still
		 * follow. */
		for (size_t i = 0; i < gi->ntstates; i++) {
			PyThreadState_Clear(gi->tstates[i]);
			PyThreadState_Delete(gi->tstates[i]);
		}
	}
	free(gi->tstates);
	gi->tstates = NULL;
	gi->ntstates = 0;
	pthread_mutex_unlock(&registry_mu);
	Py_CLEAR(gi->app);
	Py_CLEAR(gi->environ_base);
	for (int i = 0; i < NKEYS; i++)
		Py_CLEAR(gi->keys[i]);
	Py_CLEAR(gi->key_input);
	Py_CLEAR(gi->key_errors);
	Py_CLEAR(gi->key_scheme);
	Py_CLEAR(gi->scheme_https);
	Py_CLEAR(gi->format_exception);
	Py_CLEAR(gi->file_wrapper);
	Py_CLEAR(gi->timeout_exc);
	Py_CLEAR(gi->switch_interval);
	Py_CLEAR(gi->errors_cls);
	Py_CLEAR(gi->input_type);
	if (end) {
		/* Own GIL only (3.12+): it ends with no thread state current
		 * and its GIL gone. */
		Py_EndInterpreter(gi->owner);
	} else {
		/* Left alive, without our references: a leak instead of a
		 * hang or a crash. */
		PyEval_SaveThread();
	}
	free(gi);
	return end;
}

/* ------------------------------------------------------------- recycling */

int64_t gowsgi_interp_id(gowsgi_interp *gi) { return gi->id; }

int gowsgi_interp_recycle(gowsgi_interp *gi, gowsgi_error *err)
{
	int temp, rc = -1;
	PyObject *mod = NULL; /* new: the _gowsgi module */
	PyObject *res = NULL; /* new: what recycle() returned */
	PyThreadState *ts = gi_enter(gi, &temp);

	if (gi->is_main || gi->isolated || gi->environ_base == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "only a sub-interpreter sharing the GIL, set up, is recycled");
		goto failure;
	}
	if (foreign_threads(gi, ts) > 0) {
		rc = 1;
		goto failure;
	}
	/* The app goes first, so that the collection in recycle() frees it. */
	set_app(gi, NULL);
	mod = PyImport_ImportModule("_gowsgi");
	if (mod == NULL)
		goto failure;
	res = PyObject_CallMethod(mod, "recycle", NULL);
	if (res == NULL)
		goto failure;
	/* A finalizer the collection ran may have started one. */
	rc = foreign_threads(gi, ts) > 0 ? 1 : 0;
failure:
	if (rc < 0)
		err_fill(gi->format_exception, err);
	Py_XDECREF(res);
	Py_XDECREF(mod);
	gi_leave(ts, temp);
#ifdef __GLIBC__
	/* The app's objects are freed; give the pages malloc keeps back. */
	if (rc == 0)
		malloc_trim(0);
#endif
	return rc;
}

extern char **environ;

int gowsgi_interp_reuse(gowsgi_interp *gi, uintptr_t handler, gowsgi_error *err)
{
	int temp, rc = -1;
	PyObject *mod = NULL;  /* new: the _gowsgi module */
	PyObject *list = NULL; /* new: the environment, a list of bytes */
	PyObject *res = NULL;  /* new: what reuse() returned */
	PyThreadState *ts = gi_enter(gi, &temp);

	gi->handler = handler; /* each request's wsgi.errors reports there */
	list = PyList_New(0);
	for (char **e = environ; list != NULL && e != NULL && *e != NULL; e++) {
		PyObject *b = PyBytes_FromString(*e);
		if (b == NULL || PyList_Append(list, b) < 0)
			Py_CLEAR(list);
		Py_XDECREF(b);
	}
	if (list == NULL)
		goto failure;
	mod = PyImport_ImportModule("_gowsgi");
	if (mod == NULL)
		goto failure;
	res = PyObject_CallMethod(mod, "reuse", "O", list);
	if (res == NULL)
		goto failure;
	rc = 0;
failure:
	if (rc < 0)
		err_fill(gi->format_exception, err);
	Py_XDECREF(res);
	Py_XDECREF(list);
	Py_XDECREF(mod);
	gi_leave(ts, temp);
	return rc;
}
