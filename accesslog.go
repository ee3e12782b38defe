package wsgi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// An accessLog writes one line per request in Apache's combined format,
// followed by the request's id, as in the handler's log records:
//
//	host - user [time] "request line" status bytes "referer" "user agent" id
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

// loggingWriter counts what a response sends. It passes Flush, ReadFrom
// (sendfile) and Unwrap through, so wrapping costs the gateway nothing.
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (lw *loggingWriter) WriteHeader(code int) {
	if lw.status == 0 && code >= 200 {
		lw.status = code
	}
	lw.ResponseWriter.WriteHeader(code)
}

func (lw *loggingWriter) Write(p []byte) (int, error) {
	if lw.status == 0 {
		lw.status = http.StatusOK
	}
	n, err := lw.ResponseWriter.Write(p)
	lw.bytes += int64(n)
	return n, err
}

func (lw *loggingWriter) ReadFrom(r io.Reader) (int64, error) {
	if lw.status == 0 {
		lw.status = http.StatusOK
	}
	n, err := io.Copy(lw.ResponseWriter, r)
	lw.bytes += n
	return n, err
}

func (lw *loggingWriter) Flush() { http.NewResponseController(lw.ResponseWriter).Flush() }

func (lw *loggingWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// serve runs next with a counting writer and logs the line afterwards,
// also when next panics (an aborted response).
func (l *accessLog) serve(w http.ResponseWriter, r *http.Request, id requestID, next func(http.ResponseWriter, *http.Request, requestID)) {
	start := time.Now()
	lw := &loggingWriter{ResponseWriter: w}
	defer func() { l.write(r, lw, start, id) }()
	next(lw, r, id)
}

func (l *accessLog) write(r *http.Request, lw *loggingWriter, start time.Time, id requestID) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	user := "-"
	if u, _, ok := r.BasicAuth(); ok && u != "" {
		user = u
	}
	status := lw.status
	if status == 0 {
		status = http.StatusOK
	}
	size := "-"
	if lw.bytes > 0 {
		size = strconv.FormatInt(lw.bytes, 10)
	}
	var b strings.Builder
	b.WriteString(host)
	b.WriteString(" - ")
	b.WriteString(user)
	b.WriteString(start.Format(" [02/Jan/2006:15:04:05 -0700] "))
	b.WriteString(strconv.Quote(r.Method + " " + r.RequestURI + " " + r.Proto))
	b.WriteString(" " + strconv.Itoa(status) + " " + size + " ")
	b.WriteString(quoteOrDash(r.Referer()))
	b.WriteByte(' ')
	b.WriteString(quoteOrDash(r.UserAgent()))
	b.WriteByte(' ')
	b.WriteString(id.String())
	b.WriteByte('\n')
	l.mu.Lock()
	io.WriteString(l.w, b.String())
	if bw, ok := l.w.(*bufio.Writer); ok {
		bw.Flush()
	}
	l.mu.Unlock()
}

func quoteOrDash(s string) string {
	if s == "" {
		return `"-"`
	}
	return strconv.Quote(s)
}
