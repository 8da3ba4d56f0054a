/*  tr_echo_node.c - a node for the command line's tests
    (troupe_client_test.sh): joins a broker and hosts one actor of the
    built-in type `echo` (it answers an ask with its body).

    usage: tr_echo_node ENDPOINT NAME [--heartbeat MS]
                        [--curve SECRET_FILE --server-key PUBLIC_FILE]

    --heartbeat MS proposes that heartbeat interval to the broker
    (tr_node_opts_t.heartbeat_ms; the broker's own interval wins, 2-broker.md
    2.5); --curve and --server-key join a CURVE broker with this node's
    secret key file and the broker's public key file (2.10).
    troupe_netns_test.sh uses them for a broker on another "host".

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

//  Reads the options after ENDPOINT NAME into opts; false on a bad one.
static bool
s_options (int argc, char **argv, tr_node_opts_t *opts)
{
    if (argc < 3)
        return false;
    for (int i = 3; i < argc; i += 2) {
        const char *value = i + 1 < argc? argv [i + 1]: NULL;
        if (!value || !*value)
            return false;
        if (strcmp (argv [i], "--heartbeat") == 0) {
            char *end;
            long ms = strtol (value, &end, 10);
            if (*end || ms < 10 || ms > 60000)
                return false;
            opts->heartbeat_ms = (int) ms;
        }
        else
        if (strcmp (argv [i], "--curve") == 0)
            opts->curve_secret_file = value;
        else
        if (strcmp (argv [i], "--server-key") == 0)
            opts->curve_server_public_file = value;
        else
            return false;
    }
    return true;
}

int
main (int argc, char **argv)
{
    char id [64];
    snprintf (id, sizeof id, "echo-node-%d", (int) getpid ());
    tr_node_opts_t opts = { .node_id = id };
    if (!s_options (argc, argv, &opts)) {
        fprintf (stderr, "usage: tr_echo_node ENDPOINT NAME [--heartbeat MS]\n"
                 "                    [--curve SECRET_FILE --server-key PUBLIC_FILE]\n"
                 "  MS from 10 to 60000\n");
        return 2;
    }
    opts.broker = argv [1];
    const char *name = argv [2];
    sigset_t stops;
    sigemptyset (&stops);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &stops, NULL);

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
