"""labkit.lab.hcl: a lesson shows a block of the project's Terraform as the module has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.lab.hcl import terraform_block

MODULE = """\
variable "name" {
  type = string
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:plain HTTP in the sandbox
  port = 80
  default_action {
    forward {
      target_group { weight = local.weights["blue"] } # a comment may say { without closing it
    }
  }
}

data "aws_iam_policy_document" "trust" {
  statement { actions = ["sts:AssumeRoleWithWebIdentity"] }
}

locals {
  weights = { blue = 100 - var.green_weight, green = var.green_weight }
}
"""


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "terraform" / "modules" / "alb"
    folder.mkdir(parents=True)
    (folder / "main.tf").write_text(MODULE)
    return tmp_path / "terraform"


def test_a_resource_is_read_to_its_closing_brace_without_checkov_comments(root: Path) -> None:
    found = terraform_block("alb", "aws_lb_listener.http", root=root)
    assert found.path == "terraform/modules/alb/main.tf"
    assert (found.first_line, found.last_line, found.skipped_comments) == (5, 13, 1)
    assert found.text.splitlines()[0] == 'resource "aws_lb_listener" "http" {'
    assert found.text.splitlines()[-1] == "}" and "checkov" not in found.text
    assert "weight = local.weights" in found.text
    shown = found._repr_markdown_()
    assert shown.startswith("`terraform/modules/alb/main.tf`, lines 5-13; 1 checkov comment(s) left out")
    assert "```hcl\nresource" in shown


def test_data_variables_and_locals_are_found_by_their_address(root: Path) -> None:
    assert terraform_block("alb", "data.aws_iam_policy_document.trust", root=root).last_line == 17
    assert terraform_block("alb", "variable.name", root=root).text.count("\n") == 2
    assert "green_weight" in terraform_block("alb", "locals", root=root).text


def test_a_missing_block_or_module_or_a_bad_address_says_what_there_is(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no block 'aws_lb\.this'") as missing:
        terraform_block("alb", "aws_lb.this", root=root)
    assert 'resource "aws_lb_listener" "http"' in str(missing.value)
    with pytest.raises(ConfigError, match="no Terraform module 'network'"):
        terraform_block("network", "aws_vpc.this", root=root)
    with pytest.raises(ConfigError, match="not a block address"):
        terraform_block("alb", "module.a.b", root=root)


def test_the_lessons_blocks_exist_in_the_project() -> None:
    """The blocks the lessons show, read from the checkout's modules (a rename breaks this first)."""
    listener = terraform_block("alb", "aws_lb_listener.http")
    assert listener.path == "terraform/modules/alb/main.tf" and "weight" in listener.text
    assert terraform_block("fleet", "aws_autoscaling_group.this").text.startswith("resource")
