package wsgi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// response is what a request has sent so far, and how the rest goes.
type response struct {
	status  int
	pending []header // reported by the app, not yet sent
	hdrSent bool
	cl      int64 // the app's Content-Length, or -1
	written int64 // body bytes taken from the app (before ranges)
	plan    *rangePlan
	rw      *rangeWriter   // the body goes through it for a 206
	wbuf    *spillBuffer   // WithWriteBuffering: what write() was given
	out     []byte         // WithOutputBuffering: chunks not sent yet
	stop    bool           // no more body is wanted
	yielded bool           // the app yielded a non-empty chunk (maybe still buffered)
	failed  bool           // the response was answered with an error
	werr    error          // the first error writing to the client
	watched *watchedWriter // WithSendTimeout's watch over the writes: ww once registered
	ww      watchedWriter
}

type header struct{ name, value string }

// setHeaders reads the status and headers C wrote into b.
func (rq *request) setHeaders(b []byte, statuslen, status int) {
	r := &rq.resp
	r.status = status
	if r.pending == nil {
		r.pending = rq.s.pending // the last request's array
	}
	r.pending = r.pending[:0]
	// One string for all names and values, which are its pieces.
	b = b[statuslen:]
	all := string(b)
	for i := 0; len(b)-i >= 6; {
		kl := int(binary.LittleEndian.Uint16(b[i:]))
		vl := int(binary.LittleEndian.Uint32(b[i+2:]))
		i += 6
		r.pending = append(r.pending, header{all[i : i+kl], all[i+kl : i+kl+vl]})
		i += kl + vl
	}
}

// chunk sends one piece of what the app yielded; length is the whole
// body's when known. With WithOutputBuffering it gathers pieces instead.
func (rq *request) chunk(p []byte, length int64) error {
	r := &rq.resp
	r.yielded = true
	if !rq.h.opts.outputBuffering {
		if err := rq.commit(length); err != nil {
			return err
		}
		rq.write(p)
		return nil
	}
	r.out = append(r.out, p...)
	if len(r.out) < rq.h.opts.bufferSize {
		return nil
	}
	if err := rq.commit(length); err != nil {
		return err
	}
	rq.write(r.out)
	r.out = r.out[:0]
	return nil
}

// written sends what the app gave write(), or keeps it under
// WithWriteBuffering until the app returns: commit sends it with the
// headers. Once they are out (a chunk went first), it goes out in its
// place among the chunks.
func (rq *request) written(p []byte) error {
	r := &rq.resp
	if rq.h.opts.writeBuffering && !r.hdrSent {
		if r.wbuf == nil {
			r.wbuf = newSpillBuffer(rq.h.opts.bufferSize, rq.h.opts.tempPath)
		}
		if _, err := r.wbuf.Write(p); err != nil {
			return fmt.Errorf("write buffering: %w", err)
		}
		return nil
	}
	if err := rq.commit(-1); err != nil {
		return err
	}
	rq.write(p)
	return nil
}

// finishBody ends a complete response: the headers if they have not gone
// out, what output buffering still holds, the end of a multipart range
// body, and the write deadline.
func (rq *request) finishBody() {
	r := &rq.resp
	if err := rq.commit(int64(len(r.out))); err != nil {
		rq.fail(err)
		return
	}
	if len(r.out) > 0 {
		rq.write(r.out)
		r.out = r.out[:0]
	}
	if r.rw != nil && r.werr == nil {
		if err := r.rw.finish(); err != nil {
			// The app's body was shorter than its length: the client
			// must not take what it got as whole.
			r.werr = err
			panic(http.ErrAbortHandler)
		}
	}
}

// commit sends the headers, if they have not gone out, and what write()
// buffered. rest is the length of the body still to come when known, else
// -1.
func (rq *request) commit(rest int64) error {
	r := &rq.resp
	if r.hdrSent {
		return nil
	}
	if r.wbuf == nil {
		return rq.sendHeaders(rest)
	}
	wbuf := r.wbuf
	r.wbuf = nil
	defer wbuf.Close()
	total := int64(-1)
	if rest >= 0 {
		total = wbuf.Len() + rest
	}
	if err := rq.sendHeaders(total); err != nil {
		return err
	}
	if r.rw == nil && (r.cl < 0 || r.cl >= wbuf.Len()) && !r.stop {
		// Straight from the temp file: sendfile where the writer can.
		n, err := wbuf.WriteTo(rq.sender())
		r.written += n
		if err != nil && r.werr == nil {
			r.werr = err
		}
		return nil
	}
	_, err := wbuf.WriteTo(bodyWriter{rq})
	if err != nil && r.werr == nil {
		r.werr = err
	}
	return nil
}

// bodyWriter writes through the request, so Content-Length cuts and
// ranges apply.
type bodyWriter struct{ rq *request }

func (w bodyWriter) Write(p []byte) (int, error) {
	w.rq.write(p)
	return len(p), w.rq.resp.werr
}

// sendHeaders writes the status and headers. length, when not -1, is the
// whole body's length, sent as Content-Length if the app gave none.
func (rq *request) sendHeaders(length int64) error {
	r := &rq.resp
	hdr := rq.w.Header()
	// The values' slices share one array, each capped at its one value:
	// a second header of a name appends to a copy.
	vals := make([]string, len(r.pending)+1)
	for i, h := range r.pending {
		key := textproto.CanonicalMIMEHeaderKey(h.name)
		if key == "Content-Length" {
			n, err := strconv.ParseInt(h.value, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("the application sent an invalid Content-Length %q", h.value)
			}
			r.cl = n
		}
		if firstOf(r.pending[:i], key) {
			vals[i] = h.value
			hdr[key] = vals[i : i+1 : i+1]
		} else {
			hdr[key] = append(hdr[key], h.value)
		}
	}
	if r.cl >= 0 {
		length = r.cl
	} else if length >= 0 && bodyAllowed(r.status) {
		n := len(r.pending)
		vals[n] = strconv.FormatInt(length, 10)
		hdr["Content-Length"] = vals[n : n+1 : n+1]
	}
	status := r.status
	if rq.h.opts.ranges && length >= 0 && status == http.StatusOK {
		if _, ok := hdr["Accept-Ranges"]; !ok {
			hdr["Accept-Ranges"] = []string{"bytes"}
		}
		if p := planRanges(rq.r.Header, rq.r.Method, status, hdr, length); p != nil {
			p.apply(hdr)
			r.plan, status = p, p.status
			if p.status == http.StatusPartialContent {
				r.rw = newRangeWriter(rq.sender(), p)
			} else {
				r.stop = true // 416: none of the body is wanted
			}
		}
	}
	rq.w.WriteHeader(status)
	r.hdrSent = true
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
func (rq *request) write(p []byte) {
	r := &rq.resp
	if r.werr != nil || r.stop {
		return
	}
	if r.cl >= 0 {
		if rem := r.cl - r.written; int64(len(p)) >= rem {
			p = p[:rem]
			r.stop = true
		}
	}
	if len(p) == 0 {
		return
	}
	r.written += int64(len(p))
	var err error
	if r.rw != nil {
		_, err = r.rw.Write(p)
		r.stop = r.stop || r.rw.done()
	} else {
		_, err = rq.sender().Write(p)
	}
	if err != nil && !errors.Is(err, http.ErrBodyNotAllowed) {
		r.werr = err
	}
}

// flush pushes what was written to the client before C is asked for more,
// as PEP 3333 requires of a gateway.
func (rq *request) flush() {
	r := &rq.resp
	if r.werr == nil && r.hdrSent {
		if err := http.NewResponseController(rq.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			r.werr = err
		}
	}
}

// sendPiece is the most a write sends at once under WithSendTimeout: a
// client that takes longer than the timeout to take that much is cut.
const sendPiece = 64 << 10

// sender returns the writer of the body: the ResponseWriter, watched by the
// handler's sendWatch under WithSendTimeout, as nginx's send_timeout bounds
// the time between two writes.
func (rq *request) sender() io.Writer {
	if rq.h.opts.sendTimeout <= 0 {
		return rq.w
	}
	if rq.resp.watched == nil {
		rq.h.sendWatch.watch(&rq.resp.ww, rq.w)
		rq.resp.watched = &rq.resp.ww
	}
	return watchedSender{rq}
}

type watchedSender struct{ rq *request }

func (w watchedSender) Write(p []byte) (int, error) {
	ww := w.rq.resp.watched
	n := 0
	for len(p) > 0 {
		k := min(len(p), sendPiece)
		ww.begin()
		m, err := w.rq.w.Write(p[:k])
		ww.end()
		n += m
		if err != nil {
			return n, timeoutErr(err, w.rq.h.opts.sendTimeout)
		}
		p = p[k:]
	}
	return n, nil
}

// ReadFrom sends a file (sendfile on a TCP connection) a piece at a time.
func (w watchedSender) ReadFrom(src io.Reader) (int64, error) {
	ww := w.rq.resp.watched
	var n int64
	for {
		ww.begin()
		m, err := io.CopyN(w.rq.w, src, 4*sendPiece)
		ww.end()
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, timeoutErr(err, w.rq.h.opts.sendTimeout)
		}
	}
}

func timeoutErr(err error, d time.Duration) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("the client read nothing for %v (WithSendTimeout): %w", d, err)
	}
	return err
}

// sendFile sends a wsgi.file_wrapper file from its current offset: through
// the ResponseWriter's ReadFrom, which uses sendfile on a TCP connection.
// The length is the app's Content-Length if it gave one, else the rest of
// the file. fd belongs to sendFile.
func (rq *request) sendFile(fd int, size int64) {
	r := &rq.resp
	f := os.NewFile(uintptr(fd), "wsgi.file_wrapper")
	defer f.Close()
	base, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		rq.fail(err)
		return
	}
	if err := rq.commit(size); err != nil {
		rq.fail(err)
		return
	}
	n := size
	if r.cl >= 0 && r.cl < n {
		n = r.cl
	}
	if rq.r.Method == http.MethodHead || !bodyAllowed(r.status) || r.stop {
		return
	}
	if r.plan != nil {
		r.rw = nil // the file's ranges are sent here, not fed through it
		written, err := sendFileRanges(rq.sender(), f, base, r.plan)
		r.written += written
		if err != nil && r.werr == nil {
			r.werr = err
		}
		return
	}
	written, err := io.Copy(rq.sender(), io.LimitReader(f, n))
	r.written += written
	if err == nil && written < n {
		err = io.ErrUnexpectedEOF // the file shrank
	}
	if err != nil && r.werr == nil {
		r.werr = err
	}
}

// fail reports an app error: before headers as a 500, after them by
// aborting the connection so the client cannot take a cut body as whole.
// A client that went away is no app error: the connection is dropped.
func (rq *request) fail(err error) {
	r := &rq.resp
	if r.failed {
		return
	}
	r.failed = true
	var pe *PythonError
	errors.As(err, &pe)
	timedOut := rq.watch != nil && rq.watch.fired()
	tooLarge := rq.tooLarge.Load()
	switch {
	case r.werr != nil && !timedOut:
		rq.logAt(slogDebug, evClientGone, "wsgi: the client went away", err)
		panic(http.ErrAbortHandler)
	case !timedOut && !tooLarge:
		rq.h.stats.errors.Add(1)
	}
	if r.hdrSent {
		msg := "wsgi: application error after the headers were sent; aborting the connection"
		if timedOut {
			msg = "wsgi: request timeout after the headers were sent; aborting the connection"
		}
		event := evAppError
		if timedOut {
			event = evTimeout
		}
		rq.logError(event, msg, err, "aborted", true)
		panic(http.ErrAbortHandler)
	}
	code := http.StatusInternalServerError
	switch {
	case timedOut:
		code = http.StatusGatewayTimeout
		rq.logAt(slogWarn, evTimeout, "wsgi: request timeout", err)
	case tooLarge:
		// The app failed because the body passed the limit: say so.
		code = http.StatusRequestEntityTooLarge
		rq.h.stats.rejected.Add(1)
		rq.logAt(slogInfo, evBodyLimit, "wsgi: request body over the limit", err)
	default:
		rq.logError(evAppError, "wsgi: application error", err)
	}
	if r.wbuf != nil {
		r.wbuf.Close()
		r.wbuf = nil
	}
	hdr := rq.w.Header()
	for _, h := range r.pending {
		hdr.Del(h.name)
	}
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	rq.w.WriteHeader(code)
	fmt.Fprintf(rq.w, "%d %s\n", code, http.StatusText(code))
}

// refuse answers a request that never ran: 503 with Retry-After.
func (rq *request) refuse(err error) {
	rq.h.stats.rejected.Add(1)
	rq.w.Header().Set("Retry-After", "1")
	http.Error(rq.w, "503 service unavailable: "+strings.TrimPrefix(err.Error(), "wsgi: "), http.StatusServiceUnavailable)
}
