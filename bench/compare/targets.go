package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// The targets of the report's Targets section.
const (
	budgetBareFactor = 1.2  // the budget: loop cost + this x go-bare's CPU per request
	gilTarget        = 0.85 // gowsgi's req/s x loop cost, at least
	twoProcRPS       = 1.2  // gowsgi-2p's req/s over uWSGI's on flask, at least
	twoProcRSS       = 1.0  // gowsgi-2p's RSS over uWSGI's on flask, at most
	isoRPS           = 1.2  // gowsgi-iso2's req/s over uWSGI's on flask, at least
)

// at returns the sample of round in ss.
func at(ss []sample, round int) (sample, bool) {
	for _, s := range ss {
		if s.round == round {
			return s, true
		}
	}
	return sample{}, false
}

// loopAt returns loop.py's cost of view in round, in µs of CPU per call.
func (r *run) loopAt(view string, round int) (float64, bool) {
	for _, l := range r.loops[view] {
		if l.round == round {
			return l.cpu, true
		}
	}
	return 0, false
}

// perRound returns f of every round for which f has a figure.
func (r *run) perRound(f func(round int) (float64, bool)) []float64 {
	var xs []float64
	for round := 1; round <= r.rounds; round++ {
		if x, ok := f(round); ok {
			xs = append(xs, x)
		}
	}
	return xs
}

// med is the median of xs, NaN for none.
func med(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return harness.Median(xs)
}

func fmtUs(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f µs", x)
}

func fmtF(format string, x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf(format, x)
}

// verdict says whether x meets the target: at least it (atLeast) or at
// most it.
func verdict(x, target float64, atLeast bool) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case atLeast && x >= target, !atLeast && x <= target:
		return "met"
	default:
		return "not met"
	}
}

// pairRows compares server a with server b on every workload both served:
// req/s of each and their ratio, CPU per request of each and their ratio.
func (r *run) pairRows(a, b string) [][]string {
	var rows [][]string
	for _, w := range r.loads {
		sa, sb := r.results[a][w.name], r.results[b][w.name]
		if len(sa) == 0 || len(sb) == 0 {
			continue
		}
		medOf := func(ss []sample, m metric) float64 { return med(values(ss, m)) }
		rows = append(rows, []string{w.name, fmtF("%.0f", medOf(sa, mRPS)), fmtF("%.0f", medOf(sb, mRPS)),
			fmtRatio(ratio(sa, sb, mRPS)), fmtUs(medOf(sa, mCPU)), fmtUs(medOf(sb, mCPU)), fmtRatio(ratio(sa, sb, mCPU))})
	}
	return rows
}

// targets renders the Targets section: what the loop costs, and gowsgi's
// figures set against them and against uWSGI, each a median over rounds of
// a figure computed within one round.
func (r *run) targets() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	chosen := func(name string) (workload, bool) {
		for _, w := range r.loads {
			if w.name == name {
				return w, true
			}
		}
		return workload{}, false
	}
	gw := r.results["gowsgi"]
	bare := r.results["go-bare"]

	p("## Targets\n\n")
	p("Each figure below is computed within one round, from measurements of that round, and the table " +
		"shows its median over rounds.\n\n")

	views := r.loopViews()
	if len(views) > 0 {
		p("### What the views cost in Python alone\n\n")
		p("bench/apps/loop.py, once per round: CPU time of the calling thread per call, median over rounds, " +
			"with the smallest and largest round, and the wall-clock time per call (mixed's includes its 1 ms " +
			"sleep).\n\n")
		var rows [][]string
		for _, v := range views {
			ls := r.loops[v]
			if len(ls) == 0 {
				rows = append(rows, []string{v, "skipped", "", ""})
				continue
			}
			var cpu, wall []float64
			for _, l := range ls {
				cpu = append(cpu, l.cpu)
				wall = append(wall, l.wall)
			}
			lo, hi := harness.MinMax(cpu)
			rows = append(rows, []string{v, fmtUs(med(cpu)), fmt.Sprintf("%.1f–%.1f", lo, hi), fmtUs(med(wall))})
		}
		p("%s\n", harness.Table([]string{"view", "CPU/call", "min–max", "wall/call"}, "lrrr", rows))
	}

	// (a) CPU per request against the budget.
	var rows [][]string
	for _, name := range []string{"hello-c50", "flask", "django"} {
		w, ok := chosen(name)
		if !ok {
			continue
		}
		loop := func(round int) (float64, bool) { return r.loopAt(w.loop, round) }
		bareCPU := func(round int) (float64, bool) {
			s, ok := at(bare[w.name], round)
			return mCPU(s), ok
		}
		gwCPU := func(round int) (float64, bool) {
			s, ok := at(gw[w.name], round)
			return mCPU(s), ok
		}
		budget := func(round int) (float64, bool) {
			l, ok1 := loop(round)
			c, ok2 := bareCPU(round)
			return l + budgetBareFactor*c, ok1 && ok2
		}
		over := func(cpu func(int) (float64, bool)) float64 {
			return med(r.perRound(func(round int) (float64, bool) {
				g, ok1 := cpu(round)
				bu, ok2 := budget(round)
				return g / bu, ok1 && ok2 && bu > 0
			}))
		}
		viewCPU := func(round int) (float64, bool) {
			s, ok := at(r.results["go-view"][w.name], round)
			return mCPU(s), ok
		}
		gwOver := over(gwCPU)
		target, v := "≤ 1.00", verdict(gwOver, 1, false)
		if w.loop == "hello" {
			target, v = "none", "(for reference)"
		}
		rows = append(rows, []string{w.name,
			fmtUs(med(r.perRound(loop))), fmtUs(med(r.perRound(bareCPU))), fmtUs(med(r.perRound(budget))),
			fmtUs(med(r.perRound(gwCPU))), fmtRatio(gwOver), target, v,
			fmtUs(med(r.perRound(viewCPU))), fmtRatio(over(viewCPU))})
	}
	if len(rows) > 0 {
		p("### CPU per request against the budget\n\n")
		p("The budget of a request is what its view costs in the loop plus %.1f times go-bare's CPU per "+
			"request on the same workload: what the view cannot avoid, and an HTTP server about as lean as Go's. "+
			"gowsgi's CPU per request (its whole process) is divided by that budget in each round; the target "+
			"is at most 1.00 for flask and django.\n\n", budgetBareFactor)
		p("The last two columns hold the budget's premise to account: go-view is go-bare burning the " +
			"view's loop cost in Go before it answers, with no Python and no GIL. What it spends beyond " +
			"the burn is what Go's own HTTP serving costs per request when each request takes that long, " +
			"which need not be what it costs for hello at many times the rate.\n\n")
		p("%s\n", harness.Table([]string{"workload", "loop cost", "go-bare CPU/req", "budget", "gowsgi CPU/req",
			"gowsgi / budget", "target", "verdict", "go-view CPU/req", "go-view / budget"}, "lrrrrrrlrr", rows))
	}

	// (b) GIL utilisation.
	rows = nil
	for _, name := range []string{"flask", "django"} {
		w, ok := chosen(name)
		if !ok {
			continue
		}
		rps := func(round int) (float64, bool) {
			s, ok := at(gw[w.name], round)
			return s.RPS, ok
		}
		busy := med(r.perRound(func(round int) (float64, bool) {
			x, ok1 := rps(round)
			l, ok2 := r.loopAt(w.loop, round)
			return x * l / 1e6, ok1 && ok2
		}))
		gilBusy := med(r.perRound(func(round int) (float64, bool) {
			s, ok1 := at(r.results["go-gil"][w.name], round)
			l, ok2 := r.loopAt(w.loop, round)
			return s.RPS * l / 1e6, ok1 && ok2
		}))
		rows = append(rows, []string{w.name, fmtF("%.0f", med(r.perRound(rps))),
			fmtUs(med(r.perRound(func(round int) (float64, bool) { return r.loopAt(w.loop, round) }))),
			fmtF("%.2f", busy), fmt.Sprintf("≥ %.2f", gilTarget), verdict(busy, gilTarget, true),
			fmtF("%.0f", med(values(r.results["go-gil"][w.name], mRPS))), fmtF("%.2f", gilBusy)})
	}
	if len(rows) > 0 {
		p("### GIL utilisation\n\n")
		p("gowsgi runs the app in one interpreter, under one GIL. Its req/s times the view's loop cost is " +
			"the share of the GIL's time spent in the view itself; the rest is the gateway's Python work, " +
			"GIL hand-overs between threads, and idle time. 1.00 would be one GIL doing nothing but the " +
			"view. go-gil, beside it, is the same figure for Go with a perfect GIL: one thread burning the " +
			"view's loop cost for each request in turn, nothing else on it, the HTTP work on the other " +
			"threads.\n\n")
		p("%s\n", harness.Table([]string{"workload", "gowsgi req/s", "loop cost", "GIL share in the view",
			"target", "verdict", "go-gil req/s", "go-gil share"}, "lrrrrlrr", rows))
	}

	// (c) gowsgi-2p against uWSGI.
	rows = nil
	g2, uw := r.results["gowsgi-2p"], r.results["uwsgi"]
	for _, name := range []string{"flask", "django"} {
		w, ok := chosen(name)
		if !ok {
			continue
		}
		rps := ratio(g2[w.name], uw[w.name], mRPS)
		rss := ratio(g2[w.name], uw[w.name], mRSS)
		medOf := func(ss []sample, m metric) float64 { return med(values(ss, m)) }
		row := []string{w.name,
			fmtF("%.0f", medOf(g2[w.name], mRPS)), fmtF("%.0f", medOf(uw[w.name], mRPS)), fmtRatio(rps),
			fmtF("%.1f MiB", medOf(g2[w.name], mRSS)), fmtF("%.1f MiB", medOf(uw[w.name], mRSS)), fmtRatio(rss),
			fmtF("%.1f MiB", medOf(g2[w.name], mPSS)), fmtF("%.1f MiB", medOf(uw[w.name], mPSS)),
			fmtRatio(ratio(g2[w.name], uw[w.name], mPSS))}
		if name == "flask" {
			row = append(row, fmt.Sprintf("req/s ≥ %.1fx, RSS ≤ %.1fx", twoProcRPS, twoProcRSS),
				fmt.Sprintf("req/s %s, RSS %s", verdict(rps, twoProcRPS, true), verdict(rss, twoProcRSS, false)))
		} else {
			row = append(row, "none", "(for reference)")
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		p("### gowsgi-2p against uWSGI\n\n")
		p("Two processes each: gowsgi-2p (a supervisor and two workers of 8 threads) and uWSGI (a master " +
			"and two workers of 4 threads). The ratios are gowsgi-2p's figure over uWSGI's in the same round; " +
			"RSS is the sum over each process tree, the target's measure; PSS, beside it, counts the pages " +
			"the processes share once.\n\n")
		p("%s\n", harness.Table([]string{"workload", "gowsgi-2p req/s", "uwsgi req/s", "ratio",
			"gowsgi-2p RSS", "uwsgi RSS", "ratio", "gowsgi-2p PSS", "uwsgi PSS", "ratio", "target", "verdict"},
			"lrrrrrrrrrll", rows))
	}

	// Static against shared libpython, and pinned against not.
	if rows := r.pairRows("gowsgi", "gowsgi-shared"); len(rows) > 0 {
		p("### CPython linked statically against the shared libpython\n\n")
		p("gowsgi is the command as make serve builds it (`%s`: CPython linked in from libpython's static "+
			"archive, when the archive is there); gowsgi-shared is the same code from a plain go build, loading "+
			"the shared libpython. The ratios are gowsgi's figure over gowsgi-shared's in the same round.\n\n",
			harness.First(r.env.gowsgi, "--version"))
		p("%s\n", harness.Table([]string{"workload", "gowsgi req/s", "gowsgi-shared req/s", "ratio",
			"gowsgi CPU/req", "gowsgi-shared CPU/req", "ratio"}, "lrrrrrr", rows))
	}
	if rows := r.pairRows("gowsgi-pin", "gowsgi"); len(rows) > 0 {
		p("### Python's threads pinned to one CPU\n\n")
		p("gowsgi-pin is gowsgi with `--python-cpus auto` (wsgi.WithPythonCPUs): the threads that run " +
			"queued requests stay on the last CPU, where one GIL lets one of them run at a time anyway; " +
			"Go's threads are not pinned. It is not the default: work that lets go of the GIL no longer " +
			"spreads over the machine. The ratios are gowsgi-pin's figure over gowsgi's in the same round.\n\n")
		p("%s\n", harness.Table([]string{"workload", "gowsgi-pin req/s", "gowsgi req/s", "ratio",
			"gowsgi-pin CPU/req", "gowsgi CPU/req", "ratio"}, "lrrrrrr", rows))
	}

	// gowsgi-iso2 against uWSGI.
	if w, ok := chosen("flask"); ok && len(r.results["gowsgi-iso2"][w.name]) > 0 {
		iso := r.results["gowsgi-iso2"][w.name]
		rps := ratio(iso, uw[w.name], mRPS)
		medOf := func(ss []sample, m metric) float64 { return med(values(ss, m)) }
		loop := med(r.perRound(func(round int) (float64, bool) { return r.loopAt("flask", round) }))
		isoLoop := med(r.perRound(func(round int) (float64, bool) { return r.loopAt(isoView, round) }))
		p("### Own-GIL interpreters against uWSGI\n\n")
		p("gowsgi-iso2 runs two interpreters with their own GIL in one process, on Python %s; uWSGI runs "+
			"two processes on Debian's Python. The Python versions differ, so the view's loop cost is given "+
			"under each. The ratio is gowsgi-iso2's req/s over uWSGI's in the same round.\n\n", r.env.isoVersion)
		p("%s\n", harness.Table([]string{"workload", "gowsgi-iso2 req/s", "uwsgi req/s", "ratio",
			"loop cost, Python " + r.env.isoVersion, "loop cost, Debian's", "gowsgi-iso2 CPU/req", "uwsgi CPU/req",
			"gowsgi-iso2 RSS", "uwsgi RSS", "target", "verdict"}, "lrrrrrrrrrll",
			[][]string{{w.name, fmtF("%.0f", medOf(iso, mRPS)), fmtF("%.0f", medOf(uw[w.name], mRPS)), fmtRatio(rps),
				fmtUs(isoLoop), fmtUs(loop), fmtUs(medOf(iso, mCPU)), fmtUs(medOf(uw[w.name], mCPU)),
				fmtF("%.1f MiB", medOf(iso, mRSS)), fmtF("%.1f MiB", medOf(uw[w.name], mRSS)),
				fmt.Sprintf("req/s ≥ %.1fx", isoRPS), verdict(rps, isoRPS, true)}}))
	}

	// (d) io and mixed.
	rows = nil
	for _, name := range []string{"io", "mixed"} {
		w, ok := chosen(name)
		if !ok {
			continue
		}
		cell := func(server string) string {
			ss := r.results[server][w.name]
			if len(ss) == 0 {
				return "–"
			}
			return fmtRPS(harness.Median(values(ss, mRPS)))
		}
		ss := gw[w.name]
		if len(ss) == 0 {
			rows = append(rows, []string{w.name, "skipped", "", "", "", "", "", "", ""})
			continue
		}
		lo, hi := harness.MinMax(values(ss, mRPS))
		other, _ := r.best(w)
		best := "–"
		if other != "" {
			best = other + " " + cell(other)
		}
		rows = append(rows, []string{w.name, cell("gowsgi"), fmt.Sprintf("%s–%s", fmtRPS(lo), fmtRPS(hi)),
			harness.Ms(time.Duration(med(values(ss, mP99)))), fmtUs(med(values(ss, mCPU))), fmtF("%.2f", med(values(ss, mCS))),
			cell("gowsgi-2p"), cell("go-bare"), best})
	}
	if len(rows) > 0 {
		p("### Views that wait\n\n")
		p("gowsgi's req/s on io (2 ms asleep) and mixed (1 ms asleep, about 0.2 ms of Python), with its " +
			"p99, CPU and context switches per request, to set against the same figures of earlier code. " +
			"With 8 threads, a view that holds its thread while it sleeps bounds io at about 4,000 req/s " +
			"(see the notes).\n\n")
		p("%s\n", harness.Table([]string{"workload", "gowsgi req/s", "min–max", "p99", "CPU/req", "cs/req",
			"gowsgi-2p req/s", "go-bare req/s", "best other"}, "lrrrrrrrl", rows))
	}
	return b.String()
}
