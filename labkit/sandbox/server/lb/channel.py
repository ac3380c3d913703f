"""Messages between the plane and its process: pickled tuples, each prefixed with its length.

The channel is a private socket pair between the two processes, so pickle carries only what the
plane itself sent (the topology's frozen dataclasses, health reports, metric points).
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

_LENGTH = struct.Struct("!I")


def encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def receive(sock: socket.socket) -> tuple[Any, ...]:
    """The next message (blocking); EOFError when the other side has closed."""
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    message: tuple[Any, ...] = pickle.loads(_exactly(sock, length))
    return message


async def read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; EOFError when the other side has closed."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise EOFError("the channel closed") from None
    return message


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError("the channel closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
