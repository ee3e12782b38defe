package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// releaseStartupPages unmaps, from this process, the pages of files it maps
// read-only: the program itself, libpython, libc, Python's extension
// modules. Many of them served only while the process started (flag
// parsing, Python's start-up, the app's imports), and for every page it
// read the kernel mapped in its neighbours as well. They all count in the
// process's RSS until unmapped.
//
// The pages stay in the page cache, so one the process needs again comes
// back with a minor fault, not a read from disk, and the memory a cgroup
// is charged for does not change: what goes down is the RSS, which then
// counts the pages the process uses rather than those it once touched.
//
// A mapping is left alone if it holds a page of its own (written, such as
// relocated data made read-only afterwards, or swapped out): unmapped, that
// page would come back with the file's bytes in place of the process's.
// Returns the size of the mappings released.
func releaseStartupPages() (int64, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, m := range cleanFileMappings(data) {
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED)
		if errno == 0 { // a locked mapping refuses, and is skipped
			total += int64(m.end - m.start)
		}
	}
	return total, nil
}

type mapping struct{ start, end uintptr }

// cleanFileMappings returns the private mappings of files in smaps that
// cannot be written and hold no page of their own: no anonymous page, no
// private dirty page, nothing swapped out.
func cleanFileMappings(smaps []byte) []mapping {
	var out []mapping
	var cur mapping
	candidate := false
	flush := func() {
		if candidate {
			out = append(out, cur)
		}
		candidate = false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 {
			continue
		}
		if key := f[0]; key[len(key)-1] == ':' {
			switch string(key) {
			case "Anonymous:", "Private_Dirty:", "Swap:":
				if len(f) < 2 || string(f[1]) != "0" {
					candidate = false
				}
			}
			continue
		}
		// A mapping's first line: "start-end perms offset dev inode [path]".
		flush()
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte{'-'})
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		perms := f[1]
		if !ok || err1 != nil || err2 != nil || len(perms) != 4 {
			continue
		}
		cur = mapping{uintptr(start), uintptr(end)}
		candidate = perms[1] == '-' && perms[3] == 'p' && string(f[4]) != "0"
	}
	flush()
	return out
}
