/*  tr_pool.c - the pool: one name in front of several members.

    A pool forwards each message it gets to one of its members (or, with
    the broadcast strategy, to all of them) and gives the member's answer
    to the asker. Members are actor names, looked up at each send: local
    actors, or actors on other nodes through the broker.

    The pool never waits on a member. An ask is taken over with tr_defer
    and forwarded with tr_request; the member's answer comes back to the
    pool's handler as a reply or an error, and the pool answers the asker
    from there. So many asks are in flight at once, up to the concurrency
    limit; asks past it wait in a bounded queue, and past the queue they
    are refused with TR_EFULL. Each forwarded ask has a timer of its own
    (tr_compose.h), because a member that never answers sends nothing.

    Strategies (which member gets an ask):
        round_robin      each in turn
        least_busy       the one with the fewest asks in flight from this pool
        random           any, uniformly (seeded by `seed` for repeatable runs)
        consistent_hash  a hash ring (64 points per member) on a field of the
                         message map (`hash_key`) or on the whole body: the
                         same key goes to the same member while the member
                         list is unchanged, and removing one member moves
                         only the keys it had
        broadcast        tells go to every member; an ask goes to every
                         member and is answered with a list, one map per
                         member in member order: {member, answer} or
                         {member, error} (the error's name, TR_ETIMEDOUT...)
        performance      the member with the lowest expected cost, from a
                         decayed latency and success rate per member
                         (see s_cost); a share `explore` of asks goes to a
                         random member instead, so that a member that has
                         recovered is seen to have recovered

    Concurrency: `limit` asks in flight at most (a broadcast ask is one).
    With `adaptive: true` the limit moves between `limit_min` and `limit`
    by AIMD, as TCP's window does: each answer within `latency_target`
    adds 1/limit (about one per round of answers); a failure or a slow
    answer halves it, at most once per round (answers to asks sent before
    the last cut do not cut it again).

    Failures: a member that answers an error, does not answer within
    `timeout`, or cannot be reached counts as failed; the asker gets that
    error, unless `retries` allows another attempt on a member not tried
    yet for this ask (within the ask's own deadline). TR_EINVAL and
    TR_EMALFORMED are the asker's own mistakes and are not retried.

    Tells are forwarded the same way but take no slot (nothing comes back
    to free it); a tell no member takes is logged and counted
    (pool.dropped), never lost silently.

    Counters in status (tr_actor_info): pool.limit, pool.inflight,
    pool.queued, pool.answered, pool.failed, pool.retried, pool.refused,
    pool.dropped.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>

typedef enum {
    S_ROUND_ROBIN, S_LEAST_BUSY, S_RANDOM, S_HASH, S_BROADCAST, S_PERFORMANCE
} s_strategy_t;

static const char *const s_strategies [] = {
    "round_robin", "least_busy", "random", "consistent_hash", "broadcast",
    "performance", NULL
};

#define S_RING_POINTS   64          //  points per member on the hash ring

typedef struct {
    char *name;
    int inflight;               //  asks from this pool not answered yet
    bool sampled;               //  has answered (or failed) at least once
    double latency_ms;          //  decayed mean time to an answer
    double success;             //  decayed share of successes, 0 to 1
} s_member_t;

//  One forwarded ask: to one member (a broadcast has one leg per member).
typedef struct {
    int member;
    uint64_t request;           //  tr_request's id; 0 once done
    uint64_t timer;
    int64_t sent_ns;
    int error;                  //  TR_OK, or why the leg failed
    tr__value_t answer;         //  broadcast: the member's answer (copied)
} s_leg_t;

typedef struct s_call_s s_call_t;
struct s_call_s {
    s_call_t *next;             //  in the pool's in-flight list or queue
    tr_msg_t *ask;              //  deferred: answered once, then destroyed
    int64_t started_ns;         //  when it took its slot
    int attempts;
    bool *tried;                //  per member, for retries
    size_t legs_count;
    size_t legs_open;           //  legs still waiting
    s_leg_t *legs;
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    //  Settings.
    s_member_t *members;
    size_t count;
    int strategy;
    char *hash_key;             //  consistent_hash: a field of the map, or NULL
    int64_t limit_max;          //  `limit`
    int64_t limit_min;          //  adaptive only
    bool adaptive;
    int64_t latency_target_ms;
    int64_t queue_max;
    int64_t retries;
    int64_t timeout_ms;
    double explore;
    double decay;
    //  State.
    double limit;               //  the limit now (whole part counts)
    int64_t last_cut_ns;        //  when the adaptive limit was last halved
    uint64_t *ring;             //  consistent_hash: point hash << 0, sorted
    uint32_t *ring_member;      //  the member of each point
    size_t ring_size;
    size_t next;                //  round_robin's cursor
    uint64_t rng;               //  xorshift64* state
    s_call_t *calls;            //  in flight
    size_t active;
    s_call_t *queue_head, *queue_tail;
    size_t queued;
    bool pumping;               //  in s_pump
} s_pool_t;

static const tr_param_spec_t s_pool_params [] = {
    { "members", TR_PARAM_LIST, true, "the actors to forward to (names, local or on other nodes)" },
    { "strategy", TR_PARAM_STRING, false, "round_robin (default), least_busy, random, "
                                          "consistent_hash, broadcast or performance" },
    { "hash_key", TR_PARAM_STRING, false, "consistent_hash: the field of the message map "
                                          "to hash (default: the whole body)" },
    { "limit", TR_PARAM_INT, false, "asks in flight at most (default 64; adaptive: the top)" },
    { "adaptive", TR_PARAM_BOOL, false, "move the limit by AIMD between limit_min and limit" },
    { "limit_min", TR_PARAM_INT, false, "adaptive: the lowest limit, and the first (default 1)" },
    { "latency_target", TR_PARAM_DURATION, false, "adaptive: slower answers cut the limit "
                                                  "(default 1s)" },
    { "queue", TR_PARAM_INT, false, "asks waiting past the limit at most (default 1024)" },
    { "retries", TR_PARAM_INT, false, "further attempts on other members after a failure "
                                      "(default 0)" },
    { "timeout", TR_PARAM_DURATION, false, "how long one member gets to answer (default 5s; "
                                           "the ask's own deadline also bounds it)" },
    { "explore", TR_PARAM_NUMBER, false, "performance: share of asks sent to a random member "
                                         "(default 0.1)" },
    { "decay", TR_PARAM_NUMBER, false, "performance: weight of the newest answer in a "
                                       "member's score (default 0.2)" },
    { "seed", TR_PARAM_INT, false, "random and explore: the generator's seed (default: "
                                   "from the clock)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_pool_free (s_pool_t *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->count; i++)
        free (pool->members [i].name);
    free (pool->members);
    free (pool->hash_key);
    free (pool->ring);
    free (pool->ring_member);
    free (pool);
}

//  Orders ring points by hash (the member index rides in the low bits of
//  a copy; see s_ring_build).
static int
s_point_cmp (const void *a, const void *b)
{
    const uint64_t *x = (const uint64_t *) a, *y = (const uint64_t *) b;
    return *x < *y? -1: *x > *y? 1: 0;
}

//  Builds the hash ring: S_RING_POINTS points per member, at the hashes
//  of "NAME#i". Points are sorted by hash; ties (astronomically rare) are
//  broken by member index, so the ring depends only on the member names.
static int
s_ring_build (s_pool_t *pool)
{
    pool->ring_size = pool->count * S_RING_POINTS;
    pool->ring = (uint64_t *) calloc (pool->ring_size, sizeof *pool->ring);
    pool->ring_member = (uint32_t *) calloc (pool->ring_size, sizeof *pool->ring_member);
    uint64_t (*pairs) [2] = calloc (pool->ring_size, sizeof *pairs);
    if (!pool->ring || !pool->ring_member || !pairs) {
        free (pairs);
        return -1;
    }
    for (size_t m = 0; m < pool->count; m++)
        for (size_t i = 0; i < S_RING_POINTS; i++) {
            char point [300];
            int len = snprintf (point, sizeof point, "%s#%zu", pool->members [m].name, i);
            pairs [m * S_RING_POINTS + i] [0] = tr__hash (point, (size_t) len, 0);
            pairs [m * S_RING_POINTS + i] [1] = m;
        }
    qsort (pairs, pool->ring_size, sizeof *pairs, s_point_cmp);
    for (size_t i = 0; i < pool->ring_size; i++) {
        pool->ring [i] = pairs [i] [0];
        pool->ring_member [i] = (uint32_t) pairs [i] [1];
    }
    free (pairs);
    return 0;
}

//  Reads and checks every parameter into pool. Returns 0 or -1 with
//  cfg->error.
static int
s_pool_configure (s_pool_t *pool, tr__cfg_t *cfg)
{
    char **names = NULL;
    int64_t seed = 0;
    pool->strategy = S_ROUND_ROBIN;
    pool->limit_max = 64;
    pool->limit_min = 1;
    pool->latency_target_ms = 1000;
    pool->queue_max = 1024;
    pool->timeout_ms = 5000;
    pool->explore = 0.1;
    pool->decay = 0.2;
    size_t count = 0;
    tr__cfg_enter (cfg, "members");
    if (tr__cfg_names (cfg, tr__cfg_get (cfg, NULL, "members"), "members", &names, &count))
        return -1;
    tr__cfg_enter (cfg, "%s", "");
    pool->members = (s_member_t *) calloc (count, sizeof *pool->members);
    if (!pool->members) {
        tr__names_free (names, count);
        return tr__cfg_bad (cfg, "out of memory");
    }
    pool->count = count;
    for (size_t i = 0; i < count; i++) {
        pool->members [i].name = names [i];
        pool->members [i].success = 1.0;
    }
    free (names);
    if (tr__cfg_choice (cfg, "strategy", s_strategies, &pool->strategy)
    ||  tr__cfg_str (cfg, "hash_key", &pool->hash_key)
    ||  tr__cfg_int (cfg, "limit", 1, 1000000, &pool->limit_max)
    ||  tr__cfg_bool (cfg, "adaptive", &pool->adaptive)
    ||  tr__cfg_int (cfg, "limit_min", 1, 1000000, &pool->limit_min)
    ||  tr__cfg_duration (cfg, "latency_target", 1, INT32_MAX, &pool->latency_target_ms)
    ||  tr__cfg_int (cfg, "queue", 0, 10000000, &pool->queue_max)
    ||  tr__cfg_int (cfg, "retries", 0, 100, &pool->retries)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &pool->timeout_ms)
    ||  tr__cfg_number (cfg, "explore", 0, 1, &pool->explore)
    ||  tr__cfg_number (cfg, "decay", 0.001, 1, &pool->decay)
    ||  tr__cfg_int (cfg, "seed", INT64_MIN, INT64_MAX, &seed))
        return -1;
    //  Settings that only mean something with another one are refused
    //  without it rather than ignored.
    if (pool->hash_key && pool->strategy != S_HASH)
        return tr__cfg_bad_at (cfg, "hash_key",
                               "'hash_key' is only for strategy consistent_hash");
    const char *adaptive_key = tr__cfg_get (cfg, NULL, "limit_min")? "limit_min":
                               tr__cfg_get (cfg, NULL, "latency_target")? "latency_target": NULL;
    if (!pool->adaptive && adaptive_key)
        return tr__cfg_bad_at (cfg, adaptive_key,
                               "'limit_min' and 'latency_target' need 'adaptive: true'");
    if (pool->adaptive && pool->limit_min > pool->limit_max)
        return tr__cfg_bad_at (cfg, "limit_min",
                               "'limit_min' (%lld) must not be above 'limit' (%lld)",
                               (long long) pool->limit_min, (long long) pool->limit_max);
    const char *performance_key = tr__cfg_get (cfg, NULL, "explore")? "explore":
                                  tr__cfg_get (cfg, NULL, "decay")? "decay": NULL;
    if (pool->strategy != S_PERFORMANCE && performance_key)
        return tr__cfg_bad_at (cfg, performance_key,
                               "'explore' and 'decay' are only for strategy performance");
    if (pool->strategy == S_BROADCAST && pool->retries > 0)
        return tr__cfg_bad_at (cfg, "retries", "'retries' does not apply to strategy "
                               "broadcast (every member is asked already)");
    if (pool->strategy == S_HASH && s_ring_build (pool))
        return tr__cfg_bad (cfg, "out of memory");
    pool->limit = (double) (pool->adaptive? pool->limit_min: pool->limit_max);
    pool->rng = seed? (uint64_t) seed: (uint64_t) tr__now_ns ();
    if (cfg->actor)
        pool->rng ^= tr__hash (cfg->actor, strlen (cfg->actor), 0);
    if (!pool->rng)
        pool->rng = 1;
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_pool_check, "pool", s_pool_t, s_pool_configure, s_pool_free)

static int
s_pool_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_pool_t *pool = (s_pool_t *) calloc (1, sizeof *pool);
    int rc = tr__cfg_open (&cfg, "pool", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !pool)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_pool_configure (pool, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_pool_free (pool);
        return -1;
    }
    tr__cfg_close (&cfg);
    pool->self = self;
    pool->node = tr_actor_node (self);
    tr_actor_info_set (self, "pool.limit", (int64_t) pool->limit);
    *state_p = pool;
    return 0;
}

//  --------------------------------------------------------------------------
//  Choosing a member

static uint64_t
s_random (s_pool_t *pool)
{
    uint64_t x = pool->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pool->rng = x;
    return x * UINT64_C (2685821657736338717);
}

//  The expected cost of sending an ask to a member, in ms: its decayed
//  latency divided by its success rate (the time per success if failures
//  were retried), plus its failure rate times the timeout (a failure
//  costs the asker up to a whole wait). A member not heard from yet costs
//  0, so that each member is tried early.
static double
s_cost (const s_pool_t *pool, const s_member_t *member)
{
    if (!member->sampled)
        return 0;
    double success = member->success < 0.01? 0.01: member->success;
    return (member->latency_ms + 1) / success
         + (1 - member->success) * (double) pool->timeout_ms;
}

//  The member whose ring point follows the key's hash, skipping members
//  already tried for this ask.
static int
s_pick_hash (s_pool_t *pool, const void *key, size_t size, const bool *tried)
{
    uint64_t h = tr__hash (key, size, 0);
    size_t lo = 0, hi = pool->ring_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pool->ring [mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = 0; i < pool->ring_size; i++) {
        uint32_t m = pool->ring_member [(lo + i) % pool->ring_size];
        if (!tried || !tried [m])
            return (int) m;
    }
    return -1;
}

//  The key that consistent_hash hashes: the field's msgpack bytes, or the
//  whole body. Returns -1 if the body has no such field.
static int
s_hash_key (const s_pool_t *pool, const tr_msg_t *msg, const void **key, size_t *size)
{
    if (!pool->hash_key) {
        *key = tr_msg_body (msg);
        *size = tr_msg_size (msg);
        return 0;
    }
    const uint8_t *value;
    if (tr__body_field (tr_msg_body (msg), tr_msg_size (msg), pool->hash_key, &value, size))
        return -1;
    *key = value;
    return 0;
}

//  Chooses the member for msg among those not tried yet (tried may be
//  NULL: none tried). Returns its index, or -1 if none is left (or, for
//  consistent_hash, the body lacks the key: *bad_key is then set).
static int
s_pick (s_pool_t *pool, const tr_msg_t *msg, const bool *tried, bool *bad_key)
{
    size_t left = 0;
    for (size_t i = 0; i < pool->count; i++)
        left += !tried || !tried [i];
    if (left == 0)
        return -1;
    int strategy = pool->strategy;
    if (strategy == S_PERFORMANCE && pool->explore > 0
    &&  (double) (s_random (pool) >> 11) / (double) (UINT64_C (1) << 53) < pool->explore)
        strategy = S_RANDOM;
    if (strategy == S_HASH) {
        const void *key;
        size_t size;
        if (s_hash_key (pool, msg, &key, &size)) {
            *bad_key = true;
            return -1;
        }
        return s_pick_hash (pool, key, size, tried);
    }
    if (strategy == S_RANDOM) {
        size_t n = (size_t) (s_random (pool) % left);
        for (size_t i = 0; i < pool->count; i++)
            if ((!tried || !tried [i]) && n-- == 0)
                return (int) i;
    }
    //  round_robin, and the ties of least_busy and performance, start at
    //  the cursor, so equal members share the work.
    int best = -1;
    double best_cost = 0;
    for (size_t k = 0; k < pool->count; k++) {
        size_t i = (pool->next + k) % pool->count;
        if (tried && tried [i])
            continue;
        double cost = strategy == S_LEAST_BUSY? (double) pool->members [i].inflight
                    : strategy == S_PERFORMANCE? s_cost (pool, &pool->members [i]): 0;
        if (best < 0 || cost < best_cost) {
            best = (int) i;
            best_cost = cost;
        }
        if (strategy == S_ROUND_ROBIN)
            break;
    }
    pool->next = ((size_t) best + 1) % pool->count;
    return best;
}

//  --------------------------------------------------------------------------
//  Member statistics and the adaptive limit

static void
s_info (s_pool_t *pool)
{
    tr_actor_info_set (pool->self, "pool.limit", (int64_t) pool->limit);
    tr_actor_info_set (pool->self, "pool.inflight", (int64_t) pool->active);
    tr_actor_info_set (pool->self, "pool.queued", (int64_t) pool->queued);
}

//  True if an error is the member's failure rather than the asker's
//  mistake (which no other member would answer differently).
static bool
s_member_failed (int error)
{
    return error != TR_OK && error != TR_EINVAL && error != TR_EMALFORMED;
}

//  Records one answer (or failure) of a member, sent_ns after the ask was
//  sent, for the performance scores and the adaptive limit.
static void
s_sample (s_pool_t *pool, s_call_t *call, int member, int64_t sent_ns, int error)
{
    s_member_t *m = &pool->members [member];
    double latency = (double) (tr__now_ns () - sent_ns) / 1e6;
    bool ok = !s_member_failed (error);
    if (!m->sampled) {
        m->latency_ms = latency;
        m->success = ok? 1: 0;
        m->sampled = true;
    }
    else {
        m->latency_ms += pool->decay * (latency - m->latency_ms);
        m->success += pool->decay * ((ok? 1: 0) - m->success);
    }
    if (!pool->adaptive)
        return;
    if (ok && latency <= (double) pool->latency_target_ms) {
        pool->limit += 1 / pool->limit;
        if (pool->limit > (double) pool->limit_max)
            pool->limit = (double) pool->limit_max;
    }
    else
    if (call->started_ns >= pool->last_cut_ns) {
        //  Congestion: halve, once for this round of asks.
        pool->limit /= 2;
        if (pool->limit < (double) pool->limit_min)
            pool->limit = (double) pool->limit_min;
        pool->last_cut_ns = tr__now_ns ();
    }
}

//  --------------------------------------------------------------------------
//  Calls

static void
s_call_free (s_call_t *call)
{
    if (!call)
        return;
    for (size_t i = 0; i < call->legs_count; i++)
        tr__value_free (&call->legs [i].answer);
    free (call->legs);
    free (call->tried);
    tr_msg_destroy (&call->ask);        //  unanswered: the asker gets TR_ENOREPLY
    free (call);
}

//  A new call for a deferred ask, with room for `legs` legs.
static s_call_t *
s_call_new (s_pool_t *pool, tr_msg_t *ask, size_t legs)
{
    s_call_t *call = (s_call_t *) calloc (1, sizeof *call);
    if (!call)
        return NULL;
    call->ask = ask;
    call->tried = (bool *) calloc (pool->count, sizeof *call->tried);
    call->legs = (s_leg_t *) calloc (legs, sizeof *call->legs);
    call->legs_count = legs;
    if (!call->tried || !call->legs) {
        call->ask = NULL;
        s_call_free (call);
        return NULL;
    }
    return call;
}

//  Ms a member may take for this call's next attempt: the pool's timeout,
//  cut to what is left of the ask's deadline. 0 when nothing is left.
static int
s_attempt_ms (const s_pool_t *pool, const s_call_t *call)
{
    int64_t left = tr_msg_remaining_ms (call->ask);
    int64_t ms = pool->timeout_ms;
    if (left >= 0 && left < ms)
        ms = left;
    return (int) ms;
}

//  Forwards the call's body to `member` as leg `index`, with its timer.
//  Returns TR_OK, or the send's error (nothing is then in flight).
static int
s_leg_send (s_pool_t *pool, s_call_t *call, size_t index, int member, int timeout_ms)
{
    s_leg_t *leg = &call->legs [index];
    memset (leg, 0, sizeof *leg);
    leg->member = member;
    call->tried [member] = true;
    leg->sent_ns = tr__now_ns ();
    int rc = tr__request_timed (pool->self, pool->members [member].name,
                                tr_msg_body (call->ask), tr_msg_size (call->ask), timeout_ms,
                                &leg->request, &leg->timer);
    if (rc != TR_OK) {
        //  (Without a timer a silent member would hold the slot for ever:
        //  tr__request_timed fails then too, and a late answer finds
        //  nobody.)
        leg->request = 0;
        leg->error = rc;
        return rc;
    }
    pool->members [member].inflight++;
    call->legs_open++;
    return TR_OK;
}

static void s_pump (s_pool_t *pool);
static void s_call_finish (s_pool_t *pool, s_call_t *call, int error, const void *body,
                           size_t size);

//  Answers the asker with a list of what each member said (broadcast),
//  and ends the call.
static void
s_broadcast_answer (s_pool_t *pool, s_call_t *call)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, (uint32_t) call->legs_count);
    for (size_t i = 0; i < call->legs_count; i++) {
        const s_leg_t *leg = &call->legs [i];
        const char *name = pool->members [leg->member].name;
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "member");
        tr__pack_str (&pk, name);
        if (leg->error) {
            tr__pack_str (&pk, "error");
            tr__pack_str (&pk, tr_errname (leg->error));
        }
        else {
            tr__pack_str (&pk, "answer");
            //  The member's answer as it came: one msgpack value, or nil
            //  for an empty one.
            tr__value_pack (&pk, &leg->answer);
        }
    }
    s_call_finish (pool, call, TR_OK, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}

//  Takes a finished call out of the in-flight list, frees its slot and
//  starts queued asks in it.
static void
s_call_done (s_pool_t *pool, s_call_t *call)
{
    for (s_call_t **p = &pool->calls; *p; p = &(*p)->next)
        if (*p == call) {
            *p = call->next;
            break;
        }
    pool->active--;
    s_call_free (call);
    s_pump (pool);
    s_info (pool);
}

//  Ends a call with its answer (body, size) or its error: counted, and
//  its slot freed, before the asker hears, so that an asker who looks at
//  the counters next sees them.
static void
s_call_finish (s_pool_t *pool, s_call_t *call, int error, const void *body, size_t size)
{
    tr_actor_info_add (pool->self, error? "pool.failed": "pool.answered", 1);
    tr_msg_t *ask = call->ask;
    call->ask = NULL;
    s_call_done (pool, call);
    int rc = error? error: tr_reply (ask, body, size);
    if (rc != TR_OK) {
        if (!error)
            tr_log (TR_LOG_WARN, "pool '%s': answer: %s", tr_actor_name (pool->self),
                    tr_strerror (rc));
        tr_reply_error (ask, rc);
    }
    tr_msg_destroy (&ask);
}

//  Sends the call's next attempt to a member not tried yet. Members that
//  refuse at once (no such actor, a full mailbox, an open breaker) are
//  failures of their own: the next one is tried while retries allow.
//  Returns TR_OK once an attempt is in flight, or the error the asker
//  should get (the call is then still the caller's to finish).
static int
s_attempt (s_pool_t *pool, s_call_t *call, int last_error)
{
    while (call->attempts <= pool->retries) {
        int timeout_ms = s_attempt_ms (pool, call);
        if (timeout_ms <= 0)
            return TR_ETIMEDOUT;
        bool bad_key = false;
        int member = s_pick (pool, call->ask, call->tried, &bad_key);
        if (bad_key) {
            tr_log (TR_LOG_WARN, "pool '%s': an ask without the field '%s' to hash on "
                    "(from '%s')", tr_actor_name (pool->self), pool->hash_key,
                    tr_msg_from (call->ask));
            return TR_EINVAL;
        }
        if (member < 0)
            break;                      //  every member has been tried
        if (call->attempts++ > 0)
            tr_actor_info_add (pool->self, "pool.retried", 1);
        int rc = s_leg_send (pool, call, 0, member, timeout_ms);
        if (rc == TR_OK)
            return TR_OK;
        tr_log (TR_LOG_WARN, "pool '%s': member '%s': %s", tr_actor_name (pool->self),
                pool->members [member].name, tr_strerror (rc));
        s_sample (pool, call, member, call->legs [0].sent_ns, rc);
        last_error = rc;
        if (!s_member_failed (rc))
            break;
    }
    return last_error;
}

//  Starts a call that has its slot: every member for broadcast, one
//  otherwise. Finishes it at once if nothing could be sent.
static void
s_call_start (s_pool_t *pool, s_call_t *call)
{
    call->started_ns = tr__now_ns ();
    call->next = pool->calls;
    pool->calls = call;
    pool->active++;
    if (pool->strategy == S_BROADCAST) {
        int timeout_ms = s_attempt_ms (pool, call);
        for (size_t i = 0; i < pool->count; i++) {
            if (timeout_ms <= 0) {
                call->legs [i].member = (int) i;
                call->legs [i].error = TR_ETIMEDOUT;
            }
            else
            if (s_leg_send (pool, call, i, (int) i, timeout_ms) != TR_OK)
                s_sample (pool, call, (int) i, call->legs [i].sent_ns, call->legs [i].error);
        }
        if (call->legs_open == 0)
            s_broadcast_answer (pool, call);
        return;
    }
    int rc = s_attempt (pool, call, TR_ENOACTOR);
    if (rc != TR_OK)
        s_call_finish (pool, call, rc, NULL, 0);
}

//  Starts queued asks while there are free slots.
static void
s_pump (s_pool_t *pool)
{
    //  A call that ends as it starts (no member reachable) comes back
    //  here through s_call_done: the outer loop carries on instead, so
    //  the stack does not grow with the queue.
    if (pool->pumping)
        return;
    pool->pumping = true;
    while (pool->queue_head && pool->active < (size_t) pool->limit) {
        s_call_t *call = pool->queue_head;
        pool->queue_head = call->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pool->queued--;
        call->next = NULL;
        s_call_start (pool, call);
    }
    pool->pumping = false;
}

//  The call and leg waiting for the answer to request id, or NULL. Cost:
//  linear in the asks in flight (at most `limit`, times the members for
//  broadcast).
static s_call_t *
s_find (s_pool_t *pool, uint64_t id, s_leg_t **leg_p)
{
    if (id == 0)
        return NULL;
    for (s_call_t *call = pool->calls; call; call = call->next)
        for (size_t i = 0; i < call->legs_count; i++)
            if (call->legs [i].request == id) {
                *leg_p = &call->legs [i];
                return call;
            }
    return NULL;
}

//  A leg has ended: with the member's reply (msg), or with error (msg
//  NULL, or an error message).
static void
s_leg_end (s_pool_t *pool, s_call_t *call, s_leg_t *leg, const tr_msg_t *reply, int error)
{
    tr_timer_cancel (pool->node, leg->timer);
    leg->request = 0;
    leg->error = error;
    pool->members [leg->member].inflight--;
    call->legs_open--;
    s_sample (pool, call, leg->member, leg->sent_ns, error);
    if (pool->strategy == S_BROADCAST) {
        if (reply && !error
        &&  tr__value_set (&leg->answer, tr_msg_body (reply), tr_msg_size (reply)))
            leg->error = TR_ENOMEM;
        if (call->legs_open == 0)
            s_broadcast_answer (pool, call);
        return;
    }
    if (!error) {
        s_call_finish (pool, call, TR_OK, tr_msg_body (reply), tr_msg_size (reply));
        return;
    }
    tr_log (TR_LOG_INFO, "pool '%s': member '%s' failed an ask: %s", tr_actor_name (pool->self),
            pool->members [leg->member].name, tr_strerror (error));
    int rc = s_member_failed (error)? s_attempt (pool, call, error): error;
    if (rc != TR_OK)
        s_call_finish (pool, call, rc, NULL, 0);
}

//  --------------------------------------------------------------------------
//  Messages

//  A tell: forwarded to the member the strategy picks (all of them for
//  broadcast); a member that refuses gives its turn to the next one.
static void
s_pool_tell (s_pool_t *pool, const tr_msg_t *msg)
{
    const char *self_name = tr_actor_name (pool->self);
    if (pool->strategy == S_BROADCAST) {
        for (size_t i = 0; i < pool->count; i++) {
            int rc = tr_tell (pool->node, pool->members [i].name, tr_msg_body (msg),
                              tr_msg_size (msg), NULL);
            if (rc != TR_OK) {
                tr_log (TR_LOG_WARN, "pool '%s': tell to '%s': %s", self_name,
                        pool->members [i].name, tr_strerror (rc));
                tr_actor_info_add (pool->self, "pool.dropped", 1);
            }
        }
        return;
    }
    bool *tried = (bool *) calloc (pool->count, sizeof *tried);
    int rc = TR_ENOMEM;
    bool bad_key = false;
    while (tried) {
        int member = s_pick (pool, msg, tried, &bad_key);
        if (member < 0) {
            rc = bad_key? TR_EINVAL: rc;
            break;
        }
        tried [member] = true;
        rc = tr_tell (pool->node, pool->members [member].name, tr_msg_body (msg),
                      tr_msg_size (msg), NULL);
        if (rc == TR_OK || !s_member_failed (rc))
            break;
    }
    free (tried);
    if (rc != TR_OK) {
        tr_log (TR_LOG_WARN, "pool '%s': a tell from '%s' reached no member: %s",
                self_name, tr_msg_from (msg), tr_strerror (rc));
        tr_actor_info_add (pool->self, "pool.dropped", 1);
    }
}

//  An ask: started now if there is a free slot, queued if the queue has
//  room, refused with TR_EFULL otherwise.
static int
s_pool_ask (s_pool_t *pool, const tr_msg_t *msg)
{
    bool can_start = pool->active < (size_t) pool->limit && !pool->queue_head;
    if (!can_start && pool->queued >= (size_t) pool->queue_max) {
        tr_actor_info_add (pool->self, "pool.refused", 1);
        return tr_reply_error (msg, TR_EFULL) == TR_OK? 0: -1;
    }
    tr_msg_t *ask = tr_defer (msg);
    s_call_t *call = ask? s_call_new (pool, ask,
                                      pool->strategy == S_BROADCAST? pool->count: 1): NULL;
    if (!call) {
        if (ask)
            tr_reply_error (ask, TR_ENOMEM);
        tr_msg_destroy (&ask);
        return 0;
    }
    if (can_start)
        s_call_start (pool, call);
    else {
        if (pool->queue_tail)
            pool->queue_tail->next = call;
        else
            pool->queue_head = call;
        pool->queue_tail = call;
        pool->queued++;
        //  An adaptive limit may have grown since the last slot was freed.
        s_pump (pool);
    }
    s_info (pool);
    return 0;
}

static int
s_pool_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_pool_t *pool = (s_pool_t *) state;
    s_leg_t *leg = NULL;
    s_call_t *call;
    uint64_t id;
    switch (tr_msg_kind (msg)) {
        case TR_KIND_REPLY:
            //  An answer to an attempt that has timed out finds no leg.
            if ((call = s_find (pool, tr_msg_corr (msg), &leg)))
                s_leg_end (pool, call, leg, msg, TR_OK);
            return 0;
        case TR_KIND_ERROR:
            if ((call = s_find (pool, tr_msg_corr (msg), &leg)))
                s_leg_end (pool, call, leg, msg, tr_msg_error (msg));
            return 0;
        case TR_KIND_ASK:
            return s_pool_ask (pool, msg);
        default:
            if (tr__tick_read (msg, &id)) {
                if ((call = s_find (pool, id, &leg)))
                    s_leg_end (pool, call, leg, NULL, TR_ETIMEDOUT);
                return 0;
            }
            s_pool_tell (pool, msg);
            return 0;
    }
}

//  Asks still in flight or queued are answered TR_ENOREPLY by the
//  runtime when their deferred messages are destroyed; their timers are
//  cancelled (a late answer then finds nobody, and is a dead letter).
static void
s_pool_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_pool_t *pool = (s_pool_t *) state;
    while (pool->calls) {
        s_call_t *call = pool->calls;
        pool->calls = call->next;
        for (size_t i = 0; i < call->legs_count; i++)
            if (call->legs [i].request)
                tr_timer_cancel (pool->node, call->legs [i].timer);
        s_call_free (call);
    }
    while (pool->queue_head) {
        s_call_t *call = pool->queue_head;
        pool->queue_head = call->next;
        s_call_free (call);
    }
    s_pool_free (pool);
}

const tr_actor_type_t tr__pool_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "pool",
    .summary = "forwards to members by strategy, with a concurrency limit and retries",
    .behaviour = { s_pool_init, s_pool_handle, s_pool_terminate },
    .params = s_pool_params,
    .check = s_pool_check,
};
