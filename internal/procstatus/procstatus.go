// Package procstatus reads the figures of a Linux process that tests and
// benchmarks watch (resident memory, its peak, threads) from
// /proc/PID/status.
package procstatus

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
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
	for _, line := range strings.Split(string(b), "\n") {
		key, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		switch key {
		case "VmRSS":
			s.RSS = n << 10 // in kB
		case "VmHWM":
			s.Peak = n << 10
		case "Threads":
			s.Threads = int(n)
		default:
			continue
		}
		if err != nil {
			return Status{}, fmt.Errorf("%s: %s: %v", path, key, err)
		}
	}
	if s.RSS == 0 {
		return Status{}, fmt.Errorf("%s: no VmRSS", path)
	}
	return s, nil
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
