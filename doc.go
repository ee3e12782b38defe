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
// # Interpreters
//
// Python is started once per process, by the first [NewHandler], and is
// never finalized. Each [Handler] owns an interpreter: by default a
// sub-interpreter of its own ([SubInterpreter]), so two handlers have
// separate sys.modules and globals; or the main interpreter
// ([MainInterpreter]), for extension modules that refuse sub-interpreters,
// which only one handler per process may use; or, on Python 3.12 and newer
// (not 3.13.0), a pool of [WithInterpreters] sub-interpreters with their
// own GIL each
// ([IsolatedInterpreters]), so one process runs Python on several cores.
// [Handler.Close] drops the handler's references; it ends interpreters
// with their own GIL, but leaves a sub-interpreter that shares the GIL
// alive, since CPython cannot end one safely while extension modules share
// state with it (see the README).
//
// # Threads and the GIL
//
// A control goroutine, locked to its OS thread for the life of the process,
// starts Python and creates and ends interpreters; it never runs
// application code. Requests call into C from their own goroutines: C keeps
// one Python thread state per OS thread and interpreter, and the GIL is
// held only inside a cgo call, never while Go reads the request or writes
// the response. A list or tuple response needs a single cgo call; a
// generator needs one per non-empty chunk, and its request stays on one OS
// thread so that threading.local and contextvars values set by the app are
// still there while its iterable runs and in close(). At most
// [WithThreads] requests per handler are inside Python at once; the others
// wait in Go and give up when their request's context ends.
//
// # A request's life
//
//  1. Wait for a place among the handler's threads.
//  2. Pack the environ into one buffer (CGI keys, HTTP_* keys).
//  3. One cgo call builds the environ dict, calls the app, checks what it
//     passed to start_response and, for a list or tuple, copies the body.
//  4. Headers go out with the first non-empty chunk, or at the end. The
//     first chunk is flushed before the next is asked for; when a socket
//     makes that slow, later chunks are sent by another goroutine while
//     the app produces the next, and chunks yielded during a write leave
//     together in one.
//  5. The iterable's close() runs, whatever happened.
//
// # Errors
//
// [NewHandler] fails, with a *[PythonError] carrying the traceback, when the
// app cannot be loaded. Inside [Handler.ServeHTTP], an exception before the
// headers are sent is logged with its traceback and answered with a 500
// and a fixed body; after them the connection is aborted with
// [http.ErrAbortHandler]. A client that goes away is not an error: the
// iteration stops and close() runs.
//
// # Failures
//
// [WithRequestTimeout] raises gowsgi.RequestTimeout in a request that runs
// too long (504, or an aborted connection after the headers);
// [WithQueueTimeout] and [WithMaxQueue] answer 503 with Retry-After before
// a request enters Python; [WithMaxRequestBody] answers 413. Every figure
// is in [Handler.Stats].
//
// # Limits
//
// Response headers, status line included, must fit in 64 KiB. Go's
// net/http writes the standard reason phrase for a status code, not the
// app's. Informational (1xx) statuses cannot be sent by a WSGI app.
package wsgi
