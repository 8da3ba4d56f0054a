/*  tr_chain.c - the chain: steps in order, gates, and compensation (a saga).

    A chain asks its steps one after another: the message it got goes to
    the first step, each step's answer goes to the next, and the last
    step's answer is the chain's answer. After any step a gate may check
    the step's answer:
        gate: {actor: NAME}          NAME is asked with the answer and says
                                     true or false (with `output: FIELD`,
                                     the boolean under FIELD of a map
                                     answer: an llm agent's signature)
        gate: {match: TEXT} / {regex: RE} (and `field: NAME`)
                                     the answer's text must match
    A step that fails (answers an error, times out, cannot be reached) or
    whose gate says no stops the chain. Then the steps already done run
    their compensations in reverse order, each `compensate: ACTOR` asked
    with a map {step: NAME, input: VALUE, output: VALUE} of what the step
    was given and answered. A step whose gate said no had done its work,
    so it is compensated too; a step that failed had not, so it is not.
    Compensations run to the end even if the asker has stopped waiting;
    one that fails is logged, and the others still run.

    The asker then gets, with `on_failure: error` (the default), an
    error: the failed step's error, or TR_EOUTPUT when a gate said no;
    with `on_failure: report`, an answer that is a map: {failed: STEP,
    index: N (from 1), error: "TR_..." , compensated: true|false,
    compensations: [{step, error?}...]}. Either way the failure is logged
    and published on the event bus as `chain.failed` with the same map
    (plus `chain`: the chain's name).

    The chain never waits on its thread: each step, gate and compensation
    is asked with tr_request and a timer, so many runs are in flight at
    once (chain.inflight).
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>

typedef enum { S_GATE_NONE, S_GATE_ACTOR, S_GATE_TEXT } s_gate_kind_t;

typedef struct {
    char *actor;
    char *compensate;           //  or NULL
    int gate;                   //  s_gate_kind_t
    char *gate_actor;
    char *gate_output;          //  the field of a map answer, or NULL
    tr__text_rule_t gate_text;
} s_step_t;

typedef enum { S_STEP, S_GATE, S_COMPENSATE } s_stage_t;

//  A value: msgpack bytes (malloc'd), possibly empty.
typedef struct {
    uint8_t *data;
    size_t size;
} s_value_t;

typedef struct s_run_s s_run_t;
struct s_run_s {
    s_run_t *next;
    tr_msg_t *ask;              //  deferred, or NULL for a tell
    char *from;                 //  who sent it, for the log
    s_value_t *values;          //  values [0] the input, [i + 1] step i's answer
    size_t step;                //  the step in hand
    int stage;
    uint64_t wait;              //  the request's id
    uint64_t timer;
    //  After a failure:
    int error;                  //  why the chain stopped
    size_t failed;              //  the step that failed
    size_t comp;                //  steps still to compensate: comp - 1 is next
    bool compensated;           //  every compensation so far succeeded
    int *comp_errors;           //  per step: TR_OK, or its compensation's error
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    s_step_t *steps;
    size_t count;
    int64_t timeout_ms;
    bool report;                //  on_failure: report
    s_run_t *runs;
    size_t inflight;
} s_chain_t;

static const tr_param_spec_t s_chain_params [] = {
    { "steps", TR_PARAM_LIST, true, "the steps in order: actor names, or maps "
                                    "{actor, gate, compensate}" },
    { "timeout", TR_PARAM_DURATION, false, "how long each step, gate and compensation gets "
                                           "(default 5s)" },
    { "on_failure", TR_PARAM_STRING, false, "error (default): the asker gets the step's "
                                            "error; report: a map saying what happened" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_chain_free (s_chain_t *chain)
{
    if (!chain)
        return;
    for (size_t i = 0; i < chain->count; i++) {
        s_step_t *step = &chain->steps [i];
        free (step->actor);
        free (step->compensate);
        free (step->gate_actor);
        free (step->gate_output);
        tr__text_rule_free (&step->gate_text);
    }
    free (chain->steps);
    free (chain);
}

static int
s_gate_parse (tr__cfg_t *cfg, const msgpack_object *o, const char *where, s_step_t *step)
{
    static const char *const keys [] = { "actor", "output", "match", "regex", "field", NULL };
    char what [128];
    snprintf (what, sizeof what, "%s 'gate'", where);
    tr__cfg_enter_sub (cfg, "gate");
    if (tr__cfg_keys (cfg, o, what, keys))
        return -1;
    int kinds = (tr__cfg_get (cfg, o, "actor") != NULL) + (tr__cfg_get (cfg, o, "match") != NULL)
              + (tr__cfg_get (cfg, o, "regex") != NULL);
    if (kinds != 1)
        return tr__cfg_bad (cfg, "%s needs exactly one of actor, match, regex", what);
    if (!tr__cfg_get (cfg, o, "actor")) {
        if (tr__cfg_get (cfg, o, "output"))
            return tr__cfg_bad_at (cfg, "output", "%s: 'output' is only for a gate actor", what);
        step->gate = S_GATE_TEXT;
        return tr__text_rule_parse (cfg, o, what, &step->gate_text);
    }
    if (tr__cfg_get (cfg, o, "field"))
        return tr__cfg_bad_at (cfg, "field", "%s: 'field' is only for match and regex (a gate actor "
                            "gets the whole answer)", what);
    step->gate = S_GATE_ACTOR;
    char sub [160];
    snprintf (sub, sizeof sub, "%s 'actor'", what);
    if (tr__cfg_name_in (cfg, o, "actor", sub, &step->gate_actor))
        return -1;
    snprintf (sub, sizeof sub, "%s 'output'", what);
    return tr__cfg_str_in (cfg, o, "output", sub, &step->gate_output);
}

//  One item of `steps`: a name, or {actor, gate, compensate}.
static int
s_step_parse (tr__cfg_t *cfg, const msgpack_object *o, size_t index, s_step_t *step)
{
    static const char *const keys [] = { "actor", "gate", "compensate", NULL };
    char where [48], what [96];
    snprintf (where, sizeof where, "steps item %zu", index + 1);
    tr__cfg_enter (cfg, "steps.%zu", index + 1);
    if (o->type == MSGPACK_OBJECT_STR) {
        //  A bare name: read it as the map {actor: NAME}.
        msgpack_object_kv kv = { .key = { .type = MSGPACK_OBJECT_STR,
                                          .via.str = { .size = 5, .ptr = "actor" } },
                                 .val = *o };
        msgpack_object map = { .type = MSGPACK_OBJECT_MAP, .via.map = { .size = 1, .ptr = &kv } };
        return tr__cfg_name_in (cfg, &map, "actor", where, &step->actor);
    }
    if (o->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "%s must be an actor name or a mapping, not %s", where,
                            tr__cfg_kind (o));
    if (tr__cfg_keys (cfg, o, where, keys))
        return -1;
    snprintf (what, sizeof what, "%s 'actor'", where);
    if (tr__cfg_name_in (cfg, o, "actor", what, &step->actor))
        return -1;
    if (!step->actor)
        return tr__cfg_bad (cfg, "%s needs 'actor', the step's actor", where);
    snprintf (what, sizeof what, "%s 'compensate'", where);
    if (tr__cfg_name_in (cfg, o, "compensate", what, &step->compensate))
        return -1;
    const msgpack_object *gate = tr__cfg_get (cfg, o, "gate");
    return gate? s_gate_parse (cfg, gate, where, step): 0;
}

static int
s_chain_configure (s_chain_t *chain, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "error", "report", NULL };
    int on_failure = 0;
    chain->timeout_ms = 5000;
    if (tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &chain->timeout_ms)
    ||  tr__cfg_choice (cfg, "on_failure", failures, &on_failure))
        return -1;
    chain->report = on_failure == 1;
    const msgpack_object *steps = tr__cfg_get (cfg, NULL, "steps");
    if (!steps || steps->type != MSGPACK_OBJECT_ARRAY || steps->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "steps", "'steps' must be a list of at least one step");
    chain->steps = (s_step_t *) calloc (steps->via.array.size, sizeof *chain->steps);
    if (!chain->steps)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < steps->via.array.size; i++) {
        chain->count = i + 1;           //  so that s_chain_free frees this one too
        if (s_step_parse (cfg, &steps->via.array.ptr [i], i, &chain->steps [i]))
            return -1;
    }
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_chain_check, "chain", s_chain_t, s_chain_configure, s_chain_free)

static int
s_chain_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_chain_t *chain = (s_chain_t *) calloc (1, sizeof *chain);
    int rc = tr__cfg_open (&cfg, "chain", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !chain)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_chain_configure (chain, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_chain_free (chain);
        return -1;
    }
    tr__cfg_close (&cfg);
    chain->self = self;
    chain->node = tr_actor_node (self);
    *state_p = chain;
    return 0;
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run_free (s_chain_t *chain, s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->values && i <= chain->count; i++)
        free (run->values [i].data);
    free (run->values);
    free (run->comp_errors);
    free (run->from);
    tr_msg_destroy (&run->ask);         //  unanswered: the asker gets TR_ENOREPLY
    free (run);
}

static int
s_value_set (s_value_t *value, const void *data, size_t size)
{
    free (value->data);
    value->data = NULL;
    value->size = 0;
    if (size == 0)
        return 0;
    value->data = (uint8_t *) malloc (size);
    if (!value->data)
        return -1;
    memcpy (value->data, data, size);
    value->size = size;
    return 0;
}

//  Takes a finished run off the list (the asker is answered after).
static void
s_run_unlink (s_chain_t *chain, s_run_t *run)
{
    for (s_run_t **p = &chain->runs; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            break;
        }
    chain->inflight--;
    tr_actor_info_set (chain->self, "chain.inflight", (int64_t) chain->inflight);
}

//  Ms a step, gate or compensation may take: the chain's timeout, cut to
//  the ask's deadline while the chain still works for the asker.
//  Compensations are not cut: they run to the end for the system's sake.
static int
s_step_ms (const s_chain_t *chain, const s_run_t *run)
{
    int64_t ms = chain->timeout_ms;
    int64_t left = run->ask && run->stage != S_COMPENSATE? tr_msg_remaining_ms (run->ask): -1;
    if (left >= 0 && left < ms)
        ms = left;
    return (int) ms;
}

//  The failure, as a map: {failed, index, error, compensated,
//  compensations: [{step, error?}]}, with `chain` first when with_name.
static void
s_pack_failure (s_chain_t *chain, s_run_t *run, msgpack_packer *pk, bool with_name)
{
    const char *failed = chain->steps [run->failed].actor;
    const char *error = tr_errname (run->error);
    size_t comps = 0;
    for (size_t i = 0; i < chain->count; i++)
        comps += run->comp_errors [i] != 1;
    msgpack_pack_map (pk, with_name? 6: 5);
    if (with_name) {
        msgpack_pack_str_with_body (pk, "chain", 5);
        msgpack_pack_str_with_body (pk, tr_actor_name (chain->self),
                                    strlen (tr_actor_name (chain->self)));
    }
    msgpack_pack_str_with_body (pk, "failed", 6);
    msgpack_pack_str_with_body (pk, failed, strlen (failed));
    msgpack_pack_str_with_body (pk, "index", 5);
    msgpack_pack_uint64 (pk, run->failed + 1);
    msgpack_pack_str_with_body (pk, "error", 5);
    msgpack_pack_str_with_body (pk, error, strlen (error));
    msgpack_pack_str_with_body (pk, "compensated", 11);
    if (run->compensated)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
    //  The compensations in the order they ran (reverse step order).
    msgpack_pack_str_with_body (pk, "compensations", 13);
    msgpack_pack_array (pk, (uint32_t) comps);
    for (size_t i = chain->count; i-- > 0; ) {
        if (run->comp_errors [i] == 1)
            continue;
        const char *step = chain->steps [i].actor;
        msgpack_pack_map (pk, run->comp_errors [i]? 2: 1);
        msgpack_pack_str_with_body (pk, "step", 4);
        msgpack_pack_str_with_body (pk, step, strlen (step));
        if (run->comp_errors [i]) {
            const char *e = tr_errname (run->comp_errors [i]);
            msgpack_pack_str_with_body (pk, "error", 5);
            msgpack_pack_str_with_body (pk, e, strlen (e));
        }
    }
}

//  Ends a failed run once its compensations are done: logged, published
//  as chain.failed, and answered.
static void
s_run_failed (s_chain_t *chain, s_run_t *run)
{
    bool gated = run->error == TR_EOUTPUT && chain->steps [run->failed].gate != S_GATE_NONE;
    tr_log (TR_LOG_WARN, "chain '%s': step %zu '%s' %s%s%s for %s from '%s'; "
            "compensation %s", tr_actor_name (chain->self), run->failed + 1,
            chain->steps [run->failed].actor, gated? "did not pass its gate": "failed (",
            gated? "": tr_strerror (run->error), gated? "": ")",
            run->ask? "an ask": "a tell", run->ask? tr_msg_from (run->ask): run->from,
            run->compensated? "succeeded": "FAILED");
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_pack_failure (chain, run, &pk, true);
    tr_event_publish (chain->node, "chain.failed", buffer.data, buffer.size, NULL);
    tr_actor_info_add (chain->self, "chain.failed", 1);
    if (!run->compensated)
        tr_actor_info_add (chain->self, "chain.uncompensated", 1);
    s_run_unlink (chain, run);
    if (run->ask && chain->report) {
        msgpack_sbuffer_clear (&buffer);
        s_pack_failure (chain, run, &pk, false);
        if (tr_reply (run->ask, buffer.data, buffer.size) != TR_OK)
            tr_reply_error (run->ask, run->error);
    }
    else
    if (run->ask)
        tr_reply_error (run->ask, run->error);
    msgpack_sbuffer_destroy (&buffer);
    s_run_free (chain, run);
}

//  The compensation's payload: {step, input, output}.
static void
s_pack_compensation (s_chain_t *chain, s_run_t *run, size_t i, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "step", 4);
    msgpack_pack_str_with_body (&pk, chain->steps [i].actor, strlen (chain->steps [i].actor));
    for (int k = 0; k < 2; k++) {
        const s_value_t *v = &run->values [i + (size_t) k];
        if (k == 0)
            msgpack_pack_str_with_body (&pk, "input", 5);
        else
            msgpack_pack_str_with_body (&pk, "output", 6);
        if (v->size)
            msgpack_sbuffer_write (buffer, (const char *) v->data, v->size);
        else
            msgpack_pack_nil (&pk);
    }
}

//  Asks the next compensation (reverse order), or ends the run when none
//  is left. Compensations that cannot be sent are failures, logged, and
//  the next one still runs.
static void
s_compensate_next (s_chain_t *chain, s_run_t *run)
{
    run->stage = S_COMPENSATE;
    while (run->comp > 0) {
        size_t i = --run->comp;
        const char *actor = chain->steps [i].compensate;
        if (!actor)
            continue;
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_pack_compensation (chain, run, i, &buffer);
        run->step = i;
        int rc = tr__request_timed (chain->self, actor, buffer.data, buffer.size,
                                    s_step_ms (chain, run), &run->wait, &run->timer);
        msgpack_sbuffer_destroy (&buffer);
        if (rc == TR_OK)
            return;
        tr_log (TR_LOG_WARN, "chain '%s': compensation '%s' of step %zu: %s",
                tr_actor_name (chain->self), actor, i + 1, tr_strerror (rc));
        run->comp_errors [i] = rc;
        run->compensated = false;
    }
    s_run_failed (chain, run);
}

//  Stops the run: step `failed` failed with error; steps before `done`
//  have done their work and are compensated.
static void
s_fail (s_chain_t *chain, s_run_t *run, size_t failed, int error, size_t done)
{
    run->failed = failed;
    run->error = error;
    run->comp = done;
    run->compensated = true;
    for (size_t i = 0; i < chain->count; i++)
        run->comp_errors [i] = i < done && chain->steps [i].compensate? TR_OK: 1;
    s_compensate_next (chain, run);
}

//  The run has its answer: the last step's output.
static void
s_succeed (s_chain_t *chain, s_run_t *run)
{
    tr_actor_info_add (chain->self, "chain.completed", 1);
    s_run_unlink (chain, run);
    if (run->ask) {
        const s_value_t *out = &run->values [chain->count];
        int rc = tr_reply (run->ask, out->data, out->size);
        if (rc != TR_OK)
            tr_reply_error (run->ask, rc);
    }
    s_run_free (chain, run);
}

//  Asks step run->step with its input.
static void
s_step_send (s_chain_t *chain, s_run_t *run)
{
    size_t i = run->step;
    run->stage = S_STEP;
    int ms = s_step_ms (chain, run);
    int rc = ms <= 0? TR_ETIMEDOUT
           : tr__request_timed (chain->self, chain->steps [i].actor, run->values [i].data,
                                run->values [i].size, ms, &run->wait, &run->timer);
    if (rc != TR_OK)
        s_fail (chain, run, i, rc, i);
}

//  After step i answered (or its gate passed): the next step, or the end.
static void
s_advance (s_chain_t *chain, s_run_t *run)
{
    run->step++;
    if (run->step == chain->count)
        s_succeed (chain, run);
    else
        s_step_send (chain, run);
}

//  What a gate actor's answer says: 1 pass, 0 no, -1 not a boolean.
static int
s_gate_verdict (const s_step_t *step, const tr_msg_t *reply)
{
    const uint8_t *value = (const uint8_t *) tr_msg_body (reply);
    size_t size = tr_msg_size (reply);
    if (step->gate_output && tr__body_field (value, size, step->gate_output, &value, &size))
        return -1;
    if (size == 1 && value [0] == 0xc3)
        return 1;
    if (size == 1 && value [0] == 0xc2)
        return 0;
    return -1;
}

//  Step run->step answered: keep its output, then its gate or the next.
static void
s_step_answered (s_chain_t *chain, s_run_t *run, const tr_msg_t *reply)
{
    size_t i = run->step;
    s_step_t *step = &chain->steps [i];
    if (s_value_set (&run->values [i + 1], tr_msg_body (reply), tr_msg_size (reply))) {
        s_fail (chain, run, i, TR_ENOMEM, i + 1);
        return;
    }
    if (step->gate == S_GATE_TEXT) {
        if (tr__text_rule_test (&step->gate_text, run->values [i + 1].data,
                                run->values [i + 1].size))
            s_advance (chain, run);
        else
            s_fail (chain, run, i, TR_EOUTPUT, i + 1);
        return;
    }
    if (step->gate == S_GATE_ACTOR) {
        run->stage = S_GATE;
        int ms = s_step_ms (chain, run);
        int rc = ms <= 0? TR_ETIMEDOUT
               : tr__request_timed (chain->self, step->gate_actor, run->values [i + 1].data,
                                    run->values [i + 1].size, ms, &run->wait, &run->timer);
        if (rc != TR_OK)
            s_fail (chain, run, i, rc, i + 1);
        return;
    }
    s_advance (chain, run);
}

//  The answer (reply, or error with reply NULL or an error message) to
//  what the run waited for.
static void
s_answered (s_chain_t *chain, s_run_t *run, const tr_msg_t *reply, int error)
{
    tr_timer_cancel (chain->node, run->timer);
    run->wait = 0;
    size_t i = run->step;
    switch (run->stage) {
        case S_STEP:
            if (error)
                s_fail (chain, run, i, error, i);
            else
                s_step_answered (chain, run, reply);
            return;
        case S_GATE: {
            int verdict = error? -1: s_gate_verdict (&chain->steps [i], reply);
            if (verdict == 1)
                s_advance (chain, run);
            else {
                if (verdict < 0)
                    tr_log (TR_LOG_WARN, "chain '%s': gate '%s' of step %zu %s%s",
                            tr_actor_name (chain->self), chain->steps [i].gate_actor, i + 1,
                            error? "failed: ": "answered neither true nor false",
                            error? tr_strerror (error): "");
                //  A gate that fails is a gate that did not pass; the
                //  step itself did its work.
                s_fail (chain, run, i, error? error: TR_EOUTPUT, i + 1);
            }
            return;
        }
        default:
            if (error) {
                tr_log (TR_LOG_WARN, "chain '%s': compensation '%s' of step %zu failed: %s",
                        tr_actor_name (chain->self), chain->steps [i].compensate, i + 1,
                        tr_strerror (error));
                run->comp_errors [i] = error;
                run->compensated = false;
            }
            s_compensate_next (chain, run);
            return;
    }
}

//  A message to run the chain for: asks are deferred, tells copied.
static int
s_run_new (s_chain_t *chain, const tr_msg_t *msg)
{
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run) {
        run->values = (s_value_t *) calloc (chain->count + 1, sizeof *run->values);
        run->comp_errors = (int *) calloc (chain->count, sizeof *run->comp_errors);
        run->from = strdup (tr_msg_from (msg));
    }
    if (!run || !run->values || !run->comp_errors || !run->from
    ||  s_value_set (&run->values [0], tr_msg_body (msg), tr_msg_size (msg))) {
        s_run_free (chain, run);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        run->ask = tr_defer (msg);
    run->next = chain->runs;
    chain->runs = run;
    chain->inflight++;
    tr_actor_info_set (chain->self, "chain.inflight", (int64_t) chain->inflight);
    s_step_send (chain, run);
    return 0;
}

static s_run_t *
s_find (s_chain_t *chain, uint64_t id)
{
    for (s_run_t *run = chain->runs; id && run; run = run->next)
        if (run->wait == id)
            return run;
    return NULL;
}

static int
s_chain_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_chain_t *chain = (s_chain_t *) state;
    s_run_t *run;
    uint64_t id;
    switch (tr_msg_kind (msg)) {
        case TR_KIND_REPLY:
        case TR_KIND_ERROR:
            //  An answer that comes after its timer finds nothing.
            if ((run = s_find (chain, tr_msg_corr (msg))))
                s_answered (chain, run, msg, tr_msg_kind (msg) == TR_KIND_ERROR?
                            tr_msg_error (msg): TR_OK);
            return 0;
        default:
            if (tr__tick_read (msg, &id)) {
                if ((run = s_find (chain, id)))
                    s_answered (chain, run, NULL, TR_ETIMEDOUT);
                return 0;
            }
            return s_run_new (chain, msg);
    }
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed. Compensations not run yet
//  do not run (said in the log, with how many runs were cut short).
static void
s_chain_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_chain_t *chain = (s_chain_t *) state;
    if (chain->runs)
        tr_log (TR_LOG_WARN, "chain '%s': stopping with %zu run(s) in progress, "
                "not finished and not compensated", tr_actor_name (self), chain->inflight);
    while (chain->runs) {
        s_run_t *run = chain->runs;
        chain->runs = run->next;
        if (run->wait)
            tr_timer_cancel (chain->node, run->timer);
        s_run_free (chain, run);
    }
    s_chain_free (chain);
}

const tr_actor_type_t tr__chain_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "chain",
    .summary = "steps in order, with validation gates and compensation in reverse (a saga)",
    .behaviour = { s_chain_init, s_chain_handle, s_chain_terminate },
    .params = s_chain_params,
    .check = s_chain_check,
};
