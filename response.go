package wsgi

/*
#include "cpython.h"
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"time"
	"unsafe"
)

// slotBufSize is the size of each slot's C buffer: status and headers, and
// a list or tuple body that fits after them, come back in the one cgo call
// that runs the app.
const slotBufSize = 64 << 10

// A slot is one place in a handler's admission semaphore and the state of
// the request that holds it. C refers to the request by (handler, slot
// index), so no per-request handle is allocated.
type slot struct {
	h   *Handler
	m   *member // the interpreter the slot runs requests in
	idx int
	res *C.gowsgi_result // C memory: Go's pointers never reach C
	buf *C.char          // C memory, slotBufSize bytes
	env envBuf
	out []byte // WithOutputBuffering's buffer, kept for the next request
	wt  *watch // WithRequestTimeout
	fl  *flusher

	w        http.ResponseWriter
	r        *http.Request
	status   int
	pending  []header // reported by the app, not yet sent
	hdrSent  bool
	cl       int64 // the app's Content-Length, or -1
	written  int64 // body bytes taken from the app (before ranges)
	plan     *rangePlan
	rw       *rangeWriter // the body goes through it for a 206
	wbuf     *spillBuffer // WithWriteBuffering: what write() was given
	stop     bool         // no more body is wanted
	yielded  bool         // the app yielded a non-empty chunk (maybe still buffered)
	tooLarge bool         // the body passed WithMaxRequestBody
	early    earlyBody    // the body's start, read before the slot was taken
	https    bool         // wsgi.url_scheme is https (set by packEnviron)
	panic    any          // a panic recovered in a callback, re-raised in Go
	werr     error        // the first error writing to the client
	closed   bool         // request_next closed the iterable at its end
	closeErr *PythonError // what that close() raised
	timed    bool         // the first chunk's send was timed
	slowSend bool         // and took asyncMinSend or more
	async    bool         // chunks go through s.fl
}

type header struct{ name, value string }

func (s *slot) init(h *Handler, m *member, idx int) {
	s.h, s.m, s.idx = h, m, idx
	s.wt = new(watch)
	s.fl = new(flusher)
	s.res = (*C.gowsgi_result)(C.calloc(1, C.sizeof_gowsgi_result))
	s.buf = (*C.char)(C.malloc(slotBufSize))
}

func (s *slot) free() {
	C.free(unsafe.Pointer(s.res))
	C.free(unsafe.Pointer(s.buf))
	s.res, s.buf = nil, nil
}

func (s *slot) reset() {
	if s.wbuf != nil {
		s.wbuf.Close()
	}
	*s = slot{h: s.h, m: s.m, idx: s.idx, res: s.res, buf: s.buf, env: s.env[:0],
		out: s.out[:0], pending: s.pending[:0], wt: s.wt, fl: s.fl}
	if cap(s.env) > 1<<20 {
		s.env = nil // one huge request should not pin its buffer
	}
}

// serve runs the app for the slot's request (s.w, s.r).
func (s *slot) serve(ip *interp) {
	r := s.r
	s.cl = -1
	s.env, s.https = s.h.packEnviron(s.env, r)
	var flags C.int
	if s.https {
		flags |= C.GOWSGI_HTTPS
	}
	if r.Method == http.MethodHead {
		flags |= C.GOWSGI_HEAD
	}
	if s.h.opts.optimizeHeaders {
		flags |= C.GOWSGI_OPTIMIZE_HEADERS
	}

	var body *C.char
	e := &s.early
	if e.eof {
		flags |= C.GOWSGI_BODY_EOF
	}
	if e.n > 0 {
		body = (*C.char)(unsafe.Pointer(&(*e.buf)[0])) // copied by C in the call
	}

	// Locked before the first call so that, if the response needs more
	// calls, they all run on this thread's thread state and the app's
	// threading.local and contextvars stay put. A response finished in
	// one call unlocks at once.
	runtime.LockOSThread()
	s.wt.inCall.Store(true)
	rq := C.gowsgi_request_start(ip.c, cptr(s.env), C.size_t(len(s.env)), flags,
		C.uintptr_t(s.h.handle), C.int(s.idx), C.uint64_t(s.wt.gen.Load()), s.buf, slotBufSize, body, C.size_t(e.n), s.res)
	s.wt.inCall.Store(false)
	if rq == nil {
		runtime.UnlockOSThread()
		s.repanic()
		s.complete()
		return
	}
	defer runtime.UnlockOSThread()
	defer s.endAsync()
	defer s.finish(rq)
	s.stream(rq)
}

// complete handles a response that start finished in one call.
func (s *slot) complete() {
	res := s.res
	if res.state == C.GOWSGI_ERROR {
		s.fail(takeError(&res.err))
		return
	}
	if res.hdrlen > 0 {
		s.takeHeaders(res)
	}
	body := unsafe.Slice((*byte)(unsafe.Pointer(s.buf)), int(res.hdrlen+res.bodylen))[res.hdrlen:]
	if err := s.commit(int64(len(body))); err != nil {
		s.fail(err)
		return
	}
	s.write(body)
	s.endBody()
}

// stream sends the response of a request that needs more than one call.
func (s *slot) stream(rq *C.gowsgi_req) {
	res := s.res
	length := int64(res.length) // known for a list or tuple, else -1
	for {
		s.repanic()
		if res.hdrlen > 0 {
			s.takeHeaders(res)
		}
		switch res.state {
		case C.GOWSGI_ERROR:
			s.fail(takeError(&res.err))
			return
		case C.GOWSGI_DONE:
			if err := s.commit(int64(len(s.out))); err != nil {
				s.fail(err)
				return
			}
			s.endBody()
			return
		case C.GOWSGI_FILE:
			s.sendFile(int(res.fd), int64(res.filesize))
			return
		case C.GOWSGI_CHUNK:
			chunk := unsafe.Slice((*byte)(unsafe.Pointer(res.chunk)), int(res.chunklen))
			if err := s.chunk(chunk, length); err != nil {
				s.fail(err)
				return
			}
			if s.werr != nil {
				return // the client is gone
			}
			if s.stop {
				s.endBody() // no more body is wanted
				return
			}
		}
		s.wt.inCall.Store(true)
		var cerr C.gowsgi_error
		rc := C.gowsgi_request_next(rq, boolInt(s.committed()), s.buf, slotBufSize, res, &cerr)
		s.wt.inCall.Store(false)
		if rc != 0 {
			// The end: C closed the iterable in the same call.
			s.closed = true
			if rc < 0 {
				s.closeErr = takeError(&cerr)
			}
		}
	}
}

// chunk sends one chunk the app yielded; length is the whole body's when
// known. With WithOutputBuffering it gathers chunks instead.
func (s *slot) chunk(p []byte, length int64) error {
	s.yielded = true
	if !s.h.opts.outputBuffering {
		if err := s.commit(length); err != nil {
			return err
		}
		if !s.async && s.slowSend && s.rw == nil && !s.stop && s.werr == nil {
			// A stream whose sending costs: from now on chunks are
			// sent while the app produces the next (see flusher).
			s.async = true
			s.fl.start(s.w)
		}
		if s.async || s.timed || len(p) == 0 {
			s.write(p)
			s.flush()
			return nil
		}
		// The body's first bytes: how long they take to send tells
		// whether a flusher would pay. Handing chunks to another
		// goroutine cost 0.6 us more per chunk into a memory writer
		// (BenchmarkStream, 18.6 -> 83 us for 100), where nothing is
		// gained; a write that reaches a socket costs several (the bare
		// handler of bench/RESULTS.md: 3.9 us of CPU per 1 KiB chunk).
		t0 := time.Now()
		s.write(p)
		s.flush()
		s.timed = true
		s.slowSend = time.Since(t0) >= asyncMinSend
		return nil
	}
	s.out = append(s.out, p...)
	if len(s.out) < s.h.opts.bufferSize {
		return nil
	}
	if err := s.commit(length); err != nil {
		return err
	}
	s.write(s.out)
	s.out = s.out[:0]
	s.flush()
	return nil
}

// endBody writes what output buffering still holds and ends a multipart
// range body.
func (s *slot) endBody() {
	if len(s.out) > 0 {
		s.write(s.out)
		s.out = s.out[:0]
	}
	if s.rw != nil && s.werr == nil {
		if err := s.rw.finish(); err != nil {
			// The app's body was shorter than its length: the client
			// must not take what it got as whole.
			s.werr = err
			panic(http.ErrAbortHandler)
		}
	}
}

// committed reports whether the headers count as sent for PEP 3333: they
// went out, or the app's first non-empty chunk or write() is buffered
// behind them. start_response with exc_info then re-raises.
func (s *slot) committed() bool {
	return s.hdrSent || s.wbuf != nil || s.yielded
}

// finish runs the iterable's close() and ends the request in C, unless
// request_next did at the end of the iteration; it logs what close() raised.
func (s *slot) finish(rq *C.gowsgi_req) {
	pe := s.closeErr
	if !s.closed {
		var cerr C.gowsgi_error
		s.wt.inCall.Store(true)
		if C.gowsgi_request_finish(rq, boolInt(s.committed()), &cerr) != 0 {
			pe = takeError(&cerr)
		}
		s.wt.inCall.Store(false)
	}
	if pe != nil {
		s.h.log.ErrorContext(s.r.Context(), "wsgi: the iterable's close() raised",
			"method", s.r.Method, "path", s.r.URL.Path,
			"type", pe.Type, "message", pe.Message, "traceback", pe.Traceback)
	}
}

// endAsync waits until the flusher, if the response used one, has sent
// everything, and hands the ResponseWriter back to the slot.
func (s *slot) endAsync() {
	if !s.async {
		return
	}
	s.async = false
	defer s.fl.release() // also when wait re-raises a panic
	err := s.fl.wait()
	if err != nil && s.werr == nil {
		s.werr = err
	}
}

// repanic re-raises, on the request goroutine, a panic that a callback
// recovered so that it would not unwind through Python's C frames.
func (s *slot) repanic() {
	if p := s.panic; p != nil {
		s.panic = nil
		panic(p)
	}
}

// takeHeaders reads the status and headers C wrote into the buffer.
func (s *slot) takeHeaders(res *C.gowsgi_result) {
	s.parseHeaders(unsafe.Slice((*byte)(unsafe.Pointer(s.buf)), int(res.hdrlen)),
		int(res.statuslen), int(res.status))
}

func (s *slot) parseHeaders(b []byte, statuslen, status int) {
	s.status = status
	s.pending = s.pending[:0]
	b = b[statuslen:]
	for len(b) >= 6 {
		kl := int(binary.LittleEndian.Uint16(b))
		vl := int(binary.LittleEndian.Uint32(b[2:]))
		s.pending = append(s.pending, header{string(b[6 : 6+kl]), string(b[6+kl : 6+kl+vl])})
		b = b[6+kl+vl:]
	}
}

// commit sends the headers, if they have not gone out, and what write()
// buffered. rest is the length of the body still to come when known, else
// -1.
func (s *slot) commit(rest int64) error {
	if s.hdrSent {
		return nil
	}
	if s.wbuf == nil {
		return s.sendHeaders(rest)
	}
	wbuf := s.wbuf
	s.wbuf = nil
	defer wbuf.Close()
	total := int64(-1)
	if rest >= 0 {
		total = wbuf.Len() + rest
	}
	if err := s.sendHeaders(total); err != nil {
		return err
	}
	if s.rw == nil && (s.cl < 0 || s.cl >= wbuf.Len()) && !s.stop {
		// Straight from the temp file: sendfile where the writer can.
		n, err := wbuf.WriteTo(s.w)
		s.written += n
		if err != nil && s.werr == nil {
			s.werr = err
		}
		return nil
	}
	_, err := wbuf.WriteTo(slotWriter{s})
	if err != nil && s.werr == nil {
		s.werr = err
	}
	return nil
}

// slotWriter writes through the slot, so Content-Length cuts and ranges
// apply.
type slotWriter struct{ s *slot }

func (w slotWriter) Write(p []byte) (int, error) {
	w.s.write(p)
	return len(p), w.s.werr
}

// sendHeaders writes the status and headers. length, when not -1, is the
// whole body's length, sent as Content-Length if the app gave none.
func (s *slot) sendHeaders(length int64) error {
	hdr := s.w.Header()
	for i, h := range s.pending {
		key := textproto.CanonicalMIMEHeaderKey(h.name)
		if key == "Content-Length" {
			n, err := strconv.ParseInt(h.value, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("the application sent an invalid Content-Length %q", h.value)
			}
			s.cl = n
		}
		if firstOf(s.pending[:i], key) {
			hdr[key] = append(hdr[key][:0:0], h.value)
		} else {
			hdr[key] = append(hdr[key], h.value)
		}
	}
	if s.cl >= 0 {
		length = s.cl
	} else if length >= 0 && bodyAllowed(s.status) {
		hdr["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	}
	status := s.status
	if s.h.opts.ranges && length >= 0 && status == http.StatusOK {
		if _, ok := hdr["Accept-Ranges"]; !ok {
			hdr["Accept-Ranges"] = []string{"bytes"}
		}
		if p := planRanges(s.r.Header, s.r.Method, status, hdr, length); p != nil {
			p.apply(hdr)
			s.plan, status = p, p.status
			if p.status == http.StatusPartialContent {
				s.rw = newRangeWriter(s.w, p)
			} else {
				s.stop = true // 416: none of the body is wanted
			}
		}
	}
	s.w.WriteHeader(status)
	s.hdrSent = true
	return nil
}

// firstOf reports whether no earlier header has key's canonical name.
func firstOf(earlier []header, key string) bool {
	for _, h := range earlier {
		if textproto.CanonicalMIMEHeaderKey(h.name) == key {
			return false
		}
	}
	return true
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// write sends p, cut at the app's Content-Length and through the range
// writer if there is one. It records the first error, after which nothing
// more is written, and sets stop once no more body is wanted.
func (s *slot) write(p []byte) {
	if s.werr != nil || s.stop {
		return
	}
	if s.cl >= 0 {
		if rem := s.cl - s.written; int64(len(p)) >= rem {
			p = p[:rem]
			s.stop = true
		}
	}
	if len(p) == 0 {
		return
	}
	s.written += int64(len(p))
	var err error
	if s.rw != nil {
		_, err = s.rw.Write(p)
		s.stop = s.stop || s.rw.done()
	} else if s.async {
		err = s.fl.send(p)
	} else {
		_, err = s.w.Write(p)
	}
	if err != nil && !errors.Is(err, http.ErrBodyNotAllowed) {
		s.werr = err
	}
}

// flush pushes a streamed chunk to the client before the next is asked
// for, as PEP 3333 requires of a gateway.
func (s *slot) flush() {
	if s.werr == nil && !s.async { // a flusher flushes what it writes
		if err := http.NewResponseController(s.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.werr = err
		}
	}
}

// sendFile sends a wsgi.file_wrapper file from its current offset: through
// the ResponseWriter's ReadFrom, which uses sendfile on a TCP connection.
// The length is the app's Content-Length if it gave one, else the rest of
// the file. fd belongs to sendFile.
func (s *slot) sendFile(fd int, size int64) {
	f := os.NewFile(uintptr(fd), "wsgi.file_wrapper")
	defer f.Close()
	base, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		s.fail(err)
		return
	}
	if err := s.commit(size); err != nil {
		s.fail(err)
		return
	}
	n := size
	if s.cl >= 0 && s.cl < n {
		n = s.cl
	}
	if s.r.Method == http.MethodHead || !bodyAllowed(s.status) || s.stop {
		return
	}
	if s.plan != nil {
		written, err := sendFileRanges(s.w, f, base, s.plan)
		s.written += written
		if err != nil && s.werr == nil {
			s.werr = err
		}
		return
	}
	written, err := io.CopyN(s.w, f, n)
	s.written += written
	if err != nil && s.werr == nil {
		s.werr = err
	}
}

// fail reports an app error: before headers as a 500, after them by
// aborting the connection so the client cannot take a cut body as whole.
func (s *slot) fail(err error) {
	attrs := []any{"method", s.r.Method, "path", s.r.URL.Path, "error", err.Error()}
	var pe *PythonError
	if errors.As(err, &pe) {
		attrs = append(attrs, "traceback", pe.Traceback)
		if hint := refusalHint(pe, s.h.opts.interpreter); hint != "" {
			attrs = append(attrs, "hint", hint)
		}
	}
	timedOut := s.wt.timedOut.Load()
	if !timedOut && !s.tooLarge {
		s.h.stats.errors.Add(1)
	}
	if s.hdrSent {
		msg := "wsgi: application error after the headers were sent; aborting the connection"
		if timedOut {
			msg = "wsgi: request timeout after the headers were sent; aborting the connection"
		}
		s.h.log.ErrorContext(s.r.Context(), msg, attrs...)
		panic(http.ErrAbortHandler)
	}
	code := http.StatusInternalServerError
	switch {
	case timedOut:
		code = http.StatusGatewayTimeout
		s.h.log.WarnContext(s.r.Context(), "wsgi: request timeout", attrs...)
	case s.tooLarge:
		// The app failed because the body passed the limit: say so.
		code = http.StatusRequestEntityTooLarge
		s.h.stats.rejected.Add(1)
		s.h.log.InfoContext(s.r.Context(), "wsgi: request body over the limit", attrs...)
	default:
		s.h.log.ErrorContext(s.r.Context(), "wsgi: application error", attrs...)
	}
	hdr := s.w.Header()
	for _, h := range s.pending {
		hdr.Del(h.name)
	}
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	s.w.WriteHeader(code)
	fmt.Fprintf(s.w, "%d %s\n", code, http.StatusText(code))
}
