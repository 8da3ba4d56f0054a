/*  tr_port.c - the "port" actor type: an OS process as an agent.

    Two modes, from the tree file's params:

    per_message (the default): each message runs `command` once. The
    message's body is the process's input: on its standard input, or in
    place of `{input}` in any element of `command` (then stdin is empty).
    Its standard output is the answer; an exit status other than 0, a
    death by signal, output past `max_output` or a run past `timeout` is
    a failure.

    json_lines: one long-lived process, started with the actor (init) and
    again with each restart, reads one JSON request per line on stdin and
    writes one JSON response per line on stdout, in order. With
    `id_field`, each request (a map) gets that field set to a sequence
    number, and the response must carry it back. Its death, garbage on
    stdout (a line that is not JSON, a response with the wrong id, output
    nobody asked for), a line past `max_output` or no answer within
    `timeout` is a failure of the agent: the asker gets an error, the
    handler fails (so the supervisor restarts the actor, which starts the
    process again, and breakers count it) and the process is stopped.

    `trim: true` drops trailing newlines (and CRLFs) from a per_message
    text answer, as a shell's $(...) does.

    Every parameter, nested ones too (each item of `command`, each
    variable of `env`, settings that need one another), is read by one
    function (s_port_configure) for the tree loader's check
    (tr_actor_type_t.check: a mistake is reported at the file, line and
    column of the value at fault, before anything starts) and for the
    start (the same reading, for agents started from C too). Whether the
    program can be run is found when it starts.

    Input: a string body is given as its bytes; any other body as one line
    of JSON (tr_json.h: maps as objects); an empty body as nothing. Reply:
    the output as a string (`output: text`), or parsed as JSON into
    msgpack (`output: json`, the default of json_lines). Standard error is
    logged line by line under the actor's name, as for process children.

    The actor's thread blocks while its process works (an actor handles
    one message at a time anyway), within the configured timeout and the
    ask's own deadline, whichever comes first. A wait cut short by the
    ask's deadline is the asker's timeout, not the agent's failure: a
    per_message process is stopped; a json_lines process still owes its
    answer, which is read and dropped before the next request.

    Processes are started by the runtime's process service (tr_proc.h):
    fork and immediate exec on its thread, a process group each, a pidfd,
    SIGTERM then SIGKILL (after `stop_timeout`) to the whole group.

    Errors to the asker: TR_EINVAL (a body that cannot be an argument: it
    holds a NUL byte), TR_ETIMEDOUT, TR_ETOOBIG (output past the limit),
    TR_ECHILD (the process failed: exit status, signal, death, garbage),
    TR_ENOTFOUND (the program cannot be run).

    Counters in status (tr_actor_info_get): port.messages (handled),
    port.starts (processes started), port.failed (failures of the agent).

    A json_lines process that dies while the actor waits for messages
    fails the actor at once (see s_on_exit), unless its mailbox is full or
    its breaker open: then the next message finds out, and fails
    (TR_ECHILD).
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "tr_json.h"
#include "tr_mbox.h"
#include "tr_mp.h"
#include "tr_proc.h"
#include "troupe/tr_body.h"
#include "troupe/tr_params.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#define S_PER_MESSAGE   0
#define S_JSON_LINES    1

#define S_TIMEOUT_MS    10000
#define S_STOP_MS       1000
#define S_MAX_OUTPUT    (1024u * 1024u)
#define S_OUTPUT_LIMIT  (TR_BODY_MAX - 16)  //  an answer must fit in a body

//  The settings, as s_port_configure reads them from the params.
typedef struct {
    int mode;
    char **argv;                        //  NULL-terminated template
    bool argv_input;                    //  some element holds {input}
    char **env;                         //  "NAME=VALUE", NULL-terminated
    char *cwd;
    int64_t timeout_ms;
    int64_t stop_ms;
    size_t max_output;
    bool json_out;
    bool trim;                          //  per_message text: drop trailing newlines
    char *id_field;
} s_settings_t;

typedef struct {
    tr_actor_t *actor;
    const char *name;                   //  the actor's (it outlives us)
    s_settings_t set;
    //  The process and our ends of its pipes
    tr__proc_t *proc;
    int in_fd, out_fd;
    int wake_fd;                        //  eventfd: the process ended
    pthread_mutex_t lock;               //  guards exited, exit, notify, proc_id
    bool exited;
    tr__proc_exit_t exit;
    bool notify;                        //  tell the actor if the process ends
    uint64_t proc_id;                   //  the running process's, for notices
    //  Output read and not used yet; json_lines answers still owed
    char *buf;                          //  grows to max_output + 1 at most
    size_t len, cap;
    size_t owed;
    int64_t owed_by_ns;                 //  when the last one owed is due
    uint64_t next_id;
} s_port_t;

static const tr_param_spec_t s_port_params [] = {
    { "command", TR_PARAM_LIST, true, "the program and its arguments; {input} in one is the body" },
    { "mode", TR_PARAM_STRING, false, "per_message (default) or json_lines" },
    { "timeout", TR_PARAM_DURATION, false, "longest a message may take (default 10s)" },
    { "max_output", TR_PARAM_INT, false, "most bytes of output per message or line (default 1 MiB)" },
    { "output", TR_PARAM_STRING, false, "text (per_message default) or json (json_lines default)" },
    { "id_field", TR_PARAM_STRING, false, "json_lines: field carrying a request id to match" },
    { "env", TR_PARAM_MAP, false, "environment variables added for the process" },
    { "cwd", TR_PARAM_STRING, false, "the process's working folder" },
    { "stop_timeout", TR_PARAM_DURATION, false, "SIGTERM to SIGKILL when stopping it (default 1s)" },
    { "trim", TR_PARAM_BOOL, false, "per_message text output: drop trailing newlines (default false)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings: one reading of the params (s_port_configure) serves the tree
//  loader's check, which reports a mistake at its file, line and column,
//  and the agent's start.

static void
s_strv_free (char **strv)
{
    for (char **s = strv; s && *s; s++)
        free (*s);
    free (strv);
}

//  Frees what the settings hold (not the settings themselves).
static void
s_settings_clear (s_settings_t *set)
{
    s_strv_free (set->argv);
    s_strv_free (set->env);
    free (set->cwd);
    free (set->id_field);
    memset (set, 0, sizeof *set);
}

static void
s_settings_release (s_settings_t *set)
{
    s_settings_clear (set);
    free (set);
}

static void
s_port_free (s_port_t *self)
{
    if (!self)
        return;
    s_settings_clear (&self->set);
    free (self->buf);
    if (self->wake_fd >= 0)
        close (self->wake_fd);
    pthread_mutex_destroy (&self->lock);
    free (self);
}

//  The items of `command` (cfg->at is "command"): strings without NUL
//  bytes, the first (the program) not empty.
static int
s_read_command_items (s_settings_t *set, tr__cfg_t *cfg, const msgpack_object *list)
{
    uint32_t count = list->via.array.size;
    set->argv = (char **) calloc (count + 1, sizeof (char *));
    if (!set->argv)
        return tr__cfg_bad (cfg, "out of memory");
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *o = &list->via.array.ptr [i];
        char item [16];
        snprintf (item, sizeof item, "%u", i + 1);
        if (o->type != MSGPACK_OBJECT_STR)
            return tr__cfg_bad_at (cfg, item, "'command' item %u must be a string, not %s",
                                   i + 1, tr__cfg_kind (o));
        if (memchr (o->via.str.ptr, 0, o->via.str.size))
            return tr__cfg_bad_at (cfg, item, "'command' item %u must not hold a NUL byte",
                                   i + 1);
        if (i == 0 && o->via.str.size == 0)
            return tr__cfg_bad_at (cfg, item, "'command' item 1, the program, must not be "
                                   "empty");
        if (!(set->argv [i] = strndup (o->via.str.ptr, o->via.str.size)))
            return tr__cfg_bad (cfg, "out of memory");
        if (strstr (set->argv [i], "{input}"))
            set->argv_input = true;
    }
    return 0;
}

//  `command`: a non-empty list of strings.
static int
s_read_command (s_settings_t *set, tr__cfg_t *cfg)
{
    const msgpack_object *list = tr__cfg_get (cfg, NULL, "command");
    if (!list)
        return tr__cfg_bad (cfg, "needs a 'command'");
    if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        return tr__cfg_bad_at (cfg, "command", "'command' must be a non-empty list of "
                               "strings, not %s", list->type == MSGPACK_OBJECT_ARRAY?
                               "an empty list": tr__cfg_kind (list));
    tr__cfg_enter (cfg, "command");
    int rc = s_read_command_items (set, cfg, list);
    tr__cfg_enter (cfg, "%s", "");
    return rc;
}

//  One variable of `env` (cfg->at is "env"): a name without '=', a
//  string value, no NUL bytes.
static int
s_read_env_var (s_settings_t *set, tr__cfg_t *cfg, const msgpack_object_kv *kv, size_t i)
{
    if (kv->key.type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad (cfg, "'env' names must be strings, not %s", tr__cfg_kind (&kv->key));
    const char *key = kv->key.via.str.ptr;
    uint32_t key_len = kv->key.via.str.size;
    char shown [64];
    snprintf (shown, sizeof shown, "%.*s", (int) (key_len < 60? key_len: 60), key);
    if (key_len == 0 || memchr (key, '=', key_len) || memchr (key, 0, key_len))
        return tr__cfg_bad_at (cfg, shown, "'env' name '%s' must not be empty nor hold '=' "
                               "or a NUL byte", shown);
    const msgpack_object *value = &kv->val;
    if (value->type != MSGPACK_OBJECT_STR)
        return tr__cfg_bad_at (cfg, shown, "'env' value of '%s' must be a string, not %s",
                               shown, tr__cfg_kind (value));
    if (memchr (value->via.str.ptr, 0, value->via.str.size))
        return tr__cfg_bad_at (cfg, shown, "'env' value of '%s' must not hold a NUL byte",
                               shown);
    if (asprintf (&set->env [i], "%.*s=%.*s", (int) key_len, key,
                  (int) value->via.str.size, value->via.str.ptr) < 0) {
        set->env [i] = NULL;
        return tr__cfg_bad (cfg, "out of memory");
    }
    return 0;
}

//  `env`: a map of names to strings.
static int
s_read_env (s_settings_t *set, tr__cfg_t *cfg)
{
    const msgpack_object *map = tr__cfg_get (cfg, NULL, "env");
    if (!map)
        return 0;
    if (map->type != MSGPACK_OBJECT_MAP)
        return tr__cfg_bad_at (cfg, "env", "'env' must be a mapping, not %s", tr__cfg_kind (map));
    set->env = (char **) calloc (map->via.map.size + 1, sizeof (char *));
    if (!set->env)
        return tr__cfg_bad (cfg, "out of memory");
    tr__cfg_enter (cfg, "env");
    int rc = 0;
    for (uint32_t i = 0; i < map->via.map.size && rc == 0; i++)
        rc = s_read_env_var (set, cfg, &map->via.map.ptr [i], i);
    tr__cfg_enter (cfg, "%s", "");
    return rc;
}

//  Settings that only mean something with others are refused without
//  them, rather than ignored.
static int
s_check_together (s_settings_t *set, tr__cfg_t *cfg)
{
    if (set->mode == S_JSON_LINES && set->argv_input) {
        char item [32];
        size_t i = 0;
        while (!strstr (set->argv [i], "{input}"))
            i++;
        snprintf (item, sizeof item, "command.%zu", i + 1);
        return tr__cfg_bad_at (cfg, item, "{input} in 'command' needs mode per_message");
    }
    if (set->id_field && set->mode != S_JSON_LINES)
        return tr__cfg_bad_at (cfg, "id_field", "'id_field' needs mode json_lines");
    if (set->id_field && !set->json_out)
        return tr__cfg_bad_at (cfg, "output", "'id_field' needs output json");
    if (set->trim && (set->mode != S_PER_MESSAGE || set->json_out))
        return tr__cfg_bad_at (cfg, "trim", "'trim' is only for mode per_message with "
                               "output text");
    return 0;
}

//  Reads and checks every parameter into set. Returns 0, or -1 with
//  cfg->error (and the value at fault in cfg->path).
static int
s_port_configure (s_settings_t *set, tr__cfg_t *cfg)
{
    static const char *const modes [] = { "per_message", "json_lines", NULL };
    static const char *const outputs [] = { "text", "json", NULL };
    int output = -1;
    int64_t max_output = S_MAX_OUTPUT;
    set->mode = S_PER_MESSAGE;
    set->timeout_ms = S_TIMEOUT_MS;
    set->stop_ms = S_STOP_MS;
    if (s_read_command (set, cfg) || s_read_env (set, cfg)
    ||  tr__cfg_str (cfg, "cwd", &set->cwd)
    ||  tr__cfg_str (cfg, "id_field", &set->id_field)
    ||  tr__cfg_choice (cfg, "mode", modes, &set->mode)
    ||  tr__cfg_choice (cfg, "output", outputs, &output)
    ||  tr__cfg_duration (cfg, "timeout", 1, INT32_MAX, &set->timeout_ms)
    ||  tr__cfg_duration (cfg, "stop_timeout", 0, INT32_MAX, &set->stop_ms)
    ||  tr__cfg_int (cfg, "max_output", 1, S_OUTPUT_LIMIT, &max_output)
    ||  tr__cfg_bool (cfg, "trim", &set->trim))
        return -1;
    set->max_output = (size_t) max_output;
    set->json_out = output >= 0? output == 1: set->mode == S_JSON_LINES;
    return s_check_together (set, cfg);
}

//  The tree loader's check: the same reading as the start's, with positions.
TR__CFG_CHECK_DEFINE (s_port_check, "port", s_settings_t, s_port_configure, s_settings_release)

//  --------------------------------------------------------------------------
//  The process

//  A json_lines process that ends on its own while the actor waits for
//  messages is a failure found at once: the exit callback tells the
//  actor a notice, at high priority, which its handler fails on (so the
//  supervisor restarts it, and the breaker counts it). A notice is a
//  msgpack fixext 16 of type S_NOTICE_TYPE holding a secret drawn once
//  per troupe process (no one outside can make one) and the id of the
//  process that ended (a notice that comes after its process was dealt
//  with, or to the next incarnation, is ignored).
#define S_NOTICE_TYPE   0x50            //  'P'
#define S_NOTICE_SIZE   18

static uint64_t s_secret;
static atomic_uint_fast64_t s_next_proc_id;
static pthread_once_t s_secret_once = PTHREAD_ONCE_INIT;

static void
s_secret_init (void)
{
    if (getrandom (&s_secret, sizeof s_secret, 0) != sizeof s_secret)
        s_secret = (uint64_t) tr__now_ns () * UINT64_C (0x9e3779b97f4a7c15) ^ (uint64_t) getpid ();
}

static void
s_notice_pack (uint8_t *body, uint64_t proc_id)
{
    body [0] = 0xd8;
    body [1] = S_NOTICE_TYPE;
    memcpy (body + 2, &s_secret, 8);
    memcpy (body + 10, &proc_id, 8);
}

//  True if the message is a notice; its process id in *proc_id.
static bool
s_notice_read (const tr_msg_t *msg, uint64_t *proc_id)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_size (msg) != S_NOTICE_SIZE
    ||  body [0] != 0xd8 || body [1] != S_NOTICE_TYPE || memcmp (body + 2, &s_secret, 8))
        return false;
    memcpy (proc_id, body + 10, 8);
    return true;
}

//  True if the actor's breaker lets tells through as they are: an open
//  or half-open one would refuse the notice or send it to a fallback.
static bool
s_breaker_closed (s_port_t *self)
{
    tr__mbox_t *mbox = tr__node_lookup (tr_actor_node (self->actor), self->name, false);
    if (!mbox)
        return false;
    const char *state = tr__breaker_state_name (&mbox->breaker);
    bool closed = !strcmp (state, "off") || !strcmp (state, "closed");
    tr__mbox_unref (&mbox);
    return closed;
}

//  Called by the process service once the process has ended.
static void
s_on_exit (tr__proc_t *proc, const tr__proc_exit_t *exit, void *arg)
{
    (void) proc;
    s_port_t *self = (s_port_t *) arg;
    pthread_mutex_lock (&self->lock);
    self->exited = true;
    self->exit = *exit;
    bool notify = self->notify;
    uint64_t proc_id = self->proc_id;
    pthread_mutex_unlock (&self->lock);
    uint64_t one = 1;
    ssize_t rc = write (self->wake_fd, &one, sizeof one);
    (void) rc;
    if (notify && s_breaker_closed (self)) {
        //  Never wait here (the service thread serves every process): a
        //  full mailbox leaves it to the next message.
        uint8_t body [S_NOTICE_SIZE];
        s_notice_pack (body, proc_id);
        tr_send_opts_t opts = { .priority = TR_PRIO_HIGH, .timeout_ms = -1 };
        tr_tell (tr_actor_node (self->actor), self->name, body, sizeof body, &opts);
    }
}

static bool
s_exited (s_port_t *self, tr__proc_exit_t *exit)
{
    pthread_mutex_lock (&self->lock);
    bool exited = self->exited;
    if (exited && exit)
        *exit = self->exit;
    pthread_mutex_unlock (&self->lock);
    return exited;
}

static void
s_close (int *fd)
{
    if (*fd >= 0) {
        close (*fd);
        *fd = -1;
    }
}

//  Starts the process with argv (the template, or one filled in).
static int
s_start (s_port_t *self, char *const *argv)
{
    uint64_t value;
    while (read (self->wake_fd, &value, sizeof value) > 0)
        ;
    pthread_mutex_lock (&self->lock);
    self->exited = false;
    self->notify = self->set.mode == S_JSON_LINES;
    self->proc_id = atomic_fetch_add (&s_next_proc_id, 1) + 1;
    pthread_mutex_unlock (&self->lock);
    self->len = 0;
    self->owed = 0;
    tr__proc_spec_t spec = {
        .name = self->name, .argv = (const char *const *) argv,
        .env = (const char *const *) self->set.env, .cwd = self->set.cwd,
        .stdin_fd = &self->in_fd, .stdout_fd = &self->out_fd
    };
    int rc = tr__proc_start (tr_actor_node (self->actor), &spec, s_on_exit, self, &self->proc);
    if (rc == TR_OK)
        tr_actor_info_add (self->actor, "port.starts", 1);
    if (rc)
        tr_log (TR_LOG_WARN, "port '%s': cannot start '%s': %s", self->name, argv [0],
                tr_strerror (rc));
    return rc;
}

//  Stops the process (SIGTERM, SIGKILL after stop_timeout, to its whole
//  group) unless it is gone already, and forgets it.
static void
s_stop (s_port_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->notify = false;               //  its end is ours: no notice
    pthread_mutex_unlock (&self->lock);
    s_close (&self->in_fd);
    s_close (&self->out_fd);
    if (self->proc) {
        tr__proc_stop (self->proc, self->set.stop_ms);
        tr__proc_destroy (&self->proc);
    }
}

//  --------------------------------------------------------------------------
//  Pipes

//  Writes to the process's stdin without dying of SIGPIPE when it has
//  closed it: the signal is blocked on this thread for the write, and one
//  raised by it is taken back. Returns write's result, errno kept.
static ssize_t
s_write (int fd, const void *data, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset (&pipe_set);
    sigaddset (&pipe_set, SIGPIPE);
    pthread_sigmask (SIG_BLOCK, &pipe_set, &old);
    sigpending (&pending);
    bool was_pending = sigismember (&pending, SIGPIPE);
    ssize_t n = write (fd, data, len);
    int error = errno;
    if (n < 0 && error == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait (&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    errno = error;
    return n;
}

//  Milliseconds to wait in poll until deadline_ns (0 once it has passed).
static int
s_wait_ms (int64_t deadline_ns)
{
    int64_t left = deadline_ns - tr__now_ns ();
    if (left <= 0)
        return 0;
    left = (left + 999999) / 1000000;
    return left > INT32_MAX? INT32_MAX: (int) left;
}

//  Reads what stdout holds into the buffer, up to `limit` bytes in all.
//  The buffer grows as output comes, so that an idle port costs little
//  whatever its max_output. Returns 1 when something was read, 0 when
//  nothing is there now, -1 at the end of the stream, TR_ETOOBIG past
//  the limit, TR_ENOMEM.
static int
s_read_some (s_port_t *self, size_t limit)
{
    size_t room = limit + 1 - self->len;
    size_t want = room < 65536? room: 65536;
    if (self->len + want > self->cap) {
        size_t cap = self->cap * 2 > self->len + want? self->cap * 2: self->len + want;
        cap = cap < limit + 1? cap: limit + 1;
        char *grown = (char *) realloc (self->buf, cap);
        if (!grown)
            return TR_ENOMEM;
        self->buf = grown;
        self->cap = cap;
    }
    ssize_t n = read (self->out_fd, self->buf + self->len, want);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR? 0: -1;
    if (n == 0)
        return -1;
    self->len += (size_t) n;
    return self->len > limit? TR_ETOOBIG: 1;
}

//  --------------------------------------------------------------------------
//  Input and answers

//  The body as the process's input: a string's bytes, or one line of
//  JSON for any other value (with a newline on stdin), or nothing.
//  *owned is what to free. TR_OK or TR_ENOMEM.
static int
s_input (const tr_msg_t *msg, bool newline, char **owned, const char **data, size_t *len)
{
    *owned = NULL;
    *data = "";
    *len = 0;
    if (tr_msg_size (msg) == 0)
        return TR_OK;
    if (tr_msg_str (msg, data, len) == TR_OK)
        return TR_OK;
    if (tr__json_from_msgpack (tr_msg_body (msg), tr_msg_size (msg), owned, len))
        return TR_ENOMEM;           //  bodies are checked msgpack: memory ran out
    if (newline) {
        char *grown = (char *) realloc (*owned, *len + 2);
        if (!grown) {
            free (*owned);
            return TR_ENOMEM;
        }
        *owned = grown;
        (*owned) [(*len)++] = '\n';
        (*owned) [*len] = 0;
    }
    *data = *owned;
    return TR_OK;
}

//  Answers an ask with the output: a string, or its JSON as msgpack.
//  Returns TR_OK, or TR_ECHILD when JSON was wanted and it is not JSON.
static int
s_answer (s_port_t *self, const tr_msg_t *msg, const char *text, size_t len)
{
    if (self->set.json_out) {
        char *data = NULL;
        size_t size = 0;
        tr__json_error_t err;
        if (tr__json_parse (text, len, &data, &size, &err)) {
            char where [160];
            tr_log (TR_LOG_WARN, "port '%s': output is not JSON: %s", self->name,
                    tr__json_error_format (&err, where, sizeof where));
            return TR_ECHILD;
        }
        if (tr_msg_kind (msg) == TR_KIND_ASK)
            tr_reply (msg, data, size);
        free (data);
        return TR_OK;
    }
    if (tr_msg_kind (msg) != TR_KIND_ASK)
        return TR_OK;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&pk, text, len);
    int rc = sb.data? tr_reply (msg, sb.data, sb.size): TR_ENOMEM;
    msgpack_sbuffer_destroy (&sb);
    return rc == TR_ENOMEM? TR_ENOMEM: TR_OK;
}

//  A failure of the agent: the asker gets `error`, and the handler fails
//  with the reason `text`, which a supervised actor's supervisor reports.
static int
s_fail (s_port_t *self, const tr_msg_t *msg, int error, const char *text)
{
    tr_log (TR_LOG_WARN, "port '%s': %s", self->name, text);
    tr_actor_info_add (self->actor, "port.failed", 1);
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        tr_reply_error (msg, error);
    if (self->actor->child)             //  supervised: this incarnation ends
        tr_actor_exit (self->actor, error, text);
    return error;
}

//  --------------------------------------------------------------------------
//  per_message

//  The command with {input} replaced by the input. NULL when out of memory.
static char **
s_fill (const s_port_t *self, const char *input, size_t input_len)
{
    size_t count = 0;
    while (self->set.argv [count])
        count++;
    char **argv = (char **) calloc (count + 1, sizeof (char *));
    for (size_t i = 0; argv && i < count; i++) {
        const char *from = self->set.argv [i];
        size_t size = strlen (from) + 1, at = 0;
        for (const char *p = from; (p = strstr (p, "{input}")); p += 7)
            size += input_len;
        if (!(argv [i] = (char *) malloc (size))) {
            s_strv_free (argv);
            return NULL;
        }
        for (const char *p; (p = strstr (from, "{input}")); from = p + 7) {
            memcpy (argv [i] + at, from, (size_t) (p - from));
            at += (size_t) (p - from);
            memcpy (argv [i] + at, input, input_len);
            at += input_len;
        }
        memcpy (argv [i] + at, from, strlen (from) + 1);
    }
    return argv;
}

typedef struct {
    const char *input;                  //  still to write
    size_t left;
    int64_t deadline_ns;
    bool eof;                           //  stdout ended
    int error;                          //  TR_ETIMEDOUT, TR_ETOOBIG, TR_ENOMEM
} s_run_t;

//  One turn of the run: writes what stdin takes, reads what stdout has.
static void
s_run_turn (s_port_t *self, s_run_t *run)
{
    struct pollfd fds [3] = {
        { .fd = self->wake_fd, .events = POLLIN },
        { .fd = self->out_fd, .events = POLLIN },
        { .fd = self->in_fd, .events = POLLOUT }
    };
    int rc = poll (fds, self->in_fd >= 0? 3: 2, s_wait_ms (run->deadline_ns));
    if (rc == 0 && s_wait_ms (run->deadline_ns) == 0)
        run->error = TR_ETIMEDOUT;
    if (rc <= 0)
        return;
    if (self->in_fd >= 0 && fds [2].revents) {
        ssize_t n = run->left? s_write (self->in_fd, run->input, run->left): 0;
        if (n > 0) {
            run->input += n;
            run->left -= (size_t) n;
        }
        if (run->left == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            s_close (&self->in_fd);     //  all written, or it stopped reading
    }
    if (fds [1].revents) {
        int got = s_read_some (self, self->set.max_output);
        if (got == TR_ETOOBIG || got == TR_ENOMEM)
            run->error = got;
        else
        if (got < 0)
            run->eof = true;
    }
}

//  Runs the process to its end: input written, output read to the end
//  of the stream, exit. Once it has exited, what stdout still holds is
//  read without waiting for the end of the stream (another process of
//  its group may keep the pipe open). Returns TR_OK or the error.
static int
s_run (s_port_t *self, s_run_t *run)
{
    if (run->left == 0)
        s_close (&self->in_fd);
    while (!run->error) {
        if (s_exited (self, NULL)) {
            int got;
            while ((got = s_read_some (self, self->set.max_output)) == 1)
                ;
            return got == TR_ETOOBIG || got == TR_ENOMEM? got: TR_OK;
        }
        if (run->eof) {
            //  Output is over: wait for the exit alone.
            struct pollfd fd = { .fd = self->wake_fd, .events = POLLIN };
            if (poll (&fd, 1, s_wait_ms (run->deadline_ns)) == 0
            &&  s_wait_ms (run->deadline_ns) == 0)
                run->error = TR_ETIMEDOUT;
        }
        else
            s_run_turn (self, run);
    }
    return run->error;
}

//  What the ended run means: TR_OK for exit status 0, else a failure.
static int
s_run_outcome (s_port_t *self, const tr_msg_t *msg, int rc, bool cut_short)
{
    char text [192];
    tr__proc_exit_t exit;
    if (rc == TR_ETIMEDOUT && cut_short) {
        //  The asker's deadline, not ours: not the agent's failure.
        tr_log (TR_LOG_DEBUG, "port '%s': ask deadline passed; process stopped", self->name);
        return TR_ETIMEDOUT;
    }
    if (rc == TR_ETIMEDOUT)
        snprintf (text, sizeof text, "process still running after %lld ms; stopped",
                  (long long) self->set.timeout_ms);
    else
    if (rc == TR_ETOOBIG)
        snprintf (text, sizeof text, "process wrote more than %zu bytes; stopped",
                  self->set.max_output);
    else
    if (rc == TR_ENOMEM)
        snprintf (text, sizeof text, "out of memory for the process's output; stopped");
    else
    if (s_exited (self, &exit) && !(exit.exited && exit.status == 0))
        snprintf (text, sizeof text, "process %s", exit.reason);
    else
        return TR_OK;
    return s_fail (self, msg, rc? rc: TR_ECHILD, text);
}

static int
s_handle_once (s_port_t *self, const tr_msg_t *msg)
{
    char *owned;
    const char *input;
    size_t input_len;
    if (s_input (msg, !self->set.argv_input, &owned, &input, &input_len))
        return -1;
    if (self->set.argv_input && memchr (input, 0, input_len)) {
        free (owned);
        tr_log (TR_LOG_INFO, "port '%s': a body with a NUL byte cannot be an argument",
                self->name);
        return tr_msg_kind (msg) == TR_KIND_ASK? (tr_reply_error (msg, TR_EINVAL), 0): 0;
    }
    char **argv = self->set.argv_input? s_fill (self, input, input_len): NULL;
    if (self->set.argv_input && !argv) {
        free (owned);
        return -1;
    }
    int rc = s_start (self, argv? argv: self->set.argv);
    s_strv_free (argv);
    if (rc) {
        free (owned);
        return s_fail (self, msg, rc, "process could not be started");
    }
    int64_t ask_ms = tr_msg_remaining_ms (msg);
    bool cut_short = ask_ms >= 0 && ask_ms < self->set.timeout_ms;
    s_run_t run = {
        .input = self->set.argv_input? "": input, .left = self->set.argv_input? 0: input_len,
        .deadline_ns = tr__deadline_after_ms (cut_short? ask_ms: self->set.timeout_ms)
    };
    rc = s_run (self, &run);
    free (owned);
    s_stop (self);
    rc = s_run_outcome (self, msg, rc, cut_short);
    if (rc == TR_ETIMEDOUT && cut_short) {
        if (tr_msg_kind (msg) == TR_KIND_ASK)
            tr_reply_error (msg, TR_ETIMEDOUT);
        return 0;
    }
    if (rc == TR_OK) {
        size_t len = self->len;
        while (self->set.trim && !self->set.json_out && len && self->buf [len - 1] == '\n')
            len -= len > 1 && self->buf [len - 2] == '\r'? 2: 1;
        rc = s_answer (self, msg, self->buf, len);
        if (rc == TR_ECHILD)
            rc = s_fail (self, msg, TR_ECHILD, "process output is not JSON");
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  json_lines

//  Reads one line (without its newline) into the front of the buffer, by
//  deadline_ns. Returns TR_OK with *line_len, TR_ETIMEDOUT, TR_ETOOBIG
//  (no newline within max_output bytes) or TR_ECHILD (stdout ended or
//  the process exited).
static int
s_read_line (s_port_t *self, int64_t deadline_ns, size_t *line_len)
{
    for (;;) {
        char *newline = (char *) memchr (self->buf, '\n', self->len);
        if (newline) {
            *line_len = (size_t) (newline - self->buf);
            return TR_OK;
        }
        if (self->len > self->set.max_output)
            return TR_ETOOBIG;
        struct pollfd fds [2] = {
            { .fd = self->out_fd, .events = POLLIN },
            { .fd = self->wake_fd, .events = POLLIN }
        };
        int rc = poll (fds, 2, s_wait_ms (deadline_ns));
        if (rc == 0 && s_wait_ms (deadline_ns) == 0)
            return TR_ETIMEDOUT;
        if (rc > 0 && fds [0].revents) {
            int got = s_read_some (self, self->set.max_output);
            if (got == TR_ETOOBIG)
                continue;               //  the newline may be in it
            if (got == TR_ENOMEM)
                return TR_ENOMEM;
            if (got < 0)
                return TR_ECHILD;
        }
        else
        if (rc > 0 && fds [1].revents && s_exited (self, NULL)) {
            //  Gone: what it wrote last is still worth a look.
            int got;
            while ((got = s_read_some (self, self->set.max_output)) == 1)
                ;
            if (!memchr (self->buf, '\n', self->len))
                return got == TR_ETOOBIG || got == TR_ENOMEM? got: TR_ECHILD;
        }
    }
}

//  Drops the first line_len + 1 bytes of the buffer.
static void
s_consume (s_port_t *self, size_t line_len)
{
    size_t used = line_len + 1;
    memmove (self->buf, self->buf + used, self->len - used);
    self->len -= used;
}

//  Why a json_lines exchange failed, in words.
static void
s_lines_reason (s_port_t *self, int rc, char *text, size_t size)
{
    tr__proc_exit_t exit;
    if (rc == TR_ETIMEDOUT)
        snprintf (text, size, "process did not answer within %lld ms",
                  (long long) self->set.timeout_ms);
    else
    if (rc == TR_ETOOBIG)
        snprintf (text, size, "process wrote a line longer than %zu bytes",
                  self->set.max_output);
    else
    if (rc == TR_ENOMEM)
        snprintf (text, size, "out of memory for the process's output");
    else {
        //  Its output ended: its exit, if it comes soon, says more.
        struct pollfd fd = { .fd = self->wake_fd, .events = POLLIN };
        if (!s_exited (self, NULL))
            poll (&fd, 1, 200);
        if (s_exited (self, &exit))
            snprintf (text, size, "process %s", exit.reason);
        else
            snprintf (text, size, "process closed its output");
    }
}

//  Reads and drops the answers owed to asks that gave up waiting. They
//  come in order, so all are due by the last one's deadline (its send
//  plus the timeout); past that the process is hung.
static int
s_lines_settle (s_port_t *self)
{
    while (self->owed) {
        size_t line_len;
        int rc = s_read_line (self, self->owed_by_ns, &line_len);
        if (rc)
            return rc;
        s_consume (self, line_len);
        self->owed--;
    }
    return TR_OK;
}

//  The request line: the body as JSON, with the id field set when there
//  is one (the body must then be a map), and a newline. TR_OK,
//  TR_EINVAL (not a map, with an id field) or TR_ENOMEM.
static int
s_lines_request (s_port_t *self, const tr_msg_t *msg, char **line, size_t *len)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    msgpack_object obj = { .type = MSGPACK_OBJECT_NIL };
    if (tr_msg_size (msg)
    &&  msgpack_unpack_next (&result, (const char *) tr_msg_body (msg), tr_msg_size (msg),
                             &offset) == MSGPACK_UNPACK_SUCCESS)
        obj = result.data;
    int rc = TR_OK;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    if (self->set.id_field && obj.type != MSGPACK_OBJECT_MAP)
        rc = TR_EINVAL;
    else
    if (self->set.id_field) {
        //  The map without any id field of its own, then the id.
        size_t key_len = strlen (self->set.id_field);
        uint32_t kept = 0;
        for (uint32_t i = 0; i < obj.via.map.size; i++) {
            msgpack_object *key = &obj.via.map.ptr [i].key;
            kept += !(key->type == MSGPACK_OBJECT_STR && key->via.str.size == key_len
                      && !memcmp (key->via.str.ptr, self->set.id_field, key_len));
        }
        msgpack_pack_map (&pk, kept + 1);
        for (uint32_t i = 0; i < obj.via.map.size; i++) {
            msgpack_object *key = &obj.via.map.ptr [i].key;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == key_len
            &&  !memcmp (key->via.str.ptr, self->set.id_field, key_len))
                continue;
            msgpack_pack_object (&pk, *key);
            msgpack_pack_object (&pk, obj.via.map.ptr [i].val);
        }
        msgpack_pack_str_with_body (&pk, self->set.id_field, key_len);
        msgpack_pack_uint64 (&pk, ++self->next_id);
    }
    else
        msgpack_pack_object (&pk, obj);
    msgpack_unpacked_destroy (&result);
    if (rc == TR_OK && (!sb.data || tr__json_from_msgpack (sb.data, sb.size, line, len)))
        rc = TR_ENOMEM;
    msgpack_sbuffer_destroy (&sb);
    if (rc == TR_OK) {
        char *grown = (char *) realloc (*line, *len + 2);
        if (!grown) {
            free (*line);
            return TR_ENOMEM;
        }
        *line = grown;
        (*line) [(*len)++] = '\n';
        (*line) [*len] = 0;
    }
    return rc;
}

//  Writes the whole request by deadline_ns. TR_OK, TR_ETIMEDOUT or
//  TR_ECHILD (stdin closed).
static int
s_lines_send (s_port_t *self, const char *line, size_t len, int64_t deadline_ns)
{
    while (len) {
        struct pollfd fd = { .fd = self->in_fd, .events = POLLOUT };
        int rc = poll (&fd, 1, s_wait_ms (deadline_ns));
        if (rc == 0 && s_wait_ms (deadline_ns) == 0)
            return TR_ETIMEDOUT;
        if (rc <= 0)
            continue;
        ssize_t n = s_write (self->in_fd, line, len);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return TR_ECHILD;
        if (n > 0) {
            line += n;
            len -= (size_t) n;
        }
    }
    return TR_OK;
}

//  With an id field: the response must be a map that carries our id.
static bool
s_lines_id_matches (s_port_t *self, const char *data, size_t size)
{
    tr__mp_t mp;
    uint32_t pairs;
    size_t key_len = strlen (self->set.id_field);
    tr__mp_init (&mp, data, size);
    if (tr__mp_map (&mp, &pairs))
        return false;
    while (pairs--) {
        const char *key;
        uint32_t len;
        uint64_t id;
        if (tr__mp_str (&mp, &key, &len))
            return false;
        if (len == key_len && !memcmp (key, self->set.id_field, len))
            return tr__mp_uint (&mp, &id) == 0 && id == self->next_id;
        if (tr__mp_skip (&mp, TR__JSON_MAX_DEPTH))
            return false;
    }
    return false;
}

//  Answers with the response line (checked as JSON, and its id).
static int
s_lines_answer (s_port_t *self, const tr_msg_t *msg, const char *text, size_t len)
{
    char *data = NULL;
    size_t size = 0;
    tr__json_error_t err;
    if (tr__json_parse (text, len, &data, &size, &err)) {
        char where [160], reason [256];
        snprintf (reason, sizeof reason, "process wrote a line that is not JSON (%s)",
                  tr__json_error_format (&err, where, sizeof where));
        return s_fail (self, msg, TR_ECHILD, reason);
    }
    if (self->set.id_field && !s_lines_id_matches (self, data, size)) {
        free (data);
        return s_fail (self, msg, TR_ECHILD, "process answered without the request's id");
    }
    int rc = TR_OK;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        rc = self->set.json_out? tr_reply (msg, data, size): s_answer (self, msg, text, len);
    free (data);
    return rc == TR_ENOMEM? -1: 0;
}

//  Before a request: a process (a new one after a failure of an actor
//  without supervisor), the answers still owed read and dropped, and
//  nothing written that nobody asked for. TR_OK, or the failure's
//  handler result (the asker has been answered).
static int
s_lines_ready (s_port_t *self, const tr_msg_t *msg)
{
    char reason [192];
    if (!self->proc && s_start (self, self->set.argv))
        return s_fail (self, msg, TR_ECHILD, "process could not be started");
    int rc = s_lines_settle (self);
    if (rc) {
        s_lines_reason (self, rc, reason, sizeof reason);
        s_stop (self);
        return s_fail (self, msg, rc, reason);
    }
    if (!s_exited (self, NULL))
        while (s_read_some (self, self->set.max_output) == 1)
            ;                           //  what it wrote unasked, if anything
    if (self->len) {
        s_stop (self);
        return s_fail (self, msg, TR_ECHILD, "process wrote output nobody asked for");
    }
    return TR_OK;
}

//  One request and its answer, within the timeout; the ask's deadline
//  may cut the wait short (then the answer is owed, not a failure).
static int
s_lines_exchange (s_port_t *self, const tr_msg_t *msg, const char *line, size_t len)
{
    int64_t ask_ms = tr_msg_remaining_ms (msg);
    bool cut_short = ask_ms >= 0 && ask_ms < self->set.timeout_ms;
    int64_t deadline = tr__deadline_after_ms (self->set.timeout_ms);
    int64_t ask_deadline = tr__deadline_after_ms (cut_short? ask_ms: self->set.timeout_ms);
    size_t line_len = 0;
    int rc = s_lines_send (self, line, len, deadline);
    if (rc == TR_OK)
        rc = s_read_line (self, ask_deadline, &line_len);
    if (rc == TR_ETIMEDOUT && cut_short && tr__now_ns () < deadline) {
        self->owed++;                   //  the asker gave up; the answer still comes
        self->owed_by_ns = deadline;
        if (tr_msg_kind (msg) == TR_KIND_ASK)
            tr_reply_error (msg, TR_ETIMEDOUT);
        return 0;
    }
    if (rc) {
        char reason [192];
        s_lines_reason (self, rc, reason, sizeof reason);
        s_stop (self);
        return s_fail (self, msg, rc, reason);
    }
    rc = s_lines_answer (self, msg, self->buf, line_len);
    if (rc == TR_ECHILD)
        s_stop (self);
    else
        s_consume (self, line_len);
    return rc;
}

static int
s_handle_lines (s_port_t *self, const tr_msg_t *msg)
{
    int rc = s_lines_ready (self, msg);
    if (rc)
        return rc;
    char *line = NULL;
    size_t len = 0;
    rc = s_lines_request (self, msg, &line, &len);
    if (rc == TR_EINVAL) {
        tr_log (TR_LOG_INFO, "port '%s': with id_field, a request must be a map", self->name);
        if (tr_msg_kind (msg) == TR_KIND_ASK)
            tr_reply_error (msg, TR_EINVAL);
        return 0;
    }
    if (rc)
        return -1;                      //  out of memory
    rc = s_lines_exchange (self, msg, line, len);
    free (line);
    return rc;
}

//  --------------------------------------------------------------------------
//  The behaviour

//  A notice that the process ended: a failure if it is about the process
//  that runs now (not one already stopped or replaced).
static int
s_notice (s_port_t *self, const tr_msg_t *msg, uint64_t proc_id)
{
    tr__proc_exit_t exit;
    pthread_mutex_lock (&self->lock);
    bool current = self->proc && self->proc_id == proc_id && self->exited;
    exit = self->exit;
    pthread_mutex_unlock (&self->lock);
    if (!current)
        return 0;
    char text [160];
    snprintf (text, sizeof text, "process %s while waiting for requests", exit.reason);
    s_stop (self);
    return s_fail (self, msg, TR_ECHILD, text);
}

static int
s_port_init (tr_actor_t *actor, void *arg, void **state_p)
{
    pthread_once (&s_secret_once, s_secret_init);
    s_port_t *self = (s_port_t *) calloc (1, sizeof *self);
    if (!self)
        return -1;
    self->actor = actor;
    self->name = tr_actor_name (actor);
    self->in_fd = self->out_fd = -1;
    pthread_mutex_init (&self->lock, NULL);
    self->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->wake_fd < 0) {
        s_port_free (self);
        return -1;
    }
    tr__cfg_t cfg;
    int rc = tr__cfg_open (&cfg, "port", self->name, (const tr_params_t *) arg);
    if (rc == 0)
        rc = s_port_configure (&self->set, &cfg);
    if (rc)
        tr__cfg_refuse (actor, &cfg);
    tr__cfg_close (&cfg);
    if (rc) {
        s_port_free (self);
        return -1;
    }
    self->cap = self->set.max_output < 4096? self->set.max_output + 1: 4096;
    if (!(self->buf = (char *) malloc (self->cap))) {
        s_port_free (self);
        return -1;
    }
    rc = self->set.mode == S_JSON_LINES? s_start (self, self->set.argv): TR_OK;
    if (rc) {
        char text [192];
        snprintf (text, sizeof text, "cannot start '%.100s': %s", self->set.argv [0],
                  tr_strerror (rc));
        tr_actor_exit (actor, rc, text);
        s_port_free (self);
        return -1;
    }
    *state_p = self;
    return 0;
}

static int
s_port_handle (tr_actor_t *actor, const tr_msg_t *msg, void *state)
{
    (void) actor;
    s_port_t *self = (s_port_t *) state;
    int kind = tr_msg_kind (msg);
    if (kind != TR_KIND_ASK && kind != TR_KIND_TELL)
        return 0;                       //  stray replies: nothing to do
    if (tr_msg_remaining_ms (msg) == 0) {
        //  The asker has given up already: no process is bothered.
        if (kind == TR_KIND_ASK)
            tr_reply_error (msg, TR_ETIMEDOUT);
        return 0;
    }
    uint64_t proc_id;
    if (s_notice_read (msg, &proc_id))
        return s_notice (self, msg, proc_id);
    tr_actor_info_add (self->actor, "port.messages", 1);
    int rc = self->set.mode == S_JSON_LINES? s_handle_lines (self, msg): s_handle_once (self, msg);
    if (rc && kind == TR_KIND_TELL)
        tr_log (TR_LOG_WARN, "port '%s': a tell failed: %s", self->name,
                tr_strerror (rc < -1? rc: TR_EHANDLER));
    return rc;
}

static void
s_port_terminate (tr_actor_t *actor, int reason, void *state)
{
    (void) actor; (void) reason;
    s_port_t *self = (s_port_t *) state;
    s_stop (self);
    s_port_free (self);
}

const tr_actor_type_t tr__port_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "port",
    .summary = "runs a command per message, or talks JSON lines with a long-lived process",
    .behaviour = { s_port_init, s_port_handle, s_port_terminate },
    .params = s_port_params,
    .check = s_port_check,
};
