/* One request's Python, start to end, on the thread that keeps it: the
 * environ, the app call, the response (a sequence, a file or an iterable),
 * close(); and the request timeout's interruption of that thread. */
#include "gowsgi.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------- the timeout */

/* Marks the request as running Python on this thread; a timeout that came
 * before is raised now: returns -1 with RequestTimeout set.  Needs the
 * GIL. */
static int watch_enter(gowsgi_job *job)
{
	gowsgi_interp *gi = job->rq->gi;
	SHARED_LOCK();
	job->ident = PyThread_get_thread_ident();
	job->busy = 1;
	int pending = job->pending;
	job->pending = 0;
	SHARED_UNLOCK();
	if (pending) {
		PyErr_SetNone(gi->timeout_exc);
		return -1;
	}
	return 0;
}

/* Marks the request as out of Python, clearing an asynchronous exception
 * set but not delivered, so it cannot hit what this thread runs next. */
static void watch_leave(gowsgi_job *job)
{
	SHARED_LOCK();
	int interrupted = job->interrupted;
	job->busy = job->interrupted = 0;
	SHARED_UNLOCK();
	if (interrupted)
		PyThreadState_SetAsyncExc(job->ident, NULL);
}

int64_t gowsgi_job_interrupt(gowsgi_interp *gi, gowsgi_job *job, int64_t timeout)
{
	int temp;
	int64_t left = 0;
	PyThreadState *ts = gi_enter(gi, &temp);
	SHARED_LOCK();
	if (!job->started) {
		left = timeout; /* still queued: the timeout counts from the app call */
	} else if (job->started_at + timeout > now_ns()) {
		left = job->started_at + timeout - now_ns();
	} else if (job->busy) {
		/* Under the lock: the request cannot leave (and clear it) in
		 * between, nor a later request on its thread see it. */
		PyThreadState_SetAsyncExc(job->ident, gi->timeout_exc);
		job->interrupted = 1;
	} else {
		job->pending = 1;
	}
	SHARED_UNLOCK();
	gi_leave(ts, temp);
	return left;
}

/* ------------------------------------------------------------- responses */

/* Calls close() on the result; returns 0 or -1 with an exception set. */
static int result_close(gowsgi_req *rq)
{
	PyObject *result = rq->result, *close = NULL, *r = NULL;
	int rc = 0;
	if (result == NULL || PyList_CheckExact(result) || PyTuple_CheckExact(result))
		return 0;
	rq->result = NULL;
	close = PyObject_GetAttrString(result, "close");
	if (close == NULL) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError))
			PyErr_Clear();
		else
			rc = -1;
		goto out;
	}
	r = PyObject_CallNoArgs(close);
	if (r == NULL)
		rc = -1;
out:
	Py_XDECREF(r);
	Py_XDECREF(close);
	Py_DECREF(result);
	return rc;
}

/* Tries the sendfile path for a wsgi.file_wrapper result: returns 1 with
 * *fd (a new descriptor) and *size set, or 0 to iterate instead (no
 * exception set). */
static int try_file(gowsgi_req *rq, int *fd_out, int64_t *size)
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
	*fd_out = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
	if (*fd_out < 0)
		goto fallback;
	*size = st.st_size > pos ? (int64_t)(st.st_size - pos) : 0;
	rq->file = filelike;
	return 1;
fallback:
	PyErr_Clear();
	Py_XDECREF(r);
	Py_XDECREF(filelike);
	return 0;
}

/* wsgi_optimize_send_headers: after start_response, an empty chunk ends a
 * response that has no body to send. */
static int no_body_needed(gowsgi_req *rq)
{
	int flags = rq->job->in.flags;
	return (flags & GOWSGI_OPTIMIZE_HEADERS) && rq->status != NULL &&
	       ((flags & GOWSGI_HEAD) || rq->status_code == 204 ||
		rq->status_code == 304);
}

/* Whether seq (a list or tuple) holds only bytes; *total is their size. */
static int all_bytes(PyObject *seq, size_t *total)
{
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject **items = PySequence_Fast_ITEMS(seq);
	*total = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		if (!PyBytes_Check(items[i]))
			return 0; /* iteration reports the error where it is */
		*total += (size_t)PyBytes_GET_SIZE(items[i]);
	}
	return 1;
}

/* Sends the iterable's chunks until its end, an error, or Go wants no more.
 * Returns 0, or -1 with an exception set. */
static int iterate(gowsgi_req *rq)
{
	gowsgi_job *job = rq->job;
	PyObject *item = NULL;
	rq->iter = PyObject_GetIter(rq->result);
	if (rq->iter == NULL)
		return -1;
	while (!job->stop) {
		item = PyIter_Next(rq->iter);
		if (item == NULL) {
			if (PyErr_Occurred())
				goto failure;
			return report_headers(rq);
		}
		if (!PyBytes_Check(item)) {
			PyErr_Format(PyExc_TypeError,
				     "the application yielded %.100s; WSGI "
				     "response chunks must be bytes (PEP 3333)",
				     Py_TYPE(item)->tp_name);
			goto failure;
		}
		if (PyBytes_GET_SIZE(item) == 0) {
			Py_CLEAR(item);
			if (no_body_needed(rq))
				/* The headers go out now; the generator is not
				 * advanced again. */
				return report_headers(rq);
			continue;
		}
		if (report_headers(rq) < 0 || output_chunk(job, item, 0) < 0)
			goto failure;
		Py_CLEAR(item);
	}
	return 0;
failure:
	Py_XDECREF(item);
	return -1;
}

/* Calls the app and sends its response.  Returns 0, or -1 with an
 * exception set. */
static int respond(gowsgi_req *rq)
{
	gowsgi_interp *gi = rq->gi;
	gowsgi_job *job = rq->job;
	PyObject *env = NULL, *sr = NULL, *app = NULL, *result = NULL;
	int rc = -1;
	env = environ_build(gi, job->in.env, job->in.envlen, job->in.flags);
	if (env == NULL || PyDict_SetItem(env, gi->key_input, (PyObject *)rq) < 0 ||
	    PyDict_SetItem(env, gi->key_errors, rq->errors) < 0)
		goto failure;
	sr = start_response_new(rq);
	if (sr == NULL)
		goto failure;
	/* A reference of our own: a reload may replace gi->app meanwhile. */
	SHARED_LOCK();
	app = Py_NewRef(gi->app);
	SHARED_UNLOCK();
	result = PyObject_CallFunctionObjArgs(app, env, sr, NULL);
	Py_CLEAR(env); /* before the body: a large environ is not kept */
	if (result == NULL)
		goto failure;
	rq->result = result;
	result = NULL;
	size_t total;
	int fd;
	int64_t size;
	if ((PyList_CheckExact(rq->result) || PyTuple_CheckExact(rq->result)) &&
	    all_bytes(rq->result, &total)) {
		if (report_headers(rq) < 0 || output_sequence(job, rq->result, total) < 0)
			goto failure;
	} else if (Py_IS_TYPE(rq->result, (PyTypeObject *)gi->file_wrapper) &&
		   try_file(rq, &fd, &size)) {
		if (report_headers(rq) < 0) {
			close(fd);
			goto failure;
		}
		output_file(job, fd, size);
	} else if (iterate(rq) < 0) {
		goto failure;
	}
	rc = 0;
failure:
	Py_XDECREF(result);
	Py_XDECREF(app);
	Py_XDECREF(sr);
	Py_XDECREF(env);
	return rc;
}

/* Creates the request object and enters its context.  Returns it (a new
 * reference), or NULL with an exception set. */
static gowsgi_req *req_new(gowsgi_job *job)
{
	gowsgi_interp *gi = job->gi;
	gowsgi_req *rq = PyObject_New(gowsgi_req, gi->input_type);
	if (rq == NULL)
		return NULL;
	memset((char *)rq + sizeof(PyObject), 0, sizeof *rq - sizeof(PyObject));
	rq->gi = gi;
	rq->job = job;
	rq->handle = job->in.handle;
	rq->gen = job->in.gen;
	rq->ibuf = job->in.ibuf;
	rq->icap = job->in.ibuf ? GOWSGI_IBUF_SIZE : 0;
	rq->ilen = job->in.ilen;
	rq->ieof = (job->in.flags & GOWSGI_BODY_EOF) != 0;
	job->rq = rq;
	rq->errors = errors_new(gi, rq->handle, rq->gen);
	rq->context = PyContext_New();
	if (rq->errors == NULL || rq->context == NULL || PyContext_Enter(rq->context) < 0) {
		Py_CLEAR(rq->context);
		job->rq = NULL;
		rq->job = NULL;
		Py_DECREF(rq);
		return NULL;
	}
	return rq;
}

/* Ends the request object: what the app kept of it raises from now on. */
static void req_end(gowsgi_req *rq)
{
	Py_CLEAR(rq->iter);
	Py_CLEAR(rq->file);
	Py_CLEAR(rq->result);
	errors_end(rq->errors);
	input_detach(rq);
	if (PyContext_Exit(rq->context) < 0)
		PyErr_Clear();
	rq->job->rq = NULL;
	rq->job = NULL;
	Py_DECREF(rq);
}

void request_run(gowsgi_job *job, int64_t now)
{
	gowsgi_interp *gi = job->gi;
	int end = GOWSGI_DONE;
	SHARED_LOCK();
	job->started = 1;
	job->started_at = now;
	SHARED_UNLOCK();
	gowsgi_req *rq = req_new(job);
	if (rq == NULL) {
		err_fill(gi->format_exception, &job->err);
		output_end(job, GOWSGI_ERROR);
		return;
	}
	if (watch_enter(job) < 0 || respond(rq) < 0) {
		end = GOWSGI_ERROR;
		err_fill(gi->format_exception, &job->err);
		/* close() runs on every path; its own error is reported only if
		 * the app had not already failed. */
		if (result_close(rq) < 0)
			PyErr_Clear();
	} else if (result_close(rq) < 0) {
		/* The response is whole; Go logs what close() raised. */
		err_fill(gi->format_exception, &job->err);
	}
	if (job->fd >= 0) { /* a file the app's error left unsent */
		close(job->fd);
		job->fd = -1;
	}
	watch_leave(job);
	req_end(rq);
	output_end(job, end);
}

/* ------------------------------------------------------------------ jobs */

gowsgi_job *gowsgi_job_new(int efd)
{
	gowsgi_job *job = calloc(1, sizeof *job);
	if (job == NULL)
		return NULL;
	pthread_mutex_init(&job->mu, NULL);
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&job->cv, &a);
	pthread_condattr_destroy(&a);
	job->in.efd = efd;
	job->fd = -1;
	job->hdr = malloc(HDR_CAP);
	job->in.ibuf = malloc(GOWSGI_IBUF_SIZE);
	job->in.env = malloc(4096);
	job->in.envcap = 4096;
	int ok = job->hdr && job->in.ibuf && job->in.env;
	for (int i = 0; i < 2; i++) {
		job->b[i].arena = malloc(BATCH_BYTES);
		job->b[i].cap = BATCH_BYTES;
		ok = ok && job->b[i].arena;
	}
	if (!ok) {
		gowsgi_job_free(job);
		return NULL;
	}
	return job;
}

gowsgi_job_in *gowsgi_job_in_of(gowsgi_job *job) { return &job->in; }

int *gowsgi_job_waiting_of(gowsgi_job *job) { return &job->go_waiting; }

int gowsgi_job_env_reserve(gowsgi_job *job, size_t n)
{
	if (n <= job->in.envcap)
		return 0;
	size_t cap = job->in.envcap;
	while (cap < n)
		cap *= 2;
	char *p = realloc(job->in.env, cap);
	if (p == NULL)
		return -1;
	job->in.env = p;
	job->in.envcap = cap;
	return 0;
}

void gowsgi_job_free(gowsgi_job *job)
{
	for (int i = 0; i < 2; i++) {
		free(job->b[i].arena);
		free(job->b[i].segs);
		free(job->b[i].owners); /* empty: given back at each end */
	}
	free(job->hdr);
	free(job->in.ibuf);
	free(job->in.env);
	gowsgi_error_free(&job->err);
	pthread_mutex_destroy(&job->mu);
	pthread_cond_destroy(&job->cv);
	free(job);
}

void job_reset(gowsgi_job *job, gowsgi_sched *s, gowsgi_interp *gi)
{
	job->qnext = NULL;
	job->queued = 0;
	job->go_waiting = 0;
	job->deferred = 0;
	job->writer = 0;
	job->armed = 0;
	job->returned = 0;
	for (int i = 0; i < 2; i++) {
		job->b[i].state = BATCH_FREE;
		job->b[i].nseg = 0;
		job->b[i].used = 0;
		job->b[i].bytes = 0;
	}
	job->fill = 0;
	job->hdr_new = 0;
	job->hdrlen = job->statuslen = 0;
	job->status = 0;
	job->length = -1;
	job->end = 0;
	job->fd = -1;
	job->filesize = 0;
	job->file_sent = 0;
	job->stop = STOP_NONE;
	job->finished = 0;
	gowsgi_error_free(&job->err);
	job->rq = NULL;
	job->sched = s;
	job->gi = gi;
	job->direct = 0;
	job->committed = 0;
	job->ident = 0;
	job->busy = job->pending = job->interrupted = job->started = 0;
	job->started_at = 0;
}
