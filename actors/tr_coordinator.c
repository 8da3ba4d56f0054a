/*  tr_coordinator.c - the coordinator: an agent reads the shared state of
    a task in the scratchpad and decides, round after round, who does
    what next, until it says the task is done (the supervisor pattern).

    The state of the task lives in the scratchpad under the coordinator's
    prefix (PREFIX, by default the actor's name), where any node, agent or
    `troupe kv` can read it while the task runs:
        PREFIX.task             the task, as asked
        PREFIX.status           "running", "finished" or "failed"
        PREFIX.round            the round in progress (from 1)
        PREFIX.progress.MEMBER  {status, task, round[, error]}: status is
                                working, done, failed, reassigned or
                                abandoned; round is the one it was given in
        PREFIX.result.MEMBER    the member's last answer
        PREFIX.log              [{round, event, member?, task?, from?,
                                 error?}...]: every decision (assign,
                                review, reassign, finish, invalid) and every
                                outcome (done, failed), in order
        PREFIX.answer           the answer, once finished
        PREFIX.error            why it failed, once failed

    Each round the coordinator reads the state back from the scratchpad
    and asks its agent with
        {task, round, max_rounds, members: [NAME...],
         progress: {MEMBER: PROGRESS | nil}, results: {MEMBER: ANSWER | nil},
         log: [...]}
    and the agent answers a decision {action, member, task, result, from}:
        assign      `member` gets `task`; it works while the rounds go on
                    (one assignment per member at a time)
        review      the next round waits until a member at work finishes
                    (at once if none is)
        reassign    `task` goes to `member`, and whoever had it (`from`, or
                    the members working on or failed at the same task) is
                    relieved of it: its answer is no longer awaited. Without
                    `task`, the task `from` had
        finish      the task is done: `result` is the answer
    A decision that cannot be carried out (an unknown action or member, a
    member still at work, no task) is written to the log as `invalid`,
    with why, and the next round begins: the agent sees it and may
    correct itself. After `max_rounds` decisions without a finish the
    task fails with TR_ELIMIT, saying how many rounds were used.

    One task at a time: the state under the prefix is that task's. Tasks
    asked meanwhile wait in order (`queue`; past it TR_EFULL).

    Nothing blocks the coordinator's thread: the scratchpad is read and
    written with the asynchronous calls (their outcomes come back as
    messages; calls from one thread are answered in the order made, so a
    round's reads see the writes before them), and the agent and members
    are asked with tr_request and a timer. Without a broker there is no
    scratchpad: the coordinator refuses to start.

    Events: coordinator.round {coordinator, round, action, member?},
    coordinator.finished {coordinator, rounds}, coordinator.failed
    {coordinator, rounds, error, reason}.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "troupe/tr_event.h"
#include "troupe/tr_scratch.h"
#include "troupe/tr_timer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_PREFIX_MAX    512         //  so that PREFIX.progress.MEMBER fits in a key
#define S_WRITE         UINT32_MAX  //  the slot of a write: nothing to keep

typedef enum {
    S_NONE, S_WORKING, S_DONE, S_FAILED, S_REASSIGNED, S_ABANDONED
} s_status_t;

static const char *const s_status_names [] = {
    "none", "working", "done", "failed", "reassigned", "abandoned"
};

//  A member's assignment: the one it works on, or its last.
typedef struct {
    int status;                 //  s_status_t
    tr__value_t task;
    int64_t round;              //  the round it was given in
    uint64_t wait;              //  the request's id while working
    uint64_t timer;
} s_work_t;

typedef enum {
    S_QUEUED,                   //  waiting for the task before it
    S_PREPARE,                  //  the state of the task before being written
    S_READ,                     //  the round's reads (and writes) in flight
    S_DECIDE,                   //  the agent asked
    S_REVIEW,                   //  waiting for a member to finish
    S_FINISH,                   //  the last writes in flight, then the answer
    S_FAILING                   //  the last writes in flight, then the error
} s_stage_t;

typedef struct s_run_s s_run_t;
struct s_run_s {
    s_run_t *next;              //  in the queue
    tr_msg_t *ask;              //  deferred, or NULL for a tell
    char *from;
    tr__value_t task;
    uint64_t id;                //  names its scratchpad calls
    int stage;
    int64_t round;
    size_t pending;             //  scratchpad calls in flight
    uint64_t wait;              //  the agent's request, or 0
    uint64_t timer;
    s_work_t *work;             //  one per member
    tr__value_t *seen;            //  what this round read: task, log, progress x n, result x n
    msgpack_sbuffer log;        //  the log's entries, packed one after another
    uint32_t nlog;
    tr__value_t answer;
    int error;                  //  S_FAILING: why
    char reason [1300];
    int broken;                 //  a scratchpad call failed: its error, and no more calls
    char broken_reason [1300];
    int64_t started_ns;
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    char *agent;
    char **members;
    size_t count;
    char *prefix;               //  NULL until init: the actor's name
    int64_t max_rounds;
    int64_t timeout_ms;
    int64_t scratch_ms;
    int64_t queue_max;
    bool report;                //  on_failure: report
    s_run_t *run;               //  the task in hand
    s_run_t *queue;             //  tasks waiting, oldest first
    s_run_t *queue_tail;
    size_t queued;
    uint64_t next_id;
} s_coord_t;

static const tr_param_spec_t s_coord_params [] = {
    { "agent", TR_PARAM_STRING, true, "the agent that decides each round: asked with the "
                                      "state, answers {action, member, task, result}" },
    { "members", TR_PARAM_LIST, true, "the actors it may assign work to" },
    { "prefix", TR_PARAM_STRING, false, "the scratchpad keys' prefix (default: the actor's "
                                        "name)" },
    { "max_rounds", TR_PARAM_INT, false, "decisions at most before the task fails "
                                         "(default 10)" },
    { "timeout", TR_PARAM_DURATION, false, "how long the agent gets for a decision and a "
                                           "member for an assignment (default 30s)" },
    { "scratch_timeout", TR_PARAM_DURATION, false, "how long a scratchpad call gets "
                                                   "(default 2s)" },
    { "queue", TR_PARAM_INT, false, "tasks waiting while one runs, at most (default 16)" },
    { "on_failure", TR_PARAM_STRING, false, "error (default): the asker gets the error; "
                                            "report: a map saying what happened" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_coord_free (s_coord_t *coord)
{
    if (!coord)
        return;
    free (coord->agent);
    tr__names_free (coord->members, coord->count);
    free (coord->prefix);
    free (coord);
}

//  True if text (len bytes) may start a scratchpad key: no spaces, no
//  control characters.
static bool
s_key_ok (const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) text [i] <= ' ' || text [i] == 0x7f)
            return false;
    return len > 0;
}

static int
s_coord_configure (s_coord_t *coord, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "error", "report", NULL };
    int on_failure = 0;
    coord->max_rounds = 10;
    coord->timeout_ms = 30000;
    coord->scratch_ms = 2000;
    coord->queue_max = 16;
    if (tr__cfg_int (cfg, "max_rounds", 1, 10000, &coord->max_rounds)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &coord->timeout_ms)
    ||  tr__cfg_duration (cfg, "scratch_timeout", 1, INT32_MAX, &coord->scratch_ms)
    ||  tr__cfg_int (cfg, "queue", 0, 100000, &coord->queue_max)
    ||  tr__cfg_choice (cfg, "on_failure", failures, &on_failure)
    ||  tr__cfg_name_in (cfg, NULL, "agent", "agent", &coord->agent)
    ||  tr__cfg_str (cfg, "prefix", &coord->prefix))
        return -1;
    coord->report = on_failure == 1;
    if (!coord->agent)
        return tr__cfg_bad (cfg, "'agent' is required: the agent that decides");
    if (coord->prefix && (strlen (coord->prefix) > S_PREFIX_MAX
                      ||  !s_key_ok (coord->prefix, strlen (coord->prefix))))
        return tr__cfg_bad_at (cfg, "prefix", "'prefix' must be 1 to %d bytes without spaces "
                               "or control characters", S_PREFIX_MAX);
    tr__cfg_enter (cfg, "members");
    if (tr__cfg_names (cfg, tr__cfg_get (cfg, NULL, "members"), "members", &coord->members,
                       &coord->count))
        return -1;
    tr__cfg_enter (cfg, "%s", "");
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_coord_check, "coordinator", s_coord_t, s_coord_configure, s_coord_free)

static int
s_coord_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_coord_t *coord = (s_coord_t *) calloc (1, sizeof *coord);
    int rc = tr__cfg_open (&cfg, "coordinator", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !coord)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_coord_configure (coord, &cfg);
    if (rc == 0 && !tr_node_opts (tr_actor_node (self))->broker)
        rc = tr__cfg_bad (&cfg, "needs the scratchpad, and this node has no broker (troupe run "
                          "has one unless --no-broker; from C, tr_node_opts_t.broker)");
    if (rc == 0 && !coord->prefix && !(coord->prefix = strdup (tr_actor_name (self))))
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_coord_free (coord);
        return -1;
    }
    tr__cfg_close (&cfg);
    coord->self = self;
    coord->node = tr_actor_node (self);
    //  Run ids start from the clock, so that the outcome of a call made
    //  by an earlier incarnation is not taken for one of this one's.
    coord->next_id = (uint64_t) tr__now_ns ();
    *state_p = coord;
    return 0;
}

//  --------------------------------------------------------------------------
//  Values

static bool
s_value_same (const tr__value_t *a, const uint8_t *data, size_t size)
{
    return a->size == size && size && memcmp (a->data, data, size) == 0;
}

//  --------------------------------------------------------------------------
//  Scratchpad calls
//
//  Each call's outcome comes back on the node's link thread, which tells
//  it to the coordinator as an ext value (type 'K': the run's id, the
//  slot, the result code, then the value read or, for a failure, the
//  key), like a timer's tick: no message from a user can look like it.

typedef struct {
    tr_node_t *node;
    uint64_t run;
    uint32_t slot;
    char actor [256];
    char key [];
} s_call_t;

static void
s_call_done (const tr_scratch_result_t *result, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    bool failed = result->rc != TR_OK && result->rc != TR_ENOTFOUND;
    const void *data = failed? (const void *) call->key
                     : result->rc == TR_OK? (const void *) result->data: NULL;
    size_t data_size = failed? strlen (call->key): result->rc == TR_OK? result->size: 0;
    size_t payload = 16 + data_size;
    uint8_t *body = (uint8_t *) malloc (6 + payload);
    if (body) {
        body [0] = 0xc9;                //  ext 32
        for (int i = 0; i < 4; i++)
            body [1 + i] = (uint8_t) (payload >> (24 - 8 * i));
        body [5] = 'K';
        for (int i = 0; i < 8; i++)
            body [6 + i] = (uint8_t) (call->run >> (56 - 8 * i));
        for (int i = 0; i < 4; i++)
            body [14 + i] = (uint8_t) (call->slot >> (24 - 8 * i));
        uint32_t rc = (uint32_t) result->rc;
        for (int i = 0; i < 4; i++)
            body [18 + i] = (uint8_t) (rc >> (24 - 8 * i));
        if (data_size)
            memcpy (body + 22, data, data_size);
        //  A coordinator that has stopped meanwhile makes this a dead letter.
        tr_tell (call->node, call->actor, body, 6 + payload, NULL);
    }
    free (body);
    free (call);
}

//  Reads an outcome told by s_call_done.
static bool
s_call_read (const tr_msg_t *msg, uint64_t *run, uint32_t *slot, int *rc,
             const uint8_t **data, size_t *size)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t n = tr_msg_size (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_from (msg) [0] != '\0'
    ||  n < 22 || body [0] != 0xc9 || body [5] != 'K')
        return false;
    uint64_t v = 0;
    uint32_t s = 0, r = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | body [6 + i];
    for (int i = 0; i < 4; i++) {
        s = (s << 8) | body [14 + i];
        r = (r << 8) | body [18 + i];
    }
    *run = v;
    *slot = s;
    *rc = (int) (int32_t) r;
    *data = body + 22;
    *size = n - 22;
    return true;
}

typedef enum { S_GET, S_PUT, S_DEL } s_op_t;

//  Starts a scratchpad call on PREFIX.SUFFIX for the run. Returns TR_OK
//  (the outcome will come) or the call's error.
static int
s_call (s_coord_t *coord, s_run_t *run, int op, const char *suffix, uint32_t slot,
        const void *value, size_t size)
{
    if (run->broken)
        return run->broken;
    size_t key_len = strlen (coord->prefix) + 1 + strlen (suffix);
    s_call_t *call = (s_call_t *) calloc (1, sizeof *call + key_len + 1);
    if (!call) {
        run->broken = TR_ENOMEM;
        snprintf (run->broken_reason, sizeof run->broken_reason, "out of memory");
        return TR_ENOMEM;
    }
    call->node = coord->node;
    call->run = run->id;
    call->slot = slot;
    snprintf (call->actor, sizeof call->actor, "%s", tr_actor_name (coord->self));
    snprintf (call->key, key_len + 1, "%s.%s", coord->prefix, suffix);
    //  The outcome may come (and free call) before the call returns.
    char *key = strdup (call->key);
    int ms = (int) coord->scratch_ms;
    int rc = !key? TR_ENOMEM
           : op == S_GET? tr_scratch_get_async (coord->node, key, ms, s_call_done, call)
           : op == S_PUT? tr_scratch_put_async (coord->node, key, value, size, 0, ms,
                                                s_call_done, call)
           : tr_scratch_del_async (coord->node, key, ms, s_call_done, call);
    if (rc != TR_OK) {
        run->broken = rc;
        snprintf (run->broken_reason, sizeof run->broken_reason, "the scratchpad call on "
                  "'%.1100s' failed: %s", key? key: suffix, tr_strerror (rc));
        free (call);
    }
    else
        run->pending++;
    free (key);
    return rc;
}

//  Writes PREFIX.SUFFIX (a packed buffer). Returns TR_OK or the error.
static int
s_put (s_coord_t *coord, s_run_t *run, const char *suffix, msgpack_sbuffer *buffer)
{
    if (!buffer->data)
        return TR_ENOMEM;
    return s_call (coord, run, S_PUT, suffix, S_WRITE, buffer->data, buffer->size);
}

static int
s_put_str (s_coord_t *coord, s_run_t *run, const char *suffix, const char *text)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    tr__pack_str (&pk, text);
    int rc = s_put (coord, run, suffix, &buffer);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

static int
s_put_value (s_coord_t *coord, s_run_t *run, const char *suffix, const tr__value_t *value)
{
    static const uint8_t nil = 0xc0;
    return value->size? s_call (coord, run, S_PUT, suffix, S_WRITE, value->data, value->size)
                      : s_call (coord, run, S_PUT, suffix, S_WRITE, &nil, 1);
}

//  PREFIX.log: the entries so far, as one list.
static int
s_put_log (s_coord_t *coord, s_run_t *run)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, run->nlog);
    if (run->log.size)
        msgpack_sbuffer_write (&buffer, run->log.data, run->log.size);
    int rc = s_put (coord, run, "log", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

//  PREFIX.progress.MEMBER from the member's assignment.
static int
s_put_progress (s_coord_t *coord, s_run_t *run, size_t m, int error)
{
    const s_work_t *work = &run->work [m];
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, error? 4: 3);
    tr__pack_str (&pk, "status");
    tr__pack_str (&pk, s_status_names [work->status]);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &work->task);
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, work->round);
    if (error) {
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (error));
    }
    char suffix [300];
    snprintf (suffix, sizeof suffix, "progress.%s", coord->members [m]);
    int rc = s_put (coord, run, suffix, &buffer);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

//  Adds an entry to the log: {round, event, member?, task?, from?, error?}.
static void
s_log_add (s_run_t *run, const char *event, const char *member, const tr__value_t *task,
           const char *from, const char *error)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, &run->log, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2 + (member != NULL) + (task != NULL) + (from != NULL)
                         + (error != NULL));
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "event");
    tr__pack_str (&pk, event);
    if (member) {
        tr__pack_str (&pk, "member");
        tr__pack_str (&pk, member);
    }
    if (task) {
        tr__pack_str (&pk, "task");
        tr__value_pack (&pk, task);
    }
    if (from) {
        tr__pack_str (&pk, "from");
        tr__pack_str (&pk, from);
    }
    if (error) {
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, error);
    }
    run->nlog++;
}

//  --------------------------------------------------------------------------
//  Tasks

static void
s_run_free (s_coord_t *coord, s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->work && i < coord->count; i++)
        tr__value_free (&run->work [i].task);
    for (size_t i = 0; run->seen && i < 2 + 2 * coord->count; i++)
        tr__value_free (&run->seen [i]);
    free (run->work);
    free (run->seen);
    msgpack_sbuffer_destroy (&run->log);
    tr__value_free (&run->answer);
    tr__value_free (&run->task);
    free (run->from);
    tr_msg_destroy (&run->ask);         //  unanswered: the asker gets TR_ENOREPLY
    free (run);
}

//  Ms an ask may take: the timeout, cut to the asker's deadline.
static int
s_ask_ms (const s_coord_t *coord, const s_run_t *run)
{
    int64_t ms = coord->timeout_ms;
    int64_t left = run->ask? tr_msg_remaining_ms (run->ask): -1;
    if (left >= 0 && left < ms)
        ms = left;
    return (int) ms;
}

static size_t
s_working (const s_coord_t *coord, const s_run_t *run)
{
    size_t n = 0;
    for (size_t i = 0; i < coord->count; i++)
        n += run->work [i].status == S_WORKING;
    return n;
}

//  Stops waiting for member m (its answer, if it comes, finds nothing).
static void
s_work_drop (s_coord_t *coord, s_run_t *run, size_t m, int status)
{
    s_work_t *work = &run->work [m];
    if (work->status == S_WORKING && work->wait) {
        tr_timer_cancel (coord->node, work->timer);
        work->wait = 0;
    }
    work->status = status;
    tr_actor_info_set (coord->self, "coordinator.working", (int64_t) s_working (coord, run));
}

static void
s_publish (s_coord_t *coord, const char *topic, msgpack_sbuffer *buffer)
{
    int rc = tr_event_publish (coord->node, topic, buffer->data, buffer->size, NULL);
    if (rc != TR_OK)
        tr_log (TR_LOG_WARN, "coordinator '%s': could not publish %s: %s",
                tr_actor_name (coord->self), topic, tr_strerror (rc));
}

//  The task is over (its last writes done, if any): the asker is
//  answered and the task freed; s_drive starts the next.
static void
s_end (s_coord_t *coord, s_run_t *run)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    const char *name = tr_actor_name (coord->self);
    if (run->wait)
        tr_timer_cancel (coord->node, run->timer);
    run->wait = 0;
    for (size_t i = 0; run->work && i < coord->count; i++)
        if (run->work [i].status == S_WORKING)
            s_work_drop (coord, run, i, S_ABANDONED);
    coord->run = NULL;
    if (run->stage == S_FINISH) {
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "coordinator");
        tr__pack_str (&pk, name);
        tr__pack_str (&pk, "rounds");
        msgpack_pack_int64 (&pk, run->round);
        s_publish (coord, "coordinator.finished", &buffer);
        tr_actor_info_add (coord->self, "coordinator.finished", 1);
        tr_log (TR_LOG_INFO, "coordinator '%s': finished in %lld round(s)", name,
                (long long) run->round);
        if (run->ask) {
            static const uint8_t nil = 0xc0;
            int rc = run->answer.size? tr_reply (run->ask, run->answer.data, run->answer.size)
                                     : tr_reply (run->ask, &nil, 1);
            if (rc != TR_OK)
                tr_reply_error (run->ask, rc);
        }
    }
    else {
        tr_log (TR_LOG_WARN, "coordinator '%s': %s from '%s' failed (%s): %s", name,
                run->ask? "an ask": "a tell", run->from, tr_errname (run->error), run->reason);
        msgpack_pack_map (&pk, 4);
        tr__pack_str (&pk, "coordinator");
        tr__pack_str (&pk, name);
        tr__pack_str (&pk, "rounds");
        msgpack_pack_int64 (&pk, run->round);
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (run->error));
        tr__pack_str (&pk, "reason");
        tr__pack_str (&pk, run->reason);
        s_publish (coord, "coordinator.failed", &buffer);
        tr_actor_info_add (coord->self, "coordinator.failed", 1);
        if (run->ask && coord->report) {
            //  The same map without the coordinator's name.
            msgpack_sbuffer_clear (&buffer);
            msgpack_pack_map (&pk, 3);
            tr__pack_str (&pk, "error");
            tr__pack_str (&pk, tr_errname (run->error));
            tr__pack_str (&pk, "reason");
            tr__pack_str (&pk, run->reason);
            tr__pack_str (&pk, "rounds");
            msgpack_pack_int64 (&pk, run->round);
            if (tr_reply (run->ask, buffer.data, buffer.size) != TR_OK)
                tr_reply_error (run->ask, run->error);
        }
        else
        if (run->ask)
            tr_reply_error (run->ask, run->error);
    }
    msgpack_sbuffer_destroy (&buffer);
    s_run_free (coord, run);
}

//  The task fails with error: the state says so (the progress of members
//  at work, status, error and log are written), then s_drive answers the
//  asker. The first failure is the one reported.
static void
s_fail (s_coord_t *coord, s_run_t *run, int error, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_fail (s_coord_t *coord, s_run_t *run, int error, const char *format, ...)
{
    if (run->stage == S_FAILING)
        return;
    run->stage = S_FAILING;
    run->error = error;
    va_list args;
    va_start (args, format);
    vsnprintf (run->reason, sizeof run->reason, format, args);
    va_end (args);
    if (run->wait)
        tr_timer_cancel (coord->node, run->timer);
    run->wait = 0;
    for (size_t i = 0; i < coord->count; i++)
        if (run->work [i].status == S_WORKING) {
            s_work_drop (coord, run, i, S_ABANDONED);
            s_put_progress (coord, run, i, TR_OK);
        }
    s_put_str (coord, run, "status", "failed");
    s_put_str (coord, run, "error", run->reason);
    s_put_log (coord, run);
}

//  Begins the next round, or fails the task past its bound or deadline.
static void
s_round (s_coord_t *coord, s_run_t *run)
{
    if (run->stage == S_FAILING || run->stage == S_FINISH)
        return;
    if (run->ask && tr_msg_remaining_ms (run->ask) == 0) {
        s_fail (coord, run, TR_ETIMEDOUT, "the asker's deadline passed after %lld "
                "round(s)", (long long) run->round);
        return;
    }
    if (run->round >= coord->max_rounds) {
        s_fail (coord, run, TR_ELIMIT, "no finish after %lld round(s) (max_rounds %lld)",
                (long long) run->round, (long long) coord->max_rounds);
        return;
    }
    run->round++;
    run->stage = S_READ;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_int64 (&pk, run->round);
    int rc = s_put (coord, run, "round", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    //  The state as the scratchpad holds it, after the writes before.
    char suffix [300];
    if (rc == TR_OK)
        rc = s_call (coord, run, S_GET, "task", 0, NULL, 0);
    if (rc == TR_OK)
        rc = s_call (coord, run, S_GET, "log", 1, NULL, 0);
    for (size_t i = 0; rc == TR_OK && i < coord->count; i++) {
        snprintf (suffix, sizeof suffix, "progress.%s", coord->members [i]);
        rc = s_call (coord, run, S_GET, suffix, (uint32_t) (2 + i), NULL, 0);
        snprintf (suffix, sizeof suffix, "result.%s", coord->members [i]);
        if (rc == TR_OK)
            rc = s_call (coord, run, S_GET, suffix, (uint32_t) (2 + coord->count + i), NULL, 0);
    }
    //  A call that could not be made has marked the run broken: s_drive
    //  ends it.
}

//  Asks the agent with the state read this round.
static void
s_decide (s_coord_t *coord, s_run_t *run)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 7);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->seen [0]);
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "max_rounds");
    msgpack_pack_int64 (&pk, coord->max_rounds);
    tr__pack_str (&pk, "members");
    msgpack_pack_array (&pk, (uint32_t) coord->count);
    for (size_t i = 0; i < coord->count; i++)
        tr__pack_str (&pk, coord->members [i]);
    for (int part = 0; part < 2; part++) {
        tr__pack_str (&pk, part? "results": "progress");
        msgpack_pack_map (&pk, (uint32_t) coord->count);
        for (size_t i = 0; i < coord->count; i++) {
            tr__pack_str (&pk, coord->members [i]);
            tr__value_pack (&pk, &run->seen [2 + (size_t) part * coord->count + i]);
        }
    }
    tr__pack_str (&pk, "log");
    if (run->seen [1].size)
        tr__value_pack (&pk, &run->seen [1]);
    else
        msgpack_pack_array (&pk, 0);
    run->stage = S_DECIDE;
    int ms = s_ask_ms (coord, run);
    int rc = !buffer.data? TR_ENOMEM: ms <= 0? TR_ETIMEDOUT
           : tr__request_timed (coord->self, coord->agent, buffer.data, buffer.size, ms,
                                &run->wait, &run->timer);
    msgpack_sbuffer_destroy (&buffer);
    if (rc != TR_OK)
        s_fail (coord, run, rc, "agent '%s' could not be asked in round %lld: %s",
                coord->agent, (long long) run->round, tr_strerror (rc));
}

//  A scratchpad outcome for the task in hand.
static void
s_call_answered (s_coord_t *coord, s_run_t *run, uint32_t slot, int rc, const uint8_t *data,
                 size_t size)
{
    run->pending--;
    if (rc != TR_OK && rc != TR_ENOTFOUND) {
        if (!run->broken) {
            run->broken = rc;
            snprintf (run->broken_reason, sizeof run->broken_reason, "the scratchpad call on "
                      "'%.*s' failed: %s", (int) (size > 1100? 1100: size), (const char *) data,
                      tr_strerror (rc));
        }
        return;
    }
    if (slot != S_WRITE && slot < 2 + 2 * coord->count
    &&  tr__value_set (&run->seen [slot], rc == TR_OK? data: NULL, rc == TR_OK? size: 0))
        s_fail (coord, run, TR_ENOMEM, "out of memory");
}

//  Gives member m the task (assign or reassign): writes its progress and
//  the log, then asks it.
static void
s_assign (s_coord_t *coord, s_run_t *run, size_t m, const uint8_t *task, size_t task_size)
{
    s_work_t *work = &run->work [m];
    if (tr__value_set (&work->task, task, task_size)) {
        s_fail (coord, run, TR_ENOMEM, "out of memory");
        return;
    }
    work->round = run->round;
    int ms = s_ask_ms (coord, run);
    int rc = ms <= 0? TR_ETIMEDOUT
           : tr__request_timed (coord->self, coord->members [m], task, task_size, ms,
                                &work->wait, &work->timer);
    if (rc == TR_OK) {
        work->status = S_WORKING;
        tr_actor_info_set (coord->self, "coordinator.working", (int64_t) s_working (coord, run));
        s_put_progress (coord, run, m, TR_OK);
        return;
    }
    //  Could not be sent: it failed at once, which the next round sees.
    work->status = S_FAILED;
    s_log_add (run, "failed", coord->members [m], NULL, NULL, tr_errname (rc));
    s_put_progress (coord, run, m, rc);
}

//  The member called name (len bytes), or -1.
static ssize_t
s_member_find (const s_coord_t *coord, const char *name, size_t len)
{
    for (size_t i = 0; i < coord->count; i++)
        if (strlen (coord->members [i]) == len && memcmp (coord->members [i], name, len) == 0)
            return (ssize_t) i;
    return -1;
}

//  A string field of a decision, trimmed; false if absent, not a string,
//  or blank (an llm agent fills every output, with "" for those it does
//  not mean).
static bool
s_field_str (const tr_msg_t *reply, const char *field, const char **text, size_t *len)
{
    const uint8_t *value;
    size_t size;
    tr__mp_t mp;
    uint32_t n;
    if (tr__body_field (tr_msg_body (reply), tr_msg_size (reply), field, &value, &size))
        return false;
    tr__mp_init (&mp, value, size);
    if (tr__mp_str (&mp, text, &n))
        return false;
    while (n && isspace ((unsigned char) (*text) [0])) {
        (*text)++;
        n--;
    }
    while (n && isspace ((unsigned char) (*text) [n - 1]))
        n--;
    *len = n;
    return n > 0;
}

//  A value field of a decision: false if absent, nil, or an empty string.
static bool
s_field_value (const tr_msg_t *reply, const char *field, const uint8_t **value, size_t *size)
{
    if (tr__body_field (tr_msg_body (reply), tr_msg_size (reply), field, value, size))
        return false;
    return !(*size == 1 && ((*value) [0] == 0xc0 || (*value) [0] == 0xa0));
}

typedef enum { S_ASSIGN, S_REVIEW_ACTION, S_REASSIGN, S_FINISH_ACTION, S_ACTIONS } s_action_t;
static const char *const s_actions [] = { "assign", "review", "reassign", "finish" };

//  Carries out the agent's decision. Returns NULL, or why it cannot be
//  carried out (written to why).
static const char *
s_carry_out (s_coord_t *coord, s_run_t *run, const tr_msg_t *reply, char *why, size_t why_size)
{
    const char *text, *name = NULL, *from_name = NULL;
    size_t len, name_len = 0, from_len = 0;
    int action = S_ACTIONS;
    if (s_field_str (reply, "action", &text, &len))
        for (int i = 0; i < S_ACTIONS; i++)
            if (strlen (s_actions [i]) == len && strncasecmp (s_actions [i], text, len) == 0)
                action = i;
    if (action == S_ACTIONS) {
        snprintf (why, why_size, "the decision's 'action' is not one of assign, review, "
                  "reassign, finish");
        return why;
    }
    const uint8_t *task = NULL;
    size_t task_size = 0;
    bool has_task = s_field_value (reply, "task", &task, &task_size);
    bool has_member = s_field_str (reply, "member", &name, &name_len);
    bool has_from = s_field_str (reply, "from", &from_name, &from_len);
    ssize_t m = has_member? s_member_find (coord, name, name_len): -1;
    ssize_t from = has_from? s_member_find (coord, from_name, from_len): -1;
    if (action == S_FINISH_ACTION) {
        const uint8_t *result = NULL;
        size_t result_size = 0;
        tr__body_field (tr_msg_body (reply), tr_msg_size (reply), "result", &result,
                        &result_size);
        if (tr__value_set (&run->answer, result, result? result_size: 0)) {
            snprintf (why, why_size, "out of memory");
            return why;
        }
        s_log_add (run, "finish", NULL, NULL, NULL, NULL);
        run->stage = S_FINISH;
        for (size_t i = 0; i < coord->count; i++)
            if (run->work [i].status == S_WORKING) {
                s_work_drop (coord, run, i, S_ABANDONED);
                s_put_progress (coord, run, i, TR_OK);
            }
        s_put_value (coord, run, "answer", &run->answer);
        s_put_str (coord, run, "status", "finished");
        s_put_log (coord, run);
        return NULL;
    }
    if (action == S_REVIEW_ACTION) {
        bool busy = s_working (coord, run) > 0;
        s_log_add (run, "review", NULL, NULL, NULL, busy? NULL: "nothing in progress");
        s_put_log (coord, run);
        if (busy)
            run->stage = S_REVIEW;
        else
            s_round (coord, run);
        return NULL;
    }
    if (!has_member || m < 0) {
        snprintf (why, why_size, "%s needs 'member', one of the members; %s%.*s%s",
                  s_actions [action], has_member? "not '": "none was given",
                  (int) (name_len > 100? 100: name_len), has_member? name: "",
                  has_member? "'": "");
        return why;
    }
    if (has_from && from < 0) {
        snprintf (why, why_size, "reassign's 'from' is not a member: '%.*s'",
                  (int) (from_len > 100? 100: from_len), from_name);
        return why;
    }
    if (action == S_REASSIGN && !has_task && from >= 0 && run->work [from].task.size) {
        task = run->work [from].task.data;
        task_size = run->work [from].task.size;
        has_task = true;
    }
    if (!has_task) {
        snprintf (why, why_size, "%s needs a 'task'%s", s_actions [action],
                  action == S_REASSIGN? " (or 'from', a member that had one)": "");
        return why;
    }
    if (run->work [m].status == S_WORKING && !(action == S_REASSIGN && from == m)) {
        snprintf (why, why_size, "member '%s' is still at work on its assignment of round %lld",
                  coord->members [m], (long long) run->work [m].round);
        return why;
    }
    //  A copy: the task may point into a member's assignment about to go.
    tr__value_t copy = { NULL, 0 };
    if (tr__value_set (&copy, task, task_size)) {
        snprintf (why, why_size, "out of memory");
        return why;
    }
    const char *relieved = NULL;
    if (action == S_REASSIGN)
        for (size_t i = 0; i < coord->count; i++) {
            s_work_t *work = &run->work [i];
            bool had = from >= 0? (ssize_t) i == from
                     : (ssize_t) i != m && (work->status == S_WORKING || work->status == S_FAILED)
                       && s_value_same (&work->task, copy.data, copy.size);
            if (!had)
                continue;
            s_work_drop (coord, run, i, S_REASSIGNED);
            s_put_progress (coord, run, i, TR_OK);
            relieved = relieved? relieved: coord->members [i];
        }
    s_log_add (run, s_actions [action], coord->members [m], &copy, relieved, NULL);
    s_assign (coord, run, (size_t) m, copy.data, copy.size);
    tr__value_free (&copy);
    if (run->stage == S_FAILING)
        return NULL;
    s_put_log (coord, run);
    s_round (coord, run);
    return NULL;
}

//  coordinator.round: {coordinator, round, action, member?}.
static void
s_publish_round (s_coord_t *coord, s_run_t *run, const tr_msg_t *reply)
{
    const char *action = "invalid", *member = NULL;
    size_t action_len = 7, member_len = 0;
    s_field_str (reply, "action", &action, &action_len);
    bool has_member = s_field_str (reply, "member", &member, &member_len);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, has_member? 4: 3);
    tr__pack_str (&pk, "coordinator");
    tr__pack_str (&pk, tr_actor_name (coord->self));
    tr__pack_str (&pk, "round");
    msgpack_pack_int64 (&pk, run->round);
    tr__pack_str (&pk, "action");
    msgpack_pack_str_with_body (&pk, action, action_len);
    if (has_member) {
        tr__pack_str (&pk, "member");
        msgpack_pack_str_with_body (&pk, member, member_len);
    }
    s_publish (coord, "coordinator.round", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    tr_log (TR_LOG_INFO, "coordinator '%s': round %lld: %.*s%s%.*s",
            tr_actor_name (coord->self), (long long) run->round, (int) action_len, action,
            has_member? " ": "", (int) member_len, has_member? member: "");
}

//  The agent answered (or failed) for this round.
static void
s_decided (s_coord_t *coord, s_run_t *run, const tr_msg_t *reply, int error)
{
    tr_timer_cancel (coord->node, run->timer);
    run->wait = 0;
    if (error) {
        s_fail (coord, run, error, "agent '%s' failed in round %lld: %s", coord->agent,
                (long long) run->round, tr_strerror (error));
        return;
    }
    tr_actor_info_add (coord->self, "coordinator.rounds", 1);
    s_publish_round (coord, run, reply);
    char why [400];
    if (s_carry_out (coord, run, reply, why, sizeof why)) {
        tr_log (TR_LOG_INFO, "coordinator '%s': round %lld: %s", tr_actor_name (coord->self),
                (long long) run->round, why);
        s_log_add (run, "invalid", NULL, NULL, NULL, why);
        s_put_log (coord, run);
        s_round (coord, run);
    }
}

//  Member m answered (or failed): its result and progress are written.
static void
s_worked (s_coord_t *coord, s_run_t *run, size_t m, const tr_msg_t *reply, int error)
{
    s_work_t *work = &run->work [m];
    tr_timer_cancel (coord->node, work->timer);
    work->wait = 0;
    work->status = error? S_FAILED: S_DONE;
    tr_actor_info_set (coord->self, "coordinator.working", (int64_t) s_working (coord, run));
    if (!error) {
        static const uint8_t nil = 0xc0;
        char suffix [300];
        snprintf (suffix, sizeof suffix, "result.%s", coord->members [m]);
        size_t size = tr_msg_size (reply);
        s_call (coord, run, S_PUT, suffix, S_WRITE, size? tr_msg_body (reply): &nil,
                size? size: 1);
    }
    s_put_progress (coord, run, m, error);
    s_log_add (run, error? "failed": "done", coord->members [m], NULL, NULL,
               error? tr_errname (error): NULL);
    s_put_log (coord, run);
    if (run->stage == S_REVIEW)
        s_round (coord, run);
}

//  Starts a task: writes its state afresh; s_drive starts the first
//  round once that is done.
static void
s_begin (s_coord_t *coord, s_run_t *run)
{
    coord->run = run;
    run->id = ++coord->next_id;
    run->stage = S_PREPARE;
    run->started_ns = tr__now_ns ();
    run->work = (s_work_t *) calloc (coord->count, sizeof *run->work);
    run->seen = (tr__value_t *) calloc (2 + 2 * coord->count, sizeof *run->seen);
    if (!run->work || !run->seen) {
        run->broken = TR_ENOMEM;
        snprintf (run->broken_reason, sizeof run->broken_reason, "out of memory");
        return;
    }
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_int (&pk, 0);
    //  A call that cannot be made marks the run broken, and the calls
    //  after it are not made.
    s_put_str (coord, run, "status", "running");
    s_put_value (coord, run, "task", &run->task);
    s_put (coord, run, "round", &buffer);
    s_put_log (coord, run);
    s_call (coord, run, S_DEL, "answer", S_WRITE, NULL, 0);
    s_call (coord, run, S_DEL, "error", S_WRITE, NULL, 0);
    char suffix [300];
    for (size_t i = 0; i < coord->count; i++) {
        snprintf (suffix, sizeof suffix, "progress.%s", coord->members [i]);
        s_call (coord, run, S_DEL, suffix, S_WRITE, NULL, 0);
        snprintf (suffix, sizeof suffix, "result.%s", coord->members [i]);
        s_call (coord, run, S_DEL, suffix, S_WRITE, NULL, 0);
    }
    msgpack_sbuffer_destroy (&buffer);
}

//  Moves the tasks on after anything happened: ends a task whose
//  scratchpad broke, goes on once a task's calls have all come back (its
//  first round, the agent's ask, its answer), and starts the next task
//  waiting. Each turn of the loop either waits (returns) or moves a task
//  on a stage.
static void
s_drive (s_coord_t *coord)
{
    for (;;) {
        s_run_t *run = coord->run;
        if (!run) {
            run = coord->queue;
            if (!run)
                return;
            coord->queue = run->next;
            if (!coord->queue)
                coord->queue_tail = NULL;
            run->next = NULL;
            coord->queued--;
            tr_actor_info_set (coord->self, "coordinator.queued", (int64_t) coord->queued);
            if (run->ask && tr_msg_remaining_ms (run->ask) == 0) {
                //  Its asker gave up while it waited.
                tr_reply_error (run->ask, TR_ETIMEDOUT);
                s_run_free (coord, run);
            }
            else
                s_begin (coord, run);
            continue;
        }
        if (run->broken) {
            //  The state cannot be kept: the task ends without more
            //  writes. A failure found before keeps its own reason.
            if (run->stage != S_FAILING) {
                run->error = run->broken;
                snprintf (run->reason, sizeof run->reason, "%s", run->broken_reason);
            }
            run->stage = S_FAILING;
            s_end (coord, run);
            continue;
        }
        if (run->pending)
            return;
        switch (run->stage) {
            case S_PREPARE:
                s_round (coord, run);
                break;
            case S_READ:
                s_decide (coord, run);
                break;
            case S_FINISH:
            case S_FAILING:
                s_end (coord, run);
                break;
            default:
                return;                 //  waiting for the agent or a member
        }
    }
}

//  A new task: it waits its turn (s_drive starts it).
static int
s_task_new (s_coord_t *coord, const tr_msg_t *msg)
{
    bool ask = tr_msg_kind (msg) == TR_KIND_ASK;
    if (tr_msg_size (msg) == 0) {
        tr_log (TR_LOG_WARN, "coordinator '%s': %s from '%s' has no task",
                tr_actor_name (coord->self), ask? "an ask": "a tell", tr_msg_from (msg));
        return ask? tr_reply_error (msg, TR_EINVAL): 0;
    }
    if (coord->run && coord->queued >= (size_t) coord->queue_max) {
        tr_log (TR_LOG_WARN, "coordinator '%s': %s from '%s' refused: %zu task(s) wait already",
                tr_actor_name (coord->self), ask? "an ask": "a tell", tr_msg_from (msg),
                coord->queued);
        return ask? tr_reply_error (msg, TR_EFULL): 0;
    }
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run) {
        msgpack_sbuffer_init (&run->log);
        run->from = strdup (tr_msg_from (msg));
    }
    if (!run || !run->from || tr__value_set (&run->task, tr_msg_body (msg), tr_msg_size (msg))) {
        s_run_free (coord, run);
        return ask? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    if (ask)
        run->ask = tr_defer (msg);
    run->stage = S_QUEUED;
    if (coord->queue_tail)
        coord->queue_tail->next = run;
    else
        coord->queue = run;
    coord->queue_tail = run;
    coord->queued++;
    tr_actor_info_set (coord->self, "coordinator.queued", (int64_t) coord->queued);
    return 0;
}

static int
s_coord_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_coord_t *coord = (s_coord_t *) state;
    s_run_t *run = coord->run;
    uint64_t id;
    uint32_t slot;
    int rc;
    const uint8_t *data;
    size_t size;
    bool answer = tr_msg_kind (msg) == TR_KIND_REPLY || tr_msg_kind (msg) == TR_KIND_ERROR;
    bool tick = !answer && tr__tick_read (msg, &id);
    if (answer || tick) {
        //  The agent's decision, a member's answer, or a timer; anything
        //  else (late, or for a task that ended) finds nothing.
        if (answer)
            id = tr_msg_corr (msg);
        int error = tick? TR_ETIMEDOUT: tr_msg_kind (msg) == TR_KIND_ERROR?
                    tr_msg_error (msg): TR_OK;
        if (!run || id == 0)
            return 0;
        if (run->wait == id)
            s_decided (coord, run, tick? NULL: msg, error);
        else
            for (size_t i = 0; i < coord->count; i++)
                if (run->work [i].wait == id) {
                    s_worked (coord, run, i, tick? NULL: msg, error);
                    break;
                }
        s_drive (coord);
        return 0;
    }
    if (s_call_read (msg, &id, &slot, &rc, &data, &size)) {
        if (run && run->id == id)
            s_call_answered (coord, run, slot, rc, data, size);
        s_drive (coord);
        return 0;
    }
    rc = s_task_new (coord, msg);
    s_drive (coord);
    return rc;
}

//  The task in hand and those waiting are abandoned: their asks are
//  answered TR_ENOREPLY when the deferred messages are destroyed;
//  scratchpad outcomes still to come become dead letters.
static void
s_coord_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_coord_t *coord = (s_coord_t *) state;
    if (coord->run || coord->queue)
        tr_log (TR_LOG_WARN, "coordinator '%s': stopping with %zu task(s) unfinished",
                tr_actor_name (self), coord->queued + (coord->run != NULL));
    if (coord->run) {
        s_run_t *run = coord->run;
        if (run->wait)
            tr_timer_cancel (coord->node, run->timer);
        for (size_t i = 0; run->work && i < coord->count; i++)
            if (run->work [i].wait)
                tr_timer_cancel (coord->node, run->work [i].timer);
        s_run_free (coord, run);
    }
    while (coord->queue) {
        s_run_t *run = coord->queue;
        coord->queue = run->next;
        s_run_free (coord, run);
    }
    s_coord_free (coord);
}

const tr_actor_type_t tr__coordinator_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "coordinator",
    .summary = "an agent reads the task's state in the scratchpad and decides each round "
               "(assign, review, reassign, finish) until it finishes (the supervisor pattern)",
    .behaviour = { s_coord_init, s_coord_handle, s_coord_terminate },
    .params = s_coord_params,
    .check = s_coord_check,
};
