"""What a lesson shows of the Terraform it applies: a block of HCL read from its module, and the
changes a plan makes as a compact table (:func:`changes_table`).

A lesson shows the HCL it applies as it is in the checkout (or the copy ``LABKIT_TERRAFORM_DIR``
names), so what the learner reads is what Terraform runs, never a pasted copy that drifts from it.
``terraform_block("alb", "aws_lb_listener.http")`` finds ``resource "aws_lb_listener" "http" {`` in
``terraform/modules/alb/*.tf`` and takes the lines up to its closing brace; in a notebook it shows
as a highlighted code block with the file and lines it came from.

Blocks are found by their header line and ended by counting braces; a heredoc with unbalanced braces
would end one early, and the project's modules have none. checkov's ``#checkov:skip=`` comments are
left out (they justify a rule to the scanner, not the design to the learner) and the caption says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import ConfigError
from labkit.settings import terraform_dir

if TYPE_CHECKING:
    import pandas as pd

    from labkit.infra.terraform import ResourceChange

#: The address forms a lesson names, and the block header each stands for.
_KINDS = {"resource": 2, "data": 2, "module": 1, "variable": 1, "output": 1, "locals": 0}


@dataclass(frozen=True)
class HclBlock:
    """One block: where it is (relative to the project), its first line number, and its text."""

    path: str
    first_line: int
    last_line: int
    text: str
    skipped_comments: int = 0

    def caption(self) -> str:
        left_out = f"; {self.skipped_comments} checkov comment(s) left out" if self.skipped_comments else ""
        return f"`{self.path}`, lines {self.first_line}-{self.last_line}{left_out}"

    def _repr_markdown_(self) -> str:
        return f"{self.caption()}\n\n```hcl\n{self.text}\n```"

    def __str__(self) -> str:
        return self.text


def terraform_block(module: str, address: str, *, root: Path | None = None) -> HclBlock:
    """The block ``address`` (``aws_lb_listener.http``, ``data.aws_iam_policy_document.trust``,
    ``module.network``, ``variable.vpc_cidr``, ``locals``) of ``module``: a folder of
    ``terraform/modules``, or ``environments/NAME`` for a root."""
    base = root or terraform_dir()
    folder = base / (module if module.startswith("environments/") else f"modules/{module}")
    files = sorted(folder.glob("*.tf"))
    if not files:
        raise ConfigError(
            f"There is no Terraform module {module!r} (no .tf files in {folder}).",
            hint=f"Use a folder of {base / 'modules'}, or environments/NAME for a root.",
        )
    header = _header(address)
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if header.match(line):
                last, kept, skipped = _until_closed(lines, index, path)
                return HclBlock(
                    str(path.relative_to(base.parent)), index + 1, last + 1, "\n".join(kept), skipped
                )
    found = sorted(
        {m.group(0).rstrip(" {") for p in files for m in _ANY_HEADER.finditer(p.read_text("utf-8"))}
    )
    raise ConfigError(
        f"Module {module!r} has no block {address!r}.",
        hint="Its blocks: " + ", ".join(found) if found else "It has no blocks at all.",
    )


_ANY_HEADER = re.compile(r'^(resource|data|module|variable|output|locals)( "[^"]+")*\s*\{', re.MULTILINE)


def _header(address: str) -> re.Pattern[str]:
    parts = address.split(".")
    kind = parts[0] if parts[0] in _KINDS else "resource"
    labels = parts[1:] if kind != "resource" or parts[0] == "resource" else parts
    if len(labels) != _KINDS[kind]:
        raise ConfigError(
            f"{address!r} is not a block address.",
            hint="Write TYPE.NAME for a resource, data.TYPE.NAME, module.NAME, variable.NAME, "
            'output.NAME or "locals".',
        )
    quoted = "".join(rf'\s+"{re.escape(label)}"' for label in labels)
    return re.compile(rf"^{kind}{quoted}\s*\{{")


def _until_closed(lines: list[str], start: int, path: Path) -> tuple[int, list[str], int]:
    """(index of the closing line, the block's lines without checkov's, how many were left out)."""
    depth, kept, skipped = 0, [], 0
    for index in range(start, len(lines)):
        line = lines[index]
        if line.strip().startswith("#checkov:"):
            skipped += 1
            continue
        kept.append(line)
        code = line.split("#", 1)[0]
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            return index, kept, skipped
    raise ConfigError(
        f"The block at {path}:{start + 1} never closes.",
        hint="Run `terraform fmt` on the module; a heredoc with unbalanced braces would do this too.",
    )


#: One module call on the way to a resource: ``module.fleet["blue"].`` gives ``fleet["blue"]``.
_MODULE_CALL = re.compile(r'module\.([\w-]+(?:\[[^\]]+\])?)\.')


def changes_table(changes: Iterable[ResourceChange]) -> pd.DataFrame:
    """A plan's changes (``plan.changes``, or an apply's own: ``result.changes``) as a compact table:
    one row per resource with the module it is in (``environment.fleet["blue"]``; ``root`` for the
    root module's own), its address there and the action (``create``, ``update``, ``replace``, ...).
    Split so, no cell is long enough for pandas to cut."""
    import pandas as pd

    rows = []
    for change in changes:
        modules, end = [], 0
        while found := _MODULE_CALL.match(change.address, end):
            modules.append(found[1])
            end = found.end()
        rows.append((".".join(modules) or "root", change.address[end:], change.action))
    return pd.DataFrame(rows, columns=["module", "resource", "action"])
