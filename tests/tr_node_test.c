/*  tr_node_test.c - node lifecycle, options, counters, shutdown with
    messages still queued, and two nodes side by side (tr_node.h).  */

#include "tr_test.h"

#include <dirent.h>

START_TEST (test_defaults)
{
    tr_node_t *node = NULL;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    const tr_node_opts_t *o = tr_node_opts (node);
    ck_assert_uint_eq (o->mailbox_capacity, 1024);
    ck_assert_int_eq (o->send_timeout_ms, 1000);
    ck_assert_uint_eq (o->stack_size, 256 * 1024);
    ck_assert_int_eq (o->spin_us, 50);
    ck_assert_int_eq (o->stop_timeout_ms, 5000);
    ck_assert_uint_gt (o->max_actors, 0);
    tr_node_stats_t st;
    ck_assert_int_eq (tr_node_stats (node, &st), TR_OK);
    ck_assert_uint_eq (st.actors, 0);
    ck_assert_uint_eq (st.sent, 0);
    ck_assert_uint_eq (st.dead_letters, 0);
    tr_node_destroy (&node);
    ck_assert_ptr_null (node);
    tr_node_destroy (&node);                    //  NULL is fine
    tr_node_destroy (NULL);
}
END_TEST

START_TEST (test_bad_options)
{
    tr_node_t *node = (tr_node_t *) 1;
    tr_node_opts_t tiny_stack = { .stack_size = 4096 };
    tr_node_opts_t huge_capacity = { .mailbox_capacity = (size_t) 1 << 62 };
    tr_node_opts_t negative = { .send_timeout_ms = -5 };
    ck_assert_int_eq (tr_node_new (NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_node_new (&tiny_stack, &node), TR_EINVAL);
    ck_assert_ptr_null (node);
    ck_assert_int_eq (tr_node_new (&huge_capacity, &node), TR_EINVAL);
    ck_assert_int_eq (tr_node_new (&negative, &node), TR_EINVAL);
    ck_assert_int_eq (tr_node_stats (NULL, NULL), TR_EINVAL);
}
END_TEST

START_TEST (test_options_apply)
{
    tr_node_t *node;
    tr_node_opts_t opts = { .mailbox_capacity = 3, .spin_us = -1 };
    ck_assert_int_eq (tr_node_new (&opts, &node), TR_OK);
    tr_probe_t *p = tr_probe_new ();
    tr_probe_spawn (node, "probe", p, NULL);
    tr_actor_stats_t st;
    tr_actor_stats (node, "probe", &st);
    ck_assert_uint_eq (st.capacity, 3);
    //  Without spinning, actors still answer (they sleep in ZeroMQ).
    for (uint64_t i = 0; i < 100; i++)
        ck_assert_int_eq (tr_test_ask (node, "probe", i, 5000, NULL), TR_OK);
    tr_node_destroy (&node);
    tr_probe_destroy (&p);
}
END_TEST

//  Accounting: what was accepted is handled or dead, never lost.
START_TEST (test_accounting_balances)
{
    tr_node_t *node;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    tr_probe_t *p = tr_probe_new ();
    tr_spawn_opts_t small = { .capacity = 8, .on_full = TR_FULL_FAIL };
    tr_probe_spawn (node, "probe", p, &small);
    tr_probe_close_gate (node, "probe");
    int accepted = 1, refused = 0;
    for (uint64_t i = 0; i < 20; i++) {
        int rc = tr_test_tell (node, "probe", i, NULL);
        if (rc == TR_OK)
            accepted++;
        else {
            ck_assert_int_eq (rc, TR_EFULL);
            refused++;
        }
    }
    ck_assert_int_eq (accepted, 9);
    ck_assert_int_eq (refused, 12);
    tr_probe_open (p);
    ck_assert (tr_probe_wait (p, 9, 5000));
    tr_node_stats_t st;
    tr_node_stats (node, &st);
    ck_assert_uint_eq (st.sent, 9);
    ck_assert_uint_eq (st.rejected, 12);
    ck_assert_uint_eq (st.dead_letters, 0);
    tr_node_destroy (&node);
    tr_probe_destroy (&p);
}
END_TEST

static void *
s_open_soon (void *arg)
{
    usleep (100 * 1000);
    tr_probe_open ((tr_probe_t *) arg);
    return NULL;
}

//  The node goes down with messages queued everywhere: every actor stops,
//  every queued message is freed (AddressSanitizer checks), and nothing
//  hangs.
START_TEST (test_destroy_with_queued_messages)
{
    tr_node_t *node;
    ck_assert_int_eq (tr_node_new (NULL, &node), TR_OK);
    tr_probe_t *probes [4];
    for (int i = 0; i < 4; i++) {
        char name [8];
        snprintf (name, sizeof name, "q%d", i);
        probes [i] = tr_probe_new ();
        tr_probe_spawn (node, name, probes [i], NULL);
        tr_probe_close_gate (node, name);
        for (uint64_t k = 0; k < 500; k++)
            ck_assert_int_eq (tr_test_tell (node, name, k, NULL), TR_OK);
    }
    //  Timers pending too.
    tr_test_body_t b = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_timer_after (node, "q0", 60000, b.data, b.size, NULL), TR_OK);
    ck_assert_int_eq (tr_timer_every (node, "q1", 10, b.data, b.size, NULL), TR_OK);
    pthread_t openers [4];
    for (int i = 0; i < 4; i++)
        pthread_create (&openers [i], NULL, s_open_soon, probes [i]);
    tr_node_destroy (&node);
    for (int i = 0; i < 4; i++) {
        pthread_join (openers [i], NULL);
        ck_assert_int_eq (probes [i]->terminated, 1);
        //  The stop signal overtook the queue: at most a few were handled.
        ck_assert_uint_lt (tr_probe_count (probes [i]), 500);
        tr_probe_destroy (&probes [i]);
    }
}
END_TEST

START_TEST (test_two_nodes)
{
    tr_node_t *a, *b;
    ck_assert_int_eq (tr_node_new (NULL, &a), TR_OK);
    ck_assert_int_eq (tr_node_new (NULL, &b), TR_OK);
    tr_probe_t *pa = tr_probe_new (), *pb = tr_probe_new ();
    tr_probe_spawn (a, "same", pa, NULL);
    tr_probe_spawn (b, "same", pb, NULL);       //  names are per node
    ck_assert_int_eq (tr_test_ask (a, "same", 1, 5000, NULL), TR_OK);
    ck_assert_int_eq (tr_test_ask (b, "same", 2, 5000, NULL), TR_OK);
    ck_assert_uint_eq (pa->values [0], 1);
    ck_assert_uint_eq (pb->values [0], 2);
    tr_node_destroy (&a);
    //  b is unaffected, and this thread's port on b still works.
    ck_assert_int_eq (tr_test_ask (b, "same", 3, 5000, NULL), TR_OK);
    tr_node_destroy (&b);
    //  A new node may reuse the old one's address: the thread's stale
    //  port must not be used.
    ck_assert_int_eq (tr_node_new (NULL, &a), TR_OK);
    tr_probe_spawn (a, "again", pa, NULL);
    ck_assert_int_eq (tr_test_ask (a, "again", 4, 5000, NULL), TR_OK);
    tr_node_destroy (&a);
    tr_probe_destroy (&pa);
    tr_probe_destroy (&pb);
}
END_TEST

//  Threads that are not actors get their own port each, and give it
//  back when they end; a thread that outlives its node is harmless.
static tr_node_t *s_node;

static int
s_open_fds (void)
{
    int n = 0;
    DIR *dir = opendir ("/proc/self/fd");
    while (dir && readdir (dir))
        n++;
    if (dir)
        closedir (dir);
    return n;
}

static void *
s_short_lived (void *arg)
{
    return (void *) (intptr_t) tr_test_ask (s_node, "probe", 1, 5000, NULL);
}

START_TEST (test_threads_come_and_go)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    tr_probe_t *p = tr_probe_new ();
    tr_probe_spawn (s_node, "probe", p, NULL);
    ck_assert_ptr_null (s_short_lived (NULL));
    int fds = s_open_fds ();
    for (int round = 0; round < 50; round++) {
        pthread_t t;
        void *rc;
        pthread_create (&t, NULL, s_short_lived, NULL);
        pthread_join (t, &rc);
        ck_assert_int_eq ((int) (intptr_t) rc, TR_OK);
    }
    //  One port (one socket, one descriptor) served them all in turn.
    ck_assert_int_le (s_open_fds (), fds + 1);
    tr_node_destroy (&s_node);
    tr_probe_destroy (&p);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_node");
    TCase *tc = tcase_create ("node");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_defaults);
    tcase_add_test (tc, test_bad_options);
    tcase_add_test (tc, test_options_apply);
    tcase_add_test (tc, test_accounting_balances);
    tcase_add_test (tc, test_destroy_with_queued_messages);
    tcase_add_test (tc, test_two_nodes);
    tcase_add_test (tc, test_threads_come_and_go);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
