/*
 * echo_load: load generator and checker for echo servers.
 *
 * C connections (-c), each keeping D messages (-d) of L bytes (-l) in flight: a message
 * is sent, and when one comes back in full the next one is sent, for S seconds (-s) after
 * W seconds of warm-up (-w). Connections are spread over T threads (-t), each with its
 * own epoll set; sockets are non-blocking, reads are batched, and all the messages a read
 * completes are answered with one write.
 *
 * Every echoed byte is checked: message `seq` on connection `id` carries a pattern derived
 * from (id, seq, offset), so a lost, duplicated, reordered or corrupted byte is caught.
 * Latency is measured per message (time from queueing it to receiving its last byte) in
 * a log-linear histogram (1.6% resolution).
 *
 * After the measured window no new messages are sent and the messages in flight get
 * 2 seconds to come back; those that do not are counted as lost. Errors counted: connect
 * failures, resets, short echoes (connection closed with messages in flight), mismatches
 * and lost messages. The exit status is 1 if any error was counted.
 *
 * The last line of output is machine-readable: "RESULT key=value ...".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SUB_BITS     6
#define HIST_BUCKETS (64 << SUB_BITS)
#define READ_BUF     65536
#define MAX_EVENTS   256
#define DRAIN_NS     2000000000ull

struct conn {
    int fd;
    uint32_t id;
    int open;
    int want_out;      /* EPOLLOUT armed because a write was partial */
    uint64_t send_seq; /* next message to queue */
    uint64_t recv_seq; /* message whose bytes arrive next */
    uint32_t recv_off; /* bytes of recv_seq received so far */
    uint64_t *sent_ns; /* queue time of message seq at [seq % depth] */
    unsigned char *out;
    size_t out_off, out_len;
};

struct stats {
    uint64_t msgs;
    uint64_t connect_errors, resets, shorts, mismatches, lost;
    uint64_t hist[HIST_BUCKETS];
};

struct worker {
    pthread_t tid;
    int ep;
    struct conn **conns;
    int nconns;
    struct stats st;
};

static struct {
    struct sockaddr_in addr;
    int conns, depth, size, threads;
    double seconds, warmup;
    uint64_t t_start, t_end; /* measured window, CLOCK_MONOTONIC ns */
} cfg;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline unsigned char pattern(uint32_t id, uint64_t seq, uint32_t off)
{
    uint32_t x = id * 0x9E3779B1u ^ (uint32_t)seq * 0x85EBCA77u ^ (uint32_t)(seq >> 32);

    x += off * 0xC2B2AE3Du;
    x ^= x >> 15;
    x *= 0x2C1B3C6Du;
    return (unsigned char)(x ^ (x >> 12) ^ (x >> 24));
}

static int hist_index(uint64_t v)
{
    int msb, shift;

    if (v < (1u << SUB_BITS))
        return (int)v;
    msb = 63 - __builtin_clzll(v);
    shift = msb - SUB_BITS;
    return ((shift + 1) << SUB_BITS) + (int)((v >> shift) & ((1u << SUB_BITS) - 1));
}

/* Middle of bucket i, in ns. */
static double hist_value(int i)
{
    int shift;
    uint64_t lo;

    if (i < (1 << SUB_BITS))
        return i;
    shift = (i >> SUB_BITS) - 1;
    lo = ((uint64_t)(1u << SUB_BITS) + (uint64_t)(i & ((1 << SUB_BITS) - 1))) << shift;
    return (double)lo + (double)(1ull << shift) / 2.0;
}

static double percentile_us(const struct stats *st, double p)
{
    uint64_t rank, seen = 0;

    if (st->msgs == 0)
        return 0.0;
    rank = (uint64_t)(p / 100.0 * (double)st->msgs);
    if (rank >= st->msgs)
        rank = st->msgs - 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += st->hist[i];
        if (seen > rank)
            return hist_value(i) / 1000.0;
    }
    return 0.0;
}

static void close_conn(struct worker *w, struct conn *c)
{
    if (!c->open)
        return;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->open = 0;
}

static void queue_message(struct conn *c, uint64_t now)
{
    size_t size = (size_t)cfg.size;
    unsigned char *p;

    if (c->out_off > 0 && c->out_len + size > (size_t)cfg.depth * size) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    p = c->out + c->out_len;
    for (uint32_t i = 0; i < (uint32_t)size; i++)
        p[i] = pattern(c->id, c->send_seq, i);
    c->out_len += size;
    c->sent_ns[c->send_seq % (uint64_t)cfg.depth] = now;
    c->send_seq++;
}

static void set_want_out(struct worker *w, struct conn *c, int want)
{
    struct epoll_event ev;

    if (c->want_out == want)
        return;
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void flush_conn(struct worker *w, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            set_want_out(w, c, 1);
            return;
        }
        w->st.resets++;
        close_conn(w, c);
        return;
    }
    c->out_off = c->out_len = 0;
    set_want_out(w, c, 0);
}

/* Checks and consumes n received bytes; returns -1 if the connection had to be closed. */
static int consume(struct worker *w, struct conn *c, const unsigned char *p, size_t n, uint64_t now,
                   int sending)
{
    while (n > 0) {
        uint32_t take = (uint32_t)cfg.size - c->recv_off;

        if (c->recv_seq == c->send_seq) {
            /* More bytes than were sent. */
            w->st.mismatches++;
            close_conn(w, c);
            return -1;
        }
        if (take > n)
            take = (uint32_t)n;
        for (uint32_t i = 0; i < take; i++) {
            if (p[i] != pattern(c->id, c->recv_seq, c->recv_off + i)) {
                w->st.mismatches++;
                close_conn(w, c);
                return -1;
            }
        }
        p += take;
        n -= take;
        c->recv_off += take;
        if (c->recv_off < (uint32_t)cfg.size)
            break;
        if (now >= cfg.t_start && now < cfg.t_end) {
            w->st.msgs++;
            w->st.hist[hist_index(now - c->sent_ns[c->recv_seq % (uint64_t)cfg.depth])]++;
        }
        c->recv_seq++;
        c->recv_off = 0;
        if (sending)
            queue_message(c, now);
    }
    return 0;
}

static void on_readable(struct worker *w, struct conn *c, unsigned char *buf, uint64_t now,
                        int sending)
{
    for (;;) {
        ssize_t n = read(c->fd, buf, READ_BUF);

        if (n > 0) {
            if (consume(w, c, buf, (size_t)n, now, sending) < 0)
                return;
            if (n < READ_BUF)
                break;
            continue;
        }
        if (n == 0) {
            if (c->recv_seq != c->send_seq || c->recv_off != 0)
                w->st.shorts++;
            close_conn(w, c);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            break;
        w->st.resets++;
        close_conn(w, c);
        return;
    }
    flush_conn(w, c);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    unsigned char *buf = malloc(READ_BUF);
    uint64_t now = now_ns();

    if (buf == NULL) {
        perror("malloc");
        exit(1);
    }
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = w->conns[i];

        for (int d = 0; d < cfg.depth; d++)
            queue_message(c, now);
        flush_conn(w, c);
    }
    for (;;) {
        int open = 0, n;
        int sending;

        now = now_ns();
        sending = now < cfg.t_end;
        for (int i = 0; i < w->nconns; i++) {
            struct conn *c = w->conns[i];

            if (!c->open)
                continue;
            if (!sending && c->recv_seq == c->send_seq) {
                close_conn(w, c);
                continue;
            }
            if (!sending && now >= cfg.t_end + DRAIN_NS) {
                w->st.lost += c->send_seq - c->recv_seq;
                close_conn(w, c);
                continue;
            }
            open++;
        }
        if (open == 0)
            break;
        n = epoll_wait(w->ep, evs, MAX_EVENTS, 20);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            exit(1);
        }
        now = now_ns();
        sending = now < cfg.t_end;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (!c->open)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                on_readable(w, c, buf, now, sending);
            else if (evs[i].events & EPOLLOUT)
                flush_conn(w, c);
        }
    }
    free(buf);
    return NULL;
}

/* Returns a connected non-blocking socket, or -errno. */
static int connect_one(void)
{
    struct timeval tv = {.tv_sec = 5};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&cfg.addr, sizeof(cfg.addr)) < 0) {
        int err = errno;

        close(fd);
        return -err;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: echo_load -p PORT [-a ADDR] [-c CONNS] [-d DEPTH] [-l BYTES] [-s SECONDS]\n"
            "                 [-w WARMUP_SECONDS] [-t THREADS]\n"
            "  defaults: -a 127.0.0.1 -c 64 -d 1 -l 64 -s 5 -w 0 -t 1\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = -1, opt;
    struct worker *workers;
    struct conn *conns;
    struct stats total;
    struct rlimit rl;
    uint64_t errors;
    double mps;

    cfg.conns = 64;
    cfg.depth = 1;
    cfg.size = 64;
    cfg.threads = 1;
    cfg.seconds = 5;
    while ((opt = getopt(argc, argv, "a:p:c:d:l:s:w:t:h")) != -1) {
        switch (opt) {
        case 'a':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'c':
            cfg.conns = atoi(optarg);
            break;
        case 'd':
            cfg.depth = atoi(optarg);
            break;
        case 'l':
            cfg.size = atoi(optarg);
            break;
        case 's':
            cfg.seconds = atof(optarg);
            break;
        case 'w':
            cfg.warmup = atof(optarg);
            break;
        case 't':
            cfg.threads = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || port > 65535 || cfg.conns < 1 || cfg.depth < 1 || cfg.size < 1 ||
        cfg.size > (1 << 20) || cfg.seconds <= 0 || cfg.warmup < 0 || cfg.threads < 1 ||
        optind != argc)
        usage();
    if (cfg.threads > cfg.conns)
        cfg.threads = cfg.conns;
    cfg.addr.sin_family = AF_INET;
    cfg.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &cfg.addr.sin_addr) != 1) {
        fprintf(stderr, "echo_load: bad IPv4 address %s\n", host);
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    workers = calloc((size_t)cfg.threads, sizeof(*workers));
    conns = calloc((size_t)cfg.conns, sizeof(*conns));
    if (workers == NULL || conns == NULL) {
        perror("calloc");
        return 1;
    }
    memset(&total, 0, sizeof(total));
    for (int t = 0; t < cfg.threads; t++) {
        workers[t].ep = epoll_create1(EPOLL_CLOEXEC);
        workers[t].conns = calloc((size_t)cfg.conns / (size_t)cfg.threads + 1, sizeof(void *));
        if (workers[t].ep < 0 || workers[t].conns == NULL) {
            perror("epoll_create1");
            return 1;
        }
    }
    for (int i = 0; i < cfg.conns; i++) {
        struct conn *c = &conns[i];
        struct worker *w = &workers[i % cfg.threads];
        struct epoll_event ev;

        c->fd = connect_one();
        if (c->fd < 0) {
            if (total.connect_errors++ == 0)
                fprintf(stderr, "echo_load: connect to %s:%d: %s\n", host, port, strerror(-c->fd));
            continue;
        }
        c->id = (uint32_t)i;
        c->open = 1;
        c->sent_ns = calloc((size_t)cfg.depth, sizeof(uint64_t));
        c->out = malloc((size_t)cfg.depth * (size_t)cfg.size);
        if (c->sent_ns == NULL || c->out == NULL) {
            perror("malloc");
            return 1;
        }
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
        w->conns[w->nconns++] = c;
    }

    cfg.t_start = now_ns() + (uint64_t)(cfg.warmup * 1e9);
    cfg.t_end = cfg.t_start + (uint64_t)(cfg.seconds * 1e9);
    for (int t = 0; t < cfg.threads; t++)
        if (pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int t = 0; t < cfg.threads; t++) {
        struct stats *st = &workers[t].st;

        pthread_join(workers[t].tid, NULL);
        total.msgs += st->msgs;
        total.resets += st->resets;
        total.shorts += st->shorts;
        total.mismatches += st->mismatches;
        total.lost += st->lost;
        for (int i = 0; i < HIST_BUCKETS; i++)
            total.hist[i] += st->hist[i];
    }

    errors = total.connect_errors + total.resets + total.shorts + total.mismatches + total.lost;
    mps = (double)total.msgs / cfg.seconds;
    printf("echo_load: %s:%d conns=%d depth=%d size=%d threads=%d, %.2fs after %.2fs warm-up\n",
           host, port, cfg.conns, cfg.depth, cfg.size, cfg.threads, cfg.seconds, cfg.warmup);
    printf("  messages: %" PRIu64 " (%.0f/s), %.2f MB/s each way\n", total.msgs, mps,
           mps * cfg.size / 1e6);
    printf("  latency:  p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n", percentile_us(&total, 50),
           percentile_us(&total, 99), percentile_us(&total, 99.9));
    printf("  errors:   connect %" PRIu64 ", reset %" PRIu64 ", short %" PRIu64
           ", mismatch %" PRIu64 ", lost %" PRIu64 "\n",
           total.connect_errors, total.resets, total.shorts, total.mismatches, total.lost);
    printf("RESULT msgs=%" PRIu64 " seconds=%.3f msg_per_s=%.1f bytes_per_s=%.1f p50_us=%.1f "
           "p99_us=%.1f p999_us=%.1f connect_errors=%" PRIu64 " resets=%" PRIu64 " short=%" PRIu64
           " mismatches=%" PRIu64 " lost=%" PRIu64 " errors=%" PRIu64 "\n",
           total.msgs, cfg.seconds, mps, mps * cfg.size, percentile_us(&total, 50),
           percentile_us(&total, 99), percentile_us(&total, 99.9), total.connect_errors,
           total.resets, total.shorts, total.mismatches, total.lost, errors);
    return errors == 0 && total.msgs > 0 ? 0 : 1;
}
