/*  tr_u64map.c - a map from 64-bit ids to pointers; see tr_u64map.h.
*/

#include "tr_u64map.h"

#include <stdlib.h>

//  Ids are often consecutive: mixed (MurmurHash3's finalizer) so that
//  they do not fill one run of slots.
static size_t
s_home (uint64_t key, size_t cap)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return (size_t) key & (cap - 1);
}

static void
s_place (tr__u64slot_t *slots, size_t cap, uint64_t key, void *value)
{
    size_t i = s_home (key, cap);
    while (slots [i].key)
        i = (i + 1) & (cap - 1);
    slots [i].key = key;
    slots [i].value = value;
}

//  The slot holding key, or the capacity if there is none.
static size_t
s_find (const tr__u64map_t *self, uint64_t key)
{
    if (!self->cap || !key)
        return self->cap;
    size_t mask = self->cap - 1;
    for (size_t i = s_home (key, self->cap); self->slots [i].key; i = (i + 1) & mask)
        if (self->slots [i].key == key)
            return i;
    return self->cap;
}

int
tr__u64map_reserve (tr__u64map_t *self, size_t more)
{
    //  At most half full.
    if ((self->count + more) * 2 <= self->cap)
        return 0;
    size_t cap = self->cap? self->cap: 64;
    while ((self->count + more) * 2 > cap)
        cap *= 2;
    tr__u64slot_t *slots = (tr__u64slot_t *) calloc (cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < self->cap; i++)
        if (self->slots [i].key)
            s_place (slots, cap, self->slots [i].key, self->slots [i].value);
    free (self->slots);
    self->slots = slots;
    self->cap = cap;
    return 0;
}

int
tr__u64map_put (tr__u64map_t *self, uint64_t key, void *value)
{
    if (!key)
        return -1;
    size_t at = s_find (self, key);
    if (at < self->cap) {
        self->slots [at].value = value;
        return 0;
    }
    if (tr__u64map_reserve (self, 1))
        return -1;
    s_place (self->slots, self->cap, key, value);
    self->count++;
    return 0;
}

void *
tr__u64map_get (const tr__u64map_t *self, uint64_t key)
{
    size_t at = s_find (self, key);
    return at < self->cap? self->slots [at].value: NULL;
}

void *
tr__u64map_take (tr__u64map_t *self, uint64_t key)
{
    size_t i = s_find (self, key);
    if (i >= self->cap)
        return NULL;
    void *value = self->slots [i].value;
    self->slots [i].key = 0;
    self->slots [i].value = NULL;
    self->count--;
    //  Move back the entries of the run after the hole that could no
    //  longer be found past it.
    size_t mask = self->cap - 1;
    for (size_t j = (i + 1) & mask; self->slots [j].key; j = (j + 1) & mask) {
        size_t home = s_home (self->slots [j].key, self->cap);
        bool stays = i <= j? (home > i && home <= j): (home > i || home <= j);
        if (!stays) {
            self->slots [i] = self->slots [j];
            self->slots [j].key = 0;
            self->slots [j].value = NULL;
            i = j;
        }
    }
    return value;
}

bool
tr__u64map_next (const tr__u64map_t *self, size_t *at, uint64_t *key, void **value)
{
    while (*at < self->cap) {
        const tr__u64slot_t *slot = &self->slots [(*at)++];
        if (slot->key) {
            *key = slot->key;
            *value = slot->value;
            return true;
        }
    }
    return false;
}

void
tr__u64map_clear (tr__u64map_t *self)
{
    free (self->slots);
    self->slots = NULL;
    self->cap = 0;
    self->count = 0;
}
