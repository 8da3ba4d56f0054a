/*  tr_group.c - named groups of actors; see tr_group.h.

    A group is an array of mailbox references, in join order, kept in the
    node's registry (name -> group) under the node's lock. Sending takes a
    snapshot of the members first, so members may join and leave while a
    send is under way.
*/

#include "tr_internal.h"
#include "tr_mbox.h"
#include "troupe/tr_group.h"
#include "troupe/tr_envelope.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t size;
    size_t alloc;
    tr__mbox_t **members;               //  each holds a reference
} s_group_t;

static void
s_group_destroy (s_group_t **self_p)
{
    s_group_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t i = 0; i < self->size; i++)
        tr__mbox_unref (&self->members [i]);
    free (self->members);
    free (self);
}

static ssize_t
s_group_find (const s_group_t *self, const tr__mbox_t *mbox)
{
    for (size_t i = 0; i < self->size; i++)
        if (self->members [i] == mbox)
            return (ssize_t) i;
    return -1;
}

//  Appends mbox (taking a reference). TR_OK or TR_ENOMEM.
static int
s_group_add (s_group_t *self, tr__mbox_t *mbox)
{
    if (self->size == self->alloc) {
        size_t alloc = self->alloc? 2 * self->alloc: 8;
        tr__mbox_t **members = (tr__mbox_t **) realloc (self->members, alloc * sizeof *members);
        if (!members)
            return TR_ENOMEM;
        self->members = members;
        self->alloc = alloc;
    }
    self->members [self->size++] = tr__mbox_ref (mbox);
    return TR_OK;
}

//  Removes mbox from the group `name` (node lock held for writing) and
//  drops the group once empty. Returns true if it was a member.
static bool
s_remove (tr_node_t *node, const char *name, tr__mbox_t *mbox)
{
    s_group_t *group = (s_group_t *) zhashx_lookup (node->groups, name);
    ssize_t at = group? s_group_find (group, mbox): -1;
    if (at < 0)
        return false;
    tr__mbox_unref (&group->members [at]);
    memmove (group->members + at, group->members + at + 1,
             (group->size - (size_t) at - 1) * sizeof *group->members);
    if (--group->size == 0) {
        zhashx_delete (node->groups, name);
        s_group_destroy (&group);
    }
    return true;
}

int
tr_group_join (tr_node_t *node, const char *group, const char *actor)
{
    if (!node || !group || !actor || tr_name_check (group, strlen (group)))
        return TR_EINVAL;
    int rc = TR_OK;
    pthread_rwlock_wrlock (&node->lock);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (node->names, actor);
    s_group_t *g = (s_group_t *) zhashx_lookup (node->groups, group);
    if (!mbox)
        rc = TR_ENOACTOR;
    else
    if (!g) {
        g = (s_group_t *) calloc (1, sizeof *g);
        if (!g || zhashx_insert (node->groups, group, g)) {
            free (g);
            g = NULL;
            rc = TR_ENOMEM;
        }
    }
    if (rc == TR_OK && s_group_find (g, mbox) < 0)
        rc = s_group_add (g, mbox);
    pthread_rwlock_unlock (&node->lock);
    return rc;
}

int
tr_group_leave (tr_node_t *node, const char *group, const char *actor)
{
    if (!node || !group || !actor)
        return TR_EINVAL;
    pthread_rwlock_wrlock (&node->lock);
    tr__mbox_t *mbox = (tr__mbox_t *) zhashx_lookup (node->names, actor);
    bool removed = mbox && s_remove (node, group, mbox);
    pthread_rwlock_unlock (&node->lock);
    return removed? TR_OK: TR_ENOTFOUND;
}

void
tr__groups_forget (tr_node_t *node, tr__mbox_t *mbox)
{
    //  Take the names first: s_remove may delete from the hash we would
    //  otherwise be walking.
    zlistx_t *names = zhashx_keys (node->groups);
    if (!names)
        return;
    for (const char *name = (const char *) zlistx_first (names); name;
         name = (const char *) zlistx_next (names))
        s_remove (node, name, mbox);
    zlistx_destroy (&names);
}

size_t
tr_group_size (tr_node_t *node, const char *group)
{
    if (!node || !group)
        return 0;
    pthread_rwlock_rdlock (&node->lock);
    s_group_t *g = (s_group_t *) zhashx_lookup (node->groups, group);
    size_t size = g? g->size: 0;
    pthread_rwlock_unlock (&node->lock);
    return size;
}

//  Copies the members of a group, with a reference each. NULL (and *n 0)
//  for an unknown group or when out of memory.
static tr__mbox_t **
s_snapshot (tr_node_t *node, const char *group, size_t *n)
{
    *n = 0;
    pthread_rwlock_rdlock (&node->lock);
    s_group_t *g = (s_group_t *) zhashx_lookup (node->groups, group);
    tr__mbox_t **list = g? (tr__mbox_t **) malloc (g->size * sizeof *list): NULL;
    if (list)
        for (; *n < g->size; (*n)++)
            list [*n] = tr__mbox_ref (g->members [*n]);
    pthread_rwlock_unlock (&node->lock);
    return list;
}

int
tr_tell_group (tr_node_t *node, const char *group, const void *body,
               size_t size, const tr_send_opts_t *opts, size_t *delivered_p)
{
    if (delivered_p)
        *delivered_p = 0;
    if (!node || !group)
        return TR_EINVAL;
    int rc = tr__check_body (body, size);
    if (rc)
        return rc;
    size_t n;
    tr__mbox_t **list = s_snapshot (node, group, &n);
    if (!list)
        return TR_ENOTFOUND;
    int first_error = TR_OK;
    for (size_t i = 0; i < n; i++) {
        rc = tr_tell_ref ((tr_ref_t *) list [i], body, size, opts);
        if (rc == TR_OK && delivered_p)
            (*delivered_p)++;
        if (rc && !first_error)
            first_error = rc;
        tr__mbox_unref (&list [i]);
    }
    free (list);
    return first_error;
}
