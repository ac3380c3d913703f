"""Which instances the sandbox runs apps for, read from moto's EC2 and S3 models.

Call these with the sandbox's model lock held, so that no request changes a model mid-read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: ``NAME="value"`` lines in user data, as the fleet module's template writes them.
_ASSIGNMENT = re.compile(r'^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=["\']?([^"\'\s]*)["\']?\s*$', re.MULTILINE)
_S3_URI = re.compile(r"^s3://([^/]+)/(.+)$")
#: The user data's assignments that app.service passes to the app as they are (the database's).
APP_SETTINGS_PREFIX = "DATABASE_"
#: How long an instance's credentials last. EC2 renews an instance's credentials through IMDS; the
#: sandbox hands them to the app once, in its environment, so they last as long as a role session can.
INSTANCE_CREDENTIALS_S = 12 * 3600

# Instances whose user data could not be read, so that a loop running twice a second logs each once.
_reported: set[str] = set()


@dataclass(frozen=True)
class InstanceSpec:
    """A running EC2 instance whose user data names a release artifact to serve."""

    instance_id: str
    account_id: str
    region: str
    bucket: str
    key: str
    color: str
    version: str
    #: The user data's ``DATABASE_*`` assignments, which app.service passes to the app.
    settings: tuple[tuple[str, str], ...] = ()
    #: The role of the instance's instance profile (from its launch template), or None.
    role_arn: str | None = None

    @property
    def artifact_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_user_data(text: str) -> dict[str, str]:
    """The ``NAME="value"`` assignments of a user data script."""
    return dict(_ASSIGNMENT.findall(text))


def spec_from_user_data(
    instance_id: str, account_id: str, region: str, text: str, role_arn: str | None = None
) -> InstanceSpec | None:
    """The release an instance's user data installs (and the settings it gives the app), or None
    when it names none."""
    values = parse_user_data(text)
    uri = values.get("ARTIFACT_URI", "")
    match = _S3_URI.match(uri)
    if not match:
        return None
    return InstanceSpec(
        instance_id=instance_id,
        account_id=account_id,
        region=region,
        bucket=match.group(1),
        key=match.group(2),
        color=values.get("APP_COLOR", ""),
        version=values.get("APP_VERSION", ""),
        settings=tuple(sorted((k, v) for k, v in values.items() if k.startswith(APP_SETTINGS_PREFIX) and v)),
        role_arn=role_arn,
    )


def instance_role(backend: Any, instance: Any, account_id: str) -> str | None:
    """The ARN of the role an instance's instance profile holds, or None.

    moto keeps no instance profile on the instances an Auto Scaling group launches, so the profile
    is read from the launch template version the instance was launched from (the tags
    ``aws:ec2launchtemplate:id``/``version`` that EC2 puts on it), as EC2 takes it from there.
    """
    from moto.utilities.utils import get_partition

    from labkit.sandbox.server.iam import profile_roles

    profile = instance.iam_instance_profile
    if not isinstance(profile, dict):
        tags = backend.tags.get(instance.id, {})
        template_id = tags.get("aws:ec2launchtemplate:id")
        if not template_id:
            return None
        try:
            version = backend.get_launch_template(template_id).get_version(
                tags["aws:ec2launchtemplate:version"]
            )
        except Exception:  # the template (version) was deleted since: the instance keeps running without
            return None
        profile = version.data.get("IamInstanceProfile") or {}
    roles = profile_roles(account_id, get_partition(backend.region_name), profile)
    return roles[0] if roles else None


def app_environment(spec: InstanceSpec, endpoint: str) -> dict[str, str]:
    """What an instance's app gets on top of :func:`labkit.sandbox.server.instances.instance_env`:
    nothing without a database; with one, the user data's ``DATABASE_*`` settings, the sandbox's
    API (``AWS_ENDPOINT_URL``, for the secret), the instance's region, and its role's credentials,
    which EC2 serves through the metadata service. Call with the model lock held."""
    if not spec.settings:
        return {}
    return {
        **dict(spec.settings),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": spec.region,
        **instance_credentials(spec),
    }


def instance_credentials(spec: InstanceSpec) -> dict[str, str]:
    """Temporary credentials of the instance's role as AWS's environment variables (empty without a
    role): a session of that role as ``sts:AssumeRole`` makes one, named after the instance as EC2
    names it, so that the sandbox authorizes the app's calls by the role's policies."""
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    if spec.role_arn is None:
        return {}
    session = sts_backends[spec.account_id][get_partition(spec.region)].assume_role(
        region_name=spec.region,
        role_session_name=spec.instance_id,
        role_arn=spec.role_arn,
        policy="",
        duration=INSTANCE_CREDENTIALS_S,
        external_id="",
    )
    return {
        "AWS_ACCESS_KEY_ID": session.access_key_id,
        "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
        "AWS_SESSION_TOKEN": session.session_token,
    }


def running_instances() -> dict[str, InstanceSpec]:
    """Every running instance whose user data names a release artifact (ASG launches, mostly).

    On EC2 any instance runs its user data, so an instance started with RunInstances from the
    fleet's launch template gets a process as well.
    """
    from moto.ec2.models import ec2_backends

    found: dict[str, InstanceSpec] = {}
    backend: Any
    for account_id, region, backend in list(ec2_backends.iter_backends()):
        for reservation in list(backend.reservations.values()):
            for instance in list(reservation.instances):
                if instance.state != "running" or instance.user_data is None:
                    continue
                try:
                    text = instance.user_data.decode()
                except (ValueError, UnicodeDecodeError):
                    if instance.id not in _reported:
                        _reported.add(instance.id)
                        log.warning("instance %s: user data is not base64 text", instance.id)
                    continue
                spec = spec_from_user_data(
                    instance.id, account_id, region, text, instance_role(backend, instance, account_id)
                )
                if spec is not None:
                    found[instance.id] = spec
    return found


def read_artifact(spec: InstanceSpec) -> bytes | None:
    """The artifact's bytes from the sandbox's S3, None when there is no such object (yet)."""
    from moto.s3.models import s3_backends

    backend: Any = s3_backends[spec.account_id]["aws"]
    bucket = backend.buckets.get(spec.bucket)
    if bucket is None:
        return None
    key = bucket.keys.get(spec.key)
    if key is None or getattr(key, "is_delete_marker", False):
        return None
    return bytes(key.value)
