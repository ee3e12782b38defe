package wsgi

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// PEP 3333 lets a gateway either send each block before it asks for the
// next or "guarantee that [it] will continue transmission even while the
// application is producing its next block". A flusher does the second:
// after the body's first chunk, if sending it took asyncMinSend or more, the
// request goroutine copies each chunk into a queue and goes back to Python at once, while a goroutine of
// the flusher writes and flushes what is queued. A chunk that finds the
// writer idle goes out as soon as it is queued; chunks the app yields while
// a write is under way leave together in the next one. A generator of small
// chunks then costs one write system call per batch instead of one per
// chunk, and its Python work overlaps the sending.
type flusher struct {
	w    http.ResponseWriter
	mu   sync.Mutex
	cond sync.Cond // signalled when the queue shrinks or the writer stops
	buf  []byte    // queued, not yet handed to the writer
	next []byte    // the other buffer, reused
	busy bool      // the writer goroutine runs
	err  error     // the first error writing to the client
	pnc  any       // a panic of w, re-raised on the request goroutine
}

const (
	// flushQueueMax bounds what a flusher holds: a chunk that would take
	// the queue past it waits for the writer, so a slow client slows the
	// app down instead of growing the queue.
	flushQueueMax = 64 << 10
	// flushDirectMin is the size from which a chunk is not copied: the
	// request goroutine waits for the queue to empty and writes the chunk
	// itself, straight from the Python object.
	flushDirectMin = 16 << 10
	// asyncMinSend is how long the first chunk's write and flush must
	// take for the rest of a stream to go through a flusher: writes that
	// end in a system call take longer, writes to memory (a recorder, a
	// buffering middleware) less, and gain nothing from another goroutine.
	asyncMinSend = 2 * time.Microsecond
)

// start makes the flusher send to w. It is idle and empty when called.
func (f *flusher) start(w http.ResponseWriter) {
	if f.cond.L == nil {
		f.cond.L = &f.mu
	}
	f.w, f.err, f.pnc = w, nil, nil
}

// send queues p, or writes it at once when it is large, and returns the
// first error the writer met. p is not retained.
func (f *flusher) send(p []byte) error {
	if len(p) >= flushDirectMin {
		if err := f.wait(); err != nil {
			return err
		}
		return writeFlush(f.w, p)
	}
	f.mu.Lock()
	for f.busy && f.err == nil && f.pnc == nil && len(f.buf)+len(p) > flushQueueMax {
		f.cond.Wait()
	}
	if f.err != nil || f.pnc != nil {
		err := f.err
		f.mu.Unlock()
		if err == nil {
			err = f.wait() // re-raises the panic
		}
		return err
	}
	f.buf = append(f.buf, p...)
	if !f.busy {
		f.busy = true
		go f.run()
	}
	f.mu.Unlock()
	return nil
}

// run writes and flushes the queue until it is empty.
func (f *flusher) run() {
	finished := false
	defer func() {
		if finished {
			return
		}
		// The ResponseWriter panicked, or called runtime.Goexit (a test's
		// writer calling t.FailNow, say), which recover does not see.
		p := recover()
		if p == nil {
			p = errors.New("wsgi: the ResponseWriter ended its goroutine (runtime.Goexit) while the flusher wrote")
		}
		f.mu.Lock()
		f.pnc = p
		// The batch being written was taken from buf: drop both, so the
		// two never share an array when the slot streams again.
		f.buf, f.next = nil, nil
		f.stopLocked()
		f.mu.Unlock()
	}()
	f.mu.Lock()
	for len(f.buf) > 0 && f.err == nil {
		b := f.buf
		f.buf = f.next[:0]
		f.mu.Unlock()
		err := writeFlush(f.w, b)
		f.mu.Lock()
		f.next = b[:0]
		if err != nil {
			f.err = err
		}
		f.cond.Broadcast()
	}
	f.stopLocked()
	f.mu.Unlock()
	finished = true
}

func (f *flusher) stopLocked() {
	f.buf = f.buf[:0]
	f.busy = false
	f.cond.Broadcast()
}

// wait returns once everything queued is written or has failed, with the
// first error. A panic of the ResponseWriter is re-raised here, on the
// request goroutine. After wait the caller may use the ResponseWriter.
func (f *flusher) wait() error {
	f.mu.Lock()
	for f.busy {
		f.cond.Wait()
	}
	err, pnc := f.err, f.pnc
	f.pnc = nil
	f.mu.Unlock()
	if pnc != nil {
		panic(pnc)
	}
	return err
}

// release lets go of the ResponseWriter after wait, keeping the buffers
// for the slot's next request unless a large burst grew them.
func (f *flusher) release() {
	f.w = nil
	if cap(f.buf) > 2*flushQueueMax {
		f.buf = nil
	}
	if cap(f.next) > 2*flushQueueMax {
		f.next = nil
	}
}

// writeFlush writes p to w and flushes it. A body the request may not have
// (HEAD, 204, 304) and a writer that cannot flush are not errors.
func writeFlush(w http.ResponseWriter, p []byte) error {
	if _, err := w.Write(p); err != nil && !errors.Is(err, http.ErrBodyNotAllowed) {
		return err
	}
	if err := http.NewResponseController(w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
