/*  tr_test_tls.h - a self-signed certificate for 127.0.0.1, made at test
    time with the `openssl` command (scripts/install-deps.sh installs it),
    for the HTTPS tests of the HTTP engine and the agents that use it
    (tests/tr_http_server.py --cert --key serves with it).

    tr_test_tls_make (&tls) makes a folder under /tmp holding cert.pem (a
    self-signed certificate whose subjectAltName is IP:127.0.0.1, valid
    for two days; a self-signed certificate is its own CA, so the same
    file is the CA file a client trusts) and key.pem; tr_test_tls_remove
    deletes them. A missing openssl fails the test, saying so.

    Include after tr_test.h.
*/
#ifndef TR_TEST_TLS_H_INCLUDED
#define TR_TEST_TLS_H_INCLUDED

#include "tr_test.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

typedef struct {
    char dir [64];
    char cert [96];                     //  the certificate, and the CA file
    char key [96];
} tr_test_tls_t;

//  Makes the folder, the key and the certificate.
static inline void
tr_test_tls_make (tr_test_tls_t *tls)
{
    extern char **environ;
    snprintf (tls->dir, sizeof tls->dir, "/tmp/tr_test_tls_XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (tls->dir));
    snprintf (tls->cert, sizeof tls->cert, "%s/cert.pem", tls->dir);
    snprintf (tls->key, sizeof tls->key, "%s/key.pem", tls->dir);
    char *argv [] = {
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", tls->key, "-out", tls->cert,
        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        NULL
    };
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen (&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawnp (&pid, "openssl", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    ck_assert_msg (err == 0, "cannot run openssl (scripts/install-deps.sh installs it): %s",
                   strerror (err));
    int status = 0;
    ck_assert_int_eq (waitpid (pid, &status, 0), pid);
    ck_assert_msg (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                   "openssl could not make a certificate (status %d)", status);
}

//  Deletes what tr_test_tls_make made.
static inline void
tr_test_tls_remove (tr_test_tls_t *tls)
{
    unlink (tls->cert);
    unlink (tls->key);
    rmdir (tls->dir);
}

#endif
