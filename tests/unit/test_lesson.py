"""The notebooks' guard-cell checks and the weight timeline a deploy's probe marks give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit.deploy import weights_from_marks
from labkit.errors import ConfigError, LessonOrderError
from labkit.lab import lesson
from labkit.target import sandbox


@pytest.mark.parametrize("target", ["sandbx", "", None, 3])
def test_an_unknown_target_is_refused_naming_the_choices(target: object) -> None:
    with pytest.raises(ConfigError, match="target is") as caught:
        lesson.open_target(target)  # type: ignore[arg-type]
    assert "'sandbox'" in str(caught.value) and "'aws'" in str(caught.value)


@pytest.mark.parametrize("value", ["true", 1, None])
def test_allow_spend_must_be_a_real_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="allow_spend is") as caught:
        lesson.open_target("aws", allow_spend=value)  # type: ignore[arg-type]
    assert "-p allow_spend true" in str(caught.value)


def test_a_region_that_is_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="aws_region is 3"):
        lesson.open_target("aws", aws_region=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "whole", "ok"),
    [(1, True, True), (4, True, True), (0, True, False), (5, True, False), (2.0, True, False),
     (True, True, False), ("3", False, False), (0.5, False, True), (float("nan"), False, False)],
)  # fmt: skip
def test_check_number(value: object, whole: bool, ok: bool) -> None:
    if ok:
        lesson.check_number("capacity", value, 0.5 if not whole else 1, 4, whole=whole)
    else:
        with pytest.raises(ConfigError, match="capacity is") as caught:
            lesson.check_number("capacity", value, 1, 4, whole=whole)
        assert "from 1 to 4" in str(caught.value) and "-p capacity VALUE" in str(caught.value)


def test_check_flag() -> None:
    lesson.check_flag("teardown_global", False)
    with pytest.raises(ConfigError, match="teardown_global is 'no'"):
        lesson.check_flag("teardown_global", "no")


def test_weights_change_when_the_listener_did() -> None:
    # shift-N marks the apply's start; analysis-N the moment it had changed the listener.
    marks = [(0.0, "start"), (1.0, "provision"), (4.0, "health"), (9.0, "shift-10"), (15.0, "analysis-10"),
             (20.0, "shift-50"), (26.0, "analysis-50"), (31.0, "shift-100"), (36.0, "analysis-100"),
             (42.0, "scale-down")]  # fmt: skip
    frame = weights_from_marks(marks)
    assert frame.to_dict("list") == {"time_s": [0.0, 15.0, 26.0, 36.0], "weight": [0.0, 10.0, 50.0, 100.0]}


def test_a_rollback_holds_the_weight_until_traffic_is_restored() -> None:
    marks = [(0.0, "start"), (5.0, "shift-10"), (11.0, "analysis-10"), (12.5, "rollback"), (12.7, "restored")]
    frame = weights_from_marks(marks)
    assert frame.to_dict("list") == {"time_s": [0.0, 11.0, 12.7], "weight": [0.0, 10.0, 0.0]}


def test_an_unknown_mark_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown deploy phase mark 'warmup'"):
        weights_from_marks([(0.0, "start"), (3.0, "warmup")])
    with pytest.raises(ConfigError, match="No marks"):
        weights_from_marks([])


class _Deployed:
    """A stand-in Stack whose state holds ``deployment``."""

    env = "staging"
    target = sandbox("http://127.0.0.1:1")  # never contacted

    def __init__(self, deployment: dict[str, object]) -> None:
        self._deployment = deployment

    def deployment(self) -> dict[str, object]:
        return self._deployment


def test_a_building_lesson_refuses_a_stack_that_later_lessons_moved_on() -> None:
    after_06 = _Deployed({"green_weight": 100, "green_capacity": 2, "blue_capacity": 0})
    with pytest.raises(LessonOrderError) as raised:
        expect = {"green_weight": 0, "green_capacity": 0}
        lesson.require_not_past(after_06, this="04-blue-fleet", expect=expect)  # type: ignore[arg-type]
    assert "moved past 04-blue-fleet: green_weight is 100 (this lesson sets 0)" in raised.value.message
    assert "09-teardown" in str(raised.value.hint)
    # The lesson's own layout, or a stack not built this far, passes.
    as_built = _Deployed({"green_weight": 0, "green_capacity": 0})
    lesson.require_not_past(as_built, this="04", expect={"green_weight": 0})  # type: ignore[arg-type]
    lesson.require_not_past(_Deployed({}), this="03", expect={"green_weight": 0})  # type: ignore[arg-type]


def test_the_path_runs_10_and_11_on_the_stack_08_leaves_then_tears_down() -> None:
    from pathlib import Path

    from labkit.settings import PROJECT_ROOT

    lessons = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(lesson.PATH_ORDER) == [p.stem for p in lessons]  # every lesson, once
    ordered = [p.stem[:2] for p in lesson.in_path_order(lessons)]
    assert ordered == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "10", "11", "09", "12"]
    extra = [Path("99-mine.ipynb"), Path("00-welcome-and-setup.ipynb"), Path("50-notes.ipynb")]
    assert [p.name for p in lesson.in_path_order(extra)] == [
        "00-welcome-and-setup.ipynb", "50-notes.ipynb", "99-mine.ipynb",
    ]  # fmt: skip


class _Stacks:
    """Stand-ins for ``Stack(env, target)``: each environment's outputs."""

    def __init__(self, outputs: dict[str, dict[str, object]]) -> None:
        self.outputs_of = outputs

    def __call__(self, env: str, target: object) -> object:
        outputs = self.outputs_of.get(env, {})
        return type("FakeStack", (), {"outputs": lambda self: outputs})()


@pytest.fixture
def alb(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, list[int]]]:
    """A load balancer on loopback answering the status at the head of its list, and a target
    whose ``alb_url`` maps any DNS name to it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    statuses = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"color": "green", "version": "1.1.0"}).encode()
            self.send_response(statuses[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    target = type("FakeTarget", (), {"alb_url": lambda self, dns: url})()
    try:
        yield target, statuses
    finally:
        server.shutdown()
        server.server_close()


def test_ensure_serving_uses_a_serving_staging_as_it_is_and_builds_otherwise(
    alb: tuple[object, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, statuses = alb
    built: list[object] = []
    monkeypatch.setattr(lesson, "ensure_staging", lambda t, say: built.append(t) or {"built": True})
    serving = {"global": {"state_bucket": "b"}, "staging": {"alb_dns_name": "bglab-staging.elb"}}
    said: list[str] = []

    monkeypatch.setattr(lesson, "Stack", _Stacks(serving))
    assert lesson.ensure_serving(target, say=said.append) == serving["staging"]  # type: ignore[arg-type]
    assert not built and said[-1].startswith("staging serves: green 1.1.0 answers at http://127.0.0.1:")

    statuses[0] = 502  # built, but nothing healthy behind the listener
    assert lesson.ensure_serving(target, say=said.append) == {"built": True}  # type: ignore[arg-type]
    assert built == [target] and said[-1] == "staging's load balancer answers 502: building it to serve"

    for nothing in ({}, {"global": {"state_bucket": "b"}}):  # a fresh sandbox; after 09 kept global
        monkeypatch.setattr(lesson, "Stack", _Stacks(nothing))
        assert lesson.ensure_serving(target, say=said.append) == {"built": True}  # type: ignore[arg-type]
    assert len(built) == 3
