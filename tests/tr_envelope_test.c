/*  tr_envelope_test.c - tests of the envelope codec (tr_envelope.h).

    - the test vectors of protocols/vectors/envelope.txt, every one;
    - round trips, and msgpack-c's own unpacker reading what we encode;
    - the encoder's refusals;
    - hostile input: every truncation, every single-byte mutation, input
      past the size limit, deep nesting, random bytes;
    - tr_name_check.

    Inputs are copied into buffers of exactly their size before decoding,
    so that under AddressSanitizer any read past the end is caught.
*/

#include "tr_test.h"

#include <msgpack.h>
#include <troupe.h>

#include <errno.h>
#include <stdio.h>

#define S_VECTORS_DIR   TROUPE_SOURCE_DIR "/protocols/vectors"
#define S_MANIFEST      S_VECTORS_DIR "/envelope.txt"

//  --------------------------------------------------------------------------
//  Helpers

//  Asserts that two envelopes hold the same fields.
static void
s_assert_same (const tr_envelope_t *got, const tr_envelope_t *want, const char *what)
{
    ck_assert_msg (got->kind == want->kind, "%s: kind %d, want %d",
                   what, got->kind, want->kind);
    ck_assert_msg (got->priority == want->priority, "%s: priority %d, want %d",
                   what, got->priority, want->priority);
    ck_assert_msg (got->id == want->id, "%s: id", what);
    ck_assert_msg (got->corr == want->corr, "%s: corr", what);
    ck_assert_msg (got->trace == want->trace, "%s: trace", what);
    ck_assert_msg (got->deadline_us == want->deadline_us, "%s: deadline", what);
    ck_assert_msg (got->error == want->error, "%s: error %d, want %d",
                   what, got->error, want->error);
    ck_assert_msg (tr_test_same_bytes (got->to, got->to_len, want->to, want->to_len),
                   "%s: to", what);
    ck_assert_msg (tr_test_same_bytes (got->from, got->from_len, want->from, want->from_len),
                   "%s: from", what);
    ck_assert_msg (tr_test_same_bytes (got->body, got->body_len, want->body, want->body_len),
                   "%s: body", what);
}

//  Asserts the state decode leaves after a failure.
static void
s_assert_failed (int rc, const tr_envelope_t *env, const tr_envelope_error_t *err,
                 size_t len, const char *what)
{
    ck_assert_msg (rc == TR_EMALFORMED || rc == TR_EVERSION || rc == TR_EDEPTH
                || rc == TR_ETOOBIG, "%s: unexpected code %d", what, rc);
    ck_assert_msg (strlen (err->message) > 0, "%s: no message", what);
    ck_assert_msg (err->offset <= len, "%s: offset %zu past %zu", what, err->offset, len);
    tr_envelope_t zero;
    memset (&zero, 0, sizeof zero);
    ck_assert_msg (memcmp (env, &zero, sizeof zero) == 0, "%s: env not zeroed", what);
}

//  Packs one msgpack-c object on its own (to compare values, not bytes).
static void
s_repack (msgpack_object obj, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_sbuffer_init (sbuf);
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    ck_assert_int_eq (msgpack_pack_object (&pk, obj), 0);
}

//  Asserts that a msgpack-c integer object holds value.
static void
s_assert_mp_int (msgpack_object obj, int64_t value, uint64_t uvalue, bool is_signed)
{
    if (obj.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        ck_assert (is_signed? (value >= 0 && obj.via.u64 == (uint64_t) value)
                            : obj.via.u64 == uvalue);
    else {
        ck_assert_int_eq (obj.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
        ck_assert (is_signed && obj.via.i64 == value);
    }
}

static void
s_assert_mp_str (msgpack_object obj, const char *str, size_t len)
{
    ck_assert_int_eq (obj.type, MSGPACK_OBJECT_STR);
    ck_assert (tr_test_same_bytes (obj.via.str.ptr, obj.via.str.size, str, len));
}

//  Asserts that msgpack-c's unpacker reads buf as one map holding the
//  fields of env, in canonical form. msgpack-c keeps at most 32 levels
//  on its stack (the envelope map is one), so bodies deeper than 31 are
//  compared by our reader only.
static void
s_assert_msgpack_c_agrees (const uint8_t *buf, size_t len, const tr_envelope_t *env)
{
    if (env->body_len && tr_msgpack_check (env->body, env->body_len, 31, NULL))
        return;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    ck_assert_int_eq (msgpack_unpack_next (&u, (const char *) buf, len, &off),
                      MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq (off, len);
    ck_assert_int_eq (u.data.type, MSGPACK_OBJECT_MAP);
    uint64_t seen = 0;
    uint64_t last = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object key = u.data.via.map.ptr [i].key;
        msgpack_object val = u.data.via.map.ptr [i].val;
        ck_assert_int_eq (key.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        ck_assert_uint_le (key.via.u64, 10);
        ck_assert (i == 0 || key.via.u64 > last);       //  ascending
        last = key.via.u64;
        seen |= (uint64_t) 1 << key.via.u64;
        switch (key.via.u64) {
            case 0: s_assert_mp_int (val, 0, 1, false); break;
            case 1: s_assert_mp_int (val, 0, (uint64_t) env->kind, false); break;
            case 2: s_assert_mp_int (val, 0, env->id, false); break;
            case 3: s_assert_mp_int (val, 0, env->corr, false); break;
            case 4: s_assert_mp_str (val, env->to, env->to_len); break;
            case 5: s_assert_mp_str (val, env->from, env->from_len); break;
            case 6: s_assert_mp_int (val, 0, env->deadline_us, false); break;
            case 7: s_assert_mp_int (val, env->priority, 0, true); break;
            case 8: s_assert_mp_int (val, 0, env->trace, false); break;
            case 9: s_assert_mp_int (val, env->error, 0, true); break;
            default: {
                //  The body, compared as a value: repack both sides.
                msgpack_unpacked alone;
                msgpack_unpacked_init (&alone);
                ck_assert_int_eq (msgpack_unpack_next (&alone, (const char *) env->body,
                                                       env->body_len, NULL),
                                  MSGPACK_UNPACK_SUCCESS);
                msgpack_sbuffer a, b;
                s_repack (val, &a);
                s_repack (alone.data, &b);
                ck_assert (tr_test_same_bytes (a.data, a.size, b.data, b.size));
                msgpack_sbuffer_destroy (&a);
                msgpack_sbuffer_destroy (&b);
                msgpack_unpacked_destroy (&alone);
            }
        }
    }
    //  Defaults left out, required fields and from always present.
    uint64_t want = 0x37;                       //  0, 1, 2, 4, 5
    want |= (uint64_t) (env->corr != 0) << 3;
    want |= (uint64_t) (env->deadline_us != 0) << 6;
    want |= (uint64_t) (env->priority != 0) << 7;
    want |= (uint64_t) (env->trace != 0) << 8;
    want |= (uint64_t) (env->error != 0) << 9;
    want |= (uint64_t) (env->body_len != 0) << 10;
    ck_assert_uint_eq (seen, want);
    msgpack_unpacked_destroy (&u);
}

//  Encodes env, checks the result with msgpack-c, decodes it again and
//  checks the fields and that encoding is stable. Returns the encoding
//  (the caller frees) and its length.
static uint8_t *
s_round_trip (const tr_envelope_t *env, size_t *len_p, const char *what)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = tr_envelope_encode (env, &buf, &len);
    ck_assert_msg (rc == TR_OK, "%s: encode gives %s", what, tr_errname (rc));
    ck_assert_ptr_nonnull (buf);
    s_assert_msgpack_c_agrees (buf, len, env);

    uint8_t *exact = tr_test_copy (buf, len);
    tr_envelope_t back;
    tr_envelope_error_t err = { 0 };
    rc = tr_envelope_decode (exact, len, &back, &err);
    ck_assert_msg (rc == TR_OK, "%s: decode gives %s (%s at %zu)", what,
                   tr_errname (rc), err.message, err.offset);
    s_assert_same (&back, env, what);

    uint8_t *again = NULL;
    size_t again_len = 0;
    ck_assert_int_eq (tr_envelope_encode (&back, &again, &again_len), TR_OK);
    ck_assert_msg (tr_test_same_bytes (again, again_len, buf, len), "%s: unstable", what);
    free (again);
    free (exact);
    *len_p = len;
    return buf;
}

//  Decodes a copy of buf and checks what hostile-input tests require:
//  either a valid envelope that survives a round trip, or a failure with
//  a code, a message and a zeroed env. Returns the decode result.
static int
s_decode_hostile (const uint8_t *bytes, size_t len, const char *what)
{
    uint8_t *buf = tr_test_copy (bytes, len);
    tr_envelope_t env;
    tr_envelope_error_t err;
    memset (&err, 0, sizeof err);
    int rc = tr_envelope_decode (buf, len, &env, &err);
    if (rc == TR_OK) {
        ck_assert (env.to >= (const char *) buf && env.to + env.to_len <= (const char *) buf + len);
        ck_assert (env.body_len == 0
               || (env.body >= buf && env.body + env.body_len <= buf + len));
        size_t out_len;
        free (s_round_trip (&env, &out_len, what));
    }
    else
        s_assert_failed (rc, &env, &err, len, what);
    free (buf);
    return rc;
}

//  --------------------------------------------------------------------------
//  The test vectors

typedef struct {
    char file [160];
    int line;
    int result;
    bool has_fields;
    bool canonical;
    tr_envelope_t env;                  //  the expected fields
    char to [TR_NAME_MAX + 1];
    char from [TR_NAME_MAX + 1];
    uint8_t *body;
    uint8_t *data;                      //  the file's bytes, exact size
    size_t len;
} s_vector_t;

typedef struct {
    s_vector_t *items;
    size_t count;
} s_vectors_t;

static int
s_hex_value (char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

//  Decodes hex into out (at most max bytes); returns the byte count.
static size_t
s_unhex (const char *hex, uint8_t *out, size_t max)
{
    size_t n = strlen (hex);
    ck_assert_msg (n % 2 == 0 && n / 2 <= max, "bad hex '%s'", hex);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = s_hex_value (hex [2 * i]), lo = s_hex_value (hex [2 * i + 1]);
        ck_assert_msg (hi >= 0 && lo >= 0, "bad hex '%s'", hex);
        out [i] = (uint8_t) (hi << 4 | lo);
    }
    return n / 2;
}

static int
s_result_code (const char *name)
{
    const int codes [] = { TR_OK, TR_EMALFORMED, TR_EVERSION, TR_EDEPTH, TR_ETOOBIG };
    for (size_t i = 0; i < sizeof codes / sizeof codes [0]; i++)
        if (strcmp (tr_errname (codes [i]), name) == 0)
            return codes [i];
    ck_abort_msg ("unknown result '%s' in the manifest", name);
    return 1;
}

//  Reads one key=value word of a TR_OK line into v.
static void
s_parse_field (s_vector_t *v, char *word)
{
    char *value = strchr (word, '=');
    ck_assert_msg (value, "line %d: '%s' is not key=value", v->line, word);
    *value++ = 0;
    tr_envelope_t *env = &v->env;
    if (strcmp (word, "kind") == 0)
        env->kind = atoi (value);
    else if (strcmp (word, "priority") == 0)
        env->priority = atoi (value);
    else if (strcmp (word, "id") == 0)
        env->id = strtoull (value, NULL, 10);
    else if (strcmp (word, "corr") == 0)
        env->corr = strtoull (value, NULL, 10);
    else if (strcmp (word, "trace") == 0)
        env->trace = strtoull (value, NULL, 10);
    else if (strcmp (word, "deadline") == 0)
        env->deadline_us = strtoull (value, NULL, 10);
    else if (strcmp (word, "error") == 0)
        env->error = (int32_t) strtoll (value, NULL, 10);
    else if (strcmp (word, "to") == 0 || strcmp (word, "from") == 0) {
        bool to = word [0] == 't';
        size_t n = strlen (value);
        ck_assert_uint_le (n, TR_NAME_MAX);
        memcpy (to? v->to: v->from, value, n);
        if (to) env->to_len = n; else env->from_len = n;
    }
    else if (strcmp (word, "to_hex") == 0)
        env->to_len = s_unhex (value, (uint8_t *) v->to, TR_NAME_MAX);
    else if (strcmp (word, "from_hex") == 0)
        env->from_len = s_unhex (value, (uint8_t *) v->from, TR_NAME_MAX);
    else if (strcmp (word, "body") == 0) {
        size_t n = strlen (value) / 2;
        v->body = (uint8_t *) malloc (n? n: 1);
        env->body_len = s_unhex (value, v->body, n);
    }
    else if (strcmp (word, "canonical") == 0) {
        ck_assert (strcmp (value, "yes") == 0 || strcmp (value, "no") == 0);
        v->canonical = strcmp (value, "yes") == 0;
    }
    else
        ck_abort_msg ("line %d: unknown key '%s'", v->line, word);
}

//  Loads the manifest and every file it lists.
static s_vectors_t
s_load_vectors (void)
{
    s_vectors_t all = { NULL, 0 };
    size_t capacity = 0;
    FILE *file = fopen (S_MANIFEST, "r");
    ck_assert_msg (file, "cannot open %s: %s", S_MANIFEST, strerror (errno));
    char *line = NULL;
    size_t line_size = 0;
    int line_no = 0;
    while (getline (&line, &line_size, file) != -1) {
        line_no++;
        line [strcspn (line, "\r\n")] = 0;
        if (line [0] == '#' || line [0] == 0)
            continue;
        if (all.count == capacity) {
            capacity = capacity? 2 * capacity: 64;
            all.items = (s_vector_t *) realloc (all.items, capacity * sizeof *all.items);
            ck_assert_ptr_nonnull (all.items);
        }
        s_vector_t *v = &all.items [all.count++];
        memset (v, 0, sizeof *v);
        v->line = line_no;
        char *save = NULL;
        char *word = strtok_r (line, " ", &save);
        ck_assert_uint_lt (strlen (word), sizeof v->file);
        strcpy (v->file, word);
        word = strtok_r (NULL, " ", &save);
        ck_assert_msg (word, "line %d: no result", line_no);
        v->result = s_result_code (word);
        while ((word = strtok_r (NULL, " ", &save))) {
            v->has_fields = true;
            s_parse_field (v, word);
        }
        ck_assert_msg (v->has_fields == (v->result == TR_OK),
                       "line %d: fields go with TR_OK, and only there", line_no);
        char path [sizeof S_VECTORS_DIR + sizeof v->file + 1];
        snprintf (path, sizeof path, "%s/%s", S_VECTORS_DIR, v->file);
        v->data = (uint8_t *) tr_test_read_file (path, &v->len);
    }
    free (line);
    fclose (file);
    //  Now that the array stops moving, point the fields at their storage.
    for (size_t i = 0; i < all.count; i++) {
        s_vector_t *v = &all.items [i];
        v->env.to = v->to;
        v->env.from = v->from;
        v->env.body = v->env.body_len? v->body: NULL;
    }
    return all;
}

static void
s_free_vectors (s_vectors_t *all)
{
    for (size_t i = 0; i < all->count; i++) {
        free (all->items [i].body);
        free (all->items [i].data);
    }
    free (all->items);
}

//  The vector whose file name ends in name.
static const s_vector_t *
s_find_vector (const s_vectors_t *all, const char *name)
{
    for (size_t i = 0; i < all->count; i++) {
        const char *file = all->items [i].file;
        size_t n = strlen (file), m = strlen (name);
        if (n >= m && strcmp (file + n - m, name) == 0)
            return &all->items [i];
    }
    ck_abort_msg ("no vector %s", name);
    return NULL;
}

START_TEST (test_envelope_vectors)
{
    s_vectors_t all = s_load_vectors ();
    size_t valid = 0, canonical = 0;
    for (size_t i = 0; i < all.count; i++) {
        const s_vector_t *v = &all.items [i];
        tr_envelope_t env;
        tr_envelope_error_t err;
        memset (&err, 0, sizeof err);
        int rc = tr_envelope_decode (v->data, v->len, &env, &err);
        ck_assert_msg (rc == v->result, "%s: got %s (%s at %zu), want %s",
                       v->file, tr_errname (rc), err.message, err.offset,
                       tr_errname (v->result));
        if (rc != TR_OK) {
            s_assert_failed (rc, &env, &err, v->len, v->file);
            continue;
        }
        valid++;
        s_assert_same (&env, &v->env, v->file);
        //  Fields point into the buffer; the body is the bytes as sent.
        ck_assert (env.body_len == 0 || (env.body >= v->data
                                     && env.body + env.body_len <= v->data + v->len));
        ck_assert (env.to >= (const char *) v->data
                && env.to + env.to_len <= (const char *) v->data + v->len);

        size_t len;
        uint8_t *out = s_round_trip (&env, &len, v->file);
        if (v->canonical) {
            canonical++;
            ck_assert_msg (tr_test_same_bytes (out, len, v->data, v->len),
                           "%s: the encoder does not reproduce the vector", v->file);
        }
        else
            ck_assert_msg (!tr_test_same_bytes (out, len, v->data, v->len),
                           "%s: marked non-canonical, but it is", v->file);
        free (out);
    }
    //  The manifest was read, and holds both kinds.
    ck_assert_uint_ge (all.count, 150);
    ck_assert_uint_ge (valid, 50);
    ck_assert_uint_ge (canonical, 40);
    ck_assert_uint_gt (all.count - valid, 100);
    s_free_vectors (&all);
}
END_TEST

START_TEST (test_envelope_vector_offsets)
{
    //  A few failures say where: on the field, the key, or the byte.
    s_vectors_t all = s_load_vectors ();
    struct { const char *name; size_t offset; } cases [] = {
        { "bad-kind-5.bin", 4 },            //  86 00 01 01 [05]
        { "bad-version-2.bin", 2 },         //  86 00 [02]
        { "bad-trailing-byte.bin", 23 },    //  after the 23-byte example
        { "bad-key-64.bin", 23 },           //  the key after the example's pairs
        { "bad-c1-top.bin", 0 },
        { "bad-body-array32-huge.bin", 25 },    //  after 0a dd ff ff ff ff
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        const s_vector_t *v = s_find_vector (&all, cases [i].name);
        tr_envelope_t env;
        tr_envelope_error_t err;
        ck_assert_int_ne (tr_envelope_decode (v->data, v->len, &env, &err), TR_OK);
        ck_assert_msg (err.offset == cases [i].offset, "%s: offset %zu, want %zu (%s)",
                       cases [i].name, err.offset, cases [i].offset, err.message);
    }
    s_free_vectors (&all);
}
END_TEST

//  --------------------------------------------------------------------------
//  Round trips

//  Body number i (0 = none) into sbuf, packed by msgpack-c.
static void
s_pack_body (int i, msgpack_sbuffer *sbuf)
{
    msgpack_packer pk;
    msgpack_sbuffer_init (sbuf);
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    char big [70000];
    memset (big, 'x', sizeof big);
    switch (i) {
        case 0: break;
        case 1: msgpack_pack_nil (&pk); break;
        case 2: msgpack_pack_true (&pk); break;
        case 3: msgpack_pack_uint64 (&pk, UINT64_MAX); break;
        case 4: msgpack_pack_int64 (&pk, INT64_MIN); break;
        case 5: msgpack_pack_double (&pk, 3.5); break;
        case 6: msgpack_pack_float (&pk, 1.25f); break;
        case 7: msgpack_pack_str_with_body (&pk, "hello", 5); break;
        case 8: msgpack_pack_str_with_body (&pk, big, 300); break;
        case 9: msgpack_pack_bin_with_body (&pk, "\x00\xc1\xff", 3); break;
        case 10: msgpack_pack_ext_with_body (&pk, "abcd", 4, 5); break;
        case 11:
            msgpack_pack_array (&pk, 4);
            msgpack_pack_int (&pk, 1);
            msgpack_pack_str_with_body (&pk, "a", 1);
            msgpack_pack_array (&pk, 1);
            msgpack_pack_nil (&pk);
            msgpack_pack_map (&pk, 0);
            break;
        case 12:
            msgpack_pack_map (&pk, 2);
            msgpack_pack_str_with_body (&pk, "k", 1);
            msgpack_pack_array (&pk, 3);
            for (int k = 1; k <= 3; k++)
                msgpack_pack_int (&pk, k);
            msgpack_pack_int (&pk, 7);
            msgpack_pack_map (&pk, 1);
            msgpack_pack_str_with_body (&pk, "z", 1);
            msgpack_pack_false (&pk);
            break;
        case 13: msgpack_pack_bin_with_body (&pk, big, sizeof big); break;
        default:                                //  the depth limit
            for (int k = 1; k < TR_ENVELOPE_MAX_DEPTH; k++)
                msgpack_pack_array (&pk, 1);
            msgpack_pack_array (&pk, 0);
            break;
    }
}

#define S_BODIES 15

START_TEST (test_envelope_round_trips)
{
    const uint64_t ids [] = { 0, 1, 127, 128, 255, 256, 65535, 65536,
                              4294967295u, 4294967296u, (uint64_t) 1 << 63, UINT64_MAX };
    const int32_t errors [] = { TR_ENOACTOR, TR_ETIMEDOUT, TR_EMALFORMED, -1000,
                                INT32_MIN, -1 };
    char long_to [TR_NAME_MAX], long_from [TR_NAME_MAX];
    memset (long_to, 'x', sizeof long_to);
    memset (long_from, 'y', sizeof long_from);
    const struct { const char *to; size_t to_len; const char *from; size_t from_len; } names [] = {
        { "pong", 4, "ping", 4 },
        { "a", 1, "", 0 },
        { long_to, sizeof long_to, long_from, sizeof long_from },
        { "\xe6\x97\xa5\xe6\x9c\xac", 6, "$sys", 4 },
        { "\xf4\x8f\xbf\xbf", 4, "a=b", 3 },
        { long_to, 32, long_from, 31 },
    };
    const size_t n_ids = sizeof ids / sizeof ids [0];
    const size_t n_names = sizeof names / sizeof names [0];
    int count = 0;
    for (int body = 0; body < S_BODIES; body++) {
        msgpack_sbuffer sbuf;
        s_pack_body (body, &sbuf);
        for (int kind = TR_KIND_TELL; kind <= TR_KIND_ERROR; kind++)
            for (size_t i = 0; i < n_ids; i++)
                for (size_t n = 0; n < n_names; n++) {
                    bool answer = kind == TR_KIND_REPLY || kind == TR_KIND_ERROR;
                    tr_envelope_t env = {
                        .kind = kind,
                        .priority = (int) ((i + n) % 3) - 1,
                        .id = ids [i],
                        .corr = answer? ids [(i + 1) % n_ids] | 1: 0,
                        .trace = (i + n) % 2? ids [(i + 3) % n_ids]: 0,
                        .deadline_us = kind == TR_KIND_ASK? ids [(i + 5) % n_ids]: 0,
                        .error = kind == TR_KIND_ERROR? errors [(i + n) % 6]: 0,
                        .to = names [n].to, .to_len = names [n].to_len,
                        .from = names [n].from, .from_len = names [n].from_len,
                        .body = sbuf.size? (const uint8_t *) sbuf.data: NULL,
                        .body_len = sbuf.size,
                    };
                    char what [80];
                    snprintf (what, sizeof what, "body %d kind %d id %zu names %zu",
                              body, kind, i, n);
                    size_t len;
                    free (s_round_trip (&env, &len, what));
                    count++;
                }
        msgpack_sbuffer_destroy (&sbuf);
    }
    ck_assert_int_eq (count, S_BODIES * 4 * (int) (n_ids * n_names));
}
END_TEST

START_TEST (test_envelope_example_bytes)
{
    //  Section 1.6 of the specification, from the encoder.
    const uint8_t want [] = {
        0x86, 0x00, 0x01, 0x01, 0x01, 0x02, 0x01,
        0x04, 0xa4, 'p', 'o', 'n', 'g', 0x05, 0xa4, 'p', 'i', 'n', 'g',
        0x0a, 0xa2, 'h', 'i'
    };
    tr_envelope_t env = {
        .kind = TR_KIND_TELL, .id = 1, .to = "pong", .to_len = 4,
        .from = "ping", .from_len = 4,
        .body = (const uint8_t *) "\xa2hi", .body_len = 3
    };
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, &len), TR_OK);
    ck_assert (tr_test_same_bytes (buf, len, want, sizeof want));
    free (buf);

    //  An anonymous sender: from is NULL with length 0, written as "".
    env.from = NULL;
    env.from_len = 0;
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, &len), TR_OK);
    ck_assert_uint_eq (len, sizeof want - 4);
    ck_assert (memcmp (buf + 13, "\x05\xa0", 2) == 0);
    free (buf);
}
END_TEST

//  --------------------------------------------------------------------------
//  The encoder's refusals

static tr_envelope_t
s_good_tell (void)
{
    tr_envelope_t env = {
        .kind = TR_KIND_TELL, .id = 1, .to = "pong", .to_len = 4,
        .from = "ping", .from_len = 4
    };
    return env;
}

static int
s_encode (const tr_envelope_t *env)
{
    uint8_t *buf = (uint8_t *) "untouched";
    size_t len = 12345;
    int rc = tr_envelope_encode (env, &buf, &len);
    if (rc == TR_OK)
        free (buf);
    else {
        //  Nothing handed out on failure.
        ck_assert_str_eq ((const char *) buf, "untouched");
        ck_assert_uint_eq (len, 12345);
    }
    return rc;
}

START_TEST (test_envelope_encode_refusals)
{
    tr_envelope_t env = s_good_tell ();
    ck_assert_int_eq (s_encode (&env), TR_OK);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq (tr_envelope_encode (NULL, &buf, &len), TR_EINVAL);
    ck_assert_int_eq (tr_envelope_encode (&env, NULL, &len), TR_EINVAL);
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, NULL), TR_EINVAL);

    //  Names.
    char long_name [TR_NAME_MAX + 1];
    memset (long_name, 'x', sizeof long_name);
    struct { const char *name; size_t len; } bad_names [] = {
        { NULL, 0 }, { NULL, 3 }, { "", 0 }, { "po ng", 5 }, { "po\x01ng", 5 },
        { "pong\x7f", 5 }, { "a\0b", 3 }, { "\xc2\x85", 2 }, { "\xc0\xaf", 2 },
        { "\xed\xa0\x80", 3 }, { "\xf4\x90\x80\x80", 4 }, { "ab\xe6\x97", 4 },
        { long_name, sizeof long_name },
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names [0]; i++) {
        env = s_good_tell ();
        env.to = bad_names [i].name;
        env.to_len = bad_names [i].len;
        ck_assert_msg (s_encode (&env) == TR_EINVAL, "to #%zu", i);
        env = s_good_tell ();
        env.from = bad_names [i].name;
        env.from_len = bad_names [i].len;
        //  from may be empty (anonymous), in any spelling.
        int want = bad_names [i].len == 0? TR_OK: TR_EINVAL;
        ck_assert_msg (s_encode (&env) == want, "from #%zu", i);
    }

    //  Kind, priority, corr and error rules.
    const int bad_kinds [] = { 0, 5, -1, 100 };
    for (size_t i = 0; i < 4; i++) {
        env = s_good_tell ();
        env.kind = bad_kinds [i];
        ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    }
    env = s_good_tell ();
    env.priority = 2;
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.priority = -2;
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env = s_good_tell ();
    env.corr = 5;                               //  corr in a tell
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.kind = TR_KIND_ASK;                     //  corr in an ask
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.kind = TR_KIND_REPLY;
    ck_assert_int_eq (s_encode (&env), TR_OK);
    env.corr = 0;                               //  reply without corr
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.corr = 5;
    env.error = TR_EHANDLER;                    //  error code in a reply
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.kind = TR_KIND_ERROR;
    ck_assert_int_eq (s_encode (&env), TR_OK);
    env.error = 0;                              //  error without code
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.error = 3;                              //  positive code
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env.error = TR_EHANDLER;
    env.corr = 0;                               //  error without corr
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
    env = s_good_tell ();
    env.error = TR_EHANDLER;                    //  error code in a tell
    ck_assert_int_eq (s_encode (&env), TR_EINVAL);
}
END_TEST

START_TEST (test_envelope_encode_bad_body)
{
    struct { const char *body; size_t len; int rc; } cases [] = {
        { "\xc1", 1, TR_EMALFORMED },
        { "\x01\x02", 2, TR_EMALFORMED },               //  two values
        { "\x92\x01", 2, TR_EMALFORMED },               //  truncated
        { "\xdd\xff\xff\xff\xff", 5, TR_EMALFORMED },
        { "\xa5hi", 3, TR_EMALFORMED },
        { NULL, 4, TR_EMALFORMED },                     //  no bytes at all
        { "\xc0", 1, TR_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        tr_envelope_t env = s_good_tell ();
        env.body = (const uint8_t *) cases [i].body;
        env.body_len = cases [i].len;
        ck_assert_msg (s_encode (&env) == cases [i].rc, "body #%zu", i);
    }
    //  Nesting: 32 levels are fine, 33 are not.
    uint8_t deep [40];
    memset (deep, 0x91, sizeof deep);
    tr_envelope_t env = s_good_tell ();
    env.body = deep;
    deep [31] = 0x90;
    env.body_len = 32;
    ck_assert_int_eq (s_encode (&env), TR_OK);
    deep [31] = 0x91;
    deep [32] = 0x90;
    env.body_len = 33;
    ck_assert_int_eq (s_encode (&env), TR_EDEPTH);
}
END_TEST

//  Builds a body that is one bin 32 value of len bytes in all.
static uint8_t *
s_bin_body (size_t len)
{
    uint8_t *body = (uint8_t *) calloc (1, len);
    ck_assert_ptr_nonnull (body);
    size_t data = len - 5;
    body [0] = 0xc6;
    body [1] = (uint8_t) (data >> 24);
    body [2] = (uint8_t) (data >> 16);
    body [3] = (uint8_t) (data >> 8);
    body [4] = (uint8_t) data;
    return body;
}

START_TEST (test_envelope_size_limit)
{
    //  The header the encoder writes around a body, for this tell.
    tr_envelope_t env = s_good_tell ();
    env.body = (const uint8_t *) "\xc0";
    env.body_len = 1;
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, &len), TR_OK);
    size_t header = len - 1;
    free (buf);

    //  Exactly TR_ENVELOPE_MAX bytes: encoded and decoded.
    size_t body_len = TR_ENVELOPE_MAX - header;
    uint8_t *body = s_bin_body (body_len);
    env.body = body;
    env.body_len = body_len;
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, &len), TR_OK);
    ck_assert_uint_eq (len, TR_ENVELOPE_MAX);
    tr_envelope_t back;
    tr_envelope_error_t err;
    ck_assert_int_eq (tr_envelope_decode (buf, len, &back, &err), TR_OK);
    ck_assert_uint_eq (back.body_len, body_len);

    //  One byte more, either way.
    uint8_t *more = (uint8_t *) realloc (buf, len + 1);
    ck_assert_ptr_nonnull (more);
    more [len] = 0;
    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_envelope_decode (more, len + 1, &back, &err), TR_ETOOBIG);
    s_assert_failed (TR_ETOOBIG, &back, &err, len + 1, "one byte too big");
    free (more);
    free (body);
    body = s_bin_body (body_len + 1);
    env.body = body;
    env.body_len = body_len + 1;
    ck_assert_int_eq (s_encode (&env), TR_ETOOBIG);
    free (body);

    //  A body larger than the limit by itself is refused before it is read.
    body = (uint8_t *) malloc (TR_ENVELOPE_MAX + 1);
    ck_assert_ptr_nonnull (body);
    memset (body, 0xc1, TR_ENVELOPE_MAX + 1);
    env.body = body;
    env.body_len = TR_ENVELOPE_MAX + 1;
    ck_assert_int_eq (s_encode (&env), TR_ETOOBIG);

    //  A large hostile buffer: size is checked before anything else.
    ck_assert_int_eq (tr_envelope_decode (body, TR_ENVELOPE_MAX + 1, &back, &err),
                      TR_ETOOBIG);
    free (body);
}
END_TEST

//  --------------------------------------------------------------------------
//  Hostile input

//  Several valid envelopes to cut and mutate.
static uint8_t *
s_sample (int i, size_t *len_p)
{
    tr_envelope_t env = s_good_tell ();
    msgpack_sbuffer sbuf;
    s_pack_body (i == 0? 12: i == 1? 11: 0, &sbuf);
    if (sbuf.size) {
        env.body = (const uint8_t *) sbuf.data;
        env.body_len = sbuf.size;
    }
    if (i == 1) {
        env.kind = TR_KIND_ASK;
        env.id = 0x0102030405060708u;
        env.deadline_us = 1700000000123456u;
        env.priority = -1;
        env.trace = 99;
        env.from = "\xe6\x97\xa5";
        env.from_len = 3;
    }
    if (i == 2) {
        env.kind = TR_KIND_ERROR;
        env.corr = 300;
        env.error = -1000;
        env.priority = 1;
    }
    uint8_t *buf;
    ck_assert_int_eq (tr_envelope_encode (&env, &buf, len_p), TR_OK);
    msgpack_sbuffer_destroy (&sbuf);
    return buf;
}

START_TEST (test_envelope_every_truncation)
{
    s_vectors_t all = s_load_vectors ();
    for (int i = 0; i < 6; i++) {
        size_t len;
        uint8_t *buf;
        if (i < 3)
            buf = s_sample (i, &len);
        else {
            const char *names [] = { "ok-reserved-11.bin", "ok-max-ids.bin",
                                     "ok-body-depth-32.bin" };
            const s_vector_t *v = s_find_vector (&all, names [i - 3]);
            buf = tr_test_copy (v->data, v->len);
            len = v->len;
        }
        for (size_t cut = 0; cut < len; cut++) {
            char what [64];
            snprintf (what, sizeof what, "sample %d cut to %zu", i, cut);
            ck_assert_msg (s_decode_hostile (buf, cut, what) == TR_EMALFORMED, "%s", what);
        }
        ck_assert_int_eq (s_decode_hostile (buf, len, "whole"), TR_OK);
        free (buf);
    }
    s_free_vectors (&all);
}
END_TEST

START_TEST (test_envelope_every_mutation)
{
    int outcomes [4] = { 0 };           //  ok, malformed, version, depth
    for (int i = 0; i < 3; i++) {
        size_t len;
        uint8_t *buf = s_sample (i, &len);
        uint8_t *mutant = tr_test_copy (buf, len);
        for (size_t at = 0; at < len; at++) {
            for (int value = 0; value < 256; value++) {
                if (value == buf [at])
                    continue;
                mutant [at] = (uint8_t) value;
                char what [64];
                snprintf (what, sizeof what, "sample %d byte %zu = 0x%02x", i, at, value);
                int rc = s_decode_hostile (mutant, len, what);
                outcomes [rc == TR_OK? 0: rc == TR_EMALFORMED? 1:
                          rc == TR_EVERSION? 2: 3]++;
            }
            mutant [at] = buf [at];
        }
        free (mutant);
        free (buf);
    }
    //  Both sides were reached: some mutants are valid, most are not.
    ck_assert_int_gt (outcomes [0], 100);
    ck_assert_int_gt (outcomes [1], 1000);
    ck_assert_int_gt (outcomes [2], 0);
}
END_TEST

START_TEST (test_envelope_deep_nesting)
{
    //  The header of a tell, then a body of n nested arrays.
    tr_envelope_t env = s_good_tell ();
    env.body = (const uint8_t *) "\xc0";
    env.body_len = 1;
    uint8_t *head;
    size_t head_len;
    ck_assert_int_eq (tr_envelope_encode (&env, &head, &head_len), TR_OK);
    head_len -= 2;                          //  without the pair 0a c0

    const size_t depths [] = { 31, 32, 33, 1000, 1000000 };
    for (size_t i = 0; i < sizeof depths / sizeof depths [0]; i++) {
        size_t n = depths [i];
        size_t len = head_len + 1 + n + 1;
        uint8_t *buf = (uint8_t *) malloc (len);
        ck_assert_ptr_nonnull (buf);
        memcpy (buf, head, head_len);
        buf [head_len] = 0x0a;
        memset (buf + head_len + 1, 0x91, n);
        buf [len - 1] = 0x2a;
        tr_envelope_t back;
        tr_envelope_error_t err;
        int rc = tr_envelope_decode (buf, len, &back, &err);
        ck_assert_int_eq (rc, n <= TR_ENVELOPE_MAX_DEPTH? TR_OK: TR_EDEPTH);
        if (rc == TR_EDEPTH)
            ck_assert_uint_le (err.offset, head_len + 1 + TR_ENVELOPE_MAX_DEPTH + 1);
        //  The same nesting in a reserved field.
        buf [head_len] = 0x0b;
        buf [0]++;
        uint8_t *with_body = (uint8_t *) malloc (len + 2);
        memcpy (with_body, buf, len);
        memcpy (with_body + len, "\x0a\xc0", 2);
        rc = tr_envelope_decode (with_body, len + 2, &back, &err);
        ck_assert_int_eq (rc, n <= TR_ENVELOPE_MAX_DEPTH? TR_OK: TR_EDEPTH);
        free (with_body);
        free (buf);
    }
    free (head);
}
END_TEST

//  Appends one random value, biased towards what an envelope holds.
static size_t
s_random_value (uint64_t *state, uint8_t *out, size_t room)
{
#   define S_P(lit) { lit, sizeof (lit) - 1 }
    static const struct { const char *bytes; size_t len; } pieces [] = {
        S_P ("\x01"), S_P ("\x02"), S_P ("\x03"), S_P ("\x04"), S_P ("\xff"),
        S_P ("\xc0"), S_P ("\xa4pong"), S_P ("\xa0"), S_P ("\xa2\x61\x20"),
        S_P ("\xcc\x05"), S_P ("\xd0\xff"), S_P ("\x00"),
        S_P ("\xcf\x00\x00\x00\x00\x00\x00\x00\x07"), S_P ("\x91\x01"),
        S_P ("\x81\x01\x02"), S_P ("\xc4\x01\x00"), S_P ("\xd9\x01\x61"),
        S_P ("\xfe"), S_P ("\xd2\x80\x00\x00\x00"), S_P ("\xc1"), S_P ("\x92"),
        S_P ("\xdd\xff\xff\xff\xff"),
    };
#   undef S_P
    size_t i = (size_t) (tr_test_random (state) % (sizeof pieces / sizeof pieces [0]));
    if (pieces [i].len > room)
        return 0;
    memcpy (out, pieces [i].bytes, pieces [i].len);
    return pieces [i].len;
}

START_TEST (test_envelope_random_bytes)
{
    uint64_t state = 0x5eed5eed5eed5eedu;
    uint8_t bytes [96];
    int valid = 0;
    for (int round = 0; round < 300000; round++) {
        size_t len = 0;
        uint64_t r = tr_test_random (&state);
        if (r % 2) {
            //  Plain random bytes, often starting with a small map.
            len = (size_t) (r >> 8) % 64;
            for (size_t i = 0; i < len; i++)
                bytes [i] = (uint8_t) tr_test_random (&state);
            if (len && r % 4 == 1)
                bytes [0] = (uint8_t) (0x80 | (r >> 20) % 12);
        }
        else {
            //  A map of the required pairs, each one sometimes replaced by
            //  a random key (mostly 0..12) and an envelope-ish value, and
            //  a few random pairs after them.
            static const char *required [] = { "\x00\x01", "\x01\x01",
                                               "\x02\x05", "\x04\xa1\x62" };
            static const size_t required_len [] = { 2, 2, 2, 3 };
            size_t pairs = 4 + (size_t) (r >> 8) % 4;
            bytes [len++] = (uint8_t) (0x80 | pairs);
            for (size_t p = 0; p < pairs; p++) {
                uint64_t k = tr_test_random (&state);
                if (p < 4 && k % 8) {
                    memcpy (bytes + len, required [p], required_len [p]);
                    len += required_len [p];
                    continue;
                }
                bytes [len++] = (uint8_t) (k % 16 == 0? 0x40: (k >> 8) % 13);
                len += s_random_value (&state, bytes + len, sizeof bytes - len);
            }
        }
        char what [32];
        snprintf (what, sizeof what, "round %d", round);
        if (s_decode_hostile (bytes, len, what) == TR_OK)
            valid++;
        tr_msgpack_check (bytes, len, TR_ENVELOPE_MAX_DEPTH, NULL);
    }
    //  The structured half reaches valid envelopes now and then.
    ck_assert_int_gt (valid, 0);
}
END_TEST

START_TEST (test_envelope_decode_arguments)
{
    tr_envelope_t env;
    tr_envelope_error_t err;
    ck_assert_int_eq (tr_envelope_decode ((const uint8_t *) "\x80", 1, NULL, &err), TR_EINVAL);
    ck_assert_int_eq (tr_envelope_decode (NULL, 5, &env, &err), TR_EINVAL);
    memset (&err, 0, sizeof err);
    ck_assert_int_eq (tr_envelope_decode (NULL, 0, &env, &err), TR_EMALFORMED);
    s_assert_failed (TR_EMALFORMED, &env, &err, 0, "NULL, 0");
    //  err is optional.
    ck_assert_int_eq (tr_envelope_decode ((const uint8_t *) "\x80", 1, &env, NULL),
                      TR_EMALFORMED);
}
END_TEST

//  --------------------------------------------------------------------------
//  Names

START_TEST (test_envelope_name_check)
{
    char max [TR_NAME_MAX + 1];
    memset (max, 'n', sizeof max);
    struct { const char *name; size_t len; } good [] = {
        { "a", 1 }, { "pong", 4 }, { "$node", 5 }, { "a=b#c/d", 7 }, { "~", 1 },
        { "abc", 2 },                       //  the length counts, not the NUL
        { "\xc2\xa0", 2 },                  //  U+00A0
        { "\xc3\xb6", 2 }, { "\xe6\x97\xa5", 3 }, { "\xef\xbf\xbf", 3 },
        { "\xf0\x9f\x98\x80", 4 }, { "\xf4\x8f\xbf\xbf", 4 },      //  U+10FFFF
        { "\xed\x9f\xbf", 3 }, { "\xee\x80\x80", 3 },   //  around the surrogates
        { max, TR_NAME_MAX },
    };
    for (size_t i = 0; i < sizeof good / sizeof good [0]; i++)
        ck_assert_msg (tr_name_check (good [i].name, good [i].len) == TR_OK, "good #%zu", i);

    struct { const char *name; size_t len; } bad [] = {
        { NULL, 0 }, { NULL, 1 }, { "", 0 }, { max, TR_NAME_MAX + 1 },
        { "a b", 3 }, { " ", 1 }, { "a\0b", 3 }, { "\t", 1 }, { "\x1f", 1 },
        { "\x7f", 1 }, { "\xc2\x80", 2 }, { "\xc2\x9f", 2 },     //  C1
        { "\xc0\x80", 2 }, { "\xc1\xbf", 2 }, { "\xe0\x9f\xbf", 3 },   //  overlong
        { "\xf0\x8f\xbf\xbf", 4 },
        { "\xed\xa0\x80", 3 }, { "\xed\xbf\xbf", 3 },      //  surrogates
        { "\xf4\x90\x80\x80", 4 }, { "\xf7\xbf\xbf\xbf", 4 },  //  > U+10FFFF
        { "\xf8\x88\x80\x80\x80", 5 }, { "\xfe", 1 }, { "\xff", 1 },
        { "\x80", 1 }, { "a\xbf", 2 },                     //  lone continuation
        { "\xe6\x97", 2 }, { "\xf0\x9f\x98", 3 },          //  cut short
        { "\xc3\x41", 2 }, { "\xe6\x41\xa5", 3 },          //  bad continuation
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        ck_assert_msg (tr_name_check (bad [i].name, bad [i].len) == TR_EINVAL, "bad #%zu", i);
}
END_TEST

static Suite *
s_suite (void)
{
    int k = tr_test_slowdown ();
    Suite *s = suite_create ("tr_envelope");
    TCase *tc = tcase_create ("vectors");
    tcase_set_timeout (tc, 60 * k);
    tcase_add_test (tc, test_envelope_vectors);
    tcase_add_test (tc, test_envelope_vector_offsets);
    suite_add_tcase (s, tc);

    tc = tcase_create ("codec");
    tcase_set_timeout (tc, 120 * k);
    tcase_add_test (tc, test_envelope_round_trips);
    tcase_add_test (tc, test_envelope_example_bytes);
    tcase_add_test (tc, test_envelope_encode_refusals);
    tcase_add_test (tc, test_envelope_encode_bad_body);
    tcase_add_test (tc, test_envelope_size_limit);
    tcase_add_test (tc, test_envelope_decode_arguments);
    tcase_add_test (tc, test_envelope_name_check);
    suite_add_tcase (s, tc);

    tc = tcase_create ("hostile");
    tcase_set_timeout (tc, 300 * k);
    tcase_add_test (tc, test_envelope_every_truncation);
    tcase_add_test (tc, test_envelope_every_mutation);
    tcase_add_test (tc, test_envelope_deep_nesting);
    tcase_add_test (tc, test_envelope_random_bytes);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
