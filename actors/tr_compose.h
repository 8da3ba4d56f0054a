/*  tr_compose.h - what the composition actors share (internal).

    The composition actors (pool, router, chain, parallel, orchestrator,
    evaluator...) read their parameters the same way, forward asks with a
    timer and mark their timer messages the same way, match text and pick
    fields out of message maps the same way, keep message values and pack
    them the same way, and keep the runs they work on the same way. One
    copy of each lives here.

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
#include "tr_u64map.h"

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

//  True if key is a string equal to name.
bool
    tr__key_is (const msgpack_object *key, const char *name);

//  The value under the first key equal to `key` in map, or NULL when map
//  is not a map or has no such key.
const msgpack_object *
    tr__map_get (const msgpack_object *map, const char *key);

//  True, with *out its value, if o is an integer that an int64_t holds;
//  false (*out untouched) otherwise.
bool
    tr__integer (const msgpack_object *o, int64_t *out);

//  True, with *out its value, if o is a number (an integer or a float,
//  NaN included); false (*out untouched) otherwise.
bool
    tr__number (const msgpack_object *o, double *out);

//  --------------------------------------------------------------------------
//  Values
//
//  A value is a message body or a part of one kept by an actor: msgpack
//  bytes it owns (malloc'd), or none (size 0, data NULL), which is packed
//  as nil. A zeroed tr__value_t is none.

typedef struct {
    uint8_t *data;
    size_t size;
} tr__value_t;

//  Makes value a copy of the size bytes at data (none when size is 0),
//  freeing what it held. Returns 0, or -1 when memory ran out (value is
//  then none).
int
    tr__value_set (tr__value_t *value, const void *data, size_t size);

//  Makes value the msgpack bytes of object o. Returns 0, or -1 when
//  memory ran out (value is then none).
int
    tr__value_set_object (tr__value_t *value, const msgpack_object *o);

//  Frees what value holds; it is none after. Accepts a value that is
//  none already.
void
    tr__value_free (tr__value_t *value);

//  Packs value through pk: its bytes as they are, or nil for none.
void
    tr__value_pack (msgpack_packer *pk, const tr__value_t *value);

//  Packs a C string as a msgpack string.
void
    tr__pack_str (msgpack_packer *pk, const char *text);

//  --------------------------------------------------------------------------
//  Runs
//
//  A composition actor works for many messages at once: the work for one
//  message is a run, which waits for the answers to the requests it sends
//  (tr__request_timed). tr__runs_t keeps an actor's runs in progress (a
//  list, counted in its info counter "TYPE.inflight") and who waits for
//  each request (a map from the request's id to a tr__wait_t), so that an
//  answer, or the timer that says none came in time, reaches whoever
//  waits for it, once, and one that comes after that finds nobody. All
//  of it runs on the actor's own thread.

typedef struct tr__run_s tr__run_t;

//  What every run holds. An actor's own run type begins with it, and is
//  allocated as one block (tr__run_free frees it).
struct tr__run_s {
    tr__run_t *next;
    tr_msg_t *ask;              //  the deferred ask, or NULL for a tell
    char *from;                 //  who sent the message, for the log
};

//  One request waited for: in a run, or a part of one (a subtask, a
//  member's leg). `owner` is the actor's, given back with the answer.
typedef struct {
    uint64_t id;                //  the request's id, 0 while none is awaited
    uint64_t timer;             //  its timer
    void *owner;
} tr__wait_t;

//  What the actor does when tr__runs_handle and tr__runs_close call it;
//  `state` is the one given to tr__runs_init.
typedef struct {
    //  A message that is neither an answer nor a timer: new work. Returns
    //  what the actor's handler returns (0, or -1 to fail the message).
    int (*start) (void *state, const tr_msg_t *msg);
    //  The answer owner waited for: reply with error TR_OK, or an error
    //  (reply is then the error message, or NULL when the timer came
    //  first: TR_ETIMEDOUT). The wait is over (its id 0, its timer gone)
    //  before this is called.
    void (*answered) (void *state, void *owner, const tr_msg_t *reply, int error);
    //  Frees a run that is still in progress when the actor stops (it is
    //  off the list already): its waits, what it holds, tr__run_free.
    void (*free) (void *state, tr__run_t *run);
} tr__runs_calls_t;

typedef struct {
    tr_actor_t *self;
    const char *type;           //  "orchestrator": for the log and the counter
    char inflight_key [64];     //  "orchestrator.inflight"
    const char *dropped_key;    //  counts answers that came too late, or NULL
    const tr__runs_calls_t *calls;
    void *state;
    tr__run_t *list;            //  the runs in progress, the newest first
    size_t count;
    tr__u64map_t waits;         //  request id -> tr__wait_t
} tr__runs_t;

//  Sets runs up for actor self of type `type` (a string that lasts as
//  long as the actor), with the actor's calls and state. A zeroed
//  tr__runs_t (an actor that never started) may be closed all the same.
void
    tr__runs_init (tr__runs_t *runs, tr_actor_t *self, const char *type,
                   const tr__runs_calls_t *calls, void *state);

//  Takes run (zeroed but for what the actor filled in) on as the work for
//  msg: keeps who sent it, defers an ask (the run then owns it, and must
//  answer it), puts it on the list and counts it. Returns 0, or -1 when
//  memory ran out: then nothing changed, and the actor still owns msg.
int
    tr__runs_add (tr__runs_t *runs, tr__run_t *run, const tr_msg_t *msg);

//  Takes a finished run off the list (the actor answers it and frees it
//  after).
void
    tr__runs_remove (tr__runs_t *runs, tr__run_t *run);

//  Frees what tr__runs_add gave run (an ask still deferred is destroyed
//  unanswered, so that its asker gets TR_ENOREPLY), then run itself.
//  Accepts NULL.
void
    tr__run_free (tr__run_t *run);

//  Ms a request of the run may take: timeout_ms, cut to what is left of
//  the ask's deadline (0 or less when it has passed).
int
    tr__run_ms (const tr__run_t *run, int64_t timeout_ms);

//  Makes room for `more` waits, so that as many requests cannot fail for
//  want of memory. Returns 0, or -1 when memory ran out.
int
    tr__runs_reserve (tr__runs_t *runs, size_t more);

//  Sends body to `to` with tr__request_timed, wait awaiting its answer
//  (wait->owner is the caller's, set before). Returns TR_OK; or, with
//  nothing awaited (wait->id 0), TR_ETIMEDOUT when ms is 0 or less,
//  TR_ENOMEM, or the send's error.
int
    tr__runs_request (tr__runs_t *runs, tr__wait_t *wait, const char *to, const void *body,
                      size_t size, int ms);

//  Stops waiting (an answer that comes later finds nobody; its timer is
//  cancelled). Accepts a wait that awaits nothing.
void
    tr__runs_unwait (tr__runs_t *runs, tr__wait_t *wait);

//  The actor's handler: an answer (a reply or an error, by its
//  correlation id) or a timer (tr__tick_read: TR_ETIMEDOUT) goes to
//  calls->answered if someone waits for it (a late reply is counted in
//  dropped_key, when set); anything else to calls->start. Returns what
//  the handler returns.
int
    tr__runs_handle (tr__runs_t *runs, const tr_msg_t *msg);

//  When the actor stops: runs still in progress are abandoned (their
//  askers get TR_ENOREPLY, late answers find nobody), said in a warning
//  "TYPE 'NAME': stopping with N run(s) in progress" followed by `more`
//  (or nothing when NULL), and freed with calls->free; the waits are
//  freed.
void
    tr__runs_close (tr__runs_t *runs, const char *more);

#endif
