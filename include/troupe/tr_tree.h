/*  tr_tree.h - supervision trees described in YAML files.

    tr_tree_load reads a tree file (format: docs/tree-format.md) and
    checks all of it before anything starts: every key, type, name,
    duration, actor type, plugin, and each actor's parameters against the
    type's declared list. The first problem is returned as an error that
    names the file, line and column and says what was expected; nothing
    else is reported after it. The result is a plain description (the
    structs below), read by tr_sup_start (tr_sup.h) to build the tree.

    Ownership: the tree owns every string, array and parameter block in
    it, and the handles of plugin libraries it opened; tr_tree_destroy
    frees them and closes the libraries. Actors started from a tree point
    into it (names, parameters), so the tree must outlive them.
*/
#ifndef TR_TREE_H_INCLUDED
#define TR_TREE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_params.h"
#include "tr_type.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TR_ONE_FOR_ONE,             //  restart the child that failed
    TR_ONE_FOR_ALL,             //  restart every child
    TR_REST_FOR_ONE,            //  restart it and the children after it
    TR_SIMPLE_ONE_FOR_ONE       //  dynamic children from one template
} tr_strategy_t;

typedef enum {
    TR_RESTART_PERMANENT,       //  always restarted
    TR_RESTART_TRANSIENT,       //  restarted after an abnormal exit only
    TR_RESTART_TEMPORARY        //  never restarted
} tr_restart_t;

typedef enum {
    TR_CHILD_ACTOR,             //  a registered actor type
    TR_CHILD_PLUGIN,            //  an actor type from a shared library
    TR_CHILD_PROCESS,           //  an OS process
    TR_CHILD_SUPERVISOR         //  a nested supervisor
} tr_child_kind_t;

//  Exponential backoff between restarts of one child: the first restart
//  waits min_ms, each next one twice as long, up to max_ms, each delay
//  spread by +/- jitter (a fraction, 0 to 1) but never above max_ms.
//  After the child has run for
//  reset_after_ms without failing, the next delay is min_ms again.
typedef struct {
    int64_t min_ms;             //  default 10
    int64_t max_ms;             //  default 1000
    double jitter;              //  default 0.2
    int64_t reset_after_ms;     //  default 10000
} tr_backoff_t;

//  Circuit breaker of one child (see tr_sup.h).
typedef struct {
    bool enabled;               //  default true; `breaker: off` disables
    int failures;               //  consecutive failures that open it (5)
    int64_t reset_timeout_ms;   //  open -> half-open after this (1000)
    int half_open_trials;       //  messages let through half-open (1)
    double factor;              //  reset timeout grows by this (2.0)
    int64_t max_reset_timeout_ms;  //  up to this (30000)
    const char *fallback;       //  actor that gets messages while open,
                                //  or NULL to fail them with TR_ECIRCUIT
} tr_breaker_spec_t;

typedef struct tr_sup_spec tr_sup_spec_t;

//  Where something was written, for messages at run time.
typedef struct {
    int line;                   //  1-based
    int column;                 //  1-based
} tr_tree_pos_t;

typedef struct {
    const char *name;           //  unique across the whole tree
    int kind;                   //  tr_child_kind_t
    int restart;                //  tr_restart_t (default permanent)
    int64_t shutdown_ms;        //  time to stop (default 5000)
    int64_t handle_timeout_ms;  //  longest handling of one message (0: none)
    size_t capacity;            //  mailbox bound (0: the node's default)
    int on_full;                //  tr_full_policy_t
    tr_backoff_t backoff;
    tr_breaker_spec_t breaker;
    //  TR_CHILD_ACTOR and TR_CHILD_PLUGIN
    const tr_actor_type_t *type;
    tr_params_t params;         //  the `params:` block as msgpack
    const char *library;        //  plugin: path as written
    const char *symbol;         //  plugin: symbol name
    //  TR_CHILD_PROCESS
    const char *const *argv;    //  NULL-terminated; argv [0] is the program
    const char *const *env;     //  extra "NAME=VALUE" strings, NULL-terminated
    const char *cwd;            //  or NULL
    //  TR_CHILD_SUPERVISOR
    const tr_sup_spec_t *sup;
    tr_tree_pos_t pos;
} tr_child_spec_t;

struct tr_sup_spec {
    int strategy;               //  tr_strategy_t (default one_for_one)
    int max_restarts;           //  restart intensity: at most this many
    int64_t period_ms;          //  restarts within this (default 3 in 5000)
    const tr_child_spec_t *children;
    size_t count;
    //  TR_SIMPLE_ONE_FOR_ONE: the spec every dynamic child is made from
    //  (its name is given when the child is started); NULL otherwise.
    const tr_child_spec_t *template_;
};

typedef struct {
    const char *path;           //  the file, as given
    const char *name;           //  the root supervisor's name
    tr_child_spec_t root;       //  kind TR_CHILD_SUPERVISOR
} tr_tree_t;

//  A problem in a tree file.
typedef struct {
    char file [256];
    int line;                   //  1-based; 0 if it concerns the file as a whole
    int column;                 //  1-based; 0 likewise
    char message [256];         //  what was wrong and what was expected
} tr_tree_error_t;

//  Loads and checks the tree file at path. On TR_OK, *tree_p owns the
//  tree. Otherwise returns TR_ENOTFOUND (no such file), TR_ESYS (could
//  not read it), TR_EMALFORMED (any problem in it: err says where and
//  what), TR_ENOMEM; *tree_p is NULL. err may be NULL.
TR_EXPORT int
    tr_tree_load (const char *path, tr_tree_t **tree_p, tr_tree_error_t *err);

//  The same from text in memory; `path` is only used in error messages
//  and to resolve relative plugin paths (against its directory).
TR_EXPORT int
    tr_tree_parse (const char *text, size_t len, const char *path,
                   tr_tree_t **tree_p, tr_tree_error_t *err);

//  Writes the error as "FILE:LINE:COLUMN: MESSAGE" (or "FILE: MESSAGE"
//  without a position) into buf. Returns buf.
TR_EXPORT char *
    tr_tree_error_format (const tr_tree_error_t *err, char *buf, size_t size);

//  Frees the tree, closes its plugin libraries, sets *self_p to NULL.
//  Accepts NULL.
TR_EXPORT void
    tr_tree_destroy (tr_tree_t **self_p);

//  Finds a child spec by name anywhere in the tree, or NULL.
TR_EXPORT const tr_child_spec_t *
    tr_tree_find (const tr_tree_t *self, const char *name);

#ifdef __cplusplus
}
#endif

#endif
