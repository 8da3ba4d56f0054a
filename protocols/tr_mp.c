/*  tr_mp.c - bounded msgpack reader; see tr_mp.h for why it exists.

    Type bytes, from the msgpack specification:
      00-7f positive fixint   80-8f fixmap    90-9f fixarray  a0-bf fixstr
      c0 nil  c1 (never used)  c2/c3 false/true
      c4-c6 bin 8/16/32       c7-c9 ext 8/16/32    ca/cb float 32/64
      cc-cf uint 8..64        d0-d3 int 8..64      d4-d8 fixext 1..16
      d9-db str 8/16/32       dc/dd array 16/32    de/df map 16/32
      e0-ff negative fixint
*/

#include "tr_mp.h"
#include "troupe/tr_error.h"

#include <string.h>

void
tr__mp_init (tr__mp_t *self, const void *buf, size_t len)
{
    //  A NULL buffer reads as empty; point at a real byte so that no
    //  arithmetic is ever done on a null pointer.
    static const uint8_t s_nothing = 0;
    if (!buf) {
        buf = &s_nothing;
        len = 0;
    }
    self->start = (const uint8_t *) buf;
    self->p = self->start;
    self->end = self->start + len;
    self->error = 0;
    self->error_at = 0;
    self->why = NULL;
}

size_t
tr__mp_remaining (const tr__mp_t *self)
{
    return (size_t) (self->end - self->p);
}

int
tr__mp_fail (tr__mp_t *self, int error, const char *why)
{
    if (!self->error) {
        self->error = error;
        self->error_at = (size_t) (self->p - self->start);
        self->why = why;
    }
    return -1;
}

//  Reads a big-endian unsigned integer of width bytes (1, 2, 4 or 8).
static int
s_be (tr__mp_t *self, size_t width, uint64_t *value)
{
    if (tr__mp_remaining (self) < width)
        return tr__mp_fail (self, TR_EMALFORMED, "truncated integer or length");
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | self->p [i];
    self->p += width;
    *value = v;
    return 0;
}

//  Consumes the type byte; fails on empty input.
static int
s_type (tr__mp_t *self, uint8_t *type)
{
    if (self->p >= self->end)
        return tr__mp_fail (self, TR_EMALFORMED, "unexpected end of input");
    *type = *self->p++;
    return 0;
}

//  Skips len payload bytes, which must be present.
static int
s_advance (tr__mp_t *self, uint64_t len)
{
    if (len > tr__mp_remaining (self))
        return tr__mp_fail (self, TR_EMALFORMED, "length runs past the end");
    self->p += len;
    return 0;
}

//  Reads a container header: fixtype range [fix_lo, fix_lo + 15], or the
//  16- and 32-bit forms `t16` and `t16 + 1`. `per` is the number of
//  values per element (1 for arrays, 2 for maps), each at least a byte.
static int
s_container (tr__mp_t *self, uint8_t fix_lo, uint8_t t16, unsigned per,
             const char *expected, uint32_t *n)
{
    uint8_t type;
    uint64_t count;
    if (s_type (self, &type))
        return -1;
    if (type >= fix_lo && type <= fix_lo + 15)
        count = type & 0x0f;
    else
    if (type == t16 || type == t16 + 1) {
        if (s_be (self, type == t16? 2: 4, &count))
            return -1;
    }
    else {
        self->p--;
        return tr__mp_fail (self, TR_EMALFORMED, expected);
    }
    if (count > tr__mp_remaining (self) / per)
        return tr__mp_fail (self, TR_EMALFORMED, "container count exceeds the bytes left");
    *n = (uint32_t) count;
    return 0;
}

int
tr__mp_map (tr__mp_t *self, uint32_t *n)
{
    return s_container (self, 0x80, 0xde, 2, "expected a map", n);
}

int
tr__mp_array (tr__mp_t *self, uint32_t *n)
{
    return s_container (self, 0x90, 0xdc, 1, "expected an array", n);
}

//  Reads any integer encoding into a sign flag and a magnitude.
static int
s_integer (tr__mp_t *self, bool *negative, uint64_t *magnitude)
{
    uint8_t type;
    uint64_t raw;
    if (s_type (self, &type))
        return -1;
    *negative = false;
    if (type <= 0x7f) {
        *magnitude = type;
        return 0;
    }
    if (type >= 0xe0) {
        *negative = true;
        *magnitude = (uint64_t) (256 - type);
        return 0;
    }
    if (type >= 0xcc && type <= 0xcf) {
        if (s_be (self, (size_t) 1 << (type - 0xcc), &raw))
            return -1;
        *magnitude = raw;
        return 0;
    }
    if (type >= 0xd0 && type <= 0xd3) {
        size_t width = (size_t) 1 << (type - 0xd0);
        if (s_be (self, width, &raw))
            return -1;
        //  Sign-extend from width bytes.
        unsigned shift = (unsigned) (64 - 8 * width);
        int64_t v = (int64_t) (raw << shift) >> shift;
        *negative = v < 0;
        *magnitude = v < 0? (uint64_t) 0 - (uint64_t) v: (uint64_t) v;
        return 0;
    }
    self->p--;
    return tr__mp_fail (self, TR_EMALFORMED, "expected an integer");
}

int
tr__mp_uint (tr__mp_t *self, uint64_t *value)
{
    bool negative;
    uint64_t magnitude;
    const uint8_t *at = self->p;
    if (s_integer (self, &negative, &magnitude))
        return -1;
    if (negative && magnitude) {
        self->p = at;
        return tr__mp_fail (self, TR_EMALFORMED, "expected a non-negative integer");
    }
    *value = magnitude;
    return 0;
}

int
tr__mp_int (tr__mp_t *self, int64_t *value)
{
    bool negative;
    uint64_t magnitude;
    const uint8_t *at = self->p;
    if (s_integer (self, &negative, &magnitude))
        return -1;
    if (negative)
        *value = (int64_t) ((uint64_t) 0 - magnitude);
    else
    if (magnitude > (uint64_t) INT64_MAX) {
        self->p = at;
        return tr__mp_fail (self, TR_EMALFORMED, "integer out of range");
    }
    else
        *value = (int64_t) magnitude;
    return 0;
}

int
tr__mp_str (tr__mp_t *self, const char **str, uint32_t *len)
{
    uint8_t type;
    uint64_t size;
    if (s_type (self, &type))
        return -1;
    if ((type & 0xe0) == 0xa0)
        size = type & 0x1f;
    else
    if (type >= 0xd9 && type <= 0xdb) {
        if (s_be (self, (size_t) 1 << (type - 0xd9), &size))
            return -1;
    }
    else {
        self->p--;
        return tr__mp_fail (self, TR_EMALFORMED, "expected a string");
    }
    const uint8_t *data = self->p;
    if (s_advance (self, size))
        return -1;
    *str = (const char *) data;
    *len = (uint32_t) size;
    return 0;
}

bool
tr__mp_peek_nil (const tr__mp_t *self)
{
    return self->p < self->end && *self->p == 0xc0;
}

//  Payload size of the fixed-size scalar types c0-d8 that carry no length
//  field (nil, bools, floats, ints, fixext incl. its type byte); -1 for
//  the others.
static int
s_fixed_payload (uint8_t type)
{
    switch (type) {
        case 0xc0: case 0xc2: case 0xc3:
            return 0;
        case 0xca: return 4;
        case 0xcb: return 8;
        case 0xcc: case 0xd0: return 1;
        case 0xcd: case 0xd1: return 2;
        case 0xce: case 0xd2: return 4;
        case 0xcf: case 0xd3: return 8;
        case 0xd4: return 2;
        case 0xd5: return 3;
        case 0xd6: return 5;
        case 0xd7: return 9;
        case 0xd8: return 17;
        default:   return -1;
    }
}

//  Skips count elements of a container (pairs already doubled).
static int
s_skip_elements (tr__mp_t *self, uint64_t count, int max_depth)
{
    if (count > tr__mp_remaining (self))
        return tr__mp_fail (self, TR_EMALFORMED, "container count exceeds the bytes left");
    if (max_depth <= 0)
        return tr__mp_fail (self, TR_EDEPTH, "nesting deeper than allowed");
    for (uint64_t i = 0; i < count; i++)
        if (tr__mp_skip (self, max_depth - 1))
            return -1;
    return 0;
}

int
tr__mp_skip (tr__mp_t *self, int max_depth)
{
    uint8_t type;
    uint64_t size;
    if (s_type (self, &type))
        return -1;
    if (type <= 0x7f || type >= 0xe0)
        return 0;                               //  fixints
    if (type <= 0x8f)
        return s_skip_elements (self, 2 * (uint64_t) (type & 0x0f), max_depth);
    if (type <= 0x9f)
        return s_skip_elements (self, type & 0x0f, max_depth);
    if (type <= 0xbf)
        return s_advance (self, type & 0x1f);   //  fixstr
    if (type == 0xc1) {
        self->p--;
        return tr__mp_fail (self, TR_EMALFORMED, "byte 0xc1 is never used in msgpack");
    }
    int fixed = s_fixed_payload (type);
    if (fixed >= 0)
        return s_advance (self, (uint64_t) fixed);
    switch (type) {
        case 0xc4: case 0xc5: case 0xc6:        //  bin
            if (s_be (self, (size_t) 1 << (type - 0xc4), &size))
                return -1;
            return s_advance (self, size);
        case 0xc7: case 0xc8: case 0xc9:        //  ext: length, type, data
            if (s_be (self, (size_t) 1 << (type - 0xc7), &size))
                return -1;
            return s_advance (self, size + 1);
        case 0xd9: case 0xda: case 0xdb:        //  str
            if (s_be (self, (size_t) 1 << (type - 0xd9), &size))
                return -1;
            return s_advance (self, size);
        case 0xdc: case 0xdd:                   //  array 16/32
            if (s_be (self, type == 0xdc? 2: 4, &size))
                return -1;
            return s_skip_elements (self, size, max_depth);
        default:                                //  0xde, 0xdf: map 16/32
            if (s_be (self, type == 0xde? 2: 4, &size))
                return -1;
            return s_skip_elements (self, 2 * size, max_depth);
    }
}
