//go:build !linux

package main

// releaseStartupPages does nothing here: it reads Linux's /proc.
func releaseStartupPages() (int64, error) { return 0, nil }
