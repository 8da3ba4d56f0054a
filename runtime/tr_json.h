/*  tr_json.h - JSON and msgpack, both ways (internal): msgpack values
    written as JSON (the command line's `--json` output and replies, the
    bodies that built-in agents send to processes and HTTP endpoints),
    and JSON text read into msgpack (bodies and values given as
    arguments, answers of processes and HTTP endpoints). Compiled into
    the library and into the troupe program (the library exports no
    tr__ symbols).

    Writing. Maps become objects (keys that are not strings are written
    as JSON strings of their value), arrays arrays, strings strings
    (escaped; bytes that are not valid UTF-8 become U+FFFD), integers
    numbers, floats numbers that always show a '.' or an exponent (so
    that they read back as floats: 1.0, not 1; NaN and infinities, which
    JSON lacks, become null), nil null, binary data a base64 string,
    extension values null.

    Reading. tr__json_parse takes exactly one JSON value (RFC 8259) and
    nothing else but whitespace around it, and refuses anything the RFC
    does not allow: no comments, no trailing commas, no single quotes,
    no leading zeros, no NaN, strings of valid UTF-8 only, with control
    characters escaped and \u escapes of UTF-16 surrogates only in
    pairs. It also refuses what it could not carry faithfully: numbers
    beyond the range of a double, objects with the same key twice (also
    when spelled differently, "a" and "\u0061"), nesting deeper than
    TR__JSON_MAX_DEPTH, input past TR__JSON_MAX_SIZE. The msgpack it makes:
    objects maps with string keys, in the input's order; arrays arrays;
    integers (no fraction, no exponent) within uint64 or int64 as
    msgpack integers in their smallest form, -0 as 0; every other number
    a float64; strings, true, false and null as themselves. Headers are
    always the smallest form, so the same JSON always gives the same
    bytes, and parse, write, parse gives those bytes again.

    The input is untrusted (tests/fuzz/tr_json_fuzz.c fuzzes it): its
    cost is linear in its size, times log for objects' duplicate checks,
    and the recursion is bounded by the depth limit.
*/
#ifndef TR_JSON_H_INCLUDED
#define TR_JSON_H_INCLUDED

#include <msgpack.h>
#include <stdio.h>

//  Deepest nesting of arrays and objects (as for message bodies), and the
//  largest input, in bytes.
#define TR__JSON_MAX_DEPTH   32
#define TR__JSON_MAX_SIZE    (16u * 1024u * 1024u)

//  Where and why a parse failed.
typedef struct {
    size_t offset;                  //  bytes from the start of the input
    int line;                       //  from 1
    int column;                     //  from 1, in characters of the line
    char message [128];             //  e.g. "expected ',' or ']' after an element"
} tr__json_error_t;

//  Writes one msgpack object as JSON to out, without a newline. `indent`
//  > 0 pretty-prints with that many spaces per level; 0 writes one line.
//  Returns 0, or -1 if writing failed.
int
    tr__json_write (FILE *out, const msgpack_object *obj, int indent);

//  Decodes `size` bytes holding exactly one msgpack value and writes it as
//  JSON followed by a newline. Returns 0, or -1 if the bytes are not one
//  whole msgpack value (nothing is written then) or writing failed.
int
    tr__json_write_msgpack (FILE *out, const void *data, size_t size, int indent);

//  Writes one msgpack value (exactly `size` bytes) as one line of JSON
//  (no newline) into a malloc'd, NUL-terminated buffer owned by the
//  caller: *text_p, its length (without the NUL) in *len_p. Returns 0, or
//  -1 if the bytes are not one whole msgpack value or memory ran out
//  (nothing is allocated then).
int
    tr__json_from_msgpack (const void *data, size_t size, char **text_p, size_t *len_p);

//  Parses `len` bytes of text as one JSON value into msgpack. On success
//  returns 0 and stores a malloc'd buffer, owned by the caller, in *data_p
//  and its size in *size_p. On failure returns -1, allocates nothing, and
//  fills *err (if not NULL) with the first problem found and its place.
int
    tr__json_parse (const char *text, size_t len, char **data_p, size_t *size_p,
                   tr__json_error_t *err);

//  Formats err as "LINE:COLUMN: MESSAGE" into buf; returns buf.
const char *
    tr__json_error_format (const tr__json_error_t *err, char *buf, size_t size);

#endif
