package wsgi

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
	InFlight int64         // requests holding a thread: inside the app or writing its response
	Queued   int64         // requests waiting for a thread
	Served   uint64        // requests the app answered
	Errors   uint64        // app errors: 500s and aborted responses
	Timeouts uint64        // requests stopped by WithRequestTimeout (504 or aborted)
	Stuck    int64         // timed-out requests whose thread has not come back from C code
	Rejected uint64        // requests refused without running the app: 503 (queue full or timed out, shutting down) and 413
	SlotWait time.Duration // time requests spent waiting for a thread, in all

	// Interpreters has one entry per interpreter of the handler: one, or
	// WithInterpreters for IsolatedInterpreters.
	Interpreters []InterpreterStats
}

// InterpreterStats are the figures of one interpreter of a handler.
type InterpreterStats struct {
	Busy     int           // requests holding one of its threads
	Served   uint64        // requests it ran
	SlotWait time.Duration // time requests it ran had waited for a thread
}

// counters are the live values behind Stats.
type counters struct {
	inFlight, queued, stuck  atomic.Int64
	served, errors, timeouts atomic.Uint64
	rejected                 atomic.Uint64
	slotWait                 atomic.Int64 // nanoseconds
}

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	c := &h.stats
	st := Stats{
		InFlight: c.inFlight.Load(),
		Queued:   c.queued.Load(),
		Served:   c.served.Load(),
		Errors:   c.errors.Load(),
		Timeouts: c.timeouts.Load(),
		Stuck:    c.stuck.Load(),
		Rejected: c.rejected.Load(),
		SlotWait: time.Duration(c.slotWait.Load()),
	}
	h.pickMu.Lock()
	for _, m := range h.members {
		st.Interpreters = append(st.Interpreters, InterpreterStats{
			Busy:     m.busy,
			Served:   m.served.Load(),
			SlotWait: time.Duration(m.slotWait.Load()),
		})
	}
	h.pickMu.Unlock()
	return st
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
