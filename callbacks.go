package wsgi

// The Go functions C calls back, all in this file: a Go file with //export
// may not define C in its preamble (cmd/cgo), so it only includes the
// header. C calls each with the GIL released. None may let a panic unwind
// through Python's C frames: each recovers, records the panic on the slot
// and returns an error, which C raises in Python; the request goroutine
// re-panics once its cgo call has returned.

/*
#include "cpython.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// go_input_read fills buf with up to n bytes of the request body. Returns
// the count, 0 at the end of the body, or -1 with a message in msg.
//
//export go_input_read
func go_input_read(handle C.uintptr_t, idx C.int, gen C.uint64_t, buf *C.char, n C.size_t, msg *C.char, msgcap C.size_t) (got C.longlong) {
	s, done := enterCallback(handle, idx, gen, msg, msgcap)
	if s == nil {
		return -1
	}
	// The read may block on the client for long: not under the slot's
	// lock, so the request can end meanwhile (an app thread may read
	// after the response); the body stays the old request's.
	body, readErr := s.r.Body, s.early.err
	done()
	defer recoverInto(&s.panic, &got, msg, msgcap)
	p := cbytes(buf, n)
	for {
		k, err := 0, readErr
		if err == nil {
			k, err = body.Read(p)
		}
		if k > 0 {
			return C.longlong(k)
		}
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				if s, done := enterCallback(handle, idx, gen, msg, msgcap); s != nil {
					s.tooLarge = true
					done()
				}
				err = fmt.Errorf("the request body is larger than the limit of %d bytes (WithMaxRequestBody)", tooLarge.Limit)
			}
			putMsg(msg, msgcap, err.Error())
			return -1
		}
	}
}

// go_write sends data for write(), or keeps it under WithWriteBuffering.
// hdr, when not NULL, holds the status and headers to send first, encoded
// as for gowsgi_result. Returns 0, or -1 with a message in msg when the
// client cannot be written to.
//
//export go_write
func go_write(handle C.uintptr_t, idx C.int, gen C.uint64_t, hdr *C.char, hdrlen, statuslen C.size_t, status C.int,
	data *C.char, n C.size_t, msg *C.char, msgcap C.size_t) (rc C.int) {
	s, done := enterCallback(handle, idx, gen, msg, msgcap)
	if s == nil {
		return -1
	}
	defer done()
	var got C.longlong
	defer func() {
		if got < 0 {
			rc = -1
		}
	}()
	defer recoverInto(&s.panic, &got, msg, msgcap)
	if hdr != nil {
		s.parseHeaders(cbytes(hdr, hdrlen), int(statuslen), int(status))
	}
	if s.h.opts.writeBuffering && !s.hdrSent {
		// Kept until the app returns; commit sends it with the headers.
		// Once they are out (a generator's chunk went first), a write
		// goes out in its place among the chunks.
		if s.wbuf == nil {
			s.wbuf = newSpillBuffer(s.h.opts.bufferSize, s.h.opts.tempPath)
		}
		if _, err := s.wbuf.Write(cbytes(data, n)); err != nil {
			putMsg(msg, msgcap, "write buffering: "+err.Error())
			return -1
		}
		return 0
	}
	if err := s.commit(-1); err != nil {
		putMsg(msg, msgcap, err.Error())
		return -1
	}
	s.write(cbytes(data, n))
	s.flush()
	if s.werr != nil {
		putMsg(msg, msgcap, "the client went away: "+s.werr.Error())
		return -1
	}
	return 0
}

// go_log logs one line the app wrote to wsgi.errors. A line from an app
// whose handler has ended goes to slog.Default().
//
//export go_log
func go_log(handle C.uintptr_t, p *C.char, n C.size_t) {
	defer func() { recover() }() // a failing log handler must not take Python down
	log := slog.Default()
	if h := handlerOf(handle); h != nil {
		log = h.log
	}
	log.Error("wsgi.errors", "line", string(cbytes(p, n)))
}

// enterCallback finds the slot of the request a callback is for and holds
// it until done is called. It returns nil, with a message for C, when the
// request has ended (a thread the app started may still hold its
// wsgi.input).
func enterCallback(handle C.uintptr_t, idx C.int, gen C.uint64_t, msg *C.char, msgcap C.size_t) (*slot, func()) {
	h := handlerOf(handle)
	if h == nil || int(idx) < 0 || int(idx) >= len(h.slots) {
		putMsg(msg, msgcap, "the request has ended")
		return nil, nil
	}
	s := &h.slots[idx]
	s.wt.cb.RLock()
	if s.wt.gen.Load() != uint64(gen) {
		s.wt.cb.RUnlock()
		putMsg(msg, msgcap, "the request has ended")
		return nil, nil
	}
	return s, s.wt.cb.RUnlock
}

// recoverInto turns a panic into a -1 result for C, keeping the panic in
// *keep for the request goroutine to re-raise.
func recoverInto(keep *any, rc *C.longlong, msg *C.char, msgcap C.size_t) {
	if p := recover(); p != nil {
		*keep = p
		putMsg(msg, msgcap, fmt.Sprint("panic in the Go request path: ", p))
		*rc = -1
	}
}

// putMsg copies s into C's message buffer, NUL-terminated and cut to fit.
func putMsg(msg *C.char, msgcap C.size_t, s string) {
	b := cbytes(msg, msgcap)
	if len(b) == 0 {
		return
	}
	n := copy(b[:len(b)-1], s)
	b[n] = 0
}
