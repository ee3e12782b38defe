// Command isolated measures what a second interpreter with its own GIL
// brings: gowsgi `--interpreter isolated --interpreters 2` against
// `--interpreters 1`, both with `--threads 4`, on a CPU-bound app (about
// 2 ms of pure Python per request) and on a Flask hello view, and writes
// bench/ISOLATED.md.
//
//	go run ./bench/isolated [-python-prefix DIR] [-rounds 3] [-duration 10s]
//
// Interpreters with their own GIL need Python 3.12 or newer (gowsgi refuses
// them on 3.13), and Debian 12 has 3.11: the default prefix is the newest
// 3.12 or 3.14+ in ~/.pyenv/versions that has lib/pkgconfig/python3-embed.pc
// (see harness.OwnGILPython). gowsgi is built against it (PKG_CONFIG_PATH,
// and an rpath to its lib). Without one the command says
// so and exits 0. Flask comes from Debian's python3-flask, which is pure
// Python: its directory is put on sys.path with --pythonpath.
//
// Like bench/compare, it runs on loopback, in interleaved rounds (1, 2, 1,
// 2, ...), with wrk, and reads the server's CPU time and memory in /proc.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// app is one workload.
type app struct {
	name    string
	desc    string
	spec    string   // module:callable in bench/apps
	extra   []string // more gowsgi flags
	want    []byte
	target  float64 // the speed-up 2 interpreters should reach over 1
	skipped string  // why it was not measured, if it was not
}

// cpuBody is what apps.cpu answers: the sum of i*i for i < CPU_LOOPS.
func cpuBody() []byte {
	const n = 44_000 // CPU_LOOPS in bench/apps/apps.py
	var s int64
	for i := int64(0); i < n; i++ {
		s += i * i
	}
	return []byte(fmt.Sprintf("%d\n", s))
}

// sample is one measurement.
type sample struct {
	round int
	harness.WrkResult
	cores float64 // server CPU time / wall time: how many cores it kept busy
}

type run struct {
	ctx      context.Context
	prefix   string
	python   string // its version
	gowsgi   string
	appsDir  string
	tmp      string
	rounds   int
	duration time.Duration
	warmup   time.Duration
	conns    int
	threads  int
	counts   []int // interpreters: 1 and 2
	apps     []*app
	results  map[string]map[int][]sample // app, interpreters
	failures harness.Skips
	client   *http.Client
}

func main() {
	prefix := flag.String("python-prefix", "", "prefix of a Python 3.12+ with lib/pkgconfig/python3-embed.pc (default: the newest 3.12 or 3.14+ in ~/.pyenv/versions)")
	rounds := flag.Int("rounds", 3, "rounds; each measures every app with 1 and 2 interpreters")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured wrk run (whole seconds)")
	warmup := flag.Duration("warmup", 2*time.Second, "length of the wrk warm-up run before each measurement (whole seconds)")
	conns := flag.Int("c", 16, "wrk connections")
	threads := flag.Int("threads", 4, "gowsgi --threads (per interpreter)")
	out := flag.String("out", "bench/ISOLATED.md", "Markdown report to write, relative to the module root; empty for none")
	flag.Parse()
	if flag.NArg() > 0 || *rounds < 1 || *duration < time.Second || *conns < 2 || *threads < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &run{
		ctx: ctx, prefix: *prefix, rounds: *rounds, duration: *duration, warmup: *warmup,
		conns: *conns, threads: *threads, counts: []int{1, 2},
		results: map[string]map[int][]sample{},
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if err := r.main(*out); err != nil {
		fmt.Fprintln(os.Stderr, "isolated:", err)
		os.Exit(1)
	}
}

func (r *run) main(out string) error {
	start := time.Now()
	prefix, _, skip, err := harness.OwnGILPython(r.prefix)
	if err != nil {
		return err
	}
	if skip != "" {
		fmt.Println("isolated: SKIP:", skip)
		return nil
	}
	r.prefix = prefix
	r.python = harness.First(filepath.Join(r.prefix, "bin", "python3"), "--version")

	// wrk, Flask and what builds gowsgi (Python's headers come from the
	// prefix, but pkg-config and the C compiler from Debian).
	root, err := harness.Prepare([]string{"pkg-config", "gcc", "libc6-dev", "wrk", "python3-flask"}, os.Stdout)
	if err != nil {
		return err
	}
	r.appsDir = filepath.Join(root, "bench", "apps")
	if r.tmp, err = os.MkdirTemp("", "gowsgi-isolated"); err != nil {
		return err
	}
	defer os.RemoveAll(r.tmp)
	fmt.Printf("building ./cmd/gowsgi against %s (%s)\n", r.prefix, r.python)
	r.gowsgi, err = harness.BuildGowsgi(r.tmp, true, harness.BuildFor(r.prefix)...)
	if err != nil {
		return err
	}

	r.apps = []*app{
		{name: "cpu", desc: "about 2 ms of pure-Python arithmetic per request (apps:cpu)",
			spec: "apps:cpu", want: cpuBody(), target: 1.8},
		{name: "flask", desc: "a Flask hello view (flaskapp:app), Flask from " + harness.DistPackages,
			spec: "flaskapp:app", extra: []string{"--pythonpath", harness.DistPackages}, want: []byte("Hello, World!"), target: 1.6},
	}
	per := r.warmup + r.duration + time.Second
	fmt.Printf("%d rounds x %d apps x %v interpreters, about %v\n", r.rounds, len(r.apps), r.counts,
		(time.Duration(r.rounds*len(r.apps)*len(r.counts)) * per).Round(time.Second))
	for round := 1; round <= r.rounds; round++ {
		for _, a := range r.apps {
			for _, n := range r.counts {
				if err := r.ctx.Err(); err != nil {
					return err
				}
				if a.skipped == "" {
					r.measure(round, a, n)
				}
			}
		}
	}
	fmt.Println()
	return harness.Publish(r.report(start), out)
}

// argv is the gowsgi command line for app a with n interpreters.
func (r *run) argv(a *app, addr string, n int) []string {
	argv := []string{r.gowsgi, "--bind", addr, "--interpreter", "isolated", "--interpreters", fmt.Sprint(n),
		"--threads", fmt.Sprint(r.threads), "--chdir", r.appsDir}
	return append(append(argv, a.extra...), a.spec)
}

// measure runs one measurement: app a with n interpreters.
func (r *run) measure(round int, a *app, n int) {
	fail := func(err error) { r.failures.Add(err, "round %d, %s, %d interpreter(s)", round, a.name, n) }
	addr, port, err := harness.FreeAddr()
	if err != nil {
		fail(err)
		return
	}
	name := fmt.Sprintf("gowsgi-%s-%d", a.name, n)
	srv, err := harness.StartServer(name, r.argv(a, addr, n), r.appsDir, nil,
		filepath.Join(r.tmp, fmt.Sprintf("%s-%d.log", name, round)))
	if err != nil {
		fail(err)
		return
	}
	defer srv.Stop()
	url := "http://" + addr + "/"
	probe := func() (*http.Response, []byte, error) { return harness.Fetch(r.client, http.MethodGet, url, nil) }
	if err := srv.WaitReady(r.ctx, 60*time.Second, probe, harness.CheckBody(a.want)); err != nil {
		if a.name == "flask" && strings.Contains(err.Error(), "exited") {
			// An import error does not go away in the next round.
			a.skipped = "Flask did not load: " + err.Error()
		}
		fail(err)
		return
	}
	if log := srv.LogTail(); !strings.Contains(log, "(Python "+strings.TrimPrefix(r.python, "Python ")+")") {
		fail(fmt.Errorf("the server does not run %s:\n%s", r.python, log))
		return
	}
	args := []string{"-t2", fmt.Sprintf("-c%d", r.conns), "--timeout", "5s"}
	if r.warmup >= time.Second {
		if _, err := harness.Wrk(r.ctx, append(args, harness.Secs(r.warmup), url)...); err != nil {
			fail(fmt.Errorf("warm-up: %v", err))
			return
		}
	}
	res, err := harness.Measure(r.ctx, srv.Pid(), port, r.duration/2, append(args, harness.Secs(r.duration), url)...)
	if err != nil {
		fail(err)
		return
	}
	s := sample{round: round, WrkResult: res, cores: res.ServerCPU.Seconds() / res.Duration.Seconds()}
	if r.results[a.name] == nil {
		r.results[a.name] = map[int][]sample{}
	}
	r.results[a.name][n] = append(r.results[a.name][n], s)
	fmt.Printf("round %d  %-6s %d interpreter(s)  %8.0f req/s  p50 %8s  p99 %8s  server CPU %.2f cores  RSS %6.1f MiB  errors %d\n",
		round, a.name, n, res.RPS, harness.Ms(res.P50), harness.Ms(res.P99), s.cores, float64(res.ServerRSSKB)/1024, res.Errors+res.Non2xx)
}

// report renders bench/ISOLATED.md.
func (r *run) report(start time.Time) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	b.WriteString(harness.Head("gowsgi: one or two interpreters with their own GIL", "./bench/isolated", start,
		fmt.Sprintf("Go: %s; %s from %s; Flask %s (Debian); wrk: %s", harness.First("go", "version"), r.python,
			harness.HomeRelative(r.prefix), harness.DebVersion("python3-flask"), harness.First("wrk", "-v"))))
	p("\n")
	p("## Method\n\n")
	shown := strings.Join(append([]string{"gowsgi"}, r.argv(r.apps[0], "127.0.0.1:PORT", 1)[1:]...), " ")
	p("gowsgi built against that Python, started as\n\n    %s\n\n", strings.ReplaceAll(shown, r.appsDir, "bench/apps"))
	p("and the same with `--interpreters 2` (each interpreter has %d threads), and for Flask with "+
		"`--pythonpath %s flaskapp:app`. %d rounds; in each, every app with 1 then 2 interpreters, one server at "+
		"a time: a %v wrk warm-up, then a %v measured run of `wrk --latency -t2 -c%d`. "+
		"**2 vs 1** is the req/s with 2 interpreters divided by that with 1 in the same round, median over rounds. "+
		"**cores** is the server's CPU time divided by the run's length, and **CPU/req** that time divided by "+
		"the requests: if it stays the same with 2 interpreters, they scale as far as the cores they get allow. "+
		"**RSS** is the server's VmRSS after the measured run; the difference between 2 and 1 interpreters is "+
		"what one more interpreter, with the app loaded and warm, costs.\n\n",
		r.threads, harness.DistPackages, r.rounds, r.warmup, r.duration, r.conns)

	p("## Results\n\n")
	var rows [][]string
	for _, a := range r.apps {
		one, two := r.results[a.name][1], r.results[a.name][2]
		if len(one) == 0 || len(two) == 0 {
			why := a.skipped
			if why == "" {
				why = "no measurement (see below)"
			}
			first, _, _ := strings.Cut(why, "\n")
			rows = append(rows, []string{a.name, "skipped: " + first, "", "", "", "", "", "", "", "", ""})
			continue
		}
		x := ratio(two, one)
		verdict := "met"
		if x < a.target {
			verdict = "not met"
		}
		rss1, rss2 := medianRSS(one), medianRSS(two)
		rows = append(rows, []string{
			a.name, rps(one), rps(two),
			fmt.Sprintf("%.2fx", x), fmt.Sprintf("%.1fx (%s)", a.target, verdict),
			fmt.Sprintf("%.2f / %.2f", med(one, func(s sample) float64 { return s.cores }), med(two, func(s sample) float64 { return s.cores })),
			fmt.Sprintf("%s / %s", cpuPerReq(one), cpuPerReq(two)),
			fmt.Sprintf("%s / %s", harness.Ms(time.Duration(med(one, p99))), harness.Ms(time.Duration(med(two, p99)))),
			fmt.Sprintf("%.1f MiB", rss1), fmt.Sprintf("%.1f MiB", rss2), fmt.Sprintf("%.1f MiB", rss2-rss1),
		})
	}
	p("%s\n", harness.Table([]string{"app", "req/s, 1 interp. (min–max)", "req/s, 2 interp. (min–max)", "2 vs 1", "target",
		"cores 1 / 2", "CPU/req 1 / 2", "p99 1 / 2", "RSS 1", "RSS 2", "per interpreter"}, "lrrrlrrrrrr", rows))
	for _, a := range r.apps {
		p("- **%s**: %s.\n", a.name, a.desc)
	}
	p("\n## Notes\n\n")
	p("- The machine has %d cores, and wrk (2 threads) runs on them too, as may other work: a perfect 2x is "+
		"out of reach. The **cores** column shows how much CPU the server got.\n", runtime.NumCPU())
	p("- RSS is read once, right after the measured run; memory per interpreter is the difference of the medians.\n")
	p("- With one interpreter, its %d threads take turns on one GIL, and the hand-offs cost CPU time of their own; "+
		"with two, each GIL has fewer takers. So 2 vs 1 can exceed the ratio of the cores used, even 2x.\n", r.threads)
	b.WriteString(r.failures.Report())
	return b.String()
}

func p99(s sample) float64 { return float64(s.P99) }

// cpuPerReq is the median over rounds of the server's CPU time per request.
func cpuPerReq(ss []sample) string {
	v := med(ss, func(s sample) float64 { return s.ServerCPU.Seconds() / float64(s.Requests) })
	if v >= 1e-3 {
		return fmt.Sprintf("%.2f ms", v*1e3)
	}
	return fmt.Sprintf("%.0f µs", v*1e6)
}

func med(ss []sample, f func(sample) float64) float64 {
	var v []float64
	for _, s := range ss {
		v = append(v, f(s))
	}
	return harness.Median(v)
}

func medianRSS(ss []sample) float64 {
	return med(ss, func(s sample) float64 { return float64(s.ServerRSSKB) / 1024 })
}

// rps is "median (min–max)" of the req/s of ss.
func rps(ss []sample) string {
	var v []float64
	for _, s := range ss {
		v = append(v, s.RPS)
	}
	lo, hi := harness.MinMax(v)
	return fmt.Sprintf("%.0f (%.0f–%.0f)", harness.Median(v), lo, hi)
}

// ratio is the median over rounds of a's req/s divided by b's in the same
// round.
func ratio(a, b []sample) float64 {
	var rs []float64
	for _, x := range a {
		for _, y := range b {
			if x.round == y.round && y.RPS > 0 {
				rs = append(rs, x.RPS/y.RPS)
			}
		}
	}
	if len(rs) == 0 {
		return math.NaN()
	}
	return harness.Median(rs)
}
