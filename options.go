package wsgi

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
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
)

func (i Interpreter) String() string {
	switch i {
	case SubInterpreter:
		return "SubInterpreter"
	case MainInterpreter:
		return "MainInterpreter"
	}
	return fmt.Sprintf("Interpreter(%d)", int(i))
}

type options struct {
	app         string
	pythonPath  []string
	interpreter Interpreter
	threads     int
	logger      *slog.Logger
	scriptName  string
	runtime     runtimeSettings
}

// defaultThreads is the number of requests admitted into one interpreter at
// once when WithThreads is not given.
const defaultThreads = 8

func defaultOptions() options {
	return options{threads: defaultThreads}
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
		if i != SubInterpreter && i != MainInterpreter {
			return fmt.Errorf("WithInterpreter(%v): use SubInterpreter or MainInterpreter", i)
		}
		o.interpreter = i
		return nil
	}
}

// WithThreads sets how many requests may be inside the app at once (the
// threads of a threaded WSGI server). A request holds its place from the
// app call until the response is written, as a server thread would; the
// rest wait in Go and give up when their request's context ends. Default 8;
// at least 1.
func WithThreads(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("WithThreads(%d): need at least 1", n)
		}
		o.threads = n
		return nil
	}
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
