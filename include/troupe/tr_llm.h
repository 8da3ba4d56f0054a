/*  tr_llm.h - the built-in LLM agent (actor type "llm").

    An llm agent answers asks with a language model's answer. Its
    parameters (a tree file's `params:`, see docs/agents.md) say which
    model: an OpenAI-compatible chat completions endpoint (hosted APIs,
    Ollama, llama.cpp's server, vLLM: POST {base_url}/chat/completions,
    through the node's HTTP engine, tr_http.h), or, when no base_url is
    given, the offline backend: deterministic answers made in the
    process, scripted per input by rules or derived from the input, so
    that a tree of agents runs on a machine with no network.

    Asks:
      a string (the prompt)            -> a string (the model's answer)
      a map of a signature's inputs    -> a map of its outputs
    A tell is handled as an ask whose answer is logged.

    The agent never blocks its thread on the model: it defers the ask
    (tr_defer) and answers from the request's completion. Errors an asker
    can get: TR_EINVAL (a body the agent cannot take: not a string or a
    map, a missing or unknown input field), TR_EHTTP (the endpoint failed
    after its retries, or answered something that is not a chat
    completion), TR_ETIMEDOUT, TR_ETOOBIG (a response past the backend's
    max_response), TR_EOUTPUT (the answer did not fit the
    signature after the retries allowed; the reason is logged and
    published as the event "llm.output_failed" {agent, reason, attempts,
    answer}),
    TR_EFULL (too many conversation turns waiting), TR_ESTOPPED (the
    agent stopped first).

    From C, an agent is spawned with tr_llm_spawn from a tr_llm_opts_t, or
    its parameters are packed with tr_llm_params_pack for a supervisor's
    child spec; both give exactly what the same tree file would.
*/
#ifndef TR_LLM_H_INCLUDED
#define TR_LLM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tr_actor.h"
#include "tr_export.h"
#include "tr_http.h"
#include "tr_params.h"
#include "tr_type.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Types of a signature's fields, as tree files write them.
typedef enum {
    TR_LLM_STRING = 0,          //  "string"
    TR_LLM_INT,                 //  "int": an integer
    TR_LLM_NUMBER,              //  "number": integer or float
    TR_LLM_BOOL,                //  "bool"
    TR_LLM_LIST,                //  "list": an array of strings
    TR_LLM_ENUM                 //  "enum": one of `values`
} tr_llm_field_type_t;

//  One named field of a signature.
typedef struct {
    const char *name;           //  1..63 bytes of [A-Za-z0-9_]
    int type;                   //  tr_llm_field_type_t
    const char *desc;           //  what it holds, told to the model; or NULL
    const char *const *values;  //  TR_LLM_ENUM: NULL-terminated choices
} tr_llm_field_t;

//  A signature: what goes in, what must come out.
typedef struct {
    const char *instructions;   //  the task, told to the model; or NULL
    const tr_llm_field_t *inputs;
    size_t input_count;         //  >= 1
    const tr_llm_field_t *outputs;
    size_t output_count;        //  >= 1
    bool reasoning;             //  ask for a "reasoning" field first
} tr_llm_signature_t;

//  An offline rule: asks whose text contains `match` (or matches the
//  POSIX extended `regex`) get `answer` (with $1..$9 replaced by the
//  regex's groups), or the scripted failure `error`: "fail" (the backend
//  fails: TR_EHTTP), "timeout" (it never answers: TR_ETIMEDOUT at the
//  backend's timeout or the ask's deadline), "malformed" (it answers
//  something that is not a chat completion: TR_EHTTP).
typedef struct {
    const char *match;          //  exactly one of match, regex
    const char *regex;
    const char *answer;         //  or error
    const char *error;
    int64_t latency_ms;         //  -1: the agent's latency
} tr_llm_rule_t;

//  Options of an agent; each mirrors the tree-file parameter of the same
//  name (docs/agents.md). Zero or NULL means: not given.
typedef struct {
    const char *base_url;       //  NULL: the offline backend
    const char *model;
    const char *api_key_env;    //  name of the variable holding the key
    const char *system;         //  system prompt
    bool has_temperature;
    double temperature;
    int64_t max_tokens;
    //  Extra request fields: one msgpack map (copied), or NULL.
    const void *extra;
    size_t extra_size;
    //  The backend's settings; name NULL: named after the agent.
    tr_http_backend_opts_t backend;
    bool cache;                 //  identical requests may be answered
                                //  from the backend's cache
    const tr_llm_signature_t *signature;
    int output_retries;         //  0: the default (2); -1: none
    bool no_json_mode;          //  do not send response_format
    //  Conversation history: max_messages > 0 turns it on.
    int history_max_messages;
    int64_t history_max_tokens;
    bool history_summarize;     //  summarise instead of dropping
    int history_keep;           //  messages kept verbatim by a summary
    //  Offline backend.
    int64_t offline_latency_ms;
    int64_t offline_seed;
    const tr_llm_rule_t *rules;
    size_t rule_count;
} tr_llm_opts_t;

//  The "llm" actor type (also registered as a built-in type).
TR_EXPORT const tr_actor_type_t *
    tr_llm_type (void);

//  Packs opts as the type's parameters (one msgpack map) into a malloc'd
//  buffer that the caller owns and frees: params->data, params->size.
//  Nothing is checked here; the agent's init checks it as it checks a
//  tree file's. Returns TR_OK, TR_EINVAL (NULL arguments, an enum field
//  without values), TR_ENOMEM.
TR_EXPORT int
    tr_llm_params_pack (const tr_llm_opts_t *opts, tr_params_t *params);

//  Spawns an llm agent named `name` on node from opts (spawn_opts may be
//  NULL). The options are copied: the caller may free them on return.
//  Returns as tr_spawn: TR_OK, TR_EINIT when the options are refused (the
//  log says why), TR_EEXIST...
TR_EXPORT int
    tr_llm_spawn (tr_node_t *node, const char *name, const tr_llm_opts_t *opts,
                  const tr_spawn_opts_t *spawn_opts);

#ifdef __cplusplus
}
#endif

#endif
