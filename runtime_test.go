package wsgi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
)

// The process-wide settings (WithPythonOptimize, WithPythonExecutable,
// WithPythonHome) apply when Python starts, so each case runs in a fresh
// process: this test binary again, running only TestRuntimeChild.

type sysinfo struct {
	Executable string  `json:"executable"`
	Prefix     string  `json:"prefix"`
	BasePrefix string  `json:"base_prefix"`
	Optimize   int     `json:"optimize"`
	AssertsRun bool    `json:"asserts_run"`
	Docstring  *string `json:"docstring"`
	Version    string  `json:"version"`
	Probe      *string `json:"probe"`
}

func querySysinfo(t testing.TB, h http.Handler) sysinfo {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, 200, rec.Code, rec.Body.String())
	var info sysinfo
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &info))
	return info
}

// TestRuntimeChild is the child's side: it reads its options from the
// environment, starts Python with them and prints what Python reports.
func TestRuntimeChild(t *testing.T) {
	if os.Getenv("GOWSGI_CHILD") == "" {
		t.Skip("run by TestRuntimeSettings in a fresh process")
	}
	var opts []wsgi.Option
	if v := os.Getenv("GOWSGI_CHILD_OPTIMIZE"); v != "" {
		opts = append(opts, wsgi.WithPythonOptimize(int(v[0]-'0')))
	}
	if v := os.Getenv("GOWSGI_CHILD_EXECUTABLE"); v != "" {
		opts = append(opts, wsgi.WithPythonExecutable(v))
	}
	if v := os.Getenv("GOWSGI_CHILD_HOME"); v != "" {
		opts = append(opts, wsgi.WithPythonHome(v))
	}
	h, err := wsgi.NewHandler(append(opts, wsgi.WithApp(testdata(t, "sysinfo.py")))...)
	require.NoError(t, err)
	info := querySysinfo(t, h)
	out, _ := json.Marshal(info)
	os.Stdout.Write(append([]byte("SYSINFO "), append(out, '\n')...))

	// A second handler asking for other process-wide values is refused,
	// naming the value in force.
	_, err = wsgi.NewHandler(wsgi.WithApp(testdata(t, "sysinfo.py")), wsgi.WithPythonOptimize((info.Optimize+1)%3))
	require.ErrorContains(t, err, "WithPythonOptimize")
	require.ErrorContains(t, err, "already runs with optimize level")
	_, err = wsgi.NewHandler(wsgi.WithApp(testdata(t, "sysinfo.py")), wsgi.WithPythonOptimize(info.Optimize))
	require.NoError(t, err, "asking for the value in force is fine")
}

func runChild(t *testing.T, env ...string) sysinfo {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRuntimeChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, "GOWSGI_CHILD=1")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "SYSINFO "); ok {
			var info sysinfo
			require.NoError(t, json.Unmarshal([]byte(rest), &info))
			return info
		}
	}
	t.Fatalf("no SYSINFO line in:\n%s", out)
	return sysinfo{}
}

func TestRuntimeSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python in child processes")
	}
	def := runChild(t)
	assert.Equal(t, 0, def.Optimize)
	assert.True(t, def.AssertsRun)
	assert.True(t, strings.HasPrefix(filepath.Base(def.Executable), "python"),
		"sys.executable names a Python, not the Go program: %s", def.Executable)

	t.Run("optimize", func(t *testing.T) {
		for level, asserts := range map[string]bool{"1": false, "2": false} {
			info := runChild(t, "GOWSGI_CHILD_OPTIMIZE="+level)
			assert.Equal(t, int(level[0]-'0'), info.Optimize)
			assert.Equal(t, asserts, info.AssertsRun, "assert statements are skipped")
			if level == "2" {
				assert.Nil(t, info.Docstring, "-OO drops docstrings")
			} else {
				assert.NotNil(t, info.Docstring)
			}
		}
	})

	t.Run("virtualenv", func(t *testing.T) {
		python := def.Executable
		venv := filepath.Join(t.TempDir(), "venv")
		out, err := exec.Command(python, "-m", "venv", "--without-pip", venv).CombinedOutput()
		if err != nil {
			t.Skipf("%s cannot make a virtualenv (Debian: apt-get install python3-venv): %s", python, out)
		}
		site := filepath.Join(venv, "lib", "python"+def.Version, "site-packages")
		require.NoError(t, os.CopyFS(filepath.Join(site, "gowsgi_venv_probe"), os.DirFS(testdata(t, "venvpkg/gowsgi_venv_probe"))))

		info := runChild(t, "GOWSGI_CHILD_EXECUTABLE="+filepath.Join(venv, "bin", "python"))
		assert.Equal(t, filepath.Join(venv, "bin", "python"), info.Executable)
		assert.Equal(t, venv, info.Prefix, "the virtualenv is sys.prefix")
		require.NotNil(t, info.Probe, "the virtualenv's site-packages are importable")
		assert.Equal(t, filepath.Join(site, "gowsgi_venv_probe"), *info.Probe)
		assert.Nil(t, def.Probe, "and not without it")
	})

	t.Run("home", func(t *testing.T) {
		info := runChild(t, "GOWSGI_CHILD_HOME="+def.BasePrefix)
		assert.Equal(t, def.BasePrefix, info.BasePrefix)
	})

	t.Run("bad values", func(t *testing.T) {
		for _, opt := range []wsgi.Option{
			wsgi.WithPythonOptimize(3), wsgi.WithPythonExecutable("/no/such/python"),
			wsgi.WithPythonHome("/no/such/home"), wsgi.WithPythonExecutable(t.TempDir()),
		} {
			_, err := wsgi.NewHandler(wsgi.WithApp("x"), opt)
			require.Error(t, err)
			assert.Regexp(t, `^wsgi: WithPython(Optimize|Executable|Home)\(`, err.Error())
		}
	})
}

// TestLinkedPython: scripts/test.sh and scripts/test-forky.sh build the
// suite against several Pythons and set GOWSGI_TEST_PYTHON to the version
// each build was meant to link. The go build cache does not hash what
// pkg-config says, so a build of another version can be reused silently;
// this is where that would show.
func TestLinkedPython(t *testing.T) {
	want := os.Getenv("GOWSGI_TEST_PYTHON")
	if want == "" {
		t.Skip("GOWSGI_TEST_PYTHON is not set")
	}
	newHandler(t, "application") // Python is running from here on
	got := wsgi.PythonVersion()
	assert.True(t, got == want || strings.HasPrefix(got, want+"."),
		"built for Python %s, running Python %s", want, got)
	// scripts/test.sh runs the suite once more with CPython linked in
	// statically, and says so in GOWSGI_TEST_STATIC.
	if s := os.Getenv("GOWSGI_TEST_STATIC"); s != "" {
		assert.Equal(t, s == "1", wsgi.PythonLinkedStatically(), "GOWSGI_TEST_STATIC=%s", s)
	}
}

// TestExtensionModules: C extension modules import and work, those built
// into libpython and those in lib-dynload, which take the C API from
// whatever loaded them. Linked statically, that is the program itself, which
// must export Python's symbols (scripts/static-ldflags.sh); without that
// every shared module fails with "undefined symbol".
func TestExtensionModules(t *testing.T) {
	h, err := wsgi.NewHandler(wsgi.WithApp(testdata(t, "extmods.py")))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	var got map[string]string
	getJSON(t, serve(t, h), "/", &got)
	t.Logf("Python %s, linked statically: %v", wsgi.PythonVersion(), wsgi.PythonLinkedStatically())
	ok := 0
	for mod, res := range got {
		switch res {
		case "ok":
			ok++
		case "absent":
			t.Logf("%s: not built into this Python", mod)
		default:
			t.Errorf("%s: %s", mod, res)
		}
	}
	// _json, _struct and zlib are in every Python these tests run on.
	for _, mod := range []string{"_json", "_struct", "zlib"} {
		assert.Equal(t, "ok", got[mod], mod)
	}
	assert.GreaterOrEqual(t, ok, 10, "%v", got)
}
