/*  tr_json.h - msgpack values written as JSON, for `--json` output.

    Maps become objects (keys that are not strings are written as JSON
    strings of their value), arrays arrays, strings strings (escaped;
    bytes that are not valid UTF-8 become U+FFFD), integers and floats
    numbers (NaN and infinities, which JSON lacks, become null), nil
    null, binary data a base64 string, extension values null.
*/
#ifndef TR_JSON_H_INCLUDED
#define TR_JSON_H_INCLUDED

#include <msgpack.h>
#include <stdio.h>

//  Writes one msgpack object as JSON to out, without a newline. `indent`
//  > 0 pretty-prints with that many spaces per level; 0 writes one line.
//  Returns 0, or -1 if writing failed.
int
    tr_json_write (FILE *out, const msgpack_object *obj, int indent);

//  Decodes `size` bytes holding exactly one msgpack value and writes it as
//  JSON followed by a newline. Returns 0, or -1 if the bytes are not one
//  whole msgpack value (nothing is written then) or writing failed.
int
    tr_json_write_msgpack (FILE *out, const void *data, size_t size, int indent);

#endif
