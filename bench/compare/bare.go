package main

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
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
func serveBare(addr string) {
	mux := http.NewServeMux()
	hello := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "13")
		w.Write(helloBody)
	}
	mux.HandleFunc("/hello", hello)
	mux.HandleFunc("/flask", hello)
	mux.HandleFunc("/django", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(djangoBody)))
		w.Write(djangoBody)
	})
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
