/*  tr_kvlog_fuzz.c - libFuzzer target for the scratchpad log's replay.

    The input is a log file. It is replayed from memory into a new store
    (tr__kvlog_replay_buffer, what tr__kvlog_open does with the file's
    bytes), which must not crash or leak, and must answer consistently:
    TR_OK with the good part and the torn tail adding up to the input,
    or TR_EMALFORMED with an offset inside it. The good part alone must
    then replay to the same number of records with nothing torn.

    Random bytes rarely carry a right checksum, so the input is also
    replayed a second time with the magic put in front and every
    record's checksum recomputed: that reaches the checks behind the
    checksum (ops, key lengths, versions, msgpack values) and the store's
    restore path.

    Build and run: tests/fuzz/run.sh SECONDS [BUILD_DIR]
*/

#include "tr_kv.h"
#include "tr_kvlog.h"
#include "troupe/tr_error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  A fixed clock, so that runs are reproducible.
#define S_NOW   INT64_C (1700000000000)

static void
s_fail (const char *what)
{
    fprintf (stderr, "tr_kvlog_fuzz: %s\n", what);
    abort ();
}

static uint32_t
s_get32 (const uint8_t *p)
{
    return (uint32_t) p [0] | (uint32_t) p [1] << 8
         | (uint32_t) p [2] << 16 | (uint32_t) p [3] << 24;
}

//  Every key the store holds is listed in order, with a version no
//  higher than the store's.
static void
s_check_store (tr__kv_t *kv)
{
    tr__kv_items_t *items = NULL;
    if (tr__kv_dump (kv, S_NOW, &items) != TR_OK)
        s_fail ("dump failed");
    uint64_t version = tr__kv_version (kv);
    for (size_t i = 0; i < items->count; i++) {
        const tr__kv_item_t *item = &items->items [i];
        if (item->version > version || item->key_len == 0)
            s_fail ("a key with a bad version or length");
        if (i) {
            const tr__kv_item_t *prev = &items->items [i - 1];
            size_t common = prev->key_len < item->key_len? prev->key_len: item->key_len;
            int diff = memcmp (prev->key, item->key, common);
            if (diff > 0 || (diff == 0 && prev->key_len >= item->key_len))
                s_fail ("keys out of order");
        }
    }
    tr__kv_items_destroy (&items);
}

//  Replays buf; checks the answer's consistency; returns the info.
static int
s_replay (const uint8_t *buf, size_t len, tr__kvlog_replay_t *info)
{
    tr__kv_t *kv = tr__kv_new (NULL);
    if (!kv)
        s_fail ("out of memory");
    int rc = tr__kvlog_replay_buffer (buf, len, kv, S_NOW, info);
    if (rc == TR_OK) {
        if (info->valid_len + info->truncated != len)
            s_fail ("the good part and the torn tail do not add up");
        s_check_store (kv);
    }
    else
    if (rc == TR_EMALFORMED) {
        if (info->bad_offset >= len && len)
            s_fail ("damage reported past the end");
    }
    else
        s_fail ("replay returned an unexpected code");
    tr__kv_destroy (&kv);
    return rc;
}

//  Replays the input, then its good part alone.
static void
s_replay_twice (const uint8_t *buf, size_t len)
{
    tr__kvlog_replay_t info, again;
    if (s_replay (buf, len, &info) != TR_OK || info.valid_len < TR__KVLOG_MAGIC_LEN)
        return;
    if (s_replay (buf, info.valid_len, &again) != TR_OK)
        s_fail ("the good part does not replay");
    if (again.records != info.records || again.truncated)
        s_fail ("the good part replays differently");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_replay_twice (data, size);
    //  The same records with right checksums, and the magic in front if
    //  the input does not begin with it.
    bool has_magic = size >= TR__KVLOG_MAGIC_LEN
                  && memcmp (data, TR__KVLOG_MAGIC, TR__KVLOG_MAGIC_LEN) == 0;
    size_t len = has_magic? size: size + TR__KVLOG_MAGIC_LEN;
    uint8_t *buf = (uint8_t *) malloc (len);
    if (!buf)
        return 0;
    memcpy (buf, TR__KVLOG_MAGIC, TR__KVLOG_MAGIC_LEN);
    if (size)
        memcpy (buf + len - size, data, size);
    size_t off = TR__KVLOG_MAGIC_LEN;
    while (len - off >= TR__KVLOG_HEADER) {
        uint32_t body_len = s_get32 (buf + off);
        if (body_len > len - off - TR__KVLOG_HEADER)
            break;
        uint32_t crc = tr__kvlog_crc32 (0, buf + off, 4);
        crc = tr__kvlog_crc32 (crc, buf + off + TR__KVLOG_HEADER, body_len);
        for (int i = 0; i < 4; i++)
            buf [off + 4 + i] = (uint8_t) (crc >> (8 * i));
        off += TR__KVLOG_HEADER + body_len;
    }
    s_replay_twice (buf, len);
    free (buf);
    return 0;
}
