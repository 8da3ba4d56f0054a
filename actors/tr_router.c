/*  tr_router.c - the router: rules choose where each message goes.

    A router holds a list of routes, tried in order (the first in the list
    has the highest priority); the first whose rule matches the message
    takes it, and a message no rule takes goes to `default`. With no
    default, an ask no rule takes is answered TR_ENOTFOUND and a tell is
    logged and counted (router.unrouted): nothing goes nowhere silently.

    Rules:
        match: TEXT        the text contains TEXT
        regex: RE          the text matches RE (POSIX extended)
            (the text is the body when it is a string, or with
            `field: NAME` the string under NAME in a map body; a body
            without such a string matches neither)
        scratch: {key: K, equals: V}
                           the scratchpad holds V under K (compared as
                           msgpack, as every troupe packer writes it: the
                           shortest form); needs a broker
        least_loaded: [A, B, ...]
                           the route goes to the least loaded of the set:
                           fewest asks in flight from this router, plus
                           the mailbox depth of those that are local
        classifier: AGENT, routes: {LABEL: ACTOR, ...}
                           AGENT is asked with the text (or the whole body
                           when there is no text), and its answer names
                           the label: a string, or with `output: NAME` the
                           string under NAME in a map answer (the output
                           of an llm agent with a signature). Labels are
                           compared without case and surrounding blanks;
                           an answer that names no label does not match
        and every rule but least_loaded and classifier names its actor
        with `to: NAME`.

    The router never waits on its thread: a scratchpad read is made with
    tr_scratch_get_async (its outcome comes back as a tell from the
    node's link thread), the classifier and the chosen route are asked
    with tr_request, and the asker is answered when the route answers.
    Failures of these (a classifier or route that fails or times out, a
    scratchpad that cannot be read) are the asker's answer, and logged.

    Counters in status: router.routed, router.defaulted, router.unrouted,
    router.failed, router.inflight.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "troupe/tr_body.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_scratch.h"
#include "troupe/tr_timer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { S_MATCH, S_REGEX, S_SCRATCH, S_LOAD, S_CLASSIFIER } s_rule_kind_t;

typedef struct {
    int kind;
    char *to;                   //  match, regex, scratch
    tr__text_rule_t text;       //  match, regex; its field for classifier
    char *key;                  //  scratch
    uint8_t *equals;
    size_t equals_size;
    char **set;                 //  least_loaded
    size_t set_count;
    char *classifier;
    char *output;
    char **labels, **targets;
    size_t label_count;
} s_rule_t;

//  What a message being routed waits for.
typedef enum { S_EVAL, S_WAIT_SCRATCH, S_WAIT_CLASSIFIER, S_WAIT_ROUTE } s_stage_t;

typedef struct s_route_s s_route_t;
struct s_route_s {
    s_route_t *next;
    tr_msg_t *ask;              //  deferred ask, or NULL for a tell
    tr__value_t body;           //  a tell's body (copied)
    char *from;                 //  a tell's sender, for the log
    size_t rule;                //  the rule being tried
    int stage;
    uint64_t wait;              //  the request or scratchpad call's id
    uint64_t timer;
    const char *target;         //  S_WAIT_ROUTE: where it went
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    s_rule_t *rules;
    size_t count;
    char *fallback;             //  `default`
    int64_t timeout_ms;
    s_route_t *routes;          //  in progress
    size_t inflight;
    uint64_t next_id;           //  scratchpad calls' ids
} s_router_t;

static const tr_param_spec_t s_router_params [] = {
    { "routes", TR_PARAM_LIST, true, "the rules, highest priority first" },
    { "default", TR_PARAM_STRING, false, "where a message no rule takes goes" },
    { "timeout", TR_PARAM_DURATION, false, "how long a classifier, a scratchpad read and a "
                                           "route each get (default 5s)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_rule_free (s_rule_t *rule)
{
    free (rule->to);
    tr__text_rule_free (&rule->text);
    free (rule->key);
    free (rule->equals);
    tr__names_free (rule->set, rule->set_count);
    free (rule->classifier);
    free (rule->output);
    tr__names_free (rule->labels, rule->label_count);
    tr__names_free (rule->targets, rule->label_count);
}

static void
s_router_free (s_router_t *router)
{
    if (!router)
        return;
    for (size_t i = 0; i < router->count; i++)
        s_rule_free (&router->rules [i]);
    free (router->rules);
    free (router->fallback);
    free (router);
}

//  scratch: {key, equals}.
static int
s_rule_scratch (tr__cfg_t *cfg, const msgpack_object *o, const char *where, s_rule_t *rule)
{
    static const char *const keys [] = { "key", "equals", NULL };
    char what [128];
    snprintf (what, sizeof what, "%s 'scratch'", where);
    tr__cfg_enter_sub (cfg, "scratch");
    if (tr__cfg_keys (cfg, o, what, keys))
        return -1;
    snprintf (what, sizeof what, "%s scratch 'key'", where);
    if (tr__cfg_str_in (cfg, o, "key", what, &rule->key))
        return -1;
    const msgpack_object *equals = tr__cfg_get (cfg, o, "equals");
    if (!rule->key || !equals)
        return tr__cfg_bad (cfg, "%s 'scratch' needs 'key' and 'equals'", where);
    if (strlen (rule->key) > 1024 || strpbrk (rule->key, " \t\r\n"))
        return tr__cfg_bad (cfg, "%s scratch 'key' must be 1 to 1024 bytes without spaces",
                            where);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *equals);
    rule->equals = (uint8_t *) buffer.data;       //  the sbuffer's malloc'd bytes
    rule->equals_size = buffer.size;
    return rule->equals? 0: tr__cfg_bad (cfg, "out of memory");
}

//  classifier: NAME, routes: {LABEL: ACTOR}, output: FIELD.
static int
s_rule_classifier (tr__cfg_t *cfg, const msgpack_object *o, const char *where, s_rule_t *rule)
{
    char what [128];
    snprintf (what, sizeof what, "%s 'classifier'", where);
    if (tr__cfg_name_in (cfg, o, "classifier", what, &rule->classifier))
        return -1;
    snprintf (what, sizeof what, "%s 'output'", where);
    if (tr__cfg_str_in (cfg, o, "output", what, &rule->output))
        return -1;
    const msgpack_object *routes = tr__cfg_get (cfg, o, "routes");
    if (!routes || routes->type != MSGPACK_OBJECT_MAP || routes->via.map.size == 0)
        return tr__cfg_bad (cfg, "%s 'classifier' needs 'routes', a mapping of labels to "
                            "actor names", where);
    size_t n = routes->via.map.size;
    tr__cfg_enter_sub (cfg, "routes");
    rule->labels = (char **) calloc (n, sizeof *rule->labels);
    rule->targets = (char **) calloc (n, sizeof *rule->targets);
    if (!rule->labels || !rule->targets)
        return tr__cfg_bad (cfg, "out of memory");
    rule->label_count = n;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &routes->via.map.ptr [i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size == 0)
            return tr__cfg_bad (cfg, "%s 'routes' labels must be non-empty strings", where);
        rule->labels [i] = strndup (kv->key.via.str.ptr, kv->key.via.str.size);
        if (!rule->labels [i])
            return tr__cfg_bad (cfg, "out of memory");
        snprintf (what, sizeof what, "%s routes '%.40s'", where, rule->labels [i]);
        tr__cfg_blame (cfg, rule->labels [i]);
        if (kv->val.type != MSGPACK_OBJECT_STR)
            return tr__cfg_bad (cfg, "%s must be an actor name, not %s", what,
                                tr__cfg_kind (&kv->val));
        if (tr_name_check (kv->val.via.str.ptr, kv->val.via.str.size)
        ||  kv->val.via.str.ptr [0] == '$')
            return tr__cfg_bad (cfg, "%s is not a valid actor name: '%.*s'", what,
                                (int) (kv->val.via.str.size > 100? 100: kv->val.via.str.size),
                                kv->val.via.str.ptr);
        rule->targets [i] = strndup (kv->val.via.str.ptr, kv->val.via.str.size);
        if (!rule->targets [i])
            return tr__cfg_bad (cfg, "out of memory");
    }
    return 0;
}

//  One item of `routes`.
static int
s_rule_parse (tr__cfg_t *cfg, const msgpack_object *o, size_t index, s_rule_t *rule)
{
    static const char *const keys [] = {
        "to", "field", "match", "regex", "scratch", "least_loaded", "classifier", "output",
        "routes", NULL
    };
    char where [48], what [128];
    snprintf (where, sizeof where, "routes item %zu", index + 1);
    tr__cfg_enter (cfg, "routes.%zu", index + 1);
    if (tr__cfg_keys (cfg, o, where, keys))
        return -1;
    static const char *const kinds [] = { "match", "regex", "scratch", "least_loaded",
                                          "classifier", NULL };
    int found = 0;
    for (int k = 0; kinds [k]; k++)
        if (tr__cfg_get (cfg, o, kinds [k])) {
            rule->kind = k;
            found++;
        }
    if (found != 1)
        return tr__cfg_bad (cfg, "%s needs exactly one of match, regex, scratch, "
                            "least_loaded, classifier", where);
    snprintf (what, sizeof what, "%s 'to'", where);
    if (tr__cfg_name_in (cfg, o, "to", what, &rule->to))
        return -1;
    snprintf (what, sizeof what, "%s 'field'", where);
    if (tr__cfg_str_in (cfg, o, "field", what, &rule->text.field))
        return -1;
    bool wants_to = rule->kind == S_MATCH || rule->kind == S_REGEX || rule->kind == S_SCRATCH;
    if (wants_to && !rule->to)
        return tr__cfg_bad (cfg, "%s needs 'to', the actor it routes to", where);
    if (!wants_to && rule->to)
        return tr__cfg_bad_at (cfg, "to", "%s: 'to' is not for %s (it chooses the actor itself)",
                            where, kinds [rule->kind]);
    if (rule->text.field && (rule->kind == S_SCRATCH || rule->kind == S_LOAD))
        return tr__cfg_bad_at (cfg, "field", "%s: 'field' is only for match, regex and classifier", where);
    if (rule->kind != S_CLASSIFIER && (tr__cfg_get (cfg, o, "output")
                                   ||  tr__cfg_get (cfg, o, "routes")))
        return tr__cfg_bad_at (cfg, tr__cfg_get (cfg, o, "output")? "output": "routes",
                               "%s: 'output' and 'routes' are only for classifier", where);
    switch (rule->kind) {
        case S_MATCH:
        case S_REGEX:
            return tr__text_rule_parse (cfg, o, where, &rule->text);
        case S_SCRATCH:
            return s_rule_scratch (cfg, tr__cfg_get (cfg, o, "scratch"), where, rule);
        case S_LOAD:
            snprintf (what, sizeof what, "%s least_loaded", where);
            tr__cfg_enter_sub (cfg, "least_loaded");
            return tr__cfg_names (cfg, tr__cfg_get (cfg, o, "least_loaded"), what,
                                  &rule->set, &rule->set_count);
        default:
            return s_rule_classifier (cfg, o, where, rule);
    }
}

static int
s_router_configure (s_router_t *router, tr__cfg_t *cfg)
{
    router->timeout_ms = 5000;
    if (tr__cfg_name_in (cfg, NULL, "default", "default", &router->fallback)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &router->timeout_ms))
        return -1;
    const msgpack_object *routes = tr__cfg_get (cfg, NULL, "routes");
    if (!routes || routes->type != MSGPACK_OBJECT_ARRAY || routes->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "routes", "'routes' must be a list of at least one route");
    router->rules = (s_rule_t *) calloc (routes->via.array.size, sizeof *router->rules);
    if (!router->rules)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < routes->via.array.size; i++) {
        router->count = i + 1;          //  so that s_router_free frees this one too
        if (s_rule_parse (cfg, &routes->via.array.ptr [i], i, &router->rules [i]))
            return -1;
    }
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_router_check, "router", s_router_t, s_router_configure, s_router_free)

static int
s_router_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_router_t *router = (s_router_t *) calloc (1, sizeof *router);
    int rc = tr__cfg_open (&cfg, "router", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !router)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_router_configure (router, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_router_free (router);
        return -1;
    }
    tr__cfg_close (&cfg);
    router->self = self;
    router->node = tr_actor_node (self);
    //  Scratchpad calls' ids start from the clock, so that an outcome
    //  meant for an earlier incarnation finds nothing here.
    router->next_id = (uint64_t) tr__now_ns ();
    *state_p = router;
    return 0;
}

//  --------------------------------------------------------------------------
//  Routes in progress

static const void *
s_body (const s_route_t *route)
{
    return route->ask? tr_msg_body (route->ask): route->body.data;
}

static size_t
s_size (const s_route_t *route)
{
    return route->ask? tr_msg_size (route->ask): route->body.size;
}

static void
s_route_free (s_route_t *route)
{
    if (!route)
        return;
    tr_msg_destroy (&route->ask);
    tr__value_free (&route->body);
    free (route->from);
    free (route);
}

//  Takes a finished route out of the list and frees it.
static void
s_route_done (s_router_t *router, s_route_t *route)
{
    for (s_route_t **p = &router->routes; *p; p = &(*p)->next)
        if (*p == route) {
            *p = route->next;
            break;
        }
    router->inflight--;
    tr_actor_info_set (router->self, "router.inflight", (int64_t) router->inflight);
    s_route_free (route);
}

//  Ends a route with an error: the asker's answer, or the log for a tell.
static void
s_route_fail (s_router_t *router, s_route_t *route, int error, const char *why)
{
    tr_log (TR_LOG_WARN, "router '%s': %s from '%s': %s (%s)", tr_actor_name (router->self),
            route->ask? "an ask": "a tell", route->ask? tr_msg_from (route->ask): route->from,
            why, tr_strerror (error));
    //  Counted and taken off the list before the answer, so that an asker
    //  who looks next sees it.
    tr_actor_info_add (router->self, error == TR_ENOTFOUND? "router.unrouted": "router.failed", 1);
    tr_msg_t *ask = route->ask;
    route->ask = NULL;
    s_route_done (router, route);
    if (ask)
        tr_reply_error (ask, error);
    tr_msg_destroy (&ask);
}

//  Ms left for the next step: the router's timeout, cut to the ask's
//  deadline. 0 when nothing is left.
static int
s_step_ms (const s_router_t *router, const s_route_t *route)
{
    int64_t ms = router->timeout_ms;
    int64_t left = route->ask? tr_msg_remaining_ms (route->ask): -1;
    if (left >= 0 && left < ms)
        ms = left;
    return (int) ms;
}

//  Asks `to` with body for the route, with a timer; stage is what the
//  route then waits for.
static int
s_request (s_router_t *router, s_route_t *route, const char *to, const void *body,
           size_t size, int stage)
{
    int ms = s_step_ms (router, route);
    if (ms <= 0)
        return TR_ETIMEDOUT;
    int rc = tr__request_timed (router->self, to, body, size, ms, &route->wait,
                                &route->timer);
    if (rc != TR_OK)
        return rc;
    route->stage = stage;
    return TR_OK;
}

//  Sends the route's message to target: a tell at once, an ask with
//  tr_request (the answer finishes the route).
static void
s_forward (s_router_t *router, s_route_t *route, const char *target, bool defaulted)
{
    tr_actor_info_add (router->self, defaulted? "router.defaulted": "router.routed", 1);
    if (!route->ask) {
        int rc = tr_tell (router->node, target, route->body.data, route->body.size, NULL);
        if (rc != TR_OK) {
            char why [300];
            snprintf (why, sizeof why, "route '%s' refused it", target);
            s_route_fail (router, route, rc, why);
        }
        else
            s_route_done (router, route);
        return;
    }
    route->target = target;
    int rc = s_request (router, route, target, s_body (route), s_size (route), S_WAIT_ROUTE);
    if (rc != TR_OK) {
        char why [300];
        snprintf (why, sizeof why, "route '%s' could not be asked", target);
        s_route_fail (router, route, rc, why);
    }
}

//  The least loaded of a least_loaded rule's set.
static const char *
s_least_loaded (s_router_t *router, const s_rule_t *rule)
{
    const char *best = NULL;
    uint64_t best_load = 0;
    for (size_t i = 0; i < rule->set_count; i++) {
        uint64_t load = 0;
        for (s_route_t *r = router->routes; r; r = r->next)
            load += r->stage == S_WAIT_ROUTE && r->target && strcmp (r->target, rule->set [i]) == 0;
        tr_actor_stats_t stats;
        if (tr_actor_stats (router->node, rule->set [i], &stats) == TR_OK)
            load += stats.depth;
        if (!best || load < best_load) {
            best = rule->set [i];
            best_load = load;
        }
    }
    return best;
}

typedef struct {
    tr_node_t *node;
    uint64_t id;
    char actor [256];
} s_scratch_call_t;

//  The outcome of a scratchpad read, on the node's link thread: told to
//  the router as an ext value (type 'S': id, rc, then the value's bytes),
//  like a timer's tick, which no user message can look like.
static void
s_scratch_done (const tr_scratch_result_t *result, void *arg)
{
    s_scratch_call_t *call = (s_scratch_call_t *) arg;
    size_t data_size = result->rc == TR_OK? result->size: 0;
    size_t payload = 12 + data_size;
    uint8_t *body = (uint8_t *) malloc (6 + payload);
    if (body) {
        body [0] = 0xc9;                    //  ext 32
        for (int i = 0; i < 4; i++)
            body [1 + i] = (uint8_t) (payload >> (24 - 8 * i));
        body [5] = 'S';
        for (int i = 0; i < 8; i++)
            body [6 + i] = (uint8_t) (call->id >> (56 - 8 * i));
        uint32_t rc = (uint32_t) result->rc;
        for (int i = 0; i < 4; i++)
            body [14 + i] = (uint8_t) (rc >> (24 - 8 * i));
        if (data_size)
            memcpy (body + 18, result->data, data_size);
        //  A router that has stopped meanwhile makes this a dead letter.
        tr_tell (call->node, call->actor, body, 6 + payload, NULL);
    }
    free (body);
    free (call);
}

//  Reads a scratchpad outcome told by s_scratch_done.
static bool
s_scratch_read (const tr_msg_t *msg, uint64_t *id, int *rc, const uint8_t **data, size_t *size)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t n = tr_msg_size (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_from (msg) [0] != '\0'
    ||  n < 18 || body [0] != 0xc9 || body [5] != 'S')
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | body [6 + i];
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r = (r << 8) | body [14 + i];
    *id = v;
    *rc = (int) (int32_t) r;
    *data = body + 18;
    *size = n - 18;
    return true;
}

//  Tries the rules from route->rule on. Rules that need an answer from
//  elsewhere (scratch, classifier) start it and return; the answer calls
//  this again with the next rule.
static void
s_evaluate (s_router_t *router, s_route_t *route)
{
    route->stage = S_EVAL;
    for (; route->rule < router->count; route->rule++) {
        s_rule_t *rule = &router->rules [route->rule];
        if (rule->kind == S_MATCH || rule->kind == S_REGEX) {
            if (tr__text_rule_test (&rule->text, s_body (route), s_size (route))) {
                s_forward (router, route, rule->to, false);
                return;
            }
        }
        else
        if (rule->kind == S_LOAD) {
            s_forward (router, route, s_least_loaded (router, rule), false);
            return;
        }
        else
        if (rule->kind == S_SCRATCH) {
            int ms = s_step_ms (router, route);
            s_scratch_call_t *call = (s_scratch_call_t *) calloc (1, sizeof *call);
            if (!call || ms <= 0) {
                free (call);
                s_route_fail (router, route, ms <= 0? TR_ETIMEDOUT: TR_ENOMEM,
                              "no time left for the scratchpad");
                return;
            }
            call->node = router->node;
            call->id = ++router->next_id;
            snprintf (call->actor, sizeof call->actor, "%s", tr_actor_name (router->self));
            //  The outcome may come (and free call) before the call returns.
            uint64_t id = call->id;
            int rc = tr_scratch_get_async (router->node, rule->key, ms, s_scratch_done, call);
            if (rc != TR_OK) {
                free (call);
                s_route_fail (router, route, rc, "the scratchpad could not be read");
                return;
            }
            route->wait = id;
            route->stage = S_WAIT_SCRATCH;
            return;
        }
        else {
            //  A classifier gets the text when there is one, else the body.
            const char *text;
            uint32_t len;
            tr_body_t small;
            const void *body = s_body (route);
            size_t size = s_size (route);
            if (rule->text.field
            &&  tr__text_rule_text (&rule->text, s_body (route), s_size (route), &text, &len)
            &&  tr_body_str (&small, text, len) == TR_OK) {
                body = small.data;
                size = small.size;
            }
            else
            if (rule->text.field) {
                //  No field to classify: this rule does not match.
                continue;
            }
            int rc = s_request (router, route, rule->classifier, body, size, S_WAIT_CLASSIFIER);
            if (rc != TR_OK) {
                char why [300];
                snprintf (why, sizeof why, "classifier '%s' could not be asked", rule->classifier);
                s_route_fail (router, route, rc, why);
            }
            return;
        }
    }
    if (router->fallback)
        s_forward (router, route, router->fallback, true);
    else
        s_route_fail (router, route, TR_ENOTFOUND, "no route matches and there is no default");
}

//  The label a classifier answered: the route's target, or NULL.
static const char *
s_label_target (const s_rule_t *rule, const tr_msg_t *reply)
{
    const uint8_t *value = (const uint8_t *) tr_msg_body (reply);
    size_t size = tr_msg_size (reply);
    if (rule->output && tr__body_field (value, size, rule->output, &value, &size))
        return NULL;
    tr__mp_t mp;
    const char *text;
    uint32_t len;
    tr__mp_init (&mp, value, size);
    if (size == 0 || tr__mp_str (&mp, &text, &len))
        return NULL;
    while (len && isspace ((unsigned char) text [0])) {
        text++;
        len--;
    }
    while (len && isspace ((unsigned char) text [len - 1]))
        len--;
    for (size_t i = 0; i < rule->label_count; i++)
        if (strlen (rule->labels [i]) == len && strncasecmp (rule->labels [i], text, len) == 0)
            return rule->targets [i];
    return NULL;
}

//  The answer (or error, or timeout: reply NULL) the route waited for.
static void
s_answered (s_router_t *router, s_route_t *route, const tr_msg_t *reply, int error)
{
    tr_timer_cancel (router->node, route->timer);
    route->wait = 0;
    if (route->stage == S_WAIT_ROUTE) {
        if (error) {
            char why [300];
            snprintf (why, sizeof why, "route '%s' failed", route->target);
            s_route_fail (router, route, error, why);
            return;
        }
        tr_msg_t *ask = route->ask;
        route->ask = NULL;
        s_route_done (router, route);
        int rc = tr_reply (ask, tr_msg_body (reply), tr_msg_size (reply));
        if (rc != TR_OK)
            tr_reply_error (ask, rc);
        tr_msg_destroy (&ask);
        return;
    }
    //  The classifier.
    s_rule_t *rule = &router->rules [route->rule];
    if (error) {
        char why [300];
        snprintf (why, sizeof why, "classifier '%s' failed", rule->classifier);
        s_route_fail (router, route, error, why);
        return;
    }
    const char *target = s_label_target (rule, reply);
    if (target) {
        s_forward (router, route, target, false);
        return;
    }
    tr_log (TR_LOG_INFO, "router '%s': classifier '%s' named no route; trying the next",
            tr_actor_name (router->self), rule->classifier);
    route->rule++;
    s_evaluate (router, route);
}

//  The outcome of a scratchpad read for a route.
static void
s_scratch_answered (s_router_t *router, s_route_t *route, int rc, const uint8_t *data,
                    size_t size)
{
    s_rule_t *rule = &router->rules [route->rule];
    route->wait = 0;
    if (rc != TR_OK && rc != TR_ENOTFOUND) {
        char why [1100];
        snprintf (why, sizeof why, "scratchpad key '%s' could not be read", rule->key);
        s_route_fail (router, route, rc, why);
        return;
    }
    if (rc == TR_OK && size == rule->equals_size && memcmp (data, rule->equals, size) == 0) {
        s_forward (router, route, rule->to, false);
        return;
    }
    route->rule++;
    s_evaluate (router, route);
}

static s_route_t *
s_find (s_router_t *router, uint64_t id, int stage)
{
    if (id == 0)
        return NULL;
    for (s_route_t *route = router->routes; route; route = route->next)
        if (route->wait == id && (stage < 0? route->stage != S_WAIT_SCRATCH: route->stage == stage))
            return route;
    return NULL;
}

//  A message to route: asks are deferred, tells copied.
static int
s_route_new (s_router_t *router, const tr_msg_t *msg)
{
    s_route_t *route = (s_route_t *) calloc (1, sizeof *route);
    if (!route)
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        route->ask = tr_defer (msg);
    else {
        route->from = strdup (tr_msg_from (msg));
        if (tr__value_set (&route->body, tr_msg_body (msg), tr_msg_size (msg)) || !route->from) {
            s_route_free (route);
            return -1;
        }
    }
    route->next = router->routes;
    router->routes = route;
    router->inflight++;
    tr_actor_info_set (router->self, "router.inflight", (int64_t) router->inflight);
    s_evaluate (router, route);
    return 0;
}

static int
s_router_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_router_t *router = (s_router_t *) state;
    s_route_t *route;
    uint64_t id;
    int rc;
    const uint8_t *data;
    size_t size;
    switch (tr_msg_kind (msg)) {
        case TR_KIND_REPLY:
        case TR_KIND_ERROR:
            //  An answer that comes after its timer finds nothing.
            if ((route = s_find (router, tr_msg_corr (msg), -1)))
                s_answered (router, route, msg, tr_msg_kind (msg) == TR_KIND_ERROR?
                            tr_msg_error (msg): TR_OK);
            return 0;
        case TR_KIND_ASK:
            return s_route_new (router, msg);
        default:
            if (tr__tick_read (msg, &id)) {
                if ((route = s_find (router, id, -1)))
                    s_answered (router, route, NULL, TR_ETIMEDOUT);
                return 0;
            }
            if (s_scratch_read (msg, &id, &rc, &data, &size)) {
                if ((route = s_find (router, id, S_WAIT_SCRATCH)))
                    s_scratch_answered (router, route, rc, data, size);
                return 0;
            }
            return s_route_new (router, msg);
    }
}

//  Asks in progress are answered TR_ENOREPLY when their deferred
//  messages are destroyed; scratchpad outcomes still to come become dead
//  letters.
static void
s_router_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_router_t *router = (s_router_t *) state;
    while (router->routes) {
        s_route_t *route = router->routes;
        router->routes = route->next;
        if (route->wait && route->stage != S_WAIT_SCRATCH)
            tr_timer_cancel (router->node, route->timer);
        s_route_free (route);
    }
    s_router_free (router);
}

const tr_actor_type_t tr__router_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "router",
    .summary = "routes by rules in priority order: text, scratchpad, load, a classifier agent",
    .behaviour = { s_router_init, s_router_handle, s_router_terminate },
    .params = s_router_params,
    .check = s_router_check,
};
