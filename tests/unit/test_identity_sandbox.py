"""The sandbox's IAM enforcement and OIDC issuer (labkit.sandbox.server.iam, .oidc), on moto in process,
and `labkit ci credentials` against them."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from typer.testing import CliRunner

from labkit.cli import app
from labkit.errors import ConfigError, WebIdentityRejected
from labkit.identity.github import WorkflowRun
from labkit.identity.issuer import Issuer
from labkit.identity.jwt import decode_unverified, signature_valid
from labkit.sandbox.server import iam, oidc, trail
from labkit.sandbox.server.mends import apply_mends
from labkit.settings import SANDBOX_IAM_ENV, sandbox_iam_enforced
from labkit.target import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY
from tests.workflow_commands import CI_CREDENTIALS

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPO = "octo/lab"


@pytest.fixture()
def enforced(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    """moto in process with the sandbox's mends, IAM enforced; the admin's session."""
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    apply_mends(None)
    with mock_aws():
        previous = iam.set_enforced(True)
        try:
            yield boto3.session.Session(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY, region_name=REGION)
        finally:
            iam.set_enforced(previous)


def user_session(admin: boto3.session.Session, *statements: dict[str, Any]) -> boto3.session.Session:
    """A session of a new IAM user whose one inline policy has ``statements``."""
    client = admin.client("iam")
    name = f"user{len(client.list_users()['Users'])}"
    client.create_user(UserName=name)
    if statements:
        document = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
        client.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=document)
    key = client.create_access_key(UserName=name)["AccessKey"]
    return boto3.session.Session(key["AccessKeyId"], key["SecretAccessKey"], region_name=REGION)


def error_code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


#: One call per service the deploy uses, and AWS's code when identity policies do not allow it.
DENIED = [
    ("s3", lambda c: c.list_buckets(), "AccessDenied"),
    ("dynamodb", lambda c: c.list_tables(), "AccessDeniedException"),
    ("elbv2", lambda c: c.describe_load_balancers(), "AccessDenied"),
    ("autoscaling", lambda c: c.describe_auto_scaling_groups(), "AccessDenied"),
    ("ec2", lambda c: c.describe_vpcs(), "UnauthorizedOperation"),
    ("cloudwatch", lambda c: c.describe_alarms(), "AccessDenied"),
    ("sts", lambda c: c.get_session_token(), "AccessDenied"),
    ("iam", lambda c: c.list_roles(), "AccessDenied"),
]


@pytest.mark.parametrize(("service", "call", "code"), DENIED, ids=[d[0] for d in DENIED])
def test_each_service_refuses_in_its_own_format(
    enforced: boto3.session.Session, service: str, call: Callable[[Any], object], code: str
) -> None:
    nobody = user_session(enforced)
    assert error_code(lambda: call(nobody.client(service))) == code
    call(enforced.client(service))  # the sandbox's admin (labkit's own credentials) may
    anyone = user_session(enforced, {"Effect": "Allow", "Action": "*", "Resource": "*"})
    call(anyone.client(service))


def test_dynamodb_answers_json_as_aws_does(enforced: boto3.session.Session) -> None:
    client = user_session(enforced).client("dynamodb")
    bodies: list[bytes] = []
    client.meta.events.register("after-call", lambda http_response, **_: bodies.append(http_response.content))
    with pytest.raises(ClientError):
        client.list_tables()
    answer = json.loads(bodies[0])
    assert answer["__type"] == "com.amazonaws.dynamodb.v20120810#AccessDeniedException"
    assert "is not authorized to perform: dynamodb:ListTables" in answer["message"]


#: S3 calls (given the client and a version id of key "k" in bucket "b-1") and the IAM action AWS
#: authorizes each as: most differ from the operation's name.
S3_ACTIONS: dict[str, tuple[Callable[[Any, str], object], str]] = {
    "ListBuckets": (lambda s3, v: s3.list_buckets(), "s3:ListAllMyBuckets"),
    "ListObjectVersions": (lambda s3, v: s3.list_object_versions(Bucket="b-1"), "s3:ListBucketVersions"),
    "ListObjectsV2": (lambda s3, v: s3.list_objects_v2(Bucket="b-1"), "s3:ListBucket"),
    "HeadBucket": (lambda s3, v: s3.head_bucket(Bucket="b-1"), "s3:ListBucket"),
    "HeadObject": (lambda s3, v: s3.head_object(Bucket="b-1", Key="k"), "s3:GetObject"),
    "GetObject-version": (
        lambda s3, v: s3.get_object(Bucket="b-1", Key="k", VersionId=v),
        "s3:GetObjectVersion",
    ),
    "DeleteObjects": (
        lambda s3, v: s3.delete_objects(Bucket="b-1", Delete={"Objects": [{"Key": "x"}]}),
        "s3:DeleteObject",
    ),
    "ListMultipartUploads": (
        lambda s3, v: s3.list_multipart_uploads(Bucket="b-1"),
        "s3:ListBucketMultipartUploads",
    ),
    "CreateMultipartUpload": (
        lambda s3, v: s3.create_multipart_upload(Bucket="b-1", Key="m"),
        "s3:PutObject",
    ),
}


@pytest.mark.parametrize(("call", "action"), S3_ACTIONS.values(), ids=S3_ACTIONS.keys())
def test_each_s3_call_is_authorized_as_its_iam_action(
    enforced: boto3.session.Session, call: Callable[[Any, str], object], action: str
) -> None:
    """The action the sandbox asks the caller's policies is AWS's IAM action, not the operation's
    name. The sandbox takes it from moto's S3 routing, which moto 5.2.6 changed (it answers the
    operation's name, and a policy allowing s3:ListAllMyBuckets then refused ListBuckets): an
    upgrade of moto must pass this."""
    admin = enforced.client("s3")
    admin.create_bucket(Bucket="b-1")
    admin.put_bucket_versioning(Bucket="b-1", VersioningConfiguration={"Status": "Enabled"})
    version = admin.put_object(Bucket="b-1", Key="k", Body=b"x")["VersionId"]
    session = user_session(enforced, {"Effect": "Allow", "Action": action, "Resource": "*"})
    call(session.client("s3"), version)  # allowed by a policy that names that action alone
    key = session.get_credentials().access_key
    asked = [q["action"] for event in trail.events(key) for q in event["authorization"]]
    assert asked == [action]


def test_conditions_and_s3_resources_are_enforced(enforced: boto3.session.Session) -> None:
    enforced.client("s3").create_bucket(Bucket="mine")
    enforced.client("s3").create_bucket(Bucket="theirs")
    region_only = {"StringEquals": {"aws:RequestedRegion": REGION}}
    session = user_session(
        enforced,
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*", "Condition": region_only},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::mine"},
        {"Effect": "Deny", "Action": "ec2:DescribeSubnets", "Resource": "*"},
    )
    session.client("ec2").describe_vpcs()
    assert (
        error_code(lambda: session.client("ec2", region_name="eu-west-1").describe_vpcs())
        == "UnauthorizedOperation"
    )
    assert error_code(lambda: session.client("ec2").describe_subnets()) == "UnauthorizedOperation"
    session.client("s3").list_objects_v2(Bucket="mine")
    with pytest.raises(ClientError) as denied:
        session.client("s3").list_objects_v2(Bucket="theirs")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    # The bucket's own account is told which action and resource no policy allows, as on AWS.
    assert "not authorized to perform: s3:ListBucket on resource: arn:aws:s3:::theirs" in str(denied.value)


def test_unknown_inactive_and_missing_credentials_are_refused(enforced: boto3.session.Session) -> None:
    stranger = boto3.session.Session("AKIAIOSFODNN7EXAMPLE", "x", region_name=REGION)
    assert error_code(lambda: stranger.client("iam").list_roles()) == "InvalidClientTokenId"
    assert error_code(lambda: stranger.client("dynamodb").list_tables()) == "UnrecognizedClientException"
    session = user_session(enforced, {"Effect": "Allow", "Action": "*", "Resource": "*"})
    key_id = session.get_credentials().access_key
    user = enforced.client("iam").list_users()["Users"][-1]["UserName"]
    enforced.client("iam").update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    assert error_code(lambda: session.client("iam").list_roles()) == "InvalidClientTokenId"
    # An anonymous S3 call: 403 AccessDenied, as S3 answers one to a bucket that grants the public nothing.
    anonymous = enforced.client("s3", config=Config(signature_version=UNSIGNED))
    assert error_code(lambda: anonymous.list_buckets()) == "AccessDenied"
    iam.set_enforced(False)
    session.client("iam").list_roles()  # not enforced: anything goes, as in stock moto


# --- the OIDC flow ---


@pytest.fixture()
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    """The sandbox's issuer, its URL served by a local HTTP server (the token endpoint, as Actions')."""
    holder: list[Issuer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            environ = {"QUERY_STRING": query}
            status: list[str] = []
            body = b"".join(
                oidc.serve(holder[0], path.removeprefix("/oidc"), environ, lambda s, h: status.append(s))
            )
            self.send_response(int(status[0].split()[0]))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"127.0.0.1:{server.server_port}/oidc"
    holder.append(Issuer.load_or_create(tmp_path, f"https://{base}", served_at=f"http://{base}"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    oidc.install(holder[0])
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


def deploy_role(admin: boto3.session.Session, issuer: Issuer, subject: str) -> str:
    """The OIDC provider for ``issuer`` and a role that trusts ``subject``; may list tables, nothing else."""
    client = admin.client("iam")
    host = issuer.url.removeprefix("https://")
    provider = client.create_open_id_connect_provider(
        Url=issuer.url, ClientIDList=["sts.amazonaws.com"], ThumbprintList=[issuer.thumbprint]
    )["OpenIDConnectProviderArn"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": provider},
        "Condition": {"StringEquals": {f"{host}:aud": "sts.amazonaws.com", f"{host}:sub": subject}},
    }]}  # fmt: skip
    role = client.create_role(RoleName="deploy", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    allowed = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:ListTables",
                                                       "Resource": "*"}]}  # fmt: skip
    client.put_role_policy(RoleName="deploy", PolicyName="p", PolicyDocument=json.dumps(allowed))
    return str(role)


def assume(admin: boto3.session.Session, role: str, token: str) -> dict[str, Any]:
    answer = admin.client("sts").assume_role_with_web_identity(
        RoleArn=role, RoleSessionName="ci", WebIdentityToken=token
    )
    return dict(answer)


def test_web_identity_credentials_act_as_the_role(enforced: boto3.session.Session, issuer: Issuer) -> None:
    role = deploy_role(enforced, issuer, f"repo:{REPO}:ref:refs/heads/develop")
    token = issuer.token(
        WorkflowRun(REPO, ref="refs/heads/develop"), audience="sts.amazonaws.com", now=int(time.time())
    )
    answer = assume(enforced, role, token)
    assert answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/ci"
    found = answer["Credentials"]
    as_role = boto3.session.Session(
        found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"], REGION
    )
    as_role.client("dynamodb").list_tables()
    assert error_code(lambda: as_role.client("ec2").describe_vpcs()) == "UnauthorizedOperation"
    caller = as_role.client("sts").get_caller_identity()["Arn"]
    assert caller == f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/ci"
    wrong = boto3.session.Session(found["AccessKeyId"], found["SecretAccessKey"], "not-the-token", REGION)
    assert error_code(lambda: wrong.client("dynamodb").list_tables()) == "UnrecognizedClientException"


def test_web_identity_refusals_come_as_awss(enforced: boto3.session.Session, issuer: Issuer) -> None:
    now = int(time.time())
    role = deploy_role(enforced, issuer, f"repo:{REPO}:ref:refs/heads/develop")
    feature = issuer.token(WorkflowRun(REPO, ref="refs/heads/feature"), audience="sts.amazonaws.com", now=now)
    with pytest.raises(ClientError) as refused:
        assume(enforced, role, feature)
    error = refused.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    develop = WorkflowRun(REPO, ref="refs/heads/develop")
    expired = issuer.token(develop, audience="sts.amazonaws.com", now=now - 900)
    assert error_code(lambda: assume(enforced, role, expired)) == "ExpiredTokenException"
    other_audience = issuer.token(develop, audience="https://github.com/octo", now=now)
    assert error_code(lambda: assume(enforced, role, other_audience)) == "InvalidIdentityToken"


def test_the_issuer_publishes_discovery_keys_and_tokens(issuer: Issuer) -> None:
    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{issuer.served_at}{path}", timeout=5) as response:
            return json.loads(response.read())

    assert get("/.well-known/openid-configuration")["jwks_uri"] == f"{issuer.served_at}/.well-known/jwks"
    assert get("/.well-known/jwks") == issuer.jwks()
    token = get(f"/token?audience=sts.amazonaws.com&repository={REPO}&environment=staging")["value"]
    assert oidc.keys_for(issuer.url) is not None
    assert decode_unverified(token)[1]["sub"] == f"repo:{REPO}:environment:staging"
    assert signature_valid(token, issuer.jwks()["keys"])


def test_ci_credentials_in_a_github_actions_job(
    enforced: boto3.session.Session, issuer: Issuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As in a job: the token from ACTIONS_ID_TOKEN_REQUEST_URL (here the issuer's token endpoint,
    whose query names the run), STS on the aws target (moto in process)."""
    role = deploy_role(enforced, issuer, f"repo:{REPO}:ref:refs/heads/develop")
    monkeypatch.setenv(
        "ACTIONS_ID_TOKEN_REQUEST_URL", f"{issuer.served_at}/token?repository={REPO}&ref=refs/heads/develop"
    )
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "bearer-from-github")
    env_file = tmp_path / "github-env"
    monkeypatch.setenv("GITHUB_ENV", str(env_file))
    runner = CliRunner()

    def ci(*args: str) -> Any:
        return runner.invoke(
            app, ["--target", "aws", "--region", REGION, "ci", "credentials", "--role", role, *args]
        )

    as_json = ci("--format", "json")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert document["Version"] == 1 and document["AccessKeyId"].startswith("ASIA")
    shell = ci()
    assert "export AWS_SESSION_TOKEN=" in shell.output
    github = runner.invoke(app, ["--target", "aws", "--region", REGION, *CI_CREDENTIALS.args(role=role)])
    assert github.exit_code == 0, github.output
    assert github.output.count("::add-mask::") == 3
    assert [line.split("=")[0] for line in env_file.read_text().splitlines()] == [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]  # fmt: skip
    monkeypatch.setenv(
        "ACTIONS_ID_TOKEN_REQUEST_URL", f"{issuer.served_at}/token?repository={REPO}&ref=refs/heads/main"
    )
    refused = ci()
    assert isinstance(refused.exception, WebIdentityRejected)  # labkit's main() prints it and exits 1
    assert refused.exception.code == "AccessDenied"
    assert "Not authorized to perform sts:AssumeRoleWithWebIdentity" in refused.exception.message


def test_a_dynamodb_transaction_needs_the_action_of_each_item(enforced: boto3.session.Session) -> None:
    enforced.client("dynamodb").create_table(
        TableName="ledger",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    put_only = user_session(enforced, {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"})
    client = put_only.client("dynamodb")
    client.transact_write_items(TransactItems=[{"Put": {"TableName": "ledger", "Item": {"pk": {"S": "a"}}}}])
    with pytest.raises(ClientError) as refused:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "ledger", "Item": {"pk": {"S": "b"}}}},
                {"Delete": {"TableName": "ledger", "Key": {"pk": {"S": "a"}}}},
            ]
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "dynamodb:DeleteItem" in refused.value.response["Error"]["Message"]


@pytest.mark.parametrize(("value", "enforced"), [("", True), ("enforce", True), ("OFF", False)])
def test_the_setting_that_switches_enforcement(
    monkeypatch: pytest.MonkeyPatch, value: str, enforced: bool
) -> None:
    monkeypatch.setenv(SANDBOX_IAM_ENV, value)
    assert sandbox_iam_enforced() is enforced


def test_a_bad_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SANDBOX_IAM_ENV, "yes")
    with pytest.raises(ConfigError, match="LABKIT_SANDBOX_IAM"):
        sandbox_iam_enforced()


# --- what AWS checks besides the call's own action ---


def test_a_launch_template_s_instance_profile_needs_pass_role_to_ec2(enforced: boto3.session.Session) -> None:
    iam_client, ec2 = enforced.client("iam"), enforced.client("ec2")
    trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    role = iam_client.create_role(
        RoleName="app", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]})
    )["Role"]["Arn"]
    profile = iam_client.create_instance_profile(InstanceProfileName="app")["InstanceProfile"]["Arn"]
    iam_client.add_role_to_instance_profile(InstanceProfileName="app", RoleName="app")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="app",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "IamInstanceProfile": {"Arn": profile}},
    )["LaunchTemplate"]["LaunchTemplateId"]
    fleet = {
        "Effect": "Allow",
        "Action": ["autoscaling:CreateAutoScalingGroup", "ec2:RunInstances"],
        "Resource": "*",
    }

    def create(session: boto3.session.Session, name: str) -> None:
        session.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, MaxSize=0, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Latest"},
        )  # fmt: skip

    def pass_role(service: str) -> dict[str, Any]:
        passed = {"StringEquals": {"iam:PassedToService": service}}
        return {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role, "Condition": passed}

    create(enforced, "first")  # the admin's: AWS creates the service-linked role at the first group
    with pytest.raises(ClientError) as refused:
        create(user_session(enforced, fleet), "a")
    assert f"iam:PassRole on resource: {role}" in refused.value.response["Error"]["Message"]
    assert error_code(lambda: create(user_session(enforced, fleet, pass_role("lambda.amazonaws.com")), "b"))
    create(user_session(enforced, fleet, pass_role("ec2.amazonaws.com")), "c")
    without_run = {**fleet, "Action": "autoscaling:CreateAutoScalingGroup"}
    with pytest.raises(ClientError) as refused:
        create(user_session(enforced, without_run, pass_role("ec2.amazonaws.com")), "d")
    assert "ec2:RunInstances" in refused.value.response["Error"]["Message"]


def test_objects_under_a_customer_managed_key_need_that_key(enforced: boto3.session.Session) -> None:
    s3 = enforced.client("s3")
    key = enforced.client("kms").create_key()["KeyMetadata"]["Arn"]
    for bucket, default in (("cmk-bucket", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}),
                            ("managed-bucket", {"SSEAlgorithm": "aws:kms"})):  # fmt: skip
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": default}]},
        )
    objects = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*/*"}
    use_key = {"Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": key}
    decrypt = {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": key}

    def put(session: boto3.session.Session, bucket: str) -> object:
        return session.client("s3").put_object(Bucket=bucket, Key="k", Body=b"x")

    def get(session: boto3.session.Session, bucket: str) -> object:
        return session.client("s3").get_object(Bucket=bucket, Key="k")["Body"].read()

    objects_only = user_session(enforced, objects)
    put(objects_only, "managed-bucket")  # AWS's managed aws/s3 key: no KMS permission needed
    assert get(objects_only, "managed-bucket") == b"x"
    assert error_code(lambda: put(objects_only, "cmk-bucket")) == "AccessDenied"
    writer = user_session(enforced, objects, use_key)
    put(writer, "cmk-bucket")
    assert error_code(lambda: get(writer, "cmk-bucket")) == "AccessDenied"
    assert get(user_session(enforced, objects, decrypt), "cmk-bucket") == b"x"


def test_a_missing_object_is_404_only_to_who_may_list_the_bucket(enforced: boto3.session.Session) -> None:
    s3 = enforced.client("s3")
    s3.create_bucket(Bucket="releases")
    s3.put_bucket_versioning(Bucket="releases", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="releases", Key="gone", Body=b"x")
    s3.delete_object(Bucket="releases", Key="gone")  # its newest version is a delete marker
    read = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::releases/*"}
    listing = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::releases"}
    reader, lister = (
        user_session(enforced, read).client("s3"),
        user_session(enforced, read, listing).client("s3"),
    )
    for key in ("nope", "gone"):
        assert error_code(functools.partial(reader.get_object, Bucket="releases", Key=key)) == "AccessDenied"
        assert error_code(functools.partial(lister.get_object, Bucket="releases", Key=key)) == "NoSuchKey"


def test_the_first_load_balancer_of_an_account_needs_its_service_linked_role(
    enforced: boto3.session.Session,
) -> None:
    ec2 = enforced.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for i, zone in enumerate((f"{REGION}a", f"{REGION}b"))
    ]
    balancer = {"Effect": "Allow", "Action": "elasticloadbalancing:CreateLoadBalancer", "Resource": "*"}
    service = {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}
    linked = {
        "Effect": "Allow",
        "Action": "iam:CreateServiceLinkedRole",
        "Resource": "*",
        "Condition": service,
    }

    def create(session: boto3.session.Session, name: str) -> object:
        return session.client("elbv2").create_load_balancer(Name=name, Subnets=subnets)

    with pytest.raises(ClientError) as refused:
        create(user_session(enforced, balancer), "a")
    assert "iam:CreateServiceLinkedRole" in refused.value.response["Error"]["Message"]
    create(user_session(enforced, balancer, linked), "b")
    role = enforced.client("iam").get_role(RoleName="AWSServiceRoleForElasticLoadBalancing")["Role"]
    assert role["Path"] == "/aws-service-role/elasticloadbalancing.amazonaws.com/"
    create(user_session(enforced, balancer), "c")  # the role exists now: not asked again


def test_actions_are_named_by_their_iam_prefix_not_the_signing_name(enforced: boto3.session.Session) -> None:
    """The Resource Groups Tagging API signs as "tagging" and its actions are "tag:...", as
    CloudWatch signs as "monitoring": a policy names the IAM action."""
    tagger = user_session(enforced, {"Effect": "Allow", "Action": "tag:GetResources", "Resource": "*"})
    tagger.client("resourcegroupstaggingapi").get_resources()
    watcher = user_session(
        enforced, {"Effect": "Allow", "Action": "cloudwatch:DescribeAlarms", "Resource": "*"}
    )
    watcher.client("cloudwatch").describe_alarms()
    assert (
        error_code(lambda: watcher.client("resourcegroupstaggingapi").get_resources())
        == "AccessDeniedException"
    )


def test_an_instance_with_a_database_gets_its_role_s_credentials(enforced: boto3.session.Session) -> None:
    """An ASG's instance carries no instance profile in moto: the role comes from its launch template,
    and the app's credentials are a session of that role, authorized by its policies."""
    from moto.ec2.models import ec2_backends

    from labkit.sandbox.server.instance_view import app_environment, running_instances

    iam_client, ec2 = enforced.client("iam"), enforced.client("ec2")
    trust = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    for name in ("app", "bare"):
        iam_client.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
        )
        iam_client.create_instance_profile(InstanceProfileName=name)
        iam_client.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    secret = enforced.client("secretsmanager").create_secret(Name="db", SecretString='{"username": "u"}')[
        "ARN"
    ]
    read = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret}
    iam_client.put_role_policy(
        RoleName="app",
        PolicyName="db",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [read]}),
    )
    subnet = ec2.create_subnet(
        VpcId=ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.0.1.0/24"
    )["Subnet"]["SubnetId"]
    release = (
        'ARTIFACT_URI="s3://artifacts/releases/1.0.0/release.tar.gz"\nAPP_COLOR="blue"\nAPP_VERSION="1.0.0"\n'
    )
    database = f'DATABASE_SECRET_ARN="{secret}"\nDATABASE_HOST="127.0.0.1"\n'
    database += 'DATABASE_PORT="5433"\nDATABASE_NAME="app"\n'
    for name, profile, user_data in [("withdb", "app", release + database), ("nodb", "app", release),
                                     ("denied", "bare", release + database)]:  # fmt: skip
        ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={"ImageId": "ami-12c6146b", "IamInstanceProfile": {"Name": profile},
                                "UserData": base64.b64encode(user_data.encode()).decode()},
        )  # fmt: skip
        enforced.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=1, MaxSize=1, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
        )  # fmt: skip
    groups = enforced.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    instance_of = {g["AutoScalingGroupName"]: g["Instances"][0]["InstanceId"] for g in groups}
    assert all(i.iam_instance_profile is None for i in ec2_backends[ACCOUNT][REGION].all_instances())

    specs = running_instances()
    db, nodb, denied = (specs[instance_of[name]] for name in ("withdb", "nodb", "denied"))
    assert dict(db.settings) == {"DATABASE_SECRET_ARN": secret, "DATABASE_HOST": "127.0.0.1",
                                 "DATABASE_PORT": "5433", "DATABASE_NAME": "app"}  # fmt: skip
    assert db.role_arn == f"arn:aws:iam::{ACCOUNT}:role/app"
    assert app_environment(nodb, "http://127.0.0.1:1") == {}  # no database: the app starts as before

    env = app_environment(db, "http://127.0.0.1:1")
    assert {k: env[k] for k in ("DATABASE_NAME", "AWS_ENDPOINT_URL", "AWS_REGION")} == {
        "DATABASE_NAME": "app", "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_REGION": REGION}  # fmt: skip
    assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")

    def as_instance(environment: dict[str, str]) -> boto3.session.Session:
        return boto3.session.Session(
            environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"],
            environment["AWS_SESSION_TOKEN"], region_name=REGION,
        )  # fmt: skip

    instance = as_instance(env)
    caller = instance.client("sts").get_caller_identity()["Arn"]
    assert caller == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/{db.instance_id}"
    assert (
        instance.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        == '{"username": "u"}'
    )
    assert error_code(lambda: instance.client("s3").list_buckets()) == "AccessDenied"
    refused = as_instance(app_environment(denied, "http://127.0.0.1:1")).client("secretsmanager")
    assert error_code(lambda: refused.get_secret_value(SecretId=secret)) == "AccessDeniedException"
