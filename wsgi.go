package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Errors of the handler. A request refused for one of them gets 503 with
// Retry-After and never enters Python.
var (
	// ErrClosed: the handler is shutting down (or Reload after Close).
	ErrClosed = errors.New("wsgi: handler closed")
	// ErrQueueFull: WithMaxQueue requests were already waiting.
	ErrQueueFull = errors.New("wsgi: too many requests waiting for a thread")
	// ErrQueueTimeout: the request waited WithQueueTimeout for a thread.
	ErrQueueTimeout = errors.New("wsgi: timed out waiting for a thread")
)

// A PythonError is a Python exception copied into Go: loading errors from
// [NewHandler] wrap one.
type PythonError struct {
	Type      string // the exception's type, e.g. "ModuleNotFoundError"
	Message   string // str() of the exception
	Traceback string // the formatted traceback, as Python prints it
}

func (e *PythonError) Error() string {
	if e.Message == "" {
		return e.Type
	}
	return e.Type + ": " + e.Message
}

// A Handler serves one WSGI application as an http.Handler. It owns a
// Python interpreter (see [WithInterpreter]); many handlers, each with its
// own app, can live in one process. ServeHTTP is safe for concurrent use;
// [WithThreads] requests run in Python at once and the rest wait in Go.
type Handler struct {
	opts   options
	log    *slog.Logger
	handle uintptr // this handler's key in handlers, passed to C

	reloadMu    sync.Mutex
	failed      []stamp        // the files as they were when a reload failed
	retiring    sync.WaitGroup // interpreters replaced and being ended
	restartOnce sync.Once
	stats       counters

	slots   []slot
	members []*member
	pickMu  sync.Mutex
	tokens  chan struct{} // one per idle slot: the admission semaphore
	done    chan struct{} // closed when shutdown begins

	closeOnce sync.Once
	endMu     sync.Mutex
	ended     bool
}

// NewHandler starts Python if it is not running yet, creates the
// handler's interpreter and loads the app. A wrong module, a missing or
// uncallable attribute, an exception at import or a bad option fails here,
// never at the first request; a Python error comes wrapped as a
// *[PythonError] with its traceback.
func NewHandler(opts ...Option) (*Handler, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("wsgi: %w", err)
		}
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("wsgi: %w", err)
	}
	if err := startRuntime(o.runtime); err != nil {
		return nil, err
	}
	n := 1
	if o.interpreter == IsolatedInterpreters {
		n = o.interpreters
	}
	h := &Handler{
		opts:   o,
		log:    o.logger,
		slots:  make([]slot, n*o.threads),
		tokens: make(chan struct{}, n*o.threads),
		done:   make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.handle = register(h)
	for i := range n {
		ip, err := newInterp(&o, h.handle)
		if err != nil {
			for _, m := range h.members {
				m.ip.Load().end(context.Background(), h.log)
			}
			unregister(h.handle)
			return nil, err
		}
		m := &member{idx: i}
		m.ip.Store(ip)
		h.members = append(h.members, m)
	}
	for i := range h.slots {
		m := h.members[i/o.threads]
		h.slots[i].init(h, m, i)
		m.free = append(m.free, i)
		h.tokens <- struct{}{}
	}
	if o.expvarName != "" {
		h.publishExpvar(o.expvarName)
	}
	return h, nil
}

// ServeHTTP runs the app for r. See the package documentation for the
// environ it builds and how errors become HTTP.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l := h.opts.accessLog; l != nil {
		l.serve(w, r, h.serveHTTP)
		return
	}
	h.serveHTTP(w, r)
}

func (h *Handler) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if max := h.opts.maxBody; max > 0 {
		if r.ContentLength > max {
			h.stats.rejected.Add(1)
			w.Header().Set("Connection", "close")
			http.Error(w, "413 request entity too large", http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, max)
		}
	}
	early := readEarly(r)
	defer early.free()
	s, err := h.acquire(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away while waiting: nobody to answer
		}
		h.stats.rejected.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "503 service unavailable: "+strings.TrimPrefix(err.Error(), "wsgi: "), http.StatusServiceUnavailable)
		return
	}
	h.stats.inFlight.Add(1)
	defer h.stats.inFlight.Add(-1)
	defer h.release(s)
	defer h.stats.served.Add(1)
	defer s.m.served.Add(1)
	s.w, s.r, s.early = w, r, early
	if h.opts.reloading {
		h.reloadIfChanged(w)
	}
	ip := s.m.enter()
	defer ip.mu.RUnlock()
	if d := h.opts.requestTimeout; d > 0 {
		defer s.watch(ip, d)()
	}
	s.serve(ip)
}

// acquire waits for a free slot: until one frees, the request's context
// ends, the handler shuts down or WithQueueTimeout passes.
func (h *Handler) acquire(ctx context.Context) (*slot, error) {
	select {
	case <-h.done:
		return nil, ErrClosed
	default:
	}
	select {
	case <-h.tokens:
		return h.pick(), nil
	default:
	}
	if q := h.stats.queued.Add(1); h.opts.maxQueue > 0 && q > int64(h.opts.maxQueue) {
		h.stats.queued.Add(-1)
		return nil, ErrQueueFull
	}
	defer h.stats.queued.Add(-1)
	start := time.Now()
	defer func() { h.stats.slotWait.Add(int64(time.Since(start))) }()
	var expired <-chan time.Time
	if d := h.opts.queueTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-h.tokens:
		s := h.pick()
		s.m.slotWait.Add(int64(time.Since(start)))
		return s, nil
	case <-h.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-expired:
		return nil, ErrQueueTimeout
	}
}

// Shutdown stops admitting requests (later ones get 503), waits for those
// in flight to finish, then ends the interpreter. If ctx ends first,
// Shutdown returns its error and the interpreter keeps running for the
// requests still in flight; call Shutdown or Close again to finish. Calling
// it after the handler has ended is a no-op.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.closeOnce.Do(func() { close(h.done) })
	h.endMu.Lock()
	defer h.endMu.Unlock()
	if h.ended {
		return nil
	}
	taken := 0
	defer func() {
		if !h.ended {
			for ; taken > 0; taken-- {
				h.tokens <- struct{}{}
			}
		}
	}()
	for taken < len(h.slots) {
		select {
		case <-h.tokens:
			taken++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.reloadMu.Lock() // no reload may start a new interpreter now
	h.retiring.Wait()
	for _, m := range h.members {
		m.ip.Load().end(ctx, h.log)
	}
	h.reloadMu.Unlock()
	for i := range h.slots {
		h.slots[i].free()
	}
	unregister(h.handle)
	h.ended = true
	return nil
}

// Close is Shutdown without a deadline: it waits for requests in flight.
func (h *Handler) Close() error {
	return h.Shutdown(context.Background())
}

// C refers to a handler by a number, not a Go pointer. A number whose
// handler has ended finds nothing: an interpreter left alive after Close
// (see gowsgi_interp_end) may still call back, from an app's thread.
var (
	handlers   sync.Map // uintptr -> *Handler
	lastHandle atomic.Uintptr
)

func register(h *Handler) uintptr {
	id := lastHandle.Add(1)
	handlers.Store(id, h)
	return id
}

func unregister(id uintptr) { handlers.Delete(id) }

// handlerOf returns the handler behind a number C passed back, or nil.
func handlerOf(handle C.uintptr_t) *Handler {
	h, _ := handlers.Load(uintptr(handle))
	hh, _ := h.(*Handler)
	return hh
}

func cbytes(p *C.char, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}
