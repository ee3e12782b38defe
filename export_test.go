package wsgi

// SetWriterTimerHook has f run first in every writer timer's goroutine
// until the returned function restores the default.
func SetWriterTimerHook(f func()) (restore func()) {
	testHookWriterTimer.Store(&f)
	return func() { testHookWriterTimer.Store(nil) }
}

// SetSendTickHook has f run in the send watch's ticker of every handler
// whose watch starts before the returned function restores the default:
// with true once a tick has found stalled writes, before it cuts them, and
// with false at the end of each tick.
func SetSendTickHook(f func(found bool)) (restore func()) {
	testHookSendTick.Store(&f)
	return func() { testHookSendTick.Store(nil) }
}

// SetInterruptHook has f run in the request timeout's timer right after it
// has interrupted a request's thread, until the returned function restores
// the default.
func SetInterruptHook(f func()) (restore func()) {
	testHookInterrupted.Store(&f)
	return func() { testHookInterrupted.Store(nil) }
}

// StandbyWait is a standby's wait for the GIL (see standbyWait).
type StandbyWait = standbyWait

// StandbyWaits returns the last times a standby of the handler's first
// interpreter began to wait for the GIL, oldest first.
func (h *Handler) StandbyWaits() []StandbyWait { return h.standbyWaits() }
