/*
 * The C side of gowsgi.  See cpython.h for the API and its crossing budget.
 *
 * Conventions: every function that holds references releases them at one
 * "failure:" label; a comment on each function says what it borrows and what
 * it returns.  Only code in this file touches PyObject pointers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpython.h"
#include "_cgo_export.h"

/* With the GIL, holding it serializes the few fields two threads touch: the
 * app callable a reload replaces, and a request's timeout watch.  A
 * free-threaded build (Py_GIL_DISABLED) has no GIL, so a mutex does it
 * there.  Untested: no such build could be had. */
#ifdef Py_GIL_DISABLED
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
#define SHARED_LOCK() pthread_mutex_lock(&shared_mu)
#define SHARED_UNLOCK() pthread_mutex_unlock(&shared_mu)
#else
#define SHARED_LOCK() ((void)0)
#define SHARED_UNLOCK() ((void)0)
#endif

/* ---------------------------------------------------------------- keys */

/* Environ keys Go refers to by index (see environ.go), interned once per
 * interpreter so the common keys cost no allocation and keep their hash. */
static const char *const gowsgi_keys[] = {
	"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
	"CONTENT_TYPE", "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT",
	"SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "REQUEST_URI",
	"HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING",
	"HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION", "HTTP_COOKIE", "HTTP_REFERER",
	"HTTP_CACHE_CONTROL", "HTTP_ORIGIN", "HTTP_IF_NONE_MATCH",
	"HTTP_IF_MODIFIED_SINCE", "HTTP_X_FORWARDED_FOR",
	"HTTP_X_FORWARDED_PROTO", "HTTP_X_REQUESTED_WITH", "HTTP_UPGRADE",
};
#define NKEYS ((int)(sizeof gowsgi_keys / sizeof gowsgi_keys[0]))

int gowsgi_nkeys(void) { return NKEYS; }
const char *gowsgi_key(int i) { return gowsgi_keys[i]; }

/* ---------------------------------------------------------- interpreter */

struct gowsgi_interp {
	int is_main;
	int isolated; /* its own GIL */
	int64_t id;
	PyInterpreterState *interp;
	PyThreadState *owner; /* sub-interpreters: the state Py_NewInterpreter made */
	uintptr_t handler;

	/* Owned references, valid while the interpreter lives. */
	PyObject *app;
	PyObject *environ_base;
	PyObject *keys[NKEYS];
	PyObject *key_input, *key_scheme, *scheme_https;
	PyObject *format_exception;
	PyObject *file_wrapper;
	PyObject *timeout_exc;
	PyTypeObject *input_type;

	/* Thread states created for this interpreter on request threads;
	 * guarded by registry_mu. */
	PyThreadState **tstates;
	size_t ntstates, captstates;
	gowsgi_interp *next;
};

static PyThreadState *main_ts;          /* the control thread's state */
static PyInterpreterState *main_interp;
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gowsgi_interp *registry;          /* live interpreters */

/* Per OS thread: a thread state of the main interpreter, created first and
 * never deleted, so it is the one PyGILState_* binds to this thread; and a
 * small cache of sub-interpreter thread states keyed by interpreter ID (IDs
 * are never reused, so an entry of an ended interpreter never matches). */
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

/* Returns this thread's state for gi (borrowed; kept in the cache), or a new
 * temporary one with *temp set, which the caller deletes after use.  The GIL
 * is not held. */
static PyThreadState *ts_get(gowsgi_interp *gi, int *temp)
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
	if (free_slot < 0) {
		/* More live interpreters than cache entries: rare enough to
		 * pay for a thread state per call. */
		*temp = 1;
		return ts;
	}
	pthread_mutex_lock(&registry_mu);
	if (gi->ntstates == gi->captstates) {
		size_t cap = gi->captstates ? 2 * gi->captstates : 8;
		PyThreadState **n = realloc(gi->tstates, cap * sizeof *n);
		if (n == NULL) {
			pthread_mutex_unlock(&registry_mu);
			*temp = 1;
			return ts;
		}
		gi->tstates = n;
		gi->captstates = cap;
	}
	gi->tstates[gi->ntstates++] = ts;
	pthread_mutex_unlock(&registry_mu);
	ts_cache[free_slot].id = gi->id;
	ts_cache[free_slot].ts = ts;
	return ts;
}

/* Attaches a thread state of gi and takes its GIL. */
static PyThreadState *gi_enter(gowsgi_interp *gi, int *temp)
{
	PyThreadState *ts = ts_get(gi, temp);
	PyEval_RestoreThread(ts);
	return ts;
}

/* Detaches and releases the GIL; deletes a temporary thread state. */
static void gi_leave(PyThreadState *ts, int temp)
{
	if (temp) {
		PyThreadState_Clear(ts);
		PyThreadState_DeleteCurrent();
		return;
	}
	PyEval_SaveThread();
}

/* ---------------------------------------------------------------- errors */

void gowsgi_error_free(gowsgi_error *e)
{
	free(e->type);
	free(e->message);
	free(e->traceback);
	e->type = e->message = e->traceback = NULL;
}

static char *str_dup(PyObject *o)
{
	const char *s = o ? PyUnicode_AsUTF8(o) : NULL;
	if (s == NULL) {
		PyErr_Clear();
		s = "<unprintable>";
	}
	return strdup(s);
}

static PyObject *err_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
	return PyErr_GetRaisedException();
#else
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	if (type == NULL)
		return NULL;
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL && value != NULL)
		PyException_SetTraceback(value, tb);
	Py_XDECREF(type);
	Py_XDECREF(tb);
	return value;
#endif
}

/* Moves the raised exception into *err (type, message, traceback); the
 * Python error indicator is cleared.  format is the interpreter's
 * traceback formatter, or NULL. */
static void err_fill(PyObject *format, gowsgi_error *err)
{
	PyObject *exc = err_take();
	gowsgi_error_free(err);
	if (exc == NULL) {
		err->type = strdup("SystemError");
		err->message = strdup("error without an exception set");
		err->traceback = strdup("");
		return;
	}
	PyObject *tname = PyObject_GetAttrString((PyObject *)Py_TYPE(exc), "__qualname__");
	PyObject *msg = PyObject_Str(exc);
	PyObject *tb = format ? PyObject_CallOneArg(format, exc) : NULL;
	err->type = str_dup(tname);
	err->message = str_dup(msg);
	err->traceback = str_dup(tb);
	Py_XDECREF(tname);
	Py_XDECREF(msg);
	Py_XDECREF(tb);
	Py_DECREF(exc);
	PyErr_Clear();
}

static void err_set(gowsgi_error *err, const char *type, const char *msg)
{
	gowsgi_error_free(err);
	err->type = strdup(type);
	err->message = strdup(msg);
	err->traceback = strdup("");
}

/* --------------------------------------------------------------- runtime */

static int status_fail(PyStatus st, gowsgi_error *err)
{
	err_set(err, "PyStatus", st.err_msg ? st.err_msg : "Python failed to start");
	return -1;
}

int gowsgi_runtime_init(const gowsgi_settings *s, gowsgi_error *err)
{
	PyConfig config;
	PyStatus st;

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

/* ------------------------------------------------------------ the request */

struct gowsgi_req {
	PyObject_HEAD
	gowsgi_interp *gi;
	uintptr_t handler; /* 0 once the request ended */
	int slot;
	uint64_t gen;      /* the slot's generation: Go refuses callbacks of an ended request */
	int reading;       /* a thread is inside a wsgi.input method */
	int headers_sent;
	int headers_reported;
	int status_code;
	PyObject *status;  /* str, set by start_response */
	PyObject *headers; /* list, set by start_response */
	PyObject *result;  /* the app's return value */
	PyObject *iter;    /* iter(result) */
	PyObject *chunk;   /* the chunk handed to Go, kept until the next call */
	PyObject *file;    /* the file-like behind a GOWSGI_FILE result */
	PyThreadState *ts;
	int ts_temp;
	int flags; /* GOWSGI_HEAD, GOWSGI_OPTIMIZE_HEADERS */
	gowsgi_result *res; /* the caller's, for the timeout watch */

	/* wsgi.input buffer (PyMem_Raw memory) */
	char *ibuf;
	size_t ipos, ilen, icap;
	int ieof;
};

static int req_alive(gowsgi_req *rq)
{
	if (rq->handler == 0) {
		PyErr_SetString(PyExc_ValueError,
				"the request has ended: wsgi.input, start_response "
				"and write cannot be used after the response");
		return 0;
	}
	return 1;
}

/* Refills the input buffer.  Returns bytes added, 0 at end, -1 with an
 * exception set.  Calls Go with the GIL released. */
static Py_ssize_t input_read_raw(gowsgi_req *rq, char *dst, size_t n)
{
	long long got;
	char msg[256];
	msg[0] = 0;
	if (rq->ieof || n == 0)
		return 0;
	/* Read under the GIL: once it is released the request may end. */
	uintptr_t handler = rq->handler;
	int slot = rq->slot;
	uint64_t gen = rq->gen;
	Py_BEGIN_ALLOW_THREADS
	got = go_input_read(handler, slot, gen, dst, n, msg, sizeof msg);
	Py_END_ALLOW_THREADS
	if (!req_alive(rq))
		return -1;
	if (got < 0) {
		PyErr_Format(PyExc_OSError, "reading the request body: %s",
			     msg[0] ? msg : "failed");
		return -1;
	}
	if (got == 0)
		rq->ieof = 1;
	return (Py_ssize_t)got;
}

/* Enters a wsgi.input method: the request must be alive and no other
 * thread inside one (they share the buffer, filled with the GIL released).
 * Returns 0, or -1 with an exception set. */
static int input_enter(gowsgi_req *rq)
{
	if (!req_alive(rq))
		return -1;
	if (rq->reading) {
		PyErr_SetString(PyExc_RuntimeError,
				"wsgi.input is being read in another thread");
		return -1;
	}
	rq->reading = 1;
	return 0;
}

static PyObject *input_leave(gowsgi_req *rq, PyObject *result)
{
	rq->reading = 0;
	return result;
}

#define IBUF_SIZE 65536

static Py_ssize_t input_fill(gowsgi_req *rq)
{
	if (rq->ibuf == NULL) {
		rq->ibuf = PyMem_RawMalloc(IBUF_SIZE);
		if (rq->ibuf == NULL) {
			PyErr_NoMemory();
			return -1;
		}
		rq->icap = IBUF_SIZE;
	}
	if (rq->ipos == rq->ilen)
		rq->ipos = rq->ilen = 0;
	Py_ssize_t got = input_read_raw(rq, rq->ibuf + rq->ilen, rq->icap - rq->ilen);
	if (got > 0)
		rq->ilen += (size_t)got;
	return got;
}

static int parse_size(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t *size)
{
	*size = -1;
	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "expected at most one argument");
		return -1;
	}
	if (nargs == 1 && args[0] != Py_None) {
		*size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
		if (*size == -1 && PyErr_Occurred())
			return -1;
	}
	return 0;
}

static PyObject *input_read_n(gowsgi_req *rq, Py_ssize_t size);

/* read(size=-1): returns a new bytes object. */
static PyObject *input_read(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t size;
	if (parse_size(args, nargs, &size) < 0 || input_enter(rq) < 0)
		return NULL;
	return input_leave(rq, input_read_n(rq, size));
}

static PyObject *input_read_n(gowsgi_req *rq, Py_ssize_t size)
{
	size_t buffered = rq->ilen - rq->ipos;
	if (rq->ieof && (size < 0 || (size_t)size > buffered))
		size = (Py_ssize_t)buffered; /* all there is */
	if (size >= 0 && (size_t)size <= buffered) {
		PyObject *b = PyBytes_FromStringAndSize(rq->ibuf + rq->ipos, size);
		if (b)
			rq->ipos += size;
		return b;
	}
	/* Grow the result as data arrives rather than trusting size: a client
	 * announcing a huge Content-Length must not make us allocate it. */
	Py_ssize_t cap = (Py_ssize_t)buffered + IBUF_SIZE;
	if (size >= 0 && size < cap)
		cap = size;
	PyObject *out = PyBytes_FromStringAndSize(NULL, cap);
	if (out == NULL)
		return NULL;
	Py_ssize_t n = (Py_ssize_t)buffered;
	if (buffered)
		memcpy(PyBytes_AS_STRING(out), rq->ibuf + rq->ipos, buffered);
	rq->ipos = rq->ilen = 0;
	for (;;) {
		if (n == cap) {
			if (n == size)
				break;
			cap = cap > PY_SSIZE_T_MAX / 2 ? PY_SSIZE_T_MAX : cap * 2;
			if (size >= 0 && cap > size)
				cap = size;
			if (_PyBytes_Resize(&out, cap) < 0)
				return NULL;
		}
		/* Reads go straight into the result: nobody else can see it
		 * yet, so filling it without the GIL is safe. */
		Py_ssize_t got = input_read_raw(rq, PyBytes_AS_STRING(out) + n, cap - n);
		if (got < 0) {
			Py_DECREF(out);
			return NULL;
		}
		if (got == 0)
			break;
		n += got;
	}
	if (n != cap && _PyBytes_Resize(&out, n) < 0)
		return NULL;
	return out;
}

/* readline(size=-1): returns a new bytes object ending at "\n", at size
 * bytes, or at the end of the body. */
static PyObject *input_readline_n(gowsgi_req *rq, Py_ssize_t size)
{
	PyObject *out = NULL;
	Py_ssize_t outlen = 0;
	for (;;) {
		if (rq->ipos == rq->ilen) {
			Py_ssize_t got = input_fill(rq);
			if (got < 0)
				goto failure;
			if (got == 0)
				break;
		}
		size_t avail = rq->ilen - rq->ipos;
		if (size >= 0 && (size_t)(size - outlen) < avail)
			avail = (size_t)(size - outlen);
		char *start = rq->ibuf + rq->ipos;
		char *nl = memchr(start, '\n', avail);
		size_t take = nl ? (size_t)(nl - start) + 1 : avail;
		if (out == NULL) {
			/* Not PyBytes_FromStringAndSize(start, take): for one byte
			 * it returns a shared cached object, which the resize
			 * below would refuse. */
			out = PyBytes_FromStringAndSize(NULL, take);
			if (out == NULL)
				goto failure;
			memcpy(PyBytes_AS_STRING(out), start, take);
		} else {
			if (_PyBytes_Resize(&out, outlen + take) < 0)
				goto failure;
			memcpy(PyBytes_AS_STRING(out) + outlen, start, take);
		}
		outlen += take;
		rq->ipos += take;
		if (nl || (size >= 0 && outlen >= size))
			break;
	}
	if (out == NULL)
		out = PyBytes_FromStringAndSize(NULL, 0);
	return out;

failure:
	Py_XDECREF(out);
	return NULL;
}

static PyObject *input_readline(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t size;
	if (parse_size(args, nargs, &size) < 0 || input_enter(rq) < 0)
		return NULL;
	return input_leave(rq, input_readline_n(rq, size));
}

/* readlines(hint=-1): returns a new list of lines. */
static PyObject *input_readlines_n(gowsgi_req *rq, Py_ssize_t hint)
{
	PyObject *lines = PyList_New(0);
	Py_ssize_t total = 0;
	if (lines == NULL)
		return NULL;
	for (;;) {
		PyObject *line = input_readline_n(rq, -1);
		if (line == NULL)
			goto failure;
		Py_ssize_t n = PyBytes_GET_SIZE(line);
		if (n == 0) {
			Py_DECREF(line);
			break;
		}
		int rc = PyList_Append(lines, line);
		Py_DECREF(line);
		if (rc < 0)
			goto failure;
		total += n;
		if (hint > 0 && total >= hint)
			break;
	}
	return lines;

failure:
	Py_DECREF(lines);
	return NULL;
}

static PyObject *input_readlines(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t hint;
	if (parse_size(args, nargs, &hint) < 0 || input_enter(rq) < 0)
		return NULL;
	return input_leave(rq, input_readlines_n(rq, hint));
}

static PyObject *input_iternext(gowsgi_req *rq)
{
	if (input_enter(rq) < 0)
		return NULL;
	PyObject *line = input_leave(rq, input_readline_n(rq, -1));
	if (line != NULL && PyBytes_GET_SIZE(line) == 0) {
		Py_DECREF(line);
		return NULL; /* StopIteration */
	}
	return line;
}

/* ------------------------------------------- start_response and write */

static int is_tchar(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return 1;
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Checks a field value or reason phrase: HTAB, SP, VCHAR and obs-text only
 * (RFC 9110 5.5), so no CR, LF or NUL can ever reach the wire. */
static int check_text(PyObject *s, const char *what)
{
	if (!PyUnicode_Check(s)) {
		PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
			     Py_TYPE(s)->tp_name);
		return -1;
	}
	if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
		PyErr_Format(PyExc_ValueError,
			     "%s %R has characters outside Latin-1 (PEP 3333 "
			     "needs native strings that encode as Latin-1)", what, s);
		return -1;
	}
	const unsigned char *p = PyUnicode_1BYTE_DATA(s);
	Py_ssize_t n = PyUnicode_GET_LENGTH(s);
	for (Py_ssize_t i = 0; i < n; i++) {
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
			PyErr_Format(PyExc_ValueError,
				     "%s %R contains a control character "
				     "(CR, LF and NUL are never sent)", what, s);
			return -1;
		}
	}
	return 0;
}

static const char *const hop_by_hop[] = {
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"te", "trailer", "trailers", "transfer-encoding", "upgrade", NULL,
};

static int check_header_name(PyObject *name)
{
	if (!PyUnicode_Check(name)) {
		PyErr_Format(PyExc_TypeError, "header name must be str, not %.100s",
			     Py_TYPE(name)->tp_name);
		return -1;
	}
	Py_ssize_t n = PyUnicode_GET_LENGTH(name);
	if (n == 0 || n > 0xffff || PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND)
		goto bad;
	const unsigned char *p = PyUnicode_1BYTE_DATA(name);
	for (Py_ssize_t i = 0; i < n; i++)
		if (!is_tchar(p[i]))
			goto bad;
	for (int i = 0; hop_by_hop[i]; i++) {
		if ((size_t)n == strlen(hop_by_hop[i]) &&
		    strncasecmp((const char *)p, hop_by_hop[i], n) == 0) {
			PyErr_Format(PyExc_ValueError,
				     "header %R is hop-by-hop: PEP 3333 leaves it "
				     "to the server", name);
			return -1;
		}
	}
	return 0;
bad:
	PyErr_Format(PyExc_ValueError, "header name %R is not an HTTP token", name);
	return -1;
}

/* Validates status and headers; returns the status code or -1. */
static int check_response(PyObject *status, PyObject *headers)
{
	if (check_text(status, "status") < 0)
		return -1;
	const unsigned char *s = PyUnicode_1BYTE_DATA(status);
	Py_ssize_t n = PyUnicode_GET_LENGTH(status);
	if (n < 4 || s[3] != ' ' || s[0] < '2' || s[0] > '9' ||
	    s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9') {
		PyErr_Format(PyExc_ValueError,
			     "status %R is not \"NNN reason\" with a final "
			     "status code (200-999)", status);
		return -1;
	}
	if (!PyList_Check(headers)) {
		PyErr_Format(PyExc_TypeError,
			     "response_headers must be a list (PEP 3333), not %.100s",
			     Py_TYPE(headers)->tp_name);
		return -1;
	}
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(headers); i++) {
		PyObject *h = PyList_GET_ITEM(headers, i);
		if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 2) {
			PyErr_Format(PyExc_TypeError,
				     "each header must be a (name, value) tuple, "
				     "not %R", h);
			return -1;
		}
		if (check_header_name(PyTuple_GET_ITEM(h, 0)) < 0 ||
		    check_text(PyTuple_GET_ITEM(h, 1), "header value") < 0)
			return -1;
	}
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

static void put_u16(char *p, size_t v) { p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; }
static void put_u32(char *p, size_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}

/* Writes status and headers into buf as cpython.h describes.  Returns the
 * bytes written, or -1 if they do not fit.  Needs the GIL. */
static Py_ssize_t headers_encode(gowsgi_req *rq, char *buf, size_t cap, size_t *statuslen)
{
	size_t n = (size_t)PyUnicode_GET_LENGTH(rq->status);
	if (n > cap)
		return -1;
	memcpy(buf, PyUnicode_1BYTE_DATA(rq->status), n);
	*statuslen = n;
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rq->headers); i++) {
		PyObject *h = PyList_GET_ITEM(rq->headers, i);
		PyObject *k = PyTuple_GET_ITEM(h, 0), *v = PyTuple_GET_ITEM(h, 1);
		size_t kl = PyUnicode_GET_LENGTH(k), vl = PyUnicode_GET_LENGTH(v);
		if (n + 6 + kl + vl > cap)
			return -1;
		put_u16(buf + n, kl);
		put_u32(buf + n + 2, vl);
		memcpy(buf + n + 6, PyUnicode_1BYTE_DATA(k), kl);
		memcpy(buf + n + 6 + kl, PyUnicode_1BYTE_DATA(v), vl);
		n += 6 + kl + vl;
	}
	return (Py_ssize_t)n;
}

static PyObject *reraise(PyObject *exc_info)
{
	if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
		PyErr_SetString(PyExc_TypeError, "exc_info must be a 3-tuple from sys.exc_info()");
		return NULL;
	}
	PyObject *value = PyTuple_GET_ITEM(exc_info, 1);
	PyObject *tb = PyTuple_GET_ITEM(exc_info, 2);
	if (!PyExceptionInstance_Check(value)) {
		PyErr_SetString(PyExc_TypeError, "exc_info[1] is not an exception");
		return NULL;
	}
	if (tb != Py_None)
		PyException_SetTraceback(value, tb);
	PyErr_SetObject((PyObject *)Py_TYPE(value), value);
	return NULL;
}

static PyObject *write_impl(PyObject *self, PyObject *data);

static PyMethodDef write_def = {"write", (PyCFunction)write_impl, METH_O,
				"write(data): send bytes to the client at once (PEP 3333)."};

/* start_response(status, response_headers, exc_info=None): returns a new
 * reference to write. */
static PyObject *start_response_impl(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"status", "response_headers", "exc_info", NULL};
	gowsgi_req *rq = (gowsgi_req *)self;
	PyObject *status, *headers, *exc_info = Py_None;
	if (!req_alive(rq))
		return NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:start_response", kwlist,
					 &status, &headers, &exc_info))
		return NULL;
	if (exc_info != Py_None) {
		if (rq->headers_sent)
			return reraise(exc_info);
	} else if (rq->status != NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"start_response called a second time without "
				"exc_info (PEP 3333)");
		return NULL;
	}
	int code = check_response(status, headers);
	if (code < 0)
		return NULL;
	/* Keep a copy: the app may change its list after this call, and what
	 * goes out must be what was checked.  Tuples and str are immutable. */
	PyObject *copy = PyList_GetSlice(headers, 0, PyList_GET_SIZE(headers));
	if (copy == NULL)
		return NULL;
	Py_XSETREF(rq->status, Py_NewRef(status));
	Py_XSETREF(rq->headers, copy);
	rq->status_code = code;
	rq->headers_reported = 0;
	return PyCFunction_New(&write_def, self);
}

static PyMethodDef start_response_def = {
	"start_response", (PyCFunction)(void (*)(void))start_response_impl,
	METH_VARARGS | METH_KEYWORDS, "start_response (PEP 3333)."};

#define WRITE_HDR_CAP 65536

static PyObject *write_impl(PyObject *self, PyObject *data)
{
	gowsgi_req *rq = (gowsgi_req *)self;
	if (!req_alive(rq))
		return NULL;
	if (rq->status == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "write() called before start_response");
		return NULL;
	}
	if (!rq->res->busy || rq->res->ident != PyThread_get_thread_ident()) {
		/* Go writes the response between calls: another thread writing
		 * then would interleave with it. */
		PyErr_SetString(PyExc_RuntimeError,
				"write() must be called by the thread running the "
				"application, while it runs (PEP 3333)");
		return NULL;
	}
	if (!PyBytes_Check(data)) {
		PyErr_Format(PyExc_TypeError, "write() needs bytes, not %.100s",
			     Py_TYPE(data)->tp_name);
		return NULL;
	}
	char *hdr = NULL;
	Py_ssize_t hdrlen = 0;
	size_t statuslen = 0;
	if (!rq->headers_sent) {
		hdr = PyMem_RawMalloc(WRITE_HDR_CAP);
		if (hdr == NULL)
			return PyErr_NoMemory();
		hdrlen = headers_encode(rq, hdr, WRITE_HDR_CAP, &statuslen);
		if (hdrlen < 0) {
			PyMem_RawFree(hdr);
			PyErr_SetString(PyExc_ValueError, "response headers exceed 64 KiB");
			return NULL;
		}
	}
	char msg[256];
	msg[0] = 0;
	int rc;
	uintptr_t handler = rq->handler;
	int slot = rq->slot;
	uint64_t gen = rq->gen;
	/* data is kept alive by the caller's argument; bytes are immutable. */
	Py_BEGIN_ALLOW_THREADS
	rc = go_write(handler, slot, gen, hdr, (size_t)hdrlen, statuslen, rq->status_code,
		      PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data), msg, sizeof msg);
	Py_END_ALLOW_THREADS
	PyMem_RawFree(hdr);
	if (!req_alive(rq))
		return NULL;
	if (hdr != NULL && rc == 0)
		rq->headers_sent = rq->headers_reported = 1;
	if (rc < 0) {
		PyErr_Format(PyExc_OSError, "write(): %s", msg[0] ? msg : "the client went away");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* ------------------------------------------------------ the Input type */

static void req_dealloc(gowsgi_req *rq)
{
	PyTypeObject *tp = Py_TYPE(rq);
	Py_XDECREF(rq->status);
	Py_XDECREF(rq->headers);
	Py_XDECREF(rq->result);
	Py_XDECREF(rq->iter);
	Py_XDECREF(rq->chunk);
	Py_XDECREF(rq->file);
	PyMem_RawFree(rq->ibuf);
	tp->tp_free((PyObject *)rq);
	Py_DECREF(tp);
}

static PyObject *input_iter(PyObject *self) { return Py_NewRef(self); }

static PyMethodDef input_methods[] = {
	{"read", (PyCFunction)(void (*)(void))input_read, METH_FASTCALL,
	 "read(size=-1) -> bytes"},
	{"readline", (PyCFunction)(void (*)(void))input_readline, METH_FASTCALL,
	 "readline(size=-1) -> bytes"},
	{"readlines", (PyCFunction)(void (*)(void))input_readlines, METH_FASTCALL,
	 "readlines(hint=-1) -> list of bytes"},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot input_slots[] = {
	{Py_tp_dealloc, req_dealloc},
	{Py_tp_iter, input_iter},
	{Py_tp_iternext, input_iternext},
	{Py_tp_methods, input_methods},
	{Py_tp_doc, "wsgi.input: the request body, streamed from the client."},
	{0, NULL},
};

static PyType_Spec input_spec = {
	"gowsgi.Input", sizeof(gowsgi_req), 0, Py_TPFLAGS_DEFAULT, input_slots,
};

/* ---------------------------------------------------------- interpreters */

static PyObject *emit_impl(PyObject *self, PyObject *line)
{
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(line, &n);
	if (s == NULL)
		return NULL;
	uintptr_t handler = (uintptr_t)PyLong_AsVoidPtr(self);
	Py_BEGIN_ALLOW_THREADS
	go_log(handler, (char *)s, (size_t)n);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

static PyMethodDef emit_def = {"emit", emit_impl, METH_O, "log one line"};

/* Fills gi's references from the bootstrap module.  Needs gi's GIL. */
static int interp_setup(gowsgi_interp *gi, const char *bootstrap)
{
	PyObject *mod = NULL, *code = NULL, *res = NULL, *dict, *errors_cls,
		 *emit = NULL, *self = NULL, *errors = NULL, *version = NULL;
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
	errors_cls = PyDict_GetItemString(dict, "Errors");
	if (!format || !wrapper || !timeout || !errors_cls) {
		PyErr_SetString(PyExc_SystemError, "bootstrap is incomplete");
		goto failure;
	}
	Py_XSETREF(gi->format_exception, Py_NewRef(format));
	Py_XSETREF(gi->file_wrapper, Py_NewRef(wrapper));
	Py_XSETREF(gi->timeout_exc, Py_NewRef(timeout));

	gi->input_type = (PyTypeObject *)PyType_FromSpec(&input_spec);
	if (gi->input_type == NULL)
		goto failure;
	for (int i = 0; i < NKEYS; i++) {
		gi->keys[i] = PyUnicode_InternFromString(gowsgi_keys[i]);
		if (gi->keys[i] == NULL)
			goto failure;
	}
	gi->key_input = PyUnicode_InternFromString("wsgi.input");
	gi->key_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
	gi->scheme_https = PyUnicode_InternFromString("https");
	if (!gi->key_input || !gi->key_scheme || !gi->scheme_https)
		goto failure;

	self = PyLong_FromVoidPtr((void *)gi->handler);
	if (self == NULL)
		goto failure;
	emit = PyCFunction_New(&emit_def, self);
	if (emit == NULL)
		goto failure;
	errors = PyObject_CallOneArg(errors_cls, emit);
	if (errors == NULL)
		goto failure;
	version = Py_BuildValue("(ii)", 1, 0);
	gi->environ_base = Py_BuildValue(
		"{s:O,s:s,s:O,s:O,s:O,s:O,s:O,s:O}",
		"wsgi.version", version, "wsgi.url_scheme", "http",
		"wsgi.multithread", Py_True, "wsgi.multiprocess", Py_False,
		"wsgi.run_once", Py_False, "wsgi.input_terminated", Py_True,
		"wsgi.errors", errors, "wsgi.file_wrapper", gi->file_wrapper);
	if (gi->environ_base == NULL)
		goto failure;
	rc = 0;
failure:
	Py_XDECREF(version);
	Py_XDECREF(errors);
	Py_XDECREF(emit);
	Py_XDECREF(self);
	Py_XDECREF(res);
	Py_XDECREF(code);
	Py_XDECREF(mod);
	return rc;
}

/* Marks C extension modules that are not safe in an own-GIL interpreter
 * of this Python as unavailable, so the standard library's pure-Python
 * versions load instead.  Needs the new interpreter's GIL. */
static int guard_isolated(void)
{
#if PY_VERSION_HEX >= 0x030C0000
	/* _datetime and _decimal keep state that own-GIL interpreters end up
	 * sharing: with a pool of them importing datetime and decimal, 3.12.1
	 * died with "double free or corruption" and 3.13.0 with SIGSEGV when
	 * the pool ended (TestIsolatedDatetimeDecimal without this guard).
	 * CPython's work on it: gh-117398 (isolating _datetime, 3.13),
	 * gh-136421 and gh-136423 (concurrent init and teardown of _datetime,
	 * fixed after 3.13.0).  Untested here on later 3.13 releases, the
	 * guard stays on before 3.14.  datetime and decimal then use
	 * _pydatetime and _pydecimal, the same API in pure Python. */
	if (Py_Version < 0x030E0000) {
		PyObject *modules = PyImport_GetModuleDict();
		if (PyDict_SetItemString(modules, "_datetime", Py_None) < 0 ||
		    PyDict_SetItemString(modules, "_decimal", Py_None) < 0)
			return -1;
	}
#endif
	return 0;
}

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
	PyObject *list = PyObject_CallMethod(mod, "files", NULL);
	if (list == NULL)
		return -1;
	size_t total = 0;
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
		const char *f = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
		if (f == NULL)
			goto failure;
		total += strlen(f) + 1;
	}
	char *out = malloc(total ? total : 1);
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
	Py_DECREF(list);
	return 0;
failure:
	Py_DECREF(list);
	return -1;
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

int gowsgi_interp_load(gowsgi_interp *gi, const char *bootstrap, const char *paths,
		       size_t pathslen, const char *spec, const char *mw, size_t mwlen,
		       int reloading, char **files, size_t *fileslen, gowsgi_error *err)
{
	int temp, rc = -1;
	PyObject *mod = NULL, *list = NULL, *pairs = NULL, *res = NULL;
	PyThreadState *ts = gi_enter(gi, &temp);

	if (gi->environ_base == NULL && interp_setup(gi, bootstrap) < 0)
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
	Py_CLEAR(list);
	list = strings_list(mw, mwlen);
	if (list == NULL)
		goto failure;
	pairs = PyList_New(0);
	for (Py_ssize_t i = 0; pairs != NULL && i + 1 < PyList_GET_SIZE(list); i += 2) {
		PyObject *t = PyTuple_Pack(2, PyList_GET_ITEM(list, i), PyList_GET_ITEM(list, i + 1));
		if (t == NULL || PyList_Append(pairs, t) < 0)
			Py_CLEAR(pairs);
		Py_XDECREF(t);
	}
	if (pairs == NULL)
		goto failure;
	res = PyObject_CallMethod(mod, "load", "sOi", spec, pairs, reloading);
	if (res == NULL || files_out(mod, files, fileslen) < 0)
		goto failure;
	set_app(gi, res);
	res = NULL;
	rc = 0;
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
	PyObject *res = NULL, *mod = PyImport_ImportModule("_gowsgi");
	if (mod == NULL)
		goto failure;
	res = PyObject_CallMethod(mod, "reload", NULL);
	if (res == NULL || files_out(mod, files, fileslen) < 0)
		goto failure;
	set_app(gi, res);
	res = NULL;
	rc = 0;
failure:
	if (rc < 0)
		err_fill(gi->format_exception, err);
	Py_XDECREF(res);
	Py_XDECREF(mod);
	gi_leave(ts, temp);
	return rc;
}

/* Whether an interpreter can be ended safely.
 *
 * A legacy sub-interpreter (sharing the GIL) never is: extension modules
 * with single-phase init, common outside the standard library, are set up
 * once and each later interpreter gets a copy of the first importer's
 * module dict, so ending that first interpreter leaves the copies pointing
 * at its freed objects.  Seen here: Pyramid (zope.interface's C module) in
 * a third handler on 3.11 failed with "NameError: name 'AttributeError' is
 * not defined"; on 3.12 and 3.13.0 immortal interned strings freed the
 * same way corrupted a later load (CPython gh-116510).  Such interpreters
 * are left alive without the handler's references: a leak, not a crash.
 *
 * An own-GIL interpreter refuses those modules, and is ended.  (Go refuses
 * own-GIL interpreters on 3.13.0, which corrupted memory with them.)
 * Py_Version is the running library's version, which may differ from the
 * headers'. */
int gowsgi_can_end(int isolated)
{
#if PY_VERSION_HEX >= 0x030C0000
	return isolated;
#else
	(void)isolated;
	return 0;
#endif
}

/* Counts the thread states of gi's interpreter that this file did not
 * create: threads the app started.  Needs gi's GIL. */
static int foreign_threads(gowsgi_interp *gi, PyThreadState *self)
{
	int n = 0;
	for (PyThreadState *t = PyInterpreterState_ThreadHead(gi->interp); t; t = PyThreadState_Next(t)) {
		int ours = t == self || t == gi->owner;
		for (size_t i = 0; !ours && i < gi->ntstates; i++)
			ours = gi->tstates[i] == t;
		n += !ours;
	}
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
	int end = !gi->is_main && threads == 0 && gowsgi_can_end(gi->isolated);
	if (end) {
		/* Only what is ended loses its thread states: one freed under
		 * an interpreter left alive is a pointer other code may still
		 * follow (a 3.13.0 run showed one bit cleared in freed memory,
		 * as thread-state flags are). */
		for (size_t i = 0; i < gi->ntstates; i++) {
			PyThreadState_Clear(gi->tstates[i]);
			PyThreadState_Delete(gi->tstates[i]);
		}
	}
	free(gi->tstates);
	Py_CLEAR(gi->app);
	Py_CLEAR(gi->environ_base);
	for (int i = 0; i < NKEYS; i++)
		Py_CLEAR(gi->keys[i]);
	Py_CLEAR(gi->key_input);
	Py_CLEAR(gi->key_scheme);
	Py_CLEAR(gi->scheme_https);
	Py_CLEAR(gi->format_exception);
	Py_CLEAR(gi->file_wrapper);
	Py_CLEAR(gi->timeout_exc);
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

/* ------------------------------------------------------------- requests */

/* Reads the packed environ into a new dict.  Needs the GIL. */
static PyObject *environ_build(gowsgi_interp *gi, const char *p, size_t n, int flags)
{
	PyObject *env = PyDict_Copy(gi->environ_base);
	if (env == NULL)
		return NULL;
	const char *end = p + n;
	while (p < end) {
		unsigned char tag = (unsigned char)*p++;
		PyObject *key;
		if (tag == 0xff) {
			if (end - p < 2)
				goto bad;
			size_t kl = (unsigned char)p[0] | (size_t)(unsigned char)p[1] << 8;
			if ((size_t)(end - p - 2) < kl)
				goto bad;
			key = PyUnicode_DecodeLatin1(p + 2, kl, NULL);
			p += 2 + kl;
		} else if (tag < NKEYS) {
			key = Py_NewRef(gi->keys[tag]);
		} else {
			goto bad;
		}
		if (key == NULL)
			goto failure;
		size_t vl = 0;
		if (end - p < 4) {
			Py_DECREF(key);
			goto bad;
		}
		for (int i = 0; i < 4; i++)
			vl |= (size_t)(unsigned char)p[i] << (8 * i);
		if ((size_t)(end - p - 4) < vl) {
			Py_DECREF(key);
			goto bad;
		}
		PyObject *val = PyUnicode_DecodeLatin1(p + 4, vl, NULL);
		p += 4 + vl;
		if (val == NULL || PyDict_SetItem(env, key, val) < 0) {
			Py_DECREF(key);
			Py_XDECREF(val);
			goto failure;
		}
		Py_DECREF(key);
		Py_DECREF(val);
	}
	if ((flags & GOWSGI_HTTPS) && PyDict_SetItem(env, gi->key_scheme, gi->scheme_https) < 0)
		goto failure;
	return env;
bad:
	PyErr_SetString(PyExc_SystemError, "gowsgi: bad environ packing");
failure:
	Py_DECREF(env);
	return NULL;
}

static void res_clear(gowsgi_result *res)
{
	res->state = GOWSGI_DONE;
	res->hdrlen = res->statuslen = res->bodylen = res->chunklen = 0;
	res->chunk = NULL;
	res->fd = -1;
	res->filesize = 0;
	res->length = -1;
}

/* Reports headers into buf if start_response has set ones Go has not seen.
 * Returns 0, or -1 with an exception set. */
static int report_headers(gowsgi_req *rq, char *buf, size_t cap, gowsgi_result *res)
{
	if (rq->headers_reported)
		return 0;
	if (rq->status == NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"the application did not call start_response "
				"before its first non-empty chunk or its end");
		return -1;
	}
	Py_ssize_t n = headers_encode(rq, buf, cap, &res->statuslen);
	if (n < 0) {
		PyErr_SetString(PyExc_ValueError, "response headers exceed the buffer (64 KiB)");
		return -1;
	}
	res->hdrlen = (size_t)n;
	res->status = rq->status_code;
	rq->headers_reported = 1;
	return 0;
}

/* Sets res->err from the raised exception. */
static void res_error(gowsgi_req *rq, gowsgi_result *res)
{
	if (res->fd >= 0) { /* a file try_file opened will not be sent */
		close(res->fd);
		res->fd = -1;
	}
	res->state = GOWSGI_ERROR;
	err_fill(rq->gi->format_exception, &res->err);
}

/* Calls close() on the result; returns 0 or -1 with an exception set. */
static int result_close(gowsgi_req *rq)
{
	PyObject *result = rq->result;
	if (result == NULL || PyList_CheckExact(result) || PyTuple_CheckExact(result))
		return 0;
	rq->result = NULL;
	PyObject *close = PyObject_GetAttrString(result, "close");
	int rc = 0;
	if (close == NULL) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError))
			PyErr_Clear();
		else
			rc = -1;
	} else {
		PyObject *r = PyObject_CallNoArgs(close);
		if (r == NULL)
			rc = -1;
		Py_XDECREF(r);
		Py_DECREF(close);
	}
	Py_DECREF(result);
	return rc;
}

/* Marks the request ended and drops its references.  Needs the GIL. */
static void req_end(gowsgi_req *rq)
{
	rq->handler = 0;
	Py_CLEAR(rq->iter);
	Py_CLEAR(rq->chunk);
	Py_CLEAR(rq->file);
	Py_CLEAR(rq->result);
	if (!rq->reading) { /* else a reader is filling it; dealloc frees it */
		PyMem_RawFree(rq->ibuf);
		rq->ibuf = NULL;
		rq->ipos = rq->ilen = rq->icap = 0;
	}
	Py_DECREF(rq);
}

/* Tries the sendfile path for a wsgi.file_wrapper result: returns 1 with
 * res filled, 0 to iterate instead (no exception set). */
static int try_file(gowsgi_req *rq, gowsgi_result *res)
{
	PyObject *filelike = PyObject_GetAttrString(rq->result, "filelike");
	PyObject *r = NULL;
	long fd, pos;
	struct stat st;
	if (filelike == NULL)
		goto fallback;
	r = PyObject_CallMethod(filelike, "fileno", NULL);
	if (r == NULL)
		goto fallback;
	fd = PyLong_AsLong(r);
	Py_CLEAR(r);
	if (fd < 0 || fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto fallback;
	r = PyObject_CallMethod(filelike, "tell", NULL);
	if (r == NULL)
		goto fallback;
	pos = PyLong_AsLong(r);
	Py_CLEAR(r);
	if (pos < 0 || lseek((int)fd, pos, SEEK_SET) < 0)
		goto fallback;
	res->fd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
	if (res->fd < 0)
		goto fallback;
	res->state = GOWSGI_FILE;
	res->filesize = st.st_size > pos ? (int64_t)(st.st_size - pos) : 0;
	rq->file = filelike;
	return 1;
fallback:
	PyErr_Clear();
	Py_XDECREF(r);
	Py_XDECREF(filelike);
	return 0;
}

static int no_body_needed(gowsgi_req *rq)
{
	return (rq->flags & GOWSGI_OPTIMIZE_HEADERS) && rq->status != NULL &&
	       ((rq->flags & GOWSGI_HEAD) || rq->status_code == 204 ||
		rq->status_code == 304);
}

/* Advances rq->iter to the next non-empty chunk.  Needs the GIL. */
static void req_advance(gowsgi_req *rq, char *buf, size_t cap, gowsgi_result *res)
{
	Py_CLEAR(rq->chunk);
	for (;;) {
		PyObject *item = PyIter_Next(rq->iter);
		if (item == NULL) {
			if (PyErr_Occurred())
				goto failure;
			if (report_headers(rq, buf, cap, res) < 0)
				goto failure;
			res->state = GOWSGI_DONE;
			return;
		}
		if (!PyBytes_Check(item)) {
			PyErr_Format(PyExc_TypeError,
				     "the application yielded %.100s; WSGI "
				     "response chunks must be bytes (PEP 3333)",
				     Py_TYPE(item)->tp_name);
			Py_DECREF(item);
			goto failure;
		}
		if (PyBytes_GET_SIZE(item) == 0) {
			Py_DECREF(item);
			if (no_body_needed(rq)) {
				/* wsgi_optimize_send_headers: the app yielded b""
				 * after start_response and no body is wanted, so
				 * the headers go out now and the generator is not
				 * advanced again. */
				if (report_headers(rq, buf, cap, res) < 0)
					goto failure;
				res->state = GOWSGI_DONE;
				return;
			}
			continue;
		}
		if (report_headers(rq, buf, cap, res) < 0) {
			Py_DECREF(item);
			goto failure;
		}
		rq->chunk = item;
		res->state = GOWSGI_CHUNK;
		res->chunk = PyBytes_AS_STRING(item);
		res->chunklen = (size_t)PyBytes_GET_SIZE(item);
		return;
	}
failure:
	res_error(rq, res);
}

/* Copies a list or tuple of bytes that fits into buf after the headers.
 * Returns 1 when done, 0 when the body must be iterated, -1 on error. */
static int copy_sequence(gowsgi_req *rq, char *buf, size_t cap, gowsgi_result *res)
{
	PyObject *seq = rq->result;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject **items = PySequence_Fast_ITEMS(seq);
	size_t total = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		if (!PyBytes_Check(items[i]))
			return 0; /* iteration reports the error at the right point */
		total += (size_t)PyBytes_GET_SIZE(items[i]);
	}
	if (report_headers(rq, buf, cap, res) < 0)
		return -1;
	res->length = (int64_t)total;
	if (total > cap - res->hdrlen) {
		/* Headers are reported now; iteration must not report them again. */
		return 0;
	}
	char *p = buf + res->hdrlen;
	for (Py_ssize_t i = 0; i < n; i++) {
		size_t l = (size_t)PyBytes_GET_SIZE(items[i]);
		memcpy(p, PyBytes_AS_STRING(items[i]), l);
		p += l;
	}
	res->bodylen = total;
	res->state = GOWSGI_DONE;
	return 1;
}

/* Marks the request as running Python on this thread.  With raise set, a
 * timeout that came while it was out is raised now: returns -1 with
 * RequestTimeout set. */
static int watch_enter(gowsgi_interp *gi, gowsgi_result *res, int raise)
{
	int pending;
	SHARED_LOCK();
	res->ident = PyThread_get_thread_ident();
	res->busy = 1;
	pending = raise && res->pending;
	if (pending)
		res->pending = 0;
	SHARED_UNLOCK();
	if (pending) {
		PyErr_SetNone(gi->timeout_exc);
		return -1;
	}
	return 0;
}

/* Marks the request as out of Python, clearing an asynchronous exception
 * that was set but not delivered, so it cannot hit whatever this thread
 * runs next. */
static void watch_leave(gowsgi_result *res)
{
	SHARED_LOCK();
	int interrupted = res->interrupted;
	res->busy = res->interrupted = 0;
	SHARED_UNLOCK();
	if (interrupted)
		PyThreadState_SetAsyncExc(res->ident, NULL);
}

void gowsgi_request_interrupt(gowsgi_interp *gi, gowsgi_result *res)
{
	int temp;
	PyThreadState *ts = gi_enter(gi, &temp);
	SHARED_LOCK();
	if (res->busy) {
		/* Under the lock: the request cannot leave (and clear it) in
		 * between, nor a later request on its thread see it. */
		PyThreadState_SetAsyncExc(res->ident, gi->timeout_exc);
		res->interrupted = 1;
	} else {
		res->pending = 1;
	}
	SHARED_UNLOCK();
	gi_leave(ts, temp);
}

gowsgi_req *gowsgi_request_start(gowsgi_interp *gi, const char *envp, size_t envlen,
				 int flags, uintptr_t handler, int slot, uint64_t gen,
				 char *buf, size_t cap, const char *body, size_t bodylen,
				 gowsgi_result *res)
{
	int temp;
	PyObject *env = NULL, *sr = NULL, *result = NULL;
	PyThreadState *ts = gi_enter(gi, &temp);
	gowsgi_req *rq = NULL;

	res_clear(res);
	if (watch_enter(gi, res, 1) < 0 ||
	    (rq = PyObject_New(gowsgi_req, gi->input_type)) == NULL) {
		res->state = GOWSGI_ERROR;
		err_fill(gi->format_exception, &res->err);
		watch_leave(res);
		gi_leave(ts, temp);
		return NULL;
	}
	memset((char *)rq + sizeof(PyObject), 0, sizeof *rq - sizeof(PyObject));
	rq->res = res;
	rq->gi = gi;
	rq->handler = handler;
	rq->slot = slot;
	rq->gen = gen;
	rq->ts = ts;
	rq->ts_temp = temp;
	rq->flags = flags;
	if (bodylen > 0) {
		/* The body Go read early: copied, as it is only borrowed. */
		rq->icap = bodylen > IBUF_SIZE ? bodylen : IBUF_SIZE;
		rq->ibuf = PyMem_RawMalloc(rq->icap);
		if (rq->ibuf == NULL) {
			rq->icap = 0;
			PyErr_NoMemory();
			goto failure;
		}
		memcpy(rq->ibuf, body, bodylen);
		rq->ilen = bodylen;
	}
	rq->ieof = (flags & GOWSGI_BODY_EOF) != 0;

	env = environ_build(gi, envp, envlen, flags);
	if (env == NULL || PyDict_SetItem(env, gi->key_input, (PyObject *)rq) < 0)
		goto failure;
	sr = PyCFunction_New(&start_response_def, (PyObject *)rq);
	if (sr == NULL)
		goto failure;
	/* A reference of our own: a reload may replace gi->app meanwhile. */
	SHARED_LOCK();
	PyObject *app = Py_NewRef(gi->app);
	SHARED_UNLOCK();
	result = PyObject_CallFunctionObjArgs(app, env, sr, NULL);
	Py_DECREF(app);
	Py_CLEAR(sr);
	Py_CLEAR(env);
	if (result == NULL)
		goto failure;
	rq->result = result;
	if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
		int rc = copy_sequence(rq, buf, cap, res);
		if (rc < 0)
			goto failure;
		if (rc == 1) {
			req_end(rq);
			watch_leave(res);
			gi_leave(ts, temp);
			return NULL;
		}
	} else if (Py_IS_TYPE(result, (PyTypeObject *)gi->file_wrapper) &&
		   try_file(rq, res)) {
		if (report_headers(rq, buf, cap, res) < 0)
			goto failure;
		watch_leave(res);
		PyEval_SaveThread();
		return rq;
	}
	rq->iter = PyObject_GetIter(result);
	if (rq->iter == NULL)
		goto failure;
	req_advance(rq, buf, cap, res);
	watch_leave(res);
	PyEval_SaveThread();
	return rq;

failure:
	Py_XDECREF(sr);
	Py_XDECREF(env);
	res_error(rq, res);
	/* close() runs on every path; its own error is reported only if the
	 * app had not already failed. */
	if (result_close(rq) < 0)
		PyErr_Clear();
	req_end(rq);
	watch_leave(res);
	gi_leave(ts, temp);
	return NULL;
}

/* Closes and frees the request; the GIL is held and the watch entered.
 * Leaves the watch, detaches and returns as gowsgi_request_finish. */
static int req_close(gowsgi_req *rq, gowsgi_error *err)
{
	PyThreadState *ts = rq->ts;
	int temp = rq->ts_temp;
	gowsgi_result *res = rq->res;
	PyObject *format = rq->gi->format_exception;
	int rc = result_close(rq);
	if (rc < 0)
		err_fill(format, err);
	req_end(rq);
	watch_leave(res);
	gi_leave(ts, temp);
	return rc;
}

int gowsgi_request_next(gowsgi_req *rq, int sent, char *buf, size_t cap,
			gowsgi_result *res, gowsgi_error *err)
{
	PyEval_RestoreThread(rq->ts);
	rq->headers_sent |= sent;
	res_clear(res);
	if (watch_enter(rq->gi, res, 1) < 0)
		res_error(rq, res);
	else
		req_advance(rq, buf, cap, res);
	if (res->state == GOWSGI_DONE) {
		/* The end: close() now rather than in one more call.  A
		 * timeout that comes during it interrupts it, as in finish. */
		return req_close(rq, err) < 0 ? -1 : 1;
	}
	watch_leave(res);
	PyEval_SaveThread();
	return 0;
}

int gowsgi_request_finish(gowsgi_req *rq, int sent, gowsgi_error *err)
{
	PyEval_RestoreThread(rq->ts);
	rq->headers_sent |= sent;
	/* close() runs even after a timeout, and may itself be interrupted. */
	watch_enter(rq->gi, rq->res, 0);
	return req_close(rq, err);
}
