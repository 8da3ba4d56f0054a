/*  tb_caf.cpp - ask_pingpong reference: C++ Actor Framework (CAF 0.17).

    usage: tb_caf [REPS [ROUNDS]]

    Two event-based actors in one actor system with CAF's default
    configuration: 'ping' sends request(pong, i) and, in the response
    handler (.then), checks the echo and sends the next request; 'pong'
    returns what it got. The clock runs inside 'ping' from the first
    request to the last response. One shorter warm-up round first.
    Built by bench/run: g++ -O2 -std=c++17 tb_caf.cpp -lcaf_core -pthread
*/

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

using namespace caf;
using clock_type = std::chrono::steady_clock;

namespace {

behavior
pong (event_based_actor *)
{
    return { [] (uint64_t value) { return value; } };
}

struct ping_state {
    uint64_t rounds = 0;
    uint64_t round = 0;
    clock_type::time_point start;
    double *rate = nullptr;
};

using ping_actor = stateful_actor<ping_state>;

void
ping_next (ping_actor *self, const actor &buddy)
{
    self->request (buddy, infinite, self->state.round).then (
        [=] (uint64_t echo) {
            auto &st = self->state;
            if (echo != st.round) {
                std::fprintf (stderr, "bench: caf echo %llu for %llu\n",
                              (unsigned long long) echo,
                              (unsigned long long) st.round);
                std::exit (1);
            }
            if (++st.round < st.rounds)
                ping_next (self, buddy);
            else {
                std::chrono::duration<double> took = clock_type::now () - st.start;
                *st.rate = (double) st.rounds / took.count ();
                self->send_exit (buddy, exit_reason::user_shutdown);
                self->quit ();
            }
        });
}

behavior
ping (ping_actor *self, actor buddy, uint64_t rounds, double *rate)
{
    self->state.rounds = rounds;
    self->state.rate = rate;
    self->state.start = clock_type::now ();
    ping_next (self, buddy);
    //  Nothing else to handle: the work happens in response handlers.
    return { [] (const std::string &) {} };
}

long
arg (int argc, char **argv, int index, long fallback)
{
    if (index >= argc)
        return fallback;
    long value = std::strtol (argv [index], nullptr, 10);
    if (value <= 0) {
        std::fprintf (stderr, "bench: '%s' is not a positive count\n", argv [index]);
        std::exit (2);
    }
    return value;
}

}   //  namespace

int
main (int argc, char **argv)
{
    int reps = (int) arg (argc, argv, 1, 5);
    uint64_t rounds = (uint64_t) arg (argc, argv, 2, 500000);
    actor_system_config cfg;
    actor_system sys { cfg };
    std::fprintf (stderr, "caf %d: %zu scheduler workers\n", CAF_VERSION,
                  (size_t) sys.scheduler ().num_workers ());
    for (int round = 0; round <= reps; round++) {
        double rate = 0;
        auto buddy = sys.spawn (pong);
        sys.spawn (ping, buddy, round? rounds: rounds / 10, &rate);
        sys.await_all_actors_done ();
        if (round)
            std::printf ("SAMPLE ask_pingpong caf %.6g\n", rate);
        std::fflush (stdout);
        std::fprintf (stderr, "ask_pingpong caf %d: %.0f round trips/s\n", round, rate);
    }
    return 0;
}
