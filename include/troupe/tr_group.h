/*  tr_group.h - named groups of actors on a node.

    A group is a name for a set of actors, for sending one message to all
    of them. An actor may be in many groups; it leaves them all when it
    stops. Groups exist while they have members.
*/
#ifndef TR_GROUP_H_INCLUDED
#define TR_GROUP_H_INCLUDED

#include <stddef.h>

#include "tr_export.h"
#include "tr_node.h"
#include "tr_send.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Adds the actor named `actor` to `group`. Returns TR_OK (also if it
//  was already a member), TR_ENOACTOR, TR_EINVAL or TR_ENOMEM.
TR_EXPORT int
    tr_group_join (tr_node_t *node, const char *group, const char *actor);

//  Removes the actor from the group. TR_OK, or TR_ENOTFOUND if it was not
//  a member.
TR_EXPORT int
    tr_group_leave (tr_node_t *node, const char *group, const char *actor);

//  Number of members of the group now (0 for an unknown group).
TR_EXPORT size_t
    tr_group_size (tr_node_t *node, const char *group);

//  Tells every member of the group. Each member gets its own copy; the
//  members are sent to in the order they joined. If delivered_p is not
//  NULL it receives the number of members that accepted the message.
//  Returns TR_OK when every member accepted it, TR_ENOTFOUND for an empty
//  or unknown group, otherwise the first error met (the other members
//  were still tried).
TR_EXPORT int
    tr_tell_group (tr_node_t *node, const char *group, const void *body,
                   size_t size, const tr_send_opts_t *opts,
                   size_t *delivered_p);

#ifdef __cplusplus
}
#endif

#endif
