package wsgi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rangeBody is a full body of n bytes that differ from their neighbours.
func rangeBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func reqRange(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestPlanRangesParse(t *testing.T) {
	type br = byteRange
	tests := []struct {
		name  string
		rng   string
		size  int64
		want  []br // nil: planRanges returns nil
		is416 bool
	}{
		{"first 500", "bytes=0-499", 1000, []br{{0, 499}}, false},
		{"second 500", "bytes=500-999", 1000, []br{{500, 999}}, false},
		{"open", "bytes=500-", 1000, []br{{500, 999}}, false},
		{"suffix", "bytes=-500", 1000, []br{{500, 999}}, false},
		{"suffix longer than body", "bytes=-5000", 1000, []br{{0, 999}}, false},
		{"suffix equal to body", "bytes=-1000", 1000, []br{{0, 999}}, false},
		{"first and last byte", "bytes=0-0,-1", 1000, []br{{0, 0}, {999, 999}}, false},
		{"whitespace around commas", "bytes=0-0 ,\t-1", 1000, []br{{0, 0}, {999, 999}}, false},
		{"whitespace after comma", "bytes=0-1, 5-6, 9-", 10, []br{{0, 1}, {5, 6}, {9, 9}}, false},
		{"empty list elements", "bytes=,0-1,,5-6,", 10, []br{{0, 1}, {5, 6}}, false},
		{"unit case-insensitive", "Bytes=0-1", 10, []br{{0, 1}}, false},
		{"adjacent ranges", "bytes=0-4,5-9", 10, []br{{0, 4}, {5, 9}}, false},
		{"end clamped", "bytes=5-100", 10, []br{{5, 9}}, false},
		{"end overflows int64", "bytes=5-99999999999999999999999", 10, []br{{5, 9}}, false},
		{"suffix overflows int64", "bytes=-99999999999999999999999", 10, []br{{0, 9}}, false},
		{"single byte", "bytes=3-3", 10, []br{{3, 3}}, false},
		{"whole", "bytes=0-", 10, []br{{0, 9}}, false},
		{"unsatisfiable dropped", "bytes=0-1,10-20", 10, []br{{0, 1}}, false},
		{"zero suffix dropped", "bytes=-0,2-3", 10, []br{{2, 3}}, false},
		{"16 ranges", "bytes=" + nRanges(16), 100, seqRanges(16), false},

		{"start at size", "bytes=10-", 10, nil, true},
		{"start past size", "bytes=20-30", 10, nil, true},
		{"all unsatisfiable", "bytes=10-11,12-", 10, nil, true},
		{"zero suffix", "bytes=-0", 10, nil, true},
		{"start overflows int64", "bytes=99999999999999999999999-", 10, nil, true},
		{"empty body int-range", "bytes=0-499", 0, nil, true},
		{"empty body open", "bytes=0-", 0, nil, true},
		{"empty body zero suffix", "bytes=-0", 0, nil, true},
		{"empty body suffix", "bytes=-5", 0, nil, false},
		{"empty body int-range and suffix", "bytes=0-0,-5", 0, nil, false},

		{"17 ranges", "bytes=" + nRanges(17), 100, nil, false},
		{"other unit", "items=0-1", 10, nil, false},
		{"no equals", "bytes 0-1", 10, nil, false},
		{"space before equals", "bytes =0-1", 10, nil, false},
		{"empty set", "bytes=", 10, nil, false},
		{"only commas", "bytes=, ,", 10, nil, false},
		{"no dash", "bytes=5", 10, nil, false},
		{"lone dash", "bytes=-", 10, nil, false},
		{"letters", "bytes=a-b", 10, nil, false},
		{"plus sign", "bytes=+1-2", 10, nil, false},
		{"negative end", "bytes=1--2", 10, nil, false},
		{"three parts", "bytes=1-2-3", 10, nil, false},
		{"space inside spec", "bytes=1 -2", 10, nil, false},
		{"start after end", "bytes=5-3", 10, nil, false},
		{"start after end beyond size", "bytes=50-30", 10, nil, false},
		{"one bad spec spoils all", "bytes=0-1,x", 10, nil, false},
		{"descending", "bytes=5-6,0-1", 10, nil, false},
		{"overlapping", "bytes=0-5,5-6", 10, nil, false},
		{"overlap after suffix", "bytes=0-0,-1", 1, nil, false},
		{"suffix covers earlier", "bytes=-5,0-1", 10, nil, false},
		{"open then more", "bytes=2-,8-9", 10, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planRanges(reqRange("Range", tt.rng), "GET", 200, http.Header{"Content-Type": {"text/plain"}}, tt.size)
			switch {
			case tt.is416:
				require.NotNil(t, p)
				assert.Equal(t, 416, p.status)
				assert.Empty(t, p.ranges)
				assert.Empty(t, p.boundary)
			case tt.want == nil:
				assert.Nil(t, p)
			default:
				require.NotNil(t, p)
				assert.Equal(t, 206, p.status)
				assert.Equal(t, tt.want, p.ranges)
				assert.Equal(t, tt.size, p.size)
				assert.Equal(t, "text/plain", p.ctype)
				if len(tt.want) > 1 {
					assert.Regexp(t, `^[0-9a-f]{30}$`, p.boundary)
				} else {
					assert.Empty(t, p.boundary)
				}
			}
		})
	}
}

// nRanges is n disjoint ascending range-specs "0-0,2-2,...".
func nRanges(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	return strings.Join(s, ",")
}

func seqRanges(n int) []byteRange {
	r := make([]byteRange, n)
	for i := range r {
		r[i] = byteRange{int64(2 * i), int64(2 * i)}
	}
	return r
}

func TestPlanRangesConditions(t *testing.T) {
	const lm = "Wed, 21 Oct 2015 07:28:00 GMT"
	strong := http.Header{"Etag": {`"v1"`}, "Last-Modified": {lm}}
	tests := []struct {
		name   string
		req    http.Header
		method string
		status int
		resp   http.Header
		ok     bool // a 206 plan, else nil
	}{
		{"plain GET", reqRange("Range", "bytes=0-1"), "GET", 200, http.Header{}, true},
		{"HEAD", reqRange("Range", "bytes=0-1"), "HEAD", 200, http.Header{}, false},
		{"POST", reqRange("Range", "bytes=0-1"), "POST", 200, http.Header{}, false},
		{"lower-case get", reqRange("Range", "bytes=0-1"), "get", 200, http.Header{}, false},
		{"status 201", reqRange("Range", "bytes=0-1"), "GET", 201, http.Header{}, false},
		{"status 404", reqRange("Range", "bytes=0-1"), "GET", 404, http.Header{}, false},
		{"status 206 from app", reqRange("Range", "bytes=0-1"), "GET", 206, http.Header{}, false},
		{"no Range", reqRange(), "GET", 200, http.Header{}, false},
		{"two Range lines", reqRange("Range", "bytes=0-1", "Range", "bytes=3-4"), "GET", 200, http.Header{}, false},
		{"app set Content-Range", reqRange("Range", "bytes=0-1"), "GET", 200, http.Header{"Content-Range": {"bytes 0-9/10"}}, false},

		{"If-Range ETag match", reqRange("Range", "bytes=0-1", "If-Range", `"v1"`), "GET", 200, strong, true},
		{"If-Range ETag match with OWS", reqRange("Range", "bytes=0-1", "If-Range", ` "v1" `), "GET", 200, strong, true},
		{"If-Range ETag mismatch", reqRange("Range", "bytes=0-1", "If-Range", `"v2"`), "GET", 200, strong, false},
		{"If-Range weak ETag", reqRange("Range", "bytes=0-1", "If-Range", `W/"v1"`), "GET", 200,
			http.Header{"Etag": {`W/"v1"`}}, false},
		{"If-Range strong vs weak response ETag", reqRange("Range", "bytes=0-1", "If-Range", `"v1"`), "GET", 200,
			http.Header{"Etag": {`W/"v1"`}}, false},
		{"If-Range ETag, response has none", reqRange("Range", "bytes=0-1", "If-Range", `"v1"`), "GET", 200,
			http.Header{"Last-Modified": {lm}}, false},
		{"If-Range ETag list", reqRange("Range", "bytes=0-1", "If-Range", `"v1", "v2"`), "GET", 200, strong, false},
		{"If-Range date equal", reqRange("Range", "bytes=0-1", "If-Range", lm), "GET", 200, strong, true},
		{"If-Range date equal, RFC 850 form", reqRange("Range", "bytes=0-1", "If-Range", "Wednesday, 21-Oct-15 07:28:00 GMT"),
			"GET", 200, strong, true},
		{"If-Range date earlier", reqRange("Range", "bytes=0-1", "If-Range", "Wed, 21 Oct 2015 07:27:59 GMT"), "GET", 200, strong, false},
		{"If-Range date later", reqRange("Range", "bytes=0-1", "If-Range", "Wed, 21 Oct 2015 07:28:01 GMT"), "GET", 200, strong, false},
		{"If-Range date, no Last-Modified", reqRange("Range", "bytes=0-1", "If-Range", lm), "GET", 200,
			http.Header{"Etag": {`"v1"`}}, false},
		{"If-Range garbage", reqRange("Range", "bytes=0-1", "If-Range", "yesterday"), "GET", 200, strong, false},
		{"If-Range empty", reqRange("Range", "bytes=0-1", "If-Range", ""), "GET", 200, strong, false},
		{"two If-Range lines", reqRange("Range", "bytes=0-1", "If-Range", `"v1"`, "If-Range", `"v1"`), "GET", 200, strong, false},
		{"If-Range without Range", reqRange("If-Range", `"v1"`), "GET", 200, strong, false},

		{"Content-Encoding, one range", reqRange("Range", "bytes=0-1"), "GET", 200,
			http.Header{"Content-Encoding": {"gzip"}}, true},
		{"Content-Encoding, several ranges", reqRange("Range", "bytes=0-1,3-4"), "GET", 200,
			http.Header{"Content-Encoding": {"gzip"}}, false},
		{"Content-Encoding identity, several ranges", reqRange("Range", "bytes=0-1,3-4"), "GET", 200,
			http.Header{"Content-Encoding": {"identity"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planRanges(tt.req, tt.method, tt.status, tt.resp, 10)
			if !tt.ok {
				assert.Nil(t, p)
				return
			}
			require.NotNil(t, p)
			assert.Equal(t, 206, p.status)
		})
	}

	// An If-Range that does not match wins over an unsatisfiable range:
	// the whole 200 goes out, not a 416.
	assert.Nil(t, planRanges(reqRange("Range", "bytes=50-", "If-Range", `"old"`), "GET", 200, strong, 10))
	p := planRanges(reqRange("Range", "bytes=50-", "If-Range", `"v1"`), "GET", 200, strong, 10)
	require.NotNil(t, p)
	assert.Equal(t, 416, p.status)

	// Each multipart plan has its own boundary.
	a := planRanges(reqRange("Range", "bytes=0-1,3-4"), "GET", 200, http.Header{}, 10)
	b := planRanges(reqRange("Range", "bytes=0-1,3-4"), "GET", 200, http.Header{}, 10)
	assert.NotEqual(t, a.boundary, b.boundary)
}

func TestRangePlanApply(t *testing.T) {
	t.Run("one range", func(t *testing.T) {
		p := &rangePlan{status: 206, ranges: []byteRange{{10, 19}}, size: 100, ctype: "text/plain"}
		h := http.Header{"Content-Length": {"100"}, "Content-Type": {"text/plain"}, "Etag": {`"x"`}}
		p.apply(h)
		assert.Equal(t, http.Header{
			"Content-Range":  {"bytes 10-19/100"},
			"Content-Length": {"10"},
			"Content-Type":   {"text/plain"},
			"Etag":           {`"x"`},
		}, h)
	})
	t.Run("several ranges", func(t *testing.T) {
		p := &rangePlan{status: 206, ranges: []byteRange{{0, 0}, {99, 99}}, size: 100,
			ctype: "text/plain", boundary: "0123456789abcdef0123456789abcd"}
		h := http.Header{"Content-Length": {"100"}, "Content-Type": {"text/plain"}}
		p.apply(h)
		want := "--0123456789abcdef0123456789abcd\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/100\r\n\r\n" +
			"x\r\n" +
			"--0123456789abcdef0123456789abcd\r\nContent-Type: text/plain\r\nContent-Range: bytes 99-99/100\r\n\r\n" +
			"y\r\n" +
			"--0123456789abcdef0123456789abcd--\r\n"
		assert.Equal(t, http.Header{
			"Content-Length": {strconv.Itoa(len(want))},
			"Content-Type":   {"multipart/byteranges; boundary=0123456789abcdef0123456789abcd"},
		}, h)
	})
	t.Run("several ranges, no Content-Type", func(t *testing.T) {
		p := &rangePlan{status: 206, ranges: []byteRange{{0, 0}, {99, 99}}, size: 100, boundary: "b"}
		h := http.Header{}
		p.apply(h)
		want := "--b\r\nContent-Range: bytes 0-0/100\r\n\r\nx\r\n--b\r\nContent-Range: bytes 99-99/100\r\n\r\ny\r\n--b--\r\n"
		assert.Equal(t, strconv.Itoa(len(want)), h.Get("Content-Length"))
	})
	t.Run("416", func(t *testing.T) {
		p := &rangePlan{status: 416, size: 100}
		h := http.Header{"Content-Length": {"100"}, "Content-Type": {"text/plain"}, "Content-Encoding": {"gzip"}, "Etag": {`"x"`}}
		p.apply(h)
		assert.Equal(t, http.Header{
			"Content-Range":  {"bytes */100"},
			"Content-Length": {"0"},
			"Etag":           {`"x"`},
		}, h)
	})
	t.Run("416 empty body", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=0-"), "GET", 200, http.Header{}, 0)
		h := http.Header{}
		p.apply(h)
		assert.Equal(t, "bytes */0", h.Get("Content-Range"))
		assert.Equal(t, "0", h.Get("Content-Length"))
	})
}

// expectRanged builds the body a plan should produce, independently of
// the code under test: the framing of RFC 9110 section 14.6.
func expectRanged(body []byte, p *rangePlan) []byte {
	if p.boundary == "" {
		var out []byte
		for _, r := range p.ranges {
			out = append(out, body[r.start:r.end+1]...)
		}
		return out
	}
	var out bytes.Buffer
	for _, r := range p.ranges {
		fmt.Fprintf(&out, "--%s\r\n", p.boundary)
		if p.ctype != "" {
			fmt.Fprintf(&out, "Content-Type: %s\r\n", p.ctype)
		}
		fmt.Fprintf(&out, "Content-Range: bytes %d-%d/%d\r\n\r\n", r.start, r.end, p.size)
		out.Write(body[r.start : r.end+1])
		out.WriteString("\r\n")
	}
	fmt.Fprintf(&out, "--%s--\r\n", p.boundary)
	return out.Bytes()
}

// checkMultipart parses out as multipart/byteranges with the headers apply
// set and checks each part against p and body.
func checkMultipart(t *testing.T, out, body []byte, p *rangePlan) {
	t.Helper()
	h := http.Header{}
	p.apply(h)
	assert.Equal(t, strconv.Itoa(len(out)), h.Get("Content-Length"), "Content-Length vs body")
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/byteranges", mt)
	mr := multipart.NewReader(bytes.NewReader(out), params["boundary"])
	for i, r := range p.ranges {
		part, err := mr.NextPart()
		require.NoError(t, err, "part %d", i)
		assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", r.start, r.end, p.size), part.Header.Get("Content-Range"))
		assert.Equal(t, p.ctype, part.Header.Get("Content-Type"))
		data, err := io.ReadAll(part)
		require.NoError(t, err)
		assert.Equal(t, body[r.start:r.end+1], data, "part %d", i)
	}
	_, err = mr.NextPart()
	assert.Equal(t, io.EOF, err)
}

func TestRangeWriter(t *testing.T) {
	const size = 1000
	body := rangeBody(size)
	headers := []string{
		"bytes=0-0", "bytes=0-499", "bytes=500-", "bytes=-1", "bytes=-5000", "bytes=137-612",
		"bytes=0-0,-1", "bytes=0-4,5-9", "bytes=10-19, 30-39 ,998-", "bytes=3-3,7-7,100-356,400-400,401-999",
		"bytes=" + nRanges(16),
	}
	ctypes := []string{"application/octet-stream", ""}
	chunks := []int{1, 2, 3, 7, 64, 499, 500, 501, size, size + 1}
	for _, rh := range headers {
		for _, ct := range ctypes {
			resp := http.Header{}
			if ct != "" {
				resp.Set("Content-Type", ct)
			}
			p := planRanges(reqRange("Range", rh), "GET", 200, resp, size)
			require.NotNil(t, p, rh)
			require.Equal(t, 206, p.status, rh)
			want := expectRanged(body, p)
			hdr := http.Header{}
			p.apply(hdr)
			for _, chunk := range chunks {
				t.Run(fmt.Sprintf("%s/%q/%d", rh, ct, chunk), func(t *testing.T) {
					var out bytes.Buffer
					rw := newRangeWriter(&out, p)
					for off := 0; off < size; off += chunk {
						end := min(off+chunk, size)
						n, err := rw.Write(body[off:end])
						require.NoError(t, err)
						require.Equal(t, end-off, n)
					}
					require.True(t, rw.done())
					require.NoError(t, rw.finish())
					assert.Equal(t, want, out.Bytes())
					assert.Equal(t, strconv.Itoa(out.Len()), hdr.Get("Content-Length"))
					if len(p.ranges) > 1 {
						checkMultipart(t, out.Bytes(), body, p)
					}
				})
			}
		}
	}
}

func TestRangeWriterDone(t *testing.T) {
	const size = 100
	body := rangeBody(size)
	for _, rh := range []string{"bytes=0-0", "bytes=10-19", "bytes=10-19,50-59", "bytes=5-6,-1", "bytes=90-"} {
		t.Run(rh, func(t *testing.T) {
			p := planRanges(reqRange("Range", rh), "GET", 200, http.Header{}, size)
			require.NotNil(t, p)
			last := p.ranges[len(p.ranges)-1].end
			var out bytes.Buffer
			rw := newRangeWriter(&out, p)
			for i := int64(0); i < size; i++ {
				assert.False(t, rw.done(), "before byte %d", i)
				_, err := rw.Write(body[i : i+1])
				require.NoError(t, err)
				if i == last {
					assert.True(t, rw.done(), "right after byte %d", i)
					break
				}
			}
			// The caller may stop here, without feeding the rest.
			require.NoError(t, rw.finish())
			assert.Equal(t, expectRanged(body, p), out.Bytes())
		})
	}

	t.Run("empty writes and writes after done", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=2-3"), "GET", 200, http.Header{}, 10)
		var out bytes.Buffer
		rw := newRangeWriter(&out, p)
		n, err := rw.Write(nil)
		assert.Equal(t, 0, n)
		assert.NoError(t, err)
		n, err = rw.Write(body[:10])
		assert.Equal(t, 10, n)
		assert.NoError(t, err)
		assert.True(t, rw.done())
		n, err = rw.Write(body[:5])
		assert.Equal(t, 5, n)
		assert.NoError(t, err)
		assert.NoError(t, rw.finish())
		assert.Equal(t, body[2:4], out.Bytes())
	})

	t.Run("416 plan writes nothing", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=50-"), "GET", 200, http.Header{}, 10)
		require.Equal(t, 416, p.status)
		var out bytes.Buffer
		rw := newRangeWriter(&out, p)
		assert.True(t, rw.done())
		n, err := rw.Write(body[:10])
		assert.Equal(t, 10, n)
		assert.NoError(t, err)
		assert.NoError(t, rw.finish())
		assert.Zero(t, out.Len())
	})

	t.Run("body ends early", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=2-3,8-9"), "GET", 200, http.Header{}, 10)
		rw := newRangeWriter(io.Discard, p)
		_, err := rw.Write(body[:9])
		require.NoError(t, err)
		assert.False(t, rw.done())
		assert.ErrorIs(t, rw.finish(), io.ErrUnexpectedEOF)
	})
}

// failWriter accepts ok bytes, then fails.
type failWriter struct {
	ok  int
	err error
}

func (w *failWriter) Write(b []byte) (int, error) {
	if len(b) <= w.ok {
		w.ok -= len(b)
		return len(b), nil
	}
	n := w.ok
	w.ok = 0
	return n, w.err
}

func TestRangeWriterErrors(t *testing.T) {
	body := rangeBody(100)
	boom := errors.New("boom")
	for _, rh := range []string{"bytes=10-19", "bytes=10-19,50-59"} {
		p := planRanges(reqRange("Range", rh), "GET", 200, http.Header{}, 100)
		full := len(expectRanged(body, p))
		for ok := 0; ok < full; ok++ {
			t.Run(fmt.Sprintf("%s/%d", rh, ok), func(t *testing.T) {
				rw := newRangeWriter(&failWriter{ok: ok, err: boom}, p)
				var err error
				for i := 0; i < 100 && err == nil; i += 7 {
					var n int
					n, err = rw.Write(body[i:min(i+7, 100)])
					if err == nil {
						assert.Equal(t, min(i+7, 100)-i, n)
					} else {
						assert.Less(t, n, min(i+7, 100)-i)
					}
				}
				if err == nil {
					err = rw.finish()
				}
				require.ErrorIs(t, err, boom)
				// The first error sticks.
				n, err := rw.Write(body[:1])
				assert.Zero(t, n)
				assert.ErrorIs(t, err, boom)
				assert.ErrorIs(t, rw.finish(), boom)
			})
		}
	}

	t.Run("short write without error", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=0-9"), "GET", 200, http.Header{}, 100)
		rw := newRangeWriter(&failWriter{ok: 5}, p)
		_, err := rw.Write(body)
		assert.ErrorIs(t, err, io.ErrShortWrite)
	})
}

func TestSendFileRanges(t *testing.T) {
	const size = 1000
	body := rangeBody(size)
	for _, base := range []int64{0, 100} {
		// The region is body at base, with other bytes before and after.
		content := append(append(bytes.Repeat([]byte{'<'}, int(base)), body...), bytes.Repeat([]byte{'>'}, 50)...)
		path := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(path, content, 0o600))
		f, err := os.Open(path)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		for _, rh := range []string{"bytes=0-0", "bytes=-1", "bytes=0-", "bytes=137-612", "bytes=0-0,-1", "bytes=10-19,30-39,998-"} {
			t.Run(fmt.Sprintf("base %d/%s", base, rh), func(t *testing.T) {
				p := planRanges(reqRange("Range", rh), "GET", 200, http.Header{"Content-Type": {"text/plain"}}, size)
				require.NotNil(t, p)
				var out bytes.Buffer
				n, err := sendFileRanges(&out, f, base, p)
				require.NoError(t, err)
				var data int64
				for _, r := range p.ranges {
					data += r.end - r.start + 1
				}
				assert.Equal(t, data, n)
				assert.Equal(t, expectRanged(body, p), out.Bytes())
				hdr := http.Header{}
				p.apply(hdr)
				assert.Equal(t, strconv.Itoa(out.Len()), hdr.Get("Content-Length"))
				if len(p.ranges) > 1 {
					checkMultipart(t, out.Bytes(), body, p)
				}
			})
		}
	}

	t.Run("file shorter than size", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "short")
		require.NoError(t, os.WriteFile(path, body[:50], 0o600))
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		p := planRanges(reqRange("Range", "bytes=40-59"), "GET", 200, http.Header{}, 100)
		n, err := sendFileRanges(io.Discard, f, 0, p)
		assert.Equal(t, int64(10), n)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	})

	t.Run("writer fails", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(path, body, 0o600))
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		boom := errors.New("boom")
		p := planRanges(reqRange("Range", "bytes=0-9,20-29"), "GET", 200, http.Header{}, size)
		_, err = sendFileRanges(&failWriter{ok: 60, err: boom}, f, 0, p)
		assert.ErrorIs(t, err, boom)
	})

	t.Run("416 plan", func(t *testing.T) {
		p := planRanges(reqRange("Range", "bytes=5000-"), "GET", 200, http.Header{}, size)
		var out bytes.Buffer
		n, err := sendFileRanges(&out, nil, 0, p)
		assert.NoError(t, err)
		assert.Zero(t, n)
		assert.Zero(t, out.Len())
	})
}

func TestRangeParsePos(t *testing.T) {
	for s, want := range map[string]int64{
		"0": 0, "007": 7, "9223372036854775807": math.MaxInt64,
		"9223372036854775808": math.MaxInt64, "99999999999999999999999999": math.MaxInt64,
		"9223372036854775806": math.MaxInt64 - 1,
	} {
		n, ok := parsePos(s)
		assert.True(t, ok, s)
		assert.Equal(t, want, n, s)
	}
	for _, s := range []string{"", "-1", "+1", " 1", "1 ", "1a", "0x1"} {
		_, ok := parsePos(s)
		assert.False(t, ok, s)
	}
}
