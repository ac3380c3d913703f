"""What the sandbox's load balancer serves, read from moto's ELBv2 models as plain topology.

Call :func:`read_topology` with the sandbox's model lock held, so that no request changes a
model mid-read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.sandbox.server.lb.http1 import DESYNC_MODES
from labkit.sandbox.server.lb.metrics import lb_dimension
from labkit.sandbox.server.lb.plane import validate
from labkit.sandbox.server.topology import Forward, GroupTarget, HealthCheck, Listener, Rule, TargetGroup

log = logging.getLogger(__name__)

# Problems already logged, so that a loop running twice a second logs each once.
_reported: set[str] = set()


def _report_once(key: str, message: str, *args: object) -> None:
    if key not in _reported:
        _reported.add(key)
        log.warning(message, *args)


@dataclass(frozen=True)
class Topology:
    """What the data plane should serve, plus where each listener belongs."""

    listeners: tuple[Listener, ...]
    target_groups: tuple[TargetGroup, ...]
    #: load balancer dimension ("app/NAME/ID") -> (account id, region): where its metrics go.
    metric_homes: Mapping[str, tuple[str, str]]


def read_topology(app_ports: Mapping[str, int]) -> Topology:
    """Every application load balancer's HTTP(S) listeners and every target group, as plain data.

    ``app_ports`` maps an instance id to the loopback port of its app process. Anything the data
    plane cannot serve (a rule condition or action it lacks, a health check it refuses) is left
    out with a warning, so that one odd resource never keeps the rest from serving.
    """
    from moto.elbv2.models import elbv2_backends

    listeners: list[Listener] = []
    groups: list[TargetGroup] = []
    homes: dict[str, tuple[str, str]] = {}
    backend: Any
    for account_id, region, backend in list(elbv2_backends.iter_backends()):
        balancers = {arn: lb for arn, lb in list(backend.load_balancers.items()) if lb.type == "application"}
        for arn, balancer in balancers.items():
            homes[lb_dimension(arn)] = (account_id, region)
            for listener in list(balancer.listeners.values()):
                converted = _listener(listener, balancer)
                if converted is not None:
                    listeners.append(converted)
        for group in list(backend.target_groups.values()):
            converted_group = _target_group(group, balancers, app_ports)
            if converted_group is not None:
                groups.append(converted_group)
    return Topology(tuple(listeners), tuple(groups), homes)


def _listener(listener: Any, balancer: Any) -> Listener | None:
    if listener.protocol not in ("HTTP", "HTTPS"):
        _report_once(listener.arn, "listener %s: protocol %s is not served", listener.arn, listener.protocol)
        return None
    rules: list[Rule] = []
    for rule in list(listener._non_default_rules.values()):
        converted = _rule(rule)
        if converted is not None:
            rules.append(converted)
    rules.sort(key=lambda r: r.priority)
    return Listener(
        arn=listener.arn,
        load_balancer_arn=balancer.arn,
        load_balancer_dns=balancer.dns_name,
        protocol=listener.protocol,
        port=int(listener.port),
        default_forward=_forward(listener.default_actions, listener.arn),
        rules=tuple(rules),
        **_balancer_attributes(balancer),
    )


def _balancer_attributes(balancer: Any) -> dict[str, Any]:
    """The load balancer attributes the data plane follows, with AWS's defaults where unset."""
    attrs = balancer.attrs
    mode = str(attrs.get("routing.http.desync_mitigation_mode") or "defensive")
    if mode not in DESYNC_MODES:
        _report_once(
            balancer.arn + mode,
            "load balancer %s: desync mitigation mode %r unknown; serving it as defensive",
            balancer.arn,
            mode,
        )
        mode = "defensive"
    drop = str(attrs.get("routing.http.drop_invalid_header_fields.enabled") or "false").lower() == "true"
    return {
        "idle_timeout_s": float(attrs.get("idle_timeout.timeout_seconds") or 60),
        "desync_mitigation_mode": mode,
        "drop_invalid_header_fields": drop,
    }


def _forward(actions: list[Any], owner: str) -> Forward | None:
    """The forward action among ``actions``, None when there is none (answered 503)."""
    for action in actions:
        data = action.data
        if data.get("Type") != "forward":
            continue
        config = data.get("ForwardConfig") or {}
        pairs = [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in config.get("TargetGroups") or []]
        if not pairs and data.get("TargetGroupArn"):
            pairs = [(data["TargetGroupArn"], 1)]
        return Forward(tuple(pairs))
    kinds = sorted({str(action.data.get("Type")) for action in actions})
    _report_once(owner + str(kinds), "%s: actions %s are not served (only forward)", owner, kinds)
    return None


def _rule(rule: Any) -> Rule | None:
    forward = _forward(rule.actions, rule.arn)
    if forward is None:
        return None
    headers: list[tuple[str, tuple[str, ...]]] = []
    paths: list[str] = []
    hosts: list[str] = []
    for condition in rule.conditions or []:
        field = condition.get("Field")
        if field == "http-header":
            config = condition.get("HttpHeaderConfig") or {}
            headers.append((config.get("HttpHeaderName", ""), tuple(config.get("Values") or [])))
        elif field == "path-pattern":
            paths += (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
        elif field == "host-header":
            hosts += (condition.get("HostHeaderConfig") or {}).get("Values") or condition.get("Values") or []
        else:
            _report_once(rule.arn, "rule %s: condition %s is not served; rule skipped", rule.arn, field)
            return None
    return Rule(
        priority=int(rule.priority),
        forward=forward,
        http_headers=tuple(headers),
        path_patterns=tuple(paths),
        host_headers=tuple(hosts),
    )


def _target_group(
    group: Any, balancers: Mapping[str, Any], app_ports: Mapping[str, int]
) -> TargetGroup | None:
    if group.protocol not in ("HTTP", "HTTPS"):
        return None
    targets: list[GroupTarget] = []
    for target in list(group.targets.values()):
        target_id = str(target["Id"])
        if group.target_type == "instance":
            targets.append(GroupTarget(target_id, app_ports.get(target_id)))
        elif group.target_type == "ip" and target_id.startswith("127."):
            # An ip target on loopback (a process a test started) is reachable as it is.
            targets.append(GroupTarget(target_id, int(target.get("Port") or group.port), host=target_id))
        else:
            targets.append(GroupTarget(target_id, None))
    load_balancer = next((arn for arn in group.load_balancer_arns if arn in balancers), None)
    matcher = (group.matcher or {}).get("HttpCode", "200")
    if str(group.health_check_port) not in ("traffic-port", str(group.port)):
        # Every app listens on one loopback port, so a separate health check port cannot exist.
        _report_once(group.arn + "port", "target group %s: health checks go to the traffic port", group.name)
    converted = TargetGroup(
        arn=group.arn,
        name=group.name,
        health_check=HealthCheck(
            path=group.health_check_path or "/",
            port="traffic-port",
            protocol=group.health_check_protocol or "HTTP",
            interval_s=int(group.health_check_interval_seconds),
            timeout_s=int(group.health_check_timeout_seconds),
            healthy_threshold=int(group.healthy_threshold_count),
            unhealthy_threshold=int(group.unhealthy_threshold_count),
            matcher=str(matcher),
        ),
        deregistration_delay_s=int(group.attributes.get("deregistration_delay.timeout_seconds", 300)),
        targets=tuple(targets),
        dimension=group.arn.split(":")[-1],
        load_balancer_dimension=lb_dimension(load_balancer) if load_balancer else "",
    )
    try:
        validate([], [converted])
    except Exception as exc:  # the plane's ConfigError names what it refuses
        _report_once(group.arn + str(converted.health_check), "target group %s left out: %s", group.name, exc)
        return None
    return converted
