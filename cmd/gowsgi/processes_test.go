package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// server is a running gowsgi, in a process group of its own with its
// workers.
type server struct {
	cmd    *exec.Cmd
	url    string // the app
	stats  string // --stats-addr, when given
	stderr *lockedBuffer
	exited chan struct{} // closed when the command has exited
	err    error         // from Wait, once exited is closed
}

// startServer runs gowsgi with args and waits for it to print its URLs.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(gowsgiBin(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout = w
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
	w.Close()
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group: the command and its workers
		<-s.exited
		r.Close()
	})
	wantStats := slices.Contains(args, "--stats-addr")
	lines := bufio.NewReader(r)
	urlRE := regexp.MustCompile(`(https?://|unix:)\S+`)
	for s.url == "" || (wantStats && s.stats == "") {
		line, err := lines.ReadString('\n')
		require.NoError(t, err, "stderr: %s", s.stderr.String())
		switch {
		case strings.HasPrefix(line, "gowsgi: serving "):
			s.url = urlRE.FindString(line)
		case strings.HasPrefix(line, "gowsgi: stats on "):
			s.stats = urlRE.FindString(line)
		}
	}
	go io.Copy(io.Discard, lines)
	return s
}

func (s *server) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(sig))
}

// waitExit waits for the command to exit and returns its exit status.
func (s *server) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		t.Fatalf("gowsgi did not exit in %v; stderr: %s", within, s.stderr.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

// supervisorStats reads the JSON at --stats-addr.
func (s *server) supervisorStats() (supervisorStats, error) {
	var st supervisorStats
	resp, err := http.Get(s.stats)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitStats polls the stats until ok accepts them.
func (s *server) waitStats(t *testing.T, within time.Duration, what string, ok func(supervisorStats) bool) supervisorStats {
	t.Helper()
	var st supervisorStats
	var err error
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		st, err = s.supervisorStats()
		if err == nil && ok(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not seen in %v (last stats %+v, error %v); stderr: %s", what, within, st, err, s.stderr.String())
	return st
}

// waitLog waits until stderr matches re.
func (s *server) waitLog(t *testing.T, within time.Duration, re string) {
	t.Helper()
	pat := regexp.MustCompile(re)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if pat.MatchString(s.stderr.String()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line matching %q in %v; stderr: %s", re, within, s.stderr.String())
}

// metrics reads /metrics with the Prometheus text parser.
func (s *server) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(s.stats + "metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

func workerPIDs(st supervisorStats) []int {
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}

// value is the one sample of a metric family without labels.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, kind dto.MetricType) float64 {
	t.Helper()
	f, ok := families[name]
	require.True(t, ok, "no metric %s", name)
	require.Equal(t, kind, f.GetType(), name)
	require.Len(t, f.GetMetric(), 1, name)
	m := f.GetMetric()[0]
	if kind == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestProcessesRestartAKilledWorker(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	st := s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 })
	victim := st.Workers[0].Pid
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))

	st = s.waitStats(t, 15*time.Second, "a new worker in place of the killed one", func(st supervisorStats) bool {
		pids := workerPIDs(st)
		return len(pids) == 2 && !slices.Contains(pids, victim)
	})
	assert.Regexp(t, fmt.Sprintf(`level=ERROR msg="gowsgi: worker died" worker=1 pid=%d status="signal: killed" lived=\S+ restart_in=1s`, victim), s.stderr.String())
	assert.Regexp(t, fmt.Sprintf(`msg="gowsgi: worker restarted" worker=1 pid=%d`, st.Workers[0].Pid), s.stderr.String())
	assert.Equal(t, 1.0, value(t, s.metrics(t), "gowsgi_worker_restarts_total", dto.MetricType_COUNTER))
	for range 10 {
		b, err := body(t, http.DefaultClient, s.url)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(b, "v1 "), b)
	}
}

// busyApp is pidApp taking 10ms per request, so that requests are in
// flight whenever workers are replaced.
func busyApp(version string) string {
	return "import time\n" + strings.Replace(pidApp(version), "    start_response", "    time.sleep(0.01)\n    start_response", 1)
}

// TestProcessesSIGHUPUnderLoad reloads three times while four clients
// send requests without a pause: no request may fail, and each reload
// brings new workers with the new code.
func TestProcessesSIGHUPUnderLoad(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, busyApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	pids := workerPIDs(s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 }))

	var served, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// A connection per request: net/http retries a GET that a reused
	// connection lost, which would hide a worker that dropped requests.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	answer := regexp.MustCompile(`^v\d \d+ $`)
	for range 4 {
		wg.Go(func() {
			for n := 0; n < 20000; n++ { // bounded; stopped long before
				select {
				case <-stop:
					return
				default:
				}
				b, err := body(t, client, s.url)
				if err == nil && answer.MatchString(b) {
					served.Add(1)
					continue
				}
				failed.Add(1)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%q %v", b, err))
				mu.Unlock()
			}
		})
	}
	waitCount := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for served.Load()+failed.Load() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(50) // the load runs
	atFirstSignal := served.Load()
	var gone []int
	for version := 2; version <= 4; version++ {
		old := pids
		// A distinct mtime for each version: a cached .pyc of the same
		// size and second would be taken for the new source.
		writeFile(t, app, busyApp(fmt.Sprintf("v%d", version)), time.Duration(version)*time.Second)
		s.signal(t, syscall.SIGHUP)
		pids = workerPIDs(s.waitStats(t, 20*time.Second, "new workers only", func(st supervisorStats) bool {
			pids := workerPIDs(st)
			return len(pids) == 2 && !slices.Contains(pids, old[0]) && !slices.Contains(pids, old[1])
		}))
		for _, pid := range old {
			s.waitLog(t, 10*time.Second, fmt.Sprintf(`msg="gowsgi: worker exited" worker=\d pid=%d\n`, pid))
		}
		gone = append(gone, old...)
		waitCount(served.Load() + failed.Load() + 30) // the new workers serve
	}
	close(stop)
	wg.Wait()

	t.Logf("%d requests before the first SIGHUP, %d in all, %d failed", atFirstSignal, served.Load(), failed.Load())
	assert.Zero(t, failed.Load(), "failed requests: %v; stderr: %s", failures, s.stderr.String())
	assert.Greater(t, served.Load(), atFirstSignal+90)
	for _, pid := range gone {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "old worker %d is gone", pid)
	}
	b, err := body(t, client, s.url)
	require.NoError(t, err)
	var pid int
	_, err = fmt.Sscanf(b, "v4 %d", &pid)
	require.NoError(t, err, "the newest code serves: %q", b)
	assert.Contains(t, pids, pid)
	assert.Equal(t, 3, strings.Count(s.stderr.String(), `msg="gowsgi: reloaded: the new workers serve, the old ones finish their requests"`))
}

func TestProcessesReloadThatFailsKeepsTheOldWorkers(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	old := workerPIDs(s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 }))

	writeFile(t, app, "raise RuntimeError('broken on purpose')\n", -time.Minute)
	s.signal(t, syscall.SIGHUP)
	s.waitLog(t, 15*time.Second, `level=ERROR msg="gowsgi: reload failed; the old workers keep serving" reason="worker \d \(pid \d+\) ended before it was ready: exit status 1"`)
	assert.Contains(t, s.stderr.String(), "RuntimeError: broken on purpose")
	st, err := s.supervisorStats()
	require.NoError(t, err)
	assert.ElementsMatch(t, old, workerPIDs(st))
	for range 10 {
		b, err := body(t, http.DefaultClient, s.url)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(b, "v1 "), b)
	}

	writeFile(t, app, pidApp("v2"), 0)
	s.signal(t, syscall.SIGHUP)
	s.waitStats(t, 15*time.Second, "new workers once the app loads", func(st supervisorStats) bool {
		pids := workerPIDs(st)
		return len(pids) == 2 && !slices.Contains(pids, old[0]) && !slices.Contains(pids, old[1])
	})
	b, err := body(t, http.DefaultClient, s.url)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(b, "v2 "), b)
}

func TestProcessesSIGTERMDrains(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	app := filepath.Join(dir, "app.py")
	writeFile(t, app, fmt.Sprintf(`import os, time
def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        deadline = time.monotonic() + 30
        while not os.path.exists(%q) and time.monotonic() < deadline:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
`, release), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", "--graceful-timeout", "30s", app)
	s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 })

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		b, err := body(t, http.DefaultClient, s.url+"slow")
		slow <- result{b, err}
	}()
	s.waitStats(t, 10*time.Second, "the slow request in flight", func(st supervisorStats) bool { return st.InFlight == 1 })

	s.signal(t, syscall.SIGTERM)
	// Both workers have been told to stop; the one with the request waits.
	s.waitLog(t, 10*time.Second, `msg="gowsgi: stopping" worker=\d pid=\d+ signal=terminated(?s:.*)msg="gowsgi: stopping" worker=\d pid=\d+ signal=terminated`)
	s.waitLog(t, 10*time.Second, `msg="gowsgi: worker exited"`) // the idle one
	select {
	case <-s.exited:
		t.Fatalf("gowsgi exited with a request in flight; stderr: %s", s.stderr.String())
	default:
	}
	require.NoError(t, os.WriteFile(release, nil, 0o644))
	r := <-slow
	require.NoError(t, r.err)
	assert.Equal(t, "done", r.body)
	assert.Equal(t, 0, s.waitExit(t, 20*time.Second), "stderr: %s", s.stderr.String())
	assert.Equal(t, 2, strings.Count(s.stderr.String(), `msg="gowsgi: worker exited"`))
}

func TestProcessesStatsAddUp(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 })

	// A connection per request, until both workers have served some.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	perPID := map[int]uint64{}
	sent := uint64(0)
	deadline := time.Now().Add(20 * time.Second)
	for len(perPID) < 2 || sent < 20 {
		require.True(t, time.Now().Before(deadline), "requests never reached both workers: %v", perPID)
		b, err := body(t, client, s.url)
		require.NoError(t, err)
		var pid int
		_, err = fmt.Sscanf(b, "v1 %d", &pid)
		require.NoError(t, err, b)
		perPID[pid]++
		sent++
	}

	// A request counts as served once its last bytes are on their way, and
	// in flight until its handler returns: the client can have its body in
	// between.
	st := s.waitStats(t, 5*time.Second, "every request counted and ended", func(st supervisorStats) bool {
		return st.Served == sent && st.InFlight == 0
	})
	require.Len(t, st.Workers, 2)
	var workersServed uint64
	for _, w := range st.Workers {
		assert.Equal(t, perPID[w.Pid], w.Served, "worker %d (pid %d)", w.Worker, w.Pid)
		assert.Positive(t, w.Goroutines)
		workersServed += w.Served
	}
	assert.Equal(t, sent, workersServed)
	require.Len(t, st.Interpreters, 1)
	assert.Equal(t, sent, st.Interpreters[0].Served)
	assert.Equal(t, st.Workers[0].Goroutines+st.Workers[1].Goroutines, st.Goroutines)

	families := s.metrics(t)
	assert.Equal(t, float64(sent), value(t, families, "gowsgi_requests_served_total", dto.MetricType_COUNTER))
	for _, name := range []string{"gowsgi_request_errors_total", "gowsgi_request_timeouts_total", "gowsgi_requests_rejected_total", "gowsgi_queue_wait_seconds_total", "gowsgi_worker_restarts_total"} {
		assert.Zero(t, value(t, families, name, dto.MetricType_COUNTER), name)
	}
	for _, name := range []string{"gowsgi_requests_in_flight", "gowsgi_requests_queued", "gowsgi_requests_stuck"} {
		assert.Zero(t, value(t, families, name, dto.MetricType_GAUGE), name)
	}
	assert.Equal(t, 2.0, value(t, families, "gowsgi_workers", dto.MetricType_GAUGE))
	interp := families["gowsgi_interpreter_requests_served_total"]
	require.NotNil(t, interp)
	require.Len(t, interp.GetMetric(), 1)
	assert.Equal(t, "interpreter", interp.GetMetric()[0].GetLabel()[0].GetName())
	assert.Equal(t, "0", interp.GetMetric()[0].GetLabel()[0].GetValue())
	assert.Equal(t, float64(sent), interp.GetMetric()[0].GetCounter().GetValue())
}

func TestProcessReloadMechanismWithProcesses(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--reload", "--reload-mechanism", "process",
		"--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	old := workerPIDs(s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 }))

	writeFile(t, app, pidApp("v2"), 0)
	// A request finds the change; the supervisor replaces every worker.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := body(t, http.DefaultClient, s.url)
		require.NoError(t, err)
		if strings.HasPrefix(b, "v2 ") {
			break
		}
		require.True(t, time.Now().Before(deadline), "v2 never served; stderr: %s", s.stderr.String())
		time.Sleep(10 * time.Millisecond)
	}
	s.waitStats(t, 10*time.Second, "new workers only", func(st supervisorStats) bool {
		pids := workerPIDs(st)
		return len(pids) == 2 && !slices.Contains(pids, old[0]) && !slices.Contains(pids, old[1])
	})
	assert.Contains(t, s.stderr.String(), "gowsgi: the app changed (--reload-mechanism process): starting new workers")
}

func TestProcessesBadValues(t *testing.T) {
	bin := gowsgiBin(t)
	for _, v := range []string{"0", "-2", "many"} {
		cmd := exec.Command(bin, "--processes", v, "app:app")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, v)
		assert.Equal(t, 2, exit.ExitCode(), v)
		first, _, _ := strings.Cut(stderr.String(), "\n")
		assert.Contains(t, first, "processes", v)
		assert.Contains(t, first, v)
	}
}

func TestProcessesAppThatFailsToLoad(t *testing.T) {
	stderr := runBrokenApp(t, "--processes", "2")
	assert.Contains(t, stderr, `msg="gowsgi: the workers could not start"`)
}

func TestMetricsSingleProcess(t *testing.T) {
	s := startServer(t, "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", "../../examples/hello.py")
	for range 3 {
		b, err := body(t, http.DefaultClient, s.url)
		require.NoError(t, err)
		assert.Equal(t, "Hello, World!\n", b)
	}
	// The JSON keeps its shape, with no workers.
	resp, err := http.Get(s.stats)
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	resp.Body.Close()
	assert.Contains(t, st, "Goroutines")
	assert.Contains(t, st, "Interpreters")
	assert.NotContains(t, st, "Workers")

	// A request leaves the in-flight count when its handler returns,
	// which may be just after its client has read the whole response.
	var families map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		families = s.metrics(t)
		return value(t, families, "gowsgi_requests_in_flight", dto.MetricType_GAUGE) == 0
	}, 10*time.Second, 5*time.Millisecond, "a request stayed in flight")
	assert.Equal(t, 3.0, value(t, families, "gowsgi_requests_served_total", dto.MetricType_COUNTER))
	assert.NotContains(t, families, "gowsgi_workers")
	assert.Contains(t, families, "gowsgi_interpreter_requests_running")
}

// TestEveryStatHasAMetric fails when wsgi.Stats or wsgi.InterpreterStats
// gains a number that /metrics does not expose: add its line to
// handlerMetrics or interpreterMetrics in metrics.go.
func TestEveryStatHasAMetric(t *testing.T) {
	names := map[string]bool{}
	check := func(typ reflect.Type, table []statMetric, where string) {
		listed := map[string]bool{}
		for _, m := range table {
			listed[m.field] = true
			f, ok := typ.FieldByName(m.field)
			if !assert.True(t, ok, "%s names %s.%s, which does not exist", where, typ, m.field) {
				continue
			}
			_, numeric := fieldValue(reflect.New(typ).Elem(), m.field)
			assert.True(t, numeric, "%s.%s is not a number", typ, m.field)
			assert.False(t, names[m.name], "%s twice", m.name)
			names[m.name] = true
			assert.True(t, strings.HasPrefix(m.name, "gowsgi_"), m.name)
			assert.Equal(t, m.kind == counter, strings.HasSuffix(m.name, "_total"), "%s: counters, and only they, end in _total", m.name)
			if f.Type == reflect.TypeFor[time.Duration]() {
				assert.Contains(t, m.name, "_seconds", "%s: durations are in seconds", m.name)
			}
			assert.NotEmpty(t, m.help, m.name)
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			if _, numeric := fieldValue(reflect.New(typ).Elem(), f.Name); numeric && f.IsExported() && !identifiers[f.Name] {
				assert.True(t, listed[f.Name], "%s.%s has no metric: add a line for it to %s in metrics.go", typ, f.Name, where)
			}
		}
	}
	check(reflect.TypeFor[wsgi.Stats](), handlerMetrics, "handlerMetrics")
	check(reflect.TypeFor[wsgi.InterpreterStats](), interpreterMetrics, "interpreterMetrics")
}

func TestAddStats(t *testing.T) {
	a := wsgi.Stats{InFlight: 1, Served: 10, QueueWait: time.Second,
		Interpreters: []wsgi.InterpreterStats{{Running: 1, Served: 10, QueueWait: time.Second}}}
	b := wsgi.Stats{InFlight: 2, Served: 5, Errors: 1, QueueWait: time.Millisecond,
		Interpreters: []wsgi.InterpreterStats{{Running: 2, Served: 4}, {Running: 1, Served: 1}}}

	var sum wsgi.Stats
	addStats(&sum, &a, false)
	addStats(&sum, &b, false)
	assert.Equal(t, wsgi.Stats{InFlight: 3, Served: 15, Errors: 1, QueueWait: time.Second + time.Millisecond,
		Interpreters: []wsgi.InterpreterStats{{Running: 3, Served: 14, QueueWait: time.Second}, {Running: 1, Served: 1}}}, sum)
	assert.Equal(t, uint64(10), a.Interpreters[0].Served, "the sources are not changed")

	var counters wsgi.Stats
	addStats(&counters, &b, true)
	assert.Equal(t, wsgi.Stats{Served: 5, Errors: 1, QueueWait: time.Millisecond,
		Interpreters: []wsgi.InterpreterStats{{Served: 4}, {Served: 1}}}, counters, "gauges are left out")
}

func TestProcessesOnAUnixSocket(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	sock := filepath.Join(dir, "app.sock")
	s := startServer(t, "--processes", "2", "--bind", "unix:"+sock, "--stats-addr", "127.0.0.1:0", app)
	assert.Equal(t, "unix:"+sock, s.url)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	old := workerPIDs(s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 }))
	s.signal(t, syscall.SIGHUP)
	s.waitStats(t, 15*time.Second, "new workers only", func(st supervisorStats) bool {
		pids := workerPIDs(st)
		return len(pids) == 2 && !slices.Contains(pids, old[0]) && !slices.Contains(pids, old[1])
	})
	for _, pid := range old {
		s.waitLog(t, 10*time.Second, fmt.Sprintf(`msg="gowsgi: worker exited" worker=\d pid=%d\n`, pid))
	}
	// The old workers' exit left the socket file to the supervisor.
	b, err := body(t, client, "http://gowsgi/")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(b, "v1 "), b)

	s.signal(t, syscall.SIGTERM)
	assert.Equal(t, 0, s.waitExit(t, 20*time.Second))
	_, err = os.Stat(sock)
	assert.ErrorIs(t, err, os.ErrNotExist, "the supervisor removes the socket file when it ends")
}
