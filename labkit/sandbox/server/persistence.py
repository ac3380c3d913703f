"""The sandbox's AWS state on disk: moto's backends pickled by the service, loaded when it starts.

Why pickling rather than moto's request recorder: moto makes resource ids at random, and a replay
makes the same ids only if every random draw happens in the same order. Measured here (moto
5.2.5), a replay of ten recorded calls with the seed fixed already created a different VPC id than
the recording held, because with ``MOTO_IAM_LOAD_MANAGED_POLICIES`` the IAM backend draws random
numbers whenever it is first created; SNS subscriptions use unseeded UUIDs besides. Terraform's
state would then point at ids that no longer exist. A replay also grows with every call ever made
(plans included). A pickle holds the objects themselves: ids, S3 object versions, DynamoDB items
and Terraform's state object come back as they were, in about two seconds.

The file: a marker line, one line of JSON (the format, the labkit and moto versions that wrote it,
when, and the payload's length and SHA-256), then the pickle. So a truncated, corrupt or foreign
file is named for what it is before anything is unpickled, and it is never half-loaded. A file of
format 1 (a bare pickle, written by labkit before versions were recorded, always with moto 5.2) is
still loaded when it unpickles under the allow-list; the next save writes the current format. Saving
keeps the previous :data:`GENERATIONS` files as ``aws-state.1.pickle`` (newest) and on. Loading
unpickles only the classes of an allow-list (:data:`ALLOWED`, derived from a real saved state).

A few of moto's objects do not pickle as they are; :class:`_Pickler` reduces them:
- private keys (SNS signs with one; KMS asymmetric keys) travel as PEM;
- ``defaultdict``s with a lambda factory (and subclasses with their own ``__init__``) travel as
  their class, a rebuilt factory and their items;
- ``dict`` subclasses that override item access (S3's versioned key store) travel with their
  raw items, which a plain pickle would flatten to the newest version only;
- references to moto's module-level backend registries resolve to this process's own;
- live pagination state (:data:`TRANSIENT`) is left out: the Resource Groups Tagging API keeps a
  generator per pagination token, and never drops the last page's. A token is a pointer into a
  read in progress; after a restart it answers ``PaginationTokenExpiredException``, as AWS does
  once a token has expired, and the caller starts its read again.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import pickle
import types
import typing
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from labkit.errors import SaveError
from labkit.sandbox.client import statefile

#: A partial save (see :func:`dumps_partial`) leaves out at most this many objects.
MAX_SKIPPED = 50

Snapshot = dict[str, dict[str, dict[str, Any]]]  # service -> account -> region -> backend

#: Attributes not saved, per moto class ("module:Class"), with what they start as after a load.
TRANSIENT: dict[str, dict[str, Callable[[], Any]]] = {
    "moto.resourcegroupstaggingapi.models:ResourceGroupsTaggingAPIBackend": {"_pages": dict},
}


# --- saving ---


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
    """The snapshot as a state file's bytes; :class:`SaveError` naming the first object that
    cannot be pickled. Call with moto's requests held off: objects must not change meanwhile."""
    try:
        payload = _pickle({"backends": snapshot})
    except Exception as exc:
        found = find_unpicklable(snapshot)
        raise SaveError(found[0] if found else "(the snapshot)", exc) from exc
    return statefile.file_bytes(payload, [])


def dumps_partial(snapshot: Snapshot) -> tuple[bytes, list[str]]:
    """Like :func:`dumps`, but objects that cannot be pickled are saved as None; the bytes and
    what was left out. For the last save of a service whose whole saves fail."""
    skip: dict[int, str] = {}
    while True:
        try:
            payload = _pickle({"backends": snapshot}, skip)
        except Exception as exc:
            found = find_unpicklable(snapshot, skip)
            if found is None or id(found[1]) in skip or len(skip) >= MAX_SKIPPED:
                raise SaveError(found[0] if found else "(the snapshot)", exc) from exc
            skip[id(found[1])] = f"{found[0]}: {type(exc).__name__}: {exc}"
        else:
            skipped = list(skip.values())
            return statefile.file_bytes(payload, skipped), skipped


def find_unpicklable(snapshot: Snapshot, skip: dict[int, str] | None = None) -> tuple[str, Any] | None:
    """Where in the snapshot the first object that cannot be pickled is (a path such as
    ``resourcegroupstaggingapi[123456789012][us-east-1]._pages['x']['gen']``) and the object."""
    for service, accounts in snapshot.items():
        for account, regions in accounts.items():
            for region, backend in regions.items():
                if not _picklable(backend, skip):
                    return _narrow(backend, f"{service}[{account}][{region}]", skip)
    return None


def _narrow(obj: Any, path: str, skip: dict[int, str] | None) -> tuple[str, Any]:
    """Down from ``obj`` to the innermost object that does not pickle. moto's models point back
    at their backends: the objects on the way down count as pickled (they are being narrowed)."""
    passed = dict(skip or {})
    while True:
        passed[id(obj)] = path
        for name, child in _children(obj):
            if id(child) not in passed and not _picklable(child, passed):
                obj, path = child, path + name
                break
        else:
            return path, obj


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in dict.items(obj):
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple, set, frozenset, deque)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
    else:
        for name, value in list(getattr(obj, "__dict__", {}).items()):
            if name not in _transient_names(obj):
                yield f".{name}", value


def _picklable(obj: Any, skip: dict[int, str] | None) -> bool:
    try:
        _pickle(obj, skip)
    except Exception:
        return False
    return True


def _pickle(obj: Any, skip: dict[int, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    pickler = _SkippingPickler(buffer, pickle.HIGHEST_PROTOCOL, skip) if skip else _Pickler(buffer)
    pickler.dump(obj)
    return buffer.getvalue()


# --- loading ---


def loads(payload: bytes, *, extra_modules: tuple[str, ...] = ()) -> Snapshot:
    """The snapshot in a state file's payload (classes on :data:`ALLOWED` only, plus those of
    ``extra_modules``, for tests); ``pickle.UnpicklingError`` for anything else."""
    saved = _Unpickler(io.BytesIO(payload), extra_modules).load()
    if not isinstance(saved, dict) or not isinstance(saved.get("backends"), dict):
        raise pickle.UnpicklingError("the payload is not a snapshot of moto's backends")
    return dict(saved["backends"])


def load(path: Path) -> tuple[statefile.Header, int]:
    """Install the backends saved at ``path`` into this process's moto; the file's header and how
    many backends were installed. Call before the first request. :class:`StateFileError` for a
    file that cannot be loaded (nothing is installed then)."""
    from moto.backends import get_backend

    header, payload = statefile.read(path)
    try:
        snapshot = loads(payload)
    except Exception as exc:  # unpickling runs moto's code: anything can go wrong in there
        why = f"it cannot be unpickled ({type(exc).__name__}: {exc})"
        if header.format == 1:
            why += "; it was written by an earlier labkit (format 1, no versions recorded)"
            why += f"; this is {statefile.installed()}"
        raise statefile.refuse(path, "version" if header.format == 1 else "corrupt", why) from exc
    registry_of: Any = get_backend  # typed per service name; the names here come from the file
    installed = 0
    for service, accounts in snapshot.items():
        registry = registry_of(service)
        for account, regions in accounts.items():
            per_account = registry[account]  # creates the account's (empty) registry
            for region, backend in regions.items():
                dict.__setitem__(per_account, region, backend)
                installed += 1
    return header, installed


# --- reducers ---


def _private_key_types() -> set[type]:
    """The classes of cryptography's private key objects. Its key types are interfaces (ABCs);
    the objects are of classes in its Rust bindings, registered with them, and a dispatch table
    matches exact classes. Should a new version move them, a key no longer pickles and the save
    fails by name (never silently)."""
    from cryptography.hazmat.bindings._rust import openssl
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    interfaces = typing.get_args(PrivateKeyTypes)
    modules = [value for value in vars(openssl).values() if isinstance(value, types.ModuleType)]
    return {
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, interfaces)
    }


def _subclasses(cls: type) -> set[type]:
    """Every class loaded now that derives from ``cls`` (not ``cls`` itself)."""
    found: set[type] = set()
    stack = [cls]
    while stack:
        subclasses: list[type] = type.__subclasses__(stack.pop())
        for sub in subclasses:
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


def _reduce_private_key(key: Any) -> tuple[Any, ...]:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (_load_private_key, (pem,))


def _reduce_defaultdict(obj: defaultdict[Any, Any]) -> tuple[Any, ...]:
    factory = _picklable_factory(obj.default_factory)
    return (_rebuild_defaultdict, (type(obj), factory, list(dict.items(obj)), _state(obj)))


def _reduce_dict(obj: dict[Any, Any]) -> tuple[Any, ...]:
    return (_rebuild_dict, (type(obj), list(dict.items(obj)), _state(obj)))


def _reduce_method(obj: types.MethodType) -> tuple[Any, ...]:
    return (_bound_method, (obj.__self__, obj.__func__.__name__))


def _reduce_registry(obj: Any) -> tuple[Any, ...]:
    # account_id is set on a per-account registry only
    return (_moto_registry, (obj.service_name, getattr(obj, "account_id", None)))


def _moto_registry(service: str, account: str | None) -> Any:
    """This process's own moto registry of ``service`` (of one account when given)."""
    from moto.backends import get_backend

    lookup: Any = get_backend  # typed per service name; the names here come from the file
    registry = lookup(service)
    return registry if account is None else registry[account]


def _reducer_of_transient(attributes: dict[str, Callable[[], Any]]) -> Callable[[Any], tuple[Any, ...]]:
    def reduce(obj: Any) -> tuple[Any, ...]:
        # The object is made (and memoised) before its state is pickled, so cycles through it hold.
        kept = {name: value for name, value in _state(obj).items() if name not in attributes}
        return (_new_object, (type(obj),), kept | {name: make() for name, make in attributes.items()})

    return reduce


def _dispatch_table() -> dict[type, Callable[[Any], Any]]:
    """How each class that needs it is reduced, by exact class, for the classes loaded now (moto
    imports its services lazily): the standard table, then by rising precedence moto's transient
    objects, bound methods, ``dict`` subclasses (OrderedDict pickles as it is), ``defaultdict``
    and its subclasses, private keys, and moto's backend registries."""
    from moto.core.base_backend import AccountSpecificBackend, BackendDict

    table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)
    table.update({cls: _reducer_of_transient(names) for cls, names in _transient_types().items()})
    table[types.MethodType] = _reduce_method
    table.update({cls: _reduce_dict for cls in _subclasses(dict) if not issubclass(cls, OrderedDict)})
    table.update({cls: _reduce_defaultdict for cls in {defaultdict, *_subclasses(defaultdict)}})
    table.update({cls: _reduce_private_key for cls in _private_key_types()})
    for registry in (BackendDict, AccountSpecificBackend):
        table.update({cls: _reduce_registry for cls in {registry, *_subclasses(registry)}})
    return table


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


def _new_object(cls: type[Any]) -> Any:
    return object.__new__(cls)


def _bound_method(owner: Any, name: str) -> Any:
    """A method of one of moto's objects (EC2 keeps filter methods in dicts): pickle would name
    ``getattr``, which would let a crafted file reach anything; this reaches moto's methods only."""
    if not type(owner).__module__.startswith("moto.") or name.startswith("_"):
        raise pickle.UnpicklingError(f"a method {name!r} of {type(owner).__qualname__} is not allowed")
    return getattr(owner, name)


def _transient_types() -> dict[type, dict[str, Callable[[], Any]]]:
    import importlib

    found: dict[type, dict[str, Callable[[], Any]]] = {}
    for name, attributes in TRANSIENT.items():
        module, _, cls = name.partition(":")
        with contextlib.suppress(ImportError, AttributeError):  # a moto without that service
            found[getattr(importlib.import_module(module), cls)] = attributes
    return found


def _transient_names(obj: Any) -> dict[str, Callable[[], Any]]:
    for cls, attributes in _transient_types().items():
        if isinstance(obj, cls):
            return attributes
    return {}


class _Pickler(pickle.Pickler):
    """moto's objects, reduced where they need it through a dispatch table of exact classes
    (:func:`_dispatch_table`, built for each save). Not ``reducer_override`` or ``persistent_id``:
    either is a Python call for every object pickled, strings and dicts included, which made a
    save 20 times slower (IAM's 4 MB of AWS-managed policies: 1.7 s against 0.08 s)."""

    def __init__(self, file: io.BytesIO, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        super().__init__(file, protocol=protocol)
        self.dispatch_table = _dispatch_table()


class _SkippingPickler(_Pickler):
    """For a partial save and for finding what cannot be pickled: objects whose id is in ``skip``
    become None (a persistent id, so slow, and only used when a save has failed)."""

    def __init__(self, file: io.BytesIO, protocol: int, skip: dict[int, str]) -> None:
        super().__init__(file, protocol)
        self._skip = skip

    def persistent_id(self, obj: Any) -> Any:
        return ("skipped", None, None) if id(obj) in self._skip else None


def _state(obj: Any) -> dict[str, Any]:
    return dict(getattr(obj, "__dict__", {}))


#: What a saved state may name besides moto's own classes (any class in a ``moto.`` module):
#: the names a sandbox's state held after the learning path (build, deploys, teardown) and a
#: rebuild, plus the few of the same kind a lab state may hold too (IPv6, dates, decimals).
#: No callable that reaches arbitrary objects (``getattr``, ``eval``, ``os.system``) is on it.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "dict"),
        ("builtins", "list"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("collections", "deque"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("ipaddress", "IPv4Address"),
        ("ipaddress", "IPv4Network"),
        ("ipaddress", "IPv6Address"),
        ("ipaddress", "IPv6Network"),
        ("re", "_compile"),  # a compiled pattern: re.compile(pattern, flags)
        ("labkit.sandbox.server.persistence", "_DefaultDictFactory"),
        ("labkit.sandbox.server.persistence", "_bound_method"),
        ("labkit.sandbox.server.persistence", "_load_private_key"),
        ("labkit.sandbox.server.persistence", "_moto_registry"),
        ("labkit.sandbox.server.persistence", "_new_object"),
        ("labkit.sandbox.server.persistence", "_rebuild_defaultdict"),
        ("labkit.sandbox.server.persistence", "_rebuild_dict"),
    }
)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, extra_modules: tuple[str, ...] = ()) -> None:
        super().__init__(file)
        self._extra_modules = extra_modules

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):  # how format 1 saved moto's bound methods
            return _bound_method
        if (module, name) in ALLOWED or module in self._extra_modules:
            return super().find_class(module, name)
        if module == "moto" or module.startswith("moto."):
            found = super().find_class(module, name)
            if isinstance(found, type):  # moto's classes, never its functions
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not on the sandbox state's allow-list")

    def persistent_load(self, pid: Any) -> Any:
        kind, service, account = pid
        if kind == "skipped":
            return None
        if kind != "moto-registry":  # how files saved before the dispatch table name registries
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return _moto_registry(service, account)
