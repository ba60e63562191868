"""The one place where model and data URIs become local paths.

Supported schemes:
  hf://org/name        -> a Hugging Face hub id, loaded with from_pretrained (network or cache)
  hf://org/name@rev    -> the same, pinned to a commit (or tag or branch) of the hub repository
  file:///abs/path     -> a local path
  /abs/path, rel/path  -> a local path
  pvc://claim/path     -> $LLMOPS_PVC_ROOT/claim/path (the operator mounts claims there)
  s3://bucket/prefix   -> downloaded with boto3 into a cache directory
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_PVC_ROOT = "/mnt/pvc"


class ConfigError(Exception):
    """Bad input from the user: the operator must not retry (exit code 2)."""


@dataclass(frozen=True)
class Resolved:
    """A model location: either a local directory or a hub id for from_pretrained."""

    location: str  # local path, or hub id when is_hub
    is_hub: bool = False
    revision: str | None = None
    """The hub revision to load (hf://org/name@rev); None is the repository's default branch."""


def resolve(uri: str, *, must_exist: bool = True) -> Resolved:
    """Turn a URI into something from_pretrained or open() accepts."""
    if not uri:
        raise ConfigError("empty URI")
    if "://" not in uri:
        return Resolved(_local(uri, must_exist))
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "hf":
        repo_id, _, revision = (parsed.netloc + parsed.path).strip("/").partition("@")
        if not repo_id:
            raise ConfigError(f"hf:// URI without a repository id: {uri!r}")
        if "@" in uri and not revision:
            raise ConfigError(f"hf:// URI with an empty revision after '@': {uri!r}")
        return Resolved(repo_id, is_hub=True, revision=revision or None)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file:// URI must be absolute (file:///path): {uri!r}")
        return Resolved(_local(unquote(parsed.path), must_exist))
    if scheme == "pvc":
        claim = parsed.netloc
        if not claim:
            raise ConfigError(f"pvc:// URI without a claim name: {uri!r}")
        root = os.environ.get("LLMOPS_PVC_ROOT", DEFAULT_PVC_ROOT)
        rel = unquote(parsed.path).lstrip("/")
        return Resolved(_local(os.path.join(root, claim, rel), must_exist))
    if scheme == "s3":
        return Resolved(_download_s3(parsed.netloc, parsed.path.lstrip("/")))
    raise ConfigError(f"unsupported URI scheme {scheme!r} in {uri!r}")


def local_path(uri: str, *, must_exist: bool = True) -> Path:
    """Resolve a URI that must name a local file or directory (datasets, outputs)."""
    res = resolve(uri, must_exist=must_exist)
    if res.is_hub:
        raise ConfigError(f"{uri!r} names a hub model, not a local file")
    return Path(res.location)


def _local(path: str, must_exist: bool) -> str:
    p = Path(path).expanduser()
    if must_exist and not p.exists():
        raise ConfigError(f"path does not exist: {p}")
    return str(p)


def _download_s3(bucket: str, prefix: str) -> str:
    try:
        import boto3  # type: ignore[import-not-found]
    except ImportError as e:
        raise ConfigError("s3:// URIs need boto3, which is not installed in this image") from e
    if not bucket:
        raise ConfigError("s3:// URI without a bucket")
    dest = Path(os.environ.get("LLMOPS_CACHE_DIR", tempfile.gettempdir())) / "s3" / bucket / prefix
    s3 = boto3.client("s3")
    found = False
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = os.path.relpath(key, prefix) if key != prefix else os.path.basename(key)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            found = True
    if not found:
        raise ConfigError(f"nothing found at s3://{bucket}/{prefix}")
    # A single object: return the file itself, not its directory.
    single = dest / os.path.basename(prefix)
    return str(single if single.is_file() else dest)
