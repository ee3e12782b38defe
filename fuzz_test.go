package wsgi_test

import (
	"bufio"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// fuzzHandlers are made once per process: a fuzz run calls the target
// millions of times.
var fuzzHandlers = sync.OnceValues(func() (map[string]*wsgi.Handler, error) {
	out := map[string]*wsgi.Handler{}
	for _, name := range []string{"environ_app", "response_app"} {
		h, err := wsgi.NewHandler(wsgi.WithApp("fuzzapp:"+name), wsgi.WithPythonPath("testdata"),
			wsgi.WithLogger(slog.New(slog.DiscardHandler)), wsgi.WithPassAuthorization(true))
		if err != nil {
			return nil, err
		}
		out[name] = h
	}
	return out, nil
})

func fuzzHandler(t *testing.T, name string) *wsgi.Handler {
	hs, err := fuzzHandlers()
	require.NoError(t, err)
	return hs[name]
}

// FuzzEnviron sends any request Go's HTTP parser accepts (any method,
// target, header name and value) and checks that the environ passes
// wsgiref.validate and carries the path and query exactly.
func FuzzEnviron(f *testing.F) {
	f.Add("GET", "/", "Accept", "*/*")
	f.Add("POST", "/a%20b/c?x=1&y=%ff", "Content-Type", "text/plain")
	f.Add("OPTIONS", "*", "X-A", "b")
	f.Add("GET", "http://example.com/abs?q", "Cookie", "a=1; b=2")
	f.Add("PATCH", "/caf%C3%A9/%2F?%00", "X_Underscore", "v")
	f.Add("M-SEARCH", "//double//slash", "Authorization", "Basic x")
	f.Add("GET", "/%80%ff", "X-High", "\xe9\xff")
	f.Fuzz(func(t *testing.T, method, target, name, value string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: example.com\r\n" + name + ": " + value + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server would refuse it before any handler ran
		}
		req.RemoteAddr = "192.0.2.7:4242"
		rec := httptest.NewRecorder()
		fuzzHandler(t, "environ_app").ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%q: status %d: the environ broke PEP 3333", raw, rec.Code)
		}
		want := req.URL.Path
		if want == "*" {
			want = ""
		}
		want += "\n" + req.URL.RawQuery
		if got := rec.Body.String(); got != want {
			t.Fatalf("%q: the app saw %q, want %q", raw, got, want)
		}
	})
}

// FuzzResponse has the app pass any status and header to start_response
// and checks that no CR, LF or NUL ever reaches the response headers and
// that a refused status or header becomes a clean 500.
func FuzzResponse(f *testing.F) {
	f.Add("200 OK", "X-Test", "value")
	f.Add("200 OK", "X-Evil", "a\r\nSet-Cookie: x=1")
	f.Add("200 OK\r\nX: y", "X-Test", "v")
	f.Add("999 Max", "Bad Name", "v")
	f.Add("099 Low", "X", "\x00")
	f.Add("200 ", "Connection", "close")
	f.Add("404 \xe9t\xe9", "X-Latin", "caf\xe9")
	f.Fuzz(func(t *testing.T, status, name, value string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header = http.Header{"X-Status": {status}, "X-Name": {name}, "X-Value": {value}}
		rec := httptest.NewRecorder()
		fuzzHandler(t, "response_app").ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 999 {
			t.Fatalf("status %d went out", rec.Code)
		}
		for k, vs := range rec.Header() {
			for _, v := range append([]string{k}, vs...) {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header %q: %q reached the response", k, v)
				}
			}
		}
		// Either the app's response went out whole, or a refused status or
		// header became the gateway's own 500.
		body := rec.Body.String()
		refused := rec.Code == http.StatusInternalServerError && body == "500 Internal Server Error\n"
		if !refused && body != "ok" {
			t.Fatalf("status %d with body %q", rec.Code, body)
		}
	})
}
