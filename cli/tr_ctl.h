/*  tr_ctl.h - the client side of a tree's control socket (tr_control.h),
    used by `troupe status`, `restart`, `stop`, `start`, `breaker reset`
    and `add`. Errors are printed for the user.
*/
#ifndef TR_CTL_H_INCLUDED
#define TR_CTL_H_INCLUDED

#include <troupe.h>

#include <stddef.h>

//  Finds the socket of the tree named `tree`, or of the only running tree
//  when `tree` is NULL, into path. Returns 0, or -1 after printing why (no
//  tree running, several running and none named, no such tree).
int
    tr_ctl_find (const char *tree, char *path, size_t size);

//  Sends `request` (a msgpack array) to the socket at path and waits up
//  to timeout_ms for the reply. On 0, *reply_p (malloc'd, the caller
//  frees it) holds the reply's bytes. Returns -1 after printing why.
int
    tr_ctl_call (const char *path, const void *request, size_t size,
                 int timeout_ms, void **reply_p, size_t *reply_size);

#endif
