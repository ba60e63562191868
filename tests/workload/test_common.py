"""The shared URI and result code, in-process (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llmops_common.report import MAX_RESULT_BYTES, compact
from llmops_common.uri import ConfigError, resolve

pytestmark = pytest.mark.workload


def test_uri_schemes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "claim" / "models" / "m").mkdir(parents=True)
    monkeypatch.setenv("LLMOPS_PVC_ROOT", str(tmp_path))
    assert resolve("pvc://claim/models/m").location == str(tmp_path / "claim/models/m")
    assert resolve(f"file://{tmp_path}").location == str(tmp_path)
    assert resolve(str(tmp_path)).location == str(tmp_path)
    hub = resolve("hf://org/name")
    assert hub.is_hub and hub.location == "org/name"


@pytest.mark.parametrize("uri", ["", "ftp://x/y", "hf://", "pvc:///nothing", "file://host/abs", "/does/not/exist"])
def test_bad_uris_are_config_errors(uri: str) -> None:
    with pytest.raises(ConfigError):
        resolve(uri)


def test_s3_without_boto3_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_boto3(name: str, *args: object, **kwargs: object) -> object:
        if name == "boto3":
            raise ImportError("no boto3")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_boto3)
    with pytest.raises(ConfigError, match="boto3"):
        resolve("s3://bucket/model")


def test_result_never_exceeds_the_termination_log() -> None:
    big = {"passed": True, "metrics": [{"name": f"m{i}", "value": 0.5} for i in range(500)]}
    text = compact(big)
    assert len(text.encode()) <= MAX_RESULT_BYTES
    assert json.loads(text) == {"passed": True, "truncated": True}
