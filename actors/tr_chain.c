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

typedef struct s_run_s s_run_t;
struct s_run_s {
    tr__run_t base;             //  the deferred ask (or NULL for a tell), the sender
    tr__value_t *values;        //  values [0] the input, [i + 1] step i's answer
    size_t step;                //  the step in hand
    int stage;
    tr__wait_t wait;            //  the answer of the step, gate or compensation in hand
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
    tr__runs_t runs;            //  of s_run_t, each waiting for one answer at a time
} s_chain_t;

//  What the runs call back (at the end).
static const tr__runs_calls_t s_calls;

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
    tr__runs_init (&chain->runs, self, "chain", &s_calls, chain);
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
    tr__runs_unwait (&chain->runs, &run->wait);
    for (size_t i = 0; run->values && i <= chain->count; i++)
        tr__value_free (&run->values [i]);
    free (run->values);
    free (run->comp_errors);
    tr__run_free (&run->base);
}

//  Ms a step, gate or compensation may take: the chain's timeout, cut to
//  the ask's deadline while the chain still works for the asker.
//  Compensations are not cut: they run to the end for the system's sake.
static int
s_step_ms (const s_chain_t *chain, const s_run_t *run)
{
    if (run->stage == S_COMPENSATE)
        return (int) chain->timeout_ms;
    return tr__run_ms (&run->base, chain->timeout_ms);
}

//  Asks `to` with body for the run; the answer comes to s_answered.
static int
s_request (s_chain_t *chain, s_run_t *run, const char *to, const void *body, size_t size)
{
    return tr__runs_request (&chain->runs, &run->wait, to, body, size, s_step_ms (chain, run));
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
        tr__pack_str (pk, "chain");
        tr__pack_str (pk, tr_actor_name (chain->self));
    }
    tr__pack_str (pk, "failed");
    tr__pack_str (pk, failed);
    tr__pack_str (pk, "index");
    msgpack_pack_uint64 (pk, run->failed + 1);
    tr__pack_str (pk, "error");
    tr__pack_str (pk, error);
    tr__pack_str (pk, "compensated");
    if (run->compensated)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
    //  The compensations in the order they ran (reverse step order).
    tr__pack_str (pk, "compensations");
    msgpack_pack_array (pk, (uint32_t) comps);
    for (size_t i = chain->count; i-- > 0; ) {
        if (run->comp_errors [i] == 1)
            continue;
        const char *step = chain->steps [i].actor;
        msgpack_pack_map (pk, run->comp_errors [i]? 2: 1);
        tr__pack_str (pk, "step");
        tr__pack_str (pk, step);
        if (run->comp_errors [i]) {
            const char *e = tr_errname (run->comp_errors [i]);
            tr__pack_str (pk, "error");
            tr__pack_str (pk, e);
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
            run->base.ask? "an ask": "a tell", run->base.from,
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
    tr__runs_remove (&chain->runs, &run->base);
    if (run->base.ask && chain->report) {
        msgpack_sbuffer_clear (&buffer);
        s_pack_failure (chain, run, &pk, false);
        if (tr_reply (run->base.ask, buffer.data, buffer.size) != TR_OK)
            tr_reply_error (run->base.ask, run->error);
    }
    else
    if (run->base.ask)
        tr_reply_error (run->base.ask, run->error);
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
    tr__pack_str (&pk, "step");
    tr__pack_str (&pk, chain->steps [i].actor);
    tr__pack_str (&pk, "input");
    tr__value_pack (&pk, &run->values [i]);
    tr__pack_str (&pk, "output");
    tr__value_pack (&pk, &run->values [i + 1]);
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
        int rc = s_request (chain, run, actor, buffer.data, buffer.size);
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
    tr__runs_remove (&chain->runs, &run->base);
    if (run->base.ask) {
        const tr__value_t *out = &run->values [chain->count];
        int rc = tr_reply (run->base.ask, out->data, out->size);
        if (rc != TR_OK)
            tr_reply_error (run->base.ask, rc);
    }
    s_run_free (chain, run);
}

//  Asks step run->step with its input.
static void
s_step_send (s_chain_t *chain, s_run_t *run)
{
    size_t i = run->step;
    run->stage = S_STEP;
    int rc = s_request (chain, run, chain->steps [i].actor, run->values [i].data,
                        run->values [i].size);
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
    if (tr__value_set (&run->values [i + 1], tr_msg_body (reply), tr_msg_size (reply))) {
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
        int rc = s_request (chain, run, step->gate_actor, run->values [i + 1].data,
                            run->values [i + 1].size);
        if (rc != TR_OK)
            s_fail (chain, run, i, rc, i + 1);
        return;
    }
    s_advance (chain, run);
}

//  The answer (reply, or error with reply NULL or an error message) to
//  what the run (owner) waited for.
static void
s_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_chain_t *chain = (s_chain_t *) state;
    s_run_t *run = (s_run_t *) owner;
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
s_run_new (void *state, const tr_msg_t *msg)
{
    s_chain_t *chain = (s_chain_t *) state;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run) {
        run->values = (tr__value_t *) calloc (chain->count + 1, sizeof *run->values);
        run->comp_errors = (int *) calloc (chain->count, sizeof *run->comp_errors);
        run->wait.owner = run;
    }
    if (!run || !run->values || !run->comp_errors
    ||  tr__value_set (&run->values [0], tr_msg_body (msg), tr_msg_size (msg))
    ||  tr__runs_add (&chain->runs, &run->base, msg)) {
        s_run_free (chain, run);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    s_step_send (chain, run);
    return 0;
}

//  A run in progress when the chain stops.
static void
s_run_drop (void *state, tr__run_t *run)
{
    s_run_free ((s_chain_t *) state, (s_run_t *) run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_answered, s_run_drop };

static int
s_chain_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_chain_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed. Compensations not run yet
//  do not run (said in the log, with how many runs were cut short).
static void
s_chain_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_chain_t *chain = (s_chain_t *) state;
    tr__runs_close (&chain->runs, ", not finished and not compensated");
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
