/*  tr_body.h - small msgpack bodies without a buffer to manage.

    Most control messages carry one number or one short string. These
    helpers pack such a body into a tr_body_t on the stack (with
    msgpack-c's packer) and read one back out of a message (with troupe's
    bounded reader, which never allocates). Anything richer is built with
    msgpack-c directly: a body is any msgpack value.

        tr_body_t b;
        tr_body_uint (&b, 42);
        tr_tell (node, "counter", b.data, b.size, NULL);
        ...
        uint64_t n;
        if (tr_msg_uint (msg, &n) == TR_OK) ...
*/
#ifndef TR_BODY_H_INCLUDED
#define TR_BODY_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Room for a string of up to 250 bytes, or any number.
#define TR_BODY_SMALL 256

typedef struct {
    size_t size;                        //  bytes used in data
    char data [TR_BODY_SMALL];
} tr_body_t;

//  Packs an unsigned integer. Returns TR_OK (it always fits) or TR_EINVAL
//  for a NULL body.
TR_EXPORT int
    tr_body_uint (tr_body_t *body, uint64_t value);

//  Packs a string of len bytes (a msgpack str; not checked as UTF-8).
//  Returns TR_OK, TR_EINVAL for NULL arguments, or TR_ETOOBIG if it does
//  not fit in TR_BODY_SMALL.
TR_EXPORT int
    tr_body_str (tr_body_t *body, const char *text, size_t len);

//  Reads a message's body as an unsigned integer. Returns TR_OK, or
//  TR_EMALFORMED if the body is anything else (including empty).
TR_EXPORT int
    tr_msg_uint (const tr_msg_t *msg, uint64_t *value);

//  Reads a message's body as a string: *text points into the message
//  (valid as long as it, not NUL-terminated), *len is its length.
//  Returns TR_OK or TR_EMALFORMED.
TR_EXPORT int
    tr_msg_str (const tr_msg_t *msg, const char **text, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
