/*  tr_envelope_fuzz.c - libFuzzer target for the envelope decoder.

    Any input is decoded. A valid envelope must survive a round trip:
    encoding its fields succeeds, decoding the result gives the same
    fields, and encoding those gives the same bytes again. A failure must
    carry a known code, a message and an offset inside the input. The
    input also goes through tr_msgpack_check, which must agree with the
    decoder that a valid envelope is one msgpack value (nested one level
    deeper than its body). Any disagreement
    aborts, so that libFuzzer keeps the input.

    Build and run: tests/fuzz/run.sh SECONDS [BUILD_DIR]
*/

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
    fprintf (stderr, "tr_envelope_fuzz: %s\n", what);
    abort ();
}

static int
s_same_bytes (const void *a, size_t a_len, const void *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp (a, b, a_len) == 0);
}

static int
s_same_fields (const tr_envelope_t *a, const tr_envelope_t *b)
{
    return a->kind == b->kind && a->priority == b->priority
        && a->id == b->id && a->corr == b->corr && a->trace == b->trace
        && a->deadline_us == b->deadline_us && a->error == b->error
        && s_same_bytes (a->to, a->to_len, b->to, b->to_len)
        && s_same_bytes (a->from, a->from_len, b->from, b->from_len)
        && s_same_bytes (a->body, a->body_len, b->body, b->body_len);
}

//  Encodes env, decodes the result, encodes again; aborts on any change.
static void
s_round_trip (const tr_envelope_t *env)
{
    uint8_t *first, *second;
    size_t first_len, second_len;
    if (tr_envelope_encode (env, &first, &first_len) != TR_OK)
        s_fail ("a decoded envelope does not encode");
    tr_envelope_t back;
    tr_envelope_error_t err;
    if (tr_envelope_decode (first, first_len, &back, &err) != TR_OK)
        s_fail ("an encoded envelope does not decode");
    if (!s_same_fields (&back, env))
        s_fail ("the fields changed in a round trip");
    if (tr_envelope_encode (&back, &second, &second_len) != TR_OK)
        s_fail ("a re-decoded envelope does not encode");
    if (!s_same_bytes (first, first_len, second, second_len))
        s_fail ("encoding is not stable");
    free (first);
    free (second);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    tr_envelope_t env;
    tr_envelope_error_t err;
    memset (&err, 0, sizeof err);
    int rc = tr_envelope_decode (data, size, &env, &err);
    if (rc == TR_OK)
        s_round_trip (&env);
    else {
        if (rc != TR_EMALFORMED && rc != TR_EVERSION && rc != TR_EDEPTH
        &&  rc != TR_ETOOBIG)
            s_fail ("decode returned an unexpected code");
        if (err.message [0] == 0 || err.offset > size)
            s_fail ("a failure without a message or with a bad offset");
    }
    memset (&err, 0, sizeof err);
    int check = tr_msgpack_check (data, size, TR_ENVELOPE_MAX_DEPTH, &err);
    if (check != TR_OK && check != TR_EMALFORMED && check != TR_EDEPTH)
        s_fail ("tr_msgpack_check returned an unexpected code");
    if (check != TR_OK && (err.message [0] == 0 || err.offset > size))
        s_fail ("tr_msgpack_check failed without a message");
    //  The envelope map is one level more than the body inside it.
    if (rc == TR_OK
    &&  tr_msgpack_check (data, size, TR_ENVELOPE_MAX_DEPTH + 1, NULL) != TR_OK)
        s_fail ("a valid envelope is not one msgpack value");
    //  Names: the same bytes as a candidate actor name.
    tr_name_check ((const char *) data, size);
    return 0;
}
