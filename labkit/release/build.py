"""Release artifacts: build one (the app plus its ``release.json``) and upload it to the artifact bucket.

The artifact is ``release.tar.gz`` with ``app/``, ``release.json`` and ``requirements.txt`` at its
root, stored at ``s3://BUCKET/releases/<version>/release.tar.gz``: the same file the fleet's user
data installs on EC2 (it pip-installs the root's ``requirements.txt``, a copy of
``app/requirements.txt``: the database client the app loads when it has a database) and the
sandbox serves for each instance.

The manifest's schema (version format, fault keys and their ranges) lives in the app itself,
``app/release.py``, because the app ships without labkit; this module loads that file by path
instead of keeping a second copy.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from labkit.errors import ReleaseError
from labkit.settings import PROJECT_ROOT, app_dir, labkit_home
from labkit.target import Target

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARTIFACT_NAME = "release.tar.gz"
MANIFEST_NAME = "release.json"
#: At the artifact root, where the fleet's user data looks for it; its source is in app/.
REQUIREMENTS_NAME = "requirements.txt"

FaultValue = float | int | str


@cache
def _schema() -> ModuleType:
    """``app/release.py``, loaded by path: the app is not an installed package."""
    path = app_dir() / "release.py"
    spec = importlib.util.spec_from_file_location("labkit._app_release_schema", path)
    if spec is None or spec.loader is None:
        raise ReleaseError(f"Cannot load the release schema from {path}.", hint="Is the app/ folder intact?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _valid_faults_hint() -> str:
    return f"Valid faults (--fault KEY=VALUE):\n{_schema().valid_faults_text()}"


def check_version(version: str) -> str:
    """``version`` when it is MAJOR.MINOR.PATCH[-suffix]; ReleaseError otherwise."""
    try:
        return str(_schema().check_version(version))
    except ValueError as exc:
        raise ReleaseError(
            f"Bad release version: {exc}.", hint="Pass a version such as 1.4.0 or 2.0.0-rc.1."
        ) from None


def release_key(version: str) -> str:
    """The S3 key of a release's artifact in the artifact bucket."""
    return f"releases/{check_version(version)}/{ARTIFACT_NAME}"


def parse_faults(items: Iterable[str]) -> dict[str, FaultValue]:
    """``["error_rate=0.3", "ready=fail"]`` -> ``{"error_rate": 0.3, "ready": "fail"}``, each checked."""
    faults: dict[str, FaultValue] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ReleaseError(f"Fault {item!r} is not KEY=VALUE.", hint=_valid_faults_hint())
        if key in faults:
            raise ReleaseError(f"Fault {key} is given twice.", hint="Give each fault key once.")
        try:
            faults[key] = _schema().fault_from_text(key, text)
        except ValueError as exc:
            raise ReleaseError(f"Bad fault {item!r}: {exc}", hint=_valid_faults_hint()) from None
    return faults


def _check_faults(faults: Mapping[str, str | float]) -> dict[str, FaultValue]:
    """Faults given as text (from a command line) or as typed values, checked by the schema."""
    schema = _schema()
    checked: dict[str, FaultValue] = {}
    for key, value in faults.items():
        try:
            if isinstance(value, str):
                checked[key] = schema.fault_from_text(key, value)
            else:
                checked[key] = schema.check_fault(key, value)
        except ValueError as exc:
            raise ReleaseError(f"Bad fault {key}={value!r}: {exc}", hint=_valid_faults_hint()) from None
    return checked


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The commit checked out at ``root``, or "unknown" outside a git checkout (or without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def parse_manifest(text: str, source: str) -> dict[str, Any]:
    """The manifest in ``text`` as a dict, validated by the app's schema; ReleaseError naming ``source``."""
    try:
        release = _schema().parse_release_json(text, source)
    except ValueError as exc:
        raise ReleaseError(
            f"Malformed release manifest: {exc}",
            hint="Rebuild the release with `labkit release build` (see --fault and --schema there).",
        ) from None
    return dict(release.as_dict())


def _skip_cache(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave bytecode out and make entries independent of who built them."""
    if "__pycache__" in Path(info.name).parts or info.name.endswith((".pyc", ".pyo")):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_release(
    version: str,
    faults: Mapping[str, str | float] | None = None,
    out_dir: Path | str | None = None,
    schema: str | None = None,
) -> Path:
    """Build ``release.tar.gz`` (``app/``, ``release.json``, ``requirements.txt``) in ``out_dir``
    and return its path.

    ``faults`` values may be text (``{"error_rate": "0.3"}``, as from a command line) or typed
    (``{"error_rate": 0.3}``). ``schema`` is the database schema revision the release runs on
    (default: the first). ``out_dir`` defaults to ``.labkit/releases/<version>/``.
    """
    check_version(version)
    manifest: dict[str, Any] = {
        "version": version,
        "build_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "faults": _check_faults(faults or {}),
    }
    if schema is not None:
        manifest["schema"] = schema
    # Written through the app's own validator, so a build can never produce a manifest the app refuses.
    manifest = parse_manifest(json.dumps(manifest), "the manifest being built")
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()

    out = Path(out_dir) if out_dir is not None else labkit_home() / "releases" / version
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / ARTIFACT_NAME
    partial = artifact.with_name(ARTIFACT_NAME + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(app_dir(), arcname="app", filter=_skip_cache)
        tar.add(app_dir() / REQUIREMENTS_NAME, arcname=REQUIREMENTS_NAME, filter=_skip_cache)
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest_bytes)
        info.mtime = int(datetime.now(UTC).timestamp())
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(manifest_bytes))
    partial.replace(artifact)  # an interrupted build never leaves a half-written artifact behind
    return artifact


def read_artifact_manifest(artifact_path: Path | str) -> dict[str, Any]:
    """The validated ``release.json`` inside an artifact; ReleaseError when it is missing or malformed."""
    path = Path(artifact_path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile(MANIFEST_NAME)
            if member is None:
                raise KeyError(MANIFEST_NAME)
            text = member.read().decode("utf-8", errors="replace")
    except KeyError:
        raise ReleaseError(
            f"{path} holds no {MANIFEST_NAME} at its root, so it is not a release artifact.",
            hint="Build one with `labkit release build VERSION`.",
        ) from None
    except (OSError, tarfile.TarError) as exc:
        raise ReleaseError(
            f"{path} is not a readable release artifact: {exc}",
            hint="Build one with `labkit release build VERSION`.",
        ) from None
    return parse_manifest(text, f"{path}!{MANIFEST_NAME}")


def release_exists(target: Target, bucket: str, version: str) -> bool:
    """True when the artifact of ``version`` is in ``bucket``."""
    return _object_exists(target.client("s3"), bucket, release_key(version))


def list_releases(target: Target, bucket: str) -> list[str]:
    """The versions whose artifact is in ``bucket`` (``releases/<version>/release.tar.gz``), sorted."""
    s3: S3Client = target.client("s3")
    found: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="releases/"):
            for item in page.get("Contents", []):
                parts = item["Key"].split("/")
                if len(parts) == 3 and parts[2] == ARTIFACT_NAME:
                    found.append(parts[1])
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(f"Cannot list s3://{bucket}/releases/", exc, bucket) from None
    return sorted(found)


def _object_exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _s3_error(f"Cannot check s3://{bucket}/{key}", exc, bucket) from None
    except BotoCoreError as exc:
        raise _s3_error(f"Cannot check s3://{bucket}/{key}", exc, bucket) from None
    return True


def upload_release(
    target: Target, bucket: str, artifact_path: Path | str, version: str, *, overwrite: bool = False
) -> str:
    """Upload the artifact to ``s3://bucket/releases/<version>/release.tar.gz``; return that URI.

    The artifact's own manifest must name ``version``. Releases are immutable: an existing
    version is refused unless ``overwrite=True``, because instances that already fetched it
    would run different code under the same version.
    """
    key = release_key(version)
    manifest = read_artifact_manifest(artifact_path)
    if manifest["version"] != version:
        raise ReleaseError(
            f"{artifact_path} is release {manifest['version']}, not {version}.",
            hint=f"Upload it as {manifest['version']}, or build {version} first.",
        )
    target.require_spend("upload a release artifact")
    s3: S3Client = target.client("s3")  # one client: making one costs more than the calls themselves
    if not overwrite and _object_exists(s3, bucket, key):
        raise ReleaseError(
            f"Release {version} is already in s3://{bucket}/{key}.",
            hint="Releases are immutable: build a new version (e.g. bump the patch number), "
            "or pass overwrite=True (CLI: --overwrite) if nothing runs it yet.",
        )
    try:
        # put_object, not upload_file: an artifact is small, and put_object's errors are plain
        # ClientErrors (NoSuchBucket, AccessDenied) rather than a wrapped S3UploadFailedError.
        with Path(artifact_path).open("rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/gzip")
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(f"Cannot upload {artifact_path} to s3://{bucket}/{key}", exc, bucket) from None
    return f"s3://{bucket}/{key}"


def _s3_error(action: str, exc: Exception, bucket: str) -> ReleaseError:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code == "NoSuchBucket":
        return ReleaseError(
            f"{action}: the bucket {bucket} does not exist.",
            hint="Apply global first (`labkit stack apply global` creates the artifact bucket), or pass the "
            "right --bucket.",
        )
    return ReleaseError(
        f"{action}: {exc}", hint="Check that the target is up (`labkit doctor`) and the bucket name."
    )
