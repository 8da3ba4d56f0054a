/*  tr_json_test.c - tests of the JSON module (runtime/tr_json.c):
    JSON read into msgpack (every value, escape and limit, every error
    with its line and column), msgpack written as JSON, and round trips
    both ways.
*/

#include "tr_test.h"
#include "tr_json.h"

#include <msgpack.h>
#include <stdio.h>

//  Parses json (a C string) and checks the msgpack is exactly `expected`.
static void
s_check_bytes (const char *json, const void *expected, size_t expected_size)
{
    char *data = NULL;
    size_t size = 0;
    tr__json_error_t err;
    int rc = tr__json_parse (json, strlen (json), &data, &size, &err);
    ck_assert_msg (rc == 0, "'%s' failed at %d:%d: %s", json, err.line, err.column,
                   err.message);
    ck_assert_msg (size == expected_size && memcmp (data, expected, size) == 0,
                   "'%s' gave %zu bytes, not the %zu expected", json, size, expected_size);
    free (data);
}

//  A packer into a fresh buffer, for the expected bytes.
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} s_pack_t;

static void
s_pack_init (s_pack_t *p)
{
    msgpack_sbuffer_init (&p->sb);
    msgpack_packer_init (&p->pk, &p->sb, msgpack_sbuffer_write);
}

//  Checks json against what p packed, then resets p.
static void
s_check_packed (const char *json, s_pack_t *p)
{
    s_check_bytes (json, p->sb.data, p->sb.size);
    msgpack_sbuffer_destroy (&p->sb);
    s_pack_init (p);
}

//  Parses json, which must fail at line:column with a message containing
//  `part`.
static void
s_check_error (const char *json, size_t len, int line, int column, const char *part)
{
    char *data = NULL;
    size_t size = 0;
    tr__json_error_t err;
    int rc = tr__json_parse (json, len, &data, &size, &err);
    ck_assert_msg (rc == -1, "'%.*s' was accepted", (int) len, json);
    ck_assert_ptr_null (data);
    ck_assert_msg (err.line == line && err.column == column && strstr (err.message, part),
                   "'%.*s': got %d:%d: %s; expected %d:%d: ...%s...", (int) len, json,
                   err.line, err.column, err.message, line, column, part);
    ck_assert_uint_le (err.offset, len);
}

#define S_ERROR(json, line, column, part) \
    s_check_error (json, sizeof json - 1, line, column, part)

//  msgpack bytes written as JSON, in a malloc'd string.
static char *
s_write (const void *data, size_t size, int indent)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (tr__json_write_msgpack (out, data, size, indent), 0);
    fclose (out);
    return text;
}

//  msgpack -> JSON -> msgpack must give the same bytes, one line and
//  pretty. Returns the one-line JSON (malloc'd).
static char *
s_round_trip (const void *data, size_t size)
{
    char *json = NULL;
    for (int indent = 2; indent >= 0; indent -= 2) {
        free (json);
        json = s_write (data, size, indent);
        char *back = NULL;
        size_t back_size = 0;
        tr__json_error_t err;
        ck_assert_msg (tr__json_parse (json, strlen (json), &back, &back_size, &err) == 0,
                       "'%s' does not read back: %s", json, err.message);
        ck_assert_msg (back_size == size && memcmp (back, data, size) == 0,
                       "'%s' reads back as other bytes", json);
        free (back);
    }
    json [strlen (json) - 1] = 0;           //  the newline
    return json;
}

START_TEST (test_json_scalars)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_nil (&p.pk);
    s_check_packed ("null", &p);
    msgpack_pack_true (&p.pk);
    s_check_packed ("true", &p);
    msgpack_pack_false (&p.pk);
    s_check_packed (" \t\r\n false \n", &p);

    //  Integers in their smallest form, each side of each boundary.
    const struct { const char *json; uint64_t u; } uints [] = {
        { "0", 0 }, { "1", 1 }, { "127", 127 }, { "128", 128 }, { "255", 255 },
        { "256", 256 }, { "65535", 65535 }, { "65536", 65536 },
        { "4294967295", 4294967295u }, { "4294967296", 4294967296u },
        { "18446744073709551615", UINT64_MAX }, { "-0", 0 }
    };
    for (size_t i = 0; i < sizeof uints / sizeof uints [0]; i++) {
        msgpack_pack_uint64 (&p.pk, uints [i].u);
        s_check_packed (uints [i].json, &p);
    }
    const struct { const char *json; int64_t i; } ints [] = {
        { "-1", -1 }, { "-32", -32 }, { "-33", -33 }, { "-128", -128 },
        { "-129", -129 }, { "-32768", -32768 }, { "-32769", -32769 },
        { "-2147483649", -2147483649LL }, { "-9223372036854775808", INT64_MIN }
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++) {
        msgpack_pack_int64 (&p.pk, ints [i].i);
        s_check_packed (ints [i].json, &p);
    }
    s_check_bytes ("-1", "\xff", 1);
    s_check_bytes ("200", "\xcc\xc8", 2);

    //  Past the integer ranges, and anything with a fraction or an
    //  exponent: float64.
    const struct { const char *json; double d; } floats [] = {
        { "18446744073709551616", 18446744073709551616.0 },
        { "-9223372036854775809", -9223372036854775809.0 },
        { "1.5", 1.5 }, { "-0.0", -0.0 }, { "1e2", 100.0 }, { "1E-2", 0.01 },
        { "0.5e+1", 5.0 }, { "2.0", 2.0 }, { "1e-400", 0.0 },
        { "1.7976931348623157e308", 1.7976931348623157e308 },
        { "123456789012345678901234567890", 123456789012345678901234567890.0 }
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats [0]; i++) {
        msgpack_pack_double (&p.pk, floats [i].d);
        s_check_packed (floats [i].json, &p);
    }
    msgpack_sbuffer_destroy (&p.sb);
}
END_TEST

START_TEST (test_json_strings)
{
    s_pack_t p;
    s_pack_init (&p);
    const struct { const char *json; const char *text; size_t len; } strings [] = {
        { "\"\"", "", 0 },
        { "\"plain\"", "plain", 5 },
        { "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15 },
        { "\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6 },
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4 },
        { "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4 },
        { "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14 },
        { "\"a\\u0000b\"", "a\0b", 3 },
        { "\"\x7f\"", "\x7f", 1 },
        { "\"\xef\xbb\xbf\"", "\xef\xbb\xbf", 3 }
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings [0]; i++) {
        msgpack_pack_str_with_body (&p.pk, strings [i].text, strings [i].len);
        s_check_packed (strings [i].json, &p);
    }
    //  Lengths across the str8 and str16 boundaries.
    char json [70000];
    for (size_t len = 30; len < 70000 - 3; len = len * 2 + 1) {
        json [0] = '"';
        memset (json + 1, 'x', len);
        json [len + 1] = '"';
        json [len + 2] = 0;
        msgpack_pack_str_with_body (&p.pk, json + 1, len);
        s_check_packed (json, &p);
    }
    msgpack_sbuffer_destroy (&p.sb);
}
END_TEST

START_TEST (test_json_containers)
{
    s_check_bytes ("[]", "\x90", 1);
    s_check_bytes ("{}", "\x80", 1);
    s_check_bytes ("[ ]", "\x90", 1);
    s_check_bytes ("{\n}", "\x80", 1);
    s_check_bytes ("[1,[2,[]],{}]", "\x93\x01\x92\x02\x90\x80", 6);
    s_check_bytes ("{\"a\":1,\"b\":[true,null]}",
                   "\x82\xa1" "a" "\x01\xa1" "b" "\x92\xc3\xc0", 9);
    //  Members keep the input's order.
    s_check_bytes ("{\"b\":1,\"a\":2}", "\x82\xa1" "b" "\x01\xa1" "a" "\x02", 7);

    //  Header forms at 15, 16, 65535, 65536 elements, and the bytes
    //  after each header moved into place.
    const uint32_t counts [] = { 15, 16, 65535, 65536 };
    for (size_t c = 0; c < 4; c++) {
        uint32_t n = counts [c];
        for (int map = 0; map < 2; map++) {
            size_t cap = (size_t) n * 16 + 16;
            char *json = (char *) malloc (cap);
            size_t len = 0;
            s_pack_t p;
            s_pack_init (&p);
            json [len++] = map? '{': '[';
            if (map)
                msgpack_pack_map (&p.pk, n);
            else
                msgpack_pack_array (&p.pk, n);
            for (uint32_t i = 0; i < n; i++) {
                if (map) {
                    char key [16];
                    int klen = snprintf (key, sizeof key, "k%u", i);
                    len += (size_t) sprintf (json + len, "%s\"%s\":%u", i? ",": "", key, i % 200);
                    msgpack_pack_str_with_body (&p.pk, key, (size_t) klen);
                }
                else
                    len += (size_t) sprintf (json + len, "%s%u", i? ",": "", i % 200);
                msgpack_pack_uint32 (&p.pk, i % 200);
            }
            json [len++] = map? '}': ']';
            json [len] = 0;
            s_check_packed (json, &p);
            msgpack_sbuffer_destroy (&p.sb);
            free (json);
        }
    }
}
END_TEST

START_TEST (test_json_depth)
{
    //  32 levels are read (and written back); the 33rd is refused where
    //  it opens.
    char json [200];
    for (int depth = 1; depth <= 33; depth++) {
        size_t len = 0;
        for (int i = 0; i < depth; i++)
            len += (size_t) sprintf (json + len, i % 2? "{\"k\":": "[");
        json [len++] = '7';
        for (int i = depth - 1; i >= 0; i--)
            json [len++] = i % 2? '}': ']';
        json [len] = 0;
        char *data = NULL;
        size_t size = 0;
        tr__json_error_t err;
        int rc = tr__json_parse (json, len, &data, &size, &err);
        if (depth <= TR__JSON_MAX_DEPTH) {
            ck_assert_msg (rc == 0, "depth %d: %s", depth, err.message);
            ck_assert_int_eq (tr_msgpack_check (data, size, TR_BODY_MAX_DEPTH, NULL), TR_OK);
            free (s_round_trip (data, size));
            free (data);
        }
        else {
            ck_assert_int_eq (rc, -1);
            //  The 33rd opener: 16 "[" and 16 "{\"k\":" before it.
            ck_assert_int_eq (err.column, 16 + 16 * 5 + 1);
            ck_assert_ptr_nonnull (strstr (err.message, "deeper than 32"));
        }
    }
}
END_TEST

START_TEST (test_json_errors)
{
    //  Values and literals
    S_ERROR ("", 1, 1, "unexpected end of input; expected a value");
    S_ERROR ("   \n  ", 2, 3, "unexpected end of input; expected a value");
    S_ERROR ("nul", 1, 1, "expected a value (literals are true, false and null");
    S_ERROR ("True", 1, 1, "unexpected 'T'");
    S_ERROR ("NaN", 1, 1, "unexpected 'N'");
    S_ERROR ("'a'", 1, 1, "double quotes, not single quotes");
    S_ERROR ("1 2", 1, 3, "unexpected '2'; expected nothing more after the JSON value");
    S_ERROR ("{} x", 1, 4, "expected nothing more");
    S_ERROR ("\xef\xbb\xbf{}", 1, 1, "unexpected character U+FEFF");
    S_ERROR ("\x01", 1, 1, "unexpected control character U+0001");
    S_ERROR ("\xff", 1, 1, "unexpected invalid UTF-8 byte 0xFF");
    S_ERROR ("[1,\xc3\xa9]", 1, 4, "unexpected character U+00E9; expected a value");
    S_ERROR ("\x0b" "1", 1, 1, "control character U+000B");
    S_ERROR ("1\x00", 1, 2, "control character U+0000");
    //  Numbers
    S_ERROR ("-", 1, 2, "unexpected end of input; expected a digit after '-'");
    S_ERROR ("-a", 1, 2, "expected a digit after '-'");
    S_ERROR ("+1", 1, 1, "unexpected '+'");
    S_ERROR ("01", 1, 1, "may not start with 0 followed by digits");
    S_ERROR ("-007", 1, 2, "may not start with 0");
    S_ERROR ("1.", 1, 3, "expected a digit after the decimal point");
    S_ERROR ("1.e5", 1, 3, "expected a digit after the decimal point");
    S_ERROR (".5", 1, 1, "unexpected '.'");
    S_ERROR ("1e", 1, 3, "expected a digit in the exponent");
    S_ERROR ("1e+", 1, 4, "expected a digit in the exponent");
    S_ERROR ("[1e400]", 1, 2, "number out of range");
    S_ERROR ("-1e400", 1, 1, "number out of range");
    S_ERROR ("0x10", 1, 2, "unexpected 'x'");
    S_ERROR ("Infinity", 1, 1, "unexpected 'I'");
    //  Strings
    S_ERROR ("\"abc", 1, 1, "unterminated string");
    S_ERROR ("[\"a\\", 1, 4, "input ends in an escape");
    S_ERROR ("\"a\nb\"", 1, 3, "control character U+000A in a string");
    S_ERROR ("\"\t\"", 1, 2, "control character U+0009");
    S_ERROR ("\"\\x\"", 1, 2, "invalid escape: backslash then 'x'");
    S_ERROR ("\"\\U0041\"", 1, 2, "invalid escape: backslash then 'U'");
    S_ERROR ("\"\\u12\"", 1, 2, "\\u must be followed by four hex digits");
    S_ERROR ("\"\\u12G4\"", 1, 2, "four hex digits");
    S_ERROR ("\"ab\\ud800\"", 1, 4, "\\uD800 is a high surrogate without");
    S_ERROR ("\"\\ud800\\u0041\"", 1, 2, "high surrogate without");
    S_ERROR ("\"\\ud800\\ud800\"", 1, 2, "high surrogate without");
    S_ERROR ("\"\\ud800\\u00\"", 1, 8, "four hex digits");
    S_ERROR ("\"\\udc00\"", 1, 2, "\\uDC00 is a low surrogate without a high");
    S_ERROR ("\"a\xff\"", 1, 3, "invalid UTF-8 in a string (byte 0xFF)");
    S_ERROR ("\"\xc0\xaf\"", 1, 2, "invalid UTF-8");                 //  overlong '/'
    S_ERROR ("\"\xe0\x80\xaf\"", 1, 2, "invalid UTF-8");             //  overlong
    S_ERROR ("\"\xed\xa0\x80\"", 1, 2, "invalid UTF-8");             //  a surrogate
    S_ERROR ("\"\xf4\x90\x80\x80\"", 1, 2, "invalid UTF-8");         //  past U+10FFFF
    S_ERROR ("\"\xe2\x82\"", 1, 2, "invalid UTF-8");                 //  cut short
    S_ERROR ("\"\x80\"", 1, 2, "invalid UTF-8 in a string (byte 0x80)");
    //  Arrays
    S_ERROR ("[", 1, 2, "unexpected end of input; expected a value");
    S_ERROR ("[1", 1, 3, "unexpected end of input; expected ',' or ']' after an array element");
    S_ERROR ("[1 2]", 1, 4, "unexpected '2'; expected ',' or ']'");
    S_ERROR ("[1,]", 1, 4, "a trailing comma is not allowed");
    S_ERROR ("[,1]", 1, 2, "unexpected ','; expected a value");
    S_ERROR ("[1}", 1, 3, "expected ',' or ']'");
    S_ERROR ("]", 1, 1, "unexpected ']'");
    //  Objects
    S_ERROR ("{", 1, 2, "expected a key (a string in double quotes) or '}'");
    S_ERROR ("{a:1}", 1, 2, "unexpected 'a'; expected a key");
    S_ERROR ("{'a':1}", 1, 2, "unexpected '''; expected a key");
    S_ERROR ("{1:1}", 1, 2, "expected a key");
    S_ERROR ("{\"a\" 1}", 1, 6, "unexpected '1'; expected ':' after the key");
    S_ERROR ("{\"a\":}", 1, 6, "unexpected '}'; expected a value");
    S_ERROR ("{\"a\":1,}", 1, 8, "a trailing comma is not allowed: expected a key after ','");
    S_ERROR ("{\"a\":1 \"b\":2}", 1, 8, "expected ',' or '}' after an object member");
    S_ERROR ("{\"a\":1,\"a\":2}", 1, 8, "duplicate key \"a\"");
    S_ERROR ("{\"b\":1,\"a\":2,\"\\u0062\":3}", 1, 14, "duplicate key \"b\"");
    S_ERROR ("[{\"x\":{\"a\":1},\"a\":1,\"y\":1,\"x\":0}]", 1, 27, "duplicate key \"x\"");
    S_ERROR ("{\"a\\u0000\":1,\"a\":2,\"a\\u0000\":3}", 1, 20, "duplicate key");
    //  Comments are not JSON.
    S_ERROR ("[1] // no", 1, 5, "unexpected '/'");
    S_ERROR ("/* no */ 1", 1, 1, "unexpected '/'");
    //  Lines and columns: columns count characters, not bytes.
    S_ERROR ("{\n  \"a\": 1,\n  \"b\": tru\n}", 3, 8, "expected a value");
    S_ERROR ("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\", x]", 1, 9, "unexpected 'x'");
    S_ERROR ("\r\n\r\n  x", 3, 3, "unexpected 'x'");
}
END_TEST

START_TEST (test_json_keys_distinct)
{
    //  Keys differing in length, by a NUL, by a prefix are distinct; an
    //  inner object's keys do not meet its parent's.
    s_check_bytes ("{\"a\":1,\"ab\":2,\"a\\u0000\":3,\"\":4}",
                   "\x84\xa1" "a" "\x01\xa2" "ab" "\x02\xa2" "a\0" "\x03\xa0\x04", 14);
    s_check_bytes ("{\"a\":{\"a\":{\"a\":1}}}",
                   "\x81\xa1" "a" "\x81\xa1" "a" "\x81\xa1" "a" "\x01", 10);
    s_check_bytes ("[{\"a\":1},{\"a\":2}]",
                   "\x92\x81\xa1" "a" "\x01\x81\xa1" "a" "\x02", 9);
}
END_TEST

START_TEST (test_json_size_limit)
{
    size_t len = (size_t) TR__JSON_MAX_SIZE + 1;
    char *json = (char *) malloc (len);
    ck_assert_ptr_nonnull (json);
    memset (json, ' ', len);
    json [0] = '1';
    char *data = NULL;
    size_t size = 0;
    tr__json_error_t err;
    ck_assert_int_eq (tr__json_parse (json, len, &data, &size, &err), -1);
    ck_assert_ptr_null (data);
    ck_assert_int_eq (err.line, 1);
    ck_assert_int_eq (err.column, 1);
    ck_assert_ptr_nonnull (strstr (err.message, "at most 16777216"));
    //  At the limit it is read.
    ck_assert_int_eq (tr__json_parse (json, len - 1, &data, &size, &err), 0);
    ck_assert_uint_eq (size, 1);
    free (data);
    free (json);
    char buf [160];
    tr__json_error_t e = { .line = 3, .column = 14 };
    strcpy (e.message, "what went wrong");
    ck_assert_str_eq (tr__json_error_format (&e, buf, sizeof buf), "3:14: what went wrong");
}
END_TEST

//  JSON -> msgpack -> JSON: the JSON written is the canonical one.
START_TEST (test_json_round_trip_from_json)
{
    const struct { const char *in; const char *out; } cases [] = {
        { "null", "null" }, { "true", "true" }, { " false ", "false" },
        { "0", "0" }, { "-0", "0" }, { "-1", "-1" },
        { "18446744073709551615", "18446744073709551615" },
        { "-9223372036854775808", "-9223372036854775808" },
        { "18446744073709551616", "1.8446744073709552e+19" },
        { "1.0", "1.0" }, { "-0.0", "-0.0" }, { "0.1", "0.1" }, { "1e2", "100.0" },
        { "1e20", "1e+20" }, { "1.5e-7", "1.5e-07" }, { "2.5", "2.5" },
        { "0.30000000000000004", "0.30000000000000004" },
        { "5e-324", "4.94065645841247e-324" },
        { "\"\\u0041\\/\\u00e9\"", "\"A/\xc3\xa9\"" },
        { "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\\"\\\\\"", "\"\\u0008\\u000c\\n\\r\\t\\u0001\\u001f\\\"\\\\\"" },
        { "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"" },
        { "[ 1 , [ ] , { } ]", "[1,[],{}]" },
        { "{ \"b\" : 1 , \"a\" : [ true , null ] }", "{\"b\":1,\"a\":[true,null]}" }
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        char *data = NULL;
        size_t size = 0;
        tr__json_error_t err;
        ck_assert_msg (tr__json_parse (cases [i].in, strlen (cases [i].in), &data, &size,
                                      &err) == 0, "%s: %s", cases [i].in, err.message);
        char *json = s_round_trip (data, size);
        ck_assert_msg (strcmp (json, cases [i].out) == 0, "'%s' was written as '%s', not '%s'",
                       cases [i].in, json, cases [i].out);
        free (json);
        free (data);
    }
}
END_TEST

//  msgpack -> JSON -> msgpack, for every msgpack value JSON can carry.
START_TEST (test_json_round_trip_from_msgpack)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_map (&p.pk, 5);
    msgpack_pack_str_with_body (&p.pk, "ints", 4);
    msgpack_pack_array (&p.pk, 8);
    msgpack_pack_uint64 (&p.pk, 0);
    msgpack_pack_uint64 (&p.pk, 200);
    msgpack_pack_uint64 (&p.pk, 70000);
    msgpack_pack_uint64 (&p.pk, UINT64_MAX);
    msgpack_pack_int64 (&p.pk, -5);
    msgpack_pack_int64 (&p.pk, -200);
    msgpack_pack_int64 (&p.pk, -70000);
    msgpack_pack_int64 (&p.pk, INT64_MIN);
    msgpack_pack_str_with_body (&p.pk, "floats", 6);
    const double floats [] = { 0.0, -0.0, 1.0, 0.1, 1e300, -1e-300, 5e-324,
                               1.7976931348623157e308, 3.141592653589793, 123456789.0 };
    msgpack_pack_array (&p.pk, 10);
    for (int i = 0; i < 10; i++)
        msgpack_pack_double (&p.pk, floats [i]);
    msgpack_pack_str_with_body (&p.pk, "text", 4);
    msgpack_pack_array (&p.pk, 3);
    msgpack_pack_str_with_body (&p.pk, "", 0);
    msgpack_pack_str_with_body (&p.pk, "\x01\x1f\"\\/\x7f\n\0z", 9);
    msgpack_pack_str_with_body (&p.pk, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    msgpack_pack_str_with_body (&p.pk, "other", 5);
    msgpack_pack_array (&p.pk, 3);
    msgpack_pack_nil (&p.pk);
    msgpack_pack_true (&p.pk);
    msgpack_pack_false (&p.pk);
    msgpack_pack_str_with_body (&p.pk, "nested", 6);
    msgpack_pack_map (&p.pk, 1);
    msgpack_pack_str_with_body (&p.pk, "", 0);
    msgpack_pack_array (&p.pk, 1);
    msgpack_pack_map (&p.pk, 0);
    char *json = s_round_trip (p.sb.data, p.sb.size);
    ck_assert_ptr_nonnull (strstr (json, "\"floats\":[0.0,-0.0,1.0,0.1,1e+300,-1e-300,"));
    ck_assert_ptr_nonnull (strstr (json, "\"\\u0001\\u001f\\\"\\\\/\x7f\\n\\u0000z\""));
    free (json);
    msgpack_sbuffer_destroy (&p.sb);
}
END_TEST

//  What JSON cannot carry is written as documented, and refused by the
//  writer only when the bytes are not one msgpack value.
START_TEST (test_json_write_lossy)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_array (&p.pk, 4);
    msgpack_pack_double (&p.pk, 1.0 / 0.0);
    msgpack_pack_bin_with_body (&p.pk, "abcd", 4);
    msgpack_pack_map (&p.pk, 1);
    msgpack_pack_uint64 (&p.pk, 7);
    msgpack_pack_str_with_body (&p.pk, "\xff", 1);
    msgpack_pack_float (&p.pk, 0.5f);
    char *json = s_write (p.sb.data, p.sb.size, 0);
    ck_assert_str_eq (json, "[null,\"YWJjZA==\",{\"7\":\"\\ufffd\"},0.5]\n");
    free (json);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    ck_assert_int_eq (tr__json_write_msgpack (out, p.sb.data, p.sb.size - 1, 0), -1);
    ck_assert_int_eq (tr__json_write_msgpack (out, "\x01\x02", 2, 0), -1);
    fclose (out);
    ck_assert_uint_eq (len, 0);
    free (text);
    msgpack_sbuffer_destroy (&p.sb);
}
END_TEST

//  The in-memory writer: one line, NUL-terminated, nothing allocated for
//  bytes that are not one msgpack value.
START_TEST (test_json_from_msgpack)
{
    s_pack_t p;
    s_pack_init (&p);
    msgpack_pack_map (&p.pk, 2);
    msgpack_pack_str_with_body (&p.pk, "q", 1);
    msgpack_pack_str_with_body (&p.pk, "a\nb", 3);
    msgpack_pack_str_with_body (&p.pk, "n", 1);
    msgpack_pack_array (&p.pk, 2);
    msgpack_pack_int64 (&p.pk, -3);
    msgpack_pack_nil (&p.pk);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq (tr__json_from_msgpack (p.sb.data, p.sb.size, &text, &len), 0);
    ck_assert_str_eq (text, "{\"q\":\"a\\nb\",\"n\":[-3,null]}");
    ck_assert_uint_eq (len, strlen (text));
    free (text);
    text = NULL;
    ck_assert_int_eq (tr__json_from_msgpack (p.sb.data, p.sb.size - 1, &text, &len), -1);
    ck_assert_int_eq (tr__json_from_msgpack ("\xa1x\x01", 3, &text, &len), -1);
    ck_assert_ptr_null (text);
    msgpack_sbuffer_destroy (&p.sb);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_json");
    TCase *tc = tcase_create ("core");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_json_scalars);
    tcase_add_test (tc, test_json_strings);
    tcase_add_test (tc, test_json_containers);
    tcase_add_test (tc, test_json_depth);
    tcase_add_test (tc, test_json_errors);
    tcase_add_test (tc, test_json_keys_distinct);
    tcase_add_test (tc, test_json_size_limit);
    tcase_add_test (tc, test_json_round_trip_from_json);
    tcase_add_test (tc, test_json_round_trip_from_msgpack);
    tcase_add_test (tc, test_json_write_lossy);
    tcase_add_test (tc, test_json_from_msgpack);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
