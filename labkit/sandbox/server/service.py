"""The sandbox service: ``python -m labkit.sandbox.server.service`` (started by ``labkit sandbox up``).

One process on 127.0.0.1:
- moto's server in process (AWS-managed IAM policies loaded), with :mod:`.mends` applied and
  the saved AWS state loaded; requests are served one at a time under a model lock, so that
  the reconcile loop and the saver always read consistent models;
- a reconcile loop, twice a second: instances to app processes (:mod:`.instances`), moto's
  load balancers to the data plane (:class:`~labkit.sandbox.server.lb.LoadBalancerPlane`), the plane's
  metrics into CloudWatch, ALB DNS names to loopback URLs (``albs.json``);
- alarms evaluated every few seconds, metric data older than a day dropped (:mod:`.cloudwatch`);
- the AWS state saved shortly after every change (debounced: once the API has been quiet for
  :data:`SAVE_QUIET_S`, at the latest :data:`SAVE_MAX_DELAY_S` after the first unsaved change), at
  once when Terraform releases a state lock (so a finished apply is on disk before Terraform
  exits), and on SIGTERM before everything stops. Each outcome goes to ``save-status.json``.

The API answers only requests whose Host is a loopback name (no DNS rebinding from a browser), and
without moto's global CORS headers. ``GET /labkit-sandbox/status`` answers with the service's
status as JSON: what it serves, its saves, and the locks it restored from the saved state.
``POST /labkit-sandbox/quotas`` sets a region's quota value (:mod:`.quotas`: how a drill lowers one).
``POST /labkit-sandbox/iam`` switches IAM enforcement (:mod:`.iam`; ``LABKIT_SANDBOX_IAM`` sets it at
start), and ``/labkit-sandbox/oidc/...`` is the sandbox's OIDC issuer (:mod:`.oidc`), whose key and
CA certificate are kept in the sandbox's folder. ``GET /labkit-sandbox/trail?access_key_id=...&since=...``
answers the calls made with an IAM user's or role's key (:mod:`.trail`, the sandbox's CloudTrail).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from labkit.errors import LabkitError
from labkit.sandbox.client import statefile
from labkit.sandbox.client.paths import (
    IAM_PATH,
    OIDC_PATH,
    QUOTAS_PATH,
    STATUS_PATH,
    TRAIL_PATH,
    SandboxPaths,
    is_loopback_host,
    sandbox_paths,
)
from labkit.sandbox.server.replay import Answers, buffer_body

log = logging.getLogger("labkit.sandbox")
_T = TypeVar("_T")

LOOP_INTERVAL_S = 0.4
ALARM_INTERVAL_S = 5.0
#: The plane is re-applied at least this often even when nothing changed (it is idempotent).
REAPPLY_S = 10.0
#: After a change the state is saved once the API has been quiet this long...
SAVE_QUIET_S = 2.0
#: ...or at the latest this long after the first unsaved change, however busy the API is.
#: A save pickles every backend under the model lock (0.5-1.2 s for a built staging, 6-13 MB);
#: measured in a CI run, saves every 0.3-3 s held the lock a fifth of the time and took much of
#: the service's CPU, stalling Terraform's requests. What matters most is saved at once anyway:
#: Terraform's run when it releases its state lock, and everything on the way down.
SAVE_MAX_DELAY_S = 10.0
#: While saves fail, they are tried again this often (each failure is recorded).
SAVE_RETRY_S = 30.0
#: Exit code of a service that refuses to start because its saved state cannot be loaded.
EXIT_STATE_UNREADABLE = 3
#: Operations that only read (the AWS naming convention across protocols).
_READ_PREFIXES = ("Describe", "List", "Get", "Head", "Scan", "Query", "BatchGet", "Lookup", "Search")

StartResponse = Callable[..., Any]


class _Api:
    """moto's WSGI app behind the model lock, plus the status path; notes when state may change.

    ``on_write(sync)`` is called after every request that may change state, under the lock;
    ``sync`` is True when Terraform released a state lock (the end of a Terraform run).
    ``set_quota(request)`` and ``set_iam(request)`` answer the quotas and IAM control paths (called
    under the lock); ``issuer`` answers the OIDC issuer's paths (no lock: it reads no model).
    """

    def __init__(
        self,
        moto_app: Any,
        lock: threading.RLock,
        status: Callable[[], dict[str, Any]],
        on_write: Callable[[bool], None],
        set_quota: Callable[[dict[str, Any]], dict[str, Any]],
        set_iam: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self._moto = moto_app
        self._lock = lock
        self._answers = Answers()
        self._status = status
        self._on_write = on_write
        self._set_quota = set_quota
        self._set_iam = set_iam
        #: The OIDC issuer (labkit.identity.issuer.Issuer), set once the API's port is known.
        self.issuer: Any = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = str(environ.get("HTTP_HOST") or "")
        if not is_loopback_host(host):
            # A browser page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
            log.warning("refused a request for Host %r (the sandbox answers loopback names only)", host)
            body = b"The sandbox answers requests to 127.0.0.1, localhost or [::1] only.\n"
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            start_response("403 Forbidden", headers)
            return [body]
        if environ.get("PATH_INFO") == STATUS_PATH:
            body = json.dumps(self._status()).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        path = str(environ.get("PATH_INFO") or "")
        if path == QUOTAS_PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._control(environ, start_response, self._set_quota)
        if path == IAM_PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._control(environ, start_response, self._set_iam)
        if path == TRAIL_PATH and environ.get("REQUEST_METHOD") == "GET":
            return _trail(environ, start_response)
        if path.startswith(OIDC_PATH + "/") and environ.get("REQUEST_METHOD") == "GET" and self.issuer:
            from labkit.sandbox.server import oidc

            return oidc.serve(self.issuer, path.removeprefix(OIDC_PATH), environ, start_response)
        buffer_body(environ)
        writes, sync = _classify(environ)
        replayed = False
        with self._lock:  # one request at a time: moto's models are not thread-safe
            try:
                answer, replayed = self._answers.answer(self._moto, environ, start_response, writes=writes)
            finally:
                if writes and not replayed:  # a write that raised may have changed state: saved too
                    self._on_write(sync)
        if replayed:
            called = _operation(environ) or f"{environ.get('REQUEST_METHOD')} {path}"
            log.info("gave a retried call the answer it lost: %s", called)
        return answer

    def _control(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        handler: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Iterable[bytes]:
        try:
            request = json.loads(_peek_body(environ) or b"{}")
            with self._lock:
                answer = handler(request)
                self._on_write(False)
            status = "200 OK"
        except (ValueError, KeyError, TypeError) as exc:
            answer, status = {"error": f"{type(exc).__name__}: {exc}"}, "400 Bad Request"
        body = json.dumps(answer).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _classify(environ: dict[str, Any]) -> tuple[bool, bool]:
    """(may this request change state, does it release a Terraform state lock).

    The operation is named by X-Amz-Target (JSON protocols) or Action (query protocols, in the
    query string or a form body, which is read here and put back); S3's REST calls by method.
    When in doubt it counts as a write: a needless save costs little, a missed one loses state.
    """
    method = environ.get("REQUEST_METHOD", "")
    operation = _operation(environ)
    if environ.get("HTTP_X_AMZ_TARGET"):
        body = _peek_body(environ) if operation == "DeleteItem" else b""
        return not operation.startswith(_READ_PREFIXES), b'"LockID"' in body and b"-md5" not in body
    if operation:
        return not operation.startswith(_READ_PREFIXES), False
    if method in ("GET", "HEAD", "OPTIONS"):
        return False, False
    return True, method == "DELETE" and str(environ.get("PATH_INFO", "")).endswith(".tflock")


def _operation(environ: dict[str, Any]) -> str:
    """The operation a request names: X-Amz-Target's (JSON protocols) or Action (query protocols, in
    the query string or a form body, which is read here and put back); "" for S3's REST calls."""
    target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
    if target:
        return target.rpartition(".")[2]
    action = (parse_qs(environ.get("QUERY_STRING", "")).get("Action") or [""])[0]
    if not action and "x-www-form-urlencoded" in str(environ.get("CONTENT_TYPE") or ""):
        action = (parse_qs(_peek_body(environ).decode("utf-8", "replace")).get("Action") or [""])[0]
    return str(action)


def _peek_body(environ: dict[str, Any]) -> bytes:
    """The request body, read and put back for moto (small bodies only: these are API calls)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return b""
    if not 0 < length <= 1_000_000:
        return b""
    body: bytes = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class SandboxService:
    def __init__(self, paths: SandboxPaths) -> None:
        # Before moto is imported: both are read when moto's settings load.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"  # no page of any origin may read the API
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from labkit.identity.issuer import Issuer
        from labkit.sandbox.client.leftovers import kill_leftovers
        from labkit.sandbox.server import iam, mends, oidc, persistence
        from labkit.sandbox.server.databases import DatabaseServers
        from labkit.sandbox.server.instance_view import app_environment, read_artifact
        from labkit.sandbox.server.instances import InstanceApps
        from labkit.sandbox.server.lb import LoadBalancerPlane
        from labkit.sandbox.server.locks import find_locks
        from labkit.settings import sandbox_iam_enforced

        enforce_iam = sandbox_iam_enforced()  # a bad setting stops the start before anything runs
        self.paths = paths
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._points: deque[list[Any]] = deque()
        self._ports = self._read_ports()
        self._group_arns: tuple[str, ...] = ()
        self._albs: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._persistence = persistence
        # Saves: what is unsaved since when, and how the last attempts went (save-status.json).
        self._dirty_since: float | None = None
        self._last_write = 0.0
        self._last_attempt = 0.0
        self.saves: dict[str, Any] = {"last_ok_at": None, "last_error": None, "last_error_at": None,
                                      "failing_since": None, "failures": 0}  # fmt: skip

        leftovers = kill_leftovers(paths.instances_dir)
        if leftovers:
            log.warning("killed %d app process(es) left by an earlier run: %s", len(leftovers), leftovers)
        self.plane = LoadBalancerPlane(publish=self._points.append)
        mends.apply_mends(self._observed_health)
        self.loaded: dict[str, Any] | None = None
        if paths.state_file.exists():
            started = time.monotonic()
            header, installed = persistence.load(paths.state_file)  # StateFileError: main() refuses
            self.saves["last_ok_at"] = header.saved_at
            self.loaded = {
                "file": str(paths.state_file),
                "saved_at": header.saved_at,
                "skipped": header.skipped,
            }
            log.info("loaded %d saved AWS backends (saved %s) in %.1f s", installed, header.saved_at,
                     time.monotonic() - started)  # fmt: skip
        #: Locks held in the state as it was restored: a restart must never resurrect one silently.
        self.restored_locks = [held.as_dict() for held in find_locks()] if self.loaded else []
        for held in self.restored_locks:
            log.warning("restored a lock: %s", held["summary"])
        self.fleet = InstanceApps(
            paths.instances_dir,
            read_artifact=self._locked(read_artifact),
            draining=self._draining,
            # self.endpoint is known once the API is bound, below; an app starts only after that.
            app_env=self._locked(lambda spec: app_environment(spec, self.api_endpoint())),
        )
        self.databases = DatabaseServers(paths.databases_dir)
        moto_app = DomainDispatcherApplication(create_backend_app)
        self.api = _Api(moto_app, self.lock, self.status, self._written, self._set_quota, self._set_iam)
        self.server = self._bind(make_server, MotoRequestHandler)
        self.port = int(self.server.server_address[1])
        os.environ["MOTO_PORT"] = str(self.port)  # moto builds a few URLs (SQS queues) from it
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.issuer = Issuer.load_or_create(paths.root, oidc.ISSUER_URL, served_at=self.endpoint + OIDC_PATH)
        oidc.install(self.issuer)
        self.api.issuer = self.issuer
        iam.set_enforced(enforce_iam)
        log.info("IAM %s; OIDC issuer %s", "enforced" if enforce_iam else "not enforced", self.issuer.url)

    # --- start and stop ---

    def _bind(self, make_server: Any, handler: Any) -> Any:
        preferred = int(self._ports.get("api") or 0)
        for port in dict.fromkeys([preferred, 0]):
            try:
                return make_server("127.0.0.1", port, self.api, threaded=True, request_handler=handler)
            except OSError:
                log.info("port %s is taken; the API takes a free one", port)
        raise OSError("no loopback port for the API")  # unreachable: port 0 always binds

    def run(self) -> None:
        from labkit.sandbox.server.cloudwatch import AlarmEvaluator

        serving = threading.Thread(target=self.server.serve_forever, name="labkit-api", daemon=True)
        serving.start()
        loop = threading.Thread(target=self._loop, name="labkit-reconcile", daemon=True)
        loop.start()
        alarms = AlarmEvaluator(ALARM_INTERVAL_S, self.lock).start()
        self._write_json(self.paths.service_file, {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "port": self.port,
            "home": str(self.paths.root),
            "started_at": self.started_at,
        })
        self._ports["api"] = self.port
        self._write_json(self.paths.ports_file, self._ports)
        log.info("sandbox serving the AWS API at %s (pid %d)", self.endpoint, os.getpid())
        self.stopping.wait()
        log.info("stopping")
        loop.join(timeout=10)
        alarms.stop()
        self.server.shutdown()
        self.final_save()
        self.fleet.close()
        self.databases.close()
        self.plane.close()
        self.paths.service_file.unlink(missing_ok=True)
        log.info("stopped")

    # --- saving ---

    def _written(self, sync: bool) -> None:
        """After a request that may have changed state (called under the lock)."""
        now = time.monotonic()
        self._last_write = now
        if self._dirty_since is None:
            self._dirty_since = now
        if sync:  # Terraform released its state lock: its run is on disk before Terraform exits
            self.save()

    def _save_due(self, now: float) -> bool:
        if self._dirty_since is None:
            return False
        if self.saves["failures"] and now - self._last_attempt < SAVE_RETRY_S:
            return False
        return now - self._last_write >= SAVE_QUIET_S or now - self._dirty_since >= SAVE_MAX_DELAY_S

    def save(self) -> bool:
        """Write the AWS state (pickling under the lock, writing outside it); False when it failed,
        which is recorded (status, ``save-status.json``, the log), never raised."""
        started = time.monotonic()
        self._last_attempt = started
        dirty_since: float | None = None
        try:
            with self.lock:
                dirty_since, self._dirty_since = self._dirty_since, None
                data = self._persistence.dumps(self._persistence.capture())
            statefile.save(self.paths.state_file, data)
        except Exception as exc:
            if self._dirty_since is None:
                self._dirty_since = dirty_since or started  # still unsaved
            why = exc.message if isinstance(exc, LabkitError) else f"{type(exc).__name__}: {exc}"
            self._record_save(error=why)
            log.exception("saving the AWS state failed")
            return False
        self._record_save(error=None)
        log.info("saved the AWS state (%.1f MB) in %.2f s", len(data) / 1e6, time.monotonic() - started)
        return True

    def _record_save(self, *, error: str | None) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if error is None:
            self.saves.update(last_ok_at=now, failing_since=None, failures=0)
        else:
            self.saves.update(last_error=error, last_error_at=now, failures=self.saves["failures"] + 1)
            self.saves["failing_since"] = self.saves["failing_since"] or now
        self._write_json(self.paths.save_status_file, self.saves)

    def final_save(self) -> None:
        """The save on the way down. When it fails, the state as far as it can be pickled is kept
        under a new name (``aws-state.unsaved-<time>.pickle``) and the failure is recorded for
        ``labkit sandbox down``; ``aws-state.pickle`` keeps the last good save."""
        final: dict[str, Any] = {"ok": self.save()}
        if not final["ok"]:
            final["error"] = self.saves["last_error"]
            try:
                with self.lock:
                    data, skipped = self._persistence.dumps_partial(self._persistence.capture())
                kept = self.paths.state_file.with_name(
                    f"aws-state.unsaved-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.pickle"
                )
                statefile.write_private(kept, data)
                final.update(kept_as=str(kept), skipped=skipped)
                log.error("kept the last state, without %d unpicklable object(s), as %s", len(skipped), kept)
            except Exception as exc:  # nothing more can be done: the record says so
                final.update(kept_as=None, keep_error=f"{type(exc).__name__}: {exc}")
                log.exception("could not keep the last state either")
        self.saves["final"] = final
        self._write_json(self.paths.save_status_file, self.saves)

    # --- the reconcile loop ---

    def _loop(self) -> None:
        last_topology: Any = None
        last_apply = time.monotonic()
        last_error, last_error_at = "", 0.0
        while not self.stopping.wait(LOOP_INTERVAL_S):
            now = time.monotonic()
            if self._save_due(now):
                self.save()
            try:
                last_topology, applied = self._reconcile(last_topology, now - last_apply >= REAPPLY_S)
                if applied:
                    last_apply = now
            except Exception as exc:  # the loop must outlive any one bad model; the log says what broke
                # The same failure twice a second would bury the log: once a minute is enough.
                if repr(exc) != last_error or now - last_error_at > 60:
                    log.exception("reconcile pass failed")
                    last_error, last_error_at = repr(exc), now

    def _reconcile(self, last: Any, force: bool) -> tuple[Any, bool]:
        from labkit.sandbox.server import cloudwatch, healing, quotas
        from labkit.sandbox.server.databases import mark_snapshots, wanted_databases, wanted_snapshots
        from labkit.sandbox.server.instance_view import running_instances
        from labkit.sandbox.server.lb.metrics import NAMESPACE
        from labkit.sandbox.server.lb.view import read_topology

        with self.lock:
            healing.heal(self._observed_health)  # before reading what runs: replacements start now
            if quotas.retry_launches():  # groups held back by a quota try again, as Auto Scaling does
                self._written(False)
            wanted = running_instances()
            databases, snapshots = wanted_databases(), wanted_snapshots()
            mark_snapshots(self.databases.captured())
            topology = read_topology(self.fleet.ports())
            while self._points:
                points = self._points.popleft()
                by_home: dict[tuple[str, str], list[Any]] = {}
                for point in points:
                    lb = dict(point.dimensions).get("LoadBalancer", "")
                    home = topology.metric_homes.get(lb)
                    if home is not None:
                        by_home.setdefault(home, []).append(point)
                for (account, region), mine in by_home.items():
                    cloudwatch.store_points(mine, account, region, NAMESPACE)
        applied = False
        if force or topology != last:
            self.plane.apply(
                list(topology.listeners), list(topology.target_groups), ports=self._ports.get("listeners", {})
            )
            self._group_arns = tuple(group.arn for group in topology.target_groups)
            applied = True
            self._publish_albs(topology)
        self.fleet.reconcile(wanted)
        self.databases.reconcile(databases, snapshots)
        self._counts = {
            "load_balancers": len(topology.metric_homes),
            "listeners": len(topology.listeners),
            "target_groups": len(topology.target_groups),
        }
        return topology, applied

    def _publish_albs(self, topology: Any) -> None:
        """Write albs.json and keep each listener's port for the next start."""
        albs: dict[str, Any] = {}
        listener_ports: dict[str, int] = dict(self._ports.get("listeners", {}))
        for listener in topology.listeners:
            port = self.plane.listener_port(listener.arn)
            if port is None:
                continue
            listener_ports[listener.arn] = port
            entry = albs.setdefault(
                listener.load_balancer_dns, {"arn": listener.load_balancer_arn, "listeners": {}}
            )
            entry["listeners"][str(listener.port)] = f"http://127.0.0.1:{port}"
        live = {listener.arn for listener in topology.listeners}
        listener_ports = {arn: port for arn, port in listener_ports.items() if arn in live}
        if albs != self._albs:
            self._albs = albs
            self._write_json(self.paths.albs_file, albs)
        if listener_ports != self._ports.get("listeners"):
            self._ports["listeners"] = listener_ports
            self._write_json(self.paths.ports_file, self._ports)

    # --- callbacks ---

    @staticmethod
    def _set_quota(request: dict[str, Any]) -> dict[str, Any]:
        """The quotas control path: set ``quota_code`` of ``region`` to ``value`` (under the lock)."""
        from moto.core.models import DEFAULT_ACCOUNT_ID

        from labkit.sandbox.server import quotas

        region, code, value = str(request["region"]), str(request["quota_code"]), float(request["value"])
        previous = quotas.set_applied(DEFAULT_ACCOUNT_ID, region, code, value)
        return {"region": region, "quota_code": code, "value": value, "previous": previous}

    @staticmethod
    def _set_iam(request: dict[str, Any]) -> dict[str, Any]:
        """The IAM control path: ``{"enforce": bool}`` switches enforcement (under the lock)."""
        from labkit.sandbox.server import iam

        enforce = request["enforce"]
        if not isinstance(enforce, bool):
            raise TypeError("enforce must be true or false")
        return {"enforce": enforce, "previous": iam.set_enforced(enforce)}

    def _observed_health(self, group_arn: str, target_id: str) -> Any:
        return self.plane.health(group_arn, target_id)

    def _draining(self, instance_id: str) -> bool:
        return any(self.plane.health(arn, instance_id).state == "draining" for arn in self._group_arns)

    def api_endpoint(self) -> str:
        return str(self.endpoint)

    def _locked(self, read: Callable[[Any], _T]) -> Callable[[Any], _T]:
        """``read`` run with the model lock held (the instances' threads read moto's models)."""

        def locked(spec: Any) -> _T:
            with self.lock:
                return read(spec)

        return locked

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "home": str(self.paths.root),
            "started_at": self.started_at,
            **self._counts,
            "instances": [asdict(info) for info in self.fleet.describe()],
            "databases": [asdict(info) for info in self.databases.describe()],
            "saves": dict(self.saves, unsaved_changes=self._dirty_since is not None),
            "loaded": self.loaded,
            "restored_locks": self.restored_locks,
            "iam": {"enforced": _iam_enforced()},
            "oidc": {
                "issuer": self.issuer.url,
                "served_at": self.issuer.served_at,
                "thumbprint": self.issuer.thumbprint,
            },
        }

    # --- files ---

    def _read_ports(self) -> dict[str, Any]:
        try:
            data = json.loads(self.paths.ports_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _write_json(path: Any, data: Any) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)


def _trail(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The trail path: ``{"events": [...]}`` of one access key (no model lock: the trail has its own)."""
    from labkit.sandbox.server import trail

    query = {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING") or "")).items()}
    answer: dict[str, Any]
    try:
        answer, status = {"events": trail.events(query["access_key_id"], query.get("since"))}, "200 OK"
    except (KeyError, ValueError) as exc:
        answer, status = {"error": f"{type(exc).__name__}: {exc}"}, "400 Bad Request"
    body = json.dumps(answer).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _iam_enforced() -> bool:
    from labkit.sandbox.server import iam

    return iam.enforced()


def main() -> None:
    # Everything the service and its apps write (state, logs, releases) is the user's alone.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    from labkit.errors import StateFileError

    try:
        service = SandboxService(sandbox_paths())
    except StateFileError as exc:
        log.error("%s", exc)  # `labkit sandbox up` shows the same message from its own check
        sys.exit(EXIT_STATE_UNREADABLE)

    def stop(signum: int, _frame: Any) -> None:
        log.info("received signal %d", signum)
        service.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()


if __name__ == "__main__":
    main()
