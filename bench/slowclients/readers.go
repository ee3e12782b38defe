package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gowsgi/wsgi/bench/compare/harness"
)

// reader is one slow client: it connects, sends one GET with Connection:
// close, and reads the response at a limited rate until the end or until
// its group is stopped. Its times are since the start of its group.
type reader struct {
	connected atomic.Int64 // when the connection was made, 0 until then
	headers   atomic.Int64 // when the response headers were in, 0 until then
	body      atomic.Int64 // body bytes read so far (chunked framing included)
	status    atomic.Int32 // the response's status code
	finished  atomic.Bool  // read to the end
	failed    atomic.Bool  // an error other than being stopped
	err       atomic.Pointer[string]
}

// readers is a group of slow clients started together.
type readers struct {
	start  time.Time
	list   []*reader
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startReaders starts n slow clients of path on addr, each reading about
// rate bytes a second through a socket whose receive buffer is rcvbuf
// bytes and which offers the server segments of mss bytes (0: the
// default). A response whose body ends before size bytes was cut.
func startReaders(ctx context.Context, n int, addr, path string, size int64, rate float64, rcvbuf, mss int) *readers {
	ctx, cancel := context.WithCancel(ctx)
	g := &readers{start: time.Now(), cancel: cancel}
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr))
	for range n {
		rd := &reader{}
		g.list = append(g.list, rd)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			rd.run(ctx, g.start, addr, req, size, rate, rcvbuf, mss)
		}()
	}
	return g
}

// stop closes every connection of the group and waits for its goroutines.
func (g *readers) stop() {
	g.cancel()
	g.wg.Wait()
}

// snapshot is what a group of readers has done by some time.
type snapshot struct {
	n          int
	connected  int
	headers    int     // got their response headers
	early      int     // got them within the -headers-within limit
	finished   int     // read their whole response
	failed     int     // an error other than being stopped
	non200     int     // a status other than 200
	bodyBytes  int64   // body bytes read by all
	rate       float64 // median body bytes a second of those that got headers
	firstError string
}

func (g *readers) snapshot(within time.Duration) snapshot {
	now := time.Since(g.start)
	s := snapshot{n: len(g.list)}
	var rates []float64
	for _, rd := range g.list {
		if rd.connected.Load() > 0 {
			s.connected++
		}
		body := rd.body.Load()
		s.bodyBytes += body
		if h := time.Duration(rd.headers.Load()); h > 0 {
			s.headers++
			if h <= within {
				s.early++
			}
			if st := rd.status.Load(); st != 200 {
				s.non200++
			}
			if el := (now - h).Seconds(); el > 0.5 && !rd.finished.Load() {
				rates = append(rates, float64(body)/el)
			}
		}
		if rd.finished.Load() {
			s.finished++
		}
		if rd.failed.Load() {
			s.failed++
			if e := rd.err.Load(); e != nil && s.firstError == "" {
				s.firstError = *e
			}
		}
	}
	s.rate = harness.Median(rates)
	return s
}

func (rd *reader) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopped: not a failure
	}
	msg := err.Error()
	rd.err.Store(&msg)
	rd.failed.Store(true)
}

func (rd *reader) run(ctx context.Context, start time.Time, addr string, req []byte, size int64, rate float64, rcvbuf, mss int) {
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		// Both are set before connect, so that the handshake carries them.
		// The small receive buffer makes the window offered small: the
		// kernel takes no more of the response than this buffer holds,
		// and the client's pace is what the server sees. The MSS is what
		// a client across an Ethernet path offers; left at loopback's
		// (64 KiB), it would let the server's kernel size the socket's
		// send buffer for whole megabytes, and take a 1 MiB body from the
		// server at once however slow the client.
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			if serr == nil && mss > 0 {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		rd.fail(ctx, err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	rd.connected.Store(int64(max(time.Since(start), 1)))
	if _, err := conn.Write(req); err != nil {
		rd.fail(ctx, err)
		return
	}
	buf := make([]byte, 4096)
	var head []byte
	inBody := false
	var total int64
	var t0 time.Time // the first byte of the response: the pace starts there
	for {
		n, err := conn.Read(buf)
		if n > 0 && t0.IsZero() {
			t0 = time.Now()
		}
		total += int64(n)
		if inBody {
			rd.body.Add(int64(n))
		} else {
			head = append(head, buf[:n]...)
			if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
				rd.status.Store(int32(statusCode(head)))
				rd.headers.Store(int64(max(time.Since(start), 1)))
				rd.body.Add(int64(len(head) - i - 4))
				inBody, head = true, nil
			}
		}
		if err != nil {
			switch {
			case !errors.Is(err, io.EOF):
				rd.fail(ctx, err)
			case !inBody:
				rd.fail(ctx, fmt.Errorf("closed after %d bytes, before the end of the headers", total))
			case rd.body.Load() < size:
				rd.fail(ctx, fmt.Errorf("closed after %d of %d body bytes", rd.body.Load(), size))
			default:
				rd.finished.Store(true)
			}
			return
		}
		if t0.IsZero() {
			continue
		}
		// Keep to the rate: the next read waits until the bytes read so
		// far are due.
		due := t0.Add(time.Duration(float64(total) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// statusCode reads the code of an HTTP/1.x status line, 0 if there is none.
func statusCode(head []byte) int {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 {
		return 0
	}
	c, _ := strconv.Atoi(string(f[1]))
	return c
}
