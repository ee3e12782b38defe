/*
 * The C side's internal header: what the .c files share.  Go sees only
 * cpython.h.
 *
 * The files, by concern:
 *   errors.c    Python exceptions copied into gowsgi_error
 *   interp.c    the runtime, thread states, interpreters and loading apps
 *   environ.c   the packed environ -> a dict
 *   input.c     wsgi.input
 *   response.c  start_response, write() and the output batches Go reads
 *   request.c   one request's Python: the app call, the iteration, close()
 *   sched.c     who runs a request: places, the queue, worker threads
 *
 * Conventions: every function that holds references releases them at one
 * "failure:" label; each declaration says what it borrows and what it
 * returns.  Only these files touch PyObject pointers.
 */
#ifndef GOWSGI_H
#define GOWSGI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "cpython.h"

/* With the GIL, holding it serializes the few fields two threads touch: the
 * app callable a reload replaces, and a request's timeout watch.  A
 * free-threaded build (Py_GIL_DISABLED) has no GIL, so a mutex does it
 * there.  Untested: no such build could be had. */
#ifdef Py_GIL_DISABLED
extern pthread_mutex_t gowsgi_shared_mu;
#define SHARED_LOCK() pthread_mutex_lock(&gowsgi_shared_mu)
#define SHARED_UNLOCK() pthread_mutex_unlock(&gowsgi_shared_mu)
#else
#define SHARED_LOCK() ((void)0)
#define SHARED_UNLOCK() ((void)0)
#endif

/* ---------------------------------------------------------------- errors.c */

/* Moves the raised exception into *err (type, message, traceback) and
 * clears the error indicator.  format is the interpreter's traceback
 * formatter, or NULL.  Needs the GIL. */
void err_fill(PyObject *format, gowsgi_error *err);

/* Sets *err to a fixed type and message; the strings are borrowed. */
void err_set(gowsgi_error *err, const char *type, const char *msg);

/* ------------------------------------------------------------ environ.c */

#define NKEYS 28

/* Builds a new environ dict from the packed buffer p (n bytes, borrowed).
 * Returns a new reference, or NULL with an exception set.  Needs the GIL. */
PyObject *environ_build(gowsgi_interp *gi, const char *p, size_t n, int flags);

/* Interns the keys of gowsgi_key() into gi.  Returns 0, or -1 with an
 * exception set.  Needs gi's GIL. */
int environ_setup(gowsgi_interp *gi);

/* ------------------------------------------------------------- interp.c */

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
	PyObject *key_input, *key_errors, *key_scheme, *scheme_https;
	PyObject *format_exception;
	PyObject *file_wrapper;
	PyObject *timeout_exc;
	PyObject *switch_interval; /* sys.getswitchinterval, for the scheduler */
	PyObject *errors_cls; /* bootstrap's Errors: one wsgi.errors per request */
	PyObject *emit;       /* the callable Errors writes lines to */
	PyTypeObject *input_type;

	/* Thread states created for this interpreter on Go's threads;
	 * guarded by registry_mu. */
	PyThreadState **tstates;
	size_t ntstates, captstates;
	gowsgi_interp *next;
};

/* Returns this OS thread's state for gi (borrowed, cached per thread), or
 * a new temporary one with *temp set, which gi_leave deletes.  The GIL is
 * not held. */
PyThreadState *ts_get(gowsgi_interp *gi, int *temp);

/* Attaches a thread state of gi and takes its GIL; gi_leave detaches and
 * releases it, deleting a temporary state. */
PyThreadState *gi_enter(gowsgi_interp *gi, int *temp);
void gi_leave(PyThreadState *ts, int temp);

/* --------------------------------------------------------- the request */

/* Output batches: what the request's thread has produced for Go to send.
 * Small chunks are copied into the batch's arena; larger ones are sent
 * from the bytes object itself, kept alive by a reference the batch owns. */
#define BATCH_BYTES (64 << 10) /* a batch is full past this */
#define COPY_MAX (16 << 10)    /* chunks up to this are copied */

enum { BATCH_FREE = 0, BATCH_FILLING = 1, BATCH_HANDED = 2 };

typedef struct {
	int state;
	gowsgi_seg *segs;
	int nseg, capseg;
	PyObject **owners; /* references to release once Go has sent the batch */
	int nown, capown;
	char *arena;       /* COPY_MAX.. bytes of copies, malloc'd */
	size_t used, cap;
	size_t bytes;      /* data in the batch, copied or not */
} batch;

/* A job: the C side of one slot, reused by the slot's requests.  Go fills
 * the request part before submitting it; the request's thread and Go then
 * meet under mu. */
struct gowsgi_job {
	/* Set by Go before gowsgi_job_submit (cpython.h). */
	gowsgi_job_in in;

	/* The scheduler's, under its mutex. */
	gowsgi_job *qnext;
	int queued;
	int64_t queued_at; /* ns, CLOCK_MONOTONIC */

	/* Shared by the request's thread and Go. */
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* the request's thread waits here for Go */
	int go_waiting;      /* Go waits on the eventfd: write to it (atomic) */
	int deferred;        /* on the scheduler's list of late notices (atomic) */
	int writer;          /* Go sends the output while the thread runs */
	int armed;           /* direct: Go starts a writer soon unless the job ends first */
	int returned;        /* direct: the submitting call is returning, too late for a writer */
	batch b[2];
	int fill;            /* the batch the request's thread appends to */
	int hdr_new;         /* headers Go has not seen are in hdr */
	char *hdr;           /* HDR_CAP bytes, malloc'd */
	size_t hdrlen, statuslen;
	int status;
	int64_t length;      /* the whole body's length when known, else -1 */
	int end;             /* the state Go gets after the batches: GOWSGI_DONE, _ERROR or _FILE */
	int fd;              /* GOWSGI_FILE: a descriptor Go closes */
	int64_t filesize;
	int file_sent;       /* Go has sent the file */
	int stop;            /* STOP_*: Go wants no more body */
	int finished;        /* the request's thread is done with the job */
	gowsgi_error err;

	/* The request's thread only. */
	gowsgi_req *rq;
	gowsgi_sched *sched;
	gowsgi_interp *gi;
	PyThreadState *blocked_ts; /* saved by sched_block */
	int direct;          /* runs on the thread of the Go call that submitted it */
	int committed;       /* a non-empty chunk or write() went to a batch */
	size_t want;         /* bytes the thread waits to append, under mu */

	/* WithRequestTimeout's watch, under SHARED_LOCK with the GIL held. */
	unsigned long ident; /* the thread running the request's Python */
	int busy;            /* that thread is in the request's Python */
	int pending;         /* a timeout came while it was not: raise at entry */
	int interrupted;     /* an async exception was set on ident */
	int started;         /* the request's thread has picked it up */
	int64_t started_at;  /* ns, CLOCK_MONOTONIC */
};

enum { STOP_NONE = 0, STOP_ENOUGH = 1, STOP_GONE = 2 };

#define HDR_CAP (64 << 10)

/* The Python object behind wsgi.input, start_response and write(): one per
 * request, freed when the app drops its last reference. */
struct gowsgi_req {
	PyObject_HEAD
	gowsgi_interp *gi;
	gowsgi_job *job;   /* NULL once the request ended */
	uintptr_t handle;  /* Go's slot for callbacks */
	uint64_t gen;      /* the slot's generation: Go refuses callbacks of an ended request */
	int reading;       /* a thread is inside a wsgi.input method */
	int status_code;
	int headers_reported;
	PyObject *status;  /* str, set by start_response */
	PyObject *headers; /* list, set by start_response */
	PyObject *result;  /* the app's return value */
	PyObject *iter;    /* iter(result) */
	PyObject *file;    /* the file-like behind a GOWSGI_FILE result */
	PyObject *errors;  /* this request's wsgi.errors */
	PyObject *context; /* the contextvars.Context the request runs in */

	/* wsgi.input's buffer: the job's until the request ends, then the
	 * object's own if a reader was inside a method. */
	char *ibuf;
	size_t ipos, ilen, icap;
	int ibuf_owned;
	int ieof;
};

/* ------------------------------------------------------------- input.c */

/* Creates gi's wsgi.input type.  Returns 0, or -1 with an exception set. */
int input_setup(gowsgi_interp *gi);

/* Drops rq's use of the job's input buffer at the end of the request. */
void input_detach(gowsgi_req *rq);

/* Returns 0 if rq's request is alive, else -1 with ValueError set. */
int req_alive(gowsgi_req *rq);

/* ----------------------------------------------------------- response.c */

/* start_response for rq: returns a new reference, or NULL. */
PyObject *start_response_new(gowsgi_req *rq);

/* Writes rq's status and headers into the job's header buffer for Go if
 * they are new.  Returns 0, or -1 with an exception set. */
int report_headers(gowsgi_req *rq);

/* Queues one chunk (a bytes object, borrowed) for Go.  A chunk of more
 * than COPY_MAX bytes is kept by a new reference.  Waits, as sched_block
 * says, while the batches are full.  Returns 0, 1 if Go wants no more body
 * (the chunk was dropped), or -1 with an exception set.  Needs the GIL. */
int output_chunk(gowsgi_job *job, PyObject *chunk, int from_write);

/* Queues every item of a list or tuple of bytes (borrowed) at once,
 * without waiting: the sequence is kept by a new reference.  Needs the
 * GIL. */
int output_sequence(gowsgi_job *job, PyObject *seq, size_t total);

/* Ends the job's output with state end (GOWSGI_DONE or GOWSGI_ERROR) and
 * tells Go.  The job's thread does not touch the job afterwards.  Needs the
 * GIL (it releases the references of batches Go has sent). */
void output_end(gowsgi_job *job, int end);

/* Hands Go a file to send (GOWSGI_FILE) and waits until it is sent.
 * Returns 0.  Needs the GIL; releases it while waiting. */
int output_file(gowsgi_job *job, int fd, int64_t size);

/* Creates the request's wsgi.errors (a new reference), tagged with the
 * slot and generation for Go; errors_end writes what is left of a line and
 * drops the tag.  Need the GIL. */
PyObject *errors_new(gowsgi_interp *gi, uintptr_t handle, uint64_t gen);
void errors_end(PyObject *errors);

/* Tells Go, through the eventfd, that something changed.  mu held. */
void output_notify(gowsgi_job *job);

/* Releases references of batches Go has sent; clears a free batch for
 * reuse.  Needs the GIL; mu not held. */
void batch_release(batch *b);

/* ------------------------------------------------------------ request.c */

/* Clears the job's per-request state for a request submitted to s, whose
 * interpreter is gi. */
void job_reset(gowsgi_job *job, gowsgi_sched *s, gowsgi_interp *gi);

/* Deletes an exiting thread's state for gi, as ts_get gave it, and the
 * thread's main-interpreter state. */
void ts_release(gowsgi_interp *gi, PyThreadState *ts, int temp);

/* Runs the job's request to the end: the app call, the iteration, close().
 * Called with the GIL held and a place taken, on the thread that keeps the
 * request; returns the same way.  now is now_ns(), which the caller has
 * just read. */
void request_run(gowsgi_job *job, int64_t now);

/* ------------------------------------------------------------- sched.c */

/* Waits, with job->mu held on entry and on return, until ready(job) is
 * true; the GIL is released meanwhile and, if the wait lasts, the place
 * too.  Needs the GIL. */
void job_wait(gowsgi_job *job, int (*ready)(gowsgi_job *));

/* Gives Go's references to the scheduler, to be released by the next
 * thread that holds its interpreter's GIL; owners is malloc'd, and taken. */
void sched_discard(gowsgi_sched *s, PyObject **owners, int n);

/* Gives up the request's place and the GIL while its thread waits for Go
 * (a slow client, a file being sent, the request body).  Needs the GIL. */
void sched_block(gowsgi_job *job);

/* Takes a place and the GIL again after sched_block. */
void sched_unblock(gowsgi_job *job);

/* Releases references Go gave back, if the scheduler holds any; returns
 * whether it did.  Needs the GIL of the scheduler's interpreter. */
int sched_collect(gowsgi_sched *s);

/* Now, in ns on CLOCK_MONOTONIC. */
int64_t now_ns(void);

/* For a job run on a Go call's own thread, which cannot send what it
 * produces until it returns: sched_arm_writer has Go start a writer if the
 * job is still running a moment after its first chunk (so a chunk is never
 * held while the app works on), sched_start_writer starts one now (the
 * batches are full, or a file is to be sent).  The GIL is held; mu is
 * not. */
void sched_arm_writer(gowsgi_job *job);
void sched_start_writer(gowsgi_job *job);

/* Tells Go the job has new output: now, or a little later while other
 * requests are queued (sched.c, "Telling Go").  mu and the GIL held. */
void sched_notify(gowsgi_job *job);

/* Takes a finished job off its scheduler's list of late notices: Go has
 * seen its end, and the job may be reused.  mu held. */
void sched_forget(gowsgi_job *job);

/* Around a call into Go from a thread Python runs on (go_input_read,
 * go_log): Go may start a thread of its own from the calling thread, and
 * the new thread keeps this one's CPUs for good.  While WithPythonCPUs pins
 * threads, go_call_enter lets the calling thread run on all the process's
 * CPUs, keeping its own in *saved, and returns whether go_call_leave must
 * put them back. */
int go_call_enter(cpu_set_t *saved);
void go_call_leave(const cpu_set_t *saved, int restore);

#endif
