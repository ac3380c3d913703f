"""A thin runner over the Terraform CLI and its machine-readable output.

labkit drives the CLI itself (python-terraform is broken with Terraform 1.x): plans and applies
stream ``-json`` events; ``plan -detailed-exitcode`` tells "no changes" from "changes"; ``show -json``,
``output -json`` and ``state pull`` give parsed results. A failure raises :class:`TerraformError`
with Terraform's own diagnostics.

What a command shows depends on the reporter. The default, :data:`print_reporter`, shows one live
line per ``init``, plan, apply or destroy (:mod:`labkit.infra.progress`: resources done out of those
planned, seconds, what Terraform is working on), then one summary line that names the command's
log; Terraform's errors and warnings are printed in full as they come. Any other reporter gets a
line per event, resource by resource. Either way the full text of each of those commands goes to a
log file (:func:`labkit.infra.progress.logs_dir`).

Terraform must outlive labkit: killed mid-apply, it would lose the state of what it just created
and leave the state lock. So every command runs in a session of its own (a Ctrl-C in the terminal
does not reach it) with its output in log files that labkit follows, not on pipes that break when
labkit dies; SIGKILL labkit and Terraform still finishes, saves the state and unlocks. The first
SIGINT or SIGTERM labkit gets (a Jupyter interrupt included) is passed to Terraform as its
graceful stop: labkit keeps following until Terraform has saved the state and exited, then raises
``KeyboardInterrupt``. Every command has a timeout, after which Terraform is stopped the same way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.errors import StateLockedError, TerraformError, TerraformNotFoundError
from labkit.infra.progress import CommandLog, CommandProgress, LiveLine, PrintReporter, print_reporter
from labkit.settings import labkit_home, plugin_mirror
from labkit.target import Target

INSTALL_HINT = (
    "Install Terraform 1.6 or newer (https://developer.hashicorp.com/terraform/install) and make sure "
    "`terraform` is on PATH, or install OpenTofu and set LABKIT_TERRAFORM=tofu."
)

#: The stamp a successful ``init`` leaves in the data dir: the hash of what it depended on.
INIT_STAMP = "labkit-init.sha256"

#: A progress sink: called with one human-readable line per event.
Reporter = Callable[[str], None]

#: Seconds a plan, apply or destroy may take before Terraform is asked to stop.
APPLY_TIMEOUT_S = 3600.0
#: Seconds any other command (init, output, show, state, force-unlock) may take.
COMMAND_TIMEOUT_S = 600.0
#: After asking Terraform to stop (timeout), how long it gets to save state before it is killed.
STOP_GRACE_S = 300.0
#: How often the followed log is read.
_FOLLOW_S = 0.1
#: The Go garbage collector's target (GOGC) for Terraform and its providers, unless the user's
#: environment sets one. Every command decodes the AWS provider's schema anew, mostly allocation:
#: at 400 (Go's default is 100) a command takes about a fifth less CPU for 100-300 MB more memory
#: at its peak (bench/terraform_gc.py measures it).
GO_GC_PERCENT = "400"


def go_runtime_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with :data:`GO_GC_PERCENT` as GOGC when it sets none: what every Terraform
    command labkit starts runs with."""
    return {"GOGC": GO_GC_PERCENT, **env}


def terraform_binary() -> str:
    """The Terraform (or OpenTofu) executable, or a :class:`TerraformNotFoundError` that says how to
    install it."""
    name = os.environ.get("LABKIT_TERRAFORM", "terraform")
    found = shutil.which(name)
    if not found:
        raise TerraformNotFoundError(f"`{name}` was not found on PATH.", hint=INSTALL_HINT)
    return found


def terraform_version() -> str:
    """The version of the Terraform binary, e.g. ``1.11.4`` (asked once per binary and process:
    the state-lock poll of an apply reads it every second)."""
    return _version_of(terraform_binary())


@functools.cache
def _version_of(binary: str) -> str:
    proc = subprocess.run(
        [binary, "version", "-json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise TerraformError("`terraform version` failed.", diagnostics=[proc.stderr.strip()])
    return str(json.loads(proc.stdout)["terraform_version"])


def mirrored_providers(mirror: Path) -> list[str]:
    """The provider source addresses (``host/namespace/type``) that a filesystem mirror holds."""
    return sorted(
        "/".join(p.relative_to(mirror).parts)
        for p in mirror.glob("*/*/*")
        if p.is_dir() and not p.name.startswith(".")
    )


#: The dependency lock file ``terraform init`` writes beside a root's configuration.
LOCK_FILE = ".terraform.lock.hcl"
_LOCKED_PROVIDER = re.compile(
    r'^provider "(?P<address>[^"]+)" \{\n(?P<body>.*?)^\}\n', re.MULTILINE | re.DOTALL
)
_HASHES = re.compile(r"^\s*hashes\s*=\s*\[\n(?:.*\n)*?\s*\]\n", re.MULTILINE)


def drop_mirrored_hashes(lock_file: Path, providers: Iterable[str]) -> bool:
    """Remove the recorded hashes of ``providers`` from a dependency lock file (whether it changed).

    Terraform checks each provider against the lock file's hashes at the start of every command
    that loads it, and for a provider in an unpacked filesystem mirror that means hashing the whole
    binary each time: the AWS provider 5.100 is 707 MB, about 1.2 of the 3.7 CPU-s that a
    ``terraform validate`` costs here, and the suite runs hundreds of commands. Those hashes are
    the ones ``terraform init`` computed from the same mirror (lock files are not committed in this
    project), so all they can tell is that the mirror's file did not change since; labkit trusts
    the mirror its user pointed LABKIT_TF_PLUGIN_MIRROR at as it trusts the Terraform on PATH.
    Providers installed from a registry keep their hashes. The file is replaced whole (another
    Terraform may be reading it).
    """
    if not lock_file.is_file():
        return False
    wanted = set(providers)
    text = lock_file.read_text()

    def without_hashes(block: re.Match[str]) -> str:
        if block["address"] not in wanted:
            return block[0]
        return block[0].replace(block["body"], _HASHES.sub("", block["body"]))

    changed = _LOCKED_PROVIDER.sub(without_hashes, text)
    if changed == text:
        return False
    partial = lock_file.with_name(f"{lock_file.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(changed)
    partial.replace(lock_file)
    return True


def drop_mirror_hashes_in(root: Path) -> bool:
    """:func:`drop_mirrored_hashes` on ``root``'s lock file for the providers of the configured
    mirror (nothing without LABKIT_TF_PLUGIN_MIRROR); run after each ``terraform init``."""
    mirror = plugin_mirror()
    return mirror is not None and drop_mirrored_hashes(root / LOCK_FILE, mirrored_providers(mirror))


def cli_config_file() -> Path | None:
    """Write the Terraform CLI config for the configured provider mirror, if there is one.

    Providers found in the mirror install from it; everything else goes direct to its registry.
    """
    mirror = plugin_mirror()
    if mirror is None:
        return None
    providers = mirrored_providers(mirror)
    include = ", ".join(json.dumps(p) for p in providers)
    text = (
        "# Written by labkit from LABKIT_TF_PLUGIN_MIRROR; do not edit.\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        f"    include = [{include}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{include}]\n"
        "  }\n"
        "}\n"
    )
    path = labkit_home() / "terraform.rc"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@dataclass(frozen=True)
class ResourceChange:
    """One resource that a plan would change, or that drifted outside Terraform."""

    address: str
    actions: tuple[str, ...]
    resource_type: str = ""

    @property
    def action(self) -> str:
        """``create``, ``update``, ``delete``, ``replace``, ``read`` or ``no-op``."""
        if set(self.actions) == {"delete", "create"}:
            return "replace"
        return self.actions[0] if self.actions else "no-op"


@dataclass
class PlanResult:
    """A parsed plan: ``exit_code`` 0 means no changes, 2 means changes. ``changes`` and ``drift``
    come from the plan's ``-json`` stream; :attr:`raw` is the whole plan, read on first use."""

    exit_code: int
    changes: list[ResourceChange]
    drift: list[ResourceChange]
    plan_file: Path | None
    #: A ``-refresh-only`` plan, whose point is the drift.
    refresh_only: bool = False
    #: Reads the whole plan (``terraform show -json``); None when there is nothing more to read.
    read_raw: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    _raw: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def raw(self) -> dict[str, Any]:
        """``terraform show -json`` of the plan: attribute values, variables, outputs, drift in
        full. Read when first asked for, because ``show`` starts the provider to load its schema,
        a few seconds of CPU that most plans (a steady-state check, "any changes?") never need."""
        if self._raw is None:
            self._raw = self.read_raw() if self.read_raw is not None else {}
        return self._raw

    @property
    def has_changes(self) -> bool:
        return self.exit_code == 2

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        """One line, as Terraform's own plan output says it. Drift is named only by a refresh-only
        plan: Terraform's JSON lists every attribute it read back differently (an empty list read
        back for an unset one, a bucket setting made by a separate resource), even right after an
        apply, on AWS as on the sandbox, and its human output hides that unless asked for drift."""
        if self.refresh_only:
            return f"{len(self.drift)} resource(s) drifted." if self.drift else "No drift."
        if not self.changes:
            return "No changes."
        return (
            f"{self.count('create')} to add, {self.count('update')} to change, "
            f"{self.count('delete') + self.count('replace')} to destroy"
            + (f" ({self.count('replace')} replaced)" if self.count("replace") else "")
        )


@dataclass
class ApplyResult:
    """What an apply or destroy did, with its duration and the outputs it left."""

    added: int
    changed: int
    removed: int
    seconds: float
    outputs: dict[str, Any]
    #: What the apply's own plan changed, resource by resource, as its ``-json`` stream announced it.
    changes: list[ResourceChange] = field(default_factory=list)


@dataclass(frozen=True)
class Streamed:
    """A finished command that :meth:`Terraform._stream` ran: its exit code, its ``-json`` events
    (or text lines), its log file, its duration, and whether a live line showed."""

    code: int
    events: list[dict[str, Any]]
    log: Path
    seconds: float
    live: bool


def _outputs_event(events: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The root outputs an apply's ``-json`` stream ended with, or None when it reported none or
    redacted some (sensitive outputs have no value there; ``terraform output`` has it)."""
    found = next((e for e in reversed(list(events)) if e.get("type") == "outputs"), None)
    if found is None:
        return None
    specs: dict[str, Any] = found.get("outputs") or {}
    if any(spec.get("sensitive") or "value" not in spec for spec in specs.values()):
        return None
    return {name: spec["value"] for name, spec in specs.items()}


def _changes(entries: Iterable[Mapping[str, Any]]) -> list[ResourceChange]:
    """The changes among ``terraform show -json``'s ``resource_changes`` (or ``resource_drift``)."""
    out = []
    for rc in entries:
        actions = tuple(rc.get("change", {}).get("actions", ()))
        if actions and actions != ("no-op",):
            out.append(ResourceChange(str(rc["address"]), actions, str(rc.get("type", ""))))
    return out


#: A plan's ``-json`` stream names one action per change; ``show -json`` lists them as above.
#: "noop", "move" and "import" are changes to neither: no-ops that were moved or are imported.
_STREAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "create": ("create",),
    "read": ("read",),
    "update": ("update",),
    "replace": ("delete", "create"),
    "delete": ("delete",),
    "remove": ("forget",),
}


def _streamed_changes(events: Iterable[Mapping[str, Any]], kind: str) -> list[ResourceChange]:
    """The changes a plan's ``-json`` stream announced as ``kind`` events (``planned_change`` or
    ``resource_drift``), the same as :func:`_changes` finds in ``show -json``, in its order."""
    found: dict[str, ResourceChange] = {}
    for event in events:
        if event.get("type") != kind:
            continue
        change = event.get("change") or {}
        resource = change.get("resource") or {}
        actions = _STREAM_ACTIONS.get(str(change.get("action")))
        if actions and resource.get("addr"):
            address = str(resource["addr"])
            found[address] = ResourceChange(address, actions, str(resource.get("resource_type", "")))
    return [found[address] for address in sorted(found)]


def _diagnostic_line(diag: Mapping[str, Any]) -> str:
    line = f"{diag.get('severity', 'error').capitalize()}: {diag.get('summary', '')}"
    if diag.get("address"):
        line += f" ({diag['address']})"
    elif diag.get("range"):
        rng = diag["range"]
        line += f" ({rng.get('filename')}:{rng.get('start', {}).get('line')})"
    if diag.get("detail"):
        line += "".join(f"\n  {part}" if part else "\n" for part in str(diag["detail"]).splitlines())
    return line


class Terraform:
    """Terraform in one root module folder, pointed at one target.

    ``data_dir`` keeps ``.terraform`` outside the source tree (per target), so the sandbox and AWS
    never share a backend configuration by accident.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        target: Target,
        data_dir: Path | None = None,
        reporter: Reporter | None = print_reporter,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        if not self.workdir.is_dir():
            raise TerraformError(
                f"Terraform root {self.workdir} does not exist.",
                hint="Pass the folder of a root module, e.g. terraform/environments/staging.",
            )
        self.target = target
        self.data_dir = data_dir
        self.reporter = reporter
        self.binary = terraform_binary()
        #: Every command this runner started, its arguments in order (``["apply", "-json", ...]``):
        #: what a caller or a test counts, e.g. the one apply of a deploy step.
        self.commands: list[list[str]] = []

    # -- plumbing ---------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = go_runtime_env(self.target.env())
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        config = cli_config_file()
        if config is not None:
            env["TF_CLI_CONFIG_FILE"] = str(config)
        elif env.get("TF_CLI_CONFIG_FILE") and not Path(env["TF_CLI_CONFIG_FILE"]).exists():
            # A dangling setting only makes Terraform warn on every command.
            env.pop("TF_CLI_CONFIG_FILE")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            env["TF_DATA_DIR"] = str(self.data_dir)
        return env

    def _say(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter(line)

    def _run(
        self,
        args: list[str],
        *,
        what: str,
        ok: tuple[int, ...] = (0,),
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to its end; its stdout and stderr as text (see :meth:`_execute`)."""
        code, stdout, stderr = self._execute(args, timeout_s=timeout_s)
        if code not in ok:
            raise self._error(what, code, [stderr.strip() or stdout.strip()])
        return subprocess.CompletedProcess([self.binary, *args], code, stdout, stderr)

    def _execute(
        self,
        args: list[str],
        *,
        timeout_s: float,
        on_line: Callable[[str], None] | None = None,
        while_running: Callable[[], None] | None = None,
    ) -> tuple[int, str, str]:
        """Run Terraform in a session of its own, its output in log files; exit code, stdout, stderr.

        ``on_line`` gets each stdout line as it is written; ``while_running`` is called about every
        second until Terraform exits. If it raises, Terraform is stopped gracefully and the error
        raised once Terraform has exited (labkit never leaves an apply half-followed). The logs are
        deleted once Terraform exited and labkit read them; if labkit dies first, Terraform goes on
        writing them (under ``<data dir>/logs``).
        """
        self.commands.append(list(args))
        logs = (self.data_dir or labkit_home() / "terraform") / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        stem = logs / f"{time.strftime('%Y%m%dT%H%M%S')}-{args[0]}-{os.getpid()}-{threading.get_ident()}"
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [self.binary, *args],
                cwd=self.workdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # no terminal signal reaches it; it outlives labkit
            )
        follower = _Follower(out_path, on_line)
        interrupted: BaseException | None = None
        failed: Exception | None = None
        deadline = time.monotonic() + timeout_s
        stop_deadline: float | None = None
        next_poll = 0.0
        with _sigterm_as_interrupt():
            while True:
                try:
                    follower.read()
                    if proc.poll() is not None:
                        break
                    now = time.monotonic()
                    if while_running is not None and now >= next_poll:
                        next_poll = now + 1.0
                        try:
                            while_running()
                        except Exception as exc:
                            # The caller may no longer apply (the deploy controller lost its lock):
                            # Terraform's graceful stop, and the error once it has exited.
                            failed, while_running = exc, None
                            self._say(f"terraform {args[0]} stopped: {str(exc).splitlines()[0]}")
                            _interrupt(proc)
                    if stop_deadline is None and now > deadline:
                        self._say(f"terraform {args[0]}: {timeout_s:g} s timeout; asking it to stop")
                        _interrupt(proc)
                        stop_deadline = now + STOP_GRACE_S
                    elif stop_deadline is not None and now > stop_deadline:
                        _signal_group(proc, signal.SIGKILL)
                        proc.wait()
                        break
                    time.sleep(_FOLLOW_S)
                except KeyboardInterrupt as exc:
                    if interrupted is not None:
                        # A second interrupt: labkit leaves, Terraform goes on stopping by itself.
                        self._say(
                            f"terraform (pid {proc.pid}) is left to finish stopping on its own; "
                            f"its output goes to {out_path}"
                        )
                        raise
                    interrupted = exc
                    self._say(
                        f"interrupt: asked terraform (pid {proc.pid}) to stop gracefully; waiting while it "
                        "saves the state and releases the lock"
                    )
                    _interrupt(proc)
        follower.read(final=True)
        code = proc.returncode
        stdout, stderr = follower.text, err_path.read_text(errors="replace")
        out_path.unlink(missing_ok=True)
        err_path.unlink(missing_ok=True)
        if interrupted is not None:
            raise interrupted
        if failed is not None:
            raise failed
        if stop_deadline is not None:
            raise TerraformError(
                f"terraform {args[0]} in {self.workdir.name} timed out after {timeout_s:g} s and was stopped "
                f"(exit {code}).",
                hint="Check that the target is reachable, then run it again; a plan shows what is left.",
                diagnostics=[stderr.strip() or stdout.strip()[-2000:]],
                returncode=code,
            )
        return code, stdout, stderr

    def _error(self, what: str, code: int, diagnostics: list[str]) -> TerraformError:
        text = "\n".join(diagnostics)
        if "Error acquiring the state lock" in text:
            return StateLockedError(
                f"terraform {what} in {self.workdir.name}: the state is locked by another run.",
                hint="Wait for the other run to finish. If it died, `labkit runbook run unlock-state -p "
                "environment ENV` proves its holder gone before it runs `terraform force-unlock` (a dry "
                "run; add -p dry_run false -p confirm ENV to act).",
                diagnostics=diagnostics,
                returncode=code,
            )
        return TerraformError(
            f"terraform {what} failed in {self.workdir.name} (exit {code}).",
            hint="Read Terraform's message above; fix the input or the configuration and run it again.",
            diagnostics=diagnostics,
            returncode=code,
        )

    def _stream(
        self,
        args: list[str],
        *,
        what: str,
        ok: tuple[int, ...] = (0,),
        show_drift: bool = False,
        while_running: Callable[[], None] | None = None,
        timeout_s: float = APPLY_TIMEOUT_S,
        line_events: bool = True,
    ) -> Streamed:
        """Run a command, report it as it runs, log it whole; its exit code, events and log.

        The default reporter gets a live line (:mod:`labkit.infra.progress`) and Terraform's
        errors and warnings in full (its ``-json`` diagnostics; ``init`` has no JSON output, so its
        text, warnings included, goes to the log alone); any other reporter gets a line per event
        (none for ``line_events=False``). The caller says the summary line (:meth:`_closing`)."""
        events: list[dict[str, Any]] = []
        errors: list[str] = []
        start = time.monotonic()
        progress = CommandProgress(what, self.workdir.name)
        live: LiveLine | None = None
        with CommandLog(what, self.workdir.name, args) as log:

            def on_line(raw: str) -> None:
                for event in _json_lines([raw]):
                    events.append(event)
                    progress.feed(event)
                    elapsed = time.monotonic() - start
                    diag = event.get("diagnostic", {}) if event.get("type") == "diagnostic" else {}
                    text = _diagnostic_line(diag) if diag else str(event.get("@message", ""))
                    log.write(f"[{elapsed:6.1f}s] {text}")
                    if diag.get("severity") == "error":
                        errors.append(text)
                    if live is not None:
                        if diag:
                            live.print(text)
                        else:
                            live.update(progress.status(elapsed))
                    elif line_events:
                        line = _progress_line(event, show_drift=show_drift)
                        if line:
                            self._say(f"[{elapsed:6.1f}s] {line}")

            def tick() -> None:
                if live is not None:
                    live.update(progress.status(time.monotonic() - start))
                if while_running is not None:
                    while_running()

            if isinstance(self.reporter, PrintReporter):
                live = self.reporter.live()
                live.update(progress.status(0.0))
            try:
                code, _, stderr = self._execute(
                    args,
                    timeout_s=timeout_s,
                    on_line=on_line,
                    while_running=tick if live is not None or while_running is not None else None,
                )
            except BaseException as exc:
                if live is not None:
                    self._end_live()
                    verb = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                    self._say(progress.failure(time.monotonic() - start, log.path, verb))
                raise
            finally:
                if live is not None:
                    self._end_live()
            if stderr.strip():
                log.write(f"stderr:\n{stderr.strip()}")
            log.write(f"exit code {code} after {time.monotonic() - start:.1f} s")
        if code not in ok:
            if live is not None:
                if not errors and stderr.strip():
                    self._say(stderr.strip())  # Terraform's error, when it was not a JSON diagnostic
                self._say(progress.failure(time.monotonic() - start, log.path, "failed"))
            raise self._error(what, code, errors or [stderr.strip() or f"exit code {code}"])
        return Streamed(code, events, log.path, time.monotonic() - start, live is not None)

    def _end_live(self) -> None:
        if isinstance(self.reporter, PrintReporter):
            self.reporter.end()

    def _closing(self, streamed: Streamed, live_line: str, plain_line: str, seconds: float) -> None:
        """The summary line of a command: after a live line, ``live_line`` with its duration and
        log; else ``plain_line`` (what line-by-line reporters have always been given), if any."""
        if streamed.live:
            self._say(f"{live_line} in {seconds:.0f} s; full log: {streamed.log}")
        elif plain_line:
            self._say(plain_line)

    @staticmethod
    def _var_args(variables: Mapping[str, Any] | None, tmp: Path) -> list[str]:
        if not variables:
            return []
        # A JSON var file carries maps, lists and numbers exactly, with no shell quoting.
        path = tmp / "labkit.tfvars.json"
        path.write_text(json.dumps(dict(variables), indent=2))
        return [f"-var-file={path}"]

    # -- commands ---------------------------------------------------------------------------

    def init(
        self,
        *,
        backend_config: Mapping[str, str] | None = None,
        backend: bool = True,
        migrate_state: bool = False,
        if_changed: bool = False,
    ) -> bool:
        """``terraform init``: providers (from the mirror when configured) and the backend.

        With ``if_changed``, it is skipped when the last init in this data dir was the same: same
        init arguments (backend config included), binary and CLI config, and the same configuration
        (see :meth:`init_key`). Every successful init leaves that key in the data dir; the stamp is
        removed before an init runs, so one that failed or was killed is run again next time.
        Returns whether init ran.
        """
        args = ["init", "-input=false", "-no-color"]
        if not backend:
            args.append("-backend=false")
        elif migrate_state:
            args += ["-migrate-state", "-force-copy"]
        else:
            args.append("-reconfigure")
        for key, value in (backend_config or {}).items():
            args.append(f"-backend-config={key}={value}")
        stamp = self._tf_data_dir / INIT_STAMP
        if self._stale_module_manifest():
            # Terraform keeps a local module's folder as the last init resolved it, even through a
            # re-init: without its manifest it resolves them all again.
            (self._tf_data_dir / "modules" / "modules.json").unlink()
        if if_changed and not migrate_state and self._stamped(stamp, args):
            return False
        stamp.unlink(missing_ok=True)
        if not isinstance(self.reporter, PrintReporter):
            self._say(f"terraform init in {self.workdir.name}")
        streamed = self._stream(args, what="init", timeout_s=COMMAND_TIMEOUT_S, line_events=False)
        self._closing(streamed, f"initialised {self.workdir.name}", "", streamed.seconds)
        drop_mirror_hashes_in(self.workdir)  # before the stamp: its key reads the lock file
        stamp.parent.mkdir(parents=True, exist_ok=True)
        partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(self.init_key(args))
        partial.replace(stamp)  # whole or not at all, should two inits race
        return True

    @property
    def _tf_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else self.workdir / ".terraform"

    def _stale_module_manifest(self) -> bool:
        """Whether a local module's source now resolves to another folder than the last init
        recorded: a link on its path was moved (an environment's composition pin, see
        :mod:`labkit.infra.composition`), and Terraform would go on running the old folder."""
        manifest = self._tf_data_dir / "modules" / "modules.json"
        if not manifest.is_file():
            return False
        modules = {str(m.get("Key", "")): m for m in json.loads(manifest.read_text()).get("Modules") or []}
        for key, module in modules.items():
            source = str(module.get("Source", ""))
            if not key or not source.startswith(("./", "../")):
                continue
            parent = modules.get(key.rpartition(".")[0], {})
            wanted = (self.workdir / str(parent.get("Dir", ".")) / source).resolve()
            if wanted != (self.workdir / str(module.get("Dir", ""))).resolve():
                return True
        return False

    def _stamped(self, stamp: Path, args: list[str]) -> bool:
        """Whether the last init left ``stamp`` with the key ``args`` would have now, and what it
        set up is still there: the providers it installed, and the backend it recorded."""
        if not stamp.is_file() or not (self._tf_data_dir / "providers").is_dir():
            return False
        if "-backend=false" not in args and not (self._tf_data_dir / "terraform.tfstate").is_file():
            return False
        return stamp.read_text() == self.init_key(args)

    def init_key(self, args: Sequence[str]) -> str:
        """A hash of everything ``terraform init`` with ``args`` depends on: the arguments, the
        binary, the CLI config (provider mirror), the root's files (``*.tf``, ``*.tf.json``, the
        dependency lock file, test files) and the files of every module the last init installed
        (its ``modules.json``; a module added or moved changes a file already hashed)."""
        digest = hashlib.sha256()

        def add(label: str, data: bytes) -> None:
            digest.update(f"{label}\0{len(data)}\0".encode())
            digest.update(data)

        add("args", json.dumps(list(args)).encode())
        binary = Path(self.binary)
        add("binary", f"{binary} {binary.stat().st_mtime_ns} {binary.stat().st_size}".encode())
        config = self._env().get("TF_CLI_CONFIG_FILE")
        add("cli-config", Path(config).read_bytes() if config and Path(config).is_file() else b"")
        modules = self._tf_data_dir / "modules" / "modules.json"
        dirs = {self.workdir}
        if modules.is_file():
            add("modules.json", modules.read_bytes())
            for module in json.loads(modules.read_text()).get("Modules") or []:
                dirs.add((self.workdir / str(module.get("Dir", "."))).resolve())
        for folder in sorted(dirs):
            for path in sorted(_config_files(folder)):
                add(str(path), path.read_bytes())
        return digest.hexdigest()

    def plan(
        self,
        *,
        variables: Mapping[str, Any] | None = None,
        targets: Iterable[str] = (),
        destroy: bool = False,
        refresh_only: bool = False,
        out: Path | None = None,
        refresh: bool = True,
        generate_config_out: Path | None = None,
    ) -> PlanResult:
        """``terraform plan -detailed-exitcode``, parsed. Keep the plan with ``out`` to apply it later.
        ``refresh=False`` passes ``-refresh=false`` (see :meth:`apply` for what that skips).
        ``generate_config_out`` writes configuration for ``import`` blocks that have none there
        (``-generate-config-out``; the file must not exist yet)."""
        # The plan file outlives this call so that PlanResult.raw can read it when asked; a
        # temporary one goes with the result.
        plan_file = out if out is not None else Path(tempfile.mkdtemp(prefix="labkit-plan-")) / "plan.tfplan"
        keep = plan_file.parent if out is None else None
        with tempfile.TemporaryDirectory(prefix="labkit-plan-") as tmp:
            args = ["plan", "-json", "-input=false", "-detailed-exitcode", f"-out={plan_file}"]
            args += self._var_args(variables, Path(tmp))
            args += [f"-target={t}" for t in targets]
            if destroy:
                args.append("-destroy")
            if refresh_only:
                args.append("-refresh-only")
            if not refresh:
                args.append("-refresh=false")
            if generate_config_out is not None:
                args.append(f"-generate-config-out={generate_config_out}")
            try:
                streamed = self._stream(args, what="plan", ok=(0, 2), show_drift=refresh_only)
            except BaseException:
                if keep is not None:
                    shutil.rmtree(keep, ignore_errors=True)
                raise
        result = PlanResult(
            exit_code=streamed.code,
            changes=_streamed_changes(streamed.events, "planned_change"),
            drift=_streamed_changes(streamed.events, "resource_drift"),
            plan_file=out,
            refresh_only=refresh_only,
            read_raw=functools.partial(self.show, plan_file),
        )
        if keep is not None:
            weakref.finalize(result, shutil.rmtree, keep, ignore_errors=True)
        summary = result.summary().rstrip(".")
        self._closing(
            streamed,
            f"planned {self.workdir.name}: {summary[:1].lower()}{summary[1:]}",
            f"plan: {result.summary()}",
            streamed.seconds,
        )
        return result

    def apply(
        self,
        *,
        variables: Mapping[str, Any] | None = None,
        targets: Iterable[str] = (),
        plan_file: Path | None = None,
        destroy: bool = False,
        refresh: bool = True,
        while_running: Callable[[], None] | None = None,
    ) -> ApplyResult:
        """``terraform apply`` (or a saved plan), with live progress; returns counts and outputs.
        (A saved plan's apply lists no planned changes, so its live line counts resources done
        without a total.)

        ``while_running`` is called about every second while Terraform runs (the deploy controller
        records the state lock it holds).

        ``refresh=False`` passes ``-refresh=false``: Terraform plans against the state as stored,
        without reading every resource back first, which saves most of a small apply's time. As
        Terraform's documentation warns, that apply then ignores changes made outside Terraform,
        which could make its plan incomplete or incorrect (nor does it undo them); use it only
        right after an apply that refreshed, while nothing else can change the resources concerned.
        """
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="labkit-apply-") as tmp:
            args = ["apply", "-json", "-input=false", "-auto-approve"]
            if plan_file is not None:
                if variables or targets or destroy or not refresh:
                    raise TerraformError(
                        "A saved plan already fixes its variables, targets, mode and refresh.",
                        hint="Pass either plan_file, or variables/targets/destroy/refresh, not both.",
                    )
                args.append(str(plan_file))
            else:
                args += self._var_args(variables, Path(tmp))
                args += [f"-target={t}" for t in targets]
                if destroy:
                    args.append("-destroy")
                if not refresh:
                    args.append("-refresh=false")
            streamed = self._stream(
                args, what="destroy" if destroy else "apply", while_running=while_running
            )
        events = streamed.events
        summary: dict[str, Any] = next(
            (e["changes"] for e in reversed(events) if e.get("type") == "change_summary"), {}
        )
        seconds = time.monotonic() - start
        # The outputs the apply itself reported at its end; a separate ``terraform output`` (another
        # Terraform start and state read) only when it reported none or redacted a sensitive one.
        outputs = {} if destroy else _outputs_event(events)
        result = ApplyResult(
            added=int(summary.get("add", 0)),
            changed=int(summary.get("change", 0)),
            removed=int(summary.get("remove", 0)),
            seconds=seconds,
            outputs=self.output() if outputs is None else outputs,
            changes=_streamed_changes(events, "planned_change"),
        )
        counts = f"{result.added} added, {result.changed} changed, {result.removed} destroyed"
        self._closing(
            streamed,
            f"{'destroyed' if destroy else 'applied'} {self.workdir.name}: {counts}",
            f"{'destroy' if destroy else 'apply'} complete in {result.seconds:.1f}s: {counts}",
            result.seconds,
        )
        return result

    def destroy(
        self,
        *,
        variables: Mapping[str, Any] | None = None,
        targets: Iterable[str] = (),
        while_running: Callable[[], None] | None = None,
    ) -> ApplyResult:
        """``terraform apply -destroy``, with live progress."""
        return self.apply(variables=variables, targets=targets, destroy=True, while_running=while_running)

    def show(self, plan_file: Path) -> dict[str, Any]:
        """``terraform show -json`` of a saved plan."""
        proc = self._run(["show", "-json", str(plan_file)], what="show")
        return dict(json.loads(proc.stdout))

    def output(self) -> dict[str, Any]:
        """Every root output, as plain values."""
        proc = self._run(["output", "-json"], what="output")
        return {name: spec.get("value") for name, spec in json.loads(proc.stdout or "{}").items()}

    def state_pull(self) -> dict[str, Any]:
        """The current state document, as stored in the backend."""
        proc = self._run(["state", "pull"], what="state pull")
        return dict(json.loads(proc.stdout)) if proc.stdout.strip() else {}

    def state_list(self) -> list[str]:
        """The addresses of every resource in state."""
        proc = self._run(["state", "list"], what="state list", ok=(0, 1))
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def import_resource(
        self, address: str, ident: str, *, variables: Mapping[str, Any] | None = None
    ) -> None:
        """``terraform import ADDRESS ID``: the state takes over a resource that exists, for an
        address the code already declares (no configuration is written)."""
        with tempfile.TemporaryDirectory(prefix="labkit-import-") as tmp:
            args = ["import", "-input=false", *self._var_args(variables, Path(tmp)), address, ident]
            self._run(args, what="import")

    def state_rm(self, address: str) -> None:
        """``terraform state rm ADDRESS``: the state forgets a resource, which stays in the account."""
        self._run(["state", "rm", address], what="state rm")

    def drift(self, *, variables: Mapping[str, Any] | None = None) -> list[ResourceChange]:
        """Resources whose real settings differ from state (a refresh-only plan)."""
        return self.plan(variables=variables, refresh_only=True).drift

    @contextmanager
    def hold_lock(self, held: Callable[[], bool], *, timeout_s: float = 60.0) -> Iterator[None]:
        """Hold this root's state lock for the ``with`` block, as any running Terraform command does.

        It runs ``terraform console``, which takes the lock when it starts and keeps it until it
        exits: a collision on demand, for the lessons and the drills. ``held`` tells when the lock
        is taken (the backend knows; the console, reading piped input, says nothing until the end).
        Raises :class:`StateLockedError` when someone else holds the lock already.
        """
        self.commands.append(["console"])
        proc = subprocess.Popen(
            [self.binary, "console"],
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not held():
                if proc.poll() is not None:
                    _, stderr = proc.communicate()
                    raise self._error("console", proc.returncode, [stderr.strip()])
                if time.monotonic() > deadline:
                    raise TerraformError(
                        f"terraform console in {self.workdir.name} did not take the state lock within "
                        f"{timeout_s:g} s.",
                        hint="Check that the backend is reachable (a plan shows its error).",
                    )
                time.sleep(0.2)
            self._say(f"holding the state lock of {self.workdir.name} (terraform console pid {proc.pid})")
            yield
        finally:
            if proc.poll() is None:
                try:
                    # Closes its input: the console exits at the end of it, releasing the lock.
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                self._say(f"released the state lock of {self.workdir.name}")

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock left by a run that died. Check first that nothing is applying."""
        self._run(["force-unlock", "-force", lock_id], what="force-unlock")


class _Follower:
    """Reads a log file that another process appends to, a whole line at a time."""

    def __init__(self, path: Path, on_line: Callable[[str], None] | None) -> None:
        self._file = path.open("rb")
        self._on_line = on_line
        self._partial = b""
        self._chunks: list[bytes] = []

    def read(self, *, final: bool = False) -> None:
        data = self._file.read()
        if data:
            self._chunks.append(data)
            if self._on_line is not None:
                *lines, self._partial = (self._partial + data).split(b"\n")
                for line in lines:
                    self._on_line(line.decode(errors="replace"))
        if final:
            if self._partial and self._on_line is not None:
                self._on_line(self._partial.decode(errors="replace"))
            self._partial = b""
            self._file.close()

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Terraform's graceful stop: SIGINT to Terraform alone, which stops its providers itself (a
    provider still starting up would die of a SIGINT of its own, failing the run needlessly)."""
    with suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)


def _signal_group(proc: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """Send ``signum`` to Terraform's session (it and the providers it started)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While Terraform runs, SIGTERM raises KeyboardInterrupt, so it too stops Terraform gracefully.

    Signal handlers can only be set from the main thread; elsewhere SIGTERM keeps its handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _config_files(folder: Path) -> Iterator[Path]:
    """The files of a module folder that ``terraform init`` reads: configuration, the dependency
    lock file, and test files (their ``run`` blocks may name modules to install)."""
    for pattern in ("*.tf", "*.tf.json", LOCK_FILE, "tests/*.tftest.hcl", "tests/*.tftest.json"):
        yield from (path for path in folder.glob(pattern) if path.is_file())


def _json_lines(stream: Iterable[str]) -> Iterator[dict[str, Any]]:
    for raw in stream:
        raw = raw.strip()
        if not raw:
            continue
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            yield {"type": "text", "@message": raw}
            continue
        if isinstance(event, dict):
            yield event


# Event types worth one progress line each; the rest (version, outputs, refresh chatter) stay quiet.
_SHOWN_EVENTS = {
    "apply_start",
    "apply_progress",
    "apply_complete",
    "apply_errored",
    "planned_change",
    "resource_drift",
    "change_summary",
    "text",
}


def _progress_line(event: Mapping[str, Any], *, show_drift: bool = False) -> str | None:
    kind = event.get("type")
    if kind == "resource_drift" and not show_drift:
        return None  # see PlanResult.summary
    if kind == "diagnostic":
        return _diagnostic_line(event.get("diagnostic", {}))
    if kind not in _SHOWN_EVENTS:
        return None
    return str(event.get("@message", "")) or None
