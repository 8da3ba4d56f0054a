/*  tr_actor_test.c - spawning, the behaviour's callbacks, names, stop,
    abandonment, limits and 10,000 actors (tr_actor.h).  */

#include "tr_test.h"

static tr_node_t *s_node;
static tr_probe_t *s_probe;

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
    s_probe = tr_probe_new ();
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
    tr_probe_destroy (&s_probe);
}

//  --------------------------------------------------------------------------
//  Callbacks: init builds the state, handle sees it, terminate frees it.

typedef struct {
    int inits, handles, terminates;
    int terminate_reason;
    void *state_seen;
    tr_actor_t *self_seen;
    int init_result;
    int init_sleep_ms;
    bool init_done;
} s_life_t;

static int
s_life_init (tr_actor_t *self, void *arg, void **state_p)
{
    s_life_t *life = (s_life_t *) arg;
    ck_assert_ptr_eq (*state_p, arg);           //  starts out as arg
    if (life->init_sleep_ms)
        usleep ((useconds_t) life->init_sleep_ms * 1000);
    life->inits++;
    life->init_done = true;
    ck_assert_ptr_eq (tr_self (), self);
    *state_p = &life->handles;                  //  a state other than arg
    return life->init_result;
}

static int
s_life_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    int *handles = (int *) state;
    (*handles)++;
    s_life_t *life = (s_life_t *) ((char *) handles - offsetof (s_life_t, handles));
    life->state_seen = state;
    life->self_seen = tr_self ();
    return tr_reply (msg, NULL, 0);
}

static void
s_life_terminate (tr_actor_t *self, int reason, void *state)
{
    s_life_t *life = (s_life_t *) ((char *) state - offsetof (s_life_t, handles));
    life->terminates++;
    life->terminate_reason = reason;
}

static const tr_behaviour_t s_life = {
    .init = s_life_init, .handle = s_life_handle, .terminate = s_life_terminate
};

START_TEST (test_lifecycle_callbacks)
{
    s_life_t life = { .init_sleep_ms = 50 };
    tr_actor_t *actor = NULL;
    ck_assert_int_eq (tr_spawn (s_node, "life", &s_life, &life, NULL, &actor), TR_OK);
    //  tr_spawn returned only once init had returned.
    ck_assert (life.init_done);
    ck_assert_int_eq (life.inits, 1);
    ck_assert_str_eq (tr_actor_name (actor), "life");
    ck_assert_ptr_eq (tr_actor_node (actor), s_node);
    ck_assert_ptr_null (tr_self ());             //  not an actor here
    tr_msg_t *reply;
    ck_assert_int_eq (tr_ask (s_node, "life", NULL, 0, 5000, &reply, NULL), TR_OK);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (life.handles, 1);
    ck_assert_ptr_eq (life.state_seen, &life.handles);
    ck_assert_ptr_eq (life.self_seen, actor);
    ck_assert_int_eq (tr_actor_stop (s_node, "life", 5000), TR_OK);
    ck_assert_int_eq (life.terminates, 1);
    ck_assert_int_eq (life.terminate_reason, TR_OK);
    //  Gone: its name is free again.
    ck_assert_int_eq (tr_actor_stop (s_node, "life", 5000), TR_ENOACTOR);
    ck_assert_int_eq (tr_spawn (s_node, "life", &s_life, &life, NULL, NULL), TR_OK);
}
END_TEST

START_TEST (test_init_failure)
{
    s_life_t life = { .init_result = -1 };
    ck_assert_int_eq (tr_spawn (s_node, "life", &s_life, &life, NULL, NULL), TR_EINIT);
    ck_assert_int_eq (life.inits, 1);
    ck_assert_int_eq (life.terminates, 0);      //  no terminate without init
    ck_assert_int_eq (tr_test_tell (s_node, "life", 1, NULL), TR_ENOACTOR);
    life.init_result = 0;
    ck_assert_int_eq (tr_spawn (s_node, "life", &s_life, &life, NULL, NULL), TR_OK);
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    ck_assert_uint_eq (st.actors, 1);
    ck_assert_uint_eq (st.spawned, 1);
}
END_TEST

START_TEST (test_duplicate_name)
{
    tr_probe_spawn (s_node, "twin", s_probe, NULL);
    tr_probe_t *other = tr_probe_new ();
    ck_assert_int_eq (tr_spawn (s_node, "twin", &tr_probe_behaviour, other, NULL, NULL),
                      TR_EEXIST);
    //  The first one is untouched.
    ck_assert_int_eq (tr_test_ask (s_node, "twin", 1, 5000, NULL), TR_OK);
    ck_assert_uint_eq (tr_probe_count (s_probe), 1);
    ck_assert_uint_eq (tr_probe_count (other), 0);
    tr_probe_destroy (&other);
}
END_TEST

START_TEST (test_bad_spawns)
{
    tr_behaviour_t none = { 0 };
    char long_name [300];
    memset (long_name, 'a', sizeof long_name);
    long_name [256] = 0;
    const char *bad_names [] = {
        "", "two words", "$reserved", "tab\there", "nul\x01", "\xc0\xaf",
        "\xed\xa0\x80", "\xff", long_name
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names [0]; i++)
        ck_assert_int_eq (tr_spawn (s_node, bad_names [i], &tr_probe_behaviour, s_probe,
                                    NULL, NULL), TR_EINVAL);
    long_name [255] = 0;                        //  255 bytes is fine
    ck_assert_int_eq (tr_spawn (s_node, long_name, &tr_probe_behaviour, s_probe, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (s_node, "ünïcode-名前", &tr_probe_behaviour, s_probe, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (NULL, "x", &tr_probe_behaviour, s_probe, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_spawn (s_node, NULL, &tr_probe_behaviour, s_probe, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_spawn (s_node, "x", NULL, s_probe, NULL, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_spawn (s_node, "x", &none, s_probe, NULL, NULL), TR_EINVAL);
    tr_spawn_opts_t bad_policy = { .on_full = 7 }, tiny_stack = { .stack_size = 1024 };
    ck_assert_int_eq (tr_spawn (s_node, "x", &tr_probe_behaviour, s_probe, &bad_policy, NULL), TR_EINVAL);
    ck_assert_int_eq (tr_spawn (s_node, "x", &tr_probe_behaviour, s_probe, &tiny_stack, NULL), TR_EINVAL);
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    ck_assert_uint_eq (st.actors, 2);
}
END_TEST

//  --------------------------------------------------------------------------
//  Stop

static int
s_stop_self_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    int rc = tr_actor_stop (tr_actor_node (self), tr_actor_name (self), 1000);
    tr_test_body_t b = tr_test_pack_uint ((uint64_t) -rc);
    return tr_reply (msg, b.data, b.size);
}

START_TEST (test_stop_errors)
{
    ck_assert_int_eq (tr_actor_stop (s_node, "nobody", 100), TR_ENOACTOR);
    ck_assert_int_eq (tr_actor_stop (NULL, "nobody", 100), TR_EINVAL);
    tr_behaviour_t b = { .handle = s_stop_self_handle };
    ck_assert_int_eq (tr_spawn (s_node, "selfish", &b, NULL, NULL, NULL), TR_OK);
    uint64_t answer;
    ck_assert_int_eq (tr_test_ask (s_node, "selfish", 0, 5000, &answer), TR_OK);
    ck_assert_uint_eq (answer, (uint64_t) -TR_EDEADLK);
}
END_TEST

typedef struct {
    int rc;
} s_result_t;

static void *
s_ask_gated (void *arg)
{
    s_result_t *r = (s_result_t *) arg;
    r->rc = tr_test_ask (s_node, "probe", 1, 10000, NULL);
    return NULL;
}

static void *
s_open_soon (void *arg)
{
    usleep (100 * 1000);
    tr_probe_open ((tr_probe_t *) arg);
    return NULL;
}

START_TEST (test_stop_with_queued_messages)
{
    tr_probe_spawn (s_node, "probe", s_probe, NULL);
    tr_probe_close_gate (s_node, "probe");
    for (uint64_t i = 0; i < 10; i++)
        ck_assert_int_eq (tr_test_tell (s_node, "probe", i, NULL), TR_OK);
    //  An ask from another thread waits behind them.
    s_result_t asked = { 1 };
    pthread_t asker, opener;
    pthread_create (&asker, NULL, s_ask_gated, &asked);
    tr_actor_stats_t st;
    do {
        usleep (1000);
        tr_actor_stats (s_node, "probe", &st);
    } while (st.depth < 11);
    //  The stop signal overtakes the queue: once the gate opens, the actor
    //  stops; what was queued is dead, and the asker hears why at once.
    pthread_create (&opener, NULL, s_open_soon, s_probe);
    ck_assert_int_eq (tr_actor_stop (s_node, "probe", 5000), TR_OK);
    pthread_join (opener, NULL);
    pthread_join (asker, NULL);
    ck_assert_int_eq (asked.rc, TR_ESTOPPED);
    ck_assert_uint_eq (tr_probe_count (s_probe), 1);    //  only the gate
    ck_assert_int_eq (s_probe->terminated, 1);
    tr_node_stats_t ns;
    tr_node_stats (s_node, &ns);
    ck_assert_uint_eq (ns.dead_letters, 11);
}
END_TEST

START_TEST (test_stop_timeout_abandons)
{
    tr_probe_spawn (s_node, "slow", s_probe, NULL);
    ck_assert_int_eq (tr_test_tell (s_node, "slow", TR_PROBE_SLEEP_BASE + 400, NULL), TR_OK);
    usleep (50 * 1000);
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (tr_actor_stop (s_node, "slow", 50), TR_ETIMEDOUT);
    ck_assert_int_lt (tr_test_now_ms () - start, 350);
    //  The name is free at once; the stuck thread is collected at destroy.
    tr_probe_t *other = tr_probe_new ();
    ck_assert_int_eq (tr_spawn (s_node, "slow", &tr_probe_behaviour, other, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_test_ask (s_node, "slow", 1, 5000, NULL), TR_OK);
    tr_node_destroy (&s_node);
    ck_assert_int_eq (s_probe->terminated, 1);
    ck_assert_int_eq (other->terminated, 1);
    tr_probe_destroy (&other);
}
END_TEST

START_TEST (test_destroy_stops_everyone)
{
    tr_probe_t *probes [5];
    for (int i = 0; i < 5; i++) {
        char name [16];
        snprintf (name, sizeof name, "p%d", i);
        probes [i] = tr_probe_new ();
        tr_probe_spawn (s_node, name, probes [i], NULL);
        ck_assert_int_eq (tr_test_tell (s_node, name, (uint64_t) i, NULL), TR_OK);
    }
    tr_node_destroy (&s_node);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq (probes [i]->terminated, 1);
        tr_probe_destroy (&probes [i]);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  Limits and scale

START_TEST (test_max_actors)
{
    tr_node_destroy (&s_node);
    tr_node_opts_t opts = { .max_actors = 3 };
    ck_assert_int_eq (tr_node_new (&opts, &s_node), TR_OK);
    for (int i = 0; i < 3; i++) {
        char name [16];
        snprintf (name, sizeof name, "a%d", i);
        tr_probe_spawn (s_node, name, s_probe, NULL);
    }
    ck_assert_int_eq (tr_spawn (s_node, "a3", &tr_probe_behaviour, s_probe, NULL, NULL), TR_ELIMIT);
    ck_assert_int_eq (tr_actor_stop (s_node, "a0", 5000), TR_OK);
    tr_probe_spawn (s_node, "a3", s_probe, NULL);
}
END_TEST

static int
s_count_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

START_TEST (test_ten_thousand_actors)
{
    //  ThreadSanitizer tracks a limited number of live threads; it runs a
    //  smaller crowd (TROUPE_TEST_ACTORS) through the same steps.
    const char *env = getenv ("TROUPE_TEST_ACTORS");
    int n = env? atoi (env): 10000;
    tr_behaviour_t b = { .handle = s_count_handle };
    tr_spawn_opts_t small = { .stack_size = 64 * 1024 };
    for (int i = 0; i < n; i++) {
        char name [16];
        snprintf (name, sizeof name, "n%d", i);
        int rc = tr_spawn (s_node, name, &b, NULL, &small, NULL);
        ck_assert_msg (rc == TR_OK, "spawn %d: %s", i, tr_errname (rc));
    }
    tr_node_stats_t st;
    tr_node_stats (s_node, &st);
    ck_assert_uint_eq (st.actors, (uint64_t) n);
    //  Every one of them answers.
    for (int i = 0; i < n; i += n / 100 > 0? n / 100: 1) {
        char name [16];
        snprintf (name, sizeof name, "n%d", i);
        uint64_t answer;
        ck_assert_int_eq (tr_test_ask (s_node, name, (uint64_t) i, 10000, &answer), TR_OK);
        ck_assert_uint_eq (answer, (uint64_t) i);
    }
    //  And a message to each, queued as the node goes down.
    for (int i = 0; i < n; i++) {
        char name [16];
        snprintf (name, sizeof name, "n%d", i);
        ck_assert_int_eq (tr_test_tell (s_node, name, 1, NULL), TR_OK);
    }
    tr_node_destroy (&s_node);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_actor");
    TCase *tc = tcase_create ("actor");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_lifecycle_callbacks);
    tcase_add_test (tc, test_init_failure);
    tcase_add_test (tc, test_duplicate_name);
    tcase_add_test (tc, test_bad_spawns);
    tcase_add_test (tc, test_stop_errors);
    tcase_add_test (tc, test_stop_with_queued_messages);
    tcase_add_test (tc, test_stop_timeout_abandons);
    tcase_add_test (tc, test_destroy_stops_everyone);
    tcase_add_test (tc, test_max_actors);
    suite_add_tcase (s, tc);
    TCase *scale = tcase_create ("scale");
    tcase_add_checked_fixture (scale, s_setup, s_teardown);
    tcase_set_timeout (scale, 240 * tr_test_slowdown ());
    tcase_add_test (scale, test_ten_thousand_actors);
    suite_add_tcase (s, scale);
    return s;
}

TR_TEST_MAIN (s_suite)
