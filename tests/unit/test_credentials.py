"""kopf's login and the operator's own client load the same kubeconfig at startup, in threads."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import threading
from pathlib import Path

import kopf
import pytest
import yaml
from kubernetes.config import kube_config

from llmops.handlers.operator import login
from llmops.kube.client import api_client


def kubeconfig_with_fresh_certificates(path: Path) -> Path:
    """Certificates the kubernetes client has not seen yet, so it writes new temporary files."""

    def data() -> str:
        return base64.b64encode(secrets.token_bytes(1024)).decode()

    user = {"client-certificate-data": data(), "client-key-data": data()}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_kopf_never_gets_a_certificate_file_before_its_bytes_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the shared lock about one startup in six handed kopf an empty file (ssl: PEM lib).
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for attempt in range(30):
        kubeconfig = kubeconfig_with_fresh_certificates(tmp_path / f"kubeconfig-{attempt}")
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        sizes: list[tuple[int, int]] = []

        def kopf_logs_in(sizes: list[tuple[int, int]]) -> None:
            info = login(logger=logging.getLogger("kopf"), settings=kopf.OperatorSettings())
            assert info is not None and info.certificate_path and info.private_key_path
            sizes.append((os.path.getsize(info.certificate_path), os.path.getsize(info.private_key_path)))

        threads = [threading.Thread(target=api_client.__wrapped__) for _ in range(4)]
        threads.insert(attempt % 5, threading.Thread(target=kopf_logs_in, args=(sizes,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sizes and all(sizes[0]), f"attempt {attempt}: kopf got files of {sizes} bytes"
