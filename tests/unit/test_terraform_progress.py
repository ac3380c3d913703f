"""Terraform's progress as one live line and a summary, fed with Terraform's own recorded JSON.

The streams in tests/fixtures/terraform/progress/ are real Terraform output (see its README). The
runner tests replay them through a stand-in binary, so the default reporter is checked end to end:
what it prints, what the log file holds, where that file is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import TerraformError
from labkit.infra import progress
from labkit.infra.progress import CommandProgress, PrintReporter
from labkit.infra.terraform import ResourceChange, Terraform
from labkit.settings import RUN_DIR_ENV
from labkit.target import sandbox

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "progress"


def recorded(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECORDED / f"{name}.jsonl").read_text().splitlines()]


def fed(command: str, events: list[dict[str, Any]]) -> CommandProgress:
    counted = CommandProgress(command, "small")
    for event in events:
        counted.feed(event)
    return counted


def test_an_apply_counts_its_planned_resources_as_they_complete() -> None:
    events = recorded("apply")
    counted = CommandProgress("apply", "small")
    statuses = []
    for event in events:
        counted.feed(event)
        statuses.append(counted.status(7.4))
    kinds = [e["type"] for e in events]
    assert statuses[kinds.index("refresh_start")] == (
        "terraform apply small: 7 s — refreshing aws_sns_topic.this"
    )
    assert statuses[kinds.index("planned_change")] == "terraform apply small: 0/1 resources, 7 s"
    assert statuses[kinds.index("apply_start")] == (
        "terraform apply small: 0/1 resources, 7 s — creating aws_ssm_parameter.release"
    )
    assert statuses[-1] == "terraform apply small: 1/1 resources, 7 s"
    assert counted.counts() == "1 added, 0 changed, 0 destroyed"


def test_a_replaced_resource_is_done_once_created_again() -> None:
    events = recorded("apply-replace")
    deleted = [
        i for i, e in enumerate(events) if e["type"] == "apply_complete" and e["hook"]["action"] == "delete"
    ]
    halfway = fed("apply", events[: deleted[-1] + 1])
    assert (halfway.done, halfway.total) == (0, 2)  # both destroyed, neither created yet
    assert "creating aws_ssm_parameter.release" in halfway.status(1)
    whole = fed("apply", events)
    assert (whole.done, whole.total) == (2, 2)
    assert whole.counts() == "2 added, 0 changed, 2 destroyed"  # Terraform's own summary


def test_a_destroy_and_a_plan_say_what_they_count() -> None:
    events = recorded("destroy")
    first_delete = next(i for i, e in enumerate(events) if e["type"] == "apply_start")
    assert fed("destroy", events[: first_delete + 1]).status(2) == (
        "terraform destroy small: 0/2 resources, 2 s — destroying aws_ssm_parameter.release"
    )
    assert fed("destroy", events).status(3) == "terraform destroy small: 2/2 resources, 3 s"
    assert fed("plan", recorded("plan")).status(1) == "terraform plan small: 2 to change, 1 s"


def test_a_saved_plans_apply_has_no_total_so_it_counts_what_is_done() -> None:
    # A saved plan's apply starts with no planned_change and no plan summary.
    events = [e for e in recorded("apply-replace") if e["type"] not in ("planned_change", "change_summary")]
    assert fed("apply", events[:1]).status(0) == "terraform apply small: 0 s — planning"
    assert fed("apply", events).status(4) == "terraform apply small: 2 resources done, 4 s"


REPLAY_TERRAFORM = """#!{python}
# A stand-in for terraform: plan and apply print a recorded -json stream, then exit FAKE_EXIT.
import os, sys
if sys.argv[1] in ("plan", "apply"):
    sys.stdout.write(open(os.environ["FAKE_REPLAY"]).read())
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
if sys.argv[1] == "show":
    print("{{}}")
"""


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, labkit_home: Path) -> Terraform:
    """A runner whose terraform replays a recorded stream (set ``FAKE_REPLAY``), with the default
    kind of reporter (a fresh one: the module's is shared)."""
    binary = tmp_path / "terraform"
    binary.write_text(REPLAY_TERRAFORM.format(python=sys.executable))
    binary.chmod(0o755)
    monkeypatch.setenv("LABKIT_TERRAFORM", str(binary))
    monkeypatch.delenv("LABKIT_TF_PLUGIN_MIRROR", raising=False)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    root = tmp_path / "small"
    root.mkdir()
    return Terraform(root, target=sandbox("http://127.0.0.1:1"), reporter=PrintReporter())


def test_the_default_reporter_prints_warnings_in_full_and_one_summary_naming_the_log(
    replay: Terraform, labkit_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "apply-targeted.jsonl"))
    result = replay.apply(variables={"name": "rec"}, targets=["aws_sns_topic.this"])
    assert result.added == 1
    out = capsys.readouterr().out.splitlines()
    # Both of Terraform's warnings, every line of their detail, then the summary; nothing per resource.
    warnings = [line for line in out if line.startswith("Warning: ")]
    assert warnings == [
        "Warning: Resource targeting is in effect",
        "Warning: Applied changes may be incomplete",
    ]
    assert "      terraform plan" in out  # the detail's own indented command, kept
    assert not any("aws_sns_topic.this:" in line for line in out)
    summary = out[-1]
    assert re.fullmatch(r"applied small: 1 added, 0 changed, 0 destroyed in \d+ s; full log: \S+", summary)
    log = Path(summary.split("full log: ")[1])
    assert log.parent == labkit_home / "logs" and log.name.endswith("-small-apply.log")
    # The log has every message Terraform sent, the warnings' detail included.
    text = log.read_text()
    for event in recorded("apply-targeted"):
        assert event["@message"] in text
    assert "-target option is not for routine use" in text


def test_under_labkit_run_the_log_goes_to_the_run_folder(
    replay: Terraform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path / "run"))
    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "plan.jsonl"))
    replay.plan(variables={"name": "rec"})
    (summary,) = capsys.readouterr().out.splitlines()
    # The recorded plan's stream plans two resources: the summary counts them without `show`.
    planned = r"planned small: 2 to add, 0 to change, 0 to destroy in \d+ s; full log: \S+"
    assert re.fullmatch(planned, summary)
    assert Path(summary.split("full log: ")[1]).parent == tmp_path / "run" / "logs"


def test_an_error_is_printed_in_full_before_the_failure_line(
    replay: Terraform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "apply-error.jsonl"))
    monkeypatch.setenv("FAKE_EXIT", "1")
    with pytest.raises(TerraformError, match="terraform apply failed"):
        replay.apply(variables={"name": "rec"})
    error, failed = capsys.readouterr().out.splitlines()
    assert error.startswith(
        'Error: expected type to be one of ["String" "StringList" "SecureString"], got Strin'
    )
    assert error.endswith("(aws_ssm_parameter.bad)")
    assert re.fullmatch(r"terraform apply small failed after \d+ s; full log: \S+", failed)
    assert "got Strin" in Path(failed.split("full log: ")[1]).read_text()


def test_a_callers_own_reporter_still_gets_a_line_per_event_warnings_included(
    replay: Terraform, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    replay.reporter = lines.append
    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "apply-targeted.jsonl"))
    replay.apply(variables={"name": "rec"}, targets=["aws_sns_topic.this"])
    assert any(line.endswith("aws_sns_topic.this: Creation complete after 0s [id=arn:aws:sns:us-east-1:"
                             "123456789012:rec]") for line in lines)  # fmt: skip
    assert any("Warning: Applied changes may be incomplete" in line for line in lines)
    assert lines[-1].startswith("apply complete in ") and lines[-1].endswith(
        ": 1 added, 0 changed, 0 destroyed"
    )
    assert not any("full log" in line for line in lines)


class FakeHandle:
    """Stands for IPython's DisplayHandle: keeps every state the display was given."""

    def __init__(self, shown: list[str], data: dict[str, str]) -> None:
        self.shown = shown
        self.shown.append(data["text/plain"])

    def update(self, data: dict[str, str], raw: bool) -> None:
        self.shown.append(data["text/plain"])


def test_in_a_notebook_the_live_line_is_one_display_updated_in_place(
    replay: Terraform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import IPython.display

    shown: list[str] = []
    displays: list[FakeHandle] = []

    def display(data: dict[str, str], raw: bool, display_id: bool) -> FakeHandle:
        assert raw and display_id is True
        displays.append(FakeHandle(shown, data))
        return displays[-1]

    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    monkeypatch.setattr(progress, "DISPLAY_EVERY_S", 0.0)
    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "apply-replace.jsonl"))
    replay.apply(variables={"name": "rec2"})
    assert len(displays) == 1  # one display, updated in place
    assert any(re.fullmatch(r"terraform apply small: 0/2 resources, \d+ s — destroying aws_sns_topic.this", s)
               for s in shown)  # fmt: skip
    assert re.fullmatch(r"terraform apply small: 2/2 resources, \d+ s", shown[-2])
    assert shown[-1] == ""  # emptied at the end: the cell keeps the summary, not a stale status
    (summary,) = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"applied small: 2 added, 0 changed, 2 destroyed in \d+ s; full log: \S+", summary)


def test_a_logs_folder_keeps_the_newest_logs_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(progress, "KEEP_LOGS", 3)
    folder = progress.logs_dir()
    for n in range(5):
        (folder / f"20260101T00000{n}-staging-apply.log").write_text("old\n")
    with progress.CommandLog("plan", "staging", ["plan"]) as log:
        log.write("new")
    names = sorted(p.name for p in folder.glob("*.log"))
    assert len(names) == 3 and log.path.name in names
    assert names[:2] == ["20260101T000003-staging-apply.log", "20260101T000004-staging-apply.log"]


def test_a_data_source_read_during_the_apply_is_not_a_resource_done() -> None:
    progress_ = CommandProgress("apply", "staging")
    planned = {"type": "planned_change", "change": {"action": "create", "resource": {"addr": "aws_vpc.this"}}}
    progress_.feed(planned)
    for kind in ("apply_start", "apply_complete"):
        progress_.feed(
            {"type": kind, "hook": {"resource": {"addr": "data.aws_region.current"}, "action": "read"}}
        )
    assert (progress_.done, progress_.total) == (0, 1)
    progress_.feed(
        {"type": "apply_complete", "hook": {"resource": {"addr": "aws_vpc.this"}, "action": "create"}}
    )
    assert (progress_.done, progress_.total) == (1, 1)


def test_data_sources_read_while_planning_do_not_count_once_the_plan_is_known() -> None:
    """An apply without a saved plan reads data sources before it lists its planned changes; seen
    as "49/44 resources" in a staging build."""
    progress_ = CommandProgress("apply", "staging")
    for kind in ("apply_start", "apply_complete"):
        progress_.feed(
            {"type": kind, "hook": {"resource": {"addr": "data.aws_region.current"}, "action": "read"}}
        )
    assert progress_.done == 1  # no plan yet: it may be a saved plan's apply, which lists none
    planned = {"type": "planned_change", "change": {"action": "create", "resource": {"addr": "aws_vpc.this"}}}
    progress_.feed(planned)
    assert (progress_.done, progress_.total) == (0, 1)
    progress_.feed(
        {"type": "apply_complete", "hook": {"resource": {"addr": "aws_vpc.this"}, "action": "create"}}
    )
    assert (progress_.done, progress_.total) == (1, 1)


def test_an_apply_lists_the_changes_its_own_plan_made_for_a_lesson_s_table(
    replay: Terraform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a building lesson shows its plan's diff as a compact table; an apply that made its
    own plan reports that plan's changes, read from its -json stream (no second plan)."""
    from labkit.lab.hcl import changes_table

    monkeypatch.setenv("FAKE_REPLAY", str(RECORDED / "apply-replace.jsonl"))
    result = replay.apply(variables={"name": "rec"})
    table = changes_table(result.changes)
    assert table.to_dict("records") == [
        {"module": "root", "resource": "aws_sns_topic.this", "action": "replace"},
        {"module": "root", "resource": "aws_ssm_parameter.release", "action": "replace"},
    ]
    assert (result.added, result.removed) == (2, 2)
    # A module's resource: the calls that lead to it, then its address there (short enough to show).
    deep = ResourceChange('module.environment.module.fleet["blue"].aws_autoscaling_group.this', ("create",))
    assert changes_table([deep]).values.tolist() == [
        ['environment.fleet["blue"]', "aws_autoscaling_group.this", "create"]
    ]
