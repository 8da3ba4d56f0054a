/*  tr_llm_test.c - tests of the LLM agent (actors/tr_llm.c, tr_llm.h).

    Offline: scripted rules (substring, regex groups, per-attempt
    answers), derived answers (deterministic, from the input, not one
    constant), scripted failures (fail, timeout, malformed), structured
    output (derived and valid; retried with the reason and then valid;
    retried and then TR_EOUTPUT with an llm.output_failed event), bad
    bodies and bad parameters, conversation history (turns one at a time,
    dropped or summarised at the bound), concurrency with a latency, the
    agent stopping with asks in flight, counters in status, tells, and the
    C API.

    HTTP: against the real local server (tests/tr_http_server.py on
    127.0.0.1): the request's body (model, temperature, max_tokens, extra
    fields, system prompt, history, response_format) and headers (the API
    key from the environment), invalid structured output retried then
    failed, the breaker opening on a failing backend, token accounting
    from `usage` (agent and backend), cache hits, history bound.
*/

#include "tr_test.h"
#include "tr_test_tls.h"
#include "troupe/tr_llm.h"
#include "tr_json.h"

#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

//  --------------------------------------------------------------------------
//  Helpers

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

static void
s_setup (void)
{
    tr_log_set_level (TR_LOG_ERROR);
    ck_assert_int_eq (tr_node_new (NULL, &s_node), TR_OK);
}

static void
s_teardown (void)
{
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    tr_node_destroy (&s_node);
}

//  Starts a tree from YAML text.
static void
s_start (const char *yaml)
{
    tr_tree_error_t err;
    char buf [600];
    int rc = tr_tree_parse (yaml, strlen (yaml), "llm.yaml", &s_tree, &err);
    ck_assert_msg (rc == TR_OK, "tree: %s", tr_tree_error_format (&err, buf, sizeof buf));
    char *reason = NULL;
    rc = tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &reason);
    ck_assert_msg (rc == TR_OK, "tr_sup_start: %s: %s", tr_errname (rc), reason? reason: "");
}


//  Asks `name` with a string; on TR_OK *answer_p is the string reply
//  (malloc'd).
static int
s_ask (const char *name, const char *prompt, int timeout_ms, char **answer_p)
{
    tr_msg_t *reply = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&pk, prompt, strlen (prompt));
    int rc = tr_ask (s_node, name, sb.data, sb.size, timeout_ms * tr_test_slowdown (), &reply, NULL);
    msgpack_sbuffer_destroy (&sb);
    if (answer_p)
        *answer_p = NULL;
    if (rc == TR_OK) {
        const char *text;
        size_t len;
        ck_assert_int_eq (tr_msg_str (reply, &text, &len), TR_OK);
        if (answer_p)
            *answer_p = strndup (text, len);
        tr_msg_destroy (&reply);
    }
    return rc;
}

//  Asks `name` with raw msgpack; on TR_OK *reply_p holds the reply.
static int
s_ask_raw (const char *name, const void *body, size_t size, int timeout_ms, tr_msg_t **reply_p)
{
    return tr_ask (s_node, name, body, size, timeout_ms * tr_test_slowdown (), reply_p, NULL);
}

//  A map body of string pairs: keys and values alternate, NULL-terminated.
static void
s_pack_map (msgpack_sbuffer *sb, const char *const *kv)
{
    size_t n = 0;
    while (kv [n * 2])
        n++;
    msgpack_sbuffer_init (sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str_with_body (&pk, kv [i * 2], strlen (kv [i * 2]));
        msgpack_pack_str_with_body (&pk, kv [i * 2 + 1], strlen (kv [i * 2 + 1]));
    }
}

//  The value of key in a reply map, or NULL. The reply is unpacked into
//  *u on the first call (u initialised, or destroyed since, by the
//  caller, who destroys it when done).
static const msgpack_object *
s_reply_get (tr_msg_t *reply, msgpack_unpacked *u, const char *key)
{
    if (!u->zone)
        ck_assert_int_eq (msgpack_unpack_next (u, tr_msg_body (reply), tr_msg_size (reply), NULL),
                          MSGPACK_UNPACK_SUCCESS);
    ck_assert_int_eq (u->data.type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < u->data.via.map.size; i++) {
        const msgpack_object *k = &u->data.via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &u->data.via.map.ptr [i].val;
    }
    return NULL;
}

static int64_t
s_info (const char *name, const char *key)
{
    int64_t value = 0;
    int rc = tr_actor_info_get (s_node, name, key, &value);
    ck_assert_msg (rc == TR_OK || rc == TR_ENOTFOUND, "info %s: %s", key, tr_errname (rc));
    return value;
}

static bool
s_contains (const char *text, const char *part)
{
    return text && strstr (text, part);
}

//  --------------------------------------------------------------------------
//  Offline: rules

START_TEST (test_offline_rules)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    params:\n"
        "      offline:\n"
        "        rules:\n"
        "          - {match: hello, answer: 'Hi there.'}\n"
        "          - {regex: '^add ([0-9]+) and ([0-9]+)$', answer: '$1 plus $2 costs $$3'}\n"
        "          - {match: again, answer: [first, second]}\n");
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "well hello you", 2000, &answer), TR_OK);
    ck_assert_str_eq (answer, "Hi there.");
    free (answer);
    ck_assert_int_eq (s_ask ("bot", "add 2 and 40", 2000, &answer), TR_OK);
    ck_assert_str_eq (answer, "2 plus 40 costs $3");
    free (answer);
    //  A list answers attempt by attempt: a plain ask makes one attempt.
    ck_assert_int_eq (s_ask ("bot", "again", 2000, &answer), TR_OK);
    ck_assert_str_eq (answer, "first");
    free (answer);
    //  No rule: a derived answer, never a rule's.
    ck_assert_int_eq (s_ask ("bot", "add two and forty", 2000, &answer), TR_OK);
    ck_assert (s_contains (answer, "add two and forty"));
    free (answer);
}
END_TEST

//  --------------------------------------------------------------------------
//  Offline: derived answers

START_TEST (test_offline_derived)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - {name: a, actor: llm}\n"
        "  - {name: b, actor: llm}\n"
        "  - {name: c, actor: llm, params: {offline: {seed: 7}}}\n"
        "  - {name: d, actor: llm, params: {offline: {seed: 7}}}\n");
    //  Deterministic: the same prompt, the same answer.
    char *a1, *a2, *other;
    ck_assert_int_eq (s_ask ("a", "What is the capital of France?", 2000, &a1), TR_OK);
    ck_assert_int_eq (s_ask ("a", "What is the capital of France?", 2000, &a2), TR_OK);
    ck_assert_str_eq (a1, a2);
    //  Made from the prompt: its words, its length, its key term.
    ck_assert (s_contains (a1, "What is the capital of France?"));
    ck_assert (s_contains (a1, "6 words"));
    ck_assert (s_contains (a1, "key term 'capital'"));
    //  Not one constant: other prompts give other answers.
    ck_assert_int_eq (s_ask ("a", "Name three rivers", 2000, &other), TR_OK);
    ck_assert_str_ne (a1, other);
    ck_assert (s_contains (other, "Name three rivers"));
    free (a2);
    free (other);
    //  The phrasing is chosen by a hash of the prompt and the seed: over
    //  a few prompts several openers show up.
    int openers = 0;
    const char *seen [8] = { 0 };
    for (int i = 0; i < 24; i++) {
        char prompt [32], *answer;
        snprintf (prompt, sizeof prompt, "question number %d", i);
        ck_assert_int_eq (s_ask ("b", prompt, 2000, &answer), TR_OK);
        char *colon = strchr (answer, ':');
        ck_assert_ptr_nonnull (colon);
        *colon = 0;
        bool known = false;
        for (int j = 0; j < openers && !known; j++)
            known = strcmp (seen [j], answer) == 0;
        if (!known && openers < 8)
            seen [openers++] = strdup (answer);
        free (answer);
    }
    ck_assert_int_ge (openers, 3);
    for (int j = 0; j < openers; j++)
        free ((void *) seen [j]);
    //  An empty prompt, and bytes that are not UTF-8 (the JSON between
    //  the backend and the agent carries them as U+FFFD): still answered.
    char *odd;
    ck_assert_int_eq (s_ask ("b", "", 2000, &odd), TR_OK);
    ck_assert (s_contains (odd, "0 words"));
    free (odd);
    ck_assert_int_eq (s_ask ("b", "caf\xe9 \xff\xfe ok", 2000, &odd), TR_OK);
    ck_assert (s_contains (odd, "caf\xef\xbf\xbd"));
    free (odd);
    //  The same seed answers the same; another seed may phrase it otherwise.
    char *c, *d;
    ck_assert_int_eq (s_ask ("c", "Tell me about troupe", 2000, &c), TR_OK);
    ck_assert_int_eq (s_ask ("d", "Tell me about troupe", 2000, &d), TR_OK);
    ck_assert_str_eq (c, d);
    free (c);
    free (d);
    free (a1);
}
END_TEST

//  --------------------------------------------------------------------------
//  Offline: scripted failures

START_TEST (test_offline_failures)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    breaker: off\n"
        "    params:\n"
        "      backend: {timeout: 300ms}\n"
        "      offline:\n"
        "        rules:\n"
        "          - {match: down, error: fail}\n"
        "          - {match: slow, error: timeout}\n"
        "          - {match: garbage, error: malformed}\n"
        "          - {match: late, error: timeout, latency: 5s}\n");
    ck_assert_int_eq (s_ask ("bot", "down", 2000, NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("bot", "garbage", 2000, NULL), TR_EHTTP);
    //  A timeout ends at the backend's attempt timeout...
    int64_t t0 = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("bot", "slow", 5000, NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - t0;
    ck_assert_int_ge (took, 290);
    ck_assert_int_lt (took, 3000 * tr_test_slowdown ());
    //  ... and the agent still answers afterwards.
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "fine now", 2000, &answer), TR_OK);
    free (answer);
    ck_assert_int_eq (s_info ("bot", "llm.failed"), 3);
    ck_assert_int_eq (s_info ("bot", "llm.answered"), 1);
}
END_TEST

//  A failing backend opens the agent's breaker: deferred asks answered
//  with errors count as failures.
START_TEST (test_offline_breaker)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    breaker: {failures: 3, reset_timeout: 10s}\n"
        "    params: {offline: {rules: [{match: down, error: fail}]}}\n");
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (s_ask ("bot", "down", 2000, NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("bot", "anything", 2000, NULL), TR_ECIRCUIT);
    ck_assert_int_eq (tr_breaker_reset (s_node, "bot"), TR_OK);
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "anything", 2000, &answer), TR_OK);
    free (answer);
}
END_TEST

//  --------------------------------------------------------------------------
//  Structured output

static const char *s_sig_yaml =
    "name: t\n"
    "children:\n"
    "  - name: judge\n"
    "    actor: llm\n"
    "    breaker: off\n"
    "    params:\n"
    "      signature:\n"
    "        instructions: Judge the claim.\n"
    "        inputs:\n"
    "          - {name: claim, desc: a claim}\n"
    "          - {name: source}\n"
    "        outputs:\n"
    "          - {name: verdict, type: enum, values: [right, wrong, unsure]}\n"
    "          - {name: score, type: number, desc: 0 to 1}\n"
    "          - {name: votes, type: int}\n"
    "          - {name: checked, type: bool}\n"
    "          - {name: keywords, type: list}\n"
    "          - {name: note, desc: one sentence}\n"
    "        reasoning: true\n"
    "      output_retries: 2\n"
    "      offline:\n"
    "        rules:\n"
    "          - match: 'claim: fixable'\n"
    "            answer:\n"
    "              - 'not json at all'\n"
    "              - '```json\n{\"reasoning\": \"r\", \"verdict\": \"right\", \"score\": 1, \"votes\": 3.0, \"checked\": true, \"keywords\": [\"a\"], \"note\": \"n\"}\n```'\n"
    "          - {match: 'claim: hopeless', answer: '{\"verdict\": \"maybe\"}'}\n";

START_TEST (test_signature_derived)
{
    s_start (s_sig_yaml);
    const char *kv [] = { "claim", "The moon is made of rock", "source", "a book", NULL };
    msgpack_sbuffer sb;
    s_pack_map (&sb, kv);
    tr_msg_t *r1 = NULL, *r2 = NULL;
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &r1), TR_OK);
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &r2), TR_OK);
    msgpack_sbuffer_destroy (&sb);
    //  Deterministic.
    ck_assert (tr_test_same_bytes (tr_msg_body (r1), tr_msg_size (r1),
                                   tr_msg_body (r2), tr_msg_size (r2)));
    //  Every output field, with a value of its type.
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    const msgpack_object *v = s_reply_get (r1, &u, "verdict");
    ck_assert_ptr_nonnull (v);
    ck_assert_int_eq (v->type, MSGPACK_OBJECT_STR);
    ck_assert (v->via.str.size >= 4);
    ck_assert_int_eq (u.data.via.map.size, 7);         //  6 outputs + reasoning
    ck_assert_int_eq (s_reply_get (r1, &u, "reasoning")->type, MSGPACK_OBJECT_STR);
    //  reasoning comes first
    ck_assert (u.data.via.map.ptr [0].key.via.str.size == 9);
    int t = s_reply_get (r1, &u, "score")->type;
    ck_assert (t == MSGPACK_OBJECT_FLOAT64 || t == MSGPACK_OBJECT_FLOAT32);
    t = s_reply_get (r1, &u, "votes")->type;
    ck_assert (t == MSGPACK_OBJECT_POSITIVE_INTEGER);
    ck_assert_int_eq (s_reply_get (r1, &u, "checked")->type, MSGPACK_OBJECT_BOOLEAN);
    const msgpack_object *list = s_reply_get (r1, &u, "keywords");
    ck_assert_int_eq (list->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_int_ge (list->via.array.size, 1);
    ck_assert_int_eq (list->via.array.ptr [0].type, MSGPACK_OBJECT_STR);
    const msgpack_object *note = s_reply_get (r1, &u, "note");
    ck_assert_int_eq (note->type, MSGPACK_OBJECT_STR);
    //  The note is made from the inputs.
    char *text = strndup (note->via.str.ptr, note->via.str.size);
    ck_assert (s_contains (text, "moon"));
    free (text);
    msgpack_unpacked_destroy (&u);
    tr_msg_destroy (&r1);
    tr_msg_destroy (&r2);
}
END_TEST

//  An event watcher: keeps the last llm.output_failed event's body.
static pthread_mutex_t s_event_lock = PTHREAD_MUTEX_INITIALIZER;
static char *s_event_json;
static size_t s_event_size;
static int s_events;

static int
s_watch_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    pthread_mutex_lock (&s_event_lock);
    s_events++;
    free (s_event_json);
    s_event_json = (char *) tr_test_copy (tr_msg_body (msg), tr_msg_size (msg));
    s_event_size = tr_msg_size (msg);
    //  Kept as raw bytes; searched with memmem below.
    pthread_mutex_unlock (&s_event_lock);
    return 0;
}

static bool
s_event_seen (void *arg)
{
    pthread_mutex_lock (&s_event_lock);
    bool seen = s_events > 0;
    pthread_mutex_unlock (&s_event_lock);
    return seen;
}

START_TEST (test_signature_retries)
{
    s_start (s_sig_yaml);
    tr_behaviour_t watch = { .handle = s_watch_handle };
    ck_assert_int_eq (tr_spawn (s_node, "watch", &watch, NULL, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "llm.", "watch"), TR_OK);

    //  Invalid on the first attempt, fenced but valid on the second.
    const char *fix [] = { "claim", "fixable", "source", "s", NULL };
    msgpack_sbuffer sb;
    s_pack_map (&sb, fix);
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &reply), TR_OK);
    msgpack_sbuffer_destroy (&sb);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    const msgpack_object *votes = s_reply_get (reply, &u, "votes");
    ck_assert_int_eq (votes->type, MSGPACK_OBJECT_POSITIVE_INTEGER);   //  3.0 -> 3
    ck_assert_int_eq (votes->via.u64, 3);
    msgpack_unpacked_destroy (&u);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (s_info ("judge", "llm.output_retries"), 1);
    ck_assert_int_eq (s_info ("judge", "llm.requests"), 2);

    //  Never fits: three attempts (two retries), then TR_EOUTPUT and an
    //  event that says why.
    const char *bad [] = { "claim", "hopeless", "source", "s", NULL };
    s_pack_map (&sb, bad);
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &reply), TR_EOUTPUT);
    msgpack_sbuffer_destroy (&sb);
    ck_assert_int_eq (s_info ("judge", "llm.output_retries"), 3);
    ck_assert_int_eq (s_info ("judge", "llm.requests"), 5);
    ck_assert_int_eq (s_info ("judge", "llm.output_failed"), 1);
    ck_assert (tr_test_wait_until (s_event_seen, NULL, 2000 * tr_test_slowdown ()));
    pthread_mutex_lock (&s_event_lock);
    ck_assert_int_eq (s_events, 1);
    const char *why = "field \"reasoning\" is missing";
    ck_assert_ptr_nonnull (memmem (s_event_json, s_event_size, "llm.output_failed", 17));
    ck_assert_ptr_nonnull (memmem (s_event_json, s_event_size, why, strlen (why)));
    free (s_event_json);
    s_event_json = NULL;
    pthread_mutex_unlock (&s_event_lock);
}
END_TEST

//  Bad bodies are refused with TR_EINVAL, and the agent goes on.
START_TEST (test_bad_bodies)
{
    s_start (s_sig_yaml);
    tr_msg_t *reply = NULL;
    tr_body_t n = tr_test_pack_uint (12);
    ck_assert_int_eq (s_ask_raw ("judge", n.data, n.size, 2000, &reply), TR_EINVAL);
    ck_assert_int_eq (s_ask_raw ("judge", NULL, 0, 2000, &reply), TR_EINVAL);
    //  A string needs a signature of one input; this one has two.
    ck_assert_int_eq (s_ask ("judge", "a prompt", 2000, NULL), TR_EINVAL);
    msgpack_sbuffer sb;
    const char *missing [] = { "claim", "x", NULL };
    s_pack_map (&sb, missing);
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &reply), TR_EINVAL);
    msgpack_sbuffer_destroy (&sb);
    const char *unknown [] = { "claim", "x", "source", "y", "extra", "z", NULL };
    s_pack_map (&sb, unknown);
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &reply), TR_EINVAL);
    msgpack_sbuffer_destroy (&sb);
    //  A prompt with a NUL byte.
    ck_assert_int_eq (s_ask_raw ("judge", "\xa3" "a\0b", 4, 2000, &reply), TR_EINVAL);
    //  Still answering.
    const char *good [] = { "claim", "x", "source", "y", NULL };
    s_pack_map (&sb, good);
    ck_assert_int_eq (s_ask_raw ("judge", sb.data, sb.size, 2000, &reply), TR_OK);
    msgpack_sbuffer_destroy (&sb);
    tr_msg_destroy (&reply);
    //  A map to an agent without a signature.
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    s_start ("name: t2\nchildren: [{name: plain, actor: llm}]\n");
    s_pack_map (&sb, good);
    ck_assert_int_eq (s_ask_raw ("plain", sb.data, sb.size, 2000, &reply), TR_EINVAL);
    msgpack_sbuffer_destroy (&sb);
}
END_TEST

//  --------------------------------------------------------------------------
//  Parameters

//  Nested parameters are checked when the tree file is loaded (the type's
//  check): the file is refused, the error names the line (and column)
//  of the value at fault, the key and what was expected.
START_TEST (test_bad_params)
{
    struct { const char *params; const char *expected; } cases [] = {
        { "{backend: {max_concurrent: -1}}", "'backend.max_concurrent' must be from 1 to 1000000, not -1" },
        { "{backend: {timeout: 0}}", "'backend.timeout' must be more than 0" },
        { "{backend: {timeout: 10 s}}", "'backend.timeout' must be a duration such as 250ms" },
        { "{backend: {colour: red}}", "unknown key 'colour' in 'backend'; expected one of: name," },
        { "{history: {max_messages: 1}}", "'history.max_messages' must be from 2 to 100000, not 1" },
        { "{history: {overflow: forget}}", "'history.overflow' must be drop or summarize, not 'forget'" },
        { "{history: {max_messages: 4, keep: 4}}", "'history.keep' (4) must be less than 'history.max_messages' (4)" },
        { "{base_url: 'ftp://x'}", "'base_url' must start with http:// or https://, not 'ftp://x'" },
        { "{base_url: 'http://127.0.0.1:1/v1'}", "'model' is required with 'base_url'" },
        { "{api_key_env: TR_LLM_TEST_NO_SUCH_VARIABLE}", "the environment variable TR_LLM_TEST_NO_SUCH_VARIABLE (named by 'api_key_env') is not set" },
        { "{temperature: 3}", "'temperature' must be from 0 to 2, not 3" },
        { "{extra: {model: x}}", "'extra' may not set 'model'" },
        { "{offline: {rules: [{match: a}]}}", "offline.rules[1] needs exactly one of 'answer', 'error'" },
        { "{offline: {rules: [{answer: a}]}}", "offline.rules[1] needs exactly one of 'match', 'regex'" },
        { "{offline: {rules: [{regex: '(', answer: a}]}}", "offline.rules[1]: 'regex' '(' is not a POSIX extended regular expression" },
        { "{offline: {rules: [{match: a, error: explode}]}}", "'error' must be fail, timeout or malformed, not 'explode'" },
        { "{offline: {latency: soon}}", "'offline.latency' must be a duration" },
        { "{signature: {inputs: [{name: q}]}}", "'signature' needs 'outputs'" },
        { "{signature: {inputs: [{name: q}], outputs: [{name: a, type: float}]}}", "field 'a' has type 'float'; expected one of: string, int" },
        { "{signature: {inputs: [{name: q}], outputs: [{name: a, type: enum}]}}", "'values' is required for type enum" },
        { "{signature: {inputs: [{name: q}, {name: q}], outputs: [{name: a}]}}", "field name 'q' is used twice" },
        { "{signature: {inputs: [{name: 'two words'}], outputs: [{name: a}]}}", "field name 'two words' must be 1 to 63 letters" },
        { "{signature: {inputs: [{name: q}], outputs: [{name: reasoning}]}}", "'reasoning' is reserved" },
        { "{base_url: 'https://127.0.0.1:1/v1', model: m, backend: {ca_file: /nonexistent/ca.pem}}",
          "'backend.ca_file' cannot be read: '/nonexistent/ca.pem': No such file or directory" },
        { "{base_url: 'https://127.0.0.1:1/v1', model: m, backend: {ca_file: /tmp}}",
          "'backend.ca_file' is not a file: '/tmp'" },
        { "{base_url: 'http://127.0.0.1:1/v1', model: m, backend: {ca_file: /etc/passwd}}",
          "'backend.ca_file' is only for an https:// base_url" },
        { "{backend: {ca_file: /etc/passwd}}", "'backend.ca_file' is only for an https:// base_url" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char yaml [512];
        snprintf (yaml, sizeof yaml,
                  "name: t%zu\nchildren:\n  - {name: bad, actor: llm, params: %s}\n",
                  i, cases [i].params);
        tr_tree_t *tree = NULL;
        tr_tree_error_t err;
        int rc = tr_tree_parse (yaml, strlen (yaml), "llm.yaml", &tree, &err);
        ck_assert_msg (rc == TR_EMALFORMED && err.line == 3 && err.column >= 37
                    && s_contains (err.message, "bad: ")
                    && s_contains (err.message, cases [i].expected),
                       "case %zu: %s\n  got: %s at %d:%d", i, cases [i].params,
                       err.message, err.line, err.column);
        tr_tree_destroy (&tree);
    }
    //  A mistake deep down is reported where it is written.
    const char *deep =
        "name: deep\n"
        "children:\n"
        "  - name: bad\n"
        "    actor: llm\n"
        "    params:\n"
        "      signature:\n"
        "        inputs: [{name: q}]\n"
        "        outputs:\n"
        "          - {name: a}\n"
        "          - {name: b, type: integr}\n";
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (deep, strlen (deep), "llm.yaml", &tree, &err), TR_EMALFORMED);
    ck_assert_int_eq (err.line, 10);
    ck_assert_int_eq (err.column, 13);
    ck_assert_msg (s_contains (err.message, "field 'b' has type 'integr'"), "%s", err.message);
    tr_tree_destroy (&tree);
    //  The CA file, at its own position.
    const char *ca =
        "name: ca\n"
        "children:\n"
        "  - name: bad\n"
        "    actor: llm\n"
        "    params:\n"
        "      base_url: 'https://127.0.0.1:1/v1'\n"
        "      model: m\n"
        "      backend: {timeout: 5s, ca_file: /nonexistent/ca.pem}\n";
    ck_assert_int_eq (tr_tree_parse (ca, strlen (ca), "llm.yaml", &tree, &err), TR_EMALFORMED);
    char buf [600];
    ck_assert_str_eq (tr_tree_error_format (&err, buf, sizeof buf),
                      "llm.yaml:8:39: bad: 'backend.ca_file' cannot be read: "
                      "'/nonexistent/ca.pem': No such file or directory");
}
END_TEST

//  --------------------------------------------------------------------------
//  Conversation history

START_TEST (test_history_drop)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: chat\n"
        "    actor: llm\n"
        "    params: {history: {max_messages: 4}}\n");
    //  Each turn's answer says its turn: the number of user messages the
    //  request carried. With 4 messages kept (2 turns) it never passes 3.
    for (int i = 1; i <= 6; i++) {
        char prompt [32], *answer, expect [32];
        snprintf (prompt, sizeof prompt, "message %d", i);
        ck_assert_int_eq (s_ask ("chat", prompt, 2000, &answer), TR_OK);
        snprintf (expect, sizeof expect, "[turn %d]", i < 3? i: 3);
        ck_assert_msg (s_contains (answer, expect), "turn %d: %s", i, answer);
        free (answer);
    }
    ck_assert_int_ge (s_info ("chat", "llm.history_dropped"), 1);
}
END_TEST

//  The bound in tokens: a turn (question and answer) is about 26
//  estimated tokens here, so 40 keep one turn.
START_TEST (test_history_tokens)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: chat\n"
        "    actor: llm\n"
        "    params: {history: {max_messages: 100, max_tokens: 40}}\n");
    for (int i = 1; i <= 5; i++) {
        char prompt [32], *answer, expect [32];
        snprintf (prompt, sizeof prompt, "message %d", i);
        ck_assert_int_eq (s_ask ("chat", prompt, 2000, &answer), TR_OK);
        snprintf (expect, sizeof expect, "[turn %d]", i < 2? i: 2);
        ck_assert_msg (s_contains (answer, expect), "turn %d: %s", i, answer);
        free (answer);
    }
    ck_assert_int_ge (s_info ("chat", "llm.history_dropped"), 3);
}
END_TEST

START_TEST (test_history_summarize)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - name: chat\n"
        "    actor: llm\n"
        "    params: {history: {max_messages: 6, overflow: summarize, keep: 2}}\n");
    for (int i = 1; i <= 5; i++) {
        char prompt [32], *answer;
        snprintf (prompt, sizeof prompt, "fact number %d", i);
        ck_assert_int_eq (s_ask ("chat", prompt, 2000, &answer), TR_OK);
        free (answer);
    }
    //  After turn 4 the history (8 messages) passed 6: the oldest 6 were
    //  summarised into one, 2 kept; turn 5 saw 1 + 2 + its own.
    ck_assert_int_eq (s_info ("chat", "llm.summaries"), 1);
    char *answer;
    ck_assert_int_eq (s_ask ("chat", "and now?", 2000, &answer), TR_OK);
    ck_assert_msg (s_contains (answer, "[turn 3]"), "%s", answer);
    free (answer);
}
END_TEST

//  Turns run one at a time, in order, even when asked all at once.
typedef struct {
    const char *agent;
    char prompt [32];
    int rc;
    char *answer;
    int64_t done_ms;
} s_asker_t;

static void *
s_asker (void *arg)
{
    s_asker_t *a = (s_asker_t *) arg;
    a->rc = s_ask (a->agent, a->prompt, 10000, &a->answer);
    a->done_ms = tr_test_now_ms ();
    return NULL;
}

static int64_t
s_ask_all (const char *agent, s_asker_t *askers, int n)
{
    pthread_t threads [64];
    int64_t t0 = tr_test_now_ms ();
    for (int i = 0; i < n; i++) {
        askers [i].agent = agent;
        snprintf (askers [i].prompt, sizeof askers [i].prompt, "ask %d", i);
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_asker, &askers [i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join (threads [i], NULL);
    return tr_test_now_ms () - t0;
}

START_TEST (test_concurrency)
{
    s_start (
        "name: t\n"
        "children:\n"
        "  - {name: free, actor: llm, params: {offline: {latency: 200ms}}}\n"
        "  - name: chat\n"
        "    actor: llm\n"
        "    params: {history: {max_messages: 40}, offline: {latency: 100ms}}\n");
    //  Without history, 8 asks at once overlap: about one latency.
    s_asker_t askers [8] = { 0 };
    int64_t took = s_ask_all ("free", askers, 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq (askers [i].rc, TR_OK);
        free (askers [i].answer);
    }
    ck_assert_int_ge (took, 195);
    ck_assert_int_lt (took, 1000 * tr_test_slowdown ());
    //  With history, turns take their turn: 4 x 100 ms at least, and each
    //  saw the ones before it (turns 1 to 4, each once).
    s_asker_t turns [4] = { 0 };
    took = s_ask_all ("chat", turns, 4);
    ck_assert_int_ge (took, 395);
    bool seen [5] = { false };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq (turns [i].rc, TR_OK);
        for (int t = 1; t <= 4; t++) {
            char mark [16];
            snprintf (mark, sizeof mark, "[turn %d]", t);
            if (s_contains (turns [i].answer, mark)) {
                ck_assert (!seen [t]);
                seen [t] = true;
            }
        }
        free (turns [i].answer);
    }
    for (int t = 1; t <= 4; t++)
        ck_assert_msg (seen [t], "no answer for turn %d", t);
}
END_TEST

//  Stopping the agent answers what is in flight or waiting with
//  TR_ESTOPPED, at once.
START_TEST (test_stop_in_flight)
{
    tr_llm_opts_t opts = { .offline_latency_ms = 30000, .history_max_messages = 10 };
    ck_assert_int_eq (tr_llm_spawn (s_node, "slow", &opts, NULL), TR_OK);
    s_asker_t askers [3] = { 0 };
    pthread_t threads [3];
    for (int i = 0; i < 3; i++) {
        askers [i].agent = "slow";
        snprintf (askers [i].prompt, sizeof askers [i].prompt, "ask %d", i);
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_asker, &askers [i]), 0);
    }
    //  One turn in flight, two waiting.
    struct timespec ts = { 0, 200 * 1000000L };
    nanosleep (&ts, NULL);
    int64_t t0 = tr_test_now_ms ();
    ck_assert_int_eq (tr_actor_stop (s_node, "slow", 5000), TR_OK);
    for (int i = 0; i < 3; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_int_eq (askers [i].rc, TR_ESTOPPED);
    }
    ck_assert_int_lt (tr_test_now_ms () - t0, 3000 * tr_test_slowdown ());
}
END_TEST

//  At most 1024 turns wait for the conversation; past that, TR_EFULL.
START_TEST (test_turns_full)
{
    tr_llm_opts_t opts = { .offline_latency_ms = 60000, .history_max_messages = 10 };
    ck_assert_int_eq (tr_llm_spawn (s_node, "busy", &opts, NULL), TR_OK);
    tr_body_t b = tr_test_pack_str ("a turn");
    //  One turn under way, 1024 waiting (tells are turns too).
    for (int i = 0; i < 1025; i++)
        ck_assert_int_eq (tr_tell (s_node, "busy", b.data, b.size, NULL), TR_OK);
    ck_assert_int_eq (s_ask ("busy", "one too many", 5000, NULL), TR_EFULL);
    ck_assert_int_eq (s_info ("busy", "llm.failed"), 1);
    //  Stopping fails them all, at once.
    int64_t t0 = tr_test_now_ms ();
    ck_assert_int_eq (tr_actor_stop (s_node, "busy", 5000), TR_OK);
    ck_assert_int_lt (tr_test_now_ms () - t0, 3000 * tr_test_slowdown ());
}
END_TEST

//  --------------------------------------------------------------------------
//  Counters, tells, the C API

START_TEST (test_counters_and_tells)
{
    s_start ("name: t\nchildren: [{name: bot, actor: llm}]\n");
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "one two three four five six seven eight", 2000, &answer), TR_OK);
    free (answer);
    int64_t prompt = s_info ("bot", "llm.prompt_tokens");
    int64_t completion = s_info ("bot", "llm.completion_tokens");
    ck_assert_int_ge (prompt, 10);              //  39 bytes + 4 of framing
    ck_assert_int_ge (completion, 5);
    //  A tell is handled like an ask; its answer goes to the log.
    tr_body_t b = tr_test_pack_str ("a tell");
    ck_assert_int_eq (tr_tell (s_node, "bot", b.data, b.size, NULL), TR_OK);
    ck_assert_int_eq (s_ask ("bot", "sync", 2000, &answer), TR_OK);
    free (answer);
    ck_assert_int_eq (s_info ("bot", "llm.asks"), 3);
    ck_assert_int_eq (s_info ("bot", "llm.answered"), 3);
    ck_assert_int_gt (s_info ("bot", "llm.prompt_tokens"), prompt);
    //  The counters are in the tree's status, under the child.
    uint8_t *status;
    size_t len;
    ck_assert_int_eq (tr_sup_status (s_sup, &status, &len), TR_OK);
    ck_assert_ptr_nonnull (memmem (status, len, "llm.prompt_tokens", 17));
    free (status);
    //  The info API's own errors.
    int64_t v;
    ck_assert_int_eq (tr_actor_info_get (s_node, "bot", "no.such.key", &v), TR_ENOTFOUND);
    ck_assert_int_eq (tr_actor_info_get (s_node, "nobody", "llm.asks", &v), TR_ENOACTOR);
}
END_TEST

//  tr_actor_info_set/add/get themselves (the counters the agent uses).
static int
s_info_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    int results [6];
    results [0] = tr_actor_info_set (self, "a", 5);
    results [1] = tr_actor_info_add (self, "a", -2);
    results [2] = tr_actor_info_add (self, "", 1);
    results [3] = tr_actor_info_set (self, "a-key-of-32-bytes-is-one-too-lon", 1);
    for (int i = 1; i < 16; i++) {
        char key [8];
        snprintf (key, sizeof key, "k%d", i);
        tr_actor_info_set (self, key, i);
    }
    results [4] = tr_actor_info_set (self, "seventeenth", 1);
    results [5] = tr_actor_info_set (NULL, "a", 1);
    bool ok = results [0] == TR_OK && results [1] == TR_OK && results [2] == TR_EINVAL
           && results [3] == TR_EINVAL && results [4] == TR_ELIMIT && results [5] == TR_EINVAL;
    tr_body_t b = tr_test_pack_uint (ok);
    return tr_reply (msg, b.data, b.size);
}

START_TEST (test_actor_info)
{
    tr_behaviour_t behaviour = { .handle = s_info_handle };
    ck_assert_int_eq (tr_spawn (s_node, "counts", &behaviour, NULL, NULL, NULL), TR_OK);
    tr_msg_t *reply = NULL;
    tr_body_t b = tr_test_pack_uint (1);
    ck_assert_int_eq (tr_ask (s_node, "counts", b.data, b.size, 2000, &reply, NULL), TR_OK);
    ck_assert_int_eq (tr_test_unpack_uint (tr_msg_body (reply), tr_msg_size (reply)), 1);
    tr_msg_destroy (&reply);
    ck_assert_int_eq (s_info ("counts", "a"), 3);
    ck_assert_int_eq (s_info ("counts", "k15"), 15);
    int64_t v;
    ck_assert_int_eq (tr_actor_info_get (s_node, "counts", "seventeenth", &v), TR_ENOTFOUND);
    ck_assert_int_eq (tr_actor_info_get (s_node, "counts", NULL, &v), TR_EINVAL);
}
END_TEST

START_TEST (test_c_api)
{
    static const char *const labels [] = { "spam", "ham", NULL };
    tr_llm_field_t inputs [] = { { .name = "email", .desc = "the message" } };
    tr_llm_field_t outputs [] = {
        { .name = "label", .type = TR_LLM_ENUM, .values = labels },
        { .name = "confidence", .type = TR_LLM_NUMBER }
    };
    tr_llm_signature_t sig = {
        .instructions = "Classify the email.",
        .inputs = inputs, .input_count = 1,
        .outputs = outputs, .output_count = 2
    };
    tr_llm_rule_t rules [] = {
        { .match = "WIN MONEY", .answer = "{\"label\": \"spam\", \"confidence\": 0.99}", .latency_ms = -1 }
    };
    tr_llm_opts_t opts = { .signature = &sig, .rules = rules, .rule_count = 1 };
    ck_assert_int_eq (tr_llm_spawn (s_node, "filter", &opts, NULL), TR_OK);
    //  A string ask to a signature of one input.
    tr_body_t b = tr_test_pack_str ("WIN MONEY NOW");
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (s_ask_raw ("filter", b.data, b.size, 2000, &reply), TR_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    const msgpack_object *label = s_reply_get (reply, &u, "label");
    ck_assert_int_eq (label->via.str.size, 4);
    ck_assert (memcmp (label->via.str.ptr, "spam", 4) == 0);
    ck_assert_int_eq (u.data.via.map.size, 2);
    msgpack_unpacked_destroy (&u);
    tr_msg_destroy (&reply);
    //  Derived: a label among the values.
    b = tr_test_pack_str ("lunch on friday?");
    ck_assert_int_eq (s_ask_raw ("filter", b.data, b.size, 2000, &reply), TR_OK);
    label = s_reply_get (reply, &u, "label");
    ck_assert (label->via.str.size == 4 || label->via.str.size == 3);
    msgpack_unpacked_destroy (&u);
    tr_msg_destroy (&reply);
    //  Options the agent refuses: spawn fails with TR_EINIT.
    tr_llm_opts_t bad = { .base_url = "http://127.0.0.1:1/v1" };     //  no model
    ck_assert_int_eq (tr_llm_spawn (s_node, "bad", &bad, NULL), TR_EINIT);
    tr_llm_field_t no_values [] = { { .name = "x", .type = TR_LLM_ENUM } };
    tr_llm_signature_t bad_sig = { .inputs = inputs, .input_count = 1,
                                   .outputs = no_values, .output_count = 1 };
    tr_llm_opts_t bad2 = { .signature = &bad_sig };
    ck_assert_int_eq (tr_llm_spawn (s_node, "bad2", &bad2, NULL), TR_EINVAL);
    ck_assert_ptr_eq (tr_llm_type (), tr_actor_type_find ("llm"));
}
END_TEST

//  --------------------------------------------------------------------------
//  HTTP: the local server

typedef struct {
    pid_t pid;
    int in;                             //  its standard input (closing kills it)
    int port;
    char base [64];                     //  http://127.0.0.1:PORT/v1
} s_server_t;

//  Starts the server with a script; HTTPS with cert and key when they are
//  not NULL (srv->base is then https://...).
static void
s_server_spawn (s_server_t *srv, const char *script_json, const char *cert, const char *key)
{
    char path [] = "/tmp/tr_llm_test_XXXXXX";
    int fd = mkstemp (path);
    ck_assert_int_ge (fd, 0);
    ck_assert_int_eq (write (fd, script_json, strlen (script_json)), (ssize_t) strlen (script_json));
    close (fd);
    int in [2], out [2];
    ck_assert_int_eq (pipe (in), 0);
    ck_assert_int_eq (pipe (out), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init (&fa);
    posix_spawn_file_actions_adddup2 (&fa, in [0], 0);
    posix_spawn_file_actions_adddup2 (&fa, out [1], 1);
    posix_spawn_file_actions_addclose (&fa, in [1]);
    posix_spawn_file_actions_addclose (&fa, out [0]);
    char *argv [] = { "/usr/bin/python3", TROUPE_SOURCE_DIR "/tests/tr_http_server.py",
                      "--script", path, cert? "--cert": NULL, (char *) cert,
                      "--key", (char *) key, NULL };
    ck_assert_int_eq (posix_spawn (&srv->pid, argv [0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&fa);
    close (in [0]);
    close (out [1]);
    srv->in = in [1];
    char line [64] = "";
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read (out [0], line + n, 1);
        if (r <= 0 || line [n] == '\n')
            break;
        n++;
    }
    line [n] = 0;
    close (out [0]);
    unlink (path);
    ck_assert_msg (sscanf (line, "PORT %d", &srv->port) == 1, "server said '%s'", line);
    snprintf (srv->base, sizeof srv->base, "%s://127.0.0.1:%d/v1", cert? "https": "http",
              srv->port);
}

static void
s_server_start (s_server_t *srv, const char *script_json)
{
    s_server_spawn (srv, script_json, NULL, NULL);
}

static void
s_server_stop (s_server_t *srv)
{
    close (srv->in);
    int status;
    waitpid (srv->pid, &status, 0);
}

//  A GET through the node's own engine; returns the body (malloc'd).
typedef struct {
    sem_t done;
    char *body;
    int error;
} s_get_t;

static void
s_get_done (const tr_http_result_t *result, void *arg)
{
    s_get_t *get = (s_get_t *) arg;
    get->error = result->error;
    get->body = strndup (result->body, result->size);
    sem_post (&get->done);
}

static char *
s_server_get (s_server_t *srv, const char *path)
{
    tr_http_backend_opts_t opts = { .name = "test-control", .max_retries = -1 };
    ck_assert_int_eq (tr_http_backend_set (s_node, &opts), TR_OK);
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", srv->port, path);
    s_get_t get = { .body = NULL };
    sem_init (&get.done, 0, 0);
    tr_http_request_t req = { .backend = "test-control", .url = url };
    ck_assert_int_eq (tr_http_submit (s_node, &req, s_get_done, &get, NULL), TR_OK);
    sem_wait (&get.done);
    sem_destroy (&get.done);
    ck_assert_int_eq (get.error, TR_OK);
    return get.body;
}

//  The server's log, parsed: the requests' bodies are JSON text in it.
static char *
s_server_log (s_server_t *srv)
{
    return s_server_get (srv, "/_log");
}

//  Request number i (from 0) in the log, as msgpack (unpacked into *u).
static const msgpack_object *
s_logged (const char *log_json, size_t i, msgpack_unpacked *u, char **mp_p, char **body_mp_p)
{
    //  The log is JSON: read with the library's own parser.
    size_t size;
    ck_assert_int_eq (tr__json_parse (log_json, strlen (log_json), mp_p, &size, NULL), 0);
    msgpack_unpacked all;
    msgpack_unpacked_init (&all);
    ck_assert_int_eq (msgpack_unpack_next (&all, *mp_p, size, NULL), MSGPACK_UNPACK_SUCCESS);
    ck_assert_int_eq (all.data.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_int_gt (all.data.via.array.size, i);
    const msgpack_object *entry = &all.data.via.array.ptr [i];
    const msgpack_object *body = NULL;
    for (uint32_t k = 0; k < entry->via.map.size; k++)
        if (entry->via.map.ptr [k].key.via.str.size == 4
        &&  memcmp (entry->via.map.ptr [k].key.via.str.ptr, "body", 4) == 0)
            body = &entry->via.map.ptr [k].val;
    ck_assert_ptr_nonnull (body);
    size_t body_size;
    ck_assert_int_eq (tr__json_parse (body->via.str.ptr, body->via.str.size, body_mp_p,
                                      &body_size, NULL), 0);
    msgpack_unpacked_destroy (&all);
    msgpack_unpacked_init (u);
    ck_assert_int_eq (msgpack_unpack_next (u, *body_mp_p, body_size, NULL), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
}

static const msgpack_object *
s_obj (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (map->via.map.ptr [i].key.via.str.size == strlen (key)
        &&  memcmp (map->via.map.ptr [i].key.via.str.ptr, key, strlen (key)) == 0)
            return &map->via.map.ptr [i].val;
    return NULL;
}

static bool
s_str_is (const msgpack_object *o, const char *text)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen (text)
        && memcmp (o->via.str.ptr, text, o->via.str.size) == 0;
}

static bool
s_str_has (const msgpack_object *o, const char *part)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return false;
    char *text = strndup (o->via.str.ptr, o->via.str.size);
    bool has = strstr (text, part) != NULL;
    free (text);
    return has;
}

//  The request body: model, messages (system, history, user), temperature,
//  max_tokens, extra fields; the key from the environment in its header.
START_TEST (test_http_request)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"chat_echo\": true}]}]}");
    setenv ("TR_LLM_TEST_KEY", "sk-test-123", 1);
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    params:\n"
        "      base_url: '%s/'\n"
        "      model: tiny-model\n"
        "      api_key_env: TR_LLM_TEST_KEY\n"
        "      system: Be brief.\n"
        "      temperature: 0.25\n"
        "      max_tokens: 64\n"
        "      extra: {top_p: 0.5, seed: 42, stop: ['\\n\\n'], options: {num_ctx: 2048}}\n"
        "      history: {max_messages: 10}\n", srv.base);
    s_start (yaml);
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "first question", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "echo: first question");
    free (answer);
    ck_assert_int_eq (s_ask ("bot", "second question", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "echo: second question");
    free (answer);

    char *log = s_server_log (&srv);
    msgpack_unpacked u;
    char *mp = NULL, *body_mp = NULL;
    const msgpack_object *req = s_logged (log, 1, &u, &mp, &body_mp);
    ck_assert (s_str_is (s_obj (req, "model"), "tiny-model"));
    ck_assert_double_eq_tol (s_obj (req, "temperature")->via.f64, 0.25, 1e-9);
    ck_assert_int_eq (s_obj (req, "max_tokens")->via.u64, 64);
    ck_assert_double_eq_tol (s_obj (req, "top_p")->via.f64, 0.5, 1e-9);
    ck_assert_int_eq (s_obj (req, "seed")->via.u64, 42);
    ck_assert_int_eq (s_obj (req, "stop")->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_int_eq (s_obj (s_obj (req, "options"), "num_ctx")->via.u64, 2048);
    //  The second turn carries the first: system, user, assistant, user.
    const msgpack_object *msgs = s_obj (req, "messages");
    ck_assert_int_eq (msgs->via.array.size, 4);
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [0], "role"), "system"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [0], "content"), "Be brief."));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [1], "content"), "first question"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [2], "role"), "assistant"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [2], "content"), "echo: first question"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [3], "content"), "second question"));
    msgpack_unpacked_destroy (&u);
    free (mp);
    free (body_mp);
    ck_assert (s_contains (log, "\"authorization\": \"Bearer sk-test-123\"")
            || s_contains (log, "\"authorization\":\"Bearer sk-test-123\""));
    ck_assert (s_contains (log, "\"/v1/chat/completions\""));
    free (log);
    s_server_stop (&srv);
}
END_TEST

//  Token accounting from `usage`, per agent and per backend; the cache.
START_TEST (test_http_tokens_and_cache)
{
    s_server_t srv;
    //  The server counts words: prompt "alpha beta gamma" = 3 tokens,
    //  answer "one two three four five" = 5.
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"chat\": \"one two three four five\"}]}]}");
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    params:\n"
        "      base_url: '%s'\n"
        "      model: m\n"
        "      backend: {name: shared, cache_entries: 16, cache_ttl: 1m, tokens_per_minute: 100000}\n",
        srv.base);
    s_start (yaml);
    char *answer;
    ck_assert_int_eq (s_ask ("bot", "alpha beta gamma", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "one two three four five");
    free (answer);
    ck_assert_int_eq (s_info ("bot", "llm.prompt_tokens"), 3);
    ck_assert_int_eq (s_info ("bot", "llm.completion_tokens"), 5);
    //  The backend's count was corrected from the estimate to the usage.
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (s_node, "shared", &stats), TR_OK);
    ck_assert_int_eq (stats.tokens, 8);
    //  The same ask again: answered from the cache, not the server.
    ck_assert_int_eq (s_ask ("bot", "alpha beta gamma", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "one two three four five");
    free (answer);
    ck_assert_int_eq (s_info ("bot", "llm.cache_hits"), 1);
    ck_assert_int_eq (tr_http_stats (s_node, "shared", &stats), TR_OK);
    ck_assert_int_eq (stats.cache_hits, 1);
    ck_assert_int_eq (stats.tokens, 8);
    char *st = s_server_get (&srv, "/_stats");
    ck_assert_msg (s_contains (st, "\"requests\": 1") || s_contains (st, "\"requests\":1"), "%s", st);
    free (st);
    //  The tree's status has the backend, under "llm" at its root.
    uint8_t *status;
    size_t len;
    ck_assert_int_eq (tr_sup_status (s_sup, &status, &len), TR_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    ck_assert_int_eq (msgpack_unpack_next (&u, (const char *) status, len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *backends = s_obj (&u.data, "llm");
    ck_assert_ptr_nonnull (backends);
    ck_assert_int_eq (backends->via.array.size, 1);
    const msgpack_object *b = &backends->via.array.ptr [0];
    ck_assert (s_str_is (s_obj (b, "name"), "shared"));
    ck_assert_int_eq (s_obj (b, "agents")->via.u64, 1);
    ck_assert_int_eq (s_obj (b, "tokens")->via.u64, 8);
    ck_assert_int_eq (s_obj (b, "cache_hits")->via.u64, 1);
    ck_assert_int_eq (s_obj (b, "completed_ok")->via.u64, 2);
    msgpack_unpacked_destroy (&u);
    free (status);
    s_server_stop (&srv);
}
END_TEST

//  Structured output over HTTP: response_format, the retry carrying the
//  reason, TR_EOUTPUT after the retries.
START_TEST (test_http_structured)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"chat\": \"Sure! The answer is 4.\"},"
                          "                 {\"chat\": \"{\\\"answer\\\": 4}\"},"
                          "                 {\"chat\": \"{\\\"answer\\\": \\\"four\\\"}\"}],"
                          " \"repeat\": \"last\"}]}");
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\n"
        "children:\n"
        "  - name: math\n"
        "    actor: llm\n"
        "    breaker: off\n"
        "    params:\n"
        "      base_url: '%s'\n"
        "      model: m\n"
        "      output_retries: 1\n"
        "      signature:\n"
        "        inputs: [{name: question}]\n"
        "        outputs: [{name: answer, type: int, desc: the number}]\n", srv.base);
    s_start (yaml);
    tr_body_t b = tr_test_pack_str ("2 + 2?");
    tr_msg_t *reply = NULL;
    ck_assert_int_eq (s_ask_raw ("math", b.data, b.size, 5000, &reply), TR_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    ck_assert_int_eq (s_reply_get (reply, &u, "answer")->via.u64, 4);
    msgpack_unpacked_destroy (&u);
    tr_msg_destroy (&reply);
    //  The second request carried the bad answer and why it did not fit.
    char *log = s_server_log (&srv);
    char *mp = NULL, *body_mp = NULL;
    const msgpack_object *req = s_logged (log, 1, &u, &mp, &body_mp);
    ck_assert (s_str_is (s_obj (s_obj (req, "response_format"), "type"), "json_object"));
    const msgpack_object *msgs = s_obj (req, "messages");
    ck_assert_int_eq (msgs->via.array.size, 4);
    ck_assert (s_str_has (s_obj (&msgs->via.array.ptr [0], "content"), "\"answer\" (integer): the number"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [1], "content"), "question: 2 + 2?\n"));
    ck_assert (s_str_is (s_obj (&msgs->via.array.ptr [2], "content"), "Sure! The answer is 4."));
    ck_assert (s_str_has (s_obj (&msgs->via.array.ptr [3], "content"), "the answer is not valid JSON"));
    msgpack_unpacked_destroy (&u);
    free (mp);
    free (body_mp);
    free (log);
    //  From now on the server answers a string where an integer belongs:
    //  two attempts (one retry), then TR_EOUTPUT.
    ck_assert_int_eq (s_ask_raw ("math", b.data, b.size, 5000, &reply), TR_EOUTPUT);
    ck_assert_int_eq (s_info ("math", "llm.output_failed"), 1);
    ck_assert_int_eq (s_info ("math", "llm.requests"), 4);
    s_server_stop (&srv);
}
END_TEST

//  A backend that fails (500 after its retries) opens the breaker; a
//  malformed completion is a failure too.
START_TEST (test_http_breaker)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"status\": 500, \"json\": {\"error\": \"down\"}}]}]}");
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\n"
        "children:\n"
        "  - name: bot\n"
        "    actor: llm\n"
        "    breaker: {failures: 2, reset_timeout: 10s}\n"
        "    params:\n"
        "      base_url: '%s'\n"
        "      model: m\n"
        "      backend: {max_retries: 1, backoff_initial: 10ms, backoff_max: 20ms}\n"
        "  - name: once\n"
        "    actor: llm\n"
        "    breaker: off\n"
        "    params: {base_url: '%s', model: m, backend: {max_retries: 0}}\n", srv.base, srv.base);
    s_start (yaml);
    //  max_retries: 0 is no retry at all.
    ck_assert_int_eq (s_ask ("once", "hello", 5000, NULL), TR_EHTTP);
    tr_http_stats_t once;
    ck_assert_int_eq (tr_http_stats (s_node, "once", &once), TR_OK);
    ck_assert_int_eq (once.retries, 0);
    ck_assert_int_eq (once.failed, 1);
    ck_assert_int_eq (s_ask ("bot", "hello", 5000, NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("bot", "hello", 5000, NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("bot", "hello", 5000, NULL), TR_ECIRCUIT);
    tr_http_stats_t stats;
    ck_assert_int_eq (tr_http_stats (s_node, "bot", &stats), TR_OK);
    ck_assert_int_eq (stats.retries, 2);
    ck_assert_int_eq (stats.failed, 2);
    //  Malformed JSON with a 200: a failure of the backend, not the asker's.
    char *script_url;
    (void) script_url;
    tr_breaker_reset (s_node, "bot");
    s_server_stop (&srv);
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"malformed\": true}]}]}");
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    snprintf (yaml, sizeof yaml,
        "name: t2\n"
        "children:\n"
        "  - name: bot2\n"
        "    actor: llm\n"
        "    breaker: {failures: 1, reset_timeout: 10s}\n"
        "    params: {base_url: '%s', model: m}\n", srv.base);
    s_start (yaml);
    ck_assert_int_eq (s_ask ("bot2", "hello", 5000, NULL), TR_EHTTP);
    ck_assert_int_eq (s_ask ("bot2", "hello", 5000, NULL), TR_ECIRCUIT);
    s_server_stop (&srv);
}
END_TEST

//  History bound over HTTP: the requests carry at most max_messages of
//  history; and concurrent turns go one at a time to the server.
START_TEST (test_http_history)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"chat_echo\": true, \"delay_ms\": 50}]}]}");
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\n"
        "children:\n"
        "  - name: chat\n"
        "    actor: llm\n"
        "    params: {base_url: '%s', model: m, history: {max_messages: 4}}\n", srv.base);
    s_start (yaml);
    s_asker_t turns [6] = { 0 };
    s_ask_all ("chat", turns, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq (turns [i].rc, TR_OK);
        free (turns [i].answer);
    }
    char *st = s_server_get (&srv, "/_stats");
    ck_assert_msg (s_contains (st, "\"max_in_flight\": 1") || s_contains (st, "\"max_in_flight\":1"),
                   "%s", st);
    free (st);
    char *log = s_server_log (&srv);
    for (size_t i = 0; i < 6; i++) {
        msgpack_unpacked u;
        char *mp = NULL, *body_mp = NULL;
        const msgpack_object *req = s_logged (log, i, &u, &mp, &body_mp);
        //  No system prompt: history (at most 4) and the new question.
        size_t expect = i < 2? 2 * i + 1: 5;
        ck_assert_int_eq (s_obj (req, "messages")->via.array.size, expect);
        msgpack_unpacked_destroy (&u);
        free (mp);
        free (body_mp);
    }
    free (log);
    s_server_stop (&srv);
}
END_TEST

static bool
s_bot2_failed (void *arg)
{
    int64_t value = 0;
    return tr_actor_info_get (s_node, "bot2", "llm.failed", &value) == TR_OK && value == 1;
}

//  A server that never answers: the backend's timeout ends the ask.
START_TEST (test_http_timeout)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"hang\": true}]}]}");
    char yaml [512];
    snprintf (yaml, sizeof yaml,
        "name: t\nchildren:\n  - {name: bot, actor: llm, breaker: off, params: {base_url: '%s', "
        "model: m, backend: {timeout: 300ms, max_retries: -1}}}\n", srv.base);
    s_start (yaml);
    int64_t t0 = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("bot", "hello?", 10000, NULL), TR_ETIMEDOUT);
    int64_t took = tr_test_now_ms () - t0;
    ck_assert_int_ge (took, 290);
    ck_assert_int_lt (took, 5000 * tr_test_slowdown ());
    //  The ask's own deadline is the request's: it ends first here.
    tr_sup_stop (&s_sup);
    tr_tree_destroy (&s_tree);
    snprintf (yaml, sizeof yaml,
        "name: t2\nchildren:\n  - {name: bot2, actor: llm, params: {base_url: '%s', model: m}}\n",
        srv.base);
    s_start (yaml);
    t0 = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("bot2", "hello?", 400, NULL), TR_ETIMEDOUT);
    //  The request ended with the deadline too (not at the backend's
    //  120 s timeout): the agent counts the failure at once.
    ck_assert (tr_test_wait_until (s_bot2_failed, NULL, 3000 * tr_test_slowdown ()));
    ck_assert_int_lt (tr_test_now_ms () - t0, 5000 * tr_test_slowdown ());
    s_server_stop (&srv);
}
END_TEST

//  An https base_url with a self-signed certificate: refused by an agent
//  that trusts the system's store (TR_EHTTP), answered for one whose
//  backend.ca_file holds the certificate, from a tree file and from C.
START_TEST (test_http_tls)
{
    tr_test_tls_t tls;
    tr_test_tls_make (&tls);
    s_server_t srv;
    s_server_spawn (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": "
                    "\"/v1/chat/completions\", \"responses\": [{\"chat_echo\": true}]}]}",
                    tls.cert, tls.key);
    char yaml [1024];
    snprintf (yaml, sizeof yaml,
        "name: t\ndefaults: {breaker: off}\nchildren:\n"
        "  - {name: sure, actor: llm, params: {base_url: '%s', model: m,"
        " backend: {ca_file: '%s'}}}\n"
        "  - {name: doubt, actor: llm, params: {base_url: '%s', model: m}}\n",
        srv.base, tls.cert, srv.base);
    s_start (yaml);
    char *answer = NULL;
    ck_assert_int_eq (s_ask ("sure", "over tls", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "echo: over tls");
    free (answer);
    ck_assert_int_eq (s_ask ("doubt", "over tls", 5000, NULL), TR_EHTTP);
    tr_llm_opts_t opts = { .base_url = srv.base, .model = "m",
                           .backend = { .ca_file = tls.cert } };
    ck_assert_int_eq (tr_llm_spawn (s_node, "from_c", &opts, NULL), TR_OK);
    ck_assert_int_eq (s_ask ("from_c", "from C", 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "echo: from C");
    free (answer);
    s_server_stop (&srv);
    tr_test_tls_remove (&tls);
}
END_TEST

//  An empty answer is an answer (and a turn of the conversation).
START_TEST (test_http_empty_answer)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"chat\": \"\"}]}]}");
    char yaml [512];
    snprintf (yaml, sizeof yaml,
        "name: t\nchildren:\n  - {name: bot, actor: llm, params: {base_url: '%s', model: m, "
        "history: {max_messages: 4}}}\n", srv.base);
    s_start (yaml);
    char *answer;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (s_ask ("bot", "", 5000, &answer), TR_OK);
        ck_assert_str_eq (answer, "");
        free (answer);
    }
    s_server_stop (&srv);
}
END_TEST

//  A response past the backend's max_response: TR_ETOOBIG.
START_TEST (test_http_too_big)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"body_bytes\": 5000}]}]}");
    char yaml [512];
    snprintf (yaml, sizeof yaml,
        "name: t\nchildren:\n  - {name: bot, actor: llm, params: {base_url: '%s', model: m, "
        "backend: {max_response: 1000}}}\n", srv.base);
    s_start (yaml);
    ck_assert_int_eq (s_ask ("bot", "hello", 5000, NULL), TR_ETOOBIG);
    ck_assert_int_eq (s_info ("bot", "llm.failed"), 1);
    s_server_stop (&srv);
}
END_TEST

//  Stopping an agent cancels its requests in flight.
START_TEST (test_http_stop)
{
    s_server_t srv;
    s_server_start (&srv, "{\"routes\": [{\"method\": \"POST\", \"path\": \"/v1/chat/completions\","
                          " \"responses\": [{\"hang\": true}]}]}");
    char yaml [512];
    snprintf (yaml, sizeof yaml,
        "name: t\nchildren:\n  - {name: bot, actor: llm, params: {base_url: '%s', model: m}}\n",
        srv.base);
    s_start (yaml);
    s_asker_t askers [4] = { 0 };
    pthread_t threads [4];
    for (int i = 0; i < 4; i++) {
        askers [i].agent = "bot";
        snprintf (askers [i].prompt, sizeof askers [i].prompt, "ask %d", i);
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_asker, &askers [i]), 0);
    }
    struct timespec ts = { 0, 300 * 1000000L };
    nanosleep (&ts, NULL);
    int64_t t0 = tr_test_now_ms ();
    tr_sup_stop (&s_sup);
    for (int i = 0; i < 4; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_int_eq (askers [i].rc, TR_ESTOPPED);
    }
    ck_assert_int_lt (tr_test_now_ms () - t0, 3000 * tr_test_slowdown ());
    s_server_stop (&srv);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_llm");
    TCase *tc = tcase_create ("offline");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_offline_rules);
    tcase_add_test (tc, test_offline_derived);
    tcase_add_test (tc, test_offline_failures);
    tcase_add_test (tc, test_offline_breaker);
    tcase_add_test (tc, test_signature_derived);
    tcase_add_test (tc, test_signature_retries);
    tcase_add_test (tc, test_bad_bodies);
    tcase_add_test (tc, test_bad_params);
    tcase_add_test (tc, test_history_drop);
    tcase_add_test (tc, test_history_tokens);
    tcase_add_test (tc, test_history_summarize);
    tcase_add_test (tc, test_concurrency);
    tcase_add_test (tc, test_stop_in_flight);
    tcase_add_test (tc, test_turns_full);
    tcase_add_test (tc, test_counters_and_tells);
    tcase_add_test (tc, test_actor_info);
    tcase_add_test (tc, test_c_api);
    suite_add_tcase (suite, tc);
    tc = tcase_create ("http");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_http_request);
    tcase_add_test (tc, test_http_tokens_and_cache);
    tcase_add_test (tc, test_http_structured);
    tcase_add_test (tc, test_http_breaker);
    tcase_add_test (tc, test_http_history);
    tcase_add_test (tc, test_http_timeout);
    tcase_add_test (tc, test_http_empty_answer);
    tcase_add_test (tc, test_http_too_big);
    tcase_add_test (tc, test_http_stop);
    tcase_add_test (tc, test_http_tls);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
