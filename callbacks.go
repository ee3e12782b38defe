package wsgi

// The Go functions C calls back, all in this file: a Go file with //export
// may not define C in its preamble (cmd/cgo), so it only includes the
// header. C calls each with the GIL released, from the thread running the
// request's Python (a worker's, or the submitting goroutine's own) or from
// a thread the app started. None may let a panic unwind through Python's
// C frames: each recovers, records the panic on the request and returns an
// error, which C raises in Python; the request goroutine re-panics.

/*
#include "cpython.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
)

// go_input_read fills buf with up to n bytes of the request body. Returns
// the count, 0 at the end of the body, or -1 with a message in msg.
//
//export go_input_read
func go_input_read(slotID C.uintptr_t, gen C.uint64_t, buf *C.char, n C.size_t, msg *C.char, msgcap C.size_t) (got C.longlong) {
	lockCallerThread()
	defer runtime.UnlockOSThread()
	s := slotOf(slotID)
	if s == nil {
		putMsg(msg, msgcap, "the request has ended")
		return -1
	}
	rq, release := s.guard.enter(uint64(gen))
	if rq == nil {
		putMsg(msg, msgcap, "the request has ended")
		return -1
	}
	// The read may block on the client for long: not under the guard,
	// so the request can end meanwhile (an app thread may read after the
	// response); what it reads stays the old request's.
	body, readErr := rq.r.Body, rq.early.err
	release()
	defer rq.recoverInto(s, uint64(gen), &got, msg, msgcap)
	p := cbytes(buf, n)
	for {
		k, err := 0, readErr
		if err == nil {
			k, err = body.Read(p)
		}
		if k > 0 {
			return C.longlong(k)
		}
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				rq.tooLarge.Store(true)
				err = fmt.Errorf("the request body is larger than the limit of %d bytes (WithMaxRequestBody)", tooLarge.Limit)
			}
			putMsg(msg, msgcap, err.Error())
			return -1
		}
	}
}

// lockCallerThread locks the goroutine of a callback from a thread Python
// runs on to that thread until the callback returns
// (runtime.UnlockOSThread). While it is locked, Go starts the threads it
// needs from its template thread rather than clone them from this one: a
// clone would take the worker's name for good, and its CPU under
// WithPythonCPUs. Go may still clone one before the lock is taken (a
// preemption in the callback's first steps): C lifts the pinning for the
// length of the call (go_call_enter in sched.c), so that such a thread at
// least runs anywhere.
func lockCallerThread() { runtime.LockOSThread() }

// go_log logs one line the app wrote to wsgi.errors, with the request's
// attributes while the request lasts. A line from an app whose handler has
// ended goes to slog.Default().
//
//export go_log
func go_log(handler, slotID C.uintptr_t, gen C.uint64_t, p *C.char, n C.size_t) {
	lockCallerThread()
	defer runtime.UnlockOSThread()
	defer func() { recover() }() // a failing log handler must not take Python down
	line := string(cbytes(p, n))
	if s := slotOf(slotID); s != nil && slotID != 0 {
		if rq, release := s.guard.enter(uint64(gen)); rq != nil {
			defer release()
			rq.logLine(line)
			return
		}
	}
	log := slog.Default()
	if h := handlerOf(handler); h != nil {
		log = h.log
	}
	log.Error("wsgi.errors", "event", evErrorsLine, "line", line)
}

// go_arm_writer has a writer start soon, unless the request, running on
// the thread of the Go call that submitted it, ends first. That call is on
// the request's own goroutine, and so is this callback.
//
//export go_arm_writer
func go_arm_writer(slotID C.uintptr_t, gen C.uint64_t) {
	if rq := requestOf(slotID, gen); rq != nil {
		rq.armWriter()
	}
}

// go_start_writer starts the writer now, on the same terms.
//
//export go_start_writer
func go_start_writer(slotID C.uintptr_t, gen C.uint64_t) {
	if rq := requestOf(slotID, gen); rq != nil {
		rq.startWriter()
	}
}

// requestOf returns the request of a slot and generation, or nil. Only for
// callbacks on the request's own goroutine, which the request cannot end
// under.
func requestOf(slotID C.uintptr_t, gen C.uint64_t) *request {
	s := slotOf(slotID)
	if s == nil {
		return nil
	}
	rq, release := s.guard.enter(uint64(gen))
	if rq != nil {
		release()
	}
	return rq
}

// recoverInto turns a panic into a -1 result for C, keeping the panic for
// the request goroutine to re-raise; a panic in a callback of a request
// that has since ended (a read from the app's own thread) is logged.
func (rq *request) recoverInto(s *slot, gen uint64, rc *C.longlong, msg *C.char, msgcap C.size_t) {
	p := recover()
	if p == nil {
		return
	}
	putMsg(msg, msgcap, fmt.Sprint("panic in the Go request path: ", p))
	*rc = -1
	if cur, release := s.guard.enter(gen); cur == rq {
		rq.mu.Lock()
		rq.panicked = p
		rq.mu.Unlock()
		release()
		return
	}
	rq.h.log.Error("wsgi: panic in a wsgi.input read after the request ended", "event", evLatePanic, "panic", fmt.Sprint(p))
}

// putMsg copies s into C's message buffer, NUL-terminated and cut to fit.
func putMsg(msg *C.char, msgcap C.size_t, s string) {
	b := cbytes(msg, msgcap)
	if len(b) == 0 {
		return
	}
	n := copy(b[:len(b)-1], s)
	b[n] = 0
}
