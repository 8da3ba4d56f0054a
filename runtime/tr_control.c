/*  tr_control.c - the control socket of a running tree; see tr_control.h.

    A thread of its own polls a ROUTER socket bound to the tree's ipc
    path and an inproc pair through which tr_control_stop tells it to
    end, both on the node's ZeroMQ context. Each request is carried out by
    calling the tr_sup_* functions, which ask the supervisors and wait, so
    requests are served one at a time. (czmq's zactor would do the same,
    but creating a czmq socket installs czmq's SIGINT handler in the whole
    process, which a library must not do behind its program's back.)
*/

#include "tr_internal.h"
#include "troupe/tr_control.h"
#include "troupe/tr_envelope.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

//  An ipc path must fit in sockaddr_un's sun_path.
#define S_PATH_MAX (sizeof ((struct sockaddr_un *) 0)->sun_path)

struct tr_control {
    tr_node_t *node;
    tr_sup_t *sup;
    char path [S_PATH_MAX];
    char pipe_endpoint [64];
    void *router;
    void *pipe;                         //  our end: tr_control_stop writes
    pthread_t thread;
};

//  --------------------------------------------------------------------------
//  The folder

int
tr_control_dir (char *buf, size_t size, bool create)
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
    if (n < 0 || (size_t) n >= size || (size_t) n + 1 >= S_PATH_MAX) {
        tr_log (TR_LOG_ERROR, "control: the control folder's path is too long");
        return TR_EINVAL;
    }
    if (create && mkdir (buf, 0700) && errno != EEXIST) {
        tr_log (TR_LOG_ERROR, "control: cannot create the control folder %s: %s",
                buf, strerror (errno));
        return TR_ESYS;
    }
    struct stat st;
    if (lstat (buf, &st)) {
        if (errno == ENOENT)
            return TR_ENOTFOUND;
        tr_log (TR_LOG_ERROR, "control: control folder %s: %s", buf, strerror (errno));
        return TR_ESYS;
    }
    if (!S_ISDIR (st.st_mode) || st.st_uid != geteuid () || (st.st_mode & 077)) {
        tr_log (TR_LOG_ERROR, "control: refusing the control folder %s: it must be a "
                "folder owned by uid %u that nobody else may enter (mode 0700)",
                buf, (unsigned) geteuid ());
        return TR_EACCES;
    }
    return TR_OK;
}

bool
tr_control_live (const char *path)
{
    if (!path || strlen (path) >= S_PATH_MAX)
        return false;
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    memcpy (addr.sun_path, path, strlen (path) + 1);
    bool live = connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0;
    close (fd);
    return live;
}

//  --------------------------------------------------------------------------
//  Requests

//  A reply [code, text] in a malloc'd buffer.
static void
s_reply_code (msgpack_sbuffer *sb, int code, const char *text)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int (&pk, code);
    msgpack_pack_str_with_body (&pk, text, strlen (text));
}

//  Copies a string object into buf (NUL-terminated); false if it is not
//  a string, holds a NUL, or does not fit.
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

static void
s_status (tr_control_t *self, msgpack_sbuffer *sb)
{
    uint8_t *status;
    size_t len;
    int rc = tr_sup_status (self->sup, &status, &len);
    if (rc) {
        s_reply_code (sb, rc, tr_strerror (rc));
        return;
    }
    //  [0, STATUS]: the array header and a zero, then the map as it is.
    static const char head [2] = { (char) 0x92, 0x00 };
    msgpack_sbuffer_write (sb, head, 2);
    msgpack_sbuffer_write (sb, (const char *) status, len);
    free (status);
}

//  Carries out one request; the reply goes into sb.
static void
s_handle (tr_control_t *self, const void *data, size_t size, msgpack_sbuffer *sb)
{
    msgpack_unpacked msg;
    msgpack_unpacked_init (&msg);
    size_t offset = 0;
    char op [32], name [TR_NAME_MAX + 1], child [TR_NAME_MAX + 1];
    if (msgpack_unpack_next (&msg, (const char *) data, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  offset != size
    ||  msg.data.type != MSGPACK_OBJECT_ARRAY || msg.data.via.array.size < 1
    ||  !s_str (&msg.data.via.array.ptr [0], op, sizeof op)) {
        s_reply_code (sb, TR_EMALFORMED, "a request is a msgpack array [OP, ARGS...]");
        goto done;
    }
    const msgpack_object *args = msg.data.via.array.ptr + 1;
    uint32_t nargs = msg.data.via.array.size - 1;
    if (strcmp (op, "status") == 0 && nargs == 0) {
        s_status (self, sb);
        goto done;
    }
    if (strcmp (op, "add") == 0) {
        if (nargs != 2 || !s_str (&args [0], name, sizeof name)
        ||  !s_str (&args [1], child, sizeof child))
            s_reply_code (sb, TR_EMALFORMED, "add takes a supervisor's name and a new child's name");
        else {
            int rc = tr_sup_add_child (self->node, name, child);
            s_reply_code (sb, rc, tr_strerror (rc));
        }
        goto done;
    }
    int (*fn) (tr_node_t *, const char *) =
        strcmp (op, "restart") == 0? tr_sup_restart_child:
        strcmp (op, "stop") == 0? tr_sup_stop_child:
        strcmp (op, "start") == 0? tr_sup_start_child:
        strcmp (op, "breaker_reset") == 0? tr_breaker_reset: NULL;
    if (!fn)
        s_reply_code (sb, TR_EINVAL, "unknown request; expected status, restart, "
                      "stop, start, breaker_reset or add");
    else
    if (nargs != 1 || !s_str (&args [0], name, sizeof name))
        s_reply_code (sb, TR_EMALFORMED, "this request takes one name");
    else {
        int rc = fn (self->node, name);
        s_reply_code (sb, rc, tr_strerror (rc));
    }
done:
    msgpack_unpacked_destroy (&msg);
}

//  Receives one multipart message from a REQ client: [identity, empty,
//  request]. Answers it if it has that shape; drops it otherwise.
static void
s_serve_one (tr_control_t *self)
{
    zmq_msg_t parts [3];
    size_t count = 0, total = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            break;
        }
        more = zmq_msg_more (&part);
        total++;
        if (count < 3)
            parts [count++] = part;
        else
            zmq_msg_close (&part);      //  too many frames: dropped below
    }
    bool shaped = !more && total == 3 && zmq_msg_size (&parts [1]) == 0;
    if (shaped) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init (&sb);
        s_handle (self, zmq_msg_data (&parts [2]), zmq_msg_size (&parts [2]), &sb);
        //  The identity and the empty frame go back as they came.
        zmq_msg_send (&parts [0], self->router, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_msg_send (&parts [1], self->router, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (self->router, sb.data, sb.size, ZMQ_DONTWAIT);
        msgpack_sbuffer_destroy (&sb);
    }
    for (size_t i = 0; i < count; i++)
        zmq_msg_close (&parts [i]);
}

static void *
s_server (void *arg)
{
    tr_control_t *self = (tr_control_t *) arg;
    void *pipe = zmq_socket (self->node->ctx, ZMQ_PAIR);
    zmq_connect (pipe, self->pipe_endpoint);
    zmq_pollitem_t items [2] = {
        { self->router, 0, ZMQ_POLLIN, 0 }, { pipe, 0, ZMQ_POLLIN, 0 }
    };
    while (true) {
        if (zmq_poll (items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;                      //  context ending
        }
        if (items [1].revents & ZMQ_POLLIN)
            break;                      //  tr_control_stop
        if (items [0].revents & ZMQ_POLLIN)
            s_serve_one (self);
    }
    int linger = 0;
    zmq_setsockopt (pipe, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close (pipe);
    return NULL;
}

//  --------------------------------------------------------------------------

int
tr_control_start (tr_node_t *node, tr_sup_t *sup, tr_control_t **self_p)
{
    if (!node || !sup || !self_p)
        return TR_EINVAL;
    char dir [S_PATH_MAX];
    int rc = tr_control_dir (dir, sizeof dir, true);
    if (rc)
        return rc;
    const char *name = tr_sup_name (sup);
    tr_control_t *self = (tr_control_t *) calloc (1, sizeof *self);
    if (!self)
        return TR_ENOMEM;
    self->node = node;
    self->sup = sup;
    int n = snprintf (self->path, sizeof self->path, "%s/%s.sock", dir, name);
    if (n < 0 || (size_t) n >= sizeof self->path || strchr (name, '/')) {
        tr_log (TR_LOG_ERROR, "control: cannot make a control socket for the tree '%s' in %s "
                "(the path is too long, or the name has a '/')", name, dir);
        free (self);
        return TR_EINVAL;
    }
    if (tr_control_live (self->path)) {
        tr_log (TR_LOG_ERROR, "control: a tree named '%s' is already running (control socket %s)",
                name, self->path);
        free (self);
        return TR_EEXIST;
    }
    unlink (self->path);                //  a stale socket from a run that died
    static atomic_uint_fast64_t s_count;
    snprintf (self->pipe_endpoint, sizeof self->pipe_endpoint, "inproc://$control-%llu",
              (unsigned long long) atomic_fetch_add (&s_count, 1));
    int linger = 0;
    self->router = zmq_socket (node->ctx, ZMQ_ROUTER);
    self->pipe = zmq_socket (node->ctx, ZMQ_PAIR);
    rc = self->router && self->pipe? TR_OK: TR_ESYS;
    if (rc == TR_OK) {
        zmq_setsockopt (self->router, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt (self->pipe, ZMQ_LINGER, &linger, sizeof linger);
        char endpoint [S_PATH_MAX + 8];
        snprintf (endpoint, sizeof endpoint, "ipc://%s", self->path);
        //  Created with no access for others from the first instant.
        mode_t old = umask (0177);
        if (zmq_bind (self->router, endpoint) || zmq_bind (self->pipe, self->pipe_endpoint)) {
            tr_log (TR_LOG_ERROR, "control: cannot bind %s: %s", endpoint, zmq_strerror (errno));
            rc = TR_ESYS;
        }
        umask (old);
        if (rc == TR_OK)
            chmod (self->path, 0600);
    }
    if (rc == TR_OK && pthread_create (&self->thread, NULL, s_server, self))
        rc = TR_ESYS;
    if (rc) {
        if (self->router)
            zmq_close (self->router);
        if (self->pipe)
            zmq_close (self->pipe);
        unlink (self->path);
        free (self);
        return rc;
    }
    *self_p = self;
    return TR_OK;
}

const char *
tr_control_path (const tr_control_t *self)
{
    return self? self->path: NULL;
}

void
tr_control_stop (tr_control_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tr_control_t *self = *self_p;
    *self_p = NULL;
    zmq_send (self->pipe, "", 0, 0);
    pthread_join (self->thread, NULL);
    zmq_close (self->pipe);
    zmq_close (self->router);
    unlink (self->path);
    free (self);
}
