"""IAM enforced in the sandbox: every API call is authorized against the caller's identity policies.

moto has an authorization hook in every service (``ActionAuthenticatorMixin``); :func:`mend`
replaces what it does, because stock moto passes no resource or context to most checks (so an
``Allow`` naming a resource or a condition never matched), answers every service with its XML 403,
and knows nothing of the sandbox's admin. While enforcement is on (:func:`set_enforced`):

- **The sandbox's admin**: any access key id in a form AWS never issues (not ``AKIA``/``ASIA`` and 16
  more characters), such as labkit's own ``test``, is the account's root and may do everything.
  That keeps every existing path (Terraform, the deploy controller, the lessons) working unchanged.
- **IAM users and assumed roles** (``AKIA...``/``ASIA...`` keys that moto issued) are authorized by
  :mod:`labkit.identity.policy` against their inline and attached policies. An inactive key, a
  wrong session token or an expired session is refused as AWS refuses them; an unknown key too.
- **What the sandbox can tell**: the action (the service's IAM prefix and the operation), S3's
  bucket and key ARNs, an assumed role's trust policy for ``sts:AssumeRole``, and the condition
  keys ``aws:RequestedRegion``, ``aws:PrincipalArn``, ``aws:SecureTransport``, S3's ``s3:prefix``
  and ``iam:PassedToService``/``iam:AWSServiceName`` (of the implied ``iam:PassRole`` and
  ``iam:CreateServiceLinkedRole`` below). Other resources are unknown
  (an ``Allow`` applies whatever its ``Resource``), and other condition keys hold: the sandbox
  proves which *actions* a role needs, not its resource ARNs.
- **What AWS checks besides the call's own action** (:func:`implied`), asked of the caller after it:
  ``CreateAutoScalingGroup``/``UpdateAutoScalingGroup`` naming a launch template need
  ``ec2:RunInstances`` and, when the template's version names an instance profile,
  ``iam:PassRole`` on the profile's role (passed to ``ec2.amazonaws.com``); an S3 object write
  (``PutObject``, ``CreateMultipartUpload``) that SSE-KMS encrypts with a customer managed key (the
  request's or the bucket's default) needs ``kms:GenerateDataKey`` on that key, and ``GetObject`` of
  an object so encrypted ``kms:Decrypt`` (AWS's managed ``aws/s3`` key needs neither: its key policy
  admits the account's callers through S3); ``GetObject``/``HeadObject`` of a key that does not
  exist needs ``s3:ListBucket`` on the bucket, without which AWS answers 403 instead of 404; the
  first load balancer (``CreateLoadBalancer``) and Auto Scaling group of an account need
  ``iam:CreateServiceLinkedRole`` (condition key ``iam:AWSServiceName``) for the service-linked
  role that AWS then creates, as the sandbox does (:data:`SERVICE_LINKED_ROLES`) for any caller
  while enforcement is on.
- **Signatures are not verified**: the caller is known by its access key and session token (no
  lesson is about a wrong secret key, and recomputing SigV4 for every call of every client is not
  needed to prove what an identity may do).
- **Each service's own error**: ``AccessDenied`` (query services, CloudWatch), ``AccessDeniedException``
  (JSON services such as DynamoDB), ``UnauthorizedOperation`` (EC2), S3's XML ``AccessDenied``,
  serialized by moto in the protocol of the request.
- ``sts:AssumeRoleWithWebIdentity`` and ``sts:AssumeRoleWithSAML`` take no credentials, as on AWS; the
  web identity call validates its token instead (:mod:`labkit.sandbox.server.oidc`).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labkit.identity.policy import Decision, Request, evaluate
from labkit.sandbox.server import trail

#: Access key ids that AWS issues (users: AKIA, temporary: ASIA). Any other id is the sandbox's admin.
AWS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
#: Operations that AWS serves without credentials.
UNSIGNED_OPERATIONS = frozenset({"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
#: Signing names whose IAM action prefix differs.
_IAM_PREFIX = {"monitoring": "cloudwatch", "elasticloadbalancingv2": "elasticloadbalancing", "tagging": "tag"}
#: S3 operations whose IAM action has another name.
_S3_ACTIONS = {"HeadBucket": "ListBucket", "HeadObject": "GetObject", "ListObjects": "ListBucket",
               "ListObjectsV2": "ListBucket"}  # fmt: skip
#: Condition keys the sandbox fills in; any other key holds (see the module docstring).
KNOWN_KEYS = frozenset(
    {
        "aws:requestedregion",
        "aws:principalarn",
        "aws:securetransport",
        "s3:prefix",
        "iam:passedtoservice",
        "iam:awsservicename",
    }
)
#: The service-linked role AWS creates at an operation's first call in an account: (IAM prefix,
#: operation) -> (service, role name).
SERVICE_LINKED_ROLES = {
    ("elasticloadbalancing", "CreateLoadBalancer"): (
        "elasticloadbalancing.amazonaws.com",
        "AWSServiceRoleForElasticLoadBalancing",
    ),
    ("autoscaling", "CreateAutoScalingGroup"): ("autoscaling.amazonaws.com", "AWSServiceRoleForAutoScaling"),
}

_lock = threading.Lock()
_enforced = False


def set_enforced(on: bool) -> bool:
    """Switch enforcement on or off for this process; the previous setting."""
    global _enforced
    with _lock:
        previous, _enforced = _enforced, on
    return previous


def enforced() -> bool:
    return _enforced


def is_admin_key(access_key_id: str) -> bool:
    return AWS_KEY_ID.match(access_key_id) is None


@dataclass(frozen=True)
class Refusal:
    """Why a call is refused, by kind: ``denied`` (policies), ``invalid`` (unknown or inactive
    credentials), ``expired`` (an expired session), ``missing`` (no credentials at all)."""

    kind: str
    message: str


def mend(patch: Callable[[type, str, object], None]) -> None:
    """Install the authorization hook (it does nothing until :func:`set_enforced` turns it on)."""
    from moto.core.authorization import ActionAuthenticatorMixin

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if not _enforced:
            return
        asked: list[Request] = []
        refusal = _check(self, iam_request_cls.__name__ == "S3IAMRequest", resource, asked)
        trail.record(self, _credential(self), refusal, asked)  # the sandbox's CloudTrail (.trail)
        if refusal is not None:
            _raise(self, iam_request_cls.__name__ == "S3IAMRequest", refusal)
        if (linked := _service_linked_role(self)) is not None and not _role_exists(self, linked[1]):
            _create_service_linked_role(self, *linked)

    patch(ActionAuthenticatorMixin, "_authenticate_and_authorize_action", authorize)


# --- who calls, and may they ---


@dataclass(frozen=True)
class _Credential:
    key_id: str
    region: str
    service: str


def _credential(request: Any) -> _Credential | None:
    """The access key, region and signing name of a SigV4 request (header or presigned URL)."""
    authorization = str(request.headers.get("Authorization") or "")
    scope = authorization.partition("Credential=")[2].partition(",")[0]
    if not scope:
        query = request.querystring if hasattr(request, "querystring") else {}
        scope = (query.get("X-Amz-Credential") or [""])[0]
    parts = scope.split("/")
    if len(parts) < 4 or not parts[0]:
        return None
    return _Credential(key_id=parts[0], region=parts[2], service=parts[3])


def _check(request: Any, s3: bool, resource: str, asked: list[Request]) -> Refusal | None:
    """Why ``request`` is refused, or None; the questions put to the caller's policies are added
    to ``asked``."""
    operation = called = str(request._get_action())
    credential = _credential(request)
    if credential is None:
        if operation in UNSIGNED_OPERATIONS:
            return None
        return Refusal("missing", "Request is missing Authentication Token")
    if is_admin_key(credential.key_id):
        return None
    prefix = _IAM_PREFIX.get(credential.service, credential.service)
    if s3:
        operation = _S3_ACTIONS.get(operation, operation)
    caller = _caller(request, credential)
    if isinstance(caller, Refusal):
        return caller
    arn, documents = caller
    if (prefix, operation) == ("sts", "GetCallerIdentity"):  # always allowed, even under a Deny, as on AWS
        return None
    context: dict[str, list[str]] = {
        "aws:requestedregion": [credential.region],
        "aws:principalarn": [arn],
        "aws:securetransport": ["false"],  # plain HTTP on loopback
    }
    if s3 and "prefix" in request.querystring:
        context["s3:prefix"] = [str(request.querystring["prefix"][0])]
    known = resource if (s3 or resource.startswith("arn:")) else None
    own = iam_actions(prefix, operation, request.raw_body if prefix == "dynamodb" else b"")
    for action, on, extra in [*((a, known, {}) for a in own), *implied(request, prefix, called, known)]:
        question = Request(action, on, {**context, **extra}, knows=KNOWN_KEYS.__contains__)
        asked.append(question)
        decision = evaluate(documents, question)
        if decision is Decision.ALLOWED and action == "sts:AssumeRole":
            decision = _trust_decision(request, resource, arn)
        if decision is not Decision.ALLOWED:
            return _denied(arn, action, on, decision)
    return None


#: One more question AWS puts to the caller's policies: (action, resource ARN or None, context).
Implied = tuple[str, str | None, dict[str, list[str]]]


def implied(request: Any, prefix: str, operation: str, resource: str | None) -> list[Implied]:
    """What AWS checks for the caller of ``operation`` besides its own action (see the module
    docstring); ``resource`` is the call's own (S3's object or bucket ARN)."""
    checks: list[Implied] = []
    if (linked := SERVICE_LINKED_ROLES.get((prefix, operation))) is not None and not _role_exists(
        request, linked[1]
    ):
        service, name = linked
        role = (
            f"arn:{_partition(request)}:iam::{request.current_account}:role/aws-service-role/{service}/{name}"
        )
        checks.append(("iam:CreateServiceLinkedRole", role, {"iam:awsservicename": [service]}))
    if prefix == "autoscaling" and operation in ("CreateAutoScalingGroup", "UpdateAutoScalingGroup"):
        return checks + _launch_template_checks(request)
    if prefix == "s3" and resource is not None:
        return checks + _s3_object_checks(request, operation, resource)
    return checks


def _partition(request: Any) -> str:
    from moto.utilities.utils import get_partition

    return str(get_partition(request.region))


def _service_linked_role(request: Any) -> tuple[str, str] | None:
    """(service, role name) of the service-linked role a call of ``request`` would create."""
    credential = _credential(request)
    if credential is None:
        return None
    prefix = _IAM_PREFIX.get(credential.service, credential.service)
    return SERVICE_LINKED_ROLES.get((prefix, str(request._get_action())))


def _role_exists(request: Any, name: str) -> bool:
    from moto.iam.models import iam_backends

    return any(r.name == name for r in iam_backends[request.current_account][_partition(request)].get_roles())


def _create_service_linked_role(request: Any, service: str, name: str) -> None:
    """Create the service-linked role as AWS does at the service's first use in the account."""
    from moto.iam.models import iam_backends

    trust = {"Effect": "Allow", "Principal": {"Service": [service]}, "Action": ["sts:AssumeRole"]}
    iam_backends[request.current_account][_partition(request)].create_role(
        name,
        json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
        f"/aws-service-role/{service}/",
        permissions_boundary=None,
        description=f"Service-linked role of {service}",
        tags=[],
        max_session_duration="3600",
        linked_service=service,
    )


def _launch_template_checks(request: Any) -> list[Implied]:
    from moto.ec2.models import ec2_backends

    named = request._get_param("LaunchTemplate") or (
        (request._get_params().get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {})
    ).get("LaunchTemplateSpecification")
    if not named:
        return []  # no launch template in the call: AWS checks nothing more
    checks: list[Implied] = [("ec2:RunInstances", None, {})]
    ec2 = ec2_backends[request.current_account][request.region]
    try:
        template = (
            ec2.get_launch_template(named["LaunchTemplateId"])
            if named.get("LaunchTemplateId")
            else ec2.get_launch_template_by_name(named.get("LaunchTemplateName", ""))
        )
        version = template.get_version(named.get("Version") or "$Default")
    except Exception:  # no such template or version: the call itself fails, as on AWS
        return checks
    profile = version.data.get("IamInstanceProfile") or {}
    passed = {"iam:passedtoservice": ["ec2.amazonaws.com"]}
    return checks + [
        ("iam:PassRole", role, passed)
        for role in profile_roles(request.current_account, _partition(request), profile)
    ]


def profile_roles(account_id: str, partition: str, profile: dict[str, Any]) -> list[str]:
    """The ARNs of the roles of the instance profile a launch template names (by ARN or name)."""
    from moto.iam.models import iam_backends

    iam = iam_backends[account_id][partition]
    try:
        if profile.get("Arn"):
            found = iam.get_instance_profile_by_arn(profile["Arn"])
        elif profile.get("Name"):
            found = iam.get_instance_profile(profile["Name"])
        else:
            return []
    except Exception:  # a profile that does not exist: the call fails on its own
        return []
    return [role.arn for role in found.roles]


def _s3_object_checks(request: Any, operation: str, resource: str) -> list[Implied]:
    from moto.s3.models import s3_backends

    bucket_name, _, key_name = resource.split(":::", 1)[-1].partition("/")
    if not key_name or operation not in ("PutObject", "CreateMultipartUpload", "GetObject", "HeadObject"):
        return []
    partition = _partition(request)
    try:
        bucket = s3_backends[request.current_account][partition].get_bucket(bucket_name)
    except Exception:  # no such bucket: the call fails on its own
        return []
    if operation in ("PutObject", "CreateMultipartUpload"):
        if "x-amz-copy-source" in request.headers or "partNumber" in request.querystring:
            return []  # copies and parts: not modelled
        rule = (bucket.encryption or {}).get("Rule") or {}
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        algorithm = request.headers.get("x-amz-server-side-encryption") or default.get("SSEAlgorithm")
        key_id = request.headers.get("x-amz-server-side-encryption-aws-kms-key-id") or default.get(
            "KMSMasterKeyID"
        )
        return _kms_check(request, "kms:GenerateDataKey", key_id if algorithm == "aws:kms" else None)
    if "versionId" in request.querystring:
        return []  # reads of one version: not modelled
    stored = bucket.keys.get(key_name)
    if stored is None or not hasattr(stored, "encryption"):  # missing, or deleted (a delete marker):
        # AWS answers 404 only to a caller who may list the bucket
        return [("s3:ListBucket", f"arn:{partition}:s3:::{bucket_name}", {})]
    if operation == "GetObject" and stored.encryption == "aws:kms":
        return _kms_check(request, "kms:Decrypt", stored.kms_key_id)
    return []


def _kms_check(request: Any, action: str, key_id: str | None) -> list[Implied]:
    """``action`` on the KMS key ``key_id`` (an id, ARN or alias) as its key ARN; none for AWS's
    managed ``aws/s3`` key (no ``key_id``)."""
    from moto.kms.models import kms_backends

    if not key_id:
        return []
    if key_id.startswith("arn:") and ":key/" in key_id:
        return [(action, key_id, {})]
    kms = kms_backends[request.current_account][request.region]
    try:
        key = kms.keys[kms.any_id_to_key_id(key_id)]
    except Exception:  # a key that does not exist: S3 refuses the call on its own
        return []
    return [(action, str(key.arn), {})]


def iam_actions(prefix: str, operation: str, body: bytes = b"") -> list[str]:
    """The IAM actions a call needs: its own, except DynamoDB's transactions, which need the action
    of each item they hold (``Put`` needs ``dynamodb:PutItem``, and so on), as on AWS."""
    if prefix == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        try:
            items = json.loads(body or b"{}").get("TransactItems") or []
        except (ValueError, AttributeError):
            items = []
        kinds = dict.fromkeys(kind for item in items for kind in item)
        needed = [f"dynamodb:{_TRANSACT_ACTIONS.get(kind, kind)}" for kind in kinds]
        return needed or [f"dynamodb:{operation}"]
    return [f"{prefix}:{operation}"]


#: The IAM action of each kind of item in a DynamoDB transaction.
_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}  # fmt: skip


def _denied(arn: str, action: str, known: str | None, decision: Decision) -> Refusal:
    why = (
        "with an explicit deny in an identity-based policy"
        if decision is Decision.EXPLICIT_DENY
        else f"because no identity-based policy allows the {action} action"
    )
    on = f" on resource: {known}" if known else ""
    return Refusal("denied", f"User: {arn} is not authorized to perform: {action}{on} {why}")


def _caller(request: Any, credential: _Credential) -> tuple[str, list[Any]] | Refusal:
    """(ARN, policy documents) of the IAM user or assumed role that holds the key."""
    from moto.iam.access_control import AssumedRoleAccessKey, CreateAccessKeyFailure, IAMUserAccessKey
    from moto.iam.models import Policy, iam_backends
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    account, partition = request.current_account, get_partition(credential.region)
    headers = request.headers
    invalid = Refusal("invalid", "The security token included in the request is invalid.")
    try:
        if credential.key_id.startswith("ASIA") and "X-Amz-Security-Token" in headers:
            session = next(
                (
                    r
                    for r in sts_backends[account][partition].assumed_roles
                    if r.access_key_id == credential.key_id
                ),
                None,
            )
            if session is not None and _aware(session.expiration) <= datetime.now(UTC):
                return Refusal("expired", "The security token included in the request is expired")
            key: Any = AssumedRoleAccessKey(account, partition, credential.key_id, headers)
        else:
            key = IAMUserAccessKey(account, partition, credential.key_id, headers)
            iam = iam_backends[account][partition]
            user = iam.get_user(key._owner_user_name)
            if any(k.access_key_id == credential.key_id and k.status != "Active" for k in user.access_keys):
                return invalid
        policies = key.collect_policies()
    except CreateAccessKeyFailure:
        return invalid
    except Exception as exc:  # the role or user was deleted under the session: nothing is allowed
        if type(exc).__name__ not in ("NoSuchEntity", "NotFoundException", "IAMNotFoundException"):
            raise
        policies = []
    documents: list[Any] = []
    for policy in policies:
        if isinstance(policy, Policy):
            documents.append(next(v.document for v in policy.versions if v.is_default))
        elif isinstance(policy, dict):
            documents.append(policy["policy_document"])
        else:
            documents.append(policy)
    return key.arn, documents


def _trust_decision(request: Any, role_arn: str, caller_arn: str) -> Decision:
    """Whether the role's trust policy admits the caller (``sts:AssumeRole``)."""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    account = request.current_account
    try:
        role = iam_backends[account][get_partition(request.region)].get_role_by_arn(role_arn)
    except Exception:  # no such role: AWS answers AccessDenied too
        return Decision.IMPLICIT_DENY
    root = f"arn:{get_partition(request.region)}:iam::{account}:root"
    principal = {"AWS": [caller_arn, root, account]}
    return evaluate([role.assume_role_policy_document], Request("sts:AssumeRole", None, principal=principal))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- each service's own error ---


def error_code(service_metadata: dict[str, Any], kind: str) -> tuple[str, int]:
    """(AWS's error code, HTTP status) of a refusal of ``kind`` in a service with ``service_metadata``
    (botocore's: ``protocol``, ``protocols``, ``awsQueryCompatible``, ``endpointPrefix``)."""
    if service_metadata.get("endpointPrefix") == "ec2":
        return {"denied": "UnauthorizedOperation", "expired": "RequestExpired"}.get(kind, "AuthFailure"), (
            403 if kind == "denied" else 401
        )
    protocols = service_metadata.get("protocols") or [service_metadata.get("protocol")]
    json_style = protocols[0] in ("json", "rest-json", "smithy-rpc-v2-cbor")
    query_codes = "awsQueryCompatible" in service_metadata or not json_style
    if query_codes:
        return _QUERY_CODES[kind], 403
    return _JSON_CODES[kind], 400


#: How AWS names a JSON error's ``__type`` where it differs from moto's serializer (the target prefix).
_JSON_TYPE_NAMESPACE = {"dynamodb": "com.amazonaws.dynamodb.v20120810"}
_QUERY_CODES = {
    "denied": "AccessDenied",
    "invalid": "InvalidClientTokenId",
    "expired": "ExpiredToken",
    "missing": "MissingAuthenticationToken",
}
_JSON_CODES = {
    "denied": "AccessDeniedException",
    "invalid": "UnrecognizedClientException",
    "expired": "ExpiredTokenException",
    "missing": "MissingAuthenticationTokenException",
}


def _raise(request: Any, s3: bool, refusal: Refusal) -> None:
    from moto.core.utils import get_service_model

    if s3:
        _raise_s3(request, refusal)
    code, status = error_code(get_service_model(request.boto3_service_name).metadata, refusal.kind)
    answer_error(request, code, refusal.message, status)


def answer_error(request: Any, code: str, message: str, status: int) -> None:
    """Raise what makes moto answer ``request`` with error ``code`` in the request's own protocol
    (JSON, CBOR, query or EC2 XML), with HTTP ``status``."""
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult
    from werkzeug.exceptions import HTTPException

    with warnings.catch_warnings():  # moto warns that a code is not in the service's model (most are not)
        warnings.simplefilter("ignore")
        _, headers, body = request.serialized(ActionResult(_refused(ServiceException)(code, message)))
    namespace = _JSON_TYPE_NAMESPACE.get(request.boto3_service_name)
    if namespace and isinstance(body, str | bytes) and body[:1] in ("{", b"{"):
        body = json.dumps({"__type": f"{namespace}#{code}", "message": message})
    headers = {k: str(v) for k, v in headers.items() if k.lower() != "status"}
    request.response_headers.update(headers)  # moto's authorization path answers with these

    class Answer(HTTPException):
        def get_headers(self, *_args: Any, **_kwargs: Any) -> list[tuple[str, str]]:
            return list(headers.items())  # moto's operation path answers with these

    answer = Answer(description=body)
    answer.code = status
    raise answer


@functools.cache
def _refused(base: type) -> type:
    """A ServiceException subclass outside moto's packages: moto's serializer then takes the error's
    shape from the service of the request alone (it would look for a service named after the module)."""
    return type("Refused", (base,), {"__module__": __name__})


def _raise_s3(request: Any, refusal: Refusal) -> None:
    from moto.s3 import exceptions

    bucket = request.data.get("BucketName") if isinstance(request.data, dict) else None
    # S3 answers an anonymous request to a bucket that grants the public nothing as it answers a
    # denied one: 403 AccessDenied. A caller of the bucket's own account is told which action no
    # policy allows, as AWS has told them since 2023 ("additional context in access denied errors").
    if refusal.kind == "denied":
        raise exceptions.S3ClientError("AccessDenied", refusal.message)
    if refusal.kind == "missing":
        raise (
            exceptions.BucketAccessDeniedError(bucket=bucket) if bucket else exceptions.S3AccessDeniedError()
        )
    if refusal.kind == "invalid":
        if bucket:
            raise exceptions.BucketInvalidAccessKeyIdError(bucket=bucket)
        raise exceptions.S3InvalidAccessKeyIdError()
    if bucket:
        raise exceptions.BucketInvalidTokenError(bucket=bucket)
    raise exceptions.S3InvalidTokenError()
