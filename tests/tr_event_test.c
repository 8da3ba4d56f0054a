/*  tr_event_test.c - the node's event bus: subscriptions by prefix, what
    an event looks like when it arrives, bad topics and bodies, full
    subscribers, stopped subscribers, system events from a supervisor, and
    many publishers at once (tr_event.h).  */

#include "tr_test.h"

#include <pthread.h>
#include <stdatomic.h>

static tr_node_t *s_node;

//  Reads the "name" field of a {name, ...} map body; false if absent.
static bool
s_body_name (const uint8_t *body, size_t size, char *name, size_t name_size)
{
    tr__mp_t mp;
    uint32_t pairs;
    tr__mp_init (&mp, body, size);
    if (tr__mp_map (&mp, &pairs))
        return false;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *key, *value;
        uint32_t key_len, value_len;
        if (tr__mp_str (&mp, &key, &key_len))
            return false;
        if (key_len == 4 && memcmp (key, "name", 4) == 0) {
            if (tr__mp_str (&mp, &value, &value_len))
                return false;
            snprintf (name, name_size, "%.*s", (int) value_len, value);
            return true;
        }
        if (tr__mp_skip (&mp, 8))
            return false;
    }
    return false;
}

//  --------------------------------------------------------------------------
//  The recorder: an actor that decodes each event ([topic, body]) and
//  keeps what it saw. Bodies that are uints are kept in order, so tests
//  can check order; anything that is not an event is counted apart.

#define S_KEEP 16384
#define S_LOG  64

typedef struct {
    pthread_mutex_t lock;
    size_t count;                       //  events handled
    size_t malformed;                   //  messages that were not events
    uint64_t values [S_KEEP];           //  each body as a uint, or UINT64_MAX
    char last_topic [TR_NAME_MAX + 1];
    char last_from [TR_NAME_MAX + 1];
    uint8_t last_body [64];             //  the body's bytes, as they came
    size_t last_body_size;
    uint64_t last_trace;
    //  The first S_LOG events' topics, and the "name" field of their
    //  bodies where they have one (system events).
    char log_topic [S_LOG][64];
    char log_name [S_LOG][64];
} s_rec_t;

static s_rec_t *
s_rec_new (void)
{
    s_rec_t *r = (s_rec_t *) calloc (1, sizeof *r);
    pthread_mutex_init (&r->lock, NULL);
    return r;
}

static void
s_rec_destroy (s_rec_t **r_p)
{
    s_rec_t *r = *r_p;
    *r_p = NULL;
    if (r) {
        pthread_mutex_destroy (&r->lock);
        free (r);
    }
}

static int
s_rec_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_rec_t *r = (s_rec_t *) state;
    tr__mp_t mp;
    uint32_t n;
    const char *topic;
    uint32_t topic_len;
    tr__mp_init (&mp, tr_msg_body (msg), tr_msg_size (msg));
    bool shaped = tr__mp_array (&mp, &n) == 0 && n == 2
               && tr__mp_str (&mp, &topic, &topic_len) == 0;
    //  What is left must be exactly one value: the event's body.
    const uint8_t *body = mp.p;
    size_t body_size = shaped? tr__mp_remaining (&mp): 0;
    shaped = shaped && tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) == 0
          && tr__mp_remaining (&mp) == 0;
    pthread_mutex_lock (&r->lock);
    if (!shaped)
        r->malformed++;
    else {
        if (r->count < S_KEEP)
            r->values [r->count] = tr_test_unpack_uint (body, body_size);
        if (r->count < S_LOG) {
            snprintf (r->log_topic [r->count], 64, "%.*s", (int) topic_len, topic);
            s_body_name (body, body_size, r->log_name [r->count], 64);
        }
        r->count++;
        snprintf (r->last_topic, sizeof r->last_topic, "%.*s", (int) topic_len, topic);
        snprintf (r->last_from, sizeof r->last_from, "%s", tr_msg_from (msg));
        r->last_body_size = body_size;
        r->last_trace = tr_msg_trace (msg);
        memcpy (r->last_body, body, body_size < sizeof r->last_body? body_size: sizeof r->last_body);
    }
    pthread_mutex_unlock (&r->lock);
    return 0;
}

static const tr_behaviour_t s_recorder = { .handle = s_rec_handle };

static size_t
s_rec_count (s_rec_t *r)
{
    pthread_mutex_lock (&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock (&r->lock);
    return n;
}

typedef struct {
    s_rec_t *rec;
    size_t count;
} s_rec_wait_t;

static bool
s_rec_reached (void *arg)
{
    s_rec_wait_t *w = (s_rec_wait_t *) arg;
    return s_rec_count (w->rec) >= w->count;
}

//  Waits up to timeout_ms (scaled) for the recorder to hold count events.
static bool
s_rec_wait (s_rec_t *r, size_t count, int timeout_ms)
{
    s_rec_wait_t w = { r, count };
    return tr_test_wait_until (s_rec_reached, &w, timeout_ms * tr_test_slowdown ());
}

//  Roughly: waits a little so that anything in flight arrives, for tests
//  that check nothing more came.
static void
s_settle (void)
{
    usleep (50000 * (useconds_t) tr_test_slowdown ());
}

//  Spawns a recorder with a mailbox large enough never to refuse.
static void
s_rec_spawn (const char *name, s_rec_t *r)
{
    tr_spawn_opts_t opts = { .capacity = 1000000 };
    int rc = tr_spawn (s_node, name, &s_recorder, r, &opts, NULL);
    ck_assert_msg (rc == TR_OK, "spawn %s: %s", name, tr_errname (rc));
}

//  Publishes a uint body; asserts TR_OK and returns the delivery count.
static size_t
s_publish_uint (const char *topic, uint64_t value)
{
    tr_test_body_t b = tr_test_pack_uint (value);
    size_t delivered = 999;
    int rc = tr_event_publish (s_node, topic, b.data, b.size, &delivered);
    ck_assert_msg (rc == TR_OK, "publish %s: %s", topic, tr_errname (rc));
    return delivered;
}

static void
s_setup (void)
{
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
}

static void
s_teardown (void)
{
    tr_node_destroy (&s_node);
}

//  --------------------------------------------------------------------------
//  Subscriptions and what arrives

START_TEST (test_prefixes)
{
    s_rec_t *all = s_rec_new (), *app = s_rec_new (), *exact = s_rec_new ();
    s_rec_spawn ("all", all);
    s_rec_spawn ("app", app);
    s_rec_spawn ("exact", exact);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "all"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "app"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.x", "exact"), TR_OK);

    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 3);
    ck_assert_uint_eq (s_publish_uint ("app.xyz", 2), 3);      //  a prefix, not a word
    ck_assert_uint_eq (s_publish_uint ("app.y", 3), 2);
    ck_assert_uint_eq (s_publish_uint ("apx", 4), 1);
    ck_assert_uint_eq (s_publish_uint ("app", 5), 1);           //  shorter than "app."
    ck_assert_uint_eq (s_publish_uint ("other", 6), 1);

    ck_assert (s_rec_wait (all, 6, 5000));
    ck_assert (s_rec_wait (app, 3, 5000));
    ck_assert (s_rec_wait (exact, 2, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (all), 6);
    ck_assert_uint_eq (s_rec_count (app), 3);
    ck_assert_uint_eq (s_rec_count (exact), 2);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq (all->values [i], (uint64_t) i + 1);
    ck_assert_uint_eq (app->values [0], 1);
    ck_assert_uint_eq (app->values [1], 2);
    ck_assert_uint_eq (app->values [2], 3);
    ck_assert_uint_eq (exact->values [0], 1);
    ck_assert_uint_eq (exact->values [1], 2);
    ck_assert_uint_eq (all->malformed + app->malformed + exact->malformed, 0);

    tr_node_destroy (&s_node);
    s_rec_destroy (&all);
    s_rec_destroy (&app);
    s_rec_destroy (&exact);
}
END_TEST

START_TEST (test_event_shape)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);

    //  A map body arrives byte for byte as the second element.
    uint8_t map [] = { 0x81, 0xa1, 'k', 0x2a };                 //  {"k": 42}
    size_t delivered = 0;
    ck_assert_int_eq (tr_event_publish (s_node, "shape.map", map, sizeof map, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 1);
    ck_assert (s_rec_wait (r, 1, 5000));
    pthread_mutex_lock (&r->lock);
    ck_assert_str_eq (r->last_topic, "shape.map");
    ck_assert_str_eq (r->last_from, "");
    ck_assert_uint_eq (r->last_body_size, sizeof map);
    ck_assert_mem_eq (r->last_body, map, sizeof map);
    pthread_mutex_unlock (&r->lock);

    //  An empty body is allowed, and arrives as nil.
    ck_assert_int_eq (tr_event_publish (s_node, "shape.empty", NULL, 0, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 1);
    ck_assert (s_rec_wait (r, 2, 5000));
    pthread_mutex_lock (&r->lock);
    ck_assert_str_eq (r->last_topic, "shape.empty");
    ck_assert_uint_eq (r->last_body_size, 1);
    ck_assert_uint_eq (r->last_body [0], 0xc0);
    pthread_mutex_unlock (&r->lock);

    //  A topic of the longest length (the str8 encoding) arrives whole.
    char topic [TR_NAME_MAX + 1];
    memset (topic, 't', TR_NAME_MAX);
    topic [TR_NAME_MAX] = 0;
    ck_assert_uint_eq (s_publish_uint (topic, 7), 1);
    ck_assert (s_rec_wait (r, 3, 5000));
    pthread_mutex_lock (&r->lock);
    ck_assert_str_eq (r->last_topic, topic);
    ck_assert_uint_eq (r->values [2], 7);
    ck_assert_uint_eq (r->malformed, 0);
    pthread_mutex_unlock (&r->lock);

    //  delivered_p may be NULL.
    tr_test_body_t b = tr_test_pack_uint (8);
    ck_assert_int_eq (tr_event_publish (s_node, "shape.null", b.data, b.size, NULL), TR_OK);
    ck_assert (s_rec_wait (r, 4, 5000));

    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

//  An actor that publishes an event for each message it handles, so
//  that we see what an event published by an actor looks like.
static int
s_publisher_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) state;
    return tr_event_publish (tr_actor_node (self), "from.actor",
                             tr_msg_body (msg), tr_msg_size (msg), NULL);
}

static const tr_behaviour_t s_publisher = { .handle = s_publisher_handle };

START_TEST (test_published_by_actor)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_spawn (s_node, "pub", &s_publisher, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "from.", "rec"), TR_OK);
    tr_send_opts_t traced = { .trace_id = 777 };
    ck_assert_int_eq (tr_test_tell (s_node, "pub", 11, &traced), TR_OK);
    ck_assert (s_rec_wait (r, 1, 5000));
    pthread_mutex_lock (&r->lock);
    ck_assert_str_eq (r->last_topic, "from.actor");
    ck_assert_uint_eq (r->values [0], 11);
    //  An event is a tell from "", whoever published it; it carries the
    //  trace of the message its publisher was handling.
    ck_assert_str_eq (r->last_from, "");
    ck_assert_uint_eq (r->last_trace, 777);
    pthread_mutex_unlock (&r->lock);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

START_TEST (test_overlapping_prefixes)
{
    //  One actor under two prefixes that both match gets the event once,
    //  and counts once in *delivered_p.
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.x", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 1);
    ck_assert_uint_eq (s_publish_uint ("app.y", 2), 1);
    ck_assert_uint_eq (s_publish_uint ("zzz", 3), 1);
    ck_assert (s_rec_wait (r, 3, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 3);
    ck_assert_uint_eq (r->values [0], 1);
    ck_assert_uint_eq (r->values [1], 2);
    ck_assert_uint_eq (r->values [2], 3);

    //  Dropping one of them leaves the others.
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 4), 1);
    ck_assert_uint_eq (s_publish_uint ("zzz", 5), 0);

    //  Many subscribers (more than fit in the snapshot on the stack), each
    //  under two matching prefixes, still get one copy each.
    enum { MANY = 80 };
    s_rec_t *many [MANY];
    for (int i = 0; i < MANY; i++) {
        char name [16];
        snprintf (name, sizeof name, "many%d", i);
        many [i] = s_rec_new ();
        s_rec_spawn (name, many [i]);
        ck_assert_int_eq (tr_event_subscribe (s_node, "wide.", name), TR_OK);
        ck_assert_int_eq (tr_event_subscribe (s_node, "wide", name), TR_OK);
    }
    ck_assert_uint_eq (s_publish_uint ("wide.one", 9), MANY);
    for (int i = 0; i < MANY; i++)
        ck_assert (s_rec_wait (many [i], 1, 5000));
    s_settle ();
    for (int i = 0; i < MANY; i++)
        ck_assert_uint_eq (s_rec_count (many [i]), 1);

    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
    for (int i = 0; i < MANY; i++)
        s_rec_destroy (&many [i]);
}
END_TEST

START_TEST (test_subscribe_twice)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 1);
    ck_assert (s_rec_wait (r, 1, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 1);
    //  One subscription, so one unsubscribe ends it.
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_ENOTFOUND);
    ck_assert_uint_eq (s_publish_uint ("app.x", 2), 0);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

START_TEST (test_unsubscribe)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app", "rec"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "nobody"), TR_ENOTFOUND);
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 1);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_ENOTFOUND);
    ck_assert_uint_eq (s_publish_uint ("app.x", 2), 0);
    ck_assert (s_rec_wait (r, 1, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 1);
    ck_assert_uint_eq (r->values [0], 1);
    ck_assert_int_eq (tr_event_unsubscribe (NULL, "app.", "rec"), TR_EINVAL);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, NULL, "rec"), TR_EINVAL);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", NULL), TR_EINVAL);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

START_TEST (test_subscribe_errors)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "nobody"), TR_ENOACTOR);
    ck_assert_int_eq (tr_event_subscribe (NULL, "app.", "rec"), TR_EINVAL);
    ck_assert_int_eq (tr_event_subscribe (s_node, NULL, "rec"), TR_EINVAL);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", NULL), TR_EINVAL);
    ck_assert_int_eq (tr_event_subscribe (s_node, "a b", "rec"), TR_EINVAL);
    ck_assert_int_eq (tr_event_subscribe (s_node, "a\tb", "rec"), TR_EINVAL);
    char longer [TR_NAME_MAX + 2];
    memset (longer, 'p', TR_NAME_MAX + 1);
    longer [TR_NAME_MAX + 1] = 0;
    ck_assert_int_eq (tr_event_subscribe (s_node, longer, "rec"), TR_EINVAL);
    //  Subscribing to the runtime's own events is allowed.
    ck_assert_int_eq (tr_event_subscribe (s_node, "sys.", "rec"), TR_OK);
    //  Nothing was published on its behalf by the failed calls.
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 0);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

//  --------------------------------------------------------------------------
//  Bad topics and bodies

START_TEST (test_bad_topics)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);
    tr_test_body_t b = tr_test_pack_uint (1);
    size_t delivered = 99;
    char longest [TR_NAME_MAX + 2];
    memset (longest, 't', TR_NAME_MAX + 1);
    longest [TR_NAME_MAX + 1] = 0;                              //  256 bytes
    const char *bad [] = {
        "", longest, "has space", "tab\there", "nl\n", "del\x7f", "bell\x07",
        "sys.", "sys.actor.started", "bad\xff" "utf8", NULL
    };
    for (int i = 0; bad [i]; i++) {
        delivered = 99;
        int rc = tr_event_publish (s_node, bad [i], b.data, b.size, &delivered);
        ck_assert_msg (rc == TR_EINVAL, "topic %d: %s", i, tr_errname (rc));
        ck_assert_uint_eq (delivered, 0);
    }
    ck_assert_int_eq (tr_event_publish (s_node, NULL, b.data, b.size, &delivered), TR_EINVAL);
    ck_assert_int_eq (tr_event_publish (NULL, "app.x", b.data, b.size, &delivered), TR_EINVAL);
    //  Only "sys." itself is reserved.
    ck_assert_uint_eq (s_publish_uint ("sys", 1), 1);
    ck_assert_uint_eq (s_publish_uint ("system.x", 2), 1);
    ck_assert_uint_eq (s_publish_uint ("SYS.x", 3), 1);
    ck_assert (s_rec_wait (r, 3, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 3);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

START_TEST (test_bad_bodies)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);
    size_t delivered = 99;
    uint8_t reserved [] = { 0xc1 };                             //  never used
    uint8_t cut [] = { 0x92, 0x01 };                            //  [1, ...
    uint8_t two [] = { 0x01, 0x02 };                            //  two values
    uint8_t trailing [] = { 0x81, 0xa1, 'k', 0x01, 0x00 };      //  {"k": 1} 0
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", reserved, 1, &delivered), TR_EMALFORMED);
    ck_assert_uint_eq (delivered, 0);
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", cut, sizeof cut, &delivered), TR_EMALFORMED);
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", two, sizeof two, &delivered), TR_EMALFORMED);
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", trailing, sizeof trailing, &delivered), TR_EMALFORMED);
    ck_assert_uint_eq (delivered, 0);
    //  A size with no bytes behind it.
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", NULL, 1, &delivered), TR_EINVAL);
    //  Not one of these reached the subscriber.
    ck_assert_uint_eq (s_publish_uint ("app.ok", 1), 1);
    ck_assert (s_rec_wait (r, 1, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 1);
    ck_assert_uint_eq (r->malformed, 0);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

//  Packs a bin value of `size` bytes in all, header included.
static uint8_t *
s_bin_of_size (size_t size)
{
    uint8_t *bin = (uint8_t *) calloc (1, size);
    size_t data = size - 5;
    bin [0] = 0xc6;                                             //  bin32
    bin [1] = (uint8_t) (data >> 24);
    bin [2] = (uint8_t) (data >> 16);
    bin [3] = (uint8_t) (data >> 8);
    bin [4] = (uint8_t) data;
    return bin;
}

START_TEST (test_body_limits)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);
    size_t delivered = 99;
    //  Bodies larger than a message body can be are refused at once.
    uint8_t *huge = s_bin_of_size (TR_BODY_MAX + 1);
    ck_assert_int_eq (tr_event_publish (s_node, "big", huge, TR_BODY_MAX + 1, &delivered), TR_ETOOBIG);
    ck_assert_uint_eq (delivered, 0);
    free (huge);
    //  A body of exactly TR_BODY_MAX bytes does not leave room for the
    //  topic in the event: refused too, rather than accepted and then
    //  delivered to nobody.
    uint8_t *max = s_bin_of_size (TR_BODY_MAX);
    ck_assert_int_eq (tr_event_publish (s_node, "big", max, TR_BODY_MAX, &delivered), TR_ETOOBIG);
    ck_assert_uint_eq (delivered, 0);
    free (max);
    //  The largest body that fits: TR_BODY_MAX less [topic] (1 byte of
    //  array, 1 of str header, 3 of "big").
    size_t fits = TR_BODY_MAX - 5;
    uint8_t *big = s_bin_of_size (fits);
    ck_assert_int_eq (tr_event_publish (s_node, "big", big, fits, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 1);
    ck_assert_int_eq (tr_event_publish (s_node, "bigger", big, fits, &delivered), TR_ETOOBIG);
    free (big);
    ck_assert (s_rec_wait (r, 1, 10000));

    //  Nesting: the event adds one level around the body, so a body may
    //  nest one level less than a message body.
    uint8_t deep [TR_BODY_MAX_DEPTH + 1];
    memset (deep, 0x91, sizeof deep);                           //  [[[...
    deep [TR_BODY_MAX_DEPTH] = 0x01;
    ck_assert_int_eq (tr_event_publish (s_node, "deep", deep + 1, TR_BODY_MAX_DEPTH, &delivered), TR_OK);
    ck_assert_uint_eq (delivered, 1);
    int rc = tr_event_publish (s_node, "deep", deep, sizeof deep, &delivered);
    ck_assert_msg (rc == TR_EDEPTH, "%s", tr_errname (rc));
    ck_assert_uint_eq (delivered, 0);
    ck_assert (s_rec_wait (r, 2, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (r), 2);
    ck_assert_uint_eq (r->malformed, 0);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

//  --------------------------------------------------------------------------
//  Delivery

START_TEST (test_order)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "seq.", "rec"), TR_OK);
    for (uint64_t i = 0; i < 1000; i++)
        ck_assert_uint_eq (s_publish_uint ("seq.n", i), 1);
    ck_assert (s_rec_wait (r, 1000, 10000));
    for (uint64_t i = 0; i < 1000; i++)
        ck_assert_uint_eq (r->values [i], i);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

START_TEST (test_no_subscribers)
{
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 0);
    ck_assert_int_eq (tr_event_publish (s_node, "app.x", NULL, 0, NULL), TR_OK);
}
END_TEST

//  A full subscriber misses the event; the publisher does not wait.
static void
s_check_full (int on_full)
{
    tr_probe_t *tight = tr_probe_new ();
    s_rec_t *r = s_rec_new ();
    tr_spawn_opts_t opts = { .capacity = 2, .on_full = on_full };
    tr_probe_spawn (s_node, "tight", tight, &opts);
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "tight"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    tr_probe_close_gate (s_node, "tight");
    //  Two events fill its mailbox; the next three do not fit.
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 2);
    ck_assert_uint_eq (s_publish_uint ("app.x", 2), 2);
    int64_t start = tr_test_now_ms ();
    for (uint64_t i = 3; i <= 5; i++)
        ck_assert_uint_eq (s_publish_uint ("app.x", i), 1);
    //  Well below the node's send timeout, had we waited for room.
    ck_assert_int_lt (tr_test_now_ms () - start, 500 * tr_test_slowdown ());
    tr_actor_stats_t st;
    ck_assert_int_eq (tr_actor_stats (s_node, "tight", &st), TR_OK);
    ck_assert_uint_eq (st.rejected, 3);
    ck_assert_uint_eq (st.depth, 2);
    ck_assert (s_rec_wait (r, 5, 5000));
    //  Once it has room again, it gets what comes next.
    tr_probe_open (tight);
    ck_assert (tr_probe_wait (tight, 3, 5000));
    ck_assert_uint_eq (s_publish_uint ("app.x", 6), 2);
    ck_assert (tr_probe_wait (tight, 4, 5000));
    ck_assert_int_eq (tr_actor_stats (s_node, "tight", &st), TR_OK);
    ck_assert_uint_eq (st.rejected, 3);
    tr_node_destroy (&s_node);
    tr_probe_destroy (&tight);
    s_rec_destroy (&r);
}

START_TEST (test_full_subscriber)
{
    s_check_full (TR_FULL_FAIL);
}
END_TEST

START_TEST (test_full_waiting_subscriber)
{
    //  Even a subscriber whose senders normally wait for room does not
    //  hold up a publisher.
    s_check_full (TR_FULL_WAIT);
}
END_TEST

START_TEST (test_stopped_subscriber)
{
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 1), 1);
    ck_assert (s_rec_wait (r, 1, 5000));
    ck_assert_int_eq (tr_actor_stop (s_node, "rec", 5000), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 2), 0);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_ENOTFOUND);

    //  A new actor of the same name starts with no subscription.
    s_rec_t *again = s_rec_new ();
    s_rec_spawn ("rec", again);
    ck_assert_uint_eq (s_publish_uint ("app.x", 3), 0);
    ck_assert_int_eq (tr_event_unsubscribe (s_node, "app.", "rec"), TR_ENOTFOUND);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 4), 1);
    ck_assert (s_rec_wait (again, 1, 5000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (again), 1);
    ck_assert_uint_eq (again->values [0], 4);
    ck_assert_uint_eq (s_rec_count (r), 1);

    //  Stopping the new one ends its subscription too.
    ck_assert_int_eq (tr_actor_stop (s_node, "rec", 5000), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 5), 0);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
    s_rec_destroy (&again);
}
END_TEST

//  An actor that ends itself (tr_actor_exit) on its first message.
static int
s_quitter_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) msg; (void) state;
    return tr_actor_exit (self, TR_OK, "done");
}

static const tr_behaviour_t s_quitter = { .handle = s_quitter_handle };

typedef struct {
    const char *name;
} s_gone_t;

static bool
s_is_gone (void *arg)
{
    tr_actor_stats_t st;
    return tr_actor_stats (s_node, ((s_gone_t *) arg)->name, &st) == TR_ENOACTOR;
}

START_TEST (test_exited_subscriber)
{
    ck_assert_int_eq (tr_spawn (s_node, "quitter", &s_quitter, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "bye.", "quitter"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("bye.now", 1), 1);
    s_gone_t gone = { "quitter" };
    ck_assert (tr_test_wait_until (s_is_gone, &gone, 5000 * tr_test_slowdown ()));
    ck_assert_uint_eq (s_publish_uint ("bye.now", 2), 0);
}
END_TEST

START_TEST (test_node_destroy_with_subscriptions)
{
    //  Subscriptions still in place when the node goes are released with
    //  it (checked for leaks by the sanitizer builds).
    s_rec_t *r = s_rec_new ();
    s_rec_spawn ("rec", r);
    ck_assert_int_eq (tr_event_subscribe (s_node, "a.", "rec"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "b.", "rec"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("a.x", 1), 1);
    tr_node_destroy (&s_node);
    s_rec_destroy (&r);
}
END_TEST

//  --------------------------------------------------------------------------
//  System events

#define S_TINY_TREE \
    "name: tiny\n" \
    "strategy: one_for_one\n" \
    "defaults: {backoff: {min: 0ms, max: 0ms, jitter: 0}, breaker: off}\n" \
    "children:\n" \
    "  - {name: kid, actor: echo}\n" \
    "  - {name: tally, actor: counter}\n"

typedef struct {
    s_rec_t *rec;
    const char *topic;
    const char *name;
} s_topic_wait_t;

//  True once the recorder has seen an event of that topic and name.
static bool
s_saw_event (void *arg)
{
    s_topic_wait_t *w = (s_topic_wait_t *) arg;
    bool seen = false;
    pthread_mutex_lock (&w->rec->lock);
    for (size_t i = 0; i < w->rec->count && i < S_LOG && !seen; i++)
        seen = strcmp (w->rec->log_topic [i], w->topic) == 0
            && strcmp (w->rec->log_name [i], w->name) == 0;
    pthread_mutex_unlock (&w->rec->lock);
    return seen;
}

START_TEST (test_system_events)
{
    s_rec_t *sys = s_rec_new (), *app = s_rec_new ();
    s_rec_spawn ("sys", sys);
    s_rec_spawn ("app", app);
    ck_assert_int_eq (tr_event_subscribe (s_node, "sys.actor.", "sys"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "app"), TR_OK);

    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    int rc = tr_tree_parse (S_TINY_TREE, strlen (S_TINY_TREE), "tiny.yaml", &tree, &err);
    char text [600];
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, text, sizeof text));
    tr_sup_t *sup = NULL;
    char *reason = NULL;
    rc = tr_sup_start (s_node, tree->name, &tree->root, &sup, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
    free (reason);

    s_topic_wait_t w = { sys, "sys.actor.started", "kid" };
    ck_assert (tr_test_wait_until (s_saw_event, &w, 5000 * tr_test_slowdown ()));
    pthread_mutex_lock (&sys->lock);
    ck_assert_str_eq (sys->last_from, "");
    ck_assert_uint_eq (sys->malformed, 0);
    pthread_mutex_unlock (&sys->lock);

    //  A subscription outlives restarts (one mailbox across them) and
    //  ends when the supervisor stops the child for good. The counter
    //  counts each event as one tell.
    ck_assert_int_eq (tr_event_subscribe (s_node, "app.", "tally"), TR_OK);
    for (uint64_t i = 0; i < 3; i++)
        ck_assert_uint_eq (s_publish_uint ("app.x", i), 2);
    uint64_t count = 0;
    ck_assert_int_eq (tr_test_ask (s_node, "tally", 0, 5000 * tr_test_slowdown (), &count), TR_OK);
    ck_assert_uint_eq (count, 3);
    ck_assert_int_eq (tr_sup_restart_child (s_node, "tally"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 3), 2);
    ck_assert_uint_eq (s_publish_uint ("app.x", 4), 2);
    ck_assert_int_eq (tr_test_ask (s_node, "tally", 0, 5000 * tr_test_slowdown (), &count), TR_OK);
    ck_assert_uint_eq (count, 2);
    ck_assert_int_eq (tr_sup_stop_child (s_node, "tally"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 5), 1);
    w.name = "tally";
    w.topic = "sys.actor.stopped";
    ck_assert (tr_test_wait_until (s_saw_event, &w, 5000 * tr_test_slowdown ()));
    //  Started again, it is a new subscriber: it has none.
    ck_assert_int_eq (tr_sup_start_child (s_node, "tally"), TR_OK);
    ck_assert_uint_eq (s_publish_uint ("app.x", 6), 1);
    ck_assert (s_rec_wait (app, 7, 5000));

    //  Stopping the tree says so too.
    w.name = "kid";
    ck_assert_int_eq (tr_sup_stop (&sup), TR_OK);
    w.topic = "sys.actor.stopped";
    ck_assert (tr_test_wait_until (s_saw_event, &w, 5000 * tr_test_slowdown ()));
    //  The "app." subscriber heard none of the system events.
    s_settle ();
    ck_assert_uint_eq (s_rec_count (app), 7);
    ck_assert_uint_eq (app->malformed, 0);

    tr_node_destroy (&s_node);
    tr_tree_destroy (&tree);
    s_rec_destroy (&sys);
    s_rec_destroy (&app);
}
END_TEST

//  --------------------------------------------------------------------------
//  Many threads at once

#define S_PUBLISHERS    4
#define S_PER_PUBLISHER (S_KEEP / S_PUBLISHERS)     //  at most
#define S_CHURN_ROUNDS  40

static atomic_bool s_churning;
static atomic_int s_churn_rounds;

typedef struct {
    int index;
    uint64_t published;
    size_t delivered;                   //  the sum of the delivery counts
    int errors;                         //  publishes that failed
} s_pub_arg_t;

//  Publishes numbered events, pausing now and then, for as long as the
//  churn goes on (up to S_PER_PUBLISHER).
static void *
s_publish_thread (void *arg_)
{
    s_pub_arg_t *arg = (s_pub_arg_t *) arg_;
    char topic [32];
    snprintf (topic, sizeof topic, "load.t%d", arg->index);
    while (arg->published < S_PER_PUBLISHER && atomic_load (&s_churning)) {
        uint64_t value = ((uint64_t) arg->index << 32) | arg->published;
        tr_test_body_t b = tr_test_pack_uint (value);
        size_t delivered = 0;
        if (tr_event_publish (s_node, topic, b.data, b.size, &delivered) != TR_OK)
            arg->errors++;
        arg->delivered += delivered;
        if (++arg->published % 32 == 0)
            usleep (100);
    }
    return NULL;
}

//  Subscribes and unsubscribes, and spawns and stops subscribers, for
//  S_CHURN_ROUNDS rounds while the publishers run; then ends the run.
static void *
s_churn_thread (void *arg)
{
    s_rec_t *r = (s_rec_t *) arg;
    for (int round = 0; round < S_CHURN_ROUNDS; round++) {
        atomic_store (&s_churn_rounds, round + 1);
        tr_event_subscribe (s_node, "load.", "churn");
        tr_event_subscribe (s_node, "", "churn");
        usleep (200);
        tr_event_unsubscribe (s_node, "load.", "churn");
        usleep (200);
        tr_event_unsubscribe (s_node, "", "churn");
        if (round % 4 == 0
        &&  tr_spawn (s_node, "passing", &s_recorder, r, NULL, NULL) == TR_OK) {
            tr_event_subscribe (s_node, "load.t1", "passing");
            usleep (500);
            tr_actor_stop (s_node, "passing", 5000);
        }
    }
    atomic_store (&s_churning, false);
    return NULL;
}

static bool
s_churn_started (void *arg)
{
    (void) arg;
    return atomic_load (&s_churn_rounds) > 0;
}

START_TEST (test_many_publishers)
{
    s_rec_t *all = s_rec_new (), *churn = s_rec_new (), *passing = s_rec_new ();
    s_rec_spawn ("all", all);
    s_rec_spawn ("churn", churn);
    ck_assert_int_eq (tr_event_subscribe (s_node, "load.", "all"), TR_OK);

    atomic_store (&s_churning, true);
    atomic_store (&s_churn_rounds, 0);
    pthread_t churner;
    ck_assert_int_eq (pthread_create (&churner, NULL, s_churn_thread, passing), 0);
    ck_assert (tr_test_wait_until (s_churn_started, NULL, 5000));
    pthread_t threads [S_PUBLISHERS];
    s_pub_arg_t args [S_PUBLISHERS];
    for (int i = 0; i < S_PUBLISHERS; i++) {
        args [i] = (s_pub_arg_t) { .index = i };
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_publish_thread, &args [i]), 0);
    }
    size_t delivered = 0, total = 0;
    for (int i = 0; i < S_PUBLISHERS; i++) {
        pthread_join (threads [i], NULL);
        delivered += args [i].delivered;
        total += args [i].published;
        ck_assert_int_eq (args [i].errors, 0);
    }
    pthread_join (churner, NULL);

    //  "all" got every event, each publisher's in the order sent.
    ck_assert_uint_ge (delivered, total);
    ck_assert (s_rec_wait (all, total, 30000));
    s_settle ();
    ck_assert_uint_eq (s_rec_count (all), total);
    uint64_t next [S_PUBLISHERS] = { 0 };
    for (size_t i = 0; i < total; i++) {
        uint64_t v = all->values [i];
        int t = (int) (v >> 32);
        ck_assert_int_lt (t, S_PUBLISHERS);
        ck_assert_uint_eq (v & 0xffffffff, next [t]);
        next [t]++;
    }
    for (int i = 0; i < S_PUBLISHERS; i++)
        ck_assert_uint_eq (next [i], args [i].published);
    //  The rest went to the churning subscribers ("passing" may have been
    //  stopped with some of its events still queued).
    ck_assert_uint_ge (delivered - total, s_rec_count (churn) + s_rec_count (passing));
    ck_assert_uint_eq (all->malformed + churn->malformed + passing->malformed, 0);

    tr_node_destroy (&s_node);
    s_rec_destroy (&all);
    s_rec_destroy (&churn);
    s_rec_destroy (&passing);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_event");
    TCase *tc = tcase_create ("event");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120 * tr_test_slowdown ());
    tcase_add_test (tc, test_prefixes);
    tcase_add_test (tc, test_event_shape);
    tcase_add_test (tc, test_published_by_actor);
    tcase_add_test (tc, test_overlapping_prefixes);
    tcase_add_test (tc, test_subscribe_twice);
    tcase_add_test (tc, test_unsubscribe);
    tcase_add_test (tc, test_subscribe_errors);
    tcase_add_test (tc, test_bad_topics);
    tcase_add_test (tc, test_bad_bodies);
    tcase_add_test (tc, test_body_limits);
    tcase_add_test (tc, test_order);
    tcase_add_test (tc, test_no_subscribers);
    tcase_add_test (tc, test_full_subscriber);
    tcase_add_test (tc, test_full_waiting_subscriber);
    tcase_add_test (tc, test_stopped_subscriber);
    tcase_add_test (tc, test_exited_subscriber);
    tcase_add_test (tc, test_node_destroy_with_subscriptions);
    tcase_add_test (tc, test_system_events);
    tcase_add_test (tc, test_many_publishers);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
