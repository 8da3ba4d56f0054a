/*  tr_wire.c - command frames of the broker protocol; the format is in
    protocols/2-broker.md, the contract in tr_wire.h.

    Writing appends the shortest msgpack forms to a growable buffer.
    Reading goes through the bounded reader of tr_mp.c: tr__wire_parse
    reads the head [VERB, SEQ, and tr__wire_check the arguments, against
    the verb's line in s_schemas below (one line per verb of 2.4).
*/

#include "tr_wire.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

//  The words of the verbs, indexed by tr__verb_t.
static const char *s_words [TR__V_COUNT] = {
    [TR__V_UNKNOWN]     = NULL,
    [TR__V_HELLO]       = "HELLO",
    [TR__V_OK]          = "OK",
    [TR__V_ERROR]       = "ERROR",
    [TR__V_REGISTER]    = "REGISTER",
    [TR__V_UNREGISTER]  = "UNREGISTER",
    [TR__V_SEND]        = "SEND",
    [TR__V_DELIVER]     = "DELIVER",
    [TR__V_BOUNCE]      = "BOUNCE",
    [TR__V_NODES]       = "NODES",
    [TR__V_HEARTBEAT]   = "HEARTBEAT",
    [TR__V_BYE]         = "BYE",
    [TR__V_NODE_DOWN]   = "NODE_DOWN",
    [TR__V_SUB]         = "SUB",
    [TR__V_UNSUB]       = "UNSUB",
    [TR__V_PUB]         = "PUB",
    [TR__V_EVENT]       = "EVENT",
    [TR__V_KV_GET]      = "KV_GET",
    [TR__V_KV_PUT]      = "KV_PUT",
    [TR__V_KV_CAS]      = "KV_CAS",
    [TR__V_KV_DEL]      = "KV_DEL",
    [TR__V_KV_LIST]     = "KV_LIST",
    [TR__V_KV_SNAPSHOT] = "KV_SNAPSHOT",
    [TR__V_KV_WATCH]    = "KV_WATCH",
    [TR__V_KV_UNWATCH]  = "KV_UNWATCH",
    [TR__V_KV_CHANGE]   = "KV_CHANGE",
    [TR__V_KV_RESYNC]   = "KV_RESYNC",
    [TR__V_SENDS]       = "SENDS",
    [TR__V_DELIVERS]    = "DELIVERS",
    [TR__V_PUBS]        = "PUBS",
    [TR__V_EVENTS]      = "EVENTS",
    [TR__V_MULTI]       = "MULTI",
};

const char *
tr__wire_verb_name (int verb)
{
    if (verb <= TR__V_UNKNOWN || verb >= TR__V_COUNT)
        return NULL;
    return s_words [verb];
}

int
tr__wire_verb (const char *word, size_t len)
{
    if (!word)
        return TR__V_UNKNOWN;
    for (int verb = TR__V_UNKNOWN + 1; verb < TR__V_COUNT; verb++)
        if (strlen (s_words [verb]) == len && memcmp (s_words [verb], word, len) == 0)
            return verb;
    return TR__V_UNKNOWN;
}

//  --------------------------------------------------------------------------
//  Writing

//  Appends n bytes, growing the buffer by doubling; sets failed when
//  memory runs out.
static void
s_put (tr__wire_out_t *self, const void *bytes, size_t n)
{
    if (self->failed || n == 0)
        return;
    if (n > self->room - self->size) {
        size_t room = self->room? self->room: 64;
        while (n > room - self->size) {
            if (room > SIZE_MAX / 2) {
                self->failed = true;
                return;
            }
            room *= 2;
        }
        uint8_t *data = (uint8_t *) realloc (self->data, room);
        if (!data) {
            self->failed = true;
            return;
        }
        self->data = data;
        self->room = room;
    }
    memcpy (self->data + self->size, bytes, n);
    self->size += n;
}

//  Appends a type byte followed by value as a big-endian integer of width
//  bytes (0, 1, 2, 4 or 8).
static void
s_put_head (tr__wire_out_t *self, uint8_t type, uint64_t value, size_t width)
{
    uint8_t head [9];
    head [0] = type;
    for (size_t i = 0; i < width; i++)
        head [1 + i] = (uint8_t) (value >> (8 * (width - 1 - i)));
    s_put (self, head, 1 + width);
}

//  Appends an array, map or str header: the fix form when the count fits
//  below fix_limit, else the 8- (str only), 16- or 32-bit form. t8 is 0
//  for arrays and maps, which have no 8-bit form.
static void
s_put_count (tr__wire_out_t *self, uint64_t n, uint8_t fix, uint64_t fix_limit,
             uint8_t t8, uint8_t t16)
{
    if (n < fix_limit)
        s_put_head (self, (uint8_t) (fix | n), 0, 0);
    else
    if (t8 && n <= 0xff)
        s_put_head (self, t8, n, 1);
    else
    if (n <= 0xffff)
        s_put_head (self, t16, n, 2);
    else
    if (n <= 0xffffffff)
        s_put_head (self, (uint8_t) (t16 + 1), n, 4);
    else
        self->failed = true;
}

void
tr__wire_begin_word (tr__wire_out_t *self, const char *word, size_t len,
                     uint64_t seq, uint32_t nargs)
{
    assert (word && len >= 1 && len <= TR__WIRE_VERB_MAX);
    self->data = NULL;
    self->size = 0;
    self->room = 0;
    self->failed = false;
    s_put_count (self, (uint64_t) nargs + 2, 0x90, 16, 0, 0xdc);
    tr__wire_str (self, word, len);
    tr__wire_uint (self, seq);
}

void
tr__wire_begin (tr__wire_out_t *self, int verb, uint64_t seq, uint32_t nargs)
{
    const char *word = tr__wire_verb_name (verb);
    assert (word);
    tr__wire_begin_word (self, word, strlen (word), seq, nargs);
}

void
tr__wire_str (tr__wire_out_t *self, const char *text, size_t len)
{
    s_put_count (self, len, 0xa0, 32, 0xd9, 0xda);
    s_put (self, text, len);
}

void
tr__wire_uint (tr__wire_out_t *self, uint64_t value)
{
    if (value <= 0x7f)
        s_put_head (self, (uint8_t) value, 0, 0);
    else
    if (value <= 0xff)
        s_put_head (self, 0xcc, value, 1);
    else
    if (value <= 0xffff)
        s_put_head (self, 0xcd, value, 2);
    else
    if (value <= 0xffffffff)
        s_put_head (self, 0xce, value, 4);
    else
        s_put_head (self, 0xcf, value, 8);
}

void
tr__wire_int (tr__wire_out_t *self, int64_t value)
{
    uint64_t bits = (uint64_t) value;   //  two's complement, as msgpack
    if (value >= 0)
        tr__wire_uint (self, (uint64_t) value);
    else
    if (value >= -32)
        s_put_head (self, (uint8_t) bits, 0, 0);
    else
    if (value >= INT8_MIN)
        s_put_head (self, 0xd0, bits & 0xff, 1);
    else
    if (value >= INT16_MIN)
        s_put_head (self, 0xd1, bits & 0xffff, 2);
    else
    if (value >= INT32_MIN)
        s_put_head (self, 0xd2, bits & 0xffffffff, 4);
    else
        s_put_head (self, 0xd3, bits, 8);
}

void
tr__wire_nil (tr__wire_out_t *self)
{
    s_put_head (self, 0xc0, 0, 0);
}

void
tr__wire_bool (tr__wire_out_t *self, bool value)
{
    s_put_head (self, value? 0xc3: 0xc2, 0, 0);
}

void
tr__wire_array (tr__wire_out_t *self, uint32_t n)
{
    s_put_count (self, n, 0x90, 16, 0, 0xdc);
}

void
tr__wire_map (tr__wire_out_t *self, uint32_t n)
{
    s_put_count (self, n, 0x80, 16, 0, 0xde);
}

void
tr__wire_raw (tr__wire_out_t *self, const void *value, size_t size)
{
    s_put (self, value, size);
}

void
tr__wire_end (tr__wire_out_t *self)
{
    free (self->data);
    self->data = NULL;
    self->size = 0;
    self->room = 0;
    self->failed = false;
}

void
tr__wire_error (tr__wire_out_t *self, uint64_t seq, int code, const char *text)
{
    if (!text)
        text = "";
    tr__wire_begin (self, TR__V_ERROR, seq, 2);
    tr__wire_int (self, code);
    tr__wire_str (self, text, strlen (text));
}

//  --------------------------------------------------------------------------
//  Reading

//  What an argument must be. Its form (the msgpack type) is judged
//  first, for all the arguments: a wrong one is TR_EMALFORMED. Its value
//  next: a bad one is TR_EINVAL.
typedef enum {
    A_ANY,          //  any one value
    A_UINT,         //  a non-negative integer
    A_CODE,         //  a negative integer that fits in 32 bits (2.7)
    A_STR,          //  any str
    A_NAME,         //  a name (2.1): tr_name_check
    A_KEY,          //  a scratchpad key: 1..1024 bytes, the names' alphabet
    A_TOPIC,        //  an event topic: 1..255 bytes, the same alphabet
    A_PREFIX,       //  a SUB/UNSUB prefix: 0..255 bytes, the same alphabet
    A_KPREFIX,      //  a KV_ prefix: 0..1024 bytes, the same alphabet
    A_NAMES,        //  an array of names (NODE_DOWN, SENDS)
    A_SIZES,        //  an array of uints, each 1 or more (SENDS, DELIVERS, PUBS, EVENTS)
    A_TOPICS,       //  an array of topics (PUBS, EVENTS)
    A_UINTS,        //  an array of uints, 0 allowed (MULTI's payload sizes)
    A_KIND,         //  HELLO's KIND: "node", "actor" or "client"
    A_HEARTBEAT     //  HELLO's HEARTBEAT_MS: a uint, 100..60000
} s_arg_t;

#define S_KNOWN_MAX 6

typedef struct {
    uint8_t required;           //  arguments that must be present
    uint8_t known;              //  arguments this version reads (>= required)
    uint8_t args [S_KNOWN_MAX];
} s_schema_t;

//  The arguments after SEQ, as 2.3 and 2.4 give them. OK's results
//  depend on the request, which the frame does not name: any are fine.
static const s_schema_t s_schemas [TR__V_COUNT] = {
    [TR__V_HELLO]       = { 6, 6, { A_STR, A_UINT, A_UINT, A_NAME, A_KIND, A_HEARTBEAT } },
    [TR__V_OK]          = { 0, 0, { 0 } },
    [TR__V_ERROR]       = { 2, 2, { A_CODE, A_STR } },
    [TR__V_REGISTER]    = { 1, 1, { A_NAME } },
    [TR__V_UNREGISTER]  = { 1, 1, { A_NAME } },
    [TR__V_SEND]        = { 1, 1, { A_NAME } },
    [TR__V_DELIVER]     = { 0, 0, { 0 } },
    [TR__V_BOUNCE]      = { 2, 2, { A_NAME, A_CODE } },
    [TR__V_NODES]       = { 0, 0, { 0 } },
    [TR__V_HEARTBEAT]   = { 0, 0, { 0 } },
    [TR__V_BYE]         = { 0, 0, { 0 } },
    [TR__V_NODE_DOWN]   = { 2, 2, { A_NAME, A_NAMES } },
    [TR__V_SUB]         = { 1, 1, { A_PREFIX } },
    [TR__V_UNSUB]       = { 1, 1, { A_PREFIX } },
    [TR__V_PUB]         = { 1, 1, { A_TOPIC } },
    [TR__V_EVENT]       = { 2, 3, { A_TOPIC, A_NAME, A_UINT } },        //  DROPPED optional
    [TR__V_KV_GET]      = { 1, 1, { A_KEY } },
    [TR__V_KV_PUT]      = { 2, 2, { A_KEY, A_UINT } },
    [TR__V_KV_CAS]      = { 3, 3, { A_KEY, A_UINT, A_UINT } },
    [TR__V_KV_DEL]      = { 1, 1, { A_KEY } },
    [TR__V_KV_LIST]     = { 1, 1, { A_KPREFIX } },
    [TR__V_KV_SNAPSHOT] = { 1, 1, { A_KPREFIX } },
    [TR__V_KV_WATCH]    = { 2, 2, { A_KPREFIX, A_UINT } },
    [TR__V_KV_UNWATCH]  = { 1, 1, { A_KPREFIX } },
    [TR__V_KV_CHANGE]   = { 3, 3, { A_KPREFIX, A_KEY, A_UINT } },
    [TR__V_KV_RESYNC]   = { 1, 1, { A_KPREFIX } },
    [TR__V_SENDS]       = { 2, 2, { A_NAMES, A_SIZES } },
    [TR__V_DELIVERS]    = { 1, 1, { A_SIZES } },
    [TR__V_PUBS]        = { 2, 2, { A_TOPICS, A_SIZES } },
    [TR__V_EVENTS]      = { 3, 4, { A_NAME, A_TOPICS, A_SIZES, A_UINT } },  //  DROPPED optional
    [TR__V_MULTI]       = { 2, 2, { A_SIZES, A_UINTS } },
};

//  One argument as the form pass read it, for the value pass.
typedef struct {
    const uint8_t *at;          //  where it starts
    const char *str;            //  a str's bytes
    uint32_t len;
    uint64_t uint;              //  a uint's value
} s_value_t;

static int
s_fail (tr__wire_cmd_t *cmd, int code, const char *why)
{
    cmd->why = why;
    return code;
}

int
tr__wire_parse (const void *data, size_t size, tr__wire_cmd_t *cmd)
{
    memset (cmd, 0, sizeof *cmd);
    if (size > TR__WIRE_MAX_FRAME)
        return s_fail (cmd, TR_ETOOBIG, "frame larger than max_frame");
    tr__mp_t *r = &cmd->args;
    tr__mp_init (r, data, size);
    uint32_t n;
    //  A reader that fails on the type byte leaves the cursor on it; past
    //  it, the reader's own reason (a count or length too large) says more.
    if (tr__mp_array (r, &n))
        return s_fail (cmd, TR_EMALFORMED, r->p == r->start?
                       "a command frame must be a msgpack array": r->why);
    if (n < 2)
        return s_fail (cmd, TR_EMALFORMED, "a command needs a verb and a SEQ");
    const uint8_t *verb_at = r->p;
    const char *word;
    uint32_t len;
    const char *why = NULL;
    if (tr__mp_str (r, &word, &len))
        why = r->p == verb_at? "the verb must be a str": r->why;
    else
    if (len < 1 || len > TR__WIRE_VERB_MAX)
        why = "the verb must be 1 to 32 bytes";
    if (why) {
        //  Still read SEQ if it is there, so that the ERROR can carry it.
        tr__mp_t rest;
        tr__mp_init (&rest, verb_at, (size_t) (r->end - verb_at));
        if (tr__mp_skip (&rest, TR__WIRE_ARG_DEPTH) || tr__mp_uint (&rest, &cmd->seq))
            cmd->seq = 0;
        return s_fail (cmd, TR_EMALFORMED, why);
    }
    if (tr__mp_uint (r, &cmd->seq))
        return s_fail (cmd, TR_EMALFORMED, "SEQ must be a uint");
    cmd->verb = tr__wire_verb (word, len);
    cmd->word = word;
    cmd->word_len = len;
    cmd->nargs = n - 2;
    return TR_OK;
}

//  True if s (len bytes) is UTF-8 of the names' alphabet (2.1): shortest
//  forms only, no surrogates, nothing above U+10FFFF, no control
//  characters (U+0000..U+001F, U+007F..U+009F) and no space. Any length,
//  including 0; the caller checks the length.
static bool
s_alphabet_ok (const char *text, size_t len)
{
    static const uint32_t min_cp [5] = { 0, 0, 0x80, 0x800, 0x10000 };
    const uint8_t *s = (const uint8_t *) text;
    size_t i = 0;
    while (i < len) {
        uint8_t lead = s [i];
        size_t width;
        uint32_t cp;
        if (lead <= 0x20 || lead == 0x7f)
            return false;
        if (lead < 0x80) {
            i++;
            continue;
        }
        if ((lead & 0xe0) == 0xc0) { width = 2; cp = lead & 0x1f; }
        else
        if ((lead & 0xf0) == 0xe0) { width = 3; cp = lead & 0x0f; }
        else
        if ((lead & 0xf8) == 0xf0) { width = 4; cp = lead & 0x07; }
        else
            return false;
        if (width > len - i)
            return false;
        for (size_t k = 1; k < width; k++) {
            if ((s [i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s [i + k] & 0x3f);
        }
        if (cp < min_cp [width] || (cp >= 0xd800 && cp <= 0xdfff)
        ||  cp > 0x10ffff || (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += width;
    }
    return true;
}

//  1. The frame is one value: every argument well-formed and nested no
//  deeper than allowed, and nothing after the last.
static int
s_check_frame (tr__wire_cmd_t *cmd)
{
    tr__mp_t r = cmd->args;
    for (uint32_t i = 0; i < cmd->nargs; i++)
        if (tr__mp_skip (&r, TR__WIRE_ARG_DEPTH))
            return s_fail (cmd, TR_EMALFORMED, r.error == TR_EDEPTH?
                           "an argument nests containers too deep": r.why);
    if (tr__mp_remaining (&r))
        return s_fail (cmd, TR_EMALFORMED, "bytes after the command's array");
    return TR_OK;
}

//  3. HELLO's signature and major version, judged before the rest so
//  that a newer major is refused as such (2.3).
static int
s_check_greeting (tr__wire_cmd_t *cmd)
{
    tr__mp_t r = cmd->args;
    const char *sig;
    uint32_t len;
    uint64_t major;
    if (cmd->nargs < 1 || tr__mp_str (&r, &sig, &len)
    ||  len != 3 || memcmp (sig, "TRP", 3) != 0)
        return s_fail (cmd, TR_EPROTO, "HELLO must start with the signature \"TRP\"");
    if (cmd->nargs < 2 || tr__mp_uint (&r, &major))
        return s_fail (cmd, TR_EMALFORMED, "HELLO's MAJOR must be a uint");
    if (major != TR__WIRE_MAJOR)
        return s_fail (cmd, TR_EVERSION, "another major version of the protocol");
    return TR_OK;
}

//  Reads one argument of type `type` into v. Returns NULL, or why the
//  argument does not have the form the type needs.
static const char *
s_read_arg (tr__mp_t *r, int type, s_value_t *v)
{
    v->at = r->p;
    switch (type) {
        case A_UINT:
        case A_HEARTBEAT:
            return tr__mp_uint (r, &v->uint)? "expected a uint argument": NULL;
        case A_CODE: {
            int64_t code;
            if (tr__mp_int (r, &code) || code >= 0 || code < INT32_MIN)
                return "an error CODE must be a negative 32-bit int";
            return NULL;
        }
        case A_NAMES:
        case A_TOPICS: {
            uint32_t n;
            if (tr__mp_array (r, &n))
                return type == A_NAMES? "expected an array of names": "expected an array of topics";
            for (uint32_t i = 0; i < n; i++)
                if (tr__mp_str (r, &v->str, &v->len))
                    return type == A_NAMES? "expected an array of names (str)":
                                            "expected an array of topics (str)";
            return NULL;
        }
        case A_SIZES:
        case A_UINTS: {
            uint32_t n;
            if (tr__mp_array (r, &n))
                return "expected an array of sizes";
            for (uint32_t i = 0; i < n; i++)
                if (tr__mp_uint (r, &v->uint))
                    return "expected an array of sizes (uint)";
            return NULL;
        }
        case A_ANY:
            return tr__mp_skip (r, TR__WIRE_ARG_DEPTH)? "bad argument": NULL;
        default:                        //  the str types
            return tr__mp_str (r, &v->str, &v->len)? "expected a str argument": NULL;
    }
}

//  True if every element of the array of names at v->at is a valid name.
static bool
s_names_ok (const s_value_t *v, const uint8_t *end)
{
    tr__mp_t r;
    uint32_t n;
    tr__mp_init (&r, v->at, (size_t) (end - v->at));
    tr__mp_array (&r, &n);              //  read before: cannot fail
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        uint32_t len;
        tr__mp_str (&r, &name, &len);
        if (tr_name_check (name, len) != TR_OK)
            return false;
    }
    return true;
}

//  True if every element of the array of topics at v->at is a topic.
static bool
s_topics_ok (const s_value_t *v, const uint8_t *end)
{
    tr__mp_t r;
    uint32_t n;
    tr__mp_init (&r, v->at, (size_t) (end - v->at));
    tr__mp_array (&r, &n);              //  read before: cannot fail
    for (uint32_t i = 0; i < n; i++) {
        const char *topic;
        uint32_t len;
        tr__mp_str (&r, &topic, &len);
        if (len < 1 || len > 255 || !s_alphabet_ok (topic, len))
            return false;
    }
    return true;
}

//  True if every element of the array of sizes at v->at is 1 or more.
static bool
s_sizes_ok (const s_value_t *v, const uint8_t *end)
{
    tr__mp_t r;
    uint32_t n;
    tr__mp_init (&r, v->at, (size_t) (end - v->at));
    tr__mp_array (&r, &n);              //  read before: cannot fail
    for (uint32_t i = 0; i < n; i++) {
        uint64_t size;
        tr__mp_uint (&r, &size);
        if (size == 0)
            return false;
    }
    return true;
}

//  True if s is one of the KIND words of HELLO.
static bool
s_kind_ok (const char *s, uint32_t len)
{
    return (len == 4 && memcmp (s, "node", 4) == 0)
        || (len == 5 && memcmp (s, "actor", 5) == 0)
        || (len == 6 && memcmp (s, "client", 6) == 0);
}

//  Judges the value of one argument read by s_read_arg. Returns NULL, or
//  why it is not valid.
static const char *
s_judge_arg (int type, const s_value_t *v, const uint8_t *end)
{
    switch (type) {
        case A_NAME:
            return tr_name_check (v->str, v->len)? "not a valid name": NULL;
        case A_NAMES:
            return s_names_ok (v, end)? NULL: "not a list of valid names";
        case A_SIZES:
            return s_sizes_ok (v, end)? NULL: "a size of 0 in a list of sizes";
        case A_TOPICS:
            return s_topics_ok (v, end)? NULL: "not a list of valid topics";
        case A_KEY:
            return v->len >= 1 && v->len <= 1024 && s_alphabet_ok (v->str, v->len)?
                   NULL: "not a valid key (1 to 1024 bytes, no controls or spaces)";
        case A_TOPIC:
            return v->len >= 1 && v->len <= 255 && s_alphabet_ok (v->str, v->len)?
                   NULL: "not a valid topic (1 to 255 bytes, no controls or spaces)";
        case A_PREFIX:
            return v->len <= 255 && s_alphabet_ok (v->str, v->len)?
                   NULL: "not a valid prefix (0 to 255 bytes, no controls or spaces)";
        case A_KPREFIX:
            return v->len <= 1024 && s_alphabet_ok (v->str, v->len)?
                   NULL: "not a valid prefix (0 to 1024 bytes, no controls or spaces)";
        case A_KIND:
            return s_kind_ok (v->str, v->len)? NULL: "KIND must be node, actor or client";
        case A_HEARTBEAT:
            return v->uint >= 100 && v->uint <= 60000?
                   NULL: "HEARTBEAT_MS must be 100 to 60000";
        default:
            return NULL;
    }
}

int
tr__wire_check (tr__wire_cmd_t *cmd)
{
    cmd->why = NULL;
    int rc = s_check_frame (cmd);
    if (rc)
        return rc;
    if (cmd->verb <= TR__V_UNKNOWN || cmd->verb >= TR__V_COUNT)
        return s_fail (cmd, TR_EINVAL, "unknown verb");
    if (cmd->verb == TR__V_HELLO && (rc = s_check_greeting (cmd)))
        return rc;

    //  4. Form, argument by argument, as far as this version knows them.
    const s_schema_t *schema = &s_schemas [cmd->verb];
    if (cmd->nargs < schema->required)
        return s_fail (cmd, TR_EMALFORMED, "missing arguments");
    uint32_t known = cmd->nargs < schema->known? cmd->nargs: schema->known;
    s_value_t values [S_KNOWN_MAX];
    tr__mp_t r = cmd->args;
    for (uint32_t i = 0; i < known; i++) {
        const char *why = s_read_arg (&r, schema->args [i], &values [i]);
        if (why)
            return s_fail (cmd, TR_EMALFORMED, why);
    }
    //  5. Values.
    for (uint32_t i = 0; i < known; i++) {
        const char *why = s_judge_arg (schema->args [i], &values [i], r.end);
        if (why)
            return s_fail (cmd, TR_EINVAL, why);
    }
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Batches

//  Reads one array of sizes into sizes[], adding them to *total; false if
//  it is not an array of uints of `min` or more, of 1 to
//  TR__WIRE_MAX_BATCH items (or of `count` items, if not 0), or its sum
//  passes limit.
static bool
s_sizes (tr__mp_t *r, uint64_t min, uint32_t *count, uint32_t *sizes, uint64_t *total,
         uint64_t limit)
{
    uint32_t n;
    if (tr__mp_array (r, &n) || n == 0 || n > TR__WIRE_MAX_BATCH || (*count && n != *count))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t size;
        if (tr__mp_uint (r, &size) || size < min || size > limit - *total)
            return false;
        sizes [i] = (uint32_t) size;
        *total += size;
    }
    *count = n;
    return true;
}

int
tr__wire_batch (tr__mp_t *r, bool pairs, size_t payload_size, tr__wire_batch_t *batch,
                const char **why)
{
    batch->count = 0;
    uint64_t total = 0;
    if (!s_sizes (r, 1, &batch->count, batch->size, &total, payload_size)
    ||  (pairs && !s_sizes (r, 0, &batch->count, batch->size2, &total, payload_size))) {
        *why = "a batch needs 1 to max_batch sizes (as many in each list) "
               "that add up to its payload";
        return TR_EMALFORMED;
    }
    if (total != payload_size) {
        *why = "a batch's sizes must add up to its payload";
        return TR_EMALFORMED;
    }
    size_t at = 0;
    for (uint32_t i = 0; i < batch->count; i++) {
        batch->offset [i] = at;
        at += batch->size [i] + (pairs? batch->size2 [i]: 0);
    }
    return TR_OK;
}
