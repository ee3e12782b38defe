/*
 * The C side of gowsgi as Go sees it: a request-shaped API over the CPython
 * C API.  The C is split by concern behind gowsgi.h (see its list of files).
 *
 * Crossing budget (checked by TestCgoCallsPerRequest and BenchmarkHello):
 *   - a request that finds its interpreter idle runs in the Go call that
 *     submits it; a list or tuple response then needs that one call and
 *     nothing else;
 *   - a queued request: the submit, then one gowsgi_job_next per batch of
 *     output (chunks produced while Go sends are batched) and one for the
 *     end;
 *   - one C->Go callback per wsgi.input refill or wsgi.errors line, with
 *     the GIL released; write() needs none.
 *
 * Threads: the gowsgi_runtime_* and gowsgi_interp_new/end functions run on
 * the control thread; everything else may be called from any OS thread.  A
 * function that takes the GIL releases it before it returns, so the GIL is
 * never held while Go runs.  Python itself runs on the calling thread of
 * gowsgi_job_submit or on the scheduler's worker threads (sched.c).
 */
#ifndef GOWSGI_CPYTHON_H
#define GOWSGI_CPYTHON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct gowsgi_interp gowsgi_interp;
typedef struct gowsgi_sched gowsgi_sched;
typedef struct gowsgi_job gowsgi_job;
typedef struct gowsgi_req gowsgi_req;

/* An error copied out of Python.  The strings are malloc'd and owned by the
 * holder, who frees them with gowsgi_error_free. */
typedef struct {
	char *type;      /* qualified exception type name, e.g. "ModuleNotFoundError" */
	char *message;   /* str(exception) */
	char *traceback; /* the formatted traceback, as traceback.format_exception */
} gowsgi_error;

void gowsgi_error_free(gowsgi_error *e);

/* ------------------------------------------------------------- runtime */

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

/* 1 when CPython's code is part of the object this code is in (linked in
 * from libpython's static archive), 0 when it comes from a shared
 * libpython.  Needs no running Python. */
int gowsgi_python_static(void);

/* ---------------------------------------------------------- interpreters */

enum {
	GOWSGI_SUB = 0,      /* a sub-interpreter sharing the main GIL */
	GOWSGI_MAIN = 1,     /* the main interpreter */
	GOWSGI_ISOLATED = 2, /* a sub-interpreter with its own GIL (3.12+) */
};

/* Creates an interpreter of the given kind.  handler is the Go handle the
 * interpreter's log lines report to.  Control thread only.  Returns a new
 * handle, or NULL with *err filled. */
gowsgi_interp *gowsgi_interp_new(int kind, uintptr_t handler, gowsgi_error *err);

/* Ends the interpreter and frees the handle.  An interpreter gowsgi can end
 * (own GIL, no thread of the app still running) first loses every thread
 * state made for it, then Py_EndInterpreter runs.  Any other is left alive
 * without the handler's references, its thread states kept, since freeing
 * them under a live interpreter leaves pointers to them.  Its scheduler
 * must be stopped.  Control thread only.  Returns 1 if the interpreter was
 * ended, 0 if left alive. */
int gowsgi_interp_end(gowsgi_interp *gi);

/* Returns how many threads the app started are alive in the interpreter,
 * and in *names (malloc'd, the caller frees; NULL when none) their names. */
int gowsgi_interp_threads(gowsgi_interp *gi, char **names);

/* Cleans a closed handler's interpreter for another handler, instead of
 * ending it: drops the app, then the bootstrap's recycle() drops the
 * modules imported since the interpreter was set up and puts back the state
 * it had then (see bootstrap.py).  Only for a sub-interpreter sharing the
 * GIL whose set-up ran, with its scheduler stopped.  Runs the app's
 * finalizers, so any OS thread but the control thread.  Returns 0 when it
 * is ready for gowsgi_interp_reuse; 1 when threads the app started are
 * alive (then nothing was cleaned, or a finalizer started one); -1 with
 * *err filled when the cleaning raised.  On 1 or -1 the interpreter is
 * not fit for reuse: end it. */
int gowsgi_interp_recycle(gowsgi_interp *gi, gowsgi_error *err);

/* Gives a recycled interpreter to the handler numbered handler: its
 * wsgi.errors lines report there, and its os.environ is read again from the
 * process's environment, as a new interpreter's would be.  Returns 0, or
 * -1 with *err filled (then end the interpreter). */
int gowsgi_interp_reuse(gowsgi_interp *gi, uintptr_t handler, gowsgi_error *err);

/* CPython's ID of the interpreter (PyInterpreterState_GetID). */
int64_t gowsgi_interp_id(gowsgi_interp *gi);

/* Runs the bootstrap source (bootstrap.py) in the interpreter once,
 * prepends the directories in paths to sys.path, and loads the app named by
 * spec wrapped in the middleware in mw (module, callable, module, ...).
 * reloading (WithScriptReloading) makes it compile the app from source;
 * multiprocess sets the environ's wsgi.multiprocess.
 * paths and mw hold NUL-terminated strings one after the other, pathslen
 * and mwlen bytes in all; every string argument is borrowed for the call.
 * On success *files is a new malloc'd list of the app's source files in the
 * same form (*fileslen bytes), which the caller frees.  Returns 0, or -1
 * with *err filled. */
int gowsgi_interp_load(gowsgi_interp *gi, const char *bootstrap,
		       const char *paths, size_t pathslen, const char *spec,
		       const char *mw, size_t mwlen, int reloading, int multiprocess,
		       char **files, size_t *fileslen, gowsgi_error *err);

/* Drops the app's and middleware's modules from sys.modules and loads them
 * again; on failure the old app keeps serving.  *files as for load.
 * Returns 0, or -1 with *err filled. */
int gowsgi_interp_reload(gowsgi_interp *gi, char **files, size_t *fileslen,
			 gowsgi_error *err);

/* The environ keys Go packs by index: gowsgi_key(i) for i < gowsgi_nkeys(). */
int gowsgi_nkeys(void);
const char *gowsgi_key(int i);

/* ------------------------------------------------------------- scheduler */

/* Creates an interpreter's scheduler: places is how many requests may run
 * its Python at once (WithThreads); max_queue, when > 0, how many may wait
 * (WithMaxQueue).  Returns a new handle, or NULL out of memory. */
gowsgi_sched *gowsgi_sched_new(gowsgi_interp *gi, int places, int max_queue, int cpu);

/* Writes the CPUs the process may run on to out, at most max of them, and
 * returns how many, or -1 (errno set). */
int gowsgi_allowed_cpus(int *out, int max);

/* Refuses new jobs, waits until the worker threads have exited, and
 * releases the Python objects Go gave back (taking the GIL).  No job may be
 * queued or running.  gowsgi_sched_free then frees it. */
void gowsgi_sched_stop(gowsgi_sched *s);
void gowsgi_sched_free(gowsgi_sched *s);

typedef struct {
	int running;          /* requests holding a place */
	int queued;           /* requests waiting for one, new or going on */
	int blocked;          /* requests waiting for their client, no place held */
	int workers;          /* worker threads */
	uint64_t served;      /* requests run */
	uint64_t direct;      /* of which on the Go call's thread */
	uint64_t back_to_back; /* of which after another on a thread that kept the GIL */
	uint64_t gave_way;    /* requests after which such a thread gave way to the standby */
	int64_t queue_wait_ns; /* time requests waited in the queue, in all */
	int64_t wait_ns;      /* time requests waited for a place to go on */
	int64_t gil_wait_ns;  /* time threads waited for the GIL to run a request */
} gowsgi_sched_stats;

void gowsgi_sched_stats_get(gowsgi_sched *s, gowsgi_sched_stats *out);

/* Why a standby began to wait for the GIL (see watch in sched.c):
 *   AT_ONCE  it did not watch: requests were not Python-bound, or short,
 *            or the running one was not alone;
 *   STOPPED  the running request's thread stopped without being preempted;
 *   LONG     the running request had had a switch interval of CPU;
 *   GONE     the running request's thread's CPU clock was gone. */
enum {
	GOWSGI_STANDBY_AT_ONCE = 1,
	GOWSGI_STANDBY_STOPPED,
	GOWSGI_STANDBY_LONG,
	GOWSGI_STANDBY_GONE,
};

typedef struct {
	int64_t at;  /* when it began to wait, CLOCK_MONOTONIC ns */
	int64_t got; /* when it had the GIL, or 0 */
	int tid;     /* its thread */
	int why;     /* GOWSGI_STANDBY_... */
} gowsgi_sched_wait;

/* How many of those the scheduler keeps. */
#define GOWSGI_SCHED_WAITS 64

/* Copies the last times (at most max, oldest first) a standby began to
 * wait for the GIL, and why, into out; returns how many.  For tests. */
int gowsgi_sched_waits(gowsgi_sched *s, gowsgi_sched_wait *out, int max);

/* ------------------------------------------------------------------ jobs */

/* wsgi.input's buffer size; Go reads a small body into it before submit. */
#define GOWSGI_IBUF_SIZE (64 << 10)

/* Request flags, packed by Go. */
enum {
	GOWSGI_HTTPS = 1,
	GOWSGI_HEAD = 2,             /* the request is a HEAD */
	GOWSGI_OPTIMIZE_HEADERS = 4, /* wsgi_optimize_send_headers */
	GOWSGI_BODY_EOF = 8,         /* the body ends after the ilen bytes given */
};

/* What Go sets before each gowsgi_job_submit.  env (envcap bytes) and ibuf
 * (GOWSGI_IBUF_SIZE bytes) belong to the job: Go writes the packed environ
 * (see environ.go) and the start of the body into them. */
typedef struct {
	char *env;
	size_t envlen, envcap;
	char *ibuf;
	size_t ilen;
	int flags;
	uintptr_t handle; /* Go's slot, passed back by callbacks */
	uint64_t gen;     /* the slot's generation: Go refuses callbacks of an ended request */
	int efd;          /* an eventfd C writes to when Go waits for it */
} gowsgi_job_in;

/* Creates a job (the C side of a Go slot) reporting to eventfd efd.
 * Returns a new handle, or NULL out of memory.  gowsgi_job_in_of gives Go
 * the part it fills.  gowsgi_job_waiting_of gives the flag C clears, and
 * then writes to the eventfd, when Go waits and something came: Go reads
 * it atomically, and never needs to read the eventfd itself. */
gowsgi_job *gowsgi_job_new(int efd);
gowsgi_job_in *gowsgi_job_in_of(gowsgi_job *job);
int *gowsgi_job_waiting_of(gowsgi_job *job);

/* Makes room for n bytes of environ (env may move).  Returns 0, or -1 out
 * of memory. */
int gowsgi_job_env_reserve(gowsgi_job *job, size_t n);

/* Frees a job no request uses. */
void gowsgi_job_free(gowsgi_job *job);

/* A piece of the body: n bytes at p, valid until Go gives its batch back. */
typedef struct {
	const char *p;
	size_t n;
	int flags;
} gowsgi_seg;

enum { GOWSGI_SEG_WRITE = 1 }; /* the bytes came from write() */

/* What gowsgi_job_next reports, in order: batches of body, then the end. */
enum {
	GOWSGI_WAIT = 0,  /* nothing yet: Go waits on the eventfd and asks again */
	GOWSGI_MORE = 1,  /* segs/nseg: a batch to send, then give back */
	GOWSGI_DONE = 2,  /* the response is complete; err set if close() raised */
	GOWSGI_ERROR = 3, /* the app raised or broke the protocol; err is set */
	GOWSGI_FILE = 4,  /* fd is a regular file to send from its offset,
			     then gowsgi_job_file_sent; DONE follows */
};

typedef struct {
	int state;
	int status;           /* the status code, when hdrlen > 0 */
	size_t hdrlen;        /* new status and headers at the start of hdrbuf */
	size_t statuslen;     /* of those, the status line ("200 OK") */
	const gowsgi_seg *segs;
	int nseg;
	int batch;            /* GOWSGI_MORE: pass it back to the next call */
	int end;              /* GOWSGI_MORE: the batch is the last, and the
				 request ended so (DONE or ERROR, err set as for
				 them); no further call is needed unless owned */
	int owned;            /* the batch keeps Python objects: give it back */
	int64_t length;       /* the whole body's length when known, else -1 */
	int fd;               /* GOWSGI_FILE: a descriptor the caller closes */
	int64_t filesize;     /* GOWSGI_FILE: bytes from the offset to the end */
	gowsgi_error err;     /* owned by the caller */
} gowsgi_event;

/* gowsgi_job_submit's outcomes. */
enum {
	GOWSGI_RAN = 1,        /* it ran on this thread; ev holds the first event */
	GOWSGI_RAN_WRITER = 2, /* it ran here, and Go's writer (go_start_writer) reads the events */
	GOWSGI_QUEUED = 3,     /* a worker will run it: read the events */
	GOWSGI_FULL = 4,       /* max_queue requests are waiting */
	GOWSGI_REFUSED = 5,    /* the scheduler is stopping */
};

/* Runs the job's request on this thread if the interpreter is idle, else
 * queues it.  hdrbuf (HDR bytes, borrowed for the call) and ev receive the
 * first event of a request run here.  After anything but FULL and
 * REFUSED, the events are read with gowsgi_job_next until DONE or ERROR. */
int gowsgi_job_submit(gowsgi_sched *s, gowsgi_job *job, char *hdrbuf, gowsgi_event *ev);

/* Takes back a job still in the queue.  Returns 1 if it was (it will not
 * run), 0 if it has started. */
int gowsgi_job_cancel(gowsgi_sched *s, gowsgi_job *job);

/* Gives back batch consumed (or -1), asks for no more body when stop is 1
 * (enough sent) or 2 (the client is gone), and reports the next event into
 * ev, new headers into hdrbuf (64 KiB, borrowed for the call).  Returns
 * ev->state. */
int gowsgi_job_next(gowsgi_job *job, int consumed, int stop, char *hdrbuf, gowsgi_event *ev);

/* Makes Go's writer the reader of the events of a job running in the Go
 * call that submitted it (go_arm_writer's timer).  Returns 1, or 0 if that
 * call is returning (it reads them) or a writer runs already. */
int gowsgi_job_claim_writer(gowsgi_job *job);

/* Tells the request's thread that the GOWSGI_FILE file was sent. */
void gowsgi_job_file_sent(gowsgi_job *job);

/* Raises the interpreter's RequestTimeout in the job's request if it has
 * run its Python for timeout ns, at once if the thread is in Python, else
 * when it next enters.  Returns 0, or the ns left before it will have (a
 * request that started late, or is still queued): call again then. */
int64_t gowsgi_job_interrupt(gowsgi_interp *gi, gowsgi_job *job, int64_t timeout);

#endif
