"""The probe's refusals and its summary, without sending anything."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from labkit.deploy.probe import COLUMNS, Probe, _identity, summarize
from labkit.errors import LabkitError, ProbeError


@pytest.mark.parametrize("url", ["http://10.0.0.5/", "http://my-alb-123.us-east-1.elb.amazonaws.com/"])
def test_remote_urls_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ProbeError) as info:
        Probe(url)
    assert "sends only to loopback" in str(info.value)
    assert "allow_remote=True" in str(info.value.hint)
    assert isinstance(info.value, LabkitError)
    assert Probe(url, allow_remote=True).url == url  # constructing sends nothing


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/", "http://localhost:1/x?y=1", "http://[::1]:80/"])
def test_loopback_urls_are_accepted(url: str) -> None:
    assert Probe(url).url == url


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http:///nohost"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ProbeError, match="not an http\\(s\\) URL"):
        Probe(url)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": 5000}, "rate"),
        ({"rate": "100"}, "rate"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 120}, "timeout"),
        ({"duration": -1}, "duration"),
        ({"duration": 100, "max_duration": 10}, "duration"),
        ({"workers": 0}, "workers"),
        ({"workers": 2.5}, "workers"),
    ],
)
def test_out_of_range_settings_are_refused(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ProbeError, match=f"^{name} is") as info:
        Probe("http://127.0.0.1:1/", **kwargs)
    assert info.value.hint


def test_default_pool_grows_with_the_rate_but_stays_small() -> None:
    assert Probe("http://127.0.0.1:1/", rate=10).workers == 4
    assert Probe("http://127.0.0.1:1/", rate=100).workers == 10
    assert Probe("http://127.0.0.1:1/", rate=2000).workers == 64


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:70000/", "http://127.0.0.1:0/", "http://127.0.0.1:-1/", "http://127.0.0.1:x/",
     "http://[::1]:65536/"],
)
def test_a_port_out_of_range_is_refused(url: str) -> None:
    with pytest.raises(ProbeError, match="is not a number from 1 to 65535") as info:
        Probe(url)
    assert "http://127.0.0.1:8080/" in str(info.value.hint)


def test_ports_at_the_edges_and_the_default_port_are_accepted() -> None:
    assert Probe("http://127.0.0.1:1/")._port == 1
    assert Probe("http://127.0.0.1:65535/")._port == 65535
    assert Probe("http://127.0.0.1/")._port is None  # http.client uses 80


@pytest.mark.parametrize("path", ["/a b", "/a\x00b", "/a\x7f"])
def test_a_path_with_a_space_or_control_character_is_refused(path: str) -> None:
    with pytest.raises(ProbeError, match="space or a control character"):
        Probe(f"http://127.0.0.1:8080{path}")


@pytest.mark.parametrize(
    "value", ["green\r\nX-Injected: 1", "green\nX-Injected: 1", "green\r", "\r\n\r\nGET / HTTP/1.1"]
)
def test_a_header_value_with_cr_or_lf_is_refused_before_anything_starts(value: str) -> None:
    with pytest.raises(ProbeError, match="holds a line break") as info:
        Probe("http://127.0.0.1:1/", headers={"X-Preview": value})
    assert "--header" in str(info.value.hint)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"X Preview": "green"}, "is not an HTTP token"),
        ({"X-Preview:": "green"}, "is not an HTTP token"),
        ({"": "green"}, "is not an HTTP token"),
        ({"X-Preview": "a\x00b"}, "control character"),
        ({"X-Preview": "\u2192"}, "outside Latin-1"),
        ({"X-Preview": 1}, "not text"),
    ],
)
def test_bad_header_names_and_values_are_refused(headers: dict[str, Any], match: str) -> None:
    with pytest.raises(ProbeError, match=match) as info:
        Probe("http://127.0.0.1:1/", headers=headers)
    assert info.value.hint


def test_good_headers_are_kept_as_given() -> None:
    headers = {"X-Preview": "green", "Accept": "*/*", "X-Note": "caf\u00e9\tok", "X-Empty": ""}
    assert Probe("http://127.0.0.1:1/", headers=headers).headers == headers


def test_a_probe_not_started_has_no_results_and_cannot_be_waited_for() -> None:
    probe = Probe("http://127.0.0.1:1/")
    frame = probe.results()
    assert list(frame.columns) == COLUMNS and frame.empty
    assert probe.counts() == (0, 0) and not probe.running
    with pytest.raises(ProbeError, match="has not been started"):
        probe.wait()
    probe.stop()  # harmless


@pytest.mark.parametrize(
    ("body", "identity"),
    [
        (b'{"color": "blue", "version": "1.0.0", "instance_id": "i-1", "host": "h"}',
         {"color": "blue", "version": "1.0.0", "instance_id": "i-1"}),
        (b'{"error": "injected", "color": "green", "version": "2"}', {"color": "green", "version": "2"}),
        (b"<html>502 Bad Gateway</html>", {}),
        (b"{not json", {}),
        (b"[1, 2]", {}),
        (b"", {}),
        (None, {}),
    ],
)  # fmt: skip
def test_identity_is_read_from_the_apps_json_only(body: bytes | None, identity: dict[str, str]) -> None:
    assert _identity(body) == identity


def _row(
    elapsed: float, phase: str, status: int, color: str | None, version: str | None, latency: float | None
) -> dict[str, Any]:
    return {
        "elapsed_s": elapsed,
        "time": pd.Timestamp(1_700_000_000 + elapsed, unit="s", tz="UTC"),
        "phase": phase,
        "status": status,
        "ok": 200 <= status < 400,
        "color": color,
        "version": version,
        "instance_id": None,
        "latency_ms": latency,
        "lag_ms": 0.0,
        "error": None if 200 <= status < 400 else f"HTTP {status}",
    }


def test_summarize_per_phase_in_the_order_phases_began() -> None:
    rows = [_row(i * 0.01, "baseline", 200, "blue", "v1", float(i + 1)) for i in range(100)]
    rows += [_row(1 + i * 0.01, "shift-50", 200, "green" if i % 2 else "blue", "v2" if i % 2 else "v1", 10.0)
             for i in range(40)]  # fmt: skip
    rows += [_row(1.4, "shift-50", 500, "green", "v2", 3.0), _row(1.41, "shift-50", 0, None, None, None)]
    summary = summarize(pd.DataFrame(rows, columns=COLUMNS))

    assert list(summary.index) == ["baseline", "shift-50", "all"]
    base = summary.loc["baseline"]
    assert (base["requests"], base["failed"], base["failure_rate"]) == (100, 0, 0.0)
    assert base["p50_ms"] == pytest.approx(50.5)
    assert base["p95_ms"] == pytest.approx(95.05)
    assert base["p99_ms"] == pytest.approx(99.01)
    assert base["max_ms"] == 100.0
    assert base["rate_rps"] == pytest.approx(100.0)
    assert (base["color=blue"], base["color=green"], base["version=v1"]) == (1.0, 0.0, 1.0)

    shift = summary.loc["shift-50"]
    assert (shift["requests"], shift["failed"], shift["http_5xx"], shift["no_response"]) == (42, 2, 1, 1)
    assert shift["failure_rate"] == pytest.approx(2 / 42)
    # Shares are of the answers that named a color: 20 blue, 21 green (one of them the 500).
    assert shift["color=green"] == pytest.approx(21 / 41)
    assert shift["version=v2"] == pytest.approx(21 / 41)
    assert shift["max_ms"] == 10.0  # the request with no answer has no latency

    assert summary.loc["all", "requests"] == 142 and summary.loc["all", "failed"] == 2


def test_summarize_an_empty_run() -> None:
    summary = summarize(pd.DataFrame(columns=COLUMNS))
    assert list(summary.index) == ["all"]
    assert summary.loc["all", "requests"] == 0
    assert math.isnan(summary.loc["all", "p95_ms"]) and math.isnan(summary.loc["all", "failure_rate"])
