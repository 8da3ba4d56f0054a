"""CURVE key files (protocols/2-broker.md 2.10): czmq's zcert format, as
``troupe keygen NAME`` writes them (NAME.secret, mode 0600, and
NAME.public).

A key file is ZPL text (ZeroMQ RFC 4): '#' starts a comment line, a line
without indentation opens a section, an indented ``name = value`` line
(value quoted with " or ', or bare) belongs to the section above it. Only
the ``curve`` section's ``public-key`` and ``secret-key`` are read, each
the Z85 text (40 characters) of a 32-byte key.

Secret files are read only when they are regular files owned by the user
reading them with no permission for group or others (0600 or 0400); the
owner and mode are checked on the descriptor read from, so the file
checked is the file read. Anything else raises troupe.AccessDenied, saying
which file and why.
"""

from __future__ import annotations

import os
import stat
from typing import Dict, Tuple

import zmq
from zmq.utils import z85

from . import errors

__all__ = ["read_secret", "read_public"]

#  A key file is a few hundred bytes; anything past this is not one.
_FILE_MAX = 65536


def _slurp(path: str, secret: bool) -> str:
    what = "secret" if secret else "public"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise errors.NotFound("cannot read the %s key file %s: no such file" % (what, path)) from None
    except PermissionError as e:
        raise errors.AccessDenied("cannot read the %s key file %s: %s" % (what, path, e.strerror)) from None
    except OSError as e:
        raise errors.SystemCallFailed("cannot read the %s key file %s: %s" % (what, path, e.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.AccessDenied("the %s key file %s is not a regular file" % (what, path))
        if secret and st.st_uid != os.geteuid():
            raise errors.AccessDenied("the secret key file %s belongs to user %d, not to this "
                                      "program's user %d" % (path, st.st_uid, os.geteuid()))
        if secret and st.st_mode & 0o077:
            raise errors.AccessDenied("the secret key file %s has mode %04o: group or others may "
                                      "have read it (chmod 600 %s)"
                                      % (path, stat.S_IMODE(st.st_mode), path))
        data = b""
        while len(data) <= _FILE_MAX:
            chunk = os.read(fd, _FILE_MAX + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > _FILE_MAX:
            raise errors.InvalidArgument("%s is too large to be a key file" % path)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


def _value(s: str) -> str:
    s = s.strip()
    if s[:1] in ("'", '"'):
        q = s[0]
        endq = s.find(q, 1)
        return s[1:endq] if endq > 0 else "\0"      # an unclosed quote: not a key
    return s.split()[0] if s.split() else ""


def _parse(text: str, path: str) -> Dict[str, str]:
    keys: Dict[str, str] = {}
    in_curve = False
    for line in text.replace("\r", "\n").split("\n"):
        s = line.lstrip(" \t")
        if not s or s.startswith("#"):
            continue
        if s is line or len(s) == len(line):
            head = s
            for stop in " \t=#":
                head = head.split(stop)[0]
            in_curve = head == "curve"
            continue
        if not in_curve:
            continue
        name, eq, rest = s.partition("=")
        name = name.strip()
        if name not in ("public-key", "secret-key"):
            continue
        if not eq or name in keys:
            raise errors.InvalidArgument("%s: a bad or repeated %s line" % (path, name))
        value = _value(rest)
        if len(value) != 40:
            raise errors.InvalidArgument("%s: %s is not the Z85 text of a 32-byte key" % (path, name))
        try:
            if len(z85.decode(value)) != 32:
                raise ValueError
        except Exception:
            raise errors.InvalidArgument("%s: %s is not the Z85 text of a 32-byte key"
                                         % (path, name)) from None
        keys[name] = value
    return keys


def read_secret(path: str) -> Tuple[bytes, bytes]:
    """Reads a secret key file: (public key, secret key), each as Z85
    bytes (40 characters). Raises troupe.AccessDenied (ownership or mode),
    troupe.NotFound (no such file) or troupe.InvalidArgument (not a secret
    key file, or its public key is not the secret key's own)."""
    keys = _parse(_slurp(path, True), path)
    secret = keys.get("secret-key")
    if secret is None:
        raise errors.InvalidArgument("%s is not a secret key file (a 'curve' section with a Z85 "
                                     "secret-key, as 'troupe keygen' writes)" % path)
    public = zmq.curve_public(secret.encode("ascii"))
    if "public-key" in keys and keys["public-key"].encode("ascii") != public:
        raise errors.InvalidArgument("in %s, the public-key is not the secret-key's own" % path)
    return public, secret.encode("ascii")


def read_public(path: str) -> bytes:
    """Reads a public key file: the public key as Z85 bytes. Raises
    troupe.NotFound or troupe.InvalidArgument (not a public key file: a
    ``curve`` section with a Z85 ``public-key``)."""
    keys = _parse(_slurp(path, False), path)
    public = keys.get("public-key")
    if public is None:
        raise errors.InvalidArgument("%s is not a public key file (a 'curve' section with a Z85 "
                                     "public-key, as 'troupe keygen' writes)" % path)
    return public.encode("ascii")
