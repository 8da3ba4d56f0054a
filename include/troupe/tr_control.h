/*  tr_control.h - the control socket of a running tree: what `troupe
    status`, `troupe restart NAME` and the like talk to.

    `troupe run` serves its tree this way; a program that embeds troupe
    can do the same, so that the command line sees its tree too.

    Where: an ipc socket named after the root supervisor, NAME.sock, in
        $TROUPE_CONTROL_DIR            if set, else
        $XDG_RUNTIME_DIR/troupe        if XDG_RUNTIME_DIR is set, else
        /tmp/troupe-UID
    The folder is created with mode 0700 and refused if another user owns
    it or others may enter it; the socket is made 0600. The kernel checks
    both on connect, which makes the socket reachable by its owner only.

    Protocol (a ZeroMQ REQ socket can speak it): a request is one frame
    holding a msgpack array, the reply one frame holding [CODE, VALUE]
    where CODE is 0 or a negative tr_error_t:
        ["status"]                 -> [0, STATUS]   (tr_sup_status's map)
        ["restart", NAME]          -> [CODE, TEXT]  (tr_sup_restart_child)
        ["stop", NAME]             -> [CODE, TEXT]  (tr_sup_stop_child)
        ["start", NAME]            -> [CODE, TEXT]  (tr_sup_start_child)
        ["breaker_reset", NAME]    -> [CODE, TEXT]  (tr_breaker_reset)
        ["add", SUPERVISOR, NAME]  -> [CODE, TEXT]  (tr_sup_add_child)
    A malformed or unknown request is answered [TR_EMALFORMED or
    TR_EINVAL, TEXT] and the server carries on.
*/
#ifndef TR_CONTROL_H_INCLUDED
#define TR_CONTROL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "tr_export.h"
#include "tr_node.h"
#include "tr_sup.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_control tr_control_t;

//  Writes the control folder's path (see above) into buf. With `create`,
//  makes it if missing. Checks that it is a folder owned by the calling
//  user that nobody else may enter. Returns TR_OK; TR_ENOTFOUND if it
//  does not exist (and create is false); TR_EACCES if it is unsafe;
//  TR_EINVAL if the path does not fit in size; TR_ESYS if it could not
//  be made or examined. Each error is also logged with the reason.
TR_EXPORT int
    tr_control_dir (char *buf, size_t size, bool create);

//  Serves the tree `sup` (on `node`) on the socket named after it, from a
//  thread of its own, until tr_control_stop. Requests are carried out one
//  at a time. A socket file left by a process that died is replaced.
//  Returns TR_OK with *self_p owned by the caller; TR_EEXIST if a live
//  tree of that name already answers there; TR_EINVAL if the name cannot
//  make a socket path (too long, or has a '/'); errors of tr_control_dir;
//  TR_ESYS if the socket could not be bound; TR_ENOMEM. The server must
//  be stopped before the tree is (tr_sup_stop).
TR_EXPORT int
    tr_control_start (tr_node_t *node, tr_sup_t *sup, tr_control_t **self_p);

//  The socket's path.
TR_EXPORT const char *
    tr_control_path (const tr_control_t *self);

//  Stops serving, removes the socket file, frees the server and sets
//  *self_p to NULL. Accepts NULL.
TR_EXPORT void
    tr_control_stop (tr_control_t **self_p);

//  True if something accepts connections on the unix socket at path
//  (a live tree, as opposed to a file left by one that died).
TR_EXPORT bool
    tr_control_live (const char *path);

#ifdef __cplusplus
}
#endif

#endif
