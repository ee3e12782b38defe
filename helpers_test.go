package wsgi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// appSpec is testdata/app.py with the given callable: "application", or
// "validated" for the same app wrapped in wsgiref.validate.validator.
func appSpec(t testing.TB, callable string) string {
	abs, err := filepath.Abs(filepath.Join("testdata", "app.py"))
	require.NoError(t, err)
	return abs + ":" + callable
}

// callables are the two faces of the test app every table test runs.
var callables = []string{"application", "validated"}

// logSink is a slog.Handler that keeps every record for assertions.
type logSink struct {
	mu      sync.Mutex
	records []slog.Record
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler       { return s }
func (s *logSink) WithGroup(string) slog.Handler            { return s }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	s.records = append(s.records, r.Clone())
	s.mu.Unlock()
	return nil
}

// find returns the attributes of the records whose message contains msg.
func (s *logSink) find(msg string) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, r := range s.records {
		if !strings.Contains(r.Message, msg) {
			continue
		}
		m := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// event returns the attributes of the records whose event attribute is
// name, and, when aborted is given, whose aborted attribute says so.
func (s *logSink) event(name string, aborted ...bool) []map[string]string {
	var out []map[string]string
	for _, m := range s.find("") {
		if m["event"] != name {
			continue
		}
		if len(aborted) > 0 && (m["aborted"] == "true") != aborted[0] {
			continue
		}
		out = append(out, m)
	}
	return out
}

func slogFor(s *logSink) *slog.Logger { return slog.New(s) }

// newHandler builds a handler for the test app and closes it when the test
// ends. The first option may override the app.
func newHandler(t testing.TB, callable string, opts ...wsgi.Option) (*wsgi.Handler, *logSink) {
	t.Helper()
	sink := &logSink{}
	all := append([]wsgi.Option{wsgi.WithApp(appSpec(t, callable)), wsgi.WithLogger(slog.New(sink))}, opts...)
	h, err := wsgi.NewHandler(all...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h, sink
}

// serve starts an HTTP server for h, closed when the test ends.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   string
	err    error // reading the body failed (e.g. an aborted connection)
}

// do sends one request and reads the whole response.
func do(t testing.TB, srv *httptest.Server, method, path string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func get(t testing.TB, srv *httptest.Server, path string) response {
	t.Helper()
	return do(t, srv, http.MethodGet, path, nil)
}

// getJSON GETs path, expects a 200 and decodes the JSON body into v.
func getJSON(t testing.TB, srv *httptest.Server, path string, v any) {
	t.Helper()
	r := get(t, srv, path)
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.NoError(t, json.Unmarshal([]byte(r.body), v), r.body)
}

// raw sends a raw HTTP request over TCP and returns everything the server
// writes until it closes the connection or goes quiet for a second.
func raw(t testing.TB, srv *httptest.Server, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var sb strings.Builder
	r := bufio.NewReader(conn)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
	}
}

// eventually polls cond until it holds or five seconds pass.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 10*time.Millisecond, msg)
}

// noUnraisable checks the app saw no unraisable exception, which is how
// wsgiref.validate reports an iterator that was never closed.
func noUnraisable(t testing.TB, srv *httptest.Server) {
	t.Helper()
	var n int
	getJSON(t, srv, "/unraisable", &n)
	require.Zero(t, n, "the app reported unraisable exceptions (an unclosed iterator?)")
}

// A gatedRequest waits in the app, on I/O (testdata/app.py's /wait-file),
// until its gate is opened.
type gatedRequest struct {
	t    testing.TB
	gate string
	done chan response
}

// startGated sends a gated request and returns once it is in the app.
func startGated(t testing.TB, srv *httptest.Server) *gatedRequest {
	t.Helper()
	g := &gatedRequest{t: t, gate: filepath.Join(t.TempDir(), "gate"), done: make(chan response, 1)}
	go func() { g.done <- get(t, srv, "/wait-file?path="+url.QueryEscape(g.gate)) }()
	eventually(t, func() bool { return exists(g.gate + ".started") }, "the gated request never started")
	return g
}

// ended reports whether the request has ended, without waiting.
func (g *gatedRequest) ended() bool {
	select {
	case r := <-g.done:
		g.done <- r
		return true
	default:
		return false
	}
}

// open opens the gate and checks that the request then ends as it should.
func (g *gatedRequest) open() {
	g.t.Helper()
	require.NoError(g.t, os.WriteFile(g.gate, nil, 0o644))
	require.Equal(g.t, "released", (<-g.done).body)
}
