package wsgi

import (
	"io"
	"net/http"
	"sync"
)

// earlyMax is the largest request body read before the app runs. Above it
// the copies (into a Go buffer, then C's) cost about what the calls saved:
// a 64 KiB echo over loopback served no more requests read early, a 1 KiB
// one 1-5% more at 0.3-1.4 us less CPU each (two runs of three rounds).
const earlyMax = 16 << 10

// earlyBufs holds the buffers of readEarly: earlyMax bytes and one more,
// to see whether the body ends where its length says.
var earlyBufs = sync.Pool{New: func() any { b := make([]byte, earlyMax+1); return &b }}

// An earlyBody is the start of a request body, read before the request
// takes a place among the handler's threads. C copies it into wsgi.input's
// buffer, whose reads then need no call back into Go (each costs a release
// and a fresh acquire of the GIL) until it is used up.
type earlyBody struct {
	buf *[]byte // from earlyBufs, or nil
	n   int     // bytes of buf read
	eof bool    // the body ends after them
	err error   // what reading met, for the app's first read past them
}

// readEarly reads a body of known length, up to earlyMax, before the
// request waits for a thread, so that a client slow to send it holds no
// thread (nor counts against WithRequestTimeout, which starts when the app
// is called). A body sent after "Expect: 100-continue" is left to the app:
// reading it would tell the client to send it, which is the app's
// decision.
func readEarly(r *http.Request) earlyBody {
	n := int(r.ContentLength)
	if r.Body == nil || r.Body == http.NoBody {
		return earlyBody{eof: n <= 0}
	}
	if n <= 0 || n > earlyMax || r.Header.Get("Expect") != "" {
		return earlyBody{}
	}
	e := earlyBody{buf: earlyBufs.Get().(*[]byte)}
	b := *e.buf
	e.n, e.err = io.ReadFull(r.Body, b[:n])
	switch {
	case e.err == io.EOF: // nothing came: an empty body, as a read would say
		e.err, e.eof = nil, true
	case e.err == nil:
		// One more read tells whether the body ends at its length: a
		// server's request body does, one that Go middleware replaced
		// need not, and the app then reads on as it would have.
		k, err := r.Body.Read(b[n:])
		e.n += k
		switch {
		case err == io.EOF:
			e.eof = true
		case err != nil && k == 0:
			e.err = err
		}
	}
	return e
}

// free returns the buffer once the request is over.
func (e *earlyBody) free() {
	if e.buf != nil {
		earlyBufs.Put(e.buf)
		e.buf = nil
	}
}
