/*  tr_body.c - small msgpack bodies; see tr_body.h.  */

#include "troupe/tr_body.h"
#include "troupe/tr_error.h"
#include "tr_mp.h"

#include <msgpack.h>
#include <string.h>

//  msgpack-c write callback into a tr_body_t; refuses to overflow.
static int
s_write (void *data, const char *buf, size_t len)
{
    tr_body_t *body = (tr_body_t *) data;
    if (len > sizeof body->data - body->size)
        return -1;
    memcpy (body->data + body->size, buf, len);
    body->size += len;
    return 0;
}

int
tr_body_uint (tr_body_t *body, uint64_t value)
{
    if (!body)
        return TR_EINVAL;
    msgpack_packer pk;
    body->size = 0;
    msgpack_packer_init (&pk, body, s_write);
    return msgpack_pack_uint64 (&pk, value)? TR_EINVAL: TR_OK;
}

int
tr_body_str (tr_body_t *body, const char *text, size_t len)
{
    if (!body || (!text && len))
        return TR_EINVAL;
    msgpack_packer pk;
    body->size = 0;
    msgpack_packer_init (&pk, body, s_write);
    if (msgpack_pack_str_with_body (&pk, text? text: "", len)) {
        body->size = 0;
        return TR_ETOOBIG;
    }
    return TR_OK;
}

//  Starts a reader over a message's body.
static void
s_reader (tr__mp_t *r, const tr_msg_t *msg)
{
    tr__mp_init (r, tr_msg_body (msg), tr_msg_size (msg));
}

int
tr_msg_uint (const tr_msg_t *msg, uint64_t *value)
{
    tr__mp_t r;
    uint64_t v;
    if (!msg || !value)
        return TR_EINVAL;
    s_reader (&r, msg);
    if (tr__mp_uint (&r, &v) || tr__mp_remaining (&r))
        return TR_EMALFORMED;
    *value = v;
    return TR_OK;
}

int
tr_msg_str (const tr_msg_t *msg, const char **text, size_t *len)
{
    tr__mp_t r;
    const char *s;
    uint32_t n;
    if (!msg || !text || !len)
        return TR_EINVAL;
    s_reader (&r, msg);
    if (tr__mp_str (&r, &s, &n) || tr__mp_remaining (&r))
        return TR_EMALFORMED;
    *text = s;
    *len = n;
    return TR_OK;
}
