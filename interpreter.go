package wsgi

/*
#cgo pkg-config: python3-embed
#cgo linux LDFLAGS: -ldl
#include <stdlib.h>
#include "cpython.h"
*/
import "C"

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

//go:embed bootstrap.py
var bootstrapSource string

// The process runtime: Python is started once, on the control thread, by the
// first handler, and lives until the process exits.
var rt struct {
	once     sync.Once
	err      error
	calls    chan func()
	settings runtimeSettings
	version  string // "3.11.2"
	major    int
	minor    int

	mu     sync.Mutex
	mainBy bool // a handler uses the main interpreter
}

// runtimeSettings are the process-wide options; they apply when the first
// handler starts Python.
type runtimeSettings struct {
	executable  string
	home        string
	optimize    int
	optimizeSet bool
}

// onControl runs f on the control thread: one goroutine locked to its OS
// thread for the life of the process, which starts Python and creates and
// ends interpreters, and never runs application code.
func onControl(f func()) {
	done := make(chan struct{})
	rt.calls <- func() { f(); close(done) }
	<-done
}

func controlLoop(calls <-chan func()) {
	runtime.LockOSThread() // never unlocked: this thread owns the main thread state
	for f := range calls {
		f()
	}
}

// startRuntime starts Python with s unless it already runs; then it checks
// that s agrees with the settings in force.
func startRuntime(s runtimeSettings) error {
	rt.once.Do(func() {
		rt.calls = make(chan func())
		go controlLoop(rt.calls)
		onControl(func() {
			cs := C.gowsgi_settings{optimize: C.int(s.optimize)}
			if s.executable != "" {
				cs.executable = C.CString(s.executable)
				defer C.free(unsafe.Pointer(cs.executable))
			}
			if s.home != "" {
				cs.home = C.CString(s.home)
				defer C.free(unsafe.Pointer(cs.home))
			}
			var cerr C.gowsgi_error
			if C.gowsgi_runtime_init(&cs, &cerr) != 0 {
				rt.err = fmt.Errorf("wsgi: start Python: %w", takeError(&cerr))
				return
			}
			var buf [128]C.char
			C.gowsgi_runtime_version(&buf[0], C.size_t(len(buf)))
			rt.version, _, _ = strings.Cut(C.GoString(&buf[0]), " ")
			fmt.Sscanf(rt.version, "%d.%d", &rt.major, &rt.minor)
		})
		rt.settings = s
	})
	if rt.err != nil {
		return rt.err
	}
	return checkSettings(rt.settings, s)
}

func checkSettings(have, want runtimeSettings) error {
	switch {
	case want.executable != "" && want.executable != have.executable:
		return fmt.Errorf("wsgi: WithPythonExecutable(%q): Python already runs with executable %s; it is process-wide and set by the first handler", want.executable, orDefault(have.executable))
	case want.home != "" && want.home != have.home:
		return fmt.Errorf("wsgi: WithPythonHome(%q): Python already runs with home %s; it is process-wide and set by the first handler", want.home, orDefault(have.home))
	case want.optimizeSet && want.optimize != have.optimize:
		return fmt.Errorf("wsgi: WithPythonOptimize(%d): Python already runs with optimize level %d; it is process-wide and set by the first handler", want.optimize, have.optimize)
	}
	return nil
}

func orDefault(s string) string {
	if s == "" {
		return "(the default)"
	}
	return strconv.Quote(s)
}

// PythonVersion returns the version of the CPython gowsgi is linked with,
// such as "3.11.2", or "" before the first handler starts Python.
func PythonVersion() string {
	return rt.version
}

// PythonLinkedStatically reports whether CPython is part of the program's
// own binary, linked from libpython's static archive (see "Linking Python
// statically" in the README), rather than loaded from a shared libpython.
func PythonLinkedStatically() bool {
	return C.gowsgi_python_static() != 0
}

// interp is one Python interpreter owned by a handler, and the scheduler
// that runs requests in it.
type interp struct {
	c        *C.gowsgi_interp
	sched    *C.gowsgi_sched
	main     bool
	sub      bool  // a sub-interpreter sharing the GIL: recycled at its end
	id       int64 // CPython's ID of the interpreter
	recycled bool  // it served an earlier handler, and was cleaned for this one

	// Requests hold mu shared while they use the interpreter; ending it
	// takes mu, so it waits for them.
	mu   sync.RWMutex
	dead bool

	files atomic.Pointer[[]stamp] // the app's source files, for reloading
}

// A stamp is what a stat of one source file said.
type stamp struct {
	path string
	mod  time.Time
	size int64
}

// newInterp creates an interpreter for a handler and loads its app.
func newInterp(o *options, handler uintptr, cpu int) (*interp, error) {
	ip := &interp{main: o.interpreter == MainInterpreter}
	if ip.main {
		rt.mu.Lock()
		taken := rt.mainBy
		rt.mainBy = true
		rt.mu.Unlock()
		if taken {
			return nil, fmt.Errorf("wsgi: WithInterpreter(MainInterpreter): another handler already uses the main interpreter; only one can, so use SubInterpreter for this one")
		}
	}
	kind := C.int(C.GOWSGI_SUB)
	switch o.interpreter {
	case MainInterpreter:
		kind = C.GOWSGI_MAIN
	case IsolatedInterpreters:
		if rt.major == 3 && rt.minor < 12 {
			return nil, fmt.Errorf("wsgi: WithInterpreter(IsolatedInterpreters) needs Python 3.12 or newer for interpreters with their own GIL; this is Python %s (build against another with PKG_CONFIG_PATH), or use SubInterpreter", rt.version)
		}
		if rt.major == 3 && rt.minor == 13 {
			// Pools of them corrupted memory on 3.13.0 and 3.13.15: a
			// later load compiled a damaged source (README, "Parallel
			// Python").
			return nil, fmt.Errorf("wsgi: WithInterpreter(IsolatedInterpreters): Python 3.13 (this is %s) corrupts memory with interpreters that have their own GIL; use 3.12, or 3.14 or newer, or SubInterpreter", rt.version)
		}
		kind = C.GOWSGI_ISOLATED
	}
	ip.sub = kind == C.GOWSGI_SUB
	if ip.sub {
		ip.c = reuseIdle(handler, o.logger)
		ip.recycled = ip.c != nil
	}
	if ip.c == nil {
		var cerr C.gowsgi_error
		onControl(func() {
			ip.c = C.gowsgi_interp_new(kind, C.uintptr_t(handler), &cerr)
		})
		if ip.c == nil {
			ip.releaseMain()
			return nil, fmt.Errorf("wsgi: create interpreter: %w", takeError(&cerr))
		}
		if ip.sub {
			recycling.created.Add(1)
		}
	}
	ip.id = int64(C.gowsgi_interp_id(ip.c))
	ip.sched = C.gowsgi_sched_new(ip.c, C.int(o.threads), C.int(o.maxQueue), C.int(cpu))
	if ip.sched == nil {
		ip.end(context.Background(), slog.New(slog.DiscardHandler))
		return nil, errors.New("wsgi: out of memory for the interpreter's scheduler")
	}
	if err := ip.load(o); err != nil {
		ip.end(context.Background(), slog.New(slog.DiscardHandler))
		return nil, err
	}
	return ip, nil
}

// nulJoin packs strings as C reads them: each NUL-terminated, one after
// the other.
func nulJoin(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(append(b, s...), 0)
	}
	return b
}

func cptr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

func (ip *interp) load(o *options) error {
	paths := nulJoin(o.pythonPath...)
	var mw []string
	for _, m := range o.middleware {
		mw = append(mw, m.module, m.callable)
	}
	mwb := nulJoin(mw...)
	boot := C.CString(bootstrapSource)
	defer C.free(unsafe.Pointer(boot))
	spec := C.CString(o.app)
	defer C.free(unsafe.Pointer(spec))
	var cerr C.gowsgi_error
	var files *C.char
	var fileslen C.size_t
	// One call; no thread lock needed, the thread state cache is per call.
	if C.gowsgi_interp_load(ip.c, boot, cptr(paths), C.size_t(len(paths)), spec,
		cptr(mwb), C.size_t(len(mwb)), boolInt(o.reloading || o.reload == ReloadInterpreter),
		boolInt(o.multiprocess), &files, &fileslen, &cerr) != 0 {
		pe := takeError(&cerr)
		if hint := refusalHint(pe, o.interpreter); hint != "" {
			return fmt.Errorf("wsgi: load %q: %w; %s", o.app, pe, hint)
		}
		return fmt.Errorf("wsgi: load %q: %w", o.app, pe)
	}
	ip.setFiles(files, fileslen)
	return nil
}

// reload reloads the app's modules in place (ReloadModule).
func (ip *interp) reload(spec string) error {
	var cerr C.gowsgi_error
	var files *C.char
	var fileslen C.size_t
	if C.gowsgi_interp_reload(ip.c, &files, &fileslen, &cerr) != 0 {
		return fmt.Errorf("wsgi: reload %q: %w", spec, takeError(&cerr))
	}
	ip.setFiles(files, fileslen)
	return nil
}

// setFiles records the stamps of the source files C listed, and frees the
// list.
func (ip *interp) setFiles(files *C.char, n C.size_t) {
	list := strings.Split(strings.TrimSuffix(string(cbytes(files, n)), "\x00"), "\x00")
	C.free(unsafe.Pointer(files))
	var stamps []stamp
	for _, f := range list {
		if f != "" {
			stamps = append(stamps, stampOf(f))
		}
	}
	ip.files.Store(&stamps)
}

func stampOf(path string) stamp {
	st := stamp{path: path, size: -1}
	if fi, err := os.Stat(path); err == nil {
		st.mod, st.size = fi.ModTime(), fi.Size()
	}
	return st
}

// changed returns the stamps of the app's files if any differs from the
// one recorded at load, else nil.
func (ip *interp) changed() []stamp {
	files := ip.files.Load()
	if files == nil {
		return nil
	}
	var now []stamp
	diff := false
	for _, f := range *files {
		st := stampOf(f.path)
		now = append(now, st)
		diff = diff || !st.mod.Equal(f.mod) || st.size != f.size
	}
	if !diff {
		return nil
	}
	return now
}

// end waits for the requests using the interpreter, then ends it: a
// sub-interpreter sharing the GIL is recycled (cleaned and kept for the
// next handler) when it can be, an own-GIL one is ended. Threads the app
// started get until ctx's deadline (or a moment, without one) to finish;
// an interpreter still running some is reported and left alive, since
// ending it would wait for them forever or abort the process, and reusing
// it would share them with the next app.
func (ip *interp) end(ctx context.Context, log *slog.Logger) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.dead {
		return
	}
	ip.dead = true
	threads := false
	if !ip.main {
		grace := time.After(100 * time.Millisecond)
		if _, ok := ctx.Deadline(); ok {
			grace = nil
		}
		for n, names := ip.threads(); n > 0; n, names = ip.threads() {
			wait := time.NewTimer(20 * time.Millisecond)
			select {
			case <-wait.C:
				continue
			case <-ctx.Done():
			case <-grace:
			}
			wait.Stop()
			log.Error("wsgi: threads the app started are still running, so its interpreter is left alive (its memory is not freed)",
				"event", evThreadsLeft, "count", n, "threads", names)
			threads = true
			break
		}
	}
	if ip.sched != nil {
		// The workers delete their thread states as they exit, before
		// the interpreter ends or is cleaned.
		C.gowsgi_sched_stop(ip.sched)
		C.gowsgi_sched_free(ip.sched)
		ip.sched = nil
	}
	if ip.sub && !threads && ip.recycle(log) {
		ip.c = nil
		return
	}
	if ip.sub {
		recycling.abandoned.Add(1)
	}
	onControl(func() { C.gowsgi_interp_end(ip.c) })
	ip.c = nil
	ip.releaseMain()
}

// threads returns how many threads the app started are alive, and their
// names.
func (ip *interp) threads() (int, string) {
	var names *C.char
	n := int(C.gowsgi_interp_threads(ip.c, &names))
	defer C.free(unsafe.Pointer(names))
	return n, C.GoString(names)
}

func (ip *interp) releaseMain() {
	if ip.main {
		rt.mu.Lock()
		rt.mainBy = false
		rt.mu.Unlock()
	}
}

var refusal = regexp.MustCompile(`module (\S+) does not support loading in subinterpreters|PyO3 modules .*subinterpreters`)

// refusalHint explains an extension module's refusal to load in a
// sub-interpreter, or returns "".
func refusalHint(pe *PythonError, kind Interpreter) string {
	if pe == nil || kind == MainInterpreter || !strings.Contains(pe.Type, "ImportError") {
		return ""
	}
	m := refusal.FindStringSubmatch(pe.Message)
	if m == nil {
		return ""
	}
	name := m[1]
	if name == "" {
		name = "a PyO3 extension"
	}
	if kind == IsolatedInterpreters {
		return fmt.Sprintf("the extension module %s does not support interpreters with their own GIL: use WithInterpreter(SubInterpreter) or MainInterpreter", name)
	}
	return fmt.Sprintf("the extension module %s does not support sub-interpreters: use WithInterpreter(MainInterpreter)", name)
}

// takeError copies a C error into a *PythonError and frees it.
func takeError(e *C.gowsgi_error) *PythonError {
	pe := &PythonError{
		Type:      C.GoString(e._type),
		Message:   C.GoString(e.message),
		Traceback: C.GoString(e.traceback),
	}
	// Freed here rather than by gowsgi_error_free: e, often a local,
	// would otherwise be moved to the heap to be passed to C.
	C.free(unsafe.Pointer(e._type))
	C.free(unsafe.Pointer(e.message))
	C.free(unsafe.Pointer(e.traceback))
	*e = C.gowsgi_error{}
	return pe
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// reloadIfChanged reloads the app when one of its files changed since it
// was loaded (WithScriptReloading). With ReloadProcess the current request
// is served by the old app with "Refresh: 0", and the restart function is
// called once.
func (h *Handler) reloadIfChanged(w http.ResponseWriter) {
	first := h.members[0]
	ip := first.ip.Load()
	now := ip.changed()
	if now == nil {
		return
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	if first.ip.Load() != ip || ip.changed() == nil || slices.Equal(now, h.failed) {
		return // reloaded meanwhile, or this version already failed
	}
	if h.opts.reload == ReloadProcess {
		w.Header().Set("Refresh", "0")
	}
	if err := h.reloadLocked(); err != nil {
		h.failed = now
		attrs := []any{"error", err.Error()}
		var pe *PythonError
		if errors.As(err, &pe) {
			attrs = append(attrs, "traceback", pe.Traceback)
		}
		h.log.Error("wsgi: reload failed; the old app keeps serving until its files change again", append([]any{"event", evReloadError}, attrs...)...)
		return
	}
	h.failed = nil
	h.log.Info("wsgi: reloaded the app", "event", evReloaded, "app", h.opts.app, "mechanism", h.opts.reload.String())
}

// Reload brings in the app's current code now, as WithReloadMechanism says,
// whether or not its files changed. If loading fails the old app keeps
// serving and the error, with its traceback, is returned.
func (h *Handler) Reload() error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	select {
	case <-h.done:
		return ErrClosed
	default:
	}
	return h.reloadLocked()
}

func (h *Handler) reloadLocked() error {
	switch h.opts.reload {
	case ReloadProcess:
		if f := h.opts.processReload; f != nil {
			h.restartOnce.Do(func() { go f() })
		}
		return nil
	case ReloadInterpreter:
		// Load every member's replacement first: if one fails, none is
		// swapped in.
		fresh := make([]*interp, len(h.members))
		for i := range fresh {
			ip, err := newInterp(&h.opts, h.handle, h.opts.pythonCPU(i))
			if err != nil {
				for _, f := range fresh[:i] {
					f.end(context.Background(), h.log)
				}
				return err
			}
			fresh[i] = ip
		}
		for i, m := range h.members {
			old := m.ip.Swap(fresh[i])
			h.retiring.Add(1)
			go func() {
				defer h.retiring.Done()
				old.mu.Lock() // after the requests still running on it
				m.retire(old)
				old.mu.Unlock()
				old.end(context.Background(), h.log)
			}()
		}
		return nil
	default:
		for _, m := range h.members {
			ip := m.enter()
			err := ip.reload(h.opts.app)
			ip.mu.RUnlock()
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// Recycling. A sub-interpreter that shares the GIL cannot be ended safely
// (see can_end in interp.c), so the end of a handler's interpreter
// cleans it (bootstrap.py's recycle) and keeps it here, idle, for the next
// handler that asks for a sub-interpreter. One that cannot be cleaned, or
// finds the pool full, is left alive unused, as every such interpreter
// was before recycling.
var recycling struct {
	mu      sync.Mutex
	idle    []*C.gowsgi_interp // cleaned, most recently closed last
	max     int
	maxSet  bool
	created atomic.Uint64
	kept    atomic.Uint64
	reused  atomic.Uint64

	abandoned atomic.Uint64
}

// defaultMaxIdle is how many cleaned interpreters are kept at most unless
// SetMaxIdleInterpreters says otherwise. Every interpreter kept lives
// until the process ends, and each OS thread caches the thread states of
// 16 live interpreters at most (TS_CACHE in interp.c); 8 leaves room for
// the handlers in use while covering a test binary's parallel tests and a
// service's reloads.
const defaultMaxIdle = 8

func maxIdle() int {
	if !recycling.maxSet {
		return defaultMaxIdle
	}
	return recycling.max
}

// SetMaxIdleInterpreters sets how many closed handlers' sub-interpreters
// are kept, cleaned, for later handlers (8 by default), and returns the
// previous bound. A handler that asks for a sub-interpreter
// ([SubInterpreter], the default, and [ReloadInterpreter]'s fresh
// interpreter) takes the one closed last, if any. 0 turns recycling off:
// a closed handler's sub-interpreter is then left alive as it is, its
// memory never returned. Lowering the bound leaves the idle interpreters
// beyond it alive but unused. The main interpreter and interpreters with
// their own GIL are never recycled. See the README for what a recycled
// interpreter keeps of the apps it ran.
func SetMaxIdleInterpreters(n int) int {
	if n < 0 {
		n = 0
	}
	recycling.mu.Lock()
	prev := maxIdle()
	recycling.max, recycling.maxSet = n, true
	var extra []*C.gowsgi_interp
	if len(recycling.idle) > n {
		extra = slices.Clone(recycling.idle[:len(recycling.idle)-n])
		recycling.idle = slices.Delete(recycling.idle, 0, len(recycling.idle)-n)
	}
	recycling.mu.Unlock()
	for _, c := range extra {
		recycling.abandoned.Add(1)
		onControl(func() { C.gowsgi_interp_end(c) })
	}
	return prev
}

// recycle cleans the interpreter for another handler and keeps it, unless
// recycling is off. It reports whether the interpreter was kept; if not,
// the caller ends it (leaves it alive).
func (ip *interp) recycle(log *slog.Logger) bool {
	recycling.mu.Lock()
	off := maxIdle() == 0
	recycling.mu.Unlock()
	if off {
		return false
	}
	var cerr C.gowsgi_error
	switch C.gowsgi_interp_recycle(ip.c, &cerr) {
	case 0:
	case 1:
		n, names := ip.threads()
		log.Error("wsgi: a thread started while the interpreter was cleaned for the next handler, so it is left alive (its memory is not freed)",
			"event", evThreadsLeft, "count", n, "threads", names)
		return false
	default:
		pe := takeError(&cerr)
		log.Error("wsgi: cleaning the interpreter for the next handler failed, so it is left alive (its memory is not freed)",
			"event", evRecycleError, "error", pe.Error(), "traceback", pe.Traceback)
		return false
	}
	recycling.mu.Lock()
	defer recycling.mu.Unlock()
	if len(recycling.idle) >= maxIdle() {
		log.Info("wsgi: the pool of idle interpreters is full, so this one is left alive unused (its memory is not freed); see SetMaxIdleInterpreters",
			"event", evPoolFull, "idle", len(recycling.idle))
		return false
	}
	recycling.idle = append(recycling.idle, ip.c)
	recycling.kept.Add(1)
	return true
}

// reuseIdle takes the interpreter closed last from the pool and gives it
// to the handler numbered handler, or returns nil when there is none.
func reuseIdle(handler uintptr, log *slog.Logger) *C.gowsgi_interp {
	for {
		recycling.mu.Lock()
		n := len(recycling.idle)
		if n == 0 {
			recycling.mu.Unlock()
			return nil
		}
		c := recycling.idle[n-1]
		recycling.idle = recycling.idle[:n-1]
		recycling.mu.Unlock()
		var cerr C.gowsgi_error
		if C.gowsgi_interp_reuse(c, C.uintptr_t(handler), &cerr) == 0 {
			recycling.reused.Add(1)
			return c
		}
		if log == nil {
			log = slog.Default()
		}
		log.Error("wsgi: readying a recycled interpreter failed, so it is left alive unused (its memory is not freed)",
			"event", evRecycleError, "error", takeError(&cerr).Error())
		recycling.abandoned.Add(1)
		onControl(func() { C.gowsgi_interp_end(c) })
	}
}
