/*  tr_log.c - the runtime's log; see tr_log.h.  */

#include "troupe/tr_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int s_level = -1;         //  -1: not read from the env yet

static int
s_level_from_env (void)
{
    const char *env = getenv ("TROUPE_LOG");
    static const char *names [] = { "error", "warn", "info", "debug" };
    if (env)
        for (int i = 0; i < 4; i++)
            if (strcmp (env, names [i]) == 0)
                return i;
    return TR_LOG_WARN;
}

int
tr_log_level (void)
{
    int level = atomic_load_explicit (&s_level, memory_order_relaxed);
    if (level < 0) {
        level = s_level_from_env ();
        atomic_store_explicit (&s_level, level, memory_order_relaxed);
    }
    return level;
}

void
tr_log_set_level (int level)
{
    if (level < TR_LOG_ERROR)
        level = TR_LOG_ERROR;
    if (level > TR_LOG_DEBUG)
        level = TR_LOG_DEBUG;
    atomic_store_explicit (&s_level, level, memory_order_relaxed);
}

void
tr_log (int level, const char *format, ...)
{
    if (level > tr_log_level ())
        return;
    static const char tags [] = "EWID";
    char line [1100];
    struct timespec ts;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &ts);
    localtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, 64, "%02d:%02d:%02d.%03ld %c troupe: ",
                      tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                      tags [level < 0? 0: level > 3? 3: level]);
    va_list args;
    va_start (args, format);
    int m = vsnprintf (line + n, 1024, format, args);
    va_end (args);
    size_t len = (size_t) n + (m < 0? 0: m > 1023? 1023: (size_t) m);
    line [len++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void) rc;                  //  nowhere left to report a failed log write
}
