package wsgi

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Trusted proxies (WithTrustedProxies): who a request is from when it
// comes through one.

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
