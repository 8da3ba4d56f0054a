/*  tr_team_test.c - tests of the team (actors/tr_team.c), the
    hierarchical pattern, started from tree files.

    The lead is asked for a plan first, the members get their assignments
    after it, all at once (their start and end times overlap, measured),
    and the integrator is asked after the last member ended, with the
    results in the plan's order; teams of teams, the depth carried down,
    the depth limit (a loop of teams ends with TR_ELIMIT); members that
    fail, time out or do not exist, given to the integrator or failing
    the team; plans that do not fit; an llm lead and integrator with
    signatures on the offline backend; the events; a sub-team in another
    process through a real `troupe broker` (this program run again as a
    node: "tr_team_test node ENDPOINT"), its members overlapping with the
    local one; bad parameters at their file, line and column.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_json.h"

#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What happened, in order, with when: "plan LEAD", "start W", "end W",
//  "integrate LEAD".
#define S_EVENTS 256
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char what [64];
    int64_t ns;
} s_events [S_EVENTS];
static size_t s_nevents;
static char s_integrated [8192];        //  each integrate ask, as "LEAD JSON\n"

static void
s_record (const char *what, const char *name)
{
    pthread_mutex_lock (&s_lock);
    if (s_nevents < S_EVENTS) {
        snprintf (s_events [s_nevents].what, sizeof s_events [s_nevents].what, "%s %s", what,
                  name);
        s_events [s_nevents].ns = tr__now_ns ();
        s_nevents++;
    }
    pthread_mutex_unlock (&s_lock);
}

//  When `what` happened (the first time), or -1.
static int64_t
s_when (const char *what)
{
    int64_t ns = -1;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nevents && ns < 0; i++)
        if (strcmp (s_events [i].what, what) == 0)
            ns = s_events [i].ns;
    pthread_mutex_unlock (&s_lock);
    return ns;
}

//  --------------------------------------------------------------------------
//  Test actors

//  worker: answers a string ask with the string plus "+NAME" after
//  `delay`; `fail: true` fails; `stamp: true` prints "stamp NAME START
//  END" on standard output (the node process's workers).
typedef struct {
    int64_t delay_ms;
    bool fail;
    bool stamp;
} s_worker_t;

static const tr_param_spec_t s_worker_params [] = {
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every message" },
    { "stamp", TR_PARAM_BOOL, false, "print start and end times" },
    { .key = NULL }
};

static int
s_worker_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_worker_t *worker = (s_worker_t *) calloc (1, sizeof *worker);
    const tr_params_t *params = (const tr_params_t *) arg;
    if (params) {
        tr_params_duration (params, "delay", &worker->delay_ms);
        tr_params_bool (params, "fail", &worker->fail);
        tr_params_bool (params, "stamp", &worker->stamp);
    }
    *state_p = worker;
    return 0;
}

static int
s_worker_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_worker_t *worker = (s_worker_t *) state;
    const char *name = tr_actor_name (self);
    int64_t start = tr__now_ns ();
    s_record ("start", name);
    if (worker->delay_ms)
        usleep ((useconds_t) worker->delay_ms * 1000);
    s_record ("end", name);
    if (worker->stamp) {
        printf ("stamp %s %lld %lld\n", name, (long long) start, (long long) tr__now_ns ());
        fflush (stdout);
    }
    if (worker->fail)
        return -1;
    const char *text = "";
    size_t len = 0;
    if (tr_msg_str (msg, &text, &len) != TR_OK)
        return tr_reply_error (msg, TR_EINVAL);
    char out [300];
    int n = snprintf (out, sizeof out, "%.*s+%s", (int) len, text, name);
    tr_body_t body;
    tr_body_str (&body, out, (size_t) n);
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, body.data, body.size): 0;
}

static const tr_actor_type_t s_worker_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "worker",
    .summary = "appends its name to a string (team tests)",
    .behaviour = { s_worker_init, s_worker_handle, tr_test_free_state },
    .params = s_worker_params,
};

//  lead: plans and integrates.
//    {task, members}  records "plan NAME" and answers {assignments: [{member:
//                     M, task: "TASK>M"}...]} for each member (as "M: TASK>M"
//                     strings with `strings: true`); with `plan: JSON` it
//                     answers that JSON instead (plans that do not fit)
//    {task, results}  records "integrate NAME" and the ask, and answers
//                     "TASK=" and each result, "M:ANSWER" or "M!ERROR",
//                     joined by " | "
typedef struct {
    bool strings;
    char *plan;                 //  msgpack of the `plan` JSON, or NULL
    size_t plan_size;
} s_lead_t;

static const tr_param_spec_t s_lead_params [] = {
    { "strings", TR_PARAM_BOOL, false, "assignments as \"member: task\" strings" },
    { "plan", TR_PARAM_STRING, false, "a fixed plan, as JSON" },
    { .key = NULL }
};

static int
s_lead_init (tr_actor_t *self, void *arg, void **state_p)
{
    (void) self;
    s_lead_t *lead = (s_lead_t *) calloc (1, sizeof *lead);
    const tr_params_t *params = (const tr_params_t *) arg;
    const char *plan;
    size_t len;
    if (params) {
        tr_params_bool (params, "strings", &lead->strings);
        if (tr_params_str (params, "plan", &plan, &len) == TR_OK
        &&  tr__json_parse (plan, len, &lead->plan, &lead->plan_size, NULL)) {
            free (lead);
            return -1;
        }
    }
    *state_p = lead;
    return 0;
}

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static void
s_lead_plan (s_lead_t *lead, const msgpack_object *task, const msgpack_object *members,
             msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "assignments", 11);
    msgpack_pack_array (pk, members->via.array.size);
    for (uint32_t i = 0; i < members->via.array.size; i++) {
        const msgpack_object *m = &members->via.array.ptr [i];
        char text [300];
        int n = snprintf (text, sizeof text, "%.*s>%.*s", (int) task->via.str.size,
                          task->via.str.ptr, (int) m->via.str.size, m->via.str.ptr);
        if (lead->strings) {
            char line [400];
            int k = snprintf (line, sizeof line, "%.*s: %s", (int) m->via.str.size,
                              m->via.str.ptr, text);
            msgpack_pack_str_with_body (pk, line, (size_t) k);
            continue;
        }
        msgpack_pack_map (pk, 2);
        msgpack_pack_str_with_body (pk, "member", 6);
        msgpack_pack_object (pk, *m);
        msgpack_pack_str_with_body (pk, "task", 4);
        msgpack_pack_str_with_body (pk, text, (size_t) n);
    }
}

static void
s_lead_integrate (const msgpack_object *task, const msgpack_object *results, msgpack_packer *pk)
{
    char out [2000];
    size_t used = (size_t) snprintf (out, sizeof out, "%.*s=", (int) task->via.str.size,
                                     task->via.str.ptr);
    for (uint32_t i = 0; i < results->via.array.size; i++) {
        const msgpack_object *r = &results->via.array.ptr [i];
        const msgpack_object *member = s_get (r, "member");
        const msgpack_object *answer = s_get (r, "answer");
        const msgpack_object *error = s_get (r, "error");
        const msgpack_object *said = answer? answer: error;
        static const msgpack_object other = { .type = MSGPACK_OBJECT_STR,
                                              .via.str = { .size = 7, .ptr = "(value)" } };
        if (!member || member->type != MSGPACK_OBJECT_STR)
            member = &other;
        if (!said || said->type != MSGPACK_OBJECT_STR)
            said = &other;
        used += (size_t) snprintf (out + used, sizeof out - used, "%s%.*s%s%.*s",
                                   i? " | ": "", (int) member->via.str.size,
                                   member->via.str.ptr, answer? ":": "!",
                                   (int) said->via.str.size, said->via.str.ptr);
    }
    msgpack_pack_str_with_body (pk, out, used);
}

static int
s_lead_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_lead_t *lead = (s_lead_t *) state;
    //  (No Check asserts in actors: they run in the node process too; a
    //  lead that fails fails the test through the team's answer.)
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *task = NULL, *members = NULL, *results = NULL;
    if (msgpack_unpack_next (&unpacked, tr_msg_body (msg), tr_msg_size (msg), NULL)
        == MSGPACK_UNPACK_SUCCESS) {
        task = s_get (&unpacked.data, "task");
        members = s_get (&unpacked.data, "members");
        results = s_get (&unpacked.data, "results");
    }
    if (!task || task->type != MSGPACK_OBJECT_STR || (!members && !results)) {
        msgpack_unpacked_destroy (&unpacked);
        return -1;
    }
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    if (members) {
        s_record ("plan", tr_actor_name (self));
        if (lead->plan)
            msgpack_sbuffer_write (&buffer, lead->plan, lead->plan_size);
        else
            s_lead_plan (lead, task, members, &pk);
    }
    else {
        s_record ("integrate", tr_actor_name (self));
        tr_test_text_add (s_integrated, sizeof s_integrated, tr_actor_name (self), tr_msg_body (msg),
                  tr_msg_size (msg));
        s_lead_integrate (task, results, &pk);
    }
    int rc = tr_reply (msg, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

static void
s_lead_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_lead_t *lead = (s_lead_t *) state;
    free (lead->plan);
    free (lead);
}

static const tr_actor_type_t s_lead_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "lead",
    .summary = "plans one assignment per member, integrates by joining (team tests)",
    .behaviour = { s_lead_init, s_lead_handle, s_lead_terminate },
    .params = s_lead_params,
};

static const tr_actor_type_t *const s_types [] = {
    &s_worker_type, &s_lead_type, &tr_test_events_type, NULL
};

//  Registers the test types (in the node process, which has no Check);
//  false if one could not be.
static bool
s_register_types (void)
{
    for (size_t i = 0; s_types [i]; i++) {
        int rc = tr_actor_type_register (s_types [i]);
        if (rc != TR_OK && rc != TR_EEXIST)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    pthread_mutex_lock (&s_lock);
    s_nevents = 0;
    pthread_mutex_unlock (&s_lock);
    tr_test_text_clear (s_integrated);
    tr_test_setup (&s_node, s_types);
    tr_test_ledger_clear ();
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start_on (tr_node_t *node, const char *yaml)
{
    tr_test_tree_start (node, yaml, "team.yaml", &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    s_start_on (s_node, yaml);
}

//  Asks `to` with a body; on TR_OK, *answer (if not NULL) is the answer
//  as JSON (malloc'd).
static int
s_ask_body (tr_node_t *node, const char *to, const void *data, size_t size, int timeout_ms,
            char **answer)
{
    tr_msg_t *reply = NULL;
    int rc = tr_ask (node, to, data, size, timeout_ms, &reply, NULL);
    if (rc == TR_OK && answer) {
        size_t len;
        ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply),
                                                 answer, &len), 0);
    }
    tr_msg_destroy (&reply);
    return rc;
}

static int
s_ask_on (tr_node_t *node, const char *to, const char *text, int timeout_ms, char **answer)
{
    return tr_test_ask_json (node, to, text, timeout_ms, answer);
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return s_ask_on (s_node, to, text, 5000 * tr_test_slowdown (), answer);
}

static void
s_expect_answer (const char *team, const char *text, const char *json)
{
    tr_test_expect_answer (s_node, team, text, 5000 * tr_test_slowdown (), json);
}

static int64_t
s_info (const char *actor, const char *key)
{
    return tr_test_info (s_node, actor, key);
}

//  --------------------------------------------------------------------------

START_TEST (test_order)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: boss, actor: lead}\n"
             "  - {name: a, actor: worker, params: {delay: 50ms}}\n"
             "  - {name: b, actor: worker, params: {delay: 50ms}}\n"
             "  - {name: c, actor: worker}\n"
             "  - {name: crew, actor: team, params: {lead: boss, members: [a, b, c]}}\n");
    //  The integrator's answer is the team's answer; it got the results
    //  in the plan's order (c, the quickest, is still third).
    s_expect_answer ("crew", "q", "\"q=a:q>a+a | b:q>b+b | c:q>c+c\"");
    char *integrated = tr_test_text_copy (s_integrated);
    ck_assert_str_eq (integrated, "boss {\"task\":\"q\",\"results\":["
                      "{\"member\":\"a\",\"task\":\"q>a\",\"answer\":\"q>a+a\"},"
                      "{\"member\":\"b\",\"task\":\"q>b\",\"answer\":\"q>b+b\"},"
                      "{\"member\":\"c\",\"task\":\"q>c\",\"answer\":\"q>c+c\"}]}\n");
    free (integrated);
    //  Delegation after the plan; integration after the last member.
    int64_t plan = s_when ("plan boss"), integrate = s_when ("integrate boss");
    ck_assert (plan > 0 && integrate > plan);
    const char *workers [] = { "a", "b", "c" };
    for (int i = 0; i < 3; i++) {
        char what [32];
        snprintf (what, sizeof what, "start %s", workers [i]);
        int64_t start = s_when (what);
        snprintf (what, sizeof what, "end %s", workers [i]);
        int64_t end = s_when (what);
        ck_assert_msg (start > plan && end >= start && end < integrate,
                       "%s: plan %lld start %lld end %lld integrate %lld", workers [i],
                       (long long) plan, (long long) start, (long long) end,
                       (long long) integrate);
    }
    ck_assert_int_eq (s_info ("crew", "team.completed"), 1);
    ck_assert_int_eq (s_info ("crew", "team.delegated"), 3);
    ck_assert_int_eq (s_info ("crew", "team.inflight"), 0);
}
END_TEST

START_TEST (test_members_overlap)
{
    //  Three members that take 300 ms each work at the same time: each
    //  starts before any ends.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: boss, actor: lead}\n"
             "  - {name: a, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: b, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: c, actor: worker, params: {delay: 300ms}}\n"
             "  - {name: crew, actor: team, params: {lead: boss, members: [a, b, c]}}\n");
    s_expect_answer ("crew", "q", "\"q=a:q>a+a | b:q>b+b | c:q>c+c\"");
    int64_t last_start = 0, first_end = INT64_MAX;
    const char *workers [] = { "a", "b", "c" };
    for (int i = 0; i < 3; i++) {
        char what [32];
        snprintf (what, sizeof what, "start %s", workers [i]);
        int64_t start = s_when (what);
        snprintf (what, sizeof what, "end %s", workers [i]);
        int64_t end = s_when (what);
        last_start = start > last_start? start: last_start;
        first_end = end < first_end? end: first_end;
    }
    ck_assert_msg (last_start < first_end, "no overlap: last start %lld ms after the first end",
                   (long long) (last_start - first_end) / 1000000);
}
END_TEST

START_TEST (test_team_of_teams)
{
    //  crew: boss leads a and the team `sub`; sub: its own lead, b and c;
    //  the assignment of sub is sub's task, and its answer one result.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: boss, actor: lead}\n"
             "  - {name: deputy, actor: lead, params: {strings: true}}\n"
             "  - {name: a, actor: worker}\n"
             "  - {name: b, actor: worker}\n"
             "  - {name: c, actor: worker}\n"
             "  - {name: rec, actor: events}\n"
             "  - {name: sub, actor: team, params: {lead: deputy, members: [b, c]}}\n"
             "  - name: crew\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [a, {actor: sub, team: true}]}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "team.", "rec"), TR_OK);
    s_expect_answer ("crew", "q", "\"q=a:q>a+a | sub:q>sub=b:q>sub>b+b | c:q>sub>c+c\"");
    //  The sub-team worked at depth 1, its parent at depth 0.
    char *events = tr_test_ledger_expect ("team.completed {\"team\":\"crew\",\"depth\":0,"
                                     "\"assignments\":2,\"failed\":0");
    ck_assert_msg (strstr (events, "team.completed {\"team\":\"sub\",\"depth\":1,"
                                   "\"assignments\":2,\"failed\":0"), "%s", events);
    ck_assert_msg (strstr (events, "team.delegated {\"team\":\"crew\",\"depth\":0,"
                                   "\"assignments\":[{\"member\":\"a\",\"task\":\"q>a\"},"
                                   "{\"member\":\"sub\",\"task\":\"q>sub\"}]}"), "%s", events);
    free (events);
    //  Asked directly (depth 0 too), sub is a team like any other; with
    //  {task, depth} the depth is the asker's.
    s_expect_answer ("sub", "z", "\"z=b:z>b+b | c:z>c+c\"");
    static const uint8_t deep [] = { 0x82, 0xa4, 't', 'a', 's', 'k', 0xa1, 'y',
                                     0xa5, 'd', 'e', 'p', 't', 'h', 0x04 };
    char *answer = NULL;
    ck_assert_int_eq (s_ask_body (s_node, "sub", deep, sizeof deep, 5000, &answer), TR_OK);
    ck_assert_str_eq (answer, "\"y=b:y>b+b | c:y>c+c\"");
    free (answer);
    static const uint8_t deeper [] = { 0x82, 0xa4, 't', 'a', 's', 'k', 0xa1, 'y',
                                       0xa5, 'd', 'e', 'p', 't', 'h', 0x05 };
    ck_assert_int_eq (s_ask_body (s_node, "sub", deeper, sizeof deeper, 5000, NULL), TR_ELIMIT);
}
END_TEST

START_TEST (test_depth_limit)
{
    //  Three levels where the lowest allows depth 1 only: it refuses, and
    //  the refusal goes up as TR_ELIMIT (whatever on_member_failure says).
    s_start (TR_TEST_LENIENT
             "  - {name: boss, actor: lead}\n"
             "  - {name: w, actor: worker}\n"
             "  - {name: rec, actor: events}\n"
             "  - {name: low, actor: team, params: {lead: boss, members: [w], max_depth: 1}}\n"
             "  - name: mid\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [w, {actor: low, team: true}]}\n"
             "  - name: top\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [{actor: mid, team: true}]}\n"
             //  A loop: ping's member is pong, pong's is ping.
             "  - name: ping\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [{actor: pong, team: true}], max_depth: 3}\n"
             "  - name: pong\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [{actor: ping, team: true}], max_depth: 3}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "team.failed", "rec"), TR_OK);
    ck_assert_int_eq (s_ask ("top", "q", NULL), TR_ELIMIT);
    char *events = tr_test_ledger_expect ("team.failed {\"team\":\"top\"");
    ck_assert_msg (strstr (events, "team.failed {\"team\":\"low\",\"depth\":2,\"stage\":\"depth\","
                                   "\"error\":\"TR_ELIMIT\",\"reason\":\"asked at depth 2, past "
                                   "max_depth 1 (teams nested too deep, or a loop of teams)\"}"),
                   "%s", events);
    ck_assert_msg (strstr (events, "team.failed {\"team\":\"mid\",\"depth\":1,\"stage\":\"member\","
                                   "\"error\":\"TR_ELIMIT\",\"reason\":\"member 'low' failed: "
                                   "resource limit reached (the depth limit was passed below "
                                   "it)\",\"member\":\"low\"}"), "%s", events);
    free (events);
    //  Within the limit, the middle team works.
    s_expect_answer ("low", "x", "\"x=w:x>w+w\"");
    //  The loop ends at depth 4, past pong's (or ping's) limit of 3.
    int64_t start = tr_test_now_ms ();
    ck_assert_int_eq (s_ask ("ping", "round", NULL), TR_ELIMIT);
    ck_assert_msg (tr_test_now_ms () - start < 2000 * tr_test_slowdown (), "the loop took long");
    events = tr_test_ledger_expect ("\"depth\":4,\"stage\":\"depth\"");
    ck_assert_msg (strstr (events, "team.failed {\"team\":\"ping\",\"depth\":4,\"stage\":\"depth\""),
                   "%s", events);
    free (events);
    ck_assert_int_eq (s_info ("ping", "team.inflight"), 0);
    ck_assert_int_eq (s_info ("pong", "team.inflight"), 0);
}
END_TEST

START_TEST (test_member_failures)
{
    s_start (TR_TEST_LENIENT
             "  - {name: boss, actor: lead}\n"
             "  - {name: a, actor: worker}\n"
             "  - {name: bad, actor: worker, params: {fail: true}}\n"
             "  - {name: slow, actor: worker, params: {delay: 2s}}\n"
             "  - name: crew\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [a, bad, slow, ghost], timeout: 300ms}\n"
             "  - name: strict\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [a, bad], on_member_failure: fail}\n"
             "  - name: absent\n"
             "    actor: team\n"
             "    params: {lead: boss, members: [a, ghost], on_member_failure: fail}\n");
    //  Each failure is given to the integrator with its error.
    s_expect_answer ("crew", "q", "\"q=a:q>a+a | bad!TR_EHANDLER | slow!TR_ETIMEDOUT | "
                                  "ghost!TR_ENOACTOR\"");
    char *integrated = tr_test_text_copy (s_integrated);
    ck_assert_msg (strstr (integrated, "{\"member\":\"bad\",\"task\":\"q>bad\","
                                       "\"error\":\"TR_EHANDLER\"}"), "%s", integrated);
    free (integrated);
    //  With on_member_failure: fail, the team fails with the member's
    //  error, and the integrator is not asked.
    ck_assert_int_eq (s_ask ("strict", "r", NULL), TR_EHANDLER);
    ck_assert_int_eq (s_ask ("absent", "r", NULL), TR_ENOACTOR);
    ck_assert_int_eq (s_info ("strict", "team.failed"), 1);
    integrated = tr_test_text_copy (s_integrated);
    ck_assert_ptr_null (strstr (integrated, "\"task\":\"r\""));
    free (integrated);
}
END_TEST

START_TEST (test_bad_plans_and_asks)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: worker}\n"
             "  - {name: rec, actor: events}\n"
             "  - {name: p1, actor: lead, params: {plan: '\"just do it\"'}}\n"
             "  - {name: p2, actor: lead, params: {plan: '{\"assignments\": [\"bob: dig\"]}'}}\n"
             "  - {name: p3, actor: lead, params: {plan: '{\"assignments\": [\"a dig\"]}'}}\n"
             "  - {name: p4, actor: lead, params: {plan: '{\"assignments\": "
                                          "[{\"member\": \"a\"}]}'}}\n"
             "  - {name: p5, actor: lead, params: {plan: '{\"assignments\": "
                                          "[\"a: 1\", \"a: 2\", \"a: 3\"]}'}}\n"
             "  - {name: p6, actor: lead, params: {plan: '{\"assignments\": []}'}}\n"
             "  - {name: t1, actor: team, params: {lead: p1, members: [a]}}\n"
             "  - {name: t2, actor: team, params: {lead: p2, members: [a]}}\n"
             "  - {name: t3, actor: team, params: {lead: p3, members: [a]}}\n"
             "  - {name: t4, actor: team, params: {lead: p4, members: [a]}}\n"
             "  - {name: t5, actor: team, params: {lead: p5, members: [a], max_assignments: 2}}\n"
             "  - {name: t6, actor: team, params: {lead: p6, members: [a]}}\n"
             "  - {name: t7, actor: team, params: {lead: nobody, members: [a]}}\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "team.failed", "rec"), TR_OK);
    ck_assert_int_eq (s_ask ("t1", "q", NULL), TR_EOUTPUT);
    ck_assert_int_eq (s_ask ("t2", "q", NULL), TR_EOUTPUT);
    ck_assert_int_eq (s_ask ("t3", "q", NULL), TR_EOUTPUT);
    ck_assert_int_eq (s_ask ("t4", "q", NULL), TR_EOUTPUT);
    ck_assert_int_eq (s_ask ("t5", "q", NULL), TR_EOUTPUT);
    ck_assert_int_eq (s_ask ("t7", "q", NULL), TR_ENOACTOR);
    char *events = tr_test_ledger_expect ("\"team\":\"t7\"");
    const char *reasons [] = {
        "\"team\":\"t1\",\"depth\":0,\"stage\":\"plan\",\"error\":\"TR_EOUTPUT\",\"reason\":"
        "\"lead 'p1': the plan is not a map with a list 'assignments'\"",
        "\"lead 'p2': assignment 1 names 'bob', who is not a member of the team\"",
        "\"lead 'p3': assignment 1 \\\"a dig\\\" is not \\\"member: task\\\"\"",
        "\"lead 'p4': assignment 1 (member 'a') has no 'task'\"",
        "\"lead 'p5': the plan has 3 assignments, more than max_assignments (2)\"",
        "\"team\":\"t7\",\"depth\":0,\"stage\":\"plan\",\"error\":\"TR_ENOACTOR\",\"reason\":"
        "\"lead 'nobody' could not be asked: no such actor\"",
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons [0]; i++)
        ck_assert_msg (strstr (events, reasons [i]), "no %s in\n%s", reasons [i], events);
    free (events);
    //  An empty plan is integrated with no results.
    s_expect_answer ("t6", "q", "\"q=\"");
    //  A map that is not {task, depth}, and an empty body: the asker's
    //  mistakes.
    static const uint8_t no_task [] = { 0x81, 0xa4, 'w', 'h', 'a', 't', 0xa1, 'y' };
    static const uint8_t bad_depth [] = { 0x82, 0xa4, 't', 'a', 's', 'k', 0xa1, 'y',
                                          0xa5, 'd', 'e', 'p', 't', 'h', 0xff };
    ck_assert_int_eq (s_ask_body (s_node, "t6", no_task, sizeof no_task, 5000, NULL), TR_EINVAL);
    ck_assert_int_eq (s_ask_body (s_node, "t6", bad_depth, sizeof bad_depth, 5000, NULL),
                      TR_EINVAL);
    ck_assert_int_eq (s_ask_body (s_node, "t6", NULL, 0, 5000, NULL), TR_EINVAL);
}
END_TEST

START_TEST (test_llm_lead)
{
    //  An llm lead with a signature whose `list` output gives "member:
    //  task" lines, and an llm integrator with a signature of its own,
    //  both scripted on the offline backend.
    s_start ("name: t\n"
             "children:\n"
             "  - name: planner\n"
             "    actor: llm\n"
             "    params:\n"
             "      signature:\n"
             "        instructions: Split the question among the members.\n"
             "        inputs: [{name: task}, {name: members}]\n"
             "        outputs: [{name: assignments, type: list}]\n"
             "      offline:\n"
             "        rules:\n"
             "          - regex: \"task: ([^\\n]*)\"\n"
             "            answer: {assignments: ['scout: sources on $1', 'judge: risks of $1']}\n"
             "  - name: editor\n"
             "    actor: llm\n"
             "    params:\n"
             "      signature:\n"
             "        inputs: [{name: task}, {name: results}]\n"
             "        outputs: [{name: report}]\n"
             "      offline:\n"
             "        rules:\n"
             "          - regex: '\"answer\":\"([^\"]*)\".*\"answer\":\"([^\"]*)\"'\n"
             "            answer: {report: 'Found: $1. Weighed: $2.'}\n"
             "  - {name: scout, actor: worker}\n"
             "  - {name: judge, actor: worker}\n"
             "  - name: desk\n"
             "    actor: team\n"
             "    params: {lead: planner, integrator: editor, members: [scout, judge]}\n");
    s_expect_answer ("desk", "tidal power",
                     "{\"report\":\"Found: sources on tidal power+scout. "
                     "Weighed: risks of tidal power+judge.\"}");
}
END_TEST

START_TEST (test_example)
{
    //  examples/team.yaml: llm planners and integrators with signatures,
    //  a sub-team, all on the offline backend.
    char *yaml = tr_test_read_file (TROUPE_SOURCE_DIR "/examples/team.yaml", NULL);
    s_start (yaml);
    free (yaml);
    //  Its driver would ask too, every 3 s: this test asks alone.
    ck_assert_int_eq (tr_actor_stop (s_node, "asker", 0), TR_OK);
    char *answer = NULL;
    int rc = s_ask_on (s_node, "research", "Should the town build a tidal power station?",
                       10000 * tr_test_slowdown (), &answer);
    ck_assert_int_eq (rc, TR_OK);
    ck_assert_str_eq (answer, "{\"recommendation\":\"Known: Tidal stations in France and South "
                      "Korea have run for decades, and the tides are known years ahead. Weighed: "
                      "For: clean power for a century, on a timetable. Against: it costs a lot "
                      "and changes the estuary. Advice: build it if the estuary study agrees.\"}");
    free (answer);
    ck_assert_int_eq (s_info ("analysts", "team.completed"), 1);
}
END_TEST

START_TEST (test_stop_in_flight)
{
    //  A team stopped while its member works: the asker hears
    //  TR_ENOREPLY at once, not at its deadline.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: boss, actor: lead}\n"
             "  - {name: slow, actor: worker, params: {delay: 1s}}\n"
             "  - {name: crew, actor: team, params: {lead: boss, members: [slow]}}\n");
    tr_test_asker_t asker;
    tr_test_asker_start (&asker, s_node, "crew", "\"q\"", 5000 * tr_test_slowdown (), 0);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (s_when ("start slow") < 0 && tr_test_now_ms () < deadline)
        usleep (2000);
    ck_assert (s_when ("start slow") > 0);
    ck_assert_int_eq (tr_actor_stop (s_node, "crew", 0), TR_OK);
    tr_test_asker_join (&asker);
    ck_assert_int_eq (asker.rc, TR_ENOREPLY);
    free (asker.answer);
    ck_assert (s_when ("end slow") < 0);
}
END_TEST

START_TEST (test_tell)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: boss, actor: lead}\n"
             "  - {name: a, actor: worker}\n"
             "  - {name: crew, actor: team, params: {lead: boss, members: [a]}}\n");
    tr_body_t body = tr_test_pack_str ("told");
    ck_assert_int_eq (tr_tell (s_node, "crew", body.data, body.size, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (s_info ("crew", "team.completed") < 1 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (s_info ("crew", "team.completed"), 1);
    ck_assert (s_when ("integrate boss") > 0);
}
END_TEST

//  --------------------------------------------------------------------------
//  Another process: a real `troupe broker`, and a node process holding
//  the sub-team `far` (its lead and two members of 300 ms that print when
//  they start and end).

typedef struct {
    pid_t pid;
    FILE *out;
    FILE *in;
} s_child_t;

static s_child_t s_broker_proc, s_node_proc;

static void
s_kill_children (void)
{
    if (s_node_proc.pid > 0)
        kill (s_node_proc.pid, SIGKILL);
    if (s_broker_proc.pid > 0)
        kill (s_broker_proc.pid, SIGKILL);
}

//  Starts argv with its standard input and output on pipes (its standard
//  error is this test's).
static void
s_spawn (s_child_t *child, char **argv)
{
    int to [2], from [2];
    ck_assert_int_eq (pipe (to), 0);
    ck_assert_int_eq (pipe (from), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, to [0], 0);
    posix_spawn_file_actions_adddup2 (&actions, from [1], 1);
    posix_spawn_file_actions_addclose (&actions, to [1]);
    posix_spawn_file_actions_addclose (&actions, from [0]);
    ck_assert_int_eq (posix_spawn (&child->pid, argv [0], &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy (&actions);
    close (to [0]);
    close (from [1]);
    child->out = fdopen (from [0], "r");
    child->in = fdopen (to [1], "w");
}

//  Reads the child's lines until one starts with word; returns the rest.
static char *
s_expect_line (s_child_t *child, const char *word, char *line, size_t size)
{
    while (fgets (line, (int) size, child->out))
        if (strncmp (line, word, strlen (word)) == 0)
            return line + strlen (word);
    ck_abort_msg ("a child ended before saying '%s'", word);
    return NULL;
}

//  The node process: joins the broker at endpoint, holds the sub-team,
//  says "ready", and runs until its standard input ends; then "bye".
static int
s_node_main (const char *endpoint)
{
    tr_log_set_level (TR_LOG_ERROR);
    if (!s_register_types ())
        return 1;
    tr_node_opts_t opts = { .broker = endpoint, .node_id = "far-node", .heartbeat_ms = 200 };
    tr_node_t *node = NULL;
    if (tr_node_new (&opts, &node) != TR_OK)
        return 1;
    static const char yaml [] =
        "name: remote\n"
        "children:\n"
        "  - {name: far-lead, actor: lead}\n"
        "  - {name: far-1, actor: worker, params: {delay: 300ms, stamp: true}}\n"
        "  - {name: far-2, actor: worker, params: {delay: 300ms, stamp: true}}\n"
        "  - {name: far-echo, actor: echo}\n"
        "  - {name: far, actor: team, params: {lead: far-lead, members: [far-1, far-2]}}\n";
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    tr_sup_t *sup = NULL;
    char *reason = NULL;
    char buf [600];
    if (tr_tree_parse (yaml, strlen (yaml), "far.yaml", &tree, &err) != TR_OK) {
        fprintf (stderr, "tr_team_test node: %s\n", tr_tree_error_format (&err, buf, sizeof buf));
        return 1;
    }
    if (tr_sup_start (node, tree->name, &tree->root, &sup, &reason) != TR_OK) {
        fprintf (stderr, "tr_team_test node: cannot start: %s\n", reason);
        return 1;
    }
    printf ("ready\n");
    fflush (stdout);
    char line [64];
    while (fgets (line, sizeof line, stdin))
        ;
    tr_sup_stop (&sup);
    tr_tree_destroy (&tree);
    tr_node_destroy (&node);
    printf ("bye\n");
    fflush (stdout);
    return 0;
}

START_TEST (test_processes)
{
    atexit (s_kill_children);
    signal (SIGPIPE, SIG_IGN);
    const char *bin = getenv ("TROUPE_BIN");
    ck_assert_msg (bin && *bin, "TROUPE_BIN must name the troupe program");
    char line [512];
    char *broker_argv [] = { (char *) bin, "broker", "--bind", "tcp://127.0.0.1:*", NULL };
    s_spawn (&s_broker_proc, broker_argv);
    char *at = s_expect_line (&s_broker_proc, "troupe broker: listening on ", line, sizeof line);
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%.*s", (int) strcspn (at, " \n"), at);
    char *node_argv [] = { "/proc/self/exe", "node", endpoint, NULL };
    s_spawn (&s_node_proc, node_argv);
    s_expect_line (&s_node_proc, "ready", line, sizeof line);

    //  This process: the top team, its lead and a member of its own.
    tr_node_t *near = tr_test_node_joined (endpoint, "near-node", 200);
    s_start_on (near, "name: near\n"
                      "children:\n"
                      "  - {name: boss, actor: lead}\n"
                      "  - {name: here, actor: worker, params: {delay: 300ms}}\n"
                      "  - name: top\n"
                      "    actor: team\n"
                      "    params: {lead: boss, members: [here, {actor: far, team: true}]}\n");
    //  Once the other node's names reach this one through the broker.
    int64_t deadline = tr_test_now_ms () + 10000 * tr_test_slowdown ();
    int rc;
    while ((rc = s_ask_on (near, "far-echo", "hi", 1000, NULL)) != TR_OK
           && tr_test_now_ms () < deadline)
        usleep (20 * 1000);
    ck_assert_int_eq (rc, TR_OK);
    char *answer = NULL;
    rc = s_ask_on (near, "top", "q", 10000 * tr_test_slowdown (), &answer);
    ck_assert_msg (rc == TR_OK, "top: %s", tr_errname (rc));
    ck_assert_str_eq (answer, "\"q=here:q>here+here | "
                              "far:q>far=far-1:q>far>far-1+far-1 | far-2:q>far>far-2+far-2\"");
    free (answer);
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_node_destroy (&near);

    //  The other node's members' times, then its end.
    fclose (s_node_proc.in);
    int64_t last_start = s_when ("start here"), first_end = s_when ("end here");
    int stamps = 0;
    while (fgets (line, sizeof line, s_node_proc.out) && strncmp (line, "bye", 3) != 0) {
        char name [64];
        long long start, end;
        if (sscanf (line, "stamp %63s %lld %lld", name, &start, &end) == 3) {
            stamps++;
            last_start = start > last_start? start: last_start;
            first_end = end < first_end? end: first_end;
        }
    }
    int status;
    waitpid (s_node_proc.pid, &status, 0);
    s_node_proc.pid = 0;
    ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0, "node status %d", status);
    kill (s_broker_proc.pid, SIGTERM);
    waitpid (s_broker_proc.pid, &status, 0);
    s_broker_proc.pid = 0;
    //  The member here and the two in the other process worked at once.
    ck_assert_int_eq (stamps, 2);
    ck_assert_msg (last_start < first_end, "no overlap across processes: last start %lld ms "
                   "after the first end", (long long) (last_start - first_end) / 1000000);
}
END_TEST

//  --------------------------------------------------------------------------
//  Parameters

//  Checks that a team with params is refused with expect (the loader's
//  message at its file, line and column, or the start's reason).
static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "team.yaml",
                                 "name: t\nchildren:\n  - {name: a, actor: worker}\n"
                                 "  - name: crew\n    actor: team\n", params, expect,
                                 TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    //  The loader: kinds and keys.
    s_expect_error ("{lead: a, members: a}",
                    "team.yaml:6:32: parameter 'members' of actor type 'team' must be a "
                    "sequence, not 'a'");
    s_expect_error ("{lead: a, members: [a], timeout: true}",
                    "team.yaml:6:46: parameter 'timeout' of actor type 'team' must be a duration "
                    "such as 250ms or 2s, or an integer of milliseconds, not 'true'");
    s_expect_error ("{lead: a, member: [a]}",
                    "team.yaml:6:23: unknown parameter 'member' of actor type 'team'; expected "
                    "one of: lead, members, integrator, timeout, max_depth, max_assignments, "
                    "on_member_failure");
    s_expect_error ("{members: [a]}",
                    "team.yaml:6:13: missing parameter 'lead' of actor type 'team' (a string: "
                    "the agent that plans: asked {task, members}, answers {assignments: "
                    "[{member, task}] or [\"member: task\"]})");
    //  The team's own check, at the value's position.
    s_expect_error ("{lead: a, members: []}",
                    "team.yaml:6:32: crew: 'members' must be a list of at least one member");
    s_expect_error ("{lead: 'a b', members: [a]}",
                    "team.yaml:6:20: crew: 'lead' is not a valid actor name: 'a b'");
    s_expect_error ("{lead: a, members: [a], integrator: ''}",
                    "team.yaml:6:49: crew: 'integrator' must be a non-empty string without "
                    "NUL bytes");
    s_expect_error ("{lead: a, members: [a, 3]}",
                    "team.yaml:6:36: crew: members item 2 must be an actor name or a mapping "
                    "{actor, team}, not an integer");
    s_expect_error ("{lead: a, members: [a, a]}",
                    "team.yaml:6:36: crew: 'members' names 'a' twice (items 1 and 2)");
    s_expect_error ("{lead: a, members: [{team: true}]}",
                    "team.yaml:6:33: crew: members item 1 needs 'actor', the member's name");
    s_expect_error ("{lead: a, members: [{actor: a, team: yes}]}",
                    "team.yaml:6:50: crew: members item 1 'team' must be true or false, "
                    "not a string");
    s_expect_error ("{lead: a, members: [{actor: a, role: x}]}",
                    "team.yaml:6:50: crew: unknown key 'role' in members item 1; expected one "
                    "of: actor, team");
    s_expect_error ("{lead: a, members: [a], max_depth: 65}",
                    "team.yaml:6:48: crew: 'max_depth' must be from 0 to 64, not 65");
    s_expect_error ("{lead: a, members: [a], max_assignments: 0}",
                    "team.yaml:6:54: crew: 'max_assignments' must be from 1 to 1000, not 0");
    s_expect_error ("{lead: a, members: [a], on_member_failure: ignore}",
                    "team.yaml:6:56: crew: 'on_member_failure' must be one of integrate, fail, "
                    "not 'ignore'");
    //  Spawned from C with parameters of its own, the team checks them
    //  when it starts: {lead: a} without members is refused.
    static const uint8_t packed [] = { 0x81, 0xa4, 'l', 'e', 'a', 'd', 0xa1, 'a' };
    tr_params_t params = { packed, sizeof packed };
    const tr_actor_type_t *type = tr_actor_type_find ("team");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_EINIT);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_team");
    TCase *tc = tcase_create ("team");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_order);
    tcase_add_test (tc, test_members_overlap);
    tcase_add_test (tc, test_team_of_teams);
    tcase_add_test (tc, test_depth_limit);
    tcase_add_test (tc, test_member_failures);
    tcase_add_test (tc, test_bad_plans_and_asks);
    tcase_add_test (tc, test_llm_lead);
    tcase_add_test (tc, test_example);
    tcase_add_test (tc, test_stop_in_flight);
    tcase_add_test (tc, test_tell);
    tcase_add_test (tc, test_processes);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

int
main (int argc, char **argv)
{
    if (argc == 3 && strcmp (argv [1], "node") == 0)
        return s_node_main (argv [2]);
    SRunner *runner = srunner_create (s_suite ());
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed? EXIT_FAILURE: EXIT_SUCCESS;
}
