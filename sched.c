/* Who runs a request, and when.
 *
 * An interpreter has one GIL, so at most one thread runs its Python at a
 * time.  Threads that take turns on it cost a hand-off each: the kernel
 * wakes the next, often on the other core.  So:
 *
 *   - A place (WithThreads of them) is a request running Python: in the
 *     app, or blocked inside it on I/O.  A request waiting for its client
 *     (a slow reader, a file being sent, the request body) gives its place
 *     back, and takes one again to go on.
 *   - When the interpreter is idle, the Go call that submits a request runs
 *     it on its own thread ("direct"): no hand-off at all.  So does one
 *     that finds a place free and nothing queued while requests are short
 *     (under SHORT_NS on average): it waits for the GIL on its own thread.
 *     A hand-off to a worker, and Go's wake-up for the response, cost
 *     more than such a request does in Python.
 *   - Otherwise the request is queued, and worker threads run the queue.  A
 *     worker that finishes a request while no other request holds a place
 *     runs the next queued one without letting go of the GIL: requests of
 *     an app that spends its time in Python run back to back on one
 *     thread, with no hand-off between them.
 *   - One idle worker stands by while requests are queued, to start the
 *     next one if the running request blocks on I/O and releases the GIL:
 *     an app that waits on a database still overlaps its requests.
 *   - How it stands by depends on the app.  Waiting for the GIL, it gets
 *     it the moment the running request lets go; but CPython hands the GIL
 *     by force to a thread that has waited a switch interval (5 ms by
 *     default), from the middle of whatever request then runs.  Two
 *     requests then take turns in Python, each turn a hand-off, and under
 *     steady load the overlap stays (a Django view fell to about half its
 *     throughput so).  So while requests are Python-bound (they last
 *     25 us or more, and their threads were running or waiting for a CPU,
 *     not for I/O or a lock, more than half of their time, on average)
 *     and one request runs, the standby does not wait for the GIL: it
 *     reads the CPU clock of that request's thread, after 0.1 ms and then
 *     less and less often, down to every 1.6 ms.  It waits for
 *     the GIL once it finds the thread stopped twice in a row, 0.1 ms
 *     apart, without having been preempted (it waits on I/O, most likely,
 *     with the GIL let go), or once the request has used a switch interval
 *     of CPU (a long request shares the GIL, as CPython would have it).
 *     For apps that wait more than they compute, or whose requests are
 *     shorter than that, it waits for the GIL at once.
 *   - A thread running requests back to back gives way to a standby that
 *     waits for the GIL at the end of a request, once the standby has
 *     waited, or would have by the end of a request like the last one,
 *     three quarters of the interval: the standby goes on with the queue,
 *     and the thread goes idle.  Only a request that runs longer than that
 *     is cut, as CPython would.
 *   - A request that finishes while others hold places lets go of the GIL
 *     (they may be waiting for it) and its thread goes idle; the standby
 *     or one of them goes on.
 *
 *   - While requests are queued, a finished request does not wake Go at
 *     once: its notice waits on a short list, flushed when a few have
 *     gathered, when the oldest is half a millisecond old, when the
 *     thread is about to let go of the GIL or wait, and by the standby
 *     when it takes the GIL, or as it watches.  One wake-up of Go's
 *     network poller then sends several responses, instead of one each.
 *     While the queue is deep, more gather, for longer: Go's threads
 *     wake less often and take less CPU from Python's.  Not with a short
 *     queue: the clients of the notices send their next requests only
 *     once they have their responses, and the queue would run dry.
 *
 * A request's Python, from the app call to close(), runs on one thread,
 * so threading.local values hold throughout; each request runs in a
 * contextvars.Context of its own.
 */
#include "gowsgi.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "_cgo_export.h"

/* How long a request's thread waits for Go with its place before it gives
 * the place back: long enough for a client that keeps up. */
#define SHORT_WAIT_NS (200 * 1000)
/* An idle worker beyond the first exits after this long. */
#define IDLE_EXIT_NS (30LL * 1000 * 1000 * 1000)
/* Late notices: at most LATE_MAX wait.  A request's end flushes them once
 * LATE_FLUSH wait or the oldest has waited LATE_AGE_NS; while the queue
 * holds LATE_DEEP_NS or more of requests like the last ones, once
 * LATE_DEEP_FLUSH wait or the oldest has waited LATE_DEEP_AGE_NS. */
#define LATE_MAX 32
#define LATE_FLUSH 8
#define LATE_AGE_NS (500 * 1000)
#define LATE_DEEP_NS (3000 * 1000)
#define LATE_DEEP_FLUSH 16
#define LATE_DEEP_AGE_NS (1500 * 1000)
/* CPython's switch interval until the scheduler reads the interpreter's. */
#define DEFAULT_INTERVAL_NS (5 * 1000 * 1000)
/* A standby that watches the running request looks at its thread after
 * WATCH_NS, then twice as long each time it finds it running, up to
 * WATCH_MAX_NS. */
#define WATCH_NS (100 * 1000)
#define WATCH_MAX_NS (1600 * 1000)
/* Requests shorter than this on average are not watched: the queue empties
 * too often for the watch to pay.  Nor are they queued while a place is
 * free. */
#define SHORT_NS (25 * 1000)
/* One queued request in SAMPLE is timed for the moving average of how
 * Python-bound requests are. */
#define SAMPLE 4
/* The running request's thread counts as stopped if it ran less than this
 * share of the time the standby watched it, in 1/1024. */
#define STALLED 256
/* Requests count as Python-bound while, on average, their thread was
 * running or ready to run this share of their time, in 1/1024. */
#define BOUND 512
/* How many of the standby's decisions to wait for the GIL are kept, for
 * tests (gowsgi_sched_waits). */
#define WAITS GOWSGI_SCHED_WAITS

enum { ROLE_IDLE = 0, ROLE_STANDBY = 1 };

typedef struct worker {
	gowsgi_sched *s;
	int statfd; /* its /proc/thread-self/schedstat, or -1 */
	pthread_cond_t cv;
	int role;
	int idle; /* on the idle list */
	struct worker *next;
} worker;

/* A thread waiting for a place, first come first served. */
typedef struct place_waiter {
	pthread_cond_t cv;
	int granted;
	struct place_waiter *next;
} place_waiter;

struct gowsgi_sched {
	pthread_mutex_t mu;
	gowsgi_interp *gi;
	int places, running, max_queue;
	int cpu; /* the CPU its workers run on (WithPythonCPUs), or -1 */
	gowsgi_job *qhead, *qtail;
	int qlen; /* changed atomically under mu; late_flush reads it without */
	place_waiter *whead, *wtail;
	int nwait;
	worker *idle;
	int nidle, nworkers;
	int standby;  /* a worker stands by to start queued requests */
	worker *standby_w;     /* it, if it watches the running request */
	int standby_gil;       /* it waits for the GIL (atomic) */
	int64_t standby_since; /* when it began to wait for the GIL (atomic) */
	/* The thread running the request that holds the one place taken, if
	 * one is: the last thread to start a request, under mu. */
	clockid_t runner_clock;
	pid_t runner_tid;
	int runner_ok;
	uint64_t runner_seq; /* counts the requests started */
	/* Moving averages (atomic): the share of their thread's time that
	 * queued requests were running or ready to run, in 1/1024, and
	 * requests' length. */
	int busy;
	int64_t avg_ns;
	unsigned nsample; /* counts the requests run_jobs ran (atomic) */
	int64_t interval_ns;   /* sys.getswitchinterval(), read by standbys (atomic) */
	int stopping;
	int blocked;  /* requests waiting for their client */
	pthread_cond_t exited;
	PyObject **garbage; /* references Go gave back, released with the GIL */
	int ngarbage, capgarbage;
	gowsgi_sched_stats st;
	gowsgi_sched_wait waits[WAITS]; /* the last WAITS, under mu */
	uint64_t nwaits;

	/* Jobs whose output Go has not been told of yet, under late_mu,
	 * which is taken after a job's mu, never before. */
	pthread_mutex_t late_mu;
	gowsgi_job *late[LATE_MAX];
	int nlate;
	int64_t late_at; /* when the first was added */
};

/* Clock clock's time in ns, or -1 if it is gone (a thread's CPU clock,
 * once the thread has exited). */
static int64_t clock_ns(clockid_t clock)
{
	struct timespec ts;
	if (clock_gettime(clock, &ts) < 0)
		return -1;
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static struct timespec deadline(int64_t ns)
{
	int64_t t = now_ns() + ns;
	return (struct timespec){.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
}

static void cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

#ifndef Py_GIL_DISABLED
/* Whether thread tid of this process waits for the CPU rather than for
 * something else: preempted, not blocked.  Reads its state in /proc. */
static int preempted(pid_t tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* "tid (comm) S ...": the comm may hold ')' itself. */
	char *p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' && p[2] == 'R';
}
#endif

/* The time this thread has been running or ready to run, in ns: its CPU
 * time, and the time it waited for a CPU from its schedstat (statfd), which
 * leaves the time it waited on I/O or locks.  Without statfd, its CPU time.
 * (The schedstat's own run time lags by up to a scheduler tick.) */
static int64_t runnable_ns(int statfd)
{
	int64_t t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	char buf[96];
	ssize_t n = statfd >= 0 ? pread(statfd, buf, sizeof buf - 1, 0) : -1;
	unsigned long long run, delay;
	if (n > 0) {
		buf[n] = 0;
		if (sscanf(buf, "%llu %llu", &run, &delay) == 2)
			t += (int64_t)delay;
	}
	return t;
}

static pid_t my_tid(void)
{
	static __thread pid_t tid;
	if (tid == 0)
		tid = (pid_t)syscall(SYS_gettid);
	return tid;
}

/* ------------------------------------------------------------- places */

static void ensure_standby(gowsgi_sched *s);

/* Records that this thread is about to run a request's Python with a
 * place: a standby may watch it (see watch).  mu held. */
static void note_runner(gowsgi_sched *s)
{
	s->runner_tid = my_tid();
	s->runner_ok = pthread_getcpuclockid(pthread_self(), &s->runner_clock) == 0;
	s->runner_seq++;
}

/* Counts a request of took_ns in the moving averages, and, unless busy_ns
 * is negative, that its thread was running or ready to run for busy_ns of
 * them. */
static void note_request(gowsgi_sched *s, int64_t took_ns, int64_t busy_ns)
{
	int64_t avg = __atomic_load_n(&s->avg_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&s->avg_ns, avg + (took_ns - avg) / 8, __ATOMIC_RELAXED);
	if (busy_ns < 0 || took_ns <= 0)
		return;
	int share = busy_ns >= took_ns ? 1024 : (int)(busy_ns * 1024 / took_ns);
	int busy = __atomic_load_n(&s->busy, __ATOMIC_RELAXED);
	__atomic_store_n(&s->busy, busy + (share - busy) / 8, __ATOMIC_RELAXED);
}

/* Gives this thread's place back: to the first thread waiting for one, or
 * to the pool.  mu held. */
static void place_give(gowsgi_sched *s)
{
	if (s->runner_ok && s->runner_tid == my_tid())
		s->runner_ok = 0; /* who runs the places left is not known */
	place_waiter *w = s->whead;
	if (w != NULL) {
		s->whead = w->next;
		if (s->whead == NULL)
			s->wtail = NULL;
		s->nwait--;
		w->granted = 1; /* running stays: the place changes hands */
		pthread_cond_signal(&w->cv);
		return;
	}
	s->running--;
	if (s->standby_w != NULL)
		pthread_cond_signal(&s->standby_w->cv); /* it looks again */
	ensure_standby(s);
}

/* Takes a place, waiting behind earlier comers.  mu held. */
static void place_take(gowsgi_sched *s)
{
	if (s->running < s->places && s->whead == NULL) {
		s->running++;
		note_runner(s);
		return;
	}
	place_waiter w = {.granted = 0, .next = NULL};
	cond_init(&w.cv);
	if (s->wtail)
		s->wtail->next = &w;
	else
		s->whead = &w;
	s->wtail = &w;
	s->nwait++;
	while (!w.granted)
		pthread_cond_wait(&w.cv, &s->mu);
	pthread_cond_destroy(&w.cv);
	note_runner(s);
}

/* ------------------------------------------------------------- garbage */

void sched_discard(gowsgi_sched *s, PyObject **owners, int n)
{
	pthread_mutex_lock(&s->mu);
	if (s->ngarbage + n > s->capgarbage) {
		int cap = s->capgarbage ? s->capgarbage : 64;
		while (cap < s->ngarbage + n)
			cap *= 2;
		PyObject **g = realloc(s->garbage, cap * sizeof *g);
		if (g == NULL) {
			/* Out of memory: leak them rather than touch Python
			 * without the GIL. */
			pthread_mutex_unlock(&s->mu);
			free(owners);
			return;
		}
		s->garbage = g;
		s->capgarbage = cap;
	}
	memcpy(s->garbage + s->ngarbage, owners, n * sizeof *owners);
	s->ngarbage += n;
	pthread_mutex_unlock(&s->mu);
	free(owners);
}

int sched_collect(gowsgi_sched *s)
{
	if (__atomic_load_n(&s->ngarbage, __ATOMIC_RELAXED) == 0)
		return 0;
	pthread_mutex_lock(&s->mu);
	PyObject **g = s->garbage;
	int n = s->ngarbage;
	s->garbage = NULL;
	s->ngarbage = s->capgarbage = 0;
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < n; i++)
		Py_DECREF(g[i]);
	free(g);
	return 1;
}

/* ------------------------------------------------------------- telling Go */

/* Go learns of a job's output through the job's eventfd, and each write
 * that finds Go waiting wakes a thread of Go's runtime, a context switch
 * or two on the machine.  While a standby waits for the GIL, the thread
 * that runs a job runs more after it: the notices can wait until it lets
 * go of the GIL or the list fills, whichever comes first, and Go's poller
 * then finds several eventfds ready at once.
 *
 * Why a notice is never lost: a job is deferred only with the GIL held and
 * a standby there; the standby flushes the old notices each time it looks
 * at the thread it watches, and the whole list as soon as it has the GIL
 * (at the latest after CPython's switch interval) or goes idle without it,
 * and a thread flushes before it waits for Go or lets go of the GIL.  Go
 * takes a finished job off the list (sched_forget) before it reuses or
 * frees it.
 * Without a GIL (a free-threaded build) there is no such guarantee, and
 * Go is told at once. */

void sched_notify(gowsgi_job *job)
{
#ifndef Py_GIL_DISABLED
	gowsgi_sched *s = job->sched;
	if (!job->direct && __atomic_load_n(&s->standby, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&s->late_mu);
		/* Read again under late_mu: a standby that goes idle without
		 * the GIL clears it and flushes under late_mu (stand_down). */
		int ok = job->deferred || (__atomic_load_n(&s->standby, __ATOMIC_RELAXED) &&
					   s->nlate < LATE_MAX);
		if (!job->deferred && ok) {
			if (s->nlate == 0)
				s->late_at = now_ns();
			s->late[s->nlate++] = job;
			__atomic_store_n(&job->deferred, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&s->late_mu);
		if (ok)
			return;
	}
#endif
	output_notify(job);
}

void sched_forget(gowsgi_job *job)
{
	if (!__atomic_load_n(&job->deferred, __ATOMIC_ACQUIRE))
		return; /* never deferred, or flushed and let go */
	gowsgi_sched *s = job->sched;
	pthread_mutex_lock(&s->late_mu);
	for (int i = 0; i < s->nlate; i++) {
		if (s->late[i] == job) {
			s->late[i] = s->late[--s->nlate];
			break;
		}
	}
	__atomic_store_n(&job->deferred, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->late_mu);
}

/* Sends the late notices: all of them, or only when enough have gathered
 * or the oldest is old enough, by the limits for a short queue or, with
 * more to run meanwhile, for a deep one. */
static void late_flush(gowsgi_sched *s, int all)
{
	if (__atomic_load_n(&s->nlate, __ATOMIC_RELAXED) == 0)
		return;
	/* Read without mu: a hint. */
	int deep = !all && __atomic_load_n(&s->qlen, __ATOMIC_RELAXED) *
				   __atomic_load_n(&s->avg_ns, __ATOMIC_RELAXED) >=
			   LATE_DEEP_NS;
	pthread_mutex_lock(&s->late_mu);
	if (all || s->nlate >= (deep ? LATE_DEEP_FLUSH : LATE_FLUSH) ||
	    now_ns() - s->late_at >= (deep ? LATE_DEEP_AGE_NS : LATE_AGE_NS)) {
		for (int i = 0; i < s->nlate; i++) {
			output_notify(s->late[i]);
			/* After the last touch: sched_forget may now return. */
			__atomic_store_n(&s->late[i]->deferred, 0, __ATOMIC_RELEASE);
		}
		s->nlate = 0;
	}
	pthread_mutex_unlock(&s->late_mu);
}

/* ------------------------------------------------------------- waiting */

void job_wait(gowsgi_job *job, int (*ready)(gowsgi_job *))
{
	gowsgi_sched *s = job->sched;
	late_flush(s, 1); /* this job's own output among them */
	pthread_mutex_unlock(&job->mu);
	PyThreadState *ts = PyEval_SaveThread();
	pthread_mutex_lock(&job->mu);
	struct timespec dl = deadline(SHORT_WAIT_NS);
	while (!ready(job))
		if (pthread_cond_timedwait(&job->cv, &job->mu, &dl) == ETIMEDOUT)
			break;
	if (!ready(job)) {
		/* A slow client: the place goes to another request. */
		pthread_mutex_unlock(&job->mu);
		pthread_mutex_lock(&s->mu);
		s->blocked++;
		place_give(s);
		pthread_mutex_unlock(&s->mu);
		pthread_mutex_lock(&job->mu);
		while (!ready(job))
			pthread_cond_wait(&job->cv, &job->mu);
		pthread_mutex_unlock(&job->mu);
		int64_t t0 = now_ns();
		pthread_mutex_lock(&s->mu);
		s->blocked--;
		place_take(s);
		s->st.wait_ns += now_ns() - t0;
		pthread_mutex_unlock(&s->mu);
		pthread_mutex_lock(&job->mu);
	}
	pthread_mutex_unlock(&job->mu);
	int64_t t0 = now_ns();
	PyEval_RestoreThread(ts);
	__atomic_add_fetch(&s->st.gil_wait_ns, now_ns() - t0, __ATOMIC_RELAXED);
	pthread_mutex_lock(&job->mu);
}

void sched_block(gowsgi_job *job)
{
	gowsgi_sched *s = job->sched;
	late_flush(s, 1);
	job->blocked_ts = PyEval_SaveThread();
	pthread_mutex_lock(&s->mu);
	s->blocked++;
	place_give(s);
	pthread_mutex_unlock(&s->mu);
}

void sched_unblock(gowsgi_job *job)
{
	gowsgi_sched *s = job->sched;
	int64_t t0 = now_ns();
	pthread_mutex_lock(&s->mu);
	s->blocked--;
	place_take(s);
	int64_t t1 = now_ns();
	s->st.wait_ns += t1 - t0;
	pthread_mutex_unlock(&s->mu);
	PyEval_RestoreThread(job->blocked_ts);
	__atomic_add_fetch(&s->st.gil_wait_ns, now_ns() - t1, __ATOMIC_RELAXED);
}

/* Calls one of Go's writer functions for the job's request, with the GIL
 * released. */
static void call_writer(gowsgi_job *job, void (*fn)(uintptr_t, uint64_t))
{
	uintptr_t handle = job->in.handle;
	uint64_t gen = job->in.gen;
	Py_BEGIN_ALLOW_THREADS
	fn(handle, gen);
	Py_END_ALLOW_THREADS
}

void sched_arm_writer(gowsgi_job *job)
{
	job->armed = 1;
	call_writer(job, go_arm_writer);
}

void sched_start_writer(gowsgi_job *job)
{
	pthread_mutex_lock(&job->mu);
	int started = job->writer;
	job->writer = 1;
	pthread_mutex_unlock(&job->mu);
	if (!started) /* else Go's timer started it */
		call_writer(job, go_start_writer);
}

int gowsgi_job_claim_writer(gowsgi_job *job)
{
	pthread_mutex_lock(&job->mu);
	int ok = !job->returned && !job->writer;
	if (ok)
		job->writer = 1;
	pthread_mutex_unlock(&job->mu);
	return ok;
}

/* ------------------------------------------------------------- workers */

/* Takes the first queued job.  mu held; the queue is not empty. */
static gowsgi_job *queue_pop(gowsgi_sched *s)
{
	gowsgi_job *job = s->qhead;
	s->qhead = job->qnext;
	if (s->qhead == NULL)
		s->qtail = NULL;
	__atomic_sub_fetch(&s->qlen, 1, __ATOMIC_RELAXED);
	job->queued = 0;
	job->qnext = NULL;
	s->st.queue_wait_ns += now_ns() - job->queued_at;
	return job;
}

/* Whether a standby could start a queued job.  mu held. */
static int startable(gowsgi_sched *s)
{
	return !s->stopping && s->qlen > 0 && s->running < s->places && s->whead == NULL;
}

static void *worker_main(void *arg);

static void ensure_standby(gowsgi_sched *s)
{
	if (s->standby || !startable(s))
		return;
	worker *w = s->idle;
	if (w != NULL) {
		s->idle = w->next;
		s->nidle--;
		w->idle = 0;
		w->role = ROLE_STANDBY;
		__atomic_store_n(&s->standby, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&w->cv);
		return;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return;
	w->s = s;
	w->role = ROLE_STANDBY;
	cond_init(&w->cv);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals are Go's: the new thread starts with them all blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int rc = pthread_create(&t, &attr, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_cond_destroy(&w->cv);
		free(w);
		return; /* the next ensure_standby tries again */
	}
	s->nworkers++;
	__atomic_store_n(&s->standby, 1, __ATOMIC_RELAXED);
}

/* Whether a thread that just ran a request of took_ns gives way to the
 * standby rather than run the next: the standby has waited, or would have
 * by the end of another request like it (counted twice, for the margin),
 * three quarters of the switch interval.  mu held. */
static int give_way(gowsgi_sched *s, int64_t took_ns)
{
	if (!__atomic_load_n(&s->standby_gil, __ATOMIC_RELAXED))
		return 0;
	int64_t since = __atomic_load_n(&s->standby_since, __ATOMIC_RELAXED);
	int64_t interval = __atomic_load_n(&s->interval_ns, __ATOMIC_RELAXED);
	if (now_ns() - since + 2 * took_ns < interval - interval / 4)
		return 0;
	s->st.gave_way++;
	return 1;
}

/* Reads the interpreter's switch interval, which the app may change: after
 * each request, and by a standby that takes the GIL.  With the GIL. */
static void read_interval(gowsgi_sched *s)
{
	PyObject *v = PyObject_CallNoArgs(s->gi->switch_interval);
	double secs = v ? PyFloat_AsDouble(v) : -1;
	Py_XDECREF(v);
	if (PyErr_Occurred())
		PyErr_Clear();
	if (secs > 0)
		__atomic_store_n(&s->interval_ns, (int64_t)(secs * 1e9), __ATOMIC_RELAXED);
}

/* Runs job and, while this thread is alone in holding a place, the queued
 * jobs after it, keeping the GIL.  Called with the GIL and a place; returns
 * with neither. */
static void run_jobs(gowsgi_sched *s, worker *w, gowsgi_job *job)
{
	for (;;) {
		sched_collect(s);
		/* One request in SAMPLE tells how Python-bound they are: the
		 * reading costs two system calls. */
		int sample = __atomic_fetch_add(&s->nsample, 1, __ATOMIC_RELAXED) % SAMPLE == 0;
		int64_t b0 = sample ? runnable_ns(w->statfd) : 0;
		int64_t t0 = now_ns();
		request_run(job, t0);
		int64_t took = now_ns() - t0;
		note_request(s, took, sample ? runnable_ns(w->statfd) - b0 : -1);
		read_interval(s);
		late_flush(s, 0);
		pthread_mutex_lock(&s->mu);
		s->st.served++;
		if (s->running == 1 && s->qlen > 0 && s->whead == NULL && !s->stopping &&
		    !give_way(s, took)) {
			/* Alone in Python: the next one keeps this thread and
			 * its place. */
			job = queue_pop(s);
			note_runner(s);
			s->st.back_to_back++;
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		place_give(s);
		pthread_mutex_unlock(&s->mu);
		late_flush(s, 1);
		sched_collect(s);
		PyEval_SaveThread();
		return;
	}
}

/* Whether the standby is to wait for the GIL now, to start a queued
 * request (see the top of this file).  While one request runs and requests
 * have been Python-bound, it watches the CPU clock of that request's thread
 * instead, and waits for the GIL once the thread stops without having been
 * preempted, once the request has had a switch interval of CPU time, or
 * once that request is no longer alone.  Returns why it is to wait
 * (GOWSGI_STANDBY_...), or 0 if no queued request can start.  mu held, and
 * let go while it watches. */
static int watch(gowsgi_sched *s, worker *w)
{
#ifdef Py_GIL_DISABLED
	/* No GIL to wait for: the next request runs beside this one. */
	(void)w;
	return startable(s) ? GOWSGI_STANDBY_AT_ONCE : 0;
#else
	int64_t step = WATCH_NS;
	uint64_t seq = 0;
	int64_t start_cpu = 0; /* the request's CPU time when first seen */
	int stopped = 0;       /* the thread was found stopped last time */
	for (;;) {
		if (!startable(s))
			return 0;
		if (s->running != 1 || !s->runner_ok ||
		    __atomic_load_n(&s->busy, __ATOMIC_RELAXED) < BOUND ||
		    __atomic_load_n(&s->avg_ns, __ATOMIC_RELAXED) < SHORT_NS)
			return GOWSGI_STANDBY_AT_ONCE;
		clockid_t clock = s->runner_clock;
		int64_t t0 = now_ns(), c0 = clock_ns(clock);
		if (s->runner_seq != seq) {
			seq = s->runner_seq;
			start_cpu = c0;
		}
		struct timespec dl = deadline(step);
		s->standby_w = w;
		pthread_cond_timedwait(&w->cv, &s->mu, &dl);
		s->standby_w = NULL;
		if (s->running != 1 || s->runner_clock != clock) {
			stopped = 0;
			continue;
		}
		/* Without mu, which the thread watched may want. */
		pid_t tid = s->runner_tid;
		pthread_mutex_unlock(&s->mu);
		late_flush(s, 0);
		int64_t t1 = now_ns(), c1 = clock_ns(clock);
		int stalled = (c1 - c0) * 1024 < (t1 - t0) * STALLED && !preempted(tid);
		pthread_mutex_lock(&s->mu);
		if (s->running != 1 || s->runner_clock != clock) {
			stopped = 0;
			continue;
		}
		if (c0 < 0 || c1 < 0)
			return GOWSGI_STANDBY_GONE; /* do as CPython would */
		if (stalled) {
			/* Twice in a row: a thread that waits a moment for a
			 * lock is not taken for one waiting on I/O. */
			if (stopped)
				return GOWSGI_STANDBY_STOPPED; /* on I/O, most likely, the GIL let go */
			stopped = 1;
			step = WATCH_NS;
			continue;
		}
		stopped = 0;
		if (s->runner_seq == seq &&
		    c1 - start_cpu >= __atomic_load_n(&s->interval_ns, __ATOMIC_RELAXED))
			return GOWSGI_STANDBY_LONG; /* it shares the GIL */
		if (step < WATCH_MAX_NS)
			step *= 2;
	}
#endif
}

/* The standby goes idle without having taken the GIL: the notices
 * deferred on its account go to Go now.  mu held. */
static void stand_down(gowsgi_sched *s, worker *w)
{
	w->role = ROLE_IDLE;
	pthread_mutex_lock(&s->late_mu);
	__atomic_store_n(&s->standby, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->late_mu);
	late_flush(s, 1);
}

/* Set once a worker is pinned (WithPythonCPUs): calls into Go then leave
 * the pinning for their length (go_call_enter). */
static int pinning;

int go_call_enter(cpu_set_t *saved)
{
	if (!__atomic_load_n(&pinning, __ATOMIC_RELAXED))
		return 0;
	cpu_set_t all;
	if (pthread_getaffinity_np(pthread_self(), sizeof *saved, saved) != 0 ||
	    sched_getaffinity(getpid(), sizeof all, &all) != 0 || CPU_EQUAL(saved, &all))
		return 0;
	return pthread_setaffinity_np(pthread_self(), sizeof all, &all) == 0;
}

void go_call_leave(const cpu_set_t *saved, int restore)
{
	if (restore)
		pthread_setaffinity_np(pthread_self(), sizeof *saved, saved);
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	gowsgi_sched *s = w->s;
	w->statfd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	/* Named, so that top -H, ps -L and perf show the threads that run
	 * the queue (and, by Linux's rule, the threads started from them). */
	prctl(PR_SET_NAME, "wsgi-python");
	if (s->cpu >= 0) {
		/* WithPythonCPUs: best effort, checked by Go beforehand. */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(s->cpu, &set);
		__atomic_store_n(&pinning, 1, __ATOMIC_RELAXED);
		pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	}
	int temp;
	PyThreadState *ts = ts_get(s->gi, &temp);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (w->role == ROLE_STANDBY) {
			int why = watch(s, w);
			if (!why) {
				stand_down(s, w);
				continue;
			}
			int64_t now = now_ns();
			uint64_t nwait = s->nwaits++;
			s->waits[nwait % WAITS] = (gowsgi_sched_wait){.at = now, .tid = my_tid(), .why = why};
			/* What the standby waits is not counted: the
			 * queued requests count theirs in queue_wait. */
			__atomic_store_n(&s->standby_since, now, __ATOMIC_RELAXED);
			__atomic_store_n(&s->standby_gil, 1, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&s->mu);
			PyEval_RestoreThread(ts);
			int64_t got = now_ns();
			late_flush(s, 1); /* nobody defers while it holds the GIL */
			read_interval(s);
			pthread_mutex_lock(&s->mu);
			if (s->nwaits - nwait <= WAITS)
				s->waits[nwait % WAITS].got = got;
			__atomic_store_n(&s->standby_gil, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&s->standby, 0, __ATOMIC_RELAXED);
			w->role = ROLE_IDLE;
			gowsgi_job *job = NULL;
			if (startable(s)) {
				job = queue_pop(s);
				s->running++;
				note_runner(s);
				ensure_standby(s);
			}
			pthread_mutex_unlock(&s->mu);
			if (job != NULL) {
				run_jobs(s, w, job);
			} else {
				sched_collect(s);
				PyEval_SaveThread();
			}
			pthread_mutex_lock(&s->mu);
			continue;
		}
		if (s->stopping)
			break;
		w->idle = 1;
		w->next = s->idle;
		s->idle = w;
		s->nidle++;
		struct timespec dl = deadline(IDLE_EXIT_NS);
		int rc = 0;
		while (w->idle && !s->stopping && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&w->cv, &s->mu, &dl);
		if (w->idle) {
			/* Stopping, or idle for long: leave the list. */
			for (worker **p = &s->idle; *p; p = &(*p)->next) {
				if (*p == w) {
					*p = w->next;
					break;
				}
			}
			w->idle = 0;
			s->nidle--;
			if (s->stopping || s->nidle > 0)
				break; /* one idle worker stays */
		}
	}
	pthread_mutex_unlock(&s->mu);
	ts_release(s->gi, ts, temp);
	if (w->statfd >= 0)
		close(w->statfd);
	pthread_mutex_lock(&s->mu);
	s->nworkers--;
	pthread_cond_broadcast(&s->exited);
	pthread_mutex_unlock(&s->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
	return NULL;
}

/* ------------------------------------------------------------- Go's API */

gowsgi_sched *gowsgi_sched_new(gowsgi_interp *gi, int places, int max_queue, int cpu)
{
	gowsgi_sched *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->late_mu, NULL);
	cond_init(&s->exited);
	s->gi = gi;
	s->places = places;
	s->max_queue = max_queue;
	s->cpu = cpu;
	s->interval_ns = DEFAULT_INTERVAL_NS;
	/* Until requests show otherwise, they count as Python-bound. */
	s->busy = 1024;
	s->avg_ns = WATCH_NS;
	return s;
}

int gowsgi_allowed_cpus(int *out, int max)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	/* The process's: its first thread's, which Go never pins. */
	if (sched_getaffinity(getpid(), sizeof set, &set) < 0)
		return -1;
	int n = 0;
	for (int i = 0; i < CPU_SETSIZE && n < max; i++)
		if (CPU_ISSET(i, &set))
			out[n++] = i;
	return n;
}

void gowsgi_sched_stop(gowsgi_sched *s)
{
	pthread_mutex_lock(&s->mu);
	s->stopping = 1;
	for (worker *w = s->idle; w; w = w->next)
		pthread_cond_signal(&w->cv);
	if (s->standby_w != NULL)
		pthread_cond_signal(&s->standby_w->cv);
	while (s->nworkers > 0)
		pthread_cond_wait(&s->exited, &s->mu);
	int garbage = s->ngarbage;
	pthread_mutex_unlock(&s->mu);
	if (garbage > 0) {
		/* What Go gave back after the last request: released now, an
		 * interpreter that is recycled must not keep it. */
		int temp;
		PyThreadState *ts = gi_enter(s->gi, &temp);
		sched_collect(s);
		gi_leave(ts, temp);
	}
}

void gowsgi_sched_free(gowsgi_sched *s)
{
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->late_mu);
	pthread_cond_destroy(&s->exited);
	free(s->garbage); /* empty: gowsgi_sched_stop released it */
	free(s);
}

void gowsgi_sched_stats_get(gowsgi_sched *s, gowsgi_sched_stats *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	out->running = s->running;
	out->queued = s->qlen + s->nwait;
	out->blocked = s->blocked;
	out->workers = s->nworkers;
	out->gil_wait_ns = __atomic_load_n(&s->st.gil_wait_ns, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->mu);
}

int gowsgi_sched_waits(gowsgi_sched *s, gowsgi_sched_wait *out, int max)
{
	if (max <= 0)
		return 0;
	pthread_mutex_lock(&s->mu);
	uint64_t first = s->nwaits > WAITS ? s->nwaits - WAITS : 0;
	if (s->nwaits - first > (uint64_t)max)
		first = s->nwaits - max;
	int n = 0;
	for (uint64_t i = first; i < s->nwaits; i++)
		out[n++] = s->waits[i % WAITS];
	pthread_mutex_unlock(&s->mu);
	return n;
}

int gowsgi_job_submit(gowsgi_sched *s, gowsgi_job *job, char *hdrbuf, gowsgi_event *ev)
{
	job_reset(job, s, s->gi);
	pthread_mutex_lock(&s->mu);
	if (s->stopping) {
		pthread_mutex_unlock(&s->mu);
		return GOWSGI_REFUSED;
	}
	if (s->qlen == 0 && s->whead == NULL &&
	    (s->running == 0 || (s->running < s->places &&
				 __atomic_load_n(&s->avg_ns, __ATOMIC_RELAXED) < SHORT_NS))) {
		/* Nobody runs Python here, or requests are short: run it on
		 * this thread. */
		s->running++;
		note_runner(s);
		s->st.direct++;
		pthread_mutex_unlock(&s->mu);
		job->direct = 1;
		int temp;
		PyThreadState *ts = ts_get(s->gi, &temp);
		int64_t t0 = now_ns();
		PyEval_RestoreThread(ts);
		int64_t t1 = now_ns();
		__atomic_add_fetch(&s->st.gil_wait_ns, t1 - t0, __ATOMIC_RELAXED);
		if (sched_collect(s))
			t1 = now_ns(); /* the request starts after the collection */
		request_run(job, t1);
		note_request(s, now_ns() - t1, -1);
		read_interval(s);
		pthread_mutex_lock(&s->mu);
		s->st.served++;
		place_give(s);
		pthread_mutex_unlock(&s->mu);
		sched_collect(s);
		gi_leave(ts, temp);
		pthread_mutex_lock(&job->mu);
		job->returned = 1; /* Go's timer may not start a writer now */
		int writer = job->writer;
		pthread_mutex_unlock(&job->mu);
		if (writer)
			return GOWSGI_RAN_WRITER; /* the writer reads the events */
		gowsgi_job_next(job, -1, 0, hdrbuf, ev);
		return GOWSGI_RAN;
	}
	if (s->max_queue > 0 && s->qlen >= s->max_queue) {
		pthread_mutex_unlock(&s->mu);
		return GOWSGI_FULL;
	}
	job->queued = 1;
	job->queued_at = now_ns();
	if (s->qtail)
		s->qtail->qnext = job;
	else
		s->qhead = job;
	s->qtail = job;
	__atomic_add_fetch(&s->qlen, 1, __ATOMIC_RELAXED);
	ensure_standby(s);
	pthread_mutex_unlock(&s->mu);
	return GOWSGI_QUEUED;
}

int gowsgi_job_cancel(gowsgi_sched *s, gowsgi_job *job)
{
	int removed = 0;
	pthread_mutex_lock(&s->mu);
	if (job->queued) {
		for (gowsgi_job **p = &s->qhead, *prev = NULL; *p; prev = *p, p = &(*p)->qnext) {
			if (*p == job) {
				*p = job->qnext;
				if (s->qtail == job)
					s->qtail = prev;
				break;
			}
		}
		__atomic_sub_fetch(&s->qlen, 1, __ATOMIC_RELAXED);
		job->queued = 0;
		job->qnext = NULL;
		s->st.queue_wait_ns += now_ns() - job->queued_at;
		removed = 1;
	}
	pthread_mutex_unlock(&s->mu);
	return removed;
}
