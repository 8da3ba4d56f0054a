/*  tr_tree.c - tree files: YAML in, a checked tr_tree_t out; see tr_tree.h
    and docs/tree-format.md.

    Loading takes two passes. The first reads libyaml's events into a
    small document of s_node_t (scalars, sequences and mappings, each
    with its line and column), refusing anchors, aliases, tags, a second
    document, duplicate keys and deep nesting on the way. The second
    walks that document and builds the tree, checking every key, value,
    name, actor type, plugin and parameter as it goes. The first problem
    ends the load: it is written into the caller's tr_tree_error_t and
    everything built so far is freed.

    Memory: the document, the tree and every string and array in them
    come from one arena (a list of blocks) owned by the tree, so freeing
    a tree, loaded or half-built, is freeing its blocks and closing the
    plugin libraries it opened. The loader's only other allocation is a
    hash table of the keys and names seen, freed when loading ends.
*/

#include "troupe/tr_tree.h"
#include "troupe/tr_envelope.h"
#include "troupe/tr_error.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define S_MAX_DEPTH     64              //  nesting of YAML collections
#define S_MAX_FILE      (16 << 20)      //  largest file tr_tree_load reads
#define S_BLOCK         8192            //  arena block size
#define S_NO_TEXT       "<text>"        //  file name when none is given

//  --------------------------------------------------------------------------
//  The arena and the tree behind the public struct

typedef struct s_block {
    struct s_block *next;
    size_t size;                        //  bytes in data
    size_t used;
    max_align_t data [];
} s_block_t;

typedef struct s_handle {
    struct s_handle *next;
    void *library;                      //  from dlopen
} s_handle_t;

typedef struct {
    tr_tree_t tree;                     //  first: what callers see
    s_block_t *blocks;
    s_handle_t *handles;                //  plugin libraries to close
} s_tree_t;

//  Returns size zeroed bytes from the tree's arena, or NULL if out of
//  memory. A large request gets a block of its own, kept behind the
//  current one so that the current one's free room is not lost.
static void *
s_alloc (s_tree_t *self, size_t size)
{
    const size_t align = _Alignof (max_align_t);
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + align - 1) / align * align;
    s_block_t *block = self->blocks;
    if (!block || block->size - block->used < size) {
        size_t room = size > S_BLOCK / 4? size: S_BLOCK;
        block = (s_block_t *) malloc (sizeof *block + room);
        if (!block)
            return NULL;
        block->size = room;
        block->used = 0;
        if (room == size && self->blocks) {
            block->next = self->blocks->next;
            self->blocks->next = block;
        }
        else {
            block->next = self->blocks;
            self->blocks = block;
        }
    }
    void *bytes = (char *) block->data + block->used;
    block->used += size;
    memset (bytes, 0, size);
    return bytes;
}

//  Copies len bytes of text into the arena with a NUL after them.
static char *
s_strndup (s_tree_t *self, const char *text, size_t len)
{
    char *copy = (char *) s_alloc (self, len + 1);
    if (copy && len)
        memcpy (copy, text, len);
    return copy;
}

//  Closes the plugin libraries and frees every block, then the tree.
static void
s_tree_free (s_tree_t *self)
{
    while (self->handles) {
        dlclose (self->handles->library);
        self->handles = self->handles->next;    //  the node is in a block
    }
    while (self->blocks) {
        s_block_t *next = self->blocks->next;
        free (self->blocks);
        self->blocks = next;
    }
    free (self);
}

//  --------------------------------------------------------------------------
//  The document: what the YAML said, with positions

typedef enum { S_SCALAR, S_SEQUENCE, S_MAPPING } s_kind_t;

typedef struct s_node s_node_t;
struct s_node {
    int kind;                           //  s_kind_t
    int line;                           //  1-based
    int column;                         //  1-based
    const char *text;                   //  scalar: NUL-terminated copy
    size_t len;                         //  scalar: bytes (may hold NULs)
    bool plain;                         //  scalar: written without quotes
    s_node_t *first;                    //  collection: entries; a mapping
    s_node_t *last;                     //  holds key, value, key, value...
    size_t count;                       //  entries (twice the pairs)
    s_node_t *next;                     //  next entry of the parent
};

//  --------------------------------------------------------------------------
//  A hash table of (scope, text) -> line: keys per mapping (scope: the
//  mapping) and names across the file (scope: NULL).

typedef struct {
    const void *scope;
    const char *text;                   //  NULL: a free slot
    size_t len;
    int line;
} s_entry_t;

typedef struct {
    s_entry_t *slots;
    size_t room;                        //  0 or a power of two
    size_t used;
} s_table_t;

static size_t
s_hash (const void *scope, const char *text, size_t len)
{
    uint64_t h = UINT64_C (14695981039346656037) ^ (uint64_t) (uintptr_t) scope;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t) text [i];
        h *= UINT64_C (1099511628211);
    }
    return (size_t) (h ^ (h >> 31));
}

//  The slot that holds (scope, text), or the free one where it belongs.
static s_entry_t *
s_slot (s_entry_t *slots, size_t room, const void *scope,
        const char *text, size_t len)
{
    size_t i = s_hash (scope, text, len) & (room - 1);
    while (slots [i].text
       && (slots [i].scope != scope || slots [i].len != len
       ||  memcmp (slots [i].text, text, len) != 0))
        i = (i + 1) & (room - 1);
    return &slots [i];
}

//  Doubles the table. Returns 0, or -1 if out of memory.
static int
s_table_grow (s_table_t *self)
{
    size_t room = self->room? 2 * self->room: 64;
    s_entry_t *slots = (s_entry_t *) calloc (room, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < self->room; i++) {
        s_entry_t *entry = &self->slots [i];
        if (entry->text)
            *s_slot (slots, room, entry->scope, entry->text, entry->len) = *entry;
    }
    free (self->slots);
    self->slots = slots;
    self->room = room;
    return 0;
}

//  Adds (scope, text), seen at line. Returns 0 if it is new, 1 if it was
//  there already (*first_line says where), -1 if out of memory.
static int
s_table_add (s_table_t *self, const void *scope, const char *text,
             size_t len, int line, int *first_line)
{
    if (2 * (self->used + 1) > self->room && s_table_grow (self))
        return -1;
    s_entry_t *entry = s_slot (self->slots, self->room, scope, text, len);
    if (entry->text) {
        *first_line = entry->line;
        return 1;
    }
    *entry = (s_entry_t) { scope, text, len, line };
    self->used++;
    return 0;
}

//  True if (NULL, text) is in the table.
static bool
s_table_has (const s_table_t *self, const char *text, size_t len)
{
    return self->room
        && s_slot (self->slots, self->room, NULL, text, len)->text != NULL;
}

//  --------------------------------------------------------------------------
//  The loader and its error reports

//  A fallback as written; checked once every name in the file is known.
typedef struct s_pending {
    struct s_pending *next;
    const s_node_t *node;
} s_pending_t;

typedef struct {
    const char *path;                   //  as given, or NULL
    s_tree_t *tree;
    tr_tree_error_t *err;               //  never NULL
    yaml_parser_t parser;
    s_table_t table;
    s_pending_t *fallbacks;
    const char *root_name;
} s_load_t;

//  Records a problem at line and column (0: none) and returns
//  TR_EMALFORMED.
static int
s_fail_at (s_load_t *self, int line, int column, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_fail_at (s_load_t *self, int line, int column, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->err->message, sizeof self->err->message, format, args);
    va_end (args);
    self->err->line = line;
    self->err->column = column;
    return TR_EMALFORMED;
}

//  The same at a node's position.
#define s_fail(self, node, ...) \
    s_fail_at ((self), (node)->line, (node)->column, __VA_ARGS__)

static int
s_nomem (s_load_t *self)
{
    s_fail_at (self, 0, 0, "out of memory");
    return TR_ENOMEM;
}

//  Text quoted in a message: at most S_SHOWN bytes, control characters
//  shown as '?', a cut marked with "...". The buffer has room for the
//  quotes, the cut mark and a few words before them (s_what_value).
#define S_SHOWN 54

typedef struct {
    char text [80];
} s_shown_t;

static s_shown_t
s_show (const char *text, size_t len)
{
    s_shown_t shown;
    size_t n = len, limit = S_SHOWN;
    if (n > limit) {
        n = limit;
        while (n > 0 && ((uint8_t) text [n] & 0xc0) == 0x80)
            n--;                                //  not inside a character
    }
    size_t at = 0;
    shown.text [at++] = '\'';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t) text [i];
        shown.text [at++] = c < 0x20 || c == 0x7f? '?': (char) c;
    }
    if (n < len) {
        memcpy (shown.text + at, "...", 3);
        at += 3;
    }
    shown.text [at++] = '\'';
    shown.text [at] = 0;
    return shown;
}

//  A node as a message names it: its text, quoted, or what it is.
static s_shown_t
s_what (const s_node_t *node)
{
    if (node->kind == S_SCALAR)
        return s_show (node->text, node->len);
    s_shown_t shown;
    snprintf (shown.text, sizeof shown.text, "%s%s", node->count? "a ": "an empty ",
              node->kind == S_MAPPING? "mapping": "sequence");
    return shown;
}

//  The same for a value of the wrong type: a quoted scalar is named as
//  a string, since "must be an integer, not '3'" would puzzle whoever
//  wrote "3".
static s_shown_t
s_what_value (const s_node_t *node)
{
    s_shown_t shown = s_what (node);
    if (node->kind == S_SCALAR && !node->plain) {
        s_shown_t quoted;
        snprintf (quoted.text, sizeof quoted.text, "the string %.66s", shown.text);
        return quoted;
    }
    return shown;
}

//  Writes the words of a NULL-terminated list, comma-separated.
static const char *
s_join (const char *const *words, char *buf, size_t size)
{
    size_t at = 0;
    buf [0] = 0;
    for (size_t i = 0; words [i] && at < size; i++)
        at += (size_t) snprintf (buf + at, size - at, "%s%s", i? ", ": "", words [i]);
    return buf;
}

//  --------------------------------------------------------------------------
//  First pass: libyaml's events into the document

//  Line and column (1-based, in characters) of a byte offset into text.
static void
s_offset_position (const char *text, size_t len, size_t offset,
                   int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text [i] == '\n') {
            ++*line;
            *column = 1;
        }
        else
        if (((uint8_t) text [i] & 0xc0) != 0x80)
            ++*column;
    }
}

//  Reports libyaml's own error.
static int
s_yaml_error (s_load_t *self, const char *text, size_t len)
{
    yaml_parser_t *parser = &self->parser;
    if (parser->error == YAML_MEMORY_ERROR)
        return s_nomem (self);
    int line = (int) parser->problem_mark.line + 1;
    int column = (int) parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR)
        s_offset_position (text, len, parser->problem_offset, &line, &column);
    const char *problem = parser->problem? parser->problem: "unreadable";
    if (parser->context)
        return s_fail_at (self, line, column, "invalid YAML: %s (%s at line %d)",
                          problem, parser->context,
                          (int) parser->context_mark.line + 1);
    return s_fail_at (self, line, column, "invalid YAML: %s", problem);
}

//  Reads the next event. The caller deletes it, whatever the result.
static int
s_next (s_load_t *self, yaml_event_t *event, const char *text, size_t len)
{
    if (yaml_parser_parse (&self->parser, event))
        return TR_OK;
    return s_yaml_error (self, text, len);
}

//  Refuses what tree files do without: aliases, anchors and tags.
static int
s_refuse_extras (s_load_t *self, const yaml_event_t *event)
{
    int line = (int) event->start_mark.line + 1;
    int column = (int) event->start_mark.column + 1;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    if (event->type == YAML_ALIAS_EVENT)
        return s_fail_at (self, line, column,
                          "aliases (*%s) are not allowed in a tree file",
                          (const char *) event->data.alias.anchor);
    if (event->type == YAML_SCALAR_EVENT) {
        anchor = event->data.scalar.anchor;
        tag = event->data.scalar.tag;
    }
    else
    if (event->type == YAML_SEQUENCE_START_EVENT) {
        anchor = event->data.sequence_start.anchor;
        tag = event->data.sequence_start.tag;
    }
    else
    if (event->type == YAML_MAPPING_START_EVENT) {
        anchor = event->data.mapping_start.anchor;
        tag = event->data.mapping_start.tag;
    }
    //  libyaml's anchors are letters, digits, '-' and '_': safe to show.
    if (anchor)
        return s_fail_at (self, line, column,
                          "anchors (&%s) are not allowed in a tree file",
                          (const char *) anchor);
    if (tag)
        return s_fail_at (self, line, column,
                          "tags (%s) are not allowed in a tree file",
                          s_show ((const char *) tag, strlen ((const char *) tag)).text);
    return TR_OK;
}

static int
    s_parse_node (s_load_t *self, const yaml_event_t *event, int depth,
                  const char *text, size_t len, s_node_t **node_p);

//  Checks a mapping's new key: a scalar, not seen before in it.
static int
s_check_key (s_load_t *self, const s_node_t *map, const s_node_t *key)
{
    int first_line;
    if (key->kind != S_SCALAR)
        return s_fail (self, key, "a key must be a plain string, not %s",
                       s_what (key).text);
    int rc = s_table_add (&self->table, map, key->text, key->len,
                          key->line, &first_line);
    if (rc < 0)
        return s_nomem (self);
    if (rc > 0)
        return s_fail (self, key, "the key %s appears twice in this mapping "
                       "(first at line %d)", s_what (key).text, first_line);
    return TR_OK;
}

//  Reads the entries of a collection up to its end event.
static int
s_parse_entries (s_load_t *self, s_node_t *node, int depth,
                 const char *text, size_t len)
{
    if (depth > S_MAX_DEPTH)
        return s_fail (self, node, "nesting deeper than %d levels", S_MAX_DEPTH);
    while (true) {
        yaml_event_t event;
        s_node_t *entry = NULL;
        int rc = s_next (self, &event, text, len);
        bool end = event.type == YAML_SEQUENCE_END_EVENT
                || event.type == YAML_MAPPING_END_EVENT;
        if (rc == TR_OK && !end)
            rc = s_parse_node (self, &event, depth, text, len, &entry);
        yaml_event_delete (&event);
        if (rc || end)
            return rc;
        if (node->kind == S_MAPPING && node->count % 2 == 0
        &&  (rc = s_check_key (self, node, entry)) != TR_OK)
            return rc;
        if (node->last)
            node->last->next = entry;
        else
            node->first = entry;
        node->last = entry;
        node->count++;
    }
}

//  Builds the node that starts with event (its first event), reading
//  the rest of it from the parser.
static int
s_parse_node (s_load_t *self, const yaml_event_t *event, int depth,
              const char *text, size_t len, s_node_t **node_p)
{
    int rc = s_refuse_extras (self, event);
    if (rc)
        return rc;
    s_node_t *node = (s_node_t *) s_alloc (self->tree, sizeof *node);
    if (!node)
        return s_nomem (self);
    node->line = (int) event->start_mark.line + 1;
    node->column = (int) event->start_mark.column + 1;
    *node_p = node;
    if (event->type == YAML_SCALAR_EVENT) {
        node->kind = S_SCALAR;
        node->len = event->data.scalar.length;
        node->plain = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        node->text = s_strndup (self->tree,
                                (const char *) event->data.scalar.value, node->len);
        return node->text? TR_OK: s_nomem (self);
    }
    if (event->type != YAML_MAPPING_START_EVENT
    &&  event->type != YAML_SEQUENCE_START_EVENT)
        return s_fail (self, node, "invalid YAML: a value was expected here");
    node->kind = event->type == YAML_MAPPING_START_EVENT? S_MAPPING: S_SEQUENCE;
    return s_parse_entries (self, node, depth + 1, text, len);
}

//  Reads the document start; refuses %TAG directives.
static int
s_parse_start (s_load_t *self, const yaml_event_t *event)
{
    if (event->type == YAML_STREAM_END_EVENT)
        return s_fail_at (self, 0, 0, "the file is empty; expected a supervisor "
                          "(a mapping with name, strategy, children)");
    if (event->data.document_start.tag_directives.start
    !=  event->data.document_start.tag_directives.end)
        return s_fail_at (self, (int) event->start_mark.line + 1,
                          (int) event->start_mark.column + 1,
                          "tag directives (%%TAG) are not allowed in a tree file");
    return TR_OK;
}

//  Reads the one document of the stream into *top.
static int
s_parse_document (s_load_t *self, const char *text, size_t len, s_node_t **top)
{
    yaml_event_t event;
    int rc = TR_OK;
    //  stream start, document start, the top node, document end, and
    //  then the stream must end.
    for (int step = 0; step < 5 && rc == TR_OK; step++) {
        rc = s_next (self, &event, text, len);
        if (rc == TR_OK && step == 1)
            rc = s_parse_start (self, &event);
        else
        if (rc == TR_OK && step == 2)
            rc = s_parse_node (self, &event, 0, text, len, top);
        else
        if (rc == TR_OK && step == 4 && event.type != YAML_STREAM_END_EVENT)
            rc = s_fail_at (self, (int) event.start_mark.line + 1,
                            (int) event.start_mark.column + 1,
                            "a tree file holds one YAML document; a second one starts here");
        yaml_event_delete (&event);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Scalars: what a plain scalar means (YAML 1.2 core schema, as the
//  spec's "Parameters" section says)

typedef enum {
    S_V_STR, S_V_NIL, S_V_BOOL, S_V_INT, S_V_UINT, S_V_FLOAT,
    S_V_RANGE,                          //  an integer past 64 bits, or a
                                        //  float past a double's range
    S_V_NONE                            //  not a scalar
} s_vtype_t;

typedef struct {
    int type;                           //  s_vtype_t
    bool b;
    int64_t i;
    uint64_t u;
    double d;
} s_value_t;

static bool
s_word (const char *text, size_t len, const char *const *words)
{
    for (size_t i = 0; words [i]; i++)
        if (strlen (words [i]) == len && memcmp (words [i], text, len) == 0)
            return true;
    return false;
}

static int
s_digit_value (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 99;
}

//  Reads a YAML integer: [-+]?[0-9]+, 0x[0-9a-fA-F]+ or 0o[0-7]+.
//  Returns false if text is not one.
static bool
s_resolve_int (const char *text, size_t len, s_value_t *value)
{
    int base = 10;
    size_t i = 0;
    bool negative = false, over = false;
    if (len > 2 && text [0] == '0' && (text [1] == 'x' || text [1] == 'o')) {
        base = text [1] == 'x'? 16: 8;
        i = 2;
    }
    else
    if (len > 1 && (text [0] == '-' || text [0] == '+')) {
        negative = text [0] == '-';
        i = 1;
    }
    if (i == len)
        return false;
    uint64_t magnitude = 0;
    for (; i < len; i++) {
        int digit = s_digit_value (text [i]);
        if (digit >= base)
            return false;
        if (magnitude > (UINT64_MAX - (uint64_t) digit) / (uint64_t) base)
            over = true;
        magnitude = magnitude * (uint64_t) base + (uint64_t) digit;
    }
    value->type = S_V_INT;
    if (over || (negative && magnitude > (uint64_t) INT64_MAX + 1))
        value->type = S_V_RANGE;
    else
    if (negative)
        value->i = (int64_t) (0 - magnitude);
    else
    if (magnitude > (uint64_t) INT64_MAX) {
        value->type = S_V_UINT;
        value->u = magnitude;
    }
    else
        value->i = (int64_t) magnitude;
    return true;
}

//  Counts the decimal digits at text [*i], moving *i past them.
static size_t
s_digits (const char *text, size_t len, size_t *i)
{
    size_t start = *i;
    while (*i < len && text [*i] >= '0' && text [*i] <= '9')
        ++*i;
    return *i - start;
}

//  A locale whose decimal point is '.', whatever the program's locale.
static locale_t s_c_locale;
static pthread_once_t s_c_locale_once = PTHREAD_ONCE_INIT;

static void
s_c_locale_make (void)
{
    s_c_locale = newlocale (LC_ALL_MASK, "C", (locale_t) 0);
}

//  Reads a YAML float with a fraction or an exponent:
//  [-+]? (.[0-9]+ | [0-9]+ (.[0-9]*)?) ([eE] [-+]? [0-9]+)?
static bool
s_resolve_float (const char *text, size_t len, s_value_t *value)
{
    size_t i = 0, digits;
    bool point = false, exponent = false;
    if (i < len && (text [i] == '-' || text [i] == '+'))
        i++;
    digits = s_digits (text, len, &i);
    if (i < len && text [i] == '.') {
        point = true;
        i++;
        digits += s_digits (text, len, &i);
    }
    if (digits && i < len && (text [i] == 'e' || text [i] == 'E')) {
        exponent = true;
        i++;
        if (i < len && (text [i] == '-' || text [i] == '+'))
            i++;
        if (!s_digits (text, len, &i))
            return false;
    }
    if (!digits || i != len || (!point && !exponent))
        return false;
    pthread_once (&s_c_locale_once, s_c_locale_make);
    value->d = s_c_locale? strtod_l (text, NULL, s_c_locale): strtod (text, NULL);
    value->type = isfinite (value->d)? S_V_FLOAT: S_V_RANGE;
    return true;
}

static const char *const s_nulls [] = { "null", "Null", "NULL", "~", "", NULL };
static const char *const s_trues [] = { "true", "True", "TRUE", NULL };
static const char *const s_falses [] = { "false", "False", "FALSE", NULL };

//  What a node means as a value: quoted scalars are strings; plain ones
//  may be null, a boolean, an integer or a float; others S_V_NONE.
static s_value_t
s_resolve (const s_node_t *node)
{
    s_value_t value = { .type = S_V_STR };
    if (node->kind != S_SCALAR)
        value.type = S_V_NONE;
    else
    if (!node->plain)
        ;
    else
    if (s_word (node->text, node->len, s_nulls))
        value.type = S_V_NIL;
    else
    if (s_word (node->text, node->len, s_trues)
    ||  s_word (node->text, node->len, s_falses)) {
        value.type = S_V_BOOL;
        value.b = node->text [0] == 't' || node->text [0] == 'T';
    }
    else
    if (!s_resolve_int (node->text, node->len, &value))
        s_resolve_float (node->text, node->len, &value);
    return value;
}

//  --------------------------------------------------------------------------
//  Second pass: helpers for keys and values

//  The value of `key` in map, or NULL; *key_p gets the key if not NULL.
static const s_node_t *
s_get (const s_node_t *map, const char *key, const s_node_t **key_p)
{
    size_t len = strlen (key);
    for (const s_node_t *k = map->first; k; k = k->next->next)
        if (k->len == len && memcmp (k->text, key, len) == 0) {
            if (key_p)
                *key_p = k;
            return k->next;
        }
    return NULL;
}

//  Index of text in a NULL-terminated list, or -1.
static int
s_index_of (const char *const *words, const char *text, size_t len)
{
    for (int i = 0; words [i]; i++)
        if (strlen (words [i]) == len && memcmp (words [i], text, len) == 0)
            return i;
    return -1;
}

//  Fails on the first key of map that is not in keys; `where` names the
//  mapping ("a child").
static int
s_known_keys (s_load_t *self, const s_node_t *map,
              const char *const *keys, const char *where)
{
    char expected [200];
    for (const s_node_t *k = map->first; k; k = k->next->next)
        if (s_index_of (keys, k->text, k->len) < 0)
            return s_fail (self, k, "unknown key %s in %s; expected one of: %s",
                           s_what (k).text, where,
                           s_join (keys, expected, sizeof expected));
    return TR_OK;
}

//  Fails unless node is a mapping; `what` names it ("'intensity'").
static int
s_want_map (s_load_t *self, const s_node_t *node, const char *what)
{
    if (node->kind != S_MAPPING)
        return s_fail (self, node, "%s must be a mapping, not %s",
                       what, s_what (node).text);
    return TR_OK;
}

//  Fails unless node is a scalar usable as a C string (no NUL bytes;
//  not empty unless allowed); *text_p gets it.
static int
s_want_text (s_load_t *self, const s_node_t *node, const char *what,
             bool empty_ok, const char **text_p)
{
    if (node->kind != S_SCALAR)
        return s_fail (self, node, "%s must be a string, not %s",
                       what, s_what (node).text);
    if (memchr (node->text, 0, node->len))
        return s_fail (self, node, "%s must not contain a NUL character", what);
    if (!empty_ok && node->len == 0)
        return s_fail (self, node, "%s must not be empty", what);
    *text_p = node->text;
    return TR_OK;
}

//  An integer from min to max.
static int
s_want_int (s_load_t *self, const s_node_t *node, const char *key,
            int64_t min, int64_t max, int64_t *out)
{
    s_value_t value = s_resolve (node);
    if (value.type != S_V_INT || value.i < min || value.i > max)
        return s_fail (self, node, "'%s' must be an integer from %lld to %lld, not %s",
                       key, (long long) min, (long long) max, s_what_value (node).text);
    *out = value.i;
    return TR_OK;
}

//  A finite number from min to max; `range` says which in words.
static int
s_want_number (s_load_t *self, const s_node_t *node, const char *key,
               double min, double max, const char *range, double *out)
{
    s_value_t value = s_resolve (node);
    double d = value.type == S_V_INT? (double) value.i:
               value.type == S_V_FLOAT? value.d: NAN;
    if (!isfinite (d) || d < min || d > max)
        return s_fail (self, node, "'%s' must be a number %s, not %s",
                       key, range, s_what_value (node).text);
    *out = d;
    return TR_OK;
}

//  A duration; above zero if `positive`.
static int
s_want_duration (s_load_t *self, const s_node_t *node, const char *key,
                 bool positive, int64_t *ms)
{
    int64_t value;
    if (node->kind != S_SCALAR
    ||  tr_duration_parse (node->text, node->len, &value) != TR_OK)
        return s_fail (self, node, "'%s' must be a duration such as 250ms, "
                       "1.5s, 2m or 1h, not %s", key, s_what (node).text);
    if (positive && value == 0)
        return s_fail (self, node, "'%s' must be a duration above 0, "
                       "such as 250ms or 5s", key);
    *ms = value;
    return TR_OK;
}

//  One of a NULL-terminated list of words; *out gets its index.
static int
s_want_enum (s_load_t *self, const s_node_t *node, const char *key,
             const char *const *words, int *out)
{
    char expected [200];
    int at = node->kind == S_SCALAR? s_index_of (words, node->text, node->len): -1;
    if (at < 0)
        return s_fail (self, node, "'%s' must be one of %s, not %s", key,
                       s_join (words, expected, sizeof expected),
                       s_what (node).text);
    *out = at;
    return TR_OK;
}

//  A name's form: 1 to 255 bytes of UTF-8, no spaces or controls, no
//  leading '$'.
static int
s_want_name (s_load_t *self, const s_node_t *node, const char *what,
             const char **name_p)
{
    if (node->kind != S_SCALAR || tr_name_check (node->text, node->len))
        return s_fail (self, node, "%s must be 1 to 255 bytes of UTF-8 "
                       "without spaces or control characters, not %s",
                       what, s_what (node).text);
    if (node->text [0] == '$')
        return s_fail (self, node, "names starting with '$' are reserved "
                       "for troupe: %s", s_what (node).text);
    *name_p = node->text;
    return TR_OK;
}

//  A supervisor's or child's name: well formed and new in the file.
static int
s_new_name (s_load_t *self, const s_node_t *node, const char **name_p)
{
    int first_line;
    int rc = s_want_name (self, node, "a name", name_p);
    if (rc)
        return rc;
    rc = s_table_add (&self->table, NULL, node->text, node->len,
                      node->line, &first_line);
    if (rc < 0)
        return s_nomem (self);
    if (rc > 0)
        return s_fail (self, node, "the name %s is already used at line %d",
                       s_what (node).text, first_line);
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Keys a child shares with its supervisor's defaults

//  A child's settings under construction, or a supervisor's defaults.
typedef struct {
    tr_child_spec_t spec;               //  the common fields only
    const s_node_t *fallback;           //  where breaker.fallback was set
} s_common_t;

static const char *const s_common_keys [] = {
    "restart", "shutdown", "handle_timeout", "mailbox", "backoff", "breaker", NULL
};
static const char *const s_restarts [] = {
    "permanent", "transient", "temporary", NULL
};
static const char *const s_full_policies [] = { "wait", "fail", NULL };
static const char *const s_mailbox_keys [] = { "capacity", "on_full", NULL };
static const char *const s_backoff_keys [] = {
    "min", "max", "jitter", "reset_after", NULL
};
static const char *const s_breaker_keys [] = {
    "failures", "reset_timeout", "half_open_trials", "factor",
    "max_reset_timeout", "fallback", NULL
};

//  What a child gets when nothing says otherwise.
static void
s_builtin_defaults (s_common_t *common)
{
    memset (common, 0, sizeof *common);
    tr_child_spec_t *spec = &common->spec;
    spec->restart = TR_RESTART_PERMANENT;
    spec->shutdown_ms = 5000;
    spec->handle_timeout_ms = 0;
    spec->capacity = 0;
    spec->on_full = TR_FULL_WAIT;
    spec->backoff = (tr_backoff_t) { 10, 1000, 0.2, 10000 };
    spec->breaker = (tr_breaker_spec_t) { true, 5, 1000, 1, 2.0, 30000, NULL };
}

static int
s_mailbox (s_load_t *self, const s_node_t *map, tr_child_spec_t *spec)
{
    int rc = s_want_map (self, map, "'mailbox'");
    if (rc == TR_OK)
        rc = s_known_keys (self, map, s_mailbox_keys, "'mailbox'");
    const s_node_t *value;
    int64_t capacity;
    if (rc == TR_OK && (value = s_get (map, "capacity", NULL))) {
        rc = s_want_int (self, value, "capacity", 1, (INT64_C (1) << 62) - 1, &capacity);
        if (rc == TR_OK)
            spec->capacity = (size_t) capacity;
    }
    if (rc == TR_OK && (value = s_get (map, "on_full", NULL)))
        rc = s_want_enum (self, value, "on_full", s_full_policies, &spec->on_full);
    return rc;
}

//  Backoff keys override the inherited ones one by one; min <= max is
//  checked on the result.
static int
s_backoff (s_load_t *self, const s_node_t *map, tr_backoff_t *backoff)
{
    int rc = s_want_map (self, map, "'backoff'");
    if (rc == TR_OK)
        rc = s_known_keys (self, map, s_backoff_keys, "'backoff'");
    const s_node_t *min = map->kind == S_MAPPING? s_get (map, "min", NULL): NULL;
    const s_node_t *max = map->kind == S_MAPPING? s_get (map, "max", NULL): NULL;
    const s_node_t *value;
    if (rc == TR_OK && min)
        rc = s_want_duration (self, min, "min", false, &backoff->min_ms);
    if (rc == TR_OK && max)
        rc = s_want_duration (self, max, "max", false, &backoff->max_ms);
    if (rc == TR_OK && (value = s_get (map, "jitter", NULL)))
        rc = s_want_number (self, value, "jitter", 0, 1, "from 0 to 1", &backoff->jitter);
    if (rc == TR_OK && (value = s_get (map, "reset_after", NULL)))
        rc = s_want_duration (self, value, "reset_after", false, &backoff->reset_after_ms);
    if (rc == TR_OK && backoff->min_ms > backoff->max_ms)
        rc = s_fail (self, max? max: min? min: map,
                     "backoff 'min' (%lld ms) must not be above 'max' (%lld ms)",
                     (long long) backoff->min_ms, (long long) backoff->max_ms);
    return rc;
}

//  A fallback: a name, checked against the file's names at the end.
static int
s_fallback (s_load_t *self, const s_node_t *node, s_common_t *common)
{
    int rc = s_want_name (self, node, "'fallback'", &common->spec.breaker.fallback);
    s_pending_t *pending = rc? NULL: (s_pending_t *) s_alloc (self->tree, sizeof *pending);
    if (rc == TR_OK && !pending)
        return s_nomem (self);
    if (rc == TR_OK) {
        pending->node = node;
        pending->next = self->fallbacks;
        self->fallbacks = pending;
        common->fallback = node;
    }
    return rc;
}

//  The integer and number keys of a breaker mapping.
static int
s_breaker_numbers (s_load_t *self, const s_node_t *map, tr_breaker_spec_t *breaker)
{
    const s_node_t *value;
    int64_t n;
    int rc = TR_OK;
    if ((value = s_get (map, "failures", NULL))) {
        rc = s_want_int (self, value, "failures", 1, INT_MAX, &n);
        breaker->failures = rc? breaker->failures: (int) n;
    }
    if (rc == TR_OK && (value = s_get (map, "reset_timeout", NULL)))
        rc = s_want_duration (self, value, "reset_timeout", true, &breaker->reset_timeout_ms);
    if (rc == TR_OK && (value = s_get (map, "half_open_trials", NULL))) {
        rc = s_want_int (self, value, "half_open_trials", 1, INT_MAX, &n);
        breaker->half_open_trials = rc? breaker->half_open_trials: (int) n;
    }
    if (rc == TR_OK && (value = s_get (map, "factor", NULL)))
        rc = s_want_number (self, value, "factor", 1, INFINITY, ">= 1", &breaker->factor);
    if (rc == TR_OK && (value = s_get (map, "max_reset_timeout", NULL)))
        rc = s_want_duration (self, value, "max_reset_timeout", false,
                              &breaker->max_reset_timeout_ms);
    return rc;
}

//  `off`, or a mapping whose keys override the inherited ones (and turn
//  the breaker on).
static int
s_breaker (s_load_t *self, const s_node_t *node, s_common_t *common)
{
    tr_breaker_spec_t *breaker = &common->spec.breaker;
    if (node->kind == S_SCALAR && node->len == 3 && memcmp (node->text, "off", 3) == 0) {
        breaker->enabled = false;
        return TR_OK;
    }
    if (node->kind != S_MAPPING)
        return s_fail (self, node, "'breaker' must be off or a mapping of failures, "
                       "reset_timeout, half_open_trials, factor, max_reset_timeout, "
                       "fallback; not %s", s_what (node).text);
    int rc = s_known_keys (self, node, s_breaker_keys, "'breaker'");
    if (rc == TR_OK)
        rc = s_breaker_numbers (self, node, breaker);
    const s_node_t *value = s_get (node, "fallback", NULL);
    if (rc == TR_OK && value)
        rc = s_fallback (self, value, common);
    if (rc == TR_OK && breaker->max_reset_timeout_ms < breaker->reset_timeout_ms) {
        value = s_get (node, "max_reset_timeout", NULL);
        if (!value)
            value = s_get (node, "reset_timeout", NULL);
        rc = s_fail (self, value? value: node, "breaker 'max_reset_timeout' (%lld ms) "
                     "must not be below 'reset_timeout' (%lld ms)",
                     (long long) breaker->max_reset_timeout_ms,
                     (long long) breaker->reset_timeout_ms);
    }
    breaker->enabled = true;
    return rc;
}

//  Applies the common keys found in map over *common.
static int
s_common (s_load_t *self, const s_node_t *map, s_common_t *common)
{
    tr_child_spec_t *spec = &common->spec;
    const s_node_t *value;
    int rc = TR_OK;
    if ((value = s_get (map, "restart", NULL)))
        rc = s_want_enum (self, value, "restart", s_restarts, &spec->restart);
    if (rc == TR_OK && (value = s_get (map, "shutdown", NULL)))
        rc = s_want_duration (self, value, "shutdown", false, &spec->shutdown_ms);
    if (rc == TR_OK && (value = s_get (map, "handle_timeout", NULL)))
        rc = s_want_duration (self, value, "handle_timeout", false, &spec->handle_timeout_ms);
    if (rc == TR_OK && (value = s_get (map, "mailbox", NULL)))
        rc = s_mailbox (self, value, spec);
    if (rc == TR_OK && (value = s_get (map, "backoff", NULL)))
        rc = s_backoff (self, value, &spec->backoff);
    if (rc == TR_OK && (value = s_get (map, "breaker", NULL)))
        rc = s_breaker (self, value, common);
    return rc;
}

//  --------------------------------------------------------------------------
//  Parameters: checked against the type's list, packed as msgpack

#define S_RANGE_MESSAGE \
    "the number %s is out of range (an integer must fit in 64 bits, " \
    "a float in a double)"

//  The type's spec for key, or NULL.
static const tr_param_spec_t *
s_param_spec (const tr_actor_type_t *type, const char *key, size_t len)
{
    for (size_t i = 0; type->params && type->params [i].key; i++)
        if (strlen (type->params [i].key) == len
        &&  memcmp (type->params [i].key, key, len) == 0)
            return &type->params [i];
    return NULL;
}

//  What a parameter type accepts, in words.
static const char *
s_param_words (int type)
{
    switch (type) {
        case TR_PARAM_INT:      return "an integer";
        case TR_PARAM_NUMBER:   return "a number";
        case TR_PARAM_BOOL:     return "true or false";
        case TR_PARAM_STRING:   return "a string";
        case TR_PARAM_DURATION: return "a duration such as 250ms or 2s, or an integer of milliseconds";
        case TR_PARAM_LIST:     return "a sequence";
        case TR_PARAM_MAP:      return "a mapping";
        default:                return "anything";
    }
}

//  True if value suits a parameter of the given type.
static bool
s_param_fits (int type, const s_node_t *value)
{
    s_value_t v = s_resolve (value);
    int64_t ms;
    switch (type) {
        case TR_PARAM_INT:      return v.type == S_V_INT;
        case TR_PARAM_NUMBER:   return v.type == S_V_INT || v.type == S_V_UINT
                                    || v.type == S_V_FLOAT;
        case TR_PARAM_BOOL:     return v.type == S_V_BOOL;
        case TR_PARAM_STRING:   return v.type == S_V_STR;
        case TR_PARAM_DURATION: return (v.type == S_V_INT && v.i >= 0)
                                    || (v.type == S_V_STR
                                    &&  tr_duration_parse (value->text, value->len, &ms) == TR_OK);
        case TR_PARAM_LIST:     return value->kind == S_SEQUENCE;
        case TR_PARAM_MAP:      return value->kind == S_MAPPING;
        case TR_PARAM_ANY:      return true;
        default:                return false;
    }
}

//  Each key of the params mapping is declared and its value fits.
static int
s_params_check (s_load_t *self, const tr_actor_type_t *type, const s_node_t *params)
{
    char expected [200];
    const char *keys [33];
    size_t n = 0;
    for (size_t i = 0; type->params && type->params [i].key && n < 32; i++)
        keys [n++] = type->params [i].key;
    keys [n] = NULL;
    for (const s_node_t *k = params->first; k; k = k->next->next) {
        const tr_param_spec_t *spec = s_param_spec (type, k->text, k->len);
        if (!spec && !n)
            return s_fail (self, k, "unknown parameter %s: actor type '%s' "
                           "takes no parameters", s_what (k).text, type->name);
        if (!spec)
            return s_fail (self, k, "unknown parameter %s of actor type '%s'; "
                           "expected one of: %s", s_what (k).text, type->name,
                           s_join (keys, expected, sizeof expected));
        if (s_resolve (k->next).type == S_V_RANGE)
            return s_fail (self, k->next, S_RANGE_MESSAGE, s_what (k->next).text);
        if (!s_param_fits (spec->type, k->next))
            return s_fail (self, k->next, "parameter '%s' of actor type '%s' "
                           "must be %s, not %s", spec->key, type->name,
                           s_param_words (spec->type), s_what_value (k->next).text);
    }
    return TR_OK;
}

//  Every required parameter is there; `where` is the position to blame.
static int
s_params_required (s_load_t *self, const tr_actor_type_t *type,
                   const s_node_t *params, const s_node_t *where)
{
    for (size_t i = 0; type->params && type->params [i].key; i++) {
        const tr_param_spec_t *spec = &type->params [i];
        if (spec->required && !(params && s_get (params, spec->key, NULL)))
            return s_fail (self, where, "missing parameter '%s' of actor type "
                           "'%s' (%s%s%s)", spec->key, type->name,
                           s_param_words (spec->type), spec->help? ": ": "",
                           spec->help? spec->help: "");
    }
    return TR_OK;
}

//  Packs one node as msgpack, following the spec's "Parameters" rules.
//  Keys of mappings stay strings whatever they look like (`1: x` has
//  the key "1"), so that tr_params.h can find every one of them.
static int
s_pack (s_load_t *self, msgpack_packer *pk, const s_node_t *node, bool key)
{
    s_value_t v = key? (s_value_t) { .type = S_V_STR }: s_resolve (node);
    int failed = 0;
    switch (v.type) {
        case S_V_NIL:   failed = msgpack_pack_nil (pk); break;
        case S_V_BOOL:  failed = v.b? msgpack_pack_true (pk): msgpack_pack_false (pk); break;
        case S_V_INT:   failed = msgpack_pack_int64 (pk, v.i); break;
        case S_V_UINT:  failed = msgpack_pack_uint64 (pk, v.u); break;
        case S_V_FLOAT: failed = msgpack_pack_double (pk, v.d); break;
        case S_V_STR:   failed = msgpack_pack_str_with_body (pk, node->text, node->len); break;
        case S_V_RANGE:
            return s_fail (self, node, S_RANGE_MESSAGE, s_what (node).text);
        default:
            failed = node->kind == S_MAPPING? msgpack_pack_map (pk, node->count / 2)
                                            : msgpack_pack_array (pk, node->count);
            bool mapping = node->kind == S_MAPPING, even = true;
            for (const s_node_t *e = node->first; e && !failed; e = e->next) {
                int rc = s_pack (self, pk, e, mapping && even);
                if (rc)
                    return rc;
                even = !even;
            }
    }
    return failed? s_nomem (self): TR_OK;
}

//  Converts the params mapping into msgpack in the arena.
static int
s_params_pack (s_load_t *self, const s_node_t *params, tr_params_t *out)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    int rc = s_pack (self, &pk, params, false);
    uint8_t *data = NULL;
    if (rc == TR_OK && !(data = (uint8_t *) s_alloc (self->tree, buffer.size)))
        rc = s_nomem (self);
    if (rc == TR_OK) {
        memcpy (data, buffer.data, buffer.size);
        out->data = data;
        out->size = buffer.size;
    }
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

//  The node a type's check points at: the path's parts (keys, and list
//  positions from 1), followed from the params mapping as far as they
//  go.
static const s_node_t *
s_params_at (const s_node_t *params, const char *path)
{
    const s_node_t *node = params;
    while (*path && node && node->kind != S_SCALAR) {
        size_t len = strcspn (path, ".");
        const s_node_t *next = NULL;
        if (node->kind == S_MAPPING) {
            for (const s_node_t *k = node->first; k && !next; k = k->next->next)
                if (k->len == len && memcmp (k->text, path, len) == 0)
                    next = k->next;
        }
        else {
            char *end;
            unsigned long n = strtoul (path, &end, 10);
            const s_node_t *item = node->first;
            for (unsigned long i = 1; item && end == path + len && i < n; i++)
                item = item->next;
            if (end == path + len && n >= 1)
                next = item;
        }
        if (!next)
            break;
        node = next;
        path += len + (path [len] == '.');
    }
    return node;
}

//  Runs the type's check of its parameters (ABI 2), and reports what it
//  finds where the path points in the file.
static int
s_params_deep_check (s_load_t *self, const tr_child_spec_t *child, const s_node_t *params)
{
    tr_param_error_t error;
    memset (&error, 0, sizeof error);
    if (child->type->check (&child->params, &error) == 0)
        return TR_OK;
    const s_node_t *at = params->kind == S_MAPPING? s_params_at (params, error.path): params;
    return s_fail (self, at, "%s: %s", child->name,
                   error.message [0]? error.message: "parameters refused by the actor type");
}

//  The params of an actor or plugin child; `kind_value` is blamed for a
//  missing parameter when there is no params mapping.
static int
s_params (s_load_t *self, const s_node_t *map, const s_node_t *kind_value,
          tr_child_spec_t *child)
{
    const s_node_t *params = s_get (map, "params", NULL);
    int rc = params? s_want_map (self, params, "'params'"): TR_OK;
    if (rc == TR_OK && params)
        rc = s_params_check (self, child->type, params);
    if (rc == TR_OK)
        rc = s_params_required (self, child->type, params,
                                params? params: kind_value);
    if (rc == TR_OK && params)
        rc = s_params_pack (self, params, &child->params);
    if (rc == TR_OK && child->type->abi >= 2 && child->type->check)
        rc = s_params_deep_check (self, child, params? params: kind_value);
    return rc;
}

//  --------------------------------------------------------------------------
//  The four kinds of child

//  Levenshtein distance between a and b (short names), or a large
//  number for names too long to compare.
static size_t
s_distance (const char *a, const char *b)
{
    size_t la = strlen (a), lb = strlen (b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row [65];
    for (size_t j = 0; j <= lb; j++)
        row [j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row [0];
        row [0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row [j];
            size_t best = diagonal + (a [i - 1] != b [j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row [j - 1] + 1 < best)
                best = row [j - 1] + 1;
            row [j] = best;
            diagonal = above;
        }
    }
    return row [lb];
}

//  The registered type nearest a misspelt name, if one is near enough:
//  at most two edits, and fewer than half the name's length.
typedef struct {
    const char *name;
    const char *best;
    size_t distance;
} s_nearest_t;

static void
s_nearest_type (const tr_actor_type_t *type, void *arg)
{
    s_nearest_t *near = (s_nearest_t *) arg;
    size_t d = s_distance (near->name, type->name);
    if (d < near->distance && d <= 2 && 2 * d < strlen (near->name)) {
        near->distance = d;
        near->best = type->name;
    }
}

static int
s_actor (s_load_t *self, const s_node_t *map, const s_node_t *value,
         tr_child_spec_t *child)
{
    const char *name;
    int rc = s_want_text (self, value, "'actor'", false, &name);
    if (rc)
        return rc;
    child->type = tr_actor_type_find (name);
    if (!child->type) {
        //  Not the whole list: with the built-in types alone it would not
        //  fit a message. `troupe types` prints them with what they do.
        s_nearest_t near = { name, NULL, SIZE_MAX };
        tr_actor_type_each (s_nearest_type, &near);
        if (near.best)
            return s_fail (self, value, "unknown actor type %s; did you mean '%s'? "
                           "('troupe types' lists the registered types)",
                           s_what (value).text, near.best);
        return s_fail (self, value, "unknown actor type %s ('troupe types' lists the "
                       "registered types)", s_what (value).text);
    }
    return s_params (self, map, value, child);
}

//  The path dlopen gets: library itself if absolute, else library in
//  the tree file's folder (the current one without a file, or for a
//  file named without a folder). A path with a slash in it stops dlopen
//  from searching the system's folders. NULL if out of memory.
static const char *
s_plugin_path (s_load_t *self, const char *library)
{
    const char *slash = self->path? strrchr (self->path, '/'): NULL;
    if (library [0] == '/' || (!slash && strncmp (library, "./", 2) == 0))
        return library;
    const char *folder = slash? self->path: ".";
    size_t folder_len = slash? (size_t) (slash - self->path): 1;
    size_t len = strlen (library);
    char *path = (char *) s_alloc (self->tree, folder_len + 1 + len + 1);
    if (path) {
        memcpy (path, folder, folder_len);
        path [folder_len] = '/';
        memcpy (path + folder_len + 1, library, len + 1);
    }
    return path;
}

//  Opens a library and keeps its handle for tr_tree_destroy.
static int
s_plugin_open (s_load_t *self, const s_node_t *node, const char *library,
               void **dl_p)
{
    const char *path = s_plugin_path (self, library);
    s_handle_t *handle = (s_handle_t *) s_alloc (self->tree, sizeof *handle);
    if (!path || !handle)
        return s_nomem (self);
    void *dl = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror ();
        return s_fail (self, node, "cannot load plugin library %s: %s",
                       s_what (node).text, why? why: "unknown error");
    }
    handle->library = dl;
    handle->next = self->tree->handles;
    self->tree->handles = handle;
    *dl_p = dl;
    return TR_OK;
}

//  Checks what a plugin's symbol points at.
static int
s_plugin_type (s_load_t *self, const s_node_t *node, const tr_actor_type_t *type)
{
    if (type->abi != 1 && type->abi != TR_ACTOR_TYPE_ABI)
        return s_fail (self, node, "plugin type %s was built for actor type "
                       "ABI %d; this troupe takes ABI 1 or %d", s_what (node).text,
                       type->abi, TR_ACTOR_TYPE_ABI);
    if (!type->name || !type->behaviour.handle)
        return s_fail (self, node, "plugin type %s has no name or no handle "
                       "function", s_what (node).text);
    for (size_t i = 0; type->params && type->params [i].key; i++)
        if (type->params [i].type < TR_PARAM_INT || type->params [i].type > TR_PARAM_ANY)
            return s_fail (self, node, "plugin type %s declares parameter '%s' "
                           "with an unknown type %d", s_what (node).text,
                           type->params [i].key, type->params [i].type);
    return TR_OK;
}

static const char *const s_plugin_keys [] = { "library", "symbol", NULL };

static int
s_plugin (s_load_t *self, const s_node_t *map, const s_node_t *value,
          tr_child_spec_t *child)
{
    const s_node_t *library = NULL, *symbol = NULL;
    void *dl = NULL;
    int rc = s_want_map (self, value, "'plugin'");
    if (rc == TR_OK)
        rc = s_known_keys (self, value, s_plugin_keys, "'plugin'");
    if (rc == TR_OK && !(library = s_get (value, "library", NULL)))
        rc = s_fail (self, value, "'plugin' needs a 'library' (the path of a shared library)");
    if (rc == TR_OK && !(symbol = s_get (value, "symbol", NULL)))
        rc = s_fail (self, value, "'plugin' needs a 'symbol' (the name of a "
                     "const tr_actor_type_t in the library)");
    if (rc == TR_OK)
        rc = s_want_text (self, library, "'library'", false, &child->library);
    if (rc == TR_OK)
        rc = s_want_text (self, symbol, "'symbol'", false, &child->symbol);
    if (rc == TR_OK)
        rc = s_plugin_open (self, library, child->library, &dl);
    if (rc == TR_OK) {
        dlerror ();
        child->type = (const tr_actor_type_t *) dlsym (dl, child->symbol);
        if (!child->type)
            rc = s_fail (self, symbol, "no symbol %s in plugin library %s",
                         s_what (symbol).text, s_what (library).text);
    }
    if (rc == TR_OK)
        rc = s_plugin_type (self, symbol, child->type);
    if (rc == TR_OK)
        rc = s_params (self, map, value, child);
    return rc;
}

//  The command: a non-empty sequence of strings, the first not empty.
static int
s_command (s_load_t *self, const s_node_t *node, tr_child_spec_t *child)
{
    if (node->kind != S_SEQUENCE || node->count == 0)
        return s_fail (self, node, "'command' must be a non-empty sequence "
                       "(the program and its arguments), not %s", s_what (node).text);
    const char **argv = (const char **) s_alloc (self->tree,
                                                 (node->count + 1) * sizeof *argv);
    if (!argv)
        return s_nomem (self);
    size_t n = 0;
    for (const s_node_t *e = node->first; e; e = e->next, n++) {
        int rc = s_want_text (self, e, n? "an argument": "the program", n > 0, &argv [n]);
        if (rc)
            return rc;
    }
    child->argv = argv;
    return TR_OK;
}

//  One "NAME=VALUE" string from a key and its value.
static int
s_env_pair (s_load_t *self, const s_node_t *key, const char **pair_p)
{
    const char *name, *value;
    int rc = s_want_text (self, key, "a variable's name", false, &name);
    if (rc == TR_OK && strchr (name, '='))
        rc = s_fail (self, key, "a variable's name must not contain '=': %s",
                     s_what (key).text);
    if (rc == TR_OK)
        rc = s_want_text (self, key->next, "a variable's value", true, &value);
    if (rc)
        return rc;
    size_t size = key->len + 1 + key->next->len + 1;
    char *pair = (char *) s_alloc (self->tree, size);
    if (!pair)
        return s_nomem (self);
    snprintf (pair, size, "%s=%s", name, value);
    *pair_p = pair;
    return TR_OK;
}

//  The environment: "NAME=VALUE" strings from a mapping, NULL-terminated.
static int
s_env (s_load_t *self, const s_node_t *node, tr_child_spec_t *child)
{
    int rc = s_want_map (self, node, "'env'");
    if (rc)
        return rc;
    const char **env = (const char **) s_alloc (self->tree,
                                                (node->count / 2 + 1) * sizeof *env);
    if (!env)
        return s_nomem (self);
    size_t n = 0;
    for (const s_node_t *k = node->first; k; k = k->next->next)
        if ((rc = s_env_pair (self, k, &env [n++])) != TR_OK)
            return rc;
    child->env = env;
    return TR_OK;
}

static const char *const s_process_keys [] = { "command", "env", "cwd", NULL };

static int
s_process (s_load_t *self, const s_node_t *value, tr_child_spec_t *child)
{
    const s_node_t *node;
    int rc = s_want_map (self, value, "'process'");
    if (rc == TR_OK)
        rc = s_known_keys (self, value, s_process_keys, "'process'");
    if (rc == TR_OK && !(node = s_get (value, "command", NULL)))
        rc = s_fail (self, value, "'process' needs a 'command' (a sequence: "
                     "the program and its arguments)");
    if (rc == TR_OK)
        rc = s_command (self, node, child);
    if (rc == TR_OK && (node = s_get (value, "env", NULL)))
        rc = s_env (self, node, child);
    if (rc == TR_OK && (node = s_get (value, "cwd", NULL)))
        rc = s_want_text (self, node, "'cwd'", false, &child->cwd);
    return rc;
}

static int
    s_sup (s_load_t *self, const s_node_t *map, const s_common_t *parent,
           const char **name_p, tr_sup_spec_t *sup);

static int
s_nested (s_load_t *self, const s_node_t *value, const s_common_t *defaults,
          tr_child_spec_t *child)
{
    tr_sup_spec_t *sup = (tr_sup_spec_t *) s_alloc (self->tree, sizeof *sup);
    if (!sup)
        return s_nomem (self);
    child->sup = sup;
    int rc = s_want_map (self, value, "'supervisor'");
    if (rc == TR_OK)
        rc = s_sup (self, value, defaults, NULL, sup);
    return rc;
}

//  --------------------------------------------------------------------------
//  Children and supervisors

static const char *const s_child_keys [] = {
    "name", "actor", "plugin", "process", "supervisor", "params", "restart",
    "shutdown", "handle_timeout", "mailbox", "backoff", "breaker", NULL
};
//  In tr_child_kind_t order.
static const char *const s_kinds [] = {
    "actor", "plugin", "process", "supervisor", NULL
};

//  Finds the one kind key of a child.
static int
s_child_kind (s_load_t *self, const s_node_t *map, int *kind,
              const s_node_t **value)
{
    const s_node_t *found = NULL;
    for (const s_node_t *k = map->first; k; k = k->next->next) {
        int at = s_index_of (s_kinds, k->text, k->len);
        if (at >= 0 && found)
            return s_fail (self, k, "a child needs exactly one of actor, plugin, "
                           "process, supervisor, not both '%s' and '%s'",
                           found->text, k->text);
        if (at >= 0) {
            found = k;
            *kind = at;
            *value = k->next;
        }
    }
    if (!found)
        return s_fail (self, map, "a child needs exactly one of actor, plugin, "
                       "process, supervisor");
    return TR_OK;
}

//  The name of a child, or the absence of one in a template.
static int
s_child_name (s_load_t *self, const s_node_t *map, bool named,
              tr_child_spec_t *child)
{
    const s_node_t *key;
    const s_node_t *value = s_get (map, "name", &key);
    if (!named && value)
        return s_fail (self, key, "a template has no 'name': each child "
                       "started from it is named then");
    if (named && !value)
        return s_fail (self, map, "a child needs a 'name'");
    return named? s_new_name (self, value, &child->name): TR_OK;
}

//  The settings of a child: its defaults, overridden by its own keys; a
//  fallback must not be the child itself.
static int
s_child_settings (s_load_t *self, const s_node_t *map,
                  const s_common_t *defaults, tr_child_spec_t *child)
{
    s_common_t common = *defaults;
    int rc = s_common (self, map, &common);
    if (rc)
        return rc;
    const char *fallback = common.spec.breaker.fallback;
    if (fallback && child->name && strcmp (fallback, child->name) == 0)
        return s_fail (self, common.fallback, "the child '%s' cannot be its "
                       "own fallback", child->name);
    child->restart = common.spec.restart;
    child->shutdown_ms = common.spec.shutdown_ms;
    child->handle_timeout_ms = common.spec.handle_timeout_ms;
    child->capacity = common.spec.capacity;
    child->on_full = common.spec.on_full;
    child->backoff = common.spec.backoff;
    child->breaker = common.spec.breaker;
    return TR_OK;
}

//  A child (named) or a template (not named).
static int
s_child (s_load_t *self, const s_node_t *map, const s_common_t *defaults,
         bool named, tr_child_spec_t *child)
{
    const s_node_t *value = NULL, *params_key = NULL;
    child->pos = (tr_tree_pos_t) { map->line, map->column };
    if (map->kind != S_MAPPING)
        return s_fail (self, map, "%s must be a mapping with %sone of actor, "
                       "plugin, process, supervisor; not %s",
                       named? "a child": "'template'", named? "a name and ": "",
                       s_what (map).text);
    int rc = s_known_keys (self, map, s_child_keys, named? "a child": "a template");
    if (rc == TR_OK)
        rc = s_child_name (self, map, named, child);
    if (rc == TR_OK)
        rc = s_child_kind (self, map, &child->kind, &value);
    if (rc == TR_OK)
        rc = s_child_settings (self, map, defaults, child);
    if (rc == TR_OK && s_get (map, "params", &params_key)
    &&  child->kind != TR_CHILD_ACTOR && child->kind != TR_CHILD_PLUGIN)
        rc = s_fail (self, params_key, "'params' is only for actor and plugin children");
    if (rc)
        return rc;
    switch (child->kind) {
        case TR_CHILD_ACTOR:    return s_actor (self, map, value, child);
        case TR_CHILD_PLUGIN:   return s_plugin (self, map, value, child);
        case TR_CHILD_PROCESS:  return s_process (self, value, child);
        default:                return s_nested (self, value, defaults, child);
    }
}

static const char *const s_strategies [] = {
    "one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one", NULL
};
static const char *const s_sup_keys [] = {
    "name", "strategy", "intensity", "defaults", "children", "template", NULL
};
static const char *const s_intensity_keys [] = { "max_restarts", "period", NULL };

static int
s_intensity (s_load_t *self, const s_node_t *map, tr_sup_spec_t *sup)
{
    const s_node_t *value;
    int64_t n;
    int rc = s_want_map (self, map, "'intensity'");
    if (rc == TR_OK)
        rc = s_known_keys (self, map, s_intensity_keys, "'intensity'");
    if (rc == TR_OK && (value = s_get (map, "max_restarts", NULL))) {
        rc = s_want_int (self, value, "max_restarts", 0, INT_MAX, &n);
        sup->max_restarts = rc? sup->max_restarts: (int) n;
    }
    if (rc == TR_OK && (value = s_get (map, "period", NULL)))
        rc = s_want_duration (self, value, "period", true, &sup->period_ms);
    return rc;
}

//  The children of a supervisor that has them (not simple_one_for_one).
static int
s_children (s_load_t *self, const s_node_t *map, const s_common_t *defaults,
            tr_sup_spec_t *sup)
{
    const s_node_t *key;
    const s_node_t *list = s_get (map, "children", NULL);
    if (s_get (map, "template", &key))
        return s_fail (self, key, "'template' is only for simple_one_for_one supervisors");
    if (!list)
        return s_fail (self, map, "a supervisor needs 'children' (a sequence "
                       "of children; it may be empty)");
    if (list->kind != S_SEQUENCE)
        return s_fail (self, list, "'children' must be a sequence of children, "
                       "not %s", s_what (list).text);
    if (list->count == 0)
        return TR_OK;
    tr_child_spec_t *children = (tr_child_spec_t *)
        s_alloc (self->tree, list->count * sizeof *children);
    if (!children)
        return s_nomem (self);
    sup->children = children;
    for (const s_node_t *e = list->first; e; e = e->next) {
        int rc = s_child (self, e, defaults, true, &children [sup->count]);
        if (rc)
            return rc;
        sup->count++;
    }
    return TR_OK;
}

//  The template of a simple_one_for_one supervisor.
static int
s_template (s_load_t *self, const s_node_t *map, const s_common_t *defaults,
            tr_sup_spec_t *sup)
{
    const s_node_t *key;
    const s_node_t *value = s_get (map, "template", NULL);
    if (s_get (map, "children", &key))
        return s_fail (self, key, "a simple_one_for_one supervisor has no "
                       "'children': they are started at run time from its 'template'");
    if (!value)
        return s_fail (self, map, "a simple_one_for_one supervisor needs a "
                       "'template' (a child without a name)");
    tr_child_spec_t *child = (tr_child_spec_t *) s_alloc (self->tree, sizeof *child);
    if (!child)
        return s_nomem (self);
    sup->template_ = child;
    return s_child (self, value, defaults, false, child);
}

//  The defaults a supervisor gives its children: its parent's, with its
//  own `defaults` keys over them.
static int
s_defaults (s_load_t *self, const s_node_t *map, s_common_t *defaults)
{
    const s_node_t *value = s_get (map, "defaults", NULL);
    int rc = value? s_want_map (self, value, "'defaults'"): TR_OK;
    if (rc == TR_OK && value)
        rc = s_known_keys (self, value, s_common_keys, "'defaults'");
    if (rc == TR_OK && value)
        rc = s_common (self, value, defaults);
    return rc;
}

//  A supervisor's mapping. name_p is NULL for a nested supervisor (which
//  takes its child's name) and receives the root's name otherwise.
static int
s_sup (s_load_t *self, const s_node_t *map, const s_common_t *parent,
       const char **name_p, tr_sup_spec_t *sup)
{
    const s_node_t *key, *value;
    s_common_t defaults = *parent;
    sup->strategy = TR_ONE_FOR_ONE;
    sup->max_restarts = 3;
    sup->period_ms = 5000;
    int rc = s_known_keys (self, map, s_sup_keys, "a supervisor");
    value = s_get (map, "name", &key);
    if (rc == TR_OK && !name_p && value)
        rc = s_fail (self, key, "a nested supervisor has no 'name' of its own: "
                     "it takes its child's name");
    if (rc == TR_OK && name_p && !value)
        rc = s_fail (self, map, "the root supervisor needs a 'name'");
    if (rc == TR_OK && name_p)
        rc = s_new_name (self, value, name_p);
    if (rc == TR_OK && (value = s_get (map, "strategy", NULL)))
        rc = s_want_enum (self, value, "strategy", s_strategies, &sup->strategy);
    if (rc == TR_OK && (value = s_get (map, "intensity", NULL)))
        rc = s_intensity (self, value, sup);
    if (rc == TR_OK)
        rc = s_defaults (self, map, &defaults);
    if (rc == TR_OK && sup->strategy == TR_SIMPLE_ONE_FOR_ONE)
        rc = s_template (self, map, &defaults, sup);
    else
    if (rc == TR_OK)
        rc = s_children (self, map, &defaults, sup);
    return rc;
}

//  Every fallback written names a child of the file.
static int
s_check_fallbacks (s_load_t *self)
{
    for (const s_pending_t *p = self->fallbacks; p; p = p->next) {
        const s_node_t *node = p->node;
        if (strcmp (node->text, self->root_name) == 0)
            return s_fail (self, node, "'fallback' must name a child, and %s is "
                           "the root supervisor", s_what (node).text);
        if (!s_table_has (&self->table, node->text, node->len))
            return s_fail (self, node, "'fallback' names no child of this file: %s",
                           s_what (node).text);
    }
    return TR_OK;
}

//  Builds the tree from the document's top node.
static int
s_build (s_load_t *self, const s_node_t *top)
{
    s_common_t defaults;
    s_builtin_defaults (&defaults);
    if (top->kind == S_SCALAR && top->plain && top->len == 0)
        return s_fail (self, top, "the document is empty; expected a supervisor "
                       "(a mapping with name, strategy, children)");
    if (top->kind != S_MAPPING)
        return s_fail (self, top, "the top level must be a mapping: the root "
                       "supervisor (name, strategy, children), not %s",
                       s_what (top).text);
    tr_sup_spec_t *sup = (tr_sup_spec_t *) s_alloc (self->tree, sizeof *sup);
    if (!sup)
        return s_nomem (self);
    tr_child_spec_t *root = &self->tree->tree.root;
    *root = defaults.spec;
    root->kind = TR_CHILD_SUPERVISOR;
    root->sup = sup;
    root->pos = (tr_tree_pos_t) { top->line, top->column };
    int rc = s_sup (self, top, &defaults, &root->name, sup);
    self->tree->tree.name = root->name;
    self->root_name = root->name;
    //  The pending list is newest first; check in file order instead.
    s_pending_t *reversed = NULL;
    while (self->fallbacks) {
        s_pending_t *next = self->fallbacks->next;
        self->fallbacks->next = reversed;
        reversed = self->fallbacks;
        self->fallbacks = next;
    }
    self->fallbacks = reversed;
    return rc? rc: s_check_fallbacks (self);
}

//  --------------------------------------------------------------------------
//  The public functions

//  Parses and builds into self->tree. The text is UTF-8; a byte-order
//  mark at its start is skipped here, since libyaml only skips one when
//  it guesses the encoding itself (and it would take UTF-16 too, whose
//  byte offsets s_offset_position cannot turn into columns).
static int
s_load (s_load_t *self, const char *text, size_t len)
{
    s_node_t *top = NULL;
    if (len >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
    }
    if (!yaml_parser_initialize (&self->parser))
        return s_nomem (self);
    yaml_parser_set_encoding (&self->parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string (&self->parser, (const unsigned char *) text, len);
    int rc = s_parse_document (self, text, len, &top);
    yaml_parser_delete (&self->parser);
    if (rc == TR_OK)
        rc = s_build (self, top);
    return rc;
}

int
tr_tree_parse (const char *text, size_t len, const char *path,
               tr_tree_t **tree_p, tr_tree_error_t *err)
{
    tr_tree_error_t local;
    if (!tree_p || (!text && len))
        return TR_EINVAL;
    *tree_p = NULL;
    memset (&local, 0, sizeof local);
    snprintf (local.file, sizeof local.file, "%s", path? path: S_NO_TEXT);
    s_load_t self = { .path = path, .err = &local };
    self.tree = (s_tree_t *) calloc (1, sizeof *self.tree);
    int rc = self.tree? TR_OK: s_nomem (&self);
    if (rc == TR_OK) {
        self.tree->tree.path = s_strndup (self.tree, path? path: S_NO_TEXT,
                                          strlen (path? path: S_NO_TEXT));
        rc = self.tree->tree.path? TR_OK: s_nomem (&self);
    }
    if (rc == TR_OK)
        rc = s_load (&self, text? text: "", len);
    free (self.table.slots);
    if (rc == TR_OK)
        *tree_p = &self.tree->tree;
    else
    if (self.tree)
        s_tree_free (self.tree);
    if (err)
        *err = local;
    return rc;
}

//  Fills err for a problem with the file as a whole; returns rc.
static int
s_file_error (tr_tree_error_t *err, const char *path, int rc, const char *why)
{
    if (err) {
        memset (err, 0, sizeof *err);
        snprintf (err->file, sizeof err->file, "%s", path);
        snprintf (err->message, sizeof err->message, "%s", why);
    }
    return rc;
}

//  Reads a whole file (at most S_MAX_FILE bytes) into a malloc'd buffer.
static int
s_read_file (const char *path, char **text_p, size_t *len_p, tr_tree_error_t *err)
{
    char why [200];
    FILE *file = fopen (path, "rb");
    if (!file && (errno == ENOENT || errno == ENOTDIR))
        return s_file_error (err, path, TR_ENOTFOUND, "no such file");
    snprintf (why, sizeof why, "cannot read the file: %s", strerror (errno));
    if (!file)
        return s_file_error (err, path, TR_ESYS, why);
    size_t size = 0, room = 4096;
    char *text = (char *) malloc (room);
    int rc = text? TR_OK: s_file_error (err, path, TR_ENOMEM, "out of memory");
    while (rc == TR_OK) {
        size += fread (text + size, 1, room - size, file);
        if (ferror (file)) {
            snprintf (why, sizeof why, "cannot read the file: %s", strerror (errno));
            rc = s_file_error (err, path, TR_ESYS, why);
        }
        else
        if (size < room)
            break;
        else
        if (room > S_MAX_FILE)
            rc = s_file_error (err, path, TR_EMALFORMED, "the file is larger than 16 MiB");
        else {
            char *bigger = (char *) realloc (text, room * 2);
            if (bigger) {
                text = bigger;
                room *= 2;
            }
            else
                rc = s_file_error (err, path, TR_ENOMEM, "out of memory");
        }
    }
    fclose (file);
    if (rc == TR_OK && size > S_MAX_FILE)
        rc = s_file_error (err, path, TR_EMALFORMED, "the file is larger than 16 MiB");
    if (rc)
        free (text);
    else {
        *text_p = text;
        *len_p = size;
    }
    return rc;
}

int
tr_tree_load (const char *path, tr_tree_t **tree_p, tr_tree_error_t *err)
{
    char *text = NULL;
    size_t len = 0;
    if (!path || !tree_p)
        return TR_EINVAL;
    *tree_p = NULL;
    int rc = s_read_file (path, &text, &len, err);
    if (rc == TR_OK)
        rc = tr_tree_parse (text, len, path, tree_p, err);
    free (text);
    return rc;
}

char *
tr_tree_error_format (const tr_tree_error_t *err, char *buf, size_t size)
{
    if (!buf || !size)
        return buf;
    if (!err)
        buf [0] = 0;
    else
    if (err->line > 0)
        snprintf (buf, size, "%s:%d:%d: %s", err->file, err->line,
                  err->column, err->message);
    else
        snprintf (buf, size, "%s: %s", err->file, err->message);
    return buf;
}

void
tr_tree_destroy (tr_tree_t **self_p)
{
    if (self_p && *self_p) {
        s_tree_free ((s_tree_t *) *self_p);
        *self_p = NULL;
    }
}

//  Finds name in a supervisor, its template and their nested supervisors.
static const tr_child_spec_t *
s_find (const tr_sup_spec_t *sup, const char *name)
{
    const tr_child_spec_t *found = NULL;
    for (size_t i = 0; i < sup->count && !found; i++) {
        const tr_child_spec_t *child = &sup->children [i];
        if (strcmp (child->name, name) == 0)
            found = child;
        else
        if (child->kind == TR_CHILD_SUPERVISOR)
            found = s_find (child->sup, name);
    }
    if (!found && sup->template_ && sup->template_->kind == TR_CHILD_SUPERVISOR)
        found = s_find (sup->template_->sup, name);
    return found;
}

const tr_child_spec_t *
tr_tree_find (const tr_tree_t *self, const char *name)
{
    if (!self || !name)
        return NULL;
    if (strcmp (self->root.name, name) == 0)
        return &self->root;
    return s_find (self->root.sup, name);
}
