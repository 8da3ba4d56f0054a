/*  tr_json_fuzz.c - libFuzzer target for the JSON reader
    (runtime/tr_json.c), which reads whatever a user or a script puts on the
    command line.

    Each input is read as JSON. A refusal must say where, inside the
    input, with a line and column that agree with that offset. An input
    that is read must give one well-formed msgpack value within the depth
    limit, which written as JSON (one line, and pretty-printed) must read
    back as the very same bytes, and pass the runtime's own check of
    message bodies (tr_msgpack_check, depth TR__JSON_MAX_DEPTH). Any
    disagreement aborts, so that libFuzzer keeps the input.

    Build and run: tests/fuzz/run.sh SECONDS [BUILD_DIR]
*/

#include "tr_json.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *input, size_t size);

//  Writes the msgpack as JSON (indent spaces), reads it back, and checks
//  the bytes are the same.
static void
s_round_trip (const char *data, size_t size, int indent)
{
    char *json = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&json, &len);
    if (!out)
        abort ();
    if (tr__json_write_msgpack (out, data, size, indent))
        abort ();                       //  not one msgpack value
    fclose (out);
    char *back = NULL;
    size_t back_size = 0;
    tr__json_error_t err;
    if (tr__json_parse (json, len, &back, &back_size, &err)) {
        fprintf (stderr, "written JSON does not read back: %d:%d: %s\n%s\n",
                 err.line, err.column, err.message, json);
        abort ();
    }
    if (back_size != size || memcmp (back, data, size)) {
        fprintf (stderr, "written JSON reads back as other bytes:\n%s\n", json);
        abort ();
    }
    free (back);
    free (json);
}

//  The line and column of offset, counted as tr__json_error_t says.
static void
s_check_position (const uint8_t *input, const tr__json_error_t *err)
{
    int line = 1, column = 1;
    for (size_t i = 0; i < err->offset; i++) {
        if (input [i] == '\n') {
            line++;
            column = 1;
        }
        else
        if ((input [i] & 0xc0) != 0x80)
            column++;
    }
    if (line != err->line || column != err->column || !err->message [0])
        abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *input, size_t size)
{
    char *data = NULL;
    size_t data_size = 0;
    tr__json_error_t err;
    if (tr__json_parse ((const char *) input, size, &data, &data_size, &err)) {
        if (data || err.offset > size)
            abort ();
        s_check_position (input, &err);
        return 0;
    }
    if (!data || data_size == 0
    ||  tr_msgpack_check (data, data_size, TR__JSON_MAX_DEPTH, NULL) != TR_OK)
        abort ();
    s_round_trip (data, data_size, 0);
    s_round_trip (data, data_size, 2);
    free (data);
    return 0;
}
