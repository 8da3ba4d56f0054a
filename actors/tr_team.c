/*  tr_team.c - the team: a lead splits a task among members, and the
    answers come back to it to be integrated (the hierarchical pattern).

    A team is asked with a task. It asks its lead for a plan, forwards
    each assignment of the plan to its member (all at once: the members
    work concurrently), gathers their answers, asks its integrator (the
    lead, unless `integrator` names another agent) to integrate them, and
    answers the asker with what the integrator answered.

    The shapes (docs/patterns.md, "team"):
        the team is asked      TASK (any value but a map), or the map
                               {task: TASK, depth: N}
        the lead is asked      {task: TASK, members: [NAME...]}
        the lead answers       {assignments: [A...]}, each A either a map
                               {member: NAME, task: VALUE} or a string
                               "NAME: TEXT" (what an llm agent's signature
                               with a `list` output gives)
        a member is asked      VALUE; a member declared `team: true` gets
                               {task: VALUE, depth: N + 1}
        the integrator gets    {task: TASK, results: [R...]} in the plan's
                               order, R = {member, task, answer} or
                               {member, task, error: "TR_..."}

    Teams of teams: a member may be another team, in this process or on
    another node (names resolve the same way). The depth travels in the
    ask ({task, depth}); a team asked deeper than its `max_depth` refuses
    with TR_ELIMIT, and a member that answers TR_ELIMIT fails the team
    that asked it with TR_ELIMIT too, whatever `on_member_failure` says,
    so that a loop of teams ends at the limit with that error at the top.
    Only members declared `team: true` get the depth: a team named as a
    plain member starts again at depth 0 (said in docs/patterns.md).

    A member that fails (an error, no answer within `timeout`, no such
    actor) is given to the integrator as an error (on_member_failure:
    integrate, the default), or fails the team with the member's error
    (on_member_failure: fail). A lead or integrator that fails, and a plan
    the team cannot read (not a map with a list `assignments`, a member
    that is not one of the team's, more than `max_assignments`), fail the
    team: TR_EOUTPUT for a plan that does not fit, the agent's own error
    otherwise.

    Events on the bus: team.delegated {team, depth, assignments: [{member,
    task}]} once the plan is sent out; team.completed {team, depth,
    assignments, failed, ms}; team.failed {team, depth, stage (depth,
    plan, member, integrate), error, reason, member?}.

    The team never waits on its thread: every ask is made with tr_request
    and a timer, and many tasks are in flight at once (team.inflight).
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    bool team;                  //  takes {task, depth} and passes the depth down
} s_member_t;

typedef enum { S_PLAN, S_MEMBERS, S_INTEGRATE } s_stage_t;

typedef struct s_run_s s_run_t;
typedef struct s_job_s s_job_t;

//  What an answer is awaited for: the lead or the integrator (job NULL),
//  or a member's assignment.
typedef struct {
    tr__wait_t request;         //  its owner is this s_wait_t
    s_run_t *run;
    s_job_t *job;
} s_wait_t;

//  One assignment of a plan, in flight or answered.
struct s_job_s {
    size_t member;              //  index in team->members
    tr__value_t task;
    s_wait_t wait;              //  its request, while in flight
    int error;                  //  TR_OK, or why the member failed
    tr__value_t answer;
};

struct s_run_s {
    tr__run_t base;             //  the deferred ask (or NULL for a tell), the sender
    tr__value_t task;
    int64_t depth;
    int stage;
    s_wait_t wait;              //  the lead's or integrator's request
    s_job_t *jobs;
    size_t njobs;
    size_t pending;             //  jobs still in flight
    int64_t started_ns;
};

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    char *lead;
    char *integrator;           //  NULL: the lead
    s_member_t *members;
    size_t count;
    int64_t timeout_ms;
    int64_t max_depth;
    int64_t max_assignments;
    bool fail_fast;             //  on_member_failure: fail
    tr__runs_t runs;            //  of s_run_t, waits of s_wait_t
} s_team_t;

static const tr__runs_calls_t s_calls;

static const tr_param_spec_t s_team_params [] = {
    { "lead", TR_PARAM_STRING, true, "the agent that plans: asked {task, members}, answers "
                                     "{assignments: [{member, task}] or [\"member: task\"]}" },
    { "members", TR_PARAM_LIST, true, "the members: actor names, or {actor, team: true} for "
                                      "a member that is a team" },
    { "integrator", TR_PARAM_STRING, false, "the agent asked {task, results} to integrate "
                                            "(default: the lead)" },
    { "timeout", TR_PARAM_DURATION, false, "how long the lead, each member and the integrator "
                                           "get (default 30s)" },
    { "max_depth", TR_PARAM_INT, false, "the deepest this team may be nested (default 4)" },
    { "max_assignments", TR_PARAM_INT, false, "assignments a plan may hold (default 16)" },
    { "on_member_failure", TR_PARAM_STRING, false, "integrate (default): the integrator gets "
                                                   "the error; fail: the team fails" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_team_free (s_team_t *team)
{
    if (!team)
        return;
    for (size_t i = 0; i < team->count; i++)
        free (team->members [i].name);
    free (team->members);
    free (team->lead);
    free (team->integrator);
    free (team);
}

//  One item of `members`: a name, or {actor: NAME, team: BOOL}.
static int
s_member_parse (tr__cfg_t *cfg, const msgpack_object *o, size_t index, s_member_t *member)
{
    static const char *const keys [] = { "actor", "team", NULL };
    char where [48], what [96];
    snprintf (where, sizeof where, "members item %zu", index + 1);
    tr__cfg_enter (cfg, "members.%zu", index + 1);
    if (o->type == MSGPACK_OBJECT_STR) {
        msgpack_object_kv kv = { .key = { .type = MSGPACK_OBJECT_STR,
                                          .via.str = { .size = 5, .ptr = "actor" } },
                                 .val = *o };
        msgpack_object map = { .type = MSGPACK_OBJECT_MAP, .via.map = { .size = 1, .ptr = &kv } };
        return tr__cfg_name_in (cfg, &map, "actor", where, &member->name);
    }
    if (o->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "%s must be an actor name or a mapping {actor, team}, not %s",
                            where, tr__cfg_kind (o));
    if (tr__cfg_keys (cfg, o, where, keys))
        return -1;
    snprintf (what, sizeof what, "%s 'actor'", where);
    if (tr__cfg_name_in (cfg, o, "actor", what, &member->name))
        return -1;
    if (!member->name)
        return tr__cfg_bad (cfg, "%s needs 'actor', the member's name", where);
    const msgpack_object *team = tr__cfg_get (cfg, o, "team");
    if (team && team->type != MSGPACK_OBJECT_BOOLEAN)
        return tr__cfg_bad_at (cfg, "team", "%s 'team' must be true or false, not %s", where,
                               tr__cfg_kind (team));
    member->team = team && team->via.boolean;
    return 0;
}

static int
s_members_parse (s_team_t *team, tr__cfg_t *cfg)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "members");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "members", "'members' must be a list of at least one member");
    team->members = (s_member_t *) calloc (list->via.array.size, sizeof *team->members);
    if (!team->members)
        return tr__cfg_bad (cfg, "out of memory");
    for (size_t i = 0; i < list->via.array.size; i++) {
        team->count = i + 1;            //  so that s_team_free frees this one too
        if (s_member_parse (cfg, &list->via.array.ptr [i], i, &team->members [i]))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp (team->members [j].name, team->members [i].name) == 0)
                return tr__cfg_bad (cfg, "'members' names '%s' twice (items %zu and %zu)",
                                    team->members [i].name, j + 1, i + 1);
    }
    tr__cfg_enter (cfg, "%s", "");
    return 0;
}

static int
s_team_configure (s_team_t *team, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "integrate", "fail", NULL };
    int on_failure = 0;
    team->timeout_ms = 30000;
    team->max_depth = 4;
    team->max_assignments = 16;
    if (tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &team->timeout_ms)
    ||  tr__cfg_int (cfg, "max_depth", 0, 64, &team->max_depth)
    ||  tr__cfg_int (cfg, "max_assignments", 1, 1000, &team->max_assignments)
    ||  tr__cfg_choice (cfg, "on_member_failure", failures, &on_failure)
    ||  tr__cfg_name_in (cfg, NULL, "lead", "lead", &team->lead)
    ||  tr__cfg_name_in (cfg, NULL, "integrator", "integrator", &team->integrator))
        return -1;
    team->fail_fast = on_failure == 1;
    if (!team->lead)
        return tr__cfg_bad (cfg, "'lead' is required: the agent that plans");
    if (s_members_parse (team, cfg))
        return -1;
    return 0;
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_team_check, "team", s_team_t, s_team_configure, s_team_free)

static int
s_team_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_team_t *team = (s_team_t *) calloc (1, sizeof *team);
    int rc = tr__cfg_open (&cfg, "team", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !team)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_team_configure (team, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_team_free (team);
        return -1;
    }
    tr__cfg_close (&cfg);
    team->self = self;
    team->node = tr_actor_node (self);
    tr__runs_init (&team->runs, self, "team", &s_calls, team);
    *state_p = team;
    return 0;
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run_free (s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; i < run->njobs; i++) {
        tr__value_free (&run->jobs [i].task);
        tr__value_free (&run->jobs [i].answer);
    }
    free (run->jobs);
    tr__value_free (&run->task);
    tr__run_free (&run->base);          //  an ask unanswered: the asker gets TR_ENOREPLY
}

//  Stops waiting for what the run still waits for; answers that come
//  later find nothing.
static void
s_run_quiet (s_team_t *team, s_run_t *run)
{
    tr__runs_unwait (&team->runs, &run->wait.request);
    for (size_t i = 0; i < run->njobs; i++)
        tr__runs_unwait (&team->runs, &run->jobs [i].wait.request);
}

//  Ms an ask may take: the team's timeout, cut to the asker's deadline.
static int
s_ask_ms (const s_team_t *team, const s_run_t *run)
{
    return tr__run_ms (&run->base, team->timeout_ms);
}

//  Sends body to `to`, wait (of run, and of job unless NULL) awaiting
//  its answer. TR_OK, or why it could not be sent.
static int
s_request (s_team_t *team, s_run_t *run, s_job_t *job, s_wait_t *wait, const char *to,
           const void *body, size_t size)
{
    wait->run = run;
    wait->job = job;
    wait->request.owner = wait;
    return tr__runs_request (&team->runs, &wait->request, to, body, size,
                             s_ask_ms (team, run));
}

static void
s_publish (s_team_t *team, const char *topic, msgpack_sbuffer *buffer)
{
    int rc = tr_event_publish (team->node, topic, buffer->data, buffer->size, NULL);
    if (rc != TR_OK)
        tr_log (TR_LOG_WARN, "team '%s': could not publish %s: %s", tr_actor_name (team->self),
                topic, tr_strerror (rc));
}

//  Ends a run that failed: logged, published as team.failed, and the
//  asker gets the error. member is NULL unless a member's failure is why.
static void
s_fail (s_team_t *team, s_run_t *run, int error, const char *stage, const char *member,
        const char *reason)
{
    s_run_quiet (team, run);
    tr_log (TR_LOG_WARN, "team '%s': %s for %s from '%s' failed (%s): %s",
            tr_actor_name (team->self), stage, run->base.ask? "an ask": "a tell", run->base.from,
            tr_errname (error), reason);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, member? 6: 5);
    tr__pack_str (&pk, "team");
    tr__pack_str (&pk, tr_actor_name (team->self));
    tr__pack_str (&pk, "depth");
    msgpack_pack_int64 (&pk, run->depth);
    tr__pack_str (&pk, "stage");
    tr__pack_str (&pk, stage);
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, tr_errname (error));
    tr__pack_str (&pk, "reason");
    tr__pack_str (&pk, reason);
    if (member) {
        tr__pack_str (&pk, "member");
        tr__pack_str (&pk, member);
    }
    s_publish (team, "team.failed", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    tr_actor_info_add (team->self, "team.failed", 1);
    tr__runs_remove (&team->runs, &run->base);
    if (run->base.ask)
        tr_reply_error (run->base.ask, error);
    s_run_free (run);
}

//  The integrator answered: the run's answer.
static void
s_succeed (s_team_t *team, s_run_t *run, const tr_msg_t *reply)
{
    size_t failed = 0;
    for (size_t i = 0; i < run->njobs; i++)
        failed += run->jobs [i].error != TR_OK;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    tr__pack_str (&pk, "team");
    tr__pack_str (&pk, tr_actor_name (team->self));
    tr__pack_str (&pk, "depth");
    msgpack_pack_int64 (&pk, run->depth);
    tr__pack_str (&pk, "assignments");
    msgpack_pack_uint64 (&pk, run->njobs);
    tr__pack_str (&pk, "failed");
    msgpack_pack_uint64 (&pk, failed);
    tr__pack_str (&pk, "ms");
    msgpack_pack_int64 (&pk, (tr__now_ns () - run->started_ns) / 1000000);
    s_publish (team, "team.completed", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    tr_log (TR_LOG_INFO, "team '%s': integrated %zu result(s), %zu failed, at depth %lld in "
            "%lld ms", tr_actor_name (team->self), run->njobs, failed, (long long) run->depth,
            (long long) ((tr__now_ns () - run->started_ns) / 1000000));
    tr_actor_info_add (team->self, "team.completed", 1);
    tr__runs_remove (&team->runs, &run->base);
    if (run->base.ask) {
        int rc = tr_reply (run->base.ask, tr_msg_body (reply), tr_msg_size (reply));
        if (rc != TR_OK)
            tr_reply_error (run->base.ask, rc);
    }
    s_run_free (run);
}

//  Asks the integrator with {task, results}.
static void
s_integrate (s_team_t *team, s_run_t *run)
{
    const char *integrator = team->integrator? team->integrator: team->lead;
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->task);
    tr__pack_str (&pk, "results");
    msgpack_pack_array (&pk, (uint32_t) run->njobs);
    for (size_t i = 0; i < run->njobs; i++) {
        const s_job_t *job = &run->jobs [i];
        msgpack_pack_map (&pk, 3);
        tr__pack_str (&pk, "member");
        tr__pack_str (&pk, team->members [job->member].name);
        tr__pack_str (&pk, "task");
        tr__value_pack (&pk, &job->task);
        if (job->error) {
            tr__pack_str (&pk, "error");
            tr__pack_str (&pk, tr_errname (job->error));
        }
        else {
            tr__pack_str (&pk, "answer");
            tr__value_pack (&pk, &job->answer);
        }
    }
    run->stage = S_INTEGRATE;
    int rc = !buffer.data? TR_ENOMEM
           : s_request (team, run, NULL, &run->wait, integrator, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    if (rc != TR_OK) {
        char why [300];
        snprintf (why, sizeof why, "integrator '%s' could not be asked: %s", integrator,
                  tr_strerror (rc));
        s_fail (team, run, rc, "integrate", NULL, why);
    }
}

//  Asks the lead for a plan: {task, members}.
static void
s_plan (s_team_t *team, s_run_t *run)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    tr__pack_str (&pk, "task");
    tr__value_pack (&pk, &run->task);
    tr__pack_str (&pk, "members");
    msgpack_pack_array (&pk, (uint32_t) team->count);
    for (size_t i = 0; i < team->count; i++)
        tr__pack_str (&pk, team->members [i].name);
    run->stage = S_PLAN;
    int rc = !buffer.data? TR_ENOMEM
           : s_request (team, run, NULL, &run->wait, team->lead, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    if (rc != TR_OK) {
        char why [300];
        snprintf (why, sizeof why, "lead '%s' could not be asked: %s", team->lead,
                  tr_strerror (rc));
        s_fail (team, run, rc, "plan", NULL, why);
    }
}

//  The member called name (len bytes), or -1.
static ssize_t
s_member_find (const s_team_t *team, const char *name, size_t len)
{
    for (size_t i = 0; i < team->count; i++)
        if (strlen (team->members [i].name) == len
        &&  memcmp (team->members [i].name, name, len) == 0)
            return (ssize_t) i;
    return -1;
}

//  Reads one assignment of a plan (bytes of one msgpack value) into job.
//  Returns 0, or -1 with why.
static int
s_assignment_read (s_team_t *team, const uint8_t *item, size_t size, size_t index,
                   s_job_t *job, char *why, size_t why_size)
{
    tr__mp_t mp;
    const char *text, *name = NULL;
    uint32_t len, name_len = 0;
    const uint8_t *task = NULL;
    size_t task_size = 0;
    tr__mp_init (&mp, item, size);
    if (tr__mp_str (&mp, &text, &len) == 0) {
        //  "NAME: TEXT": the member's name, a colon, the task.
        const char *colon = memchr (text, ':', len);
        if (!colon) {
            snprintf (why, why_size, "assignment %zu \"%.*s\" is not \"member: task\"",
                      index + 1, (int) (len > 60? 60: len), text);
            return -1;
        }
        name = text;
        name_len = (uint32_t) (colon - text);
        while (name_len && isspace ((unsigned char) name [name_len - 1]))
            name_len--;
        while (name_len && isspace ((unsigned char) *name)) {
            name++;
            name_len--;
        }
        const char *rest = colon + 1;
        size_t rest_len = len - (size_t) (rest - text);
        while (rest_len && isspace ((unsigned char) *rest)) {
            rest++;
            rest_len--;
        }
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init (&sb);
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body (&pk, rest, rest_len);
        job->task.data = (uint8_t *) sb.data;       //  the job's now
        job->task.size = sb.size;
        if (!sb.data) {
            snprintf (why, why_size, "out of memory");
            return -1;
        }
    }
    else {
        const uint8_t *value;
        size_t value_size;
        tr__mp_t m;
        if (tr__body_field (item, size, "member", &value, &value_size)
        ||  (tr__mp_init (&m, value, value_size), tr__mp_str (&m, &name, &name_len))) {
            snprintf (why, why_size, "assignment %zu is neither \"member: task\" nor a map "
                      "with a string 'member'", index + 1);
            return -1;
        }
        if (tr__body_field (item, size, "task", &task, &task_size)) {
            snprintf (why, why_size, "assignment %zu (member '%.*s') has no 'task'", index + 1,
                      (int) (name_len > 60? 60: name_len), name);
            return -1;
        }
    }
    ssize_t member = s_member_find (team, name, name_len);
    if (member < 0) {
        snprintf (why, why_size, "assignment %zu names '%.*s', who is not a member of the team",
                  index + 1, (int) (name_len > 60? 60: name_len), name);
        return -1;
    }
    job->member = (size_t) member;
    if (task && tr__value_set (&job->task, task, task_size)) {
        snprintf (why, why_size, "out of memory");
        return -1;
    }
    return 0;
}

//  Reads the lead's plan into run->jobs. Returns 0, or -1 with why.
static int
s_plan_read (s_team_t *team, s_run_t *run, const tr_msg_t *reply, char *why, size_t why_size)
{
    const uint8_t *list;
    size_t list_size;
    uint32_t count;
    tr__mp_t mp;
    if (tr__body_field (tr_msg_body (reply), tr_msg_size (reply), "assignments", &list,
                        &list_size)
    ||  (tr__mp_init (&mp, list, list_size), tr__mp_array (&mp, &count))) {
        snprintf (why, why_size, "the plan is not a map with a list 'assignments'");
        return -1;
    }
    if (count > team->max_assignments) {
        snprintf (why, why_size, "the plan has %u assignments, more than max_assignments (%lld)",
                  count, (long long) team->max_assignments);
        return -1;
    }
    run->jobs = (s_job_t *) calloc (count? count: 1, sizeof *run->jobs);
    if (!run->jobs) {
        snprintf (why, why_size, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *item = mp.p;
        if (tr__mp_skip (&mp, TR_BODY_MAX_DEPTH)) {
            snprintf (why, why_size, "the plan is malformed");
            return -1;
        }
        run->njobs = i + 1;             //  so that s_run_free frees this one too
        if (s_assignment_read (team, item, (size_t) (mp.p - item), i, &run->jobs [i], why,
                               why_size))
            return -1;
    }
    return 0;
}

//  What a member is asked: the task, or {task, depth + 1} for a team.
static int
s_job_body (const s_team_t *team, const s_run_t *run, const s_job_t *job,
            msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    if (team->members [job->member].team) {
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "task");
        tr__value_pack (&pk, &job->task);
        tr__pack_str (&pk, "depth");
        msgpack_pack_int64 (&pk, run->depth + 1);
    }
    else
        tr__value_pack (&pk, &job->task);
    return buffer->data? 0: -1;
}

//  team.delegated: {team, depth, assignments: [{member, task}]}.
static void
s_publish_delegated (s_team_t *team, s_run_t *run)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "team");
    tr__pack_str (&pk, tr_actor_name (team->self));
    tr__pack_str (&pk, "depth");
    msgpack_pack_int64 (&pk, run->depth);
    tr__pack_str (&pk, "assignments");
    msgpack_pack_array (&pk, (uint32_t) run->njobs);
    for (size_t i = 0; i < run->njobs; i++) {
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "member");
        tr__pack_str (&pk, team->members [run->jobs [i].member].name);
        tr__pack_str (&pk, "task");
        tr__value_pack (&pk, &run->jobs [i].task);
    }
    s_publish (team, "team.delegated", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    tr_log (TR_LOG_INFO, "team '%s': %zu assignment(s) sent out at depth %lld",
            tr_actor_name (team->self), run->njobs, (long long) run->depth);
}

//  A member failed: with on_member_failure: fail, or past the depth
//  limit below, that ends the run (true); otherwise it is logged, and
//  the integrator will be told.
static bool
s_member_failed (s_team_t *team, s_run_t *run, const s_job_t *job)
{
    const char *name = team->members [job->member].name;
    if (team->fail_fast || job->error == TR_ELIMIT) {
        char why [300];
        snprintf (why, sizeof why, "member '%s' failed: %s%s", name, tr_strerror (job->error),
                  job->error == TR_ELIMIT? " (the depth limit was passed below it)": "");
        s_fail (team, run, job->error, "member", name, why);
        return true;
    }
    tr_log (TR_LOG_INFO, "team '%s': member '%s' failed (%s); the integrator is told",
            tr_actor_name (team->self), name, tr_errname (job->error));
    return false;
}

//  Sends every assignment at once; the members work concurrently.
static void
s_delegate (s_team_t *team, s_run_t *run)
{
    run->stage = S_MEMBERS;
    s_publish_delegated (team, run);
    tr_actor_info_add (team->self, "team.delegated", (int64_t) run->njobs);
    int ms = s_ask_ms (team, run);
    for (size_t i = 0; i < run->njobs; i++) {
        s_job_t *job = &run->jobs [i];
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        job->error = ms <= 0? TR_ETIMEDOUT: s_job_body (team, run, job, &buffer)? TR_ENOMEM
                   : s_request (team, run, job, &job->wait, team->members [job->member].name,
                                buffer.data, buffer.size);
        msgpack_sbuffer_destroy (&buffer);
        if (job->error == TR_OK)
            run->pending++;
    }
    //  Those that could not be sent (no such actor, a full mailbox, an
    //  open breaker) have failed already.
    for (size_t i = 0; i < run->njobs; i++)
        if (run->jobs [i].error && s_member_failed (team, run, &run->jobs [i]))
            return;
    if (run->pending == 0)
        s_integrate (team, run);
}

//  The lead answered (or failed).
static void
s_planned (s_team_t *team, s_run_t *run, const tr_msg_t *reply, int error)
{
    char why [300];
    if (error) {
        snprintf (why, sizeof why, "lead '%s' failed: %s", team->lead, tr_strerror (error));
        s_fail (team, run, error, "plan", NULL, why);
        return;
    }
    if (s_plan_read (team, run, reply, why, sizeof why)) {
        char full [400];
        snprintf (full, sizeof full, "lead '%s': %s", team->lead, why);
        s_fail (team, run, TR_EOUTPUT, "plan", NULL, full);
        return;
    }
    s_delegate (team, run);
}

//  A job in flight ended: its answer, or error. The last one to end
//  starts the integration.
static void
s_job_done (s_team_t *team, s_run_t *run, s_job_t *job, const tr_msg_t *reply, int error)
{
    job->error = error;
    run->pending--;
    if (!error && tr__value_set (&job->answer, tr_msg_body (reply), tr_msg_size (reply)))
        job->error = TR_ENOMEM;
    if (job->error && s_member_failed (team, run, job))
        return;
    if (run->pending == 0)
        s_integrate (team, run);
}

//  A new task: checks its shape and depth, then asks the lead.
static int
s_run_new (void *state, const tr_msg_t *msg)
{
    s_team_t *team = (s_team_t *) state;
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    const uint8_t *task = body;
    size_t task_size = size;
    int64_t depth = 0;
    bool ask = tr_msg_kind (msg) == TR_KIND_ASK;
    tr__mp_t mp;
    uint32_t pairs;
    tr__mp_init (&mp, body, size);
    if (size && tr__mp_map (&mp, &pairs) == 0) {
        //  {task, depth}: nothing else.
        const uint8_t *value;
        size_t value_size;
        bool bad = pairs < 1 || pairs > 2
                || tr__body_field (body, size, "task", &task, &task_size);
        if (!bad && pairs == 2) {
            tr__mp_t d;
            bad = tr__body_field (body, size, "depth", &value, &value_size)
               || (tr__mp_init (&d, value, value_size), tr__mp_int (&d, &depth)) || depth < 0;
        }
        if (bad) {
            tr_log (TR_LOG_WARN, "team '%s': %s from '%s' is a map but not {task, depth}",
                    tr_actor_name (team->self), ask? "an ask": "a tell", tr_msg_from (msg));
            return ask? tr_reply_error (msg, TR_EINVAL): 0;
        }
    }
    if (size == 0) {
        tr_log (TR_LOG_WARN, "team '%s': %s from '%s' has no task",
                tr_actor_name (team->self), ask? "an ask": "a tell", tr_msg_from (msg));
        return ask? tr_reply_error (msg, TR_EINVAL): 0;
    }
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (!run || tr__value_set (&run->task, task, task_size)
    ||  tr__runs_add (&team->runs, &run->base, msg)) {
        s_run_free (run);
        return ask? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    run->depth = depth;
    run->started_ns = tr__now_ns ();
    if (depth > team->max_depth) {
        char why [200];
        snprintf (why, sizeof why, "asked at depth %lld, past max_depth %lld (teams nested "
                  "too deep, or a loop of teams)", (long long) depth,
                  (long long) team->max_depth);
        s_fail (team, run, TR_ELIMIT, "depth", NULL, why);
        return 0;
    }
    s_plan (team, run);
    return 0;
}

//  An answer (or error, or timeout: reply NULL) for what a run waits for
//  (owner: its s_wait_t).
static void
s_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_team_t *team = (s_team_t *) state;
    s_wait_t *wait = (s_wait_t *) owner;
    s_run_t *run = wait->run;
    if (wait->job) {
        s_job_done (team, run, wait->job, reply, error);
        return;
    }
    if (run->stage == S_PLAN)
        s_planned (team, run, reply, error);
    else
    if (error) {
        char why [300];
        const char *integrator = team->integrator? team->integrator: team->lead;
        snprintf (why, sizeof why, "integrator '%s' failed: %s", integrator, tr_strerror (error));
        s_fail (team, run, error, "integrate", NULL, why);
    }
    else
        s_succeed (team, run, reply);
}

//  A run abandoned when the team stops.
static void
s_run_drop (void *state, tr__run_t *run)
{
    s_run_quiet ((s_team_t *) state, (s_run_t *) run);
    s_run_free ((s_run_t *) run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_answered, s_run_drop };

static int
s_team_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_team_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed.
static void
s_team_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_team_t *team = (s_team_t *) state;
    tr__runs_close (&team->runs, NULL);
    s_team_free (team);
}

const tr_actor_type_t tr__team_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "team",
    .summary = "a lead plans, members work concurrently, the lead integrates (hierarchical; "
               "teams of teams with a depth limit)",
    .behaviour = { s_team_init, s_team_handle, s_team_terminate },
    .params = s_team_params,
    .check = s_team_check,
};
