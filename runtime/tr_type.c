/*  tr_type.c - the process-wide registry of actor types; see tr_type.h.

    A sorted array of pointers to the registered types, behind one mutex.
    Types are never removed, so a pointer handed out stays valid; the
    array itself lives as long as the process. tr_actor_type_each copies
    the types out in small batches and calls back without the lock, so a
    callback may use the registry itself.
*/

#include "troupe/tr_type.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include "tr_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t s_builtin_once = PTHREAD_ONCE_INIT;
static const tr_actor_type_t **s_types;     //  sorted by name
static size_t s_count;
static size_t s_room;

//  The index of the first type whose name is not below `name`. Caller
//  holds the lock.
static size_t
s_lower_bound (const char *name)
{
    size_t low = 0, high = s_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (strcmp (s_types [mid]->name, name) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

//  The index of the first type whose name is above `name`. Caller holds
//  the lock.
static size_t
s_upper_bound (const char *name)
{
    size_t at = s_lower_bound (name);
    if (at < s_count && strcmp (s_types [at]->name, name) == 0)
        at++;
    return at;
}

//  True if the parameter list is well formed: known types, keys that
//  are valid names, each key once.
static bool
s_params_valid (const tr_param_spec_t *params)
{
    for (size_t i = 0; params && params [i].key; i++) {
        if (tr_name_check (params [i].key, strlen (params [i].key))
        ||  params [i].type < TR_PARAM_INT || params [i].type > TR_PARAM_ANY)
            return false;
        for (size_t k = 0; k < i; k++)
            if (strcmp (params [k].key, params [i].key) == 0)
                return false;
    }
    return true;
}

//  True if the type may be registered at all.
static bool
s_type_valid (const tr_actor_type_t *type)
{
    return type && (type->abi == 1 || type->abi == TR_ACTOR_TYPE_ABI) && type->name
        && tr_name_check (type->name, strlen (type->name)) == TR_OK
        && type->name [0] != '$' && type->behaviour.handle
        && s_params_valid (type->params);
}

//  Makes room for one more type. Caller holds the lock. Returns TR_OK or
//  TR_ENOMEM.
static int
s_grow (void)
{
    if (s_count < s_room)
        return TR_OK;
    size_t room = s_room? 2 * s_room: 16;
    const tr_actor_type_t **types = realloc (s_types, room * sizeof *types);
    if (!types)
        return TR_ENOMEM;
    s_types = types;
    s_room = room;
    return TR_OK;
}

//  Adds a type. Returns TR_OK, TR_EEXIST, TR_EINVAL or TR_ENOMEM.
static int
s_register (const tr_actor_type_t *type)
{
    if (!s_type_valid (type))
        return TR_EINVAL;
    pthread_mutex_lock (&s_lock);
    size_t at = s_lower_bound (type->name);
    int rc = TR_OK;
    if (at < s_count && strcmp (s_types [at]->name, type->name) == 0)
        rc = TR_EEXIST;
    else
        rc = s_grow ();
    if (rc == TR_OK) {
        memmove (s_types + at + 1, s_types + at, (s_count - at) * sizeof *s_types);
        s_types [at] = type;
        s_count++;
    }
    pthread_mutex_unlock (&s_lock);
    return rc;
}

//  The built-in types (actors/) are registered on first use of the
//  registry, so that they come before any of the program's own.
static void
s_builtin_register (void)
{
    const tr_actor_type_t *const *types = tr__builtin_types ();
    for (size_t i = 0; types [i]; i++) {
        int rc = s_register (types [i]);
        assert (rc == TR_OK);
        (void) rc;
    }
}

int
tr_actor_type_register (const tr_actor_type_t *type)
{
    pthread_once (&s_builtin_once, s_builtin_register);
    return s_register (type);
}

const tr_actor_type_t *
tr_actor_type_find (const char *name)
{
    if (!name)
        return NULL;
    pthread_once (&s_builtin_once, s_builtin_register);
    const tr_actor_type_t *found = NULL;
    pthread_mutex_lock (&s_lock);
    size_t at = s_lower_bound (name);
    if (at < s_count && strcmp (s_types [at]->name, name) == 0)
        found = s_types [at];
    pthread_mutex_unlock (&s_lock);
    return found;
}

//  Copies up to `room` types that come after `after` (all of them from
//  the start if NULL) into batch. Returns how many.
static size_t
s_batch (const char *after, const tr_actor_type_t **batch, size_t room)
{
    pthread_mutex_lock (&s_lock);
    size_t at = after? s_upper_bound (after): 0;
    size_t n = 0;
    while (at + n < s_count && n < room) {
        batch [n] = s_types [at + n];
        n++;
    }
    pthread_mutex_unlock (&s_lock);
    return n;
}

void
tr_actor_type_each (void (*fn) (const tr_actor_type_t *type, void *arg), void *arg)
{
    if (!fn)
        return;
    pthread_once (&s_builtin_once, s_builtin_register);
    const tr_actor_type_t *batch [32];
    const char *after = NULL;
    size_t n;
    while ((n = s_batch (after, batch, 32)) > 0) {
        for (size_t i = 0; i < n; i++)
            fn (batch [i], arg);
        after = batch [n - 1]->name;
    }
}
