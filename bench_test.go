package wsgi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// discardWriter is a ResponseWriter that keeps nothing: the benchmarks
// measure the gateway, not a recorder's buffer.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

func benchHandler(b *testing.B, spec string) *wsgi.Handler {
	h, err := wsgi.NewHandler(wsgi.WithApp(spec), wsgi.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(b, err)
	b.Cleanup(func() { h.Close() })
	return h
}

// reportCgo adds the cgo calls per request to the benchmark's figures.
func reportCgo(b *testing.B, before int64) {
	b.ReportMetric(float64(runtime.NumCgoCall()-before)/float64(b.N), "cgo-calls/op")
}

// BenchmarkHello is one hello-world request, a list response, through the
// handler: Python's share of a request's cost. Budget: one cgo call.
func BenchmarkHello(b *testing.B) {
	benchSerial(b, benchHandler(b, testdata(b, "hello.py")), "/")
}

// benchSerial serves GET target through h, one request after another, and
// reports the cgo calls a request makes.
func benchSerial(b *testing.B, h *wsgi.Handler, target string) {
	req := httptest.NewRequest("GET", target, nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	before := runtime.NumCgoCall()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	reportCgo(b, before)
}

func BenchmarkHelloParallel(b *testing.B) {
	benchParallel(b, benchHandler(b, testdata(b, "hello.py")))
}

// benchParallel serves GET / from GOMAXPROCS goroutines at once.
func benchParallel(b *testing.B, h *wsgi.Handler) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/", nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}

// BenchmarkStream is a generator of 100 chunks of 1 KiB.
func BenchmarkStream(b *testing.B) {
	b.SetBytes(100 << 10)
	benchSerial(b, benchHandler(b, appSpec(b, "application")), "/stream?n=100&size=1024")
}

// BenchmarkEcho64K posts 64 KiB that the app reads and sends back.
func BenchmarkEcho64K(b *testing.B) {
	h := benchHandler(b, appSpec(b, "application"))
	body := bytes.Repeat([]byte("e"), 64<<10)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	before := runtime.NumCgoCall()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/echo", bytes.NewReader(body))
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	reportCgo(b, before)
}

// BenchmarkHelloHTTP is the hello request over loopback HTTP, for scale.
func BenchmarkHelloHTTP(b *testing.B) {
	h := benchHandler(b, testdata(b, "hello.py"))
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkFlask is a Flask hello view (bench/apps/flaskapp.py): how much a
// framework request costs through the handler, against the same view
// called in a Python loop.
func BenchmarkFlask(b *testing.B) {
	benchSerial(b, benchHandler(b, flaskBench(b)), "/")
}

// BenchmarkFlaskParallel: the same from GOMAXPROCS goroutines, which take
// turns on the interpreter's GIL.
func BenchmarkFlaskParallel(b *testing.B) {
	benchParallel(b, benchHandler(b, flaskBench(b)))
}

// BenchmarkDjango is a Django JSON view through the URL resolver and a new
// project's middleware (bench/apps/djangoapp.py).
func BenchmarkDjango(b *testing.B) {
	abs, err := filepath.Abs(filepath.Join("bench", "apps", "djangoapp.py"))
	require.NoError(b, err)
	h, err := wsgi.NewHandler(wsgi.WithApp(abs+":app"), wsgi.WithLogger(slog.New(slog.DiscardHandler)))
	if pe := importError(err); pe != nil {
		b.Skipf("Django does not import (make setup): %s", pe.Message)
	}
	require.NoError(b, err)
	b.Cleanup(func() { h.Close() })
	const target = "http://localhost/django" // a host the app allows
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	require.Equal(b, http.StatusOK, rec.Code, rec.Body.String())
	benchSerial(b, h, target)
}

// flaskBench is the app spec of the benchmarks' Flask view; it skips the
// benchmark where Flask is not installed.
func flaskBench(b *testing.B) string {
	if exec.Command("python3", "-c", "import flask").Run() != nil {
		b.Skip("Flask is not installed (make setup)")
	}
	abs, err := filepath.Abs(filepath.Join("bench", "apps", "flaskapp.py"))
	require.NoError(b, err)
	return abs + ":app"
}
