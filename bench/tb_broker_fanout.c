/*  tb_broker_fanout.c - event_fanout: one publisher, many subscribers,
    through the broker, against a raw XPUB/XSUB proxy and Redis pub/sub.

    usage: tb_broker_fanout [REPS [EVENTS [SUBSCRIBERS [SERIES]]]]

    Every party is a process of its own on 127.0.0.1 over TCP: for troupe
    a broker, a publishing node and SUBSCRIBERS nodes with one subscribed
    actor each (mailbox of 4Mi messages, so that no node drops an event
    itself); for the reference a zmq_proxy between an XSUB and an XPUB, a
    PUB process and SUBSCRIBERS SUB processes; for Redis a redis-server
    (persistence off) on a free port, a publishing client and SUBSCRIBERS
    subscribed clients (RESP spoken directly over a socket).

    One run: the publisher publishes EVENTS events of topic "tb.d" with a
    64-byte body (a msgpack bin8 of 62 bytes; the raw PUB sends the topic
    and the body as two frames; Redis PUBLISHes in pipelined batches of
    100 and reads the answers), as fast as it can, then one of topic
    "tb.end". A subscriber is done when the end has come, or when no event
    has come for 300 ms. The figure is events delivered per second summed
    over all subscribers: the copies received by every subscriber
    together, divided by the time from the publisher's first event to the
    last copy received by any subscriber (one monotonic clock: the
    machine's). Nothing waits for slow subscribers: the broker drops
    copies for a client whose queue (max_queue, 10,000) is full, the
    XPUB and the PUB at their high-water mark (1,000 by default), and
    Redis buffers (up to its client-output-buffer-limit for pub/sub). A
    NOTE line gives the copies delivered out of EVENTS x SUBSCRIBERS.

    Series, with P = SUBSCRIBERS: troupe_P, zmq_xpub_P, redis_P; they take
    turns within each repetition, after a warm-up round of EVENTS / 5 not
    counted. With SERIES, only that series runs.
*/

#include "tb_proc.h"

#include <stdatomic.h>
#include <stdbool.h>

#define S_SILENCE_NS    300000000       //  a subscriber's end without "tb.end"
#define S_NOTHING_NS    10000000000LL   //  or without any event at all
#define S_BATCH         100             //  Redis PUBLISHes per pipelined batch
#define S_SUBS_MAX      256
#define S_PUMP_MS       20              //  longest wait of a subscriber's loop

//  --------------------------------------------------------------------------
//  What every subscriber keeps

typedef struct {
    atomic_uint_fast64_t count;         //  "tb.d" events this run
    atomic_int_fast64_t last_ns;        //  when the last one came
    atomic_bool ended;                  //  "tb.end" came
    atomic_bool probed;                 //  a "tb.probe" came
} s_sub_t;

static s_sub_t s_sub;

//  One event of topic (len bytes), at now_ns.
static void
s_sub_event (const char *topic, size_t len, int64_t now_ns)
{
    if (len == 4 && !memcmp (topic, "tb.d", 4)) {
        atomic_fetch_add_explicit (&s_sub.count, 1, memory_order_relaxed);
        atomic_store_explicit (&s_sub.last_ns, now_ns, memory_order_relaxed);
    }
    else
    if (len == 6 && !memcmp (topic, "tb.end", 6))
        atomic_store (&s_sub.ended, true);
    else
    if (len == 8 && !memcmp (topic, "tb.probe", 8))
        atomic_store (&s_sub.probed, true);
}

//  Takes what arrived, waiting up to S_PUMP_MS for something (a role's
//  own receiving); returns at once when a command comes on standard
//  input. The wait is long so that idle subscribers (64 processes) do
//  not wake up a thousand times a second each; the time of each event
//  is taken when it is received, so the figures do not depend on it.
typedef void (s_pump_fn) (void *state);

//  A subscriber's main loop. Commands: "wait-ready" says "ready" once a
//  probe has come; "run" resets the counts, says "armed", and says "done
//  COUNT LAST_NS" once the run is over.
static int
s_sub_loop (s_pump_fn *pump, void *state)
{
    bool running = false, waiting = false;
    int64_t armed_ns = 0;
    for (;;) {
        struct pollfd pfd = { .fd = 0, .events = POLLIN };
        if (poll (&pfd, 1, 0) > 0) {
            char line [256];
            if (!tb_command (line, sizeof line))
                return 0;
            if (!strcmp (line, "wait-ready"))
                waiting = true;
            else
            if (!strcmp (line, "run")) {
                atomic_store (&s_sub.count, 0);
                atomic_store (&s_sub.last_ns, 0);
                atomic_store (&s_sub.ended, false);
                running = true;
                armed_ns = tb_now_ns ();
                tb_answer ("armed");
            }
        }
        pump (state);
        if (waiting && atomic_load (&s_sub.probed)) {
            waiting = false;
            tb_answer ("ready");
        }
        if (!running)
            continue;
        int64_t now = tb_now_ns ();
        int64_t last = atomic_load (&s_sub.last_ns);
        if (atomic_load (&s_sub.ended) || (last && now - last > S_SILENCE_NS)
        ||  (!last && now - armed_ns > S_NOTHING_NS)) {
            //  Events after the end (none expected) are not counted.
            tb_answer ("done %" PRIu64 " %" PRId64,
                       (uint64_t) atomic_load (&s_sub.count), (int64_t) atomic_load (&s_sub.last_ns));
            running = false;
        }
    }
}

//  --------------------------------------------------------------------------
//  troupe roles

//  The subscribed actor: its body is the msgpack array [topic, body].
static int
s_ev_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    const uint8_t *b = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    if (size >= 2 && b [0] == 0x92 && (b [1] & 0xe0) == 0xa0 && (size_t) (b [1] & 0x1f) + 2 <= size)
        s_sub_event ((const char *) b + 2, b [1] & 0x1f, tb_now_ns ());
    return 0;
}

//  The actor does the receiving: only wait for a command.
static void
s_stdin_pump (void *state)
{
    struct pollfd pfd = { .fd = 0, .events = POLLIN };
    poll (&pfd, 1, S_PUMP_MS);
}

//  role ev-sub ENDPOINT INDEX
static int
s_role_ev_sub (int argc, char **argv)
{
    tr_node_opts_t opts = { .broker = argv [0] };
    tr_node_t *node;
    tb_check (tr_node_new (&opts, &node), "node");
    char name [32];
    snprintf (name, sizeof name, "sub-%s", argc > 1? argv [1]: "0");
    tr_behaviour_t behaviour = { .handle = s_ev_handle };
    tr_spawn_opts_t spawn = { .capacity = 4 * 1024 * 1024, .on_full = TR_FULL_FAIL };
    tb_check (tr_spawn (node, name, &behaviour, NULL, &spawn, NULL), "spawn");
    tb_check (tr_event_subscribe (node, "tb.", name), "subscribe");
    int rc = s_sub_loop (s_stdin_pump, NULL);
    tr_node_destroy (&node);
    return rc;
}

//  A publisher's loop: "probe" publishes one probe and says "ok"; "run N"
//  publishes N events and the end, and says "result START_NS END_NS".
typedef void (s_publish_fn) (void *state, const char *topic, const tb_body_t *body);
typedef void (s_flush_fn) (void *state);

static int
s_pub_loop (s_publish_fn *publish, s_flush_fn *flush, void *state)
{
    tb_body_t body = tb_body_bin62 ();
    tb_body_t none = { .size = 0 };
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line)) {
        unsigned long long n;
        if (!strcmp (line, "probe")) {
            publish (state, "tb.probe", &none);
            flush (state);
            tb_answer ("ok");
            continue;
        }
        if (sscanf (line, "run %llu", &n) != 1)
            tb_die ("publisher: '%s'?", line);
        int64_t start = tb_now_ns ();
        for (unsigned long long i = 0; i < n; i++)
            publish (state, "tb.d", &body);
        publish (state, "tb.end", &none);
        flush (state);
        tb_answer ("result %" PRId64 " %" PRId64, start, tb_now_ns ());
    }
    return 0;
}

static void
s_ev_publish (void *state, const char *topic, const tb_body_t *body)
{
    tb_check (tr_event_publish ((tr_node_t *) state, topic, body->data, body->size, NULL),
              "publish");
}

static void
s_no_flush (void *state)
{
}

//  role ev-pub ENDPOINT
static int
s_role_ev_pub (int argc, char **argv)
{
    tr_node_opts_t opts = { .broker = argv [0] };
    tr_node_t *node;
    tb_check (tr_node_new (&opts, &node), "node");
    int rc = s_pub_loop (s_ev_publish, s_no_flush, node);
    tr_node_destroy (&node);
    return rc;
}

//  --------------------------------------------------------------------------
//  Raw libzmq roles

static void
s_zsub_pump (void *state)
{
    zmq_pollitem_t items [2] = { { .socket = state, .events = ZMQ_POLLIN },
                                 { .fd = 0, .events = ZMQ_POLLIN } };
    if (zmq_poll (items, 2, S_PUMP_MS) <= 0 || !(items [0].revents & ZMQ_POLLIN))
        return;
    char topic [32], body [TB_BODY_SIZE];
    int64_t now = tb_now_ns ();
    for (int i = 0; i < 1000; i++) {
        int len = zmq_recv (state, topic, sizeof topic, ZMQ_DONTWAIT);
        if (len < 0)
            break;
        int more = 0;
        size_t more_size = sizeof more;
        zmq_getsockopt (state, ZMQ_RCVMORE, &more, &more_size);
        if (more)
            zmq_recv (state, body, sizeof body, 0);
        s_sub_event (topic, (size_t) len < sizeof topic? (size_t) len: sizeof topic, now);
    }
}

//  role zsub BACKEND
static int
s_role_zsub (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    void *sock = tb_zmq_connect (ctx, ZMQ_SUB, argv [0]);
    zmq_setsockopt (sock, ZMQ_SUBSCRIBE, "tb.", 3);
    return s_sub_loop (s_zsub_pump, sock);
}

static void
s_zpub_publish (void *state, const char *topic, const tb_body_t *body)
{
    zmq_send (state, topic, strlen (topic), ZMQ_SNDMORE);
    zmq_send (state, body->data, body->size, 0);
}

//  role zpub FRONTEND
static int
s_role_zpub (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    void *sock = tb_zmq_connect (ctx, ZMQ_PUB, argv [0]);
    return s_pub_loop (s_zpub_publish, s_no_flush, sock);
}

//  --------------------------------------------------------------------------
//  Redis roles: RESP over a socket

static int
s_redis_connect (const char *port)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) atoi (port)),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    //  redis-server may still be starting.
    for (int tries = 0; ; tries++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0)
            return fd;
        if (fd >= 0)
            close (fd);
        if (tries == 500)
            tb_die ("redis on port %s: %s", port, strerror (errno));
        usleep (10000);
    }
}

static void
s_write_all (int fd, const void *data, size_t size)
{
    const char *p = (const char *) data;
    while (size) {
        ssize_t n = write (fd, p, size);
        if (n <= 0)
            tb_die ("redis write: %s", strerror (errno));
        p += n;
        size -= (size_t) n;
    }
}

//  The Redis publisher: commands are gathered in a buffer, and each batch
//  of S_BATCH is sent and its answers (":N\r\n", one line each) read.
typedef struct {
    int fd;
    char buf [S_BATCH * 128];
    size_t size;
    int pending;
} s_rpub_t;

static void
s_rpub_flush (void *state)
{
    s_rpub_t *r = (s_rpub_t *) state;
    if (!r->pending)
        return;
    s_write_all (r->fd, r->buf, r->size);
    char in [4096];
    while (r->pending) {
        ssize_t n = read (r->fd, in, sizeof in);
        if (n <= 0)
            tb_die ("redis read: %s", strerror (errno));
        for (ssize_t i = 0; i < n; i++)
            r->pending -= in [i] == '\n';
    }
    r->size = 0;
}

static void
s_rpub_publish (void *state, const char *topic, const tb_body_t *body)
{
    s_rpub_t *r = (s_rpub_t *) state;
    int n = snprintf (r->buf + r->size, sizeof r->buf - r->size,
                      "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n",
                      strlen (topic), topic, body->size);
    r->size += (size_t) n;
    memcpy (r->buf + r->size, body->data, body->size);
    r->size += body->size;
    memcpy (r->buf + r->size, "\r\n", 2);
    r->size += 2;
    if (++r->pending == S_BATCH)
        s_rpub_flush (r);
}

//  role rpub PORT
static int
s_role_rpub (int argc, char **argv)
{
    static s_rpub_t r;
    r.fd = s_redis_connect (argv [0]);
    return s_pub_loop (s_rpub_publish, s_rpub_flush, &r);
}

//  The Redis subscriber's input, parsed as it comes.
typedef struct {
    int fd;
    char buf [1 << 16];
    size_t size;
} s_rsub_t;

//  One RESP element at p (a bulk string or an integer): sets *str and
//  *len (for a bulk string) and returns the bytes it takes, or 0 if it is
//  not all there yet.
static size_t
s_resp_element (const char *p, size_t size, const char **str, size_t *len)
{
    const char *eol = memchr (p, '\n', size);
    if (!eol)
        return 0;
    size_t head = (size_t) (eol - p) + 1;
    *str = NULL;
    *len = 0;
    if (p [0] != '$')
        return head;                    //  ":N\r\n"
    size_t body = (size_t) strtoul (p + 1, NULL, 10);
    if (head + body + 2 > size)
        return 0;
    *str = p + head;
    *len = body;
    return head + body + 2;
}

static void
s_rsub_pump (void *state)
{
    s_rsub_t *r = (s_rsub_t *) state;
    struct pollfd pfd [2] = { { .fd = r->fd, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
    if (poll (pfd, 2, S_PUMP_MS) <= 0 || !(pfd [0].revents & POLLIN))
        return;
    ssize_t n = read (r->fd, r->buf + r->size, sizeof r->buf - r->size);
    if (n <= 0)
        tb_die ("redis subscriber: %s", n? strerror (errno): "connection closed");
    r->size += (size_t) n;
    int64_t now = tb_now_ns ();
    size_t at = 0;
    //  Each push is "*3\r\n" and three elements: kind, channel, data.
    for (;;) {
        const char *p = r->buf + at;
        size_t left = r->size - at;
        const char *eol = memchr (p, '\n', left);
        if (!eol)
            break;
        size_t used = (size_t) (eol - p) + 1;
        const char *str [3];
        size_t len [3], step = 0;
        int i;
        for (i = 0; i < 3; i++, used += step)
            if (!(step = s_resp_element (p + used, left - used, &str [i], &len [i])))
                break;
        if (i < 3)
            break;
        if (len [0] == 7 && !memcmp (str [0], "message", 7))
            s_sub_event (str [1], len [1], now);
        at += used;
    }
    memmove (r->buf, r->buf + at, r->size - at);
    r->size -= at;
}

//  role rsub PORT
static int
s_role_rsub (int argc, char **argv)
{
    static s_rsub_t r;
    r.fd = s_redis_connect (argv [0]);
    const char *cmd = "*4\r\n$9\r\nSUBSCRIBE\r\n$4\r\ntb.d\r\n$6\r\ntb.end\r\n$8\r\ntb.probe\r\n";
    s_write_all (r.fd, cmd, strlen (cmd));
    return s_sub_loop (s_rsub_pump, &r);
}

//  --------------------------------------------------------------------------
//  The driver

typedef struct {
    char name [32];
    int kind;                           //  0 troupe, 1 zmq, 2 redis
    tb_child_t server, pub;
    tb_child_t *subs;
    int nsubs;
    uint64_t published, delivered, ops;
} s_series_t;

static void
s_series_start (s_series_t *s)
{
    char line [512], fe [512], be [512], index [16];
    if (s->kind == 0) {
        tb_child_start (&s->server, "broker", NULL);
        snprintf (fe, sizeof fe, "%s", tb_child_expect (&s->server, "ready", line, sizeof line));
        snprintf (be, sizeof be, "%s", fe);
    }
    else
    if (s->kind == 1) {
        tb_child_start (&s->server, "zproxy", "xpub", NULL);
        if (sscanf (tb_child_expect (&s->server, "ready", line, sizeof line),
                    "%511s %511s", fe, be) != 2)
            tb_die ("zproxy: '%s'?", line);
    }
    else {
        int port = tb_free_port ();
        snprintf (fe, sizeof fe, "%d", port);
        snprintf (be, sizeof be, "%d", port);
        char *argv [] = { "redis-server", "--port", fe, "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--daemonize", "no", NULL };
        tb_child_exec (&s->server, "redis-server", argv, 1);
    }
    const char *pub_role [] = { "ev-pub", "zpub", "rpub" };
    const char *sub_role [] = { "ev-sub", "zsub", "rsub" };
    tb_child_start (&s->pub, pub_role [s->kind], fe, NULL);
    tb_child_expect (&s->pub, "ready", line, sizeof line);
    for (int i = 0; i < s->nsubs; i++) {
        snprintf (index, sizeof index, "%d", i);
        tb_child_start (&s->subs [i], sub_role [s->kind], be, index, NULL);
        tb_child_say (&s->subs [i], "wait-ready");
    }
    //  Probes until every subscription has reached the publisher's side.
    char *ready = calloc ((size_t) s->nsubs, 1);
    for (int left = s->nsubs, tries = 0; left; tries++) {
        if (tries == 1000)
            tb_die ("%s: %d subscribers never saw a probe", s->name, left);
        tb_child_say (&s->pub, "probe");
        tb_child_expect (&s->pub, "ok", line, sizeof line);
        usleep (10000);
        for (int i = 0; i < s->nsubs; i++)
            if (!ready [i] && tb_child_line_wait (&s->subs [i], line, sizeof line, 0) == 0)
                ready [i] = 1, left--;
    }
    free (ready);
}

static double
s_series_run (s_series_t *s, uint64_t n, int counted)
{
    char line [512];
    for (int i = 0; i < s->nsubs; i++)
        tb_child_say (&s->subs [i], "run");
    for (int i = 0; i < s->nsubs; i++)
        tb_child_expect (&s->subs [i], "armed", line, sizeof line);
    tb_child_say (&s->pub, "run %" PRIu64, n);
    long long start, end, last = 0;
    if (sscanf (tb_child_expect (&s->pub, "result", line, sizeof line), "%lld %lld",
                &start, &end) != 2)
        tb_die ("publisher: '%s'?", line);
    uint64_t delivered = 0;
    for (int i = 0; i < s->nsubs; i++) {
        unsigned long long count;
        long long at;
        if (sscanf (tb_child_expect (&s->subs [i], "done", line, sizeof line), "%llu %lld",
                    &count, &at) != 2)
            tb_die ("subscriber: '%s'?", line);
        delivered += count;
        if (at > last)
            last = at;
    }
    s->ops += n;
    if (counted) {
        s->published += n;
        s->delivered += delivered;
    }
    return last > start? (double) delivered * 1e9 / (double) (last - start): 0;
}

int
main (int argc, char **argv)
{
    if (argc >= 3 && !strcmp (argv [1], "role")) {
        const char *role = argv [2];
        tr_log_set_level (TR_LOG_ERROR);
        if (!strcmp (role, "broker"))  return tb_role_broker (argc - 3, argv + 3);
        if (!strcmp (role, "zproxy"))  return tb_role_zproxy (argc - 3, argv + 3);
        if (!strcmp (role, "ev-pub"))  return s_role_ev_pub (argc - 3, argv + 3);
        if (!strcmp (role, "ev-sub"))  return s_role_ev_sub (argc - 3, argv + 3);
        if (!strcmp (role, "zpub"))    return s_role_zpub (argc - 3, argv + 3);
        if (!strcmp (role, "zsub"))    return s_role_zsub (argc - 3, argv + 3);
        if (!strcmp (role, "rpub"))    return s_role_rpub (argc - 3, argv + 3);
        if (!strcmp (role, "rsub"))    return s_role_rsub (argc - 3, argv + 3);
        tb_die ("no role '%s'", role);
    }
    int reps = (int) tb_arg (argc, argv, 1, 5);
    uint64_t n = (uint64_t) tb_arg (argc, argv, 2, 100000);
    int nsubs = (int) tb_arg (argc, argv, 3, 4);
    const char *only = argc > 4? argv [4]: NULL;
    if (nsubs > S_SUBS_MAX)
        tb_die ("at most %d subscribers", S_SUBS_MAX);
    s_series_t series [3];
    const char *prefix [] = { "troupe", "zmq_xpub", "redis" };
    for (int k = 0; k < 3; k++) {
        series [k] = (s_series_t) { .kind = k, .nsubs = nsubs };
        snprintf (series [k].name, sizeof series [k].name, "%s_%d", prefix [k], nsubs);
        series [k].subs = calloc ((size_t) nsubs, sizeof (tb_child_t));
        if (!only || !strcmp (only, series [k].name))
            s_series_start (&series [k]);
    }
    for (int round = 0; round <= reps; round++) {
        fprintf (stderr, "event_fanout %d:", round);
        for (int k = 0; k < 3; k++) {
            s_series_t *s = &series [k];
            if (!s->pub.pid)
                continue;
            double rate = s_series_run (s, round? n: n / 5, round > 0);
            if (round)
                tb_sample ("event_fanout", s->name, rate);
            fprintf (stderr, " %s %.0f", s->name, rate);
        }
        fprintf (stderr, " events delivered/s\n");
    }
    for (int k = 0; k < 3; k++) {
        s_series_t *s = &series [k];
        if (!s->pub.pid)
            continue;
        printf ("NOTE event_fanout %s: %" PRIu64 " events published in the counted rounds to %d"
                " subscribers, %" PRIu64 " copies delivered (%.1f%% of %" PRIu64 ")\n", s->name,
                s->published, nsubs, s->delivered,
                100.0 * (double) s->delivered / ((double) s->published * nsubs),
                s->published * (uint64_t) nsubs);
        printf ("OPS event_fanout %s %" PRIu64 "\n", s->name, s->ops);
        tb_child_end (&s->pub, 5000);
        for (int i = 0; i < nsubs; i++)
            tb_child_end (&s->subs [i], 5000);
        tb_child_end (&s->server, s->kind == 0? 5000: 0);
    }
    return 0;
}
