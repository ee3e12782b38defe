package wsgi

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
)

// tempPath is a parsed WithTempPath setting.
type tempPath struct {
	dir    string
	levels []int // each 1 or 2, at most 3
}

// tempSeq numbers temp files process-wide. It starts at a random value so
// that processes sharing a directory rarely collide; O_EXCL settles the rest.
var tempSeq atomic.Uint32

func init() { tempSeq.Store(rand.Uint32()) }

// maxTempTries bounds the name retries in create, so a directory full of
// stale files, or a file system that always says EEXIST, is an error rather
// than a hang.
const maxTempTries = 1000

// newTempPath checks the setting: levels must be 1 or 2 and at most 3 of
// them; dir is made absolute and created if missing (MkdirAll 0o700); it
// must be writable, which it proves by creating and removing a probe file.
// Errors name the option, like: `WithTempPath("/x", 3): each level must be 1 or 2 digits`.
func newTempPath(dir string, levels ...int) (*tempPath, error) {
	fail := func(err error) (*tempPath, error) {
		var opt strings.Builder
		fmt.Fprintf(&opt, "WithTempPath(%q", dir)
		for _, l := range levels {
			fmt.Fprintf(&opt, ", %d", l)
		}
		return nil, fmt.Errorf("%s): %w", opt.String(), err)
	}
	if dir == "" {
		return fail(errors.New("an empty directory; give a path"))
	}
	if len(levels) > 3 {
		return fail(errors.New("at most 3 levels"))
	}
	for _, l := range levels {
		if l != 1 && l != 2 {
			return fail(errors.New("each level must be 1 or 2 digits"))
		}
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o700)
	}
	if err != nil {
		return fail(err)
	}
	t := &tempPath{dir: abs, levels: slices.Clone(levels)}
	probe, err := t.create()
	if err != nil {
		return fail(fmt.Errorf("not writable: %w", err))
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return fail(err)
	}
	return t, nil
}

// path is where the file called name lives: under dir, one sub-directory per
// level, each named by the name's digits taken from the end, so levels 1 2
// put 0000000123 at dir/3/12/0000000123.
func (t *tempPath) path(name string) string {
	parts := []string{t.dir}
	end := len(name)
	for _, l := range t.levels {
		parts = append(parts, name[end-l:end])
		end -= l
	}
	return filepath.Join(append(parts, name)...)
}

// create makes a new, empty temp file under the path, creating the level
// sub-directories as needed (0o700). File names are 10-digit decimal numbers
// from a process-wide atomic counter seeded randomly, opened with
// O_RDWR|O_CREATE|O_EXCL (retry on EEXIST with the next number), mode 0o600.
func (t *tempPath) create() (*os.File, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	var err error
	for range maxTempTries {
		name := t.path(fmt.Sprintf("%010d", tempSeq.Add(1)))
		var f *os.File
		f, err = os.OpenFile(name, flags, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			// Level directories are made on first use, as nginx does.
			if err = os.MkdirAll(filepath.Dir(name), 0o700); err == nil {
				f, err = os.OpenFile(name, flags, 0o600)
			}
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("no free temp file name in %s after %d tries: %w", t.dir, maxTempTries, err)
}

// spillBuffer holds written data in memory up to limit bytes, then moves
// everything into a temp file from tp and appends there.
type spillBuffer struct {
	limit int
	tp    *tempPath
	mem   []byte   // the data, until it outgrows limit
	file  *os.File // the data, after that
	n     int64    // total bytes written
	err   error    // sticky: after a failed or closed write, all fail
}

func newSpillBuffer(limit int, tp *tempPath) *spillBuffer {
	return &spillBuffer{limit: limit, tp: tp}
}

// Write appends p (memory while the total stays <= limit, else the file).
func (b *spillBuffer) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.file == nil && b.n+int64(len(p)) <= int64(b.limit) {
		b.mem = append(b.mem, p...)
		b.n += int64(len(p))
		return len(p), nil
	}
	if b.file == nil {
		if err := b.spill(); err != nil {
			b.err = err
			return 0, err
		}
	}
	// WriteAt keeps appending right regardless of where WriteTo left the
	// file offset.
	n, err := b.file.WriteAt(p, b.n)
	b.n += int64(n)
	if err != nil {
		b.err = err
	}
	return n, err
}

// spill moves the memory contents into a new temp file.
func (b *spillBuffer) spill() error {
	if b.tp == nil {
		return errors.New("wsgi: write buffer full and no temp path to spill to")
	}
	f, err := b.tp.create()
	if err != nil {
		return err
	}
	b.file = f // set first, so Close removes it even if the copy fails
	if _, err := f.Write(b.mem); err != nil {
		return err
	}
	b.mem = nil
	return nil
}

// Len is the total bytes written.
func (b *spillBuffer) Len() int64 { return b.n }

// WriteTo sends everything written so far to w, from the start; from a
// spilled file it uses io.Copy with the *os.File (seeked to 0) as the source
// so that an http.ResponseWriter's ReadFrom can use sendfile. It may be
// called once.
func (b *spillBuffer) WriteTo(w io.Writer) (int64, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.file == nil {
		if len(b.mem) == 0 {
			return 0, nil // no empty Write, which could commit headers
		}
		n, err := w.Write(b.mem)
		return int64(n), err
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, b.file)
}

// Close removes the temp file, if any, and drops the memory. Safe to call
// more than once, and after an error.
func (b *spillBuffer) Close() error {
	b.mem = nil
	if b.err == nil {
		b.err = os.ErrClosed
	}
	if b.file == nil {
		return nil
	}
	f := b.file
	b.file = nil
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// spilled reports whether a temp file is in use (for tests and stats).
func (b *spillBuffer) spilled() bool { return b.file != nil }
