/*  tr_envelope.c - envelope codec; the format is in protocols/1-envelope.md.

    Encoding goes through msgpack-c's packer. Decoding uses the bounded
    reader in tr_mp.c, never msgpack-c's unpacker (see tr_mp.h), and
    checks the meaning of each field as well as its form.
*/

#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"
#include "troupe/tr_msg.h"
#include "tr_mp.h"
#include "tr_wire.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Map keys of the envelope. Keys 11..63 are reserved for optional fields
//  of later minor revisions: a decoder skips them. Keys >= 64 are invalid.
enum {
    K_VERSION = 0, K_KIND = 1, K_ID = 2, K_CORR = 3, K_TO = 4, K_FROM = 5,
    K_DEADLINE = 6, K_PRIORITY = 7, K_TRACE = 8, K_ERROR = 9, K_BODY = 10,
    K_LIMIT = 64
};

//  Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if the
//  bytes there are not one.
static size_t
s_utf8_seq (const uint8_t *s, size_t n)
{
    uint32_t cp;
    size_t len;
    if (s [0] < 0x80)
        return 1;
    else
    if ((s [0] & 0xe0) == 0xc0) { len = 2; cp = s [0] & 0x1f; }
    else
    if ((s [0] & 0xf0) == 0xe0) { len = 3; cp = s [0] & 0x0f; }
    else
    if ((s [0] & 0xf8) == 0xf0) { len = 4; cp = s [0] & 0x07; }
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s [i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s [i] & 0x3f);
    }
    //  Reject overlong forms, surrogates, values past U+10FFFF and the C1
    //  control characters.
    static const uint32_t min_cp [5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (cp < min_cp [len] || (cp >= 0xd800 && cp <= 0xdfff)
    ||  cp > 0x10ffff || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

int
tr_name_check (const char *name, size_t len)
{
    if (!name || len == 0 || len > TR_NAME_MAX)
        return TR_EINVAL;
    const uint8_t *s = (const uint8_t *) name;
    size_t i = 0;
    while (i < len) {
        if (s [i] <= 0x20 || s [i] == 0x7f)
            return TR_EINVAL;           //  controls, space, NUL
        size_t step = s_utf8_seq (s + i, len - i);
        if (!step)
            return TR_EINVAL;
        i += step;
    }
    return TR_OK;
}

static void
s_set_error (tr_envelope_error_t *err, size_t offset, const char *why)
{
    if (err) {
        err->offset = offset;
        snprintf (err->message, sizeof err->message, "%s", why);
    }
}

int
tr_msgpack_check (const void *buf, size_t len, int max_depth,
                  tr_envelope_error_t *err)
{
    tr__mp_t r;
    tr__mp_init (&r, buf, len);
    if (tr__mp_skip (&r, max_depth) == 0 && tr__mp_remaining (&r))
        tr__mp_fail (&r, TR_EMALFORMED, "trailing bytes after the value");
    if (r.error)
        s_set_error (err, r.error_at, r.why);
    return r.error;
}

//  --------------------------------------------------------------------------
//  Encoding

//  Number of map pairs the envelope will hold.
static uint32_t
s_pair_count (const tr_envelope_t *env)
{
    uint32_t n = 5;                     //  version, kind, id, to, from
    n += env->corr != 0;
    n += env->deadline_us != 0;
    n += env->priority != 0;
    n += env->trace != 0;
    n += env->error != 0;
    n += env->body_len != 0;
    return n;
}

static int
s_check_fields (const tr_envelope_t *env)
{
    if (env->kind < TR_KIND_TELL || env->kind > TR_KIND_ERROR
    ||  env->priority < TR_PRIO_LOW || env->priority > TR_PRIO_HIGH)
        return TR_EINVAL;
    if (tr_name_check (env->to, env->to_len))
        return TR_EINVAL;
    if (env->from_len && tr_name_check (env->from, env->from_len))
        return TR_EINVAL;
    bool answer = env->kind == TR_KIND_REPLY || env->kind == TR_KIND_ERROR;
    if (answer != (env->corr != 0))
        return TR_EINVAL;
    if ((env->kind == TR_KIND_ERROR) != (env->error < 0) || env->error > 0)
        return TR_EINVAL;
    if (env->body_len > TR_ENVELOPE_MAX)
        return TR_ETOOBIG;
    if (env->body_len)
        return tr_msgpack_check (env->body, env->body_len,
                                 TR_ENVELOPE_MAX_DEPTH, NULL);
    return TR_OK;
}

//  Packs env at the end of sbuf; body_checked skips the walk of a body
//  already known to be one well-formed msgpack value. On failure sbuf is
//  as it was.
static int
s_pack (const tr_envelope_t *env, msgpack_sbuffer *sbuf, bool body_checked)
{
    tr_envelope_t fields = *env;
    if (body_checked)
        fields.body_len = 0;            //  judged by the caller
    int rc = s_check_fields (&fields);
    if (rc == TR_OK && env->body_len > TR_ENVELOPE_MAX)
        rc = TR_ETOOBIG;
    if (rc)
        return rc;
    size_t start = sbuf->size;
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    //  msgpack-c reports allocation failure through the write callback's
    //  result; collect every result so a failed write is never ignored.
    int bad = msgpack_pack_map (&pk, s_pair_count (env));
    bad |= msgpack_pack_uint8 (&pk, K_VERSION);
    bad |= msgpack_pack_uint8 (&pk, TR_ENVELOPE_VERSION);
    bad |= msgpack_pack_uint8 (&pk, K_KIND);
    bad |= msgpack_pack_uint8 (&pk, (uint8_t) env->kind);
    bad |= msgpack_pack_uint8 (&pk, K_ID);
    bad |= msgpack_pack_uint64 (&pk, env->id);
    if (env->corr) {
        bad |= msgpack_pack_uint8 (&pk, K_CORR);
        bad |= msgpack_pack_uint64 (&pk, env->corr);
    }
    bad |= msgpack_pack_uint8 (&pk, K_TO);
    bad |= msgpack_pack_str_with_body (&pk, env->to, env->to_len);
    bad |= msgpack_pack_uint8 (&pk, K_FROM);
    bad |= msgpack_pack_str_with_body (&pk, env->from? env->from: "", env->from_len);
    if (env->deadline_us) {
        bad |= msgpack_pack_uint8 (&pk, K_DEADLINE);
        bad |= msgpack_pack_uint64 (&pk, env->deadline_us);
    }
    if (env->priority) {
        bad |= msgpack_pack_uint8 (&pk, K_PRIORITY);
        bad |= msgpack_pack_int (&pk, env->priority);
    }
    if (env->trace) {
        bad |= msgpack_pack_uint8 (&pk, K_TRACE);
        bad |= msgpack_pack_uint64 (&pk, env->trace);
    }
    if (env->error) {
        bad |= msgpack_pack_uint8 (&pk, K_ERROR);
        bad |= msgpack_pack_int32 (&pk, env->error);
    }
    if (env->body_len) {
        bad |= msgpack_pack_uint8 (&pk, K_BODY);
        //  The body is already msgpack: append it as it is.
        bad |= msgpack_sbuffer_write (sbuf, (const char *) env->body, env->body_len);
    }
    if (!bad && sbuf->size - start > TR_ENVELOPE_MAX)
        rc = TR_ETOOBIG;
    else
    if (bad)
        rc = TR_ENOMEM;
    if (rc)
        sbuf->size = start;
    return rc;
}

int
tr_envelope_encode (const tr_envelope_t *env, uint8_t **buf_p, size_t *len_p)
{
    if (!env || !buf_p || !len_p)
        return TR_EINVAL;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    int rc = s_pack (env, &sbuf, false);
    if (rc) {
        msgpack_sbuffer_destroy (&sbuf);
        return rc;
    }
    *len_p = sbuf.size;
    *buf_p = (uint8_t *) msgpack_sbuffer_release (&sbuf);
    return TR_OK;
}

int
tr__envelope_append (const tr_envelope_t *env, struct msgpack_sbuffer *sbuf)
{
    return env && sbuf? s_pack (env, sbuf, true): TR_EINVAL;
}

//  --------------------------------------------------------------------------
//  Decoding

//  Field values as read, before their meaning is checked: the version
//  must be judged before anything else, so that a newer envelope reads as
//  TR_EVERSION rather than as malformed.
typedef struct {
    uint64_t seen;                      //  bit k: key k was present
    uint64_t version, kind;
    int64_t priority, error;
    const char *names [2];              //  to, from
    uint32_t name_lens [2];
    size_t at [K_BODY + 1];             //  offset of each field's value
} s_raw_t;

//  First pass: records where field `key` starts and skips its value, of
//  any type, within the nesting limit. Types are judged later, after the
//  version. Returns 0 or -1 (error in r).
static int
s_skip_field (tr__mp_t *r, uint64_t key, s_raw_t *raw, tr_envelope_t *env)
{
    const uint8_t *at = r->p;
    if (key <= K_BODY)
        raw->at [key] = (size_t) (at - r->start);
    if (tr__mp_skip (r, TR_ENVELOPE_MAX_DEPTH))
        return -1;
    if (key == K_BODY) {
        env->body = at;
        env->body_len = (size_t) (r->p - at);
    }
    return 0;
}

//  Second pass: reads field `key` (0..9), found at its recorded offset,
//  with the type the key requires. Returns 0 or -1 (error in r).
static int
s_read_field (tr__mp_t *r, int key, s_raw_t *raw, tr_envelope_t *env)
{
    r->p = r->start + raw->at [key];
    switch (key) {
        case K_VERSION:  return tr__mp_uint (r, &raw->version);
        case K_KIND:     return tr__mp_uint (r, &raw->kind);
        case K_ID:       return tr__mp_uint (r, &env->id);
        case K_CORR:     return tr__mp_uint (r, &env->corr);
        case K_DEADLINE: return tr__mp_uint (r, &env->deadline_us);
        case K_TRACE:    return tr__mp_uint (r, &env->trace);
        case K_PRIORITY: return tr__mp_int (r, &raw->priority);
        case K_ERROR:    return tr__mp_int (r, &raw->error);
        case K_TO:
        case K_FROM:
            return tr__mp_str (r, &raw->names [key == K_FROM],
                               &raw->name_lens [key == K_FROM]);
        default:                    //  the body, and reserved keys: skipped
            return 0;
    }
}

//  Fails at the offset of field `key`.
static int
s_fail_at (tr__mp_t *r, const s_raw_t *raw, int key, int error, const char *why)
{
    r->p = r->start + raw->at [key];
    return tr__mp_fail (r, error, why);
}

static bool
s_has (const s_raw_t *raw, int key)
{
    return (raw->seen >> key) & 1;
}

//  Checks what the fields mean, version first, and fills env.
static int
s_check_decoded (tr__mp_t *r, s_raw_t *raw, tr_envelope_t *env)
{
    if (!s_has (raw, K_VERSION))
        return tr__mp_fail (r, TR_EMALFORMED, "missing field 0 (version)");
    if (s_read_field (r, K_VERSION, raw, env))
        return -1;
    if (raw->version != TR_ENVELOPE_VERSION)
        return s_fail_at (r, raw, K_VERSION, TR_EVERSION, "unsupported envelope version");
    //  Only now that the version is known are the other types judged.
    for (int key = K_KIND; key < K_BODY; key++)
        if (s_has (raw, key) && s_read_field (r, key, raw, env))
            return -1;
    r->p = r->end;                      //  where the first pass ended
    if (!s_has (raw, K_KIND) || !s_has (raw, K_ID) || !s_has (raw, K_TO))
        return tr__mp_fail (r, TR_EMALFORMED, "missing a required field (1 kind, 2 id or 4 to)");
    if (raw->kind < TR_KIND_TELL || raw->kind > TR_KIND_ERROR)
        return s_fail_at (r, raw, K_KIND, TR_EMALFORMED, "kind must be 1 (tell) to 4 (error)");
    env->kind = (int) raw->kind;
    if (raw->priority < TR_PRIO_LOW || raw->priority > TR_PRIO_HIGH)
        return s_fail_at (r, raw, K_PRIORITY, TR_EMALFORMED, "priority must be -1, 0 or 1");
    env->priority = (int) raw->priority;
    if (tr_name_check (raw->names [0], raw->name_lens [0]))
        return s_fail_at (r, raw, K_TO, TR_EMALFORMED, "'to' is not a valid actor name");
    if (raw->name_lens [1] && tr_name_check (raw->names [1], raw->name_lens [1]))
        return s_fail_at (r, raw, K_FROM, TR_EMALFORMED, "'from' is not a valid actor name");
    env->to = raw->names [0];
    env->to_len = raw->name_lens [0];
    env->from = raw->names [1]? raw->names [1]: "";
    env->from_len = raw->name_lens [1];
    bool answer = env->kind == TR_KIND_REPLY || env->kind == TR_KIND_ERROR;
    if (answer && !env->corr)
        return tr__mp_fail (r, TR_EMALFORMED, "a reply or error needs a non-zero corr (3)");
    if (!answer && s_has (raw, K_CORR))
        return s_fail_at (r, raw, K_CORR, TR_EMALFORMED, "only replies and errors carry corr (3)");
    if (env->kind == TR_KIND_ERROR && !s_has (raw, K_ERROR))
        return tr__mp_fail (r, TR_EMALFORMED, "an error needs an error code (9)");
    if (env->kind != TR_KIND_ERROR && s_has (raw, K_ERROR))
        return s_fail_at (r, raw, K_ERROR, TR_EMALFORMED, "only errors carry an error code (9)");
    if (s_has (raw, K_ERROR) && (raw->error >= 0 || raw->error < INT32_MIN))
        return s_fail_at (r, raw, K_ERROR, TR_EMALFORMED, "error must be a negative 32-bit code");
    env->error = (int32_t) raw->error;
    return 0;
}

int
tr_envelope_decode (const uint8_t *buf, size_t len, tr_envelope_t *env,
                    tr_envelope_error_t *err)
{
    if (!env || (!buf && len))
        return TR_EINVAL;
    memset (env, 0, sizeof *env);
    if (len > TR_ENVELOPE_MAX) {
        s_set_error (err, 0, "envelope larger than the limit");
        return TR_ETOOBIG;
    }
    tr__mp_t r;
    tr__mp_init (&r, buf, len);
    s_raw_t raw = { 0 };
    uint32_t pairs;
    if (tr__mp_map (&r, &pairs) == 0) {
        for (uint32_t i = 0; i < pairs; i++) {
            uint64_t key;
            const uint8_t *key_at = r.p;
            if (tr__mp_uint (&r, &key))
                break;
            if (key >= K_LIMIT || s_has (&raw, (int) key)) {
                r.p = key_at;
                tr__mp_fail (&r, TR_EMALFORMED, key >= K_LIMIT?
                             "field key must be below 64":
                             "duplicate field key");
                break;
            }
            raw.seen |= (uint64_t) 1 << key;
            if (s_skip_field (&r, key, &raw, env))
                break;
        }
    }
    //  Trailing bytes first: they say the map's count was wrong, which
    //  explains better than whatever field check would fail next.
    if (!r.error && tr__mp_remaining (&r))
        tr__mp_fail (&r, TR_EMALFORMED, "trailing bytes after the envelope");
    if (!r.error)
        s_check_decoded (&r, &raw, env);
    if (r.error) {
        s_set_error (err, r.error_at, r.why);
        memset (env, 0, sizeof *env);
        return r.error;
    }
    return TR_OK;
}
