"""Where stock moto is not AWS, mended in process (see ../shared/SANDBOX-FACTS.md).

:func:`apply_mends` patches moto's model classes once per process, so it serves the sandbox
service and a test's ``ThreadedMotoServer`` alike (call it before the first request):

- ``describe_target_health`` reports what the data plane observed (``initial``, ``healthy``,
  ``unhealthy`` with its reason, ``draining``, ``unused``) instead of a constant ``healthy``, and
  lists draining targets as AWS does.
- Instances terminated by any path (an ASG scaling in, its capacity set to 0, its deletion) leave
  their target groups; stock moto deregisters them only in the TerminateInstances API handler.
- A launch template's own tags (and the provider's ``default_tags``) stay off its template data,
  where moto copied them as a ``launch-template`` tag specification that Terraform then diffs.
- A new launch template version keeps its user data base64-typed, as the first version does (an
  ASG launching from a later version failed with HTTP 500).
- A security group rule that admits another group reports its description (moto read it only
  from CIDR rules, so Terraform planned to set it again on every plan).
- Load balancers are ``active`` as soon as they exist.
- Auto Scaling: ``DescribeScalingActivities`` lists the activities that :mod:`.healing` recorded
  (stock moto answers an empty list); the service replaces ELB-unhealthy instances there.
  ``CreateAutoScalingGroup`` with the name of a group that exists fails with AWS's
  ``AlreadyExists`` (stock moto replaced the group silently): the naming-conflict drill's error.
- CloudWatch: a new alarm starts ``INSUFFICIENT_DATA`` and an updated one keeps its state, as on
  AWS (moto set ``OK`` both times); state changes are kept as alarm history
  (``DescribeAlarmHistory``); a metric distribution (``Values``/``Counts``) is kept as one datum
  instead of one per count; percentile statistics (``p99``) are answered; ``GetMetricStatistics``
  matches dimensions exactly, as AWS does.
- Service quotas (:mod:`.quotas`): vCPUs, Elastic IPs, VPCs, ALBs and target groups are enforced
  with AWS's error codes, an Auto Scaling launch past the vCPU quota records a failed activity, and
  the Service Quotas API answers (and raises) their values.
- DynamoDB: a conditional write evaluates its condition and writes as one step, as DynamoDB does
  (stock moto reads, checks and stores separately, so two racing conditional writes could both
  succeed: the deployment lock's fencing depends on it).

- RDS: a PostgreSQL instance's endpoint is ``127.0.0.1`` at a free loopback port chosen when it is
  created (or restored), where :mod:`.databases` serves it; an RDS-managed master secret holds the
  instance's master user and a random password (stock moto wrote ``admin`` and a fixed password),
  and rotating it makes a new random password current at once, as RDS's own rotation does, unless
  the call says ``RotateImmediately=false``. Its rotation schedule (``RotationRules``: a schedule
  expression, a duration or a number of days) is kept and read back whole with
  ``RotationEnabled`` (stock moto kept only a number of days and rotated at once: the AWS provider
  then saw no schedule, and its update to set one again failed). ``CancelRotateSecret`` turns
  that rotation off (stock moto refused a secret without a Lambda, which failed the destroy of
  the schedule); whether AWS accepts it for a secret RDS manages is not verified here.
  The port is the sandbox's, not the one asked for: a module that sets ``port`` would see it differ.
  A restored instance (from a snapshot, or to a point in time) records where its data comes from.
  A PostgreSQL snapshot starts ``creating`` (stock moto: ``available`` at once) until
  :mod:`.databases` holds its data, so a client that waits for ``available`` waits for the data.
  Every instance, of any engine, gets a resource id of its own (``DbiResourceId``): stock moto gave
  all of them one constant, and the AWS provider reads an instance back by that id (the
  ``dbi-resource-id`` filter), so with two instances in a region it found two, took the id for an
  identifier and failed the create with "couldn't find resource".

- IAM (:mod:`.iam`): when enforced, every call is authorized against the caller's policies and
  refused in the service's own error format; STS's AssumeRoleWithWebIdentity validates its token
  against the sandbox's OIDC issuer, the IAM OIDC provider and the role's trust policy (:mod:`.oidc`).
  ``AddClientIDToOpenIDConnectProvider`` and ``RemoveClientIDFromOpenIDConnectProvider`` answer (stock
  moto has neither): Terraform changes a provider's audiences with them, and the OIDC drill breaks one.

Metric alarms are evaluated by :mod:`labkit.sandbox.server.cloudwatch`, which the caller runs periodically.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from labkit.sandbox.server import iam, oidc, quotas
from labkit.sandbox.server.topology import TargetHealthReport

#: What the data plane observed for (target group ARN, target id); None when it has no word yet.
HealthSource = Callable[[str, str], TargetHealthReport | None]

_lock = threading.Lock()
_applied = False
_health_source: HealthSource | None = None


def apply_mends(target_health: HealthSource | None) -> None:
    """Patch moto's models in this process (idempotent); ``target_health`` feeds target health.

    With ``target_health=None`` no data plane watches the targets: registered targets then stay
    ``initial``, which is what an ALB reports before its first health check.
    """
    global _applied, _health_source
    with _lock:
        _health_source = target_health
        if _applied:
            return
        _mend_elbv2()
        _mend_ec2()
        _mend_cloudwatch()
        _mend_autoscaling()
        _mend_dynamodb()
        _mend_oidc_client_ids()
        _mend_rds()
        iam.mend(_patch)  # inert until iam.set_enforced(True)
        oidc.mend(_patch)
        quotas.mend(_patch)  # last: it wraps what the mends above left
        _applied = True


# --- ELBv2: target health from the data plane, draining targets listed, LBs active at once ---

#: A registered target that the data plane has not picked up yet (it does within a second).
REGISTERING = TargetHealthReport(
    "initial", "Elb.RegistrationInProgress", "Target registration is in progress"
)
NOT_IN_USE = TargetHealthReport(
    "unused", "Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"
)


def forwards_to(backend: Any, group_arn: str) -> bool:
    """Whether any listener of ``backend`` forwards to the target group (weight 0 included)."""
    for balancer in list(backend.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            for rule in list(listener.rules.values()):
                for action in rule.actions:
                    data = action.data
                    if data.get("Type") != "forward":
                        continue
                    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
                    if data.get("TargetGroupArn") == group_arn or any(
                        g.get("TargetGroupArn") == group_arn for g in groups
                    ):
                        return True
    return False


def _mend_elbv2() -> None:
    from moto.elbv2 import models
    from moto.elbv2.exceptions import TargetGroupNotFoundError

    stock_health_for = models.FakeTargetGroup.health_for
    stock_create_lb = models.ELBv2Backend.create_load_balancer

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        stock = stock_health_for(self, target, ec2_backend)
        if stock.reason == "Target.InvalidState":  # a stopped instance: moto already says unused
            return stock
        target_id = target["Id"]
        report = _health_source(self.arn, target_id) if _health_source else None
        if target_id in self.targets:
            # The plane's reports trail the models by up to a reconcile pass: whether the group
            # is in use is read from the models, so a listener just created or removed counts.
            if not forwards_to(models.elbv2_backends[self.account_id][self.region_name], self.arn):
                report = NOT_IN_USE
            elif report is None or report.reason in ("Target.NotRegistered", "Target.NotInUse"):
                report = REGISTERING
            return models.FakeHealthStatus(
                target_id, stock.port, self.health_check_port, report.state, report.reason, report.description
            )
        if report is not None and report.state == "draining":
            return models.FakeHealthStatus(
                target_id, stock.port, self.health_check_port, "draining", report.reason, report.description
            )
        if target_id in self.terminated_targets:  # stock moto says draining forever
            return models.FakeHealthStatus(
                target_id,
                stock.port,
                self.health_check_port,
                "unused",
                "Target.NotRegistered",
                "Target is not registered to the target group",
            )
        return stock

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        group = self.target_groups.get(target_group_arn)
        if group is None:
            raise TargetGroupNotFoundError()
        if not targets:
            # AWS lists draining targets too until their deregistration delay ends.
            targets = list(group.targets.values())
            if _health_source is not None:
                gone = {**group.terminated_targets, **group.deregistered_targets}
                targets += [
                    t
                    for target_id, t in gone.items()
                    if target_id not in group.targets
                    and (report := _health_source(group.arn, target_id)) is not None
                    and report.state == "draining"
                ]
        return [group.health_for(target, self.ec2_backend) for target in targets]

    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        balancer = stock_create_lb(self, *args, **kwargs)
        balancer.state = "active"  # nothing to provision on loopback; Terraform waits otherwise
        return balancer

    _patch(models.FakeTargetGroup, "health_for", health_for)
    _patch(models.ELBv2Backend, "describe_target_health", describe_target_health)
    _patch(models.ELBv2Backend, "create_load_balancer", create_load_balancer)


# --- Auto Scaling: the activities the sandbox's ELB health check recorded ---


def _mend_autoscaling() -> None:
    from moto.autoscaling.exceptions import AutoscalingClientError
    from moto.autoscaling.models import AutoScalingBackend
    from moto.autoscaling.responses import AutoScalingResponse

    class AutoScalingGroupAlreadyExists(AutoscalingClientError):
        # CreateAutoScalingGroup's documented error (API reference, "Errors").
        code = "AlreadyExists"
        message = (
            "You already have an Auto Scaling group or launch configuration with this name that you are "
            "attempting to create."
        )

    from moto.core.responses import ActionResult

    from labkit.sandbox.server import healing

    def describe_scaling_activities(self: Any) -> Any:
        names = self._get_param("AutoScalingGroupName")
        found = healing.activities(self.autoscaling_backend, [names] if names else [])
        wanted = self._get_param("ActivityIds") or []
        if wanted:
            found = [a for a in found if a["ActivityId"] in wanted]
        limit = int(self._get_param("MaxRecords") or 100)
        return ActionResult({"Activities": found[:limit]})

    stock_create_group = AutoScalingBackend.create_auto_scaling_group

    def create_auto_scaling_group(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.autoscaling_groups:
            raise AutoScalingGroupAlreadyExists()
        return stock_create_group(self, name, *args, **kwargs)

    _patch(AutoScalingResponse, "describe_scaling_activities", describe_scaling_activities)
    _patch(AutoScalingBackend, "create_auto_scaling_group", create_auto_scaling_group)


# --- EC2: terminated instances leave target groups; launch template tags stay off the data ---


def _mend_ec2() -> None:
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
    from moto.ec2.models.security_groups import SecurityGroupRule
    from moto.ec2.utils import parse_user_data
    from moto.elbv2.models import elbv2_backends

    stock_terminate = InstanceBackend.terminate_instances
    stock_create_template = LaunchTemplateBackend.create_launch_template
    stock_create_version = LaunchTemplate.create_version

    def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
        result = stock_terminate(self, instance_ids)
        # The ASG calls this backend method directly (scale-in, capacity 0, delete); only the
        # TerminateInstances API handler told ELBv2, so the ASG's instances stayed registered.
        elbv2_backends[self.account_id][self.region_name].notify_terminate_instances(instance_ids)
        return result

    def create_launch_template(
        self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: dict[str, Any]
    ) -> Any:
        # moto's CreateLaunchTemplate handler appends the request's own TagSpecifications (the
        # template's tags, resource type "launch-template") to the template *data*, where AWS
        # keeps only instance/volume/... specifications. Terraform then reads back a
        # tag_specifications block it never wrote and plans a change every time.
        specs = template_data.get("TagSpecifications")
        if specs:
            kept = [s for s in specs if s.get("ResourceType") != "launch-template"]
            if kept:
                template_data["TagSpecifications"] = kept
            else:
                del template_data["TagSpecifications"]
        return stock_create_template(self, name, description, template_data, tag_spec)

    def create_version(self: Any, data: dict[str, Any], description: str) -> Any:
        # CreateLaunchTemplate wraps UserData in Base64EncodedString, CreateLaunchTemplateVersion
        # left it a plain str: an ASG launching from such a version (a new release) then failed
        # with an AssertionError (HTTP 500).
        user_data = data.get("UserData")
        if isinstance(user_data, str | bytes):
            data["UserData"] = parse_user_data(user_data)
        return stock_create_version(self, data, description)

    _patch(InstanceBackend, "terminate_instances", terminate_instances)
    _patch(LaunchTemplateBackend, "create_launch_template", create_launch_template)
    _patch(LaunchTemplate, "create_version", create_version)
    # A rule that admits another security group keeps its description with the group pair, where
    # moto's SecurityGroupRule.description never looked: DescribeSecurityGroupRules returned none
    # and Terraform planned to set it again on every plan.
    _patch(SecurityGroupRule, "description", property(_security_group_rule_description))


def _security_group_rule_description(rule: Any) -> str | None:
    description = rule.ip_range.get("Description") or rule.source_group.get("Description")
    return str(description) if description is not None else None


# --- CloudWatch: history, distributions, percentiles, exact dimensions ---


def _mend_cloudwatch() -> None:
    from moto.cloudwatch import models, responses
    from moto.cloudwatch.exceptions import InvalidParameterCombination, InvalidParameterValue
    from moto.core.responses import ActionResult

    stock_update_state = models.Alarm.update_state
    stock_put_alarm = models.CloudWatchBackend.put_metric_alarm
    stock_put_metric_data = models.CloudWatchBackend.put_metric_data
    stock_statistic = models.Statistics.get_statistics_for_type

    def update_state(self: Any, reason: str, reason_data: str, state_value: str) -> None:
        old_value, old_reason = self.state_value, self.state_reason
        stock_update_state(self, reason, reason_data, state_value)
        if old_value == state_value:
            return
        history = getattr(self, "labkit_history", None)
        if history is None:
            history = self.labkit_history = []
        history.append(
            {
                "AlarmName": self.name,
                "AlarmType": "MetricAlarm" if self.rule is None else "CompositeAlarm",
                "Timestamp": self.state_updated_timestamp.replace(tzinfo=UTC),
                "HistoryItemType": "StateUpdate",
                "HistorySummary": f"Alarm updated from {old_value} to {state_value}",
                "HistoryData": json.dumps(
                    {
                        "version": "1.0",
                        "oldState": {"stateValue": old_value, "stateReason": old_reason},
                        "newState": {"stateValue": state_value, "stateReason": reason},
                    }
                ),
            }
        )
        del history[:-100]  # AWS keeps two weeks; a hundred changes per alarm is plenty here

    def put_metric_alarm(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = kwargs.get("name", args[0] if args else None)
        previous = self.alarms.get(name)
        alarm: Any = stock_put_alarm(self, *args, **kwargs)
        if previous is not None:
            # An update replaces the configuration and keeps the state (moto reset it to OK).
            for attr in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                setattr(alarm, attr, getattr(previous, attr))
            alarm.labkit_history = getattr(previous, "labkit_history", [])
        else:
            alarm.state_value = "INSUFFICIENT_DATA"  # as on AWS, until the first evaluation
        return alarm

    def describe_alarm_history(self: Any) -> Any:
        name = self._get_param("AlarmName")
        kind = self._get_param("HistoryItemType")
        start, end = self._get_param("StartDate"), self._get_param("EndDate")
        newest_first = self._get_param("ScanBy", "TimestampDescending") == "TimestampDescending"
        items = [
            item
            for alarm in self.cloudwatch_backend.alarms.values()
            if name in (None, alarm.name)
            for item in getattr(alarm, "labkit_history", [])
            if kind in (None, item["HistoryItemType"])
            and (start is None or item["Timestamp"] >= _aware(start))
            and (end is None or item["Timestamp"] <= _aware(end))
        ]
        items.sort(key=lambda item: item["Timestamp"], reverse=newest_first)
        limit = int(self._get_param("MaxRecords") or 100)
        return ActionResult({"AlarmHistoryItems": items[:limit]})

    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        # A distribution becomes one datum carrying its values and counts (stock moto stores one
        # datum per count: a busy load balancer's latencies would fill memory).
        plain = [m for m in metric_data if not m.get("Values")]
        for index, metric in enumerate(metric_data):
            self._validate_parameters_put_metric_data(metric, index + 1)
        for metric in metric_data:
            if metric.get("Values"):
                self.metric_data.append(
                    distribution_datum(
                        namespace,
                        metric["MetricName"],
                        [float(v) for v in metric["Values"]],
                        [float(c) for c in metric.get("Counts") or [1] * len(metric["Values"])],
                        metric.get("Dimensions") or [],
                        metric.get("Timestamp"),
                        metric.get("Unit"),
                    )
                )
        if plain:
            stock_put_metric_data(self, namespace, plain)

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if _is_percentile(stat):
            return percentile(self.metric_data, float(stat[1:]))
        return stock_statistic(self, stat)

    def get_metric_statistics(
        self: Any,
        namespace: str,
        metric_name: str,
        start_time: datetime,
        end_time: datetime,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None = None,
    ) -> list[Any]:
        start_time = start_time.replace(microsecond=0, tzinfo=None)
        end_time = end_time.replace(microsecond=0, tzinfo=None)
        if start_time >= end_time:
            raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
        wanted = dimension_key(dimensions)
        data = sorted(
            (
                md
                for md in self.get_all_metrics()
                if md.namespace == namespace
                and md.name == metric_name
                and start_time <= md.timestamp < end_time
                and (unit is None or md.unit == unit)
                and datum_dimension_key(md) == wanted  # AWS matches the dimension set exactly
            ),
            key=lambda md: md.timestamp,
        )
        buckets: dict[datetime, Any] = {}
        step = timedelta(seconds=period)
        for md in data:
            start = start_time + step * ((md.timestamp - start_time) // step)
            bucket = buckets.get(start)
            if bucket is None:
                bucket = buckets[start] = models.Statistics(stats, start)
            bucket.metric_data.append(md)
            bucket.unit = md.unit
        return list(buckets.values())

    def extended_statistics(self: Any) -> dict[str, float] | None:
        values = {s: percentile(self.metric_data, float(s[1:])) for s in self.stats if _is_percentile(s)}
        found = {s: v for s, v in values.items() if v is not None}
        return found or None

    def response_get_metric_statistics(self: Any) -> Any:
        statistics = self._get_param("Statistics", [])
        extended = self._get_param("ExtendedStatistics", [])
        if not statistics and not extended:
            raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
        datapoints = self.cloudwatch_backend.get_metric_statistics(
            self._get_param("Namespace"),
            self._get_param("MetricName"),
            self._get_param("StartTime"),
            self._get_param("EndTime"),
            self._get_int_param("Period"),
            statistics + extended,
            unit=self._get_param("Unit"),
            dimensions=self._get_param("Dimensions", []),
        )
        return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

    def dimension_lt(self: Any, other: Any) -> bool:
        # Stock __lt__ compares a value with the other's *name*, so sorted() orders dimensions
        # arbitrarily and GetMetricData's dimension match depends on the order they were given.
        return (self.name or "", self.value or "") < (other.name or "", other.value or "")

    _patch(models.Alarm, "update_state", update_state)
    _patch(models.CloudWatchBackend, "put_metric_alarm", put_metric_alarm)
    _patch(models.CloudWatchBackend, "put_metric_data", put_metric_data)
    _patch(models.CloudWatchBackend, "get_metric_statistics", get_metric_statistics)
    _patch(models.Statistics, "get_statistics_for_type", get_statistics_for_type)
    _patch(models.Statistics, "extended_statistics", property(extended_statistics))
    _patch(models.Dimension, "__lt__", dimension_lt)
    _patch(responses.CloudWatchResponse, "describe_alarm_history", describe_alarm_history)
    _patch(responses.CloudWatchResponse, "get_metric_statistics", response_get_metric_statistics)


# --- DynamoDB: conditional writes atomic ---


def _mend_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    writes = threading.RLock()  # transact_write_items calls put_item and update_item
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        stock = getattr(DynamoDBBackend, name)

        def serialized(self: Any, *args: Any, _stock: Any = stock, **kwargs: Any) -> Any:
            with writes:
                return _stock(self, *args, **kwargs)

        _patch(DynamoDBBackend, name, serialized)


# --- IAM: an OIDC provider's client ids (its audiences) changed in place ---


def _mend_oidc_client_ids() -> None:
    from moto.core.responses import EmptyResult
    from moto.iam.responses import IamResponse

    def change(add: bool) -> Callable[[Any], Any]:
        def handler(self: Any) -> Any:
            provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
            client_id = str(self._get_param("ClientID"))
            # Both are idempotent on AWS: adding a listed id or removing an absent one succeeds.
            if add and client_id not in provider.client_id_list:
                provider.client_id_list.append(client_id)
            elif not add and client_id in provider.client_id_list:
                provider.client_id_list.remove(client_id)
            return EmptyResult()

        return handler

    _patch(IamResponse, "add_client_id_to_open_id_connect_provider", change(True))
    _patch(IamResponse, "remove_client_id_from_open_id_connect_provider", change(False))


def _mend_rds() -> None:
    from moto.rds.models import DBInstance, DBSnapshot, MasterUserSecret, RDSBackend
    from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

    from labkit.sandbox.server.databases import ENGINE

    stock_address = DBInstance.address
    stock_create = RDSBackend.create_db_instance
    stock_init = DBInstance.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        stock_init(self, *args, **kwargs)
        self.dbi_resource_id = dbi_resource_id()

    def address(self: Any) -> str:
        return "127.0.0.1" if str(self.engine) == ENGINE else str(stock_address.fget(self))  # type: ignore[attr-defined]

    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        database = stock_create(self, db_kwargs)
        if str(database.engine) == ENGINE:
            database.port = _free_loopback_port()
        return database

    def secret_string(self: Any) -> str:
        password = secrets.token_urlsafe(24)
        return json.dumps({"username": str(self.resource.master_username), "password": password})

    def rds_managed(backend: Any, secret_id: str) -> Any:
        """The secret ``secret_id`` names when RDS manages it (its owning-service tag), else None:
        the others keep stock moto's behaviour."""
        secret = backend.secrets[secret_id] if backend._is_valid_identifier(secret_id) else None
        owner = {t.get("Key"): t.get("Value") for t in (getattr(secret, "tags", None) or [])}
        return secret if owner.get("aws:secretsmanager:owningService") == "rds" else None

    stock_rotate = SecretsManagerBackend.rotate_secret

    def rotate_secret(
        self: Any,
        secret_id: str,
        client_request_token: str | None = None,
        rotation_lambda_arn: str | None = None,
        rotation_rules: dict[str, Any] | None = None,
        rotate_immediately: bool = True,
    ) -> Any:
        """A secret that RDS manages is rotated by RDS itself (no Lambda): its schedule is kept, and
        unless told to wait a new password becomes current at once, which :mod:`.databases` sets on
        the server, as RDS does."""
        secret = rds_managed(self, secret_id)
        if secret is None:
            return stock_rotate(
                self, secret_id, client_request_token, rotation_lambda_arn, rotation_rules, rotate_immediately
            )
        secret.rotation_requested = secret.rotation_enabled = True
        if rotation_rules:
            secret.labkit_rotation_rules = dict(rotation_rules)
        if not rotate_immediately:
            return secret.to_short_dict()
        current = json.loads(self.get_secret_value(secret_id, None, "AWSCURRENT")["SecretString"])
        current["password"] = secrets.token_urlsafe(24)
        answer = self.put_secret_value(secret_id, json.dumps(current), None, None, ["AWSCURRENT"])
        secret.last_rotation_date = int(time.time())
        return answer

    stock_cancel = SecretsManagerBackend.cancel_rotate_secret

    def cancel_rotate_secret(self: Any, secret_id: str) -> Any:
        """Rotation that RDS manages (no Lambda) is turned off; stock moto refused any secret
        without a Lambda, so the destroy of a database's rotation schedule failed."""
        secret = rds_managed(self, secret_id)
        if secret is None or secret.is_deleted():
            return stock_cancel(self, secret_id)
        secret.rotation_enabled = False
        return secret.to_short_dict()

    stock_secret_dict = FakeSecret.to_dict

    def secret_dict(self: Any) -> dict[str, Any]:
        described: dict[str, Any] = stock_secret_dict(self)
        rules = getattr(self, "labkit_rotation_rules", None)
        if rules is not None and "RotationRules" in described:
            described["RotationRules"] = dict(rules)
        return described

    stock_from_snapshot = RDSBackend.restore_db_instance_from_db_snapshot
    stock_to_time = RDSBackend.restore_db_instance_to_point_in_time

    def from_snapshot(self: Any, from_snapshot_id: str, overrides: dict[str, Any]) -> Any:
        database: Any = stock_from_snapshot(self, from_snapshot_id, overrides)
        # An ARN names the snapshot after ":snapshot:"; an automated snapshot's own id has a colon
        # too (rds:NAME-DATE), so only an ARN's prefix is cut.
        snapshot_id = (
            from_snapshot_id.split(":snapshot:", 1)[1]
            if from_snapshot_id.startswith("arn:")
            else from_snapshot_id
        )
        database.labkit_restored_from = ("snapshot", snapshot_id)
        return database

    def to_point_in_time(self: Any, source: str, target: str, overrides: dict[str, Any]) -> Any:
        database: Any = stock_to_time(self, source, target, overrides)
        database.labkit_restored_from = ("instance", source)
        return database

    stock_snapshot_init = DBSnapshot.__init__

    def snapshot_init(self: Any, *args: Any, **kwargs: Any) -> None:
        """A PostgreSQL snapshot is ``creating`` until :mod:`.databases` holds its data."""
        stock_snapshot_init(self, *args, **kwargs)
        if str(self.database.engine) == ENGINE:
            self.status = "creating"

    _patch(DBSnapshot, "__init__", snapshot_init)
    _patch(RDSBackend, "restore_db_instance_from_db_snapshot", from_snapshot)
    _patch(RDSBackend, "restore_db_instance_to_point_in_time", to_point_in_time)
    _patch(DBInstance, "__init__", init)
    _patch(DBInstance, "address", property(address))
    _patch(RDSBackend, "create_db_instance", create_db_instance)
    _patch(MasterUserSecret, "_generate_secret_string", secret_string)
    _patch(SecretsManagerBackend, "rotate_secret", rotate_secret)
    _patch(FakeSecret, "to_dict", secret_dict)
    _patch(SecretsManagerBackend, "cancel_rotate_secret", cancel_rotate_secret)


def dbi_resource_id() -> str:
    """A new RDS instance's resource id, shaped as RDS makes them: ``db-`` and 26 base32 characters."""
    return "db-" + base64.b32encode(secrets.token_bytes(20)).decode()[:26]


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _patch(cls: type, name: str, replacement: object) -> None:
    """Replace ``cls.name`` (moto's classes are typed; setattr keeps the patching explicit)."""
    setattr(cls, name, replacement)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_percentile(stat: str) -> bool:
    try:
        return stat[:1] == "p" and 0 < float(stat[1:]) <= 100
    except ValueError:
        return False


def dimension_key(dimensions: Sequence[dict[str, str]]) -> frozenset[tuple[str, str]]:
    """A dimension list as a set, so that order does not matter when matching."""
    return frozenset((d["Name"], d["Value"]) for d in dimensions)


def datum_dimension_key(datum: Any) -> frozenset[tuple[str, str]]:
    """The dimension set of one of moto's stored data points."""
    return frozenset((d.name, d.value) for d in datum.dimensions)


def distribution_datum(
    namespace: str,
    name: str,
    values: list[float],
    counts: list[float],
    dimensions: list[dict[str, str]],
    timestamp: datetime | None,
    unit: str | None,
) -> Any:
    """One stored datum for a distribution: moto's aggregated datum plus its values and counts."""
    from moto.cloudwatch.models import MetricAggregatedDatum

    datum = MetricAggregatedDatum(
        namespace=namespace,
        name=name,
        min_stat=min(values),
        max_stat=max(values),
        sample_count=sum(counts),
        sum_stat=sum(v * c for v, c in zip(values, counts, strict=True)),
        dimensions=dimensions,
        timestamp=timestamp.replace(tzinfo=None) if timestamp else None,
        unit=unit,
    )
    # Kept beside moto's aggregate so that percentiles can be answered (and pickled with it).
    datum.labkit_values = list(zip(values, counts, strict=True))  # type: ignore[attr-defined]
    return datum


def percentile(data: Sequence[Any], pct: float) -> float | None:
    """The ``pct`` percentile over single values and distributions (None when there are none).

    Aggregated data without a distribution (``StatisticValues``) carry no values to rank, as on
    AWS, where percentiles need raw values or distributions too.
    """
    weighted: list[tuple[float, float]] = []
    for datum in data:
        if hasattr(datum, "labkit_values"):
            weighted += datum.labkit_values
        elif hasattr(datum, "value"):
            weighted.append((float(datum.value), 1.0))
    if not weighted:
        return None
    weighted.sort()
    total = sum(count for _, count in weighted)
    rank = max(1.0, math.ceil(pct / 100 * total))  # nearest-rank
    seen = 0.0
    for value, count in weighted:
        seen += count
        if seen >= rank:
            return value
    return weighted[-1][0]
