/*  tr_ctl.c - the control endpoint of a running tree; see tr_ctl.h.

    The server is a czmq actor (zactor) with a ROUTER socket bound to the
    tree's ipc path; it answers each request by calling the tr_sup_*
    functions, which ask the supervisors and wait, so requests are served
    one at a time. The client is a REQ socket with a receive timeout.
*/

#include "tr_ctl.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

//  An ipc path must fit in sockaddr_un's sun_path.
#define S_PATH_MAX (sizeof ((struct sockaddr_un *) 0)->sun_path)

struct tr_ctl {
    tr_node_t *node;
    tr_sup_t *sup;
    char path [S_PATH_MAX];
    zactor_t *actor;
};

//  --------------------------------------------------------------------------
//  The folder

int
tr_ctl_dir (char *buf, size_t size, bool create)
{
    const char *env = getenv ("TROUPE_CONTROL_DIR");
    const char *xdg = getenv ("XDG_RUNTIME_DIR");
    int n;
    if (env && *env)
        n = snprintf (buf, size, "%s", env);
    else
    if (xdg && *xdg)
        n = snprintf (buf, size, "%s/troupe", xdg);
    else
        n = snprintf (buf, size, "/tmp/troupe-%u", (unsigned) geteuid ());
    if (n < 0 || (size_t) n >= size) {
        fprintf (stderr, "troupe: the control folder's path is too long\n");
        return -1;
    }
    if (create && mkdir (buf, 0700) && errno != EEXIST) {
        fprintf (stderr, "troupe: cannot create the control folder %s: %s\n",
                 buf, strerror (errno));
        return -1;
    }
    struct stat st;
    if (lstat (buf, &st)) {
        if (!create && errno == ENOENT)
            return 0;                   //  nothing runs yet; callers see no sockets
        fprintf (stderr, "troupe: control folder %s: %s\n", buf, strerror (errno));
        return -1;
    }
    if (!S_ISDIR (st.st_mode) || st.st_uid != geteuid () || (st.st_mode & 077)) {
        fprintf (stderr, "troupe: refusing the control folder %s: it must be a folder "
                 "owned by you (uid %u) that nobody else may enter (mode 0700)\n",
                 buf, (unsigned) geteuid ());
        return -1;
    }
    return 0;
}

//  True if something accepts connections on the unix socket at path.
static bool
s_live (const char *path)
{
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf (addr.sun_path, sizeof addr.sun_path, "%s", path);
    bool live = connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0;
    close (fd);
    return live;
}

//  --------------------------------------------------------------------------
//  The server

//  Packs a reply [code, text].
static zframe_t *
s_reply_code (int code, const char *text)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int (&pk, code);
    msgpack_pack_str_with_body (&pk, text, strlen (text));
    zframe_t *frame = zframe_new (sb.data, sb.size);
    msgpack_sbuffer_destroy (&sb);
    return frame;
}

//  Copies a string object into buf (NUL-terminated); false if it is not
//  a string or does not fit.
static bool
s_str (const msgpack_object *obj, char *buf, size_t size)
{
    if (obj->type != MSGPACK_OBJECT_STR || obj->via.str.size >= size
    ||  memchr (obj->via.str.ptr, 0, obj->via.str.size))
        return false;
    memcpy (buf, obj->via.str.ptr, obj->via.str.size);
    buf [obj->via.str.size] = 0;
    return true;
}

static zframe_t *
s_status (tr_ctl_t *self)
{
    uint8_t *status;
    size_t len;
    int rc = tr_sup_status (self->sup, &status, &len);
    if (rc)
        return s_reply_code (rc, tr_strerror (rc));
    //  [0, STATUS]: the array header and a zero, then the map as it is.
    zframe_t *frame = zframe_new (NULL, len + 2);
    uint8_t *data = zframe_data (frame);
    data [0] = 0x92;
    data [1] = 0x00;
    memcpy (data + 2, status, len);
    free (status);
    return frame;
}

//  Carries out one request and returns the reply frame.
static zframe_t *
s_handle (tr_ctl_t *self, zframe_t *request)
{
    msgpack_unpacked msg;
    msgpack_unpacked_init (&msg);
    size_t offset = 0;
    zframe_t *reply = NULL;
    char op [32], name [256], child [256];
    if (msgpack_unpack_next (&msg, (const char *) zframe_data (request),
                             zframe_size (request), &offset) != MSGPACK_UNPACK_SUCCESS
    ||  offset != zframe_size (request)
    ||  msg.data.type != MSGPACK_OBJECT_ARRAY || msg.data.via.array.size < 1
    ||  !s_str (&msg.data.via.array.ptr [0], op, sizeof op)) {
        reply = s_reply_code (TR_EMALFORMED, "a request is a msgpack array [OP, ARGS...]");
        goto done;
    }
    const msgpack_object *args = msg.data.via.array.ptr + 1;
    uint32_t nargs = msg.data.via.array.size - 1;
    if (strcmp (op, "status") == 0 && nargs == 0) {
        reply = s_status (self);
        goto done;
    }
    if (strcmp (op, "add") == 0) {
        if (nargs != 2 || !s_str (&args [0], name, sizeof name)
        ||  !s_str (&args [1], child, sizeof child))
            reply = s_reply_code (TR_EMALFORMED, "add takes a supervisor's name and a new child's name");
        else {
            int rc = tr_sup_add_child (self->node, name, child);
            reply = s_reply_code (rc, tr_strerror (rc));
        }
        goto done;
    }
    int (*fn) (tr_node_t *, const char *) =
        strcmp (op, "restart") == 0? tr_sup_restart_child:
        strcmp (op, "stop") == 0? tr_sup_stop_child:
        strcmp (op, "start") == 0? tr_sup_start_child:
        strcmp (op, "breaker_reset") == 0? tr_breaker_reset: NULL;
    if (!fn) {
        reply = s_reply_code (TR_EINVAL, "unknown request; expected status, restart, "
                              "stop, start, breaker_reset or add");
        goto done;
    }
    if (nargs != 1 || !s_str (&args [0], name, sizeof name)) {
        reply = s_reply_code (TR_EMALFORMED, "this request takes one name");
        goto done;
    }
    int rc = fn (self->node, name);
    reply = s_reply_code (rc, tr_strerror (rc));
done:
    msgpack_unpacked_destroy (&msg);
    return reply;
}

static void
s_server (zsock_t *pipe, void *arg)
{
    tr_ctl_t *self = (tr_ctl_t *) arg;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    char endpoint [S_PATH_MAX + 8];
    snprintf (endpoint, sizeof endpoint, "ipc://%s", self->path);
    //  Made with no access for others from the start, then 0600 for sure.
    mode_t old = umask (0177);
    int rc = router? zsock_bind (router, "%s", endpoint): -1;
    umask (old);
    if (rc == 0)
        chmod (self->path, 0600);
    zsock_signal (pipe, rc == 0? 0: 1);
    if (rc) {
        zsock_destroy (&router);
        return;
    }
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        zsock_t *which = (zsock_t *) zpoller_wait (poller, -1);
        if (which == pipe || !which)
            break;                      //  $TERM, or interrupted
        zmsg_t *msg = zmsg_recv (router);
        if (!msg)
            continue;
        //  [identity, empty, request] from a REQ client.
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *empty = zmsg_pop (msg);
        zframe_t *request = zmsg_pop (msg);
        if (identity && empty && request && zframe_size (empty) == 0 && zmsg_size (msg) == 0) {
            zmsg_t *out = zmsg_new ();
            zmsg_append (out, &identity);
            zmsg_append (out, &empty);
            zframe_t *reply = s_handle (self, request);
            zmsg_append (out, &reply);
            zmsg_send (&out, router);
        }
        zframe_destroy (&identity);
        zframe_destroy (&empty);
        zframe_destroy (&request);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

int
tr_ctl_start (tr_node_t *node, tr_sup_t *sup, tr_ctl_t **self_p)
{
    tr_ctl_t *self = (tr_ctl_t *) calloc (1, sizeof *self);
    if (!self)
        return -1;
    self->node = node;
    self->sup = sup;
    char dir [S_PATH_MAX];
    if (tr_ctl_dir (dir, sizeof dir, true)) {
        free (self);
        return -1;
    }
    int n = snprintf (self->path, sizeof self->path, "%s/%s.sock", dir, tr_sup_name (sup));
    if (n < 0 || (size_t) n >= sizeof self->path || strchr (tr_sup_name (sup), '/')) {
        fprintf (stderr, "troupe: cannot make a control socket for the tree '%s' in %s "
                 "(the path is too long, or the name has a '/')\n", tr_sup_name (sup), dir);
        free (self);
        return -1;
    }
    if (s_live (self->path)) {
        fprintf (stderr, "troupe: a tree named '%s' is already running (control socket %s)\n",
                 tr_sup_name (sup), self->path);
        free (self);
        return -1;
    }
    unlink (self->path);                //  a stale socket from a run that died
    self->actor = zactor_new (s_server, self);
    if (!self->actor) {
        fprintf (stderr, "troupe: cannot serve the control socket %s\n", self->path);
        free (self);
        return -1;
    }
    *self_p = self;
    return 0;
}

const char *
tr_ctl_path (const tr_ctl_t *self)
{
    return self->path;
}

void
tr_ctl_stop (tr_ctl_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr_ctl_t *self = *self_p;
    *self_p = NULL;
    zactor_destroy (&self->actor);
    unlink (self->path);
    free (self);
}

//  --------------------------------------------------------------------------
//  The client

int
tr_ctl_find (const char *tree, char *path, size_t size)
{
    char dir [S_PATH_MAX];
    if (tr_ctl_dir (dir, sizeof dir, false))
        return -1;
    if (tree) {
        int n = snprintf (path, size, "%s/%s.sock", dir, tree);
        if (n < 0 || (size_t) n >= size || !s_live (path)) {
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
        char candidate [S_PATH_MAX];
        int n = snprintf (candidate, sizeof candidate, "%s/%s", dir, entry->d_name);
        if (n < 0 || (size_t) n >= sizeof candidate || !s_live (candidate))
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
    zsock_t *req = zsock_new (ZMQ_REQ);
    if (!req)
        return -1;
    zsock_set_linger (req, 0);
    zsock_set_rcvtimeo (req, timeout_ms);
    zsock_set_sndtimeo (req, timeout_ms);
    int rc = -1;
    zframe_t *frame = NULL;
    if (zsock_connect (req, "ipc://%s", path) != 0)
        fprintf (stderr, "troupe: cannot connect to %s\n", path);
    else {
        frame = zframe_new (request, size);
        if (zframe_send (&frame, req, 0) != 0)
            fprintf (stderr, "troupe: cannot send to the tree at %s\n", path);
        else
        if (!(frame = zframe_recv (req)))
            fprintf (stderr, "troupe: the tree at %s did not answer within %d ms\n",
                     path, timeout_ms);
        else {
            *reply_size = zframe_size (frame);
            *reply_p = malloc (*reply_size? *reply_size: 1);
            if (*reply_p) {
                memcpy (*reply_p, zframe_data (frame), *reply_size);
                rc = 0;
            }
        }
    }
    zframe_destroy (&frame);
    zsock_destroy (&req);
    return rc;
}
