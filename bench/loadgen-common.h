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

#endif
