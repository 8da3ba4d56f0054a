/*  tr_params.h - an actor's parameters, as written in a tree file.

    Parameters are a msgpack map with string keys (a tree file's
    `params:` block, converted from YAML). An actor type created from a
    tree file receives them as its init argument: a `const tr_params_t *`.
    The accessors read top-level keys; tr_params_get gives a nested value
    as parameters of its own. Nothing is allocated; values point into the
    parameters, which live as long as the actor's spec.
*/
#ifndef TR_PARAMS_H_INCLUDED
#define TR_PARAMS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const uint8_t *data;        //  one msgpack value (a map), or NULL
    size_t size;                //  0 for no parameters
} tr_params_t;

//  Each accessor returns TR_OK and the value, TR_ENOTFOUND if the key is
//  absent (the out value is left alone, so it may hold a default), or
//  TR_EMALFORMED if the value has another type. TR_EINVAL for NULLs.

//  An integer (msgpack int or uint that fits in int64_t).
TR_EXPORT int
    tr_params_int (const tr_params_t *self, const char *key, int64_t *value);

//  A number: integer or float.
TR_EXPORT int
    tr_params_double (const tr_params_t *self, const char *key, double *value);

//  true or false.
TR_EXPORT int
    tr_params_bool (const tr_params_t *self, const char *key, bool *value);

//  A string: *text points into the parameters (not NUL-terminated).
TR_EXPORT int
    tr_params_str (const tr_params_t *self, const char *key,
                   const char **text, size_t *len);

//  A duration in milliseconds: a string such as "250ms", "1.5s", "2m",
//  "1h" (see tr_duration_parse), or an integer taken as milliseconds.
TR_EXPORT int
    tr_params_duration (const tr_params_t *self, const char *key, int64_t *ms);

//  Any value, as parameters of its own (a nested map or a list).
TR_EXPORT int
    tr_params_get (const tr_params_t *self, const char *key, tr_params_t *value);

//  Parses a duration: a non-negative decimal number followed by one of
//  the units ms, s, m, h ("0" alone is allowed). Returns TR_OK with the
//  value rounded to whole milliseconds, or TR_EINVAL.
TR_EXPORT int
    tr_duration_parse (const char *text, size_t len, int64_t *ms);

#ifdef __cplusplus
}
#endif

#endif
