"""Starting, finding and stopping the sandbox service from any process.

The service writes ``service.json`` once it serves; a process finds it there and confirms it by
asking its status path (the pid must match). Starting and stopping take ``service.lock``
(``flock``), so two processes calling :func:`up` at once start one service.

Nothing is lost silently: :func:`up` refuses a saved state it cannot load (naming why and the ways
on) and reports the locks the restored state holds; :func:`warn_if_unsaved` tells every command
while the service's saves fail; :func:`down` fails when the final save did.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from labkit.errors import FinalSaveError, SandboxError
from labkit.sandbox.client import statefile
from labkit.sandbox.client.leftovers import kill_leftovers
from labkit.sandbox.client.paths import (
    IAM_PATH,
    QUOTAS_PATH,
    STATUS_PATH,
    TRAIL_PATH,
    SandboxPaths,
    sandbox_paths,
)
from labkit.settings import PROJECT_ROOT, sandbox_iam_enforced

Reporter = Callable[[str], None]

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
#: The log is moved aside to ``service.log.1`` at start once it is this big.
LOG_ROTATE_BYTES = 5_000_000
#: The service's exit code when it refuses a saved state (service.EXIT_STATE_UNREADABLE; the
#: service module imports moto, so it is not imported here).
EXIT_STATE_UNREADABLE = 3

# Services this process started: their Popen objects reap them, so a stopped one is not
# mistaken for alive while it is a zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class SandboxStatus:
    """What ``labkit sandbox status`` shows."""

    running: bool
    endpoint: str | None = None
    pid: int | None = None
    started_at: str | None = None
    load_balancers: int = 0
    listeners: int = 0
    target_groups: int = 0
    instances: list[dict[str, Any]] = field(default_factory=list)
    #: The RDS instances' PostgreSQL servers: identifier, port, state (starting, running, stopped,
    #: failed) and what failed.
    databases: list[dict[str, Any]] = field(default_factory=list)
    home: str | None = None
    #: How the saves went (``save-status.json``; also read when the service is down).
    saves: dict[str, Any] = field(default_factory=dict)
    #: The locks the saved state held when the service loaded it.
    restored_locks: list[dict[str, Any]] = field(default_factory=list)
    #: IAM enforcement (``enforced``) and the OIDC issuer (``issuer``, ``served_at``, ``thumbprint``).
    iam: dict[str, Any] = field(default_factory=dict)
    oidc: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if not self.running:
            return "not running (`labkit sandbox up` starts it)"
        serving = sum(1 for i in self.instances if i.get("state") == "running")
        return (
            f"running at {self.endpoint} (pid {self.pid}): {self.load_balancers} load balancer(s), "
            f"{self.listeners} listener(s), {self.target_groups} target group(s), "
            f"{len(self.instances)} instance app(s), {serving} serving"
            + (f", {len(self.databases)} database(s)" if self.databases else "")
        )

    @property
    def saves_failing(self) -> bool:
        return bool(self.saves.get("failures"))

    def save_lines(self) -> list[str]:
        """When the last save succeeded and, while saves fail, why the last one failed."""
        if not self.saves:
            return ["saved: never (nothing changed since the sandbox was created)"]
        lines = [f"last good save: {self.saves.get('last_ok_at') or 'never'}"]
        if self.saves_failing:
            lines.append(
                f"SAVES ARE FAILING since {self.saves.get('failing_since')} ({self.saves.get('failures')} "
                f"attempt(s)); the last, at {self.saves.get('last_error_at')}: {self.saves.get('last_error')}"
            )
        elif self.saves.get("last_error"):
            lines.append(f"(an earlier save failed at {self.saves.get('last_error_at')}; saves work again)")
        final = self.saves.get("final") or {}
        if not self.running and final and not final.get("ok"):
            lines.append(
                f"the final save of the last run failed ({final.get('error')}); its last state is kept as "
                f"{final.get('kept_as')}"
            )
        return lines

    def lock_lines(self) -> list[str]:
        return [f"restored lock: {held['summary']}" for held in self.restored_locks]

    def identity_lines(self) -> list[str]:
        """Whether IAM is enforced, and where the OIDC issuer is (a running sandbox only)."""
        lines = []
        if self.iam:
            on = self.iam.get("enforced")
            lines.append("IAM: enforced (labkit's own credentials are the admin)" if on else "IAM: off")
        if self.oidc:
            lines.append(
                f"OIDC issuer: {self.oidc.get('issuer')}, served at {self.oidc.get('served_at')}, "
                f"thumbprint {self.oidc.get('thumbprint')}"
            )
        return lines


# --- finding the service ---


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        # A zombie (exited, not yet reaped by its parent) still answers kill(0).
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_service(pid: int) -> bool:
    """True when ``pid`` runs and is a sandbox service (where /proc tells): after a reboot the
    pid in a stale service.json may belong to anything, which must never be signalled."""
    if not _alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc (macOS): the pid is all there is to go by
    try:
        return b"labkit.sandbox.server.service" in cmdline.read_bytes()
    except OSError:
        return False


def _read_service_file(paths: SandboxPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.service_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data and "endpoint" in data else None


def _ask_status(endpoint: str, timeout: float = 3.0) -> dict[str, Any] | None:
    host, _, port = endpoint.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", STATUS_PATH)
        response = conn.getresponse()
        if response.status != 200:
            return None
        data = json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return data if isinstance(data, dict) else None


def set_quota(endpoint: str, region: str, quota_code: str, value: float, timeout: float = 10.0) -> float:
    """Set the sandbox's quota ``quota_code`` in ``region`` to ``value`` (lower or higher: the
    sandbox's control path, for drills); the value it had."""
    answer = _control(
        endpoint,
        QUOTAS_PATH,
        {"region": region, "quota_code": quota_code, "value": value},
        f"set quota {quota_code} to {value:g}",
        "Quota codes it tracks: labkit.infra.quotas.QUOTAS.",
        timeout,
    )
    return float(answer["previous"])


def set_iam_enforced(endpoint: str, enforce: bool, timeout: float = 10.0) -> bool:
    """Switch the running sandbox's IAM enforcement on or off; whether it was on."""
    verb = "enforce IAM" if enforce else "stop enforcing IAM"
    answer = _control(endpoint, IAM_PATH, {"enforce": enforce}, verb, "See the sandbox's log.", timeout)
    return bool(answer["previous"])


class OidcIssuer(NamedTuple):
    """The sandbox's OIDC issuer: its URL (``iss``; the IAM provider's URL), the thumbprint the IAM
    provider must list, and where it is served (``served_at + "/token"`` hands out tokens)."""

    url: str
    thumbprint: str
    served_at: str


def oidc_issuer(endpoint: str) -> OidcIssuer:
    """The running sandbox's OIDC issuer, from its status."""
    data = _ask_status(endpoint)
    oidc = (data or {}).get("oidc")
    if not isinstance(oidc, dict):
        raise SandboxError(
            f"The sandbox at {endpoint} did not say where its OIDC issuer is.",
            hint="Is it running, and from this checkout? `labkit sandbox status`; restart it if it is older.",
        )
    return OidcIssuer(str(oidc["issuer"]), str(oidc["thumbprint"]), str(oidc["served_at"]))


def recorded_calls(
    endpoint: str, access_key_id: str, since: str | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The calls the running sandbox recorded for ``access_key_id`` (CloudTrail-shaped events, oldest
    first), from ``since`` (ISO 8601) on when given."""
    query = urlencode({"access_key_id": access_key_id, **({"since": since} if since else {})})
    host, _, port = endpoint.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", f"{TRAIL_PATH}?{query}")
        response = conn.getresponse()
        answer = json.loads(response.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SandboxError(
            f"The sandbox at {endpoint} did not answer its trail: {exc}",
            hint="Is it running? `labkit sandbox status`.",
        ) from exc
    finally:
        conn.close()
    if response.status != 200 or not isinstance(answer.get("events"), list):
        raise SandboxError(
            f"The sandbox's trail answered HTTP {response.status}: {answer.get('error')}",
            hint="Is the sandbox from this checkout? If older, restart it: `labkit sandbox down`, `up`.",
        )
    return list(answer["events"])


def _control(endpoint: str, path: str, request: dict[str, Any], what: str, hint: str, timeout: float) -> Any:
    """POST ``request`` to one of the service's control paths; its JSON answer."""
    host, _, port = endpoint.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(request), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SandboxError(
            f"The sandbox at {endpoint} did not {what}: {exc}", hint="Is it running? `labkit sandbox status`."
        ) from exc
    finally:
        conn.close()
    if response.status != 200:
        raise SandboxError(f"The sandbox refused to {what}: {answer.get('error')}", hint=hint)
    return answer


def _running(paths: SandboxPaths) -> dict[str, Any] | None:
    """The running service's status, None when there is none (or it does not answer)."""
    info = _read_service_file(paths)
    if info is None or not _is_service(int(info["pid"])):
        return None
    status = _ask_status(str(info["endpoint"]))
    if status is None or status.get("pid") != info["pid"]:
        return None
    return status


def _wait_answering(paths: SandboxPaths, timeout_s: float) -> dict[str, Any] | None:
    """The running service's status once its API answers, within ``timeout_s``; None when its
    process ends first or it stays silent. A service busy saving its state or starting a database on
    a loaded machine can miss one status probe and be well: that is no reason to call it broken."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = _read_service_file(paths)
        if info is None or not _is_service(int(info["pid"])):
            return None
        status = _running(paths)
        if status is not None or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@contextlib.contextmanager
def _service_lock(paths: SandboxPaths, timeout_s: float) -> Iterator[None]:
    with paths.lock_file.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"Another process has been starting or stopping the sandbox for {timeout_s:g} s.",
                        hint=f"Wait for it, or look at {paths.log_file}.",
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- up / down ---


def up(
    *,
    timeout_s: float = START_TIMEOUT_S,
    report: Reporter | None = None,
    reset_state: bool = False,
    restore: Path | None = None,
) -> str:
    """Start the sandbox unless it runs; its AWS endpoint URL once the API answers.

    A saved state that cannot be loaded makes it refuse (:class:`~labkit.errors.StateFileError`).
    ``reset_state`` sets that file aside under a timestamp and starts empty; ``restore`` puts a
    kept file (a generation such as ``aws-state.1.pickle``) in its place first. Both act only when
    the sandbox is not running. Locks the restored state holds are reported.
    """
    paths = sandbox_paths()
    status = _running(paths)
    if status is not None:
        if reset_state or restore is not None:
            raise SandboxError(
                "The sandbox is running, so its saved state cannot be reset or restored now.",
                hint="Stop it first: `labkit sandbox down`.",
            )
        return str(status["endpoint"])
    say = report or (lambda line: print(line, flush=True))
    with _service_lock(paths, timeout_s):
        status = _running(paths)  # another process may have started it while we waited
        if status is not None:
            return str(status["endpoint"])
        stale = _read_service_file(paths)
        if stale is not None and _is_service(int(stale["pid"])):
            status = _wait_answering(paths, timeout_s)
            if status is not None:
                return str(status["endpoint"])
        if stale is not None and _is_service(int(stale["pid"])):
            raise SandboxError(
                f"A sandbox service (pid {stale['pid']}) runs, but its API at {stale['endpoint']} "
                f"has not answered for {timeout_s:g} s.",
                hint=f"Run `labkit sandbox down` to stop it, then `labkit sandbox up`; see {paths.log_file}.",
            )
        paths.service_file.unlink(missing_ok=True)
        _prepare_state(paths, say, reset_state=reset_state, restore=restore)
        return _start(paths, timeout_s, say)


def _prepare_state(paths: SandboxPaths, say: Reporter, *, reset_state: bool, restore: Path | None) -> None:
    """Check the saved state before starting; set it aside or restore a kept file when asked."""
    state = paths.state_file
    if restore is not None and restore.expanduser().resolve() != state.resolve():
        restore = restore.expanduser().resolve()
        statefile.read_header(restore)  # refuse a kept file that is no better
        if state.exists():
            say(f"sandbox: the current state is kept aside as {statefile.set_aside(state)}")
        shutil.copy2(restore, state)
        state.chmod(0o600)
        say(f"sandbox: restored the AWS state from {restore}")
    elif reset_state and state.exists():
        say(f"sandbox: starting empty; the saved state is kept aside as {statefile.set_aside(state)}")
    if state.exists():
        statefile.read_header(state)  # StateFileError names the file, why, and the ways on


def _start(paths: SandboxPaths, timeout_s: float, report: Reporter) -> str:
    sandbox_iam_enforced()  # a bad LABKIT_SANDBOX_IAM is refused here, not in the service's log
    if paths.log_file.exists() and paths.log_file.stat().st_size > LOG_ROTATE_BYTES:
        os.replace(paths.log_file, paths.log_file.with_suffix(".log.1"))
    env = dict(os.environ, LABKIT_SANDBOX_HOME=str(paths.root.resolve()), PYTHONUNBUFFERED="1")
    fd = os.open(paths.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # the log names resources and errors: the user's alone
    with os.fdopen(fd, "ab") as log:
        offset = log.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.sandbox.server.service"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the terminal or notebook kernel that started it
        )
    _children[proc.pid] = proc
    started = time.monotonic()
    next_note = started + 5
    while True:
        if proc.poll() is not None:
            if proc.returncode == EXIT_STATE_UNREADABLE and paths.state_file.exists():
                _load_failure(paths.state_file, paths.log_file, offset)
            raise SandboxError(
                f"The sandbox service exited with code {proc.returncode} while starting. End of "
                f"{paths.log_file}:\n{_tail(paths.log_file, offset)}",
                hint="Fix what the log names; `labkit sandbox reset` starts from an empty AWS state.",
            )
        info = _read_service_file(paths)
        ours = info is not None and info["pid"] == proc.pid
        started_status = _ask_status(str(info["endpoint"])) if info is not None and ours else None
        if info is not None and started_status is not None:
            for held in started_status.get("restored_locks") or []:
                report(f"sandbox: WARNING: the restored state holds a {held['summary']}")
            return str(info["endpoint"])
        now = time.monotonic()
        if now - started > timeout_s:
            _stop_pid(proc.pid, 10)
            raise SandboxError(
                f"The sandbox service did not answer within {timeout_s:g} s. End of {paths.log_file}:\n"
                f"{_tail(paths.log_file, offset)}",
                hint="A busy machine may need longer: try `labkit sandbox up` again.",
            )
        if now >= next_note:
            report(f"sandbox: still starting ({now - started:.0f} s; loading moto and the saved AWS state)")
            next_note = now + 5
        time.sleep(0.1)


def down(*, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the sandbox (saving its AWS state) and every app process; False when it was not running.

    Raises :class:`SandboxError` when the final save failed (the message says why, where the last
    good save and the service's last state are, and how to go on) or could not happen (the service
    had to be killed).
    """
    paths = sandbox_paths()
    with _service_lock(paths, timeout_s):
        info = _read_service_file(paths)
        was_running = info is not None and _is_service(int(info["pid"]))
        killed = False
        if info is not None and was_running:
            _clear_final(paths)
            killed = _stop_pid(int(info["pid"]), timeout_s)
        paths.service_file.unlink(missing_ok=True)
        kill_leftovers(paths.instances_dir)  # after a hard kill of the service, its apps
    if was_running:
        _check_final_save(paths, killed)
    return was_running


def _clear_final(paths: SandboxPaths) -> None:
    saves = read_save_status(paths)
    if saves.pop("final", None) is not None:
        statefile.write_private(paths.save_status_file, json.dumps(saves, indent=2).encode())


def _check_final_save(paths: SandboxPaths, killed: bool) -> None:
    saves = read_save_status(paths)
    final = saves.get("final") or {}
    last_ok = saves.get("last_ok_at") or "never"
    if final.get("ok"):
        return
    if killed or not final:
        why = "did not stop in time and was killed" if killed else "exited without recording its final save"
        raise FinalSaveError(
            f"The sandbox service {why}: changes after its last good save may be lost.",
            hint=f"The last good save ({last_ok}) is {paths.state_file}; `labkit sandbox up` starts from it. "
            f"See {paths.log_file}.",
        )
    kept = final.get("kept_as")
    kept_text = (
        f"The service's last state, without what could not be saved ({len(final.get('skipped') or [])} "
        f"object(s)), is kept as {kept}."
        if kept
        else f"The service's last state could not be kept either ({final.get('keep_error')})."
    )
    raise FinalSaveError(
        f"The sandbox stopped, but its final save failed: {final.get('error')}. {kept_text}",
        hint=f"`labkit sandbox up` starts from the last good save ({last_ok}, {paths.state_file}); changes "
        "after it are not in it."
        + (f" To start from the kept state instead: `labkit sandbox up --restore {kept}`." if kept else "")
        + f" The service log says more: {paths.log_file}.",
    )


def read_save_status(paths: SandboxPaths | None = None) -> dict[str, Any]:
    """What ``save-status.json`` says about the service's saves ({} before the first)."""
    try:
        data = json.loads((paths or sandbox_paths()).save_status_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_failure(state: Path, log: Path, offset: int) -> None:
    """Raise the StateFileError for ``state``, which the service refused to load."""
    statefile.read_header(state)  # the checks that need no unpickling
    tail = _tail(log, offset, lines=3)
    marker = "cannot be loaded ("
    detail = tail[tail.index(marker):] if marker in tail else tail
    raise statefile.refuse(state, "corrupt", f"the service could not load it: {detail}")


def _stop_pid(pid: int, timeout_s: float) -> bool:
    """SIGTERM, wait, then SIGKILL; True when it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = _alive(pid)
    if killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
    return killed


def reset(*, report: Reporter | None = None) -> bool:
    """Stop the sandbox, wipe its saved AWS state, ports, instance folders and databases' data; start
    it again if it ran.

    True when it was running (and so runs again, empty).
    """
    paths = sandbox_paths()
    try:
        was_running = down()
    except FinalSaveError:  # it ran; its final save failed, which does not matter when all is wiped
        was_running = True
    generations = [statefile.generation(paths.state_file, n) for n in range(1, statefile.GENERATIONS + 1)]
    for path in (paths.state_file, paths.albs_file, paths.ports_file, paths.save_status_file, *generations):
        path.unlink(missing_ok=True)
    shutil.rmtree(paths.instances_dir, ignore_errors=True)
    shutil.rmtree(paths.databases_dir, ignore_errors=True)
    if was_running:
        up(report=report)
    return was_running


# --- status, URLs, logs ---


def status() -> SandboxStatus:
    paths = sandbox_paths()
    found = _running(paths)
    if found is None:
        return SandboxStatus(running=False, saves=read_save_status(paths))
    return SandboxStatus(
        running=True,
        endpoint=found.get("endpoint"),
        pid=found.get("pid"),
        started_at=found.get("started_at"),
        load_balancers=int(found.get("load_balancers", 0)),
        listeners=int(found.get("listeners", 0)),
        target_groups=int(found.get("target_groups", 0)),
        instances=list(found.get("instances", [])),
        databases=list(found.get("databases", [])),
        home=found.get("home"),
        saves=dict(found.get("saves") or {}),
        restored_locks=list(found.get("restored_locks") or []),
        iam=dict(found.get("iam") or {}),
        oidc=dict(found.get("oidc") or {}),
    )


_warned: set[str] = set()


def warn_if_unsaved(endpoint: str) -> None:
    """Print a warning to stderr (once per failure, per process) while the service's saves fail."""
    found = _ask_status(endpoint)
    saves = (found or {}).get("saves") or {}
    if not saves.get("failures"):
        return
    key = f"{saves.get('failing_since')}|{saves.get('last_error')}"
    if key in _warned:
        return
    _warned.add(key)
    print(
        f"labkit: WARNING: the sandbox cannot save its AWS state since {saves.get('failing_since')} "
        f"(last good save: {saves.get('last_ok_at') or 'never'}): {saves.get('last_error')}\n"
        "  -> Changes made since then are lost if the sandbox stops; `labkit sandbox status` shows more.",
        file=sys.stderr,
        flush=True,
    )


def alb_url(dns_name: str, *, port: int | None = None, wait_s: float = 3.0) -> str:
    """The loopback URL serving an ALB's listener (port 80, or the only one, unless ``port`` says)."""
    paths = sandbox_paths()
    info = _read_service_file(paths)
    if info is None or not _is_service(int(info["pid"])):
        raise SandboxError(
            f"The sandbox is not running, so {dns_name} has no loopback URL.",
            hint="Start it with `labkit sandbox up` (your saved stack comes back with it).",
        )
    deadline = time.monotonic() + wait_s  # a new ALB shows up within the service's next pass
    while True:
        try:
            albs = json.loads(paths.albs_file.read_text())
        except (OSError, ValueError):
            albs = {}
        listeners: dict[str, str] = (albs.get(dns_name) or {}).get("listeners") or {}
        if listeners:
            if port is not None:
                if str(port) in listeners:
                    return listeners[str(port)]
                raise SandboxError(
                    f"{dns_name} has no listener on port {port}.",
                    hint=f"Its listeners are on: {', '.join(sorted(listeners))}.",
                )
            if "80" in listeners or len(listeners) == 1:
                return listeners.get("80") or next(iter(listeners.values()))
            raise SandboxError(
                f"{dns_name} has listeners on ports {', '.join(sorted(listeners))}.",
                hint="Say which with port=N (CLI: --port N).",
            )
        if time.monotonic() > deadline:
            known = ", ".join(sorted(albs)) or "none"
            raise SandboxError(
                f"No load balancer with an HTTP listener is named {dns_name} in the sandbox.",
                hint=f"Known DNS names: {known}. Take the name from `terraform output` or "
                "describe_load_balancers().",
            )
        time.sleep(0.1)


def _tail(path: Path, offset: int = 0, lines: int = 30) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(the log is empty)"


def log_tail(lines: int = 50) -> str:
    """The last ``lines`` lines of the service's log."""
    return _tail(sandbox_paths().log_file, 0, lines)
