"""troupe's errors as Python exceptions.

Every failure the binding reports is a :class:`TroupeError` carrying the
numeric code of troupe's one error list (``include/troupe/tr_error.h``,
append-only, the same codes on the wire: protocols/1-envelope.md 1.4 and
2-broker.md 2.7). Each code has its own subclass, so callers catch what
they mean::

    try:
        node.ask("db", {"q": 1}, timeout=1.0)
    except troupe.NoSuchActor:
        ...
    except troupe.Timeout:
        ...

Codes below -1000 belong to applications: they surface as
:class:`ApplicationError` with the code given. A code this version does
not know surfaces as a plain :class:`TroupeError` (a failure all the same,
as 2-broker.md 2.2 asks).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "TroupeError", "ApplicationError", "error_for", "strerror", "errname",
    "CODES",
]

#  (name, code, text): the list of tr_error.h, in its order. Append only.
_TABLE = [
    ("OK", 0, "success"),
    ("EINVAL", -1, "invalid argument"),
    ("ENOMEM", -2, "out of memory"),
    ("ENOACTOR", -3, "no such actor"),
    ("EEXIST", -4, "name already registered"),
    ("EFULL", -5, "mailbox full"),
    ("ETIMEDOUT", -6, "timed out"),
    ("ECLOSED", -7, "node is shutting down"),
    ("EINIT", -8, "actor init failed"),
    ("EHANDLER", -9, "handler failed"),
    ("ENOREPLY", -10, "request finished without a reply"),
    ("ESTOPPED", -11, "actor stopped before handling the message"),
    ("EMALFORMED", -12, "malformed input"),
    ("ETOOBIG", -13, "message too large"),
    ("EDEPTH", -14, "nesting too deep"),
    ("EVERSION", -15, "unsupported protocol version"),
    ("ESYS", -16, "system call failed"),
    ("ELIMIT", -17, "resource limit reached"),
    ("EDEADLK", -18, "operation would wait on itself"),
    ("ENOTFOUND", -19, "not found"),
    ("EEXPIRED", -20, "message deadline passed before handling"),
    ("ECIRCUIT", -21, "circuit open"),
    ("EINTENSITY", -22, "restart intensity exceeded"),
    ("ECHILD", -23, "child failed"),
    ("EACCES", -24, "not allowed: unsafe ownership or permissions"),
    ("EPROTO", -25, "protocol error: greeting missing or wrong"),
    ("ECONFLICT", -26, "version conflict"),
    ("ENODE", -27, "node down"),
    ("EHTTP", -28, "HTTP request failed"),
    ("ECANCELED", -29, "canceled"),
    ("EOUTPUT", -30, "answer does not fit the declared output"),
]

#: Symbolic name (without the ``TR_`` prefix) to code, e.g. ``CODES["ENOACTOR"] == -3``.
CODES: Dict[str, int] = {name: code for name, code, _ in _TABLE}
_TEXT: Dict[int, str] = {code: text for _, code, text in _TABLE}
_NAME: Dict[int, str] = {code: "TR_" + name for name, code, _ in _TABLE}


def strerror(code: int) -> str:
    """A short English sentence for a code ("no such actor"), as tr_strerror."""
    if code < -1000:
        return "application error %d" % code
    return _TEXT.get(code, "unknown error")


def errname(code: int) -> str:
    """The symbolic name of a code ("TR_ENOACTOR"), as tr_errname."""
    return _NAME.get(code, "TR_EUNKNOWN")


class TroupeError(Exception):
    """Base of every troupe error. ``code`` is the negative code of
    tr_error.h, ``name`` its symbolic name, ``detail`` what happened in
    words (may be empty)."""

    code: int = 0

    def __init__(self, detail: str = "", code: Optional[int] = None) -> None:
        if code is not None:
            self.code = code
        self.detail = detail
        text = strerror(self.code)
        msg = "%s (%s)" % (text, errname(self.code))
        if detail:
            msg = "%s: %s" % (detail, msg)
        super().__init__(msg)

    @property
    def name(self) -> str:
        """The code's symbolic name, e.g. ``"TR_ETIMEDOUT"``."""
        return errname(self.code)


class ApplicationError(TroupeError):
    """An application's own code (below -1000), raised by a handler or
    answered by a remote actor."""

    def __init__(self, code: int, detail: str = "") -> None:
        if code >= -1000:
            raise ValueError("application codes are below -1000")
        super().__init__(detail, code)


#  One class per code (a builtin base too where one means the same, so
#  that `except TimeoutError` also catches troupe.Timeout).

class InvalidArgument(TroupeError, ValueError):
    """Invalid argument (TR_EINVAL, -1)."""
    code = -1
    __init__ = TroupeError.__init__  # not ValueError's
    __str__ = Exception.__str__


class OutOfMemory(TroupeError, MemoryError):
    """Out of memory (TR_ENOMEM, -2)."""
    code = -2
    __init__ = TroupeError.__init__  # not MemoryError's
    __str__ = Exception.__str__


class NoSuchActor(TroupeError, LookupError):
    """No such actor (TR_ENOACTOR, -3)."""
    code = -3
    __init__ = TroupeError.__init__  # not LookupError's
    __str__ = Exception.__str__


class NameTaken(TroupeError):
    """Name already registered (TR_EEXIST, -4)."""
    code = -4


class MailboxFull(TroupeError):
    """Mailbox full (TR_EFULL, -5)."""
    code = -5


class Timeout(TroupeError, TimeoutError):
    """Timed out (TR_ETIMEDOUT, -6)."""
    code = -6
    __init__ = TroupeError.__init__  # not TimeoutError's
    __str__ = Exception.__str__


class Closed(TroupeError):
    """Node is shutting down (TR_ECLOSED, -7)."""
    code = -7


class InitFailed(TroupeError):
    """Actor init failed (TR_EINIT, -8)."""
    code = -8


class HandlerFailed(TroupeError):
    """Handler failed (TR_EHANDLER, -9)."""
    code = -9


class NoReply(TroupeError):
    """Request finished without a reply (TR_ENOREPLY, -10)."""
    code = -10


class ActorStopped(TroupeError):
    """Actor stopped before handling the message (TR_ESTOPPED, -11)."""
    code = -11


class Malformed(TroupeError, ValueError):
    """Malformed input (TR_EMALFORMED, -12)."""
    code = -12
    __init__ = TroupeError.__init__  # not ValueError's
    __str__ = Exception.__str__


class TooBig(TroupeError, ValueError):
    """Message too large (TR_ETOOBIG, -13)."""
    code = -13
    __init__ = TroupeError.__init__  # not ValueError's
    __str__ = Exception.__str__


class TooDeep(TroupeError, ValueError):
    """Nesting too deep (TR_EDEPTH, -14)."""
    code = -14
    __init__ = TroupeError.__init__  # not ValueError's
    __str__ = Exception.__str__


class VersionMismatch(TroupeError):
    """Unsupported protocol version (TR_EVERSION, -15)."""
    code = -15


class SystemCallFailed(TroupeError, OSError):
    """System call failed (TR_ESYS, -16)."""
    code = -16
    __init__ = TroupeError.__init__  # not OSError's
    __str__ = Exception.__str__


class LimitReached(TroupeError):
    """Resource limit reached (TR_ELIMIT, -17)."""
    code = -17


class WouldDeadlock(TroupeError):
    """Operation would wait on itself (TR_EDEADLK, -18)."""
    code = -18


class NotFound(TroupeError, LookupError):
    """Not found (TR_ENOTFOUND, -19)."""
    code = -19
    __init__ = TroupeError.__init__  # not LookupError's
    __str__ = Exception.__str__


class Expired(TroupeError):
    """Message deadline passed before handling (TR_EEXPIRED, -20)."""
    code = -20


class CircuitOpen(TroupeError):
    """Circuit open (TR_ECIRCUIT, -21)."""
    code = -21


class IntensityExceeded(TroupeError):
    """Restart intensity exceeded (TR_EINTENSITY, -22)."""
    code = -22


class ChildFailed(TroupeError):
    """Child failed (TR_ECHILD, -23)."""
    code = -23


class AccessDenied(TroupeError, PermissionError):
    """Not allowed: unsafe ownership or permissions (TR_EACCES, -24)."""
    code = -24
    __init__ = TroupeError.__init__  # not PermissionError's
    __str__ = Exception.__str__


class ProtocolError(TroupeError):
    """Protocol error: greeting missing or wrong (TR_EPROTO, -25)."""
    code = -25


class Conflict(TroupeError):
    """Version conflict (TR_ECONFLICT, -26)."""
    code = -26


class NodeDown(TroupeError):
    """Node down (TR_ENODE, -27)."""
    code = -27


class HTTPFailed(TroupeError):
    """HTTP request failed (TR_EHTTP, -28)."""
    code = -28


class Canceled(TroupeError):
    """Canceled (TR_ECANCELED, -29)."""
    code = -29


class BadOutput(TroupeError):
    """Answer does not fit the declared output (TR_EOUTPUT, -30)."""
    code = -30


_BY_CODE: Dict[int, Type[TroupeError]] = {
    -1: InvalidArgument,
    -2: OutOfMemory,
    -3: NoSuchActor,
    -4: NameTaken,
    -5: MailboxFull,
    -6: Timeout,
    -7: Closed,
    -8: InitFailed,
    -9: HandlerFailed,
    -10: NoReply,
    -11: ActorStopped,
    -12: Malformed,
    -13: TooBig,
    -14: TooDeep,
    -15: VersionMismatch,
    -16: SystemCallFailed,
    -17: LimitReached,
    -18: WouldDeadlock,
    -19: NotFound,
    -20: Expired,
    -21: CircuitOpen,
    -22: IntensityExceeded,
    -23: ChildFailed,
    -24: AccessDenied,
    -25: ProtocolError,
    -26: Conflict,
    -27: NodeDown,
    -28: HTTPFailed,
    -29: Canceled,
    -30: BadOutput,
}
__all__ += [cls.__name__ for cls in _BY_CODE.values()]


def error_for(code: int, detail: str = "") -> TroupeError:
    """The exception for a code: its own class, ApplicationError below
    -1000, or a TroupeError carrying a code this version does not know."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(detail)
    if code < -1000:
        return ApplicationError(code, detail)
    return TroupeError(detail, code)


def exception_class(code: int) -> Type[TroupeError]:
    """The class :func:`error_for` raises for a code."""
    if code < -1000:
        return ApplicationError
    return _BY_CODE.get(code, TroupeError)


__all__.append("exception_class")
