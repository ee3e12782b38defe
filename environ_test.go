package wsgi_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// environ is what testdata/app.py's /environ reports.
type environ map[string]any

func getEnviron(t *testing.T, srv *httptest.Server, path string, hdr ...string) environ {
	t.Helper()
	r := do(t, srv, http.MethodGet, path, nil, hdr...)
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status, r.body)
	var env environ
	require.NoError(t, json.Unmarshal([]byte(r.body), &env))
	require.Empty(t, env["not_latin1"], "every str value must encode as Latin-1")
	return env
}

func (e environ) types() map[string]any { return e["types"].(map[string]any) }

// codepoints returns the code points the app saw in PATH_INFO or
// SCRIPT_NAME.
func (e environ) codepoints(key string) []int {
	out := []int{}
	for _, v := range e["raw:"+key].([]any) {
		out = append(out, int(v.(float64)))
	}
	return out
}

func TestEnvironCGIKeys(t *testing.T) {
	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, _ := newHandler(t, callable)
			srv := serve(t, h)
			env := getEnviron(t, srv, "/environ?a=1&b=%20x", "User-Agent", "gowsgi-test")

			assert.Equal(t, "GET", env["REQUEST_METHOD"])
			assert.Equal(t, "", env["SCRIPT_NAME"])
			assert.Equal(t, "/environ", env["PATH_INFO"])
			assert.Equal(t, "a=1&b=%20x", env["QUERY_STRING"], "QUERY_STRING stays raw")
			assert.Equal(t, "/environ?a=1&b=%20x", env["REQUEST_URI"])
			assert.Equal(t, "HTTP/1.1", env["SERVER_PROTOCOL"])
			assert.Equal(t, "127.0.0.1", env["SERVER_NAME"])
			assert.Equal(t, strings.TrimPrefix(srv.URL, "http://127.0.0.1:"), env["SERVER_PORT"])
			assert.Equal(t, "127.0.0.1", env["REMOTE_ADDR"])
			assert.NotEmpty(t, env["REMOTE_PORT"])
			assert.Equal(t, strings.TrimPrefix(srv.URL, "http://"), env["HTTP_HOST"])
			assert.Equal(t, "gowsgi-test", env["HTTP_USER_AGENT"])
			assert.NotContains(t, env, "CONTENT_LENGTH", "a GET without a body has no CONTENT_LENGTH")

			assert.Equal(t, []any{1.0, 0.0}, env["wsgi.version"])
			assert.Equal(t, "http", env["wsgi.url_scheme"])
			assert.Equal(t, true, env["wsgi.multithread"])
			assert.Equal(t, false, env["wsgi.multiprocess"])
			assert.Equal(t, false, env["wsgi.run_once"])
			assert.Equal(t, true, env["wsgi.input_terminated"])

			types := env.types()
			assert.Equal(t, "tuple", types["wsgi.version"])
			for k, v := range types {
				if strings.ToUpper(k) == k {
					assert.Equal(t, "str", v, "CGI and HTTP_ values are native strings: %s", k)
				}
			}
		})
	}
}

func TestEnvironHeaders(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	env := getEnviron(t, srv, "/environ",
		"X-Multi", "one", "X-Multi", "two",
		"Cookie", "a=1", "Cookie", "b=2",
		"X_Forwarded_For", "6.6.6.6",
		"Authorization", "Basic c2VjcmV0",
		"Proxy", "http://evil.example",
	)
	assert.Equal(t, "one,two", env["HTTP_X_MULTI"], "repeated headers are joined with a comma")
	assert.Equal(t, "a=1; b=2", env["HTTP_COOKIE"], "Cookie lines are joined with a semicolon")
	assert.NotContains(t, env, "HTTP_X_FORWARDED_FOR", "a name with _ must not pose as one with -")
	assert.NotContains(t, env, "HTTP_AUTHORIZATION", "Authorization is not passed by default")
	assert.NotContains(t, env, "HTTP_PROXY", "httpoxy: Proxy is never passed")
}

func TestEnvironContentKeys(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := serve(t, h)
	r := do(t, srv, http.MethodPost, "/environ", strings.NewReader("hello"), "Content-Type", "text/x-test")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var env environ
	require.NoError(t, json.Unmarshal([]byte(r.body), &env))
	assert.Equal(t, "5", env["CONTENT_LENGTH"])
	assert.Equal(t, "text/x-test", env["CONTENT_TYPE"])
	assert.NotContains(t, env, "HTTP_CONTENT_LENGTH")
	assert.NotContains(t, env, "HTTP_CONTENT_TYPE")
}

func TestEnvironPathInfoLatin1(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	// The 404 route reports the PATH_INFO it did not know.
	r := get(t, srv, "/caf%C3%A9%20x")
	require.Equal(t, http.StatusNotFound, r.status)
	// The 404 body is repr(PATH_INFO): the two UTF-8 bytes arrive as two
	// Latin-1 characters, per PEP 3333.
	assert.Contains(t, r.body, "'/caf\u00c3\u00a9 x'")
}

func TestEnvironScriptName(t *testing.T) {
	for _, callable := range callables {
		t.Run(callable, func(t *testing.T) {
			h, _ := newHandler(t, callable)
			mux := http.NewServeMux()
			mux.Handle("/blog/", http.StripPrefix("/blog", h))
			mux.Handle("/shop/", http.StripPrefix("/shop/", h))
			srv := serve(t, mux)

			env := getEnviron(t, srv, "/blog/environ?x=1")
			assert.Equal(t, "/blog", env["SCRIPT_NAME"])
			assert.Equal(t, "/environ", env["PATH_INFO"])

			env = getEnviron(t, srv, "/shop/environ")
			assert.Equal(t, "/shop", env["SCRIPT_NAME"], "a trailing slash moves to PATH_INFO")
			assert.Equal(t, "/environ", env["PATH_INFO"])

			env = getEnviron(t, srv, "/blog/%65nviron")
			assert.Equal(t, "/blog", env["SCRIPT_NAME"], "escapes in the path do not hide the mount")
			assert.Equal(t, "/environ", env["PATH_INFO"])
		})
	}
}

func TestWithScriptName(t *testing.T) {
	h, _ := newHandler(t, "validated", wsgi.WithScriptName("/app"))
	srv := serve(t, h)
	env := getEnviron(t, srv, "/app/environ")
	assert.Equal(t, "/app", env["SCRIPT_NAME"])
	assert.Equal(t, "/environ", env["PATH_INFO"])

	_, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithScriptName("app/"))
	require.ErrorContains(t, err, "WithScriptName")
}

func TestEnvironHTTPS(t *testing.T) {
	h, _ := newHandler(t, "validated")
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	srv.Client().Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	env := getEnviron(t, srv, "/environ")
	assert.Equal(t, "https", env["wsgi.url_scheme"])
}

func TestEnvironRecorder(t *testing.T) {
	// Through httptest.NewRecorder: no connection, no local address.
	h, _ := newHandler(t, "validated")
	req := httptest.NewRequest(http.MethodGet, "/environ", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var env environ
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &env))
	assert.Equal(t, "example.com", env["SERVER_NAME"])
	assert.Equal(t, "80", env["SERVER_PORT"])
	assert.Equal(t, "192.0.2.1", env["REMOTE_ADDR"])
	assert.Equal(t, "1234", env["REMOTE_PORT"])
	assert.Equal(t, []int{'/', 'e', 'n', 'v', 'i', 'r', 'o', 'n'}, env.codepoints("PATH_INFO"))
}
