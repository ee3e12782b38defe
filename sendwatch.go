package wsgi

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// WithSendTimeout is kept by a watchdog rather than by a write deadline per
// write: a deadline set and cleared for every response costs a timer change,
// which wakes Go's network poller, on every request. A response registers
// its writer while its body is sent and stamps each write with its start;
// a ticker looks at the writes in progress a few times per timeout and
// sets a deadline in the past on a write that has run longer than the
// timeout, which makes it fail at once.
type sendWatch struct {
	timeout time.Duration

	mu      sync.Mutex
	writers map[*watchedWriter]struct{}
	ticking bool
}

// A watchedWriter is one response's body writer, seen by the watchdog.
type watchedWriter struct {
	w     http.ResponseWriter
	since atomic.Int64 // UnixNano of the start of the write in progress, 0 when none
	cut   atomic.Bool
}

// watch registers w for the life of one response; done unregisters it.
func (sw *sendWatch) watch(w http.ResponseWriter) *watchedWriter {
	ww := &watchedWriter{w: w}
	sw.mu.Lock()
	if sw.writers == nil {
		sw.writers = map[*watchedWriter]struct{}{}
	}
	sw.writers[ww] = struct{}{}
	if !sw.ticking {
		sw.ticking = true
		go sw.tick()
	}
	sw.mu.Unlock()
	return ww
}

func (sw *sendWatch) done(ww *watchedWriter) {
	sw.mu.Lock()
	delete(sw.writers, ww)
	sw.mu.Unlock()
}

// tick runs while responses are registered.
func (sw *sendWatch) tick() {
	period := min(max(sw.timeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var stalled []*watchedWriter
	for range t.C {
		now := time.Now().UnixNano()
		stalled = stalled[:0]
		sw.mu.Lock()
		if len(sw.writers) == 0 {
			sw.ticking = false
			sw.mu.Unlock()
			return
		}
		for ww := range sw.writers {
			if s := ww.since.Load(); s != 0 && time.Duration(now-s) > sw.timeout && !ww.cut.Load() {
				stalled = append(stalled, ww)
			}
		}
		sw.mu.Unlock()
		for _, ww := range stalled {
			ww.cut.Store(true)
			http.NewResponseController(ww.w).SetWriteDeadline(aLongTimeAgo)
		}
	}
}

// begin and end bracket one write.
func (ww *watchedWriter) begin() { ww.since.Store(time.Now().UnixNano()) }
func (ww *watchedWriter) end()   { ww.since.Store(0) }
