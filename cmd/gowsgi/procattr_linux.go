package main

import "syscall"

// workerAttr makes the kernel send a worker SIGTERM when the supervisor
// dies (the worker then drains and exits). Linux ties this to the thread
// that started the worker, which is why workers are started from a
// goroutine locked to its thread for the supervisor's life.
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
