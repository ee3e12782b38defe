package wsgi_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

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
