/*  tr_swarm.c - the swarm: ants that share a pheromone table in the
    scratchpad, and no coordinator (ant colony optimisation of a
    travelling salesman's tour).

    Each actor of type `ant` is one ant of a colony. The colony is a name
    (`colony`, a prefix of scratchpad keys); the ants that name it, in
    this process or any other joined to the same broker, are the colony.
    They never talk to each other: each reads and writes two keys of the
    scratchpad and publishes what it finds on the event bus.

        COLONY.tau    the pheromone table: a map {cities, instance,
                      updates, best, started, tau}, where tau holds one
                      float per edge of the complete graph (the upper
                      triangle of the symmetric matrix, row by row)
        COLONY.best   the shortest tour found so far: {length, tour, ant,
                      iteration, time, elapsed_ms, cities, instance,
                      history}, history being the improvements in order

    One iteration of an ant: read COLONY.tau (tr_scratch_get_async),
    build a tour city by city, choosing the next city j from i with
    probability proportional to tau(i,j)^alpha * (1/d(i,j))^beta, then
    write the table back with compare-and-set on the version it read
    (tr_scratch_cas_async): every edge evaporated by (1 - rho), the
    tour's edges reinforced by 1/length, each value kept within the
    MAX-MIN bounds [tmax / 2n, tmax] with tmax = 1 / (rho * best), and
    `updates` counted up. If another ant wrote first (TR_ECONFLICT), the
    ant reads the table again and applies the same tour's update to the
    newer table: no deposit is lost and none is applied twice. The
    compare-and-set makes the updates of the whole colony one sequence,
    so evaporation by update (rho per write) is the same everywhere
    without clocks; see docs/patterns.md for why this layout and rule.

    A tour shorter than the colony's best known to the ant is offered to
    COLONY.best, also by compare-and-set, and only if it is shorter than
    what is stored there: the key's successive values are each shorter
    than the one before. Each value won is published as `swarm.best`;
    an ant that has done its iterations publishes `swarm.done`, and one
    that cannot go on (another colony's table under its keys)
    `swarm.failed`.

    Nothing blocks the ant's thread: scratchpad calls are asynchronous,
    their outcomes come back as messages from the node's link thread;
    building a tour of at most 200 cities is the only work done in the
    handler (well under a millisecond for the small instances this is
    for). A watchdog timer ends a call whose outcome never arrives.

    Counters in status: swarm.iteration, swarm.updates, swarm.conflicts,
    swarm.best_conflicts, swarm.improved, swarm.dropped, swarm.requests,
    swarm.errors, swarm.done, swarm.failed.
*/

#include "tr_compose.h"
#include "tr_internal.h"
#include "tr_clock.h"
#include "troupe/tr_event.h"
#include "troupe/tr_log.h"
#include "troupe/tr_scratch.h"
#include "troupe/tr_send.h"
#include "troupe/tr_timer.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MIN_CITIES        3
#define S_MAX_CITIES        200
#define S_MAX_COORD         1e9
#define S_MAX_COLONY        1000        //  keys are at most 1,024 bytes
#define S_MAX_RETRIES       100         //  compare-and-set attempts for one tour
#define S_HISTORY           100         //  improvements kept in COLONY.best
#define S_WATCHDOG_MS       1000
#define S_BACKOFF_MIN_MS    100
#define S_BACKOFF_MAX_MS    2000

//  The pheromone pipeline's stage.
typedef enum {
    S_IDLE,                     //  waiting for the tick of the next iteration
    S_GET,                      //  reading COLONY.tau
    S_CAS,                      //  writing it back
    S_BACKOFF,                  //  waiting to try again after an error
    S_DONE,                     //  all iterations done
    S_FAILED,                   //  cannot go on (see failure)
    S_STOPPED                   //  the node is stopping
} s_stage_t;

//  Where a pipeline is: its stage (the best pipeline's are S_IDLE, S_GET,
//  S_CAS and S_BACKOFF), and its call in flight or its pause.
typedef struct {
    int stage;                  //  s_stage_t
    uint64_t wait;              //  the call in flight, or the tick expected
    int64_t since_ns;           //  when the call in flight was made
    int backoff_ms;             //  the last pause after an error (0: none yet)
} s_pipe_t;

typedef struct {
    tr_actor_t *self;
    tr_node_t *node;
    char *name;

    //  Settings
    size_t n;                   //  cities
    double *x, *y;
    double *dist;               //  n * n
    double *heur;               //  n * n: (1 / d)^beta
    uint64_t instance;          //  fingerprint of the cities
    double nn_length;           //  the nearest-neighbour tour from city 0
    char *colony;
    char *file;
    char *tau_key, *best_key;
    double alpha, beta, rho;
    int64_t iterations;
    int64_t seed;
    bool has_seed;
    int64_t interval_ms;
    int64_t timeout_ms;

    //  The pheromone pipeline
    s_pipe_t tau_pipe;
    uint64_t rng;
    uint64_t next_id;           //  ids of calls and ticks
    uint64_t watchdog;          //  its periodic timer
    double *tau;                //  the table as read: n (n - 1) / 2
    double *weight;             //  scratch space for one choice: n
    bool *visited;              //  n
    uint64_t version;           //  of the table read (0: none yet)
    uint64_t colony_updates;    //  `updates` of the table read
    double table_best;          //  `best` of the table read (DBL_MAX: none)
    int64_t started;            //  `started` of the table read (Unix ms)
    int *tour;                  //  this iteration's tour, kept across retries
    double tour_length;
    bool has_tour;
    int retries;                //  conflicts met by this tour
    int64_t iteration;          //  iterations done
    int64_t first_ms;           //  when the first tour was built (Unix ms)
    int64_t last_ms;            //  when the last iteration ended

    //  The best pipeline
    s_pipe_t best_pipe;
    int *offer;                 //  the tour being offered to COLONY.best
    double offer_length;
    int64_t offer_iteration;
    int *pending;               //  a shorter one found meanwhile
    double pending_length;
    int64_t pending_iteration;
    bool has_pending;
    double colony_best;         //  shortest length known (DBL_MAX: none)
    int *own;                   //  this ant's shortest tour
    double own_length;          //  DBL_MAX: none yet

    //  Counters
    uint64_t updates, conflicts, best_conflicts, improved, dropped, requests, errors;
    char failure [600];
} s_ant_t;

static const tr_param_spec_t s_ant_params [] = {
    { "cities", TR_PARAM_LIST, false, "the cities, a list of [x, y] (or 'file')" },
    { "file", TR_PARAM_STRING, false, "a file of cities, one 'x y' per line (or 'cities')" },
    { "colony", TR_PARAM_STRING, false, "the colony: prefix of its scratchpad keys "
                                        "(default swarm)" },
    { "alpha", TR_PARAM_NUMBER, false, "weight of the pheromone, 0 to 10 (default 1)" },
    { "beta", TR_PARAM_NUMBER, false, "weight of closeness, 0 to 20 (default 3)" },
    { "rho", TR_PARAM_NUMBER, false, "evaporation per update of the table, above 0 to 1 "
                                     "(default 0.05)" },
    { "iterations", TR_PARAM_INT, false, "tours this ant builds (default 100)" },
    { "seed", TR_PARAM_INT, false, "this ant's random generator (default: the clock)" },
    { "interval", TR_PARAM_DURATION, false, "mean pause between iterations (default 0)" },
    { "timeout", TR_PARAM_DURATION, false, "how long one scratchpad call gets (default 5s)" },
    { .key = NULL }
};

//  --------------------------------------------------------------------------
//  Settings

static void
s_ant_free (s_ant_t *ant)
{
    if (!ant)
        return;
    free (ant->name);
    free (ant->x);
    free (ant->y);
    free (ant->dist);
    free (ant->heur);
    free (ant->colony);
    free (ant->file);
    free (ant->tau_key);
    free (ant->best_key);
    free (ant->tau);
    free (ant->weight);
    free (ant->visited);
    free (ant->tour);
    free (ant->offer);
    free (ant->pending);
    free (ant->own);
    free (ant);
}

static bool
s_coord_ok (double v)
{
    return isfinite (v) && fabs (v) <= S_MAX_COORD;
}

//  Makes room for n cities.
static int
s_cities_alloc (tr__cfg_t *cfg, s_ant_t *ant, size_t n)
{
    ant->n = n;
    ant->x = (double *) calloc (n, sizeof (double));
    ant->y = (double *) calloc (n, sizeof (double));
    return ant->x && ant->y? 0: tr__cfg_bad (cfg, "out of memory");
}

//  cities: [[x, y], ...]
static int
s_cities_inline (tr__cfg_t *cfg, s_ant_t *ant, const msgpack_object *list)
{
    tr__cfg_enter (cfg, "%s", "");
    if (list->type != MSGPACK_OBJECT_ARRAY)
        return tr__cfg_bad_at (cfg, "cities", "'cities' must be a list of [x, y], not %s",
                               tr__cfg_kind (list));
    size_t n = list->via.array.size;
    if (n < S_MIN_CITIES || n > S_MAX_CITIES)
        return tr__cfg_bad_at (cfg, "cities", "'cities' must hold %d to %d cities, not %zu",
                               S_MIN_CITIES, S_MAX_CITIES, n);
    if (s_cities_alloc (cfg, ant, n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *city = &list->via.array.ptr [i];
        char index [24];
        snprintf (index, sizeof index, "%zu", i + 1);
        tr__cfg_enter (cfg, "cities");
        if (city->type != MSGPACK_OBJECT_ARRAY || city->via.array.size != 2
        ||  !tr__number (&city->via.array.ptr [0], &ant->x [i])
        ||  !tr__number (&city->via.array.ptr [1], &ant->y [i]))
            return tr__cfg_bad_at (cfg, index, "cities item %zu must be a list of two numbers "
                                   "[x, y], not %s", i + 1,
                                   city->type == MSGPACK_OBJECT_ARRAY?
                                   "a list of other values": tr__cfg_kind (city));
        if (!s_coord_ok (ant->x [i]) || !s_coord_ok (ant->y [i]))
            return tr__cfg_bad_at (cfg, index, "cities item %zu: coordinates must be finite "
                                   "and at most 1e9 in size", i + 1);
    }
    tr__cfg_enter (cfg, "%s", "");
    return 0;
}

//  Reads one line of a cities file: "x y" or "x, y" (blank lines and
//  lines starting with '#' have none). Returns 1 with the city, 0 for no
//  city, -1 for anything else.
static int
s_city_line (const char *line, double *x, double *y)
{
    while (isspace ((unsigned char) *line))
        line++;
    if (*line == '\0' || *line == '#')
        return 0;
    char *end;
    errno = 0;
    *x = strtod (line, &end);
    if (end == line || errno)
        return -1;
    line = end;
    while (isspace ((unsigned char) *line) || *line == ',')
        line++;
    *y = strtod (line, &end);
    if (end == line || errno)
        return -1;
    while (isspace ((unsigned char) *end))
        end++;
    return *end == '\0'? 1: -1;
}

//  file: PATH, a text file with one city per line.
static int
s_cities_file (tr__cfg_t *cfg, s_ant_t *ant)
{
    tr__cfg_enter (cfg, "%s", "");
    FILE *file = fopen (ant->file, "r");
    if (!file)
        return tr__cfg_bad_at (cfg, "file", "cannot read the cities file '%.300s': %s",
                               ant->file, strerror (errno));
    if (s_cities_alloc (cfg, ant, S_MAX_CITIES)) {
        fclose (file);
        return -1;
    }
    char line [512];
    size_t n = 0, number = 0;
    int rc = 0;
    while (rc == 0 && fgets (line, sizeof line, file)) {
        number++;
        size_t len = strlen (line);
        if (len == sizeof line - 1 && line [len - 1] != '\n') {
            rc = tr__cfg_bad_at (cfg, "file", "cities file '%.300s' line %zu is too long",
                                 ant->file, number);
            break;
        }
        line [strcspn (line, "\r\n")] = '\0';
        double x, y;
        int found = s_city_line (line, &x, &y);
        if (found < 0)
            rc = tr__cfg_bad_at (cfg, "file", "cities file '%.300s' line %zu: expected two "
                                 "numbers 'x y', not '%.60s'", ant->file, number, line);
        else
        if (found && (!s_coord_ok (x) || !s_coord_ok (y)))
            rc = tr__cfg_bad_at (cfg, "file", "cities file '%.300s' line %zu: coordinates "
                                 "must be finite and at most 1e9 in size", ant->file, number);
        else
        if (found && n == S_MAX_CITIES)
            rc = tr__cfg_bad_at (cfg, "file", "cities file '%.300s' holds more than %d cities",
                                 ant->file, S_MAX_CITIES);
        else
        if (found) {
            ant->x [n] = x;
            ant->y [n] = y;
            n++;
        }
    }
    if (rc == 0 && ferror (file))
        rc = tr__cfg_bad_at (cfg, "file", "cannot read the cities file '%.300s': %s",
                             ant->file, strerror (errno));
    fclose (file);
    if (rc == 0 && n < S_MIN_CITIES)
        rc = tr__cfg_bad_at (cfg, "file", "cities file '%.300s' holds %zu cities; %d to %d "
                             "are needed", ant->file, n, S_MIN_CITIES, S_MAX_CITIES);
    ant->n = n;
    return rc;
}

//  A scratchpad key prefix: what the broker takes in a key.
static bool
s_colony_ok (const char *colony)
{
    size_t len = strlen (colony);
    if (len == 0 || len > S_MAX_COLONY)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) colony [i] <= ' ' || colony [i] == 0x7f)
            return false;
    return true;
}

static int
s_ant_configure (s_ant_t *ant, tr__cfg_t *cfg)
{
    ant->alpha = 1;
    ant->beta = 3;
    ant->rho = 0.05;
    ant->iterations = 100;
    ant->timeout_ms = 5000;
    if (tr__cfg_number (cfg, "alpha", 0, 10, &ant->alpha)
    ||  tr__cfg_number (cfg, "beta", 0, 20, &ant->beta)
    ||  tr__cfg_number (cfg, "rho", 0, 1, &ant->rho)
    ||  tr__cfg_int (cfg, "iterations", 1, 10000000, &ant->iterations)
    ||  tr__cfg_duration (cfg, "interval", 0, 3600000, &ant->interval_ms)
    ||  tr__cfg_duration (cfg, "timeout", 1, 3600000, &ant->timeout_ms)
    ||  tr__cfg_str (cfg, "colony", &ant->colony)
    ||  tr__cfg_str (cfg, "file", &ant->file))
        return -1;
    if (ant->rho == 0)
        return tr__cfg_bad_at (cfg, "rho", "'rho' must be above 0 (without evaporation the "
                               "first tours rule for ever), not 0");
    const msgpack_object *seed = tr__cfg_get (cfg, NULL, "seed");
    if (seed) {
        if (tr__cfg_int (cfg, "seed", INT64_MIN, INT64_MAX, &ant->seed))
            return -1;
        ant->has_seed = true;
    }
    if (!ant->colony && !(ant->colony = strdup ("swarm")))
        return tr__cfg_bad (cfg, "out of memory");
    if (!s_colony_ok (ant->colony))
        return tr__cfg_bad_at (cfg, "colony", "'colony' must be 1 to %d bytes without spaces "
                               "or control characters (it starts scratchpad keys)", S_MAX_COLONY);
    const msgpack_object *cities = tr__cfg_get (cfg, NULL, "cities");
    if (cities && ant->file)
        return tr__cfg_bad_at (cfg, "file", "takes 'cities' or 'file', not both");
    if (!cities && !ant->file)
        return tr__cfg_bad (cfg, "needs 'cities' (a list of [x, y]) or 'file' (a file of "
                            "'x y' lines)");
    return cities? s_cities_inline (cfg, ant, cities): s_cities_file (cfg, ant);
}

static int
s_ant_configure_any (void *ant, tr__cfg_t *cfg)
{
    return s_ant_configure ((s_ant_t *) ant, cfg);
}

//  Frees what configure allocated, for the tree loader's check (the
//  state itself is calloc'd by tr__cfg_check, and freed here too).
static void
s_ant_free_any (void *ant)
{
    s_ant_free ((s_ant_t *) ant);
}

//  The tree loader's check: the same reading as init's, with positions.
static int
s_ant_check (const tr_params_t *params, tr_param_error_t *error)
{
    return tr__cfg_check ("ant", params, sizeof (s_ant_t), s_ant_configure_any,
                          s_ant_free_any, error);
}

//  --------------------------------------------------------------------------
//  The instance

//  Index of edge {i, j} in the upper triangle, row by row.
static size_t
s_edge (size_t n, size_t i, size_t j)
{
    if (i > j) {
        size_t t = i;
        i = j;
        j = t;
    }
    return i * (2 * n - i - 1) / 2 + (j - i - 1);
}

static size_t
s_edges (size_t n)
{
    return n * (n - 1) / 2;
}

static double
s_tour_length (const s_ant_t *ant, const int *tour)
{
    double length = 0;
    for (size_t k = 0; k < ant->n; k++)
        length += ant->dist [(size_t) tour [k] * ant->n + (size_t) tour [(k + 1) % ant->n]];
    return length;
}

//  Distances, the heuristic, the fingerprint and the nearest-neighbour
//  tour's length; buffers for the iterations.
static int
s_instance_build (s_ant_t *ant)
{
    size_t n = ant->n;
    ant->dist = (double *) calloc (n * n, sizeof (double));
    ant->heur = (double *) calloc (n * n, sizeof (double));
    ant->tau = (double *) calloc (s_edges (n), sizeof (double));
    ant->weight = (double *) calloc (n, sizeof (double));
    ant->visited = (bool *) calloc (n, sizeof (bool));
    ant->tour = (int *) calloc (n, sizeof (int));
    ant->offer = (int *) calloc (n, sizeof (int));
    ant->pending = (int *) calloc (n, sizeof (int));
    ant->own = (int *) calloc (n, sizeof (int));
    if (!ant->dist || !ant->heur || !ant->tau || !ant->weight || !ant->visited || !ant->tour
    ||  !ant->offer || !ant->pending || !ant->own)
        return -1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double d = hypot (ant->x [i] - ant->x [j], ant->y [i] - ant->y [j]);
            ant->dist [i * n + j] = d;
            //  Two cities in one place: as close as can be, not infinitely.
            ant->heur [i * n + j] = pow (1.0 / (d > 1e-9? d: 1e-9), ant->beta);
        }
    //  The fingerprint: the same cities in the same order, as doubles.
    uint64_t h = tr__hash (&n, sizeof n, 0);
    h = tr__hash (ant->x, n * sizeof (double), h);
    ant->instance = tr__hash (ant->y, n * sizeof (double), h);
    //  Nearest neighbour from city 0: the scale of the first pheromones.
    memset (ant->visited, 0, n * sizeof (bool));
    ant->tour [0] = 0;
    ant->visited [0] = true;
    for (size_t k = 1; k < n; k++) {
        size_t from = (size_t) ant->tour [k - 1], best = n;
        for (size_t j = 0; j < n; j++)
            if (!ant->visited [j] && (best == n || ant->dist [from * n + j] < ant->dist [from * n + best]))
                best = j;
        ant->tour [k] = (int) best;
        ant->visited [best] = true;
    }
    ant->nn_length = s_tour_length (ant, ant->tour);
    if (!(ant->nn_length > 0))
        ant->nn_length = 1;             //  every city in one place
    return 0;
}

//  xorshift64*, as uniform doubles in [0, 1).
static double
s_random (s_ant_t *ant)
{
    ant->rng ^= ant->rng >> 12;
    ant->rng ^= ant->rng << 25;
    ant->rng ^= ant->rng >> 27;
    return (double) ((ant->rng * UINT64_C (2685821657736338717)) >> 11) * (1.0 / 9007199254740992.0);
}

//  Turns a tour to start at city 0, going toward the lower-numbered of
//  its two neighbours, so that one cycle has one spelling.
static void
s_canonical (int *tour, size_t n)
{
    size_t start = 0;
    while (tour [start] != 0)
        start++;
    int copy [S_MAX_CITIES];
    bool forward = tour [(start + 1) % n] < tour [(start + n - 1) % n];
    for (size_t k = 0; k < n; k++)
        copy [k] = forward? tour [(start + k) % n]: tour [(start + n - k) % n];
    memcpy (tour, copy, n * sizeof (int));
}

//  Builds this iteration's tour from the table as read.
static void
s_build_tour (s_ant_t *ant)
{
    size_t n = ant->n;
    memset (ant->visited, 0, n * sizeof (bool));
    size_t city = (size_t) (s_random (ant) * (double) n) % n;
    ant->tour [0] = (int) city;
    ant->visited [city] = true;
    for (size_t k = 1; k < n; k++) {
        double total = 0;
        size_t last = n;
        for (size_t j = 0; j < n; j++) {
            ant->weight [j] = 0;
            if (ant->visited [j])
                continue;
            double tau = ant->tau [s_edge (n, city, j)];
            double w = (ant->alpha == 1? tau: pow (tau, ant->alpha)) * ant->heur [city * n + j];
            ant->weight [j] = isfinite (w) && w > 0? w: 0;
            total += ant->weight [j];
            last = j;
        }
        size_t next = last;
        if (total > 0 && isfinite (total)) {
            double pick = s_random (ant) * total;
            for (size_t j = 0; j < n; j++)
                if (ant->weight [j] > 0 && (pick -= ant->weight [j]) <= 0) {
                    next = j;
                    break;
                }
        }
        else {
            //  Every weight underflowed: any unvisited city, uniformly.
            size_t left = 0;
            for (size_t j = 0; j < n; j++)
                left += !ant->visited [j];
            size_t pick = (size_t) (s_random (ant) * (double) left) % left;
            for (size_t j = 0; j < n; j++)
                if (!ant->visited [j] && pick-- == 0) {
                    next = j;
                    break;
                }
        }
        ant->tour [k] = (int) next;
        ant->visited [next] = true;
        city = next;
    }
    s_canonical (ant->tour, n);
    ant->tour_length = s_tour_length (ant, ant->tour);
    ant->has_tour = true;
    ant->retries = 0;
}

//  --------------------------------------------------------------------------
//  Values in the scratchpad

static void
s_pack_tour (msgpack_packer *pk, const int *tour, size_t n)
{
    msgpack_pack_array (pk, n);
    for (size_t k = 0; k < n; k++)
        msgpack_pack_int (pk, tour [k]);
}

static int64_t
s_wall_ms (void)
{
    return tr__wall_us () / 1000;
}

//  Reads a table into the ant (tau, version, updates, best, started).
//  A missing table is a fresh one. Returns 0, or -1 with ant->failure
//  set when the key holds something else: another instance's table, or
//  no table at all.
static int
s_table_read (s_ant_t *ant, int rc, uint64_t version, const uint8_t *data, size_t size)
{
    size_t edges = s_edges (ant->n);
    if (rc == TR_ENOTFOUND) {
        //  The first ant: the MAX-MIN start, every edge at its upper bound
        //  for a tour as long as the nearest neighbour's.
        double tau0 = 1.0 / (ant->rho * ant->nn_length);
        for (size_t e = 0; e < edges; e++)
            ant->tau [e] = tau0;
        ant->version = 0;
        ant->colony_updates = 0;
        ant->table_best = DBL_MAX;
        ant->started = s_wall_ms ();
        return 0;
    }
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    const char *why = NULL;
    if (msgpack_unpack_next (&result, (const char *) data, size, NULL) != MSGPACK_UNPACK_SUCCESS
    ||  result.data.type != MSGPACK_OBJECT_MAP)
        why = "is not a pheromone table (not a map)";
    const msgpack_object *map = &result.data;
    const msgpack_object *cities = why? NULL: tr__map_get (map, "cities");
    const msgpack_object *instance = why? NULL: tr__map_get (map, "instance");
    const msgpack_object *updates = why? NULL: tr__map_get (map, "updates");
    const msgpack_object *best = why? NULL: tr__map_get (map, "best");
    const msgpack_object *started = why? NULL: tr__map_get (map, "started");
    const msgpack_object *tau = why? NULL: tr__map_get (map, "tau");
    if (!why && (!cities || !instance || !updates || !tau || !started
             ||  cities->type != MSGPACK_OBJECT_POSITIVE_INTEGER
             ||  instance->type != MSGPACK_OBJECT_POSITIVE_INTEGER
             ||  updates->type != MSGPACK_OBJECT_POSITIVE_INTEGER
             ||  tau->type != MSGPACK_OBJECT_ARRAY))
        why = "is not a pheromone table (cities, instance, updates, started, tau)";
    char other [200];
    if (!why && (cities->via.u64 != ant->n || instance->via.u64 != ant->instance)) {
        snprintf (other, sizeof other, "holds the pheromones of another instance (%llu cities, "
                  "fingerprint %016llx; this ant has %zu cities, fingerprint %016llx): give "
                  "each instance a colony of its own",
                  (unsigned long long) cities->via.u64, (unsigned long long) instance->via.u64,
                  ant->n, (unsigned long long) ant->instance);
        why = other;
    }
    if (!why && tau->via.array.size != edges)
        why = "is not a pheromone table (tau has the wrong length)";
    for (size_t e = 0; !why && e < edges; e++)
        if (!tr__number (&tau->via.array.ptr [e], &ant->tau [e]) || !(ant->tau [e] >= 0)
        ||  !isfinite (ant->tau [e]))
            why = "is not a pheromone table (tau holds a value that is not a number >= 0)";
    if (!why) {
        ant->version = version;
        ant->colony_updates = updates->via.u64;
        double b;
        ant->table_best = best && tr__number (best, &b) && b > 0? b: DBL_MAX;
        double s;
        ant->started = tr__number (started, &s)? (int64_t) s: s_wall_ms ();
        if (ant->table_best < ant->colony_best)
            ant->colony_best = ant->table_best;
    }
    else
        snprintf (ant->failure, sizeof ant->failure, "colony '%.200s': %s %s",
                  ant->colony, ant->tau_key, why);
    msgpack_unpacked_destroy (&result);
    return why? -1: 0;
}

//  The table after this ant's update: evaporation, the tour's deposit,
//  the MAX-MIN bounds. Packs it into buffer (initialised by the caller).
static void
s_table_pack (s_ant_t *ant, msgpack_sbuffer *buffer)
{
    size_t n = ant->n, edges = s_edges (n);
    double best = ant->tour_length < ant->table_best? ant->tour_length: ant->table_best;
    double deposit = ant->tour_length > 0? 1.0 / ant->tour_length: 1.0 / ant->nn_length;
    double tmax = 1.0 / (ant->rho * (best > 0? best: ant->nn_length));
    double tmin = tmax / (2.0 * (double) n);
    for (size_t e = 0; e < edges; e++)
        ant->tau [e] *= 1.0 - ant->rho;
    for (size_t k = 0; k < n; k++)
        ant->tau [s_edge (n, (size_t) ant->tour [k], (size_t) ant->tour [(k + 1) % n])] += deposit;
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 6);
    tr__pack_str (&pk, "cities");
    msgpack_pack_uint64 (&pk, n);
    tr__pack_str (&pk, "instance");
    msgpack_pack_uint64 (&pk, ant->instance);
    tr__pack_str (&pk, "updates");
    msgpack_pack_uint64 (&pk, ant->colony_updates + 1);
    tr__pack_str (&pk, "best");
    msgpack_pack_double (&pk, best);
    tr__pack_str (&pk, "started");
    msgpack_pack_int64 (&pk, ant->started);
    tr__pack_str (&pk, "tau");
    msgpack_pack_array (&pk, edges);
    for (size_t e = 0; e < edges; e++) {
        double tau = ant->tau [e];
        msgpack_pack_double (&pk, tau < tmin? tmin: tau > tmax? tmax: tau);
    }
}

//  The offer's pairs in a map about it: length, tour (unless with_tour is
//  false: a history entry), ant, iteration, time (now, Unix ms) and
//  elapsed_ms (since the colony started).
static void
s_pack_offer (s_ant_t *ant, msgpack_packer *pk, int64_t now, bool with_tour)
{
    tr__pack_str (pk, "length");
    msgpack_pack_double (pk, ant->offer_length);
    if (with_tour) {
        tr__pack_str (pk, "tour");
        s_pack_tour (pk, ant->offer, ant->n);
    }
    tr__pack_str (pk, "ant");
    tr__pack_str (pk, ant->name);
    tr__pack_str (pk, "iteration");
    msgpack_pack_int64 (pk, ant->offer_iteration);
    tr__pack_str (pk, "time");
    msgpack_pack_int64 (pk, now);
    tr__pack_str (pk, "elapsed_ms");
    msgpack_pack_int64 (pk, now > ant->started? now - ant->started: 0);
}

//  The new COLONY.best for the offer, after the value read (NULL when
//  there was none), its history carried on. Returns 0, or -1 with
//  ant->failure set when the value read is not a best of this instance;
//  *shorter_p says whether the offer beats it (nothing packed if not).
static int
s_best_pack (s_ant_t *ant, const uint8_t *data, size_t size, msgpack_sbuffer *buffer,
             bool *shorter_p)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    const msgpack_object *history = NULL;
    const char *why = NULL;
    double stored = DBL_MAX;
    if (data) {
        const msgpack_object *map = &result.data, *length, *instance;
        if (msgpack_unpack_next (&result, (const char *) data, size, NULL) != MSGPACK_UNPACK_SUCCESS
        ||  map->type != MSGPACK_OBJECT_MAP
        ||  !(length = tr__map_get (map, "length")) || !tr__number (length, &stored)
        ||  !(instance = tr__map_get (map, "instance"))
        ||  instance->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            why = "is not a colony's best tour (length, instance)";
        else
        if (instance->via.u64 != ant->instance)
            why = "is the best tour of another instance: give each instance a colony of its own";
        else {
            history = tr__map_get (map, "history");
            if (history && history->type != MSGPACK_OBJECT_ARRAY)
                history = NULL;
        }
    }
    if (why) {
        snprintf (ant->failure, sizeof ant->failure, "colony '%.200s': %s %s", ant->colony,
                  ant->best_key, why);
        msgpack_unpacked_destroy (&result);
        return -1;
    }
    if (stored < ant->colony_best)
        ant->colony_best = stored;
    *shorter_p = ant->offer_length < stored;
    if (*shorter_p) {
        int64_t now = s_wall_ms ();
        uint32_t kept = history? history->via.array.size: 0;
        uint32_t skip = kept >= S_HISTORY? kept - (S_HISTORY - 1): 0;
        msgpack_packer pk;
        msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 9);
        s_pack_offer (ant, &pk, now, true);
        tr__pack_str (&pk, "cities");
        msgpack_pack_uint64 (&pk, ant->n);
        tr__pack_str (&pk, "instance");
        msgpack_pack_uint64 (&pk, ant->instance);
        //  The improvements, oldest first (the last S_HISTORY of them).
        tr__pack_str (&pk, "history");
        msgpack_pack_array (&pk, kept - skip + 1);
        for (uint32_t i = skip; i < kept; i++)
            msgpack_pack_object (&pk, history->via.array.ptr [i]);
        msgpack_pack_map (&pk, 5);
        s_pack_offer (ant, &pk, now, false);
    }
    msgpack_unpacked_destroy (&result);
    return 0;
}

//  --------------------------------------------------------------------------
//  Scratchpad calls: their outcomes come back as messages

typedef struct {
    tr_node_t *node;
    uint64_t id;
    char actor [256];
} s_call_t;

//  The outcome of a call, on the node's link thread: told to the ant as
//  an ext value (type 'W': id, rc, version, then the value's bytes),
//  which no user message can look like.
static void
s_call_done (const tr_scratch_result_t *result, void *arg)
{
    s_call_t *call = (s_call_t *) arg;
    size_t data_size = result->rc == TR_OK && result->data? result->size: 0;
    size_t payload = 20 + data_size;
    uint8_t *body = (uint8_t *) malloc (6 + payload);
    if (body) {
        body [0] = 0xc9;                    //  ext 32
        for (int i = 0; i < 4; i++)
            body [1 + i] = (uint8_t) (payload >> (24 - 8 * i));
        body [5] = 'W';
        for (int i = 0; i < 8; i++)
            body [6 + i] = (uint8_t) (call->id >> (56 - 8 * i));
        uint32_t rc = (uint32_t) result->rc;
        for (int i = 0; i < 4; i++)
            body [14 + i] = (uint8_t) (rc >> (24 - 8 * i));
        for (int i = 0; i < 8; i++)
            body [18 + i] = (uint8_t) (result->version >> (56 - 8 * i));
        if (data_size)
            memcpy (body + 26, result->data, data_size);
        //  An ant that has stopped meanwhile makes this a dead letter; one
        //  that never gets it ends the wait by its watchdog.
        tr_tell (call->node, call->actor, body, 6 + payload, NULL);
    }
    free (body);
    free (call);
}

typedef struct {
    uint64_t id;
    int rc;
    uint64_t version;
    const uint8_t *data;
    size_t size;
} s_outcome_t;

//  Reads an outcome told by s_call_done.
static bool
s_outcome_read (const tr_msg_t *msg, s_outcome_t *out)
{
    const uint8_t *body = (const uint8_t *) tr_msg_body (msg);
    size_t n = tr_msg_size (msg);
    if (tr_msg_kind (msg) != TR_KIND_TELL || tr_msg_from (msg) [0] != '\0'
    ||  n < 26 || body [0] != 0xc9 || body [5] != 'W')
        return false;
    uint64_t id = 0, version = 0;
    uint32_t rc = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | body [6 + i];
    for (int i = 0; i < 4; i++)
        rc = (rc << 8) | body [14 + i];
    for (int i = 0; i < 8; i++)
        version = (version << 8) | body [18 + i];
    out->id = id;
    out->rc = (int) (int32_t) rc;
    out->version = version;
    out->data = n > 26? body + 26: NULL;
    out->size = n - 26;
    return true;
}

//  Starts a get (value NULL) or a compare-and-set. Returns TR_OK with
//  *id_p, or the call's error (nothing in flight).
static int
s_call (s_ant_t *ant, const char *key, bool cas, uint64_t expected, const void *value,
        size_t size, uint64_t *id_p)
{
    s_call_t *call = (s_call_t *) calloc (1, sizeof *call);
    if (!call)
        return TR_ENOMEM;
    call->node = ant->node;
    call->id = ++ant->next_id;
    snprintf (call->actor, sizeof call->actor, "%s", ant->name);
    //  The outcome may come (and free call) before the call returns.
    uint64_t id = call->id;
    int timeout = (int) ant->timeout_ms;
    int rc = cas? tr_scratch_cas_async (ant->node, key, expected, value, size, 0, timeout,
                                        s_call_done, call)
                : tr_scratch_get_async (ant->node, key, timeout, s_call_done, call);
    if (rc != TR_OK) {
        free (call);
        return rc;
    }
    ant->requests++;
    tr_actor_info_set (ant->self, "swarm.requests", (int64_t) ant->requests);
    *id_p = id;
    return TR_OK;
}

//  --------------------------------------------------------------------------
//  Events

//  Publishes body under topic; a failure is logged (events are reports:
//  the scratchpad keeps the state).
static void
s_publish (s_ant_t *ant, const char *topic, msgpack_sbuffer *buffer)
{
    int rc = tr_event_publish (ant->node, topic, buffer->data, buffer->size, NULL);
    if (rc != TR_OK)
        tr_log (TR_LOG_WARN, "ant '%s': cannot publish %s: %s", ant->name, topic,
                tr_strerror (rc));
}

static void
s_publish_best (s_ant_t *ant, uint64_t version)
{
    int64_t now = s_wall_ms ();
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 8);
    tr__pack_str (&pk, "colony");
    tr__pack_str (&pk, ant->colony);
    s_pack_offer (ant, &pk, now, true);
    tr__pack_str (&pk, "version");
    msgpack_pack_uint64 (&pk, version);
    s_publish (ant, "swarm.best", &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

//  The ant's figures, as a map of `extra` more pairs than its own.
static void
s_pack_status (s_ant_t *ant, msgpack_packer *pk, size_t extra)
{
    msgpack_pack_map (pk, 14 + extra);
    tr__pack_str (pk, "colony");
    tr__pack_str (pk, ant->colony);
    tr__pack_str (pk, "ant");
    tr__pack_str (pk, ant->name);
    tr__pack_str (pk, "iterations");
    msgpack_pack_int64 (pk, ant->iteration);
    tr__pack_str (pk, "best");
    if (ant->own_length < DBL_MAX)
        msgpack_pack_double (pk, ant->own_length);
    else
        msgpack_pack_nil (pk);
    tr__pack_str (pk, "tour");
    if (ant->own_length < DBL_MAX)
        s_pack_tour (pk, ant->own, ant->n);
    else
        msgpack_pack_nil (pk);
    tr__pack_str (pk, "colony_best");
    if (ant->colony_best < DBL_MAX)
        msgpack_pack_double (pk, ant->colony_best);
    else
        msgpack_pack_nil (pk);
    tr__pack_str (pk, "updates");
    msgpack_pack_uint64 (pk, ant->updates);
    tr__pack_str (pk, "conflicts");
    msgpack_pack_uint64 (pk, ant->conflicts);
    tr__pack_str (pk, "best_conflicts");
    msgpack_pack_uint64 (pk, ant->best_conflicts);
    tr__pack_str (pk, "dropped");
    msgpack_pack_uint64 (pk, ant->dropped);
    tr__pack_str (pk, "requests");
    msgpack_pack_uint64 (pk, ant->requests);
    tr__pack_str (pk, "errors");
    msgpack_pack_uint64 (pk, ant->errors);
    tr__pack_str (pk, "started");
    msgpack_pack_int64 (pk, ant->first_ms);
    tr__pack_str (pk, "finished");
    msgpack_pack_int64 (pk, ant->last_ms);
}

//  The ant has nothing left in flight: its watchdog can go.
static void
s_watchdog_stop (s_ant_t *ant)
{
    if (ant->watchdog)
        tr_timer_cancel (ant->node, ant->watchdog);
    ant->watchdog = 0;
}

//  swarm.done, once the iterations are done and no offer is in flight.
static void
s_publish_done (s_ant_t *ant)
{
    s_watchdog_stop (ant);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_pack_status (ant, &pk, 0);
    s_publish (ant, "swarm.done", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    tr_actor_info_set (ant->self, "swarm.done", 1);
    tr_log (TR_LOG_INFO, "ant '%s': colony '%s': %lld iterations done; its best %.6g, the "
            "colony's %.6g; %llu conflicts", ant->name, ant->colony, (long long) ant->iteration,
            ant->own_length, ant->colony_best, (unsigned long long) ant->conflicts);
}

//  The ant cannot go on: logged, published, shown in status; it answers
//  asks with its figures and the failure, and does nothing else.
static void
s_fail (s_ant_t *ant)
{
    ant->tau_pipe.stage = S_FAILED;
    ant->tau_pipe.wait = 0;
    ant->best_pipe.stage = S_IDLE;
    ant->best_pipe.wait = 0;
    s_watchdog_stop (ant);
    tr_log (TR_LOG_ERROR, "ant '%s': %s; this ant stops working", ant->name, ant->failure);
    tr_actor_info_set (ant->self, "swarm.failed", 1);
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    tr__pack_str (&pk, "colony");
    tr__pack_str (&pk, ant->colony);
    tr__pack_str (&pk, "ant");
    tr__pack_str (&pk, ant->name);
    tr__pack_str (&pk, "error");
    tr__pack_str (&pk, ant->failure);
    s_publish (ant, "swarm.failed", &buffer);
    msgpack_sbuffer_destroy (&buffer);
}

//  --------------------------------------------------------------------------
//  The best pipeline: offers to COLONY.best

static void s_best_get (s_ant_t *ant);

//  The next step after delay_ms (0: at once, behind what is queued): a
//  tick with the wait's id, from the node's timers (a tick is a tell
//  from no actor, which an ant's own tell would not be).
static void
s_after (s_ant_t *ant, int delay_ms, uint64_t *wait_p)
{
    uint8_t tick [TR__TICK_SIZE];
    *wait_p = ++ant->next_id;
    tr__tick_pack (tick, *wait_p);
    int rc = tr_timer_after (ant->node, ant->name, delay_ms, tick, sizeof tick, NULL);
    if (rc != TR_OK) {
        //  Only when the node is closing or out of memory: nothing more
        //  will happen, and the log says so.
        tr_log (TR_LOG_ERROR, "ant '%s': cannot schedule its next step: %s", ant->name,
                tr_strerror (rc));
        *wait_p = 0;
    }
}

//  A failed call of a pipeline (what: what it was doing): counted, logged,
//  tried again after a growing pause (the pipeline in S_BACKOFF until its
//  tick). Errors that another try cannot mend end the ant.
static void
s_pipe_failed (s_ant_t *ant, s_pipe_t *pipe, int rc, const char *what)
{
    if (rc == TR_ESTOPPED) {
        ant->tau_pipe.stage = S_STOPPED;
        return;
    }
    if (rc == TR_EINVAL || rc == TR_ETOOBIG || rc == TR_EMALFORMED) {
        snprintf (ant->failure, sizeof ant->failure, "colony '%.200s': %s: %s", ant->colony,
                  what, tr_strerror (rc));
        s_fail (ant);
        return;
    }
    ant->errors++;
    tr_actor_info_set (ant->self, "swarm.errors", (int64_t) ant->errors);
    pipe->backoff_ms = pipe->backoff_ms? pipe->backoff_ms * 2: S_BACKOFF_MIN_MS;
    if (pipe->backoff_ms > S_BACKOFF_MAX_MS)
        pipe->backoff_ms = S_BACKOFF_MAX_MS;
    tr_log (TR_LOG_WARN, "ant '%s': colony '%s': %s: %s; trying again in %d ms", ant->name,
            ant->colony, what, tr_strerror (rc), pipe->backoff_ms);
    pipe->stage = S_BACKOFF;
    s_after (ant, pipe->backoff_ms, &pipe->wait);
}

//  A call of a pipeline was made (s_call's rc): the pipeline waits in
//  stage `waiting` from now, or the call failed (s_pipe_failed).
static void
s_pipe_sent (s_ant_t *ant, s_pipe_t *pipe, int rc, int waiting, const char *what)
{
    if (rc == TR_OK) {
        pipe->stage = waiting;
        pipe->since_ns = tr__now_ns ();
    }
    else
        s_pipe_failed (ant, pipe, rc, what);
}

//  Offers a tour to COLONY.best if it beats every length the ant knows.
static void
s_best_offer (s_ant_t *ant, const int *tour, double length)
{
    if (!(length < ant->colony_best))
        return;
    if (ant->best_pipe.stage != S_IDLE) {
        if (!ant->has_pending || length < ant->pending_length) {
            memcpy (ant->pending, tour, ant->n * sizeof (int));
            ant->pending_length = length;
            ant->pending_iteration = ant->iteration + 1;
            ant->has_pending = true;
        }
        return;
    }
    memcpy (ant->offer, tour, ant->n * sizeof (int));
    ant->offer_length = length;
    ant->offer_iteration = ant->iteration + 1;
    s_best_get (ant);
}

//  The offer is settled (won or beaten): the next, or idle.
static void
s_best_next (s_ant_t *ant)
{
    ant->best_pipe.stage = S_IDLE;
    ant->best_pipe.wait = 0;
    ant->best_pipe.backoff_ms = 0;
    if (ant->has_pending && ant->pending_length < ant->colony_best) {
        ant->has_pending = false;
        memcpy (ant->offer, ant->pending, ant->n * sizeof (int));
        ant->offer_length = ant->pending_length;
        ant->offer_iteration = ant->pending_iteration;
        s_best_get (ant);
        return;
    }
    ant->has_pending = false;
    if (ant->tau_pipe.stage == S_DONE)
        s_publish_done (ant);
}

static void
s_best_get (s_ant_t *ant)
{
    int rc = s_call (ant, ant->best_key, false, 0, NULL, 0, &ant->best_pipe.wait);
    s_pipe_sent (ant, &ant->best_pipe, rc, S_GET, "reading the best tour");
}

static void
s_best_answered (s_ant_t *ant, const s_outcome_t *out)
{
    ant->best_pipe.wait = 0;
    if (ant->best_pipe.stage == S_GET) {
        if (out->rc != TR_OK && out->rc != TR_ENOTFOUND) {
            s_pipe_failed (ant, &ant->best_pipe, out->rc, "reading the best tour");
            return;
        }
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        bool shorter = false;
        if (s_best_pack (ant, out->rc == TR_OK? out->data: NULL, out->size, &buffer, &shorter)) {
            msgpack_sbuffer_destroy (&buffer);
            s_fail (ant);
            return;
        }
        if (!shorter) {
            msgpack_sbuffer_destroy (&buffer);
            s_best_next (ant);
            return;
        }
        uint64_t expected = out->rc == TR_OK? out->version: 0;
        int rc = s_call (ant, ant->best_key, true, expected, buffer.data, buffer.size,
                         &ant->best_pipe.wait);
        msgpack_sbuffer_destroy (&buffer);
        s_pipe_sent (ant, &ant->best_pipe, rc, S_CAS, "writing the best tour");
        return;
    }
    //  S_CAS
    if (out->rc == TR_OK) {
        ant->improved++;
        tr_actor_info_set (ant->self, "swarm.improved", (int64_t) ant->improved);
        ant->colony_best = ant->offer_length;
        tr_log (TR_LOG_INFO, "ant '%s': colony '%s': best tour %.6g (iteration %lld)",
                ant->name, ant->colony, ant->offer_length, (long long) ant->offer_iteration);
        s_publish_best (ant, out->version);
        s_best_next (ant);
    }
    else
    if (out->rc == TR_ECONFLICT) {
        //  Another ant wrote first: read what it wrote, and compare again.
        ant->best_conflicts++;
        tr_actor_info_set (ant->self, "swarm.best_conflicts", (int64_t) ant->best_conflicts);
        s_best_get (ant);
    }
    else {
        //  A write that timed out may have been done: reading again tells.
        s_pipe_failed (ant, &ant->best_pipe, out->rc, "writing the best tour");
    }
}

//  --------------------------------------------------------------------------
//  The pheromone pipeline: one iteration after another

static void
s_tau_get (s_ant_t *ant)
{
    int rc = s_call (ant, ant->tau_key, false, 0, NULL, 0, &ant->tau_pipe.wait);
    s_pipe_sent (ant, &ant->tau_pipe, rc, S_GET, "reading the pheromones");
}

//  The iteration is over (its update written, or given up): the next.
static void
s_iteration_done (s_ant_t *ant)
{
    ant->iteration++;
    ant->last_ms = s_wall_ms ();
    ant->has_tour = false;
    ant->tau_pipe.backoff_ms = 0;
    tr_actor_info_set (ant->self, "swarm.iteration", ant->iteration);
    if (ant->iteration >= ant->iterations) {
        ant->tau_pipe.stage = S_DONE;
        ant->tau_pipe.wait = 0;
        if (ant->best_pipe.stage == S_IDLE)
            s_publish_done (ant);
        return;
    }
    //  The pause is drawn from half to one and a half times interval:
    //  ants started together with one interval would otherwise stay in
    //  step, all reading and all writing in the same millisecond, and
    //  conflict far more than they need to.
    ant->tau_pipe.stage = S_IDLE;
    int pause = ant->interval_ms? (int) ((double) ant->interval_ms * (0.5 + s_random (ant))): 0;
    s_after (ant, pause, &ant->tau_pipe.wait);
}

static void
s_tau_answered (s_ant_t *ant, const s_outcome_t *out)
{
    ant->tau_pipe.wait = 0;
    if (ant->tau_pipe.stage == S_GET) {
        if (out->rc != TR_OK && out->rc != TR_ENOTFOUND) {
            s_pipe_failed (ant, &ant->tau_pipe, out->rc, "reading the pheromones");
            return;
        }
        if (s_table_read (ant, out->rc, out->version, out->data, out->size)) {
            s_fail (ant);
            return;
        }
        if (!ant->has_tour) {
            if (ant->iteration == 0)
                ant->first_ms = s_wall_ms ();
            s_build_tour (ant);
            if (ant->tour_length < ant->own_length) {
                ant->own_length = ant->tour_length;
                memcpy (ant->own, ant->tour, ant->n * sizeof (int));
            }
            s_best_offer (ant, ant->tour, ant->tour_length);
        }
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        s_table_pack (ant, &buffer);
        int rc = s_call (ant, ant->tau_key, true, ant->version, buffer.data, buffer.size,
                         &ant->tau_pipe.wait);
        msgpack_sbuffer_destroy (&buffer);
        s_pipe_sent (ant, &ant->tau_pipe, rc, S_CAS, "writing the pheromones");
        return;
    }
    //  S_CAS
    if (out->rc == TR_OK) {
        ant->updates++;
        tr_actor_info_set (ant->self, "swarm.updates", (int64_t) ant->updates);
        s_iteration_done (ant);
    }
    else
    if (out->rc == TR_ECONFLICT) {
        //  Another ant updated the table since it was read: read it again
        //  and put this tour's update on the newer table.
        ant->conflicts++;
        tr_actor_info_set (ant->self, "swarm.conflicts", (int64_t) ant->conflicts);
        if (++ant->retries >= S_MAX_RETRIES) {
            ant->dropped++;
            tr_actor_info_set (ant->self, "swarm.dropped", (int64_t) ant->dropped);
            tr_log (TR_LOG_WARN, "ant '%s': colony '%s': %d conflicts in a row; this tour's "
                    "deposit is dropped", ant->name, ant->colony, ant->retries);
            s_iteration_done (ant);
        }
        else
        if (ant->retries >= 2) {
            //  Conflicts in a row: the table is hot. A random pause (up
            //  to 1, 2, 4... 32 ms) spreads the ants that keep meeting,
            //  as Ethernet's backoff does, instead of all reading again
            //  at once and meeting again.
            int cap = 1 << (ant->retries - 2 < 5? ant->retries - 2: 5);
            ant->tau_pipe.stage = S_BACKOFF;
            s_after (ant, (int) (s_random (ant) * (cap + 1)), &ant->tau_pipe.wait);
        }
        else
            s_tau_get (ant);
    }
    else {
        //  A write that timed out may have been done; the next try reads
        //  the table again and either lands the deposit or, if it had
        //  landed, adds it a second time: a rare extra deposit, counted
        //  among the errors.
        s_pipe_failed (ant, &ant->tau_pipe, out->rc, "writing the pheromones");
    }
}

//  A tick: the next iteration, or another try after an error.
static void
s_ticked (s_ant_t *ant, uint64_t id)
{
    if (ant->tau_pipe.wait == id
    &&  (ant->tau_pipe.stage == S_IDLE || ant->tau_pipe.stage == S_BACKOFF)) {
        ant->tau_pipe.wait = 0;
        s_tau_get (ant);
    }
    else
    if (ant->best_pipe.wait == id && ant->best_pipe.stage == S_BACKOFF) {
        ant->best_pipe.wait = 0;
        s_best_get (ant);
    }
}

//  True if the pipeline waits for the outcome of call `id` (any call when
//  id is 0).
static bool
s_pipe_calling (const s_pipe_t *pipe, uint64_t id)
{
    return (pipe->stage == S_GET || pipe->stage == S_CAS) && pipe->wait
        && (id == 0 || id == pipe->wait);
}

//  The watchdog: a call whose outcome has not come a second after its
//  timeout (its message lost to a full mailbox) ends as timed out.
static void
s_watchdog (s_ant_t *ant)
{
    int64_t late = (ant->timeout_ms + S_WATCHDOG_MS) * 1000000;
    int64_t now = tr__now_ns ();
    s_outcome_t out = { .rc = TR_ETIMEDOUT };
    if (s_pipe_calling (&ant->tau_pipe, 0) && now - ant->tau_pipe.since_ns > late) {
        out.id = ant->tau_pipe.wait;
        s_tau_answered (ant, &out);
    }
    if (s_pipe_calling (&ant->best_pipe, 0) && now - ant->best_pipe.since_ns > late) {
        out.id = ant->best_pipe.wait;
        s_best_answered (ant, &out);
    }
}

//  --------------------------------------------------------------------------
//  The actor

static int
s_ant_init (tr_actor_t *self, void *arg, void **state_p)
{
    tr__cfg_t cfg;
    s_ant_t *ant = (s_ant_t *) calloc (1, sizeof *ant);
    int rc = tr__cfg_open (&cfg, "ant", tr_actor_name (self), (const tr_params_t *) arg);
    if (rc == 0 && !ant)
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc == 0)
        rc = s_ant_configure (ant, &cfg);
    if (rc == 0 && !tr_node_opts (tr_actor_node (self))->broker)
        rc = tr__cfg_bad (&cfg, "needs a broker: the colony's pheromones are in the "
                          "scratchpad (troupe run has one unless --no-broker)");
    if (rc == 0 && (s_instance_build (ant)
                ||  !(ant->name = strdup (tr_actor_name (self)))
                ||  asprintf (&ant->tau_key, "%s.tau", ant->colony) < 0
                ||  asprintf (&ant->best_key, "%s.best", ant->colony) < 0))
        rc = tr__cfg_bad (&cfg, "out of memory");
    if (rc) {
        tr__cfg_refuse (self, &cfg);
        tr__cfg_close (&cfg);
        s_ant_free (ant);
        return -1;
    }
    tr__cfg_close (&cfg);
    ant->self = self;
    ant->node = tr_actor_node (self);
    ant->own_length = DBL_MAX;
    ant->colony_best = DBL_MAX;
    ant->table_best = DBL_MAX;
    //  Ants given the same seed still differ: the name goes in too.
    uint64_t seed = ant->has_seed? (uint64_t) ant->seed: (uint64_t) tr__now_ns ();
    ant->rng = tr__hash (ant->name, strlen (ant->name), seed) | 1;
    //  Ids start from the clock, so that an outcome or a tick meant for
    //  an earlier incarnation finds nothing here.
    ant->next_id = (uint64_t) tr__now_ns ();
    uint8_t tick [TR__TICK_SIZE];
    tr__tick_pack (tick, 0);
    if (tr_timer_every (ant->node, ant->name, S_WATCHDOG_MS, tick, sizeof tick,
                        &ant->watchdog) != TR_OK) {
        tr_log (TR_LOG_ERROR, "ant '%s': cannot start its watchdog timer", ant->name);
        s_ant_free (ant);
        return -1;
    }
    tr_actor_info_set (self, "swarm.iteration", 0);
    ant->tau_pipe.stage = S_IDLE;
    s_after (ant, 0, &ant->tau_pipe.wait);
    *state_p = ant;
    return 0;
}

//  An ask gets the ant's figures: {colony, ant, iterations, best, tour,
//  colony_best, updates, conflicts, best_conflicts, dropped, requests,
//  errors, started, finished, done, failed}.
static int
s_status_reply (s_ant_t *ant, const tr_msg_t *msg)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    s_pack_status (ant, &pk, 2);
    tr__pack_str (&pk, "done");
    if (ant->tau_pipe.stage == S_DONE && ant->best_pipe.stage == S_IDLE)
        msgpack_pack_true (&pk);
    else
        msgpack_pack_false (&pk);
    tr__pack_str (&pk, "failed");
    if (ant->tau_pipe.stage == S_FAILED)
        tr__pack_str (&pk, ant->failure);
    else
        msgpack_pack_nil (&pk);
    int rc = tr_reply (msg, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return rc == TR_OK? 0: tr_reply_error (msg, rc);
}

static int
s_ant_handle (tr_actor_t *self, const tr_msg_t *msg, void *state)
{
    s_ant_t *ant = (s_ant_t *) state;
    s_outcome_t out;
    uint64_t id;
    if (tr_msg_kind (msg) == TR_KIND_ASK)
        return s_status_reply (ant, msg);
    if (tr__tick_read (msg, &id)) {
        if (id == 0)
            s_watchdog (ant);
        else
            s_ticked (ant, id);
        return 0;
    }
    if (s_outcome_read (msg, &out)) {
        //  An outcome that comes after its watchdog, or for an earlier
        //  incarnation, finds nothing.
        if (out.id && s_pipe_calling (&ant->tau_pipe, out.id))
            s_tau_answered (ant, &out);
        else
        if (out.id && s_pipe_calling (&ant->best_pipe, out.id))
            s_best_answered (ant, &out);
        return 0;
    }
    if (tr_msg_kind (msg) == TR_KIND_TELL) {
        tr_log (TR_LOG_WARN, "ant '%s': a tell from '%s' is not for an ant (ask it for its "
                "figures); ignored", tr_actor_name (self), tr_msg_from (msg));
        tr_actor_info_add (self, "swarm.ignored", 1);
    }
    return 0;
}

//  Outcomes still to come become dead letters; the keys stay for the
//  other ants.
static void
s_ant_terminate (tr_actor_t *self, int reason, void *state)
{
    (void) self; (void) reason;
    s_ant_t *ant = (s_ant_t *) state;
    s_watchdog_stop (ant);
    s_ant_free (ant);
}

const tr_actor_type_t tr__ant_type = {
    .abi = TR_ACTOR_TYPE_ABI,
    .name = "ant",
    .summary = "one ant of a swarm: ant colony optimisation of a tour, through the scratchpad",
    .behaviour = { s_ant_init, s_ant_handle, s_ant_terminate },
    .params = s_ant_params,
    .check = s_ant_check,
};
