/*  tr_echo_node.c - a node for the command line's tests
    (troupe_client_test.sh): joins a broker and hosts one actor of the
    built-in type `echo` (it answers an ask with its body).

    usage: tr_echo_node ENDPOINT NAME

    Prints "ready NAME" once the broker counts NAME among this node's
    names (so that asks to it from other nodes find it: the broker's list
    of nodes gives the number of names each holds, and this node's are
    NAME and its reply address "$node.ID"), then runs until
    SIGINT or SIGTERM and exits 0. Exits 1 if it cannot get there within
    10 seconds.
*/

#include <troupe.h>

#include <msgpack.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  True if the peers list shows node `id` holding two names or more.
static bool
s_listed (const uint8_t *list, size_t size, const char *id)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    bool found = false;
    if (msgpack_unpack_next (&result, (const char *) list, size, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  result.data.type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < result.data.via.array.size && !found; i++) {
            const msgpack_object *peer = &result.data.via.array.ptr [i];
            if (peer->type != MSGPACK_OBJECT_MAP)
                continue;
            bool mine = false;
            uint64_t names = 0;
            for (uint32_t j = 0; j < peer->via.map.size; j++) {
                const msgpack_object *k = &peer->via.map.ptr [j].key;
                const msgpack_object *v = &peer->via.map.ptr [j].val;
                if (k->type != MSGPACK_OBJECT_STR)
                    continue;
                if (k->via.str.size == 2 && memcmp (k->via.str.ptr, "id", 2) == 0)
                    mine = v->type == MSGPACK_OBJECT_STR && v->via.str.size == strlen (id)
                        && memcmp (v->via.str.ptr, id, strlen (id)) == 0;
                if (k->via.str.size == 5 && memcmp (k->via.str.ptr, "names", 5) == 0
                &&  v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    names = v->via.u64;
            }
            found = mine && names >= 2;
        }
    msgpack_unpacked_destroy (&result);
    return found;
}

int
main (int argc, char **argv)
{
    if (argc != 3) {
        fprintf (stderr, "usage: tr_echo_node ENDPOINT NAME\n");
        return 2;
    }
    const char *name = argv [2];
    sigset_t stops;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &stops, NULL);

    char id [64];
    snprintf (id, sizeof id, "echo-node-%d", (int) getpid ());
    tr_node_opts_t opts = { .broker = argv [1], .node_id = id };
    tr_node_t *node = NULL;
    int rc = tr_node_new (&opts, &node);
    const tr_actor_type_t *echo = tr_actor_type_find ("echo");
    if (rc == TR_OK && echo)
        rc = tr_spawn (node, name, &echo->behaviour, NULL, NULL, NULL);
    if (rc != TR_OK || !echo) {
        fprintf (stderr, "tr_echo_node: cannot host '%s': %s\n", name,
                 echo? tr_errname (rc): "no echo type");
        tr_node_destroy (&node);
        return 1;
    }
    bool ready = false;
    for (int i = 0; i < 100 && !ready; i++) {
        uint8_t *list = NULL;
        size_t size = 0;
        if (tr_node_peers (node, 1000, &list, &size) == TR_OK)
            ready = s_listed (list, size, id);
        free (list);
        if (!ready)
            usleep (100 * 1000);
    }
    if (!ready) {
        fprintf (stderr, "tr_echo_node: the broker at %s never listed '%s'\n", argv [1], name);
        tr_node_destroy (&node);
        return 1;
    }
    printf ("ready %s\n", name);
    fflush (stdout);
    int sig;
    do
        sig = sigwaitinfo (&stops, NULL);
    while (sig < 0);
    tr_node_destroy (&node);
    return 0;
}
