/*  tr_cli_keygen.c - `troupe keygen NAME [--dir DIR]`: a CURVE key pair
    for a broker or a client (protocols/2-broker.md 2.10).

    Writes NAME.secret (both keys, mode 0600) and NAME.public (the public
    key, mode 0644) in the current folder or DIR, in czmq's zcert format,
    and refuses to overwrite either. The public key is printed, so that
    it can be checked by eye after the file has travelled. The files are
    written by runtime/tr_curve.c, compiled into the program too: the
    same code reads them in the library.
*/

#include "tr_cli.h"
#include "tr_curve.h"

#include <troupe.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define S_USAGE \
    "usage: troupe keygen NAME [--dir DIR]\n\n" \
    "Makes a CURVE key pair for a broker or a client of one, as two files in\n" \
    "DIR (default: the current folder):\n" \
    "  NAME.secret  both keys, mode 0600: it stays with its owner (the broker's\n" \
    "               --curve, or a client's --curve)\n" \
    "  NAME.public  the public key, mode 0644: a broker's goes to its clients\n" \
    "               (--server-key); a client's goes into the broker's --allow\n" \
    "               folder\n" \
    "NAME is letters, digits, '.', '_' and '-'. Existing files are never\n" \
    "overwritten. The files are czmq's zcert format (zcert_load reads them).\n\n" \
    "Exit status: 0 written; 1 the files exist or cannot be written; 2 usage.\n"

static int
s_keygen (int argc, char **argv)
{
    const char *name = NULL, *dir = ".";
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--dir") == 0) {
            if (i + 1 >= argc || !*argv [i + 1]) {
                fprintf (stderr, "troupe keygen: --dir needs a folder\n");
                return TR_CLI_USAGE;
            }
            dir = argv [++i];
        }
        else
        if (argv [i][0] == '-') {
            fprintf (stderr, "troupe keygen: unknown option '%s'\n%s", argv [i], S_USAGE);
            return TR_CLI_USAGE;
        }
        else
        if (name) {
            fprintf (stderr, "troupe keygen: one NAME only ('%s' and '%s')\n", name, argv [i]);
            return TR_CLI_USAGE;
        }
        else
            name = argv [i];
    }
    if (!name) {
        fputs (S_USAGE, stderr);
        return TR_CLI_USAGE;
    }
    char secret [4096], public [4096];
    int rc = tr__curve_keygen (dir, name, secret, public, sizeof secret);
    if (rc == TR_EINVAL) {
        fprintf (stderr, "troupe keygen: '%s' is not a key name (letters, digits, '.', '_', "
                 "'-'; not starting with '.')\n", name);
        return TR_CLI_USAGE;
    }
    if (rc == TR_EEXIST) {
        fprintf (stderr, "troupe keygen: %s or %s exists already; not overwritten\n", secret,
                 public);
        return TR_CLI_FAILED;
    }
    if (rc != TR_OK) {
        fprintf (stderr, "troupe keygen: cannot write %s and %s: %s\n", secret, public,
                 rc == TR_ENOTFOUND? "no such folder": strerror (errno));
        return TR_CLI_FAILED;
    }
    char key [TR__CURVE_TXT];
    if (tr__curve_public_load ("troupe keygen", public, key) != TR_OK)
        return TR_CLI_FAILED;
    printf ("%s (secret, mode 0600)\n%s (public key %s)\n", secret, public, key);
    return TR_CLI_OK;
}

const tr_cli_command_t tr_cli_keygen = {
    "keygen", "make a CURVE key pair (NAME.secret, NAME.public)", S_USAGE, s_keygen
};
