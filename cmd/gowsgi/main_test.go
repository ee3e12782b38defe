package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
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
	"golang.org/x/sys/unix"
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

var (
	binDir  string // removed when the tests end
	binOnce sync.Once
	binErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gowsgi-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gowsgiBin builds the command, once for all the tests that run it.
func gowsgiBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "gowsgi")
	binOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
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
	url := regexp.MustCompile(`(https?://|unix:)\S+`).FindString(line)
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

// runBrokenApp runs the command with args on an app whose import fails,
// checks that it exits with status 1 after a traceback naming the failure,
// and returns its standard error.
func runBrokenApp(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.py"), []byte("import no_such_module_xyz\n"), 0o644))
	args = append(args, "--bind", "127.0.0.1:0", "--pythonpath", dir, "broken:application")
	cmd := exec.Command(gowsgiBin(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, stderr.String(), `load "broken:application": ModuleNotFoundError`)
	assert.Contains(t, stderr.String(), "Traceback (most recent call last)")
	return stderr.String()
}

func TestBadAppExitsWithTraceback(t *testing.T) {
	stderr := runBrokenApp(t)
	first, _, _ := strings.Cut(stderr, "\n")
	assert.Contains(t, first, `load "broken:application": ModuleNotFoundError`, "the failure comes first")
}

// TestMismatchedPythonIsRefused: a program compiled with one Python's
// headers and linked with another's library would crash later; it must
// refuse to start and say why. The easy way to get one is to set
// PKG_CONFIG_PATH for go build but not for scripts/static-ldflags.sh.
// scripts/test.sh names another Python in GOWSGI_TEST_OTHER_PYTHON (a
// prefix whose minor version differs from pkg-config's default) in the
// pass that links statically.
func TestMismatchedPythonIsRefused(t *testing.T) {
	other := os.Getenv("GOWSGI_TEST_OTHER_PYTHON")
	if other == "" {
		t.Skip("GOWSGI_TEST_OTHER_PYTHON is not set")
	}
	static, err := exec.Command("../../scripts/static-ldflags.sh").Output()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "gowsgi-mismatched")
	build := exec.Command("go", "build", "-o", bin, ".")
	// The rpath also makes the cgo packages' build differ from the
	// cached one: the go build cache does not hash PKG_CONFIG_PATH.
	build.Env = append(os.Environ(), "PKG_CONFIG_PATH="+filepath.Join(other, "lib", "pkgconfig"),
		"CGO_LDFLAGS="+strings.TrimSpace(string(static))+" -Wl,-rpath,"+filepath.Join(other, "lib"))
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	// Started, it would serve until killed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--bind", "127.0.0.1:0", "../../examples/hello.py")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	require.NoError(t, ctx.Err(), "it started and served: %s", stderr.String())
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", stderr.String())
	assert.Equal(t, 1, exit.ExitCode())
	assert.Regexp(t, `compiled with the headers of Python 3\.\d+\.\d+ but running Python 3\.\d+`, stderr.String())
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
	assert.Equal(t, 1, run([]string{"--python-cpus", "1048576", "app:app"}, &stdout, &stderr), "NewHandler refuses it")
	assert.Contains(t, stderr.String(), "WithPythonCPUs(1048576): CPU 1048576 is not one this process may run on")
	stdout.Reset()
	stderr.Reset()
	assert.Zero(t, run([]string{"--version"}, &stdout, &stderr))
	assert.True(t, strings.HasPrefix(stdout.String(), "gowsgi "))
	// How CPython is linked (scripts/test.sh says which in GOWSGI_TEST_STATIC).
	if s := os.Getenv("GOWSGI_TEST_STATIC"); s != "" {
		want := map[string]string{"0": "(CPython from a shared libpython)", "1": "(CPython linked statically)"}[s]
		assert.Contains(t, stdout.String(), want, "GOWSGI_TEST_STATIC=%s", s)
	}
}

// --python-cpus: a list, or auto; a worker of --processes starts further
// along it, by its slot times the interpreters of a process.
func TestPythonCPUsFlag(t *testing.T) {
	c := &config{pythonCPUs: "3, 1,2", interpreter: "sub"}
	cpus, err := c.cpus()
	require.NoError(t, err)
	assert.Equal(t, []int{3, 1, 2}, cpus)
	c.slot = 2
	cpus, _ = c.cpus()
	assert.Equal(t, []int{1, 2, 3}, cpus, "the second worker starts one further")
	c.interpreter, c.interpreters = "isolated", 2
	cpus, _ = c.cpus()
	assert.Equal(t, []int{2, 3, 1}, cpus, "two interpreters a worker: two further")

	var set unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(os.Getpid(), &set))
	var want []int
	for i := len(set)*64 - 1; i >= 0; i-- {
		if set.IsSet(i) {
			want = append(want, i)
		}
	}
	cpus, err = (&config{pythonCPUs: "auto"}).cpus()
	require.NoError(t, err)
	assert.Equal(t, want, cpus, "auto: the CPUs this process may use, the last first")

	_, err = (&config{pythonCPUs: "one"}).cpus()
	assert.ErrorContains(t, err, `--python-cpus "one": give auto, or CPU numbers`)
}

// pidApp is an app that answers with its version and the process ID, so a
// test can see which process served it.
func pidApp(version string) string {
	return fmt.Sprintf(`import os
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s %%d %%s" %% (os.getpid(), environ.get("X_TEST", "").encode())]
`, version)
}

func writeFile(t *testing.T, path, body string, age time.Duration) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	stamp := time.Now().Add(age)
	require.NoError(t, os.Chtimes(path, stamp, stamp))
}

func body(t *testing.T, client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestSIGHUPReloads(t *testing.T) {
	bin := gowsgiBin(t)
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	cmd, url, stderr := start(t, bin, "--bind", "127.0.0.1:0", app)
	b, err := body(t, http.DefaultClient, url)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(b, "v1 "), b)

	writeFile(t, app, pidApp("v2"), 0)
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		b, _ := body(t, http.DefaultClient, url)
		return strings.HasPrefix(b, "v2 ")
	}, 10*time.Second, 20*time.Millisecond, "SIGHUP did not reload; stderr: %s", stderr.String())
}

func TestFlagsReachTheLibrary(t *testing.T) {
	bin := gowsgiBin(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	logPath := filepath.Join(dir, "access.log")
	sock := filepath.Join(dir, "app.sock")
	_, url, _ := start(t, bin, "--bind", "unix:"+sock, "--access-log", logPath,
		"--var", "X_TEST=from $request_method", "--max-request-body", "10", app)
	assert.Equal(t, "unix:"+sock, url)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	b, err := body(t, client, "http://gowsgi/")
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(b, " from GET"), "--var: %q", b)

	resp, err := client.Post("http://gowsgi/", "text/plain", strings.NewReader(strings.Repeat("x", 11)))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 413, resp.StatusCode, "--max-request-body")

	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "\n") >= 2
	}, 5*time.Second, 20*time.Millisecond)
	logged, _ := os.ReadFile(logPath)
	assert.Regexp(t, `(?m)^\S+ - - \[[^]]+\] "GET / HTTP/1.1" 200 \d+ "-" "Go-http-client/1.1" \d+-\d+$`, string(logged))
	assert.Contains(t, string(logged), `"POST / HTTP/1.1" 413`)
}

func TestTLSAndHTTP2(t *testing.T) {
	bin := gowsgiBin(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	_, url, _ := start(t, bin, "--bind", "127.0.0.1:0", "--certfile", cert, "--keyfile", key, "../../examples/hello.py")
	require.True(t, strings.HasPrefix(url, "https://"), url)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "Hello, World!\n", string(b))
	assert.Equal(t, "HTTP/2.0", resp.Proto)
}

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gowsgi test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certPath, keyPath
}

// TestProcessReloadKeepsServing changes the app under load with
// --reload-mechanism process: a new process takes over the socket, the
// old one finishes its requests and exits, and no request fails.
func TestProcessReloadKeepsServing(t *testing.T) {
	bin := gowsgiBin(t)
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	cmd, url, stderr := start(t, bin, "--bind", "127.0.0.1:0", "--reload", "--reload-mechanism", "process", app)
	first, err := body(t, http.DefaultClient, url)
	require.NoError(t, err)

	var newPID int
	t.Cleanup(func() {
		if newPID != 0 {
			syscall.Kill(newPID, syscall.SIGTERM)
		}
	})
	// The new process inherits the output pipes, so wait for the old
	// process itself, not for its output to end.
	oldDone := make(chan error, 1)
	go func() {
		st, err := cmd.Process.Wait()
		if err == nil && !st.Success() {
			err = fmt.Errorf("exit status %v", st)
		}
		oldDone <- err
	}()

	writeFile(t, app, pidApp("v2"), 0)
	failures := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, err := body(t, http.DefaultClient, url)
		if err != nil {
			failures++
			continue
		}
		if strings.HasPrefix(b, "v2 ") {
			fmt.Sscanf(b, "v2 %d", &newPID)
			break
		}
	}
	require.NotZero(t, newPID, "the new process never answered; stderr: %s", stderr.String())
	assert.NotEqual(t, first, fmt.Sprintf("v1 %d ", newPID))
	for range 20 {
		_, err := body(t, http.DefaultClient, url)
		if err != nil {
			failures++
		}
	}
	assert.Zero(t, failures, "no request may fail while the process is replaced")
	select {
	case err := <-oldDone:
		assert.NoError(t, err, "the old process exits cleanly")
	case <-time.After(20 * time.Second):
		t.Fatal("the old process did not exit")
	}
}

// --send-timeout reaches the library: a client that stops reading a long
// response is cut soon after it, with the app's close() run.
func TestSendTimeoutFlag(t *testing.T) {
	bin := gowsgiBin(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	marker := filepath.Join(dir, "closed")
	writeFile(t, app, fmt.Sprintf(`class Body:
    def __iter__(self):
        for _ in range(400):
            yield b"x" * 65536
    def close(self):
        open(%q, "w").close()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Body()
`, marker), -time.Hour)
	_, url, _ := start(t, bin, "--bind", "127.0.0.1:0", "--send-timeout", "300ms", app)
	conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := os.Stat(marker)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the stalled client was not cut, or close() did not run")
}
