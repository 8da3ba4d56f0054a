/*  tr_barrier.c - the barrier: parties wait until all have arrived.

    Each party asks the barrier to "arrive"; its ask is taken over
    (tr_defer) and left unanswered until every party of the generation
    has arrived. Then all are released at once, each answered with the
    same map:
        {generation: G, parties: [NAME...], payloads: [VALUE...]}
    parties in the order of `parties` when they are named, else in the
    order they arrived; payloads beside them (nil for an arrival without
    one). An event `barrier.released` {barrier, generation, parties,
    waited_ms} says so on the bus.

    `parties` is a number (any N distinct parties release a generation)
    or a list of names (exactly those). A party is the asking actor's
    name, or the `party` of the message: the bodies are
        "arrive"                          arrive, no payload
        {arrive: VALUE, party: NAME}      arrive with a payload (party optional)
        "status"                          the state, not an arrival:
                                          {generation, arrived, waiting_for,
                                          missing (named parties only)}
    A party that is not one of the named parties is refused TR_EINVAL, a
    party that arrives twice in one generation TR_EEXIST (its first
    arrival still waits), any other body TR_EINVAL; each refusal is
    logged with what was wrong. An arrival may be a tell: it counts, and
    nothing is answered.

    Timeout: a generation that is not complete `timeout` after its first
    arrival, or shortly (S_MARGIN_MS) before the deadline of an ask that
    has arrived (the party would stop waiting: the barrier is broken for
    all, as Java's CyclicBarrier is), releases everyone with TR_ETIMEDOUT
    (with `on_timeout: report`, an answer {error: "TR_ETIMEDOUT",
    generation, arrived, missing, missing_count}). The log line and the
    event `barrier.timedout` name who did not arrive.

    Generations: with `cyclic: true` (the default) the next arrival after
    a release or a timeout starts the next generation. With `cyclic:
    false` the barrier serves one generation, and later arrivals get its
    outcome at once (the release map, or the timeout).

    The barrier never waits on its thread: arrivals are deferred asks,
    and the timeout is a timer message.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "troupe/tr_body.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>

#define S_PARTIES_MAX   10000
#define S_MARGIN_MS     100         //  released this long before an arrived ask's deadline

//  One arrival of the generation in hand.
typedef struct {
    char *party;
    tr_msg_t *ask;                  //  deferred, or NULL for a tell
    uint8_t *payload;               //  msgpack bytes, or NULL for none (nil)
    size_t payload_size;
} s_arrival_t;

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    char **names;                   //  named parties, or NULL
    size_t named;                   //  how many names (0: a number of parties)
    size_t parties;                 //  how many release a generation
    int64_t timeout_ms;
    bool cyclic;
    bool report;                    //  on_timeout: report
    uint64_t generation;            //  the one arrivals join (from 1)
    s_arrival_t *arrivals;          //  [parties]: by name's index, or in order
    size_t arrived;
    int64_t first_ns;               //  the generation's first arrival
    int64_t due_ns;                 //  when it times out
    uint64_t timer;                 //  its timer, while arrived > 0
    uint64_t tick;                  //  the id in that timer's tick
    //  A one-shot barrier's outcome, once it has one.
    bool spent;
    int spent_error;                //  TR_OK: released
    uint8_t *spent_body;            //  the answer its parties got
    size_t spent_size;
} s_barrier_t;

static const tr_param_spec_t s_barrier_params [] = {
    { "parties", TR_PARAM_ANY, true, "how many parties release a generation, or the "
                                     "list of their names" },
    { "timeout", TR_PARAM_DURATION, false, "how long a generation may wait after its first "
                                           "arrival (default 30s)" },
    { "cyclic", TR_PARAM_BOOL, false, "true (default): a new generation after each release; "
                                      "false: one generation only" },
    { "on_timeout", TR_PARAM_STRING, false, "error (default): the parties get TR_ETIMEDOUT; "
                                            "report: a map saying who did not arrive" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_barrier_free (s_barrier_t *barrier)
{
    if (!barrier)
        return;
    tr__names_free (barrier->names, barrier->named);
    free (barrier->arrivals);
    free (barrier->spent_body);
    free (barrier);
}

static int
s_barrier_configure (s_barrier_t *barrier, tr__cfg_t *cfg)
{
    static const char *const on_timeout [] = { "error", "report", NULL };
    int choice = 0;
    barrier->timeout_ms = 30000;
    barrier->cyclic = true;
    if (tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &barrier->timeout_ms)
    ||  tr__cfg_bool (cfg, "cyclic", &barrier->cyclic)
    ||  tr__cfg_choice (cfg, "on_timeout", on_timeout, &choice))
        return -1;
    barrier->report = choice == 1;
    const msgpack_object *parties = tr__cfg_get (cfg, NULL, "parties");
    if (!parties)
        return tr__cfg_bad (cfg, "'parties' is required: how many parties, or their names");
    if (parties->type == MSGPACK_OBJECT_ARRAY) {
        if (parties->via.array.size > S_PARTIES_MAX)
            return tr__cfg_bad_at (cfg, "parties", "'parties' names %u parties; at most %d",
                                   parties->via.array.size, S_PARTIES_MAX);
        tr__cfg_enter_sub (cfg, "parties");
        if (tr__cfg_names (cfg, parties, "parties", &barrier->names, &barrier->named))
            return -1;
        tr__cfg_enter (cfg, "%s", "");
        barrier->parties = barrier->named;
    }
    else
    if (parties->type == MSGPACK_OBJECT_POSITIVE_INTEGER
    ||  parties->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        int64_t n = 0;
        if (tr__cfg_int (cfg, "parties", 1, S_PARTIES_MAX, &n))
            return -1;
        barrier->parties = (size_t) n;
    }
    else
        return tr__cfg_bad_at (cfg, "parties", "'parties' must be a number of parties or a "
                               "list of their names, not %s", tr__cfg_kind (parties));
    barrier->arrivals = (s_arrival_t *) calloc (barrier->parties, sizeof *barrier->arrivals);
    if (!barrier->arrivals)
        return tr__cfg_bad (cfg, "out of memory");
    return 0;
}

static int
s_barrier_configure_any (void *barrier, tr__cfg_t *cfg)
{
    return s_barrier_configure ((s_barrier_t *) barrier, cfg);
}

static void
s_barrier_free_any (void *barrier)
{
    s_barrier_free ((s_barrier_t *) barrier);
}

//  The tree loader's check: the same reading as init's, with positions.
static int
s_barrier_check (const tr_params_t *params, tr_param_error_t *error)
{
    return tr__cfg_check ("barrier", params, sizeof (s_barrier_t), s_barrier_configure_any,
                          s_barrier_free_any, error);
}

static int
s_barrier_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_barrier_t *barrier = (s_barrier_t *) calloc (1, sizeof *barrier);
    int rc = tr__cfg_open (&cfg, "barrier", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !barrier)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_barrier_configure (barrier, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_barrier_free (barrier);
        return -1;
    }
    tr__cfg_close (&cfg);
    barrier->self = self;
    barrier->node = tr_actor_node (self);
    barrier->generation = 1;
    tr_actor_info_set (self, "barrier.generation", 1);
    *state_p = barrier;
    return 0;
}

//  --------------------------------------------------------------------------
//  Packing

//  The slots of the generation in answer order: named parties in their
//  order (NULL party: not arrived), else arrivals in order.
static size_t
s_slots (const s_barrier_t *barrier)
{
    return barrier->named? barrier->named: barrier->arrived;
}

static void
s_pack_arrived (const s_barrier_t *barrier, msgpack_packer *pk)
{
    msgpack_pack_array (pk, (uint32_t) barrier->arrived);
    for (size_t i = 0; i < s_slots (barrier); i++)
        if (barrier->arrivals [i].party)
            tr__pack_str (pk, barrier->arrivals [i].party);
}

//  The named parties that have not arrived.
static void
s_pack_missing (const s_barrier_t *barrier, msgpack_packer *pk)
{
    msgpack_pack_array (pk, (uint32_t) (barrier->named - barrier->arrived));
    for (size_t i = 0; i < barrier->named; i++)
        if (!barrier->arrivals [i].party)
            tr__pack_str (pk, barrier->names [i]);
}

//  The release: {generation, parties, payloads}.
static void
s_pack_release (const s_barrier_t *barrier, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "generation");
    msgpack_pack_uint64 (&pk, barrier->generation);
    tr__pack_str (&pk, "parties");
    s_pack_arrived (barrier, &pk);
    tr__pack_str (&pk, "payloads");
    msgpack_pack_array (&pk, (uint32_t) barrier->arrived);
    for (size_t i = 0; i < s_slots (barrier); i++) {
        const s_arrival_t *a = &barrier->arrivals [i];
        if (!a->party)
            continue;
        if (a->payload)
            msgpack_sbuffer_write (buffer, (const char *) a->payload, a->payload_size);
        else
            msgpack_pack_nil (&pk);
    }
}

//  What a timeout says: {error, generation, arrived, missing (named
//  parties only), missing_count}, with `barrier` first when with_name.
static void
s_pack_timeout (const s_barrier_t *barrier, msgpack_sbuffer *buffer, bool with_name)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, (barrier->named? 5: 4) + (with_name? 1: 0));
    if (with_name) {
        tr__pack_str (&pk, "barrier");
        tr__pack_str (&pk, tr_actor_name (barrier->self));
    }
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, tr_errname (TR_ETIMEDOUT));
    tr__pack_str (&pk, "generation");
    msgpack_pack_uint64 (&pk, barrier->generation);
    tr__pack_str (&pk, "arrived");
    s_pack_arrived (barrier, &pk);
    if (barrier->named) {
        tr__pack_str (&pk, "missing");
        s_pack_missing (barrier, &pk);
    }
    tr__pack_str (&pk, "missing_count");
    msgpack_pack_uint64 (&pk, barrier->parties - barrier->arrived);
}

//  --------------------------------------------------------------------------
//  Generations

//  Answers the deferred asks of the generation (body, or error when
//  body is NULL), forgets its arrivals, and starts the next generation.
static void
s_generation_end (s_barrier_t *barrier, int error, const void *body, size_t size)
{
    //  The counters first, so that a party that has its answer sees them.
    tr_actor_info_set (barrier->self, "barrier.generation", (int64_t) barrier->generation + 1);
    tr_actor_info_set (barrier->self, "barrier.waiting", 0);
    for (size_t i = 0; i < barrier->parties; i++) {
        s_arrival_t *a = &barrier->arrivals [i];
        if (a->ask) {
            int rc = body? tr_reply (a->ask, body, size): tr_reply_error (a->ask, error);
            if (rc != TR_OK)
                tr_reply_error (a->ask, rc);
            tr_msg_destroy (&a->ask);
        }
        free (a->party);
        free (a->payload);
        memset (a, 0, sizeof *a);
    }
    if (!barrier->cyclic) {
        barrier->spent = true;
        barrier->spent_error = error;
        barrier->spent_body = size? (uint8_t *) malloc (size): NULL;
        if (barrier->spent_body) {
            memcpy (barrier->spent_body, body, size);
            barrier->spent_size = size;
        }
    }
    barrier->arrived = 0;
    barrier->generation++;
}

//  Every party is here: release them all.
static void
s_release (s_barrier_t *barrier)
{
    tr_timer_cancel (barrier->node, barrier->timer);
    int64_t waited_ms = (tr__now_ns () - barrier->first_ns) / 1000000;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "barrier");
    tr__pack_str (&pk, tr_actor_name (barrier->self));
    tr__pack_str (&pk, "generation");
    msgpack_pack_uint64 (&pk, barrier->generation);
    tr__pack_str (&pk, "parties");
    s_pack_arrived (barrier, &pk);
    tr__pack_str (&pk, "waited_ms");
    msgpack_pack_int64 (&pk, waited_ms);
    tr_event_publish (barrier->node, "barrier.released", buffer.data, buffer.size, NULL);
    tr_log (TR_LOG_INFO, "barrier '%s': generation %llu released (%zu parties, the first "
            "waited %lld ms)", tr_actor_name (barrier->self),
            (unsigned long long) barrier->generation, barrier->arrived, (long long) waited_ms);
    msgpack_sbuffer_clear (&buffer);
    s_pack_release (barrier, &buffer);
    tr_actor_info_add (barrier->self, "barrier.released", 1);
    s_generation_end (barrier, TR_OK, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}

//  The generation ran out of time: everyone waiting gets TR_ETIMEDOUT
//  (or the report), and the log and the event name who did not come.
static void
s_timed_out (s_barrier_t *barrier)
{
    int64_t waited_ms = (tr__now_ns () - barrier->first_ns) / 1000000;
    char missing [512] = "";
    size_t used = 0;
    for (size_t i = 0; i < barrier->named && used < sizeof missing - 1; i++)
        if (!barrier->arrivals [i].party) {
            int n = snprintf (missing + used, sizeof missing - used, "%s'%s'",
                              used? ", ": "", barrier->names [i]);
            used = n < 0? used: used + (size_t) n;
        }
    tr_log (TR_LOG_WARN, "barrier '%s': generation %llu timed out after %lld ms with %zu of "
            "%zu parties; %s%s did not arrive", tr_actor_name (barrier->self),
            (unsigned long long) barrier->generation, (long long) waited_ms, barrier->arrived,
            barrier->parties, barrier->named? "": "the others", missing);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_pack_timeout (barrier, &buffer, true);
    tr_event_publish (barrier->node, "barrier.timedout", buffer.data, buffer.size, NULL);
    tr_actor_info_add (barrier->self, "barrier.timedout", 1);
    msgpack_sbuffer_clear (&buffer);
    if (barrier->report) {
        s_pack_timeout (barrier, &buffer, false);
        s_generation_end (barrier, TR_ETIMEDOUT, buffer.data, buffer.size);
    }
    else
        s_generation_end (barrier, TR_ETIMEDOUT, NULL, 0);
    msgpack_sbuffer_destroy (&buffer);
}

//  (Re)starts the generation's timer for due_ns, which has moved earlier.
static void
s_timer_arm (s_barrier_t *barrier, int64_t due_ns)
{
    if (barrier->arrived > 1)
        tr_timer_cancel (barrier->node, barrier->timer);
    barrier->due_ns = due_ns;
    int64_t ms = (due_ns - tr__now_ns ()) / 1000000;
    uint8_t tick [TR__TICK_SIZE];
    tr__tick_pack (tick, ++barrier->tick);
    int rc = tr_timer_after (barrier->node, tr_actor_name (barrier->self),
                             ms < 0? 0: ms > INT32_MAX? INT32_MAX: (int) ms, tick, sizeof tick,
                             &barrier->timer);
    if (rc != TR_OK)
        //  Without a timer the generation could wait forever: end it now.
        s_timed_out (barrier);
}

//  --------------------------------------------------------------------------
//  Messages

//  Refuses a message: logged, counted, and an ask answered `error`.
static int
s_refuse (s_barrier_t *barrier, const tr_msg_t *msg, int error, const char *why,
          const char *party)
{
    tr_log (TR_LOG_WARN, "barrier '%s': refused %s from '%s'%s%s%s: %s",
            tr_actor_name (barrier->self), tr_msg_kind (msg) == TR_KIND_ASK? "an ask": "a tell",
            tr_msg_from (msg), party? " (party '": "", party? party: "", party? "')": "", why);
    tr_actor_info_add (barrier->self, "barrier.refused", 1);
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply_error (msg, error) == TR_OK? 0: -1;
    return 0;
}

//  The answer to "status".
static int
s_status (s_barrier_t *barrier, const tr_msg_t *msg)
{
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, barrier->named? 4: 3);
    tr__pack_str (&pk, "generation");
    msgpack_pack_uint64 (&pk, barrier->generation);
    tr__pack_str (&pk, "arrived");
    s_pack_arrived (barrier, &pk);
    tr__pack_str (&pk, "waiting_for");
    msgpack_pack_uint64 (&pk, barrier->parties - barrier->arrived);
    if (barrier->named) {
        tr__pack_str (&pk, "missing");
        s_pack_missing (barrier, &pk);
    }
    int rc = tr_reply (msg, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return rc == TR_OK? 0: -1;
}

//  Reads an arrival's body: "arrive", or {arrive: VALUE, party: NAME}.
//  On 0, *payload (inside msg, or NULL) and *party (a new string, or
//  NULL: the sender) are set; on -1, *why says what is wrong. Either
//  way the caller frees *party.
static int
s_arrival_read (const tr_msg_t *msg, const uint8_t **payload, size_t *payload_size,
                char **party, const char **why)
{
    static const char *const usage = "a barrier takes \"arrive\", {arrive: PAYLOAD, party: "
                                     "NAME} or \"status\"";
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    const char *text;
    size_t len;
    *payload = NULL;
    *party = NULL;
    if (tr_msg_str (msg, &text, &len) == TR_OK) {
        *why = usage;
        return len == 6 && memcmp (text, "arrive", 6) == 0? 0: -1;
    }
    tr__mp_t mp;
    uint32_t pairs;
    tr__mp_init (&mp, body, size);
    if (!body || tr__mp_map (&mp, &pairs) != 0) {
        *why = usage;
        return -1;
    }
    bool arrive = false;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *key;
        uint32_t key_len;
        if (tr__mp_str (&mp, &key, &key_len) != 0) {
            *why = "an arrival's keys must be strings";
            return -1;
        }
        const uint8_t *start = mp.p;
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) != 0) {
            *why = "malformed arrival";
            return -1;
        }
        if (key_len == 6 && memcmp (key, "arrive", 6) == 0) {
            arrive = true;
            *payload = start;
            *payload_size = (size_t) (mp.p - start);
        }
        else
        if (key_len == 5 && memcmp (key, "party", 5) == 0) {
            tr__mp_t sub;
            const char *name;
            uint32_t name_len;
            tr__mp_init (&sub, start, (size_t) (mp.p - start));
            if (tr__mp_str (&sub, &name, &name_len) != 0
            ||  tr_name_check (name, name_len) != TR_OK) {
                *why = "an arrival's 'party' must be a valid actor name";
                return -1;
            }
            free (*party);
            *party = strndup (name, name_len);
        }
        else {
            *why = "unknown key in an arrival; expected arrive, party";
            return -1;
        }
    }
    if (!arrive) {
        *why = "an arrival map needs 'arrive' (its payload, or null)";
        return -1;
    }
    return 0;
}

//  The slot for party in this generation, or -1 with *error and *why.
static int
s_slot (s_barrier_t *barrier, const char *party, int *error, const char **why)
{
    if (barrier->named) {
        for (size_t i = 0; i < barrier->named; i++)
            if (strcmp (barrier->names [i], party) == 0) {
                if (barrier->arrivals [i].party) {
                    *error = TR_EEXIST;
                    *why = "already arrived in this generation";
                    return -1;
                }
                return (int) i;
            }
        *error = TR_EINVAL;
        *why = "not one of the barrier's parties";
        return -1;
    }
    for (size_t i = 0; i < barrier->arrived; i++)
        if (strcmp (barrier->arrivals [i].party, party) == 0) {
            *error = TR_EEXIST;
            *why = "already arrived in this generation";
            return -1;
        }
    return (int) barrier->arrived;
}

//  A one-shot barrier's outcome, for an arrival after it.
static int
s_spent_answer (s_barrier_t *barrier, const tr_msg_t *msg)
{
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    int rc = barrier->spent_body? tr_reply (msg, barrier->spent_body, barrier->spent_size)
                                : tr_reply_error (msg, barrier->spent_error? barrier->spent_error
                                                                           : TR_ENOMEM);
    return rc == TR_OK? 0: -1;
}

static int
s_arrive (s_barrier_t *barrier, const tr_msg_t *msg)
{
    const uint8_t *payload;
    size_t payload_size = 0;
    char *party = NULL;
    const char *why = NULL;
    int error = TR_EINVAL;
    if (s_arrival_read (msg, &payload, &payload_size, &party, &why)) {
        free (party);
        return s_refuse (barrier, msg, TR_EINVAL, why, NULL);
    }
    if (!party && tr_msg_from (msg) [0] == '\0')
        return s_refuse (barrier, msg, TR_EINVAL, "an arrival from outside an actor must name "
                         "its party ({arrive: PAYLOAD, party: NAME})", NULL);
    if (!party)
        party = strdup (tr_msg_from (msg));
    if (barrier->spent) {
        free (party);
        return s_spent_answer (barrier, msg);
    }
    int slot = party? s_slot (barrier, party, &error, &why): -1;
    if (slot < 0) {
        int rc = s_refuse (barrier, msg, party? error: TR_ENOMEM, party? why: "out of memory",
                           party);
        free (party);
        return rc;
    }
    s_arrival_t *a = &barrier->arrivals [slot];
    if (payload && !(payload_size == 1 && payload [0] == 0xc0)) {
        a->payload = (uint8_t *) malloc (payload_size);
        if (!a->payload) {
            free (party);
            return s_refuse (barrier, msg, TR_ENOMEM, "out of memory", NULL);
        }
        memcpy (a->payload, payload, payload_size);
        a->payload_size = payload_size;
    }
    a->party = party;
    a->ask = tr_msg_kind (msg) == TR_KIND_ASK? tr_defer (msg): NULL;
    barrier->arrived++;
    tr_actor_info_set (barrier->self, "barrier.waiting", (int64_t) barrier->arrived);
    int64_t now = tr__now_ns ();
    if (barrier->arrived == 1)
        barrier->first_ns = now;
    if (barrier->arrived == barrier->parties) {
        s_release (barrier);
        return 0;
    }
    //  The generation times out at first + timeout, or before an arrived
    //  ask's own deadline, whichever comes first.
    int64_t due = barrier->arrived == 1? now + barrier->timeout_ms * 1000000: barrier->due_ns;
    int64_t left = a->ask? tr_msg_remaining_ms (a->ask): -1;
    if (left >= 0 && now + (left - S_MARGIN_MS) * 1000000 < due)
        due = now + (left > S_MARGIN_MS? left - S_MARGIN_MS: 0) * 1000000;
    if (barrier->arrived == 1 || due < barrier->due_ns)
        s_timer_arm (barrier, due);
    return 0;
}

static int
s_barrier_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_barrier_t *barrier = (s_barrier_t *) state;
    uint64_t id;
    if (tr__tick_read (msg, &id)) {
        //  A tick from a timer cancelled too late finds another id.
        if (barrier->arrived > 0 && id == barrier->tick)
            s_timed_out (barrier);
        return 0;
    }
    switch (tr_msg_kind (msg)) {
        case TR_KIND_ASK:
        case TR_KIND_TELL: {
            const char *text;
            size_t len;
            if (tr_msg_str (msg, &text, &len) == TR_OK && len == 6
            &&  memcmp (text, "status", 6) == 0)
                return s_status (barrier, msg);
            return s_arrive (barrier, msg);
        }
        default:
            return 0;               //  no answers are awaited here
    }
}

//  Parties still waiting are answered TR_ENOREPLY when their deferred
//  asks are destroyed.
static void
s_barrier_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_barrier_t *barrier = (s_barrier_t *) state;
    if (barrier->arrived) {
        tr_log (TR_LOG_WARN, "barrier '%s': stopping with %zu of %zu parties of generation "
                "%llu waiting", tr_actor_name (self), barrier->arrived, barrier->parties,
                (unsigned long long) barrier->generation);
        tr_timer_cancel (barrier->node, barrier->timer);
    }
    for (size_t i = 0; i < barrier->parties; i++) {
        tr_msg_destroy (&barrier->arrivals [i].ask);
        free (barrier->arrivals [i].party);
        free (barrier->arrivals [i].payload);
    }
    s_barrier_free (barrier);
}

const tr_actor_type_t tr__barrier_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "barrier",
    .summary = "parties wait until all have arrived, then all are released together",
    .behaviour = { s_barrier_init, s_barrier_handle, s_barrier_terminate },
    .params = s_barrier_params,
    .check = s_barrier_check,
};
