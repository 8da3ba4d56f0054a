/*  tr_scratch.c - the scratchpad and the list of nodes, through the
    node's link to the broker; see tr_scratch.h.

    Each call writes its command frame (protocols/2-broker.md 2.4.4),
    hands it to the link (tr__remote_call) and reads the answer's fields
    back with the bounded msgpack reader.
*/

#include "tr_internal.h"
#include "tr_mbox.h"
#include "tr_remote.h"
#include "tr_wire.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_scratch.h"

#include <stdlib.h>
#include <string.h>

#define S_KEY_MAX   1024

static int
s_check_key (const char *key, bool empty_ok)
{
    size_t len = key? strlen (key): 0;
    return key && (len || empty_ok) && len <= S_KEY_MAX? TR_OK: TR_EINVAL;
}

static int
s_check_value (const void *value, size_t size)
{
    if (!value || !size)
        return TR_EINVAL;
    return tr_msgpack_check (value, size, 32, NULL) == TR_OK? TR_OK: TR_EMALFORMED;
}

//  Sends frame (+ payload) and, on OK, leaves a cursor at the answer's
//  first result. The caller frees reply.
static int
s_call (tr_node_t *node, tr__wire_out_t *out, const void *payload, size_t size,
        int timeout_ms, tr__reply_t *reply, tr__mp_t *results)
{
    int rc = timeout_ms > 0? tr__remote_call (node->remote, out, payload, size, timeout_ms, reply):
             TR_EINVAL;
    tr__wire_end (out);
    if (rc)
        return rc;
    tr__wire_cmd_t cmd;
    if (tr__wire_parse (reply->frame, reply->frame_size, &cmd) != TR_OK || cmd.verb != TR__V_OK) {
        tr__remote_reply_free (reply);
        return TR_EMALFORMED;
    }
    *results = cmd.args;
    return TR_OK;
}

//  Copies the next value at the cursor into a malloc'd buffer.
static int
s_copy_value (tr__mp_t *mp, uint8_t **data_p, size_t *size_p)
{
    const uint8_t *start = mp->p;
    if (tr__mp_skip (mp, 34))
        return TR_EMALFORMED;
    size_t size = (size_t) (mp->p - start);
    uint8_t *data = (uint8_t *) malloc (size? size: 1);
    if (!data)
        return TR_ENOMEM;
    memcpy (data, start, size);
    *data_p = data;
    *size_p = size;
    return TR_OK;
}

//  The two shapes of answer of the calls that have asynchronous forms:
//  a get's ["OK", SEQ, VALUE, VERSION, TTL_MS], a write's ["OK", SEQ,
//  VERSION].
typedef enum { S_GOT, S_WROTE } s_shape_t;

//  Reads the results at the cursor into *result; a value points into the
//  answer.
static int
s_read_result (tr__mp_t *results, int shape, tr_scratch_result_t *result)
{
    if (shape == S_GOT) {
        const uint8_t *start = results->p;
        if (tr__mp_skip (results, 34))
            return TR_EMALFORMED;
        result->data = start;
        result->size = (size_t) (results->p - start);
        return tr__mp_uint (results, &result->version) || tr__mp_int (results, &result->ttl_ms)?
               TR_EMALFORMED: TR_OK;
    }
    return tr__mp_uint (results, &result->version)? TR_EMALFORMED: TR_OK;
}

//  Sends a request and waits for its answer of that shape; on TR_OK the
//  caller frees reply (result may point into it).
static int
s_wait (tr_node_t *node, tr__wire_out_t *out, const void *payload, size_t size,
        int timeout_ms, int shape, tr__reply_t *reply, tr_scratch_result_t *result)
{
    memset (result, 0, sizeof *result);
    tr__mp_t results;
    int rc = s_call (node, out, payload, size, timeout_ms, reply, &results);
    if (rc == TR_OK && (rc = s_read_result (&results, shape, result)))
        tr__remote_reply_free (reply);
    return rc;
}

//  An asynchronous call in flight: the caller's callback.
typedef struct {
    tr_scratch_fn *fn;
    void *arg;
    int shape;
} s_async_t;

//  The link's callback: reads the answer and hands it to the caller's.
static void
s_async_done (int rc, const tr__reply_t *reply, void *arg)
{
    s_async_t *async = (s_async_t *) arg;
    tr_scratch_result_t result = { .rc = rc };
    if (rc == TR_OK) {
        tr__wire_cmd_t cmd;
        if (tr__wire_parse (reply->frame, reply->frame_size, &cmd) != TR_OK
        ||  cmd.verb != TR__V_OK)
            result.rc = TR_EMALFORMED;
        else {
            result.rc = s_read_result (&cmd.args, async->shape, &result);
            if (result.rc) {
                result.data = NULL;
                result.size = 0;
            }
        }
    }
    async->fn (&result, async->arg);
    free (async);
}

//  Sends a request without waiting; ends the writer.
//  A node that is closing has let go of its link: calls are refused as
//  stopped, not as invalid (a callback may be making one).
static int
s_no_link (tr_node_t *node)
{
    return node && atomic_load (&node->closing)? TR_ESTOPPED: TR_EINVAL;
}

static int
s_send_async (tr_node_t *node, tr__wire_out_t *out, const void *payload, size_t size,
              int timeout_ms, int shape, tr_scratch_fn *fn, void *arg)
{
    s_async_t *async = timeout_ms > 0 && fn? (s_async_t *) malloc (sizeof *async): NULL;
    int rc = timeout_ms <= 0 || !fn? TR_EINVAL: async? TR_OK: TR_ENOMEM;
    if (rc == TR_OK) {
        *async = (s_async_t) { fn, arg, shape };
        rc = tr__remote_call_async (node->remote, out, payload, size, timeout_ms,
                                    s_async_done, async);
        if (rc)
            free (async);
    }
    tr__wire_end (out);
    return rc;
}

//  The request frames, one per operation, for the blocking and the
//  asynchronous forms alike. Each judges its arguments first (TR_EINVAL,
//  or the value's error) and begins out only when they are good.
static int
s_get_frame (tr_node_t *node, const char *key, tr__wire_out_t *out)
{
    if (!node || !node->remote)
        return s_no_link (node);
    if (s_check_key (key, false))
        return TR_EINVAL;
    tr__wire_begin (out, TR__V_KV_GET, tr__remote_call_seq (node->remote), 1);
    tr__wire_str (out, key, strlen (key));
    return TR_OK;
}

static int
s_put_frame (tr_node_t *node, const char *key, const uint64_t *expected,
             const void *value, size_t size, int64_t ttl_ms, tr__wire_out_t *out)
{
    if (!node || !node->remote)
        return s_no_link (node);
    if (s_check_key (key, false) || ttl_ms < 0)
        return TR_EINVAL;
    int rc = s_check_value (value, size);
    if (rc)
        return rc;
    tr__wire_begin (out, expected? TR__V_KV_CAS: TR__V_KV_PUT,
                    tr__remote_call_seq (node->remote), expected? 3: 2);
    tr__wire_str (out, key, strlen (key));
    if (expected)
        tr__wire_uint (out, *expected);
    tr__wire_uint (out, (uint64_t) ttl_ms);
    return TR_OK;
}

static int
s_del_frame (tr_node_t *node, const char *key, tr__wire_out_t *out)
{
    if (!node || !node->remote)
        return s_no_link (node);
    if (s_check_key (key, false))
        return TR_EINVAL;
    tr__wire_begin (out, TR__V_KV_DEL, tr__remote_call_seq (node->remote), 1);
    tr__wire_str (out, key, strlen (key));
    return TR_OK;
}

//  A write that answers ["OK", SEQ, VERSION], waited for.
static int
s_versioned (tr_node_t *node, tr__wire_out_t *out, const void *payload, size_t size,
             int timeout_ms, uint64_t *version_p)
{
    tr__reply_t reply;
    tr_scratch_result_t result;
    int rc = s_wait (node, out, payload, size, timeout_ms, S_WROTE, &reply, &result);
    if (rc)
        return rc;
    if (version_p)
        *version_p = result.version;
    tr__remote_reply_free (&reply);
    return TR_OK;
}

void
tr_scratch_value_free (tr_scratch_value_t *value)
{
    if (value) {
        free (value->data);
        memset (value, 0, sizeof *value);
    }
}

int
tr_scratch_get (tr_node_t *node, const char *key, int timeout_ms, tr_scratch_value_t *value)
{
    if (value)
        memset (value, 0, sizeof *value);
    tr__wire_out_t out;
    int rc = value? s_get_frame (node, key, &out): TR_EINVAL;
    if (rc)
        return rc;
    tr__reply_t reply;
    tr_scratch_result_t result;
    rc = s_wait (node, &out, NULL, 0, timeout_ms, S_GOT, &reply, &result);
    if (rc)
        return rc;
    value->data = (uint8_t *) malloc (result.size? result.size: 1);
    if (value->data) {
        memcpy (value->data, result.data, result.size);
        value->size = result.size;
        value->version = result.version;
        value->ttl_ms = result.ttl_ms;
    }
    tr__remote_reply_free (&reply);
    return value->data? TR_OK: TR_ENOMEM;
}

int
tr_scratch_put (tr_node_t *node, const char *key, const void *value, size_t size,
                int64_t ttl_ms, int timeout_ms, uint64_t *version_p)
{
    tr__wire_out_t out;
    int rc = s_put_frame (node, key, NULL, value, size, ttl_ms, &out);
    return rc? rc: s_versioned (node, &out, value, size, timeout_ms, version_p);
}

int
tr_scratch_cas (tr_node_t *node, const char *key, uint64_t expected,
                const void *value, size_t size, int64_t ttl_ms, int timeout_ms,
                uint64_t *version_p)
{
    tr__wire_out_t out;
    int rc = s_put_frame (node, key, &expected, value, size, ttl_ms, &out);
    return rc? rc: s_versioned (node, &out, value, size, timeout_ms, version_p);
}

int
tr_scratch_del (tr_node_t *node, const char *key, int timeout_ms, uint64_t *version_p)
{
    tr__wire_out_t out;
    int rc = s_del_frame (node, key, &out);
    return rc? rc: s_versioned (node, &out, NULL, 0, timeout_ms, version_p);
}

int
tr_scratch_get_async (tr_node_t *node, const char *key, int timeout_ms,
                      tr_scratch_fn *done, void *arg)
{
    tr__wire_out_t out;
    int rc = s_get_frame (node, key, &out);
    return rc? rc: s_send_async (node, &out, NULL, 0, timeout_ms, S_GOT, done, arg);
}

int
tr_scratch_put_async (tr_node_t *node, const char *key, const void *value, size_t size,
                      int64_t ttl_ms, int timeout_ms, tr_scratch_fn *done, void *arg)
{
    tr__wire_out_t out;
    int rc = s_put_frame (node, key, NULL, value, size, ttl_ms, &out);
    return rc? rc: s_send_async (node, &out, value, size, timeout_ms, S_WROTE, done, arg);
}

int
tr_scratch_cas_async (tr_node_t *node, const char *key, uint64_t expected,
                      const void *value, size_t size, int64_t ttl_ms, int timeout_ms,
                      tr_scratch_fn *done, void *arg)
{
    tr__wire_out_t out;
    int rc = s_put_frame (node, key, &expected, value, size, ttl_ms, &out);
    return rc? rc: s_send_async (node, &out, value, size, timeout_ms, S_WROTE, done, arg);
}

int
tr_scratch_del_async (tr_node_t *node, const char *key, int timeout_ms,
                      tr_scratch_fn *done, void *arg)
{
    tr__wire_out_t out;
    int rc = s_del_frame (node, key, &out);
    return rc? rc: s_send_async (node, &out, NULL, 0, timeout_ms, S_WROTE, done, arg);
}

//  A request whose answer is ["OK", SEQ, ARRAY]: copies the array.
static int
s_listing (tr_node_t *node, tr__wire_out_t *out, int timeout_ms,
           uint8_t **list_p, size_t *size_p)
{
    tr__reply_t reply;
    tr__mp_t results;
    int rc = s_call (node, out, NULL, 0, timeout_ms, &reply, &results);
    if (rc)
        return rc;
    rc = s_copy_value (&results, list_p, size_p);
    tr__remote_reply_free (&reply);
    return rc;
}

int
tr_scratch_list (tr_node_t *node, const char *prefix, int timeout_ms,
                 uint8_t **list_p, size_t *size_p)
{
    if (!node || !node->remote || !list_p || !size_p || s_check_key (prefix, true))
        return TR_EINVAL;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_LIST, tr__remote_call_seq (node->remote), 1);
    tr__wire_str (&out, prefix, strlen (prefix));
    return s_listing (node, &out, timeout_ms, list_p, size_p);
}

int
tr_node_peers (tr_node_t *node, int timeout_ms, uint8_t **list_p, size_t *size_p)
{
    if (!node || !node->remote || !list_p || !size_p)
        return TR_EINVAL;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_NODES, tr__remote_call_seq (node->remote), 0);
    return s_listing (node, &out, timeout_ms, list_p, size_p);
}

int
tr_scratch_watch (tr_node_t *node, const char *prefix, const char *actor)
{
    if (!node || !node->remote || !actor || s_check_key (prefix, true))
        return TR_EINVAL;
    tr__mbox_t *mbox = tr__node_lookup (node, actor, false);
    if (!mbox)
        return TR_ENOACTOR;
    tr__mbox_unref (&mbox);
    tr__remote_watch (node->remote, prefix, actor, true);
    return TR_OK;
}

int
tr_scratch_unwatch (tr_node_t *node, const char *prefix, const char *actor)
{
    if (!node || !node->remote || !actor || s_check_key (prefix, true))
        return TR_EINVAL;
    tr__remote_watch (node->remote, prefix, actor, false);
    return TR_OK;
}
