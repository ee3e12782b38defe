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

// A watch is the part of a slot that other goroutines touch: the timeout
// timer and callbacks from Python threads other than the request's.
type watch struct {
	// gen counts the slot's requests. C passes it back with every
	// callback, and the timer keeps the one it was armed for, so neither
	// can act on a later request that reuses the slot.
	gen atomic.Uint64
	// cb is held shared by a callback while it uses the request; the
	// request takes it before the slot is reused, so it waits for them.
	cb sync.RWMutex

	mu       sync.Mutex
	armed    bool        // a request is being watched; guarded by mu
	stuck    bool        // counted in Stats.Stuck; guarded by mu
	inCall   atomic.Bool // the request is inside a cgo call
	timedOut atomic.Bool // the timeout fired for the current request
}

// watch arms the request timeout for the slot's request and returns the
// function that disarms it, which the request calls when it is done.
func (s *slot) watch(ip *interp, d time.Duration) (disarm func()) {
	wt := s.wt
	gen := wt.gen.Load()
	wt.mu.Lock()
	wt.armed = true
	wt.timedOut.Store(false)
	// What a timer of an earlier request left must not reach this one.
	s.res.pending, s.res.interrupted, s.res.busy = 0, 0, 0
	wt.mu.Unlock()

	var stuckTimer *time.Timer
	timer := time.AfterFunc(d, func() {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		if !wt.armed || wt.gen.Load() != gen {
			return // a timer that fired late, for a request now gone
		}
		wt.timedOut.Store(true)
		s.h.stats.timeouts.Add(1)
		C.gowsgi_request_interrupt(ip.c, s.res)
		stuckTimer = time.AfterFunc(d, func() {
			wt.mu.Lock()
			defer wt.mu.Unlock()
			if wt.armed && wt.gen.Load() == gen && wt.inCall.Load() {
				// Log before counting, so whoever sees the count
				// also finds the line.
				s.h.log.Error("wsgi: a timed-out request is still in C code and cannot be interrupted; its thread stays busy until it returns",
					"method", s.r.Method, "path", s.r.URL.Path, "timeout", d)
				wt.stuck = true
				s.h.stats.stuck.Add(1)
			}
		})
	})
	return func() {
		timer.Stop()
		wt.mu.Lock()
		defer wt.mu.Unlock()
		if stuckTimer != nil {
			stuckTimer.Stop()
		}
		wt.armed = false
		if wt.stuck {
			wt.stuck = false
			s.h.log.Warn("wsgi: a stuck request came back", "method", s.r.Method, "path", s.r.URL.Path)
			s.h.stats.stuck.Add(-1)
		}
	}
}
