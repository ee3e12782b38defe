package wsgitest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// An ErrorKind says what went wrong in an [Error].
type ErrorKind int

const (
	// Exception is an exception the app did not handle: the handler logged
	// its traceback and answered 500, or aborted the response if its
	// headers were out. Also one raised by the iterable's close(), or by a
	// reload.
	Exception ErrorKind = iota
	// Violation is a breach of PEP 3333 that wsgiref.validate found in
	// strict mode: it raised AssertionError with its message.
	Violation
	// Logged is what the app wrote to wsgi.errors, where wsgitest also
	// writes the records of level ERROR and above that the app logs
	// through Python's logging: the lines of one request together, or a
	// line that no request can be tied to. Lines holding a traceback of
	// wsgiref.validate's AssertionError, which a framework caught and
	// logged, make a Violation instead.
	Logged
	// Aborted is a response cut with no exception to tell why: the handler
	// aborted it after its headers were sent, its body was shorter than
	// its Content-Length, or Go code on the request path (a
	// [wsgi.WithVarFunc] function, say) panicked. A panic fails the test
	// even after [App.ExpectErrors].
	Aborted
)

func (k ErrorKind) String() string {
	switch k {
	case Exception:
		return "Exception"
	case Violation:
		return "Violation"
	case Logged:
		return "Logged"
	case Aborted:
		return "Aborted"
	}
	return fmt.Sprintf("ErrorKind(%d)", int(k))
}

// An Error is something the app got wrong, as the handler reported it.
type Error struct {
	// Request is the request it happened in, as "GET /path?query", or ""
	// when it cannot be tied to one: a reload, or a wsgi.errors line
	// written while no request, or several, were in flight.
	Request string
	Kind    ErrorKind
	// Text says what happened: the exception as "Type: message", the
	// validator's message, the wsgi.errors lines, or why the response was
	// aborted.
	Text string
	// Traceback is the Python traceback of an Exception or a Violation;
	// for a violation that the app caught and logged, the lines it wrote
	// to wsgi.errors.
	Traceback string
	// Aborted reports that the response was cut, so that the client saw a
	// broken connection.
	Aborted bool

	always bool // fails the test even after ExpectErrors
}

// String describes e over several lines, the traceback last.
func (e Error) String() string {
	var b strings.Builder
	req := e.Request
	if req == "" {
		req = "outside any one request"
	}
	switch e.Kind {
	case Violation:
		fmt.Fprintf(&b, "%s: the app broke PEP 3333: %s\n(found by wsgiref.validate in strict mode; wsgitest.WithStrict(false) turns it off)", req, e.Text)
	case Exception:
		fmt.Fprintf(&b, "%s: the app raised %s", req, e.Text)
	case Logged:
		fmt.Fprintf(&b, "%s: the app wrote to wsgi.errors:\n%s", req, indent(e.Text))
	case Aborted:
		fmt.Fprintf(&b, "%s: the response was aborted: %s", req, e.Text)
	default:
		fmt.Fprintf(&b, "%s: %s", req, e.Text)
	}
	if e.Aborted && e.Kind != Aborted {
		b.WriteString("\n(the headers were already sent, so the response was aborted: the client saw a cut connection)")
	}
	if e.Traceback != "" {
		b.WriteString("\n")
		b.WriteString(indent(e.Traceback))
	}
	return b.String()
}

// indent puts a tab before every line of s, without a final newline.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}

// A logHandler receives the handler's logs and turns the app's errors into
// test failures.
type logHandler struct {
	app   *App
	attrs []slog.Attr
	group string
}

func (l *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(append([]slog.Attr(nil), l.attrs...), attrs...)
	return &c
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	c := *l
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// A frame is one entry of a Python traceback.
type frame struct{ file, fn, code string }

// lastException parses the last traceback in text (the last of chained
// exceptions, or the last a framework logged): its frames and the first
// line of the exception.
func lastException(text string) (frames []frame, exc string) {
	if i := strings.LastIndex(text, "Traceback (most recent call last):"); i >= 0 {
		text = text[i:]
	} else {
		return nil, ""
	}
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case strings.HasPrefix(trimmed, `File "`):
			file, rest, _ := strings.Cut(strings.TrimPrefix(trimmed, `File "`), `"`)
			_, fn, _ := strings.Cut(rest, ", in ")
			frames, exc = append(frames, frame{file: strings.ReplaceAll(file, "\\", "/"), fn: fn}), ""
		case len(frames) > 0 && exc == "" && line != "" && line[0] != ' ':
			exc = line
		case len(frames) > 0 && exc == "" && frames[len(frames)-1].code == "" && strings.Trim(trimmed, "^~ ") != "":
			frames[len(frames)-1].code = trimmed
		}
	}
	return frames, exc
}

// validatorFailure reads a traceback that ends in an AssertionError raised
// by wsgiref.validate itself (not by the app's own code): it returns the
// validator's message (message, when given, is the whole of it). ok is
// false for any other traceback. wsgitest's own module raises no
// AssertionError: the checks of strict mode, even those of a read to the
// end, are wsgiref.validate's.
func validatorFailure(tb, message string) (text string, ok bool) {
	frames, exc := lastException(tb)
	isValidate := func(f frame) bool { return strings.HasSuffix(f.file, "/wsgiref/validate.py") }
	if len(frames) == 0 || !isValidate(frames[len(frames)-1]) ||
		(exc != "AssertionError" && !strings.HasPrefix(exc, "AssertionError: ")) {
		return "", false
	}
	text = strings.TrimPrefix(message, "AssertionError: ")
	if message == "" {
		text = strings.TrimPrefix(strings.TrimPrefix(exc, "AssertionError"), ": ")
	}
	// The check that failed: the innermost validator frame other than
	// assert_ and check_string_type, which only raise for it.
	var check frame
	for i := len(frames) - 1; i >= 0 && isValidate(frames[i]); i-- {
		if check = frames[i]; check.fn != "assert_" && check.fn != "check_string_type" {
			break
		}
	}
	if text == "" || text == "AssertionError" {
		text = fmt.Sprintf("an assertion of wsgiref.validate's %s() failed: %s", check.fn, check.code)
	}
	return text, true
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	a := l.app
	attrs := map[string]string{}
	var list []string
	add := func(at slog.Attr) bool {
		key := at.Key
		if l.group != "" {
			key = l.group + "." + key
		}
		attrs[key] = at.Value.String()
		if key != "traceback" {
			list = append(list, fmt.Sprintf("%s=%q", key, at.Value.String()))
		}
		return true
	}
	for _, at := range l.attrs {
		add(at)
	}
	r.Attrs(add)
	tb := attrs["traceback"]
	event := attrs["event"]
	switch event {
	case "app_error", "close_error", "reload_error", "wsgi_errors", "timeout":
	default:
		// The handler's own reports: threads left running, a body over
		// the limit, a client gone. Worth seeing, not a failure of the
		// app.
		a.logf("wsgitest: handler log: %s %s %s", r.Level, r.Message, strings.Join(list, " "))
		return nil
	}
	if event == "timeout" && r.Level < slog.LevelError {
		// A 504: the handler's own report; a timeout after the headers
		// cut the response, which is the app's failure.
		a.logf("wsgitest: handler log: %s %s %s", r.Level, r.Message, strings.Join(list, " "))
		return nil
	}

	var e Error
	if event == "wsgi_errors" {
		e = Error{Kind: Logged, Text: attrs["line"]}
	} else {
		e = Error{Kind: Exception, Text: attrs["error"], Traceback: tb, Aborted: attrs["aborted"] == "true"}
		if text, ok := validatorFailure(tb, e.Text); ok {
			e.Kind, e.Text = Violation, text
		}
		switch event {
		case "close_error":
			e.Text = "in the iterable's close(): " + e.Text
		case "reload_error":
			e.Text = "reloading the app: " + e.Text
		}
		if attrs["method"] != "" {
			e.Request = attrs["method"] + " " + attrs["path"]
		}
	}

	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	a.mu.Lock()
	if _, ok := a.inflight[ex]; ok {
		// Reported when the request ends, with the request.
		if e.Kind == Logged {
			ex.logged = append(ex.logged, e.Text)
		} else {
			e.Request = ex.request
			ex.errs = append(ex.errs, e)
		}
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	a.report(e)
	return nil
}
