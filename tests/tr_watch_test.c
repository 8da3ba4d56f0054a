/*  tr_watch_test.c - tests of the event sources (actors/tr_watch.c):
    file_watch and git_watch, started from tree files, on real files and
    real git repositories made in a temporary folder.

    file_watch: created, modified, moved, deleted in order; a burst of
    writes debounced to one event (and not without a debounce); recursive
    watching of new folders, a folder renamed inside the tree and removed;
    a file watched by itself, replaced by a rename as editors save; a
    watched folder deleted and made again; the glob, regex and events
    filters; routes (match, regex, glob, events; tells and asks, answers
    published, a missing actor counted); the kernel's queue overflowing
    (the overflow event, then every file told exactly once); events and a
    route crossing to another node through a real broker.
    git_watch: new commits in order with their fields; routes by subject
    and author; a force-push (rewind with base and commits dropped, then
    the new commits), a reset to an ancestor, the branch deleted and made
    again with more commits than max_commits (skipped); a repository made
    by create: true. Bad parameters of both, at load with positions and at
    start.
*/

#include "tr_test.h"
#include "tr_test_tree.h"
#include "tr_json.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>

static tr_node_t *s_node;
static tr_tree_t *s_tree;
static tr_sup_t *s_sup;
static char s_dir [64];                 //  the test's temporary folder

//  --------------------------------------------------------------------------
//  What the recorder actors got, in order

typedef struct {
    char *actor;
    char *topic;                        //  "" for a route's message
    bool ask;
    char *json;                         //  the event map
    char *event, *path, *from, *sha, *subject, *author, *to, *answer;
    int64_t count, dropped, skipped;
    bool dir, scan;
} s_rec_t;

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static s_rec_t *s_recs;
static size_t s_nrecs, s_caprecs;

//  The value under key of a map body: its msgpack bytes.
static int
s_field (const void *body, size_t size, const char *key, const uint8_t **value,
         size_t *value_size)
{
    tr__mp_t mp;
    uint32_t pairs;
    tr__mp_init (&mp, body, size);
    if (tr__mp_map (&mp, &pairs))
        return -1;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t len;
        if (tr__mp_str (&mp, &k, &len))
            return -1;
        const uint8_t *start = mp.p;
        if (tr__mp_skip (&mp, 32))
            return -1;
        if (len == strlen (key) && memcmp (k, key, len) == 0) {
            *value = start;
            *value_size = (size_t) (mp.p - start);
            return 0;
        }
    }
    return -1;
}

static char *
s_field_str (const void *body, size_t size, const char *key)
{
    const uint8_t *value;
    size_t value_size;
    if (s_field (body, size, key, &value, &value_size))
        return NULL;
    tr__mp_t mp;
    const char *text;
    uint32_t len;
    tr__mp_init (&mp, value, value_size);
    if (tr__mp_str (&mp, &text, &len))
        return NULL;
    return strndup (text, len);
}

static int64_t
s_field_int (const void *body, size_t size, const char *key)
{
    const uint8_t *value;
    size_t value_size;
    int64_t v = -1;
    if (s_field (body, size, key, &value, &value_size) == 0) {
        tr__mp_t mp;
        tr__mp_init (&mp, value, value_size);
        if (tr__mp_int (&mp, &v))
            v = -1;
    }
    return v;
}

static bool
s_field_true (const void *body, size_t size, const char *key)
{
    const uint8_t *value;
    size_t value_size;
    return s_field (body, size, key, &value, &value_size) == 0 && value_size == 1
        && value [0] == 0xc3;
}

//  The recorder: records each message (an event [topic, map] from the
//  bus, or a map from a route); answers asks "ok".
static int
s_recorder_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    (void) state;
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t size = tr_msg_size (msg);
    s_rec_t rec = { .actor = strdup (tr_actor_name (self)), .ask = tr_msg_kind (msg) == TR_KIND_ASK };
    tr__mp_t mp;
    uint32_t n;
    tr__mp_init (&mp, body, size);
    if (tr__mp_array (&mp, &n) == 0 && n == 2) {
        const char *topic;
        uint32_t len;
        ck_assert_int_eq (tr__mp_str (&mp, &topic, &len), 0);
        rec.topic = strndup (topic, len);
        size = (size_t) (mp.end - mp.p);
        body = mp.p;
    }
    else
        rec.topic = strdup ("");
    size_t len;
    ck_assert_int_eq (tr__json_from_msgpack (body, size, &rec.json, &len), 0);
    rec.event = s_field_str (body, size, "event");
    rec.path = s_field_str (body, size, "path");
    rec.from = s_field_str (body, size, "from");
    rec.sha = s_field_str (body, size, "sha");
    rec.subject = s_field_str (body, size, "subject");
    rec.author = s_field_str (body, size, "author");
    rec.to = s_field_str (body, size, "to");
    rec.answer = s_field_str (body, size, "answer");
    rec.count = s_field_int (body, size, "count");
    rec.dropped = s_field_int (body, size, "dropped");
    rec.skipped = s_field_int (body, size, "skipped");
    rec.dir = s_field_true (body, size, "dir");
    rec.scan = s_field_true (body, size, "scan");
    pthread_mutex_lock (&s_lock);
    if (s_nrecs == s_caprecs) {
        s_caprecs = s_caprecs? s_caprecs * 2: 256;
        s_recs = (s_rec_t *) realloc (s_recs, s_caprecs * sizeof *s_recs);
        ck_assert_ptr_nonnull (s_recs);
    }
    s_recs [s_nrecs++] = rec;
    pthread_mutex_unlock (&s_lock);
    if (tr_msg_kind (msg) == TR_KIND_ASK) {
        tr_body_t answer;
        tr_body_str (&answer, "ok", 2);
        return tr_reply (msg, answer.data, answer.size);
    }
    return 0;
}

static const tr_actor_type_t s_recorder_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "recorder",
    .summary = "records what it gets (watch tests)",
    .behaviour = { NULL, s_recorder_handle, NULL },
};

static void
s_recs_clear (void)
{
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nrecs; i++) {
        s_rec_t *r = &s_recs [i];
        free (r->actor); free (r->topic); free (r->json); free (r->event); free (r->path);
        free (r->from); free (r->sha); free (r->subject); free (r->author); free (r->to);
        free (r->answer);
    }
    free (s_recs);
    s_recs = NULL;
    s_nrecs = s_caprecs = 0;
    pthread_mutex_unlock (&s_lock);
}

//  A path relative to the test's folder.
static const char *
s_rel (const char *path)
{
    size_t n = strlen (s_dir);
    if (path && strncmp (path, s_dir, n) == 0 && path [n] == '/')
        return path + n + 1;
    return path? path: "-";
}

//  What `actor` got on topics starting with `prefix` ("" for a route's
//  messages only when route is true), one "EVENT PATH[/][<FROM]" or, for
//  git, "EVENT SUBJECT" item per message, joined by '|'.
static char *
s_summary (const char *actor, const char *prefix, bool route)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream (&out, &size);
    bool first = true;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nrecs; i++) {
        const s_rec_t *r = &s_recs [i];
        if (strcmp (r->actor, actor) != 0 || (route? r->topic [0] != '\0'
                                                  : strncmp (r->topic, prefix, strlen (prefix)) != 0))
            continue;
        const char *dot = strrchr (r->topic, '.');
        fprintf (f, "%s%s", first? "": "|", r->event? r->event: dot? dot + 1: r->topic);
        first = false;
        if (r->subject)
            fprintf (f, " %s", r->subject);
        else
        if (r->skipped >= 0)
            fprintf (f, " %lld", (long long) r->skipped);
        else
        if (r->dropped >= 0)
            fprintf (f, " dropped=%lld", (long long) r->dropped);
        else
        if (r->path)
            fprintf (f, " %s%s", s_rel (r->path), r->dir? "/": "");
        if (r->from && r->path)
            fprintf (f, "<%s", s_rel (r->from));
    }
    pthread_mutex_unlock (&s_lock);
    fclose (f);
    return out;
}

//  Waits until s_summary (...) is `expect`, then checks it is.
static void
s_expect (const char *actor, const char *prefix, bool route, const char *expect)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *got = s_summary (actor, prefix, route);
    while (strcmp (got, expect) != 0 && tr_test_now_ms () < deadline) {
        free (got);
        usleep (5000);
        got = s_summary (actor, prefix, route);
    }
    ck_assert_str_eq (got, expect);
    free (got);
}

//  Waits until actor's summary ends with `tail`.
static void
s_expect_tail (const char *actor, const char *prefix, const char *tail)
{
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *got = s_summary (actor, prefix, false);
    size_t n = strlen (tail);
    while ((strlen (got) < n || strcmp (got + strlen (got) - n, tail) != 0)
           && tr_test_now_ms () < deadline) {
        free (got);
        usleep (5000);
        got = s_summary (actor, prefix, false);
    }
    ck_assert_msg (strlen (got) >= n && strcmp (got + strlen (got) - n, tail) == 0,
                   "'%s' does not end with '%s'", got, tail);
    free (got);
}

//  The record `index` (from 0) that actor got on topic prefix, copied
//  into *out (strings shared: read under no lock only after the waits).
static const s_rec_t *
s_rec (const char *actor, const char *prefix, size_t index)
{
    const s_rec_t *found = NULL;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i < s_nrecs && !found; i++)
        if (strcmp (s_recs [i].actor, actor) == 0
        &&  strncmp (s_recs [i].topic, prefix, strlen (prefix)) == 0 && index-- == 0)
            found = &s_recs [i];
    pthread_mutex_unlock (&s_lock);
    return found;
}

//  --------------------------------------------------------------------------
//  Files and commands

static void __attribute__ ((format (printf, 1, 2)))
s_sh (const char *format, ...)
{
    char command [2048];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    int rc = system (command);
    ck_assert_msg (rc == 0, "'%s' exited %d", command, rc);
}

//  The output of a command, first line (a sha), in a static buffer.
static const char * __attribute__ ((format (printf, 1, 2)))
s_sh_out (const char *format, ...)
{
    static char line [256];
    char command [2048];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    FILE *p = popen (command, "r");
    ck_assert_ptr_nonnull (p);
    line [0] = '\0';
    ck_assert_ptr_nonnull (fgets (line, sizeof line, p));
    ck_assert_int_eq (pclose (p), 0);
    line [strcspn (line, "\n")] = '\0';
    return line;
}

//  Writes text to s_dir/rel (O_APPEND with append).
static void
s_write (const char *rel, const char *text, bool append)
{
    char path [512];
    snprintf (path, sizeof path, "%s/%s", s_dir, rel);
    int fd = open (path, O_WRONLY | O_CREAT | (append? O_APPEND: O_TRUNC), 0644);
    ck_assert_msg (fd >= 0, "open %s: %s", path, strerror (errno));
    ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
}

static char *
s_path (const char *rel)
{
    static char path [4] [512];
    static int next;
    char *p = path [next++ % 4];
    snprintf (p, 512, "%s/%s", s_dir, rel);
    return p;
}

//  git with a fixed author and committer (and dates), in folder rel.
#define S_GIT "GIT_CONFIG_NOSYSTEM=1 HOME=%s GIT_AUTHOR_DATE='@%d +0000' " \
              "GIT_COMMITTER_DATE='@%d +0000' GIT_COMMITTER_NAME=Tester " \
              "GIT_COMMITTER_EMAIL=t@example.org git -C %s/%s -c commit.gpgsign=false "

static int s_clock = 1700000000;

static void
s_commit (const char *repo, const char *author, const char *subject)
{
    s_clock += 60;
    s_sh (S_GIT "-c user.name='%s' -c user.email='%s@example.org' commit --quiet "
          "--allow-empty -m '%s' -m 'body of %s'",
          s_dir, s_clock, s_clock, s_dir, repo, author, author, subject, subject);
}

static void
s_git (const char *repo, const char *args)
{
    s_sh (S_GIT "%s", s_dir, s_clock, s_clock, s_dir, repo, args);
}

static const char *
s_head (const char *repo)
{
    return s_sh_out ("git -C %s/%s rev-parse HEAD", s_dir, repo);
}

//  --------------------------------------------------------------------------
//  Fixture

static void
s_setup (void)
{
    tr_test_setup (&s_node, (const tr_actor_type_t *[]) { &s_recorder_type, NULL });
    snprintf (s_dir, sizeof s_dir, "/tmp/tr_watch_test.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    tr_test_teardown (&s_node, &s_tree, &s_sup);
    s_recs_clear ();
    s_sh ("rm -rf %s", s_dir);
}

//  Starts a tree from a format with %s for the folder (any number).
static void __attribute__ ((format (printf, 1, 2)))
s_start (const char *format, ...)
{
    char yaml [8192];
    va_list args;
    va_start (args, format);
    vsnprintf (yaml, sizeof yaml, format, args);
    va_end (args);
    tr_test_tree_start (s_node, yaml, "watch.yaml", &s_tree, &s_sup);
}

//  Subscribes a recorder named `name` (made here) to prefix.
static void
s_subscribe (const char *name, const char *prefix, size_t capacity)
{
    tr_spawn_opts_t opts = { .capacity = capacity };
    ck_assert_int_eq (tr_spawn (s_node, name, &s_recorder_type.behaviour, NULL, &opts, NULL),
                      TR_OK);
    ck_assert_int_eq (tr_event_subscribe (s_node, prefix, name), TR_OK);
}

//  Asks the watch for its status (as JSON); answering it, a file watch
//  reads its queue first.
static char *
s_status (const char *watch)
{
    char *json = NULL;
    ck_assert_int_eq (tr_test_ask_json (s_node, watch, "status", 5000 * tr_test_slowdown (),
                                        &json), TR_OK);
    return json;
}

//  --------------------------------------------------------------------------
//  file_watch

START_TEST (test_file_events_in_order)
{
    s_subscribe ("sub", "file.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s], debounce: 30ms, poll: 10ms}}\n",
             s_dir);
    s_write ("a.txt", "hello\n", false);
    s_expect ("sub", "file.", false, "created a.txt");
    s_write ("a.txt", "more\n", true);
    s_expect ("sub", "file.", false, "created a.txt|modified a.txt");
    ck_assert_int_eq (rename (s_path ("a.txt"), s_path ("b.txt")), 0);
    ck_assert_int_eq (mkdir (s_path ("d"), 0755), 0);
    ck_assert_int_eq (unlink (s_path ("b.txt")), 0);
    ck_assert_int_eq (rmdir (s_path ("d")), 0);
    s_expect ("sub", "file.", false, "created a.txt|modified a.txt|moved b.txt<a.txt|created d/"
              "|deleted b.txt|deleted d/");
    //  The event's map, as the bus carries it.
    const s_rec_t *r = s_rec ("sub", "file.", 0);
    ck_assert_str_eq (r->topic, "file.created");
    ck_assert_msg (strstr (r->json, "{\"watch\":\"w\",\"event\":\"created\",\"path\":\""),
                   "%s", r->json);
    ck_assert_msg (strstr (r->json, "\"dir\":false,\"time\":"), "%s", r->json);
    ck_assert_int_ge (tr_test_info (s_node, "w", "watch.published"), 6);
}
END_TEST

//  Writes `count` times to rel, each an open, a write and a close.
static void
s_burst (const char *rel, int count)
{
    for (int i = 0; i < count; i++)
        s_write (rel, "x", true);
}

START_TEST (test_file_debounce)
{
    s_subscribe ("sub", "file.", 0);
    s_subscribe ("raw", "raw.", 0);
    int debounce = 300 * tr_test_slowdown ();
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s], debounce: %d, poll: 10ms}}\n"
             "  - {name: w0, actor: file_watch, params: {paths: [%s], debounce: 0, poll: 10ms,"
             " topic: raw}}\n", s_dir, debounce, s_dir);
    //  A creation and 50 writes: one event, that counts them all (the
    //  creation, and each write's IN_MODIFY and IN_CLOSE_WRITE).
    s_burst ("c.txt", 50);
    s_expect ("sub", "file.", false, "created c.txt");
    const s_rec_t *r = s_rec ("sub", "file.", 0);
    ck_assert_int_eq (r->count, 101);
    //  Another burst: one modification.
    s_burst ("c.txt", 30);
    s_expect ("sub", "file.", false, "created c.txt|modified c.txt");
    ck_assert_int_eq (s_rec ("sub", "file.", 1)->count, 60);
    ck_assert_int_eq (tr_test_info (s_node, "w", "watch.coalesced"), 100 + 59);
    //  Without a debounce, every write is its own event.
    s_expect_tail ("raw", "raw.", "modified c.txt");
    char *raw = s_summary ("raw", "raw.", false);
    size_t events = 1;
    for (const char *p = raw; (p = strchr (p, '|')); p++)
        events++;
    ck_assert_msg (events == 161, "%zu raw events: %.200s", events, raw);
    ck_assert_msg (strncmp (raw, "created c.txt|modified c.txt|modified c.txt", 43) == 0,
                   "%.200s", raw);
    free (raw);
}
END_TEST

START_TEST (test_file_recursive)
{
    s_subscribe ("sub", "file.", 0);
    s_subscribe ("flat", "flat.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s], recursive: true,"
             " debounce: 20ms, poll: 10ms}}\n"
             "  - {name: f, actor: file_watch, params: {paths: [%s], events: [created],"
             " debounce: 20ms, poll: 10ms, topic: flat}}\n", s_dir, s_dir);
    s_sh ("mkdir -p %s/sub/deep && echo x > %s/sub/deep/x.md", s_dir, s_dir);
    s_expect ("sub", "file.", false, "created sub/|created sub/deep/|created sub/deep/x.md");
    //  A folder renamed inside the tree keeps being watched, under its
    //  new name.
    ck_assert_int_eq (rename (s_path ("sub"), s_path ("sub2")), 0);
    s_expect_tail ("sub", "file.", "moved sub2/<sub");
    s_write ("sub2/deep/y.md", "y", false);
    s_expect_tail ("sub", "file.", "created sub2/deep/y.md");
    //  Removed: what was in it, deepest first, then itself.
    s_sh ("rm -rf %s/sub2", s_dir);
    s_expect_tail ("sub", "file.", "deleted sub2/deep/|deleted sub2/");
    char *all = s_summary ("sub", "file.", false);
    ck_assert_msg (strstr (all, "deleted sub2/deep/x.md") && strstr (all, "deleted sub2/deep/y.md"),
                   "%s", all);
    free (all);
    //  Not recursive: the folder, not what is made inside it.
    s_expect ("flat", "flat.", false, "created sub/");
}
END_TEST

START_TEST (test_file_by_itself)
{
    s_write ("config.yaml", "a: 1\n", false);
    s_subscribe ("sub", "file.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s/config.yaml], debounce: 20ms,"
             " poll: 10ms}}\n", s_dir);
    s_write ("config.yaml", "b: 2\n", true);
    s_expect ("sub", "file.", false, "modified config.yaml");
    //  Saved as editors do: written aside, renamed over it.
    s_write ("config.yaml.tmp", "c: 3\n", false);
    ck_assert_int_eq (rename (s_path ("config.yaml.tmp"), s_path ("config.yaml")), 0);
    s_write ("other.txt", "not watched\n", false);
    s_expect ("sub", "file.", false, "modified config.yaml|modified config.yaml");
    ck_assert_int_eq (unlink (s_path ("config.yaml")), 0);
    s_expect_tail ("sub", "file.", "deleted config.yaml");
    s_write ("config.yaml", "d: 4\n", false);
    s_expect ("sub", "file.", false, "modified config.yaml|modified config.yaml"
              "|deleted config.yaml|created config.yaml");
}
END_TEST

START_TEST (test_file_root_deleted_and_back)
{
    s_sh ("mkdir %s/root && echo a > %s/root/a", s_dir, s_dir);
    s_subscribe ("sub", "file.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s/root], debounce: 20ms,"
             " poll: 10ms}}\n", s_dir);
    s_sh ("rm -rf %s/root", s_dir);
    s_expect ("sub", "file.", false, "deleted root/a|deleted root/");
    char *status = s_status ("w");
    ck_assert_msg (strstr (status, "\"present\":false"), "%s", status);
    free (status);
    //  Made again: found by the next poll, scanned, and watched again.
    s_sh ("mkdir %s/root && echo b > %s/root/b", s_dir, s_dir);
    s_expect ("sub", "file.", false, "deleted root/a|deleted root/|created root/|created root/b");
    ck_assert (s_rec ("sub", "file.", 2)->scan);
    s_write ("root/c", "c", false);
    s_expect_tail ("sub", "file.", "created root/c");
    status = s_status ("w");
    ck_assert_msg (strstr (status, "\"present\":true"), "%s", status);
    free (status);
}
END_TEST

START_TEST (test_file_filters_and_routes)
{
    ck_assert_int_eq (mkdir (s_path ("notes"), 0755), 0);
    s_subscribe ("sub", "file.", 0);
    s_subscribe ("src", "src.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: r_notes, actor: recorder}\n"
             "  - {name: r_drafts, actor: recorder}\n"
             "  - {name: r_asked, actor: recorder}\n"
             "  - name: w\n"
             "    actor: file_watch\n"
             "    params:\n"
             "      paths: [%s]\n"
             "      recursive: true\n"
             "      glob: '*.md'\n"
             "      events: [created, deleted]\n"
             "      debounce: 20ms\n"
             "      poll: 10ms\n"
             "      routes:\n"
             "        - {regex: '/notes/', to: r_notes}\n"
             "        - {match: draft, to: r_drafts, events: [created]}\n"
             "        - {to: r_asked, ask: true, events: [deleted], timeout: 2s}\n"
             "        - {glob: 'draft*', to: nobody, events: [deleted]}\n"
             "  - {name: c, actor: file_watch, params: {paths: [%s], regex: '\\.c$', poll: 10ms,"
             " recursive: true, topic: src}}\n", s_dir, s_dir);
    s_write ("notes/a.md", "a", false);
    s_write ("b.txt", "b", false);
    s_write ("draft.md", "d", false);
    s_write ("main.c", "int x;", false);
    s_expect ("sub", "file.", false, "created notes/a.md|created draft.md");
    ck_assert_int_eq (unlink (s_path ("draft.md")), 0);
    s_expect ("sub", "file.", false, "created notes/a.md|created draft.md|deleted draft.md"
              "|answered");
    s_expect ("r_notes", "", true, "created notes/a.md");
    s_expect ("r_drafts", "", true, "created draft.md");
    s_expect ("r_asked", "", true, "deleted draft.md");
    ck_assert (s_rec ("r_asked", "", 0)->ask);
    s_expect ("src", "src.", false, "created main.c");
    //  The answer to the ask, with its event.
    const s_rec_t *answered = s_rec ("sub", "file.", 3);
    ck_assert_str_eq (answered->topic, "file.answered");
    ck_assert_str_eq (answered->to, "r_asked");
    ck_assert_str_eq (answered->answer, "ok");
    ck_assert_msg (strstr (answered->json, "\"event\":{\"watch\":\"w\",\"event\":\"deleted\""),
                   "%s", answered->json);
    //  The route to no actor: logged and counted, the others unharmed.
    ck_assert_int_eq (tr_test_info (s_node, "w", "watch.route_failed"), 1);
    ck_assert_int_eq (tr_test_info (s_node, "w", "watch.routed"), 3);
    ck_assert_int_eq (tr_test_info (s_node, "w", "watch.answered"), 1);
}
END_TEST

START_TEST (test_file_overflow)
{
    //  More events than the kernel queues for one inotify instance:
    //  each file made costs two (IN_CREATE, IN_CLOSE_WRITE).
    long max = atol (s_sh_out ("cat /proc/sys/fs/inotify/max_queued_events"));
    if (max <= 0 || max > 60000) {
        fprintf (stderr, "tr_watch_test: fs.inotify.max_queued_events is %ld: the overflow "
                 "is not tested here\n", max);
        return;
    }
    int files = (int) max / 2 + 1000;
    s_subscribe ("sub", "file.", (size_t) files * 2 + 1000);
    //  A long poll, so that the queue fills up before it is read.
    s_start ("name: t\nchildren:\n"
             "  - {name: w, actor: file_watch, params: {paths: [%s], debounce: 20ms, poll: 10s}}\n",
             s_dir);
    for (int i = 0; i < files; i++) {
        char rel [32];
        snprintf (rel, sizeof rel, "f%05d", i);
        int fd = open (s_path (rel), O_WRONLY | O_CREAT, 0644);
        ck_assert_int_ge (fd, 0);
        close (fd);
    }
    //  Read now (a tell reads the queue), then again once held events
    //  are due.
    ck_assert_int_eq (tr_tell (s_node, "w", "\xa4poll", 5, NULL), TR_OK);
    int64_t deadline = tr_test_now_ms () + 20000 * tr_test_slowdown ();
    size_t got = 0;
    while (tr_test_now_ms () < deadline) {
        usleep (50 * 1000);
        ck_assert_int_eq (tr_tell (s_node, "w", "\xa4poll", 5, NULL), TR_OK);
        pthread_mutex_lock (&s_lock);
        got = s_nrecs;
        pthread_mutex_unlock (&s_lock);
        if (got >= (size_t) files + 1)
            break;
    }
    //  One overflow, and every file created exactly once.
    usleep (200 * 1000);
    pthread_mutex_lock (&s_lock);
    size_t overflows = 0, created = 0, other = 0;
    char *seen = (char *) calloc ((size_t) files, 1);
    for (size_t i = 0; i < s_nrecs; i++) {
        const s_rec_t *r = &s_recs [i];
        if (strcmp (r->topic, "file.overflow") == 0)
            overflows++;
        else
        if (strcmp (r->topic, "file.created") == 0 && strncmp (s_rel (r->path), "f", 1) == 0) {
            int k = atoi (s_rel (r->path) + 1);
            ck_assert_msg (!seen [k], "%s told twice", r->path);
            seen [k] = 1;
            created++;
        }
        else
            other++;
    }
    pthread_mutex_unlock (&s_lock);
    free (seen);
    ck_assert_uint_eq (overflows, 1);
    ck_assert_uint_eq (created, (size_t) files);
    ck_assert_uint_eq (other, 0);
    ck_assert_int_eq (tr_test_info (s_node, "w", "watch.overflows"), 1);
}
END_TEST

START_TEST (test_file_from_c)
{
    //  Spawned from C with its parameters (msgpack), without a tree file:
    //  the same checks at start, and the same events.
    const tr_actor_type_t *type = tr_actor_type_find ("file_watch");
    ck_assert_ptr_nonnull (type);
    char *json = NULL;
    char text [256];
    snprintf (text, sizeof text, "{\"paths\": [\"%s/nope\"]}", s_dir);
    size_t size = 0;
    ck_assert_int_eq (tr__json_parse (text, strlen (text), &json, &size, NULL), 0);
    tr_params_t params = { (const uint8_t *) json, size };
    ck_assert_int_eq (tr_spawn (s_node, "w", &type->behaviour, &params, NULL, NULL), TR_EINIT);
    free (json);
    snprintf (text, sizeof text, "{\"paths\": [\"%s\"], \"debounce\": 0, \"poll\": 5}", s_dir);
    ck_assert_int_eq (tr__json_parse (text, strlen (text), &json, &size, NULL), 0);
    params = (tr_params_t) { (const uint8_t *) json, size };
    s_subscribe ("sub", "file.", 0);
    ck_assert_int_eq (tr_spawn (s_node, "w", &type->behaviour, &params, NULL, NULL), TR_OK);
    ck_assert_int_eq (mkdir (s_path ("made"), 0755), 0);
    s_expect ("sub", "file.", false, "created made/");
    ck_assert_int_eq (tr_actor_stop (s_node, "w", 5000), TR_OK);
    free (json);                        //  the params outlive the actor
}
END_TEST

START_TEST (test_file_remote)
{
    //  The events cross to another node through a real broker, and a
    //  route reaches an actor there by name.
    tr_test_remote_t r;
    tr_test_remote_start (&r);
    ck_assert_int_eq (tr_spawn (r.b, "far_sub", &s_recorder_type.behaviour, NULL, NULL, NULL),
                      TR_OK);
    ck_assert_int_eq (tr_spawn (r.b, "far_route", &s_recorder_type.behaviour, NULL, NULL, NULL),
                      TR_OK);
    ck_assert_int_eq (tr_event_subscribe (r.b, "file.", "far_sub"), TR_OK);
    char yaml [1024];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n"
              "  - {name: w, actor: file_watch, params: {paths: [%s], debounce: 20ms, poll: 10ms,"
              " routes: [{to: far_route}]}}\n", s_dir);
    tr_test_tree_start (r.a, yaml, "watch.yaml", &s_tree, &s_sup);
    //  Until the subscription and the name have reached the broker.
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    int i = 0;
    char *got = s_summary ("far_sub", "file.", false);
    while (!strstr (got, "created") && tr_test_now_ms () < deadline) {
        char rel [32];
        snprintf (rel, sizeof rel, "probe%d", i++);
        s_write (rel, "x", false);
        usleep (100 * 1000);
        free (got);
        got = s_summary ("far_sub", "file.", false);
    }
    free (got);
    s_write ("z.txt", "z", false);
    s_expect_tail ("far_sub", "file.", "created z.txt");
    deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    got = s_summary ("far_route", "", true);
    while (!strstr (got, "created z.txt") && tr_test_now_ms () < deadline) {
        usleep (5000);
        free (got);
        got = s_summary ("far_route", "", true);
    }
    ck_assert_msg (strstr (got, "created z.txt"), "%s", got);
    free (got);
    tr_test_tree_stop (&s_tree, &s_sup);
    tr_test_remote_stop (&r);
}
END_TEST

//  --------------------------------------------------------------------------
//  git_watch

START_TEST (test_git_commits_in_order)
{
    s_sh ("git init --quiet --initial-branch=main %s/repo", s_dir);
    s_commit ("repo", "Ada", "start");
    s_subscribe ("sub", "git.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: fixer, actor: recorder}\n"
             "  - {name: grace, actor: recorder}\n"
             "  - name: g\n"
             "    actor: git_watch\n"
             "    params:\n"
             "      repo: %s/repo\n"
             "      branch: main\n"
             "      interval: 20ms\n"
             "      routes:\n"
             "        - {regex: '^fix', field: subject, to: fixer}\n"
             "        - {match: Grace, field: author, to: grace}\n", s_dir);
    //  Three commits at once, then one more: each told once, in order.
    s_commit ("repo", "Ada", "fix: a");
    s_commit ("repo", "Grace", "feat: b");
    s_commit ("repo", "Grace", "fix: c");
    char sha [64];
    snprintf (sha, sizeof sha, "%s", s_head ("repo"));
    s_expect ("sub", "git.", false, "commit fix: a|commit feat: b|commit fix: c");
    s_commit ("repo", "Ada", "docs: d");
    s_expect ("sub", "git.", false, "commit fix: a|commit feat: b|commit fix: c|commit docs: d");
    const s_rec_t *r = s_rec ("sub", "git.", 2);
    ck_assert_str_eq (r->topic, "git.commit");
    ck_assert_str_eq (r->sha, sha);
    ck_assert_str_eq (r->author, "Grace");
    char expect [512];
    snprintf (expect, sizeof expect, "{\"watch\":\"g\",\"event\":\"commit\",\"repo\":\"%s/repo\","
              "\"branch\":\"main\",\"sha\":\"%s\",\"parents\":[\"", s_dir, sha);
    ck_assert_msg (strncmp (r->json, expect, strlen (expect)) == 0, "%s", r->json);
    snprintf (expect, sizeof expect, "\"author\":\"Grace\",\"email\":\"Grace@example.org\","
              "\"time\":%d,\"subject\":\"fix: c\",\"message\":\"fix: c\\n\\nbody of fix: c\"}",
              s_clock - 60);
    ck_assert_msg (strstr (r->json, expect), "%s\nlacks %s", r->json, expect);
    //  Routes by subject and by author.
    s_expect ("fixer", "", true, "commit fix: a|commit fix: c");
    s_expect ("grace", "", true, "commit feat: b|commit fix: c");
    ck_assert_int_eq (tr_test_info (s_node, "g", "git.commits"), 4);
    char *status = s_status ("g");
    char head [128];
    snprintf (head, sizeof head, "\"head\":\"%s\"", s_head ("repo"));
    ck_assert_msg (strstr (status, head) && strstr (status, "\"error\":null"), "%s", status);
    free (status);
}
END_TEST

START_TEST (test_git_force_push)
{
    //  A bare repository that a clone pushes to, as a server's would be.
    s_sh ("git init --quiet --bare --initial-branch=main %s/origin.git", s_dir);
    s_sh ("git init --quiet --initial-branch=main %s/work", s_dir);
    s_git ("work", "remote add origin ../origin.git");
    s_commit ("work", "Ada", "one");
    s_git ("work", "push --quiet origin main");
    char base [64];
    snprintf (base, sizeof base, "%s", s_head ("work"));
    s_subscribe ("sub", "git.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: g, actor: git_watch, params: {repo: %s/origin.git, branch: main,"
             " interval: 20ms, max_commits: 2}}\n", s_dir);
    s_commit ("work", "Ada", "two");
    s_commit ("work", "Ada", "three");
    s_git ("work", "push --quiet origin main");
    s_expect ("sub", "git.", false, "commit two|commit three");
    char old [64];
    snprintf (old, sizeof old, "%s", s_head ("work"));
    //  History rewritten and force-pushed: a rewind (two commits
    //  dropped since the base), then the new commit.
    s_git ("work", "reset --quiet --hard HEAD~2");
    s_commit ("work", "Ada", "two again");
    s_git ("work", "push --quiet --force origin main");
    s_expect ("sub", "git.", false, "commit two|commit three|rewind dropped=2|commit two again");
    const s_rec_t *r = s_rec ("sub", "git.", 2);
    char expect [512];
    snprintf (expect, sizeof expect, "\"from\":\"%s\",\"to\":\"%s\",\"base\":\"%s\","
              "\"dropped\":2}", old, s_head ("work"), base);
    ck_assert_msg (strstr (r->json, expect), "%s\nlacks %s", r->json, expect);
    //  Reset to an ancestor: a rewind, no new commit.
    s_git ("work", "reset --quiet --hard HEAD~1");
    s_git ("work", "push --quiet --force origin main");
    s_expect_tail ("sub", "git.", "commit two again|rewind dropped=1");
    //  The branch deleted, then pushed again with three commits more
    //  than it had: created, one skipped (max_commits: 2), two commits.
    s_git ("origin.git", "update-ref -d refs/heads/main");
    s_expect_tail ("sub", "git.", "rewind dropped=1|deleted");
    s_commit ("work", "Ada", "x");
    s_commit ("work", "Ada", "y");
    s_git ("work", "push --quiet origin main");
    s_expect_tail ("sub", "git.", "deleted|created|skipped 1|commit x|commit y");
    ck_assert_int_eq (tr_test_info (s_node, "g", "git.rewinds"), 2);
}
END_TEST

START_TEST (test_git_create)
{
    s_subscribe ("sub", "git.", 0);
    s_start ("name: t\nchildren:\n"
             "  - {name: g, actor: git_watch, params: {repo: %s/new/repo, branch: trunk,"
             " interval: 20ms, create: true}}\n", s_dir);
    struct stat st;
    ck_assert_int_eq (stat (s_path ("new/repo/.git"), &st), 0);
    s_commit ("new/repo", "Ada", "first");
    s_expect ("sub", "git.", false, "created|commit first");
    //  The repository removed under it (at once: moved away first, so
    //  that no look sees it half removed): an error, told once.
    s_sh ("mv %s/new/repo %s/new/gone && rm -rf %s/new/gone", s_dir, s_dir, s_dir);
    s_expect_tail ("sub", "git.", "commit first|error");
    usleep (100 * 1000);
    s_expect ("sub", "git.", false, "created|commit first|error");
    //  Its status has the latest error, which the interval repeats.
    int64_t deadline = tr_test_now_ms () + 5000 * tr_test_slowdown ();
    char *status = s_status ("g");
    while (!strstr (status, "does not exist (any more)") && tr_test_now_ms () < deadline) {
        free (status);
        usleep (10 * 1000);
        status = s_status ("g");
    }
    ck_assert_msg (strstr (status, "does not exist (any more)"), "%s", status);
    free (status);
    ck_assert_int_ge (tr_test_info (s_node, "g", "git.errors"), 2);
    //  Made again (elsewhere, then moved in place): read again. Its
    //  history is not the one seen: a rewind with no base, then its
    //  commit.
    s_sh ("git init --quiet --initial-branch=trunk %s/other", s_dir);
    s_commit ("other", "Ada", "second");
    s_sh ("mv %s/other %s/new/repo", s_dir, s_dir);
    s_expect ("sub", "git.", false, "created|commit first|error|rewind|commit second");
    ck_assert_msg (strstr (s_rec ("sub", "git.", 3)->json, "\"base\":null,\"dropped\":null"),
                   "%s", s_rec ("sub", "git.", 3)->json);
}
END_TEST

//  --------------------------------------------------------------------------
//  Bad parameters

//  Loads (and if it loads, starts) a tree with one child of type `type`
//  with these params; the loader's or the start's message must hold
//  `expect`.
static void
s_expect_error (const char *type, const char *params, const char *expect)
{
    char head [200];
    snprintf (head, sizeof head, "name: t\nchildren:\n  - name: w\n    actor: %s\n", type);
    tr_test_expect_params_error (s_node, "watch.yaml", head, params, expect, TR_TEST_PART);
}

START_TEST (test_bad_params)
{
    char p [600], e [600];
    s_expect_error ("file_watch", "{paths: x}",
                    "watch.yaml:5:21: parameter 'paths' of actor type 'file_watch' must be a sequence");
    s_expect_error ("file_watch", "{paths: []}",
                    "watch.yaml:5:21: w: 'paths' must be a list of at least one path");
    snprintf (p, sizeof p, "{paths: [%s, 3]}", s_dir);
    snprintf (e, sizeof e, "watch.yaml:5:%zu: w: 'paths' item 2 must be a path (a non-empty "
              "string), not an integer", 22 + strlen (s_dir) + 2);
    s_expect_error ("file_watch", p, e);
    snprintf (p, sizeof p, "{paths: [%s/nope]}", s_dir);
    snprintf (e, sizeof e, "watch.yaml:5:22: w: path '%s/nope' does not exist (create: true "
              "makes missing folders)", s_dir);
    s_expect_error ("file_watch", p, e);
    snprintf (p, sizeof p, "{paths: [%s, %s/]}", s_dir, s_dir);
    snprintf (e, sizeof e, "w: 'paths' names '%s' twice (items 1 and 2)", s_dir);
    s_expect_error ("file_watch", p, e);
    snprintf (p, sizeof p, "{paths: [%s], events: [created, changed]}", s_dir);
    s_expect_error ("file_watch", p, "w: 'events' item 2 must be one of created, modified, "
                    "deleted, moved, not 'changed'");
    snprintf (p, sizeof p, "{paths: [%s], regex: '[a'}", s_dir);
    s_expect_error ("file_watch", p, "w: 'regex' '[a' does not compile");
    snprintf (p, sizeof p, "{paths: [%s], poll: 0}", s_dir);
    s_expect_error ("file_watch", p, "w: 'poll' must be from 1 ms to 10000 ms, not 0 ms");
    snprintf (p, sizeof p, "{paths: [%s], topic: 'sys.x'}", s_dir);
    s_expect_error ("file_watch", p, "w: 'topic' 'sys.x' cannot be a topic");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{match: x}]}", s_dir);
    s_expect_error ("file_watch", p, "w: routes item 1 needs 'to', the actor that gets the events");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: a, match: x, glob: y}]}", s_dir);
    s_expect_error ("file_watch", p, "w: routes item 1 takes at most one of match, regex, glob");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: a, glob: y, field: path}]}", s_dir);
    s_expect_error ("file_watch", p, "'field' is only for match and regex (a glob is on the path)");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: a, events: [overflow, renamed]}]}", s_dir);
    s_expect_error ("file_watch", p, "w: routes item 1 'events' item 2 must be one of created, "
                    "modified, deleted, moved, overflow, error, not 'renamed'");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: a, timeout: 1s}]}", s_dir);
    s_expect_error ("file_watch", p, "w: routes item 1: 'timeout' is only for a route with ask: true");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: 'a b'}]}", s_dir);
    s_expect_error ("file_watch", p, "w: 'routes item 1 'to'' is not a valid actor name: 'a b'");
    snprintf (p, sizeof p, "{paths: [%s], routes: [{to: a, via: b}]}", s_dir);
    s_expect_error ("file_watch", p, "w: unknown key 'via' in routes item 1; expected one of: to, "
                    "match, regex, field, events, ask, timeout, glob");
    //  A nested mistake, at its own line and column.
    snprintf (p, sizeof p, "\n      paths: [%s]\n      routes:\n        - {to: a}\n"
              "        - {to: b, regex: '('}", s_dir);
    s_expect_error ("file_watch", p, "watch.yaml:9:26: w: routes item 2 'regex' '(' does not "
                    "compile");

    s_sh ("mkdir %s/plain && touch %s/plain/f && git init --quiet %s/repo", s_dir, s_dir, s_dir);
    snprintf (p, sizeof p, "{repo: %s/none, branch: main}", s_dir);
    snprintf (e, sizeof e, "watch.yaml:5:20: w: 'repo' '%s/none' does not exist (create: true "
              "makes a repository there)", s_dir);
    s_expect_error ("git_watch", p, e);
    snprintf (p, sizeof p, "{repo: %s/plain, branch: main}", s_dir);
    snprintf (e, sizeof e, "w: 'repo' '%s/plain' is not a git repository (it has no .git, and is "
              "not a bare repository)", s_dir);
    s_expect_error ("git_watch", p, e);
    snprintf (p, sizeof p, "{repo: %s/plain/f, branch: main}", s_dir);
    snprintf (e, sizeof e, "w: 'repo' '%s/plain/f' is not a folder", s_dir);
    s_expect_error ("git_watch", p, e);
    snprintf (p, sizeof p, "{repo: %s/repo}", s_dir);
    s_expect_error ("git_watch", p, "missing parameter 'branch' of actor type 'git_watch'");
    snprintf (p, sizeof p, "{repo: %s/repo, branch: 'a..b'}", s_dir);
    s_expect_error ("git_watch", p, "w: 'branch' 'a..b' is not a valid branch name");
    snprintf (p, sizeof p, "{repo: %s/repo, branch: main, interval: 1ms}", s_dir);
    s_expect_error ("git_watch", p, "w: 'interval' must be from 10 ms to 3600000 ms, not 1 ms");
    snprintf (p, sizeof p, "{repo: %s/repo, branch: main, max_commits: 0}", s_dir);
    s_expect_error ("git_watch", p, "w: 'max_commits' must be from 1 to 100000, not 0");
    snprintf (p, sizeof p, "{repo: %s/repo, branch: main, routes: [{to: a, glob: '*'}]}", s_dir);
    s_expect_error ("git_watch", p, "w: unknown key 'glob' in routes item 1; expected one of: to, "
                    "match, regex, field, events, ask, timeout");
    snprintf (p, sizeof p, "{repo: %s/repo, branch: main, routes: [{to: a, events: [push]}]}", s_dir);
    s_expect_error ("git_watch", p, "w: routes item 1 'events' item 1 must be one of commit, "
                    "rewind, created, deleted, skipped, error, not 'push'");
    //  What only the start can find: a .git that git cannot read, and a
    //  path removed between the load and the start.
    s_sh ("mkdir %s/broken && touch %s/broken/.git", s_dir, s_dir);
    snprintf (p, sizeof p, "{repo: %s/broken, branch: main}", s_dir);
    snprintf (e, sizeof e, "git_watch 'w': '%s/broken' is not a git repository that git can "
              "read: git rev-parse failed: it exited with status 128 (its message is in the "
              "log)", s_dir);
    s_expect_error ("git_watch", p, e);
    //  git not installed: troupe run with a PATH where git is not.
    char exe [512];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt (n, 0);
    exe [n] = '\0';
    *strrchr (exe, '/') = '\0';            //  build/tests -> build/troupe
    *strrchr (exe, '/') = '\0';
    FILE *tree = fopen (s_path ("git.yaml"), "w");
    ck_assert_ptr_nonnull (tree);
    fprintf (tree, "name: t\nchildren:\n"
             "  - {name: g, actor: git_watch, params: {repo: %s/repo, branch: main}}\n", s_dir);
    fclose (tree);
    const char *out = s_sh_out ("TROUPE_CONTROL_DIR=%s PATH=/nonexistent %s/troupe run %s 2>&1 "
                                "| grep '^troupe run:'; true", s_dir, exe, s_path ("git.yaml"));
    ck_assert_str_eq (out, "troupe run: tree 't' could not start: supervisor 't': child 'g' could "
                      "not start: git_watch 'g': cannot run git: git is not installed (not "
                      "found on PATH)");
    ck_assert_int_eq (mkdir (s_path ("gone"), 0755), 0);
    char yaml [600];
    snprintf (yaml, sizeof yaml, "name: t\nchildren:\n"
              "  - {name: w, actor: file_watch, params: {paths: [%s/gone]}}\n", s_dir);
    tr_tree_error_t err;
    ck_assert_int_eq (tr_tree_parse (yaml, strlen (yaml), "watch.yaml", &s_tree, &err), TR_OK);
    ck_assert_int_eq (rmdir (s_path ("gone")), 0);
    char *error = NULL;
    ck_assert_int_eq (tr_sup_start (s_node, s_tree->name, &s_tree->root, &s_sup, &error),
                      TR_ECHILD);
    snprintf (e, sizeof e, "file_watch 'w': path '%s/gone' does not exist", s_dir);
    ck_assert_msg (error && strstr (error, e), "got '%s'", error? error: "(none)");
    free (error);
}
END_TEST

static Suite *
s_suite (void)
{
    Suite *suite = suite_create ("tr_watch");
    TCase *tc = tcase_create ("watch");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 180);
    tcase_add_test (tc, test_file_events_in_order);
    tcase_add_test (tc, test_file_debounce);
    tcase_add_test (tc, test_file_recursive);
    tcase_add_test (tc, test_file_by_itself);
    tcase_add_test (tc, test_file_root_deleted_and_back);
    tcase_add_test (tc, test_file_filters_and_routes);
    tcase_add_test (tc, test_file_overflow);
    tcase_add_test (tc, test_file_from_c);
    tcase_add_test (tc, test_file_remote);
    tcase_add_test (tc, test_git_commits_in_order);
    tcase_add_test (tc, test_git_force_push);
    tcase_add_test (tc, test_git_create);
    tcase_add_test (tc, test_bad_params);
    suite_add_tcase (suite, tc);
    return suite;
}

TR_TEST_MAIN (s_suite)
