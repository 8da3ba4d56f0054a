/*  tr_type.h - actor types: behaviours that tree files can name.

    A tree file says `actor: counter`; "counter" is an actor type: a
    behaviour plus the parameters it accepts. The built-in types are
    registered when libtroupe loads; a program adds its own with
    tr_actor_type_register before it loads a tree; a plugin (a shared
    library named in the tree file) exports a `const tr_actor_type_t`
    under a symbol the tree file names.

    An actor started from a type gets its child's parameters as its init
    argument: `init (self, (void *) params, &state)` with params a
    `const tr_params_t *` valid for the actor's whole life.
*/
#ifndef TR_TYPE_H_INCLUDED
#define TR_TYPE_H_INCLUDED

#include <stdbool.h>

#include "tr_actor.h"
#include "tr_params.h"
#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Bump when tr_actor_type_t changes shape; plugins carry the value they
//  were built with. The loader takes types of ABI 1 (without `check`) and
//  2, and refuses any other.
#define TR_ACTOR_TYPE_ABI 2

typedef enum {
    TR_PARAM_INT,               //  integer
    TR_PARAM_NUMBER,            //  integer or float
    TR_PARAM_BOOL,              //  true or false
    TR_PARAM_STRING,            //  string
    TR_PARAM_DURATION,          //  "250ms", "2s"... or an integer of ms
    TR_PARAM_LIST,              //  a YAML sequence
    TR_PARAM_MAP,               //  a YAML mapping
    TR_PARAM_ANY                //  anything
} tr_param_type_t;

//  One accepted parameter. A type's list ends with a NULL key.
typedef struct {
    const char *key;
    int type;                   //  tr_param_type_t
    bool required;
    const char *help;           //  one line, for error messages and docs
} tr_param_spec_t;

//  What a type's check found wrong with its parameters.
typedef struct {
    //  Where: the keys and list positions from the params mapping down to
    //  the value at fault, joined by dots, lists counted from 1
    //  ("signature.outputs.2.type"); "" for the mapping itself. The loader
    //  reports the position of the deepest part of the path it finds.
    char path [256];
    char message [512];         //  what is wrong, in words
} tr_param_error_t;

typedef struct {
    int abi;                    //  TR_ACTOR_TYPE_ABI
    const char *name;           //  what tree files write after `actor:`
    const char *summary;        //  one line
    tr_behaviour_t behaviour;
    //  Accepted parameters, or NULL for none. The tree loader rejects a
    //  parameter that is not listed, one of the wrong type, and a
    //  missing required one, naming file, line and column.
    const tr_param_spec_t *params;
    //  Checks the parameters more deeply than their declared keys and
    //  types (nested mappings, values that depend on one another) when a
    //  tree file is loaded, so that a mistake is reported with its file,
    //  line and column before anything starts, not when the actor starts.
    //  Returns 0, or -1 with *error filled in. May be NULL. (ABI 2.)
    int (*check) (const tr_params_t *params, tr_param_error_t *error);
} tr_actor_type_t;

//  Registers a type for the whole process. The type must stay valid
//  (usually a static const). Returns TR_OK, TR_EEXIST if the name is
//  taken, TR_EINVAL for a bad name, ABI or behaviour.
TR_EXPORT int
    tr_actor_type_register (const tr_actor_type_t *type);

//  The registered type with that name, or NULL.
TR_EXPORT const tr_actor_type_t *
    tr_actor_type_find (const char *name);

//  Calls fn for every registered type, in name order.
TR_EXPORT void
    tr_actor_type_each (void (*fn) (const tr_actor_type_t *type, void *arg), void *arg);

#ifdef __cplusplus
}
#endif

#endif
