/*  tr_mp.h - a bounded, allocation-free msgpack reader (internal).

    Why not msgpack-c's unpacker for input from outside: it allocates for
    an array or map count before the elements arrive (five bytes can ask
    for gigabytes), reports excess nesting as out-of-memory, and accepts
    trailing bytes and duplicate keys. This reader walks the bytes with a
    cursor instead: each length and count is checked against the bytes
    that remain (every element needs at least one byte), nesting has a
    hard limit, and nothing is allocated, so any byte string costs at most
    time linear in its length. Encoding still uses msgpack-c's packer.

    On failure every function returns -1 and records the error code
    (TR_EMALFORMED or TR_EDEPTH), the offset and a reason in the cursor;
    the first error sticks.
*/
#ifndef TR_MP_H_INCLUDED
#define TR_MP_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct {
    const uint8_t *start;       //  first byte of the input
    const uint8_t *p;           //  next byte to read
    const uint8_t *end;         //  one past the last byte
    int error;                  //  0, or the first tr_error_t met
    size_t error_at;            //  offset of that error
    const char *why;            //  static reason text
} tr__mp_t;

//  Starts a cursor over len bytes at buf (not copied).
void
    tr__mp_init (tr__mp_t *self, const void *buf, size_t len);

//  Bytes not read yet.
size_t
    tr__mp_remaining (const tr__mp_t *self);

//  Records a failure at the current position (if none was recorded yet)
//  and returns -1.
int
    tr__mp_fail (tr__mp_t *self, int error, const char *why);

//  Reads a map header; stores its number of pairs in *n.
int
    tr__mp_map (tr__mp_t *self, uint32_t *n);

//  Reads an array header; stores its number of elements in *n.
int
    tr__mp_array (tr__mp_t *self, uint32_t *n);

//  Reads an unsigned integer (any msgpack integer encoding of a value
//  >= 0).
int
    tr__mp_uint (tr__mp_t *self, uint64_t *value);

//  Reads a signed integer that fits in int64_t.
int
    tr__mp_int (tr__mp_t *self, int64_t *value);

//  Reads a string; *str points into the input, *len is its byte length.
int
    tr__mp_str (tr__mp_t *self, const char **str, uint32_t *len);

//  Skips one value of any type. Containers may nest max_depth deep (a
//  scalar has depth 0, [] and [1] depth 1, [[1]] depth 2).
int
    tr__mp_skip (tr__mp_t *self, int max_depth);

//  True if the next byte is nil (does not consume it).
bool
    tr__mp_peek_nil (const tr__mp_t *self);

#endif
