"""Plain JSON requests and watch streams over a kubernetes ApiClient: no models, no deserialization.

The benchmarks watch thousands of objects and write thousands more; the typed clients would spend
more CPU turning JSON into model objects than the apiserver spends answering, on the same cores
as the operator they measure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from kubernetes import client, config

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class RawApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.client = api_client

    @classmethod
    def from_kubeconfig(cls, path: str, pool_size: int = 16) -> RawApi:
        configuration = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        return cls(client.ApiClient(configuration))

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = JSON,
        timeout: float | None = 60,
    ) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.client.param_serialize(
            method, path, query_params=list(query), header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        return self.client.call_api(*serialized, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, Any]] = (),
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        response = self._send(method, path, query, body, content_type)
        data = response.read()
        if response.status >= 400:
            raise ApiError(response.status, data.decode(errors="replace"))
        return json.loads(data) if data else {}

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        return self.request("GET", path, list(query.items()))

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    def apply(self, path: str, body: dict[str, Any], field_manager: str) -> dict[str, Any]:
        query = [("fieldManager", field_manager), ("force", "true")]
        return self.request("PATCH", path, query, body=body, content_type=APPLY_PATCH)

    def delete(self, path: str, missing_ok: bool = True, **query: Any) -> None:
        try:
            self.request("DELETE", path, list(query.items()))
        except ApiError as error:
            if not (missing_ok and error.status == 404):
                raise

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def text(self, path: str) -> str:
        response = self._send("GET", path)
        data = response.read()
        if response.status >= 400:
            raise ApiError(response.status, data.decode(errors="replace"))
        return str(data.decode())

    def watch(
        self, path: str, resource_version: str, timeout_s: int = 3600, **query: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) for every event after resource_version, until the server ends the stream."""
        params = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_s),
            *query.items(),
        ]
        response = self._send("GET", path, params, timeout=None)
        if response.status >= 400:
            raise ApiError(response.status, response.read().decode(errors="replace"))
        raw = response.response
        buffer = b""
        try:
            for chunk in raw.stream(amt=None, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        finally:
            raw.release_conn()


def resource_path(api_version: str, plural: str, namespace: str | None, name: str = "") -> str:
    """/api/v1/... or /apis/<group>/<version>/..., namespaced when namespace is given."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path
