/*  tr_log.h - the runtime's log, on standard error.

    One line per event: time, level, and the message. The level starts
    from the TROUPE_LOG environment variable (error, warn, info, debug;
    default warn) and can be changed at run time. Safe from any thread;
    each line is written with a single write(2), so lines never mix.
*/
#ifndef TR_LOG_H_INCLUDED
#define TR_LOG_H_INCLUDED

#include "tr_export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TR_LOG_ERROR = 0,
    TR_LOG_WARN  = 1,
    TR_LOG_INFO  = 2,
    TR_LOG_DEBUG = 3
} tr_log_level_t;

//  Sets the most verbose level that is printed.
TR_EXPORT void
    tr_log_set_level (int level);

//  The level in force.
TR_EXPORT int
    tr_log_level (void);

//  Logs a printf-style message at the given level (if it is enabled).
//  Lines longer than 1 KiB are cut.
TR_EXPORT void
    tr_log (int level, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
