/*  tr_swarm_test.c - tests of the swarm (actors/tr_swarm.c): ants of one
    colony that share pheromones in the scratchpad and nothing else.

    The instance: ten cities whose shortest tour the test finds by brute
    force (every tour from city 0). Covered: a colony of ants in one node
    converges to that length, every deposit lands once (the table's
    update count is the sum of the ants'), the best key's history only
    ever shortens; the same with ants in two `troupe run` processes
    joined to a real `troupe broker`, watched from a third process
    through the event bus (swarm.best, swarm.done) and a watch of the
    best key, with their run times overlapping (measured); conflicts of
    compare-and-set counted and retried while another node keeps writing
    the table; a stored best is never replaced by a longer one; a colony
    whose keys hold another instance or no table refuses to go on
    (swarm.failed); cities from a file; an ant's figures on ask; bad
    parameters at their file, line and column, and at start.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

#define S_CITIES 10

//  The instance, and its shortest tour's length (brute force, once).
static const double s_xy [S_CITIES][2] = {
    { 74, 55 }, { 73, 59 }, { 82, 90 }, { 98, 74 }, { 96, 45 },
    { 91, 74 }, { 29, 8 }, { 5, 26 }, { 90, 84 }, { 13, 42 }
};
static const char *s_cities = "[[74, 55], [73, 59], [82, 90], [98, 74], [96, 45], "
                              "[91, 74], [29, 8], [5, 26], [90, 84], [13, 42]]";

static tr_broker_t *s_broker;
static char s_endpoint [128];
static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  --------------------------------------------------------------------------
//  The instance, by brute force

static double
s_dist (int a, int b)
{
    return hypot (s_xy [a][0] - s_xy [b][0], s_xy [a][1] - s_xy [b][1]);
}

static void
s_search (int *tour, int depth, bool *used, double length, double *best)
{
    if (length >= *best)
        return;
    if (depth == S_CITIES) {
        length += s_dist (tour [S_CITIES - 1], tour [0]);
        if (length < *best)
            *best = length;
        return;
    }
    for (int c = 1; c < S_CITIES; c++)
        if (!used [c]) {
            used [c] = true;
            tour [depth] = c;
            s_search (tour, depth + 1, used, length + s_dist (tour [depth - 1], c), best);
            used [c] = false;
        }
}

//  The shortest tour's length: every tour from city 0 (9! of them, less
//  those cut short when they pass the best so far).
static double
s_optimum (void)
{
    static double optimum = 0;
    if (optimum == 0) {
        int tour [S_CITIES] = { 0 };
        bool used [S_CITIES] = { true };
        double best = DBL_MAX;
        s_search (tour, 1, used, 0, &best);
        optimum = best;
    }
    return optimum;
}

//  Checks that a msgpack array is a tour of every city once, and returns
//  its length.
static double
s_check_tour (const msgpack_object *tour)
{
    ck_assert_int_eq (tour->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq (tour->via.array.size, S_CITIES);
    bool seen [S_CITIES] = { false };
    int cities [S_CITIES];
    for (int k = 0; k < S_CITIES; k++) {
        const msgpack_object *c = &tour->via.array.ptr [k];
        ck_assert_int_eq (c->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        ck_assert_uint_lt (c->via.u64, S_CITIES);
        ck_assert_msg (!seen [c->via.u64], "city %d twice in a tour", (int) c->via.u64);
        seen [c->via.u64] = true;
        cities [k] = (int) c->via.u64;
    }
    double length = 0;
    for (int k = 0; k < S_CITIES; k++)
        length += s_dist (cities [k], cities [(k + 1) % S_CITIES]);
    return length;
}

static bool
s_same_length (double a, double b)
{
    return fabs (a - b) <= 1e-9 * b;
}

//  --------------------------------------------------------------------------
//  msgpack helpers

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static double
s_num (const msgpack_object *map, const char *key)
{
    const msgpack_object *o = s_get (map, key);
    ck_assert_msg (o != NULL, "no '%s'", key);
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double) o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (double) o->via.i64;
    ck_assert_msg (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32,
                   "'%s' is not a number", key);
    return o->via.f64;
}

static void
s_str (const msgpack_object *map, const char *key, char *out, size_t size)
{
    const msgpack_object *o = s_get (map, key);
    ck_assert_msg (o && o->type == MSGPACK_OBJECT_STR, "'%s' is not a string", key);
    snprintf (out, size, "%.*s", (int) o->via.str.size, o->via.str.ptr);
}

//  --------------------------------------------------------------------------
//  What an ant reports (its answer to an ask, or its swarm.done event)

typedef struct {
    char ant [64];
    int64_t iterations, updates, conflicts, best_conflicts, dropped, requests, errors;
    int64_t started, finished;
    double best, colony_best;
    bool done;
    char failed [600];
} s_figures_t;

static void
s_figures_read (const msgpack_object *map, s_figures_t *f)
{
    memset (f, 0, sizeof *f);
    s_str (map, "ant", f->ant, sizeof f->ant);
    f->iterations = (int64_t) s_num (map, "iterations");
    f->updates = (int64_t) s_num (map, "updates");
    f->conflicts = (int64_t) s_num (map, "conflicts");
    f->best_conflicts = (int64_t) s_num (map, "best_conflicts");
    f->dropped = (int64_t) s_num (map, "dropped");
    f->requests = (int64_t) s_num (map, "requests");
    f->errors = (int64_t) s_num (map, "errors");
    f->started = (int64_t) s_num (map, "started");
    f->finished = (int64_t) s_num (map, "finished");
    const msgpack_object *best = s_get (map, "best");
    f->best = best && best->type != MSGPACK_OBJECT_NIL? s_num (map, "best"): DBL_MAX;
    const msgpack_object *cb = s_get (map, "colony_best");
    f->colony_best = cb && cb->type != MSGPACK_OBJECT_NIL? s_num (map, "colony_best"): DBL_MAX;
    const msgpack_object *done = s_get (map, "done");
    f->done = done && done->type == MSGPACK_OBJECT_BOOLEAN && done->via.boolean;
    const msgpack_object *failed = s_get (map, "failed");
    if (failed && failed->type == MSGPACK_OBJECT_STR)
        snprintf (f->failed, sizeof f->failed, "%.*s", (int) failed->via.str.size,
                  failed->via.str.ptr);
}

//  Asks an ant for its figures. Returns the ask's result.
static int
s_ask_figures (tr_node_t *node, const char *ant, s_figures_t *f)
{
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, ant, "\xc0", 1, 2000 * tr_test_slowdown (), &reply, NULL);
    if (rc != TR_OK)
        return rc;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    ck_assert_int_eq (msgpack_unpack_next (&result, tr_msg_body (reply), tr_msg_size (reply),
                                           NULL), MSGPACK_UNPACK_SUCCESS);
    s_figures_read (&result.data, f);
    msgpack_unpacked_destroy (&result);
    tr_msg_destroy (&reply);
    return TR_OK;
}

//  Waits until every ant named prefix1..prefixN is done or has failed;
//  fills figures.
static void
s_wait_done (tr_node_t *node, const char *prefix, int ants, s_figures_t *figures, int seconds)
{
    int64_t deadline = tr_test_now_ms () + (int64_t) seconds * 1000 * tr_test_slowdown ();
    for (int i = 0; i < ants; i++) {
        char name [64];
        snprintf (name, sizeof name, "%s%d", prefix, i + 1);
        while (true) {
            int rc = s_ask_figures (node, name, &figures [i]);
            if (rc == TR_OK && (figures [i].done || figures [i].failed [0]))
                break;
            ck_assert_msg (tr_test_now_ms () < deadline, "ant %s not done in time (%s)", name,
                           tr_errname (rc));
            usleep (10 * 1000);
        }
    }
}

//  A value of the scratchpad, unpacked (its strings point into the
//  value's bytes, so both are kept until s_kv_free).
typedef struct {
    tr_scratch_value_t value;
    msgpack_unpacked unpacked;
    const msgpack_object *data;
} s_kv_t;

static uint64_t
s_kv (tr_node_t *node, const char *key, s_kv_t *kv)
{
    memset (kv, 0, sizeof *kv);
    int rc = tr_scratch_get (node, key, 5000, &kv->value);
    ck_assert_msg (rc == TR_OK, "get %s: %s", key, tr_errname (rc));
    msgpack_unpacked_init (&kv->unpacked);
    ck_assert_int_eq (msgpack_unpack_next (&kv->unpacked, (const char *) kv->value.data,
                                           kv->value.size, NULL), MSGPACK_UNPACK_SUCCESS);
    kv->data = &kv->unpacked.data;
    return kv->value.version;
}

static void
s_kv_free (s_kv_t *kv)
{
    msgpack_unpacked_destroy (&kv->unpacked);
    tr_scratch_value_free (&kv->value);
}

//  Checks COLONY.best: a real tour of its length, no shorter than the
//  optimum, and a history whose lengths shorten at every step and end at
//  it. Returns how many improvements its history holds; *length_p is the
//  best length.
static size_t
s_check_best (tr_node_t *node, const char *colony, double *length_p)
{
    char key [256];
    snprintf (key, sizeof key, "%s.best", colony);
    s_kv_t best;
    s_kv (node, key, &best);
    const msgpack_object *map = best.data;
    double length = s_num (map, "length");
    ck_assert_msg (length >= s_optimum () * (1 - 1e-9), "best %.9g, shorter than the optimum",
                   length);
    *length_p = length;
    ck_assert (s_same_length (s_check_tour (s_get (map, "tour")), length));
    const msgpack_object *history = s_get (map, "history");
    ck_assert (history && history->type == MSGPACK_OBJECT_ARRAY);
    size_t n = history->via.array.size;
    ck_assert_uint_ge (n, 1);
    double last = DBL_MAX;
    int64_t last_time = 0;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *step = &history->via.array.ptr [i];
        double l = s_num (step, "length");
        int64_t time = (int64_t) s_num (step, "time");
        ck_assert_msg (l < last, "history step %zu: %.9g after %.9g", i + 1, l, last);
        ck_assert_int_ge (time, last_time);
        last = l;
        last_time = time;
    }
    ck_assert (s_same_length (last, length));
    s_kv_free (&best);
    return n;
}

//  The table's count of updates.
static uint64_t
s_table_updates (tr_node_t *node, const char *colony)
{
    char key [256];
    snprintf (key, sizeof key, "%s.tau", colony);
    s_kv_t table;
    s_kv (node, key, &table);
    uint64_t updates = (uint64_t) s_num (table.data, "updates");
    const msgpack_object *tau = s_get (table.data, "tau");
    ck_assert (tau && tau->type == MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq (tau->via.array.size, S_CITIES * (S_CITIES - 1) / 2);
    s_kv_free (&table);
    return updates;
}

//  --------------------------------------------------------------------------
//  Fixture

static void
s_setup (void)
{
    tr_log_set_level (TR_LOG_ERROR);
    tr_test_broker_start (&s_broker, s_endpoint, 500);
    s_node = tr_test_node_joined (s_endpoint, "swarm-test", 500);
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
    tr_broker_stop (&s_broker);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "swarm.yaml", &s_tree, &s_sup);
}

//  A tree of `ants` ants named PREFIX1.. with the same params (the seed
//  differs by ant anyway: it is mixed with the name).
static char *
s_colony_yaml (const char *tree, const char *prefix, int ants, const char *params)
{
    size_t size = 4096 + (size_t) ants * (strlen (params) + strlen (s_cities) + 100);
    char *yaml = (char *) malloc (size);
    ck_assert_ptr_nonnull (yaml);
    int used = snprintf (yaml, size, "name: %s\nchildren:\n", tree);
    for (int i = 0; i < ants; i++)
        used += snprintf (yaml + used, size - (size_t) used,
                          "  - {name: %s%d, actor: ant, params: {%s, cities: %s}}\n",
                          prefix, i + 1, params, s_cities);
    return yaml;
}

//  --------------------------------------------------------------------------

START_TEST (test_optimum)
{
    //  The brute force itself, against a tour written out by hand.
    double optimum = s_optimum ();
    static const int known [S_CITIES] = { 0, 1, 2, 8, 5, 3, 4, 6, 7, 9 };
    double length = 0;
    for (int k = 0; k < S_CITIES; k++)
        length += s_dist (known [k], known [(k + 1) % S_CITIES]);
    ck_assert (s_same_length (optimum, length));
    ck_assert_msg (fabs (optimum - 279.31787) < 1e-4, "optimum %.9g", optimum);
}
END_TEST

START_TEST (test_converges)
{
    tr_broker_stats_t before, after;
    ck_assert_int_eq (tr_broker_stats (s_broker, &before), TR_OK);
    char *yaml = s_colony_yaml ("t", "ant", 6, "colony: c1, iterations: 100, seed: 7");
    s_start (yaml);
    free (yaml);
    s_figures_t f [6];
    s_wait_done (s_node, "ant", 6, f, 60);
    ck_assert_int_eq (tr_broker_stats (s_broker, &after), TR_OK);
    int64_t updates = 0, dropped = 0, conflicts = 0, requests = 0, best_conflicts = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_msg (f [i].failed [0] == '\0', "%s: %s", f [i].ant, f [i].failed);
        ck_assert_int_eq (f [i].iterations, 100);
        ck_assert_int_eq (f [i].errors, 0);
        ck_assert (f [i].best < DBL_MAX);
        ck_assert (f [i].colony_best <= f [i].best);
        ck_assert_int_le (f [i].started, f [i].finished);
        updates += f [i].updates;
        dropped += f [i].dropped;
        conflicts += f [i].conflicts;
        best_conflicts += f [i].best_conflicts;
        requests += f [i].requests;
    }
    //  Every iteration's deposit landed once: the table counts each.
    ck_assert_int_eq (updates + dropped, 600);
    ck_assert_uint_eq (s_table_updates (s_node, "c1"), (uint64_t) updates);
    double length;
    size_t improvements = s_check_best (s_node, "c1", &length);
    ck_assert_msg (s_same_length (length, s_optimum ()), "best %.9g, the optimum %.9g", length,
                   s_optimum ());
    //  Each write the broker took is an ant's: table updates, best
    //  writes, and nothing else.
    uint64_t writes = after.kv_writes - before.kv_writes;
    ck_assert_uint_eq (writes, (uint64_t) updates + improvements);
    printf ("SWARM one node: 6 ants x 100 iterations: %lld updates, %lld conflicts "
            "(%.1f%%), %lld best conflicts, %zu improvements, %lld scratchpad requests "
            "(%.2f per iteration), %llu writes at the broker\n",
            (long long) updates, (long long) conflicts, 100.0 * (double) conflicts / 600,
            (long long) best_conflicts, improvements, (long long) requests,
            (double) requests / 600, (unsigned long long) writes);
    //  An ant's counters in status agree with its figures.
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "ant1", "swarm.updates", &value), TR_OK);
    ck_assert_int_eq (value, f [0].updates);
    ck_assert_int_eq (tr_actor_info_get (s_node, "ant1", "swarm.done", &value), TR_OK);
    ck_assert_int_eq (value, 1);
}
END_TEST

//  Another node keeps rewriting the table (compare-and-set of the same
//  value: nothing lost, only its version moves on), so that the ant's
//  writes meet conflicts; each is retried on the newer table.
typedef struct {
    tr_node_t *node;
    atomic_bool stop;
    atomic_int rewrites;
} s_rewriter_t;

static void *
s_rewrite_run (void *arg)
{
    s_rewriter_t *r = (s_rewriter_t *) arg;
    while (!atomic_load (&r->stop)) {
        tr_scratch_value_t value = { 0 };
        if (tr_scratch_get (r->node, "c2.tau", 2000, &value) == TR_OK) {
            //  The same bytes back, only if nobody wrote meanwhile.
            if (tr_scratch_cas (r->node, "c2.tau", value.version, value.data, value.size, 0,
                                2000, NULL) == TR_OK)
                atomic_fetch_add (&r->rewrites, 1);
            tr_scratch_value_free (&value);
            //  A writer that never pauses would win every race: an ant's
            //  read and write take longer than its rewrite does.
            usleep (500);
        }
        else
            usleep (1000);
    }
    return NULL;
}

START_TEST (test_conflicts_retried)
{
    //  The rewriter's node is joined (its first read answered) before the
    //  ant starts, and the ant paces itself, so that they overlap.
    s_rewriter_t r = { .node = tr_test_node_joined (s_endpoint, "rewriter", 500) };
    tr_scratch_value_t none = { 0 };
    ck_assert_int_eq (tr_scratch_get (r.node, "c2.tau", 5000, &none), TR_ENOTFOUND);
    pthread_t thread;
    ck_assert_int_eq (pthread_create (&thread, NULL, s_rewrite_run, &r), 0);
    char *yaml = s_colony_yaml ("t", "ant", 1, "colony: c2, iterations: 200, interval: 2ms, "
                                "seed: 3");
    s_start (yaml);
    free (yaml);
    s_figures_t f;
    s_wait_done (s_node, "ant", 1, &f, 120);
    atomic_store (&r.stop, true);
    pthread_join (thread, NULL);
    tr_node_destroy (&r.node);
    printf ("SWARM rewritten table: 200 iterations, %lld conflicts retried, %d rewrites "
            "by another node, %lld requests\n", (long long) f.conflicts,
            atomic_load (&r.rewrites), (long long) f.requests);
    ck_assert_msg (f.failed [0] == '\0', "%s", f.failed);
    ck_assert_int_gt (f.conflicts, 0);
    ck_assert_int_gt (atomic_load (&r.rewrites), 0);
    //  Each conflict cost one more read and one more write; every
    //  iteration's deposit landed, once.
    ck_assert_int_eq (f.dropped, 0);
    ck_assert_int_eq (f.updates, 200);
    ck_assert_uint_eq (s_table_updates (s_node, "c2"), 200);
    ck_assert_int_ge (f.requests, 400 + 2 * f.conflicts);
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "ant1", "swarm.conflicts", &value), TR_OK);
    ck_assert_int_eq (value, f.conflicts);
}
END_TEST

//  Rewrites the number under `field` of the map under key, by
//  compare-and-set. Returns the new version.
static uint64_t
s_kv_set_number (const char *key, const char *field, double number)
{
    s_kv_t kv;
    uint64_t version = s_kv (s_node, key, &kv);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    const msgpack_object *map = kv.data;
    const msgpack_object *value = s_get (map, field);
    ck_assert_ptr_nonnull (value);
    msgpack_pack_map (&pk, map->via.map.size);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_pack_object (&pk, map->via.map.ptr [i].key);
        if (value == &map->via.map.ptr [i].val)
            msgpack_pack_double (&pk, number);
        else
            msgpack_pack_object (&pk, map->via.map.ptr [i].val);
    }
    ck_assert_int_eq (tr_scratch_cas (s_node, key, version, buffer.data, buffer.size, 0,
                                      5000, &version), TR_OK);
    msgpack_sbuffer_destroy (&buffer);
    s_kv_free (&kv);
    return version;
}

//  A best already stored is replaced only by a shorter tour.
START_TEST (test_best_only_shortens)
{
    char *yaml = s_colony_yaml ("t", "ant", 2, "colony: c3, iterations: 30, seed: 5");
    s_start (yaml);
    free (yaml);
    s_figures_t f [2];
    s_wait_done (s_node, "ant", 2, f, 60);
    tr_test_tree_stop (&s_tree, &s_sup);
    //  Claim a length no tour has, half the optimum; and make the table
    //  say its best is long, so that the next ants offer their tours.
    uint64_t version = s_kv_set_number ("c3.best", "length", s_optimum () / 2);
    s_kv_set_number ("c3.tau", "best", 1e6);
    yaml = s_colony_yaml ("t2", "late", 1, "colony: c3, iterations: 50, seed: 6");
    s_start (yaml);
    free (yaml);
    s_wait_done (s_node, "late", 1, f, 60);
    //  Untouched, and the ants know the colony's best is that short.
    tr_scratch_value_t value = { 0 };
    ck_assert_int_eq (tr_scratch_get (s_node, "c3.best", 5000, &value), TR_OK);
    ck_assert_uint_eq (value.version, version);
    tr_scratch_value_free (&value);
    //  (Its first tour beat the table's best, so it read the stored one.)
    ck_assert_int_eq (f [0].iterations, 50);
    ck_assert (s_same_length (f [0].colony_best, s_optimum () / 2));
    ck_assert (f [0].best >= s_optimum () - 1e-9);
}
END_TEST

//  An event and watch recorder, for the test of two processes.
typedef struct {
    uint64_t version;
    double length;
} s_step_t;

static struct {
    pthread_mutex_t lock;
    char colony [64];
    char best_key [96];
    char sync_key [96];
    s_step_t events [512];
    size_t event_count;
    s_step_t watched [512];
    size_t watched_count;
    s_figures_t done [16];
    size_t done_count;
    char failed [700];
    bool event_synced, watch_synced, resync;
} s_seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool
s_is_str (const msgpack_object *o, const char *text)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen (text)
        && memcmp (o->via.str.ptr, text, o->via.str.size) == 0;
}

//  An event [topic, body] or a change [key, version, value].
static void
s_seen_record (const msgpack_object *msg)
{
    const msgpack_object *a = msg->via.array.ptr;
    if (msg->via.array.size == 2) {
        const msgpack_object *body = &a [1];
        if (s_is_str (&a [0], "swarm.sync")) {
            s_seen.event_synced = true;
            return;
        }
        const msgpack_object *colony = s_get (body, "colony");
        if (!colony || !s_is_str (colony, s_seen.colony))
            return;
        if (s_is_str (&a [0], "swarm.best") && s_seen.event_count < 512) {
            s_step_t *step = &s_seen.events [s_seen.event_count++];
            step->version = (uint64_t) s_num (body, "version");
            step->length = s_num (body, "length");
            ck_assert (s_same_length (s_check_tour (s_get (body, "tour")), step->length));
        }
        else
        if (s_is_str (&a [0], "swarm.done") && s_seen.done_count < 16)
            s_figures_read (body, &s_seen.done [s_seen.done_count++]);
        else
        if (s_is_str (&a [0], "swarm.failed"))
            s_str (body, "error", s_seen.failed, sizeof s_seen.failed);
        return;
    }
    if (a [1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return;
    if (a [1].via.u64 == 0)
        s_seen.resync = true;
    else
    if (s_is_str (&a [0], s_seen.sync_key))
        s_seen.watch_synced = true;
    else
    if (s_is_str (&a [0], s_seen.best_key) && a [2].type == MSGPACK_OBJECT_MAP
    &&  s_seen.watched_count < 512) {
        s_step_t *step = &s_seen.watched [s_seen.watched_count++];
        step->version = a [1].via.u64;
        step->length = s_num (&a [2], "length");
    }
}

static int
s_recorder_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    if (msgpack_unpack_next (&result, tr_msg_body (msg), tr_msg_size (msg), NULL)
        == MSGPACK_UNPACK_SUCCESS
    &&  result.data.type == MSGPACK_OBJECT_ARRAY
    &&  (result.data.via.array.size == 2 || result.data.via.array.size == 3)) {
        pthread_mutex_lock (&s_seen.lock);
        s_seen_record (&result.data);
        pthread_mutex_unlock (&s_seen.lock);
    }
    msgpack_unpacked_destroy (&result);
    return 0;
}

static bool
s_synced (void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_seen.lock);
    bool synced = s_seen.event_synced && s_seen.watch_synced;
    pthread_mutex_unlock (&s_seen.lock);
    return synced;
}

static size_t
s_done_count (void)
{
    pthread_mutex_lock (&s_seen.lock);
    size_t n = s_seen.done_count;
    pthread_mutex_unlock (&s_seen.lock);
    return n;
}

//  A child process with standard output and error in a file (read after).
static pid_t
s_spawn (char **argv, const char *log, int *stdout_pipe)
{
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    int fds [2] = { -1, -1 };
    if (stdout_pipe) {
        ck_assert_int_eq (pipe (fds), 0);
        posix_spawn_file_actions_adddup2 (&actions, fds [1], 1);
        posix_spawn_file_actions_addclose (&actions, fds [0]);
        posix_spawn_file_actions_addclose (&actions, fds [1]);
    }
    else
        posix_spawn_file_actions_addopen (&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen (&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid_t pid;
    ck_assert_int_eq (posix_spawn (&pid, argv [0], &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    if (stdout_pipe) {
        close (fds [1]);
        *stdout_pipe = fds [0];
    }
    return pid;
}

static pid_t s_children [3];

static void
s_kill_children (void)
{
    for (int i = 0; i < 3; i++)
        if (s_children [i] > 0)
            kill (s_children [i], SIGKILL);
}

//  Ends a child with SIGTERM and returns its exit status.
static int
s_end_child (int i)
{
    int status = 0;
    kill (s_children [i], SIGTERM);
    ck_assert_int_eq (waitpid (s_children [i], &status, 0), s_children [i]);
    s_children [i] = 0;
    return status;
}

static void
s_print_file (const char *path)
{
    FILE *file = fopen (path, "r");
    char line [512];
    fprintf (stderr, "---- %s\n", path);
    while (file && fgets (line, sizeof line, file))
        fputs (line, stderr);
    if (file)
        fclose (file);
}

START_TEST (test_two_processes)
{
    const char *bin = getenv ("TROUPE_BIN");
    ck_assert_msg (bin && *bin, "TROUPE_BIN must name the troupe program");
    atexit (s_kill_children);
    char dir [] = "/tmp/tr_swarm_XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    char log [3][300], tree [2][300];
    for (int i = 0; i < 3; i++)
        snprintf (log [i], sizeof log [i], "%s/%s.log", dir, i? (i == 1? "p1": "p2"): "broker");

    //  A real broker in a process of its own.
    char *broker_argv [] = { (char *) bin, "broker", "--bind", "tcp://127.0.0.1:*", NULL };
    int out = -1;
    s_children [0] = s_spawn (broker_argv, log [0], &out);
    FILE *broker_out = fdopen (out, "r");
    char line [512], endpoint [256] = "";
    while (!endpoint [0] && fgets (line, sizeof line, broker_out)) {
        const char *at = strstr (line, "listening on ");
        if (at)
            snprintf (endpoint, sizeof endpoint, "%.*s", (int) strcspn (at + 13, " \n"),
                      at + 13);
    }
    if (!endpoint [0])
        s_print_file (log [0]);
    ck_assert_msg (endpoint [0], "the broker did not say where it listens");

    //  This process watches: events, and changes of the best key. Its
    //  subscription and watch are in place at the broker once a probe
    //  from another node comes back through each.
    pthread_mutex_lock (&s_seen.lock);
    snprintf (s_seen.colony, sizeof s_seen.colony, "mp%d", (int) getpid ());
    snprintf (s_seen.best_key, sizeof s_seen.best_key, "%s.best", s_seen.colony);
    snprintf (s_seen.sync_key, sizeof s_seen.sync_key, "%s.best.sync", s_seen.colony);
    pthread_mutex_unlock (&s_seen.lock);
    tr_node_t *watcher = tr_test_node_joined (endpoint, "swarm-watcher", 500);
    tr_node_t *prober = tr_test_node_joined (endpoint, "swarm-prober", 500);
    tr_behaviour_t recorder = { .handle = s_recorder_handle };
    tr_spawn_opts_t spawn = { .capacity = 100000 };
    ck_assert_int_eq (tr_spawn (watcher, "recorder", &recorder, NULL, &spawn, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (watcher, "swarm.", "recorder"), TR_OK);
    ck_assert_int_eq (tr_scratch_watch (watcher, s_seen.best_key, "recorder"), TR_OK);
    int64_t deadline = tr_test_now_ms () + 10000 * tr_test_slowdown ();
    while (!s_synced (NULL)) {
        ck_assert_msg (tr_test_now_ms () < deadline, "the watcher's subscriptions never took");
        tr_event_publish (prober, "swarm.sync", "\xc0", 1, NULL);
        tr_scratch_put (prober, s_seen.sync_key, "\x01", 1, 0, 1000, NULL);
        usleep (50 * 1000);
    }

    //  Two `troupe run` processes of three ants each, all of one colony.
    //  A pause between iterations stretches each ant's run over about two
    //  seconds (more under sanitizers), so that the two processes' ants
    //  run at the same time even if one process starts late.
    int slow = tr_test_slowdown ();
    for (int p = 0; p < 2; p++) {
        char prefix [64], name [64], params [200];
        snprintf (tree [p], sizeof tree [p], "%s/p%d.yaml", dir, p + 1);
        snprintf (name, sizeof name, "swarm-%d-p%d", (int) getpid (), p + 1);
        snprintf (prefix, sizeof prefix, "p%d-ant-", p + 1);
        snprintf (params, sizeof params, "colony: %s, iterations: 100, interval: %dms, seed: %d",
                  s_seen.colony, 20 * slow, 11 + p);
        char *yaml = s_colony_yaml (name, prefix, 3, params);
        FILE *file = fopen (tree [p], "w");
        ck_assert_ptr_nonnull (file);
        fputs (yaml, file);
        fclose (file);
        free (yaml);
        char *argv [] = { (char *) bin, "run", tree [p], "--broker", endpoint, "--for", "600s",
                          NULL };
        s_children [1 + p] = s_spawn (argv, log [1 + p], NULL);
    }
    deadline = tr_test_now_ms () + 120000 * (int64_t) slow;
    while (s_done_count () < 6 && tr_test_now_ms () < deadline) {
        pthread_mutex_lock (&s_seen.lock);
        bool failed = s_seen.failed [0] != '\0';
        pthread_mutex_unlock (&s_seen.lock);
        if (failed)
            break;
        usleep (20 * 1000);
    }
    int status [3];
    for (int i = 2; i >= 1; i--)
        status [i] = s_end_child (i);
    tr_node_destroy (&prober);

    pthread_mutex_lock (&s_seen.lock);
    bool ok = s_seen.done_count == 6 && !s_seen.failed [0];
    if (!ok)
        for (int i = 0; i < 3; i++)
            s_print_file (log [i]);
    ck_assert_msg (!s_seen.failed [0], "an ant failed: %s", s_seen.failed);
    ck_assert_msg (s_seen.done_count == 6, "%zu ants of 6 done", s_seen.done_count);
    for (int i = 1; i < 3; i++)
        ck_assert_msg (WIFEXITED (status [i]) && WEXITSTATUS (status [i]) == 0,
                       "child %d ended with status %d", i, status [i]);

    //  Every ant of both processes did its iterations; every deposit
    //  landed once, whichever process made it.
    int64_t updates = 0, dropped = 0, conflicts = 0, requests = 0, best_conflicts = 0;
    int64_t start [2] = { INT64_MAX, INT64_MAX }, end [2] = { 0, 0 }, per [2] = { 0, 0 };
    for (size_t i = 0; i < 6; i++) {
        s_figures_t *f = &s_seen.done [i];
        int p = f->ant [1] - '1';
        ck_assert (p == 0 || p == 1);
        ck_assert_int_eq (f->iterations, 100);
        updates += f->updates;
        dropped += f->dropped;
        conflicts += f->conflicts;
        best_conflicts += f->best_conflicts;
        requests += f->requests;
        per [p] += f->updates;
        if (f->started < start [p])
            start [p] = f->started;
        if (f->finished > end [p])
            end [p] = f->finished;
    }
    ck_assert_int_gt (per [0], 0);
    ck_assert_int_gt (per [1], 0);
    ck_assert_int_eq (updates + dropped, 600);
    //  The two processes' ants ran at the same time (measured, from their
    //  own clocks: one host).
    int64_t overlap = tr_test_overlap (start, end, 2);
    ck_assert_msg (overlap > 0, "the processes' ants did not overlap: p1 %lld..%lld, "
                   "p2 %lld..%lld", (long long) start [0], (long long) end [0],
                   (long long) start [1], (long long) end [1]);

    //  The best only ever shortened: in the order the broker versioned
    //  its values (the watch), in the events put in that order, and in
    //  the history the value carries; all three agree on how many times.
    ck_assert (!s_seen.resync);
    ck_assert_uint_ge (s_seen.watched_count, 1);
    for (size_t i = 1; i < s_seen.watched_count; i++) {
        ck_assert_uint_gt (s_seen.watched [i].version, s_seen.watched [i - 1].version);
        ck_assert_msg (s_seen.watched [i].length < s_seen.watched [i - 1].length,
                       "best %.9g after %.9g", s_seen.watched [i].length,
                       s_seen.watched [i - 1].length);
    }
    ck_assert_uint_eq (s_seen.event_count, s_seen.watched_count);
    for (size_t i = 0; i < s_seen.event_count; i++) {
        bool found = false;
        for (size_t j = 0; j < s_seen.watched_count; j++)
            found |= s_seen.watched [j].version == s_seen.events [i].version
                  && s_same_length (s_seen.watched [j].length, s_seen.events [i].length);
        ck_assert_msg (found, "event of version %llu not among the changes",
                       (unsigned long long) s_seen.events [i].version);
    }
    size_t changes = s_seen.watched_count;
    pthread_mutex_unlock (&s_seen.lock);
    double length;
    size_t improvements = s_check_best (watcher, s_seen.colony, &length);
    ck_assert_msg (s_same_length (length, s_optimum ()), "best %.9g, the optimum %.9g", length,
                   s_optimum ());
    ck_assert_uint_eq (improvements, changes);
    ck_assert_uint_eq (s_table_updates (watcher, s_seen.colony), (uint64_t) updates);
    printf ("SWARM two processes: 6 ants x 100 iterations (3 per process, %d ms apart): "
            "%lld updates (%lld and %lld), %lld conflicts (%.1f%%), %lld best conflicts, "
            "%zu improvements, %lld scratchpad requests (%.2f per iteration), overlap %lld ms\n",
            20 * slow, (long long) updates, (long long) per [0], (long long) per [1],
            (long long) conflicts, 100.0 * (double) conflicts / 600, (long long) best_conflicts,
            improvements, (long long) requests, (double) requests / 600, (long long) overlap);
    tr_node_destroy (&watcher);
    status [0] = s_end_child (0);
    fclose (broker_out);
    ck_assert_msg (WIFEXITED (status [0]) && WEXITSTATUS (status [0]) == 0,
                   "the broker ended with status %d", status [0]);
    for (int i = 0; i < 3; i++)
        unlink (log [i]);
    for (int p = 0; p < 2; p++)
        unlink (tree [p]);
    rmdir (dir);
}
END_TEST

//  A colony's keys that hold another instance's table, or no table: the
//  ant says so, publishes swarm.failed, and stops working.
START_TEST (test_other_instance)
{
    char *yaml = s_colony_yaml ("t", "ant", 1, "colony: c4, iterations: 5, seed: 1");
    s_start (yaml);
    free (yaml);
    s_figures_t f;
    s_wait_done (s_node, "ant", 1, &f, 30);
    ck_assert_str_eq (f.failed, "");
    tr_behaviour_t recorder = { .handle = s_recorder_handle };
    ck_assert_int_eq (tr_spawn (s_node, "recorder", &recorder, NULL, NULL, NULL), TR_OK);
    pthread_mutex_lock (&s_seen.lock);
    snprintf (s_seen.colony, sizeof s_seen.colony, "c4");
    s_seen.failed [0] = '\0';
    pthread_mutex_unlock (&s_seen.lock);
    ck_assert_int_eq (tr_event_subscribe (s_node, "swarm.failed", "recorder"), TR_OK);
    //  Nine of the ten cities.
    const char *nine = "name: t2\n"
                       "children:\n"
                       "  - {name: nine, actor: ant, params: {colony: c4, cities: [[74, 55], "
                       "[73, 59], [82, 90], [98, 74], [96, 45], [91, 74], [29, 8], [5, 26], "
                       "[90, 84]]}}\n";
    tr_sup_t *sup = NULL;
    tr_tree_t *tree = NULL;
    tr_test_tree_start (s_node, nine, "swarm.yaml", &tree, &sup);
    int64_t deadline = tr_test_now_ms () + 10000 * tr_test_slowdown ();
    do {
        ck_assert_int_eq (s_ask_figures (s_node, "nine", &f), TR_OK);
        usleep (5000);
    } while (!f.failed [0] && tr_test_now_ms () < deadline);
    ck_assert_msg (strstr (f.failed, "colony 'c4': c4.tau holds the pheromones of another "
                                     "instance (10 cities, fingerprint "), "%s", f.failed);
    ck_assert_msg (strstr (f.failed, "; this ant has 9 cities, fingerprint "), "%s", f.failed);
    int64_t value = 0;
    ck_assert_int_eq (tr_actor_info_get (s_node, "nine", "swarm.failed", &value), TR_OK);
    ck_assert_int_eq (value, 1);
    //  The event says the same.
    char failed [700] = "";
    while (!failed [0] && tr_test_now_ms () < deadline) {
        pthread_mutex_lock (&s_seen.lock);
        snprintf (failed, sizeof failed, "%s", s_seen.failed);
        pthread_mutex_unlock (&s_seen.lock);
        usleep (5000);
    }
    ck_assert_str_eq (failed, f.failed);
    tr_test_tree_stop (&tree, &sup);
    //  A key that holds no table.
    ck_assert_int_eq (tr_scratch_put (s_node, "c5.tau", "\xa5hello", 6, 0, 5000, NULL), TR_OK);
    yaml = s_colony_yaml ("t3", "odd", 1, "colony: c5");
    tr_test_tree_start (s_node, yaml, "swarm.yaml", &tree, &sup);
    free (yaml);
    do {
        ck_assert_int_eq (s_ask_figures (s_node, "odd1", &f), TR_OK);
        usleep (5000);
    } while (!f.failed [0] && tr_test_now_ms () < deadline);
    ck_assert_str_eq (f.failed, "colony 'c5': c5.tau is not a pheromone table (not a map)");
    ck_assert_int_eq (f.iterations, 0);
    tr_test_tree_stop (&tree, &sup);
}
END_TEST

//  Cities from a file (comments, blank lines, commas): the same instance
//  as the list, so both ants share one colony.
START_TEST (test_file)
{
    char path [] = "/tmp/tr_swarm_cities_XXXXXX";
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    FILE *file = fdopen (fd, "w");
    fputs ("# ten cities\n\n", file);
    for (int i = 0; i < S_CITIES; i++)
        fprintf (file, i % 2? "%g, %g\n": "  %g %g  \n", s_xy [i][0], s_xy [i][1]);
    fclose (file);
    char yaml [2000];
    snprintf (yaml, sizeof yaml,
              "name: t\n"
              "children:\n"
              "  - {name: from-file, actor: ant, params: {colony: c6, file: '%s', seed: 1}}\n"
              "  - {name: inline, actor: ant, params: {colony: c6, seed: 2, cities: %s}}\n",
              path, s_cities);
    s_start (yaml);
    s_figures_t f [2];
    int64_t deadline = tr_test_now_ms () + 30000 * tr_test_slowdown ();
    const char *names [] = { "from-file", "inline" };
    for (int i = 0; i < 2; i++)
        do {
            ck_assert_int_eq (s_ask_figures (s_node, names [i], &f [i]), TR_OK);
            ck_assert_msg (tr_test_now_ms () < deadline, "%s not done", names [i]);
            usleep (5000);
        } while (!f [i].done && !f [i].failed [0]);
    unlink (path);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg (!f [i].failed [0], "%s", f [i].failed);
        ck_assert_int_eq (f [i].iterations, 100);
    }
    ck_assert_uint_eq (s_table_updates (s_node, "c6"), (uint64_t) (f [0].updates + f [1].updates));
    double length;
    ck_assert_uint_ge (s_check_best (s_node, "c6", &length), 1);
    ck_assert (length <= f [0].best && length <= f [1].best);
}
END_TEST

//  A tell that is not the ant's own is logged and counted, not taken for
//  anything; an ask gets the ant's figures.
START_TEST (test_ask_and_tell)
{
    char *yaml = s_colony_yaml ("t", "ant", 1, "colony: c7, iterations: 3");
    s_start (yaml);
    free (yaml);
    s_figures_t f;
    s_wait_done (s_node, "ant", 1, &f, 30);
    ck_assert_str_eq (f.ant, "ant1");
    ck_assert_int_eq (f.iterations, 3);
    ck_assert (f.done);
    ck_assert (f.best < DBL_MAX && f.best >= s_optimum () - 1e-9);
    ck_assert_int_eq (tr_test_tell (s_node, "ant1", 42, NULL), TR_OK);
    int64_t value = 0;
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (tr_actor_info_get (s_node, "ant1", "swarm.ignored", &value) != TR_OK
       &&  tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_int_eq (value, 1);
    ck_assert_int_eq (s_ask_figures (s_node, "ant1", &f), TR_OK);
    ck_assert_int_eq (f.iterations, 3);
}
END_TEST

//  Parameters written in place of PARAMS in a tree with one ant `a`:
//  the loader's message, or the start's reason, must be `expect`.
static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "swarm.yaml", "name: t\n"
                                 "children:\n"
                                 "  - name: a\n"
                                 "    actor: ant\n", params, expect, TR_TEST_WHOLE);
}

//  A file of cities holding text.
static void
s_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    ck_assert_ptr_nonnull (file);
    fputs (text, file);
    fclose (file);
}

#define S_THREE "[[0, 0], [1, 1], [2, 2]]"

START_TEST (test_bad_params)
{
    //  The loader's checks of each key's kind.
    s_expect_error ("{cities: 3}", "swarm.yaml:5:22: parameter 'cities' of actor type 'ant' "
                    "must be a sequence, not '3'");
    s_expect_error ("{ants: 3, cities: " S_THREE "}",
                    "swarm.yaml:5:14: unknown parameter 'ants' of actor type 'ant'; expected one "
                    "of: cities, file, colony, alpha, beta, rho, iterations, seed, interval, "
                    "timeout");
    s_expect_error ("{seed: x, cities: " S_THREE "}",
                    "swarm.yaml:5:20: parameter 'seed' of actor type 'ant' must be an integer, "
                    "not 'x'");
    s_expect_error ("{interval: -1s, cities: " S_THREE "}",
                    "swarm.yaml:5:24: parameter 'interval' of actor type 'ant' must be a "
                    "duration such as 250ms or 2s, or an integer of milliseconds, not '-1s'");
    //  The ant's own check, at the value at fault.
    s_expect_error ("{cities: [[0, 0], [1, 1]]}",
                    "swarm.yaml:5:22: a: 'cities' must hold 3 to 200 cities, not 2");
    s_expect_error ("{cities: [[0, 0], [1, 1], [2]]}",
                    "swarm.yaml:5:39: a: cities item 3 must be a list of two numbers [x, y], "
                    "not a list of other values");
    s_expect_error ("{cities: [[0, 0], [1, 1], x]}",
                    "swarm.yaml:5:39: a: cities item 3 must be a list of two numbers [x, y], "
                    "not a string");
    s_expect_error ("{cities: [[0, 0], [1, 1], [10000000000, 0]]}",
                    "swarm.yaml:5:39: a: cities item 3: coordinates must be finite and at "
                    "most 1e9 in size");
    s_expect_error ("{colony: c}", "swarm.yaml:5:13: a: needs 'cities' (a list of [x, y]) or "
                    "'file' (a file of 'x y' lines)");
    s_expect_error ("{file: /x, cities: " S_THREE "}",
                    "swarm.yaml:5:20: a: takes 'cities' or 'file', not both");
    s_expect_error ("{rho: 0, cities: " S_THREE "}",
                    "swarm.yaml:5:19: a: 'rho' must be above 0 (without evaporation the first "
                    "tours rule for ever), not 0");
    s_expect_error ("{rho: 1.5, cities: " S_THREE "}",
                    "swarm.yaml:5:19: a: 'rho' must be from 0 to 1, not 1.5");
    s_expect_error ("{alpha: -1, cities: " S_THREE "}",
                    "swarm.yaml:5:21: a: 'alpha' must be from 0 to 10, not -1");
    s_expect_error ("{beta: 21, cities: " S_THREE "}",
                    "swarm.yaml:5:20: a: 'beta' must be from 0 to 20, not 21");
    s_expect_error ("{iterations: 0, cities: " S_THREE "}",
                    "swarm.yaml:5:26: a: 'iterations' must be from 1 to 10000000, not 0");
    s_expect_error ("{colony: 'a b', cities: " S_THREE "}",
                    "swarm.yaml:5:22: a: 'colony' must be 1 to 1000 bytes without spaces or "
                    "control characters (it starts scratchpad keys)");
    s_expect_error ("{timeout: 0, cities: " S_THREE "}",
                    "swarm.yaml:5:23: a: 'timeout' must be from 1 ms to 3600000 ms, not 0 ms");
    //  Files of cities.
    s_expect_error ("{file: /nonexistent/cities.txt}",
                    "swarm.yaml:5:20: a: cannot read the cities file '/nonexistent/cities.txt': "
                    "No such file or directory");
    char path [] = "/tmp/tr_swarm_bad_XXXXXX";
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    close (fd);
    char params [200], expect [400];
    snprintf (params, sizeof params, "{file: %s}", path);
    s_write (path, "1 2\n# a comment\na b\n");
    snprintf (expect, sizeof expect, "swarm.yaml:5:20: a: cities file '%s' line 3: expected "
              "two numbers 'x y', not 'a b'", path);
    s_expect_error (params, expect);
    s_write (path, "1 2 3\n");
    snprintf (expect, sizeof expect, "swarm.yaml:5:20: a: cities file '%s' line 1: expected "
              "two numbers 'x y', not '1 2 3'", path);
    s_expect_error (params, expect);
    s_write (path, "1 2\n\n3 4\n");
    snprintf (expect, sizeof expect, "swarm.yaml:5:20: a: cities file '%s' holds 2 cities; "
              "3 to 200 are needed", path);
    s_expect_error (params, expect);
    s_write (path, "1 2\n3 inf\n5 6\n");
    snprintf (expect, sizeof expect, "swarm.yaml:5:20: a: cities file '%s' line 2: "
              "coordinates must be finite and at most 1e9 in size", path);
    s_expect_error (params, expect);
    unlink (path);
    //  Nested deeper in a block: the item's own line and column.
    s_expect_error ("\n"
                    "      colony: c\n"
                    "      cities:\n"
                    "        - [0, 0]\n"
                    "        - [1, 1]\n"
                    "        - {x: 2, y: 2}\n",
                    "swarm.yaml:10:11: a: cities item 3 must be a list of two numbers [x, y], "
                    "not a mapping");
}
END_TEST

//  Checked again when the ant starts: from C with parameters of its own,
//  and on a node with no broker, which a tree file cannot know of.
START_TEST (test_start_checks)
{
    const tr_actor_type_t *type = tr_actor_type_find ("ant");
    ck_assert_ptr_nonnull (type);
    static const uint8_t empty [] = { 0x81, 0xa6, 'c', 'i', 't', 'i', 'e', 's', 0x90 };
    tr_params_t params = { empty, sizeof empty };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    tr_node_t *alone = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &alone), TR_OK);
    char yaml [600];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n"
              "  - {name: a, actor: ant, params: {cities: %s}}\n", s_cities);
    char *reason = tr_test_tree_error (alone, yaml, "swarm.yaml");
    ck_assert_msg (reason && strstr (reason, "ant 'a': needs a broker: the colony's pheromones "
                                     "are in the scratchpad (troupe run has one unless "
                                     "--no-broker)"), "%s", reason? reason: "(none)");
    free (reason);
    tr_node_destroy (&alone);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_swarm");
    TCase *tc = tcase_create ("swarm");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 600);
    tcase_add_test (tc, test_optimum);
    tcase_add_test (tc, test_converges);
    tcase_add_test (tc, test_conflicts_retried);
    tcase_add_test (tc, test_best_only_shortens);
    tcase_add_test (tc, test_two_processes);
    tcase_add_test (tc, test_other_instance);
    tcase_add_test (tc, test_file);
    tcase_add_test (tc, test_ask_and_tell);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_start_checks);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
