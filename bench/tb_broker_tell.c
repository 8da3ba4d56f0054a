/*  tb_broker_tell.c - broker_tell and broker_ask: tells and asks between
    processes through the broker, against raw libzmq through a proxy.

    usage: tb_broker_tell tell [REPS [MESSAGES [SERIES]]]
           tb_broker_tell ask [REPS [WINDOW_MS [SERIES]]]

    Every party is a process of its own (tb_proc.h), all on 127.0.0.1
    over TCP: a broker, a receiving node, a sending node; and for the
    reference a zmq_proxy (ROUTER frontend, DEALER backend), a receiving
    and a sending process. The series take turns within each repetition,
    after one shorter warm-up round of each that is not counted.

    tell: the sender tells MESSAGES bodies of 64 bytes (a msgpack bin8 of
    62 bytes, as tell_throughput) to the receiver's counting actor, as
    fast as tr_tell takes them, then asks the counter how many it got.
    The ask travels behind the tells, so its answer means every tell that
    was delivered has been counted: the clock runs from the first tell to
    that answer, and the figure is tells delivered per second. The broker
    queues at most max_queue (10,000) messages towards one client; past
    that it bounces tells (TR_EFULL; dead letters at the sender), and
    the sending node's own socket takes at most 100,000 before its link
    drops tells as dead letters too. The counter's mailbox holds 4Mi
    messages, so that the receiving node never drops one. Series:
      troupe_tell      as above, in messages delivered per second
      troupe_window    the sender asks the counter after every 5,000
                       tells (below max_queue), which paces it: nothing
                       is bounced
      zmq_proxy        raw libzmq: DEALER -> ROUTER/DEALER zmq_proxy ->
                       DEALER, the same 64 bytes, then a 1-byte probe
                       that the receiver answers with its count (DEALER
                       sends block at the high-water mark: nothing is lost)
    A "NOTE" line gives, per series, what was sent, delivered, bounced
    by the broker and dropped at the sender.

    ask: askers and answerers go round trip after round trip for
    WINDOW_MS (default 1000); the figure is round trips per second, all
    pairs together. Series:
      troupe_ask       an actor of the asking node loops on tr_ask to an
                       actor of the answering node that echoes the body
                       (the round number, a msgpack uint, checked)
      zmq_req_rep      raw libzmq REQ -> ROUTER/DEALER zmq_proxy -> REP,
                       the round number as 8 bytes
      troupe_ask_8, zmq_req_rep_8
                       the same with 8 askers at once (8 actors, or 8
                       REQ threads) and 8 answerers

    With SERIES, only that series runs. "OPS" lines at the end give the
    messages or round trips of all rounds, warm-up included.
*/

#include "tb_proc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define S_SINK_CAPACITY     (4 * 1024 * 1024)
#define S_WINDOW            5000
#define S_PAIRS_MAX         8

//  --------------------------------------------------------------------------
//  Shared by the troupe roles

static tr_node_t *
s_join (const char *endpoint)
{
    tr_node_opts_t opts = { .broker = endpoint };
    tr_node_t *node;
    tb_check (tr_node_new (&opts, &node), "node");
    return node;
}

//  Asks `to` with 0 until it answers (its name takes a moment to reach the
//  broker); returns the answer's count.
static uint64_t
s_ask_until_ok (tr_node_t *node, const char *to)
{
    for (int tries = 0; ; tries++) {
        tr_body_t body = tb_pack_uint (0);
        tr_msg_t *reply;
        int rc = tr_ask (node, to, body.data, body.size, 2000, &reply, NULL);
        if (rc == TR_OK) {
            uint64_t count = 0;
            tb_unpack_uint (reply, &count);
            tr_msg_destroy (&reply);
            return count;
        }
        if (tries == 1000)
            tb_check (rc, to);
        usleep (rc == TR_EFULL? 100: 10000);
    }
}

static uint64_t
s_dead_letters (tr_node_t *node)
{
    tr_node_stats_t stats;
    tb_check (tr_node_stats (node, &stats), "node stats");
    return stats.dead_letters;
}

//  --------------------------------------------------------------------------
//  tell: troupe roles

//  Counts 64-byte tells; answers an ask with the count since the last ask.
static int
s_sink_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    uint64_t *count = (uint64_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_TELL) {
        if (tr_msg_size (msg) == TB_BODY_SIZE)
            (*count)++;
        return 0;
    }
    tr_body_t body = tb_pack_uint (*count);
    *count = 0;
    return tr_reply (msg, body.data, body.size);
}

//  role tell-recv ENDPOINT: a node with the counter "sink".
static int
s_role_tell_recv (int argc, char **argv)
{
    tr_node_t *node = s_join (argv [0]);
    static uint64_t count;
    tr_behaviour_t sink = { .handle = s_sink_handle };
    tr_spawn_opts_t opts = { .capacity = S_SINK_CAPACITY, .on_full = TR_FULL_FAIL };
    tb_check (tr_spawn (node, "sink", &sink, &count, &opts, NULL), "spawn sink");
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line))
        ;
    tr_node_destroy (&node);
    return 0;
}

//  role tell-send ENDPOINT: "run N WINDOW" tells the sink N times (asking
//  its count after every WINDOW tells, if WINDOW > 0) and then asks its
//  count; says "result DELIVERED NS DEAD_LETTERS".
static int
s_role_tell_send (int argc, char **argv)
{
    tr_node_t *node = s_join (argv [0]);
    s_ask_until_ok (node, "sink");
    tb_answer ("ready");
    tb_body_t body = tb_body_bin62 ();
    char line [256];
    while (tb_command (line, sizeof line)) {
        unsigned long long n, window;
        if (sscanf (line, "run %llu %llu", &n, &window) != 2)
            tb_die ("tell-send: '%s'?", line);
        uint64_t dead0 = s_dead_letters (node), delivered = 0;
        int64_t start = tb_now_ns ();
        for (uint64_t i = 0; i < n; i++) {
            tb_check (tr_tell (node, "sink", body.data, body.size, NULL), "tell");
            if (window && (i + 1) % window == 0)
                delivered += s_ask_until_ok (node, "sink");
        }
        delivered += s_ask_until_ok (node, "sink");
        int64_t elapsed = tb_now_ns () - start;
        //  Bounces may still be on their way back: give them a moment.
        usleep (50000);
        tb_answer ("result %" PRIu64 " %" PRId64 " %" PRIu64,
                   delivered, elapsed, s_dead_letters (node) - dead0);
    }
    tr_node_destroy (&node);
    return 0;
}

//  --------------------------------------------------------------------------
//  tell: raw libzmq roles

//  role ztell-recv BACKEND: counts 64-byte messages; answers a probe
//  (anything else) with the count since the last probe, 8 bytes.
static int
s_role_ztell_recv (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    void *sock = tb_zmq_connect (ctx, ZMQ_DEALER, argv [0]);
    tb_answer ("ready");
    uint64_t count = 0;
    char id [256], buf [TB_BODY_SIZE];
    for (;;) {
        int id_size = zmq_recv (sock, id, sizeof id, 0);
        int size = zmq_recv (sock, buf, sizeof buf, 0);
        if (id_size < 0 || size < 0)
            tb_die ("ztell-recv: %s", zmq_strerror (zmq_errno ()));
        if (tb_is_body ((size_t) size)) {
            count++;
            continue;
        }
        zmq_send (sock, id, (size_t) id_size, ZMQ_SNDMORE);
        zmq_send (sock, &count, sizeof count, 0);
        count = 0;
    }
    return 0;
}

//  Sends a probe and returns the receiver's count.
static uint64_t
s_zprobe (void *sock)
{
    uint64_t count;
    if (zmq_send (sock, "?", 1, 0) != 1
    ||  zmq_recv (sock, &count, sizeof count, 0) != sizeof count)
        tb_die ("probe: %s", zmq_strerror (zmq_errno ()));
    return count;
}

//  role ztell-send FRONTEND: as tell-send, with a DEALER.
static int
s_role_ztell_send (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    void *sock = tb_zmq_connect (ctx, ZMQ_DEALER, argv [0]);
    s_zprobe (sock);
    tb_answer ("ready");
    tb_body_t body = tb_body_bin62 ();
    char line [256];
    while (tb_command (line, sizeof line)) {
        unsigned long long n, window;
        if (sscanf (line, "run %llu %llu", &n, &window) != 2)
            tb_die ("ztell-send: '%s'?", line);
        int64_t start = tb_now_ns ();
        for (uint64_t i = 0; i < n; i++)
            if (zmq_send (sock, body.data, body.size, 0) != TB_BODY_SIZE)
                tb_die ("ztell-send: %s", zmq_strerror (zmq_errno ()));
        uint64_t delivered = s_zprobe (sock);
        tb_answer ("result %" PRIu64 " %" PRId64 " 0", delivered, tb_now_ns () - start);
    }
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

//  --------------------------------------------------------------------------
//  tell: the driver

typedef struct {
    const char *name;
    int raw;
    uint64_t window;
    tb_child_t parts [3];               //  broker or proxy, receiver, sender
    uint64_t sent, delivered, bounced, dropped, ops;
} s_tell_series_t;

static void
s_tell_start (s_tell_series_t *s)
{
    char line [512], fe [512], be [512];
    if (s->raw) {
        tb_child_start (&s->parts [0], "zproxy", "router", NULL);
        if (sscanf (tb_child_expect (&s->parts [0], "ready", line, sizeof line),
                    "%511s %511s", fe, be) != 2)
            tb_die ("zproxy: '%s'?", line);
        tb_child_start (&s->parts [1], "ztell-recv", be, NULL);
        tb_child_expect (&s->parts [1], "ready", line, sizeof line);
        tb_child_start (&s->parts [2], "ztell-send", fe, NULL);
    }
    else {
        tb_child_start (&s->parts [0], "broker", NULL);
        snprintf (fe, sizeof fe, "%s", tb_child_expect (&s->parts [0], "ready", line, sizeof line));
        tb_child_start (&s->parts [1], "tell-recv", fe, NULL);
        tb_child_expect (&s->parts [1], "ready", line, sizeof line);
        tb_child_start (&s->parts [2], "tell-send", fe, NULL);
    }
    tb_child_expect (&s->parts [2], "ready", line, sizeof line);
}

static uint64_t
s_broker_bounced (tb_child_t *broker)
{
    char line [512];
    unsigned long long routed, bounced;
    tb_child_say (broker, "stats");
    if (sscanf (tb_child_expect (broker, "stats", line, sizeof line), "%llu %llu",
                &routed, &bounced) != 2)
        tb_die ("broker stats: '%s'?", line);
    return bounced;
}

//  One run; returns messages delivered per second.
static double
s_tell_run (s_tell_series_t *s, uint64_t n, int counted)
{
    char line [512];
    uint64_t bounced0 = s->raw? 0: s_broker_bounced (&s->parts [0]);
    tb_child_say (&s->parts [2], "run %" PRIu64 " %" PRIu64, n, s->window);
    unsigned long long delivered, ns, dead;
    if (sscanf (tb_child_expect (&s->parts [2], "result", line, sizeof line),
                "%llu %llu %llu", &delivered, &ns, &dead) != 3)
        tb_die ("sender: '%s'?", line);
    s->ops += n;
    if (counted) {
        s->sent += n;
        s->delivered += delivered;
        s->dropped += dead;
        s->bounced += s->raw? 0: s_broker_bounced (&s->parts [0]) - bounced0;
    }
    return (double) delivered * 1e9 / (double) ns;
}

static void
s_tell (int reps, uint64_t n, const char *only)
{
    s_tell_series_t series [] = {
        { .name = "troupe_tell" },
        { .name = "troupe_window", .window = S_WINDOW },
        { .name = "zmq_proxy", .raw = 1 }
    };
    size_t count = sizeof series / sizeof series [0];
    for (size_t i = 0; i < count; i++)
        if (!only || !strcmp (only, series [i].name))
            s_tell_start (&series [i]);
    for (int round = 0; round <= reps; round++) {
        fprintf (stderr, "broker_tell %d:", round);
        for (size_t i = 0; i < count; i++) {
            s_tell_series_t *s = &series [i];
            if (only && strcmp (only, s->name))
                continue;
            double rate = s_tell_run (s, round? n: n / 10, round > 0);
            if (round)
                tb_sample ("broker_tell", s->name, rate);
            fprintf (stderr, " %s %.0f", s->name, rate);
        }
        fprintf (stderr, " msg/s delivered\n");
    }
    for (size_t i = 0; i < count; i++) {
        s_tell_series_t *s = &series [i];
        if (!s->ops)
            continue;
        printf ("NOTE broker_tell %s: %" PRIu64 " tells sent in the counted rounds, %" PRIu64
                " delivered (%.1f%%), %" PRIu64 " bounced by the broker (TR_EFULL), %" PRIu64
                " dead letters at the sender (bounces included)\n", s->name, s->sent,
                s->delivered, 100.0 * (double) s->delivered / (double) s->sent, s->bounced,
                s->dropped);
        printf ("OPS broker_tell %s %" PRIu64 "\n", s->name, s->ops);
        for (int p = 2; p >= 0; p--)
            tb_child_end (&s->parts [p], (s->raw && p != 2)? 0: 5000);
    }
}

//  --------------------------------------------------------------------------
//  ask: troupe roles

static int
s_pong_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

//  role ask-serve ENDPOINT K: a node with the echoing actors pong-0..K-1.
static int
s_role_ask_serve (int argc, char **argv)
{
    tr_node_t *node = s_join (argv [0]);
    int pairs = (int) tb_arg (argc, argv, 1, 1);
    tr_behaviour_t pong = { .handle = s_pong_handle };
    for (int i = 0; i < pairs; i++) {
        char name [32];
        snprintf (name, sizeof name, "pong-%d", i);
        tb_check (tr_spawn (node, name, &pong, NULL, NULL, NULL), "spawn pong");
    }
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line))
        ;
    tr_node_destroy (&node);
    return 0;
}

typedef struct {
    char pong [32];
    atomic_bool *stop;
    uint64_t count;
} s_ping_t;

//  Told anything: asks its pong until *stop; asked: answers its count
//  (after the loop, since the ask waits behind the tell).
static int
s_ping_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_ping_t *p = (s_ping_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        tr_body_t body = tb_pack_uint (p->count);
        return tr_reply (msg, body.data, body.size);
    }
    tr_node_t *node = tr_actor_node (self);
    for (p->count = 0; !atomic_load_explicit (p->stop, memory_order_relaxed); p->count++) {
        tr_body_t body = tb_pack_uint (p->count);
        tr_msg_t *reply;
        uint64_t echo;
        int rc = tr_ask (node, p->pong, body.data, body.size, 10000, &reply, NULL);
        if (rc) {
            fprintf (stderr, "bench: ask '%s': %s\n", p->pong, tr_strerror (rc));
            return -1;
        }
        rc = tb_unpack_uint (reply, &echo);
        tr_msg_destroy (&reply);
        if (rc || echo != p->count)
            return -1;
    }
    return 0;
}

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
    while (nanosleep (&ts, &ts))
        ;
}

//  role ask-client ENDPOINT K: actors ping-0..K-1, each asking its pong-i;
//  "run MS" lets them go for MS milliseconds; says "result ROUND_TRIPS NS".
static int
s_role_ask_client (int argc, char **argv)
{
    tr_node_t *node = s_join (argv [0]);
    int pairs = (int) tb_arg (argc, argv, 1, 1);
    static atomic_bool stop;
    static s_ping_t ping [S_PAIRS_MAX];
    tr_behaviour_t behaviour = { .handle = s_ping_handle };
    for (int i = 0; i < pairs && i < S_PAIRS_MAX; i++) {
        char name [32];
        snprintf (ping [i].pong, sizeof ping [i].pong, "pong-%d", i);
        ping [i].stop = &stop;
        s_ask_until_ok (node, ping [i].pong);
        snprintf (name, sizeof name, "ping-%d", i);
        tb_check (tr_spawn (node, name, &behaviour, &ping [i], NULL, NULL), "spawn ping");
    }
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line)) {
        int ms;
        if (sscanf (line, "run %d", &ms) != 1)
            tb_die ("ask-client: '%s'?", line);
        atomic_store (&stop, false);
        int64_t start = tb_now_ns ();
        for (int i = 0; i < pairs; i++) {
            char name [32];
            snprintf (name, sizeof name, "ping-%d", i);
            tb_check (tr_tell (node, name, NULL, 0, NULL), "go");
        }
        s_sleep_ms (ms);
        atomic_store (&stop, true);
        int64_t elapsed = tb_now_ns () - start;
        uint64_t total = 0;
        for (int i = 0; i < pairs; i++) {
            char name [32];
            snprintf (name, sizeof name, "ping-%d", i);
            total += tb_ask_uint (node, name, 0, 20000);
        }
        tb_answer ("result %" PRIu64 " %" PRId64, total, elapsed);
    }
    tr_node_destroy (&node);
    return 0;
}

//  --------------------------------------------------------------------------
//  ask: raw libzmq roles

typedef struct {
    void *sock;
    atomic_bool *stop;
    uint64_t count;
} s_zpair_t;

//  A REP thread: echoes for ever (until the process ends).
static void *
s_zrep_thread (void *arg)
{
    void *sock = arg;
    uint64_t value;
    for (;;) {
        if (zmq_recv (sock, &value, sizeof value, 0) != sizeof value
        ||  zmq_send (sock, &value, sizeof value, 0) != sizeof value)
            tb_die ("zrep: %s", zmq_strerror (zmq_errno ()));
    }
    return NULL;
}

//  role zrep BACKEND K: K REP sockets on threads of their own.
static int
s_role_zrep (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    int pairs = (int) tb_arg (argc, argv, 1, 1);
    for (int i = 0; i < pairs; i++) {
        pthread_t thread;
        pthread_create (&thread, NULL, s_zrep_thread, tb_zmq_connect (ctx, ZMQ_REP, argv [0]));
        pthread_detach (thread);
    }
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line))
        ;
    return 0;
}

static void
s_zreq_once (s_zpair_t *p)
{
    uint64_t echo;
    if (zmq_send (p->sock, &p->count, sizeof p->count, 0) != sizeof p->count
    ||  zmq_recv (p->sock, &echo, sizeof echo, 0) != sizeof echo || echo != p->count)
        tb_die ("zreq: %s", zmq_strerror (zmq_errno ()));
}

static void *
s_zreq_thread (void *arg)
{
    s_zpair_t *p = (s_zpair_t *) arg;
    for (p->count = 0; !atomic_load_explicit (p->stop, memory_order_relaxed); p->count++)
        s_zreq_once (p);
    return NULL;
}

//  role zreq FRONTEND K: K REQ sockets; "run MS" runs a thread on each
//  for MS milliseconds; says "result ROUND_TRIPS NS".
static int
s_role_zreq (int argc, char **argv)
{
    void *ctx = zmq_ctx_new ();
    int pairs = (int) tb_arg (argc, argv, 1, 1);
    static atomic_bool stop;
    static s_zpair_t pair [S_PAIRS_MAX];
    for (int i = 0; i < pairs && i < S_PAIRS_MAX; i++) {
        pair [i] = (s_zpair_t) { .sock = tb_zmq_connect (ctx, ZMQ_REQ, argv [0]), .stop = &stop };
        s_zreq_once (&pair [i]);
    }
    tb_answer ("ready");
    char line [256];
    while (tb_command (line, sizeof line)) {
        int ms;
        if (sscanf (line, "run %d", &ms) != 1)
            tb_die ("zreq: '%s'?", line);
        atomic_store (&stop, false);
        pthread_t threads [S_PAIRS_MAX];
        int64_t start = tb_now_ns ();
        for (int i = 0; i < pairs; i++)
            pthread_create (&threads [i], NULL, s_zreq_thread, &pair [i]);
        s_sleep_ms (ms);
        atomic_store (&stop, true);
        int64_t elapsed = tb_now_ns () - start;
        uint64_t total = 0;
        for (int i = 0; i < pairs; i++) {
            pthread_join (threads [i], NULL);
            total += pair [i].count;
        }
        tb_answer ("result %" PRIu64 " %" PRId64, total, elapsed);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  ask: the driver

typedef struct {
    const char *name;
    int raw;
    int pairs;
    tb_child_t parts [3];               //  broker or proxy, answerer, asker
    uint64_t ops;
} s_ask_series_t;

static void
s_ask_start (s_ask_series_t *s)
{
    char line [512], fe [512], be [512], k [16];
    snprintf (k, sizeof k, "%d", s->pairs);
    if (s->raw) {
        tb_child_start (&s->parts [0], "zproxy", "router", NULL);
        if (sscanf (tb_child_expect (&s->parts [0], "ready", line, sizeof line),
                    "%511s %511s", fe, be) != 2)
            tb_die ("zproxy: '%s'?", line);
        tb_child_start (&s->parts [1], "zrep", be, k, NULL);
        tb_child_expect (&s->parts [1], "ready", line, sizeof line);
        tb_child_start (&s->parts [2], "zreq", fe, k, NULL);
    }
    else {
        tb_child_start (&s->parts [0], "broker", NULL);
        snprintf (fe, sizeof fe, "%s", tb_child_expect (&s->parts [0], "ready", line, sizeof line));
        tb_child_start (&s->parts [1], "ask-serve", fe, k, NULL);
        tb_child_expect (&s->parts [1], "ready", line, sizeof line);
        tb_child_start (&s->parts [2], "ask-client", fe, k, NULL);
    }
    tb_child_expect (&s->parts [2], "ready", line, sizeof line);
}

static void
s_ask (int reps, int window_ms, const char *only)
{
    s_ask_series_t series [] = {
        { .name = "troupe_ask", .pairs = 1 },
        { .name = "zmq_req_rep", .raw = 1, .pairs = 1 },
        { .name = "troupe_ask_8", .pairs = 8 },
        { .name = "zmq_req_rep_8", .raw = 1, .pairs = 8 }
    };
    size_t count = sizeof series / sizeof series [0];
    for (size_t i = 0; i < count; i++)
        if (!only || !strcmp (only, series [i].name))
            s_ask_start (&series [i]);
    for (int round = 0; round <= reps; round++) {
        fprintf (stderr, "broker_ask %d:", round);
        for (size_t i = 0; i < count; i++) {
            s_ask_series_t *s = &series [i];
            if (only && strcmp (only, s->name))
                continue;
            char line [512];
            unsigned long long trips, ns;
            tb_child_say (&s->parts [2], "run %d", round? window_ms: window_ms / 5);
            if (sscanf (tb_child_expect (&s->parts [2], "result", line, sizeof line),
                        "%llu %llu", &trips, &ns) != 2)
                tb_die ("asker: '%s'?", line);
            double rate = (double) trips * 1e9 / (double) ns;
            s->ops += trips;
            if (round)
                tb_sample ("broker_ask", s->name, rate);
            fprintf (stderr, " %s %.0f", s->name, rate);
        }
        fprintf (stderr, " round trips/s\n");
    }
    for (size_t i = 0; i < count; i++) {
        s_ask_series_t *s = &series [i];
        if (!s->ops)
            continue;
        printf ("OPS broker_ask %s %" PRIu64 "\n", s->name, s->ops);
        for (int p = 2; p >= 0; p--)
            tb_child_end (&s->parts [p], (s->raw && p != 2)? 0: 5000);
    }
}

//  --------------------------------------------------------------------------

int
main (int argc, char **argv)
{
    if (argc >= 3 && !strcmp (argv [1], "role")) {
        const char *role = argv [2];
        int rargc = argc - 3;
        char **rargv = argv + 3;
        tr_log_set_level (TR_LOG_ERROR);
        if (!strcmp (role, "broker"))      return tb_role_broker (rargc, rargv);
        if (!strcmp (role, "zproxy"))      return tb_role_zproxy (rargc, rargv);
        if (!strcmp (role, "tell-recv"))   return s_role_tell_recv (rargc, rargv);
        if (!strcmp (role, "tell-send"))   return s_role_tell_send (rargc, rargv);
        if (!strcmp (role, "ztell-recv"))  return s_role_ztell_recv (rargc, rargv);
        if (!strcmp (role, "ztell-send"))  return s_role_ztell_send (rargc, rargv);
        if (!strcmp (role, "ask-serve"))   return s_role_ask_serve (rargc, rargv);
        if (!strcmp (role, "ask-client"))  return s_role_ask_client (rargc, rargv);
        if (!strcmp (role, "zrep"))        return s_role_zrep (rargc, rargv);
        if (!strcmp (role, "zreq"))        return s_role_zreq (rargc, rargv);
        tb_die ("no role '%s'", role);
    }
    if (argc >= 2 && !strcmp (argv [1], "tell"))
        s_tell ((int) tb_arg (argc, argv, 2, 5), (uint64_t) tb_arg (argc, argv, 3, 200000),
                argc > 4? argv [4]: NULL);
    else
    if (argc >= 2 && !strcmp (argv [1], "ask"))
        s_ask ((int) tb_arg (argc, argv, 2, 5), (int) tb_arg (argc, argv, 3, 1000),
               argc > 4? argv [4]: NULL);
    else {
        fprintf (stderr, "usage: tb_broker_tell tell [REPS [MESSAGES [SERIES]]]\n"
                         "       tb_broker_tell ask [REPS [WINDOW_MS [SERIES]]]\n");
        return 2;
    }
    return 0;
}
