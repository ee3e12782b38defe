package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"time"
)

// A watch is a request's WithRequestTimeout: a timer that raises
// gowsgi.RequestTimeout in the request's thread once its Python has run
// for the timeout, and reports the request stuck if it has not come back
// after twice that.
type watch struct {
	mu       sync.Mutex
	timedOut bool // the timeout fired: the app's error is a 504; guarded by mu
	over     bool // the request has ended; guarded by mu
	stuck    bool // counted in Stats.Stuck; guarded by mu
	timer    *time.Timer
}

// testHookInterrupted, when set by a test, runs in the timeout's timer
// right after it has interrupted the request's thread, to hold the timer
// back as a busy machine may.
var testHookInterrupted atomic.Pointer[func()]

// fired reports whether the timeout fired. The app may raise the
// RequestTimeout, and the request fail, before the timer that raised it
// has returned from C: fired waits for that timer, which holds mu from
// before it interrupts the thread until it has recorded that it did.
func (wt *watch) fired() bool {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.timedOut
}

// watchTimeout arms the request timeout and returns the function that
// disarms it, which the request calls when it is done. The timeout counts
// from the app call: a request still queued when it first fires is given
// the time it has left, as C reports it.
func (rq *request) watchTimeout(d time.Duration) (disarm func()) {
	wt := &watch{}
	rq.watch = wt
	h, job, ip := rq.h, rq.s.job, rq.ip
	var fire func()
	fire = func() {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		if wt.over {
			return // a timer that fired late, for a request now gone
		}
		if left := C.gowsgi_job_interrupt(ip.c, job, C.int64_t(d)); left > 0 {
			wt.timer = time.AfterFunc(time.Duration(left), fire)
			return
		}
		if hook := testHookInterrupted.Load(); hook != nil {
			(*hook)()
		}
		wt.timedOut = true
		h.stats.timeouts.Add(1)
		wt.timer = time.AfterFunc(d, func() {
			wt.mu.Lock()
			defer wt.mu.Unlock()
			if !wt.over {
				// Log before counting, so whoever sees the count
				// also finds the line.
				rq.logError(evStuck, "wsgi: a timed-out request has not come back; its thread stays busy until it does",
					nil, "timeout", d)
				wt.stuck = true
				h.stats.stuck.Add(1)
			}
		})
	}
	wt.timer = time.AfterFunc(d, fire)
	return func() {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		wt.over = true
		wt.timer.Stop()
		if wt.stuck {
			wt.stuck = false
			rq.logAt(slogWarn, evUnstuck, "wsgi: a stuck request came back", nil)
			h.stats.stuck.Add(-1)
		}
	}
}
