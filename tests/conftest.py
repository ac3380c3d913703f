"""Shared fixtures. Integration tests use real processes on 127.0.0.1 only."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from labkit.infra.stack import Stack
from labkit.infra.terraform import PlanResult, Terraform
from labkit.target import Target

T = TypeVar("T")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- parallel runs: pytest-xdist, `-n auto --dist loadgroup` (addopts in pyproject.toml) ---

#: Workers for a run of more than one test file. Most integration time is waiting (Terraform's
#: ALB and S3 lifecycle sleeps, about a minute in every build from nothing; health checks, bakes),
#: so long chains overlap well on the 2-core CI machine. pytest's time for the whole suite: with
#: four, 1,175 s, the two cores 78 % busy; with five, 1,093 s (the tests' summed time grew 7 %, to
#: 4,779 s), then 1,016 s and 1,003 s from fresh clones once LONG_GROUPS set the order (82 % busy),
#: every test passing. With the db-restore group added, five took 1,067 s and 1,093 s; six took
#: 988 s (the summed time grew 9 %, to 5,671 s), every test passing. (Four were once tried before
#: the sandbox's saves got cheaper: under that load a staging apply failed on a 409 from the
#: sandbox's IAM, AddRoleToInstanceProfile.)
WORKERS = 6
#: The xdist group of every test that uses the session's staging stack.
STAGING_GROUP = "staging"
#: The xdist group of every drill test: they share the ``drills_stack`` (one build).
DRILLS_GROUP = "drills"
#: The groups that each keep one worker busy for minutes, longest first, as the scheduler is to
#: hand them out (summed test time in a six-worker run: 812, 765, 642, 528, 474 and 427 s; the
#: learning path's, "notebooks", now also runs lessons 10 and 11, about 70 s more). The six
#: workers start on them; lesson 12's worker takes the next group at once, since a worker asks for
#: more once two or fewer of its tests are left.
LONG_GROUPS = (STAGING_GROUP, DRILLS_GROUP, "drills-deploy", "notebook-12", "notebooks", "db-restore")


@pytest.hookimpl(optionalhook=True)  # an xdist hook, unknown without xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """What ``-n auto`` means here: WORKERS, or none when the run names a single test file.

    One file is one group, so it would run on one worker anyway after all of them had started
    (about 12 s); run serially it takes what it did before, and ``-s`` shows output as it comes.
    PYTEST_XDIST_AUTO_NUM_WORKERS, when set, wins (xdist's own hook reads it).
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    files = {arg.split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(files.pop()).is_file():
        return 0
    return WORKERS


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test in an xdist group, so each expensive fixture is built by one worker only,
    and hand out the long groups first, longest first.

    Each xdist worker is a process with its own session and module fixtures, and loadgroup sends a
    test without a group to whichever worker is free: a module's tests would be spread over the
    workers, each building the module's fixtures again (test_stack.py's stack takes minutes), and
    test_deploy.py's tests, which build on each other's state, would be torn apart.
    - A test already marked ``xdist_group`` keeps its group (tests/notebooks/ runs on its own).
    - A test using ``staging_stack`` goes in one group: one worker builds the stack (about 3 min).
    - A test using ``drills_stack`` goes in another: the drills break and recover one stack in turn.
    - Every other test is grouped by its file, as ``--dist loadfile`` would.

    The scheduler hands out groups in collection order (``--no-loadscope-reorder``), one to each
    worker, and gives a worker its next group as soon as two or fewer of its tests are left. So a
    worker that starts on a group of one or two tests (lesson 12) is handed the next group at
    once, and the two run one after the other. The run lasts at least as long as its busiest
    worker, so the long groups go first in LONG_GROUPS' order: lesson 12 is then paired with a
    short group, not with a drills group (about 1,060 s, which bounded a run in which the order
    followed the files' names). The other groups keep their order.
    Without loadgroup (``pytest -n 0``, a serial run) nothing is marked or moved.
    """
    if not config.getoption("loadgroup", False):  # xdist sets it in each worker under loadgroup
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if "staging_stack" in getattr(item, "fixturenames", ()):
            group = STAGING_GROUP
        elif "drills_stack" in getattr(item, "fixturenames", ()):
            group = DRILLS_GROUP
        else:
            group = item.path.relative_to(config.rootpath).as_posix()
        item.add_marker(pytest.mark.xdist_group(group))
    # stable: the order within each group is kept
    items.sort(key=lambda item: long_group_rank(_xdist_group(item)))


def _xdist_group(item: pytest.Item) -> str:
    marked = item.get_closest_marker("xdist_group")
    return str(marked.args[0]) if marked is not None else ""


def long_group_rank(group: str) -> int:
    """Where a group's tests go in the run: its place in LONG_GROUPS, or after all of them."""
    return LONG_GROUPS.index(group) if group in LONG_GROUPS else len(LONG_GROUPS)


@pytest.hookimpl(optionalhook=True)  # an xdist hook, unknown under -p no:xdist
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """Stop before running anything if a worker's tests came without their groups.

    xdist hands a test's group to its scheduler as an ``@group`` suffix of its node id. pytest 9.2
    silently drops that suffix (pytest-xdist#1386); every test would then be scheduled on its own.
    """
    config = getattr(node, "config", None)
    if config is not None and config.getoption("dist") == "loadgroup" and any("@" not in i for i in ids):
        pytest.exit(
            "pytest-xdist lost the tests' xdist_group marks (pytest-xdist#1386, pytest 9.2), so each "
            "worker would build the expensive fixtures and test_deploy.py's tests would be split up. "
            "Install the dev extras' pytest (`pip install -e '.[dev]'`) or run serially with `-n 0`.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture()
def labkit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private LABKIT_HOME so a test never touches the developer's own .labkit/."""
    home = tmp_path / "labkit-home"
    monkeypatch.setenv("LABKIT_HOME", str(home))
    yield home


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Stock moto's AWS API (none of the sandbox's mends) on a free loopback port, for tests of
    labkit's own AWS plumbing.

    Served as the sandbox serves it: one request at a time, and a retry of a write whose answer the
    client lost given that answer, not a second run (:mod:`labkit.sandbox.server.replay`). Stock
    moto's own threaded server does neither. Under CI's load a plan twice failed on a state lock it
    had taken itself, most likely the SDK's retry of a lock ``PutItem`` that had landed (not
    reproduced here; the sandbox met the same lost answers, seen in the provider's debug log)."""
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from labkit.sandbox.server.replay import OneAtATime

    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    serving = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        serving.join(timeout=10)


# --- the sandbox (labkit.sandbox): one real service per test session ---


@dataclass(frozen=True)
class RunningSandbox:
    """The session's sandbox: its AWS endpoint, a sandbox Target for it, and its folder."""

    endpoint: str
    target: Target
    root: Path


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A real sandbox service (moto, load balancer, app processes) in a temporary folder.

    ``LABKIT_SANDBOX_HOME`` pins it for the whole session, so ``labkit.sandbox.alb_url()`` and
    ``labkit.sandbox.target()`` find it even in a test that has its own ``labkit_home``. It is
    stopped at the end of the session and leaves no process behind. Give resources unique names:
    every test of the session shares it.
    """
    from labkit import sandbox as sandbox_service

    root = tmp_path_factory.mktemp("sandbox")
    previous = os.environ.get("LABKIT_SANDBOX_HOME")
    os.environ["LABKIT_SANDBOX_HOME"] = str(root)
    try:
        endpoint = sandbox_service.up()
        yield RunningSandbox(endpoint=endpoint, target=sandbox_service.target(), root=root)
    finally:
        sandbox_service.down()
        if previous is None:
            os.environ.pop("LABKIT_SANDBOX_HOME", None)
        else:
            os.environ["LABKIT_SANDBOX_HOME"] = previous


@dataclass(frozen=True)
class Boto3Stack:
    """A blue/green stack made with boto3: an ALB whose listener forwards to two target groups,
    each fed by an ASG whose launch template's user data names a release artifact."""

    name: str
    bucket: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    load_balancer_arn: str
    dns_name: str
    listener_arn: str
    target_groups: dict[str, str]  # color -> ARN
    asgs: dict[str, str]  # color -> ASG name
    launch_templates: dict[str, str]  # color -> launch template name


def user_data(bucket: str, color: str, version: str) -> str:
    """User data with the three lines the fleet module's template writes, base64 as EC2 takes it."""
    script = (
        "#!/bin/bash\n"
        f'ARTIFACT_URI="s3://{bucket}/releases/{version}/release.tar.gz"\n'
        f'APP_COLOR="{color}"\n'
        f'APP_VERSION="{version}"\n'
        'echo "bootstrap: $APP_COLOR $APP_VERSION"\n'
    )
    return base64.b64encode(script.encode()).decode()


def upload_artifact(
    target: Target, bucket: str, version: str, out: Path, faults: dict[str, str | float] | None = None
) -> str:
    """Build release ``version`` (with ``faults``) and upload it to ``bucket``; its S3 URI."""
    from labkit.release.build import build_release, upload_release

    artifact = build_release(version, faults, out / version)
    return upload_release(target, bucket, artifact, version, overwrite=True)


def build_boto3_stack(
    target: Target,
    name: str,
    *,
    versions: dict[str, str],
    capacity: dict[str, int],
    weights: dict[str, int],
    deregistration_delay_s: int = 2,
    health_path: str = "/health/ready",
) -> Boto3Stack:
    """Create the stack; artifacts must be in ``{name}-artifacts`` (see :func:`upload_artifact`).

    Health checks use AWS's smallest values (every 5 s, 2 s timeout, thresholds 2): a target turns
    healthy about 5 s after its app answers.
    """
    ec2, elb, asg = (target.client(s) for s in ("ec2", "elbv2", "autoscaling"))
    bucket = f"{name}-artifacts"
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in ((1, "a"), (2, "b"))
    )
    balancer = elb.create_load_balancer(Name=f"{name}-alb", Subnets=list(subnets))["LoadBalancers"][0]
    groups: dict[str, str] = {}
    asgs: dict[str, str] = {}
    templates: dict[str, str] = {}
    for color in ("blue", "green"):
        group = elb.create_target_group(
            Name=f"{name}-{color}",
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            HealthCheckPath=health_path,
            HealthCheckIntervalSeconds=5,
            HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )["TargetGroups"][0]["TargetGroupArn"]
        delay = {"Key": "deregistration_delay.timeout_seconds", "Value": str(deregistration_delay_s)}
        elb.modify_target_group_attributes(TargetGroupArn=group, Attributes=[delay])
        groups[color] = group
        templates[color] = f"{name}-{color}-lt"
        ec2.create_launch_template(
            LaunchTemplateName=templates[color],
            LaunchTemplateData={
                "ImageId": "ami-12c6146b",
                "InstanceType": "t3.micro",
                "UserData": user_data(bucket, color, versions[color]),
            },
        )
        asgs[color] = f"{name}-{color}"
        asg.create_auto_scaling_group(
            AutoScalingGroupName=asgs[color],
            MinSize=0,
            MaxSize=6,
            DesiredCapacity=capacity[color],
            LaunchTemplate={"LaunchTemplateName": templates[color]},
            VPCZoneIdentifier=subnets[0],
            TargetGroupARNs=[group],
        )
    listener = elb.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": groups[color], "Weight": weights[color]} for color in groups
                    ]
                },
            }
        ],
    )["Listeners"][0]["ListenerArn"]
    return Boto3Stack(
        name=name,
        bucket=bucket,
        vpc_id=vpc,
        subnet_ids=subnets,
        load_balancer_arn=balancer["LoadBalancerArn"],
        dns_name=balancer["DNSName"],
        listener_arn=listener,
        target_groups=groups,
        asgs=asgs,
        launch_templates=templates,
    )


def target_states(target: Target, group_arn: str) -> dict[str, tuple[str, str | None]]:
    """Target id -> (state, reason) as describe_target_health reports them."""
    described = target.client("elbv2").describe_target_health(TargetGroupArn=group_arn)
    return {
        d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
        for d in described["TargetHealthDescriptions"]
    }


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 45.0, every_s: float = 0.5) -> T:
    """Poll ``check`` until it returns something other than None (or False); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


# --- the staging stack (real Terraform on the session's sandbox) ---


@pytest.fixture(scope="session", autouse=True)
def session_labkit_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session keeps labkit's files (Terraform data dirs, run copies) in a temporary
    folder, never in the developer's own .labkit/. A test may still take its own ``labkit_home``."""
    home = tmp_path_factory.mktemp("labkit-home")
    previous = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("LABKIT_HOME", None)
    else:
        os.environ["LABKIT_HOME"] = previous


#: Releases the staging fixture uploads: version -> fault profile.
STAGING_RELEASES: dict[str, dict[str, str | float]] = {
    "1.0.0": {},
    "1.1.0": {},
    "1.2.0-bad": {"error_rate": 0.3},
    "1.3.0-unready": {"ready": "fail"},
}


@dataclass(frozen=True)
class StagingStack:
    """global + staging applied with real Terraform to the session's sandbox, blue serving 1.0.0."""

    target: Target
    artifact_bucket: str
    outputs: dict[str, object]
    #: The plan of the current staging root on the state that the root before the composition
    #: module built: what an existing stack sees after the switch.
    switch_plan: PlanResult

    def stack(self, env: str = "staging") -> Stack:
        return Stack(env, self.target)

    @property
    def url(self) -> str:
        return self.target.alb_url(str(self.outputs["alb_dns_name"]))


@pytest.fixture(scope="session")
def staging_stack(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> StagingStack:
    """Apply global, upload the test releases, apply staging (blue 1.0.0 x2, green idle), and wait
    until blue serves. Built once per session: the ALB alone takes a minute to create. Tests that
    change the deployment put back what they need themselves.

    Staging is first built from the root as it was before the composition module
    (:func:`apply_staging_before_composition`), then planned and applied with the current root, as
    an existing stack is after the switch; the plan is kept for the test that checks it is empty.
    Building it once this way costs one plan more than building it from the current root."""
    target = sandbox.target
    Stack("global", target).apply()
    bucket = Stack("global", target).outputs()["artifact_bucket"]
    out = tmp_path_factory.mktemp("releases")
    for version, faults in STAGING_RELEASES.items():
        upload_artifact(target, bucket, version, out, faults or None)
    staging = Stack("staging", target)
    apply_staging_before_composition(staging, BLUE_SERVES_1_0_0)
    # The old root built staging as it was before its cost settings; with those set back, the
    # switch itself must change nothing. The apply then records the moves and takes the settings.
    switch_plan = staging.plan({**BLUE_SERVES_1_0_0, **STAGING_BEFORE_COST_SETTINGS})
    staging.apply(BLUE_SERVES_1_0_0)
    outputs = staging.outputs()
    wait_for(
        "blue to be healthy",
        lambda: (
            set(target_states(target, str(outputs["blue_target_group_arn"])).values()) == {("healthy", None)}
        ),
        timeout_s=90,
    )
    return StagingStack(target=target, artifact_bucket=bucket, outputs=outputs, switch_plan=switch_plan)


#: The staging root as it was before terraform/modules/bluegreen_environment (see its README.md).
STAGING_BEFORE_COMPOSITION = Path(__file__).parent / "fixtures" / "terraform" / "staging-before-composition"


def apply_staging_before_composition(staging: Stack, variables: dict[str, object]) -> None:
    """Apply the old staging root with ``staging``'s backend and variables, so the state is what a
    stack built before the switch holds. Its own data dir keeps the two roots' ``.terraform`` apart."""
    old = Terraform(
        STAGING_BEFORE_COMPOSITION,
        target=staging.target,
        data_dir=staging.work_dir / "tfdata-before-composition",
        reporter=staging.reporter,
    )
    old.init(backend_config=staging.backend_config())
    old.apply(variables=staging.variables(variables, carry_over=False))


#: Staging's cost settings (terraform/environments/staging/main.tf) set back with their variables:
#: the stack the old root builds.
STAGING_BEFORE_COST_SETTINGS = {
    "instance_type": "t3.micro",
    "spot_instances": False,
    "enable_dashboard": True,
    "alarm_topic_on_project_key": False,
}


#: The staging deployment the fixture applies: blue serves 1.0.0 on two instances, green is idle.
BLUE_SERVES_1_0_0 = {
    "blue_version": "1.0.0",
    "green_version": "1.0.0",
    "blue_capacity": 2,
    "green_capacity": 0,
    "green_weight": 0,
}


#: Releases the drills' stack holds besides 1.0.0 (which ``lesson.ensure_staging`` uploads).
DRILL_RELEASES = ("1.1.0",)
#: The repository whose staging environment the drills' deploy role trusts (global's GitHub settings).
DRILLS_REPOSITORY = "acme/bluegreen-lab"
DRILLS_SUBJECT = f"repo:{DRILLS_REPOSITORY}:environment:staging"


@dataclass(frozen=True)
class DrillsStack:
    """global + staging built as lesson 10 builds them (blue serves 1.0.0 on two instances), staging
    and its releases by CI's deploy role."""

    target: Target
    artifact_bucket: str
    #: The access key ids of the deploy role's sessions that uploaded the releases and built
    #: staging, with IAM enforced: the sandbox's trail holds their calls (``sandbox.recorded_calls``).
    built_by: tuple[str, ...]

    def stack(self, env: str = "staging") -> Stack:
        return Stack(env, self.target)

    @property
    def outputs(self) -> dict[str, object]:
        """Staging's outputs as they are now (one read of the state object): a drill that rebuilds
        staging gives it a new load balancer, target groups and fleets."""
        return self.stack().outputs()

    @property
    def url(self) -> str:
        return self.target.alb_url(str(self.outputs["alb_dns_name"]))

    def blue_serves_1_0_0(self) -> None:
        """Staging as most drills start from: blue serving 1.0.0 on two healthy instances (applied
        only when the deployment differs), green parked."""
        stack = self.stack()
        if any(stack.deployment().get(name) != value for name, value in BLUE_SERVES_1_0_0.items()):
            stack.apply(BLUE_SERVES_1_0_0)
        arn = str(self.outputs["blue_target_group_arn"])
        wait_for(
            "blue healthy",
            lambda: [s for s, _ in target_states(self.target, arn).values()] == ["healthy", "healthy"],
            timeout_s=90,
        )


def deploy_role_session(target: Target, session_name: str) -> Target:
    """``target`` calling as global's GitHub deploy role, its credentials obtained as a deploy job of
    DRILLS_REPOSITORY's staging environment gets them: a token of the sandbox's issuer, then STS."""
    from labkit.identity.credentials import assume_role_with_web_identity
    from labkit.lab.ci_identity import sandbox_token

    role = str(Stack("global", target).outputs()["github_deploy_role_arn"])
    token = sandbox_token(target, DRILLS_REPOSITORY, environment="staging")
    found = assume_role_with_web_identity(target, role, token, session_name=session_name)
    return target.as_identity(found.as_target_credentials())


@pytest.fixture(scope="session")
def drills_stack(sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> DrillsStack:
    """The stack every drill test breaks and recovers in turn, built once per session with
    :func:`labkit.lab.lesson.ensure_staging`. A drill test leaves it serving as it found it (its
    runbook's Verify and the drill's steady state prove that), or restores it itself.

    As CI builds it: global by an admin, with the GitHub OIDC provider and roles (trusting
    DRILLS_SUBJECT; later applies carry them over); the releases and staging by the deploy role,
    with IAM enforced, so a missing right fails the build (test_identity_deploy.py reads
    the calls). Enforcement is put back as it was."""
    from labkit import sandbox as sandbox_service
    from labkit.lab.ci_identity import github_variables
    from labkit.lab.lesson import ensure_staging
    from labkit.sandbox.server.iam import SERVICE_LINKED_ROLES

    target = sandbox.target
    sessions: list[Target] = []
    # The account as new to load balancers and Auto Scaling, as a first build of staging finds it:
    # the role's build then creates their service-linked roles (iam:CreateServiceLinkedRole), which
    # an earlier test's stack in this session's sandbox may have made already.
    iam = target.client("iam")
    for _, name in SERVICE_LINKED_ROLES.values():
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            iam.delete_service_linked_role(RoleName=name)

    def as_deploy_role(admin: Target) -> Target:
        sessions.append(deploy_role_session(admin, "build-staging"))
        return sessions[-1]

    previous = sandbox_service.set_iam_enforced(target, True)
    try:
        ensure_staging(
            target,
            say=lambda _: None,
            global_variables=github_variables(target, DRILLS_SUBJECT),
            builder=as_deploy_role,
        )
        bucket = Stack("global", target).names.artifact_bucket
        out = tmp_path_factory.mktemp("drill-releases")
        for version in DRILL_RELEASES:
            upload_artifact(sessions[-1], bucket, version, out)
    finally:
        sandbox_service.set_iam_enforced(target, previous)
    keys = tuple(s.credentials.access_key_id for s in sessions if s.credentials is not None)
    return DrillsStack(target=target, artifact_bucket=bucket, built_by=keys)
