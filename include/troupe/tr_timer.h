/*  tr_timer.h - messages sent later, once or periodically.

    The node's timer service sends the given body as a tell to the named
    actor when the timer is due. The name is looked up at each firing, so
    a timer keeps working across restarts of its target. A firing that
    finds no such actor, or a full mailbox, is counted as a dead letter
    (a timer never waits for room); a periodic timer whose target has
    gone away is cancelled. Resolution is about a millisecond.
*/
#ifndef TR_TIMER_H_INCLUDED
#define TR_TIMER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Sends body to `to` once, delay_ms (>= 0) from now. On TR_OK, *id_p
//  (if not NULL) receives the timer's id. Errors: TR_EINVAL, body errors
//  as for tr_tell, TR_ECLOSED, TR_ENOMEM.
TR_EXPORT int
    tr_timer_after (tr_node_t *node, const char *to, int delay_ms,
                    const void *body, size_t size, uint64_t *id_p);

//  Sends body to `to` every period_ms (> 0), the first time period_ms
//  from now. A period missed because the node was busy is skipped, not
//  sent in a burst. Same results as tr_timer_after.
TR_EXPORT int
    tr_timer_every (tr_node_t *node, const char *to, int period_ms,
                    const void *body, size_t size, uint64_t *id_p);

//  Cancels a timer. Returns TR_OK if it was pending, TR_ENOTFOUND if it
//  has already fired (one-shot), was cancelled, or never existed.
TR_EXPORT int
    tr_timer_cancel (tr_node_t *node, uint64_t id);

#ifdef __cplusplus
}
#endif

#endif
