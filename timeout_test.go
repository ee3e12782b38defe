package wsgi_test

import (
	"net/http"
	"sync/atomic"
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
	recs := sink.event("timeout", false)
	require.Len(t, recs, 1)
	assert.Contains(t, recs[0]["traceback"], "RequestTimeout", "the app sees the exception in its traceback")
	assert.Contains(t, recs[0]["traceback"], "busy")
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "the thread and its slot came back")

	r = get(t, srv, "/busy-stream?ms=20000&timeout")
	assert.Equal(t, 200, r.status)
	assert.Error(t, r.err, "after the headers the connection is aborted")
	assert.NotEmpty(t, sink.event("timeout", true))
	var closed []string
	getJSON(t, srv, "/closed", &closed)
	assert.Equal(t, []string{"ms=20000&timeout"}, closed, "close() still runs")

	assert.Equal(t, "done", get(t, srv, "/busy?ms=10").body, "a quick request is not touched")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Timeouts)
	assert.Zero(t, st.Errors, "timeouts are not counted as app errors")
}

// The app may raise the RequestTimeout and the request fail before the
// timer that raised it has gone on: a busy machine may hold that timer's
// thread back. The failure is still the timeout's 504, not an app error.
func TestRequestTimeoutWithTheTimerHeldBack(t *testing.T) {
	var held atomic.Int32
	restore := wsgi.SetInterruptHook(func() {
		held.Add(1)
		time.Sleep(300 * time.Millisecond)
	})
	t.Cleanup(restore)
	h, sink := newHandler(t, "application", wsgi.WithRequestTimeout(100*time.Millisecond))
	srv := serve(t, h)

	r := get(t, srv, "/busy?ms=20000")
	require.Equal(t, int32(1), held.Load(), "the timer interrupted the request")
	assert.Equal(t, http.StatusGatewayTimeout, r.status)
	assert.Len(t, sink.event("timeout", false), 1)
	assert.Empty(t, sink.event("app_error", false), "a timeout is not the app's error")
	st := h.Stats()
	assert.Equal(t, uint64(1), st.Timeouts)
	assert.Zero(t, st.Errors)
}

// TestRequestTimeoutStuckInC: a thread blocked in C (here time.sleep) is
// reported as stuck, and comes back when the call returns.
func TestRequestTimeoutStuckInC(t *testing.T) {
	h, sink := newHandler(t, "application", wsgi.WithRequestTimeout(100*time.Millisecond))
	srv := serve(t, h)
	done := make(chan response)
	go func() { done <- get(t, srv, "/sleep?ms=1500") }()
	eventually(t, func() bool { return h.Stats().Stuck == 1 }, "the sleeping request was not reported stuck")
	assert.NotEmpty(t, sink.event("stuck"))
	r := <-done
	assert.Equal(t, http.StatusGatewayTimeout, r.status, "the timeout is raised once the call returns")
	eventually(t, func() bool { return h.Stats().Stuck == 0 }, "the stuck count did not come down")
	assert.NotEmpty(t, sink.event("unstuck"))
}
