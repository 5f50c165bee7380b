// loadgen: CoAP-over-UDP load generator for `npm run bench` (coapkit).
//
// Compiled by bench/run.mjs with `gcc -O2 -o bench/.build/loadgen bench/loadgen.c`.
//
// Two modes:
//   closed  N client endpoints (one UDP socket = one source port each), each keeping
//           WINDOW GET requests outstanding; a new request is sent as soon as one is answered.
//           The endpoints start one after another over --ramp-ms (default 100 ms).
//   paced   N client endpoints, each sending RATE requests per second (open loop, phases
//           spread evenly), e.g. 10,000 endpoints x 1 req/s.
//
// Every request gets a fresh random-start Message ID (per socket, incrementing) and a fresh
// 4-byte token (16 random bits + the 16-bit slot index). Responses are matched by token;
// piggybacked ACKs, separate CON responses (which are ACKed) and NON responses all count.
// A request unanswered after --timeout-ms is counted in `timeouts`; in closed mode its slot is
// re-issued as a fresh request (new MID and token), so lost datagrams never stall the run.
//
// By default the generator blocks in epoll_wait, so every response that finds it asleep costs
// the server's sendmsg a wake-up of the generator (and on a 2-CPU machine often a preemption by
// it). With --idle-us U (closed mode) it polls and, when nothing is ready, sleeps U microseconds:
// fewer, batched wake-ups, at the price of up to U us more latency per request. bench/dtls-loadgen.c
// has the same option; the bench passes both the same value so that coap and coaps are driven alike.
//
// The result is one JSON line on stdout. With --progress, one JSON line per second on stderr.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen-common.h"


typedef struct {
  int fd;
  uint16_t next_mid;
  slot_t *slots;
} client_t;

/* Options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 5683;
static const char *opt_path = "/hello";
static const char *opt_mode = "closed";
static int opt_clients = 64;
static int opt_window = 1;
static int opt_con = 1;
static double opt_duration = 5.0;
static double opt_warmup = 0.0;
static double opt_rate = 1.0;
static int opt_timeout_ms = 2000;
static int opt_progress = 0;
static int opt_ramp_ms = 100;
static int opt_idle_us = 0;
static int opt_method = 1;           /* 1 GET, 2 POST, 3 PUT */
static const char *opt_payload = NULL; /* request body (POST/PUT) */
static int opt_cf = -1;              /* Content-Format of the body, -1 = none */

/* Statistics (reset when the warm-up ends). */
static uint64_t st_refused;

static void reset_stats(void) {
  reset_common_stats();
  st_refused = 0;
}

static void send_request(client_t *c, uint32_t slot_index) {
  uint8_t buf[512];
  size_t n = fill_request(buf, &c->slots[slot_index], c->next_mid++, slot_index, opt_con);
  buf[1] = (uint8_t)opt_method;
  if (send(c->fd, buf, n, 0) < 0) {
    if (errno == ECONNREFUSED) st_refused++;
    else st_send_err++;
  } else {
    st_sent++;
  }
}

static void send_empty_ack(client_t *c, uint16_t mid) {
  uint8_t ack[4] = {0x60, 0x00, (uint8_t)(mid >> 8), (uint8_t)mid};
  (void)send(c->fd, ack, sizeof ack, 0);
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --port P [--host 127.0.0.1] [--path /hello] [--mode closed|paced]\n"
          "          [--clients N] [--window W] [--type con|non] [--duration S] [--warmup S]\n"
          "          [--rate R] [--timeout-ms T] [--ramp-ms M] [--idle-us U] [--progress]\n"
          "          [--method get|post|put] [--payload TEXT] [--content-format N]\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--progress")) {
      opt_progress = 1;
      continue;
    }
    if (!v) usage(argv[0]);
    if (!strcmp(a, "--host")) opt_host = v;
    else if (!strcmp(a, "--port")) opt_port = atoi(v);
    else if (!strcmp(a, "--path")) opt_path = v;
    else if (!strcmp(a, "--mode")) opt_mode = v;
    else if (!strcmp(a, "--clients")) opt_clients = atoi(v);
    else if (!strcmp(a, "--window")) opt_window = atoi(v);
    else if (!strcmp(a, "--type")) opt_con = strcmp(v, "non") != 0;
    else if (!strcmp(a, "--duration")) opt_duration = atof(v);
    else if (!strcmp(a, "--warmup")) opt_warmup = atof(v);
    else if (!strcmp(a, "--rate")) opt_rate = atof(v);
    else if (!strcmp(a, "--timeout-ms")) opt_timeout_ms = atoi(v);
    else if (!strcmp(a, "--ramp-ms")) opt_ramp_ms = atoi(v);
    else if (!strcmp(a, "--idle-us")) opt_idle_us = atoi(v);
    else if (!strcmp(a, "--method")) opt_method = !strcmp(v, "post") ? 2 : !strcmp(v, "put") ? 3 : 1;
    else if (!strcmp(a, "--payload")) opt_payload = v;
    else if (!strcmp(a, "--content-format")) opt_cf = atoi(v);
    else usage(argv[0]);
    i++;
  }
  int paced = !strcmp(opt_mode, "paced");
  if (paced) opt_window = 1;
  if (opt_clients < 1 || opt_window < 1 || opt_window > 65535 || opt_duration <= 0 || opt_rate <= 0)
    usage(argv[0]);

  /* Many endpoints need many descriptors: raise the soft limit to the hard one. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rng_state ^= (uint64_t)now_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();

  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  struct sockaddr *sa;
  socklen_t sl;
  int fam;
  memset(&a6, 0, sizeof a6);
  memset(&a4, 0, sizeof a4);
  if (inet_pton(AF_INET, opt_host, &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)opt_port);
    sa = (struct sockaddr *)&a4;
    sl = sizeof a4;
    fam = AF_INET;
  } else if (inet_pton(AF_INET6, opt_host, &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)opt_port);
    sa = (struct sockaddr *)&a6;
    sl = sizeof a6;
    fam = AF_INET6;
  } else {
    fprintf(stderr, "bad host %s (numeric address expected)\n", opt_host);
    return 2;
  }
  build_template(opt_path);
  /* Content-Format (12, after Uri-Path 11) and the body are the same in every request. */
  if (opt_cf >= 0 || opt_payload) {
    if (opt_cf > 255 || tmpl_len + 4 + (opt_payload ? strlen(opt_payload) : 0) >= sizeof tmpl) {
      fprintf(stderr, "payload too long or content-format above 255\n");
      return 2;
    }
    uint8_t delta = tmpl_len > 8 ? 0x10 : 0xc0; /* after Uri-Path (11) or first option */
    if (opt_cf == 0) {
      tmpl[tmpl_len++] = delta; /* length 0: uint 0 */
    } else if (opt_cf > 0) {
      tmpl[tmpl_len++] = delta | 1;
      tmpl[tmpl_len++] = (uint8_t)opt_cf;
    }
    if (opt_payload && *opt_payload) {
      tmpl[tmpl_len++] = 0xff;
      memcpy(tmpl + tmpl_len, opt_payload, strlen(opt_payload));
      tmpl_len += strlen(opt_payload);
    }
  }

  hist = calloc(HIST_US, sizeof *hist);
  client_t *cs = calloc((size_t)opt_clients, sizeof *cs);
  if (!hist || !cs) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  int ep = epoll_create1(0);
  for (int i = 0; i < opt_clients; i++) {
    int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, sa, sl) < 0) {
      fprintf(stderr, "socket/connect for client %d failed: %s\n", i, strerror(errno));
      return 1;
    }
    cs[i].fd = fd;
    cs[i].next_mid = (uint16_t)rnd32();
    cs[i].slots = calloc((size_t)opt_window, sizeof(slot_t));
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }

  uint64_t t0 = now_us();
  uint64_t measure_start = t0 + (uint64_t)(opt_warmup * 1e6);
  uint64_t end = measure_start + (uint64_t)(opt_duration * 1e6);
  uint64_t timeout_us = (uint64_t)opt_timeout_ms * 1000u;
  int measuring = opt_warmup <= 0;
  double cpu0 = cpu_seconds();
  if (measuring) measure_start = t0;

  /* Paced schedule: the g-th request goes to client g % N at t0 + g * interval. */
  double interval_us = 1e6 / ((double)opt_clients * opt_rate);
  uint64_t g = 0;

  /* Closed mode: endpoints start one after another over --ramp-ms, not in one burst that a
     server's default-sized socket buffer would drop (and a real fleet never sends). */
  int started = 0;
  uint64_t ramp_us = (uint64_t)opt_ramp_ms * 1000u;

  struct epoll_event evs[512];
  uint8_t buf[2048];
  uint64_t next_scan = t0 + 50000, next_progress = t0 + 1000000, last_completed = 0;
  for (;;) {
    uint64_t now = now_us();
    if (now >= end) break;
    if (!measuring && now >= measure_start) {
      reset_stats();
      cpu0 = cpu_seconds();
      measuring = 1;
    }
    if (!paced && started < opt_clients) {
      while (started < opt_clients && (ramp_us == 0 || now >= t0 + ramp_us * (uint64_t)started / (uint64_t)opt_clients)) {
        for (int w = 0; w < opt_window; w++) send_request(&cs[started], (uint32_t)w);
        started++;
      }
    }
    if (paced) {
      for (;;) {
        uint64_t due = t0 + (uint64_t)((double)g * interval_us);
        if (due > now) break;
        client_t *c = &cs[g % (uint64_t)opt_clients];
        if (c->slots[0].busy) st_timeouts++; /* previous one never answered */
        send_request(c, 0);
        g++;
      }
    }
    if (now >= next_scan) {
      for (int i = 0; i < opt_clients; i++) {
        for (int w = 0; w < opt_window; w++) {
          slot_t *s = &cs[i].slots[w];
          if (s->busy && now > s->sent_at && now - s->sent_at > timeout_us) {
            st_timeouts++;
            s->busy = 0;
            if (!paced) send_request(&cs[i], (uint32_t)w);
          }
        }
      }
      next_scan = now + 50000;
    }
    if (opt_progress && now >= next_progress) {
      fprintf(stderr, "{\"t\":%.3f,\"completed\":%llu,\"interval_completed\":%llu}\n", (now - t0) / 1e6,
              (unsigned long long)st_completed, (unsigned long long)(st_completed - last_completed));
      last_completed = st_completed;
      next_progress += 1000000;
    }
    int wait_ms = !paced && started < opt_clients ? 1 : 20;
    if (paced) {
      uint64_t due = t0 + (uint64_t)((double)g * interval_us);
      wait_ms = due > now ? (int)((due - now + 999u) / 1000u) : 0;
      if (wait_ms > 20) wait_ms = 20;
    }
    int k;
    if (opt_idle_us > 0 && !paced) {
      /* coalescing: poll, and nap instead of blocking when nothing is ready (see --idle-us) */
      k = epoll_wait(ep, evs, 512, 0);
      if (k == 0) {
        long ns = (long)(opt_idle_us < wait_ms * 1000 ? opt_idle_us : wait_ms * 1000) * 1000L;
        struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
        nanosleep(&ts, NULL);
        continue;
      }
    } else {
      k = epoll_wait(ep, evs, 512, wait_ms);
    }
    for (int e = 0; e < k; e++) {
      client_t *c = &cs[evs[e].data.u32];
      for (int burst = 0; burst < 64; burst++) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0) {
          if (errno == ECONNREFUSED) st_refused++;
          break;
        }
        int ack_mid;
        int si = on_response(buf, r, c->slots, opt_window, end, &ack_mid);
        if (ack_mid >= 0) send_empty_ack(c, (uint16_t)ack_mid);
        if (si >= 0 && !paced) send_request(c, (uint32_t)si);
      }
    }
  }
  uint64_t t_end = now_us();
  double cpu = cpu_seconds() - cpu0;
  double secs = (double)(t_end - measure_start) / 1e6;
  printf("{\"mode\":\"%s\",\"type\":\"%s\",\"clients\":%d,\"window\":%d,\"rate\":%g,\"seconds\":%.3f,"
         "\"sent\":%llu,\"completed\":%llu,\"rps\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,"
         "\"max_us\":%llu,\"mean_us\":%.1f,\"timeouts\":%llu,\"stale\":%llu,\"bad\":%llu,\"non2xx\":%llu,"
         "\"rst\":%llu,\"refused\":%llu,\"send_errors\":%llu,\"separate_acks\":%llu,\"cpu_pct\":%.1f}\n",
         paced ? "paced" : "closed", opt_con ? "con" : "non", opt_clients, opt_window, paced ? opt_rate : 0.0,
         secs, (unsigned long long)st_sent, (unsigned long long)st_completed, st_completed / secs,
         (unsigned long long)percentile(0.50), (unsigned long long)percentile(0.90),
         (unsigned long long)percentile(0.99), (unsigned long long)lat_max,
         lat_n ? (double)lat_sum / (double)lat_n : 0.0, (unsigned long long)st_timeouts,
         (unsigned long long)st_stale, (unsigned long long)st_bad, (unsigned long long)st_non2xx,
         (unsigned long long)st_rst, (unsigned long long)st_refused, (unsigned long long)st_send_err,
         (unsigned long long)st_sep_acks, 100.0 * cpu / secs);
  fflush(stdout);
  for (int i = 0; i < opt_clients; i++) close(cs[i].fd);
  return 0;
}
