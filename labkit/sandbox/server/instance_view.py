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

    @property
    def artifact_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_user_data(text: str) -> dict[str, str]:
    """The ``NAME="value"`` assignments of a user data script."""
    return dict(_ASSIGNMENT.findall(text))


def spec_from_user_data(instance_id: str, account_id: str, region: str, text: str) -> InstanceSpec | None:
    """The release an instance's user data installs, or None when it names none."""
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
    )


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
                spec = spec_from_user_data(instance.id, account_id, region, text)
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
