// Command soak runs the gowsgi command under a long mixed load on loopback
// and reports its resident memory, goroutines, open file descriptors and
// threads after the warm-up and at the end, so leaks show as growth.
//
//	go run ./bench/soak [-n 1000000] [-c 16] [-warmup 100000]
//
// The mix: hello world, a 10 x 1 KiB generator, a 4 KiB POST echoed back,
// a list body, and an app that raises (a logged traceback and a 500).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowsgi/wsgi/internal/procstatus"
)

type sample struct {
	Requests   int64
	RSSKiB     int64
	Goroutines int
	FDs        int
	Threads    int
}

func main() {
	n := flag.Int64("n", 1_000_000, "requests in all")
	conc := flag.Int("c", 16, "concurrent clients")
	warmup := flag.Int64("warmup", 100_000, "requests before the first sample")
	flag.Parse()
	if err := run(*n, *conc, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(total int64, conc int, warmup int64) error {
	dir, err := os.MkdirTemp("", "gowsgi-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "gowsgi")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/gowsgi").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0",
		"--threads", "8", "--log-level", "error", "testdata/app.py")
	cmd.Stderr = io.Discard // one traceback per raising request
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	urls := regexp.MustCompile(`http://\S+/`)
	rd := bufio.NewReader(stdout)
	var base, stats string
	for base == "" || stats == "" {
		line, err := rd.ReadString('\n')
		if err != nil {
			return fmt.Errorf("gowsgi did not start: %v", err)
		}
		switch u := urls.FindString(line); {
		case strings.Contains(line, "stats on"):
			stats = u
		case u != "":
			base = u
		}
	}
	go io.Copy(io.Discard, rd)

	echo := bytes.Repeat([]byte("e"), 4096)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var samples []sample
	var sampleMu sync.Mutex
	takeSample := func(at int64) {
		s, err := measure(cmd.Process.Pid, stats, at)
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: sample:", err)
			return
		}
		sampleMu.Lock()
		samples = append(samples, s)
		sampleMu.Unlock()
		fmt.Printf("%9d requests  %6.0f req/s  RSS %7d KiB  goroutines %4d  fds %4d  threads %3d\n",
			s.Requests, float64(at)/time.Since(start).Seconds(), s.RSSKiB, s.Goroutines, s.FDs, s.Threads)
	}
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := done.Add(1)
				if i > total {
					return
				}
				if err := one(client, base, i+int64(w), echo); err != nil {
					failed.Add(1)
				}
				if i == warmup || i%100_000 == 0 {
					takeSample(i)
				}
			}
		}()
	}
	wg.Wait()
	takeSample(total)
	fmt.Printf("%d requests in %v, %d failed\n", total, time.Since(start).Round(time.Second), failed.Load())
	if len(samples) < 2 {
		return nil
	}
	first, last := samples[0], samples[len(samples)-1]
	growth := float64(last.RSSKiB-first.RSSKiB) / float64(first.RSSKiB) * 100
	fmt.Printf("after warm-up: RSS %+.1f%%, goroutines %+d, fds %+d, threads %+d\n",
		growth, last.Goroutines-first.Goroutines, last.FDs-first.FDs, last.Threads-first.Threads)
	if growth > 5 || failed.Load() > 0 {
		return fmt.Errorf("RSS grew %.1f%% after warm-up (limit 5%%), %d requests failed", growth, failed.Load())
	}
	return nil
}

// one sends the i-th request of the mix and checks its answer.
func one(c *http.Client, base string, i int64, echo []byte) error {
	var resp *http.Response
	var err error
	want := http.StatusOK
	switch i % 10 {
	case 0, 1, 2, 3:
		resp, err = c.Get(base + "hello")
	case 4, 5:
		resp, err = c.Get(base + "stream?n=10&size=1024")
	case 6, 7:
		resp, err = c.Post(base+"echo", "application/octet-stream", bytes.NewReader(echo))
	case 8:
		resp, err = c.Get(base + "list?n=3&size=100")
	case 9:
		resp, err = c.Get(base + "raise")
		want = http.StatusInternalServerError
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func measure(pid int, statsURL string, at int64) (sample, error) {
	s := sample{Requests: at}
	ps, err := procstatus.Read(strconv.Itoa(pid))
	if err != nil {
		return s, err
	}
	s.RSSKiB, s.Threads = ps.RSS>>10, ps.Threads
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	resp, err := http.Get(statsURL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	var st struct{ Goroutines int }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return s, err
	}
	s.Goroutines = st.Goroutines
	return s, nil
}
