"""Where the sandbox keeps its files: ``labkit_home()/sandbox/``, or ``LABKIT_SANDBOX_HOME``.

``LABKIT_SANDBOX_HOME`` pins the sandbox's folder on its own, so that a test session can share
one sandbox while each test gets its own LABKIT_HOME.

- ``service.json``: the running service (pid, endpoint, ports), written once it serves, removed
  when it stops; ``service.lock`` serialises starting and stopping across processes.
- ``service.log``: the service's log (moto, the data plane, instances).
- ``aws-state.pickle``: moto's backends, saved on the way down and every so often (persistence).
- ``ports.json``: the ports last used (API and listeners), so that URLs survive a restart.
- ``albs.json``: each ALB's DNS name with the loopback URLs of its listeners.
- ``instances/<id>/``: one folder per instance: the artifact, the unpacked release, ``app.log``
  and ``app.pid``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labkit.settings import labkit_home

#: The service's status path (moto has no such path).
STATUS_PATH = "/labkit-sandbox/status"


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @property
    def service_file(self) -> Path:
        return self.root / "service.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "service.lock"

    @property
    def log_file(self) -> Path:
        return self.root / "service.log"

    @property
    def state_file(self) -> Path:
        return self.root / "aws-state.pickle"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def albs_file(self) -> Path:
        return self.root / "albs.json"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"


def sandbox_paths() -> SandboxPaths:
    """The sandbox's folder (``LABKIT_SANDBOX_HOME``, else under LABKIT_HOME), created on first use."""
    pinned = os.environ.get("LABKIT_SANDBOX_HOME", "").strip()
    root = Path(pinned).expanduser().resolve() if pinned else labkit_home() / "sandbox"
    root.mkdir(parents=True, exist_ok=True)
    return SandboxPaths(root)
