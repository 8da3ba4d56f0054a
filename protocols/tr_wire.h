/*  tr_wire.h - command frames of the broker protocol (internal).

    Specification: protocols/2-broker.md. A command frame is one msgpack
    array [VERB, SEQ, ARG...]; an optional second frame (the payload) is
    opaque here. This module writes command frames and reads them back
    with every bound checked: a reader never reads past its input, never
    allocates, and says what was wrong.

    Writing:
        tr__wire_out_t out;
        tr__wire_begin (&out, TR__V_REGISTER, seq, 1);
        tr__wire_str (&out, name, strlen (name));
        ... send out.data, out.size ...
        tr__wire_end (&out);

    Reading:
        tr__wire_cmd_t cmd;
        if (tr__wire_parse (data, size, &cmd) == TR_OK
        &&  tr__wire_check (&cmd) == TR_OK)
            ... the arguments are as 2-broker.md says: read them from
                cmd.args with the tr__mp_* readers (tr_mp.h) ...
*/
#ifndef TR_WIRE_H_INCLUDED
#define TR_WIRE_H_INCLUDED

#include "tr_mp.h"
#include "troupe/tr_envelope.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The protocol's version (2.3).
#define TR__WIRE_MAJOR  1
#define TR__WIRE_MINOR  1

//  Largest frame a reader accepts (max_frame, 2.6: 17 MiB, as the
//  envelope).
#define TR__WIRE_MAX_FRAME  (17u * 1024u * 1024u)
//  Longest verb a reader accepts, in bytes.
#define TR__WIRE_VERB_MAX   32
//  Most envelopes in one SENDS or DELIVERS, events in one PUBS or EVENTS
//  (max_batch, 2.6).
#define TR__WIRE_MAX_BATCH  256
//  Deepest nesting inside one argument (the argument's own array or map
//  is level 1): the deepest answer is KV_SNAPSHOT's [[KEY, VERSION,
//  VALUE]...], two levels around a value that may nest 32 deep like an
//  envelope's body.
#define TR__WIRE_ARG_DEPTH  34

//  The verbs of 2.4, in the order of the specification. TR__V_UNKNOWN is
//  a verb this version does not know (answered TR_EINVAL, 2.8).
typedef enum {
    TR__V_UNKNOWN = 0,
    TR__V_HELLO, TR__V_OK, TR__V_ERROR,
    TR__V_REGISTER, TR__V_UNREGISTER, TR__V_SEND, TR__V_DELIVER,
    TR__V_BOUNCE, TR__V_NODES,
    TR__V_HEARTBEAT, TR__V_BYE, TR__V_NODE_DOWN,
    TR__V_SUB, TR__V_UNSUB, TR__V_PUB, TR__V_EVENT,
    TR__V_KV_GET, TR__V_KV_PUT, TR__V_KV_CAS, TR__V_KV_DEL, TR__V_KV_LIST,
    TR__V_KV_SNAPSHOT, TR__V_KV_WATCH, TR__V_KV_UNWATCH, TR__V_KV_CHANGE,
    TR__V_KV_RESYNC,
    TR__V_SENDS, TR__V_DELIVERS, TR__V_PUBS, TR__V_EVENTS,     //  1.1
    TR__V_MULTI,
    TR__V_COUNT
} tr__verb_t;

//  The verb's word ("REGISTER"), or NULL for TR__V_UNKNOWN and out of
//  range values.
const char *
    tr__wire_verb_name (int verb);

//  The verb for a word (exact, case-sensitive), or TR__V_UNKNOWN.
int
    tr__wire_verb (const char *word, size_t len);

//  --------------------------------------------------------------------------
//  Writing

typedef struct {
    uint8_t *data;              //  the frame so far (malloc'd, owned)
    size_t size;
    size_t room;
    bool failed;                //  out of memory at some point: drop it
} tr__wire_out_t;

//  Starts a frame [VERB, SEQ, ...] that will hold `nargs` arguments
//  after SEQ (the caller then writes exactly that many values). Every
//  field of self is set here: it need not be initialised, but a frame
//  begun before must have been ended (or its data would leak). `verb`
//  must be a known verb (asserted).
//
//  Writing never fails on the spot: when memory runs out, `failed` is set,
//  the writes after it do nothing, and the frame must be dropped (ended
//  unsent). A frame of more than 2^32 - 1 elements, or a str longer than
//  that, also sets `failed`.
void
    tr__wire_begin (tr__wire_out_t *self, int verb, uint64_t seq, uint32_t nargs);

//  As tr__wire_begin, with the verb given as a word of 1 to
//  TR__WIRE_VERB_MAX bytes (asserted): for verbs this version does not
//  know, as tests and newer peers write them.
void
    tr__wire_begin_word (tr__wire_out_t *self, const char *word, size_t len,
                         uint64_t seq, uint32_t nargs);

//  One argument each (shortest msgpack forms, as the vectors use).
void
    tr__wire_str (tr__wire_out_t *self, const char *text, size_t len);
void
    tr__wire_uint (tr__wire_out_t *self, uint64_t value);
void
    tr__wire_int (tr__wire_out_t *self, int64_t value);
void
    tr__wire_nil (tr__wire_out_t *self);
void
    tr__wire_bool (tr__wire_out_t *self, bool value);
//  An array or map header: the next n values (2n for a map) are its
//  elements, and together count as one argument.
void
    tr__wire_array (tr__wire_out_t *self, uint32_t n);
void
    tr__wire_map (tr__wire_out_t *self, uint32_t n);
//  One value already encoded as msgpack, copied as is.
void
    tr__wire_raw (tr__wire_out_t *self, const void *value, size_t size);

//  Frees the frame. The struct may be begun again.
void
    tr__wire_end (tr__wire_out_t *self);

//  Writes the answer ["ERROR", seq, code, text] into self (begun here;
//  NULL text is written as "").
void
    tr__wire_error (tr__wire_out_t *self, uint64_t seq, int code, const char *text);

//  --------------------------------------------------------------------------
//  Reading

typedef struct {
    int verb;                   //  tr__verb_t
    const char *word;           //  the verb as written (not NUL-ended)
    uint32_t word_len;
    uint64_t seq;
    uint32_t nargs;             //  arguments after SEQ
    tr__mp_t args;              //  a cursor at the first of them
    const char *why;            //  on an error: what was wrong (static)
} tr__wire_cmd_t;

//  Reads a command frame's head. Returns TR_OK, TR_ETOOBIG (over
//  TR__WIRE_MAX_FRAME), or TR_EMALFORMED (not an array of at least two
//  elements starting with a str of 1 to 32 bytes and a uint; cmd->why
//  says which). An unknown verb is not an error here: cmd->verb is
//  TR__V_UNKNOWN. Nothing past SEQ is looked at: call tr__wire_check.
//
//  On TR_EMALFORMED, cmd->seq still holds SEQ if the frame is an array
//  whose second element is a uint (so that the ERROR can carry it, 2.6),
//  and is 0 otherwise; the other fields are unset. The command points
//  into data, which must outlive it.
int
    tr__wire_parse (const void *data, size_t size, tr__wire_cmd_t *cmd);

//  Checks a parsed command against 2-broker.md, without moving cmd->args,
//  and returns the code a broker answers with (cmd->why says what was
//  wrong). In this order, the first failure wins:
//
//  1. The whole frame is one msgpack value, nothing after it, and no
//     argument nests deeper than TR__WIRE_ARG_DEPTH: else TR_EMALFORMED.
//  2. The verb is known: else TR_EINVAL (2.8).
//  3. HELLO only: the first argument is the str "TRP", else TR_EPROTO;
//     the second a uint, else TR_EMALFORMED; equal to TR__WIRE_MAJOR,
//     else TR_EVERSION, whatever the arguments after it (a newer major
//     may change them).
//  4. Form: at least as many arguments as the verb requires, and each
//     argument this version knows of the msgpack type 2.4 gives it (a
//     CODE is a negative int that fits in 32 bits): else TR_EMALFORMED.
//     Arguments past those are accepted unread (2.8).
//  5. Values: names (NAME, TO, FROM, NODE_ID, each of NODE_DOWN's) are
//     valid names (tr_name_check); KEYs 1 to 1,024 bytes and TOPICs 1 to
//     255 of the same alphabet; PREFIXes of SUB and UNSUB 0 to 255 bytes
//     and of the KV_ verbs 0 to 1,024, of that alphabet too; HELLO's KIND
//     one of "node", "actor", "client" and HEARTBEAT_MS 100 to 60,000:
//     else TR_EINVAL (2.3 and 2.4.1 give TR_EINVAL for a bad name).
//
//  The payload frame is not looked at. SEQ is not judged: 0 on a request
//  or non-zero on a push passes.
int
    tr__wire_check (tr__wire_cmd_t *cmd);

//  --------------------------------------------------------------------------
//  Batches (1.1: SENDS, DELIVERS, PUBS, EVENTS, MULTI)

//  Where the parts of a batch lie in its payload frame.
typedef struct {
    uint32_t count;                             //  items, 1..TR__WIRE_MAX_BATCH
    uint32_t size [TR__WIRE_MAX_BATCH];         //  each item's first part
    uint32_t size2 [TR__WIRE_MAX_BATCH];        //  MULTI: each item's payload
    size_t offset [TR__WIRE_MAX_BATCH];         //  where each item starts
} tr__wire_batch_t;

//  Reads a batch's sizes at r (which moves past them): one array of
//  sizes, each at least 1, or with `pairs` (MULTI) two arrays, the first
//  of sizes at least 1, the second of sizes from 0, of the same length.
//  The count must be 1 to TR__WIRE_MAX_BATCH and the sizes must add up to
//  payload_size exactly. Returns TR_OK with *batch filled, or
//  TR_EMALFORMED with *why saying what was wrong. Never reads past r's
//  end; does not look at the payload itself.
int
    tr__wire_batch (tr__mp_t *r, bool pairs, size_t payload_size, tr__wire_batch_t *batch,
                    const char **why);

//  --------------------------------------------------------------------------
//  Envelopes for SEND and SENDS

struct msgpack_sbuffer;

//  Encodes env (tr_envelope.h) at the end of sbuf, as tr_envelope_encode
//  would, for a batch of envelopes in one buffer. The body is taken as
//  already checked (one msgpack value, bounded nesting: the node checked
//  it when the message was made) and is not walked again. Returns TR_OK,
//  TR_EINVAL (a field), TR_ETOOBIG, TR_ENOMEM; sbuf is unchanged on error.
int
    tr__envelope_append (const tr_envelope_t *env, struct msgpack_sbuffer *sbuf);

#endif
