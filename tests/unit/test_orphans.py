"""Orphans: matching what the account has against the states, the runbook's decision, and the
adopted code (moto's in-process mock for the scan; no Terraform)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit.errors import ConfigError, OrphanError
from labkit.infra.adopt import clean_generated, import_blocks, resource_name
from labkit.infra.inventory import Found, OrphanReport, held_ids, orphans_among, scan
from labkit.ops.orphans import decide
from labkit.settings import TERRAFORM_DIR_ENV, terraform_dir
from labkit.target import Target

TAGS = [{"Key": "Project", "Value": "bglab"}, {"Key": "Environment", "Value": "staging"}]
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/byhand/abc"


def state(*resources: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A raw state (``terraform state pull``) with one instance per (type, attributes)."""
    return {
        "resources": [
            {"mode": "managed", "type": kind, "name": f"r{n}", "instances": [{"attributes": values}]}
            for n, (kind, values) in enumerate(resources)
        ]
        + [
            {
                "mode": "data",
                "type": "aws_vpc",
                "name": "d",
                "instances": [{"attributes": {"id": "vpc-data"}}],
            }
        ]
    }


def test_the_states_hold_ids_and_arns_of_managed_resources_only() -> None:
    group = ("aws_security_group", {"id": "sg-1", "arn": "arn:1"})
    held = held_ids(
        {"global": state(("aws_s3_bucket", {"id": "b", "arn": "arn:aws:s3:::b"})), "staging": state(group)}
    )
    assert held == {"b": "global", "arn:aws:s3:::b": "global", "sg-1": "staging", "arn:1": "staging"}
    assert "vpc-data" not in held  # a data source: read by the state, not held


def test_what_no_state_holds_is_an_orphan_once_with_every_way_it_was_found() -> None:
    found = [
        Found("ec2", "instance", "i-1", how=("tagged Environment=staging",)),
        Found("ec2", "instance", "i-1", name="debug", how=("in VPC vpc-1",)),
        Found("ec2", "security-group", "sg-held", how=("in VPC vpc-1",)),
        Found("elasticloadbalancing", "targetgroup", TG_ARN, TG_ARN, how=("tagged Environment=staging",)),
        Found(
            "ec2", "vpc", "vpc-1", "arn:aws:ec2:us-east-1:1:vpc/vpc-1", how=("tagged Environment=staging",)
        ),
    ]
    orphans = orphans_among(found, {"sg-held": "staging", "arn:aws:ec2:us-east-1:1:vpc/vpc-1": "staging"})
    assert [(o.kind, o.id, o.how) for o in orphans] == [
        ("instance", "i-1", ("in VPC vpc-1", "tagged Environment=staging")),
        ("targetgroup", TG_ARN, ("tagged Environment=staging",)),
    ]
    assert orphans[0].name == "debug"


def test_an_asg_owns_its_instances_and_a_vpc_its_default_group() -> None:
    found = [
        Found("ec2", "instance", "i-fleet", how=("in VPC vpc-1",), launched_by="bglab-staging-blue-1.0.0"),
        Found("ec2", "instance", "i-stray", how=("in VPC vpc-1",), launched_by="someone-elses-asg"),
        Found("ec2", "security-group", "sg-d", name="default", how=("in VPC vpc-1",)),
    ]
    orphans = orphans_among(found, {"bglab-staging-blue-1.0.0": "staging"})
    assert [o.id for o in orphans] == ["i-stray"]


@pytest.fixture()
def target(moto_target: Target) -> Target:
    return moto_target


def test_the_scan_finds_resources_in_the_vpc_or_tagged_and_says_how(target: Target) -> None:
    ec2 = target.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="byhand", Description="d", VpcId=vpc)["GroupId"]
    ec2.create_security_group(GroupName="elsewhere", Description="d", VpcId=other)
    instance = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": TAGS}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    tagged_ip = ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": TAGS}]
    )
    ec2.allocate_address(Domain="vpc")  # nobody's: neither tagged nor attached in the VPC
    elbv2 = target.client("elbv2")
    made = elbv2.create_target_group(Name="byhand", Protocol="HTTP", Port=80, VpcId=vpc, Tags=TAGS)
    elbv2.create_target_group(Name="elsewhere", Protocol="HTTP", Port=80, VpcId=other)

    found = orphans_among(scan(target, project="bglab", environment="staging", vpcs=[vpc]), {})
    assert not [o for o in found if o.name == "default"]  # each VPC's default group comes with it
    assert {(o.kind, o.id): o.how for o in found} == {
        ("instance", instance): (f"in VPC {vpc}", "tagged Environment=staging"),
        ("security-group", group): (f"in VPC {vpc}",),
        ("elastic-ip", tagged_ip["AllocationId"]): ("tagged Environment=staging",),
        ("targetgroup", made["TargetGroups"][0]["TargetGroupArn"]): (
            f"in VPC {vpc}",
            "tagged Environment=staging",
        ),
    }


def report(*orphans: Found) -> OrphanReport:
    return OrphanReport("staging", ("vpc-1",), orphans)


INSTANCE = Found("ec2", "instance", "i-1", how=("in VPC vpc-1",))
GROUP = Found("ec2", "security-group", "sg-1", how=("in VPC vpc-1",))


def test_the_decision_is_one_word_for_all_or_a_mapping_that_names_every_orphan() -> None:
    found = report(INSTANCE, GROUP)
    assert decide(found, "remove") == {"i-1": "remove", "sg-1": "remove"}
    assert decide(found, {"i-1": "adopt", "sg-1": "remove"}) == {"i-1": "adopt", "sg-1": "remove"}
    assert decide(found, '{"i-1": "adopt", "sg-1": "adopt"}') == {"i-1": "adopt", "sg-1": "adopt"}
    with pytest.raises(OrphanError, match="not orphans: i-2; not decided: sg-1"):
        decide(found, {"i-1": "adopt", "i-2": "remove"})
    with pytest.raises(OrphanError, match="'keep' is neither"):
        decide(found, "keep")
    with pytest.raises(OrphanError, match="neither adopts nor removes: group bglab-x"):
        decide(report(Found("autoscaling", "group", "bglab-x")), "remove")
    assert decide(report(), "adopt") == {}


def test_adopted_names_are_terraform_names_and_imports_name_their_ids() -> None:
    assert resource_name("instance", "i-0abc") == "orphan_instance_i_0abc"
    assert resource_name("targetgroup", TG_ARN) == "orphan_targetgroup_byhand_abc"
    block = 'import {\n  to = aws_instance.x\n  id = "i-1"\n}\n\n'
    assert import_blocks([("aws_instance.x", "i-1")]) == block


GENERATED = """# __generated__ by Terraform
resource "aws_instance" "x" {
  ami                                  = "ami-1"
  host_id                              = null
  ipv6_address_count                   = 0
  ipv6_addresses                       = []
  tags = {
    Name = "debug"
  }
  tags_all = {
    Environment = "staging"
    Name        = "debug"
  }
  user_data = null
  credit_specification {
    cpu_credits = "standard"
  }
}

resource "aws_lb_target_group" "y" {
  tags     = {}
  tags_all = {}
  target_failover {
    on_deregistration = null
    on_unhealthy      = null
  }
  target_group_health {
    dns_failover {
      minimum_healthy_targets_count = null
    }
  }
}
"""


CLEANED = """# __generated__ by Terraform
resource "aws_instance" "x" {
  ami                                  = "ami-1"
  tags = {
    Name = "debug"
  }
  credit_specification {
    cpu_credits = "standard"
  }
}

resource "aws_lb_target_group" "y" {
  tags     = {}
}
"""


def test_the_generated_configuration_is_cleaned_of_what_fails_validation() -> None:
    assert clean_generated(GENERATED) == CLEANED


def test_labkit_can_run_a_copy_of_the_terraform_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = terraform_dir()
    assert (default / "environments" / "staging").is_dir()
    (tmp_path / "environments").mkdir()
    monkeypatch.setenv(TERRAFORM_DIR_ENV, str(tmp_path))
    assert terraform_dir() == tmp_path.resolve()
    monkeypatch.setenv(TERRAFORM_DIR_ENV, str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="holds no environments/"):
        terraform_dir()
