package wsgi

/*
#include <unistd.h>
#include "cpython.h"
*/
import "C"

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// A request is one HTTP request on its way through the app: ServeHTTP
// makes it, serve submits it to the interpreter's scheduler and pump sends
// what the app produces, batch by batch, until the end. Everything the
// response needs is here or passed down; what outlives the request is in
// its slot.
type request struct {
	h  *Handler
	m  *member
	ip *interp
	s  *slot
	w  http.ResponseWriter
	r  *http.Request
	id requestID

	early earlyBody

	resp response // what has been sent, and how

	queued bool // waiting in the scheduler's queue: the client may leave
	ended  bool // C reported the end: the slot's job is free again

	// Set by callbacks on Python's threads, read here.
	tooLarge atomic.Bool // the body passed WithMaxRequestBody
	mu       sync.Mutex
	panicked any // a panic a callback recovered, re-raised on this goroutine

	// The writer that sends while a request runs on this goroutine's own
	// thread (GOWSGI_RAN_WRITER).
	writerDone  chan struct{}
	writerTimer *time.Timer
	writerOff   bool // under mu: the call to C returned, a late timer must not claim
	writerPanic any

	watch *watch // WithRequestTimeout
}

// serve runs the app for rq and sends its response.
func (rq *request) serve() {
	s := rq.s
	gen := s.guard.begin(rq)
	defer s.guard.end()

	var flags C.int
	var https bool
	s.env, https = rq.h.packEnviron(s.env[:0], rq.r)
	if https {
		flags |= C.GOWSGI_HTTPS
	}
	if rq.r.Method == http.MethodHead {
		flags |= C.GOWSGI_HEAD
	}
	if rq.h.opts.optimizeHeaders {
		flags |= C.GOWSGI_OPTIMIZE_HEADERS
	}
	if rq.early.eof {
		flags |= C.GOWSGI_BODY_EOF
	}
	if err := s.setEnv(); err != nil {
		rq.ended = true
		rq.fail(err)
		return
	}
	in := s.in
	in.flags = flags
	in.handle = C.uintptr_t(s.id)
	in.gen = C.uint64_t(gen)
	in.ilen = C.size_t(rq.early.n)
	if d := rq.h.opts.requestTimeout; d > 0 {
		defer rq.watchTimeout(d)()
	}
	defer func() {
		// A panic of the ResponseWriter leaves the job running: it
		// must end before the slot serves another request.
		if !rq.ended {
			rq.drain()
		}
	}()

	rc := C.gowsgi_job_submit(rq.ip.sched, s.job, cptr(s.hdrbuf), s.ev)
	if rq.writerTimer != nil && !rq.writerTimer.Stop() {
		// The timer fired, and its goroutine may not have claimed yet:
		// once this request ends, the slot's job is the next request's,
		// which a late claim would take from it.
		rq.mu.Lock()
		rq.writerOff = true
		rq.mu.Unlock()
	}
	switch rc {
	case C.GOWSGI_RAN:
		rq.repanic()
		rq.pump(true)
	case C.GOWSGI_RAN_WRITER:
		<-rq.writerDone
		rq.repanic()
		if p := rq.writerPanic; p != nil {
			panic(p)
		}
	case C.GOWSGI_QUEUED:
		rq.queued = true
		rq.pump(false)
	case C.GOWSGI_FULL:
		rq.ended = true
		rq.refuse(errQueueFull)
	default: // GOWSGI_REFUSED: the interpreter is shutting down
		rq.ended = true
		rq.refuse(ErrClosed)
	}
}

// pump reads the job's events and sends them, until the end. have says
// s.ev already holds the first event.
func (rq *request) pump(have bool) {
	s := rq.s
	consumed, stop := -1, 0
	for {
		if !have {
			C.gowsgi_job_next(s.job, C.int(consumed), C.int(stop), cptr(s.hdrbuf), s.ev)
			consumed = -1
		}
		have = false
		ev := s.ev
		if ev.hdrlen > 0 {
			rq.setHeaders(s.hdrbuf[:ev.hdrlen], int(ev.statuslen), int(ev.status))
		}
		switch ev.state {
		case C.GOWSGI_WAIT:
			if !rq.await() {
				return
			}
		case C.GOWSGI_MORE:
			rq.queued = false
			if ev.end != 0 {
				rq.h.stats.served.Add(1) // counted before the client can have it all
			}
			if stop == 0 {
				rq.repanic()
				rq.sendBatch(ev)
			}
			stop = rq.stopWanted(stop)
			if ev.end == 0 {
				consumed = int(ev.batch)
				continue
			}
			// The last batch, and the end with it.
			end, perr := int(ev.end), ev.err
			ev.err = C.gowsgi_error{}
			if ev.owned != 0 {
				C.gowsgi_job_next(s.job, ev.batch, C.int(stop), cptr(s.hdrbuf), s.ev)
				C.gowsgi_error_free(&s.ev.err)
			}
			rq.end(end, &perr, stop, false)
			return
		case C.GOWSGI_FILE:
			rq.queued = false
			rq.sendFile(int(ev.fd), int64(ev.filesize))
			C.gowsgi_job_file_sent(s.job)
			stop = rq.stopWanted(stop)
		default: // GOWSGI_DONE, GOWSGI_ERROR
			rq.end(int(ev.state), &ev.err, stop, true)
			return
		}
	}
}

// end finishes the response once C reported the end of the request: done
// (close() may have raised, in perr), or failed with perr. count says it
// is not counted yet.
func (rq *request) end(state int, perr *C.gowsgi_error, stop int, count bool) {
	rq.ended = true
	if count {
		rq.h.stats.served.Add(1)
	}
	if state == C.GOWSGI_ERROR {
		rq.repanic()
		rq.fail(takeError(perr))
		return
	}
	if perr._type != nil {
		rq.logError(evCloseError, "wsgi: the iterable's close() raised", takeError(perr))
	}
	rq.repanic()
	if stop != 2 && !rq.resp.failed {
		rq.finishBody()
	}
}

// stopWanted tells C to stop the body (2: the client is gone, 1: no more
// is wanted), once.
func (rq *request) stopWanted(stop int) int {
	switch {
	case stop != 0:
		return stop
	case rq.resp.werr != nil || rq.resp.failed:
		return 2
	case rq.resp.stop:
		return 1
	}
	return 0
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// await waits for the job's next event. While the request is queued, the
// client may leave and WithQueueTimeout may pass: a request still in the
// queue then never runs, and await returns false.
func (rq *request) await() bool {
	if !rq.queued {
		rq.s.waitLong()
		return true
	}
	var deadline time.Time
	if d := rq.h.opts.queueTimeout; d > 0 {
		deadline = time.Now().Add(d)
	}
	ctx := rq.r.Context()
	if rq.s.setDeadline(deadline) != nil {
		return true // the slot's eventfd is closed: cannot happen
	}
	// The client leaving cuts the wait short: its deadline is set first,
	// or the watch would find it overwritten. A watch that has started is
	// waited for: run late, it would cut the slot's next request's.
	rq.s.dirty = true
	watched := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(watched)
		rq.s.efd.SetReadDeadline(aLongTimeAgo)
	})
	defer func() {
		if !stopWatch() {
			<-watched
		}
	}()
	err := rq.s.wait()
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return true // something came, or nothing wrong: ask again
	}
	if C.gowsgi_job_cancel(rq.ip.sched, rq.s.job) == 0 {
		rq.queued = false // it has started: wait for it as for any
		return true
	}
	rq.ended = true
	if ctx.Err() == nil {
		rq.refuse(errQueueTimeout)
	}
	// else the client went away while queued: nobody to answer
	return false
}

// drain reads the job's events without sending anything, telling C the
// client is gone, until the end.
func (rq *request) drain() {
	s := rq.s
	consumed := -1
	for !rq.ended {
		switch C.gowsgi_job_next(s.job, C.int(consumed), 2, cptr(s.hdrbuf), s.ev) {
		case C.GOWSGI_WAIT:
			if rq.queued && C.gowsgi_job_cancel(rq.ip.sched, s.job) == 1 {
				rq.ended = true
				return
			}
			rq.queued = false
			s.waitLong()
			consumed = -1
		case C.GOWSGI_MORE:
			consumed = int(s.ev.batch)
		case C.GOWSGI_FILE:
			C.close(s.ev.fd)
			C.gowsgi_job_file_sent(s.job)
			consumed = -1
		default:
			C.gowsgi_error_free(&s.ev.err)
			rq.ended = true
		}
	}
}

// writerDelay is how long a request running on its goroutine's own thread
// may hold the chunks it produced before a writer starts sending them: a
// short iterable (a framework's response) ends well before, and is sent by
// the request's goroutine itself.
const writerDelay = 200 * time.Microsecond

// testHookWriterTimer, when set by a test, runs first in a writer timer's
// goroutine, to hold it back as a busy machine may.
var testHookWriterTimer atomic.Pointer[func()]

// armWriter starts a writer after writerDelay, unless the request's call to
// C has returned by then. On the request's goroutine, inside that call.
func (rq *request) armWriter() {
	if rq.writerDone == nil {
		rq.writerDone = make(chan struct{})
	}
	rq.writerTimer = time.AfterFunc(writerDelay, func() {
		if hook := testHookWriterTimer.Load(); hook != nil {
			(*hook)()
		}
		rq.mu.Lock()
		ok := !rq.writerOff && C.gowsgi_job_claim_writer(rq.s.job) == 1
		rq.mu.Unlock()
		if ok {
			rq.runWriter()
		}
	})
}

// startWriter starts the writer now. On the request's goroutine, inside
// its call to C, which has claimed the job's events for the writer.
func (rq *request) startWriter() {
	if rq.writerDone == nil {
		rq.writerDone = make(chan struct{})
	}
	go rq.runWriter()
}

// runWriter sends the response of a request running on its goroutine's own
// thread, in a call to C that goes on while the body is sent.
func (rq *request) runWriter() {
	finished := false
	defer close(rq.writerDone)
	defer func() {
		if finished {
			return
		}
		// The ResponseWriter panicked, or called runtime.Goexit (a
		// test's writer calling t.FailNow), which recover does not see:
		// the request's thread may wait for room, so the job is drained
		// here, and the request's goroutine panics with what happened.
		p := recover()
		if p == nil {
			p = errors.New("wsgi: the ResponseWriter ended its goroutine (runtime.Goexit) while the response was sent")
		}
		rq.writerPanic = p
		rq.drain()
	}()
	rq.pump(false)
	finished = true
}

// sendBatch sends one batch of body.
func (rq *request) sendBatch(ev *C.gowsgi_event) {
	r := &rq.resp
	if r.failed {
		return
	}
	segs := unsafe.Slice(ev.segs, int(ev.nseg))
	length := int64(ev.length)
	for _, sg := range segs {
		p := unsafe.Slice((*byte)(unsafe.Pointer(sg.p)), int(sg.n))
		var err error
		if sg.flags&C.GOWSGI_SEG_WRITE != 0 {
			err = rq.written(p)
		} else {
			err = rq.chunk(p, length)
		}
		if err != nil {
			rq.fail(err)
			return
		}
		if r.werr != nil || r.stop {
			break
		}
	}
	rq.flush()
}

// repanic re-raises, on the request goroutine, a panic that a callback
// recovered so that it would not unwind through Python's C frames.
func (rq *request) repanic() {
	rq.mu.Lock()
	p := rq.panicked
	rq.panicked = nil
	rq.mu.Unlock()
	if p != nil {
		panic(p)
	}
}
