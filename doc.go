// Package wsgi serves Python WSGI (PEP 3333) applications as an
// http.Handler, with CPython embedded in the Go process through cgo.
//
// # Quick start
//
//	h, err := wsgi.NewHandler(
//		wsgi.WithApp("mysite.wsgi:application"),
//		wsgi.WithPythonPath("/srv/mysite"),
//	)
//	if err != nil {
//		log.Fatal(err) // import errors arrive here, with the traceback
//	}
//	defer h.Close()
//	http.Handle("/blog/", http.StripPrefix("/blog", h))
//
// Mounted under [http.StripPrefix], SCRIPT_NAME is the prefix removed and
// PATH_INFO the rest; [WithScriptName] fixes it otherwise.
//
// The package links the CPython that `pkg-config python3-embed` finds,
// from its shared library. Linked from libpython's static archive instead,
// Python code costs less CPU (a Flask view called in a loop, about a fifth
// less; through the server, the benchmarks' Django view serves 1.12x the
// requests):
//
//	CGO_LDFLAGS="$(sh "$(go list -m -f '{{.Dir}}' github.com/gowsgi/wsgi)/scripts/static-ldflags.sh")" go build
//
// [PythonLinkedStatically] tells which; the README's "Linking Python
// statically" has the details and limits.
//
// # Interpreters
//
// Python is started once per process, by the first [NewHandler], and is
// never finalized. Each [Handler] owns an interpreter: by default a
// sub-interpreter of its own ([SubInterpreter]), so two handlers have
// separate sys.modules and globals; or the main interpreter
// ([MainInterpreter]), for extension modules that refuse sub-interpreters,
// which only one handler per process may use; or, on Python 3.12 and newer
// (not 3.13), a pool of [WithInterpreters] sub-interpreters with their
// own GIL each ([IsolatedInterpreters]), so one process runs Python on
// several cores. [Handler.Close] drops the handler's references and ends
// interpreters with their own GIL. A sub-interpreter that shares the GIL,
// which CPython cannot end safely while extension modules share state with
// it, is recycled instead: the modules imported since it was set up are
// dropped (the standard library's are kept, put back to their first
// state), the state the app changed is put back, and the next handler that
// asks for a sub-interpreter gets it and imports its app afresh. Handlers
// alive at once never share one. An interpreter whose app threads still
// run is not recycled, and what recycling cannot reset (the C state of
// extension modules, the process's environment, changes inside standard
// objects) is listed in the README; see [SetMaxIdleInterpreters] and
// [Recycling].
//
// # Threads and the GIL
//
// An interpreter has one GIL: one thread at a time runs its Python, and
// threads that take turns on it pay a hand-off each, the kernel waking
// the next. gowsgi schedules requests so that they take turns as rarely
// as the app allows. Each interpreter has [WithThreads] places: a place is
// a request running Python, in the app or blocked inside it on I/O.
//
//   - A request that finds its interpreter idle runs on the thread of its
//     own goroutine, in one cgo call: no hand-off at all. So does one that
//     finds a place free and nothing queued while requests are short (a
//     few microseconds of Python, hello world): it waits for the GIL on
//     its own thread, which costs less than a hand-off to a worker.
//   - Otherwise it is queued, and the interpreter's worker threads run the
//     queue. A worker that finishes a request while no other request holds
//     a place runs the next queued one at once, keeping the GIL: the
//     requests of an app that spends its time in Python run back to back
//     on one thread, and their responses reach Go in groups of a few, one
//     wake-up of Go's poller for several.
//   - While requests are queued, an idle worker stands by. If the running
//     request releases the GIL to wait on I/O (a database, a sleep), that
//     worker starts the next request, so an app that waits on services
//     still overlaps its requests. While requests are Python-bound, it
//     watches the CPU clock of the running request's thread rather than
//     wait for the GIL, which CPython would hand it by force after the
//     switch interval, in the middle of a request; it waits for the GIL
//     once that thread stops running, or once the request has used a
//     switch interval of CPU, so that a long view shares the GIL as in
//     CPython. A worker running requests back to back hands the GIL to a
//     waiting one at the end of a request, before the interval would cut
//     the next in the middle. The README's "Threads and the GIL" has the
//     details and the figures.
//   - [WithPythonCPUs] pins the worker threads of each interpreter to one
//     CPU, where its GIL lets one of them run at a time anyway, so that
//     they keep that CPU's caches warm, at the price of running GIL-free
//     work of several requests on that one CPU. Off by default; whether it
//     pays depends on the machine (the README has both measurements).
//   - A request that waits for its client (a slow reader of the response,
//     a file being sent, a request body not sent yet) gives its place back,
//     and takes one again to go on: slow clients hold no place.
//
// A request's Python, from the app call to close(), runs on one OS
// thread, so threading.local values set in the app call are there while
// its iterable runs and in close(). Each request runs in a
// contextvars.Context of its own, so no context variable leaks from one
// request into the next. Go never holds the GIL: the HTTP work of other
// requests goes on while Python runs.
//
// # A request's life
//
//  1. [Handler.ServeHTTP] (wsgi.go) checks the limits, takes a slot
//     (slot.go: the C side of a request and its buffers, reused) and reads
//     a small body before the request waits for anything (early.go).
//  2. request.serve (request.go) packs the environ (environ.go, vars.go,
//     proxies.go) into the slot and submits it to the interpreter's
//     scheduler (sched.c): it runs now, on this thread, or is queued.
//  3. The request's thread (request.c) builds the environ dict, calls the
//     app, and sends what it returns through two batches (response.c):
//     small chunks copied, larger ones sent from the bytes object itself.
//     wsgi.input and wsgi.errors are in streams.c; start_response and
//     write() in response.c.
//  4. request.pump sends each batch (response.go: headers, Content-Length,
//     ranges, buffering, write deadlines) while the thread fills the
//     other, and gives it back; a list body, or a short iterable, comes in
//     one batch with the end.
//  5. The iterable's close() runs on the request's thread, whatever
//     happened; then the slot is free.
//
// Callbacks from Python to Go (wsgi.input's reads, wsgi.errors' lines) are
// in callbacks.go; a request's slot guard (slot.go) keeps a callback from
// a thread the app started off a later request.
//
// # Where things are
//
//	wsgi.go         Handler, NewHandler, ServeHTTP, Shutdown
//	options.go      every With... option
//	request.go      a request: submit, wait, pump the batches
//	response.go     sending: headers, body, files, errors as HTTP
//	sched.go        interpreters of a handler, and their choice
//	slot.go         what outlives a request; the callback guard
//	callbacks.go    the Go functions C calls
//	interpreter.go  the runtime, interpreters, reloading
//	environ.go      the packed environ; vars.go (wsgi_var), proxies.go
//	early.go        a small body read before the request waits
//	timeout.go      WithRequestTimeout
//	ranges.go       Range requests (wsgi_allow_ranges)
//	buffer.go       write buffering and temp files
//	accesslog.go    WithAccessLog; log.go, the attributes of log records
//	stats.go        Stats and expvar
//	cpython.h       the C API Go sees; gowsgi.h lists the C files
//	bootstrap.py    loading apps, run once in each interpreter
//
// # Errors
//
// [NewHandler] fails, with a *[PythonError] carrying the traceback, when the
// app cannot be loaded. Inside [Handler.ServeHTTP], an exception before the
// headers are sent is logged with its traceback and answered with a 500
// and a fixed body; after them the connection is aborted with
// [http.ErrAbortHandler]. A client that goes away is not an error: the
// iteration stops and close() runs. Log records about a request carry its
// method, path and request_id (which also ends its access log line); an
// error adds error and, for a Python exception, traceback.
//
// # Failures
//
// [WithRequestTimeout] raises gowsgi.RequestTimeout in a request that runs
// too long (504, or an aborted connection after the headers);
// [WithQueueTimeout] and [WithMaxQueue] answer 503 with Retry-After before
// a request enters Python; [WithMaxRequestBody] answers 413;
// [WithSendTimeout] cuts a client that stops reading. Every figure is in
// [Handler.Stats].
//
// # Limits
//
// Response headers, status line included, must fit in 64 KiB. Go's
// net/http writes the standard reason phrase for a status code, not the
// app's. Informational (1xx) statuses cannot be sent by a WSGI app.
package wsgi
