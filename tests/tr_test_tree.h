/*  tr_test_tree.h - what the tests of composition actors share.

    - tr_test_tree_start / tr_test_tree_stop: a tree started from YAML
      text on a node, asserting that it loads and starts.
    - TR_TEST_LENIENT: the top of a tree whose children fail on purpose
      (restarts cheap and unlimited, no breaker), so that what a
      composition actor sees is its members' own answers.
    - tr_test_ask_str / tr_test_ask_json: an ask with a string body whose
      answer comes back as a C string (a string answer) or as JSON (any);
      tr_test_ask_jj with a body given as JSON, and tr_test_expect_jj /
      tr_test_expect_error to check its answer or its error.
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
#include <stdatomic.h>

#define TR_TEST_LENIENT "name: t\n" \
                        "intensity: {max_restarts: 1000000, period: 1s}\n" \
                        "defaults: {breaker: off, backoff: {min: 1ms, max: 1ms}}\n" \
                        "children:\n"

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

static inline void
tr_test_member__terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    free (state);
}

static const tr_actor_type_t tr_test_member_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "member",
    .summary = "answers with its name, after a delay or failing (tests)",
    .behaviour = { tr_test_member__init, tr_test_member__handle, tr_test_member__terminate },
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
