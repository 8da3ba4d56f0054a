/*  tr_tree_test.c - tree files (tr_tree.h, docs/tree-format.md).

    Errors: every file tests/trees/bad-*.yaml holds one mistake and says
    on its first line which error it must give, as "# error: LINE:COLUMN:
    MESSAGE" (0:0 for the file as a whole); test_bad_files loads each and
    compares position and message exactly. The cases that need the build
    tree (plugins) or a file system (missing files) are here in C.

    Good trees: tests/trees/good-*.yaml must load; good-full.yaml is read
    back field by field. The example of docs/tree-format.md must load
    (with the test plugin, tests/plugin/reports.c), and the errors that
    page shows must be the ones the loader gives for the changes it
    describes.  */

#include "tr_test.h"
#include <dirent.h>
#include <errno.h>
#include <msgpack.h>
#include <sys/stat.h>

#define S_TREES     TROUPE_SOURCE_DIR "/tests/trees"
#define S_DOC       TROUPE_SOURCE_DIR "/docs/tree-format.md"
#define S_PLUGIN    TROUPE_PLUGIN_DIR "/libreports.so"

//  --------------------------------------------------------------------------
//  Helpers

static void
s_spit (const char *path, const char *text)
{
    FILE *file = fopen (path, "wb");
    ck_assert_msg (file != NULL, "%s: %s", path, strerror (errno));
    ck_assert_uint_eq (fwrite (text, 1, strlen (text), file), strlen (text));
    ck_assert_int_eq (fclose (file), 0);
}

//  Parses text that must load; returns the tree.
static tr_tree_t *
s_parse (const char *text, const char *path)
{
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    char buf [600];
    int rc = tr_tree_parse (text, strlen (text), path, &tree, &err);
    ck_assert_msg (rc == TR_OK, "%s: %s", tr_errname (rc),
                   tr_tree_error_format (&err, buf, sizeof buf));
    ck_assert (tree != NULL);
    return tree;
}

//  Parses text that must fail at line:column with exactly this message.
static void
s_parse_fails (const char *text, const char *path, int line, int column,
               const char *message)
{
    tr_tree_t *tree = (tr_tree_t *) &tree;      //  not NULL: must be reset
    tr_tree_error_t err;
    int rc = tr_tree_parse (text, strlen (text), path, &tree, &err);
    ck_assert_msg (rc == TR_EMALFORMED, "%s, not TR_EMALFORMED, for\n%s",
                   tr_errname (rc), text);
    ck_assert (tree == NULL);
    ck_assert_str_eq (err.file, path? path: "<text>");
    ck_assert_msg (err.line == line && err.column == column,
                   "at %d:%d, not %d:%d: %s", err.line, err.column,
                   line, column, err.message);
    ck_assert_str_eq (err.message, message);
}

//  A type of the tests' own that takes one parameter of every kind.
static int
s_typed_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) self; (void) msg; (void) state;
    return 0;
}

static const tr_param_spec_t s_typed_params [] = {
    { "count", TR_PARAM_INT, true, "how many" },
    { "ratio", TR_PARAM_NUMBER, false, NULL },
    { "loud", TR_PARAM_BOOL, false, NULL },
    { "title", TR_PARAM_STRING, false, NULL },
    { "every", TR_PARAM_DURATION, false, NULL },
    { "items", TR_PARAM_LIST, false, NULL },
    { "options", TR_PARAM_MAP, false, NULL },
    { "extra", TR_PARAM_ANY, false, NULL },
    { NULL }
};

static const tr_actor_type_t s_typed = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "typed",
    .summary = "takes a parameter of every kind (tests only)",
    .behaviour = { .handle = s_typed_handle },
    .params = s_typed_params,
};

//  Registers `typed`. Only the tests that use it do, each in its own
//  process (Check forks), so that the types an unknown name is compared
//  with stay the built-in ones for the other tests.
static void
s_register_typed (void)
{
    int rc = tr_actor_type_register (&s_typed);
    ck_assert (rc == TR_OK || rc == TR_EEXIST);
}

//  --------------------------------------------------------------------------
//  The files in tests/trees

typedef struct {
    char name [256];
    char path [512];
} s_file_t;

//  Lists tests/trees/PREFIX*.yaml into files; returns how many.
static size_t
s_list (const char *prefix, s_file_t *files, size_t room)
{
    DIR *dir = opendir (S_TREES);
    ck_assert_msg (dir != NULL, "%s: %s", S_TREES, strerror (errno));
    size_t n = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) && n < room) {
        size_t len = strlen (entry->d_name);
        if (strncmp (entry->d_name, prefix, strlen (prefix)) == 0
        &&  len > 5 && strcmp (entry->d_name + len - 5, ".yaml") == 0) {
            snprintf (files [n].name, sizeof files [n].name, "%s", entry->d_name);
            snprintf (files [n].path, sizeof files [n].path, "%s/%s", S_TREES,
                      entry->d_name);
            n++;
        }
    }
    closedir (dir);
    return n;
}

//  Each bad file gives the error its first line names, and nothing else
//  comes out of it.
START_TEST (test_bad_files)
{
    static s_file_t files [400];
    size_t count = s_list ("bad-", files, 400);
    ck_assert_uint_ge (count, 90);
    for (size_t i = 0; i < count; i++) {
        const char *path = files [i].path;
        char *text = tr_test_read_file (path, NULL);
        int line, column, at = 0;
        ck_assert_msg (sscanf (text, "# error: %d:%d: %n", &line, &column, &at) == 2
                       && at > 0, "%s: no '# error: LINE:COLUMN: MESSAGE' line", path);
        char *end = strchr (text + at, '\n');
        ck_assert (end);
        *end = 0;
        const char *message = text + at;

        tr_tree_t *tree = (tr_tree_t *) &tree;
        tr_tree_error_t err;
        int rc = tr_tree_load (path, &tree, &err);
        ck_assert_msg (rc == TR_EMALFORMED, "%s: %s", files [i].name, tr_errname (rc));
        ck_assert (tree == NULL);
        ck_assert_str_eq (err.file, path);
        ck_assert_msg (err.line == line && err.column == column,
                       "%s: at %d:%d, not %d:%d (%s)", files [i].name,
                       err.line, err.column, line, column, err.message);
        ck_assert_msg (strcmp (err.message, message) == 0,
                       "%s:\n  got      %s\n  expected %s", files [i].name,
                       err.message, message);

        //  The formatted error: FILE:LINE:COLUMN: MESSAGE, or FILE: MESSAGE.
        char expected [1200], formatted [1200];
        if (line)
            snprintf (expected, sizeof expected, "%s:%d:%d: %s", path, line, column, message);
        else
            snprintf (expected, sizeof expected, "%s: %s", path, message);
        ck_assert_str_eq (tr_tree_error_format (&err, formatted, sizeof formatted), expected);

        //  The same text from memory gives the same error.
        size_t len;
        free (text);
        text = tr_test_read_file (path, &len);
        tr_tree_error_t again;
        ck_assert_int_eq (tr_tree_parse (text, len, path, &tree, &again), TR_EMALFORMED);
        ck_assert (memcmp (&err, &again, sizeof err) == 0);
        free (text);
    }
}
END_TEST

START_TEST (test_good_files)
{
    static s_file_t files [100];
    size_t count = s_list ("good-", files, 100);
    ck_assert_uint_ge (count, 5);
    for (size_t i = 0; i < count; i++) {
        tr_tree_t *tree = NULL;
        tr_tree_error_t err;
        char buf [600];
        int rc = tr_tree_load (files [i].path, &tree, &err);
        ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, buf, sizeof buf));
        ck_assert_str_eq (tree->path, files [i].path);
        ck_assert (tree->root.kind == TR_CHILD_SUPERVISOR);
        ck_assert_str_eq (tree->root.name, tree->name);
        ck_assert (tr_tree_find (tree, tree->name) == &tree->root);
        tr_tree_destroy (&tree);
        ck_assert (tree == NULL);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  Good trees, read back

//  The child of sup named name, checked for its kind.
static const tr_child_spec_t *
s_child (const tr_sup_spec_t *sup, size_t index, const char *name, int kind)
{
    ck_assert_uint_gt (sup->count, index);
    const tr_child_spec_t *child = &sup->children [index];
    ck_assert_str_eq (child->name, name);
    ck_assert_int_eq (child->kind, kind);
    return child;
}

static void
s_check_backoff (const tr_backoff_t *b, int64_t min, int64_t max,
                 double jitter, int64_t reset_after)
{
    ck_assert_int_eq (b->min_ms, min);
    ck_assert_int_eq (b->max_ms, max);
    ck_assert (b->jitter == jitter);
    ck_assert_int_eq (b->reset_after_ms, reset_after);
}

static void
s_check_breaker (const tr_breaker_spec_t *b, bool enabled, int failures,
                 int64_t reset, int trials, double factor, int64_t max_reset,
                 const char *fallback)
{
    ck_assert (b->enabled == enabled);
    ck_assert_int_eq (b->failures, failures);
    ck_assert_int_eq (b->reset_timeout_ms, reset);
    ck_assert_int_eq (b->half_open_trials, trials);
    ck_assert (b->factor == factor);
    ck_assert_int_eq (b->max_reset_timeout_ms, max_reset);
    if (fallback)
        ck_assert_str_eq (b->fallback, fallback);
    else
        ck_assert_ptr_null (b->fallback);
}

//  The settings every child of good-full.yaml's root gets from its
//  defaults, unless it says otherwise.
static void
s_check_root_defaults (const tr_child_spec_t *c)
{
    ck_assert_int_eq (c->restart, TR_RESTART_TRANSIENT);
    ck_assert_int_eq (c->shutdown_ms, 2000);
    ck_assert_int_eq (c->handle_timeout_ms, 100);
    ck_assert_uint_eq (c->capacity, 64);
    ck_assert_int_eq (c->on_full, TR_FULL_FAIL);
    s_check_backoff (&c->backoff, 20, 2000, 0.5, 60000);
    s_check_breaker (&c->breaker, true, 3, 500, 2, 1.5, 10000, NULL);
}

START_TEST (test_full_tree)
{
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    char buf [600];
    int rc = tr_tree_load (S_TREES "/good-full.yaml", &tree, &err);
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, buf, sizeof buf));
    ck_assert_str_eq (tree->path, S_TREES "/good-full.yaml");
    ck_assert_str_eq (tree->name, "shop");

    //  The root: a supervisor child with the built-in settings.
    const tr_child_spec_t *root = &tree->root;
    ck_assert_str_eq (root->name, "shop");
    ck_assert_int_eq (root->kind, TR_CHILD_SUPERVISOR);
    ck_assert_int_eq (root->pos.line, 4);
    ck_assert_int_eq (root->pos.column, 1);
    ck_assert_int_eq (root->restart, TR_RESTART_PERMANENT);
    ck_assert_int_eq (root->shutdown_ms, 5000);
    const tr_sup_spec_t *sup = root->sup;
    ck_assert_int_eq (sup->strategy, TR_ONE_FOR_ALL);
    ck_assert_int_eq (sup->max_restarts, 7);
    ck_assert_int_eq (sup->period_ms, 30000);
    ck_assert_uint_eq (sup->count, 6);
    ck_assert_ptr_null (sup->template_);

    //  orders: an actor with all the defaults, and its params.
    const tr_child_spec_t *c = s_child (sup, 0, "orders", TR_CHILD_ACTOR);
    ck_assert_int_eq (c->pos.line, 15);
    ck_assert_int_eq (c->pos.column, 5);
    s_check_root_defaults (c);
    ck_assert (c->type == tr_actor_type_find ("counter"));
    int64_t start = 0;
    ck_assert_int_eq (tr_params_int (&c->params, "start", &start), TR_OK);
    ck_assert_int_eq (start, 10);
    ck_assert_ptr_null (c->library);
    ck_assert_ptr_null (c->argv);
    ck_assert_ptr_null (c->sup);

    //  payments: overrides every default, some keys of backoff and
    //  breaker only.
    c = s_child (sup, 1, "payments", TR_CHILD_ACTOR);
    ck_assert (c->type == tr_actor_type_find ("flaky"));
    ck_assert_int_eq (c->restart, TR_RESTART_PERMANENT);
    ck_assert_int_eq (c->shutdown_ms, 0);
    ck_assert_int_eq (c->handle_timeout_ms, 1500);
    ck_assert_uint_eq (c->capacity, 1);
    ck_assert_int_eq (c->on_full, TR_FULL_FAIL);
    s_check_backoff (&c->backoff, 20, 5000, 0.5, 60000);
    s_check_breaker (&c->breaker, true, 1, 500, 2, 1.5, 10000, "orders");
    int64_t every = 0;
    bool fail_init = true;
    ck_assert_int_eq (tr_params_int (&c->params, "fail_every", &every), TR_OK);
    ck_assert_int_eq (every, 3);
    ck_assert_int_eq (tr_params_bool (&c->params, "fail_init", &fail_init), TR_OK);
    ck_assert (!fail_init);

    //  quiet: no params, no breaker.
    c = s_child (sup, 2, "quiet", TR_CHILD_ACTOR);
    ck_assert_int_eq (c->restart, TR_RESTART_TEMPORARY);
    ck_assert (!c->breaker.enabled);
    ck_assert_ptr_null (c->params.data);
    ck_assert_uint_eq (c->params.size, 0);
    ck_assert_int_eq (tr_params_int (&c->params, "start", &start), TR_ENOTFOUND);

    //  indexer: a process.
    c = s_child (sup, 3, "indexer", TR_CHILD_PROCESS);
    ck_assert_ptr_null (c->type);
    ck_assert_int_eq (c->shutdown_ms, 3600000);
    ck_assert_int_eq (c->handle_timeout_ms, 100);
    const char *argv [] = { "python3", "indexer.py", "--fast", "", NULL };
    for (size_t i = 0; argv [i]; i++)
        ck_assert_str_eq (c->argv [i], argv [i]);
    ck_assert_ptr_null (c->argv [4]);
    ck_assert_str_eq (c->env [0], "INDEX_DIR=/tmp/index");
    ck_assert_str_eq (c->env [1], "EMPTY=");
    ck_assert_ptr_null (c->env [2]);
    ck_assert_str_eq (c->cwd, "/srv/indexer");

    //  team: a nested supervisor that starts from its parent's defaults.
    c = s_child (sup, 4, "team", TR_CHILD_SUPERVISOR);
    ck_assert_int_eq (c->restart, TR_RESTART_PERMANENT);
    ck_assert_int_eq (c->shutdown_ms, 2000);
    const tr_sup_spec_t *team = c->sup;
    ck_assert_int_eq (team->strategy, TR_REST_FOR_ONE);
    ck_assert_int_eq (team->max_restarts, 3);
    ck_assert_int_eq (team->period_ms, 5000);
    ck_assert_uint_eq (team->count, 3);
    c = s_child (team, 0, "lead", TR_CHILD_ACTOR);
    ck_assert_int_eq (c->restart, TR_RESTART_TRANSIENT);
    ck_assert_int_eq (c->shutdown_ms, 3000);
    ck_assert_uint_eq (c->capacity, 64);
    ck_assert_str_eq (c->breaker.fallback, "orders");
    ck_assert_int_eq (c->pos.line, 47);
    ck_assert_int_eq (c->pos.column, 11);
    c = s_child (team, 1, "helper", TR_CHILD_ACTOR);
    ck_assert (c->type == tr_actor_type_find ("driver"));
    ck_assert_str_eq (c->breaker.fallback, "lead");
    s_check_breaker (&c->breaker, true, 3, 500, 2, 1.5, 10000, "lead");
    const char *text;
    size_t len;
    ck_assert_int_eq (tr_params_str (&c->params, "target", &text, &len), TR_OK);
    ck_assert (len == 4 && memcmp (text, "lead", 4) == 0);
    tr_params_t script;
    ck_assert_int_eq (tr_params_get (&c->params, "script", &script), TR_OK);
    const uint8_t packed [] = { 0x92, 0xa1, 'a', 0xa1, 'b' };
    ck_assert_uint_eq (script.size, sizeof packed);
    ck_assert (memcmp (script.data, packed, sizeof packed) == 0);
    int64_t ms;
    ck_assert_int_eq (tr_params_duration (&c->params, "every", &ms), TR_OK);
    ck_assert_int_eq (ms, 250);
    ck_assert_int_eq (tr_params_duration (&c->params, "timeout", &ms), TR_OK);
    ck_assert_int_eq (ms, 2000);
    bool ask = false;
    ck_assert_int_eq (tr_params_bool (&c->params, "ask", &ask), TR_OK);
    ck_assert (ask);

    //  pool: simple_one_for_one with a template.
    c = s_child (team, 2, "pool", TR_CHILD_SUPERVISOR);
    const tr_sup_spec_t *pool = c->sup;
    ck_assert_int_eq (pool->strategy, TR_SIMPLE_ONE_FOR_ONE);
    ck_assert_int_eq (pool->max_restarts, 0);
    ck_assert_int_eq (pool->period_ms, 5000);
    ck_assert_uint_eq (pool->count, 0);
    ck_assert_ptr_null (pool->children);
    const tr_child_spec_t *t = pool->template_;
    ck_assert_ptr_nonnull (t);
    ck_assert_ptr_null (t->name);
    ck_assert_int_eq (t->kind, TR_CHILD_ACTOR);
    ck_assert (t->type == tr_actor_type_find ("counter"));
    ck_assert_int_eq (t->restart, TR_RESTART_TEMPORARY);
    ck_assert_int_eq (t->shutdown_ms, 3000);
    ck_assert_str_eq (t->breaker.fallback, "lead");
    ck_assert_int_eq (tr_params_int (&t->params, "start", &start), TR_OK);
    ck_assert_int_eq (start, 1);

    //  empty: a supervisor without children.
    c = s_child (sup, 5, "empty", TR_CHILD_SUPERVISOR);
    ck_assert_uint_eq (c->sup->count, 0);
    ck_assert_ptr_null (c->sup->template_);

    //  Every name is found, wherever it is; templates have none.
    const char *names [] = { "shop", "orders", "payments", "quiet", "indexer",
                             "team", "lead", "helper", "pool", "empty", NULL };
    for (size_t i = 0; names [i]; i++) {
        const tr_child_spec_t *found = tr_tree_find (tree, names [i]);
        ck_assert_msg (found != NULL, "%s not found", names [i]);
        ck_assert_str_eq (found->name, names [i]);
    }
    ck_assert (tr_tree_find (tree, "helper") == &team->children [1]);
    ck_assert_ptr_null (tr_tree_find (tree, "nobody"));
    ck_assert_ptr_null (tr_tree_find (tree, "lea"));
    ck_assert_ptr_null (tr_tree_find (tree, ""));
    ck_assert_ptr_null (tr_tree_find (tree, NULL));
    ck_assert_ptr_null (tr_tree_find (NULL, "shop"));
    tr_tree_destroy (&tree);
    ck_assert_ptr_null (tree);
    tr_tree_destroy (&tree);
    tr_tree_destroy (NULL);
}
END_TEST

//  What a child gets when nothing says otherwise (docs/tree-format.md).
START_TEST (test_builtin_defaults)
{
    tr_tree_t *tree = s_parse ("name: solo\nchildren: [{name: one, actor: echo}]\n", NULL);
    ck_assert_str_eq (tree->path, "<text>");
    const tr_sup_spec_t *sup = tree->root.sup;
    ck_assert_int_eq (sup->strategy, TR_ONE_FOR_ONE);
    ck_assert_int_eq (sup->max_restarts, 3);
    ck_assert_int_eq (sup->period_ms, 5000);
    const tr_child_spec_t *c = s_child (sup, 0, "one", TR_CHILD_ACTOR);
    ck_assert_int_eq (c->restart, TR_RESTART_PERMANENT);
    ck_assert_int_eq (c->shutdown_ms, 5000);
    ck_assert_int_eq (c->handle_timeout_ms, 0);
    ck_assert_uint_eq (c->capacity, 0);
    ck_assert_int_eq (c->on_full, TR_FULL_WAIT);
    s_check_backoff (&c->backoff, 10, 1000, 0.2, 10000);
    s_check_breaker (&c->breaker, true, 5, 1000, 1, 2.0, 30000, NULL);
    ck_assert_uint_eq (c->params.size, 0);
    ck_assert_int_eq (c->pos.line, 2);
    ck_assert_int_eq (c->pos.column, 12);
    tr_tree_destroy (&tree);
}
END_TEST

//  Defaults pass down the tree: a nested supervisor starts from its
//  parent's, its own `defaults` go over them, a child's keys over those;
//  a backoff or breaker mapping overrides only the keys it names, and a
//  breaker mapping turns an inherited `off` back on.
START_TEST (test_defaults_inherited)
{
    tr_tree_t *tree = s_parse (
        "name: root\n"
        "defaults:\n"
        "  shutdown: 1s\n"
        "  backoff: {min: 1ms}\n"
        "  breaker: off\n"
        "children:\n"
        "  - name: a\n"
        "    actor: echo\n"
        "  - name: mid\n"
        "    shutdown: 9s\n"
        "    supervisor:\n"
        "      defaults: {backoff: {jitter: 0}, restart: temporary}\n"
        "      children:\n"
        "        - {name: b, actor: echo}\n"
        "        - {name: c, actor: echo, breaker: {failures: 9}, backoff: {max: 1m}}\n",
        "inherit.yaml");
    const tr_sup_spec_t *sup = tree->root.sup;
    const tr_child_spec_t *a = s_child (sup, 0, "a", TR_CHILD_ACTOR);
    ck_assert_int_eq (a->shutdown_ms, 1000);
    s_check_backoff (&a->backoff, 1, 1000, 0.2, 10000);
    ck_assert (!a->breaker.enabled);
    const tr_child_spec_t *mid = s_child (sup, 1, "mid", TR_CHILD_SUPERVISOR);
    ck_assert_int_eq (mid->shutdown_ms, 9000);
    const tr_child_spec_t *b = s_child (mid->sup, 0, "b", TR_CHILD_ACTOR);
    ck_assert_int_eq (b->shutdown_ms, 1000);        //  the root's, not mid's own
    ck_assert_int_eq (b->restart, TR_RESTART_TEMPORARY);
    s_check_backoff (&b->backoff, 1, 1000, 0, 10000);
    ck_assert (!b->breaker.enabled);
    const tr_child_spec_t *c = s_child (mid->sup, 1, "c", TR_CHILD_ACTOR);
    s_check_backoff (&c->backoff, 1, 60000, 0, 10000);
    s_check_breaker (&c->breaker, true, 9, 1000, 1, 2.0, 30000, NULL);
    tr_tree_destroy (&tree);
}
END_TEST

//  Defaults are checked as they are read, and the combined result too.
START_TEST (test_defaults_checked)
{
    //  Defaults whose min is above the built-in max.
    s_parse_fails ("name: r\n"
                   "defaults: {backoff: {min: 2s}}\n"
                   "children: []\n",
                   "d.yaml", 2, 27,
                   "backoff 'min' (2000 ms) must not be above 'max' (1000 ms)");
    //  A child's max below the inherited min.
    s_parse_fails ("name: r\n"
                   "defaults: {backoff: {min: 2s, max: 5s}}\n"
                   "children:\n"
                   "  - {name: a, actor: echo, backoff: {max: 1s}}\n",
                   "d.yaml", 4, 43,
                   "backoff 'min' (2000 ms) must not be above 'max' (1000 ms)");
    //  A reset_timeout above the inherited max_reset_timeout.
    s_parse_fails ("name: r\n"
                   "children:\n"
                   "  - {name: a, actor: echo, breaker: {reset_timeout: 1m}}\n",
                   "d.yaml", 3, 53,
                   "breaker 'max_reset_timeout' (30000 ms) must not be below "
                   "'reset_timeout' (60000 ms)");
    //  A fallback given in defaults names every child, so the child it
    //  names would fall back on itself.
    s_parse_fails ("name: r\n"
                   "defaults: {breaker: {fallback: a}}\n"
                   "children:\n"
                   "  - {name: a, actor: echo}\n",
                   "d.yaml", 2, 32, "the child 'a' cannot be its own fallback");
}
END_TEST

//  The first problem in file order is the one reported.
START_TEST (test_first_error_wins)
{
    s_parse_fails ("name: r\n"
                   "children:\n"
                   "  - {name: a, actor: nope}\n"
                   "  - {name: b, actor: echo, restart: never}\n"
                   "  - {name: a, actor: echo}\n",
                   "first.yaml", 3, 22,
                   "unknown actor type 'nope' ('troupe types' lists the registered types)");
    //  But a YAML error anywhere comes before any meaning is checked.
    s_parse_fails ("name: r\n"
                   "children:\n"
                   "  - {name: a, actor: nope}\n"
                   "  - {name: b\n",
                   "first.yaml", 5, 1,
                   "invalid YAML: did not find expected ',' or '}' "
                   "(while parsing a flow mapping at line 4)");
}
END_TEST

//  --------------------------------------------------------------------------
//  Parameters: YAML values into msgpack, checked against the type

START_TEST (test_params_converted)
{
    s_register_typed ();
    tr_tree_t *tree = s_parse (
        "name: r\n"
        "children:\n"
        "  - name: t\n"
        "    actor: typed\n"
        "    params:\n"
        "      count: -7\n"
        "      ratio: 2.5e-1\n"
        "      loud: True\n"
        "      title: \"1234\"\n"
        "      every: 90s\n"
        "      items: [1, 0x10, 0o17, +3, 1.5, .5, 1e3, yes, \"no\", true, FALSE, null, ~]\n"
        "      options: {nested: {deep: [x]}, 1: one, true: t, ~: nil}\n"
        "      extra: 18446744073709551615\n",
        "params.yaml");
    const tr_child_spec_t *c = tr_tree_find (tree, "t");
    ck_assert (c->type == &s_typed);
    const tr_params_t *p = &c->params;
    int64_t i;
    double d;
    bool b;
    const char *text;
    size_t len;
    ck_assert_int_eq (tr_params_int (p, "count", &i), TR_OK);
    ck_assert_int_eq (i, -7);
    ck_assert_int_eq (tr_params_double (p, "ratio", &d), TR_OK);
    ck_assert (d == 0.25);
    ck_assert_int_eq (tr_params_bool (p, "loud", &b), TR_OK);
    ck_assert (b);
    ck_assert_int_eq (tr_params_str (p, "title", &text, &len), TR_OK);
    ck_assert (len == 4 && memcmp (text, "1234", 4) == 0);
    ck_assert_int_eq (tr_params_int (p, "title", &i), TR_EMALFORMED);
    ck_assert_int_eq (tr_params_duration (p, "every", &i), TR_OK);
    ck_assert_int_eq (i, 90000);
    ck_assert_int_eq (tr_params_double (p, "extra", &d), TR_OK);
    ck_assert (d == (double) UINT64_MAX);
    ck_assert_int_eq (tr_params_int (p, "extra", &i), TR_EMALFORMED);

    //  The list, byte by byte: each YAML scalar as the spec says.
    tr_params_t items;
    ck_assert_int_eq (tr_params_get (p, "items", &items), TR_OK);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 13);
    msgpack_pack_int64 (&pk, 1);
    msgpack_pack_int64 (&pk, 16);
    msgpack_pack_int64 (&pk, 15);
    msgpack_pack_int64 (&pk, 3);
    msgpack_pack_double (&pk, 1.5);
    msgpack_pack_double (&pk, 0.5);
    msgpack_pack_double (&pk, 1000.0);
    msgpack_pack_str_with_body (&pk, "yes", 3);     //  YAML 1.2: a string
    msgpack_pack_str_with_body (&pk, "no", 2);
    msgpack_pack_true (&pk);
    msgpack_pack_false (&pk);
    msgpack_pack_nil (&pk);
    msgpack_pack_nil (&pk);
    ck_assert_uint_eq (items.size, sb.size);
    ck_assert (memcmp (items.data, sb.data, sb.size) == 0);
    msgpack_sbuffer_destroy (&sb);

    //  Keys stay strings, whatever they look like.
    tr_params_t options, nested, deep;
    ck_assert_int_eq (tr_params_get (p, "options", &options), TR_OK);
    ck_assert_int_eq (tr_params_str (&options, "1", &text, &len), TR_OK);
    ck_assert (len == 3 && memcmp (text, "one", 3) == 0);
    ck_assert_int_eq (tr_params_str (&options, "true", &text, &len), TR_OK);
    ck_assert_int_eq (tr_params_str (&options, "~", &text, &len), TR_OK);
    ck_assert_int_eq (tr_params_get (&options, "nested", &nested), TR_OK);
    ck_assert_int_eq (tr_params_get (&nested, "deep", &deep), TR_OK);
    const uint8_t packed [] = { 0x91, 0xa1, 'x' };
    ck_assert_uint_eq (deep.size, sizeof packed);
    ck_assert (memcmp (deep.data, packed, sizeof packed) == 0);
    tr_tree_destroy (&tree);
}
END_TEST

//  Each parameter kind takes what it should and refuses the rest.
START_TEST (test_param_kinds)
{
    s_register_typed ();
    struct {
        const char *params;
        bool fits;
    } cases [] = {
        { "ratio: 1", true }, { "ratio: -1.5", true }, { "ratio: 1e400", false },
        { "ratio: 18446744073709551615", true }, { "ratio: one", false },
        { "ratio: \"1\"", false }, { "ratio: .inf", false },
        { "loud: false", true }, { "loud: no", false }, { "loud: 1", false },
        { "title: word", true }, { "title: ''", true }, { "title: 1", false },
        { "title: 1.5", false }, { "title: true", false }, { "title: null", false },
        { "title: [a]", false }, { "title: {a: b}", false },
        { "every: 0", true }, { "every: 1500", true }, { "every: 1.5s", true },
        { "every: \"2m\"", true }, { "every: -1", false }, { "every: 1.5", false },
        { "every: 2 m", false }, { "every: 18446744073709551615", false },
        { "items: []", true }, { "items: {}", false }, { "items: a", false },
        { "options: {}", true }, { "options: []", false }, { "options: ''", false },
        { "extra: [1, {a: b}]", true }, { "extra: ~", true }, { "extra: ''", true },
        { "count: 9223372036854775807", true }, { "count: -9223372036854775808", true },
        { "count: 9223372036854775808", false }, { "count: 1.0", false },
        { "count: 0x7fffffffffffffff", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char text [300];
        snprintf (text, sizeof text, "name: r\nchildren:\n  - name: t\n"
                  "    actor: typed\n    params:\n      count: 1\n      %s\n",
                  strncmp (cases [i].params, "count:", 6) == 0?
                  "ratio: 0": cases [i].params);
        if (strncmp (cases [i].params, "count:", 6) == 0)
            snprintf (text, sizeof text, "name: r\nchildren:\n  - name: t\n"
                      "    actor: typed\n    params:\n      %s\n", cases [i].params);
        tr_tree_t *tree = NULL;
        tr_tree_error_t err;
        int rc = tr_tree_parse (text, strlen (text), "kinds.yaml", &tree, &err);
        ck_assert_msg ((rc == TR_OK) == cases [i].fits, "'%s': %s (%s)",
                       cases [i].params, tr_errname (rc), err.message);
        tr_tree_destroy (&tree);
    }
}
END_TEST

//  The messages of parameter errors: where, what was expected.
START_TEST (test_param_errors)
{
    s_register_typed ();
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: typed\n"
                   "    params: {count: 1, every: 1.5}\n",
                   "p.yaml", 5, 31, "parameter 'every' of actor type 'typed' must be "
                   "a duration such as 250ms or 2s, or an integer of milliseconds, "
                   "not '1.5'");
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: typed\n"
                   "    params: {count: 1, options: [a]}\n",
                   "p.yaml", 5, 33, "parameter 'options' of actor type 'typed' "
                   "must be a mapping, not a sequence");
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: typed\n"
                   "    params: {ratio: 1}\n",
                   "p.yaml", 5, 13, "missing parameter 'count' of actor type "
                   "'typed' (an integer: how many)");
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: typed\n"
                   "    params: {count: 1, extra: [1, [2, 99999999999999999999]]}\n",
                   "p.yaml", 5, 39, "the number '99999999999999999999' is out of range "
                   "(an integer must fit in 64 bits, a float in a double)");
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: typed\n"
                   "    params: {count: 1, Count: 2}\n",
                   "p.yaml", 5, 24, "unknown parameter 'Count' of actor type 'typed'; "
                   "expected one of: count, ratio, loud, title, every, items, "
                   "options, extra");
    //  A template's parameters are checked as any child's.
    s_parse_fails ("name: r\nstrategy: simple_one_for_one\n"
                   "template: {actor: typed}\n",
                   "p.yaml", 3, 19, "missing parameter 'count' of actor type "
                   "'typed' (an integer: how many)");
    //  `params:` with nothing after it is not a mapping.
    s_parse_fails ("name: r\nchildren:\n  - name: t\n    actor: counter\n"
                   "    params:\n    restart: temporary\n",
                   "p.yaml", 5, 12, "'params' must be a mapping, not ''");
}
END_TEST

//  An empty params mapping is no parameters, and still packed.
START_TEST (test_params_empty)
{
    tr_tree_t *tree = s_parse ("name: r\nchildren: [{name: c, actor: counter, "
                               "params: {}}]\n", NULL);
    const tr_child_spec_t *c = tr_tree_find (tree, "c");
    ck_assert_uint_eq (c->params.size, 1);
    ck_assert_int_eq (c->params.data [0], 0x80);
    int64_t start = 5;
    ck_assert_int_eq (tr_params_int (&c->params, "start", &start), TR_ENOTFOUND);
    ck_assert_int_eq (start, 5);
    tr_tree_destroy (&tree);
}
END_TEST

//  --------------------------------------------------------------------------
//  Plugins

//  A tree with one plugin child, with the given library and symbol.
static void
s_plugin_tree (char *text, size_t size, const char *library, const char *symbol,
               const char *params)
{
    snprintf (text, size,
              "name: r\n"
              "children:\n"
              "  - name: reports\n"
              "    plugin: {library: %s, symbol: %s}\n"
              "    params: %s\n", library, symbol, params);
}

START_TEST (test_plugin_relative)
{
    //  Parsed from memory: the path is only used for its folder.
    char text [600];
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type",
                   "{title: daily, interval: 2s}");
    tr_tree_t *tree = s_parse (text, TROUPE_PLUGIN_DIR "/not-a-file.yaml");
    const tr_child_spec_t *c = tr_tree_find (tree, "reports");
    ck_assert_int_eq (c->kind, TR_CHILD_PLUGIN);
    ck_assert_str_eq (c->library, "libreports.so");
    ck_assert_str_eq (c->symbol, "reports_type");
    ck_assert_ptr_nonnull (c->type);
    ck_assert_str_eq (c->type->name, "reports");
    ck_assert_int_eq (c->type->abi, TR_ACTOR_TYPE_ABI);
    ck_assert_ptr_nonnull (c->type->behaviour.handle);
    //  A plugin type is not registered by loading it.
    ck_assert_ptr_null (tr_actor_type_find ("reports"));
    int64_t ms;
    ck_assert_int_eq (tr_params_duration (&c->params, "interval", &ms), TR_OK);
    ck_assert_int_eq (ms, 2000);
    //  The library stays open while the tree lives: the type is readable.
    tr_tree_t *again = s_parse (text, TROUPE_PLUGIN_DIR "/x.yaml");
    ck_assert (tr_tree_find (again, "reports")->type == c->type);
    tr_tree_destroy (&again);
    ck_assert_str_eq (c->type->name, "reports");
    tr_tree_destroy (&tree);

    //  From a file: against the file's folder, not the working one.
    char path [600];
    snprintf (path, sizeof path, "%s/plugin-tree-%d.yaml", TROUPE_PLUGIN_DIR, (int) getpid ());
    s_plugin_tree (text, sizeof text, "./libreports.so", "reports_type", "{title: t}");
    s_spit (path, text);
    ck_assert_int_eq (chdir ("/"), 0);
    tr_tree_error_t err;
    char buf [600];
    int rc = tr_tree_load (path, &tree, &err);
    ck_assert_msg (rc == TR_OK, "%s", tr_tree_error_format (&err, buf, sizeof buf));
    ck_assert_str_eq (tr_tree_find (tree, "reports")->type->name, "reports");
    tr_tree_destroy (&tree);
    unlink (path);

    //  A folder below the tree's.
    s_plugin_tree (text, sizeof text, "plugin/libreports.so", "reports_type", "{title: t}");
    tree = s_parse (text, TROUPE_PLUGIN_DIR "/../tree.yaml");
    tr_tree_destroy (&tree);
}
END_TEST

START_TEST (test_plugin_absolute)
{
    char text [600];
    s_plugin_tree (text, sizeof text, S_PLUGIN, "reports_type", "{title: daily}");
    tr_tree_t *tree = s_parse (text, "/nowhere/tree.yaml");
    ck_assert_str_eq (tr_tree_find (tree, "reports")->library, S_PLUGIN);
    tr_tree_destroy (&tree);
    //  Without a path, a relative library is taken from the working
    //  folder.
    ck_assert_int_eq (chdir (TROUPE_PLUGIN_DIR), 0);
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type", "{title: daily}");
    tree = s_parse (text, NULL);
    tr_tree_destroy (&tree);
    tree = s_parse (text, "tree.yaml");
    tr_tree_destroy (&tree);
}
END_TEST

//  Each way a plugin can be wrong, with the position of what is wrong.
START_TEST (test_plugin_errors)
{
    const char *path = TROUPE_PLUGIN_DIR "/tree.yaml";
    char text [600], message [400];
    s_plugin_tree (text, sizeof text, "libmissing.so", "reports_type", "{}");
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (text, strlen (text), path, &tree, &err), TR_EMALFORMED);
    ck_assert_int_eq (err.line, 4);
    ck_assert_int_eq (err.column, 23);
    ck_assert_msg (strncmp (err.message, "cannot load plugin library 'libmissing.so': ",
                            44) == 0, "%s", err.message);
    ck_assert_msg (strstr (err.message, TROUPE_PLUGIN_DIR "/libmissing.so"), "%s", err.message);

    //  A file that is not a shared library.
    s_plugin_tree (text, sizeof text, S_TREES "/good-minimal.yaml", "reports_type", "{}");
    ck_assert_int_eq (tr_tree_parse (text, strlen (text), path, &tree, &err), TR_EMALFORMED);
    ck_assert_int_eq (err.line, 4);
    ck_assert_int_eq (err.column, 23);
    ck_assert_msg (strstr (err.message, "cannot load plugin library"), "%s", err.message);

    s_plugin_tree (text, sizeof text, "libreports.so", "report_type", "{}");
    s_parse_fails (text, path, 4, 46,
                   "no symbol 'report_type' in plugin library 'libreports.so'");
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type_abi99", "{}");
    snprintf (message, sizeof message, "plugin type 'reports_type_abi99' was built "
              "for actor type ABI 99; this troupe takes ABI 1 or %d", TR_ACTOR_TYPE_ABI);
    s_parse_fails (text, path, 4, 46, message);
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type_no_handle", "{}");
    s_parse_fails (text, path, 4, 46, "plugin type 'reports_type_no_handle' has no "
                   "name or no handle function");
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type_odd_param", "{}");
    s_parse_fails (text, path, 4, 46, "plugin type 'reports_type_odd_param' declares "
                   "parameter 'odd' with an unknown type 42");
    //  Its parameters are checked as a registered type's.
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type", "{}");
    s_parse_fails (text, path, 5, 13, "missing parameter 'title' of actor type "
                   "'reports' (a string: the report's title)");
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type",
                   "{title: t, colour: red}");
    s_parse_fails (text, path, 5, 24, "unknown parameter 'colour' of actor type "
                   "'reports'; expected one of: interval, title");
    s_plugin_tree (text, sizeof text, "libreports.so", "reports_type",
                   "{title: t, interval: often}");
    s_parse_fails (text, path, 5, 34, "parameter 'interval' of actor type 'reports' "
                   "must be a duration such as 250ms or 2s, or an integer of "
                   "milliseconds, not 'often'");
    //  A missing title with no params at all: blamed on the plugin.
    s_parse_fails ("name: r\nchildren:\n  - name: reports\n"
                   "    plugin: {library: libreports.so, symbol: reports_type}\n",
                   path, 4, 13, "missing parameter 'title' of actor type "
                   "'reports' (a string: the report's title)");
    s_parse_fails ("name: r\nchildren:\n  - name: reports\n"
                   "    plugin: {symbol: reports_type}\n",
                   path, 4, 13, "'plugin' needs a 'library' (the path of a "
                   "shared library)");
    s_parse_fails ("name: r\nchildren:\n  - name: reports\n"
                   "    plugin: {library: '', symbol: x}\n",
                   path, 4, 23, "'library' must not be empty");
    s_parse_fails ("name: r\nchildren:\n  - name: reports\n"
                   "    plugin: libreports.so\n",
                   path, 4, 13, "'plugin' must be a mapping, not 'libreports.so'");
}
END_TEST

//  --------------------------------------------------------------------------
//  Files, arguments, formatting

START_TEST (test_file_errors)
{
    tr_tree_t *tree = (tr_tree_t *) &tree;
    tr_tree_error_t err;
    char buf [600];
    ck_assert_int_eq (tr_tree_load (S_TREES "/no-such-file.yaml", &tree, &err), TR_ENOTFOUND);
    ck_assert_ptr_null (tree);
    ck_assert_str_eq (err.file, S_TREES "/no-such-file.yaml");
    ck_assert_int_eq (err.line, 0);
    ck_assert_int_eq (err.column, 0);
    ck_assert_str_eq (tr_tree_error_format (&err, buf, sizeof buf),
                      S_TREES "/no-such-file.yaml: no such file");
    //  A folder on the way that is a file.
    ck_assert_int_eq (tr_tree_load (S_TREES "/good-full.yaml/x.yaml", &tree, &err),
                      TR_ENOTFOUND);
    //  A folder where the file should be.
    ck_assert_int_eq (tr_tree_load (S_TREES, &tree, &err), TR_ESYS);
    ck_assert_ptr_null (tree);
    ck_assert_str_eq (err.file, S_TREES);
    ck_assert_int_eq (err.line, 0);
    ck_assert_msg (strncmp (err.message, "cannot read the file: ", 22) == 0, "%s", err.message);
    //  err may be NULL.
    ck_assert_int_eq (tr_tree_load (S_TREES "/no-such-file.yaml", &tree, NULL), TR_ENOTFOUND);
    ck_assert_int_eq (tr_tree_load (S_TREES "/bad-empty.yaml", &tree, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr_tree_load (S_TREES "/good-minimal.yaml", &tree, NULL), TR_OK);
    tr_tree_destroy (&tree);
}
END_TEST

//  A file over 16 MiB is refused before it is parsed.
START_TEST (test_file_too_big)
{
    char path [600];
    snprintf (path, sizeof path, "%s/big-%d.yaml", TROUPE_PLUGIN_DIR, (int) getpid ());
    FILE *file = fopen (path, "wb");
    ck_assert_ptr_nonnull (file);
    fputs ("name: big\nchildren: []\n", file);
    static char comment [1 << 16];
    memset (comment, '#', sizeof comment - 1);
    comment [sizeof comment - 2] = '\n';
    for (int i = 0; i < 257; i++)
        fputs (comment, file);
    fclose (file);
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_load (path, &tree, &err), TR_EMALFORMED);
    ck_assert_ptr_null (tree);
    ck_assert_int_eq (err.line, 0);
    ck_assert_str_eq (err.message, "the file is larger than 16 MiB");
    //  One of exactly 16 MiB loads.
    ck_assert_int_eq (truncate (path, 16 << 20), 0);
    int rc = tr_tree_load (path, &tree, &err);
    ck_assert_msg (rc == TR_OK, "%s", err.message);
    tr_tree_destroy (&tree);
    unlink (path);
}
END_TEST

START_TEST (test_invalid_arguments)
{
    tr_tree_t *tree = NULL;
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_load (NULL, &tree, &err), TR_EINVAL);
    ck_assert_int_eq (tr_tree_load (S_TREES "/good-minimal.yaml", NULL, &err), TR_EINVAL);
    ck_assert_int_eq (tr_tree_parse ("x", 1, NULL, NULL, &err), TR_EINVAL);
    ck_assert_int_eq (tr_tree_parse (NULL, 3, NULL, &tree, &err), TR_EINVAL);
    //  No text at all is an empty file.
    ck_assert_int_eq (tr_tree_parse (NULL, 0, NULL, &tree, &err), TR_EMALFORMED);
    ck_assert_str_eq (err.file, "<text>");
    ck_assert_str_eq (err.message, "the file is empty; expected a supervisor "
                      "(a mapping with name, strategy, children)");
    char buf [8] = "x";
    ck_assert_ptr_eq (tr_tree_error_format (NULL, buf, sizeof buf), buf);
    ck_assert_str_eq (buf, "");
    ck_assert_ptr_null (tr_tree_error_format (&err, NULL, 10));
    tr_tree_destroy (NULL);
}
END_TEST

START_TEST (test_error_format)
{
    tr_tree_error_t err = { .line = 12, .column = 3 };
    snprintf (err.file, sizeof err.file, "shop.yaml");
    snprintf (err.message, sizeof err.message, "something is wrong");
    char buf [100];
    ck_assert_str_eq (tr_tree_error_format (&err, buf, sizeof buf),
                      "shop.yaml:12:3: something is wrong");
    //  Cut to the buffer, NUL-terminated.
    char small [12];
    memset (small, 'x', sizeof small);
    ck_assert_str_eq (tr_tree_error_format (&err, small, sizeof small), "shop.yaml:1");
    err.line = err.column = 0;
    ck_assert_str_eq (tr_tree_error_format (&err, buf, sizeof buf),
                      "shop.yaml: something is wrong");
    //  A long path is cut in err.file, not overflowed.
    char path [400];
    memset (path, 'p', sizeof path - 1);
    path [sizeof path - 1] = 0;
    tr_tree_t *tree = NULL;
    ck_assert_int_eq (tr_tree_parse ("[", 1, path, &tree, &err), TR_EMALFORMED);
    ck_assert_uint_eq (strlen (err.file), sizeof err.file - 1);
    ck_assert_int_eq (err.line, 2);
}
END_TEST

//  What YAML offers beyond the format's needs, and text oddities.
START_TEST (test_yaml_corners)
{
    //  A byte-order mark and CRLF line ends are fine.
    tr_tree_t *tree = s_parse ("\xef\xbb\xbfname: bom\r\nchildren:\r\n"
                               "  - {name: a, actor: echo}\r\n", NULL);
    ck_assert_int_eq (tr_tree_find (tree, "a")->pos.line, 3);
    tr_tree_destroy (&tree);
    //  Columns count characters, not bytes.
    s_parse_fails ("name: магазин\nchildren:\n  - {name: 注文, actor: nope}\n", NULL,
                   3, 23, "unknown actor type 'nope' ('troupe types' lists the "
                   "registered types)");
    //  UTF-16 is not UTF-8.
    s_parse_fails ("\xff\xfen\0a\0", NULL, 1, 1, "invalid YAML: invalid leading UTF-8 octet");
    //  A NUL byte inside the text is a YAML error at its position.
    const char with_nul [] = "name: r\nchildren: []\n# \0\n";
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (with_nul, sizeof with_nul - 1, NULL, &tree, &err),
                      TR_EMALFORMED);
    ck_assert_int_eq (err.line, 3);
    ck_assert_int_eq (err.column, 3);
    ck_assert_msg (strncmp (err.message, "invalid YAML: ", 14) == 0, "%s", err.message);
    //  A quoted NUL is a YAML escape, but no name or string may hold one.
    s_parse_fails ("name: r\nchildren:\n  - {name: a, actor: \"echo\\0\"}\n",
                   NULL, 3, 22, "'actor' must not contain a NUL character");
    s_parse_fails ("name: \"r\\0\"\nchildren: []\n", NULL, 1, 7,
                   "a name must be 1 to 255 bytes of UTF-8 without spaces or "
                   "control characters, not 'r?'");
    //  An alias is refused wherever it is, a merge key is an unknown key.
    s_parse_fails ("name: r\nchildren: [{name: a, actor: echo, params: *x}]\n",
                   NULL, 2, 43, "aliases (*x) are not allowed in a tree file");
    //  The text as given: a length shorter than the string.
    const char *text = "name: r\nchildren: []\nstrategy: bad";
    ck_assert_int_eq (tr_tree_parse (text, 21, NULL, &tree, &err), TR_OK);
    tr_tree_destroy (&tree);
    //  A document end marker followed by a comment is still one document.
    tree = s_parse ("name: r\nchildren: []\n...\n# the end\n", NULL);
    tr_tree_destroy (&tree);
    //  A name exactly 255 bytes long is fine.
    char text2 [400], name [256];
    memset (name, 'n', 255);
    name [255] = 0;
    snprintf (text2, sizeof text2, "name: %s\nchildren: []\n", name);
    tree = s_parse (text2, NULL);
    ck_assert_uint_eq (strlen (tree->name), 255);
    tr_tree_destroy (&tree);
    //  64 levels of nesting are fine, 65 are not.
    char deep [400];
    snprintf (deep, sizeof deep, "name: r\nchildren:\n  - name: t\n    actor: driver\n"
              "    params:\n      target: x\n      script: ");
    size_t at = strlen (deep);
    for (int i = 0; i < 60; i++)
        deep [at++] = '[';
    for (int i = 0; i < 60; i++)
        deep [at++] = ']';
    deep [at++] = '\n';
    deep [at] = 0;
    tree = s_parse (deep, NULL);
    tr_tree_destroy (&tree);
}
END_TEST

//  A process child's settings, and its mistakes that the files do not
//  show.
START_TEST (test_process)
{
    tr_tree_t *tree = s_parse ("name: r\nchildren:\n  - name: p\n    process:\n"
                               "      command: [/bin/true]\n", NULL);
    const tr_child_spec_t *c = tr_tree_find (tree, "p");
    ck_assert_str_eq (c->argv [0], "/bin/true");
    ck_assert_ptr_null (c->argv [1]);
    ck_assert_ptr_null (c->env);
    ck_assert_ptr_null (c->cwd);
    ck_assert_uint_eq (c->params.size, 0);
    tr_tree_destroy (&tree);
    s_parse_fails ("name: r\nchildren:\n  - name: p\n    process:\n"
                   "      command: [a, [b]]\n", NULL, 5, 20,
                   "an argument must be a string, not a sequence");
    s_parse_fails ("name: r\nchildren:\n  - name: p\n    process:\n"
                   "      command: [a]\n      cwd: ''\n", NULL, 6, 12,
                   "'cwd' must not be empty");
    s_parse_fails ("name: r\nchildren:\n  - name: p\n    process:\n"
                   "      command: [a]\n      env: [A=1]\n", NULL, 6, 12,
                   "'env' must be a mapping, not a sequence");
    s_parse_fails ("name: r\nchildren:\n  - name: p\n    process:\n"
                   "      command: [a]\n      env: {'': x}\n", NULL, 6, 13,
                   "a variable's name must not be empty");
    s_parse_fails ("name: r\nchildren:\n  - name: p\n    process: [a]\n", NULL, 4, 14,
                   "'process' must be a mapping, not a sequence");
}
END_TEST

//  Supervisor shapes the files do not show.
START_TEST (test_supervisor_shapes)
{
    s_parse_fails ("name: r\nchildren:\n  - name: s\n    supervisor: [a]\n", NULL, 4, 17,
                   "'supervisor' must be a mapping, not a sequence");
    s_parse_fails ("name: r\nchildren:\n  - name: s\n    supervisor: {}\n", NULL, 4, 17,
                   "a supervisor needs 'children' (a sequence of children; it may "
                   "be empty)");
    s_parse_fails ("name: r\nstrategy: simple_one_for_one\ntemplate: {name: x, actor: echo}\n",
                   NULL, 3, 12, "a template has no 'name': each child started "
                   "from it is named then");
    s_parse_fails ("name: r\nstrategy: simple_one_for_one\ntemplate: {restart: temporary}\n",
                   NULL, 3, 11, "a child needs exactly one of actor, plugin, "
                   "process, supervisor");
    s_parse_fails ("name: r\ndefaults: off\nchildren: []\n", NULL, 2, 11,
                   "'defaults' must be a mapping, not 'off'");
    s_parse_fails ("name: r\nchildren: []\nintensity: {period: 1x}\n", NULL, 3, 21,
                   "'period' must be a duration such as 250ms, 1.5s, 2m or 1h, not '1x'");
    //  A template may itself be a supervisor; its children's names count.
    tr_tree_t *tree = s_parse ("name: r\nstrategy: simple_one_for_one\n"
                               "template:\n  supervisor:\n    children:\n"
                               "      - {name: inner, actor: echo}\n", NULL);
    const tr_child_spec_t *t = tree->root.sup->template_;
    ck_assert_int_eq (t->kind, TR_CHILD_SUPERVISOR);
    ck_assert (tr_tree_find (tree, "inner") == &t->sup->children [0]);
    tr_tree_destroy (&tree);
    //  A fallback may name a child in another supervisor, written later.
    tree = s_parse ("name: r\nchildren:\n"
                    "  - {name: a, actor: echo, breaker: {fallback: z}}\n"
                    "  - name: s\n    supervisor:\n      children: [{name: z, actor: echo}]\n",
                    NULL);
    ck_assert_str_eq (tr_tree_find (tree, "a")->breaker.fallback, "z");
    tr_tree_destroy (&tree);
}
END_TEST

//  --------------------------------------------------------------------------
//  docs/tree-format.md and the loader agree

//  The first ```yaml block of the page, malloc'd.
static char *
s_doc_example (void)
{
    char *doc = tr_test_read_file (S_DOC, NULL);
    char *start = strstr (doc, "```yaml\n");
    ck_assert_ptr_nonnull (start);
    start += strlen ("```yaml\n");
    char *end = strstr (start, "\n```");
    ck_assert_ptr_nonnull (end);
    end [1] = 0;
    char *example = strdup (start);
    free (doc);
    return example;
}

//  The example with its line `line` (1-based) replaced; malloc'd.
static char *
s_doc_edit (const char *example, int line, const char *with)
{
    char *text = (char *) malloc (strlen (example) + strlen (with) + 2);
    const char *at = example;
    for (int i = 1; i < line; i++) {
        at = strchr (at, '\n');
        ck_assert_ptr_nonnull (at);
        at++;
    }
    const char *after = strchr (at, '\n');
    ck_assert_ptr_nonnull (after);
    sprintf (text, "%.*s%s%s", (int) (at - example), example, with, after);
    return text;
}

START_TEST (test_doc_example)
{
    char *example = s_doc_example ();
    //  The plugin the example names is the test plugin.
    tr_tree_t *tree = s_parse (example, TROUPE_PLUGIN_DIR "/shop.yaml");
    ck_assert_str_eq (tree->name, "shop");
    const char *kinds [] = { "orders", "payments", "reports", "indexer", "team", "pool", NULL };
    for (size_t i = 0; kinds [i]; i++)
        ck_assert_msg (tr_tree_find (tree, kinds [i]), "%s", kinds [i]);
    ck_assert_int_eq (tr_tree_find (tree, "reports")->kind, TR_CHILD_PLUGIN);
    ck_assert_int_eq (tr_tree_find (tree, "indexer")->kind, TR_CHILD_PROCESS);
    ck_assert_int_eq (tr_tree_find (tree, "pool")->sup->strategy, TR_SIMPLE_ONE_FOR_ONE);
    tr_tree_destroy (&tree);
    free (example);
}
END_TEST

//  Each error the page shows comes from the change to the example it
//  says.
START_TEST (test_doc_errors)
{
    struct {
        int line;
        const char *with;
        const char *error;
    } cases [] = {
        { 18, "    restrat: transient",
          "shop.yaml:18:5: unknown key 'restrat' in a child; expected one of: name, "
          "actor, plugin, process, supervisor, params, restart, shutdown, "
          "handle_timeout, mailbox, backoff, breaker" },
        { 4, "strategy: one_for_none",
          "shop.yaml:4:11: 'strategy' must be one of one_for_one, one_for_all, "
          "rest_for_one, simple_one_for_one, not 'one_for_none'" },
        { 7, "  period: 10 s",
          "shop.yaml:7:11: 'period' must be a duration such as 250ms, 1.5s, 2m or 1h, "
          "not '10 s'" },
        { 16, "  - name: orders",
          "shop.yaml:16:11: the name 'orders' is already used at line 14" },
        { 15, "    actor: counterr",
          "shop.yaml:15:12: unknown actor type 'counterr'; did you mean 'counter'? "
          "('troupe types' lists the registered types)" },
        { 22, "    params: {fail_every: \"3\"}",
          "shop.yaml:22:26: parameter 'fail_every' of actor type 'flaky' must be an "
          "integer, not the string '3'" },
        { 24, "    plugin: {library: ./libreports.so, symbol: report_type}",
          "shop.yaml:24:48: no symbol 'report_type' in plugin library './libreports.so'" },
        { 37, "        - {name: helper}",
          "shop.yaml:37:11: a child needs exactly one of actor, plugin, process, supervisor" },
    };
    char *example = s_doc_example ();
    char *doc = tr_test_read_file (S_DOC, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char *text = s_doc_edit (example, cases [i].line, cases [i].with);
        tr_tree_t *tree = NULL;
        tr_tree_error_t err;
        ck_assert_int_eq (tr_tree_parse (text, strlen (text), TROUPE_PLUGIN_DIR "/shop.yaml",
                                         &tree, &err), TR_EMALFORMED);
        snprintf (err.file, sizeof err.file, "shop.yaml");
        char got [600];
        tr_tree_error_format (&err, got, sizeof got);
        ck_assert_str_eq (got, cases [i].error);
        //  The page shows it, whole, on a line of its own.
        char line [700];
        snprintf (line, sizeof line, "\n%s\n", cases [i].error);
        ck_assert_msg (strstr (doc, line), "docs/tree-format.md lacks: %s", cases [i].error);
        //  And says what to change.
        ck_assert_msg (strstr (doc, cases [i].with + strspn (cases [i].with, " -")),
                       "docs/tree-format.md lacks the change: %s", cases [i].with);
        free (text);
    }
    free (doc);
    free (example);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_tree");
    //  First the tests whose messages suggest a registered type, so that
    //  they see the built-in ones only even when Check does not fork.
    TCase *tc = tcase_create ("files");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_bad_files);
    tcase_add_test (tc, test_good_files);
    tcase_add_test (tc, test_doc_example);
    tcase_add_test (tc, test_doc_errors);
    tcase_add_test (tc, test_first_error_wins);
    suite_add_tcase (s, tc);
    tc = tcase_create ("trees");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_full_tree);
    tcase_add_test (tc, test_builtin_defaults);
    tcase_add_test (tc, test_defaults_inherited);
    tcase_add_test (tc, test_defaults_checked);
    tcase_add_test (tc, test_process);
    tcase_add_test (tc, test_supervisor_shapes);
    tcase_add_test (tc, test_yaml_corners);
    suite_add_tcase (s, tc);
    tc = tcase_create ("params");
    tcase_add_test (tc, test_params_converted);
    tcase_add_test (tc, test_param_kinds);
    tcase_add_test (tc, test_param_errors);
    tcase_add_test (tc, test_params_empty);
    suite_add_tcase (s, tc);
    tc = tcase_create ("plugins");
    tcase_add_test (tc, test_plugin_relative);
    tcase_add_test (tc, test_plugin_absolute);
    tcase_add_test (tc, test_plugin_errors);
    suite_add_tcase (s, tc);
    tc = tcase_create ("files and arguments");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_file_errors);
    tcase_add_test (tc, test_file_too_big);
    tcase_add_test (tc, test_invalid_arguments);
    tcase_add_test (tc, test_error_format);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
