/* What the app sends: start_response and write(), checked as PEP 3333 says,
 * and the output batches through which the request's thread hands status,
 * headers and body to Go.
 *
 * A job has two batches.  The request's thread appends to one ("fill")
 * while Go sends the other; Go takes the fill batch when it has sent its
 * own, so chunks produced while Go writes leave together.  A thread that
 * finds both batches in use waits (sched.c: it gives up its place if the
 * wait is long), so what a slow client makes the server hold is bounded by
 * two batches. */
#include "gowsgi.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------- status, headers */

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

/* Validates status and headers (borrowed); returns the status code, or -1
 * with an exception set. */
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

/* Writes rq's status and headers into buf as cpython.h describes.  Returns
 * the bytes written, or -1 if they do not fit.  Needs the GIL. */
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

int report_headers(gowsgi_req *rq)
{
	gowsgi_job *job = rq->job;
	if (rq->headers_reported)
		return 0;
	if (rq->status == NULL) {
		PyErr_SetString(PyExc_RuntimeError,
				"the application did not call start_response "
				"before its first non-empty chunk or its end");
		return -1;
	}
	size_t statuslen;
	pthread_mutex_lock(&job->mu);
	Py_ssize_t n = headers_encode(rq, job->hdr, HDR_CAP, &statuslen);
	if (n >= 0) {
		job->hdrlen = (size_t)n;
		job->statuslen = statuslen;
		job->status = rq->status_code;
		job->hdr_new = 1;
	}
	pthread_mutex_unlock(&job->mu);
	if (n < 0) {
		PyErr_SetString(PyExc_ValueError, "response headers exceed 64 KiB");
		return -1;
	}
	rq->headers_reported = 1;
	return 0;
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
				"write(data): send bytes to the client (PEP 3333)."};

/* start_response(status, response_headers, exc_info=None): returns a new
 * reference to write. */
static PyObject *start_response_impl(PyObject *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"status", "response_headers", "exc_info", NULL};
	gowsgi_req *rq = (gowsgi_req *)self;
	PyObject *status, *headers, *exc_info = Py_None;
	if (req_alive(rq) < 0)
		return NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:start_response", kwlist,
					 &status, &headers, &exc_info))
		return NULL;
	if (exc_info != Py_None) {
		if (rq->job->committed)
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

PyObject *start_response_new(gowsgi_req *rq)
{
	return PyCFunction_New(&start_response_def, (PyObject *)rq);
}

/* write(data): queues data for the client, before anything the iterable
 * yields.  It returns once the data is queued; a slow client makes it wait
 * (PEP 3333 lets the server buffer for transmission). */
static PyObject *write_impl(PyObject *self, PyObject *data)
{
	gowsgi_req *rq = (gowsgi_req *)self;
	if (req_alive(rq) < 0)
		return NULL;
	gowsgi_job *job = rq->job;
	if (rq->status == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "write() called before start_response");
		return NULL;
	}
	if (!job->busy || job->ident != PyThread_get_thread_ident()) {
		/* The request's thread alone produces its output: another
		 * thread's data would land in no defined order. */
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
	if (PyBytes_GET_SIZE(data) == 0)
		Py_RETURN_NONE;
	if (report_headers(rq) < 0)
		return NULL;
	int rc = output_chunk(job, data, 1);
	if (rc < 0)
		return NULL;
	if (rc == 1 && job->stop == STOP_GONE) {
		PyErr_SetString(PyExc_OSError, "write(): the client went away");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- batches */

void output_notify(gowsgi_job *job)
{
	if (__atomic_exchange_n(&job->go_waiting, 0, __ATOMIC_ACQ_REL)) {
		uint64_t one = 1;
		ssize_t n;
		do
			n = write(job->in.efd, &one, sizeof one);
		while (n < 0 && errno == EINTR);
	}
}

/* Detaches b's references, leaving it empty, and returns them for the
 * caller to release with the GIL: *n of them, in a malloc'd array it
 * frees (NULL when none).  mu held. */
static PyObject **batch_detach(batch *b, int *n)
{
	PyObject **owners = NULL;
	*n = b->nown;
	if (b->nown > 0) {
		owners = b->owners;
		b->owners = NULL;
		b->nown = b->capown = 0;
	}
	b->nseg = 0;
	b->used = 0;
	b->bytes = 0;
	return owners;
}

static void owners_release(PyObject **owners, int n)
{
	for (int i = 0; i < n; i++)
		Py_DECREF(owners[i]);
	free(owners);
}

void batch_release(batch *b)
{
	for (int i = 0; i < b->nown; i++)
		Py_CLEAR(b->owners[i]);
	b->nown = 0;
	b->nseg = 0;
	b->used = 0;
	b->bytes = 0;
}

static int seg_push(batch *b, const char *p, size_t n, int flags)
{
	if (b->nseg > 0) {
		/* Contiguous copies of the same kind go out as one write. */
		gowsgi_seg *last = &b->segs[b->nseg - 1];
		if (last->p + last->n == p && last->flags == flags) {
			last->n += n;
			b->bytes += n;
			return 0;
		}
	}
	if (b->nseg == b->capseg) {
		int cap = b->capseg ? 2 * b->capseg : 16;
		gowsgi_seg *s = realloc(b->segs, cap * sizeof *s);
		if (s == NULL)
			return -1;
		b->segs = s;
		b->capseg = cap;
	}
	b->segs[b->nseg++] = (gowsgi_seg){p, n, flags};
	b->bytes += n;
	return 0;
}

/* Keeps a new reference to o for b. */
static int own_push(batch *b, PyObject *o)
{
	if (b->nown == b->capown) {
		int cap = b->capown ? 2 * b->capown : 4;
		PyObject **a = realloc(b->owners, cap * sizeof *a);
		if (a == NULL)
			return -1;
		b->owners = a;
		b->capown = cap;
	}
	b->owners[b->nown++] = Py_NewRef(o);
	return 0;
}

/* Whether the fill batch can take n more bytes: it is free (what it holds
 * was sent), empty, or the bytes fit.  mu held. */
static int fill_has_room(gowsgi_job *job, size_t n)
{
	batch *b = &job->b[job->fill];
	return b->state == BATCH_FREE || b->nseg == 0 || b->bytes + n <= BATCH_BYTES;
}

static int room_ready(gowsgi_job *job)
{
	return fill_has_room(job, job->want) || job->stop;
}

int output_chunk(gowsgi_job *job, PyObject *chunk, int from_write)
{
	size_t n = (size_t)PyBytes_GET_SIZE(chunk);
	const char *p = PyBytes_AS_STRING(chunk);
	int flags = from_write ? GOWSGI_SEG_WRITE : 0;
	if (n == 0)
		return 0;
	if (job->direct && !job->armed)
		sched_arm_writer(job); /* Go must send while the app runs on */
	pthread_mutex_lock(&job->mu);
	while (!job->stop && !fill_has_room(job, n)) {
		if (job->direct && !job->writer) {
			pthread_mutex_unlock(&job->mu);
			sched_start_writer(job);
			pthread_mutex_lock(&job->mu);
			continue;
		}
		job->want = n;
		job_wait(job, room_ready);
	}
	if (job->stop) {
		pthread_mutex_unlock(&job->mu);
		return 1;
	}
	batch *b = &job->b[job->fill];
	if (b->state == BATCH_FREE) {
		/* Empty, or sent by Go since the thread last used it. */
		int k;
		PyObject **owners = batch_detach(b, &k);
		b->state = BATCH_FILLING;
		if (owners != NULL) {
			pthread_mutex_unlock(&job->mu);
			owners_release(owners, k);
			pthread_mutex_lock(&job->mu);
		}
	}
	int rc;
	if (n <= COPY_MAX && b->used + n <= b->cap) {
		memcpy(b->arena + b->used, p, n);
		rc = seg_push(b, b->arena + b->used, n, flags);
		b->used += n;
	} else {
		rc = own_push(b, chunk);
		if (rc == 0 && (rc = seg_push(b, p, n, flags)) < 0)
			Py_DECREF(b->owners[--b->nown]);
	}
	if (rc == 0) {
		/* A framework's response is one chunk and the end: its first
		 * chunk may wait for the end.  A stream's next chunks go to Go
		 * at once, which sends one batch while the thread fills the
		 * other. */
		if (job->committed)
			output_notify(job);
		else
			sched_notify(job);
		job->committed = 1;
	}
	pthread_mutex_unlock(&job->mu);
	if (rc < 0) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

int output_sequence(gowsgi_job *job, PyObject *seq, size_t total)
{
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject **items = PySequence_Fast_ITEMS(seq);
	PyObject **owners = NULL;
	int k = 0, rc = 0;
	pthread_mutex_lock(&job->mu);
	batch *b = &job->b[job->fill];
	if (b->state == BATCH_FREE) {
		owners = batch_detach(b, &k);
		b->state = BATCH_FILLING;
	}
	/* After what write() queued, if anything; never waits, since the
	 * sequence is in memory already. */
	job->length = (int64_t)total;
	if (total <= b->cap - b->used) {
		/* Copied: Go needs nothing of Python to send it. */
		char *at = b->arena + b->used;
		for (Py_ssize_t i = 0; i < n; i++) {
			size_t l = (size_t)PyBytes_GET_SIZE(items[i]);
			memcpy(at, PyBytes_AS_STRING(items[i]), l);
			at += l;
		}
		if (total > 0)
			rc = seg_push(b, b->arena + b->used, total, 0);
		b->used += total;
	} else {
		rc = own_push(b, seq);
		for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
			size_t l = (size_t)PyBytes_GET_SIZE(items[i]);
			if (l > 0)
				rc = seg_push(b, PyBytes_AS_STRING(items[i]), l, 0);
		}
	}
	if (total > 0 && rc == 0) {
		job->committed = 1;
		sched_notify(job);
	}
	pthread_mutex_unlock(&job->mu);
	owners_release(owners, k);
	if (rc < 0) {
		PyErr_NoMemory();
		return -1;
	}
	return 0;
}

static int file_ready(gowsgi_job *job) { return job->file_sent || job->stop; }

int output_file(gowsgi_job *job, int fd, int64_t size)
{
	if (job->direct && !job->writer)
		sched_start_writer(job);
	pthread_mutex_lock(&job->mu);
	job->fd = fd;
	job->filesize = size;
	job->end = GOWSGI_FILE;
	output_notify(job);
	while (!job->file_sent && !job->stop)
		job_wait(job, file_ready);
	job->end = 0;
	pthread_mutex_unlock(&job->mu);
	return 0;
}

void output_end(gowsgi_job *job, int end)
{
	PyObject **owners[2] = {NULL, NULL};
	int counts[2] = {0, 0};
	pthread_mutex_lock(&job->mu);
	/* Batches Go has sent are released here, with the GIL; what Go still
	 * has or has not taken yet, Go gives to the scheduler (sched.c). */
	for (int i = 0; i < 2; i++)
		if (job->b[i].state == BATCH_FREE)
			owners[i] = batch_detach(&job->b[i], &counts[i]);
	job->end = end;
	job->finished = 1;
	sched_notify(job);
	pthread_mutex_unlock(&job->mu);
	for (int i = 0; i < 2; i++)
		owners_release(owners[i], counts[i]);
}

/* ------------------------------------------------------------- Go's side */

int gowsgi_job_next(gowsgi_job *job, int consumed, int stop, char *hdrbuf, gowsgi_event *ev)
{
	PyObject **owners = NULL;
	int nown = 0;
	memset(ev, 0, sizeof *ev);
	ev->batch = -1;
	ev->fd = -1;
	pthread_mutex_lock(&job->mu);
	if (job->finished)
		sched_forget(job);
	if (consumed >= 0) {
		batch *b = &job->b[consumed];
		b->state = BATCH_FREE;
		if (job->finished)
			owners = batch_detach(b, &nown); /* nobody else will */
	}
	if (stop > job->stop)
		job->stop = stop;
	if (consumed >= 0 || stop)
		pthread_cond_signal(&job->cv);
	if (job->hdr_new) {
		memcpy(hdrbuf, job->hdr, job->hdrlen);
		ev->hdrlen = job->hdrlen;
		ev->statuslen = job->statuslen;
		ev->status = job->status;
		job->hdr_new = 0;
	}
	ev->length = job->length;
	int i = job->fill;
	batch *b = &job->b[i];
	if (b->state == BATCH_FILLING && b->nseg > 0) {
		b->state = BATCH_HANDED;
		job->fill = 1 - i;
		ev->state = GOWSGI_MORE;
		ev->batch = i;
		ev->segs = b->segs;
		ev->nseg = b->nseg;
		ev->owned = b->nown > 0;
		if (job->finished) {
			/* Nothing can follow: the end comes with it. */
			ev->end = job->end;
			ev->err = job->err;
			memset(&job->err, 0, sizeof job->err);
		}
		pthread_cond_signal(&job->cv); /* a full thread may go on */
	} else if (job->end != 0) {
		ev->state = job->end;
		if (job->end == GOWSGI_FILE) {
			ev->fd = job->fd;
			ev->filesize = job->filesize;
			job->fd = -1;
			job->end = 0; /* once; DONE follows the send */
		} else {
			/* ERROR, or what close() raised after a whole DONE. */
			ev->err = job->err; /* Go frees it */
			memset(&job->err, 0, sizeof job->err);
		}
	} else {
		ev->state = GOWSGI_WAIT;
		__atomic_store_n(&job->go_waiting, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&job->mu);
	if (nown > 0)
		sched_discard(job->sched, owners, nown);
	return ev->state;
}

void gowsgi_job_file_sent(gowsgi_job *job)
{
	pthread_mutex_lock(&job->mu);
	job->file_sent = 1;
	pthread_cond_signal(&job->cv);
	pthread_mutex_unlock(&job->mu);
}
