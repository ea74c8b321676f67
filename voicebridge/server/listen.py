"""The service's listening socket, bound before anything slow happens.

Loading speech models takes seconds; finding out only afterwards that the port is taken wastes
them and buries the reason under start-up logs. ``serve`` binds first, with the same options
uvicorn would use, and hands the socket to uvicorn.
"""

from __future__ import annotations

import errno
import socket


class ListenError(OSError):
    """The socket could not be bound; ``reason`` is one of ``in_use``, ``denied``,
    ``no_address`` or ``other``, so a caller can say what to do about it."""

    def __init__(self, host: str, port: int, reason: str, detail: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {detail}")
        self.host = host
        self.port = port
        self.reason = reason
        self.detail = detail


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "in_use"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "denied"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return "no_address"
    return "other"


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening; uvicorn calls ``listen``).
    Raises ListenError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, _reason(exc), exc.strerror or str(exc)) from None
    sock.set_inheritable(True)
    return sock
