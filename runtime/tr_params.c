/*  tr_params.c - reading an actor's parameters; see tr_params.h.

    Parameters are one msgpack map. Each accessor walks it with the
    bounded reader (tr_mp.h) to the value of the key asked for, then reads
    that value; nothing is allocated and no byte past the block is read.
    The reader knows maps, integers and strings; floats and booleans are
    read here.
*/

#include "troupe/tr_params.h"
#include "troupe/tr_error.h"
#include "tr_mp.h"

#include <string.h>

//  Containers inside parameters may nest this deep (the tree loader
//  refuses deeper YAML long before).
#define S_MAX_DEPTH 64

//  Positions r at the value of `key` in the parameters. Returns TR_OK,
//  TR_ENOTFOUND, TR_EMALFORMED, or TR_EINVAL for NULL arguments.
static int
s_find (const tr_params_t *self, const char *key, tr__mp_t *r)
{
    if (!self || !key || (!self->data && self->size))
        return TR_EINVAL;
    if (!self->size)
        return TR_ENOTFOUND;
    tr__mp_init (r, self->data, self->size);
    uint32_t pairs;
    if (tr__mp_map (r, &pairs))
        return TR_EMALFORMED;
    size_t key_len = strlen (key);
    for (uint32_t i = 0; i < pairs; i++) {
        const char *name;
        uint32_t len;
        const uint8_t *at = r->p;
        if (tr__mp_str (r, &name, &len)) {
            //  Not a string key: skip it, and its value, unread.
            r->p = at;
            r->error = 0;
            if (tr__mp_skip (r, S_MAX_DEPTH))
                return TR_EMALFORMED;
        }
        else
        if (len == key_len && memcmp (name, key, len) == 0)
            return TR_OK;
        if (tr__mp_skip (r, S_MAX_DEPTH))
            return TR_EMALFORMED;
    }
    return TR_ENOTFOUND;
}

//  Reads a big-endian float32 or float64 at r into *value, if the next
//  value is one. Returns 0, or -1 (nothing consumed) for any other type.
static int
s_float (tr__mp_t *r, double *value)
{
    size_t width = 0;
    if (r->p < r->end && *r->p == 0xca)
        width = 4;
    else
    if (r->p < r->end && *r->p == 0xcb)
        width = 8;
    if (!width || tr__mp_remaining (r) < 1 + width)
        return -1;
    uint64_t bits = 0;
    for (size_t i = 1; i <= width; i++)
        bits = (bits << 8) | r->p [i];
    r->p += 1 + width;
    if (width == 4) {
        uint32_t narrow = (uint32_t) bits;
        float f;
        memcpy (&f, &narrow, sizeof f);
        *value = f;
    }
    else
        memcpy (value, &bits, sizeof *value);
    return 0;
}

int
tr_params_int (const tr_params_t *self, const char *key, int64_t *value)
{
    tr__mp_t r;
    int64_t v;
    if (!value)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    if (tr__mp_int (&r, &v))
        return TR_EMALFORMED;
    *value = v;
    return TR_OK;
}

int
tr_params_double (const tr_params_t *self, const char *key, double *value)
{
    tr__mp_t r;
    double d;
    if (!value)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    if (s_float (&r, &d) == 0) {
        *value = d;
        return TR_OK;
    }
    const uint8_t *at = r.p;
    int64_t i;
    uint64_t u;
    if (tr__mp_int (&r, &i) == 0)
        *value = (double) i;
    else {
        //  An unsigned integer past INT64_MAX is still a number.
        r.p = at;
        r.error = 0;
        if (tr__mp_uint (&r, &u))
            return TR_EMALFORMED;
        *value = (double) u;
    }
    return TR_OK;
}

int
tr_params_bool (const tr_params_t *self, const char *key, bool *value)
{
    tr__mp_t r;
    if (!value)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    if (r.p >= r.end || (*r.p != 0xc2 && *r.p != 0xc3))
        return TR_EMALFORMED;
    *value = *r.p == 0xc3;
    return TR_OK;
}

int
tr_params_str (const tr_params_t *self, const char *key,
               const char **text, size_t *len)
{
    tr__mp_t r;
    const char *s;
    uint32_t n;
    if (!text || !len)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    if (tr__mp_str (&r, &s, &n))
        return TR_EMALFORMED;
    *text = s;
    *len = n;
    return TR_OK;
}

int
tr_params_duration (const tr_params_t *self, const char *key, int64_t *ms)
{
    tr__mp_t r;
    const char *s;
    uint32_t n;
    int64_t v;
    if (!ms)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    const uint8_t *at = r.p;
    if (tr__mp_str (&r, &s, &n) == 0) {
        if (tr_duration_parse (s, n, &v))
            return TR_EMALFORMED;
    }
    else {
        r.p = at;
        r.error = 0;
        if (tr__mp_int (&r, &v) || v < 0)
            return TR_EMALFORMED;
    }
    *ms = v;
    return TR_OK;
}

int
tr_params_get (const tr_params_t *self, const char *key, tr_params_t *value)
{
    tr__mp_t r;
    if (!value)
        return TR_EINVAL;
    int rc = s_find (self, key, &r);
    if (rc)
        return rc;
    const uint8_t *at = r.p;
    if (tr__mp_skip (&r, S_MAX_DEPTH))
        return TR_EMALFORMED;
    value->data = at;
    value->size = (size_t) (r.p - at);
    return TR_OK;
}

//  Milliseconds in one unit, from the letters after the number; 0 if
//  they are not a unit.
static int64_t
s_unit_ms (const char *unit, size_t len)
{
    if (len == 2 && unit [0] == 'm' && unit [1] == 's')
        return 1;
    if (len == 1 && unit [0] == 's')
        return 1000;
    if (len == 1 && unit [0] == 'm')
        return 60 * 1000;
    if (len == 1 && unit [0] == 'h')
        return 60 * 60 * 1000;
    return 0;
}

//  The fraction digits of a duration in units of `unit` ms, rounded to
//  whole milliseconds (halves up). Digits past the twelfth are too small
//  to matter and are ignored.
static int64_t
s_fraction_ms (const char *digits, size_t len, int64_t unit)
{
    int64_t numerator = 0, denominator = 1;
    for (size_t i = 0; i < len && i < 12; i++) {
        numerator = numerator * 10 + (digits [i] - '0');
        denominator *= 10;
    }
    int64_t scaled = numerator * unit;         //  < 10^12 * 3.6e6
    int64_t ms = scaled / denominator;
    if (2 * (scaled % denominator) >= denominator)
        ms++;
    return ms;
}

int
tr_duration_parse (const char *text, size_t len, int64_t *ms)
{
    if (!text || !ms)
        return TR_EINVAL;
    if (len == 1 && text [0] == '0') {
        *ms = 0;
        return TR_OK;
    }
    size_t i = 0, whole_end, frac_start, frac_end;
    while (i < len && text [i] >= '0' && text [i] <= '9')
        i++;
    whole_end = i;
    frac_start = frac_end = i;
    if (i < len && text [i] == '.') {
        frac_start = ++i;
        while (i < len && text [i] >= '0' && text [i] <= '9')
            i++;
        frac_end = i;
        if (frac_end == frac_start)
            return TR_EINVAL;               //  "1.s"
    }
    int64_t unit = s_unit_ms (text + i, len - i);
    if (whole_end == 0 || !unit)
        return TR_EINVAL;
    int64_t whole = 0;
    for (size_t k = 0; k < whole_end; k++) {
        int digit = text [k] - '0';
        if (whole > (INT64_MAX - digit) / 10)
            return TR_EINVAL;
        whole = whole * 10 + digit;
    }
    int64_t fraction = s_fraction_ms (text + frac_start, frac_end - frac_start, unit);
    if (whole > (INT64_MAX - fraction) / unit)
        return TR_EINVAL;
    *ms = whole * unit + fraction;
    return TR_OK;
}
