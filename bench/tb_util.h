/*  tb_util.h - what the benchmark programs share (bench/ only).

    Every program prints its measurements as lines of the form

        SAMPLE <benchmark> <series> <value>

    on standard output, one line per repetition, and nothing else there;
    bench/run collects them and works out medians and spreads. Progress
    and diagnostics go to standard error.
*/
#ifndef TB_UTIL_H_INCLUDED
#define TB_UTIL_H_INCLUDED

#include <troupe.h>
#include <msgpack.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Size of the throughput body: a msgpack bin8 of 62 bytes, which is 64
//  bytes of msgpack (0xc4, length, 62 bytes of data).
#define TB_BODY_SIZE    64
#define TB_BIN_SIZE     62

//  Monotonic time in nanoseconds.
static inline int64_t
tb_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  Prints one measurement for bench/run.
static inline void
tb_sample (const char *bench, const char *series, double value)
{
    printf ("SAMPLE %s %s %.6g\n", bench, series, value);
    fflush (stdout);
}

//  Stops the program with a message when a call that must work did not.
static inline void
tb_check (int rc, const char *what)
{
    if (rc) {
        fprintf (stderr, "bench: %s: %s (%s)\n", what, tr_strerror (rc), tr_errname (rc));
        exit (1);
    }
}

//  A positive count from argv [index], or the default if it is absent.
static inline long
tb_arg (int argc, char **argv, int index, long fallback)
{
    if (index >= argc)
        return fallback;
    char *end;
    long value = strtol (argv [index], &end, 10);
    if (*end || value <= 0) {
        fprintf (stderr, "bench: '%s' is not a positive count\n", argv [index]);
        exit (2);
    }
    return value;
}

//  A packed msgpack value, small enough for the bodies used here.
typedef struct {
    char data [TB_BODY_SIZE];
    size_t size;
} tb_body_t;

static int
tb__body_write (void *data, const char *buf, size_t len)
{
    tb_body_t *body = (tb_body_t *) data;
    if (body->size + len > sizeof body->data)
        return -1;
    memcpy (body->data + body->size, buf, len);
    body->size += len;
    return 0;
}

//  The 64-byte throughput body, packed with msgpack-c. Exits if msgpack-c
//  did not choose bin8 (it would then not be 64 bytes).
static inline tb_body_t
tb_body_bin62 (void)
{
    tb_body_t body = { .size = 0 };
    char payload [TB_BIN_SIZE];
    for (size_t i = 0; i < sizeof payload; i++)
        payload [i] = (char) ('a' + i % 26);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, tb__body_write);
    msgpack_pack_bin (&pk, sizeof payload);
    msgpack_pack_bin_body (&pk, payload, sizeof payload);
    if (body.size != TB_BODY_SIZE || (uint8_t) body.data [0] != 0xc4) {
        fprintf (stderr, "bench: msgpack-c packed bin %d as %zu bytes\n",
                 TB_BIN_SIZE, body.size);
        exit (1);
    }
    return body;
}

//  An unsigned integer body (tr_body.h).
static inline tr_body_t
tb_pack_uint (uint64_t value)
{
    tr_body_t body;
    tr_body_uint (&body, value);
    return body;
}

//  Reads an unsigned integer body into *value; -1 if it is not one.
static inline int
tb_unpack_uint (const tr_msg_t *msg, uint64_t *value)
{
    return tr_msg_uint (msg, value) == TR_OK? 0: -1;
}

//  Asks `to` with an unsigned integer and returns the unsigned integer it
//  answers with; exits on any failure.
static inline uint64_t
tb_ask_uint (tr_node_t *node, const char *to, uint64_t value, int timeout_ms)
{
    tr_body_t body = tb_pack_uint (value);
    tr_msg_t *reply;
    tb_check (tr_ask (node, to, body.data, body.size, timeout_ms, &reply, NULL), to);
    uint64_t answer;
    if (tb_unpack_uint (reply, &answer)) {
        fprintf (stderr, "bench: '%s' answered something else than a count\n", to);
        exit (1);
    }
    tr_msg_destroy (&reply);
    return answer;
}

#endif
