/* The request's streams: wsgi.input (the request body, read through Go)
 * and wsgi.errors (lines to the handler's logger, tagged with the request). */
#include "gowsgi.h"

#include <string.h>

#include "_cgo_export.h"

int req_alive(gowsgi_req *rq)
{
	if (rq->job == NULL) {
		PyErr_SetString(PyExc_ValueError,
				"the request has ended: wsgi.input, start_response "
				"and write cannot be used after the response");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ wsgi.input */

/* Reads up to n bytes of the body into dst from Go.  Returns the count, 0
 * at the end, -1 with an exception set.  The request's own thread gives up
 * its place while Go waits for the client; any thread releases the GIL. */
static Py_ssize_t input_read_raw(gowsgi_req *rq, char *dst, size_t n)
{
	long long got;
	char msg[256];
	msg[0] = 0;
	if (rq->ieof || n == 0)
		return 0;
	/* Read under the GIL: once it is released the request may end. */
	gowsgi_job *job = rq->job;
	uintptr_t handle = rq->handle;
	uint64_t gen = rq->gen;
	int own = job->busy && job->ident == PyThread_get_thread_ident();
	cpu_set_t cpus;
	int restore = go_call_enter(&cpus);
	if (own) {
		sched_block(job);
		got = go_input_read(handle, gen, dst, n, msg, sizeof msg);
		sched_unblock(job);
	} else {
		Py_BEGIN_ALLOW_THREADS
		got = go_input_read(handle, gen, dst, n, msg, sizeof msg);
		Py_END_ALLOW_THREADS
	}
	go_call_leave(&cpus, restore);
	if (req_alive(rq) < 0)
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
	if (req_alive(rq) < 0)
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

void input_detach(gowsgi_req *rq)
{
	gowsgi_job *job = rq->job;
	if (rq->reading && rq->ibuf == job->in.ibuf) {
		/* A thread of the app is inside a read, filling the buffer
		 * with the GIL released: the buffer becomes the object's, and
		 * the job takes a new one. */
		rq->ibuf_owned = 1;
		job->in.ibuf = malloc(GOWSGI_IBUF_SIZE); /* NULL: no early reads */
	} else if (!rq->ibuf_owned) {
		rq->ibuf = NULL;
		rq->ipos = rq->ilen = rq->icap = 0;
	}
}

/* Refills the buffer after what it holds.  Returns bytes added, 0 at the
 * end, -1 with an exception set. */
static Py_ssize_t input_fill(gowsgi_req *rq)
{
	if (rq->icap == 0) {
		PyErr_NoMemory();
		return -1;
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

/* Reads size bytes (all of the body when negative).  Returns a new bytes
 * object, or NULL with an exception set. */
static PyObject *input_read_n(gowsgi_req *rq, Py_ssize_t size)
{
	PyObject *out = NULL;
	size_t buffered = rq->ilen - rq->ipos;
	if (rq->ieof && (size < 0 || (size_t)size > buffered))
		size = (Py_ssize_t)buffered; /* all there is */
	if (size >= 0 && (size_t)size <= buffered) {
		out = PyBytes_FromStringAndSize(rq->ibuf + rq->ipos, size);
		if (out)
			rq->ipos += size;
		return out;
	}
	/* Grow the result as data arrives rather than trusting size: a client
	 * announcing a huge Content-Length must not make us allocate it. */
	Py_ssize_t cap = (Py_ssize_t)buffered + GOWSGI_IBUF_SIZE;
	if (size >= 0 && size < cap)
		cap = size;
	out = PyBytes_FromStringAndSize(NULL, cap);
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
				return NULL; /* out was freed */
		}
		/* Reads go straight into the result: nobody else can see it
		 * yet, so filling it without the GIL is safe. */
		Py_ssize_t got = input_read_raw(rq, PyBytes_AS_STRING(out) + n, cap - n);
		if (got < 0)
			goto failure;
		if (got == 0)
			break;
		n += got;
	}
	if (n != cap && _PyBytes_Resize(&out, n) < 0)
		return NULL;
	return out;
failure:
	Py_DECREF(out);
	return NULL;
}

/* Runs one of the readers below for a method called with an optional size
 * (or hint): the request alive, no other thread inside a method. */
static PyObject *input_call(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs,
			    PyObject *(*reader)(gowsgi_req *, Py_ssize_t))
{
	Py_ssize_t size;
	if (parse_size(args, nargs, &size) < 0 || input_enter(rq) < 0)
		return NULL;
	return input_leave(rq, reader(rq, size));
}

/* read(size=-1): returns a new bytes object. */
static PyObject *input_read(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs)
{
	return input_call(rq, args, nargs, input_read_n);
}

/* Reads a line: up to "\n", size bytes or the end of the body.  Returns a
 * new bytes object, or NULL with an exception set. */
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
				return NULL; /* out was freed */
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
	return input_call(rq, args, nargs, input_readline_n);
}

/* readlines(hint=-1): returns a new list of lines. */
static PyObject *input_readlines_n(gowsgi_req *rq, Py_ssize_t hint)
{
	PyObject *lines = PyList_New(0), *line = NULL;
	Py_ssize_t total = 0;
	if (lines == NULL)
		return NULL;
	for (;;) {
		line = input_readline_n(rq, -1);
		if (line == NULL)
			goto failure;
		Py_ssize_t n = PyBytes_GET_SIZE(line);
		if (n == 0)
			break;
		if (PyList_Append(lines, line) < 0)
			goto failure;
		Py_CLEAR(line);
		total += n;
		if (hint > 0 && total >= hint)
			break;
	}
	Py_XDECREF(line);
	return lines;
failure:
	Py_XDECREF(line);
	Py_DECREF(lines);
	return NULL;
}

static PyObject *input_readlines(gowsgi_req *rq, PyObject *const *args, Py_ssize_t nargs)
{
	return input_call(rq, args, nargs, input_readlines_n);
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

static PyObject *input_iter(PyObject *self) { return Py_NewRef(self); }

static void req_dealloc(gowsgi_req *rq)
{
	PyTypeObject *tp = Py_TYPE(rq);
	Py_XDECREF(rq->status);
	Py_XDECREF(rq->headers);
	Py_XDECREF(rq->result);
	Py_XDECREF(rq->iter);
	Py_XDECREF(rq->file);
	Py_XDECREF(rq->errors);
	Py_XDECREF(rq->context);
	if (rq->ibuf_owned)
		free(rq->ibuf);
	tp->tp_free((PyObject *)rq);
	Py_DECREF(tp);
}

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

/* ----------------------------------------------------------- wsgi.errors */

/* wsgi.errors of one request: text goes to the handler's logger one line a
 * record, with the request's attributes while it lasts.  A partial line
 * waits for its end, for flush(), or for the end of the request. */
typedef struct {
	PyObject_HEAD
	uintptr_t handler;
	uintptr_t handle; /* the request's slot, 0 once it ended */
	uint64_t gen;
	PyObject *partial; /* str, or NULL */
} errors_obj;

/* Sends one line (str, borrowed) to Go.  Returns 0 or -1. */
static int errors_emit(errors_obj *e, PyObject *line)
{
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(line, &n);
	if (s == NULL)
		return -1;
	uintptr_t handler = e->handler, handle = e->handle;
	uint64_t gen = e->gen;
	cpu_set_t cpus;
	int restore = go_call_enter(&cpus);
	Py_BEGIN_ALLOW_THREADS
	go_log(handler, handle, gen, (char *)s, (size_t)n);
	Py_END_ALLOW_THREADS
	go_call_leave(&cpus, restore);
	return 0;
}

static PyObject *errors_write(errors_obj *e, PyObject *s)
{
	PyObject *text = NULL, *lines = NULL, *newline = NULL;
	if (!PyUnicode_Check(s)) {
		PyErr_Format(PyExc_TypeError, "wsgi.errors.write() needs str, not %.100s",
			     Py_TYPE(s)->tp_name);
		return NULL;
	}
	Py_ssize_t len = PyUnicode_GET_LENGTH(s);
	text = e->partial ? PyUnicode_Concat(e->partial, s) : Py_NewRef(s);
	if (text == NULL)
		goto failure;
	Py_CLEAR(e->partial);
	newline = PyUnicode_FromOrdinal('\n');
	if (newline == NULL)
		goto failure;
	lines = PyUnicode_Split(text, newline, -1);
	if (lines == NULL)
		goto failure;
	/* Every piece but the last ended with "\n"; the last is what is
	 * left of an unfinished line. */
	Py_ssize_t n = PyList_GET_SIZE(lines);
	for (Py_ssize_t i = 0; i < n - 1; i++)
		if (errors_emit(e, PyList_GET_ITEM(lines, i)) < 0)
			goto failure;
	if (PyUnicode_GET_LENGTH(PyList_GET_ITEM(lines, n - 1)) > 0)
		e->partial = Py_NewRef(PyList_GET_ITEM(lines, n - 1));
	Py_DECREF(lines);
	Py_DECREF(newline);
	Py_DECREF(text);
	return PyLong_FromSsize_t(len);
failure:
	Py_XDECREF(lines);
	Py_XDECREF(newline);
	Py_XDECREF(text);
	return NULL;
}

static PyObject *errors_flush(errors_obj *e, PyObject *unused)
{
	(void)unused;
	if (e->partial != NULL) {
		PyObject *line = e->partial;
		e->partial = NULL;
		int rc = errors_emit(e, line);
		Py_DECREF(line);
		if (rc < 0)
			return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *errors_writelines(errors_obj *e, PyObject *seq)
{
	PyObject *it = PyObject_GetIter(seq), *item = NULL, *r;
	if (it == NULL)
		return NULL;
	while ((item = PyIter_Next(it)) != NULL) {
		r = errors_write(e, item);
		Py_CLEAR(item);
		if (r == NULL)
			goto failure;
		Py_DECREF(r);
	}
	if (PyErr_Occurred())
		goto failure;
	Py_DECREF(it);
	Py_RETURN_NONE;
failure:
	Py_DECREF(it);
	return NULL;
}

static void errors_dealloc(errors_obj *e)
{
	PyTypeObject *tp = Py_TYPE(e);
	Py_XDECREF(e->partial);
	tp->tp_free((PyObject *)e);
	Py_DECREF(tp);
}

static PyMethodDef errors_methods[] = {
	{"write", (PyCFunction)errors_write, METH_O, "write(str) -> int"},
	{"writelines", (PyCFunction)errors_writelines, METH_O, "writelines(iterable of str)"},
	{"flush", (PyCFunction)errors_flush, METH_NOARGS, "flush()"},
	{NULL, NULL, 0, NULL},
};

static PyType_Slot errors_slots[] = {
	{Py_tp_dealloc, errors_dealloc},
	{Py_tp_methods, errors_methods},
	{Py_tp_doc, "wsgi.errors: lines to the server's log, tagged with the request."},
	{0, NULL},
};

static PyType_Spec errors_spec = {
	"gowsgi.Errors", sizeof(errors_obj), 0, Py_TPFLAGS_DEFAULT, errors_slots,
};

PyObject *errors_new(gowsgi_interp *gi, uintptr_t handle, uint64_t gen)
{
	errors_obj *e = PyObject_New(errors_obj, (PyTypeObject *)gi->errors_cls);
	if (e == NULL)
		return NULL;
	e->handler = gi->handler;
	e->handle = handle;
	e->gen = gen;
	e->partial = NULL;
	return (PyObject *)e;
}

void errors_end(PyObject *errors)
{
	errors_obj *e = (errors_obj *)errors;
	PyObject *r = errors_flush(e, NULL);
	if (r == NULL)
		PyErr_Clear();
	Py_XDECREF(r);
	e->handle = 0;
}

int input_setup(gowsgi_interp *gi)
{
	gi->input_type = (PyTypeObject *)PyType_FromSpec(&input_spec);
	if (gi->input_type == NULL)
		return -1;
	gi->errors_cls = PyType_FromSpec(&errors_spec);
	if (gi->errors_cls == NULL)
		return -1;
	return 0;
}
