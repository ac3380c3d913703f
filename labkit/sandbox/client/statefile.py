"""The sandbox's state file on disk, as both sides of the sandbox read it.

The file: a marker line, one line of JSON (the format, the labkit and moto versions that wrote it,
when, and the payload's length and SHA-256), then the payload (moto's backends, pickled by the
service: :mod:`labkit.sandbox.server.persistence`). So a truncated, corrupt or foreign file is named
for what it is before anything is unpickled, and the client side (``labkit sandbox up``) can refuse
it before it starts the service. A file of format 1 (a bare pickle, written by labkit before
versions were recorded, always with moto 5.2) passes here; the service then loads it only if it
unpickles under its allow-list. Saving keeps the previous :data:`GENERATIONS` files as
``aws-state.1.pickle`` (newest) and on, written owner-only (0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal

from labkit.errors import StateFileError

#: Bumped when the file's layout changes; a file of another format is refused.
FORMAT = 2
MAGIC = b"LABKIT-SANDBOX-STATE\n"
#: Earlier files kept next to the current one (``aws-state.1.pickle`` is the newest).
GENERATIONS = 3
Reason = Literal["corrupt", "truncated", "version"]


@dataclass(frozen=True)
class Header:
    """What a state file says about itself (its JSON line)."""

    format: int
    labkit: str
    moto: str
    python: str
    saved_at: str
    payload_bytes: int
    sha256: str
    #: Objects a partial save left out (``path: error``); empty for a whole save.
    skipped: list[str] = field(default_factory=list)


def versions() -> dict[str, str]:
    """The labkit and moto versions of this installation (without importing moto)."""
    return {"labkit": metadata.version("labkit"), "moto": metadata.version("moto")}



def refuse(path: Path, reason: Reason, detail: str) -> StateFileError:
    """The :class:`~labkit.errors.StateFileError` for ``path``, naming the generations kept beside it."""
    return StateFileError(path, reason, detail, kept_generations(path))


def file_bytes(payload: bytes, skipped: list[str]) -> bytes:
    header = Header(
        format=FORMAT,
        **versions(),
        python=platform.python_version(),
        saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        payload_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        skipped=skipped,
    )
    return MAGIC + json.dumps(header.__dict__, sort_keys=True).encode() + b"\n" + payload


def save(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600), keeping the previous files as generations.

    A crash at any point leaves ``path`` whole: the new file is written aside and renamed over it;
    the generations move first, the current file is linked to generation 1.
    """
    write_private(path.with_name(path.name + ".tmp"), data)
    for n in range(GENERATIONS - 1, 0, -1):
        if generation(path, n).exists():
            os.replace(generation(path, n), generation(path, n + 1))
    if path.exists():
        generation(path, 1).unlink(missing_ok=True)
        try:
            os.link(path, generation(path, 1))
        except OSError:  # a file system without hard links
            shutil.copy2(path, generation(path, 1))
    os.replace(path.with_name(path.name + ".tmp"), path)
    _fsync_dir(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by the owner only, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def generation(path: Path, n: int) -> Path:
    """The ``n``-th kept generation of ``path`` (1 is the newest): ``aws-state.1.pickle``."""
    return path.with_name(f"{path.stem}.{n}{path.suffix}")


def kept_generations(path: Path) -> list[tuple[Path, str]]:
    """The kept generations that exist, newest first, each with when it was saved (or why not known)."""
    kept = []
    for n in range(1, GENERATIONS + 1):
        candidate = generation(path, n)
        if candidate.exists():
            try:
                saved = read_header(candidate).saved_at
            except StateFileError as exc:
                saved = f"unreadable: {exc.reason}"
            kept.append((candidate, saved))
    return kept


def set_aside(path: Path, now: datetime | None = None) -> Path:
    """Move ``path`` aside under a timestamp (``aws-state.20261202T101500Z.pickle``); the new name."""
    stamp = f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}"
    aside = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    os.replace(path, aside)
    return aside


# --- reading ---


def read_header(path: Path) -> Header:
    """The header of the state file at ``path``, checked against this installation and the payload;
    :class:`StateFileError` when the file is corrupt, truncated or of other versions."""
    return read(path)[0]


def read(path: Path) -> tuple[Header, bytes]:
    """The header and payload of the state file at ``path``, checked (see :func:`read_header`)."""
    return split(path.read_bytes(), path)


def split(data: bytes, path: Path) -> tuple[Header, bytes]:
    """A state file's bytes (read from ``path``) as its checked header and its payload."""
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise refuse(path, "truncated", f"it holds {len(data)} bytes, not even its header")
        if data[:1] == b"\x80":  # a bare pickle: format 1 (moto 5.2 as now), which recorded no versions
            saved = datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.exists() else datetime.now(UTC)
            when = saved.isoformat(timespec="seconds")
            return Header(1, "unknown", "unknown", "", when, len(data), ""), data
        raise refuse(path, "corrupt", "it does not start with the sandbox state's marker")
    line, newline, payload = data[len(MAGIC):].partition(b"\n")
    if not newline:
        raise refuse(path, "truncated", "its header line is cut short")
    try:
        fields = json.loads(line)
        header = Header(**fields)
    except (ValueError, TypeError) as exc:
        raise refuse(path, "corrupt", f"its header is not readable ({exc})") from None
    if header.format == 1:  # never written with this layout: a forged header
        raise refuse(path, "corrupt", "its header names format 1, which had no header")
    if (header.format, header.labkit, header.moto) != (FORMAT, *versions().values()):
        raise refuse(
            path, "version", f"it was saved by labkit {header.labkit} with moto {header.moto} (format "
            f"{header.format}); this is {installed()}"
        )
    if len(payload) < header.payload_bytes:
        raise refuse(
            path, "truncated", f"it holds {len(payload)} of its {header.payload_bytes} bytes of state"
        )
    if len(payload) > header.payload_bytes or hashlib.sha256(payload).hexdigest() != header.sha256:
        raise refuse(path, "corrupt", "its content does not match the checksum it was saved with")
    return header, payload


def installed() -> str:
    found = versions()
    return f"labkit {found['labkit']} with moto {found['moto']} (format {FORMAT})"


