/*  tr_router_test.c - tests of the router (actors/tr_router.c), started
    from tree files on a node joined to a real broker on 127.0.0.1 (the
    scratchpad rule needs one).

    Rules in priority order (the first that matches wins), a field of a
    map body, the default route, a clear TR_ENOTFOUND with no default;
    scratchpad values (read asynchronously: the router keeps answering
    while a read is out); the least loaded of a set; classifier agents
    (llm agents on the offline backend: a plain answer, and a signature
    whose output field names the route; an answer naming no route falls
    through; a failing classifier is the asker's error); tells; a route
    that fails or times out; a route on another node; bad parameters.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

static tr_broker_t *s_broker;
static char s_endpoint [128];
static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

static void
s_setup (void)
{
    tr_log_set_level (TR_LOG_ERROR);
    tr_test_member_register ();
    tr_test_broker_start (&s_broker, s_endpoint, 100);
    s_node = tr_test_node_joined (s_endpoint, "node-a", 100);
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
    tr_test_tree_start (s_node, yaml, "router.yaml", &s_tree, &s_sup);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_str (s_node, to, text, 5000 * tr_test_slowdown (), answer);
}

//  Asks the router and checks which actor answered.
static void
s_expect_route (const char *router, const char *text, const char *expect)
{
    char *who = NULL;
    int rc = s_ask (router, text, &who);
    ck_assert_msg (rc == TR_OK, "'%s': %s", text, tr_errname (rc));
    ck_assert_msg (strcmp (who, expect) == 0, "'%s' went to %s, not %s", text, who, expect);
    free (who);
}

//  A map {topic: TOPIC, text: TEXT}.
static void
s_map (tr_body_t *body, const char *topic, const char *text)
{
    size_t a = strlen (topic), b = strlen (text);
    ck_assert (a < 31 && b < 31);
    char *p = (char *) body->data;
    *p++ = (char) 0x82;
    *p++ = (char) 0xa5; memcpy (p, "topic", 5); p += 5;
    *p++ = (char) (0xa0 | a); memcpy (p, topic, a); p += a;
    *p++ = (char) 0xa4; memcpy (p, "text", 4); p += 4;
    *p++ = (char) (0xa0 | b); memcpy (p, text, b); p += b;
    body->size = (size_t) (p - (char *) body->data);
}

//  --------------------------------------------------------------------------

START_TEST (test_priority_and_default)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: billing, actor: member}\n"
             "  - {name: dev, actor: member}\n"
             "  - {name: topics, actor: member}\n"
             "  - {name: general, actor: member}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params:\n"
             "      routes:\n"
             "        - {match: refund, to: billing}\n"
             "        - {regex: '^(bug|crash) #[0-9]+', to: dev}\n"
             "        - {match: sales, field: topic, to: topics}\n"
             "      default: general\n"
             "  - name: strict\n"
             "    actor: router\n"
             "    params: {routes: [{match: refund, to: billing}]}\n");
    s_expect_route ("r", "I want a refund", "billing");
    s_expect_route ("r", "bug #12: it crashes", "dev");
    //  Both rules match: the first in the list wins.
    s_expect_route ("r", "bug #7 in the refund form", "billing");
    //  The regex is anchored: not a match.
    s_expect_route ("r", "a bug #7", "general");
    //  A field of a map body; a map where a rule wants the string body
    //  does not match that rule.
    tr_body_t body;
    s_map (&body, "sales", "refund please");
    char *who = NULL;
    ck_assert_int_eq (tr_test_ask_body_str (s_node, "r", body.data, body.size, 5000, &who), TR_OK);
    ck_assert_str_eq (who, "topics");
    free (who);
    s_map (&body, "support", "hello");
    ck_assert_int_eq (tr_test_ask_body_str (s_node, "r", body.data, body.size, 5000, &who), TR_OK);
    ck_assert_str_eq (who, "general");
    free (who);
    ck_assert_int_eq (tr_test_info (s_node, "r", "router.routed"), 4);
    ck_assert_int_eq (tr_test_info (s_node, "r", "router.defaulted"), 2);
    //  No rule and no default: a clear error, at once.
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("strict", "hello", NULL), TR_ENOTFOUND);
    ck_assert_int_lt (tr_test_now_ms () - start, 1000 * tr_test_slowdown ());
    ck_assert_int_eq (tr_test_info (s_node, "strict", "router.unrouted"), 1);
    s_expect_route ("strict", "refund", "billing");
    //  Tells are routed too.
    ck_assert_int_eq (tr_tell (s_node, "r", "\xa6refund", 7, NULL), TR_OK);
    ck_assert_int_eq (tr_tell (s_node, "strict", "\xa5hello", 6, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while ((tr_test_info (s_node, "billing", "got") < 4
            || tr_test_info (s_node, "strict", "router.unrouted") < 2)
    &&     tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "billing", "got"), 4);
    ck_assert_int_eq (tr_test_info (s_node, "strict", "router.unrouted"), 2);
}
END_TEST

START_TEST (test_scratchpad)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: maint, actor: member}\n"
             "  - {name: normal, actor: member}\n"
             "  - {name: slowdown, actor: member}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params:\n"
             "      routes:\n"
             "        - {scratch: {key: mode, equals: maintenance}, to: maint}\n"
             "        - {scratch: {key: level, equals: 3}, to: slowdown}\n"
             "      default: normal\n");
    //  No key: no match.
    s_expect_route ("r", "x", "normal");
    tr_body_t value;
    tr_body_str (&value, "maintenance", 11);
    ck_assert_int_eq (tr_scratch_put (s_node, "mode", value.data, value.size, 0, 2000, NULL),
                      TR_OK);
    s_expect_route ("r", "x", "maint");
    tr_body_str (&value, "open", 4);
    ck_assert_int_eq (tr_scratch_put (s_node, "mode", value.data, value.size, 0, 2000, NULL),
                      TR_OK);
    tr_body_uint (&value, 3);
    ck_assert_int_eq (tr_scratch_put (s_node, "level", value.data, value.size, 0, 2000, NULL),
                      TR_OK);
    s_expect_route ("r", "x", "slowdown");
    //  Many asks at once, each reading the scratchpad: the router does not
    //  wait on its thread for a read, so they all go through.
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq (tr_tell (s_node, "r", "\xa1x", 2, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "slowdown", "got") < 51 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "slowdown", "got"), 51);
}
END_TEST

//  An ask on a thread of its own.
START_TEST (test_least_loaded)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: w1, actor: member, params: {delay: 300ms}}\n"
             "  - {name: w2, actor: member, params: {delay: 300ms}}\n"
             "  - {name: w3, actor: member, params: {delay: 300ms}}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params: {routes: [{least_loaded: [w1, w2, w3]}]}\n");
    tr_test_asker_t askers [3];
    for (int i = 0; i < 3; i++) {
        tr_test_asker_start (&askers [i], s_node, "r", "\"x\"", 5000 * tr_test_slowdown (), 0);
        usleep (30 * 1000);
    }
    bool seen [3] = { false };
    for (int i = 0; i < 3; i++) {
        tr_test_asker_join (&askers [i]);
        ck_assert_int_eq (askers [i].rc, TR_OK);
        seen [askers [i].answer [2] - '1'] = true;     //  "\"wN\""
        free (askers [i].answer);
    }
    //  Each went to an idle member, none to a busy one.
    ck_assert (seen [0] && seen [1] && seen [2]);
}
END_TEST

START_TEST (test_classifier)
{
    s_start (TR_TEST_LENIENT
             "  - {name: billing, actor: member}\n"
             "  - {name: dev, actor: member}\n"
             "  - {name: general, actor: member}\n"
             "  - {name: urgent, actor: member}\n"
             "  - name: triage\n"
             "    actor: llm\n"
             "    params:\n"
             "      signature:\n"
             "        instructions: Classify the ticket.\n"
             "        inputs: [{name: ticket}]\n"
             "        outputs: [{name: category, type: enum, values: [billing, bug, other]}]\n"
             "      offline:\n"
             "        rules:\n"
             "          - {match: refund, answer: {category: billing}}\n"
             "          - {match: crash, answer: {category: bug}}\n"
             "          - {match: outage, error: fail}\n"
             "          - {match: '', answer: {category: other}}\n"
             "  - name: alarm\n"
             "    actor: llm\n"
             "    params:\n"
             "      offline:\n"
             "        rules:\n"
             "          - {match: fire, answer: ' URGENT '}\n"
             "          - {match: '', answer: calm}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params:\n"
             "      routes:\n"
             "        - {classifier: alarm, routes: {urgent: urgent}}\n"
             "        - classifier: triage\n"
             "          output: category\n"
             "          routes: {billing: billing, bug: dev}\n"
             "      default: general\n");
    //  The first classifier's plain answer, trimmed and without case.
    s_expect_route ("r", "the server room is on fire", "urgent");
    //  It names no route: the next rule, the signature's output field.
    s_expect_route ("r", "please refund my order", "billing");
    s_expect_route ("r", "the app crashes at start", "dev");
    //  Neither names a route: the default.
    s_expect_route ("r", "what are your hours?", "general");
    //  A classifier that fails is the asker's error, not a silent default.
    ck_assert_int_eq (s_ask ("r", "total outage", NULL), TR_EHTTP);
    ck_assert_int_eq (tr_test_info (s_node, "r", "router.failed"), 1);
}
END_TEST

START_TEST (test_route_failures)
{
    s_start (TR_TEST_LENIENT
             "  - {name: bad, actor: member, params: {fail: true}}\n"
             "  - {name: hung, actor: member, params: {delay: 2s}}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params:\n"
             "      timeout: 200ms\n"
             "      routes:\n"
             "        - {match: bad, to: bad}\n"
             "        - {match: hung, to: hung}\n"
             "        - {match: gone, to: nobody}\n");
    ck_assert_int_eq (s_ask ("r", "bad", NULL), TR_EHANDLER);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("r", "hung", NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 190 && took < 1500 * tr_test_slowdown (), "took %lld ms",
                   (long long) took);
    ck_assert_int_eq (s_ask ("r", "gone", NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_test_info (s_node, "r", "router.failed"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "r", "router.inflight"), 0);
}
END_TEST

START_TEST (test_remote_route)
{
    tr_node_t *b = tr_test_node_joined (s_endpoint, "node-b", 100);
    ck_assert_int_eq (tr_spawn (b, "far", &tr_test_member_type.behaviour, NULL, NULL, NULL), TR_OK);
    s_start ("name: t\n"
             "children:\n"
             "  - {name: near, actor: member}\n"
             "  - name: r\n"
             "    actor: router\n"
             "    params: {routes: [{match: far, to: far}], default: near}\n");
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *who = NULL;
    int rc;
    while ((rc = s_ask ("r", "far away", &who)) != TR_OK && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (who, "far");
    free (who);
    s_expect_route ("r", "close by", "near");
    tr_node_destroy (&b);
}
END_TEST

static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "router.yaml", "name: t\n"
                                 "children:\n"
                                 "  - {name: a, actor: member}\n"
                                 "  - name: r\n"
                                 "    actor: router\n", params, expect, TR_TEST_PART);
}

START_TEST (test_bad_params)
{
    s_expect_error ("{routes: {match: x}}",
                    "router.yaml:6:22: parameter 'routes' of actor type 'router' must be a sequence");
    s_expect_error ("{routes: [{match: x, to: a}], default: 3}",
                    "router.yaml:6:52: parameter 'default' of actor type 'router' must be a string");
    s_expect_error ("{rules: []}", "router.yaml:6:14: unknown parameter 'rules'");
    s_expect_error ("{routes: []}", "r: 'routes' must be a list of at least one route");
    s_expect_error ("{routes: [{to: a}]}",
                    "r: routes item 1 needs exactly one of match, regex, scratch, "
                    "least_loaded, classifier");
    s_expect_error ("{routes: [{match: x, regex: y, to: a}]}", "routes item 1 needs exactly one");
    s_expect_error ("{routes: [{match: x}]}", "r: routes item 1 needs 'to'");
    s_expect_error ("{routes: [{match: x, to: a}, {match: y, to: a, when: 1}]}",
                    "r: unknown key 'when' in routes item 2; expected one of: to, field");
    s_expect_error ("{routes: [{regex: '(', to: a}]}",
                    "r: routes item 1 'regex' '(' does not compile");
    s_expect_error ("{routes: [{least_loaded: [a], to: a}]}",
                    "'to' is not for least_loaded");
    s_expect_error ("{routes: [{least_loaded: []}]}", "routes item 1 least_loaded' must be a list");
    s_expect_error ("{routes: [{scratch: {key: k}, to: a}]}",
                    "routes item 1 'scratch' needs 'key' and 'equals'");
    s_expect_error ("{routes: [{scratch: {key: k, equals: 1, when: 2}, to: a}]}",
                    "unknown key 'when' in routes item 1 'scratch'");
    s_expect_error ("{routes: [{classifier: a}]}", "routes item 1 'classifier' needs 'routes'");
    s_expect_error ("{routes: [{classifier: a, routes: {x: 'b c'}}]}",
                    "routes item 1 routes 'x' is not a valid actor name: 'b c'");
    s_expect_error ("{routes: [{match: x, to: a, output: y}]}",
                    "'output' and 'routes' are only for classifier");
    s_expect_error ("{routes: [{match: x, to: a}], default: '$x'}",
                    "r: 'default' is not a valid actor name");
    //  Found when the file is loaded, at the value's own line and column.
    const char *yaml = "name: t\n"
                    "children:\n"
                    "  - {name: a, actor: member}\n"
                    "  - name: r\n"
                    "    actor: router\n"
                    "    params:\n"
                    "      routes:\n"
                    "        - {match: x, to: a}\n"
                    "        - classifier: a\n"
                    "          routes: {billing: \"b c\"}\n";
    char *error = tr_test_tree_error (s_node, yaml, "router.yaml");
    ck_assert_msg (strstr (error, "router.yaml:10:29: r: routes item 2 routes 'billing' is not a "
                                  "valid actor name: 'b c'"), "%s", error);
    free (error);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_router");
    TCase *tc = tcase_create ("router");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_priority_and_default);
    tcase_add_test (tc, test_scratchpad);
    tcase_add_test (tc, test_least_loaded);
    tcase_add_test (tc, test_classifier);
    tcase_add_test (tc, test_route_failures);
    tcase_add_test (tc, test_remote_route);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
