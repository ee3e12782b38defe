package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Listening sockets are handed to a child by their raw descriptors.
// os.StartProcess and exec.Cmd take *os.File and call its Fd method, which
// puts the descriptor in blocking mode; the mode belongs to the socket,
// shared by every process that holds it, so a worker's accept(2) that
// lost a connection to another worker would then block, out of reach of
// the listener's Close, and its drain would wait for the next connection.

// listenerFD returns ln's descriptor, valid while ln is open, leaving its
// mode alone.
func listenerFD(ln net.Listener) (uintptr, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("cannot hand over %T", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		return 0, err
	}
	return fd, nil
}

// listenerFDs returns every listener's descriptor.
func listenerFDs(lns []net.Listener) ([]uintptr, error) {
	var fds []uintptr
	for _, ln := range lns {
		fd, err := listenerFD(ln)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// startChild starts exe with argv, the descriptors fds as its 0, 1, 2, 3,
// ... in order.
func startChild(exe string, argv []string, dir string, env []string, fds []uintptr, sys *syscall.SysProcAttr) (*os.Process, error) {
	pid, err := syscall.ForkExec(exe, argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: fds, Sys: sys})
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	return os.FindProcess(pid)
}

// outputFD returns a descriptor children can write w through: w's own
// when it is a file, or a pipe copied into w; done closes this process's
// end of the pipe.
func outputFD(w io.Writer) (fd uintptr, done func(), err error) {
	if f, ok := w.(*os.File); ok {
		return f.Fd(), func() {}, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	go func() {
		io.Copy(w, r)
		r.Close()
	}()
	return pw.Fd(), func() { pw.Close() }, nil
}
