// Command compare measures gowsgi (in one process, and with --processes 2)
// against a bare Go net/http server (the ceiling) and against uWSGI,
// gunicorn (sync and gthread workers) and waitress, on loopback, and writes
// bench/RESULTS.md.
//
//	go run ./bench/compare [-rounds 3] [-duration 10s] [-warmup 1s]
//	                       [-servers go-bare,gowsgi,...] [-workloads hello-c50,...]
//
// It first installs what is missing with apt-get (as root): wrk, uwsgi and
// its python3 plugin, gunicorn, waitress, Flask and Django. Then it builds
// the gowsgi command (CPython linked statically, as make serve does, and
// for gowsgi-shared with the shared libpython; for gowsgi-iso2, against a
// Python 3.12 or 3.14+ when one is found, see -iso-python) and runs the
// servers one at a time, round after round
// (A B C ... A B C ...), so that a slow minute of the shared machine hurts
// every server of one round rather than one server of every round. Each
// measurement is a wrk run of -duration after a warm-up run of -warmup; it
// reads the server's process tree in /proc before and after, for the CPU
// time and the context switches per request and the resident memory.
// Every figure is also given as a ratio to go-bare's in the same round, and
// the tables show the median over rounds.
//
// Once per round, bench/apps/loop.py measures what the Python views cost
// called in a plain loop, with no server; the report's Targets section sets
// gowsgi's figures against those costs.
//
// The WSGI apps are in bench/apps. `compare -bare ADDR` runs the bare Go
// server alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// debPackages are installed when missing: what builds gowsgi, wrk, the
// other servers, Flask and Django.
var debPackages = slices.Concat(harness.BuildPackages, harness.ServerPackages,
	[]string{"python3-waitress", "python3-flask", "python3-django"})

// python runs bench/apps/loop.py: Debian's Python, the one every server
// runs the apps on.
const python = "/usr/bin/python3"

// workload is one kind of request, served by one WSGI callable.
type workload struct {
	name      string
	desc      string
	path      string // the bare server dispatches on it; the WSGI apps ignore it
	module    string // in bench/apps
	callable  string
	conns     int    // wrk -c
	postBytes int    // > 0: POST a body of this size (a wrk Lua script)
	want      []byte // the body every server must send
	loop      string // the view of bench/apps/loop.py that costs the same, if any
}

var workloads = []workload{
	{"hello-c50", "13 bytes, \"Hello, World!\", 50 connections", "/hello", "apps", "hello", 50, 0, helloBody, "hello"},
	{"hello-c8", "13 bytes, \"Hello, World!\", 8 connections", "/hello", "apps", "hello", 8, 0, helloBody, "hello"},
	{"big", "a 1 MiB body (one bytes object in a list), 8 connections", "/big", "apps", "big", 8, 0, bigBody, ""},
	{"echo", "a 64 KiB POST body read by CONTENT_LENGTH and sent back, 16 connections", "/echo", "apps", "echo", 16, len(echoBody), echoBody, ""},
	{"stream", "a generator of 100 x 1 KiB chunks (no Content-Length), 16 connections", "/stream", "apps", "stream", 16, 0, streamBody, ""},
	{"flask", "a Flask view returning the 13 bytes of hello, 50 connections", "/flask", "flaskapp", "app", 50, 0, helloBody, "flask"},
	{"django", "a Django JSON view, {\"hello\": \"world\"}, through the URL resolver and the default middleware of a new project, 50 connections", "/django", "djangoapp", "app", 50, 0, djangoBody, "django"},
	{"io", "a view that sleeps 2 ms, then answers as hello (a stand-in for a database call), 50 connections", "/io", "apps", "io", 50, 0, helloBody, ""},
	{"mixed", "a view that sleeps 1 ms, then runs about 0.2 ms of pure Python, then answers as hello, 50 connections", "/mixed", "apps", "mixed", 50, 0, helloBody, "mixed"},
}

// server is one way of serving the apps. argv gets the address to bind
// (127.0.0.1:PORT) and the app as "module:callable".
type server struct {
	name     string
	note     string
	argv     func(e *env, addr, module, callable string) []string
	optional bool     // run only when named in -servers
	only     []string // the workloads it serves, if not all
}

// serves tells whether s serves workload w.
func (s server) serves(w workload) bool { return s.only == nil || slices.Contains(s.only, w.name) }

// env is what the servers' command lines need.
type env struct {
	self   string // this program, for -bare
	gowsgi string // the built command, CPython linked statically if it can be
	shared string // the same with the shared libpython (gowsgi-shared)
	apps   string // absolute path of bench/apps
	tuned  []string
	burn   string // go-view's and go-gil's -burn: the views' last loop costs

	// gowsgi-iso2: the command built against a Python that runs
	// interpreters with their own GIL (harness.OwnGILPython), or why not.
	iso        string
	isoPrefix  string
	isoVersion string
	isoSkip    string
}

var servers = []server{
	{"go-bare", "net/http alone, the same bytes (the ceiling)", func(e *env, addr, _, _ string) []string {
		return []string{e.self, "-bare", addr}
	}, false, nil},
	{"go-view", "", func(e *env, addr, _, _ string) []string {
		return []string{e.self, "-bare", addr, "-burn", e.burn}
	}, false, []string{"flask", "django"}},
	{"go-gil", "", func(e *env, addr, _, _ string) []string {
		return []string{e.self, "-bare", addr, "-burn", e.burn, "-gil"}
	}, false, []string{"flask", "django"}},
	{"gowsgi", "the command with its default flags (--threads 8, one sub-interpreter), CPython linked statically as make serve builds it", func(e *env, addr, mod, fn string) []string {
		return []string{e.gowsgi, "--bind", addr, "--chdir", e.apps, mod + ":" + fn}
	}, false, nil},
	{"gowsgi-shared", "the same, built with the shared libpython (a plain go build): what linking CPython statically changes", func(e *env, addr, mod, fn string) []string {
		return []string{e.shared, "--bind", addr, "--chdir", e.apps, mod + ":" + fn}
	}, false, []string{"hello-c50", "flask", "django"}},
	{"gowsgi-pin", "the same with --python-cpus auto: the threads that run queued requests pinned to the last CPU (opt-in)", func(e *env, addr, mod, fn string) []string {
		return []string{e.gowsgi, "--bind", addr, "--chdir", e.apps, "--python-cpus", "auto", mod + ":" + fn}
	}, false, []string{"flask", "django"}},
	{"gowsgi-2p", "the command with --processes 2: a supervisor and two worker processes, each with the default flags", func(e *env, addr, mod, fn string) []string {
		return []string{e.gowsgi, "--bind", addr, "--chdir", e.apps, "--processes", "2", mod + ":" + fn}
	}, false, nil},
	{"gowsgi-iso2", "", func(e *env, addr, mod, fn string) []string {
		return []string{e.iso, "--bind", addr, "--chdir", e.apps, "--interpreter", "isolated", "--interpreters", "2",
			"--pythonpath", harness.DistPackages, mod + ":" + fn}
	}, false, []string{"flask"}},
	{"gowsgi-tuned", "", func(e *env, addr, mod, fn string) []string {
		return append(append([]string{e.gowsgi, "--bind", addr, "--chdir", e.apps}, e.tuned...), mod+":"+fn)
	}, true, nil},
	{"uwsgi", "2 processes x 4 threads, HTTP/1.1 keep-alive socket, no proxy in front", func(e *env, addr, mod, fn string) []string {
		argv := []string{"uwsgi", "--plugin", "python3", "--http11-socket", addr, "--tcp-nodelay",
			"--master", "--processes", "2", "--threads", "4", "--disable-logging", "--need-app",
			"--chdir", e.apps, "--wsgi-file", filepath.Join(e.apps, mod+".py"), "--callable", fn}
		if fn == "stream" {
			// Without a Content-Length uWSGI ends the body by closing the
			// connection, which wrk counts as an error; the chunked
			// transformation keeps the connection alive, as the others do.
			argv = append(argv, "--plugin", "transformation_chunked", "--route-run", "chunked:")
		}
		return argv
	}, false, nil},
	{"gunicorn-sync", "2 sync workers (no keep-alive: one connection per request)", func(e *env, addr, mod, fn string) []string {
		return []string{"gunicorn", "--bind", addr, "--chdir", e.apps, "--workers", "2", "--worker-class", "sync",
			"--log-level", "warning", mod + ":" + fn}
	}, false, nil},
	{"gunicorn-gthread", "2 workers x 4 threads", func(e *env, addr, mod, fn string) []string {
		return []string{"gunicorn", "--bind", addr, "--chdir", e.apps, "--workers", "2", "--worker-class", "gthread",
			"--threads", "4", "--log-level", "warning", mod + ":" + fn}
	}, false, nil},
	{"waitress", "one process, 8 threads", func(e *env, addr, mod, fn string) []string {
		return []string{"waitress-serve", "--listen=" + addr, "--threads=8", mod + ":" + fn}
	}, false, nil},
}

// sample is one measurement: a server, a workload, a round.
type sample struct {
	round int
	harness.WrkResult
}

// loopSample is what bench/apps/loop.py printed for one view in one round.
type loopSample struct {
	round     int
	cpu, wall float64 // µs per call: CPU time of the calling thread, and wall-clock
	calls     int     // per batch
}

// run holds the state of one benchmark run.
type run struct {
	ctx      context.Context
	env      env
	tmp      string
	rounds   int
	duration time.Duration
	warmup   time.Duration
	servers  []server
	loads    []workload
	script   string // the wrk Lua script for POSTs
	client   *http.Client
	results  map[string]map[string][]sample // server, workload
	loops    map[string][]loopSample        // loop.py's view
	failures harness.Skips
}

func main() {
	bare := flag.String("bare", "", "run only the bare Go server on this address (used by the harness itself)")
	burn := flag.String("burn", "", "with -bare: CPU time that /flask and /django burn first, as flask=81.2,django=272.6 (µs)")
	gil := flag.Bool("gil", false, "with -bare and -burn: burn on one thread, one request at a time")
	rounds := flag.Int("rounds", 3, "rounds; each runs every server on every workload once")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured wrk run (whole seconds)")
	warmup := flag.Duration("warmup", time.Second, "length of the wrk warm-up run before each measurement (whole seconds)")
	var defaults []server
	for _, s := range servers {
		if !s.optional {
			defaults = append(defaults, s)
		}
	}
	serverList := flag.String("servers", names(defaults, func(s server) string { return s.name }),
		"comma-separated servers to run; gowsgi-tuned (the command with the flags of -tuned) runs only when named")
	loadList := flag.String("workloads", names(workloads, func(w workload) string { return w.name }), "comma-separated workloads to run")
	tuned := flag.String("tuned", "--threads 2", "flags of the gowsgi-tuned server")
	isoPython := flag.String("iso-python", "", "prefix of the Python 3.12 or 3.14+ that gowsgi-iso2 is built against (default: the newest in ~/.pyenv/versions; without one, gowsgi-iso2 is skipped)")
	out := flag.String("out", "bench/RESULTS.md", "Markdown report to write, relative to the module root; empty for none")
	flag.Parse()
	if *bare != "" {
		costs, err := parseBurn(*burn)
		if err != nil {
			fmt.Fprintln(os.Stderr, "compare: -burn:", err)
			os.Exit(2)
		}
		serveBare(*bare, costs, *gil)
		return
	}
	if flag.NArg() > 0 || *rounds < 1 || *duration < time.Second || *warmup < 0 {
		flag.Usage()
		os.Exit(2)
	}
	r := &run{
		rounds:   *rounds,
		duration: *duration,
		warmup:   *warmup,
		// No keep-alive for the probes: an idle connection left open would
		// hold one of uWSGI's threads during the measurement.
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		results: map[string]map[string][]sample{},
		loops:   map[string][]loopSample{},
	}
	var err error
	if r.servers, err = pick(servers, *serverList, func(s server) string { return s.name }); err == nil {
		r.loads, err = pick(workloads, *loadList, func(w workload) string { return w.name })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	r.env.tuned = strings.Fields(*tuned)
	r.env.isoPrefix = *isoPython
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r.ctx = ctx
	if err := r.main(*out); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func (r *run) main(out string) error {
	start := time.Now()
	root, err := harness.Prepare(debPackages, os.Stdout)
	if err != nil {
		return err
	}
	r.tmp, err = os.MkdirTemp("", "gowsgi-compare")
	if err != nil {
		return err
	}
	defer os.RemoveAll(r.tmp)
	if r.env.self, err = os.Executable(); err != nil {
		return err
	}
	r.env.apps = filepath.Join(root, "bench", "apps")
	fmt.Println("building ./cmd/gowsgi")
	if r.env.gowsgi, err = harness.BuildGowsgi(r.tmp, true); err != nil {
		return err
	}
	if slices.ContainsFunc(r.servers, func(s server) bool { return s.name == "gowsgi-shared" }) {
		dir := filepath.Join(r.tmp, "shared")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if r.env.shared, err = harness.BuildGowsgi(dir, false); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(r.servers, func(s server) bool { return s.name == "gowsgi-iso2" }) {
		if err := r.buildIso(); err != nil {
			return err
		}
	}
	if r.script, err = harness.PostScript(r.tmp, len(echoBody)); err != nil {
		return err
	}

	// Each app is started once per server and round, and serves all of
	// its workloads (hello serves hello-c50 and hello-c8).
	type group struct {
		app   string
		loads []workload
	}
	var groups []group
	for _, w := range r.loads {
		app := w.module + ":" + w.callable
		if i := slices.IndexFunc(groups, func(g group) bool { return g.app == app }); i >= 0 {
			groups[i].loads = append(groups[i].loads, w)
		} else {
			groups = append(groups, group{app, []workload{w}})
		}
	}
	// Each measurement costs its wrk runs and a probe; each server start
	// about half a second more (gowsgi-2p's a second); loop.py about two
	// seconds a view.
	views := r.loopViews()
	per := r.warmup + r.duration + 150*time.Millisecond
	est := time.Duration(r.rounds*len(r.servers)) * (time.Duration(len(r.loads))*per + time.Duration(len(groups))*500*time.Millisecond)
	est += time.Duration(r.rounds*len(views)) * 2 * time.Second
	fmt.Printf("%d rounds x %d servers x %d workloads, about %v\n", r.rounds, len(r.servers), len(r.loads), est.Round(time.Minute))

	for round := 1; round <= r.rounds; round++ {
		if len(views) > 0 {
			if err := r.ctx.Err(); err != nil {
				return err
			}
			r.loop(round, views)
			r.env.burn = r.burnArg()
		}
		if r.env.iso != "" && slices.Contains(views, "flask") {
			r.loopWith(round, filepath.Join(r.env.isoPrefix, "bin", "python3"), []string{"flask"}, isoView)
		}
		for _, g := range groups {
			for _, s := range r.servers {
				if err := r.ctx.Err(); err != nil {
					return err
				}
				r.serve(round, s, g.loads)
			}
		}
	}
	fmt.Printf("\nmeasured in %v\n\n", time.Since(start).Round(time.Second))
	return harness.Publish(r.report(start), out)
}

// buildIso builds gowsgi-iso2's command, or notes why it is skipped.
func (r *run) buildIso() error {
	prefix, version, skip, err := harness.OwnGILPython(r.env.isoPrefix)
	if err != nil {
		return fmt.Errorf("-iso-python: %v", err)
	}
	if skip != "" {
		r.env.isoSkip = skip
		fmt.Println("gowsgi-iso2 skipped:", skip)
		return nil
	}
	r.env.isoPrefix, r.env.isoVersion = prefix, version
	if v, ok := strings.CutPrefix(harness.First(filepath.Join(prefix, "bin", "python3"), "--version"), "Python "); ok {
		r.env.isoVersion = v // with its patch level
	}
	dir := filepath.Join(r.tmp, "iso")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	fmt.Printf("building ./cmd/gowsgi against Python %s (%s) for gowsgi-iso2\n", r.env.isoVersion, harness.HomeRelative(prefix))
	r.env.iso, err = harness.BuildGowsgi(dir, true, harness.BuildFor(prefix)...)
	return err
}

// serve starts server s on the app of loads, measures each workload, and
// kills the server's process tree. A server that does not start or does not
// answer as it should is reported and skipped.
func (r *run) serve(round int, s server, loads []workload) {
	loads = slices.DeleteFunc(slices.Clone(loads), func(w workload) bool { return !s.serves(w) })
	if len(loads) == 0 || s.name == "gowsgi-iso2" && r.env.iso == "" {
		return
	}
	fail := func(w string, err error) { r.failures.Add(err, "round %d, %s, %s", round, s.name, w) }
	all := names(loads, func(w workload) string { return w.name })
	addr, port, err := harness.FreeAddr()
	if err != nil {
		fail(all, err)
		return
	}
	argv := s.argv(&r.env, addr, loads[0].module, loads[0].callable)
	if _, err := exec.LookPath(argv[0]); err != nil {
		fail(all, err)
		return
	}
	logPath := filepath.Join(r.tmp, fmt.Sprintf("%s-%s-%d.log", s.name, loads[0].callable, round))
	srv, err := harness.StartServer(s.name, argv, r.env.apps, nil, logPath)
	if err != nil {
		fail(all, err)
		return
	}
	defer srv.Stop()
	for i, w := range loads {
		url := "http://" + addr + w.path
		var body []byte
		method := http.MethodGet
		if w.postBytes > 0 {
			method, body = http.MethodPost, echoBody
		}
		probe := func() (*http.Response, []byte, error) { return harness.Fetch(r.client, method, url, body) }
		timeout := 30 * time.Second // the first probe waits for the server to start
		if i > 0 {
			timeout = 5 * time.Second
		}
		if err := srv.WaitReady(r.ctx, timeout, probe, harness.CheckBody(w.want)); err != nil {
			fail(w.name, err)
			continue
		}
		args := []string{"-t2", fmt.Sprintf("-c%d", w.conns), "--timeout", "5s"}
		if w.postBytes > 0 {
			args = append(args, "-s", r.script)
		}
		if r.warmup >= time.Second {
			if _, err := harness.Wrk(r.ctx, append(args, harness.Secs(r.warmup), url)...); err != nil {
				fail(w.name, fmt.Errorf("warm-up: %v", err))
				continue
			}
		}
		res, err := harness.Measure(r.ctx, srv.Pid(), port, r.duration/2, append(args, harness.Secs(r.duration), url)...)
		if err != nil {
			fail(w.name, err)
			continue
		}
		if srv.Exited() {
			fail(w.name, fmt.Errorf("server exited during the run:\n%s", srv.LogTail()))
			continue
		}
		if r.results[s.name] == nil {
			r.results[s.name] = map[string][]sample{}
		}
		r.results[s.name][w.name] = append(r.results[s.name][w.name], sample{round, res})
		fmt.Printf("round %d  %-10s %-17s %9.0f req/s  p50 %8s  p99 %8s  CPU %6.1f µs/req  %5.2f cs/req  RSS %6.1f MiB  PSS %6.1f MiB  errors %d  queued %d  threads exited %d\n",
			round, w.name, s.name, res.RPS, harness.Ms(res.P50), harness.Ms(res.P99), cpuPerReq(res), switchesPerReq(res),
			mib(res.ServerRSSKB), mib(res.ServerPSSKB), res.Errors+res.Non2xx, res.Queued, res.Exited)
	}
}

// loopViews are the views of bench/apps/loop.py that the chosen workloads
// need, in the order of the workloads.
func (r *run) loopViews() []string {
	var views []string
	for _, w := range r.loads {
		if w.loop != "" && !slices.Contains(views, w.loop) {
			views = append(views, w.loop)
		}
	}
	return views
}

// burnArg is -burn for go-view and go-gil: the last loop cost of each view
// that has one.
func (r *run) burnArg() string {
	var parts []string
	for _, v := range []string{"flask", "django"} {
		if ls := r.loops[v]; len(ls) > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.1f", v, ls[len(ls)-1].cpu))
		}
	}
	return strings.Join(parts, ",")
}

// parseBurn reads -burn: view=µs pairs, separated by commas.
func parseBurn(s string) (map[string]time.Duration, error) {
	costs := map[string]time.Duration{}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		view, us, ok := strings.Cut(part, "=")
		x, err := strconv.ParseFloat(us, 64)
		if !ok || err != nil || x < 0 {
			return nil, fmt.Errorf("%q is not view=µs", part)
		}
		costs[view] = time.Duration(x * float64(time.Microsecond))
	}
	return costs, nil
}

// isoView is the key of r.loops under which loopWith keeps the Flask view's
// cost under gowsgi-iso2's Python.
const isoView = "flask-iso"

// loop runs bench/apps/loop.py once for views and keeps its figures. A
// failure is reported and skipped, as a server's is.
func (r *run) loop(round int, views []string) { r.loopWith(round, python, views, "") }

// loopWith runs loop.py with the Python py; key, if not empty, is where the
// figures of its one view are kept instead of under the view's name. A
// Python other than Debian's finds Flask in harness.DistPackages.
func (r *run) loopWith(round int, py string, views []string, key string) {
	cmd := exec.CommandContext(r.ctx, py, append([]string{"loop.py"}, views...)...)
	cmd.Dir = r.env.apps
	if py != python {
		cmd.Env = append(os.Environ(), "PYTHONPATH="+harness.DistPackages, "PYTHONWARNINGS=ignore")
	}
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		r.failures.Add(err, "round %d, loop.py", round)
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var name string
		var ls loopSample
		if n, _ := fmt.Sscan(line, &name, &ls.cpu, &ls.wall, &ls.calls); n != 4 {
			r.failures.Add(fmt.Errorf("unreadable line %q", line), "round %d, loop.py", round)
			continue
		}
		ls.round = round
		if key != "" {
			name = key
		}
		r.loops[name] = append(r.loops[name], ls)
		fmt.Printf("round %d  loop %-8s %8.1f µs/call CPU  %8.1f µs/call wall  (%d calls a batch)\n", round, name, ls.cpu, ls.wall, ls.calls)
	}
}

func cpuPerReq(r harness.WrkResult) float64 {
	return float64(r.ServerCPU.Microseconds()) / float64(r.Requests)
}

func switchesPerReq(r harness.WrkResult) float64 {
	return float64(r.CtxSwitches) / float64(r.Requests)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// names joins the names of xs with commas.
func names[T any](xs []T, name func(T) string) string {
	var s []string
	for _, x := range xs {
		s = append(s, name(x))
	}
	return strings.Join(s, ",")
}

// pick returns the elements of all named in the comma-separated list, in
// the order of all.
func pick[T any](all []T, list string, name func(T) string) ([]T, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var out []T
	for _, x := range all {
		if want[name(x)] {
			out = append(out, x)
			delete(want, name(x))
		}
	}
	for n := range want {
		return nil, fmt.Errorf("unknown name %q; choose among %s", n, names(all, name))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing chosen from %q", list)
	}
	return out, nil
}
