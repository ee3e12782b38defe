package wsgi_test

import (
	"context"
	"expvar"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

func TestRequestTimeout(t *testing.T) {
	h, sink := newHandler(t, "application", wsgi.WithRequestTimeout(200*time.Millisecond), wsgi.WithThreads(1))
	srv := serve(t, h)

	r := get(t, srv, "/busy?ms=20000")
	assert.Equal(t, http.StatusGatewayTimeout, r.status, "a request past its timeout before the headers: 504")
	recs := sink.find("wsgi: request timeout")
	require.Len(t, recs, 1)
	assert.Contains(t, recs[0]["traceback"], "RequestTimeout", "the app sees the exception in its traceback")
	assert.Contains(t, recs[0]["traceback"], "busy")
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "the thread and its slot came back")

	r = get(t, srv, "/busy-stream?ms=20000&timeout")
	assert.Equal(t, 200, r.status)
	assert.Error(t, r.err, "after the headers the connection is aborted")
	assert.NotEmpty(t, sink.find("request timeout after the headers"))
	var closed []string
	getJSON(t, srv, "/closed", &closed)
	assert.Equal(t, []string{"ms=20000&timeout"}, closed, "close() still runs")

	assert.Equal(t, "done", get(t, srv, "/busy?ms=10").body, "a quick request is not touched")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Timeouts)
	assert.Zero(t, st.Errors, "timeouts are not counted as app errors")
}

// TestRequestTimeoutStuckInC: a thread blocked in C (here time.sleep) is
// reported as stuck, and comes back when the call returns.
func TestRequestTimeoutStuckInC(t *testing.T) {
	h, sink := newHandler(t, "application", wsgi.WithRequestTimeout(100*time.Millisecond))
	srv := serve(t, h)
	done := make(chan response)
	go func() { done <- get(t, srv, "/sleep?ms=1500") }()
	eventually(t, func() bool { return h.Stats().Stuck == 1 }, "the sleeping request was not reported stuck")
	assert.NotEmpty(t, sink.find("still in C code"))
	r := <-done
	assert.Equal(t, http.StatusGatewayTimeout, r.status, "the timeout is raised once the call returns")
	eventually(t, func() bool { return h.Stats().Stuck == 0 }, "the stuck count did not come down")
	assert.NotEmpty(t, sink.find("stuck request came back"))
}

func TestQueueLimits(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1), wsgi.WithMaxQueue(1),
		wsgi.WithQueueTimeout(300*time.Millisecond))
	srv := serve(t, h)
	gate := filepath.Join(t.TempDir(), "gate")
	first := make(chan response)
	go func() { first <- get(t, srv, "/wait-file?path="+url.QueryEscape(gate)) }()
	eventually(t, func() bool { return exists(gate + ".started") }, "the first request never started")

	queued := make(chan response)
	go func() { queued <- get(t, srv, "/counter") }()
	eventually(t, func() bool { return h.Stats().Queued == 1 }, "the second request did not queue")

	r := get(t, srv, "/counter")
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "the queue is full")
	assert.Equal(t, "1", r.header.Get("Retry-After"))

	r = <-queued
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "the queued request timed out")
	assert.Equal(t, "1", r.header.Get("Retry-After"))

	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	assert.Equal(t, "released", (<-first).body)
	var count int
	getJSON(t, srv, "/counter", &count)
	assert.Equal(t, 1, count, "refused requests never entered Python")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Rejected)
	assert.Greater(t, st.QueueWait, 250*time.Millisecond)
}

func TestQueuedClientLeaves(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	gate := filepath.Join(t.TempDir(), "gate")
	first := make(chan response, 1)
	go func() { first <- get(t, srv, "/wait-file?path="+url.QueryEscape(gate)) }()
	eventually(t, func() bool { return exists(gate + ".started") }, "the first request never started")

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/counter", nil)
	go srv.Client().Do(req)
	eventually(t, func() bool { return h.Stats().Queued == 1 }, "the request did not queue")
	cancel()
	eventually(t, func() bool { return h.Stats().Queued == 0 }, "a client that left is dropped from the queue")
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	assert.Equal(t, "released", (<-first).body)
}

func TestHostileApps(t *testing.T) {
	h, sink := newHandler(t, "application")
	srv := serve(t, h)
	for path, want := range map[string]string{
		"/sys-exit":           "SystemExit",
		"/keyboard-interrupt": "KeyboardInterrupt",
		"/base-exception":     "Custom",
		"/no-start-response":  "did not call start_response",
		"/return-none":        "NoneType",
		"/iter-raises":        "cannot iterate",
	} {
		r := get(t, srv, path)
		assert.Equal(t, 500, r.status, path)
		found := false
		for _, rec := range sink.find("wsgi: application error") {
			found = found || strings.Contains(rec["error"], want)
		}
		assert.True(t, found, "%s: no log record mentions %q", path, want)
		assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "served after %s", path)
	}
	r := get(t, srv, "/exit-mid-stream")
	assert.Error(t, r.err, "SystemExit after the headers aborts the connection")
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "and the process lives on")
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

// A body sent after "Expect: 100-continue" is the app's to ask for: an app
// that answers without reading it gets its response out, and the client
// never hears "100 Continue".
func TestExpectContinueLeftToTheApp(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	out := raw(t, srv, "POST /hello HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n"), "the response, at once: %q", out)
	assert.NotContains(t, out, "100 Continue")
	assert.Contains(t, out, "Hello, World!")

	// An app that reads gets the body once the client is told to send it.
	r := do(t, srv, "POST", "/echo", strings.NewReader("0123456789"), "Expect", "100-continue")
	assert.Equal(t, "0123456789", r.body)
}

// A client slow to send a small body holds no thread: the body is read
// before the request waits for one, so other requests are served
// meanwhile.
func TestSlowBodyHoldsNoThread(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	io.WriteString(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
	time.Sleep(50 * time.Millisecond) // the server has the headers and half the body

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(srv.URL + "/hello")
	require.NoError(t, err, "the only thread is free for others while the body comes")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "Hello, World!", string(body))

	io.WriteString(conn, "56789")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, err := io.ReadAll(conn) // until the server closes
	require.NoError(t, err)
	assert.Contains(t, string(out), "\r\n\r\n0123456789")
}

// A body longer than the request's ContentLength says (Go middleware
// replaced it without updating the length) is read to its end, as the app
// would read it without the early read.
func TestBodyLongerThanContentLength(t *testing.T) {
	h, _ := newHandler(t, "application")
	req := httptest.NewRequest("POST", "/echo-chunks?size=3", strings.NewReader("0123456789"))
	req.ContentLength = 5
	req.Header.Set("Content-Length", "5")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.Contains(t, rec.Body.String(), `"total": 10`)
}

func TestTrustedProxies(t *testing.T) {
	hdrs := []string{
		"X-Forwarded-For", "203.0.113.9, 10.1.2.3",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "shop.example",
	}
	t.Run("untrusted", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("10.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ", hdrs...)
		assert.Equal(t, "127.0.0.1", env["REMOTE_ADDR"], "forwarding headers from anyone else are not believed")
		assert.Equal(t, "http", env["wsgi.url_scheme"])
		assert.NotEqual(t, "shop.example", env["HTTP_HOST"])
		assert.Equal(t, "203.0.113.9, 10.1.2.3", env["HTTP_X_FORWARDED_FOR"], "they stay plain headers")
	})
	t.Run("X-Forwarded", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("127.0.0.1", "10.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ", hdrs...)
		assert.Equal(t, "203.0.113.9", env["REMOTE_ADDR"], "the right-most untrusted hop")
		assert.Equal(t, "https", env["wsgi.url_scheme"])
		assert.Equal(t, "shop.example", env["HTTP_HOST"])
		assert.Equal(t, "shop.example", env["SERVER_NAME"])
		assert.Equal(t, "443", env["SERVER_PORT"])
	})
	t.Run("Forwarded", func(t *testing.T) {
		h, _ := newHandler(t, "validated", wsgi.WithTrustedProxies("127.0.0.0/8"))
		env := getEnviron(t, serve(t, h), "/environ",
			"Forwarded", `for="[2001:db8::7]:4711";proto=https;host="api.example:8443"`)
		assert.Equal(t, "2001:db8::7", env["REMOTE_ADDR"])
		assert.Equal(t, "https", env["wsgi.url_scheme"])
		assert.Equal(t, "api.example:8443", env["HTTP_HOST"])
		assert.Equal(t, "8443", env["SERVER_PORT"])
	})
	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithTrustedProxies("not-an-ip"))
	require.ErrorContains(t, err, "WithTrustedProxies")
}

func TestShutdownWithAppThreads(t *testing.T) {
	for _, daemon := range []string{"0", "1"} {
		sink := &logSink{}
		h, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithLogger(slogFor(sink)))
		require.NoError(t, err)
		srv := serve(t, h)
		assert.Equal(t, "spawned", get(t, srv, "/spawn-thread?name=lingering&ms=60000&daemon="+daemon).body)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		require.NoError(t, h.Shutdown(ctx))
		cancel()
		assert.Less(t, time.Since(start), 5*time.Second, "a thread that runs on does not hang shutdown past its context")
		recs := sink.find("threads the app started are still running")
		require.Len(t, recs, 1, "daemon=%s", daemon)
		assert.Contains(t, recs[0]["threads"], "lingering")
	}
}

func TestStatsAndExpvar(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithExpvar("gowsgi_test_stats"))
	srv := serve(t, h)
	get(t, srv, "/hello")
	get(t, srv, "/raise")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Served)
	assert.Equal(t, uint64(1), st.Errors)
	assert.Zero(t, st.InFlight)
	v := expvar.Get("gowsgi_test_stats")
	require.NotNil(t, v)
	assert.Contains(t, v.String(), `"Served":2`)
}
