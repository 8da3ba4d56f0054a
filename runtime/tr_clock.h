/*  tr_clock.h - time helpers (internal).

    Deadlines inside a process are CLOCK_MONOTONIC nanoseconds, so they do
    not jump with the wall clock; they become Unix microseconds only on
    the wire (see tr_envelope.h).
*/
#ifndef TR_CLOCK_H_INCLUDED
#define TR_CLOCK_H_INCLUDED

#include <stdint.h>
#include <time.h>

#define TR__FOREVER INT64_MAX

//  Monotonic time in nanoseconds.
static inline int64_t
tr__now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  Unix time in microseconds.
static inline int64_t
tr__wall_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  The monotonic deadline timeout_ms from now; TR__FOREVER for a negative
//  timeout.
static inline int64_t
tr__deadline_after_ms (int64_t timeout_ms)
{
    if (timeout_ms < 0)
        return TR__FOREVER;
    return tr__now_ns () + timeout_ms * 1000000;
}

//  A monotonic deadline as an absolute timespec on the given clock.
static inline struct timespec
tr__timespec_at (int64_t deadline_ns, clockid_t clock)
{
    struct timespec ts;
    int64_t at = deadline_ns;
    if (clock != CLOCK_MONOTONIC) {
        struct timespec now;
        clock_gettime (clock, &now);
        int64_t delta = deadline_ns - tr__now_ns ();
        at = (int64_t) now.tv_sec * 1000000000 + now.tv_nsec + delta;
    }
    ts.tv_sec = (time_t) (at / 1000000000);
    ts.tv_nsec = (long) (at % 1000000000);
    return ts;
}

#endif
