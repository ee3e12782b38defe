// Package procstatus reads the figures of a Linux process that tests and
// benchmarks watch (resident memory, its peak, threads) from
// /proc/PID/status, and its proportional set size from
// /proc/PID/smaps_rollup.
package procstatus

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// Status holds the figures read: sizes in bytes.
type Status struct {
	RSS     int64 // VmRSS, the resident set size
	Peak    int64 // VmHWM, the resident set size's high-water mark
	Threads int   // Threads
}

// Read reads /proc/PID/status; pid "self" reads this process's.
func Read(pid string) (Status, error) {
	path := "/proc/" + pid + "/status"
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	var s Status
	err = numbers(path, b, func(key string, n int64) {
		switch key {
		case "VmRSS":
			s.RSS = n << 10 // in kB
		case "VmHWM":
			s.Peak = n << 10
		case "Threads":
			s.Threads = int(n)
		}
	}, "VmRSS", "VmHWM", "Threads")
	if err != nil {
		return Status{}, err
	}
	if s.RSS == 0 {
		return Status{}, fmt.Errorf("%s: no VmRSS", path)
	}
	return s, nil
}

// PSS reads the proportional set size, in bytes, from
// /proc/PID/smaps_rollup: each page the process maps, divided by the number
// of processes that map it.
func PSS(pid string) (int64, error) {
	path := "/proc/" + pid + "/smaps_rollup"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pss := int64(-1)
	if err := numbers(path, b, func(_ string, n int64) { pss = n << 10 }, "Pss"); err != nil {
		return 0, err
	}
	if pss < 0 {
		return 0, fmt.Errorf("%s: no Pss", path)
	}
	return pss, nil
}

// numbers calls fn with the key and the first number of each "Key: number
// ..." line of b, the text of the /proc file path, whose key is one of
// keys.
func numbers(path string, b []byte, fn func(key string, n int64), keys ...string) error {
	for _, line := range strings.Split(string(b), "\n") {
		key, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 || !slices.Contains(keys, key) {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %s: %v", path, key, err)
		}
		fn(key, n)
	}
	return nil
}

// TB is the part of testing.TB that Settled uses.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// Settled returns this process's figures after Go has collected its
// garbage and given back to the system what it can, so that what remains
// resident is mostly the C side's (Python's). It skips t where there is no
// /proc/self/status (not Linux) and fails t when the file cannot be read.
func Settled(t TB) Status {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	runtime.GC()
	debug.FreeOSMemory()
	s, err := Read("self")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
