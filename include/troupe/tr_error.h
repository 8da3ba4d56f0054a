/*  tr_error.h - the one error list of troupe.

    Every public function that can fail returns an int: 0 (TR_OK) on
    success or one of the negative codes below. The list is append-only:
    a code keeps its number forever, so scripts, logs and the wire
    protocol can rely on it. The enum, the names and the strings are all
    generated from TR_ERROR_MAP, so they cannot drift apart.
*/
#ifndef TR_ERROR_H_INCLUDED
#define TR_ERROR_H_INCLUDED

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

//  X (NAME, value, text). Append only; never renumber or remove.
#define TR_ERROR_MAP(X)                                                     \
    X (OK,          0, "success")                                           \
    X (EINVAL,     -1, "invalid argument")                                  \
    X (ENOMEM,     -2, "out of memory")                                     \
    X (ENOACTOR,   -3, "no such actor")                                     \
    X (EEXIST,     -4, "name already registered")                           \
    X (EFULL,      -5, "mailbox full")                                      \
    X (ETIMEDOUT,  -6, "timed out")                                         \
    X (ECLOSED,    -7, "node is shutting down")                             \
    X (EINIT,      -8, "actor init failed")                                 \
    X (EHANDLER,   -9, "handler failed")                                    \
    X (ENOREPLY,  -10, "request finished without a reply")                  \
    X (ESTOPPED,  -11, "actor stopped before handling the message")         \
    X (EMALFORMED,-12, "malformed input")                                   \
    X (ETOOBIG,   -13, "message too large")                                 \
    X (EDEPTH,    -14, "nesting too deep")                                  \
    X (EVERSION,  -15, "unsupported protocol version")                      \
    X (ESYS,      -16, "system call failed")                                \
    X (ELIMIT,    -17, "resource limit reached")                            \
    X (EDEADLK,   -18, "operation would wait on itself")                    \
    X (ENOTFOUND, -19, "not found")                                         \
    X (EEXPIRED,  -20, "message deadline passed before handling")         \
    X (ECIRCUIT,  -21, "circuit open")                                      \
    X (EINTENSITY,-22, "restart intensity exceeded")                        \
    X (ECHILD,    -23, "child failed")                                      \
    X (EACCES,    -24, "not allowed: unsafe ownership or permissions")   \
    X (EPROTO,    -25, "protocol error: greeting missing or wrong")        \
    X (ECONFLICT, -26, "version conflict")                                  \
    X (ENODE,     -27, "node down")                                       \
    X (EHTTP,     -28, "HTTP request failed")                             \
    X (ECANCELED, -29, "canceled")                                        \
    X (EOUTPUT,   -30, "answer does not fit the declared output")

#define TR__ERROR_ENUM(name, value, text) TR_##name = value,
typedef enum {
    TR_ERROR_MAP (TR__ERROR_ENUM)
} tr_error_t;
#undef TR__ERROR_ENUM

//  Returns a short English sentence for an error code, e.g. "no such actor".
//  Never returns NULL: an unknown code gives "unknown error". The string is
//  static; do not free it.
TR_EXPORT const char *
    tr_strerror (int code);

//  Returns the symbolic name of an error code, e.g. "TR_ENOACTOR", or
//  "TR_EUNKNOWN" for a code that is not in the list. Static string.
TR_EXPORT const char *
    tr_errname (int code);

#ifdef __cplusplus
}
#endif

#endif
