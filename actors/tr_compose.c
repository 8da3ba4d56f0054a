/*  tr_compose.c - what the composition actors share (see tr_compose.h).
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_mp.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_log.h"
#include "troupe/tr_timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Parameters


int
tr__cfg_open (tr__cfg_t *cfg, const char *type, const char *actor,
              const tr_params_t *params)
{
    memset (cfg, 0, sizeof *cfg);
    cfg->type = type;
    cfg->actor = actor;
    msgpack_unpacked_init (&cfg->unpacked);
    if (!params || !params->data || params->size == 0)
        return 0;
    if (msgpack_unpack_next (&cfg->unpacked, (const char *) params->data, params->size, NULL)
        != MSGPACK_UNPACK_SUCCESS
    ||  cfg->unpacked.data.type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "parameters are not one msgpack map");
    cfg->root = &cfg->unpacked.data;
    return 0;
}

void
tr__cfg_close (tr__cfg_t *cfg)
{
    msgpack_unpacked_destroy (&cfg->unpacked);
    cfg->root = NULL;
}

int
tr__cfg_bad (tr__cfg_t *cfg, const char *format, ...)
{
    char what [TR__CFG_ERROR - 300];
    va_list args;
    va_start (args, format);
    vsnprintf (what, sizeof what, format, args);
    va_end (args);
    if (cfg->actor)
        snprintf (cfg->error, sizeof cfg->error, "%s '%.255s': %s", cfg->type, cfg->actor, what);
    else
        snprintf (cfg->error, sizeof cfg->error, "%s", what);
    if (!cfg->path [0])
        snprintf (cfg->path, sizeof cfg->path, "%s", cfg->at);
    return -1;
}

int
tr__cfg_bad_at (tr__cfg_t *cfg, const char *key, const char *format, ...)
{
    char what [TR__CFG_ERROR - 300];
    va_list args;
    va_start (args, format);
    vsnprintf (what, sizeof what, format, args);
    va_end (args);
    tr__cfg_blame (cfg, key);
    return tr__cfg_bad (cfg, "%s", what);
}

void
tr__cfg_enter (tr__cfg_t *cfg, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (cfg->at, sizeof cfg->at, format, args);
    va_end (args);
}

void
tr__cfg_enter_sub (tr__cfg_t *cfg, const char *key)
{
    //  A path cut short only blames a shallower value: still a position.
    size_t len = strlen (cfg->at);
    if (len + 1 + strlen (key) < sizeof cfg->at) {
        if (len)
            cfg->at [len++] = '.';
        memcpy (cfg->at + len, key, strlen (key) + 1);
    }
}

void
tr__cfg_blame (tr__cfg_t *cfg, const char *key)
{
    snprintf (cfg->path, sizeof cfg->path, "%s%s%s", cfg->at, cfg->at [0]? ".": "", key);
}

int
tr__cfg_check (const char *type, const tr_params_t *params, size_t state_size,
               int (*configure) (void *state, tr__cfg_t *cfg),
               void (*release) (void *state), tr_param_error_t *error)
{
    tr__cfg_t cfg;
    void *state = calloc (1, state_size);
    int rc = tr__cfg_open (&cfg, type, NULL, params);
    if (rc == 0 && !state)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = configure (state, &cfg);
    if (rc) {
        snprintf (error->path, sizeof error->path, "%s", cfg.path);
        snprintf (error->message, sizeof error->message, "%.*s",
                  (int) sizeof error->message - 1, cfg.error);
    }
    tr__cfg_close (&cfg);
    if (state)
        release (state);
    return rc? -1: 0;
}

const msgpack_object *
tr__cfg_get (tr__cfg_t *cfg, const msgpack_object *map, const char *key)
{
    return tr__map_get (map? map: cfg->root, key);
}

//  The kind of a value, in words.
static const char *
s_kind_words (const msgpack_object *o)
{
    switch (o->type) {
        case MSGPACK_OBJECT_NIL: return "null";
        case MSGPACK_OBJECT_BOOLEAN: return "a boolean";
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: return "a number";
        case MSGPACK_OBJECT_STR: return "a string";
        case MSGPACK_OBJECT_ARRAY: return "a list";
        case MSGPACK_OBJECT_MAP: return "a mapping";
        default: return "binary data";
    }
}

int
tr__cfg_int (tr__cfg_t *cfg, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, NULL, key);
    if (!o)
        return 0;
    int64_t v;
    if (!tr__integer (o, &v))
        return tr__cfg_bad_at (cfg, key, "'%s' must be an integer, not %s", key, s_kind_words (o));
    if (v < min || v > max)
        return tr__cfg_bad_at (cfg, key, "'%s' must be from %lld to %lld, not %lld", key,
                            (long long) min, (long long) max, (long long) v);
    *out = v;
    return 0;
}

int
tr__cfg_number (tr__cfg_t *cfg, const char *key, double min, double max, double *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, NULL, key);
    if (!o)
        return 0;
    double v;
    if (!tr__number (o, &v))
        return tr__cfg_bad_at (cfg, key, "'%s' must be a number, not %s", key, s_kind_words (o));
    if (!(v >= min && v <= max))
        return tr__cfg_bad_at (cfg, key, "'%s' must be from %g to %g, not %g", key, min, max, v);
    *out = v;
    return 0;
}

int
tr__cfg_bool (tr__cfg_t *cfg, const char *key, bool *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, NULL, key);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return tr__cfg_bad_at (cfg, key, "'%s' must be true or false, not %s", key, s_kind_words (o));
    *out = o->via.boolean;
    return 0;
}

int
tr__cfg_duration (tr__cfg_t *cfg, const char *key, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, NULL, key);
    if (!o)
        return 0;
    int64_t ms;
    if (o->type == MSGPACK_OBJECT_STR) {
        if (tr_duration_parse (o->via.str.ptr, o->via.str.size, &ms) != TR_OK)
            return tr__cfg_bad_at (cfg, key, "'%s' must be a duration such as 250ms, 1.5s or 2m, "
                                "not '%.*s'", key, (int) o->via.str.size, o->via.str.ptr);
    }
    else
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        ms = (int64_t) o->via.u64;
    else
        return tr__cfg_bad_at (cfg, key, "'%s' must be a duration, not %s", key, s_kind_words (o));
    if (ms < min || ms > max)
        return tr__cfg_bad_at (cfg, key, "'%s' must be from %lld ms to %lld ms, not %lld ms", key,
                            (long long) min, (long long) max, (long long) ms);
    *out = ms;
    return 0;
}

int
tr__cfg_str (tr__cfg_t *cfg, const char *key, char **out)
{
    return tr__cfg_str_in (cfg, NULL, key, key, out);
}

int
tr__cfg_str_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key,
                const char *what, char **out)
{
    const msgpack_object *o = tr__cfg_get (cfg, map, key);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad_at (cfg, key, "'%s' must be a string, not %s", what, s_kind_words (o));
    if (o->via.str.size == 0 || memchr (o->via.str.ptr, 0, o->via.str.size))
        return tr__cfg_bad_at (cfg, key, "'%s' must be a non-empty string without NUL bytes", what);
    char *copy = strndup (o->via.str.ptr, o->via.str.size);
    if (!copy)
        return tr__cfg_bad_at (cfg, key, "out of memory");
    free (*out);
    *out = copy;
    return 0;
}

int
tr__cfg_name_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key,
                 const char *what, char **out)
{
    if (tr__cfg_str_in (cfg, map, key, what, out))
        return -1;
    if (*out && (tr_name_check (*out, strlen (*out)) || (*out) [0] == '$'))
        return tr__cfg_bad_at (cfg, key, "'%s' is not a valid actor name: '%.100s'", what, *out);
    return 0;
}

int
tr__cfg_keys (tr__cfg_t *cfg, const msgpack_object *map, const char *what,
              const char *const *keys)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "%s must be a mapping, not %s", what,
                            map? s_kind_words (map): "nothing");
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        bool known = false;
        for (size_t k = 0; keys [k] && !known; k++)
            known = tr__key_is (key, keys [k]);
        if (!known) {
            if (key->type == MSGPACK_OBJECT_STR) {
                char name [64];
                snprintf (name, sizeof name, "%.*s", (int) (key->via.str.size < 63?
                          key->via.str.size: 63), key->via.str.ptr);
                tr__cfg_blame (cfg, name);
            }
            char list [256] = "";
            for (size_t k = 0; keys [k]; k++) {
                strncat (list, k? ", ": "", sizeof list - strlen (list) - 1);
                strncat (list, keys [k], sizeof list - strlen (list) - 1);
            }
            return tr__cfg_bad (cfg, "unknown key '%.*s' in %s; expected one of: %s",
                                key->type == MSGPACK_OBJECT_STR? (int) key->via.str.size: 1,
                                key->type == MSGPACK_OBJECT_STR? key->via.str.ptr: "?",
                                what, list);
        }
    }
    return 0;
}

int
tr__cfg_choice (tr__cfg_t *cfg, const char *key, const char *const *choices, int *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, NULL, key);
    if (!o)
        return 0;
    for (int i = 0; choices [i]; i++)
        if (tr__key_is (o, choices [i])) {
            *out = i;
            return 0;
        }
    char list [256] = "";
    for (int i = 0; choices [i]; i++) {
        strncat (list, i? ", ": "", sizeof list - strlen (list) - 1);
        strncat (list, choices [i], sizeof list - strlen (list) - 1);
    }
    if (o->type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad_at (cfg, key, "'%s' must be one of %s, not %s", key, list, s_kind_words (o));
    return tr__cfg_bad_at (cfg, key, "'%s' must be one of %s, not '%.*s'", key, list,
                        (int) (o->via.str.size > 100? 100: o->via.str.size), o->via.str.ptr);
}

const char *
tr__cfg_kind (const msgpack_object *o)
{
    return s_kind_words (o);
}

int
tr__cfg_names (tr__cfg_t *cfg, const msgpack_object *list, const char *what,
               char ***names_p, size_t *count_p)
{
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad (cfg, "'%s' must be a list of at least one actor name", what);
    size_t count = list->via.array.size;
    char **names = (char **) calloc (count, sizeof *names);
    if (!names)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const msgpack_object *o = &list->via.array.ptr [i];
        char item [24];
        snprintf (item, sizeof item, "%zu", i + 1);
        if (o->type != MSGPACK_OBJECT_STR) {
            tr__names_free (names, count);
            return tr__cfg_bad_at (cfg, item, "'%s' item %zu must be an actor name, not %s",
                                what, i + 1, s_kind_words (o));
        }
        if (tr_name_check (o->via.str.ptr, o->via.str.size) || o->via.str.ptr [0] == '$') {
            tr__names_free (names, count);
            return tr__cfg_bad_at (cfg, item, "'%s' item %zu is not a valid actor name: '%.*s'",
                                what, i + 1, (int) (o->via.str.size > 100? 100: o->via.str.size),
                                o->via.str.ptr);
        }
        names [i] = strndup (o->via.str.ptr, o->via.str.size);
        if (!names [i]) {
            tr__names_free (names, count);
            return tr__cfg_bad (cfg, "out of memory");
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp (names [j], names [i]) == 0) {
                tr__cfg_bad_at (cfg, item, "'%s' names '%s' twice (items %zu and %zu)",
                             what, names [i], j + 1, i + 1);
                tr__names_free (names, count);
                return -1;
            }
    }
    *names_p = names;
    *count_p = count;
    return 0;
}

void
tr__names_free (char **names, size_t count)
{
    if (!names)
        return;
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
}

void
tr__cfg_refuse (tr_actor_t *self, tr__cfg_t *cfg)
{
    tr_log (TR_LOG_ERROR, "%s", cfg->error);
    tr_actor_exit (self, TR_EINVAL, cfg->error);
}

//  --------------------------------------------------------------------------
//  Timer messages

void
tr__tick_pack (uint8_t buf [TR__TICK_SIZE], uint64_t id)
{
    buf [0] = 0xd7;                     //  fixext 8
    buf [1] = 'T';
    for (int i = 0; i < 8; i++)
        buf [2 + i] = (uint8_t) (id >> (56 - 8 * i));
}

bool
tr__tick_read (const tr_msg_t *msg, uint64_t *id)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_from (msg) [0] != '\0'
    ||  tr_msg_size (msg) != TR__TICK_SIZE || body [0] != 0xd7 || body [1] != 'T')
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | body [2 + i];
    *id = v;
    return true;
}

//  --------------------------------------------------------------------------
//  Message fields and hashing

int
tr__body_field (const void *body, size_t size, const char *field,
                const uint8_t **value, size_t *value_size)
{
    tr__mp_t mp;
    uint32_t pairs;
    size_t field_len = strlen (field);
    tr__mp_init (&mp, body, size);
    if (!body || tr__mp_map (&mp, &pairs) != 0)
        return -1;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *key;
        uint32_t key_len;
        if (tr__mp_str (&mp, &key, &key_len) != 0)
            return -1;
        const uint8_t *start = mp.p;
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) != 0)
            return -1;
        if (key_len == field_len && memcmp (key, field, key_len) == 0) {
            *value = start;
            *value_size = (size_t) (mp.p - start);
            return 0;
        }
    }
    return -1;
}

uint64_t
tr__hash (const void *data, size_t size, uint64_t seed)
{
    const uint8_t *p = (const uint8_t *) data;
    uint64_t h = UINT64_C (14695981039346656037) ^ seed;
    for (size_t i = 0; i < size; i++) {
        h ^= p [i];
        h *= UINT64_C (1099511628211);
    }
    //  The finaliser of MurmurHash3: every input bit reaches every output bit.
    h ^= h >> 33;
    h *= UINT64_C (0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C (0xc4ceb9e53a87ec4d);
    h ^= h >> 33;
    return h;
}

bool
tr__key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR
        && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

const msgpack_object *
tr__map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (tr__key_is (&map->via.map.ptr [i].key, key))
            return &map->via.map.ptr [i].val;
    return NULL;
}

bool
tr__integer (const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t) o->via.u64;
    else
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return false;
    return true;
}

bool
tr__number (const msgpack_object *o, double *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double) o->via.u64;
    else
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = (double) o->via.i64;
    else
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *out = o->via.f64;
    else
        return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Values

int
tr__value_set (tr__value_t *value, const void *data, size_t size)
{
    tr__value_free (value);
    if (size == 0)
        return 0;
    value->data = (uint8_t *) malloc (size);
    if (!value->data)
        return -1;
    memcpy (value->data, data, size);
    value->size = size;
    return 0;
}

int
tr__value_set_object (tr__value_t *value, const msgpack_object *o)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *o);
    int rc = buffer.data? tr__value_set (value, buffer.data, buffer.size): -1;
    if (rc)
        tr__value_free (value);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

void
tr__value_free (tr__value_t *value)
{
    free (value->data);
    value->data = NULL;
    value->size = 0;
}

void
tr__value_pack (msgpack_packer *pk, const tr__value_t *value)
{
    if (value->size)
        pk->callback (pk->data, (const char *) value->data, value->size);
    else
        msgpack_pack_nil (pk);
}

void
tr__pack_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str_with_body (pk, text, strlen (text));
}

//  --------------------------------------------------------------------------
//  Runs

void
tr__runs_init (tr__runs_t *runs, tr_actor_t *self, const char *type,
               const tr__runs_calls_t *calls, void *state)
{
    memset (runs, 0, sizeof *runs);
    runs->self = self;
    runs->type = type;
    runs->calls = calls;
    runs->state = state;
    snprintf (runs->inflight_key, sizeof runs->inflight_key, "%s.inflight", type);
}

int
tr__runs_add (tr__runs_t *runs, tr__run_t *run, const tr_msg_t *msg)
{
    run->from = strdup (tr_msg_from (msg));
    if (!run->from)
        return -1;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        run->ask = tr_defer (msg);
    run->next = runs->list;
    runs->list = run;
    runs->count++;
    tr_actor_info_set (runs->self, runs->inflight_key, (int64_t) runs->count);
    return 0;
}

void
tr__runs_remove (tr__runs_t *runs, tr__run_t *run)
{
    for (tr__run_t **p = &runs->list; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            break;
        }
    runs->count--;
    tr_actor_info_set (runs->self, runs->inflight_key, (int64_t) runs->count);
}

void
tr__run_free (tr__run_t *run)
{
    if (!run)
        return;
    free (run->from);
    tr_msg_destroy (&run->ask);         //  unanswered: the asker gets TR_ENOREPLY
    free (run);
}

int
tr__run_ms (const tr__run_t *run, int64_t timeout_ms)
{
    int64_t ms = timeout_ms;
    int64_t left = run->ask? tr_msg_remaining_ms (run->ask): -1;
    if (left >= 0 && left < ms)
        ms = left;
    return (int) ms;
}

int
tr__runs_reserve (tr__runs_t *runs, size_t more)
{
    return tr__u64map_reserve (&runs->waits, more);
}

int
tr__runs_request (tr__runs_t *runs, tr__wait_t *wait, const char *to, const void *body,
                  size_t size, int ms)
{
    wait->id = 0;
    if (ms <= 0)
        return TR_ETIMEDOUT;
    if (tr__u64map_reserve (&runs->waits, 1))
        return TR_ENOMEM;
    int rc = tr__request_timed (runs->self, to, body, size, ms, &wait->id, &wait->timer);
    if (rc != TR_OK) {
        wait->id = 0;
        return rc;
    }
    tr__u64map_put (&runs->waits, wait->id, wait);     //  cannot fail: reserved
    return TR_OK;
}

void
tr__runs_unwait (tr__runs_t *runs, tr__wait_t *wait)
{
    if (!wait->id)
        return;
    tr__u64map_take (&runs->waits, wait->id);
    tr_timer_cancel (tr_actor_node (runs->self), wait->timer);
    wait->id = 0;
}

int
tr__runs_handle (tr__runs_t *runs, const tr_msg_t *msg)
{
    uint64_t id;
    const tr_msg_t *reply = msg;
    int error = TR_OK;
    switch (tr_msg_kind (msg)) {
        case TR_KIND_ERROR:
            error = tr_msg_error (msg);
            //  fall through
        case TR_KIND_REPLY:
            id = tr_msg_corr (msg);
            break;
        default:
            if (!tr__tick_read (msg, &id))
                return runs->calls->start (runs->state, msg);
            reply = NULL;
            error = TR_ETIMEDOUT;
    }
    tr__wait_t *wait = (tr__wait_t *) tr__u64map_take (&runs->waits, id);
    if (!wait) {
        //  Late: its timer came first, or the reverse, or the run gave
        //  up waiting.
        if (reply && runs->dropped_key)
            tr_actor_info_add (runs->self, runs->dropped_key, 1);
        return 0;
    }
    tr_timer_cancel (tr_actor_node (runs->self), wait->timer);
    wait->id = 0;
    runs->calls->answered (runs->state, wait->owner, reply, error);
    return 0;
}

void
tr__runs_close (tr__runs_t *runs, const char *more)
{
    if (runs->list)
        tr_log (TR_LOG_WARN, "%s '%s': stopping with %zu run(s) in progress%s", runs->type,
                tr_actor_name (runs->self), runs->count, more? more: "");
    while (runs->list) {
        tr__run_t *run = runs->list;
        runs->list = run->next;
        runs->calls->free (runs->state, run);
    }
    tr__u64map_clear (&runs->waits);
}

//  --------------------------------------------------------------------------
//  Asks with a timer

int
tr__request_timed (tr_actor_t *self, const char *to, const void *body, size_t size,
                   int timeout_ms, uint64_t *id_p, uint64_t *timer_p)
{
    tr_node_t *node = tr_actor_node (self);
    uint64_t id = 0;
    int rc = tr_request (node, to, body, size, timeout_ms, &id, NULL);
    if (rc != TR_OK)
        return rc;
    uint8_t tick [TR__TICK_SIZE];
    tr__tick_pack (tick, id);
    rc = tr_timer_after (node, tr_actor_name (self), timeout_ms + 5, tick, sizeof tick, timer_p);
    if (rc != TR_OK)
        return rc;      //  the answer, if any, then finds nobody waiting
    *id_p = id;
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Text rules

int
tr__text_rule_parse (tr__cfg_t *cfg, const msgpack_object *map, const char *where,
                     tr__text_rule_t *rule)
{
    char what [160];
    snprintf (what, sizeof what, "%s 'field'", where);
    if (tr__cfg_str_in (cfg, map, "field", what, &rule->field))
        return -1;
    if (tr__cfg_get (cfg, map, "match")) {
        snprintf (what, sizeof what, "%s 'match'", where);
        return tr__cfg_str_in (cfg, map, "match", what, &rule->match);
    }
    char *re = NULL;
    snprintf (what, sizeof what, "%s 'regex'", where);
    if (tr__cfg_str_in (cfg, map, "regex", what, &re))
        return -1;
    if (!re)
        return tr__cfg_bad (cfg, "%s needs 'match' or 'regex'", where);
    int rc = regcomp (&rule->regex, re, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why [128];
        regerror (rc, &rule->regex, why, sizeof why);
        tr__cfg_bad_at (cfg, "regex", "%s 'regex' '%.100s' does not compile: %s", where, re, why);
        free (re);
        return -1;
    }
    free (re);
    rule->has_regex = true;
    return 0;
}

bool
tr__text_rule_text (const tr__text_rule_t *rule, const void *body, size_t size,
                    const char **text, uint32_t *len)
{
    const uint8_t *value = (const uint8_t *) body;
    if (rule->field && tr__body_field (value, size, rule->field, &value, &size))
        return false;
    tr__mp_t mp;
    tr__mp_init (&mp, value, size);
    return value && size > 0 && tr__mp_str (&mp, text, len) == 0;
}

bool
tr__text_rule_test (const tr__text_rule_t *rule, const void *body, size_t size)
{
    const char *text;
    uint32_t len;
    if (!tr__text_rule_text (rule, body, size, &text, &len))
        return false;
    if (rule->match)
        return memmem (text, len, rule->match, strlen (rule->match)) != NULL;
    if (memchr (text, 0, len))
        return false;                   //  regexec sees C strings only
    char *copy = strndup (text, len);
    bool hit = copy && regexec (&rule->regex, copy, 0, NULL, 0) == 0;
    free (copy);
    return hit;
}

void
tr__text_rule_free (tr__text_rule_t *rule)
{
    free (rule->field);
    free (rule->match);
    if (rule->has_regex)
        regfree (&rule->regex);
    memset (rule, 0, sizeof *rule);
}
