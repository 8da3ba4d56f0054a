/*  tr_http.h - the node's HTTP engine: one libcurl multi handle per node.

    Every HTTP request of every actor in a process (LLM calls, HTTP tool
    calls) goes through one engine owned by the node: one thread running
    one libcurl multi handle, so thousands of requests can be in flight
    without a thread each. Actors never block on HTTP: they submit a
    request with a completion callback and, for an ask, answer later from
    that callback (tr_defer, then tr_reply from any thread).

    Requests are grouped by backend (a name such as "openai" or "search";
    by default the one named "default"). A backend carries the limits
    that servers impose and that a fleet of agents must respect together:
    requests in flight at once, requests per minute, tokens per minute.
    Requests that cannot start yet wait in a priority queue in front of
    those limits (higher priority first, then first come first served).
    A backend also carries the timeouts, the retry policy (exponential
    backoff with jitter on 429, 5xx and failed connections, honouring a
    server's Retry-After), the size limit of a response, and an optional
    cache of identical requests (least recently used, with a time to
    live).

    The engine starts on first use and stops with the node: requests
    still queued or in flight then complete with TR_ECLOSED. The node
    stops it before any of its actors, so those callbacks run while the
    actors they belong to are still alive.

    What counts against the limits: every attempt (a retry too) counts
    as one request per minute; a request's estimated tokens count once,
    when its first attempt starts. The queue is strict: while its head
    waits for a limit, nothing behind it starts. A request estimated at
    more tokens than tokens_per_minute starts only when the window is
    empty.

    Retries: attempt k+1 waits a random time between 0 and
    min(backoff_max_ms, backoff_initial_ms * 2^(k-1)) ("full jitter"),
    and at least the server's Retry-After (seconds or an HTTP date); a
    Retry-After longer than backoff_max_ms ends the request at once with
    that answer (detail says so). Retried: 429, 5xx, and connections that failed or broke
    before an answer (refused, reset, closed without a reply, a connect
    timeout). Never retried: other statuses, an attempt that timed out
    after connecting, an oversized response. When the wait would pass the
    request's deadline, the request ends at once with the last attempt's
    error (detail says so) instead of waiting for nothing.

    Transfers are plain libcurl ones: redirects are not followed (a 3xx
    is TR_EHTTP with its status), proxies named in the environment
    (http_proxy, https_proxy, no_proxy...) are used, TLS certificates are
    verified (peer and host name) against the system's store or the
    backend's ca_file, and a failed verification is TR_EHTTP with a
    detail that starts "TLS:"; a body goes with the
    Content-Type the caller's headers give (none if they give none), and
    no "Expect: 100-continue" round trip is made. Past 256 attempts in flight
    (all backends), an attempt opens a connection of its own and closes
    it after; below that, connections are kept alive and reused. The
    engine closes connections with a reset, not a FIN, so that churning
    thousands of them leaves no local port in TIME_WAIT.

    Threads: every function may be called from any thread. Completion
    callbacks run on the engine's thread, one at a time; they must not
    block (no tr_ask, no sleeping, no tr_node_destroy): tell, reply,
    submit, or hand the result on.
*/
#ifndef TR_HTTP_H_INCLUDED
#define TR_HTTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tr_export.h"
#include "tr_node.h"

#ifdef __cplusplus
extern "C" {
#endif

//  A backend's settings. Zero in any field means the default given in its
//  comment, so a zeroed struct with a name is a valid configuration.
typedef struct {
    const char *name;           //  required: 1..63 bytes of [A-Za-z0-9._-]
    int max_concurrent;         //  requests in flight at once (default 64)
    int requests_per_minute;    //  sliding one-minute window (0: no limit)
    int tokens_per_minute;      //  sliding one-minute window (0: no limit)
    int connect_timeout_ms;     //  TCP and TLS connect (default 10000)
    int timeout_ms;             //  one attempt, whole (default 120000)
    int max_retries;            //  after the first attempt (default 3; -1: none)
    int backoff_initial_ms;     //  first retry's delay (default 500)
    int backoff_max_ms;         //  cap of the growing delay (default 30000)
    size_t max_response;        //  body bytes (default 8 MiB); more is TR_ETOOBIG
    size_t cache_entries;       //  cached responses (default 0: no cache)
    int cache_ttl_ms;           //  a cached response's life (default 300000)
    //  A file of CA certificates (PEM) that https servers' certificates
    //  are verified against instead of the system's store (NULL: the
    //  system's). Copied. The engine does not read it here: a file that
    //  cannot be used fails each https attempt (TR_EHTTP, detail says
    //  so). Verification is never turned off.
    const char *ca_file;
} tr_http_backend_opts_t;

//  One request. The engine copies everything it needs before
//  tr_http_submit returns; the caller keeps ownership of its strings.
typedef struct {
    const char *backend;        //  a backend's name; NULL for "default"
    const char *method;         //  "GET", "POST"...; NULL: POST with a body, else GET
    const char *url;            //  required, http:// or https://
    const char *const *headers; //  NULL-terminated "Name: value" lines, or NULL
    const void *body;           //  request body, or NULL
    size_t body_size;
    int priority;               //  higher starts first when requests queue (default 0)
    int timeout_ms;             //  replaces the backend's per-attempt timeout (0: keep)
    //  Overall deadline in milliseconds from submission, covering queueing,
    //  attempts and backoff (0: none beyond the attempts themselves).
    int deadline_ms;
    //  Tokens this request is expected to use, charged against the
    //  backend's tokens_per_minute when it starts (see tr_http_charge).
    uint32_t tokens;
    //  May be answered from the backend's cache, and stored there on a
    //  2xx answer. The cache key is method, URL, headers and body.
    bool cacheable;
} tr_http_request_t;

//  The outcome of a request, given to the completion callback. Pointers
//  are valid only during the callback.
typedef struct {
    uint64_t id;                //  as returned by tr_http_submit
    //  TR_OK: a 2xx response. TR_EHTTP: any other status after the
    //  retries allowed (status holds it), or a connection that failed
    //  (status 0). TR_ETIMEDOUT: an attempt's timeout or the deadline.
    //  TR_ETOOBIG: the response passed max_response. TR_ECANCELED:
    //  tr_http_cancel. TR_ECLOSED: the node is shutting down. TR_ENOMEM.
    int error;
    long status;                //  HTTP status of the last attempt, 0 if none
    const char *body;           //  the last response's body, NUL-terminated
    size_t size;                //  its length, without the NUL
    const char *content_type;   //  its Content-Type, or NULL
    const char *detail;         //  a short reason for an error, or ""
    int attempts;               //  attempts made (0 when cached or never started)
    bool cached;                //  answered from the cache
    int64_t queued_ms;          //  time spent waiting for the backend's limits
    int64_t elapsed_ms;         //  from submission to completion
} tr_http_result_t;

typedef void (tr_http_done_fn) (const tr_http_result_t *result, void *arg);

//  A backend's counters, for status and tests.
typedef struct {
    uint64_t submitted;         //  requests accepted by tr_http_submit
    uint64_t completed_ok;      //  finished with TR_OK (cache hits included)
    uint64_t failed;            //  finished with any error
    uint64_t retries;           //  attempts after a first one
    uint64_t cache_hits;
    uint64_t tokens;            //  tokens charged (tr_http_request_t.tokens
                                //  plus tr_http_charge corrections)
    uint32_t in_flight;         //  attempts running now
    uint32_t queued;            //  requests waiting for limits or backoff
} tr_http_stats_t;

//  Creates the backend with that name, or changes its settings (requests
//  already in flight keep the settings they started with). Returns TR_OK,
//  TR_EINVAL for a bad name, negative values or an empty ca_file,
//  TR_ENOMEM, TR_ECLOSED.
TR_EXPORT int
    tr_http_backend_set (tr_node_t *node, const tr_http_backend_opts_t *opts);

//  Submits a request. On TR_OK, done is called exactly once, later, on
//  the engine's thread (even for a cache hit), and *id_p (if not NULL)
//  holds the request's id. On any error done is never called. Returns
//  TR_OK, TR_EINVAL (no URL, unknown backend, bad method), TR_ENOMEM,
//  TR_ECLOSED (node shutting down), TR_ESYS (engine could not start).
TR_EXPORT int
    tr_http_submit (tr_node_t *node, const tr_http_request_t *request,
                    tr_http_done_fn *done, void *arg, uint64_t *id_p);

//  Cancels a request: its callback runs with TR_ECANCELED unless it has
//  already run or is running. Returns TR_OK, or TR_ENOTFOUND if the
//  request has already completed (or never existed). Either way, when it
//  returns the request's callback has run and returned (the engine's
//  thread runs it, and the caller waits for that), so the caller may
//  free what the callback's arg points to; called from a completion
//  callback it acts at once, and a callback cancelling its own request
//  gets TR_ENOTFOUND. Do not call it while holding a lock that a
//  completion callback takes.
TR_EXPORT int
    tr_http_cancel (tr_node_t *node, uint64_t id);

//  Corrects a backend's token count once the real usage is known (the
//  difference from the estimate, which may be negative). Returns TR_OK,
//  TR_EINVAL for an unknown backend.
TR_EXPORT int
    tr_http_charge (tr_node_t *node, const char *backend, int64_t tokens);

//  Fills *stats for a backend (NULL for "default"). Returns TR_OK or
//  TR_EINVAL for an unknown backend.
TR_EXPORT int
    tr_http_stats (tr_node_t *node, const char *backend, tr_http_stats_t *stats);

#ifdef __cplusplus
}
#endif

#endif
