package wsgi

/*
#include <sys/eventfd.h>
#include <unistd.h>
#include "cpython.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// hdrBufSize holds the status and headers C reports, which must fit in 64
// KiB.
const hdrBufSize = 64 << 10

// A slot is what outlives a request: the C side of a request (a job, with
// its buffers), the eventfd through which C says it has something for Go,
// and the Go buffers reused by the slot's requests. A request takes a free
// slot for its life; slots are made as needed and kept by the handler.
// C refers to a slot by its id, which callbacks look up in slots.
type slot struct {
	id  uintptr
	job *C.gowsgi_job
	in  *C.gowsgi_job_in
	efd *os.File
	fd  C.int

	// Waiting for C: raw is efd's, through which the goroutine waits for
	// the eventfd to be written to, and ready tells it that C has cleared
	// the job's waiting flag (see wait). dirty says that a deadline may be
	// set on efd; only the goroutine of the slot's request touches it.
	raw   syscall.RawConn
	ready func(uintptr) bool
	dirty bool

	env     envBuf   // the packed environ, copied into the job
	hdrbuf  []byte   // headers C reports, hdrBufSize bytes
	out     []byte   // WithOutputBuffering's buffer
	pending []header // the array of a response's headers

	guard guard           // the request callbacks may use
	ev    *C.gowsgi_event // the job's last event, in C memory
}

// slots maps slot ids to slots for C's callbacks; an id of a freed slot
// finds nothing.
var (
	slots    sync.Map // uintptr -> *slot
	lastSlot atomic.Uintptr
)

func newSlot() (*slot, error) {
	fd, err := C.eventfd(0, C.EFD_NONBLOCK|C.EFD_CLOEXEC)
	if fd < 0 {
		return nil, fmt.Errorf("wsgi: eventfd: %w", err)
	}
	job := C.gowsgi_job_new(fd)
	if job == nil {
		C.close(fd)
		return nil, errors.New("wsgi: out of memory for a request")
	}
	s := &slot{
		id:     lastSlot.Add(1),
		job:    job,
		in:     C.gowsgi_job_in_of(job),
		efd:    os.NewFile(uintptr(fd), "wsgi-eventfd"), // pollable: fd is non-blocking
		fd:     fd,
		hdrbuf: make([]byte, hdrBufSize),
		ev:     (*C.gowsgi_event)(C.calloc(1, C.sizeof_gowsgi_event)),
	}
	waiting := (*int32)(unsafe.Pointer(C.gowsgi_job_waiting_of(job)))
	s.ready = func(uintptr) bool { return atomic.LoadInt32(waiting) == 0 }
	if s.raw, err = s.efd.SyscallConn(); err != nil {
		s.free()
		return nil, fmt.Errorf("wsgi: eventfd: %w", err)
	}
	slots.Store(s.id, s)
	return s, nil
}

// free releases the slot's C memory and eventfd. No request may use it.
func (s *slot) free() {
	slots.Delete(s.id)
	s.guard.end() // a late callback finds the request over
	C.gowsgi_job_free(s.job)
	C.free(unsafe.Pointer(s.ev))
	s.efd.Close()
	s.job, s.in = nil, nil
}

// ibuf is the job's input buffer, into which Go reads the start of the
// body before the request is submitted.
func (s *slot) ibuf() []byte {
	if s.in.ibuf == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(s.in.ibuf)), C.GOWSGI_IBUF_SIZE)
}

// setEnv copies the packed environ into the job.
func (s *slot) setEnv() error {
	if len(s.env) > int(s.in.envcap) && C.gowsgi_job_env_reserve(s.job, C.size_t(len(s.env))) != 0 {
		return errors.New("out of memory for the environ")
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(s.in.env)), len(s.env)), s.env)
	s.in.envlen = C.size_t(len(s.env))
	return nil
}

// wait blocks until C has something for Go, or until the eventfd's read
// deadline (see setDeadline) passes.
//
// C tells Go by clearing the job's waiting flag, which Go set when it last
// found nothing (gowsgi_job_next), and then writing to the eventfd. The
// goroutine checks the flag, and waits in Go's poller for the eventfd's
// next write only while it is still set. It never reads the eventfd: the
// poller watches it edge-triggered, so each write wakes it however high the
// counter stands (one per wait; it would take centuries to fill), and the
// flag, not the counter, says whether something came. A wait so costs no
// read, where reading the eventfd would cost two: one that finds it empty
// before the goroutine sleeps, one after.
func (s *slot) wait() error { return s.raw.Read(s.ready) }

// waitLong waits for C with no deadline.
func (s *slot) waitLong() {
	for s.setDeadline(time.Time{}) != nil || s.wait() != nil {
	}
}

// setDeadline sets the eventfd's read deadline (none when zero), unless it
// stands so already.
func (s *slot) setDeadline(t time.Time) error {
	if !s.dirty && t.IsZero() {
		return nil
	}
	if err := s.efd.SetReadDeadline(t); err != nil {
		return err
	}
	s.dirty = !t.IsZero()
	return nil
}

// A slotPool keeps a handler's idle slots.
type slotPool struct {
	mu   sync.Mutex
	idle []*slot
	all  []*slot
}

func (p *slotPool) get() (*slot, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	s, err := newSlot()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.all = append(p.all, s)
	p.mu.Unlock()
	return s, nil
}

func (p *slotPool) put(s *slot) {
	if cap(s.env) > 1<<20 {
		s.env = nil // one huge request should not pin its buffer
	}
	if cap(s.out) > 1<<20 {
		s.out = nil
	}
	if cap(s.pending) > 64 {
		s.pending = nil
	}
	p.mu.Lock()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// freeAll frees every slot; no request may be running.
func (p *slotPool) freeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.all {
		s.free()
	}
	p.all, p.idle = nil, nil
}

// A guard lets callbacks from Python threads reach the request that holds
// a slot, and no other: C passes back the generation it was given, and a
// request ends by moving the generation on, after the callbacks still
// running have let go of it.
type guard struct {
	gen atomic.Uint64
	mu  sync.RWMutex // held shared by a callback while it uses rq
	rq  *request
}

// begin makes rq the slot's request and returns the generation C passes
// back with its callbacks.
func (g *guard) begin(rq *request) uint64 {
	g.mu.Lock()
	g.rq = rq
	gen := g.gen.Load()
	g.mu.Unlock()
	return gen
}

// end waits for callbacks using the request, then refuses later ones.
func (g *guard) end() {
	g.mu.Lock()
	g.rq = nil
	g.gen.Add(1)
	g.mu.Unlock()
}

// enter returns the request of generation gen, held until release is
// called, or nil if that request has ended.
func (g *guard) enter(gen uint64) (rq *request, release func()) {
	g.mu.RLock()
	if g.rq == nil || g.gen.Load() != gen {
		g.mu.RUnlock()
		return nil, nil
	}
	return g.rq, g.mu.RUnlock
}

// slotOf returns the slot behind an id C passed back, or nil.
func slotOf(id C.uintptr_t) *slot {
	v, ok := slots.Load(uintptr(id))
	if !ok {
		return nil
	}
	return v.(*slot)
}
