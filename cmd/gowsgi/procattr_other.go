//go:build !linux

package main

import "syscall"

// workerAttr: without Pdeathsig, a worker still stops when the supervisor
// dies, since it reads the end of its channel to the supervisor.
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
