"""labkit.ops.restore and the accidental-destroy drill's check without a sandbox: reading
deployments out of state documents, and what a diagnosis says."""

from __future__ import annotations

from typing import Any

from labkit.ops.drills.accidental_destroy import deployment_before_destroy, destroy_command
from labkit.ops.restore import EVERYTHING, Diagnosis, LastGood, applied_deployment
from labkit.target import Target

SERVED = {"blue_version": "1.0.0", "green_version": "1.0.0", "blue_capacity": 2, "green_capacity": 0,
          "green_weight": 0}  # fmt: skip
NEWER = {**SERVED, "green_version": "1.1.0", "green_capacity": 2, "green_weight": 100}


def state(deployment: dict[str, Any] | None, resources: int = 3) -> dict[str, Any]:
    outputs = {"deployment": {"value": {**deployment, "preview_color": None}}} if deployment else {}
    return {"serial": 1, "resources": [{"type": "aws_lb"}] * resources, "outputs": outputs}


def test_a_state_records_a_deployment_only_with_resources_and_every_variable() -> None:
    assert applied_deployment(state(SERVED)) == SERVED  # preview_color is not rebuilt from
    assert applied_deployment(state(SERVED, resources=0)) is None  # what a destroy leaves
    assert applied_deployment(state({**SERVED, "green_weight": None})) is None
    assert applied_deployment(state(None)) is None


def test_what_served_before_the_destroy_is_the_newest_deployment_older_than_it() -> None:
    # newest first: restored to something else, the destroy, an apply half-way, the last good one
    history = [state(NEWER), state(None, resources=0), state(None, resources=5), state(SERVED), state(NEWER)]
    assert deployment_before_destroy(history) == SERVED
    assert deployment_before_destroy([state(NEWER), state(SERVED)]) == NEWER  # no destroy: the newest
    assert deployment_before_destroy([state(None, resources=0)]) is None


def test_a_diagnosis_is_complete_only_when_nothing_is_missing_and_the_alb_serves() -> None:
    last = LastGood(variables=SERVED, source="the ledger: deployment d1 of 1.0.0 on blue, succeeded")
    broken = Diagnosis("staging", last, in_state=0, missing=["module.environment.module.alb.aws_lb.this"],
                       alb_detail="no load balancer in state.")  # fmt: skip
    assert not broken.complete
    text = str(broken)
    assert "creates 1 and changes 0" in text and "blue 1.0.0 x2 at 100%" in text
    assert text.endswith("Incomplete: it needs a rebuild.")
    gone = Diagnosis("staging", last, in_state=0, missing=[EVERYTHING], alb_detail="no resources in state.")
    assert "nothing to plan against: it is all missing" in str(gone)
    assert gone.summary == "everything, from nothing"
    fine = Diagnosis("staging", last, in_state=40, alb_serves=True, alb_detail="answers 200")
    assert fine.complete and str(fine).endswith("Complete: nothing to restore.")


def test_the_injection_is_the_command_a_person_types() -> None:
    sandbox = Target(name="sandbox", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    assert destroy_command(sandbox, "staging")[1:] == [
        "-m", "labkit", "stack", "destroy", "staging", "--confirm", "staging"
    ]  # fmt: skip
