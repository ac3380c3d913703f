"""IAM policy evaluation: does a set of policies allow an action on a resource in a request context?

AWS's rules, as far as the sandbox needs them: an explicit ``Deny`` wins, else an ``Allow`` allows,
else the request is implicitly denied. A statement applies when its ``Action``/``NotAction``,
``Resource``/``NotResource``, ``Principal`` (trust policies) and every ``Condition`` match; names
match case-insensitively with ``*`` and ``?`` wildcards.

Conditions: the ``String*`` and ``Arn*`` operators, ``Bool`` and ``Null``, with ``IfExists`` and the
``ForAnyValue:``/``ForAllValues:`` set qualifiers. A key absent from the request fails a positive
operator and satisfies a negated one (``StringNotEquals``...), as on AWS. Any other operator fails.

Two allowances for a caller that cannot know everything AWS knows (the sandbox): ``resource=None``
means "unknown", and then an ``Allow`` applies whatever its ``Resource`` while a ``Deny`` applies only
when its ``Resource`` covers every resource; a condition key for which ``knows(key)`` is False holds.
Trust-policy checks know every key and every resource, and get neither allowance.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Condition keys are case-insensitive; the context is looked up by the lowercased key.
Context = Mapping[str, Sequence[str]]


class Decision(enum.Enum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit deny"
    EXPLICIT_DENY = "explicit deny"


@dataclass(frozen=True)
class Request:
    """One authorization question: ``principal`` names the caller for trust policies, by kind
    (``{"Federated": [arn]}``, ``{"AWS": [arn, account root]}``); ``context`` maps lowercased
    condition keys to the request's values."""

    action: str
    resource: str | None = "*"
    context: Context = field(default_factory=dict)
    principal: Mapping[str, Sequence[str]] | None = None
    knows: Callable[[str], bool] = lambda _key: True


def evaluate(documents: Iterable[str | Mapping[str, Any]], request: Request) -> Decision:
    """The decision of all ``documents`` (policy JSON, as text or parsed) together on ``request``."""
    allowed = False
    for document in documents:
        for statement in statements(document):
            if not _applies(statement, request):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = allowed or statement.get("Effect") == "Allow"
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY


def needed_statements(
    documents: Sequence[str | Mapping[str, Any]], requests: Iterable[Request]
) -> dict[str, list[Request]]:
    """For each ``Allow`` statement of ``documents`` (named by its ``Sid``, else ``#document.index``),
    the ``requests`` that the documents allow and would not allow without it: an empty list names a
    statement that none of the requests needed."""
    distinct = list({(r.action, r.resource, repr(sorted(r.context.items()))): r for r in requests}.values())
    allowed = [r for r in distinct if evaluate(documents, r) is Decision.ALLOWED]
    parsed = [statements(document) for document in documents]
    needed: dict[str, list[Request]] = {}
    for d, found in enumerate(parsed):
        for i, statement in enumerate(found):
            if statement.get("Effect") != "Allow":
                continue
            without = [
                {"Statement": [s for j, s in enumerate(other) if (e, j) != (d, i)]}
                for e, other in enumerate(parsed)
            ]
            name = str(statement.get("Sid") or f"#{d}.{i}")
            needed[name] = [r for r in allowed if evaluate(without, r) is not Decision.ALLOWED]
    return needed


def statements(document: str | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    parsed = json.loads(document) if isinstance(document, str) else document
    found = parsed.get("Statement", [])
    return [found] if isinstance(found, Mapping) else list(found)


def as_list(value: Any) -> list[str]:
    """A policy element or claim that may be one value or a list, as a list of strings."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM's ``*`` (any run) and ``?`` (one character); nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
    return re.fullmatch(regex, value, flags) is not None


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotAction" in statement:
        if any(
            wildcard_match(p, request.action, case_sensitive=False) for p in as_list(statement["NotAction"])
        ):
            return False
    elif not any(
        wildcard_match(p, request.action, case_sensitive=False) for p in as_list(statement.get("Action"))
    ):
        return False
    if not _resource_applies(statement, request.resource):
        return False
    if request.principal is not None and not _principal_applies(statement, request.principal):
        return False
    return all(
        condition_holds(operator, key, as_list(values), request)
        for operator, block in (statement.get("Condition") or {}).items()
        for key, values in block.items()
    )


def _resource_applies(statement: Mapping[str, Any], resource: str | None) -> bool:
    if "Resource" not in statement and "NotResource" not in statement:
        return True  # a trust policy names no resource: the role it is attached to
    if resource is None:  # the caller cannot tell the resource
        if statement.get("Effect") == "Allow":
            return True
        return "*" in as_list(statement.get("Resource"))
    if "NotResource" in statement:
        return not any(wildcard_match(p, resource) for p in as_list(statement["NotResource"]))
    return any(wildcard_match(p, resource) for p in as_list(statement["Resource"]))


def _principal_applies(statement: Mapping[str, Any], principal: Mapping[str, Sequence[str]]) -> bool:
    named = statement.get("Principal")
    if named is None:
        return False  # a trust policy statement without a principal admits no one
    if named == "*":
        return True
    return any(
        kind in named and any(p == "*" or p in values for p in as_list(named[kind]))
        for kind, values in principal.items()
    )


_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": wildcard_match,
    "ArnEquals": wildcard_match,
    "ArnLike": wildcard_match,
    "Bool": lambda p, v: p.lower() == v.lower(),
}
_MATCHERS["StringNotEquals"] = _MATCHERS["StringEquals"]
_MATCHERS["StringNotEqualsIgnoreCase"] = _MATCHERS["StringEqualsIgnoreCase"]
_MATCHERS["StringNotLike"] = _MATCHERS["StringLike"]
_MATCHERS["ArnNotEquals"] = _MATCHERS["ArnEquals"]
_MATCHERS["ArnNotLike"] = _MATCHERS["ArnLike"]


def condition_holds(operator: str, key: str, expected: list[str], request: Request) -> bool:
    """Whether one condition (``operator`` over ``key`` with the policy's ``expected`` values) holds."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    base = base.removesuffix("IfExists") if if_exists else base
    present = request.context.get(key.lower())
    if base == "Null":  # "true": the key must be absent; "false": present
        return (present is None) == (expected[:1] == ["true"])
    matcher = _MATCHERS.get(base)
    if matcher is None:
        return False  # an operator this evaluator does not know never holds
    negated = base in _NEGATED
    if present is None:
        if not request.knows(key.lower()):
            return True
        return if_exists or negated or qualifier == "ForAllValues"
    matches = [any(matcher(p, v) for p in expected) for v in present]
    if qualifier == "ForAllValues":
        return all(not m for m in matches) if negated else all(matches)
    return not any(matches) if negated else any(matches)
