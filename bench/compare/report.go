package main

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// metric reads one figure from a sample.
type metric func(sample) float64

var (
	mRPS metric = func(s sample) float64 { return s.RPS }
	mP50 metric = func(s sample) float64 { return float64(s.P50) }
	mP99 metric = func(s sample) float64 { return float64(s.P99) }
	mCPU metric = func(s sample) float64 { return cpuPerReq(s.WrkResult) }
	mRSS metric = func(s sample) float64 { return mib(s.ServerRSSKB) }
	mPSS metric = func(s sample) float64 { return mib(s.ServerPSSKB) }
	mCS  metric = func(s sample) float64 { return switchesPerReq(s.WrkResult) }
)

func values(ss []sample, m metric) []float64 {
	var v []float64
	for _, s := range ss {
		v = append(v, m(s))
	}
	return v
}

// ratio is the median, over the rounds that both have, of a's figure
// divided by b's in the same round; NaN when they share no round.
func ratio(a, b []sample, m metric) float64 {
	var rs []float64
	for _, x := range a {
		for _, y := range b {
			if x.round == y.round && m(y) != 0 {
				rs = append(rs, m(x)/m(y))
			}
		}
	}
	if len(rs) == 0 {
		return math.NaN()
	}
	return harness.Median(rs)
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	if x < 10 {
		return fmt.Sprintf("%.2fx", x)
	}
	return fmt.Sprintf("%.0fx", x)
}

func fmtRPS(x float64) string { return fmt.Sprintf("%.0f", x) }

// report renders the whole Markdown report.
func (r *run) report(start time.Time) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	b.WriteString(harness.Head("gowsgi against other WSGI servers", "./bench/compare", start))
	more := []string{
		"waitress: " + harness.DebVersion("python3-waitress") + " (Debian package python3-waitress)",
		"Flask: " + harness.DebVersion("python3-flask") + " (Debian package python3-flask)",
		"Django: " + harness.DebVersion("python3-django") + " (Debian package python3-django)",
	}
	if r.env.iso != "" {
		more = append(more, fmt.Sprintf("gowsgi-iso2: %s, built against %s (%s)", harness.First(r.env.iso, "--version"),
			harness.First(filepath.Join(r.env.isoPrefix, "bin", "python3"), "--version"), harness.HomeRelative(r.env.isoPrefix)))
	}
	b.WriteString(harness.Versions(r.env.gowsgi, more...))

	p("\n## Method\n\n")
	p("%d round%s; in each, every server serves every workload once, one server at a time, "+
		"in the order of the tables. A server is started on 127.0.0.1 for each app and round, "+
		"must answer 200 with exactly the expected body, then gets a %v wrk warm-up run and a "+
		"%v measured run (`wrk --latency -t2 -cN --timeout 5s`); then its whole process group is killed.\n\n",
		r.rounds, harness.Plural(r.rounds), r.warmup, r.duration)
	p("- **req/s**: median over rounds, with the smallest and largest round.\n")
	p("- **p50, p99**: wrk's latency percentiles, median over rounds.\n")
	p("- **CPU/req**: user+system CPU time of the server's whole process tree (master and workers, from " +
		"/proc/PID/stat) during the measured run, divided by the requests wrk completed.\n")
	p("- **cs/req**: voluntary plus nonvoluntary context switches of every thread of the server's process " +
		"tree (from /proc/PID/task/TID/status) during the measured run, divided by the requests wrk completed. " +
		"A switch is a thread going to sleep (waiting for the GIL, a lock, the network) or being preempted; " +
		"threads that exit during the run are not counted.\n")
	p("- **RSS**: the sum of VmRSS over the server's process tree right after the measured run. " +
		"Pages shared between processes (forked workers, shared libraries) are counted once per process.\n")
	p("- **PSS**: the sum of the proportional set sizes (Pss in /proc/PID/smaps_rollup) over the same tree " +
		"at the same moment: a page shared by n processes counts 1/n in each, so the sum counts the tree's " +
		"shared pages once. This is the memory the tree takes from the machine; RSS overstates it for " +
		"several processes.\n")
	p("- **x bare**: the figure divided by go-bare's in the same round, median over rounds " +
		"(for req/s, higher is better; for the others, lower is).\n")
	p("- **loop cost**: once per round, before the servers, `%s bench/apps/loop.py` calls each Python-bound "+
		"view in a plain loop, with no server: a minimal environ (wsgiref's testing defaults and the path), "+
		"the call, the result iterated and closed. It times batches of calls after a warm-up, by the CPU "+
		"time of its thread, and prints the median over batches; the report takes the median over rounds. "+
		"This is what the view costs in Python alone, the part of a request no server can save.\n\n", python)
	p("Servers:\n\n")
	var rows [][]string
	for _, s := range r.servers {
		argv := s.argv(&r.env, "127.0.0.1:PORT", "apps", "hello")
		for i := range argv {
			argv[i] = shortArg(argv[i], r)
		}
		note := s.note
		switch s.name {
		case "go-view", "go-gil":
			note = "go-bare, with /flask and /django first burning the CPU time that loop.py measured " +
				"for their view in this round (a calibrated integer loop, in Go): what Go's own HTTP " +
				"serving costs around a view that long"
			if s.name == "go-view" {
				note += ". The burn runs on the request's goroutine: views run at once on every core"
			} else {
				note += ". The burns run on one locked thread, one request at a time, handed over " +
					"through a channel: one GIL with nothing on it but the views"
			}
		case "gowsgi-tuned":
			note = fmt.Sprintf("the command with `%s` (flag -tuned): fewer threads taking turns on the GIL", strings.Join(r.env.tuned, " "))
		case "gowsgi-iso2":
			if r.env.iso == "" {
				note = "not run: " + r.env.isoSkip
				break
			}
			note = fmt.Sprintf("the command built against Python %s (%s), with two interpreters that each have "+
				"their own GIL and 8 threads, in one process; Flask from Debian's package (pure Python); "+
				"flask only", r.env.isoVersion, harness.HomeRelative(r.env.isoPrefix))
		}
		rows = append(rows, []string{"`" + s.name + "`", note, "`" + strings.Join(argv, " ") + "`"})
	}
	p("%s\n", harness.Table([]string{"server", "what", "command (for apps:hello)"}, "lll", rows))
	p("Workloads:\n\n")
	rows = nil
	for _, w := range r.loads {
		rows = append(rows, []string{"`" + w.name + "`", w.desc, "`" + w.module + ":" + w.callable + "`"})
	}
	p("%s\n", harness.Table([]string{"workload", "what", "app"}, "lll", rows))

	p("## Summary (req/s)\n\n")
	p("The best other server is the one of uWSGI, gunicorn and waitress with the highest median req/s. " +
		"The last two columns are gowsgi's req/s divided by that server's, and gowsgi-2p's divided by " +
		"uWSGI's (2 processes x 4 threads), each in the same round, median over " +
		"rounds. Latency, CPU, context switches and memory are in the tables per workload below.\n\n")
	p("%s\n", r.summary())

	p("%s", r.targets())

	for _, w := range r.loads {
		p("## %s\n\n%s.\n\n%s\n", w.name, capitalize(w.desc), r.table(w))
	}

	p("## Notes\n\n")
	p("- wrk runs on the same %d cores as the server, with 2 threads: client and server compete for the CPU, "+
		"and go-bare's figures are in good part wrk's limit. Other work may run on the machine too; compare "+
		"the ratios within a round rather than absolute figures across runs.\n", runtime.NumCPU())
	p("- gunicorn's sync workers close the connection after every response, so wrk reconnects for each " +
		"request; that is how that worker class works.\n")
	p("- uWSGI's `--http11-socket` gives a connection to a thread for as long as the connection stays open, " +
		"and its threads accept only when idle: with 50 keep-alive connections and 2 x 4 threads, 42 " +
		"connections wait in the kernel's accept queue for the whole run. wrk's percentiles count only " +
		"requests that complete, so uWSGI's latencies at 50 connections are those of the 8 it serves. " +
		"The table below shows, for every measurement where it happened, how many connections waited in " +
		"the accept queue at mid-run. gunicorn's sync workers show a queue too, but there each connection " +
		"carries one request and all are served in turn, so the wait is in their latencies.\n")
	p("- uWSGI runs with `--tcp-nodelay` (without it, the stream workload waits on delayed ACKs, 40 ms a " +
		"response) and, for the generator only, the chunked transformation (`--plugin transformation_chunked " +
		"--route-run chunked:`): otherwise it ends a body without Content-Length by closing the connection, " +
		"which wrk cannot read. None of the servers logs requests (gowsgi, gunicorn and waitress by default, " +
		"uWSGI with `--disable-logging`).\n")
	p("- io and mixed are bounded by threads, not CPU, wherever a sleeping view holds its thread: 8 threads " +
		"and a 2 ms sleep make at most about 4,000 req/s (gowsgi's default, uWSGI's and gunicorn-gthread's " +
		"2 x 4, waitress's 8), 16 threads 8,000 (gowsgi-2p: 2 x 8), 2 sync workers 1,000. go-bare has no " +
		"such bound: 50 connections, each waiting 2 ms, allow 25,000.\n")
	p("- Context switches are read per thread from /proc before and after the measured run, so a thread " +
		"that exits in between takes its switches with it, and one that starts and exits in between is never " +
		"seen. Threads of the first reading missing from the second are counted")
	ex := r.exited()
	if ex != "" {
		p("; the last table lists the measurements where there were some.\n")
	} else {
		p(": there were none in this run.\n")
	}
	p("- RSS of the servers with several processes (gowsgi-2p, uWSGI, gunicorn) counts every process: " +
		"gowsgi-2p's supervisor (no Python) and its two workers, each loading the app; uWSGI's and " +
		"gunicorn's master and workers, forked after (uWSGI) or before (gunicorn) loading the app.\n")
	p("- The loop cost is CPU time of the calling thread, so other work on the machine adds little to it; " +
		"on a virtual machine, time taken by the host while the thread runs may still count.\n")
	p("- Apache with mod_wsgi was left out (it was optional): Debian's apache2 package installs and starts " +
		"a system service on port 80, and a fair configuration of mod_wsgi's daemon mode would need its own " +
		"configuration tree; the run is also kept under 45 minutes.\n")
	if q := r.queued(); q != "" {
		p("\nConnections waiting in the accept queue at mid-run (median over rounds), where any did:\n\n%s", q)
	}
	if ex != "" {
		p("\nThreads of the server that exited during the measured run (median over rounds), where any did:\n\n%s", ex)
	}
	b.WriteString(r.failures.Report())
	return b.String()
}

// shortArg shortens the paths of the built binaries in a command line
// shown in the report.
func shortArg(arg string, r *run) string {
	switch arg {
	case r.env.self:
		return "go run ./bench/compare"
	case r.env.gowsgi:
		return "gowsgi"
	case r.env.iso, r.env.shared:
		return "gowsgi"
	}
	return strings.ReplaceAll(arg, r.env.apps, "bench/apps")
}

// table is the per-server table of one workload.
func (r *run) table(w workload) string {
	bare := r.results["go-bare"][w.name]
	var rows [][]string
	for _, s := range r.servers {
		if !s.serves(w) {
			continue
		}
		ss := r.results[s.name][w.name]
		if len(ss) == 0 {
			rows = append(rows, []string{s.name, "skipped", "", "", "", "", "", "", "", "", "", "", "", "", ""})
			continue
		}
		lo, hi := harness.MinMax(values(ss, mRPS))
		var errs int64
		for _, x := range ss {
			errs += x.Errors + x.Non2xx
		}
		med := func(m metric) float64 { return harness.Median(values(ss, m)) }
		rows = append(rows, []string{
			s.name,
			fmtRPS(med(mRPS)), fmt.Sprintf("%s–%s", fmtRPS(lo), fmtRPS(hi)), fmtRatio(ratio(ss, bare, mRPS)),
			harness.Ms(time.Duration(med(mP50))), fmtRatio(ratio(ss, bare, mP50)),
			harness.Ms(time.Duration(med(mP99))), fmtRatio(ratio(ss, bare, mP99)),
			fmt.Sprintf("%.1f µs", med(mCPU)), fmtRatio(ratio(ss, bare, mCPU)),
			fmt.Sprintf("%.2f", med(mCS)),
			fmt.Sprintf("%.1f MiB", med(mRSS)), fmtRatio(ratio(ss, bare, mRSS)),
			fmt.Sprintf("%.1f MiB", med(mPSS)),
			fmt.Sprint(errs),
		})
	}
	return harness.Table([]string{"server", "req/s", "min–max", "x bare", "p50", "x bare", "p99", "x bare",
		"CPU/req", "x bare", "cs/req", "RSS", "x bare", "PSS", "errors"}, "lrrrrrrrrrrrrrr", rows)
}

// isOther tells the servers that are neither gowsgi nor the ceiling.
func isOther(name string) bool {
	return !strings.HasPrefix(name, "go-") && !strings.HasPrefix(name, "gowsgi")
}

// best returns the other server with the highest median req/s on w.
func (r *run) best(w workload) (string, []sample) {
	var name string
	var top float64
	for _, s := range r.servers {
		ss := r.results[s.name][w.name]
		if !isOther(s.name) || len(ss) == 0 {
			continue
		}
		if m := harness.Median(values(ss, mRPS)); m > top {
			name, top = s.name, m
		}
	}
	return name, r.results[name][w.name]
}

// summary is one line per workload: go-bare, gowsgi, gowsgi-2p and the
// best other server.
func (r *run) summary() string {
	var rows [][]string
	cell := func(ss []sample) string {
		if len(ss) == 0 {
			return "–"
		}
		return fmtRPS(harness.Median(values(ss, mRPS)))
	}
	for _, w := range r.loads {
		bare := r.results["go-bare"][w.name]
		gw := r.results["gowsgi"][w.name]
		g2 := r.results["gowsgi-2p"][w.name]
		uw := r.results["uwsgi"][w.name]
		name, other := r.best(w)
		if name == "" {
			name = "–"
		}
		rows = append(rows, []string{
			w.name, cell(bare),
			cell(gw), fmtRatio(ratio(gw, bare, mRPS)),
			cell(g2), fmtRatio(ratio(g2, bare, mRPS)),
			name, cell(other), fmtRatio(ratio(other, bare, mRPS)),
			fmtRatio(ratio(gw, other, mRPS)), fmtRatio(ratio(g2, uw, mRPS)),
		})
	}
	return harness.Table([]string{"workload", "go-bare", "gowsgi", "x bare", "gowsgi-2p", "x bare",
		"best other", "req/s", "x bare", "gowsgi / other", "gowsgi-2p / uwsgi"}, "lrrrrrlrrrr", rows)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// exited is a table of the measurements during which threads of the
// server exited (median over rounds), or "" if none did.
func (r *run) exited() string {
	var rows [][]string
	for _, w := range r.loads {
		for _, s := range r.servers {
			ss := r.results[s.name][w.name]
			if n := harness.Median(values(ss, func(x sample) float64 { return float64(x.Exited) })); n > 0 {
				rows = append(rows, []string{w.name, s.name, fmt.Sprintf("%.0f", n)})
			}
		}
	}
	if len(rows) == 0 {
		return ""
	}
	return harness.Table([]string{"workload", "server", "threads exited"}, "llr", rows)
}

// queued is a table of the measurements whose server left connections in
// its accept queue at mid-run, or "" if none did.
func (r *run) queued() string {
	var rows [][]string
	for _, w := range r.loads {
		for _, s := range r.servers {
			ss := r.results[s.name][w.name]
			q := harness.Median(values(ss, func(x sample) float64 { return float64(x.Queued) }))
			if q > 0 {
				rows = append(rows, []string{w.name, s.name, fmt.Sprintf("%.0f", q), fmt.Sprint(w.conns)})
			}
		}
	}
	if len(rows) == 0 {
		return ""
	}
	return harness.Table([]string{"workload", "server", "queued", "of connections"}, "llrr", rows)
}
