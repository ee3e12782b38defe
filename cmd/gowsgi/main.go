// Command gowsgi serves one WSGI application over HTTP, the way
// `gunicorn module:app` does, with the app running in CPython embedded in
// this process.
//
//	gowsgi [flags] module:callable
//	gowsgi [flags] /path/to/app.wsgi
//
// Every flag maps onto an option of package github.com/gowsgi/wsgi; see
// gowsgi --help.
package main

import (
	"bufio"
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gowsgi/wsgi"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

const usage = `Usage: gowsgi [flags] APP

APP is "module:callable" (callable defaults to "application"), or a script
file such as /srv/site/app.wsgi or app.py:app.

Examples:
  gowsgi examples/hello.py
  gowsgi --chdir examples/flaskapp app:app
  gowsgi --bind 0.0.0.0:8080 --threads 16 --pythonpath /srv/site mysite.wsgi:application
  gowsgi --bind unix:/run/app.sock --access-log - --reload app:app
  gowsgi --certfile cert.pem --keyfile key.pem --bind :8443 app:app   (HTTPS and HTTP/2)
  gowsgi --processes 4 --stats-addr 127.0.0.1:9100 app:app   (4 workers; JSON at /, Prometheus at /metrics)

Signals: SIGTERM and SIGINT stop after the requests in flight finish
(--graceful-timeout); SIGHUP reloads the app (--reload-mechanism) without
dropping a connection.

With --processes N (N > 1), gowsgi is a supervisor that opens the sockets,
never loads Python, and runs N worker processes that serve them. A worker
that dies is started again after 1s, doubling up to 30s while workers keep
dying young. SIGHUP starts a new set of workers and stops the old ones only
once all the new ones have loaded the app; if one fails, the old ones keep
serving. SIGTERM and SIGINT drain every worker. Send signals to the
supervisor.

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
	interpreters      int
	pythonCPUs        string
	slot              int // the worker's slot under a supervisor, 1 to --processes; 0 otherwise
	home, executable  string
	optimize          int
	reload            bool
	reloadMechanism   string
	passAuth          bool
	ranges            bool
	vars              listFlag
	middleware        listFlag
	outputBuffering   bool
	writeBuffering    bool
	writeBufferSize   int
	tempPath          string
	optimizeHeaders   bool
	accessLog         string
	logLevel          string
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	maxRequestBody    int64
	requestTimeout    time.Duration
	sendTimeout       time.Duration
	queueTimeout      time.Duration
	maxQueue          int
	trustedProxies    listFlag
	statsAddr         string
	processes         int
	readyTimeout      time.Duration
	certFile, keyFile string
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
	fs.StringVar(&c.chdir, "chdir", "", "change to this directory before loading the app, and put it on sys.path")
	fs.Var(&c.pythonPath, "pythonpath", "directory to put at the front of sys.path; repeatable")
	fs.IntVar(&c.threads, "threads", 8, "requests inside the app at once")
	fs.StringVar(&c.interpreter, "interpreter", "sub", "interpreter for the app: sub, main, or isolated (a pool with their own GIL, Python 3.12+)")
	fs.IntVar(&c.interpreters, "interpreters", runtime.GOMAXPROCS(0), "with --interpreter isolated, how many interpreters")
	fs.StringVar(&c.pythonCPUs, "python-cpus", "", "pin the threads that run each interpreter's queued requests to one CPU: a list (1 or 2,3; with --processes, each worker starts further along it) or auto (the CPUs this process may use, the last first); unset: no pinning")
	fs.StringVar(&c.home, "home", "", "Python home (prefix of the standard library)")
	fs.StringVar(&c.executable, "executable", "", "Python executable; a virtualenv's bin/python selects that virtualenv")
	fs.IntVar(&c.optimize, "optimize", 0, "Python optimization level, 0, 1 (-O) or 2 (-OO)")
	fs.BoolVar(&c.reload, "reload", false, "reload the app when its source files change")
	fs.StringVar(&c.reloadMechanism, "reload-mechanism", "module", "how to reload: module, interpreter or process (re-execute gowsgi on the same sockets)")
	fs.BoolVar(&c.passAuth, "pass-authorization", false, "pass the Authorization header to the app")
	fs.BoolVar(&c.ranges, "ranges", false, "answer Range requests (206, multipart/byteranges, 416)")
	fs.Var(&c.vars, "var", "NAME=VALUE to add to the environ, with $remote_addr, $http_NAME, ... expanded; repeatable")
	fs.Var(&c.middleware, "middleware", "module[:callable] WSGI middleware to wrap the app in, outermost first; repeatable")
	fs.BoolVar(&c.outputBuffering, "output-buffering", false, "gather the app's chunks up to --write-buffer-size before sending")
	fs.BoolVar(&c.writeBuffering, "write-buffering", false, "keep write() data (memory, then --temp-path) until the app returns")
	fs.IntVar(&c.writeBufferSize, "write-buffer-size", os.Getpagesize(), "buffer size in bytes for the two buffering flags")
	fs.StringVar(&c.tempPath, "temp-path", "", "DIR[,L1[,L2[,L3]]] where write buffering spills, with hashed sub-directory levels (default the system temp dir)")
	fs.BoolVar(&c.optimizeHeaders, "optimize-send-headers", false, "for HEAD, 204 and 304, stop a generator at its first b\"\"")
	fs.StringVar(&c.accessLog, "access-log", "", "write an Apache combined access log to this file, - for stdout")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time allowed to read a request's headers")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
	fs.Int64Var(&c.maxRequestBody, "max-request-body", 0, "largest request body in bytes, 0 for no limit (413 beyond it)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 0, "stop a request still in the app after this long: 504, or an aborted response (0: none)")
	fs.DurationVar(&c.sendTimeout, "send-timeout", 60*time.Second, "cut a client that takes nothing of the response for this long, between two writes (0: never)")
	fs.DurationVar(&c.queueTimeout, "queue-timeout", 0, "answer 503 to a request that waited this long for a thread (0: wait)")
	fs.IntVar(&c.maxQueue, "max-queue", 0, "answer 503 at once when this many requests already wait (0: no bound)")
	fs.Var(&c.trustedProxies, "trusted-proxy", "address or CIDR of a proxy whose Forwarded/X-Forwarded-* headers are believed; repeatable")
	fs.StringVar(&c.statsAddr, "stats-addr", "", "serve the stats on this address (host:port): JSON at /, the Prometheus text format at /metrics; with --processes, summed over the workers")
	fs.IntVar(&c.processes, "processes", 1, "worker processes serving the app, under a supervisor; 1 serves from this process, with no supervisor")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", time.Minute, "with --processes, how long a starting worker may take to load the app before it is killed")
	fs.StringVar(&c.certFile, "certfile", "", "TLS certificate file; with --keyfile serves HTTPS and HTTP/2")
	fs.StringVar(&c.keyFile, "keyfile", "", "TLS key file")
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
	if c.processes < 1 {
		return nil, fmt.Errorf("--processes %d: give the number of worker processes, 1 or more", c.processes)
	}
	if c.readyTimeout <= 0 {
		return nil, fmt.Errorf("--ready-timeout %v: give a positive duration", c.readyTimeout)
	}
	if len(c.binds) == 0 {
		c.binds = listFlag{"127.0.0.1:8000"}
	}
	if (c.certFile == "") != (c.keyFile == "") {
		return nil, errors.New("--certfile and --keyfile go together")
	}
	return c, nil
}

// options maps the flags onto the library's options.
func (c *config) options(logger *slog.Logger, stdout io.Writer, restart func()) ([]wsgi.Option, io.Closer, error) {
	opts := []wsgi.Option{
		wsgi.WithApp(c.app),
		wsgi.WithThreads(c.threads),
		wsgi.WithLogger(logger),
		wsgi.WithPassAuthorization(c.passAuth),
		wsgi.WithRanges(c.ranges),
		wsgi.WithScriptReloading(c.reload),
		wsgi.WithOutputBuffering(c.outputBuffering),
		wsgi.WithWriteBuffering(c.writeBuffering),
		wsgi.WithWriteBufferSize(c.writeBufferSize),
		wsgi.WithOptimizeSendHeaders(c.optimizeHeaders),
		wsgi.WithMaxRequestBody(c.maxRequestBody),
		wsgi.WithRequestTimeout(c.requestTimeout),
		wsgi.WithSendTimeout(c.sendTimeout),
		wsgi.WithQueueTimeout(c.queueTimeout),
		wsgi.WithMaxQueue(c.maxQueue),
		wsgi.WithTrustedProxies(c.trustedProxies...),
	}
	switch c.interpreter {
	case "sub":
		opts = append(opts, wsgi.WithInterpreter(wsgi.SubInterpreter))
	case "main":
		opts = append(opts, wsgi.WithInterpreter(wsgi.MainInterpreter))
	case "isolated":
		opts = append(opts, wsgi.WithInterpreter(wsgi.IsolatedInterpreters), wsgi.WithInterpreters(c.interpreters))
	default:
		return nil, nil, fmt.Errorf("--interpreter %q: use sub, main or isolated", c.interpreter)
	}
	if c.pythonCPUs != "" {
		cpus, err := c.cpus()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, wsgi.WithPythonCPUs(cpus...))
	}
	switch c.reloadMechanism {
	case "module":
		opts = append(opts, wsgi.WithReloadMechanism(wsgi.ReloadModule))
	case "interpreter":
		opts = append(opts, wsgi.WithReloadMechanism(wsgi.ReloadInterpreter))
	case "process":
		opts = append(opts, wsgi.WithReloadMechanism(wsgi.ReloadProcess), wsgi.WithProcessReload(restart))
	default:
		return nil, nil, fmt.Errorf("--reload-mechanism %q: use module, interpreter or process", c.reloadMechanism)
	}
	if c.chdir != "" {
		opts = append(opts, wsgi.WithPythonPath("."))
	}
	if len(c.pythonPath) > 0 {
		opts = append(opts, wsgi.WithPythonPath(c.pythonPath...))
	}
	if c.home != "" {
		opts = append(opts, wsgi.WithPythonHome(c.home))
	}
	if c.executable != "" {
		opts = append(opts, wsgi.WithPythonExecutable(c.executable))
	}
	if c.optimize != 0 {
		opts = append(opts, wsgi.WithPythonOptimize(c.optimize))
	}
	for _, v := range c.vars {
		name, value, ok := strings.Cut(v, "=")
		if !ok {
			return nil, nil, fmt.Errorf("--var %q: write NAME=VALUE", v)
		}
		opts = append(opts, wsgi.WithVar(name, value))
	}
	for _, m := range c.middleware {
		module, callable, _ := strings.Cut(m, ":")
		opts = append(opts, wsgi.WithMiddleware(module, callable))
	}
	if c.tempPath != "" {
		parts := strings.Split(c.tempPath, ",")
		var levels []int
		for _, p := range parts[1:] {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, nil, fmt.Errorf("--temp-path %q: levels are numbers, as DIR,1,2", c.tempPath)
			}
			levels = append(levels, n)
		}
		opts = append(opts, wsgi.WithTempPath(parts[0], levels...))
	}
	var closer io.Closer = io.NopCloser(nil)
	switch c.accessLog {
	case "":
	case "-":
		opts = append(opts, wsgi.WithAccessLog(stdout))
	default:
		f, err := os.OpenFile(c.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--access-log: %w", err)
		}
		bw := bufio.NewWriter(f)
		opts = append(opts, wsgi.WithAccessLog(bw))
		closer = f
	}
	return opts, closer, nil
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
		linked := "from a shared libpython"
		if wsgi.PythonLinkedStatically() {
			linked = "linked statically"
		}
		fmt.Fprintf(stdout, "gowsgi %s (CPython %s)\n", version, linked)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		fmt.Fprintf(stderr, "gowsgi: --log-level %q: use debug, info, warn or error\n", c.logLevel)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// A worker of a supervisor (--processes) has a channel to it.
	ctl, err := openControl()
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	if ctl != nil {
		logger = logger.With("worker", ctl.slot, "pid", os.Getpid())
	}
	startDir, _ := os.Getwd() // a restart runs from here, as this run did
	if c.chdir != "" {
		if err := os.Chdir(c.chdir); err != nil {
			fmt.Fprintln(stderr, "gowsgi: --chdir:", err)
			return 2
		}
	}

	// Signals are caught from here on, before anything announces that the
	// server runs: a SIGHUP or SIGTERM sent at once must not kill it. A
	// worker leaves reloads to its supervisor, which replaces it: a SIGHUP
	// sent to the whole process group reloads once.
	sigc := make(chan os.Signal, 1)
	if ctl != nil {
		signal.Ignore(syscall.SIGHUP)
		signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	} else {
		signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	}
	defer signal.Stop(sigc)

	if ctl == nil && c.processes > 1 {
		return supervise(c, args, startDir, logger, stdout, stderr, sigc)
	}
	return serve(c, ctl, startDir, logger, stdout, stderr, sigc)
}

// serve loads the app and serves it from this process: the only process,
// or a worker of a supervisor when ctl is not nil.
func serve(c *config, ctl *control, startDir string, logger *slog.Logger, stdout, stderr io.Writer, sigc <-chan os.Signal) int {
	// Listen first: with --reload-mechanism process, a restart hands these
	// sockets to the new process, so no connection is refused meanwhile.
	var listeners []net.Listener
	var err error
	if ctl != nil {
		var ok bool
		listeners, ok, err = inheritedListeners(c.binds)
		if !ok && err == nil {
			err = fmt.Errorf("a worker needs the sockets of its supervisor (%s)", listenFDsEnv)
		}
	} else {
		listeners, err = listenAll(c.binds)
	}
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	defer func() { // on every way out, such as an app that fails to load
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	restarting := make(chan struct{})
	restart := func() {
		if err := reexec(listeners, startDir); err != nil {
			logger.Error("gowsgi: restart failed; the current process keeps serving", "error", err)
			return
		}
		close(restarting)
	}
	if ctl != nil {
		// The supervisor starts new workers, then stops this one.
		restart = ctl.requestReload
		c.slot = ctl.slot
	}
	opts, closer, err := c.options(logger, stdout, restart)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 2
	}
	defer closer.Close()
	if ctl != nil {
		opts = append(opts, wsgi.WithMultiprocess(true)) // other workers serve the same app
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

	fresh := &freshConns{}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.readHeaderTimeout,
		IdleTimeout:       c.idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnState:         fresh.track,
	}
	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		if ctl == nil {
			fmt.Fprintf(stdout, "gowsgi: serving %s (Python %s) on %s\n", c.app, wsgi.PythonVersion(), displayURL(ln, c.certFile != ""))
		}
		go func() {
			if c.certFile != "" {
				errc <- srv.ServeTLS(ln, c.certFile, c.keyFile)
			} else {
				errc <- srv.Serve(ln)
			}
		}()
	}
	var supervisorGone chan struct{} // stays nil, never ready, without a supervisor
	if ctl != nil {
		supervisorGone = make(chan struct{})
		go ctl.serve(func() processStats { return ownStats(h) }, supervisorGone)
		ctl.ready(wsgi.PythonVersion())
	} else if c.statsAddr != "" {
		ln, err := net.Listen("tcp", c.statsAddr)
		if err != nil {
			fmt.Fprintln(stderr, "gowsgi: --stats-addr:", err)
			return 1
		}
		defer ln.Close()
		fmt.Fprintf(stdout, "gowsgi: stats on http://%s/\n", ln.Addr())
		go http.Serve(ln, singleStats(logger, h))
	}
	for stop := false; !stop; {
		select {
		case err := <-errc:
			fmt.Fprintln(stderr, "gowsgi:", err)
			return 1
		case <-restarting:
			logger.Info("gowsgi: handed the sockets to a new process; finishing the requests in flight")
			keepSocketFiles(listeners)
			stop = true
		case <-supervisorGone:
			logger.Warn("gowsgi: the supervisor is gone; stopping")
			stop = true
		case sig := <-sigc:
			if sig == syscall.SIGHUP {
				if err := h.Reload(); err != nil {
					logger.Error("gowsgi: reload on SIGHUP failed; the old app keeps serving", "error", err)
				} else {
					logger.Info("gowsgi: reloaded the app on SIGHUP")
				}
				continue
			}
			logger.Info("gowsgi: stopping", "signal", sig.String(), "graceful_timeout", c.gracefulTimeout)
			stop = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.gracefulTimeout)
	defer cancel()
	status := 0
	stopAccepting(ctx, listeners, errc, fresh, c.readHeaderTimeout)
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("gowsgi: requests still in flight at the graceful timeout", "error", err)
		status = 1
	}
	if err := h.Shutdown(ctx); err != nil {
		logger.Warn("gowsgi: the app did not finish in time", "error", err)
		status = 1
	}
	if ctl != nil {
		ctl.final(ownStats(h))
	}
	return status
}

// listenFDsEnv tells a re-executed gowsgi that its sockets are inherited,
// from file descriptor 3 on, in --bind order.
const listenFDsEnv = "GOWSGI_LISTEN_FDS"

// listenAll opens every --bind address, or takes the inherited sockets.
func listenAll(binds []string) ([]net.Listener, error) {
	if lns, ok, err := inheritedListeners(binds); ok {
		return lns, err
	}
	var lns []net.Listener
	for _, b := range binds {
		network, addr := "tcp", b
		if path, ok := strings.CutPrefix(b, "unix:"); ok {
			network, addr = "unix", path
			os.Remove(path) // a stale socket from an earlier run
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("--bind %s: %w", b, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// inheritedListeners takes the sockets a parent handed over, from file
// descriptor 3 on, in --bind order; ok is false when there are none.
func inheritedListeners(binds []string) (lns []net.Listener, ok bool, err error) {
	n, err := strconv.Atoi(os.Getenv(listenFDsEnv))
	if err != nil || n != len(binds) {
		return nil, false, nil
	}
	os.Unsetenv(listenFDsEnv)
	for i := range n {
		f := os.NewFile(uintptr(3+i), binds[i])
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, true, fmt.Errorf("inherited socket for --bind %s: %w", binds[i], err)
		}
		lns = append(lns, ln)
	}
	return lns, true, nil
}

// reexec starts this program again with the same arguments, handing it the
// listening sockets.
func reexec(lns []net.Listener, dir string) error {
	fds, err := listenerFDs(lns)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), fmt.Sprintf("%s=%d", listenFDsEnv, len(fds)))
	std := []uintptr{os.Stdin.Fd(), os.Stdout.Fd(), os.Stderr.Fd()}
	p, err := startChild(exe, os.Args, dir, env, append(std, fds...), nil)
	if err != nil {
		return err
	}
	return p.Release() // it outlives this process
}

// keepSocketFiles stops a closing unix listener from removing its socket
// file, which the new process still serves.
func keepSocketFiles(lns []net.Listener) {
	for _, ln := range lns {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
	}
}

func displayURL(ln net.Listener, tls bool) string {
	if ln.Addr().Network() == "unix" {
		return "unix:" + ln.Addr().String()
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String() + "/"
}

// cpus reads --python-cpus: the list, or for auto the CPUs this process may
// run on, highest first (the first CPU tends to take more of the machine's
// interrupts). A worker of --processes starts (slot-1) x interpreters
// further along it, so that the workers' interpreters take different CPUs
// while there are enough.
func (c *config) cpus() ([]int, error) {
	var cpus []int
	if c.pythonCPUs == "auto" {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(os.Getpid(), &set); err != nil {
			return nil, fmt.Errorf("--python-cpus auto: %w", err)
		}
		for i := len(set)*64 - 1; i >= 0; i-- {
			if set.IsSet(i) {
				cpus = append(cpus, i)
			}
		}
	} else {
		for _, f := range strings.Split(c.pythonCPUs, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--python-cpus %q: give auto, or CPU numbers separated by commas", c.pythonCPUs)
			}
			cpus = append(cpus, n)
		}
	}
	if c.slot > 1 {
		per := 1
		if c.interpreter == "isolated" {
			per = c.interpreters
		}
		k := (c.slot - 1) * per % len(cpus)
		cpus = slices.Concat(cpus[k:], cpus[:k])
	}
	return cpus, nil
}
