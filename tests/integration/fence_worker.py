"""One racer of the fencing test (tests/integration/test_deploy_fencing.py), run as its own process.

``python -m tests.integration.fence_worker ROLE ENDPOINT TABLE LOG UNTIL GO`` with ROLE one of
``controller`` (once the file GO exists: take the lock, record a deployment, make STEPS fenced
"applies"), ``resume``, ``resume-force`` and ``abort`` (until UNTIL, take over whatever a stopped
controller left, through the controller's own takeover, and finish it). Everything is the real
controller code against the sandbox's DynamoDB except Terraform: an "apply" is the controller's
fence, then Terraform's state lock (a file lock beside LOG), the controller's fence after it
(recording the state lock, conditional on its token), and a line in LOG, which is what the test
checks (one JSON object per line, appended atomically).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from labkit.deploy import Controller
from labkit.deploy.ledger import Deployment, Ledger, new_deployment_id
from labkit.deploy.strategy import canary
from labkit.errors import DeployError, DeploymentLockedError, DeploymentLockLostError
from labkit.target import sandbox

ENV = "staging"
STEPS = 8
STEP_S = 0.25
#: The lock's TTL in this race: short, so a stopped controller is taken over within seconds.
TTL_S = 3.0


def main() -> None:
    role, endpoint, table, log_path = sys.argv[1:5]
    until = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    state_lock = Path(log_path).with_suffix(".tflock")
    log = open(log_path, "a", buffering=1)  # noqa: SIM115  # one line per write, O_APPEND

    def note(event: str, **fields: Any) -> None:
        entry = {"t": time.time(), "pid": os.getpid(), "role": role, "event": event, **fields}
        log.write(json.dumps(entry) + "\n")

    def controller() -> Controller:
        ctl = Controller(ENV, sandbox(endpoint), say=lambda line: None)
        ctl._ledger = Ledger(ctl.target, table)
        return ctl

    def run_steps(ctl: Controller, record: Deployment, first: int, last: int) -> None:
        for index in range(first, last):
            ctl._update(record, step_index=index)
            with ctl._phase(record, f"shift-{index}"):
                ctl._fence()  # what Controller._apply does before Terraform runs
                # Terraform's state lock (a file lock here), then the controller's fence after it.
                with state_lock.open("a") as held:
                    fcntl.flock(held, fcntl.LOCK_EX)
                    ctl._record_state_lock(
                        {"ID": f"{os.getpid()}-{index}", "Who": ctl.owner, "Created": "now"}
                    )
                    note("apply", token=ctl._token(), step=index, deployment=record.id)
                    time.sleep(STEP_S)

    if role == "controller":
        ctl = controller()
        go = Path(sys.argv[6])
        while not go.exists():  # started early, so that both start at once when told to
            time.sleep(0.01)
        deployment_id = new_deployment_id()
        try:
            lock = ctl._hold(ctl.ledger.acquire_lock(ENV, ctl.owner, deployment_id, ttl_s=TTL_S))
        except DeploymentLockedError as refused:
            note("refused", message=str(refused).splitlines()[0])
            return
        note("won", token=lock.token, deployment=deployment_id)
        try:
            record = ctl.ledger.start(
                ENV, "2.0.0", from_color="blue", to_color="green", strategy=canary(), who=ctl.owner,
                deployment_id=deployment_id, lock=lock,
            )  # fmt: skip
            ctl._record_id = record.id
            run_steps(ctl, record, 0, STEPS)
            ctl._finish(record, "succeeded", "all steps applied")
            note("finished", token=lock.token)
        except DeploymentLockLostError as lost:
            note("lost", token=lock.token, message=str(lost).splitlines()[0])
        finally:
            if ctl._heartbeat is not None:  # what Controller's public calls do on return
                ctl._heartbeat.stop()
        return

    action = "abort" if role == "abort" else "resume"
    while time.time() < until:
        ctl = controller()
        try:
            record = ctl._interrupted(action, force=role == "resume-force")
        except (DeploymentLockedError, DeployError):
            time.sleep(0.2)
            continue
        previous = ctl._taking_over_from
        note("took", token=ctl._token(), deployment=record.id, old_token=previous and previous.lock_token)
        token = ctl._token()
        try:
            if action == "resume":
                run_steps(ctl, record, max(record.step_index, 0), STEPS)
            else:
                run_steps(ctl, record, STEPS, STEPS + 1)  # the rollback's apply
            ctl._finish(record, "succeeded" if action == "resume" else "aborted", f"{role} finished it")
            note("finished", token=token)
        except DeploymentLockLostError as lost:
            note("lost", message=str(lost).splitlines()[0])
        finally:
            if ctl._heartbeat is not None:
                ctl._heartbeat.stop()


if __name__ == "__main__":
    main()
