/*  tr_error.c - names and sentences for the error list in tr_error.h.  */

#include "troupe/tr_error.h"

#include <stddef.h>

typedef struct {
    int code;
    const char *name;
    const char *text;
} s_error_t;

#define S_ERROR_ROW(name, value, text) { value, "TR_" #name, text },
static const s_error_t s_errors [] = {
    TR_ERROR_MAP (S_ERROR_ROW)
};
#undef S_ERROR_ROW

static const s_error_t *
s_find (int code)
{
    for (size_t i = 0; i < sizeof s_errors / sizeof s_errors [0]; i++)
        if (s_errors [i].code == code)
            return &s_errors [i];
    return NULL;
}

const char *
tr_strerror (int code)
{
    const s_error_t *e = s_find (code);
    return e? e->text: "unknown error";
}

const char *
tr_errname (int code)
{
    const s_error_t *e = s_find (code);
    return e? e->name: "TR_EUNKNOWN";
}
