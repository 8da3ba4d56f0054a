/*  tr_mp_test.c - tests of the bounded msgpack reader (protocols/tr_mp.h).

    Inputs are copied into buffers of exactly their size before they are
    read, so that under AddressSanitizer any read past the end is caught.
*/

#include "tr_test.h"
#include <troupe.h>
#include "tr_mp.h"

#include <stdio.h>

//  A value in one msgpack family, with what the typed readers make of it:
//  'u' a non-negative integer, 'n' a negative one, 's' a string, 'm' a
//  map, '-' anything else.
typedef struct {
    const char *name;
    const char *bytes;
    size_t len;
    char kind;
} s_value_t;

#define S_V(name, kind, lit) { name, lit, sizeof (lit) - 1, kind }

static const s_value_t s_values [] = {
    S_V ("positive fixint 0",   'u', "\x00"),
    S_V ("positive fixint 127", 'u', "\x7f"),
    S_V ("negative fixint -32", 'n', "\xe0"),
    S_V ("negative fixint -1",  'n', "\xff"),
    S_V ("nil",                 '-', "\xc0"),
    S_V ("false",               '-', "\xc2"),
    S_V ("true",                '-', "\xc3"),
    S_V ("float 32",            '-', "\xca\x3f\xc0\x00\x00"),
    S_V ("float 64",            '-', "\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18"),
    S_V ("uint 8",              'u', "\xcc\xff"),
    S_V ("uint 16",             'u', "\xcd\xff\xff"),
    S_V ("uint 32",             'u', "\xce\xff\xff\xff\xff"),
    S_V ("uint 64",             'u', "\xcf\x01\x02\x03\x04\x05\x06\x07\x08"),
    S_V ("int 8",               'n', "\xd0\x80"),
    S_V ("int 16",              'n', "\xd1\x80\x00"),
    S_V ("int 32",              'n', "\xd2\x80\x00\x00\x00"),
    S_V ("int 64",              'n', "\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    S_V ("int 8 positive",      'u', "\xd0\x05"),
    S_V ("empty fixstr",        's', "\xa0"),
    S_V ("fixstr",              's', "\xa3\x61\x62\x63"),
    S_V ("fixstr 31",           's', "\xbf" "0123456789012345678901234567890"),
    S_V ("str 8",               's', "\xd9\x03\x61\x62\x63"),
    S_V ("str 16",              's', "\xda\x00\x03\x61\x62\x63"),
    S_V ("str 32",              's', "\xdb\x00\x00\x00\x03\x61\x62\x63"),
    S_V ("empty str 32",        's', "\xdb\x00\x00\x00\x00"),
    S_V ("bin 8",               '-', "\xc4\x02\xc1\xc1"),
    S_V ("bin 16",              '-', "\xc5\x00\x02\xc1\xc1"),
    S_V ("bin 32",              '-', "\xc6\x00\x00\x00\x02\xc1\xc1"),
    S_V ("empty bin 8",         '-', "\xc4\x00"),
    S_V ("fixext 1",            '-', "\xd4\x01\xc1"),
    S_V ("fixext 2",            '-', "\xd5\x01\xc1\xc1"),
    S_V ("fixext 4",            '-', "\xd6\x01\xc1\xc1\xc1\xc1"),
    S_V ("fixext 8",            '-', "\xd7\xff\x01\x02\x03\x04\x05\x06\x07\x08"),
    S_V ("fixext 16",           '-', "\xd8\x7f\x00\x01\x02\x03\x04\x05\x06\x07"
                                     "\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"),
    S_V ("ext 8",               '-', "\xc7\x02\x05\xc1\xc1"),
    S_V ("ext 16",              '-', "\xc8\x00\x02\x05\xc1\xc1"),
    S_V ("ext 32",              '-', "\xc9\x00\x00\x00\x02\x05\xc1\xc1"),
    S_V ("empty ext 8",         '-', "\xc7\x00\x05"),
    S_V ("empty fixarray",      '-', "\x90"),
    S_V ("fixarray",            '-', "\x92\x01\xa1\x61"),
    S_V ("array 16",            '-', "\xdc\x00\x02\x01\xc0"),
    S_V ("array 32",            '-', "\xdd\x00\x00\x00\x02\x01\xc0"),
    S_V ("empty fixmap",        'm', "\x80"),
    S_V ("fixmap",              'm', "\x81\x01\x02"),
    S_V ("map 16",              'm', "\xde\x00\x01\xa1\x6b\xc3"),
    S_V ("map 32",              'm', "\xdf\x00\x00\x00\x01\x01\x90"),
    S_V ("nested",              'm', "\x82\xa1\x61\x92\x90\x80\xa1\x62\x81\xc0"
                                     "\xdc\x00\x01\xcb\x00\x00\x00\x00\x00\x00\x00\x00"),
};

#define S_VALUES (sizeof s_values / sizeof s_values [0])

//  Checks the invariants every cursor keeps, whatever happened.
static void
s_assert_sane (const tr__mp_t *r)
{
    ck_assert (r->p >= r->start && r->p <= r->end);
    if (r->error) {
        ck_assert (r->error == TR_EMALFORMED || r->error == TR_EDEPTH);
        ck_assert_uint_le (r->error_at, (size_t) (r->end - r->start));
        ck_assert_ptr_nonnull (r->why);
        ck_assert_uint_gt (strlen (r->why), 0);
    }
}

//  Expects a typed read that failed: EMALFORMED, nothing consumed.
static void
s_assert_refused (const tr__mp_t *r, int rc, const char *name)
{
    ck_assert_msg (rc == -1, "%s: read should fail", name);
    ck_assert_int_eq (r->error, TR_EMALFORMED);
    ck_assert_uint_eq (r->error_at, 0);
    ck_assert_ptr_eq (r->p, r->start);
}

//  --------------------------------------------------------------------------

START_TEST (test_mp_skip_every_family)
{
    for (size_t i = 0; i < S_VALUES; i++) {
        const s_value_t *v = &s_values [i];
        uint8_t *buf = tr_test_copy (v->bytes, v->len);
        tr__mp_t r;
        tr__mp_init (&r, buf, v->len);
        ck_assert_uint_eq (tr__mp_remaining (&r), v->len);
        ck_assert_msg (tr__mp_skip (&r, 32) == 0, "%s: %s", v->name,
                       r.why? r.why: "");
        ck_assert_int_eq (r.error, 0);
        ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_skip_sequence)
{
    //  All values back to back: each skip consumes exactly one value.
    size_t total = 0;
    for (size_t i = 0; i < S_VALUES; i++)
        total += s_values [i].len;
    uint8_t *buf = (uint8_t *) malloc (total);
    ck_assert_ptr_nonnull (buf);
    size_t at = 0;
    for (size_t i = 0; i < S_VALUES; i++) {
        memcpy (buf + at, s_values [i].bytes, s_values [i].len);
        at += s_values [i].len;
    }
    tr__mp_t r;
    tr__mp_init (&r, buf, total);
    at = 0;
    for (size_t i = 0; i < S_VALUES; i++) {
        ck_assert_int_eq (tr__mp_skip (&r, 32), 0);
        at += s_values [i].len;
        ck_assert_msg ((size_t) (r.p - r.start) == at, "%s", s_values [i].name);
    }
    ck_assert_uint_eq (tr__mp_remaining (&r), 0);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, total);
    free (buf);
}
END_TEST

START_TEST (test_mp_typed_readers)
{
    //  Each typed reader accepts its own family and refuses every other
    //  one without consuming anything.
    for (size_t i = 0; i < S_VALUES; i++) {
        const s_value_t *v = &s_values [i];
        uint8_t *buf = tr_test_copy (v->bytes, v->len);
        tr__mp_t r;
        uint64_t u;
        int64_t n;
        uint32_t count;
        const char *str;
        uint32_t len;

        tr__mp_init (&r, buf, v->len);
        if (v->kind == 'u') {
            ck_assert_msg (tr__mp_uint (&r, &u) == 0, "%s", v->name);
            ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        }
        else
            s_assert_refused (&r, tr__mp_uint (&r, &u), v->name);

        tr__mp_init (&r, buf, v->len);
        if (v->kind == 'u' || v->kind == 'n') {
            ck_assert_msg (tr__mp_int (&r, &n) == 0, "%s", v->name);
            ck_assert_uint_eq (tr__mp_remaining (&r), 0);
            ck_assert_int_eq (n < 0, v->kind == 'n');
        }
        else
            s_assert_refused (&r, tr__mp_int (&r, &n), v->name);

        tr__mp_init (&r, buf, v->len);
        if (v->kind == 's') {
            ck_assert_msg (tr__mp_str (&r, &str, &len) == 0, "%s", v->name);
            ck_assert_uint_eq (tr__mp_remaining (&r), 0);
            ck_assert (str + len == (const char *) buf + v->len);
        }
        else
            s_assert_refused (&r, tr__mp_str (&r, &str, &len), v->name);

        tr__mp_init (&r, buf, v->len);
        if (v->kind == 'm') {
            ck_assert_msg (tr__mp_map (&r, &count) == 0, "%s", v->name);
            ck_assert_uint_le (2 * (size_t) count, tr__mp_remaining (&r));
        }
        else
            s_assert_refused (&r, tr__mp_map (&r, &count), v->name);
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_str_and_map_values)
{
    const char *str;
    uint32_t len, count;
    tr__mp_t r;
    uint8_t *buf = tr_test_copy ("\xda\x00\x05hello\x83", 9);
    tr__mp_init (&r, buf, 8);
    ck_assert_int_eq (tr__mp_str (&r, &str, &len), 0);
    ck_assert_uint_eq (len, 5);
    ck_assert (memcmp (str, "hello", 5) == 0);
    ck_assert_ptr_eq (str, (const char *) buf + 3);
    free (buf);

    buf = tr_test_copy ("\xde\x00\x03\x00\x01\x02\x03\x04\x05", 9);
    tr__mp_init (&r, buf, 9);
    ck_assert_int_eq (tr__mp_map (&r, &count), 0);
    ck_assert_uint_eq (count, 3);
    ck_assert_uint_eq (tr__mp_remaining (&r), 6);
    free (buf);
}
END_TEST

//  --------------------------------------------------------------------------
//  Integer ranges

typedef struct {
    const char *bytes;
    size_t len;
    uint64_t value;
} s_uint_case_t;

typedef struct {
    const char *bytes;
    size_t len;
    int64_t value;
} s_int_case_t;

#define S_N(lit, value) { lit, sizeof (lit) - 1, value }

START_TEST (test_mp_uint_every_encoding)
{
    const s_uint_case_t cases [] = {
        S_N ("\x00", 0),
        S_N ("\x7f", 127),
        S_N ("\xcc\x00", 0),
        S_N ("\xcc\x80", 128),
        S_N ("\xcc\xff", 255),
        S_N ("\xcd\x01\x00", 256),
        S_N ("\xcd\xff\xff", 65535),
        S_N ("\xce\x00\x01\x00\x00", 65536),
        S_N ("\xce\xff\xff\xff\xff", 4294967295u),
        S_N ("\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 4294967296u),
        S_N ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", UINT64_MAX),
        S_N ("\xd0\x00", 0),
        S_N ("\xd0\x7f", 127),
        S_N ("\xd1\x00\x05", 5),
        S_N ("\xd1\x7f\xff", 32767),
        S_N ("\xd2\x7f\xff\xff\xff", 2147483647),
        S_N ("\xd3\x00\x00\x00\x00\x00\x00\x00\x00", 0),
        S_N ("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", INT64_MAX),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint8_t *buf = tr_test_copy (cases [i].bytes, cases [i].len);
        tr__mp_t r;
        uint64_t value = 12345;
        tr__mp_init (&r, buf, cases [i].len);
        ck_assert_int_eq (tr__mp_uint (&r, &value), 0);
        ck_assert_uint_eq (value, cases [i].value);
        ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_uint_rejects_negative)
{
    const s_uint_case_t cases [] = {
        S_N ("\xff", 0),
        S_N ("\xe0", 0),
        S_N ("\xd0\xff", 0),
        S_N ("\xd0\x80", 0),
        S_N ("\xd1\xff\xff", 0),
        S_N ("\xd1\x80\x00", 0),
        S_N ("\xd2\xff\xff\xff\xff", 0),
        S_N ("\xd2\x80\x00\x00\x00", 0),
        S_N ("\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 0),
        S_N ("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 0),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint8_t *buf = tr_test_copy (cases [i].bytes, cases [i].len);
        tr__mp_t r;
        uint64_t value;
        tr__mp_init (&r, buf, cases [i].len);
        s_assert_refused (&r, tr__mp_uint (&r, &value), "negative");
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_int_every_encoding)
{
    const s_int_case_t cases [] = {
        S_N ("\x00", 0),
        S_N ("\x7f", 127),
        S_N ("\xff", -1),
        S_N ("\xe0", -32),
        S_N ("\xd0\x80", -128),
        S_N ("\xd0\x7f", 127),
        S_N ("\xd1\x80\x00", -32768),
        S_N ("\xd1\xff\x7f", -129),
        S_N ("\xd2\x80\x00\x00\x00", INT32_MIN),
        S_N ("\xd2\xff\xff\xff\xff", -1),
        S_N ("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", INT64_MIN),
        S_N ("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", INT64_MAX),
        S_N ("\xd3\xff\xff\xff\xff\x7f\xff\xff\xff", (int64_t) INT32_MIN - 1),
        S_N ("\xcc\xff", 255),
        S_N ("\xcd\xff\xff", 65535),
        S_N ("\xce\xff\xff\xff\xff", 4294967295),
        S_N ("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", INT64_MAX),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint8_t *buf = tr_test_copy (cases [i].bytes, cases [i].len);
        tr__mp_t r;
        int64_t value = 12345;
        tr__mp_init (&r, buf, cases [i].len);
        ck_assert_int_eq (tr__mp_int (&r, &value), 0);
        ck_assert_int_eq (value, cases [i].value);
        ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_int_rejects_overflow)
{
    const s_int_case_t cases [] = {
        S_N ("\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 0),    //  2^63
        S_N ("\xcf\x80\x00\x00\x00\x00\x00\x00\x01", 0),
        S_N ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 0),    //  2^64-1
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint8_t *buf = tr_test_copy (cases [i].bytes, cases [i].len);
        tr__mp_t r;
        int64_t value;
        tr__mp_init (&r, buf, cases [i].len);
        s_assert_refused (&r, tr__mp_int (&r, &value), "overflow");
        free (buf);
    }
}
END_TEST

START_TEST (test_mp_int_rejects_non_integers)
{
    const char *others [] = { "\xc0", "\xc2", "\xc3", "\xc1", "\xa0", "\x90",
                              "\x80", "\xca", "\xcb", "\xc4", "\xd4", "\xd9" };
    for (size_t i = 0; i < sizeof others / sizeof others [0]; i++) {
        uint8_t *buf = tr_test_copy (others [i], 1);
        tr__mp_t r;
        int64_t n;
        uint64_t u;
        tr__mp_init (&r, buf, 1);
        s_assert_refused (&r, tr__mp_int (&r, &n), "int");
        tr__mp_init (&r, buf, 1);
        s_assert_refused (&r, tr__mp_uint (&r, &u), "uint");
        free (buf);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  Truncation and counts

START_TEST (test_mp_every_prefix_fails)
{
    for (size_t i = 0; i < S_VALUES; i++) {
        const s_value_t *v = &s_values [i];
        for (size_t cut = 0; cut < v->len; cut++) {
            uint8_t *buf = tr_test_copy (v->bytes, cut);
            tr__mp_t r;
            tr__mp_init (&r, buf, cut);
            ck_assert_msg (tr__mp_skip (&r, 32) == -1, "%s cut to %zu", v->name, cut);
            ck_assert_int_eq (r.error, TR_EMALFORMED);
            s_assert_sane (&r);

            //  The typed readers read the whole value, except tr__mp_map,
            //  which reads only the header.
            uint64_t u;
            int64_t n;
            const char *str;
            uint32_t len;
            if (v->kind == 'u') {
                tr__mp_init (&r, buf, cut);
                ck_assert_int_eq (tr__mp_uint (&r, &u), -1);
                ck_assert_int_eq (r.error, TR_EMALFORMED);
                s_assert_sane (&r);
            }
            if (v->kind == 'u' || v->kind == 'n') {
                tr__mp_init (&r, buf, cut);
                ck_assert_int_eq (tr__mp_int (&r, &n), -1);
                ck_assert_int_eq (r.error, TR_EMALFORMED);
                s_assert_sane (&r);
            }
            if (v->kind == 's') {
                tr__mp_init (&r, buf, cut);
                ck_assert_int_eq (tr__mp_str (&r, &str, &len), -1);
                ck_assert_int_eq (r.error, TR_EMALFORMED);
                s_assert_sane (&r);
            }
            free (buf);
        }
    }
}
END_TEST

//  Skips buf (a copy of lit) and expects TR_EMALFORMED at offset at.
static void
s_assert_skip_fails_at (const char *lit, size_t len, size_t at)
{
    uint8_t *buf = tr_test_copy (lit, len);
    tr__mp_t r;
    tr__mp_init (&r, buf, len);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, at);
    s_assert_sane (&r);
    free (buf);
}

START_TEST (test_mp_counts_past_the_end)
{
    //  The five bytes that would make a naive reader allocate gigabytes,
    //  followed by a few elements: refused right after the header.
    char big [64];
    memset (big, 0x01, sizeof big);
    memcpy (big, "\xdd\xff\xff\xff\xff", 5);
    s_assert_skip_fails_at (big, sizeof big, 5);
    memcpy (big, "\xdf\xff\xff\xff\xff", 5);
    s_assert_skip_fails_at (big, sizeof big, 5);
    s_assert_skip_fails_at ("\xdd\xff\xff\xff\xff", 5, 5);

    //  Lengths of strings, bins and exts.
    s_assert_skip_fails_at ("\xdb\xff\xff\xff\xff\x61\x62", 7, 5);
    s_assert_skip_fails_at ("\xc6\xff\xff\xff\xff\x61\x62", 7, 5);
    s_assert_skip_fails_at ("\xc9\xff\xff\xff\xff\x01\x62", 7, 5);
    s_assert_skip_fails_at ("\xc7\x02\x01\x62", 4, 2);     //  type + 2 needs 3
    s_assert_skip_fails_at ("\xa5\x61\x62", 3, 1);

    //  Exactly at the boundary: one byte per element, two per pair.
    char exact [3 + 16];
    memset (exact, 0x01, sizeof exact);
    memcpy (exact, "\xdc\x00\x10", 3);
    uint8_t *buf = tr_test_copy (exact, sizeof exact);
    tr__mp_t r;
    tr__mp_init (&r, buf, sizeof exact);
    ck_assert_int_eq (tr__mp_skip (&r, 32), 0);
    ck_assert_uint_eq (tr__mp_remaining (&r), 0);
    free (buf);
    memcpy (exact, "\xdc\x00\x11", 3);
    s_assert_skip_fails_at (exact, sizeof exact, 3);
    memcpy (exact, "\xde\x00\x08", 3);
    buf = tr_test_copy (exact, sizeof exact);
    tr__mp_init (&r, buf, sizeof exact);
    ck_assert_int_eq (tr__mp_skip (&r, 32), 0);
    free (buf);
    memcpy (exact, "\xde\x00\x09", 3);
    s_assert_skip_fails_at (exact, sizeof exact, 3);
}
END_TEST

START_TEST (test_mp_map_count_past_the_end)
{
    uint32_t count = 99;
    tr__mp_t r;
    uint8_t *buf = tr_test_copy ("\x83\x01\x01\x01\x01\x01\x01", 7);
    tr__mp_init (&r, buf, 7);
    ck_assert_int_eq (tr__mp_map (&r, &count), 0);
    ck_assert_uint_eq (count, 3);
    tr__mp_init (&r, buf, 6);
    ck_assert_int_eq (tr__mp_map (&r, &count), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 1);
    free (buf);

    buf = tr_test_copy ("\xdf\xff\xff\xff\xff\x01\x02", 7);
    tr__mp_init (&r, buf, 7);
    ck_assert_int_eq (tr__mp_map (&r, &count), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 5);
    free (buf);

    buf = tr_test_copy ("\xde\x00", 2);
    tr__mp_init (&r, buf, 2);
    ck_assert_int_eq (tr__mp_map (&r, &count), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    free (buf);
}
END_TEST

START_TEST (test_mp_huge_count_is_fast)
{
    //  A megabyte of array 32 headers each claiming 2^32-1 elements: the
    //  first is refused at once, and whatever the count, the work is
    //  bounded by the bytes present.
    size_t len = 1 << 20;
    uint8_t *buf = (uint8_t *) malloc (len);
    ck_assert_ptr_nonnull (buf);
    for (size_t i = 0; i < len; i++)
        buf [i] = (uint8_t) "\xdd\xff\xff\xff\xff" [i % 5];
    int64_t start = tr_test_now_ms ();
    tr__mp_t r;
    tr__mp_init (&r, buf, len);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 5);
    //  A megabyte of one-element arrays hits the depth limit, also at once.
    memset (buf, 0x91, len);
    tr__mp_init (&r, buf, len);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EDEPTH);
    ck_assert_uint_le (r.error_at, 33);
    ck_assert_int_lt (tr_test_now_ms () - start, 1000 * tr_test_slowdown ());
    free (buf);
}
END_TEST

//  --------------------------------------------------------------------------
//  Depth

//  Skips depth containers nested inside each other (arrays, or maps
//  holding the next container as a value) with the given limit.
static int
s_skip_nested (int depth, bool maps, int max_depth, tr__mp_t *r, uint8_t **buf_p)
{
    size_t unit = maps? 2: 1;
    size_t len = unit * (size_t) depth + 1;
    uint8_t *buf = (uint8_t *) malloc (len);
    ck_assert_ptr_nonnull (buf);
    for (int i = 0; i < depth; i++) {
        if (maps) {
            buf [2 * i] = 0x81;
            buf [2 * i + 1] = 0x00;
        }
        else
            buf [i] = 0x91;
    }
    buf [len - 1] = 0x07;
    tr__mp_init (r, buf, len);
    *buf_p = buf;
    return tr__mp_skip (r, max_depth);
}

START_TEST (test_mp_depth_boundary)
{
    for (int maps = 0; maps < 2; maps++)
        for (int depth = 1; depth <= 40; depth++) {
            tr__mp_t r;
            uint8_t *buf;
            ck_assert_msg (s_skip_nested (depth, maps, depth, &r, &buf) == 0,
                           "depth %d limit %d", depth, depth);
            ck_assert_uint_eq (tr__mp_remaining (&r), 0);
            free (buf);
            ck_assert_int_eq (s_skip_nested (depth, maps, depth - 1, &r, &buf), -1);
            ck_assert_int_eq (r.error, TR_EDEPTH);
            //  At (or just after) the header of the container too deep.
            size_t unit = maps? 2: 1;
            ck_assert_uint_ge (r.error_at, unit * (size_t) (depth - 1));
            ck_assert_uint_le (r.error_at, unit * (size_t) (depth - 1) + 1);
            s_assert_sane (&r);
            free (buf);
        }
}
END_TEST

START_TEST (test_mp_depth_scalars_and_empty)
{
    //  A scalar has depth 0; an empty container still has depth 1.
    const char *scalars [] = { "\x01", "\xc0", "\xa1\x61", "\xc4\x01\x90" };
    const size_t lens [] = { 1, 1, 2, 3 };
    for (size_t i = 0; i < 4; i++) {
        uint8_t *buf = tr_test_copy (scalars [i], lens [i]);
        tr__mp_t r;
        tr__mp_init (&r, buf, lens [i]);
        ck_assert_int_eq (tr__mp_skip (&r, 0), 0);
        free (buf);
    }
    const char *empties [] = { "\x90", "\x80", "\xdc\x00\x00", "\xdf\x00\x00\x00\x00" };
    const size_t elens [] = { 1, 1, 3, 5 };
    for (size_t i = 0; i < 4; i++) {
        uint8_t *buf = tr_test_copy (empties [i], elens [i]);
        tr__mp_t r;
        tr__mp_init (&r, buf, elens [i]);
        ck_assert_int_eq (tr__mp_skip (&r, 0), -1);
        ck_assert_int_eq (r.error, TR_EDEPTH);
        tr__mp_init (&r, buf, elens [i]);
        ck_assert_int_eq (tr__mp_skip (&r, 1), 0);
        free (buf);
    }
    //  A map's keys count too: {[]: 1} is depth 2.
    uint8_t *buf = tr_test_copy ("\x81\x90\x01", 3);
    tr__mp_t r;
    tr__mp_init (&r, buf, 3);
    ck_assert_int_eq (tr__mp_skip (&r, 1), -1);
    ck_assert_int_eq (r.error, TR_EDEPTH);
    tr__mp_init (&r, buf, 3);
    ck_assert_int_eq (tr__mp_skip (&r, 2), 0);
    free (buf);
}
END_TEST

//  --------------------------------------------------------------------------
//  Errors

START_TEST (test_mp_error_offset)
{
    //  0xc1 is reported where it starts.
    uint8_t *buf = tr_test_copy ("\x93\x01\x02\xc1", 4);
    tr__mp_t r;
    tr__mp_init (&r, buf, 4);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 3);
    ck_assert_ptr_nonnull (strstr (r.why, "c1"));
    free (buf);

    //  A truncated uint 32 inside a map: reported after its type byte.
    buf = tr_test_copy ("\x81\x01\xce\x00\x00", 5);
    tr__mp_init (&r, buf, 5);
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 3);
    free (buf);
}
END_TEST

START_TEST (test_mp_first_error_sticks)
{
    uint8_t *buf = tr_test_copy ("\x01\xc0\x02", 3);
    tr__mp_t r;
    uint64_t u;
    const char *str;
    uint32_t len, count;
    tr__mp_init (&r, buf, 3);
    ck_assert_int_eq (r.error, 0);
    ck_assert_ptr_null (r.why);
    ck_assert_int_eq (tr__mp_uint (&r, &u), 0);
    ck_assert_uint_eq (u, 1);
    ck_assert_int_eq (tr__mp_str (&r, &str, &len), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 1);
    const char *first = r.why;

    //  Later failures, of any kind and anywhere, change nothing.
    ck_assert_int_eq (tr__mp_map (&r, &count), -1);
    r.p = r.start + 2;
    ck_assert_int_eq (tr__mp_fail (&r, TR_EDEPTH, "second"), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 1);
    ck_assert_ptr_eq (r.why, first);

    //  tr__mp_fail records the current position.
    tr__mp_init (&r, buf, 3);
    r.p = r.start + 2;
    ck_assert_int_eq (tr__mp_fail (&r, TR_EDEPTH, "mine"), -1);
    ck_assert_int_eq (r.error, TR_EDEPTH);
    ck_assert_uint_eq (r.error_at, 2);
    ck_assert_str_eq (r.why, "mine");
    free (buf);
}
END_TEST

START_TEST (test_mp_peek_nil_and_init)
{
    uint8_t *buf = tr_test_copy ("\xc0\x01", 2);
    tr__mp_t r;
    tr__mp_init (&r, buf, 2);
    ck_assert (tr__mp_peek_nil (&r));
    ck_assert_uint_eq (tr__mp_remaining (&r), 2);
    ck_assert_int_eq (tr__mp_skip (&r, 0), 0);
    ck_assert (!tr__mp_peek_nil (&r));
    ck_assert_int_eq (tr__mp_skip (&r, 0), 0);
    ck_assert (!tr__mp_peek_nil (&r));          //  at the end
    free (buf);

    //  A NULL buffer is an empty one, whatever the length says.
    tr__mp_init (&r, NULL, 10);
    ck_assert_uint_eq (tr__mp_remaining (&r), 0);
    ck_assert (!tr__mp_peek_nil (&r));
    ck_assert_int_eq (tr__mp_skip (&r, 32), -1);
    ck_assert_int_eq (r.error, TR_EMALFORMED);
    ck_assert_uint_eq (r.error_at, 0);
}
END_TEST

START_TEST (test_mp_never_reads_past_the_end)
{
    //  Random bytes, each string in a buffer of its exact size: whatever
    //  skip returns, the cursor stays inside and the state is sane.
    uint64_t state = 0x9e3779b97f4a7c15u;
    uint8_t bytes [48];
    for (int round = 0; round < 100000; round++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t len = (size_t) (state % sizeof bytes);
        uint64_t s = state;
        for (size_t i = 0; i < len; i++) {
            s = s * 6364136223846793005u + 1442695040888963407u;
            bytes [i] = (uint8_t) (s >> 56);
        }
        uint8_t *buf = tr_test_copy (bytes, len);
        tr__mp_t r;
        tr__mp_init (&r, buf, len);
        int rc = tr__mp_skip (&r, 8);
        ck_assert (rc == 0 || rc == -1);
        ck_assert_int_eq (rc == -1, r.error != 0);
        s_assert_sane (&r);
        free (buf);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  tr_msgpack_check (public)

START_TEST (test_mp_msgpack_check)
{
    tr_envelope_error_t err;
    ck_assert_int_eq (tr_msgpack_check ("\x01", 1, 32, &err), TR_OK);
    ck_assert_int_eq (tr_msgpack_check ("\x91\x91\x01", 3, 2, NULL), TR_OK);

    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_msgpack_check ("\x01\x02", 2, 32, &err), TR_EMALFORMED);
    ck_assert_uint_eq (err.offset, 1);
    ck_assert_ptr_nonnull (strstr (err.message, "trailing"));

    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_msgpack_check ("\x92\x01\x02\xc0", 4, 32, &err), TR_EMALFORMED);
    ck_assert_uint_eq (err.offset, 3);
    ck_assert_uint_gt (strlen (err.message), 0);

    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_msgpack_check ("", 0, 32, &err), TR_EMALFORMED);
    ck_assert_uint_eq (err.offset, 0);
    ck_assert_uint_gt (strlen (err.message), 0);
    ck_assert_int_eq (tr_msgpack_check (NULL, 0, 32, NULL), TR_EMALFORMED);

    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_msgpack_check ("\x91\x91\x01", 3, 1, &err), TR_EDEPTH);
    ck_assert_uint_gt (strlen (err.message), 0);
    ck_assert_int_eq (tr_msgpack_check ("\x92\x01", 2, 32, NULL), TR_EMALFORMED);
    ck_assert_int_eq (tr_msgpack_check ("\xc1", 1, 32, NULL), TR_EMALFORMED);

    //  Every value of the table is one value; with a byte after it, not.
    for (size_t i = 0; i < S_VALUES; i++) {
        const s_value_t *v = &s_values [i];
        uint8_t *buf = tr_test_copy (v->bytes, v->len);
        ck_assert_int_eq (tr_msgpack_check (buf, v->len, 32, NULL), TR_OK);
        free (buf);
        uint8_t *more = (uint8_t *) malloc (v->len + 1);
        memcpy (more, v->bytes, v->len);
        more [v->len] = 0xc0;
        memset (&err, 0, sizeof err);
        ck_assert_int_eq (tr_msgpack_check (more, v->len + 1, 32, &err), TR_EMALFORMED);
        ck_assert_uint_eq (err.offset, v->len);
        free (more);
    }
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *s = suite_create ("tr_mp");
    TCase *tc = tcase_create ("families");
    tcase_set_timeout (tc, 30 * tr_test_slowdown ());
    tcase_add_test (tc, test_mp_skip_every_family);
    tcase_add_test (tc, test_mp_skip_sequence);
    tcase_add_test (tc, test_mp_typed_readers);
    tcase_add_test (tc, test_mp_str_and_map_values);
    suite_add_tcase (s, tc);

    tc = tcase_create ("integers");
    tcase_set_timeout (tc, 30 * tr_test_slowdown ());
    tcase_add_test (tc, test_mp_uint_every_encoding);
    tcase_add_test (tc, test_mp_uint_rejects_negative);
    tcase_add_test (tc, test_mp_int_every_encoding);
    tcase_add_test (tc, test_mp_int_rejects_overflow);
    tcase_add_test (tc, test_mp_int_rejects_non_integers);
    suite_add_tcase (s, tc);

    tc = tcase_create ("bounds");
    tcase_set_timeout (tc, 60 * tr_test_slowdown ());
    tcase_add_test (tc, test_mp_every_prefix_fails);
    tcase_add_test (tc, test_mp_counts_past_the_end);
    tcase_add_test (tc, test_mp_map_count_past_the_end);
    tcase_add_test (tc, test_mp_huge_count_is_fast);
    tcase_add_test (tc, test_mp_never_reads_past_the_end);
    suite_add_tcase (s, tc);

    tc = tcase_create ("depth");
    tcase_set_timeout (tc, 30 * tr_test_slowdown ());
    tcase_add_test (tc, test_mp_depth_boundary);
    tcase_add_test (tc, test_mp_depth_scalars_and_empty);
    suite_add_tcase (s, tc);

    tc = tcase_create ("errors");
    tcase_set_timeout (tc, 30 * tr_test_slowdown ());
    tcase_add_test (tc, test_mp_error_offset);
    tcase_add_test (tc, test_mp_first_error_sticks);
    tcase_add_test (tc, test_mp_peek_nil_and_init);
    tcase_add_test (tc, test_mp_msgpack_check);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
