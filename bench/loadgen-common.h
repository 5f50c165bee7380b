// Shared by the bench's load generators (loadgen.c, dtls-loadgen.c): clock, RNG, CPU time, the
// CoAP GET template and the 1-microsecond latency histogram. Each generator includes it once.
#ifndef COAPKIT_LOADGEN_COMMON_H
#define COAPKIT_LOADGEN_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define HIST_US 1000000u /* 1 us buckets up to 1 s, then overflow */

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* Request template: header (4) + token (4) + Uri-Path options. */
static uint8_t tmpl[512];
static size_t tmpl_len;

/* Appends the Uri-Path options of `path` to the template after header and token. */
static void build_template(const char *path) {
  size_t n = 8; /* header + token, filled per request */
  unsigned last = 0;
  const char *p = path;
  while (*p == '/') p++;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    unsigned delta = 11 - last;
    last = 11;
    if (len < 13) {
      tmpl[n++] = (uint8_t)((delta << 4) | len);
    } else {
      tmpl[n++] = (uint8_t)((delta << 4) | 13);
      tmpl[n++] = (uint8_t)(len - 13);
    }
    if (n + len >= sizeof tmpl) {
      fprintf(stderr, "path too long\n");
      exit(2);
    }
    memcpy(tmpl + n, p, len);
    n += len;
    p += len;
    while (*p == '/') p++;
  }
  tmpl_len = n;
}

/* Latency statistics: a histogram of 1 us buckets (allocated by the generator, cleared with the
 * other counters when the warm-up ends). */
static uint32_t *hist;
static uint64_t hist_over, lat_sum, lat_max, lat_n;

static void record_latency(uint64_t us) {
  if (us < HIST_US)
    hist[us]++;
  else
    hist_over++;
  lat_sum += us;
  lat_n++;
  if (us > lat_max) lat_max = us;
}

static uint64_t percentile(double q) {
  if (lat_n == 0) return 0;
  uint64_t target = (uint64_t)(q * (double)lat_n);
  if (target >= lat_n) target = lat_n - 1;
  uint64_t acc = 0;
  for (uint32_t i = 0; i < HIST_US; i++) {
    acc += hist[i];
    if (acc > target) return i;
  }
  return lat_max;
}

/* One outstanding request of a client: a slot of its window. */
#define TOKEN_LEN 4
typedef struct {
  uint64_t sent_at;
  uint32_t token;
  uint16_t mid;
  uint8_t busy;
} slot_t;

/* Counters both generators report (reset with the histogram when the warm-up ends). */
static uint64_t st_sent, st_completed, st_timeouts, st_stale, st_bad, st_non2xx, st_rst, st_send_err,
    st_sep_acks;

static void reset_common_stats(void) {
  memset(hist, 0, HIST_US * sizeof *hist);
  hist_over = lat_sum = lat_max = lat_n = 0;
  st_sent = st_completed = st_timeouts = st_stale = st_bad = st_non2xx = st_rst = st_send_err =
      st_sep_acks = 0;
}

/* Writes the next GET into buf (at least tmpl_len bytes): a fresh MID and a token of 16 random
 * bits + the slot index; marks the slot busy. Returns the message length. */
static size_t fill_request(uint8_t *buf, slot_t *sl, uint16_t mid, uint32_t slot_index, int con) {
  uint32_t token = (rnd32() & 0xffff0000u) | slot_index;
  memcpy(buf, tmpl, tmpl_len);
  buf[0] = (uint8_t)(0x40 | (con ? 0x00 : 0x10) | TOKEN_LEN); /* ver 1, CON/NON, TKL 4 */
  buf[1] = 0x01;                                             /* GET */
  buf[2] = (uint8_t)(mid >> 8);
  buf[3] = (uint8_t)mid;
  buf[4] = (uint8_t)(token >> 24);
  buf[5] = (uint8_t)(token >> 16);
  buf[6] = (uint8_t)(token >> 8);
  buf[7] = (uint8_t)token;
  sl->mid = mid;
  sl->token = token;
  sl->busy = 1;
  sl->sent_at = now_us();
  return tmpl_len;
}

/* Handles one CoAP message received by a client with `window` slots; `end` ends the measured
 * period. Sets *ack_mid to the Message ID to acknowledge (a separate CON response), else -1.
 * Returns the slot whose request is to be sent again (answered within the run, or reset by an
 * RST), else -1. */
static int on_response(const uint8_t *buf, long r, slot_t *slots, int window, uint64_t end, int *ack_mid) {
  *ack_mid = -1;
  if (r < 4 || (buf[0] >> 6) != 1) {
    st_bad++;
    return -1;
  }
  unsigned type = (buf[0] >> 4) & 3u, tkl = buf[0] & 0x0fu, code = buf[1];
  uint16_t mid = (uint16_t)((buf[2] << 8) | buf[3]);
  if (code == 0) {
    if (type == 3) { /* RST: match by MID, re-issue */
      st_rst++;
      for (int w = 0; w < window; w++) {
        if (slots[w].busy && slots[w].mid == mid) {
          slots[w].busy = 0;
          return w;
        }
      }
    } else if (type == 2) {
      st_sep_acks++; /* empty ACK: a separate response follows */
    } else {
      st_bad++;
    }
    return -1;
  }
  if (type == 0) *ack_mid = mid; /* separate CON response */
  if (tkl != TOKEN_LEN || r < 4 + TOKEN_LEN) {
    st_bad++;
    return -1;
  }
  uint32_t token = ((uint32_t)buf[4] << 24) | ((uint32_t)buf[5] << 16) | ((uint32_t)buf[6] << 8) | buf[7];
  uint32_t si = token & 0xffffu;
  if (si >= (uint32_t)window || !slots[si].busy || slots[si].token != token) {
    st_stale++; /* late answer to a timed-out request, or a duplicate */
    return -1;
  }
  slot_t *sl = &slots[si];
  uint64_t t = now_us();
  sl->busy = 0;
  if (t >= end) return -1;
  record_latency(t - sl->sent_at);
  st_completed++;
  if ((code >> 5) != 2) st_non2xx++;
  return (int)si;
}

#endif
