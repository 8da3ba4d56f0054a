/*  tr_graph_test.c - tests of the graph (actors/tr_graph.c), started from
    tree files.

    Tasks run after their dependencies, each given {input, deps, context,
    depth} (the shape pinned); sibling tasks run at the same time (their
    start and end times, recorded by the tasks, overlap), and do not with
    `limit: 1`; the answer is the sinks' map or the `output` task's
    output; cycles are refused with the cycle named when a YAML file is
    loaded (tests/trees/bad-graph-*.yaml) and when a graph is started
    from C; nested graphs, the depth limit (a graph that asks itself, a
    nesting deeper than an inner graph allows) and the declared context
    passed down; progress events received by a subscriber; a failed task
    with on_failure error, report and continue, a timeout, a missing
    actor; tells; bad parameters, each message exact.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_json.h"

#include <msgpack.h>
#include <pthread.h>

#define S_TREES TROUPE_SOURCE_DIR "/tests/trees"

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;

//  What the job actors saw: one record per message handled.
typedef struct {
    char actor [32];
    int64_t start_ns;
    int64_t end_ns;
    char json [1024];
} s_record_t;

#define S_RECORDS 256
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_record_t s_records [S_RECORDS];
static size_t s_nrecords;

//  --------------------------------------------------------------------------
//  Test actors

//  job: records when it starts and ends and what it got; answers the
//  string `answer` (default "out-NAME") after `delay`; fails with
//  `fail: true`.
typedef struct {
    char answer [64];
    int64_t delay_ms;
    bool fail;
} s_job_t;

static const tr_param_spec_t s_job_params [] = {
    { "answer", TR_PARAM_STRING, false, "the answer" },
    { "delay", TR_PARAM_DURATION, false, "time each answer takes" },
    { "fail", TR_PARAM_BOOL, false, "fail every message" },
    { .key = NULL }
};

static int
s_job_init (tr_actor_t *self, void *arg, void **state_p)
{
    s_job_t *job = (s_job_t *) calloc (1, sizeof *job);
    const tr_params_t *params = (const tr_params_t *) arg;
    const char *answer = NULL;
    size_t len = 0;
    snprintf (job->answer, sizeof job->answer, "out-%s", tr_actor_name (self));
    if (params) {
        if (tr_params_str (params, "answer", &answer, &len) == TR_OK)
            snprintf (job->answer, sizeof job->answer, "%.*s", (int) len, answer);
        tr_params_duration (params, "delay", &job->delay_ms);
        tr_params_bool (params, "fail", &job->fail);
    }
    *state_p = job;
    return 0;
}

static int
s_job_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_job_t *job = (s_job_t *) state;
    int64_t start = tr__now_ns ();
    if (job->delay_ms)
        usleep ((useconds_t) job->delay_ms * 1000);
    char *json = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (msg), tr_msg_size (msg), &json, &len), 0);
    pthread_mutex_lock (&s_lock);
    if (s_nrecords < S_RECORDS) {
        s_record_t *r = &s_records [s_nrecords++];
        snprintf (r->actor, sizeof r->actor, "%s", tr_actor_name (self));
        snprintf (r->json, sizeof r->json, "%.*s", (int) len, json);
        r->start_ns = start;
        r->end_ns = tr__now_ns ();
    }
    pthread_mutex_unlock (&s_lock);
    free (json);
    if (job->fail)
        return -1;
    tr_body_t body;
    tr_body_str (&body, job->answer, strlen (job->answer));
    return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply (msg, body.data, body.size): 0;
}

static const tr_actor_type_t s_job_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "job",
    .summary = "records its messages and answers (graph tests)",
    .behaviour = { s_job_init, s_job_handle, tr_test_free_state },
    .params = s_job_params,
};

//  events: appends each event it gets to the ledger as a JSON line.
static int
s_events_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) state;
    tr_test_ledger_add (NULL, tr_msg_body (msg), tr_msg_size (msg));
    return 0;
}

static const tr_actor_type_t s_events_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "events",
    .summary = "records the events it gets (graph tests)",
    .behaviour = { .handle = s_events_handle },
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_setup (void)
{
    pthread_mutex_lock (&s_lock);
    s_nrecords = 0;
    pthread_mutex_unlock (&s_lock);
    tr_test_ledger_clear ();
    const tr_actor_type_t *types [] = { &s_job_type, &s_events_type, NULL };
    tr_test_setup (&s_node, types);
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
}

static void
s_start (const char *yaml)
{
    tr_test_tree_start (s_node, yaml, "graph.yaml", &s_tree, &s_sup);
}

//  Asks `to` with a msgpack body; on TR_OK, *answer (if not NULL) is the
//  answer as JSON (malloc'd).
static int
s_ask_body (const char *to, const void *body, size_t size, char **answer)
{
    tr_msg_t *reply = NULL;
    int rc = tr_ask (s_node, to, body, size, 10000 * tr_test_slowdown (), &reply, NULL);
    if (rc == TR_OK && answer) {
        size_t len;
        ck_assert_int_eq (tr__json_from_msgpack (tr_msg_body (reply), tr_msg_size (reply),
                                                 answer, &len), 0);
    }
    tr_msg_destroy (&reply);
    return rc;
}

static int
s_ask (const char *to, const char *text, char **answer)
{
    return tr_test_ask_json (s_node, to, text, 10000 * tr_test_slowdown (), answer);
}

static void
s_expect_answer (const char *graph, const char *text, const char *json)
{
    tr_test_expect_answer (s_node, graph, text, 10000 * tr_test_slowdown (), json);
}

//  The nth record (from 0) of actor, copied into *out; false if none.
static bool
s_record (const char *actor, int nth, s_record_t *out)
{
    bool found = false;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nrecords && !found; i++)
        if (strcmp (s_records [i].actor, actor) == 0 && nth-- == 0) {
            *out = s_records [i];
            found = true;
        }
    pthread_mutex_unlock (&s_lock);
    return found;
}

static size_t
s_record_count (const char *actor)
{
    size_t n = 0;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nrecords; i++)
        n += strcmp (s_records [i].actor, actor) == 0;
    pthread_mutex_unlock (&s_lock);
    return n;
}

static void
s_expect_input (const char *actor, const char *json)
{
    s_record_t r;
    ck_assert_msg (s_record (actor, 0, &r), "%s never ran", actor);
    ck_assert_str_eq (r.json, json);
}

//  a's handling ended before b's began.
static void
s_expect_before (const char *a, const char *b)
{
    s_record_t ra, rb;
    ck_assert_msg (s_record (a, 0, &ra) && s_record (b, 0, &rb), "%s or %s never ran", a, b);
    ck_assert_msg (ra.end_ns <= rb.start_ns, "%s ended %lld us after %s started", a,
                   (long long) (ra.end_ns - rb.start_ns) / 1000, b);
}

//  How long a's and b's handling overlapped, in ms (negative: a gap).
static int64_t
s_overlap_ms (const char *a, const char *b)
{
    s_record_t ra, rb;
    ck_assert_msg (s_record (a, 0, &ra) && s_record (b, 0, &rb), "%s or %s never ran", a, b);
    int64_t start = ra.start_ns > rb.start_ns? ra.start_ns: rb.start_ns;
    int64_t end = ra.end_ns < rb.end_ns? ra.end_ns: rb.end_ns;
    return (end - start) / 1000000;
}

static char *
s_events_text (void)
{
    return tr_test_ledger_copy (false);
}

//  Waits until the event ledger holds `count` lines containing `what`.
static char *
s_events_wait (const char *what, int count)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    for (;;) {
        char *text = s_events_text ();
        int seen = 0;
        for (const char *p = text; (p = strstr (p, what)); p++)
            seen++;
        if (seen >= count || tr_test_now_ms () >= deadline) {
            ck_assert_msg (seen >= count, "%d of %d events with %s:\n%s", seen, count, what, text);
            return text;
        }
        free (text);
        usleep (5000);
    }
}

static int64_t
s_info (const char *actor, const char *key)
{
    return tr_test_info (s_node, actor, key);
}

//  --------------------------------------------------------------------------

START_TEST (test_order_and_shape)
{
    //  A diamond: b and c after a, d after both.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: job}\n"
             "  - {name: b, actor: job}\n"
             "  - {name: c, actor: job}\n"
             "  - {name: d, actor: job}\n"
             "  - name: g\n"
             "    actor: graph\n"
             "    params:\n"
             "      tasks:\n"
             "        - {name: last, actor: d, depends_on: [left, right]}\n"
             "        - {name: left, actor: b, depends_on: [first]}\n"
             "        - {name: right, actor: c, depends_on: [first]}\n"
             "        - {name: first, actor: a}\n"
             "  - name: two\n"
             "    actor: graph\n"
             "    params:\n"
             "      tasks:\n"
             "        - {name: x, actor: a}\n"
             "        - {name: y, actor: b, depends_on: [x]}\n"
             "        - {name: z, actor: c, depends_on: [x]}\n"
             "  - name: picked\n"
             "    actor: graph\n"
             "    params:\n"
             "      output: x\n"
             "      tasks: [{name: x, actor: a}, {name: y, actor: b, depends_on: [x]}]\n");
    //  The answer: the outputs of the tasks nothing depends on.
    s_expect_answer ("g", "q", "{\"last\":\"out-d\"}");
    s_expect_before ("a", "b");
    s_expect_before ("a", "c");
    s_expect_before ("b", "d");
    s_expect_before ("c", "d");
    //  Each task gets the graph's input and its dependencies' outputs.
    s_expect_input ("a", "{\"input\":\"q\",\"deps\":{},\"context\":{},\"depth\":1}");
    s_expect_input ("b", "{\"input\":\"q\",\"deps\":{\"first\":\"out-a\"},\"context\":{},"
                         "\"depth\":1}");
    s_expect_input ("d", "{\"input\":\"q\",\"deps\":{\"left\":\"out-b\",\"right\":\"out-c\"},"
                         "\"context\":{},\"depth\":1}");
    ck_assert_int_eq (s_record_count ("a"), 1);
    ck_assert_int_eq (s_record_count ("d"), 1);
    //  Two sinks, in file order; `output` picks one task.
    s_expect_answer ("two", "r", "{\"y\":\"out-b\",\"z\":\"out-c\"}");
    s_expect_answer ("picked", "s", "\"out-a\"");
    ck_assert_int_eq (s_info ("g", "graph.completed"), 1);
    ck_assert_int_eq (s_info ("g", "graph.tasks"), 4);
    ck_assert_int_eq (s_info ("g", "graph.inflight"), 0);
    ck_assert_int_eq (s_record_count ("b"), 3);
}
END_TEST

START_TEST (test_parallel_overlap)
{
    //  b, c and e depend on a only: they are asked together and run at
    //  the same time, which their recorded start and end times show.
    //  With limit: 1 the same graph runs them one after another.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: job}\n"
             "  - {name: b, actor: job, params: {delay: 300ms}}\n"
             "  - {name: c, actor: job, params: {delay: 300ms}}\n"
             "  - {name: e, actor: job, params: {delay: 300ms}}\n"
             "  - {name: d, actor: job}\n"
             "  - name: wide\n"
             "    actor: graph\n"
             "    params:\n"
             "      tasks:\n"
             "        - {name: a, actor: a}\n"
             "        - {name: b, actor: b, depends_on: [a]}\n"
             "        - {name: c, actor: c, depends_on: [a]}\n"
             "        - {name: e, actor: e, depends_on: [a]}\n"
             "        - {name: d, actor: d, depends_on: [b, c, e]}\n"
             "  - name: narrow\n"
             "    actor: graph\n"
             "    params:\n"
             "      limit: 1\n"
             "      tasks:\n"
             "        - {name: b, actor: b}\n"
             "        - {name: c, actor: c}\n");
    s_expect_answer ("wide", "p", "{\"d\":\"out-d\"}");
    s_expect_before ("a", "b");
    s_expect_before ("c", "d");
    s_expect_before ("e", "d");
    //  Each handles for 300 ms; overlapping by most of that is running
    //  together (a slow machine only delays the later starts a little).
    int64_t bc = s_overlap_ms ("b", "c"), be = s_overlap_ms ("b", "e"), ce = s_overlap_ms ("c", "e");
    ck_assert_msg (bc >= 150 && be >= 150 && ce >= 150,
                   "overlaps b-c %lld ms, b-e %lld ms, c-e %lld ms", (long long) bc,
                   (long long) be, (long long) ce);
    //  limit: 1: b and c one after the other.
    pthread_mutex_lock (&s_lock);
    s_nrecords = 0;
    pthread_mutex_unlock (&s_lock);
    s_expect_answer ("narrow", "n", "{\"b\":\"out-b\",\"c\":\"out-c\"}");
    ck_assert_msg (s_overlap_ms ("b", "c") <= 0, "limit 1, yet b and c overlapped");
    s_expect_before ("b", "c");
}
END_TEST

//  Loads tests/trees/NAME and checks its error against the file's own
//  "# error: LINE:COLUMN: MESSAGE" line, and that it is `expect`.
static void
s_expect_file_error (const char *name, const char *expect)
{
    char path [512];
    snprintf (path, sizeof path, "%s/%s", S_TREES, name);
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_load (path, &tree, &err), TR_EMALFORMED);
    ck_assert_ptr_null (tree);
    char got [800], want [800];
    tr_tree_error_format (&err, got, sizeof got);
    snprintf (want, sizeof want, "%s:%s", path, expect);
    ck_assert_str_eq (got, want);
    char *text = tr_test_read_file (path, NULL);
    char first [600];
    snprintf (first, sizeof first, "# error: %s\n", expect);
    ck_assert_msg (strncmp (text, first, strlen (first)) == 0, "%s says otherwise", name);
    free (text);
}

START_TEST (test_cycle_at_load)
{
    //  From a YAML file: the cycle named in order (each depends on the
    //  next), from its member that comes first in the file, at that
    //  task's line and column.
    s_expect_file_error ("bad-graph-cycle.yaml",
                         "14:11: plan: tasks form a cycle: draft -> review -> edit -> draft");
    s_expect_file_error ("bad-graph-self.yaml",
                         "9:11: g: tasks form a cycle: loop -> loop");
    s_expect_file_error ("bad-graph-unknown-dep.yaml",
                         "10:47: g: task 'b' depends on 'c', which is not a task of this graph");
    s_expect_file_error ("bad-graph-duplicate.yaml",
                         "10:18: g: task name 'a' is used twice (tasks items 1 and 2)");
}
END_TEST

//  Packs {tasks: [{name, actor, depends_on}...]} from "name:dep,dep" items.
static void
s_pack_tasks (msgpack_sbuffer *buffer, const char *const *items, size_t count)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "tasks", 5);
    msgpack_pack_array (&pk, (uint32_t) count);
    for (size_t i = 0; i < count; i++) {
        char copy [128];
        snprintf (copy, sizeof copy, "%s", items [i]);
        char *deps = strchr (copy, ':');
        *deps++ = '\0';
        msgpack_pack_map (&pk, 3);
        msgpack_pack_str_with_body (&pk, "name", 4);
        msgpack_pack_str_with_body (&pk, copy, strlen (copy));
        msgpack_pack_str_with_body (&pk, "actor", 5);
        msgpack_pack_str_with_body (&pk, "a", 1);
        msgpack_pack_str_with_body (&pk, "depends_on", 10);
        size_t n = 0;
        for (char *p = deps; *p; p++)
            n += *p == ',';
        msgpack_pack_array (&pk, *deps? (uint32_t) n + 1: 0);
        for (char *dep = strtok (deps, ","); dep; dep = strtok (NULL, ","))
            msgpack_pack_str_with_body (&pk, dep, strlen (dep));
    }
}

START_TEST (test_cycle_at_start_from_c)
{
    //  A graph spawned from C with parameters of its own (no loader to
    //  check them) refuses to start, naming the cycle and itself.
    tr_tree_error_t err;
    const char *yaml = "name: t\nchildren:\n  - {name: a, actor: job}\n"
                       "  - {name: g, actor: graph, params: {tasks: [{name: x, actor: a}]}}\n";
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "graph.yaml", &s_tree, &err), TR_OK);
    const tr_sup_spec_t *sup = s_tree->root.sup;
    ck_assert_uint_eq (sup->count, 2);
    tr_child_spec_t children [2] = { sup->children [0], sup->children [1] };
    tr_sup_spec_t copy = *sup;
    copy.children = children;
    tr_child_spec_t root = s_tree->root;
    root.sup = &copy;
    static const char *const cyclic [] = { "fetch:", "parse:fetch,rank", "rank:score",
                                           "score:parse", "report:rank" };
    static const char *const good [] = { "fetch:", "parse:fetch", "rank:parse,fetch" };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_pack_tasks (&buffer, cyclic, 5);
    children [1].params = (tr_params_t) { (const uint8_t *) buffer.data, buffer.size };
    char *reason = NULL;
    ck_assert_int_eq (tr_sup_start (s_node, "t", &root, &s_sup, &reason), TR_ECHILD);
    ck_assert_msg (reason && strstr (reason, "graph 'g': tasks form a cycle: "
                                             "parse -> rank -> score -> parse"),
                   "%s", reason? reason: "(no reason)");
    free (reason);
    //  The same from tr_spawn: refused (TR_EINIT); an acyclic graph starts.
    const tr_actor_type_t *type = tr_actor_type_find ("graph");
    ck_assert_ptr_nonnull (type);
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &children [1].params, NULL, NULL),
                      TR_EINIT);
    msgpack_sbuffer_clear (&buffer);
    s_pack_tasks (&buffer, good, 3);
    tr_params_t params = { (const uint8_t *) buffer.data, buffer.size };
    ck_assert_int_eq (tr_spawn (s_node, "raw", &type->behaviour, &params, NULL, NULL), TR_OK);
    ck_assert_int_eq (tr_spawn (s_node, "a", &s_job_type.behaviour, NULL, NULL, NULL), TR_OK);
    s_expect_answer ("raw", "z", "{\"rank\":\"out-a\"}");
    msgpack_sbuffer_destroy (&buffer);
}
END_TEST

START_TEST (test_depth_limit)
{
    s_start (TR_TEST_LENIENT
             "  - {name: events, actor: events}\n"
             "  - {name: a, actor: job}\n"
             "  - name: self\n"
             "    actor: graph\n"
             "    params:\n"
             "      max_depth: 3\n"
             "      tasks: [{name: again, actor: self}]\n"
             "  - name: outer\n"
             "    actor: graph\n"
             "    params:\n"
             "      tasks: [{name: a, actor: a}, {name: sub, actor: inner, depends_on: [a]}]\n"
             "  - name: inner\n"
             "    actor: graph\n"
             "    params:\n"
             "      max_depth: 1\n"
             "      tasks: [{name: a, actor: a}]\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "graph.failed", "events"), TR_OK);
    //  A graph that asks itself: runs at depths 1, 2 and 3 each ask it
    //  again; depth 4 is refused, and each level fails with TR_EDEPTH.
    ck_assert_int_eq (s_ask ("self", "loop", NULL), TR_EDEPTH);
    char *events = s_events_wait ("\"graph\":\"self\"", 4);
    ck_assert_msg (strstr (events, "\"depth\":4,\"error\":\"TR_EDEPTH\",\"total\":1,\"done\":0,"
                                   "\"failed\":0,\"skipped\":1,\"failures\":{}"), "%s", events);
    for (int depth = 1; depth <= 3; depth++) {
        char line [200];
        snprintf (line, sizeof line, "\"depth\":%d,\"error\":\"TR_EDEPTH\",\"total\":1,\"done\":0,"
                  "\"failed\":1,\"skipped\":0,\"failures\":{\"again\":\"TR_EDEPTH\"}", depth);
        ck_assert_msg (strstr (events, line), "no depth %d in %s", depth, events);
    }
    free (events);
    ck_assert_int_eq (s_info ("self", "graph.failed"), 4);
    ck_assert_int_eq (s_info ("self", "graph.inflight"), 0);
    //  inner allows depth 1 only: asked by outer (depth 2), it refuses.
    ck_assert_int_eq (s_ask ("outer", "go", NULL), TR_EDEPTH);
    //  Asked directly, it runs.
    s_expect_answer ("inner", "go", "{\"a\":\"out-a\"}");
}
END_TEST

START_TEST (test_nested_context)
{
    //  outer passes user and lang down (picked from its input map, not
    //  secret); inner, a task of outer, declares user and region: its
    //  tasks get user (from the context outer gave) and nothing else.
    s_start ("name: t\n"
             "children:\n"
             "  - {name: look, actor: job}\n"
             "  - {name: leaf, actor: job}\n"
             "  - name: outer\n"
             "    actor: graph\n"
             "    params:\n"
             "      context: [user, lang]\n"
             "      tasks:\n"
             "        - {name: look, actor: look}\n"
             "        - {name: sub, actor: inner, depends_on: [look]}\n"
             "  - name: inner\n"
             "    actor: graph\n"
             "    params:\n"
             "      context: [user, region]\n"
             "      output: leaf\n"
             "      tasks: [{name: leaf, actor: leaf}]\n");
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "user", 4);
    msgpack_pack_str_with_body (&pk, "ann", 3);
    msgpack_pack_str_with_body (&pk, "lang", 4);
    msgpack_pack_str_with_body (&pk, "fr", 2);
    msgpack_pack_str_with_body (&pk, "secret", 6);
    msgpack_pack_str_with_body (&pk, "s3", 2);
    char *answer = NULL;
    ck_assert_int_eq (s_ask_body ("outer", buffer.data, buffer.size, &answer), TR_OK);
    msgpack_sbuffer_destroy (&buffer);
    ck_assert_str_eq (answer, "{\"sub\":\"out-leaf\"}");
    free (answer);
    s_expect_input ("look", "{\"input\":{\"user\":\"ann\",\"lang\":\"fr\",\"secret\":\"s3\"},"
                            "\"deps\":{},\"context\":{\"user\":\"ann\",\"lang\":\"fr\"},"
                            "\"depth\":1}");
    //  inner's input is what outer gave its task: {input, deps}.
    s_expect_input ("leaf", "{\"input\":{\"input\":{\"user\":\"ann\",\"lang\":\"fr\","
                            "\"secret\":\"s3\"},\"deps\":{\"look\":\"out-look\"}},\"deps\":{},"
                            "\"context\":{\"user\":\"ann\"},\"depth\":2}");
    //  A string input has no fields: the context is empty.
    s_expect_answer ("outer", "plain", "{\"sub\":\"out-leaf\"}");
    s_record_t r;
    ck_assert (s_record ("leaf", 1, &r));
    ck_assert_msg (strstr (r.json, "\"context\":{},\"depth\":2}"), "%s", r.json);
}
END_TEST

START_TEST (test_progress_events)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: events, actor: events}\n"
             "  - {name: a, actor: job}\n"
             "  - {name: b, actor: job}\n"
             "  - name: g\n"
             "    actor: graph\n"
             "    params:\n"
             "      tasks: [{name: one, actor: a}, {name: two, actor: b, depends_on: [one]}]\n"
             "  - name: quiet\n"
             "    actor: graph\n"
             "    params:\n"
             "      progress: false\n"
             "      tasks: [{name: one, actor: a}]\n");
    ck_assert_int_eq (tr_event_subscribe (s_node, "graph.", "events"), TR_OK);
    s_expect_answer ("g", "x", "{\"two\":\"out-b\"}");
    char *events = s_events_wait ("graph.completed", 1);
    //  In order, with the counts so far; the run's time last.
    const char *expect =
        "[\"graph.task.started\",{\"graph\":\"g\",\"run\":1,\"task\":\"one\",\"started\":1,"
        "\"total\":2}]\n"
        "[\"graph.task.done\",{\"graph\":\"g\",\"run\":1,\"task\":\"one\",\"ok\":true,\"done\":1,"
        "\"failed\":0,\"total\":2}]\n"
        "[\"graph.task.started\",{\"graph\":\"g\",\"run\":1,\"task\":\"two\",\"started\":2,"
        "\"total\":2}]\n"
        "[\"graph.task.done\",{\"graph\":\"g\",\"run\":1,\"task\":\"two\",\"ok\":true,\"done\":2,"
        "\"failed\":0,\"total\":2}]\n"
        "[\"graph.completed\",{\"graph\":\"g\",\"run\":1,\"depth\":1,\"total\":2,\"done\":2,"
        "\"failed\":0,\"ms\":";
    ck_assert_msg (strncmp (events, expect, strlen (expect)) == 0, "%s", events);
    free (events);
    //  progress: false: the outcome only.
    tr_test_ledger_clear ();
    s_expect_answer ("quiet", "x", "{\"one\":\"out-a\"}");
    events = s_events_wait ("graph.completed", 1);
    const char *quiet = "[\"graph.completed\",{\"graph\":\"quiet\",\"run\":1,";
    ck_assert_msg (strncmp (events, quiet, strlen (quiet)) == 0 && !strstr (events, "graph.task"),
                   "%s", events);
    free (events);
}
END_TEST

#define S_FAILING \
    "  - {name: events, actor: events}\n" \
    "  - {name: a, actor: job}\n" \
    "  - {name: bad, actor: job, params: {fail: true}}\n" \
    "  - {name: c, actor: job}\n" \
    "  - {name: slow, actor: job, params: {delay: 200ms}}\n"

#define S_FAILING_TASKS \
    "      tasks:\n" \
    "        - {name: a, actor: a}\n" \
    "        - {name: b, actor: bad, depends_on: [a]}\n" \
    "        - {name: c, actor: c, depends_on: [b]}\n" \
    "        - {name: d, actor: slow, depends_on: [a]}\n"

START_TEST (test_failure)
{
    s_start (TR_TEST_LENIENT S_FAILING
             "  - name: stop\n"
             "    actor: graph\n"
             "    params:\n"
             S_FAILING_TASKS
             "  - name: told\n"
             "    actor: graph\n"
             "    params:\n"
             "      on_failure: report\n"
             S_FAILING_TASKS
             "  - name: onward\n"
             "    actor: graph\n"
             "    params:\n"
             "      on_failure: continue\n"
             S_FAILING_TASKS);
    ck_assert_int_eq (tr_event_subscribe (s_node, "graph.failed", "events"), TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, "graph.completed", "events"), TR_OK);
    //  b fails: c (its dependent) does not run; d, already running on
    //  its own branch, is waited for; the asker gets b's error.
    ck_assert_int_eq (s_ask ("stop", "f", NULL), TR_EHANDLER);
    ck_assert_int_eq (s_record_count ("c"), 0);
    ck_assert_int_eq (s_record_count ("slow"), 1);
    char *events = s_events_wait ("graph.failed", 1);
    ck_assert_msg (strstr (events, "[\"graph.failed\",{\"graph\":\"stop\",\"run\":1,\"depth\":1,"
                                   "\"error\":\"TR_EHANDLER\",\"total\":4,\"done\":2,\"failed\":1,"
                                   "\"skipped\":1,\"failures\":{\"b\":\"TR_EHANDLER\"},\"ms\":"),
                   "%s", events);
    free (events);
    ck_assert_int_eq (s_info ("stop", "graph.failed"), 1);
    //  on_failure: report: what failed, what did not run, what was done.
    s_expect_answer ("told", "f",
                     "{\"error\":\"TR_EHANDLER\",\"failed\":{\"b\":\"TR_EHANDLER\"},"
                     "\"skipped\":[\"c\"],\"outputs\":{\"a\":\"out-a\",\"d\":\"out-slow\"}}");
    ck_assert_int_eq (s_record_count ("c"), 0);
    //  on_failure: continue: c runs, and sees b's error as b's output.
    s_expect_answer ("onward", "f", "{\"c\":\"out-c\",\"d\":\"out-slow\"}");
    s_expect_input ("c", "{\"input\":\"f\",\"deps\":{\"b\":{\"error\":\"TR_EHANDLER\"}},"
                         "\"context\":{},\"depth\":1}");
    events = s_events_wait ("graph.completed", 1);
    ck_assert_msg (strstr (events, "[\"graph.completed\",{\"graph\":\"onward\",\"run\":1,"
                                   "\"depth\":1,\"total\":4,\"done\":3,\"failed\":1,\"ms\":"),
                   "%s", events);
    free (events);
}
END_TEST

START_TEST (test_timeout_and_missing_actor)
{
    s_start (TR_TEST_LENIENT
             "  - {name: a, actor: job}\n"
             "  - {name: slow, actor: job, params: {delay: 1s}}\n"
             "  - name: g\n"
             "    actor: graph\n"
             "    params:\n"
             "      timeout: 5s\n"
             "      on_failure: report\n"
             "      tasks:\n"
             "        - {name: a, actor: a}\n"
             "        - {name: s, actor: slow, timeout: 100ms}\n"
             "        - {name: n, actor: nobody, depends_on: [a]}\n"
             "        - {name: after, actor: a, depends_on: [s]}\n");
    int64_t start = tr_test_now_ms ();
    s_expect_answer ("g", "t",
                     "{\"error\":\"TR_ENOACTOR\",\"failed\":{\"s\":\"TR_ETIMEDOUT\",\"n\":"
                     "\"TR_ENOACTOR\"},\"skipped\":[\"after\"],\"outputs\":{\"a\":\"out-a\"}}");
    int64_t took = tr_test_now_ms () - start;
    ck_assert_msg (took >= 90 && took < 900 * tr_test_slowdown (), "took %lld ms",
                   (long long) took);
}
END_TEST

START_TEST (test_tell)
{
    s_start ("name: t\n"
             "children:\n"
             "  - {name: a, actor: job}\n"
             "  - {name: b, actor: job}\n"
             "  - name: g\n"
             "    actor: graph\n"
             "    params: {tasks: [{name: x, actor: a}, {name: y, actor: b, depends_on: [x]}]}\n");
    ck_assert_int_eq (tr_tell (s_node, "g", "\xa1z", 2, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 3000 * tr_test_slowdown ();
    while (s_info ("g", "graph.completed") < 1 && tr_test_now_ms () < deadline)
        usleep (5000);
    ck_assert_int_eq (s_info ("g", "graph.completed"), 1);
    s_expect_input ("b", "{\"input\":\"z\",\"deps\":{\"x\":\"out-a\"},\"context\":{},\"depth\":1}");
}
END_TEST

//  Checks that a graph with params is refused with expect: the loader's
//  message (with position), or else the start's.
static void
s_expect_error (const char *params, const char *expect)
{
    tr_test_expect_params_error (s_node, "graph.yaml",
                                 "name: t\nchildren:\n  - {name: a, actor: job}\n"
                                 "  - name: g\n    actor: graph\n", params, expect,
                                 TR_TEST_WHOLE);
}

START_TEST (test_bad_params)
{
    //  The loader's own checks (kinds, required, unknown keys).
    s_expect_error ("{tasks: a}",
                    "graph.yaml:6:21: parameter 'tasks' of actor type 'graph' must be a sequence, "
                    "not 'a'");
    s_expect_error ("{task: []}", "graph.yaml:6:14: unknown parameter 'task' of actor type "
                    "'graph'; expected one of: tasks, output, timeout, on_failure, context, "
                    "max_depth, limit, progress");
    //  The type's check, at the value's line and column.
    s_expect_error ("{tasks: []}", "graph.yaml:6:21: g: 'tasks' must be a list of at least one task");
    s_expect_error ("{tasks: [a]}",
                    "graph.yaml:6:22: g: tasks item 1 must be a mapping {name, actor, depends_on}, "
                    "not a string");
    s_expect_error ("{tasks: [{actor: a}]}", "graph.yaml:6:22: g: tasks item 1 needs 'name', "
                    "the task's name");
    s_expect_error ("{tasks: [{name: x}]}",
                    "graph.yaml:6:22: g: task 'x' needs 'actor', the actor to ask");
    s_expect_error ("{tasks: [{name: 3, actor: a}]}",
                    "graph.yaml:6:29: g: tasks item 1: 'name' must be a string, not an integer");
    s_expect_error ("{tasks: [{name: x, actor: 'a b'}]}",
                    "graph.yaml:6:39: g: task 'x': 'actor' is not a valid actor name: 'a b'");
    s_expect_error ("{tasks: [{name: x, actor: a, after: [y]}]}",
                    "graph.yaml:6:49: g: unknown key 'after' in tasks item 1; expected one of: "
                    "name, actor, depends_on, timeout");
    s_expect_error ("{tasks: [{name: x, actor: a, depends_on: y}]}",
                    "graph.yaml:6:54: g: task 'x': 'depends_on' must be a list of task names, "
                    "not a string");
    s_expect_error ("{tasks: [{name: x, actor: a, depends_on: [1]}]}",
                    "graph.yaml:6:55: g: task 'x': 'depends_on' item 1 must be a task name, "
                    "not an integer");
    s_expect_error ("{tasks: [{name: x, actor: a}, {name: y, actor: a, depends_on: [x, x]}]}",
                    "graph.yaml:6:79: g: task 'y' depends on 'x' twice");
    s_expect_error ("{tasks: [{name: x, actor: a, depends_on: [zz]}]}",
                    "graph.yaml:6:55: g: task 'x' depends on 'zz', which is not a task of this graph");
    s_expect_error ("{tasks: [{name: x, actor: a, timeout: soon}]}",
                    "graph.yaml:6:51: g: task 'x': 'timeout' must be a duration from 1ms, such as "
                    "250ms or 2s");
    s_expect_error ("{tasks: [{name: x, actor: a}], output: y}",
                    "graph.yaml:6:52: g: 'output' names 'y', which is not a task of this graph");
    s_expect_error ("{tasks: [{name: x, actor: a}], on_failure: shrug}",
                    "graph.yaml:6:56: g: 'on_failure' must be one of error, report, continue, "
                    "not 'shrug'");
    s_expect_error ("{tasks: [{name: x, actor: a}], max_depth: 17}",
                    "graph.yaml:6:55: g: 'max_depth' must be from 1 to 16, not 17");
    s_expect_error ("{tasks: [{name: x, actor: a}], limit: 0}",
                    "graph.yaml:6:51: g: 'limit' must be from 1 to 1000000, not 0");
    s_expect_error ("{tasks: [{name: x, actor: a}], context: [user, 2]}",
                    "graph.yaml:6:60: g: 'context' item 2 must be a field name (a non-empty "
                    "string), not an integer");
    s_expect_error ("{tasks: [{name: x, actor: a}], context: [user, user]}",
                    "graph.yaml:6:60: g: 'context' names 'user' twice (items 1 and 2)");
    s_expect_error ("{tasks: [{name: x, actor: a}, {name: x, actor: a}]}",
                    "graph.yaml:6:50: g: task name 'x' is used twice (tasks items 1 and 2)");
    s_expect_error ("{tasks: [{name: x, actor: a, depends_on: [y]}, {name: y, actor: a, "
                    "depends_on: [x]}]}",
                    "graph.yaml:6:22: g: tasks form a cycle: x -> y -> x");
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_graph");
    TCase *tc = tcase_create ("graph");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_order_and_shape);
    tcase_add_test (tc, test_parallel_overlap);
    tcase_add_test (tc, test_cycle_at_load);
    tcase_add_test (tc, test_cycle_at_start_from_c);
    tcase_add_test (tc, test_depth_limit);
    tcase_add_test (tc, test_nested_context);
    tcase_add_test (tc, test_progress_events);
    tcase_add_test (tc, test_failure);
    tcase_add_test (tc, test_timeout_and_missing_actor);
    tcase_add_test (tc, test_tell);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
