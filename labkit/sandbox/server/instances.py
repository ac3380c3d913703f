"""One app process per running instance, as EC2 runs the fleet's user data.

:class:`InstanceApps` is reconciled with the instances moto says are running. A new instance gets a
folder ``instances/<id>/``; in a thread of its own the release artifact that its user data names
is read from the sandbox's S3 (retried for a while, as a boot script retries ``aws s3 cp``),
unpacked, and started with :class:`labkit.release.appserver.AppProcess` on a free loopback port.

- A crashed app stays down, as on EC2 (nothing restarts it); its port stays in the map, so the
  load balancer's health checks find nothing there and mark the target unhealthy.
- A terminated (or stopped) instance's app gets SIGTERM once no target group is draining it any
  more, then in-flight requests finish and it exits; its folder is removed.
- An app starts from :func:`instance_env`, not from the environment of whoever started the
  sandbox: nothing of the user's (AWS keys, tokens, profile) reaches code run as an instance. What
  the instance itself has on EC2 is added by ``app_env`` (an instance with a database: its settings
  from the user data and its role's credentials, :func:`.instance_view.app_environment`).
- ``app.pid`` in each folder lets a later start (or ``labkit sandbox down`` after a hard kill)
  find apps a dead service left behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from labkit.errors import LabkitError, NoArtifactError
from labkit.release.appserver import AppProcess, unpack_release

if TYPE_CHECKING:  # moto's view of instances is the service's business, not this module's
    from labkit.sandbox.server.instance_view import InstanceSpec

log = logging.getLogger(__name__)

AppState = Literal["starting", "running", "crashed", "failed", "stopping"]

#: How long a new instance waits for its artifact to appear in S3 before it gives up.
ARTIFACT_WAIT_S = 60.0
#: The PATH of a fresh Linux instance's boot script.
INSTANCE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def instance_env(folder: Path) -> dict[str, str]:
    """The environment an instance's app starts with: what an EC2 instance's boot script has (a
    system PATH, a home, a locale), nothing of the user who started the sandbox (no AWS keys,
    session tokens, profile or endpoint; on EC2 those come from the instance's role, if any)."""
    return {"PATH": INSTANCE_PATH, "HOME": str(folder), "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class InstanceInfo:
    """One instance's app as the sandbox runs it."""

    instance_id: str
    color: str
    version: str
    state: AppState
    port: int | None
    pid: int | None
    folder: str
    error: str | None = None


class _Slot:
    """The sandbox's record of one instance's app."""

    def __init__(self, spec: InstanceSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.state: AppState = "starting"
        self.app: AppProcess | None = None
        self.error: str | None = None
        self.cancelled = threading.Event()

    def info(self) -> InstanceInfo:
        app = self.app
        return InstanceInfo(
            instance_id=self.spec.instance_id,
            color=self.spec.color,
            version=self.spec.version,
            state=self.state,
            port=app.port if app else None,
            pid=app.pid if app else None,
            folder=str(self.folder),
            error=self.error,
        )


class InstanceApps:
    """The app processes of the sandbox's instances.

    ``read_artifact`` returns an instance's artifact bytes (None while there is none);
    ``draining`` says whether any target group is still draining an instance; ``app_env`` gives
    what an instance's app gets on top of :func:`instance_env`.
    """

    def __init__(
        self,
        root: Path,
        *,
        read_artifact: Callable[[InstanceSpec], bytes | None],
        draining: Callable[[str], bool],
        app_env: Callable[[InstanceSpec], dict[str, str]] = lambda _spec: {},
    ) -> None:
        self.root = root
        self._read_artifact = read_artifact
        self._app_env = app_env
        self._draining = draining
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- reconcile (the service's loop; never blocks) ---

    def reconcile(self, wanted: dict[str, InstanceSpec]) -> None:
        """Start apps for new instances, stop those of instances that are gone, notice crashes."""
        with self._lock:
            for instance_id, spec in wanted.items():
                if instance_id not in self._slots:
                    slot = self._slots[instance_id] = _Slot(spec, self.root / instance_id)
                    self._spawn(self._start, slot, f"start-{instance_id}")
            for instance_id in [i for i in self._slots if i not in wanted]:
                slot = self._slots.pop(instance_id)
                slot.cancelled.set()
                self._spawn(self._retire, slot, f"stop-{instance_id}")
            for slot in self._slots.values():
                if slot.state == "running" and slot.app is not None and not slot.app.running:
                    slot.state = "crashed"
                    slot.error = f"exited with code {slot.app.returncode}"
                    log.warning(
                        "instance %s: its app %s; it stays down, as on EC2", slot.spec.instance_id, slot.error
                    )

    def ports(self) -> dict[str, int]:
        """Instance id -> loopback port, for every app that started (crashed ones included)."""
        with self._lock:
            return {i: s.app.port for i, s in self._slots.items() if s.app is not None and s.app.port}

    def describe(self) -> list[InstanceInfo]:
        with self._lock:
            return [slot.info() for slot in self._slots.values()]

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop every app now (SIGTERM, in parallel) and wait for them; keep their folders."""
        self._closing.set()
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
            for slot in slots:
                slot.cancelled.set()
        for slot in slots:
            self._spawn(self._stop_app, slot, f"close-{slot.spec.instance_id}")
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- threads ---

    def _spawn(self, target: Callable[[_Slot], None], slot: _Slot, name: str) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=target, args=(slot,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _start(self, slot: _Slot) -> None:
        spec = slot.spec
        try:
            artifact = self._fetch(slot)
            if artifact is None:
                return  # cancelled meanwhile
            release = slot.folder / "release"
            shutil.rmtree(release, ignore_errors=True)  # a folder left by an earlier run
            unpack_release(artifact, release)
            if slot.cancelled.is_set():
                return
            app = AppProcess.start(
                release,
                color=spec.color,
                instance_id=spec.instance_id,
                log_path=slot.folder / "app.log",
                env={**instance_env(slot.folder), **self._app_env(spec)},
            )
        except LabkitError as exc:
            slot.state, slot.error = "failed", exc.message
            log.error("instance %s: the app did not start: %s", spec.instance_id, exc)
            return
        (slot.folder / "app.pid").write_text(f"{app.pid}\n")
        with self._lock:
            cancelled = slot.cancelled.is_set()
            if not cancelled:
                slot.app, slot.state = app, "running"
        if cancelled:  # terminated while starting: _retire found no app to stop
            app.stop()
            return
        log.info("instance %s: %s %s on port %s", spec.instance_id, spec.color, spec.version, app.port)

    def _fetch(self, slot: _Slot) -> Path | None:
        """The artifact saved in the instance's folder; None when cancelled first."""
        spec = slot.spec
        deadline = time.monotonic() + ARTIFACT_WAIT_S
        while True:
            data = self._read_artifact(spec)
            if data is not None:
                break
            if time.monotonic() > deadline:
                raise NoArtifactError(
                    f"{spec.artifact_uri} was not found in the sandbox's S3 within {ARTIFACT_WAIT_S:g} s.",
                    hint=f"Upload it (`labkit release build {spec.version or 'VERSION'}`), then replace the "
                    "instance (terminate it; its ASG launches a new one).",
                )
            if slot.cancelled.wait(1.0):
                return None
        slot.folder.mkdir(parents=True, exist_ok=True)
        artifact = slot.folder / "release.tar.gz"
        artifact.write_bytes(data)
        return artifact

    def _retire(self, slot: _Slot) -> None:
        """A terminated instance: wait out its draining, then SIGTERM; remove its folder."""
        while self._draining(slot.spec.instance_id) and not self._closing.wait(0.25):
            pass
        self._stop_app(slot)
        if not self._closing.is_set():
            shutil.rmtree(slot.folder, ignore_errors=True)

    def _stop_app(self, slot: _Slot) -> None:
        with self._lock:
            app, slot.state = slot.app, "stopping"
        if app is not None:
            code = app.stop()
            log.info("instance %s: app stopped (exit code %s)", slot.spec.instance_id, code)
        with contextlib.suppress(OSError):
            (slot.folder / "app.pid").unlink()
