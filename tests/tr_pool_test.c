/*  tr_pool_test.c - tests of the pool (actors/tr_pool.c), started from
    tree files like any user's.

    Strategies: round_robin in turn, least_busy away from a busy member,
    random spread, consistent_hash (same key same member, keys spread, a
    missing field refused, a removed member moves only its own keys),
    broadcast (tells to all; asks gathered with errors in place),
    performance (the fast member preferred, a failing one avoided, and
    seen again once it recovers). The limit: asks overlap (measured) up to
    it, queue past it, TR_EFULL past the queue; adaptive limits grow and
    halve. Failures: errors and timeouts reported, retried on another
    member. Members that are llm agents on the offline backend, and a
    member on another node through a real broker. Bad parameters.
*/

#include "tr_test.h"
#include "tr_test_tree.h"

#include <stdatomic.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  --------------------------------------------------------------------------
//  Helpers (the member type, trees and asks: tr_test_tree.h)

static void
s_setup (void)
{
    tr_test_setup (&s_node, NULL);
    tr_test_member_register ();
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

//  Starts a tree from YAML text on node.
static void
s_start_on (tr_node_t *node, const char *yaml)
{
    tr_test_tree_start (node, yaml, "pool.yaml", &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    s_start_on (s_node, yaml);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_str (s_node, to, text, 5000 * tr_test_slowdown (), answer);
}

//  Asks the pool, expects an answer, returns it (malloc'd).
static char *
s_who (const char *pool, const char *text)
{
    char *answer = NULL;
    int rc = s_ask (pool, text, &answer);
    ck_assert_msg (rc == TR_OK, "ask %s: %s", pool, tr_errname (rc));
    return answer;
}

//  --------------------------------------------------------------------------
//  Strategies

START_TEST (test_round_robin)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: member}\n"
             "  - {name: b, actor: member}\n"
             "  - {name: c, actor: member}\n"
             "  - {name: p, actor: pool, params: {members: [a, b, c]}}\n");
    const char *expect [] = { "a", "b", "c", "a", "b", "c", "a" };
    for (size_t i = 0; i < 7; i++) {
        char *who = s_who ("p", "x");
        ck_assert_str_eq (who, expect [i]);
        free (who);
    }
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.answered"), 7);
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.inflight"), 0);
    //  Tells go round too.
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq (tr_tell (s_node, "p", "\xa1x", 2, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "a", "got") + tr_test_info (s_node, "b", "got")
           + tr_test_info (s_node, "c", "got") < 13
    &&     tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "a", "got"), 5);
    ck_assert_int_eq (tr_test_info (s_node, "b", "got"), 4);
    ck_assert_int_eq (tr_test_info (s_node, "c", "got"), 4);
}
END_TEST

START_TEST (test_least_busy)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: slow, actor: member, params: {delay: 600ms}}\n"
             "  - {name: b, actor: member}\n"
             "  - {name: c, actor: member}\n"
             "  - {name: p, actor: pool, params: {members: [slow, b, c], strategy: least_busy}}\n");
    //  The first ask goes to `slow` (all idle; the first in turn) and keeps
    //  it busy; while it is, no other ask goes there.
    tr_test_asker_t first;
    tr_test_asker_start (&first, s_node, "p", "\"x\"", 5000 * tr_test_slowdown (), 0);
    int64_t deadline = tr_test_now_ms () + 2000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "slow", "got") == 0 && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert_int_eq (tr_test_info (s_node, "slow", "got"), 1);
    int64_t start = tr_test_now_ms ();
    int seen_b = 0, seen_c = 0;
    for (int i = 0; i < 6; i++) {
        char *who = s_who ("p", "x");
        seen_b += strcmp (who, "b") == 0;
        seen_c += strcmp (who, "c") == 0;
        free (who);
    }
    bool in_time = tr_test_now_ms () - start < 500;
    tr_test_asker_join (&first);
    ck_assert_int_eq (first.rc, TR_OK);
    ck_assert_str_eq (first.answer, "\"slow\"");
    free (first.answer);
    if (in_time) {
        //  (On a machine slow enough for `slow` to finish meanwhile, it may
        //  rightly get asks again; the split below is then not checked.)
        ck_assert_int_eq (seen_b, 3);
        ck_assert_int_eq (seen_c, 3);
        ck_assert_int_eq (tr_test_info (s_node, "slow", "got"), 1);
    }
}
END_TEST

START_TEST (test_random)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: member}\n"
             "  - {name: b, actor: member}\n"
             "  - {name: c, actor: member}\n"
             "  - {name: p, actor: pool, params: {members: [a, b, c], strategy: random, seed: 7}}\n");
    int counts [3] = { 0 };
    for (int i = 0; i < 300; i++) {
        char *who = s_who ("p", "x");
        counts [who [0] - 'a']++;
        free (who);
    }
    //  300 uniform draws over 3: each within 100 +- 40 (more than 5 sigma).
    for (int i = 0; i < 3; i++)
        ck_assert_msg (counts [i] > 60 && counts [i] < 140, "member %c got %d of 300",
                       'a' + i, counts [i]);
}
END_TEST

//  A map body {user: NAME, n: N}.
static tr_body_t
s_user_body (const char *user, int n)
{
    tr_body_t body;
    size_t len = strlen (user);
    ck_assert (len < 31);
    char *p = (char *) body.data;
    *p++ = (char) 0x82;
    *p++ = (char) 0xa4; memcpy (p, "user", 4); p += 4;
    *p++ = (char) (0xa0 | len); memcpy (p, user, len); p += len;
    *p++ = (char) 0xa1; *p++ = 'n';
    *p++ = (char) (n & 0x7f);
    body.size = (size_t) (p - (char *) body.data);
    return body;
}

//  Asks pool with body; returns the member that answered (malloc'd), or
//  NULL with *rc_p set.
static char *
s_who_body (const char *pool, tr_body_t body, int *rc_p)
{
    tr_msg_t *reply = NULL;
    *rc_p = tr_ask (s_node, pool, body.data, body.size, 5000, &reply, NULL);
    if (*rc_p != TR_OK)
        return NULL;
    const char *s;
    size_t len;
    ck_assert_int_eq (tr_msg_str (reply, &s, &len), TR_OK);
    char *who = strndup (s, len);
    tr_msg_destroy (&reply);
    return who;
}

START_TEST (test_consistent_hash)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: member}\n"
             "  - {name: b, actor: member}\n"
             "  - {name: c, actor: member}\n"
             "  - {name: d, actor: member}\n"
             "  - name: p\n"
             "    actor: pool\n"
             "    params: {members: [a, b, c, d], strategy: consistent_hash, hash_key: user}\n"
             "  - name: p3\n"
             "    actor: pool\n"
             "    params: {members: [a, b, c], strategy: consistent_hash, hash_key: user}\n"
             "  - {name: whole, actor: pool, params: {members: [a, b, c], strategy: consistent_hash}}\n");
    //  The same user goes to the same member, whatever else is in the map.
    char users [40] [8];
    char *first [40];
    int spread [4] = { 0 };
    int rc;
    for (int u = 0; u < 40; u++) {
        snprintf (users [u], sizeof users [u], "u%d", u);
        first [u] = s_who_body ("p", s_user_body (users [u], 0), &rc);
        ck_assert_int_eq (rc, TR_OK);
        spread [first [u][0] - 'a']++;
        for (int n = 1; n < 4; n++) {
            char *again = s_who_body ("p", s_user_body (users [u], n), &rc);
            ck_assert_str_eq (again, first [u]);
            free (again);
        }
    }
    //  40 keys over 4 members: every member has some.
    for (int i = 0; i < 4; i++)
        ck_assert_msg (spread [i] > 0, "member %c has no key of 40", 'a' + i);
    //  Without d (pool p3: the same ring less d's points), keys that were
    //  not on d stay where they were; d's keys move elsewhere.
    for (int u = 0; u < 40; u++) {
        char *now = s_who_body ("p3", s_user_body (users [u], 0), &rc);
        ck_assert_int_eq (rc, TR_OK);
        if (strcmp (first [u], "d") != 0)
            ck_assert_msg (strcmp (now, first [u]) == 0, "key %s moved from %s to %s",
                           users [u], first [u], now);
        free (now);
        free (first [u]);
    }
    //  A map without the field is refused, and answered at once.
    tr_body_t body;
    tr_body_str (&body, "no map", 6);
    ck_assert_ptr_null (s_who_body ("p", body, &rc));
    ck_assert_int_eq (rc, TR_EINVAL);
    //  Whole-body hashing: the same body, the same member.
    char *w1 = s_who ("whole", "the same text");
    for (int i = 0; i < 5; i++) {
        char *w2 = s_who ("whole", "the same text");
        ck_assert_str_eq (w1, w2);
        free (w2);
    }
    free (w1);
}
END_TEST

//  Reads a broadcast answer: a list of {member, answer|error}. Fills
//  who[i], what[i] (the answer string or the error name).
static size_t
s_read_broadcast (tr_msg_t *reply, char who [][16], char what [][32])
{
    tr__mp_t mp;
    uint32_t n, pairs, len;
    const char *s;
    tr__mp_init (&mp, tr_msg_body (reply), tr_msg_size (reply));
    ck_assert_int_eq (tr__mp_array (&mp, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_int_eq (tr__mp_map (&mp, &pairs), 0);
        ck_assert_int_eq (pairs, 2);
        ck_assert_int_eq (tr__mp_str (&mp, &s, &len), 0);
        ck_assert (len == 6 && memcmp (s, "member", 6) == 0);
        ck_assert_int_eq (tr__mp_str (&mp, &s, &len), 0);
        snprintf (who [i], 16, "%.*s", (int) len, s);
        ck_assert_int_eq (tr__mp_str (&mp, &s, &len), 0);
        bool error = len == 5 && memcmp (s, "error", 5) == 0;
        ck_assert (error || (len == 6 && memcmp (s, "answer", 6) == 0));
        ck_assert_int_eq (tr__mp_str (&mp, &s, &len), 0);
        snprintf (what [i], 32, "%s%.*s", error? "!": "", (int) len, s);
    }
    return n;
}

START_TEST (test_broadcast)
{
    s_start (TR_TEST_LENIENT

             "  - {name: a, actor: member}\n"
             "  - {name: bad, actor: member, params: {fail: true}}\n"
             "  - {name: slow, actor: member, params: {delay: 2s}}\n"
             "  - {name: c, actor: member}\n"
             "  - name: p\n"
             "    actor: pool\n"
             "    params: {members: [a, bad, slow, nobody, c], strategy: broadcast, timeout: 300ms}\n");
    tr_body_t body;
    tr_body_str (&body, "all", 3);
    tr_msg_t *reply = NULL;
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_ask (s_node, "p", body.data, body.size, 5000, &reply, NULL), TR_OK);
    int64_t took = tr_test_now_ms () - start;
    char who [5][16], what [5][32];
    ck_assert_int_eq (s_read_broadcast (reply, who, what), 5);
    tr_msg_destroy (&reply);
    //  In member order, each failure in its place.
    ck_assert_str_eq (who [0], "a");      ck_assert_str_eq (what [0], "a");
    ck_assert_str_eq (who [1], "bad");    ck_assert_str_eq (what [1], "!TR_EHANDLER");
    ck_assert_str_eq (who [2], "slow");   ck_assert_str_eq (what [2], "!TR_ETIMEDOUT");
    ck_assert_str_eq (who [3], "nobody"); ck_assert_str_eq (what [3], "!TR_ENOACTOR");
    ck_assert_str_eq (who [4], "c");      ck_assert_str_eq (what [4], "c");
    //  Gathered when the slowest leg timed out, not at the member's 2 s.
    ck_assert_msg (took < 1500 * tr_test_slowdown (), "took %lld ms", (long long) took);
    //  A tell goes to every member.
    ck_assert_int_eq (tr_tell (s_node, "p", body.data, body.size, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while ((tr_test_info (s_node, "a", "got") < 2 || tr_test_info (s_node, "c", "got") < 2
            || tr_test_info (s_node, "bad", "got") < 2)
    &&     tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "a", "got"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "c", "got"), 2);
    ck_assert_int_eq (tr_test_info (s_node, "bad", "got"), 2);
    //  The one nobody holds is counted, not lost silently.
    deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "p", "pool.dropped") < 1 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.dropped"), 1);
}
END_TEST

START_TEST (test_performance)
{
    //  fast answers in 10 ms, slow in 40 ms; flip at once, but fails while
    //  the test says so.
    s_start (TR_TEST_LENIENT
             "  - {name: fast, actor: member, params: {delay: 10ms}}\n"
             "  - {name: slow, actor: member, params: {delay: 40ms}}\n"
             "  - {name: flip, actor: member, params: {switch: true}}\n"
             "  - name: p\n"
             "    actor: pool\n"
             "    params: {members: [fast, slow, flip], strategy: performance,\n"
             "             explore: 0.3, decay: 0.5, seed: 3, timeout: 1s}\n");
    atomic_store (&tr_test_member_switch, true);
    int counts [3] = { 0 };
    int errors = 0;
    for (int i = 0; i < 150; i++) {
        char *who = NULL;
        int rc = s_ask ("p", "x", &who);
        if (rc != TR_OK) {
            ck_assert_int_eq (rc, TR_EHANDLER);
            errors++;
            continue;
        }
        counts [strcmp (who, "fast") == 0? 0: strcmp (who, "slow") == 0? 1: 2]++;
        free (who);
    }
    //  explore 0.3 over 3 members: about 15 asks each at random; the rest
    //  go to the cheapest that works, fast.
    ck_assert_msg (counts [0] > 90, "fast answered %d of 150", counts [0]);
    ck_assert_msg (counts [1] < 45, "slow answered %d of 150", counts [1]);
    ck_assert_msg (errors < 40, "flip failed %d of 150", errors);
    ck_assert_int_eq (counts [2], 0);
    //  flip recovers: exploration finds it healthy again and, the
    //  quickest now, it gets most of the asks.
    atomic_store (&tr_test_member_switch, false);
    int flip = 0;
    for (int i = 0; i < 200; i++) {
        char *who = s_who ("p", "x");
        flip += i >= 100 && strcmp (who, "flip") == 0;
        free (who);
    }
    ck_assert_msg (flip > 50, "flip answered %d of the last 100 after recovering", flip);
}
END_TEST

//  --------------------------------------------------------------------------
//  Limits

START_TEST (test_limit_queue_full)
{
    //  Offline llm agents answer after 300 ms each; asks to one agent
    //  overlap (it defers them), so the pool's limit is what bounds them.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: m1, actor: llm, params: {offline: {latency: 300ms}}}\n"
             "  - {name: m2, actor: llm, params: {offline: {latency: 300ms}}}\n"
             "  - name: p\n"
             "    actor: pool\n"
             "    params: {members: [m1, m2], limit: 3, queue: 2}\n");
    enum { N = 7 };
    tr_test_asker_t askers [N];
    int64_t start = tr_test_now_ms ();
    for (int i = 0; i < N; i++) {
        tr_test_asker_start (&askers [i], s_node, "p", "\"summarise the weather\"",
                             10000 * tr_test_slowdown (), 0);
        usleep (20 * 1000);              //  in order: they reach the pool in turn
    }
    int ok = 0, full = 0;
    int64_t last = 0;
    for (int i = 0; i < N; i++) {
        tr_test_asker_join (&askers [i]);
        if (askers [i].rc == TR_OK) {
            ok++;
            ck_assert_msg (strcmp (askers [i].answer, "\"\"") != 0, "empty answer");
            if (askers [i].back_ms > last)
                last = askers [i].back_ms;
        }
        else {
            ck_assert_int_eq (askers [i].rc, TR_EFULL);
            full++;
        }
        free (askers [i].answer);
    }
    //  3 in flight, 2 queued, 2 refused at once.
    ck_assert_int_eq (ok, 5);
    ck_assert_int_eq (full, 2);
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.refused"), 2);
    //  Overlap: two rounds of 300 ms (3 then 2), not five in a row (1.5 s).
    int64_t took = last - start;
    ck_assert_msg (took >= 550, "5 answers in %lld ms: the limit was not kept", (long long) took);
    ck_assert_msg (took < 1400 * tr_test_slowdown (), "5 answers in %lld ms: no overlap",
                   (long long) took);
}
END_TEST

START_TEST (test_adaptive)
{
    s_start (TR_TEST_LENIENT

             "  - {name: m, actor: member, params: {switch: true}}\n"
             "  - name: p\n"
             "    actor: pool\n"
             "    params: {members: [m], adaptive: true, limit: 16, limit_min: 1,\n"
             "             latency_target: 500ms}\n");
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.limit"), 1);
    //  Answers within the target: the limit grows (about sqrt (2n) after n).
    for (int i = 0; i < 60; i++)
        free (s_who ("p", "x"));
    int64_t grown = tr_test_info (s_node, "p", "pool.limit");
    ck_assert_msg (grown >= 8 && grown <= 16, "limit %lld after 60 good answers", (long long) grown);
    //  Failures: each round halves it, down to limit_min.
    atomic_store (&tr_test_member_switch, true);
    ck_assert_int_eq (s_ask ("p", "x", NULL), TR_EHANDLER);
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.limit"), grown / 2);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq (s_ask ("p", "x", NULL), TR_EHANDLER);
    ck_assert_int_eq (tr_test_info (s_node, "p", "pool.limit"), 1);
    //  And grows again once the member is well.
    atomic_store (&tr_test_member_switch, false);
    for (int i = 0; i < 20; i++)
        free (s_who ("p", "x"));
    ck_assert_int_gt (tr_test_info (s_node, "p", "pool.limit"), 3);
}
END_TEST

//  --------------------------------------------------------------------------
//  Failures

START_TEST (test_failures_and_retries)
{
    s_start (TR_TEST_LENIENT

             "  - {name: bad, actor: member, params: {fail: true}}\n"
             "  - {name: hung, actor: member, params: {delay: 3s}}\n"
             "  - {name: good, actor: member}\n"
             "  - {name: once, actor: pool, params: {members: [bad, good]}}\n"
             "  - {name: lost, actor: pool, params: {members: [nobody, good]}}\n"
             "  - {name: slowp, actor: pool, params: {members: [hung, good], timeout: 200ms}}\n"
             "  - {name: again, actor: pool, params: {members: [bad, nobody, hung, good],\n"
             "                                        retries: 3, timeout: 200ms}}\n"
             "  - {name: short, actor: pool, params: {members: [bad, nobody], retries: 5}}\n"
             "  - {name: stuck, actor: pool, params: {members: [hung]}}\n");
    //  Without retries the asker gets the member's error.
    ck_assert_int_eq (s_ask ("once", "x", NULL), TR_EHANDLER);
    char *who = s_who ("once", "x");
    ck_assert_str_eq (who, "good");
    free (who);
    ck_assert_int_eq (s_ask ("lost", "x", NULL), TR_ENOACTOR);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("slowp", "x", NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 190 && took < 1500 * tr_test_slowdown (), "timed out after %lld ms",
                   (long long) took);
    //  With retries: bad fails, nobody is missing, hung times out; good
    //  answers, within the ask.
    who = s_who ("again", "x");
    ck_assert_str_eq (who, "good");
    free (who);
    ck_assert_int_eq (tr_test_info (s_node, "again", "pool.retried"), 3);
    //  More retries than members: every member once, then the last error.
    ck_assert_int_eq (s_ask ("short", "x", NULL), TR_ENOACTOR);
    ck_assert_int_eq (tr_test_info (s_node, "short", "pool.failed"), 1);
    //  The asker's own deadline bounds the attempt: the slot is free again
    //  soon after it, not after the pool's timeout of 5 s.
    ck_assert_int_eq (tr_test_ask_str (s_node, "stuck", "x", 100, NULL), TR_ETIMEDOUT);
    ck_assert_int_eq (tr_test_info (s_node, "stuck", "pool.inflight"), 1);
    int64_t deadline = tr_test_now_ms () + 1000 * tr_test_slowdown ();
    while (tr_test_info (s_node, "stuck", "pool.inflight") > 0 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (tr_test_info (s_node, "stuck", "pool.inflight"), 0);
    ck_assert_int_eq (tr_test_info (s_node, "stuck", "pool.failed"), 1);
}
END_TEST

START_TEST (test_stop_in_flight)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: m, actor: llm, params: {offline: {latency: 2s}}}\n"
             "  - {name: p, actor: pool, params: {members: [m], limit: 1}}\n");
    tr_test_asker_t a, b;
    int64_t start = tr_test_now_ms ();
    tr_test_asker_start (&a, s_node, "p", "\"one\"", 10000, 0);
    usleep (50 * 1000);
    tr_test_asker_start (&b, s_node, "p", "\"two\"", 10000, 0);     //  queued behind a
    usleep (50 * 1000);
    ck_assert_int_eq (tr_sup_stop_child (s_node, "p"), TR_OK);
    tr_test_asker_join (&a);
    tr_test_asker_join (&b);
    //  Neither waits for its full timeout: both are told no answer comes.
    ck_assert_int_eq (a.rc, TR_ENOREPLY);
    ck_assert_int_eq (b.rc, TR_ENOREPLY);
    ck_assert_int_lt (a.back_ms - start, 1800);
    ck_assert_int_lt (b.back_ms - start, 1800);
}
END_TEST

//  --------------------------------------------------------------------------
//  Members on another node

START_TEST (test_remote_member)
{
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    tr_node_t *a = r.a;
    ck_assert_int_eq (tr_spawn (r.b, "far", &tr_test_member_type.behaviour, NULL, NULL, NULL),
                      TR_OK);
    //  The pool and one member on node a; the other member on node b.
    s_start_on (a, "name: t\n"
                   "children:\n"
                   "  - {name: near, actor: member}\n"
                   "  - {name: p, actor: pool, params: {members: [near, far]}}\n"
                   "  - {name: all, actor: pool, params: {members: [near, far], "
                   "strategy: broadcast}}\n");
    //  Wait for far's name to reach the broker.
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    int rc;
    while ((rc = tr_test_ask_str (a, "far", "x", 1000, NULL)) != TR_OK && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    int near = 0, far = 0;
    for (int i = 0; i < 10; i++) {
        char *who = NULL;
        ck_assert_int_eq (tr_test_ask_str (a, "p", "x", 5000, &who), TR_OK);
        near += strcmp (who, "near") == 0;
        far += strcmp (who, "far") == 0;
        free (who);
    }
    ck_assert_int_eq (near, 5);
    ck_assert_int_eq (far, 5);
    tr_body_t body;
    tr_body_str (&body, "all", 3);
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (tr_ask (a, "all", body.data, body.size, 5000, &reply, NULL), TR_OK);
    char who [2][16], what [2][32];
    ck_assert_int_eq (s_read_broadcast (reply, who, what), 2);
    tr_msg_destroy (&reply);
    ck_assert_str_eq (what [0], "near");
    ck_assert_str_eq (what [1], "far");
    //  The remote member gone: its asks fail over to near with retries,
    //  and without them the asker hears of it (no wait for the timeout).
    tr_node_destroy (&r.b);
    for (int i = 0; i < 4; i++) {
        char *answer = NULL;
        rc = tr_test_ask_str (a, "p", "x", 5000, &answer);
        ck_assert_msg (rc == TR_OK || rc == TR_ENOACTOR || rc == TR_ENODE,
                       "ask %d: %s", i, tr_errname (rc));
        if (rc == TR_OK)
            ck_assert_str_eq (answer, "near");
        free (answer);
    }
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_test_remote_stop (&r);
}
END_TEST

//  --------------------------------------------------------------------------
//  Parameters

static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "pool.yaml", "name: t\n"
                                 "children:\n"
                                 "  - {name: a, actor: member}\n"
                                 "  - name: p\n"
                                 "    actor: pool\n", params, expect, TR_TEST_PART);
}

START_TEST (test_bad_params)
{
    //  Kinds: the tree loader, with the position.
    s_expect_error ("{members: [a], limit: \"8\"}",
                    "pool.yaml:6:35: parameter 'limit' of actor type 'pool' must be an integer");
    s_expect_error ("{members: a}",
                    "pool.yaml:6:23: parameter 'members' of actor type 'pool' must be a sequence");
    s_expect_error ("{member: [a]}", "pool.yaml:6:14: unknown parameter 'member'");
    s_expect_error ("{limit: 3}", "missing parameter 'members' of actor type 'pool'");
    s_expect_error ("{members: [a], timeout: 5 s}", "pool.yaml:6:");
    //  Values: the pool, when it starts.
    s_expect_error ("{members: [a], strategy: fastest}",
                    "p: 'strategy' must be one of round_robin, least_busy, random, "
                    "consistent_hash, broadcast, performance, not 'fastest'");
    s_expect_error ("{members: []}", "p: 'members' must be a list of at least one");
    s_expect_error ("{members: [a, 3]}", "p: 'members' item 2 must be an actor name");
    s_expect_error ("{members: [a, \"b c\"]}", "p: 'members' item 2 is not a valid");
    s_expect_error ("{members: [a, a]}", "p: 'members' names 'a' twice");
    s_expect_error ("{members: [a], limit: 0}", "p: 'limit' must be from 1");
    s_expect_error ("{members: [a], queue: -1}", "p: 'queue' must be from 0");
    s_expect_error ("{members: [a], hash_key: user}",
                    "p: 'hash_key' is only for strategy consistent_hash");
    s_expect_error ("{members: [a], limit_min: 2}",
                    "p: 'limit_min' and 'latency_target' need 'adaptive: true'");
    s_expect_error ("{members: [a], adaptive: true, limit: 2, limit_min: 4}",
                    "p: 'limit_min' (4) must not be above 'limit' (2)");
    s_expect_error ("{members: [a], explore: 0.5}",
                    "p: 'explore' and 'decay' are only for strategy performance");
    s_expect_error ("{members: [a], strategy: performance, explore: 1.5}",
                    "p: 'explore' must be from 0 to 1, not 1.5");
    s_expect_error ("{members: [a], strategy: broadcast, retries: 1}",
                    "p: 'retries' does not apply to strategy broadcast");
    s_expect_error ("{members: [a], timeout: 0}", "p: 'timeout' must be from 1 ms");
    //  Found when the file is loaded, at the value's own line and column.
    char *error = tr_test_tree_error (s_node, "name: t\n"
                                      "children:\n"
                                      "  - {name: a, actor: member}\n"
                                      "  - name: p\n"
                                      "    actor: pool\n"
                                      "    params:\n"
                                      "      members: [a, a]\n", "pool.yaml");
    ck_assert_str_eq (error, "pool.yaml:7:20: p: 'members' names 'a' twice (items 1 and 2)");
    free (error);
    //  Spawned from C with parameters of its own, the pool checks them
    //  when it starts: {members: []} is refused.
    static const uint8_t packed [] = { 0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0x90 };
    tr_params_t params = { packed, sizeof packed };
    const tr_actor_type_t *type = tr_actor_type_find ("pool");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    static const uint8_t good [] = { 0x81, 0xa7, 'm', 'e', 'm', 'b', 'e', 'r', 's', 0x91,
                                     0xa1, 'a' };
    params = (tr_params_t) { good, sizeof good };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_OK);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_pool");
    TCase *tc = tcase_create ("pool");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_round_robin);
    tcase_add_test (tc, test_least_busy);
    tcase_add_test (tc, test_random);
    tcase_add_test (tc, test_consistent_hash);
    tcase_add_test (tc, test_broadcast);
    tcase_add_test (tc, test_performance);
    tcase_add_test (tc, test_limit_queue_full);
    tcase_add_test (tc, test_adaptive);
    tcase_add_test (tc, test_failures_and_retries);
    tcase_add_test (tc, test_stop_in_flight);
    tcase_add_test (tc, test_remote_member);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
