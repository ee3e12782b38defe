package main

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The bodies every server must send, byte for byte: the same as the apps in
// bench/apps/apps.py, flaskapp.py and djangoapp.py.
var (
	helloBody  = []byte("Hello, World!")
	djangoBody = []byte(`{"hello": "world"}`)
	bigBody    = bytes.Repeat([]byte("x"), 1<<20)
	streamPart = bytes.Repeat([]byte("s"), 1024)
	streamBody = bytes.Repeat(streamPart, 100)
	echoBody   = bytes.Repeat([]byte("p"), 64<<10) // what the wrk script POSTs
)

// echoBufs holds the buffers of /echo, for bodies up to echoBufSize.
var echoBufs = sync.Pool{New: func() any { b := make([]byte, echoBufSize); return &b }}

const echoBufSize = 1 << 20

// serveBare runs the ceiling of the comparison: a bare net/http server that
// answers each workload's path with the bytes the WSGI apps send, doing no
// more work than it must. It is the harness binary itself, started as
// `compare -bare ADDR`, and it runs until it is killed.
//
// With burn (go-view and go-gil), /flask and /django first burn the CPU
// time their view costs in Python alone (burn["flask"] and burn["django"]):
// what Go's own HTTP serving costs around a view that long. The burn runs
// on the request's goroutine, or with gil on one locked thread that takes
// the requests one at a time, as one GIL with nothing else on it would.
func serveBare(addr string, burn map[string]time.Duration, gil bool) {
	mux := http.NewServeMux()
	hello := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "13")
		w.Write(helloBody)
	}
	django := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(djangoBody)))
		w.Write(djangoBody)
	}
	mux.HandleFunc("/hello", hello)
	mux.HandleFunc("/flask", burner(burn["flask"], gil, hello))
	mux.HandleFunc("/django", burner(burn["django"], gil, django))
	// io and mixed wait as the views do; mixed's Python work has no
	// counterpart here.
	mux.HandleFunc("/io", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		hello(w, r)
	})
	mux.HandleFunc("/mixed", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond)
		hello(w, r)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(bigBody)))
		w.Write(bigBody)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read the whole body first, as the WSGI app does: by its length,
		// into a buffer of that size (reused, so that the garbage collector
		// does not set the pace). Then send it.
		var body []byte
		var err error
		if n := r.ContentLength; n >= 0 && n <= echoBufSize {
			buf := echoBufs.Get().(*[]byte)
			defer echoBufs.Put(buf)
			body = (*buf)[:n]
			_, err = io.ReadFull(r.Body, body)
		} else {
			body, err = io.ReadAll(r.Body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length, one flush per chunk: chunked encoding, the
		// plain way to stream from a Go handler. gowsgi sends a
		// generator's chunks while it produces the next, so chunks
		// yielded during a write leave together: it can pass this.
		w.Header().Set("Content-Type", "application/octet-stream")
		f := w.(http.Flusher)
		for range 100 {
			w.Write(streamPart)
			f.Flush()
		}
	})
	log.Fatal(http.ListenAndServe(addr, mux))
}

// burner returns h preceded by d of CPU work, on the request's goroutine or
// (gil) on the one thread of runOne.
func burner(d time.Duration, gil bool, h http.HandlerFunc) http.HandlerFunc {
	if d <= 0 {
		return h
	}
	n := spinsFor(d)
	if !gil {
		return func(w http.ResponseWriter, r *http.Request) {
			spin(n)
			h(w, r)
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		runOne(n)
		h(w, r)
	}
}

// One thread runs the burns of go-gil, one at a time.
var (
	gilOnce sync.Once
	gilJobs chan gilJob
)

type gilJob struct {
	n    int
	done chan struct{}
}

// runOne has the GIL thread spin n times and waits for it.
func runOne(n int) {
	gilOnce.Do(func() {
		gilJobs = make(chan gilJob, 1024)
		go func() {
			runtime.LockOSThread()
			for j := range gilJobs {
				spin(j.n)
				close(j.done)
			}
		}()
	})
	j := gilJob{n, make(chan struct{})}
	gilJobs <- j
	<-j.done
}

// spinSink keeps the compiler from dropping spin's work.
var spinSink atomic.Uint64

// spin does n rounds of a little integer arithmetic.
func spin(n int) {
	x := uint64(n) | 1
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	spinSink.Add(x)
}

// spinsFor returns how many rounds of spin take d of CPU time, measured
// on this thread before the server starts: the median of batches of about
// 20 ms each.
func spinsFor(d time.Duration) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const n = 1 << 20
	spin(n) // warm up
	var per []float64
	for range 9 {
		t0 := threadCPU()
		k := 0
		for threadCPU()-t0 < 20*time.Millisecond {
			spin(n)
			k++
		}
		per = append(per, float64(threadCPU()-t0)/float64(k*n))
	}
	slices.Sort(per)
	return int(float64(d) / per[len(per)/2])
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}
