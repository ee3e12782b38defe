package wsgi

import (
	"io"
	"net/http"
)

// earlyMax is the largest request body read before the app runs. Above it
// the copies cost about what the reads from Python save (bench/RESULTS.md).
const earlyMax = 16 << 10

// An earlyBody is the start of a request body, read before the request
// takes a place among the interpreter's threads, straight into the buffer
// of wsgi.input in the request's slot: the app's reads then need no call
// back into Go until it is used up, and a client slow to send its body
// holds no thread.
type earlyBody struct {
	n   int   // bytes read
	eof bool  // the body ends after them
	err error // what reading met, for the app's first read past them
}

// readEarly reads a body of known length, up to earlyMax, into buf (which
// holds more than earlyMax bytes). A body sent after "Expect: 100-continue"
// is left to the app: reading it would tell the client to send it, which
// is the app's decision.
func readEarly(r *http.Request, buf []byte) earlyBody {
	n := int(r.ContentLength)
	if r.Body == nil || r.Body == http.NoBody {
		return earlyBody{eof: n <= 0}
	}
	if n <= 0 || n > earlyMax || len(buf) < n+earlyMax || r.Header.Get("Expect") != "" {
		return earlyBody{}
	}
	var e earlyBody
	e.n, e.err = io.ReadFull(r.Body, buf[:n])
	switch {
	case e.err == io.EOF: // nothing came: an empty body, as a read would say
		e.err, e.eof = nil, true
	case e.err == nil:
		// One more read tells whether the body ends at its length: a
		// server's request body does, one that Go middleware replaced
		// need not, and the app then reads on as it would have.
		k, err := r.Body.Read(buf[n : n+earlyMax])
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
