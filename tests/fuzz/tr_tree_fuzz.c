/*  tr_tree_fuzz.c - libFuzzer target for the tree-file loader (tr_tree.h).

    Any input is parsed as a tree file. A failure must come alone (no
    tree), with a known code, a message and a position inside the input
    (or none, for the file as a whole). A tree that loads must keep the
    promises the loader makes: names well formed and unique (tr_tree_find
    finds each child as itself), ranges respected (backoff, breaker,
    intensity), every actor child typed with its required parameters
    present and its parameters one well-formed msgpack map that the
    tr_params accessors read without trouble, every process child with a
    program. Any broken promise aborts, so that libFuzzer keeps the input.

    Plugins: the fuzzer is built with dlopen and dlsym renamed to the
    functions below (tests/fuzz/CMakeLists.txt), so that a tree file can
    load no library but the test plugin (tests/plugin/reports.c, built
    next to the fuzzer), and no symbol of it but its types: an input
    must not make the fuzzer open /dev/stdin or read libc's code as an
    actor type.

    Build and run: tests/fuzz/run.sh SECONDS [BUILD_DIR]
*/

#include "troupe/tr_tree.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#undef dlopen
#undef dlsym
#include <dlfcn.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
void *
    tr_fuzz_dlopen (const char *path, int flags);
void *
    tr_fuzz_dlsym (void *handle, const char *symbol);

#define S_PATH      "fuzz/tree.yaml"
#define S_PLUGIN    "libreports.so"

//  Opens the test plugin for any path that ends with its name; refuses
//  every other path.
void *
tr_fuzz_dlopen (const char *path, int flags)
{
    size_t len = strlen (path), plugin_len = strlen (S_PLUGIN);
    if (len >= plugin_len && strcmp (path + len - plugin_len, S_PLUGIN) == 0)
        return dlopen (TR_FUZZ_PLUGIN, flags);
    return NULL;
}

//  Finds the plugin's types only (they all start with reports_type).
void *
tr_fuzz_dlsym (void *handle, const char *symbol)
{
    if (strncmp (symbol, "reports_type", 12) != 0)
        return NULL;
    return dlsym (handle, symbol);
}

static void
s_fail (const char *what, const char *name)
{
    fprintf (stderr, "tr_tree_fuzz: %s%s%s\n", what, name? ": ": "", name? name: "");
    abort ();
}

//  The lines in the input, as libyaml counts them (LF, CR, CRLF, and
//  NEL, LS and PS in UTF-8): the last line an error may name, give or
//  take one.
static int
s_lines (const uint8_t *data, size_t size)
{
    int lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data [i] == '\n'
              || (data [i] == '\r' && (i + 1 == size || data [i + 1] != '\n'))
              || (data [i] == 0xc2 && i + 1 < size && data [i + 1] == 0x85)
              || (data [i] == 0xe2 && i + 2 < size && data [i + 1] == 0x80
                  && (data [i + 2] == 0xa8 || data [i + 2] == 0xa9));
    return lines;
}

static void
s_check_error (const tr_tree_error_t *err, int rc, const uint8_t *data, size_t size)
{
    if (rc != TR_EMALFORMED && rc != TR_ENOMEM)
        s_fail ("an unexpected code", tr_errname (rc));
    if (strcmp (err->file, S_PATH) != 0)
        s_fail ("the error names another file", err->file);
    size_t len = strnlen (err->message, sizeof err->message);
    if (len == 0 || len == sizeof err->message)
        s_fail ("an empty or unterminated message", NULL);
    if (err->line < 0 || err->column < 0 || (err->line == 0) != (err->column == 0))
        s_fail ("a position out of range", err->message);
    if (err->line > s_lines (data, size) + 1)
        s_fail ("a line past the end of the input", err->message);
    char small [16];
    tr_tree_error_format (err, small, sizeof small);
    if (strlen (small) >= sizeof small)
        s_fail ("the formatted error overflows", NULL);
}

//  Reads every parameter the type declares, as its own kind and as the
//  others, and a nested value's keys too: none may fail but with the
//  codes the header lists.
static void
s_check_params (const tr_child_spec_t *child)
{
    const tr_params_t *params = &child->params;
    if (params->size && tr_msgpack_check (params->data, params->size, 64, NULL) != TR_OK)
        s_fail ("parameters that are not one msgpack value", child->name);
    if (params->size && (params->data [0] & 0xf0) != 0x80
    &&  params->data [0] != 0xde && params->data [0] != 0xdf)
        s_fail ("parameters that are not a map", child->name);
    const tr_param_spec_t *spec = child->type->params;
    for (size_t i = 0; spec && spec [i].key; i++) {
        int64_t i64;
        double d;
        bool b;
        const char *text;
        size_t len;
        tr_params_t value;
        int rc [6] = {
            tr_params_int (params, spec [i].key, &i64),
            tr_params_double (params, spec [i].key, &d),
            tr_params_bool (params, spec [i].key, &b),
            tr_params_str (params, spec [i].key, &text, &len),
            tr_params_duration (params, spec [i].key, &i64),
            tr_params_get (params, spec [i].key, &value)
        };
        for (int k = 0; k < 6; k++)
            if (rc [k] != TR_OK && rc [k] != TR_ENOTFOUND && rc [k] != TR_EMALFORMED)
                s_fail ("an accessor failed oddly", spec [i].key);
        if (spec [i].required && rc [5] != TR_OK)
            s_fail ("a required parameter is missing", spec [i].key);
        //  What the type declared is what the accessor of that kind reads.
        if (rc [5] == TR_OK
        && ((spec [i].type == TR_PARAM_INT && rc [0] != TR_OK)
        ||  (spec [i].type == TR_PARAM_NUMBER && rc [1] != TR_OK)
        ||  (spec [i].type == TR_PARAM_BOOL && rc [2] != TR_OK)
        ||  (spec [i].type == TR_PARAM_STRING && rc [3] != TR_OK)
        ||  (spec [i].type == TR_PARAM_DURATION && rc [4] != TR_OK)))
            s_fail ("a parameter of the wrong kind got through", spec [i].key);
        if (rc [5] == TR_OK && value.size
        &&  tr_params_int (&value, "x", &i64) == TR_EINVAL)
            s_fail ("a nested value is not readable", spec [i].key);
    }
}

static void
    s_check_sup (const tr_tree_t *tree, const tr_sup_spec_t *sup, int depth);

static void
s_check_child (const tr_tree_t *tree, const tr_child_spec_t *child, bool named,
               int depth)
{
    if (named && (!child->name || tr_name_check (child->name, strlen (child->name))
               || child->name [0] == '$'))
        s_fail ("a bad name", child->name);
    if (named && tr_tree_find (tree, child->name) != child)
        s_fail ("a name that does not find its child", child->name);
    if (!named && child->name)
        s_fail ("a template with a name", child->name);
    const tr_backoff_t *b = &child->backoff;
    if (b->min_ms < 0 || b->min_ms > b->max_ms || !(b->jitter >= 0 && b->jitter <= 1)
    ||  b->reset_after_ms < 0)
        s_fail ("a backoff out of range", child->name);
    const tr_breaker_spec_t *k = &child->breaker;
    if (k->enabled && (k->failures < 1 || k->reset_timeout_ms < 1 || k->half_open_trials < 1
                   ||  !(k->factor >= 1) || k->max_reset_timeout_ms < k->reset_timeout_ms))
        s_fail ("a breaker out of range", child->name);
    if (k->fallback && (!tr_tree_find (tree, k->fallback)
                    ||  tr_tree_find (tree, k->fallback) == &tree->root))
        s_fail ("a fallback that names no child", k->fallback);
    if (child->shutdown_ms < 0 || child->handle_timeout_ms < 0
    ||  child->restart < TR_RESTART_PERMANENT || child->restart > TR_RESTART_TEMPORARY)
        s_fail ("child settings out of range", child->name);
    switch (child->kind) {
        case TR_CHILD_ACTOR:
        case TR_CHILD_PLUGIN:
            if (!child->type || !child->type->behaviour.handle)
                s_fail ("an actor without a type", child->name);
            s_check_params (child);
            break;
        case TR_CHILD_PROCESS:
            if (!child->argv || !child->argv [0] || !child->argv [0][0])
                s_fail ("a process without a program", child->name);
            for (size_t i = 0; child->env && child->env [i]; i++)
                if (!strchr (child->env [i], '='))
                    s_fail ("an environment string without '='", child->env [i]);
            if (child->params.size)
                s_fail ("a process with parameters", child->name);
            break;
        case TR_CHILD_SUPERVISOR:
            if (!child->sup)
                s_fail ("a supervisor child without a supervisor", child->name);
            s_check_sup (tree, child->sup, depth + 1);
            break;
        default:
            s_fail ("an unknown kind of child", child->name);
    }
}

static void
s_check_sup (const tr_tree_t *tree, const tr_sup_spec_t *sup, int depth)
{
    if (depth > 64)
        s_fail ("supervisors nested past the YAML limit", NULL);
    if (sup->max_restarts < 0 || sup->period_ms < 1)
        s_fail ("an intensity out of range", NULL);
    if ((sup->strategy == TR_SIMPLE_ONE_FOR_ONE) != (sup->template_ != NULL))
        s_fail ("a template where there should be none, or none where there should", NULL);
    if (sup->template_ && sup->count)
        s_fail ("a simple_one_for_one supervisor with children", NULL);
    for (size_t i = 0; i < sup->count; i++)
        s_check_child (tree, &sup->children [i], true, depth);
    if (sup->template_)
        s_check_child (tree, sup->template_, false, depth);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    tr_tree_t *tree = (tr_tree_t *) &tree;
    tr_tree_error_t err;
    int rc = tr_tree_parse ((const char *) data, size, S_PATH, &tree, &err);
    if (rc == TR_OK) {
        if (!tree || tree->root.kind != TR_CHILD_SUPERVISOR || !tree->name
        ||  tr_tree_find (tree, tree->name) != &tree->root
        ||  strcmp (tree->path, S_PATH) != 0)
            s_fail ("a tree without a proper root", NULL);
        s_check_sup (tree, tree->root.sup, 0);
        tr_tree_destroy (&tree);
        if (tree)
            s_fail ("destroy did not reset the pointer", NULL);
    }
    else {
        if (tree)
            s_fail ("a failed load left a tree", NULL);
        s_check_error (&err, rc, data, size);
    }
    //  The duration parser on its own, on the first bytes of the input.
    int64_t ms;
    if (tr_duration_parse ((const char *) data, size < 32? size: 32, &ms) == TR_OK && ms < 0)
        s_fail ("a negative duration", NULL);
    return 0;
}
