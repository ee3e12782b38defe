package wsgitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
	"github.com/gowsgi/wsgi/wsgitest"
)

// A fakeT stands in for a test's t, to see how wsgitest fails a test: it
// records Errorf, Fatalf and Skipf instead of failing, and passes the rest
// (Cleanup, Logf, Name) to the real test, so the app is closed when the
// real test ends.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	errors []string // Errorf, and Fatalf last
	fatal  string
	skip   string
}

func newFakeT(t *testing.T) *fakeT { return &fakeT{TB: t} }

func (f *fakeT) Helper() {}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

// Fatalf records the failure and ends the goroutine, as testing.T does;
// run gives it a goroutine of its own.
func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.errors = append(f.errors, f.fatal)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeT) FailNow()          { f.Fatalf("FailNow") }

func (f *fakeT) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skip = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Skip(args ...any) { f.Skipf("%s", fmt.Sprint(args...)) }
func (f *fakeT) SkipNow()         { f.Skipf("SkipNow") }

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errors) > 0
}

// run calls fn with f on a goroutine of its own, as the testing package
// runs a test, and waits for it: Fatalf and Skipf end that goroutine.
func (f *fakeT) run(fn func(t testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

// take returns the failures recorded so far and forgets them.
func (f *fakeT) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := f.errors
	f.errors = nil
	return errs
}

// awaitOne waits for a failure and returns it, which must be the only one:
// a real server's handler may report after its client has the whole
// response.
func (f *fakeT) awaitOne(t *testing.T, msgAndArgs ...any) string {
	t.Helper()
	require.Eventually(t, f.Failed, 5*time.Second, 5*time.Millisecond, "waiting for a failure")
	return f.one(t, msgAndArgs...)
}

// load runs New on f and returns the App, failing t if New failed f.
func (f *fakeT) load(t *testing.T, spec string, opts ...wsgitest.Option) *wsgitest.App {
	t.Helper()
	var app *wsgitest.App
	f.run(func(tb testing.TB) { app = wsgitest.New(tb, spec, opts...) })
	require.NotNil(t, app, "New failed: %q; skipped: %q", f.take(), f.skip)
	return app
}

// get runs app.Get(target) on f, as the test's own t would.
func (f *fakeT) get(app *wsgitest.App, target string) (resp *http.Response) {
	f.run(func(testing.TB) { resp = app.Get(target) })
	return resp
}

// expected has app expect errors, runs app.Get(target) on f, checks that
// nothing failed, and returns the response and the errors app has
// recorded.
func (f *fakeT) expected(t *testing.T, app *wsgitest.App, target string) (*http.Response, []wsgitest.Error) {
	t.Helper()
	app.ExpectErrors()
	resp := f.get(app, target)
	assert.Empty(t, f.take(), "an expected error does not fail the test")
	return resp, app.Errors()
}

// lastExpected runs target as expected does and returns the last error
// app has recorded, checking that it has recorded n in all.
func (f *fakeT) lastExpected(t *testing.T, app *wsgitest.App, target string, n int) wsgitest.Error {
	t.Helper()
	_, got := f.expected(t, app, target)
	require.Len(t, got, n)
	return got[n-1]
}

// one takes the failures recorded so far, which must be exactly one, and
// returns it.
func (f *fakeT) one(t *testing.T, msgAndArgs ...any) string {
	t.Helper()
	errs := f.take()
	require.Len(t, errs, 1, msgAndArgs...)
	return errs[0]
}

// body reads the whole body of resp.
func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// runExample runs an Example function with t as its testing.TB (see
// exampleT), so that its failures and skips are t's.
func runExample(t *testing.T, example func()) {
	exampleTest = t
	defer func() { exampleTest = nil }()
	example()
}

func TestPassingApp(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")
	resp := f.get(app, "/")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok", body(t, resp))
	resp = f.get(app, "/stream?n=4")
	assert.Equal(t, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n", body(t, resp))
	f.run(func(testing.TB) { resp = app.Post("/echo", "application/json", strings.NewReader(`{"a":1}`)) })
	assert.Equal(t, `POST application/json {"a":1}`, body(t, resp))
	assert.Empty(t, f.take(), "a well-behaved app fails no test")
	assert.Empty(t, app.Errors())
}

func TestRequests(t *testing.T) {
	app := wsgitest.New(t, "testdata/app.py")

	t.Run("post form", func(t *testing.T) {
		resp := app.PostForm("/echo", url.Values{"name": {"gopher"}, "n": {"2"}})
		assert.Equal(t, "POST application/x-www-form-urlencoded n=2&name=gopher", body(t, resp))
	})
	t.Run("body of unknown length", func(t *testing.T) {
		// Not a strings.Reader: a client would send it chunked.
		resp := app.Post("/echo", "text/plain", io.MultiReader(strings.NewReader("abc")))
		assert.Equal(t, "POST text/plain abc", body(t, resp))
	})
	t.Run("client request", func(t *testing.T) {
		req, err := http.NewRequest("GET", "https://shop.example/environ?q=1", nil)
		require.NoError(t, err)
		resp := app.Do(req)
		assert.Same(t, req, resp.Request)
		assert.Equal(t, strings.Join([]string{
			"wsgi.url_scheme=https",
			"HTTP_HOST=shop.example",
			"SERVER_NAME=shop.example",
			"REQUEST_URI=/environ?q=1",
			"SCRIPT_NAME=",
			"PATH_INFO=/environ",
			"QUERY_STRING=q=1",
		}, "\n"), body(t, resp))
	})
	t.Run("server request", func(t *testing.T) {
		resp := app.Do(httptest.NewRequest("GET", "/environ", nil))
		assert.Contains(t, body(t, resp), "wsgi.url_scheme=http\nHTTP_HOST=example.com\n")
	})
	t.Run("not found", func(t *testing.T) {
		resp := app.Get("/nowhere")
		assert.Equal(t, 404, resp.StatusCode)
		assert.Equal(t, "not found", body(t, resp))
	})
}

func TestViolations(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")
	for _, tc := range []struct{ path, message string }{
		{"/status-int", "Status must be of type str (got 200)"},
		{"/header-value-int", "Header value must be of type str (got 5)"},
		{"/body-str", "Iterator yielded non-bytestring ('a str, not bytes')"},
		{"/return-str", "You should not return a string as your application iterator"},
		{"/no-content-type", "No Content-Type header found in headers ([])"},
		{"/header-name-dash", "Names may not end in '-' or '_': 'X-Trailing-'"},
		{"/close-input", "input.close() must not be called"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp := f.get(app, tc.path)
			assert.Equal(t, 500, resp.StatusCode)
			msg := f.one(t, "one failure for one violation")
			assert.Contains(t, msg, "GET "+tc.path+": the app broke PEP 3333: "+tc.message)
			assert.Contains(t, msg, "wsgitest.WithStrict(false)")
			assert.Contains(t, msg, "Traceback (most recent call last):")
			assert.Regexp(t, `wsgiref/validate\.py", line \d+`, msg)
		})
	}
	got := app.Errors()
	require.Len(t, got, 7)
	assert.Equal(t, wsgitest.Violation, got[0].Kind)
	assert.Equal(t, "GET /status-int", got[0].Request)
	assert.Equal(t, "Status must be of type str (got 200)", got[0].Text)

	for _, tc := range []struct{ name, path, traceback string }{
		{"caught and logged by the app", "/close-input-caught", "in application\n    environ[\"wsgi.input\"].close()"},
		{"caught and logged through logging", "/close-input-logged",
			"ERROR in logger testdata.app: Internal Server Error: /close-input-logged\nTraceback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.get(app, tc.path)
			assert.Equal(t, "caught", body(t, resp))
			failure := f.one(t)
			assert.Contains(t, failure, "GET "+tc.path+": the app broke PEP 3333: input.close() must not be called")
			got := app.Errors()
			assert.Equal(t, wsgitest.Violation, got[len(got)-1].Kind)
			assert.Contains(t, got[len(got)-1].Traceback, tc.traceback)
		})
	}
	t.Run("not covered by ExpectErrors", func(t *testing.T) {
		app.ExpectErrors()
		f.run(func(testing.TB) { app.Get("/status-int") })
		failure := f.one(t)
		assert.Contains(t, failure, "GET /status-int: the app broke PEP 3333")
	})
	t.Run("the app's own assertion", func(t *testing.T) {
		app := f.load(t, "testdata/app.py")
		f.run(func(testing.TB) { app.Get("/assert") })
		failure := f.one(t)
		assert.Contains(t, failure, "GET /assert: the app raised AssertionError: the app's own assertion")
		assert.NotContains(t, failure, "PEP 3333")
	})
}

func TestReadToTheEnd(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")
	big := strings.Repeat("0123456789abcdef", 10000) // several of the reads it is made of
	for _, target := range []string{"/read-all", "/read-all?size=-1", "/read-all?size=none", "/read-all?size=5"} {
		t.Run(target, func(t *testing.T) {
			want := big
			if strings.HasSuffix(target, "=5") {
				want = big[:5]
			}
			var resp *http.Response
			f.run(func(testing.TB) { resp = app.Post(target, "text/plain", strings.NewReader(big)) })
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, want, body(t, resp))
			f.run(func(testing.TB) { resp = app.Post(target, "text/plain", io.MultiReader(strings.NewReader(big))) })
			assert.Equal(t, want, body(t, resp), "chunked")
			assert.Empty(t, f.take(), "the handler sets wsgi.input_terminated: strict mode allows read() to the end")
		})
	}
}

func TestNotStrict(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py", wsgitest.WithStrict(false))

	resp := f.get(app, "/no-content-type")
	assert.Equal(t, 200, resp.StatusCode)
	resp = f.get(app, "/header-name-dash")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("X-Trailing-"))
	f.run(func(testing.TB) { resp = app.Post("/read-all", "text/plain", strings.NewReader("to the end")) })
	assert.Equal(t, "to the end", body(t, resp))
	assert.Empty(t, f.take(), "without wsgiref.validate these pass")

	// What the handler refuses itself still fails the test, as an error.
	resp = f.get(app, "/status-int")
	assert.Equal(t, 500, resp.StatusCode)
	failure := f.one(t)
	assert.Contains(t, failure, "GET /status-int: the app raised TypeError")
	assert.NotContains(t, failure, "PEP 3333: ")
	assert.NotContains(t, failure, "validate.py")

	// Logged errors fail it too.
	resp = f.get(app, "/logging")
	assert.Equal(t, "logged", body(t, resp))
	failure = f.one(t)
	assert.Contains(t, failure, "GET /logging: the app wrote to wsgi.errors:\n\tERROR in logger x: boom")
}

func TestExceptions(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")

	resp := f.get(app, "/boom?x=1")
	assert.Equal(t, 500, resp.StatusCode)
	failure := f.one(t)
	assert.Contains(t, failure, "GET /boom?x=1: the app raised ZeroDivisionError: the app divided 1 by 0")
	assert.Regexp(t, `testdata/app\.py", line \d+, in application\n\s+raise ZeroDivisionError\("the app divided 1 by 0"\)`, failure)
	assert.Contains(t, failure, "app.ExpectErrors()")

	resp, got := f.expected(t, app, "/boom")
	assert.Equal(t, 500, resp.StatusCode)
	require.Len(t, got, 2)
	assert.Equal(t, wsgitest.Exception, got[1].Kind)
	assert.Equal(t, "GET /boom", got[1].Request)
	assert.Equal(t, "ZeroDivisionError: the app divided 1 by 0", got[1].Text)
	assert.Contains(t, got[1].Traceback, `raise ZeroDivisionError("the app divided 1 by 0")`)
}

func TestWsgiErrors(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")

	resp := f.get(app, "/log")
	assert.Equal(t, 200, resp.StatusCode, "the app answers as usual")
	failure := f.one(t, "the lines of one request make one failure")
	assert.Contains(t, failure, "GET /log: the app wrote to wsgi.errors:\n\tsomething odd happened\n\tand a second line")

	// A line written when no request is in flight cannot be tied to one.
	gate := filepath.Join(t.TempDir(), "gate")
	resp = f.get(app, "/log-later?gate="+url.QueryEscape(gate))
	assert.Equal(t, "later", body(t, resp))
	assert.Empty(t, f.take(), "nothing written while the request ran")
	require.NoError(t, os.WriteFile(gate, nil, 0o644)) // the request is over: now the thread writes
	failure = f.awaitOne(t)
	assert.Contains(t, failure, "outside any one request: the app wrote to wsgi.errors:\n\twritten after the response")

	assert.Equal(t, wsgitest.Error{Request: "GET /log", Kind: wsgitest.Logged, Text: "something odd happened\nand a second line"},
		f.lastExpected(t, app, "/log", 3))
}

func TestLogging(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")

	resp := f.get(app, "/logging")
	assert.Equal(t, "logged", body(t, resp), "the app answers as usual")
	failure := f.one(t)
	assert.Contains(t, failure, "GET /logging: the app wrote to wsgi.errors:\n\tERROR in logger x: boom")
	assert.Contains(t, failure, "app.ExpectErrors()")

	resp = f.get(app, "/logging/exception")
	assert.Equal(t, 500, resp.StatusCode)
	failure = f.one(t, "the record and its traceback make one failure")
	assert.Contains(t, failure, "GET /logging/exception: the app wrote to wsgi.errors:\n\tERROR in logger testdata.app: while dividing\n\tTraceback (most recent call last):")
	assert.Regexp(t, `testdata/app\.py", line \d+, in application\n\t\s+raise ZeroDivisionError\("the app divided 1 by 0"\)`, failure)
	assert.Contains(t, failure, "\tZeroDivisionError: the app divided 1 by 0")

	resp = f.get(app, "/logging/warning")
	assert.Equal(t, "warned", body(t, resp))
	assert.Empty(t, f.take(), "a warning is no error")

	resp = f.get(app, "/logging/own-handler")
	assert.Equal(t, "logged", body(t, resp))
	failure = f.one(t)
	assert.Contains(t, failure, "GET /logging/own-handler: the app wrote to wsgi.errors:\n\tonce")
	assert.Equal(t, 1, strings.Count(failure, "once"), "a record a handler of the app wrote to wsgi.errors is not written again:\n%s", failure)

	resp = f.get(app, "/logging/stream")
	assert.Equal(t, "first\nsecond\n", body(t, resp))
	failure = f.one(t, "records of the iteration belong to the request too")
	assert.Contains(t, failure, "GET /logging/stream: the app wrote to wsgi.errors:\n\tERROR in logger x: while streaming")

	resp = f.get(app, "/logging/configure")
	assert.Equal(t, "configured", body(t, resp))
	resp = f.get(app, "/logging")
	failure = f.one(t, "the handler is back after the app removed it")
	assert.Contains(t, failure, "GET /logging: the app wrote to wsgi.errors:\n\tERROR in logger x: boom")

	assert.Equal(t, wsgitest.Error{Request: "GET /logging", Kind: wsgitest.Logged, Text: "ERROR in logger x: boom"},
		f.lastExpected(t, app, "/logging", 6))
}

func TestAborted(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")

	t.Run("exception after the headers", func(t *testing.T) {
		resp := f.get(app, "/abort")
		assert.Equal(t, 200, resp.StatusCode, "the headers were out")
		b, err := io.ReadAll(resp.Body)
		assert.Equal(t, "partial", string(b))
		assert.ErrorIs(t, err, wsgitest.ErrAborted)
		failure := f.one(t)
		assert.Contains(t, failure, "GET /abort: the app raised RuntimeError: the generator failed after the headers were sent")
		assert.Contains(t, failure, "the response was aborted")
		assert.Contains(t, failure, "in _then_fail")
	})
	t.Run("body shorter than its length", func(t *testing.T) {
		resp := f.get(app, "/short")
		_, err := io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, wsgitest.ErrAborted)
		failure := f.one(t)
		assert.Contains(t, failure, "GET /short: the response was aborted: the body was 9 bytes, short of its Content-Length 100")
	})
	t.Run("through the server", func(t *testing.T) {
		srv := app.Server()
		resp, err := srv.Client().Get(srv.URL + "/abort")
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Error(t, err, "the client sees the connection cut")
		failure := f.awaitOne(t)
		assert.Contains(t, failure, "GET /abort: the app raised RuntimeError")
	})
	t.Run("expected", func(t *testing.T) {
		_, got := f.expected(t, app, "/short")
		assert.Equal(t, wsgitest.Aborted, got[len(got)-1].Kind)
	})
}

func TestHandlerLogs(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py", wsgitest.With(wsgi.WithRequestTimeout(100*time.Millisecond)))
	resp := f.get(app, "/spin")
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Empty(t, f.take(), "a timeout the test asked for is the handler's report, logged, not a failure of the app")
	assert.Empty(t, app.Errors())
}

func TestPanic(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py", wsgitest.With(wsgi.WithVarFunc("X_PANIC", func(r *http.Request) string {
		if r.URL.Query().Has("panic") {
			panic("no variable today")
		}
		return ""
	})))
	app.ExpectErrors()

	resp := f.get(app, "/?panic=1")
	_, err := io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, wsgitest.ErrAborted)
	failure := f.one(t, "a panic fails the test even when errors are expected")
	assert.Contains(t, failure, "GET /?panic=1: the response was aborted: Go code on the request path panicked: no variable today\n")
	assert.Contains(t, failure, "goroutine ", "with the stack")

	srv := app.Server()
	_, err = srv.Client().Get(srv.URL + "/?panic=1")
	assert.Error(t, err, "the server cuts the connection")
	failure = f.awaitOne(t)
	assert.Contains(t, failure, "Go code on the request path panicked: no variable today")

	resp = f.get(app, "/")
	assert.Equal(t, "ok", body(t, resp), "still serving")
}

func TestLoadErrors(t *testing.T) {
	t.Run("exception on import", func(t *testing.T) {
		f := newFakeT(t)
		f.run(func(tb testing.TB) {
			wsgitest.New(tb, "testdata/broken.py")
			tb.Errorf("New returned")
		})
		require.Len(t, f.take(), 1)
		assert.Contains(t, f.fatal, `wsgitest: the app did not load: wsgi: load "testdata/broken.py": KeyError: 'missing'`)
		assert.Regexp(t, `broken\.py", line 5, in <module>\n\s+application = SETTINGS\["missing"\]`, f.fatal)
		assert.Contains(t, f.fatal, "Traceback (most recent call last):")
	})
	t.Run("missing module", func(t *testing.T) {
		f := newFakeT(t)
		f.run(func(tb testing.TB) { wsgitest.New(tb, "nosuchapp:application") })
		wd, err := os.Getwd()
		require.NoError(t, err)
		assert.Contains(t, f.fatal, "ModuleNotFoundError: No module named 'nosuchapp'")
		assert.Contains(t, f.fatal, "wsgitest put the working directory, "+wd+", on sys.path")
	})
	t.Run("skip if missing", func(t *testing.T) {
		f := newFakeT(t)
		f.run(func(tb testing.TB) {
			wsgitest.New(tb, "testdata/needs_missing.py", wsgitest.SkipIfMissing("flask", "wsgitest_no_such_module"))
		})
		assert.Empty(t, f.take())
		assert.Contains(t, f.skip, "testdata/needs_missing.py needs wsgitest_no_such_module, which is not importable on Python "+wsgi.PythonVersion())
	})
	t.Run("other modules still fail", func(t *testing.T) {
		f := newFakeT(t)
		f.run(func(tb testing.TB) { wsgitest.New(tb, "testdata/needs_missing.py", wsgitest.SkipIfMissing("flask")) })
		assert.Empty(t, f.skip)
		assert.Contains(t, f.fatal, "No module named 'wsgitest_no_such_module'")
	})
	t.Run("bad option", func(t *testing.T) {
		f := newFakeT(t)
		f.run(func(tb testing.TB) { wsgitest.New(tb, "testdata/app.py", wsgitest.With(wsgi.WithThreads(0))) })
		assert.Contains(t, f.fatal, "WithThreads(0)")
	})
}

func TestModulePath(t *testing.T) {
	wd, err := os.Getwd()
	require.NoError(t, err)

	t.Run("working directory", func(t *testing.T) {
		// testdata is a namespace package of the package's directory.
		app := wsgitest.New(t, "testdata.hello:application")
		assert.Equal(t, "Hello, world!", body(t, app.Get("/")))
	})
	t.Run("changed working directory", func(t *testing.T) {
		t.Chdir("testdata")
		app := wsgitest.New(t, "hello:application")
		assert.Equal(t, "Hello, world!", body(t, app.Get("/")))
	})
	t.Run("after WithPythonPath", func(t *testing.T) {
		extra := t.TempDir()
		app := wsgitest.New(t, "testdata.app:application", wsgitest.With(wsgi.WithPythonPath(extra)))
		path := strings.Split(body(t, app.Get("/sys.path")), "\n")
		i, j := slices.Index(path, extra), slices.Index(path, wd)
		require.True(t, i >= 0 && j >= 0, "%s and %s on %q", extra, wd, path)
		assert.Less(t, i, j, "the test's directory comes after the given ones")
	})
}

func TestCookies(t *testing.T) {
	t.Run("not kept by default", func(t *testing.T) {
		app := wsgitest.New(t, "testdata/app.py")
		resp := app.Get("/cookie/set?flavour=oat")
		assert.Equal(t, "flavour=oat; Path=/", resp.Header.Get("Set-Cookie"))
		assert.Equal(t, "", body(t, app.Get("/cookie/show")))

		req := httptest.NewRequest("GET", "/cookie/show", nil)
		req.AddCookie(&http.Cookie{Name: "given", Value: "1"})
		assert.Equal(t, "given=1", body(t, app.Do(req)), "a request's own cookies go through")
	})
	t.Run("kept", func(t *testing.T) {
		app := wsgitest.New(t, "testdata/app.py", wsgitest.WithCookies())
		app.Get("/cookie/set?flavour=oat")
		app.Get("/cookie/set?size=large")
		assert.Equal(t, "flavour=oat; size=large", body(t, app.Get("/cookie/show")))
		assert.Equal(t, "", body(t, app.Get("http://other.example/cookie/show")), "cookies belong to their host")

		srv := app.Server()
		c := srv.Client()
		resp, err := c.Get(srv.URL + "/cookie/set?server=yes")
		require.NoError(t, err)
		resp.Body.Close()
		resp, err = c.Get(srv.URL + "/cookie/show")
		require.NoError(t, err)
		assert.Equal(t, "server=yes", body(t, resp), "the server's client has the jar too")
	})
}

func TestServer(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")
	srv := app.Server()
	assert.Same(t, srv, app.Server(), "one server per app")

	resp, err := http.Get(srv.URL + "/stream?n=2")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	assert.Equal(t, "chunk 0\nchunk 1\n", body(t, resp))
	assert.Empty(t, f.take())

	resp, err = http.Get(srv.URL + "/boom")
	require.NoError(t, err)
	assert.Equal(t, 500, resp.StatusCode)
	resp.Body.Close()
	failure := f.awaitOne(t, "the server's requests are checked too")
	assert.Contains(t, failure, "GET /boom: the app raised ZeroDivisionError")

	resp, err = http.Get(srv.URL + "/body-str")
	require.NoError(t, err)
	resp.Body.Close()
	failure = f.awaitOne(t)
	assert.Contains(t, failure, "GET /body-str: the app broke PEP 3333: Iterator yielded non-bytestring")
}

func TestMounted(t *testing.T) {
	f := newFakeT(t)
	app := f.load(t, "testdata/app.py")
	mux := http.NewServeMux()
	mux.Handle("/py/", http.StripPrefix("/py", app))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/py/environ")
	require.NoError(t, err)
	assert.Contains(t, body(t, resp), "REQUEST_URI=/py/environ\nSCRIPT_NAME=/py\nPATH_INFO=/environ\n")

	resp, err = http.Get(srv.URL + "/py/boom")
	require.NoError(t, err)
	resp.Body.Close()
	failure := f.awaitOne(t, "an App checks what it serves as an http.Handler")
	assert.Contains(t, failure, "GET /py/boom: the app raised ZeroDivisionError")

	resp, err = http.Get(srv.URL + "/py/abort")
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Error(t, err, "an aborted response cuts the connection")
	failure = f.awaitOne(t)
	assert.Contains(t, failure, "GET /py/abort: the app raised RuntimeError")
}

// djangoSite is the Django project of the examples.
var djangoSite = filepath.Join("..", "examples", "djangosite")

func TestExampleFlask(t *testing.T) { runExample(t, ExampleWithCookies_flask) }

func TestExampleDjango(t *testing.T) { runExample(t, ExampleApp_Server_django) }

func TestFlask(t *testing.T) {
	f := newFakeT(t)
	var app *wsgitest.App
	f.run(func(tb testing.TB) {
		app = wsgitest.New(tb, "testdata/flasklogin.py:app", wsgitest.SkipIfMissing("flask"))
	})
	if f.skip != "" {
		t.Skip(f.skip)
	}
	require.NotNil(t, app, f.take())
	login := url.Values{"user": {"gopher"}, "password": {"burrow"}}

	var resp *http.Response
	f.run(func(testing.TB) { resp = app.PostForm("/login", login) })
	assert.Equal(t, 302, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Set-Cookie"), "session=")
	resp = f.get(app, "/me")
	assert.Equal(t, 401, resp.StatusCode, "without WithCookies the session cookie is not sent back")
	assert.Empty(t, f.take(), "a 401 is the app's answer, not an error")

	// Flask handles the exception and logs it to wsgi.errors, a line at a
	// time, through its default handler; the record goes on to the root
	// logger, whose handler from wsgitest does not write it again: one
	// failure, with the traceback once.
	resp = f.get(app, "/boom")
	assert.Equal(t, 500, resp.StatusCode)
	failure := f.one(t)
	assert.Regexp(t, `^wsgitest: GET /boom: the app wrote to wsgi.errors:\n\t.*Exception on /boom \[GET\]\n\tTraceback`, failure)
	assert.Contains(t, failure, "LookupError: no such thing")
	assert.Equal(t, 1, strings.Count(failure, "Traceback (most recent call last):"), failure)
	assert.NotContains(t, failure, "ERROR in logger")
	require.Len(t, app.Errors(), 1)

	// Werkzeug reads a JSON body with wsgi.input.read(), no size, which
	// strict mode allows since the handler sets wsgi.input_terminated.
	f.run(func(testing.TB) { resp = app.Post("/json", "application/json", strings.NewReader(`{"n":1}`)) })
	assert.Equal(t, 200, resp.StatusCode)
	assert.JSONEq(t, `{"n":1}`, body(t, resp))
	f.run(func(testing.TB) {
		resp = app.Post("/json", "application/json", io.MultiReader(strings.NewReader(`{"n":2}`)))
	})
	assert.JSONEq(t, `{"n":2}`, body(t, resp), "chunked")
	assert.Empty(t, f.take(), "a Flask JSON POST passes strict mode")
}

func TestFlaskLogin(t *testing.T) {
	app := wsgitest.New(t, "testdata/flasklogin.py:app", wsgitest.WithCookies(), wsgitest.SkipIfMissing("flask"))

	assert.Equal(t, 401, app.Get("/me").StatusCode)
	assert.Equal(t, 401, app.PostForm("/login", url.Values{"user": {"gopher"}, "password": {"mole"}}).StatusCode)
	resp := app.PostForm("/login", url.Values{"user": {"gopher"}, "password": {"burrow"}})
	require.Equal(t, 302, resp.StatusCode)
	assert.Equal(t, "/me", resp.Header.Get("Location"), "a redirect is returned, not followed")
	assert.Equal(t, "Hello, gopher!", body(t, app.Get("/me")))
	assert.Equal(t, "Bye.", body(t, app.Post("/logout", "text/plain", nil)))
	assert.Equal(t, 401, app.Get("/me").StatusCode)
}

var csrfToken = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)

func TestDjango(t *testing.T) {
	// The settings module from the environment, and Django's own factory.
	t.Setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
	app := wsgitest.New(t, "django.core.wsgi:get_wsgi_application()",
		wsgitest.With(wsgi.WithPythonPath(djangoSite)),
		wsgitest.WithCookies(),
		wsgitest.SkipIfMissing("django"),
	)
	assert.Equal(t, "Hello from Django!", body(t, app.Get("/")))
	assert.Equal(t, "chunk 0\nchunk 1\n", body(t, app.Get("/stream/?n=2")))
	assert.Equal(t, 404, app.Get("/nowhere/").StatusCode)

	resp := app.PostForm("/greet/", url.Values{"name": {"gopher"}})
	assert.Equal(t, 403, resp.StatusCode, "no CSRF cookie yet")
	m := csrfToken.FindStringSubmatch(body(t, app.Get("/greet/")))
	require.NotNil(t, m)
	resp = app.PostForm("/greet/", url.Values{"name": {"gopher"}, "csrfmiddlewaretoken": {m[1]}})
	assert.Equal(t, "Hello, gopher!", body(t, resp), "the csrftoken cookie came back from the jar")
}

func TestDjangoLogged(t *testing.T) {
	// The example site with a view that raises, from testdata/djangotest.
	t.Setenv("DJANGO_SETTINGS_MODULE", "djangotest.settings")
	f := newFakeT(t)
	var app *wsgitest.App
	f.run(func(tb testing.TB) {
		app = wsgitest.New(tb, "django.core.wsgi:get_wsgi_application()",
			wsgitest.With(wsgi.WithPythonPath(djangoSite, "testdata")),
			wsgitest.SkipIfMissing("django"),
		)
	})
	if f.skip != "" {
		t.Skip(f.skip)
	}
	require.NotNil(t, app, f.take())

	resp := f.get(app, "/")
	assert.Equal(t, "Hello from Django!", body(t, resp))
	resp = f.get(app, "/nowhere/")
	assert.Equal(t, 404, resp.StatusCode)
	assert.Empty(t, f.take(), "a 404, which Django logs as a warning, is no error")

	// With DEBUG off, Django answers 500 and logs the exception to the
	// django.request logger only: the root logger's handler from wsgitest
	// writes it to wsgi.errors.
	resp = f.get(app, "/boom/")
	assert.Equal(t, 500, resp.StatusCode)
	failure := f.one(t)
	assert.Contains(t, failure, "GET /boom/: the app wrote to wsgi.errors:\n\tERROR in logger django.request: Internal Server Error: /boom/\n\tTraceback (most recent call last):")
	assert.Regexp(t, `djangotest/urls\.py", line \d+, in boom\n\t\s+raise LookupError\("no such thing"\)`, failure)
	assert.Contains(t, failure, "\tLookupError: no such thing")
	assert.Contains(t, failure, "app.ExpectErrors()")

	resp, got := f.expected(t, app, "/boom/")
	assert.Equal(t, 500, resp.StatusCode)
	require.Len(t, got, 2)
	assert.Equal(t, wsgitest.Logged, got[1].Kind)
	assert.Equal(t, "GET /boom/", got[1].Request)
	assert.Contains(t, got[1].Text, "LookupError: no such thing")
}
