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

//  A write that answers ["OK", SEQ, VERSION].
static int
s_versioned (tr_node_t *node, tr__wire_out_t *out, const void *payload, size_t size,
             int timeout_ms, uint64_t *version_p)
{
    tr__reply_t reply;
    tr__mp_t results;
    int rc = s_call (node, out, payload, size, timeout_ms, &reply, &results);
    if (rc)
        return rc;
    uint64_t version = 0;
    if (tr__mp_uint (&results, &version))
        rc = TR_EMALFORMED;
    else
    if (version_p)
        *version_p = version;
    tr__remote_reply_free (&reply);
    return rc;
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
    if (!node || !node->remote || !value || s_check_key (key, false))
        return TR_EINVAL;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_GET, tr__remote_call_seq (node->remote), 1);
    tr__wire_str (&out, key, strlen (key));
    tr__reply_t reply;
    tr__mp_t results;
    int rc = s_call (node, &out, NULL, 0, timeout_ms, &reply, &results);
    if (rc)
        return rc;
    int64_t ttl = 0;
    rc = s_copy_value (&results, &value->data, &value->size);
    if (rc == TR_OK && (tr__mp_uint (&results, &value->version) || tr__mp_int (&results, &ttl))) {
        tr_scratch_value_free (value);
        rc = TR_EMALFORMED;
    }
    value->ttl_ms = ttl;
    tr__remote_reply_free (&reply);
    return rc;
}

int
tr_scratch_put (tr_node_t *node, const char *key, const void *value, size_t size,
                int64_t ttl_ms, int timeout_ms, uint64_t *version_p)
{
    if (!node || !node->remote || s_check_key (key, false) || ttl_ms < 0)
        return TR_EINVAL;
    int rc = s_check_value (value, size);
    if (rc)
        return rc;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_PUT, tr__remote_call_seq (node->remote), 2);
    tr__wire_str (&out, key, strlen (key));
    tr__wire_uint (&out, (uint64_t) ttl_ms);
    return s_versioned (node, &out, value, size, timeout_ms, version_p);
}

int
tr_scratch_cas (tr_node_t *node, const char *key, uint64_t expected,
                const void *value, size_t size, int64_t ttl_ms, int timeout_ms,
                uint64_t *version_p)
{
    if (!node || !node->remote || s_check_key (key, false) || ttl_ms < 0)
        return TR_EINVAL;
    int rc = s_check_value (value, size);
    if (rc)
        return rc;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_CAS, tr__remote_call_seq (node->remote), 3);
    tr__wire_str (&out, key, strlen (key));
    tr__wire_uint (&out, expected);
    tr__wire_uint (&out, (uint64_t) ttl_ms);
    return s_versioned (node, &out, value, size, timeout_ms, version_p);
}

int
tr_scratch_del (tr_node_t *node, const char *key, int timeout_ms, uint64_t *version_p)
{
    if (!node || !node->remote || s_check_key (key, false))
        return TR_EINVAL;
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_KV_DEL, tr__remote_call_seq (node->remote), 1);
    tr__wire_str (&out, key, strlen (key));
    return s_versioned (node, &out, NULL, 0, timeout_ms, version_p);
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
