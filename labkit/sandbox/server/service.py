"""The sandbox service: ``python -m labkit.sandbox.server.service`` (started by ``labkit sandbox up``).

One process on 127.0.0.1:
- moto's server in process (AWS-managed IAM policies loaded), with :mod:`.mends` applied and
  the saved AWS state loaded; requests are served one at a time under a model lock, so that
  the reconcile loop and the saver always read consistent models;
- a reconcile loop, twice a second: instances to app processes (:mod:`.instances`), moto's
  load balancers to the data plane (:class:`~labkit.sandbox.server.lb.LoadBalancerPlane`), the plane's
  metrics into CloudWatch, ALB DNS names to loopback URLs (``albs.json``);
- alarms evaluated every few seconds, metric data older than a day dropped (:mod:`.cloudwatch`);
- the AWS state saved every so often after changes, and on SIGTERM, before everything stops.

``GET /labkit-sandbox/status`` answers with the service's status as JSON.
"""

from __future__ import annotations

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
from typing import Any

from labkit.sandbox.client.paths import STATUS_PATH, SandboxPaths, sandbox_paths

log = logging.getLogger("labkit.sandbox")

LOOP_INTERVAL_S = 0.4
ALARM_INTERVAL_S = 5.0
#: The plane is re-applied at least this often even when nothing changed (it is idempotent).
REAPPLY_S = 10.0
#: After a change, the state is saved once the API has been quiet this long, at most this often.
SAVE_QUIET_S = 2.0
SAVE_EVERY_S = 30.0

StartResponse = Callable[..., Any]


class _Api:
    """moto's WSGI app behind the model lock, plus the status path; notes when state may change."""

    def __init__(self, moto_app: Any, lock: threading.RLock, status: Callable[[], dict[str, Any]]) -> None:
        self._moto = moto_app
        self._lock = lock
        self._status = status
        self.dirty = False
        self.last_request = 0.0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == STATUS_PATH:
            body = json.dumps(self._status()).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        with self._lock:
            self.last_request = time.monotonic()
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD", "OPTIONS"):
                self.dirty = True  # reads are POSTs too in most AWS protocols: this errs towards saving
            result = self._moto(environ, start_response)
            try:
                return [b"".join(result)]  # built under the lock: moto's models are not thread-safe
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class SandboxService:
    def __init__(self, paths: SandboxPaths) -> None:
        # Before moto is imported: the managed policies load only when this is set at import.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from labkit.sandbox.client.leftovers import kill_leftovers
        from labkit.sandbox.server import mends, persistence
        from labkit.sandbox.server.instance_view import read_artifact
        from labkit.sandbox.server.instances import InstanceApps
        from labkit.sandbox.server.lb import LoadBalancerPlane

        self.paths = paths
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._points: deque[list[Any]] = deque()
        self._ports = self._read_ports()
        self._group_arns: tuple[str, ...] = ()
        self._albs: dict[str, Any] = {}
        self._counts: dict[str, int] = {}

        leftovers = kill_leftovers(paths.instances_dir)
        if leftovers:
            log.warning("killed %d app process(es) left by an earlier run: %s", len(leftovers), leftovers)
        self.plane = LoadBalancerPlane(publish=self._points.append)
        mends.apply_mends(self._observed_health)
        if paths.state_file.exists():
            started = time.monotonic()
            try:
                installed = persistence.load(paths.state_file)
            except Exception as exc:  # a corrupt or foreign file must not keep the sandbox down
                broken = paths.state_file.with_suffix(".unreadable")
                os.replace(paths.state_file, broken)
                log.error("could not load %s (%s); starting empty, the file is kept as %s", paths.state_file,
                          exc, broken)
            else:
                log.info("loaded %d saved AWS backends in %.1f s", installed, time.monotonic() - started)
        self.fleet = InstanceApps(
            paths.instances_dir,
            read_artifact=self._read_artifact_locked(read_artifact),
            draining=self._draining,
        )
        self.api = _Api(DomainDispatcherApplication(create_backend_app), self.lock, self.status)
        self.server = self._bind(make_server, MotoRequestHandler)
        self.port = int(self.server.server_address[1])
        os.environ["MOTO_PORT"] = str(self.port)  # moto builds a few URLs (SQS queues) from it
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._persistence = persistence

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
        self.save()
        self.fleet.close()
        self.plane.close()
        self.paths.service_file.unlink(missing_ok=True)
        log.info("stopped")

    def save(self) -> None:
        """Write the AWS state (pickling under the lock, writing outside it)."""
        started = time.monotonic()
        with self.lock:
            self.api.dirty = False
            data = self._persistence.dumps(self._persistence.capture())
        self._persistence.save(self.paths.state_file, data)
        log.info("saved the AWS state (%.1f MB) in %.1f s", len(data) / 1e6, time.monotonic() - started)

    # --- the reconcile loop ---

    def _loop(self) -> None:
        last_topology: Any = None
        last_apply = last_save = time.monotonic()
        last_error, last_error_at = "", 0.0
        while not self.stopping.wait(LOOP_INTERVAL_S):
            now = time.monotonic()
            try:
                last_topology, applied = self._reconcile(last_topology, now - last_apply >= REAPPLY_S)
                if applied:
                    last_apply = now
                if (
                    self.api.dirty
                    and now - last_save >= SAVE_EVERY_S
                    and now - self.api.last_request >= SAVE_QUIET_S
                ):
                    last_save = now
                    self.save()
            except Exception as exc:  # the loop must outlive any one bad model; the log says what broke
                # The same failure twice a second would bury the log: once a minute is enough.
                if repr(exc) != last_error or now - last_error_at > 60:
                    log.exception("reconcile pass failed")
                    last_error, last_error_at = repr(exc), now

    def _reconcile(self, last: Any, force: bool) -> tuple[Any, bool]:
        from labkit.sandbox.server import cloudwatch, healing
        from labkit.sandbox.server.instance_view import running_instances
        from labkit.sandbox.server.lb.metrics import NAMESPACE
        from labkit.sandbox.server.lb.view import read_topology

        with self.lock:
            healing.heal(self._observed_health)  # before reading what runs: replacements start now
            wanted = running_instances()
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

    def _observed_health(self, group_arn: str, target_id: str) -> Any:
        return self.plane.health(group_arn, target_id)

    def _draining(self, instance_id: str) -> bool:
        return any(self.plane.health(arn, instance_id).state == "draining" for arn in self._group_arns)

    def _read_artifact_locked(self, read: Callable[[Any], bytes | None]) -> Callable[[Any], bytes | None]:
        def locked(spec: Any) -> bytes | None:
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


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    service = SandboxService(sandbox_paths())

    def stop(signum: int, _frame: Any) -> None:
        log.info("received signal %d", signum)
        service.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()


if __name__ == "__main__":
    main()
