package wsgi

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tempFiles lists the non-directories under dir, relative to it.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return err
	})
	require.NoError(t, err)
	return files
}

func TestTempPathErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	for _, tc := range []struct {
		dir    string
		levels []int
		want   string
	}{
		{"/x", []int{0}, `WithTempPath("/x", 0): each level must be 1 or 2 digits`},
		{"/x", []int{3}, `WithTempPath("/x", 3): each level must be 1 or 2 digits`},
		{"/x", []int{1, 2, -1}, `WithTempPath("/x", 1, 2, -1): each level must be 1 or 2 digits`},
		{"/x", []int{1, 1, 1, 1}, `WithTempPath("/x", 1, 1, 1, 1): at most 3 levels`},
		{"", nil, `WithTempPath(""): an empty directory; give a path`},
		{file, nil, fmt.Sprintf("WithTempPath(%q): mkdir %s: not a directory", file, file)},
		{filepath.Join(file, "sub"), []int{1}, "not a directory"},
	} {
		tp, err := newTempPath(tc.dir, tc.levels...)
		assert.Nil(t, tp)
		if assert.Error(t, err, tc.dir) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
	assert.Equal(t, []string{"file"}, tempFiles(t, dir), "nothing was created")

	t.Run("read-only", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory modes")
		}
		ro := filepath.Join(t.TempDir(), "ro")
		require.NoError(t, os.Mkdir(ro, 0o500))
		_, err := newTempPath(ro)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("WithTempPath(%q): not writable: ", ro))
	})

	// Even root cannot create files in /proc, so this exercises the probe
	// failure whoever runs the tests.
	t.Run("proc", func(t *testing.T) {
		if _, err := os.Stat("/proc/self"); err != nil {
			t.Skip("no /proc")
		}
		_, err := newTempPath("/proc", 1)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `WithTempPath("/proc", 1): not writable: `)
	})
}

func TestTempPathLevels(t *testing.T) {
	for _, levels := range [][]int{nil, {1}, {1, 2}, {2, 2, 2}} {
		t.Run(fmt.Sprint(levels), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "made", "by", "newTempPath")
			tp, err := newTempPath(dir, levels...)
			require.NoError(t, err)
			assert.Empty(t, tempFiles(t, dir), "the probe file is removed")

			for range 3 {
				f, err := tp.create()
				require.NoError(t, err)
				require.NoError(t, f.Close())

				rel, err := filepath.Rel(dir, f.Name())
				require.NoError(t, err)
				parts := strings.Split(rel, string(filepath.Separator))
				require.Len(t, parts, len(levels)+1, rel)
				name := parts[len(levels)]
				assert.Regexp(t, `^\d{10}$`, name)
				end := len(name)
				for i, l := range levels {
					assert.Equal(t, name[end-l:end], parts[i], "level %d of %s", i+1, rel)
					end -= l
				}

				st, err := os.Stat(f.Name())
				require.NoError(t, err)
				assert.Equal(t, fs.FileMode(0o600), st.Mode().Perm())
				assert.Zero(t, st.Size())
				require.NoError(t, os.Remove(f.Name()))
			}
		})
	}

	// 0000000123 with levels 1 2 lives at dir/3/12/0000000123, as in nginx.
	tp := &tempPath{dir: "/t", levels: []int{1, 2}}
	assert.Equal(t, filepath.FromSlash("/t/3/12/0000000123"), tp.path("0000000123"))
}

func TestTempPathCreateRetriesTakenName(t *testing.T) {
	dir := t.TempDir()
	tp, err := newTempPath(dir, 1)
	require.NoError(t, err)
	taken := tp.path(fmt.Sprintf("%010d", tempSeq.Load()+1))
	require.NoError(t, os.MkdirAll(filepath.Dir(taken), 0o700))
	require.NoError(t, os.WriteFile(taken, []byte("old"), 0o600))

	f, err := tp.create()
	require.NoError(t, err)
	defer os.Remove(f.Name())
	defer f.Close()
	assert.NotEqual(t, taken, f.Name())
	old, err := os.ReadFile(taken)
	require.NoError(t, err)
	assert.Equal(t, "old", string(old), "an existing file is never truncated")
}

func TestSpillBuffer(t *testing.T) {
	const limit = 100
	chunk := func(n int) []byte { return bytes.Repeat([]byte{'a' + byte(n%26)}, n) }
	many := make([][]byte, 1000)
	for i := range many {
		many[i] = chunk(i%13 + 1)
	}
	for _, tc := range []struct {
		name    string
		writes  [][]byte
		spilled bool
	}{
		{"empty", nil, false},
		{"below", [][]byte{chunk(99)}, false},
		{"at", [][]byte{chunk(60), chunk(40)}, false},
		{"above", [][]byte{chunk(101)}, true},
		{"above by one more write", [][]byte{chunk(60), chunk(40), chunk(1)}, true},
		{"many small", many, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tp, err := newTempPath(dir, 1, 2)
			require.NoError(t, err)
			b := newSpillBuffer(limit, tp)
			var want bytes.Buffer
			for _, p := range tc.writes {
				n, err := b.Write(p)
				require.NoError(t, err)
				require.Equal(t, len(p), n)
				want.Write(p)
			}
			assert.Equal(t, tc.spilled, b.spilled())
			assert.Equal(t, int64(want.Len()), b.Len())
			if tc.spilled {
				assert.Len(t, tempFiles(t, dir), 1)
			} else {
				assert.Empty(t, tempFiles(t, dir))
			}

			var got bytes.Buffer
			n, err := b.WriteTo(&got)
			require.NoError(t, err)
			assert.Equal(t, int64(want.Len()), n)
			assert.Equal(t, want.Bytes(), got.Bytes())

			require.NoError(t, b.Close())
			assert.False(t, b.spilled())
			assert.Empty(t, tempFiles(t, dir))
		})
	}
}

// readerFrom records whether io.Copy handed it the source via ReadFrom.
type readerFrom struct {
	bytes.Buffer
	used bool
}

func (r *readerFrom) ReadFrom(src io.Reader) (int64, error) {
	r.used = true
	return r.Buffer.ReadFrom(src)
}

func TestSpillBufferWriteToUsesReadFrom(t *testing.T) {
	tp, err := newTempPath(t.TempDir())
	require.NoError(t, err)
	b := newSpillBuffer(4, tp)
	defer b.Close()
	_, err = b.Write([]byte("hello, world"))
	require.NoError(t, err)
	var w readerFrom
	_, err = b.WriteTo(&w)
	require.NoError(t, err)
	assert.True(t, w.used)
	assert.Equal(t, "hello, world", w.String())

	// Writes after WriteTo still append, whatever the file offset.
	_, err = b.Write([]byte("!"))
	require.NoError(t, err)
	w.Reset()
	_, err = b.WriteTo(&w)
	require.NoError(t, err)
	assert.Equal(t, "hello, world!", w.String())
}

func TestSpillBufferClose(t *testing.T) {
	dir := t.TempDir()
	tp, err := newTempPath(dir, 2)
	require.NoError(t, err)
	b := newSpillBuffer(1, tp)
	_, err = b.Write([]byte("spill"))
	require.NoError(t, err)
	require.True(t, b.spilled())
	name := b.file.Name()
	require.FileExists(t, name)

	require.NoError(t, b.Close(), "without WriteTo")
	assert.NoFileExists(t, name)
	assert.Empty(t, tempFiles(t, dir))
	require.NoError(t, b.Close(), "twice")
	_, err = b.Write([]byte("x"))
	assert.ErrorIs(t, err, os.ErrClosed)

	// No temp path: the spill fails, and Close is still fine after that.
	b = newSpillBuffer(1, nil)
	_, err = b.Write([]byte("x"))
	require.NoError(t, err)
	_, err = b.Write([]byte("y"))
	require.Error(t, err)
	assert.False(t, b.spilled())
	_, err = b.Write([]byte("z"))
	assert.Error(t, err, "errors are sticky")
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
}
