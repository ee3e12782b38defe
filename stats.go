package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"expvar"
	"sync"
	"sync/atomic"
	"time"
)

var (
	expvarMu       sync.Mutex
	expvarHandlers = map[string]*atomic.Pointer[Handler]{}
)

// Stats are a handler's counters since it was created. All fields are
// read at one moment, though not atomically together.
type Stats struct {
	InFlight int64  // requests being served: queued, in the app, or sending
	Running  int64  // requests holding a place: running Python, or blocked in it on I/O
	Queued   int64  // requests waiting for a place
	Blocked  int64  // requests whose Python waits for their client, holding no place
	Threads  int64  // worker threads the interpreters' schedulers keep
	Served   uint64 // responses the app completed
	Errors   uint64 // app errors: 500s and aborted responses
	Timeouts uint64 // requests stopped by WithRequestTimeout (504 or aborted)
	Stuck    int64  // timed-out requests that have not come back
	Rejected uint64 // requests refused without running the app: 503 (queue full or timed out, shutting down) and 413

	// QueueWait is the time requests spent queued before they started, in
	// all; PlaceWait, the time requests that had given their place back
	// (waiting for a client) waited for one to go on; GILWait, the time
	// threads waited for the GIL to run a request's Python. Together they
	// are what requests lost to other requests.
	QueueWait time.Duration
	PlaceWait time.Duration
	GILWait   time.Duration

	// Interpreters has one entry per interpreter of the handler: one, or
	// WithInterpreters for IsolatedInterpreters.
	Interpreters []InterpreterStats
}

// InterpreterStats are the figures of one interpreter of a handler.
type InterpreterStats struct {
	Running int64 // requests holding one of its places
	Queued  int64 // requests waiting for one
	Blocked int64 // requests waiting for their client
	Threads int64 // its scheduler's worker threads

	Served     uint64 // requests it ran
	Direct     uint64 // of which on the thread of the request's own goroutine
	BackToBack uint64 // of which right after another on a thread that kept the GIL
	// GaveWay counts the requests after which a thread running requests
	// back to back handed the GIL to a standby waiting for it, rather than
	// be cut in the middle of the next one by CPython's switch interval.
	// While requests are Python-bound the standby watches rather than
	// waits, and this stays near zero.
	GaveWay uint64

	QueueWait time.Duration
	PlaceWait time.Duration
	GILWait   time.Duration

	// ID is CPython's number of the interpreter (PyInterpreterState_GetID).
	// A recycled interpreter keeps its number from handler to handler.
	ID int64
	// Recycled says the interpreter served an earlier handler (or an
	// earlier version of the app, with ReloadInterpreter) and was cleaned
	// for this one. See [SetMaxIdleInterpreters].
	Recycled bool
}

// RecyclingStats count, for the whole process, what became of the
// sub-interpreters that share the GIL ([SubInterpreter]): since they
// cannot be ended safely, a closed handler's is cleaned and kept for the
// next handler. The counts run from the start of the process.
type RecyclingStats struct {
	Created  uint64 // sub-interpreters created
	Recycled uint64 // closed handlers' (and reloads') interpreters cleaned and kept
	Reused   uint64 // interpreters handed from the pool to a new handler or reload
	// Abandoned counts the interpreters left alive unused, their memory
	// not returned: threads the app started were still running, cleaning
	// failed, the pool was full, or recycling is off.
	Abandoned uint64
	Idle      int // interpreters kept now, waiting for a handler
	MaxIdle   int // the bound on Idle, see SetMaxIdleInterpreters
}

// Recycling returns the process's [RecyclingStats].
func Recycling() RecyclingStats {
	recycling.mu.Lock()
	defer recycling.mu.Unlock()
	return RecyclingStats{
		Created:   recycling.created.Load(),
		Recycled:  recycling.kept.Load(),
		Reused:    recycling.reused.Load(),
		Abandoned: recycling.abandoned.Load(),
		Idle:      len(recycling.idle),
		MaxIdle:   maxIdle(),
	}
}

// counters are the live values behind Stats.
type counters struct {
	stuck                    atomic.Int64
	served, errors, timeouts atomic.Uint64
	rejected                 atomic.Uint64
}

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	c := &h.stats
	st := Stats{
		InFlight: h.active.Load(),
		Served:   c.served.Load(),
		Errors:   c.errors.Load(),
		Timeouts: c.timeouts.Load(),
		Stuck:    c.stuck.Load(),
		Rejected: c.rejected.Load(),
	}
	for _, m := range h.members {
		is := m.stats()
		st.Running += is.Running
		st.Queued += is.Queued
		st.Blocked += is.Blocked
		st.Threads += is.Threads
		st.QueueWait += is.QueueWait
		st.PlaceWait += is.PlaceWait
		st.GILWait += is.GILWait
		st.Interpreters = append(st.Interpreters, is)
	}
	return st
}

// stats reads the member's current interpreter's scheduler, plus what
// interpreters it replaced had counted.
func (m *member) stats() InterpreterStats {
	var st C.gowsgi_sched_stats
	ip := m.ip.Load()
	ip.mu.RLock()
	if !ip.dead && ip.sched != nil {
		C.gowsgi_sched_stats_get(ip.sched, &st)
	}
	ip.mu.RUnlock()
	r := &m.retired
	return InterpreterStats{
		ID:         ip.id,
		Recycled:   ip.recycled,
		Running:    int64(st.running),
		Queued:     int64(st.queued),
		Blocked:    int64(st.blocked),
		Threads:    int64(st.workers),
		Served:     uint64(st.served) + r.served.Load(),
		Direct:     uint64(st.direct) + r.direct.Load(),
		BackToBack: uint64(st.back_to_back) + r.backToBack.Load(),
		GaveWay:    uint64(st.gave_way) + r.gaveWay.Load(),
		QueueWait:  time.Duration(int64(st.queue_wait_ns) + r.queueWait.Load()),
		PlaceWait:  time.Duration(int64(st.wait_ns) + r.waitNs.Load()),
		GILWait:    time.Duration(int64(st.gil_wait_ns) + r.gilWait.Load()),
	}
}

// publishExpvar makes Stats visible as the expvar name (on /debug/vars
// when expvar's handler is mounted). expvar names are process-wide and
// cannot be removed: a later handler with the same name takes it over.
func (h *Handler) publishExpvar(name string) {
	expvarMu.Lock()
	defer expvarMu.Unlock()
	if v, ok := expvarHandlers[name]; ok {
		v.Store(h)
		return
	}
	p := new(atomic.Pointer[Handler])
	p.Store(h)
	expvarHandlers[name] = p
	expvar.Publish(name, expvar.Func(func() any { return p.Load().Stats() }))
}
