"""labkit.infra.tfjson: a raw state's resources and their addresses, as `terraform state list` prints them."""

from __future__ import annotations

import pytest

from labkit.errors import TerraformDocumentError
from labkit.infra.tfjson import raw_state_resources, read_document

RAW_STATE = {
    "version": 4,
    "resources": [
        {
            "module": "module.fleet[\"blue\"]",
            "mode": "managed",
            "type": "aws_autoscaling_group",
            "name": "this",
            "instances": [{"attributes": {"name": "blue-asg"}}],
        },
        {
            "mode": "managed",
            "type": "aws_subnet",
            "name": "public",
            "instances": [{"index_key": 0, "attributes": {"id": "s-0"}}, {"index_key": 1, "attributes": {}}],
        },
        {"mode": "data", "type": "aws_region", "name": "current", "instances": [{"attributes": {"id": "r"}}]},
    ],
}


def test_raw_state_addresses_match_terraform_state_list() -> None:
    managed = [r.address for r in raw_state_resources(RAW_STATE)]
    assert managed == [
        'module.fleet["blue"].aws_autoscaling_group.this',
        "aws_subnet.public[0]",
        "aws_subnet.public[1]",
    ]
    everything = raw_state_resources(RAW_STATE, data_sources=True)
    assert everything[-1].address == "data.aws_region.current"
    assert everything[-1].values == {"id": "r"}


def test_read_document_reads_a_raw_state_and_refuses_anything_else() -> None:
    document = read_document(RAW_STATE)
    assert document.kind == "raw state"
    assert [r.values.get("name") for r in document.resources][:1] == ["blue-asg"]
    with pytest.raises(TerraformDocumentError, match="neither a Terraform plan nor a state"):
        read_document({"hello": "world"})
