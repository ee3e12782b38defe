package wsgi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// gateWriter is a ResponseWriter whose first write takes a millisecond, as
// one to a socket takes some; write number holdAt does not return until the
// test opens the gate, as a client that stops reading would make it; write
// number panicAt panics. It counts the writes.
type gateWriter struct {
	*httptest.ResponseRecorder
	holdAt, panicAt int
	exitAt          int // this write calls runtime.Goexit
	held, open      chan struct{}

	mu     sync.Mutex
	writes int
	once   sync.Once
}

// release opens the gate; a test defers it so that a failure does not
// leave the request held.
func (g *gateWriter) release() { g.once.Do(func() { close(g.open) }) }

func newGateWriter(holdAt, panicAt int) *gateWriter {
	return &gateWriter{ResponseRecorder: httptest.NewRecorder(), holdAt: holdAt, panicAt: panicAt,
		held: make(chan struct{}), open: make(chan struct{})}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes++
	n := g.writes
	g.mu.Unlock()
	if n == 1 {
		// As slow as a write to a socket: the app runs on meanwhile.
		time.Sleep(time.Millisecond)
	}
	if n == g.panicAt {
		panic("writer exploded")
	}
	if n == g.exitAt {
		runtime.Goexit()
	}
	if n == g.holdAt {
		close(g.held)
		<-g.open
	}
	return g.ResponseRecorder.Write(p)
}

func (g *gateWriter) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// stepsOf reads how far the test app's generator for key has got.
func stepsOf(t *testing.T, h http.Handler, key string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/steps", nil))
	var steps map[string]int
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &steps))
	return steps[key]
}

// streamBody is what /stream-cl sends for n chunks of size bytes.
func streamBody(n, size int) string {
	var sb strings.Builder
	for i := range n {
		sb.WriteString(strings.Repeat(string(rune('a'+i%26)), size))
	}
	return sb.String()
}

// serveAsync runs one request through h on its own goroutine; the channel
// is closed when ServeHTTP returns.
func serveAsync(h http.Handler, w http.ResponseWriter, target string) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	}()
	return done
}

func waitClosed(t *testing.T, c chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// While the client is slow to take a chunk, the app goes on producing and
// the chunks it yields in the meantime leave in one write.
func TestStreamBatchesChunksWhileSending(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(2))
	gw := newGateWriter(1, 0) // the first write holds
	defer gw.release()
	done := serveAsync(h, gw, "/stream-cl?n=10&size=1024&key=batch")
	waitClosed(t, gw.held, "the first write")
	eventually(t, func() bool { return stepsOf(t, h, "batch") == 10 },
		"the app produced every chunk while the client was not taking them")
	gw.release()
	waitClosed(t, done, "the response")
	assert.Equal(t, streamBody(10, 1024), gw.Body.String())
	// What the app had yielded when the first write started (at least
	// one chunk) goes out in it, the rest in one more.
	assert.LessOrEqual(t, gw.count(), 2, "writes for 10 chunks")
}

// A client that takes nothing holds the app back once a bounded amount
// is queued: a fast generator does not fill memory.
func TestStreamQueueIsBounded(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(2))
	gw := newGateWriter(2, 0)
	defer gw.release()
	const n = 1000 // 1000 KiB in all
	done := serveAsync(h, gw, fmt.Sprintf("/stream-cl?n=%d&size=1024&key=bounded", n))
	waitClosed(t, gw.held, "the second chunk's write")
	eventually(t, func() bool { return stepsOf(t, h, "bounded") >= 66 }, "the queue fills")
	time.Sleep(100 * time.Millisecond) // room for the generator to run on, were it not held
	// Beyond what the client took: at most one batch of 64 KiB in the held
	// write and one queued, and one chunk waiting for room.
	took := gw.Body.Len() / 1024
	assert.LessOrEqual(t, stepsOf(t, h, "bounded")-took, 2*64+1, "generator steps beyond what the client took, while it takes nothing")
	gw.release()
	waitClosed(t, done, "the response")
	assert.Equal(t, streamBody(n, 1024), gw.Body.String())
	assert.Equal(t, n, stepsOf(t, h, "bounded"))
}

// A ResponseWriter that panics while a batch is sent: the panic comes
// back on the request's goroutine, as from a synchronous write, and the
// process and the handler live on.
func TestStreamWriterPanics(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	func() {
		defer func() {
			assert.Equal(t, "writer exploded", fmt.Sprint(recover()))
		}()
		h.ServeHTTP(newGateWriter(0, 1), httptest.NewRequest("GET", "/stream?n=5", nil))
	}()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hello", nil))
	assert.Equal(t, "Hello, World!", rec.Body.String())
}

// serveRecover runs one request on its own goroutine and returns what
// ServeHTTP panicked with, or nil.
func serveRecover(t *testing.T, h http.Handler, w http.ResponseWriter, target string, waiting func()) (p any) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { p = recover() }()
		h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	}()
	if waiting != nil {
		waiting()
	}
	waitClosed(t, done, "the response")
	return p
}

// A ResponseWriter that panics in the writer's second write leaves the
// slot's buffers apart: the next stream on the slot sends its own bytes.
func TestStreamAfterWriterPanic(t *testing.T) {
	// Two slots, taken last-freed first: the streams share one, the
	// polls of /steps run in the other.
	h, _ := newHandler(t, "application", wsgi.WithThreads(2))
	gw := newGateWriter(2, 3)
	defer gw.release()
	// 200 KiB: the writer sends at most one 64 KiB batch at a time, so
	// a third write comes.
	p := serveRecover(t, h, gw, "/stream-cl?n=200&size=1024&key=first", func() {
		waitClosed(t, gw.held, "the second chunk's write")
		eventually(t, func() bool { return stepsOf(t, h, "first") >= 66 }, "the queue fills")
		gw.release()
	})
	assert.Equal(t, "writer exploded", fmt.Sprint(p))

	for range 3 {
		gw := newGateWriter(2, 0)
		// More than the queue holds: chunks are queued while the held
		// write sends the batch before them.
		p := serveRecover(t, h, gw, "/stream-cl?n=100&size=1024&key=next", func() {
			waitClosed(t, gw.held, "the second chunk's write")
			eventually(t, func() bool { return stepsOf(t, h, "next") >= 66 }, "the queue fills")
			gw.release()
		})
		require.Nil(t, p)
		require.Equal(t, streamBody(100, 1024), gw.Body.String())
	}
}

// A ResponseWriter that calls runtime.Goexit in the writer goroutine
// (a test's writer calling t.FailNow) does not leave the request waiting
// for it forever: the request ends with a panic, the slot comes back.
func TestStreamWriterGoexit(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	gw := newGateWriter(0, 0)
	gw.exitAt = 1
	// More than a batch holds: a writer goroutine sends while the app
	// still runs on the request's goroutine's thread.
	p := serveRecover(t, h, gw, "/stream?n=200", nil)
	assert.Contains(t, fmt.Sprint(p), "runtime.Goexit")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hello", nil))
	assert.Equal(t, "Hello, World!", rec.Body.String())
}

// Chunks of 16 KiB and more are written from the Python object, after
// the small ones queued before them; the slow first write makes sure a
// writer goroutine sends while the app runs on.
func TestStreamMixedChunkSizes(t *testing.T) {
	h, _ := newHandler(t, "validated")
	sizes := []int{1, 1000, 3, 16 << 10, 7, 9, 100 << 10, 5, 64 << 10, 2, 70 << 10, 1}
	var want strings.Builder
	var list []string
	for i, n := range sizes {
		want.WriteString(strings.Repeat(string(rune('a'+i)), n))
		list = append(list, fmt.Sprint(n))
	}
	for range 5 {
		gw := newGateWriter(0, 0)
		h.ServeHTTP(gw, httptest.NewRequest("GET", "/stream-sizes?sizes="+strings.Join(list, ","), nil))
		require.Equal(t, 200, gw.Code)
		require.Equal(t, want.String(), gw.Body.String())
	}
}

func TestHostileApps(t *testing.T) {
	h, sink := newHandler(t, "application")
	srv := serve(t, h)
	for path, want := range map[string]string{
		"/sys-exit":           "SystemExit",
		"/keyboard-interrupt": "KeyboardInterrupt",
		"/base-exception":     "Custom",
		"/no-start-response":  "did not call start_response",
		"/return-none":        "NoneType",
		"/iter-raises":        "cannot iterate",
	} {
		r := get(t, srv, path)
		assert.Equal(t, 500, r.status, path)
		found := false
		for _, rec := range sink.event("app_error", false) {
			found = found || strings.Contains(rec["error"], want)
		}
		assert.True(t, found, "%s: no log record mentions %q", path, want)
		assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "served after %s", path)
	}
	r := get(t, srv, "/exit-mid-stream")
	assert.Error(t, r.err, "SystemExit after the headers aborts the connection")
	assert.Equal(t, "Hello, World!", get(t, srv, "/hello").body, "and the process lives on")
}
