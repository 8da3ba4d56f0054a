/*  tr_json.c - msgpack values written as JSON; see tr_json.h.  */

#include "tr_json.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

//  Bytes of the UTF-8 sequence that starts at s (at most len bytes), or 0
//  if it is not a valid sequence (overlong forms, surrogates and values
//  past U+10FFFF are not valid).
static size_t
s_utf8_length (const unsigned char *s, size_t len)
{
    unsigned char c = s [0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else
    if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else
    if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s [i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s [i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
    ||  (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

static void
s_string (FILE *out, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *) text;
    fputc ('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = s [i];
        if (c == '"' || c == '\\') {
            fputc ('\\', out);
            fputc (c, out);
            i++;
        }
        else
        if (c < 0x20) {
            const char *named = c == '\n'? "\\n": c == '\t'? "\\t": c == '\r'? "\\r": NULL;
            if (named)
                fputs (named, out);
            else
                fprintf (out, "\\u%04x", c);
            i++;
        }
        else {
            size_t n = s_utf8_length (s + i, len - i);
            if (n == 0) {
                fputs ("\\ufffd", out);
                i++;
            }
            else {
                fwrite (s + i, 1, n, out);
                i += n;
            }
        }
    }
    fputc ('"', out);
}

static void
s_base64 (FILE *out, const unsigned char *data, size_t len)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc ('"', out);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t) data [i] << 16;
        if (i + 1 < len)
            v |= (uint32_t) data [i + 1] << 8;
        if (i + 2 < len)
            v |= data [i + 2];
        fputc (alphabet [(v >> 18) & 63], out);
        fputc (alphabet [(v >> 12) & 63], out);
        fputc (i + 1 < len? alphabet [(v >> 6) & 63]: '=', out);
        fputc (i + 2 < len? alphabet [v & 63]: '=', out);
    }
    fputc ('"', out);
}

static void
s_newline (FILE *out, int indent, int depth)
{
    if (indent <= 0)
        return;
    fputc ('\n', out);
    for (int i = 0; i < indent * depth; i++)
        fputc (' ', out);
}

static void s_value (FILE *out, const msgpack_object *obj, int indent, int depth);

//  A map key: strings as they are, anything else as the JSON string of
//  its value.
static void
s_key (FILE *out, const msgpack_object *key)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        s_string (out, key->via.str.ptr, key->via.str.size);
        return;
    }
    char buf [64];
    if (key->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf (buf, sizeof buf, "%llu", (unsigned long long) key->via.u64);
    else
    if (key->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf (buf, sizeof buf, "%lld", (long long) key->via.i64);
    else
    if (key->type == MSGPACK_OBJECT_BOOLEAN)
        snprintf (buf, sizeof buf, "%s", key->via.boolean? "true": "false");
    else
    if (key->type == MSGPACK_OBJECT_NIL)
        snprintf (buf, sizeof buf, "null");
    else
    if (key->type == MSGPACK_OBJECT_FLOAT32 || key->type == MSGPACK_OBJECT_FLOAT64)
        snprintf (buf, sizeof buf, "%.17g", key->via.f64);
    else
        snprintf (buf, sizeof buf, "(key of type %d)", (int) key->type);
    s_string (out, buf, strlen (buf));
}

static void
s_value (FILE *out, const msgpack_object *obj, int indent, int depth)
{
    switch (obj->type) {
        case MSGPACK_OBJECT_NIL:
            fputs ("null", out);
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            fputs (obj->via.boolean? "true": "false", out);
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            fprintf (out, "%llu", (unsigned long long) obj->via.u64);
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            fprintf (out, "%lld", (long long) obj->via.i64);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            if (isfinite (obj->via.f64))
                fprintf (out, "%.17g", obj->via.f64);
            else
                fputs ("null", out);
            break;
        case MSGPACK_OBJECT_STR:
            s_string (out, obj->via.str.ptr, obj->via.str.size);
            break;
        case MSGPACK_OBJECT_BIN:
            s_base64 (out, (const unsigned char *) obj->via.bin.ptr, obj->via.bin.size);
            break;
        case MSGPACK_OBJECT_ARRAY:
            fputc ('[', out);
            for (uint32_t i = 0; i < obj->via.array.size; i++) {
                if (i)
                    fputc (',', out);
                s_newline (out, indent, depth + 1);
                s_value (out, &obj->via.array.ptr [i], indent, depth + 1);
            }
            if (obj->via.array.size)
                s_newline (out, indent, depth);
            fputc (']', out);
            break;
        case MSGPACK_OBJECT_MAP:
            fputc ('{', out);
            for (uint32_t i = 0; i < obj->via.map.size; i++) {
                if (i)
                    fputc (',', out);
                s_newline (out, indent, depth + 1);
                s_key (out, &obj->via.map.ptr [i].key);
                fputs (indent > 0? ": ": ":", out);
                s_value (out, &obj->via.map.ptr [i].val, indent, depth + 1);
            }
            if (obj->via.map.size)
                s_newline (out, indent, depth);
            fputc ('}', out);
            break;
        default:
            fputs ("null", out);
            break;
    }
}

int
tr_json_write (FILE *out, const msgpack_object *obj, int indent)
{
    s_value (out, obj, indent, 0);
    return ferror (out)? -1: 0;
}

int
tr_json_write_msgpack (FILE *out, const void *data, size_t size, int indent)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&result, (const char *) data, size, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  offset == size) {
        rc = tr_json_write (out, &result.data, indent);
        fputc ('\n', out);
        if (ferror (out))
            rc = -1;
    }
    msgpack_unpacked_destroy (&result);
    return rc;
}
