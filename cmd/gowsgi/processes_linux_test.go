package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// running reports whether pid is a process that has not exited (a zombie
// waiting for its new parent to reap it has).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

func TestWorkersStopWhenTheSupervisorDies(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0", app)
	pids := workerPIDs(s.waitStats(t, 10*time.Second, "two workers", func(st supervisorStats) bool { return len(st.Workers) == 2 }))
	for _, pid := range pids {
		require.True(t, running(pid))
	}

	require.NoError(t, s.cmd.Process.Kill()) // the supervisor alone, not its process group
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range pids {
		for running(pid) {
			require.True(t, time.Now().Before(deadline), "worker %d still runs without its supervisor; stderr: %s", pid, s.stderr.String())
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Each worker stopped the usual way: told by Pdeathsig's SIGTERM, or by
	// the end of its channel to the supervisor, whichever came first.
	for _, pid := range pids {
		assert.Regexp(t, regexp.MustCompile(`msg="gowsgi: (stopping|the supervisor is gone; stopping)" worker=\d pid=`+strconv.Itoa(pid)+`\b`), s.stderr.String())
	}
}
