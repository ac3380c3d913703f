"""labkit: the library behind the Blue/Green Lab's notebooks, runbooks and CLI.

Everything a notebook needs is importable from here; the modules behind it are small and named
for what they do.
"""

from __future__ import annotations

from labkit import lesson
from labkit.analysis import AnalysisInput, Evidence, TargetHealth, Verdict
from labkit.appserver import AppProcess, unpack_release
from labkit.cost import (
    Assumptions,
    CostEstimate,
    DeployPattern,
    PriceTable,
    blue_green_overhead,
    estimate_cost,
    price_table,
)
from labkit.deploy import Controller, wait_healthy, weights_from_marks
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
    TargetError,
    TerraformError,
    TerraformNotFoundError,
)
from labkit.ledger import Deployment, Ledger, LockHolder
from labkit.notebook_check import check_folders, check_notebook
from labkit.notebook_report import render_report
from labkit.notebook_run import RunReport, artifacts_dir, run_notebooks
from labkit.plots import (
    cost_by_component,
    deploy_durations,
    deploy_timeline,
    dora_metrics,
    dora_table,
    latency_percentiles,
    traffic_over_time,
)
from labkit.probe import Probe
from labkit.release import (
    build_release,
    parse_faults,
    read_artifact_manifest,
    release_exists,
    release_key,
    upload_release,
)
from labkit.stack import Stack, StackNames
from labkit.strategy import Step, Strategy, Thresholds, all_at_once, canary, linear
from labkit.target import Target, get_target
from labkit.terraform import ApplyResult, PlanResult, ResourceChange, StateLockedError, Terraform

__version__ = "0.1.0"

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
    "all_at_once",
    "artifacts_dir",
    "blue_green_overhead",
    "build_release",
    "canary",
    "check_folders",
    "check_notebook",
    "cost_by_component",
    "deploy_durations",
    "deploy_timeline",
    "dora_metrics",
    "dora_table",
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
    "traffic_over_time",
    "unpack_release",
    "upload_release",
    "wait_healthy",
    "weights_from_marks",
]
