package wsgi

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
)

// Records about a request carry the same attributes everywhere: method,
// path and request_id; an error adds error (the exception's type and
// message) and, for a Python exception, traceback (and hint, for an
// extension module that refuses the interpreter).
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

func (rq *request) logError(msg string, err error) { rq.logAt(slogError, msg, err) }

func (rq *request) logAt(level slog.Level, msg string, err error) {
	ctx := rq.r.Context()
	if !rq.h.log.Enabled(ctx, level) {
		return
	}
	attrs := rq.attrs()
	if err != nil {
		attrs = append(attrs, rq.errAttrs(err)...)
	}
	rq.h.log.Log(ctx, level, msg, attrs...)
}

// logLine logs a line the app wrote to wsgi.errors.
func (rq *request) logLine(line string) {
	rq.h.log.Log(context.Background(), slogError, "wsgi.errors", append(rq.attrs(), "line", line)...)
}
