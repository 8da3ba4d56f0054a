/*  tr_ctl.h - the control endpoint of a running tree (`troupe run`), and
    the client side used by `troupe status`, `restart`, `stop`, `start`
    and `breaker reset`.

    Where: one ipc socket per running tree, named after its root
    supervisor, in a folder only its owner may enter:
        $TROUPE_CONTROL_DIR            if set, else
        $XDG_RUNTIME_DIR/troupe        if XDG_RUNTIME_DIR is set, else
        /tmp/troupe-UID
    The folder is created with mode 0700 and refused if it belongs to
    someone else or others may write to it; the socket file is made
    0600. That is what makes the endpoint owner-only: the kernel checks
    the folder's permissions on connect.

    Protocol: a request is one frame holding a msgpack array
        ["status"]                 -> [0, STATUS]   (tr_sup_status's map)
        ["restart", NAME]          -> [CODE, TEXT]
        ["stop", NAME]             -> [CODE, TEXT]
        ["start", NAME]            -> [CODE, TEXT]
        ["breaker_reset", NAME]    -> [CODE, TEXT]
        ["add", SUPERVISOR, NAME]  -> [CODE, TEXT]
    and its reply one frame holding a msgpack array whose first element
    is a tr_error_t (0 for success). A malformed request gets
    [TR_EMALFORMED, TEXT] and the server carries on.
*/
#ifndef TR_CTL_H_INCLUDED
#define TR_CTL_H_INCLUDED

#include <troupe.h>

#include <stddef.h>

typedef struct tr_ctl tr_ctl_t;

//  The control folder (see above) in buf. Creates it if `create`; checks
//  its owner and mode. Returns 0, or -1 after printing why to stderr.
int
    tr_ctl_dir (char *buf, size_t size, bool create);

//  Starts serving the tree `sup` of `node` on the socket for its name.
//  Refuses (-1, with a message on stderr) if a live tree of that name
//  already answers there; replaces a stale socket file. On 0, *self_p
//  is the running server.
int
    tr_ctl_start (tr_node_t *node, tr_sup_t *sup, tr_ctl_t **self_p);

//  The socket path being served.
const char *
    tr_ctl_path (const tr_ctl_t *self);

//  Stops serving, removes the socket file, frees the server. Accepts NULL.
void
    tr_ctl_stop (tr_ctl_t **self_p);

//  Client: finds the socket of the tree named `tree`, or of the only
//  running tree when `tree` is NULL, into path. Returns 0, or -1 after
//  printing why (no tree running, several running and none named, no
//  such tree).
int
    tr_ctl_find (const char *tree, char *path, size_t size);

//  Client: sends `request` (a msgpack array) to the socket at path and
//  waits up to timeout_ms for the reply. On 0, *reply_p (malloc'd, the
//  caller frees it) holds the reply's bytes. Returns -1 after printing
//  why (no answer in time, ...).
int
    tr_ctl_call (const char *path, const void *request, size_t size,
                 int timeout_ms, void **reply_p, size_t *reply_size);

#endif
