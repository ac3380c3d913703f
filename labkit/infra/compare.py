"""``labkit stack compare staging production``: how two environments differ, and which of it is meant.

Four things are compared, each read from where Terraform keeps it:

- **settings**: what each root passes to the composition module, as its ``main.tf`` declares it
  (``local.settings``, read with python-hcl2; a key one root leaves out takes the module's default,
  read from the module's ``variables.tf`` the same way); then, from each state, what was applied
  (its ``settings`` and ``deployment`` outputs), which shows a setting applied with ``--var`` that
  the code does not hold;
- **modules**: the composition each root runs, as its last ``terraform init`` resolved it
  (``modules.json``) and as its state says it was applied (the ``composition`` output);
- **providers**: the versions each root's dependency lock file selected;
- **resources**: the resources one has and the other has not, from each state, or from a plan of
  the code for an environment that has no state (the comparison says so).

A difference is *intended* when the environments' code declares it: a setting one of them sets in
``local.settings``, and the resources that follow from such a setting (those whose ``count`` or
``for_each`` in the composition's modules reads it, such as the NAT gateway that private subnets
bring). Everything else is *unintended*: a composition version or provider that differs, a
deployment that differs, a value applied that the code does not hold, a resource no setting explains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

from labkit.errors import StackError
from labkit.infra import composition
from labkit.infra.stack import Stack
from labkit.infra.tfjson import raw_state_resources

#: The composition's outputs that report an applied setting, and the setting each reports.
APPLIED_SETTINGS = {
    "vpc_cidr": "vpc_cidr",
    "private_subnets": "enable_private_subnets",
    "deregistration_delay": "deregistration_delay",
    "enable_deletion_protection": "enable_deletion_protection",
    "health_check": "health_check",
}
_OPTIONS = hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True, explicit_blocks=False)
_VAR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)")
_LOCAL = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_]*)")
_SETTING = re.compile(r"\blocal\.settings\.([A-Za-z_][A-Za-z0-9_]*)")
_INDEX = re.compile(r"\[[^\]]*\]")


def read_hcl(path: Path) -> dict[str, Any]:
    """A Terraform file as python-hcl2 reads it: blocks as lists of dicts, strings unquoted,
    expressions as ``${...}`` strings."""
    try:
        with path.open() as handle:
            return dict(hcl2.load(handle, serialization_options=_OPTIONS))
    except OSError as exc:
        raise StackError(f"Cannot read {path}: {exc}.", hint="Check the terraform/ folder.") from exc
    except Exception as exc:  # python-hcl2 raises lark's errors for a file it cannot parse
        raise StackError(
            f"{path} is not valid HCL ({type(exc).__name__}: {exc}).",
            hint=f"`terraform validate` in {path.parent} names the error.",
        ) from exc


def declared_settings(root: Path) -> dict[str, Any]:
    """``local.settings`` of an environment root's ``main.tf``."""
    for block in read_hcl(root / "main.tf").get("locals", []):
        if "settings" in block:
            return dict(block["settings"])
    raise StackError(f"{root / 'main.tf'} sets no local.settings.", hint="See terraform/README.md.")


def module_defaults(folder: Path) -> dict[str, Any]:
    """The composition module's variable defaults (``bluegreen_environment/variables.tf`` under
    ``folder``, a folder of modules such as a root's pin)."""
    defaults: dict[str, Any] = {}
    for block in read_hcl(folder / "bluegreen_environment" / "variables.tf").get("variable", []):
        for name, spec in block.items():
            if "default" in spec:
                defaults[name] = spec["default"]
    return defaults


def setting_resources(folder: Path) -> dict[str, set[str]]:
    """Which resources each composition variable brings or removes: those of a module it calls
    whose ``count`` or ``for_each`` reads the variable passed on (``module.NAME.TYPE.NAME``)."""
    follows: dict[str, set[str]] = {}
    for call in read_hcl(folder / "bluegreen_environment" / "main.tf").get("module", []):
        for module, arguments in call.items():
            passed = {arg: set(_VAR.findall(str(value))) for arg, value in arguments.items()}
            for path in sorted((folder / module).glob("*.tf")):
                for block in read_hcl(path).get("resource", []):
                    for rtype, named in block.items():
                        for rname, body in named.items():
                            condition = str(body.get("count", "")) + str(body.get("for_each", ""))
                            for arg in _VAR.findall(condition):
                                for setting in passed.get(arg, ()):
                                    follows.setdefault(setting, set()).add(f"module.{module}.{rtype}.{rname}")
    return follows


def settings_passed(root: Path) -> dict[str, set[str]]:
    """Which of the root's settings each composition variable reads, by name, where the two names
    differ: ``module.environment``'s arguments in the root's ``composition.tf``, and the locals they
    read (one level), searched for ``local.settings.NAME``. Staging's ``alarm_topic_on_project_key``
    reaches the composition as ``alarm_kms_key_arn``."""
    hcl = read_hcl(root / "composition.tf")
    local_exprs = {name: str(value) for block in hcl.get("locals", []) for name, value in block.items()}
    passed: dict[str, set[str]] = {}
    for call in hcl.get("module", []):
        for arguments in call.values():
            for variable, value in arguments.items():
                expression = str(value)
                expression += "".join(local_exprs.get(name, "") for name in _LOCAL.findall(expression))
                names = set(_SETTING.findall(expression)) - {variable}
                if names:
                    passed[variable] = names
    return passed


def lock_versions(root: Path) -> dict[str, str]:
    """Provider versions in a root's ``.terraform.lock.hcl`` ({} before its first init)."""
    path = root / ".terraform.lock.hcl"
    if not path.is_file():
        return {}
    return {
        name: str(spec.get("version", ""))
        for block in read_hcl(path).get("provider", [])
        for name, spec in block.items()
    }


def resolved_composition(root: Path, data_dir: Path) -> Path | None:
    """The folder the last init resolved ``module.environment`` to (``modules.json``), as a folder
    of modules; None before an init."""
    manifest = data_dir / "modules" / "modules.json"
    if not manifest.is_file():
        return None
    for module in json.loads(manifest.read_text()).get("Modules") or []:
        if module.get("Key") == "environment":
            return (root / str(module["Dir"])).resolve().parent
    return None


@dataclass(frozen=True)
class Difference:
    """One way two environments differ: ``values`` per environment (None: it has none)."""

    kind: str  # setting, applied, deployment, module, provider, resource
    name: str
    values: dict[str, Any]
    intended: bool
    why: str

    def line(self) -> str:
        shown = ", ".join(f"{env} {_show(value)}" for env, value in self.values.items())
        return f"  {self.kind} {self.name}: {shown} ({self.why})"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "values": self.values,
            "intended": self.intended,
            "why": self.why,
        }


@dataclass
class Comparison:
    """What :func:`compare` found: the differences, and notes on where each side was read from."""

    environments: tuple[str, str]
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def unintended(self) -> list[Difference]:
        return [d for d in self.differences if not d.intended]

    @property
    def has_unintended(self) -> bool:
        return bool(self.unintended)

    def lines(self) -> list[str]:
        left, right = self.environments
        out = [f"{left} and {right}:", *(f"  note: {n}" for n in self.notes)]
        intended = [d for d in self.differences if d.intended]
        out.append(f"Intended ({len(intended)}): declared in a local.settings, or following from one")
        out += [d.line() for d in intended] or ["  none"]
        out.append(f"Unintended ({len(self.unintended)}):")
        out += [d.line() for d in self.unintended] or ["  none"]
        if any(d.kind == "module" for d in self.unintended):
            out.append(
                "Promote staging's composition to production once staging runs it: "
                "`labkit runbook run promote-composition -p environment production`."
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "environments": list(self.environments),
            "notes": self.notes,
            "unintended": len(self.unintended),
            "differences": [d.to_json() for d in self.differences],
        }


@dataclass
class Side:
    """What one environment's comparison is made of."""

    env: str
    settings: dict[str, Any]  # local.settings
    effective: dict[str, Any]  # module defaults, then local.settings
    outputs: dict[str, Any]  # from its state ({} without one)
    pin: composition.Pin
    resolved: Path | None
    providers: dict[str, str]
    resources: set[str]
    follows: dict[str, set[str]]


def read_side(stack: Stack, other: Stack | None = None) -> tuple[Side, str | None]:
    """Read one environment (``other``'s deployment plans it when it has no state); and a note
    when its resources come from a plan."""
    settings = declared_settings(stack.root)
    pin = composition.pin(stack.env)
    folder = stack.root.joinpath(composition.PIN).resolve()
    effective = {**module_defaults(folder), **settings}
    state = stack.state()
    note = None
    if state.get("resources"):
        stack.init()
        resources = {r.address for r in raw_state_resources(state)}
    else:
        deployment = other.deployment() if other is not None else {}
        if not deployment:
            raise StackError(
                f"Neither {stack.env} nor the environment it is compared with has a state to compare.",
                hint="Apply one of them first (`labkit stack apply staging`).",
            )
        plan = stack.plan(deployment, refresh=False)
        resources = {c.address for c in plan.changes if c.action == "create"}
        note = f"{stack.env} has no state: its resources are those a plan of its code would create"
    data_dir = stack.terraform.data_dir or stack.root / ".terraform"
    side = Side(
        env=stack.env,
        settings=settings,
        effective=effective,
        outputs=stack.outputs(),
        pin=pin,
        resolved=resolved_composition(stack.root, data_dir),
        providers=lock_versions(stack.root),
        resources=resources,
        follows=root_setting_resources(stack.root, folder),
    )
    return side, note


def root_setting_resources(root: Path, folder: Path) -> dict[str, set[str]]:
    """:func:`setting_resources` of the composition in ``folder``, with each resource a variable
    brings also brought by the root's setting that variable reads under another name
    (:func:`settings_passed`)."""
    follows = setting_resources(folder)
    for variable, names in settings_passed(root).items():
        for name in names:
            follows.setdefault(name, set()).update(follows.get(variable, set()))
    return follows


def compare(left: Stack, right: Stack) -> Comparison:
    """Compare two app environments (see the module doc)."""
    a, note_a = read_side(left, right)
    b, note_b = read_side(right, left)
    found = Comparison((a.env, b.env), notes=[n for n in (note_a, note_b) if n])
    found.differences = [
        *setting_differences(a, b),
        *applied_differences(a, b),
        *deployment_differences(a, b),
        *module_differences(a, b),
        *provider_differences(a, b),
        *resource_differences(a, b),
    ]
    return found


def setting_differences(a: Side, b: Side) -> list[Difference]:
    """Settings either root declares whose values differ: intended, both declared in code."""
    out = []
    for key in sorted(set(a.settings) | set(b.settings)):
        values = {a.env: a.effective.get(key), b.env: b.effective.get(key)}
        if values[a.env] != values[b.env]:
            who = " and ".join(s.env for s in (a, b) if key in s.settings)
            out.append(Difference("setting", key, values, True, f"declared in {who}'s local.settings"))
    return out


def applied_differences(a: Side, b: Side) -> list[Difference]:
    """An applied setting (the state's ``settings`` output) that is not what its own code declares:
    applied with a ``--var`` its ``main.tf`` does not hold. Unintended."""
    out = []
    for side in (a, b):
        applied = side.outputs.get("settings")
        if not isinstance(applied, dict):
            continue
        for output, setting in APPLIED_SETTINGS.items():
            declared, live = side.effective.get(setting), applied.get(output)
            if setting == "health_check":  # the state holds every attribute, null where unset
                live = {k: v for k, v in (live or {}).items() if v is not None}
            if output in applied and live != declared:
                out.append(
                    Difference(
                        "applied",
                        setting,
                        {side.env: applied.get(output)},
                        False,
                        f"{side.env} was applied with it, its code declares {_show(declared)}",
                    )
                )
    return out


def deployment_differences(a: Side, b: Side) -> list[Difference]:
    """Deployment variables that differ between the two states: nothing declares them. Unintended."""
    da, db = a.outputs.get("deployment"), b.outputs.get("deployment")
    if not isinstance(da, dict) or not isinstance(db, dict):
        return []
    return [
        Difference("deployment", key, {a.env: da.get(key), b.env: db.get(key)}, False, "no code declares it")
        for key in sorted(set(da) | set(db))
        if da.get(key) != db.get(key)
    ]


def module_differences(a: Side, b: Side) -> list[Difference]:
    """The composition each runs (pin, as resolved by init, as applied): any difference is unintended."""
    out = []

    def described(side: Side) -> dict[str, str]:
        applied = side.outputs.get("composition")
        facts = {"code": f"{side.pin.version} ({side.pin.digest[:12]})"}
        if side.resolved is not None:
            resolved = side.resolved
            facts["init"] = f"{composition.version_of(resolved)} ({composition.digest(resolved)[:12]})"
        if isinstance(applied, dict):
            facts["applied"] = f"{applied.get('version')} ({str(applied.get('digest'))[:12]})"
        return facts

    fa, fb = described(a), described(b)
    for key in ("code", "init", "applied"):
        if key in fa and key in fb and fa[key] != fb[key]:
            why = {
                "code": "the composition each root's pin names",
                "init": "the composition Terraform resolved at the last init",
                "applied": "the composition each state was applied from",
            }[key]
            values = {a.env: fa[key], b.env: fb[key]}
            out.append(Difference("module", f"composition ({key})", values, False, why))
    for side, facts in ((a, fa), (b, fb)):
        if "init" in facts and facts["init"] != facts["code"]:
            out.append(
                Difference(
                    "module",
                    "composition (stale init)",
                    {side.env: facts["init"]},
                    False,
                    f"{side.env}'s last init resolved another than its pin: `terraform get -update`",
                )
            )
    return out


def provider_differences(a: Side, b: Side) -> list[Difference]:
    """Provider versions the lock files selected that differ. Unintended."""
    return [
        Difference("provider", name, {a.env: a.providers[name], b.env: b.providers[name]}, False, "lock")
        for name in sorted(set(a.providers) & set(b.providers))
        if a.providers[name] != b.providers[name]
    ]


def resource_differences(a: Side, b: Side) -> list[Difference]:
    """Resources one has and the other has not; intended when a differing declared setting brings them."""
    differing = {d.name for d in setting_differences(a, b)}
    explained: dict[str, str] = {}
    for side in (a, b):
        for setting, resources in side.follows.items():
            if setting in differing:
                explained.update({f"module.environment.{r}": setting for r in resources})
    out = []
    for address in sorted(a.resources ^ b.resources):
        values = {s.env: "has it" if address in s.resources else "none" for s in (a, b)}
        cause = explained.get(resource_kind(address))
        why = f"follows from {cause}" if cause else "no declared setting brings it"
        out.append(Difference("resource", address, values, cause is not None, why))
    return out


def resource_kind(address: str) -> str:
    """An address without instance keys: ``module.environment.module.network.aws_subnet.private``."""
    return _INDEX.sub("", address)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, sort_keys=True) if isinstance(value, Mapping | list) else str(value)
