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
              timeouts, retries, response size, cache, the CA file that
              https certificates are verified against; tr_http.h), set
              when any is given or when the backend does not exist yet
              (then with the engine's defaults). Agents that share a
              backend share its limits; the last one started sets them.
              `max_retries: 0` means none.

    Every parameter, nested ones too, is read by one function
    (s_http_configure) for the tree loader's check (tr_actor_type_t.check:
    a mistake is reported at the file, line and column of the value at
    fault, before anything starts) and for the start (the same reading,
    for agents started from C too). Only what depends on the running
    process waits for the start: the environment's values in the headers
    and the engine's backend.

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

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_event_int.h"
#include "tr_json.h"
#include "tr_mbox.h"
#include "tr_mp.h"
#include "troupe/tr_http.h"
#include "troupe/tr_params.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

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
    tr_actor_t *actor;                  //  NULL when the tree loader checks
    tr_node_t *node;
    const char *name;                   //  the actor's
    //  The settings, as s_http_configure reads them from the params
    char *method;
    char *url;                          //  the template
    char **header_names;                //  as written, values before ${NAME}
    char **header_values;
    size_t nheaders;
    bool content_type;                  //  the headers give a Content-Type
    int body;                           //  S_BODY_*
    char *body_template;                //  msgpack, S_BODY_TEMPLATE only
    size_t body_template_size;
    int response;                       //  S_RESPONSE_*
    bool cacheable;
    int64_t max_pending;                //  requests in the engine at once
    char *backend_name;                 //  backend.name, or NULL
    char *ca_file;                      //  backend.ca_file, or NULL
    tr_http_backend_opts_t backend_opts;    //  its settings (0: the engine's)
    bool backend_settings;              //  the mapping gives more than a name
    //  Made when the agent starts (s_http_setup)
    char **headers;                     //  "Name: value", NULL-terminated
    char backend [S_BACKEND_MAX + 1];
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
    { "backend", TR_PARAM_MAP, false, "HTTP backend: name, limits, timeouts, retries, response "
                                      "size, cache, ca_file" },
    { "cacheable", TR_PARAM_BOOL, false, "answers may come from the backend's cache" },
    { "max_pending", TR_PARAM_INT, false, "requests sent and not yet answered, at most (default 1024)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings: one reading of the params (s_http_configure) serves the tree
//  loader's check, which reports a mistake at its file, line and column,
//  and the agent's start, which then sets up what the reading describes
//  (s_http_setup: the environment's values in the headers, the engine's
//  backend).

static void
s_strv_free (char **strv, size_t count)
{
    for (size_t i = 0; strv && i < count; i++)
        free (strv [i]);
    free (strv);
}

static void
s_http_free (s_http_t *self)
{
    if (!self)
        return;
    free (self->method);
    free (self->url);
    s_strv_free (self->header_names, self->nheaders);
    s_strv_free (self->header_values, self->nheaders);
    free (self->body_template);
    free (self->backend_name);
    free (self->ca_file);
    for (char **h = self->headers; h && *h; h++)
        free (*h);
    free (self->headers);
    free (self);
}

//  `url`: http:// or https://, a host, no spaces, and well-formed {field}s.
static int
s_read_url (s_http_t *self, tr__cfg_t *cfg)
{
    if (tr__cfg_str (cfg, "url", &self->url))
        return -1;
    if (!self->url)
        return tr__cfg_bad (cfg, "needs a 'url'");
    const char *url = self->url;
    size_t scheme = !strncasecmp (url, "http://", 7)? 7: !strncasecmp (url, "https://", 8)? 8: 0;
    if (!scheme)
        return tr__cfg_bad_at (cfg, "url", "'url' must start with http:// or https://, not "
                               "'%.64s'", url);
    if (!url [scheme] || strchr ("/?#", url [scheme]))
        return tr__cfg_bad_at (cfg, "url", "'url' needs a host after '%.*s'", (int) scheme, url);
    for (const char *p = url; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == 0x7f)
            return tr__cfg_bad_at (cfg, "url", "'url' must not hold spaces or control "
                                   "characters (offset %zu)", (size_t) (p - url));
    for (const char *p = url; (p = strpbrk (p, "{}")); ) {
        size_t at = (size_t) (p - url);
        if (*p == '}')
            return tr__cfg_bad_at (cfg, "url", "'url' has a '}' without '{' at offset %zu", at);
        const char *end = strpbrk (p + 1, "{}");
        if (!end || *end == '{' || end == p + 1)
            return tr__cfg_bad_at (cfg, "url", "'url' has a '{' without a field name and '}' "
                                   "at offset %zu", at);
        p = end + 1;
    }
    return 0;
}

//  `method`: 1 to 16 letters, upper-cased.
static int
s_read_method (s_http_t *self, tr__cfg_t *cfg)
{
    if (tr__cfg_str (cfg, "method", &self->method))
        return -1;
    if (!self->method && !(self->method = strdup ("GET")))
        return tr__cfg_bad (cfg, "out of memory");
    for (char *c = self->method; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')))
            return tr__cfg_bad_at (cfg, "method", "'method' must be letters only, not '%.64s'",
                                   self->method);
        if (*c >= 'a')
            *c = (char) (*c - 'a' + 'A');
    }
    if (strlen (self->method) > 16)
        return tr__cfg_bad_at (cfg, "method", "'method' must be 1 to 16 letters, not %zu",
                               strlen (self->method));
    return 0;
}

//  A header's value with each ${NAME} replaced by that environment
//  variable, as a new string in *out; with out NULL (the tree loader's
//  check) only the ${...} references are checked, not the environment.
//  Returns 0, or -1 with cfg->error: a reference without a name or '}',
//  a variable that is not set, a value with a line break.
static int
s_expand_env (tr__cfg_t *cfg, const char *name, const char *value, char **out)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *stream = out? open_memstream (&text, &text_len): NULL;
    if (out && !stream)
        return tr__cfg_bad (cfg, "out of memory");
    int rc = 0;
    while (*value && rc == 0) {
        const char *open = strstr (value, "${");
        const char *close = open? strchr (open, '}'): NULL;
        if (!close) {
            if (stream)
                fputs (value, stream);
            break;
        }
        if (stream)
            fwrite (value, 1, (size_t) (open - value), stream);
        char var [128];
        size_t var_len = (size_t) (close - open - 2);
        if (var_len == 0 || var_len >= sizeof var) {
            rc = tr__cfg_bad_at (cfg, name, "header '%s': '${' needs a variable name (1 to "
                                 "127 bytes) and '}'", name);
            break;
        }
        memcpy (var, open + 2, var_len);
        var [var_len] = 0;
        const char *env = stream? getenv (var): "";
        if (!env)
            rc = tr__cfg_bad_at (cfg, name, "header '%s': environment variable '%s' is not set",
                                 name, var);
        else
        if (stream)
            fputs (env, stream);
        value = close + 1;
    }
    if (stream && fclose (stream) && rc == 0)
        rc = tr__cfg_bad (cfg, "out of memory");
    if (rc == 0 && text && strpbrk (text, "\r\n"))
        rc = tr__cfg_bad_at (cfg, name, "header '%s': the value must not hold a line break "
                             "(from the environment)", name);
    if (rc == 0 && out)
        *out = text;
    else
        free (text);
    return rc;
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

//  One header of `headers`: a valid name, a string value without NUL or
//  line breaks, well-formed ${NAME}s.
static int
s_read_header (s_http_t *self, tr__cfg_t *cfg, const msgpack_object_kv *kv)
{
    if (kv->key.type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad (cfg, "'headers' names must be strings, not %s",
                            tr__cfg_kind (&kv->key));
    const char *name = kv->key.via.str.ptr;
    uint32_t name_len = kv->key.via.str.size;
    char shown [64];
    snprintf (shown, sizeof shown, "%.*s", (int) (name_len < 60? name_len: 60), name);
    if (!s_header_name_ok (name, name_len))
        return tr__cfg_bad_at (cfg, shown, "'%s' is not a valid header name", shown);
    const msgpack_object *value = &kv->val;
    if (value->type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad_at (cfg, shown, "header '%s': the value must be a string, not %s",
                               shown, tr__cfg_kind (value));
    if (memchr (value->via.str.ptr, 0, value->via.str.size))
        return tr__cfg_bad_at (cfg, shown, "header '%s': the value must not hold a NUL byte",
                               shown);
    if (memchr (value->via.str.ptr, '\n', value->via.str.size)
    ||  memchr (value->via.str.ptr, '\r', value->via.str.size))
        return tr__cfg_bad_at (cfg, shown, "header '%s': the value must not hold a line break",
                               shown);
    size_t i = self->nheaders;
    self->header_names [i] = strndup (name, name_len);
    self->header_values [i] = strndup (value->via.str.ptr, value->via.str.size);
    if (!self->header_names [i] || !self->header_values [i]) {
        self->nheaders++;               //  so that they are freed
        return tr__cfg_bad (cfg, "out of memory");
    }
    self->nheaders++;
    if (name_len == 12 && !strncasecmp (name, "Content-Type", 12))
        self->content_type = true;
    return s_expand_env (cfg, self->header_names [i], self->header_values [i], NULL);
}

//  `headers`: names to values.
static int
s_read_headers (s_http_t *self, tr__cfg_t *cfg)
{
    const msgpack_object *map = tr__cfg_get (cfg, NULL, "headers");
    if (!map)
        return 0;
    if (map->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad_at (cfg, "headers", "'headers' must be a mapping, not %s",
                               tr__cfg_kind (map));
    uint32_t count = map->via.map.size;
    if (count > S_HEADERS_MAX)
        return tr__cfg_bad_at (cfg, "headers", "'headers' must hold at most %d headers, not %u",
                               S_HEADERS_MAX, count);
    self->header_names = (char **) calloc (count + 1, sizeof (char *));
    self->header_values = (char **) calloc (count + 1, sizeof (char *));
    if (!self->header_names || !self->header_values)
        return tr__cfg_bad (cfg, "out of memory");
    tr__cfg_enter (cfg, "headers");
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = s_read_header (self, cfg, &map->via.map.ptr [i]);
    tr__cfg_enter (cfg, "%s", "");
    return rc;
}

//  `body`: message, none or a template (kept as msgpack).
static int
s_read_body (s_http_t *self, tr__cfg_t *cfg)
{
    bool sends = !strcmp (self->method, "POST") || !strcmp (self->method, "PUT")
              || !strcmp (self->method, "PATCH");
    self->body = sends? S_BODY_MESSAGE: S_BODY_NONE;
    const msgpack_object *o = tr__cfg_get (cfg, NULL, "body");
    if (!o)
        return 0;
    if (o->type == MSGPACK_OBJECT_STR) {
        const char *text = o->via.str.ptr;
        uint32_t len = o->via.str.size;
        if (len == 7 && !memcmp (text, "message", 7))
            self->body = S_BODY_MESSAGE;
        else
        if (len == 4 && !memcmp (text, "none", 4))
            self->body = S_BODY_NONE;
        else
            return tr__cfg_bad_at (cfg, "body", "'body' must be message, none, or a mapping "
                                   "or list to fill in, not '%.*s'",
                                   (int) (len < 64? len: 64), text);
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "body", "'body' must be message, none, or a mapping or "
                               "list to fill in, not %s", tr__cfg_kind (o));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_object (&pk, *o) || !sb.data) {
        msgpack_sbuffer_destroy (&sb);
        return tr__cfg_bad (cfg, "out of memory");
    }
    self->body = S_BODY_TEMPLATE;
    self->body_template = sb.data;      //  the sbuffer's malloc'd buffer is ours
    self->body_template_size = sb.size;
    return 0;
}

//  The keys a `backend` mapping may hold (as in the llm agent's).
static const char *const s_backend_keys [] = {
    "name", "max_concurrent", "requests_per_minute", "tokens_per_minute",
    "connect_timeout", "timeout", "max_retries", "backoff_initial", "backoff_max",
    "max_response", "cache_entries", "cache_ttl", "ca_file", NULL
};

//  One number of the `backend` mapping (a duration: "250ms", "2s"... or
//  milliseconds), within [min, max]; *value stays as it is when absent.
static int
s_backend_int (tr__cfg_t *cfg, const msgpack_object *backend, const char *key, bool duration,
               int64_t min, int64_t max, int64_t *value)
{
    const msgpack_object *o = tr__cfg_get (cfg, backend, key);
    if (!o)
        return 0;
    int64_t v;
    if (duration && o->type == MSGPACK_OBJECT_STR) {
        if (tr_duration_parse (o->via.str.ptr, o->via.str.size, &v) != TR_OK)
            return tr__cfg_bad_at (cfg, key, "'backend.%s' must be a duration such as 250ms "
                                   "or 2s, not '%.*s'", key,
                                   (int) (o->via.str.size < 64? o->via.str.size: 64),
                                   o->via.str.ptr);
    }
    else
    if (!tr__integer (o, &v))
        return tr__cfg_bad_at (cfg, key, "'backend.%s' must be %s, not %s", key,
                               duration? "a duration such as 250ms or 2s": "an integer",
                               tr__cfg_kind (o));
    if (v < min || v > max)
        return tr__cfg_bad_at (cfg, key, "'backend.%s' must be from %lld to %lld%s, not %lld",
                               key, (long long) min, (long long) max, duration? " ms": "",
                               (long long) v);
    *value = v;
    return 0;
}

//  A backend name: 1 to 63 of A-Z a-z 0-9 . _ -
static bool
s_backend_name_ok (const char *name)
{
    size_t len = strlen (name);
    return len >= 1 && len <= S_BACKEND_MAX
        && strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789._-") == len;
}

//  `backend.ca_file`: a file that exists and can be read, for an https
//  URL. (The engine reads it when it connects.)
static int
s_read_ca_file (s_http_t *self, tr__cfg_t *cfg, const msgpack_object *backend)
{
    if (tr__cfg_str_in (cfg, backend, "ca_file", "backend.ca_file", &self->ca_file))
        return -1;
    if (!self->ca_file)
        return 0;
    if (strncasecmp (self->url, "https://", 8))
        return tr__cfg_bad_at (cfg, "ca_file", "'backend.ca_file' is only for https:// URLs");
    struct stat st;
    if (stat (self->ca_file, &st) || access (self->ca_file, R_OK))
        return tr__cfg_bad_at (cfg, "ca_file", "'backend.ca_file' cannot be read: '%.200s': %s",
                               self->ca_file, strerror (errno));
    if (!S_ISREG (st.st_mode))
        return tr__cfg_bad_at (cfg, "ca_file", "'backend.ca_file' is not a file: '%.200s'",
                               self->ca_file);
    return 0;
}

//  What the `backend` mapping holds (cfg->at is "backend").
static int
s_read_backend_map (s_http_t *self, tr__cfg_t *cfg, const msgpack_object *b)
{
    if (tr__cfg_keys (cfg, b, "'backend'", s_backend_keys)
    ||  tr__cfg_str_in (cfg, b, "name", "backend.name", &self->backend_name))
        return -1;
    if (self->backend_name && !s_backend_name_ok (self->backend_name))
        return tr__cfg_bad_at (cfg, "name", "'backend.name' must be 1 to 63 of A-Z a-z 0-9 "
                               ". _ -, not '%.64s'", self->backend_name);
    static const int64_t big = INT32_MAX;
    int64_t concurrent = 0, rpm = 0, tpm = 0, connect = 0, timeout = 0, retries = INT64_MIN;
    int64_t initial = 0, most = 0, response = 0, entries = 0, ttl = 0;
    if (s_backend_int (cfg, b, "max_concurrent", false, 1, 1000000, &concurrent)
    ||  s_backend_int (cfg, b, "requests_per_minute", false, 0, big, &rpm)
    ||  s_backend_int (cfg, b, "tokens_per_minute", false, 0, big, &tpm)
    ||  s_backend_int (cfg, b, "connect_timeout", true, 1, big, &connect)
    ||  s_backend_int (cfg, b, "timeout", true, 1, big, &timeout)
    ||  s_backend_int (cfg, b, "max_retries", false, -1, 100, &retries)
    ||  s_backend_int (cfg, b, "backoff_initial", true, 1, big, &initial)
    ||  s_backend_int (cfg, b, "backoff_max", true, 1, big, &most)
    ||  s_backend_int (cfg, b, "max_response", false, 1, S_RESPONSE_LIMIT, &response)
    ||  s_backend_int (cfg, b, "cache_entries", false, 0, 1000000, &entries)
    ||  s_backend_int (cfg, b, "cache_ttl", true, 1, big, &ttl)
    ||  s_read_ca_file (self, cfg, b))
        return -1;
    tr_http_backend_opts_t *o = &self->backend_opts;
    o->max_concurrent = (int) concurrent;
    o->requests_per_minute = (int) rpm;
    o->tokens_per_minute = (int) tpm;
    o->connect_timeout_ms = (int) connect;
    o->timeout_ms = (int) timeout;
    //  0 retries means none here (0 is the engine's "the default").
    o->max_retries = retries == INT64_MIN? 0: retries == 0? -1: (int) retries;
    o->backoff_initial_ms = (int) initial;
    o->backoff_max_ms = (int) most;
    o->max_response = (size_t) response;
    o->cache_entries = (size_t) entries;
    o->cache_ttl_ms = (int) ttl;
    o->ca_file = self->ca_file;
    self->backend_settings = b->via.map.size > (self->backend_name? 1u: 0u);
    return 0;
}

//  `backend`: the engine's backend this agent uses, and its settings.
static int
s_read_backend (s_http_t *self, tr__cfg_t *cfg)
{
    const msgpack_object *b = tr__cfg_get (cfg, NULL, "backend");
    if (!b)
        return 0;
    tr__cfg_enter (cfg, "backend");
    int rc = s_read_backend_map (self, cfg, b);
    tr__cfg_enter (cfg, "%s", "");
    return rc;
}

//  Reads and checks every parameter into self. Returns 0, or -1 with
//  cfg->error (and the value at fault in cfg->path).
static int
s_http_configure (s_http_t *self, tr__cfg_t *cfg)
{
    static const char *const responses [] = { "auto", "text", "json", NULL };
    self->max_pending = S_MAX_PENDING;
    self->response = S_RESPONSE_AUTO;
    if (s_read_url (self, cfg) || s_read_method (self, cfg) || s_read_headers (self, cfg)
    ||  s_read_body (self, cfg)
    ||  tr__cfg_choice (cfg, "response", responses, &self->response)
    ||  tr__cfg_bool (cfg, "cacheable", &self->cacheable)
    ||  tr__cfg_int (cfg, "max_pending", 1, 1000000, &self->max_pending)
    ||  s_read_backend (self, cfg))
        return -1;
    return 0;
}

//  The tree loader's check: the same reading as the start's, with positions.
TR__CFG_CHECK_DEFINE (s_http_check, "http", s_http_t, s_http_configure, s_http_free)

//  At the start, after s_http_configure: the header lines (with the
//  environment's values), and the engine's backend, set up when the
//  mapping gives settings or when it does not exist yet (then with the
//  engine's defaults). Returns 0, or -1 with cfg->error.
static int
s_http_setup (s_http_t *self, tr__cfg_t *cfg)
{
    self->headers = (char **) calloc (self->nheaders + 2, sizeof (char *));
    if (!self->headers)
        return tr__cfg_bad (cfg, "out of memory");
    size_t line = 0;
    for (size_t i = 0; i < self->nheaders; i++) {
        char *value = NULL;
        if (s_expand_env (cfg, self->header_names [i], self->header_values [i], &value))
            return -1;
        int rc = asprintf (&self->headers [line], "%s: %s", self->header_names [i], value);
        free (value);
        if (rc < 0) {
            self->headers [line] = NULL;
            return tr__cfg_bad (cfg, "out of memory");
        }
        line++;
    }
    if (self->body != S_BODY_NONE && !self->content_type
    &&  !(self->headers [line] = strdup ("Content-Type: application/json")))
        return tr__cfg_bad (cfg, "out of memory");
    if (self->backend_name)
        snprintf (self->backend, sizeof self->backend, "%s", self->backend_name);
    else {
        snprintf (self->backend, sizeof self->backend, "http-%s", self->name);
        for (char *c = self->backend; *c; c++)
            if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *c))
                *c = '_';
    }
    tr_http_stats_t stats;
    if (!self->backend_settings && tr_http_stats (self->node, self->backend, &stats) == TR_OK)
        return 0;                       //  it exists, and nothing to change
    self->backend_opts.name = self->backend;
    int rc = tr_http_backend_set (self->node, &self->backend_opts);
    if (rc)
        return tr__cfg_bad (cfg, "backend '%s' could not be set up: %s", self->backend,
                            tr_strerror (rc));
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
    if (msgpack_unpack_next (&tpl, self->body_template, self->body_template_size,
                             &offset) == MSGPACK_UNPACK_SUCCESS) {
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
    tr__cfg_t cfg;
    s_http_t *self = (s_http_t *) calloc (1, sizeof *self);
    int rc = tr__cfg_open (&cfg, "http", tr_actor_name (actor), (const tr_params_t *) arg);
    if (rc == 0 && !self)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0) {
        self->actor = actor;
        self->node = tr_actor_node (actor);
        self->name = tr_actor_name (actor);
        rc = s_http_configure (self, &cfg);
    }
    if (rc == 0)
        rc = s_http_setup (self, &cfg);
    if (rc)
        tr__cfg_refuse (actor, &cfg);
    tr__cfg_close (&cfg);
    if (rc) {
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
    .check = s_http_check,
};
