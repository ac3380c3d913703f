"""Auto Scaling's ELB health check, as the sandbox runs it (moto never replaces an instance).

With ``health_check_type = "ELB"``, AWS Auto Scaling treats an InService instance as unhealthy once
any target group of its group reports it ``unhealthy`` and the instance is past the group's health
check grace period; it then terminates the instance and launches a replacement, and
``DescribeScalingActivities`` lists both. Stock moto does neither (SANDBOX-FACTS: a fleet whose
instances failed to start stayed failed for 15 minutes), so the service calls :func:`heal` on every
reconcile pass, with the model lock held, and the mend in :mod:`.mends` answers
``DescribeScalingActivities`` from what :func:`heal` recorded.

Activities are kept as plain dicts on the Auto Scaling backend (attribute :data:`ACTIVITIES`), so
they are saved and restored with the rest of moto's state.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from labkit.sandbox.server.topology import TargetHealthReport

log = logging.getLogger(__name__)

#: The backend attribute holding each group's activities, newest last: {group name: [activity]}.
ACTIVITIES = "labkit_scaling_activities"
#: How many activities a group keeps (AWS keeps six weeks of them; a lab needs the recent ones).
KEEP = 100

#: What the load balancer observed for (target group ARN, target id).
HealthOf = Callable[[str, str], TargetHealthReport | None]


@dataclass(frozen=True)
class Replacement:
    """One instance Auto Scaling replaced because its target group reported it unhealthy."""

    group: str
    terminated: str
    launched: tuple[str, ...]
    reason: str


def heal(health_of: HealthOf, now: datetime | None = None) -> list[Replacement]:
    """Replace every instance that an ELB-checked group should find unhealthy (call with the lock held)."""
    from moto.autoscaling.models import autoscaling_backends

    moment = now or datetime.now(UTC)
    done: list[Replacement] = []
    backend: Any
    for _account, _region, backend in list(autoscaling_backends.iter_backends()):
        for group in list(backend.autoscaling_groups.values()):
            if group.health_check_type != "ELB" or not group.target_group_arns:
                continue
            grace = timedelta(seconds=int(group.health_check_grace_period or 0))
            for state in list(group.instance_states):
                instance = state.instance
                if state.lifecycle_state != "InService" or instance.state != "running":
                    continue
                if moment - _aware(instance.launch_time) < grace:
                    continue
                reason = _unhealthy_reason(health_of, group.target_group_arns, instance.id)
                if reason is not None:
                    done.append(_replace(backend, group, instance.id, reason, moment))
    return done


def _unhealthy_reason(health_of: HealthOf, group_arns: list[str], instance_id: str) -> str | None:
    for arn in group_arns:
        report = health_of(arn, instance_id)
        if report is not None and report.state == "unhealthy":
            return report.description or report.reason or "unhealthy"
    return None


def _replace(backend: Any, group: Any, instance_id: str, reason: str, moment: datetime) -> Replacement:
    before = {state.instance.id for state in group.instance_states}
    # Not decrementing the desired capacity is what makes moto launch the replacement.
    backend.terminate_instance(instance_id, should_decrement=False)
    launched = tuple(sorted({s.instance.id for s in group.instance_states} - before))
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    cause = (
        f"At {stamp} an instance was taken out of service in response to an ELB system health check "
        f"failure ({reason})."
    )
    record(backend, group.name, f"Terminating EC2 instance: {instance_id}", cause, moment)
    for new_id in launched:
        record(
            backend,
            group.name,
            f"Launching a new EC2 instance: {new_id}",
            f"At {stamp} an instance was started in response to a difference between desired and "
            f"actual capacity, increasing the capacity from {group.desired_capacity - 1} to "
            f"{group.desired_capacity}.",
            moment,
        )
    log.warning(
        "auto scaling group %s replaced unhealthy instance %s (%s) with %s",
        group.name,
        instance_id,
        reason,
        ", ".join(launched) or "nothing",
    )
    return Replacement(group=group.name, terminated=instance_id, launched=launched, reason=reason)


def record(
    backend: Any,
    group_name: str,
    description: str,
    cause: str,
    moment: datetime,
    *,
    status_code: str = "Successful",
    status_message: str | None = None,
    details: dict[str, str] | None = None,
) -> None:
    """Keep one scaling activity for ``group_name`` on ``backend`` (successful unless told otherwise;
    a failed one carries AWS's ``StatusMessage``)."""
    activities: dict[str, list[dict[str, Any]]] = getattr(backend, ACTIVITIES, None) or {}
    kept = activities.setdefault(group_name, [])
    activity: dict[str, Any] = {
        "ActivityId": str(uuid.uuid4()),
        "AutoScalingGroupName": group_name,
        "Description": description,
        "Cause": cause,
        "StartTime": moment,
        "EndTime": moment,
        "StatusCode": status_code,
        "Progress": 100,
        "Details": json.dumps(details or {}),
    }
    if status_message is not None:
        activity["StatusMessage"] = status_message
    kept.append(activity)
    del kept[:-KEEP]
    setattr(backend, ACTIVITIES, activities)


def activities(backend: Any, group_names: list[str]) -> list[dict[str, Any]]:
    """The recorded activities of ``group_names`` (all groups when empty), newest first, as AWS lists them."""
    kept: dict[str, list[dict[str, Any]]] = getattr(backend, ACTIVITIES, None) or {}
    chosen = [a for name, items in kept.items() if not group_names or name in group_names for a in items]
    return sorted(chosen, key=lambda a: a["StartTime"], reverse=True)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
