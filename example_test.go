package wsgi_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/gowsgi/wsgi"
)

// A Python app served by a Go http.Server, mounted under /py/ of a mux.
func ExampleNewHandler() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	app := `
def application(environ, start_response):
    body = f"{environ['SCRIPT_NAME']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
`
	os.WriteFile(filepath.Join(dir, "hello.py"), []byte(app), 0o644)

	h, err := wsgi.NewHandler(
		wsgi.WithApp("hello:application"),
		wsgi.WithPythonPath(dir),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle("/py/", http.StripPrefix("/py", h))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/py/greet")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, " ", string(body))
	// Output: 200 OK /py /greet
}
