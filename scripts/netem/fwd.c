/*
 * gkd-netem-fwd: user-space WAN link emulator between two TUN devices.
 *
 * It holds two TUN fds (A and B), usually living in two different network
 * namespaces, and forwards every IP packet read from one to the other,
 * applying per direction:
 *
 *   read -> loss (seeded PRNG) -> link rate + drop-tail queue
 *        -> per-flow cap (per 5-tuple shaper or policer) -> delay line -> write
 *
 * The stages are simulated analytically: for every packet read we compute the
 * time it leaves the link serializer (t1), the time it leaves its flow's
 * shaper (t2) and the time it is delivered (t3 = t2 + delay).  This is exact
 * for this stage order because the link stage is a FIFO, so the per-flow stage
 * sees its arrivals (at t1) in the same order we process them.  Packets then
 * wait in a min-heap keyed by (t3, seq) per direction (a FIFO when no per-flow
 * cap is set, since t3 is then monotonic) and are written when due.  The loop
 * sleeps in ppoll() with a nanosecond timeout (timer slack set to 1 ns),
 * either exactly until the next due time (--tick-us 0) or on a grid of
 * --tick-us microseconds (see main()), so release granularity is well under
 * 1 ms; the lateness is measured and reported in the stats.  --rt PRIO runs
 * the loop under SCHED_FIFO so that busy endpoints cannot delay it.
 *
 * Loss decisions use xoshiro256** seeded from seed=N (one independent stream
 * per direction, reseeded on every reload), so a given seed always drops the
 * same packet ordinals of each direction.
 *
 * Configuration: whitespace separated key=value tokens, read from --conf at
 * start and again on SIGHUP (the file is the full config; missing keys take
 * their defaults).  SIGUSR1 writes the stats file, SIGUSR2 zeroes the counters
 * (and writes the file).  SIGINT/SIGTERM exit.
 *
 *   delay=MS          one-way delay (float ms)                  default 0
 *   loss=PCT          random (Bernoulli) loss in percent         default 0
 *   rate=MBIT         link rate in Mbit/s, 0 = unlimited         default 0
 *   queue=SIZE        link drop-tail queue: Nms, or bytes N, Nk, Nm
 *                                                                default 50ms
 *   flow_rate=MBIT    per-flow (5-tuple) cap, 0 = off            default 0
 *   flow_queue=SIZE   per-flow shaper queue (ms at flow rate / bytes)
 *                                                                default 50ms
 *   flow_mode=shape|police   shaper with queue, or token-bucket policer
 *                                                                default shape
 *   flow_burst=SIZE   policer bucket depth (ms at flow rate / bytes)
 *                                                                default 20ms
 *   seed=N            PRNG seed (loss decisions)                 default 1
 *
 * Every key except seed takes an optional direction suffix: ".ab" (A->B) or
 * ".ba" (B->A); without a suffix it sets both directions.  Sizes count IP
 * bytes (the whole IP packet as read from the TUN device).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SLOT 2048u         /* bytes per packet slot (MTU 1500 + slack) */
#define READ_BATCH 64      /* packets read per fd per loop iteration */
#define FLOW_CAP_DEFAULT 65536u

/* ------------------------------------------------------------------ util */

static uint64_t t_start;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* time relative to start, so that doubles stay exact to well below 1 ns */
static uint64_t now_ns(void) { return mono_ns() - t_start; }

static void logmsg(const char *fmt, ...) {
  va_list ap;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  fprintf(stderr, "[%02d:%02d:%02d.%03ld gkd-netem-fwd] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
          ts.tv_nsec / 1000000);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "gkd-netem-fwd: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

/* ------------------------------------------------------------------- rng */

typedef struct { uint64_t s[4]; } rng_t;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
static inline uint64_t rng_next(rng_t *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* ---------------------------------------------------------------- config */

typedef struct {
  double v;
  int is_ms; /* 1: value is milliseconds (at the relevant rate); 0: bytes */
} size_spec_t;

typedef struct {
  double delay_ms;
  double loss_pct;
  double rate_mbit;
  size_spec_t queue;
  double flow_rate_mbit;
  size_spec_t flow_queue;
  int flow_police;
  size_spec_t flow_burst;
} dirconf_t;

typedef struct {
  dirconf_t d[2];
  uint64_t seed;
} conf_t;

static void conf_default(conf_t *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < 2; i++) {
    c->d[i].queue = (size_spec_t){50, 1};
    c->d[i].flow_queue = (size_spec_t){50, 1};
    c->d[i].flow_burst = (size_spec_t){20, 1};
  }
  c->seed = 1;
}

static int parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v < 0) return -1;
  *out = v;
  return 0;
}

static int parse_size(const char *s, size_spec_t *out) {
  char num[64];
  size_t n = strlen(s), k = 0;
  while (k < n && (s[k] == '.' || (s[k] >= '0' && s[k] <= '9'))) k++;
  if (k == 0 || k >= sizeof num) return -1;
  memcpy(num, s, k);
  num[k] = 0;
  double v;
  if (parse_num(num, &v)) return -1;
  const char *u = s + k;
  if (!strcasecmp(u, "ms")) *out = (size_spec_t){v, 1};
  else if (!*u || !strcasecmp(u, "b")) *out = (size_spec_t){v, 0};
  else if (!strcasecmp(u, "k") || !strcasecmp(u, "kb")) *out = (size_spec_t){v * 1e3, 0};
  else if (!strcasecmp(u, "m") || !strcasecmp(u, "mb")) *out = (size_spec_t){v * 1e6, 0};
  else return -1;
  return 0;
}

/* returns 0 on success, -1 with message in err */
static int conf_apply_token(conf_t *c, const char *tok, char *err, size_t errlen) {
  const char *eq = strchr(tok, '=');
  if (!eq) {
    snprintf(err, errlen, "token '%s' is not key=value", tok);
    return -1;
  }
  char key[64];
  size_t kl = (size_t)(eq - tok);
  if (kl == 0 || kl >= sizeof key) {
    snprintf(err, errlen, "bad key in '%s'", tok);
    return -1;
  }
  memcpy(key, tok, kl);
  key[kl] = 0;
  const char *val = eq + 1;
  int dmask = 3;
  char *dot = strchr(key, '.');
  if (dot) {
    *dot = 0;
    if (!strcmp(dot + 1, "ab")) dmask = 1;
    else if (!strcmp(dot + 1, "ba")) dmask = 2;
    else {
      snprintf(err, errlen, "bad direction suffix in '%s' (use .ab or .ba)", tok);
      return -1;
    }
  }
  if (!strcmp(key, "seed")) {
    char *end;
    errno = 0;
    unsigned long long s = strtoull(val, &end, 0);
    if (errno || end == val || *end || dot) {
      snprintf(err, errlen, "bad seed '%s'", tok);
      return -1;
    }
    c->seed = s;
    return 0;
  }
  for (int i = 0; i < 2; i++) {
    if (!(dmask & (1 << i))) continue;
    dirconf_t *d = &c->d[i];
    double v;
    int bad = 0;
    if (!strcmp(key, "delay")) {
      bad = parse_num(val, &v) || v > 60000;
      if (!bad) d->delay_ms = v;
    } else if (!strcmp(key, "loss")) {
      bad = parse_num(val, &v) || v > 100;
      if (!bad) d->loss_pct = v;
    } else if (!strcmp(key, "rate")) {
      bad = parse_num(val, &v) || v > 1e6;
      if (!bad) d->rate_mbit = v;
    } else if (!strcmp(key, "queue")) {
      bad = parse_size(val, &d->queue);
    } else if (!strcmp(key, "flow_rate")) {
      bad = parse_num(val, &v) || v > 1e6;
      if (!bad) d->flow_rate_mbit = v;
    } else if (!strcmp(key, "flow_queue")) {
      bad = parse_size(val, &d->flow_queue);
    } else if (!strcmp(key, "flow_burst")) {
      bad = parse_size(val, &d->flow_burst);
    } else if (!strcmp(key, "flow_mode")) {
      if (!strcmp(val, "shape")) d->flow_police = 0;
      else if (!strcmp(val, "police")) d->flow_police = 1;
      else bad = 1;
    } else {
      snprintf(err, errlen, "unknown key '%s'", key);
      return -1;
    }
    if (bad) {
      snprintf(err, errlen, "bad value in '%s'", tok);
      return -1;
    }
  }
  return 0;
}

static int conf_load(const char *path, conf_t *out, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  conf_t c;
  conf_default(&c);
  char line[4096];
  int rc = 0;
  while (fgets(line, sizeof line, f)) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
      if (conf_apply_token(&c, tok, err, errlen)) {
        rc = -1;
        goto out;
      }
    }
  }
out:
  fclose(f);
  if (!rc) *out = c;
  return rc;
}

static double spec_bytes(size_spec_t s, double rate_mbit) {
  if (!s.is_ms) return s.v;
  return s.v / 1000.0 * rate_mbit * 1e6 / 8.0;
}

static void conf_describe(const conf_t *c, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "seed=%llu", (unsigned long long)c->seed);
  static const char *nm[2] = {"ab", "ba"};
  for (int i = 0; i < 2 && o < len; i++) {
    const dirconf_t *d = &c->d[i];
    o += (size_t)snprintf(buf + o, len - o,
                          " | %s: delay=%gms loss=%g%% rate=%gMbit queue=%g%s flow_rate=%gMbit "
                          "flow_mode=%s flow_queue=%g%s flow_burst=%g%s",
                          nm[i], d->delay_ms, d->loss_pct, d->rate_mbit, d->queue.v,
                          d->queue.is_ms ? "ms" : "B", d->flow_rate_mbit,
                          d->flow_police ? "police" : "shape", d->flow_queue.v,
                          d->flow_queue.is_ms ? "ms" : "B", d->flow_burst.v,
                          d->flow_burst.is_ms ? "ms" : "B");
  }
}

/* ------------------------------------------------------------------ flows */

typedef struct {
  uint8_t used, proto, ver, _pad;
  uint16_t sport, dport;
  uint8_t src[16], dst[16];
  double free_t;  /* shaper: time the flow's queue drains */
  double tokens;  /* policer bucket */
  double last_t;  /* policer last refill / last activity */
} flow_t;

typedef struct {
  uint8_t proto, ver;
  uint16_t sport, dport;
  uint8_t src[16], dst[16];
} fkey_t;

static int parse_key(const uint8_t *p, size_t n, fkey_t *k) {
  memset(k, 0, sizeof *k);
  if (n < 1) return -1;
  int ver = p[0] >> 4;
  size_t l4;
  if (ver == 4) {
    if (n < 20) return -1;
    size_t ihl = (size_t)(p[0] & 15) * 4;
    k->ver = 4;
    k->proto = p[9];
    memcpy(k->src, p + 12, 4);
    memcpy(k->dst, p + 16, 4);
    uint16_t frag = (uint16_t)((p[6] << 8) | p[7]);
    if ((frag & 0x1fff) != 0) return 0; /* non-first fragment: no ports */
    l4 = ihl;
  } else if (ver == 6) {
    if (n < 40) return -1;
    k->ver = 6;
    k->proto = p[6];
    memcpy(k->src, p + 8, 16);
    memcpy(k->dst, p + 24, 16);
    l4 = 40;
  } else {
    return -1;
  }
  if ((k->proto == 6 || k->proto == 17 || k->proto == 132) && n >= l4 + 4) {
    k->sport = (uint16_t)((p[l4] << 8) | p[l4 + 1]);
    k->dport = (uint16_t)((p[l4 + 2] << 8) | p[l4 + 3]);
  }
  return 0;
}

static uint64_t key_hash(const fkey_t *k) {
  uint64_t h = 1469598103934665603ull;
  const uint8_t *b = (const uint8_t *)k;
  for (size_t i = 0; i < sizeof *k; i++) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

static int key_eq(const flow_t *f, const fkey_t *k) {
  return f->proto == k->proto && f->ver == k->ver && f->sport == k->sport && f->dport == k->dport &&
         !memcmp(f->src, k->src, 16) && !memcmp(f->dst, k->dst, 16);
}

/* ------------------------------------------------------------ directions */

typedef struct {
  uint64_t t;   /* delivery time (ns since start) */
  uint64_t seq;
  uint32_t slot;
  uint32_t len;
} hent_t;

typedef struct {
  const char *name;
  int in_fd, out_fd;
  /* derived config */
  uint64_t delay_ns;
  uint64_t loss_thresh; /* drop if rng < thresh */
  int loss_all;
  double nspb;          /* link: ns per byte, 0 = unlimited */
  double qlimit;        /* link queue limit, bytes */
  double fnspb;         /* per-flow: ns per byte, 0 = off */
  double fqlimit;       /* per-flow shaper queue, bytes */
  double fburst;        /* per-flow policer bucket, bytes */
  int fpolice;
  /* state */
  rng_t rng;
  double link_free;     /* time the link finishes its backlog */
  uint8_t *pool;
  uint32_t *freelist;
  uint32_t nfree, npool;
  hent_t *heap;
  uint32_t hn;
  uint64_t seq;
  flow_t *ft;
  uint32_t fcap, fcount;
  /* stats */
  uint64_t rx_pkts, rx_bytes, tx_pkts, tx_bytes;
  uint64_t drop_loss, drop_queue, drop_flow, drop_pool, drop_bad, tx_err;
  uint64_t late_sum_ns, late_max_ns, late_over_1ms;
  uint32_t heap_peak;
  uint64_t flows_seen;
} dir_t;

static dir_t dirs[2];
static conf_t cur;
static uint64_t conf_gen;

static void dir_apply_conf(dir_t *d, const dirconf_t *c, uint64_t seed, int idx) {
  d->delay_ns = (uint64_t)llround(c->delay_ms * 1e6);
  double p = c->loss_pct / 100.0;
  d->loss_all = p >= 1.0;
  d->loss_thresh = p <= 0 ? 0 : (p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0));
  d->nspb = c->rate_mbit > 0 ? 8e9 / (c->rate_mbit * 1e6) : 0;
  d->qlimit = c->rate_mbit > 0 ? spec_bytes(c->queue, c->rate_mbit) : 0;
  if (d->nspb > 0 && d->qlimit < 1600) d->qlimit = 1600; /* always fit one packet */
  d->fnspb = c->flow_rate_mbit > 0 ? 8e9 / (c->flow_rate_mbit * 1e6) : 0;
  d->fqlimit = c->flow_rate_mbit > 0 ? spec_bytes(c->flow_queue, c->flow_rate_mbit) : 0;
  if (d->fnspb > 0 && d->fqlimit < 1600) d->fqlimit = 1600;
  d->fburst = c->flow_rate_mbit > 0 ? spec_bytes(c->flow_burst, c->flow_rate_mbit) : 0;
  if (d->fnspb > 0 && d->fburst < 1600) d->fburst = 1600;
  d->fpolice = c->flow_police;
  /* independent, reproducible stream per direction */
  rng_seed(&d->rng, seed * 2 + (uint64_t)idx + 0x6b64ull);
}

static void dir_init(dir_t *d, const char *name, int in_fd, int out_fd, uint32_t npool) {
  memset(d, 0, sizeof *d);
  d->name = name;
  d->in_fd = in_fd;
  d->out_fd = out_fd;
  d->npool = npool;
  d->pool = malloc((size_t)npool * SLOT);
  d->freelist = malloc(sizeof(uint32_t) * npool);
  d->heap = malloc(sizeof(hent_t) * npool);
  d->fcap = FLOW_CAP_DEFAULT;
  d->ft = calloc(d->fcap, sizeof(flow_t));
  if (!d->pool || !d->freelist || !d->heap || !d->ft) die("out of memory");
  /* LIFO free list: hot slots get reused, RSS stays small */
  for (uint32_t i = 0; i < npool; i++) d->freelist[i] = npool - 1 - i;
  d->nfree = npool;
}

static inline int hless(const hent_t *a, const hent_t *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(dir_t *d, hent_t e) {
  uint32_t i = d->hn++;
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!hless(&e, &d->heap[p])) break;
    d->heap[i] = d->heap[p];
    i = p;
  }
  d->heap[i] = e;
  if (d->hn > d->heap_peak) d->heap_peak = d->hn;
}

static void heap_pop(dir_t *d) {
  hent_t last = d->heap[--d->hn];
  uint32_t i = 0, n = d->hn;
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    const hent_t *best = &last;
    if (l < n && hless(&d->heap[l], best)) { m = l; best = &d->heap[l]; }
    if (r < n && hless(&d->heap[r], best)) { m = r; }
    if (m == i) break;
    d->heap[i] = d->heap[m];
    i = m;
  }
  if (n) d->heap[i] = last;
}

static void flow_rebuild(dir_t *d, double now) {
  flow_t *old = d->ft;
  uint32_t cap = d->fcap, kept = 0;
  d->ft = calloc(cap, sizeof(flow_t));
  if (!d->ft) die("out of memory");
  for (uint32_t i = 0; i < cap; i++) {
    flow_t *f = &old[i];
    if (!f->used) continue;
    /* forget flows idle for 30 s whose shaper queue has drained */
    if (f->last_t < now - 30e9 && f->free_t < now) continue;
    fkey_t k = {f->proto, f->ver, f->sport, f->dport, {0}, {0}};
    memcpy(k.src, f->src, 16);
    memcpy(k.dst, f->dst, 16);
    uint32_t j = (uint32_t)key_hash(&k) & (cap - 1);
    while (d->ft[j].used) j = (j + 1) & (cap - 1);
    d->ft[j] = *f;
    kept++;
  }
  free(old);
  d->fcount = kept;
  if (kept > cap / 2) { /* still crowded: start over (extremely unlikely in a benchmark) */
    memset(d->ft, 0, sizeof(flow_t) * cap);
    d->fcount = 0;
    logmsg("%s: flow table full, cleared", d->name);
  }
}

static flow_t *flow_get(dir_t *d, const fkey_t *k, double now) {
  if (d->fcount >= d->fcap * 3 / 4) flow_rebuild(d, now);
  uint32_t j = (uint32_t)key_hash(k) & (d->fcap - 1);
  for (;;) {
    flow_t *f = &d->ft[j];
    if (!f->used) {
      f->used = 1;
      f->proto = k->proto;
      f->ver = k->ver;
      f->sport = k->sport;
      f->dport = k->dport;
      memcpy(f->src, k->src, 16);
      memcpy(f->dst, k->dst, 16);
      f->free_t = 0;
      f->tokens = d->fburst;
      f->last_t = now;
      d->fcount++;
      d->flows_seen++;
      return f;
    }
    if (key_eq(f, k)) return f;
    j = (j + 1) & (d->fcap - 1);
  }
}

/* Decide the fate of one packet that was just read into slot `slot`.
 * Returns 1 if it was queued (slot consumed), 0 if dropped. */
static int process(dir_t *d, uint32_t slot, uint32_t len, uint64_t now) {
  uint8_t *p = d->pool + (size_t)slot * SLOT;
  d->rx_pkts++;
  d->rx_bytes += len;

  /* 1. random loss */
  if (d->loss_thresh && (d->loss_all || rng_next(&d->rng) < d->loss_thresh)) {
    d->drop_loss++;
    return 0;
  }

  /* 2. link rate with drop-tail queue (store and forward) */
  double t = (double)now;
  if (d->nspb > 0) {
    double start = d->link_free > t ? d->link_free : t;
    double backlog = (start - t) / d->nspb; /* bytes not yet serialized */
    if (backlog + len > d->qlimit) {
      d->drop_queue++;
      return 0;
    }
    t = start + len * d->nspb;
    d->link_free = t;
  }

  /* 3. per-flow cap, evaluated at the time the packet leaves the link */
  if (d->fnspb > 0) {
    fkey_t k;
    if (parse_key(p, len, &k) == 0) {
      flow_t *f = flow_get(d, &k, t);
      if (d->fpolice) {
        double tok = f->tokens + (t - f->last_t) / d->fnspb;
        if (tok > d->fburst) tok = d->fburst;
        f->last_t = t;
        if (tok < len) {
          f->tokens = tok;
          d->drop_flow++;
          return 0;
        }
        f->tokens = tok - len;
      } else {
        double start = f->free_t > t ? f->free_t : t;
        double backlog = (start - t) / d->fnspb;
        f->last_t = t;
        if (backlog + len > d->fqlimit) {
          d->drop_flow++;
          return 0;
        }
        t = start + len * d->fnspb;
        f->free_t = t;
      }
    }
  }

  /* 4. delay line */
  hent_t e = {(uint64_t)llround(t) + d->delay_ns, d->seq++, slot, len};
  heap_push(d, e);
  return 1;
}

static void read_batch(dir_t *d, int max) {
  static uint8_t scratch[65536];
  for (int i = 0; i < max; i++) {
    uint32_t slot = UINT32_MAX;
    uint8_t *buf;
    size_t cap;
    if (d->nfree) {
      slot = d->freelist[d->nfree - 1];
      buf = d->pool + (size_t)slot * SLOT;
      cap = SLOT;
    } else {
      buf = scratch;
      cap = sizeof scratch;
    }
    ssize_t n = read(d->in_fd, buf, cap);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      logmsg("%s: read: %s", d->name, strerror(errno));
      return;
    }
    if (n == 0) return;
    if (slot == UINT32_MAX) {
      d->rx_pkts++;
      d->rx_bytes += (uint64_t)n;
      d->drop_pool++;
      continue;
    }
    if ((size_t)n >= SLOT) { /* larger than our MTU assumptions: drop */
      d->rx_pkts++;
      d->rx_bytes += (uint64_t)n;
      d->drop_bad++;
      continue;
    }
    if (process(d, slot, (uint32_t)n, now_ns())) d->nfree--;
  }
}

/* write every packet due at or before `horizon` (now, or now + tick/2 in tick mode) */
static void release(dir_t *d, uint64_t now, uint64_t horizon) {
  while (d->hn && d->heap[0].t <= horizon) {
    hent_t e = d->heap[0];
    heap_pop(d);
    uint64_t late = now > e.t ? now - e.t : 0;
    d->late_sum_ns += late;
    if (late > d->late_max_ns) d->late_max_ns = late;
    if (late > 1000000) d->late_over_1ms++;
    ssize_t w = write(d->out_fd, d->pool + (size_t)e.slot * SLOT, e.len);
    if (w == (ssize_t)e.len) {
      d->tx_pkts++;
      d->tx_bytes += e.len;
    } else {
      d->tx_err++;
    }
    d->freelist[d->nfree++] = e.slot;
  }
}

/* ----------------------------------------------------------------- stats */

static void stats_reset(dir_t *d) {
  d->rx_pkts = d->rx_bytes = d->tx_pkts = d->tx_bytes = 0;
  d->drop_loss = d->drop_queue = d->drop_flow = d->drop_pool = d->drop_bad = d->tx_err = 0;
  d->late_sum_ns = d->late_max_ns = d->late_over_1ms = 0;
  d->heap_peak = d->hn;
  d->flows_seen = 0;
}

static const char *stats_path;
static uint64_t stats_seq;

static void write_stats(void) {
  if (!stats_path) return;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    logmsg("cannot write %s: %s", tmp, strerror(errno));
    return;
  }
  stats_seq++;
  fprintf(f, "stats_seq=%llu\nconf_gen=%llu\nuptime_ms=%llu\n", (unsigned long long)stats_seq,
          (unsigned long long)conf_gen, (unsigned long long)(now_ns() / 1000000));
  for (int i = 0; i < 2; i++) {
    dir_t *d = &dirs[i];
#define S(fld) fprintf(f, "%s_" #fld "=%llu\n", d->name, (unsigned long long)d->fld)
    S(rx_pkts); S(rx_bytes); S(tx_pkts); S(tx_bytes);
    S(drop_loss); S(drop_queue); S(drop_flow); S(drop_pool); S(drop_bad); S(tx_err);
    S(late_max_ns); S(late_over_1ms); S(flows_seen);
#undef S
    fprintf(f, "%s_late_avg_ns=%llu\n", d->name,
            (unsigned long long)(d->tx_pkts ? d->late_sum_ns / d->tx_pkts : 0));
    fprintf(f, "%s_heap_peak=%u\n%s_in_flight=%u\n", d->name, d->heap_peak, d->name, d->hn);
  }
  fclose(f);
  if (rename(tmp, stats_path)) logmsg("rename %s: %s", stats_path, strerror(errno));
}

/* ------------------------------------------------------------------- tun */

static int tun_open(const char *nspath, const char *dev) {
  int self = -1, ns = -1;
  if (nspath) {
    self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ns = open(nspath, O_RDONLY | O_CLOEXEC);
    if (self < 0 || ns < 0) die("cannot open netns %s: %s", nspath, strerror(errno));
    if (setns(ns, CLONE_NEWNET)) die("setns %s: %s", nspath, strerror(errno));
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (strlen(dev) >= IFNAMSIZ) die("device name too long: %s", dev);
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr)) die("TUNSETIFF %s: %s", dev, strerror(errno));
  if (nspath) {
    if (setns(self, CLONE_NEWNET)) die("setns back: %s", strerror(errno));
    close(self);
    close(ns);
  }
  return fd;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
  fprintf(stderr,
          "usage: gkd-netem-fwd --dev-a NAME --dev-b NAME --conf FILE [--ns-a PATH] [--ns-b PATH]\n"
          "       gkd-netem-fwd --check FILE   (validate a config file)\n"
          "                     [--stats FILE] [--pool PKTS] [--lifetime SEC] [--rt PRIO] [--tick-us T]\n"
          "  Creates TUN devices NAME (in netns PATH, e.g. /run/netns/gkd-a) and forwards\n"
          "  between them with the emulation configured in FILE (see the source header).\n"
          "  SIGHUP reloads FILE, SIGUSR1 writes --stats, SIGUSR2 zeroes counters, SIGINT/SIGTERM exit.\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *ns_a = NULL, *ns_b = NULL, *dev_a = NULL, *dev_b = NULL, *conf_path = NULL;
  const char *check_path = NULL;
  uint32_t npool = 65536;
  double lifetime = 0;
  int rtprio = 0;
  double tick_us = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
    if (!v) usage();
    if (!strcmp(a, "--ns-a")) ns_a = v;
    else if (!strcmp(a, "--ns-b")) ns_b = v;
    else if (!strcmp(a, "--dev-a")) dev_a = v;
    else if (!strcmp(a, "--dev-b")) dev_b = v;
    else if (!strcmp(a, "--conf")) conf_path = v;
    else if (!strcmp(a, "--check")) check_path = v;
    else if (!strcmp(a, "--stats")) stats_path = v;
    else if (!strcmp(a, "--pool")) npool = (uint32_t)strtoul(v, NULL, 0);
    else if (!strcmp(a, "--lifetime")) lifetime = strtod(v, NULL);
    else if (!strcmp(a, "--rt")) rtprio = atoi(v);
    else if (!strcmp(a, "--tick-us")) tick_us = strtod(v, NULL);
    else usage();
    i++;
  }
  if (check_path) { /* validate a config file and describe it */
    char cerr[512], cdesc[2048];
    conf_t c;
    if (conf_load(check_path, &c, cerr, sizeof cerr)) die("config: %s", cerr);
    conf_describe(&c, cdesc, sizeof cdesc);
    printf("%s\n", cdesc);
    return 0;
  }
  if (!dev_a || !dev_b || !conf_path) usage();
  if (npool < 64 || npool > (1u << 22)) die("--pool must be in [64, 4194304]");

  t_start = mono_ns() - 1000000000ull; /* keep times strictly positive */
  char err[512], desc[2048];
  if (conf_load(conf_path, &cur, err, sizeof err)) die("config: %s", err);

  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  if (rtprio > 0) {
    /* Under CPU contention (the endpoints share the machine) a normal-priority
     * forwarder wakes up late and adds ms of jitter; SCHED_FIFO removes that.
     * The kernel's RT throttling still leaves CPU time to everything else. */
    struct sched_param sp = {.sched_priority = rtprio};
    if (sched_setscheduler(0, SCHED_FIFO, &sp)) logmsg("warning: SCHED_FIFO %d: %s", rtprio, strerror(errno));
  }

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGUSR2);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd: %s", strerror(errno));
  signal(SIGPIPE, SIG_IGN);

  int fa = tun_open(ns_a, dev_a);
  int fb = tun_open(ns_b, dev_b);
  dir_init(&dirs[0], "ab", fa, fb, npool);
  dir_init(&dirs[1], "ba", fb, fa, npool);
  for (int i = 0; i < 2; i++) dir_apply_conf(&dirs[i], &cur.d[i], cur.seed, i);
  conf_gen = 1;
  conf_describe(&cur, desc, sizeof desc);
  logmsg("ready pid=%d pool=%u pkts/dir dev-a=%s dev-b=%s rt=%d tick=%gus; config #%llu: %s",
         (int)getpid(), npool, dev_a, dev_b, rtprio, tick_us, (unsigned long long)conf_gen, desc);
  write_stats();

  uint64_t deadline = lifetime > 0 ? now_ns() + (uint64_t)(lifetime * 1e9) : 0;
  struct pollfd pfd[3] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}, {sfd, POLLIN, 0}};
  int running = 1;
  /* Tick mode (--tick-us T > 0): packets are released on a grid of T ns
   * (each at the grid point nearest its due time).  When a release is due at
   * the next grid point, the loop sleeps until then without waking for
   * arriving packets and reads everything the TUN devices hold at that point.
   * Under load this bounds wake-ups to about 1/T per second, which matters in
   * a VM where each timer wake-up costs tens of microseconds, at the price of
   * up to T/2 of release jitter and up to T of extra read-side latency.  At
   * low packet rates arrivals are read at once, and an idle link blocks on
   * the TUN fds.  T = 0: exact mode, one wake-up per due time / arrival. */
  uint64_t tick = (uint64_t)(tick_us * 1000);
  uint64_t half = tick / 2;
  while (running) {
    uint64_t now = now_ns();
    release(&dirs[0], now, now + half);
    release(&dirs[1], now, now + half);
    if (deadline && now >= deadline) {
      logmsg("lifetime of %gs reached, exiting", lifetime);
      break;
    }
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < 2; i++)
      if (dirs[i].hn && dirs[i].heap[0].t < next) next = dirs[i].heap[0].t;
    struct pollfd *pp = pfd;
    nfds_t np = 3;
    if (tick && next != UINT64_MAX) {
      uint64_t e = next > half ? next - half : 0;
      next = (e + tick - 1) / tick * tick;      /* first grid point that releases it */
      if (next <= (now / tick + 1) * tick) {
        /* a release is due at the very next grid point: sleep until then
         * without waking up for arrivals, and read them all at that point */
        pp = &pfd[2];
        np = 1;
        pfd[0].revents = pfd[1].revents = 0;
      }
    }
    if (deadline && deadline < next) next = deadline;
    struct timespec ts, *tsp = NULL;
    if (next != UINT64_MAX) {
      uint64_t n2 = now_ns();
      uint64_t wait = next > n2 ? next - n2 : 0;
      ts.tv_sec = (time_t)(wait / 1000000000ull);
      ts.tv_nsec = (long)(wait % 1000000000ull);
      tsp = &ts;
    }
    int r = ppoll(pp, np, tsp, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("ppoll: %s", strerror(errno));
    }
    if (np == 1) {
      read_batch(&dirs[0], 4096);
      read_batch(&dirs[1], 4096);
    }
    if (r == 0) continue;
    if (pfd[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
          conf_t nc;
          if (conf_load(conf_path, &nc, err, sizeof err)) {
            logmsg("reload failed, keeping config #%llu: %s", (unsigned long long)conf_gen, err);
          } else {
            cur = nc;
            for (int i = 0; i < 2; i++) dir_apply_conf(&dirs[i], &cur.d[i], cur.seed, i);
            conf_gen++;
            conf_describe(&cur, desc, sizeof desc);
            logmsg("reloaded config #%llu: %s", (unsigned long long)conf_gen, desc);
          }
          write_stats();
        } else if (si.ssi_signo == SIGUSR1) {
          write_stats();
        } else if (si.ssi_signo == SIGUSR2) {
          for (int i = 0; i < 2; i++) stats_reset(&dirs[i]);
          write_stats();
        } else {
          logmsg("signal %d, exiting", (int)si.ssi_signo);
          running = 0;
        }
      }
    }
    if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) die("tun A error (revents %x)", pfd[0].revents);
    if (pfd[1].revents & (POLLERR | POLLHUP | POLLNVAL)) die("tun B error (revents %x)", pfd[1].revents);
    if (pfd[0].revents & POLLIN) read_batch(&dirs[0], READ_BATCH);
    if (pfd[1].revents & POLLIN) read_batch(&dirs[1], READ_BATCH);
  }
  write_stats();
  for (int i = 0; i < 2; i++) {
    dir_t *d = &dirs[i];
    logmsg("%s: rx=%llu tx=%llu drop loss=%llu queue=%llu flow=%llu pool=%llu in_flight=%u", d->name,
           (unsigned long long)d->rx_pkts, (unsigned long long)d->tx_pkts,
           (unsigned long long)d->drop_loss, (unsigned long long)d->drop_queue,
           (unsigned long long)d->drop_flow, (unsigned long long)d->drop_pool, d->hn);
  }
  return 0;
}
