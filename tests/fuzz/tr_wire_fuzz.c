/*  tr_wire_fuzz.c - libFuzzer target for the broker protocol's command
    frames (protocols/tr_wire.h).

    Any input is parsed and checked. A failure must carry a known code
    and a reason. A frame that passes must survive a rewrite: written
    again through the writer (its verb and SEQ through tr__wire_begin,
    each argument through the typed writer functions, so in canonical
    form), it reads and checks as the same command, and rewriting that
    gives the same bytes again. The input is also tried as a name, a key
    and a topic, where the codec's alphabet must agree with
    tr_name_check. The input is also read as a batch's sizes
    (tr__wire_batch, one list and two), against payloads of several
    lengths: what it accepts must lie inside the payload, end to end.
    Any disagreement aborts, so that libFuzzer keeps the input.

    Build and run: tests/fuzz/run.sh SECONDS [BUILD_DIR]
*/

#include "tr_wire.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
s_fail (const char *what)
{
    fprintf (stderr, "tr_wire_fuzz: %s\n", what);
    abort ();
}

static int
s_same_bytes (const void *a, size_t a_len, const void *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp (a, b, a_len) == 0);
}

//  Parses and checks; aborts on an unknown code or a failure without a
//  reason.
static int
s_read (const void *data, size_t size, tr__wire_cmd_t *cmd)
{
    int rc = tr__wire_parse (data, size, cmd);
    if (rc == TR_OK)
        rc = tr__wire_check (cmd);
    if (rc != TR_OK && rc != TR_EMALFORMED && rc != TR_EINVAL && rc != TR_EPROTO
    &&  rc != TR_EVERSION && rc != TR_ETOOBIG)
        s_fail ("an unexpected code");
    if (rc != TR_OK && (!cmd->why || !cmd->why [0]))
        s_fail ("a failure without a reason");
    return rc;
}

//  Rewrites the value at r through the writer's typed functions (values
//  it has no function for are copied). Returns -1 if a reader refuses
//  what check accepted.
static int
s_rewrite_value (tr__mp_t *r, tr__wire_out_t *out)
{
    uint8_t type = *r->p;
    uint64_t u;
    int64_t i;
    const char *str;
    uint32_t len, n;
    if (type <= 0x7f || (type >= 0xcc && type <= 0xcf)) {
        if (tr__mp_uint (r, &u))
            return -1;
        tr__wire_uint (out, u);
    }
    else
    if (type >= 0xe0 || (type >= 0xd0 && type <= 0xd3)) {
        if (tr__mp_int (r, &i))
            return -1;
        tr__wire_int (out, i);
    }
    else
    if ((type >= 0xa0 && type <= 0xbf) || (type >= 0xd9 && type <= 0xdb)) {
        if (tr__mp_str (r, &str, &len))
            return -1;
        tr__wire_str (out, str, len);
    }
    else
    if ((type >= 0x90 && type <= 0x9f) || type == 0xdc || type == 0xdd) {
        if (tr__mp_array (r, &n))
            return -1;
        tr__wire_array (out, n);
        for (uint32_t k = 0; k < n; k++)
            if (s_rewrite_value (r, out))
                return -1;
    }
    else
    if (type <= 0x8f || type == 0xde || type == 0xdf) {
        if (tr__mp_map (r, &n))
            return -1;
        tr__wire_map (out, n);
        for (uint32_t k = 0; k < 2 * n; k++)
            if (s_rewrite_value (r, out))
                return -1;
    }
    else {
        const uint8_t *at = r->p;
        if (tr__mp_skip (r, TR__WIRE_ARG_DEPTH))
            return -1;
        tr__wire_raw (out, at, (size_t) (r->p - at));
    }
    return 0;
}

static void
s_rewrite (const tr__wire_cmd_t *cmd, tr__wire_out_t *out)
{
    tr__wire_begin (out, cmd->verb, cmd->seq, cmd->nargs);
    tr__mp_t r = cmd->args;
    for (uint32_t k = 0; k < cmd->nargs; k++)
        if (s_rewrite_value (&r, out))
            s_fail ("a reader refuses an argument that check accepted");
    if (out->failed)
        s_fail ("the writer failed");
}

static void
s_round_trip (const tr__wire_cmd_t *cmd)
{
    tr__wire_out_t first, second;
    s_rewrite (cmd, &first);
    tr__wire_cmd_t back;
    if (s_read (first.data, first.size, &back) != TR_OK)
        s_fail ("a rewritten frame does not read");
    if (back.verb != cmd->verb || back.seq != cmd->seq || back.nargs != cmd->nargs
    ||  !s_same_bytes (back.word, back.word_len, cmd->word, cmd->word_len))
        s_fail ("a rewritten frame reads differently");
    s_rewrite (&back, &second);
    if (!s_same_bytes (first.data, first.size, second.data, second.size))
        s_fail ("rewriting is not stable");
    tr__wire_end (&first);
    tr__wire_end (&second);
}

//  The input as the one argument of verb: valid exactly when want.
static void
s_as_argument (int verb, const uint8_t *data, size_t size, int want)
{
    tr__wire_out_t out;
    tr__wire_cmd_t cmd;
    tr__wire_begin (&out, verb, 1, 1);
    tr__wire_str (&out, (const char *) data, size);
    if (out.failed)
        s_fail ("the writer failed");
    int rc = s_read (out.data, out.size, &cmd);
    if (rc != (want? TR_OK: TR_EINVAL))
        s_fail ("the codec's alphabet disagrees with tr_name_check");
    tr__wire_end (&out);
}

//  The input as a batch's lists of sizes, for a payload of payload_size.
static void
s_as_batch (const uint8_t *data, size_t size, bool pairs, size_t payload_size)
{
    static tr__wire_batch_t batch;
    tr__mp_t r;
    tr__mp_init (&r, data, size);
    const char *why = NULL;
    int rc = tr__wire_batch (&r, pairs, payload_size, &batch, &why);
    if (rc != TR_OK) {
        if (rc != TR_EMALFORMED || !why || !why [0])
            s_fail ("a batch refused without TR_EMALFORMED and a reason");
        return;
    }
    if (batch.count == 0 || batch.count > TR__WIRE_MAX_BATCH)
        s_fail ("a batch of a count out of bounds");
    size_t at = 0;
    for (uint32_t i = 0; i < batch.count; i++) {
        if (batch.offset [i] != at || batch.size [i] == 0)
            s_fail ("a batch's parts do not follow one another");
        at += batch.size [i] + (pairs? batch.size2 [i]: 0);
        if (at > payload_size)
            s_fail ("a batch's part ends past its payload");
    }
    if (at != payload_size)
        s_fail ("a batch's parts do not fill its payload");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  Batches: payloads of no, a little, and much data; and the length
    //  the input's first bytes say.
    size_t lengths [] = { 0, 1, 100, 65536, size? (size_t) data [0] * 257: 7 };
    for (size_t k = 0; k < sizeof lengths / sizeof lengths [0]; k++) {
        s_as_batch (data, size, false, lengths [k]);
        s_as_batch (data, size, true, lengths [k]);
    }
    tr__wire_cmd_t cmd;
    int rc = s_read (data, size, &cmd);
    if (rc == TR_OK) {
        if (cmd.verb <= TR__V_UNKNOWN || cmd.verb >= TR__V_COUNT)
            s_fail ("an unknown verb passed");
        if (cmd.word < (const char *) data
        ||  cmd.word + cmd.word_len > (const char *) data + size)
            s_fail ("the verb points outside the input");
        s_round_trip (&cmd);
    }
    //  Names, keys and topics: the same bytes.
    if (size <= 1100) {
        int name_ok = tr_name_check ((const char *) data, size) == TR_OK;
        s_as_argument (TR__V_REGISTER, data, size, name_ok);
        s_as_argument (TR__V_PUB, data, size, name_ok);
        if (size <= TR_NAME_MAX)
            s_as_argument (TR__V_KV_GET, data, size, name_ok);
        else
        if (size > 1024)
            s_as_argument (TR__V_KV_GET, data, size, 0);
    }
    return 0;
}
