package wsgi

// SetWriterTimerHook has f run first in every writer timer's goroutine
// until the returned function restores the default.
func SetWriterTimerHook(f func()) (restore func()) {
	testHookWriterTimer.Store(&f)
	return func() { testHookWriterTimer.Store(nil) }
}
