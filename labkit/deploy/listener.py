"""The listener's weights set through the ELBv2 API: the sub-second half of a rollback.

A Terraform apply of the weights takes seconds (the provider starts, the state is locked, read and
written); the ``ModifyListener`` call that apply ends up making takes milliseconds. On a failed gate
the controller makes that call itself first, so users stop reaching the bad release at once, then
applies the same weights with Terraform so the state, the ledger and the live listener agree (that
apply then finds the listener as configured and changes nothing on it).

The action written is the one the ``alb`` module configures (a forward to both target groups,
stickiness off with a 1 s duration, order 1 as the provider numbers a listener's one action), so
Terraform's refresh reads back exactly its configuration: ``labkit stack drift`` then names only the
weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from labkit.deploy.colors import COLORS, Color
from labkit.errors import DeployError
from labkit.target import Target


def forward_action(target_groups: Mapping[Color, str], weights: Mapping[Color, int]) -> dict[str, Any]:
    """The listener's default action as the alb module writes it, with ``weights`` per color."""
    return {
        "Type": "forward",
        "Order": 1,
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": target_groups[color], "Weight": int(weights[color])} for color in COLORS
            ],
            "TargetGroupStickinessConfig": {"Enabled": False, "DurationSeconds": 1},
        },
    }


def set_weights(target: Target, outputs: Mapping[str, Any], weights: Mapping[Color, int]) -> None:
    """Point the environment's serving listener at ``weights`` (percent per color) with one API call.

    ``outputs`` are the environment's Terraform outputs (``listener_arn`` and the two target group
    ARNs). Raises :class:`DeployError` when the call fails; the caller then falls back to Terraform.
    """
    if sum(weights.values()) != 100:
        raise DeployError(
            f"The weights {dict(weights)} do not add up to 100.",
            hint="Give each color its percent of the traffic, e.g. blue 100 and green 0.",
        )
    try:
        listener = str(outputs["listener_arn"])
        groups: dict[Color, str] = {color: str(outputs[f"{color}_target_group_arn"]) for color in COLORS}
    except KeyError as missing:
        raise DeployError(
            f"The environment's outputs have no {missing}.",
            hint="Apply the environment once with this version of labkit (`labkit stack apply ENV`).",
        ) from None
    try:
        target.client("elbv2").modify_listener(
            ListenerArn=listener, DefaultActions=[forward_action(groups, weights)]
        )
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(
            f"Could not set the listener's weights through the ELBv2 API: {exc}",
            hint="The Terraform apply that follows sets them; check the listener with "
            "`labkit deploy status ENV`.",
        ) from exc
