"""Put a deleted database back into service with its data: the ``db-restore`` runbook's path when
the instance it restores is the environment's own database and that instance is gone.

- :func:`restore_database`: an apply of the environment's database instance alone, with
  ``database_snapshot_identifier`` set. Terraform finds the instance gone (it reads an RDS instance
  back by its resource id) and creates it again under its own identifier from the snapshot (the
  database module's ``snapshot_identifier``), with a new RDS-managed secret. Nothing can write to
  it yet: the fleets still hold the deleted instance's settings, so its data can be held to the
  restore point first. Later applies do not pass the snapshot, and the module ignores it once the
  instance exists.
- :func:`connect_fleets`: an apply of the whole environment moves the secret's rotation schedule
  and the fleets onto the instance: their policy (their role may read only the new secret) and the
  app's settings in their launch templates (the new secret's ARN; on the sandbox its new port too).
- :func:`roll_fleets`: an instance started before that apply runs with the deleted instance's
  secret, which RDS deleted with it, so it can never reach the database again, and its target
  group reports it unhealthy. Each such instance is replaced through its Auto Scaling group, whose
  replacement starts from the new launch template, until every fleet is healthy again.
- :func:`orders_through_alb`: the proof that the service is back: an order written through the
  load balancer and read back.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from labkit.deploy.health import POLL_S, fleets
from labkit.deploy.writeprobe import orders_url
from labkit.errors import DatabaseRestoreError
from labkit.infra.stack import Stack
from labkit.ops.probes import Check
from labkit.target import Target

#: Where the composition keeps the environment's database instance.
INSTANCE_ADDRESS = "module.environment.module.database[0].aws_db_instance.this"
#: How long the replacements of a color's instances may take to turn healthy.
ROLL_TIMEOUT_S = {True: 180.0, False: 900.0}


def restored_from(stack: Stack) -> str | None:
    """The snapshot the environment's database instance was created from, as its state records
    it (None: created empty, or no database in the state)."""
    if INSTANCE_ADDRESS not in stack.resources():
        return None
    snapshot = stack.state_attributes(INSTANCE_ADDRESS).get("snapshot_identifier")
    return str(snapshot) if snapshot else None


def restore_database(stack: Stack, snapshot: str) -> str:
    """Apply the environment's database instance alone (and what it needs), created from
    ``snapshot``: the fleets keep the deleted instance's settings, so nothing writes to it yet.
    Not the whole database module: its ingress rules name the fleets' security groups, which
    would pull every resource of the fleet module into the apply, launch templates included."""
    result = stack.apply({"database_snapshot_identifier": snapshot}, targets=[INSTANCE_ADDRESS])
    return f"created from {snapshot} with a new secret in {result.seconds:.0f} s (the instance alone)"


def fleets_connected(stack: Stack) -> bool:
    """Whether the environment's last whole apply saw the instance's current secret: its outputs,
    which a targeted apply does not write, name the secret the instance has."""
    output = stack.outputs().get("database")
    secrets = stack.state_attributes(INSTANCE_ADDRESS).get("master_user_secret") or [{}]
    return isinstance(output, Mapping) and output.get("master_user_secret_arn") == secrets[0].get(
        "secret_arn"
    )


def connect_fleets(stack: Stack) -> str:
    """Apply the whole environment: the fleets' policy and launch templates take the new secret."""
    result = stack.apply()
    return (
        f"the apply added {result.added}, changed {result.changed} and removed {result.removed} "
        f"resource(s) in {result.seconds:.0f} s"
    )


def roll_fleets(stack: Stack, say: Callable[[str], None]) -> str:
    """Replace each fleet's unhealthy instances through its Auto Scaling group until the fleet has
    its capacity of healthy ones; what was replaced.

    An instance started before :func:`connect_fleets` holds the deleted instance's secret: its app
    cannot start, or answers ``/health/ready`` with 503, so its target group reports it unhealthy
    (an instance still booting is ``initial`` and is left to turn one way or the other). Auto
    Scaling would replace it too, but only once its health check grace period has passed; the
    replacement starts from the launch template the apply wrote."""
    target = stack.target
    autoscaling = target.client("autoscaling")
    limit = ROLL_TIMEOUT_S[target.is_sandbox]
    done = []
    for fleet in fleets(stack.outputs()):
        replaced: set[str] = set()
        start, said = time.monotonic(), ""
        while True:
            report = fleet.check(target)
            waited = time.monotonic() - start
            if report.ready:
                break
            if waited > limit:
                raise DatabaseRestoreError(
                    f"{fleet.color}'s fleet is not healthy after {waited:.0f} s: {report.describe()}.",
                    hint="See why its instances fail (`labkit sandbox logs` on the sandbox, the instances' "
                    "console output on AWS), then run the runbook again: it replaces unhealthy instances "
                    "only.",
                )
            for instance in report.unhealthy:
                if instance in replaced:
                    continue
                try:
                    autoscaling.terminate_instance_in_auto_scaling_group(
                        InstanceId=instance, ShouldDecrementDesiredCapacity=False
                    )
                except ClientError as exc:  # Auto Scaling replaced it first (its own health check)
                    if "not found" not in str(exc).lower():
                        raise
                replaced.add(instance)
            line = f"  {fleet.color}: {len(replaced)} replaced; {report.describe()}"
            if line != said:  # a line when something changed, not one per poll
                say(line)
                said = line
            time.sleep(POLL_S)
        done.append(f"{fleet.color}: {len(replaced)} replaced, {report.describe()} after {waited:.0f} s")
    return "; ".join(done) or "no fleet has capacity"


def orders_through_alb(target: Target, environment: str) -> Check:
    """An order written through the environment's load balancer (``POST /orders``) and read back
    (``GET /orders/ID``): the app, on every color that serves, reaches the database."""
    outputs = Stack(environment, target, reporter=None).outputs()
    if not isinstance(outputs.get("database"), Mapping):
        return True, f"{environment} has no database: nothing to write"
    url = urlsplit(orders_url(target.alb_url(str(outputs["alb_dns_name"]))))
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=10)
    try:
        conn.request("POST", url.path, body=json.dumps({"item": "restore-check"}),
                     headers={"Content-Type": "application/json"})  # fmt: skip
        created = conn.getresponse()
        body = created.read()
        if created.status != 201:
            return False, f"POST {url.path} answered {created.status}: {body[:200]!r}"
        order = json.loads(body)
        conn.request("GET", f"{url.path}/{order['id']}")
        read = conn.getresponse()
        again = read.read()
        if read.status != 200:
            return False, f"order {order['id']} was written, but GET answered {read.status}: {again[:200]!r}"
    except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
        return False, f"{url.geturl()} did not answer: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
    writer = f"{order.get('color', '?')} {order.get('written_by', '?')}"
    return True, f"order {order['id']} written by {writer} and read back"
