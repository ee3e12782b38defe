package wsgi_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

func TestWithMiddleware(t *testing.T) {
	mw := testdata(t, "middleware")
	h, _ := newHandler(t, "application", wsgi.WithPythonPath(mw),
		wsgi.WithMiddleware("order_mw", "first"),
		wsgi.WithMiddleware("order_mw", "second"),
		wsgi.WithMiddleware("order_mw", ""))
	srv := serve(t, h)
	r := get(t, srv, "/environ")
	require.Equal(t, 200, r.status, r.body)
	assert.Contains(t, r.body, `"HTTP_X_ORDER": "first,second,default"`,
		"the first middleware given sees the request first")
	assert.Equal(t, "default,second,first", r.header.Get("X-Response-Order"),
		"and the response last")

	for _, c := range []struct{ module, callable, want string }{
		{"no_such_mw_module", "", "ModuleNotFoundError"},
		{"order_mw", "missing", "AttributeError"},
		{"order_mw", "not_callable", "not callable"},
	} {
		_, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithPythonPath(mw),
			wsgi.WithMiddleware(c.module, c.callable))
		require.ErrorContains(t, err, c.want)
	}
	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithMiddleware("", ""))
	require.ErrorContains(t, err, "WithMiddleware")
}

func TestWithVar(t *testing.T) {
	h, _ := newHandler(t, "validated",
		wsgi.WithVar("X_ALL", "$request_method $request_uri $uri $args $scheme $host|$remote_addr|$server_addr:$server_port|$$|${arg_q}x|$cookie_sess|$http_x_thing"),
		wsgi.WithVar("HTTP_COOKIE", "$http_cookie"),
		wsgi.WithVar("PLAIN", "just text"),
		wsgi.WithVarFunc("X_FUNC", func(r *http.Request) string { return "func:" + r.URL.Path }),
		wsgi.WithVar("PLAIN", "later wins"),
	)
	srv := serve(t, h)
	port := srv.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	env := getEnviron(t, srv, "/environ?q=1%202&z=3",
		"Cookie", "sess=abc", "Cookie", "other=1",
		"X-Thing", "t1", "X-Thing", "t2")
	assert.Equal(t, "GET /environ?q=1%202&z=3 /environ q=1%202&z=3 http 127.0.0.1|127.0.0.1|127.0.0.1:"+port+"|$|1%202x|abc|t1,t2", env["X_ALL"])
	assert.Equal(t, "sess=abc; other=1", env["HTTP_COOKIE"])
	assert.Equal(t, "later wins", env["PLAIN"])
	assert.Equal(t, "func:/environ", env["X_FUNC"])

	for _, bad := range []string{"$nope", "${unclosed", "$", "a $http_ b", "$cookie_"} {
		_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithVar("X", bad))
		require.ErrorContains(t, err, "WithVar(", bad)
	}
	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithVar("wsgi.input", "x"))
	require.ErrorContains(t, err, "gateway owns")
}

func TestWithPassAuthorization(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, _ := newHandler(t, "validated", wsgi.WithPassAuthorization(on))
		srv := serve(t, h)
		env := getEnviron(t, srv, "/environ", "Authorization", "Basic dXNlcjpwdw==")
		if on {
			assert.Equal(t, "Basic dXNlcjpwdw==", env["HTTP_AUTHORIZATION"])
		} else {
			assert.NotContains(t, env, "HTTP_AUTHORIZATION")
		}
	}
}

// rangeGet sends a GET with extra headers and returns the response.
func rangeGet(t *testing.T, srv interface{ Client() *http.Client }, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "%s %v", url, hdr)
	return resp, b
}

func TestWithRanges(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f.bin")
	data := make([]byte, 100000)
	rand.Read(data)
	require.NoError(t, os.WriteFile(file, data, 0o644))

	// The same 1000-byte body three ways: a list, a file, a generator with
	// a Content-Length. stream-cl chunk i is 100 bytes of 'a'+i.
	stream := bytes.Buffer{}
	for i := range 10 {
		stream.Write(bytes.Repeat([]byte{byte('a' + i)}, 100))
	}
	bodies := map[string][]byte{
		"/list?n=10&size=100":                 bytes.Repeat(append(bytes.Repeat([]byte("x"), 99), '\n'), 10),
		"/stream-cl?n=10&size=100&key=r":      stream.Bytes(),
		"/file?path=" + url.QueryEscape(file): data,
	}
	h, _ := newHandler(t, "application", wsgi.WithRanges(true))
	srv := serve(t, h)
	for path, full := range bodies {
		size := len(full)
		resp, body := rangeGet(t, srv, srv.URL+path)
		assert.Equal(t, 200, resp.StatusCode, path)
		assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"), path)
		assert.Equal(t, full, body, path)

		resp, body = rangeGet(t, srv, srv.URL+path, "Range", "bytes=10-19")
		assert.Equal(t, 206, resp.StatusCode, path)
		assert.Equal(t, fmt.Sprintf("bytes 10-19/%d", size), resp.Header.Get("Content-Range"), path)
		assert.Equal(t, full[10:20], body, path)

		resp, body = rangeGet(t, srv, srv.URL+path, "Range", "bytes=-5")
		assert.Equal(t, 206, resp.StatusCode, path)
		assert.Equal(t, full[size-5:], body, path)

		resp, body = rangeGet(t, srv, srv.URL+path, "Range", "bytes=0-1,500-503")
		assert.Equal(t, 206, resp.StatusCode, path)
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		require.NoError(t, err)
		assert.Equal(t, "multipart/byteranges", mt)
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var parts [][]byte
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			b, _ := io.ReadAll(p)
			parts = append(parts, b)
		}
		assert.Equal(t, [][]byte{full[0:2], full[500:504]}, parts, path)

		resp, _ = rangeGet(t, srv, srv.URL+path, "Range", fmt.Sprintf("bytes=%d-", size+10))
		assert.Equal(t, 416, resp.StatusCode, path)
		assert.Equal(t, fmt.Sprintf("bytes */%d", size), resp.Header.Get("Content-Range"), path)
	}

	// A generator stops once the range is sent, and close() still runs
	// (the validator would complain). It runs ahead of the client by what
	// two batches of 64 KiB hold, and one chunk waiting for room: at most
	// 33 of 200 steps of 4 KiB for bytes 4096-8191.
	rangeGet(t, srv, srv.URL+"/stream-cl?n=200&size=4096&key=early", "Range", "bytes=4096-8191")
	var steps map[string]int
	getJSON(t, srv, "/steps", &steps)
	assert.LessOrEqual(t, steps["early"], 33, "iteration stops after the last range")
	assert.GreaterOrEqual(t, steps["early"], 2)

	// If-Range: the range only applies while the ETag matches.
	p := "/stream-cl?n=10&size=100&etag=%22v1%22"
	resp, body := rangeGet(t, srv, srv.URL+p, "Range", "bytes=0-9", "If-Range", `"v1"`)
	assert.Equal(t, 206, resp.StatusCode)
	assert.Len(t, body, 10)
	resp, body = rangeGet(t, srv, srv.URL+p, "Range", "bytes=0-9", "If-Range", `"v2"`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Len(t, body, 1000)

	// No ranges without the option, and none for unknown lengths.
	off, _ := newHandler(t, "application")
	offSrv := serve(t, off)
	resp, body = rangeGet(t, offSrv, offSrv.URL+"/list?n=10&size=100", "Range", "bytes=0-9")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Accept-Ranges"))
	assert.Len(t, body, 1000)
	resp, body = rangeGet(t, srv, srv.URL+"/stream?n=3&size=10", "Range", "bytes=0-4")
	assert.Equal(t, 200, resp.StatusCode, "a body of unknown length goes out whole")
	assert.Len(t, body, 30)
}

// writeApp writes a script to a temp dir and returns its path.
func writeApp(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	// A later rewrite must change the stamp even within the same second.
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(path, old, old))
	return path
}

// rewrite replaces a script's code with a stamp unlike any before: file
// times are coarse, and two writes in a row may share one.
func rewrite(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	stamp := time.Now().Add(time.Duration(rewrites.Add(1)) * time.Second)
	require.NoError(t, os.Chtimes(path, stamp, stamp))
}

var rewrites atomic.Int64

func appReturning(s string) string {
	return fmt.Sprintf(`
COUNT = [0]
def application(environ, start_response):
    COUNT[0] += 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s %%d" %% COUNT[0]]
`, s)
}

func TestScriptReloading(t *testing.T) {
	for _, mech := range []wsgi.ReloadMechanism{wsgi.ReloadModule, wsgi.ReloadInterpreter} {
		t.Run(mech.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := writeApp(t, dir, "app.py", appReturning("v1"))
			sink := &logSink{}
			h, err := wsgi.NewHandler(wsgi.WithApp(path), wsgi.WithScriptReloading(true),
				wsgi.WithReloadMechanism(mech), wsgi.WithLogger(slogFor(sink)))
			require.NoError(t, err)
			defer h.Close()
			srv := serve(t, h)

			assert.Equal(t, "v1 1", get(t, srv, "/").body)
			assert.Equal(t, "v1 2", get(t, srv, "/").body)

			rewrite(t, path, appReturning("v2"))
			assert.Equal(t, "v2 1", get(t, srv, "/").body, "the changed script is loaded afresh")

			// A syntax error keeps the old app serving and is logged once.
			rewrite(t, path, "def application(:\n")
			assert.Equal(t, "v2 2", get(t, srv, "/").body)
			assert.Equal(t, "v2 3", get(t, srv, "/").body)
			failures := sink.event("reload_error")
			require.Len(t, failures, 1, "a failed version is not retried until it changes")
			assert.Contains(t, failures[0]["traceback"], "SyntaxError")

			rewrite(t, path, appReturning("v3"))
			assert.Equal(t, "v3 1", get(t, srv, "/").body, "fixed: reloaded")

			require.NoError(t, h.Reload())
			assert.Equal(t, "v3 1", get(t, srv, "/").body, "Reload loads afresh even without a change")
		})
	}

	t.Run("off", func(t *testing.T) {
		dir := t.TempDir()
		path := writeApp(t, dir, "app.py", appReturning("v1"))
		h, err := wsgi.NewHandler(wsgi.WithApp(path))
		require.NoError(t, err)
		defer h.Close()
		srv := serve(t, h)
		assert.Equal(t, "v1 1", get(t, srv, "/").body)
		rewrite(t, path, appReturning("v2"))
		assert.Equal(t, "v1 2", get(t, srv, "/").body, "no reloading by default")
	})

	t.Run("ReloadProcess", func(t *testing.T) {
		dir := t.TempDir()
		path := writeApp(t, dir, "app.py", appReturning("v1"))
		var restarts atomic.Int32
		h, err := wsgi.NewHandler(wsgi.WithApp(path), wsgi.WithScriptReloading(true),
			wsgi.WithReloadMechanism(wsgi.ReloadProcess), wsgi.WithProcessReload(func() { restarts.Add(1) }))
		require.NoError(t, err)
		defer h.Close()
		srv := serve(t, h)
		assert.Equal(t, "v1 1", get(t, srv, "/").body)
		rewrite(t, path, appReturning("v2"))
		r := get(t, srv, "/")
		assert.Equal(t, "v1 2", r.body, "the old app serves the request that noticed")
		assert.Equal(t, "0", r.header.Get("Refresh"))
		get(t, srv, "/")
		eventually(t, func() bool { return restarts.Load() == 1 }, "the restart function was not called")
		time.Sleep(20 * time.Millisecond)
		assert.Equal(t, int32(1), restarts.Load(), "and only once")

		_, err = wsgi.NewHandler(wsgi.WithApp(path), wsgi.WithReloadMechanism(wsgi.ReloadProcess))
		require.ErrorContains(t, err, "WithProcessReload")
	})
}

func TestWithOptimizeSendHeaders(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, _ := newHandler(t, "application", wsgi.WithOptimizeSendHeaders(on))
		srv := serve(t, h)
		r := do(t, srv, http.MethodHead, "/gen-empty-first?key=head", nil)
		assert.Equal(t, 200, r.status)
		r = get(t, srv, "/gen-empty-first?key=204&status=204")
		assert.Equal(t, 204, r.status)
		r = get(t, srv, "/gen-empty-first?key=get")
		assert.Equal(t, "the body", r.body, "a GET that wants its body gets it either way")
		var steps map[string]int
		getJSON(t, srv, "/steps", &steps)
		if on {
			assert.Equal(t, map[string]int{"head": 1, "204": 1, "get": 3}, steps,
				"with the option, the generator is not advanced past its b\"\"")
		} else {
			assert.Equal(t, map[string]int{"head": 3, "204": 3, "get": 3}, steps)
		}
	}
}

func TestWithOutputBuffering(t *testing.T) {
	h, _ := newHandler(t, "validated", wsgi.WithOutputBuffering(true), wsgi.WithWriteBufferSize(1000))
	srv := serve(t, h)
	for _, c := range []struct {
		path    string
		size    int
		hasCL   bool
		comment string
	}{
		{"/stream?n=9&size=100", 900, true, "below the buffer: one write with a Content-Length"},
		{"/stream?n=10&size=100", 1000, false, "at the buffer: it fills, goes out, then the end"},
		{"/stream?n=30&size=100", 3000, false, "above the buffer"},
		{"/stream-empty-first", 4, true, "empty chunks are skipped"},
	} {
		r := get(t, srv, c.path)
		require.NoError(t, r.err)
		assert.Len(t, r.body, c.size, c.comment)
		if c.hasCL {
			assert.Equal(t, fmt.Sprint(c.size), r.header.Get("Content-Length"), c.comment)
		} else {
			assert.Empty(t, r.header.Get("Content-Length"), c.comment)
		}
	}
	noUnraisable(t, srv)

	// A client that goes away: close() still runs.
	app, _ := newHandler(t, "application", wsgi.WithOutputBuffering(true), wsgi.WithWriteBufferSize(64<<10))
	appSrv := serve(t, app)
	resp, err := appSrv.Client().Get(appSrv.URL + "/close-marker-slow?buffered")
	require.NoError(t, err)
	io.ReadFull(resp.Body, make([]byte, 200<<10))
	resp.Body.Close()
	appSrv.CloseClientConnections()
	eventually(t, func() bool {
		var closed []string
		getJSON(t, appSrv, "/closed", &closed)
		return len(closed) == 1 && closed[0] == "buffered"
	}, "close() did not run after the client left")
}

func TestWithWriteBuffering(t *testing.T) {
	dir := t.TempDir()
	h, _ := newHandler(t, "application", wsgi.WithWriteBuffering(true),
		wsgi.WithWriteBufferSize(4096), wsgi.WithTempPath(dir, 1, 2))
	srv := serve(t, h)
	for _, n := range []int{1, 40, 41, 500} { // 100 bytes a write: below, at and above 4 KiB
		r := get(t, srv, fmt.Sprintf("/write-only?n=%d", n))
		require.NoError(t, r.err)
		assert.Equal(t, strings.Repeat("w", 100*n), r.body)
		assert.Equal(t, fmt.Sprint(100*n), r.header.Get("Content-Length"), "headers go out when the app returns, with the length")
	}
	for n, files := range map[int]string{10: "files=0", 100: "files=1"} {
		r := get(t, srv, fmt.Sprintf("/write-spill?n=%d&want=%s&dir=%s", n, strings.TrimPrefix(files, "files="), url.QueryEscape(dir)))
		assert.True(t, strings.HasSuffix(r.body, files), "%d writes: %s", n, r.body[len(r.body)-8:])
	}
	r := get(t, srv, "/write")
	assert.Equal(t, "via write; via iterable", r.body)
	assert.Equal(t, "23", r.header.Get("Content-Length"))

	r = get(t, srv, "/write-then-raise")
	assert.Equal(t, 500, r.status, "nothing went out before the error, so it is a clean 500")

	// Once the headers are out there is nothing to send with them: a
	// write() then goes out in its place among the chunks.
	r = get(t, srv, "/write-mid-stream")
	assert.Equal(t, "yielded, written, yielded", r.body)

	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	assert.Empty(t, files, "temp files are removed after every response")

	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithTempPath("/proc/no/such/dir"))
	require.ErrorContains(t, err, "WithTempPath")
	_, err = wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithTempPath(dir, 3))
	require.ErrorContains(t, err, "1 or 2")
	_, err = wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithWriteBufferSize(0))
	require.ErrorContains(t, err, "WithWriteBufferSize")
}

func TestWithMaxRequestBody(t *testing.T) {
	h, sink := newHandler(t, "application", wsgi.WithMaxRequestBody(100))
	srv := serve(t, h)
	r := do(t, srv, http.MethodPost, "/echo", strings.NewReader(strings.Repeat("a", 100)))
	assert.Equal(t, 200, r.status, "at the limit")
	assert.Len(t, r.body, 100)

	r = do(t, srv, http.MethodPost, "/echo", strings.NewReader(strings.Repeat("a", 101)))
	assert.Equal(t, 413, r.status, "a Content-Length over the limit")

	r = do(t, srv, http.MethodPost, "/echo", chunked{strings.NewReader(strings.Repeat("a", 5000))})
	assert.Equal(t, 413, r.status, "a chunked body that passes the limit")
	assert.NotEmpty(t, sink.event("body_too_large"))
	assert.Empty(t, sink.event("app_error", false), "not logged as an app error")

	_, err := wsgi.NewHandler(wsgi.WithApp("x"), wsgi.WithMaxRequestBody(-1))
	require.ErrorContains(t, err, "WithMaxRequestBody")
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWithAccessLog(t *testing.T) {
	var log syncBuffer
	h, sink := newHandler(t, "application", wsgi.WithAccessLog(&log))
	srv := serve(t, h)
	do(t, srv, http.MethodGet, "/hello?x=1", nil, "Referer", "http://ref.example/", "User-Agent", "agent/1")
	do(t, srv, http.MethodGet, "/raise", nil)
	get(t, srv, "/raise-after-start")
	eventually(t, func() bool { return strings.Count(log.String(), "\n") == 3 }, "three lines")
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	assert.Regexp(t, `^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /hello\?x=1 HTTP/1\.1" 200 13 "http://ref\.example/" "agent/1" \d+-\d+$`, lines[0])
	assert.Contains(t, lines[1], `"GET /raise HTTP/1.1" 500 26`)
	// The line ends with the request's id, as the error's log record has it.
	recs := sink.event("app_error", false)
	require.NotEmpty(t, recs)
	assert.Equal(t, "/raise", recs[0]["path"])
	assert.True(t, strings.HasSuffix(lines[1], " "+recs[0]["request_id"]), "%s vs %v", lines[1], recs[0]["request_id"])
	assert.Contains(t, lines[2], `"GET /raise-after-start HTTP/1.1" 200`, "an aborted response is logged too")
}

func TestWithMultiprocess(t *testing.T) {
	for _, on := range []bool{false, true} {
		h, _ := newHandler(t, "application", wsgi.WithMultiprocess(on))
		var env environ
		getJSON(t, serve(t, h), "/environ", &env)
		assert.Equal(t, on, env["wsgi.multiprocess"])
	}
}
