"""Every disaster drill on one staging stack, with their figures: time to detect, time to recover,
requests failed, state versions lost.

It starts a private labkit sandbox in a temporary folder, builds what lesson 10 builds
(``labkit.lab.lesson.ensure_staging``: ``global``, release 1.0.0, staging with blue x2 on it) and
runs each drill with ``labkit.ops.drill.run_drill``
(inject, the runbook's dry run, the confirmed runbook, the steady state checked before and after,
a probe at ``--rate`` through the ALB throughout). ``accidental-destroy`` runs last: it rebuilds
the whole environment.

    .venv/bin/python bench/drills.py [--only NAME ...] [--rate 20] [--keep]

Goals on the sandbox: every state drill recovers with zero lost state versions, and
``accidental-destroy`` restores service in under 3 minutes. Expect about 3 minutes for the build
before the first drill (the AWS provider waits 60 s while creating the ALB).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

#: Drills that rebuild the environment run after the rest.
LAST = ("accidental-destroy",)
#: Drills that need global's GitHub OIDC provider and deploy role, which global creates for a repository.
NEED_DEPLOY_ROLE = ("oidc-misconfigured", "deploy-role-deleted", "deploy-permission-lost")
#: The repository (and its staging environment) whose deploy role those drills break.
DEPLOY_SUBJECT = "repo:acme/bluegreen-lab:environment:staging"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these drills")
    parser.add_argument("--rate", type=float, default=20.0, help="probe requests per second")
    parser.add_argument("--keep", action="store_true", help="leave the work folder (printed) behind")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labkit-bench-drills-"))
    os.environ["LABKIT_HOME"] = str(work / "home")
    os.environ["LABKIT_SANDBOX_HOME"] = str(work / "sandbox")
    os.environ.setdefault("LABKIT_TF_PLUGIN_MIRROR", "/opt/tf-plugins")
    from labkit.settings import TERRAFORM_DIR_ENV, terraform_dir

    # Drills that write code (out-of-sync releases a composition version) write into a copy of
    # terraform/, links kept, never into the checkout.
    ignore = shutil.ignore_patterns(".terraform*", "*.tfstate*")
    shutil.copytree(terraform_dir(), work / "terraform", symlinks=True, ignore=ignore)
    os.environ[TERRAFORM_DIR_ENV] = str(work / "terraform")
    from labkit import sandbox
    from labkit.lab.lesson import ensure_staging
    from labkit.ops.drill import DrillReport, run_drill
    from labkit.ops.drills import all_drills

    names = [n for n in all_drills() if not args.only or n in args.only]
    names.sort(key=lambda n: n in LAST)
    reports: list[DrillReport] = []
    try:
        target = sandbox.target()
        started = time.monotonic()
        ensure_staging(target, say=lambda line: None)  # what lesson 10 builds
        if set(names) & set(NEED_DEPLOY_ROLE):
            from labkit.infra.stack import Stack
            from labkit.lab.ci_identity import github_variables

            Stack("global", target, reporter=None).apply(github_variables(target, DEPLOY_SUBJECT))
        print(f"staging built in {time.monotonic() - started:.0f} s; drills: {', '.join(names)}", flush=True)
        for name in names:
            print(f"\n=== {name}", flush=True)
            reports.append(run_drill(name, target, "staging", probe_rate=args.rate))
            for line in reports[-1].lines():
                print(line, flush=True)
    finally:
        sandbox.down()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"\ndrills (sandbox, probe {args.rate:g} req/s):")
    print(f"  {'drill':<20} {'verified':<9} {'detect s':>9} {'recover s':>10} {'failed':>12} {'lost':>5}")
    for r in reports:
        lost = "-" if r.lost_state_versions is None else str(r.lost_state_versions)
        print(
            f"  {r.name:<20} {'yes' if r.verified else 'NO':<9} {secs(r.time_to_detect_s):>9} "
            f"{secs(r.time_to_recover_s):>10} {f'{r.failed_requests}/{r.requests}':>12} {lost:>5}"
        )


if __name__ == "__main__":
    main()
