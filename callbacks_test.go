package wsgi_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// Requests and apps that once crashed the process or corrupted memory.
// Each must now end in a clean HTTP answer or a Python exception.

func threadsHandler(t *testing.T, opts ...wsgi.Option) (*wsgi.Handler, *logSink) {
	sink := &logSink{}
	h, err := wsgi.NewHandler(append([]wsgi.Option{wsgi.WithApp(testdata(t, "threads_app.py")),
		wsgi.WithLogger(slogFor(sink))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h, sink
}

// A header name near 64 KiB fits net/http's limits but not the environ's
// 2-byte key length: it is dropped, not read past its end.
func TestLongHeaderName(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	for _, n := range []int{65530, 65536 + 100, 200000} {
		name := "X-" + strings.Repeat("A", n)
		out := raw(t, srv, "GET /hello HTTP/1.1\r\nHost: x\r\n"+name+": v\r\nConnection: close\r\n\r\n")
		assert.True(t, strings.HasSuffix(out, "Hello, World!") || strings.Contains(out, " 431 "),
			"a %d-byte header name: %.80q", n, out)
	}
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body)
}

// A thread the app started keeps reading wsgi.input after the response:
// its read raises instead of reaching a request that has ended. (net/http
// holds the response until a read of the body in progress returns, so
// the client sends the body before it reads the answer.)
func TestReadAfterTheResponse(t *testing.T) {
	for _, path := range []string{"/bg-read", "/bg-readline"} {
		h, _ := threadsHandler(t)
		srv := serve(t, h)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
		time.Sleep(300 * time.Millisecond) // the app has answered; its thread waits for the body
		io.WriteString(conn, strings.Repeat("x", 99)+"\n")
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := conn.Read(buf)
		assert.Contains(t, string(buf[:n]), "answered before the body came")
		conn.Close()
		state := get(t, srv, "/state").body
		assert.Contains(t, state, "'"+path+" second': 'ValueError'", "a read after the response raises: %s", state)
		assert.Equal(t, 200, get(t, srv, "/state").status, "and the process lives on")
	}
}

// A thread the app started logs to wsgi.errors after Close.
func TestLogAfterClose(t *testing.T) {
	sink := &logSink{}
	h, err := wsgi.NewHandler(wsgi.WithApp(testdata(t, "threads_app.py")), wsgi.WithLogger(slogFor(sink)))
	require.NoError(t, err)
	srv := serve(t, h)
	done := filepath.Join(t.TempDir(), "done")
	assert.Equal(t, "logging", get(t, srv, "/bg-log?"+url.QueryEscape(done)).body)
	require.NoError(t, h.Close())
	time.Sleep(200 * time.Millisecond) // the thread logs on, to slog.Default()
	assert.NotEmpty(t, sink.event("threads_left"))
	// The thread shares the GIL with the tests that come next: a
	// scheduling test would see it take turns with its requests.
	eventually(t, func() bool { return exists(done) }, "the app's thread never stopped")
}

// Two threads reading wsgi.input at once would share its buffer: while
// one reads, the other gets RuntimeError, and no byte is lost or invented.
func TestTwoReaders(t *testing.T) {
	h, _ := threadsHandler(t)
	srv := serve(t, h)
	body := strings.Repeat(strings.Repeat("x", 99)+"\n", 20000) // 2 MB
	for range 5 {
		r := do(t, srv, "POST", "/two-readers", strings.NewReader(body))
		require.Equal(t, 200, r.status, r.body)
		assert.NotContains(t, r.body, "garbage", "no reader ever saw bytes that were not sent")
		// Together the readers got every byte, whoever read which.
		total := 0
		for _, f := range strings.FieldsFunc(r.body, func(c rune) bool { return c < '0' || c > '9' }) {
			n, _ := strconv.Atoi(f)
			total += n
		}
		assert.Equal(t, len(body), total, r.body)
	}
}

func TestWriteFromAnotherThread(t *testing.T) {
	h, _ := threadsHandler(t)
	srv := serve(t, h)
	r := get(t, srv, "/write-from-thread")
	assert.Equal(t, "RuntimeError", r.body)
}

// With output buffering the first chunk has not gone out, but it was
// yielded: start_response with exc_info must re-raise, not mix bodies.
func TestExcInfoAfterBufferedChunk(t *testing.T) {
	h, _ := threadsHandler(t, wsgi.WithOutputBuffering(true))
	srv := serve(t, h)
	r := get(t, srv, "/exc-info-buffered")
	assert.NotEqual(t, "partial;error page", r.body)
	assert.NotContains(t, r.body, "error page")
}

// A file wrapper returned without start_response is an error; the file
// descriptor gowsgi took for sendfile must not leak.
func TestFileWrapperWithoutStartResponse(t *testing.T) {
	h, _ := threadsHandler(t)
	srv := serve(t, h)
	before := get(t, srv, "/fds").body
	for range 50 {
		assert.Equal(t, 500, get(t, srv, "/file-no-start-response").status)
	}
	after := get(t, srv, "/fds").body
	b, _ := strconv.Atoi(before)
	a, _ := strconv.Atoi(after)
	assert.Less(t, a-b, 10, fmt.Sprintf("fds went from %d to %d", b, a))
}

// gatedPanicBody is a request body whose Read waits for release, then
// panics, as a broken body of Go middleware might.
type gatedPanicBody struct{ release chan struct{} }

func (b gatedPanicBody) Read([]byte) (int, error) {
	<-b.release
	panic("body exploded")
}

// A panic in a read made by the app's own thread after its request ended
// is logged; it does not reach the slot's next request.
func TestLatePanicInARead(t *testing.T) {
	h, sink := threadsHandler(t, wsgi.WithThreads(1))
	body := gatedPanicBody{make(chan struct{})}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/bg-read", body))
	assert.Equal(t, "answered before the body came", rec.Body.String())
	close(body.release) // the read the app's thread is in panics now
	eventually(t, func() bool { return len(sink.event("late_panic")) == 1 },
		"the late panic was not logged")
	for range 3 {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ok", nil))
		assert.Equal(t, http.StatusOK, rec.Code, "the next requests are served, no panic")
	}
}
