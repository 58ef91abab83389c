/* Idle-connection probe for bench/proxy.sh: opens N client connections (non-blocking libpq, two
 * threads, a bounded number in flight), prints "READY <ok> <failed> <seconds>" once every attempt
 * has finished, waits for SIGUSR1 (the script measures the proxy's memory meanwhile), then runs
 * SELECT 1 on SAMPLE connections spread evenly over the open ones, prints
 * "SAMPLE <ok> <tried> <ms>", closes everything and exits.
 *
 * Build: gcc -O2 -pthread -I"$(pg_config --includedir)" proxy_idle.c -lpq
 * Usage: proxy_idle CONNINFO N SAMPLE [DEADLINE_S]
 */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { THREADS = 2, WINDOW = 64 };

static const char* conninfo;
static int deadline_s = 600;
static PGconn** conns;    /* N slots; NULL after a failure */
static int n_total;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int errors_printed;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report_error(int i, PGconn* c) {
  pthread_mutex_lock(&err_lock);
  if (errors_printed < 5) {
    fprintf(stderr, "connection %d failed: %s", i, c ? PQerrorMessage(c) : "out of memory\n");
    errors_printed++;
  }
  pthread_mutex_unlock(&err_lock);
}

typedef struct {
  int first, last; /* [first, last) */
  int ok, failed;
} Range;

static void* open_range(void* arg) {
  Range* r = arg;
  int next = r->first;
  int slot_idx[WINDOW];
  PostgresPollingStatusType want[WINDOW];
  int inflight = 0;
  double stop_at = now_s() + deadline_s;
  for (;;) {
    while (inflight < WINDOW && next < r->last) {
      PGconn* c = PQconnectStart(conninfo);
      if (!c || PQstatus(c) == CONNECTION_BAD) {
        report_error(next, c);
        if (c) PQfinish(c);
        conns[next++] = NULL;
        r->failed++;
        continue;
      }
      conns[next] = c;
      slot_idx[inflight] = next++;
      want[inflight] = PGRES_POLLING_WRITING;
      inflight++;
    }
    if (inflight == 0) break;
    struct pollfd pfd[WINDOW];
    for (int k = 0; k < inflight; k++) {
      pfd[k].fd = PQsocket(conns[slot_idx[k]]);
      pfd[k].events = want[k] == PGRES_POLLING_READING ? POLLIN : POLLOUT;
      pfd[k].revents = 0;
    }
    if (now_s() > stop_at) {
      for (int k = 0; k < inflight; k++) {
        fprintf(stderr, "connection %d: timed out\n", slot_idx[k]);
        PQfinish(conns[slot_idx[k]]);
        conns[slot_idx[k]] = NULL;
        r->failed++;
      }
      break;
    }
    if (poll(pfd, inflight, 1000) < 0) continue;
    for (int k = 0; k < inflight; k++) {
      if (!pfd[k].revents) continue;
      int i = slot_idx[k];
      PostgresPollingStatusType st = PQconnectPoll(conns[i]);
      if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) {
        if (st == PGRES_POLLING_OK) {
          r->ok++;
        } else {
          report_error(i, conns[i]);
          PQfinish(conns[i]);
          conns[i] = NULL;
          r->failed++;
        }
        /* remove slot k: move the last one here and look at it again */
        inflight--;
        slot_idx[k] = slot_idx[inflight];
        want[k] = want[inflight];
        pfd[k] = pfd[inflight];
        k--;
      } else {
        want[k] = st;
      }
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s CONNINFO N SAMPLE [DEADLINE_S]\n", argv[0]);
    return 2;
  }
  conninfo = argv[1];
  n_total = atoi(argv[2]);
  int sample = atoi(argv[3]);
  if (argc > 4) deadline_s = atoi(argv[4]);
  conns = calloc(n_total, sizeof *conns);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the threads; taken with sigwait */

  double t0 = now_s();
  pthread_t th[THREADS];
  Range ranges[THREADS];
  for (int t = 0; t < THREADS; t++) {
    ranges[t] = (Range){n_total * t / THREADS, n_total * (t + 1) / THREADS, 0, 0};
    pthread_create(&th[t], NULL, open_range, &ranges[t]);
  }
  int ok = 0, failed = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(th[t], NULL);
    ok += ranges[t].ok;
    failed += ranges[t].failed;
  }
  printf("READY %d %d %.2f\n", ok, failed, now_s() - t0);
  fflush(stdout);

  int sig;
  sigwait(&set, &sig);

  int tried = 0, good = 0;
  double q0 = now_s();
  if (ok > 0 && sample > 0) {
    int open_seen = 0, want = sample < ok ? sample : ok;
    for (int i = 0; i < n_total && tried < want; i++) {
      if (!conns[i]) continue;
      /* the open connection numbered open_seen is taken when it crosses the next multiple of ok/want */
      if ((long)open_seen * want / ok == (long)tried) {
        PGresult* res = PQexec(conns[i], "SELECT 1");
        tried++;
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
          good++;
        } else if (errors_printed++ < 10) {
          fprintf(stderr, "SELECT 1 on connection %d failed: %s", i, PQerrorMessage(conns[i]));
        }
        PQclear(res);
      }
      open_seen++;
    }
  }
  printf("SAMPLE %d %d %.1f\n", good, tried, (now_s() - q0) * 1000);
  fflush(stdout);
  for (int i = 0; i < n_total; i++)
    if (conns[i]) PQfinish(conns[i]);
  return 0;
}
