/*  tr_curve.h - CURVE key files, their permissions, and the allow folder
    (internal; protocols/2-broker.md 2.10).

    Key files are czmq's zcert files (ZPL text, ZeroMQ RFC 4): a
    "curve" section with a Z85 "public-key" and, in a secret file, a
    "secret-key"; a "metadata" section may come first. Files written by
    czmq's zcert_save (or zcert_save_secret) are read here, and files
    written here are read by zcert_load.

    Why not call zcert_load / zcert_save: they do not start czmq's
    zsys layer (no signal handler), but
      - a secret file must be checked on the descriptor it is read from
        (owner, mode), and zconfig_load opens the file by name itself;
      - zcert_load tries NAME_secret before NAME, says nothing of why it
        failed (missing, unreadable, malformed are all NULL) and gives a
        secret key of zeros for a public-only file;
      - zcert_save_secret makes the file private by changing the
        process's umask, which races with every other thread of a host
        program that creates files.
    The format is small; reading and writing it here costs ~150 lines.

    Names: NAME.secret holds both keys (mode 0600), NAME.public the
    public key only (troupe keygen writes both).
*/
#ifndef TR_CURVE_H_INCLUDED
#define TR_CURVE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  A key as Z85 text: 40 characters and a NUL.
#define TR__CURVE_TXT   41

//  Reads a secret key file: both keys, as Z85 text. The file must be a
//  regular file owned by the effective user, with no permission for
//  group or others (0600 or 0400): otherwise TR_EACCES. A public-key
//  that does not belong to the secret key is TR_EMALFORMED (a missing
//  one is derived). Errors, each logged with the file's name, `who`
//  ("broker", "node") and what to do: TR_ENOTFOUND, TR_EACCES,
//  TR_EMALFORMED (not a key file, or no secret key in it), TR_ESYS.
int
    tr__curve_secret_load (const char *who, const char *path, char *public_txt,
                           char *secret_txt);

//  Reads the public key of a public or secret key file (any permission:
//  a public key is no secret). Errors as tr__curve_secret_load, without
//  the permission checks.
int
    tr__curve_public_load (const char *who, const char *path, char *public_txt);

//  Writes DIR/NAME.secret (mode 0600: both keys) and DIR/NAME.public
//  (mode 0644) for a new key pair, refusing to overwrite either
//  (TR_EEXIST, nothing written). The paths written are put in
//  secret_path and public_path (size bytes each). Returns TR_OK,
//  TR_EEXIST, TR_EINVAL (a name that is not [A-Za-z0-9._-], or starts
//  with '.', or paths too long), TR_ENOTFOUND (no such folder),
//  TR_EACCES (cannot write there), TR_ESYS (errno set).
int
    tr__curve_keygen (const char *dir, const char *name, char *secret_path,
                      char *public_path, size_t size);

//  True if an endpoint reaches this host only: ipc://, inproc://, or
//  tcp:// on 127.0.0.0/8, [::1] or localhost. Anything else (another
//  address, "*", an interface name, another transport) is not: a broker
//  bound there must use CURVE.
bool
    tr__curve_endpoint_local (const char *endpoint);

//  The public keys of an allow folder: every file in it that is a key
//  file (public or secret; names starting with '.' are skipped).
typedef struct tr__curve_keys tr__curve_keys_t;

//  Reads the folder. Files that are not key files are skipped (logged
//  when verbose). Returns TR_OK (an empty folder gives an empty set),
//  TR_ENOTFOUND (no such folder), TR_EACCES (not readable), TR_ENOMEM,
//  TR_ESYS.
int
    tr__curve_keys_load (const char *dir, bool verbose, tr__curve_keys_t **keys_p);

//  True if the set holds this key (32 bytes). NULL holds nothing.
bool
    tr__curve_keys_has (const tr__curve_keys_t *keys, const uint8_t *key);

//  Keys in the set.
size_t
    tr__curve_keys_count (const tr__curve_keys_t *keys);

//  Frees the set, sets *keys_p to NULL. Accepts NULL.
void
    tr__curve_keys_destroy (tr__curve_keys_t **keys_p);

#endif
