// Package harness holds what the benchmark commands bench/compare,
// bench/isolated and bench/slowclients share: installing Debian packages,
// starting a server in a process group of its own and killing the whole
// group, waiting for it to answer, running wrk and reading its output, and
// reading the CPU time, resident memory, threads and context switches of a
// process tree from /proc.
//
// Everything here is Linux-only, as the benchmarks are.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi/internal/procstatus"
)

// ---------------------------------------------------------------------------
// Debian packages

// BuildPackages build gowsgi against Debian's Python, as scripts/setup.sh
// installs them.
var BuildPackages = []string{"python3-dev", "pkg-config", "gcc", "libc6-dev"}

// ServerPackages are wrk and the servers every comparison runs beside
// gowsgi, with Debian's Python.
var ServerPackages = []string{"wrk", "uwsgi", "uwsgi-plugin-python3", "gunicorn"}

// MissingPackages returns the packages of pkgs that dpkg does not list as
// installed.
func MissingPackages(pkgs []string) []string {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", p).Output()
		// "ii " is installed; "un ", "rc " and a failing query are not.
		if err != nil || !strings.HasPrefix(string(out), "ii") {
			missing = append(missing, p)
		}
	}
	return missing
}

// EnsurePackages installs the packages of pkgs that are missing with apt-get,
// running `apt-get update` once first, and only when something is missing.
// As another user than root it returns an error naming the command to run.
func EnsurePackages(pkgs []string, log io.Writer) error {
	missing := MissingPackages(pkgs)
	if len(missing) == 0 {
		return nil
	}
	line := "apt-get install -y --no-install-recommends " + strings.Join(missing, " ")
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages; as root run: apt-get update && %s", line)
	}
	fmt.Fprintf(log, "installing %s\n", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", args[0], err, tail(out, 2000))
		}
	}
	if still := MissingPackages(missing); len(still) > 0 {
		return fmt.Errorf("still missing after apt-get install: %s", strings.Join(still, " "))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Servers

// Server is a server process started in a process group of its own, so that
// Stop kills it together with every worker it forked.
type Server struct {
	Name string
	Cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// StartServer starts argv in dir with extra environment variables env
// ("NAME=value"), its stdout and stderr going to logPath.
func StartServer(name string, argv []string, dir string, env []string, logPath string) (*Server, error) {
	if err := becomeSubreaper(); err != nil {
		return nil, fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	s := &Server{Name: name, Cmd: cmd, log: lf, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	return s, nil
}

// Pid is the server's process id (its process group id too).
func (s *Server) Pid() int { return s.Cmd.Process.Pid }

// Exited reports whether the server's main process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop kills the server's process group with SIGKILL and waits for the main
// process. Forked workers are in the same group and die with it. Stop may be
// called more than once.
func (s *Server) Stop() {
	if s == nil {
		return
	}
	_ = syscall.Kill(-s.Pid(), syscall.SIGKILL)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	// The workers of the dead master were re-parented to us (a child
	// subreaper, see StartServer): reap them, so that none is left behind,
	// not even as a zombie, and the next server starts on a quiet machine.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		pid, err := syscall.Wait4(-s.Pid(), nil, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			break // ECHILD: no process of the group is left
		}
		if pid == 0 {
			time.Sleep(10 * time.Millisecond) // one is still dying
		}
	}
	s.log.Close()
}

// becomeSubreaper makes this process the one that orphans among its
// descendants are re-parented to (prctl PR_SET_CHILD_SUBREAPER), so that
// Stop can reap the workers of a killed uWSGI or gunicorn master: the
// machine's init may not reap them.
var becomeSubreaper = sync.OnceValue(func() error {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return errno
	}
	return nil
})

// LogTail returns the end of the server's output, for error messages.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.log.Name())
	return string(tail(b, 1500))
}

// WaitReady polls url until check accepts a response, the server exits, or
// timeout passes. check gets the response with its whole body read.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration, probe func() (*http.Response, []byte, error), check func(*http.Response, []byte) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if s.Exited() {
			return fmt.Errorf("%s exited (%v) before answering:\n%s", s.Name, s.err, s.LogTail())
		}
		resp, body, err := probe()
		if err == nil {
			if err = check(resp, body); err == nil {
				return nil
			}
			// The server answers, but wrongly: it will not get better.
			return fmt.Errorf("%s answers, but: %v", s.Name, err)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %v\n%s", s.Name, timeout, last, s.LogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreeAddr returns an address on 127.0.0.1, and its port, that was free a
// moment ago.
func FreeAddr() (addr string, port int, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, err
	}
	defer ln.Close()
	port = ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("127.0.0.1:%d", port), port, nil
}

// ---------------------------------------------------------------------------
// Process trees in /proc

type procStat struct {
	pid, ppid int
	ticks     int64 // utime + stime + cutime + cstime
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from after the last ')'. There field 3 (state) is f[0].
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	st := procStat{pid: pid}
	st.ppid, _ = strconv.Atoi(f[1])
	for _, k := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseInt(f[k], 10, 64)
		st.ticks += v
	}
	return st, nil
}

// Tree returns root and all its living descendants.
func Tree(root int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

var clkTck = sync.OnceValue(func() int64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
})

// TreeCPU returns the user plus system CPU time used so far by root and its
// descendants (living ones, and reaped ones through their parent's cutime and
// cstime).
func TreeCPU(root int) time.Duration {
	var ticks int64
	for _, pid := range Tree(root) {
		if st, err := readStat(pid); err == nil {
			ticks += st.ticks
		}
	}
	return time.Duration(ticks) * time.Second / time.Duration(clkTck())
}

// TreeRSS returns the sum of VmRSS over root and its descendants, in KiB.
// Pages shared by forked workers are counted once per process, as `ps` does.
func TreeRSS(root int) int64 {
	var kib int64
	for _, pid := range Tree(root) {
		if s, err := procstatus.Read(strconv.Itoa(pid)); err == nil {
			kib += s.RSS >> 10
		}
	}
	return kib
}

// TreePSS returns the sum of the proportional set sizes (Pss in
// /proc/PID/smaps_rollup) over root and its descendants, in KiB: each page
// counted once in all, its share divided among the processes that map it.
// 0 where the kernel has no smaps_rollup.
func TreePSS(root int) int64 {
	var kib int64
	for _, pid := range Tree(root) {
		if b, err := procstatus.PSS(strconv.Itoa(pid)); err == nil {
			kib += b >> 10
		}
	}
	return kib
}

// TreeTasks returns the number of threads (tasks in /proc/PID/task) of root
// and its descendants.
func TreeTasks(root int) int {
	n := 0
	for _, pid := range Tree(root) {
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
			n += len(ents)
		}
	}
	return n
}

// TreeCtxSwitches returns the voluntary plus nonvoluntary context switches
// of every thread of root and its descendants, by thread id, read from
// /proc/PID/task/TID/status. Threads and processes that have exited are
// not there: the kernel keeps no total of them that /proc shows.
func TreeCtxSwitches(root int) map[int]int64 {
	n := map[int]int64{}
	for _, pid := range Tree(root) {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
					c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					n[tid] += c
				}
			}
		}
	}
	return n
}

// SwitchesSince returns the context switches made between two readings of
// TreeCtxSwitches by the threads living at the second, and how many threads
// of the first reading had exited by the second (their switches since the
// first reading are lost).
func SwitchesSince(before, after map[int]int64) (switches int64, exited int) {
	for tid, n := range after {
		switches += n - before[tid]
	}
	for tid := range before {
		if _, ok := after[tid]; !ok {
			exited++
		}
	}
	return switches, exited
}

// ---------------------------------------------------------------------------
// wrk

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests int64   // completed in the run
	RPS      float64 // Requests/sec
	P50, P99 time.Duration
	Errors   int64 // socket errors: connect, read, write, timeout
	Non2xx   int64 // "Non-2xx or 3xx responses"
	Duration time.Duration
	Output   string
	// Filled in by Measure:
	ServerCPU   time.Duration // CPU time of the server's process tree
	ServerRSSKB int64         // resident memory of the tree after the run
	ServerPSSKB int64         // its proportional set size: shared pages counted once
	Queued      int           // connections in the accept queue at mid-run
	CtxSwitches int64         // of the tree's threads during the run (see SwitchesSince)
	Exited      int           // threads of the tree that exited during the run
}

// ErrNoRequests is the error of a wrk run that completed no request, which
// ParseWrk and Wrk wrap: the result is still filled in from wrk's output.
var ErrNoRequests = errors.New("wrk completed no request")

var (
	reReqs    = regexp.MustCompile(`(\d+) requests in ([0-9.]+\w+)`)
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+\w+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// Wrk runs wrk with --latency and the given arguments (connections,
// duration, script, URL, ...) and parses its report.
func Wrk(ctx context.Context, args ...string) (WrkResult, error) {
	argv := append([]string{"--latency"}, args...)
	out, err := exec.CommandContext(ctx, "wrk", argv...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(argv, " "), err, tail(out, 1500))
	}
	return ParseWrk(string(out))
}

// ParseWrk reads the report printed by `wrk --latency`.
func ParseWrk(out string) (WrkResult, error) {
	r := WrkResult{Output: out}
	m := reReqs.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output without a request count:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Duration, _ = time.ParseDuration(m[2])
	if m := reRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range rePct.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(m[2]) // wrk's units: us, ms, s, m, h
		if err != nil {
			return r, fmt.Errorf("wrk latency %q: %v", m[2], err)
		}
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("%w:\n%s", ErrNoRequests, out)
	}
	return r, nil
}

// Measure runs wrk (as Wrk does) against the server whose process tree is
// rooted at pid, and adds the CPU time and the context switches of that
// tree during the run, its resident memory right after it, and how many
// connections waited in the accept queue of its listening port at mid-run
// (mid after the start).
func Measure(ctx context.Context, pid, port int, mid time.Duration, args ...string) (WrkResult, error) {
	switches := TreeCtxSwitches(pid)
	before := TreeCPU(pid)
	queued := make(chan int, 1)
	go func() {
		select {
		case <-time.After(mid):
			queued <- AcceptQueue(port)
		case <-ctx.Done():
			queued <- 0
		}
	}()
	r, err := Wrk(ctx, args...)
	if err != nil {
		return r, err
	}
	r.ServerCPU = TreeCPU(pid) - before
	r.CtxSwitches, r.Exited = SwitchesSince(switches, TreeCtxSwitches(pid))
	r.ServerRSSKB = TreeRSS(pid)
	r.ServerPSSKB = TreePSS(pid)
	r.Queued = <-queued
	return r, nil
}

// AcceptQueue returns the number of connections waiting to be accepted on
// the listening TCP socket of port (the rx_queue of its LISTEN line in
// /proc/net/tcp and tcp6): connections the kernel completed but the server
// has not taken yet.
func AcceptQueue(port int) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx_queue:rx_queue ...
			fs := strings.Fields(line)
			if len(fs) < 5 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, lport, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(lport, 16, 32); err != nil || int(p) != port {
				continue
			}
			_, rx, _ := strings.Cut(fs[4], ":")
			if q, err := strconv.ParseInt(rx, 16, 32); err == nil {
				n += int(q)
			}
		}
	}
	return n
}

// Secs formats d as wrk's -d argument, in whole seconds (wrk takes no
// fractions).
func Secs(d time.Duration) string {
	return fmt.Sprintf("-d%ds", int(d.Round(time.Second)/time.Second))
}

// Ms formats a latency in milliseconds.
func Ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.1f ms", v)
}

// PostScript writes a wrk Lua script that sends POST requests with a body of
// n bytes, and returns its path.
func PostScript(dir string, n int) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("post-%d.lua", n))
	script := fmt.Sprintf(`-- written by the gowsgi benchmark: POST a body of %d bytes
wrk.method = "POST"
wrk.body = string.rep("p", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
`, n, n)
	return path, os.WriteFile(path, []byte(script), 0o644)
}

// ---------------------------------------------------------------------------
// The machine and versions

// Machine describes the machine in a few Markdown list lines.
func Machine() []string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := strings.TrimSpace(First("uname", "-sr"))
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return []string{
		fmt.Sprintf("CPU: %d cores (nproc), %s", runtime.NumCPU(), cpu),
		fmt.Sprintf("memory: %s; kernel: %s", mem, kernel),
		fmt.Sprintf("load average at start (1, 5, 15 min): %s", load),
	}
}

// First runs a command and returns the first line of its output (stdout and
// stderr), or "unknown". Some tools (wrk -v) exit non-zero after printing
// their version, so the exit status is ignored when there is output.
func First(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line == "" {
		return "unknown"
	}
	return line
}

// Prepare readies a benchmark run: installs the Debian packages that are
// missing (a failure is reported to log, not fatal: a server whose command
// is missing is skipped later), checks that wrk is there, and changes to
// the module's root, where the paths in the commands start. It returns
// that root.
func Prepare(pkgs []string, log io.Writer) (string, error) {
	if err := EnsurePackages(pkgs, log); err != nil {
		fmt.Fprintln(log, "packages:", err)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return "", fmt.Errorf("wrk is needed: %v", err)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return root, os.Chdir(root)
}

// ModuleRoot returns the directory of the go.mod of the module the current
// directory is in.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run from inside the module github.com/gowsgi/wsgi")
	}
	return filepath.Dir(gomod), nil
}

// DebVersion returns the installed version of a Debian package.
func DebVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return "not installed"
	}
	return string(out)
}

// ---------------------------------------------------------------------------
// Statistics and HTTP helpers

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// MinMax returns the smallest and largest of xs.
func MinMax(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// Skips are the measurements a run could not make: each is printed when
// it happens and listed at the end of the report.
type Skips []string

// Add records that what could not be measured, because of err.
func (s *Skips) Add(err error, what string, a ...any) {
	msg := fmt.Sprintf(what, a...) + ": " + err.Error()
	fmt.Println("SKIP", msg)
	*s = append(*s, msg)
}

// Report is the report's section listing them, the first line of each, ""
// when there are none.
func (s Skips) Report() string {
	if len(s) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Skipped measurements\n\n")
	for _, f := range s {
		first, _, _ := strings.Cut(f, "\n")
		fmt.Fprintf(&b, "- %s\n", first)
	}
	return b.String()
}

// Table renders a Markdown table with padded columns, readable as plain
// text too. align has one letter per column, l or r.
func Table(header []string, align string, rows [][]string) string {
	width := make([]int, len(header))
	for _, row := range append([][]string{header}, rows...) {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)), 3)
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if align[i] == 'r' {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
		if align[i] == 'r' {
			sep[i] = sep[i][1:] + ":"
		}
	}
	line(sep)
	for _, row := range rows {
		line(row)
	}
	return b.String()
}

// Fetch sends one request and returns the response with its body read.
func Fetch(c *http.Client, method, url string, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}

// CheckBody returns a check for WaitReady: status 200 and exactly want.
func CheckBody(want []byte) func(*http.Response, []byte) error {
	return func(resp *http.Response, body []byte) error {
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, tail(body, 200))
		}
		if !bytes.Equal(body, want) {
			return fmt.Errorf("body of %d bytes (%q...), want %d bytes (%q...)",
				len(body), head(body, 20), len(want), head(want, 20))
		}
		return nil
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Command is this run's command line as a person would type it: "go run "
// and pkg, then the flags given.
func Command(pkg string) string {
	return strings.Join(append([]string{"go run " + pkg}, os.Args[1:]...), " ")
}

// Plural is "s" unless n is 1.
func Plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ---------------------------------------------------------------------------
// Building gowsgi and writing the report

// BuildGowsgi builds ./cmd/gowsgi into dir, from the module's root (see
// Prepare), with env added to this process's environment, and returns the
// binary's path. With static, CPython is linked in statically, as make
// serve does, when scripts/static-ldflags.sh finds libpython's archive for
// the Python that pkg-config names (env may set PKG_CONFIG_PATH); otherwise,
// or without static, the binary loads the shared libpython, and BuildGowsgi
// says on stderr why when static was asked for. The binary's --version
// tells which.
func BuildGowsgi(dir string, static bool, env ...string) (string, error) {
	env = append(os.Environ(), env...)
	if static {
		env = staticEnv(env)
	}
	bin := filepath.Join(dir, "gowsgi")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gowsgi")
	build.Env = env
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gowsgi: %v\n%s", err, out)
	}
	return bin, nil
}

// staticEnv is env with CGO_LDFLAGS extended by what
// scripts/static-ldflags.sh prints, or env itself, said on stderr, if the
// script fails.
func staticEnv(env []string) []string {
	flags := exec.Command("scripts/static-ldflags.sh")
	flags.Env = env
	flags.Stderr = os.Stderr
	out, err := flags.Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building gowsgi with the shared libpython (scripts/static-ldflags.sh: %v)\n", err)
		return env
	}
	ld := strings.TrimSpace(string(out))
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "CGO_LDFLAGS="); ok {
			ld = v + " " + ld
			break
		}
	}
	return append(env, "CGO_LDFLAGS="+ld)
}

// Head is the start of a report: its title, the command that wrote it and
// when, and a machine section of Machine's lines and then machine's.
func Head(title, pkg string, start time.Time, machine ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "Written by `%s` on %s (the run took %v). Generated: run the command again rather than editing.\n\n",
		Command(pkg), start.Format("2006-01-02 15:04 MST"), time.Since(start).Round(time.Second))
	b.WriteString("## Machine\n\n")
	for _, l := range append(Machine(), machine...) {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	return b.String()
}

// Versions is the versions section of a report comparing gowsgi (the binary
// at gowsgi) with uWSGI and gunicorn on Debian's Python: Go, the servers,
// Python, more's lines, and wrk.
func Versions(gowsgi string, more ...string) string {
	lines := append([]string{
		"Go: " + First("go", "version"),
		"gowsgi: " + First(gowsgi, "--version"),
		"Python: " + First("/usr/bin/python3", "--version") + " (Debian's, for every server)",
		fmt.Sprintf("uWSGI: %s (python3 plugin %s)", First("uwsgi", "--version"), DebVersion("uwsgi-plugin-python3")),
		"gunicorn: " + First("gunicorn", "--version"),
	}, more...)
	lines = append(lines, "wrk: "+First("wrk", "-v"))
	var b strings.Builder
	b.WriteString("\n## Versions\n\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	return b.String()
}

// Publish prints a report and writes it to the file out, unless out is "".
func Publish(report, out string) error {
	fmt.Print(report)
	if out == "" {
		return nil
	}
	return os.WriteFile(out, []byte(report), 0o644)
}
