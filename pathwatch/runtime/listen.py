"""Listening sockets of pathwatch's HTTP servers (the REST API and `/metrics`): the one
parser of `HOST:PORT` and the one place that binds, or says which address, why not and
what to do about it."""

from __future__ import annotations

import errno
import os
import socket

#: Pending connections the kernel queues for a listener.
BACKLOG = 128


class ListenError(RuntimeError):
    """A listener cannot be opened; the message names the address, the cause and the fix."""


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`; no host means 127.0.0.1) to (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def host_port(host: str, port: int | None) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cause_and_remedy(exc: OSError, setting: str) -> tuple[str, str]:
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}", f"set {setting} to an address of this host"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use", f"stop the other process or set {setting}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this host", f"set {setting} to an address of this host"
    if exc.errno == errno.EACCES:
        return "permission denied", f"use a port above 1023 or set {setting}"
    return (os.strerror(exc.errno) if exc.errno else str(exc)).lower(), f"set {setting}"


def bind_listener(listen: str, setting: str) -> socket.socket:
    """A listening, non-blocking TCP socket on `listen`; `setting` names the config key or
    option that chooses the address, for the ListenError message."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ListenError(f"cannot listen on {listen!r} ({exc}): fix {setting}") from None
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        if sock is not None:
            sock.close()
        cause, remedy = _cause_and_remedy(exc, setting)
        raise ListenError(f"cannot listen on {host_port(host, port)} ({cause}): {remedy}") from None
    sock.setblocking(False)
    return sock
