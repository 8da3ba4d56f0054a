/*  tr_llm.c - the built-in LLM agent: actor type "llm" (see tr_llm.h and
    docs/agents.md for what it does and its parameters).

    Shape. The actor's thread only takes asks in: it checks the body,
    defers the ask and starts a "call" (one request to the model, then as
    many again as structured output needs). A call completes on another
    thread: the node's HTTP engine's (tr_http.h), or the offline
    backend's delay thread when a latency is set; with no latency the
    offline backend answers at once, on the actor's thread. Everything
    after that - reading the completion, counting tokens, checking the
    answer against the signature, asking again with the reason it did not
    fit, keeping the conversation, answering the ask - is one code path
    (s_call_done) whatever the backend, so the offline backend exercises
    exactly what the HTTP one does.

    Why completions are not handed back to the actor's thread: a message
    the actor sends itself would be handled with success and count as a
    success for its circuit breaker, so a failing backend would never open
    it; it could also meet a full mailbox. The deferred ask is answered
    from the completion instead (tr_reply works from any thread), which
    counts for the breaker exactly as it should: answer = success, error
    = failure. The state that completions share with the actor's thread
    (the conversation, the calls in flight) sits behind the agent's lock;
    the configuration is fixed once init returns.

    Conversation history and concurrency. With `history` on, string asks
    are turns of the agent's one conversation and run one at a time, in
    the order they arrived: a turn must see the answers of the turns
    before it, and running two at once would give each a history without
    the other and store them in the order they happened to finish. Asks
    that wait for their turn queue in the agent (up to S_MAX_WAITING, then
    TR_EFULL). Asks of a signature (maps) are function calls: they neither
    read nor write the history and run concurrently, as do all asks when
    history is off. When the history passes its bound, the oldest messages
    are dropped, or summarised through the model (one more request, made
    before the next turn starts, whose answer replaces the oldest part;
    if it fails the oldest part is dropped instead).

    Lifetime. A call holds references (one per request in flight, one for
    whoever is working on it) and the agent counts its calls. terminate
    marks the agent closing, cancels the requests in flight, fails the
    turns still waiting, stops the delay thread and waits (a bounded time)
    for the cancelled requests' callbacks; if one is late, the last call
    to end frees the agent. Everything the agent needs is copied out of
    its parameters at init, so it may outlive its spec.
*/

#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mbox.h"
#include "tr_mp.h"
#include "tr_json.h"
#include "tr_compose.h"
#include "troupe/tr_body.h"
#include "troupe/tr_event.h"
#include "troupe/tr_http.h"
#include "troupe/tr_llm.h"
#include "troupe/tr_params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

//  Turns that may wait for the conversation at once, per agent.
#define S_MAX_WAITING       1024
//  How long terminate waits for cancelled requests to call back.
#define S_DRAIN_MS          10000
//  Longest answer quoted in logs and events.
#define S_QUOTE_MAX         400
//  Regex groups substituted into an answer ($1..$9).
#define S_GROUPS            10

//  Kinds of call.
enum { S_CHAT, S_SIGNATURE, S_SUMMARY };

//  Scripted offline failures.
enum { S_ERR_NONE, S_ERR_FAIL, S_ERR_TIMEOUT, S_ERR_MALFORMED };

//  --------------------------------------------------------------------------
//  Small strings

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} s_buf_t;

static void
s_buf_add (s_buf_t *b, const char *text, size_t len)
{
    if (b->oom || len == 0)
        return;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap? b->cap * 2: 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *data = (char *) realloc (b->data, cap);
        if (!data) {
            b->oom = true;
            return;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy (b->data + b->len, text, len);
    b->len += len;
    b->data [b->len] = 0;
}

//  True if len bytes at text hold a NUL (an empty string's text may be
//  NULL, as msgpack-c gives it).
static bool
s_has_nul (const char *text, size_t len)
{
    return len && memchr (text, 0, len);
}

//  A copy of len bytes as a C string (text may be NULL when len is 0).
static char *
s_copy (const char *text, size_t len)
{
    return len? strndup (text, len): strdup ("");
}

static void
s_buf_str (s_buf_t *b, const char *text)
{
    s_buf_add (b, text, strlen (text));
}

static void
s_buf_printf (s_buf_t *b, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_buf_printf (s_buf_t *b, const char *format, ...)
{
    char small [512];
    va_list args;
    va_start (args, format);
    int n = vsnprintf (small, sizeof small, format, args);
    va_end (args);
    if (n < 0)
        return;
    if ((size_t) n < sizeof small) {
        s_buf_add (b, small, (size_t) n);
        return;
    }
    char *big = (char *) malloc ((size_t) n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start (args, format);
    vsnprintf (big, (size_t) n + 1, format, args);
    va_end (args);
    s_buf_add (b, big, (size_t) n);
    free (big);
}

//  Hands the text over (an empty string rather than NULL); NULL if memory
//  ran out on the way.
static char *
s_buf_take (s_buf_t *b)
{
    if (b->oom) {
        free (b->data);
        return NULL;
    }
    if (!b->data)
        return strdup ("");
    return b->data;
}

//  FNV-1a over bytes, from a seed.
static uint64_t
s_hash (uint64_t seed, const char *text, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t) text [i];
        h *= 1099511628211ULL;
    }
    //  Final mix, so that close inputs choose far apart.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

//  Tokens of a text, estimated as OpenAI's rule of thumb: four bytes each.
static uint32_t
s_tokens (size_t bytes)
{
    return (uint32_t) ((bytes + 3) / 4);
}

//  --------------------------------------------------------------------------
//  Configuration: everything copied out of the parameters at init

typedef struct {
    char *name;
    char *desc;
    int type;                           //  tr_llm_field_type_t
    char **values;                      //  enum choices
    size_t nvalues;
} s_field_t;

typedef struct {
    char *instructions;
    s_field_t *inputs;
    size_t ninputs;
    s_field_t *outputs;
    size_t noutputs;
    bool reasoning;
} s_sig_t;

typedef struct {
    char *match;                        //  substring, or NULL
    regex_t regex;
    bool has_regex;
    char **answers;                     //  one per attempt, the last repeats
    size_t nanswers;
    int error;                          //  S_ERR_*
    int64_t latency_ms;                 //  -1: the agent's
} s_rule_t;

typedef struct {
    char *name;                         //  the agent's
    bool offline;
    char *url;                          //  {base_url}/chat/completions
    char *model;
    char *auth;                         //  "Authorization: Bearer ..." or NULL
    char *system;
    bool has_temperature;
    double temperature;
    int64_t max_tokens;
    uint8_t *extra;                     //  a msgpack map, or NULL
    size_t extra_size;
    uint32_t extra_count;
    tr_http_backend_opts_t backend;
    char *backend_name;
    char *ca_file;                      //  backend.ca_file, or NULL
    bool cache;
    bool backend_settings;              //  the backend map sets more than its name
    s_sig_t *sig;
    int output_retries;
    bool json_mode;
    size_t hist_messages;               //  0: no history
    int64_t hist_tokens;                //  0: no bound on tokens
    bool summarize;
    size_t keep;
    int64_t latency_ms;
    uint64_t seed;
    s_rule_t *rules;
    size_t nrules;
} s_config_t;

static void
s_fields_free (s_field_t *fields, size_t count)
{
    for (size_t i = 0; fields && i < count; i++) {
        free (fields [i].name);
        free (fields [i].desc);
        for (size_t j = 0; j < fields [i].nvalues; j++)
            free (fields [i].values [j]);
        free (fields [i].values);
    }
    free (fields);
}

static void
s_sig_free (s_sig_t *sig)
{
    if (!sig)
        return;
    free (sig->instructions);
    s_fields_free (sig->inputs, sig->ninputs);
    s_fields_free (sig->outputs, sig->noutputs);
    free (sig);
}

static void
s_config_free (s_config_t *cfg)
{
    free (cfg->name);
    free (cfg->url);
    free (cfg->model);
    free (cfg->auth);
    free (cfg->system);
    free (cfg->extra);
    free (cfg->backend_name);
    free (cfg->ca_file);
    s_sig_free (cfg->sig);
    for (size_t i = 0; i < cfg->nrules; i++) {
        s_rule_t *rule = &cfg->rules [i];
        free (rule->match);
        if (rule->has_regex)
            regfree (&rule->regex);
        for (size_t j = 0; j < rule->nanswers; j++)
            free (rule->answers [j]);
        free (rule->answers);
    }
    free (cfg->rules);
    memset (cfg, 0, sizeof *cfg);
}

//  --------------------------------------------------------------------------
//  Reading parameters (msgpack objects, as the tree loader made them)

//  Where a parameter problem is reported: the agent's name, the key path.
typedef struct {
    const char *agent;
    bool checking;                      //  for the tree loader: no name in messages
    char error [TR__EXIT_TEXT];
    //  Where, for the tree loader (tr_param_error_t's path): set by the
    //  caller of s_bad when it knows, else read from the message.
    char path [256];
} s_parse_t;

static void s_path_from (s_parse_t *p, const char *message);

static int
s_bad (s_parse_t *p, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_bad (s_parse_t *p, const char *format, ...)
{
    char what [TR__EXIT_TEXT - 64];
    va_list args;
    va_start (args, format);
    vsnprintf (what, sizeof what, format, args);
    va_end (args);
    if (!p->checking)
        snprintf (p->error, sizeof p->error, "llm '%s': %s", p->agent, what);
    else
        snprintf (p->error, sizeof p->error, "%s", what);
    if (!p->path [0])
        s_path_from (p, what);
    return -1;
}

//  If word (len bytes, of the path's letters) names one of the agent's
//  parameters and what lies under it ('signature.outputs[2]',
//  'backend.timeout'), writes it as p's path, list positions as parts of
//  their own ("signature.outputs.2"), and returns true.
static bool
s_path_word (s_parse_t *p, const char *word, size_t len)
{
    static const char *const tops [] = {
        "base_url", "model", "api_key_env", "system", "temperature", "max_tokens",
        "extra", "backend", "history", "signature", "output_retries", "offline", NULL
    };
    size_t top = 0;
    while (top < len && word [top] != '.' && word [top] != '[')
        top++;
    bool known = false;
    for (size_t k = 0; tops [k] && !known; k++)
        known = top <= len && strlen (tops [k]) == top && memcmp (tops [k], word, top) == 0;
    if (!known)
        return false;
    size_t out = 0;
    for (size_t i = 0; i < len && out + 2 < sizeof p->path; i++) {
        if (word [i] == '[')
            p->path [out++] = '.';
        else
        if (word [i] != ']')
            p->path [out++] = word [i];
    }
    p->path [out] = 0;
    return true;
}

//  The path of a problem, read from its message: its first word (as in
//  "signature.outputs[2]: ..."), or else the first quoted word, that
//  names a parameter.
static void
s_path_from (s_parse_t *p, const char *message)
{
    static const char letters [] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_.[]";
    size_t len = strspn (message, letters);
    if ((message [len] == ':' || message [len] == ' ') && s_path_word (p, message, len))
        return;
    for (const char *q = strchr (message, '\''); q; q = strchr (q + 1, '\'')) {
        len = strspn (q + 1, letters);
        if (q [1 + len] == '\'' && s_path_word (p, q + 1, len))
            return;
    }
}

//  Checks that every key of `map` (named `where`) is one of `keys`.
static int
s_keys_known (s_parse_t *p, const msgpack_object *map, const char *where,
              const char *const *keys)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        bool known = false;
        for (size_t k = 0; keys [k] && !known; k++)
            known = tr__key_is (key, keys [k]);
        if (!known) {
            char list [256] = "";
            for (size_t k = 0; keys [k]; k++) {
                strncat (list, k? ", ": "", sizeof list - strlen (list) - 1);
                strncat (list, keys [k], sizeof list - strlen (list) - 1);
            }
            //  The unknown key itself is where the mistake is.
            char within [200];
            snprintf (within, sizeof within, "%s", where);
            size_t wl = strlen (within);
            if (wl >= 2 && within [0] == '\'' && within [wl - 1] == '\'') {
                memmove (within, within + 1, wl - 2);
                within [wl - 2] = 0;
            }
            snprintf (p->path, sizeof p->path, "%s%s%.*s", within, within [0]? ".": "",
                      key->type == MSGPACK_OBJECT_STR? (int) key->via.str.size: 0,
                      key->type == MSGPACK_OBJECT_STR? key->via.str.ptr: "");
            return s_bad (p, "unknown key '%.*s' in %s; expected one of: %s",
                          key->type == MSGPACK_OBJECT_STR? (int) key->via.str.size: 1,
                          key->type == MSGPACK_OBJECT_STR? key->via.str.ptr: "?",
                          where, list);
        }
    }
    return 0;
}

//  A string value as a new C string; refuses embedded NULs.
static int
s_want_str (s_parse_t *p, const msgpack_object *o, const char *what, char **out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_bad (p, "%s must be a string, not %s", what, tr__cfg_kind (o));
    if (s_has_nul (o->via.str.ptr, o->via.str.size))
        return s_bad (p, "%s must not hold a NUL byte", what);
    free (*out);
    *out = s_copy (o->via.str.ptr, o->via.str.size);
    return *out? 0: s_bad (p, "out of memory");
}

static int
s_want_int (s_parse_t *p, const msgpack_object *o, const char *what,
            int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    if (!tr__integer (o, &v))
        return s_bad (p, "%s must be an integer, not %s", what, tr__cfg_kind (o));
    if (v < min || v > max)
        return s_bad (p, "%s must be from %lld to %lld, not %lld", what,
                      (long long) min, (long long) max, (long long) v);
    *out = v;
    return 0;
}

static int
s_want_number (s_parse_t *p, const msgpack_object *o, const char *what, double *out)
{
    if (!tr__number (o, out))
        return s_bad (p, "%s must be a number, not %s", what, tr__cfg_kind (o));
    return 0;
}

static int
s_want_bool (s_parse_t *p, const msgpack_object *o, const char *what, bool *out)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return s_bad (p, "%s must be true or false, not %s", what, tr__cfg_kind (o));
    *out = o->via.boolean;
    return 0;
}

//  A duration: a string such as "250ms" or an integer of milliseconds.
static int
s_want_duration (s_parse_t *p, const msgpack_object *o, const char *what,
                 int64_t max, int64_t *out)
{
    int64_t ms = 0;
    if (o->type == MSGPACK_OBJECT_STR) {
        if (tr_duration_parse (o->via.str.ptr, o->via.str.size, &ms) != TR_OK)
            return s_bad (p, "%s must be a duration such as 250ms, 1.5s or 2m, not '%.*s'",
                          what, (int) o->via.str.size, o->via.str.ptr);
    }
    else
    if (s_want_int (p, o, what, 0, max, &ms))
        return -1;
    if (ms > max)
        return s_bad (p, "%s must be at most %lld ms", what, (long long) max);
    *out = ms;
    return 0;
}

static int
s_want_map (s_parse_t *p, const msgpack_object *o, const char *what)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return s_bad (p, "%s must be a mapping, not %s", what, tr__cfg_kind (o));
    return 0;
}

static int
s_want_list (s_parse_t *p, const msgpack_object *o, const char *what)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return s_bad (p, "%s must be a list, not %s", what, tr__cfg_kind (o));
    return 0;
}

//  An int-valued setting into an int field: value within [0, max].
static int
s_opt_int (s_parse_t *p, const msgpack_object *map, const char *key,
           const char *where, int64_t min, int64_t max, int *out)
{
    const msgpack_object *o = tr__map_get (map, key);
    char what [96];
    snprintf (what, sizeof what, "'%s%s'", where, key);
    int64_t v = 0;
    if (!o)
        return 0;
    if (s_want_int (p, o, what, min, max, &v))
        return -1;
    *out = (int) v;
    return 0;
}

static int
s_opt_duration (s_parse_t *p, const msgpack_object *map, const char *key,
                const char *where, int *out)
{
    const msgpack_object *o = tr__map_get (map, key);
    char what [96];
    snprintf (what, sizeof what, "'%s%s'", where, key);
    int64_t v = 0;
    if (!o)
        return 0;
    if (s_want_duration (p, o, what, INT32_MAX, &v))
        return -1;
    //  0 would be the engine's "the default": refused rather than surprising.
    if (v == 0)
        return s_bad (p, "%s must be more than 0", what);
    *out = (int) v;
    return 0;
}

//  True if name is 1..63 bytes of [A-Za-z0-9_] not starting with a digit.
static bool
s_field_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 63 || isdigit ((unsigned char) name [0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum ((unsigned char) name [i]) && name [i] != '_')
            return false;
    return true;
}

static const char *const s_type_names [] = {
    "string", "int", "number", "bool", "list", "enum", NULL
};

static int
s_parse_field (s_parse_t *p, const msgpack_object *o, const char *where, s_field_t *f)
{
    static const char *const keys [] = { "name", "type", "desc", "values", NULL };
    if (s_want_map (p, o, where) || s_keys_known (p, o, where, keys))
        return -1;
    const msgpack_object *name = tr__map_get (o, "name");
    const msgpack_object *type = tr__map_get (o, "type");
    const msgpack_object *desc = tr__map_get (o, "desc");
    const msgpack_object *values = tr__map_get (o, "values");
    if (!name)
        return s_bad (p, "%s needs a 'name'", where);
    if (s_want_str (p, name, "a field's 'name'", &f->name))
        return -1;
    if (!s_field_name_ok (f->name))
        return s_bad (p, "%s: field name '%s' must be 1 to 63 letters, digits or "
                      "underscores, not starting with a digit", where, f->name);
    if (strcmp (f->name, "reasoning") == 0)
        return s_bad (p, "%s: 'reasoning' is reserved (set 'reasoning: true' instead)", where);
    f->type = TR_LLM_STRING;
    if (type) {
        char *text = NULL;
        if (s_want_str (p, type, "a field's 'type'", &text))
            return -1;
        int t = 0;
        while (s_type_names [t] && strcmp (s_type_names [t], text))
            t++;
        if (!s_type_names [t]) {
            s_bad (p, "%s: field '%s' has type '%s'; expected one of: string, int, "
                   "number, bool, list, enum", where, f->name, text);
            free (text);
            return -1;
        }
        free (text);
        f->type = t;
    }
    if (desc && s_want_str (p, desc, "a field's 'desc'", &f->desc))
        return -1;
    if ((f->type == TR_LLM_ENUM) != (values != NULL))
        return s_bad (p, "%s: field '%s': 'values' %s", where, f->name,
                      values? "is only for type enum": "is required for type enum");
    if (values) {
        if (s_want_list (p, values, "'values'"))
            return -1;
        if (values->via.array.size == 0)
            return s_bad (p, "%s: field '%s' needs at least one value", where, f->name);
        f->values = (char **) calloc (values->via.array.size, sizeof (char *));
        if (!f->values)
            return s_bad (p, "out of memory");
        for (uint32_t i = 0; i < values->via.array.size; i++, f->nvalues++)
            if (s_want_str (p, &values->via.array.ptr [i], "each of 'values'", &f->values [i]))
                return -1;
    }
    return 0;
}

static int
s_parse_fields (s_parse_t *p, const msgpack_object *list, const char *what,
                s_field_t **fields_p, size_t *count_p)
{
    if (!list)
        return s_bad (p, "'signature' needs '%s'", what);
    if (s_want_list (p, list, what))
        return -1;
    if (list->via.array.size == 0 || list->via.array.size > 64)
        return s_bad (p, "'signature.%s' must list 1 to 64 fields", what);
    *fields_p = (s_field_t *) calloc (list->via.array.size, sizeof (s_field_t));
    if (!*fields_p)
        return s_bad (p, "out of memory");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        char where [64];
        snprintf (where, sizeof where, "signature.%s[%u]", what, i + 1);
        (*count_p)++;
        if (s_parse_field (p, &list->via.array.ptr [i], where, &(*fields_p) [i]))
            return -1;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp ((*fields_p) [j].name, (*fields_p) [i].name) == 0)
                return s_bad (p, "%s: field name '%s' is used twice", where, (*fields_p) [i].name);
    }
    return 0;
}

static int
s_parse_signature (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    static const char *const keys [] = { "instructions", "inputs", "outputs", "reasoning", NULL };
    if (s_want_map (p, o, "'signature'") || s_keys_known (p, o, "'signature'", keys))
        return -1;
    cfg->sig = (s_sig_t *) calloc (1, sizeof (s_sig_t));
    if (!cfg->sig)
        return s_bad (p, "out of memory");
    const msgpack_object *v;
    if ((v = tr__map_get (o, "instructions"))
    &&  s_want_str (p, v, "'signature.instructions'", &cfg->sig->instructions))
        return -1;
    if ((v = tr__map_get (o, "reasoning"))
    &&  s_want_bool (p, v, "'signature.reasoning'", &cfg->sig->reasoning))
        return -1;
    return s_parse_fields (p, tr__map_get (o, "inputs"), "inputs", &cfg->sig->inputs, &cfg->sig->ninputs)
        || s_parse_fields (p, tr__map_get (o, "outputs"), "outputs", &cfg->sig->outputs, &cfg->sig->noutputs);
}

//  `backend.ca_file`: the CA file that an https base_url's certificate is
//  verified against; it must be a file that can be read (the engine reads
//  it when it connects).
static int
s_parse_ca_file (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    if (s_want_str (p, o, "'backend.ca_file'", &cfg->ca_file))
        return -1;
    if (!*cfg->ca_file)
        return s_bad (p, "'backend.ca_file' must not be empty");
    if (cfg->offline || strncasecmp (cfg->url, "https://", 8))
        return s_bad (p, "'backend.ca_file' is only for an https:// base_url");
    struct stat st;
    if (stat (cfg->ca_file, &st) || access (cfg->ca_file, R_OK))
        return s_bad (p, "'backend.ca_file' cannot be read: '%.200s': %s", cfg->ca_file,
                      strerror (errno));
    if (!S_ISREG (st.st_mode))
        return s_bad (p, "'backend.ca_file' is not a file: '%.200s'", cfg->ca_file);
    cfg->backend.ca_file = cfg->ca_file;
    return 0;
}

static int
s_parse_backend (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    static const char *const keys [] = {
        "name", "max_concurrent", "requests_per_minute", "tokens_per_minute",
        "connect_timeout", "timeout", "max_retries", "backoff_initial", "backoff_max",
        "max_response", "cache_entries", "cache_ttl", "ca_file", NULL
    };
    if (s_want_map (p, o, "'backend'") || s_keys_known (p, o, "'backend'", keys))
        return -1;
    tr_http_backend_opts_t *b = &cfg->backend;
    const msgpack_object *v;
    if ((v = tr__map_get (o, "name")) && s_want_str (p, v, "'backend.name'", &cfg->backend_name))
        return -1;
    if ((v = tr__map_get (o, "ca_file")) && s_parse_ca_file (p, v, cfg))
        return -1;
    int64_t max_response = 0, entries = 0;
    if ((v = tr__map_get (o, "max_response"))
    &&  s_want_int (p, v, "'backend.max_response'", 1, INT32_MAX, &max_response))
        return -1;
    if ((v = tr__map_get (o, "cache_entries"))
    &&  s_want_int (p, v, "'backend.cache_entries'", 0, 1000000, &entries))
        return -1;
    b->max_response = (size_t) max_response;
    b->cache_entries = (size_t) entries;
    cfg->cache = entries > 0;
    cfg->backend_settings = o->via.map.size > (tr__map_get (o, "name")? 1u: 0u);
    //  max_retries: 0 means none here (0 is the engine's "the default").
    b->max_retries = INT32_MIN;
    int rc = s_opt_int (p, o, "max_retries", "backend.", -1, 100, &b->max_retries);
    b->max_retries = b->max_retries == INT32_MIN? 0: b->max_retries == 0? -1: b->max_retries;
    return rc
        || s_opt_int (p, o, "max_concurrent", "backend.", 1, 1000000, &b->max_concurrent)
        || s_opt_int (p, o, "requests_per_minute", "backend.", 0, INT32_MAX, &b->requests_per_minute)
        || s_opt_int (p, o, "tokens_per_minute", "backend.", 0, INT32_MAX, &b->tokens_per_minute)
        || s_opt_duration (p, o, "connect_timeout", "backend.", &b->connect_timeout_ms)
        || s_opt_duration (p, o, "timeout", "backend.", &b->timeout_ms)
        || s_opt_duration (p, o, "backoff_initial", "backend.", &b->backoff_initial_ms)
        || s_opt_duration (p, o, "backoff_max", "backend.", &b->backoff_max_ms)
        || s_opt_duration (p, o, "cache_ttl", "backend.", &b->cache_ttl_ms);
}

static int
s_parse_history (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    static const char *const keys [] = { "max_messages", "max_tokens", "overflow", "keep", NULL };
    if (s_want_map (p, o, "'history'") || s_keys_known (p, o, "'history'", keys))
        return -1;
    int64_t messages = 20, tokens = 0, keep = -1;
    const msgpack_object *v;
    char *overflow = NULL;
    if (((v = tr__map_get (o, "max_messages"))
         && s_want_int (p, v, "'history.max_messages'", 2, 100000, &messages))
    ||  ((v = tr__map_get (o, "max_tokens"))
         && s_want_int (p, v, "'history.max_tokens'", 0, INT32_MAX, &tokens))
    ||  ((v = tr__map_get (o, "keep"))
         && s_want_int (p, v, "'history.keep'", 0, 100000, &keep))
    ||  ((v = tr__map_get (o, "overflow"))
         && s_want_str (p, v, "'history.overflow'", &overflow)))
        return -1;
    if (overflow && strcmp (overflow, "drop") && strcmp (overflow, "summarize")) {
        s_bad (p, "'history.overflow' must be drop or summarize, not '%s'", overflow);
        free (overflow);
        return -1;
    }
    cfg->summarize = overflow && strcmp (overflow, "summarize") == 0;
    free (overflow);
    if (keep < 0)
        keep = messages / 2 < 4? messages / 2: 4;
    if (keep >= messages)
        return s_bad (p, "'history.keep' (%lld) must be less than 'history.max_messages' (%lld)",
                      (long long) keep, (long long) messages);
    cfg->hist_messages = (size_t) messages;
    cfg->hist_tokens = tokens;
    cfg->keep = (size_t) keep;
    return 0;
}

//  An answer as text: a string as it is, a mapping as its JSON.
static int
s_answer_text (s_parse_t *p, const msgpack_object *o, const char *where, char **out)
{
    if (o->type == MSGPACK_OBJECT_STR)
        return s_want_str (p, o, where, out);
    if (o->type != MSGPACK_OBJECT_MAP)
        return s_bad (p, "%s must be a string or a mapping, not %s", where, tr__cfg_kind (o));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *o);
    size_t len;
    int rc = tr__json_from_msgpack (sb.data, sb.size, out, &len);
    msgpack_sbuffer_destroy (&sb);
    return rc? s_bad (p, "%s: cannot be written as JSON", where): 0;
}

static int
s_parse_rule (s_parse_t *p, const msgpack_object *o, const char *where, s_rule_t *rule)
{
    static const char *const keys [] = { "match", "regex", "answer", "error", "latency", NULL };
    if (s_want_map (p, o, where) || s_keys_known (p, o, where, keys))
        return -1;
    const msgpack_object *match = tr__map_get (o, "match"), *regex = tr__map_get (o, "regex");
    const msgpack_object *answer = tr__map_get (o, "answer"), *error = tr__map_get (o, "error");
    const msgpack_object *latency = tr__map_get (o, "latency");
    rule->latency_ms = -1;
    if (!match == !regex)
        return s_bad (p, "%s needs exactly one of 'match', 'regex'", where);
    if (!answer == !error)
        return s_bad (p, "%s needs exactly one of 'answer', 'error'", where);
    if (match && s_want_str (p, match, "'match'", &rule->match))
        return -1;
    if (regex) {
        char *text = NULL;
        if (s_want_str (p, regex, "'regex'", &text))
            return -1;
        int rc = regcomp (&rule->regex, text, REG_EXTENDED);
        if (rc) {
            char why [128];
            regerror (rc, &rule->regex, why, sizeof why);
            s_bad (p, "%s: 'regex' '%s' is not a POSIX extended regular expression: %s",
                   where, text, why);
            free (text);
            return -1;
        }
        free (text);
        rule->has_regex = true;
    }
    if (error) {
        static const char *const errors [] = { "", "fail", "timeout", "malformed", NULL };
        char *text = NULL;
        if (s_want_str (p, error, "'error'", &text))
            return -1;
        for (int e = 1; errors [e]; e++)
            if (strcmp (text, errors [e]) == 0)
                rule->error = e;
        if (!rule->error)
            s_bad (p, "%s: 'error' must be fail, timeout or malformed, not '%s'", where, text);
        free (text);
        if (!rule->error)
            return -1;
    }
    if (answer) {
        bool list = answer->type == MSGPACK_OBJECT_ARRAY;
        uint32_t n = list? answer->via.array.size: 1;
        if (n == 0)
            return s_bad (p, "%s: 'answer' must not be an empty list", where);
        rule->answers = (char **) calloc (n, sizeof (char *));
        if (!rule->answers)
            return s_bad (p, "out of memory");
        for (uint32_t i = 0; i < n; i++, rule->nanswers++)
            if (s_answer_text (p, list? &answer->via.array.ptr [i]: answer, "'answer'",
                               &rule->answers [i]))
                return -1;
    }
    if (latency && s_want_duration (p, latency, "'latency'", INT32_MAX, &rule->latency_ms))
        return -1;
    return 0;
}

static int
s_parse_offline (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    static const char *const keys [] = { "latency", "seed", "rules", NULL };
    if (s_want_map (p, o, "'offline'") || s_keys_known (p, o, "'offline'", keys))
        return -1;
    const msgpack_object *v;
    int64_t seed = 0;
    if ((v = tr__map_get (o, "latency"))
    &&  s_want_duration (p, v, "'offline.latency'", INT32_MAX, &cfg->latency_ms))
        return -1;
    if ((v = tr__map_get (o, "seed"))) {
        if (s_want_int (p, v, "'offline.seed'", INT64_MIN, INT64_MAX, &seed))
            return -1;
        cfg->seed = (uint64_t) seed;
    }
    const msgpack_object *rules = tr__map_get (o, "rules");
    if (!rules)
        return 0;
    if (s_want_list (p, rules, "'offline.rules'"))
        return -1;
    cfg->rules = (s_rule_t *) calloc (rules->via.array.size + 1, sizeof (s_rule_t));
    if (!cfg->rules)
        return s_bad (p, "out of memory");
    for (uint32_t i = 0; i < rules->via.array.size; i++) {
        char where [48];
        snprintf (where, sizeof where, "offline.rules[%u]", i + 1);
        cfg->nrules++;
        if (s_parse_rule (p, &rules->via.array.ptr [i], where, &cfg->rules [i]))
            return -1;
    }
    return 0;
}

//  The request fields the agent writes itself, which `extra` may not.
static int
s_parse_extra (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    if (s_want_map (p, o, "'extra'"))
        return -1;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr [i].key;
        if (tr__key_is (key, "model") || tr__key_is (key, "messages") || tr__key_is (key, "stream")
        ||  (cfg->has_temperature && tr__key_is (key, "temperature"))
        ||  (cfg->max_tokens && tr__key_is (key, "max_tokens"))
        ||  (cfg->sig && cfg->json_mode && tr__key_is (key, "response_format")))
            return s_bad (p, "'extra' may not set '%.*s': the agent sets it itself%s",
                          (int) key->via.str.size, key->via.str.ptr,
                          tr__key_is (key, "stream")? " (answers are not streamed)":
                          " (use the parameter of that name)");
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *o);
    cfg->extra_size = sb.size;
    cfg->extra = (uint8_t *) msgpack_sbuffer_release (&sb);
    cfg->extra_count = o->via.map.size;
    return cfg->extra? 0: s_bad (p, "out of memory");
}

//  A backend name from the agent's: its characters outside [A-Za-z0-9._-]
//  become '_', and it is cut at 63 bytes.
static char *
s_backend_name_from (const char *agent)
{
    char name [64];
    size_t n = 0;
    for (; agent [n] && n < sizeof name - 1; n++) {
        char c = agent [n];
        name [n] = isalnum ((unsigned char) c) || c == '.' || c == '_' || c == '-'? c: '_';
    }
    name [n] = 0;
    return strdup (name);
}

static int
s_parse_url (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    char *base = NULL;
    if (s_want_str (p, o, "'base_url'", &base))
        return -1;
    if (strncmp (base, "http://", 7) && strncmp (base, "https://", 8)) {
        s_bad (p, "'base_url' must start with http:// or https://, not '%s'", base);
        free (base);
        return -1;
    }
    size_t len = strlen (base);
    while (len > 8 && base [len - 1] == '/')
        base [--len] = 0;
    s_buf_t url = { 0 };
    s_buf_printf (&url, "%s/chat/completions", base);
    free (base);
    cfg->url = s_buf_take (&url);
    cfg->offline = false;
    return cfg->url? 0: s_bad (p, "out of memory");
}

static int
s_parse_key (s_parse_t *p, const msgpack_object *o, s_config_t *cfg)
{
    char *env = NULL;
    if (s_want_str (p, o, "'api_key_env'", &env))
        return -1;
    const char *key = getenv (env);
    if (!key || !*key) {
        s_bad (p, "the environment variable %s (named by 'api_key_env') is not set", env);
        free (env);
        return -1;
    }
    free (env);
    if (strpbrk (key, "\r\n"))
        return s_bad (p, "the API key must not hold a line break");
    s_buf_t auth = { 0 };
    s_buf_printf (&auth, "Authorization: Bearer %s", key);
    cfg->auth = s_buf_take (&auth);
    return cfg->auth? 0: s_bad (p, "out of memory");
}

//  Reads the whole configuration. On failure p->error says why.
static int
s_config_parse (s_parse_t *p, const msgpack_object *params, s_config_t *cfg)
{
    cfg->offline = true;
    cfg->output_retries = 2;
    cfg->json_mode = true;
    cfg->seed = 0;
    if (params && params->type != MSGPACK_OBJECT_MAP)
        return s_bad (p, "parameters must be a mapping");
    const msgpack_object *v;
    int64_t n;
    if ((v = tr__map_get (params, "base_url")) && s_parse_url (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "model")) && s_want_str (p, v, "'model'", &cfg->model))
        return -1;
    if (!cfg->offline && !cfg->model)
        return s_bad (p, "'model' is required with 'base_url'");
    if (!cfg->model && !(cfg->model = strdup ("offline")))
        return s_bad (p, "out of memory");
    if ((v = tr__map_get (params, "api_key_env")) && s_parse_key (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "system")) && s_want_str (p, v, "'system'", &cfg->system))
        return -1;
    if ((v = tr__map_get (params, "temperature"))) {
        if (s_want_number (p, v, "'temperature'", &cfg->temperature))
            return -1;
        if (!(cfg->temperature >= 0 && cfg->temperature <= 2))
            return s_bad (p, "'temperature' must be from 0 to 2, not %g", cfg->temperature);
        cfg->has_temperature = true;
    }
    if ((v = tr__map_get (params, "max_tokens"))
    &&  s_want_int (p, v, "'max_tokens'", 1, INT32_MAX, &cfg->max_tokens))
        return -1;
    if ((v = tr__map_get (params, "output_retries"))) {
        if (s_want_int (p, v, "'output_retries'", 0, 20, &n))
            return -1;
        cfg->output_retries = (int) n;
    }
    if ((v = tr__map_get (params, "json_mode")) && s_want_bool (p, v, "'json_mode'", &cfg->json_mode))
        return -1;
    if ((v = tr__map_get (params, "signature")) && s_parse_signature (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "extra")) && s_parse_extra (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "backend")) && s_parse_backend (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "history")) && s_parse_history (p, v, cfg))
        return -1;
    if ((v = tr__map_get (params, "offline")) && s_parse_offline (p, v, cfg))
        return -1;
    if (!cfg->backend_name && !(cfg->backend_name = s_backend_name_from (p->agent)))
        return s_bad (p, "out of memory");
    cfg->backend.name = cfg->backend_name;
    return 0;
}

static const tr_param_spec_t s_llm_params [] = {
    { "base_url", TR_PARAM_STRING, false, "OpenAI-compatible API root, e.g. http://127.0.0.1:11434/v1 (none: offline backend)" },
    { "model", TR_PARAM_STRING, false, "model name sent with each request (required with base_url)" },
    { "api_key_env", TR_PARAM_STRING, false, "environment variable holding the API key" },
    { "system", TR_PARAM_STRING, false, "system prompt" },
    { "temperature", TR_PARAM_NUMBER, false, "sampling temperature, 0 to 2" },
    { "max_tokens", TR_PARAM_INT, false, "longest answer, in tokens" },
    { "extra", TR_PARAM_MAP, false, "more request fields, sent as they are" },
    { "backend", TR_PARAM_MAP, false, "HTTP backend: name, limits, timeouts, retries, cache" },
    { "history", TR_PARAM_MAP, false, "conversation history: max_messages, max_tokens, overflow, keep" },
    { "signature", TR_PARAM_MAP, false, "structured output: instructions, inputs, outputs, reasoning" },
    { "output_retries", TR_PARAM_INT, false, "asks again this often when an answer does not fit (default 2)" },
    { "json_mode", TR_PARAM_BOOL, false, "send response_format json_object for signatures (default true)" },
    { "offline", TR_PARAM_MAP, false, "offline backend: latency, seed, rules" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Messages of a conversation or a request

typedef struct {
    const char *role;                   //  "system", "user", "assistant"
    char *content;
} s_msg_t;

typedef struct {
    s_msg_t *items;
    size_t count, cap;
} s_msgs_t;

static int
s_msgs_add (s_msgs_t *list, const char *role, const char *content, size_t len)
{
    if (list->count == list->cap) {
        size_t cap = list->cap? list->cap * 2: 8;
        s_msg_t *items = (s_msg_t *) realloc (list->items, cap * sizeof *items);
        if (!items)
            return -1;
        list->items = items;
        list->cap = cap;
    }
    char *copy = s_copy (content, len);
    if (!copy)
        return -1;
    list->items [list->count].role = role;
    list->items [list->count].content = copy;
    list->count++;
    return 0;
}

//  Removes the first n messages.
static void
s_msgs_shift (s_msgs_t *list, size_t n)
{
    if (n > list->count)
        n = list->count;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        free (list->items [i].content);
    memmove (list->items, list->items + n, (list->count - n) * sizeof *list->items);
    list->count -= n;
}

static void
s_msgs_free (s_msgs_t *list)
{
    s_msgs_shift (list, list->count);
    free (list->items);
    memset (list, 0, sizeof *list);
}

//  Tokens of a list of messages, estimated (four per message of framing).
static uint64_t
s_msgs_tokens (const s_msgs_t *list)
{
    uint64_t tokens = 0;
    for (size_t i = 0; i < list->count; i++)
        tokens += s_tokens (strlen (list->items [i].content)) + 4;
    return tokens;
}

//  --------------------------------------------------------------------------
//  The agent and its calls

typedef struct s_call s_call_t;
typedef struct s_agent s_agent_t;

struct s_call {
    s_agent_t *agent;
    atomic_int refs;                    //  see "Lifetime" above
    int kind;                           //  S_CHAT, S_SIGNATURE, S_SUMMARY
    tr_msg_t *ask;                      //  the deferred ask, or NULL
    bool conversational;                //  a turn of the conversation
    char *input;                        //  the ask's text: prompt or inputs
    s_msgs_t msgs;                      //  the request's messages
    size_t summarized;                  //  S_SUMMARY: history messages it replaces
    int attempt;                        //  1 for the first request
    int64_t deadline_ns;                //  the asker's, 0 for none
    int priority;
    uint64_t send_seq;                  //  requests made (agent lock)
    uint64_t http_id;                   //  the one in flight, or 0 (agent lock)
    uint32_t tokens_est;                //  charged to the backend up front
    //  An offline answer waiting for its time (delay thread).
    int64_t due_ns;
    int off_error;
    long off_status;
    char *off_body;
    s_call_t *prev, *next;              //  the agent's calls (agent lock)
    s_call_t *next_turn;                //  turns waiting (agent lock)
};

struct s_agent {
    s_config_t cfg;
    tr_node_t *node;
    tr__mbox_t *mbox;                   //  a reference, for the info counters
    pthread_mutex_t lock;
    pthread_cond_t drained;             //  ncalls reached 0
    s_call_t *calls;
    size_t ncalls;
    bool closing;
    bool orphaned;                      //  the last call frees the agent
    s_msgs_t history;
    bool turn_busy;                     //  a turn (or summary) is under way
    s_call_t *turns_head, *turns_tail;
    size_t nturns;
    //  The offline backend's delay thread and its heap of calls by due time.
    pthread_t delay;
    bool delay_started, delay_stop;
    pthread_cond_t delay_cond;
    s_call_t **heap;
    size_t heap_n, heap_cap;
    atomic_uint_fast64_t next_id;       //  offline completion ids
};

//  Adds to one of the agent's counters in status (tr_actor_info_add).
static void
s_count (s_agent_t *agent, const char *key, int64_t delta)
{
    if (delta && agent->mbox)
        tr__mbox_info_add (agent->mbox, key, delta);
}

static void
s_agent_free (s_agent_t *agent)
{
    s_config_free (&agent->cfg);
    s_msgs_free (&agent->history);
    free (agent->heap);
    tr__mbox_unref (&agent->mbox);
    pthread_mutex_destroy (&agent->lock);
    pthread_cond_destroy (&agent->drained);
    pthread_cond_destroy (&agent->delay_cond);
    free (agent);
}

static s_call_t *
s_call_new (s_agent_t *agent, int kind)
{
    s_call_t *call = (s_call_t *) calloc (1, sizeof *call);
    if (!call)
        return NULL;
    call->agent = agent;
    call->kind = kind;
    call->attempt = 1;
    atomic_init (&call->refs, 1);
    pthread_mutex_lock (&agent->lock);
    call->next = agent->calls;
    if (agent->calls)
        agent->calls->prev = call;
    agent->calls = call;
    agent->ncalls++;
    pthread_mutex_unlock (&agent->lock);
    return call;
}

//  Drops a reference; the last one frees the call (and an orphaned agent
//  with its last call).
static void
s_call_unref (s_call_t *call)
{
    if (atomic_fetch_sub (&call->refs, 1) != 1)
        return;
    s_agent_t *agent = call->agent;
    pthread_mutex_lock (&agent->lock);
    if (call->prev)
        call->prev->next = call->next;
    else
        agent->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    bool last = --agent->ncalls == 0;
    bool free_agent = last && agent->orphaned;
    if (last)
        pthread_cond_broadcast (&agent->drained);
    pthread_mutex_unlock (&agent->lock);
    //  An ask still held here was never answered: destroying it answers
    //  TR_ENOREPLY (only on paths that failed to answer, which is a bug).
    tr_msg_destroy (&call->ask);
    free (call->input);
    free (call->off_body);
    s_msgs_free (&call->msgs);
    free (call);
    if (free_agent)
        s_agent_free (agent);
}

//  Quotes text for a log line: at most S_QUOTE_MAX bytes, one line.
static void
s_quote (char *out, size_t size, const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < size && n < S_QUOTE_MAX; i++)
        out [n++] = text [i] == '\n' || text [i] == '\r'? ' ': text [i];
    if (n < len && n + 4 < size) {
        memcpy (out + n, "...", 3);
        n += 3;
    }
    out [n] = 0;
}

//  --------------------------------------------------------------------------
//  Building a request

//  The system message of a call: the agent's prompt, and for a signature
//  its task and the JSON it must answer with.
static char *
s_system_text (const s_config_t *cfg, int kind)
{
    s_buf_t b = { 0 };
    if (cfg->system)
        s_buf_str (&b, cfg->system);
    const s_sig_t *sig = cfg->sig;
    if (kind == S_SIGNATURE) {
        if (b.len)
            s_buf_str (&b, "\n\n");
        if (sig->instructions)
            s_buf_printf (&b, "%s\n\n", sig->instructions);
        s_buf_str (&b, "The input fields come as lines of \"name: value\". Answer with "
                   "one JSON object and nothing else (no prose, no code fence), with "
                   "exactly these fields, in this order:\n");
        if (sig->reasoning)
            s_buf_str (&b, "- \"reasoning\" (string): your reasoning, step by step, "
                       "written before the answer\n");
        for (size_t i = 0; i < sig->noutputs; i++) {
            const s_field_t *f = &sig->outputs [i];
            s_buf_printf (&b, "- \"%s\" (", f->name);
            if (f->type == TR_LLM_ENUM) {
                s_buf_str (&b, "one of");
                for (size_t j = 0; j < f->nvalues; j++)
                    s_buf_printf (&b, "%s \"%s\"", j? ",": "", f->values [j]);
            }
            else
                s_buf_str (&b, f->type == TR_LLM_INT? "integer":
                               f->type == TR_LLM_NUMBER? "number":
                               f->type == TR_LLM_BOOL? "true or false":
                               f->type == TR_LLM_LIST? "list of strings": "string");
            s_buf_printf (&b, ")%s%s\n", f->desc? ": ": "", f->desc? f->desc: "");
        }
        s_buf_str (&b, "The input fields:\n");
        for (size_t i = 0; i < sig->ninputs; i++)
            s_buf_printf (&b, "- %s%s%s\n", sig->inputs [i].name,
                          sig->inputs [i].desc? ": ": "",
                          sig->inputs [i].desc? sig->inputs [i].desc: "");
    }
    if (!b.len && !b.oom)
        return NULL;
    return s_buf_take (&b);
}

//  Fills the call's messages: system, the conversation so far (for a
//  turn), the ask's text.
static int
s_call_prepare (s_call_t *call)
{
    s_agent_t *agent = call->agent;
    char *system = s_system_text (&agent->cfg, call->kind);
    int rc = 0;
    if (system)
        rc = s_msgs_add (&call->msgs, "system", system, strlen (system));
    free (system);
    if (call->conversational) {
        pthread_mutex_lock (&agent->lock);
        for (size_t i = 0; i < agent->history.count && rc == 0; i++)
            rc = s_msgs_add (&call->msgs, agent->history.items [i].role,
                             agent->history.items [i].content,
                             strlen (agent->history.items [i].content));
        pthread_mutex_unlock (&agent->lock);
    }
    if (rc == 0)
        rc = s_msgs_add (&call->msgs, "user", call->input, strlen (call->input));
    return rc? TR_ENOMEM: TR_OK;
}

//  The request body, as JSON text (malloc'd).
static char *
s_request_json (const s_call_t *call, size_t *len_p)
{
    const s_config_t *cfg = &call->agent->cfg;
    bool json_format = call->kind == S_SIGNATURE && cfg->json_mode;
    bool extra = call->kind != S_SUMMARY && cfg->extra;
    size_t fields = 2 + cfg->has_temperature + (cfg->max_tokens > 0) + json_format
                  + (extra? cfg->extra_count: 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, fields);
    tr__pack_str (&pk, "model");
    tr__pack_str (&pk, cfg->model);
    tr__pack_str (&pk, "messages");
    msgpack_pack_array (&pk, call->msgs.count);
    for (size_t i = 0; i < call->msgs.count; i++) {
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "role");
        tr__pack_str (&pk, call->msgs.items [i].role);
        tr__pack_str (&pk, "content");
        tr__pack_str (&pk, call->msgs.items [i].content);
    }
    if (cfg->has_temperature) {
        tr__pack_str (&pk, "temperature");
        msgpack_pack_double (&pk, cfg->temperature);
    }
    if (cfg->max_tokens > 0) {
        tr__pack_str (&pk, "max_tokens");
        msgpack_pack_int64 (&pk, cfg->max_tokens);
    }
    if (json_format) {
        tr__pack_str (&pk, "response_format");
        msgpack_pack_map (&pk, 1);
        tr__pack_str (&pk, "type");
        tr__pack_str (&pk, "json_object");
    }
    if (extra) {
        //  The extra map's pairs follow its header: copy them as they are.
        const uint8_t *e = cfg->extra;
        size_t header = e [0] == 0xde? 3: e [0] == 0xdf? 5: 1;
        msgpack_sbuffer_write (&sb, (const char *) e + header, cfg->extra_size - header);
    }
    char *text = NULL;
    if (!sb.data || tr__json_from_msgpack (sb.data, sb.size, &text, len_p))
        text = NULL;
    msgpack_sbuffer_destroy (&sb);
    return text;
}

//  --------------------------------------------------------------------------
//  Reading a completion

typedef struct {
    const char *content;                //  points into the unpacked value
    size_t len;
    int64_t prompt_tokens;              //  -1 when the server did not say
    int64_t completion_tokens;
} s_completion_t;

static bool
s_obj_int (const msgpack_object *o, int64_t *value)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *value = (int64_t) o->via.u64;
        return true;
    }
    return false;
}

//  Finds the answer in a chat completion (JSON text). Returns 0, or -1
//  with the reason in why. The result points into *unpacked, which the
//  caller destroys, and *mp, which the caller frees.
static int
s_completion_read (const char *body, size_t size, msgpack_unpacked *unpacked, char **mp,
                   s_completion_t *out, char *why, size_t why_size)
{
    size_t mp_size;
    tr__json_error_t err;
    if (tr__json_parse (body, size, mp, &mp_size, &err)) {
        snprintf (why, why_size, "the response is not JSON (%d:%d: %s)",
                  err.line, err.column, err.message);
        return -1;
    }
    if (msgpack_unpack_next (unpacked, *mp, mp_size, NULL) != MSGPACK_UNPACK_SUCCESS) {
        snprintf (why, why_size, "the response could not be read");
        return -1;
    }
    const msgpack_object *root = &unpacked->data;
    const msgpack_object *choices = tr__map_get (root, "choices");
    if (!choices || choices->type != MSGPACK_OBJECT_ARRAY || choices->via.array.size == 0) {
        snprintf (why, why_size, "the response has no 'choices'");
        return -1;
    }
    const msgpack_object *message = tr__map_get (&choices->via.array.ptr [0], "message");
    const msgpack_object *content = tr__map_get (message, "content");
    if (!content || content->type != MSGPACK_OBJECT_STR) {
        snprintf (why, why_size, "the response's first choice has no message content");
        return -1;
    }
    out->content = content->via.str.size? content->via.str.ptr: "";
    out->len = content->via.str.size;
    const msgpack_object *usage = tr__map_get (root, "usage");
    out->prompt_tokens = out->completion_tokens = -1;
    s_obj_int (tr__map_get (usage, "prompt_tokens"), &out->prompt_tokens);
    s_obj_int (tr__map_get (usage, "completion_tokens"), &out->completion_tokens);
    return 0;
}

//  --------------------------------------------------------------------------
//  Checking an answer against the signature

//  Strips white space and a Markdown code fence around the answer.
static void
s_unfence (const char **text, size_t *len)
{
    const char *s = *text, *e = *text + *len;
    while (s < e && isspace ((unsigned char) *s))
        s++;
    while (e > s && isspace ((unsigned char) e [-1]))
        e--;
    //  ```json ... ``` (the language tag is optional)
    if (e - s >= 6 && memcmp (s, "```", 3) == 0 && memcmp (e - 3, "```", 3) == 0) {
        s += 3;
        e -= 3;
        while (s < e && isalpha ((unsigned char) *s))
            s++;
        while (s < e && isspace ((unsigned char) *s))
            s++;
        while (e > s && isspace ((unsigned char) e [-1]))
            e--;
    }
    *text = s;
    *len = (size_t) (e - s);
}

//  Checks one output value and packs it. Returns 0, or -1 with why.
static int
s_check_field (const s_field_t *f, const msgpack_object *v, msgpack_packer *pk,
               char *why, size_t why_size)
{
    bool integral_float = (v->type == MSGPACK_OBJECT_FLOAT64 || v->type == MSGPACK_OBJECT_FLOAT32)
                       && isfinite (v->via.f64) && v->via.f64 == floor (v->via.f64)
                       && fabs (v->via.f64) < 9.0e15;
    switch (f->type) {
        case TR_LLM_STRING:
            if (v->type != MSGPACK_OBJECT_STR)
                break;
            msgpack_pack_object (pk, *v);
            return 0;
        case TR_LLM_INT:
            if (integral_float) {
                msgpack_pack_int64 (pk, (int64_t) v->via.f64);
                return 0;
            }
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
                break;
            msgpack_pack_object (pk, *v);
            return 0;
        case TR_LLM_NUMBER:
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER
            &&  v->type != MSGPACK_OBJECT_FLOAT64 && v->type != MSGPACK_OBJECT_FLOAT32)
                break;
            msgpack_pack_object (pk, *v);
            return 0;
        case TR_LLM_BOOL:
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                break;
            msgpack_pack_object (pk, *v);
            return 0;
        case TR_LLM_LIST:
            if (v->type != MSGPACK_OBJECT_ARRAY)
                break;
            for (uint32_t i = 0; i < v->via.array.size; i++)
                if (v->via.array.ptr [i].type != MSGPACK_OBJECT_STR) {
                    snprintf (why, why_size, "field \"%s\" must be a list of strings, "
                              "but item %u is %s", f->name, i + 1,
                              tr__cfg_kind (&v->via.array.ptr [i]));
                    return -1;
                }
            msgpack_pack_object (pk, *v);
            return 0;
        case TR_LLM_ENUM:
            if (v->type != MSGPACK_OBJECT_STR)
                break;
            for (size_t j = 0; j < f->nvalues; j++)
                if (strlen (f->values [j]) == v->via.str.size
                &&  memcmp (f->values [j], v->via.str.ptr, v->via.str.size) == 0) {
                    msgpack_pack_object (pk, *v);
                    return 0;
                }
            {
                s_buf_t b = { 0 };
                for (size_t j = 0; j < f->nvalues; j++)
                    s_buf_printf (&b, "%s\"%s\"", j? ", ": "", f->values [j]);
                snprintf (why, why_size, "field \"%s\" must be one of %s, not \"%.*s\"",
                          f->name, b.data? b.data: "", (int) (v->via.str.size > 80? 80: v->via.str.size),
                          v->via.str.ptr);
                free (b.data);
            }
            return -1;
    }
    static const char *const words [] = {
        "a string", "an integer", "a number", "true or false", "a list of strings", "a string"
    };
    snprintf (why, why_size, "field \"%s\" must be %s, not %s", f->name, words [f->type],
              tr__cfg_kind (v));
    return -1;
}

//  Checks the answer against the signature. Returns 0 with the reply map
//  (msgpack, malloc'd) in *reply_p, or -1 with the reason in why.
static int
s_validate (const s_sig_t *sig, const char *content, size_t len, char **reply_p,
            size_t *reply_size, char *why, size_t why_size)
{
    s_unfence (&content, &len);
    char *mp = NULL;
    size_t mp_size;
    tr__json_error_t err;
    if (tr__json_parse (content, len, &mp, &mp_size, &err)) {
        snprintf (why, why_size, "the answer is not valid JSON (%d:%d: %s)",
                  err.line, err.column, err.message);
        return -1;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_unpack_next (&unpacked, mp, mp_size, NULL) != MSGPACK_UNPACK_SUCCESS)
        snprintf (why, why_size, "the answer could not be read");
    else
    if (unpacked.data.type != MSGPACK_OBJECT_MAP)
        snprintf (why, why_size, "the answer must be a JSON object, not %s",
                  tr__cfg_kind (&unpacked.data));
    else {
        const msgpack_object *root = &unpacked.data;
        msgpack_pack_map (&pk, sig->noutputs + sig->reasoning);
        rc = 0;
        if (sig->reasoning) {
            const msgpack_object *r = tr__map_get (root, "reasoning");
            static const s_field_t reasoning = { .name = "reasoning", .type = TR_LLM_STRING };
            tr__pack_str (&pk, "reasoning");
            if (!r) {
                snprintf (why, why_size, "field \"reasoning\" is missing");
                rc = -1;
            }
            else
                rc = s_check_field (&reasoning, r, &pk, why, why_size);
        }
        for (size_t i = 0; i < sig->noutputs && rc == 0; i++) {
            const msgpack_object *v = tr__map_get (root, sig->outputs [i].name);
            tr__pack_str (&pk, sig->outputs [i].name);
            if (!v) {
                snprintf (why, why_size, "field \"%s\" is missing", sig->outputs [i].name);
                rc = -1;
            }
            else
                rc = s_check_field (&sig->outputs [i], v, &pk, why, why_size);
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    free (mp);
    if (rc == 0 && !sb.data) {
        snprintf (why, why_size, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        *reply_size = sb.size;
        *reply_p = msgpack_sbuffer_release (&sb);
    }
    msgpack_sbuffer_destroy (&sb);
    return rc;
}

//  --------------------------------------------------------------------------
//  The offline backend: answers made here, as a server would make them

//  The words of a text (runs of non-space bytes), at most max.
typedef struct {
    const char *at [64];
    size_t len [64];
    size_t count;                       //  kept
    size_t total;                       //  in the whole text
} s_words_t;

static void
s_words (const char *text, s_words_t *w)
{
    w->count = w->total = 0;
    const char *p = text;
    while (*p) {
        while (*p && isspace ((unsigned char) *p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !isspace ((unsigned char) *p))
            p++;
        if (w->count < 64) {
            w->at [w->count] = start;
            w->len [w->count] = (size_t) (p - start);
            w->count++;
        }
        w->total++;
    }
}

//  The longest word, without punctuation at its ends, in out.
static void
s_key_term (const s_words_t *w, char *out, size_t size)
{
    size_t best_len = 0;
    const char *best_at = "";
    for (size_t i = 0; i < w->count; i++) {
        const char *s = w->at [i];
        size_t len = w->len [i];
        while (len && ispunct ((unsigned char) *s))
            s++, len--;
        while (len && ispunct ((unsigned char) s [len - 1]))
            len--;
        if (len > best_len) {
            best_len = len;
            best_at = s;
        }
    }
    snprintf (out, size, "%.*s", (int) (best_len < size? best_len: size - 1), best_at);
}

//  The first n words of a text, joined by single spaces.
static void
s_first_words (s_buf_t *b, const s_words_t *w, size_t n)
{
    for (size_t i = 0; i < w->count && i < n; i++)
        s_buf_printf (b, "%s%.*s", i? " ": "", (int) w->len [i], w->at [i]);
    if (w->total > n)
        s_buf_str (b, " ...");
}

static const char *const s_openers [] = {
    "In short", "Briefly", "Put simply", "The gist", "As I read it", "To sum up",
    "Here is my take", "Plainly"
};
#define S_OPENERS (sizeof s_openers / sizeof s_openers [0])

//  The number of user messages in the call's request (its turn).
static size_t
s_turn_number (const s_call_t *call)
{
    size_t turns = 0;
    for (size_t i = 0; i < call->msgs.count; i++)
        turns += strcmp (call->msgs.items [i].role, "user") == 0;
    return turns;
}

//  A plain answer derived from the prompt: an opener chosen by the hash,
//  the prompt's first words, its length and its key term; for a turn of a
//  conversation, the turn's number.
static char *
s_derive_chat (const s_call_t *call, uint64_t h)
{
    s_words_t w;
    s_words (call->input, &w);
    char term [64];
    s_key_term (&w, term, sizeof term);
    s_buf_t b = { 0 };
    s_buf_printf (&b, "%s: ", s_openers [h % S_OPENERS]);
    s_first_words (&b, &w, 12);
    s_buf_printf (&b, " (%zu word%s", w.total, w.total == 1? "": "s");
    if (*term)
        s_buf_printf (&b, "; key term '%s'", term);
    s_buf_str (&b, ")");
    if (call->conversational)
        s_buf_printf (&b, " [turn %zu]", s_turn_number (call));
    s_buf_str (&b, ".");
    return s_buf_take (&b);
}

//  A summary of a transcript: the first words of each of its lines.
static char *
s_derive_summary (const s_call_t *call)
{
    s_buf_t b = { 0 };
    s_buf_printf (&b, "Summary of %zu earlier messages: ", call->summarized);
    const char *line = call->input;
    for (int n = 0; *line && b.len < 600; n++) {
        const char *end = strchr (line, '\n');
        size_t len = end? (size_t) (end - line): strlen (line);
        char *copy = strndup (line, len);
        if (!copy)
            break;
        s_words_t w;
        s_words (copy, &w);
        if (n)
            s_buf_str (&b, "; ");
        s_first_words (&b, &w, 8);
        free (copy);
        line += len + (end? 1: 0);
    }
    return s_buf_take (&b);
}

//  Structured output derived from the inputs: every output field filled,
//  with a value of its type chosen by a hash of the inputs and the field.
static char *
s_derive_signature (const s_call_t *call, uint64_t seed)
{
    const s_sig_t *sig = call->agent->cfg.sig;
    s_words_t w;
    s_words (call->input, &w);
    char term [64];
    s_key_term (&w, term, sizeof term);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, sig->noutputs + sig->reasoning);
    if (sig->reasoning) {
        s_buf_t b = { 0 };
        s_buf_printf (&b, "The input has %zu words; its key term is '%s', so the "
                      "answer follows from it.", w.total, term);
        tr__pack_str (&pk, "reasoning");
        tr__pack_str (&pk, b.data? b.data: "");
        free (b.data);
    }
    for (size_t i = 0; i < sig->noutputs; i++) {
        const s_field_t *f = &sig->outputs [i];
        uint64_t h = s_hash (seed ^ s_hash (0, f->name, strlen (f->name)),
                             call->input, strlen (call->input));
        tr__pack_str (&pk, f->name);
        if (f->type == TR_LLM_STRING) {
            s_buf_t b = { 0 };
            s_buf_printf (&b, "%s: ", s_openers [h % S_OPENERS]);
            //  The words after each "name:" of the rendered inputs.
            s_words_t v;
            const char *colon = strchr (call->input, ':');
            s_words (colon? colon + 1: call->input, &v);
            s_first_words (&b, &v, 10);
            tr__pack_str (&pk, b.data? b.data: "");
            free (b.data);
        }
        else
        if (f->type == TR_LLM_INT)
            msgpack_pack_int64 (&pk, (int64_t) (h % 100));
        else
        if (f->type == TR_LLM_NUMBER)
            msgpack_pack_double (&pk, (double) (h % 1000) / 1000.0);
        else
        if (f->type == TR_LLM_BOOL)
            (h & 1)? msgpack_pack_true (&pk): msgpack_pack_false (&pk);
        else
        if (f->type == TR_LLM_LIST) {
            size_t n = w.count < 3? w.count: 3;
            msgpack_pack_array (&pk, n);
            for (size_t j = 0; j < n; j++) {
                size_t k = (size_t) ((h >> (j * 8)) % w.count);
                msgpack_pack_str_with_body (&pk, w.at [k], w.len [k]);
            }
        }
        else
            tr__pack_str (&pk, f->values [h % f->nvalues]);
    }
    char *text = NULL;
    size_t len;
    if (!sb.data || tr__json_from_msgpack (sb.data, sb.size, &text, &len))
        text = NULL;
    msgpack_sbuffer_destroy (&sb);
    return text;
}

//  The answer of a regex rule, with $1..$9 replaced by the groups and $$
//  by a dollar.
static char *
s_substitute (const char *answer, const char *input, const regmatch_t *groups)
{
    s_buf_t b = { 0 };
    for (const char *p = answer; *p; p++) {
        if (p [0] == '$' && p [1] == '$') {
            s_buf_add (&b, "$", 1);
            p++;
        }
        else
        if (p [0] == '$' && p [1] >= '0' && p [1] <= '9') {
            const regmatch_t *g = &groups [p [1] - '0'];
            if (g->rm_so >= 0)
                s_buf_add (&b, input + g->rm_so, (size_t) (g->rm_eo - g->rm_so));
            p++;
        }
        else
            s_buf_add (&b, p, 1);
    }
    return s_buf_take (&b);
}

//  The first rule that takes the ask's text, or NULL; groups filled for
//  a regex rule.
static const s_rule_t *
s_rule_find (const s_config_t *cfg, const char *input, regmatch_t *groups)
{
    for (size_t i = 0; i < cfg->nrules; i++) {
        const s_rule_t *rule = &cfg->rules [i];
        if (rule->match && strstr (input, rule->match))
            return rule;
        if (rule->has_regex && regexec (&rule->regex, input, S_GROUPS, groups, 0) == 0)
            return rule;
    }
    return NULL;
}

//  An OpenAI-style chat completion around content, with token counts
//  estimated as the server would report them.
static char *
s_completion_json (s_agent_t *agent, const s_call_t *call, const char *content)
{
    uint64_t prompt = s_msgs_tokens (&call->msgs);
    uint64_t answer = s_tokens (strlen (content));
    char id [48];
    snprintf (id, sizeof id, "offline-%llu",
              (unsigned long long) atomic_fetch_add (&agent->next_id, 1) + 1);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    tr__pack_str (&pk, "id");
    tr__pack_str (&pk, id);
    tr__pack_str (&pk, "object");
    tr__pack_str (&pk, "chat.completion");
    tr__pack_str (&pk, "model");
    tr__pack_str (&pk, agent->cfg.model);
    tr__pack_str (&pk, "choices");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "index");
    msgpack_pack_int (&pk, 0);
    tr__pack_str (&pk, "message");
    msgpack_pack_map (&pk, 2);
    tr__pack_str (&pk, "role");
    tr__pack_str (&pk, "assistant");
    tr__pack_str (&pk, "content");
    tr__pack_str (&pk, content);
    tr__pack_str (&pk, "finish_reason");
    tr__pack_str (&pk, "stop");
    tr__pack_str (&pk, "usage");
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "prompt_tokens");
    msgpack_pack_uint64 (&pk, prompt);
    tr__pack_str (&pk, "completion_tokens");
    msgpack_pack_uint64 (&pk, answer);
    tr__pack_str (&pk, "total_tokens");
    msgpack_pack_uint64 (&pk, prompt + answer);
    char *text = NULL;
    size_t len;
    if (!sb.data || tr__json_from_msgpack (sb.data, sb.size, &text, &len))
        text = NULL;
    msgpack_sbuffer_destroy (&sb);
    return text;
}

//  What the offline backend answers to the call's current request: fills
//  off_error, off_status, off_body and returns the latency in ms.
static int64_t
s_offline_answer (s_call_t *call)
{
    s_agent_t *agent = call->agent;
    const s_config_t *cfg = &agent->cfg;
    regmatch_t groups [S_GROUPS];
    const s_rule_t *rule = call->kind == S_SUMMARY? NULL:
                           s_rule_find (cfg, call->input, groups);
    int64_t latency = rule && rule->latency_ms >= 0? rule->latency_ms: cfg->latency_ms;
    free (call->off_body);
    call->off_body = NULL;
    call->off_error = TR_OK;
    call->off_status = 200;
    if (rule && rule->error == S_ERR_FAIL) {
        call->off_error = TR_EHTTP;
        call->off_status = 500;
        call->off_body = strdup ("{\"error\":{\"message\":\"scripted failure\"}}");
        return latency;
    }
    if (rule && rule->error == S_ERR_TIMEOUT) {
        //  Nothing comes back: the attempt's timeout or the ask's
        //  deadline ends it, whichever is first.
        int64_t timeout = cfg->backend.timeout_ms > 0? cfg->backend.timeout_ms: 120000;
        if (call->deadline_ns) {
            int64_t left = (call->deadline_ns - tr__now_ns ()) / 1000000;
            timeout = left < timeout? (left > 0? left: 0): timeout;
        }
        call->off_error = TR_ETIMEDOUT;
        call->off_status = 0;
        return timeout;
    }
    if (rule && rule->error == S_ERR_MALFORMED) {
        call->off_body = strdup ("{\"choices\": [{\"message\": {\"content\": \"cut off");
        return latency;
    }
    char *content = NULL;
    uint64_t h = s_hash (cfg->seed, call->input, strlen (call->input));
    if (rule) {
        size_t i = (size_t) call->attempt - 1 < rule->nanswers? (size_t) call->attempt - 1:
                   rule->nanswers - 1;
        content = rule->has_regex? s_substitute (rule->answers [i], call->input, groups):
                                   strdup (rule->answers [i]);
    }
    else
    if (call->kind == S_SUMMARY)
        content = s_derive_summary (call);
    else
    if (call->kind == S_SIGNATURE)
        content = s_derive_signature (call, cfg->seed);
    else
        content = s_derive_chat (call, h);
    if (content)
        call->off_body = s_completion_json (agent, call, content);
    free (content);
    if (!call->off_body) {
        call->off_error = TR_ENOMEM;
        call->off_status = 0;
    }
    return latency;
}

//  The delay thread's heap, ordered by due time.
static bool
s_heap_less (const s_call_t *a, const s_call_t *b)
{
    return a->due_ns < b->due_ns;
}

static int
s_heap_push (s_agent_t *agent, s_call_t *call)
{
    if (agent->heap_n == agent->heap_cap) {
        size_t cap = agent->heap_cap? agent->heap_cap * 2: 64;
        s_call_t **heap = (s_call_t **) realloc (agent->heap, cap * sizeof *heap);
        if (!heap)
            return -1;
        agent->heap = heap;
        agent->heap_cap = cap;
    }
    size_t i = agent->heap_n++;
    agent->heap [i] = call;
    while (i && s_heap_less (agent->heap [i], agent->heap [(i - 1) / 2])) {
        s_call_t *t = agent->heap [i];
        agent->heap [i] = agent->heap [(i - 1) / 2];
        agent->heap [(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return 0;
}

static s_call_t *
s_heap_pop (s_agent_t *agent)
{
    s_call_t *top = agent->heap [0];
    agent->heap [0] = agent->heap [--agent->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < agent->heap_n && s_heap_less (agent->heap [l], agent->heap [m]))
            m = l;
        if (r < agent->heap_n && s_heap_less (agent->heap [r], agent->heap [m]))
            m = r;
        if (m == i)
            break;
        s_call_t *t = agent->heap [i];
        agent->heap [i] = agent->heap [m];
        agent->heap [m] = t;
        i = m;
    }
    return top;
}

static void s_call_done (s_call_t *call, int error, long status, const char *body,
                         size_t size, bool cached, const char *detail);

//  Completes an offline request with what s_offline_answer made.
static void
s_offline_complete (s_call_t *call, int error_override)
{
    char *body = call->off_body;
    call->off_body = NULL;
    int error = error_override? error_override: call->off_error;
    s_call_done (call, error, error_override? 0: call->off_status, body,
                 body? strlen (body): 0, false,
                 error_override? "the agent stopped": error == TR_ETIMEDOUT?
                 "scripted timeout": error? "scripted failure": "");
    free (body);
}

//  The delay thread: completes offline requests when they are due; on
//  stop, cancels those left.
static void *
s_delay_main (void *arg)
{
    s_agent_t *agent = (s_agent_t *) arg;
    pthread_mutex_lock (&agent->lock);
    while (!agent->delay_stop) {
        if (agent->heap_n == 0) {
            pthread_cond_wait (&agent->delay_cond, &agent->lock);
            continue;
        }
        int64_t now = tr__now_ns ();
        s_call_t *top = agent->heap [0];
        if (top->due_ns > now) {
            //  pthread_cond_timedwait counts on the realtime clock.
            struct timespec ts;
            clock_gettime (CLOCK_REALTIME, &ts);
            int64_t wait = top->due_ns - now;
            ts.tv_sec += wait / 1000000000;
            ts.tv_nsec += wait % 1000000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait (&agent->delay_cond, &agent->lock, &ts);
            continue;
        }
        s_heap_pop (agent);
        pthread_mutex_unlock (&agent->lock);
        s_offline_complete (top, 0);
        pthread_mutex_lock (&agent->lock);
    }
    while (agent->heap_n) {
        s_call_t *call = s_heap_pop (agent);
        pthread_mutex_unlock (&agent->lock);
        s_offline_complete (call, TR_ECANCELED);
        pthread_mutex_lock (&agent->lock);
    }
    pthread_mutex_unlock (&agent->lock);
    return NULL;
}

//  Sends the call's request to the offline backend. The request's own
//  reference goes with it. Returns TR_OK or why it could not be sent.
static int
s_offline_send (s_call_t *call)
{
    s_agent_t *agent = call->agent;
    int64_t latency = s_offline_answer (call);
    atomic_fetch_add (&call->refs, 1);
    if (latency <= 0 && call->off_error != TR_ETIMEDOUT) {
        s_offline_complete (call, 0);
        return TR_OK;
    }
    call->due_ns = tr__now_ns () + latency * 1000000;
    pthread_mutex_lock (&agent->lock);
    int rc = agent->closing? TR_ESTOPPED: TR_OK;
    if (rc == TR_OK && !agent->delay_started) {
        if (pthread_create (&agent->delay, NULL, s_delay_main, agent) == 0)
            agent->delay_started = true;
        else
            rc = TR_ESYS;
    }
    if (rc == TR_OK && s_heap_push (agent, call))
        rc = TR_ENOMEM;
    if (rc == TR_OK)
        pthread_cond_signal (&agent->delay_cond);
    pthread_mutex_unlock (&agent->lock);
    if (rc)
        atomic_fetch_sub (&call->refs, 1);
    return rc;
}

//  --------------------------------------------------------------------------
//  The HTTP backend

static void
s_http_done (const tr_http_result_t *result, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    pthread_mutex_lock (&call->agent->lock);
    call->http_id = 0;
    pthread_mutex_unlock (&call->agent->lock);
    s_call_done (call, result->error, result->status, result->body, result->size,
                 result->cached, result->detail);
}

//  Submits the call's request to the node's HTTP engine. The request's
//  own reference goes with it. Returns TR_OK or why it was not sent.
static int
s_http_send (s_call_t *call, const char *json, size_t len)
{
    s_agent_t *agent = call->agent;
    const s_config_t *cfg = &agent->cfg;
    const char *headers [3] = { "Content-Type: application/json", cfg->auth, NULL };
    tr_http_request_t req = {
        .backend = cfg->backend_name,
        .method = "POST",
        .url = cfg->url,
        .headers = headers,
        .body = json,
        .body_size = len,
        .priority = call->priority,
        .tokens = call->tokens_est,
        .cacheable = cfg->cache
    };
    if (call->deadline_ns) {
        int64_t left = (call->deadline_ns - tr__now_ns ()) / 1000000;
        if (left <= 0)
            return TR_ETIMEDOUT;
        req.deadline_ms = left > INT32_MAX? INT32_MAX: (int) left;
    }
    pthread_mutex_lock (&agent->lock);
    uint64_t seq = ++call->send_seq;
    bool closing = agent->closing;
    pthread_mutex_unlock (&agent->lock);
    if (closing)
        return TR_ESTOPPED;
    atomic_fetch_add (&call->refs, 1);
    uint64_t id = 0;
    int rc = tr_http_submit (agent->node, &req, s_http_done, call, &id);
    if (rc != TR_OK) {
        atomic_fetch_sub (&call->refs, 1);
        return rc;
    }
    //  The callback may have run already (and even sent the next request):
    //  the id is kept only while this is still the call's latest request.
    pthread_mutex_lock (&agent->lock);
    if (call->send_seq == seq)
        call->http_id = id;
    closing = agent->closing;
    pthread_mutex_unlock (&agent->lock);
    if (closing)
        tr_http_cancel (agent->node, id);
    return TR_OK;
}

//  Sends the call's current messages to its backend.
static int
s_call_send (s_call_t *call)
{
    s_agent_t *agent = call->agent;
    call->tokens_est = (uint32_t) s_msgs_tokens (&call->msgs)
                     + (uint32_t) (agent->cfg.max_tokens > 0? agent->cfg.max_tokens: 0);
    s_count (agent, "llm.requests", 1);
    if (agent->cfg.offline)
        return s_offline_send (call);
    size_t len;
    char *json = s_request_json (call, &len);
    if (!json)
        return TR_ENOMEM;
    int rc = s_http_send (call, json, len);
    free (json);
    return rc;
}

//  --------------------------------------------------------------------------
//  Answers, failures, the conversation

static void s_turn_finished (s_agent_t *agent);

//  Answers the ask (or logs the answer of a tell) with a msgpack body.
static void
s_call_answer (s_call_t *call, const void *body, size_t size, const char *text, size_t len)
{
    s_agent_t *agent = call->agent;
    s_count (agent, "llm.answered", 1);
    if (call->ask) {
        int rc = tr_reply (call->ask, body, size);
        if (rc != TR_OK)
            tr_log (TR_LOG_WARN, "llm '%s': reply: %s", agent->cfg.name, tr_strerror (rc));
        tr_msg_destroy (&call->ask);
    }
    else {
        char prompt [S_QUOTE_MAX + 8], answer [S_QUOTE_MAX + 8];
        s_quote (prompt, sizeof prompt, call->input, strlen (call->input));
        s_quote (answer, sizeof answer, text, len);
        tr_log (TR_LOG_INFO, "llm '%s': \"%s\" -> \"%s\"", agent->cfg.name, prompt, answer);
    }
}

//  Fails the call: answers its ask with error, logs why.
static void
s_call_fail (s_call_t *call, int error, const char *why)
{
    s_agent_t *agent = call->agent;
    s_count (agent, "llm.failed", 1);
    int level = error == TR_ESTOPPED || error == TR_ECANCELED? TR_LOG_INFO: TR_LOG_WARN;
    tr_log (level, "llm '%s': %s failed: %s%s%s", agent->cfg.name,
            call->kind == S_SUMMARY? "summary": call->ask? "ask": "tell",
            tr_strerror (error), why && *why? ": ": "", why? why: "");
    if (call->ask) {
        tr_reply_error (call->ask, error);
        tr_msg_destroy (&call->ask);
    }
}

//  Publishes why an answer did not fit, for whoever watches (the asker
//  only gets TR_EOUTPUT).
static void
s_output_failed (s_call_t *call, const char *why, const char *content, size_t len)
{
    s_agent_t *agent = call->agent;
    char quoted [S_QUOTE_MAX + 8];
    s_quote (quoted, sizeof quoted, content, len);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "agent");
    tr__pack_str (&pk, agent->cfg.name);
    tr__pack_str (&pk, "reason");
    tr__pack_str (&pk, why);
    tr__pack_str (&pk, "attempts");
    msgpack_pack_int (&pk, call->attempt);
    tr__pack_str (&pk, "answer");
    tr__pack_str (&pk, quoted);
    if (sb.data)
        tr_event_publish (agent->node, "llm.output_failed", sb.data, sb.size, NULL);
    msgpack_sbuffer_destroy (&sb);
    s_count (agent, "llm.output_failed", 1);
    tr_log (TR_LOG_WARN, "llm '%s': answer does not fit the signature after %d attempt%s: "
            "%s; answer: \"%s\"", agent->cfg.name, call->attempt, call->attempt == 1? "": "s",
            why, quoted);
}

//  Counts the tokens of a completion, and corrects the backend's charge.
static void
s_call_tokens (s_call_t *call, const s_completion_t *c, bool cached)
{
    s_agent_t *agent = call->agent;
    int64_t prompt = c->prompt_tokens >= 0? c->prompt_tokens: (int64_t) s_msgs_tokens (&call->msgs);
    int64_t answer = c->completion_tokens >= 0? c->completion_tokens: (int64_t) s_tokens (c->len);
    if (cached) {
        s_count (agent, "llm.cache_hits", 1);
        return;
    }
    s_count (agent, "llm.prompt_tokens", prompt);
    s_count (agent, "llm.completion_tokens", answer);
    if (!agent->cfg.offline)
        tr_http_charge (agent->node, agent->cfg.backend_name,
                        prompt + answer - (int64_t) call->tokens_est);
}

//  True if the conversation is past its bound.
static bool
s_history_over (const s_agent_t *agent)
{
    const s_config_t *cfg = &agent->cfg;
    return agent->history.count > cfg->hist_messages
        || (cfg->hist_tokens > 0 && s_msgs_tokens (&agent->history) > (uint64_t) cfg->hist_tokens);
}

//  Drops the oldest messages until the conversation fits (agent lock held).
//  It never starts with an answer whose question is gone.
static size_t
s_history_trim (s_agent_t *agent)
{
    size_t dropped = 0;
    while (agent->history.count && s_history_over (agent)) {
        s_msgs_shift (&agent->history, 1);
        dropped++;
    }
    while (agent->history.count && strcmp (agent->history.items [0].role, "assistant") == 0) {
        s_msgs_shift (&agent->history, 1);
        dropped++;
    }
    return dropped;
}

//  A summary request for the oldest part of the conversation (agent lock
//  held), or NULL when out of memory.
static s_call_t *
s_summary_new (s_agent_t *agent)
{
    size_t n = agent->history.count - agent->cfg.keep;
    s_buf_t transcript = { 0 };
    for (size_t i = 0; i < n; i++)
        s_buf_printf (&transcript, "%s: %s\n", agent->history.items [i].role,
                      agent->history.items [i].content);
    char *input = s_buf_take (&transcript);
    if (!input)
        return NULL;
    //  s_call_new takes the lock: the caller's is released around it.
    pthread_mutex_unlock (&agent->lock);
    s_call_t *call = s_call_new (agent, S_SUMMARY);
    pthread_mutex_lock (&agent->lock);
    if (!call) {
        free (input);
        return NULL;
    }
    call->input = input;
    call->summarized = n;
    static const char *system = "You summarise conversations. Write a short summary of "
        "the conversation below that keeps every name, number and decision needed to "
        "continue it. Answer with the summary only.";
    if (s_msgs_add (&call->msgs, "system", system, strlen (system))
    ||  s_msgs_add (&call->msgs, "user", input, strlen (input))) {
        s_call_unref (call);
        return NULL;
    }
    return call;
}

//  A summary came back: it replaces the messages it summarised.
static void
s_summary_done (s_call_t *call, const char *content, size_t len)
{
    s_agent_t *agent = call->agent;
    s_buf_t b = { 0 };
    s_buf_str (&b, "Summary of the earlier conversation: ");
    s_buf_add (&b, content, len);
    char *text = s_buf_take (&b);
    pthread_mutex_lock (&agent->lock);
    if (text) {
        s_msgs_shift (&agent->history, call->summarized);
        s_msgs_t rest = agent->history;
        memset (&agent->history, 0, sizeof agent->history);
        s_msgs_add (&agent->history, "system", text, strlen (text));
        for (size_t i = 0; i < rest.count; i++)
            s_msgs_add (&agent->history, rest.items [i].role, rest.items [i].content,
                        strlen (rest.items [i].content));
        s_msgs_free (&rest);
    }
    s_history_trim (agent);
    pthread_mutex_unlock (&agent->lock);
    free (text);
    s_count (agent, "llm.summaries", 1);
}

//  Starts a call whose messages are ready; fails it if it cannot start.
//  Returns TR_OK if it started.
static int
s_call_start (s_call_t *call)
{
    int rc = call->msgs.count? TR_OK: s_call_prepare (call);
    if (rc == TR_OK)
        rc = s_call_send (call);
    return rc;
}

//  Runs a turn (or a summary), then those that wait, as long as they fail
//  to start; each holds its own reference, dropped here.
static void
s_turns_run (s_call_t *call)
{
    while (call) {
        s_agent_t *agent = call->agent;
        int rc = s_call_start (call);
        if (rc == TR_OK) {
            s_call_unref (call);
            return;
        }
        if (call->kind == S_SUMMARY) {
            tr_log (rc == TR_ESTOPPED? TR_LOG_INFO: TR_LOG_WARN, "llm '%s': summary could "
                    "not start (%s): oldest messages dropped instead", agent->cfg.name,
                    tr_strerror (rc));
            pthread_mutex_lock (&agent->lock);
            s_history_trim (agent);
            pthread_mutex_unlock (&agent->lock);
        }
        else
            s_call_fail (call, rc, "the request could not be sent");
        s_call_unref (call);
        //  The next turn, if any, without going through s_turn_finished
        //  (no recursion however many fail).
        pthread_mutex_lock (&agent->lock);
        call = agent->closing? NULL: agent->turns_head;
        if (call) {
            agent->turns_head = call->next_turn;
            if (!agent->turns_head)
                agent->turns_tail = NULL;
            agent->nturns--;
        }
        else
            agent->turn_busy = false;
        pthread_mutex_unlock (&agent->lock);
    }
}

//  A turn (or a summary) has ended: summarise or trim the conversation if
//  it is past its bound, then start the next turn waiting, if any.
static void
s_turn_finished (s_agent_t *agent)
{
    pthread_mutex_lock (&agent->lock);
    s_call_t *next = NULL;
    if (agent->closing) {
        agent->turn_busy = false;
        pthread_mutex_unlock (&agent->lock);
        return;
    }
    if (s_history_over (agent) && agent->cfg.summarize
    &&  agent->history.count > agent->cfg.keep + 1)
        next = s_summary_new (agent);
    if (!next && s_history_trim (agent))
        s_count (agent, "llm.history_dropped", 1);
    if (!next && agent->turns_head) {
        next = agent->turns_head;
        agent->turns_head = next->next_turn;
        if (!agent->turns_head)
            agent->turns_tail = NULL;
        agent->nturns--;
    }
    if (!next)
        agent->turn_busy = false;
    pthread_mutex_unlock (&agent->lock);
    s_turns_run (next);
}

//  A string answer: the reply, and for a turn the conversation.
static void
s_chat_done (s_call_t *call, const char *content, size_t len)
{
    s_agent_t *agent = call->agent;
    tr_body_t small;
    if (tr_body_str (&small, content, len) == TR_OK)
        s_call_answer (call, small.data, small.size, content, len);
    else {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init (&sb);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body (&pk, content, len);
        if (sb.data)
            s_call_answer (call, sb.data, sb.size, content, len);
        else
            s_call_fail (call, TR_ENOMEM, "no memory for the answer");
        msgpack_sbuffer_destroy (&sb);
    }
    if (call->conversational) {
        pthread_mutex_lock (&agent->lock);
        if (s_msgs_add (&agent->history, "user", call->input, strlen (call->input)) == 0
        &&  s_msgs_add (&agent->history, "assistant", content, len) != 0) {
            //  Never a question without its answer.
            free (agent->history.items [--agent->history.count].content);
        }
        pthread_mutex_unlock (&agent->lock);
    }
}

//  A structured answer: the reply map, or one more request with the
//  reason the answer did not fit, or TR_EOUTPUT. Returns true if another
//  request went out (the call goes on).
static bool
s_signature_done (s_call_t *call, const char *content, size_t len)
{
    s_agent_t *agent = call->agent;
    char why [256];
    char *reply = NULL;
    size_t reply_size = 0;
    if (s_validate (agent->cfg.sig, content, len, &reply, &reply_size, why, sizeof why) == 0) {
        s_call_answer (call, reply, reply_size, content, len);
        free (reply);
        return false;
    }
    if (call->attempt > agent->cfg.output_retries) {
        s_output_failed (call, why, content, len);
        s_call_fail (call, TR_EOUTPUT, why);
        return false;
    }
    //  Ask again: the answer as given, then what was wrong with it.
    s_buf_t b = { 0 };
    s_buf_printf (&b, "Your answer did not fit: %s. Answer again with one JSON object "
                  "with exactly the fields asked for, and nothing else.", why);
    char *feedback = s_buf_take (&b);
    int rc = feedback? TR_OK: TR_ENOMEM;
    if (rc == TR_OK
    &&  (s_msgs_add (&call->msgs, "assistant", content, len)
    ||   s_msgs_add (&call->msgs, "user", feedback, strlen (feedback))))
        rc = TR_ENOMEM;
    free (feedback);
    s_count (agent, "llm.output_retries", 1);
    tr_log (TR_LOG_INFO, "llm '%s': answer does not fit (%s): asking again (%d of %d)",
            agent->cfg.name, why, call->attempt, agent->cfg.output_retries);
    call->attempt++;
    if (rc == TR_OK)
        rc = s_call_send (call);
    if (rc == TR_OK)
        return true;
    s_call_fail (call, rc, "the next attempt could not be sent");
    return false;
}

//  A request of the call has completed (on the engine's thread, the delay
//  thread, or inline for the offline backend). Consumes the request's
//  reference.
static void
s_call_done (s_call_t *call, int error, long status, const char *body, size_t size,
             bool cached, const char *detail)
{
    s_agent_t *agent = call->agent;
    bool more = false;
    char why [384] = "";
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    char *mp = NULL;
    s_completion_t c = { 0 };
    pthread_mutex_lock (&agent->lock);
    bool closing = agent->closing;
    pthread_mutex_unlock (&agent->lock);
    if (error == TR_ECANCELED && closing)
        error = TR_ESTOPPED;
    if (error) {
        snprintf (why, sizeof why, "%s%sHTTP status %ld", detail && *detail? detail: "",
                  detail && *detail? "; ": "", status);
        if (status == 0)
            snprintf (why, sizeof why, "%s", detail? detail: "");
        else
        if (body && size) {
            //  What the server said (an API's error message, usually).
            char quoted [S_QUOTE_MAX + 8];
            s_quote (quoted, sizeof quoted, body, size);
            size_t n = strlen (why);
            snprintf (why + n, sizeof why - n, ": \"%.200s\"", quoted);
        }
    }
    else
    if (s_completion_read (body, size, &unpacked, &mp, &c, why, sizeof why)) {
        char quoted [S_QUOTE_MAX + 8];
        s_quote (quoted, sizeof quoted, body? body: "", size);
        size_t n = strlen (why);
        snprintf (why + n, sizeof why - n, ": \"%.120s\"", quoted);
        error = TR_EHTTP;
    }
    if (error) {
        if (call->kind == S_SUMMARY) {
            tr_log (closing? TR_LOG_INFO: TR_LOG_WARN, "llm '%s': summary failed (%s: %s): "
                    "oldest messages dropped instead", agent->cfg.name, tr_strerror (error), why);
            s_count (agent, "llm.failed", 1);
            pthread_mutex_lock (&agent->lock);
            s_history_trim (agent);
            pthread_mutex_unlock (&agent->lock);
        }
        else
            s_call_fail (call, error, why);
    }
    else {
        s_call_tokens (call, &c, cached);
        if (call->kind == S_SUMMARY)
            s_summary_done (call, c.content, c.len);
        else
        if (call->kind == S_SIGNATURE)
            more = s_signature_done (call, c.content, c.len);
        else
            s_chat_done (call, c.content, c.len);
    }
    msgpack_unpacked_destroy (&unpacked);
    free (mp);
    bool turn = call->conversational || call->kind == S_SUMMARY;
    if (!more && turn)
        s_turn_finished (agent);
    s_call_unref (call);
}

//  --------------------------------------------------------------------------
//  Taking asks

//  Renders a signature's inputs as "name: value" lines, in declared order
//  (strings as they are, other values as JSON). Returns TR_OK, or
//  TR_EINVAL with why (a missing or unknown field, a NUL byte).
static int
s_render_inputs (const s_sig_t *sig, const msgpack_object *map, char **text_p,
                 char *why, size_t why_size)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        bool known = false;
        for (size_t j = 0; j < sig->ninputs && !known; j++)
            known = tr__key_is (key, sig->inputs [j].name);
        if (!known) {
            if (key->type == MSGPACK_OBJECT_STR)
                snprintf (why, why_size, "unknown input field '%.*s'",
                          (int) (key->via.str.size > 64? 64: key->via.str.size), key->via.str.ptr);
            else
                snprintf (why, why_size, "input field names must be strings");
            return TR_EINVAL;
        }
    }
    s_buf_t b = { 0 };
    for (size_t j = 0; j < sig->ninputs; j++) {
        const msgpack_object *v = tr__map_get (map, sig->inputs [j].name);
        if (!v) {
            snprintf (why, why_size, "input field '%s' is missing", sig->inputs [j].name);
            free (b.data);
            return TR_EINVAL;
        }
        s_buf_printf (&b, "%s: ", sig->inputs [j].name);
        if (v->type == MSGPACK_OBJECT_STR) {
            if (s_has_nul (v->via.str.ptr, v->via.str.size)) {
                snprintf (why, why_size, "input field '%s' holds a NUL byte", sig->inputs [j].name);
                free (b.data);
                return TR_EINVAL;
            }
            s_buf_add (&b, v->via.str.ptr, v->via.str.size);
        }
        else {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init (&sb);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_object (&pk, *v);
            char *json = NULL;
            size_t len;
            if (sb.data && tr__json_from_msgpack (sb.data, sb.size, &json, &len) == 0)
                s_buf_add (&b, json, len);
            else
                b.oom = true;
            free (json);
            msgpack_sbuffer_destroy (&sb);
        }
        s_buf_str (&b, "\n");
    }
    *text_p = s_buf_take (&b);
    if (!*text_p) {
        snprintf (why, why_size, "out of memory");
        return TR_ENOMEM;
    }
    return TR_OK;
}

//  Reads an ask's body into a new call. Returns TR_OK, or TR_EINVAL /
//  TR_ENOMEM with why.
static int
s_call_from_body (s_agent_t *agent, const tr_msg_t *msg, s_call_t **call_p,
                  char *why, size_t why_size)
{
    const s_config_t *cfg = &agent->cfg;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = TR_EINVAL;
    char *input = NULL;
    int kind = cfg->sig? S_SIGNATURE: S_CHAT;
    if (!tr_msg_size (msg)
    ||  msgpack_unpack_next (&unpacked, (const char *) tr_msg_body (msg), tr_msg_size (msg),
                             NULL) != MSGPACK_UNPACK_SUCCESS)
        snprintf (why, why_size, "the body must be a string (a prompt)%s",
                  cfg->sig? " or a map of the signature's inputs": "");
    else {
        const msgpack_object *o = &unpacked.data;
        if (o->type == MSGPACK_OBJECT_STR && cfg->sig && cfg->sig->ninputs != 1)
            snprintf (why, why_size, "a string ask needs a signature of one input; "
                      "this one has %zu: ask with a map", cfg->sig->ninputs);
        else
        if (o->type == MSGPACK_OBJECT_STR && s_has_nul (o->via.str.ptr, o->via.str.size))
            snprintf (why, why_size, "the prompt holds a NUL byte");
        else
        if (o->type == MSGPACK_OBJECT_STR && cfg->sig) {
            s_buf_t b = { 0 };
            s_buf_printf (&b, "%s: ", cfg->sig->inputs [0].name);
            s_buf_add (&b, o->via.str.ptr, o->via.str.size);
            s_buf_str (&b, "\n");
            input = s_buf_take (&b);
            rc = input? TR_OK: TR_ENOMEM;
        }
        else
        if (o->type == MSGPACK_OBJECT_STR) {
            input = s_copy (o->via.str.ptr, o->via.str.size);
            rc = input? TR_OK: TR_ENOMEM;
        }
        else
        if (o->type == MSGPACK_OBJECT_MAP && cfg->sig)
            rc = s_render_inputs (cfg->sig, o, &input, why, why_size);
        else
            snprintf (why, why_size, "the body must be a string (a prompt)%s, not %s",
                      cfg->sig? " or a map of the signature's inputs": "", tr__cfg_kind (o));
    }
    msgpack_unpacked_destroy (&unpacked);
    if (rc != TR_OK)
        return rc;
    s_call_t *call = s_call_new (agent, kind);
    if (!call) {
        free (input);
        snprintf (why, why_size, "out of memory");
        return TR_ENOMEM;
    }
    call->input = input;
    call->conversational = kind == S_CHAT && cfg->hist_messages > 0;
    call->priority = tr_msg_priority (msg);
    int64_t left = tr_msg_remaining_ms (msg);
    if (left >= 0)
        call->deadline_ns = tr__now_ns () + left * 1000000;
    *call_p = call;
    return TR_OK;
}

//  Queues a turn behind the one under way, or makes it the one under way.
//  Returns 1 if queued, 0 if it is to start now, TR_EFULL.
static int
s_turn_enter (s_agent_t *agent, s_call_t *call)
{
    pthread_mutex_lock (&agent->lock);
    int rc = 0;
    if (!agent->turn_busy)
        agent->turn_busy = true;
    else
    if (agent->nturns >= S_MAX_WAITING)
        rc = TR_EFULL;
    else {
        if (agent->turns_tail)
            agent->turns_tail->next_turn = call;
        else
            agent->turns_head = call;
        agent->turns_tail = call;
        agent->nturns++;
        rc = 1;
    }
    pthread_mutex_unlock (&agent->lock);
    return rc;
}

static int
s_llm_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_agent_t *agent = (s_agent_t *) state;
    int kind = tr_msg_kind (msg);
    if (kind != TR_KIND_ASK && kind != TR_KIND_TELL)
        return 0;                       //  replies and errors: nothing asked
    char why [256] = "";
    s_call_t *call = NULL;
    int rc = s_call_from_body (agent, msg, &call, why, sizeof why);
    if (rc != TR_OK) {
        tr_log (TR_LOG_INFO, "llm '%s': %s from '%s' refused: %s", agent->cfg.name,
                kind == TR_KIND_ASK? "ask": "tell", tr_msg_from (msg), why);
        if (kind == TR_KIND_ASK)
            tr_reply_error (msg, rc);
        return 0;
    }
    s_count (agent, "llm.asks", 1);
    if (kind == TR_KIND_ASK)
        call->ask = tr_defer (msg);
    if (call->conversational) {
        rc = s_turn_enter (agent, call);
        if (rc == 1)
            return 0;                   //  waits for its turn, with its reference
        if (rc == TR_EFULL) {
            s_call_fail (call, TR_EFULL, "too many turns wait for the conversation");
            s_call_unref (call);
            return 0;
        }
        s_turns_run (call);
        return 0;
    }
    rc = s_call_start (call);
    if (rc != TR_OK)
        s_call_fail (call, rc, "the request could not be sent");
    s_call_unref (call);
    return 0;
}

//  --------------------------------------------------------------------------
//  The backends LLM agents use, per node, for status

typedef struct s_use {
    tr_node_t *node;
    char *name;
    int agents;
    struct s_use *next;
} s_use_t;

static pthread_mutex_t s_uses_lock = PTHREAD_MUTEX_INITIALIZER;
static s_use_t *s_uses;

//  Counts one more agent on the backend (or one fewer: delta -1).
static void
s_use (tr_node_t *node, const char *name, int delta)
{
    pthread_mutex_lock (&s_uses_lock);
    s_use_t **link = &s_uses;
    while (*link && ((*link)->node != node || strcmp ((*link)->name, name)))
        link = &(*link)->next;
    s_use_t *use = *link;
    if (!use && delta > 0 && (use = (s_use_t *) calloc (1, sizeof *use))) {
        use->node = node;
        if (!(use->name = strdup (name))) {
            free (use);
            use = NULL;
        }
        else {
            use->next = s_uses;
            s_uses = use;
            link = &s_uses;
        }
    }
    if (use && (use->agents += delta) <= 0) {
        *link = use->next;
        free (use->name);
        free (use);
    }
    pthread_mutex_unlock (&s_uses_lock);
}

void
tr__llm_backends_pack (tr_node_t *node, struct msgpack_packer *pk)
{
    pthread_mutex_lock (&s_uses_lock);
    size_t count = 0;
    for (s_use_t *use = s_uses; use; use = use->next)
        count += use->node == node;
    msgpack_pack_array (pk, count);
    for (s_use_t *use = s_uses; use; use = use->next) {
        if (use->node != node)
            continue;
        tr_http_stats_t st = { 0 };
        tr_http_stats (node, use->name, &st);
        struct { const char *key; uint64_t value; } fields [] = {
            { "agents", (uint64_t) use->agents }, { "submitted", st.submitted },
            { "completed_ok", st.completed_ok }, { "failed", st.failed },
            { "retries", st.retries }, { "cache_hits", st.cache_hits },
            { "tokens", st.tokens }, { "in_flight", st.in_flight }, { "queued", st.queued }
        };
        size_t n = sizeof fields / sizeof fields [0];
        msgpack_pack_map (pk, n + 1);
        tr__pack_str (pk, "name");
        tr__pack_str (pk, use->name);
        for (size_t i = 0; i < n; i++) {
            tr__pack_str (pk, fields [i].key);
            msgpack_pack_uint64 (pk, fields [i].value);
        }
    }
    pthread_mutex_unlock (&s_uses_lock);
}

//  --------------------------------------------------------------------------
//  Start and stop

static int
s_llm_init (tr_actor_t *self, void *arg, void **state_p)
{
    const tr_params_t *params = (const tr_params_t *) arg;
    s_agent_t *agent = (s_agent_t *) calloc (1, sizeof *agent);
    if (!agent)
        return -1;
    s_parse_t parse = { .agent = tr_actor_name (self) };
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *root = NULL;
    int rc = 0;
    if (params && params->data && params->size) {
        if (msgpack_unpack_next (&unpacked, (const char *) params->data, params->size, NULL)
            != MSGPACK_UNPACK_SUCCESS)
            rc = s_bad (&parse, "parameters are not one msgpack value");
        root = &unpacked.data;
    }
    if (rc == 0)
        rc = s_config_parse (&parse, root, &agent->cfg);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && !(agent->cfg.name = strdup (tr_actor_name (self))))
        rc = s_bad (&parse, "out of memory");
    agent->node = tr_actor_node (self);
    //  A backend that exists already keeps its settings when this agent
    //  only names it (agents that share a backend set it up once).
    tr_http_stats_t stats;
    if (rc == 0 && !agent->cfg.offline
    &&  (agent->cfg.backend_settings
    ||   tr_http_stats (agent->node, agent->cfg.backend_name, &stats) != TR_OK)) {
        int http = tr_http_backend_set (agent->node, &agent->cfg.backend);
        if (http != TR_OK)
            rc = s_bad (&parse, "backend '%s' could not be set up: %s",
                        agent->cfg.backend_name, tr_strerror (http));
    }
    if (rc) {
        tr_log (TR_LOG_ERROR, "%s", parse.error);
        tr_actor_exit (self, TR_EINVAL, parse.error);
        s_config_free (&agent->cfg);
        free (agent);
        return -1;
    }
    if (!agent->cfg.seed)
        agent->cfg.seed = s_hash (0, agent->cfg.name, strlen (agent->cfg.name));
    pthread_mutex_init (&agent->lock, NULL);
    pthread_cond_init (&agent->drained, NULL);
    pthread_cond_init (&agent->delay_cond, NULL);
    atomic_init (&agent->next_id, 0);
    agent->mbox = self->mbox;
    tr__mbox_ref (agent->mbox);
    if (!agent->cfg.offline)
        s_use (agent->node, agent->cfg.backend_name, 1);
    *state_p = agent;
    return 0;
}

//  Stops everything under way (see "Lifetime" above).
static void
s_llm_terminate (tr_actor_t *self, int reason, void *state)
{
    s_agent_t *agent = (s_agent_t *) state;
    pthread_mutex_lock (&agent->lock);
    agent->closing = true;
    size_t n = 0;
    for (s_call_t *c = agent->calls; c; c = c->next)
        n += c->http_id != 0;
    uint64_t *ids = n? (uint64_t *) calloc (n, sizeof *ids): NULL;
    n = 0;
    for (s_call_t *c = agent->calls; c && ids; c = c->next)
        if (c->http_id)
            ids [n++] = c->http_id;
    s_call_t *waiting = agent->turns_head;
    agent->turns_head = agent->turns_tail = NULL;
    agent->nturns = 0;
    agent->delay_stop = true;
    pthread_cond_signal (&agent->delay_cond);
    bool delay = agent->delay_started;
    pthread_mutex_unlock (&agent->lock);
    //  Requests in flight: their callbacks answer TR_ESTOPPED.
    for (size_t i = 0; i < n; i++)
        tr_http_cancel (agent->node, ids [i]);
    free (ids);
    while (waiting) {
        s_call_t *next = waiting->next_turn;
        s_call_fail (waiting, TR_ESTOPPED, "the agent stopped");
        s_call_unref (waiting);
        waiting = next;
    }
    if (delay)
        pthread_join (agent->delay, NULL);
    //  Wait for the cancelled requests' callbacks.
    pthread_mutex_lock (&agent->lock);
    int64_t deadline = tr__now_ns () + (int64_t) S_DRAIN_MS * 1000000;
    while (agent->ncalls && tr__now_ns () < deadline) {
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait (&agent->drained, &agent->lock, &ts);
    }
    if (!agent->cfg.offline)
        s_use (agent->node, agent->cfg.backend_name, -1);
    bool left = agent->ncalls > 0;
    if (left) {
        agent->orphaned = true;
        tr_log (TR_LOG_WARN, "llm '%s': %zu request(s) still completing after %d ms; "
                "they will finish on their own", agent->cfg.name, agent->ncalls, S_DRAIN_MS);
    }
    pthread_mutex_unlock (&agent->lock);
    if (!left)
        s_agent_free (agent);
}

//  The tree loader's check: the whole configuration read as the agent's
//  init would read it, so that a mistake deep in `signature`, `backend`,
//  `history` or `offline` is reported with its file, line and column.
static int
s_llm_check (const tr_params_t *params, tr_param_error_t *error)
{
    //  The agent's own name is not known here; the loader names the child.
    s_parse_t parse = { .agent = "llm", .checking = true };
    s_config_t cfg;
    memset (&cfg, 0, sizeof cfg);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *root = NULL;
    int rc = 0;
    if (params && params->data && params->size) {
        if (msgpack_unpack_next (&unpacked, (const char *) params->data, params->size, NULL)
            != MSGPACK_UNPACK_SUCCESS)
            rc = s_bad (&parse, "parameters are not one msgpack value");
        root = &unpacked.data;
    }
    if (rc == 0)
        rc = s_config_parse (&parse, root, &cfg);
    msgpack_unpacked_destroy (&unpacked);
    s_config_free (&cfg);
    if (rc) {
        snprintf (error->message, sizeof error->message, "%.500s", parse.error);
        snprintf (error->path, sizeof error->path, "%s", parse.path);
    }
    return rc? -1: 0;
}

const tr_actor_type_t tr__llm_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "llm",
    .summary = "answers prompts with a language model (OpenAI-compatible, or offline)",
    .behaviour = { s_llm_init, s_llm_handle, s_llm_terminate },
    .params = s_llm_params,
    .check = s_llm_check,
};

const tr_actor_type_t *
tr_llm_type (void)
{
    return &tr__llm_type;
}

//  --------------------------------------------------------------------------
//  Options from C, packed as parameters

static void
s_pack_kv_str (msgpack_packer *pk, const char *key, const char *value)
{
    tr__pack_str (pk, key);
    tr__pack_str (pk, value);
}

static void
s_pack_kv_int (msgpack_packer *pk, const char *key, int64_t value)
{
    tr__pack_str (pk, key);
    msgpack_pack_int64 (pk, value);
}

static int
s_pack_fields (msgpack_packer *pk, const tr_llm_field_t *fields, size_t count)
{
    msgpack_pack_array (pk, count);
    for (size_t i = 0; i < count; i++) {
        const tr_llm_field_t *f = &fields [i];
        if (!f->name || f->type < TR_LLM_STRING || f->type > TR_LLM_ENUM
        ||  (f->type == TR_LLM_ENUM && !f->values))
            return TR_EINVAL;
        msgpack_pack_map (pk, 2 + (f->desc != NULL) + (f->type == TR_LLM_ENUM));
        s_pack_kv_str (pk, "name", f->name);
        s_pack_kv_str (pk, "type", s_type_names [f->type]);
        if (f->desc)
            s_pack_kv_str (pk, "desc", f->desc);
        if (f->type == TR_LLM_ENUM) {
            size_t n = 0;
            while (f->values [n])
                n++;
            tr__pack_str (pk, "values");
            msgpack_pack_array (pk, n);
            for (size_t j = 0; j < n; j++)
                tr__pack_str (pk, f->values [j]);
        }
    }
    return TR_OK;
}

static int
s_pack_backend (msgpack_packer *pk, const tr_llm_opts_t *o)
{
    const tr_http_backend_opts_t *b = &o->backend;
    struct { const char *key; int64_t value; } ints [] = {
        { "max_concurrent", b->max_concurrent }, { "requests_per_minute", b->requests_per_minute },
        { "tokens_per_minute", b->tokens_per_minute }, { "connect_timeout", b->connect_timeout_ms },
        { "timeout", b->timeout_ms },
        //  As in tr_http_backend_opts_t: 0 the default (left out), -1 none.
        { "max_retries", b->max_retries },
        { "backoff_initial", b->backoff_initial_ms }, { "backoff_max", b->backoff_max_ms },
        { "max_response", (int64_t) b->max_response },
        { "cache_entries", o->cache? (int64_t) (b->cache_entries? b->cache_entries: 256): 0 },
        { "cache_ttl", b->cache_ttl_ms }
    };
    size_t n = (b->name != NULL) + (b->ca_file != NULL);
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++)
        n += ints [i].value != 0;
    msgpack_pack_map (pk, n);
    if (b->name)
        s_pack_kv_str (pk, "name", b->name);
    if (b->ca_file)
        s_pack_kv_str (pk, "ca_file", b->ca_file);
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++)
        if (ints [i].value)
            s_pack_kv_int (pk, ints [i].key, ints [i].value);
    return TR_OK;
}

static int
s_pack_offline (msgpack_packer *pk, const tr_llm_opts_t *o)
{
    msgpack_pack_map (pk, 1 + (o->offline_seed != 0) + (o->rule_count > 0));
    s_pack_kv_int (pk, "latency", o->offline_latency_ms);
    if (o->offline_seed)
        s_pack_kv_int (pk, "seed", o->offline_seed);
    if (o->rule_count == 0)
        return TR_OK;
    if (!o->rules)
        return TR_EINVAL;
    tr__pack_str (pk, "rules");
    msgpack_pack_array (pk, o->rule_count);
    for (size_t i = 0; i < o->rule_count; i++) {
        const tr_llm_rule_t *r = &o->rules [i];
        msgpack_pack_map (pk, (r->match != NULL) + (r->regex != NULL) + (r->answer != NULL)
                              + (r->error != NULL) + (r->latency_ms >= 0));
        if (r->match)
            s_pack_kv_str (pk, "match", r->match);
        if (r->regex)
            s_pack_kv_str (pk, "regex", r->regex);
        if (r->answer)
            s_pack_kv_str (pk, "answer", r->answer);
        if (r->error)
            s_pack_kv_str (pk, "error", r->error);
        if (r->latency_ms >= 0)
            s_pack_kv_int (pk, "latency", r->latency_ms);
    }
    return TR_OK;
}

static int
s_pack_signature (msgpack_packer *pk, const tr_llm_signature_t *sig)
{
    tr__pack_str (pk, "signature");
    msgpack_pack_map (pk, 3 + (sig->instructions != NULL));
    if (sig->instructions)
        s_pack_kv_str (pk, "instructions", sig->instructions);
    tr__pack_str (pk, "reasoning");
    sig->reasoning? msgpack_pack_true (pk): msgpack_pack_false (pk);
    tr__pack_str (pk, "inputs");
    int rc = s_pack_fields (pk, sig->inputs, sig->inputs? sig->input_count: 0);
    tr__pack_str (pk, "outputs");
    if (rc == TR_OK)
        rc = s_pack_fields (pk, sig->outputs, sig->outputs? sig->output_count: 0);
    return rc;
}

static void
s_pack_history (msgpack_packer *pk, const tr_llm_opts_t *o)
{
    tr__pack_str (pk, "history");
    msgpack_pack_map (pk, 2 + (o->history_max_tokens > 0) + (o->history_keep > 0));
    s_pack_kv_int (pk, "max_messages", o->history_max_messages);
    s_pack_kv_str (pk, "overflow", o->history_summarize? "summarize": "drop");
    if (o->history_max_tokens > 0)
        s_pack_kv_int (pk, "max_tokens", o->history_max_tokens);
    if (o->history_keep > 0)
        s_pack_kv_int (pk, "keep", o->history_keep);
}

int
tr_llm_params_pack (const tr_llm_opts_t *o, tr_params_t *params)
{
    if (!o || !params)
        return TR_EINVAL;
    const tr_llm_signature_t *sig = o->signature;
    if (o->extra) {
        //  One whole msgpack map and nothing after it.
        tr__mp_t mp;
        uint32_t pairs;
        tr__mp_init (&mp, o->extra, o->extra_size);
        if (tr__mp_map (&mp, &pairs))
            return TR_EINVAL;
        tr__mp_init (&mp, o->extra, o->extra_size);
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) || tr__mp_remaining (&mp))
            return TR_EINVAL;
    }
    size_t n = (o->base_url != NULL) + (o->model != NULL) + (o->api_key_env != NULL)
             + (o->system != NULL) + o->has_temperature + (o->max_tokens > 0)
             + (o->extra != NULL) + 1 + (sig != NULL) + (o->output_retries != 0)
             + o->no_json_mode + (o->history_max_messages > 0) + 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, n);
    if (o->base_url)
        s_pack_kv_str (&pk, "base_url", o->base_url);
    if (o->model)
        s_pack_kv_str (&pk, "model", o->model);
    if (o->api_key_env)
        s_pack_kv_str (&pk, "api_key_env", o->api_key_env);
    if (o->system)
        s_pack_kv_str (&pk, "system", o->system);
    if (o->has_temperature) {
        tr__pack_str (&pk, "temperature");
        msgpack_pack_double (&pk, o->temperature);
    }
    if (o->max_tokens > 0)
        s_pack_kv_int (&pk, "max_tokens", o->max_tokens);
    if (o->extra) {
        tr__pack_str (&pk, "extra");
        msgpack_sbuffer_write (&sb, (const char *) o->extra, o->extra_size);
    }
    tr__pack_str (&pk, "backend");
    int rc = s_pack_backend (&pk, o);
    if (sig && rc == TR_OK)
        rc = s_pack_signature (&pk, sig);
    if (o->output_retries)
        s_pack_kv_int (&pk, "output_retries", o->output_retries < 0? 0: o->output_retries);
    if (o->no_json_mode) {
        tr__pack_str (&pk, "json_mode");
        msgpack_pack_false (&pk);
    }
    if (o->history_max_messages > 0)
        s_pack_history (&pk, o);
    tr__pack_str (&pk, "offline");
    if (rc == TR_OK)
        rc = s_pack_offline (&pk, o);
    if (rc == TR_OK && !sb.data)
        rc = TR_ENOMEM;
    if (rc != TR_OK) {
        msgpack_sbuffer_destroy (&sb);
        return rc;
    }
    params->size = sb.size;
    params->data = (const uint8_t *) msgpack_sbuffer_release (&sb);
    return TR_OK;
}

int
tr_llm_spawn (tr_node_t *node, const char *name, const tr_llm_opts_t *opts,
              const tr_spawn_opts_t *spawn_opts)
{
    if (!node || !name || !opts)
        return TR_EINVAL;
    tr_params_t params;
    int rc = tr_llm_params_pack (opts, &params);
    if (rc != TR_OK)
        return rc;
    //  init copies everything it needs, and tr_spawn returns after init:
    //  the parameters may go when it returns.
    rc = tr_spawn (node, name, &tr__llm_type.behaviour, &params, spawn_opts, NULL);
    free ((void *) params.data);
    return rc;
}
