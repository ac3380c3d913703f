"""Run a release locally as one EC2 instance runs it: unpacked, under gunicorn, on loopback.

The sandbox runs one :class:`AppProcess` per running instance; ``labkit app smoke`` and the
tests use the same two calls::

    release_dir = unpack_release(artifact, home / "instances" / "i-0abc")
    proc = AppProcess.start(release_dir, color="blue", instance_id="i-0abc", log_path=log,
                            version="1.4.0")
    proc.url          # http://127.0.0.1:PORT, once GET /health/live answers
    proc.get("/")     # (200, b'{"color": "blue", ...}')
    proc.stop()       # SIGTERM: readiness 503, drain, in-flight requests finish, exit
    proc.kill()       # SIGKILL to every process of the app: a crash, for lessons

The gunicorn is the current interpreter's (``sys.executable -m gunicorn``) with the release's
own ``app/gunicorn.conf.py``; the settings below reach it as APP_* environment variables.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from labkit.errors import AppProcessError, ReleaseError
from labkit.release.build import MANIFEST_NAME

#: The files that make a folder (or an artifact) a release.
RELEASE_FILES = (MANIFEST_NAME, "app/__init__.py", "app/gunicorn.conf.py")

_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")
_POLL_S = 0.05


def unpack_release(tar_path: Path | str, dest: Path | str) -> Path:
    """Unpack a release artifact into ``dest`` (new or empty) and return ``dest``.

    Refuses an archive that is not a release (no ``release.json``/``app/``) or whose entries
    would land outside ``dest`` (tarfile's "data" filter).
    """
    tar_path, dest = Path(tar_path), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ReleaseError(
            f"Cannot unpack {tar_path} into {dest}: the folder already holds files.",
            hint="Unpack each release into a new folder, so two versions never mix.",
        )
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            missing = [name for name in RELEASE_FILES if name not in tar.getnames()]
            if missing:
                raise ReleaseError(
                    f"{tar_path} is not a release artifact: it lacks {', '.join(missing)}.",
                    hint="Build one with `labkit release build VERSION`.",
                )
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise ReleaseError(
            f"Cannot unpack {tar_path}: {exc}", hint="Rebuild the artifact with `labkit release build`."
        ) from None
    return dest


def _get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """(status, body) of GET ``path`` on 127.0.0.1:``port``; OSError when nothing answers.

    http.client, not urllib: urllib would honour an HTTP(S)_PROXY setting.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise ConnectionError(f"GET {path} on port {port}: {exc!r}") from exc
    finally:
        conn.close()


def _check_port_free(port: int) -> None:
    """Refuse a port in use now, rather than after gunicorn's bind retries (about 5 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise AppProcessError(
                f"Cannot serve the app on 127.0.0.1:{port}: {exc.strerror}.",
                hint="Pick another port, or pass port=0 for a free one.",
            ) from None


class AppProcess:
    """One release app (a gunicorn master and its workers) on ``127.0.0.1:port``.

    Make one with :meth:`start`. The app runs in its own process group, so :meth:`kill` takes
    the workers down with the master, as a crashed instance would.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        port: int,
        release_dir: Path,
        log_path: Path,
        log_offset: int,
        color: str,
        instance_id: str,
        graceful_timeout_s: int,
    ) -> None:
        """Internal: use :meth:`start`."""
        self._proc = proc
        self.port = port
        self.release_dir = release_dir
        self.log_path = log_path
        self._log_offset = log_offset
        self.color = color
        self.instance_id = instance_id
        self.graceful_timeout_s = graceful_timeout_s

    @classmethod
    def start(
        cls,
        release_dir: Path | str,
        *,
        color: str,
        instance_id: str,
        log_path: Path | str,
        version: str | None = None,
        port: int = 0,
        workers: int = 1,
        threads: int = 4,
        drain_s: float = 2.0,
        graceful_timeout_s: int = 15,
        start_timeout_s: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> AppProcess:
        """Start the release in ``release_dir`` and return once GET /health/live answers.

        - ``version``: when given, the app refuses to start unless release.json names it (as
          on EC2, where the launch template's version must match the artifact it fetched).
        - ``port``: 0 lets the OS pick a free one (read back from gunicorn's log); a port in
          use is refused at once.
        - ``workers``, ``threads``: gunicorn processes and threads per process; the defaults
          suit many instances on one laptop (EC2 uses gunicorn.conf.py's own defaults).
        - ``drain_s``: after SIGTERM, how long readiness answers 503 while requests are still
          served; ``graceful_timeout_s``: the whole stop, after which gunicorn kills what is left.
        - stdout and stderr (access and error logs) are appended to ``log_path``.

        Raises AppProcessError with the end of the log when the app exits early or does not
        answer within ``start_timeout_s`` (a malformed release.json shows up here).

        ``env`` is the environment the app starts from (default: this process's); the APP_*
        settings above are added to it.
        """
        release_dir = Path(release_dir).resolve()
        missing = [name for name in RELEASE_FILES if not (release_dir / name).is_file()]
        if missing:
            raise AppProcessError(
                f"{release_dir} is not an unpacked release: it lacks {', '.join(missing)}.",
                hint="Unpack an artifact with labkit.release.appserver.unpack_release() first.",
            )
        if port:
            _check_port_free(port)
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)

        base = os.environ if env is None else env
        app_env = {k: v for k, v in base.items() if not k.startswith("APP_") and k != "PYTHONPATH"}
        app_env.update(
            APP_BIND=f"127.0.0.1:{port}",
            APP_COLOR=color,
            APP_INSTANCE_ID=instance_id,
            **({"APP_VERSION": version} if version is not None else {}),
            APP_RELEASE_FILE=str(release_dir / MANIFEST_NAME),
            APP_WORKERS=str(workers),
            APP_THREADS=str(threads),
            APP_DRAIN_S=str(drain_s),
            APP_GRACEFUL_TIMEOUT=str(graceful_timeout_s),
            PYTHONUNBUFFERED="1",
        )
        config = "app/gunicorn.conf.py"
        command = [sys.executable, "-m", "gunicorn", "-c", config, "--chdir", str(release_dir)]
        with log_path.open("ab") as log:
            offset = log.tell()
            proc = subprocess.Popen(
                command,
                cwd=release_dir,
                env=app_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches the workers too
            )
        app = cls(
            proc,
            port=port,
            release_dir=release_dir,
            log_path=log_path,
            log_offset=offset,
            color=color,
            instance_id=instance_id,
            graceful_timeout_s=graceful_timeout_s,
        )
        try:
            app._wait_until_live(start_timeout_s)
        except BaseException:
            app.kill()
            raise
        return app

    def _wait_until_live(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        listening = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AppProcessError(
                    f"The app in {self.release_dir} exited with code {self._proc.returncode} while "
                    f"starting. End of {self.log_path}:\n{self.log_tail()}",
                    hint="Fix what the log names (a malformed release.json is refused here) and start again.",
                )
            # Only gunicorn's "Listening at" line proves the port is ours: before it, another
            # process on a given port could answer the liveness check.
            if not listening:
                match = _LISTENING.search(self.log_path.read_bytes()[self._log_offset :])
                if match:
                    listening, self.port = True, int(match.group(1))
            if listening:
                with contextlib.suppress(OSError):
                    if _get(self.port, "/health/live", timeout=1.0)[0] == 200:
                        return
            time.sleep(_POLL_S)
        raise AppProcessError(
            f"The app in {self.release_dir} did not answer GET /health/live within {timeout_s:g} s. "
            f"End of {self.log_path}:\n{self.log_tail()}",
            hint="Look at the log above; a busy machine may need a longer start_timeout_s.",
        )

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines this process wrote to its log (gunicorn's and the access log)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc.strerror})"
        return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"

    @property
    def pid(self) -> int:
        """The gunicorn master's pid (also the app's process group id)."""
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of ``GET path`` on this app; OSError (e.g. refused) when nothing answers."""
        return _get(self.port, path, timeout)

    @property
    def running(self) -> bool:
        """True while the gunicorn master runs (False after stop, kill or a crash)."""
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, wait up to ``timeout`` (default: graceful_timeout_s + 5), then SIGKILL; the exit code.

        On SIGTERM the app drains (readiness 503 while still serving), stops accepting, lets
        in-flight requests finish and exits within its graceful timeout.
        """
        wait_s = self.graceful_timeout_s + 5 if timeout is None else timeout
        if self.running:
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            code = self._proc.wait()
        return code

    def kill(self) -> int:
        """SIGKILL the master and its workers at once (a crash); the exit code."""
        self._signal_group(signal.SIGKILL)
        return self._proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
            os.killpg(self._proc.pid, sig)

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<AppProcess {self.color} {self.instance_id} {self.url} {state}>"
