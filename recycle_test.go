package wsgi_test

// Recycling: a closed handler's sub-interpreter is cleaned and handed to
// the next handler. These tests go through real HTTP and real Python; they
// run one after the other (no t.Parallel), so the pool's order (the
// interpreter closed last is taken first) tells which interpreter a new
// handler gets.

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
	"github.com/gowsgi/wsgi/internal/procstatus"
)

// recycleApp is the path of an app of testdata/recycle.
func recycleApp(t testing.TB, name string) string {
	abs, err := filepath.Abs(filepath.Join("testdata", "recycle", name))
	require.NoError(t, err)
	return abs
}

// interpOf returns the figures of h's (only) interpreter.
func interpOf(t testing.TB, h *wsgi.Handler) wsgi.InterpreterStats {
	st := h.Stats()
	require.Len(t, st.Interpreters, 1)
	return st.Interpreters[0]
}

// firstReport is what testdata/recycle/first.py reports.
type firstReport struct {
	Loaded            int64
	State             *string
	Thing             string
	Helper            string
	Builtin           bool
	Argv              []string
	PathProbe         bool `json:"path_probe"`
	RecursionLimit    int
	RootHandlers      []string `json:"root_handlers"`
	RootLevel         string   `json:"root_level"`
	WarningFilter     bool     `json:"warning_filter"`
	Executable        string
	DontWriteBytecode bool   `json:"dont_write_bytecode"`
	Env               string `json:"env"`
	ThreadAttr        bool   `json:"thread_attr"`
	Modules           []string
}

func getFirst(t *testing.T, srv *httptest.Server, path string) firstReport {
	t.Helper()
	var r firstReport
	getJSON(t, srv, path, &r)
	return r
}

// TestRecycledInterpreterIsFresh: what an app changed in its interpreter is
// gone for the next handler, which gets the same interpreter, cleaned, and
// reports to its own logger.
func TestRecycledInterpreterIsFresh(t *testing.T) {
	t.Setenv("GOWSGI_RECYCLE_ENV", "first")
	sink1 := &logSink{}
	h1, err := wsgi.NewHandler(wsgi.WithApp(recycleApp(t, "first.py")), wsgi.WithLogger(slogFor(sink1)),
		wsgi.WithScriptReloading(true)) // sets sys.dont_write_bytecode
	require.NoError(t, err)
	srv1 := serve(t, h1)
	before := getFirst(t, srv1, "/")
	assert.True(t, before.DontWriteBytecode, "WithScriptReloading compiles from source")
	assert.Equal(t, "first", before.Env)
	changed := getFirst(t, srv1, "/change")
	require.Equal(t, "changed", *changed.State)
	require.Equal(t, "changed", changed.Thing)
	require.True(t, changed.Builtin && changed.PathProbe && changed.WarningFilter && changed.ThreadAttr)
	require.Equal(t, 4321, changed.RecursionLimit)
	require.Contains(t, changed.RootHandlers, "_Probe")
	get(t, srv1, "/errors?one")
	id := interpOf(t, h1).ID
	srv1.Close()
	before0 := wsgi.Recycling()
	require.NoError(t, h1.Close())
	after0 := wsgi.Recycling()
	assert.Equal(t, before0.Recycled+1, after0.Recycled, "%+v", after0)
	assert.Equal(t, before0.Abandoned, after0.Abandoned, "%+v", after0)

	// The same app again, with the environment changed since: a new
	// handler, in the same interpreter.
	t.Setenv("GOWSGI_RECYCLE_ENV", "second")
	sink2 := &logSink{}
	h2, err := wsgi.NewHandler(wsgi.WithApp(recycleApp(t, "first.py")), wsgi.WithLogger(slogFor(sink2)))
	require.NoError(t, err)
	t.Cleanup(func() { h2.Close() })
	is := interpOf(t, h2)
	assert.True(t, is.Recycled, "the interpreter closed last is reused")
	assert.Equal(t, id, is.ID)
	srv2 := serve(t, h2)
	again := getFirst(t, srv2, "/")
	assert.Greater(t, again.Loaded, before.Loaded, "the app's module-level code ran again")
	assert.Nil(t, again.State, "a module global is fresh")
	assert.Equal(t, "class default", again.Thing, "a class attribute is fresh")
	assert.Equal(t, "helper default", again.Helper, "the app's other modules are fresh")
	assert.False(t, again.Builtin, "builtins are put back")
	assert.Equal(t, before.Argv, again.Argv, "sys.argv is put back")
	assert.False(t, again.PathProbe, "sys.path is put back")
	assert.Equal(t, before.RecursionLimit, again.RecursionLimit)
	assert.Equal(t, before.RootHandlers, again.RootHandlers, "the root logger's handlers are put back")
	assert.Equal(t, before.RootLevel, again.RootLevel)
	assert.False(t, again.WarningFilter, "warnings filters are put back")
	assert.Equal(t, before.Executable, again.Executable, "sys.executable is put back")
	assert.False(t, again.DontWriteBytecode, "sys.dont_write_bytecode is put back")
	assert.False(t, again.ThreadAttr, "the thread objects are put back")
	assert.Equal(t, "second", again.Env, "os.environ is read again from the process")

	// wsgi.errors reports to the handler that now has the interpreter.
	get(t, srv2, "/errors?two")
	assert.Equal(t, []string{"a line from one"}, lines(sink1.find("wsgi.errors")))
	assert.Equal(t, []string{"a line from two"}, lines(sink2.find("wsgi.errors")))
	srv2.Close()
	require.NoError(t, h2.Close())

	// Another app in it sees no module of the first.
	h3, err := wsgi.NewHandler(wsgi.WithApp(recycleApp(t, "other.py")))
	require.NoError(t, err)
	t.Cleanup(func() { h3.Close() })
	assert.Equal(t, id, interpOf(t, h3).ID)
	var modules []string
	getJSON(t, serve(t, h3), "/", &modules)
	for _, m := range modules {
		assert.NotContains(t, m, "first", "a module of the first app is left: %s", m)
		assert.NotContains(t, m, "recycle_helper")
	}
	assert.True(t, slices.ContainsFunc(modules, func(m string) bool { return strings.Contains(m, "other") }), "%v", modules)
}

func lines(recs []map[string]string) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r["line"])
	}
	return out
}

// closeAbandoned has a handler of first.py serve path, closes it, and
// checks that its interpreter was left alive rather than recycled, with one
// record logged saying why, and that the next handler gets another
// interpreter. It returns that record and the next handler.
func closeAbandoned(t *testing.T, path, why string) (map[string]string, *wsgi.Handler) {
	t.Helper()
	sink := &logSink{}
	h, err := wsgi.NewHandler(wsgi.WithApp(recycleApp(t, "first.py")), wsgi.WithLogger(slogFor(sink)))
	require.NoError(t, err)
	get(t, serve(t, h), path)
	id := interpOf(t, h).ID
	before := wsgi.Recycling()
	require.NoError(t, h.Close())
	after := wsgi.Recycling()
	assert.Equal(t, before.Abandoned+1, after.Abandoned, "%+v", after)
	assert.Equal(t, before.Recycled, after.Recycled, "%+v", after)
	recs := sink.find(why)
	require.Len(t, recs, 1)

	next, err := wsgi.NewHandler(wsgi.WithApp(recycleApp(t, "first.py")))
	require.NoError(t, err)
	t.Cleanup(func() { next.Close() })
	assert.NotEqual(t, id, interpOf(t, next).ID, "the interpreter left alive is not handed on")
	return recs[0], next
}

// TestNotRecycledWithThreads: an interpreter whose app still runs a thread
// is left alive, and the next handler gets another one.
func TestNotRecycledWithThreads(t *testing.T) {
	rec, next := closeAbandoned(t, "/thread?30", "threads the app started are still running")
	assert.Contains(t, rec["threads"], "recycle-sleeper")
	var r firstReport
	getJSON(t, serve(t, next), "/", &r)
	assert.Nil(t, r.State)
}

// TestNotRecycledWhenCleaningFails: an app that breaks the cleaning leaves
// its interpreter alive, and the failure is logged.
func TestNotRecycledWhenCleaningFails(t *testing.T) {
	rec, _ := closeAbandoned(t, "/break-cleaning", "cleaning the interpreter for the next handler failed")
	assert.Contains(t, rec["error"], "the app broke the cleaning")
}

// TestConcurrentHandlersNeverShare: handlers alive at once have distinct
// interpreters, recycled or not, and keep their own module state.
func TestConcurrentHandlersNeverShare(t *testing.T) {
	const n = 4
	var hs []*wsgi.Handler
	ids := map[int64]bool{}
	for i := range n {
		h, _ := newHandler(t, "application")
		hs = append(hs, h)
		ids[interpOf(t, h).ID] = true
		getJSON(t, serve(t, h), fmt.Sprintf("/module-state?set=%d", i), new(any))
	}
	assert.Len(t, ids, n)
	for i, h := range hs {
		var st struct{ State string }
		getJSON(t, serve(t, h), "/module-state", &st)
		assert.Equal(t, fmt.Sprint(i), st.State)
	}
}

// TestPoolBound: at most SetMaxIdleInterpreters cleaned interpreters are
// kept; 0 turns recycling off.
func TestPoolBound(t *testing.T) {
	prev := wsgi.SetMaxIdleInterpreters(1)
	t.Cleanup(func() { wsgi.SetMaxIdleInterpreters(prev) })
	require.LessOrEqual(t, wsgi.Recycling().Idle, 1, "lowering the bound leaves no more idle")

	open := func(n int) []*wsgi.Handler {
		var hs []*wsgi.Handler
		for range n {
			h, err := wsgi.NewHandler(wsgi.WithApp(testdata(t, "hello.py")), wsgi.WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			hs = append(hs, h)
		}
		return hs
	}
	hs := open(3)
	before := wsgi.Recycling()
	assert.Zero(t, before.Idle, "the idle one went to the first of them")
	for _, h := range hs {
		require.NoError(t, h.Close())
	}
	after := wsgi.Recycling()
	assert.Equal(t, 1, after.Idle)
	assert.Equal(t, before.Recycled+1, after.Recycled, "%+v", after)
	assert.Equal(t, before.Abandoned+2, after.Abandoned, "the pool was full for two: %+v", after)

	wsgi.SetMaxIdleInterpreters(0)
	assert.Zero(t, wsgi.Recycling().Idle)
	assert.Equal(t, after.Abandoned+1, wsgi.Recycling().Abandoned, "the idle one is dropped from the pool")
	hs = open(1)
	assert.False(t, interpOf(t, hs[0]).Recycled)
	before = wsgi.Recycling()
	require.NoError(t, hs[0].Close())
	assert.Equal(t, before.Abandoned+1, wsgi.Recycling().Abandoned, "recycling is off")
	assert.Zero(t, wsgi.Recycling().Idle)
}

// TestReloadInterpreterRecycles: ReloadInterpreter takes a cleaned
// interpreter and gives the old one back, so reloading in a loop creates no
// more interpreters and keeps the memory flat.
func TestReloadInterpreterRecycles(t *testing.T) {
	h, _ := newHandler(t, "application", wsgi.WithReloadMechanism(wsgi.ReloadInterpreter))
	srv := serve(t, h)
	getJSON(t, srv, "/module-state?set=before", new(any))
	const reloads = 50
	start := wsgi.Recycling()
	var warm int64
	for i := 1; i <= reloads; i++ {
		kept := wsgi.Recycling().Recycled
		require.NoError(t, h.Reload())
		// The old interpreter is cleaned in the background, once the
		// requests on it are done.
		eventually(t, func() bool { return wsgi.Recycling().Recycled > kept }, "the retired interpreter was not recycled")
		var st struct{ State *string }
		getJSON(t, srv, "/module-state", &st)
		require.Nil(t, st.State, "a reload loads the app afresh")
		if i == 5 {
			warm = procstatus.Settled(t).RSS
		}
	}
	all := procstatus.Settled(t).RSS
	end := wsgi.Recycling()
	t.Logf("RSS %.1f MiB after 5 reloads, %.1f MiB after %d; %+v", float64(warm)/mib, float64(all)/mib, reloads, end)
	assert.LessOrEqual(t, end.Created-start.Created, uint64(1), "%+v", end)
	assert.GreaterOrEqual(t, end.Reused-start.Reused, uint64(reloads-1), "%+v", end)
	assert.Less(t, all-warm, int64(48*mib))
}

// TestOwnGILAndMainNotRecycled: the main interpreter and own-GIL ones keep
// their behaviour: not counted, never pooled.
func TestOwnGILAndMainNotRecycled(t *testing.T) {
	before := wsgi.Recycling()
	h, err := wsgi.NewHandler(wsgi.WithApp(appSpec(t, "application")), wsgi.WithInterpreter(wsgi.MainInterpreter))
	require.NoError(t, err)
	assert.False(t, interpOf(t, h).Recycled)
	require.NoError(t, h.Close())
	after := wsgi.Recycling()
	assert.Equal(t, before.Created, after.Created)
	assert.Equal(t, before.Recycled, after.Recycled)
	assert.Equal(t, before.Abandoned, after.Abandoned)

	needIsolated(t)
	before = wsgi.Recycling()
	h, _ = isolatedHandler(t, 2)
	for _, is := range h.Stats().Interpreters {
		assert.False(t, is.Recycled)
	}
	require.NoError(t, h.Close())
	after = wsgi.Recycling()
	assert.Equal(t, before.Created, after.Created)
	assert.Equal(t, before.Recycled, after.Recycled)
	assert.Equal(t, before.Idle, after.Idle)
}

const mib = 1 << 20

// cycles creates a handler with make, serves one request through it
// (check looks at the response), closes it, n times; it returns the RSS
// after the warm-up cycles and after all of them.
func cycles(t *testing.T, n, warm int, make func() *wsgi.Handler, path string, check func(status int, body string)) (afterWarm, afterAll int64) {
	t.Helper()
	start := time.Now()
	for i := 1; i <= n; i++ {
		h := make()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		check(rec.Code, rec.Body.String())
		require.NoError(t, h.Close())
		if i == warm {
			afterWarm = procstatus.Settled(t).RSS
		}
	}
	afterAll = procstatus.Settled(t).RSS
	t.Logf("RSS %.1f MiB after %d cycles, %.1f MiB after %d (%+.1f MiB); %v a cycle; %+v",
		float64(afterWarm)/mib, warm, float64(afterAll)/mib, n, float64(afterAll-afterWarm)/mib,
		(time.Since(start) / time.Duration(n)).Round(time.Millisecond), wsgi.Recycling())
	return afterWarm, afterAll
}

// drainPool takes the idle interpreters out of the pool, in handlers it
// closes when the test ends, so that the test's next handler gets an
// interpreter of its own, whose baseline no earlier test has grown.
func drainPool(t *testing.T) {
	t.Helper()
	for wsgi.Recycling().Idle > 0 {
		h, _ := newHandler(t, "application")
		require.True(t, interpOf(t, h).Recycled)
	}
}

// TestRecycleMemory: create/serve/close cycles of a handler keep the
// process's memory flat (before recycling, each cycle kept its
// interpreter: some 5 MiB for a small app, 15 MiB for a Flask app). A
// thousand cycles of a small app, and a hundred of an app that imports a
// share of the standard library and changes its state; with -short, 200
// and 30.
func TestRecycleMemory(t *testing.T) {
	for _, tc := range []struct {
		name, app string
		n, short  int
		bound     int64 // growth allowed after the first 10 cycles
	}{
		{"plain", testdata(t, "hello.py"), 1000, 200, 32 * mib},
		{"stdlib", recycleApp(t, "stdlib_heavy.py"), 100, 30, 24 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if testing.Short() {
				n = tc.short
			}
			drainPool(t)
			before := wsgi.Recycling()
			warm, all := cycles(t, n, 10, func() *wsgi.Handler {
				h, err := wsgi.NewHandler(wsgi.WithApp(tc.app))
				require.NoError(t, err)
				return h
			}, "/", func(status int, body string) {
				require.Equal(t, 200, status, body)
			})
			assert.Less(t, all-warm, tc.bound, "RSS grew by %d MiB over %d cycles", (all-warm)/mib, n-10)
			after := wsgi.Recycling()
			assert.Equal(t, before.Created+1, after.Created, "one interpreter serves every cycle: %+v", after)
		})
	}
}

// TestRecycleFrameworkMemory: the same with Flask and Django apps, fewer
// cycles (importing the framework takes most of one).
func TestRecycleFrameworkMemory(t *testing.T) {
	for _, tc := range []struct {
		name, spec, dir, path, want string
		n                           int
	}{
		{"flask", "app:app", example(t, "flaskapp"), "/", "Hello from Flask!", 30},
		{"django", "mysite.wsgi:application", example(t, "djangosite"), "/", "Hello from Django!", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := frameworkHandler(t, tc.spec, []string{tc.dir}) // skips where the framework is missing
			require.NoError(t, h.Close())
			dirs := []string{tc.dir}
			if strings.HasPrefix(wsgi.PythonVersion(), "3.11.") {
				dirs = append(dirs, distPackages) // as frameworkHandler found it
			}
			opts := []wsgi.Option{wsgi.WithApp(tc.spec), wsgi.WithPythonPath(dirs...),
				wsgi.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))}
			warm, all := cycles(t, tc.n, 5, func() *wsgi.Handler {
				h, err := wsgi.NewHandler(opts...)
				require.NoError(t, err)
				return h
			}, tc.path, func(status int, body string) {
				require.Equal(t, 200, status, body)
				require.Equal(t, tc.want, body)
			})
			assert.Less(t, all-warm, int64(48*mib), "RSS grew by %d MiB over %d cycles", (all-warm)/mib, tc.n-5)
		})
	}
}

// TestRecycleFlaskFresh: a Flask app in a recycled interpreter imports
// Flask afresh: a module global and an attribute set on the Flask class
// by the first app are not seen by the second.
func TestRecycleFlaskFresh(t *testing.T) {
	dir := filepath.Join("testdata", "frameworks")
	h1 := frameworkHandler(t, "flask_state:app", []string{dir})
	srv := serve(t, h1)
	var st struct {
		State, Probe *string
		FlaskModule  int64 `json:"flask_module"`
		Modules      []string
	}
	getJSON(t, srv, "/state?set=first", &st)
	require.Equal(t, "first", *st.Probe)
	firstFlask := st.FlaskModule
	id := interpOf(t, h1).ID
	srv.Close()
	require.NoError(t, h1.Close())

	h2 := frameworkHandler(t, "flask_state:app", []string{dir})
	is := interpOf(t, h2)
	assert.True(t, is.Recycled)
	assert.Equal(t, id, is.ID)
	st.State, st.Probe = nil, nil
	getJSON(t, serve(t, h2), "/state", &st)
	assert.Nil(t, st.State)
	assert.Nil(t, st.Probe, "flask is imported afresh")
	assert.NotEqual(t, firstFlask, st.FlaskModule)
	assert.Equal(t, []string{"flask_state"}, st.Modules)
}

// TestRecycleDjangoFresh: Django sets itself up again in a recycled
// interpreter, with the settings module the environment names now.
func TestRecycleDjangoFresh(t *testing.T) {
	dir := example(t, "djangosite")
	t.Setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
	h1 := frameworkHandler(t, "django.core.wsgi:get_wsgi_application()", []string{dir})
	srv := serve(t, h1)
	assert.Equal(t, "Hello from Django!", get(t, srv, "/").body)
	id := interpOf(t, h1).ID
	srv.Close()
	require.NoError(t, h1.Close())

	// A settings module that does not exist: a fresh Django reads the
	// environment again and fails to load it.
	t.Setenv("DJANGO_SETTINGS_MODULE", "gowsgi_no_such_settings")
	_, err := wsgi.NewHandler(wsgi.WithApp("django.core.wsgi:get_wsgi_application()"),
		wsgi.WithPythonPath(dir, distPackages))
	require.ErrorContains(t, err, "gowsgi_no_such_settings")

	t.Setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
	h2 := frameworkHandler(t, "django.core.wsgi:get_wsgi_application()", []string{dir})
	assert.Equal(t, id, interpOf(t, h2).ID, "the failed load's interpreter was recycled too")
	srv = serve(t, h2)
	assert.Equal(t, "Hello from Django!", get(t, srv, "/").body)
	assert.Equal(t, "chunk 0\nchunk 1\n", get(t, srv, "/stream/?n=2").body)
}
