package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// freshConns tracks the connections that have not yet sent a request
// (http.StateNew), through http.Server.ConnState.
type freshConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (f *freshConns) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		if f.m == nil {
			f.m = map[net.Conn]struct{}{}
		}
		f.m[c] = struct{}{}
		return
	}
	delete(f.m, c)
}

func (f *freshConns) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// stopAccepting closes the listeners, waits for the serve loops to return
// (their errors arrive on served, one per listener), then waits until
// every connection they accepted has sent its first request or closed, for
// at most limit or until ctx ends.
//
// http.Server.Shutdown alone would drop a request that it finds read on a
// connection accepted just before it began. When another process takes
// over the sockets (a reload), the client of such a connection did
// nothing wrong and must be served; after this, Shutdown finds each
// connection serving a request or idle between two.
func stopAccepting(ctx context.Context, listeners []net.Listener, served <-chan error, fresh *freshConns, limit time.Duration) {
	for _, ln := range listeners {
		ln.Close()
	}
	for range listeners {
		<-served // net.ErrClosed, expected
	}
	if limit <= 0 {
		limit = 5 * time.Second // as net/http gives a connection that has not sent a request
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for fresh.count() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
