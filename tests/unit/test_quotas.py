"""The quota arithmetic the sandbox enforces and quota-check reports: which instances count toward
the On-Demand and the Spot standard vCPU quotas, headroom, and what the runbook requests for a
held-back fleet."""

from __future__ import annotations

import pandas as pd
import pytest

from labkit.infra.quotas import (
    QUOTAS,
    SPOT_VCPUS,
    VCPUS,
    exceeds,
    find,
    headroom,
    is_standard_type,
    market_of,
    standard_vcpus,
    vcpu_quota,
)
from labkit.ops.quotas import HeldBack, QuotaFinding, actions, vcpus_needed
from labkit.target import sandbox


@pytest.mark.parametrize(
    ("kind", "standard"),
    [
        ("t3.micro", True), ("m5.large", True), ("c7g.xlarge", True), ("r6i.2xlarge", True),
        ("z1d.large", True), ("i3.large", True), ("d3.xlarge", True), ("a1.medium", True),
        ("p3.2xlarge", False), ("g4dn.xlarge", False), ("x2gd.large", False), ("f1.2xlarge", False),
        ("inf1.xlarge", False), ("dl1.24xlarge", False), ("hpc6a.48xlarge", False),
        ("trn1.2xlarge", False), ("mac1.metal", False), ("u-6tb1.metal", False),
    ],
)  # fmt: skip
def test_the_standard_bucket_is_a_c_d_h_i_m_r_t_z_less_the_families_with_quotas_of_their_own(
    kind: str, standard: bool
) -> None:
    assert is_standard_type(kind) is standard


def test_only_running_or_pending_on_demand_standard_instances_count() -> None:
    vcpus = {"t3.micro": 2, "m5.xlarge": 4, "p3.2xlarge": 8}
    instances = [
        ("t3.micro", "running", None),
        ("t3.micro", "pending", None),
        ("m5.xlarge", "running", None),
        ("t3.micro", "stopped", None),
        ("t3.micro", "terminated", None),
        ("t3.micro", "running", "spot"),
        ("p3.2xlarge", "running", None),
    ]
    assert standard_vcpus(instances, vcpus) == 2 + 2 + 4
    assert standard_vcpus(instances, vcpus, spot=True) == 2  # the spot one alone, on the Spot quota


def test_a_fleet_on_spot_capacity_counts_toward_the_spot_quota() -> None:
    assert vcpu_quota("spot") is SPOT_VCPUS and vcpu_quota("on-demand") is VCPUS
    assert SPOT_VCPUS.code == "L-34B43A08" and SPOT_VCPUS.aws_default == 5
    assert market_of({"InstanceType": "t4g.micro", "InstanceMarketOptions": {"MarketType": "spot"}}) == "spot"
    assert market_of({"InstanceType": "t3.micro"}) == "on-demand"


def test_headroom_and_what_goes_past_a_quota() -> None:
    assert headroom(5, 4) == 1 and headroom(5, 7) == 0
    assert not exceeds(5, 3, 2) and exceeds(5, 4, 2)
    assert exceeds(0, 0, 1)  # a quota of 0 refuses the first


def test_the_catalogue_names_each_quota_by_its_service_quotas_code() -> None:
    codes = [q.code for q in QUOTAS]
    assert codes == ["L-1216C47A", "L-34B43A08", "L-0263D0A3", "L-F678F1CE", "L-53DA6B97", "L-B22855CB"]
    assert find("L-1216C47A") is VCPUS and VCPUS.aws_default == 5
    with pytest.raises(KeyError):
        find("L-00000000")


def finding(
    value: float,
    usage: float,
    held: list[HeldBack],
    *,
    open_requests: int = 0,
    spot: tuple[float, float] = (64, 0),
) -> QuotaFinding:
    """A finding whose On-Demand quota is ``value`` with ``usage``, and its Spot quota ``spot``."""
    rows = [
        {"quota": quota.name, "code": quota.code, "service": "ec2", "value": v, "usage": u,
         "headroom": headroom(v, u), "counts": quota.counts}
        for quota, (v, u) in ((VCPUS, (value, usage)), (SPOT_VCPUS, spot))
    ]  # fmt: skip
    pending = {"QuotaCode": VCPUS.code, "DesiredValue": 99.0, "Status": "PENDING"}
    requests = tuple(dict(pending) for _ in range(open_requests))
    return QuotaFinding(pd.DataFrame(rows), tuple(held), deploy_room_vcpus=6, open_requests=requests)


BLUE = HeldBack("bglab-staging-blue", 3, 2, "t3.micro", vcpus_each=2, reason="vCPU limit")
SPOT_GREEN = HeldBack(
    "bglab-staging-green", 2, 0, "t4g.micro", vcpus_each=2, reason="Max spot instance count exceeded.",
    market="spot",
)  # fmt: skip
TARGET = sandbox("http://127.0.0.1:1")


def test_a_held_back_fleet_asks_for_what_runs_what_it_lacks_and_a_deploys_room() -> None:
    assert BLUE.missing_vcpus == 2
    assert vcpus_needed(4, 2, 6) == 12
    (action,) = actions(TARGET, finding(4, 4, [BLUE]))
    assert "L-1216C47A" in action.description and "= 12 vCPUs (now 4" in action.description
    (asked,) = actions(TARGET, finding(4, 4, [BLUE]), vcpus=64)
    assert "= 64 vCPUs" in asked.description
    said = str(finding(4, 4, [BLUE]))
    assert "at its quota: Running On-Demand Standard" in said and "(ec2 L-1216C47A), 4 of 4 vCPUs" in said
    assert "held back: bglab-staging-blue: 2 of 3 running (t3.micro)" in said
    quiet = str(finding(64, 4, [])).splitlines()
    assert quiet == ["every quota has headroom (2 read)", "no fleet is held back"]


def test_a_spot_fleet_held_back_asks_for_the_spot_quota_only() -> None:
    (action,) = actions(TARGET, finding(64, 4, [SPOT_GREEN], spot=(4, 4)))
    assert "L-34B43A08" in action.description and "L-1216C47A" not in action.description
    assert "= 14 vCPUs (now 4; bglab-staging-green lack 4 vCPUs)" in action.description  # 4 + 4 + 6
    both = actions(TARGET, finding(4, 4, [BLUE, SPOT_GREEN], spot=(4, 4)))
    assert [a.description.split()[2] for a in both] == ["L-1216C47A", "L-34B43A08"]
    assert "held back: bglab-staging-green: 0 of 2 running (t4g.micro, spot)" in str(
        finding(64, 4, [SPOT_GREEN], spot=(4, 4))
    )


def test_nothing_is_requested_without_a_held_back_fleet_a_need_or_while_a_request_is_open() -> None:
    assert actions(TARGET, finding(4, 4, [])) == []
    assert actions(TARGET, finding(64, 4, [BLUE])) == []  # room already: Auto Scaling's next try launches
    assert actions(TARGET, finding(4, 4, [BLUE], open_requests=1)) == []
