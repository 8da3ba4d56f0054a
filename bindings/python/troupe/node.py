"""The blocking API: a Node joins a broker and hosts actors; each actor
handles one message at a time on a thread of its own, as in the C
runtime. Every call that waits takes a timeout, and nothing waits
forever: an ask returns the reply or raises why not (troupe.Timeout,
troupe.NoSuchActor, troupe.NodeDown, troupe.CircuitOpen...).

    import troupe

    with troupe.Node("tcp://127.0.0.1:7700") as node:
        @node.actor("greeter")
        def greeter(msg):
            return "hello " + msg.body        # an ask's reply

        print(node.ask("echo", {"n": 1}, timeout=2.0))
        node.kv.put("config/mode", "fast")
        node.publish("news.python", {"up": True})
        node.run()                            # until Ctrl-C or close()
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterator, List, Optional, Tuple, Union)

import zmq

from . import codec, curve, errors
from .codec import ASK, ERROR, REPLY, TELL, Envelope
from .engine import (CallerWaiter, Completion, Engine, EventSink, Host, Waiter, WatchSink,
                     default_node_id, now_us)

log = logging.getLogger("troupe")

_EHANDLER = errors.CODES["EHANDLER"]
_ESTOPPED = errors.CODES["ESTOPPED"]

#: The broker a node joins when none is given and TROUPE_BROKER is unset.
DEFAULT_BROKER = "tcp://127.0.0.1:7700"
#: A mailbox's bound when none is given (as the C runtime's).
DEFAULT_MAILBOX = 1024
#: How long an ask waits when no timeout is given, in seconds.
DEFAULT_TIMEOUT = 5.0

Handler = Callable[["Message"], Any]


class Message:
    """What a handler gets: one tell or ask.

    ``body`` is the payload as Python values (decoded on first use;
    ``raw_body`` holds its msgpack bytes), ``sender`` the asking actor's
    name ("" for an anonymous sender, "$node.ID" for a node's caller),
    ``is_ask`` whether an answer is expected. For an ask, the handler's
    return value is the reply, unless it called :meth:`reply`,
    :meth:`fail` or :meth:`defer` first; an exception it raises answers
    the asker with its code (a TroupeError's own, else TR_EHANDLER)."""

    __slots__ = ("_env", "_node", "_actor", "_answered", "_deferred", "_body")

    def __init__(self, env: Envelope, node: "_NodeBase", actor: str) -> None:
        self._env = env
        self._node = node
        self._actor = actor
        self._answered = False
        self._deferred = False
        self._body: Any = _UNSET

    @property
    def body(self) -> Any:
        """The payload as Python values (None for an empty body)."""
        if self._body is _UNSET:
            self._body = codec.unpack_value(self._env.body)
        return self._body

    @property
    def raw_body(self) -> bytes:
        """The payload's msgpack bytes, as they arrived (b"": no body)."""
        return self._env.body

    @property
    def sender(self) -> str:
        return self._env.sender

    @property
    def to(self) -> str:
        return self._env.to

    @property
    def is_ask(self) -> bool:
        return self._env.kind == ASK

    @property
    def id(self) -> int:
        return self._env.id

    @property
    def trace(self) -> int:
        return self._env.trace

    @property
    def priority(self) -> int:
        return self._env.priority

    @property
    def deadline(self) -> Optional[float]:
        """Unix time (seconds) after which the asker stops waiting, or None."""
        return self._env.deadline / 1e6 if self._env.deadline else None

    @property
    def answered(self) -> bool:
        return self._answered

    def reply(self, value: Any = None) -> None:
        """Answers the ask with value (any msgpack-able value, or
        codec.Raw). From any thread; once. Raises troupe.InvalidArgument
        for a tell or a second answer."""
        self._answer(REPLY, codec.pack_value(value), 0)

    def fail(self, error: Union[int, errors.TroupeError], detail: str = "") -> None:
        """Answers the ask with an error: a negative code or a
        TroupeError (its code)."""
        code = error.code if isinstance(error, errors.TroupeError) else int(error)
        if code >= 0:
            raise errors.InvalidArgument("an error code is negative")
        self._answer(ERROR, b"", code)

    def defer(self) -> "Message":
        """Keeps the ask for later: the handler returns without answering
        and someone calls reply() or fail() later, from any thread (the
        asker waits until its own deadline)."""
        self._deferred = True
        return self

    def _answer(self, kind: int, body: bytes, code: int) -> None:
        if self._env.kind != ASK:
            raise errors.InvalidArgument("a tell is not answered")
        if self._answered:
            raise errors.InvalidArgument("this ask is answered already")
        self._answered = True
        env = Envelope(kind, 0, self._env.sender, self._actor, corr=self._env.id,
                       trace=self._env.trace, priority=self._env.priority, error=code, body=body)
        self._node._send_answer(env)

    def __repr__(self) -> str:
        kind = "ask" if self.is_ask else "tell"
        return "<troupe.Message %s %s -> %s %r>" % (kind, self.sender or "-", self.to,
                                                     self._env.body[:32])


_UNSET = object()


class Actor:
    """Base of actors written as classes. Override :meth:`handle`, and
    :meth:`started` / :meth:`stopped` if needed. ``name`` and ``node``
    are set when it is spawned; ``tell`` and ``ask`` send from its name,
    so answers come back to it."""

    name: str = ""
    node: Any = None

    def started(self) -> None:
        """Called on the actor's thread before its first message."""

    def handle(self, msg: Message) -> Any:
        """Handles one message; for an ask, the return value is the reply."""
        raise NotImplementedError

    def stopped(self) -> None:
        """Called on the actor's thread after its last message."""

    def tell(self, to: str, body: Any = None, **kw: Any) -> None:
        """node.tell from this actor's name."""
        self.node.tell(to, body, sender=self.name, **kw)

    def ask(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT, **kw: Any) -> Any:
        """node.ask from this actor's name."""
        return self.node.ask(to, body, timeout=timeout, sender=self.name, **kw)


class _FunctionActor(Actor):
    def __init__(self, fn: Handler) -> None:
        self._fn = fn

    def handle(self, msg: Message) -> Any:
        return self._fn(msg)


_STOP = object()


class _ThreadHost(Host):
    """An actor on a thread of its own with a bounded mailbox."""

    def __init__(self, node: "Node", name: str, actor: Actor, bound: int, inline: bool) -> None:
        self.node = node
        self.name = name
        self.actor = actor
        self.bound = bound
        self.inline = inline
        self.queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.depth = 0
        self.lock = threading.Lock()
        self.handled = 0
        self.failed = 0
        self.thread: Optional[threading.Thread] = None
        self.running = True
        #  A function spawned as an actor is called as it is.
        self._fn = actor._fn if type(actor) is _FunctionActor else None
        if not inline:
            self.thread = threading.Thread(target=self._run, name="troupe-actor-" + name,
                                           daemon=True)
            self.thread.start()

    def post(self, env: Envelope) -> bool:
        if self.inline:
            self._handle(env)                   # the engine judged its deadline just now
            return True
        with self.lock:
            if self.depth >= self.bound or not self.running:
                return False
            self.depth += 1
        self.queue.put(env)
        return True

    def stop(self) -> None:
        self.running = False
        if self.thread is not None:
            self.queue.put(_STOP)
            if threading.current_thread() is not self.thread:
                self.thread.join(5.0)
        else:
            self._safe(self.actor.stopped)

    def _safe(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("troupe: actor '%s'", self.name)

    def _run(self) -> None:
        self._safe(self.actor.started)
        q = self.queue
        while True:
            env = q.get()
            if env is _STOP:
                break
            with self.lock:
                self.depth -= 1
            self.handle(env)
        #  What is left was never handled: its askers learn it now.
        while True:
            try:
                env = q.get_nowait()
            except queue.Empty:
                break
            if env is not _STOP and env.kind == ASK:
                Message(env, self.node, self.name).fail(_ESTOPPED)
        self._safe(self.actor.stopped)

    def handle(self, env: Envelope) -> None:
        if env.kind == ASK and env.deadline and now_us() > env.deadline:
            return                              # its asker stopped waiting (1.3)
        self._handle(env)

    def _handle(self, env: Envelope) -> None:
        msg = Message(env, self.node, self.name)
        try:
            fn = self._fn
            result = fn(msg) if fn is not None else self.actor.handle(msg)
        except errors.TroupeError as e:
            self.failed += 1
            if msg.is_ask and not msg._answered:
                msg.fail(e.code)
            log.warning("troupe: actor '%s' failed: %s", self.name, e)
            return
        except Exception:
            self.failed += 1
            log.exception("troupe: actor '%s' failed handling a %s from '%s'", self.name,
                          "ask" if msg.is_ask else "tell", msg.sender)
            if msg.is_ask and not msg._answered:
                msg.fail(_EHANDLER)
            return
        self.handled += 1
        if env.kind == ASK and not msg._answered and not msg._deferred:
            try:
                msg.reply(result)
            except errors.TroupeError as e:
                log.error("troupe: actor '%s' returned a reply that cannot be sent: %s",
                          self.name, e)
                msg._answered = False
                msg.fail(e.code)


@dataclass(frozen=True)
class Entry:
    """A scratchpad value with its version and time left (ms, 0: none)."""
    value: Any
    version: int
    ttl_ms: int


@dataclass(frozen=True)
class Change:
    """A change under a watched prefix: the key's new version and value;
    ``deleted`` for a removal or an expiry (value None)."""
    key: str
    version: int
    value: Any
    deleted: bool


@dataclass(frozen=True)
class Resync:
    """The broker could not keep up with a watch (KV_RESYNC): changes go
    on from the present; read again what you need."""
    prefix: str


@dataclass(frozen=True)
class Event:
    """An event: its topic, the publishing node's id, its body, and how
    many events the broker dropped before it for this subscriber."""
    topic: str
    sender: str
    body: Any
    dropped: int = 0


class _QueueSink:
    """Events or changes queued for a reader, or handed to a callback on
    a thread of its own."""

    def __init__(self, node: "_NodeBase", prefix: str,
                 callback: Optional[Callable[[Any], None]]) -> None:
        self.node = node
        self.prefix = prefix
        self.queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.callback = callback
        self.closed = False
        if callback is not None:
            threading.Thread(target=self._pump, daemon=True,
                             name="troupe-%s-%s" % (type(self).__name__.lower(), prefix)).start()

    def _put(self, item: Any) -> None:
        self.queue.put(item)

    def _pump(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            try:
                self.callback(item)
            except Exception:
                log.exception("troupe: a callback on '%s' failed", self.prefix)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The next item; troupe.Timeout after timeout seconds, troupe.Closed
        once closed."""
        if self.closed and self.queue.empty():
            raise errors.Closed("closed")
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise errors.Timeout("nothing on '%s' within %.3g s" % (self.prefix, timeout)) from None
        if item is _STOP:
            self.queue.put(_STOP)
            raise errors.Closed("closed")
        return item

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.get()
            except errors.Closed:
                return

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class Subscription(_QueueSink, EventSink):
    """Events whose topic starts with a prefix: iterate, or get(timeout)
    each :class:`Event`, or give a callback. close() unsubscribes."""

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
            try:
                self.node._engine.post(lambda: self.node._engine.unsubscribe(self))
            except errors.Closed:
                pass
            self.queue.put(_STOP)


class Watch(_QueueSink, WatchSink):
    """Scratchpad changes under a prefix, in version order: iterate, or
    get(timeout) each :class:`Change` (or :class:`Resync`), or give a
    callback. ``at`` is the version the watch started after. After a
    reconnection it resumes after the last change seen. close() ends it."""

    at: int = 0

    def change(self, key: str, version: int, value: Optional[bytes]) -> None:
        try:
            v = codec.unpack_value(value) if value is not None else None
        except errors.TroupeError:
            log.warning("troupe: dropped a change of '%s' whose value is malformed", key)
            return
        self._put(Change(key, version, v, value is None))

    def resync(self) -> None:
        self._put(Resync(self.prefix))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.node._engine.post(lambda: self.node._engine.unwatch(self))
            except errors.Closed:
                pass
            self.queue.put(_STOP)


def _ttl_ms(ttl: Optional[float]) -> int:
    if ttl is None or ttl == 0:
        return 0
    if ttl < 0:
        raise errors.InvalidArgument("a time to live is positive (seconds)")
    return max(1, int(round(ttl * 1000)))


def _check_key(key: str) -> str:
    return codec.check_text(key, 1, 1024, "the key")


def _parse_get(cmd: codec.Command) -> Entry:
    value, version, ttl = codec.args_of(cmd.raw_args[:3])
    return Entry(value, int(version), int(ttl))


def _parse_version(cmd: codec.Command) -> int:
    v = cmd.arg(0)
    if not isinstance(v, int):
        raise ValueError("no version")
    return v


def _parse_list(cmd: codec.Command) -> List[Tuple[str, int]]:
    return [(k, v) for k, v in cmd.arg(0)]


def _parse_snapshot(cmd: codec.Command) -> Tuple[int, Dict[str, Tuple[int, Any]]]:
    at, items = cmd.arg(0), cmd.arg(1)
    return at, {k: (v, value) for k, v, value in items}


class Scratchpad:
    """The troupe's shared key-value store, kept by the broker
    (2-broker.md 2.4.4). Keys are 1 to 1,024 bytes without spaces or
    control characters; values any msgpack-able value; every write gets a
    version higher than all before it. Reached as ``node.kv``.

    A write whose answer did not come in time raises troupe.Timeout and
    may or may not have been done."""

    def __init__(self, node: "_NodeBase") -> None:
        self._node = node

    def get(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> Entry:
        """The key's value, version and time left; troupe.NotFound if
        missing or expired."""
        return self._node._call("KV_GET", (_check_key(key),), None, timeout, _parse_get)

    def put(self, key: str, value: Any, ttl: Optional[float] = None,
            timeout: float = DEFAULT_TIMEOUT) -> int:
        """Stores value (for ttl seconds if given); returns its version."""
        return self._node._call("KV_PUT", (_check_key(key), _ttl_ms(ttl)),
                                codec.pack_value(value), timeout, _parse_version)

    def cas(self, key: str, expected: int, value: Any, ttl: Optional[float] = None,
            timeout: float = DEFAULT_TIMEOUT) -> int:
        """Stores value only if the key is at version `expected` (0: only
        if it does not exist); returns the new version, or raises
        troupe.Conflict and nothing changes."""
        if not isinstance(expected, int) or expected < 0:
            raise errors.InvalidArgument("expected is a version (0: the key must not exist)")
        return self._node._call("KV_CAS", (_check_key(key), expected, _ttl_ms(ttl)),
                                codec.pack_value(value), timeout, _parse_version)

    def delete(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Removes the key; returns the removal's version (troupe.NotFound
        if missing)."""
        return self._node._call("KV_DEL", (_check_key(key),), None, timeout, _parse_version)

    def list(self, prefix: str = "", timeout: float = DEFAULT_TIMEOUT) -> List[Tuple[str, int]]:
        """The live keys under prefix with their versions, in byte order."""
        codec.check_text(prefix, 0, 1024, "the prefix")
        return self._node._call("KV_LIST", (prefix,), None, timeout, _parse_list)

    def snapshot(self, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
                 ) -> Tuple[int, Dict[str, Tuple[int, Any]]]:
        """(AT, {key: (version, value)}): the keys under prefix and the
        scratchpad's version when they were read; watch(prefix, AT) then
        gives every change after it."""
        codec.check_text(prefix, 0, 1024, "the prefix")
        return self._node._call("KV_SNAPSHOT", (prefix,), None, timeout, _parse_snapshot)

    def watch(self, prefix: str = "", from_version: int = 0,
              callback: Optional[Callable[[Any], None]] = None,
              timeout: float = DEFAULT_TIMEOUT) -> Watch:
        """Every change under prefix with a version above from_version (0:
        from now), in version order (see :class:`Watch`)."""
        codec.check_text(prefix, 0, 1024, "the prefix")
        w = Watch(self._node, prefix, callback)
        waiter = Waiter()
        eng = self._node._engine
        eng.post(lambda: eng.watch(w, from_version, waiter))
        try:
            w.at = waiter.wait(timeout, "KV_WATCH %s" % prefix) or from_version
        except BaseException:
            w.close()
            raise
        return w


class _NodeBase:
    """What both front-ends share: options, the engine, the CURVE keys."""

    def __init__(self, broker: Optional[str], node_id: Optional[str], kind: str,
                 heartbeat_ms: int, curve_secret: Optional[str], server_key: Optional[str],
                 mailbox: int, context: Optional[zmq.Context]) -> None:
        endpoint = broker or os.environ.get("TROUPE_BROKER") or DEFAULT_BROKER
        curve_secret = curve_secret or os.environ.get("TROUPE_CURVE_SECRET") or None
        server_key = server_key or os.environ.get("TROUPE_SERVER_KEY") or None
        keys = None
        if curve_secret or server_key:
            if not (curve_secret and server_key):
                raise errors.InvalidArgument("CURVE needs both curve_secret (this client's secret "
                                             "key file) and server_key (the broker's public key "
                                             "file)")
            public, secret = curve.read_secret(curve_secret)
            keys = (curve.read_public(server_key), public, secret)
        if mailbox < 1:
            raise errors.InvalidArgument("a mailbox holds at least one message")
        self.mailbox = mailbox
        self._engine = Engine(endpoint, node_id or default_node_id(), kind, heartbeat_ms, keys,
                              context)
        self.kv = Scratchpad(self)

    @property
    def node_id(self) -> str:
        return self._engine.node_id

    @property
    def endpoint(self) -> str:
        return self._engine.endpoint

    @property
    def connected(self) -> bool:
        """True while greeted by the broker."""
        return self._engine.connected.is_set()

    @property
    def stats(self) -> Dict[str, int]:
        """Counters: sent, received, dead_letters, disconnects, greetings..."""
        eng = self._engine
        if eng.in_io():
            return dict(eng.stats)
        with eng.io():                          # the engine changes them under its lock
            return dict(eng.stats)

    def _send_answer(self, env: Envelope) -> None:
        eng = self._engine
        if eng.in_io():                         # an inline actor: no hand-off
            env.id = eng.next_id()
            eng.route(env)
            return

        def send() -> None:
            env.id = eng.next_id()
            eng.route(env)
        try:
            eng.post(send)
        except errors.Closed:
            #  The node closed while the handler ran: nothing can be sent,
            #  and the asker learns it from its own deadline or NODE_DOWN.
            log.debug("troupe: an answer to '%s' after the node closed", env.to)

    def _envelope(self, kind: int, to: str, body: Any, sender: Optional[str], priority: int,
                  trace: int, timeout: Optional[float]) -> Envelope:
        codec.check_name(to, "to")
        if sender:
            codec.check_name(sender, "sender")
        if priority not in (-1, 0, 1):
            raise errors.InvalidArgument("priority is -1 (low), 0 or 1 (high)")
        deadline = time.time_ns() // 1000 + int(timeout * 1e6) if timeout else 0
        return Envelope(kind, 0, to, sender or self._engine.reply_name, 0, deadline, priority,
                        trace, 0, codec.pack_value(body) if body is not None else b"\xc0")


class Node(_NodeBase):
    """A process's link to a troupe broker (blocking API).

    broker: the endpoint (default: TROUPE_BROKER, else
    tcp://127.0.0.1:7700). node_id: unique in the troupe (default
    py-HOST:PID). curve_secret / server_key: this client's secret key file
    and the broker's public key file, for a broker that uses CURVE
    (default: TROUPE_CURVE_SECRET and TROUPE_SERVER_KEY). heartbeat_ms:
    the interval proposed (the broker's wins). mailbox: the default
    bound of its actors' mailboxes.

    The constructor connects and waits up to connect_timeout seconds for
    the broker's welcome (0: do not wait; the node connects and
    reconnects by itself). It raises troupe.AccessDenied when a CURVE
    broker refuses this client's key, the broker's refusal (for example
    troupe.VersionMismatch), or troupe.Timeout when the broker stays
    silent (no broker there, or a CURVE broker that does not know this
    client: such a broker says nothing at all). close() (or leaving a
    with block) says goodbye and stops every actor."""

    def __init__(self, broker: Optional[str] = None, node_id: Optional[str] = None, *,
                 kind: str = "actor", heartbeat_ms: int = 1000,
                 curve_secret: Optional[str] = None, server_key: Optional[str] = None,
                 mailbox: int = DEFAULT_MAILBOX, connect_timeout: float = 5.0,
                 context: Optional[zmq.Context] = None) -> None:
        super().__init__(broker, node_id, kind, heartbeat_ms, curve_secret, server_key, mailbox,
                         context)
        self._hosts: Dict[str, _ThreadHost] = {}
        self._closed = threading.Event()
        self._closing = False                   # close() began (read without a lock)
        self._engine.start()
        if connect_timeout:
            try:
                self.wait_connected(connect_timeout)
            except BaseException:
                self.close()
                raise

    def wait_connected(self, timeout: float = 5.0) -> None:
        """Waits until the broker has welcomed this node (see the class's
        comment for what is raised)."""
        eng = self._engine
        deadline = time.monotonic() + timeout
        while not eng.connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if isinstance(eng.refusal, errors.AccessDenied):
                raise eng.refusal
            if time.monotonic() >= deadline:
                if eng.refusal is not None:
                    raise eng.refusal
                hint = (" (a CURVE broker says nothing to a client whose key it does not allow)"
                        if eng.curve else "")
                raise errors.Timeout("no broker answered at %s within %.3g s%s"
                                     % (eng.endpoint, timeout, hint))

    # ------------------------------------------------------------------
    # Actors

    def spawn(self, name: str, actor: Union[Actor, Handler], *, mailbox: Optional[int] = None,
              inline: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Actor:
        """Hosts an actor under name: an Actor, or a function taking a
        Message (its return value answers an ask). Returns once the broker
        holds the name (troupe.NameTaken if another client does,
        troupe.InvalidArgument for a bad name). Its handler runs on a
        thread of its own, one message at a time; with inline=True on the
        node's I/O thread instead (fastest; for handlers that never wait:
        a blocking ask there raises troupe.WouldDeadlock)."""
        codec.check_name(name, "the actor's name")
        if name.startswith("$"):
            raise errors.InvalidArgument("names starting with '$' are troupe's own")
        if not isinstance(actor, Actor):
            if not callable(actor):
                raise errors.InvalidArgument("an actor is an Actor or a function")
            actor = _FunctionActor(actor)
        actor.name, actor.node = name, self
        host = _ThreadHost(self, name, actor, mailbox or self.mailbox, inline)
        if inline:
            self._engine.post(lambda: host._safe(actor.started))
        waiter = Waiter()
        eng = self._engine
        eng.post(lambda: eng.add_host(host, waiter))
        try:
            waiter.wait(timeout, "REGISTER %s" % name)
        except errors.Timeout:
            #  Kept: registered once the broker answers (or comes back).
            self._hosts[name] = host
            raise
        except BaseException:
            host.stop()
            raise
        self._hosts[name] = host
        return actor

    def actor(self, name: str, **kw: Any) -> Callable[[Handler], Handler]:
        """A decorator: ``@node.actor("name")`` spawns the function as an
        actor (see spawn)."""
        def wrap(fn: Handler) -> Handler:
            self.spawn(name, fn, **kw)
            return fn
        return wrap

    def stop_actor(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Unregisters the actor and stops it once its current message is
        handled; asks still in its mailbox fail with troupe.ActorStopped."""
        host = self._hosts.pop(name, None)
        if host is None:
            raise errors.NoSuchActor("'%s' is not an actor of this node" % name)
        waiter = Waiter()
        eng = self._engine
        eng.post(lambda: eng.remove_host(name, waiter))
        try:
            waiter.wait(timeout, "UNREGISTER %s" % name)
        finally:
            host.stop()

    # ------------------------------------------------------------------
    # Messages

    def tell(self, to: str, body: Any = None, *, sender: Optional[str] = None,
             priority: int = 0, trace: int = 0) -> None:
        """Sends body to the actor `to`, wherever it runs, without waiting
        (fire and forget: a tell that cannot be delivered is counted as a
        dead letter)."""
        env = self._envelope(TELL, to, body, sender, priority, trace, None)
        eng = self._engine

        def send() -> None:
            env.id = eng.next_id()
            eng.route(env)
        eng.post(send)

    def ask(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT, *,
            sender: Optional[str] = None, priority: int = 0, trace: int = 0) -> Any:
        """Asks the actor `to` and returns its reply's body, or raises why
        not: troupe.Timeout (no answer within timeout seconds),
        troupe.NoSuchActor, troupe.NodeDown (its node died meanwhile),
        troupe.CircuitOpen, troupe.MailboxFull, troupe.HandlerFailed, or
        the error the actor answered."""
        return codec.unpack_value(self._ask(to, body, timeout, sender, priority, trace).body)

    def ask_message(self, to: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT, *,
                    sender: Optional[str] = None, priority: int = 0,
                    trace: int = 0) -> Message:
        """As ask, returning the whole reply (sender, trace, raw_body)."""
        reply = self._ask(to, body, timeout, sender, priority, trace)
        return Message(reply, self, reply.to)

    def _ask(self, to: str, body: Any, timeout: float, sender: Optional[str], priority: int,
             trace: int) -> Envelope:
        """ask and ask_message: the reply's envelope, or raises."""
        eng = self._engine
        if eng.in_io():
            raise errors.WouldDeadlock("a blocking ask from an inline actor would wait on the "
                                       "thread that must answer it")
        if self._closing or eng.closed:
            raise errors.Closed("the node is closed")
        env = self._envelope(ASK, to, body, sender, priority, trace, timeout)
        #  This thread sends the ask and reads the answer itself
        #  (Engine.serve_until): no hand-off to the engine's thread.
        waiter = CallerWaiter()
        if not eng.serve_until(waiter, timeout, ask=env):
            with eng.io():
                eng.forget(env.id)
            if not waiter.finished:
                raise errors.Timeout("ask to '%s': no answer within %.3g s" % (to, timeout))
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    # ------------------------------------------------------------------
    # Events

    def publish(self, topic: str, body: Any = None) -> None:
        """Publishes an event to every subscriber whose prefix matches
        topic (1 to 255 bytes, no spaces; not under 'sys.', which is
        troupe's own), on every node, this one included."""
        codec.check_text(topic, 1, 255, "the topic")
        if topic.startswith("sys.") and self._engine.kind != "node":
            raise errors.InvalidArgument("topics under 'sys.' are troupe's own")
        data = codec.pack_value(body) if body is not None else b""
        eng = self._engine
        eng.post(lambda: eng.publish(topic, data))

    def subscribe(self, prefix: str = "", callback: Optional[Callable[[Event], None]] = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Subscription:
        """Every event whose topic starts with prefix ("" for all, sys.*
        included), from now on: a Subscription to iterate, or callback
        called with each Event on a thread of its own. Returns once the
        broker has the subscription."""
        codec.check_text(prefix, 0, 255, "the prefix")
        sub = Subscription(self, prefix, callback)
        waiter = Waiter()
        eng = self._engine
        eng.post(lambda: eng.subscribe(sub, waiter))
        try:
            waiter.wait(timeout, "SUB %s" % prefix)
        except BaseException:
            sub.close()
            raise
        return sub

    # ------------------------------------------------------------------
    # The broker

    def nodes(self, timeout: float = DEFAULT_TIMEOUT) -> List[Dict[str, Any]]:
        """The clients joined to the broker: [{"id", "kind", "names",
        "age_ms"}...]."""
        return self._call("NODES", (), None, timeout, lambda cmd: cmd.arg(0))

    def _call(self, verb: str, args: Tuple[Any, ...], payload: Optional[bytes],
              timeout: float, parse: Callable[[codec.Command], Any]) -> Any:
        if self._engine.in_io():
            raise errors.WouldDeadlock("a blocking request from an inline actor")
        waiter = Waiter()
        eng = self._engine
        eng.post(lambda: eng.call(verb, args, payload, waiter, parse))
        return waiter.wait(timeout, verb)

    # ------------------------------------------------------------------
    # Running and stopping

    def run(self, duration: Optional[float] = None) -> None:
        """Waits (serving the actors) until close(), SIGINT or SIGTERM, or
        for duration seconds; then closes the node."""
        stop = threading.Event()
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            deadline = time.monotonic() + duration if duration else None
            while not stop.is_set() and not self._closed.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                stop.wait(0.2 if left is None else min(0.2, left))
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.close()

    def close(self) -> None:
        """Leaves the broker (BYE) and stops every actor; waiting calls
        fail with troupe.Closed. Idempotent."""
        if self._closed.is_set():
            return
        self._closing = True
        self._closed.set()
        self._engine.stop()
        for host in list(self._hosts.values()):
            host.stop()
        self._hosts.clear()

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
