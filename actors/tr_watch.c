/*  tr_watch.c - event sources: a file watch and a git repository watch.

    Two actor types that turn changes outside troupe into events on the
    event bus (tr_event.h; the broker carries them to other processes),
    and route them to actors, so that a tree can react to a changed file
    or a new commit:

    file_watch  watches files and folders with inotify and publishes
                TOPIC.created, .modified, .deleted, .moved (debounced:
                a burst of writes to one path is one event), .overflow
                when the kernel's queue overflowed (the watched trees are
                then scanned again and compared with what was known, so
                that nothing is missed), .error.
    git_watch   watches a branch of a repository (running `git` as a
                child process) and publishes TOPIC.commit for each new
                commit, oldest first, .rewind when the branch moved to a
                commit that does not descend from the last one seen (a
                force-push, a reset), .created and .deleted for the
                branch, .skipped when more commits came at once than it
                publishes, .error.

    Both share the routes: `routes: [{to: ACTOR, match|regex|glob, field,
    events, ask, timeout}]`. Every event that a route's rule and event
    kinds let through is told (or, with `ask: true`, asked) to the
    route's actor, as the same map that the bus carries. Every route
    whose rule matches gets the event, not only the first. The answer to
    an ask (or its error) is published as TOPIC.answered {watch, to,
    event, answer | error}. Sends never wait for room: a full mailbox or
    a missing actor is logged and counted (watch.route_failed).

    How the actor thread waits. troupe's runtime has no hook for an actor
    to wait on a descriptor of its own (the HTTP engine and the process
    service each run a thread of their own). So file_watch reads its
    inotify descriptor, which is non-blocking, on a periodic timer
    (`poll`, 50 ms by default), and git_watch reads the output of its git
    processes (non-blocking pipes from the process service, tr_proc.h) on
    a 5 ms timer while one runs. Neither ever blocks its thread on the
    outside world, except git_watch's start, which runs git once and
    waits for it (bounded by `timeout`) so that a repository git cannot
    read is refused before the tree starts.

    Processes are started by the runtime's process service: fork and an
    immediate exec on its own thread, never a fork of this threaded
    process without exec.

    Parameters are checked when the tree file is loaded (tr_actor_type_t
    .check) with positions, existence of paths included (unless `create:
    true`); the same reading runs again at start.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_json.h"
#include "tr_mp.h"
#include "tr_proc.h"
#include "tr_u64map.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAX_ASKS      1024            //  asks in flight per watch
#define S_ASK_MS        30000           //  a route's default ask timeout
#define S_TICK_POLL     1               //  our own ticks' ids
#define S_TICK_DRAIN    2
#define S_DRAIN_MS      5               //  git output read while git runs
#define S_MAX_DEPTH     64              //  folders below a recursive root
#define S_READS         64              //  inotify reads per poll, at most
#define S_BUF_SIZE      (64 * 1024)
#define S_GIT_OUTPUT    (8u << 20)      //  most output read from one git run
#define S_SHA_MAX       72              //  SHA-256 is 64 hex digits

//  --------------------------------------------------------------------------
//  Our own timer messages: a msgpack fixext 8 of type 'W' holding an id.
//  Asks' timers are tr_compose's ticks (type 'T'), so the two never mix.

static void
s_wtick_pack (uint8_t buf [TR__TICK_SIZE], uint64_t id)
{
    tr__tick_pack (buf, id);
    buf [1] = 'W';
}

static bool
s_wtick_read (const tr_msg_t *msg, uint64_t *id)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_from (msg) [0] != '\0'
    ||  tr_msg_size (msg) != TR__TICK_SIZE || body [0] != 0xd7 || body [1] != 'W')
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | body [2 + i];
    *id = v;
    return true;
}

//  --------------------------------------------------------------------------
//  Event bodies

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} s_body_t;

static void
s_body_init (s_body_t *b)
{
    msgpack_sbuffer_init (&b->sb);
    msgpack_packer_init (&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void
s_pk_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body (pk, s, strlen (s));
}

//  key: a string, or nil for NULL.
static void
s_pk_kstr (msgpack_packer *pk, const char *key, const char *value)
{
    s_pk_str (pk, key);
    if (value)
        s_pk_str (pk, value);
    else
        msgpack_pack_nil (pk);
}

static void
s_pk_kint (msgpack_packer *pk, const char *key, int64_t value)
{
    s_pk_str (pk, key);
    msgpack_pack_int64 (pk, value);
}

static void
s_pk_kbool (msgpack_packer *pk, const char *key, bool value)
{
    s_pk_str (pk, key);
    if (value)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

static int64_t
s_wall_ms (void)
{
    return tr__wall_us () / 1000;
}

//  --------------------------------------------------------------------------
//  What both types share: topic, routes, asks in flight

typedef struct {
    char *to;
    tr__text_rule_t rule;               //  match or regex, on `field`
    bool has_rule;
    char *glob;                         //  file_watch: on the path
    unsigned kinds;                     //  bit per event kind; 0: all
    bool ask;
    int64_t timeout_ms;
} s_route_t;

typedef struct s_ask_s s_ask_t;
struct s_ask_s {
    s_ask_t *next;
    uint64_t id, timer;
    size_t route;
    uint8_t *event;                     //  the event asked about (msgpack)
    size_t size;
};

typedef struct {
    const char *type;                   //  "file_watch"
    const char *const *kinds;           //  the type's event kinds, NULL-ended
    tr_actor_t *self;
    tr_node_t *node;
    const char *name;                   //  the actor's (it outlives us)
    char *topic;
    s_route_t *routes;
    size_t nroutes;
    s_ask_t *asks;
    size_t inflight;
} s_source_t;

//  Reads an optional boolean under key of a nested map.
static int
s_cfg_bool_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key, const char *what,
               bool *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, map, key);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return tr__cfg_bad_at (cfg, key, "%s '%s' must be true or false, not %s", what, key,
                               tr__cfg_kind (o));
    *out = o->via.boolean;
    return 0;
}

//  Reads an optional duration (ms) under key of a nested map.
static int
s_cfg_duration_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key,
                   const char *what, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, map, key);
    if (!o)
        return 0;
    int64_t ms = -1;
    if (o->type == MSGPACK_OBJECT_STR) {
        if (tr_duration_parse (o->via.str.ptr, o->via.str.size, &ms) != TR_OK)
            ms = -1;
    }
    else
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        ms = (int64_t) o->via.u64;
    if (ms < min || ms > max)
        return tr__cfg_bad_at (cfg, key, "%s '%s' must be a duration from %lld ms to %lld ms",
                               what, key, (long long) min, (long long) max);
    *out = ms;
    return 0;
}

//  A list of event kinds (names among kinds [0..count)) as a bit mask.
static int
s_cfg_kinds (tr__cfg_t *cfg, const msgpack_object *list, const char *what,
             const char *const *kinds, int count, unsigned *mask)
{
    char names [256] = "";
    for (int k = 0; k < count; k++) {
        strncat (names, k? ", ": "", sizeof names - strlen (names) - 1);
        strncat (names, kinds [k], sizeof names - strlen (names) - 1);
    }
    if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad (cfg, "%s must be a list of at least one of %s", what, names);
    *mask = 0;
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *o = &list->via.array.ptr [i];
        int k = 0;
        while (k < count && !(o->type == MSGPACK_OBJECT_STR
                              && o->via.str.size == strlen (kinds [k])
                              && memcmp (o->via.str.ptr, kinds [k], o->via.str.size) == 0))
            k++;
        if (k == count) {
            char item [16];
            snprintf (item, sizeof item, "%u", i + 1);
            if (o->type == MSGPACK_OBJECT_STR)
                return tr__cfg_bad_at (cfg, item, "%s item %u must be one of %s, not '%.*s'",
                                       what, i + 1, names,
                                       (int) (o->via.str.size > 60? 60: o->via.str.size),
                                       o->via.str.ptr);
            return tr__cfg_bad_at (cfg, item, "%s item %u must be one of %s, not %s", what,
                                   i + 1, names, tr__cfg_kind (o));
        }
        *mask |= 1u << k;
    }
    return 0;
}

//  `topic`: the prefix of every event's topic (TOPIC.KIND).
static int
s_cfg_topic (s_source_t *src, tr__cfg_t *cfg, const char *fallback)
{
    if (tr__cfg_str (cfg, "topic", &src->topic))
        return -1;
    if (!src->topic && !(src->topic = strdup (fallback)))
        return tr__cfg_bad (cfg, "out of memory");
    char longest [TR_NAME_MAX + 16];
    int n = snprintf (longest, sizeof longest, "%s.answered", src->topic);
    if (n >= (int) sizeof longest || tr_name_check (longest, (size_t) n) != TR_OK
    ||  strncmp (src->topic, "sys.", 4) == 0 || strcmp (src->topic, "sys") == 0)
        return tr__cfg_bad_at (cfg, "topic", "'topic' '%.100s' cannot be a topic: at most %d "
                               "bytes, no spaces or control characters, not sys.",
                               src->topic, TR_NAME_MAX - 9);
    return 0;
}

//  One item of `routes`.
static int
s_route_parse (s_source_t *src, tr__cfg_t *cfg, const msgpack_object *o, size_t index,
               const char *default_field, bool globs, s_route_t *route)
{
    static const char *const keys [] = { "to", "match", "regex", "field", "events", "ask",
                                         "timeout", "glob", NULL };
    static const char *const git_keys [] = { "to", "match", "regex", "field", "events", "ask",
                                             "timeout", NULL };
    char where [48], what [96];
    snprintf (where, sizeof where, "routes item %zu", index + 1);
    tr__cfg_enter (cfg, "routes.%zu", index + 1);
    route->timeout_ms = S_ASK_MS;
    if (o->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "%s must be a mapping {to, match|regex%s, field, events, "
                            "ask, timeout}, not %s", where, globs? "|glob": "", tr__cfg_kind (o));
    //  glob is for the file watch only.
    if (tr__cfg_keys (cfg, o, where, globs? keys: git_keys))
        return -1;
    snprintf (what, sizeof what, "%s 'to'", where);
    if (tr__cfg_name_in (cfg, o, "to", what, &route->to))
        return -1;
    if (!route->to)
        return tr__cfg_bad (cfg, "%s needs 'to', the actor that gets the events", where);
    int rules = (tr__cfg_get (cfg, o, "match") != NULL) + (tr__cfg_get (cfg, o, "regex") != NULL)
              + (tr__cfg_get (cfg, o, "glob") != NULL);
    if (rules > 1)
        return tr__cfg_bad (cfg, "%s takes at most one of match, regex%s", where,
                            globs? ", glob": "");
    if (tr__cfg_get (cfg, o, "glob")) {
        if (tr__cfg_get (cfg, o, "field"))
            return tr__cfg_bad_at (cfg, "field", "%s: 'field' is only for match and regex (a "
                                   "glob is on the path)", where);
        snprintf (what, sizeof what, "%s 'glob'", where);
        if (tr__cfg_str_in (cfg, o, "glob", what, &route->glob))
            return -1;
    }
    else
    if (rules == 1) {
        if (tr__text_rule_parse (cfg, o, where, &route->rule))
            return -1;
        route->has_rule = true;
        if (!route->rule.field && !(route->rule.field = strdup (default_field)))
            return tr__cfg_bad (cfg, "out of memory");
    }
    else
    if (tr__cfg_get (cfg, o, "field"))
        return tr__cfg_bad_at (cfg, "field", "%s: 'field' needs match or regex", where);
    const msgpack_object *events = tr__cfg_get (cfg, o, "events");
    if (events) {
        snprintf (what, sizeof what, "%s 'events'", where);
        tr__cfg_enter_sub (cfg, "events");
        int count = 0;
        while (src->kinds [count])
            count++;
        if (s_cfg_kinds (cfg, events, what, src->kinds, count, &route->kinds))
            return -1;
        tr__cfg_enter (cfg, "routes.%zu", index + 1);
    }
    if (s_cfg_bool_in (cfg, o, "ask", where, &route->ask)
    ||  s_cfg_duration_in (cfg, o, "timeout", where, 1, INT32_MAX - 10, &route->timeout_ms))
        return -1;
    if (tr__cfg_get (cfg, o, "timeout") && !route->ask)
        return tr__cfg_bad_at (cfg, "timeout", "%s: 'timeout' is only for a route with "
                               "ask: true", where);
    return 0;
}

static int
s_routes_parse (s_source_t *src, tr__cfg_t *cfg, const char *default_field, bool globs)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "routes");
    if (!list)
        return 0;
    if (list->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "routes", "'routes' must be a list of mappings, not %s",
                               tr__cfg_kind (list));
    if (list->via.array.size == 0)
        return 0;
    src->routes = (s_route_t *) calloc (list->via.array.size, sizeof *src->routes);
    if (!src->routes)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < list->via.array.size; i++) {
        src->nroutes = i + 1;           //  so that s_source_free frees this one too
        if (s_route_parse (src, cfg, &list->via.array.ptr [i], i, default_field, globs,
                           &src->routes [i]))
            return -1;
    }
    tr__cfg_enter (cfg, "%s", "");
    return 0;
}

static void
s_ask_free (s_ask_t *ask)
{
    if (ask) {
        free (ask->event);
        free (ask);
    }
}

//  Frees the settings and the asks in flight (their timers cancelled).
static void
s_source_free (s_source_t *src)
{
    for (size_t i = 0; i < src->nroutes; i++) {
        free (src->routes [i].to);
        free (src->routes [i].glob);
        tr__text_rule_free (&src->routes [i].rule);
    }
    free (src->routes);
    free (src->topic);
    while (src->asks) {
        s_ask_t *ask = src->asks;
        src->asks = ask->next;
        if (src->node)
            tr_timer_cancel (src->node, ask->timer);
        s_ask_free (ask);
    }
}

//  The glob test: on the last part of the path, or on the whole path if
//  the glob has a '/'.
static bool
s_glob_test (const char *glob, const char *path)
{
    if (strchr (glob, '/'))
        return fnmatch (glob, path, FNM_PATHNAME) == 0;
    const char *slash = strrchr (path, '/');
    return fnmatch (glob, slash? slash + 1: path, 0) == 0;
}

//  The string under `field` of an event, as a C string (malloc'd), or NULL.
static char *
s_event_str (const uint8_t *body, size_t size, const char *field)
{
    const uint8_t *value;
    size_t value_size;
    if (tr__body_field (body, size, field, &value, &value_size))
        return NULL;
    tr__mp_t mp;
    const char *text;
    uint32_t len;
    tr__mp_init (&mp, value, value_size);
    if (tr__mp_str (&mp, &text, &len) || memchr (text, 0, len))
        return NULL;
    return strndup (text, len);
}

static bool
s_route_takes (const s_route_t *route, int kind, const uint8_t *body, size_t size)
{
    if (route->kinds && !(route->kinds & (1u << kind)))
        return false;
    if (route->has_rule)
        return tr__text_rule_test (&route->rule, body, size);
    if (route->glob) {
        char *path = s_event_str (body, size, "path");
        bool hit = path && s_glob_test (route->glob, path);
        free (path);
        if (!hit) {
            //  A move matches by either of its paths.
            char *from = s_event_str (body, size, "from");
            hit = from && s_glob_test (route->glob, from);
            free (from);
        }
        return hit;
    }
    return true;
}

//  Publishes TOPIC.answered for an ask: the answer (reply, or NULL and
//  error) with the event it answers.
static void
s_source_answered (s_source_t *src, const s_ask_t *ask, const tr_msg_t *reply, int error)
{
    const s_route_t *route = &src->routes [ask->route];
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 4);
    s_pk_kstr (&b.pk, "watch", src->name);
    s_pk_kstr (&b.pk, "to", route->to);
    s_pk_str (&b.pk, "event");
    msgpack_sbuffer_write (&b.sb, (const char *) ask->event, ask->size);
    if (error)
        s_pk_kstr (&b.pk, "error", tr_errname (error));
    else {
        s_pk_str (&b.pk, "answer");
        if (tr_msg_size (reply))
            msgpack_sbuffer_write (&b.sb, (const char *) tr_msg_body (reply), tr_msg_size (reply));
        else
            msgpack_pack_nil (&b.pk);
    }
    if (!error && tr_log_level () >= TR_LOG_INFO) {
        char *json = NULL;
        size_t len = 0;
        if (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply), &json, &len) == 0)
            tr_log (TR_LOG_INFO, "%s '%s': '%s' answered %.300s%s", src->type, src->name,
                    route->to, json, len > 300? "...": "");
        free (json);
    }
    char topic [TR_NAME_MAX + 16];
    snprintf (topic, sizeof topic, "%s.answered", src->topic);
    int rc = tr_event_publish (src->node, topic, b.sb.data, b.sb.size, NULL);
    if (rc != TR_OK)
        tr_log (TR_LOG_WARN, "%s '%s': cannot publish %s: %s", src->type, src->name, topic,
                tr_strerror (rc));
    msgpack_sbuffer_destroy (&b.sb);
}

//  Sends an event to a route's actor: a tell, or an ask with its timer.
//  Never waits for room in a mailbox.
static void
s_route_send (s_source_t *src, size_t index, const uint8_t *body, size_t size)
{
    const s_route_t *route = &src->routes [index];
    tr_send_opts_t opts = { .timeout_ms = -1 };
    int rc;
    if (!route->ask)
        rc = tr_tell (src->node, route->to, body, size, &opts);
    else
    if (src->inflight >= S_MAX_ASKS)
        rc = TR_ELIMIT;
    else {
        s_ask_t *ask = (s_ask_t *) calloc (1, sizeof *ask);
        uint8_t *copy = (uint8_t *) malloc (size);
        rc = ask && copy? TR_OK: TR_ENOMEM;
        if (rc == TR_OK)
            rc = tr_request (src->node, route->to, body, size, (int) route->timeout_ms,
                             &ask->id, &opts);
        if (rc == TR_OK) {
            uint8_t tick [TR__TICK_SIZE];
            tr__tick_pack (tick, ask->id);
            rc = tr_timer_after (src->node, src->name, (int) route->timeout_ms + 5, tick,
                                 sizeof tick, &ask->timer);
        }
        if (rc == TR_OK) {
            memcpy (copy, body, size);
            ask->event = copy;
            ask->size = size;
            ask->route = index;
            ask->next = src->asks;
            src->asks = ask;
            src->inflight++;
        }
        else {
            free (copy);
            s_ask_free (ask);
        }
    }
    if (rc == TR_OK)
        tr_actor_info_add (src->self, "watch.routed", 1);
    else {
        tr_log (TR_LOG_WARN, "%s '%s': route to '%s': %s", src->type, src->name, route->to,
                tr_strerror (rc));
        tr_actor_info_add (src->self, "watch.route_failed", 1);
    }
}

//  Publishes an event of kind `kind` on TOPIC.KIND and routes it.
static void
s_source_emit (s_source_t *src, int kind, const uint8_t *body, size_t size)
{
    char topic [TR_NAME_MAX + 16];
    snprintf (topic, sizeof topic, "%s.%s", src->topic, src->kinds [kind]);
    if (tr_log_level () >= TR_LOG_DEBUG) {
        char *json = NULL;
        size_t len = 0;
        if (tr__json_from_msgpack (body, size, &json, &len) == 0)
            tr_log (TR_LOG_DEBUG, "%s '%s': %s %.300s", src->type, src->name, topic, json);
        free (json);
    }
    int rc = tr_event_publish (src->node, topic, body, size, NULL);
    if (rc == TR_OK)
        tr_actor_info_add (src->self, "watch.published", 1);
    else {
        tr_log (TR_LOG_WARN, "%s '%s': cannot publish %s: %s", src->type, src->name, topic,
                tr_strerror (rc));
        tr_actor_info_add (src->self, "watch.unpublished", 1);
    }
    for (size_t i = 0; i < src->nroutes; i++)
        if (s_route_takes (&src->routes [i], kind, body, size))
            s_route_send (src, i, body, size);
}

//  Takes the answers to asks and their timers. Returns true if msg was
//  one (handled), false if it is for the type itself.
static bool
s_source_take (s_source_t *src, const tr_msg_t *msg)
{
    int kind = tr_msg_kind (msg);
    uint64_t id;
    if (kind == TR_KIND_REPLY || kind == TR_KIND_ERROR)
        id = tr_msg_corr (msg);
    else
    if (!tr__tick_read (msg, &id))
        return false;
    s_ask_t **link = &src->asks;
    while (*link && (*link)->id != id)
        link = &(*link)->next;
    s_ask_t *ask = *link;
    if (!ask)
        return true;                    //  an answer after its timer, or the reverse
    *link = ask->next;
    src->inflight--;
    int error = kind == TR_KIND_REPLY? TR_OK: kind == TR_KIND_ERROR? tr_msg_error (msg)
              : TR_ETIMEDOUT;
    if (kind != TR_KIND_TELL)
        tr_timer_cancel (src->node, ask->timer);
    if (error) {
        tr_log (TR_LOG_WARN, "%s '%s': route to '%s': the ask failed: %s", src->type, src->name,
                src->routes [ask->route].to, tr_strerror (error));
        tr_actor_info_add (src->self, "watch.route_failed", 1);
    }
    else
        tr_actor_info_add (src->self, "watch.answered", 1);
    s_source_answered (src, ask, error? NULL: msg, error);
    s_ask_free (ask);
    return true;
}

//  Starts the source's part: the actor, and the periodic tick `id`.
static int
s_source_start (s_source_t *src, tr_actor_t *self, int64_t period_ms, uint64_t *timer)
{
    src->self = self;
    src->node = tr_actor_node (self);
    src->name = tr_actor_name (self);
    uint8_t tick [TR__TICK_SIZE];
    s_wtick_pack (tick, S_TICK_POLL);
    return tr_timer_every (src->node, src->name, (int) period_ms, tick, sizeof tick, timer);
}

//  Refuses to start with a message (logged, and the supervisor's reason).
static int __attribute__ ((format (printf, 2, 3)))
s_refuse (tr_actor_t *self, const char *format, ...)
{
    char text [TR__CFG_ERROR];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    tr_log (TR_LOG_ERROR, "%s", text);
    tr_actor_exit (self, TR_EINVAL, text);
    return -1;
}

//  ==========================================================================
//  file_watch

enum { S_CREATED, S_MODIFIED, S_DELETED, S_MOVED, S_OVERFLOW, S_ERROR, S_FILE_KINDS };

static const char *const s_file_kinds [] = {
    "created", "modified", "deleted", "moved", "overflow", "error", NULL
};

//  What inotify reports to us about each watched folder.
#define S_MASK  (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM \
                 | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

typedef struct {
    char *path;                         //  as given, without a trailing '/'
    bool dir;                           //  a folder; else a file, watched
    char *parent;                       //  through its parent folder
    char *base;
    bool present;                       //  watched now
    int wd;                             //  the folder's watch (or its parent's)
} s_root_t;

//  A watched folder.
typedef struct {
    int wd;
    char *path;
    bool whole;                         //  all its entries count
    bool recursive;                     //  its new subfolders are watched
    char **names;                       //  else only these (file roots)
    size_t nnames;
} s_wdir_t;

//  What a scan last saw at a path.
typedef struct {
    int64_t mtime_ns;
    int64_t size;
    bool dir;
} s_entry_t;

//  An event held back by the debounce.
typedef struct s_pend_s s_pend_t;
struct s_pend_s {
    s_pend_t *next, *prev;
    char *path;
    int kind;                           //  S_CREATED or S_MODIFIED
    bool dir, scan;
    int64_t time_ms;                    //  wall clock, when it was first seen
    int64_t last_ns;                    //  monotonic, its last write
    uint64_t count;                     //  raw events folded into it
};

//  The first half of a rename, waiting for its second.
typedef struct s_move_s s_move_t;
struct s_move_s {
    s_move_t *next;
    uint32_t cookie;
    char *path;
    bool dir;
    uint64_t tick;
};

typedef struct {
    s_source_t src;
    //  Settings
    s_root_t *roots;
    size_t nroots;
    bool recursive, create;
    unsigned kinds;                     //  published kinds (bits)
    char *glob;
    regex_t regex;
    bool has_regex;
    int64_t debounce_ms, poll_ms;
    //  Running
    int fd;
    bool fd_open;
    uint8_t *buf;
    tr__u64map_t watches;               //  wd -> s_wdir_t
    zhashx_t *snap;                     //  path -> s_entry_t
    zhashx_t *pend_index;               //  path -> s_pend_t (not owned)
    s_pend_t *pend_head, *pend_tail;
    size_t pending;
    s_move_t *moves;
    uint64_t ticks;
    uint64_t timer;
    bool starting;                      //  in init: no events yet
    bool strict;                        //  a root's own watch at start:
    char start_error [512];             //  its failure refuses the start
    char last_error [512];              //  the last watch error told
} s_fw_t;

static const tr_param_spec_t s_fw_params [] = {
    { "paths", TR_PARAM_LIST, true, "files and folders to watch" },
    { "recursive", TR_PARAM_BOOL, false, "watch the folders below the folders too (default false)" },
    { "events", TR_PARAM_LIST, false, "kinds to publish: created, modified, deleted, moved "
                                      "(default all)" },
    { "glob", TR_PARAM_STRING, false, "only paths whose name (or whole path, with a '/') "
                                      "matches" },
    { "regex", TR_PARAM_STRING, false, "only paths matching this POSIX extended regex" },
    { "debounce", TR_PARAM_DURATION, false, "writes to a path within this are one event "
                                            "(default 100ms; 0: none)" },
    { "poll", TR_PARAM_DURATION, false, "how often the inotify queue is read (default 50ms)" },
    { "create", TR_PARAM_BOOL, false, "make missing folders of paths at start (default false)" },
    { "topic", TR_PARAM_STRING, false, "events go on TOPIC.KIND (default file)" },
    { "routes", TR_PARAM_LIST, false, "[{to, match|regex|glob, field, events, ask, timeout}]" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_wdir_free (s_wdir_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nnames; i++)
        free (w->names [i]);
    free (w->names);
    free (w->path);
    free (w);
}

static void
s_pend_free (s_pend_t *p)
{
    if (p) {
        free (p->path);
        free (p);
    }
}

static void
s_entry_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_fw_free (s_fw_t *fw)
{
    if (!fw)
        return;
    s_source_free (&fw->src);
    for (size_t i = 0; i < fw->nroots; i++) {
        free (fw->roots [i].path);
        free (fw->roots [i].parent);
        free (fw->roots [i].base);
    }
    free (fw->roots);
    free (fw->glob);
    if (fw->has_regex)
        regfree (&fw->regex);
    size_t at = 0;
    uint64_t key;
    void *value;
    while (tr__u64map_next (&fw->watches, &at, &key, &value))
        s_wdir_free ((s_wdir_t *) value);
    tr__u64map_clear (&fw->watches);
    zhashx_destroy (&fw->snap);
    zhashx_destroy (&fw->pend_index);
    while (fw->pend_head) {
        s_pend_t *p = fw->pend_head;
        fw->pend_head = p->next;
        s_pend_free (p);
    }
    while (fw->moves) {
        s_move_t *m = fw->moves;
        fw->moves = m->next;
        free (m->path);
        free (m);
    }
    if (fw->fd_open)
        close (fw->fd);
    free (fw->buf);
    free (fw);
}

//  mkdir -p. Returns 0 or -1 with errno.
static int
s_mkdirs (const char *path)
{
    char *copy = strdup (path);
    if (!copy)
        return -1;
    int rc = 0;
    for (char *p = copy + 1; rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir (copy, 0777) && errno != EEXIST)
            rc = -1;
        *p = c;
        if (c == '\0')
            break;
    }
    free (copy);
    return rc;
}

//  One item of `paths`: its text, a root of a kind the file system says
//  (unless create: then a missing path is a folder to make).
static int
s_fw_root_parse (s_fw_t *fw, tr__cfg_t *cfg, const msgpack_object *o, size_t i)
{
    char item [16];
    snprintf (item, sizeof item, "%zu", i + 1);
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0
    ||  memchr (o->via.str.ptr, 0, o->via.str.size) || o->via.str.size >= PATH_MAX)
        return tr__cfg_bad_at (cfg, item, "'paths' item %zu must be a path (a non-empty string), "
                               "not %s", i + 1, o->type == MSGPACK_OBJECT_STR? "an empty or "
                               "too long string": tr__cfg_kind (o));
    s_root_t *root = &fw->roots [i];
    if (!(root->path = strndup (o->via.str.ptr, o->via.str.size)))
        return tr__cfg_bad (cfg, "out of memory");
    size_t len = strlen (root->path);
    while (len > 1 && root->path [len - 1] == '/')
        root->path [--len] = '\0';
    for (size_t j = 0; j < i; j++)
        if (strcmp (fw->roots [j].path, root->path) == 0)
            return tr__cfg_bad_at (cfg, item, "'paths' names '%s' twice (items %zu and %zu)",
                                   root->path, j + 1, i + 1);
    struct stat st;
    if (stat (root->path, &st) != 0) {
        if (errno == ENOENT && fw->create) {
            root->dir = true;
            return 0;
        }
        return tr__cfg_bad_at (cfg, item, "path '%s' %s%s", root->path,
                               errno == ENOENT? "does not exist": "cannot be read: ",
                               errno == ENOENT? " (create: true makes missing folders)"
                                              : strerror (errno));
    }
    root->dir = S_ISDIR (st.st_mode);
    if (root->dir)
        return 0;
    //  A file is watched through its folder, so that a file replaced by a
    //  rename (as editors save) or deleted and made again is still seen.
    const char *slash = strrchr (root->path, '/');
    root->parent = slash == root->path? strdup ("/")
                 : slash? strndup (root->path, (size_t) (slash - root->path)): strdup (".");
    root->base = strdup (slash? slash + 1: root->path);
    if (!root->parent || !root->base)
        return tr__cfg_bad (cfg, "out of memory");
    return 0;
}

static int
s_fw_configure (s_fw_t *fw, tr__cfg_t *cfg)
{
    fw->src.type = "file_watch";
    fw->src.kinds = s_file_kinds;
    fw->debounce_ms = 100;
    fw->poll_ms = 50;
    if (tr__cfg_bool (cfg, "recursive", &fw->recursive)
    ||  tr__cfg_bool (cfg, "create", &fw->create)
    ||  tr__cfg_duration (cfg, "debounce", 0, 3600 * 1000, &fw->debounce_ms)
    ||  tr__cfg_duration (cfg, "poll", 1, 10000, &fw->poll_ms)
    ||  tr__cfg_str (cfg, "glob", &fw->glob)
    ||  s_cfg_topic (&fw->src, cfg, "file"))
        return -1;
    char *re = NULL;
    if (tr__cfg_str (cfg, "regex", &re))
        return -1;
    if (re) {
        int rc = regcomp (&fw->regex, re, REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char why [128];
            regerror (rc, &fw->regex, why, sizeof why);
            tr__cfg_bad_at (cfg, "regex", "'regex' '%.100s' does not compile: %s", re, why);
            free (re);
            return -1;
        }
        fw->has_regex = true;
        free (re);
    }
    fw->kinds = (1u << S_OVERFLOW) | (1u << S_ERROR);
    const msgpack_object *events = tr__cfg_get (cfg, NULL, "events");
    unsigned mask = (1u << S_OVERFLOW) - 1;
    tr__cfg_enter (cfg, "events");
    if (events && s_cfg_kinds (cfg, events, "'events'", s_file_kinds, S_OVERFLOW, &mask))
        return -1;
    tr__cfg_enter (cfg, "%s", "");
    fw->kinds |= mask;
    const msgpack_object *paths = tr__cfg_get (cfg, NULL, "paths");
    if (!paths || paths->type != MSGPACK_OBJECT_ARRAY || paths->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "paths", "'paths' must be a list of at least one path");
    fw->roots = (s_root_t *) calloc (paths->via.array.size, sizeof *fw->roots);
    if (!fw->roots)
        return tr__cfg_bad (cfg, "out of memory");
    tr__cfg_enter (cfg, "paths");
    for (size_t i = 0; i < paths->via.array.size; i++) {
        fw->nroots = i + 1;
        if (s_fw_root_parse (fw, cfg, &paths->via.array.ptr [i], i))
            return -1;
    }
    tr__cfg_enter (cfg, "%s", "");
    return s_routes_parse (&fw->src, cfg, "path", true);
}

static int
s_fw_configure_any (void *fw, tr__cfg_t *cfg)
{
    return s_fw_configure ((s_fw_t *) fw, cfg);
}

static void
s_fw_free_any (void *fw)
{
    s_fw_free ((s_fw_t *) fw);
}

static int
s_fw_check (const tr_params_t *params, tr_param_error_t *error)
{
    return tr__cfg_check ("file_watch", params, sizeof (s_fw_t), s_fw_configure_any,
                          s_fw_free_any, error);
}

//  --------------------------------------------------------------------------
//  Publishing, with the debounce

//  dir/name (malloc'd).
static char *
s_join (const char *dir, const char *name)
{
    size_t a = strlen (dir), b = strlen (name);
    bool slash = a > 0 && dir [a - 1] == '/';
    char *path = (char *) malloc (a + b + 2);
    if (path) {
        memcpy (path, dir, a);
        if (!slash)
            path [a++] = '/';
        memcpy (path + a, name, b + 1);
    }
    return path;
}

//  True if path is `top` or below it.
static bool
s_under (const char *path, const char *top)
{
    size_t n = strlen (top);
    if (strncmp (path, top, n) != 0)
        return false;
    return path [n] == '\0' || path [n] == '/' || (n > 0 && top [n - 1] == '/');
}

static bool
s_fw_passes (s_fw_t *fw, int kind, const char *path, const char *from)
{
    if (!(fw->kinds & (1u << kind)))
        return false;
    for (int i = 0; i < (from? 2: 1); i++) {
        const char *p = i? from: path;
        if ((!fw->glob || s_glob_test (fw->glob, p))
        &&  (!fw->has_regex || regexec (&fw->regex, p, 0, NULL, 0) == 0))
            return true;
    }
    return false;
}

//  Brings the snapshot's record of path up to date, if it is there.
static void
s_fw_restat (s_fw_t *fw, const char *path)
{
    s_entry_t *e = (s_entry_t *) zhashx_lookup (fw->snap, path);
    struct stat st;
    if (e && lstat (path, &st) == 0) {
        e->mtime_ns = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        e->size = (int64_t) st.st_size;
    }
}

static void
s_fw_publish (s_fw_t *fw, int kind, const char *path, bool dir, const char *from,
              int64_t time_ms, uint64_t count, bool scan)
{
    if (kind == S_CREATED || kind == S_MODIFIED)
        s_fw_restat (fw, path);
    //  Always the same keys, so that an agent's signature can name them.
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 8);
    s_pk_kstr (&b.pk, "watch", fw->src.name);
    s_pk_kstr (&b.pk, "event", s_file_kinds [kind]);
    s_pk_kstr (&b.pk, "path", path);
    s_pk_kstr (&b.pk, "from", from);
    s_pk_kbool (&b.pk, "dir", dir);
    s_pk_kint (&b.pk, "time", time_ms);
    s_pk_kint (&b.pk, "count", (int64_t) count);
    s_pk_kbool (&b.pk, "scan", scan);
    s_source_emit (&fw->src, kind, (const uint8_t *) b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy (&b.sb);
    if (count > 1)
        tr_actor_info_add (fw->src.self, "watch.coalesced", (int64_t) count - 1);
}

//  Publishes a held event and forgets it.
static void
s_pend_publish (s_fw_t *fw, s_pend_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        fw->pend_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        fw->pend_tail = p->prev;
    fw->pending--;
    zhashx_delete (fw->pend_index, p->path);
    s_fw_publish (fw, p->kind, p->path, p->dir, NULL, p->time_ms, p->count, p->scan);
    s_pend_free (p);
}

//  Publishes what is held for path (and, with below, for paths below it).
static void
s_fw_flush_path (s_fw_t *fw, const char *path, bool below)
{
    if (!below) {
        s_pend_t *p = (s_pend_t *) zhashx_lookup (fw->pend_index, path);
        if (p)
            s_pend_publish (fw, p);
        return;
    }
    s_pend_t *p = fw->pend_head;
    while (p) {
        s_pend_t *next = p->next;
        if (s_under (p->path, path))
            s_pend_publish (fw, p);
        p = next;
    }
}

//  Publishes the held events whose path has been quiet for the debounce
//  (all of them with `all`), oldest first.
static void
s_fw_flush_due (s_fw_t *fw, bool all)
{
    int64_t now = tr__now_ns ();
    s_pend_t *p = fw->pend_head;
    while (p) {
        s_pend_t *next = p->next;
        if (all || now - p->last_ns >= fw->debounce_ms * 1000000)
            s_pend_publish (fw, p);
        p = next;
    }
}

static void
s_fw_hold (s_fw_t *fw, int kind, const char *path, bool dir, bool scan)
{
    s_pend_t *p = (s_pend_t *) calloc (1, sizeof *p);
    if (p && !(p->path = strdup (path))) {
        free (p);
        p = NULL;
    }
    if (!p) {                           //  no memory to hold it: say it now
        s_fw_publish (fw, kind, path, dir, NULL, s_wall_ms (), 1, scan);
        return;
    }
    p->kind = kind;
    p->dir = dir;
    p->scan = scan;
    p->time_ms = s_wall_ms ();
    p->last_ns = tr__now_ns ();
    p->count = 1;
    p->prev = fw->pend_tail;
    if (fw->pend_tail)
        fw->pend_tail->next = p;
    else
        fw->pend_head = p;
    fw->pend_tail = p;
    fw->pending++;
    zhashx_insert (fw->pend_index, p->path, p);
}

//  An event at path (from: a move's first path). Kinds the settings do
//  not publish, and paths the filters refuse, stop here. With a
//  debounce, writes fold into what is held for the path (a creation or
//  an earlier write), and a creation is held for the writes that follow;
//  any other event first publishes what is held for its paths, so that
//  the events of one path keep their order.
static void
s_fw_event (s_fw_t *fw, int kind, const char *path, bool dir, const char *from, bool scan)
{
    if (!s_fw_passes (fw, kind, path, from))
        return;
    if (fw->debounce_ms > 0 && kind == S_MODIFIED) {
        s_pend_t *p = (s_pend_t *) zhashx_lookup (fw->pend_index, path);
        if (p) {
            p->count++;
            p->last_ns = tr__now_ns ();
        }
        else
            s_fw_hold (fw, kind, path, dir, scan);
        return;
    }
    s_fw_flush_path (fw, path, kind == S_DELETED || kind == S_MOVED);
    if (from)
        s_fw_flush_path (fw, from, true);
    if (fw->debounce_ms > 0 && kind == S_CREATED && !dir)
        s_fw_hold (fw, kind, path, dir, scan);
    else
        s_fw_publish (fw, kind, path, dir, from, s_wall_ms (), 1, scan);
}

//  An error event (always published) and its log line.
static void
s_fw_error (s_fw_t *fw, const char *path, const char *text)
{
    tr_log (TR_LOG_WARN, "file_watch '%s': %s: %s", fw->src.name, path, text);
    tr_actor_info_add (fw->src.self, "watch.errors", 1);
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 5);
    s_pk_kstr (&b.pk, "watch", fw->src.name);
    s_pk_kstr (&b.pk, "event", "error");
    s_pk_kstr (&b.pk, "path", path);
    s_pk_kstr (&b.pk, "error", text);
    s_pk_kint (&b.pk, "time", s_wall_ms ());
    s_source_emit (&fw->src, S_ERROR, (const uint8_t *) b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy (&b.sb);
}

//  --------------------------------------------------------------------------
//  Watches and the snapshot

//  Watches folder `path` (whole: all its entries; recursive: its new
//  subfolders too; name: else this entry only). Returns the watch, or -1
//  after reporting why not: as the start's error for a root's own watch
//  at start, else as an error event (a subfolder that cannot be watched
//  does not stop the others).
static int
s_fw_watch (s_fw_t *fw, const char *path, bool whole, bool recursive, const char *name)
{
    int wd = inotify_add_watch (fw->fd, path, S_MASK);
    if (wd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return -1;                  //  gone meanwhile: its events tell the rest
        char text [300];
        if (e == ENOSPC)
            snprintf (text, sizeof text, "the limit of inotify watches is reached "
                      "(fs.inotify.max_user_watches); not watched");
        else
            snprintf (text, sizeof text, "cannot be watched: %s", strerror (e));
        if (fw->strict) {
            if (!fw->start_error [0])
                snprintf (fw->start_error, sizeof fw->start_error, "'%s' %s", path, text);
        }
        else {
            //  Told once, not at every poll that tries again.
            char said [sizeof fw->last_error];
            snprintf (said, sizeof said, "%s: %s", path, text);
            if (strcmp (said, fw->last_error) != 0) {
                snprintf (fw->last_error, sizeof fw->last_error, "%s", said);
                s_fw_error (fw, path, text);
            }
        }
        return -1;
    }
    s_wdir_t *w = (s_wdir_t *) tr__u64map_get (&fw->watches, (uint64_t) wd);
    if (!w) {
        w = (s_wdir_t *) calloc (1, sizeof *w);
        if (!w || !(w->path = strdup (path)) || tr__u64map_put (&fw->watches, (uint64_t) wd, w)) {
            s_wdir_free (w);
            inotify_rm_watch (fw->fd, wd);
            return -1;
        }
        w->wd = wd;
        tr_actor_info_set (fw->src.self, "watch.watches", (int64_t) fw->watches.count);
    }
    else
    if (strcmp (w->path, path) != 0) {
        char *copy = strdup (path);     //  the same folder by another name now
        if (copy) {
            free (w->path);
            w->path = copy;
        }
    }
    w->whole |= whole;
    w->recursive |= recursive;
    if (name) {
        for (size_t i = 0; i < w->nnames; i++)
            if (strcmp (w->names [i], name) == 0)
                return wd;
        char **names = (char **) realloc (w->names, (w->nnames + 1) * sizeof *names);
        if (names) {
            w->names = names;
            if ((names [w->nnames] = strdup (name)))
                w->nnames++;
        }
    }
    return wd;
}

//  Stops watching folder `path` and every watched folder below it. Roots
//  watched through them are no longer present (the caller scans them).
static void
s_fw_unwatch_under (s_fw_t *fw, const char *path)
{
    size_t at = 0;
    uint64_t key;
    void *value;
    uint64_t *gone = NULL;
    size_t count = 0;
    while (tr__u64map_next (&fw->watches, &at, &key, &value))
        if (s_under (((s_wdir_t *) value)->path, path)) {
            uint64_t *more = (uint64_t *) realloc (gone, (count + 1) * sizeof *more);
            if (!more)
                break;
            gone = more;
            gone [count++] = key;
        }
    for (size_t i = 0; i < count; i++) {
        s_wdir_t *w = (s_wdir_t *) tr__u64map_take (&fw->watches, gone [i]);
        inotify_rm_watch (fw->fd, w->wd);
        for (size_t r = 0; r < fw->nroots; r++)
            if (fw->roots [r].present && fw->roots [r].wd == w->wd)
                fw->roots [r].present = false;
        s_wdir_free (w);
    }
    free (gone);
    tr_actor_info_set (fw->src.self, "watch.watches", (int64_t) fw->watches.count);
}

//  Records what a scan found at path; with emit, publishes it as created
//  (a path the snapshot did not have) or modified (a file whose time or
//  size changed). seen (if not NULL) collects the paths found.
static void
s_fw_found (s_fw_t *fw, const char *path, const struct stat *st, zhashx_t *seen, bool emit)
{
    bool dir = S_ISDIR (st->st_mode);
    int64_t mtime = (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s_entry_t *e = (s_entry_t *) zhashx_lookup (fw->snap, path);
    if (seen)
        zhashx_insert (seen, path, fw);
    if (!e) {
        if (!(e = (s_entry_t *) calloc (1, sizeof *e)))
            return;
        e->mtime_ns = mtime;
        e->size = (int64_t) st->st_size;
        e->dir = dir;
        zhashx_insert (fw->snap, path, e);
        if (emit)
            s_fw_event (fw, S_CREATED, path, dir, NULL, true);
        return;
    }
    bool changed = !dir && (e->mtime_ns != mtime || e->size != (int64_t) st->st_size);
    e->mtime_ns = mtime;
    e->size = (int64_t) st->st_size;
    e->dir = dir;
    if (emit && changed)
        s_fw_event (fw, S_MODIFIED, path, dir, NULL, true);
}

//  Scans the entries of folder `path` (already watched), depth levels
//  below a root, in name order; descends into subfolders when recursive
//  (watching each first, so that nothing made meanwhile is missed).
static void
s_fw_scan_dir (s_fw_t *fw, const char *path, int depth, bool recursive, zhashx_t *seen,
               bool emit)
{
    struct dirent **list = NULL;
    int n = scandir (path, &list, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        const char *name = list [i]->d_name;
        char *child = strcmp (name, ".") && strcmp (name, "..")? s_join (path, name): NULL;
        struct stat st;
        if (child && lstat (child, &st) == 0) {
            s_fw_found (fw, child, &st, seen, emit);
            if (S_ISDIR (st.st_mode) && recursive && depth + 1 < S_MAX_DEPTH
            &&  s_fw_watch (fw, child, true, true, NULL) >= 0)
                s_fw_scan_dir (fw, child, depth + 1, recursive, seen, emit);
        }
        free (child);
        free (list [i]);
    }
    free (list);
}

//  True if a snapshot path belongs to the root's scope.
static bool
s_fw_in_scope (s_fw_t *fw, const s_root_t *root, const char *path)
{
    if (!root->dir || !s_under (path, root->path))
        return strcmp (path, root->path) == 0;
    if (fw->recursive || strcmp (path, root->path) == 0)
        return true;
    size_t n = strlen (root->path);
    const char *rest = path + n + (root->path [n - 1] != '/');
    return strchr (rest, '/') == NULL;
}

static int
s_strcmp_desc (const void *a, const void *b)
{
    return strcmp (*(char *const *) b, *(char *const *) a);
}

//  Forgets the snapshot's paths that keep () accepts, deepest first
//  (entries before their folder); with emit, publishes each as deleted.
static void
s_fw_forget (s_fw_t *fw, bool (*keep) (s_fw_t *, const char *, const void *),
             const void *arg, bool emit)
{
    char **paths = NULL;
    size_t count = 0, cap = 0;
    for (void *e = zhashx_first (fw->snap); e; e = zhashx_next (fw->snap)) {
        const char *key = (const char *) zhashx_cursor (fw->snap);
        if (keep (fw, key, arg))
            continue;
        if (count == cap) {
            cap = cap? cap * 2: 16;
            char **more = (char **) realloc (paths, cap * sizeof *more);
            if (!more)
                break;
            paths = more;
        }
        if (!(paths [count] = strdup (key)))
            break;
        count++;
    }
    if (count)
        qsort (paths, count, sizeof *paths, s_strcmp_desc);
    for (size_t i = 0; i < count; i++) {
        s_entry_t *e = (s_entry_t *) zhashx_lookup (fw->snap, paths [i]);
        bool dir = e && e->dir;
        zhashx_delete (fw->snap, paths [i]);
        if (emit)
            s_fw_event (fw, S_DELETED, paths [i], dir, NULL, false);
        free (paths [i]);
    }
    free (paths);
}

//  keep () for s_fw_forget: paths not below `top`.
static bool
s_keep_not_under (s_fw_t *fw, const char *path, const void *top)
{
    (void) fw;
    return !s_under (path, (const char *) top);
}

typedef struct {
    const s_root_t *root;
    zhashx_t *seen;
} s_scope_t;

//  keep () for s_fw_forget: paths outside a root's scope, or seen.
static bool
s_keep_seen (s_fw_t *fw, const char *path, const void *arg)
{
    const s_scope_t *scope = (const s_scope_t *) arg;
    return !s_fw_in_scope (fw, scope->root, path) || zhashx_lookup (scope->seen, path);
}

//  Scans a root against the snapshot: watches what is there now, and
//  with emit publishes the differences (created, modified, deleted, each
//  marked scan: true). Used at start (no emit), after an overflow, and
//  when a root goes away or comes back.
static void
s_fw_root_scan (s_fw_t *fw, s_root_t *root, bool emit)
{
    zhashx_t *seen = zhashx_new ();
    if (!seen)
        return;
    struct stat st;
    root->present = false;
    if (root->dir) {
        if (lstat (root->path, &st) == 0 && S_ISDIR (st.st_mode)) {
            fw->strict = fw->starting;
            int wd = s_fw_watch (fw, root->path, true, fw->recursive, NULL);
            fw->strict = false;
            if (wd >= 0) {
                root->wd = wd;
                root->present = true;
                s_fw_found (fw, root->path, &st, seen, emit);
                s_fw_scan_dir (fw, root->path, 0, fw->recursive, seen, emit);
            }
        }
    }
    else
    if (lstat (root->parent, &st) == 0 && S_ISDIR (st.st_mode)) {
        fw->strict = fw->starting;
        int wd = s_fw_watch (fw, root->parent, false, false, root->base);
        fw->strict = false;
        if (wd >= 0) {
            root->wd = wd;
            root->present = true;
            if (lstat (root->path, &st) == 0)
                s_fw_found (fw, root->path, &st, seen, emit);
        }
    }
    s_scope_t scope = { root, seen };
    s_fw_forget (fw, s_keep_seen, &scope, emit);
    zhashx_destroy (&seen);
}

//  Roots that have gone (their folder deleted or moved away) are looked
//  for again at each poll: one that is back is watched and scanned.
static void
s_fw_retry_roots (s_fw_t *fw)
{
    for (size_t i = 0; i < fw->nroots; i++) {
        s_root_t *root = &fw->roots [i];
        struct stat st;
        if (!root->present && lstat (root->dir? root->path: root->parent, &st) == 0
        &&  S_ISDIR (st.st_mode))
            s_fw_root_scan (fw, root, true);
    }
}

//  Scans every root whose watch went away.
static void
s_fw_rescan_lost (s_fw_t *fw)
{
    for (size_t i = 0; i < fw->nroots; i++)
        if (!fw->roots [i].present)
            s_fw_root_scan (fw, &fw->roots [i], true);
}

//  --------------------------------------------------------------------------
//  inotify events

//  A folder entered the watched tree (made, or moved in from outside):
//  with `recursive`, it is watched and its entries are reported as made.
static void
s_fw_dir_arrived (s_fw_t *fw, const char *path, bool recursive, bool emit)
{
    if (recursive && s_fw_watch (fw, path, true, true, NULL) >= 0)
        s_fw_scan_dir (fw, path, 1, true, NULL, emit);
}

//  A path left the watched tree (deleted, or moved out): it and what was
//  below it are reported deleted, and folders below it are not watched.
static void
s_fw_gone (s_fw_t *fw, const char *path)
{
    s_fw_unwatch_under (fw, path);
    s_fw_forget (fw, s_keep_not_under, path, true);
    s_fw_rescan_lost (fw);
}

//  A rename inside the watched trees: from -> to (under watch w).
static void
s_fw_moved (s_fw_t *fw, const char *from, const char *to, bool dir, const s_wdir_t *w)
{
    bool recursive = w->recursive;
    if (dir)
        s_fw_unwatch_under (fw, from);
    s_fw_forget (fw, s_keep_not_under, from, false);
    struct stat st;
    if (lstat (to, &st) == 0) {
        s_fw_found (fw, to, &st, NULL, false);
        if (dir)
            s_fw_dir_arrived (fw, to, recursive, false);
    }
    s_fw_event (fw, S_MOVED, to, dir, from, false);
    if (dir)
        s_fw_rescan_lost (fw);
}

//  Takes the first half of a rename with this cookie, if held.
static s_move_t *
s_fw_take_move (s_fw_t *fw, uint32_t cookie)
{
    for (s_move_t **link = &fw->moves; *link; link = &(*link)->next)
        if ((*link)->cookie == cookie) {
            s_move_t *m = *link;
            *link = m->next;
            return m;
        }
    return NULL;
}

//  Renames whose second half did not come by the poll after the first
//  moved a path out of the watched trees: it is gone.
static void
s_fw_expire_moves (s_fw_t *fw)
{
    s_move_t **link = &fw->moves;
    while (*link) {
        s_move_t *m = *link;
        if (m->tick < fw->ticks) {
            *link = m->next;
            s_fw_gone (fw, m->path);
            free (m->path);
            free (m);
        }
        else
            link = &m->next;
    }
}

//  The kernel's queue overflowed: events were lost. Says so, then scans
//  every root against the snapshot so that what changed is still told.
static void
s_fw_overflow (s_fw_t *fw)
{
    tr_log (TR_LOG_WARN, "file_watch '%s': the inotify queue overflowed "
            "(fs.inotify.max_queued_events); scanning the watched paths again", fw->src.name);
    tr_actor_info_add (fw->src.self, "watch.overflows", 1);
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 3);
    s_pk_kstr (&b.pk, "watch", fw->src.name);
    s_pk_kstr (&b.pk, "event", "overflow");
    s_pk_kint (&b.pk, "time", s_wall_ms ());
    s_source_emit (&fw->src, S_OVERFLOW, (const uint8_t *) b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy (&b.sb);
    for (size_t i = 0; i < fw->nroots; i++)
        s_fw_root_scan (fw, &fw->roots [i], true);
}

//  Whether an entry `name` of watched folder w is one we report.
static bool
s_wdir_wants (const s_wdir_t *w, const char *name)
{
    if (w->whole)
        return true;
    for (size_t i = 0; i < w->nnames; i++)
        if (strcmp (w->names [i], name) == 0)
            return true;
    return false;
}

//  The watch itself went away (its folder deleted or moved, the file
//  system unmounted, or we removed it).
static void
s_fw_watch_ended (s_fw_t *fw, s_wdir_t *w, bool moved)
{
    int wd = w->wd;
    bool root = false;
    for (size_t r = 0; r < fw->nroots; r++)
        root |= fw->roots [r].wd == wd && fw->roots [r].present;
    if (!moved) {
        //  The kernel has let the watch go: so do we.
        s_wdir_free ((s_wdir_t *) tr__u64map_take (&fw->watches, (uint64_t) wd));
        tr_actor_info_set (fw->src.self, "watch.watches", (int64_t) fw->watches.count);
    }
    if (!root)
        return;                         //  a subfolder: its parent's events tell
    if (moved) {
        char *path = strdup (w->path);
        if (!path)
            return;
        s_fw_unwatch_under (fw, path);  //  its watches would follow it elsewhere
        free (path);
    }
    for (size_t r = 0; r < fw->nroots; r++)
        if (fw->roots [r].wd == wd)
            fw->roots [r].present = false;
    s_fw_rescan_lost (fw);
}

static void
s_fw_on_event (s_fw_t *fw, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        s_fw_overflow (fw);
        return;
    }
    s_wdir_t *w = (s_wdir_t *) tr__u64map_get (&fw->watches, (uint64_t) ev->wd);
    if (!w)
        return;                         //  a watch already let go
    if (ev->mask & (IN_IGNORED | IN_UNMOUNT)) {
        if (ev->mask & IN_IGNORED)
            s_fw_watch_ended (fw, w, false);
        return;
    }
    if (ev->mask & IN_MOVE_SELF) {
        s_fw_watch_ended (fw, w, true);
        return;
    }
    if (ev->len == 0 || !s_wdir_wants (w, ev->name))
        return;                         //  IN_DELETE_SELF: IN_IGNORED follows
    char *path = s_join (w->path, ev->name);
    if (!path)
        return;
    bool dir = (ev->mask & IN_ISDIR) != 0;
    struct stat st;
    if (ev->mask & IN_CREATE) {
        //  A path the snapshot has was found by a scan of its new folder.
        //  (One gone already is still told: its deletion follows.)
        if (!zhashx_lookup (fw->snap, path)) {
            if (lstat (path, &st) == 0)
                s_fw_found (fw, path, &st, NULL, false);
            s_fw_event (fw, S_CREATED, path, dir, NULL, false);
            if (dir)
                s_fw_dir_arrived (fw, path, w->recursive, true);
        }
    }
    else
    if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE)) {
        if (!dir)
            s_fw_event (fw, S_MODIFIED, path, false, NULL, false);
    }
    else
    if (ev->mask & IN_DELETE) {
        if (dir)
            s_fw_unwatch_under (fw, path);
        s_fw_forget (fw, s_keep_not_under, path, false);
        s_fw_event (fw, S_DELETED, path, dir, NULL, false);
        if (dir)
            s_fw_rescan_lost (fw);      //  a root below it, if any, is gone too
    }
    else
    if (ev->mask & IN_MOVED_FROM) {
        s_move_t *m = (s_move_t *) calloc (1, sizeof *m);
        if (m && (m->path = strdup (path))) {
            m->cookie = ev->cookie;
            m->dir = dir;
            m->tick = fw->ticks;
            m->next = fw->moves;
            fw->moves = m;
        }
        else
            free (m);
    }
    else
    if (ev->mask & IN_MOVED_TO) {
        s_move_t *m = s_fw_take_move (fw, ev->cookie);
        if (m) {
            s_fw_moved (fw, m->path, path, dir, w);
            free (m->path);
            free (m);
        }
        else
        if (lstat (path, &st) == 0) {
            //  Moved in from outside: new, or a file replaced by a rename
            //  (as editors save), which is a modification.
            bool known = zhashx_lookup (fw->snap, path) != NULL;
            s_fw_found (fw, path, &st, NULL, false);
            s_fw_event (fw, known && !dir? S_MODIFIED: S_CREATED, path, dir, NULL, false);
            if (dir)
                s_fw_dir_arrived (fw, path, w->recursive, true);
        }
    }
    free (path);
}

//  Reads what the kernel has queued, without waiting.
static void
s_fw_read (s_fw_t *fw)
{
    for (int reads = 0; reads < S_READS; reads++) {
        ssize_t n = read (fw->fd, fw->buf, S_BUF_SIZE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN)
                tr_log (TR_LOG_WARN, "file_watch '%s': reading inotify: %s", fw->src.name,
                        strerror (errno));
            return;
        }
        for (ssize_t at = 0; at + (ssize_t) sizeof (struct inotify_event) <= n; ) {
            const struct inotify_event *ev = (const struct inotify_event *) (fw->buf + at);
            s_fw_on_event (fw, ev);
            at += (ssize_t) (sizeof *ev + ev->len);
        }
    }
}

static void
s_fw_poll (s_fw_t *fw)
{
    fw->ticks++;
    s_fw_read (fw);
    s_fw_expire_moves (fw);
    s_fw_retry_roots (fw);
    s_fw_flush_due (fw, false);
    tr_actor_info_set (fw->src.self, "watch.pending", (int64_t) fw->pending);
    tr_actor_info_set (fw->src.self, "watch.known", (int64_t) zhashx_size (fw->snap));
}

//  --------------------------------------------------------------------------
//  The actor

static int
s_fw_start (s_fw_t *fw)
{
    fw->fd = inotify_init1 (IN_NONBLOCK | IN_CLOEXEC);
    if (fw->fd < 0) {
        snprintf (fw->start_error, sizeof fw->start_error, "cannot watch: inotify_init1: %s%s",
                  strerror (errno), errno == EMFILE? " (fs.inotify.max_user_instances)": "");
        return -1;
    }
    fw->fd_open = true;
    fw->buf = (uint8_t *) malloc (S_BUF_SIZE);
    fw->snap = zhashx_new ();
    fw->pend_index = zhashx_new ();
    if (!fw->buf || !fw->snap || !fw->pend_index) {
        snprintf (fw->start_error, sizeof fw->start_error, "out of memory");
        return -1;
    }
    zhashx_set_destructor (fw->snap, s_entry_destroy);
    fw->starting = true;
    for (size_t i = 0; i < fw->nroots && !fw->start_error [0]; i++) {
        s_root_t *root = &fw->roots [i];
        struct stat st;
        if (fw->create && stat (root->path, &st) != 0 && s_mkdirs (root->path) != 0) {
            snprintf (fw->start_error, sizeof fw->start_error, "cannot make folder '%s': %s",
                      root->path, strerror (errno));
            break;
        }
        s_fw_root_scan (fw, root, false);
        if (!root->present && !fw->start_error [0])
            snprintf (fw->start_error, sizeof fw->start_error, "path '%s' does not exist",
                      root->dir? root->path: root->parent);
    }
    fw->starting = false;
    return fw->start_error [0]? -1: 0;
}

static int
s_fw_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_fw_t *fw = (s_fw_t *) calloc (1, sizeof *fw);
    int rc = tr__cfg_open (&cfg, "file_watch", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !fw)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_fw_configure (fw, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_fw_free (fw);
        return -1;
    }
    tr__cfg_close (&cfg);
    fw->src.self = self;
    fw->src.node = tr_actor_node (self);
    fw->src.name = tr_actor_name (self);
    if (s_fw_start (fw) != 0) {
        s_refuse (self, "file_watch '%s': %s", tr_actor_name (self), fw->start_error);
        s_fw_free (fw);
        return -1;
    }
    rc = s_source_start (&fw->src, self, fw->poll_ms, &fw->timer);
    if (rc != TR_OK) {
        s_refuse (self, "file_watch '%s': cannot start its timer: %s", tr_actor_name (self),
                  tr_strerror (rc));
        s_fw_free (fw);
        return -1;
    }
    tr_actor_info_set (self, "watch.known", (int64_t) zhashx_size (fw->snap));
    *state_p = fw;
    return 0;
}

//  The answer to an ask: {watch, paths: [{path, dir, present}], watches,
//  known, pending, asks}.
static int
s_fw_status (s_fw_t *fw, const tr_msg_t *msg)
{
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 6);
    s_pk_kstr (&b.pk, "watch", fw->src.name);
    s_pk_str (&b.pk, "paths");
    msgpack_pack_array (&b.pk, (uint32_t) fw->nroots);
    for (size_t i = 0; i < fw->nroots; i++) {
        msgpack_pack_map (&b.pk, 3);
        s_pk_kstr (&b.pk, "path", fw->roots [i].path);
        s_pk_kbool (&b.pk, "dir", fw->roots [i].dir);
        s_pk_kbool (&b.pk, "present", fw->roots [i].present);
    }
    s_pk_kint (&b.pk, "watches", (int64_t) fw->watches.count);
    s_pk_kint (&b.pk, "known", (int64_t) zhashx_size (fw->snap));
    s_pk_kint (&b.pk, "pending", (int64_t) fw->pending);
    s_pk_kint (&b.pk, "asks", (int64_t) fw->src.inflight);
    int rc = tr_reply (msg, b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy (&b.sb);
    return rc;
}

//  Ticks read the queue; an ask gets the status (after reading, so that
//  it is current); a tell from anyone reads the queue at once.
static int
s_fw_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_fw_t *fw = (s_fw_t *) state;
    uint64_t id;
    if (s_source_take (&fw->src, msg))
        return 0;
    if (s_wtick_read (msg, &id) || tr_msg_kind (msg) == TR_KIND_TELL) {
        s_fw_poll (fw);
        return 0;
    }
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        s_fw_poll (fw);
        return s_fw_status (fw, msg);
    }
    return 0;
}

//  Events held by the debounce are published before the watch stops.
static void
s_fw_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self;
    (void) reason;
    s_fw_t *fw = (s_fw_t *) state;
    tr_timer_cancel (fw->src.node, fw->timer);
    s_fw_flush_due (fw, true);
    s_fw_free (fw);
}

const tr_actor_type_t tr__file_watch_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "file_watch",
    .summary = "publishes changes to files and folders (inotify) as events, and routes them",
    .behaviour = { s_fw_init, s_fw_handle, s_fw_terminate },
    .params = s_fw_params,
    .check = s_fw_check,
};

//  ==========================================================================
//  git_watch

enum { S_COMMIT, S_REWIND, S_BRANCH_CREATED, S_BRANCH_DELETED, S_SKIPPED, S_GIT_ERROR };

static const char *const s_git_kinds [] = {
    "commit", "rewind", "created", "deleted", "skipped", "error", NULL
};

//  One git process: its output, read as it comes, and its end.
typedef struct {
    tr__proc_t *proc;
    int out_fd;
    char *out;
    size_t len, cap;
    bool eof, too_big, timed_out;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool exited;
    tr__proc_exit_t exit;
    int64_t deadline_ns;
} s_run_t;

//  The steps of one look at the branch.
enum { S_IDLE, S_HEAD, S_BASE, S_DROPPED, S_COUNT, S_LOG };

typedef struct {
    s_source_t src;
    //  Settings
    char *repo;
    char *branch;
    char *ref;                          //  refs/heads/BRANCH^{commit}
    int64_t interval_ms, timeout_ms, max_commits;
    bool create;
    //  State
    char head [S_SHA_MAX];              //  last seen; "" for no branch
    char error [512];                   //  the error last published, or ""
    uint64_t timer, drain_timer;
    bool draining;
    bool again;                         //  poll again when this one ends
    //  The look in progress
    s_run_t *run;
    int step;
    char new_head [S_SHA_MAX];
    char base [S_SHA_MAX];              //  "" for none
    char range [2 * S_SHA_MAX + 4];
    int64_t dropped;
} s_gw_t;

static const tr_param_spec_t s_gw_params [] = {
    { "repo", TR_PARAM_STRING, true, "the repository's folder (its top, or a bare repository)" },
    { "branch", TR_PARAM_STRING, true, "the branch to watch" },
    { "interval", TR_PARAM_DURATION, false, "how often the branch is read (default 2s)" },
    { "timeout", TR_PARAM_DURATION, false, "longest one git command may take (default 30s)" },
    { "max_commits", TR_PARAM_INT, false, "most commits published at once, newest kept "
                                          "(default 100)" },
    { "create", TR_PARAM_BOOL, false, "git init the repository at start if its folder is "
                                      "missing or empty (default false)" },
    { "topic", TR_PARAM_STRING, false, "events go on TOPIC.KIND (default git)" },
    { "routes", TR_PARAM_LIST, false, "[{to, match|regex, field, events, ask, timeout}]" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

//  True if name is a branch name git would take (git check-ref-format
//  --branch, in short).
static bool
s_branch_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 200 || name [0] == '-' || name [0] == '/' || name [len - 1] == '/'
    ||  name [len - 1] == '.' || strstr (name, "..") || strstr (name, "@{") || strstr (name, "//")
    ||  strstr (name, "/.") || name [0] == '.' || strcmp (name, "@") == 0
    ||  (len >= 5 && strcmp (name + len - 5, ".lock") == 0))
        return false;
    for (const unsigned char *p = (const unsigned char *) name; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || strchr ("~^:?*[\\", *p))
            return false;
    return true;
}

//  Whether folder `path` is a repository's top or a bare repository.
static bool
s_is_repo (const char *path)
{
    char *git = s_join (path, ".git");
    char *head = s_join (path, "HEAD");
    char *objects = s_join (path, "objects");
    struct stat st;
    bool yes = git && head && objects
            && (lstat (git, &st) == 0
                || (stat (head, &st) == 0 && S_ISREG (st.st_mode)
                    && stat (objects, &st) == 0 && S_ISDIR (st.st_mode)));
    free (git);
    free (head);
    free (objects);
    return yes;
}

//  Whether a folder is empty (or missing).
static bool
s_is_empty (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return errno == ENOENT;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir (dir)))
        empty = strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0;
    closedir (dir);
    return empty;
}

static void
s_gw_free (s_gw_t *gw);

static int
s_gw_configure (s_gw_t *gw, tr__cfg_t *cfg)
{
    gw->src.type = "git_watch";
    gw->src.kinds = s_git_kinds;
    gw->interval_ms = 2000;
    gw->timeout_ms = 30000;
    gw->max_commits = 100;
    if (tr__cfg_duration (cfg, "interval", 10, 3600 * 1000, &gw->interval_ms)
    ||  tr__cfg_duration (cfg, "timeout", 10, 3600 * 1000, &gw->timeout_ms)
    ||  tr__cfg_int (cfg, "max_commits", 1, 100000, &gw->max_commits)
    ||  tr__cfg_bool (cfg, "create", &gw->create)
    ||  tr__cfg_str (cfg, "repo", &gw->repo)
    ||  tr__cfg_str (cfg, "branch", &gw->branch)
    ||  s_cfg_topic (&gw->src, cfg, "git"))
        return -1;
    if (!gw->repo)
        return tr__cfg_bad (cfg, "'repo' is required");
    if (!gw->branch)
        return tr__cfg_bad (cfg, "'branch' is required");
    if (!s_branch_ok (gw->branch))
        return tr__cfg_bad_at (cfg, "branch", "'branch' '%.100s' is not a valid branch name",
                               gw->branch);
    size_t size = strlen (gw->branch) + 32;
    if (!(gw->ref = (char *) malloc (size)))
        return tr__cfg_bad (cfg, "out of memory");
    snprintf (gw->ref, size, "refs/heads/%s^{commit}", gw->branch);
    struct stat st;
    if (stat (gw->repo, &st) != 0) {
        if (errno == ENOENT && gw->create)
            ;
        else
        if (errno == ENOENT)
            return tr__cfg_bad_at (cfg, "repo", "'repo' '%.200s' does not exist (create: true "
                                   "makes a repository there)", gw->repo);
        else
            return tr__cfg_bad_at (cfg, "repo", "'repo' '%.200s' cannot be read: %s", gw->repo,
                                   strerror (errno));
    }
    else
    if (!S_ISDIR (st.st_mode))
        return tr__cfg_bad_at (cfg, "repo", "'repo' '%.200s' is not a folder", gw->repo);
    else
    if (!s_is_repo (gw->repo) && !(gw->create && s_is_empty (gw->repo)))
        return tr__cfg_bad_at (cfg, "repo", "'repo' '%.200s' is not a git repository (it has "
                               "no .git, and is not a bare repository)", gw->repo);
    return s_routes_parse (&gw->src, cfg, "message", false);
}

static int
s_gw_configure_any (void *gw, tr__cfg_t *cfg)
{
    return s_gw_configure ((s_gw_t *) gw, cfg);
}

static void
s_gw_free_any (void *gw)
{
    s_gw_free ((s_gw_t *) gw);
}

static int
s_gw_check (const tr_params_t *params, tr_param_error_t *error)
{
    return tr__cfg_check ("git_watch", params, sizeof (s_gw_t), s_gw_configure_any,
                          s_gw_free_any, error);
}

//  --------------------------------------------------------------------------
//  git processes

static void
s_run_on_exit (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg)
{
    (void) proc;
    s_run_t *run = (s_run_t *) arg;
    pthread_mutex_lock (&run->lock);
    run->exited = true;
    run->exit = *exit;
    pthread_cond_broadcast (&run->cond);
    pthread_mutex_unlock (&run->lock);
}

static bool
s_run_exited (s_run_t *run)
{
    pthread_mutex_lock (&run->lock);
    bool exited = run->exited;
    pthread_mutex_unlock (&run->lock);
    return exited;
}

//  Stops the process if it still runs, and frees everything.
static void
s_run_free (s_run_t **run_p)
{
    s_run_t *run = *run_p;
    if (!run)
        return;
    if (run->proc) {
        if (!s_run_exited (run))
            tr__proc_stop (run->proc, 200);
        tr__proc_destroy (&run->proc);
    }
    if (run->out_fd >= 0)
        close (run->out_fd);
    pthread_mutex_destroy (&run->lock);
    pthread_cond_destroy (&run->cond);
    free (run->out);
    free (run);
    *run_p = NULL;
}

//  Starts `git -C REPO args...` (args NULL-ended) with its output on a
//  pipe. Returns the run, or NULL with *rc (TR_ENOTFOUND when git is not
//  installed).
static s_run_t *
s_run_start (s_gw_t *gw, const char *const *args, int *rc)
{
    static const char *const env [] = {
        "LC_ALL=C", "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_PAGER=cat", NULL
    };
    const char *argv [16] = { "git", "-C", gw->repo };
    size_t argc = 3;
    for (size_t i = 0; args [i] && argc < 15; i++)
        argv [argc++] = args [i];
    argv [argc] = NULL;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (!run) {
        *rc = TR_ENOMEM;
        return NULL;
    }
    run->out_fd = -1;
    pthread_mutex_init (&run->lock, NULL);
    pthread_cond_init (&run->cond, NULL);
    run->deadline_ns = tr__deadline_after_ms (gw->timeout_ms);
    char name [300];
    snprintf (name, sizeof name, "git_watch '%s' (git %s)", gw->src.name, args [0]);
    tr__proc_spec_t spec = { .name = name, .argv = argv, .env = env, .stdout_fd = &run->out_fd };
    *rc = tr__proc_start (gw->src.node, &spec, s_run_on_exit, run, &run->proc);
    if (*rc != TR_OK)
        s_run_free (&run);
    return run;
}

//  Reads what the process has written, without waiting. Returns true
//  once it is over: output at its end and the process gone (or past its
//  deadline, or its output past the limit: then it is stopped).
static bool
s_run_pump (s_run_t *run)
{
    while (!run->eof) {
        if (run->cap - run->len < 4096) {
            size_t cap = run->cap? run->cap * 2: 8192;
            char *more = cap <= S_GIT_OUTPUT + 8192? (char *) realloc (run->out, cap): NULL;
            if (!more) {
                run->too_big = true;
                break;
            }
            run->out = more;
            run->cap = cap;
        }
        ssize_t n = read (run->out_fd, run->out + run->len, run->cap - run->len - 1);
        if (n > 0)
            run->len += (size_t) n;
        else
        if (n == 0)
            run->eof = true;
        else
        if (errno != EINTR)
            break;                      //  EAGAIN: nothing more for now
    }
    if (run->out)
        run->out [run->len] = '\0';
    if (run->eof && s_run_exited (run))
        return true;
    if (run->too_big || tr__now_ns () >= run->deadline_ns) {
        run->timed_out = !run->too_big;
        tr__proc_stop (run->proc, 200);
        return true;
    }
    return false;
}

//  Waits for the run to be over (git_watch's start only).
static void
s_run_wait (s_run_t *run)
{
    while (!s_run_pump (run)) {
        struct pollfd pfd = { .fd = run->out_fd, .events = POLLIN };
        poll (&pfd, 1, run->eof? 5: 50);
    }
}

//  The exit status, or -1 for a process that did not exit by itself
//  with its output read (signal, deadline, output too big).
static int
s_run_status (s_run_t *run)
{
    if (run->too_big || run->timed_out || !run->eof)
        return -1;
    pthread_mutex_lock (&run->lock);
    int status = run->exited && run->exit.exited? run->exit.status: -1;
    pthread_mutex_unlock (&run->lock);
    return status;
}

//  Why a run failed, in words.
static void
s_run_why (s_run_t *run, char *buf, size_t size)
{
    if (run->too_big)
        snprintf (buf, size, "its output passed %u bytes", S_GIT_OUTPUT);
    else
    if (run->timed_out)
        snprintf (buf, size, "it took longer than its timeout");
    else {
        pthread_mutex_lock (&run->lock);
        snprintf (buf, size, "it %s (its message is in the log)", run->exit.reason);
        pthread_mutex_unlock (&run->lock);
    }
}

//  The first line of the output, trimmed (a sha, a count).
static const char *
s_run_line (s_run_t *run)
{
    if (!run->out)
        return "";
    run->out [strcspn (run->out, "\r\n")] = '\0';
    return run->out;
}

//  --------------------------------------------------------------------------
//  Events

//  Starts an event map with {watch, event, repo, branch} and `more`
//  fields to follow.
static void
s_gw_body (s_gw_t *gw, s_body_t *b, int kind, uint32_t more)
{
    s_body_init (b);
    msgpack_pack_map (&b->pk, 4 + more);
    s_pk_kstr (&b->pk, "watch", gw->src.name);
    s_pk_kstr (&b->pk, "event", s_git_kinds [kind]);
    s_pk_kstr (&b->pk, "repo", gw->repo);
    s_pk_kstr (&b->pk, "branch", gw->branch);
}

static void
s_gw_emit (s_gw_t *gw, int kind, s_body_t *b)
{
    s_source_emit (&gw->src, kind, (const uint8_t *) b->sb.data, b->sb.size);
    msgpack_sbuffer_destroy (&b->sb);
}

//  An error. Counted each time; logged when it says something new; and
//  published when the watch goes from working to failing (not at every
//  interval while it keeps failing: the status has the latest).
static void __attribute__ ((format (printf, 2, 3)))
s_gw_error (s_gw_t *gw, const char *format, ...)
{
    char text [512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    tr_actor_info_add (gw->src.self, "git.errors", 1);
    if (strcmp (text, gw->error) == 0)
        return;
    bool failing = gw->error [0] != '\0';
    snprintf (gw->error, sizeof gw->error, "%s", text);
    tr_log (TR_LOG_WARN, "git_watch '%s': %s", gw->src.name, text);
    if (failing)
        return;
    s_body_t b;
    s_gw_body (gw, &b, S_GIT_ERROR, 1);
    s_pk_kstr (&b.pk, "error", text);
    s_gw_emit (gw, S_GIT_ERROR, &b);
}

//  Publishes one event per commit in git log's output: records of seven
//  NUL-ended fields (sha, parents, author, email, time, subject, message).
static size_t
s_gw_commits (s_gw_t *gw, char *out, size_t len)
{
    size_t count = 0;
    char *p = out, *end = out + len;
    while (p < end) {
        char *f [7];
        int n = 0;
        while (n < 7 && p < end) {
            f [n++] = p;
            char *nul = (char *) memchr (p, '\0', (size_t) (end - p));
            p = nul? nul + 1: end;
        }
        if (n < 7)
            break;                      //  a record cut short: not ours to guess
        size_t mlen = strlen (f [6]);
        while (mlen > 0 && (f [6] [mlen - 1] == '\n' || f [6] [mlen - 1] == '\r'))
            f [6] [--mlen] = '\0';
        s_body_t b;
        s_gw_body (gw, &b, S_COMMIT, 7);
        s_pk_kstr (&b.pk, "sha", f [0]);
        s_pk_str (&b.pk, "parents");
        uint32_t parents = 0;
        for (char *s = f [1]; *s; s += strcspn (s, " "), s += *s == ' ')
            parents++;
        msgpack_pack_array (&b.pk, parents);
        for (char *s = f [1]; *s; ) {
            size_t plen = strcspn (s, " ");
            msgpack_pack_str_with_body (&b.pk, s, plen);
            s += plen + (s [plen] == ' ');
        }
        s_pk_kstr (&b.pk, "author", f [2]);
        s_pk_kstr (&b.pk, "email", f [3]);
        s_pk_kint (&b.pk, "time", strtoll (f [4], NULL, 10));
        s_pk_kstr (&b.pk, "subject", f [5]);
        s_pk_kstr (&b.pk, "message", f [6]);
        s_gw_emit (gw, S_COMMIT, &b);
        count++;
    }
    return count;
}

//  --------------------------------------------------------------------------
//  A look at the branch: a few git commands, one after another, each
//  started when the one before has ended (read on drain ticks).
//
//    HEAD     git rev-parse --verify --quiet refs/heads/B^{commit}
//             same head: done; no branch now: deleted; new branch:
//             created, then COUNT over all of it
//    BASE     git merge-base OLD NEW: OLD itself: a fast-forward,
//             COUNT over OLD..NEW; another commit: a rewind, DROPPED;
//             none (unrelated, or OLD no longer known): a rewind with
//             base null, COUNT over NEW
//    DROPPED  git rev-list --count BASE..OLD: the commits dropped;
//             publishes the rewind; COUNT over BASE..NEW
//    COUNT    git rev-list --count RANGE: more than max_commits is
//             published as skipped (the oldest ones), then LOG
//    LOG      git log --topo-order --reverse -z -n MAX RANGE: one event
//             per commit, oldest first; the head is NEW from then on

static void
s_gw_next (s_gw_t *gw);

static void
s_gw_drain (s_gw_t *gw, bool on)
{
    if (on == gw->draining)
        return;
    if (on) {
        uint8_t tick [TR__TICK_SIZE];
        s_wtick_pack (tick, S_TICK_DRAIN);
        gw->draining = tr_timer_every (gw->src.node, gw->src.name, S_DRAIN_MS, tick,
                                       sizeof tick, &gw->drain_timer) == TR_OK;
    }
    else {
        tr_timer_cancel (gw->src.node, gw->drain_timer);
        gw->draining = false;
    }
}

//  Starts the git command of gw->step. False if it could not start
//  (published as an error; the look is over).
static bool
s_gw_launch (s_gw_t *gw)
{
    char max [32];
    snprintf (max, sizeof max, "-n%lld", (long long) gw->max_commits);
    const char *const head [] = { "rev-parse", "--verify", "--quiet", gw->ref, NULL };
    const char *const base [] = { "merge-base", gw->head, gw->new_head, NULL };
    char dropped [2 * S_SHA_MAX + 4];
    snprintf (dropped, sizeof dropped, "%s..%s", gw->base, gw->head);
    const char *const drop [] = { "rev-list", "--count", dropped, NULL };
    const char *const count [] = { "rev-list", "--count", gw->range, NULL };
    const char *const log [] = { "log", "--topo-order", "--reverse", "-z", max,
                                 "--format=%H%x00%P%x00%an%x00%ae%x00%at%x00%s%x00%B",
                                 gw->range, "--", NULL };
    const char *const *args = gw->step == S_HEAD? head: gw->step == S_BASE? base
                            : gw->step == S_DROPPED? drop: gw->step == S_COUNT? count: log;
    int rc;
    gw->run = s_run_start (gw, args, &rc);
    if (!gw->run) {
        s_gw_error (gw, "cannot run git: %s", rc == TR_ENOTFOUND? "git is not installed "
                    "(not found on PATH)": tr_strerror (rc));
        return false;
    }
    tr_actor_info_add (gw->src.self, "git.runs", 1);
    return true;
}

//  Ends the look; starts another if one was asked for meanwhile.
static void
s_gw_done (s_gw_t *gw)
{
    s_run_free (&gw->run);
    gw->step = S_IDLE;
    s_gw_drain (gw, false);
    if (gw->again) {
        gw->again = false;
        s_gw_next (gw);
    }
}

//  Starts a look at the branch (from S_IDLE).
static void
s_gw_next (s_gw_t *gw)
{
    struct stat st;
    if (stat (gw->repo, &st) != 0) {
        s_gw_error (gw, "repo '%s' %s", gw->repo, errno == ENOENT?
                    "does not exist (any more)": strerror (errno));
        return;
    }
    if (!S_ISDIR (st.st_mode)) {
        s_gw_error (gw, "repo '%s' is not a folder (any more)", gw->repo);
        return;
    }
    gw->step = S_HEAD;
    if (s_gw_launch (gw))
        s_gw_drain (gw, true);
    else
        gw->step = S_IDLE;
}

//  Goes on to `step`, or ends the look if its command cannot start.
static void
s_gw_step (s_gw_t *gw, int step)
{
    s_run_free (&gw->run);
    gw->step = step;
    if (!s_gw_launch (gw))
        s_gw_done (gw);
}

//  The branch now points at new_head: publishes from `range`.
static void
s_gw_count (s_gw_t *gw, const char *from, const char *to)
{
    if (from && *from)
        snprintf (gw->range, sizeof gw->range, "%s..%s", from, to);
    else
        snprintf (gw->range, sizeof gw->range, "%s", to);
    s_gw_step (gw, S_COUNT);
}

static void
s_gw_rewind (s_gw_t *gw, bool dropped_known)
{
    tr_actor_info_add (gw->src.self, "git.rewinds", 1);
    tr_log (TR_LOG_INFO, "git_watch '%s': %s moved from %.12s to %.12s, which does not "
            "descend from it", gw->src.name, gw->branch, gw->head, gw->new_head);
    s_body_t b;
    s_gw_body (gw, &b, S_REWIND, 4);
    s_pk_kstr (&b.pk, "from", gw->head);
    s_pk_kstr (&b.pk, "to", gw->new_head);
    s_pk_kstr (&b.pk, "base", gw->base [0]? gw->base: NULL);
    s_pk_str (&b.pk, "dropped");
    if (dropped_known)
        msgpack_pack_int64 (&b.pk, gw->dropped);
    else
        msgpack_pack_nil (&b.pk);
    s_gw_emit (gw, S_REWIND, &b);
}

//  Copies a sha from git's output; false if it is not one.
static bool
s_sha_copy (char *dst, const char *text)
{
    size_t len = strlen (text);
    if (len < 40 || len >= S_SHA_MAX || strspn (text, "0123456789abcdef") != len)
        return false;
    memcpy (dst, text, len + 1);
    return true;
}

//  The step's command has ended: what it says, and the next step.
static void
s_gw_step_ended (s_gw_t *gw)
{
    s_run_t *run = gw->run;
    int status = s_run_status (run);
    char why [160];
    s_run_why (run, why, sizeof why);
    switch (gw->step) {
        case S_HEAD:
            if (status == 1) {
                gw->new_head [0] = '\0';        //  no such branch (now)
            }
            else
            if (status != 0 || !s_sha_copy (gw->new_head, s_run_line (run))) {
                s_gw_error (gw, "cannot read branch '%s' of '%s': git rev-parse failed: %s",
                            gw->branch, gw->repo, why);
                s_gw_done (gw);
                return;
            }
            if (gw->error [0]) {
                tr_log (TR_LOG_INFO, "git_watch '%s': reading '%s' again", gw->src.name,
                        gw->repo);
                gw->error [0] = '\0';
            }
            if (strcmp (gw->new_head, gw->head) == 0)
                s_gw_done (gw);
            else
            if (!gw->new_head [0]) {
                s_body_t b;
                s_gw_body (gw, &b, S_BRANCH_DELETED, 1);
                s_pk_kstr (&b.pk, "from", gw->head);
                gw->head [0] = '\0';
                s_gw_emit (gw, S_BRANCH_DELETED, &b);
                s_gw_done (gw);
            }
            else
            if (!gw->head [0]) {
                s_body_t b;
                s_gw_body (gw, &b, S_BRANCH_CREATED, 1);
                s_pk_kstr (&b.pk, "head", gw->new_head);
                s_gw_emit (gw, S_BRANCH_CREATED, &b);
                s_gw_count (gw, NULL, gw->new_head);
            }
            else
                s_gw_step (gw, S_BASE);
            return;
        case S_BASE:
            if (status == 0 && s_sha_copy (gw->base, s_run_line (run))) {
                if (strcmp (gw->base, gw->head) == 0)
                    s_gw_count (gw, gw->head, gw->new_head);
                else
                    s_gw_step (gw, S_DROPPED);
            }
            else {
                //  No common base: unrelated histories, or the old head
                //  is gone from the repository.
                gw->base [0] = '\0';
                s_gw_rewind (gw, false);
                s_gw_count (gw, NULL, gw->new_head);
            }
            return;
        case S_DROPPED:
            gw->dropped = strtoll (s_run_line (run), NULL, 10);
            s_gw_rewind (gw, status == 0);
            s_gw_count (gw, gw->base, gw->new_head);
            return;
        case S_COUNT: {
            long long count = status == 0? strtoll (s_run_line (run), NULL, 10): -1;
            if (count < 0) {
                s_gw_error (gw, "cannot count the commits of %s: git rev-list failed: %s",
                            gw->range, why);
                s_gw_done (gw);
            }
            else
            if (count == 0) {
                snprintf (gw->head, sizeof gw->head, "%s", gw->new_head);
                s_gw_done (gw);
            }
            else {
                if (count > gw->max_commits) {
                    s_body_t b;
                    s_gw_body (gw, &b, S_SKIPPED, 2);
                    s_pk_kint (&b.pk, "skipped", count - gw->max_commits);
                    s_pk_kstr (&b.pk, "to", gw->new_head);
                    s_gw_emit (gw, S_SKIPPED, &b);
                }
                s_gw_step (gw, S_LOG);
            }
            return;
        }
        default:
            if (status != 0) {
                s_gw_error (gw, "cannot read the commits of %s: git log failed: %s", gw->range,
                            why);
                s_gw_done (gw);
                return;
            }
            tr_actor_info_add (gw->src.self, "git.commits",
                               (int64_t) s_gw_commits (gw, run->out? run->out: "", run->len));
            snprintf (gw->head, sizeof gw->head, "%s", gw->new_head);
            s_gw_done (gw);
            return;
    }
}

//  --------------------------------------------------------------------------
//  The actor

//  Runs one git command at start and waits for it. Returns its status,
//  or -1 with *why, or -2 with *why when git could not be started.
static int
s_gw_run_now (s_gw_t *gw, const char *const *args, char *out, size_t out_size,
              char *why, size_t why_size)
{
    int rc;
    s_run_t *run = s_run_start (gw, args, &rc);
    if (!run) {
        snprintf (why, why_size, "cannot run git: %s", rc == TR_ENOTFOUND?
                  "git is not installed (not found on PATH)": tr_strerror (rc));
        return -2;
    }
    s_run_wait (run);
    int status = s_run_status (run);
    if (out)
        snprintf (out, out_size, "%s", s_run_line (run));
    s_run_why (run, why, why_size);
    s_run_free (&run);
    return status;
}

//  At start: makes the repository (create), reads the branch's head.
static int
s_gw_start (s_gw_t *gw)
{
    char why [256], out [S_SHA_MAX + 8];
    struct stat st;
    if (gw->create && (stat (gw->repo, &st) != 0 || !s_is_repo (gw->repo))) {
        if (s_mkdirs (gw->repo) != 0)
            return s_refuse (gw->src.self, "git_watch '%s': cannot make folder '%s': %s",
                             gw->src.name, gw->repo, strerror (errno));
        char initial [260];
        snprintf (initial, sizeof initial, "--initial-branch=%s", gw->branch);
        const char *const init [] = { "init", "--quiet", initial, NULL };
        int status = s_gw_run_now (gw, init, NULL, 0, why, sizeof why);
        if (status == -2)
            return s_refuse (gw->src.self, "git_watch '%s': %s", gw->src.name, why);
        if (status != 0)
            return s_refuse (gw->src.self, "git_watch '%s': git init of '%s' failed: %s",
                             gw->src.name, gw->repo, why);
        tr_log (TR_LOG_INFO, "git_watch '%s': made repository '%s'", gw->src.name, gw->repo);
    }
    const char *const head [] = { "rev-parse", "--verify", "--quiet", gw->ref, NULL };
    int status = s_gw_run_now (gw, head, out, sizeof out, why, sizeof why);
    if (status == -2)
        return s_refuse (gw->src.self, "git_watch '%s': %s", gw->src.name, why);
    if (status == 1)
        gw->head [0] = '\0';
    else
    if (status != 0 || !s_sha_copy (gw->head, out))
        return s_refuse (gw->src.self, "git_watch '%s': '%s' is not a git repository that git "
                         "can read: git rev-parse failed: %s", gw->src.name, gw->repo, why);
    tr_log (TR_LOG_INFO, "git_watch '%s': %s of '%s' is at %s", gw->src.name, gw->branch,
            gw->repo, gw->head [0]? gw->head: "nothing yet (no such branch)");
    return 0;
}

static void
s_gw_free (s_gw_t *gw)
{
    if (!gw)
        return;
    s_run_free (&gw->run);
    s_source_free (&gw->src);
    free (gw->repo);
    free (gw->branch);
    free (gw->ref);
    free (gw);
}

static int
s_gw_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_gw_t *gw = (s_gw_t *) calloc (1, sizeof *gw);
    int rc = tr__cfg_open (&cfg, "git_watch", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !gw)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_gw_configure (gw, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_gw_free (gw);
        return -1;
    }
    tr__cfg_close (&cfg);
    gw->src.self = self;
    gw->src.node = tr_actor_node (self);
    gw->src.name = tr_actor_name (self);
    if (s_gw_start (gw) != 0) {
        s_gw_free (gw);
        return -1;
    }
    rc = s_source_start (&gw->src, self, gw->interval_ms, &gw->timer);
    if (rc != TR_OK) {
        s_refuse (self, "git_watch '%s': cannot start its timer: %s", tr_actor_name (self),
                  tr_strerror (rc));
        s_gw_free (gw);
        return -1;
    }
    *state_p = gw;
    return 0;
}

//  The answer to an ask: {watch, repo, branch, head, error, busy}.
static int
s_gw_status (s_gw_t *gw, const tr_msg_t *msg)
{
    s_body_t b;
    s_body_init (&b);
    msgpack_pack_map (&b.pk, 7);
    s_pk_kstr (&b.pk, "watch", gw->src.name);
    s_pk_kstr (&b.pk, "repo", gw->repo);
    s_pk_kstr (&b.pk, "branch", gw->branch);
    s_pk_kstr (&b.pk, "head", gw->head [0]? gw->head: NULL);
    s_pk_kstr (&b.pk, "error", gw->error [0]? gw->error: NULL);
    s_pk_kbool (&b.pk, "busy", gw->step != S_IDLE);
    s_pk_kint (&b.pk, "asks", (int64_t) gw->src.inflight);
    int rc = tr_reply (msg, b.sb.data, b.sb.size);
    msgpack_sbuffer_destroy (&b.sb);
    return rc;
}

//  The interval's tick (or a tell from anyone) starts a look at the
//  branch, unless one is under way (then another follows it); drain
//  ticks read the running command; an ask gets the status.
static int
s_gw_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    s_gw_t *gw = (s_gw_t *) state;
    uint64_t id = 0;
    if (s_source_take (&gw->src, msg))
        return 0;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return s_gw_status (gw, msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL)
        return 0;
    if (s_wtick_read (msg, &id) && id == S_TICK_DRAIN) {
        if (gw->run && s_run_pump (gw->run))
            s_gw_step_ended (gw);
        return 0;
    }
    if (gw->step != S_IDLE)
        gw->again = true;
    else
        s_gw_next (gw);
    return 0;
}

static void
s_gw_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self;
    (void) reason;
    s_gw_t *gw = (s_gw_t *) state;
    tr_timer_cancel (gw->src.node, gw->timer);
    s_gw_drain (gw, false);
    s_gw_free (gw);
}

const tr_actor_type_t tr__git_watch_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "git_watch",
    .summary = "publishes new commits of a git branch (and rewinds) as events, and routes them",
    .behaviour = { s_gw_init, s_gw_handle, s_gw_terminate },
    .params = s_gw_params,
    .check = s_gw_check,
};
