"""labkit.infra.drift: read-back differences normalised away, drift named attribute by attribute.

The fixture is the refresh-only plan (``terraform show -json``, trimmed to the parts drift reads) of
a staging applied a moment before on the sandbox: Terraform lists 23 of its resources, none drifted.
The injected cases change that document as the drill's API calls change the cloud.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from labkit.infra.drift import AttributeDrift, attribute_drift, drift_from_plan, is_unset, same

FIXTURES = Path(__file__).parents[1] / "fixtures" / "drift"
FRESH = FIXTURES / "staging-fresh-refresh-only.json"
LISTENER = "module.environment.module.alb.aws_lb_listener.http"
ALB_SG = "module.environment.module.alb.aws_security_group.alb"
BLUE_TG = 'module.environment.module.alb.aws_lb_target_group.this["blue"]'


@pytest.fixture()
def fresh() -> dict[str, Any]:
    return dict(json.loads(FRESH.read_text()))


def after(plan: dict[str, Any], address: str) -> dict[str, Any]:
    """The read-back values of ``address`` in the plan's drift (added as unchanged if not listed)."""
    for entry in plan["resource_drift"]:
        if entry["address"] == address:
            return dict(entry["change"]["after"])
    raise AssertionError(f"{address} is not in the fixture's drift")


def test_a_fresh_stack_has_no_drift_though_terraform_lists_23_resources(fresh: dict[str, Any]) -> None:
    assert len(fresh["resource_drift"]) == 23
    report = drift_from_plan("staging", fresh)
    assert not report.has_drift, report.lines()
    assert report.read_back_only == 23
    assert report.lines() == [
        "staging: no drift (23 more listed by Terraform only for read-back differences)"
    ]


def test_a_fresh_global_has_no_drift_its_buckets_settings_are_separate_resources() -> None:
    plan = json.loads((FIXTURES / "global-fresh-refresh-only.json").read_text())
    listed = {e["address"] for e in plan["resource_drift"]}
    assert "module.state_backend.aws_s3_bucket.state" in listed
    report = drift_from_plan("global", plan)
    assert not report.has_drift, report.lines()
    assert report.read_back_only == len(listed)


@pytest.mark.parametrize(
    ("before", "after_value", "equal"),
    [
        (None, [], True),
        (None, {}, True),
        (None, "", True),
        (None, 0, True),
        ("", False, True),
        (None, 2, False),
        (0, 100, False),
        (
            [{"arn": "a", "weight": 1}, {"arn": "b", "weight": 0}],
            [{"arn": "b", "weight": 0}, {"arn": "a", "weight": 1}],
            True,
        ),
        ([1, 2, 2], [2, 1, 1], False),
        ('{"a": 1, "b": [1]}', '{"b": [1],\n "a": 1}', True),
        ('{"a": 1}', '{"a": 2}', False),
        ({"ipv4_addresses": None, "period": None}, {"ipv4_addresses": [], "period": 0}, True),
    ],
)
def test_same_setting(before: Any, after_value: Any, equal: bool) -> None:
    assert same(before, after_value) is equal
    assert same(after_value, before) is equal


def test_unset_values() -> None:
    unset: tuple[Any, ...] = (None, "", 0, False, [], {})
    settings: tuple[Any, ...] = ("x", 1, True, [None], {"a": None})
    assert all(is_unset(v) for v in unset)
    assert not any(is_unset(v) for v in settings)


def test_blocks_with_an_identity_are_matched_by_it() -> None:
    before = [{"arn": "tg/blue", "weight": 100}, {"arn": "tg/green", "weight": 0}]
    now = [{"arn": "tg/green", "weight": 100}, {"arn": "tg/blue", "weight": 0}]
    assert list(attribute_drift({"target_group": before}, {"target_group": now})) == [
        AttributeDrift("target_group[arn=tg/blue].weight", 100, 0),
        AttributeDrift("target_group[arn=tg/green].weight", 0, 100),
    ]


def test_list_elements_added_and_removed_are_named_by_their_index() -> None:
    changes = list(attribute_drift({"x": [{"p": 1}, {"p": 2}]}, {"x": [{"p": 3}, {"p": 2}, {"p": 4}]}))
    assert changes == [
        AttributeDrift("x[0]", {"p": 1}, None),
        AttributeDrift("x[0]", None, {"p": 3}),
        AttributeDrift("x[2]", None, {"p": 4}),
    ]
    one = list(attribute_drift({"x": [{"p": 1, "q": 5}, {"p": 2}]}, {"x": [{"p": 2}, {"p": 1, "q": 6}]}))
    assert one == [AttributeDrift("x[0].q", 5, 6)]  # one element changed: what inside it


def test_listener_weights_changed_through_the_api(fresh: dict[str, Any]) -> None:
    listener = after(fresh, LISTENER)
    groups = listener["default_action"][0]["forward"][0]["target_group"]
    arns = {g["weight"]: g["arn"] for g in groups}
    for group in groups:
        group["weight"] = 100 - group["weight"]
    groups.reverse()  # the API answers in any order
    _set_after(fresh, LISTENER, listener)
    report = drift_from_plan("staging", fresh)
    assert [r.address for r in report.resources] == [LISTENER]
    path = "default_action[0].forward[0].target_group[arn={}].weight"
    assert report.resources[0].attributes == (
        AttributeDrift(path.format(arns[100]), 100, 0),
        AttributeDrift(path.format(arns[0]), 0, 100),
    )
    assert report.lines()[-1] == (
        "staging: drift in 1 resource(s), 2 change(s) (22 more listed by Terraform only for read-back "
        "differences)"
    )


def test_a_rule_added_by_hand_is_drift_the_managed_ones_are_not(fresh: dict[str, Any]) -> None:
    group = after(fresh, ALB_SG)
    managed = group["ingress"][0]
    assert managed["from_port"] == 80  # the aws_vpc_security_group_ingress_rule's, read back here
    ssh = {**managed, "cidr_blocks": ["203.0.113.0/24"], "from_port": 22, "to_port": 22, "description": "ssh"}
    group["ingress"] = [ssh, managed]
    _set_after(fresh, ALB_SG, group)
    report = drift_from_plan("staging", fresh)
    assert [(r.address, [a.path for a in r.attributes]) for r in report.resources] == [
        (ALB_SG, ["ingress[0]"])
    ]
    assert report.resources[0].attributes[0].cloud["cidr_blocks"] == ["203.0.113.0/24"]


def test_a_removed_tag_is_reported_once_in_tags_and_a_default_tag_in_tags_all(fresh: dict[str, Any]) -> None:
    prior = _prior(fresh, BLUE_TG)
    tags = {k: v for k, v in prior["tags"].items() if k != "Color"}
    tags_all = {k: v for k, v in prior["tags_all"].items() if k not in ("Color", "Project")}
    _add_drift(fresh, BLUE_TG, "aws_lb_target_group", prior, {**prior, "tags": tags, "tags_all": tags_all})
    report = drift_from_plan("staging", fresh)
    assert [a.line() for a in report.resources[0].attributes] == [
        'tags.Color: "blue" -> (none)',
        'tags_all.Project: "bglab" -> (none)',
    ]


def test_a_resource_deleted_outside_terraform_and_sensitive_values(fresh: dict[str, Any]) -> None:
    prior = _prior(fresh, BLUE_TG)
    _add_drift(fresh, BLUE_TG, "aws_lb_target_group", prior, None)
    role = 'module.environment.module.fleet["blue"].aws_iam_role.instance'
    entry = next(e for e in fresh["resource_drift"] if e["address"] == role)
    entry["change"]["after"]["description"] = "changed by hand"
    entry["change"]["after_sensitive"]["description"] = True
    report = drift_from_plan("staging", fresh)
    deleted = report.find(BLUE_TG)
    assert (
        deleted is not None
        and deleted.kind == "deleted"
        and deleted.lines() == [f"{BLUE_TG}: deleted outside Terraform"]
    )
    changed = report.find(role)
    assert changed is not None and [a.line() for a in changed.attributes] == [
        'description: "(sensitive)" -> "(sensitive)"'
    ]
    doc = report.to_json()
    assert doc["drift"] is True and {r["kind"] for r in doc["resources"]} == {"deleted", "changed"}
    json.dumps(doc)  # plain JSON


def test_a_change_to_a_managed_rule_is_reported_on_the_rule_not_its_group(fresh: dict[str, Any]) -> None:
    """The group's read-back rules are compared without what rule resources manage, as those are
    now (the refreshed state): a managed rule changed by hand is drift of the rule resource."""
    rule = 'module.environment.module.alb.aws_vpc_security_group_ingress_rule.http["0.0.0.0/0"]'
    prior = _prior(fresh, rule)
    changed = {**prior, "description": "edited"}
    _set_prior(fresh, rule, changed)
    _add_drift(fresh, rule, "aws_vpc_security_group_ingress_rule", prior, changed)
    group = after(fresh, ALB_SG)
    group["ingress"][0]["description"] = "edited"
    _set_after(fresh, ALB_SG, group)
    report = drift_from_plan("staging", fresh)
    assert [(r.address, [a.path for a in r.attributes]) for r in report.resources] == [
        (rule, ["description"])
    ]


# -- editing the fixture as the cloud changed -----------------------------------------------------


def _resources(plan: dict[str, Any]) -> list[dict[str, Any]]:
    def walk(module: dict[str, Any]) -> list[dict[str, Any]]:
        found = list(module.get("resources", []))
        for child in module.get("child_modules", []):
            found += walk(child)
        return found

    return walk(plan["prior_state"]["values"]["root_module"])


def _prior(plan: dict[str, Any], address: str) -> dict[str, Any]:
    return copy.deepcopy(next(r["values"] for r in _resources(plan) if r["address"] == address))


def _set_prior(plan: dict[str, Any], address: str, values: dict[str, Any]) -> None:
    next(r for r in _resources(plan) if r["address"] == address)["values"] = values


def _set_after(plan: dict[str, Any], address: str, values: dict[str, Any]) -> None:
    for entry in plan["resource_drift"]:
        if entry["address"] == address:
            entry["change"]["after"] = values
            _set_prior(plan, address, values)  # a refresh-only plan's prior state is the state read back


def _add_drift(
    plan: dict[str, Any], address: str, rtype: str, before: dict[str, Any], now: dict[str, Any] | None
) -> None:
    change = {"actions": ["delete"] if now is None else ["update"], "before": before, "after": now}
    change.update(before_sensitive={}, after_sensitive={})
    plan["resource_drift"].append({"address": address, "type": rtype, "mode": "managed", "change": change})
