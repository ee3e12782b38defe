package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"fmt"
	"sync/atomic"
	"time"
)

// A member is one interpreter of a handler: one for SubInterpreter and
// MainInterpreter, WithInterpreters of them for IsolatedInterpreters. Who
// runs a request inside it is the C scheduler's business (sched.c).
type member struct {
	ip   atomic.Pointer[interp] // swapped by ReloadInterpreter
	load atomic.Int64           // requests submitted to it and not ended

	// The figures of interpreters ReloadInterpreter retired, so that
	// Stats counts from the handler's start.
	retired struct {
		served, direct, backToBack, gaveWay atomic.Uint64
		queueWait, waitNs, gilWait          atomic.Int64
	}
}

// retire adds the figures of ip, which is being replaced, to m's.
func (m *member) retire(ip *interp) {
	var st C.gowsgi_sched_stats
	C.gowsgi_sched_stats_get(ip.sched, &st)
	m.retired.served.Add(uint64(st.served))
	m.retired.direct.Add(uint64(st.direct))
	m.retired.backToBack.Add(uint64(st.back_to_back))
	m.retired.gaveWay.Add(uint64(st.gave_way))
	m.retired.queueWait.Add(int64(st.queue_wait_ns))
	m.retired.waitNs.Add(int64(st.wait_ns))
	m.retired.gilWait.Add(int64(st.gil_wait_ns))
}

// enter returns the member's current interpreter, held shared until the
// caller's RUnlock so it cannot be ended under the request.
func (m *member) enter() *interp {
	for {
		ip := m.ip.Load()
		ip.mu.RLock()
		if !ip.dead {
			return ip
		}
		ip.mu.RUnlock() // replaced while we waited: take the new one
	}
}

// pick returns the member with the fewest requests, counting this one.
// Concurrent picks each see the other's count: a pick whose member's count
// moved meanwhile looks again.
func (h *Handler) pick() *member {
	if len(h.members) == 1 {
		h.members[0].load.Add(1)
		return h.members[0]
	}
	for {
		best := h.members[0]
		low := best.load.Load()
		for _, m := range h.members[1:] {
			if l := m.load.Load(); l < low {
				best, low = m, l
			}
		}
		if best.load.CompareAndSwap(low, low+1) {
			return best
		}
	}
}

// allowedCPUs returns the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var buf [1024]C.int
	n, err := C.gowsgi_allowed_cpus(&buf[0], C.int(len(buf)))
	if n < 0 {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = int(buf[i])
	}
	return cpus, nil
}

// A standbyWait is when a standby began to wait for the GIL and when it
// had it (0 if not yet), on the monotonic clock that Python's
// time.monotonic reads, its thread (threading.get_native_id), and why it
// waited: "at once", "stopped", "long" or "gone" (see cpython.h).
type standbyWait struct {
	At, Got time.Duration
	Tid     int
	Why     string
}

// standbyWaits returns the last of the first interpreter's standby waits,
// oldest first. For tests.
func (h *Handler) standbyWaits() []standbyWait {
	ip := h.members[0].enter()
	defer ip.mu.RUnlock()
	var buf [C.GOWSGI_SCHED_WAITS]C.gowsgi_sched_wait
	n := int(C.gowsgi_sched_waits(ip.sched, &buf[0], C.int(len(buf))))
	out := make([]standbyWait, n)
	for i := range out {
		why := "?"
		switch buf[i].why {
		case C.GOWSGI_STANDBY_AT_ONCE:
			why = "at once"
		case C.GOWSGI_STANDBY_STOPPED:
			why = "stopped"
		case C.GOWSGI_STANDBY_LONG:
			why = "long"
		case C.GOWSGI_STANDBY_GONE:
			why = "gone"
		}
		out[i] = standbyWait{time.Duration(buf[i].at), time.Duration(buf[i].got), int(buf[i].tid), why}
	}
	return out
}
