/*  tr_ctl.c - the client side of a tree's control socket; see tr_ctl.h.

    A REQ socket with send and receive timeouts, on a context of its own
    (the command ends right after).
*/

#include "tr_ctl.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <zmq.h>

//  --------------------------------------------------------------------------
//  The client

int
tr_ctl_find (const char *tree, char *path, size_t size)
{
    char dir [256];
    int rc = tr_control_dir (dir, sizeof dir, false);
    if (rc == TR_ENOTFOUND) {
        fprintf (stderr, "troupe: no tree is running (there is no control folder %s); "
                 "start one with 'troupe run TREE.yaml'\n", dir);
        return -1;
    }
    if (rc) {
        fprintf (stderr, "troupe: cannot use the control folder %s: %s\n", dir, tr_strerror (rc));
        return -1;
    }
    if (tree) {
        int n = snprintf (path, size, "%s/%s.sock", dir, tree);
        if (n < 0 || (size_t) n >= size || !tr_control_live (path)) {
            fprintf (stderr, "troupe: no tree named '%s' is running (no live socket %s/%s.sock)\n",
                     tree, dir, tree);
            return -1;
        }
        return 0;
    }
    DIR *d = opendir (dir);
    size_t found = 0;
    char names [1024] = "";
    struct dirent *entry;
    while (d && (entry = readdir (d))) {
        size_t len = strlen (entry->d_name);
        if (len <= 5 || strcmp (entry->d_name + len - 5, ".sock") != 0)
            continue;
        char candidate [512];
        int n = snprintf (candidate, sizeof candidate, "%s/%s", dir, entry->d_name);
        if (n < 0 || (size_t) n >= sizeof candidate || !tr_control_live (candidate))
            continue;
        if (found++ == 0)
            snprintf (path, size, "%s", candidate);
        size_t used = strlen (names);
        snprintf (names + used, sizeof names - used, "%s%.*s", used? ", ": "",
                  (int) (len - 5), entry->d_name);
    }
    if (d)
        closedir (d);
    if (found == 1)
        return 0;
    if (found == 0)
        fprintf (stderr, "troupe: no tree is running (no live control socket in %s); "
                 "start one with 'troupe run TREE.yaml'\n", dir);
    else
        fprintf (stderr, "troupe: %zu trees are running (%s); choose one with --tree NAME\n",
                 found, names);
    return -1;
}

int
tr_ctl_call (const char *path, const void *request, size_t size,
             int timeout_ms, void **reply_p, size_t *reply_size)
{
    void *ctx = zmq_ctx_new ();
    void *req = ctx? zmq_socket (ctx, ZMQ_REQ): NULL;
    int rc = -1;
    if (!req) {
        fprintf (stderr, "troupe: cannot make a ZeroMQ socket: %s\n", zmq_strerror (errno));
        goto done;
    }
    int linger = 0;
    zmq_setsockopt (req, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (req, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt (req, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    char endpoint [600];
    snprintf (endpoint, sizeof endpoint, "ipc://%s", path);
    if (zmq_connect (req, endpoint)) {
        fprintf (stderr, "troupe: cannot connect to %s: %s\n", path, zmq_strerror (errno));
        goto done;
    }
    if (zmq_send (req, request, size, 0) < 0) {
        fprintf (stderr, "troupe: cannot send to the tree at %s: %s\n", path, zmq_strerror (errno));
        goto done;
    }
    zmq_msg_t reply;
    zmq_msg_init (&reply);
    if (zmq_msg_recv (&reply, req, 0) < 0)
        fprintf (stderr, "troupe: the tree at %s did not answer within %d ms\n", path, timeout_ms);
    else {
        *reply_size = zmq_msg_size (&reply);
        *reply_p = malloc (*reply_size? *reply_size: 1);
        if (*reply_p) {
            memcpy (*reply_p, zmq_msg_data (&reply), *reply_size);
            rc = 0;
        }
    }
    zmq_msg_close (&reply);
done:
    if (req)
        zmq_close (req);
    if (ctx)
        zmq_ctx_term (ctx);
    return rc;
}
