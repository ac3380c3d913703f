"""The Terraform environments (``global``, ``staging``, ``production``, and developers' ``dev-*``
ones, :mod:`labkit.infra.devenv`) on a target.

:class:`Stack` is what notebooks, the CLI and the deploy controller call::

    stack = Stack("staging", target)
    stack.apply({"green_weight": 10})   # one deploy step: only the listener changes
    stack.outputs()["alb_dns_name"]

It fills in what depends on the target, so the Terraform roots never branch on it:

- the S3 backend (state bucket, ``<env>/terraform.tfstate``, locking; path-style addressing and no
  credential or metadata checks in the sandbox, whose endpoint comes from ``Target.env()``);
- what the sandbox turns off (the TLS-only bucket policy, the budget, those backend checks), read
  from its one list, :mod:`labkit.infra.sandbox_off`;
- a Terraform data dir per target and environment under ``labkit_home()``, so the sandbox and
  AWS never share ``.terraform``;
- the names that must be the same everywhere (buckets and tables, see :class:`StackNames`) and the
  region; on AWS, anything that creates resources first calls ``target.require_spend``.

Deployment variables carry over: an environment with a ``deployment`` output (staging, production)
reports the versions, capacities and weight it was applied with, and :meth:`Stack.apply` starts
from those, so ``apply({"green_weight": 10})`` changes the weight and nothing else.

``global`` holds the state bucket, so it bootstraps itself: while the bucket does not exist, its
apply runs in a copy of ``terraform/`` under ``labkit_home()`` with a generated
``*_override.tf`` that switches the backend to ``local``; then ``init -migrate-state`` (without the
override) moves that state into the bucket the apply created, and the copy is deleted. The source
tree is never written, so runs from other processes are never switched to the wrong backend.

The state bucket has ``prevent_destroy``: ``Stack("global").destroy()`` refuses, and so does a plain
``terraform destroy``. The one way to remove it is :meth:`Stack.teardown` with ``confirm="global"``,
once no other environment holds resources: it destroys everything else in global, then deletes the
bucket's object versions and the bucket with the API.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from labkit.errors import ConfigError, DeletionProtectedError, StackError
from labkit.infra import sandbox_off
from labkit.infra.envnames import Claim, claims, dev_root, is_dev_environment, read_claim, write_root
from labkit.infra.progress import print_reporter
from labkit.infra.terraform import (
    ApplyResult,
    PlanResult,
    Reporter,
    Terraform,
    terraform_version,
)
from labkit.infra.tfjson import raw_state_resources
from labkit.settings import labkit_home, terraform_dir
from labkit.target import Target

#: A variable block in a Terraform file: `variable "name" {`.
_VARIABLE = re.compile(r'^variable\s+"([A-Za-z_][A-Za-z0-9_-]*)"', re.MULTILINE)

ENVIRONMENTS = ("global", "staging", "production")
#: Environments whose state lives in the bucket that ``global`` owns. Developer environments
#: (``dev-*``, :mod:`labkit.infra.envnames`) are app environments too: :func:`app_environments`.
APP_ENVIRONMENTS = ("staging", "production")
#: Project prefix of every name (the roots' ``project`` variable defaults to the same).
PROJECT = "bglab"
#: The state bucket and its configuration (versioning, policy, ...): the teardown leaves them to the
#: API call that deletes the bucket, the one path that removes it.
STATE_BUCKET_ADDRESSES = (
    "module.state_backend.aws_s3_bucket.state",
    "module.state_backend.module.hardening.",
)
#: The generated file that points the bootstrap copy of ``global`` at a local backend.
OVERRIDE_FILE = "labkit_local_backend_override.tf"


@dataclass(frozen=True)
class StackNames:
    """Names shared by every environment on one account and region: S3 names are global, so the
    buckets carry the account id and region. labkit passes them to the roots as variables; this is
    the one place they are made."""

    project: str
    account_id: str
    region: str

    @classmethod
    def for_target(cls, target: Target) -> StackNames:
        identity = target.client("sts").get_caller_identity()
        return cls(project=PROJECT, account_id=str(identity["Account"]), region=target.region)

    @property
    def state_bucket(self) -> str:
        return f"{self.project}-tfstate-{self.account_id}-{self.region}"

    @property
    def lock_table(self) -> str:
        return f"{self.project}-tflock"

    @property
    def artifact_bucket(self) -> str:
        return f"{self.project}-artifacts-{self.account_id}-{self.region}"

    @property
    def ledger_table(self) -> str:
        return f"{self.project}-deployments"


def is_environment(env: str) -> bool:
    """A name a :class:`Stack` takes: ``global``, ``staging``, ``production`` or ``dev-*``."""
    return env in ENVIRONMENTS or is_dev_environment(env)


def is_app_environment(env: str) -> bool:
    """An environment of the blue/green composition: staging, production or a developer's."""
    return env in APP_ENVIRONMENTS or is_dev_environment(env)


def app_environments(target: Target) -> tuple[str, ...]:
    """staging, production and every developer environment claimed on ``target`` (none before
    global exists)."""
    return (*APP_ENVIRONMENTS, *(claim.environment for claim in dev_claims(target)))


def dev_claims(target: Target) -> list[Claim]:
    """The developer environments claimed in global's state bucket ([] before global exists)."""
    try:
        return claims(target, StackNames.for_target(target).state_bucket)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) != "NoSuchBucket":
            raise
        return []


def vpc_cidrs(target: Target, *, excluding: str = "") -> dict[str, str]:
    """The VPC range of every app environment that has one: staging's and production's from their
    states' ``vpc_cidr`` output, each developer environment's from its claim (taken before its first
    apply ends, so two created at once never plan the same range). An environment whose state
    cannot be read is left out rather than blocking another's plan (restoring it is that
    environment's runbook's job). ``excluding`` names one left out unread (the one planning)."""
    cidrs: dict[str, str] = {}
    for env in APP_ENVIRONMENTS:
        if env == excluding:
            continue
        try:
            cidr = Stack(env, target, reporter=None).outputs().get("vpc_cidr")
        except StackError:
            continue
        if isinstance(cidr, str) and cidr:
            cidrs[env] = cidr
    cidrs.update({c.environment: c.vpc_cidr for c in dev_claims(target) if c.environment != excluding})
    return cidrs


def state_key(env: str) -> str:
    """The S3 key of an environment's state."""
    return f"{env}/terraform.tfstate"


def uses_lockfile(version: str) -> bool:
    """Terraform 1.10+ locks with a lock file in S3 (``use_lockfile``); older ones need DynamoDB."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (1, 10)


class Stack:
    """One Terraform environment (``global``, ``staging``, ``production`` or a ``dev-*``) on one target.
    A developer environment's root is generated (:mod:`labkit.infra.envnames`)."""

    def __init__(
        self,
        env: str,
        target: Target,
        *,
        reporter: Reporter | None = print_reporter,
    ) -> None:
        if not is_environment(env):
            raise StackError(
                f"Unknown environment {env!r}.",
                hint=f"Use one of: {', '.join(ENVIRONMENTS)}, or a developer environment's dev-NAME "
                "(`labkit env list`).",
            )
        self.env = env
        self.target = target
        self.reporter = reporter
        self._names: StackNames | None = None
        self.root = self._dev_root() if is_dev_environment(env) else terraform_dir() / "environments" / env
        #: Per target and environment: Terraform's data dir, and global's bootstrap files.
        self.work_dir = labkit_home() / "terraform" / target.name / env
        self.terraform = Terraform(
            self.root, target=target, data_dir=self.work_dir / "tfdata", reporter=reporter
        )
        self._initialised = False

    def _dev_root(self) -> Path:
        """A developer environment's generated root, rewritten from its claim when missing."""
        root = dev_root(self.env)
        if (root / "main.tf").exists():
            return root
        claim = read_claim(self.target, self.names.state_bucket, self.env)
        if claim is None:
            raise StackError(
                f"There is no developer environment {self.env} on {self.target.name}.",
                hint=f"Create it: `labkit env create {self.env.removeprefix('dev-')}` (`labkit env list` "
                "shows those that exist).",
            )
        return write_root(claim)

    # -- what a caller uses -------------------------------------------------------------------

    @property
    def root_kind(self) -> sandbox_off.RootKind:
        """``global``, or ``app`` for a blue/green root (staging, production, ``dev-*``)."""
        return "global" if self.env == "global" else "app"

    @property
    def names(self) -> StackNames:
        if self._names is None:
            self._names = StackNames.for_target(self.target)
        return self._names

    def plan(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        targets: Sequence[str] = (),
        refresh: bool = True,
        out: Path | None = None,
        generate_config_out: Path | None = None,
    ) -> PlanResult:
        """A plan of ``variables`` on top of the applied deployment; ``has_changes`` says whether it
        would change anything. ``targets`` (e.g. ``["module.environment.module.network"]``) limits
        it to those resources and what they depend on. ``refresh=False`` compares the code with the
        state alone, without reading every resource back (see :meth:`apply`). ``out`` keeps the
        plan file; apply it with :func:`labkit.infra.planfile.apply_saved_plan`
        (:func:`labkit.infra.planfile.save_plan` writes the sidecar that check needs).
        ``generate_config_out``: see :meth:`labkit.infra.terraform.Terraform.plan`."""
        if self._bootstrapping():
            if out is not None:
                raise StackError(
                    "global's first apply cannot come from a saved plan: it creates the state bucket "
                    "it then moves its own state into.",
                    hint="Apply global whole: `labkit stack apply global`.",
                )
            with self._bootstrap_root() as terraform:
                result = terraform.plan(variables=self.variables(variables), targets=targets, refresh=refresh)
                result.raw  # noqa: B018 -- read now: the temporary root it needs goes with the block
                return result
        self._init()
        values = self.variables(variables)
        self._require_deployment(values, "plan")
        return self.terraform.plan(
            variables=values,
            targets=targets,
            refresh=refresh,
            out=out,
            generate_config_out=generate_config_out,
        )

    def refresh_plan(self) -> PlanResult:
        """A refresh-only plan of the environment as last applied: its ``drift`` lists what Terraform
        read back differently from the state (:mod:`labkit.infra.drift` says which of it is drift).
        It changes nothing, the state included."""
        self._init()
        return self.terraform.plan(variables=self.variables(None), refresh_only=True)

    def apply(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        targets: Sequence[str] = (),
        refresh: bool = True,
        on_state_lock: Callable[[dict[str, Any]], None] | None = None,
    ) -> ApplyResult:
        """Apply ``variables`` on top of the applied deployment (on AWS only with ``allow_spend``).

        staging and production refuse, before Terraform runs, a ``*_version`` whose fleet has
        capacity while its release is not in the artifact bucket (``labkit release build`` puts it there).

        ``targets`` builds only those resources and what they depend on: the lessons build staging
        one module at a time this way. Terraform warns that such a plan may be incomplete; the
        next untargeted apply completes it.

        ``refresh=False`` skips reading every resource back before planning (``-refresh=false``),
        which is most of a small apply's time. Terraform's caveat: changes made outside Terraform
        are not seen by that apply. Use it only right after an apply that refreshed, while nothing
        else can change what it touches (the deploy controller's weight steps).

        ``on_state_lock`` gets the state lock's info once the apply has taken it (the controller
        records it, so only that lock is ever broken after the controller died)."""
        self.target.require_spend(f"apply the {self.env} stack")
        if self._bootstrapping():
            if targets:
                raise StackError(
                    "global's first apply cannot be targeted: it creates the state bucket it then moves "
                    "its own state into.",
                    hint="Apply global whole: Stack('global', target).apply().",
                )
            return self._bootstrap(variables)
        self._init()
        values = self.variables(variables)
        self._require_deployment(values, "apply")
        if not targets or any("fleet" in t for t in targets):
            self._require_artifacts(values)
        return self.terraform.apply(
            variables=values,
            targets=targets,
            refresh=refresh,
            while_running=self._lock_watch(on_state_lock),
        )

    def apply_plan(self, plan_file: Path, *, variables: Mapping[str, Any] | None = None) -> ApplyResult:
        """Apply a saved plan exactly as it was made. Nothing here checks that it is still the plan
        to apply: :func:`labkit.infra.planfile.apply_saved_plan` does, then calls this.
        ``variables`` (the plan's own) are checked for unpublished releases as :meth:`apply` does."""
        self.target.require_spend(f"apply a saved plan to the {self.env} stack")
        self._init()
        if variables:
            self._require_artifacts(variables)
        return self.terraform.apply(plan_file=plan_file)

    def confirm_destroy(self, confirm: str | None, *, account_id: str | None = None) -> None:
        """Refuse to destroy unless ``confirm`` is this environment's name (and, for ``global``,
        ``account_id`` is the account's id): on AWS always, on the sandbox for production (a lab's
        staging and global there need no confirmation).

        It refuses before any call to AWS when a confirmation is missing or names another
        environment; only the account id is checked against the account (one read of STS)."""
        if self.target.is_sandbox and self.env != "production":
            return
        if confirm != self.env:
            where = "" if self.target.is_sandbox else " on AWS"
            command = (
                f"labkit stack destroy {self.env} --confirm {self.env}"
                if self.target.is_sandbox
                else f"labkit --target aws stack destroy {self.env} --confirm {self.env}"
            )
            raise StackError(
                f"Refusing to destroy {self.env}{where} without confirm={self.env!r}: it deletes its "
                "resources for good.",
                hint=f"Pass confirm={self.env!r} (CLI: `{command}`; notebook 09: -p confirm {self.env}).",
            )
        if self.env != "global":
            return
        if not account_id:
            raise StackError(
                f"Refusing to tear down global on AWS ({self.target.region}) without the account id: "
                "it deletes every environment's state and every release.",
                hint="Pass account_id='123456789012', your account's id (`aws sts get-caller-identity`; "
                "CLI: --account-id; notebook 09: -p confirm_account ID).",
            )
        if account_id != self.names.account_id:
            raise StackError(
                f"Refusing to tear down global: account_id {account_id} is not the account these "
                f"credentials use ({self.names.account_id}).",
                hint="Check which account your profile points at before tearing anything down.",
            )

    def destroy(self, *, confirm: str | None = None) -> ApplyResult:
        """Destroy every resource of the environment (on AWS only with ``confirm`` equal to its name,
        see :meth:`confirm_destroy`). ``global`` refuses: see :meth:`teardown`."""
        if self.env == "global":
            raise StackError(
                "Refusing to destroy global: it holds the Terraform state bucket of every environment "
                "(prevent_destroy).",
                hint="Destroy staging and production first, then run the deliberate teardown: "
                "Stack('global', target).teardown(confirm='global') or "
                "`labkit stack teardown-global --confirm global`.",
            )
        self.confirm_destroy(confirm)
        self._init()
        if not self.resources():
            self._say(f"{self.env}: nothing to destroy")
            return ApplyResult(added=0, changed=0, removed=0, seconds=0.0, outputs={})
        self.refuse_while_deletion_protected()
        return self.terraform.destroy(variables=self.variables(None))

    def refuse_while_deletion_protected(self) -> None:
        """DeletionProtectedError when a load balancer in this environment's state has deletion
        protection on (production's does: the module's default). Read from the API, before anything
        is destroyed: Terraform would otherwise destroy the fleets and much else, then fail on the
        load balancer, leaving the environment half gone."""
        arns = [
            str(resource.values["arn"])
            for resource in raw_state_resources(self.state())
            if resource.type == "aws_lb" and resource.values.get("arn")
        ]
        elbv2 = self.target.client("elbv2")
        for arn in arns:
            try:
                attributes = elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) == "LoadBalancerNotFound":
                    continue  # already gone: nothing to protect
                raise
            if {"Key": "deletion_protection.enabled", "Value": "true"} in attributes:
                raise DeletionProtectedError(
                    f"Refusing to destroy {self.env}: its load balancer {arn.rsplit('/', 2)[-2]} has "
                    "deletion protection on. Nothing was destroyed.",
                    hint=f"If {self.env} must go, turn the protection off on purpose first: set "
                    f"enable_deletion_protection = false in local.settings of "
                    f"terraform/environments/{self.env}/main.tf, apply it (`labkit stack apply {self.env}`), "
                    f"then destroy with --confirm {self.env}.",
                )

    def plan_from_scratch(self, variables: Mapping[str, Any] | None = None) -> PlanResult:
        """A plan of building this environment from nothing: what it would create (and, priced with
        :func:`labkit.infra.cost.estimate_cost`, cost) before anything exists.

        It plans in a copy of ``terraform/`` with empty local state, so it needs no state bucket and
        touches no backend; it creates nothing, so it needs no ``allow_spend`` either. Data sources
        are read from the target. The deployment variables are the roots' defaults plus ``variables``.
        Global, which makes the project's KMS key, is planned from nothing too, so an environment's
        plan names that key with a stand-in ARN (``project_kms_key_arn``, key id all zeros): the plan
        is the same but for that ARN.
        """
        given = dict(variables or {})
        if self.env != "global":
            names = self.names
            stand_in = f"arn:aws:kms:{names.region}:{names.account_id}:key/{uuid.UUID(int=0)}"
            given.setdefault("project_kms_key_arn", stand_in)
        with tempfile.TemporaryDirectory(prefix="labkit-scratch-") as tmp:
            why = "a plan from scratch, on empty local state"
            with self._local_root(Path(tmp) / "scratch.tfstate", why) as terraform:
                result = terraform.plan(variables=self.variables(given, carry_over=False))
                result.raw  # noqa: B018 -- read now: the temporary root it needs goes with the block
                return result

    def state_lock(self) -> dict[str, Any] | None:
        """Who holds this environment's state lock (Terraform's lock info: ``ID``, ``Who``,
        ``Operation``, ``Created``, ...), or None when it is free. Read from the backend itself:
        the lock file next to the state (Terraform 1.10+), else the DynamoDB lock table."""
        config = self.backend_config()
        try:
            if config.get("use_lockfile") == "true":
                body = (
                    self.target.client("s3")
                    .get_object(Bucket=config["bucket"], Key=config["key"] + ".tflock")["Body"]
                    .read()
                )
                return dict(json.loads(body))
            item = (
                self.target.client("dynamodb")
                .get_item(
                    TableName=config["dynamodb_table"],
                    Key={"LockID": {"S": f"{config['bucket']}/{config['key']}"}},
                    ConsistentRead=True,
                )
                .get("Item")
            )
            return dict(json.loads(item["Info"]["S"])) if item and "Info" in item else None
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return None
            raise

    def _lock_watch(
        self, on_state_lock: Callable[[dict[str, Any]], None] | None
    ) -> Callable[[], None] | None:
        """A poll that passes the state lock to ``on_state_lock`` once, when the apply has it."""
        if on_state_lock is None:
            return None
        seen: list[str] = []

        def watch() -> None:
            if not seen and (info := self.state_lock()) is not None:
                seen.append(str(info.get("ID")))
                on_state_lock(info)

        return watch

    @contextmanager
    def hold_lock(self) -> Iterator[None]:
        """Hold this environment's state lock for the ``with`` block, as a running apply would
        (see :meth:`labkit.infra.terraform.Terraform.hold_lock`)."""
        self._init()
        with self.terraform.hold_lock(lambda: self.state_lock() is not None):
            yield

    def force_unlock(self, lock_id: str) -> None:
        """Break this environment's state lock ``lock_id`` (``terraform force-unlock``). Only for a
        lock whose holder is proven gone: the unlock-state runbook (:mod:`labkit.ops.locks`) proves it."""
        self._init()
        self.terraform.force_unlock(lock_id)

    def import_resource(self, address: str, ident: str) -> None:
        """Import the existing resource ``ident`` into ``address`` (``terraform import``), with the
        variables of the deployment as applied."""
        self.target.require_spend(f"import {ident} into the {self.env} stack")
        self._init()
        self.terraform.import_resource(address, ident, variables=self.variables(None))

    def forget(self, address: str) -> None:
        """Remove ``address`` from the state (``terraform state rm``); the resource stays in the account."""
        self._init()
        self.terraform.state_rm(address)

    def outputs(self) -> dict[str, Any]:
        """Every output of the environment ({} before its first apply), as ``terraform output``
        gives them, read from the state object in the bucket (see :meth:`state`)."""
        if self._bootstrapping():
            return {}
        outputs = self.state().get("outputs") or {}
        return {name: spec.get("value") for name, spec in outputs.items()}

    def state(self) -> dict[str, Any]:
        """The environment's state document ({} before its first apply), as ``terraform state
        pull`` gives it, read from its object in the state bucket with one S3 call: Terraform
        itself would start, read the backend's configuration and then make that same read."""
        config = self.backend_config(locking=False)
        try:
            body = self.target.client("s3").get_object(Bucket=config["bucket"], Key=config["key"])["Body"]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                return {}
            if code == "NoSuchBucket":
                raise self._no_state_bucket() from exc
            raise
        text = body.read()
        if not text.strip():
            return {}
        try:
            return dict(json.loads(text))
        except (ValueError, TypeError) as exc:  # a broken tool, a truncated upload
            raise StackError(
                f"The state object s3://{config['bucket']}/{config['key']} of {self.env} is not a "
                f"Terraform state ({type(exc).__name__}: {exc}).",
                hint=f"Restore its last good version: `labkit runbook run restore-state -p environment "
                f"{self.env}` (a dry run; add -p dry_run false -p confirm {self.env} to act).",
            ) from exc

    def resources(self) -> list[str]:
        """The address of every resource in the environment's state, data sources included, as
        ``terraform state list`` prints them, read from the state object (see :meth:`state`)."""
        return sorted(r.address for r in raw_state_resources(self.state(), data_sources=True))

    def state_attributes(self, address: str) -> dict[str, Any]:
        """What Terraform recorded about one resource, as ``terraform state show`` prints it:
        ``state_attributes('module.environment.module.alb.aws_lb.this')["dns_name"]``. A targeted
        apply writes no root outputs, so this is how to read what it built."""
        for resource in raw_state_resources(self.state(), data_sources=True):
            if resource.address == address:
                return dict(resource.values)
        raise StackError(
            f"{self.env} on {self.target.name} has no {address} in its state.",
            hint=f"`labkit stack output {self.env}` and Stack.resources() show what it has; apply what "
            "builds it first.",
        )

    def deployment(self) -> dict[str, Any]:
        """The deployment variables as last applied ({} for global, or before the first apply)."""
        value = self.outputs().get("deployment")
        return dict(value) if isinstance(value, dict) else {}

    def backend_config(self, *, locking: bool = True) -> dict[str, str]:
        """The S3 backend settings of this environment on this target.

        ``encrypt`` stays unset on purpose: with it the backend would ask for SSE-S3, while without
        it every state version takes the bucket's default encryption, SSE-KMS with the state key.
        """
        config = {"bucket": self.names.state_bucket, "key": state_key(self.env), "region": self.target.region}
        if locking and uses_lockfile(terraform_version()):
            config["use_lockfile"] = "true"
        elif locking:
            config["dynamodb_table"] = self.names.lock_table
        config.update(sandbox_off.backend_settings(self.root_kind, self.target))
        return config

    def teardown(self, *, confirm: str, account_id: str | None = None) -> None:
        """Remove ``global``, the state bucket included: the one path that may. ``confirm`` must be
        "global"; on AWS ``account_id`` must be the account's id too (see :meth:`confirm_destroy`).

        Refuses while staging or production state still lists resources. Destroys everything in
        global except the state bucket and its configuration (a targeted destroy never reaches what
        the targets depend on, so prevent_destroy is never put to the test; the bucket's encryption
        setting goes with the KMS key it names), then deletes every object version in the bucket,
        global's own state among them, and the bucket itself.
        """
        if self.env != "global":
            raise StackError(
                f"teardown is for global only; {self.env} is removed with destroy().",
                hint=f"Stack('{self.env}', target).destroy() or `labkit stack destroy {self.env}`.",
            )
        if confirm != "global":
            raise StackError(
                "Refusing to tear down global without confirm='global': it deletes the Terraform state "
                "bucket (every version of every environment's state) and the deployment ledger.",
                hint="Pass confirm='global' (CLI: --confirm global) once staging and production are "
                "destroyed.",
            )
        self.confirm_destroy(confirm, account_id=account_id)
        bucket = self.names.state_bucket
        if not self._bucket_exists(bucket):
            raise StackError(
                f"There is no state bucket {bucket} to tear down on {self.target.name}.",
                hint="global is not applied on this target (or was torn down already).",
            )
        self._refuse_while_environments_hold_resources(bucket)
        # Without locking: a DynamoDB lock table (Terraform < 1.10) is among what goes, and its
        # release at the end would fail. The bucket's own lock file (1.10+) is gone with the bucket.
        self.terraform.init(backend_config=self.backend_config(locking=False))
        self._initialised = True
        resources = [address for address in self.terraform.state_list() if not _is_data_source(address)]
        others = [address for address in resources if not address.startswith(STATE_BUCKET_ADDRESSES)]
        # Terraform also destroys what depends on a target: the bucket's encryption setting (it
        # names the KMS key). Counted here, so this line and Terraform's own agree.
        with_key = [a for a in resources if a.startswith(STATE_BUCKET_ADDRESSES) and "encryption" in a]
        also = ", except its encryption setting, which goes with the KMS key" if with_key else ""
        self._say(
            f"global: destroying {len(others) + len(with_key)} resources: all but the state bucket and "
            f"its settings{also}"
        )
        self.terraform.destroy(variables=self.variables(None), targets=others)
        self._say(f"global: deleting every object version in {bucket}, then the bucket")
        _delete_bucket(self.target, bucket)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self._initialised = False
        self._say("global: torn down")

    # -- plumbing -----------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if self.reporter is not None:
            self.reporter(line)

    def variables(
        self, overrides: Mapping[str, Any] | None = None, *, carry_over: bool = True
    ) -> dict[str, Any]:
        """The variables an apply of ``overrides`` uses: what the target fills in, then (with
        ``carry_over``) the deployment and the settings given as variables (``enable_database``)
        as last applied (staging, production) or global's GitHub settings as last applied, then
        ``overrides``.
        The deployment part is read from the state (:meth:`outputs`). A variable the root does not
        declare is refused (Terraform would only warn and apply without it)."""
        unknown = sorted(set(overrides or {}) - self.declared_variables())
        if unknown:
            raise ConfigError(
                f"{self.env} declares no variable {', '.join(map(repr, unknown))}: Terraform would ignore "
                "the value and apply without it.",
                hint=f"Variables {self.env} takes: {', '.join(sorted(self.declared_variables()))}.",
            )
        names = self.names
        values: dict[str, Any] = {"region": self.target.region, "project": names.project}
        if self.env == "global":
            values.update(
                state_bucket_name=names.state_bucket,
                lock_table_name=names.lock_table,
                artifact_bucket_name=names.artifact_bucket,
                ledger_table_name=names.ledger_table,
                # The GitHub roles get rights on the lock table only when Terraform locks with it.
                lock_with_table=not uses_lockfile(terraform_version()),
            )
        else:
            values.update(artifact_bucket=names.artifact_bucket, other_vpc_cidrs=self.other_vpc_cidrs())
        # What the sandbox turns off (require_tls, enable_budget): the one list of it is sandbox_off.
        values.update(sandbox_off.variables(self.root_kind, self.target))
        if carry_over:
            # An app environment's deployment and the settings given as variables (a deploy's
            # apply would otherwise remove the database); global's GitHub OIDC settings, which an
            # apply without them would otherwise remove (the deploy role with them).
            applied = ("github_settings",) if self.env == "global" else ("deployment", "carried_variables")
            outputs = self.outputs()
            for name in applied:
                values.update(outputs.get(name) or {})
        values.update(overrides or {})
        return values

    def other_vpc_cidrs(self) -> dict[str, str]:
        """The VPC range of every other app environment that has one (:func:`vpc_cidrs`): the
        root's ``vpc_cidr`` output refuses, at plan time, a range that overlaps one."""
        return vpc_cidrs(self.target, excluding=self.env)

    def declared_variables(self) -> frozenset[str]:
        """The input variables this environment's root declares (its ``*.tf`` files, linked ones too)."""
        return frozenset(
            name for path in sorted(self.root.glob("*.tf")) for name in _VARIABLE.findall(path.read_text())
        )

    def _require_deployment(self, values: Mapping[str, Any], command: str) -> None:
        """Refuse, before Terraform runs, a first plan or apply of staging or production that does not
        name the releases its colors run: there is no deployment yet to carry over, and Terraform's
        own error would name its -var flag, not labkit's."""
        missing = [name for name in ("blue_version", "green_version") if name not in values]
        if not is_app_environment(self.env) or not missing:
            return
        raise ConfigError(
            f"{self.env} has no deployment yet, so its first {command} must name the release each color "
            f"runs: {' and '.join(missing)} not given.",
            hint=f"`labkit stack apply {self.env} --var blue_version=1.0.0 --var green_version=1.0.0` "
            "(a plan takes the same --var; `labkit release list` shows the published releases); later "
            "applies keep them.",
        )

    def _require_artifacts(self, values: Mapping[str, Any]) -> None:
        """Refuse, before Terraform runs, a fleet with capacity whose release is not in the artifact
        bucket: its instances would fetch nothing and the load balancer would answer 502."""
        from labkit.release.build import release_exists, release_key  # only applies that build fleets need it

        bucket = values.get("artifact_bucket")
        if not is_app_environment(self.env) or not bucket:
            return
        for name in sorted(values):
            color = name.removesuffix("_version")
            if not name.endswith("_version") or values.get(f"{color}_capacity") in (0, "0"):
                continue
            version = str(values[name])
            if not release_exists(self.target, str(bucket), version):
                fix = (
                    f"`labkit release build {version}` (`labkit release list` shows what is there)"
                    if self.target.is_sandbox
                    else f"`labkit --target aws --allow-spend release build {version}` "
                    "(`labkit --target aws release list` shows what is there)"
                )
                raise StackError(
                    f"Refusing to apply {self.env}: {name}={version}, and release {version} is not in the "
                    f"artifact bucket (s3://{bucket}/{release_key(version)}); its instances would serve "
                    "nothing.",
                    hint=f"Build and publish it first: {fix}.",
                )

    def init(self) -> None:
        """``terraform init`` of this environment, when its configuration changed (see :meth:`_init`):
        what reads the dependency lock file or the installed modules' manifest needs it first."""
        self._init()

    def _init(self) -> None:
        """``terraform init`` with this target's S3 backend, at most once per Stack, and only when
        the configuration or the backend settings changed since the last init in its data dir
        (:meth:`labkit.infra.terraform.Terraform.init` with ``if_changed``): each init is seconds
        of provider installation and backend set-up, the same every time."""
        if self._initialised:
            return
        if not self._bucket_exists(self.names.state_bucket):
            raise self._no_state_bucket()
        self.terraform.init(backend_config=self.backend_config(), if_changed=True)
        self._initialised = True

    def _no_state_bucket(self) -> StackError:
        return StackError(
            f"The state bucket {self.names.state_bucket} does not exist on {self.target.name}, so "
            f"{self.env} has nowhere to keep its state.",
            hint="Apply the global environment first: `labkit stack apply global` "
            "(or Stack('global', target).apply()).",
        )

    @property
    def _bootstrap_state(self) -> Path:
        return self.work_dir / "bootstrap.tfstate"

    def _bootstrapping(self) -> bool:
        """True while global has no state bucket to keep its state in, or a bootstrap that failed
        half-way left its local state to resume from."""
        if self.env != "global" or self._initialised:
            return False
        return self._bootstrap_state.exists() or not self._bucket_exists(self.names.state_bucket)

    @contextmanager
    def _local_root(self, state: Path, why: str) -> Iterator[Terraform]:
        """Terraform in a copy of ``terraform/`` whose root for this environment keeps local state in
        ``state``; the copy is removed afterwards. The source tree is never written."""
        copy = self.work_dir / "local-src"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(
            terraform_dir(),
            copy,
            ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*", "*_override.tf"),
        )
        root = copy / "environments" / self.env
        (root / OVERRIDE_FILE).write_text(
            f'# Written by labkit: {why}.\nterraform {{\n  backend "local" {{}}\n}}\n'
        )
        terraform = Terraform(
            root, target=self.target, data_dir=self.work_dir / "local-tfdata", reporter=self.reporter
        )
        try:
            terraform.init(backend_config={"path": str(state)})
            yield terraform
        finally:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.rmtree(self.work_dir / "local-tfdata", ignore_errors=True)

    @contextmanager
    def _bootstrap_root(self) -> Iterator[Terraform]:
        self._say(f"global: no state bucket yet; bootstrapping on local state {self._bootstrap_state}")
        with self._local_root(
            self._bootstrap_state, "global's first apply, before its state bucket exists"
        ) as terraform:
            yield terraform

    def _bootstrap(self, variables: Mapping[str, Any] | None) -> ApplyResult:
        """global's first apply on local state, then its state migrated into the bucket it made."""
        with self._bootstrap_root() as terraform:
            result = terraform.apply(variables=self.variables(variables))
            (terraform.workdir / OVERRIDE_FILE).unlink()
            self._say(f"global: migrating state into s3://{self.names.state_bucket}/{state_key('global')}")
            terraform.init(backend_config=self.backend_config(), migrate_state=True)
            if not terraform.state_list():
                raise StackError(
                    "global's state is empty after migrating it into the state bucket.",
                    hint=f"The bootstrap state is kept at {self._bootstrap_state}; check it, then run "
                    "`labkit stack apply global` again.",
                )
        self._bootstrap_state.unlink()
        self._bootstrap_state.with_name(self._bootstrap_state.name + ".backup").unlink(missing_ok=True)
        return result

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self.target.client("s3").head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise StackError(
                f"Cannot use the state bucket {bucket}: {code or exc}.",
                hint="On AWS a 403 means the name is taken by another account or your credentials "
                "lack s3:ListBucket on it.",
            ) from exc
        return True

    def _refuse_while_environments_hold_resources(self, bucket: str) -> None:
        s3 = self.target.client("s3")
        for env in app_environments(self.target):
            try:
                body = s3.get_object(Bucket=bucket, Key=state_key(env))["Body"].read()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                    continue
                raise
            managed = raw_state_resources(json.loads(body or b"{}"))
            if managed:
                raise StackError(
                    f"Refusing to tear down global: {env} still manages {len(managed)} resources whose "
                    "state lives in the bucket.",
                    hint=f"Destroy it first: `labkit stack destroy {env}`.",
                )


def _is_data_source(address: str) -> bool:
    return address.startswith("data.") or ".data." in address


def _delete_bucket(target: Target, bucket: str) -> None:
    """Delete every object version and delete marker, then the bucket.

    Delete markers go first: moto fails to delete a key whose last remaining version is a delete
    marker, and on AWS the order makes no difference.
    """
    s3 = target.client("s3")
    markers: list[dict[str, str]] = []
    versions: list[dict[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", [])]
        versions += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
    entries = markers + versions
    for start in range(0, len(entries), 1000):  # DeleteObjects takes at most 1000 keys
        s3.delete_objects(Bucket=bucket, Delete={"Objects": entries[start : start + 1000], "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
