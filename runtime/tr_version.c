/*  tr_version.c - the library's version at run time.  */

#include "troupe/tr_version.h"

const char *
tr_version (void)
{
    return TROUPE_VERSION_STRING;
}
