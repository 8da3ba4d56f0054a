/*  tr_test_tree.h - what the tests of composition actors share.

    - tr_test_setup / tr_test_teardown: a test's fixture (the log quiet,
      its actor types known, a node; then the tree and the node gone);
      tr_test_types, the first two alone;
      tr_test_free_state, the terminate of test actors with one block of
      state.
    - tr_test_tree_start / tr_test_tree_stop: a tree started from YAML
      text on a node, asserting that it loads and starts.
    - TR_TEST_LENIENT: the top of a tree whose children fail on purpose
      (restarts cheap and unlimited, no breaker), so that what a
      composition actor sees is its members' own answers.
    - tr_test_ask_str / tr_test_ask_json: an ask with a string body whose
      answer comes back as a C string (a string answer) or as JSON (any);
      tr_test_ask_jj with a body given as JSON, and tr_test_expect_jj /
      tr_test_expect_error to check its answer or its error;
      tr_test_expect_answer checks the JSON answer to a string body.
    - tr_test_info / tr_test_expect_info: an actor's info counter, read
      or waited for.
    - Trees that must be refused: tr_test_tree_error (the loader's
      FILE:LINE:COL message, or the reason the start gives), and for a
      child's params tr_test_params_error / tr_test_params_refused /
      tr_test_expect_params_error; tr_test_start_error for params given
      from C.
    - The ledger: lines that test actors append to under a lock ("NAME
      JSON" for a message: tr_test_ledger_add), which the test takes,
      compares, searches or waits for; the "ledger" actor type records
      what it gets there, the "events" actor type the events it gets
      ("TOPIC JSON"); tr_test_text_add / _copy / _clear, texts of the
      test's own kept the same way.
    - Spans: when each piece of work in test actors started and ended
      (tr_test_span_begin / _end), and how many ran at once, for
      tr_test_overlap, which measures that work ran at the same time.
    - tr_test_asker_t: an ask on a thread of its own, so that several are
      in flight at once.
    - tr_test_remote_t: a real broker on the loopback and two nodes
      joined through it, for members on another node;
      tr_test_broker_start and tr_test_node_joined, a broker and a node
      joined to it, one by one.
    - The "member" actor type: answers an ask with its own name after
      `delay`, or fails (`fail: true`, or `switch: true` while
      tr_test_member_switch is set); counts what it gets in its info
      counter "got". tr_test_member_register makes it known.

    Include after tr_test.h.
*/
#ifndef TR_TEST_TREE_H_INCLUDED
#define TR_TEST_TREE_H_INCLUDED

#include "tr_test.h"
#include "tr_json.h"
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>

#define TR_TEST_LENIENT "name: t\n" \
                        "intensity: {max_restarts: 1000000, period: 1s}\n" \
                        "defaults: {breaker: off, backoff: {min: 1ms, max: 1ms}}\n" \
                        "children:\n"

//  --------------------------------------------------------------------------
//  The fixture

//  The log at errors only (unless TROUPE_LOG sets its level), and each
//  actor type of the NULL-ended list made known (again: a second time is
//  fine): a setup whose node is made otherwise (one joined to a broker).
static inline void
tr_test_types (const tr_actor_type_t *const *types)
{
    if (!getenv ("TROUPE_LOG"))
        tr_log_set_level (TR_LOG_ERROR);
    for (size_t i = 0; types && types [i]; i++) {
        int rc = tr_actor_type_register (types [i]);
        ck_assert_msg (rc == TR_OK || rc == TR_EEXIST, "%s: %s", types [i]->name,
                       tr_errname (rc));
    }
}

//  What a test's setup does: tr_test_types, and a node with no broker in
//  *node_p.
static inline void
tr_test_setup (tr_node_t **node_p, const tr_actor_type_t *const *types)
{
    tr_test_types (types);
    ck_assert_int_eq (tr_node_new (NULL, node_p), TR_OK);
}

//  A test actor's terminate when its state is one malloc'd block.
static inline void
tr_test_free_state (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    free (state);
}

//  Parses yaml (named `file` in messages) and starts its tree on node;
//  fails the test with the loader's or the supervisor's message if either
//  refuses. *tree_p and *sup_p are the caller's (tr_test_tree_stop).
static inline void
tr_test_tree_start (tr_node_t *node, const char *yaml, const char *file,
                    tr_tree_t **tree_p, tr_sup_t **sup_p)
{
    tr_tree_error_t err;
    char buf [600];
    int rc = tr_tree_parse (yaml, strlen (yaml), file, tree_p, &err);
    ck_assert_msg (rc == TR_OK, "tree: %s", tr_tree_error_format (&err, buf, sizeof buf));
    char *reason = NULL;
    rc = tr_sup_start (node, (*tree_p)->name, &(*tree_p)->root, sup_p, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
}

//  Stops and frees what tr_test_tree_start made (either may be NULL).
static inline void
tr_test_tree_stop (tr_tree_t **tree_p, tr_sup_t **sup_p)
{
    tr_sup_stop (sup_p);
    tr_tree_destroy (tree_p);
}

//  What a test's teardown does: the tree stopped (if one was started),
//  the node destroyed.
static inline void
tr_test_teardown (tr_node_t **node_p, tr_tree_t **tree_p, tr_sup_t **sup_p)
{
    tr_test_tree_stop (tree_p, sup_p);
    tr_node_destroy (node_p);
}

//  Asks `to` with body; on TR_OK, *answer (if not NULL) is the answer,
//  which must be a string, as a new C string.
static inline int
tr_test_ask_body_str (tr_node_t *node, const char *to, const void *body, size_t size,
                      int timeout_ms, char **answer)
{
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, to, body, size, timeout_ms, &reply, NULL);
    if (rc == TR_OK && answer) {
        const char *s = "";
        size_t len = 0;
        ck_assert_int_eq (tr_msg_str (reply, &s, &len), TR_OK);
        *answer = strndup (s, len);
    }
    tr_msg_destroy (&reply);
    return rc;
}

//  The same with a string body.
static inline int
tr_test_ask_str (tr_node_t *node, const char *to, const char *text, int timeout_ms,
                 char **answer)
{
    tr_body_t body;
    tr_body_str (&body, text, strlen (text));
    return tr_test_ask_body_str (node, to, body.data, body.size, timeout_ms, answer);
}

//  Asks `to` with a string body; on TR_OK, *json (if not NULL) is the
//  answer, whatever its kind, as JSON (malloc'd).
static inline int
tr_test_ask_json (tr_node_t *node, const char *to, const char *text, int timeout_ms,
                  char **json)
{
    tr_body_t body;
    tr_body_str (&body, text, strlen (text));
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, to, body.data, body.size, timeout_ms, &reply, NULL);
    if (rc == TR_OK && json) {
        size_t len;
        ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply),
                                                 json, &len), 0);
    }
    tr_msg_destroy (&reply);
    return rc;
}

//  Asks `to` with a body given as JSON (a JSON string gives a msgpack
//  string). On TR_OK *answer_p (if not NULL) is the reply written as
//  JSON, to free.
static inline int
tr_test_ask_jj (tr_node_t *node, const char *to, const char *json, int timeout_ms,
                char **answer_p)
{
    char *body = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse (json, strlen (json), &body, &size, NULL), 0);
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, to, body, size, timeout_ms, &reply, NULL);
    free (body);
    if (rc == TR_OK) {
        char *text = NULL;
        size_t len;
        ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply),
                                                 &text, &len), 0);
        tr_msg_destroy (&reply);
        if (answer_p)
            *answer_p = text;
        else
            free (text);
    }
    return rc;
}

//  Asks with a JSON body and checks that the answer, written as JSON, is
//  `expected`.
static inline void
tr_test_expect_jj (tr_node_t *node, const char *to, const char *json, int timeout_ms,
                   const char *expected)
{
    char *answer = NULL;
    int rc = tr_test_ask_jj (node, to, json, timeout_ms, &answer);
    ck_assert_msg (rc == TR_OK, "ask %s %s: %s", to, json, tr_errname (rc));
    ck_assert_str_eq (answer, expected);
    free (answer);
}

//  Asks with a JSON body and checks the error.
static inline void
tr_test_expect_error (tr_node_t *node, const char *to, const char *json, int timeout_ms,
                      int expected)
{
    int rc = tr_test_ask_jj (node, to, json, timeout_ms, NULL);
    ck_assert_msg (rc == expected, "ask %s %s: %s, not %s", to, json, tr_errname (rc),
                   tr_errname (expected));
}

//  Asks `to` with a string body and checks that the answer, written as
//  JSON, is `json`.
static inline void
tr_test_expect_answer (tr_node_t *node, const char *to, const char *text, int timeout_ms,
                       const char *json)
{
    char *answer = NULL;
    int rc = tr_test_ask_json (node, to, text, timeout_ms, &answer);
    ck_assert_msg (rc == TR_OK, "%s: %s", to, tr_errname (rc));
    ck_assert_str_eq (answer, json);
    free (answer);
}

//  --------------------------------------------------------------------------
//  Counters

//  The info counter `key` of `actor` on node (0 while it has none).
static inline int64_t
tr_test_info (tr_node_t *node, const char *actor, const char *key)
{
    int64_t value = 0;
    int rc = tr_actor_info_get (node, actor, key, &value);
    ck_assert (rc == TR_OK || rc == TR_ENOTFOUND);
    return value;
}

//  Waits (3 s, times the slowdown) until a counter that only grows
//  reaches value, then checks that it is exactly that.
static inline void
tr_test_expect_info (tr_node_t *node, const char *actor, const char *key, int64_t value)
{
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (tr_test_info (node, actor, key) < value && tr_test_now_ms () < deadline)
        usleep (5000);
    int64_t got = tr_test_info (node, actor, key);
    ck_assert_msg (got == value, "%s %s: %lld, not %lld", actor, key, (long long) got,
                   (long long) value);
}

//  --------------------------------------------------------------------------
//  Trees that must be refused

//  How a message is compared with the one expected.
typedef enum {
    TR_TEST_WHOLE,                      //  the same text
    TR_TEST_PART                        //  the expected text is part of it
} tr_test_match_t;

//  The message a tree made of yaml (named `file` in messages) is refused
//  with, as a new string (the caller frees it): the loader's, formatted
//  "FILE:LINE:COLUMN: ...", when the tree does not load; otherwise the
//  reason the supervisor's start gives, which must fail with TR_ECHILD
//  (the test fails if the tree starts).
static inline char *
tr_test_tree_error (tr_node_t *node, const char *yaml, const char *file)
{
    tr_tree_t *tree = NULL;
    tr_sup_t *sup = NULL;
    tr_tree_error_t err;
    char buf [1200];
    if (tr_tree_parse (yaml, strlen (yaml), file, &tree, &err) != TR_OK)
        return strdup (tr_tree_error_format (&err, buf, sizeof buf));
    char *reason = NULL;
    int rc = tr_sup_start (node, tree->name, &tree->root, &sup, &reason);
    tr_sup_stop (&sup);
    tr_tree_destroy (&tree);
    ck_assert_msg (rc == TR_ECHILD, "%s: the tree started (%s):\n%s", file, tr_errname (rc),
                   yaml);
    return reason;
}

//  The same for a tree whose text is `head` (up to and with its last
//  child's "    actor: TYPE\n" line) followed by "    params: PARAMS\n".
static inline char *
tr_test_params_error (tr_node_t *node, const char *file, const char *head, const char *params)
{
    char *yaml = NULL;
    ck_assert_int_ge (asprintf (&yaml, "%s    params: %s\n", head, params), 0);
    char *error = tr_test_tree_error (node, yaml, file);
    free (yaml);
    return error;
}

//  Whether that tree is refused with `expect` (the whole message, or a
//  part of it). A mismatch is written on standard error with the message
//  that came instead, so that a test may count mismatches and show them
//  all in one run.
static inline bool
tr_test_params_refused (tr_node_t *node, const char *file, const char *head,
                        const char *params, const char *expect, tr_test_match_t match)
{
    char *error = tr_test_params_error (node, file, head, params);
    bool same = error && (match == TR_TEST_PART? strstr (error, expect) != NULL
                                               : strcmp (error, expect) == 0);
    if (!same)
        fprintf (stderr, "params %s:\n got      '%s'\n expected '%s'\n", params,
                 error? error: "(none)", expect);
    free (error);
    return same;
}

//  Checks that the tree is refused with `expect`.
static inline void
tr_test_expect_params_error (tr_node_t *node, const char *file, const char *head,
                             const char *params, const char *expect, tr_test_match_t match)
{
    ck_assert_msg (tr_test_params_refused (node, file, head, params, expect, match),
                   "params %s: not refused with '%s' (what came instead is above)", params,
                   expect);
}

//  The reason a tree of one supervisor "t" with one child `name` of
//  actor type `type`, started from C with params given as JSON (so that
//  the type's own start checks them, not the loader), is refused with
//  (a new string, the caller frees it); the start must fail with
//  TR_ECHILD.
static inline char *
tr_test_start_error (tr_node_t *node, const char *type, const char *name, const char *json)
{
    char *params = NULL;
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse (json, strlen (json), &params, &size, NULL), 0);
    tr_child_spec_t child = {
        .name = name, .kind = TR_CHILD_ACTOR, .restart = TR_RESTART_TEMPORARY,
        .shutdown_ms = 1000, .type = tr_actor_type_find (type),
        .params = { (const uint8_t *) params, size }
    };
    ck_assert_ptr_nonnull (child.type);
    tr_sup_spec_t spec = { .strategy = TR_ONE_FOR_ONE, .max_restarts = 1, .period_ms = 1000,
                           .children = &child, .count = 1 };
    tr_child_spec_t root = { .name = "t", .kind = TR_CHILD_SUPERVISOR, .shutdown_ms = 1000,
                             .sup = &spec };
    tr_sup_t *sup = NULL;
    char *reason = NULL;
    int rc = tr_sup_start (node, "t", &root, &sup, &reason);
    tr_sup_stop (&sup);
    free (params);
    ck_assert_msg (rc == TR_ECHILD, "%s %s started (%s)", type, json, tr_errname (rc));
    return reason;
}

//  --------------------------------------------------------------------------
//  The ledger

#define TR_TEST_LEDGER_SIZE 32768

static pthread_mutex_t tr_test_ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static char tr_test_ledger [TR_TEST_LEDGER_SIZE];

//  Empties the ledger.
static inline void
tr_test_ledger_clear (void)
{
    pthread_mutex_lock (&tr_test_ledger_lock);
    tr_test_ledger [0] = '\0';
    pthread_mutex_unlock (&tr_test_ledger_lock);
}

//  Appends a message body as a line "NAME JSON" (or "JSON" when name is
//  NULL); what does not fit is cut off.
static inline void
tr_test_ledger_add (const char *name, const void *body, size_t size)
{
    char *json = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr__json_from_msgpack (body, size, &json, &len), 0);
    pthread_mutex_lock (&tr_test_ledger_lock);
    size_t used = strlen (tr_test_ledger);
    snprintf (tr_test_ledger + used, sizeof tr_test_ledger - used, "%s%s%.*s\n",
              name? name: "", name? " ": "", (int) len, json);
    pthread_mutex_unlock (&tr_test_ledger_lock);
    free (json);
}

//  The ledger so far, as a new string (the caller frees it); with take,
//  the ledger is emptied.
static inline char *
tr_test_ledger_copy (bool take)
{
    pthread_mutex_lock (&tr_test_ledger_lock);
    char *copy = strdup (tr_test_ledger);
    if (take)
        tr_test_ledger [0] = '\0';
    pthread_mutex_unlock (&tr_test_ledger_lock);
    ck_assert_ptr_nonnull (copy);
    return copy;
}

//  Whether the ledger holds `needle` (a C string; void * for
//  tr_test_wait_until).
static inline bool
tr_test_ledger_has (void *needle)
{
    pthread_mutex_lock (&tr_test_ledger_lock);
    bool has = strstr (tr_test_ledger, (const char *) needle) != NULL;
    pthread_mutex_unlock (&tr_test_ledger_lock);
    return has;
}

//  Waits up to timeout_ms for the ledger to hold `needle`, then returns a
//  copy of it (the caller frees it), which may not hold it.
static inline char *
tr_test_ledger_wait (const char *needle, int timeout_ms)
{
    tr_test_wait_until (tr_test_ledger_has, (void *) needle, timeout_ms);
    return tr_test_ledger_copy (false);
}

//  Takes the ledger (it is emptied) and checks that it is `expect`.
static inline void
tr_test_expect_ledger (const char *expect)
{
    char *text = tr_test_ledger_copy (true);
    ck_assert_str_eq (text, expect);
    free (text);
}

//  Waits (3 s, times the slowdown) until the ledger is `expect`, checks
//  that it is, and empties it: for lines that may still be coming.
static inline void
tr_test_expect_ledger_settles (const char *expect)
{
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    char *text = tr_test_ledger_copy (false);
    while (strcmp (text, expect) != 0 && tr_test_now_ms () < deadline) {
        free (text);
        usleep (5000);
        text = tr_test_ledger_copy (false);
    }
    ck_assert_str_eq (text, expect);
    free (text);
    tr_test_ledger_clear ();
}

//  Waits (3 s, times the slowdown) until the ledger holds `needle`; fails
//  showing the ledger otherwise.
static inline void
tr_test_expect_in_ledger (const char *needle)
{
    char *text = tr_test_ledger_wait (needle, 3000 * tr_test_slowdown ());
    ck_assert_msg (strstr (text, needle), "'%s' is not in the ledger:\n%s", needle, text);
    free (text);
}

//  Texts of a test's own besides the ledger (char arrays of `size`
//  bytes), kept under the ledger's lock. tr_test_text_add appends a
//  message body as a line "NAME JSON"; a body that is not msgpack leaves
//  its line out (so that the test sees it missing: it asserts nothing,
//  as it may run in a test actor of a node process, where Check is not
//  running).
static inline void
tr_test_text_add (char *text, size_t size, const char *name, const void *body,
                  size_t body_size)
{
    char *json = NULL;
    size_t len = 0;
    if (tr__json_from_msgpack (body, body_size, &json, &len))
        return;
    pthread_mutex_lock (&tr_test_ledger_lock);
    size_t used = strlen (text);
    snprintf (text + used, size - used, "%s %.*s\n", name, (int) len, json);
    pthread_mutex_unlock (&tr_test_ledger_lock);
    free (json);
}

//  A copy of such a text (the caller frees it).
static inline char *
tr_test_text_copy (const char *text)
{
    pthread_mutex_lock (&tr_test_ledger_lock);
    char *copy = strdup (text);
    pthread_mutex_unlock (&tr_test_ledger_lock);
    ck_assert_ptr_nonnull (copy);
    return copy;
}

//  Empties such a text.
static inline void
tr_test_text_clear (char *text)
{
    pthread_mutex_lock (&tr_test_ledger_lock);
    text [0] = '\0';
    pthread_mutex_unlock (&tr_test_ledger_lock);
}

//  The "ledger" actor type: appends what it gets as "NAME JSON" and
//  answers an ask with true; with `fail: true` it appends, then fails.
static const tr_param_spec_t tr_test_ledger_params [] = {
    { "fail", TR_PARAM_BOOL, false, "record, then fail" },
    { .key = NULL }
};

static inline int
tr_test_ledger__init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    bool *fail = (bool *) calloc (1, sizeof *fail);
    if (!fail)
        return -1;
    if (arg)
        tr_params_bool ((const tr_params_t *) arg, "fail", fail);
    *state_p = fail;
    return 0;
}

static inline int
tr_test_ledger__handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    tr_test_ledger_add (tr_actor_name (self), tr_msg_body (msg), tr_msg_size (msg));
    if (*(bool *) state)
        return -1;
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, "\xc3", 1): 0;
}

static const tr_actor_type_t tr_test_ledger_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "ledger",
    .summary = "records what it gets in the test's ledger (tests)",
    .behaviour = { tr_test_ledger__init, tr_test_ledger__handle, tr_test_free_state },
    .params = tr_test_ledger_params,
};

//  Makes the ledger type known (again: a second call is fine) and empties
//  the ledger.
static inline void
tr_test_ledger_register (void)
{
    int rc = tr_actor_type_register (&tr_test_ledger_type);
    ck_assert (rc == TR_OK || rc == TR_EEXIST);
    tr_test_ledger_clear ();
}

//  The "events" actor type: subscribed to topics, appends each event it
//  gets ([TOPIC, VALUE]) to the ledger as "TOPIC JSON"; anything else is
//  left out.
static inline int
tr_test_events__handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, tr_msg_body (msg), tr_msg_size (msg), NULL)
        == MSGPACK_UNPACK_SUCCESS && unpacked.data.type == MSGPACK_OBJECT_ARRAY
    &&  unpacked.data.via.array.size == 2
    &&  unpacked.data.via.array.ptr [0].type == MSGPACK_OBJECT_STR) {
        const msgpack_object *topic = &unpacked.data.via.array.ptr [0];
        msgpack_sbuffer buffer;
        msgpack_packer pk;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        msgpack_pack_object (&pk, unpacked.data.via.array.ptr [1]);
        char name [64];
        snprintf (name, sizeof name, "%.*s", (int) topic->via.str.size, topic->via.str.ptr);
        tr_test_ledger_add (name, buffer.data, buffer.size);
        msgpack_sbuffer_destroy (&buffer);
    }
    msgpack_unpacked_destroy (&unpacked);
    return 0;
}

static const tr_actor_type_t tr_test_events_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "events",
    .summary = "records the events it gets in the test's ledger (tests)",
    .behaviour = { NULL, tr_test_events__handle, NULL },
};

//  Waits (3 s, times the slowdown) until the ledger holds `needle`, and
//  returns a copy of it (the caller frees it); fails showing the ledger
//  otherwise.
static inline char *
tr_test_ledger_expect (const char *needle)
{
    char *text = tr_test_ledger_wait (needle, 3000 * tr_test_slowdown ());
    ck_assert_msg (strstr (text, needle), "'%s' is not in the ledger:\n%s", needle, text);
    return text;
}

//  --------------------------------------------------------------------------
//  Spans: when work ran in test actors

typedef struct {
    char name [32];                     //  who did it
    int64_t start_ns;                   //  on tr__now_ns's clock
    int64_t end_ns;                     //  0 while it runs
} tr_test_span_t;

#define TR_TEST_SPANS 256

static pthread_mutex_t tr_test_spans_lock = PTHREAD_MUTEX_INITIALIZER;
static tr_test_span_t tr_test_spans [TR_TEST_SPANS];
static size_t tr_test_span_count;       //  spans begun (the last slot is reused when full)
static int tr_test_spans_busy;          //  spans begun and not ended
static int tr_test_spans_busy_most;     //  the most at once

//  Forgets every span.
static inline void
tr_test_spans_clear (void)
{
    pthread_mutex_lock (&tr_test_spans_lock);
    tr_test_span_count = 0;
    tr_test_spans_busy = tr_test_spans_busy_most = 0;
    pthread_mutex_unlock (&tr_test_spans_lock);
}

//  Begins a span of work by `name`, now; returns its index for
//  tr_test_span_end.
static inline size_t
tr_test_span_begin (const char *name)
{
    pthread_mutex_lock (&tr_test_spans_lock);
    size_t index = tr_test_span_count < TR_TEST_SPANS? tr_test_span_count++: TR_TEST_SPANS - 1;
    tr_test_span_t *span = &tr_test_spans [index];
    snprintf (span->name, sizeof span->name, "%s", name);
    span->start_ns = tr__now_ns ();
    span->end_ns = 0;
    if (++tr_test_spans_busy > tr_test_spans_busy_most)
        tr_test_spans_busy_most = tr_test_spans_busy;
    pthread_mutex_unlock (&tr_test_spans_lock);
    return index;
}

//  Ends span `index`, now.
static inline void
tr_test_span_end (size_t index)
{
    pthread_mutex_lock (&tr_test_spans_lock);
    tr_test_spans [index].end_ns = tr__now_ns ();
    tr_test_spans_busy--;
    pthread_mutex_unlock (&tr_test_spans_lock);
}

//  How many spans began; with spans not NULL, copies up to max of them
//  (in the order they began).
static inline size_t
tr_test_spans_copy (tr_test_span_t *spans, size_t max)
{
    pthread_mutex_lock (&tr_test_spans_lock);
    size_t count = tr_test_span_count;
    if (spans)
        memcpy (spans, tr_test_spans, (count < max? count: max) * sizeof *spans);
    pthread_mutex_unlock (&tr_test_spans_lock);
    return count;
}

//  The most spans that ran at once.
static inline int
tr_test_spans_most (void)
{
    pthread_mutex_lock (&tr_test_spans_lock);
    int most = tr_test_spans_busy_most;
    pthread_mutex_unlock (&tr_test_spans_lock);
    return most;
}

//  The last span `name` began (asserted to exist).
static inline tr_test_span_t
tr_test_span_last (const char *name)
{
    tr_test_span_t found = { .start_ns = -1 };
    pthread_mutex_lock (&tr_test_spans_lock);
    for (size_t i = 0; i < tr_test_span_count; i++)
        if (strcmp (tr_test_spans [i].name, name) == 0)
            found = tr_test_spans [i];
    pthread_mutex_unlock (&tr_test_spans_lock);
    ck_assert_msg (found.start_ns >= 0, "no work recorded for %s", name);
    return found;
}

//  How long count intervals [starts [i], ends [i]] all ran at once: the
//  earliest end less the latest start, which is above 0 only if every
//  one had started before any had ended (in the units given).
static inline int64_t
tr_test_overlap (const int64_t *starts, const int64_t *ends, size_t count)
{
    int64_t latest_start = INT64_MIN, earliest_end = INT64_MAX;
    for (size_t i = 0; i < count; i++) {
        if (starts [i] > latest_start)
            latest_start = starts [i];
        if (ends [i] < earliest_end)
            earliest_end = ends [i];
    }
    return earliest_end - latest_start;
}

//  Checks that count spans all ran at once (tr_test_overlap).
static inline void
tr_test_expect_overlap (const tr_test_span_t *spans, size_t count)
{
    int64_t starts [TR_TEST_SPANS], ends [TR_TEST_SPANS];
    ck_assert_uint_le (count, TR_TEST_SPANS);
    for (size_t i = 0; i < count; i++) {
        starts [i] = spans [i].start_ns;
        ends [i] = spans [i].end_ns;
    }
    int64_t overlap = tr_test_overlap (starts, ends, count);
    ck_assert_msg (overlap > 0, "no overlap: the last of %zu started %lld us after the first "
                   "ended", count, (long long) -overlap / 1000);
}

//  --------------------------------------------------------------------------
//  An ask on a thread of its own

typedef struct {
    //  What to ask (tr_test_asker_start sets them).
    tr_node_t *node;
    const char *to;
    const char *json;                   //  the body, as JSON
    int timeout_ms;
    int delay_ms;                       //  how long to wait before asking
    //  What came of it (after tr_test_asker_join).
    int rc;
    char *answer;                       //  as JSON when rc is TR_OK (the caller frees it)
    int64_t sent_ms;                    //  when it asked and when it heard, on
    int64_t back_ms;                    //  tr_test_now_ms's clock
    pthread_t thread;
} tr_test_asker_t;

static inline void *
tr_test_asker__run (void *arg)
{
    tr_test_asker_t *a = (tr_test_asker_t *) arg;
    if (a->delay_ms)
        usleep ((useconds_t) a->delay_ms * 1000);
    a->sent_ms = tr_test_now_ms ();
    a->rc = tr_test_ask_jj (a->node, a->to, a->json, a->timeout_ms, &a->answer);
    a->back_ms = tr_test_now_ms ();
    return NULL;
}

//  Starts a thread that asks `to` with a body given as JSON (tr_test_ask_jj)
//  after delay_ms. `to` and `json` must last until tr_test_asker_join.
static inline void
tr_test_asker_start (tr_test_asker_t *a, tr_node_t *node, const char *to, const char *json,
                     int timeout_ms, int delay_ms)
{
    *a = (tr_test_asker_t) { .node = node, .to = to, .json = json, .timeout_ms = timeout_ms,
                             .delay_ms = delay_ms, .rc = -1 };
    ck_assert_int_eq (pthread_create (&a->thread, NULL, tr_test_asker__run, a), 0);
}

//  Waits for the asker's thread to end.
static inline void
tr_test_asker_join (tr_test_asker_t *a)
{
    ck_assert_int_eq (pthread_join (a->thread, NULL), 0);
}

//  --------------------------------------------------------------------------
//  Two nodes through a real broker

typedef struct {
    tr_broker_t *broker;                //  on 127.0.0.1, a port of its own
    char endpoint [128];
    tr_node_t *a;                       //  "node-a"
    tr_node_t *b;                       //  "node-b"
} tr_test_remote_t;

//  Starts a broker on 127.0.0.1 (a port of its own, heartbeats every
//  heartbeat_ms) in *broker_p and copies its endpoint into endpoint (128
//  bytes). The caller stops it (tr_broker_stop).
static inline void
tr_test_broker_start (tr_broker_t **broker_p, char endpoint [128], int heartbeat_ms)
{
    tr_broker_opts_t opts = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = heartbeat_ms };
    ck_assert_int_eq (tr_broker_start (&opts, broker_p), TR_OK);
    snprintf (endpoint, 128, "%s", tr_broker_endpoint (*broker_p));
}

//  A node named id joined to the broker at endpoint, with heartbeats
//  every heartbeat_ms (the caller destroys it).
static inline tr_node_t *
tr_test_node_joined (const char *endpoint, const char *id, int heartbeat_ms)
{
    tr_node_opts_t opts = { .broker = endpoint, .node_id = id, .heartbeat_ms = heartbeat_ms };
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (&opts, &node), TR_OK);
    return node;
}

//  Starts a broker and two nodes joined to it (heartbeats every 100 ms).
static inline void
tr_test_remote_start (tr_test_remote_t *r)
{
    memset (r, 0, sizeof *r);
    tr_test_broker_start (&r->broker, r->endpoint, 100);
    r->a = tr_test_node_joined (r->endpoint, "node-a", 100);
    r->b = tr_test_node_joined (r->endpoint, "node-b", 100);
}

//  Destroys node b, node a (either may be gone already) and the broker.
//  A tree started on a node must be stopped before.
static inline void
tr_test_remote_stop (tr_test_remote_t *r)
{
    tr_node_destroy (&r->b);
    tr_node_destroy (&r->a);
    tr_broker_stop (&r->broker);
}

//  --------------------------------------------------------------------------
//  The member type

static atomic_bool tr_test_member_switch;

typedef struct {
    int64_t delay_ms;
    bool fail;
    bool switched;
} tr_test_member_t;

static const tr_param_spec_t tr_test_member_params [] = {
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every message" },
    { "switch", TR_PARAM_BOOL, false, "fail while tr_test_member_switch is set" },
    { .key = NULL }
};

static inline int
tr_test_member__init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    const tr_params_t *params = (const tr_params_t *) arg;
    tr_test_member_t *m = (tr_test_member_t *) calloc (1, sizeof *m);
    if (!m)
        return -1;
    if (params) {
        tr_params_duration (params, "delay", &m->delay_ms);
        tr_params_bool (params, "fail", &m->fail);
        tr_params_bool (params, "switch", &m->switched);
    }
    *state_p = m;
    return 0;
}

static inline int
tr_test_member__handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    tr_test_member_t *m = (tr_test_member_t *) state;
    tr_actor_info_add (self, "got", 1);
    if (m->delay_ms)
        usleep ((useconds_t) m->delay_ms * 1000);
    if (m->fail || (m->switched && atomic_load (&tr_test_member_switch)))
        return -1;
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    tr_body_t body;
    tr_body_str (&body, tr_actor_name (self), strlen (tr_actor_name (self)));
    return tr_reply (msg, body.data, body.size);
}

static const tr_actor_type_t tr_test_member_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "member",
    .summary = "answers with its name, after a delay or failing (tests)",
    .behaviour = { tr_test_member__init, tr_test_member__handle, tr_test_free_state },
    .params = tr_test_member_params,
};

//  Makes the member type known (again: a second call is fine) and clears
//  the switch.
static inline void
tr_test_member_register (void)
{
    int rc = tr_actor_type_register (&tr_test_member_type);
    ck_assert (rc == TR_OK || rc == TR_EEXIST);
    atomic_store (&tr_test_member_switch, false);
}

#endif
