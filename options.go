package wsgi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// An Option configures a [Handler]. Options are applied in order by
// [NewHandler]; one that is given a bad value makes NewHandler fail with an
// error that names it.
type Option func(*options) error

// Interpreter selects which Python interpreter a handler's app runs in.
type Interpreter int

const (
	// SubInterpreter gives the handler a sub-interpreter of its own that
	// shares the GIL with the rest of the process: its own sys.modules and
	// globals, as Apache mod_wsgi's application groups. The default; the
	// nginx module's wsgi_enable_subinterpreters on.
	SubInterpreter Interpreter = iota
	// MainInterpreter runs the app in the main interpreter, for extension
	// modules that refuse sub-interpreters. Only one handler per process
	// can use it. The nginx module's wsgi_use_main_interpreter on.
	MainInterpreter
	// IsolatedInterpreters runs the app in a pool of [WithInterpreters]
	// sub-interpreters that each have their own GIL (Python 3.12 and
	// newer but 3.13, which corrupted memory with them), so
	// requests run Python in parallel within one process. Each
	// loads the app; each has its own [WithThreads] threads; a request
	// goes to the least busy. Extension modules that are not isolated
	// refuse to load there (NewHandler names the module).
	IsolatedInterpreters
)

func (i Interpreter) String() string {
	switch i {
	case SubInterpreter:
		return "SubInterpreter"
	case MainInterpreter:
		return "MainInterpreter"
	case IsolatedInterpreters:
		return "IsolatedInterpreters"
	}
	return fmt.Sprintf("Interpreter(%d)", int(i))
}

type options struct {
	app          string
	pythonPath   []string
	interpreter  Interpreter
	interpreters int // the pool's size for IsolatedInterpreters
	threads      int
	pythonCPUs   []int // WithPythonCPUs
	logger       *slog.Logger
	scriptName   string
	runtime      runtimeSettings

	middleware      []middleware
	vars            []envVar
	passAuth        bool
	ranges          bool
	reloading       bool
	reload          ReloadMechanism
	processReload   func()
	optimizeHeaders bool
	outputBuffering bool
	writeBuffering  bool
	bufferSize      int
	tempPath        *tempPath // nil: os.TempDir(), checked when needed
	maxBody         int64     // 0: no limit
	accessLog       *accessLog
	requestTimeout  time.Duration
	sendTimeout     time.Duration
	queueTimeout    time.Duration
	maxQueue        int
	trusted         []netip.Prefix
	expvarName      string
	multiprocess    bool
}

// defaultThreads is the number of requests admitted into one interpreter at
// once when WithThreads is not given.
const defaultThreads = 8

// defaultSendTimeout is WithSendTimeout's default, nginx's send_timeout.
const defaultSendTimeout = 60 * time.Second

func defaultOptions() options {
	return options{threads: defaultThreads, bufferSize: os.Getpagesize(), interpreters: runtime.GOMAXPROCS(0),
		sendTimeout: defaultSendTimeout}
}

// check validates combinations once every option is applied.
func (o *options) check() error {
	if o.app == "" {
		return errors.New(`no app: give WithApp("module:callable") or a script file`)
	}
	if o.reload == ReloadInterpreter && o.interpreter == MainInterpreter {
		return errors.New("WithReloadMechanism(ReloadInterpreter) cannot replace the main interpreter; use ReloadModule with MainInterpreter")
	}
	if o.reload == ReloadProcess && o.processReload == nil {
		return errors.New("WithReloadMechanism(ReloadProcess) needs WithProcessReload(func) to say how to restart")
	}
	if o.writeBuffering && o.tempPath == nil {
		tp, err := newTempPath(os.TempDir())
		if err != nil {
			return fmt.Errorf("WithWriteBuffering(true) spills to os.TempDir(), which failed: %w; give WithTempPath", err)
		}
		o.tempPath = tp
	}
	return nil
}

// WithApp names the WSGI application: "package.module:callable", or a
// script file "/srv/site/app.wsgi" or "/srv/site/app.py:callable". The
// callable defaults to "application", may be a dotted path
// ("app:server.wsgi_app"), and may end in "()" to call a factory with no
// arguments ("app:create_app()"). A script's directory is put at the front
// of sys.path so it can import its neighbours. The nginx module's wsgi_pass.
// Required.
func WithApp(spec string) Option {
	return func(o *options) error {
		if strings.TrimSpace(spec) == "" {
			return errors.New(`WithApp(""): name the app, as "module:callable" or a script file path`)
		}
		o.app = spec
		return nil
	}
}

// WithPythonPath puts dirs at the front of the interpreter's sys.path, in
// the order given, before the app is imported. Relative directories are
// made absolute against the current directory. Repeatable; the default adds
// nothing.
func WithPythonPath(dirs ...string) Option {
	return func(o *options) error {
		for _, d := range dirs {
			if d == "" {
				return errors.New(`WithPythonPath(""): an empty directory; give a path`)
			}
			abs, err := filepath.Abs(d)
			if err != nil {
				return fmt.Errorf("WithPythonPath(%q): %w", d, err)
			}
			o.pythonPath = append(o.pythonPath, abs)
		}
		return nil
	}
}

// WithInterpreter selects the interpreter the app runs in; the default is
// [SubInterpreter].
func WithInterpreter(i Interpreter) Option {
	return func(o *options) error {
		if i < SubInterpreter || i > IsolatedInterpreters {
			return fmt.Errorf("WithInterpreter(%v): use SubInterpreter, MainInterpreter or IsolatedInterpreters", i)
		}
		o.interpreter = i
		return nil
	}
}

// WithInterpreters sets how many interpreters an [IsolatedInterpreters]
// handler runs. Default runtime.GOMAXPROCS(0); at least 1. It has no effect
// on the other kinds, which have one.
func WithInterpreters(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithInterpreters(%d): need at least 1", n)
		}
		o.interpreters = n
		return nil
	}
}

// WithThreads sets how many requests may run an interpreter's Python at
// once (the threads of a threaded WSGI server): in the app, or blocked in
// it on I/O. A request holds its place only while Python runs for it: not
// while it waits in the queue, nor while its client takes the response or
// sends its body. Requests beyond it wait, in order, and give up when
// their request's context ends. An app that spends its time in Python
// runs its requests back to back on one thread whatever the number (see
// the package's "Threads and the GIL"); more places let more requests
// overlap while others wait on databases and services. Default 8; at
// least 1. With IsolatedInterpreters, each interpreter has n.
func WithThreads(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithThreads(%d): need at least 1", n)
		}
		o.threads = n
		return nil
	}
}

// WithPythonCPUs pins the threads that run an interpreter's queued
// requests to one CPU: the first interpreter's to cpus[0], the second's
// (IsolatedInterpreters) to cpus[1], and so on round the list. By default
// no thread is pinned.
//
// One GIL lets one thread at a time run Python, so the threads of one
// interpreter lose nothing by sharing a CPU while they run Python, and they
// find that CPU's caches warm from the request before; the kernel
// otherwise moves them from CPU to CPU as they take turns, into caches
// other work has just used. Go's own threads are not pinned. Whether it
// pays depends on the machine: on a two-CPU one under load (the
// benchmarks' Flask and Django views), one measurement found 8 to 13 per
// cent less CPU per request and another none; see the README's "Threads
// and the GIL", and measure before you keep it.
//
// What it costs: work that runs with the GIL let go runs on that one CPU
// too, so several requests hashing passwords, compressing or computing
// in NumPy at once no longer spread over the machine; and threads and
// processes the app starts from a request are pinned with the thread that
// starts them; and a call from Python into Go (a read of the request body,
// a wsgi.errors line) costs four more system calls, to let the thread run
// anywhere for its length, so that a thread Go starts from it is not
// pinned. Requests that run on their own goroutine's thread (when the
// interpreter is idle, or requests are short) are not pinned. Each CPU
// must be one the process may run on (see taskset(1)); NewHandler fails
// otherwise. The nginx module has no such directive; uWSGI's cpu-affinity
// and wsgo's pinning are the same idea per process.
func WithPythonCPUs(cpus ...int) Option {
	return func(o *options) error {
		if len(cpus) == 0 {
			return errors.New("WithPythonCPUs(): give at least one CPU, or leave the option out")
		}
		allowed, err := allowedCPUs()
		if err != nil {
			return fmt.Errorf("WithPythonCPUs: %w", err)
		}
		for _, c := range cpus {
			if !slices.Contains(allowed, c) {
				return fmt.Errorf("WithPythonCPUs(%s): CPU %d is not one this process may run on (it may run on %s)",
					joinInts(cpus), c, joinInts(allowed))
			}
		}
		o.pythonCPUs = slices.Clone(cpus)
		return nil
	}
}

// pythonCPU is the CPU of the i-th interpreter's workers, or -1 for none.
func (o *options) pythonCPU(i int) int {
	if len(o.pythonCPUs) == 0 {
		return -1
	}
	return o.pythonCPUs[i%len(o.pythonCPUs)]
}

// joinInts writes xs as "1,2,3".
func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// WithLogger sets the logger for application errors, wsgi.errors lines and
// the handler's own reports. nil, the default, means slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// WithScriptName fixes SCRIPT_NAME to prefix, for a handler mounted under a
// path without http.StripPrefix; PATH_INFO is then the request path with
// prefix removed when it starts with it. Without this option SCRIPT_NAME is
// what http.StripPrefix removed, or "". prefix must start with "/" and not
// end with one.
func WithScriptName(prefix string) Option {
	return func(o *options) error {
		if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/")) {
			return fmt.Errorf("WithScriptName(%q): the prefix must start with \"/\" and not end with one, like \"/blog\"", prefix)
		}
		o.scriptName = prefix
		return nil
	}
}

// A ReloadMechanism says how [WithScriptReloading] brings in a changed app.
type ReloadMechanism int

const (
	// ReloadModule drops the app's module (and its middleware modules)
	// from sys.modules and imports them again in the same interpreter.
	// Other modules the app imported stay as they are. The nginx module's
	// wsgi_reload_mechanism module, and the default.
	ReloadModule ReloadMechanism = iota
	// ReloadInterpreter loads the app into another interpreter (a cleaned,
	// recycled one when there is one) and swaps it in; requests in flight
	// finish on the old one, which is then recycled in turn (see
	// [SetMaxIdleInterpreters]), so reloading in a loop does not grow the
	// process. Every module outside the standard library is imported
	// again; what recycling cannot reset (the C state of extension
	// modules, see the README) stays.
	ReloadInterpreter
	// ReloadProcess serves the current request with the old app, adding
	// "Refresh: 0" so a browser asks again, and calls the function given
	// by [WithProcessReload] once, which should restart the process
	// gracefully. The nginx module's wsgi_reload_mechanism process.
	ReloadProcess
)

func (m ReloadMechanism) String() string {
	switch m {
	case ReloadModule:
		return "ReloadModule"
	case ReloadInterpreter:
		return "ReloadInterpreter"
	case ReloadProcess:
		return "ReloadProcess"
	}
	return fmt.Sprintf("ReloadMechanism(%d)", int(m))
}

type middleware struct{ module, callable string }

// WithMiddleware wraps the app in a WSGI middleware: callable (default
// "middleware") of module is called with the app and returns the wrapped
// app. Repeatable: the first middleware given is the outermost, so it sees
// the request first and the response last, as in Django's MIDDLEWARE list.
// A missing module or callable fails NewHandler. The nginx module's
// wsgi_middleware.
func WithMiddleware(module, callable string) Option {
	return func(o *options) error {
		if module == "" {
			return errors.New(`WithMiddleware("", ...): name the middleware's module`)
		}
		if callable == "" {
			callable = "middleware"
		}
		o.middleware = append(o.middleware, middleware{module, callable})
		return nil
	}
}

// WithPassAuthorization passes the Authorization header to the app as
// HTTP_AUTHORIZATION. Off by default, as CGI servers do, since the server
// is expected to authenticate. The nginx module's wsgi_pass_authorization.
func WithPassAuthorization(on bool) Option {
	return func(o *options) error {
		o.passAuth = on
		return nil
	}
}

// WithRanges answers Range requests for the app: a GET whose response is a
// 200 of known length (a list or tuple body, a wsgi.file_wrapper file, or
// any body with a Content-Length) gets 206 with the ranges asked for
// (multipart/byteranges for several), 416 when none can be satisfied, and
// the whole body when If-Range does not match. Such responses announce
// "Accept-Ranges: bytes". A file is sent range by range with sendfile; any
// other body is iterated, skipping the bytes before a range, and the
// iteration stops after the last range (close() still runs). Ranges that
// overlap or are not in ascending order get the whole body. Off by
// default. The nginx module's wsgi_allow_ranges.
func WithRanges(on bool) Option {
	return func(o *options) error {
		o.ranges = on
		return nil
	}
}

// WithScriptReloading checks, before each request, whether the app's
// script or module file (or a middleware's) has changed (a stat, not a
// read) and reloads the app as [WithReloadMechanism] says. A reload that
// fails, such as a syntax error, keeps the old app serving, logs the
// traceback and is tried again when the file changes again. Off by default.
// The nginx module's wsgi_script_reloading.
func WithScriptReloading(on bool) Option {
	return func(o *options) error {
		o.reloading = on
		return nil
	}
}

// WithReloadMechanism chooses how a changed app is brought in, by
// [WithScriptReloading] or [Handler.Reload]. Default [ReloadModule]. The
// nginx module's wsgi_reload_mechanism.
func WithReloadMechanism(m ReloadMechanism) Option {
	return func(o *options) error {
		if m < ReloadModule || m > ReloadProcess {
			return fmt.Errorf("WithReloadMechanism(%v): use ReloadModule, ReloadInterpreter or ReloadProcess", m)
		}
		o.reload = m
		return nil
	}
}

// WithProcessReload gives the function [ReloadProcess] calls, once, when
// the app has changed; it should restart the process gracefully (the
// gowsgi command re-executes itself). It runs on its own goroutine.
func WithProcessReload(restart func()) Option {
	return func(o *options) error {
		o.processReload = restart
		return nil
	}
}

// WithOptimizeSendHeaders lets a response that needs no body, to a HEAD
// request or with status 204 or 304, go out as soon as the app's generator
// yields b"" after start_response: the generator is not advanced further
// (its close() still runs). Without it, every generator is run to its end.
// Off by default. The nginx module's wsgi_optimize_send_headers.
func WithOptimizeSendHeaders(on bool) Option {
	return func(o *options) error {
		o.optimizeHeaders = on
		return nil
	}
}

// WithOutputBuffering gathers the chunks the app yields into a buffer of
// [WithWriteBufferSize] bytes and writes it when it fills or the body ends,
// instead of sending and flushing every chunk (PEP 3333's default). A body
// that ends before the buffer fills is sent with a Content-Length. Off by
// default. The nginx module's wsgi_output_buffering.
func WithOutputBuffering(on bool) Option {
	return func(o *options) error {
		o.outputBuffering = on
		return nil
	}
}

// WithWriteBuffering keeps what the app passes to write() instead of
// sending it at once: in memory up to [WithWriteBufferSize] bytes, then in
// a temp file under [WithTempPath]. The response goes out when the app
// returns, with a Content-Length when its iterable adds nothing. Temp files
// are removed after the response, whatever happened. PEP 3333 asks a
// gateway not to buffer write(), so this is off by default. The nginx
// module's wsgi_write_buffering.
func WithWriteBuffering(on bool) Option {
	return func(o *options) error {
		o.writeBuffering = on
		return nil
	}
}

// WithWriteBufferSize sets the buffer of [WithOutputBuffering] and
// [WithWriteBuffering], in bytes. Default the page size (os.Getpagesize);
// at least 1. The nginx module's wsgi_write_buffer_size.
func WithWriteBufferSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithWriteBufferSize(%d): need at least 1 byte", n)
		}
		o.bufferSize = n
		return nil
	}
}

// WithTempPath sets where [WithWriteBuffering] spills: dir, created if
// missing, with up to three levels of hashed sub-directories of 1 or 2
// digits each, as nginx's wsgi_temp_path and client_body_temp_path (levels
// 1, 2 put file 0000000123 at dir/3/12/0000000123). A directory that cannot
// be written fails NewHandler. Default os.TempDir() with no levels.
func WithTempPath(dir string, levels ...int) Option {
	return func(o *options) error {
		tp, err := newTempPath(dir, levels...)
		if err != nil {
			return err
		}
		o.tempPath = tp
		return nil
	}
}

// WithPythonOptimize sets Python's optimization level, as python -O (1) or
// -OO (2): asserts are skipped, and at 2 docstrings dropped. Process-wide:
// it applies when the first handler starts Python, and a later handler
// asking for another level fails. Default 0. The nginx module's
// wsgi_python_optimize.
func WithPythonOptimize(level int) Option {
	return func(o *options) error {
		if level < 0 || level > 2 {
			return fmt.Errorf("WithPythonOptimize(%d): use 0, 1 or 2", level)
		}
		o.runtime.optimize = level
		o.runtime.optimizeSet = true
		return nil
	}
}

// WithPythonExecutable sets sys.executable, from which Python finds its
// prefix: a virtualenv's bin/python selects that virtualenv, so its
// site-packages are importable. It must be an executable file of the same
// Python version gowsgi is linked with. Process-wide, like
// [WithPythonOptimize]. Default: the python3.X next to the linked
// library's prefix. The nginx module's wsgi_python_executable.
func WithPythonExecutable(path string) Option {
	return func(o *options) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("WithPythonExecutable(%q): %w", path, err)
		}
		st, err := os.Stat(abs)
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("WithPythonExecutable(%q): not an executable file; give the path of a python, such as a virtualenv's bin/python", path)
		}
		o.runtime.executable = abs
		return nil
	}
}

// WithPythonHome sets Python's home, the prefix holding its standard
// library (lib/python3.X), as PYTHONHOME does. Process-wide, like
// [WithPythonOptimize]. Default: found from the executable. The nginx
// module's wsgi_python_home.
func WithPythonHome(dir string) Option {
	return func(o *options) error {
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			return fmt.Errorf("WithPythonHome(%q): not a directory; give a Python prefix that holds lib/python3.X", dir)
		}
		abs, _ := filepath.Abs(dir)
		o.runtime.home = abs
		return nil
	}
}

// WithMaxRequestBody limits request bodies to n bytes. A request whose
// Content-Length is larger gets 413 without entering Python; for a body of
// unknown length, wsgi.input.read() raises OSError once the limit is
// passed, and the client gets 413 unless the headers already went out.
// Default 0: no limit.
func WithMaxRequestBody(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("WithMaxRequestBody(%d): use 0 for no limit, or a positive number of bytes", n)
		}
		o.maxBody = n
		return nil
	}
}

// WithAccessLog writes a line per request to w in Apache's combined log
// format, as gunicorn's --access-logfile does. Lines are written whole,
// one at a time. Default nil: no access log.
func WithAccessLog(w io.Writer) Option {
	return func(o *options) error {
		if w == nil {
			o.accessLog = nil
		} else {
			o.accessLog = &accessLog{w: w}
		}
		return nil
	}
}

// WithRequestTimeout bounds the time a request may spend in the app,
// counted from the app call (not the time queued). Past d,
// gowsgi.RequestTimeout (a BaseException, so "except Exception" does not
// catch it) is raised in the request's thread; the client gets 504 if the
// headers have not gone out, else the connection is aborted; close() still
// runs and the thread comes back. Python can only raise it when the thread
// runs Python code: a thread blocked in C (a long sleep, a socket read) sees
// it when that call returns, and a request not over at 2 x d is logged and
// counted in Stats.Stuck until it comes back. Default 0: no timeout.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("WithRequestTimeout(%v): use 0 for none, or a positive duration", d)
		}
		o.requestTimeout = d
		return nil
	}
}

// WithMultiprocess sets the environ's wsgi.multiprocess to on: other
// processes serve the same app (the command's --processes does). Default
// off: this process alone serves it.
func WithMultiprocess(on bool) Option {
	return func(o *options) error {
		o.multiprocess = on
		return nil
	}
}

// WithSendTimeout cuts a client that takes longer than d to take a piece
// of the response (64 KiB, or 256 KiB of a file): the write fails, the
// app's iteration stops or its write() raises OSError, and close() runs.
// As nginx's send_timeout, it bounds the time between two writes, not the
// whole response, so a long download at a steady pace is never cut. A
// watchdog checks the writes in progress a few times per d and sets a
// write deadline in the past on one that has run longer, so a client is
// cut between d and 1.25 d after its last progress; no deadline is set
// otherwise, so the server's own (http.Server's WriteTimeout) stays in
// force. Default 60 seconds; 0 means no timeout. A ResponseWriter that
// takes no deadlines (a recorder) is never cut.
func WithSendTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("WithSendTimeout(%v): use 0 for none, or a positive duration", d)
		}
		o.sendTimeout = d
		return nil
	}
}

// WithQueueTimeout bounds the time a request waits for one of the
// handler's threads ([WithThreads]); past d it gets 503 with Retry-After
// and never enters Python. Default 0: it waits until its client leaves.
func WithQueueTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("WithQueueTimeout(%v): use 0 for none, or a positive duration", d)
		}
		o.queueTimeout = d
		return nil
	}
}

// WithMaxQueue bounds how many requests may wait for a place in an
// interpreter (each interpreter of IsolatedInterpreters has its own
// queue); one more gets 503 with Retry-After at once. Default 0: no bound.
func WithMaxQueue(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("WithMaxQueue(%d): use 0 for no bound, or a positive number", n)
		}
		o.maxQueue = n
		return nil
	}
}

// WithTrustedProxies names the proxies (addresses or CIDR prefixes, such as
// "10.0.0.0/8" or "::1") whose forwarding headers are believed. A request
// from one of them has REMOTE_ADDR, wsgi.url_scheme and HTTP_HOST set from
// the Forwarded header (RFC 7239), or else from X-Forwarded-For,
// X-Forwarded-Proto and X-Forwarded-Host: the client is the right-most
// address in the chain that is not itself a trusted proxy. From anyone
// else those headers are plain HTTP_* keys. Default none.
func WithTrustedProxies(cidrs ...string) Option {
	return func(o *options) error {
		for _, c := range cidrs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				a, aerr := netip.ParseAddr(c)
				if aerr != nil {
					return fmt.Errorf("WithTrustedProxies(%q): not an address or CIDR prefix", c)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			o.trusted = append(o.trusted, p.Masked())
		}
		return nil
	}
}

// WithExpvar publishes the handler's [Stats] as the expvar name, so they
// show on /debug/vars where expvar's handler is mounted. Default "": not
// published.
func WithExpvar(name string) Option {
	return func(o *options) error {
		o.expvarName = name
		return nil
	}
}

// An envVar is one WithVar or WithVarFunc: a key set after the HTTP_ keys.
type envVar struct {
	name string
	tmpl []varPart
	fn   func(*http.Request) string
}

// WithVar adds name to every request's environ with value expanded per
// request. value mixes text and nginx-style variables: $remote_addr,
// $remote_port, $server_addr, $server_port, $scheme, $host,
// $request_method, $request_uri, $uri, $args, $http_NAME (every line of
// that header, joined), $cookie_NAME, $arg_NAME, also written ${name}; "$$"
// is a literal "$". An unknown variable fails NewHandler. Vars are set
// after the HTTP_ keys, so WithVar("HTTP_COOKIE", "$http_cookie") replaces
// that key, and later vars replace earlier ones. The nginx module's
// wsgi_var.
func WithVar(name, value string) Option {
	return func(o *options) error {
		if err := checkVarName(name); err != nil {
			return fmt.Errorf("WithVar(%q, %q): %w", name, value, err)
		}
		tmpl, err := parseVar(value)
		if err != nil {
			return fmt.Errorf("WithVar(%q, %q): %w", name, value, err)
		}
		o.vars = append(o.vars, envVar{name: name, tmpl: tmpl})
		return nil
	}
}

// WithVarFunc adds name to every request's environ with the value fn
// returns for the request, like [WithVar]. fn runs on the request's
// goroutine and must be safe for concurrent use.
func WithVarFunc(name string, fn func(*http.Request) string) Option {
	return func(o *options) error {
		if err := checkVarName(name); err != nil {
			return fmt.Errorf("WithVarFunc(%q): %w", name, err)
		}
		if fn == nil {
			return fmt.Errorf("WithVarFunc(%q, nil): give a function", name)
		}
		o.vars = append(o.vars, envVar{name: name, fn: fn})
		return nil
	}
}

func checkVarName(name string) error {
	switch {
	case name == "":
		return errors.New("the name is empty")
	case len(name) > maxKeyLen:
		return fmt.Errorf("the name is longer than %d bytes", maxKeyLen)
	}
	switch name {
	case "wsgi.input", "wsgi.errors", "wsgi.version", "wsgi.multithread",
		"wsgi.multiprocess", "wsgi.run_once", "wsgi.file_wrapper", "wsgi.input_terminated":
		return errors.New("the gateway owns this key")
	}
	return nil
}
