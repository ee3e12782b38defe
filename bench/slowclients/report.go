package main

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// gowsgiTarget is what gowsgi's hello req/s beside the slow clients should
// keep of its req/s alone.
const gowsgiTarget = 0.8

// medOf is the median over rounds of f, NaN when there is no round.
func medOf(rs []result, f func(result) float64) float64 {
	var xs []float64
	for _, x := range rs {
		xs = append(xs, f(x))
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return harness.Median(xs)
}

// p99Of is the median p99 over the rounds whose wrk run completed requests.
func p99Of(rs []result) string {
	var xs []float64
	for _, x := range rs {
		if x.served {
			xs = append(xs, float64(x.wrk.P99))
		}
	}
	switch {
	case len(rs) == 0:
		return "–"
	case len(xs) == 0:
		return "none served"
	}
	return harness.Ms(time.Duration(harness.Median(xs)))
}

func num(format string, x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf(format, x)
}

func mibs(x float64) string { return num("%.1f MiB", x/1024) }

// early is how many clients had their headers within the limit: the
// later snapshot of the two knows best.
func early(x result) float64 { return float64(max(x.clients.early, x.afterWrk.early)) }

func (r *run) report(start time.Time) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	slow, many := r.phases[1].readers, r.phases[2].readers

	b.WriteString(harness.Head("Slow clients: gowsgi, uWSGI and gunicorn", "./bench/slowclients", start,
		fmt.Sprintf("open files: soft limit %d, hard limit %d at start; this process and the servers ran with %d",
			r.nofile[0], r.nofile[1], r.nofileSet)))
	b.WriteString(harness.Versions(r.env.gowsgi))

	p("\n## Method\n\n")
	p("Every server serves `apps:router` of bench/apps/apps.py: `/hello` (13 bytes), `/big` (1 MiB, one bytes "+
		"object in a list) and `/stream64` (a generator of 100 chunks of 64 KiB, no Content-Length). %d round%s; "+
		"in each, every server runs four phases, each on a server started afresh on 127.0.0.1, which must "+
		"answer the three paths with the right bodies and then gets a %v wrk warm-up run on /hello:\n\n",
		r.rounds, harness.Plural(r.rounds), r.warmup)
	p("1. **alone**: `wrk --latency -t1 -c8 --timeout 5s -d%v` on /hello.\n", r.duration)
	p("2. **slow**: %d slow clients start downloading /big; %v later, the same wrk run.\n", slow, r.phases[1].lead)
	p("3. **many-big**: %d slow clients start downloading /big, and the wrk run starts with them.\n", many)
	p("4. **many-stream**: the same with /stream64.\n\n")
	p("A slow client is a goroutine of this program with a raw TCP connection. Before connecting it sets "+
		"SO_RCVBUF to %d bytes (the kernel doubles it), so that the kernel takes little of the response ahead "+
		"of the reader, and the window it offers keeps the server to the reader's pace. ", r.rcvbuf)
	if r.mss > 0 {
		p("It also sets TCP_MAXSEG to %d bytes, so that it offers the server the segment size of a client "+
			"across an Ethernet path rather than loopback's 64 KiB: the kernel sizes a socket's send buffer by "+
			"segments, and with loopback's it would take a whole 1 MiB body from the server at once, however "+
			"slow the client (measured: about 1 GiB of kernel memory for 1,000 clients, and the server none the "+
			"wiser). ", r.mss)
	} else {
		p("It leaves the segment size at loopback's 64 KiB (-mss 0), so the server's kernel may take a whole " +
			"1 MiB body into the socket's send buffer however slow the client. ")
	}
	p("It sends one `GET` with `Connection: close`, then reads at most 4 KiB at a time, waiting between reads "+
		"so that the bytes it has read since the first byte of the response never run ahead of %.0f bytes a second "+
		"(a client that waited for its response does not then read faster to catch up). A 1 MiB body then takes about "+
		"%.0f s, so every client is still reading when the figures are taken.\n\n", r.rate, float64(1<<20)/r.rate)
	p("%v after the slow clients start, the program reads the server's resident memory (VmRSS summed over "+
		"its process tree), its threads (tasks in /proc, summed likewise), the kernel's memory for TCP "+
		"sockets (the `mem` pages of /proc/net/sockstat: the whole machine's, where the bytes written to a "+
		"socket and not yet read wait), and how many clients had connected and had their response "+
		"headers. The same figures are read before the clients start. Every figure is the median over "+
		"rounds; a ratio is computed within a round, then its median taken.\n\n", r.steady)
	p("Servers:\n\n")
	var rows [][]string
	for _, s := range r.servers {
		argv := s.argv(&r.env, "127.0.0.1:PORT")
		for i, a := range argv {
			if a == r.env.gowsgi {
				a = "gowsgi"
			}
			argv[i] = strings.ReplaceAll(a, r.env.apps, "bench/apps")
		}
		rows = append(rows, []string{"`" + s.name + "`", s.note, "`" + strings.Join(argv, " ") + "`"})
	}
	p("%s\n", harness.Table([]string{"server", "what", "command"}, "lll", rows))

	// Hello beside the slow clients.
	p("## Hello beside %d slow clients of /big\n\n", slow)
	p("req/s and p99 of `wrk -t1 -c8` on /hello, alone and while %d clients download 1 MiB each at %.0f KB/s; "+
		"the ratio is the second req/s over the first, in the same round (target for gowsgi: at least %.1f). "+
		"The last columns are the slow clients that had their response headers within %v of starting, and "+
		"the server's memory and threads %v after they started.\n\n", slow, r.rate/1000, gowsgiTarget, r.within, r.steady)
	rows = nil
	for _, s := range r.servers {
		alone, beside := r.results[s.name]["alone"], r.results[s.name]["slow"]
		var rs []float64
		for _, a := range alone {
			for _, x := range beside {
				if a.round == x.round && a.wrk.RPS > 0 {
					rs = append(rs, x.wrk.RPS/a.wrk.RPS)
				}
			}
		}
		ratio, target, verdict := math.NaN(), "–", "–"
		if len(rs) > 0 {
			ratio = harness.Median(rs)
		}
		if s.name == "gowsgi" {
			target = fmt.Sprintf("≥ %.2f", gowsgiTarget)
			switch {
			case math.IsNaN(ratio):
			case ratio >= gowsgiTarget:
				verdict = "met"
			default:
				verdict = "not met"
			}
		}
		rows = append(rows, []string{s.name,
			num("%.0f", medOf(alone, func(x result) float64 { return x.wrk.RPS })), p99Of(alone),
			num("%.0f", medOf(beside, func(x result) float64 { return x.wrk.RPS })), p99Of(beside),
			num("%.2f", ratio), target, verdict,
			num(fmt.Sprintf("%%.0f of %d", slow), medOf(beside, early)),
			mibs(medOf(beside, func(x result) float64 { return float64(x.rss) })),
			num("%.0f", medOf(beside, func(x result) float64 { return float64(x.threads) })),
		})
	}
	p("%s\n", harness.Table([]string{"server", "req/s alone", "p99 alone", "req/s beside", "p99 beside",
		"beside / alone", "target", "verdict", fmt.Sprintf("headers within %v", r.within), "RSS", "threads"},
		"lrrrrrrlrrr", rows))

	for _, ph := range r.phases[2:] {
		what := "a 1 MiB list (/big)"
		if ph.path == "/stream64" {
			what = "a generator of 100 x 64 KiB (/stream64)"
		}
		p("## %d slow clients of %s\n\n", ph.readers, what)
		p("What the clients got by %v after they started (connected, response headers; headers within %v; "+
			"the median rate at which those with headers were reading the body; clients that failed), and "+
			"hello's req/s and p99 beside them.\n\n", r.steady, r.within)
		rows = nil
		for _, s := range r.servers {
			rs := r.results[s.name][ph.name]
			c := func(f func(snapshot) int) string {
				return num("%.0f", medOf(rs, func(x result) float64 { return float64(f(x.clients)) }))
			}
			rows = append(rows, []string{s.name,
				c(func(s snapshot) int { return s.connected }), c(func(s snapshot) int { return s.headers }),
				num("%.0f", medOf(rs, early)),
				num("%.1f KB/s", medOf(rs, func(x result) float64 { return x.clients.rate / 1000 })),
				c(func(s snapshot) int { return s.failed }),
				num("%.0f", medOf(rs, func(x result) float64 { return x.wrk.RPS })), p99Of(rs),
			})
		}
		p("%s\n", harness.Table([]string{"server", "connected", "headers", fmt.Sprintf("within %v", r.within),
			"reading at", "failed", "hello req/s", "hello p99"}, "lrrrrrrr", rows))
		p("What the server held: before the clients started, and %v after; \"per client\" is the growth "+
			"divided by the clients connected.\n\n", r.steady)
		rows = nil
		// perClient is a growth divided by the clients connected.
		perClient := func(rs []result, f func(result) int64) string {
			return num("%.0f KiB", medOf(rs, func(x result) float64 {
				return float64(f(x)) / float64(max(x.clients.connected, 1))
			}))
		}
		for _, s := range r.servers {
			rs := r.results[s.name][ph.name]
			rows = append(rows, []string{s.name,
				mibs(medOf(rs, func(x result) float64 { return float64(x.rssBefore) })),
				mibs(medOf(rs, func(x result) float64 { return float64(x.rss) })),
				perClient(rs, func(x result) int64 { return x.rss - x.rssBefore }),
				num("%.0f", medOf(rs, func(x result) float64 { return float64(x.thrBefore) })),
				num("%.0f", medOf(rs, func(x result) float64 { return float64(x.threads) })),
				mibs(medOf(rs, func(x result) float64 { return float64(x.tcpBefore) })),
				mibs(medOf(rs, func(x result) float64 { return float64(x.tcp) })),
				perClient(rs, func(x result) int64 { return x.tcp - x.tcpBefore }),
			})
		}
		p("%s\n", harness.Table([]string{"server", "RSS before", "RSS during", "per client", "threads before",
			"threads during", "kernel TCP memory before", "during", "per client"}, "lrrrrrrrr", rows))
	}

	p("## Notes\n\n")
	p("- The clients, wrk and the server share the machine's %d cores, on loopback; other work may run on the "+
		"machine too. The kernel TCP memory is the whole machine's: it shows where the bytes a server has "+
		"written and a client has not read wait, and other sockets add a little.\n", runtime.NumCPU())
	p("- uWSGI's `--http11-socket` and gunicorn's gthread workers run one request on one of their 2 x 4 " +
		"threads until its response is written: a slow client keeps a thread for as long as its last bytes " +
		"wait for room in the socket (uWSGI: or until a write has waited 4 s, see below). uWSGI takes connections only when a thread is free (the others wait in " +
		"the listen queue, of 100 by default, and beyond it the kernel drops the SYN and the client retries); " +
		"gunicorn's gthread workers accept up to 1,000 connections each and queue them for their threads.\n")
	p("- uWSGI abandons a response whose write has waited for its `--socket-timeout` (4 s by default; its " +
		"log says `uwsgi_response_write_body_do() TIMEOUT !!!`) and its thread takes the next connection. The " +
		"client still receives what the kernel had taken, then the connection closes: a slow client sees the " +
		"cut only once it has read that far, later than the figures are taken. This is how uWSGI can have " +
		"answered more than 8 clients. Write timeouts in uWSGI's log by the time the figures were taken " +
		"(median over rounds): ")
	var parts []string
	for _, ph := range r.phases[1:] {
		parts = append(parts, fmt.Sprintf("%s %s", ph.name,
			num("%.0f", medOf(r.results["uwsgi"][ph.name], func(x result) float64 { return float64(x.timeouts) }))))
	}
	p("%s.\n", strings.Join(parts, ", "))
	p("- A phase's hello req/s of 0 and a p99 of \"none served\" mean that no request of the wrk run " +
		"completed: its connections waited behind the slow clients for the whole run. When they could not " +
		"even connect (a full listen queue), wrk does not end on time; it is stopped 3 s after its run " +
		"should have ended and counted the same way.\n")
	p("- A client is \"failed\" on an error other than being stopped at the end of its phase (a reset, a " +
		"refused connection, a response closed before its end); the first error of each such measurement is below.\n")
	if errs := r.clientErrors(); errs != "" {
		p("\n%s", errs)
	}
	b.WriteString(r.failures.Report())
	return b.String()
}

// clientErrors lists the first client error of every measurement that had
// some.
func (r *run) clientErrors() string {
	var b strings.Builder
	for _, s := range r.servers {
		for _, ph := range r.phases[1:] {
			for _, x := range r.results[s.name][ph.name] {
				if e := x.clients.firstError; e != "" {
					fmt.Fprintf(&b, "- round %d, %s, %s: %d failed; first: %s\n", x.round, s.name, ph.name, x.clients.failed, e)
				}
			}
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "Client errors:\n\n" + b.String()
}
