"""The asyncio API with a real broker, a real C node and the command
line: coroutine actors asked by C, asks to C, concurrency on one loop,
the scratchpad and events."""

import asyncio
import json

import pytest

import troupe
import troupe.aio
from conftest import cli, slow


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, slow(60)))


def test_async_actors_and_asks(broker, echo_node):
    echo_node("c-aecho")

    async def main():
        async with await troupe.aio.connect(broker.endpoint, "py-aio", heartbeat_ms=200) as n:
            # Python asks C.
            assert await n.ask("c-aecho", {"x": [1, 2]}, timeout=slow(5)) == {"x": [1, 2]}

            # A coroutine actor that awaits an ask to C inside its handler.
            async def relay(msg):
                await asyncio.sleep(0.01)
                return ["relayed", await n.ask("c-aecho", msg.body, timeout=slow(5),
                                               sender="py-arelay")]
            await n.spawn("py-arelay", relay)

            class Doubler(troupe.aio.AsyncActor):
                async def handle(self, msg):
                    if msg.body == "boom":
                        raise RuntimeError("boom")
                    return msg.body * 2
            await n.spawn("py-adouble", Doubler())

            # C asks the coroutine actors (the CLI runs in a thread so the
            # loop stays free to serve them).
            loop = asyncio.get_running_loop()
            r = await loop.run_in_executor(None, lambda: cli(
                "ask", "py-arelay", '"hi"', "--broker", broker.endpoint, check=True))
            assert json.loads(r.stdout) == ["relayed", "hi"]
            r = await loop.run_in_executor(None, lambda: cli(
                "ask", "py-adouble", "21", "--broker", broker.endpoint, check=True))
            assert r.stdout.strip() == "42"
            with pytest.raises(troupe.HandlerFailed):
                await n.ask("py-adouble", "boom", timeout=slow(5))
            # Many asks at once on one loop, to C and to Python.
            got = await asyncio.gather(*[n.ask("c-aecho" if i % 2 else "py-adouble", i,
                                               timeout=slow(10)) for i in range(200)])
            assert got == [i if i % 2 else 2 * i for i in range(200)]
            with pytest.raises(troupe.NoSuchActor):
                await n.ask("no-such-async", 1, timeout=slow(5))
            with pytest.raises(troupe.Timeout):
                async def slowpoke(msg):
                    await asyncio.sleep(2)
                await n.spawn("py-aslow", slowpoke)
                await n.ask("py-aslow", 1, timeout=0.2)
            with pytest.raises(troupe.NameTaken):
                await n.spawn("c-aecho", relay)
            await n.stop_actor("py-adouble")
            with pytest.raises(troupe.NoSuchActor):
                await n.ask("py-adouble", 1, timeout=slow(5))
    run(main())


def test_async_scratchpad_and_events(broker):
    async def main():
        async with await troupe.aio.connect(broker.endpoint, "py-aio-kv",
                                            heartbeat_ms=200) as n:
            loop = asyncio.get_running_loop()
            v1 = await n.kv.put("aio/a", {"n": 1})
            r = await loop.run_in_executor(None, lambda: cli(
                "kv", "get", "aio/a", "--broker", broker.endpoint, check=True))
            assert json.loads(r.stdout) == {"n": 1}
            with pytest.raises(troupe.Conflict):
                await n.kv.cas("aio/a", v1 + 1000, 2)
            v2 = await n.kv.cas("aio/a", v1, 2)
            assert (await n.kv.get("aio/a")) == troupe.Entry(2, v2, 0)
            assert await n.kv.list("aio/") == [("aio/a", v2)]
            w = await n.kv.watch("aio/")
            await loop.run_in_executor(None, lambda: cli(
                "kv", "put", "aio/b", '"c"', "--broker", broker.endpoint, check=True))
            ch = await w.get(timeout=slow(5))
            assert (ch.key, ch.value, ch.deleted) == ("aio/b", "c", False)
            await n.kv.delete("aio/b")
            ch = await w.get(timeout=slow(5))
            assert (ch.key, ch.deleted) == ("aio/b", True)
            w.close()
            with pytest.raises(troupe.NotFound):
                await n.kv.get("aio/b")

            sub = await n.subscribe("anews.")
            await loop.run_in_executor(None, lambda: cli(
                "pub", "anews.one", "[1]", "--broker", broker.endpoint, check=True))
            n.publish("anews.two", {"py": True})
            seen = []
            async for ev in sub:
                seen.append((ev.topic, ev.body))
                if len(seen) == 2:
                    break
            assert sorted(seen) == [("anews.one", [1]), ("anews.two", {"py": True})]
            sub.close()
            assert any(x["id"] == "py-aio-kv" for x in await n.nodes())
    run(main())
