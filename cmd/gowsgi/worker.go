package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// A worker process (gowsgi --processes N) talks to its supervisor over a
// unix socket pair, one line per message:
//
//	worker to supervisor:  "ready PYTHON_VERSION"  the app is loaded and the sockets are served
//	                       "reload"                --reload-mechanism process found a change
//	                       "stats SEQ JSON"        the answer to "stats SEQ"
//	                       "final JSON"            the last figures, after the drain
//	supervisor to worker:  "stats SEQ"             send processStats now
//
// The worker's end is a file descriptor given in workerFDEnv; the sockets
// to serve come from listenFDsEnv, as for --reload-mechanism process.
const (
	workerEnv   = "GOWSGI_WORKER"    // the worker's slot, 1 to --processes
	workerFDEnv = "GOWSGI_WORKER_FD" // its end of the socket pair
)

// control is a worker's end of the channel to its supervisor.
type control struct {
	slot int
	conn net.Conn
	mu   sync.Mutex // one message at a time
}

// openControl returns the channel to the supervisor when this process is a
// worker, and nil otherwise.
func openControl() (*control, error) {
	s, ok := os.LookupEnv(workerEnv)
	if !ok {
		return nil, nil
	}
	fdText := os.Getenv(workerFDEnv)
	os.Unsetenv(workerEnv) // not for the app's own subprocesses
	os.Unsetenv(workerFDEnv)
	slot, err1 := strconv.Atoi(s)
	fd, err2 := strconv.Atoi(fdText)
	if err1 != nil || err2 != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q %s=%q: this process is not a worker a supervisor started", workerEnv, s, workerFDEnv, fdText)
	}
	f := os.NewFile(uintptr(fd), "supervisor")
	conn, err := net.FileConn(f) // a duplicate, closed on exec
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("the channel to the supervisor: %w", err)
	}
	return &control{slot: slot, conn: conn}, nil
}

func (c *control) send(verb string, v any) {
	line := verb
	if v != nil {
		b, _ := json.Marshal(v)
		line += " " + string(b)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Write([]byte(line + "\n")) // a supervisor gone is seen by serve
}

func (c *control) ready(pythonVersion string) { c.send("ready "+pythonVersion, nil) }

// requestReload asks the supervisor for a new generation of workers.
func (c *control) requestReload() { c.send("reload", nil) }

// final sends the figures after the drain, so the supervisor's counters
// include the requests this worker finished last.
func (c *control) final(st processStats) { c.send("final", st) }

// serve answers the supervisor's requests until it goes away, then closes
// gone.
func (c *control) serve(stats func() processStats, gone chan<- struct{}) {
	defer close(gone)
	sc := bufio.NewScanner(c.conn)
	for sc.Scan() {
		if seq, ok := strings.CutPrefix(sc.Text(), "stats "); ok {
			c.send("stats "+seq, stats())
		}
	}
}
