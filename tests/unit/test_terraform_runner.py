"""labkit.infra.terraform without running Terraform: CLI config, parsing, errors."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from labkit.errors import ConfigError, DeploymentLockLostError, TerraformError, TerraformNotFoundError
from labkit.infra.terraform import (
    GO_GC_PERCENT,
    PlanResult,
    ResourceChange,
    Terraform,
    _changes,
    _diagnostic_line,
    _progress_line,
    _streamed_changes,
    cli_config_file,
    drop_mirrored_hashes,
    mirrored_providers,
    terraform_binary,
)
from labkit.target import sandbox


def make_mirror(root: Path) -> Path:
    (root / "registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64").mkdir(parents=True)
    (root / "registry.terraform.io/hashicorp/random/3.6.0/linux_amd64").mkdir(parents=True)
    return root


def test_no_mirror_setting_means_no_cli_config(labkit_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_TF_PLUGIN_MIRROR", raising=False)
    assert cli_config_file() is None


def test_mirror_setting_writes_a_cli_config(
    labkit_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    monkeypatch.setenv("LABKIT_TF_PLUGIN_MIRROR", str(mirror))
    assert mirrored_providers(mirror) == [
        "registry.terraform.io/hashicorp/aws",
        "registry.terraform.io/hashicorp/random",
    ]
    path = cli_config_file()
    assert path is not None and path.parent == labkit_home
    text = path.read_text()
    assert f'path    = "{mirror.resolve()}"' in text
    # Mirrored providers come from the folder; every other provider goes direct.
    both = '["registry.terraform.io/hashicorp/aws", "registry.terraform.io/hashicorp/random"]'
    assert f"include = {both}" in text
    assert f"exclude = {both}" in text


LOCK = """# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.100.0"
  constraints = ">= 5.40.0, < 6.0.0"
  hashes = [
    "h1:edXOJWE4ORX8Fm+dpVpICzMZJat4AX0VRCAy/xkcOc0=",
  ]
}

provider "registry.terraform.io/hashicorp/tls" {
  version = "4.0.6"
  hashes = [
    "h1:dYSb3V94K5dDMtrBRLPzBpkMTPn+3cXZ/kIJdtFL+2M=",
    "zh:10de0d8af02f2e578101688fd334da3849f56ea91b0d9bd5b1f7a243417fdda8",
  ]
}
"""


def test_a_mirrored_provider_loses_its_hashes_and_a_registry_provider_keeps_them(tmp_path: Path) -> None:
    lock = tmp_path / ".terraform.lock.hcl"
    lock.write_text(LOCK)
    assert drop_mirrored_hashes(lock, ["registry.terraform.io/hashicorp/aws"])
    text = lock.read_text()
    aws, tls = text.split('provider "registry.terraform.io/hashicorp/tls"')
    assert "hashes" not in aws and 'version     = "5.100.0"' in aws and "constraints" in aws
    assert '"h1:dYSb3V94K5dDMtrBRLPzBpkMTPn+3cXZ/kIJdtFL+2M=",\n    "zh:10de' in tls
    assert not drop_mirrored_hashes(lock, ["registry.terraform.io/hashicorp/aws"])  # nothing left
    assert not drop_mirrored_hashes(tmp_path / "missing.hcl", ["registry.terraform.io/hashicorp/aws"])


def test_mirror_setting_that_is_not_a_folder_is_refused(
    labkit_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABKIT_TF_PLUGIN_MIRROR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not a folder"):
        cli_config_file()


def test_missing_terraform_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TerraformNotFoundError) as info:
        terraform_binary()
    assert "Install Terraform 1.6" in str(info.value)
    with pytest.raises(TerraformNotFoundError):
        Terraform(Path("."), target=sandbox("http://127.0.0.1:1"))


def test_missing_root_module_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TerraformError, match="does not exist"):
        Terraform(tmp_path / "nope", target=sandbox("http://127.0.0.1:1"))


def test_terraform_env_carries_target_mirror_and_data_dir(
    labkit_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABKIT_TF_PLUGIN_MIRROR", str(make_mirror(tmp_path / "mirror")))
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:4566"), data_dir=tmp_path / "data")
    env = tf._env()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["TF_CLI_CONFIG_FILE"] == str(labkit_home / "terraform.rc")
    assert env["TF_DATA_DIR"] == str(tmp_path / "data")
    assert env["TF_IN_AUTOMATION"] == "1"


def test_terraform_runs_with_labkit_s_gc_target_unless_the_user_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:4566"))
    assert tf._env()["GOGC"] == GO_GC_PERCENT != "100"
    monkeypatch.setenv("GOGC", "150")
    assert tf._env()["GOGC"] == "150"


def test_resource_changes_are_parsed() -> None:
    entries = [
        {"address": "aws_vpc.this", "type": "aws_vpc", "change": {"actions": ["create"]}},
        {"address": "aws_lb_listener.http", "type": "aws_lb_listener", "change": {"actions": ["update"]}},
        {"address": "aws_lb.this", "type": "aws_lb", "change": {"actions": ["delete", "create"]}},
        {"address": "aws_s3_bucket.x", "type": "aws_s3_bucket", "change": {"actions": ["no-op"]}},
    ]
    changes = _changes(entries)
    assert [c.action for c in changes] == ["create", "update", "replace"]
    plan = PlanResult(exit_code=2, changes=changes, drift=[], plan_file=None)
    assert plan.has_changes
    assert plan.summary() == "1 to add, 1 to change, 1 to destroy (1 replaced)"
    drifted = [ResourceChange("a.b", ("update",))]
    # As Terraform's own output: drift is news only in a refresh-only plan.
    assert PlanResult(0, [], drifted, None).summary() == "No changes."
    assert PlanResult(0, [], drifted, None, refresh_only=True).summary() == "1 resource(s) drifted."
    assert PlanResult(0, [], [], None, refresh_only=True).summary() == "No drift."


def test_a_plans_stream_gives_its_changes_without_show() -> None:
    def event(kind: str, addr: str, action: str) -> dict[str, object]:
        resource = {"addr": addr, "resource_type": addr.split(".")[-2]}
        return {"type": kind, "change": {"resource": resource, "action": action}}

    events = [
        event("planned_change", "module.a.aws_lb.this", "replace"),
        event("planned_change", "aws_vpc.this", "create"),
        event("planned_change", "aws_s3_bucket.moved", "move"),  # moved, else unchanged
        event("planned_change", "aws_s3_bucket.imported", "import"),  # imported, else unchanged
        event("planned_change", "data.aws_ami.x", "read"),
        event("planned_change", "aws_iam_role.old", "remove"),  # a removed block: forgotten
        event("resource_drift", "aws_lb_listener.http", "update"),
        {"type": "change_summary", "changes": {"add": 2}},
    ]
    changes = _streamed_changes(events, "planned_change")
    assert [(c.address, c.action, c.resource_type) for c in changes] == [
        ("aws_iam_role.old", "forget", "aws_iam_role"),
        ("aws_vpc.this", "create", "aws_vpc"),
        ("data.aws_ami.x", "read", "aws_ami"),
        ("module.a.aws_lb.this", "replace", "aws_lb"),
    ]
    assert [c.address for c in _streamed_changes(events, "resource_drift")] == ["aws_lb_listener.http"]
    # No plan file to read: the whole plan is empty rather than an error.
    assert PlanResult(2, changes, [], None).raw == {}


def test_diagnostics_and_progress_lines_are_readable() -> None:
    diag = {
        "severity": "error",
        "summary": "Invalid value for variable",
        "detail": "green_weight must be between 0 and 100.",
        "range": {"filename": "variables.tf", "start": {"line": 12}},
    }
    assert _diagnostic_line(diag) == (
        "Error: Invalid value for variable (variables.tf:12)\n  green_weight must be between 0 and 100."
    )
    assert _progress_line({"type": "apply_complete", "@message": "aws_vpc.this: Creation complete"}) == (
        "aws_vpc.this: Creation complete"
    )
    assert _progress_line({"type": "version", "@message": "Terraform 1.11.4"}) is None
    drift = {"type": "resource_drift", "@message": "aws_s3_bucket.x: Drift detected (update)"}
    assert _progress_line(drift) is None  # as in Terraform's own plan output
    assert _progress_line(drift, show_drift=True) == "aws_s3_bucket.x: Drift detected (update)"
    # A warning is a line too, its detail in full: Terraform's own output never drops one.
    warning = {"severity": "warning", "summary": "Argument is deprecated", "detail": "Use x.\n\n  instead"}
    assert _progress_line({"type": "diagnostic", "diagnostic": warning}) == (
        "Warning: Argument is deprecated\n  Use x.\n\n    instead"
    )


FAKE_TERRAFORM = """#!{python}
# A stand-in for the terraform binary: records its arguments, answers as Terraform 1.x would.
import json, os, sys
with open(os.environ["FAKE_TERRAFORM_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "init":
    # What a real init leaves in the data dir: providers, the backend it recorded, the modules.
    data = os.environ.get("TF_DATA_DIR", ".terraform")
    os.makedirs(os.path.join(data, "providers"), exist_ok=True)
    os.makedirs(os.path.join(data, "modules"), exist_ok=True)
    open(os.path.join(data, "terraform.tfstate"), "w").write("{{}}")
    modules = [{{"Key": "", "Source": "", "Dir": "."}}, {{"Key": "app", "Source": "../mod", "Dir": "../mod"}}]
    open(os.path.join(data, "modules", "modules.json"), "w").write(json.dumps({{"Modules": modules}}))
if sys.argv[1] == "apply":
    summary = {{"add": 0, "change": 1, "remove": 0, "operation": "apply"}}
    print(json.dumps({{"type": "change_summary", "@message": "Apply complete!", "changes": summary}}))
    if os.environ.get("FAKE_OUTPUTS"):
        outputs = json.loads(os.environ["FAKE_OUTPUTS"])
        print(json.dumps({{"type": "outputs", "@message": "Outputs: 1", "outputs": outputs}}))
elif sys.argv[1] == "output":
    print(json.dumps({{"green_weight": {{"value": 10}}}}))
"""


@pytest.fixture
def fake_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LABKIT_TERRAFORM pointed at :data:`FAKE_TERRAFORM`; returns the log of its command lines."""
    binary = tmp_path / "terraform"
    binary.write_text(FAKE_TERRAFORM.format(python=sys.executable))
    binary.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("LABKIT_TERRAFORM", str(binary))
    monkeypatch.setenv("FAKE_TERRAFORM_LOG", str(log))
    monkeypatch.delenv("LABKIT_TF_PLUGIN_MIRROR", raising=False)
    return log


def _apply_args(log: Path) -> list[str]:
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    applies = [args for args in calls if args[0] == "apply"]
    assert len(applies) == 1, calls
    return list(applies[0])


def test_apply_skips_the_refresh_only_when_asked(
    labkit_home: Path, fake_terraform: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    tf = Terraform(root, target=sandbox("http://127.0.0.1:1"), reporter=None)

    result = tf.apply(variables={"green_weight": 10}, refresh=False)
    args = _apply_args(fake_terraform)
    assert "-refresh=false" in args
    assert any(a.startswith("-var-file=") for a in args)  # the variables still go with it
    assert (result.changed, result.outputs) == (1, {"green_weight": 10})

    fake_terraform.unlink()
    tf.apply(variables={"green_weight": 10})
    assert not any(a.startswith("-refresh") for a in _apply_args(fake_terraform))


@pytest.mark.parametrize(
    ("reported", "commands", "outputs"),
    [
        # Terraform's own JSON: {"name": {"sensitive": ..., "type": ..., "value": ...}}
        (
            {"green_weight": {"sensitive": False, "type": "number", "value": 20}},
            ["apply"],
            {"green_weight": 20},
        ),
        # a sensitive output has no value in the apply's JSON: `terraform output` has it
        ({"token": {"sensitive": True, "type": "string"}}, ["apply", "output"], {"green_weight": 10}),
        # no outputs event (a root with no outputs, an older Terraform): `terraform output` too
        (None, ["apply", "output"], {"green_weight": 10}),
    ],
)
def test_an_apply_takes_its_outputs_from_its_own_json(
    labkit_home: Path,
    fake_terraform: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reported: dict[str, object] | None,
    commands: list[str],
    outputs: dict[str, object],
) -> None:
    if reported is not None:
        monkeypatch.setenv("FAKE_OUTPUTS", json.dumps(reported))
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), reporter=None)
    result = tf.apply(variables={"green_weight": 20}, refresh=False)
    assert [args[0] for args in tf.commands] == commands
    assert result.outputs == outputs
    assert tf.destroy().outputs == {}  # a destroy leaves none, and asks for none
    assert [args[0] for args in tf.commands[len(commands) :]] == ["apply"]


def test_a_saved_plan_cannot_be_applied_without_refresh(
    labkit_home: Path, fake_terraform: Path, tmp_path: Path
) -> None:
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), reporter=None)
    with pytest.raises(TerraformError, match="saved plan already fixes"):
        tf.apply(plan_file=tmp_path / "plan.tfplan", refresh=False)
    assert not fake_terraform.exists()  # refused before Terraform ran


# -- Terraform runs in its own session, its output in files: a slow, loud or interrupted fake --

SLOW_TERRAFORM = """#!{python}
# A stand-in for terraform apply: says its session, then works until done or SIGINT, as Terraform
# does: the first SIGINT is a graceful stop that still "saves state" before exiting 1.
import json, os, signal, sys, time
mode = os.environ["FAKE_MODE"]
out = os.environ["FAKE_TERRAFORM_LOG"]
def say(message):
    print(json.dumps({{"type": "text", "@message": message}}), flush=True)
def stop(signum, frame):
    say("Interrupt received. Gracefully shutting down...")
    time.sleep(0.5)  # finishing the resource in flight
    with open(out, "a") as log:
        log.write("state saved after interrupt\\n")
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
say(f"session {{os.getsid(0)}}")
if mode == "loud":
    sys.stderr.write("panic: provider crashed\\n" + "goroutine trace line\\n" * 200_000)
    sys.stderr.flush()
    sys.exit(1)
if sys.argv[1] == "output":
    print("{{}}")
    sys.exit(0)
for _ in range(int(os.environ.get("FAKE_SECONDS", "30")) * 10):
    time.sleep(0.1)
with open(out, "a") as log:
    log.write("finished\\n")
print(json.dumps({{"type": "change_summary", "@message": "Apply complete!", "changes": {{"change": 1}}}}))
"""


@pytest.fixture
def slow_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "terraform"
    binary.write_text(SLOW_TERRAFORM.format(python=sys.executable))
    binary.chmod(0o755)
    log = tmp_path / "done.log"
    log.touch()
    monkeypatch.setenv("LABKIT_TERRAFORM", str(binary))
    monkeypatch.setenv("FAKE_TERRAFORM_LOG", str(log))
    monkeypatch.delenv("LABKIT_TF_PLUGIN_MIRROR", raising=False)
    return log


def test_a_large_stderr_does_not_deadlock_and_reaches_the_error(
    labkit_home: Path, slow_terraform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "loud")
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), data_dir=tmp_path / "data", reporter=None)
    with pytest.raises(TerraformError) as info:
        tf.apply(variables={"green_weight": 10})  # 4 MB of stderr, far beyond a pipe's 64 KB
    assert "panic: provider crashed" in "\n".join(info.value.diagnostics)
    assert list((tmp_path / "data" / "logs").iterdir()) == []  # the logs go once read


def test_an_interrupt_is_passed_on_and_terraform_saves_state_before_labkit_raises(
    labkit_home: Path, slow_terraform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "slow")
    lines: list[str] = []
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), reporter=lines.append)
    polls: list[float] = []

    def interrupt_once() -> None:
        # What Ctrl-C (or a Jupyter interrupt) does to labkit's main thread while it follows.
        polls.append(time.monotonic())
        if len(polls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tf.apply(variables={"green_weight": 10}, while_running=interrupt_once)
    # labkit waited for Terraform's graceful stop to finish before raising.
    assert slow_terraform.read_text() == "state saved after interrupt\n"
    assert any("Gracefully shutting down" in line for line in lines)
    assert any("asked terraform" in line and "to stop gracefully" in line for line in lines)
    # Terraform ran in a session of its own: a terminal's Ctrl-C reaches labkit only.
    session = next(int(line.split("session ")[1]) for line in lines if "session " in line)
    assert session != os.getsid(0)


def test_a_timeout_stops_terraform_gracefully_and_says_so(
    labkit_home: Path, slow_terraform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "slow")
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), reporter=None)
    started = time.monotonic()
    with pytest.raises(TerraformError, match="timed out after 1 s"):
        tf._stream(["apply", "-json"], what="apply", timeout_s=1)
    assert time.monotonic() - started < 20
    assert slow_terraform.read_text() == "state saved after interrupt\n"


def test_a_failing_poll_stops_terraform_gracefully_and_raises_once_it_exited(
    labkit_home: Path, slow_terraform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the deploy controller's fence after the state lock does when its lock was taken over.
    monkeypatch.setenv("FAKE_MODE", "slow")
    tf = Terraform(tmp_path, target=sandbox("http://127.0.0.1:1"), reporter=None)

    polls: list[int] = []

    def lost() -> None:
        polls.append(1)
        if len(polls) == 2:  # a second in: Terraform holds the state lock by then
            raise DeploymentLockLostError("taken over by someone else")

    with pytest.raises(DeploymentLockLostError):
        tf.apply(variables={"green_weight": 10}, while_running=lost)
    assert slow_terraform.read_text() == "state saved after interrupt\n"


def test_init_is_skipped_until_the_root_a_module_the_lock_file_or_the_backend_changes(
    labkit_home: Path, fake_terraform: Path, tmp_path: Path
) -> None:
    root, module = tmp_path / "root", tmp_path / "mod"
    for folder in (root, module):
        folder.mkdir()
        (folder / "main.tf").write_text("# v1\n")
    tf = Terraform(root, target=sandbox("http://127.0.0.1:1"), data_dir=tmp_path / "data", reporter=None)
    settings = {"bucket": "b", "key": "k"}

    def init(**changes: str) -> bool:
        return tf.init(backend_config={**settings, **changes}, if_changed=True)

    assert init() is True  # nothing stamped yet
    assert init() is False
    (module / "main.tf").write_text("# v2\n")  # a module the last init installed (modules.json)
    assert init() is True and init() is False
    (root / ".terraform.lock.hcl").write_text("# providers\n")
    assert init() is True and init() is False
    assert init(key="other") is True and init() is True
    (tmp_path / "data" / "terraform.tfstate").unlink()  # the recorded backend is gone
    assert init() is True and init() is False
    (tmp_path / "unrelated.tf").write_text("# not the root's, nor a module's\n")
    assert init() is False
    inits = [json.loads(line)[0] for line in fake_terraform.read_text().splitlines()]
    assert inits == ["init"] * 6 == [args[0] for args in tf.commands]
