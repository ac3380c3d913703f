"""Drift: what differs between an environment's state (the code as last applied) and the cloud.

:func:`detect` runs a refresh-only plan (:meth:`labkit.infra.stack.Stack.refresh_plan`) and
:func:`drift_from_plan` turns its ``resource_drift`` into a :class:`DriftReport`: per resource,
attribute by attribute, the value in state and the value read back.

Terraform's JSON lists more than drift. Right after an apply of staging on the sandbox it names 23
of its 44 resources (``tests/fixtures/drift``), because a refresh reads attributes back differently
from how the apply recorded them (the AWS provider's reads, not the sandbox's). Those read-back
differences are normalised away here, each for a reason that holds whatever the resource; nothing
is ignored by resource or by address:

- **unset and zero are one value**: the AWS provider (plugin SDK v2) cannot tell an unset attribute
  from its zero value, so ``null`` in state and ``[]``, ``{}``, ``""``, ``0`` or ``false`` read
  back (or the reverse) are the same setting (:func:`is_unset`);
- **sets have no order**: the JSON gives sets (and AWS's unordered lists) as lists in whatever
  order the API answered, so a list compares as a multiset; elements that carry an identity
  (``arn``, ``key``, ``name``) are matched by it, so a change inside one is named by it:
  ``target_group[arn=...green...].weight``;
- **JSON documents** (policies) compare parsed, not as text;
- **attributes owned by another resource**: a security group's ``ingress``/``egress`` lists the
  rules that ``aws_vpc_security_group_*_rule`` resources manage, a role's ``inline_policy`` its
  ``aws_iam_role_policy``, a route table's ``route`` its ``aws_route``, a topic's ``policy`` its
  ``aws_sns_topic_policy``, a bucket's versioning, encryption, lifecycle (...) its
  ``aws_s3_bucket_*`` resources. What such a resource in the same state manages is taken out of both
  sides (:data:`OWNED_ELSEWHERE`); the rest (a rule added by hand) stays and is drift. A target
  group's ``load_balancer_arns`` is read-only, derived from the listeners that forward to it;
- **``tags_all``** is ``tags`` plus the provider's default tags: a key that drifted in ``tags``
  is reported there once, and in ``tags_all`` only when it is a default tag.

A resource deleted outside Terraform is drift too (``deleted``), reported whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labkit.infra.tfjson import Resource, read_document

if TYPE_CHECKING:
    from labkit.infra.stack import Stack

#: Keys that identify an element of a list of blocks, in the order they are tried.
IDENTITY_KEYS = ("arn", "key", "name")

#: What a change's value shows when Terraform marks it sensitive.
SENSITIVE = "(sensitive)"

#: Attributes that are read-only: the cloud derives them from other resources, no code sets them.
READ_ONLY = frozenset({("aws_lb_target_group", "load_balancer_arns")})


def is_unset(value: Any) -> bool:
    """Whether ``value`` is what the AWS provider reads back for an unset attribute."""
    return value in (None, "", 0, False) or value == [] or value == {}


def same(before: Any, after: Any) -> bool:
    """Whether two attribute values are the same setting (see the module doc)."""
    if is_unset(before) and is_unset(after):
        return True
    if isinstance(before, str) and isinstance(after, str):
        if before == after:
            return True
        document = _as_document(before)
        return document is not None and document == _as_document(after)
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return all(same(before.get(k), after.get(k)) for k in set(before) | set(after))
    if isinstance(before, list) and isinstance(after, list):
        left, right = _unmatched(before, after)
        return not left and not right
    return bool(before == after)


def _as_document(text: str) -> Any:
    """A JSON object or array in ``text``, parsed; None for any other text."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _unmatched(before: Sequence[Any], after: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Indexes of the elements of each list with no equal element in the other (as multisets)."""
    free = list(range(len(after)))
    left = []
    for i, element in enumerate(before):
        match = next((j for j in free if same(element, after[j])), None)
        if match is None:
            left.append(i)
        else:
            free.remove(match)
    return left, free


@dataclass(frozen=True)
class AttributeDrift:
    """One attribute (or element, or map key) whose live value differs from the state's.
    ``code`` or ``cloud`` is None when the element or key is missing on that side."""

    path: str
    code: Any
    cloud: Any

    def line(self) -> str:
        return f"{self.path}: {_show(self.code)} -> {_show(self.cloud)}"

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.path, "code": self.code, "cloud": self.cloud}


@dataclass(frozen=True)
class ResourceDrift:
    """A resource that drifted: ``changed`` attribute by attribute, or ``deleted`` outside Terraform."""

    address: str
    type: str
    kind: str  # "changed" or "deleted"
    attributes: tuple[AttributeDrift, ...] = ()

    def lines(self) -> list[str]:
        if self.kind == "deleted":
            return [f"{self.address}: deleted outside Terraform"]
        return [f"{self.address}:"] + [f"  {a.line()}" for a in self.attributes]

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "type": self.type,
            "kind": self.kind,
            "attributes": [a.to_json() for a in self.attributes],
        }


@dataclass(frozen=True)
class DriftReport:
    """An environment's drift, and how many resources Terraform listed only for read-back
    differences (normalised away, see the module doc)."""

    env: str
    resources: tuple[ResourceDrift, ...]
    read_back_only: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_drift(self) -> bool:
        return bool(self.resources)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def find(self, address: str) -> ResourceDrift | None:
        return next((r for r in self.resources if r.address == address), None)

    def lines(self) -> list[str]:
        out = [line for resource in self.resources for line in resource.lines()]
        noise = f" ({self.read_back_only} more listed by Terraform only for read-back differences)"
        if not self.resources:
            return [f"{self.env}: no drift" + (noise if self.read_back_only else "")]
        count = sum(max(1, len(r.attributes)) for r in self.resources)
        out.append(
            f"{self.env}: drift in {len(self.resources)} resource(s), {count} change(s)"
            + (noise if self.read_back_only else "")
        )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.env,
            "drift": self.has_drift,
            "resources": [r.to_json() for r in self.resources],
            "read_back_only": self.read_back_only,
        }


# -- attribute differences ---------------------------------------------------------------------


def attribute_drift(before: Any, after: Any, path: str = "") -> Iterator[AttributeDrift]:
    """The differences between two values, at the deepest path that names them."""
    if same(before, after):
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            yield from attribute_drift(before.get(key), after.get(key), _join(path, str(key)))
    elif isinstance(before, list) and isinstance(after, list):
        yield from _list_drift(before, after, path)
    else:
        yield AttributeDrift(path, before, after)


def _list_drift(before: list[Any], after: list[Any], path: str) -> Iterator[AttributeDrift]:
    key = _identity(before, after)
    if key is not None:
        old = {element[key]: element for element in before}
        new = {element[key]: element for element in after}
        for name in sorted(set(old) | set(new), key=str):
            yield from attribute_drift(old.get(name), new.get(name), f"{path}[{key}={name}]")
        return
    left, right = _unmatched(before, after)
    if len(left) == len(right) == 1:  # one element changed: say what inside it
        yield from attribute_drift(before[left[0]], after[right[0]], f"{path}[{left[0]}]")
        return
    for i in left:
        yield AttributeDrift(f"{path}[{i}]", before[i], None)
    for j in right:
        yield AttributeDrift(f"{path}[{j}]", None, after[j])


def _identity(before: list[Any], after: list[Any]) -> str | None:
    """The identity key every block of both lists has, unique on each side, or None."""
    for key in IDENTITY_KEYS:
        if all(
            all(isinstance(e, Mapping) and isinstance(e.get(key), str) for e in side)
            and len({e[key] for e in side}) == len(side)
            for side in (before, after)
        ) and (before or after):
            return key
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)


# -- attributes owned by another resource ------------------------------------------------------

Owned = Callable[[Resource, list[Resource], Any], Any]


#: A security group's rule entry: its lists of sources, and the rule resource's field for each.
_SOURCES = {
    "cidr_blocks": "cidr_ipv4",
    "ipv6_cidr_blocks": "cidr_ipv6",
    "prefix_list_ids": "prefix_list_id",
    "security_groups": "referenced_security_group_id",
}


def _ports(protocol: str, low: Any, high: Any) -> tuple[str, Any, Any]:
    return (protocol, None, None) if protocol == "-1" else (protocol, low, high)


def _without_rules(kind: str) -> Owned:
    """A security group's ``ingress`` or ``egress`` without the sources that rule resources manage."""

    def strip(group: Resource, others: list[Resource], entries: Any) -> Any:
        owned = {
            (
                *_ports(str(r.values.get("ip_protocol")), r.values.get("from_port"), r.values.get("to_port")),
                field,
                r.values.get(field),
            )
            for r in others
            if r.type == f"aws_vpc_security_group_{kind}_rule"
            and r.values.get("security_group_id") == group.values.get("id")
            for field in _SOURCES.values()
            if r.values.get(field)
        }
        kept = []
        for entry in entries or []:
            ports = _ports(str(entry.get("protocol")), entry.get("from_port"), entry.get("to_port"))
            left = {
                name: [s for s in entry.get(name) or [] if (*ports, field, s) not in owned]
                for name, field in _SOURCES.items()
            }
            if any(left.values()) or entry.get("self"):
                kept.append({**entry, **left})
        return kept

    return strip


def _without_role_policies(role: Resource, others: list[Resource], entries: Any) -> Any:
    names = {
        r.values.get("name")
        for r in others
        if r.type == "aws_iam_role_policy" and r.values.get("role") == role.values.get("name")
    }
    return [e for e in entries or [] if e.get("name") not in names]


def _without_routes(table: Resource, others: list[Resource], entries: Any) -> Any:
    routes = {
        r.values.get("destination_cidr_block")
        for r in others
        if r.type == "aws_route" and r.values.get("route_table_id") == table.values.get("id")
    }
    return [e for e in entries or [] if e.get("cidr_block") not in routes]


def _whole(owner: str, key: str, mine: str) -> Owned:
    """An attribute that a resource of type ``owner`` whose ``key`` is this one's ``mine`` sets whole."""

    def strip(resource: Resource, others: list[Resource], value: Any) -> Any:
        wanted = resource.values.get(mine)
        return None if any(r.type == owner and r.values.get(key) == wanted for r in others) else value

    return strip


#: aws_s3_bucket's settings that separate aws_s3_bucket_* resources manage (provider v4 and later).
_BUCKET_SETTINGS = {
    "lifecycle_rule": "lifecycle_configuration",
    "server_side_encryption_configuration": "server_side_encryption_configuration",
    "versioning": "versioning",
    "logging": "logging",
    "policy": "policy",
    "cors_rule": "cors_configuration",
    "website": "website_configuration",
    "replication_configuration": "replication_configuration",
    "object_lock_configuration": "object_lock_configuration",
    "acceleration_status": "accelerate_configuration",
    "request_payer": "request_payment_configuration",
}


#: (resource type, attribute) -> what is left of the attribute once what other resources in the
#: same state manage is taken out of it.
OWNED_ELSEWHERE: dict[tuple[str, str], Owned] = {
    ("aws_security_group", "ingress"): _without_rules("ingress"),
    ("aws_security_group", "egress"): _without_rules("egress"),
    ("aws_iam_role", "inline_policy"): _without_role_policies,
    ("aws_route_table", "route"): _without_routes,
    ("aws_sns_topic", "policy"): _whole("aws_sns_topic_policy", "arn", "arn"),
    **{
        ("aws_s3_bucket", attribute): _whole(f"aws_s3_bucket_{owner}", "bucket", "id")
        for attribute, owner in _BUCKET_SETTINGS.items()
    },
}


# -- the report ----------------------------------------------------------------------------------


def resource_drift(
    address: str,
    rtype: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    others: list[Resource],
    sensitive: frozenset[str] = frozenset(),
) -> ResourceDrift | None:
    """One resource's drift once read-back differences are normalised away; None if none is left.
    ``others`` are the state's resources as read back (for :data:`OWNED_ELSEWHERE`); ``sensitive``
    the top-level attributes whose values are not shown."""
    if before is not None and after is None:
        return ResourceDrift(address, rtype, "deleted")
    before, after = dict(before or {}), dict(after or {})
    me = Resource(address, "", rtype, address.rsplit(".", 1)[-1], after)
    for (kind, attribute), strip in OWNED_ELSEWHERE.items():
        if kind == rtype:
            before[attribute] = strip(me, others, before.get(attribute))
            after[attribute] = strip(me, others, after.get(attribute))
    for kind, attribute in READ_ONLY:
        if kind == rtype:
            before.pop(attribute, None)
            after.pop(attribute, None)
    changes = list(attribute_drift(before, after))
    tagged = {
        (c.path.removeprefix("tags."), _show(c.code), _show(c.cloud))
        for c in changes
        if c.path.startswith("tags.")
    }
    changes = [
        c
        for c in changes
        if not (
            c.path.startswith("tags_all.")
            and (c.path.removeprefix("tags_all."), _show(c.code), _show(c.cloud)) in tagged
        )
    ]
    changes = [
        AttributeDrift(c.path, SENSITIVE, SENSITIVE) if _top(c.path) in sensitive else c for c in changes
    ]
    return ResourceDrift(address, rtype, "changed", tuple(changes)) if changes else None


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def _sensitive(change: Mapping[str, Any]) -> frozenset[str]:
    marks = {**(change.get("before_sensitive") or {}), **(change.get("after_sensitive") or {})}
    return frozenset(name for name, mark in marks.items() if mark is True)


def drift_from_plan(env: str, plan: Mapping[str, Any]) -> DriftReport:
    """The drift a refresh-only plan's JSON (``terraform show -json``) names, normalised."""
    # A refresh-only plan's prior_state is the state as read back (its planned_values are empty).
    others = read_document(plan["prior_state"]).resources if plan.get("prior_state") else []
    found: list[ResourceDrift] = []
    listed = 0
    for entry in plan.get("resource_drift") or []:
        if entry.get("mode", "managed") != "managed":
            continue
        listed += 1
        change = entry.get("change") or {}
        drift = resource_drift(
            str(entry["address"]),
            str(entry.get("type", "")),
            change.get("before"),
            change.get("after"),
            others,
            _sensitive(change),
        )
        if drift is not None:
            found.append(drift)
    return DriftReport(env, tuple(found), read_back_only=listed - len(found), raw=dict(plan))


def detect(stack: Stack) -> DriftReport:
    """``stack``'s drift: a refresh-only plan (it changes nothing), normalised."""
    return drift_from_plan(stack.env, stack.refresh_plan().raw)
