"""The asyncio API: the same node as troupe.Node, with coroutines.

Actors are coroutine functions (or :class:`AsyncActor` subclasses) run
as tasks of the loop that spawned them, one message at a time each; a
handler may ``await`` anything, including asks to other actors. Every
call that waits takes a timeout.

    import asyncio, troupe.aio

    async def main():
        async with await troupe.aio.connect("tcp://127.0.0.1:7700") as node:
            async def greeter(msg):
                return "hello " + msg.body
            await node.spawn("greeter", greeter)
            print(await node.ask("echo", {"n": 1}, timeout=2.0))
            await node.kv.put("config/mode", "fast")
            async with await node.subscribe("news.") as sub:
                event = await sub.get(timeout=5.0)

    asyncio.run(main())

The socket is served by the node's own I/O thread (troupe.engine), as in
the blocking API; answers come back to the loop through
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

import zmq

from . import codec, errors
from .codec import ASK, TELL, Envelope
from .engine import Completion, EventSink, Host, WatchSink, now_us
from .node import (DEFAULT_MAILBOX, DEFAULT_TIMEOUT, Change, Entry, Event, Message, Resync,
                   _NodeBase, _check_key, _parse_get, _parse_list, _parse_snapshot,
                   _parse_version, _ttl_ms)

__all__ = ["connect", "AsyncNode", "AsyncActor", "AsyncSubscription", "AsyncWatch",
           "AsyncScratchpad"]

log = logging.getLogger("troupe")

_EHANDLER = errors.CODES["EHANDLER"]
_ESTOPPED = errors.CODES["ESTOPPED"]

AsyncHandler = Callable[[Message], Awaitable[Any]]


class _Future(Completion):
    """A Completion that resolves an asyncio future of a loop."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()

    def done(self, value: Any, error: Optional[BaseException]) -> None:
        def resolve() -> None:
            if not self.future.done():
                if error is not None:
                    self.future.set_exception(error)
                else:
                    self.future.set_result(value)
        try:
            self.loop.call_soon_threadsafe(resolve)
        except RuntimeError:
            pass                                # the loop is closed: nobody waits

    async def wait(self, timeout: Optional[float], what: str) -> Any:
        try:
            return await asyncio.wait_for(self.future, timeout)
        except asyncio.TimeoutError:
            raise errors.Timeout("%s: no answer within %.3g s" % (what, timeout)) from None


class AsyncActor:
    """Base of actors written as classes for the asyncio API: override
    ``async def handle(self, msg)`` (its return value answers an ask), and
    ``started`` / ``stopped`` if needed. ``tell`` and ``ask`` send from
    the actor's name."""

    name: str = ""
    node: Any = None

    async def started(self) -> None:
        """Awaited before the first message."""

    async def handle(self, msg: Message) -> Any:
        raise NotImplementedError

    async def stopped(self) -> None:
        """Awaited after the last message."""

    def tell(self, to: str, body: Any = None, **kw: Any) -> None:
        self.node.tell(to, body, sender=self.name, **kw)

    async def ask(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT,
                  **kw: Any) -> Any:
        return await self.node.ask(to, body, timeout=timeout, sender=self.name, **kw)


class _FunctionActor(AsyncActor):
    def __init__(self, fn: Callable[[Message], Any]) -> None:
        self._fn = fn

    async def handle(self, msg: Message) -> Any:
        result = self._fn(msg)
        if inspect.isawaitable(result):
            result = await result
        return result


class _TaskHost(Host):
    """An actor as a task of a loop, with a bounded mailbox."""

    def __init__(self, node: "AsyncNode", name: str, actor: AsyncActor, bound: int) -> None:
        self.node = node
        self.name = name
        self.actor = actor
        self.bound = bound
        self.loop = node._loop
        self.queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self.lock = threading.Lock()
        self.depth = 0
        self.running = True
        self.task = self.loop.create_task(self._run(), name="troupe-actor-" + name)

    def post(self, env: Envelope) -> bool:           # engine thread
        with self.lock:
            if self.depth >= self.bound or not self.running:
                return False
            self.depth += 1
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, env)
        except RuntimeError:
            return False
        return True

    async def stop(self) -> None:
        self.running = False
        self.queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5.0)
        except asyncio.TimeoutError:
            self.task.cancel()

    async def _run(self) -> None:
        try:
            await self.actor.started()
        except Exception:
            log.exception("troupe: actor '%s' failed to start", self.name)
        while True:
            env = await self.queue.get()
            if env is None:
                break
            with self.lock:
                self.depth -= 1
            await self._handle(env)
        while not self.queue.empty():
            env = self.queue.get_nowait()
            if env is not None and env.kind == ASK:
                Message(env, self.node, self.name).fail(_ESTOPPED)
        try:
            await self.actor.stopped()
        except Exception:
            log.exception("troupe: actor '%s' failed to stop", self.name)

    async def _handle(self, env: Envelope) -> None:
        if env.kind == ASK and env.deadline and now_us() > env.deadline:
            return                              # its asker stopped waiting (1.3)
        msg = Message(env, self.node, self.name)
        try:
            result = await self.actor.handle(msg)
        except errors.TroupeError as e:
            if msg.is_ask and not msg.answered:
                msg.fail(e.code)
            log.warning("troupe: actor '%s' failed: %s", self.name, e)
            return
        except Exception:
            log.exception("troupe: actor '%s' failed handling a %s from '%s'", self.name,
                          "ask" if msg.is_ask else "tell", msg.sender)
            if msg.is_ask and not msg.answered:
                msg.fail(_EHANDLER)
            return
        if msg.is_ask and not msg.answered and not msg._deferred:
            try:
                msg.reply(result)
            except errors.TroupeError as e:
                log.error("troupe: actor '%s' returned a reply that cannot be sent: %s",
                          self.name, e)
                msg._answered = False
                msg.fail(e.code)


class _AsyncSink:
    """Items handed from the engine's thread to a loop's queue."""

    def __init__(self, node: "AsyncNode", prefix: str) -> None:
        self.node = node
        self.prefix = prefix
        self.loop = node._loop
        self.queue: "asyncio.Queue[Any]" = asyncio.Queue()
        self.closed = False

    def _put(self, item: Any) -> None:                # engine thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:
            pass

    async def get(self, timeout: Optional[float] = None) -> Any:
        """The next item; troupe.Timeout after timeout seconds,
        troupe.Closed once closed."""
        if self.closed and self.queue.empty():
            raise errors.Closed("closed")
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise errors.Timeout("nothing on '%s' within %.3g s" % (self.prefix, timeout)) from None
        if item is None:
            self.queue.put_nowait(None)
            raise errors.Closed("closed")
        return item

    def __aiter__(self) -> "_AsyncSink":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except errors.Closed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class AsyncSubscription(_AsyncSink, EventSink):
    """Events whose topic starts with a prefix: ``async for event in
    sub`` or ``await sub.get(timeout)``; close() unsubscribes."""

    def push(self, topic: str, sender: str, body: bytes, dropped: int) -> None:
        try:
            value = codec.unpack_value(body)
        except errors.TroupeError:
            log.warning("troupe: dropped an event on '%s' whose body is malformed", topic)
            return
        self._put(Event(topic, sender, value, dropped))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            eng = self.node._engine
            try:
                eng.post(lambda: eng.unsubscribe(self))
            except errors.Closed:
                pass
            self.queue.put_nowait(None)


class AsyncWatch(_AsyncSink, WatchSink):
    """Scratchpad changes under a prefix, in version order (Change or
    Resync items); close() ends the watch."""

    at: int = 0

    def change(self, key: str, version: int, value: Optional[bytes]) -> None:
        try:
            v = codec.unpack_value(value) if value is not None else None
        except errors.TroupeError:
            return
        self._put(Change(key, version, v, value is None))

    def resync(self) -> None:
        self._put(Resync(self.prefix))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            eng = self.node._engine
            try:
                eng.post(lambda: eng.unwatch(self))
            except errors.Closed:
                pass
            self.queue.put_nowait(None)


class AsyncScratchpad:
    """The scratchpad (see troupe.Scratchpad), with coroutines."""

    def __init__(self, node: "AsyncNode") -> None:
        self._node = node

    async def get(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> Entry:
        return await self._node._call("KV_GET", (_check_key(key),), None, timeout, _parse_get)

    async def put(self, key: str, value: Any, ttl: Optional[float] = None,
                  timeout: float = DEFAULT_TIMEOUT) -> int:
        return await self._node._call("KV_PUT", (_check_key(key), _ttl_ms(ttl)),
                                      codec.pack_value(value), timeout, _parse_version)

    async def cas(self, key: str, expected: int, value: Any, ttl: Optional[float] = None,
                  timeout: float = DEFAULT_TIMEOUT) -> int:
        if not isinstance(expected, int) or expected < 0:
            raise errors.InvalidArgument("expected is a version (0: the key must not exist)")
        return await self._node._call("KV_CAS", (_check_key(key), expected, _ttl_ms(ttl)),
                                      codec.pack_value(value), timeout, _parse_version)

    async def delete(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> int:
        return await self._node._call("KV_DEL", (_check_key(key),), None, timeout,
                                      _parse_version)

    async def list(self, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
                   ) -> List[Tuple[str, int]]:
        codec.check_text(prefix, 0, 1024, "the prefix")
        return await self._node._call("KV_LIST", (prefix,), None, timeout, _parse_list)

    async def snapshot(self, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
                       ) -> Tuple[int, Dict[str, Tuple[int, Any]]]:
        codec.check_text(prefix, 0, 1024, "the prefix")
        return await self._node._call("KV_SNAPSHOT", (prefix,), None, timeout, _parse_snapshot)

    async def watch(self, prefix: str = "", from_version: int = 0,
                    timeout: float = DEFAULT_TIMEOUT) -> AsyncWatch:
        codec.check_text(prefix, 0, 1024, "the prefix")
        w = AsyncWatch(self._node, prefix)
        fut = _Future(self._node._loop)
        eng = self._node._engine
        eng.post(lambda: eng.watch(w, from_version, fut))
        try:
            w.at = (await fut.wait(timeout, "KV_WATCH %s" % prefix)) or from_version
        except BaseException:
            w.close()
            raise
        return w


class AsyncNode(_NodeBase):
    """A node for asyncio programs: make one with :func:`connect` (the
    options are troupe.Node's)."""

    def __init__(self, broker: Optional[str] = None, node_id: Optional[str] = None, *,
                 kind: str = "actor", heartbeat_ms: int = 1000,
                 curve_secret: Optional[str] = None, server_key: Optional[str] = None,
                 mailbox: int = DEFAULT_MAILBOX, context: Optional[zmq.Context] = None) -> None:
        super().__init__(broker, node_id, kind, heartbeat_ms, curve_secret, server_key, mailbox,
                         context)
        self._loop = asyncio.get_running_loop()
        self._hosts: Dict[str, _TaskHost] = {}
        self._closed = False
        self.kv = AsyncScratchpad(self)             # type: ignore[assignment]
        self._engine.start()

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Waits until the broker has welcomed this node; raises as
        troupe.Node's constructor does."""
        eng = self._engine
        deadline = time.monotonic() + timeout
        while not eng.connected.is_set():
            if isinstance(eng.refusal, errors.AccessDenied):
                raise eng.refusal
            if time.monotonic() >= deadline:
                if eng.refusal is not None:
                    raise eng.refusal
                raise errors.Timeout("no broker answered at %s within %.3g s"
                                     % (eng.endpoint, timeout))
            await asyncio.sleep(0.02)

    async def spawn(self, name: str, actor: Union[AsyncActor, Callable[[Message], Any]], *,
                    mailbox: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT) -> AsyncActor:
        """Hosts an actor under name: an AsyncActor, or a function (a
        coroutine function or a plain one) taking a Message. Returns once
        the broker holds the name (troupe.NameTaken if another client
        does)."""
        codec.check_name(name, "the actor's name")
        if name.startswith("$"):
            raise errors.InvalidArgument("names starting with '$' are troupe's own")
        if not isinstance(actor, AsyncActor):
            if not callable(actor):
                raise errors.InvalidArgument("an actor is an AsyncActor or a function")
            actor = _FunctionActor(actor)
        actor.name, actor.node = name, self
        host = _TaskHost(self, name, actor, mailbox or self.mailbox)
        fut = _Future(self._loop)
        eng = self._engine
        eng.post(lambda: eng.add_host(host, fut))
        try:
            await fut.wait(timeout, "REGISTER %s" % name)
        except errors.Timeout:
            self._hosts[name] = host
            raise
        except BaseException:
            await host.stop()
            raise
        self._hosts[name] = host
        return actor

    async def stop_actor(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Unregisters the actor and stops it after its current message."""
        host = self._hosts.pop(name, None)
        if host is None:
            raise errors.NoSuchActor("'%s' is not an actor of this node" % name)
        fut = _Future(self._loop)
        eng = self._engine
        eng.post(lambda: eng.remove_host(name, fut))
        try:
            await fut.wait(timeout, "UNREGISTER %s" % name)
        finally:
            await host.stop()

    def tell(self, to: str, body: Any = None, *, sender: Optional[str] = None,
             priority: int = 0, trace: int = 0) -> None:
        """Fire and forget (see troupe.Node.tell); does not wait."""
        env = self._envelope(TELL, to, body, sender, priority, trace, None)
        eng = self._engine

        def send() -> None:
            env.id = eng.next_id()
            eng.route(env)
        eng.post(send)

    async def ask(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT, *,
                  sender: Optional[str] = None, priority: int = 0, trace: int = 0) -> Any:
        """The reply's body, or raises why not (see troupe.Node.ask)."""
        return (await self.ask_message(to, body, timeout, sender=sender, priority=priority,
                                       trace=trace)).body

    async def ask_message(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT,
                          *, sender: Optional[str] = None, priority: int = 0,
                          trace: int = 0) -> Message:
        env = self._envelope(ASK, to, body, sender, priority, trace, timeout)
        fut = _Future(self._loop)
        eng = self._engine
        ids: List[int] = []

        def send() -> None:
            env.id = eng.next_id()
            ids.append(env.id)
            eng.route(env, fut, timeout)
        eng.post(send)
        try:
            reply = await fut.wait(timeout, "ask to '%s'" % to)
        except (errors.Timeout, asyncio.CancelledError):
            try:
                eng.post(lambda: ids and eng.forget(ids[0]))
            except errors.Closed:
                pass
            raise
        return Message(reply, self, reply.to)

    def publish(self, topic: str, body: Any = None) -> None:
        """Publishes an event (see troupe.Node.publish); does not wait."""
        codec.check_text(topic, 1, 255, "the topic")
        if topic.startswith("sys.") and self._engine.kind != "node":
            raise errors.InvalidArgument("topics under 'sys.' are troupe's own")
        data = codec.pack_value(body) if body is not None else b""
        eng = self._engine
        eng.post(lambda: eng.publish(topic, data))

    async def subscribe(self, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
                        ) -> AsyncSubscription:
        """Events whose topic starts with prefix, from now on."""
        codec.check_text(prefix, 0, 255, "the prefix")
        sub = AsyncSubscription(self, prefix)
        fut = _Future(self._loop)
        eng = self._engine
        eng.post(lambda: eng.subscribe(sub, fut))
        try:
            await fut.wait(timeout, "SUB %s" % prefix)
        except BaseException:
            sub.close()
            raise
        return sub

    async def nodes(self, timeout: float = DEFAULT_TIMEOUT) -> List[Dict[str, Any]]:
        """The clients joined to the broker."""
        return await self._call("NODES", (), None, timeout, lambda cmd: cmd.arg(0))

    async def _call(self, verb: str, args: Tuple[Any, ...], payload: Optional[bytes],
                    timeout: float, parse: Callable[[codec.Command], Any]) -> Any:
        fut = _Future(self._loop)
        eng = self._engine
        eng.post(lambda: eng.call(verb, args, payload, fut, parse))
        return await fut.wait(timeout, verb)

    async def close(self) -> None:
        """Leaves the broker and stops every actor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for host in list(self._hosts.values()):
            host.running = False
        await asyncio.get_running_loop().run_in_executor(None, self._engine.stop)
        for host in list(self._hosts.values()):
            await host.stop()
        self._hosts.clear()

    async def __aenter__(self) -> "AsyncNode":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def connect(broker: Optional[str] = None, node_id: Optional[str] = None, *,
                  connect_timeout: float = 5.0, **options: Any) -> AsyncNode:
    """Makes an AsyncNode and waits up to connect_timeout seconds for the
    broker's welcome (0: do not wait). Options as troupe.Node's."""
    node = AsyncNode(broker, node_id, **options)
    if connect_timeout:
        try:
            await node.wait_connected(connect_timeout)
        except BaseException:
            await node.close()
            raise
    return node
