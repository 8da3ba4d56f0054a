/*  tr_wire_test.c - tests of the broker protocol's command frames
    (protocols/tr_wire.h, protocols/2-broker.md).

    - the verb table, both ways;
    - the writer: exact bytes of a few canonical frames, the shortest form
      at every integer, str and container boundary, round trips of every
      verb through tr__wire_parse and tr__wire_check and through
      msgpack-c's own unpacker, the sticky failed flag;
    - the test vectors of protocols/vectors/broker.txt, every one, and
      each valid one rewritten in canonical form through the writer;
    - hostile input: every cut of every valid vector, every single-byte
      mutation, random mutations, frames past the size limit.

    Inputs are copied into buffers of exactly their size before they are
    read, so that under AddressSanitizer any read past the end is caught.
*/

#include "tr_test.h"
#include "tr_wire.h"

#include <msgpack.h>
#include <troupe.h>

#include <errno.h>
#include <stdio.h>

#define S_VECTORS_DIR   TROUPE_SOURCE_DIR "/protocols/vectors"
#define S_MANIFEST      S_VECTORS_DIR "/broker.txt"

//  --------------------------------------------------------------------------
//  Helpers

//  Parses and checks a copy of the bytes; returns the first failure's
//  code or TR_OK, and the command in *cmd (pointing into *copy_p, which
//  the caller frees).
static int
s_read (const void *bytes, size_t len, tr__wire_cmd_t *cmd, uint8_t **copy_p)
{
    *copy_p = tr_test_copy (bytes, len);
    int rc = tr__wire_parse (*copy_p, len, cmd);
    if (rc == TR_OK)
        rc = tr__wire_check (cmd);
    if (rc != TR_OK)
        ck_assert_msg (cmd->why && cmd->why [0], "a failure (%s) without a reason",
                       tr_errname (rc));
    else
        ck_assert_ptr_null (cmd->why);
    return rc;
}

//  The codes a reader may give for any input.
static bool
s_known_code (int rc)
{
    return rc == TR_OK || rc == TR_EMALFORMED || rc == TR_EINVAL || rc == TR_EPROTO
        || rc == TR_EVERSION || rc == TR_ETOOBIG;
}

//  Rewrites the value at r through the writer's typed functions: the
//  canonical form. Values the writer has no function for (floats, bin,
//  ext) are copied as they are. Only called on checked frames.
static void
s_rewrite_value (tr__mp_t *r, tr__wire_out_t *out)
{
    uint8_t type = *r->p;
    uint64_t u;
    int64_t i;
    const char *str;
    uint32_t len, n;
    if (type <= 0x7f || (type >= 0xcc && type <= 0xcf)) {
        ck_assert_int_eq (tr__mp_uint (r, &u), 0);
        tr__wire_uint (out, u);
    }
    else
    if (type >= 0xe0 || (type >= 0xd0 && type <= 0xd3)) {
        ck_assert_int_eq (tr__mp_int (r, &i), 0);
        tr__wire_int (out, i);
    }
    else
    if ((type >= 0xa0 && type <= 0xbf) || (type >= 0xd9 && type <= 0xdb)) {
        ck_assert_int_eq (tr__mp_str (r, &str, &len), 0);
        tr__wire_str (out, str, len);
    }
    else
    if ((type >= 0x90 && type <= 0x9f) || type == 0xdc || type == 0xdd) {
        ck_assert_int_eq (tr__mp_array (r, &n), 0);
        tr__wire_array (out, n);
        for (uint32_t k = 0; k < n; k++)
            s_rewrite_value (r, out);
    }
    else
    if (type <= 0x8f || type == 0xde || type == 0xdf) {
        ck_assert_int_eq (tr__mp_map (r, &n), 0);
        tr__wire_map (out, n);
        for (uint32_t k = 0; k < 2 * n; k++)
            s_rewrite_value (r, out);
    }
    else {
        const uint8_t *at = r->p;
        ck_assert_int_eq (tr__mp_skip (r, TR__WIRE_ARG_DEPTH), 0);
        tr__wire_raw (out, at, (size_t) (r->p - at));
    }
}

//  Writes a checked command again in canonical form into out (begun here).
static void
s_rewrite (const tr__wire_cmd_t *cmd, tr__wire_out_t *out)
{
    tr__wire_begin_word (out, cmd->word, cmd->word_len, cmd->seq, cmd->nargs);
    tr__mp_t r = cmd->args;
    for (uint32_t k = 0; k < cmd->nargs; k++)
        s_rewrite_value (&r, out);
    ck_assert (!out->failed);
}

//  Asserts that a valid frame survives a rewrite: the canonical form
//  reads as the same command, and rewriting it changes nothing more.
//  Returns true if the frame was canonical already.
static bool
s_assert_rewrite (const uint8_t *data, size_t len, const tr__wire_cmd_t *cmd,
                  const char *what)
{
    tr__wire_out_t first, second;
    s_rewrite (cmd, &first);
    tr__wire_cmd_t back;
    uint8_t *copy;
    int rc = s_read (first.data, first.size, &back, &copy);
    ck_assert_msg (rc == TR_OK, "%s: the rewrite reads as %s (%s)", what,
                   tr_errname (rc), back.why);
    ck_assert_msg (back.verb == cmd->verb && back.seq == cmd->seq
                && back.nargs == cmd->nargs
                && tr_test_same_bytes (back.word, back.word_len, cmd->word, cmd->word_len),
                   "%s: the rewrite reads differently", what);
    s_rewrite (&back, &second);
    ck_assert_msg (tr_test_same_bytes (first.data, first.size, second.data, second.size),
                   "%s: rewriting is not stable", what);
    bool canonical = tr_test_same_bytes (first.data, first.size, data, len);
    tr__wire_end (&first);
    tr__wire_end (&second);
    free (copy);
    return canonical;
}

//  Asserts that msgpack-c's unpacker reads the frame as one array of
//  nargs + 2 elements starting with the verb and SEQ.
static void
s_assert_msgpack_c_agrees (const tr__wire_out_t *out, const char *word,
                           uint64_t seq, uint32_t nargs)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t off = 0;
    ck_assert_int_eq (msgpack_unpack_next (&u, (const char *) out->data, out->size, &off),
                      MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq (off, out->size);
    ck_assert_int_eq (u.data.type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq (u.data.via.array.size, nargs + 2);
    msgpack_object verb = u.data.via.array.ptr [0];
    msgpack_object seq_obj = u.data.via.array.ptr [1];
    ck_assert_int_eq (verb.type, MSGPACK_OBJECT_STR);
    ck_assert (tr_test_same_bytes (verb.via.str.ptr, verb.via.str.size, word, strlen (word)));
    ck_assert_int_eq (seq_obj.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ck_assert_uint_eq (seq_obj.via.u64, seq);
    msgpack_unpacked_destroy (&u);
}

static void
s_assert_hex (const tr__wire_out_t *out, const char *hex, const char *what)
{
    char got [512] = "";
    ck_assert_uint_lt (out->size * 2, sizeof got);
    for (size_t i = 0; i < out->size; i++)
        snprintf (got + 2 * i, 3, "%02x", out->data [i]);
    ck_assert_msg (strcmp (got, hex) == 0, "%s: wrote %s, want %s", what, got, hex);
}

//  --------------------------------------------------------------------------
//  Batches

//  Writes lists of sizes (n of them, then m if pairs) and reads them back.
static int
s_batch (const uint64_t *a, uint32_t n, const uint64_t *b, uint32_t m, size_t payload,
         tr__wire_batch_t *batch)
{
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_MULTI, 0, b? 2: 1);
    tr__wire_array (&out, n);
    for (uint32_t i = 0; i < n; i++)
        tr__wire_uint (&out, a [i]);
    if (b) {
        tr__wire_array (&out, m);
        for (uint32_t i = 0; i < m; i++)
            tr__wire_uint (&out, b [i]);
    }
    tr__wire_cmd_t cmd;
    ck_assert_int_eq (tr__wire_parse (out.data, out.size, &cmd), TR_OK);
    const char *why = NULL;
    int rc = tr__wire_batch (&cmd.args, b != NULL, payload, batch, &why);
    ck_assert (rc == TR_OK || (why && why [0]));
    tr__wire_end (&out);
    return rc;
}

START_TEST (test_wire_batch)
{
    static tr__wire_batch_t batch;
    const uint64_t three [] = { 40, 1, 300 };
    ck_assert_int_eq (s_batch (three, 3, NULL, 0, 341, &batch), TR_OK);
    ck_assert_uint_eq (batch.count, 3);
    ck_assert_uint_eq (batch.offset [0], 0);
    ck_assert_uint_eq (batch.offset [1], 40);
    ck_assert_uint_eq (batch.offset [2], 41);
    ck_assert_uint_eq (batch.size [2], 300);
    //  The sizes must fill the payload exactly.
    ck_assert_int_eq (s_batch (three, 3, NULL, 0, 340, &batch), TR_EMALFORMED);
    ck_assert_int_eq (s_batch (three, 3, NULL, 0, 342, &batch), TR_EMALFORMED);
    //  No part of 0 bytes, no empty batch, none past max_batch.
    const uint64_t zero [] = { 40, 0 };
    ck_assert_int_eq (s_batch (zero, 2, NULL, 0, 40, &batch), TR_EMALFORMED);
    ck_assert_int_eq (s_batch (three, 0, NULL, 0, 0, &batch), TR_EMALFORMED);
    static uint64_t many [TR__WIRE_MAX_BATCH + 1];
    for (int i = 0; i <= TR__WIRE_MAX_BATCH; i++)
        many [i] = 1;
    ck_assert_int_eq (s_batch (many, TR__WIRE_MAX_BATCH, NULL, 0, TR__WIRE_MAX_BATCH, &batch),
                      TR_OK);
    ck_assert_int_eq (s_batch (many, TR__WIRE_MAX_BATCH + 1, NULL, 0, TR__WIRE_MAX_BATCH + 1,
                               &batch), TR_EMALFORMED);
    //  Sizes whose sum wraps around are refused, not added up.
    const uint64_t huge [] = { UINT64_MAX, 2 };
    ck_assert_int_eq (s_batch (huge, 2, NULL, 0, 1, &batch), TR_EMALFORMED);
    //  Pairs (MULTI): the second list may hold 0s, and must be as long.
    const uint64_t payloads [] = { 0, 64, 0 };
    ck_assert_int_eq (s_batch (three, 3, payloads, 3, 405, &batch), TR_OK);
    ck_assert_uint_eq (batch.offset [1], 40);
    ck_assert_uint_eq (batch.offset [2], 105);
    ck_assert_uint_eq (batch.size2 [1], 64);
    ck_assert_int_eq (s_batch (three, 3, payloads, 2, 405, &batch), TR_EMALFORMED);
    ck_assert_int_eq (s_batch (three, 3, payloads, 3, 404, &batch), TR_EMALFORMED);
}
END_TEST

//  --------------------------------------------------------------------------
//  Verbs

START_TEST (test_wire_verb_names)
{
    const char *words [] = { NULL,
        "HELLO", "OK", "ERROR", "REGISTER", "UNREGISTER", "SEND", "DELIVER",
        "BOUNCE", "NODES", "HEARTBEAT", "BYE", "NODE_DOWN", "SUB", "UNSUB",
        "PUB", "EVENT", "KV_GET", "KV_PUT", "KV_CAS", "KV_DEL", "KV_LIST",
        "KV_SNAPSHOT", "KV_WATCH", "KV_UNWATCH", "KV_CHANGE", "KV_RESYNC",
        "SENDS", "DELIVERS", "PUBS", "EVENTS", "MULTI" };
    ck_assert_int_eq (sizeof words / sizeof words [0], TR__V_COUNT);
    for (int verb = 1; verb < TR__V_COUNT; verb++) {
        ck_assert_str_eq (tr__wire_verb_name (verb), words [verb]);
        ck_assert_int_eq (tr__wire_verb (words [verb], strlen (words [verb])), verb);
        //  The length counts, not the NUL ("SENDS" cut short is "SEND").
        ck_assert_int_ne (tr__wire_verb (words [verb], strlen (words [verb]) - 1), verb);
    }
    ck_assert_ptr_null (tr__wire_verb_name (TR__V_UNKNOWN));
    ck_assert_ptr_null (tr__wire_verb_name (TR__V_COUNT));
    ck_assert_ptr_null (tr__wire_verb_name (-1));
    ck_assert_ptr_null (tr__wire_verb_name (1000));
    const char *unknown [] = { "", "hello", "Hello", "HELLOS", "HELL", "KV_", "OK ",
                               "NODE-DOWN", "KV_SNAPSHOTS" };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown [0]; i++)
        ck_assert_int_eq (tr__wire_verb (unknown [i], strlen (unknown [i])), TR__V_UNKNOWN);
    ck_assert_int_eq (tr__wire_verb ("OK\0", 3), TR__V_UNKNOWN);
    ck_assert_int_eq (tr__wire_verb (NULL, 0), TR__V_UNKNOWN);
    ck_assert_int_eq (tr__wire_verb ("BYEBYE", 3), TR__V_BYE);
}
END_TEST

//  --------------------------------------------------------------------------
//  Writing

START_TEST (test_wire_exact_bytes)
{
    tr__wire_out_t out;
    //  ["REGISTER", 7, "pong"]
    tr__wire_begin (&out, TR__V_REGISTER, 7, 1);
    tr__wire_str (&out, "pong", 4);
    s_assert_hex (&out, "93a8524547495354455207a4706f6e67", "REGISTER");
    tr__wire_end (&out);

    //  ["HELLO", 1, "TRP", 1, 1, "node-1", "node", 1000]
    tr__wire_begin (&out, TR__V_HELLO, 1, 6);
    tr__wire_str (&out, "TRP", 3);
    tr__wire_uint (&out, TR__WIRE_MAJOR);
    tr__wire_uint (&out, TR__WIRE_MINOR);
    tr__wire_str (&out, "node-1", 6);
    tr__wire_str (&out, "node", 4);
    tr__wire_uint (&out, 1000);
    s_assert_hex (&out, "98a548454c4c4f01a3545250010" "1a66e6f64652d31a46e6f6465cd03e8",
                  "HELLO");
    tr__wire_end (&out);

    //  ["ERROR", 7, -4, "taken"]
    tr__wire_error (&out, 7, TR_EEXIST, "taken");
    s_assert_hex (&out, "94a54552524f5207fca574616b656e", "ERROR");
    tr__wire_end (&out);

    //  ["ERROR", 0, -12, ""] from a NULL text
    tr__wire_error (&out, 0, TR_EMALFORMED, NULL);
    s_assert_hex (&out, "94a54552524f5200f4a0", "ERROR, no text");
    tr__wire_end (&out);

    //  ["NODE_DOWN", 0, "n1", ["a", "b"]]
    tr__wire_begin (&out, TR__V_NODE_DOWN, 0, 2);
    tr__wire_str (&out, "n1", 2);
    tr__wire_array (&out, 2);
    tr__wire_str (&out, "a", 1);
    tr__wire_str (&out, "b", 1);
    s_assert_hex (&out, "94a94e4f44455f444f574e00a26e3192a161a162", "NODE_DOWN");
    tr__wire_end (&out);

    //  ["HEARTBEAT", 0]
    tr__wire_begin (&out, TR__V_HEARTBEAT, 0, 0);
    s_assert_hex (&out, "92a94845415254424541540" "0", "HEARTBEAT");
    tr__wire_end (&out);

    //  ["OK", 300, {"a": nil}, true, false, raw 0xc3]
    tr__wire_begin (&out, TR__V_OK, 300, 4);
    tr__wire_map (&out, 1);
    tr__wire_str (&out, "a", 1);
    tr__wire_nil (&out);
    tr__wire_bool (&out, true);
    tr__wire_bool (&out, false);
    tr__wire_raw (&out, "\xc3", 1);
    s_assert_hex (&out, "96a24f4bcd012c81a161c0c3c2c3", "OK");
    tr__wire_end (&out);

    //  An unknown verb, through begin_word.
    tr__wire_begin_word (&out, "FROB", 4, 1, 0);
    s_assert_hex (&out, "92a446524f4201", "FROB");
    tr__wire_end (&out);
}
END_TEST

//  Each value at the boundaries of its forms is written in the shortest
//  one (its length and type byte), and reads back.
START_TEST (test_wire_shortest_forms)
{
    struct { uint64_t v; size_t len; uint8_t type; } uints [] = {
        { 0, 1, 0x00 }, { 127, 1, 0x7f }, { 128, 2, 0xcc }, { 255, 2, 0xcc },
        { 256, 3, 0xcd }, { 65535, 3, 0xcd }, { 65536, 5, 0xce },
        { 4294967295u, 5, 0xce }, { 4294967296u, 9, 0xcf }, { UINT64_MAX, 9, 0xcf },
    };
    for (size_t i = 0; i < sizeof uints / sizeof uints [0]; i++) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_OK, 0, 0);
        size_t head = out.size;
        tr__wire_uint (&out, uints [i].v);
        ck_assert_uint_eq (out.size - head, uints [i].len);
        ck_assert_uint_eq (out.data [head], uints [i].type);
        tr__mp_t r;
        uint64_t back;
        tr__mp_init (&r, out.data + head, out.size - head);
        ck_assert_int_eq (tr__mp_uint (&r, &back), 0);
        ck_assert_uint_eq (back, uints [i].v);
        tr__wire_end (&out);
    }
    struct { int64_t v; size_t len; uint8_t type; } ints [] = {
        { -1, 1, 0xff }, { -32, 1, 0xe0 }, { -33, 2, 0xd0 }, { -128, 2, 0xd0 },
        { -129, 3, 0xd1 }, { -32768, 3, 0xd1 }, { -32769, 5, 0xd2 },
        { INT32_MIN, 5, 0xd2 }, { (int64_t) INT32_MIN - 1, 9, 0xd3 },
        { INT64_MIN, 9, 0xd3 }, { 0, 1, 0x00 }, { 5, 1, 0x05 }, { 200, 2, 0xcc },
        { INT64_MAX, 9, 0xcf },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints [0]; i++) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_OK, 0, 0);
        size_t head = out.size;
        tr__wire_int (&out, ints [i].v);
        ck_assert_uint_eq (out.size - head, ints [i].len);
        ck_assert_uint_eq (out.data [head], ints [i].type);
        tr__mp_t r;
        int64_t back;
        tr__mp_init (&r, out.data + head, out.size - head);
        ck_assert_int_eq (tr__mp_int (&r, &back), 0);
        ck_assert_int_eq (back, ints [i].v);
        tr__wire_end (&out);
    }
    static char text [70000];
    memset (text, 't', sizeof text);
    struct { size_t len; size_t head; uint8_t type; } strs [] = {
        { 0, 1, 0xa0 }, { 31, 1, 0xbf }, { 32, 2, 0xd9 }, { 255, 2, 0xd9 },
        { 256, 3, 0xda }, { 65535, 3, 0xda }, { 65536, 5, 0xdb }, { 70000, 5, 0xdb },
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs [0]; i++) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_OK, 0, 0);
        size_t head = out.size;
        tr__wire_str (&out, text, strs [i].len);
        ck_assert_uint_eq (out.size - head, strs [i].head + strs [i].len);
        ck_assert_uint_eq (out.data [head], strs [i].type);
        tr__mp_t r;
        const char *back;
        uint32_t len;
        tr__mp_init (&r, out.data + head, out.size - head);
        ck_assert_int_eq (tr__mp_str (&r, &back, &len), 0);
        ck_assert_uint_eq (len, strs [i].len);
        ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        tr__wire_end (&out);
    }
    struct { uint32_t n; size_t len; uint8_t array, map; } counts [] = {
        { 0, 1, 0x90, 0x80 }, { 15, 1, 0x9f, 0x8f }, { 16, 3, 0xdc, 0xde },
        { 65535, 3, 0xdc, 0xde }, { 65536, 5, 0xdd, 0xdf }, { UINT32_MAX, 5, 0xdd, 0xdf },
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts [0]; i++) {
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_OK, 0, 0);
        size_t head = out.size;
        tr__wire_array (&out, counts [i].n);
        ck_assert_uint_eq (out.size - head, counts [i].len);
        ck_assert_uint_eq (out.data [head], counts [i].array);
        tr__wire_map (&out, counts [i].n);
        ck_assert_uint_eq (out.data [head + counts [i].len], counts [i].map);
        tr__wire_end (&out);
    }
    //  The frame's own header: 13 arguments still fit a fixarray, 14 not.
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, 0, 13);
    ck_assert_uint_eq (out.data [0], 0x9f);
    tr__wire_end (&out);
    tr__wire_begin (&out, TR__V_OK, 0, 14);
    ck_assert_uint_eq (out.data [0], 0xdc);
    ck_assert_uint_eq (out.data [2], 16);
    tr__wire_end (&out);
    tr__wire_begin (&out, TR__V_OK, 0, UINT32_MAX - 2);
    ck_assert_uint_eq (out.data [0], 0xdd);
    ck_assert (!out.failed);
    tr__wire_end (&out);
}
END_TEST

START_TEST (test_wire_failed_sticks)
{
    //  Too many elements, or a str too long, set failed (without reading
    //  the text), and every write after it does nothing.
    tr__wire_out_t out;
    tr__wire_begin (&out, TR__V_OK, 0, UINT32_MAX);
    ck_assert (out.failed);
    size_t size = out.size;
    tr__wire_uint (&out, 5);
    tr__wire_str (&out, "abc", 3);
    ck_assert_uint_eq (out.size, size);
    tr__wire_end (&out);
    ck_assert (!out.failed && out.data == NULL && out.size == 0);

    tr__wire_begin (&out, TR__V_REGISTER, 1, 1);
    ck_assert (!out.failed);
    size = out.size;
    if (sizeof (size_t) > 4) {
        tr__wire_str (&out, "never read", (size_t) UINT32_MAX + 1);
        ck_assert (out.failed);
        ck_assert_uint_eq (out.size, size);
    }
    tr__wire_end (&out);
    //  Begun again after an end, the struct is as new.
    tr__wire_begin (&out, TR__V_BYE, 0, 0);
    ck_assert (!out.failed);
    tr__wire_end (&out);
    tr__wire_end (&out);                //  twice is harmless
}
END_TEST

//  One frame of every verb, with typical arguments, written, read back
//  and checked, and read by msgpack-c.
START_TEST (test_wire_round_trips)
{
    const uint64_t seqs [] = { 0, 1, 127, 128, 65536, UINT64_MAX };
    for (size_t s = 0; s < sizeof seqs / sizeof seqs [0]; s++)
    for (int verb = 1; verb < TR__V_COUNT; verb++) {
        uint64_t seq = seqs [s];
        tr__wire_out_t out;
        uint32_t nargs;
        switch (verb) {
            case TR__V_HELLO:
                tr__wire_begin (&out, verb, seq, nargs = 6);
                tr__wire_str (&out, "TRP", 3);
                tr__wire_uint (&out, 1);
                tr__wire_uint (&out, 0);
                tr__wire_str (&out, "node-1", 6);
                tr__wire_str (&out, "actor", 5);
                tr__wire_uint (&out, 60000);
                break;
            case TR__V_OK:
                tr__wire_begin (&out, verb, seq, nargs = 3);
                tr__wire_uint (&out, 5);
                tr__wire_array (&out, 1);
                tr__wire_array (&out, 3);
                tr__wire_str (&out, "k", 1);
                tr__wire_uint (&out, 4);
                tr__wire_raw (&out, "\xcb\x3f\xf0\0\0\0\0\0\0", 9);
                tr__wire_map (&out, 0);
                break;
            case TR__V_ERROR:
                tr__wire_error (&out, seq, TR_ENOTFOUND, "no such key");
                nargs = 2;
                break;
            case TR__V_BOUNCE:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_str (&out, "pong", 4);
                tr__wire_int (&out, TR_EFULL);
                break;
            case TR__V_NODE_DOWN:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_str (&out, "host:42", 7);
                tr__wire_array (&out, 20);
                for (int k = 0; k < 20; k++)
                    tr__wire_str (&out, "name", 4);
                break;
            case TR__V_EVENT:
                tr__wire_begin (&out, verb, seq, nargs = 3);
                tr__wire_str (&out, "sys.node.left", 13);
                tr__wire_str (&out, "broker", 6);
                tr__wire_uint (&out, 70000);
                break;
            case TR__V_KV_PUT:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_str (&out, "cfg/a", 5);
                tr__wire_uint (&out, 0);
                break;
            case TR__V_KV_CAS:
                tr__wire_begin (&out, verb, seq, nargs = 3);
                tr__wire_str (&out, "cfg/a", 5);
                tr__wire_uint (&out, UINT64_MAX);
                tr__wire_uint (&out, 1000);
                break;
            case TR__V_KV_WATCH:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_str (&out, "", 0);
                tr__wire_uint (&out, 17);
                break;
            case TR__V_KV_CHANGE:
                tr__wire_begin (&out, verb, seq, nargs = 3);
                tr__wire_str (&out, "cfg/", 4);
                tr__wire_str (&out, "cfg/b", 5);
                tr__wire_uint (&out, 18);
                break;
            case TR__V_SENDS:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_array (&out, 3);
                for (int k = 0; k < 3; k++)
                    tr__wire_str (&out, "pong", 4);
                tr__wire_array (&out, 3);
                for (int k = 0; k < 3; k++)
                    tr__wire_uint (&out, 40 + (uint64_t) k * 100);
                break;
            case TR__V_PUBS:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_array (&out, 2);
                tr__wire_str (&out, "a.b", 3);
                tr__wire_str (&out, "a.c", 3);
                tr__wire_array (&out, 2);
                tr__wire_uint (&out, 1);
                tr__wire_uint (&out, 300);
                break;
            case TR__V_EVENTS:
                tr__wire_begin (&out, verb, seq, nargs = 4);
                tr__wire_str (&out, "host:42", 7);
                tr__wire_array (&out, 1);
                tr__wire_str (&out, "a.b", 3);
                tr__wire_array (&out, 1);
                tr__wire_uint (&out, 9);
                tr__wire_uint (&out, 3);
                break;
            case TR__V_MULTI:
                tr__wire_begin (&out, verb, seq, nargs = 2);
                tr__wire_array (&out, 2);
                tr__wire_uint (&out, 12);
                tr__wire_uint (&out, 9);
                tr__wire_array (&out, 2);
                tr__wire_uint (&out, 0);
                tr__wire_uint (&out, 64);
                break;
            case TR__V_DELIVERS:
                tr__wire_begin (&out, verb, seq, nargs = 1);
                tr__wire_array (&out, 2);
                tr__wire_uint (&out, 1);
                tr__wire_uint (&out, 70000);
                break;
            case TR__V_DELIVER: case TR__V_NODES: case TR__V_HEARTBEAT: case TR__V_BYE:
                tr__wire_begin (&out, verb, seq, nargs = 0);
                break;
            default:                    //  one name, key, topic or prefix
                tr__wire_begin (&out, verb, seq, nargs = 1);
                tr__wire_str (&out, "a.b", 3);
                break;
        }
        const char *word = tr__wire_verb_name (verb);
        ck_assert (!out.failed);
        s_assert_msgpack_c_agrees (&out, word, seq, nargs);
        tr__wire_cmd_t cmd;
        uint8_t *copy;
        int rc = s_read (out.data, out.size, &cmd, &copy);
        ck_assert_msg (rc == TR_OK, "%s: %s (%s)", word, tr_errname (rc), cmd.why);
        ck_assert_int_eq (cmd.verb, verb);
        ck_assert_uint_eq (cmd.seq, seq);
        ck_assert_uint_eq (cmd.nargs, nargs);
        ck_assert (tr_test_same_bytes (cmd.word, cmd.word_len, word, strlen (word)));
        //  The writer writes the canonical form.
        ck_assert_msg (s_assert_rewrite (copy, out.size, &cmd, word),
                       "%s: the writer's frame is not canonical", word);
        //  check leaves args where parse put them: the first argument.
        if (verb == TR__V_KV_CAS) {
            tr__mp_t r = cmd.args;
            const char *key;
            uint32_t key_len;
            uint64_t expected, ttl;
            ck_assert_int_eq (tr__mp_str (&r, &key, &key_len), 0);
            ck_assert (tr_test_same_bytes (key, key_len, "cfg/a", 5));
            ck_assert_int_eq (tr__mp_uint (&r, &expected), 0);
            ck_assert_int_eq (tr__mp_uint (&r, &ttl), 0);
            ck_assert_uint_eq (expected, UINT64_MAX);
            ck_assert_uint_eq (ttl, 1000);
            ck_assert_uint_eq (tr__mp_remaining (&r), 0);
        }
        free (copy);
        tr__wire_end (&out);
    }
}
END_TEST

//  --------------------------------------------------------------------------
//  The test vectors

typedef struct {
    char file [160];
    int line;
    int result;                         //  TR_OK or the error
    char verb [40];                     //  for ok: VERB SEQ NARGS canonical
    uint64_t seq;
    uint32_t nargs;
    bool canonical;
    uint8_t *data;                      //  the file's bytes, exact size
    size_t len;
} s_vector_t;

typedef struct {
    s_vector_t *items;
    size_t count;
} s_vectors_t;

static int
s_result_code (const char *name, int line)
{
    const int codes [] = { TR_EMALFORMED, TR_EINVAL, TR_EPROTO, TR_EVERSION, TR_ETOOBIG };
    for (size_t i = 0; i < sizeof codes / sizeof codes [0]; i++)
        if (strcmp (tr_errname (codes [i]), name) == 0)
            return codes [i];
    ck_abort_msg ("line %d: unknown result '%s' in the manifest", line, name);
    return 1;
}

//  Reads one manifest line (comment cut off) into v.
static void
s_parse_line (s_vector_t *v, char *line)
{
    char *save = NULL;
    char *words [8];
    size_t n = 0;
    for (char *w = strtok_r (line, " ", &save); w; w = strtok_r (NULL, " ", &save)) {
        ck_assert_msg (n < 8, "line %d: too many words", v->line);
        words [n++] = w;
    }
    ck_assert_msg (n >= 3, "line %d: too few words", v->line);
    ck_assert_uint_lt (strlen (words [0]), sizeof v->file);
    strcpy (v->file, words [0]);
    if (strcmp (words [1], "ok") == 0) {
        ck_assert_msg (n == 6, "line %d: ok VERB SEQ NARGS canonical=", v->line);
        v->result = TR_OK;
        ck_assert_uint_lt (strlen (words [2]), sizeof v->verb);
        strcpy (v->verb, words [2]);
        v->seq = strtoull (words [3], NULL, 10);
        v->nargs = (uint32_t) strtoul (words [4], NULL, 10);
        ck_assert (strcmp (words [5], "canonical=yes") == 0
                || strcmp (words [5], "canonical=no") == 0);
        v->canonical = strcmp (words [5], "canonical=yes") == 0;
    }
    else {
        ck_assert_msg (strcmp (words [1], "error") == 0 && n == 3,
                       "line %d: error CODE", v->line);
        v->result = s_result_code (words [2], v->line);
    }
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
        char *comment = strstr (line, " # ");
        ck_assert_msg (comment && comment [3], "line %d: no meaning given", line_no);
        *comment = 0;
        if (all.count == capacity) {
            capacity = capacity? 2 * capacity: 256;
            all.items = (s_vector_t *) realloc (all.items, capacity * sizeof *all.items);
            ck_assert_ptr_nonnull (all.items);
        }
        s_vector_t *v = &all.items [all.count++];
        memset (v, 0, sizeof *v);
        v->line = line_no;
        s_parse_line (v, line);
        char path [sizeof S_VECTORS_DIR + sizeof v->file + 1];
        snprintf (path, sizeof path, "%s/%s", S_VECTORS_DIR, v->file);
        v->data = (uint8_t *) tr_test_read_file (path, &v->len);
    }
    free (line);
    fclose (file);
    return all;
}

static void
s_free_vectors (s_vectors_t *all)
{
    for (size_t i = 0; i < all->count; i++)
        free (all->items [i].data);
    free (all->items);
}

START_TEST (test_wire_vectors)
{
    s_vectors_t all = s_load_vectors ();
    size_t valid = 0, canonical = 0, by_code [5] = { 0 };
    bool seen [TR__V_COUNT] = { false };
    for (size_t i = 0; i < all.count; i++) {
        const s_vector_t *v = &all.items [i];
        tr__wire_cmd_t cmd;
        uint8_t *copy;
        int rc = s_read (v->data, v->len, &cmd, &copy);
        ck_assert_msg (rc == v->result, "%s: got %s (%s), want %s", v->file,
                       tr_errname (rc), cmd.why? cmd.why: "", tr_errname (v->result));
        if (rc != TR_OK) {
            by_code [rc == TR_EMALFORMED? 0: rc == TR_EINVAL? 1: rc == TR_EPROTO? 2: 3]++;
            free (copy);
            continue;
        }
        valid++;
        ck_assert_msg (cmd.verb != TR__V_UNKNOWN, "%s: unknown verb passed", v->file);
        ck_assert_str_eq (tr__wire_verb_name (cmd.verb), v->verb);
        ck_assert_msg (cmd.seq == v->seq, "%s: seq", v->file);
        ck_assert_msg (cmd.nargs == v->nargs, "%s: nargs %u, want %u", v->file,
                       cmd.nargs, v->nargs);
        seen [cmd.verb] = true;
        //  Rewritten through the writer: canonical vectors come out as
        //  they are, the others differ.
        bool same = s_assert_rewrite (copy, v->len, &cmd, v->file);
        ck_assert_msg (same == v->canonical, "%s: canonical=%s, but the writer %s it",
                       v->file, v->canonical? "yes": "no",
                       same? "reproduces": "does not reproduce");
        canonical += same;
        free (copy);
    }
    //  Every verb has a valid vector; every family of result is there.
    for (int verb = 1; verb < TR__V_COUNT; verb++)
        ck_assert_msg (seen [verb], "no valid vector of %s", tr__wire_verb_name (verb));
    ck_assert_uint_ge (all.count, 400);
    ck_assert_uint_ge (valid, 80);
    ck_assert_uint_ge (canonical, 60);
    ck_assert_uint_ge (by_code [0], 200);
    ck_assert_uint_ge (by_code [1], 50);
    ck_assert_uint_ge (by_code [2], 3);
    ck_assert_uint_ge (by_code [3], 3);
    s_free_vectors (&all);
}
END_TEST

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

START_TEST (test_wire_vector_details)
{
    s_vectors_t all = s_load_vectors ();
    tr__wire_cmd_t cmd;
    uint8_t *copy;

    //  An ERROR can carry the SEQ of a frame whose verb was bad.
    const s_vector_t *v = s_find_vector (&all, "/bad-verb-int.bin");
    ck_assert_int_eq (s_read (v->data, v->len, &cmd, &copy), TR_EMALFORMED);
    ck_assert_uint_eq (cmd.seq, 2);
    free (copy);
    v = s_find_vector (&all, "/bad-verb-33.bin");
    ck_assert_int_eq (s_read (v->data, v->len, &cmd, &copy), TR_EMALFORMED);
    ck_assert_uint_eq (cmd.seq, 2);
    free (copy);
    v = s_find_vector (&all, "/bad-seq-negative.bin");
    ck_assert_int_eq (s_read (v->data, v->len, &cmd, &copy), TR_EMALFORMED);
    ck_assert_uint_eq (cmd.seq, 0);
    free (copy);

    //  Failures of check keep the head: the broker answers with the SEQ.
    v = s_find_vector (&all, "/bad-name-register-space.bin");
    ck_assert_int_eq (s_read (v->data, v->len, &cmd, &copy), TR_EINVAL);
    ck_assert_int_eq (cmd.verb, TR__V_REGISTER);
    ck_assert_uint_eq (cmd.seq, 2);
    free (copy);

    //  An unknown verb is read: its word is there for the log.
    v = s_find_vector (&all, "/unknown-verb-args.bin");
    copy = tr_test_copy (v->data, v->len);
    ck_assert_int_eq (tr__wire_parse (copy, v->len, &cmd), TR_OK);
    ck_assert_int_eq (cmd.verb, TR__V_UNKNOWN);
    ck_assert (tr_test_same_bytes (cmd.word, cmd.word_len, "KV_INCR", 7));
    ck_assert_uint_eq (cmd.seq, 5);
    ck_assert_uint_eq (cmd.nargs, 2);
    ck_assert_int_eq (tr__wire_check (&cmd), TR_EINVAL);
    free (copy);

    //  Trailing bytes are found by check, not parse.
    v = s_find_vector (&all, "/bad-trailing-byte.bin");
    copy = tr_test_copy (v->data, v->len);
    ck_assert_int_eq (tr__wire_parse (copy, v->len, &cmd), TR_OK);
    ck_assert_int_eq (tr__wire_check (&cmd), TR_EMALFORMED);
    free (copy);
    s_free_vectors (&all);
}
END_TEST

//  --------------------------------------------------------------------------
//  Hostile input

START_TEST (test_wire_every_cut)
{
    //  Every proper prefix of a valid frame is malformed.
    s_vectors_t all = s_load_vectors ();
    size_t cuts = 0;
    for (size_t i = 0; i < all.count; i++) {
        const s_vector_t *v = &all.items [i];
        if (v->result != TR_OK)
            continue;
        for (size_t cut = 0; cut < v->len; cut++) {
            tr__wire_cmd_t cmd;
            uint8_t *copy;
            int rc = s_read (v->data, cut, &cmd, &copy);
            ck_assert_msg (rc == TR_EMALFORMED, "%s cut to %zu: %s", v->file, cut,
                           tr_errname (rc));
            free (copy);
            cuts++;
        }
    }
    ck_assert_uint_gt (cuts, 4000);
    s_free_vectors (&all);
}
END_TEST

//  Reads hostile bytes: any known code, a reason on failure, and a valid
//  frame survives a rewrite. Returns the result.
static int
s_read_hostile (const uint8_t *bytes, size_t len, const char *what)
{
    tr__wire_cmd_t cmd;
    uint8_t *copy;
    int rc = s_read (bytes, len, &cmd, &copy);
    ck_assert_msg (s_known_code (rc), "%s: unexpected code %d", what, rc);
    if (rc == TR_OK) {
        ck_assert (cmd.word >= (const char *) copy
                && cmd.word + cmd.word_len <= (const char *) copy + len);
        s_assert_rewrite (copy, len, &cmd, what);
    }
    free (copy);
    return rc;
}

START_TEST (test_wire_every_mutation)
{
    //  Each byte of each vector replaced by a few telling values.
    static const uint8_t values [] = { 0x00, 0x01, 0x7f, 0x80, 0x90, 0x9f, 0xa0,
        0xbf, 0xc0, 0xc1, 0xc3, 0xcc, 0xcf, 0xd0, 0xd9, 0xdb, 0xdc, 0xdd, 0xde,
        0xdf, 0xe0, 0xff, 0x20 };
    s_vectors_t all = s_load_vectors ();
    size_t valid = 0;
    for (size_t i = 0; i < all.count; i++) {
        const s_vector_t *v = &all.items [i];
        if (v->len > 300)
            continue;
        uint8_t *bytes = tr_test_copy (v->data, v->len);
        for (size_t at = 0; at < v->len; at++) {
            uint8_t was = bytes [at];
            for (size_t k = 0; k < sizeof values; k++) {
                bytes [at] = values [k];
                valid += s_read_hostile (bytes, v->len, v->file) == TR_OK;
            }
            bytes [at] = was;
        }
        free (bytes);
    }
    ck_assert_uint_gt (valid, 1000);
    s_free_vectors (&all);
}
END_TEST

START_TEST (test_wire_random_mutations)
{
    //  Valid vectors with a few random edits each: bytes changed, inserted
    //  or removed, pieces of other vectors spliced in.
    s_vectors_t all = s_load_vectors ();
    size_t n_valid = 0;
    const s_vector_t *valid [200];
    for (size_t i = 0; i < all.count && n_valid < 200; i++)
        if (all.items [i].result == TR_OK && all.items [i].len <= 400)
            valid [n_valid++] = &all.items [i];
    uint64_t state = 0x5eed5eed5eed5eedu;
    uint8_t bytes [1024];
    int results [2] = { 0, 0 };
    int rounds = 200000 / tr_test_slowdown ();
    for (int round = 0; round < rounds; round++) {
        const s_vector_t *v = valid [tr_test_random (&state) % n_valid];
        size_t len = v->len;
        memcpy (bytes, v->data, len);
        int edits = 1 + (int) (tr_test_random (&state) % 4);
        for (int e = 0; e < edits && len; e++) {
            uint64_t r = tr_test_random (&state);
            size_t at = (size_t) (r >> 8) % len;
            switch (r % 5) {
                case 0:                 //  a random byte
                    bytes [at] = (uint8_t) (r >> 32);
                    break;
                case 1:                 //  a flipped bit
                    bytes [at] ^= (uint8_t) (1u << ((r >> 40) % 8));
                    break;
                case 2:                 //  a byte inserted
                    if (len < sizeof bytes) {
                        memmove (bytes + at + 1, bytes + at, len - at);
                        bytes [at] = (uint8_t) (r >> 32);
                        len++;
                    }
                    break;
                case 3:                 //  a byte removed
                    memmove (bytes + at, bytes + at + 1, len - at - 1);
                    len--;
                    break;
                default: {              //  a piece of another vector
                    const s_vector_t *w = valid [(r >> 32) % n_valid];
                    size_t from = (size_t) (r >> 16) % w->len;
                    size_t n = 1 + (size_t) (r >> 48) % 8;
                    if (n > w->len - from)
                        n = w->len - from;
                    if (n > len - at)
                        n = len - at;
                    memcpy (bytes + at, w->data + from, n);
                }
            }
        }
        results [s_read_hostile (bytes, len, v->file) == TR_OK]++;
    }
    //  Both outcomes are reached.
    ck_assert_int_gt (results [0], rounds / 10);
    ck_assert_int_gt (results [1], rounds / 100);
    s_free_vectors (&all);
}
END_TEST

START_TEST (test_wire_size_limit)
{
    //  KV_GET with an extra str argument making the frame max_frame bytes
    //  exactly is read; one byte more is TR_ETOOBIG.
    size_t max = TR__WIRE_MAX_FRAME;
    uint8_t *frame = (uint8_t *) malloc (max + 1);
    ck_assert_ptr_nonnull (frame);
    const uint8_t head [] = { 0x94, 0xa6, 'K', 'V', '_', 'G', 'E', 'T', 0x01,
                              0xa1, 'k', 0xdb };
    size_t text = max - sizeof head - 4;
    memcpy (frame, head, sizeof head);
    for (int k = 0; k < 4; k++)
        frame [sizeof head + k] = (uint8_t) (text >> (24 - 8 * k));
    memset (frame + sizeof head + 4, 'x', text + 1);
    tr__wire_cmd_t cmd;
    ck_assert_int_eq (tr__wire_parse (frame, max, &cmd), TR_OK);
    ck_assert_int_eq (tr__wire_check (&cmd), TR_OK);
    ck_assert_uint_eq (cmd.nargs, 2);
    ck_assert_int_eq (tr__wire_parse (frame, max + 1, &cmd), TR_ETOOBIG);
    ck_assert_ptr_nonnull (cmd.why);
    free (frame);
    //  NULL reads as empty.
    ck_assert_int_eq (tr__wire_parse (NULL, 0, &cmd), TR_EMALFORMED);
}
END_TEST

START_TEST (test_wire_alphabet)
{
    //  Keys and topics follow the names' alphabet (tr_name_check) at
    //  every length both allow; checked through KV_GET and PUB frames.
    const char *texts [] = {
        "a", "pong", "$node", "a=b#c/d", "\xc2\xa0", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
        "\xf4\x8f\xbf\xbf", "a b", "\t", "\x7f", "\xc2\x80", "\xc2\x9f", "\xc0\xaf",
        "\xe0\x9f\xbf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
        "\xff", "\x80", "\xe6\x97", "\xc3\x41", "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        size_t len = strlen (texts [i]);
        int want = tr_name_check (texts [i], len) == TR_OK? TR_OK: TR_EINVAL;
        const int verbs [] = { TR__V_KV_GET, TR__V_PUB, TR__V_REGISTER };
        for (size_t k = 0; k < 3; k++) {
            tr__wire_out_t out;
            tr__wire_begin (&out, verbs [k], 1, 1);
            tr__wire_str (&out, texts [i], len);
            tr__wire_cmd_t cmd;
            uint8_t *copy;
            ck_assert_msg (s_read (out.data, out.size, &cmd, &copy) == want,
                           "text #%zu in %s", i, tr__wire_verb_name (verbs [k]));
            free (copy);
            tr__wire_end (&out);
        }
    }
}
END_TEST

static Suite *
s_suite (void)
{
    int k = tr_test_slowdown ();
    Suite *s = suite_create ("tr_wire");
    TCase *tc = tcase_create ("codec");
    tcase_set_timeout (tc, 60 * k);
    tcase_add_test (tc, test_wire_verb_names);
    tcase_add_test (tc, test_wire_batch);
    tcase_add_test (tc, test_wire_exact_bytes);
    tcase_add_test (tc, test_wire_shortest_forms);
    tcase_add_test (tc, test_wire_failed_sticks);
    tcase_add_test (tc, test_wire_round_trips);
    tcase_add_test (tc, test_wire_alphabet);
    tcase_add_test (tc, test_wire_size_limit);
    suite_add_tcase (s, tc);

    tc = tcase_create ("vectors");
    tcase_set_timeout (tc, 60 * k);
    tcase_add_test (tc, test_wire_vectors);
    tcase_add_test (tc, test_wire_vector_details);
    suite_add_tcase (s, tc);

    tc = tcase_create ("hostile");
    tcase_set_timeout (tc, 300 * k);
    tcase_add_test (tc, test_wire_every_cut);
    tcase_add_test (tc, test_wire_every_mutation);
    tcase_add_test (tc, test_wire_random_mutations);
    suite_add_tcase (s, tc);
    return s;
}

TR_TEST_MAIN (s_suite)
