package wsgi

import (
	"errors"
	"log/slog"
	"strconv"
)

// Every record of a handler carries event, a name that says what happened
// (below), so that a program reading the log need not parse messages.
// Records about a request carry the same attributes everywhere: method,
// path and request_id; an error adds error (the exception's type and
// message) and, for a Python exception, traceback (and hint, for an
// extension module that refuses the interpreter).
const (
	evAppError     = "app_error"      // the app raised or broke PEP 3333 (aborted=true after the headers)
	evCloseError   = "close_error"    // the iterable's close() raised after a whole response
	evErrorsLine   = "wsgi_errors"    // a line the app wrote to wsgi.errors
	evTimeout      = "timeout"        // WithRequestTimeout stopped a request
	evStuck        = "stuck"          // a timed-out request has not come back
	evUnstuck      = "unstuck"        // it came back
	evBodyLimit    = "body_too_large" // WithMaxRequestBody stopped a request
	evClientGone   = "client_gone"    // the client went away while the app ran
	evLatePanic    = "late_panic"     // Go code panicked in a read by a thread the app started, after its request
	evReloaded     = "reloaded"       // the app was reloaded
	evReloadError  = "reload_error"   // a reload failed; the old app serves on
	evThreadsLeft  = "threads_left"   // threads the app started outlived its handler
	evRecycleError = "recycle_error"  // an interpreter could not be cleaned for the next handler
	evPoolFull     = "pool_full"      // the pool of idle interpreters had no room for one more
)
const (
	slogDebug = slog.LevelDebug
	slogInfo  = slog.LevelInfo
	slogWarn  = slog.LevelWarn
	slogError = slog.LevelError
)

// A requestID numbers a handler's requests; it appears in its log records
// and access log lines as "<handler>-<n>".
type requestID struct {
	handler uintptr
	n       uint64
}

func (id requestID) String() string {
	return strconv.FormatUint(uint64(id.handler), 10) + "-" + strconv.FormatUint(id.n, 10)
}

// attrs are the attributes of every record about rq.
func (rq *request) attrs() []any {
	return []any{"method", rq.r.Method, "path", rq.r.URL.Path, "request_id", rq.id.String()}
}

// errAttrs are the attributes of an error.
func (rq *request) errAttrs(err error) []any {
	attrs := []any{"error", err.Error()}
	var pe *PythonError
	if errors.As(err, &pe) {
		attrs = append(attrs, "traceback", pe.Traceback)
		if hint := refusalHint(pe, rq.h.opts.interpreter); hint != "" {
			attrs = append(attrs, "hint", hint)
		}
	}
	return attrs
}

func (rq *request) logError(event, msg string, err error, more ...any) {
	rq.logAt(slogError, event, msg, err, more...)
}

func (rq *request) logAt(level slog.Level, event, msg string, err error, more ...any) {
	ctx := rq.r.Context()
	if !rq.h.log.Enabled(ctx, level) {
		return
	}
	attrs := append([]any{"event", event}, rq.attrs()...)
	if err != nil {
		attrs = append(attrs, rq.errAttrs(err)...)
	}
	rq.h.log.Log(ctx, level, msg, append(attrs, more...)...)
}

// logLine logs a line the app wrote to wsgi.errors.
func (rq *request) logLine(line string) {
	rq.logAt(slogError, evErrorsLine, "wsgi.errors", nil, "line", line)
}
