package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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

// pack appends the var's key and its value for r.
func (v *envVar) pack(b envBuf, r *http.Request) envBuf {
	if t, ok := keyTags[v.name]; ok {
		b = b.tag(t)
	} else {
		b = b.key(v.name)
	}
	if v.fn != nil {
		return b.value(v.fn(r))
	}
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	for _, p := range v.tmpl {
		b = p.expand(b, r)
	}
	n := len(b) - at - 4
	b[at], b[at+1], b[at+2], b[at+3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return b
}

// A varPart is a piece of a WithVar value: literal text, or a variable.
type varPart struct {
	kind varKind
	arg  string // the text, or the header, cookie or argument name
}

type varKind int

const (
	varText varKind = iota
	varRemoteAddr
	varRemotePort
	varServerAddr
	varServerPort
	varScheme
	varHost
	varRequestMethod
	varRequestURI
	varURI
	varArgs
	varHTTP
	varCookie
	varArg
)

var varNames = map[string]varKind{
	"remote_addr":    varRemoteAddr,
	"remote_port":    varRemotePort,
	"server_addr":    varServerAddr,
	"server_port":    varServerPort,
	"scheme":         varScheme,
	"host":           varHost,
	"request_method": varRequestMethod,
	"request_uri":    varRequestURI,
	"uri":            varURI,
	"args":           varArgs,
}

// parseVar splits a WithVar value into text and variables.
func parseVar(value string) ([]varPart, error) {
	var parts []varPart
	text := func(s string) {
		if n := len(parts); n > 0 && parts[n-1].kind == varText {
			parts[n-1].arg += s
		} else if s != "" {
			parts = append(parts, varPart{varText, s})
		}
	}
	for value != "" {
		i := strings.IndexByte(value, '$')
		if i < 0 {
			text(value)
			break
		}
		text(value[:i])
		value = value[i+1:]
		var name string
		switch {
		case strings.HasPrefix(value, "$"):
			text("$")
			value = value[1:]
			continue
		case strings.HasPrefix(value, "{"):
			end := strings.IndexByte(value, '}')
			if end < 0 {
				return nil, errors.New(`"${" without a closing "}"`)
			}
			name, value = value[1:end], value[end+1:]
		default:
			end := 0
			for end < len(value) && isVarChar(value[end]) {
				end++
			}
			name, value = value[:end], value[end:]
		}
		p, err := lookupVar(name)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func isVarChar(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func lookupVar(name string) (varPart, error) {
	if k, ok := varNames[name]; ok {
		return varPart{kind: k}, nil
	}
	for prefix, k := range map[string]varKind{"http_": varHTTP, "cookie_": varCookie, "arg_": varArg} {
		if rest, ok := strings.CutPrefix(name, prefix); ok && rest != "" {
			if k == varHTTP {
				rest = textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(rest, "_", "-"))
			}
			return varPart{k, rest}, nil
		}
	}
	if name == "" {
		return varPart{}, errors.New(`a "$" without a variable name; write "$$" for a "$"`)
	}
	return varPart{}, fmt.Errorf("unknown variable $%s; known: $remote_addr, $remote_port, $server_addr, $server_port, $scheme, $host, $request_method, $request_uri, $uri, $args, $http_NAME, $cookie_NAME, $arg_NAME", name)
}

// expand appends the part's value for r.
func (p varPart) expand(b envBuf, r *http.Request) envBuf {
	switch p.kind {
	case varText:
		return append(b, p.arg...)
	case varRemoteAddr, varRemotePort:
		host, port, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host, port = r.RemoteAddr, ""
		}
		if p.kind == varRemoteAddr {
			return append(b, host...)
		}
		return append(b, port...)
	case varServerAddr, varServerPort:
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if host, port, err := net.SplitHostPort(a.String()); err == nil {
				if p.kind == varServerAddr {
					return append(b, host...)
				}
				return append(b, port...)
			}
		}
		return b
	case varScheme:
		if r.TLS != nil {
			return append(b, "https"...)
		}
		return append(b, "http"...)
	case varHost:
		host, _ := serverHostPort(r, r.Host, r.TLS != nil)
		return append(b, strings.ToLower(host)...)
	case varRequestMethod:
		return append(b, r.Method...)
	case varRequestURI:
		return append(b, requestURI(r)...)
	case varURI:
		return append(b, r.URL.Path...)
	case varArgs:
		return append(b, r.URL.RawQuery...)
	case varHTTP:
		if p.arg == "Host" {
			return append(b, r.Host...)
		}
		sep := ","
		if p.arg == "Cookie" {
			sep = "; "
		}
		for i, v := range r.Header[p.arg] {
			if i > 0 {
				b = append(b, sep...)
			}
			b = append(b, v...)
		}
		return b
	case varCookie:
		if c, err := r.Cookie(p.arg); err == nil {
			return append(b, c.Value...)
		}
		return b
	case varArg:
		// As nginx: the raw value, not percent-decoded.
		for q := r.URL.RawQuery; q != ""; {
			var pair string
			pair, q, _ = strings.Cut(q, "&")
			if k, v, _ := strings.Cut(pair, "="); k == p.arg {
				return append(b, v...)
			}
		}
		return b
	}
	return b
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

// clientInfo is who the request is from, as far as the handler believes.
type clientInfo struct {
	addr, port string
	host       string // the Host the client asked for
	https      bool
}

// client returns the connection's peer, or, when that peer is a trusted
// proxy (WithTrustedProxies), the client its forwarding headers name.
func (h *Handler) client(r *http.Request) clientInfo {
	c := clientInfo{addr: r.RemoteAddr, host: r.Host, https: r.TLS != nil}
	if a, p, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		c.addr, c.port = a, p
	}
	if len(h.opts.trusted) == 0 || !h.trusts(c.addr) {
		return c
	}
	if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		elems := parseForwarded(strings.Join(fwd, ","))
		for i := len(elems) - 1; i >= 0; i-- {
			e := elems[i]
			addr := strings.Trim(e["for"], "[]")
			if a, _, err := net.SplitHostPort(e["for"]); err == nil {
				addr = a
			}
			if addr == "" {
				break
			}
			c.addr, c.port = addr, ""
			if p := e["proto"]; p != "" {
				c.https = strings.EqualFold(p, "https")
			}
			if hst := e["host"]; hst != "" {
				c.host = hst
			}
			if !h.trusts(addr) {
				break
			}
		}
		return c
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops := strings.Split(strings.Join(xff, ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			addr := strings.TrimSpace(hops[i])
			if addr == "" {
				continue
			}
			c.addr, c.port = addr, ""
			if !h.trusts(addr) {
				break
			}
		}
	}
	if p := lastValue(r.Header.Values("X-Forwarded-Proto")); p != "" {
		c.https = strings.EqualFold(p, "https")
	}
	if hst := lastValue(r.Header.Values("X-Forwarded-Host")); hst != "" {
		c.host = hst
	}
	return c
}

func (h *Handler) trusts(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range h.opts.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// lastValue returns the last comma-separated value of a header's lines:
// the one the nearest proxy set.
func lastValue(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	all := strings.Split(lines[len(lines)-1], ",")
	return strings.TrimSpace(all[len(all)-1])
}

// parseForwarded splits a Forwarded header (RFC 7239) into its elements,
// each a map of lower-case parameter names to unquoted values.
func parseForwarded(v string) []map[string]string {
	var out []map[string]string
	for _, elem := range strings.Split(v, ",") {
		m := map[string]string{}
		for _, pair := range strings.Split(elem, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			if uq, err := strconv.Unquote(val); err == nil && strings.HasPrefix(val, `"`) {
				val = uq
			}
			m[strings.ToLower(k)] = val
		}
		out = append(out, m)
	}
	return out
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
