"""What the cost model assumes where a plan says nothing: hours a month, traffic, storage, requests,
and how often the stack deploys (:class:`DeployPattern`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd


def _assume(default: Any, meaning: str) -> Any:
    """A dataclass field whose metadata says what the assumption means (shown by Assumptions.frame())."""
    return field(default=default, metadata={"meaning": meaning})


@dataclass(frozen=True)
class Assumptions:
    """Usage that a plan does not say. Each default is for a small, lightly used staging stack."""

    hours_per_month: float = _assume(730.0, "Hours a month (AWS bills by the hour; 730 = 8,760 / 12).")
    alb_new_connections_per_s: float = _assume(
        1.0,
        "ALB new connections per second, averaged (a probe and a few testers, one connection per request).",
    )
    alb_active_connections_per_min: float = _assume(60.0, "ALB active connections per minute, averaged.")
    alb_gb_processed_per_hour: float = _assume(
        0.05,
        "GB through the ALB per hour (about 1 request/s of 14 KB).",
    )
    alb_rule_evaluations_per_s: float = _assume(
        0.0,
        "Billable rule evaluations per second (the first 10 rules are free; the lab's listener has 1).",
    )
    alb_public_ips_when_unknown: int = _assume(
        2,
        "Public IPv4 addresses of an internet-facing ALB when its subnets cannot be counted (one per AZ; "
        "an ALB needs at least two).",
    )
    data_transfer_out_gb_per_month: float = _assume(
        36.5,
        "GB a month out to the internet (= 0.05 GB/h x 730 h: every byte the ALB processes, an upper bound).",
    )
    nat_gb_processed_per_month: float = _assume(
        10.0,
        "GB a month through each NAT gateway (package and image downloads).",
    )
    root_volume_gb: float = _assume(
        8.0,
        "Root volume size when a launch template or instance does not set one (the AMI's; AL2023: 8 GB).",
    )
    root_volume_type: str = _assume("gp3", "Root volume type when not set (AL2023 AMIs use gp3).")
    s3_gb_per_bucket: float = _assume(1.0, "GB stored per bucket (release artifacts, state versions).")
    s3_put_requests_per_month: float = _assume(10_000.0, "PUT/LIST requests a month per bucket.")
    s3_get_requests_per_month: float = _assume(
        100_000.0,
        "GET requests a month per bucket (instances fetching releases, state reads).",
    )
    dynamodb_reads_per_month: float = _assume(1_000_000.0, "Read request units a month per on-demand table.")
    dynamodb_writes_per_month: float = _assume(100_000.0, "Write request units a month per on-demand table.")
    dynamodb_gb_per_table: float = _assume(0.1, "GB stored per table.")
    kms_requests_per_month: float = _assume(
        10_000.0,
        "KMS API requests a month per key (S3 and DynamoDB encryption).",
    )
    secrets_api_calls_per_month: float = _assume(10_000.0, "Secrets Manager API calls a month per secret.")
    rds_backup_gb: float = _assume(
        5.0,
        "GB of automated backups per DB instance (incremental daily snapshots plus the transaction logs kept "
        "for point-in-time restore); RDS bills only what exceeds the instance's allocated storage.",
    )
    log_gb_ingested_per_month: float = _assume(1.0, "GB of logs ingested a month per log group.")
    log_gb_stored: float = _assume(1.0, "GB of logs kept per log group (compressed).")

    def frame(self) -> pd.DataFrame:
        """Each assumption with its value and what it means."""
        return pd.DataFrame(
            [
                {"name": f.name, "value": getattr(self, f.name), "meaning": f.metadata["meaning"]}
                for f in fields(self)
            ]
        )

    @property
    def alb_lcu_per_hour(self) -> float:
        """LCUs billed per hour: the highest of the four dimensions."""
        return max(
            self.alb_new_connections_per_s / 25,
            self.alb_active_connections_per_min / 3000,
            self.alb_gb_processed_per_hour / 1,
            self.alb_rule_evaluations_per_s / 1000,
        )


@dataclass(frozen=True)
class DeployPattern:
    """How often the stack deploys and how long each deploy keeps the idle color up."""

    deploys_per_month: float = 20.0  # about one deploy a working day
    hours_per_deploy: float = 0.5  # idle color scaled up -> canary steps -> bake -> scaled down

