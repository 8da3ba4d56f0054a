/*  tr_json.c - msgpack values written as JSON, and JSON text read into
    msgpack; see tr_json.h.
*/

#include "tr_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio_ext.h>
#include <stdlib.h>
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

//  A float in the fewest digits that read back as the same double, with
//  ".0" added when it would otherwise read back as an integer.
static void
s_double (FILE *out, double d)
{
    if (!isfinite (d)) {
        fputs ("null", out);
        return;
    }
    char buf [40];
    for (int precision = 15; precision <= 17; precision++) {
        snprintf (buf, sizeof buf, "%.*g", precision, d);
        if (strtod (buf, NULL) == d)
            break;
    }
    fputs (buf, out);
    if (!strpbrk (buf, ".e"))
        fputs (".0", out);
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
            s_double (out, obj->via.f64);
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
tr__json_write (FILE *out, const msgpack_object *obj, int indent)
{
    s_value (out, obj, indent, 0);
    return ferror (out)? -1: 0;
}

int
tr__json_write_msgpack (FILE *out, const void *data, size_t size, int indent)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&result, (const char *) data, size, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  offset == size) {
        rc = tr__json_write (out, &result.data, indent);
        fputc ('\n', out);
        if (ferror (out))
            rc = -1;
    }
    msgpack_unpacked_destroy (&result);
    return rc;
}

int
tr__json_from_msgpack (const void *data, size_t size, char **text_p, size_t *len_p)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    char *text = NULL;
    size_t len = 0;
    int rc = -1;
    if (msgpack_unpack_next (&result, (const char *) data, size, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  offset == size) {
        FILE *out = open_memstream (&text, &len);
        if (out) {
            //  The stream is this call's own: no locking per character.
            __fsetlocking (out, FSETLOCKING_BYCALLER);
            rc = tr__json_write (out, &result.data, 0);
            if (fclose (out))
                rc = -1;
            if (rc) {
                free (text);
                text = NULL;
            }
        }
    }
    msgpack_unpacked_destroy (&result);
    if (rc == 0) {
        *text_p = text;
        *len_p = len;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Reading JSON into msgpack
//
//  A recursive descent over the bytes, writing msgpack as it goes. The
//  size of an array or object is only known at its end, so its header
//  is first written as a 5-byte placeholder (the largest form) and
//  rewritten in its smallest form when the container closes, its
//  elements moved down over the bytes saved. The depth limit bounds both
//  the recursion and that moving (each byte moves at most once per
//  enclosing container).

//  A key of the object being read: where its bytes are in the output
//  (offsets, as the buffer may move), and where it was in the input.
typedef struct {
    size_t out_offset;
    size_t len;
    size_t in_offset;
    const char *ptr;                //  set just before sorting
} s_key_t;

typedef struct {
    const unsigned char *start;     //  the input
    const unsigned char *p;         //  the next byte to read
    const unsigned char *end;
    msgpack_sbuffer out;
    msgpack_packer pk;
    char *text;                     //  the string being decoded
    size_t text_len, text_cap;
    s_key_t *keys;                  //  keys of the open objects, innermost last
    size_t nkeys, keys_cap;
    tr__json_error_t *err;
} s_parser_t;

//  Records the problem at `at` (the first one only) and returns -1.
static int
    s_fail (s_parser_t *self, const unsigned char *at, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (s_parser_t *self, const unsigned char *at, const char *format, ...)
{
    if (self->err && self->err->line == 0) {
        tr__json_error_t *err = self->err;
        err->offset = (size_t) (at - self->start);
        err->line = 1;
        err->column = 1;
        for (const unsigned char *c = self->start; c < at; c++) {
            if (*c == '\n') {
                err->line++;
                err->column = 1;
            }
            else
            if ((*c & 0xc0) != 0x80)        //  not a continuation byte
                err->column++;
        }
        va_list args;
        va_start (args, format);
        vsnprintf (err->message, sizeof err->message, format, args);
        va_end (args);
    }
    return -1;
}

//  Describes the character at p for an error message, such as "'x'",
//  "U+00E9", "control character U+0007" or "invalid UTF-8 byte 0xFF".
static void
s_describe (const s_parser_t *self, const unsigned char *p, char *buf, size_t size)
{
    if (p >= self->end) {
        snprintf (buf, size, "end of input");
        return;
    }
    unsigned char c = *p;
    if (c >= 0x20 && c < 0x7f) {
        snprintf (buf, size, "'%c'", c);
        return;
    }
    if (c < 0x80) {
        snprintf (buf, size, "control character U+%04X", c);
        return;
    }
    size_t n = s_utf8_length (p, (size_t) (self->end - p));
    if (n == 0) {
        snprintf (buf, size, "invalid UTF-8 byte 0x%02X", c);
        return;
    }
    uint32_t cp = c & (n == 2? 0x1f: n == 3? 0x0f: 0x07);
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (p [i] & 0x3f);
    snprintf (buf, size, "character U+%04X", (unsigned) cp);
}

//  "unexpected X; expected WHAT" at p.
static int
s_unexpected (s_parser_t *self, const unsigned char *p, const char *what)
{
    char found [48];
    s_describe (self, p, found, sizeof found);
    if (p >= self->end)
        return s_fail (self, p, "unexpected end of input; expected %s", what);
    return s_fail (self, p, "unexpected %s; expected %s", found, what);
}

static void
s_skip_space (s_parser_t *self)
{
    while (self->p < self->end
    &&    (*self->p == ' ' || *self->p == '\t' || *self->p == '\n' || *self->p == '\r'))
        self->p++;
}

static int
s_write (s_parser_t *self, const void *data, size_t len)
{
    if (msgpack_sbuffer_write (&self->out, (const char *) data, len))
        return s_fail (self, self->p, "out of memory");
    return 0;
}

//  Appends bytes to the string being decoded.
static int
s_text_add (s_parser_t *self, const void *data, size_t len)
{
    if (self->text_len + len > self->text_cap) {
        size_t cap = self->text_cap? self->text_cap * 2: 64;
        while (cap < self->text_len + len)
            cap *= 2;
        char *text = (char *) realloc (self->text, cap);
        if (!text)
            return s_fail (self, self->p, "out of memory");
        self->text = text;
        self->text_cap = cap;
    }
    memcpy (self->text + self->text_len, data, len);
    self->text_len += len;
    return 0;
}

static int
s_text_add_code_point (s_parser_t *self, uint32_t cp)
{
    unsigned char buf [4];
    size_t n;
    if (cp < 0x80) {
        buf [0] = (unsigned char) cp;
        n = 1;
    }
    else
    if (cp < 0x800) {
        buf [0] = (unsigned char) (0xc0 | (cp >> 6));
        buf [1] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 2;
    }
    else
    if (cp < 0x10000) {
        buf [0] = (unsigned char) (0xe0 | (cp >> 12));
        buf [1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        buf [2] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 3;
    }
    else {
        buf [0] = (unsigned char) (0xf0 | (cp >> 18));
        buf [1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        buf [2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        buf [3] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 4;
    }
    return s_text_add (self, buf, n);
}

//  Reads the four hex digits of a \u escape at p (just past the 'u').
static int
s_read_hex4 (s_parser_t *self, const unsigned char *escape, uint32_t *value)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        const unsigned char *p = self->p + i;
        int digit = p >= self->end? -1:
                    *p >= '0' && *p <= '9'? *p - '0':
                    *p >= 'a' && *p <= 'f'? *p - 'a' + 10:
                    *p >= 'A' && *p <= 'F'? *p - 'A' + 10: -1;
        if (digit < 0)
            return s_fail (self, escape, "\\u must be followed by four hex digits");
        v = (v << 4) | (uint32_t) digit;
    }
    self->p += 4;
    *value = v;
    return 0;
}

//  One escape; self->p is at the backslash.
static int
s_read_escape (s_parser_t *self)
{
    const unsigned char *escape = self->p++;
    if (self->p >= self->end)
        return s_fail (self, escape, "unterminated string: input ends in an escape");
    unsigned char c = *self->p++;
    static const char escapes [] = "\"\\/bfnrt";
    static const char decoded [] = "\"\\/\b\f\n\r\t";
    const char *simple = c? strchr (escapes, c): NULL;
    if (simple)
        return s_text_add (self, &decoded [simple - escapes], 1);
    if (c != 'u') {
        char found [48];
        s_describe (self, self->p - 1, found, sizeof found);
        return s_fail (self, escape, "invalid escape: backslash then %s "
                       "(JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)", found);
    }
    uint32_t cp;
    if (s_read_hex4 (self, escape, &cp))
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return s_fail (self, escape, "\\u%04X is a low surrogate without a high "
                       "surrogate before it", (unsigned) cp);
    if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t low = 0;
        if (self->end - self->p < 2 || self->p [0] != '\\' || self->p [1] != 'u')
            return s_fail (self, escape, "\\u%04X is a high surrogate without a "
                           "\\uDC00-\\uDFFF escape after it", (unsigned) cp);
        const unsigned char *second = self->p;
        self->p += 2;
        if (s_read_hex4 (self, second, &low))
            return -1;
        if (low < 0xdc00 || low > 0xdfff)
            return s_fail (self, escape, "\\u%04X is a high surrogate without a "
                           "\\uDC00-\\uDFFF escape after it", (unsigned) cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    return s_text_add_code_point (self, cp);
}

//  Decodes the string at self->p (at its opening quote) into self->text.
static int
s_read_string_text (s_parser_t *self)
{
    const unsigned char *quote = self->p++;
    self->text_len = 0;
    while (true) {
        //  The plain run up to the next quote, backslash or special byte.
        const unsigned char *run = self->p;
        while (self->p < self->end && *self->p >= 0x20 && *self->p < 0x80
        &&     *self->p != '"' && *self->p != '\\')
            self->p++;
        if (self->p > run && s_text_add (self, run, (size_t) (self->p - run)))
            return -1;
        if (self->p >= self->end)
            return s_fail (self, quote, "unterminated string: no closing quote");
        unsigned char c = *self->p;
        if (c == '"') {
            self->p++;
            return 0;
        }
        if (c == '\\') {
            if (s_read_escape (self))
                return -1;
        }
        else
        if (c < 0x20)
            return s_fail (self, self->p, "control character U+%04X in a string "
                           "(write it as an escape, such as \\n or \\u%04X)", c, c);
        else {
            size_t n = s_utf8_length (self->p, (size_t) (self->end - self->p));
            if (n == 0)
                return s_fail (self, self->p, "invalid UTF-8 in a string (byte 0x%02X)", c);
            if (s_text_add (self, self->p, n))
                return -1;
            self->p += n;
        }
    }
}

static int
s_read_string (s_parser_t *self)
{
    if (s_read_string_text (self))
        return -1;
    if (msgpack_pack_str (&self->pk, self->text_len)
    ||  msgpack_pack_str_body (&self->pk, self->text, self->text_len))
        return s_fail (self, self->p, "out of memory");
    return 0;
}

static bool
s_digit (const s_parser_t *self, const unsigned char *p)
{
    return p < self->end && *p >= '0' && *p <= '9';
}

//  A number: integers as msgpack integers when they fit, else float64.
static int
s_read_number (s_parser_t *self)
{
    const unsigned char *start = self->p;
    bool negative = *self->p == '-';
    if (negative)
        self->p++;
    if (!s_digit (self, self->p))
        return s_unexpected (self, self->p, "a digit after '-'");
    if (*self->p == '0' && s_digit (self, self->p + 1))
        return s_fail (self, self->p, "a number may not start with 0 followed by digits");
    bool integer = true, overflow = false;
    uint64_t magnitude = 0;
    while (s_digit (self, self->p)) {
        unsigned digit = (unsigned) (*self->p++ - '0');
        if (magnitude > (UINT64_MAX - digit) / 10)
            overflow = true;
        else
            magnitude = magnitude * 10 + digit;
    }
    if (self->p < self->end && *self->p == '.') {
        integer = false;
        if (!s_digit (self, ++self->p))
            return s_unexpected (self, self->p, "a digit after the decimal point");
        while (s_digit (self, self->p))
            self->p++;
    }
    if (self->p < self->end && (*self->p == 'e' || *self->p == 'E')) {
        integer = false;
        self->p++;
        if (self->p < self->end && (*self->p == '+' || *self->p == '-'))
            self->p++;
        if (!s_digit (self, self->p))
            return s_unexpected (self, self->p, "a digit in the exponent");
        while (s_digit (self, self->p))
            self->p++;
    }
    int rc;
    if (integer && !overflow && !negative)
        rc = msgpack_pack_uint64 (&self->pk, magnitude);
    else
    if (integer && !overflow && magnitude <= (uint64_t) INT64_MAX + 1)
        rc = msgpack_pack_int64 (&self->pk, magnitude == (uint64_t) INT64_MAX + 1?
                                 INT64_MIN: -(int64_t) magnitude);
    else {
        //  strtod reads the C locale's numbers (the program never sets
        //  another), which JSON's grammar, checked above, is a subset of.
        size_t len = (size_t) (self->p - start);
        char stack [64];
        char *copy = len < sizeof stack? stack: (char *) malloc (len + 1);
        if (!copy)
            return s_fail (self, start, "out of memory");
        memcpy (copy, start, len);
        copy [len] = 0;
        double d = strtod (copy, NULL);
        if (copy != stack)
            free (copy);
        if (!isfinite (d))
            return s_fail (self, start, "number out of range (beyond a double's "
                           "largest, about 1.8e308)");
        rc = msgpack_pack_double (&self->pk, d);
    }
    if (rc)
        return s_fail (self, start, "out of memory");
    return 0;
}

//  true, false or null.
static int
s_read_literal (s_parser_t *self)
{
    static const char *names [] = { "true", "false", "null" };
    for (int i = 0; i < 3; i++) {
        size_t len = strlen (names [i]);
        if ((size_t) (self->end - self->p) >= len && memcmp (self->p, names [i], len) == 0) {
            self->p += len;
            int rc = i == 0? msgpack_pack_true (&self->pk):
                     i == 1? msgpack_pack_false (&self->pk): msgpack_pack_nil (&self->pk);
            return rc? s_fail (self, self->p, "out of memory"): 0;
        }
    }
    return s_unexpected (self, self->p, "a value (literals are true, false and null, "
                         "in lower case)");
}

//  Writes a container's placeholder header and stores its offset in *at.
static int
s_open (s_parser_t *self, size_t *at)
{
    static const char placeholder [5] = { 0 };
    *at = self->out.size;
    return s_write (self, placeholder, sizeof placeholder);
}

//  Rewrites the placeholder at `at` as the smallest header for count
//  elements (map: pairs) and moves the elements down to follow it.
static void
s_close (s_parser_t *self, size_t at, uint32_t count, bool map)
{
    unsigned char header [5];
    size_t len;
    if (count < 16) {
        header [0] = (unsigned char) ((map? 0x80: 0x90) | count);
        len = 1;
    }
    else
    if (count <= 0xffff) {
        header [0] = map? 0xde: 0xdc;
        header [1] = (unsigned char) (count >> 8);
        header [2] = (unsigned char) count;
        len = 3;
    }
    else {
        header [0] = map? 0xdf: 0xdd;
        header [1] = (unsigned char) (count >> 24);
        header [2] = (unsigned char) (count >> 16);
        header [3] = (unsigned char) (count >> 8);
        header [4] = (unsigned char) count;
        len = 5;
    }
    char *base = self->out.data + at;
    memcpy (base, header, len);
    if (len < 5) {
        memmove (base + len, base + 5, self->out.size - at - 5);
        self->out.size -= 5 - len;
    }
}

static int s_read_value (s_parser_t *self, int depth);

static int
s_read_array (s_parser_t *self, int depth)
{
    self->p++;
    size_t at;
    if (s_open (self, &at))
        return -1;
    uint32_t count = 0;
    s_skip_space (self);
    if (self->p < self->end && *self->p == ']')
        self->p++;
    else
        while (true) {
            s_skip_space (self);
            if (self->p < self->end && *self->p == ']')
                return s_fail (self, self->p, "a trailing comma is not allowed: expected "
                               "a value after ','");
            if (s_read_value (self, depth))
                return -1;
            count++;
            s_skip_space (self);
            if (self->p < self->end && *self->p == ',') {
                self->p++;
                continue;
            }
            if (self->p < self->end && *self->p == ']') {
                self->p++;
                break;
            }
            return s_unexpected (self, self->p, "',' or ']' after an array element");
        }
    s_close (self, at, count, false);
    return 0;
}

static int
s_read_key_compare (const void *a, const void *b)
{
    const s_key_t *x = (const s_key_t *) a, *y = (const s_key_t *) b;
    size_t len = x->len < y->len? x->len: y->len;
    int rc = memcmp (x->ptr, y->ptr, len);
    if (rc == 0)
        rc = x->len < y->len? -1: x->len > y->len;
    if (rc == 0)                            //  the first in the input first
        rc = x->in_offset < y->in_offset? -1: 1;
    return rc;
}

//  Checks the keys of the object that just closed (keys [base...]) for
//  duplicates, in O(n log n), and drops them from the list.
static int
s_check_keys (s_parser_t *self, size_t base)
{
    size_t n = self->nkeys - base;
    if (n < 2) {
        self->nkeys = base;
        return 0;
    }
    s_key_t *keys = self->keys + base;
    for (size_t i = 0; i < n; i++)
        keys [i].ptr = self->out.data + keys [i].out_offset;
    qsort (keys, n, sizeof *keys, s_read_key_compare);
    for (size_t i = 1; i < n; i++)
        if (keys [i].len == keys [i - 1].len
        &&  memcmp (keys [i].ptr, keys [i - 1].ptr, keys [i].len) == 0) {
            int shown = keys [i].len > 40? 40: (int) keys [i].len;
            return s_fail (self, self->start + keys [i].in_offset,
                           "duplicate key \"%.*s%s\" in an object", shown, keys [i].ptr,
                           keys [i].len > 40? "...": "");
        }
    self->nkeys = base;
    return 0;
}

//  Reads one key into the output and remembers it for s_check_keys.
static int
s_read_key (s_parser_t *self)
{
    if (self->nkeys == self->keys_cap) {
        size_t cap = self->keys_cap? self->keys_cap * 2: 16;
        s_key_t *keys = (s_key_t *) realloc (self->keys, cap * sizeof *keys);
        if (!keys)
            return s_fail (self, self->p, "out of memory");
        self->keys = keys;
        self->keys_cap = cap;
    }
    s_key_t *key = &self->keys [self->nkeys];
    key->in_offset = (size_t) (self->p - self->start);
    if (s_read_string (self))
        return -1;
    key->len = self->text_len;
    key->out_offset = self->out.size - self->text_len;
    self->nkeys++;
    return 0;
}

static int
s_read_object (s_parser_t *self, int depth)
{
    self->p++;
    size_t at;
    if (s_open (self, &at))
        return -1;
    size_t base = self->nkeys;
    uint32_t count = 0;
    s_skip_space (self);
    if (self->p < self->end && *self->p == '}')
        self->p++;
    else
        while (true) {
            s_skip_space (self);
            if (self->p < self->end && *self->p == '}' && count)
                return s_fail (self, self->p, "a trailing comma is not allowed: expected "
                               "a key after ','");
            if (self->p >= self->end || *self->p != '"')
                return s_unexpected (self, self->p, count? "a key (a string in double "
                                     "quotes) after ','": "a key (a string in double "
                                     "quotes) or '}'");
            if (s_read_key (self))
                return -1;
            s_skip_space (self);
            if (self->p >= self->end || *self->p != ':')
                return s_unexpected (self, self->p, "':' after the key");
            self->p++;
            if (s_read_value (self, depth))
                return -1;
            count++;
            s_skip_space (self);
            if (self->p < self->end && *self->p == ',') {
                self->p++;
                continue;
            }
            if (self->p < self->end && *self->p == '}') {
                self->p++;
                break;
            }
            return s_unexpected (self, self->p, "',' or '}' after an object member");
        }
    if (s_check_keys (self, base))
        return -1;
    s_close (self, at, count, true);
    return 0;
}

//  One value at any depth; `depth` containers enclose it.
static int
s_read_value (s_parser_t *self, int depth)
{
    s_skip_space (self);
    if (self->p >= self->end)
        return s_unexpected (self, self->p, "a value");
    unsigned char c = *self->p;
    if ((c == '[' || c == '{') && depth >= TR__JSON_MAX_DEPTH)
        return s_fail (self, self->p, "nested deeper than %d arrays and objects",
                       TR__JSON_MAX_DEPTH);
    if (c == '[')
        return s_read_array (self, depth + 1);
    if (c == '{')
        return s_read_object (self, depth + 1);
    if (c == '"')
        return s_read_string (self);
    if (c == '-' || (c >= '0' && c <= '9'))
        return s_read_number (self);
    if (c == 't' || c == 'f' || c == 'n')
        return s_read_literal (self);
    if (c == '\'')
        return s_fail (self, self->p, "strings take double quotes, not single quotes");
    return s_unexpected (self, self->p, "a value (object, array, string, number, "
                         "true, false or null)");
}

int
tr__json_parse (const char *text, size_t len, char **data_p, size_t *size_p,
               tr__json_error_t *err)
{
    s_parser_t self = { 0 };
    self.start = self.p = (const unsigned char *) text;
    self.end = self.start + len;
    self.err = err;
    if (err)
        memset (err, 0, sizeof *err);
    if (len > TR__JSON_MAX_SIZE)
        return s_fail (&self, self.start, "the input is %zu bytes; at most %u are read",
                       len, TR__JSON_MAX_SIZE);
    msgpack_sbuffer_init (&self.out);
    msgpack_packer_init (&self.pk, &self.out, msgpack_sbuffer_write);
    int rc = s_read_value (&self, 0);
    if (rc == 0) {
        s_skip_space (&self);
        if (self.p < self.end)
            rc = s_unexpected (&self, self.p, "nothing more after the JSON value");
    }
    free (self.text);
    free (self.keys);
    if (rc) {
        msgpack_sbuffer_destroy (&self.out);
        return -1;
    }
    *size_p = self.out.size;
    *data_p = msgpack_sbuffer_release (&self.out);
    return 0;
}

const char *
tr__json_error_format (const tr__json_error_t *err, char *buf, size_t size)
{
    snprintf (buf, size, "%d:%d: %s", err->line, err->column, err->message);
    return buf;
}
