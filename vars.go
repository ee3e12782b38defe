package wsgi

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// The wsgi_var templates of WithVar: a value of literal text and nginx-style
// variables ($remote_addr, $http_NAME, ...), parsed once by NewHandler and
// expanded into the environ per request.

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
