"""Wall time of a healthy canary deploy and of an automated rollback, at the default sandbox settings.

Starts a private sandbox (in a temporary folder, stopped at the end), applies global and staging
with real Terraform (blue serving 1.0.0 on two instances), uploads a healthy release and one that
answers 30 % errors, then deploys them with the default strategy (canary 10/50/100, 5 s bakes,
5 s scale-down delay, the controller's own check traffic at 20 requests/s):

1. the healthy release with the load probe at ``--rate`` through the ALB the whole time: prints
   the deploy's wall time (goal: at most 60 s), each phase's time from the ledger, and the failed
   requests (goal: 0);
2. another healthy release with no traffic but the controller's own check traffic (goal: it
   passes on that evidence);
3. the bad release with no traffic but the check traffic (goal: rolled back);
4. the bad release again under the probe: prints its exposure, from the probe's first bad
   response to its last (goal: at most 10 s), the rollback's listener call and apply times, and
   the failed requests (all within the canary's share).

Before the deploys, ``--parts N`` (default 3) times where a weight step's seconds go, N rounds of
each, on the staging stack just built (no probe running):

- ``cli``: ``terraform version``, the bare start of the Terraform binary;
- ``providers``: ``terraform providers schema -json`` less ``cli``: starting the AWS provider and
  loading its schema, which every plan and apply does;
- ``backend``: ``terraform state pull`` less ``cli``: the S3 backend's round trips to read the state;
- ``init``: ``terraform init -reconfigure`` as a Stack ran it before its first command;
- ``output``: ``terraform output -json``;
- ``apply``: ``terraform apply -refresh=false`` of a changed ``green_weight`` (the command alone);
- ``step``: a weight step as the controller takes it, ``Stack.apply(..., refresh=False)`` with the
  state lock watched, on the controller's Stack, with the Terraform commands it ran;
- ``new-step``: the same on a new Stack (a new controller's first step, e.g. a resumed deploy),
  whose ``init`` is included whenever it runs one;
- inside one such apply, from Terraform's own debug log: each run of the AWS provider (start-up,
  then its work: the first loads its schema, the others validate, plan and apply; Terraform starts
  it anew for each), and the backend's S3 round trips (lock, read, write, unlock).

    .venv/bin/python bench/deploy.py [--rate 100] [--parts 3] [--keep]

Setting up the stack takes about 3 minutes (the ALB alone 60 s); the two deploys about 2 more.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from labkit.deploy import Controller
from labkit.deploy.ledger import Deployment
from labkit.deploy.probe import Probe, summarize
from labkit.deploy.strategy import canary
from labkit.infra.stack import Stack
from labkit.infra.terraform import Terraform, terraform_version
from labkit.release.build import build_release, upload_release

GOOD, GOOD_QUIET, BAD = "1.1.0", "1.1.1", "1.2.0-bad"


def setup(work: Path) -> Controller:
    from labkit import sandbox

    target = sandbox.target()
    started = time.monotonic()
    Stack("global", target, reporter=None).apply()
    bucket = Stack("global", target, reporter=None).names.artifact_bucket
    for version, faults in (("1.0.0", None), (GOOD, None), (GOOD_QUIET, None), (BAD, {"error_rate": 0.3})):
        upload_release(target, bucket, build_release(version, faults, work / version), version)
    controller = Controller("staging", target, say=lambda line: print("  " + line, flush=True))
    controller.stack.apply(
        {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 2, "green_capacity": 0}
    )
    outputs = controller.stack.outputs()
    from labkit.deploy import wait_healthy

    ok, report, _ = wait_healthy(
        target,
        asg_name=outputs["blue_asg_name"],
        target_group_arn=outputs["blue_target_group_arn"],
        wanted=2,
        timeout_s=120,
        say=print,
    )
    if not ok:
        raise SystemExit(f"blue never turned healthy: {report.describe()}")
    print(f"stack ready in {time.monotonic() - started:.0f} s: {controller.layout().describe()}", flush=True)
    return controller


def _timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def _commands(terraform: Terraform) -> list[str]:
    """The Terraform commands the runner ran, if it records them (see Terraform.commands)."""
    return [" ".join(args[:1]) for args in getattr(terraform, "commands", [])]


def terraform_parts(controller: Controller, rounds: int) -> None:
    """Print where a weight step's seconds go: ``rounds`` timings of each part, then their medians."""
    stack = controller.stack
    # Green gets an instance, so that it may take traffic (a precondition); the stack is then
    # initialised, as the controller's is by its first step.
    stack.apply({"green_capacity": 1})
    tf = stack.terraform
    # The runner's own command plumbing, so every part pays the same process and log handling.
    names = ("cli", "schema", "pull", "init", "output", "apply", "step", "new-step")
    parts: dict[str, list[float]] = {name: [] for name in names}
    steps: list[str] = []
    weight = 0

    def step(on: Stack, weight: int) -> float:
        started = time.monotonic()
        on.apply({"green_weight": weight}, refresh=False, on_state_lock=lambda info: None)
        return time.monotonic() - started

    for _ in range(rounds):
        parts["cli"].append(_timed(lambda: tf._run(["version", "-json"], what="version")))
        parts["schema"].append(_timed(lambda: tf._run(["providers", "schema", "-json"], what="schema")))
        parts["pull"].append(_timed(tf.state_pull))
        parts["init"].append(_timed(lambda: tf.init(backend_config=stack.backend_config())))
        parts["output"].append(_timed(tf.output))
        weight = 10 if weight != 10 else 0
        result = stack.apply({"green_weight": weight}, refresh=False)
        parts["apply"].append(result.seconds)
        weight = 10 if weight != 10 else 0
        before = len(_commands(tf))
        parts["step"].append(step(stack, weight))
        steps.append(", ".join(_commands(tf)[before:]) or "(not recorded by this labkit)")
        weight = 10 if weight != 10 else 0
        parts["new-step"].append(step(Stack("staging", stack.target, reporter=None), weight))

    def row(name: str, values: list[float]) -> None:
        runs = " ".join(f"{v:5.2f}" for v in values)
        print(f"   {name:<10} median {statistics.median(values):5.2f} s   runs: {runs}", flush=True)

    print(f"\n0. where a weight step's seconds go (terraform {terraform_version()}, {rounds} rounds)")
    row("cli", parts["cli"])
    row("providers", [s - c for s, c in zip(parts["schema"], parts["cli"], strict=True)])
    row("backend", [p - c for p, c in zip(parts["pull"], parts["cli"], strict=True)])
    for name in ("init", "output", "apply", "step", "new-step"):
        row(name, parts[name])
    print(f"   a step's Terraform commands: {steps[-1]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            weight = 10 if weight != 10 else 0
            anatomy = apply_anatomy(stack, weight, Path(tmp) / f"apply-{index}.log")
            print(f"   inside a step's apply: {anatomy}", flush=True)
    stack.apply({"green_weight": 0, "green_capacity": 0})  # back as it was, refreshed


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def apply_anatomy(stack: Stack, weight: int, log: Path) -> str:
    """One weight step's apply under ``TF_LOG=debug``: its provider runs and backend round trips."""
    os.environ.update(TF_LOG="debug", TF_LOG_PATH=str(log))
    try:
        stack.apply({"green_weight": weight}, refresh=False)
    finally:
        del os.environ["TF_LOG"], os.environ["TF_LOG_PATH"]
    stamps: list[tuple[float, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        if found := _LOG_TIME.match(line):
            stamps.append((pd.Timestamp(found.group(1)).timestamp(), line))
    providers: list[float] = []
    backend = 0.0
    started: float | None = None
    sent: float | None = None
    for at, line in stamps:
        if "provider: starting plugin" in line:
            started = at
        elif "provider: plugin exited" in line and started is not None:
            providers.append(at - started)
            started = None
        elif "backend-s3: HTTP Request Sent" in line:
            sent = at
        elif "backend-s3: HTTP Response Received" in line and sent is not None:
            backend += at - sent
            sent = None
    total = stamps[-1][0] - stamps[0][0] if stamps else 0.0
    runs = " + ".join(f"{p:.2f}" for p in providers)
    return (
        f"{total:.2f} s in all; {len(providers)} provider runs: {runs} = {sum(providers):.2f} s; "
        f"backend S3 round trips {backend:.2f} s"
    )


def run(controller: Controller, version: str, rate: float) -> tuple[Deployment, pd.DataFrame, float]:
    """Deploy ``version`` by the default strategy, under the probe at ``rate`` (0: no probe)."""
    probe = Probe(controller.alb_url(), rate=rate).start() if rate else None
    started = time.monotonic()
    try:
        record = controller.deploy(version, strategy=canary(), probe=probe)
        wall = time.monotonic() - started
        if probe is not None:
            time.sleep(2)
    finally:
        if probe is not None:
            probe.stop()
    return record, probe.results() if probe is not None else pd.DataFrame(), wall


def phase_times(controller: Controller, record: Deployment) -> str:
    return ", ".join(
        f"{e.phase} {e.duration_s:.1f}"
        for e in controller.ledger.events(record.id)
        if e.duration_s is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="probe requests per second")
    parser.add_argument("--parts", type=int, default=3, help="rounds of the Terraform part timings (0: none)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox folder (printed) behind")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-deploy-"))
    os.environ["LABKIT_HOME"] = str(work / "home")
    os.environ["LABKIT_SANDBOX_HOME"] = str(work / "sandbox")
    os.environ.setdefault("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    from labkit import sandbox

    try:
        controller = setup(work)
        if args.parts:
            terraform_parts(controller, args.parts)

        print(
            f"\n1. healthy canary deploy of {GOOD} ({canary().describe()}), probe {args.rate:g}/s", flush=True
        )
        record, frame, wall = run(controller, GOOD, args.rate)
        summary = summarize(frame).loc["all"]
        print(
            f"   {record.status}: wall time {wall:.1f} s; requests {int(summary['requests'])} at "
            f"{summary['rate_rps']:.1f}/s, failed {int(summary['failed'])}\n"
            f"   phases (s): {phase_times(controller, record)}",
            flush=True,
        )

        print(f"\n2. healthy canary deploy of {GOOD_QUIET} with no traffic but the check traffic", flush=True)
        record, _, wall = run(controller, GOOD_QUIET, 0)
        print(f"   {record.status} in {wall:.1f} s: {record.reason}", flush=True)
        print(f"   phases (s): {phase_times(controller, record)}", flush=True)

        print(f"\n3. {BAD} (30 % errors) with no traffic but the check traffic", flush=True)
        record, _, wall = run(controller, BAD, 0)
        print(f"   {record.status} in {wall:.1f} s: {record.reason}", flush=True)

        print(f"\n4. automated rollback of {BAD} under the probe at {args.rate:g}/s", flush=True)
        record, frame, wall = run(controller, BAD, args.rate)
        events = {e.phase: e for e in controller.ledger.events(record.id)}
        failed = frame[~frame["ok"]]
        listener, rollback = events.get("rollback-listener"), events.get("rollback")
        if record.status != "rolled_back" or listener is None or rollback is None or failed.empty:
            raise SystemExit(
                f"expected an automated rollback with failures, got {record.status}: {record.reason}"
            )
        first_bad, last_bad = failed["time"].min(), failed["time"].max()
        canary_share = frame[(frame["time"] >= first_bad) & (frame["time"] <= last_bad)]
        print(
            f"   {record.status}: {record.reason}\n"
            f"   exposure, first bad response to last: {(last_bad - first_bad).total_seconds():.1f} s; "
            f"the listener call {listener.duration_s or 0:.2f} s, "
            f"then the apply {rollback.duration_s or 0:.1f} s; "
            f"deploy wall time {wall:.1f} s\n"
            f"   failed requests {len(failed)} of {len(frame)}, all from "
            f"{sorted(set(zip(failed['color'], failed['version'], strict=True)))}; "
            f"{len(failed) / max(len(canary_share), 1):.1%} of the requests in that window\n"
            f"   phases (s): {phase_times(controller, record)}",
            flush=True,
        )
    finally:
        sandbox.down()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
