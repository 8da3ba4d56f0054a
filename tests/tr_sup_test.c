/*  tr_sup_test.c - supervisors: strategies, restart types, intensity and
    escalation, backoff, circuit breakers, restarts that keep the mailbox,
    handling timeouts, process children, and the control functions.

    Trees are real YAML parsed by the tree loader. A test actor type,
    "rec", writes "+NAME" to a journal when an incarnation starts and
    "-NAME" when it ends, so that each test checks the exact order of
    starts and stops. An event recorder subscribed to "sys." keeps the
    system events with the time they arrived.
*/

#include "tr_test.h"

#include <czmq.h>
#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/stat.h>

//  --------------------------------------------------------------------------
//  The journal

static pthread_mutex_t s_journal_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_journal [8192];

static void
s_note (const char *sign, const char *name)
{
    pthread_mutex_lock (&s_journal_lock);
    size_t len = strlen (s_journal);
    snprintf (s_journal + len, sizeof s_journal - len, "%s%s%s",
              len? " ": "", sign, name);
    pthread_mutex_unlock (&s_journal_lock);
}

static void
s_journal_clear (void)
{
    pthread_mutex_lock (&s_journal_lock);
    s_journal [0] = 0;
    pthread_mutex_unlock (&s_journal_lock);
}

//  Waits until the journal reads `expected` (exactly), then clears it.
static void
s_expect_journal (const char *expected)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char copy [sizeof s_journal];
    while (true) {
        pthread_mutex_lock (&s_journal_lock);
        memcpy (copy, s_journal, sizeof copy);
        pthread_mutex_unlock (&s_journal_lock);
        if (strcmp (copy, expected) == 0 || tr_test_now_ms () > deadline)
            break;
        usleep (1000);
    }
    ck_assert_str_eq (copy, expected);
    s_journal_clear ();
}

//  --------------------------------------------------------------------------
//  The "rec" actor type
//
//  Bodies are strings: "fail" fails the handler, "exit" ends the
//  incarnation with a failure, "stop" ends it normally, "hang MS" sleeps,
//  "n" counts (a tell), "count" answers the count of "n" in this
//  incarnation and "inc" answers the incarnation number.

typedef struct {
    uint64_t count;
    uint64_t incarnation;
} s_rec_t;

static pthread_mutex_t s_inc_lock = PTHREAD_MUTEX_INITIALIZER;
static zhashx_t *s_incarnations;        //  name -> count of inits
static atomic_int s_refuse_init;        //  inits refused while set

static int
s_rec_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) arg;
    if (atomic_load (&s_refuse_init))
        return -1;
    s_rec_t *rec = (s_rec_t *) calloc (1, sizeof *rec);
    pthread_mutex_lock (&s_inc_lock);
    uintptr_t n = (uintptr_t) zhashx_lookup (s_incarnations, tr_actor_name (self)) + 1;
    zhashx_update (s_incarnations, tr_actor_name (self), (void *) n);
    pthread_mutex_unlock (&s_inc_lock);
    rec->incarnation = n;
    *state_p = rec;
    s_note ("+", tr_actor_name (self));
    return 0;
}

static bool
s_body_is (const tr_msg_t *msg, const char *word)
{
    const char *text;
    size_t len;
    return tr_msg_str (msg, &text, &len) == TR_OK
        && len == strlen (word) && memcmp (text, word, len) == 0;
}

static void *
s_answer_later (void *arg)
{
    tr_msg_t *msg = (tr_msg_t *) arg;
    usleep (2000);
    if (s_body_is (msg, "defer-ok")) {
        tr_body_t body;
        tr_body_uint (&body, 1);
        tr_reply (msg, body.data, body.size);
    }
    else
        tr_reply_error (msg, s_body_is (msg, "defer-bad")? TR_EINVAL: TR_EHTTP);
    tr_msg_destroy (&msg);
    return NULL;
}

static int
s_rec_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_rec_t *rec = (s_rec_t *) state;
    const char *text = "";
    size_t len = 0;
    tr_msg_str (msg, &text, &len);
    if (s_body_is (msg, "fail"))
        return -1;
    if (s_body_is (msg, "exit"))
        return tr_actor_exit (self, TR_ECHILD, "told to exit");
    if (s_body_is (msg, "stop"))
        return tr_actor_exit (self, TR_OK, "told to stop");
    if (len > 5 && len < 16 && memcmp (text, "hang ", 5) == 0) {
        char digits [16];
        memcpy (digits, text + 5, len - 5);
        digits [len - 5] = 0;
        usleep ((useconds_t) atoi (digits) * 1000);
    }
    if (s_body_is (msg, "n"))
        rec->count++;
    //  "defer-ok", "defer-fail", "defer-bad": answered after the handler
    //  returns, from another thread, with a reply, TR_EHTTP or TR_EINVAL.
    if (len > 6 && memcmp (text, "defer-", 6) == 0) {
        tr_msg_t *later = tr_defer (msg);
        ck_assert_ptr_nonnull (later);
        pthread_t thread;
        ck_assert_int_eq (pthread_create (&thread, NULL, s_answer_later, later), 0);
        pthread_detach (thread);
        return 0;
    }
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    tr_body_t body;
    tr_body_uint (&body, s_body_is (msg, "count")? rec->count: rec->incarnation);
    return tr_reply (msg, body.data, body.size);
}

static void
s_rec_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_note ("-", tr_actor_name (self));
    free (state);
}

static const tr_actor_type_t s_rec_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "rec",
    .summary = "journals its starts and stops; fails on command",
    .behaviour = { s_rec_init, s_rec_handle, s_rec_terminate },
};

//  --------------------------------------------------------------------------
//  The event recorder

#define S_EVENTS 512

typedef struct {
    char topic [48];
    char name [64];
    int64_t at_ms;
} s_event_t;

static pthread_mutex_t s_events_lock = PTHREAD_MUTEX_INITIALIZER;
static s_event_t s_events [S_EVENTS];
static size_t s_event_count;

//  Reads the "name" field of an event body (a map), or "to" for dead
//  letters.
static void
s_event_name (tr__mp_t *mp, char *name, size_t size)
{
    uint32_t pairs;
    name [0] = 0;
    if (tr__mp_map (mp, &pairs))
        return;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *key, *value;
        uint32_t key_len, value_len;
        if (tr__mp_str (mp, &key, &key_len))
            return;
        bool wanted = (key_len == 4 && memcmp (key, "name", 4) == 0)
                   || (key_len == 2 && memcmp (key, "to", 2) == 0);
        if (wanted && tr__mp_str (mp, &value, &value_len) == 0) {
            snprintf (name, size, "%.*s", (int) value_len, value);
            return;
        }
        if (!wanted && tr__mp_skip (mp, 8))
            return;
    }
}

static int
s_recorder_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    tr__mp_t mp;
    uint32_t n;
    const char *topic;
    uint32_t topic_len;
    tr__mp_init (&mp, tr_msg_body (msg), tr_msg_size (msg));
    if (tr__mp_array (&mp, &n) || n != 2 || tr__mp_str (&mp, &topic, &topic_len))
        return 0;
    pthread_mutex_lock (&s_events_lock);
    if (s_event_count < S_EVENTS) {
        s_event_t *e = &s_events [s_event_count++];
        snprintf (e->topic, sizeof e->topic, "%.*s", (int) topic_len, topic);
        s_event_name (&mp, e->name, sizeof e->name);
        e->at_ms = tr_test_now_ms ();
    }
    pthread_mutex_unlock (&s_events_lock);
    return 0;
}

static const tr_behaviour_t s_recorder = { .handle = s_recorder_handle };

//  The number of events with that topic and name so far.
static size_t
s_events_of (const char *topic, const char *name)
{
    size_t n = 0;
    pthread_mutex_lock (&s_events_lock);
    for (size_t i = 0; i < s_event_count; i++)
        if (strcmp (s_events [i].topic, topic) == 0 && strcmp (s_events [i].name, name) == 0)
            n++;
    pthread_mutex_unlock (&s_events_lock);
    return n;
}

//  The time of the index-th (0-based) such event, or -1.
static int64_t
s_event_time (const char *topic, const char *name, size_t index)
{
    int64_t at = -1;
    pthread_mutex_lock (&s_events_lock);
    for (size_t i = 0; i < s_event_count && at < 0; i++)
        if (strcmp (s_events [i].topic, topic) == 0 && strcmp (s_events [i].name, name) == 0
        &&  index-- == 0)
            at = s_events [i].at_ms;
    pthread_mutex_unlock (&s_events_lock);
    return at;
}

typedef struct {
    const char *topic;
    const char *name;
    size_t count;
} s_event_wait_t;

static bool
s_enough_events (void *arg)
{
    s_event_wait_t *w = (s_event_wait_t *) arg;
    return s_events_of (w->topic, w->name) >= w->count;
}

//  Waits until there are `count` events with that topic and name.
static void
s_expect_events (const char *topic, const char *name, size_t count)
{
    s_event_wait_t w = { topic, name, count };
    bool ok = tr_test_wait_until (s_enough_events, &w, 5000 * tr_test_slowdown ());
    ck_assert_msg (ok, "expected %zu %s events of %s, have %zu",
                   count, topic, name, s_events_of (topic, name));
}

//  --------------------------------------------------------------------------
//  Fixture

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

static void
s_setup (void)
{
    if (!tr_actor_type_find ("rec"))
        ck_assert_int_eq (tr_actor_type_register (&s_rec_type), TR_OK);
    pthread_mutex_lock (&s_inc_lock);
    if (!s_incarnations)
        s_incarnations = zhashx_new ();
    zhashx_purge (s_incarnations);
    pthread_mutex_unlock (&s_inc_lock);
    atomic_store (&s_refuse_init, 0);
    s_journal_clear ();
    pthread_mutex_lock (&s_events_lock);
    s_event_count = 0;
    pthread_mutex_unlock (&s_events_lock);
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    ck_assert_int_eq (tr_spawn (s_node, "recorder", &s_recorder, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "sys.", "recorder"), TR_OK);
    s_tree = NULL;
    s_sup = NULL;
}

static void
s_teardown (void)
{
    tr_sup_stop (&s_sup);
    tr_node_destroy (&s_node);
    tr_tree_destroy (&s_tree);
}

//  Loads a tree from YAML text and starts it; asserts success.
static void
s_start (const char *yaml)
{
    tr_tree_error_t err;
    int rc = tr_tree_parse (yaml, strlen (yaml), "test.yaml", &s_tree, &err);
    char text [600];
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, text, sizeof text));
    char *reason = NULL;
    rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
    free (reason);
}

//  Tells `to` a string body.
static int
s_tell (const char *to, const char *text)
{
    tr_body_t body = tr_test_pack_str (text);
    return tr_tell (s_node, to, body.data, body.size, NULL);
}

//  Asks `to` with a string body; returns the error, and the uint answer
//  in *value.
static int
s_ask (const char *to, const char *text, uint64_t *value)
{
    tr_body_t body = tr_test_pack_str (text);
    tr_msg_t *reply = NULL;
    int rc = tr_ask (s_node, to, body.data, body.size, 5000 * tr_test_slowdown (), &reply, NULL);
    if (rc == TR_OK) {
        uint64_t v = tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply));
        if (value)
            *value = v;
        tr_msg_destroy (&reply);
    }
    return rc;
}

//  The incarnation of `name` once it answers.
static uint64_t
s_incarnation (const char *name)
{
    uint64_t inc = 0;
    int rc = s_ask (name, "inc", &inc);
    ck_assert_msg (rc == TR_OK, "ask %s: %s", name, tr_errname (rc));
    return inc;
}

//  Looks up the value of `key` for the child `name` in the status map,
//  as a string (copied into out) or an integer (*number).
static bool
s_status_find (tr__mp_t *mp, const char *name, const char *key, char *out,
               size_t size, int64_t *number, int depth)
{
    uint32_t pairs;
    if (depth > 16 || tr__mp_map (mp, &pairs))
        return false;
    //  Two passes over this map: learn whether it is the child, then read.
    tr__mp_t again = *mp;
    bool mine = false;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        if (tr__mp_str (mp, &k, &kl))
            return false;
        if (kl == 4 && memcmp (k, "name", 4) == 0 && tr__mp_str (mp, &v, &vl) == 0)
            mine = vl == strlen (name) && memcmp (v, name, vl) == 0;
        else
        if (kl == 8 && memcmp (k, "children", 8) == 0) {
            uint32_t n;
            if (tr__mp_array (mp, &n))
                return false;
            for (uint32_t c = 0; c < n; c++)
                if (s_status_find (mp, name, key, out, size, number, depth + 1))
                    return true;
        }
        else
        if (tr__mp_skip (mp, 16))
            return false;
    }
    if (!mine)
        return false;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        tr__mp_str (&again, &k, &kl);
        if (kl == strlen (key) && memcmp (k, key, kl) == 0) {
            if (out && tr__mp_str (&again, &v, &vl) == 0)
                snprintf (out, size, "%.*s", (int) vl, v);
            else
            if (number)
                tr__mp_int (&again, number);
            return true;
        }
        //  The breaker's state sits in a nested map.
        if (kl == 7 && memcmp (k, "breaker", 7) == 0 && strncmp (key, "breaker.", 8) == 0) {
            uint32_t bp;
            tr__mp_map (&again, &bp);
            for (uint32_t b = 0; b < bp; b++) {
                tr__mp_str (&again, &k, &kl);
                if (kl == strlen (key + 8) && memcmp (k, key + 8, kl) == 0) {
                    if (out && tr__mp_str (&again, &v, &vl) == 0)
                        snprintf (out, size, "%.*s", (int) vl, v);
                    else
                    if (number)
                        tr__mp_int (&again, number);
                    return true;
                }
                tr__mp_skip (&again, 16);
            }
            return false;
        }
        tr__mp_skip (&again, 16);
    }
    return false;
}

//  A string field of a child in the live status ("" if absent).
static void
s_status_str (const char *name, const char *key, char *out, size_t size)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq (tr_sup_status (s_sup, &buf, &len), TR_OK);
    tr__mp_t mp;
    tr__mp_init (&mp, buf, len);
    out [0] = 0;
    s_status_find (&mp, name, key, out, size, NULL, 0);
    free (buf);
}

//  An integer field of a child in the live status (-1 if absent).
static int64_t
s_status_int (const char *name, const char *key)
{
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq (tr_sup_status (s_sup, &buf, &len), TR_OK);
    tr__mp_t mp;
    tr__mp_init (&mp, buf, len);
    int64_t value = -1;
    s_status_find (&mp, name, key, NULL, 0, &value, 0);
    free (buf);
    return value;
}

typedef struct {
    const char *name;
    const char *key;
    const char *value;
} s_status_wait_t;

static bool
s_status_is (void *arg)
{
    s_status_wait_t *w = (s_status_wait_t *) arg;
    char value [128];
    s_status_str (w->name, w->key, value, sizeof value);
    return strcmp (value, w->value) == 0;
}

static void
s_expect_status (const char *name, const char *key, const char *value)
{
    s_status_wait_t w = { name, key, value };
    if (!tr_test_wait_until (s_status_is, &w, 5000 * tr_test_slowdown ())) {
        char now [128];
        s_status_str (name, key, now, sizeof now);
        ck_abort_msg ("%s.%s is '%s', expected '%s'", name, key, now, value);
    }
}

#define S_THREE(strategy) \
    "name: root\n" \
    "strategy: " strategy "\n" \
    "intensity: {max_restarts: 10, period: 10s}\n" \
    "defaults: {backoff: {min: 0ms, max: 0ms, jitter: 0}, breaker: off}\n" \
    "children:\n" \
    "  - {name: a, actor: rec}\n" \
    "  - {name: b, actor: rec}\n" \
    "  - {name: c, actor: rec}\n"

//  --------------------------------------------------------------------------
//  Strategies

START_TEST (test_start_and_stop_order)
{
    s_start (S_THREE ("one_for_one"));
    s_expect_journal ("+a +b +c");
    ck_assert_str_eq (tr_sup_name (s_sup), "root");
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_OK);
    ck_assert_ptr_null (s_sup);
    s_expect_journal ("-c -b -a");
    //  Names are free again.
    ck_assert_int_eq (tr_tell (s_node, "a", "\xc0", 1, NULL), TR_ENOACTOR);
}
END_TEST

START_TEST (test_one_for_one)
{
    s_start (S_THREE ("one_for_one"));
    s_expect_journal ("+a +b +c");
    ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
    s_expect_journal ("-b +b");
    ck_assert_uint_eq (s_incarnation ("b"), 2);
    ck_assert_uint_eq (s_incarnation ("a"), 1);
    ck_assert_uint_eq (s_incarnation ("c"), 1);
    ck_assert_int_eq (s_status_int ("b", "restarts"), 1);
    char failure [128];
    s_status_str ("b", "failure", failure, sizeof failure);
    ck_assert_msg (strlen (failure) > 0, "the failure reason is in status");
    s_expect_events ("sys.actor.failed", "b", 1);
    s_expect_events ("sys.actor.restarted", "b", 1);
}
END_TEST

START_TEST (test_one_for_all)
{
    s_start (S_THREE ("one_for_all"));
    s_expect_journal ("+a +b +c");
    ck_assert_int_eq (s_tell ("b", "exit"), TR_OK);
    s_expect_journal ("-b -c -a +a +b +c");
    ck_assert_uint_eq (s_incarnation ("a"), 2);
    ck_assert_uint_eq (s_incarnation ("b"), 2);
    ck_assert_uint_eq (s_incarnation ("c"), 2);
}
END_TEST

START_TEST (test_rest_for_one)
{
    s_start (S_THREE ("rest_for_one"));
    s_expect_journal ("+a +b +c");
    ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
    s_expect_journal ("-b -c +b +c");
    ck_assert_uint_eq (s_incarnation ("a"), 1);
    ck_assert_uint_eq (s_incarnation ("b"), 2);
    //  The last child takes only itself along.
    ck_assert_int_eq (s_tell ("c", "fail"), TR_OK);
    s_expect_journal ("-c +c");
    //  The first takes everyone.
    ck_assert_int_eq (s_tell ("a", "fail"), TR_OK);
    s_expect_journal ("-a -c -b +a +b +c");
}
END_TEST

START_TEST (test_simple_one_for_one)
{
    s_start ("name: root\n"
             "children:\n"
             "  - name: pool\n"
             "    supervisor:\n"
             "      strategy: simple_one_for_one\n"
             "      intensity: {max_restarts: 10, period: 10s}\n"
             "      template: {actor: rec, backoff: {min: 0ms, max: 0ms, jitter: 0}}\n"
             "  - name: temps\n"
             "    supervisor:\n"
             "      strategy: simple_one_for_one\n"
             "      template: {actor: rec, restart: temporary}\n");
    s_expect_journal ("");
    ck_assert_int_eq (tr_sup_add_child (s_node, "pool", "w1"), TR_OK);
    ck_assert_int_eq (tr_sup_add_child (s_node, "pool", "w2"), TR_OK);
    s_expect_journal ("+w1 +w2");
    ck_assert_int_eq (tr_sup_add_child (s_node, "pool", "w1"), TR_EEXIST);
    ck_assert_int_eq (tr_sup_add_child (s_node, "nope", "w3"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_sup_add_child (s_node, "root", "w3"), TR_EINVAL);
    ck_assert_int_eq (tr_sup_add_child (s_node, "pool", "bad name"), TR_EINVAL);
    ck_assert_int_eq (s_tell ("w1", "fail"), TR_OK);
    s_expect_journal ("-w1 +w1");
    ck_assert_uint_eq (s_incarnation ("w2"), 1);
    //  A temporary dynamic child is gone after it fails, name and all.
    ck_assert_int_eq (tr_sup_add_child (s_node, "temps", "t1"), TR_OK);
    s_expect_journal ("+t1");
    ck_assert_int_eq (s_tell ("t1", "fail"), TR_OK);
    s_expect_journal ("-t1");
    s_expect_events ("sys.actor.failed", "t1", 1);
    ck_assert_int_eq (tr_sup_add_child (s_node, "temps", "t1"), TR_OK);
    s_expect_journal ("+t1");
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_OK);
    s_expect_journal ("-t1 -w2 -w1");
}
END_TEST

//  --------------------------------------------------------------------------
//  Restart types

START_TEST (test_restart_types)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 10, period: 10s}\n"
             "defaults: {backoff: {min: 0ms, max: 0ms, jitter: 0}, breaker: off}\n"
             "children:\n"
             "  - {name: perm, actor: rec, restart: permanent}\n"
             "  - {name: trans, actor: rec, restart: transient}\n"
             "  - {name: temp, actor: rec, restart: temporary}\n");
    s_expect_journal ("+perm +trans +temp");
    //  permanent: even a normal exit is restarted.
    ck_assert_int_eq (s_tell ("perm", "stop"), TR_OK);
    s_expect_journal ("-perm +perm");
    //  transient: a failure is restarted, a normal exit is not.
    ck_assert_int_eq (s_tell ("trans", "exit"), TR_OK);
    s_expect_journal ("-trans +trans");
    ck_assert_int_eq (s_tell ("trans", "stop"), TR_OK);
    s_expect_journal ("-trans");
    s_expect_status ("trans", "state", "stopped");
    ck_assert_int_eq (s_tell ("trans", "n"), TR_ENOACTOR);
    //  temporary: not even a failure.
    ck_assert_int_eq (s_tell ("temp", "fail"), TR_OK);
    s_expect_journal ("-temp");
    s_expect_status ("temp", "state", "stopped");
    //  Either can be started by hand.
    ck_assert_int_eq (tr_sup_start_child (s_node, "trans"), TR_OK);
    ck_assert_int_eq (tr_sup_start_child (s_node, "temp"), TR_OK);
    s_expect_journal ("+trans +temp");
    ck_assert_int_eq (tr_sup_start_child (s_node, "temp"), TR_EEXIST);
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_OK);
    s_expect_journal ("-temp -trans -perm");
}
END_TEST

//  --------------------------------------------------------------------------
//  Intensity and escalation

START_TEST (test_intensity_root_fails)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 2, period: 10s}\n"
             "defaults: {backoff: {min: 0ms, max: 0ms, jitter: 0}, breaker: off}\n"
             "children:\n"
             "  - {name: a, actor: rec}\n"
             "  - {name: b, actor: rec}\n"
             "  - {name: c, actor: rec}\n");
    s_expect_journal ("+a +b +c");
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
        s_expect_journal ("-b +b");
    }
    char *reason = NULL;
    ck_assert_int_eq (tr_sup_wait (s_sup, 0, &reason), TR_ETIMEDOUT);
    ck_assert_ptr_null (reason);
    //  The third restart within the period is one too many: the others
    //  stop in reverse order and the root fails.
    ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
    ck_assert_int_eq (tr_sup_wait (s_sup, 5000 * tr_test_slowdown (), &reason), TR_EINTENSITY);
    s_expect_journal ("-b -c -a");
    ck_assert_ptr_nonnull (reason);
    ck_assert_msg (strstr (reason, "root") && strstr (reason, "'b'"), "reason: %s", reason);
    free (reason);
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_OK);
}
END_TEST

START_TEST (test_escalation_chain)
{
    //  inner gives up after one restart; root restarts it once, then
    //  gives up too, and the chain names both levels.
    s_start ("name: root\n"
             "intensity: {max_restarts: 1, period: 10s}\n"
             "defaults: {backoff: {min: 0ms, max: 0ms, jitter: 0}, breaker: off}\n"
             "children:\n"
             "  - {name: first, actor: rec}\n"
             "  - name: inner\n"
             "    supervisor:\n"
             "      intensity: {max_restarts: 1, period: 10s}\n"
             "      children:\n"
             "        - {name: x, actor: rec}\n"
             "        - {name: y, actor: rec}\n"
             "  - {name: last, actor: rec}\n");
    s_expect_journal ("+first +x +y +last");
    ck_assert_int_eq (s_tell ("y", "fail"), TR_OK);
    s_expect_journal ("-y +y");
    //  inner's second restart is too many: it stops its children and
    //  fails; root restarts inner (one restart, within root's intensity).
    ck_assert_int_eq (s_tell ("y", "fail"), TR_OK);
    s_expect_journal ("-y -x +x +y");
    s_expect_events ("sys.actor.restarted", "inner", 1);
    ck_assert_uint_eq (s_incarnation ("first"), 1);
    ck_assert_uint_eq (s_incarnation ("last"), 1);
    ck_assert_int_eq (s_tell ("y", "fail"), TR_OK);
    s_expect_journal ("-y +y");
    ck_assert_int_eq (s_tell ("y", "fail"), TR_OK);
    char *reason = NULL;
    ck_assert_int_eq (tr_sup_wait (s_sup, 5000 * tr_test_slowdown (), &reason), TR_EINTENSITY);
    s_expect_journal ("-y -x -last -first");
    ck_assert_ptr_nonnull (reason);
    char *root_at = strstr (reason, "'root'");
    char *inner_at = strstr (reason, "'inner'");
    char *y_at = strstr (reason, "'y'");
    ck_assert_msg (root_at && inner_at && y_at && root_at < inner_at && inner_at < y_at,
                   "the chain goes root, inner, y: %s", reason);
    free (reason);
}
END_TEST

//  --------------------------------------------------------------------------
//  Backoff

START_TEST (test_backoff_delays)
{
    const int k = tr_test_slowdown ();
    s_start ("name: root\n"
             "intensity: {max_restarts: 20, period: 60s}\n"
             "children:\n"
             "  - name: b\n"
             "    actor: rec\n"
             "    breaker: off\n"
             "    backoff: {min: 100ms, max: 400ms, jitter: 0, reset_after: 1s}\n");
    s_expect_journal ("+b");
    //  Failures in a row wait 100, 200, 400, 400 ms.
    const int64_t delays [] = { 100, 200, 400, 400 };
    for (size_t i = 0; i < 4; i++) {
        int64_t sent = tr_test_now_ms ();
        ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
        s_expect_journal ("-b +b");
        int64_t took = tr_test_now_ms () - sent;
        ck_assert_msg (took >= delays [i] - 5 && took < delays [i] + 150 * k,
                       "restart %zu took %lld ms, expected about %lld",
                       i + 1, (long long) took, (long long) delays [i]);
    }
    //  After a healthy second the delay is back at its minimum.
    usleep (1200 * 1000);
    int64_t sent = tr_test_now_ms ();
    ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
    s_expect_journal ("-b +b");
    int64_t took = tr_test_now_ms () - sent;
    ck_assert_msg (took >= 95 && took < 100 + 150 * k, "reset backoff took %lld ms", (long long) took);
}
END_TEST

START_TEST (test_backoff_jitter)
{
    //  With jitter 0.5 the delays spread within [50, 150] ms around 100.
    s_start ("name: root\n"
             "intensity: {max_restarts: 50, period: 60s}\n"
             "children:\n"
             "  - name: b\n"
             "    actor: rec\n"
             "    breaker: off\n"
             "    backoff: {min: 100ms, max: 100ms, jitter: 0.5, reset_after: 1h}\n");
    s_expect_journal ("+b");
    int64_t low = INT64_MAX, high = 0;
    for (int i = 0; i < 8; i++) {
        size_t before = s_events_of ("sys.actor.failed", "b");
        ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
        s_expect_journal ("-b +b");
        s_expect_events ("sys.actor.restarted", "b", (size_t) i + 1);
        int64_t failed = s_event_time ("sys.actor.failed", "b", before);
        int64_t restarted = s_event_time ("sys.actor.restarted", "b", (size_t) i);
        int64_t took = restarted - failed;
        low = took < low? took: low;
        high = took > high? took: high;
        ck_assert_msg (took >= 45, "a delay of %lld ms is below the jitter's floor", (long long) took);
    }
    ck_assert_msg (high > low, "jitter spreads the delays (all were %lld ms)", (long long) low);
}
END_TEST

//  --------------------------------------------------------------------------
//  Mailboxes across restarts

START_TEST (test_mailbox_survives_restart)
{
    s_start ("name: root\n"
             "children:\n"
             "  - name: m\n"
             "    actor: rec\n"
             "    breaker: off\n"
             "    backoff: {min: 300ms, max: 300ms, jitter: 0}\n");
    s_expect_journal ("+m");
    ck_assert_int_eq (s_tell ("m", "n"), TR_OK);
    ck_assert_int_eq (s_tell ("m", "fail"), TR_OK);
    //  Sent while m is down and waiting for its backoff: handled by the
    //  next incarnation, none lost.
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq (s_tell ("m", "n"), TR_OK);
    uint64_t count = 0;
    ck_assert_int_eq (s_ask ("m", "count", &count), TR_OK);
    ck_assert_uint_eq (count, 5);
    ck_assert_uint_eq (s_incarnation ("m"), 2);
    s_expect_journal ("-m +m");
    //  The failed message is a dead letter, reported once.
    s_expect_events ("sys.dead_letter", "m", 1);
    tr_actor_stats_t stats;
    ck_assert_int_eq (tr_actor_stats (s_node, "m", &stats), TR_OK);
    ck_assert_uint_eq (stats.failed, 1);
    ck_assert_uint_eq (stats.handled, 1 + 5 + 2);
}
END_TEST

START_TEST (test_failed_ask_answered)
{
    s_start ("name: root\n"
             "children:\n"
             "  - {name: m, actor: rec, breaker: off, backoff: {min: 0ms, max: 0ms}}\n");
    //  The sender of the failing ask hears the failure; it is not retried.
    ck_assert_int_eq (s_ask ("m", "fail", NULL), TR_EHANDLER);
    ck_assert_int_eq (s_ask ("m", "exit", NULL), TR_EHANDLER);
    ck_assert_uint_eq (s_incarnation ("m"), 3);
}
END_TEST

START_TEST (test_handle_timeout)
{
    s_start ("name: root\n"
             "children:\n"
             "  - name: slow\n"
             "    actor: rec\n"
             "    handle_timeout: 100ms\n"
             "    breaker: off\n"
             "    backoff: {min: 0ms, max: 0ms}\n");
    s_expect_journal ("+slow");
    ck_assert_int_eq (s_tell ("slow", "hang 600"), TR_OK);
    //  Counted as failing while its handler is still running...
    s_expect_events ("sys.actor.hung", "slow", 1);
    s_expect_status ("slow", "state", "hung");
    //  ...and restarted once it returns.
    s_expect_journal ("-slow +slow");
    ck_assert_uint_eq (s_incarnation ("slow"), 2);
    ck_assert_int_eq (s_status_int ("slow", "restarts"), 1);
}
END_TEST

//  --------------------------------------------------------------------------
//  Circuit breakers

START_TEST (test_breaker_transitions)
{
    const int k = tr_test_slowdown ();
    s_start ("name: root\n"
             "intensity: {max_restarts: 100, period: 10s}\n"
             "children:\n"
             "  - name: br\n"
             "    actor: rec\n"
             "    backoff: {min: 0ms, max: 0ms}\n"
             "    breaker: {failures: 2, reset_timeout: 300ms, half_open_trials: 1,\n"
             "              factor: 2, max_reset_timeout: 1s}\n");
    s_expect_status ("br", "breaker.state", "closed");
    //  A success in between resets the count of failures in a row.
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    ck_assert_int_eq (s_ask ("br", "inc", NULL), TR_OK);
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    s_expect_status ("br", "breaker.state", "closed");
    //  Two in a row open it: asks and tells fail at once.
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    s_expect_events ("sys.breaker.opened", "br", 1);
    s_expect_status ("br", "breaker.state", "open");
    int64_t opened = s_event_time ("sys.breaker.opened", "br", 0);
    ck_assert_int_eq (s_ask ("br", "inc", NULL), TR_ECIRCUIT);
    ck_assert_int_eq (s_tell ("br", "n"), TR_ECIRCUIT);
    tr_actor_stats_t stats;
    ck_assert_int_eq (tr_actor_stats (s_node, "br", &stats), TR_OK);
    ck_assert_uint_ge (stats.rejected, 2);
    //  After the reset timeout, half-open: one trial goes through; it
    //  fails, so the breaker opens again for twice as long.
    while (s_tell ("br", "fail") == TR_ECIRCUIT)
        usleep (5000);
    int64_t half = tr_test_now_ms ();
    ck_assert_msg (half - opened >= 290, "half-open after %lld ms", (long long) (half - opened));
    s_expect_events ("sys.breaker.half_open", "br", 1);
    s_expect_events ("sys.breaker.opened", "br", 2);
    int64_t reopened = s_event_time ("sys.breaker.opened", "br", 1);
    //  The second open lasts about 600 ms.
    while (s_ask ("br", "inc", NULL) == TR_ECIRCUIT)
        usleep (5000);
    int64_t second = tr_test_now_ms () - reopened;
    ck_assert_msg (second >= 590 && second < 600 + 300 * k,
                   "the second open lasted %lld ms, expected about 600", (long long) second);
    //  That trial succeeded: closed.
    s_expect_events ("sys.breaker.closed", "br", 1);
    s_expect_status ("br", "breaker.state", "closed");
    ck_assert_int_eq (s_ask ("br", "inc", NULL), TR_OK);
}
END_TEST

//  Asks answered after the handler returned count when they are answered:
//  errors open the breaker, though every handler returned success; the
//  asker's own mistakes (TR_EINVAL) do not count.
START_TEST (test_breaker_counts_deferred_answers)
{
    s_start ("name: root\n"
             "children:\n"
             "  - name: br\n"
             "    actor: rec\n"
             "    backoff: {min: 0ms, max: 0ms}\n"
             "    breaker: {failures: 3, reset_timeout: 10s}\n");
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq (s_ask ("br", "defer-bad", NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask ("br", "defer-fail", NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("br", "defer-fail", NULL), TR_EHTTP);
    //  A success in between resets the count of failures in a row.
    ck_assert_int_eq (s_ask ("br", "defer-ok", NULL), TR_OK);
    ck_assert_int_eq (s_ask ("br", "defer-fail", NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("br", "defer-fail", NULL), TR_EHTTP);
    s_expect_status ("br", "breaker.state", "closed");
    ck_assert_int_eq (s_ask ("br", "defer-fail", NULL), TR_EHTTP);
    s_expect_events ("sys.breaker.opened", "br", 1);
    s_expect_status ("br", "breaker.state", "open");
    ck_assert_int_eq (s_ask ("br", "defer-ok", NULL), TR_ECIRCUIT);
}
END_TEST

START_TEST (test_breaker_half_open_trials)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 100, period: 10s}\n"
             "children:\n"
             "  - name: br\n"
             "    actor: rec\n"
             "    backoff: {min: 0ms, max: 0ms}\n"
             "    breaker: {failures: 1, reset_timeout: 100ms, half_open_trials: 2}\n");
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    s_expect_events ("sys.breaker.opened", "br", 1);
    usleep (150 * 1000);
    //  Two trials are let through; more is refused until they end. The
    //  first trial is slow so that the others meet the half-open breaker.
    ck_assert_int_eq (s_tell ("br", "hang 300"), TR_OK);
    ck_assert_int_eq (s_tell ("br", "n"), TR_OK);
    ck_assert_int_eq (s_tell ("br", "n"), TR_ECIRCUIT);
    s_expect_events ("sys.breaker.closed", "br", 1);
    uint64_t count = 0;
    ck_assert_int_eq (s_ask ("br", "count", &count), TR_OK);
    ck_assert_uint_eq (count, 1);
}
END_TEST

START_TEST (test_breaker_growth_capped_and_reset)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 100, period: 10s}\n"
             "children:\n"
             "  - name: br\n"
             "    actor: rec\n"
             "    backoff: {min: 0ms, max: 0ms}\n"
             "    breaker: {failures: 1, reset_timeout: 100ms, factor: 3, max_reset_timeout: 200ms}\n");
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    s_expect_events ("sys.breaker.opened", "br", 1);
    //  Failed trials: 100 -> 200 (capped, not 300) -> 200.
    for (size_t i = 1; i <= 2; i++) {
        while (s_tell ("br", "fail") == TR_ECIRCUIT)
            usleep (2000);
        s_expect_events ("sys.breaker.opened", "br", i + 1);
    }
    int64_t last = s_event_time ("sys.breaker.opened", "br", 2);
    while (s_tell ("br", "n") == TR_ECIRCUIT)
        usleep (2000);
    int64_t lasted = tr_test_now_ms () - last;
    ck_assert_msg (lasted >= 190 && lasted < 200 + 300 * tr_test_slowdown (),
                   "capped open lasted %lld ms", (long long) lasted);
    //  Open it again and reset it by hand.
    while (s_ask ("br", "fail", NULL) != TR_EHANDLER)
        usleep (2000);
    s_expect_status ("br", "breaker.state", "open");
    ck_assert_int_eq (tr_breaker_reset (s_node, "br"), TR_OK);
    s_expect_status ("br", "breaker.state", "closed");
    ck_assert_int_eq (s_ask ("br", "inc", NULL), TR_OK);
    ck_assert_int_eq (tr_breaker_reset (s_node, "nobody"), TR_ENOTFOUND);
}
END_TEST

START_TEST (test_breaker_fallback)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 100, period: 10s}\n"
             "children:\n"
             "  - {name: spare, actor: rec}\n"
             "  - name: br\n"
             "    actor: rec\n"
             "    backoff: {min: 0ms, max: 0ms}\n"
             "    breaker: {failures: 1, reset_timeout: 10s, fallback: spare}\n");
    ck_assert_int_eq (s_ask ("br", "fail", NULL), TR_EHANDLER);
    s_expect_events ("sys.breaker.opened", "br", 1);
    //  While open, messages to br reach spare.
    ck_assert_int_eq (s_tell ("br", "n"), TR_OK);
    ck_assert_int_eq (s_tell ("br", "n"), TR_OK);
    uint64_t count = 0;
    ck_assert_int_eq (s_ask ("br", "count", &count), TR_OK);
    ck_assert_uint_eq (count, 2);
    ck_assert_int_eq (s_ask ("spare", "count", &count), TR_OK);
    ck_assert_uint_eq (count, 2);
}
END_TEST

//  --------------------------------------------------------------------------
//  Start failures and control

START_TEST (test_start_failure_unwinds)
{
    tr_tree_error_t err;
    const char *yaml = "name: root\n"
                       "children:\n"
                       "  - {name: a, actor: rec}\n"
                       "  - {name: b, actor: rec}\n"
                       "  - {name: bad, actor: flaky, params: {fail_init: true}}\n"
                       "  - {name: d, actor: rec}\n";
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "t.yaml", &s_tree, &err), TR_OK);
    char *reason = NULL;
    int rc = tr_sup_start (s_node, "root", &s_tree->root, &s_sup, &reason);
    ck_assert_int_eq (rc, TR_ECHILD);
    ck_assert_ptr_null (s_sup);
    ck_assert_ptr_nonnull (reason);
    ck_assert_msg (strstr (reason, "'bad'"), "reason: %s", reason);
    free (reason);
    s_expect_journal ("+a +b -b -a");
    //  Every name is free again; the node still works.
    ck_assert_int_eq (tr_tell (s_node, "a", "\xc0", 1, NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_sup_start (s_node, "root", &s_tree->root, &s_sup, NULL), TR_ECHILD);
}
END_TEST

START_TEST (test_control_functions)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 10, period: 10s}\n"
             "defaults: {backoff: {min: 100ms, max: 100ms, jitter: 0}, breaker: off}\n"
             "children:\n"
             "  - {name: a, actor: rec}\n"
             "  - {name: b, actor: rec}\n"
             "  - {name: c, actor: rec}\n");
    s_expect_journal ("+a +b +c");
    ck_assert_int_eq (tr_sup_restart_child (s_node, "b"), TR_OK);
    s_expect_journal ("-b +b");
    ck_assert_int_eq (s_status_int ("b", "restarts"), 1);
    ck_assert_int_eq (tr_sup_stop_child (s_node, "c"), TR_OK);
    s_expect_journal ("-c");
    s_expect_status ("c", "state", "stopped");
    ck_assert_int_eq (tr_sup_stop_child (s_node, "c"), TR_OK);
    ck_assert_int_eq (tr_sup_start_child (s_node, "c"), TR_OK);
    s_expect_journal ("+c");
    ck_assert_int_eq (tr_sup_restart_child (s_node, "zz"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_sup_stop_child (s_node, "zz"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_sup_start_child (s_node, "zz"), TR_ENOTFOUND);
    //  tr_actor_stop of a supervised actor stops it for good, through
    //  its supervisor.
    ck_assert_int_eq (tr_actor_stop (s_node, "a", 0), TR_OK);
    s_expect_journal ("-a");
    s_expect_status ("a", "state", "stopped");
    //  A refused init on restart: the child is retried with backoff (and
    //  counts toward intensity), and comes back once init accepts.
    atomic_store (&s_refuse_init, 1);
    ck_assert_int_eq (s_tell ("b", "fail"), TR_OK);
    s_expect_journal ("-b");
    usleep (50 * 1000);
    atomic_store (&s_refuse_init, 0);
    s_expect_journal ("+b");
}
END_TEST


START_TEST (test_abandoned_actor)
{
    s_start ("name: root\n"
             "children:\n"
             "  - {name: calm, actor: rec}\n"
             "  - {name: stuck, actor: rec, shutdown: 100ms}\n");
    s_expect_journal ("+calm +stuck");
    //  stuck handles for 1.5 s and cannot stop within its 100 ms: it is
    //  abandoned (and reported), its name freed, the stop goes on.
    ck_assert_int_eq (s_tell ("stuck", "hang 1500"), TR_OK);
    usleep (100 * 1000);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_sup_stop_child (s_node, "stuck"), TR_OK);
    ck_assert_msg (tr_test_now_ms () - start < 1000, "the stop waited for the handler");
    s_expect_status ("stuck", "state", "abandoned");
    s_expect_events ("sys.actor.stopped", "stuck", 1);
    ck_assert_int_eq (tr_tell (s_node, "stuck", "\xc0", 1, NULL), TR_ENOACTOR);
    //  Once its handler returns, the thread ends and terminate runs.
    s_expect_journal ("-stuck");
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_ETIMEDOUT);
    s_expect_journal ("-calm");
}
END_TEST

//  --------------------------------------------------------------------------
//  Process children

//  Reads the pid a child wrote to `path`; 0 if none yet.
static pid_t
s_read_pid (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    long pid = 0;
    if (fscanf (file, "%ld", &pid) != 1)
        pid = 0;
    fclose (file);
    return (pid_t) pid;
}

typedef struct {
    const char *path;
    pid_t not;
} s_pid_wait_t;

static bool
s_new_pid (void *arg)
{
    s_pid_wait_t *w = (s_pid_wait_t *) arg;
    pid_t pid = s_read_pid (w->path);
    return pid > 0 && pid != w->not;
}

static bool
s_gone (void *arg)
{
    pid_t pid = *(pid_t *) arg;
    return kill (-pid, 0) == -1 && errno == ESRCH;
}

START_TEST (test_process_child_restarted)
{
    char dir [] = "/tmp/tr_sup_test.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    char path [128], yaml [1024];
    snprintf (path, sizeof path, "%s/pid", dir);
    //  The child starts a grandchild in its group and writes its pid.
    snprintf (yaml, sizeof yaml,
              "name: root\n"
              "children:\n"
              "  - name: worker\n"
              "    process:\n"
              "      command: [sh, -c, 'sleep 60 & echo $$ > %s.tmp; mv %s.tmp %s; wait']\n"
              "    shutdown: 1s\n"
              "    backoff: {min: 0ms, max: 0ms}\n",
              path, path, path);
    s_start (yaml);
    s_pid_wait_t w = { path, 0 };
    ck_assert (tr_test_wait_until (s_new_pid, &w, 5000 * tr_test_slowdown ()));
    pid_t first = s_read_pid (path);
    ck_assert_int_eq (s_status_int ("worker", "pid"), first);
    s_expect_status ("worker", "kind", "process");
    ck_assert_int_eq (kill (first, SIGKILL), 0);
    w.not = first;
    ck_assert (tr_test_wait_until (s_new_pid, &w, 5000 * tr_test_slowdown ()));
    pid_t second = s_read_pid (path);
    s_expect_events ("sys.actor.restarted", "worker", 1);
    char failure [128];
    s_status_str ("worker", "failure", failure, sizeof failure);
    ck_assert_msg (strstr (failure, "signal 9"), "failure: %s", failure);
    //  The first one's group (its sleeping grandchild) is gone too.
    ck_assert (tr_test_wait_until (s_gone, &first, 5000 * tr_test_slowdown ()));
    ck_assert_int_eq (tr_sup_stop (&s_sup), TR_OK);
    ck_assert (tr_test_wait_until (s_gone, &second, 5000 * tr_test_slowdown ()));
    unlink (path);
    rmdir (dir);
}
END_TEST

START_TEST (test_process_child_exit_status)
{
    s_start ("name: root\n"
             "intensity: {max_restarts: 1, period: 10s}\n"
             "children:\n"
             "  - name: quitter\n"
             "    process: {command: [sh, -c, 'exit 3']}\n"
             "    backoff: {min: 0ms, max: 0ms}\n");
    char *reason = NULL;
    ck_assert_int_eq (tr_sup_wait (s_sup, 5000 * tr_test_slowdown (), &reason), TR_EINTENSITY);
    ck_assert_msg (strstr (reason, "status 3"), "reason: %s", reason);
    free (reason);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_sup");
    TCase *tc = tcase_create ("strategies");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_start_and_stop_order);
    tcase_add_test (tc, test_one_for_one);
    tcase_add_test (tc, test_one_for_all);
    tcase_add_test (tc, test_rest_for_one);
    tcase_add_test (tc, test_simple_one_for_one);
    tcase_add_test (tc, test_restart_types);
    tcase_add_test (tc, test_intensity_root_fails);
    tcase_add_test (tc, test_escalation_chain);
    tcase_add_test (tc, test_backoff_delays);
    tcase_add_test (tc, test_backoff_jitter);
    tcase_add_test (tc, test_mailbox_survives_restart);
    tcase_add_test (tc, test_failed_ask_answered);
    tcase_add_test (tc, test_handle_timeout);
    tcase_add_test (tc, test_breaker_transitions);
    tcase_add_test (tc, test_breaker_counts_deferred_answers);
    tcase_add_test (tc, test_breaker_half_open_trials);
    tcase_add_test (tc, test_breaker_growth_capped_and_reset);
    tcase_add_test (tc, test_breaker_fallback);
    tcase_add_test (tc, test_start_failure_unwinds);
    tcase_add_test (tc, test_control_functions);
    tcase_add_test (tc, test_abandoned_actor);
    tcase_add_test (tc, test_process_child_restarted);
    tcase_add_test (tc, test_process_child_exit_status);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
