/*  tr_compose.h - what the composition actors share (internal).

    The composition actors (pool, router, chain) read their parameters
    the same way, forward asks with a timer and mark their timer messages
    the same way, match text and pick fields out of message maps the same
    way. One copy of each lives here.

    Parameters: the tree loader has already checked each top-level key's
    kind against the type's tr_param_spec_t (with file, line and column).
    What it cannot check (a strategy's spelling, a range, the shape inside
    a list) is checked here when the actor starts; a problem is written
    into tr__cfg_t.error as "TYPE 'NAME': what was wrong", which the actor
    logs and gives to tr_actor_exit, so that its supervisor reports it and
    the tree does not start.
*/
#ifndef TR_COMPOSE_H_INCLUDED
#define TR_COMPOSE_H_INCLUDED

#include <msgpack.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/tr_actor.h"
#include "troupe/tr_msg.h"
#include "troupe/tr_params.h"
#include "troupe/tr_type.h"

#define TR__CFG_ERROR 1024

//  A parameter reader: the msgpack map of an actor's params, unpacked.
//  The same reading serves the tree loader (tr_actor_type_t.check, with
//  no actor yet: messages then carry no "TYPE 'NAME': ", and `path` says
//  where the problem is, so that the loader can name its line and
//  column) and the actor's start.
typedef struct {
    const char *type;                   //  "pool", for messages
    const char *actor;                  //  the actor's name, or NULL when checking
    msgpack_unpacked unpacked;
    const msgpack_object *root;         //  the params map, or NULL for none
    char at [128];                      //  the nested value being read ("routes.2")
    char path [256];                    //  where the problem is (tr_param_error_t)
    char error [TR__CFG_ERROR];
} tr__cfg_t;

//  Unpacks params (may be NULL: no parameters). Returns 0, or -1 with
//  cfg->error set. tr__cfg_close must follow either way.
int
    tr__cfg_open (tr__cfg_t *cfg, const char *type, const char *actor,
                  const tr_params_t *params);

//  Sets the nested value being read (printf-style; "" for the params
//  map), which problems found without a path of their own are blamed on.
void
    tr__cfg_enter (tr__cfg_t *cfg, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  Goes down into key under the nested value being read.
void
    tr__cfg_enter_sub (tr__cfg_t *cfg, const char *key);

//  Blames the next problem on key under the nested value being read.
void
    tr__cfg_blame (tr__cfg_t *cfg, const char *key);

//  A type's check for the tree loader: runs configure on a zeroed state of
//  state_size bytes over params, as the actor's init will, then release
//  (which frees what configure allocated, and the state). Returns 0, or
//  -1 with *error filled in (message and path).
int
    tr__cfg_check (const char *type, const tr_params_t *params, size_t state_size,
                   int (*configure) (void *state, tr__cfg_t *cfg),
                   void (*release) (void *state), tr_param_error_t *error);

//  Defines `static int FN (const tr_params_t *, tr_param_error_t *)`, a
//  type's check for the tree loader (tr_actor_type_t.check), from the
//  type's own configure (int configure (STATE_T *, tr__cfg_t *)) and
//  release (void release (STATE_T *)), through tr__cfg_check: the same
//  reading as the actor's init, with positions. TYPE_NAME names the type
//  in messages.
#define TR__CFG_CHECK_DEFINE(FN, TYPE_NAME, STATE_T, CONFIGURE, RELEASE)      \
    static int                                                              \
    FN##_configure (void *state, tr__cfg_t *cfg)                            \
    {                                                                       \
        return CONFIGURE ((STATE_T *) state, cfg);                          \
    }                                                                       \
    static void                                                             \
    FN##_release (void *state)                                              \
    {                                                                       \
        RELEASE ((STATE_T *) state);                                        \
    }                                                                       \
    static int                                                              \
    FN (const tr_params_t *params, tr_param_error_t *error)                 \
    {                                                                       \
        return tr__cfg_check (TYPE_NAME, params, sizeof (STATE_T),          \
                              FN##_configure, FN##_release, error);         \
    }

//  Frees what tr__cfg_open unpacked (values found through it go too).
void
    tr__cfg_close (tr__cfg_t *cfg);

//  Records a problem in cfg->error ("TYPE 'NAME': ...") and returns -1.
int
    tr__cfg_bad (tr__cfg_t *cfg, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  tr__cfg_bad for the value under key (of the nested value being read).
int
    tr__cfg_bad_at (tr__cfg_t *cfg, const char *key, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  The value under key in the params map (or in `map` if not NULL), or
//  NULL when absent.
const msgpack_object *
    tr__cfg_get (tr__cfg_t *cfg, const msgpack_object *map, const char *key);

//  Optional settings of the params map: each leaves *out alone when the key
//  is absent and returns 0; -1 with cfg->error for a value of the wrong
//  kind or out of [min, max].
int
    tr__cfg_int (tr__cfg_t *cfg, const char *key, int64_t min, int64_t max,
                 int64_t *out);
int
    tr__cfg_number (tr__cfg_t *cfg, const char *key, double min, double max,
                    double *out);
int
    tr__cfg_bool (tr__cfg_t *cfg, const char *key, bool *out);
int
    tr__cfg_duration (tr__cfg_t *cfg, const char *key, int64_t min, int64_t max,
                      int64_t *out);

//  An optional string setting as a new C string (free it), refusing an
//  empty one and one with a NUL byte.
int
    tr__cfg_str (tr__cfg_t *cfg, const char *key, char **out);

//  The same for key in a nested map (NULL: the params map); `what` names
//  the setting in messages ("routes item 2 'to'").
int
    tr__cfg_str_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key,
                    const char *what, char **out);

//  The same, and the string must be a valid actor name.
int
    tr__cfg_name_in (tr__cfg_t *cfg, const msgpack_object *map, const char *key,
                     const char *what, char **out);

//  Checks that map (named `what`) is a mapping whose keys are all among
//  `keys` (NULL-ended).
int
    tr__cfg_keys (tr__cfg_t *cfg, const msgpack_object *map, const char *what,
                  const char *const *keys);

//  The kind of a value in words ("a string", "a list"...).
const char *
    tr__cfg_kind (const msgpack_object *o);

//  An optional string setting that must be one of `choices` (NULL-ended);
//  *out is its index.
int
    tr__cfg_choice (tr__cfg_t *cfg, const char *key, const char *const *choices,
                    int *out);

//  A list of actor names (`what` names it in messages): at least one, each
//  a valid actor name, none twice. On 0, *names_p is a new array of new
//  strings (tr__names_free) and *count_p its length.
int
    tr__cfg_names (tr__cfg_t *cfg, const msgpack_object *list, const char *what,
                   char ***names_p, size_t *count_p);

//  Frees an array from tr__cfg_names. Accepts NULL.
void
    tr__names_free (char **names, size_t count);

//  Logs cfg->error and ends the actor's start with it (init then returns
//  -1, which its supervisor reports with this text).
void
    tr__cfg_refuse (tr_actor_t *self, tr__cfg_t *cfg);

//  Timer messages. An actor that waits for answers to tr_request keeps a
//  timer per request; the timer's body is a msgpack ext value (type 'T',
//  8 bytes: the request's id), which no tree file or JSON can produce, so
//  it cannot be mistaken for a message from a user. tr__tick_pack writes
//  the 10 bytes into buf; tr__tick_read returns true and the id if msg is
//  such a timer message (a tell from no actor).
#define TR__TICK_SIZE 10
void
    tr__tick_pack (uint8_t buf [TR__TICK_SIZE], uint64_t id);
bool
    tr__tick_read (const tr_msg_t *msg, uint64_t *id);

//  Forwards body to `to` with tr_request (the answer comes to the calling
//  actor's handler) and starts its timer: a tick (above) with the
//  request's id, due a little after the request's own deadline, so that
//  an answer given just in time wins. On TR_OK, *id_p and *timer_p are
//  set; otherwise nothing is in flight and the send's error is returned.
//  Must be called on self's thread.
int
    tr__request_timed (tr_actor_t *self, const char *to, const void *body, size_t size,
                       int timeout_ms, uint64_t *id_p, uint64_t *timer_p);

//  A text rule, as routers and gates write it: `match: TEXT` (a
//  substring) or `regex: RE` (POSIX extended), on the body when it is a
//  string or, with `field: NAME`, on the string under NAME in a map body.
typedef struct {
    char *field;
    char *match;
    regex_t regex;
    bool has_regex;
} tr__text_rule_t;

//  Reads `match` or `regex` (whichever map has; `field` too) into rule.
//  `where` names the map in messages. Returns 0, or -1 with cfg->error.
int
    tr__text_rule_parse (tr__cfg_t *cfg, const msgpack_object *map, const char *where,
                         tr__text_rule_t *rule);

//  True if the rule matches a body (false when there is no such text).
bool
    tr__text_rule_test (const tr__text_rule_t *rule, const void *body, size_t size);

//  The text a rule looks at, pointing into body. False if there is none.
bool
    tr__text_rule_text (const tr__text_rule_t *rule, const void *body, size_t size,
                        const char **text, uint32_t *len);

//  Frees what the rule holds (not the rule itself).
void
    tr__text_rule_free (tr__text_rule_t *rule);

//  Finds the value of `field` in a message body that is a map with string
//  keys. On 0, *value and *size are the value's own msgpack bytes (inside
//  body). Returns -1 if the body is not such a map or has no such key.
int
    tr__body_field (const void *body, size_t size, const char *field,
                    const uint8_t **value, size_t *value_size);

//  FNV-1a over bytes from a seed, with a final mix so that close inputs
//  land far apart (for hash rings).
uint64_t
    tr__hash (const void *data, size_t size, uint64_t seed);

#endif
