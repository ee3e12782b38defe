// Command gowsgi serves one WSGI application over HTTP, the way
// `gunicorn module:app` does, with the app running in CPython embedded in
// this process.
//
//	gowsgi [flags] module:callable
//	gowsgi [flags] /path/to/app.wsgi
//
// Flags map onto the options of package github.com/gowsgi/wsgi; see
// gowsgi --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

const usage = `Usage: gowsgi [flags] APP

APP is "module:callable" (callable defaults to "application"), or a script
file such as /srv/site/app.wsgi or app.py:app.

Examples:
  gowsgi examples/hello.py
  gowsgi --bind 0.0.0.0:8080 --threads 16 --pythonpath /srv/site mysite.wsgi:application
  gowsgi --chdir examples/flaskapp --bind unix:/run/app.sock app:app

Flags:
`

// listFlag is a flag that may be given more than once.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type config struct {
	binds             listFlag
	chdir             string
	pythonPath        listFlag
	threads           int
	interpreter       string
	logLevel          string
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	gracefulTimeout   time.Duration
	showVersion       bool
	app               string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("gowsgi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.Var(&c.binds, "bind", "address to listen on, host:port or unix:/path; repeatable (default 127.0.0.1:8000)")
	fs.StringVar(&c.chdir, "chdir", "", "change to this directory before loading the app (and put it on sys.path)")
	fs.Var(&c.pythonPath, "pythonpath", "directory to put at the front of sys.path; repeatable")
	fs.IntVar(&c.threads, "threads", 8, "requests inside the app at once")
	fs.StringVar(&c.interpreter, "interpreter", "sub", "interpreter for the app: sub or main")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time allowed to read a request's headers")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
	fs.DurationVar(&c.gracefulTimeout, "graceful-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long requests in flight may take to finish")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.showVersion {
		return c, nil
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, errors.New("give exactly one APP")
	}
	c.app = fs.Arg(0)
	if len(c.binds) == 0 {
		c.binds = listFlag{"127.0.0.1:8000"}
	}
	return c, nil
}

func (c *config) options(logger *slog.Logger) ([]wsgi.Option, error) {
	opts := []wsgi.Option{
		wsgi.WithApp(c.app),
		wsgi.WithThreads(c.threads),
		wsgi.WithLogger(logger),
	}
	switch c.interpreter {
	case "sub":
		opts = append(opts, wsgi.WithInterpreter(wsgi.SubInterpreter))
	case "main":
		opts = append(opts, wsgi.WithInterpreter(wsgi.MainInterpreter))
	default:
		return nil, fmt.Errorf("--interpreter %q: use sub or main", c.interpreter)
	}
	if c.chdir != "" {
		opts = append(opts, wsgi.WithPythonPath("."))
	}
	if len(c.pythonPath) > 0 {
		opts = append(opts, wsgi.WithPythonPath(c.pythonPath...))
	}
	return opts, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 2
	}
	if c.showVersion {
		fmt.Fprintf(stdout, "gowsgi %s\n", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		fmt.Fprintf(stderr, "gowsgi: --log-level %q: use debug, info, warn or error\n", c.logLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if c.chdir != "" {
		if err := os.Chdir(c.chdir); err != nil {
			fmt.Fprintln(stderr, "gowsgi: --chdir:", err)
			return 2
		}
	}
	opts, err := c.options(logger)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 2
	}
	h, err := wsgi.NewHandler(opts...)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		var pe *wsgi.PythonError
		if errors.As(err, &pe) && pe.Traceback != "" {
			fmt.Fprint(stderr, pe.Traceback)
		}
		return 1
	}

	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.readHeaderTimeout,
		IdleTimeout:       c.idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	var listeners []net.Listener
	for _, b := range c.binds {
		ln, url, err := listen(b)
		if err != nil {
			fmt.Fprintf(stderr, "gowsgi: --bind %s: %v\n", b, err)
			return 1
		}
		listeners = append(listeners, ln)
		fmt.Fprintf(stdout, "gowsgi: serving %s (Python %s) on %s\n", c.app, wsgi.PythonVersion(), url)
	}

	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { errc <- srv.Serve(ln) }()
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	case sig := <-sigc:
		logger.Info("gowsgi: stopping", "signal", sig.String(), "graceful_timeout", c.gracefulTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.gracefulTimeout)
	defer cancel()
	status := 0
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("gowsgi: requests still in flight at the graceful timeout", "error", err)
		status = 1
	}
	if err := h.Shutdown(ctx); err != nil {
		logger.Warn("gowsgi: the app did not finish in time", "error", err)
		status = 1
	}
	return status
}

// listen opens host:port or unix:/path and returns a URL to show.
func listen(bind string) (net.Listener, string, error) {
	if path, ok := strings.CutPrefix(bind, "unix:"); ok {
		os.Remove(path) // a stale socket from an earlier run
		ln, err := net.Listen("unix", path)
		return ln, "unix:" + path, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + ln.Addr().String() + "/", nil
}
