/*  tr_graph.c - the graph: tasks with dependencies, independent branches
    in parallel, nested graphs with a depth limit, progress events.

    A graph's params list tasks, each {name, actor, depends_on: [NAME...],
    timeout}. A message to the graph starts a run: every task whose
    dependencies are done is asked at once (up to `limit` in flight), each
    with a map

        {input: THE GRAPH'S INPUT, deps: {DEP: ITS OUTPUT, ...},
         context: {FIELD: VALUE, ...}, depth: N}

    and its answer is its output. When every task is done, the asker gets
    the output of the task named by `output`, or else a map {TASK: OUTPUT}
    of the tasks nothing depends on (the sinks), in file order.

    Cycles, unknown dependencies and names used twice are refused when the
    tree file is loaded (the type's check) and again when the graph starts
    (from C), the cycle named in order ("a -> b -> a": a depends on b,
    which depends on a).

    Nesting: a task's actor may be another graph. A graph that gets such a
    task map (exactly the four keys above) runs at its depth plus one, with
    {input, deps} as its input, and refuses with TR_EDEPTH when that depth
    is over its `max_depth`: a graph that asks itself, directly or through
    others, stops there instead of asking for ever. `context: [FIELD...]`
    declares what a graph passes down: each field is taken from the
    context its own asker graph gave it or, failing that, from its input
    when that is a map; tasks get those fields and no others.

    A task that fails (an error answer, a timeout, no such actor) fails
    the graph with `on_failure: error` (the asker gets its error) or
    `report` (the asker gets a map of what failed, what did not run and
    what was done): no further task starts, the tasks in flight are waited
    for, and the tasks not run are reported. With `on_failure: continue`
    the graph runs on: a failed task's output, for its dependents and in
    the answer, is {error: "TR_..."}.

    Events on the bus (with `progress: false`, only the last two):
        graph.task.started  {graph, run, task, started, total}
        graph.task.done     {graph, run, task, ok, error?, done, failed, total}
        graph.completed     {graph, run, depth, total, done, failed, ms}
        graph.failed        {graph, run, depth, error, total, done, failed,
                             skipped, failures: {TASK: ERROR}, ms}

    The graph never waits on its thread: each task is asked with
    tr_request and a timer, and many runs are in flight at once.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_mp.h"
#include "tr_u64map.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_event.h"
#include "troupe/tr_timer.h"

#include <stdlib.h>
#include <string.h>

//  The deepest max_depth: each level nests the input one map deeper, and
//  a body nests TR_BODY_MAX_DEPTH (32) deep at most.
#define S_MAX_DEPTH 16

typedef struct {
    char *name;
    char *actor;
    int64_t timeout_ms;                 //  0: the graph's
    size_t *deps;                       //  the tasks it depends on, as listed
    size_t ndeps;
} s_task_t;

enum { S_FAIL_ERROR, S_FAIL_REPORT, S_FAIL_CONTINUE };

//  A task's state in a run.
enum { S_PENDING, S_RUNNING, S_DONE, S_FAILED };

typedef struct s_run_s s_run_t;

//  What a request in flight is for (the owner of the task's wait).
typedef struct {
    s_run_t *run;
    size_t task;
} s_slot_t;

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    s_task_t *tasks;
    size_t count;
    size_t *after;                      //  the tasks that depend on task i are
    size_t *after_at;                   //  after [after_at [i] .. after_at [i + 1])
    size_t nsinks;                      //  tasks nothing depends on
    long output;                        //  the task whose output is the answer, or -1
    char **context;                     //  the fields passed down
    size_t ncontext;
    int64_t timeout_ms;
    int64_t max_depth;
    int64_t limit;
    int on_failure;
    bool progress;
    //  Runs
    tr__runs_t runs;                    //  of s_run_t, waits owned by s_slot_t
    uint64_t next_run;
    msgpack_sbuffer scratch;            //  see s_scratch
} s_graph_t;

static const tr__runs_calls_t s_calls;

struct s_run_s {
    tr__run_t base;                     //  the deferred ask (or NULL for a tell), the sender
    uint64_t id;
    tr__value_t input;                    //  what tasks get as `input`
    tr__value_t context;                  //  a packed map
    int64_t depth;
    int64_t started_ns;
    uint32_t *waiting;                  //  per task: dependencies not settled yet
    uint8_t *state;
    int *errors;
    tr__value_t *outputs;
    tr__wait_t *waits;                  //  per running task: its request
    s_slot_t *slots;
    size_t *queue;                      //  ready tasks, in the order they became ready
    size_t head, tail;
    size_t running, started, done, failed;
    int error;                          //  the first failure's
    bool stopping;                      //  a failure stopped new tasks
};

static const tr_param_spec_t s_graph_params [] = {
    { "tasks", TR_PARAM_LIST, true, "the tasks: maps {name, actor, depends_on, timeout}" },
    { "output", TR_PARAM_STRING, false, "the task whose output is the answer (default: a map "
                                        "of the outputs of the tasks nothing depends on)" },
    { "timeout", TR_PARAM_DURATION, false, "how long each task gets (default 5s)" },
    { "on_failure", TR_PARAM_STRING, false, "error (default), report, or continue" },
    { "context", TR_PARAM_LIST, false, "fields passed down to tasks (and nested graphs)" },
    { "max_depth", TR_PARAM_INT, false, "how deep graphs may nest, 1 to 16 (default 8)" },
    { "limit", TR_PARAM_INT, false, "tasks in flight at most, per run (default 256)" },
    { "progress", TR_PARAM_BOOL, false, "publish graph.task.* events (default true)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_graph_free (s_graph_t *graph)
{
    if (!graph)
        return;
    for (size_t i = 0; i < graph->count; i++) {
        free (graph->tasks [i].name);
        free (graph->tasks [i].actor);
        free (graph->tasks [i].deps);
    }
    free (graph->tasks);
    free (graph->after);
    free (graph->after_at);
    tr__names_free (graph->context, graph->ncontext);
    msgpack_sbuffer_destroy (&graph->scratch);
    free (graph);
}

//  Task names, for lookups while the settings are read: open addressing
//  over indices + 1 (0: empty), at most half full.
typedef struct {
    size_t *slots;
    size_t mask;
} s_names_t;

static int
s_names_init (s_names_t *names, size_t count)
{
    size_t cap = 16;
    while (cap < count * 2)
        cap *= 2;
    names->slots = (size_t *) calloc (cap, sizeof *names->slots);
    names->mask = cap - 1;
    return names->slots? 0: -1;
}

//  The index of the task named name (len bytes), or -1. With add >= 0,
//  enters task `add` under its name when the name is free.
static long
s_names_find (s_names_t *names, const s_task_t *tasks, const char *name, size_t len, long add)
{
    size_t at = (size_t) tr__hash (name, len, 0) & names->mask;
    while (names->slots [at]) {
        const char *other = tasks [names->slots [at] - 1].name;
        if (strlen (other) == len && memcmp (other, name, len) == 0)
            return (long) names->slots [at] - 1;
        at = (at + 1) & names->mask;
    }
    if (add >= 0)
        names->slots [at] = (size_t) add + 1;
    return -1;
}

//  A duration under key in a task's map; 0 when absent.
static int
s_task_timeout (tr__cfg_t *cfg, const msgpack_object *map, const char *task, int64_t *out)
{
    const msgpack_object *o = tr__cfg_get (cfg, map, "timeout");
    int64_t ms = -1;
    if (!o)
        return 0;
    if (o->type == MSGPACK_OBJECT_STR) {
        if (tr_duration_parse (o->via.str.ptr, o->via.str.size, &ms) != TR_OK)
            ms = -1;
    }
    else
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT32_MAX)
        ms = (int64_t) o->via.u64;
    if (ms < 1 || ms > INT32_MAX)
        return tr__cfg_bad_at (cfg, "timeout", "task '%s': 'timeout' must be a duration "
                               "from 1ms, such as 250ms or 2s", task);
    *out = ms;
    return 0;
}

//  A string under key in a task's map (`who` names the task in messages):
//  left alone when absent, refused when not a non-empty string without
//  NUL bytes.
static int
s_task_str (tr__cfg_t *cfg, const msgpack_object *map, const char *key, const char *who,
            char **out)
{
    const msgpack_object *o = tr__cfg_get (cfg, map, key);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad_at (cfg, key, "%s: '%s' must be a string, not %s", who, key,
                               tr__cfg_kind (o));
    if (o->via.str.size == 0 || memchr (o->via.str.ptr, 0, o->via.str.size))
        return tr__cfg_bad_at (cfg, key, "%s: '%s' must be a non-empty string without NUL "
                               "bytes", who, key);
    *out = strndup (o->via.str.ptr, o->via.str.size);
    return *out? 0: tr__cfg_bad (cfg, "out of memory");
}

//  An item of `tasks`, but its depends_on (read once every name is known).
static int
s_task_parse (tr__cfg_t *cfg, const msgpack_object *o, size_t index, s_task_t *task)
{
    static const char *const keys [] = { "name", "actor", "depends_on", "timeout", NULL };
    char where [48];
    snprintf (where, sizeof where, "tasks item %zu", index + 1);
    tr__cfg_enter (cfg, "tasks.%zu", index + 1);
    if (o->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad (cfg, "%s must be a mapping {name, actor, depends_on}, not %s",
                            where, tr__cfg_kind (o));
    if (tr__cfg_keys (cfg, o, where, keys))
        return -1;
    if (s_task_str (cfg, o, "name", where, &task->name))
        return -1;
    if (!task->name)
        return tr__cfg_bad (cfg, "%s needs 'name', the task's name", where);
    char who [160];
    snprintf (who, sizeof who, "task '%.100s'", task->name);
    if (s_task_str (cfg, o, "actor", who, &task->actor))
        return -1;
    if (!task->actor)
        return tr__cfg_bad (cfg, "task '%s' needs 'actor', the actor to ask", task->name);
    if (tr_name_check (task->actor, strlen (task->actor)) || task->actor [0] == '$')
        return tr__cfg_bad_at (cfg, "actor", "task '%s': 'actor' is not a valid actor name: "
                               "'%.100s'", task->name, task->actor);
    return s_task_timeout (cfg, o, task->name, &task->timeout_ms);
}

//  Task index's depends_on, as indices.
static int
s_task_deps (tr__cfg_t *cfg, s_graph_t *graph, s_names_t *names, const msgpack_object *o,
             size_t index)
{
    s_task_t *task = &graph->tasks [index];
    tr__cfg_enter (cfg, "tasks.%zu", index + 1);
    const msgpack_object *list = tr__cfg_get (cfg, o, "depends_on");
    if (!list)
        return 0;
    if (list->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "depends_on", "task '%s': 'depends_on' must be a list of "
                               "task names, not %s", task->name, tr__cfg_kind (list));
    tr__cfg_enter_sub (cfg, "depends_on");
    task->deps = (size_t *) calloc (list->via.array.size + 1, sizeof *task->deps);
    if (!task->deps)
        return tr__cfg_bad (cfg, "out of memory");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *item = &list->via.array.ptr [i];
        char at [16];
        snprintf (at, sizeof at, "%u", i + 1);
        if (item->type != MSGPACK_OBJECT_STR)
            return tr__cfg_bad_at (cfg, at, "task '%s': 'depends_on' item %u must be a task "
                                   "name, not %s", task->name, i + 1, tr__cfg_kind (item));
        int len = (int) (item->via.str.size > 100? 100: item->via.str.size);
        long dep = s_names_find (names, graph->tasks, item->via.str.ptr, item->via.str.size, -1);
        if (dep < 0)
            return tr__cfg_bad_at (cfg, at, "task '%s' depends on '%.*s', which is not a task "
                                   "of this graph", task->name, len, item->via.str.ptr);
        for (size_t k = 0; k < task->ndeps; k++)
            if (task->deps [k] == (size_t) dep)
                return tr__cfg_bad_at (cfg, at, "task '%s' depends on '%.*s' twice",
                                       task->name, len, item->via.str.ptr);
        task->deps [task->ndeps++] = (size_t) dep;
    }
    return 0;
}

//  The dependents of each task (the reverse of depends_on), in task order.
static int
s_graph_link (tr__cfg_t *cfg, s_graph_t *graph)
{
    size_t edges = 0;
    for (size_t i = 0; i < graph->count; i++)
        edges += graph->tasks [i].ndeps;
    graph->after = (size_t *) calloc (edges + 1, sizeof *graph->after);
    graph->after_at = (size_t *) calloc (graph->count + 1, sizeof *graph->after_at);
    size_t *fill = (size_t *) calloc (graph->count + 1, sizeof *fill);
    if (!graph->after || !graph->after_at || !fill) {
        free (fill);
        return tr__cfg_bad (cfg, "out of memory");
    }
    for (size_t i = 0; i < graph->count; i++)
        for (size_t k = 0; k < graph->tasks [i].ndeps; k++)
            graph->after_at [graph->tasks [i].deps [k] + 1]++;
    for (size_t i = 0; i < graph->count; i++)
        graph->after_at [i + 1] += graph->after_at [i];
    for (size_t i = 0; i < graph->count; i++)
        for (size_t k = 0; k < graph->tasks [i].ndeps; k++) {
            size_t dep = graph->tasks [i].deps [k];
            graph->after [graph->after_at [dep] + fill [dep]++] = i;
        }
    free (fill);
    for (size_t i = 0; i < graph->count; i++)
        graph->nsinks += graph->after_at [i + 1] == graph->after_at [i];
    return 0;
}

//  Names a cycle found by the search: `stack [from..depth)` each depend on
//  the next, and the last on the first. Written from the member that
//  comes first in the file, which is blamed.
static int
s_cycle_bad (tr__cfg_t *cfg, s_graph_t *graph, const size_t *stack, size_t from, size_t depth)
{
    size_t first = from;
    for (size_t i = from; i < depth; i++)
        if (stack [i] < stack [first])
            first = i;
    char text [TR__CFG_ERROR - 400];
    size_t used = 0;
    size_t len = depth - from;
    for (size_t k = 0; k <= len && used < sizeof text - 1; k++) {
        const char *name = graph->tasks [stack [from + (first - from + k) % len]].name;
        int n = snprintf (text + used, sizeof text - used, "%s%s", k? " -> ": "", name);
        used += n > 0? (size_t) n: 0;
    }
    if (used >= sizeof text - 1)
        memcpy (text + sizeof text - 4, "...", 4);
    tr__cfg_enter (cfg, "tasks.%zu", stack [first] + 1);
    return tr__cfg_bad (cfg, "tasks form a cycle: %s", text);
}

//  Depth-first search over depends_on, without recursion (a graph may
//  hold thousands of tasks): -1 with the first cycle met, named.
static int
s_graph_acyclic (tr__cfg_t *cfg, s_graph_t *graph)
{
    size_t n = graph->count;
    uint8_t *color = (uint8_t *) calloc (n, 1);            //  0 new, 1 on the stack, 2 done
    size_t *stack = (size_t *) calloc (n, sizeof *stack);
    size_t *next = (size_t *) calloc (n, sizeof *next);    //  the next dependency to visit
    int rc = 0;
    if (!color || !stack || !next)
        rc = tr__cfg_bad (cfg, "out of memory");
    for (size_t root = 0; rc == 0 && root < n; root++) {
        if (color [root])
            continue;
        size_t depth = 0;
        stack [depth++] = root;
        color [root] = 1;
        next [root] = 0;
        while (depth > 0 && rc == 0) {
            size_t t = stack [depth - 1];
            if (next [t] == graph->tasks [t].ndeps) {
                color [t] = 2;
                depth--;
                continue;
            }
            size_t dep = graph->tasks [t].deps [next [t]++];
            if (color [dep] == 1) {
                size_t from = depth;
                while (stack [from - 1] != dep)
                    from--;
                rc = s_cycle_bad (cfg, graph, stack, from - 1, depth);
            }
            else
            if (color [dep] == 0) {
                color [dep] = 1;
                next [dep] = 0;
                stack [depth++] = dep;
            }
        }
    }
    free (color);
    free (stack);
    free (next);
    return rc;
}

static int
s_graph_tasks (tr__cfg_t *cfg, s_graph_t *graph)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "tasks");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "tasks", "'tasks' must be a list of at least one task");
    graph->tasks = (s_task_t *) calloc (list->via.array.size, sizeof *graph->tasks);
    s_names_t names = { NULL, 0 };
    if (!graph->tasks || s_names_init (&names, list->via.array.size))
        return tr__cfg_bad (cfg, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < list->via.array.size; i++) {
        graph->count = i + 1;           //  so that s_graph_free frees this one too
        s_task_t *task = &graph->tasks [i];
        rc = s_task_parse (cfg, &list->via.array.ptr [i], i, task);
        long other = rc? -1: s_names_find (&names, graph->tasks, task->name,
                                           strlen (task->name), (long) i);
        if (other >= 0)
            rc = tr__cfg_bad_at (cfg, "name", "task name '%s' is used twice (tasks items %ld "
                                 "and %zu)", task->name, other + 1, i + 1);
    }
    for (size_t i = 0; rc == 0 && i < graph->count; i++)
        rc = s_task_deps (cfg, graph, &names, &list->via.array.ptr [i], i);
    graph->output = -1;
    char *output = NULL;
    tr__cfg_enter (cfg, "%s", "");
    if (rc == 0)
        rc = tr__cfg_str (cfg, "output", &output);
    if (rc == 0 && output) {
        graph->output = s_names_find (&names, graph->tasks, output, strlen (output), -1);
        if (graph->output < 0)
            rc = tr__cfg_bad_at (cfg, "output", "'output' names '%.100s', which is not a task "
                                 "of this graph", output);
    }
    free (output);
    free (names.slots);
    if (rc == 0)
        rc = s_graph_link (cfg, graph);
    return rc? rc: s_graph_acyclic (cfg, graph);
}

//  `context`: a list of field names, none twice.
static int
s_graph_context (tr__cfg_t *cfg, s_graph_t *graph)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "context");
    if (!list)
        return 0;
    if (list->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "context", "'context' must be a list of field names, not %s",
                               tr__cfg_kind (list));
    tr__cfg_enter (cfg, "context");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *o = &list->via.array.ptr [i];
        char at [16];
        snprintf (at, sizeof at, "%u", i + 1);
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0
        ||  memchr (o->via.str.ptr, 0, o->via.str.size))
            return tr__cfg_bad_at (cfg, at, "'context' item %u must be a field name (a non-empty "
                                   "string), not %s", i + 1, tr__cfg_kind (o));
        for (uint32_t k = 0; k < i; k++)
            if (list->via.array.ptr [k].via.str.size == o->via.str.size
            &&  memcmp (list->via.array.ptr [k].via.str.ptr, o->via.str.ptr, o->via.str.size) == 0)
                return tr__cfg_bad_at (cfg, at, "'context' names '%.*s' twice (items %u and %u)",
                                       (int) (o->via.str.size > 100? 100: o->via.str.size),
                                       o->via.str.ptr, k + 1, i + 1);
    }
    tr__cfg_enter (cfg, "%s", "");
    graph->context = (char **) calloc (list->via.array.size + 1, sizeof *graph->context);
    if (!graph->context)
        return tr__cfg_bad (cfg, "out of memory");
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        graph->context [i] = strndup (list->via.array.ptr [i].via.str.ptr,
                                      list->via.array.ptr [i].via.str.size);
        if (!graph->context [i])
            return tr__cfg_bad (cfg, "out of memory");
        graph->ncontext = i + 1;
    }
    return 0;
}

static int
s_graph_configure (s_graph_t *graph, tr__cfg_t *cfg)
{
    static const char *const failures [] = { "error", "report", "continue", NULL };
    graph->timeout_ms = 5000;
    graph->max_depth = 8;
    graph->limit = 256;
    graph->progress = true;
    graph->on_failure = S_FAIL_ERROR;
    if (tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &graph->timeout_ms)
    ||  tr__cfg_choice (cfg, "on_failure", failures, &graph->on_failure)
    ||  tr__cfg_int (cfg, "max_depth", 1, S_MAX_DEPTH, &graph->max_depth)
    ||  tr__cfg_int (cfg, "limit", 1, 1000000, &graph->limit)
    ||  tr__cfg_bool (cfg, "progress", &graph->progress)
    ||  s_graph_context (cfg, graph))
        return -1;
    return s_graph_tasks (cfg, graph);
}

//  The tree loader's check: the same reading as init's, with positions.
TR__CFG_CHECK_DEFINE (s_graph_check, "graph", s_graph_t, s_graph_configure, s_graph_free)

static int
s_graph_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_graph_t *graph = (s_graph_t *) calloc (1, sizeof *graph);
    int rc = tr__cfg_open (&cfg, "graph", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !graph)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_graph_configure (graph, &cfg);
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_graph_free (graph);
        return -1;
    }
    tr__cfg_close (&cfg);
    graph->self = self;
    graph->node = tr_actor_node (self);
    tr__runs_init (&graph->runs, self, "graph", &s_calls, graph);
    *state_p = graph;
    return 0;
}

//  --------------------------------------------------------------------------
//  Packing

//  The graph's scratch buffer, emptied, with pk packing into it. Task
//  asks, events and answers are packed there and copied by the send, so
//  that they allocate nothing (a new sbuffer's first write takes 8 KiB).
//  One use at a time, on the graph's thread.
static msgpack_sbuffer *
s_scratch (s_graph_t *graph, msgpack_packer *pk)
{
    msgpack_sbuffer_clear (&graph->scratch);
    msgpack_packer_init (pk, &graph->scratch, msgpack_sbuffer_write);
    return &graph->scratch;
}

//  Takes what an sbuffer holds as a value (the sbuffer is left empty).
static void
s_value_take (tr__value_t *value, msgpack_sbuffer *buffer)
{
    tr__value_free (value);
    value->size = buffer->size;
    value->data = (uint8_t *) msgpack_sbuffer_release (buffer);
}

//  --------------------------------------------------------------------------
//  Starting a run: its input, context and depth

//  True if o is a task map from a graph: exactly {input, deps, context,
//  depth}, deps and context maps, depth a positive integer.
static bool
s_is_task_map (const msgpack_object *o)
{
    const msgpack_object *deps = tr__map_get (o, "deps");
    const msgpack_object *context = tr__map_get (o, "context");
    const msgpack_object *depth = tr__map_get (o, "depth");
    return o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 4 && tr__map_get (o, "input")
        && deps && deps->type == MSGPACK_OBJECT_MAP
        && context && context->type == MSGPACK_OBJECT_MAP
        && depth && depth->type == MSGPACK_OBJECT_POSITIVE_INTEGER && depth->via.u64 >= 1;
}

//  The context passed to the run's tasks: each declared field from the
//  context given (by an asking graph), else from the input map.
static void
s_pack_context (s_graph_t *graph, const msgpack_object *given, const msgpack_object *input,
                msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    const msgpack_object **values = graph->ncontext?
        (const msgpack_object **) calloc (graph->ncontext, sizeof *values): NULL;
    if (graph->ncontext && !values)
        return;                         //  the buffer stays empty: out of memory
    uint32_t found = 0;
    for (size_t i = 0; i < graph->ncontext; i++) {
        values [i] = tr__map_get (given, graph->context [i]);
        if (!values [i])
            values [i] = tr__map_get (input, graph->context [i]);
        found += values [i] != NULL;
    }
    msgpack_pack_map (&pk, found);
    for (size_t i = 0; i < graph->ncontext; i++)
        if (values [i]) {
            tr__pack_str (&pk, graph->context [i]);
            msgpack_pack_object (&pk, *values [i]);
        }
    free (values);
}

//  Reads the message that starts a run into its input, context and depth.
//  Returns 0, or -1 when memory ran out.
static int
s_run_read (s_graph_t *graph, s_run_t *run, const tr_msg_t *msg)
{
    const char *body = (const char *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    run->depth = 1;
    //  Only a map of four (a task map) or a graph with a context needs
    //  the body taken apart; the runtime has checked it is msgpack.
    bool look = size > 0 && ((uint8_t) body [0] == 0x84 || graph->ncontext > 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *o = NULL;
    if (look && msgpack_unpack_next (&unpacked, body, size, NULL) == MSGPACK_UNPACK_SUCCESS)
        o = &unpacked.data;
    int rc = 0;
    if (o && s_is_task_map (o)) {
        //  Asked by a graph: one deeper, and {input, deps} is the input.
        uint64_t depth = tr__map_get (o, "depth")->via.u64;
        run->depth = depth < S_MAX_DEPTH * 2? (int64_t) depth + 1: S_MAX_DEPTH * 2;
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 2);
        tr__pack_str (&pk, "input");
        msgpack_pack_object (&pk, *tr__map_get (o, "input"));
        tr__pack_str (&pk, "deps");
        msgpack_pack_object (&pk, *tr__map_get (o, "deps"));
        s_value_take (&run->input, &buffer);
        s_pack_context (graph, tr__map_get (o, "context"), NULL, &buffer);
    }
    else {
        rc = tr__value_set (&run->input, body, size);
        s_pack_context (graph, NULL, o, &buffer);
    }
    s_value_take (&run->context, &buffer);
    msgpack_unpacked_destroy (&unpacked);
    return rc || !run->context.data || (run->input.size && !run->input.data)? -1: 0;
}

//  --------------------------------------------------------------------------
//  Events

//  Starts an event's map of `fields` pairs with graph and run.
static void
s_event_start (s_graph_t *graph, s_run_t *run, msgpack_packer *pk, uint32_t fields)
{
    msgpack_pack_map (pk, fields + 2);
    tr__pack_str (pk, "graph");
    tr__pack_str (pk, tr_actor_name (graph->self));
    tr__pack_str (pk, "run");
    msgpack_pack_uint64 (pk, run->id);
}

static void
s_event_send (s_graph_t *graph, const char *topic, msgpack_sbuffer *buffer)
{
    int rc = buffer->data? tr_event_publish (graph->node, topic, buffer->data, buffer->size, NULL)
                         : TR_ENOMEM;
    if (rc != TR_OK)
        tr_log (TR_LOG_WARN, "graph '%s': could not publish %s: %s", tr_actor_name (graph->self),
                topic, tr_strerror (rc));
}

static void
s_event_started (s_graph_t *graph, s_run_t *run, size_t t)
{
    if (!graph->progress)
        return;
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    s_event_start (graph, run, &pk, 3);
    tr__pack_str (&pk, "task");
    tr__pack_str (&pk, graph->tasks [t].name);
    tr__pack_str (&pk, "started");
    msgpack_pack_uint64 (&pk, run->started);
    tr__pack_str (&pk, "total");
    msgpack_pack_uint64 (&pk, graph->count);
    s_event_send (graph, "graph.task.started", buffer);
}

static void
s_event_done (s_graph_t *graph, s_run_t *run, size_t t, int error)
{
    if (!graph->progress)
        return;
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    s_event_start (graph, run, &pk, error? 6: 5);
    tr__pack_str (&pk, "task");
    tr__pack_str (&pk, graph->tasks [t].name);
    tr__pack_str (&pk, "ok");
    if (error)
        msgpack_pack_false (&pk);
    else
        msgpack_pack_true (&pk);
    if (error) {
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (error));
    }
    tr__pack_str (&pk, "done");
    msgpack_pack_uint64 (&pk, run->done);
    tr__pack_str (&pk, "failed");
    msgpack_pack_uint64 (&pk, run->failed);
    tr__pack_str (&pk, "total");
    msgpack_pack_uint64 (&pk, graph->count);
    s_event_send (graph, "graph.task.done", buffer);
}

//  {TASK: ERROR} of the failed tasks.
static void
s_pack_failures (s_graph_t *graph, s_run_t *run, msgpack_packer *pk)
{
    msgpack_pack_map (pk, (uint32_t) run->failed);
    for (size_t t = 0; t < graph->count; t++)
        if (run->state [t] == S_FAILED) {
            tr__pack_str (pk, graph->tasks [t].name);
            tr__pack_str (pk, tr_errname (run->errors [t]));
        }
}

//  graph.completed or graph.failed, with the counts.
static void
s_event_end (s_graph_t *graph, s_run_t *run, bool failed)
{
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    s_event_start (graph, run, &pk, failed? 8: 5);
    tr__pack_str (&pk, "depth");
    msgpack_pack_int64 (&pk, run->depth);
    if (failed) {
        tr__pack_str (&pk, "error");
        tr__pack_str (&pk, tr_errname (run->error));
    }
    tr__pack_str (&pk, "total");
    msgpack_pack_uint64 (&pk, graph->count);
    tr__pack_str (&pk, "done");
    msgpack_pack_uint64 (&pk, run->done);
    tr__pack_str (&pk, "failed");
    msgpack_pack_uint64 (&pk, run->failed);
    if (failed) {
        tr__pack_str (&pk, "skipped");
        msgpack_pack_uint64 (&pk, graph->count - run->done - run->failed);
        tr__pack_str (&pk, "failures");
        s_pack_failures (graph, run, &pk);
    }
    tr__pack_str (&pk, "ms");
    msgpack_pack_int64 (&pk, (tr__now_ns () - run->started_ns) / 1000000);
    s_event_send (graph, failed? "graph.failed": "graph.completed", buffer);
}

//  --------------------------------------------------------------------------
//  Runs

static void
s_run_free (s_graph_t *graph, s_run_t *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->outputs && i < graph->count; i++)
        tr__value_free (&run->outputs [i]);
    free (run->outputs);
    tr__value_free (&run->input);
    tr__value_free (&run->context);
    free (run->waiting);
    free (run->state);
    free (run->errors);
    free (run->waits);
    free (run->slots);
    free (run->queue);
    tr__run_free (&run->base);          //  an ask unanswered: the asker gets TR_ENOREPLY
}

//  The answer of a run that succeeded: the `output` task's output, or the
//  map of the sinks' outputs.
static int
s_answer (s_graph_t *graph, s_run_t *run)
{
    if (graph->output >= 0) {
        const tr__value_t *out = &run->outputs [graph->output];
        return tr_reply (run->base.ask, out->data, out->size);
    }
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    msgpack_pack_map (&pk, (uint32_t) graph->nsinks);
    for (size_t t = 0; t < graph->count; t++)
        if (graph->after_at [t + 1] == graph->after_at [t]) {
            tr__pack_str (&pk, graph->tasks [t].name);
            tr__value_pack (&pk, &run->outputs [t]);
        }
    return buffer->data? tr_reply (run->base.ask, buffer->data, buffer->size): TR_ENOMEM;
}

//  The report of a failed run (on_failure: report): {error, failed:
//  {TASK: ERROR}, skipped: [TASK...], outputs: {TASK: OUTPUT}}.
static int
s_report (s_graph_t *graph, s_run_t *run)
{
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, tr_errname (run->error));
    tr__pack_str (&pk, "failed");
    s_pack_failures (graph, run, &pk);
    tr__pack_str (&pk, "skipped");
    msgpack_pack_array (&pk, (uint32_t) (graph->count - run->done - run->failed));
    for (size_t t = 0; t < graph->count; t++)
        if (run->state [t] == S_PENDING)
            tr__pack_str (&pk, graph->tasks [t].name);
    tr__pack_str (&pk, "outputs");
    msgpack_pack_map (&pk, (uint32_t) run->done);
    for (size_t t = 0; t < graph->count; t++)
        if (run->state [t] == S_DONE) {
            tr__pack_str (&pk, graph->tasks [t].name);
            tr__value_pack (&pk, &run->outputs [t]);
        }
    return buffer->data? tr_reply (run->base.ask, buffer->data, buffer->size): TR_ENOMEM;
}

//  The run is over (nothing in flight): published, counted, answered,
//  freed.
static void
s_run_end (s_graph_t *graph, s_run_t *run)
{
    bool failed = run->error && graph->on_failure != S_FAIL_CONTINUE;
    s_event_end (graph, run, failed);
    tr_actor_info_add (graph->self, failed? "graph.failed": "graph.completed", 1);
    tr__runs_remove (&graph->runs, &run->base);
    if (failed) {
        size_t skipped = graph->count - run->done - run->failed;
        tr_log (TR_LOG_WARN, "graph '%s': run %llu for %s from '%s' failed (%s): %zu task(s) "
                "failed, %zu not run, %zu done", tr_actor_name (graph->self),
                (unsigned long long) run->id, run->base.ask? "an ask": "a tell",
                run->base.ask? tr_msg_from (run->base.ask): run->base.from, tr_strerror (run->error),
                run->failed, skipped, run->done);
    }
    if (run->base.ask) {
        int rc = !failed? s_answer (graph, run)
               : graph->on_failure == S_FAIL_REPORT? s_report (graph, run)
               : tr_reply_error (run->base.ask, run->error);
        if (rc != TR_OK)
            tr_reply_error (run->base.ask, failed? run->error: rc);
    }
    s_run_free (graph, run);
}

//  Ms task t may take: its timeout, cut to the ask's deadline.
static int
s_task_ms (const s_graph_t *graph, const s_run_t *run, size_t t)
{
    return tr__run_ms (&run->base, graph->tasks [t].timeout_ms? graph->tasks [t].timeout_ms
                                                               : graph->timeout_ms);
}

//  Asks task t: {input, deps, context, depth}.
static int
s_task_send (s_graph_t *graph, s_run_t *run, size_t t)
{
    const s_task_t *task = &graph->tasks [t];
    int ms = s_task_ms (graph, run, t);
    if (ms <= 0)
        return TR_ETIMEDOUT;
    if (tr__runs_reserve (&graph->runs, 1))
        return TR_ENOMEM;
    msgpack_packer pk;
    msgpack_sbuffer *buffer = s_scratch (graph, &pk);
    msgpack_pack_map (&pk, 4);
    tr__pack_str (&pk, "input");
    tr__value_pack (&pk, &run->input);
    tr__pack_str (&pk, "deps");
    msgpack_pack_map (&pk, (uint32_t) task->ndeps);
    for (size_t k = 0; k < task->ndeps; k++) {
        tr__pack_str (&pk, graph->tasks [task->deps [k]].name);
        tr__value_pack (&pk, &run->outputs [task->deps [k]]);
    }
    tr__pack_str (&pk, "context");
    msgpack_sbuffer_write (buffer, (const char *) run->context.data, run->context.size);
    tr__pack_str (&pk, "depth");
    msgpack_pack_int64 (&pk, run->depth);
    run->slots [t] = (s_slot_t) { run, t };
    run->waits [t].owner = &run->slots [t];
    int rc = buffer->data? tr__runs_request (&graph->runs, &run->waits [t], task->actor,
                                             buffer->data, buffer->size, ms)
                         : TR_ENOMEM;
    if (rc != TR_OK)
        return rc;
    run->state [t] = S_RUNNING;
    run->running++;
    run->started++;
    tr_actor_info_add (graph->self, "graph.tasks", 1);
    s_event_started (graph, run, t);
    return TR_OK;
}

//  Task t has its outcome (error 0: its answer, reply): kept, published,
//  and its dependents made ready when they have all they need.
static void
s_task_settle (s_graph_t *graph, s_run_t *run, size_t t, const tr_msg_t *reply, int error)
{
    if (!error && reply && tr__value_set (&run->outputs [t], tr_msg_body (reply),
                                         tr_msg_size (reply)))
        error = TR_ENOMEM;
    if (error) {
        run->state [t] = S_FAILED;
        run->errors [t] = error;
        run->failed++;
        if (!run->error)
            run->error = error;
        tr_log (TR_LOG_INFO, "graph '%s': task '%s' (actor '%s') failed: %s",
                tr_actor_name (graph->self), graph->tasks [t].name, graph->tasks [t].actor,
                tr_strerror (error));
        if (graph->on_failure != S_FAIL_CONTINUE)
            run->stopping = true;
        else {
            //  Its dependents run all the same, and see {error: NAME}.
            msgpack_sbuffer buffer;
            msgpack_packer pk;
            msgpack_sbuffer_init (&buffer);
            msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, 1);
            tr__pack_str (&pk, "error");
            tr__pack_str (&pk, tr_errname (error));
            s_value_take (&run->outputs [t], &buffer);
        }
    }
    else {
        run->state [t] = S_DONE;
        run->done++;
    }
    s_event_done (graph, run, t, error);
    if (run->stopping)
        return;
    for (size_t k = graph->after_at [t]; k < graph->after_at [t + 1]; k++) {
        size_t d = graph->after [k];
        if (--run->waiting [d] == 0)
            run->queue [run->tail++] = d;
    }
}

//  Starts the ready tasks the limit allows; ends the run when nothing is
//  in flight and nothing more can start. The run may be gone after.
static void
s_pump (s_graph_t *graph, s_run_t *run)
{
    while (run->head < run->tail && !run->stopping && run->running < (size_t) graph->limit) {
        size_t t = run->queue [run->head++];
        int rc = s_task_send (graph, run, t);
        if (rc != TR_OK)
            s_task_settle (graph, run, t, NULL, rc);
    }
    if (run->running == 0 && (run->head == run->tail || run->stopping))
        s_run_end (graph, run);
}

//  The answer (reply, or error with reply NULL or an error message) to a
//  task's request (owner: its s_slot_t).
static void
s_task_answered (void *state, void *owner, const tr_msg_t *reply, int error)
{
    s_graph_t *graph = (s_graph_t *) state;
    s_slot_t *slot = (s_slot_t *) owner;
    s_run_t *run = slot->run;
    size_t t = slot->task;
    run->running--;
    s_task_settle (graph, run, t, error? NULL: reply, error);
    s_pump (graph, run);
}

//  Refuses a run nested deeper than max_depth: TR_EDEPTH, logged and
//  published as graph.failed.
static void
s_run_refuse (s_graph_t *graph, s_run_t *run)
{
    tr_log (TR_LOG_ERROR, "graph '%s': asked at depth %lld, over its max_depth %lld (graphs "
            "nested too deep, or a graph that asks itself)", tr_actor_name (graph->self),
            (long long) run->depth, (long long) graph->max_depth);
    run->error = TR_EDEPTH;
    tr__runs_remove (&graph->runs, &run->base);
    s_event_end (graph, run, true);
    tr_actor_info_add (graph->self, "graph.failed", 1);
    if (run->base.ask)
        tr_reply_error (run->base.ask, TR_EDEPTH);
    s_run_free (graph, run);
}

//  A message to run the graph for: asks are deferred, tells copied.
static int
s_run_new (void *state, const tr_msg_t *msg)
{
    s_graph_t *graph = (s_graph_t *) state;
    size_t n = graph->count;
    s_run_t *run = (s_run_t *) calloc (1, sizeof *run);
    if (run) {
        run->waiting = (uint32_t *) calloc (n, sizeof *run->waiting);
        run->state = (uint8_t *) calloc (n, sizeof *run->state);
        run->errors = (int *) calloc (n, sizeof *run->errors);
        run->outputs = (tr__value_t *) calloc (n, sizeof *run->outputs);
        run->waits = (tr__wait_t *) calloc (n, sizeof *run->waits);
        run->slots = (s_slot_t *) calloc (n, sizeof *run->slots);
        run->queue = (size_t *) calloc (n, sizeof *run->queue);
    }
    if (!run || !run->waiting || !run->state || !run->errors || !run->outputs || !run->waits
    ||  !run->slots || !run->queue || s_run_read (graph, run, msg)
    ||  tr__runs_add (&graph->runs, &run->base, msg)) {
        s_run_free (graph, run);
        return tr_msg_kind (msg) == TR_KIND_ASK? tr_reply_error (msg, TR_ENOMEM): -1;
    }
    run->id = ++graph->next_run;
    run->started_ns = tr__now_ns ();
    if (run->depth > graph->max_depth) {
        s_run_refuse (graph, run);
        return 0;
    }
    for (size_t t = 0; t < n; t++) {
        run->waiting [t] = (uint32_t) graph->tasks [t].ndeps;
        if (run->waiting [t] == 0)
            run->queue [run->tail++] = t;
    }
    s_pump (graph, run);
    return 0;
}

//  A run abandoned when the graph stops: its tasks' answers find nobody.
static void
s_run_drop (void *state, tr__run_t *base)
{
    s_graph_t *graph = (s_graph_t *) state;
    s_run_t *run = (s_run_t *) base;
    for (size_t t = 0; t < graph->count; t++)
        tr__runs_unwait (&graph->runs, &run->waits [t]);
    s_run_free (graph, run);
}

static const tr__runs_calls_t s_calls = { s_run_new, s_task_answered, s_run_drop };

static int
s_graph_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self;
    return tr__runs_handle (&((s_graph_t *) state)->runs, msg);
}

//  Runs in progress are abandoned: their asks are answered TR_ENOREPLY
//  when the deferred messages are destroyed, and their tasks' answers
//  become dead letters.
static void
s_graph_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_graph_t *graph = (s_graph_t *) state;
    tr__runs_close (&graph->runs, ", not finished");
    s_graph_free (graph);
}

const tr_actor_type_t tr__graph_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "graph",
    .summary = "tasks with depends_on: independent branches in parallel, nested graphs, "
               "progress events",
    .behaviour = { s_graph_init, s_graph_handle, s_graph_terminate },
    .params = s_graph_params,
    .check = s_graph_check,
};
