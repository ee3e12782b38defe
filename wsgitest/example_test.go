package wsgitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"testing"

	"github.com/gowsgi/wsgi"
	"github.com/gowsgi/wsgi/wsgitest"
)

// The examples are the bodies of tests: in a test file, t is the test's
// *testing.T. An Example function has no t, so it asks exampleT for one.
//
// Example, of a plain WSGI app, runs under go test and checks its output.
// The Flask and Django examples have no Output comment, so go test only
// compiles them: those frameworks are not importable on every Python this
// package is tested with, and an Example cannot skip. TestExampleFlask and
// TestExampleDjango run them with the test's t instead, where New skips
// the test when the framework is missing.

// exampleTest is the test running an example, set by runExample.
var exampleTest testing.TB

// exampleT returns the testing.TB an example runs with: that of the test
// running it, or, when go test runs it as an Example, one that prints
// failures, so that the output no longer matches.
func exampleT() testing.TB {
	if exampleTest != nil {
		return exampleTest
	}
	return printT{}
}

// printT is the testing.TB of an Example: failures are printed, a fatal
// one panics. It implements the methods wsgitest calls; the handler it is
// given stays open until the test binary exits, and TestMain removes its
// temporary directories then.
type printT struct{ testing.TB }

// exampleDirs are the directories printT.TempDir made.
var exampleDirs []string

func (printT) TempDir() string {
	dir, err := os.MkdirTemp("", "wsgitest-example-")
	if err != nil {
		panic(err)
	}
	exampleDirs = append(exampleDirs, dir)
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range exampleDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func (printT) Helper()                        {}
func (printT) Name() string                   { return "Example" }
func (printT) Cleanup(func())                 {}
func (printT) Logf(string, ...any)            {}
func (printT) Errorf(format string, a ...any) { fmt.Printf("FAIL: "+format+"\n", a...) }
func (printT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (printT) Skipf(format string, a ...any) {
	panic("an Example cannot skip: " + fmt.Sprintf(format, a...))
}

// A plain WSGI app, testdata/hello.py, in process.
func Example() {
	t := exampleT() // in a test function, its t

	app := wsgitest.New(t, "testdata/hello.py")
	resp := app.Get("/?name=gopher")
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 Hello, gopher!
}

// A login to a Flask app, testdata/flasklogin.py: the session cookie that
// /login sets lets the next request in.
func ExampleWithCookies_flask() {
	t := exampleT() // in a test function, its t

	app := wsgitest.New(t, "testdata/flasklogin.py:app",
		wsgitest.WithCookies(),
		wsgitest.SkipIfMissing("flask"),
	)
	resp := app.PostForm("/login", url.Values{"user": {"gopher"}, "password": {"burrow"}})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %s", resp.Status)
	}
	resp = app.Get("/me")
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "Hello, gopher!" {
		t.Errorf("after login, /me says %q", body)
	}
}

// A form of the Django site in examples/djangosite, through a real HTTP
// server: the CSRF token comes in a cookie and in the form, and the POST
// must carry both. mysite.wsgi sets DJANGO_SETTINGS_MODULE.
func ExampleApp_Server_django() {
	t := exampleT() // in a test function, its t

	app := wsgitest.New(t, "mysite.wsgi:application",
		wsgitest.With(wsgi.WithPythonPath("../examples/djangosite")),
		wsgitest.WithCookies(),
		wsgitest.SkipIfMissing("django"),
	)
	srv := app.Server()
	client := srv.Client() // has the cookie jar

	resp, err := client.Get(srv.URL + "/greet/")
	if err != nil {
		t.Fatalf("GET /greet/: %v", err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`).FindSubmatch(form)
	if token == nil {
		t.Fatalf("no CSRF token in the form:\n%s", form)
	}

	resp, err = client.PostForm(srv.URL+"/greet/", url.Values{
		"name":                {"gopher"},
		"csrfmiddlewaretoken": {string(token[1])},
	})
	if err != nil {
		t.Fatalf("POST /greet/: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Hello, gopher!" {
		t.Errorf("POST /greet/: %s %q", resp.Status, body)
	}
}
