"""Code for resources that were made outside Terraform: ``import`` blocks, and the resources'
configuration as ``terraform plan -generate-config-out`` writes it, cleaned so that it applies.

Where the code goes: ``adopted.tf`` in the environment's root (:attr:`labkit.infra.stack.Stack.root`),
a file of its own so that a reviewer sees at once what was adopted, and commits it. The root is the
checkout's ``terraform/environments/<env>`` unless ``LABKIT_TERRAFORM_DIR`` names a copy
(:func:`labkit.settings.terraform_dir`): the tests adopt into a copy, never into the folder that
other test workers read. The ``import`` blocks stay in the file after the apply: Terraform skips an
import whose resource is in state already, and the blocks record where each resource came from.

Terraform generates the configuration from what the provider read back, and says it must be
reviewed: as generated it fails validation in known ways, which :func:`clean_generated` removes
(arguments set to ``null``, the computed ``tags_all``, the empty ``ipv6_address_count`` and
``ipv6_addresses`` that the provider refuses together, blocks left with nothing in them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The file of adopted code in an environment's root.
ADOPTED_FILE = "adopted.tf"
#: While generating: the new ``import`` blocks, and the configuration Terraform writes for them.
PENDING_FILE = "adopted_pending.tf"
GENERATED_FILE = "adopted_generated.tf"

#: The Terraform resource type of each kind of orphan labkit adopts (the import id is its id).
TERRAFORM_TYPES = {
    "instance": "aws_instance",
    "security-group": "aws_security_group",
    "elastic-ip": "aws_eip",
    "targetgroup": "aws_lb_target_group",
}

_NULL = re.compile(r"^\s*[A-Za-z0-9_]+\s*=\s*null\s*$")
_EMPTY_IPV6 = re.compile(r"^\s*(ipv6_address_count\s*=\s*0|ipv6_addresses\s*=\s*\[\])\s*$")
_TAGS_ALL = re.compile(r"^\s*tags_all\s*=\s*\{\s*(\}\s*)?$")
_BLOCK_OPEN = re.compile(r"^\s*[A-Za-z0-9_]+\s*\{\s*$")


def resource_name(kind: str, ident: str) -> str:
    """A Terraform name for an adopted resource: ``orphan_`` and its id (for an ARN, its last two
    parts: a target group's name and suffix), as letters, digits and underscores."""
    tail = "_".join(ident.split(":")[-1].split("/")[-2:]) if ident.startswith("arn:") else ident
    return "orphan_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{kind}_{tail}").strip("_")


def import_blocks(imports: Iterable[tuple[str, str]]) -> str:
    """``import`` blocks for (address, id) pairs."""
    return "".join(f'import {{\n  to = {address}\n  id = "{ident}"\n}}\n\n' for address, ident in imports)


def clean_generated(text: str) -> str:
    """The configuration ``-generate-config-out`` wrote, without what fails validation as generated
    (see the module's docstring). Terraform writes it formatted, one argument or block per line."""
    kept: list[str] = []
    skipping_map = False
    for line in text.splitlines():
        if skipping_map:
            skipping_map = line.strip() != "}"
            continue
        if _TAGS_ALL.match(line):
            skipping_map = not line.rstrip().endswith("}")
            continue
        if _NULL.match(line) or _EMPTY_IPV6.match(line):
            continue
        kept.append(line)
    return "\n".join(_drop_empty_blocks(kept)).rstrip() + "\n"


def _drop_empty_blocks(lines: list[str]) -> list[str]:
    """Remove ``name {`` ``}`` pairs with nothing between, until none is left (a block whose only
    content was an emptied block goes too)."""
    while True:
        out: list[str] = []
        for line in lines:
            if line.strip() == "}" and out and _BLOCK_OPEN.match(out[-1]):
                out.pop()
                continue
            out.append(line)
        if len(out) == len(lines):
            return out
        lines = out
