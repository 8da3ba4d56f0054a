/*  tr_log.c - the runtime's log; see tr_log.h.

    A status line: an actor that shows progress on a terminal (the batch's
    bar) keeps one line at the bottom of standard error, redrawn in place
    with a carriage return. A log line written while it shows would land
    at the end of that line; so every line written here first erases the
    status line ("\r" and erase-to-end-of-line), then writes the log line,
    then draws the status line again below it, in the same write(2) and
    under one lock, so that log lines scroll above the status line and
    never mix with it.
*/

#include "troupe/tr_log.h"
#include "tr_internal.h"

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

//  The status line (see above): its text, without "\r" or escapes, and
//  who set it. s_status_lock also orders every write to standard error
//  made here.
static pthread_mutex_t s_status_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_status [TR__LOG_STATUS_MAX];
static size_t s_status_len;
static const void *s_status_owner;

#define S_ERASE "\r\033[K"             //  to column 0, erase to the end of the line

//  Writes all of buf to standard error; nowhere is left to report a
//  failed write.
static void
s_write_all (const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t rc = write (STDERR_FILENO, buf, len);
        if (rc <= 0)
            return;
        buf += rc;
        len -= (size_t) rc;
    }
}

void
tr__log_write (const char *line, size_t len)
{
    pthread_mutex_lock (&s_status_lock);
    if (s_status_len == 0)
        s_write_all (line, len);
    else {
        //  Erase the status line, the line, the status line again: one write.
        char buf [sizeof S_ERASE + 1200 + TR__LOG_STATUS_MAX];
        size_t n = 0;
        memcpy (buf, S_ERASE, sizeof S_ERASE - 1);
        n += sizeof S_ERASE - 1;
        if (len > 1200)
            len = 1200;
        memcpy (buf + n, line, len);
        n += len;
        memcpy (buf + n, s_status, s_status_len);
        n += s_status_len;
        s_write_all (buf, n);
    }
    pthread_mutex_unlock (&s_status_lock);
}

void
tr__log_status (const void *owner, const char *text, size_t len)
{
    pthread_mutex_lock (&s_status_lock);
    if (text && len > 0) {
        if (len > sizeof s_status)
            len = sizeof s_status;
        memcpy (s_status, text, len);
        s_status_len = len;
        s_status_owner = owner;
        char buf [sizeof S_ERASE + TR__LOG_STATUS_MAX];
        memcpy (buf, S_ERASE, sizeof S_ERASE - 1);
        memcpy (buf + sizeof S_ERASE - 1, s_status, s_status_len);
        s_write_all (buf, sizeof S_ERASE - 1 + s_status_len);
    }
    else
    if (s_status_len > 0 && owner == s_status_owner) {
        s_status_len = 0;
        s_status_owner = NULL;
        s_write_all (S_ERASE, sizeof S_ERASE - 1);
    }
    pthread_mutex_unlock (&s_status_lock);
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
    tr__log_write (line, len);
}
