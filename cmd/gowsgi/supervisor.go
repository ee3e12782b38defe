package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi"
)

// With --processes N, gowsgi is a supervisor: it opens the listening
// sockets once and runs N workers, each this program started again with
// the sockets inherited (listenFDsEnv) and a socket pair to the supervisor
// (workerFDEnv, see worker.go). Each worker loads the app and accepts on
// the shared sockets; the kernel hands each connection to one of them.
// The supervisor never starts Python.
//
// Workers come in generations. The first is started at launch; SIGHUP (or
// a worker asking, with --reload-mechanism process) starts the next one
// beside it, and only when every new worker has said "ready" are the old
// ones sent SIGTERM, to stop accepting and finish their requests. The
// sockets stay open in the supervisor all along, so a connection is never
// refused: it waits in the kernel's queue until some worker accepts it.
// A new generation with a worker that fails to start is stopped, and the
// old one keeps serving.

const (
	restartMin   = time.Second      // the first wait before a dead worker is started again
	restartMax   = 30 * time.Second // the longest, while workers keep dying
	stableAfter  = 10 * time.Second // a worker that lived this long resets the wait
	killGrace    = 10 * time.Second // past --graceful-timeout, a draining worker is killed
	queryTimeout = 2 * time.Second  // for a worker's stats
)

type supervisor struct {
	c         *config
	args      []string // the command line, given again to each worker
	exe       string
	dir       string // where workers start; they apply --chdir themselves
	log       *slog.Logger
	stdout    io.Writer
	listeners []net.Listener
	fds       []uintptr // a worker's descriptors 0, 1, 2 and the listeners from 3 on
	statsURL  string

	events chan func() // run on the loop's goroutine
	done   chan struct{}
	spawn  chan func() // run on the spawner's thread

	// Owned by the loop's goroutine.
	gen      int // the generation serving; 0 until the first is ready
	slots    []*slot
	pending  *generation // the generation starting, if any
	again    bool        // a SIGHUP came while one was starting
	live     map[*worker]bool
	stopping bool
	status   int

	restarts atomic.Uint64

	mu      sync.Mutex
	serving map[*worker]bool // workers that said ready and have not exited
	retired wsgi.Stats       // the counters of the workers that exited
	python  string
}

// A slot is one of the --processes places a worker fills.
type slot struct {
	n     int
	w     *worker       // its worker of the serving generation; nil while one is awaited
	delay time.Duration // the wait before the next restart
	timer *time.Timer   // a restart to come
}

type generation struct {
	n       int
	workers []*worker // by slot
	ready   int
}

type worker struct {
	slot    int
	gen     int
	pid     int
	proc    *os.Process
	state   *os.ProcessState // once it has exited
	conn    net.Conn         // the supervisor's end of the socket pair
	started time.Time

	// Owned by the loop's goroutine.
	ready    bool
	retiring bool        // sent SIGTERM (or SIGKILL); it is not started again
	timer    *time.Timer // the ready deadline, then the drain deadline

	readerDone chan struct{}
	qmu        sync.Mutex // one stats query at a time
	seq        int
	answers    chan int     // the sequence number of the newest answer stored in last
	last       processStats // under supervisor.mu
}

// supervise runs the workers until SIGTERM or SIGINT and returns the exit
// status.
func supervise(c *config, args []string, startDir string, logger *slog.Logger, stdout, stderr io.Writer, sigc <-chan os.Signal) int {
	// The flags a worker would refuse are refused here, with status 2.
	_, closer, err := c.options(logger, io.Discard, func() {})
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 2
	}
	closer.Close()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi: cannot find this program to start workers:", err)
		return 1
	}
	listeners, err := listenAll(c.binds)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	lnFDs, err := listenerFDs(listeners)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	defer devNull.Close()
	outFD, outDone, err := outputFD(stdout)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	defer outDone()
	errFD, errDone, err := outputFD(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "gowsgi:", err)
		return 1
	}
	defer errDone()
	s := &supervisor{
		c: c, args: args, exe: exe, dir: startDir, log: logger, stdout: stdout,
		listeners: listeners,
		fds:       append([]uintptr{devNull.Fd(), outFD, errFD}, lnFDs...),
		events:    make(chan func(), 16),
		done:      make(chan struct{}),
		spawn:     make(chan func()),
		live:      map[*worker]bool{},
		serving:   map[*worker]bool{},
	}
	for i := range c.processes {
		s.slots = append(s.slots, &slot{n: i + 1})
	}
	if c.statsAddr != "" {
		ln, err := net.Listen("tcp", c.statsAddr)
		if err != nil {
			fmt.Fprintln(stderr, "gowsgi: --stats-addr:", err)
			return 1
		}
		defer ln.Close()
		s.statsURL = "http://" + ln.Addr().String() + "/"
		go http.Serve(ln, s.statsHandler())
	}
	go s.spawner()
	defer close(s.spawn)

	s.startGeneration()
	s.loop(sigc)
	return s.status
}

// spawner starts every worker from one OS thread that lives as long as
// the supervisor, since Linux sends Pdeathsig when the thread that started
// a child ends, not the process.
func (s *supervisor) spawner() {
	runtime.LockOSThread() // never unlocked; the thread ends when the supervisor is done
	for f := range s.spawn {
		f()
	}
}

func (s *supervisor) loop(sigc <-chan os.Signal) {
	for !s.stopping || len(s.live) > 0 {
		select {
		case f := <-s.events:
			f()
		case sig := <-sigc:
			s.signal(sig)
		}
	}
	close(s.done)
}

// post runs f on the loop's goroutine.
func (s *supervisor) post(f func()) {
	select {
	case s.events <- f:
	case <-s.done:
	}
}

func (s *supervisor) signal(sig os.Signal) {
	if sig != syscall.SIGHUP {
		s.log.Info("gowsgi: stopping the workers", "signal", sig.String(), "graceful_timeout", s.c.gracefulTimeout)
		s.stop()
		return
	}
	switch {
	case s.stopping:
	case s.pending != nil:
		s.again = true
		s.log.Info("gowsgi: SIGHUP while new workers start; another reload follows")
	default:
		s.log.Info("gowsgi: reloading on SIGHUP: starting new workers")
		s.startGeneration()
	}
}

// startGeneration starts a worker for every slot.
func (s *supervisor) startGeneration() {
	g := &generation{n: s.gen + 1}
	s.pending = g
	for _, sl := range s.slots {
		w, err := s.startWorker(sl.n, g.n)
		if err != nil {
			s.failGeneration(fmt.Sprintf("starting worker %d: %v", sl.n, err))
			return
		}
		g.workers = append(g.workers, w)
	}
}

// commit makes the pending generation the serving one and sends the old
// workers away.
func (s *supervisor) commit() {
	g := s.pending
	s.pending = nil
	first := s.gen == 0
	s.gen = g.n
	var pids []int
	for i, sl := range s.slots {
		if sl.timer != nil {
			sl.timer.Stop()
			sl.timer = nil
		}
		old := sl.w
		sl.w = g.workers[i]
		pids = append(pids, sl.w.pid)
		if old != nil {
			s.retire(old)
		}
	}
	if first {
		s.mu.Lock()
		python := s.python
		s.mu.Unlock()
		for _, ln := range s.listeners {
			fmt.Fprintf(s.stdout, "gowsgi: serving %s (Python %s) on %s\n", s.c.app, python, displayURL(ln, s.c.certFile != ""))
		}
		if s.statsURL != "" {
			fmt.Fprintf(s.stdout, "gowsgi: stats on %s\n", s.statsURL)
		}
		s.log.Info("gowsgi: workers serving", "processes", len(pids), "pids", pids)
	} else {
		s.log.Info("gowsgi: reloaded: the new workers serve, the old ones finish their requests", "generation", g.n, "pids", pids)
	}
	s.afterGeneration()
}

// failGeneration stops the pending generation's workers.
func (s *supervisor) failGeneration(reason string) {
	g := s.pending
	s.pending = nil
	for _, w := range g.workers {
		if s.live[w] {
			s.retire(w)
		}
	}
	if s.gen == 0 {
		s.log.Error("gowsgi: the workers could not start", "reason", reason)
		s.status = 1
		s.stop()
		return
	}
	s.log.Error("gowsgi: reload failed; the old workers keep serving", "reason", reason)
	s.afterGeneration()
}

func (s *supervisor) afterGeneration() {
	if s.again && !s.stopping {
		s.again = false
		s.log.Info("gowsgi: reloading again for the SIGHUP that came meanwhile")
		s.startGeneration()
	}
}

func (s *supervisor) stop() {
	if s.stopping {
		return
	}
	s.stopping = true
	s.pending = nil
	for _, sl := range s.slots {
		if sl.timer != nil {
			sl.timer.Stop()
			sl.timer = nil
		}
	}
	for w := range s.live {
		s.retire(w)
	}
}

// retire stops a worker: SIGTERM to drain one that serves, SIGKILL for one
// still loading the app, which has nothing to finish.
func (s *supervisor) retire(w *worker) {
	if w.retiring {
		return
	}
	w.retiring = true
	if w.timer != nil {
		w.timer.Stop()
	}
	if !w.ready {
		w.proc.Kill()
		return
	}
	w.proc.Signal(syscall.SIGTERM)
	w.timer = time.AfterFunc(s.c.gracefulTimeout+killGrace, func() {
		s.post(func() {
			if s.live[w] {
				s.log.Warn("gowsgi: worker still running after the graceful timeout; killing it", "worker", w.slot, "pid", w.pid)
				w.proc.Kill()
			}
		})
	})
}

// startWorker starts this program again as the worker for a slot.
func (s *supervisor) startWorker(n, gen int) (*worker, error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "worker")
	theirs := os.NewFile(uintptr(fds[1]), "supervisor")
	defer theirs.Close()
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, err
	}

	listeners := len(s.fds) - 3
	env := append(os.Environ(),
		fmt.Sprintf("%s=%d", listenFDsEnv, listeners),
		fmt.Sprintf("%s=%d", workerEnv, n),
		fmt.Sprintf("%s=%d", workerFDEnv, 3+listeners),
	)
	argv := append([]string{os.Args[0]}, s.args...)
	childFDs := append(slices.Clone(s.fds), theirs.Fd())
	var proc *os.Process
	started := make(chan struct{})
	s.spawn <- func() {
		proc, err = startChild(s.exe, argv, s.dir, env, childFDs, workerAttr())
		close(started)
	}
	<-started
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &worker{
		slot: n, gen: gen, pid: proc.Pid, proc: proc, conn: conn, started: time.Now(),
		readerDone: make(chan struct{}),
		answers:    make(chan int, 1),
	}
	s.live[w] = true
	w.timer = time.AfterFunc(s.c.readyTimeout, func() {
		s.post(func() {
			if s.live[w] && !w.ready && !w.retiring {
				s.log.Error("gowsgi: worker not ready in time; killing it", "worker", w.slot, "pid", w.pid, "ready_timeout", s.c.readyTimeout)
				w.proc.Kill()
			}
		})
	})
	go s.read(w)
	go s.wait(w)
	return w, nil
}

// read takes the worker's messages.
func (s *supervisor) read(w *worker) {
	defer close(w.readerDone)
	sc := bufio.NewScanner(w.conn)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		verb, rest, _ := strings.Cut(sc.Text(), " ")
		switch verb {
		case "ready":
			s.post(func() { s.onReady(w, rest) })
		case "reload":
			s.post(func() { s.onReloadRequest(w) })
		case "stats":
			seqText, body, _ := strings.Cut(rest, " ")
			seq, _ := strconv.Atoi(seqText)
			s.store(w, body)
			select { // keep only the newest answer
			case <-w.answers:
			default:
			}
			w.answers <- seq
		case "final":
			s.store(w, rest)
		}
	}
}

func (s *supervisor) store(w *worker, body string) {
	var st processStats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		s.log.Warn("gowsgi: unreadable stats from a worker", "worker", w.slot, "pid", w.pid, "error", err)
		return
	}
	s.mu.Lock()
	w.last = st
	s.mu.Unlock()
}

// wait reaps the worker, once its last message is read.
func (s *supervisor) wait(w *worker) {
	state, err := w.proc.Wait()
	select {
	case <-w.readerDone:
	case <-time.After(time.Second): // a child of the worker holds its end
	}
	w.conn.Close()
	s.post(func() {
		w.state = state
		s.onExit(w, err)
	})
}

func (s *supervisor) onReady(w *worker, python string) {
	if !s.live[w] || w.ready || w.retiring {
		return
	}
	w.ready = true
	w.timer.Stop()
	s.mu.Lock()
	s.serving[w] = true
	if s.python == "" {
		s.python = python
	}
	s.mu.Unlock()
	if g := s.pending; g != nil && w.gen == g.n {
		g.ready++
		if g.ready == len(s.slots) {
			s.commit()
		}
		return
	}
	s.log.Info("gowsgi: worker ready", "worker", w.slot, "pid", w.pid)
}

func (s *supervisor) onReloadRequest(w *worker) {
	if s.stopping || s.pending != nil || w.retiring || w.gen != s.gen {
		return // a reload is under way, or this worker is already being replaced
	}
	s.log.Info("gowsgi: the app changed (--reload-mechanism process): starting new workers", "worker", w.slot, "pid", w.pid)
	s.startGeneration()
}

func (s *supervisor) onExit(w *worker, waitErr error) {
	delete(s.live, w)
	if w.timer != nil {
		w.timer.Stop()
	}
	s.mu.Lock()
	delete(s.serving, w)
	addStats(&s.retired, &w.last.Stats, true)
	s.mu.Unlock()

	state := w.state
	how := "unknown"
	switch {
	case state != nil:
		how = state.String() // "exit status 1", "signal: killed"
	case waitErr != nil:
		how = waitErr.Error()
	}
	clean := state != nil && state.Success()
	lived := time.Since(w.started).Round(time.Millisecond)
	switch {
	case w.retiring || s.stopping:
		if clean {
			s.log.Info("gowsgi: worker exited", "worker", w.slot, "pid", w.pid)
			return
		}
		s.log.Warn("gowsgi: worker stopped", "worker", w.slot, "pid", w.pid, "status", how)
		if s.stopping && w.ready {
			s.status = 1 // it did not finish its requests in time
		}
	case s.pending != nil && w.gen == s.pending.n:
		s.failGeneration(fmt.Sprintf("worker %d (pid %d) ended before it was ready: %s", w.slot, w.pid, how))
	case s.slots[w.slot-1].w == w:
		sl := s.slots[w.slot-1]
		sl.w = nil
		wait := s.backoff(sl, lived)
		s.log.Error("gowsgi: worker died", "worker", w.slot, "pid", w.pid, "status", how, "lived", lived, "restart_in", wait)
		s.restartLater(sl, wait)
	default:
		s.log.Warn("gowsgi: worker exited", "worker", w.slot, "pid", w.pid, "status", how)
	}
}

// backoff is the wait before a slot's worker is started again: 1s,
// doubling up to 30s while its workers die young, 1s again after one
// lived a while.
func (s *supervisor) backoff(sl *slot, lived time.Duration) time.Duration {
	if lived >= stableAfter || sl.delay == 0 {
		sl.delay = restartMin
	}
	wait := sl.delay
	sl.delay = min(2*sl.delay, restartMax)
	return wait
}

func (s *supervisor) restartLater(sl *slot, wait time.Duration) {
	sl.timer = time.AfterFunc(wait, func() { s.post(func() { s.restart(sl) }) })
}

func (s *supervisor) restart(sl *slot) {
	sl.timer = nil
	if s.stopping || sl.w != nil {
		return // stopping, or a new generation filled the slot
	}
	w, err := s.startWorker(sl.n, s.gen)
	if err != nil {
		wait := s.backoff(sl, 0)
		s.log.Error("gowsgi: could not start a worker", "worker", sl.n, "error", err, "restart_in", wait)
		s.restartLater(sl, wait)
		return
	}
	sl.w = w
	s.restarts.Add(1)
	s.log.Info("gowsgi: worker restarted", "worker", sl.n, "pid", w.pid)
}

// query asks a worker for its stats; they land in w.last. It reports
// whether the answer came in time.
func (w *worker) query(timeout time.Duration) bool {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	w.seq++
	seq := w.seq
	w.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(w.conn, "stats %d\n", seq); err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case got := <-w.answers:
			if got == seq {
				return true
			}
		case <-t.C:
			return false
		case <-w.readerDone:
			return false
		}
	}
}

// figures asks every serving worker for its stats and adds them up.
func (s *supervisor) figures() (supervisorStats, supervisorFigures) {
	s.mu.Lock()
	var ws []*worker
	for w := range s.serving {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			if !w.query(queryTimeout) {
				s.log.Debug("gowsgi: no stats from a worker in time; using its last", "worker", w.slot, "pid", w.pid)
			}
		})
	}
	wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	var out supervisorStats
	addStats(&out.Stats, &s.retired, false) // a copy: nothing of s.retired is shared
	for w := range s.serving {
		addStats(&out.Stats, &w.last.Stats, false)
		out.Goroutines += w.last.Goroutines
		out.Workers = append(out.Workers, workerStats{Worker: w.slot, Pid: w.pid, processStats: w.last})
	}
	slices.SortFunc(out.Workers, func(a, b workerStats) int {
		if a.Worker != b.Worker {
			return a.Worker - b.Worker
		}
		return a.Pid - b.Pid
	})
	if out.Workers == nil {
		out.Workers = []workerStats{}
	}
	return out, supervisorFigures{Workers: len(s.serving), Restarts: s.restarts.Load()}
}

func (s *supervisor) statsHandler() http.Handler {
	collector := newStatsCollector(true, func() (wsgi.Stats, *supervisorFigures) {
		st, fig := s.figures()
		return st.Stats, &fig
	})
	return statsMux(s.log, func() any { st, _ := s.figures(); return st }, collector)
}
