"""The sandbox's AWS state on disk: moto's backends pickled on the way down, loaded on the way up.

Why pickling rather than moto's request recorder: moto makes resource ids at random, and a replay
makes the same ids only if every random draw happens in the same order. Measured here (moto
5.2.5), a replay of ten recorded calls with the seed fixed already created a different VPC id than
the recording held, because with ``MOTO_IAM_LOAD_MANAGED_POLICIES`` the IAM backend draws random
numbers whenever it is first created; SNS subscriptions use unseeded UUIDs besides. Terraform's
state would then point at ids that no longer exist. A replay also grows with every call ever made
(plans included). A pickle holds the objects themselves: ids, S3 object versions, DynamoDB items
and Terraform's state object come back as they were, in about two seconds.

A few of moto's objects do not pickle as they are; :class:`_Pickler` reduces them:
- private keys (SNS signs with one; KMS asymmetric keys) travel as PEM;
- ``defaultdict``s with a lambda factory (and subclasses with their own ``__init__``) travel as
  their class, a rebuilt factory and their items;
- ``dict`` subclasses that override item access (S3's versioned key store) travel with their
  raw items, which a plain pickle would flatten to the newest version only;
- references to moto's module-level backend registries resolve to this process's own.
"""

from __future__ import annotations

import io
import os
import pickle
import typing
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Bumped when the file's layout changes; a file with another version is not loaded.
FORMAT = 1

Snapshot = dict[str, dict[str, dict[str, Any]]]  # service -> account -> region -> backend


def capture() -> Snapshot:
    """Every moto backend in use in this process, as plain nested dicts (no copying).

    IAM is left out for partitions other than ``aws``: moto creates one IAM backend per
    partition (China, GovCloud, ...), each with its own 4 MB copy of the AWS-managed policies,
    while the sandbox is one region of the ``aws`` partition.
    """
    from moto.core.base_backend import BackendDict

    registries: list[Any] = list(BackendDict._instances)  # type: ignore[misc]
    return {
        registry.service_name: {
            account: {
                region: backend
                for region, backend in regions.items()
                if not (registry.service_name == "iam" and region != "aws")
            }
            for account, regions in registry.items()
        }
        for registry in registries
    }


def dumps(snapshot: Snapshot) -> bytes:
    """The snapshot as bytes (call with moto's requests held off: objects must not change meanwhile)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump({"format": FORMAT, "backends": snapshot})
    return buffer.getvalue()


def loads(data: bytes) -> Snapshot:
    """The snapshot in ``data`` (from :func:`dumps`); ValueError for another format."""
    saved = _Unpickler(io.BytesIO(data)).load()
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"not a sandbox state of format {FORMAT}")
    return dict(saved["backends"])


def save(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a crash leaves the previous file whole)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load(path: Path) -> int:
    """Install the backends saved at ``path`` into this process's moto; how many were installed.

    Call before the first request. Raises ``ValueError`` for a file of another format.
    """
    from moto.backends import get_backend

    registry_of: Any = get_backend  # typed per service name; the names here come from the file
    installed = 0
    for service, accounts in loads(path.read_bytes()).items():
        registry = registry_of(service)
        for account, regions in accounts.items():
            per_account = registry[account]  # creates the account's (empty) registry
            for region, backend in regions.items():
                dict.__setitem__(per_account, region, backend)
                installed += 1
    return installed


# --- reducers ---


def _private_key_types() -> tuple[type, ...]:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    return typing.get_args(PrivateKeyTypes)


def _load_private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


class _DefaultDictFactory:
    """A picklable stand-in for ``lambda: defaultdict(inner)``."""

    def __init__(self, inner: Callable[[], Any] | None) -> None:
        self.inner = inner

    def __call__(self) -> defaultdict[Any, Any]:
        return defaultdict(self.inner)


def _picklable_factory(factory: Callable[[], Any] | None) -> Callable[[], Any] | None:
    """``factory`` itself when pickle can name it, else an equivalent built from what it returns."""
    if factory is None or getattr(factory, "__name__", "") != "<lambda>":
        return factory
    made = factory()
    if isinstance(made, defaultdict):
        return _DefaultDictFactory(_picklable_factory(made.default_factory))
    if made == type(made)():  # an empty container or zero: its type makes the same
        return type(made)
    raise pickle.PicklingError(f"cannot pickle the defaultdict factory {factory!r}")


def _rebuild_defaultdict(
    cls: type[defaultdict[Any, Any]], factory: Any, items: list[tuple[Any, Any]], state: dict[str, Any]
) -> defaultdict[Any, Any]:
    rebuilt = defaultdict.__new__(cls)
    defaultdict.__init__(rebuilt, factory)
    dict.update(rebuilt, items)
    if state:
        rebuilt.__dict__.update(state)
    return rebuilt


def _rebuild_dict(cls: type[dict[Any, Any]], items: list[tuple[Any, Any]], state: dict[str, Any]) -> Any:
    rebuilt = dict.__new__(cls)
    dict.update(rebuilt, items)
    if state:
        rebuilt.__dict__.update(state)
    return rebuilt


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        from moto.core.base_backend import AccountSpecificBackend, BackendDict

        self._registry_types = (BackendDict, AccountSpecificBackend)
        self._key_types = _private_key_types()

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, self._registry_types):
            account = getattr(obj, "account_id", None)  # set on a per-account registry only
            return ("moto-registry", obj.service_name, account)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._key_types):
            from cryptography.hazmat.primitives import serialization

            key: Any = obj
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return (_load_private_key, (pem,))
        if isinstance(obj, defaultdict):
            return (
                _rebuild_defaultdict,
                (type(obj), _picklable_factory(obj.default_factory), list(dict.items(obj)), _state(obj)),
            )
        if isinstance(obj, dict) and type(obj) is not dict and not isinstance(obj, OrderedDict):
            return (_rebuild_dict, (type(obj), list(dict.items(obj)), _state(obj)))
        return NotImplemented


def _state(obj: Any) -> dict[str, Any]:
    return dict(getattr(obj, "__dict__", {}))


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        from moto.backends import get_backend

        kind, service, account = pid
        if kind != "moto-registry":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        registry: Any = get_backend(service)
        return registry if account is None else registry[account]
