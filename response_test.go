package wsgi_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResponseBodies(t *testing.T) {
	stream := strings.Repeat(strings.Repeat("x", 1023)+"\n", 100)
	cases := []struct {
		path    string
		status  int
		body    string
		chunked bool // no Content-Length: the body went out in chunks
	}{
		{"/hello", 200, "Hello, World!", false},
		{"/list?n=3&size=4", 200, "xxx\nxxx\nxxx\n", false},
		{"/list?n=100&size=1024", 200, stream, false}, // larger than one cgo buffer
		{"/tuple", 200, "tuple one\ntuple two\n", false},
		{"/stream", 200, stream, true},
		{"/stream-empty-first", 200, "data", true},
		{"/write", 200, "via write; via iterable", true},
		{"/write-only?n=3", 200, strings.Repeat("w", 300), true},
		{"/exc-info", 500, "handled\n", false},
		{"/status?code=404", 404, "", false},
		{"/status?code=204", 204, "", false},
		{"/start-twice", 200, "RuntimeError", false},
		{"/close-marker?normal", 200, "chunk one\nchunk two\n", true},
	}
	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, sink := newHandler(t, callable)
			srv := serve(t, h)
			for _, c := range cases {
				r := get(t, srv, c.path)
				require.NoError(t, r.err, c.path)
				assert.Equal(t, c.status, r.status, c.path)
				assert.Equal(t, c.body, r.body, c.path)
				// wsgiref.validate hides lists behind an iterator, so only
				// the bare app shows where gowsgi adds a Content-Length.
				if callable == "validated" {
					continue
				}
				if c.chunked {
					assert.Empty(t, r.header.Get("Content-Length"), c.path)
				} else if c.status != 204 {
					assert.Equal(t, fmt.Sprint(len(c.body)), r.header.Get("Content-Length"), c.path)
				}
			}
			assert.Equal(t, "yes", get(t, srv, "/exc-info").header.Get("X-Handled"),
				"start_response with exc_info replaces the headers")
			assert.Empty(t, sink.event("app_error", false))
			noUnraisable(t, srv)
		})
	}
}

func TestResponseHead(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	r := do(t, srv, http.MethodHead, "/head", nil)
	require.NoError(t, r.err)
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "9", r.header.Get("Content-Length"))
	assert.Empty(t, r.body)
	// On the wire: headers and nothing after them.
	out := raw(t, srv, "HEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	assert.True(t, strings.HasSuffix(out, "\r\n\r\n"), "HEAD sends no body: %q", out)
}

// TestResponseErrors checks that a broken response never reaches the wire
// in part: the client gets a 500, the log the traceback, and the next
// request is served.
func TestResponseErrors(t *testing.T) {
	cases := []struct{ path, logged string }{
		{"/raise", "RuntimeError: boom before start"},
		{"/raise-in-first-next", "RuntimeError"},
		{"/str-body", "must be bytes"},
		{"/crlf-header", "control character"},
		{"/lf-header", "control character"},
		{"/nul-header", "control character"},
		{"/bad-header-name", "not an HTTP token"},
		{"/colon-header-name", "not an HTTP token"},
		{"/non-latin1-header", "outside Latin-1"},
		{"/bad-status", "is not \\\"NNN reason\\\""},
		{"/bad-status-code", "is not \\\"NNN reason\\\""},
		{"/status-crlf", "control character"},
		{"/headers-not-list", "must be a list"},
		{"/hop-by-hop", "hop-by-hop"},
		{"/status?code=100", "final status code"},
	}
	h, sink := newHandler(t, "application")
	srv := serve(t, h)
	for _, c := range cases {
		r := get(t, srv, c.path)
		require.NoError(t, r.err, c.path)
		assert.Equal(t, 500, r.status, c.path)
		assert.Equal(t, "500 Internal Server Error\n", r.body, "%s: a fixed body, never the traceback", c.path)
		assert.Empty(t, r.header.Get("X-Evil"), c.path)
		assert.Empty(t, r.header.Get("Set-Cookie"), c.path)

		out := raw(t, srv, "GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		assert.NotContains(t, out, "pwned", c.path)
		assert.NotContains(t, out, "X-Evil", c.path)
		assert.NotContains(t, out, "should not be sent", c.path)

		assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "the next request is served")
	}
	for _, c := range cases {
		found := false
		for _, rec := range sink.event("app_error", false) {
			if rec["path"] == strings.SplitN(c.path, "?", 2)[0] && strings.Contains(rec["error"]+rec["traceback"], strings.ReplaceAll(c.logged, `\"`, `"`)) {
				found = true
				assert.NotEmpty(t, rec["traceback"])
			}
		}
		assert.True(t, found, "%s: no log record mentions %q", c.path, c.logged)
	}
}

// TestResponseErrorAfterHeaders checks that an error once the headers are
// out aborts the connection: a client must not take a cut body as whole.
func TestResponseErrorAfterHeaders(t *testing.T) {
	for _, path := range []string{"/raise-after-start", "/exc-info-after-headers", "/str-mid-stream"} {
		h, sink := newHandler(t, "application")
		srv := serve(t, h)
		r := get(t, srv, path)
		assert.Equal(t, 200, r.status, path)
		assert.Error(t, r.err, "%s: the chunked body must end in an error, not a clean end", path)
		assert.NotContains(t, r.body, "should not be sent", path)
		assert.NotEmpty(t, sink.event("app_error", true), path)
		assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body)
	}
}

func TestResponseContentLength(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)

	r := get(t, srv, "/cl-long")
	require.NoError(t, r.err)
	assert.Equal(t, "01234", r.body, "a body longer than Content-Length is cut")

	r = get(t, srv, "/cl-short")
	assert.Error(t, r.err, "a body shorter than Content-Length ends in an error")
	out := raw(t, srv, "GET /cl-short HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.True(t, strings.HasSuffix(out, "0123456789"), "the connection closes after the short body: %q", out)
}

func TestResponseHTTP10(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	out := raw(t, srv, "GET /stream?n=3&size=4 HTTP/1.0\r\nHost: x\r\n\r\n")
	assert.True(t, strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n"), out)
	assert.NotContains(t, out, "Transfer-Encoding")
	assert.True(t, strings.HasSuffix(out, "\r\n\r\nxxx\nxxx\nxxx\n"), "HTTP/1.0 gets the body until close: %q", out)

	out = raw(t, srv, "GET /stream?n=2&size=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	assert.Contains(t, out, "Transfer-Encoding: chunked")
}

// An iterable whose close() raises once the body is complete: the client
// has the whole response, and the log has the traceback.
func TestCloseRaisesAfterTheBody(t *testing.T) {
	h, sink := newHandler(t, "application")
	srv := serve(t, h)
	r := get(t, srv, "/close-raises?end")
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "chunk one\nchunk two\n", r.body)
	recs := sink.event("close_error")
	require.Len(t, recs, 1)
	assert.Contains(t, recs[0]["traceback"], "boom in close")
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "the next request is served")
}

func TestCloseAlwaysRuns(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	closed := func() []string {
		var out []string
		getJSON(t, srv, "/closed", &out)
		return out
	}

	get(t, srv, "/close-marker?normal")
	get(t, srv, "/close-marker-raise?raise")
	assert.Equal(t, []string{"normal", "raise"}, closed())

	// A client that goes away mid-stream: iteration stops and close() runs.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	_, err = io.WriteString(conn, "GET /close-marker-slow?gone HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	buf := make([]byte, 100<<10)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	conn.Close()
	eventually(t, func() bool { return len(closed()) == 3 }, "close() did not run after the client left")
	assert.Equal(t, "gone", closed()[2])
}

func TestFileWrapper(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.bin")
	data := make([]byte, 3<<20+17)
	_, err := rand.Read(data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	q := "/file?path=" + url.QueryEscape(path)

	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, _ := newHandler(t, callable)
			srv := serve(t, h)

			r := get(t, srv, q)
			require.NoError(t, r.err)
			assert.Equal(t, 200, r.status)
			if callable == "application" { // the validator hides the file wrapper
				assert.Equal(t, fmt.Sprint(len(data)), r.header.Get("Content-Length"), "a file's length is known")
			}
			assert.True(t, bytes.Equal(data, []byte(r.body)), "the file arrives whole")

			r = get(t, srv, q+"&offset=1000")
			assert.True(t, bytes.Equal(data[1000:], []byte(r.body)), "sending starts at the file's position")

			r = get(t, srv, q+"&offset=10&length=100")
			assert.Equal(t, "100", r.header.Get("Content-Length"))
			assert.True(t, bytes.Equal(data[10:110], []byte(r.body)), "sending stops at Content-Length")

			r = get(t, srv, "/filelike?size=100000")
			assert.Equal(t, strings.Repeat("f", 100000), r.body, "a file-like without fileno() is read in blocks")
			noUnraisable(t, srv)
		})
	}
}

func TestExpiredRequestObjects(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	assert.Equal(t, "kept", get(t, srv, "/keep").body)
	var out map[string]string
	getJSON(t, srv, "/use-kept", &out)
	assert.Equal(t, map[string]string{"read": "ValueError", "start_response": "ValueError", "write": "ValueError"}, out,
		"wsgi.input, start_response and write raise once their request ended")
}

func TestStreamFlushesEachChunk(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	resp, err := srv.Client().Get(srv.URL + "/wait-stream?key=flush")
	require.NoError(t, err)
	defer resp.Body.Close()
	// The app waits after its second chunk until /release: both chunks
	// must reach the client while it waits (PEP 3333). The first is sent
	// before the next is asked for, the second by a writer while the app
	// runs.
	lines := make([]byte, len("first\nsecond\n"))
	_, err = io.ReadFull(resp.Body, lines)
	require.NoError(t, err)
	assert.Equal(t, "first\nsecond\n", string(lines))
	get(t, srv, "/release?key=flush")
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "third\n", string(rest))
}
