"""A listener's routing table: rules by priority, then the default forward; a weighted group choice.

Compiled once per ``apply`` so that a request only walks plain lists. Matching follows ALB:
http-header and host-header values compare case-insensitively, path patterns case-sensitively,
``*`` matches any run of characters and ``?`` exactly one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from labkit.sandbox.server.topology import Forward, Listener, Rule

G = TypeVar("G")


def wildcard_regex(patterns: tuple[str, ...], *, ignore_case: bool) -> re.Pattern[str]:
    """One regex that fully matches any of the ALB wildcard ``patterns``."""
    alternatives = []
    for pattern in patterns:
        pieces = []
        for char in pattern:
            if char == "*":
                pieces.append(".*")
            elif char == "?":
                pieces.append(".")
            else:
                pieces.append(re.escape(char))
        alternatives.append("".join(pieces))
    return re.compile("(?:" + "|".join(alternatives) + ")", re.IGNORECASE if ignore_case else 0)


@dataclass(frozen=True, slots=True)
class WeightedChoice(Generic[G]):
    """A forward action's groups and weights; groups of weight 0 are left out.

    Picks are dealt from a shuffled deck holding each group as many times as its weight, reshuffled
    when it runs out: the order is random, as on an ALB, but every run of ``sum(weights)`` requests
    splits exactly by weight, so a share measured over a few thousand requests is off by at most one
    deck, never by chance (and tests of it cannot flake).

    ``pick()`` returns None when no group has weight (ALB answers 503 then).
    """

    groups: tuple[G, ...]
    weights: tuple[int, ...]
    _deck: list[G] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def build(cls, pairs: list[tuple[G, int]]) -> WeightedChoice[G]:
        kept = [(group, weight) for group, weight in pairs if weight > 0]
        return cls(tuple(g for g, _ in kept), tuple(w for _, w in kept))

    def pick(self) -> G | None:
        groups = self.groups
        if len(groups) == 1:
            return groups[0]
        if not groups:
            return None
        if not self._deck:
            self._deck.extend(g for g, w in zip(groups, self.weights, strict=True) for _ in range(w))
            random.shuffle(self._deck)
        return self._deck.pop()


@dataclass(frozen=True, slots=True)
class CompiledRule(Generic[G]):
    priority: int
    choice: WeightedChoice[G]
    headers: tuple[tuple[bytes, re.Pattern[str]], ...]
    path: re.Pattern[str] | None
    host: re.Pattern[str] | None

    def matches(self, path: str, header: Callable[[bytes], bytes | None]) -> bool:
        if self.path is not None and not self.path.fullmatch(path):
            return False
        if self.host is not None:
            host = (header(b"host") or b"").decode("latin-1").rsplit(":", 1)[0]
            if not self.host.fullmatch(host):
                return False
        for name, pattern in self.headers:
            value = header(name)
            if value is None or not pattern.fullmatch(value.decode("latin-1")):
                return False
        return True


@dataclass(frozen=True, slots=True)
class RoutingTable(Generic[G]):
    """What one listener does with a request: the first matching rule's forward, else the default."""

    rules: tuple[CompiledRule[G], ...]
    default: WeightedChoice[G]

    def choose(self, path: str, header: Callable[[bytes], bytes | None]) -> G | None:
        for rule in self.rules:
            if rule.matches(path, header):
                return rule.choice.pick()
        return self.default.pick()


def compile_listener(listener: Listener, groups: Mapping[str, G]) -> RoutingTable[G | None]:
    """Compile a listener; a forward to a target group ``groups`` lacks chooses None (answered 503)."""

    def choice(forward: Forward | None) -> WeightedChoice[G | None]:
        if forward is None:
            return WeightedChoice.build([])
        return WeightedChoice.build([(groups.get(arn), weight) for arn, weight in forward.groups])

    rules = [_compile_rule(rule, choice(rule.forward)) for rule in sorted(listener.rules, key=_priority)]
    return RoutingTable(tuple(rules), choice(listener.default_forward))


def _priority(rule: Rule) -> int:
    return rule.priority


def _compile_rule(rule: Rule, choice: WeightedChoice[G]) -> CompiledRule[G]:
    headers = tuple(
        (name.lower().encode("latin-1"), wildcard_regex(values, ignore_case=True))
        for name, values in rule.http_headers
    )
    path = wildcard_regex(rule.path_patterns, ignore_case=False) if rule.path_patterns else None
    host = wildcard_regex(rule.host_headers, ignore_case=True) if rule.host_headers else None
    return CompiledRule(rule.priority, choice, headers, path, host)


def forwarded_groups(listener: Listener) -> set[str]:
    """Every target group ARN the listener forwards to (weight 0 included: those are still in use)."""
    forwards = [listener.default_forward, *(rule.forward for rule in listener.rules)]
    return {arn for forward in forwards if forward is not None for arn, _ in forward.groups}
