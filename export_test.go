package wsgi

import "time"

// SetWriterTimerHook has f run first in every writer timer's goroutine
// until the returned function restores the default.
func SetWriterTimerHook(f func()) (restore func()) {
	testHookWriterTimer.Store(&f)
	return func() { testHookWriterTimer.Store(nil) }
}

// SetInterruptHook has f run in the request timeout's timer right after it
// has interrupted a request's thread, until the returned function restores
// the default.
func SetInterruptHook(f func()) (restore func()) {
	testHookInterrupted.Store(&f)
	return func() { testHookInterrupted.Store(nil) }
}

// StandbyWait is when a standby began to wait for the GIL and when it had
// it (0 if not yet), on the clock of Python's time.monotonic, its thread
// (threading.get_native_id), and why: "at once", "stopped", "long" or
// "gone" (see cpython.h).
type StandbyWait struct {
	At, Got time.Duration
	Tid     int
	Why     string
}

// StandbyWaits returns the last times a standby of the handler's first
// interpreter began to wait for the GIL, oldest first.
func (h *Handler) StandbyWaits() []StandbyWait {
	var out []StandbyWait
	for _, w := range h.standbyWaits() {
		out = append(out, StandbyWait{w.at, w.got, w.tid, w.why})
	}
	return out
}
