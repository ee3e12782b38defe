// Command slowclients measures what slow clients cost a WSGI server on
// loopback: gowsgi with its default flags, uWSGI (2 processes x 4 threads,
// --http11-socket, as in bench/compare) and gunicorn's gthread workers
// (2 x 4), each serving bench/apps/apps.py's router (/hello, /big: a 1 MiB
// body in a list, /stream64: a generator of 100 x 64 KiB). It writes
// bench/SLOWCLIENTS.md.
//
//	go run ./bench/slowclients [-rounds 3] [-duration 10s] [-slow 100] [-many 1000]
//
// Each round runs, for each server, four phases, each on a freshly started
// server after a wrk warm-up on /hello:
//
//   - alone: `wrk -t1 -c8` on /hello for -duration.
//   - slow: -slow clients (100) start downloading /big at -rate bytes a
//     second (20 KB/s) each; after 2 s, the same wrk run on /hello.
//   - many-big: -many clients (1,000) start downloading /big at that rate,
//     and the wrk run on /hello starts with them.
//   - many-stream: the same with /stream64.
//
// A slow client is a goroutine with a raw TCP connection whose receive
// buffer is small (-rcvbuf) and which offers the server Ethernet-sized
// segments (-mss, both set before connecting), which sends one GET with
// Connection: close and reads at most 4 KiB at a time, waiting between
// reads so that its bytes, from the first of the response, keep to the
// rate. The server's resident
// memory and threads (summed over its process tree) and the kernel's TCP
// memory are read before the clients start and -steady (10 s) after, with
// how many clients were connected and had their response headers by then.
//
// 1,000 connections need as many file descriptors in this process and in
// the server: the soft limit is raised to the hard one at start, for both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// debPackages are installed when missing: what builds gowsgi, the other
// servers and wrk.
var debPackages = slices.Concat(harness.BuildPackages, harness.ServerPackages)

// server is one way of serving apps:router on addr.
type server struct {
	name string
	note string
	argv func(e *env, addr string) []string
}

type env struct {
	gowsgi string // the built command
	apps   string // absolute path of bench/apps
}

var servers = []server{
	{"gowsgi", "the command with its default flags (--threads 8, one sub-interpreter)", func(e *env, addr string) []string {
		return []string{e.gowsgi, "--bind", addr, "--chdir", e.apps, "apps:router"}
	}},
	{"uwsgi", "2 processes x 4 threads, HTTP/1.1 keep-alive socket, no proxy in front (as in bench/compare)", func(e *env, addr string) []string {
		return []string{"uwsgi", "--plugin", "python3", "--http11-socket", addr, "--tcp-nodelay",
			"--master", "--processes", "2", "--threads", "4", "--disable-logging", "--need-app",
			"--chdir", e.apps, "--wsgi-file", filepath.Join(e.apps, "apps.py"), "--callable", "router"}
	}},
	{"gunicorn-gthread", "2 workers x 4 threads", func(e *env, addr string) []string {
		return []string{"gunicorn", "--bind", addr, "--chdir", e.apps, "--workers", "2", "--worker-class", "gthread",
			"--threads", "4", "--log-level", "warning", "apps:router"}
	}},
}

// The bodies of apps:router, to check that a server is ready and right.
var (
	helloBody    = []byte("Hello, World!")
	bigBody      = []byte(strings.Repeat("x", 1<<20))
	stream64Body = []byte(strings.Repeat("s", 100*64<<10))
)

// phase is one of the four measurements of a server in a round.
type phase struct {
	name    string
	readers int           // slow clients
	path    string        // what they download
	size    int64         // its body's bytes
	lead    time.Duration // from the clients' start to wrk's
}

// result is one phase of one server in one round.
type result struct {
	round      int
	wrk        harness.WrkResult
	served     bool // wrk completed requests (if not, wrk is zero but for its errors)
	wrkStopped bool // wrk did not end by itself and was stopped
	timeouts   int  // responses the server's log says it abandoned (uWSGI's write timeouts)
	rssBefore  int64
	rss        int64 // KiB, -steady after the clients started (after wrk for alone)
	thrBefore  int
	threads    int
	tcpBefore  int64 // kernel TCP memory, KiB
	tcp        int64
	clients    snapshot // at -steady
	afterWrk   snapshot // when the wrk run ended
}

type run struct {
	ctx       context.Context
	env       env
	tmp       string
	rounds    int
	duration  time.Duration
	warmup    time.Duration
	steady    time.Duration
	within    time.Duration
	rate      float64
	rcvbuf    int
	mss       int
	phases    []phase
	servers   []server
	client    *http.Client
	results   map[string]map[string][]result // server, phase
	failures  harness.Skips
	nofile    [2]uint64 // the soft and hard limits found at start
	nofileSet uint64    // the soft limit this process and the servers run with
}

func main() {
	rounds := flag.Int("rounds", 3, "rounds; each runs every phase on every server once")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured wrk run on /hello (whole seconds)")
	warmup := flag.Duration("warmup", time.Second, "length of the wrk warm-up run on a fresh server (whole seconds)")
	slow := flag.Int("slow", 100, "slow clients downloading /big beside the wrk run of the slow phase")
	many := flag.Int("many", 1000, "slow clients of the many-big and many-stream phases")
	rate := flag.Float64("rate", 20_000, "bytes a second each slow client reads")
	rcvbuf := flag.Int("rcvbuf", 8192, "SO_RCVBUF of the slow clients' sockets, in bytes (the kernel doubles it)")
	mss := flag.Int("mss", 1460, "TCP_MAXSEG of the slow clients' sockets, the segment size they offer the server (0: loopback's)")
	steady := flag.Duration("steady", 10*time.Second, "when, after the slow clients start, to read the server's memory and threads")
	within := flag.Duration("headers-within", 5*time.Second, "count the slow clients that had their response headers this soon")
	serverList := flag.String("servers", "gowsgi,uwsgi,gunicorn-gthread", "comma-separated servers to run")
	out := flag.String("out", "bench/SLOWCLIENTS.md", "Markdown report to write, relative to the module root; empty for none")
	flag.Parse()
	if flag.NArg() > 0 || *rounds < 1 || *duration < time.Second || *warmup < 0 || *slow < 0 || *many < 0 ||
		*rate <= 0 || *rcvbuf <= 0 || *mss < 0 || *steady <= 0 || *within <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	r := &run{
		rounds: *rounds, duration: *duration, warmup: *warmup, steady: *steady, within: *within,
		rate: *rate, rcvbuf: *rcvbuf, mss: *mss,
		phases: []phase{
			{"alone", 0, "", 0, 0},
			{"slow", *slow, "/big", int64(len(bigBody)), 2 * time.Second},
			{"many-big", *many, "/big", int64(len(bigBody)), 0},
			{"many-stream", *many, "/stream64", int64(len(stream64Body)), 0},
		},
		client:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		results: map[string]map[string][]result{},
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*serverList, ",") {
		want[strings.TrimSpace(n)] = true
	}
	for _, s := range servers {
		if want[s.name] {
			r.servers = append(r.servers, s)
			delete(want, s.name)
		}
	}
	if len(want) > 0 || len(r.servers) == 0 {
		fmt.Fprintf(os.Stderr, "slowclients: -servers: choose among gowsgi, uwsgi, gunicorn-gthread\n")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r.ctx = ctx
	if err := r.main(*out, max(*slow, *many)); err != nil {
		fmt.Fprintln(os.Stderr, "slowclients:", err)
		os.Exit(1)
	}
}

// raiseFileLimit sets the soft limit on open files to the hard one.
// Calling Setrlimit also tells Go's os/exec to start children with the
// raised limit rather than the original one, so the servers get it too.
func (r *run) raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	r.nofile = [2]uint64{lim.Cur, lim.Max}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	r.nofileSet = lim.Cur
	// Each slow client takes a descriptor here and one in the server.
	if lim.Cur < uint64(need)+256 {
		return fmt.Errorf("the hard limit on open files is %d; %d slow clients need about %d (raise it with ulimit -Hn as root, or lower -many)",
			lim.Max, need, need+256)
	}
	return nil
}

func (r *run) main(out string, need int) error {
	start := time.Now()
	if err := r.raiseFileLimit(need); err != nil {
		return err
	}
	root, err := harness.Prepare(debPackages, os.Stdout)
	if err != nil {
		return err
	}
	if r.tmp, err = os.MkdirTemp("", "gowsgi-slowclients"); err != nil {
		return err
	}
	defer os.RemoveAll(r.tmp)
	r.env.apps = filepath.Join(root, "bench", "apps")
	fmt.Println("building ./cmd/gowsgi")
	if r.env.gowsgi, err = harness.BuildGowsgi(r.tmp, true); err != nil {
		return err
	}

	// A phase costs a server start and its probes (up to 4 s, uWSGI's),
	// the warm-up, its lead, the longer of the wrk run and -steady, and a
	// second to stop.
	var per time.Duration
	for _, ph := range r.phases {
		per += 5*time.Second + r.warmup + ph.lead + max(r.duration, r.steady)
	}
	fmt.Printf("%d rounds x %d servers x %d phases, about %v\n", r.rounds, len(r.servers), len(r.phases),
		(time.Duration(r.rounds*len(r.servers)) * per).Round(time.Minute))

	for round := 1; round <= r.rounds; round++ {
		for _, s := range r.servers {
			for _, ph := range r.phases {
				if err := r.ctx.Err(); err != nil {
					return err
				}
				r.measure(round, s, ph)
			}
		}
	}
	fmt.Printf("\nmeasured in %v\n\n", time.Since(start).Round(time.Second))
	return harness.Publish(r.report(start), out)
}

// measure runs phase ph on a fresh server s.
func (r *run) measure(round int, s server, ph phase) {
	began := time.Now()
	fail := func(err error) { r.failures.Add(err, "round %d, %s, %s", round, s.name, ph.name) }
	addr, port, err := harness.FreeAddr()
	if err != nil {
		fail(err)
		return
	}
	argv := s.argv(&r.env, addr)
	if _, err := exec.LookPath(argv[0]); err != nil {
		fail(err)
		return
	}
	logPath := filepath.Join(r.tmp, fmt.Sprintf("%s-%s-%d.log", s.name, ph.name, round))
	srv, err := harness.StartServer(s.name, argv, r.env.apps, nil, logPath)
	if err != nil {
		fail(err)
		return
	}
	defer srv.Stop()
	for i, c := range []struct {
		path string
		want []byte
	}{{"/hello", helloBody}, {"/big", bigBody}, {"/stream64", stream64Body}} {
		url := "http://" + addr + c.path
		probe := func() (*http.Response, []byte, error) { return harness.Fetch(r.client, http.MethodGet, url, nil) }
		timeout := 30 * time.Second // the first probe waits for the server to start
		if i > 0 {
			timeout = 10 * time.Second
		}
		if err := srv.WaitReady(r.ctx, timeout, probe, harness.CheckBody(c.want)); err != nil {
			fail(err)
			return
		}
	}
	hello := "http://" + addr + "/hello"
	args := []string{"-t1", "-c8", "--timeout", "5s"}
	if r.warmup >= time.Second {
		if _, err := harness.Wrk(r.ctx, append(args, harness.Secs(r.warmup), hello)...); err != nil {
			fail(fmt.Errorf("warm-up: %v", err))
			return
		}
	}

	pid := srv.Pid()
	res := result{round: round, rssBefore: harness.TreeRSS(pid), thrBefore: harness.TreeTasks(pid), tcpBefore: tcpMemKB()}
	var g *readers
	sampled := make(chan struct{})
	if ph.readers > 0 {
		g = startReaders(r.ctx, ph.readers, addr, ph.path, ph.size, r.rate, r.rcvbuf, r.mss)
		defer g.stop()
		go func() {
			defer close(sampled)
			select {
			case <-time.After(r.steady):
			case <-r.ctx.Done():
				return
			}
			res.rss, res.threads, res.tcp = harness.TreeRSS(pid), harness.TreeTasks(pid), tcpMemKB()
			res.clients = g.snapshot(r.within)
			res.timeouts = writeTimeouts(logPath)
		}()
		select {
		case <-time.After(ph.lead):
		case <-r.ctx.Done():
			return
		}
	} else {
		close(sampled)
	}
	// wrk does not end on time when its connections cannot even connect
	// (a full listen queue: the kernel drops their SYNs and they retry
	// for a minute): it is stopped 3 s after its run should have ended,
	// as one that completed no request.
	wctx, cancel := context.WithTimeout(r.ctx, r.duration+3*time.Second)
	w, err := harness.Measure(wctx, pid, port, r.duration/2, append(args, harness.Secs(r.duration), hello)...)
	cancel()
	switch {
	case err == nil:
		res.wrk, res.served = w, true
	case errors.Is(err, harness.ErrNoRequests):
		res.wrk = w // no request completed beside the slow clients: 0 req/s
	case r.ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded):
		res.wrkStopped = true
	default:
		fail(err)
		return
	}
	if g != nil {
		res.afterWrk = g.snapshot(r.within)
	}
	<-sampled
	if r.ctx.Err() != nil {
		return
	}
	if ph.readers == 0 {
		res.rss, res.threads, res.tcp = harness.TreeRSS(pid), harness.TreeTasks(pid), tcpMemKB()
	}
	if srv.Exited() {
		fail(fmt.Errorf("server exited during the run:\n%s", srv.LogTail()))
		return
	}
	if r.results[s.name] == nil {
		r.results[s.name] = map[string][]result{}
	}
	r.results[s.name][ph.name] = append(r.results[s.name][ph.name], res)

	line := fmt.Sprintf("round %d  %-16s %-11s hello %7.0f req/s  p99 %8s  errors %d", round, s.name, ph.name,
		res.wrk.RPS, p99(res), res.wrk.Errors+res.wrk.Non2xx)
	if res.wrkStopped {
		line += " (wrk stopped: it did not end)"
	}
	line += fmt.Sprintf("  RSS %.1f → %.1f MiB  threads %d → %d", mib(res.rssBefore), mib(res.rss), res.thrBefore, res.threads)
	if res.timeouts > 0 {
		line += fmt.Sprintf("  write timeouts in the log %d", res.timeouts)
	}
	if g != nil {
		c := res.clients
		line += fmt.Sprintf("  clients: %d connected, %d with headers (%d within %v), %.1f KB/s each, %d failed",
			c.connected, c.headers, res.afterWrk.early, r.within, c.rate/1000, c.failed)
		if c.firstError != "" {
			line += " (" + c.firstError + ")"
		}
	}
	fmt.Printf("%s  [%.1f s]\n", line, time.Since(began).Seconds())
}

// writeTimeouts counts the responses uWSGI's log says it abandoned because
// a write waited longer than its --socket-timeout (4 s by default). The
// client still gets what the kernel had taken, then the connection closes,
// which a slow client sees long after.
func writeTimeouts(logPath string) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "uwsgi_response_write_body_do() TIMEOUT")
}

// p99 is the wrk run's p99, or "none" when it completed no request.
func p99(res result) string {
	if !res.served {
		return "none"
	}
	return harness.Ms(res.wrk.P99)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// tcpMemKB is the memory the kernel holds for all TCP sockets of the
// machine (the "mem" pages of /proc/net/sockstat), in KiB.
func tcpMemKB() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "mem" {
				var pages int64
				fmt.Sscan(f[i+1], &pages)
				return pages * int64(os.Getpagesize()) / 1024
			}
		}
	}
	return 0
}
