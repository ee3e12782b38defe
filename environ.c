/* The packed environ (see environ.go) turned into the dict the app gets. */
#include "gowsgi.h"

/* Environ keys Go refers to by index, interned once per interpreter so the
 * common keys cost no allocation and keep their hash. */
static const char *const keys[NKEYS] = {
	"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
	"CONTENT_TYPE", "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT",
	"SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "REQUEST_URI",
	"HTTP_HOST", "HTTP_USER_AGENT", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING",
	"HTTP_ACCEPT_LANGUAGE", "HTTP_CONNECTION", "HTTP_COOKIE", "HTTP_REFERER",
	"HTTP_CACHE_CONTROL", "HTTP_ORIGIN", "HTTP_IF_NONE_MATCH",
	"HTTP_IF_MODIFIED_SINCE", "HTTP_X_FORWARDED_FOR",
	"HTTP_X_FORWARDED_PROTO", "HTTP_X_REQUESTED_WITH", "HTTP_UPGRADE",
};

int gowsgi_nkeys(void) { return NKEYS; }
const char *gowsgi_key(int i) { return keys[i]; }

int environ_setup(gowsgi_interp *gi)
{
	for (int i = 0; i < NKEYS; i++) {
		gi->keys[i] = PyUnicode_InternFromString(keys[i]);
		if (gi->keys[i] == NULL)
			return -1;
	}
	gi->key_input = PyUnicode_InternFromString("wsgi.input");
	gi->key_errors = PyUnicode_InternFromString("wsgi.errors");
	gi->key_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
	gi->scheme_https = PyUnicode_InternFromString("https");
	if (!gi->key_input || !gi->key_errors || !gi->key_scheme || !gi->scheme_https)
		return -1;
	return 0;
}

/* Reads a little-endian length of n bytes at p. */
static size_t get_len(const char *p, int n)
{
	size_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (size_t)(unsigned char)p[i] << (8 * i);
	return v;
}

PyObject *environ_build(gowsgi_interp *gi, const char *p, size_t n, int flags)
{
	PyObject *env = PyDict_Copy(gi->environ_base), *key = NULL, *val = NULL;
	if (env == NULL)
		return NULL;
	const char *end = p + n;
	while (p < end) {
		unsigned char tag = (unsigned char)*p++;
		if (tag == 0xff) {
			if (end - p < 2)
				goto bad;
			size_t kl = get_len(p, 2);
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
		if (end - p < 4)
			goto bad;
		size_t vl = get_len(p, 4);
		if ((size_t)(end - p - 4) < vl)
			goto bad;
		val = PyUnicode_DecodeLatin1(p + 4, vl, NULL);
		p += 4 + vl;
		if (val == NULL || PyDict_SetItem(env, key, val) < 0)
			goto failure;
		Py_CLEAR(key);
		Py_CLEAR(val);
	}
	if ((flags & GOWSGI_HTTPS) && PyDict_SetItem(env, gi->key_scheme, gi->scheme_https) < 0)
		goto failure;
	return env;
bad:
	PyErr_SetString(PyExc_SystemError, "gowsgi: bad environ packing");
failure:
	Py_XDECREF(key);
	Py_XDECREF(val);
	Py_DECREF(env);
	return NULL;
}
