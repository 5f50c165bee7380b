// dtls-loadgen: CoAP-over-DTLS 1.2 PSK ("coaps") load generator for `npm run bench` (coapkit).
//
// Compiled by bench/lib/dtls.mjs with
//   gcc -O2 -Wall -o bench/.build/dtls-loadgen bench/dtls-loadgen.c -lssl -lcrypto
// (OpenSSL 1.1.1 or 3.x headers: Debian libssl-dev). Single-threaded: non-blocking connected UDP
// sockets, epoll, one OpenSSL SSL object per session over BIO_new_dgram. Modelled on loadgen.c.
//
// Two modes:
//   requests    N sessions (one connected UDP socket = one source port each). All N are
//               handshaken first (not timed, at most --hs-concurrency at once), then each keeps
//               WINDOW CON GET requests outstanding (closed loop). Every request gets a fresh MID
//               (per session, incrementing from a random start) and a fresh 4-byte token (16 random
//               bits + the 16-bit slot index); responses are matched by token. A request
//               unanswered after --timeout-ms is counted in `timeouts` and re-issued as a fresh
//               request. A session that fails (alert, socket error) is handshaken again and
//               counted in `session_errors`.
//   handshakes  N concurrent slots, each repeatedly doing one full PSK handshake on a fresh socket
//               (ClientHello, HelloVerifyRequest, ClientHello with cookie, ..., Finished), then
//               close_notify and close; reports completed handshakes per second and handshake
//               latency percentiles. No session resumption.
//
// By default the generator blocks in epoll_wait like loadgen.c, so every response that finds it
// asleep costs the server a wake-up (and often a preemption by the woken generator). With
// --idle-us U it instead polls and, when nothing is ready, sleeps U microseconds (coalescing):
// fewer, batched wake-ups, at the price of up to U us more latency per request.
//
// DTLS retransmission timers are driven with DTLSv1_handle_timeout, so a lost handshake datagram
// never stalls a session; a handshake not done after --hs-timeout-ms is abandoned (counted in
// `hs_failed`) and retried on a fresh socket. A hard deadline (alarm) ends the process whatever
// happens. cpu_pct is this process's own CPU use (getrusage) over the measured period, in % of one
// CPU: it shows whether the generator, rather than the server, is the limit.
//
// The result is one JSON line on stdout. With --progress, one JSON line per second on stderr.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
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


enum { S_IDLE = 0, S_HANDSHAKE, S_ESTABLISHED };

typedef struct {
  int fd;
  int state;
  SSL *ssl;
  uint64_t hs_start;
  int fails; /* handshake failures in a row (setup) */
  uint16_t next_mid;
  slot_t *slots;
} sess_t;

/* Options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 5684;
static const char *opt_path = "/hello";
static const char *opt_mode = "requests";
static int opt_clients = 64;
static int opt_window = 1;
static int opt_con = 1;
static double opt_duration = 5.0;
static double opt_warmup = 0.0;
static int opt_timeout_ms = 2000;
static int opt_hs_timeout_ms = 10000;
static int opt_hs_timer_ms = 1000;
static int opt_hs_concurrency = 64;
static int opt_ramp_ms = 0;
static int opt_idle_us = 0;
static int opt_progress = 0;
static const char *opt_identity = "bench";
static const char *opt_cipher = "PSK-AES128-CCM8"; /* TLS_PSK_WITH_AES_128_CCM_8, RFC 7252 §9.1.3.1 */
static uint8_t psk_key[256];
static size_t psk_len;

/* Statistics (reset when the warm-up ends). */
static uint64_t st_sess_err, st_hs_done, st_hs_failed, st_hs_timeouts;
static char first_error[256];

static void reset_stats(void) {
  reset_common_stats();
  st_sess_err = st_hs_done = st_hs_failed = st_hs_timeouts = 0;
}

static void note_error(const char *where, int ssl_err) {
  if (first_error[0]) {
    ERR_clear_error();
    return;
  }
  unsigned long e = ERR_get_error();
  char buf[200] = "";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  else if (ssl_err == SSL_ERROR_SYSCALL) snprintf(buf, sizeof buf, "syscall: %s", strerror(errno));
  else if (ssl_err == SSL_ERROR_ZERO_RETURN) snprintf(buf, sizeof buf, "close_notify from server");
  else snprintf(buf, sizeof buf, "SSL error %d", ssl_err);
  snprintf(first_error, sizeof first_error, "%s: %s", where, buf);
  for (char *c = first_error; *c; c++)
    if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
  ERR_clear_error();
}

/* ---- OpenSSL ---------------------------------------------------------------------------------- */

static SSL_CTX *ctx;
static struct sockaddr_storage peer_ss;
static socklen_t peer_len;
static int peer_fam;
static int ep;

static unsigned int psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len,
                           unsigned char *psk, unsigned int max_psk_len) {
  (void)ssl;
  (void)hint;
  size_t il = strlen(opt_identity);
  if (il + 1 > max_identity_len || psk_len > max_psk_len) return 0;
  memcpy(identity, opt_identity, il + 1);
  memcpy(psk, psk_key, psk_len);
  return (unsigned int)psk_len;
}

/* Initial retransmission timer --hs-timer-ms (RFC 6347 §4.2.4.1 suggests 1 s), doubling, max 60 s. */
static unsigned int timer_cb(SSL *ssl, unsigned int timer_us) {
  (void)ssl;
  if (timer_us == 0) return (unsigned int)opt_hs_timer_ms * 1000u;
  return timer_us >= 30000000u ? 60000000u : timer_us * 2;
}

/* BIO_s_datagram() minus its receive-timeout handling: on a blocking socket it makes reads time
   out at the next DTLS timer, which costs a getsockopt and two setsockopt(SO_RCVTIMEO) per read.
   The sockets here are non-blocking and the timers are driven by the event loop, so drop it. */
static BIO_METHOD *nb_dgram;
static long (*dgram_ctrl)(BIO *, int, long, void *);
static long nb_dgram_ctrl(BIO *b, int cmd, long num, void *ptr) {
  if (cmd == BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT) return 0;
  return dgram_ctrl(b, cmd, num, ptr);
}
static void init_bio_method(void) {
  const BIO_METHOD *base = BIO_s_datagram();
  dgram_ctrl = BIO_meth_get_ctrl(base);
  BIO_METHOD *m = BIO_meth_new(BIO_TYPE_DGRAM, "datagram, non-blocking");
  if (!m || !dgram_ctrl || !BIO_meth_get_create(base) || !BIO_meth_set_write(m, BIO_meth_get_write(base)) ||
      !BIO_meth_set_read(m, BIO_meth_get_read(base)) || !BIO_meth_set_puts(m, BIO_meth_get_puts(base)) ||
      !BIO_meth_set_ctrl(m, nb_dgram_ctrl) || !BIO_meth_set_create(m, BIO_meth_get_create(base)) ||
      !BIO_meth_set_destroy(m, BIO_meth_get_destroy(base))) {
    if (m) BIO_meth_free(m);
    return; /* fall back to BIO_s_datagram() */
  }
  nb_dgram = m;
}
static BIO *new_dgram_bio(int fd) {
  if (!nb_dgram) return BIO_new_dgram(fd, BIO_NOCLOSE);
  BIO *b = BIO_new(nb_dgram);
  if (b) BIO_set_fd(b, fd, BIO_NOCLOSE);
  return b;
}

static void init_ssl(void) {
  init_bio_method();
  ctx = SSL_CTX_new(DTLS_client_method());
  if (!ctx) {
    fprintf(stderr, "SSL_CTX_new failed\n");
    exit(1);
  }
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_security_level(ctx, 0); /* CCM_8's 64-bit tag is below some default levels */
  if (!SSL_CTX_set_cipher_list(ctx, opt_cipher)) {
    fprintf(stderr, "unknown cipher list %s (see `openssl ciphers -v PSK`)\n", opt_cipher);
    exit(2);
  }
  SSL_CTX_set_psk_client_callback(ctx, psk_cb);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_QUERY_MTU | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every handshake is a full one */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}

static void sess_teardown(sess_t *s, int notify) {
  if (s->ssl) {
    if (notify && s->state == S_ESTABLISHED) (void)SSL_shutdown(s->ssl); /* close_notify, no wait */
    SSL_free(s->ssl);
    s->ssl = NULL;
  }
  if (s->fd >= 0) close(s->fd); /* also leaves the epoll set */
  s->fd = -1;
  s->state = S_IDLE;
  for (int w = 0; w < opt_window; w++) s->slots[w].busy = 0;
  ERR_clear_error();
}

/* Fresh socket + SSL; sends the first ClientHello. 0 = handshake under way, -1 = failed at once
   (torn down again; the caller counts it and retries later). Socket errors end the process. */
static int sess_start(sess_t *s, uint32_t index) {
  int fd = socket(peer_fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&peer_ss, peer_len) < 0) {
    fprintf(stderr, "socket/connect for session %u failed: %s\n", index, strerror(errno));
    exit(1);
  }
  SSL *ssl = SSL_new(ctx);
  BIO *bio = new_dgram_bio(fd);
  if (!ssl || !bio) {
    fprintf(stderr, "SSL_new/BIO_new_dgram failed\n");
    exit(1);
  }
  BIO_ctrl_set_connected(bio, &peer_ss); /* write() instead of sendto() */
  SSL_set_bio(ssl, bio, bio);
  SSL_set_connect_state(ssl);
  DTLS_set_link_mtu(ssl, 1500);
  DTLS_set_timer_cb(ssl, timer_cb);
  s->fd = fd;
  s->ssl = ssl;
  s->state = S_HANDSHAKE;
  s->hs_start = now_us();
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  int r = SSL_do_handshake(ssl);
  if (r <= 0) {
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      note_error("handshake start", e);
      sess_teardown(s, 0);
      return -1;
    }
  }
  return 0;
}

/* Advances a handshake; 1 = established, 0 = in progress, -1 = failed. */
static int sess_handshake(sess_t *s) {
  int r = SSL_do_handshake(s->ssl);
  if (r == 1) {
    s->state = S_ESTABLISHED;
    return 1;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  note_error("handshake", e);
  return -1;
}

/* ---- CoAP over the session ---------------------------------------------------------------------- */

static int ssl_send(sess_t *s, const uint8_t *buf, size_t len) {
  int r = SSL_write(s->ssl, buf, (int)len);
  if (r > 0) return 0;
  int e = SSL_get_error(s->ssl, r);
  if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) note_error("write", e);
  else ERR_clear_error();
  return -1;
}

static void send_request(sess_t *s, uint32_t slot_index) {
  uint8_t buf[512];
  size_t n = fill_request(buf, &s->slots[slot_index], s->next_mid++, slot_index, opt_con);
  if (ssl_send(s, buf, n) < 0) st_send_err++;
  else st_sent++;
}

static void send_empty_ack(sess_t *s, uint16_t mid) {
  uint8_t ack[4] = {0x60, 0x00, (uint8_t)(mid >> 8), (uint8_t)mid};
  (void)ssl_send(s, ack, sizeof ack);
}

/* Handles one decrypted CoAP message; end = end of the measured period. */
static void on_coap(sess_t *s, const uint8_t *buf, int r, uint64_t end) {
  int ack_mid;
  int si = on_response(buf, r, s->slots, opt_window, end, &ack_mid);
  if (ack_mid >= 0) send_empty_ack(s, (uint16_t)ack_mid);
  if (si >= 0) send_request(s, (uint32_t)si);
}

/* ---- main ------------------------------------------------------------------------------------- */

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "dtls-loadgen: hard deadline exceeded, exiting\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(3);
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --port P [--host 127.0.0.1] [--mode requests|handshakes] [--clients N]\n"
          "          [--window W] [--type con|non] [--duration S] [--warmup S] [--timeout-ms T]\n"
          "          [--psk-identity ID] [--psk-key HEX] [--cipher OPENSSL-CIPHER-LIST]\n"
          "          [--path /hello] [--hs-timeout-ms T] [--hs-timer-ms T] [--hs-concurrency C]\n"
          "          [--ramp-ms M] [--idle-us U] [--progress]\n"
          "  default cipher PSK-AES128-CCM8 (TLS_PSK_WITH_AES_128_CCM_8); e.g. PSK-AES128-GCM-SHA256\n",
          argv0);
  exit(2);
}

static int parse_hex(const char *h) {
  size_t n = strlen(h);
  if (n % 2 || n / 2 > sizeof psk_key || n == 0) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(h + 2 * i, "%2x", &v) != 1) return -1;
    psk_key[i] = (uint8_t)v;
  }
  psk_len = n / 2;
  return 0;
}

int main(int argc, char **argv) {
  const char *key_hex = "636f61706b69742d62656e63682d70736b"; /* "coapkit-bench-psk" */
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
    else if (!strcmp(a, "--timeout-ms")) opt_timeout_ms = atoi(v);
    else if (!strcmp(a, "--hs-timeout-ms")) opt_hs_timeout_ms = atoi(v);
    else if (!strcmp(a, "--hs-timer-ms")) opt_hs_timer_ms = atoi(v);
    else if (!strcmp(a, "--hs-concurrency")) opt_hs_concurrency = atoi(v);
    else if (!strcmp(a, "--ramp-ms")) opt_ramp_ms = atoi(v);
    else if (!strcmp(a, "--idle-us")) opt_idle_us = atoi(v);
    else if (!strcmp(a, "--psk-identity")) opt_identity = v;
    else if (!strcmp(a, "--psk-key")) key_hex = v;
    else if (!strcmp(a, "--cipher")) opt_cipher = v;
    else usage(argv[0]);
    i++;
  }
  int hs_mode = !strcmp(opt_mode, "handshakes");
  if (!hs_mode && strcmp(opt_mode, "requests")) usage(argv[0]);
  if (opt_clients < 1 || opt_window < 1 || opt_window > 65535 || opt_duration <= 0 || opt_timeout_ms < 1 ||
      opt_hs_timeout_ms < 1 || opt_hs_timer_ms < 1 || opt_hs_concurrency < 1)
    usage(argv[0]);
  if (parse_hex(key_hex) < 0) {
    fprintf(stderr, "--psk-key: even number of hex digits expected\n");
    return 2;
  }

  /* Hard deadline: setup + warm-up + run + slack, whatever the server does. */
  signal(SIGALRM, on_alarm);
  alarm((unsigned)(opt_hs_timeout_ms / 1000 + opt_warmup + opt_duration + 15));
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rng_state ^= (uint64_t)now_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();

  memset(&peer_ss, 0, sizeof peer_ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&peer_ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&peer_ss;
  if (inet_pton(AF_INET, opt_host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)opt_port);
    peer_len = sizeof *a4;
    peer_fam = AF_INET;
  } else if (inet_pton(AF_INET6, opt_host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)opt_port);
    peer_len = sizeof *a6;
    peer_fam = AF_INET6;
  } else {
    fprintf(stderr, "bad host %s (numeric address expected)\n", opt_host);
    return 2;
  }
  build_template(opt_path);
  init_ssl();

  hist = calloc(HIST_US, sizeof *hist);
  sess_t *ss = calloc((size_t)opt_clients, sizeof *ss);
  if (!hist || !ss) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (int i = 0; i < opt_clients; i++) {
    ss[i].fd = -1;
    ss[i].next_mid = (uint16_t)rnd32();
    ss[i].slots = calloc((size_t)opt_window, sizeof(slot_t));
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event evs[512];
  uint8_t buf[4096];
  uint64_t hs_timeout_us = (uint64_t)opt_hs_timeout_ms * 1000u;

  /* ---- requests mode, setup: handshake every session (not timed) ---- */
  double setup_s = 0;
  int established = 0, given_up = 0;
  if (!hs_mode) {
    uint64_t s0 = now_us(), setup_end = s0 + hs_timeout_us;
    int started = 0, in_flight = 0;
    uint64_t next_timer = s0 + 10000;
    while (established < opt_clients && !given_up) {
      uint64_t now = now_us();
      if (now >= setup_end) break;
      while (started < opt_clients && in_flight < opt_hs_concurrency) {
        if (sess_start(&ss[started], (uint32_t)started) < 0) ss[started].fails++;
        started++;
        in_flight++;
      }
      int k = epoll_wait(ep, evs, 512, 10);
      for (int e = 0; e < k; e++) {
        sess_t *s = &ss[evs[e].data.u32];
        if (s->state != S_HANDSHAKE) continue;
        int r = sess_handshake(s);
        if (r == 1) {
          established++;
          in_flight--;
        } else if (r < 0) { /* retried on a fresh socket at the next tick */
          s->fails++;
          st_hs_failed++;
          sess_teardown(s, 0);
        }
      }
      now = now_us();
      if (now >= next_timer) {
        for (int i = 0; i < started; i++) {
          sess_t *s = &ss[i];
          if (s->state == S_HANDSHAKE) {
            DTLSv1_handle_timeout(s->ssl);
          } else if (s->state == S_IDLE) {
            /* Three failures in a row (alert, e.g. wrong key or no common cipher): give up. */
            if (s->fails >= 3) given_up = 1;
            else if (sess_start(s, (uint32_t)i) < 0) s->fails++;
          }
        }
        next_timer = now + 10000;
      }
    }
    setup_s = (double)(now_us() - s0) / 1e6;
    if (established < opt_clients) {
      const char *why = first_error[0] ? first_error : "no answer";
      fprintf(stderr, "only %d of %d sessions established (%s after %.1f s): %s\n", established, opt_clients,
              given_up ? "gave up after 3 failed handshakes in a row" : "timed out", setup_s, why);
      printf("{\"mode\":\"requests\",\"error\":\"handshakes\",\"established\":%d,\"clients\":%d,"
             "\"first_error\":\"%s\"}\n",
             established, opt_clients, why);
      return 1;
    }
  }
  uint64_t setup_hs_failed = st_hs_failed;
  reset_stats();

  /* ---- timed loop (both modes) ---- */
  uint64_t t0 = now_us();
  uint64_t measure_start = t0 + (uint64_t)(opt_warmup * 1e6);
  uint64_t end = measure_start + (uint64_t)(opt_duration * 1e6);
  uint64_t timeout_us = (uint64_t)opt_timeout_ms * 1000u;
  int measuring = opt_warmup <= 0;
  double cpu0 = cpu_seconds();
  if (measuring) measure_start = t0;
  if (measuring && opt_progress) fprintf(stderr, "{\"measuring\":true}\n");
  int started = 0;
  uint64_t ramp_us = (uint64_t)opt_ramp_ms * 1000u;
  uint64_t next_scan = t0 + (hs_mode ? 10000 : 50000), next_progress = t0 + 1000000, last_done = 0;
  uint64_t reconnects = 0;

  for (;;) {
    uint64_t now = now_us();
    if (now >= end) break;
    if (!measuring && now >= measure_start) {
      reset_stats();
      cpu0 = cpu_seconds();
      measuring = 1;
      /* the harness reads the server's CPU time now (CPU per request over the measured period) */
      if (opt_progress) fprintf(stderr, "{\"measuring\":true}\n");
    }
    /* Start sessions (handshakes mode) or their first requests (requests mode), over --ramp-ms. */
    while (started < opt_clients &&
           (ramp_us == 0 || now >= t0 + ramp_us * (uint64_t)started / (uint64_t)opt_clients)) {
      if (hs_mode) {
        if (sess_start(&ss[started], (uint32_t)started) < 0) st_hs_failed++;
      } else {
        for (int w = 0; w < opt_window; w++) send_request(&ss[started], (uint32_t)w);
      }
      started++;
    }
    if (now >= next_scan) {
      for (int i = 0; i < started; i++) {
        sess_t *s = &ss[i];
        if (s->state == S_IDLE) { /* failed earlier: start over */
          if (sess_start(s, (uint32_t)i) < 0) st_hs_failed++;
          else if (!hs_mode) reconnects++;
          continue;
        }
        if (s->state == S_HANDSHAKE) {
          if (now - s->hs_start > hs_timeout_us) {
            st_hs_timeouts++;
            st_hs_failed++;
            sess_teardown(s, 0);
          } else {
            DTLSv1_handle_timeout(s->ssl);
          }
          continue;
        }
        for (int w = 0; w < opt_window; w++) {
          slot_t *sl = &s->slots[w];
          if (sl->busy && now > sl->sent_at && now - sl->sent_at > timeout_us) {
            st_timeouts++;
            sl->busy = 0;
            send_request(s, (uint32_t)w);
          }
        }
      }
      next_scan = now + (hs_mode ? 10000 : 50000);
    }
    if (opt_progress && now >= next_progress) {
      uint64_t done = hs_mode ? st_hs_done : st_completed;
      fprintf(stderr, "{\"t\":%.3f,\"completed\":%llu,\"interval_completed\":%llu}\n", (now - t0) / 1e6,
              (unsigned long long)done, (unsigned long long)(done - last_done));
      last_done = done;
      next_progress += 1000000;
    }
    int wait_ms = started < opt_clients ? 1 : hs_mode ? 10 : 20;
    int k;
    if (opt_idle_us > 0) { /* coalescing: poll, and nap instead of blocking when nothing is ready */
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
      uint32_t idx = evs[e].data.u32;
      sess_t *s = &ss[idx];
      if (!s->ssl) continue;
      if (s->state == S_HANDSHAKE) {
        int r = sess_handshake(s);
        if (r == 0) continue;
        if (r < 0) {
          st_hs_failed++;
          sess_teardown(s, 0);
          continue;
        }
        if (hs_mode) {
          uint64_t t = now_us();
          if (t < end) {
            st_hs_done++;
            record_latency(t - s->hs_start);
          }
          sess_teardown(s, 1);
          if (t < end && sess_start(s, idx) < 0) st_hs_failed++;
        } else { /* re-established after a failure: resume the closed loop */
          for (int w = 0; w < opt_window; w++) send_request(s, (uint32_t)w);
        }
        continue;
      }
      if (s->state != S_ESTABLISHED) continue;
      for (int burst = 0; burst < 64; burst++) {
        int r = SSL_read(s->ssl, buf, sizeof buf);
        if (r > 0) {
          on_coap(s, buf, r, end);
          continue;
        }
        int err = SSL_get_error(s->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
        note_error("read", err);
        st_sess_err++;
        sess_teardown(s, 0); /* restarted by the next scan */
        break;
      }
    }
  }
  uint64_t t_end = now_us();
  double cpu = cpu_seconds() - cpu0;
  double secs = (double)(t_end - measure_start) / 1e6;
  if (hs_mode) {
    printf("{\"mode\":\"handshakes\",\"driver\":\"dtls-loadgen\",\"openssl\":\"%s\",\"cipher\":\"%s\",\"concurrency\":%d,"
           "\"seconds\":%.3f,\"handshakes\":%llu,\"per_s\":%.1f,\"failed\":%llu,\"hs_timeouts\":%llu,"
           "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"mean_us\":%.1f,"
           "\"first_error\":\"%s\",\"cpu_pct\":%.1f}\n",
           OpenSSL_version(OPENSSL_VERSION), opt_cipher, opt_clients, secs, (unsigned long long)st_hs_done, st_hs_done / secs,
           (unsigned long long)st_hs_failed, (unsigned long long)st_hs_timeouts,
           (unsigned long long)percentile(0.50), (unsigned long long)percentile(0.90),
           (unsigned long long)percentile(0.99), (unsigned long long)lat_max,
           lat_n ? (double)lat_sum / (double)lat_n : 0.0, first_error, 100.0 * cpu / secs);
  } else {
    printf("{\"mode\":\"requests\",\"driver\":\"dtls-loadgen\",\"openssl\":\"%s\",\"cipher\":\"%s\",\"type\":\"%s\",\"clients\":%d,"
           "\"window\":%d,\"idle_us\":%d,\"setup_s\":%.3f,\"setup_hs_failed\":%llu,\"seconds\":%.3f,\"sent\":%llu,"
           "\"completed\":%llu,\"rps\":%.1f,\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,"
           "\"mean_us\":%.1f,\"timeouts\":%llu,\"stale\":%llu,\"bad\":%llu,\"non2xx\":%llu,\"rst\":%llu,"
           "\"send_errors\":%llu,\"separate_acks\":%llu,\"session_errors\":%llu,\"reconnects\":%llu,"
           "\"hs_failed\":%llu,\"first_error\":\"%s\",\"cpu_pct\":%.1f}\n",
           OpenSSL_version(OPENSSL_VERSION), opt_cipher, opt_con ? "con" : "non", opt_clients, opt_window, opt_idle_us, setup_s,
           (unsigned long long)setup_hs_failed, secs, (unsigned long long)st_sent,
           (unsigned long long)st_completed, st_completed / secs, (unsigned long long)percentile(0.50),
           (unsigned long long)percentile(0.90), (unsigned long long)percentile(0.99),
           (unsigned long long)lat_max, lat_n ? (double)lat_sum / (double)lat_n : 0.0,
           (unsigned long long)st_timeouts, (unsigned long long)st_stale, (unsigned long long)st_bad,
           (unsigned long long)st_non2xx, (unsigned long long)st_rst, (unsigned long long)st_send_err,
           (unsigned long long)st_sep_acks, (unsigned long long)st_sess_err, (unsigned long long)reconnects,
           (unsigned long long)st_hs_failed, first_error, 100.0 * cpu / secs);
  }
  fflush(stdout);
  for (int i = 0; i < opt_clients; i++) sess_teardown(&ss[i], 1); /* close_notify to the server */
  SSL_CTX_free(ctx);
  return 0;
}
