/*  tr_u64map.h - a map from 64-bit ids to pointers (internal).

    For tables keyed by numbers that one thread looks up for every
    message: a node's link keeps its asks in flight by wire id and its
    requests to the broker by SEQ. Open addressing with linear probing,
    at most half full, deletion by moving entries back (no tombstones);
    the key 0 is not allowed (the tables' ids start at 1). Not thread
    safe: one owner. The map does not own the values.
*/
#ifndef TR_U64MAP_H_INCLUDED
#define TR_U64MAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t key;               //  0: empty
    void *value;
} tr__u64slot_t;

typedef struct {
    tr__u64slot_t *slots;
    size_t cap;                 //  a power of two, or 0
    size_t count;
} tr__u64map_t;

//  An empty map needs no allocation: zero the struct.

//  Sets key to value (replacing an existing value). Returns 0, or -1 if
//  key is 0 or memory ran out (the map is unchanged then).
int
    tr__u64map_put (tr__u64map_t *self, uint64_t key, void *value);

//  Makes room for `more` new keys, so that the puts that add them cannot
//  fail. Returns 0, or -1 if memory ran out.
int
    tr__u64map_reserve (tr__u64map_t *self, size_t more);

//  The value of key, or NULL.
void *
    tr__u64map_get (const tr__u64map_t *self, uint64_t key);

//  Removes key and returns its value, or NULL if it was not there.
void *
    tr__u64map_take (tr__u64map_t *self, uint64_t key);

//  Walks the map: pass *at = 0 first; returns true with *key and *value
//  of the next entry, false at the end. The map must not change during
//  a walk (collect the keys to remove, then remove them).
bool
    tr__u64map_next (const tr__u64map_t *self, size_t *at, uint64_t *key, void **value);

//  Frees the slots (not the values) and empties the map.
void
    tr__u64map_clear (tr__u64map_t *self);

#endif
