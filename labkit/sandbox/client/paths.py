"""Where the sandbox keeps its files: ``labkit_home()/sandbox/``, or ``LABKIT_SANDBOX_HOME``.

``LABKIT_SANDBOX_HOME`` pins the sandbox's folder on its own, so that a test session can share
one sandbox while each test gets its own LABKIT_HOME.

- ``service.json``: the running service (pid, endpoint, ports), written once it serves, removed
  when it stops; ``service.lock`` serialises starting and stopping across processes.
- ``service.log``: the service's log (moto, the data plane, instances).
- ``aws-state.pickle``: moto's backends, saved shortly after changes and on the way down
  (:mod:`.persistence`); ``aws-state.1.pickle`` to ``.3`` are the previous saves.
- ``save-status.json``: how the service's saves went (the last good one, the last failure).
- ``ports.json``: the ports last used (API and listeners), so that URLs survive a restart.
- ``albs.json``: each ALB's DNS name with the loopback URLs of its listeners.
- ``instances/<id>/``: one folder per instance: the artifact, the unpacked release, ``app.log``
  and ``app.pid``.

The folder is 0700 and the service writes its files 0600: they hold the user's AWS state.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from labkit.settings import labkit_home

#: The service's status path (moto has no such path).
STATUS_PATH = "/labkit-sandbox/status"
#: The service's control path for quota values (POST JSON ``{"region", "quota_code", "value"}``):
#: how a drill lowers a quota, which no AWS API can (raising one is ``RequestServiceQuotaIncrease``).
QUOTAS_PATH = "/labkit-sandbox/quotas"
#: The control path for IAM enforcement (POST JSON ``{"enforce": true|false}``).
IAM_PATH = "/labkit-sandbox/iam"
#: The sandbox's OIDC issuer lives below this path of the API's endpoint (labkit.sandbox.server.oidc).
OIDC_PATH = "/labkit-sandbox/oidc"
#: The recorded calls of one access key (GET ``?access_key_id=...&since=...``; labkit.sandbox.server.trail).
TRAIL_PATH = "/labkit-sandbox/trail"
#: Where the RDS instances' data folders live when the sandbox runs as root (a folder per sandbox).
ROOT_DATABASES = Path("/var/lib/labkit/postgres")


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
    def save_status_file(self) -> Path:
        return self.root / "save-status.json"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def albs_file(self) -> Path:
        return self.root / "albs.json"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"

    @property
    def databases_dir(self) -> Path:
        """The RDS instances' data folders (:mod:`labkit.sandbox.server.databases`): in this folder,
        unless the sandbox runs as root. PostgreSQL refuses to run as root, and the user it runs as
        then cannot traverse a root-only home, so they live under :data:`ROOT_DATABASES`, in a
        folder named for this sandbox's path."""
        if os.geteuid() != 0:
            return self.root / "databases"
        return ROOT_DATABASES / hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]


def sandbox_paths() -> SandboxPaths:
    """The sandbox's folder (``LABKIT_SANDBOX_HOME``, else under LABKIT_HOME), created on first use."""
    pinned = os.environ.get("LABKIT_SANDBOX_HOME", "").strip()
    root = Path(pinned).expanduser().resolve() if pinned else labkit_home() / "sandbox"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_mode & 0o077:  # made by an earlier labkit, or under a permissive umask
        root.chmod(0o700)
    return SandboxPaths(root)


def is_loopback_host(host: str) -> bool:
    """True for a Host header naming loopback: ``127.0.0.1``, ``localhost`` or ``[::1]``, with
    or without a port (what a client of the sandbox's endpoint sends; a rebound DNS name is not)."""
    name = host.strip().lower()
    if name.startswith("["):
        name, _, rest = name[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
        return name == "::1"
    name, _, port = name.partition(":")
    if port and not port.isdigit():
        return False
    return name in ("127.0.0.1", "localhost")
