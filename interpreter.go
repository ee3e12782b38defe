package wsgi

/*
#cgo pkg-config: python3-embed
#include "cpython.h"
*/
import "C"

import (
	_ "embed"
	"fmt"
	"runtime"
	"strings"
	"sync"
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
	executable string
	home       string
	optimize   int
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
		return fmt.Errorf("wsgi: WithPythonExecutable(%q): Python already runs with executable %q; it is process-wide and set by the first handler", want.executable, have.executable)
	case want.home != "" && want.home != have.home:
		return fmt.Errorf("wsgi: WithPythonHome(%q): Python already runs with home %q; it is process-wide and set by the first handler", want.home, have.home)
	case want.optimize != 0 && want.optimize != have.optimize:
		return fmt.Errorf("wsgi: WithPythonOptimize(%d): Python already runs with optimize level %d; it is process-wide and set by the first handler", want.optimize, have.optimize)
	}
	return nil
}

// PythonVersion returns the version of the CPython gowsgi is linked with,
// such as "3.11.2", or "" before the first handler starts Python.
func PythonVersion() string {
	return rt.version
}

// interp is one Python interpreter owned by a handler.
type interp struct {
	c    *C.gowsgi_interp
	main bool
}

// newInterp creates the interpreter for a handler and loads its app.
func newInterp(o *options, handler uintptr) (*interp, error) {
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
	var cerr C.gowsgi_error
	onControl(func() {
		ip.c = C.gowsgi_interp_new(boolInt(ip.main), C.uintptr_t(handler), &cerr)
	})
	if ip.c == nil {
		ip.releaseMain()
		return nil, fmt.Errorf("wsgi: create interpreter: %w", takeError(&cerr))
	}
	if err := ip.load(o); err != nil {
		ip.end()
		return nil, err
	}
	return ip, nil
}

func (ip *interp) load(o *options) error {
	var paths []byte
	for _, p := range o.pythonPath {
		paths = append(append(paths, p...), 0)
	}
	boot := C.CString(bootstrapSource)
	defer C.free(unsafe.Pointer(boot))
	spec := C.CString(o.app)
	defer C.free(unsafe.Pointer(spec))
	var pathp *C.char
	if len(paths) > 0 {
		pathp = (*C.char)(unsafe.Pointer(&paths[0]))
	}
	var cerr C.gowsgi_error
	// One call; no thread lock needed, the thread state cache is per call.
	if C.gowsgi_interp_load(ip.c, boot, pathp, C.size_t(len(paths)), spec, &cerr) != 0 {
		return fmt.Errorf("wsgi: load %q: %w", o.app, takeError(&cerr))
	}
	return nil
}

// end ends the interpreter; no request may run in it.
func (ip *interp) end() {
	onControl(func() { C.gowsgi_interp_end(ip.c) })
	ip.c = nil
	ip.releaseMain()
}

func (ip *interp) releaseMain() {
	if ip.main {
		rt.mu.Lock()
		rt.mainBy = false
		rt.mu.Unlock()
	}
}

// takeError copies a C error into a *PythonError and frees it.
func takeError(e *C.gowsgi_error) *PythonError {
	pe := &PythonError{
		Type:      C.GoString(e._type),
		Message:   C.GoString(e.message),
		Traceback: C.GoString(e.traceback),
	}
	C.gowsgi_error_free(e)
	return pe
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
