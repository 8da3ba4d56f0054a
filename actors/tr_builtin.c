/*  tr_builtin.c - the actor types every troupe has, for tree files,
    examples and tests.

    echo     replies to an ask with its body; tells are only counted.
    counter  adds to a count (a tell with an integer adds it, any other
             tell adds 1) and answers an ask with the count. A restart
             resets it to `start`: watching the count is watching state
             being reset.
    flaky    does what its messages say, so that failures can be made on
             command: "fail" makes the handler fail, "exit" ends the
             incarnation with a failure, "stop" ends it normally,
             "hang MS" handles for MS milliseconds, anything else is
             answered "ok". `fail_every: N` also fails every Nth message,
             `fail_init: true` refuses to start.
    driver   sends its `script` of bodies, one after another and round
             again, to `target` every `every`; as asks (the default) it
             logs each answer or error, which makes restarts and breakers
             visible in a running tree.

    Replies are small msgpack strings or integers (tr_body.h).
*/

#include "tr_internal.h"
#include "tr_mp.h"
#include "tr_json.h"
#include "troupe/tr_body.h"
#include "troupe/tr_params.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Answers an ask with a short string; tells need no answer.
static int
s_answer_str (const tr_msg_t *msg, const char *text)
{
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    tr_body_t body;
    tr_body_str (&body, text, strlen (text));
    return tr_reply (msg, body.data, body.size) == TR_OK? 0: -1;
}

//  ---------------------------------------------------------------------
//  echo

static int
s_echo_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return 0;
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg)) == TR_OK? 0: -1;
}

static const tr_actor_type_t s_echo = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "echo",
    .summary = "replies to an ask with its body",
    .behaviour = { .handle = s_echo_handle },
};

//  ---------------------------------------------------------------------
//  counter

typedef struct {
    uint64_t count;
} s_counter_t;

static const tr_param_spec_t s_counter_params [] = {
    { "start", TR_PARAM_INT, false, "the count after each (re)start (default 0)" },
    { .key = NULL }
};

static int
s_counter_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    int64_t start = 0;
    if (arg && tr_params_int ((const tr_params_t *) arg, "start", &start) == TR_EMALFORMED)
        return -1;
    s_counter_t *counter = (s_counter_t *) calloc (1, sizeof *counter);
    if (!counter)
        return -1;
    counter->count = (uint64_t) start;
    *state_p = counter;
    return 0;
}

static int
s_counter_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_counter_t *counter = (s_counter_t *) state;
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        tr_body_t body;
        tr_body_uint (&body, counter->count);
        return tr_reply (msg, body.data, body.size) == TR_OK? 0: -1;
    }
    uint64_t add = 1;
    if (tr_msg_uint (msg, &add) != TR_OK)
        add = 1;
    counter->count += add;
    return 0;
}

static void
s_counter_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    free (state);
}

static const tr_actor_type_t s_counter = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "counter",
    .summary = "counts tells, answers asks with the count; a restart resets it",
    .behaviour = { s_counter_init, s_counter_handle, s_counter_terminate },
    .params = s_counter_params,
};

//  ---------------------------------------------------------------------
//  flaky

typedef struct {
    int64_t fail_every;         //  0: never on its own
    uint64_t seen;              //  messages this incarnation
} s_flaky_t;

static const tr_param_spec_t s_flaky_params [] = {
    { "fail_every", TR_PARAM_INT, false, "fail every Nth message on its own (0: never)" },
    { "fail_init", TR_PARAM_BOOL, false, "refuse to start" },
    { .key = NULL }
};

static int
s_flaky_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    const tr_params_t *params = (const tr_params_t *) arg;
    bool fail_init = false;
    int64_t fail_every = 0;
    if (params
    &&  (tr_params_bool (params, "fail_init", &fail_init) == TR_EMALFORMED
    ||   tr_params_int (params, "fail_every", &fail_every) == TR_EMALFORMED))
        return -1;
    if (fail_init || fail_every < 0)
        return -1;
    s_flaky_t *flaky = (s_flaky_t *) calloc (1, sizeof *flaky);
    if (!flaky)
        return -1;
    flaky->fail_every = fail_every;
    *state_p = flaky;
    return 0;
}

//  True if the body is the string `word`.
static bool
s_is (const char *text, size_t len, const char *word)
{
    return len == strlen (word) && memcmp (text, word, len) == 0;
}

static int
s_flaky_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_flaky_t *flaky = (s_flaky_t *) state;
    flaky->seen++;
    if (flaky->fail_every > 0 && flaky->seen % (uint64_t) flaky->fail_every == 0)
        return -1;
    const char *text = "";
    size_t len = 0;
    if (tr_msg_str (msg, &text, &len) != TR_OK)
        return s_answer_str (msg, "ok");
    if (s_is (text, len, "fail"))
        return -1;
    if (s_is (text, len, "exit"))
        return tr_actor_exit (self, TR_ECHILD, "asked to exit");
    if (s_is (text, len, "stop")) {
        s_answer_str (msg, "stopping");
        return tr_actor_exit (self, TR_OK, "asked to stop");
    }
    if (len > 5 && memcmp (text, "hang ", 5) == 0) {
        char digits [24] = "";
        size_t n = len - 5 < sizeof digits - 1? len - 5: sizeof digits - 1;
        memcpy (digits, text + 5, n);
        long ms = strtol (digits, NULL, 10);
        if (ms > 0) {
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            nanosleep (&ts, NULL);
        }
    }
    return s_answer_str (msg, "ok");
}

static void
s_flaky_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    free (state);
}

static const tr_actor_type_t s_flaky = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "flaky",
    .summary = "fails on command: \"fail\", \"exit\", \"stop\", \"hang MS\"",
    .behaviour = { s_flaky_init, s_flaky_handle, s_flaky_terminate },
    .params = s_flaky_params,
};

//  ---------------------------------------------------------------------
//  driver

typedef struct {
    char *target;
    tr_params_t script;         //  a list of bodies
    size_t steps;               //  its length
    size_t next;                //  the step to send next
    bool ask;
    int64_t timeout_ms;
    uint64_t timer;
} s_driver_t;

static const tr_param_spec_t s_driver_params [] = {
    { "target", TR_PARAM_STRING, true, "the actor to send to" },
    { "script", TR_PARAM_LIST, true, "the string bodies to send, in turn" },
    { "every", TR_PARAM_DURATION, false, "time between sends (default 1s)" },
    { "ask", TR_PARAM_BOOL, false, "ask and log the answer (default true)" },
    { "timeout", TR_PARAM_DURATION, false, "ask timeout (default 1s)" },
    { .key = NULL }
};

static void
s_driver_free (s_driver_t *driver)
{
    if (driver) {
        free (driver->target);
        free (driver);
    }
}

static int
s_driver_init (tr_actor_t *self, void *arg, void **state_p)
{
    const tr_params_t *params = (const tr_params_t *) arg;
    if (!params)
        return -1;
    s_driver_t *driver = (s_driver_t *) calloc (1, sizeof *driver);
    if (!driver)
        return -1;
    const char *target;
    size_t target_len;
    int64_t every = 1000;
    driver->ask = true;
    driver->timeout_ms = 1000;
    tr__mp_t mp;
    uint32_t steps = 0;
    if (tr_params_str (params, "target", &target, &target_len) != TR_OK
    ||  tr_params_get (params, "script", &driver->script) != TR_OK
    ||  tr_params_duration (params, "every", &every) == TR_EMALFORMED
    ||  tr_params_bool (params, "ask", &driver->ask) == TR_EMALFORMED
    ||  tr_params_duration (params, "timeout", &driver->timeout_ms) == TR_EMALFORMED
    ||  (tr__mp_init (&mp, driver->script.data, driver->script.size),
         tr__mp_array (&mp, &steps) != TR_OK)
    ||  steps == 0 || every <= 0 || every > INT32_MAX
    ||  !(driver->target = strndup (target, target_len))) {
        s_driver_free (driver);
        return -1;
    }
    driver->steps = steps;
    //  The timer's body is nil, which no script step can be.
    static const uint8_t tick = 0xc0;
    if (tr_timer_every (tr_actor_node (self), tr_actor_name (self), (int) every,
                        &tick, 1, &driver->timer) != TR_OK) {
        s_driver_free (driver);
        return -1;
    }
    *state_p = driver;
    return 0;
}

//  Finds step `index` of the script: its string in *text, *len.
static int
s_driver_step (const s_driver_t *driver, size_t index, const char **text, uint32_t *len)
{
    tr__mp_t mp;
    uint32_t steps;
    tr__mp_init (&mp, driver->script.data, driver->script.size);
    if (tr__mp_array (&mp, &steps) != TR_OK)
        return TR_EMALFORMED;
    for (size_t i = 0; i < index; i++)
        if (tr__mp_skip (&mp, 8) != TR_OK)
            return TR_EMALFORMED;
    return tr__mp_str (&mp, text, len);
}

static int
s_driver_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_driver_t *driver = (s_driver_t *) state;
    if (tr_msg_size (msg) != 1 || ((const uint8_t *) tr_msg_body (msg)) [0] != 0xc0)
        return s_answer_str (msg, "driver: nothing to answer");
    const char *text;
    uint32_t len;
    size_t step = driver->next;
    driver->next = (driver->next + 1) % driver->steps;
    if (s_driver_step (driver, step, &text, &len) != TR_OK) {
        tr_log (TR_LOG_WARN, "%s: script step %zu is not a string", tr_actor_name (self), step + 1);
        return 0;
    }
    tr_body_t body;
    if (tr_body_str (&body, text, len) != TR_OK)
        return 0;
    tr_node_t *node = tr_actor_node (self);
    if (!driver->ask) {
        int rc = tr_tell (node, driver->target, body.data, body.size, NULL);
        if (rc != TR_OK)
            tr_log (TR_LOG_WARN, "%s: tell %s \"%.*s\": %s", tr_actor_name (self),
                    driver->target, (int) len, text, tr_strerror (rc));
        return 0;
    }
    tr_msg_t *reply = NULL;
    int timeout = driver->timeout_ms > INT32_MAX? INT32_MAX: (int) driver->timeout_ms;
    int rc = tr_ask (node, driver->target, body.data, body.size, timeout, &reply, NULL);
    if (rc == TR_OK) {
        const char *answer = "";
        size_t answer_len = 0;
        uint64_t number;
        if (tr_msg_str (reply, &answer, &answer_len) == TR_OK)
            tr_log (TR_LOG_INFO, "%s: %s \"%.*s\" -> \"%.*s\"", tr_actor_name (self),
                    driver->target, (int) len, text, (int) answer_len, answer);
        else
        if (tr_msg_uint (reply, &number) == TR_OK)
            tr_log (TR_LOG_INFO, "%s: %s \"%.*s\" -> %llu", tr_actor_name (self),
                    driver->target, (int) len, text, (unsigned long long) number);
        else {
            //  Anything else (a map from a signature, a process's JSON) as
            //  one line of JSON, cut short in the log past 300 bytes.
            char *json = NULL;
            size_t json_len = 0;
            if (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply), &json,
                                       &json_len) == 0)
                tr_log (TR_LOG_INFO, "%s: %s \"%.*s\" -> %.*s%s", tr_actor_name (self),
                        driver->target, (int) len, text, (int) (json_len > 300? 300: json_len),
                        json, json_len > 300? "...": "");
            else
                tr_log (TR_LOG_INFO, "%s: %s \"%.*s\" -> %zu bytes", tr_actor_name (self),
                        driver->target, (int) len, text, tr_msg_size (reply));
            free (json);
        }
        tr_msg_destroy (&reply);
    }
    else
        tr_log (TR_LOG_INFO, "%s: %s \"%.*s\" -> error: %s", tr_actor_name (self),
                driver->target, (int) len, text, tr_strerror (rc));
    return 0;
}

static void
s_driver_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) reason;
    s_driver_t *driver = (s_driver_t *) state;
    tr_timer_cancel (tr_actor_node (self), driver->timer);
    s_driver_free (driver);
}

static const tr_actor_type_t s_driver = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "driver",
    .summary = "sends a script of messages to an actor, one every period",
    .behaviour = { s_driver_init, s_driver_handle, s_driver_terminate },
    .params = s_driver_params,
};

//  ---------------------------------------------------------------------

static const tr_actor_type_t *const s_types [] = {
    &s_counter, &s_driver, &s_echo, &s_flaky, &tr__port_type, &tr__http_type, &tr__llm_type,
    &tr__pool_type, &tr__router_type, &tr__chain_type,
    &tr__file_watch_type, &tr__git_watch_type,
    &tr__ant_type,
    &tr__graph_type,
    &tr__parallel_type,
    &tr__barrier_type,
    &tr__batch_type,
    &tr__orchestrator_type, &tr__evaluator_type,
    &tr__team_type, &tr__coordinator_type, NULL
};

const tr_actor_type_t *const *
tr__builtin_types (void)
{
    return s_types;
}
