"""The deploy runbook's steps (``runbooks/deploy.ipynb``): a release deployed blue/green by the same
controller as ``labkit deploy``, with a diagnosis before it and independent checks after it.

The deploy workflow (``.github/workflows/deploy.yml``) runs this runbook with papermill, so that
every deploy leaves an executed notebook (what served before, the plan, the controller's progress,
the checks) and an audit record beside the ledger's deployment record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.deploy.colors import Layout, other
from labkit.deploy.ledger import Ledger
from labkit.deploy.strategy import Strategy, from_name
from labkit.errors import ConfigError, DeploymentFailed
from labkit.infra.stack import Stack
from labkit.ops import recover
from labkit.ops.runbook import Action
from labkit.release.build import check_version, release_exists

Check = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class Before:
    """What the Diagnose section found: the layout serving, and what stands in a deploy's way."""

    layout: Layout
    version: str
    #: The deployment in progress, or the deployment lock's holder, described; None when free.
    busy: str | None

    @property
    def serves_already(self) -> bool:
        """``version`` already takes all the traffic: a deploy would change nothing."""
        serving = self.layout.serving
        return serving is not None and self.layout.versions[serving] == self.version

    def describe(self) -> str:
        serving = self.layout.serving
        now = f"{serving} {self.layout.versions[serving]} serves 100%" if serving else "traffic is split"
        return f"{now} ({self.layout.describe()})" + (f"; {self.busy}" if self.busy else "")


def strategy_from(name: str, *, weights: str = "", bake_s: float = 0.0) -> Strategy:
    """The strategy the runbook's parameters name: ``weights`` as "10,50,100" (canary), ``bake_s``
    the seconds each step bakes (0: the strategy's default)."""
    overrides: dict[str, Any] = {}
    if weights:
        try:
            overrides["weights"] = [int(w) for w in str(weights).split(",")]
        except ValueError:
            raise ConfigError(
                f"weights is {weights!r}.",
                hint='Give the canary steps as whole percentages, e.g. "10,50,100".',
            ) from None
    if bake_s:
        overrides["interval_s" if name == "linear" else "bake_s"] = float(bake_s)
    return from_name(name, **overrides)  # an unknown name raises, listing the strategies


def diagnose(stack: Stack, version: str) -> Before:
    """Read the applied layout and the ledger; refuse a version that is not a published release."""
    check_version(version)
    if not release_exists(stack.target, stack.names.artifact_bucket, version):
        raise ConfigError(
            f"Release {version} is not in the artifact bucket {stack.names.artifact_bucket}.",
            hint=f"Publish it first: `labkit release build {version}`.",
        )
    layout = Layout.from_outputs(stack.deployment())
    ledger = Ledger(stack.target, stack.names.ledger_table)
    busy = None
    if (active := ledger.active(stack.env)) is not None:
        busy = f"deployment {active.id} is in progress ({active.phase}): the deploy-recover runbook ends it"
    elif (holder := ledger.lock_holder(stack.env)) is not None:
        busy = f"the deployment lock is held by {holder.describe()}"
    return Before(layout=layout, version=version, busy=busy)


def actions(stack: Stack, before: Before, strategy: Strategy, *, probe_rate: float = 0.0) -> list[Action]:
    """The Plan: one deploy, or none when the release already serves all the traffic."""
    if before.serves_already:
        return []
    serving = before.layout.serving
    to = other(serving) if serving is not None else "the idle color"
    text = (
        f"Deploy {before.version} to {stack.env}'s {to} by {strategy.describe()}, "
        "rolled back on a failed gate"
    )
    return [Action(text, lambda: deploy(stack, before.version, strategy, probe_rate=probe_rate))]


def deploy(stack: Stack, version: str, strategy: Strategy, *, probe_rate: float = 0.0) -> str:
    """Run the controller; raise :class:`DeploymentFailed` unless ``version`` ends up serving."""
    from labkit.deploy.controller import Controller
    from labkit.deploy.probe import Probe

    controller = Controller(stack.env, stack.target, say=print)
    probe = None
    if probe_rate:
        probe = Probe(controller.alb_url(), rate=probe_rate, allow_remote=not stack.target.is_sandbox).start()
    try:
        record = controller.deploy(version, strategy=strategy, probe=probe)
    finally:
        if probe is not None:
            probe.stop()
    if record.status != "succeeded":
        raise DeploymentFailed(
            f"Deployment {record.id} of {version} ended {record.status.replace('_', ' ')}: {record.reason}",
            hint=f"`labkit ledger {stack.env}` has its timeline; fix the release and deploy again.",
        )
    return f"deployment {record.id}: {version} serves all traffic on {record.to_color}"


def serves(stack: Stack, version: str) -> tuple[bool, str]:
    """``version`` takes all the traffic, as the listener, the state and the ledger agree."""
    ok, detail = recover.one_color_serves(stack)
    if not ok:
        return ok, detail
    layout = Layout.from_outputs(stack.deployment())
    serving = layout.serving
    assert serving is not None  # one_color_serves checked it
    found = layout.versions[serving]
    return found == version, f"{serving} runs {found}" + ("" if found == version else f", not {version}")


def checks(stack: Stack, version: str) -> list[tuple[str, Check]]:
    """The Verify section's checks, each ``(what, check)`` for ``rb.verify``."""
    return [
        (f"{version} serves 100% (ELBv2 listener, state and ledger agree)", lambda: serves(stack, version)),
        ("No deployment lock", lambda: recover.no_deployment_lock(stack)),
        ("No Terraform state lock", lambda: recover.no_state_lock(stack)),
        ("No deployment in progress", lambda: recover.record_final(stack, None)),
    ]  # fmt: skip
