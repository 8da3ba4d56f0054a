/*  tr_httptool.c - the "http" actor type: a REST endpoint as a tool agent.

    Each message becomes one HTTP request through the node's HTTP engine
    (tr_http.h), built from the tree file's params and the message:

    url       a template: each {field} is replaced by that field of the
              message (a map), percent-encoded (all but A-Z a-z 0-9 - . _ ~);
              strings as they are, numbers and booleans as JSON writes
              them. A missing field, or one that is nil, a map, an array
              or binary, is the asker's mistake: TR_EINVAL.
    method    GET by default.
    headers   a map of names to values; ${NAME} in a value is the
              environment variable NAME (for tokens), read when the actor
              starts (a variable that is not set refuses the start).
    body      "message" (the whole message as JSON; the default for POST,
              PUT and PATCH), "none" (the default otherwise), or a
              template: any map or list, copied with each string that is
              exactly "{field}" replaced by that field's value (any type),
              and {field} inside longer strings replaced by its text.
              A JSON body is sent with Content-Type: application/json
              unless the headers say otherwise.
    response  "auto" (the default: JSON into msgpack when the response's
              Content-Type is JSON, else a string), "text" or "json".

    backend   a mapping, as the llm agent's: `name` (default "http-" and
              the agent's name), and the engine's settings (limits,
              timeouts, retries, response size, cache; tr_http.h), set
              when any is given or when the backend does not exist yet
              (then with the engine's defaults). Agents that share a
              backend share its limits; the last one started sets them.
              `max_retries: 0` means none.

    Asks are answered from the engine's callback (tr_defer): a 2xx answer
    is the reply; anything else is an error to the asker (TR_EHTTP for a
    status after the retries allowed or a connection that failed,
    TR_ETIMEDOUT, TR_ETOOBIG past the response limit, TR_ECLOSED) and,
    through the deferred ask, a failure for the actor's circuit breaker.
    The ask's remaining time is the request's deadline. Tells make the
    same call; a failed one is logged, counted as a dead letter on the
    node (with a sys.dead_letter event) and counted by the breaker too.

    max_pending bounds the requests of the agent in the engine (sent, not
    yet answered; 1024 by default): since the handler returns at once,
    its mailbox's bound no longer bounds its work. Past it an ask gets
    TR_EFULL and a tell is a dead letter, neither sent.

    Counters in status (tr_actor_info_get): http.requests (submitted),
    http.answered, http.failed (tells included), http.invalid (the
    asker's mistakes, never sent), http.pending (in the engine now),
    http.refused (past max_pending).

    The handler never blocks on the network: the actor's thread builds
    and submits, and is free for the next message at once.
*/

#include "tr_internal.h"
#include "tr_event_int.h"
#include "tr_json.h"
#include "tr_mbox.h"
#include "tr_mp.h"
#include "troupe/tr_http.h"
#include "troupe/tr_params.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_BODY_NONE     0
#define S_BODY_MESSAGE  1
#define S_BODY_TEMPLATE 2

#define S_RESPONSE_AUTO 0
#define S_RESPONSE_TEXT 1
#define S_RESPONSE_JSON 2

#define S_HEADERS_MAX   64
#define S_MAX_PENDING   1024
#define S_BACKEND_MAX   63
#define S_RESPONSE_LIMIT (TR_BODY_MAX - 16)     //  an answer must fit in a body

typedef struct {
    tr_actor_t *actor;
    tr_node_t *node;
    const char *name;                   //  the actor's
    char *method;
    char *url;                          //  the template
    char **headers;                     //  "Name: value", NULL-terminated
    int body;                           //  S_BODY_*
    tr_params_t body_template;          //  points into the params
    int response;                       //  S_RESPONSE_*
    char backend [S_BACKEND_MAX + 1];
    bool cacheable;
    int64_t max_pending;                //  requests in the engine at once
} s_http_t;

//  One call in flight: everything the completion needs, since the actor
//  may have restarted (and freed its state) by then.
typedef struct {
    tr_node_t *node;
    tr_msg_t *msg;                      //  the deferred ask, or the tell we took
    bool ask;
    int response;
    char what [160];                    //  "GET http://...", for logs
} s_call_t;

static const tr_param_spec_t s_http_params [] = {
    { "url", TR_PARAM_STRING, true, "URL template: {field} from the message's map, encoded" },
    { "method", TR_PARAM_STRING, false, "HTTP method (default GET)" },
    { "headers", TR_PARAM_MAP, false, "header names to values; ${NAME} reads the environment" },
    { "body", TR_PARAM_ANY, false, "message, none, or a template map or list" },
    { "response", TR_PARAM_STRING, false, "auto (default), text or json" },
    { "backend", TR_PARAM_MAP, false, "HTTP backend: name, limits, timeouts, retries, response size, cache" },
    { "cacheable", TR_PARAM_BOOL, false, "answers may come from the backend's cache" },
    { "max_pending", TR_PARAM_INT, false, "requests sent and not yet answered, at most (default 1024)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_http_free (s_http_t *self)
{
    if (!self)
        return;
    free (self->method);
    free (self->url);
    for (char **h = self->headers; h && *h; h++)
        free (*h);
    free (self->headers);
    free (self);
}

//  Refuses to start with a reason that the supervisor reports.
static int __attribute__ ((format (printf, 2, 3)))
s_refuse (s_http_t *self, const char *format, ...)
{
    char text [256];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    tr_log (TR_LOG_ERROR, "http '%s': %s", self->name, text);
    tr_actor_exit (self->actor, TR_EINVAL, text);
    return -1;
}

//  A string parameter as a new C string; *value stays as it was when the
//  key is absent. -1 if it holds a NUL byte or memory ran out.
static int
s_read_str (s_http_t *self, const tr_params_t *params, const char *key, char **value)
{
    const char *text;
    size_t len;
    if (tr_params_str (params, key, &text, &len) != TR_OK)
        return 0;
    if (memchr (text, 0, len))
        return s_refuse (self, "'%s' must not hold a NUL byte", key);
    free (*value);
    *value = strndup (text, len);
    return *value? 0: -1;
}

//  The URL template: http:// or https://, and well-formed {field}s.
static int
s_check_url (s_http_t *self)
{
    if (strncasecmp (self->url, "http://", 7) && strncasecmp (self->url, "https://", 8))
        return s_refuse (self, "'url' must start with http:// or https://, not '%.64s'",
                         self->url);
    for (const char *p = self->url; (p = strchr (p, '{')); ) {
        const char *end = strchr (p + 1, '}');
        const char *nested = strchr (p + 1, '{');
        if (!end || end == p + 1 || (nested && nested < end))
            return s_refuse (self, "'url' has a '{' without a field name and '}' at "
                             "offset %zu", (size_t) (p - self->url));
        p = end + 1;
    }
    if (strchr (self->url, '}') && !strchr (self->url, '{'))
        return s_refuse (self, "'url' has a '}' without '{'");
    for (const char *p = self->url; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7f)
            return s_refuse (self, "'url' must not hold spaces or control characters");
    return 0;
}

//  The method: letters only, upper-cased.
static int
s_check_method (s_http_t *self)
{
    size_t len = strlen (self->method);
    if (len == 0 || len > 16)
        return s_refuse (self, "'method' must be 1 to 16 letters");
    for (char *c = self->method; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')))
            return s_refuse (self, "'method' must be letters only, not '%s'", self->method);
        if (*c >= 'a')
            *c = (char) (*c - 'a' + 'A');
    }
    return 0;
}

//  A header value with each ${NAME} replaced by that environment
//  variable. NULL (after refusing) when one is not set or the result
//  holds a line break.
static char *
s_expand_env (s_http_t *self, const char *name, const char *value, size_t len)
{
    char *out = NULL;
    size_t out_len = 0;
    FILE *stream = open_memstream (&out, &out_len);
    if (!stream)
        return NULL;
    const char *end = value + len;
    bool ok = true;
    while (value < end && ok) {
        const char *open = (const char *) memmem (value, (size_t) (end - value), "${", 2);
        const char *close = open? (const char *) memchr (open, '}', (size_t) (end - open)): NULL;
        if (!close) {
            fwrite (value, 1, (size_t) (end - value), stream);
            break;
        }
        fwrite (value, 1, (size_t) (open - value), stream);
        char var [128];
        size_t var_len = (size_t) (close - open - 2);
        if (var_len == 0 || var_len >= sizeof var) {
            s_refuse (self, "header '%s': '${' needs a variable name and '}'", name);
            ok = false;
            break;
        }
        memcpy (var, open + 2, var_len);
        var [var_len] = 0;
        const char *env = getenv (var);
        if (!env) {
            s_refuse (self, "header '%s': environment variable '%s' is not set", name, var);
            ok = false;
            break;
        }
        fputs (env, stream);
        value = close + 1;
    }
    if (fclose (stream))
        ok = false;
    if (ok && (strchr (out, '\r') || strchr (out, '\n'))) {
        s_refuse (self, "header '%s': the value must not hold a line break", name);
        ok = false;
    }
    if (!ok) {
        free (out);
        return NULL;
    }
    return out;
}

//  True if the header name is a token (RFC 9110: no separators).
static bool
s_header_name_ok (const char *name, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) name [i];
        if (c <= ' ' || c >= 0x7f || strchr ("()<>@,;:\\\"/[]?={}", c))
            return false;
    }
    return true;
}

//  `headers`: names to values, as "Name: value" lines.
static int
s_read_headers (s_http_t *self, const tr_params_t *params, bool *content_type)
{
    tr_params_t map;
    *content_type = false;
    self->headers = (char **) calloc (S_HEADERS_MAX + 2, sizeof (char *));
    if (!self->headers)
        return -1;
    if (tr_params_get (params, "headers", &map) != TR_OK)
        return 0;
    tr__mp_t mp;
    uint32_t count = 0;
    tr__mp_init (&mp, map.data, map.size);
    if (tr__mp_map (&mp, &count) || count > S_HEADERS_MAX)
        return s_refuse (self, "'headers' must be a map of at most %d headers", S_HEADERS_MAX);
    for (uint32_t i = 0; i < count; i++) {
        const char *name, *value;
        uint32_t name_len, value_len;
        if (tr__mp_str (&mp, &name, &name_len) || tr__mp_str (&mp, &value, &value_len))
            return s_refuse (self, "'headers' must map names to strings");
        char shown [64];
        snprintf (shown, sizeof shown, "%.*s", (int) (name_len < 60? name_len: 60), name);
        if (!s_header_name_ok (name, name_len))
            return s_refuse (self, "'%s' is not a valid header name", shown);
        if (memchr (value, 0, value_len))
            return s_refuse (self, "header '%s': the value must not hold a NUL byte", shown);
        char *expanded = s_expand_env (self, shown, value, value_len);
        if (!expanded)
            return -1;
        int rc = asprintf (&self->headers [i], "%.*s: %s", (int) name_len, name, expanded);
        free (expanded);
        if (rc < 0) {
            self->headers [i] = NULL;
            return -1;
        }
        if (name_len == 12 && !strncasecmp (name, "Content-Type", 12))
            *content_type = true;
    }
    return 0;
}

//  `body`: message, none or a template; and the Content-Type it implies.
static int
s_read_body (s_http_t *self, const tr_params_t *params, bool content_type)
{
    bool sends = !strcmp (self->method, "POST") || !strcmp (self->method, "PUT")
              || !strcmp (self->method, "PATCH");
    self->body = sends? S_BODY_MESSAGE: S_BODY_NONE;
    const char *text;
    size_t len;
    tr_params_t value;
    if (tr_params_str (params, "body", &text, &len) == TR_OK) {
        if (len == 7 && !memcmp (text, "message", 7))
            self->body = S_BODY_MESSAGE;
        else
        if (len == 4 && !memcmp (text, "none", 4))
            self->body = S_BODY_NONE;
        else
            return s_refuse (self, "'body' must be message, none, or a map or list to fill in");
    }
    else
    if (tr_params_get (params, "body", &value) == TR_OK) {
        tr__mp_t mp;
        uint32_t n;
        tr__mp_init (&mp, value.data, value.size);
        if (tr__mp_map (&mp, &n)) {
            tr__mp_init (&mp, value.data, value.size);
            if (tr__mp_array (&mp, &n))
                return s_refuse (self, "'body' must be message, none, or a map or list to fill in");
        }
        self->body = S_BODY_TEMPLATE;
        self->body_template = value;
    }
    if (self->body != S_BODY_NONE && !content_type) {
        size_t i = 0;
        while (self->headers [i])
            i++;
        if (!(self->headers [i] = strdup ("Content-Type: application/json")))
            return -1;
    }
    return 0;
}

static int
s_read_response (s_http_t *self, const tr_params_t *params)
{
    char *response = NULL;
    if (s_read_str (self, params, "response", &response))
        return -1;
    int rc = 0;
    self->response = S_RESPONSE_AUTO;
    if (response && !strcmp (response, "text"))
        self->response = S_RESPONSE_TEXT;
    else
    if (response && !strcmp (response, "json"))
        self->response = S_RESPONSE_JSON;
    else
    if (response && strcmp (response, "auto"))
        rc = s_refuse (self, "'response' must be auto, text or json, not '%s'", response);
    free (response);
    return rc;
}

//  The keys a `backend` mapping may hold (as in the llm agent's).
static const char *const s_backend_keys [] = {
    "name", "max_concurrent", "requests_per_minute", "tokens_per_minute",
    "connect_timeout", "timeout", "max_retries", "backoff_initial", "backoff_max",
    "max_response", "cache_entries", "cache_ttl", NULL
};

//  Refuses a `backend` mapping with a key it does not know.
static int
s_backend_keys_known (s_http_t *self, const tr_params_t *backend)
{
    tr__mp_t mp;
    uint32_t pairs;
    tr__mp_init (&mp, backend->data, backend->size);
    if (tr__mp_map (&mp, &pairs))
        return s_refuse (self, "'backend' must be a mapping");
    while (pairs--) {
        const char *key;
        uint32_t len;
        if (tr__mp_str (&mp, &key, &len))
            return s_refuse (self, "'backend' keys must be strings");
        const char *const *known = s_backend_keys;
        while (*known && !(strlen (*known) == len && !memcmp (*known, key, len)))
            known++;
        if (!*known)
            return s_refuse (self, "unknown key 'backend.%.*s'; expected one of: name, "
                             "max_concurrent, requests_per_minute, tokens_per_minute, "
                             "connect_timeout, timeout, max_retries, backoff_initial, "
                             "backoff_max, max_response, cache_entries, cache_ttl",
                             (int) (len < 64? len: 64), key);
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH))
            return -1;
    }
    return 0;
}

//  One number of the `backend` mapping, checked; *value keeps its
//  default (0: the engine's) when the key is absent.
static int
s_backend_int (s_http_t *self, const tr_params_t *backend, const char *key, bool duration,
               int64_t min, int64_t max, int64_t *value)
{
    int rc = duration? tr_params_duration (backend, key, value): tr_params_int (backend, key, value);
    if (rc == TR_ENOTFOUND)
        return 0;
    if (rc != TR_OK)
        return s_refuse (self, "'backend.%s' must be %s", key,
                         duration? "a duration such as 250ms or 2s": "an integer");
    if (*value < min || *value > max)
        return s_refuse (self, "'backend.%s' must be from %lld to %lld", key, (long long) min,
                         (long long) max);
    return 0;
}

//  The backend's name: backend.name, or "http-" and the agent's name with
//  what a backend name cannot hold replaced by '_'.
static int
s_backend_name (s_http_t *self, const tr_params_t *backend)
{
    const char *name;
    size_t len;
    int rc = backend? tr_params_str (backend, "name", &name, &len): TR_ENOTFOUND;
    if (rc == TR_EMALFORMED)
        return s_refuse (self, "'backend.name' must be a string");
    if (rc == TR_OK) {
        if (len == 0 || len > S_BACKEND_MAX || memchr (name, 0, len))
            return s_refuse (self, "'backend.name' must be 1 to 63 of A-Z a-z 0-9 . _ -");
        memcpy (self->backend, name, len);
        self->backend [len] = 0;
        return 0;
    }
    snprintf (self->backend, sizeof self->backend, "http-%s", self->name);
    for (char *c = self->backend; *c; c++)
        if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *c))
            *c = '_';
    return 0;
}

//  The `backend` mapping: the engine's backend this agent uses, and its
//  settings. They are set when the mapping gives any, or when the backend
//  does not exist yet (then with the engine's defaults).
static int
s_read_backend (s_http_t *self, const tr_params_t *params)
{
    tr_params_t backend = { NULL, 0 };
    bool has = tr_params_get (params, "backend", &backend) == TR_OK;
    if ((has && s_backend_keys_known (self, &backend)) || s_backend_name (self, has? &backend: NULL))
        return -1;
    //  Settings, in s_backend_keys' order from max_concurrent on.
    int64_t v [11] = { 0 };
    static const int64_t big = INT32_MAX;
    v [6] = INT64_MIN;                  //  max_retries: absent
    if (has
    &&  (s_backend_int (self, &backend, "max_concurrent", false, 1, 1000000, &v [0])
    ||   s_backend_int (self, &backend, "requests_per_minute", false, 0, big, &v [1])
    ||   s_backend_int (self, &backend, "tokens_per_minute", false, 0, big, &v [2])
    ||   s_backend_int (self, &backend, "connect_timeout", true, 1, big, &v [3])
    ||   s_backend_int (self, &backend, "timeout", true, 1, big, &v [4])
    ||   s_backend_int (self, &backend, "max_retries", false, -1, 100, &v [6])
    ||   s_backend_int (self, &backend, "backoff_initial", true, 1, big, &v [7])
    ||   s_backend_int (self, &backend, "backoff_max", true, 1, big, &v [8])
    ||   s_backend_int (self, &backend, "max_response", false, 1, S_RESPONSE_LIMIT, &v [9])
    ||   s_backend_int (self, &backend, "cache_entries", false, 0, 1000000, &v [10])
    ||   s_backend_int (self, &backend, "cache_ttl", true, 1, big, &v [5])))
        return -1;
    //  0 retries means none here (0 is the engine's "default").
    int retries = v [6] == INT64_MIN? 0: v [6] == 0? -1: (int) v [6];
    const char *name;
    size_t name_len;
    bool named = has && tr_params_str (&backend, "name", &name, &name_len) == TR_OK;
    uint32_t pairs = 0;
    if (has) {
        tr__mp_t mp;
        tr__mp_init (&mp, backend.data, backend.size);
        tr__mp_map (&mp, &pairs);
    }
    bool settings = pairs > (named? 1u: 0u);
    tr_http_stats_t stats;
    if (!settings && tr_http_stats (self->node, self->backend, &stats) == TR_OK)
        return 0;                       //  it exists, and nothing to change
    tr_http_backend_opts_t opts = {
        .name = self->backend,
        .max_concurrent = (int) v [0], .requests_per_minute = (int) v [1],
        .tokens_per_minute = (int) v [2], .connect_timeout_ms = (int) v [3],
        .timeout_ms = (int) v [4], .cache_ttl_ms = (int) v [5], .max_retries = retries,
        .backoff_initial_ms = (int) v [7], .backoff_max_ms = (int) v [8],
        .max_response = (size_t) v [9], .cache_entries = (size_t) v [10]
    };
    int rc = tr_http_backend_set (self->node, &opts);
    if (rc == TR_EINVAL)
        return s_refuse (self, "'backend.name' must be 1 to 63 of A-Z a-z 0-9 . _ -, not '%s'",
                         self->backend);
    if (rc)
        return s_refuse (self, "backend '%s' could not be set up: %s", self->backend,
                         tr_strerror (rc));
    return 0;
}

//  `max_pending`: from 1 to 1000000, 1024 by default.
static int
s_read_max_pending (s_http_t *self, const tr_params_t *params)
{
    self->max_pending = S_MAX_PENDING;
    tr_params_int (params, "max_pending", &self->max_pending);
    if (self->max_pending < 1 || self->max_pending > 1000000)
        return s_refuse (self, "'max_pending' must be from 1 to 1000000");
    return 0;
}

static int
s_read_params (s_http_t *self, const tr_params_t *params)
{
    bool content_type;
    if (s_read_str (self, params, "url", &self->url) || s_check_url (self)
    ||  s_read_str (self, params, "method", &self->method)
    ||  (!self->method && !(self->method = strdup ("GET"))) || s_check_method (self)
    ||  s_read_headers (self, params, &content_type)
    ||  s_read_body (self, params, content_type) || s_read_response (self, params)
    ||  tr_params_bool (params, "cacheable", &self->cacheable) == TR_EMALFORMED
    ||  s_read_max_pending (self, params)
    ||  s_read_backend (self, params))
        return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Building a request from a message

//  The message's map, unpacked (obj->type is NIL when the body is empty
//  or not a map).
static void
s_message_map (const tr_msg_t *msg, msgpack_unpacked *result, msgpack_object *map)
{
    size_t offset = 0;
    map->type = MSGPACK_OBJECT_NIL;
    if (tr_msg_size (msg)
    &&  msgpack_unpack_next (result, (const char *) tr_msg_body (msg), tr_msg_size (msg),
                             &offset) == MSGPACK_UNPACK_SUCCESS
    &&  result->data.type == MSGPACK_OBJECT_MAP)
        *map = result->data;
}

//  The value of field `name` (len bytes) in map, or NULL.
static const msgpack_object *
s_field (const msgpack_object *map, const char *name, size_t len)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        &&  !memcmp (key->via.str.ptr, name, len))
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

//  Writes a field's value as text: strings as they are, numbers and
//  booleans as JSON. TR_OK, or TR_EINVAL for any other type.
static int
s_field_text (FILE *out, const msgpack_object *value)
{
    switch (value->type) {
        case MSGPACK_OBJECT_STR:
            fwrite (value->via.str.ptr, 1, value->via.str.size, out);
            return TR_OK;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fprintf (out, "%llu", (unsigned long long) value->via.u64);
            return TR_OK;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fprintf (out, "%lld", (long long) value->via.i64);
            return TR_OK;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return tr__json_write (out, value, 0)? TR_ENOMEM: TR_OK;
        case MSGPACK_OBJECT_BOOLEAN:
            fputs (value->via.boolean? "true": "false", out);
            return TR_OK;
        default:
            return TR_EINVAL;
    }
}

//  Percent-encodes text into out: all but the unreserved characters.
static void
s_encode (FILE *out, const char *text, size_t len)
{
    static const char hex [] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text [i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
        ||  c == '-' || c == '.' || c == '_' || c == '~')
            fputc (c, out);
        else {
            fputc ('%', out);
            fputc (hex [c >> 4], out);
            fputc (hex [c & 15], out);
        }
    }
}

//  Fills a template's {field}s into out, each encoded when `encode`.
//  TR_OK, or TR_EINVAL with the field's name in *missing (a field that is
//  absent or has no text).
static int
s_fill (FILE *out, const char *text, size_t len, const msgpack_object *map, bool encode,
        char *missing, size_t missing_size)
{
    const char *end = text + len;
    while (text < end) {
        const char *open = (const char *) memchr (text, '{', (size_t) (end - text));
        const char *close = open? (const char *) memchr (open, '}', (size_t) (end - open)): NULL;
        if (!close) {
            fwrite (text, 1, (size_t) (end - text), out);
            return TR_OK;
        }
        fwrite (text, 1, (size_t) (open - text), out);
        if (close == open + 1) {        //  "{}" is text, not a field
            fputs ("{}", out);
            text = close + 1;
            continue;
        }
        const msgpack_object *value = s_field (map, open + 1, (size_t) (close - open - 1));
        char *field = NULL;
        size_t field_len = 0;
        FILE *field_out = open_memstream (&field, &field_len);
        if (!field_out)
            return TR_ENOMEM;
        int rc = value? s_field_text (field_out, value): TR_EINVAL;
        fclose (field_out);
        if (rc == TR_OK) {
            if (encode)
                s_encode (out, field, field_len);
            else
                fwrite (field, 1, field_len, out);
        }
        else
            snprintf (missing, missing_size, "%.*s", (int) (close - open - 1), open + 1);
        free (field);
        if (rc)
            return rc;
        text = close + 1;
    }
    return TR_OK;
}

//  Copies a template value, filling in fields (see the file's comment).
static int
s_fill_value (msgpack_packer *pk, const msgpack_object *tpl, const msgpack_object *map,
              char *missing, size_t missing_size)
{
    int rc = TR_OK;
    if (tpl->type == MSGPACK_OBJECT_MAP) {
        msgpack_pack_map (pk, tpl->via.map.size);
        for (uint32_t i = 0; i < tpl->via.map.size && rc == TR_OK; i++) {
            msgpack_pack_object (pk, tpl->via.map.ptr [i].key);
            rc = s_fill_value (pk, &tpl->via.map.ptr [i].val, map, missing, missing_size);
        }
        return rc;
    }
    if (tpl->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array (pk, tpl->via.array.size);
        for (uint32_t i = 0; i < tpl->via.array.size && rc == TR_OK; i++)
            rc = s_fill_value (pk, &tpl->via.array.ptr [i], map, missing, missing_size);
        return rc;
    }
    if (tpl->type != MSGPACK_OBJECT_STR || !memchr (tpl->via.str.ptr, '{', tpl->via.str.size)) {
        msgpack_pack_object (pk, *tpl);
        return TR_OK;
    }
    const char *text = tpl->via.str.ptr;
    uint32_t len = tpl->via.str.size;
    if (len > 2 && text [0] == '{' && text [len - 1] == '}'
    &&  !memchr (text + 1, '{', len - 2) && !memchr (text + 1, '}', len - 2)) {
        //  Exactly "{field}": the field's own value, whatever its type.
        const msgpack_object *value = s_field (map, text + 1, len - 2);
        if (!value) {
            snprintf (missing, missing_size, "%.*s", (int) len - 2, text + 1);
            return TR_EINVAL;
        }
        msgpack_pack_object (pk, *value);
        return TR_OK;
    }
    char *filled = NULL;
    size_t filled_len = 0;
    FILE *out = open_memstream (&filled, &filled_len);
    if (!out)
        return TR_ENOMEM;
    rc = s_fill (out, text, len, map, false, missing, missing_size);
    fclose (out);
    if (rc == TR_OK)
        msgpack_pack_str_with_body (pk, filled, filled_len);
    free (filled);
    return rc;
}

//  The request body as JSON text (malloc'd; NULL for none).
static int
s_body (const s_http_t *self, const tr_msg_t *msg, const msgpack_object *map,
        char **json, size_t *len, char *missing, size_t missing_size)
{
    *json = NULL;
    *len = 0;
    if (self->body == S_BODY_NONE)
        return TR_OK;
    if (self->body == S_BODY_MESSAGE) {
        if (tr_msg_size (msg) == 0)
            return tr__json_from_msgpack ("\xc0", 1, json, len)? TR_ENOMEM: TR_OK;
        return tr__json_from_msgpack (tr_msg_body (msg), tr_msg_size (msg), json, len)?
               TR_ENOMEM: TR_OK;
    }
    msgpack_unpacked tpl;
    msgpack_unpacked_init (&tpl);
    size_t offset = 0;
    int rc = TR_ENOMEM;
    if (msgpack_unpack_next (&tpl, (const char *) self->body_template.data,
                             self->body_template.size, &offset) == MSGPACK_UNPACK_SUCCESS) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init (&sb);
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        rc = s_fill_value (&pk, &tpl.data, map, missing, missing_size);
        if (rc == TR_OK && (!sb.data || tr__json_from_msgpack (sb.data, sb.size, json, len)))
            rc = TR_ENOMEM;
        msgpack_sbuffer_destroy (&sb);
    }
    msgpack_unpacked_destroy (&tpl);
    return rc;
}

//  The URL with its fields filled in.
static int
s_url (const s_http_t *self, const msgpack_object *map, char **url,
       char *missing, size_t missing_size)
{
    size_t len = 0;
    FILE *out = open_memstream (url, &len);
    if (!out)
        return TR_ENOMEM;
    int rc = s_fill (out, self->url, strlen (self->url), map, true, missing, missing_size);
    if (fclose (out) && rc == TR_OK)
        rc = TR_ENOMEM;
    if (rc) {
        free (*url);
        *url = NULL;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Completion (on the engine's thread)

//  The answer for a 2xx response: a string, or its JSON as msgpack.
//  TR_OK with a malloc'd body, or TR_EHTTP when JSON was due and is not.
static int
s_answer_body (const s_call_t *call, const tr_http_result_t *result, char **data, size_t *size)
{
    const char *type = result->content_type? result->content_type: "";
    size_t type_len = strcspn (type, ";");
    while (type_len && type [type_len - 1] == ' ')
        type_len--;
    bool json_type = (type_len == 16 && !strncasecmp (type, "application/json", 16))
                  || (type_len > 5 && !strncasecmp (type + type_len - 5, "+json", 5));
    //  An empty body (204 No Content, say) is no JSON: by Content-Type it
    //  is an empty string.
    if (call->response == S_RESPONSE_JSON
    ||  (call->response == S_RESPONSE_AUTO && json_type && result->size)) {
        tr__json_error_t err;
        if (tr__json_parse (result->body, result->size, data, size, &err) == 0)
            return TR_OK;
        char where [160];
        tr_log (TR_LOG_WARN, "http %s: the response is not JSON: %s", call->what,
                tr__json_error_format (&err, where, sizeof where));
        return TR_EHTTP;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&pk, result->body, result->size);
    if (!sb.data)
        return TR_ENOMEM;
    *data = sb.data;                    //  the sbuffer's malloc'd buffer is ours
    *size = sb.size;
    return TR_OK;
}

//  Adds delta to the agent's counter `key` (shown in status), from any
//  thread: through its mailbox, found by name, which outlives restarts.
static void
s_count_add (const s_call_t *call, const char *key, int64_t delta)
{
    tr__mbox_t *mbox = tr__node_lookup (call->node, tr_msg_to (call->msg), false);
    if (mbox) {
        tr__mbox_info_add (mbox, key, delta);
        tr__mbox_unref (&mbox);
    }
}

static void
s_count (const s_call_t *call, const char *key)
{
    s_count_add (call, key, 1);
}

//  A failed tell: logged, a dead letter on the node, a sys.dead_letter
//  event, and a failure for the actor's breaker (a deferred ask's error
//  counts there through tr_reply_error; a tell has no answer to count).
static void
s_tell_failed (const s_call_t *call, int error, const char *why)
{
    char reason [256];
    snprintf (reason, sizeof reason, "%s: %s%s%s", call->what, tr_strerror (error),
              *why? ": ": "", why);
    tr_log (TR_LOG_WARN, "http '%s': a tell failed: %s", tr_msg_to (call->msg), reason);
    tr__mbox_t *mbox = tr__node_lookup (call->node, tr_msg_to (call->msg), false);
    if (mbox) {
        tr__breaker_record (&mbox->breaker, false);
        tr__mbox_unref (&mbox);
    }
    tr__node_dead_letter (call->node, call->msg, error);
    tr__ev_dead_letter (call->node, call->msg, reason);
}

//  A tell that succeeded counts as a success for the breaker.
static void
s_tell_done (const s_call_t *call)
{
    tr__mbox_t *mbox = tr__node_lookup (call->node, tr_msg_to (call->msg), false);
    if (mbox) {
        tr__breaker_record (&mbox->breaker, true);
        tr__mbox_unref (&mbox);
    }
}

static void
s_done (const tr_http_result_t *result, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    int error = result->error;
    char *data = NULL;
    size_t size = 0;
    if (error == TR_OK)
        error = s_answer_body (call, result, &data, &size);
    else
        tr_log (TR_LOG_INFO, "http %s: %s (status %ld, %d attempt%s)%s%s", call->what,
                tr_strerror (error), result->status, result->attempts,
                result->attempts == 1? "": "s", *result->detail? ": ": "", result->detail);
    s_count_add (call, "http.pending", -1);
    s_count (call, error? "http.failed": "http.answered");
    if (call->ask) {
        if (error == TR_OK && tr_reply (call->msg, data, size) != TR_OK)
            error = TR_ETOOBIG;         //  bodies are checked; only size can fail
        if (error)
            tr_reply_error (call->msg, error);
    }
    else
    if (error)
        s_tell_failed (call, error, result->detail? result->detail: "");
    else
        s_tell_done (call);
    free (data);
    tr_msg_destroy (&call->msg);
    free (call);
}

//  --------------------------------------------------------------------------
//  The behaviour

static int
s_http_init (tr_actor_t *actor, void *arg, void **state_p)
{
    const tr_params_t *params = (const tr_params_t *) arg;
    s_http_t *self = (s_http_t *) calloc (1, sizeof *self);
    if (!self)
        return -1;
    self->actor = actor;
    self->node = tr_actor_node (actor);
    self->name = tr_actor_name (actor);
    if (!params) {
        s_refuse (self, "needs params with a 'url'");
        s_http_free (self);
        return -1;
    }
    if (s_read_params (self, params)) {
        s_http_free (self);
        return -1;
    }
    *state_p = self;
    return 0;
}

//  Takes the message for the completion: an ask is deferred; a tell is
//  taken over the same way, so that its outcome (not the handler's
//  return) counts for the breaker, and it can be a dead letter later.
static tr_msg_t *
s_take (s_http_t *self, const tr_msg_t *msg)
{
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_defer (msg);
    self->actor->deferred = true;       //  the handling loop lets it go
    return (tr_msg_t *) msg;
}

//  Answers a request that never reached the engine (the asker's mistake,
//  or a refusal): an ask gets the error, a tell is logged.
static int
s_refuse_call (s_http_t *self, const tr_msg_t *msg, int error, const char *why)
{
    tr_log (TR_LOG_INFO, "http '%s': %s: %s", self->name, tr_strerror (error), why);
    tr_actor_info_add (self->actor, error == TR_EINVAL? "http.invalid": "http.failed", 1);
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        tr_reply_error (msg, error);
    return error == TR_EINVAL? 0: -1;
}

//  Builds the request's URL and body from the message. TR_OK, or the
//  error with why it failed in `why` (TR_EINVAL: the asker's mistake).
static int
s_build (s_http_t *self, const tr_msg_t *msg, char **url, char **body, size_t *body_len,
         char *why, size_t why_size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_object map;
    s_message_map (msg, &unpacked, &map);
    char missing [128] = "";
    int rc = s_url (self, &map, url, missing, sizeof missing);
    if (rc == TR_OK)
        rc = s_body (self, msg, &map, body, body_len, missing, sizeof missing);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == TR_EINVAL)
        snprintf (why, why_size, map.type == MSGPACK_OBJECT_MAP?
                  "field '%s' is missing, or has no text":
                  "the message is not a map (needed for field '%s')", missing);
    else
    if (rc)
        snprintf (why, why_size, "out of memory");
    if (rc) {
        free (*url);
        *url = NULL;
    }
    return rc;
}

//  Hands the request to the engine with a call record that takes the
//  message over; the answer comes from s_done. If the engine refuses it,
//  the answer is given here, as s_done would.
static void
s_submit (s_http_t *self, s_call_t *call, const tr_msg_t *msg, const char *url,
          const char *body, size_t body_len, int64_t left)
{
    call->node = self->node;
    call->ask = tr_msg_kind (msg) == TR_KIND_ASK;
    call->response = self->response;
    snprintf (call->what, sizeof call->what, "'%s' %s %s", self->name, self->method, url);
    tr_http_request_t request = {
        .backend = self->backend, .method = self->method, .url = url,
        .headers = (const char *const *) self->headers,
        .body = body, .body_size = body_len,
        .priority = tr_msg_priority (msg),
        .deadline_ms = left < 0? 0: left > INT32_MAX? INT32_MAX: (int) left,
        .cacheable = self->cacheable
    };
    call->msg = s_take (self, msg);
    tr_actor_info_add (self->actor, "http.requests", 1);
    tr_actor_info_add (self->actor, "http.pending", 1);
    int rc = tr_http_submit (self->node, &request, s_done, call, NULL);
    if (rc) {
        tr_log (TR_LOG_WARN, "http %s: %s", call->what, tr_strerror (rc));
        s_count_add (call, "http.pending", -1);
        s_count (call, "http.failed");
        if (call->ask)
            tr_reply_error (call->msg, rc);
        else
            s_tell_failed (call, rc, "the request was refused");
        tr_msg_destroy (&call->msg);
        free (call);
    }
}

//  True when max_pending requests are in the engine. Only this thread
//  adds to the count (completions take from it), so the answer cannot
//  go stale the wrong way between here and the submission.
static bool
s_full (s_http_t *self)
{
    int64_t pending = 0;
    tr_actor_info_get (self->node, self->name, "http.pending", &pending);
    return pending >= self->max_pending;
}

//  Past max_pending: an ask gets TR_EFULL, a tell is a dead letter;
//  neither is sent. Not a failure of the endpoint.
static int
s_refuse_full (s_http_t *self, const tr_msg_t *msg)
{
    tr_actor_info_add (self->actor, "http.refused", 1);
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return tr_reply_error (msg, TR_EFULL) == TR_OK? 0: -1;
    char reason [96];
    snprintf (reason, sizeof reason, "%lld requests pending", (long long) self->max_pending);
    tr_log (TR_LOG_WARN, "http '%s': a tell dropped: %s", self->name, reason);
    tr__node_dead_letter (self->node, msg, TR_EFULL);
    tr__ev_dead_letter (self->node, msg, reason);
    return 0;
}

static int
s_http_handle (tr_actor_t *actor, const tr_msg_t *msg, void *state)
{
    (void) actor;
    s_http_t *self = (s_http_t *) state;
    int kind = tr_msg_kind (msg);
    if (kind != TR_KIND_ASK && kind != TR_KIND_TELL)
        return 0;                       //  stray replies: nothing to do
    int64_t left = tr_msg_remaining_ms (msg);
    if (left == 0) {
        //  The asker has given up already: no request is made.
        if (kind == TR_KIND_ASK)
            tr_reply_error (msg, TR_ETIMEDOUT);
        return 0;
    }
    if (s_full (self))
        return s_refuse_full (self, msg);
    char why [192];
    char *url = NULL, *body = NULL;
    size_t body_len = 0;
    int rc = s_build (self, msg, &url, &body, &body_len, why, sizeof why);
    if (rc)
        return s_refuse_call (self, msg, rc, why);
    s_call_t *call = (s_call_t *) calloc (1, sizeof *call);
    if (call)
        s_submit (self, call, msg, url, body, body_len, left);
    free (url);
    free (body);
    return call? 0: s_refuse_call (self, msg, TR_ENOMEM, "out of memory");
}

static void
s_http_terminate (tr_actor_t *actor, int reason, void *state)
{
    (void) actor; (void) reason;
    s_http_free ((s_http_t *) state);
}

const tr_actor_type_t tr__http_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "http",
    .summary = "calls a REST endpoint built from each message (URL template, headers, JSON body)",
    .behaviour = { s_http_init, s_http_handle, s_http_terminate },
    .params = s_http_params,
};
