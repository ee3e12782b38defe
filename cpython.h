/*
 * The C side of gowsgi: a request-shaped API over the CPython C API.
 *
 * Crossing budget (checked by TestCgoCallsPerRequest and BenchmarkHello):
 *   - a response whose body is a list or tuple that fits the caller's buffer:
 *     one Go->C call (gowsgi_request_start) and nothing else;
 *   - any other response: gowsgi_request_start and one gowsgi_request_next
 *     per non-empty chunk plus one for the end, which also closes the
 *     iterable; gowsgi_request_finish only when the response stops early;
 *   - one C->Go callback per wsgi.input refill, write() call or wsgi.errors
 *     line, each with the GIL released.
 *
 * Threads: every function here except the gowsgi_runtime_* and
 * gowsgi_interp_new/end functions may be called from any OS thread.  Each
 * call attaches a thread state kept per (OS thread, interpreter), runs with
 * the GIL, and detaches before it returns, so the GIL is never held while Go
 * runs.  The runtime and interpreter functions run on the control thread.
 */
#ifndef GOWSGI_CPYTHON_H
#define GOWSGI_CPYTHON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct gowsgi_interp gowsgi_interp;
typedef struct gowsgi_req gowsgi_req;

/* An error copied out of Python.  The strings are malloc'd and owned by the
 * caller, who frees them with gowsgi_error_free. */
typedef struct {
	char *type;      /* qualified exception type name, e.g. "ModuleNotFoundError" */
	char *message;   /* str(exception) */
	char *traceback; /* the formatted traceback, as traceback.format_exception */
} gowsgi_error;

void gowsgi_error_free(gowsgi_error *e);

/* Runtime settings, applied once when Python starts.  Strings are borrowed for
 * the call; NULL or "" means "let CPython decide". */
typedef struct {
	const char *executable;
	const char *home;
	int optimize;
} gowsgi_settings;

/* Starts Python with an isolated configuration and no signal handlers.  On
 * return the GIL is released.  Control thread only.  Returns 0, or -1 with
 * *err filled. */
int gowsgi_runtime_init(const gowsgi_settings *s, gowsgi_error *err);

/* Writes the running Python's version into buf (NUL-terminated). */
void gowsgi_runtime_version(char *buf, size_t n);

/* Kinds of interpreter. */
enum {
	GOWSGI_SUB = 0,      /* a sub-interpreter sharing the main GIL */
	GOWSGI_MAIN = 1,     /* the main interpreter */
	GOWSGI_ISOLATED = 2, /* a sub-interpreter with its own GIL (3.12+) */
};

/* Creates an interpreter of the given kind.  handler is the Go handle the
 * interpreter's callbacks report to.  Control thread only.  Returns a new
 * handle, or NULL with *err filled. */
gowsgi_interp *gowsgi_interp_new(int kind, uintptr_t handler, gowsgi_error *err);

/* Ends the interpreter and frees the handle.  An interpreter gowsgi can end
 * (own GIL, no thread of the app still running) first loses every thread
 * state this file created for it on any OS thread, then Py_EndInterpreter
 * runs.  Any other is left alive without the handler's references, its
 * thread states kept, since freeing them under a live interpreter leaves
 * pointers to them.  No request may be running in it.  Control thread
 * only.  Returns 1 if the interpreter was ended, 0 if left alive. */
int gowsgi_interp_end(gowsgi_interp *gi);

/* Returns how many threads the app started are alive in the interpreter,
 * and in *names (malloc'd, the caller frees; NULL when none) their names.
 * Any OS thread. */
int gowsgi_interp_threads(gowsgi_interp *gi, char **names);

/* Reports whether an interpreter can be ended safely: only one with its
 * own GIL (isolated).  Legacy sub-interpreters share
 * single-phase extension modules' state with the first one that imported
 * them, so ending one breaks the others (see cpython.c).  Where it cannot,
 * gowsgi_interp_end leaves the interpreter alive without the handler's
 * references. */
int gowsgi_can_end(int isolated);

/* Runs the bootstrap source (bootstrap.py) in the interpreter once,
 * prepends the directories in paths to sys.path, and loads the app named by
 * spec wrapped in the middleware in mw (module, callable, module, ...).
 * reloading (WithScriptReloading) makes it compile the app from source.
 * paths and mw hold NUL-terminated strings one after the other, pathslen
 * and mwlen bytes in all; every string argument is borrowed for the call.
 * On success *files is a new malloc'd list of the app's source files in the
 * same form (*fileslen bytes), which the caller frees.  Any OS thread.
 * Returns 0, or -1 with *err filled. */
int gowsgi_interp_load(gowsgi_interp *gi, const char *bootstrap,
		       const char *paths, size_t pathslen, const char *spec,
		       const char *mw, size_t mwlen, int reloading,
		       char **files, size_t *fileslen, gowsgi_error *err);

/* Drops the app's and middleware's modules from sys.modules and loads them
 * again; on failure the old app keeps serving.  *files as for load.  Any OS
 * thread.  Returns 0, or -1 with *err filled. */
int gowsgi_interp_reload(gowsgi_interp *gi, char **files, size_t *fileslen,
			 gowsgi_error *err);

/* The outcome of gowsgi_request_start and gowsgi_request_next. */
enum {
	GOWSGI_DONE = 0,      /* no more chunks: the response is complete */
	GOWSGI_CHUNK = 1,     /* chunk/chunklen hold the next non-empty chunk */
	GOWSGI_FILE = 2,      /* fd is a regular file to send from its offset */
	GOWSGI_ERROR = 3,     /* the app raised or broke the protocol; err is set */
	GOWSGI_HEADERS = 4,   /* start: headers are ready, iteration follows */
};

/* Filled by the calls below.  Headers are written into the caller's buffer as
 * status line, then per header a 2-byte name length, a 4-byte value length
 * (little endian), the name and the value; hdrlen is 0 when no new headers are
 * reported.  chunk points into a bytes object the request holds: it stays
 * valid, and may be read without the GIL, until the next call on the request. */
typedef struct {
	int state;
	int status;          /* the status code, when hdrlen > 0 */
	size_t hdrlen;       /* bytes of headers written at the start of buf */
	size_t statuslen;    /* of those, the status line ("200 OK") */
	const char *chunk;
	size_t chunklen;
	size_t bodylen;      /* start only: body bytes copied after the headers */
	int64_t length;      /* start only: the whole body's length when known
				(a list or tuple of bytes), else -1 */
	int64_t filesize;    /* GOWSGI_FILE: bytes from the offset to the end */
	int fd;              /* GOWSGI_FILE: a new descriptor the caller closes */
	gowsgi_error err;    /* GOWSGI_ERROR: owned by the caller */

	/* WithRequestTimeout's watch, touched only with the interpreter's
	 * GIL held; the calls above keep it, it is not cleared per call. */
	unsigned long ident; /* the thread running the request's Python */
	int busy;            /* the request is inside one of the calls above */
	int pending;         /* a timeout came while it was not: raise at entry */
	int interrupted;     /* an async exception was set on ident */
} gowsgi_result;

/* Request flags, packed by Go. */
enum {
	GOWSGI_HTTPS = 1,
	GOWSGI_HEAD = 2,             /* the request is a HEAD */
	GOWSGI_OPTIMIZE_HEADERS = 4, /* wsgi_optimize_send_headers */
	GOWSGI_BODY_EOF = 8,         /* the body ends after the body bytes given */
};

/* Calls the app.  env is the packed environ (see environ.go), borrowed for
 * the call.  handler/slot/gen identify the Go request for callbacks; Go
 * refuses a callback whose gen is not the slot's current one.  buf/cap is
 * the caller's buffer, borrowed for the call.  body/bodylen, borrowed for
 * the call, is the start of the request body, read by Go before the call
 * (body may be NULL when bodylen is 0); wsgi.input serves it before it
 * calls back for more, and never calls back when flags has
 * GOWSGI_BODY_EOF.  Returns the request, which the
 * caller must end with gowsgi_request_finish unless it is NULL; it is NULL
 * when the whole response was written into buf (state GOWSGI_DONE with
 * hdrlen/bodylen set) or the call failed before headers (GOWSGI_ERROR). */
gowsgi_req *gowsgi_request_start(gowsgi_interp *gi, const char *env,
				 size_t envlen, int flags, uintptr_t handler,
				 int slot, uint64_t gen, char *buf, size_t cap,
				 const char *body, size_t bodylen,
				 gowsgi_result *res);

/* Advances the iterable to the next non-empty chunk (empty chunks are
 * skipped).  Reports new headers in buf the first time they are available
 * with a chunk or at the end.  At the end (state GOWSGI_DONE) it also does
 * what gowsgi_request_finish does, in the same call, and the request is
 * freed: it returns 1, or -1 with *err filled if close() raised.  Otherwise
 * it returns 0 and the request stays the caller's.  Any OS thread, but the
 * caller keeps one thread for the request's life so thread-locals stay
 * put. */
int gowsgi_request_next(gowsgi_req *rq, int sent, char *buf, size_t cap,
			gowsgi_result *res, gowsgi_error *err);

/* sent, on next and finish, tells C that Go has sent the headers, so a later
 * start_response with exc_info re-raises instead of replacing them. */

/* Calls the iterable's close(), expires wsgi.input, start_response and write
 * so references the app kept raise instead of reaching Go, and frees the
 * request.  Returns 0, or -1 with *err filled if close() raised. */
int gowsgi_request_finish(gowsgi_req *rq, int sent, gowsgi_error *err);

/* Raises the interpreter's RequestTimeout in the request whose result is
 * res: at once in its thread if it is running Python (as an asynchronous
 * exception), else when it next enters.  Any OS thread; res stays the
 * caller's. */
void gowsgi_request_interrupt(gowsgi_interp *gi, gowsgi_result *res);

/* The environ keys Go packs by index: gowsgi_key(i) for i < gowsgi_nkeys(). */
int gowsgi_nkeys(void);
const char *gowsgi_key(int i);

#endif
