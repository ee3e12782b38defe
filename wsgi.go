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
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrClosed is returned by [Handler.Reload] after shutdown has begun; a
// request that comes then gets 503 with Retry-After and never enters
// Python.
var ErrClosed = errors.New("wsgi: handler closed")

// Why a request was answered 503 without running: in the response body.
var (
	errQueueFull    = errors.New("wsgi: too many requests waiting for a thread (WithMaxQueue)")
	errQueueTimeout = errors.New("wsgi: timed out waiting for a thread (WithQueueTimeout)")
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
// [WithThreads] requests run in Python at once and the rest wait.
type Handler struct {
	opts   options
	log    *slog.Logger
	handle uintptr // this handler's key in handlers, passed to C

	reloadMu    sync.Mutex
	failed      []stamp        // the files as they were when a reload failed
	retiring    sync.WaitGroup // interpreters replaced and being ended
	restartOnce sync.Once
	stats       counters
	seq         atomic.Uint64 // numbers requests for their ids

	members   []*member
	slots     slotPool
	sendWatch sendWatch // WithSendTimeout

	active  atomic.Int64  // requests inside ServeHTTP past the shutdown check
	done    chan struct{} // closed when shutdown begins
	drained chan struct{} // signalled when active falls to 0 after done

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
		opts:      o,
		log:       o.logger,
		done:      make(chan struct{}),
		drained:   make(chan struct{}, 1),
		sendWatch: sendWatch{timeout: o.sendTimeout},
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.handle = register(h)
	for i := range n {
		ip, err := newInterp(&o, h.handle, o.pythonCPU(i))
		if err != nil {
			for _, m := range h.members {
				m.ip.Load().end(context.Background(), h.log)
			}
			unregister(h.handle)
			return nil, err
		}
		m := &member{}
		m.ip.Store(ip)
		h.members = append(h.members, m)
	}
	if o.expvarName != "" {
		h.publishExpvar(o.expvarName)
	}
	return h, nil
}

// ServeHTTP runs the app for r. See the package documentation for the
// environ it builds and how errors become HTTP.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID{h.handle, h.seq.Add(1)}
	if l := h.opts.accessLog; l != nil {
		l.serve(w, r, id, h.serveHTTP)
		return
	}
	h.serveHTTP(w, r, id)
}

// serveHTTP is a request's life: the limits, a slot, the start of the
// body, an interpreter, then the request itself (request.go).
func (h *Handler) serveHTTP(w http.ResponseWriter, r *http.Request, id requestID) {
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
	rq := &request{h: h, w: w, r: r, id: id}
	rq.resp.cl = -1
	if !h.enter() {
		rq.refuse(ErrClosed)
		return
	}
	defer h.leave()
	s, err := h.slots.get()
	if err != nil {
		rq.refuse(err)
		return
	}
	defer h.slots.put(s)
	defer rq.cleanup()
	rq.s = s
	rq.early = readEarly(r, s.ibuf())
	if h.opts.reloading {
		h.reloadIfChanged(w)
	}
	m := h.pick()
	defer m.load.Add(-1)
	ip := m.enter()
	defer ip.mu.RUnlock()
	rq.m, rq.ip = m, ip
	rq.serve()
}

// cleanup drops what the request kept once it is over.
func (rq *request) cleanup() {
	if rq.resp.wbuf != nil {
		rq.resp.wbuf.Close()
	}
	if rq.resp.watched != nil {
		rq.h.sendWatch.done(rq.resp.watched)
	}
	rq.s.out = rq.resp.out[:0]
	if p := rq.resp.pending; p != nil {
		clear(p[:cap(p)]) // the array outlives the request, not its strings
		rq.s.pending = p[:0]
	}
}

// enter counts a request in, unless shutdown has begun.
func (h *Handler) enter() bool {
	h.active.Add(1)
	select {
	case <-h.done:
		h.leave()
		return false
	default:
		return true
	}
}

func (h *Handler) leave() {
	if h.active.Add(-1) == 0 {
		select {
		case <-h.done:
			select {
			case h.drained <- struct{}{}:
			default:
			}
		default:
		}
	}
}

// Shutdown stops admitting requests (later ones get 503), waits for those
// in flight to finish, then ends the interpreter (a sub-interpreter that
// shares the GIL is recycled: see [SetMaxIdleInterpreters]). If ctx ends
// first, Shutdown returns its error and the interpreter keeps running for
// the requests still in flight; call Shutdown or Close again to finish.
// Calling it after the handler has ended is a no-op.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.closeOnce.Do(func() { close(h.done) })
	h.endMu.Lock()
	defer h.endMu.Unlock()
	if h.ended {
		return nil
	}
	for h.active.Load() > 0 {
		select {
		case <-h.drained:
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
	h.slots.freeAll()
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
