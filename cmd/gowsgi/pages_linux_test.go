package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diskDir returns a new directory for the test on a file system with a
// disk behind it: tmpfs keeps every page dirty, so a mapping of its files
// is never released.
func diskDir(t *testing.T) string {
	t.Helper()
	for _, parent := range []string{os.TempDir(), "."} {
		var st syscall.Statfs_t
		if syscall.Statfs(parent, &st) != nil || st.Type == 0x01021994 { // TMPFS_MAGIC
			continue
		}
		if dir, err := os.MkdirTemp(parent, "gowsgi-pages-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	t.Skip("no writable directory here but on tmpfs, whose pages are never clean")
	return ""
}

// mapFile maps a new file of size bytes of fill with prot and MAP_PRIVATE.
func mapFile(t *testing.T, dir string, fill byte, size int, prot int) []byte {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("mapped-%c-%d", fill, prot))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(bytes.Repeat([]byte{fill}, size))
	require.NoError(t, err)
	// Written back, as a program's pages are: dirty pages of the page
	// cache count as the mapping's own.
	require.NoError(t, f.Sync())
	b, err := syscall.Mmap(int(f.Fd()), 0, size, prot, syscall.MAP_PRIVATE)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Munmap(b) })
	return b
}

// touch reads every page of b and returns the sum of the bytes read.
func touch(b []byte) int {
	sum := 0
	for i := 0; i < len(b); i += os.Getpagesize() {
		sum += int(b[i])
	}
	return sum
}

// rssKB returns the Rss of the mapping that starts at b, from smaps.
func rssKB(t *testing.T, b []byte) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	require.NoError(t, err)
	start := strconv.FormatUint(uint64(uintptr(unsafe.Pointer(&b[0]))), 16) + "-"
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, start):
			found = true
		case found && strings.HasPrefix(line, "Rss:"):
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatalf("no mapping at %s in smaps", start)
	return 0
}

func TestReleaseStartupPages(t *testing.T) {
	const size = 16 << 12
	dir := diskDir(t)
	// Read-only and read: released.
	clean := mapFile(t, dir, 'a', size, syscall.PROT_READ)
	// Written, then made read-only, as a dynamic loader does with
	// relocated data: its pages are the process's own and must stay.
	written := mapFile(t, dir, 'b', size, syscall.PROT_READ|syscall.PROT_WRITE)
	for i := range written {
		written[i] = 'w'
	}
	require.NoError(t, syscall.Mprotect(written, syscall.PROT_READ))
	// Writable, only read so far: it could be written at any moment.
	writable := mapFile(t, dir, 'c', size, syscall.PROT_READ|syscall.PROT_WRITE)
	touch(clean)
	touch(writable)
	require.Positive(t, rssKB(t, clean))
	writableRSS := rssKB(t, writable)
	require.Positive(t, writableRSS)

	n, err := releaseStartupPages()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, int64(size), "at least the clean mapping is released")

	assert.Zero(t, rssKB(t, clean), "the clean mapping's pages are unmapped")
	assert.Equal(t, writableRSS, rssKB(t, writable), "a writable mapping is left alone")
	assert.Equal(t, bytes.Repeat([]byte{'w'}, size), []byte(written), "written pages keep what was written")
	assert.Equal(t, 'a'*size/os.Getpagesize(), touch(clean), "released pages come back from the file")
	assert.Positive(t, rssKB(t, clean))
}

func TestCleanFileMappings(t *testing.T) {
	smaps := `00400000-00800000 r-xp 00000000 08:01 1234    /usr/bin/gowsgi
Rss:                4096 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me
00800000-00900000 r--p 00400000 08:01 1234    /usr/bin/gowsgi
Private_Dirty:         8 kB
Anonymous:             8 kB
00900000-00a00000 rw-p 00500000 08:01 1234    /usr/bin/gowsgi
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r--p 00000000 00:00 0
Anonymous:             0 kB
7f0000100000-7f0000200000 r--s 00000000 08:01 99      /data/shared
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00000000 08:01 98      /usr/lib/libx.so
Anonymous:             0 kB
Swap:                  4 kB
7f0000300000-7f0000400000 r--p 00000000 08:01 97      /usr/lib/liby.so
Anonymous:             0 kB
Private_Dirty:         0 kB
`
	assert.Equal(t, []mapping{{0x400000, 0x800000}, {0x7f0000300000, 0x7f0000400000}}, cleanFileMappings([]byte(smaps)))
}

func TestStartupPagesReleasedInEveryProcess(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.py")
	writeFile(t, app, pidApp("v1"), -time.Hour)
	released := regexp.MustCompile(`msg="gowsgi: released start-up pages" (worker=\d pid=\d+ )?mapped_bytes=[1-9]\d*\n`)

	t.Run("single", func(t *testing.T) {
		s := startServer(t, "--bind", "127.0.0.1:0", "--log-level", "debug", app)
		s.waitLog(t, 10*time.Second, released.String())
	})
	t.Run("processes", func(t *testing.T) {
		s := startServer(t, "--processes", "2", "--bind", "127.0.0.1:0", "--log-level", "debug", app)
		deadline := time.Now().Add(10 * time.Second)
		for len(released.FindAllString(s.stderr.String(), -1)) < 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		lines := released.FindAllStringSubmatch(s.stderr.String(), -1)
		require.Len(t, lines, 3, "the supervisor and both workers; stderr: %s", s.stderr.String())
		var workers []string
		for _, l := range lines {
			workers = append(workers, l[1])
		}
		assert.ElementsMatch(t, []string{"", "worker=1", "worker=2"}, trimPIDs(workers))
	})
}

// trimPIDs keeps the worker=N part of "worker=N pid=P ".
func trimPIDs(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i], _, _ = strings.Cut(w, " ")
	}
	return out
}
