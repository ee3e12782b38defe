package wsgi

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Byte-range support (RFC 9110 section 14) for responses whose full length
// is known before the body is sent.

// maxRanges caps the range-specs one request may ask for; more are taken
// as abuse and the response goes out whole (RFC 9110 section 14.2 lets a
// server ignore Range; section 17.15 warns about many small ranges).
const maxRanges = 16

// rangePlan is what a Range request makes of one response.
type rangePlan struct {
	status   int         // 206, or 416 for an unsatisfiable range
	ranges   []byteRange // ascending, non-overlapping; empty for 416
	size     int64       // the full representation's length
	boundary string      // set when len(ranges) > 1 (multipart/byteranges)
	ctype    string      // the response's Content-Type, for multipart part headers
}

type byteRange struct{ start, end int64 } // inclusive end

// planRanges decides what to do with a request's Range for a response. It
// returns nil when the response should go out whole as a 200, and a plan
// with status 416 when no range is satisfiable.
func planRanges(reqHeader http.Header, method string, status int, respHeader http.Header, size int64) *rangePlan {
	// Section 14.2: GET is the only method with range handling, and Range
	// is evaluated only where the response would otherwise be a 200.
	if method != http.MethodGet || status != http.StatusOK || size < 0 {
		return nil
	}
	rh := reqHeader.Values("Range")
	if len(rh) != 1 || len(respHeader.Values("Content-Range")) > 0 {
		return nil // none, or several lines: not one valid field value
	}
	if ir := reqHeader.Values("If-Range"); len(ir) > 0 && !ifRangeMatches(ir, respHeader) {
		return nil // section 13.1.5: ignore Range, send the whole 200
	}
	specs, ok := parseRange(rh[0])
	if !ok {
		return nil // section 14.2: a server MAY ignore an invalid Range
	}
	p := &rangePlan{status: http.StatusPartialContent, size: size, ctype: respHeader.Get("Content-Type")}
	for _, s := range specs {
		// Section 14.1.1: an int-range is satisfiable when first-pos <
		// length; a last-pos at or past the end means "to the end". A
		// suffix-range is the last suffix-length bytes, or all of them
		// when the representation is shorter; a zero suffix is not
		// satisfiable.
		var r byteRange
		switch {
		case s.start >= 0:
			if s.start >= size {
				continue
			}
			r = byteRange{s.start, min(s.end, size-1)}
		case s.end == 0:
			continue
		case size == 0:
			// A non-zero suffix is satisfiable even on an empty
			// representation, but no Content-Range can name zero
			// bytes: section 14.2 lets a server ignore Range when
			// the representation has no content, so send the 200.
			return nil
		default:
			r = byteRange{max(0, size-s.end), size - 1}
		}
		// We neither sort nor coalesce (section 14.2 allows either but
		// requires neither, and section 17.15 advises ignoring ranges out
		// of order or overlapping): such a Range is served whole.
		if n := len(p.ranges); n > 0 && r.start <= p.ranges[n-1].end {
			return nil
		}
		p.ranges = append(p.ranges, r)
	}
	if len(p.ranges) == 0 {
		p.status = http.StatusRequestedRangeNotSatisfiable
		return p
	}
	if len(p.ranges) > 1 {
		// A multipart/byteranges body cannot carry a Content-Encoding
		// cleanly: the field would claim the multipart body itself is
		// encoded. Send such a representation whole instead.
		if ce := respHeader.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			return nil
		}
		var b [15]byte
		rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		p.boundary = hex.EncodeToString(b[:])
	}
	return p
}

// rangeSpec is one parsed range-spec: an int-range (start >= 0, end the
// last-pos or MaxInt64 when absent) or a suffix-range (start -1, end the
// suffix-length).
type rangeSpec struct{ start, end int64 }

// parseRange parses a Range field value (RFC 9110 section 14.1.1 and 14.2):
//
//	ranges-specifier = range-unit "=" range-set
//	range-set        = 1#range-spec
//	range-spec       = int-range / suffix-range
//	int-range        = first-pos "-" [ last-pos ]
//	suffix-range     = "-" suffix-length
//
// It reports false for anything it does not accept, including a unit other
// than bytes, which an origin server must ignore (section 14.2).
func parseRange(v string) ([]rangeSpec, bool) {
	unit, set, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(unit, "bytes") { // units are case-insensitive (14.1)
		return nil, false
	}
	var specs []rangeSpec
	for elem := range strings.SplitSeq(set, ",") {
		// Section 5.6.1: OWS around list separators; empty elements are
		// to be ignored by a recipient.
		elem = strings.Trim(elem, " \t")
		if elem == "" {
			continue
		}
		if len(specs) == maxRanges {
			return nil, false
		}
		first, last, ok := strings.Cut(elem, "-")
		if !ok {
			return nil, false
		}
		var s rangeSpec
		if first == "" {
			n, ok := parsePos(last)
			if !ok {
				return nil, false
			}
			s = rangeSpec{-1, n}
		} else {
			a, ok := parsePos(first)
			if !ok {
				return nil, false
			}
			b := int64(math.MaxInt64)
			if last != "" {
				if b, ok = parsePos(last); !ok || b < a {
					return nil, false // section 14.1.1: last-pos < first-pos is invalid
				}
			}
			s = rangeSpec{a, b}
		}
		specs = append(specs, s)
	}
	return specs, len(specs) > 0
}

// parsePos parses 1*DIGIT. A value too big for int64 saturates: such a
// position is past any real end, which is what it means.
func parsePos(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := int64(s[i] - '0')
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// ifRangeMatches evaluates If-Range (RFC 9110 section 13.1.5) against the
// response's validators.
func ifRangeMatches(ir []string, resp http.Header) bool {
	if len(ir) != 1 {
		return false
	}
	v := strings.Trim(ir[0], " \t")
	// An entity-tag is told from an HTTP-date by its first characters.
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `W/"`) {
		// Strong comparison (section 8.8.3.2): both tags strong and
		// identical; a weak tag on either side never matches.
		et := resp.Values("ETag")
		return len(et) == 1 && strongETag(v) && strings.Trim(et[0], " \t") == v
	}
	// A date matches only if it is exactly the Last-Modified.
	lm := resp.Values("Last-Modified")
	if len(lm) != 1 {
		return false
	}
	t, err := http.ParseTime(v)
	m, err2 := http.ParseTime(lm[0])
	return err == nil && err2 == nil && t.Equal(m)
}

// strongETag reports whether s is a strong entity-tag (section 8.8.3):
// DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
func strongETag(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}

// contentRange is a Content-Range value for r (section 14.4).
func (p *rangePlan) contentRange(r byteRange) string {
	return "bytes " + strconv.FormatInt(r.start, 10) + "-" + strconv.FormatInt(r.end, 10) +
		"/" + strconv.FormatInt(p.size, 10)
}

// partHeader is the delimiter and header section before part i of a
// multipart/byteranges body (section 14.6, RFC 2046 section 5.1.1). The
// "\r\n" that ends each part's data belongs to the next delimiter in RFC
// 2046's terms; here it is written after the data, which is the same bytes.
// The body has no preamble, as in the example in section 14.6.
func (p *rangePlan) partHeader(i int) string {
	h := "--" + p.boundary + "\r\n"
	if p.ctype != "" {
		h += "Content-Type: " + p.ctype + "\r\n"
	}
	return h + "Content-Range: " + p.contentRange(p.ranges[i]) + "\r\n\r\n"
}

// closeDelimiter ends a multipart/byteranges body.
func (p *rangePlan) closeDelimiter() string { return "--" + p.boundary + "--\r\n" }

// contentLength is the exact length of the ranged body.
func (p *rangePlan) contentLength() int64 {
	var n int64
	for i, r := range p.ranges {
		n += r.end - r.start + 1
		if p.boundary != "" {
			n += int64(len(p.partHeader(i))) + 2
		}
	}
	if p.boundary != "" {
		n += int64(len(p.closeDelimiter()))
	}
	return n
}

// apply sets the response headers for the plan on h, replacing any
// Content-Length the app set.
func (p *rangePlan) apply(h http.Header) {
	h.Del("Content-Length")
	switch {
	case p.status == http.StatusRequestedRangeNotSatisfiable:
		// Section 15.5.17: Content-Range "bytes */length". The empty
		// content is not the representation, so its type and coding go.
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(p.size, 10))
		h.Del("Content-Type")
		h.Del("Content-Encoding")
		h.Set("Content-Length", "0")
		return
	case len(p.ranges) == 1:
		// Section 15.3.7.1: one part carries Content-Range itself.
		h.Set("Content-Range", p.contentRange(p.ranges[0]))
	default:
		// Section 15.3.7.2: several parts as multipart/byteranges; the
		// representation's Content-Type moves into each part.
		h.Set("Content-Type", "multipart/byteranges; boundary="+p.boundary)
	}
	h.Set("Content-Length", strconv.FormatInt(p.contentLength(), 10))
}

// rangeWriter turns the full body, fed in order, into the ranged body.
type rangeWriter struct {
	w    io.Writer
	p    *rangePlan
	off  int64 // offset in the full body of the next byte fed
	i    int   // the range being written
	open bool  // part i's header has been written
	err  error // the first error from w
}

// newRangeWriter returns a writer that sends to w only the bytes of p's
// ranges, framed as multipart/byteranges when there are several.
func newRangeWriter(w io.Writer, p *rangePlan) *rangeWriter {
	return &rangeWriter{w: w, p: p}
}

// Write takes the next bytes of the full body. It returns len(b) unless w
// failed, and then the first error from w.
func (rw *rangeWriter) Write(b []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	total := len(b)
	multi := rw.p.boundary != ""
	for len(b) > 0 && rw.i < len(rw.p.ranges) {
		r := rw.p.ranges[rw.i]
		if skip := r.start - rw.off; skip > 0 {
			if skip >= int64(len(b)) {
				break
			}
			b, rw.off = b[skip:], r.start
		}
		if multi && !rw.open {
			if rw.put([]byte(rw.p.partHeader(rw.i))) != nil {
				return total - len(b), rw.err
			}
			rw.open = true
		}
		n := min(int64(len(b)), r.end-rw.off+1)
		m, err := rw.w.Write(b[:n])
		b, rw.off = b[m:], rw.off+int64(m)
		if err == nil && int64(m) < n {
			err = io.ErrShortWrite
		}
		if err != nil {
			rw.err = err
			return total - len(b), err
		}
		if rw.off > r.end {
			if multi && rw.put([]byte("\r\n")) != nil {
				return total - len(b), rw.err
			}
			rw.i++
			rw.open = false
		}
	}
	rw.off += int64(len(b))
	return total, nil
}

// put writes framing to w, recording the first error.
func (rw *rangeWriter) put(s []byte) error {
	if n, err := rw.w.Write(s); err != nil || n < len(s) {
		rw.err = cmp.Or(err, io.ErrShortWrite)
	}
	return rw.err
}

// done reports whether every range has been written in full.
func (rw *rangeWriter) done() bool { return rw.i == len(rw.p.ranges) }

// finish writes the closing delimiter of a multipart body. If the body fed
// ended before the last range did, it returns io.ErrUnexpectedEOF and
// writes nothing: the response is short of its Content-Length anyway.
func (rw *rangeWriter) finish() error {
	if rw.err != nil {
		return rw.err
	}
	if !rw.done() {
		return io.ErrUnexpectedEOF
	}
	if rw.p.boundary != "" {
		return rw.put([]byte(rw.p.closeDelimiter()))
	}
	return nil
}

// sendFileRanges writes p's ranges of f, whose region starts at file offset
// base and is p.size bytes long, to w. Each range is copied with io.CopyN
// from the seeked file, so an http.ResponseWriter's ReadFrom can use
// sendfile. It returns the bytes of file data written and the first error.
func sendFileRanges(w io.Writer, f *os.File, base int64, p *rangePlan) (int64, error) {
	var total int64
	multi := p.boundary != ""
	for i, r := range p.ranges {
		if multi {
			if _, err := io.WriteString(w, p.partHeader(i)); err != nil {
				return total, err
			}
		}
		if _, err := f.Seek(base+r.start, io.SeekStart); err != nil {
			return total, err
		}
		n, err := io.CopyN(w, f, r.end-r.start+1)
		total += n
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file is shorter than p.size
		}
		if err != nil {
			return total, err
		}
		if multi {
			if _, err := io.WriteString(w, "\r\n"); err != nil {
				return total, err
			}
		}
	}
	if multi {
		if _, err := io.WriteString(w, p.closeDelimiter()); err != nil {
			return total, err
		}
	}
	return total, nil
}
