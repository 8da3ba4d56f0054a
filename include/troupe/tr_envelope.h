/*  tr_envelope.h - the message envelope on the wire (protocols/1-envelope.md).

    An envelope is one msgpack map with small integer keys: version, kind,
    ids, names, deadline, priority, trace id, error code, and the body, a
    msgpack value carried as is. This codec is what every message that
    leaves a process goes through, so the decoder treats its input as
    hostile: it never allocates, checks every length and count against the
    bytes that remain before it trusts them, caps nesting, rejects
    duplicate keys and trailing bytes, and says exactly what was wrong and
    where.
*/
#ifndef TR_ENVELOPE_H_INCLUDED
#define TR_ENVELOPE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TR_ENVELOPE_VERSION     1
//  Largest encoded envelope accepted by the decoder.
#define TR_ENVELOPE_MAX         (17u * 1024u * 1024u)
//  Deepest nesting inside the body (the body itself is level 1).
#define TR_ENVELOPE_MAX_DEPTH   32
//  Longest actor name, in bytes.
#define TR_NAME_MAX             255

//  The fields of an envelope. Strings and the body are not copied: after
//  tr_envelope_decode they point into the decoded buffer, and are not
//  NUL-terminated (use the lengths).
typedef struct {
    int kind;                   //  tr_kind_t (1..4), or a runtime kind
    int priority;               //  tr_priority_t
    uint64_t id;                //  message id, unique per sender
    uint64_t corr;              //  id of the ask answered, or 0
    uint64_t trace;             //  trace id, or 0
    uint64_t deadline_us;       //  Unix time in microseconds, 0 = none
    int32_t error;              //  error code for TR_KIND_ERROR, else 0
    const char *to;             //  receiver's name (required)
    size_t to_len;
    const char *from;           //  sender's name ("" if anonymous)
    size_t from_len;
    const uint8_t *body;        //  one msgpack value, or NULL for none
    size_t body_len;
} tr_envelope_t;

//  Where and why a decode failed.
typedef struct {
    size_t offset;              //  byte offset of the problem
    char message [120];         //  what was wrong, in words
} tr_envelope_error_t;

//  Checks that a name is valid for an actor: 1 to TR_NAME_MAX bytes of
//  valid UTF-8 with no control characters and no spaces. Returns TR_OK or
//  TR_EINVAL.
TR_EXPORT int
    tr_name_check (const char *name, size_t len);

//  Checks that buf holds exactly one msgpack value, nested no deeper than
//  max_depth, with every length and count consistent with the bytes
//  present and no bytes after it. Returns TR_OK, TR_EMALFORMED or
//  TR_EDEPTH; if err is not NULL it says where and why.
TR_EXPORT int
    tr_msgpack_check (const void *buf, size_t len, int max_depth,
                      tr_envelope_error_t *err);

//  Encodes an envelope. On TR_OK, *buf_p holds a malloc'd buffer of
//  *len_p bytes that the caller frees with free(). Returns TR_EINVAL for
//  an invalid name or kind, TR_EMALFORMED/TR_EDEPTH if the body is not one
//  valid msgpack value, TR_ETOOBIG past TR_ENVELOPE_MAX, TR_ENOMEM.
TR_EXPORT int
    tr_envelope_encode (const tr_envelope_t *env, uint8_t **buf_p,
                        size_t *len_p);

//  Decodes buf into *env (pointers into buf). Returns TR_OK, or
//  TR_ETOOBIG (len > TR_ENVELOPE_MAX), TR_EVERSION (a version this
//  decoder does not speak), TR_EDEPTH, or TR_EMALFORMED (anything else:
//  truncation, wrong types, missing or duplicate fields, invalid names,
//  trailing bytes). On failure *env is zeroed and err (if not NULL)
//  explains. Never allocates.
TR_EXPORT int
    tr_envelope_decode (const uint8_t *buf, size_t len, tr_envelope_t *env,
                        tr_envelope_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
