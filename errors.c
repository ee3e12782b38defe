/* Python exceptions copied into gowsgi_error, for Go. */
#include "gowsgi.h"

#include <string.h>

#ifdef Py_GIL_DISABLED
pthread_mutex_t gowsgi_shared_mu = PTHREAD_MUTEX_INITIALIZER;
#endif

void gowsgi_error_free(gowsgi_error *e)
{
	free(e->type);
	free(e->message);
	free(e->traceback);
	e->type = e->message = e->traceback = NULL;
}

/* Returns a malloc'd UTF-8 copy of str o (borrowed), or "<unprintable>";
 * clears any error. */
static char *str_dup(PyObject *o)
{
	const char *s = o ? PyUnicode_AsUTF8(o) : NULL;
	if (s == NULL) {
		PyErr_Clear();
		s = "<unprintable>";
	}
	return strdup(s);
}

/* Returns the raised exception (a new reference) and clears the
 * indicator, or NULL when none is set. */
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

/* Each step runs with no exception set: a failure of one (an exception
 * whose __str__ raises, say) is cleared before the next. */
void err_fill(PyObject *format, gowsgi_error *err)
{
	PyObject *exc = err_take();
	gowsgi_error_free(err);
	if (exc == NULL) {
		err_set(err, "SystemError", "error without an exception set");
		return;
	}
	PyObject *tname = PyObject_GetAttrString((PyObject *)Py_TYPE(exc), "__qualname__");
	PyErr_Clear();
	PyObject *msg = PyObject_Str(exc);
	PyErr_Clear();
	PyObject *tb = format ? PyObject_CallOneArg(format, exc) : NULL;
	PyErr_Clear();
	err->type = str_dup(tname);
	err->message = str_dup(msg);
	err->traceback = str_dup(tb);
	Py_XDECREF(tname);
	Py_XDECREF(msg);
	Py_XDECREF(tb);
	Py_DECREF(exc);
}

void err_set(gowsgi_error *err, const char *type, const char *msg)
{
	gowsgi_error_free(err);
	err->type = strdup(type);
	err->message = strdup(msg);
	err->traceback = strdup("");
}
