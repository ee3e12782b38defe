package wsgi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

func testdata(t testing.TB, rel string) string {
	abs, err := filepath.Abs(filepath.Join("testdata", rel))
	require.NoError(t, err)
	return abs
}

func TestLoadErrors(t *testing.T) {
	dir := testdata(t, "loaderrors")
	cases := []struct {
		spec      string
		typ, text string
	}{
		{"no_such_module_here", "ModuleNotFoundError", "no_such_module_here"},
		{"raises_at_import", "RuntimeError", "this module refuses to import"},
		{"syntax_error", "SyntaxError", ""},
		{"not_callable", "TypeError", "not callable"},
		{"factory:missing", "AttributeError", "'missing'"},
		{"factory:no_such_factory()", "AttributeError", "no_such_factory"},
		{filepath.Join(dir, "nope.wsgi"), "FileNotFoundError", "nope.wsgi"},
		{filepath.Join(dir, "raises_at_import.py"), "RuntimeError", "refuses"},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			h, err := wsgi.NewHandler(wsgi.WithApp(c.spec), wsgi.WithPythonPath(dir))
			require.Error(t, err)
			assert.Nil(t, h)
			var pe *wsgi.PythonError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, c.typ, pe.Type)
			assert.Contains(t, err.Error(), c.text)
			assert.Contains(t, err.Error(), fmt.Sprintf("load %q", c.spec), "the error names the spec")
			assert.Contains(t, pe.Traceback, c.typ, "the traceback comes with it")
		})
	}
	t.Run("no app", func(t *testing.T) {
		_, err := wsgi.NewHandler()
		require.ErrorContains(t, err, "WithApp")
	})
	t.Run("bad options", func(t *testing.T) {
		for _, opt := range []wsgi.Option{wsgi.WithThreads(0), wsgi.WithApp(" "), wsgi.WithPythonPath(""), wsgi.WithInterpreter(wsgi.Interpreter(9))} {
			_, err := wsgi.NewHandler(wsgi.WithApp("x"), opt)
			require.Error(t, err)
			assert.Regexp(t, `^wsgi: With[A-Za-z]+\(`, err.Error(), "the error names the option")
		}
	})
}

func TestAppSpecs(t *testing.T) {
	dir := testdata(t, "loaderrors")
	for spec, want := range map[string]string{
		"factory:create_app()":                             "from factory",
		"factory:server.wsgi_app":                          "from dotted",
		filepath.Join(dir, "factory.py") + ":create_app()": "from factory",
		testdata(t, "hello.py"):                            "Hello, World!",
	} {
		h, err := wsgi.NewHandler(wsgi.WithApp(spec), wsgi.WithPythonPath(dir))
		require.NoError(t, err, spec)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		assert.Equal(t, want, rec.Body.String(), spec)
		require.NoError(t, h.Close())
	}
}

func TestInterpretersAreSeparate(t *testing.T) {
	h1, _ := newHandler(t, "application")
	h2, _ := newHandler(t, "application")
	s1, s2 := serve(t, h1), serve(t, h2)
	var a, b struct {
		State *string
		ID    int64
	}
	getJSON(t, s1, "/module-state?set=one", &a)
	getJSON(t, s2, "/module-state", &b)
	assert.Equal(t, "one", *a.State)
	assert.Nil(t, b.State, "a module global set in one handler's app is not seen by another's")
	assert.NotEqual(t, a.ID, b.ID, "each handler has its own sys.modules")
}

func TestMainInterpreterOnlyOnce(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithInterpreter(wsgi.MainInterpreter))
	srv := serve(t, h)
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body)

	_, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithInterpreter(wsgi.MainInterpreter))
	require.ErrorContains(t, err, "WithInterpreter(MainInterpreter)")
	require.ErrorContains(t, err, "SubInterpreter")
}

func TestNextRequestAfterError(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	for range 20 {
		assert.Equal(t, 500, get(t, srv, "/raise").status)
		assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body)
	}
}

func TestConcurrentRequests(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(4))
	srv := serve(t, h)
	var wg sync.WaitGroup
	const n = 200
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := get(t, srv, "/counter")
			assert.Equal(t, 200, r.status)
		}()
	}
	wg.Wait()
	var count int
	getJSON(t, srv, "/counter", &count)
	assert.Equal(t, n+1, count)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestShutdown(t *testing.T) {
	h, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	srv := serve(t, h)

	inflight := make(chan response)
	go func() { inflight <- get(t, srv, "/sleep?ms=300") }()
	eventually(t, func() bool { return h.Stats().InFlight == 1 }, "the request never got a thread")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	r := <-inflight
	assert.Equal(t, "slept", r.body, "the request in flight finishes")

	r = get(t, srv, "/hello")
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "requests after shutdown get 503")
	require.NoError(t, h.Close(), "Close after Shutdown is a no-op")
	require.NoError(t, h.Close(), "a second Close is a no-op")
}

func TestShutdownDeadline(t *testing.T) {
	h, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	srv := serve(t, h)
	inflight := startGated(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Shutdown(ctx), context.DeadlineExceeded)
	inflight.open() // the interpreter kept serving the request in flight
	require.NoError(t, h.Close())
}

func TestManyHandlersCreatedAndClosed(t *testing.T) {
	for i := range 30 {
		h, err := wsgi.NewHandler(wsgi.WithApp(testdata(t, "hello.py")))
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		require.Equal(t, "Hello, World!", rec.Body.String(), "handler %d", i)
		require.NoError(t, h.Close())
	}
}

// TestCgoCallsPerRequest checks the crossing budget in cpython.h: one cgo
// call for a list response.
func TestCgoCallsPerRequest(t *testing.T) {
	h, err := wsgi.NewHandler(wsgi.WithApp(testdata(t, "hello.py")))
	require.NoError(t, err)
	defer h.Close()
	req := httptest.NewRequest("GET", "/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req) // warm up: thread states
	const n = 100
	before := runtime.NumCgoCall()
	for range n {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
	calls := runtime.NumCgoCall() - before
	assert.Equal(t, "Hello, World!", rec.Body.String())
	assert.Equal(t, int64(n), calls, "cgo calls for %d list responses", n)
}

// TestCgoCallsPerStream checks the budget of an iterated response: the
// submit, then one call per batch of chunks Go takes, the last of which
// brings the end. A Flask or Django response is such an iterable. How the
// chunks fall into batches depends on how fast the writer takes them: at
// best the three leave in one batch (two calls in all), at worst one each
// and the end alone (five); four is what the per-chunk design cost.
func TestCgoCallsPerStream(t *testing.T) {
	h, _ := newHandler(t, "application")
	req := httptest.NewRequest("GET", "/stream?n=3", nil)
	h.ServeHTTP(httptest.NewRecorder(), req) // warm up: thread states
	const n = 50
	before := runtime.NumCgoCall()
	var rec *httptest.ResponseRecorder
	for range n {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
	calls := runtime.NumCgoCall() - before
	assert.Equal(t, 200, rec.Code)
	assert.LessOrEqual(t, calls, int64(4*n), "cgo calls for %d responses of 3 chunks", n)
	t.Logf("%.2f cgo calls per response of 3 chunks", float64(calls)/n)
}

// panicWriter panics on Write, as a broken middleware might.
type panicWriter struct{ http.ResponseWriter }

func (panicWriter) Write([]byte) (int, error) { panic("writer exploded") }

func TestPanickingWriter(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	for _, path := range []string{"/hello", "/stream?n=3", "/write"} {
		func() {
			defer func() {
				assert.Equal(t, "writer exploded", fmt.Sprint(recover()), path)
			}()
			h.ServeHTTP(panicWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", path, nil))
		}()
		// The GIL and the slot came back: the next request is served.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/hello", nil))
		assert.Equal(t, "Hello, World!", rec.Body.String(), "after a panic in %s", path)
	}
}

func TestPythonErrorString(t *testing.T) {
	e := &wsgi.PythonError{Type: "ValueError", Message: "bad"}
	assert.Equal(t, "ValueError: bad", e.Error())
	var target *wsgi.PythonError
	assert.True(t, errors.As(fmt.Errorf("wrapped: %w", e), &target))
	assert.Equal(t, "KeyboardInterrupt", (&wsgi.PythonError{Type: "KeyboardInterrupt"}).Error())
}

func TestServedThroughRecorder(t *testing.T) {
	h, _ := newHandler(t, "validated")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/echo", strings.NewReader("via recorder")))
	assert.Equal(t, 200, rec.Code)
	body, _ := io.ReadAll(rec.Body)
	assert.Equal(t, "via recorder", string(body))
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
		recs := sink.event("threads_left")
		require.Len(t, recs, 1, "daemon=%s", daemon)
		assert.Contains(t, recs[0]["threads"], "lingering")
	}
}
