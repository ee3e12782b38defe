package wsgi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gowsgi/wsgi"
)

// stalledClient sends a GET for path and does not read the response: once
// the kernel's buffers are full (a few MiB on loopback), the server's
// writes block. Close ends it.
func stalledClient(t *testing.T, srv interface{ URL() string }, path string) net.Conn {
	t.Helper()
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

type urlOf struct{ s string }

func (u urlOf) URL() string { return u.s }

// A request blocked on I/O in the app lets the others run: with the
// default threads, a quick request is answered while a slow one sleeps.
func TestRequestsOverlapWhileOneBlocks(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	slow := startGated(t, srv)
	for range 5 {
		r := get(t, srv, "/hello")
		require.NoError(t, r.err)
		assert.Equal(t, "Hello, World!", r.body, "served while another request waits on I/O")
	}
	require.False(t, slow.ended(), "the slow request ended before it was released")
	slow.open()
}

// The threads that run queued requests are named, so that top -H, ps -L
// and perf tell them from Go's.
func TestPythonThreadsAreNamed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/task")
	}
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	slow := startGated(t, srv) // runs on its goroutine's thread
	defer slow.open()
	r := get(t, srv, "/native-thread")
	require.NoError(t, r.err)
	require.EqualValues(t, 1, h.Stats().Interpreters[0].Direct, "the request was queued, not run on its own thread")
	comm, err := os.ReadFile("/proc/self/task/" + r.body + "/comm")
	require.NoError(t, err, "the thread that ran the queued request")
	assert.Equal(t, "wsgi-python", strings.TrimSpace(string(comm)))
}

// Requests queued behind a busy interpreter run back to back on one
// thread that keeps the GIL: no hand-off between them.
func TestQueuedRequestsRunBackToBack(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	first := startGated(t, srv)
	const n = 4
	threads := make(chan string, n)
	for range n {
		go func() { threads <- get(t, srv, "/native-thread").body }()
	}
	eventually(t, func() bool { return h.Stats().Queued == n }, "the requests did not queue")
	first.open()
	seen := map[string]bool{}
	for range n {
		seen[<-threads] = true
	}
	assert.Len(t, seen, 1, "the queued requests ran on one thread")
	st := h.Stats().Interpreters[0]
	assert.EqualValues(t, n-1, st.BackToBack, "after the first, each ran right after the one before")
	assert.EqualValues(t, 1, st.Direct, "the first ran on its own goroutine's thread, the interpreter being idle")
}

// Requests that are short (a few microseconds of Python, like this one)
// run on their own goroutine's thread even while another request holds a
// place: a hand-off to a worker, and back to Go, would cost more than
// they do. The scheduler learns that they are short from the last ones,
// which it queues until it knows.
func TestShortRequestsRunOnTheirOwnThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/task")
	}
	h, _ := newHandler(t, "application", wsgi.WithThreads(2))
	srv := serve(t, h)
	gated := startGated(t, srv) // holds a place, blocked on I/O
	defer gated.open()
	var thread string
	for deadline := time.Now().Add(20 * time.Second); thread == "" && time.Now().Before(deadline); {
		before := h.Stats().Interpreters[0].Direct
		r := get(t, srv, "/native-thread")
		require.NoError(t, r.err)
		require.Equal(t, 200, r.status)
		if h.Stats().Interpreters[0].Direct == before+1 {
			thread = r.body
		}
	}
	require.NotEmpty(t, thread, "no short request ran on its own thread while another held a place")
	assert.False(t, gated.ended(), "the gated request still holds its place")
	comm, err := os.ReadFile("/proc/self/task/" + thread + "/comm")
	require.NoError(t, err, "the thread that ran the request")
	assert.NotEqual(t, "wsgi-python", strings.TrimSpace(string(comm)), "it ran on a worker")
}

// With one place, a client that takes nothing of a large response holds
// none: the list body is sent with the place given back.
func TestSlowClientOfListHoldsNoPlace(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	conn := stalledClient(t, urlOf{srv.URL}, "/list?n=512&size=65536") // 32 MiB
	eventually(t, func() bool { st := h.Stats(); return st.InFlight == 1 && st.Running == 0 },
		"the list request did not start sending")
	r := get(t, srv, "/hello")
	require.NoError(t, r.err)
	assert.Equal(t, "Hello, World!", r.body)
	conn.Close()
}

// A generator whose client takes nothing gives its place back while its
// next chunk waits, and holds a bounded amount.
func TestSlowClientOfGeneratorHoldsNoPlace(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	conn := stalledClient(t, urlOf{srv.URL}, "/big-stream?n=400&size=65536&tag=stalled") // 25 MiB
	// One snapshot: as the kernel's buffers for the connection grow, the
	// generator may wake between two, take its place for a chunk, and
	// wait again.
	eventually(t, func() bool { st := h.Stats(); return st.Blocked == 1 && st.Running == 0 },
		"the generator did not wait for its client without its place")
	for range 3 {
		r := get(t, srv, "/hello")
		require.NoError(t, r.err)
		assert.Equal(t, "Hello, World!", r.body)
	}
	// Going on: the client reads everything, and the generator takes a
	// place again for each chunk it produces.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, io.LimitReader(conn, 400*65536))
	assert.EqualValues(t, 400*65536, n, "the client got the whole body, headers aside")
	conn.Close()
	var closed []string
	eventually(t, func() bool {
		getJSON(t, srv, "/closed", &closed)
		return len(closed) == 1
	}, "close() did not run")
	assert.Equal(t, []string{"stalled"}, closed)
}

// write() to a client that takes nothing waits without a place.
func TestSlowClientOfWriteHoldsNoPlace(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	stalledClient(t, urlOf{srv.URL}, "/write-big?n=400&size=65536&tag=w")
	eventually(t, func() bool { return h.Stats().Blocked == 1 }, "write() did not wait for its client")
	r := get(t, srv, "/hello")
	require.NoError(t, r.err)
	assert.Equal(t, "Hello, World!", r.body)
}

// A wsgi.file_wrapper file is sent with no place held, and close() runs
// once it is sent.
func TestSlowClientOfFileHoldsNoPlace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(file, make([]byte, 32<<20), 0o644))
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	conn := stalledClient(t, urlOf{srv.URL}, "/file?path="+url.QueryEscape(file))
	eventually(t, func() bool { return h.Stats().Blocked == 1 }, "the file's request did not wait for its client")
	r := get(t, srv, "/hello")
	require.NoError(t, r.err)
	assert.Equal(t, "Hello, World!", r.body)
	conn.Close()
}

// A client that stops reading is cut after WithSendTimeout, and the
// iterable's close() runs.
func TestSendTimeoutCutsAStalledClient(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithSendTimeout(300*time.Millisecond))
	srv := serve(t, h)
	conn := stalledClient(t, urlOf{srv.URL}, "/big-stream?n=400&size=65536&tag=cut")
	var closed []string
	eventually(t, func() bool {
		getJSON(t, srv, "/closed", &closed)
		return len(closed) == 1
	}, "the stalled client was not cut, or close() did not run")
	assert.Equal(t, []string{"cut"}, closed)
	// The connection is gone: reading ends before the whole body.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := io.Copy(io.Discard, conn)
	assert.Less(t, n, int64(400*65536))
}

// A client reading slowly but steadily is never cut: the timeout bounds
// the time between two writes, not the response.
func TestSendTimeoutSparesASlowReader(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithSendTimeout(500*time.Millisecond))
	srv := serve(t, h)
	resp, err := http.Get(srv.URL + "/big-stream?n=40&size=65536&tag=slow")
	require.NoError(t, err)
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	var total int
	start := time.Now()
	for {
		n, err := resp.Body.Read(buf)
		total += n
		if err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
		if time.Since(start) < 1500*time.Millisecond {
			time.Sleep(20 * time.Millisecond) // slower than the app, steadily
		}
	}
	assert.Equal(t, 40*65536, total)
	assert.Greater(t, time.Since(start), 500*time.Millisecond, "the response lasted longer than the timeout")
	assert.Zero(t, h.Stats().Errors)
}

// A write the send watch finds stalled, but which goes through before the
// watch cuts it, is not cut: its response may have ended, and a deadline
// in the past left on the connection would fail the next request on it.
func TestSendTimeoutSparesTheNextRequestOnTheConnection(t *testing.T) {
	found, release := make(chan struct{}), make(chan struct{})
	ticked := make(chan struct{}, 1000)
	var once sync.Once
	defer wsgi.SetSendTickHook(func(stalled bool) {
		if stalled {
			once.Do(func() {
				close(found)
				<-release
			})
			return
		}
		select {
		case ticked <- struct{}{}:
		default:
		}
	})()
	h, _ := newHandler(t, "application", wsgi.WithSendTimeout(200*time.Millisecond))
	srv := serve(t, h)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)

	// The client reads nothing until the watch has found the write
	// stalled, then reads the whole response while the watch waits.
	_, err = fmt.Fprintf(conn, "GET /big-stream?n=200&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	select {
	case <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("the send watch never found the write stalled")
	}
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, resp.Body)
	require.NoError(t, err, "the first response")
	require.EqualValues(t, 200*65536, n)
	for len(ticked) > 0 {
		<-ticked
	}
	close(release)
	select {
	case <-ticked: // the tick that found the write stalled is over
	case <-time.After(20 * time.Second):
		t.Fatal("the send watch's tick never ended")
	}

	_, err = fmt.Fprintf(conn, "GET /big-stream?n=1&size=10 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, err = http.ReadResponse(br, nil)
	require.NoError(t, err, "the next request on the connection")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the next response's body")
	assert.Equal(t, "gggggggggg", string(body))
}

func TestQueueLimits(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1), wsgi.WithMaxQueue(1),
		wsgi.WithQueueTimeout(300*time.Millisecond))
	srv := serve(t, h)
	first := startGated(t, srv)

	queued := make(chan response)
	go func() { queued <- get(t, srv, "/counter") }()
	eventually(t, func() bool { return h.Stats().Queued == 1 }, "the second request did not queue")

	r := get(t, srv, "/counter")
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "the queue is full")
	assert.Equal(t, "1", r.header.Get("Retry-After"))

	r = <-queued
	assert.Equal(t, http.StatusServiceUnavailable, r.status, "the queued request timed out")
	assert.Equal(t, "1", r.header.Get("Retry-After"))

	first.open()
	var count int
	getJSON(t, srv, "/counter", &count)
	assert.Equal(t, 1, count, "refused requests never entered Python")
	st := h.Stats()
	assert.Equal(t, uint64(2), st.Rejected)
	assert.Greater(t, st.QueueWait, 250*time.Millisecond)
}

func TestQueuedClientLeaves(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	first := startGated(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/counter", nil)
	go srv.Client().Do(req)
	eventually(t, func() bool { return h.Stats().Queued == 1 }, "the request did not queue")
	cancel()
	eventually(t, func() bool { return h.Stats().Queued == 0 }, "a client that left is dropped from the queue")
	first.open()
}

// TestThreadsAdmission checks WithThreads: with one thread a second request
// waits in Go while the first is in Python, and a waiting request whose
// client gives up leaves without ever entering Python.
func TestThreadsAdmission(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)
	first := startGated(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/counter", nil)
	_, err := srv.Client().Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the only thread is busy: the request waits")
	// The server learns that the client left when it reads the closed
	// connection; a thread freed before that could still go to the request.
	eventually(t, func() bool { return h.Stats().Queued == 0 }, "the abandoned request was not dropped from the queue")

	first.open()
	var count int
	getJSON(t, srv, "/counter", &count)
	assert.Equal(t, 1, count, "the abandoned request never reached the app")
}

func TestThreadLocalsDuringIteration(t *testing.T) {
	h, _ := newHandler(t, "application")
	srv := serve(t, h)
	done := make(chan response)
	const n = 40
	for range n {
		go func() { done <- get(t, srv, "/threadlocal") }()
	}
	for range n {
		r := <-done
		require.NoError(t, r.err)
		assert.Equal(t, strings.Repeat("ok\n", 5), r.body, "threading.local and contextvars set in the app call hold while its iterable runs")
	}
	var closes []bool
	getJSON(t, srv, "/threadlocal-close", &closes)
	require.Len(t, closes, n)
	for _, ok := range closes {
		assert.True(t, ok, "and in close()")
	}
}

// While requests are queued, a request's first chunk may wait to be
// announced to Go; a standby that takes the GIL announces it. Here a
// stream makes its first chunk while a standby waits for the GIL (a long
// switch interval keeps it waiting), then waits until its client has that
// chunk: the chunk must get out while the request still runs.
func TestLateNoticeReachesTheClient(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(3))
	srv := serve(t, h)
	dir := t.TempDir()
	gate, other := filepath.Join(dir, "gate"), filepath.Join(dir, "other")

	// A keeps the interpreter from being idle, so that B is queued and
	// run by a worker, not on its own goroutine's thread.
	a := make(chan response, 1)
	go func() { a <- get(t, srv, "/sleep?ms=1500") }()
	eventually(t, func() bool { return h.Stats().Running == 1 }, "A never started")

	type reply struct {
		resp *http.Response
		err  error
	}
	b := make(chan reply, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL + "/hold-then-stream?ms=300&path=" + url.QueryEscape(gate))
		b <- reply{resp, err}
	}()
	eventually(t, func() bool { return exists(gate + ".holding") }, "B never started")
	// C is queued while B holds the GIL: a standby now waits for it.
	c := make(chan response, 1)
	go func() { c <- get(t, srv, "/wait-file?path="+url.QueryEscape(other)) }()

	var r reply
	select {
	case r = <-b:
	case <-time.After(10 * time.Second):
		t.Fatal("B's first chunk never reached its client")
	}
	require.NoError(t, r.err)
	defer r.resp.Body.Close()
	first := make([]byte, len("first\n"))
	_, err := io.ReadFull(r.resp.Body, first)
	require.NoError(t, err)
	assert.Equal(t, "first\n", string(first))
	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	rest, err := io.ReadAll(r.resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "released\n", string(rest), "B waited for its client to have the first chunk")

	require.NoError(t, os.WriteFile(other, nil, 0o644))
	assert.Equal(t, "released", (<-c).body)
	assert.Equal(t, "slept", (<-a).body)
}

// A request that runs on its goroutine's own thread arms a timer to start
// a writer; the timer may fire just as the request ends, and its goroutine
// may run late, when the slot already serves the next request. Here the
// first request's timer goroutine is held until the second request runs on
// the same slot: it must not take the second request's response (which
// then never reached its client, its goroutine waiting for a writer that
// was not its own).
func TestLateWriterTimerLeavesTheNextRequest(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(1))
	srv := serve(t, h)

	// Each timer goroutine waits for its own release, in the order fired.
	var fired atomic.Int32
	arrived := make(chan struct{}, 16)
	release := make([]chan struct{}, 16)
	for i := range release {
		release[i] = make(chan struct{})
	}
	restore := wsgi.SetWriterTimerHook(func() {
		n := fired.Add(1) - 1
		arrived <- struct{}{}
		<-release[n]
	})
	t.Cleanup(func() {
		restore()
		for _, c := range release {
			close(c)
		}
	})

	// The first chunk arms the timer, and the app runs on for 20 ms.
	first := get(t, srv, "/busy-stream?ms=20")
	assert.Equal(t, "first\nlate\n", first.body)
	<-arrived // its timer fired, and its goroutine waits

	second := make(chan response, 1)
	go func() { second <- get(t, srv, "/busy-stream?ms=300") }()
	<-arrived                // the second request's own timer, held too
	release[0] <- struct{}{} // the first one's goroutine goes on
	select {
	case r := <-second:
		assert.Equal(t, 200, r.status)
		assert.Equal(t, "first\nlate\n", r.body)
	case <-time.After(10 * time.Second):
		t.Fatal("the second request never ended")
	}
}

// setSwitchInterval sets the app's sys.setswitchinterval for the test.
func setSwitchInterval(t *testing.T, srv *httptest.Server, secs string) {
	var old float64
	getJSON(t, srv, "/switch-interval?s="+secs, &old)
	t.Cleanup(func() { getJSON(t, srv, fmt.Sprintf("/switch-interval?s=%g", old), &old) })
}

// hammer has clients goroutines get path over and over until stop closes.
func hammer(t *testing.T, srv *httptest.Server, clients int, path func() string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				assert.Equal(t, "done", get(t, srv, path()).body)
			}
		}()
	}
	return &wg
}

// overlapStart is what /overlap recorded as a request started running
// Python: its number, the numbers of the other requests of its kind in the
// app, and the least CPU time any of them had in the switch interval of
// wall time before, in seconds (nil if none was there).
type overlapStart struct {
	Tag    string
	Seq    int
	Others []int
	Least  *float64
	At     float64 // time.monotonic()
	Tid    int     // threading.get_native_id()
}

// overlapStarts returns what /overlap recorded for the requests tagged tag,
// and forgets it all.
func overlapStarts(t *testing.T, srv *httptest.Server, tag string) []overlapStart {
	var all []overlapStart
	getJSON(t, srv, "/overlap-starts", &all)
	return slices.DeleteFunc(all, func(st overlapStart) bool { return st.Tag != tag })
}

// runAlone has clients goroutines get /overlap?ms=ms over and over until n
// of them have ended, checks that each started alone in Python, and returns
// the interpreter's GaveWay count meanwhile. interval is the switch interval
// the test set.
//
// One exception: a request longer than the interval may be cut by CPython
// itself. A standby that waits for the GIL takes it by force once it has
// waited an interval of wall time, and the scheduler has it wait once the
// running request has had an interval of CPU. A request that then cannot
// get the little CPU it still needs within an interval of wall time (the
// machine gave its thread no core, or stopped the whole process, as a
// virtual machine's host may) is cut, as CPython would cut it. So a
// request may start beside others if one of them had less CPU in the
// interval before than it needed to end: ms less the interval, and a
// millisecond for what the window may hold beyond that (the app's samples
// are half a millisecond apart, and the request's thread runs the
// gateway's code before the app's). CPython then has the requests in
// Python take turns, so it may also start beside any request that was in
// the app at such a cut or started beside one, until they have all ended;
// how soon they do is not checked.
//
// The standby also waits for the GIL at once, without watching, when it
// judges the running request to be blocked on I/O (its thread stopped,
// not preempted) or requests not to be Python-bound. On a busy machine a
// thread that waits for a lock whose holder is kept off the cores can look
// so. CPython then cuts the running request after an interval, as it
// would cut any. So a request may also start beside others if its own
// thread had, less than an interval before, taken the GIL after waiting
// an interval or more for it, having begun to wait for such a reason; one
// that waited because the running request had had an interval of CPU is
// reported.
func runAlone(t *testing.T, h *wsgi.Handler, srv *httptest.Server, clients, ms int, interval time.Duration, n uint64) uint64 {
	t.Helper()
	// One alone first: the scheduler learns how long these requests are.
	assert.Equal(t, "done", get(t, srv, fmt.Sprintf("/overlap?ms=%d", ms)).body)
	overlapStarts(t, srv, "")
	before := h.Stats().Interpreters[0]
	stop := make(chan struct{})
	wg := hammer(t, srv, clients, func() string { return fmt.Sprintf("/overlap?ms=%d&tag=alone", ms) }, stop)
	eventually(t, func() bool { return h.Stats().Interpreters[0].Served-before.Served >= n },
		fmt.Sprintf("%d requests never ended", n))
	close(stop)
	wg.Wait()

	starts := overlapStarts(t, srv, "alone")
	require.NotEmpty(t, starts)
	waits := h.StandbyWaits()
	starved := time.Duration(ms)*time.Millisecond - interval + time.Millisecond
	cut := map[int]bool{} // requests in the app when CPython cut one, and after
	for i, st := range starts {
		if len(st.Others) == 0 {
			continue
		}
		require.NotNil(t, st.Least, "request %d of %d: started beside %v, with no CPU time for them", i, len(starts), st.Others)
		least := time.Duration(*st.Least * 1e9)
		after := slices.ContainsFunc(st.Others, func(seq int) bool { return cut[seq] })
		at := time.Duration(st.At * 1e9)
		wait := ownWait(waits, st.Tid, at, interval)
		judged := wait != nil && wait.Why != "long" && wait.Got-wait.At >= interval-time.Millisecond
		waited := "none"
		if wait != nil {
			waited = fmt.Sprintf("%q, for %v, had the GIL %v before it", wait.Why, wait.Got-wait.At, at-wait.Got)
		}
		if least < starved || after || judged {
			t.Logf("request %d of %d started beside %v, one of which had %v of CPU in the switch interval before: cut by CPython (after such a cut: %v; its thread's wait for the GIL: %s)",
				i, len(starts), st.Others, least, after, waited)
			cut[st.Seq] = true
			for _, seq := range st.Others {
				cut[seq] = true
			}
			continue
		}
		t.Errorf("request %d of %d started beside %v, which had %v or more of CPU each in the switch interval before: "+
			"none was cut by CPython, which needs less than %v (its thread's wait for the GIL: %s)", i, len(starts), st.Others, least, starved, waited)
		break // the starts after it may be the aftermath
	}
	return h.Stats().Interpreters[0].GaveWay - before.GaveWay
}

// ownWait returns the last of waits by thread tid that had the GIL at or
// before at, if that was less than an interval before; else nil.
func ownWait(waits []wsgi.StandbyWait, tid int, at, interval time.Duration) *wsgi.StandbyWait {
	for i := len(waits) - 1; i >= 0; i-- {
		if w := &waits[i]; w.Tid == tid && w.Got != 0 && w.Got <= at {
			if at-w.Got >= interval {
				return nil
			}
			return w
		}
	}
	return nil
}

// Requests that spend their time in Python run back to back on one thread,
// and the standby does not wait for the GIL meanwhile: a standby waiting for
// it would take it by force after CPython's switch interval, in the middle of
// a request, and the thread running them would have to give way to it
// between requests every few of them. It watches that thread's CPU clock
// instead.
func TestPythonBoundRequestsKeepTheirThread(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(4))
	srv := serve(t, h)
	// A long interval: the kernel may pause a thread for a few
	// milliseconds on a busy machine, not for 50.
	setSwitchInterval(t, srv, "0.05")
	// 80 requests of 3 ms: 240 ms, about 5 switch intervals. A standby
	// waiting for the GIL would have the thread give way every 10 or so.
	gaveWay := runAlone(t, h, srv, 8, 3, 50*time.Millisecond, 80)
	assert.LessOrEqual(t, gaveWay, uint64(2), "gave way %d times in 80 requests", gaveWay)
}

// While requests are Python-bound the standby watches the running one, and
// it must still see it stop: a request that waits on I/O lets the queued ones
// run at once, not after a switch interval.
func TestWatchingStandbySeesABlockedRequest(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(4))
	srv := serve(t, h)
	setSwitchInterval(t, srv, "2")
	for range 10 { // Python-bound requests, for the scheduler's average
		assert.Equal(t, "done", get(t, srv, "/overlap?ms=2").body)
	}

	slow := make(chan response, 1)
	go func() { slow <- get(t, srv, "/overlap?sleep=400&ms=1") }()
	eventually(t, func() bool { return h.Stats().Running == 1 }, "the slow request never started")
	for range 3 {
		assert.Equal(t, "done", get(t, srv, "/overlap?ms=1").body)
		select {
		case <-slow:
			t.Fatal("a request queued behind one asleep in time.sleep waited for it")
		default:
		}
	}
	assert.Equal(t, "done", (<-slow).body)
}

// A request that runs longer than the switch interval shares the GIL, as in
// CPython: the watching standby then waits for the GIL. The thread running
// requests back to back gives way to it at the end of the request, before
// CPython would cut the next one in the middle.
func TestBackToBackGivesWayBetweenRequests(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithThreads(4))
	srv := serve(t, h)
	// Requests of 105 ms of CPU: the standby waits for the GIL once one
	// has had 100 ms, CPython would hand it over 100 ms of wall time
	// later, and the request needs 5 ms more: it ends first on a thread
	// that gets a twentieth of a core. Not if the process is stopped for
	// those 100 ms: runAlone then lets CPython's cut pass.
	setSwitchInterval(t, srv, "0.1")
	assert.NotZero(t, runAlone(t, h, srv, 4, 105, 100*time.Millisecond, 8))
}

// workerAffinity serves a queued request on h (one held on its own
// goroutine's thread makes the next wait for a worker) and returns the CPUs
// the worker that ran it may run on.
func workerAffinity(t *testing.T, h *wsgi.Handler) []int {
	t.Helper()
	srv := serve(t, h)
	slow := startGated(t, srv)
	defer slow.open()
	r := get(t, srv, "/native-thread")
	require.NoError(t, r.err)
	require.EqualValues(t, 1, h.Stats().Interpreters[0].Direct, "the request was queued, not run on its own thread")
	var tid int
	_, err := fmt.Sscan(r.body, &tid)
	require.NoError(t, err, r.body)
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(tid, &set), "the worker thread %d", tid)
	return cpuList(set)
}

func cpuList(set unix.CPUSet) []int {
	var cpus []int
	for i := range len(set) * 64 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// pinnableCPUs returns the CPUs the process may run on, or skips the test
// where pinning cannot be told from not pinning.
func pinnableCPUs(t *testing.T) []int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads thread affinity")
	}
	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(os.Getpid(), &set))
	allowed := cpuList(set)
	if len(allowed) < 2 {
		t.Skip("one CPU: pinned and not pinned look the same")
	}
	return allowed
}

// WithPythonCPUs pins the threads that run queued requests to the CPU it
// names; without it they may run on every CPU the process may.
func TestPythonCPUs(t *testing.T) {
	allowed := pinnableCPUs(t)

	h, _ := newHandler(t, "application")
	assert.Equal(t, allowed, workerAffinity(t, h), "no pinning by default")

	last := allowed[len(allowed)-1]
	h, _ = newHandler(t, "application", wsgi.WithPythonCPUs(last))
	assert.Equal(t, []int{last}, workerAffinity(t, h), "pinned to the CPU given")

	_, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithPythonCPUs(1<<20))
	require.ErrorContains(t, err, "WithPythonCPUs(1048576): CPU 1048576 is not one this process may run on")
	_, err = wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithPythonCPUs())
	require.ErrorContains(t, err, "WithPythonCPUs(): give at least one CPU")
}

// spawningLog is a log handler that starts goroutines which block in a
// system call, so that Go needs new threads while a callback from a worker
// thread (wsgi.errors) runs.
type spawningLog struct{}

func (spawningLog) Enabled(context.Context, slog.Level) bool { return true }
func (s spawningLog) WithAttrs([]slog.Attr) slog.Handler     { return s }
func (s spawningLog) WithGroup(string) slog.Handler          { return s }
func (spawningLog) Handle(context.Context, slog.Record) error {
	for range 4 {
		go func() {
			ts := syscall.NsecToTimespec(int64(30 * time.Millisecond))
			syscall.Nanosleep(&ts, nil)
		}()
	}
	return nil
}

// goThreadsOn lists the threads of Go's runtime (those asleep in a system
// call made from the program's own code, not libc's, as Python's workers
// are) that may run only on cpu.
func goThreadsOn(t *testing.T, cpu int) []string {
	exe, err := os.Readlink("/proc/self/exe")
	require.NoError(t, err)
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	var code [][2]uint64
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[5] == exe && strings.Contains(f[1], "x") {
			var lo, hi uint64
			_, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi)
			require.NoError(t, err)
			code = append(code, [2]uint64{lo, hi})
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	var out []string
	for _, task := range tasks {
		sc, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
		f := strings.Fields(string(sc))
		if len(f) < 3 {
			continue // running, or gone
		}
		var pc uint64
		if _, err := fmt.Sscanf(f[len(f)-1], "0x%x", &pc); err != nil {
			continue
		}
		if !slices.ContainsFunc(code, func(r [2]uint64) bool { return pc >= r[0] && pc < r[1] }) {
			continue
		}
		var tid int
		fmt.Sscan(task.Name(), &tid)
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) == nil && set.Count() == 1 && set.IsSet(cpu) {
			out = append(out, task.Name())
		}
	}
	return out
}

// A thread Go starts while a callback runs on a pinned worker thread (here
// wsgi.errors reaching a log handler) is not cloned from that thread: it
// would keep the worker's CPU, and run Go's work there for good.
func TestPythonCPUsStayOffGoThreads(t *testing.T) {
	allowed := pinnableCPUs(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(16)) // room for new threads
	last := allowed[len(allowed)-1]
	h, _ := newHandler(t, "application", wsgi.WithPythonCPUs(last), wsgi.WithThreads(4),
		wsgi.WithLogger(slog.New(spawningLog{})))
	srv := serve(t, h)
	slow := startGated(t, srv) // the others queue for the workers
	defer slow.open()
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() { get(t, srv, "/errors") })
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // the goroutines' threads go back to sleep
	assert.Empty(t, goThreadsOn(t, last), "threads of Go's runtime pinned to the CPU of Python's workers")
}
