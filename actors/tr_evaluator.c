/*  tr_evaluator.c - evaluator-optimizer: generate, evaluate, improve,
    until a score threshold or a maximum of iterations.

    For each message it gets (the task), the evaluator actor runs
    iterations. Each one asks the generator with
        {task: TASK, previous: OUTPUT, feedback: FEEDBACK}
    (previous and feedback are nil in the first iteration; after it, the
    output of the iteration before and the feedback it was given), then
    asks the evaluator with
        {task: TASK, output: OUTPUT}
    which answers {score: NUMBER, feedback: VALUE} (feedback may be
    absent: nil). An iteration whose score is at least `threshold` ends
    the run; so does the `max_iterations`-th. The asker gets
        {output: OUTPUT, score: NUMBER, iterations: N, scores: [NUMBER...],
         reached: true|false}
    with the last output and its score, and every score in order. Below
    the threshold after the last iteration, `below_threshold: answer`
    (the default) answers that map with `reached: false`; `error` answers
    TR_ELIMIT instead.

    A generator or evaluator that fails (answers an error, times out,
    cannot be reached) ends the run with its error; an evaluator answer
    that is not {score: NUMBER, ...} ends it with TR_EOUTPUT. Events on
    the bus: `evaluator.round` after each iteration is scored,
    `evaluator.completed` at the end, `evaluator.failed` on an error
    (docs/patterns.md has their maps).

    Nothing waits on the actor's thread: each ask goes out with
    tr_request and a timer (tr_compose.h), and many runs are in flight at
    once.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_GENERATE, S_EVALUATE } s_stage_t;

typedef struct s_run_s s_run_t;
struct s_run_s {
    tr__run_t base;             //  the deferred ask (or NULL for a tell), the sender
    tr__value_t task;
    tr__value_t output;         //  the latest output
    tr__value_t feedback;       //  the latest feedback
    double *scores;             //  one per iteration scored
    size_t iterations;          //  iterations started
    int stage;                  //  s_stage_t
    tr__wait_t wait;            //  the generator's or the evaluator's answer
    char reason [512];          //  why the run failed
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    //  Settings.
    char *generator;
    char *evaluator;
    double threshold;
    int64_t max_iterations;
    int64_t timeout_ms;
    bool below_error;           //  below_threshold: error
    tr__runs_t runs;            //  of s_run_t, each waiting for one answer at a time
} s_eval_t;

//  What the runs call back (at the end).
static const tr__runs_calls_t s_calls;

static const tr_param_spec_t s_eval_params [] = {
    { "generator", TR_PARAM_STRING, true, "the actor asked {task, previous, feedback} for "
                                          "an output" },
    { "evaluator", TR_PARAM_STRING, true, "the actor asked {task, output}, which answers "
                                          "{score, feedback}" },
    { "threshold", TR_PARAM_NUMBER, true, "the score that ends the loop (score >= threshold)" },
    { "max_iterations", TR_PARAM_INT, false, "iterations at most, 1 to 100 (default 3)" },
    { "timeout", TR_PARAM_DURATION, false, "how long each generation and evaluation gets "
                                           "(default 30s)" },
    { "below_threshold", TR_PARAM_STRING, false, "answer (default): the answer says "
                                                 "reached: false; error: TR_ELIMIT" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_eval_free (s_eval_t *eval)
{
    if (!eval)
        return;
    free (eval->generator);
    free (eval->evaluator);
    free (eval);
}

static int
s_eval_configure (s_eval_t *eval, tr__cfg_t *cfg)
{
    static const char *const belows [] = { "answer", "error", NULL };
    int below = 0;
    eval->max_iterations = 3;
    eval->timeout_ms = 30000;
    eval->threshold = NAN;
    if (tr__cfg_name_in (cfg, NULL, "generator", "generator", &eval->generator)
    ||  tr__cfg_name_in (cfg, NULL, "evaluator", "evaluator", &eval->evaluator)
    ||  tr__cfg_number (cfg, "threshold", -1e300, 1e300, &eval->threshold)
    ||  tr__cfg_int (cfg, "max_iterations", 1, 100, &eval->max_iterations)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &eval->timeout_ms)
    ||  tr__cfg_choice (cfg, "below_threshold", belows, &below))
        return -1;
    eval->below_error = below == 1;
    if (!eval->generator)
        return tr__cfg_bad (cfg, "'generator' must name the generator actor");
    if (!eval->evaluator)
        return tr__cfg_bad (cfg, "'evaluator' must name the evaluator actor");
    if (isnan (eval->threshold))
        return tr__cfg_bad (cfg, "'threshold' must be the score that ends the loop");
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_eval_check, "evaluator", s_eval_t, s_eval_configure, s_eval_free)

static int
s_eval_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_eval_t *eval = (s_eval_t *) calloc (1, sizeof *eval);
    int rc = tr__cfg_open (&cfg, "evaluator", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !eval)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_eval_configure (eval, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_eval_free (eval);
        return -1;
    }
    tr__cfg_close (&cfg);
    eval->self = self;
    eval->node = tr_actor_node (self);
    tr__runs_init (&eval->runs, self, "evaluator", &s_calls, eval);
    *state_p = eval;
    return 0;
}

//  --------------------------------------------------------------------------
//  Packing

//  A score as msgpack writes numbers here: an integer when it is one
//  (so that 1 reads back as 1, not 1.0), a float otherwise.
static void
s_pack_score (msgpack_packer *pk, double score)
{
    if (score == floor (score) && fabs (score) < 9e15)
        msgpack_pack_int64 (pk, (int64_t) score);
    else
        msgpack_pack_double (pk, score);
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run_free (s_eval_t *eval, s_run_t *run)
{
    if (!run)
        return;
    tr__runs_unwait (&eval->runs, &run->wait);
    tr__value_free (&run->task);
    tr__value_free (&run->output);
    tr__value_free (&run->feedback);
    free (run->scores);
    tr__run_free (&run->base);
}

//  The scores so far, as a list.
static void
s_pack_scores (msgpack_packer *pk, const s_run_t *run, size_t count)
{
    msgpack_pack_array (pk, (uint32_t) count);
    for (size_t i = 0; i < count; i++)
        s_pack_score (pk, run->scores [i]);
}

//  Ends a run that failed with error (run->reason says why).
static void
s_run_fail (s_eval_t *eval, s_run_t *run, int error)
{
    tr_log (TR_LOG_WARN, "evaluator '%s': %s (%s) for %s from '%s'",
            tr_actor_name (eval->self), run->reason, tr_errname (error),
            run->base.ask? "an ask": "a tell", run->base.from);
    size_t scored = run->iterations? run->iterations - 1: 0;     //  the one in hand was not
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    tr__pack_str (&pk, "evaluator");
    tr__pack_str (&pk, tr_actor_name (eval->self));
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, tr_errname (error));
    tr__pack_str (&pk, "reason");
    tr__pack_str (&pk, run->reason);
    tr__pack_str (&pk, "iterations");
    msgpack_pack_uint64 (&pk, run->iterations);
    tr__pack_str (&pk, "scores");
    s_pack_scores (&pk, run, scored);
    tr_event_publish (eval->node, "evaluator.failed", buffer.data, buffer.size, NULL);
    msgpack_sbuffer_destroy (&buffer);
    tr_actor_info_add (eval->self, "evaluator.failed", 1);
    tr__runs_remove (&eval->runs, &run->base);
    if (run->base.ask)
        tr_reply_error (run->base.ask, error);
    s_run_free (eval, run);
}

//  The answer map {output, score, iterations, scores, reached}, with
//  `evaluator` first when with_name (the evaluator.completed event, which
//  carries no output).
static void
s_pack_outcome (s_eval_t *eval, s_run_t *run, bool reached, msgpack_sbuffer *buffer,
                bool with_name)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    if (with_name) {
        tr__pack_str (&pk, "evaluator");
        tr__pack_str (&pk, tr_actor_name (eval->self));
    }
    else {
        tr__pack_str (&pk, "output");
        tr__value_pack (&pk, &run->output);
    }
    tr__pack_str (&pk, "score");
    s_pack_score (&pk, run->scores [run->iterations - 1]);
    tr__pack_str (&pk, "iterations");
    msgpack_pack_uint64 (&pk, run->iterations);
    tr__pack_str (&pk, "scores");
    s_pack_scores (&pk, run, run->iterations);
    tr__pack_str (&pk, "reached");
    if (reached)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
}

//  The loop is over: the threshold was reached, or the last iteration
//  was scored.
static void
s_run_done (s_eval_t *eval, s_run_t *run, bool reached)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_pack_outcome (eval, run, reached, &buffer, true);
    tr_event_publish (eval->node, "evaluator.completed", buffer.data, buffer.size, NULL);
    tr_actor_info_add (eval->self, reached? "evaluator.reached": "evaluator.below", 1);
    if (!reached && eval->below_error) {
        msgpack_sbuffer_destroy (&buffer);
        snprintf (run->reason, sizeof run->reason, "no score reached %g in %zu iteration(s); "
                  "the last was %g", eval->threshold, run->iterations,
                  run->scores [run->iterations - 1]);
        tr_log (TR_LOG_WARN, "evaluator '%s': %s", tr_actor_name (eval->self), run->reason);
        tr__runs_remove (&eval->runs, &run->base);
        if (run->base.ask)
            tr_reply_error (run->base.ask, TR_ELIMIT);
        s_run_free (eval, run);
        return;
    }
    tr__runs_remove (&eval->runs, &run->base);
    if (run->base.ask) {
        msgpack_sbuffer_clear (&buffer);
        s_pack_outcome (eval, run, reached, &buffer, false);
        int rc = tr_reply (run->base.ask, buffer.data, buffer.size);
        if (rc != TR_OK)
            tr_reply_error (run->base.ask, rc);
    }
    else
        tr_log (TR_LOG_INFO, "evaluator '%s': a tell from '%s' done after %zu iteration(s), "
                "score %g", tr_actor_name (eval->self), run->base.from, run->iterations,
                run->scores [run->iterations - 1]);
    msgpack_sbuffer_destroy (&buffer);
    s_run_free (eval, run);
}

//  Sends what the run's stage asks for, with the timeout cut to the
//  asker's deadline; on failure ends the run.
static void
s_send (s_eval_t *eval, s_run_t *run, const char *to, msgpack_sbuffer *buffer)
{
    run->wait.owner = run;
    int rc = tr__runs_request (&eval->runs, &run->wait, to, buffer->data, buffer->size,
                               tr__run_ms (&run->base, eval->timeout_ms));
    if (rc == TR_OK)
        return;
    snprintf (run->reason, sizeof run->reason, "%s '%s' could not be asked in iteration "
              "%zu: %s", run->stage == S_GENERATE? "generator": "evaluator", to,
              run->iterations, tr_strerror (rc));
    s_run_fail (eval, run, rc);
}

//  Starts an iteration: asks the generator.
static void
s_generate (s_eval_t *eval, s_run_t *run)
{
    run->iterations++;
    run->stage = S_GENERATE;
    tr_actor_info_add (eval->self, "evaluator.iterations", 1);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->task);
    tr__pack_str (&pk, "previous");
    tr__value_pack (&pk, &run->output);
    tr__pack_str (&pk, "feedback");
    tr__value_pack (&pk, &run->feedback);
    s_send (eval, run, eval->generator, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

//  The generator answered: keep the output, ask the evaluator.
static void
s_generated (s_eval_t *eval, s_run_t *run, const tr_msg_t *reply)
{
    if (tr__value_set (&run->output, tr_msg_body (reply), tr_msg_size (reply))) {
        snprintf (run->reason, sizeof run->reason, "out of memory");
        s_run_fail (eval, run, TR_ENOMEM);
        return;
    }
    run->stage = S_EVALUATE;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->task);
    tr__pack_str (&pk, "output");
    tr__value_pack (&pk, &run->output);
    s_send (eval, run, eval->evaluator, &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

//  Reads the evaluator's answer {score, feedback}: the score into *score,
//  the feedback (nil when absent) into run->feedback. Returns TR_OK, or
//  TR_EOUTPUT / TR_ENOMEM with run->reason.
static int
s_verdict_read (s_eval_t *eval, s_run_t *run, const tr_msg_t *reply, double *score)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *o = NULL, *value = NULL, *feedback = NULL;
    if (tr_msg_size (reply)
    &&  msgpack_unpack_next (&unpacked, (const char *) tr_msg_body (reply), tr_msg_size (reply),
                             NULL) == MSGPACK_UNPACK_SUCCESS)
        o = &unpacked.data;
    for (uint32_t i = 0; o && o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
        if (tr__key_is (&o->via.map.ptr [i].key, "score"))
            value = &o->via.map.ptr [i].val;
        if (tr__key_is (&o->via.map.ptr [i].key, "feedback"))
            feedback = &o->via.map.ptr [i].val;
    }
    int rc = TR_EOUTPUT;
    double number;
    if (!value || !o || o->type != MSGPACK_OBJECT_MAP)
        snprintf (run->reason, sizeof run->reason, "evaluator '%s' answered %s in iteration "
                  "%zu, not a map {score, feedback}", eval->evaluator,
                  o? tr__cfg_kind (o): "nothing", run->iterations);
    else
    if (tr__number (value, &number) && !isnan (number))
        *score = number, rc = TR_OK;
    else
        snprintf (run->reason, sizeof run->reason, "evaluator '%s' answered 'score' as %s in "
                  "iteration %zu, not a number", eval->evaluator, tr__cfg_kind (value),
                  run->iterations);
    static const msgpack_object nil = { .type = MSGPACK_OBJECT_NIL };
    if (rc == TR_OK && tr__value_set_object (&run->feedback, feedback? feedback: &nil)) {
        snprintf (run->reason, sizeof run->reason, "out of memory");
        rc = TR_ENOMEM;
    }
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

//  The evaluator.round event: {evaluator, iteration, score, feedback}.
static void
s_publish_round (s_eval_t *eval, s_run_t *run, double score)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "evaluator");
    tr__pack_str (&pk, tr_actor_name (eval->self));
    tr__pack_str (&pk, "iteration");
    msgpack_pack_uint64 (&pk, run->iterations);
    tr__pack_str (&pk, "score");
    s_pack_score (&pk, score);
    tr__pack_str (&pk, "feedback");
    tr__value_pack (&pk, &run->feedback);
    tr_event_publish (eval->node, "evaluator.round", buffer.data, buffer.size, NULL);
    msgpack_sbuffer_destroy (&buffer);
}

//  The evaluator answered: the score decides whether to go round again.
static void
s_evaluated (s_eval_t *eval, s_run_t *run, const tr_msg_t *reply)
{
    double score = 0;
    int rc = s_verdict_read (eval, run, reply, &score);
    if (rc != TR_OK) {
        s_run_fail (eval, run, rc);
        return;
    }
    run->scores [run->iterations - 1] = score;
    s_publish_round (eval, run, score);
    if (score >= eval->threshold)
        s_run_done (eval, run, true);
    else
    if ((int64_t) run->iterations >= eval->max_iterations)
        s_run_done (eval, run, false);
    else
        s_generate (eval, run);
}

//  The answer the run (owner) waited for (or a timer: reply NULL,
//  TR_ETIMEDOUT).
static void
s_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_eval_t *eval = (s_eval_t *) state;
    s_run_t *run = (s_run_t *) owner;
    if (error) {
        snprintf (run->reason, sizeof run->reason, "%s '%s' failed in iteration %zu: %s",
                  run->stage == S_GENERATE? "generator": "evaluator",
                  run->stage == S_GENERATE? eval->generator: eval->evaluator,
                  run->iterations, tr_strerror (error));
        s_run_fail (eval, run, error);
    }
    else
    if (run->stage == S_GENERATE)
        s_generated (eval, run, reply);
    else
        s_evaluated (eval, run, reply);
}

//  A message to run for: asks are deferred, tells copied.
static int
s_run_new (void *state, const tr_msg_t *msg)
{
    s_eval_t *eval = (s_eval_t *) state;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run)
        run->scores = (double *) calloc ((size_t) eval->max_iterations, sizeof (double));
    if (!run || !run->scores
    ||  tr__value_set (&run->task, tr_msg_body (msg), tr_msg_size (msg))
    ||  tr__runs_add (&eval->runs, &run->base, msg)) {
        s_run_free (eval, run);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    s_generate (eval, run);
    return 0;
}

//  A run in progress when the evaluator stops.
static void
s_run_drop (void *state, tr__run_t *run)
{
    s_run_free ((s_eval_t *) state, (s_run_t *) run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_answered, s_run_drop };

static int
s_eval_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_eval_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their askers get TR_ENOREPLY when the
//  deferred asks are destroyed; late answers find nobody waiting.
static void
s_eval_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_eval_t *eval = (s_eval_t *) state;
    tr__runs_close (&eval->runs, NULL);
    s_eval_free (eval);
}

const tr_actor_type_t tr__evaluator_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "evaluator",
    .summary = "generate, evaluate, improve, until a score threshold or a maximum of "
               "iterations",
    .behaviour = { s_eval_init, s_eval_handle, s_eval_terminate },
    .params = s_eval_params,
    .check = s_eval_check,
};
