"""The link to the broker: one I/O thread per node that owns the DEALER
socket and speaks protocols/2-broker.md on it (greeting, heartbeats,
liveness, reconnection with jittered backoff, names, routing, events,
the scratchpad). Both front-ends (troupe.Node, blocking, and
troupe.aio.AsyncNode) drive the same engine.

Threads. The socket and the tables below are used only under the
engine's lock (:meth:`Engine.io`). The engine's thread waits, without
the lock, on the socket's ZMQ_FD and on a pipe; other threads hand it
work with :meth:`Engine.post` (a deque and a byte on that pipe), and the
engine answers through completions (:class:`Completion`) that a waiting
thread or an asyncio loop turns into results. A thread that asks and
waits (troupe.Node.ask) serves the socket itself meanwhile
(:meth:`Engine.serve_until`): it sends its ask and reads the answer
without handing either to the engine's thread, which stops watching the
socket while such a thread does, and until a whole look (2 ms) has
passed without one beginning to (a thread asking in a loop keeps the
socket; the engine's thread still reads it at each look). Whoever uses
the socket reads it until it is empty before letting go of the lock, so
that ZMQ_FD, which signals changes and not states, never hides a
message. Actors' handlers never run under the lock unless spawned
``inline``. Frames go through pyzmq's compiled socket methods, not its
Python layer, and the timers (:meth:`Engine._tick`) run when due, not at
every wake-up.

Behaviour, as 2-broker.md gives it and the C node (runtime/tr_remote.c)
does it:

- HELLO first; once greeted, the node's names (and ``$node.NODE_ID``, the
  address of answers to senders that are not actors) are registered
  again, subscriptions and scratchpad watches renewed (watches from the
  last version seen), requests that waited sent, messages that waited
  sent in order.
- HEARTBEAT after H of sending nothing; the broker is dead after 3H of
  hearing nothing: the socket is closed and opened again after a backoff
  of 100 ms doubling to 5 s, +/-20%. Requests sent and not answered
  then fail with TR_ETIMEDOUT (whether the broker did them is unknown,
  2.2); asks wait until their own deadlines.
- ERROR TR_EPROTO once greeted: the broker forgot this connection; greet
  again (2.3).
- BOUNCE fails the ask it carries with the broker's code at once;
  NODE_DOWN fails the asks to the names it lists with TR_ENODE.
- Messages to a name this node holds never leave the process.
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import os
import random
import select
import socket
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

import zmq

from . import codec, errors
from .codec import ASK, ERROR, REPLY, TELL, Envelope, decode_envelope

log = logging.getLogger("troupe")

_ENOACTOR = errors.CODES["ENOACTOR"]
_EFULL = errors.CODES["EFULL"]
_ETIMEDOUT = errors.CODES["ETIMEDOUT"]
_EPROTO = errors.CODES["EPROTO"]
_ENODE = errors.CODES["ENODE"]
_EEXPIRED = errors.CODES["EEXPIRED"]

BACKOFF_MIN_MS = 100
BACKOFF_MAX_MS = 5000
HELD_MAX = 10000            # messages kept while the broker is away
SWEEP_S = 0.1               # how often expired asks are forgotten
PROTOCOL = (1, 0)           # the version this binding speaks
#  pyzmq's constants as plain ints: its enums cost an object per "&".
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK_MORE = _NOBLOCK | _SNDMORE
#  A frame's send, recv and getsockopt as pyzmq's compiled socket class
#  has them: the Python layer over them (zmq.Socket) costs microseconds
#  per call in checks this engine has no use for (frames are bytes, flags
#  ints). zmq.Socket derives from that class; if some pyzmq does not,
#  its Python methods do the same.
try:
    from zmq.backend import Socket as _ZSocket
    if not issubclass(zmq.Socket, _ZSocket):
        raise ImportError("zmq.Socket does not derive from zmq.backend.Socket")
    _zsend, _zrecv, _zget = _ZSocket.send, _ZSocket.recv, _ZSocket.get
except (ImportError, AttributeError):                   # pragma: no cover
    _zsend, _zrecv, _zget = zmq.Socket.send, zmq.Socket.recv, zmq.Socket.getsockopt
#  ["DELIVER", 0] in canonical form: the frame that comes most often.
_DELIVER = codec.encode_command("DELIVER", 0)


def now_us() -> int:
    """Unix time in microseconds (the envelope's deadline clock)."""
    return time.time_ns() // 1000


class Completion:
    """How the engine gives an answer back: ``done(value, error)`` is
    called once, on the engine's thread. Subclasses wake a thread or
    resolve an asyncio future."""

    __slots__ = ()

    def done(self, value: Any, error: Optional[BaseException]) -> None:
        raise NotImplementedError


class Waiter(Completion):
    """A Completion a thread waits on (a lock released by done)."""

    __slots__ = ("_lock", "value", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        self.error: Optional[BaseException] = None

    def done(self, value: Any, error: Optional[BaseException]) -> None:
        self.value, self.error = value, error
        try:
            self._lock.release()
        except RuntimeError:
            pass                            # done twice: the first wins

    def wait(self, timeout: Optional[float], what: str) -> Any:
        """The value, or raises the error; troupe.Timeout after timeout
        seconds (None: no bound)."""
        if not self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise errors.Timeout("%s: no answer within %.3g s" % (what, timeout))
        if self.error is not None:
            raise self.error
        return self.value


class _ThreadPipe:
    """A pipe of one thread, on which completions wake it while it serves
    the socket itself (Engine.serve_until); closed with the thread."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        self._fd = -2
        self._ps: Any = None

    def pollset(self, sock_fd: int) -> Any:
        """A select.poll of this pipe and sock_fd (-1: none), kept while
        the socket stays the same."""
        if sock_fd != self._fd:
            self._ps = select.poll()
            self._ps.register(self.r, select.POLLIN)
            if sock_fd >= 0:
                self._ps.register(sock_fd, select.POLLIN)
            self._fd = sock_fd
        return self._ps

    def __del__(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


_pipes = threading.local()


def _thread_pipe() -> _ThreadPipe:
    pipe = getattr(_pipes, "pipe", None)
    if pipe is None:
        pipe = _pipes.pipe = _ThreadPipe()
    return pipe


class CallerWaiter(Completion):
    """A Completion for a thread that serves the socket itself while it
    waits (Engine.serve_until): done on another thread writes a byte to
    the waiting thread's pipe."""

    __slots__ = ("finished", "value", "error", "pipe", "owner")

    def __init__(self) -> None:
        self.finished = False
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.pipe = _thread_pipe()
        self.owner = threading.get_ident()

    def done(self, value: Any, error: Optional[BaseException]) -> None:
        if self.finished:
            return
        self.value, self.error = value, error
        self.finished = True
        if threading.get_ident() != self.owner:
            try:
                os.write(self.pipe.w, b"\0")
            except BlockingIOError:
                pass


class _Call:
    """A request to the broker waiting for its OK or ERROR."""

    __slots__ = ("verb", "args", "payload", "completion", "seq", "parse")

    def __init__(self, verb: str, args: Tuple[Any, ...], payload: Optional[bytes],
                 completion: Optional[Completion], parse: Optional[Callable[[codec.Command], Any]]):
        self.verb, self.args, self.payload = verb, args, payload
        self.completion, self.parse, self.seq = completion, parse, 0


class _Pending:
    """An ask sent, waiting for its reply or error."""

    __slots__ = ("to", "completion", "deadline")

    def __init__(self, to: str, completion: Completion, deadline: float):
        self.to, self.completion, self.deadline = to, completion, deadline


class Host:
    """What the engine needs of a local actor (troupe.node's and
    troupe.aio's actor records): ``post(env)`` queues an envelope for
    the actor's handler and returns False when its mailbox is full."""

    name: str

    def post(self, env: Envelope) -> bool:
        raise NotImplementedError


class EventSink:
    """A subscription: ``push(topic, sender, body_bytes, dropped)`` on
    the engine's thread."""

    prefix: str

    def push(self, topic: str, sender: str, body: bytes, dropped: int) -> None:
        raise NotImplementedError


class WatchSink:
    """A scratchpad watch: ``change(key, version, value_bytes or None)``
    and ``resync()`` on the engine's thread."""

    prefix: str

    def change(self, key: str, version: int, value: Optional[bytes]) -> None:
        raise NotImplementedError

    def resync(self) -> None:
        raise NotImplementedError


def default_node_id() -> str:
    """HOST:PID with a py- prefix, as a node's default id is host:pid."""
    return "py-%s:%d" % (socket.gethostname(), os.getpid())


class Engine:
    """The node's link (see the module's comment). Create, then
    :meth:`start`; :meth:`stop` ends the thread and closes the socket."""

    def __init__(self, endpoint: str, node_id: str, kind: str = "actor",
                 heartbeat_ms: int = 1000, curve: Optional[Tuple[bytes, bytes, bytes]] = None,
                 context: Optional[zmq.Context] = None) -> None:
        codec.check_name(node_id, "node id")
        if kind not in ("node", "actor", "client"):
            raise errors.InvalidArgument("kind must be node, actor or client")
        if not 100 <= heartbeat_ms <= 60000:
            raise errors.InvalidArgument("heartbeat_ms must be 100 to 60000")
        if "://" not in endpoint:
            raise errors.InvalidArgument("the broker endpoint %r has no transport "
                                         "(tcp://HOST:PORT, ipc://PATH)" % endpoint)
        self.endpoint = endpoint
        self.node_id = node_id
        self.kind = kind
        self.reply_name = "$node." + node_id
        codec.check_name(self.reply_name, "reply address")
        self.proposed_heartbeat_ms = heartbeat_ms
        self.heartbeat_ms = heartbeat_ms
        self.curve = curve                      # (server public, our public, our secret)
        self.ctx = context or zmq.Context.instance()
        self.broker_id = ""
        self.limits: Dict[str, int] = {}
        #  Cross-thread hand-off.
        self._posted: Deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self.closed = False
        #  Connection state (engine thread only from here on).
        self.sock: Optional[zmq.Socket] = None
        self.sock_fd = -1                       # its ZMQ_FD, -1 without a socket
        self.monitor: Optional[zmq.Socket] = None
        self.greeted = False
        self.hello_seq = 0
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.retry_at = 0.0
        self.backoff_ms = 0
        self.lock = threading.Lock()
        self._inside = threading.local()        # .on: this thread holds the lock
        self._io = Engine._IO(self)
        self.callers = 0                        # threads serving the socket meanwhile
        self.watching = False                   # the engine's thread waits on ZMQ_FD
        self.served = 0                         # times a caller began serving it
        self._pollsets: Dict[Tuple[int, int, bool], Any] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        #  What the node holds and waits for.
        self.hosts: Dict[str, Host] = {}
        self.calls: Dict[int, _Call] = {}
        self.unsent: List[_Call] = []
        self.pending: Dict[int, _Pending] = {}
        self.held: Deque[Tuple[Envelope, bytes]] = collections.deque()
        self.subs: Dict[str, List[EventSink]] = {}
        self.watches: Dict[str, List[WatchSink]] = {}
        self.watch_last: Dict[str, int] = {}
        self.sweep_at = 0.0
        self.tick_at = 0.0                      # when _tick is due next
        #  Why the broker refused us last (a failed greeting, a CURVE
        #  handshake refused), for connect() to report.
        self.refusal: Optional[errors.TroupeError] = None
        self.connected = threading.Event()
        self.stats = collections.Counter()

    # ------------------------------------------------------------------
    # Threads

    def start(self) -> None:
        """Starts the engine's thread, which connects at once."""
        self._thread = threading.Thread(target=self._run, name="troupe-" + self.node_id,
                                        daemon=True)
        self._thread.start()

    def on_thread(self) -> bool:
        """True when called on the engine's own thread."""
        return threading.current_thread() is self._thread

    def post(self, fn: Callable[[], None]) -> None:
        """Runs fn on the engine's thread, soon, in the order posted.
        Raises troupe.Closed once the engine is stopping."""
        if self._stopping:
            raise errors.Closed("the node is closed")
        self._posted.append(fn)
        if not self.in_io():
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass                        # the pipe is full: it is awake

    def stop(self, timeout: float = 5.0) -> None:
        """Says BYE to the broker, stops the thread, closes the socket.
        Waiting completions fail with troupe.Closed."""
        if self._stopping:
            return
        self.post(self._bye)
        self._stopping = True
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass
        if self._thread and not self.on_thread() and not self.in_io():
            self._thread.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.closed = True

    def _bye(self) -> None:
        if self.sock is not None and self.greeted:
            self._send([codec.encode_command("BYE", 0)])

    def in_io(self) -> bool:
        """True on a thread that holds the engine's lock (the engine's own
        thread serving the socket, a caller serving it meanwhile, an
        inline actor's handler)."""
        return getattr(self._inside, "on", False)

    class _IO:
        __slots__ = ("engine",)

        def __init__(self, engine: "Engine") -> None:
            self.engine = engine

        def __enter__(self) -> "Engine":
            self.engine.lock.acquire()
            self.engine._inside.on = True
            return self.engine

        def __exit__(self, *exc: Any) -> None:
            self.engine._inside.on = False
            self.engine.lock.release()

    def io(self) -> "Engine._IO":
        """``with engine.io():`` holds the engine's lock (not reentrant)."""
        return self._io

    def pump(self, until: Optional[CallerWaiter] = None, probe: bool = True) -> bool:
        """Under the lock: runs what was posted and reads the socket until
        it is empty, until neither has anything left. True if it stopped
        at its bound with messages still waiting. until and probe: see
        _drain."""
        for _ in range(100):
            if self._posted:
                self._run_posted()
            if self.sock is None or not self._drain(until, probe):
                if not self._posted:
                    return False
            probe = True
        return True

    def _pollset(self, sock_fd: int, mon_fd: int, watch: bool) -> Any:
        key = (sock_fd, mon_fd, watch)
        ps = self._pollsets.get(key)
        if ps is None:
            if len(self._pollsets) >= 4:
                self._pollsets.clear()
            ps = self._pollsets[key] = select.poll()
            ps.register(self._wake_r, select.POLLIN)
            if watch and sock_fd >= 0:
                ps.register(sock_fd, select.POLLIN)
            if mon_fd >= 0:
                ps.register(mon_fd, select.POLLIN)
        return ps

    def _run(self) -> None:
        try:
            with self.io():
                self._connect()
            woken = True
            ready = False                       # ZMQ_FD said something came
            served = -1
            lock, inside = self.lock, self._inside
            ps_key: Any = None
            ps: Any = None
            while not self._stopping:
                lock.acquire()
                inside.on = True
                try:
                    if woken:
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except BlockingIOError:
                            pass
                    if self.monitor is not None:
                        self._on_monitor()
                    busy = self.pump(None, not ready or self.callers > 0)
                    now = time.monotonic()
                    if now >= self.tick_at:
                        sock, sent = self.sock, self.last_sent
                        self._tick(now)
                        if self.sock is not sock or self.last_sent != sent:
                            busy = self.pump() or busy  # the tick used the socket
                    timeout = max(1, min(1000, int((self.tick_at - now) * 1000 + 0.999)))
                    sock_fd = self.sock_fd
                    mon_fd = -1 if self.monitor is None else self.monitor.getsockopt(zmq.FD)
                    #  The socket is the callers' while they serve it, and
                    #  stays theirs while one began to since the last look
                    #  (a thread asking in a loop): the engine's thread
                    #  watching it too would wake with every answer.
                    watch = self.callers == 0 and self.served == served
                    self.watching = watch
                    served = self.served
                finally:
                    inside.on = False
                    lock.release()
                #  While callers serve the socket, look again soon (2 ms)
                #  in case the last of them leaves.
                if busy:
                    timeout = 0
                elif not watch:
                    timeout = min(timeout, 2)
                woken = ready = False
                key = (sock_fd, mon_fd, watch)
                if key != ps_key:
                    ps, ps_key = self._pollset(sock_fd, mon_fd, watch), key
                while True:
                    events = ps.poll(timeout)
                    for fd, _ in events:
                        if fd == self._wake_r:
                            woken = True
                        elif fd == sock_fd:
                            ready = True
                    #  A quiet look while callers still serve the socket,
                    #  nothing posted and nothing due: look again, without
                    #  the lock (these counters are only hints here; the
                    #  next look under the lock decides).
                    if (events or watch or busy or self.callers == 0 or self._posted
                            or self._stopping or time.monotonic() >= self.tick_at):
                        break
            with self.io():
                self.watching = False
                self._run_posted()
        except Exception:                   # a bug: say so loudly, fail what waits
            log.exception("troupe: the node's I/O thread failed")
        finally:
            self._stopping = True
            with self.io():
                self._fail_all(errors.Closed("the node is closed"))
                self._close_socket()

    def serve_until(self, waiter: CallerWaiter, timeout: Optional[float],
                    ask: Optional[Envelope] = None) -> bool:
        """Serves the socket on this thread until waiter is done or timeout
        seconds pass (None: no bound); the engine's thread stops watching
        the socket meanwhile. With ask, first gives it an id and routes it
        with waiter as its completion (route's timeout: timeout). Must be
        called without the lock. True if the waiter is done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pipe = waiter.pipe
        lock, inside = self.lock, self._inside
        lock.acquire()
        inside.on = True
        try:
            if ask is not None:
                ask.id = next(self._ids)
                self.route(ask, waiter, timeout)
            self.callers += 1
            self.served += 1
            pumped = False
            ready = False
            try:
                while True:
                    #  Read until empty (or until done, see _drain), under
                    #  the lock: ZMQ_FD then says when something comes
                    #  (see the module's comment).
                    self.pump(waiter, not ready or self.callers > 1)
                    pumped = True
                    if waiter.finished or self._stopping:
                        return waiter.finished
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    sock_fd = self.sock_fd
                    ps = pipe.pollset(sock_fd)
                    #  No socket (reconnecting): the engine's thread does
                    #  that; look again every 50 ms.
                    wait = left if left is not None else 1.0
                    if sock_fd < 0:
                        wait = min(wait, 0.05)
                    pumped = False
                    inside.on = False
                    lock.release()
                    ready = False
                    try:
                        for fd, _ in ps.poll(max(0, int(wait * 1000 + 0.999))):
                            if fd == pipe.r:
                                try:
                                    while os.read(pipe.r, 4096):
                                        pass
                                except BlockingIOError:
                                    pass
                            else:
                                ready = True
                    finally:
                        lock.acquire()
                        inside.on = True
            finally:
                self.callers -= 1
                if not pumped:
                    #  Left while waiting (an exception): whatever came
                    #  is read before the engine's thread watches ZMQ_FD.
                    self.pump()
        finally:
            inside.on = False
            lock.release()

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            fn = posted.popleft()
            try:
                fn()
            except Exception:
                log.exception("troupe: a request to the node's I/O thread failed")

    def _fail_all(self, error: errors.TroupeError) -> None:
        for call in list(self.calls.values()) + self.unsent:
            if call.completion:
                call.completion.done(None, error)
        self.calls.clear()
        self.unsent.clear()
        for p in list(self.pending.values()):
            p.completion.done(None, error)
        self.pending.clear()
        self.connected.clear()

    # ------------------------------------------------------------------
    # The connection

    def _connect(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100000)
        sock.setsockopt(zmq.RCVHWM, 100000)
        if self.curve:
            server, public, secret = self.curve
            sock.setsockopt(zmq.CURVE_SERVERKEY, server)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            #  A refused handshake is the only thing a CURVE broker says
            #  to a client it does not allow (2.10): watch for it.
            events = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            self.monitor = sock.get_monitor_socket(events)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            self._forget_monitor()
            self.refusal = errors.InvalidArgument("cannot connect to %s: %s" % (self.endpoint, e))
            log.error("troupe: %s", self.refusal)
            self._backoff()
            return
        self.sock = sock
        self.sock_fd = sock.getsockopt(zmq.FD)
        self.hello_seq = next(self._seq)
        self.tick_at = 0.0
        self._send([codec.encode_command("HELLO", self.hello_seq, "TRP", PROTOCOL[0], PROTOCOL[1],
                                         self.node_id, self.kind, self.proposed_heartbeat_ms)])
        #  The greeting gets three intervals, like any silence.
        self.last_heard = time.monotonic()

    def _forget_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.close(0)
            self.monitor = None

    def _close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            #  Leaving: give the BYE a moment to go out; otherwise drop all.
            self.sock.close(200 if self._stopping else 0)
            self.sock = None
            self.sock_fd = -1
        self._forget_monitor()

    def _backoff(self) -> None:
        base = self.backoff_ms or BACKOFF_MIN_MS
        jitter = base // 5
        delay = base - jitter + (random.randint(0, 2 * jitter) if jitter else 0)
        self.retry_at = time.monotonic() + delay / 1000.0
        self.backoff_ms = min(base * 2, BACKOFF_MAX_MS)
        self.tick_at = 0.0

    def _disconnect(self, why: str) -> None:
        if self.sock is not None and self.greeted:
            log.warning("troupe: lost the broker at %s (%s); reconnecting", self.endpoint, why)
        self._close_socket()
        self.greeted = False
        self.connected.clear()
        self.stats["disconnects"] += 1
        #  Requests sent and not answered: whether the broker carried them
        #  out is unknown (2-broker.md 2.2).
        calls, self.calls = self.calls, {}
        for call in calls.values():
            if call.completion:
                call.completion.done(None, errors.Timeout(
                    "%s: the broker went away before answering (it may or may not have "
                    "been done)" % call.verb))
        self._backoff()

    def _on_monitor(self) -> None:
        try:
            while True:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
                event = int.from_bytes(frames[0][:2], "little")
                if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self.refusal = errors.AccessDenied(
                        "the broker at %s refused this client's CURVE key" % self.endpoint)
                else:
                    self.refusal = errors.AccessDenied(
                        "the CURVE handshake with %s failed (wrong server key?)" % self.endpoint)
                self.stats["handshake_failures"] += 1
        except zmq.Again:
            pass

    def _send(self, frames: List[bytes]) -> bool:
        """Sends one message now; False if the socket would not take it."""
        if len(frames) == 2:
            return self._send2(frames[0], frames[1])
        sock = self.sock
        try:
            for frame in frames[:-1]:
                _zsend(sock, frame, _NOBLOCK_MORE)
            _zsend(sock, frames[-1], _NOBLOCK, len(frames[-1]) < 65536)
        except zmq.ZMQError:
            return False
        self.last_sent = time.monotonic()
        return True

    def _send2(self, head: bytes, payload: bytes) -> bool:
        """Sends the message [head, payload] now (a command frame and its
        payload, the usual shape); False if the socket would not take it.
        Once its first frame is taken, the rest of a message is (ZeroMQ
        sends messages whole)."""
        sock = self.sock
        try:
            _zsend(sock, head, _NOBLOCK_MORE)
            _zsend(sock, payload, _NOBLOCK, len(payload) < 65536)
        except zmq.ZMQError:
            return False
        self.last_sent = time.monotonic()
        return True

    def _tick(self, now: float) -> None:
        """Heartbeats, liveness, reconnection, sweeps; sets tick_at, when
        the next of them is due. Whatever brings one of them forward
        (a new connection, a backoff, the broker's heartbeat) sets
        tick_at to 0."""
        h = self.heartbeat_ms / 1000.0
        if self.sock is None and now >= self.retry_at:
            self._connect()
        if self.sock is not None and now - self.last_heard > 3 * h:
            self._disconnect("silent for three heartbeats")
        if self.sock is not None and self.greeted and now - self.last_sent >= h:
            self._send([codec.encode_command("HEARTBEAT", 0)])
        if now >= self.sweep_at:
            self._sweep(now)
        nxt = self.sweep_at
        if self.sock is not None:
            nxt = min(nxt, self.last_sent + h, self.last_heard + 3 * h + 0.001)
        else:
            nxt = min(nxt, self.retry_at)
        self.tick_at = min(nxt, now + 1.0)

    def _sweep(self, now: float) -> None:
        for wid in [w for w, p in self.pending.items() if p.deadline and now > p.deadline]:
            p = self.pending.pop(wid)
            p.completion.done(None, errors.Timeout("ask to '%s': no answer in time" % p.to))
        if self.held:
            wall = now_us()
            keep: Deque[Tuple[Envelope, bytes]] = collections.deque()
            for env, frame in self.held:
                if env.deadline and wall > env.deadline:
                    self.stats["dead_letters"] += 1
                else:
                    keep.append((env, frame))
            self.held = keep
        self.sweep_at = now + SWEEP_S

    # ------------------------------------------------------------------
    # In: messages from the broker

    def _drain(self, until: Optional[CallerWaiter] = None, probe: bool = True) -> bool:
        """Reads the socket until it is empty (False) or 1,000 messages
        were read (True). With until, the waiter of the only thread
        serving the socket: stops once it is done, unless the engine's
        thread watches ZMQ_FD (which then must find the socket empty; when
        it does not watch, it reads the socket at its next look, and so
        does this thread's next ask). probe False: ZMQ_FD has just said
        something came, so the first read does not ask first."""
        sock = self.sock
        stats = self.stats
        for _ in range(1000):
            if (until is not None and until.finished and self.callers == 1
                    and not self.watching):
                return False
            #  Asking first is cheaper than pyzmq's exception for "nothing".
            if sock is not self.sock or (probe and not _zget(sock, _EVENTS) & _POLLIN):
                return False                    # empty, or reconnected meanwhile
            probe = True
            try:
                head = _zrecv(sock, _NOBLOCK)
                payload = None
                more = 0
                if _zget(sock, _RCVMORE):
                    payload = _zrecv(sock, _NOBLOCK)
                    while _zget(sock, _RCVMORE):
                        _zrecv(sock, _NOBLOCK)
                        more += 1
            except zmq.Again:
                return False
            self.last_heard = time.monotonic()
            stats["received"] += 1
            if more:
                log.warning("troupe: dropped a message of %d frames from the broker", more + 2)
                continue
            if head == _DELIVER and payload is not None:
                #  The common case, read at a glance.
                try:
                    env = decode_envelope(payload)
                except codec.DecodeError as e:
                    log.warning("troupe: dropped a malformed envelope from the broker: %s", e.why)
                    stats["malformed"] += 1
                    continue
                self.arrive(env)
                continue
            try:
                cmd = codec.read_command(head)
            except codec.DecodeError as e:
                log.warning("troupe: dropped a malformed message from the broker: %s", e)
                continue
            self._dispatch(cmd, payload)
        return True

    def _dispatch(self, cmd: codec.Command, payload: Optional[bytes]) -> None:
        verb = cmd.verb
        if verb == "DELIVER":
            if payload is not None:
                self._on_envelope(payload)
        elif verb == "DELIVERS":
            sizes = cmd.args[0]
            if payload is None or sum(sizes) != len(payload):
                log.warning("troupe: dropped a DELIVERS whose sizes do not add up")
                return
            at = 0
            for n in sizes:
                self._on_envelope(payload[at:at + n])
                at += n
        elif verb == "OK" or verb == "ERROR":
            self._on_answer(cmd)
        elif verb == "EVENT":
            topic, sender = cmd.args[0], cmd.args[1]
            dropped = cmd.args[2] if len(cmd.args) > 2 else 0
            self._events(topic, sender, payload or b"", dropped)
        elif verb == "EVENTS":
            sender, topics, sizes = cmd.args[0], cmd.args[1], cmd.args[2]
            dropped = cmd.args[3] if len(cmd.args) > 3 else 0
            if len(topics) != len(sizes) or sum(sizes) != len(payload or b""):
                log.warning("troupe: dropped an EVENTS whose sizes do not add up")
                return
            at = 0
            for topic, n in zip(topics, sizes):
                self._events(topic, sender, payload[at:at + n], dropped)
                dropped, at = 0, at + n
        elif verb == "BOUNCE":
            if payload is not None:
                self._on_bounce(cmd.args[1], payload)
        elif verb == "NODE_DOWN":
            gone = set(cmd.args[1])
            log.info("troupe: node '%s' left or went down (%d name(s))", cmd.args[0], len(gone))
            for wid in [w for w, p in self.pending.items() if p.to in gone]:
                p = self.pending.pop(wid)
                p.completion.done(None, errors.NodeDown(
                    "ask to '%s': its node %s went down" % (p.to, cmd.args[0])))
        elif verb == "KV_CHANGE":
            prefix, key, version = cmd.args[0], cmd.args[1], cmd.args[2]
            if prefix in self.watches:
                self.watch_last[prefix] = max(self.watch_last.get(prefix, 0), version)
                value = payload if payload else None
                for w in list(self.watches[prefix]):
                    w.change(key, version, value)
        elif verb == "KV_RESYNC":
            prefix = cmd.args[0]
            if prefix in self.watches:
                #  The watch ended: go on from the present (the watchers
                #  are told, and read again what they need).
                self.watch_last[prefix] = 0
                for w in list(self.watches[prefix]):
                    w.resync()
                self.call("KV_WATCH", (prefix, 0), None, None)
        #  HEARTBEAT, and verbs a client is never sent: nothing to do.

    def _on_answer(self, cmd: codec.Command) -> None:
        call = self.calls.pop(cmd.seq, None)
        if cmd.verb == "OK":
            if call is not None:
                if call.completion:
                    try:
                        value = call.parse(cmd) if call.parse else None
                    except Exception as e:   # an answer not as 2.4 gives it
                        call.completion.done(None, errors.Malformed(
                            "%s: the broker's answer is malformed: %s" % (call.verb, e)))
                        return
                    call.completion.done(value, None)
            elif not self.greeted and cmd.seq == self.hello_seq:
                self._greeted(cmd)
            return
        code, text = cmd.args[0], cmd.args[1]
        if call is not None:
            if call.completion:
                call.completion.done(None, errors.error_for(code, "%s: %s" % (call.verb, text)))
            else:
                log.error("troupe: the broker refused %s %s: %s (%s)", call.verb,
                          " ".join(str(a) for a in call.args), text, errors.errname(code))
        elif not self.greeted and cmd.seq == self.hello_seq:
            self.refusal = errors.error_for(code, "the broker at %s refused node '%s': %s"
                                            % (self.endpoint, self.node_id, text))
            log.error("troupe: %s", self.refusal)
            self._disconnect("refused")
        elif self.greeted and code == _EPROTO:
            #  The broker has forgotten this connection: greet again (2.3).
            self._disconnect("the broker no longer knows this node")
        else:
            log.error("troupe: the broker answered an error: %s (%s)", text, errors.errname(code))

    def _greeted(self, cmd: codec.Command) -> None:
        #  ["OK", seq, "TRP", MAJOR, MINOR, BROKER_ID, HEARTBEAT_MS, LIMITS]
        a = codec.args_of(cmd.raw_args[:6])
        if (len(a) < 5 or a[0] != "TRP" or a[1] != PROTOCOL[0] or not isinstance(a[3], str)
                or not isinstance(a[4], int)):
            log.error("troupe: the broker at %s answered the greeting in a way this binding "
                      "does not understand; retrying", self.endpoint)
            self._disconnect("bad greeting")
            return
        if 10 <= a[4] <= 60000:                 # 2.5: from 10 ms
            self.heartbeat_ms = a[4]
            self.tick_at = 0.0
        self.broker_id = a[3]
        if len(a) > 5 and isinstance(a[5], dict):
            self.limits = {k: v for k, v in a[5].items() if isinstance(k, str) and isinstance(v, int)}
        self.greeted = True
        self.backoff_ms = 0
        self.refusal = None
        self.stats["greetings"] += 1
        log.info("troupe: node '%s' joined the broker %s at %s", self.node_id, self.broker_id,
                 self.endpoint)
        for name in list(self.hosts) + [self.reply_name]:
            self.call("REGISTER", (name,), None, None)
        for prefix in self.subs:
            self.call("SUB", (prefix,), None, None)
        for prefix in self.watches:
            self.call("KV_WATCH", (prefix, self.watch_last.get(prefix, 0)), None, None)
        unsent, self.unsent = self.unsent, []
        for call in unsent:
            self._send_call(call)
        held, self.held = self.held, collections.deque()
        wall = now_us()
        for env, frame in held:
            if env.deadline and wall > env.deadline:
                self.stats["dead_letters"] += 1
                continue
            self._send([codec.encode_command("SEND", 0, env.to), frame])
        self.connected.set()

    def _on_bounce(self, code: int, payload: bytes) -> None:
        try:
            env = codec.decode_envelope(payload)
        except codec.DecodeError:
            return
        if env.kind == ASK:
            p = self.pending.pop(env.id, None)
            if p is not None:
                p.completion.done(None, errors.error_for(code, "ask to '%s'" % env.to))
                return
        self.stats["dead_letters"] += 1

    def _on_envelope(self, data: bytes) -> None:
        try:
            env = codec.decode_envelope(data)
        except codec.DecodeError as e:
            log.warning("troupe: dropped a malformed envelope from the broker: %s", e.why)
            self.stats["malformed"] += 1
            return
        self.arrive(env)

    def arrive(self, env: Envelope) -> None:
        """An envelope for this node, from the broker or from one of its
        own actors: an answer goes to its ask, a tell or an ask to its
        actor's mailbox (engine thread)."""
        if env.kind == REPLY or env.kind == ERROR:
            p = self.pending.pop(env.corr, None)
            if p is None:
                log.debug("troupe: an answer from '%s' came after its asker left", env.sender)
                return
            if env.kind == REPLY:
                p.completion.done(env, None)
            else:
                p.completion.done(None, errors.error_for(env.error, "ask to '%s'" % env.sender))
            return
        host = self.hosts.get(env.to)
        code = 0
        if host is None:
            code = _ENOACTOR
        elif env.deadline and env.kind == ASK and now_us() > env.deadline:
            #  Its sender has stopped waiting (1.3): not handled.
            self.stats["dead_letters"] += 1
            self.stats["expired"] += 1
            return
        elif not host.post(env):
            code = _EFULL
        if code == 0:
            return
        self.stats["dead_letters"] += 1
        if env.kind == ASK and env.sender:
            self.route(Envelope(ERROR, next(self._ids), env.sender, env.to, corr=env.id,
                                trace=env.trace, priority=env.priority, error=code))

    # ------------------------------------------------------------------
    # Out: from this node's actors and callers (engine thread)

    def next_id(self) -> int:
        return next(self._ids)

    def route(self, env: Envelope, completion: Optional[Completion] = None,
              timeout: Optional[float] = None) -> None:
        """Sends env: to a local actor directly, else through the broker
        (held while the broker is away). For an ask, completion gets the
        reply envelope or the error; timeout bounds how long the node
        remembers it."""
        if completion is not None:
            deadline = time.monotonic() + timeout if timeout else 0.0
            self.pending[env.id] = _Pending(env.to, completion, deadline)
        self.stats["sent"] += 1
        if env.to in self.hosts or env.to == self.reply_name:
            self.arrive(env)
            return
        try:
            frame = codec.encode_envelope(env)
        except errors.TroupeError as e:
            self._fail_send(env, e)
            return
        if not self.greeted:
            if len(self.held) >= HELD_MAX:
                self._fail_send(env, errors.Timeout("the broker is away and %d messages wait "
                                                    "already" % HELD_MAX))
                return
            self.held.append((env, frame))
            return
        if not self._send2(codec.encode_send(env.to), frame):
            self._fail_send(env, errors.MailboxFull("the link to the broker is full"))

    def _fail_send(self, env: Envelope, error: errors.TroupeError) -> None:
        p = self.pending.pop(env.id, None) if env.kind == ASK else None
        if p is not None:
            p.completion.done(None, error)
        else:
            self.stats["dead_letters"] += 1
            log.warning("troupe: a %s to '%s' was not sent: %s",
                        codec._KIND_NAMES.get(env.kind, "message"), env.to, error)

    def forget(self, wire_id: int) -> None:
        """Forgets an ask whose asker gave up."""
        self.pending.pop(wire_id, None)

    def call(self, verb: str, args: Tuple[Any, ...], payload: Optional[bytes],
             completion: Optional[Completion],
             parse: Optional[Callable[[codec.Command], Any]] = None) -> None:
        """A request to the broker; completion gets parse(OK) or the
        ERROR's exception. Sent now if greeted, else when greeted."""
        call = _Call(verb, args, payload, completion, parse)
        if self.greeted:
            self._send_call(call)
        else:
            self.unsent.append(call)

    def _send_call(self, call: _Call) -> None:
        call.seq = next(self._seq)
        frames = [codec.encode_command(call.verb, call.seq, *call.args)]
        if call.payload is not None:
            frames.append(call.payload)
        if not self._send(frames):
            if call.completion:
                call.completion.done(None, errors.MailboxFull("the link to the broker is full"))
            return
        self.calls[call.seq] = call

    def add_host(self, host: Host, completion: Completion) -> None:
        """Holds host's name here and at the broker; completion gets None
        once the broker has it, or troupe.NameTaken..."""
        if host.name in self.hosts or host.name == self.reply_name:
            completion.done(None, errors.NameTaken("'%s' is already an actor of this node"
                                                   % host.name))
            return
        self.hosts[host.name] = host

        class _Undo(Completion):
            def done(inner, value: Any, error: Optional[BaseException]) -> None:
                if error is not None and not isinstance(error, errors.Timeout) \
                        and self.hosts.get(host.name) is host:
                    del self.hosts[host.name]
                completion.done(value, error)

        self.call("REGISTER", (host.name,), None, _Undo())

    def remove_host(self, name: str, completion: Optional[Completion]) -> None:
        if self.hosts.pop(name, None) is None:
            if completion:
                completion.done(None, errors.NoSuchActor("'%s' is not an actor of this node" % name))
            return
        self.call("UNREGISTER", (name,), None, completion)

    def subscribe(self, sink: EventSink, completion: Completion) -> None:
        sinks = self.subs.setdefault(sink.prefix, [])
        sinks.append(sink)
        if len(sinks) == 1:
            self.call("SUB", (sink.prefix,), None, completion)
        else:
            completion.done(None, None)

    def unsubscribe(self, sink: EventSink) -> None:
        sinks = self.subs.get(sink.prefix, [])
        if sink in sinks:
            sinks.remove(sink)
            if not sinks:
                del self.subs[sink.prefix]
                self.call("UNSUB", (sink.prefix,), None, None)

    def publish(self, topic: str, body: bytes) -> None:
        #  The broker does not send our own events back: ours first.
        self._events(topic, self.node_id, body, 0)
        if self.greeted:
            self._send([codec.encode_command("PUB", 0, topic), body])
        else:
            self.stats["events_dropped"] += 1

    def _events(self, topic: str, sender: str, body: bytes, dropped: int) -> None:
        for prefix, sinks in list(self.subs.items()):
            if topic.startswith(prefix):
                for s in list(sinks):
                    s.push(topic, sender, body, dropped)

    def watch(self, sink: WatchSink, from_version: int, completion: Completion) -> None:
        sinks = self.watches.setdefault(sink.prefix, [])
        sinks.append(sink)
        if len(sinks) == 1:
            self.watch_last[sink.prefix] = from_version
            self.call("KV_WATCH", (sink.prefix, from_version), None, completion,
                      parse=lambda cmd: cmd.arg(0))
        else:
            completion.done(None, None)

    def unwatch(self, sink: WatchSink) -> None:
        sinks = self.watches.get(sink.prefix, [])
        if sink in sinks:
            sinks.remove(sink)
            if not sinks:
                del self.watches[sink.prefix]
                self.watch_last.pop(sink.prefix, None)
                self.call("KV_UNWATCH", (sink.prefix,), None, None)
