#!/usr/bin/env escript
%%  tb_restart.escript - restart_latency reference: Erlang/OTP.
%%
%%  usage: escript tb_restart.escript [REPS [RESTARTS [SERIES]]]
%%
%%  A one_for_one supervisor (intensity 1000 within 1 s) has one permanent
%%  gen_server child, registered as w. Called or cast `crash`, the child
%%  takes t0 (erlang:monotonic_time(nanosecond), stored in a public ETS
%%  table) and exits; called `ping`, it answers with its pid. The client
%%  (the escript's own process) makes it crash, then calls `ping` until a
%%  pid other than the one that crashed answers; t1 is taken when that
%%  answer arrives. Calls that meet no process (w not registered yet, or
%%  registered to the dying pid) exit, are caught and retried at once.
%%  The logger's primary level is `none`: no crash or supervisor reports
%%  are formatted or printed (SASL is not started either).
%%
%%  Restarts go in batches of 100, each under a fresh supervisor (started
%%  and stopped outside the clock): the supervisor walks its list of
%%  restarts within the period on every restart, so a long-lived one
%%  gets slower with every restart; tb_restart.c does the same.
%%
%%  Series (the client's style), in microseconds:
%%    erlang_call  gen_server:call(w, crash), which exits when w dies,
%%                 then calls ping until the new pid answers
%%    erlang_cast  gen_server:cast(w, crash), then calls ping at once and
%%                 again until the new pid answers (the first call goes
%%                 to the dying pid and exits)
%%
%%  Each repetition runs RESTARTS (default 4000) restarts of each series,
%%  taking turns, and prints the median and the 99th percentile (nearest
%%  rank) as samples <series>_p50 and <series>_p99. A first round of
%%  RESTARTS div 5 is a warm-up and is not counted. With SERIES, only
%%  that series runs. At the end, per series, a line "NOTE restart_latency
%%  <text>" gives the median and 99th percentile of all counted restarts
%%  pooled, and "OPS restart_latency <series> <n>" the restarts done,
%%  warm-up included. The module is compiled (not interpreted) by escript.
-mode(compile).
%%  The module is both the supervisor's callback module and the child's
%%  (gen_server); init/1 tells them apart by its argument, so neither
%%  -behaviour is declared (they would conflict over init/1).

-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(BATCH, 100).
-define(STYLES, [erlang_call, erlang_cast]).

main(Args) ->
    {Reps, Restarts, Only} =
        case Args of
            [] -> {5, 4000, all};
            [R] -> {list_to_integer(R), 4000, all};
            [R, C] -> {list_to_integer(R), list_to_integer(C), all};
            [R, C, S | _] -> {list_to_integer(R), list_to_integer(C), list_to_atom(S)}
        end,
    ok = logger:set_primary_config(level, none),
    ets:new(tb_t0, [named_table, public, set]),
    process_flag(trap_exit, true),
    io:format(standard_error, "erlang ~s: ~p schedulers~n",
              [erlang:system_info(otp_release), erlang:system_info(schedulers_online)]),
    Styles = [S || S <- ?STYLES, Only =:= all orelse Only =:= S],
    Pooled = lists:foldl(
               fun(Round, Acc) -> round(Round, Restarts, Styles, Acc) end,
               #{}, lists:seq(0, Reps)),
    lists:foreach(
      fun(S) ->
              All = lists:sort(maps:get(S, Pooled, [])),
              N = length(All),
              io:format("NOTE restart_latency ~s, all ~p restarts pooled: median ~.1f us, "
                        "p99 ~.1f us, max ~.1f us~n",
                        [S, N, pct(All, N, 0.50), pct(All, N, 0.99), lists:last(All) / 1000]),
              io:format("OPS restart_latency ~s ~p~n", [S, N + Restarts div 5])
      end, Styles).

%%  One round of every style; returns the pooled latencies so far.
round(Round, Restarts, Styles, Pooled) ->
    io:format(standard_error, "restart_latency ~p:", [Round]),
    P = lists:foldl(
          fun(Style, Acc) ->
                  N = case Round of 0 -> Restarts div 5; _ -> Restarts end,
                  Lat = run(Style, N, []),
                  case Round of
                      0 ->
                          io:format(standard_error, " ~s (warm-up)", [Style]),
                          Acc;
                      _ ->
                          Sorted = lists:sort(Lat),
                          P50 = pct(Sorted, N, 0.50),
                          P99 = pct(Sorted, N, 0.99),
                          io:format("SAMPLE restart_latency ~s_p50 ~.3f~n", [Style, P50]),
                          io:format("SAMPLE restart_latency ~s_p99 ~.3f~n", [Style, P99]),
                          io:format(standard_error, " ~s ~.1f/~.1f", [Style, P50, P99]),
                          maps:update_with(Style, fun(L) -> Lat ++ L end, Lat, Acc)
                  end
          end, Pooled, Styles),
    io:format(standard_error, " us (p50/p99)~n", []),
    P.

%%  Nearest-rank percentile of a sorted list of ns, in microseconds.
pct(Sorted, N, Q) ->
    Rank = max(1, ceil(Q * N - 1.0e-9)),
    lists:nth(Rank, Sorted) / 1000.

%%  N restarts, ?BATCH per fresh supervisor; returns their latencies (ns).
run(_Style, 0, Acc) ->
    Acc;
run(Style, N, Acc) ->
    B = min(N, ?BATCH),
    {ok, Sup} = supervisor:start_link(?MODULE, sup),
    Pid = ping_until(none),
    Lat = batch(Style, B, Pid, Acc),
    ok = gen_server:stop(Sup),
    receive {'EXIT', Sup, _} -> ok end,
    run(Style, N - B, Lat).

batch(_Style, 0, _Pid, Acc) ->
    Acc;
batch(Style, K, Pid, Acc) ->
    case Style of
        erlang_call -> {'EXIT', _} = (catch gen_server:call(w, crash));
        erlang_cast -> gen_server:cast(w, crash)
    end,
    New = ping_until(Pid),
    T1 = erlang:monotonic_time(nanosecond),
    [{t0, T0}] = ets:lookup(tb_t0, t0),
    batch(Style, K - 1, New, [T1 - T0 | Acc]).

%%  Calls ping until a pid other than Old answers; returns it.
ping_until(Old) ->
    case catch gen_server:call(w, ping) of
        {pong, Pid} when Pid =/= Old -> Pid;
        _ -> erlang:yield(), ping_until(Old)
    end.

%%  ---------------------------------------------------------------------
%%  The supervisor and its child (one module, both behaviours)

init(sup) ->
    Flags = #{strategy => one_for_one, intensity => 1000, period => 1},
    Child = #{id => w, start => {gen_server, start_link, [{local, w}, ?MODULE, worker, []]},
              restart => permanent, shutdown => 5000, type => worker},
    {ok, {Flags, [Child]}};
init(worker) ->
    {ok, nostate}.

handle_call(crash, _From, _State) ->
    crash();
handle_call(ping, _From, State) ->
    {reply, {pong, self()}, State}.

handle_cast(crash, _State) ->
    crash().

handle_info(_Msg, State) ->
    {noreply, State}.

crash() ->
    ets:insert(tb_t0, {t0, erlang:monotonic_time(nanosecond)}),
    exit(crash).
