/*  tr_export.h - symbol visibility for libtroupe.

    The shared library is built with hidden visibility; only functions
    marked TR_EXPORT form its ABI. Internal functions use the tr__ prefix
    and are never exported.
*/
#ifndef TR_EXPORT_H_INCLUDED
#define TR_EXPORT_H_INCLUDED

#if defined (TROUPE_BUILDING) && defined (__GNUC__)
#   define TR_EXPORT __attribute__ ((visibility ("default")))
#else
#   define TR_EXPORT
#endif

#endif
