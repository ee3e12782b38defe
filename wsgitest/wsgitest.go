// Package wsgitest tests Python WSGI applications from Go tests, through
// [wsgi.Handler].
//
//	func TestHello(t *testing.T) {
//		app := wsgitest.New(t, "myapp:application")
//		resp := app.Get("/")
//		body, _ := io.ReadAll(resp.Body)
//		...
//	}
//
// [New] loads the app for the test and closes it when the test ends.
// [App.Get], [App.Post], [App.PostForm] and [App.Do] call the handler's
// ServeHTTP in the test's process, with no network, and return the
// recorded response. [App.Server] starts a real HTTP server when a client
// needs one, and an App is itself an http.Handler to mount under a router.
//
// # Strict mode
//
// By default every request runs through wsgiref.validate, the standard
// library's checker of PEP 3333: a violation by the app (a status that is
// not a str, a header value that is not a str, a body of str instead of
// bytes, a response without Content-Type, ...) fails the test with the
// validator's message, the Python traceback and the request that caused
// it. [WithStrict](false) turns the checks off. One check is relaxed:
// wsgiref.validate refuses wsgi.input.read() without a size, since PEP
// 3333 gives read() one, but the handler sets wsgi.input_terminated, which
// lets an app read to the end, and Werkzeug does so for a JSON body. In
// strict mode read(), read(-1) and read(None) read to the end, in sized
// reads that the validator checks as usual.
//
// # Errors
//
// An exception the app does not handle (the client gets a 500, or a cut
// response once the headers are out), an aborted response, every line the
// app writes to wsgi.errors (where Flask logs its exceptions), and every
// record of level ERROR or above that it logs through Python's logging
// (where Django logs the exception behind a 500, to the django.request
// logger) fail the test, with the request and the traceback. A test that
// provokes errors on purpose calls [App.ExpectErrors] first, and may look
// at them with [App.Errors]. PEP 3333 violations, and panics of Go code on
// the request path, fail the test even then. The rest of what the handler
// logs goes to t.Logf.
//
// Logging records reach wsgitest through a handler that its Python module
// puts on the root logger of the app's interpreter when the app loads. Of
// level ERROR, it writes each record, formatted as "ERROR in logger
// django.request: message" with its traceback, to the wsgi.errors of the
// request being served: during the app call, the iteration of its
// response and close(). A record logged outside a request (by a thread
// the app started, say) goes to sys.stderr instead. The handler is put
// back at the next request if the app's logging configuration removes it.
// A record is not written twice: the handler skips one that a handler of
// a logger between the record's logger and the root (Flask's default
// handler, or any handler whose stream is wsgi.errors, directly or
// through flask.logging.wsgi_errors_stream) has already written there.
// Records that never reach the root logger are not seen: those of a
// logger that does not propagate, or below the level the app's
// configuration sets.
//
// # Where modules are found
//
// The app is named as [wsgi.WithApp] names it: "package.module:callable",
// or a script "testdata/app.py:callable" relative to the working
// directory. The test's working directory at [New] (under go test, the
// directory of the package being tested) is put on sys.path, after any
// directories given with [wsgi.WithPythonPath], so a module next to the
// test imports by its name. wsgitest's own Python module, gowsgi_wsgitest
// (the validator of strict mode and the logging handler), is written to
// the test's t.TempDir(), which comes last on sys.path.
//
// # An App per test
//
// Each App has a handler and, by default, a sub-interpreter of its own.
// When the test ends, the handler closes and its interpreter is recycled
// (see [wsgi.SetMaxIdleInterpreters]): the modules imported since it was
// set up are dropped (the standard library's are kept, put back to the
// state of a fresh import), the state the app changed (sys.path, the logging
// configuration with wsgitest's handler, builtins, ...) is put back, and
// the next test's App gets it and imports its app afresh, running its
// module-level code again. Tests that run at once (t.Parallel) each have
// an interpreter of their own. So the test binary stays flat: a thousand
// tests each with an App of a small Flask app, in one binary with a
// thousand of a plain app and a hundred of a Django site, peaked at 88
// MiB of RSS (Python 3.11; 124 MiB with -race; TestManyApps, with
// GOWSGI_LONG set). A test whose app leaves a thread running keeps its
// interpreter, and the next test gets another; what recycling cannot reset
// (the C state of extension modules, the process's environment, changes
// inside objects of the standard library) is listed in the README.
package wsgitest

import (
	"bytes"
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gowsgi/wsgi"
)

// supportSource is wsgitest's Python module, supportModule its name: the
// validator of strict mode and the logging handler (see the package
// documentation). [New] writes it to a temporary directory of the test and
// puts that directory on sys.path, after the app's own.
//
//go:embed gowsgi_wsgitest.py
var supportSource []byte

const supportModule = "gowsgi_wsgitest"

// An Option configures [New].
type Option func(*config)

type config struct {
	handler []wsgi.Option
	strict  bool
	cookies bool
	skip    []string
}

// With passes opts to [wsgi.NewHandler]: the app's extra paths,
// variables, middleware, threads and so on. They come after wsgitest's
// own middleware (the logging layer and the validator of strict mode),
// which stays outermost, and before wsgitest's logger and the app given
// to [New], which override a [wsgi.WithLogger] or [wsgi.WithApp] among
// them. Repeatable.
func With(opts ...wsgi.Option) Option {
	return func(c *config) {
		c.handler = append(c.handler, opts...)
	}
}

// WithStrict turns strict mode on or off. In strict mode, the default,
// the app is wrapped in wsgiref.validate's validator (with read to the end
// allowed, see the package documentation), outside any middleware given
// with [wsgi.WithMiddleware], so it checks what they and the app send; a
// violation fails the test, even after [App.ExpectErrors]. Turn it off for
// an app that breaks PEP 3333 knowingly: errors the handler itself refuses
// (a str body, a bad status) still fail the test then, as application
// errors, and so do the records the app logs.
func WithStrict(on bool) Option {
	return func(c *config) {
		c.strict = on
	}
}

// WithCookies keeps cookies between requests, as a browser does: a cookie
// jar (net/http/cookiejar, without a public suffix list) takes the
// Set-Cookie headers of every response and sends them back with later
// requests, in process and through the client of [App.Server]. Cookies
// belong to a host: in-process requests go to http://example.com unless
// they name another, and the server's client to the server's address.
// Without this option, requests carry only the cookies they are given.
func WithCookies() Option {
	return func(c *config) {
		c.cookies = true
	}
}

// SkipIfMissing makes [New] skip the test, instead of failing it, when the
// app does not load because one of modules is not importable (Python's
// "No module named 'flask'"), so that a test of a Flask app skips on a
// Python without Flask. Only the names given count: another missing
// module still fails the test, and so does a missing submodule of a named
// one ("No module named 'flask.ext'").
func SkipIfMissing(modules ...string) Option {
	return func(c *config) {
		c.skip = append(c.skip, modules...)
	}
}

// ErrAborted is the error reading a response body gives after the body
// that was written, when the response was aborted: a real client would
// see the connection cut.
var ErrAborted = errors.New("wsgitest: the response was aborted")

// An App is a WSGI application loaded for one test. Its methods may be
// called from several goroutines at once; those that fail the test with
// Fatalf ([New], and requests that cannot be built) belong on the test's
// goroutine, as t.Fatalf does.
type App struct {
	t    testing.TB
	spec string
	name string // the test's name, for reports after it ended
	h    *wsgi.Handler
	jar  http.CookieJar // nil without WithCookies

	mu       sync.Mutex
	inflight map[*exchange]struct{}
	expect   bool
	errs     []Error
	srv      *httptest.Server
	done     bool // the test and its cleanups have ended
}

// New loads app, a [wsgi.WithApp] spec such as "myapp:application" or
// "testdata/app.py", in a handler of its own and returns it; the handler
// is closed when the test ends. If the app does not load, New fails the
// test with the error and the Python traceback (or skips it, see
// [SkipIfMissing]).
//
// The working directory at the call is put on sys.path, after the
// directories of any [wsgi.WithPythonPath] given through [With]. The
// handler's logs go to the test: what fails it is described in the
// package documentation, and the rest is logged with t.Logf.
func New(t testing.TB, app string, opts ...Option) *App {
	t.Helper()
	c := config{strict: true}
	for _, o := range opts {
		o(&c)
	}
	a := &App{t: t, spec: app, name: t.Name(), inflight: map[*exchange]struct{}{}}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("wsgitest: the working directory, to put on sys.path: %v", err)
	}
	// Registered first, so it runs last, once the handler is closed.
	t.Cleanup(func() {
		a.mu.Lock()
		a.done = true
		a.mu.Unlock()
	})
	// Removed when the test ends, after the handler is closed.
	support := t.TempDir()
	if err := os.WriteFile(filepath.Join(support, supportModule+".py"), supportSource, 0o644); err != nil {
		t.Fatalf("wsgitest: writing its Python module: %v", err)
	}
	// The first middleware given is the outermost. The logging layer hands
	// the environ, start_response and the response on as they are (it
	// only remembers the request while the app runs), so the validator
	// checks what the gateway gets.
	hopts := []wsgi.Option{wsgi.WithMiddleware(supportModule, "capture_logging")}
	if c.strict {
		hopts = append(hopts, wsgi.WithMiddleware(supportModule, "validator"))
	}
	hopts = append(hopts, c.handler...)
	hopts = append(hopts,
		wsgi.WithPythonPath(wd, support),
		wsgi.WithLogger(slog.New(&logHandler{app: a})),
		wsgi.WithApp(app),
	)
	h, err := wsgi.NewHandler(hopts...)
	if err != nil {
		a.loadFailed(err, c.skip, wd)
		return a // for a testing.TB whose Fatalf returns
	}
	a.h = h
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("wsgitest: closing the handler of %s: %v", app, err)
		}
	})
	if c.cookies {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatalf("wsgitest: a cookie jar: %v", err)
		}
		a.jar = jar
	}
	return a
}

// loadFailed fails or skips the test for the error NewHandler returned.
func (a *App) loadFailed(err error, skip []string, wd string) {
	a.t.Helper()
	var pe *wsgi.PythonError
	if !errors.As(err, &pe) {
		a.t.Fatalf("wsgitest: the app did not load: %v", err)
	}
	if pe.Type == "ModuleNotFoundError" || pe.Type == "ImportError" {
		for _, m := range skip {
			if pe.Message == fmt.Sprintf("No module named '%s'", m) {
				a.t.Skipf("wsgitest: %s needs %s, which is not importable on Python %s: %s",
					a.spec, m, wsgi.PythonVersion(), pe.Message)
			}
		}
	}
	where := ""
	if pe.Type == "ModuleNotFoundError" {
		where = fmt.Sprintf("\n(wsgitest put the working directory, %s, on sys.path, after any wsgi.WithPythonPath directories)", wd)
	}
	a.t.Fatalf("wsgitest: the app did not load: %v\n%s%s", err, indent(pe.Traceback), where)
}

// Handler returns the app's [wsgi.Handler], for what App does not offer,
// such as its Stats or Reload. Serve requests through the App rather than
// through the handler: an App is itself an http.Handler that checks them.
func (a *App) Handler() *wsgi.Handler { return a.h }

// ExpectErrors tells the App that the test provokes errors: from now on,
// exceptions, aborted responses, wsgi.errors lines and logged errors are
// logged with t.Logf and kept for [App.Errors] instead of failing the test. It does
// not fail a test in which none come. PEP 3333 violations (see
// [WithStrict]) and panics of Go code on the request path still fail it.
func (a *App) ExpectErrors() {
	a.mu.Lock()
	a.expect = true
	a.mu.Unlock()
}

// Errors returns the errors the app reported so far, expected or not, in
// the order they were reported.
func (a *App) Errors() []Error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.errs)
}

// Get sends a GET request for target, a path such as "/items?page=2" or a
// whole URL, and returns the response. See [App.Do].
func (a *App) Get(target string) *http.Response {
	a.t.Helper()
	return a.Do(a.newRequest(http.MethodGet, target, nil))
}

// Post sends a POST request for target with the given body and
// Content-Type, and returns the response. See [App.Do].
func (a *App) Post(target, contentType string, body io.Reader) *http.Response {
	a.t.Helper()
	req := a.newRequest(http.MethodPost, target, body)
	req.Header.Set("Content-Type", contentType)
	return a.Do(req)
}

// PostForm sends data URL-encoded in a POST request for target, as an HTML
// form does, and returns the response. See [App.Do].
func (a *App) PostForm(target string, data url.Values) *http.Response {
	a.t.Helper()
	return a.Post(target, "application/x-www-form-urlencoded", strings.NewReader(data.Encode()))
}

func (a *App) newRequest(method, target string, body io.Reader) *http.Request {
	a.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = "http://example.com" + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		a.t.Fatalf("wsgitest: %s %s: %v", method, target, err)
	}
	return req
}

// Do serves req in process: the handler's ServeHTTP writes into a recorder
// and Do returns the recorded response, whose body is read as usual.
// req may be built for a client (http.NewRequest, with a whole URL) or for
// a server (httptest.NewRequest); a request without a host goes to
// example.com, and an https URL gives the app wsgi.url_scheme "https".
// Redirects are returned, not followed. With [WithCookies], the jar's
// cookies are added to req and the response's cookies kept.
//
// The app's errors during the request fail the test (see the package
// documentation). When the response is aborted (the handler cut it after
// its headers went out, its body is shorter than its Content-Length, or Go
// code on the request path panicked), reading the body gives what was
// written, then [ErrAborted].
func (a *App) Do(req *http.Request) *http.Response {
	a.t.Helper()
	clientURL := *req.URL
	if clientURL.Host == "" {
		clientURL.Host = req.Host
		if clientURL.Host == "" {
			clientURL.Host = "example.com"
		}
	}
	if clientURL.Scheme == "" {
		clientURL.Scheme = "http"
	}
	r := req.Clone(req.Context())
	if a.jar != nil {
		for _, c := range a.jar.Cookies(&clientURL) {
			r.AddCookie(c)
		}
	}
	// What a server would have made of the request.
	r.URL = &url.URL{Path: clientURL.Path, RawPath: clientURL.RawPath, RawQuery: clientURL.RawQuery}
	if r.Host == "" {
		r.Host = clientURL.Host
	}
	if r.RequestURI == "" {
		r.RequestURI = clientURL.RequestURI()
	}
	if r.RemoteAddr == "" {
		r.RemoteAddr = "192.0.2.1:1234"
	}
	if clientURL.Scheme == "https" && r.TLS == nil {
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true, ServerName: r.Host}
	}
	if r.Proto == "" {
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	if r.Body != http.NoBody && r.ContentLength == 0 {
		r.ContentLength = -1 // a client's zero with a body: the length is unknown
	}
	switch {
	case r.ContentLength < 0:
		r.TransferEncoding = []string{"chunked"}
		r.Header.Del("Content-Length")
	case r.Header.Get("Content-Length") == "" && (r.ContentLength > 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch):
		r.Header.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}

	rec := httptest.NewRecorder()
	aborted := a.serve(rec, r, func() string {
		// A real server would close the connection after a body shorter
		// than its Content-Length, and a real client would see it cut.
		n, err := strconv.ParseInt(rec.Header().Get("Content-Length"), 10, 64)
		if err != nil || r.Method == http.MethodHead || rec.Code == http.StatusNoContent || rec.Code == http.StatusNotModified || int64(rec.Body.Len()) >= n {
			return ""
		}
		return fmt.Sprintf("the body was %d bytes, short of its Content-Length %d", rec.Body.Len(), n)
	})
	resp := rec.Result()
	resp.Request = req
	if aborted {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(rec.Body.Bytes()), errReader{ErrAborted}))
	}
	if a.jar != nil {
		a.jar.SetCookies(&clientURL, resp.Cookies())
	}
	return resp
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Server returns an HTTP server for the app, started by the first call and
// closed when the test ends, for a test that needs a real client: its
// Client() (which has the cookie jar with [WithCookies]), a browser
// driver, a program under test. The app's errors in the requests it serves
// fail the test as those of [App.Do] do, and an aborted response cuts the
// client's connection.
func (a *App) Server() *httptest.Server {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		a.srv = httptest.NewServer(a)
		if a.jar != nil {
			a.srv.Client().Jar = a.jar
		}
		a.t.Cleanup(a.srv.Close) // before the handler's Close, which was registered earlier
	}
	return a.srv
}

// ServeHTTP serves a request of a server of the test's own, such as an
// httptest.Server with the app mounted under http.StripPrefix, and checks
// it as [App.Do] does. When the response is aborted, it panics with
// http.ErrAbortHandler after reporting it, so that net/http cuts the
// connection.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.serve(w, r, nil) {
		panic(http.ErrAbortHandler)
	}
}

// serve runs one request through the handler and reports the app's errors
// during it. It reports whether the response was aborted: by the handler,
// by a panic other than http.ErrAbortHandler (which fails the test too), or
// because cut, if given, says why the response it recorded is not whole.
func (a *App) serve(w http.ResponseWriter, r *http.Request, cut func() string) (aborted bool) {
	a.t.Helper()
	ex := &exchange{request: r.Method + " " + r.RequestURI}
	a.mu.Lock()
	a.inflight[ex] = struct{}{}
	a.mu.Unlock()
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
	func() {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			aborted = true
			if p != http.ErrAbortHandler {
				ex.panicked = fmt.Sprintf("%v\n%s", p, debug.Stack())
			}
		}()
		a.h.ServeHTTP(w, r)
		if cut != nil {
			ex.cut = cut()
			aborted = ex.cut != ""
		}
	}()
	a.finish(ex, aborted)
	return aborted
}

type exchangeKey struct{}

// An exchange is one request on its way through the handler, and what the
// app reported during it.
type exchange struct {
	request  string // "GET /path?query"
	errs     []Error
	logged   []string // wsgi.errors lines
	panicked string   // a panic of the handler other than an abort, with its stack
	cut      string   // why a response that ended normally is not whole
}

// finish reports what went wrong during ex.
func (a *App) finish(ex *exchange, aborted bool) {
	a.t.Helper()
	a.mu.Lock()
	delete(a.inflight, ex)
	errs := ex.errs
	if len(ex.logged) > 0 {
		e := Error{Request: ex.request, Kind: Logged, Text: strings.Join(ex.logged, "\n")}
		// A framework that catches the validator's AssertionError logs it.
		if text, ok := validatorFailure(e.Text, ""); ok {
			e = Error{Request: ex.request, Kind: Violation, Text: text, Traceback: e.Text}
		}
		errs = append(errs, e)
	}
	switch {
	case ex.panicked != "":
		errs = append(errs, Error{Request: ex.request, Kind: Aborted, Text: "Go code on the request path panicked: " + ex.panicked, Aborted: true, always: true})
	case aborted:
		told := false
		for i := range errs {
			if errs[i].Kind == Exception || errs[i].Kind == Violation {
				errs[i].Aborted, told = true, true
			}
		}
		if !told {
			text := ex.cut
			if text == "" {
				text = "the handler aborted it after its headers were sent, giving no reason"
			}
			errs = append(errs, Error{Request: ex.request, Kind: Aborted, Text: text, Aborted: true})
		}
	}
	a.mu.Unlock()
	for _, e := range errs {
		a.report(e)
	}
}

// report records e and fails the test for it, unless the test expects
// errors and e is not a violation.
func (a *App) report(e Error) {
	a.t.Helper()
	a.mu.Lock()
	a.errs = append(a.errs, e)
	expect, done := a.expect, a.done
	a.mu.Unlock()
	switch {
	case done:
		fmt.Fprintf(os.Stderr, "wsgitest: after %s ended: %s\n", a.name, e)
	case e.Kind == Violation || e.always:
		a.t.Errorf("wsgitest: %s", e)
	case expect:
		a.t.Logf("wsgitest: expected: %s", e)
	default:
		a.t.Errorf("wsgitest: %s\n(call app.ExpectErrors() in a test that provokes errors)", e)
	}
}

// logf logs a handler record that is not an error of the app.
func (a *App) logf(format string, args ...any) {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	if !done {
		a.t.Logf(format, args...)
	}
}
