"""The staging stack, applied with real Terraform to the sandbox, serves like AWS would (issue 4).

Everything is real: Terraform applies the repository's staging root to the sandbox, the fleets'
instances run the uploaded release under gunicorn, and requests go through the sandbox's load
balancer at the URL labkit maps from the ALB's DNS name.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from urllib.parse import urlsplit

import pytest

from labkit import sandbox as sandbox_service
from tests.conftest import BLUE_SERVES_1_0_0, StagingStack, target_states, wait_for

pytestmark = pytest.mark.integration


def get_colors(url: str, count: int) -> Counter[tuple[str, str]]:
    """``count`` GETs of ``/`` over one keep-alive connection: (color, version) -> answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    seen: Counter[tuple[str, str]] = Counter()
    try:
        for _ in range(count):
            conn.request("GET", "/")
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            seen[(body["color"], body["version"])] += 1
    finally:
        conn.close()
    return seen


def all_healthy(staging: StagingStack, color: str, count: int) -> bool:
    states = target_states(staging.target, str(staging.outputs[f"{color}_target_group_arn"]))
    return len(states) == count and set(states.values()) == {("healthy", None)}


def test_a_stack_built_before_the_composition_module_plans_no_changes_after_it(
    staging_stack: StagingStack,
) -> None:
    """The fixture built staging from the root before terraform/modules/bluegreen_environment, then
    planned the current root on that state: the moved blocks carry every resource over as it is."""
    plan = staging_stack.switch_plan
    assert plan.changes == [], [(c.address, c.action) for c in plan.changes]
    outputs = plan.raw.get("output_changes", {})
    # Outputs younger than that root (vpc_cidr, and composition: the release the state was applied
    # from) are added; every other output, and every resource, stays as it was.
    added = {name for name, c in outputs.items() if c["actions"] == ["create"]}
    assert added == {"vpc_cidr", "composition"}, added
    assert all(c["actions"] == ["no-op"] for name, c in outputs.items() if name not in added), outputs
    managed = [rc for rc in plan.raw["resource_changes"] if rc.get("mode") == "managed"]
    moved = {rc.get("previous_address", ""): rc["address"] for rc in managed}
    assert moved["module.alb.aws_lb.this"] == "module.environment.module.alb.aws_lb.this"
    assert moved['module.fleet["blue"].aws_autoscaling_group.this'] == (
        'module.environment.module.fleet["blue"].aws_autoscaling_group.this'
    )
    # Every resource moved, each to the same place inside module.environment.
    assert len(moved) == len(managed) > 20
    assert all(new == f"module.environment.{old}" for old, new in moved.items())
    # The fixture's apply recorded the moves: only the new addresses are left in state (and the
    # root's own data sources, which find the project's key for staging's alarm topic).
    left = [a for a in staging_stack.stack().resources() if not a.startswith("data.")]
    assert left and all(a.startswith("module.environment.") for a in left), left


def test_the_alb_url_answers_from_the_app_with_color_and_version(staging_stack: StagingStack) -> None:
    staging_stack.stack().apply(BLUE_SERVES_1_0_0)
    wait_for("blue healthy", lambda: all_healthy(staging_stack, "blue", 2), timeout_s=60)
    assert staging_stack.url.startswith("http://127.0.0.1:")
    assert get_colors(staging_stack.url, 20) == {("blue", "1.0.0"): 20}


def test_green_weight_10_sends_a_tenth_of_2000_requests_to_green(staging_stack: StagingStack) -> None:
    staging = staging_stack.stack()
    staging.apply({**BLUE_SERVES_1_0_0, "green_version": "1.1.0", "green_capacity": 1, "green_weight": 10})
    wait_for("green healthy", lambda: all_healthy(staging_stack, "green", 1), timeout_s=60)
    seen = get_colors(staging_stack.url, 2000)
    assert set(seen) == {("blue", "1.0.0"), ("green", "1.1.0")}
    share = seen[("green", "1.1.0")] / 2000
    assert 0.08 <= share <= 0.12, seen
    # Terraform's state is what serves: a plan of the same inputs changes nothing.
    assert not staging.plan().has_changes
    staging.apply(BLUE_SERVES_1_0_0)


def test_after_down_and_up_the_stack_its_state_and_its_traffic_are_back(
    staging_stack: StagingStack,
) -> None:
    staging = staging_stack.stack()
    staging.apply(BLUE_SERVES_1_0_0)
    url = staging_stack.url
    wait_for("blue healthy", lambda: all_healthy(staging_stack, "blue", 2), timeout_s=60)

    sandbox_service.down()
    assert not sandbox_service.status().running
    sandbox_service.up()

    # The Terraform state (in the sandbox's S3) and the resources it describes are both back.
    again = staging_stack.stack()
    assert again.deployment()["blue_version"] == "1.0.0"
    assert not again.plan().has_changes
    # The instances' apps start again, and the ALB answers at the same URL.
    wait_for("blue healthy again", lambda: all_healthy(staging_stack, "blue", 2), timeout_s=90)
    assert staging_stack.target.alb_url(str(staging_stack.outputs["alb_dns_name"])) == url
    assert get_colors(url, 20) == {("blue", "1.0.0"): 20}
