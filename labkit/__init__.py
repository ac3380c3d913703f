"""labkit: the library behind the Blue/Green Lab's notebooks, runbooks and CLI.

Everything a notebook needs is importable from here. The names load on first use (PEP 562), so
``import labkit`` and the CLI stay fast: pandas, matplotlib, papermill and boto3 load only when a
name that needs them is used. The packages behind it name their layer, lowest first: the foundation
(:mod:`labkit.errors`, :mod:`labkit.settings`, :mod:`labkit.target`), :mod:`labkit.release`,
:mod:`labkit.infra`, :mod:`labkit.sandbox`, :mod:`labkit.deploy`, :mod:`labkit.lab`, and
:mod:`labkit.cli` on top (``lint-imports`` holds them to it; see ``[tool.importlinter]`` in
pyproject.toml).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from labkit.errors import (
    AnalysisError,
    AppProcessError,
    ConfigError,
    CostError,
    DeployError,
    DeploymentLockedError,
    LabkitError,
    LedgerError,
    LessonOrderError,
    NotebookRunError,
    PlotInputError,
    ProbeError,
    ReleaseError,
    SandboxError,
    SpendNotAllowedError,
    StackError,
    StateLockedError,
    TargetError,
    TerraformError,
    TerraformNotFoundError,
)

if TYPE_CHECKING:
    from labkit.deploy import Controller, wait_healthy, weights_from_marks
    from labkit.deploy.analysis import AnalysisInput, Evidence, TargetHealth, Verdict
    from labkit.deploy.ledger import Deployment, Ledger, LockHolder
    from labkit.deploy.probe import Probe
    from labkit.deploy.strategy import Step, Strategy, Thresholds, all_at_once, canary, linear
    from labkit.deploy.writeprobe import WriteProbe
    from labkit.infra.cost import (
        Assumptions,
        CostEstimate,
        DeployPattern,
        PriceTable,
        blue_green_overhead,
        estimate_cost,
        price_table,
    )
    from labkit.infra.stack import Stack, StackNames
    from labkit.infra.terraform import ApplyResult, PlanResult, ResourceChange, Terraform
    from labkit.lab import doctor, lesson
    from labkit.lab.check import check_folders, check_notebook
    from labkit.lab.hcl import changes_table, terraform_block
    from labkit.lab.plots import (
        cost_by_component,
        deploy_durations,
        deploy_timeline,
        dora_metrics,
        dora_table,
        latency_percentiles,
        traffic_over_time,
    )
    from labkit.lab.readback import ListenerWatch, steps_table
    from labkit.lab.report import render_report
    from labkit.lab.run import RunReport, artifacts_dir, ensure_kernel, run_notebooks
    from labkit.release.appserver import AppProcess, unpack_release
    from labkit.release.build import (
        build_release,
        parse_faults,
        read_artifact_manifest,
        release_exists,
        release_key,
        upload_release,
    )
    from labkit.target import Target, get_target

__version__ = "0.1.0"

#: Each lazily loaded name and the module that defines it (``lesson`` and ``doctor`` are modules).
_LAZY: dict[str, str] = {
    "AnalysisInput": "labkit.deploy.analysis",
    "AppProcess": "labkit.release.appserver",
    "ApplyResult": "labkit.infra.terraform",
    "Assumptions": "labkit.infra.cost",
    "Controller": "labkit.deploy",
    "CostEstimate": "labkit.infra.cost",
    "DeployPattern": "labkit.infra.cost",
    "Deployment": "labkit.deploy.ledger",
    "Evidence": "labkit.deploy.analysis",
    "Ledger": "labkit.deploy.ledger",
    "ListenerWatch": "labkit.lab.readback",
    "LockHolder": "labkit.deploy.ledger",
    "PlanResult": "labkit.infra.terraform",
    "PriceTable": "labkit.infra.cost",
    "Probe": "labkit.deploy.probe",
    "ResourceChange": "labkit.infra.terraform",
    "RunReport": "labkit.lab.run",
    "Stack": "labkit.infra.stack",
    "StackNames": "labkit.infra.stack",
        "Step": "labkit.deploy.strategy",
    "Strategy": "labkit.deploy.strategy",
    "Target": "labkit.target",
    "TargetHealth": "labkit.deploy.analysis",
    "Terraform": "labkit.infra.terraform",
    "Thresholds": "labkit.deploy.strategy",
    "Verdict": "labkit.deploy.analysis",
    "WriteProbe": "labkit.deploy.writeprobe",
    "all_at_once": "labkit.deploy.strategy",
    "artifacts_dir": "labkit.lab.run",
    "ensure_kernel": "labkit.lab.run",
    "blue_green_overhead": "labkit.infra.cost",
    "build_release": "labkit.release.build",
    "canary": "labkit.deploy.strategy",
    "check_folders": "labkit.lab.check",
    "check_notebook": "labkit.lab.check",
    "cost_by_component": "labkit.lab.plots",
    "deploy_durations": "labkit.lab.plots",
    "deploy_timeline": "labkit.lab.plots",
    "dora_metrics": "labkit.lab.plots",
    "dora_table": "labkit.lab.plots",
    "estimate_cost": "labkit.infra.cost",
    "get_target": "labkit.target",
    "latency_percentiles": "labkit.lab.plots",
    "lesson": "labkit.lab.lesson",
    "doctor": "labkit.lab.doctor",
    "linear": "labkit.deploy.strategy",
    "parse_faults": "labkit.release.build",
    "price_table": "labkit.infra.cost",
    "read_artifact_manifest": "labkit.release.build",
    "release_exists": "labkit.release.build",
    "release_key": "labkit.release.build",
    "render_report": "labkit.lab.report",
    "steps_table": "labkit.lab.readback",
    "terraform_block": "labkit.lab.hcl",
    "changes_table": "labkit.lab.hcl",
    "run_notebooks": "labkit.lab.run",
    "traffic_over_time": "labkit.lab.plots",
    "unpack_release": "labkit.release.appserver",
    "upload_release": "labkit.release.build",
    "wait_healthy": "labkit.deploy",
    "weights_from_marks": "labkit.deploy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module.endswith("." + name) else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "AnalysisError",
    "AnalysisInput",
    "AppProcess",
    "AppProcessError",
    "ApplyResult",
    "Assumptions",
    "ConfigError",
    "Controller",
    "CostError",
    "CostEstimate",
    "DeployError",
    "DeployPattern",
    "Deployment",
    "DeploymentLockedError",
    "Evidence",
    "LabkitError",
    "Ledger",
    "LedgerError",
    "LessonOrderError",
    "ListenerWatch",
    "LockHolder",
    "NotebookRunError",
    "PlanResult",
    "PlotInputError",
    "PriceTable",
    "Probe",
    "ProbeError",
    "ReleaseError",
    "ResourceChange",
    "RunReport",
    "SandboxError",
    "SpendNotAllowedError",
    "Stack",
    "StackError",
    "StackNames",
    "StateLockedError",
    "Step",
    "Strategy",
    "Target",
    "TargetError",
    "TargetHealth",
    "Terraform",
    "TerraformError",
    "TerraformNotFoundError",
    "Thresholds",
    "Verdict",
    "WriteProbe",
    "all_at_once",
    "artifacts_dir",
    "blue_green_overhead",
    "build_release",
    "canary",
    "changes_table",
    "check_folders",
    "check_notebook",
    "cost_by_component",
    "deploy_durations",
    "deploy_timeline",
    "doctor",
    "dora_metrics",
    "dora_table",
    "ensure_kernel",
    "estimate_cost",
    "get_target",
    "latency_percentiles",
    "lesson",
    "linear",
    "parse_faults",
    "price_table",
    "read_artifact_manifest",
    "release_exists",
    "release_key",
    "render_report",
    "run_notebooks",
    "steps_table",
    "terraform_block",
    "traffic_over_time",
    "unpack_release",
    "upload_release",
    "wait_healthy",
    "weights_from_marks",
]
