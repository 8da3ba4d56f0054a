#!/usr/bin/env escript
%%  tb_erlang.escript - ask_pingpong reference: Erlang/OTP.
%%
%%  usage: escript tb_erlang.escript [REPS [ROUNDS]]
%%
%%  Two processes in one node (default emulator flags): 'ping' sends
%%  {self(), I} to 'pong' and waits in a selective receive for {Pong, I};
%%  'pong' sends it back. The clock runs inside 'ping' from the first send
%%  to the last answer. One shorter warm-up round first. The module is
%%  compiled (not interpreted) by escript.
-mode(compile).

main(Args) ->
    {Reps, Rounds} = case [list_to_integer(A) || A <- Args] of
                         [] -> {5, 500000};
                         [R] -> {R, 500000};
                         [R, C | _] -> {R, C}
                     end,
    io:format(standard_error, "erlang ~s: ~p schedulers~n",
              [erlang:system_info(otp_release), erlang:system_info(schedulers_online)]),
    lists:foreach(
      fun(Round) ->
              N = case Round of 0 -> Rounds div 10; _ -> Rounds end,
              Rate = run(N),
              case Round of
                  0 -> ok;
                  _ -> io:format("SAMPLE ask_pingpong erlang ~.1f~n", [Rate])
              end,
              io:format(standard_error, "ask_pingpong erlang ~p: ~.1f round trips/s~n",
                        [Round, Rate])
      end, lists:seq(0, Reps)).

run(N) ->
    Pong = spawn(fun pong/0),
    Main = self(),
    spawn(fun() ->
                  Start = erlang:monotonic_time(nanosecond),
                  ping(Pong, 0, N),
                  Main ! {done, erlang:monotonic_time(nanosecond) - Start}
          end),
    receive
        {done, Ns} ->
            Pong ! stop,
            N * 1.0e9 / Ns
    end.

ping(_Pong, N, N) ->
    ok;
ping(Pong, I, N) ->
    Pong ! {self(), I},
    receive
        {Pong, I} -> ping(Pong, I + 1, N)
    end.

pong() ->
    receive
        {From, I} ->
            From ! {self(), I},
            pong();
        stop ->
            ok
    end.
