package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe to read while the command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gowsgiBin builds the command once for the tests that run it.
func gowsgiBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gowsgi")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// start runs the command and returns it with the URL it printed.
func start(t *testing.T, bin string, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, stderr.String())
	url := regexp.MustCompile(`http://\S+`).FindString(line)
	require.NotEmpty(t, url, line)
	go io.Copy(io.Discard, stdout)
	return cmd, url, stderr
}

func TestServeAndStopOnSIGTERM(t *testing.T) {
	bin := gowsgiBin(t)
	cmd, url, stderr := start(t, bin, "--bind", "127.0.0.1:0", "../../examples/hello.py")

	resp, err := http.Get(url)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "Hello, World!\n", string(body))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "a clean exit after SIGTERM; stderr: %s", stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("gowsgi did not exit after SIGTERM")
	}
	assert.Contains(t, stderr.String(), "stopping")
}

func TestBadAppExitsWithTraceback(t *testing.T) {
	bin := gowsgiBin(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.py"), []byte("import no_such_module_xyz\n"), 0o644))
	cmd := exec.Command(bin, "--pythonpath", dir, "broken:application")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 1, exit.ExitCode())
	lines := strings.SplitN(stderr.String(), "\n", 2)
	assert.Contains(t, lines[0], `load "broken:application": ModuleNotFoundError`)
	assert.Contains(t, stderr.String(), "Traceback (most recent call last)")
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--interpreter", "bogus", "app:app"},
		{"--log-level", "loud", "app:app"},
		{"--threads", "0", "app:app"},
		{"--no-such-flag", "app:app"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		assert.NotZero(t, code, "%v", args)
		assert.NotEmpty(t, stderr.String(), "%v", args)
	}
	var stdout, stderr bytes.Buffer
	assert.Zero(t, run([]string{"--version"}, &stdout, &stderr))
	assert.True(t, strings.HasPrefix(stdout.String(), "gowsgi "))
}
