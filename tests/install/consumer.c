/*  consumer.c - a user's program built against an installed troupe: one
    actor answers one ask.  */

#include <troupe.h>
#include <stdio.h>

static int
s_echo (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    return tr_reply (msg, tr_msg_body (msg), tr_msg_size (msg));
}

int
main (void)
{
    tr_node_t *node;
    tr_behaviour_t echo = { .handle = s_echo };
    const char body [] = "\xa5hello";            //  msgpack "hello"
    tr_msg_t *reply = NULL;
    int rc = tr_node_new (NULL, &node);
    if (!rc)
        rc = tr_spawn (node, "echo", &echo, NULL, NULL, NULL);
    if (!rc)
        rc = tr_ask (node, "echo", body, sizeof body - 1, 5000, &reply, NULL);
    if (!rc)
        printf ("consumer: troupe %s answered %zu bytes\n", tr_version (), tr_msg_size (reply));
    else
        printf ("consumer: %s\n", tr_strerror (rc));
    tr_msg_destroy (&reply);
    tr_node_destroy (&node);
    return rc? 1: 0;
}
