package wsgi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi/internal/procstatus"
)

// chunked hides a reader's length, so the client sends it chunked.
type chunked struct{ io.Reader }

func TestInputEcho(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, _ := newHandler(t, callable)
			srv := serve(t, h)

			r := do(t, srv, http.MethodPost, "/echo", bytes.NewReader(body), "Content-Type", "application/x-test")
			require.NoError(t, r.err)
			assert.Equal(t, 200, r.status)
			assert.Equal(t, "application/x-test", r.header.Get("Content-Type"))
			assert.True(t, bytes.Equal(body, []byte(r.body)), "Content-Length body echoed whole")

			r = do(t, srv, http.MethodPost, "/echo", chunked{bytes.NewReader(body)})
			require.NoError(t, r.err)
			assert.True(t, bytes.Equal(body, []byte(r.body)), "chunked body echoed whole")

			r = do(t, srv, http.MethodPost, "/echo", strings.NewReader(""))
			require.NoError(t, r.err)
			assert.Equal(t, "", r.body)
			noUnraisable(t, srv)
		})
	}
}

func TestInputChunkedRaw(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	out := raw(t, srv, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
	assert.True(t, strings.HasSuffix(out, "\r\n\r\nhello, world"), out)
}

func TestInputLines(t *testing.T) {
	body := "one\ntwo\n\nthree without newline"
	long := strings.Repeat("y", 200<<10) + "\nshort\n" // a line longer than the input buffer
	cases := []struct {
		path, body string
		want       []string
	}{
		{"/readline", body, []string{"one\n", "two\n", "\n", "three without newline"}},
		{"/readline?size=2", "abcde\nf\n", []string{"ab", "cd", "e\n", "f\n"}},
		{"/readline", long, []string{strings.Repeat("y", 200<<10) + "\n", "short\n"}},
		{"/readlines", body, []string{"one\n", "two\n", "\n", "three without newline"}},
		{"/readlines?hint=5", body, []string{"one\n", "two\n"}},
		{"/iter-input", body, []string{"one\n", "two\n", "\n", "three without newline"}},
		{"/iter-input", "", []string{}},
	}
	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, _ := newHandler(t, callable)
			srv := serve(t, h)
			for _, c := range cases {
				for _, send := range []func(string) io.Reader{
					func(s string) io.Reader { return strings.NewReader(s) },
					func(s string) io.Reader { return chunked{strings.NewReader(s)} },
				} {
					r := do(t, srv, http.MethodPost, c.path, send(c.body))
					require.Equal(t, 200, r.status, "%s: %s", c.path, r.body)
					var got []string
					require.NoError(t, json.Unmarshal([]byte(r.body), &got))
					if len(c.want) == 0 {
						assert.Empty(t, got, c.path)
					} else {
						assert.Equal(t, c.want, got, c.path)
					}
				}
			}
			noUnraisable(t, srv)
		})
	}
}

func TestInputReadPastEnd(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	r := do(t, srv, http.MethodPost, "/read-past-end", strings.NewReader("some body"))
	require.Equal(t, 200, r.status, r.body)
	assert.JSONEq(t, `{"after": ["b''", "b''", "b''"]}`, r.body)
}

// TestInputStreams sends a body far larger than any buffer and checks the
// app reads it in the sizes it asks for while the process's peak memory
// stays far below the body's size: the body is streamed, never held.
func TestInputStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 512 MiB")
	}
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	const size = 512 << 20
	const chunk = 1 << 20
	before := procstatus.Settled(t).Peak
	digest := sha256.New()
	body := io.TeeReader(io.LimitReader(zeros{}, size), digest)
	r := do(t, srv, http.MethodPost, "/echo-chunks?size="+strconv.Itoa(chunk), chunked{body})
	require.Equal(t, 200, r.status, r.body)
	var got struct {
		Sizes  []int
		Total  int
		Sha256 string
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &got))
	assert.Equal(t, size, got.Total)
	assert.Equal(t, hex.EncodeToString(digest.Sum(nil)), got.Sha256)
	for _, n := range got.Sizes {
		require.Equal(t, chunk, n, "read(n) returns n bytes until the end")
	}
	growth := procstatus.Settled(t).Peak - before
	assert.Less(t, growth, int64(128<<20), "peak RSS grew by %d MiB for a %d MiB body", growth>>20, size>>20)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestReadlineAcrossRefill: a line whose first byte is the last of the
// input buffer (64 KiB) continues in the next refill. Building it from a
// one-byte piece once hit CPython's shared one-byte bytes object, which
// cannot be resized (SystemError).
func TestReadlineAcrossRefill(t *testing.T) {
	h, _ := newHandler(t, "application")
	body := strings.Repeat("x", 65534) + "\n" + "yz\n"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/readline", strings.NewReader(body)))
	require.Equal(t, 200, rec.Code, rec.Body.String())
	var lines []string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &lines))
	assert.Equal(t, []string{strings.Repeat("x", 65534) + "\n", "yz\n"}, lines)
}

// Each request has its own wsgi.errors: lines written in parts by two
// requests at once do not mix, a line left unfinished is logged when its
// request ends, and every record names its request.
func TestErrorsPerRequest(t *testing.T) {
	h, sink := newHandler(t, "application")
	srv := serve(t, h)
	gate := filepath.Join(t.TempDir(), "gate")
	done := make(chan response, 2)
	for _, who := range []string{"A", "B"} {
		q := url.Values{"first": {who + who + who}, "second": {strings.ToLower(who + who + who)},
			"tail": {"end of " + who}, "gate": {gate}}
		go func() { done <- get(t, srv, "/errors-parts?"+q.Encode()) }()
	}
	eventually(t, func() bool { return h.Stats().Running == 2 }, "the two requests did not both start")
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	for range 2 {
		assert.Equal(t, "logged", (<-done).body)
	}
	// A line left unfinished is logged as its request ends, which may be
	// just after its client has the whole response.
	lines := map[string]map[string]string{}
	eventually(t, func() bool {
		for _, rec := range sink.event("wsgi_errors") {
			lines[rec["line"]] = rec
		}
		return len(lines) >= 4
	}, "the four lines were not logged")
	require.Contains(t, lines, "AAAaaa")
	require.Contains(t, lines, "BBBbbb")
	require.Contains(t, lines, "end of A")
	require.Contains(t, lines, "end of B")
	assert.Len(t, lines, 4, "no line mixes the two requests")
	assert.Equal(t, lines["AAAaaa"]["request_id"], lines["end of A"]["request_id"])
	assert.NotEqual(t, lines["AAAaaa"]["request_id"], lines["BBBbbb"]["request_id"])
	assert.Equal(t, "/errors-parts", lines["BBBbbb"]["path"])
}

// TestClientLeavesDuringRead: read() raises an OSError in the app when the
// client goes away mid-body: a body read as the app asks, and a small one
// read before the app runs (early.go), where the error waits for the app's
// read.
func TestClientLeavesDuringRead(t *testing.T) {
	for _, length := range []int{1000000, 100} {
		h, _ := newHandler(t, "application")
		srv := serve(t, h)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		fmt.Fprintf(conn, "POST /read-catch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\npartial body", length)
		time.Sleep(50 * time.Millisecond)
		conn.Close()
		var errs []map[string]any
		eventually(t, func() bool {
			getJSON(t, srv, "/read-errors", &errs)
			return len(errs) == 1
		}, "the app never saw the read fail")
		assert.Equal(t, true, errs[0]["oserror"], "Content-Length %d: read() raises an OSError-family exception: %v", length, errs[0])
	}
}

func TestWSGIErrorsLogged(t *testing.T) {
	h, sink := newHandler(t, "validated")
	srv := serve(t, h)
	assert.Equal(t, "logged", get(t, srv, "/errors").body)
	var lines []string
	for _, rec := range sink.event("wsgi_errors") {
		lines = append(lines, rec["line"])
	}
	assert.Equal(t, []string{"line one", "line two", "a", "b"}, lines)
}
