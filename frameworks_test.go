package wsgi_test

// Real frameworks through real HTTP: the examples (Flask, Django), Debian's
// httpbin, and tiny Falcon, Bottle and Pyramid apps in testdata/frameworks.
// They need the frameworks importable in the embedded Python; where they are
// not (the pyenv builds other than 3.11), the tests skip and say why. Debian's
// own Pythons, the system one and those of scripts/test-forky.sh, find
// Debian's packages in /usr/lib/python3/dist-packages by themselves; forky
// builds their C modules for 3.14 and 3.15 only, so on its 3.13 httpbin,
// which needs one, skips.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// distPackages holds Debian's python3-* packages, built for Debian's Python
// 3.11: a pyenv 3.11 shares its ABI and can import them too.
const distPackages = "/usr/lib/python3/dist-packages"

var missingModule = regexp.MustCompile(`No module named '([^'.]+)`)

// frameworkHandler loads spec with dirs on sys.path and returns the handler,
// closed when the test ends. When the app cannot import its framework, it
// retries with Debian's packages on a Python 3.11, and otherwise skips the
// test; a module missing from dirs themselves is a failure, not a skip.
func frameworkHandler(t *testing.T, spec string, dirs []string, opts ...wsgi.Option) *wsgi.Handler {
	t.Helper()
	load := func(dirs []string) (*wsgi.Handler, error) {
		all := append([]wsgi.Option{
			wsgi.WithApp(spec),
			wsgi.WithPythonPath(dirs...),
			wsgi.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))),
		}, opts...)
		return wsgi.NewHandler(all...)
	}
	h, err := load(dirs)
	if importError(err) != nil && strings.HasPrefix(wsgi.PythonVersion(), "3.11.") && !slices.Contains(dirs, distPackages) {
		h, err = load(append(slices.Clone(dirs), distPackages))
	}
	if pe := importError(err); pe != nil {
		if m := missingModule.FindStringSubmatch(pe.Message); m != nil {
			for _, d := range dirs {
				_, errPy := os.Stat(filepath.Join(d, m[1]+".py"))
				_, errPkg := os.Stat(filepath.Join(d, m[1]))
				require.False(t, errPy == nil || errPkg == nil, "%s is ours (in %s), yet it does not import:\n%s", m[1], d, pe.Traceback)
			}
		}
		t.Skipf("%s does not import on Python %s: %s: %s", spec, wsgi.PythonVersion(), pe.Type, pe.Message)
	}
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return h
}

// importError is the *wsgi.PythonError in err when it is a failed import.
func importError(err error) *wsgi.PythonError {
	var pe *wsgi.PythonError
	if errors.As(err, &pe) && (pe.Type == "ModuleNotFoundError" || pe.Type == "ImportError") {
		return pe
	}
	return nil
}

// example is the absolute path of examples/name.
func example(t *testing.T, name string) string {
	abs, err := filepath.Abs(filepath.Join("examples", name))
	require.NoError(t, err)
	return abs
}

// newClient is a client for srv with a cookie jar that follows redirects or,
// with follow false, returns them.
func newClient(t *testing.T, srv *httptest.Server, follow bool) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Transport: srv.Client().Transport, Jar: jar}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// fetch sends one request with c, expects no transport error and returns the
// response with its whole body read. hdr is name, value pairs.
func fetch(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "reading the body of %s %s", method, url)
	return resp, string(b)
}

// decode unmarshals a JSON body into a map.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), body)
	return m
}

// numberedLines is "<prefix> 0\n<prefix> 1\n..." up to n-1.
func numberedLines(prefix string, n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "%s %d\n", prefix, i)
	}
	return sb.String()
}

func TestFlask(t *testing.T) {
	dir := example(t, "flaskapp")
	srv := serve(t, frameworkHandler(t, "app:app", []string{dir}))
	c := newClient(t, srv, false)

	t.Run("hello", func(t *testing.T) {
		for range 2 {
			resp, body := fetch(t, c, "GET", srv.URL+"/", nil)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "Hello from Flask!", body)
			assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		}
		resp, _ := fetch(t, c, "GET", srv.URL+"/nowhere", nil)
		assert.Equal(t, 404, resp.StatusCode)
	})
	t.Run("json", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/json", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Equal(t, map[string]any{"framework": "flask", "items": []any{1.0, 2.0, 3.0}}, decode(t, body))

		resp, body = fetch(t, c, "POST", srv.URL+"/json", strings.NewReader(`{"name":"gopher","n":3,"tags":["a","é"]}`), "Content-Type", "application/json")
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, map[string]any{"name": "gopher", "n": 3.0, "tags": []any{"a", "é"}, "echoed": true}, decode(t, body))

		resp, _ = fetch(t, c, "POST", srv.URL+"/json", strings.NewReader(`[1]`), "Content-Type", "application/json")
		assert.Equal(t, 400, resp.StatusCode)
	})
	t.Run("redirect", func(t *testing.T) {
		resp, _ := fetch(t, c, "GET", srv.URL+"/redirect", nil)
		assert.Equal(t, 302, resp.StatusCode)
		assert.Equal(t, "/", resp.Header.Get("Location"))
	})
	t.Run("session", func(t *testing.T) {
		c := newClient(t, srv, false)
		for want := 1; want <= 3; want++ {
			resp, body := fetch(t, c, "GET", srv.URL+"/session", nil)
			require.Equal(t, 200, resp.StatusCode, body)
			assert.Equal(t, float64(want), decode(t, body)["visits"], "the signed session cookie carries the count")
			assert.Contains(t, resp.Header.Get("Set-Cookie"), "session=")
		}
		_, body := fetch(t, newClient(t, srv, false), "GET", srv.URL+"/session", nil)
		assert.Equal(t, 1.0, decode(t, body)["visits"], "another client has its own session")
	})
	t.Run("stream", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/stream?n=200", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, numberedLines("line", 200), body)
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding, "a generator's body is streamed")
	})
	t.Run("upload", func(t *testing.T) {
		data := make([]byte, 3<<20+17)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		require.NoError(t, mw.WriteField("note", "three megabytes and a bit"))
		fw, err := mw.CreateFormFile("file", "data.bin")
		require.NoError(t, err)
		_, err = fw.Write(data)
		require.NoError(t, err)
		require.NoError(t, mw.Close())

		resp, body := fetch(t, c, "POST", srv.URL+"/upload", &buf, "Content-Type", mw.FormDataContentType())
		require.Equal(t, 200, resp.StatusCode, body)
		sum := sha256.Sum256(data)
		assert.Equal(t, map[string]any{
			"filename": "data.bin",
			"size":     float64(len(data)),
			"sha256":   hex.EncodeToString(sum[:]),
			"note":     "three megabytes and a bit",
		}, decode(t, body))
	})
	t.Run("send_file", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(dir, "static.txt"))
		require.NoError(t, err)
		resp, body := fetch(t, c, "GET", srv.URL+"/file", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, string(want), body)
		assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.Equal(t, int64(len(want)), resp.ContentLength)
	})
	t.Run("still serving", func(t *testing.T) {
		_, body := fetch(t, c, "GET", srv.URL+"/", nil)
		assert.Equal(t, "Hello from Flask!", body)
	})
}

var csrfField = regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`)

// wrongToken is token with its first character replaced by another one. A
// Django form token is a mask and the masked secret, each character of the
// secret shifted by the mask's character at the same place, so a token that
// differs in one character unmasks to another secret and is refused.
func wrongToken(token string) string {
	if token == "" {
		return "x"
	}
	c := byte('x')
	if token[0] == c {
		c = 'y'
	}
	return string(c) + token[1:]
}

func TestDjango(t *testing.T) {
	dir := example(t, "djangosite")
	// Django's own spec: the module mysite.wsgi, not a script file.
	srv := serve(t, frameworkHandler(t, "mysite.wsgi:application", []string{dir}))
	base, err := url.Parse(srv.URL)
	require.NoError(t, err)

	// csrfCookie is the csrftoken cookie in c's jar, or "".
	csrfCookie := func(c *http.Client) string {
		for _, ck := range c.Jar.Cookies(base) {
			if ck.Name == "csrftoken" {
				return ck.Value
			}
		}
		return ""
	}
	form := func(name, token string) io.Reader {
		v := url.Values{"name": {name}}
		if token != "" {
			v.Set("csrfmiddlewaretoken", token)
		}
		return strings.NewReader(v.Encode())
	}
	const formType = "application/x-www-form-urlencoded"

	t.Run("hello", func(t *testing.T) {
		for range 2 {
			resp, body := fetch(t, srv.Client(), "GET", srv.URL+"/", nil)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "Hello from Django!", body)
		}
		resp, _ := fetch(t, srv.Client(), "GET", srv.URL+"/nowhere/", nil)
		assert.Equal(t, 404, resp.StatusCode)
	})
	t.Run("admin login page", func(t *testing.T) {
		c := newClient(t, srv, false)
		resp, body := fetch(t, c, "GET", srv.URL+"/admin/login/", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Contains(t, body, `name="username"`)
		assert.Contains(t, body, `name="password"`)
		assert.Regexp(t, csrfField, body)
		assert.NotEmpty(t, csrfCookie(c), "the login form sets the csrftoken cookie")

		resp, _ = fetch(t, c, "GET", srv.URL+"/admin/", nil)
		assert.Equal(t, 302, resp.StatusCode, "the admin sends strangers to its login page")
		assert.Equal(t, "/admin/login/?next=/admin/", resp.Header.Get("Location"))
	})
	t.Run("csrf", func(t *testing.T) {
		resp, body := fetch(t, srv.Client(), "POST", srv.URL+"/greet/", form("gopher", ""), "Content-Type", formType)
		assert.Equal(t, 403, resp.StatusCode, "no cookie, no token")
		assert.Contains(t, body, "CSRF")

		c := newClient(t, srv, false)
		resp, body = fetch(t, c, "GET", srv.URL+"/greet/", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		m := csrfField.FindStringSubmatch(body)
		require.NotNil(t, m, body)
		require.NotEmpty(t, csrfCookie(c))

		resp, _ = fetch(t, c, "POST", srv.URL+"/greet/", form("gopher", ""), "Content-Type", formType)
		assert.Equal(t, 403, resp.StatusCode, "the cookie alone is not enough")
		resp, _ = fetch(t, c, "POST", srv.URL+"/greet/", form("gopher", wrongToken(m[1])), "Content-Type", formType)
		assert.Equal(t, 403, resp.StatusCode, "a wrong token")

		resp, body = fetch(t, c, "POST", srv.URL+"/greet/", form("gopher", m[1]), "Content-Type", formType)
		assert.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "Hello, gopher!", body)
	})
	t.Run("streaming response", func(t *testing.T) {
		resp, body := fetch(t, srv.Client(), "GET", srv.URL+"/stream/?n=100", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, numberedLines("chunk", 100), body)
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	})
	t.Run("file response", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(dir, "mysite", "sample.txt"))
		require.NoError(t, err)
		resp, body := fetch(t, srv.Client(), "GET", srv.URL+"/file/", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, string(want), body)
		assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.Equal(t, int64(len(want)), resp.ContentLength)
	})
	t.Run("still serving", func(t *testing.T) {
		_, body := fetch(t, srv.Client(), "GET", srv.URL+"/", nil)
		assert.Equal(t, "Hello from Django!", body)
	})
}

func TestHttpbin(t *testing.T) {
	srv := serve(t, frameworkHandler(t, "httpbin:app", nil, wsgi.WithPassAuthorization(true)))
	c := newClient(t, srv, true)

	t.Run("get", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/get?a=1&b=two%20words", nil, "X-Probe", "yes")
		require.Equal(t, 200, resp.StatusCode, body)
		m := decode(t, body)
		assert.Equal(t, map[string]any{"a": "1", "b": "two words"}, m["args"])
		assert.Equal(t, "yes", m["headers"].(map[string]any)["X-Probe"])
	})
	t.Run("post", func(t *testing.T) {
		resp, body := fetch(t, c, "POST", srv.URL+"/post", strings.NewReader(`{"k":"v","n":[1,2]}`), "Content-Type", "application/json")
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, map[string]any{"k": "v", "n": []any{1.0, 2.0}}, decode(t, body)["json"])
	})
	t.Run("status", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/status/418", nil)
		assert.Equal(t, 418, resp.StatusCode)
		assert.Contains(t, body, "teapot")
	})
	t.Run("gzip", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/gzip", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.True(t, resp.Uncompressed, "the body came gzipped and the client unpacked it")
		assert.Equal(t, true, decode(t, body)["gzipped"])
	})
	t.Run("stream", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/stream/20", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		require.Len(t, lines, 20)
		for i, line := range lines {
			assert.Equal(t, float64(i), decode(t, line)["id"])
		}
	})
	t.Run("bytes", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/bytes/1024", nil)
		require.Equal(t, 200, resp.StatusCode)
		assert.Len(t, body, 1024)
		assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	})
	t.Run("redirects", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/redirect/3", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "/get", resp.Request.URL.Path, "three redirects end at /get")
	})
	t.Run("cookies", func(t *testing.T) {
		resp, body := fetch(t, c, "GET", srv.URL+"/cookies/set?k=v", nil)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "/cookies", resp.Request.URL.Path)
		_, body = fetch(t, c, "GET", srv.URL+"/cookies", nil)
		assert.Equal(t, map[string]any{"k": "v"}, decode(t, body)["cookies"])
	})
	t.Run("basic auth", func(t *testing.T) {
		auth := func(srv *httptest.Server, user, passwd string) int {
			req, err := http.NewRequest("GET", srv.URL+"/basic-auth/user/passwd", nil)
			require.NoError(t, err)
			req.SetBasicAuth(user, passwd)
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		assert.Equal(t, 200, auth(srv, "user", "passwd"))
		assert.Equal(t, 401, auth(srv, "user", "wrong"))

		hidden := serve(t, frameworkHandler(t, "httpbin:app", nil))
		assert.Equal(t, 401, auth(hidden, "user", "passwd"), "without WithPassAuthorization the app never sees the header")
	})
	t.Run("still serving", func(t *testing.T) {
		resp, _ := fetch(t, c, "GET", srv.URL+"/get", nil)
		assert.Equal(t, 200, resp.StatusCode)
	})
}

// TestFrameworks runs the small apps of testdata/frameworks: each answers
// GET /hello with text and POST /echo with the JSON object it was sent plus
// a "framework" field.
func TestFrameworks(t *testing.T) {
	for _, fw := range []struct{ name, greeting string }{
		{"falcon", "Hello from Falcon!"},
		{"bottle", "Hello from Bottle!"},
		{"pyramid", "Hello from Pyramid!"},
	} {
		t.Run(fw.name, func(t *testing.T) {
			srv := serve(t, frameworkHandler(t, fw.name+"_app:app", []string{testdata(t, "frameworks")}))
			for range 2 {
				r := get(t, srv, "/hello")
				require.NoError(t, r.err)
				assert.Equal(t, 200, r.status)
				assert.Equal(t, fw.greeting, r.body)
				assert.True(t, strings.HasPrefix(r.header.Get("Content-Type"), "text/plain"), r.header.Get("Content-Type"))

				r = do(t, srv, "POST", "/echo", strings.NewReader(`{"n":1,"s":"héllo","list":[true,null]}`), "Content-Type", "application/json")
				require.NoError(t, r.err)
				require.Equal(t, 200, r.status, r.body)
				assert.True(t, strings.HasPrefix(r.header.Get("Content-Type"), "application/json"), r.header.Get("Content-Type"))
				assert.Equal(t, map[string]any{"n": 1.0, "s": "héllo", "list": []any{true, nil}, "framework": fw.name}, decode(t, r.body))
			}
		})
	}
}
