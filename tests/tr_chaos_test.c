/*  tr_chaos_test.c - a broker, node processes and a supervisor tree under
    steady load while processes are killed, stopped and restarted at
    random; then every message, ask and scratchpad write is accounted for.
    And a soak: the same load without faults for a long bounded time, with
    the memory and descriptors of every process sampled.

    The parts, all real processes:
      broker  `troupe broker --bind tcp://127.0.0.1:PORT --data DIR
              --fsync always --heartbeat 1s` ($TROUPE_BIN), restarted on
              the same port and folder after each SIGKILL.
      nodes   TROUPE_CHAOS_NODES (default 4, even) processes: this program
              run again with "node". Even-numbered nodes are TELL nodes,
              odd-numbered ASK nodes. Each holds S_ACTORS actors "c.N.K".
              Two sender threads on each TELL node send tells to actors
              of the other TELL nodes; on each ASK node they ask actors of
              the other ASK nodes (timeout S_ASK_MS). The two kinds are
              kept on separate processes so that a node's dead-letter
              counter (tr_node_stats) counts tells only on a TELL node: on
              a node that also answered asks, a reply bounced by the broker
              would be counted there too and the sum could not be exact.
              Every node also writes its scratchpad keys "chaos/N/K" in a
              loop (tr_scratch_put, waiting for each acknowledgement).
      tree    `troupe run TREE --broker ENDPOINT` with TROUPE_CONTROL_DIR a
              private folder: permanent children t.tally (counter),
              t.worker (flaky, failing every 7th message and on "fail"),
              t.poker (a driver asking t.worker) and t.teller (a driver
              telling t.tally).

    Identity. Every message body is one uint: node (8 bits), incarnation
    (16 bits: the node's start count) and a sequence number (40 bits) of
    that incarnation. A node reports on its standard output, which the test
    reads line by line:
      T ID TO RC MS     a tell sent (RC: tr_tell's result; MS: monotonic ms)
      A ID TO RC US MS  an ask that returned (RC, time it took in us)
      H ID / Q ID       a tell / an ask handled by one of its actors
      K KEY VER MS      a scratchpad write acknowledged with version VER
      F KEY RC          a scratchpad write that failed (not acknowledged)
      D N               its node's dead letters so far (every 100 ms)
    The lines are buffered and written every 10 ms by one thread (with one
    write(2) per buffer): a node killed with SIGKILL loses at most its last
    10 ms of reports. What it had handled and not reported then counts as
    lost, and what it had sent and not reported is never counted as sent
    (a report of its handling, from another node, is then accepted only if
    its sender incarnation was killed).

    Faults (seeded: TROUPE_CHAOS_SEED, printed; one at a time, one every 1
    to 3 s): SIGKILL of a node (restarted at once as a new incarnation);
    SIGSTOP of a node for 0.2 to 4 s, about one in four longer than three
    heartbeats (3 s: the broker declares it dead and it comes back);
    SIGKILL of the broker, restarted on the same port and folder 0 to
    1 s later; SIGSTOP of the tree's process; and, as root with `ip netns`,
    a TELL node in a network namespace of its own whose veth link is cut for
    0.5 to 4.1 s (skipped, and said so, otherwise). The heartbeat is the
    default, 1 s: with --fsync always on this machine's disk a single
    fsync has been seen to take over 0.5 s, and a broker stalled in its
    fsyncs for three heartbeats declares every node dead. When the
    broker's log shows a node declared dead that no fault touched, that
    is counted (unplanned_drops) and given a window of its own.

    A fault's window on the nodes it touches (the broker's touches every
    node): from 1 s before it (messages already in flight) until the
    node's first acknowledged scratchpad write after it ended (the node is
    back and has its names registered again: a node registers its names
    before any request it sends after greeting), plus 1 s (bounces still
    on their way). Everything scaled by TROUPE_TEST_SLOWDOWN.

    Stalls of the processes themselves: each node reports when a 10 ms
    sleep of one of its threads lasted over 200 ms (the process did not
    run). An ask that returned late is excused only if its process did
    not run for all its lateness but 0.5 s (counted as
    asks_late_process_stalled); any other late ask fails the test.

    What is checked, exactly:
      tells   Over all TELL nodes' incarnations,
                sent = refused + delivered + dead-lettered + lost
              where sent counts every T line, refused the T lines with an
              error, delivered the distinct ids reported H, dead-lettered
              the sum of the last D of every TELL incarnation, and lost is
              what remains. troupe sends tells at most once, with no
              acknowledgement on the wire: a tell in a process's memory or
              a socket's buffers when that process is killed (the sender,
              the broker, the receiver), or sent by a node the broker has
              taken for dead before the node knows it (a cut link: the
              broker refuses it as from a stranger, TR_EPROTO, and the
              envelope with it), is gone without a trace. A node stopped
              and continued loses next to nothing: the "stall" case below
              checks it. So the check is: (1) every tell sent (TR_OK) outside every window of
              its sender's node, its receiver's node and the broker is
              delivered, exactly once; (2) no id is ever delivered twice,
              nor delivered after tr_tell refused it; (3) dead letters do
              not exceed the tells not delivered (else something was counted
              twice); (4) lost = sent - refused - delivered - dead >= 0, and
              every undelivered tell lies in a window. The lost ones are
              printed; they are the price of at-most-once delivery across a
              crash, not something troupe accepted and then dropped while
              every process lived.
      asks    Every ask returns by its deadline plus S_SLACK_MS (none late),
              answered or failed with an error (answered + failed = sent,
              for the asks whose return was reported); every ask sent
              outside the windows of its two nodes and the broker is
              answered; no ask is handled twice.
      kv      Every acknowledged write (fsync always) is there at the end:
              each key read back has a version at least the highest one
              acknowledged for it.
      tree    At the end `troupe status --json` shows the root and every
              (permanent) child running, within 10 s of asking.

    The stall case: a TELL node stopped for 4 s (past three
    heartbeats) under load, then continued, then the other one: every
    tell delivered or dead-lettered, none lost but a stated residue of at
    most S_STALL_RESIDUE per stop (see test_stall).

    The soak (TROUPE_CHAOS_SOAK): the same processes and load without
    faults for TROUPE_SOAK_SECONDS, sampling every second the resident
    memory (VmRSS) and open descriptors (/proc/PID/fd) of the broker and
    every node. Flat means: over the run's last third, the mean is at most
    10% (memory; and 512 KiB) or 2 descriptors above the mean over its
    middle third, for every process. Every tell and ask of the soak must be
    delivered and answered (no windows).

    Environment: TROUPE_CHAOS_SECONDS (default 20), TROUPE_CHAOS_SEED,
    TROUPE_CHAOS_NODES (default 4), TROUPE_CHAOS_RATE (messages per second
    per sender thread, default 150, divided by TROUPE_TEST_SLOWDOWN),
    TROUPE_CHAOS_FAULTS (the kinds of fault to use, by the names the
    CHAOS line gives them: node_kill,node_stop,broker_kill,tree_stop,
    link_cut; default all), TROUPE_CHAOS_NETNS=0 (no namespace even as
    root), TROUPE_CHAOS_DEBUG (print the faults and what failed),
    TROUPE_SOAK_SECONDS (default 12), TROUPE_CHAOS_SOAK (unset: all
    three tests; 1: the soak only; 0: the stall and chaos tests only;
    anything else: the stall test only).
    Figures on lines starting "STALL", "CHAOS" and "SOAK".
*/

#include "tr_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

#define S_MAX_NODES     16
#define S_MAX_INC       1024
#define S_ACTORS        8
#define S_SENDERS       2
#define S_ASK_MS        2000
#define S_SLACK_MS      500
#define S_KV_KEYS       32
#define S_HEARTBEAT_MS  1000

static int
s_env (const char *name, int fallback)
{
    const char *text = getenv (name);
    int value = text? atoi (text): 0;
    return value > 0? value: fallback;
}

static int64_t
s_now_ms (void)
{
    return tr__now_ns () / 1000000;
}

#define S_ID(node, inc, seq) (((uint64_t) (node) << 56) | ((uint64_t) (inc) << 40) | (uint64_t) (seq))
#define S_ID_NODE(id)        ((int) ((id) >> 56))
#define S_ID_INC(id)         ((int) (((id) >> 40) & 0xffff))
#define S_ID_SEQ(id)         ((uint64_t) ((id) & ((UINT64_C (1) << 40) - 1)))

//  --------------------------------------------------------------------------
//  A node process

static pthread_mutex_t s_out_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_out;
static size_t s_out_len, s_out_room;
static atomic_bool s_sending;          //  senders and writer run
static atomic_bool s_quit;             //  the flusher and stats threads end
static atomic_uint_fast64_t s_seq;
static int s_index, s_inc, s_nodes;

//  Appends a line to the report buffer.
static void
s_report (const char *format, ...)
{
    char line [256];
    va_list args;
    va_start (args, format);
    int n = vsnprintf (line, sizeof line, format, args);
    va_end (args);
    if (n < 0 || n >= (int) sizeof line)
        return;
    pthread_mutex_lock (&s_out_lock);
    if (s_out_len + (size_t) n > s_out_room) {
        s_out_room = 2 * (s_out_len + (size_t) n) + 4096;
        s_out = (char *) realloc (s_out, s_out_room);
    }
    memcpy (s_out + s_out_len, line, (size_t) n);
    s_out_len += (size_t) n;
    pthread_mutex_unlock (&s_out_lock);
}

static void
s_flush (void)
{
    pthread_mutex_lock (&s_out_lock);
    size_t done = 0;
    while (done < s_out_len) {
        ssize_t n = write (STDOUT_FILENO, s_out + done, s_out_len - done);
        if (n <= 0 && errno != EINTR)
            break;
        if (n > 0)
            done += (size_t) n;
    }
    s_out_len = 0;
    pthread_mutex_unlock (&s_out_lock);
}

//  Also watches for the process not being run (a stopped process, a
//  starved machine): a sleep of 10 ms that lasts over 200 ms is reported
//  as "P FROM TO" (monotonic ms), to tell a late ask of troupe's from a
//  process that did not run.
static void *
s_flusher (void *arg)
{
    (void) arg;
    while (!atomic_load (&s_quit)) {
        int64_t before = s_now_ms ();
        usleep (10 * 1000);
        int64_t after = s_now_ms ();
        if (after - before > 200)
            s_report ("P %lld %lld\n", (long long) before, (long long) after);
        s_flush ();
    }
    return NULL;
}

static int
s_actor_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    uint64_t id = tr_test_unpack_uint (tr_msg_body (msg), tr_msg_size (msg));
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        s_report ("Q %llu\n", (unsigned long long) id);
        return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg)) == TR_OK? 0: -1;
    }
    s_report ("H %llu\n", (unsigned long long) id);
    return 0;
}

typedef struct {
    tr_node_t *node;
    uint64_t rng;
    int rate;                           //  messages per second
    pthread_t thread;
} s_sender_t;

static void *
s_send_run (void *arg)
{
    s_sender_t *s = (s_sender_t *) arg;
    bool asks = s_index % 2 == 1;
    int peers = s_nodes / 2;            //  nodes of the same kind
    int64_t period_us = 1000000 / (s->rate > 0? s->rate: 1);
    int64_t next = tr__now_ns () / 1000;
    while (atomic_load (&s_sending)) {
        uint64_t r = tr_test_random (&s->rng);
        int to = (int) (r % (uint64_t) (peers - 1));
        to = 2 * to + (asks? 1: 0);
        if (to >= s_index)
            to += 2;                    //  another node of the same kind
        char name [64];
        snprintf (name, sizeof name, "c.%d.%d", to, (int) ((r >> 20) % S_ACTORS));
        uint64_t id = S_ID (s_index, s_inc, atomic_fetch_add (&s_seq, 1));
        tr_body_t body = tr_test_pack_uint (id);
        int64_t t0 = tr__now_ns ();
        if (asks) {
            tr_msg_t *reply = NULL;
            int rc = tr_ask (s->node, name, body.data, body.size, S_ASK_MS, &reply, NULL);
            int64_t t1 = tr__now_ns ();
            if (rc == TR_OK
            &&  tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply)) != id)
                rc = 1;                 //  a wrong answer: the test fails on it
            tr_msg_destroy (&reply);
            s_report ("A %llu %d %d %lld %lld\n", (unsigned long long) id, to, rc,
                      (long long) ((t1 - t0) / 1000), (long long) (t0 / 1000000));
        }
        else {
            int rc = tr_tell (s->node, name, body.data, body.size, NULL);
            s_report ("T %llu %d %d %lld\n", (unsigned long long) id, to, rc,
                      (long long) (t0 / 1000000));
        }
        next += period_us;
        int64_t now = tr__now_ns () / 1000;
        if (next > now)
            usleep ((useconds_t) (next - now));
        else
        if (now - next > 1000000)
            next = now;                 //  after a long stall, no burst
    }
    return NULL;
}

static void *
s_kv_run (void *arg)
{
    tr_node_t *node = (tr_node_t *) arg;
    uint64_t n = 0;
    while (atomic_load (&s_sending)) {
        char key [64];
        snprintf (key, sizeof key, "chaos/%d/%d", s_index, (int) (n % S_KV_KEYS));
        tr_body_t body = tr_test_pack_uint (S_ID (s_index, s_inc, n));
        uint64_t version = 0;
        int rc = tr_scratch_put (node, key, body.data, body.size, 0, S_ASK_MS, &version);
        if (rc == TR_OK)
            s_report ("K %s %llu %lld\n", key, (unsigned long long) version,
                      (long long) s_now_ms ());
        else
            s_report ("F %s %d\n", key, rc);
        n++;
        usleep (50 * 1000);
    }
    return NULL;
}

static void *
s_stats_run (void *arg)
{
    tr_node_t *node = (tr_node_t *) arg;
    while (!atomic_load (&s_quit)) {
        tr_node_stats_t st;
        tr_node_stats (node, &st);
        s_report ("D %llu\n", (unsigned long long) st.dead_letters);
        usleep (100 * 1000);
    }
    return NULL;
}

//  node INDEX INC NODES ENDPOINT RATE [CURVE_SECRET SERVER_PUBLIC]: says
//  "ready" once a scratchpad write went through (joined, names
//  registered); "go" starts the load, "stop" stops it ("stopped"),
//  "count" reports the dead letters ("counted"), "end" ends it.
static int
s_node_main (int argc, char **argv)
{
    if (argc < 7)
        return 2;
    s_index = atoi (argv [2]);
    s_inc = atoi (argv [3]);
    s_nodes = atoi (argv [4]);
    int rate = atoi (argv [6]);
    char id [32];
    snprintf (id, sizeof id, "chaos-%d", s_index);
    tr_node_opts_t opts = { .broker = argv [5], .node_id = id, .heartbeat_ms = S_HEARTBEAT_MS,
                            .stack_size = 128 * 1024 };
    if (argc >= 9) {
        opts.curve_secret_file = argv [7];
        opts.curve_server_public_file = argv [8];
    }
    tr_node_t *node = NULL;
    if (tr_node_new (&opts, &node) != TR_OK)
        return 1;
    pthread_t flusher, stats;
    pthread_create (&flusher, NULL, s_flusher, NULL);
    pthread_create (&stats, NULL, s_stats_run, node);
    tr_behaviour_t behaviour = { .handle = s_actor_handle };
    for (int k = 0; k < S_ACTORS; k++) {
        char name [64];
        snprintf (name, sizeof name, "c.%d.%d", s_index, k);
        if (tr_spawn (node, name, &behaviour, NULL, NULL, NULL) != TR_OK)
            return 1;
    }
    //  Joined, with the names registered: a write acknowledged.
    char key [64];
    snprintf (key, sizeof key, "chaos/ready/%d", s_index);
    tr_body_t body = tr_test_pack_uint ((uint64_t) s_inc);
    uint64_t version = 0;
    while (tr_scratch_put (node, key, body.data, body.size, 0, 1000, &version) != TR_OK)
        usleep (20 * 1000);
    s_report ("K %s %llu %lld\nready\n", key, (unsigned long long) version,
              (long long) s_now_ms ());
    s_flush ();
    char line [64];
    if (!fgets (line, sizeof line, stdin) || strncmp (line, "go", 2) != 0)
        return 1;
    atomic_store (&s_sending, true);
    s_sender_t senders [S_SENDERS];
    for (int t = 0; t < S_SENDERS; t++) {
        senders [t] = (s_sender_t) { .node = node, .rate = rate,
            .rng = 0x9e3779b97f4a7c15ull * (uint64_t) (s_index * 977 + s_inc * 131 + t + 1) };
        pthread_create (&senders [t].thread, NULL, s_send_run, &senders [t]);
    }
    pthread_t kv;
    pthread_create (&kv, NULL, s_kv_run, node);
    if (!fgets (line, sizeof line, stdin))
        return 1;
    atomic_store (&s_sending, false);
    for (int t = 0; t < S_SENDERS; t++)
        pthread_join (senders [t].thread, NULL);
    pthread_join (kv, NULL);
    s_report ("stopped\n");
    if (!fgets (line, sizeof line, stdin))
        return 1;
    atomic_store (&s_quit, true);
    pthread_join (stats, NULL);
    tr_node_stats_t st;
    tr_node_stats (node, &st);
    s_report ("D %llu\ncounted\n", (unsigned long long) st.dead_letters);
    pthread_join (flusher, NULL);
    s_flush ();
    if (!fgets (line, sizeof line, stdin))
        return 1;
    tr_node_destroy (&node);
    free (s_out);
    return 0;
}

//  --------------------------------------------------------------------------
//  The driver's records

//  One message, by its sequence number within its incarnation.
typedef struct {
    int32_t t_ms;                       //  sent, ms since the run began
    int8_t to;                          //  the receiving node
    int8_t rc;                          //  0 sent, < 0 the error, 1 a wrong answer
    uint8_t reported;                   //  the sender reported it (T or A)
    uint8_t handled;                    //  H or Q reports
} s_rec_t;

typedef struct {
    s_rec_t *recs;
    size_t size;                        //  records that exist
    uint64_t dead;                      //  last D
    bool killed;                        //  ended by SIGKILL
    bool started;
} s_stream_t;

typedef struct {
    char key [64];
    uint64_t version;                   //  the highest acknowledged
} s_key_t;

//  F_STALL is not made by the test: the broker declared a node dead that
//  no fault touched (found in its log afterwards: a process or the
//  machine stalled, such as the broker in a slow fsync).
enum { F_NODE_KILL, F_NODE_STOP, F_BROKER_KILL, F_TREE_STOP, F_LINK_CUT, F_STALL, F_KINDS };

typedef struct {
    int kind;
    int node;                           //  the node, -1: every node
    int64_t start_ms, end_ms;           //  absolute monotonic ms
    int64_t back_ms;                    //  the nodes' first write after, 0: not yet
} s_fault_t;

static const char *s_fault_names [F_KINDS] = {
    "node_kill", "node_stop", "broker_kill", "tree_stop", "link_cut", "stall"
};

#define S_MAX_FAULTS 4096

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_stream_t s_streams [S_MAX_NODES][S_MAX_INC];
static s_key_t s_keys [S_MAX_NODES * S_KV_KEYS + S_MAX_NODES];
static size_t s_key_count;
//  Acknowledged writes per node, with their times (to find when a node
//  was back after a fault).
static int64_t *s_ack_ms [S_MAX_NODES];
static size_t s_ack_count [S_MAX_NODES], s_ack_room [S_MAX_NODES];
static s_fault_t s_faults [S_MAX_FAULTS];
static int s_fault_count;
static int64_t s_t0;                    //  the run's start, monotonic ms
static uint64_t s_kv_acked, s_kv_failed;
static uint64_t s_asks, s_asks_ok, s_asks_failed, s_asks_late, s_asks_wrong;
static int64_t s_ask_max_us;
static uint64_t s_dup;                  //  handled twice
static uint64_t s_bad_lines;
//  Times a node process did not run (P reports), per node.
typedef struct {
    int64_t from, to;
} s_span_t;
static s_span_t *s_stalls [S_MAX_NODES];
static size_t s_stall_count [S_MAX_NODES], s_stall_room [S_MAX_NODES];
//  Late asks: when they were due and when they returned, to be judged at
//  the end against the stalls of their process.
static s_span_t s_late [4096];
static int s_late_node [4096];
static size_t s_late_count;

static s_rec_t *
s_rec (uint64_t id, bool grow)
{
    int node = S_ID_NODE (id), inc = S_ID_INC (id);
    uint64_t seq = S_ID_SEQ (id);
    if (node >= S_MAX_NODES || inc >= S_MAX_INC)
        return NULL;
    s_stream_t *s = &s_streams [node][inc];
    if (seq >= s->size) {
        if (!grow || seq > 100000000)
            return NULL;
        size_t room = s->size? s->size: 4096;
        while (room <= seq)
            room *= 2;
        s->recs = (s_rec_t *) realloc (s->recs, room * sizeof (s_rec_t));
        memset (s->recs + s->size, 0, (room - s->size) * sizeof (s_rec_t));
        s->size = room;
    }
    return &s->recs [seq];
}

static void
s_key_ack (const char *key, uint64_t version)
{
    for (size_t i = 0; i < s_key_count; i++)
        if (strcmp (s_keys [i].key, key) == 0) {
            if (version > s_keys [i].version)
                s_keys [i].version = version;
            return;
        }
    if (s_key_count < sizeof s_keys / sizeof s_keys [0]) {
        snprintf (s_keys [s_key_count].key, sizeof s_keys [0].key, "%s", key);
        s_keys [s_key_count++].version = version;
    }
}

//  One report line of node `node`, incarnation `inc`.
static void
s_line (int node, int inc, const char *line)
{
    unsigned long long id, ver;
    int to, rc;
    long long us, ms;
    char key [64];
    pthread_mutex_lock (&s_lock);
    if (sscanf (line, "T %llu %d %d %lld", &id, &to, &rc, &ms) == 4) {
        s_rec_t *r = s_rec (id, true);
        if (r) {
            r->t_ms = (int32_t) (ms - s_t0);
            r->to = (int8_t) to;
            r->rc = (int8_t) (rc < -100? -100: rc);
            r->reported = 1;
        }
    }
    else
    if (sscanf (line, "A %llu %d %d %lld %lld", &id, &to, &rc, &us, &ms) == 5) {
        s_rec_t *r = s_rec (id, true);
        if (r) {
            r->t_ms = (int32_t) (ms - s_t0);
            r->to = (int8_t) to;
            r->rc = (int8_t) (rc < -100? -100: rc);
            r->reported = 1;
        }
        s_asks++;
        if (rc == TR_OK)
            s_asks_ok++;
        else
        if (rc == 1)
            s_asks_wrong++;
        else
            s_asks_failed++;
        if (us > (long long) (S_ASK_MS + S_SLACK_MS * tr_test_slowdown ()) * 1000) {
            s_asks_late++;
            if (s_late_count < 4096) {
                s_late_node [s_late_count] = node;
                s_late [s_late_count++] = (s_span_t) { ms + S_ASK_MS, ms + us / 1000 };
            }
            if (getenv ("TROUPE_CHAOS_DEBUG"))
                fprintf (stderr, "chaos: ask %llx from node %d sent at %lld ms took %lld ms: %s\n",
                         id, node, ms - s_t0, us / 1000, tr_errname (rc));
        }
        if (us > s_ask_max_us)
            s_ask_max_us = us;
    }
    else
    if ((line [0] == 'H' || line [0] == 'Q') && sscanf (line + 1, " %llu", &id) == 1) {
        s_rec_t *r = s_rec (id, true);
        if (r && r->handled++)
            s_dup++;
    }
    else
    if (sscanf (line, "K %63s %llu %lld", key, &ver, &ms) == 3) {
        if (strncmp (key, "chaos/ready/", 12) != 0) {
            s_key_ack (key, ver);
            s_kv_acked++;
        }
        if (s_ack_count [node] == s_ack_room [node]) {
            s_ack_room [node] = s_ack_room [node]? 2 * s_ack_room [node]: 1024;
            s_ack_ms [node] = (int64_t *) realloc (s_ack_ms [node],
                                                   s_ack_room [node] * sizeof (int64_t));
        }
        s_ack_ms [node][s_ack_count [node]++] = ms;
    }
    else
    if (sscanf (line, "F %63s %d", key, &rc) == 2)
        s_kv_failed++;
    else
    if (sscanf (line, "P %lld %lld", &us, &ms) == 2) {
        if (s_stall_count [node] == s_stall_room [node]) {
            s_stall_room [node] = s_stall_room [node]? 2 * s_stall_room [node]: 64;
            s_stalls [node] = (s_span_t *) realloc (s_stalls [node],
                                                    s_stall_room [node] * sizeof (s_span_t));
        }
        s_stalls [node][s_stall_count [node]++] = (s_span_t) { us, ms };
    }
    else
    if (sscanf (line, "D %llu", &id) == 1)
        s_streams [node][inc].dead = id;
    else
    if (strcmp (line, "ready") && strcmp (line, "stopped") && strcmp (line, "counted"))
        s_bad_lines++;
    pthread_mutex_unlock (&s_lock);
}

//  --------------------------------------------------------------------------
//  The driver's processes

typedef struct {
    pid_t pid;
    int inc;
    FILE *in;                           //  its standard input
    int out;                            //  its standard output (read end)
    pthread_t reader;
    bool reading;
    //  Lines the test waits for, counted by the reader.
    atomic_int ready, stopped, counted;
} s_node_t;

static s_node_t s_node [S_MAX_NODES];
static int s_node_count;
static pid_t s_broker_pid, s_tree_pid;
static char s_endpoint [128];
static char s_work [256];               //  the run's folder
static char s_exe [1024];               //  this program
static int s_rate;
static bool s_curve;                    //  nodes use CURVE (the netns part)
static char s_netns [64];               //  the namespace of the last node, "": none

static void *
s_reader (void *arg)
{
    s_node_t *n = (s_node_t *) arg;
    int index = (int) (n - s_node), inc = n->inc;
    FILE *out = fdopen (n->out, "r");
    char line [512];
    while (fgets (line, sizeof line, out)) {
        line [strcspn (line, "\n")] = 0;
        if (strcmp (line, "ready") == 0)
            atomic_store (&n->ready, 1);
        else
        if (strcmp (line, "stopped") == 0)
            atomic_store (&n->stopped, 1);
        else
        if (strcmp (line, "counted") == 0)
            atomic_store (&n->counted, 1);
        s_line (index, inc, line);
    }
    fclose (out);
    return NULL;
}

static void
s_kill_all (void)
{
    for (int i = 0; i < s_node_count; i++)
        if (s_node [i].pid > 0) {
            kill (s_node [i].pid, SIGCONT);
            kill (s_node [i].pid, SIGKILL);
        }
    if (s_broker_pid > 0)
        kill (s_broker_pid, SIGKILL);
    if (s_tree_pid > 0) {
        kill (s_tree_pid, SIGCONT);
        kill (s_tree_pid, SIGTERM);
    }
    if (s_netns [0]) {
        char command [256];
        snprintf (command, sizeof command, "ip netns del %s 2>/dev/null; "
                  "ip link del %s-h 2>/dev/null", s_netns, s_netns);
        if (system (command)) {}
    }
}

//  After a test that passed: the namespace goes (also done at exit, for
//  a test that failed) and the run's folder (kept after a failure, for
//  its broker log and data).
static void
s_cleanup (void)
{
    char command [600];
    if (s_netns [0]) {
        snprintf (command, sizeof command, "ip netns del %s 2>/dev/null", s_netns);
        if (system (command)) {}
        s_netns [0] = 0;
    }
    snprintf (command, sizeof command, "rm -rf '%s'", s_work);
    if (s_work [0] && system (command)) {}
}

//  A free TCP port on 127.0.0.1 (the broker binds it again at each start).
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (0x7f000001) };
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname (fd, (struct sockaddr *) &addr, &len);
    close (fd);
    return ntohs (addr.sin_port);
}

//  Starts the broker on s_endpoint and s_work/data; waits until it says
//  it listens.
static void
s_broker_start (void)
{
    const char *bin = getenv ("TROUPE_BIN");
    char data [300], log [300], keys [300], allow [300];
    snprintf (data, sizeof data, "%s/data", s_work);
    snprintf (log, sizeof log, "%s/broker.log", s_work);
    snprintf (keys, sizeof keys, "%s/keys/broker.secret", s_work);
    snprintf (allow, sizeof allow, "%s/allow", s_work);
    int out [2];
    ck_assert_int_eq (pipe2 (out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, out [1], 1);
    posix_spawn_file_actions_addopen (&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addclose (&actions, out [0]);
    char hb [32];
    snprintf (hb, sizeof hb, "%dms", S_HEARTBEAT_MS);
    char *argv [16] = { (char *) bin, "broker", "--bind", s_endpoint, "--data", data,
                        "--fsync", "always", "--heartbeat", hb, NULL };
    if (s_curve) {
        argv [10] = "--curve";
        argv [11] = keys;
        argv [12] = "--allow";
        argv [13] = allow;
        argv [14] = NULL;
    }
    ck_assert_int_eq (posix_spawn (&s_broker_pid, bin, &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (out [1]);
    char line [512];
    size_t len = 0;
    while (len + 1 < sizeof line) {
        ssize_t n = read (out [0], line + len, 1);
        if (n <= 0 || line [len] == '\n')
            break;
        len++;
    }
    line [len] = 0;
    close (out [0]);
    ck_assert_msg (strstr (line, "listening on "), "the broker said '%s' (log: %s)", line, log);
}

static void
s_node_start (int index)
{
    s_node_t *n = &s_node [index];
    int to [2], from [2];
    ck_assert_int_eq (pipe2 (to, O_CLOEXEC), 0);
    ck_assert_int_eq (pipe2 (from, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, to [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, from [1], 1);
    posix_spawn_file_actions_addclose (&actions, to [1]);
    posix_spawn_file_actions_addclose (&actions, from [0]);
    char args [4][32], secret [300], server [300];
    snprintf (args [0], 32, "%d", index);
    snprintf (args [1], 32, "%d", n->inc);
    snprintf (args [2], 32, "%d", s_node_count);
    snprintf (args [3], 32, "%d", s_rate);
    snprintf (secret, sizeof secret, "%s/keys/node.secret", s_work);
    snprintf (server, sizeof server, "%s/keys/broker.public", s_work);
    char *argv [16];
    int a = 0;
    bool in_ns = s_netns [0] && index == s_node_count - 2;
    if (in_ns) {
        argv [a++] = "/usr/sbin/ip";
        argv [a++] = "netns";
        argv [a++] = "exec";
        argv [a++] = s_netns;
    }
    argv [a++] = s_exe;
    argv [a++] = "node";
    for (int i = 0; i < 2; i++)
        argv [a++] = args [i];
    argv [a++] = args [2];
    argv [a++] = s_endpoint;
    argv [a++] = args [3];
    if (s_curve) {
        argv [a++] = secret;
        argv [a++] = server;
    }
    argv [a] = NULL;
    ck_assert_int_eq (posix_spawn (&n->pid, argv [0], &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (to [0]);
    close (from [1]);
    n->in = fdopen (to [1], "w");
    n->out = from [0];
    atomic_store (&n->ready, 0);
    atomic_store (&n->stopped, 0);
    atomic_store (&n->counted, 0);
    pthread_mutex_lock (&s_lock);
    s_streams [index][n->inc].started = true;
    pthread_mutex_unlock (&s_lock);
    ck_assert_int_eq (pthread_create (&n->reader, NULL, s_reader, n), 0);
    n->reading = true;
}

static void
s_node_say (int index, const char *word)
{
    fprintf (s_node [index].in, "%s\n", word);
    fflush (s_node [index].in);
}

static bool
s_wait_flag (atomic_int *flag, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (!atomic_load (flag))
        if (s_now_ms () > deadline)
            return false;
        else
            usleep (5000);
    return true;
}

//  Waits for a node process to end and its reader to finish.
static int
s_node_reap (int index)
{
    s_node_t *n = &s_node [index];
    int status = 0;
    waitpid (n->pid, &status, 0);
    n->pid = 0;
    if (n->in)
        fclose (n->in);
    n->in = NULL;
    if (n->reading)
        pthread_join (n->reader, NULL);
    n->reading = false;
    return status;
}

static void
s_tree_start (void)
{
    const char *bin = getenv ("TROUPE_BIN");
    char tree [300], log [300], ctl [300];
    snprintf (tree, sizeof tree, "%s/tree.yaml", s_work);
    snprintf (log, sizeof log, "%s/tree.log", s_work);
    snprintf (ctl, sizeof ctl, "%s/ctl", s_work);
    FILE *file = fopen (tree, "w");
    ck_assert_ptr_nonnull (file);
    fprintf (file,
        "name: chaostree\n"
        "intensity: {max_restarts: 100000, period: 10s}\n"
        "defaults:\n"
        "  backoff: {min: 10ms, max: 50ms}\n"
        "children:\n"
        "  - {name: t.tally, actor: counter, restart: permanent}\n"
        "  - name: t.worker\n"
        "    actor: flaky\n"
        "    restart: permanent\n"
        "    params: {fail_every: 7}\n"
        "    breaker: {failures: 3, reset_timeout: 100ms, max_reset_timeout: 400ms}\n"
        "  - name: t.poker\n"
        "    actor: driver\n"
        "    restart: permanent\n"
        "    params: {target: t.worker, every: 100ms, script: [hello, hello, fail], timeout: 500ms}\n"
        "  - name: t.teller\n"
        "    actor: driver\n"
        "    restart: permanent\n"
        "    params: {target: t.tally, every: 50ms, script: [one], ask: false}\n");
    fclose (file);
    mkdir (ctl, 0700);
    setenv ("TROUPE_CONTROL_DIR", ctl, 1);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2 (&actions, 1, 2);
    char secret [300], server [300];
    snprintf (secret, sizeof secret, "%s/keys/node.secret", s_work);
    snprintf (server, sizeof server, "%s/keys/broker.public", s_work);
    char *argv [] = { (char *) bin, "run", tree, "--broker", s_endpoint, NULL };
    if (s_curve) {
        setenv ("TROUPE_CURVE_SECRET", secret, 1);
        setenv ("TROUPE_SERVER_KEY", server, 1);
    }
    ck_assert_int_eq (posix_spawn (&s_tree_pid, bin, &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
}

//  Runs a command, returns its standard output (malloc'd) and sets *rc.
static char *
s_capture (const char *command, int *rc)
{
    FILE *pipe = popen (command, "r");
    ck_assert_ptr_nonnull (pipe);
    size_t len = 0, room = 4096;
    char *text = (char *) malloc (room);
    size_t n;
    while ((n = fread (text + len, 1, room - len - 1, pipe)) > 0) {
        len += n;
        if (len + 1 == room)
            text = (char *) realloc (text, room *= 2);
    }
    text [len] = 0;
    int status = pclose (pipe);
    *rc = WIFEXITED (status)? WEXITSTATUS (status): -1;
    return text;
}

//  The tree's status: "RUNNING/CHILDREN RESTARTS" of its children, the
//  root included; rc 0 when every child and the root are running.
static int
s_tree_status (int *running, int *children, int *restarts)
{
    const char *bin = getenv ("TROUPE_BIN");
    char command [1024];
    snprintf (command, sizeof command,
              "'%s' status --json 2>/dev/null | /usr/bin/python3 -c '"
              "import json, sys\n"
              "t = json.load(sys.stdin)\n"
              "kids = t[\"children\"]\n"
              "up = sum(1 for c in kids if c[\"state\"] == \"running\")\n"
              "print(up, len(kids), sum(c[\"restarts\"] for c in kids), t[\"state\"])'",
              bin);
    int rc;
    char *out = s_capture (command, &rc);
    char state [32] = "";
    int ok = sscanf (out, "%d %d %d %31s", running, children, restarts, state) == 4
          && strcmp (state, "running") == 0 && *running == *children? 0: -1;
    free (out);
    return ok;
}

//  The tree's status until every child runs (a flaky one may be between
//  restarts at any one moment), for up to 10 s.
static int
s_tree_wait (int *running, int *children, int *restarts)
{
    int rc;
    int64_t deadline = s_now_ms () + 10000 * tr_test_slowdown ();
    while ((rc = s_tree_status (running, children, restarts)) != 0 && s_now_ms () < deadline)
        usleep (50 * 1000);
    return rc;
}

//  --------------------------------------------------------------------------
//  Samples (the soak)

static long
s_rss_kb (pid_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    long kb = 0;
    while (file && fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (file)
        fclose (file);
    return kb;
}

static long
s_fds (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/fd", (int) pid);
    DIR *dir = opendir (path);
    long n = 0;
    struct dirent *entry;
    while (dir && (entry = readdir (dir)))
        if (entry->d_name [0] != '.')
            n++;
    if (dir)
        closedir (dir);
    return n;
}

//  --------------------------------------------------------------------------
//  Setup and the end of a run, shared by both tests

static void
s_setup (int nodes)
{
    signal (SIGPIPE, SIG_IGN);
    atexit (s_kill_all);
    const char *bin = getenv ("TROUPE_BIN");
    ck_assert_msg (bin && *bin, "TROUPE_BIN must name the troupe program");
    ssize_t len = readlink ("/proc/self/exe", s_exe, sizeof s_exe - 1);
    ck_assert_int_gt (len, 0);
    s_exe [len] = 0;
    if (!s_work [0]) {
        snprintf (s_work, sizeof s_work, "/tmp/tr_chaos_test.XXXXXX");
        ck_assert_ptr_nonnull (mkdtemp (s_work));
    }
    char data [300];
    snprintf (data, sizeof data, "%s/data", s_work);
    ck_assert_int_eq (mkdir (data, 0700), 0);
    if (!s_endpoint [0])
        snprintf (s_endpoint, sizeof s_endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    printf ("chaos: work folder %s (kept if the test fails)\n", s_work);
    fflush (stdout);
    s_t0 = s_now_ms ();
    s_broker_start ();
    s_node_count = nodes;
    for (int i = 0; i < nodes; i++)
        s_node_start (i);
    for (int i = 0; i < nodes; i++)
        ck_assert_msg (s_wait_flag (&s_node [i].ready, 30000 * tr_test_slowdown ()),
                       "node %d never joined the broker", i);
    s_tree_start ();
}

//  Stops the load, lets what is on its way arrive, and reads the last
//  counts; ends every process. Returns the broker's exit status.
static void
s_finish (void)
{
    for (int i = 0; i < s_node_count; i++)
        s_node_say (i, "stop");
    for (int i = 0; i < s_node_count; i++)
        ck_assert_msg (s_wait_flag (&s_node [i].stopped, 30000 * tr_test_slowdown ()),
                       "node %d did not stop its load", i);
    //  What is in flight settles: no handling reported for 1.5 s.
    uint64_t last = UINT64_MAX;
    for (;;) {
        usleep ((useconds_t) (1500 * 1000 * tr_test_slowdown ()));
        uint64_t handled = 0;
        pthread_mutex_lock (&s_lock);
        for (int i = 0; i < s_node_count; i++)
            for (int e = 0; e < S_MAX_INC; e++)
                for (size_t q = 0; q < s_streams [i][e].size; q++)
                    handled += s_streams [i][e].recs [q].handled;
        pthread_mutex_unlock (&s_lock);
        if (handled == last)
            break;
        last = handled;
    }
    for (int i = 0; i < s_node_count; i++)
        s_node_say (i, "count");
    for (int i = 0; i < s_node_count; i++)
        ck_assert_msg (s_wait_flag (&s_node [i].counted, 30000 * tr_test_slowdown ()),
                       "node %d did not count", i);
    for (int i = 0; i < s_node_count; i++)
        s_node_say (i, "end");
    for (int i = 0; i < s_node_count; i++) {
        int status = s_node_reap (i);
        ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                       "node %d ended with status %d", i, status);
    }
}

static void
s_stop_tree_and_broker (void)
{
    if (s_tree_pid > 0) {
        kill (s_tree_pid, SIGTERM);
        int status;
        waitpid (s_tree_pid, &status, 0);
        s_tree_pid = 0;
        ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                       "troupe run ended with status %d", status);
    }
    kill (s_broker_pid, SIGTERM);
    int status;
    waitpid (s_broker_pid, &status, 0);
    s_broker_pid = 0;
    ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                   "the broker ended with status %d", status);
}

//  Reads every key acknowledged back from the broker through a node of
//  this process. Returns how many are missing or older than acknowledged.
static uint64_t
s_kv_check (uint64_t *keys_p)
{
    tr_node_opts_t opts = { .broker = s_endpoint, .node_id = "chaos-check",
                            .heartbeat_ms = S_HEARTBEAT_MS };
    char secret [300], server [300];
    snprintf (secret, sizeof secret, "%s/keys/node.secret", s_work);
    snprintf (server, sizeof server, "%s/keys/broker.public", s_work);
    if (s_curve) {
        opts.curve_secret_file = secret;
        opts.curve_server_public_file = server;
    }
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (&opts, &node), TR_OK);
    uint64_t missing = 0;
    for (size_t i = 0; i < s_key_count; i++) {
        tr_scratch_value_t value = { 0 };
        int rc;
        int64_t deadline = s_now_ms () + 20000 * tr_test_slowdown ();
        while ((rc = tr_scratch_get (node, s_keys [i].key, 2000, &value)) == TR_ETIMEDOUT
               && s_now_ms () < deadline)
            ;
        if (rc != TR_OK || value.version < s_keys [i].version) {
            fprintf (stderr, "chaos: key %s: %s, version %llu, acknowledged %llu\n",
                     s_keys [i].key, tr_errname (rc), (unsigned long long) value.version,
                     (unsigned long long) s_keys [i].version);
            missing++;
        }
        tr_scratch_value_free (&value);
    }
    tr_node_destroy (&node);
    *keys_p = s_key_count;
    return missing;
}

static void s_fault_add (int kind, int node, int64_t start, int64_t end);

//  Is the message (sent at t_ms from node `from` to node `to`) inside the
//  window of a fault that touches one of them? Returns the fault's index
//  plus 1, or 0.
static int
s_in_window (int64_t t_abs, int from, int to)
{
    int64_t before = 1000 * tr_test_slowdown (), after = 1000 * tr_test_slowdown ();
    for (int f = 0; f < s_fault_count; f++) {
        s_fault_t *fault = &s_faults [f];
        if (fault->kind == F_TREE_STOP
        ||  (fault->node >= 0 && fault->node != from && fault->node != to))
            continue;
        int64_t end = fault->back_ms? fault->back_ms: INT64_MAX / 2;
        if (t_abs >= fault->start_ms - before && t_abs <= end + after)
            return f + 1;
    }
    return 0;
}

//  When each fault was over: the first write acknowledged, after the
//  fault ended, on every node it touched.
static void
s_fault_ends (void)
{
    for (int f = 0; f < s_fault_count; f++) {
        s_fault_t *fault = &s_faults [f];
        if (fault->kind == F_TREE_STOP) {
            fault->back_ms = fault->end_ms;
            continue;
        }
        int64_t back = 0;
        bool all = true;
        for (int i = 0; i < s_node_count; i++) {
            if (fault->node >= 0 && fault->node != i)
                continue;
            int64_t first = 0;
            for (size_t k = 0; k < s_ack_count [i]; k++)
                if (s_ack_ms [i][k] >= fault->end_ms) {
                    first = s_ack_ms [i][k];
                    break;
                }
            if (!first)
                all = false;
            else
            if (first > back)
                back = first;
        }
        fault->back_ms = all? back: 0;
    }
}

typedef struct {
    uint64_t tells, refused, delivered, dead, undelivered, undelivered_calm, lost;
    uint64_t asks_calm, asks_calm_failed;
    uint64_t asks_late_stalled;         //  late while their process did not run
    //  Tells not delivered in a fault's window, by its kind and by where
    //  it struck: 0 the sender's node, 1 the receiver's, 2 the broker.
    uint64_t undelivered_by [F_KINDS][3];
    uint64_t handled_unsent, handled_unsent_bad, handled_refused;
} s_tally_t;

static void
s_account (s_tally_t *t)
{
    memset (t, 0, sizeof *t);
    s_fault_ends ();
    for (int f = 0; getenv ("TROUPE_CHAOS_DEBUG") && f < s_fault_count; f++)
        fprintf (stderr, "chaos: fault %s on %d: %lld to %lld ms, back at %lld ms\n",
                 s_fault_names [s_faults [f].kind], s_faults [f].node,
                 (long long) (s_faults [f].start_ms - s_t0),
                 (long long) (s_faults [f].end_ms - s_t0),
                 (long long) (s_faults [f].back_ms? s_faults [f].back_ms - s_t0: -1));
    for (int i = 0; i < s_node_count; i++)
        for (int e = 0; e < S_MAX_INC; e++) {
            s_stream_t *s = &s_streams [i][e];
            if (i % 2 == 0)
                t->dead += s->dead;
            for (size_t q = 0; q < s->size; q++) {
                s_rec_t *r = &s->recs [q];
                if (!r->reported) {
                    if (r->handled) {
                        t->handled_unsent++;
                        if (!s->killed)
                            t->handled_unsent_bad++;
                    }
                    continue;
                }
                int window = s_in_window (s_t0 + r->t_ms, i, r->to);
                if (i % 2 == 1) {
                    //  An ask.
                    if (!window) {
                        t->asks_calm++;
                        if (r->rc != TR_OK) {
                            t->asks_calm_failed++;
                            if (getenv ("TROUPE_CHAOS_DEBUG") && t->asks_calm_failed < 20)
                                fprintf (stderr, "chaos: ask %d.%d.%zu to node %d at %d ms: "
                                         "%s\n", i, e, q, r->to, r->t_ms, tr_errname (r->rc));
                        }
                    }
                    continue;
                }
                t->tells++;
                if (r->rc != TR_OK) {
                    t->refused++;
                    if (r->handled)
                        t->handled_refused++;
                    continue;
                }
                if (r->handled) {
                    t->delivered++;
                    continue;
                }
                t->undelivered++;
                if (window) {
                    s_fault_t *fault = &s_faults [window - 1];
                    int where = fault->node < 0? 2: fault->node == i? 0: 1;
                    t->undelivered_by [fault->kind][where]++;
                }
                else {
                    t->undelivered_calm++;
                    if (getenv ("TROUPE_CHAOS_DEBUG") && t->undelivered_calm < 20)
                        fprintf (stderr, "chaos: tell %d.%d.%zu to node %d at %d ms not "
                                 "delivered\n", i, e, q, r->to, r->t_ms);
                }
            }
        }
    t->lost = t->undelivered >= t->dead? t->undelivered - t->dead: 0;
    //  A late ask whose process did not run for (nearly) all of its
    //  lateness: the machine's, not troupe's.
    for (size_t k = 0; k < s_late_count; k++) {
        s_span_t late = s_late [k];
        int node = s_late_node [k];
        for (size_t j = 0; j < s_stall_count [node]; j++) {
            s_span_t st = s_stalls [node][j];
            int64_t from = st.from > late.from? st.from: late.from;
            int64_t to = st.to < late.to? st.to: late.to;
            if (to - from >= late.to - late.from - S_SLACK_MS) {
                t->asks_late_stalled++;
                break;
            }
        }
    }
}

//  Nodes the broker declared dead (silent for three heartbeats) that no
//  fault of the test touched then: each becomes a F_STALL fault, counted
//  and printed. Its window starts when the silence did (three heartbeats
//  before), less the usual second.
static int
s_unplanned_drops (int64_t wall0_ms, int64_t mono0_ms)
{
    char path [300], line [1200];
    snprintf (path, sizeof path, "%s/broker.log", s_work);
    FILE *file = fopen (path, "r");
    int found = 0;
    s_fault_ends ();
    int injected = s_fault_count;
    while (file && fgets (line, sizeof line, file)) {
        int hh, mm, ss, ms, node;
        const char *at = strstr (line, "left (silent for three heartbeats)");
        const char *id = strstr (line, "node 'chaos-");
        if (!at || !id || sscanf (line, "%d:%d:%d.%d", &hh, &mm, &ss, &ms) != 4
        ||  sscanf (id, "node 'chaos-%d'", &node) != 1 || node < 0 || node >= s_node_count)
            continue;
        int64_t wall = ((hh * 60 + mm) * 60 + ss) * 1000LL + ms;
        int64_t mono = mono0_ms + (wall - wall0_ms);
        bool planned = false;
        for (int f = 0; f < injected && !planned; f++) {
            s_fault_t *fault = &s_faults [f];
            int64_t end = fault->back_ms? fault->back_ms: INT64_MAX / 2;
            if (fault->kind != F_TREE_STOP && (fault->node < 0 || fault->node == node)
            &&  mono >= fault->start_ms - 1000 && mono <= end + 4 * S_HEARTBEAT_MS)
                planned = true;
        }
        if (!planned) {
            s_fault_add (F_STALL, node, mono - 3 * S_HEARTBEAT_MS, mono);
            found++;
            if (getenv ("TROUPE_CHAOS_DEBUG"))
                fprintf (stderr, "chaos: not made by the test: %s", line);
        }
    }
    if (file)
        fclose (file);
    return found;
}

//  Milliseconds since midnight, local time (as the log writes them).
static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &ts);
    localtime_r (&ts.tv_sec, &tm);
    return ((tm.tm_hour * 60 + tm.tm_min) * 60 + tm.tm_sec) * 1000LL + ts.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  Network namespaces (root only): the last TELL node (NODES - 2) runs in
//  a namespace of its own, joined to this one by a veth pair, so that the
//  cuts test the accounting of tells; the broker listens on this end's
//  address (with CURVE, as beyond loopback it must).

static bool
s_netns_setup (void)
{
    if (geteuid () != 0 || access ("/usr/sbin/ip", X_OK) != 0)
        return false;
    if (getenv ("TROUPE_CHAOS_NETNS") && strcmp (getenv ("TROUPE_CHAOS_NETNS"), "0") == 0)
        return false;
    int x = (int) (getpid () % 200) + 20;
    snprintf (s_netns, sizeof s_netns, "trc%d", (int) getpid ());
    char command [4096];
    snprintf (command, sizeof command,
              "ip netns add %1$s && ip link add %1$s-h type veth peer name %1$s-n netns %1$s"
              " && ip addr add 10.198.%2$d.1/24 dev %1$s-h && ip link set %1$s-h up"
              " && ip -n %1$s addr add 10.198.%2$d.2/24 dev %1$s-n"
              " && ip -n %1$s link set %1$s-n up && ip -n %1$s link set lo up",
              s_netns, x);
    if (system (command) != 0) {
        fprintf (stderr, "chaos: cannot make a network namespace; that part is skipped\n");
        snprintf (command, sizeof command, "ip netns del %s 2>/dev/null", s_netns);
        if (system (command)) {}
        s_netns [0] = 0;
        return false;
    }
    snprintf (s_endpoint, sizeof s_endpoint, "tcp://10.198.%d.1:%d", x, s_free_port ());
    //  Keys: the broker's, and one for every node (and the tree).
    const char *bin = getenv ("TROUPE_BIN");
    snprintf (command, sizeof command,
              "mkdir -m 700 %1$s/keys %1$s/allow && '%2$s' keygen broker --dir %1$s/keys"
              " >/dev/null && '%2$s' keygen node --dir %1$s/keys >/dev/null"
              " && cp %1$s/keys/node.public %1$s/allow/", s_work, bin);
    ck_assert_msg (system (command) == 0, "troupe keygen failed");
    s_curve = true;
    return true;
}

static void
s_link (bool up)
{
    char command [256];
    snprintf (command, sizeof command, "ip -n %s link set %s-n %s", s_netns, s_netns,
              up? "up": "down");
    ck_assert_int_eq (system (command), 0);
}

//  --------------------------------------------------------------------------
//  The chaos test

static void
s_fault_add (int kind, int node, int64_t start, int64_t end)
{
    if (s_fault_count < S_MAX_FAULTS)
        s_faults [s_fault_count++] = (s_fault_t) { kind, node, start, end, 0 };
}

static void
s_sleep_ms (int64_t ms)
{
    if (ms > 0)
        usleep ((useconds_t) (ms * 1000));
}

START_TEST (test_chaos)
{
    int seconds = s_env ("TROUPE_CHAOS_SECONDS", 20);
    int nodes = s_env ("TROUPE_CHAOS_NODES", 4);
    s_rate = s_env ("TROUPE_CHAOS_RATE", 150 / tr_test_slowdown ());
    uint64_t seed = getenv ("TROUPE_CHAOS_SEED")? strtoull (getenv ("TROUPE_CHAOS_SEED"), NULL, 0)
                                               : (uint64_t) time (NULL) * 2654435761u + (uint64_t) getpid ();
    if (!seed)
        seed = 1;
    ck_assert_int_ge (nodes, 4);
    ck_assert_int_le (nodes, S_MAX_NODES);
    ck_assert_int_eq (nodes % 2, 0);
    printf ("chaos: seed %llu (TROUPE_CHAOS_SEED to run it again), %d s, %d nodes\n",
            (unsigned long long) seed, seconds, nodes);
    fflush (stdout);
    bool netns = false;
    //  The namespace needs the endpoint before the broker starts.
    s_endpoint [0] = 0;
    snprintf (s_work, sizeof s_work, "/tmp/tr_chaos_test.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (s_work));
    netns = s_netns_setup ();
    if (!netns)
        printf ("chaos: link cuts skipped (they need root, /usr/sbin/ip and network "
                "namespaces; TROUPE_CHAOS_NETNS=0 turns them off)\n");
    s_setup (nodes);
    int64_t wall0 = s_wall_ms (), mono0 = s_now_ms ();
    for (int i = 0; i < nodes; i++)
        s_node_say (i, "go");
    int64_t start = s_now_ms ();
    int64_t end = start + (int64_t) seconds * 1000;
    int counts [F_KINDS] = { 0 };
    //  TROUPE_CHAOS_FAULTS: the kinds to use (names, comma-separated).
    bool allowed [F_KINDS];
    const char *only = getenv ("TROUPE_CHAOS_FAULTS");
    for (int k = 0; k < F_KINDS; k++)
        allowed [k] = !only || strstr (only, s_fault_names [k]);
    uint64_t rng = seed;
    while (s_now_ms () < end) {
        s_sleep_ms (1000 + (int64_t) (tr_test_random (&rng) % 2000));
        if (s_now_ms () >= end)
            break;
        uint64_t r = tr_test_random (&rng);
        int pick = (int) (r % 100);
        int kind = pick < 30? F_NODE_KILL: pick < 60? F_NODE_STOP: pick < 75? F_BROKER_KILL
                 : pick < 85? F_TREE_STOP: F_LINK_CUT;
        if (kind == F_LINK_CUT && !netns)
            kind = F_NODE_STOP;
        if (!allowed [kind])
            continue;
        int node = (int) ((r >> 16) % (uint64_t) nodes);
        //  Up to four heartbeats: a stop past three gets a node declared
        //  dead (about one in four).
        int64_t hold = 200 + (int64_t) ((r >> 32) % (4 * S_HEARTBEAT_MS - 200));
        int64_t t = s_now_ms ();
        switch (kind) {
            case F_NODE_KILL: {
                kill (s_node [node].pid, SIGKILL);
                s_node_reap (node);
                pthread_mutex_lock (&s_lock);
                s_streams [node][s_node [node].inc].killed = true;
                pthread_mutex_unlock (&s_lock);
                s_node [node].inc++;
                ck_assert_int_lt (s_node [node].inc, S_MAX_INC);
                s_node_start (node);
                ck_assert_msg (s_wait_flag (&s_node [node].ready, 30000 * tr_test_slowdown ()),
                               "node %d never came back after SIGKILL", node);
                s_node_say (node, "go");
                s_fault_add (kind, node, t, s_now_ms ());
                break;
            }
            case F_NODE_STOP:
                kill (s_node [node].pid, SIGSTOP);
                s_sleep_ms (hold);
                kill (s_node [node].pid, SIGCONT);
                s_fault_add (kind, node, t, s_now_ms ());
                break;
            case F_BROKER_KILL: {
                kill (s_broker_pid, SIGKILL);
                int status;
                waitpid (s_broker_pid, &status, 0);
                s_sleep_ms (hold / 2);
                s_broker_start ();
                s_fault_add (kind, -1, t, s_now_ms ());
                break;
            }
            case F_TREE_STOP:
                kill (s_tree_pid, SIGSTOP);
                s_sleep_ms (hold);
                kill (s_tree_pid, SIGCONT);
                s_fault_add (kind, -2, t, s_now_ms ());
                break;
            case F_LINK_CUT:
                node = nodes - 2;
                s_link (false);
                s_sleep_ms (300 + hold);
                s_link (true);
                s_fault_add (kind, node, t, s_now_ms ());
                break;
        }
        counts [kind]++;
    }
    int64_t ran_ms = s_now_ms () - start;
    //  Every node back (a write acknowledged after the last fault) before
    //  the load stops.
    int64_t settle = s_now_ms () + 20000 * tr_test_slowdown ();
    for (;;) {
        pthread_mutex_lock (&s_lock);
        s_fault_ends ();
        bool back = s_fault_count == 0 || s_faults [s_fault_count - 1].back_ms;
        pthread_mutex_unlock (&s_lock);
        if (back || s_now_ms () > settle)
            break;
        usleep (50 * 1000);
    }
    s_sleep_ms (2000 * tr_test_slowdown ());
    s_finish ();

    //  The tree: every child running (a flaky one may be between
    //  restarts at any one moment: ask again for up to 10 s).
    int running = 0, children = 0, restarts = 0;
    int tree_rc = s_tree_wait (&running, &children, &restarts);
    uint64_t keys = 0;
    uint64_t missing = s_kv_check (&keys);
    s_stop_tree_and_broker ();

    pthread_mutex_lock (&s_lock);
    int unplanned = s_unplanned_drops (wall0, mono0);
    s_tally_t t;
    s_account (&t);
    pthread_mutex_unlock (&s_lock);
    printf ("CHAOS seconds=%.1f seed=%llu nodes=%d netns=%s faults_node_kill=%d "
            "faults_node_stop=%d faults_broker_kill=%d faults_tree_stop=%d faults_link_cut=%d "
            "tells=%llu tells_refused=%llu tells_delivered=%llu tells_dead=%llu "
            "tells_lost=%llu tells_undelivered_outside_windows=%llu "
            "undelivered_node_kill=%llu/%llu undelivered_node_stop=%llu/%llu "
            "undelivered_broker_kill=%llu undelivered_link_cut=%llu/%llu "
            "handled_twice=%llu handled_send_unreported=%llu asks=%llu asks_ok=%llu "
            "asks_failed=%llu asks_late=%llu asks_late_process_stalled=%llu ask_max_ms=%lld "
            "asks_outside_windows=%llu "
            "asks_outside_windows_failed=%llu kv_acked=%llu kv_failed=%llu kv_keys=%llu "
            "kv_missing=%llu tree_running=%d tree_children=%d tree_restarts=%d "
            "unplanned_drops=%d\n",
            ran_ms / 1000.0, (unsigned long long) seed, nodes, netns? "yes": "no",
            counts [F_NODE_KILL], counts [F_NODE_STOP], counts [F_BROKER_KILL],
            counts [F_TREE_STOP], counts [F_LINK_CUT],
            (unsigned long long) t.tells, (unsigned long long) t.refused,
            (unsigned long long) t.delivered, (unsigned long long) t.dead,
            (unsigned long long) t.lost, (unsigned long long) t.undelivered_calm,
            (unsigned long long) t.undelivered_by [F_NODE_KILL][0],
            (unsigned long long) t.undelivered_by [F_NODE_KILL][1],
            (unsigned long long) t.undelivered_by [F_NODE_STOP][0],
            (unsigned long long) t.undelivered_by [F_NODE_STOP][1],
            (unsigned long long) t.undelivered_by [F_BROKER_KILL][2],
            (unsigned long long) t.undelivered_by [F_LINK_CUT][0],
            (unsigned long long) t.undelivered_by [F_LINK_CUT][1],
            (unsigned long long) s_dup, (unsigned long long) t.handled_unsent,
            (unsigned long long) s_asks, (unsigned long long) s_asks_ok,
            (unsigned long long) s_asks_failed, (unsigned long long) s_asks_late,
            (unsigned long long) t.asks_late_stalled,
            (long long) (s_ask_max_us / 1000), (unsigned long long) t.asks_calm,
            (unsigned long long) t.asks_calm_failed, (unsigned long long) s_kv_acked,
            (unsigned long long) s_kv_failed, (unsigned long long) keys,
            (unsigned long long) missing, running, children, restarts, unplanned);
    fflush (stdout);
    ck_assert_uint_gt (t.tells, 0);
    ck_assert_uint_gt (s_asks, 0);
    ck_assert_uint_eq (s_bad_lines, 0);
    ck_assert_msg (t.undelivered_calm == 0,
                   "%llu tells sent outside every fault window were not delivered",
                   (unsigned long long) t.undelivered_calm);
    ck_assert_msg (s_dup == 0, "%llu messages were handled twice", (unsigned long long) s_dup);
    ck_assert_msg (t.handled_refused == 0, "%llu refused tells were handled",
                   (unsigned long long) t.handled_refused);
    ck_assert_msg (t.handled_unsent_bad == 0,
                   "%llu messages handled whose living sender never reported them",
                   (unsigned long long) t.handled_unsent_bad);
    ck_assert_msg (t.dead <= t.undelivered, "%llu dead letters for %llu tells not delivered",
                   (unsigned long long) t.dead, (unsigned long long) t.undelivered);
    ck_assert_uint_eq (t.refused + t.delivered + t.dead + t.lost, t.tells);
    ck_assert_msg (s_asks_late == t.asks_late_stalled,
                   "%llu asks returned past their deadline (max %lld ms), %llu of them while "
                   "their process did not run", (unsigned long long) s_asks_late,
                   (long long) (s_ask_max_us / 1000), (unsigned long long) t.asks_late_stalled);
    ck_assert_msg (s_asks_wrong == 0, "%llu asks got another message's answer",
                   (unsigned long long) s_asks_wrong);
    ck_assert_uint_eq (s_asks_ok + s_asks_failed, s_asks);
    ck_assert_msg (t.asks_calm_failed == 0, "%llu asks outside every fault window failed",
                   (unsigned long long) t.asks_calm_failed);
    ck_assert_uint_gt (s_kv_acked, 0);
    ck_assert_msg (missing == 0, "%llu acknowledged scratchpad writes are missing",
                   (unsigned long long) missing);
    ck_assert_msg (tree_rc == 0, "the tree: %d of %d children running", running, children);
    ck_assert_int_gt (restarts, 0);
    s_cleanup ();
}
END_TEST

//  --------------------------------------------------------------------------
//  A stopped node: the reproduction of what the chaos test found first.
//  A TELL node stopped (SIGSTOP) for four heartbeats, past the broker's
//  patience, while the load runs, then continued; then the other one.
//  Every tell must be delivered or dead-lettered, but for a residue
//  (S_STALL_RESIDUE per stop, the exact count printed). Before the
//  link judged silence only after ZeroMQ's own thread had run again, and
//  held what it sent after such a stall until it had greeted the broker
//  again, each stop lost three heartbeats' worth of the tells sent to the stopped
//  node (read by nobody: the link closed its socket at once) and then the
//  burst the stopped node sent as it woke (refused by the broker, which
//  had taken it for dead, with TR_EPROTO).

//  What one stop may still lose: tells the stopped node's link had taken
//  from its senders, or written to its socket, in the instant before the
//  process stopped, and sends after it woke (the broker refuses them with
//  TR_EPROTO, having taken the node for dead). Seen: 0 in most runs, 3
//  once under ThreadSanitizer on a loaded machine; before the fix, three
//  heartbeats of traffic (hundreds) per stop.
#define S_STALL_RESIDUE 10

START_TEST (test_stall)
{
    int nodes = 4;
    s_rate = s_env ("TROUPE_CHAOS_RATE", 150 / tr_test_slowdown ());
    s_setup (nodes);
    for (int i = 0; i < nodes; i++)
        s_node_say (i, "go");
    for (int round = 0; round < 2; round++) {
        int node = 2 * round;
        s_sleep_ms (1500);
        int64_t t = s_now_ms ();
        kill (s_node [node].pid, SIGSTOP);
        s_sleep_ms (4 * S_HEARTBEAT_MS);
        kill (s_node [node].pid, SIGCONT);
        s_fault_add (F_NODE_STOP, node, t, s_now_ms ());
    }
    s_sleep_ms (3000 * tr_test_slowdown ());
    s_finish ();
    s_stop_tree_and_broker ();
    pthread_mutex_lock (&s_lock);
    s_tally_t t;
    s_account (&t);
    pthread_mutex_unlock (&s_lock);
    printf ("STALL tells=%llu tells_delivered=%llu tells_dead=%llu tells_lost=%llu "
            "undelivered_from_stopped=%llu undelivered_to_stopped=%llu "
            "asks=%llu asks_ok=%llu asks_late=%llu\n",
            (unsigned long long) t.tells, (unsigned long long) t.delivered,
            (unsigned long long) t.dead, (unsigned long long) t.lost,
            (unsigned long long) t.undelivered_by [F_NODE_STOP][0],
            (unsigned long long) t.undelivered_by [F_NODE_STOP][1],
            (unsigned long long) s_asks, (unsigned long long) s_asks_ok,
            (unsigned long long) s_asks_late);
    fflush (stdout);
    ck_assert_uint_gt (t.tells, 0);
    ck_assert_uint_eq (s_dup, 0);
    ck_assert_uint_eq (t.undelivered_calm, 0);
    ck_assert_msg (t.dead <= t.undelivered && t.lost <= S_STALL_RESIDUE * 2,
                   "%llu tells not delivered, %llu dead letters: %llu lost",
                   (unsigned long long) t.undelivered, (unsigned long long) t.dead,
                   (unsigned long long) t.lost);
    ck_assert_uint_eq (s_asks_late, 0);
    ck_assert_uint_eq (s_asks_ok + s_asks_failed, s_asks);
    s_cleanup ();
}
END_TEST

//  --------------------------------------------------------------------------
//  The soak

typedef struct {
    long rss [4096], fds [4096];
    int n;
} s_series_t;

static s_series_t s_series [S_MAX_NODES + 1];   //  the nodes, then the broker

//  Mean of samples [from, to).
static double
s_mean (const long *v, int from, int to)
{
    double sum = 0;
    for (int i = from; i < to; i++)
        sum += (double) v [i];
    return to > from? sum / (to - from): 0;
}

START_TEST (test_soak)
{
    int seconds = s_env ("TROUPE_SOAK_SECONDS", 12);
    int nodes = s_env ("TROUPE_CHAOS_NODES", 4);
    s_rate = s_env ("TROUPE_CHAOS_RATE", 150 / tr_test_slowdown ());
    ck_assert_int_ge (nodes, 4);
    ck_assert_int_eq (nodes % 2, 0);
    s_setup (nodes);
    for (int i = 0; i < nodes; i++)
        s_node_say (i, "go");
    int64_t start = s_now_ms ();
    int samples = 0;
    while (s_now_ms () < start + (int64_t) seconds * 1000 && samples < 4096) {
        s_sleep_ms (start + (samples + 1) * 1000 - s_now_ms ());
        for (int i = 0; i <= nodes; i++) {
            pid_t pid = i < nodes? s_node [i].pid: s_broker_pid;
            s_series [i].rss [samples] = s_rss_kb (pid);
            s_series [i].fds [samples] = s_fds (pid);
            s_series [i].n = samples + 1;
        }
        samples++;
    }
    int64_t ran_ms = s_now_ms () - start;
    s_finish ();
    uint64_t keys = 0;
    uint64_t missing = s_kv_check (&keys);
    int running = 0, children = 0, restarts = 0;
    int tree_rc = s_tree_wait (&running, &children, &restarts);
    s_stop_tree_and_broker ();
    pthread_mutex_lock (&s_lock);
    s_tally_t t;
    s_account (&t);
    pthread_mutex_unlock (&s_lock);

    //  Flat: the last third's mean against the middle third's.
    int a = samples / 3, b = 2 * samples / 3;
    double worst_rss = 0, worst_fds = 0;
    bool flat = true;
    char figures [4096] = "";
    size_t len = 0;
    for (int i = 0; i <= nodes; i++) {
        s_series_t *s = &s_series [i];
        double rss_mid = s_mean (s->rss, a, b), rss_end = s_mean (s->rss, b, samples);
        double fds_mid = s_mean (s->fds, a, b), fds_end = s_mean (s->fds, b, samples);
        double growth = rss_mid > 0? (rss_end - rss_mid) / rss_mid: 0;
        if (growth > worst_rss)
            worst_rss = growth;
        if (fds_end - fds_mid > worst_fds)
            worst_fds = fds_end - fds_mid;
        if (rss_end > rss_mid * 1.10 && rss_end > rss_mid + 512)
            flat = false;
        if (fds_end > fds_mid + 2)
            flat = false;
        char who [16];
        if (i < nodes)
            snprintf (who, sizeof who, "node%d", i);
        else
            snprintf (who, sizeof who, "broker");
        //  First sample / middle third's mean / last third's mean.
        len += (size_t) snprintf (figures + len, sizeof figures - len,
                                  " %s_rss_kb=%ld/%.0f/%.0f %s_fds=%ld/%.1f/%.1f",
                                  who, s->rss [0], rss_mid, rss_end,
                                  who, s->fds [0], fds_mid, fds_end);
    }
    printf ("SOAK seconds=%.1f nodes=%d samples=%d tells=%llu tells_delivered=%llu "
            "tells_refused=%llu tells_dead=%llu tells_lost=%llu asks=%llu asks_ok=%llu "
            "asks_late=%llu ask_max_ms=%lld kv_acked=%llu kv_missing=%llu "
            "rss_growth_pct=%.1f fds_growth=%.1f flat=%s tree_running=%d tree_children=%d%s\n",
            ran_ms / 1000.0, nodes, samples, (unsigned long long) t.tells,
            (unsigned long long) t.delivered, (unsigned long long) t.refused,
            (unsigned long long) t.dead, (unsigned long long) t.lost,
            (unsigned long long) s_asks, (unsigned long long) s_asks_ok,
            (unsigned long long) s_asks_late, (long long) (s_ask_max_us / 1000),
            (unsigned long long) s_kv_acked, (unsigned long long) missing,
            worst_rss * 100, worst_fds, flat? "yes": "no", running, children, figures);
    fflush (stdout);
    ck_assert_int_ge (samples, 6);
    ck_assert_uint_gt (t.tells, 0);
    ck_assert_uint_eq (s_bad_lines, 0);
    ck_assert_msg (t.delivered == t.tells && t.dead == 0,
                   "soak: %llu tells, %llu delivered, %llu refused, %llu dead letters",
                   (unsigned long long) t.tells, (unsigned long long) t.delivered,
                   (unsigned long long) t.refused, (unsigned long long) t.dead);
    ck_assert_uint_eq (s_dup, 0);
    ck_assert_msg (s_asks_ok == s_asks && s_asks > 0, "soak: %llu of %llu asks answered",
                   (unsigned long long) s_asks_ok, (unsigned long long) s_asks);
    ck_assert_uint_eq (s_asks_late, 0);
    ck_assert_uint_eq (missing, 0);
    ck_assert_msg (tree_rc == 0,
                   "soak: the tree has %d of %d children running", running, children);
    ck_assert_msg (flat, "soak: memory or descriptors grew:%s", figures);
    s_cleanup ();
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_chaos");
    const char *soak = getenv ("TROUPE_CHAOS_SOAK");
    if (!soak || strcmp (soak, "1") != 0) {
        TCase *tc = tcase_create ("stall");
        tcase_set_timeout (tc, 600);
        tcase_add_test (tc, test_stall);
        suite_add_tcase (suite, tc);
    }
    if (!soak || strcmp (soak, "0") == 0) {
        TCase *tc = tcase_create ("chaos");
        tcase_set_timeout (tc, 7200);
        tcase_add_test (tc, test_chaos);
        suite_add_tcase (suite, tc);
    }
    if (!soak || strcmp (soak, "1") == 0) {
        TCase *tc = tcase_create ("soak");
        tcase_set_timeout (tc, 7200);
        tcase_add_test (tc, test_soak);
        suite_add_tcase (suite, tc);
    }
    return suite;
}

int
main (int argc, char **argv)
{
    if (argc >= 2 && strcmp (argv [1], "node") == 0) {
        tr_log_set_level (TR_LOG_ERROR);
        return s_node_main (argc, argv);
    }
    SRunner *runner = srunner_create (s_suite ());
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed? 1: 0;
}
