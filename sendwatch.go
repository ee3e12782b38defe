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
	writers *watchedWriter // the first of a list linked through next and prev
	ticking bool
}

// A watchedWriter is one response's body writer, seen by the watchdog. It
// lives in its response, so registering it allocates nothing.
type watchedWriter struct {
	w          http.ResponseWriter
	since      atomic.Int64 // UnixNano of the start of the write in progress, 0 when none
	cut        atomic.Bool
	next, prev *watchedWriter // under the sendWatch's mu
	listed     bool           // registered, under the sendWatch's mu
}

// watch registers ww, writing to w, for the life of one response; done
// unregisters it.
func (sw *sendWatch) watch(ww *watchedWriter, w http.ResponseWriter) {
	ww.w = w
	ww.since.Store(0)
	ww.cut.Store(false)
	sw.mu.Lock()
	ww.prev, ww.next = nil, sw.writers
	if sw.writers != nil {
		sw.writers.prev = ww
	}
	sw.writers = ww
	ww.listed = true
	if !sw.ticking {
		sw.ticking = true
		go sw.tick()
	}
	sw.mu.Unlock()
}

func (sw *sendWatch) done(ww *watchedWriter) {
	sw.mu.Lock()
	if ww.prev != nil {
		ww.prev.next = ww.next
	} else {
		sw.writers = ww.next
	}
	if ww.next != nil {
		ww.next.prev = ww.prev
	}
	ww.next, ww.prev = nil, nil
	ww.listed = false
	sw.mu.Unlock()
}

// tick runs while responses are registered.
func (sw *sendWatch) tick() {
	period := min(max(sw.timeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	type write struct {
		ww    *watchedWriter
		since int64
	}
	var stalled []write
	hook := testHookSendTick.Load()
	for range t.C {
		now := time.Now().UnixNano()
		stalled = stalled[:0]
		sw.mu.Lock()
		if sw.writers == nil {
			sw.ticking = false
			sw.mu.Unlock()
			if hook != nil {
				(*hook)(false)
			}
			return
		}
		for ww := sw.writers; ww != nil; ww = ww.next {
			if s := ww.since.Load(); s != 0 && time.Duration(now-s) > sw.timeout && !ww.cut.Load() {
				stalled = append(stalled, write{ww, s})
			}
		}
		sw.mu.Unlock()
		if len(stalled) > 0 {
			if hook != nil {
				(*hook)(true)
			}
			// Cut under mu, and only a write still in progress: a
			// response that has ended since (done takes mu) leaves
			// its connection to the next request, which a deadline
			// in the past would fail.
			sw.mu.Lock()
			for _, x := range stalled {
				if x.ww.listed && x.ww.since.Load() == x.since {
					x.ww.cut.Store(true)
					http.NewResponseController(x.ww.w).SetWriteDeadline(aLongTimeAgo)
				}
			}
			sw.mu.Unlock()
			clear(stalled) // each is in its request, which it would keep
		}
		if hook != nil {
			(*hook)(false)
		}
	}
}

// testHookSendTick, when set by a test before the watch starts, runs in the
// send watch's ticker: with true once it has found stalled writes and
// before it cuts them, with false at the end of each tick.
var testHookSendTick atomic.Pointer[func(found bool)]

// begin and end bracket one write.
func (ww *watchedWriter) begin() { ww.since.Store(time.Now().UnixNano()) }
func (ww *watchedWriter) end()   { ww.since.Store(0) }
