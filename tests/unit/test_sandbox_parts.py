"""The sandbox's pure parts: user data, saved-state pickling, alarm evaluation, percentiles, and
the client side when no service runs. No server, no process: moto's model classes are used as
plain objects, unpatched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from labkit import sandbox
from labkit.errors import SandboxError
from labkit.sandbox.client import statefile
from labkit.sandbox.server import persistence
from labkit.sandbox.server.cloudwatch import compile_expression, evaluate_alarm, evaluate_expression
from labkit.sandbox.server.instance_view import parse_user_data, spec_from_user_data
from labkit.sandbox.server.mends import percentile

# --- user data ---

FLEET_USER_DATA = """#!/bin/bash
# Rendered by the fleet module.
ARTIFACT_URI="s3://lab-artifacts/releases/1.2.0/release.tar.gz"
APP_COLOR="green"
APP_VERSION="1.2.0"

set -euo pipefail
echo "bootstrap: $APP_COLOR $APP_VERSION from $ARTIFACT_URI"
"""


def test_the_fleet_user_data_names_the_release_to_run() -> None:
    spec = spec_from_user_data("i-1", "123456789012", "us-east-1", FLEET_USER_DATA)
    assert spec is not None
    assert (spec.bucket, spec.key) == ("lab-artifacts", "releases/1.2.0/release.tar.gz")
    assert (spec.color, spec.version) == ("green", "1.2.0")
    assert spec.artifact_uri == "s3://lab-artifacts/releases/1.2.0/release.tar.gz"


def test_user_data_without_an_artifact_runs_nothing() -> None:
    assert spec_from_user_data("i-1", "1", "r", "#!/bin/bash\necho hello\n") is None
    assert spec_from_user_data("i-1", "1", "r", 'ARTIFACT_URI="https://example.com/x.tgz"\n') is None


def test_assignments_may_be_exported_or_single_quoted() -> None:
    assert parse_user_data("export APP_COLOR='blue'\nAPP_VERSION=2.0.0\n") == {
        "APP_COLOR": "blue",
        "APP_VERSION": "2.0.0",
    }


# --- saved state ---


class VersionedStore(dict[str, Any]):
    """Like moto's S3 key store: item access shows the newest version, the raw value holds all."""

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key)[-1]

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, [value])

    def items(self) -> Any:  # type: ignore[override]
        return [(k, v[-1]) for k, v in dict.items(self)]


class Counted(defaultdict[str, list[int]]):
    """A defaultdict subclass whose __init__ takes arguments of its own (as moto's ParameterDict)."""

    def __init__(self, region: str) -> None:
        super().__init__(list)
        self.region = region


def roundtrip(data: Any) -> Any:
    """``data`` through a state file and back (this module's classes allowed besides moto's)."""
    _, payload = statefile.split(persistence.dumps(data), Path("state"))
    return persistence.loads(payload, extra_modules=(__name__,))


def test_moto_shaped_objects_survive_the_saved_state() -> None:
    from moto.core.base_backend import BackendDict
    from moto.sns.models import sns_backends

    store = VersionedStore()
    dict.__setitem__(store, "terraform.tfstate", ["v1", "v2"])
    nested: defaultdict[str, Any] = defaultdict(lambda: defaultdict(dict))
    nested["a"]["b"]["c"] = 1
    counted = Counted("us-east-1")
    counted["x"].append(1)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = {"store": store, "nested": nested, "counted": counted, "key": key, "registry": sns_backends}

    back: Any = roundtrip(data)

    assert dict.__getitem__(back["store"], "terraform.tfstate") == ["v1", "v2"]  # every version kept
    assert back["nested"]["a"]["b"]["c"] == 1
    assert back["nested"]["new"]["x"] == {}  # the factory still works
    assert back["counted"].region == "us-east-1" and back["counted"]["x"] == [1]
    assert back["counted"]["y"] == []
    assert back["key"].public_key().public_numbers() == key.public_key().public_numbers()
    assert back["registry"] is sns_backends  # moto's registries are this process's own
    assert isinstance(back["registry"], BackendDict)


# --- alarms ---


def alarm(**settings: Any) -> Any:
    from moto.cloudwatch.models import Alarm

    values: dict[str, Any] = {
        "account_id": "123456789012",
        "region_name": "us-east-1",
        "name": "errors",
        "namespace": "Lab",
        "metric_name": "Errors",
        "metric_data_queries": None,
        "comparison_operator": "GreaterThanThreshold",
        "evaluation_periods": 1,
        "datapoints_to_alarm": None,
        "period": 60,
        "threshold": 5.0,
        "statistic": "Sum",
        "extended_statistic": None,
        "description": "",
        "dimensions": [
            {"Name": "LoadBalancer", "Value": "app/lab/1"},
            {"Name": "TargetGroup", "Value": "tg/2"},
        ],
        "alarm_actions": [],
        "ok_actions": None,
        "insufficient_data_actions": None,
        "unit": None,
        "actions_enabled": True,
        "treat_missing_data": None,
        "evaluate_low_sample_count_percentile": None,
        "threshold_metric_id": None,
        "rule": None,
    }
    values.update(settings)
    return Alarm(**values)


NOW = datetime(2026, 1, 1, 12, 0, 0)


def datum(value: float, seconds_ago: float, *, name: str = "Errors", unit: str | None = None) -> Any:
    from moto.cloudwatch.models import MetricDatum

    dimensions = [{"Name": "TargetGroup", "Value": "tg/2"}, {"Name": "LoadBalancer", "Value": "app/lab/1"}]
    return MetricDatum("Lab", name, value, dimensions, NOW - timedelta(seconds=seconds_ago), unit)


def test_a_breaching_sum_alarms_whatever_order_the_dimensions_came_in() -> None:
    verdict = evaluate_alarm(alarm(), [datum(4, 10), datum(3, 20)], NOW)
    assert verdict is not None and verdict.state == "ALARM"
    assert verdict.reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [7 ")
    data = json.loads(verdict.reason_data)
    assert data["statistic"] == "Sum" and data["recentDatapoints"] == [7.0] and data["threshold"] == 5.0


def test_data_outside_the_evaluation_range_or_of_another_metric_do_not_count() -> None:
    stale_and_other = [datum(50, 61), datum(50, 5, name="Other"), datum(1, 5)]
    verdict = evaluate_alarm(alarm(), stale_and_other, NOW)
    assert verdict is not None and verdict.state == "OK"


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", "INSUFFICIENT_DATA"), (None, "INSUFFICIENT_DATA"), ("breaching", "ALARM"),
     ("notBreaching", "OK"), ("ignore", None)],
)
def test_missing_data_is_treated_as_the_alarm_says(treat: str | None, expected: str | None) -> None:
    verdict = evaluate_alarm(alarm(treat_missing_data=treat), [], NOW)
    assert (verdict.state if verdict else None) == expected


def test_no_data_treated_as_breaching_or_not_says_so() -> None:
    verdict = evaluate_alarm(alarm(treat_missing_data="notBreaching", evaluation_periods=2), [], NOW)
    assert verdict is not None and verdict.state == "OK"
    assert verdict.reason == (
        "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were "
        "treated as [NonBreaching]."
    )


def test_m_out_of_n_needs_m_breaching_periods() -> None:
    two_of_three = alarm(evaluation_periods=3, datapoints_to_alarm=2, period=60)
    one = [datum(9, 10), datum(1, 70), datum(1, 130)]
    two = [datum(9, 10), datum(9, 70), datum(1, 130)]
    assert evaluate_alarm(two_of_three, one, NOW).state == "OK"  # type: ignore[union-attr]
    assert evaluate_alarm(two_of_three, two, NOW).state == "ALARM"  # type: ignore[union-attr]


def test_statistic_unit_and_a_less_than_comparison() -> None:
    low = alarm(metric_name="Healthy", statistic="Minimum", comparison_operator="LessThanThreshold",
                threshold=1.0, unit="Count")
    points = [datum(2, 5, name="Healthy", unit="Count"), datum(0, 15, name="Healthy", unit="Count"),
              datum(0, 25, name="Healthy", unit="Percent")]
    assert evaluate_alarm(low, points, NOW).state == "ALARM"  # type: ignore[union-attr]
    assert evaluate_alarm(low, points[:1], NOW).state == "OK"  # type: ignore[union-attr]


def test_metric_math_and_anomaly_alarms_are_not_evaluated() -> None:
    assert evaluate_alarm(alarm(metric_name=None), [datum(9, 1)], NOW) is None
    band = alarm(comparison_operator="LessThanLowerOrGreaterThanUpperThreshold")
    assert evaluate_alarm(band, [datum(9, 1)], NOW) is None


def error_rate_alarm(min_requests: int = 10) -> Any:
    """The staging error-rate alarm's shape: metric math over two metrics of one target group."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    dims = [Dimension("LoadBalancer", "app/lab/1"), Dimension("TargetGroup", "tg/2")]

    def stat(query_id: str, metric: str) -> MetricDataQuery:
        metric_stat = MetricStat(Metric(metric, "Lab", dims), "60", "Sum", "")
        return MetricDataQuery(query_id, "", "", False, None, metric_stat)

    expression = f"IF(requests >= {min_requests}, 100 * errors / requests, 0)"
    rate = MetricDataQuery("rate", "", "", True, expression)
    queries = [stat("errors", "Errors"), stat("requests", "Requests"), rate]
    return alarm(metric_name=None, namespace=None, statistic=None, period=None, dimensions=[],
                 metric_data_queries=queries, threshold=5.0, treat_missing_data="notBreaching")


def test_a_metric_math_alarm_is_evaluated() -> None:
    busy = [datum(3, 10), datum(20, 10, name="Requests")]  # 15 % errors
    quiet = [datum(3, 10), datum(5, 10, name="Requests")]  # too few requests: 0 by the IF
    healthy = [datum(0, 10), datum(50, 10, name="Requests")]
    verdicts = [evaluate_alarm(error_rate_alarm(), data, NOW) for data in (busy, quiet, healthy, [])]
    assert [v.state if v else None for v in verdicts] == ["ALARM", "OK", "OK", "OK"]
    assert verdicts[0] is not None and "[15 " in verdicts[0].reason


def test_metric_math_expressions() -> None:
    def run(expression: str, **inputs: float | None) -> float | None:
        return evaluate_expression(compile_expression(expression), dict(inputs))

    assert run("100 * e / r", e=1, r=4) == 25
    assert run("e / r", e=1, r=0) is None  # a period metric math cannot compute has no value
    assert run("IF(r > 10 AND e >= 1, 1, 0)", r=11, e=1) == 1
    assert run("IF(r > 10 && e >= 1, 1, 0)", r=11, e=0) == 0
    assert run("MAX(a, b) - MIN(a, b) + ABS(-2)", a=1, b=5) == 6
    assert run("e + 1", e=None) is None
    for unsupported in ("METRICS()", "e.real", "'text'", "__import__('os')", "SUM(METRICS())"):
        with pytest.raises(ValueError):
            compile_expression(unsupported)


# --- percentiles ---


def test_percentiles_rank_distributions_and_single_values() -> None:
    distribution = SimpleNamespace(labkit_values=[(0.1, 50.0), (0.2, 49.0), (1.0, 1.0)])
    assert percentile([distribution], 50) == 0.1
    assert percentile([distribution], 99) == 0.2
    assert percentile([distribution], 100) == 1.0
    singles = [SimpleNamespace(value=v) for v in (5, 1, 3, 2, 4)]
    assert percentile(singles, 50) == 3
    assert percentile([*singles, distribution], 10) == 0.1
    assert percentile([], 99) is None


# --- the client side with no service ---


@pytest.fixture()
def empty_sandbox_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_SANDBOX_HOME", str(tmp_path / "sandbox"))
    return tmp_path / "sandbox"


def test_status_without_a_service(empty_sandbox_home: Path) -> None:
    assert sandbox.describe_status() == (False, "not running (`labkit sandbox up` starts it)")
    assert sandbox.status().running is False
    assert sandbox.down() is False


def test_alb_url_needs_a_running_sandbox(empty_sandbox_home: Path) -> None:
    with pytest.raises(SandboxError, match="not running") as raised:
        sandbox.alb_url("lab-1.us-east-1.elb.amazonaws.com")
    assert "labkit sandbox up" in (raised.value.hint or "")


def test_a_stale_pid_of_another_program_is_never_taken_for_the_service(empty_sandbox_home: Path) -> None:
    # After a reboot service.json may name a pid that now belongs to anything: here, pytest itself.
    empty_sandbox_home.mkdir(parents=True)
    (empty_sandbox_home / "service.json").write_text(
        json.dumps({"pid": os.getpid(), "endpoint": "http://127.0.0.1:1"})
    )
    assert sandbox.status().running is False
    assert sandbox.down() is False  # and it was not signalled: this test is still running
    assert not (empty_sandbox_home / "service.json").exists()


@pytest.fixture()
def stand_in_service() -> Iterator[int]:
    """A sleeping process whose command line names the service, standing in for its pid."""
    command = [sys.executable, "-c", "import time; time.sleep(60)", "labkit.sandbox.server.service"]
    proc = subprocess.Popen(command)
    yield proc.pid
    proc.kill()
    proc.wait()


def test_alb_url_picks_the_listener(empty_sandbox_home: Path, stand_in_service: int) -> None:
    # What a running service writes.
    empty_sandbox_home.mkdir(parents=True)
    (empty_sandbox_home / "service.json").write_text(
        json.dumps({"pid": stand_in_service, "endpoint": "http://127.0.0.1:1"})
    )
    (empty_sandbox_home / "albs.json").write_text(json.dumps({
        "web-1.us-east-1.elb.amazonaws.com": {"listeners": {"80": "http://127.0.0.1:4001"}},
        "two-1.us-east-1.elb.amazonaws.com": {
            "listeners": {"8080": "http://127.0.0.1:4002", "8081": "http://127.0.0.1:4003"}
        },
    }))
    assert sandbox.alb_url("web-1.us-east-1.elb.amazonaws.com") == "http://127.0.0.1:4001"
    assert sandbox.alb_url("two-1.us-east-1.elb.amazonaws.com", port=8081) == "http://127.0.0.1:4003"
    with pytest.raises(SandboxError, match="ports 8080, 8081"):
        sandbox.alb_url("two-1.us-east-1.elb.amazonaws.com")
    with pytest.raises(SandboxError, match="no listener on port 443"):
        sandbox.alb_url("web-1.us-east-1.elb.amazonaws.com", port=443)
    with pytest.raises(SandboxError, match="No load balancer") as raised:
        sandbox.alb_url("nope-1.us-east-1.elb.amazonaws.com", wait_s=0)
    assert "web-1.us-east-1.elb.amazonaws.com" in (raised.value.hint or "")


def _service_json(home: Path, pid: int, port: int) -> str:
    endpoint = f"http://127.0.0.1:{port}"
    home.mkdir(parents=True)
    (home / "service.json").write_text(json.dumps({"pid": pid, "endpoint": endpoint}))
    return endpoint


def test_a_running_service_slow_to_answer_is_waited_for(
    empty_sandbox_home: Path, stand_in_service: int
) -> None:
    """A service busy on a loaded machine (a save, a database starting) missed the status probe,
    and `up` called it broken (seen in a test under load): it waits for the API instead."""
    import http.server
    import threading

    from labkit.sandbox.client.paths import STATUS_PATH

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"pid": stand_in_service, "endpoint": endpoint}).encode()
            self.send_response(200 if self.path == STATUS_PATH else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    # Silent at first (its port refuses, as while the service is too busy to accept), then answering.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    endpoint = _service_json(empty_sandbox_home, stand_in_service, port)
    servers: list[http.server.HTTPServer] = []

    def serve() -> None:
        reserved.close()
        servers.append(http.server.HTTPServer(("127.0.0.1", port), Status))
        servers[0].serve_forever()

    late = threading.Timer(1.5, serve)
    late.start()
    try:
        assert sandbox.up(timeout_s=20) == endpoint
    finally:
        late.cancel()
        for server in servers:
            server.shutdown()
            server.server_close()
        reserved.close()


def test_a_running_service_that_never_answers_is_reported(
    empty_sandbox_home: Path, stand_in_service: int
) -> None:
    with socket.socket() as silent:  # bound, not listening: every probe is refused
        silent.bind(("127.0.0.1", 0))
        _service_json(empty_sandbox_home, stand_in_service, silent.getsockname()[1])
        with pytest.raises(SandboxError, match=f"pid {stand_in_service}.*has not answered for 1 s"):
            sandbox.up(timeout_s=1)
