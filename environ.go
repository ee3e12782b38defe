package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// The environ crosses into C as one buffer of entries: a key tag byte (an
// index into C's table of interned keys, or keyLiteral followed by a 2-byte
// length and the key), then a 4-byte length and the value, little endian.
// C decodes every value as Latin-1, which is what PEP 3333 asks of native
// strings that carry bytes.
const keyLiteral = 0xff

// maxKeyLen is the longest key the packing can carry: 2 bytes of length.
const maxKeyLen = 0xffff

// keyTags maps the keys of C's table (gowsgi_key) to their tags, and
// headerTags maps canonical header names to the tag of their HTTP_ key.
var keyTags, headerTags = loadKeys()

func loadKeys() (keys, headers map[string]byte) {
	keys, headers = map[string]byte{}, map[string]byte{}
	for i := range int(C.gowsgi_nkeys()) {
		k := C.GoString(C.gowsgi_key(C.int(i)))
		keys[k] = byte(i)
		if name, ok := strings.CutPrefix(k, "HTTP_"); ok {
			headers[textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-"))] = byte(i)
		}
	}
	return keys, headers
}

func mustTag(k string) byte {
	t, ok := keyTags[k]
	if !ok {
		panic("wsgi: environ key " + k + " missing from cpython.c")
	}
	return t
}

var (
	tagRequestMethod  = mustTag("REQUEST_METHOD")
	tagScriptName     = mustTag("SCRIPT_NAME")
	tagPathInfo       = mustTag("PATH_INFO")
	tagQueryString    = mustTag("QUERY_STRING")
	tagContentType    = mustTag("CONTENT_TYPE")
	tagContentLength  = mustTag("CONTENT_LENGTH")
	tagServerName     = mustTag("SERVER_NAME")
	tagServerPort     = mustTag("SERVER_PORT")
	tagServerProtocol = mustTag("SERVER_PROTOCOL")
	tagRemoteAddr     = mustTag("REMOTE_ADDR")
	tagRemotePort     = mustTag("REMOTE_PORT")
	tagRequestURI     = mustTag("REQUEST_URI")
	tagHost           = mustTag("HTTP_HOST")
)

type envBuf []byte

func (b envBuf) tag(t byte) envBuf { return append(b, t) }

func (b envBuf) key(k string) envBuf {
	b = append(b, keyLiteral, byte(len(k)), byte(len(k)>>8))
	return append(b, k...)
}

// headerKey appends the HTTP_ key of a canonical header name.
func (b envBuf) headerKey(name string) envBuf {
	n := len("HTTP_") + len(name)
	b = append(b, keyLiteral, byte(n), byte(n>>8))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func (b envBuf) value(v string) envBuf {
	n := len(v)
	b = append(b, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	return append(b, v...)
}

// values appends the lines of one header joined by sep.
func (b envBuf) values(vs []string, sep string) envBuf {
	n := len(sep) * (len(vs) - 1)
	for _, v := range vs {
		n += len(v)
	}
	b = append(b, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	for i, v := range vs {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, v...)
	}
	return b
}

func (b envBuf) int(n int64) envBuf {
	var tmp [20]byte
	return b.value(string(strconv.AppendInt(tmp[:0], n, 10)))
}

// packEnviron appends r's environ to b, and reports whether
// wsgi.url_scheme is https.
func (h *Handler) packEnviron(b envBuf, r *http.Request) (envBuf, bool) {
	script, pathInfo := h.paths(r)
	b = b.tag(tagRequestMethod).value(r.Method)
	b = b.tag(tagScriptName).value(script)
	b = b.tag(tagPathInfo).value(pathInfo)
	b = b.tag(tagQueryString).value(r.URL.RawQuery)
	b = b.tag(tagRequestURI).value(requestURI(r))
	b = b.tag(tagServerProtocol).value(r.Proto)

	c := h.client(r)
	host, port := serverHostPort(r, c.host, c.https)
	b = b.tag(tagServerName).value(host)
	b = b.tag(tagServerPort).value(port)
	b = b.tag(tagRemoteAddr).value(c.addr)
	if c.port != "" {
		b = b.tag(tagRemotePort).value(c.port)
	}
	if c.host != "" {
		b = b.tag(tagHost).value(c.host)
	}

	for name, vs := range r.Header {
		if len(vs) == 0 {
			continue
		}
		switch name {
		case "Content-Type":
			b = b.tag(tagContentType).values(vs, ",")
			continue
		case "Content-Length":
			if r.ContentLength >= 0 {
				b = b.tag(tagContentLength).int(r.ContentLength)
			}
			continue
		case "Authorization":
			if !h.opts.passAuth {
				continue // as CGI: the server authenticates, not the app
			}
		case "Proxy":
			continue // "httpoxy": HTTP_PROXY must never come from a client
		case "Host":
			continue // r.Host above
		}
		if strings.IndexByte(name, '_') >= 0 {
			// X_Forwarded_For would otherwise pose as X-Forwarded-For.
			continue
		}
		if len(name) > maxKeyLen-len("HTTP_") {
			continue // no HTTP_ key can be that long (nor a real header)
		}
		sep := ","
		if name == "Cookie" {
			sep = "; "
		}
		if t, ok := headerTags[name]; ok {
			b = b.tag(t)
		} else {
			b = b.headerKey(name)
		}
		b = b.values(vs, sep)
	}
	for i := range h.opts.vars {
		b = h.opts.vars[i].pack(b, r)
	}
	return b, c.https
}

// requestURI is the request target as the client sent it.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// serverHostPort returns SERVER_NAME and SERVER_PORT: from the Host header
// (hostport), else from the address the request came in on.
func serverHostPort(r *http.Request, hostport string, https bool) (string, string) {
	if hostport == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			hostport = a.String()
		}
	}
	if host, port, err := net.SplitHostPort(hostport); err == nil {
		return host, port
	}
	port := "80"
	if https {
		port = "443"
	}
	if hostport == "" {
		hostport = "localhost"
	}
	return strings.Trim(hostport, "[]"), port
}

// paths returns SCRIPT_NAME and PATH_INFO.
func (h *Handler) paths(r *http.Request) (script, pathInfo string) {
	p := r.URL.Path
	if p == "*" {
		return "", "" // OPTIONS *: the server, not a resource; REQUEST_URI says so
	}
	if s := h.opts.scriptName; s != "" {
		if strings.HasPrefix(p, s) && (len(p) == len(s) || p[len(s)] == '/') {
			p = p[len(s):]
		}
		return s, p
	}
	// Under http.StripPrefix, r.URL.Path is the tail of the path the client
	// sent; the part removed is the mount point, SCRIPT_NAME.
	orig := r.RequestURI
	if i := strings.IndexByte(orig, '?'); i >= 0 {
		orig = orig[:i]
	}
	if orig == p || orig == "" || orig[0] != '/' {
		return "", p
	}
	if dec, err := url.PathUnescape(orig); err == nil {
		orig = dec
	}
	if orig == p || !strings.HasSuffix(orig, p) {
		return "", p
	}
	script = orig[:len(orig)-len(p)]
	if strings.HasSuffix(script, "/") && !strings.HasPrefix(p, "/") {
		// StripPrefix("/blog/") leaves "x" for "/blog/x".
		script, p = script[:len(script)-1], "/"+p
	}
	return script, p
}
