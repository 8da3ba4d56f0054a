"""troupe for Python: actors that join a troupe broker over ZeroMQ.

A pure-Python implementation of troupe's wire protocol
(protocols/1-envelope.md and protocols/2-broker.md) over pyzmq and
msgpack. Python actors are named like C actors, ask and tell them and are
asked by them, read and write the shared scratchpad, and publish and
subscribe to events; heartbeats and reconnection are the binding's
business.

- :class:`troupe.Node` - the blocking API (actors on threads).
- :mod:`troupe.aio` - the asyncio API (actors as coroutines).
- :mod:`troupe.errors` - one exception class per troupe error code.
- :mod:`troupe.codec` - the envelope and command-frame codecs.

See docs/python.md for a complete example.
"""

from . import codec, errors
from .errors import *  # noqa: F401,F403  (one class per code, TroupeError)
from .node import (DEFAULT_BROKER, Actor, Change, Entry, Event, Message, Node, Resync,
                   Scratchpad, Subscription, Watch)

__version__ = "0.1.0"

__all__ = ["Node", "Actor", "Message", "Scratchpad", "Entry", "Change", "Resync", "Event",
           "Subscription", "Watch", "DEFAULT_BROKER", "codec", "errors", "aio"] + errors.__all__


def __getattr__(name: str):
    #  troupe.aio imports asyncio only when asked for.
    if name == "aio":
        from . import aio
        return aio
    raise AttributeError(name)
