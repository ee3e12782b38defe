package wsgitest_test

// An App per test, as many as a test binary has: the handler of a test
// that ends gives its interpreter, cleaned, to the next test's App.

import (
	"flag"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gowsgi/wsgi"
	"github.com/gowsgi/wsgi/internal/procstatus"
	"github.com/gowsgi/wsgi/wsgitest"
)

const mib = 1 << 20

// many runs n tests one after the other, each with an App of its own made
// by load, and reports the memory after the first tenth and at the end.
func many(t *testing.T, n int, load func(t *testing.T) *wsgitest.App, use func(t *testing.T, app *wsgitest.App)) (growth int64) {
	warm := max(n/10, 1)
	var rssWarm int64
	start := time.Now()
	for i := 1; i <= n; i++ {
		ok := t.Run(strconv.Itoa(i), func(t *testing.T) {
			use(t, load(t))
		})
		if !ok {
			t.FailNow()
		}
		if i == warm {
			rssWarm = procstatus.Settled(t).RSS
		}
	}
	m := procstatus.Settled(t)
	rss, peak := m.RSS, m.Peak
	t.Logf("RSS %.1f MiB after %d apps, %.1f MiB after %d (peak %.1f MiB); %v an app; %+v",
		float64(rssWarm)/mib, warm, float64(rss)/mib, n, float64(peak)/mib,
		(time.Since(start) / time.Duration(n)).Round(time.Millisecond), wsgi.Recycling())
	return rss - rssWarm
}

// count is n, or long when GOWSGI_LONG is set (a run of its own, not the
// test suite's: a thousand Flask apps take minutes).
func count(n, long int) int {
	if os.Getenv("GOWSGI_LONG") != "" {
		return long
	}
	if testing.Short() {
		return max(n/4, 2)
	}
	return n
}

// TestManyApps: an App per test, in sequence, each sees its app afresh,
// and the test binary's memory stays flat.
func TestManyApps(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		growth := many(t, count(200, 1000), func(t *testing.T) *wsgitest.App {
			return wsgitest.New(t, "testdata/state.py")
		}, func(t *testing.T, app *wsgitest.App) {
			assert.Equal(t, "", body(t, app.Get("/state")), "an earlier test's module global")
			assert.Equal(t, t.Name(), body(t, app.Get("/state?set="+t.Name())))
		})
		assert.Less(t, growth, int64(32*mib))
	})
	t.Run("flask", func(t *testing.T) {
		growth := many(t, count(20, 1000), func(t *testing.T) *wsgitest.App {
			return wsgitest.New(t, "testdata/flasklogin.py:app", wsgitest.WithCookies(), wsgitest.SkipIfMissing("flask"))
		}, func(t *testing.T, app *wsgitest.App) {
			assert.Equal(t, 401, app.Get("/me").StatusCode)
			require.Equal(t, 302, app.PostForm("/login", map[string][]string{"user": {"gopher"}, "password": {"burrow"}}).StatusCode)
			assert.Equal(t, "Hello, gopher!", body(t, app.Get("/me")))
		})
		assert.Less(t, growth, int64(48*mib))
	})
	t.Run("django", func(t *testing.T) {
		t.Setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
		growth := many(t, count(10, 100), func(t *testing.T) *wsgitest.App {
			return wsgitest.New(t, "django.core.wsgi:get_wsgi_application()",
				wsgitest.With(wsgi.WithPythonPath(djangoSite)), wsgitest.SkipIfMissing("django"))
		}, func(t *testing.T, app *wsgitest.App) {
			assert.Equal(t, "Hello from Django!", body(t, app.Get("/")))
		})
		assert.Less(t, growth, int64(48*mib))
	})
	if os.Getenv("GOWSGI_LONG") != "" {
		peak := procstatus.Settled(t).Peak
		assert.Less(t, peak, int64(200*mib), "the test binary's peak RSS")
	}
}

// TestParallelApps: tests that run at once (t.Parallel) each have their
// app, in an interpreter of its own.
func TestParallelApps(t *testing.T) {
	parallel, _ := strconv.Atoi(flag.Lookup("test.parallel").Value.String())
	n := min(4, parallel)
	if n < 2 {
		t.Skipf("-parallel %d runs one test at a time", parallel)
	}
	var mu sync.Mutex
	ids := map[int64]string{}
	arrived := make(chan struct{}, n)
	all := make(chan struct{})
	for i := range n {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			app := wsgitest.New(t, "testdata/state.py")
			assert.Equal(t, "", body(t, app.Get("/state")))
			assert.Equal(t, t.Name(), body(t, app.Get("/state?set="+t.Name())))
			mu.Lock()
			ids[app.Handler().Stats().Interpreters[0].ID] = t.Name()
			if len(ids) == n {
				close(all)
			}
			mu.Unlock()
			arrived <- struct{}{}
			// Until every test holds its App (or a while, should fewer
			// run at once), so that they overlap.
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				t.Log("the other tests did not run at the same time")
			}
			assert.Equal(t, t.Name(), body(t, app.Get("/state")), "another test's app changed this one's")
		})
	}
	t.Cleanup(func() {
		assert.Len(t, ids, n, "the apps that ran at once had one interpreter each: %v", ids)
	})
}
