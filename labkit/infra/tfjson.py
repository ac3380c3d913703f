"""Terraform's JSON documents read into one model: the resources of a plan or a state.

:func:`read_document` takes ``terraform show -json`` of a plan (``planned_values`` and its child
modules, plus the configuration's references), ``terraform show -json`` of a state (``values``) or
``terraform state pull`` (a raw state, version 4), and gives every resource instance as a
:class:`Resource` with its full address and values. The cost model prices them; the stack reads a raw
state's resources through :func:`raw_state_resources`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import TerraformDocumentError


@dataclass(frozen=True)
class Resource:
    """One resource instance, whatever document it was read from."""

    address: str
    module: str  # "" for the root module, else e.g. 'module.fleet["blue"]'
    type: str
    name: str
    values: Mapping[str, Any]

    @property
    def local_address(self) -> str:
        """``type.name`` (without index), as the configuration refers to it."""
        return f"{self.type}.{self.name}"


def module_calls(module: str) -> tuple[str, ...]:
    """'module.a["x"].module.b[0]' -> ('a', 'b'): the path of module calls in the configuration."""
    return tuple(re.findall(r'module\.([A-Za-z0-9_-]+)(?:\[(?:"(?:[^"\\]|\\.)*"|\d+)\])?', module))


def _walk_modules(module: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield module
    for child in module.get("child_modules", []):
        yield from _walk_modules(child)


def _index_suffix(key: Any) -> str:
    if key is None:
        return ""
    return f"[{key}]" if isinstance(key, int) else f"[{json.dumps(key)}]"


@dataclass(frozen=True)
class Document:
    kind: str  # "plan", "state" (show -json) or "raw state" (state pull)
    resources: list[Resource]
    configuration: Mapping[str, Any]


def read_document(doc: Mapping[str, Any] | Path | str) -> Document:
    """A plan, a state or a raw state (parsed, or the path of its JSON file) as its managed resources."""
    if isinstance(doc, (str, Path)):
        path = Path(doc)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TerraformDocumentError(
                f"{path} cannot be read as JSON: {exc}.",
                hint="Give the output of `terraform show -json PLANFILE` or `terraform state pull`.",
            ) from exc
    if not isinstance(doc, Mapping):
        raise TerraformDocumentError(
            "A Terraform document must be a JSON object.", hint="Pass a parsed plan or state document."
        )
    if "planned_values" in doc or ("values" in doc and "format_version" in doc):
        kind = "plan" if "planned_values" in doc else "state"
        root = (doc.get("planned_values") or doc.get("values") or {}).get("root_module", {})
        resources = [
            Resource(
                address=r["address"],
                module=module.get("address", ""),
                type=r["type"],
                name=r["name"],
                values=r.get("values") or {},
            )
            for module in _walk_modules(root)
            for r in module.get("resources", [])
            if r.get("mode", "managed") == "managed"
        ]
        configuration = doc.get("configuration", {}).get("root_module", {}) if kind == "plan" else {}
        return Document(kind, resources, configuration)
    if isinstance(doc.get("resources"), list) and "version" in doc:
        return Document("raw state", raw_state_resources(doc), {})
    raise TerraformDocumentError(
        "This JSON is neither a Terraform plan nor a state.",
        hint="Give `terraform show -json PLANFILE` (it has planned_values), `terraform show -json` of a "
        "state (values) or `terraform state pull` (version 4, resources).",
    )



def raw_state_resources(doc: Mapping[str, Any], *, data_sources: bool = False) -> list[Resource]:
    """Every resource instance in a raw state (``terraform state pull``), data sources too when asked
    (their addresses start with ``data.``, as ``terraform state list`` prints them)."""
    resources = []
    for r in doc.get("resources", []):
        mode = r.get("mode")
        if mode != "managed" and not (data_sources and mode == "data"):
            continue
        module = r.get("module", "")
        prefix = "data." if mode == "data" else ""
        for inst in r.get("instances", []):
            local = f"{prefix}{r['type']}.{r['name']}{_index_suffix(inst.get('index_key'))}"
            resources.append(
                Resource(
                    address=f"{module}.{local}" if module else local,
                    module=module,
                    type=r["type"],
                    name=r["name"],
                    values=inst.get("attributes") or {},
                )
            )
    return resources
