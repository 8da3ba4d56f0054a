/*  tr_parallel.c - parallel: sectioning, voting and racing over members.

    A parallel actor forwards each message it gets to all of its members
    at once and combines what comes back, in one of three modes:

        sections   each member gets a part of the task: the whole body
                   (split: whole), item i of a list body (split: list, as
                   many items as members), or the value under its own
                   field of a map body (split: field; the field is the
                   member's name unless the member says `field`). The
                   answers are merged into one map keyed by member
                   (merge: map) or a list in member order (merge: list).
                   A member that fails fails the whole at once, the
                   others cancelled (on_failure: error), or has its place
                   in `failed` of the answer (on_failure: report).
        vote       every member gets the same body. Equal answers are
                   folded into one (byte-equal msgpack, or equal on the
                   field `vote_key` of map answers; with fold: text,
                   strings compare without ASCII case and surrounding
                   blanks). The answer with the most votes wins if it
                   has no tie and its votes reach `threshold` (a share of
                   the members) or `min_votes`. The answer is a map
                   {consensus, answer, votes, total, confidence, voters,
                   distinct, failed}; no consensus is TR_ENOTFOUND (or
                   the same map with consensus false, on_failure: report).
        race       every member gets the same body; the first answer
                   that is a success (and, with `accept`, passes its
                   quality rule: a number >= min, or a text rule) wins,
                   and the members still working are cancelled.

    "Cancelled": troupe has no way to take back an ask once it is in a
    member's mailbox, so cancelling a member means that this actor stops
    waiting for it: its timer is freed at once, and its answer, when it
    comes, is dropped and counted (parallel.dropped). The member still
    does the work (an ask still queued when its deadline passes is
    dropped unhandled by the member's mailbox).

    Every member's ask has its own timer (tr__request_timed): `timeout`,
    cut to the asker's deadline. The actor never waits on its thread, so
    many runs are in flight at once (parallel.inflight). Each run ends
    with an event on the bus, `parallel.completed` or `parallel.failed`,
    a map naming the actor, the mode and the outcome.

    Counters (tr_actor_info): parallel.completed, parallel.failed,
    parallel.inflight, parallel.cancelled (members stopped waiting for),
    parallel.dropped (answers that came after their run stopped waiting),
    parallel.rejected (race: answers below the quality rule),
    parallel.refused (messages that could not be split).
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "tr_u64map.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_event.h"
#include "troupe/tr_log.h"
#include "troupe/tr_timer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_SECTIONS, S_VOTE, S_RACE } s_mode_t;
typedef enum { S_SPLIT_WHOLE, S_SPLIT_LIST, S_SPLIT_FIELD } s_split_t;
typedef enum { S_MERGE_MAP, S_MERGE_LIST } s_merge_t;
typedef enum { S_FOLD_BYTES, S_FOLD_TEXT } s_fold_t;
typedef enum { S_ACCEPT_ANY, S_ACCEPT_MIN, S_ACCEPT_TEXT } s_accept_t;

static const char *const s_modes [] = { "sections", "vote", "race", NULL };
static const char *const s_splits [] = { "whole", "list", "field", NULL };
static const char *const s_merges [] = { "map", "list", NULL };
static const char *const s_folds [] = { "bytes", "text", NULL };

typedef struct {
    char *actor;
    char *field;                //  split: field: the key of the body map it gets
} s_member_t;

typedef enum { S_UNSENT, S_WAITING, S_ANSWERED, S_FAILED, S_CANCELLED } s_leg_state_t;

typedef struct s_run_s s_run_t;

//  One member's part of a run.
typedef struct {
    s_run_t *run;
    size_t index;               //  the member
    int state;                  //  s_leg_state_t
    tr__wait_t wait;            //  the member's answer, while S_WAITING
    int error;                  //  S_FAILED: why
    tr__value_t answer;         //  S_ANSWERED: the answer (none when empty)
    bool rejected;              //  race: answered, below the quality rule
} s_leg_t;

struct s_run_s {
    tr__run_t base;             //  the deferred ask (or NULL for a tell), the sender
    s_leg_t *legs;              //  one per member
    size_t open;                //  legs waiting
    int64_t started_ns;
    bool failed_any;
    size_t first_failed;        //  the first member to fail, in time
    bool has_winner;            //  race
    size_t winner;
    size_t cancelled;
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    int mode;                   //  s_mode_t
    s_member_t *members;
    size_t count;
    int64_t timeout_ms;
    bool report;                //  on_failure: report
    int split;                  //  sections
    int merge;
    char *vote_key;             //  vote
    int fold;
    double threshold;
    int64_t min_votes;          //  0: threshold decides
    int accept;                 //  race: s_accept_t
    char *accept_field;         //  S_ACCEPT_MIN: the numeric field, or NULL
    double accept_min;
    tr__text_rule_t accept_text;
    tr__runs_t runs;            //  of s_run_t, waits of s_leg_t (late answers dropped)
} s_par_t;

//  What the runs call back (at the end).
static const tr__runs_calls_t s_calls;

static const tr_param_spec_t s_parallel_params [] = {
    { "mode", TR_PARAM_STRING, true, "sections (split, run, merge), vote (consensus) "
                                     "or race (first good answer)" },
    { "members", TR_PARAM_LIST, true, "actor names, or maps {actor, field} with split: field" },
    { "timeout", TR_PARAM_DURATION, false, "how long each member gets (default 5s)" },
    { "on_failure", TR_PARAM_STRING, false, "error (default): the asker gets an error; "
                                            "report: an answer saying what happened" },
    { "split", TR_PARAM_STRING, false, "sections: whole (default), list or field" },
    { "merge", TR_PARAM_STRING, false, "sections: map keyed by member (default) or list" },
    { "vote_key", TR_PARAM_STRING, false, "vote: the field of map answers compared "
                                          "(default the whole answer)" },
    { "fold", TR_PARAM_STRING, false, "vote: bytes (default) or text (no case, no blanks "
                                      "around)" },
    { "threshold", TR_PARAM_NUMBER, false, "vote: the share of the members the winner needs "
                                           "(default 0.5)" },
    { "min_votes", TR_PARAM_INT, false, "vote: the votes the winner needs, instead of "
                                        "threshold" },
    { "accept", TR_PARAM_MAP, false, "race: the quality a winner needs: {min, field} or "
                                     "{match|regex, field}" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_par_free (s_par_t *par)
{
    if (!par)
        return;
    for (size_t i = 0; par->members && i < par->count; i++) {
        free (par->members [i].actor);
        free (par->members [i].field);
    }
    free (par->members);
    free (par->vote_key);
    free (par->accept_field);
    tr__text_rule_free (&par->accept_text);
    free (par);
}

//  Refuses `key` when the mode is not `mode`: a setting that means
//  nothing in this mode is a mistake, not something to ignore.
static int
s_only_for (tr__cfg_t *cfg, const s_par_t *par, const char *key, int mode)
{
    if (par->mode == mode || !tr__cfg_get (cfg, NULL, key))
        return 0;
    return tr__cfg_bad_at (cfg, key, "'%s' is only for mode %s", key, s_modes [mode]);
}

//  A bare member name: checked as tr__cfg_names does.
static int
s_member_name (tr__cfg_t *cfg, const msgpack_object *o, size_t index, s_member_t *member)
{
    uint32_t len = o->via.str.size;
    if (tr_name_check (o->via.str.ptr, len) || o->via.str.ptr [0] == '$')
        return tr__cfg_bad (cfg, "'members' item %zu is not a valid actor name: '%.*s'",
                            index + 1, (int) (len > 100? 100: len), o->via.str.ptr);
    member->actor = strndup (o->via.str.ptr, len);
    return member->actor? 0: tr__cfg_bad (cfg, "out of memory");
}

//  One item of `members`: a name, or {actor, field}.
static int
s_member_parse (tr__cfg_t *cfg, s_par_t *par, const msgpack_object *o, size_t index)
{
    static const char *const keys [] = { "actor", "field", NULL };
    s_member_t *member = &par->members [index];
    char where [48], what [96];
    snprintf (where, sizeof where, "members item %zu", index + 1);
    tr__cfg_enter (cfg, "members.%zu", index + 1);
    if (o->type == MSGPACK_OBJECT_STR)
        return s_member_name (cfg, o, index, member);
    if (o->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "'members' item %zu must be an actor name or a mapping, "
                            "not %s", index + 1, tr__cfg_kind (o));
    if (tr__cfg_keys (cfg, o, where, keys))
        return -1;
    snprintf (what, sizeof what, "%s 'actor'", where);
    if (tr__cfg_name_in (cfg, o, "actor", what, &member->actor))
        return -1;
    if (!member->actor)
        return tr__cfg_bad (cfg, "%s needs 'actor', the member's actor", where);
    if (tr__cfg_get (cfg, o, "field") && !(par->mode == S_SECTIONS && par->split == S_SPLIT_FIELD))
        return tr__cfg_bad_at (cfg, "field", "%s 'field' is only for split: field", where);
    snprintf (what, sizeof what, "%s 'field'", where);
    return tr__cfg_str_in (cfg, o, "field", what, &member->field);
}

static int
s_members_parse (tr__cfg_t *cfg, s_par_t *par)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "members");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "members", "'members' must be a list of at least one "
                               "actor name");
    par->members = (s_member_t *) calloc (list->via.array.size, sizeof *par->members);
    if (!par->members)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < list->via.array.size; i++) {
        par->count = i + 1;             //  so that s_par_free frees this one too
        if (s_member_parse (cfg, par, &list->via.array.ptr [i], i))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp (par->members [j].actor, par->members [i].actor) == 0)
                return tr__cfg_bad (cfg, "'members' names '%s' twice (items %zu and %zu)",
                                    par->members [i].actor, j + 1, i + 1);
        //  Asking itself would fan out without end (known at start only:
        //  the loader's check has no actor name).
        if (cfg->actor && strcmp (cfg->actor, par->members [i].actor) == 0)
            return tr__cfg_bad (cfg, "'members' item %zu is this actor itself", i + 1);
        if (par->mode == S_SECTIONS && par->split == S_SPLIT_FIELD && !par->members [i].field
        &&  !(par->members [i].field = strdup (par->members [i].actor)))
            return tr__cfg_bad (cfg, "out of memory");
    }
    tr__cfg_enter (cfg, "%s", "");
    return 0;
}

//  accept: {min: NUMBER, field?} or {match|regex: TEXT, field?}.
static int
s_accept_parse (tr__cfg_t *cfg, s_par_t *par)
{
    static const char *const keys [] = { "min", "field", "match", "regex", NULL };
    const msgpack_object *o = tr__cfg_get (cfg, NULL, "accept");
    if (!o)
        return 0;
    tr__cfg_enter (cfg, "accept");
    if (tr__cfg_keys (cfg, o, "'accept'", keys))
        return -1;
    const msgpack_object *min = tr__cfg_get (cfg, o, "min");
    int kinds = (min != NULL) + (tr__cfg_get (cfg, o, "match") != NULL)
              + (tr__cfg_get (cfg, o, "regex") != NULL);
    if (kinds != 1)
        return tr__cfg_bad (cfg, "'accept' needs exactly one of min, match, regex");
    if (!min) {
        par->accept = S_ACCEPT_TEXT;
        return tr__text_rule_parse (cfg, o, "accept", &par->accept_text);
    }
    if (!tr__number (min, &par->accept_min))
        return tr__cfg_bad_at (cfg, "min", "accept 'min' must be a number, not %s",
                               tr__cfg_kind (min));
    par->accept = S_ACCEPT_MIN;
    return tr__cfg_str_in (cfg, o, "field", "accept 'field'", &par->accept_field);
}

//  The vote settings: a threshold (a share) or a count, not both.
static int
s_vote_parse (tr__cfg_t *cfg, s_par_t *par)
{
    par->threshold = 0.5;
    if (tr__cfg_str (cfg, "vote_key", &par->vote_key)
    ||  tr__cfg_choice (cfg, "fold", s_folds, &par->fold)
    ||  tr__cfg_number (cfg, "threshold", 0, 1, &par->threshold)
    ||  tr__cfg_int (cfg, "min_votes", 1, INT32_MAX, &par->min_votes))
        return -1;
    if (tr__cfg_get (cfg, NULL, "threshold") && par->threshold <= 0)
        return tr__cfg_bad_at (cfg, "threshold", "'threshold' must be above 0 (a share of "
                               "the members, up to 1)");
    if (tr__cfg_get (cfg, NULL, "threshold") && par->min_votes)
        return tr__cfg_bad_at (cfg, "min_votes", "give 'threshold' or 'min_votes', not both");
    if (par->min_votes > (int64_t) par->count)
        return tr__cfg_bad_at (cfg, "min_votes", "'min_votes' (%lld) is more than the "
                               "members (%zu): no answer could ever win",
                               (long long) par->min_votes, par->count);
    return 0;
}

static int
s_par_configure (s_par_t *par, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "error", "report", NULL };
    int on_failure = 0;
    par->timeout_ms = 5000;
    par->mode = -1;
    if (tr__cfg_choice (cfg, "mode", s_modes, &par->mode))
        return -1;
    if (par->mode < 0)
        return tr__cfg_bad (cfg, "'mode' is required: sections, vote or race");
    if (tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &par->timeout_ms)
    ||  tr__cfg_choice (cfg, "on_failure", failures, &on_failure)
    ||  s_only_for (cfg, par, "split", S_SECTIONS)
    ||  s_only_for (cfg, par, "merge", S_SECTIONS)
    ||  s_only_for (cfg, par, "vote_key", S_VOTE)
    ||  s_only_for (cfg, par, "fold", S_VOTE)
    ||  s_only_for (cfg, par, "threshold", S_VOTE)
    ||  s_only_for (cfg, par, "min_votes", S_VOTE)
    ||  s_only_for (cfg, par, "accept", S_RACE)
    ||  tr__cfg_choice (cfg, "split", s_splits, &par->split)
    ||  tr__cfg_choice (cfg, "merge", s_merges, &par->merge))
        return -1;
    par->report = on_failure == 1;
    if (s_members_parse (cfg, par))
        return -1;
    if (par->mode == S_VOTE)
        return s_vote_parse (cfg, par);
    if (par->mode == S_RACE)
        return s_accept_parse (cfg, par);
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_par_check, "parallel", s_par_t, s_par_configure, s_par_free)

static int
s_par_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_par_t *par = (s_par_t *) calloc (1, sizeof *par);
    int rc = tr__cfg_open (&cfg, "parallel", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !par)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_par_configure (par, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_par_free (par);
        return -1;
    }
    tr__cfg_close (&cfg);
    par->self = self;
    par->node = tr_actor_node (self);
    tr__runs_init (&par->runs, self, "parallel", &s_calls, par);
    par->runs.dropped_key = "parallel.dropped";
    *state_p = par;
    return 0;
}

//  --------------------------------------------------------------------------
//  Packing maps whose size is known at the end

typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    uint32_t pairs;
} s_map_t;

static void
s_map_init (s_map_t *map)
{
    msgpack_sbuffer_init (&map->buf);
    msgpack_packer_init (&map->pk, &map->buf, msgpack_sbuffer_write);
    map->pairs = 0;
}

static void
s_pack_bool (msgpack_packer *pk, bool value)
{
    if (value)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

//  Packs key; the value is packed next, into the returned packer.
static msgpack_packer *
s_map_key (s_map_t *map, const char *key)
{
    map->pairs++;
    tr__pack_str (&map->pk, key);
    return &map->pk;
}

//  Writes the map (header, then pairs) to out and frees the pairs.
static void
s_map_end (s_map_t *map, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, map->pairs);
    if (map->buf.size)
        msgpack_sbuffer_write (out, map->buf.data, map->buf.size);
    msgpack_sbuffer_destroy (&map->buf);
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run_free (s_par_t *par, s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->legs && i < par->count; i++) {
        tr__runs_unwait (&par->runs, &run->legs [i].wait);
        tr__value_free (&run->legs [i].answer);
    }
    free (run->legs);
    tr__run_free (&run->base);
}

//  Stops waiting for the legs still out: their timers go now, their
//  answers will be dropped when they come (and counted in
//  parallel.dropped).
static void
s_cancel_rest (s_par_t *par, s_run_t *run)
{
    for (size_t i = 0; i < par->count; i++) {
        s_leg_t *leg = &run->legs [i];
        if (leg->state != S_WAITING)
            continue;
        tr__runs_unwait (&par->runs, &leg->wait);
        leg->state = S_CANCELLED;
        run->cancelled++;
    }
    run->open = 0;
    if (run->cancelled)
        tr_actor_info_add (par->self, "parallel.cancelled", (int64_t) run->cancelled);
}

//  The vote's tally: equal answers folded into groups.
typedef struct {
    uint8_t *key;               //  what is compared (malloc'd)
    size_t key_size;
    size_t votes;
    size_t first;               //  the first member (in member order) with it
} s_group_t;

typedef struct {
    s_group_t *groups;          //  one per distinct answer
    size_t distinct;
    size_t best;                //  the group with the most votes
    bool tie;                   //  another group has as many
    bool consensus;
} s_tally_t;

//  The compared form of a vote: its msgpack bytes (tagged 'b') or, with
//  fold: text and a string, the string without ASCII case or blanks
//  around (tagged 's'). Returns 0 and a new buffer, or -1 if the answer
//  is not a vote (no vote_key field) or memory ran out (*oom).
static int
s_vote_form (const s_par_t *par, const s_leg_t *leg, uint8_t **key_p, size_t *size_p, bool *oom)
{
    const uint8_t *value = leg->answer.data;
    size_t size = leg->answer.size;
    if (par->vote_key && tr__body_field (value, size, par->vote_key, &value, &size))
        return -1;
    const char *text = NULL;
    uint32_t len = 0;
    tr__mp_t mp;
    tr__mp_init (&mp, value, size);
    bool is_text = par->fold == S_FOLD_TEXT && size && tr__mp_str (&mp, &text, &len) == 0;
    if (is_text) {
        while (len && isspace ((unsigned char) text [0])) {
            text++;
            len--;
        }
        while (len && isspace ((unsigned char) text [len - 1]))
            len--;
    }
    uint8_t *key = (uint8_t *) malloc (1 + (is_text? len: size));
    if (!key) {
        *oom = true;
        return -1;
    }
    key [0] = is_text? 's': 'b';
    for (size_t i = 0; is_text && i < len; i++)
        key [1 + i] = (uint8_t) tolower ((unsigned char) text [i]);
    if (!is_text && size)
        memcpy (key + 1, value, size);
    *key_p = key;
    *size_p = 1 + (is_text? len: size);
    return 0;
}

static void
s_tally_free (s_tally_t *tally)
{
    for (size_t i = 0; i < tally->distinct; i++)
        free (tally->groups [i].key);
    free (tally->groups);
}

//  Counts the votes of a finished run. An answer without the vote_key
//  field is not a vote: its member is marked failed with TR_EOUTPUT.
//  Returns 0, or -1 if memory ran out.
static int
s_tally (s_par_t *par, s_run_t *run, s_tally_t *tally)
{
    memset (tally, 0, sizeof *tally);
    tally->groups = (s_group_t *) calloc (par->count, sizeof *tally->groups);
    if (!tally->groups)
        return -1;
    for (size_t i = 0; i < par->count; i++) {
        s_leg_t *leg = &run->legs [i];
        uint8_t *key;
        size_t size;
        bool oom = false;
        if (leg->state != S_ANSWERED)
            continue;
        if (s_vote_form (par, leg, &key, &size, &oom)) {
            if (oom)
                return -1;
            leg->state = S_FAILED;
            leg->error = TR_EOUTPUT;
            tr_log (TR_LOG_WARN, "parallel '%s': member '%s' answered without the field "
                    "'%s': not a vote", tr_actor_name (par->self), par->members [i].actor,
                    par->vote_key);
            continue;
        }
        size_t g = 0;
        while (g < tally->distinct && !(tally->groups [g].key_size == size
                                        && memcmp (tally->groups [g].key, key, size) == 0))
            g++;
        if (g == tally->distinct) {
            tally->groups [g] = (s_group_t) { .key = key, .key_size = size, .first = i };
            tally->distinct++;
        }
        else
            free (key);
        tally->groups [g].votes++;
    }
    for (size_t g = 1; g < tally->distinct; g++)
        if (tally->groups [g].votes > tally->groups [tally->best].votes)
            tally->best = g;
    for (size_t g = 0; g < tally->distinct; g++)
        if (g != tally->best && tally->groups [g].votes == tally->groups [tally->best].votes)
            tally->tie = true;
    size_t votes = tally->distinct? tally->groups [tally->best].votes: 0;
    //  A share compared with a little slack, so that 3 of 5 reaches 0.6.
    tally->consensus = votes > 0 && !tally->tie
                    && (par->min_votes? (int64_t) votes >= par->min_votes
                                      : (double) votes / (double) par->count + 1e-9
                                        >= par->threshold);
    return 0;
}

//  The members that failed, as a map {member: "TR_E..."}.
static void
s_pack_failed (s_par_t *par, s_run_t *run, msgpack_packer *pk)
{
    uint32_t failed = 0;
    for (size_t i = 0; i < par->count; i++)
        failed += run->legs [i].state == S_FAILED;
    msgpack_pack_map (pk, failed);
    for (size_t i = 0; i < par->count; i++)
        if (run->legs [i].state == S_FAILED) {
            tr__pack_str (pk, par->members [i].actor);
            tr__pack_str (pk, tr_errname (run->legs [i].error));
        }
}

//  sections: the answers merged, a map by member or a list in order (nil
//  where a member did not answer).
static void
s_pack_merged (s_par_t *par, s_run_t *run, msgpack_packer *pk)
{
    uint32_t answered = 0;
    for (size_t i = 0; i < par->count; i++)
        answered += run->legs [i].state == S_ANSWERED;
    if (par->merge == S_MERGE_LIST)
        msgpack_pack_array (pk, (uint32_t) par->count);
    else
        msgpack_pack_map (pk, answered);
    for (size_t i = 0; i < par->count; i++) {
        const s_leg_t *leg = &run->legs [i];
        if (par->merge == S_MERGE_MAP && leg->state != S_ANSWERED)
            continue;
        if (par->merge == S_MERGE_MAP)
            tr__pack_str (pk, par->members [i].actor);
        if (leg->state == S_ANSWERED)
            tr__value_pack (pk, &leg->answer);
        else
            msgpack_pack_nil (pk);
    }
}

//  vote: {consensus, answer, votes, total, confidence, voters, distinct,
//  failed}.
static void
s_pack_vote (s_par_t *par, s_run_t *run, const s_tally_t *tally, msgpack_sbuffer *out)
{
    s_map_t map;
    s_map_init (&map);
    const s_group_t *best = tally->distinct? &tally->groups [tally->best]: NULL;
    size_t votes = best? best->votes: 0;
    s_pack_bool (s_map_key (&map, "consensus"), tally->consensus);
    if (tally->consensus)
        tr__value_pack (s_map_key (&map, "answer"), &run->legs [best->first].answer);
    else
        msgpack_pack_nil (s_map_key (&map, "answer"));
    msgpack_pack_uint64 (s_map_key (&map, "votes"), votes);
    msgpack_pack_uint64 (s_map_key (&map, "total"), par->count);
    msgpack_pack_double (s_map_key (&map, "confidence"), (double) votes / (double) par->count);
    //  Who voted for the answer (none without consensus: no answer won).
    msgpack_packer *pk = s_map_key (&map, "voters");
    msgpack_pack_array (pk, tally->consensus? (uint32_t) votes: 0);
    uint8_t *key;
    size_t size;
    bool oom = false;
    for (size_t i = 0; tally->consensus && i < par->count; i++) {
        if (run->legs [i].state != S_ANSWERED
        ||  s_vote_form (par, &run->legs [i], &key, &size, &oom))
            continue;
        if (size == best->key_size && memcmp (key, best->key, size) == 0)
            tr__pack_str (pk, par->members [i].actor);
        free (key);
    }
    msgpack_pack_uint64 (s_map_key (&map, "distinct"), tally->distinct);
    s_pack_failed (par, run, s_map_key (&map, "failed"));
    s_map_end (&map, out);
}

//  What the asker gets with on_failure: report, or on success: per mode.
static void
s_pack_answer (s_par_t *par, s_run_t *run, const s_tally_t *tally, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    if (par->mode == S_VOTE) {
        s_pack_vote (par, run, tally, out);
        return;
    }
    if (par->mode == S_SECTIONS && !par->report) {
        s_pack_merged (par, run, &pk);
        return;
    }
    if (par->mode == S_RACE && !par->report) {
        const s_leg_t *leg = &run->legs [run->winner];
        tr__value_pack (&pk, &leg->answer);
        return;
    }
    s_map_t map;
    s_map_init (&map);
    if (par->mode == S_SECTIONS)
        s_pack_merged (par, run, s_map_key (&map, "answers"));
    else {
        const s_leg_t *leg = run->has_winner? &run->legs [run->winner]: NULL;
        if (leg) {
            tr__pack_str (s_map_key (&map, "winner"), par->members [run->winner].actor);
            tr__value_pack (s_map_key (&map, "answer"), &leg->answer);
        }
        else {
            msgpack_pack_nil (s_map_key (&map, "winner"));
            msgpack_pack_nil (s_map_key (&map, "answer"));
        }
        uint32_t rejected = 0;
        for (size_t i = 0; i < par->count; i++)
            rejected += run->legs [i].rejected;
        msgpack_packer *list = s_map_key (&map, "rejected");
        msgpack_pack_array (list, rejected);
        for (size_t i = 0; i < par->count; i++)
            if (run->legs [i].rejected)
                tr__pack_str (list, par->members [i].actor);
    }
    s_pack_failed (par, run, s_map_key (&map, "failed"));
    s_map_end (&map, out);
}

//  The event: {parallel, mode, ms, answered, failed, cancelled} and per
//  mode: sections {error, member} on failure; vote {consensus, votes,
//  total, confidence}; race {winner, rejected} (and error on failure).
static void
s_publish (s_par_t *par, s_run_t *run, const s_tally_t *tally, int error)
{
    s_map_t map;
    msgpack_sbuffer out;
    s_map_init (&map);
    msgpack_sbuffer_init (&out);
    size_t answered = 0;
    for (size_t i = 0; i < par->count; i++)
        answered += run->legs [i].state == S_ANSWERED;
    tr__pack_str (s_map_key (&map, "parallel"), tr_actor_name (par->self));
    tr__pack_str (s_map_key (&map, "mode"), s_modes [par->mode]);
    msgpack_pack_int64 (s_map_key (&map, "ms"), (tr__now_ns () - run->started_ns) / 1000000);
    if (error)
        tr__pack_str (s_map_key (&map, "error"), tr_errname (error));
    if (par->mode == S_SECTIONS && run->failed_any)
        tr__pack_str (s_map_key (&map, "member"), par->members [run->first_failed].actor);
    if (par->mode == S_VOTE) {
        size_t votes = tally->distinct? tally->groups [tally->best].votes: 0;
        s_pack_bool (s_map_key (&map, "consensus"), tally->consensus);
        msgpack_pack_uint64 (s_map_key (&map, "votes"), votes);
        msgpack_pack_uint64 (s_map_key (&map, "total"), par->count);
        msgpack_pack_double (s_map_key (&map, "confidence"),
                             (double) votes / (double) par->count);
    }
    if (par->mode == S_RACE) {
        if (run->has_winner)
            tr__pack_str (s_map_key (&map, "winner"), par->members [run->winner].actor);
        else
            msgpack_pack_nil (s_map_key (&map, "winner"));
        uint32_t rejected = 0;
        for (size_t i = 0; i < par->count; i++)
            rejected += run->legs [i].rejected;
        msgpack_pack_uint64 (s_map_key (&map, "rejected"), rejected);
    }
    msgpack_pack_uint64 (s_map_key (&map, "answered"), answered);
    s_pack_failed (par, run, s_map_key (&map, "failed"));
    msgpack_pack_uint64 (s_map_key (&map, "cancelled"), run->cancelled);
    s_map_end (&map, &out);
    tr_event_publish (par->node, error? "parallel.failed": "parallel.completed", out.data,
                      out.size, NULL);
    msgpack_sbuffer_destroy (&out);
}

//  The error that ends a run, or TR_OK.
static int
s_outcome (s_par_t *par, s_run_t *run, const s_tally_t *tally)
{
    if (par->mode == S_SECTIONS)
        return run->failed_any? run->legs [run->first_failed].error: TR_OK;
    if (par->mode == S_VOTE)
        return tally->consensus? TR_OK: TR_ENOTFOUND;
    if (run->has_winner)
        return TR_OK;
    //  No winner: TR_EOUTPUT if some answer fell short of the quality
    //  rule, else the first failed member's error (in member order).
    for (size_t i = 0; i < par->count; i++)
        if (run->legs [i].rejected)
            return TR_EOUTPUT;
    for (size_t i = 0; i < par->count; i++)
        if (run->legs [i].state == S_FAILED)
            return run->legs [i].error;
    return TR_EOUTPUT;
}

static void
s_log_outcome (s_par_t *par, s_run_t *run, const s_tally_t *tally, int error)
{
    const char *name = tr_actor_name (par->self);
    const char *asker = run->base.from;
    if (!error)
        tr_log (TR_LOG_DEBUG, "parallel '%s': %s done for '%s' (%zu cancelled)", name,
                s_modes [par->mode], asker, run->cancelled);
    else
    if (par->mode == S_SECTIONS)
        tr_log (TR_LOG_WARN, "parallel '%s': section '%s' failed (%s) for '%s'", name,
                par->members [run->first_failed].actor, tr_strerror (error), asker);
    else
    if (par->mode == S_VOTE)
        tr_log (TR_LOG_WARN, "parallel '%s': no consensus for '%s' (%zu of %zu votes for "
                "the leading answer%s)", name, asker,
                tally->distinct? tally->groups [tally->best].votes: 0, par->count,
                tally->tie? ", tied": "");
    else
        tr_log (TR_LOG_WARN, "parallel '%s': no member won the race for '%s' (%s)", name,
                asker, tr_strerror (error));
}

//  Ends a run: the members still out are cancelled, the outcome is
//  counted, logged and published, and the asker answered.
static void
s_run_end (s_par_t *par, s_run_t *run)
{
    s_tally_t tally;
    memset (&tally, 0, sizeof tally);
    s_cancel_rest (par, run);
    if (par->mode == S_VOTE && s_tally (par, run, &tally)) {
        s_tally_free (&tally);
        tr__runs_remove (&par->runs, &run->base);
        if (run->base.ask)
            tr_reply_error (run->base.ask, TR_ENOMEM);
        s_run_free (par, run);
        return;
    }
    int error = s_outcome (par, run, &tally);
    tr_actor_info_add (par->self, error? "parallel.failed": "parallel.completed", 1);
    s_log_outcome (par, run, &tally, error);
    s_publish (par, run, &tally, error);
    tr__runs_remove (&par->runs, &run->base);
    if (run->base.ask && error && !par->report)
        tr_reply_error (run->base.ask, error);
    else
    if (run->base.ask) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init (&out);
        s_pack_answer (par, run, &tally, &out);
        int rc = tr_reply (run->base.ask, out.data, out.size);
        if (rc != TR_OK) {
            tr_log (TR_LOG_WARN, "parallel '%s': answer: %s", tr_actor_name (par->self),
                    tr_strerror (rc));
            tr_reply_error (run->base.ask, rc);
        }
        msgpack_sbuffer_destroy (&out);
    }
    s_tally_free (&tally);
    s_run_free (par, run);
}

//  Whether the run has its outcome: sections when all answered (or, with
//  on_failure: error, at the first failure); vote when all answered; race
//  at the first winner or when all answered.
static void
s_settle (s_par_t *par, s_run_t *run)
{
    bool done = run->open == 0;
    if (par->mode == S_SECTIONS && !par->report && run->failed_any)
        done = true;
    if (par->mode == S_RACE && run->has_winner)
        done = true;
    if (done)
        s_run_end (par, run);
}

//  A number in msgpack bytes (an integer or a float).
static int
s_number (const uint8_t *data, size_t size, double *out)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    if (data && msgpack_unpack_next (&unpacked, (const char *) data, size, NULL)
                == MSGPACK_UNPACK_SUCCESS
    &&  tr__number (&unpacked.data, out))
        rc = 0;
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

//  race: whether an answer is good enough to win.
static bool
s_accepts (const s_par_t *par, const uint8_t *answer, size_t size)
{
    if (par->accept == S_ACCEPT_TEXT)
        return tr__text_rule_test (&par->accept_text, answer, size);
    if (par->accept == S_ACCEPT_ANY)
        return true;
    const uint8_t *value = answer;
    size_t value_size = size;
    double number;
    if (par->accept_field && tr__body_field (answer, size, par->accept_field, &value,
                                             &value_size))
        return false;
    return s_number (value, value_size, &number) == 0 && number >= par->accept_min;
}

static void
s_leg_failed (s_par_t *par, s_run_t *run, s_leg_t *leg, int error)
{
    leg->state = S_FAILED;
    leg->error = error;
    if (!run->failed_any) {
        run->failed_any = true;
        run->first_failed = leg->index;
    }
    tr_log (TR_LOG_INFO, "parallel '%s': member '%s' failed: %s", tr_actor_name (par->self),
            par->members [leg->index].actor, tr_strerror (error));
}

//  A waiting leg's (owner's) outcome: an answer (reply), or an error.
static void
s_leg_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_par_t *par = (s_par_t *) state;
    s_leg_t *leg = (s_leg_t *) owner;
    s_run_t *run = leg->run;
    run->open--;
    if (!error && tr__value_set (&leg->answer, tr_msg_body (reply), tr_msg_size (reply)))
        error = TR_ENOMEM;
    if (error)
        s_leg_failed (par, run, leg, error);
    else {
        leg->state = S_ANSWERED;
        if (par->mode == S_RACE && !run->has_winner) {
            if (s_accepts (par, leg->answer.data, leg->answer.size)) {
                run->has_winner = true;
                run->winner = leg->index;
            }
            else {
                leg->rejected = true;
                tr_actor_info_add (par->self, "parallel.rejected", 1);
            }
        }
    }
    s_settle (par, run);
}

//  Each member's part of the body, by the split (sections) or the whole
//  body. Returns 0, or -1 with *why set when the body cannot be split.
static int
s_parts (s_par_t *par, const tr_msg_t *msg, const uint8_t **parts, size_t *sizes,
         char *why, size_t why_size)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    int split = par->mode == S_SECTIONS? par->split: S_SPLIT_WHOLE;
    if (split == S_SPLIT_WHOLE) {
        for (size_t i = 0; i < par->count; i++) {
            parts [i] = body;
            sizes [i] = size;
        }
        return 0;
    }
    if (split == S_SPLIT_FIELD) {
        for (size_t i = 0; i < par->count; i++)
            if (tr__body_field (body, size, par->members [i].field, &parts [i], &sizes [i])) {
                snprintf (why, why_size, "the body is not a map with the field '%s' "
                          "(for member '%s')", par->members [i].field, par->members [i].actor);
                return -1;
            }
        return 0;
    }
    tr__mp_t mp;
    uint32_t items = 0;
    tr__mp_init (&mp, body, size);
    if (!body || tr__mp_array (&mp, &items) != 0) {
        snprintf (why, why_size, "the body must be a list of %zu items, one per member",
                  par->count);
        return -1;
    }
    if (items != par->count) {
        snprintf (why, why_size, "the body must be a list of %zu items, one per member, "
                  "not %u", par->count, items);
        return -1;
    }
    for (size_t i = 0; i < par->count; i++) {
        parts [i] = mp.p;
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH) != 0) {
            snprintf (why, why_size, "item %zu of the list is malformed", i + 1);
            return -1;
        }
        sizes [i] = (size_t) (mp.p - parts [i]);
    }
    return 0;
}

//  Forwards every member's part at once. A member that cannot be asked
//  (no such actor, a full mailbox, an open breaker) has failed; in
//  sections with on_failure: error that ends the run, so the rest are
//  not sent.
static void
s_run_send (s_par_t *par, s_run_t *run, const uint8_t **parts, const size_t *sizes)
{
    for (size_t i = 0; i < par->count; i++) {
        s_leg_t *leg = &run->legs [i];
        //  The timeout, cut to the ask's deadline; not refused for want of
        //  memory: s_run_new reserved room for every member.
        int rc = tr__runs_request (&par->runs, &leg->wait, par->members [i].actor, parts [i],
                                   sizes [i], tr__run_ms (&run->base, par->timeout_ms));
        if (rc == TR_OK) {
            leg->state = S_WAITING;
            run->open++;
            continue;
        }
        s_leg_failed (par, run, leg, rc);
        if (par->mode == S_SECTIONS && !par->report)
            break;
    }
}

//  Answers a message that cannot be split: the asker's mistake.
static int
s_refuse (s_par_t *par, const tr_msg_t *msg, const char *why)
{
    tr_log (TR_LOG_WARN, "parallel '%s': refused %s from '%s': %s", tr_actor_name (par->self),
            tr_msg_kind (msg) == TR_KIND_ASK? "an ask": "a tell", tr_msg_from (msg), why);
    tr_actor_info_add (par->self, "parallel.refused", 1);
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_EINVAL): 0;
}

//  A message to run: split it, forward every part at once, then wait.
static int
s_run_new (void *state, const tr_msg_t *msg)
{
    s_par_t *par = (s_par_t *) state;
    const uint8_t **parts = (const uint8_t **) calloc (par->count, sizeof *parts);
    size_t *sizes = (size_t *) calloc (par->count, sizeof *sizes);
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run)
        run->legs = (s_leg_t *) calloc (par->count, sizeof *run->legs);
    int rc = 0;
    char why [256];
    if (!parts || !sizes || !run || !run->legs || tr__runs_reserve (&par->runs, par->count))
        rc = tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    else
    if (s_parts (par, msg, parts, sizes, why, sizeof why))
        rc = s_refuse (par, msg, why);
    else
    if (tr__runs_add (&par->runs, &run->base, msg))
        rc = tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    else {
        for (size_t i = 0; i < par->count; i++)
            run->legs [i] = (s_leg_t) { .run = run, .index = i, .state = S_UNSENT,
                                        .wait.owner = &run->legs [i] };
        run->started_ns = tr__now_ns ();
        s_run_send (par, run, parts, sizes);
        s_settle (par, run);            //  members that could not be asked
        run = NULL;                     //  the list's now (or freed)
    }
    s_run_free (par, run);
    free (parts);
    free (sizes);
    return rc;
}

//  A run in progress when the parallel actor stops.
static void
s_run_drop (void *state, tr__run_t *run)
{
    s_run_free ((s_par_t *) state, (s_run_t *) run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_leg_answered, s_run_drop };

static int
s_par_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_par_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed; members' late answers are
//  dead letters.
static void
s_par_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_par_t *par = (s_par_t *) state;
    tr__runs_close (&par->runs, NULL);
    s_par_free (par);
}

const tr_actor_type_t tr__parallel_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "parallel",
    .summary = "members at once: sections merged, a vote with a threshold, or a race",
    .behaviour = { s_par_init, s_par_handle, s_par_terminate },
    .params = s_parallel_params,
    .check = s_par_check,
};
