/*  troupe.h - everything a program needs to use libtroupe.

    troupe is an actor runtime for agents: every agent is an actor, a
    thread with its own ZeroMQ mailbox. Start with tr_node_new, spawn
    actors with tr_spawn, talk to them with tr_tell and tr_ask.
*/
#ifndef TROUPE_H_INCLUDED
#define TROUPE_H_INCLUDED

#include "troupe/tr_error.h"
#include "troupe/tr_version.h"
#include "troupe/tr_log.h"
#include "troupe/tr_msg.h"
#include "troupe/tr_body.h"
#include "troupe/tr_node.h"
#include "troupe/tr_send.h"
#include "troupe/tr_actor.h"
#include "troupe/tr_group.h"
#include "troupe/tr_timer.h"
#include "troupe/tr_params.h"
#include "troupe/tr_type.h"
#include "troupe/tr_tree.h"
#include "troupe/tr_sup.h"
#include "troupe/tr_control.h"
#include "troupe/tr_scratch.h"
#include "troupe/tr_event.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_broker.h"
#include "troupe/tr_http.h"
#include "troupe/tr_llm.h"

#endif
