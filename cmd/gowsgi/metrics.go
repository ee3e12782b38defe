package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"time"

	"github.com/gowsgi/wsgi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A statMetric exposes one field of wsgi.Stats (or of wsgi.InterpreterStats)
// at /metrics. A new field of those types takes one line in the tables
// below; TestEveryStatHasAMetric fails until it has one.
type statMetric struct {
	field string // the Go field it reads; a time.Duration is given in seconds
	name  string
	kind  prometheus.ValueType // CounterValue: it only grows, and the supervisor keeps the counts of workers that exited
	help  string
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// handlerMetrics are the fields of wsgi.Stats.
var handlerMetrics = []statMetric{
	{"Served", "gowsgi_requests_served_total", counter, "Requests the app answered."},
	{"Errors", "gowsgi_request_errors_total", counter, "App errors: 500s and aborted responses."},
	{"Timeouts", "gowsgi_request_timeouts_total", counter, "Requests stopped by --request-timeout (504 or aborted)."},
	{"Rejected", "gowsgi_requests_rejected_total", counter, "Requests refused without running the app: 503 (queue full or timed out, shutting down) and 413."},
	{"QueueWait", "gowsgi_queue_wait_seconds_total", counter, "Time requests spent queued for a Python thread before they started, in all."},
	{"PlaceWait", "gowsgi_place_wait_seconds_total", counter, "Time requests that had waited for their client waited for a place to go on, in all."},
	{"GILWait", "gowsgi_gil_wait_seconds_total", counter, "Time threads waited for the GIL to run a request's Python, in all."},
	{"InFlight", "gowsgi_requests_in_flight", gauge, "Requests being served: queued, in the app, or sending."},
	{"Running", "gowsgi_requests_running", gauge, "Requests holding a place: running Python, or blocked in it on I/O."},
	{"Queued", "gowsgi_requests_queued", gauge, "Requests waiting for a place."},
	{"Blocked", "gowsgi_requests_waiting_for_client", gauge, "Requests whose Python waits for their client, holding no place."},
	{"Threads", "gowsgi_python_threads", gauge, "Worker threads the interpreters' schedulers keep."},
	{"Stuck", "gowsgi_requests_stuck", gauge, "Timed-out requests that have not come back."},
}

// interpreterMetrics are the fields of wsgi.InterpreterStats, labelled with
// the interpreter's index.
var interpreterMetrics = []statMetric{
	{"Running", "gowsgi_interpreter_requests_running", gauge, "Requests holding one of the interpreter's places."},
	{"Queued", "gowsgi_interpreter_requests_queued", gauge, "Requests waiting for one of the interpreter's places."},
	{"Blocked", "gowsgi_interpreter_requests_waiting_for_client", gauge, "The interpreter's requests waiting for their client."},
	{"Threads", "gowsgi_interpreter_python_threads", gauge, "The interpreter's worker threads."},
	{"Served", "gowsgi_interpreter_requests_served_total", counter, "Requests the interpreter ran."},
	{"Direct", "gowsgi_interpreter_requests_direct_total", counter, "Requests run on their own goroutine's thread, the interpreter being idle."},
	{"BackToBack", "gowsgi_interpreter_requests_back_to_back_total", counter, "Requests run right after another on a thread that kept the GIL."},
	{"GaveWay", "gowsgi_interpreter_gave_way_total", counter, "Requests after which a thread running requests back to back handed the GIL to the waiting standby."},
	{"QueueWait", "gowsgi_interpreter_queue_wait_seconds_total", counter, "Time the interpreter's requests spent queued."},
	{"PlaceWait", "gowsgi_interpreter_place_wait_seconds_total", counter, "Time the interpreter's requests waited for a place to go on."},
	{"GILWait", "gowsgi_interpreter_gil_wait_seconds_total", counter, "Time the interpreter's threads waited for its GIL to run a request."},
}

// processStats is what the stats address answers for one process: the
// handler's Stats and the process's goroutine count.
type processStats struct {
	wsgi.Stats
	Goroutines int
}

// workerStats is one worker's entry in the supervisor's answer.
type workerStats struct {
	Worker int // the worker's slot, 1 to --processes
	Pid    int
	processStats
}

// supervisorStats is what the supervisor's stats address answers: the
// counters summed over every worker it ran (those that exited included,
// so they never go down), the gauges summed over the live workers, and
// each live worker's own figures.
type supervisorStats struct {
	processStats
	Workers []workerStats
}

// identifiers are numeric fields that name rather than measure (an
// interpreter's ID): neither summed nor exported as metrics.
var identifiers = map[string]bool{"ID": true}

// counterFields says which fields of which type are counters.
var counterFields = map[reflect.Type]map[string]bool{
	reflect.TypeFor[wsgi.Stats]():            countersOf(handlerMetrics),
	reflect.TypeFor[wsgi.InterpreterStats](): countersOf(interpreterMetrics),
}

func countersOf(ms []statMetric) map[string]bool {
	set := map[string]bool{}
	for _, m := range ms {
		if m.kind == counter {
			set[m.field] = true
		}
	}
	return set
}

// addStats adds src to dst field by field: every integer (durations
// included) and float, and the Interpreters entries by index. With
// countersOnly it adds only the fields the tables above call counters.
func addStats(dst *wsgi.Stats, src *wsgi.Stats, countersOnly bool) {
	addFields(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem(), countersOnly)
}

func addFields(dst, src reflect.Value, countersOnly bool) {
	t := dst.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		d, s := dst.Field(i), src.Field(i)
		if identifiers[f.Name] || (d.Kind() != reflect.Slice && countersOnly && !counterFields[t][f.Name]) {
			continue
		}
		switch d.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			d.SetInt(d.Int() + s.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			d.SetUint(d.Uint() + s.Uint())
		case reflect.Float32, reflect.Float64:
			d.SetFloat(d.Float() + s.Float())
		case reflect.Slice:
			if f.Type.Elem().Kind() != reflect.Struct {
				continue
			}
			for j := range s.Len() {
				if j >= d.Len() {
					d.Set(reflect.Append(d, reflect.Zero(f.Type.Elem())))
				}
				addFields(d.Index(j), s.Index(j), countersOnly)
			}
		}
	}
}

// fieldValue reads a numeric field by name as a float64, durations in
// seconds; ok is false when the type has no such numeric field.
func fieldValue(v reflect.Value, name string) (float64, bool) {
	f := v.FieldByName(name)
	if !f.IsValid() {
		return 0, false
	}
	if f.Type() == reflect.TypeFor[time.Duration]() {
		return time.Duration(f.Int()).Seconds(), true
	}
	switch f.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(f.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(f.Uint()), true
	case reflect.Float32, reflect.Float64:
		return f.Float(), true
	}
	return 0, false
}

// supervisorFigures are the supervisor's own numbers, given with
// --processes only.
type supervisorFigures struct {
	Workers  int    // workers serving
	Restarts uint64 // workers started again after they died
}

// statsCollector turns a Stats snapshot into Prometheus metrics.
type statsCollector struct {
	snapshot func() (wsgi.Stats, *supervisorFigures)

	handler, interp []*prometheus.Desc
	workers         *prometheus.Desc
	restarts        *prometheus.Desc
	supervised      bool
}

func newStatsCollector(supervised bool, snapshot func() (wsgi.Stats, *supervisorFigures)) *statsCollector {
	c := &statsCollector{snapshot: snapshot, supervised: supervised}
	for _, m := range handlerMetrics {
		c.handler = append(c.handler, prometheus.NewDesc(m.name, m.help, nil, nil))
	}
	for _, m := range interpreterMetrics {
		c.interp = append(c.interp, prometheus.NewDesc(m.name, m.help, []string{"interpreter"}, nil))
	}
	c.workers = prometheus.NewDesc("gowsgi_workers", "Worker processes serving (--processes).", nil, nil)
	c.restarts = prometheus.NewDesc("gowsgi_worker_restarts_total", "Worker processes started again after one died.", nil, nil)
	return c
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.handler {
		ch <- d
	}
	for _, d := range c.interp {
		ch <- d
	}
	if c.supervised {
		ch <- c.workers
		ch <- c.restarts
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st, sup := c.snapshot()
	v := reflect.ValueOf(st)
	for i, m := range handlerMetrics {
		if x, ok := fieldValue(v, m.field); ok {
			ch <- prometheus.MustNewConstMetric(c.handler[i], m.kind, x)
		}
	}
	for n, is := range st.Interpreters {
		v := reflect.ValueOf(is)
		for i, m := range interpreterMetrics {
			if x, ok := fieldValue(v, m.field); ok {
				ch <- prometheus.MustNewConstMetric(c.interp[i], m.kind, x, strconv.Itoa(n))
			}
		}
	}
	if c.supervised && sup != nil {
		ch <- prometheus.MustNewConstMetric(c.workers, gauge, float64(sup.Workers))
		ch <- prometheus.MustNewConstMetric(c.restarts, counter, float64(sup.Restarts))
	}
}

// statsMux serves the JSON of stats at / (any path but /metrics, as before
// /metrics existed) and the Prometheus text format at /metrics.
func statsMux(logger *slog.Logger, jsonStats func() any, collector prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jsonStats())
	})
	return mux
}

// singleStats is the stats server of a process that serves the app itself.
func singleStats(logger *slog.Logger, h *wsgi.Handler) http.Handler {
	collector := newStatsCollector(false, func() (wsgi.Stats, *supervisorFigures) { return h.Stats(), nil })
	return statsMux(logger, func() any { return ownStats(h) }, collector)
}

func ownStats(h *wsgi.Handler) processStats {
	return processStats{h.Stats(), runtime.NumGoroutine()}
}
