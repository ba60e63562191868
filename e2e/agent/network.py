"""Pod networking on one host: a bridge, a network namespace per pod, and Services.

- Every pod gets its own network namespace with a veth into the bridge `llmops0` and an address
  from POD_CIDR, so each pod has its own ports (two tritonservers both listen on 8000) and its
  own IP that the host, Prometheus and other pods reach directly.
- Each Service's cluster IP is a /32 address of the bridge on the host, where
  a small TCP proxy forwards every connection to one ready endpoint of the Service's
  EndpointSlices, round robin (what kube-proxy does with iptables). Pods route to it through the
  bridge; the host reaches it directly.
- Names: each pod's /etc/hosts lists every Service as <name>.<namespace>.svc.cluster.local
  (and shorter forms), headless Services as their ready endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger("agent.network")

BRIDGE = "llmops0"
SERVICE_DEVICE = BRIDGE  # cluster IPs are /32 addresses of the bridge (no dummy module needed)
POD_CIDR = ipaddress.ip_network("10.245.0.0/16")
GATEWAY = str(next(POD_CIDR.hosts()))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def setup_host() -> None:
    """The bridge with the pods' gateway address; idempotent."""
    if ip("link", "show", BRIDGE, check=False).returncode != 0:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{GATEWAY}/{POD_CIDR.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def teardown_host() -> None:
    for name in namespaces():
        ip("netns", "del", name, check=False)
    ip("link", "del", BRIDGE, check=False)


def namespaces() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("llmops-")]


def netns_name(uid: str) -> str:
    return f"llmops-{uid[:13]}"


def create_pod_network(uid: str, address: str) -> str:
    """A namespace with lo and eth0 (address/prefix, default route via the bridge); returns its name."""
    name = netns_name(uid)
    host_end = f"lv{uid[:8]}{uid[9:13]}"[:15]
    ip("netns", "del", name, check=False)  # a leftover of an earlier agent
    ip("link", "del", host_end, check=False)
    ip("netns", "add", name)
    ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("link", "set", host_end, "master", BRIDGE, "up")
    ip("-n", name, "addr", "add", f"{address}/{POD_CIDR.prefixlen}", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "route", "add", "default", "via", GATEWAY)
    return name


def delete_pod_network(uid: str) -> None:
    ip("netns", "del", netns_name(uid), check=False)


class AddressPool:
    """Pod IPs from POD_CIDR (the gateway excluded), reused after their pod is gone."""

    def __init__(self) -> None:
        self.used: set[str] = {GATEWAY}

    def take(self) -> str:
        for host in itertools.islice(POD_CIDR.hosts(), 1, None):
            address = str(host)
            if address not in self.used:
                self.used.add(address)
                return address
        raise RuntimeError(f"no free pod address in {POD_CIDR}")

    def keep(self, address: str) -> None:
        self.used.add(address)

    def release(self, address: str | None) -> None:
        if address and address != GATEWAY:
            self.used.discard(address)


@dataclass(frozen=True)
class ServicePort:
    cluster_ip: str
    port: int
    name: str


@dataclass
class Backends:
    """Ready endpoints of one Service port, taken round robin."""

    addresses: list[tuple[str, int]] = field(default_factory=list)
    turn: int = 0

    def next(self) -> tuple[str, int] | None:
        if not self.addresses:
            return None
        self.turn = (self.turn + 1) % len(self.addresses)
        return self.addresses[self.turn]


class ServiceProxy:
    """One listener per (cluster IP, port); the backends change without restarting listeners."""

    def __init__(self) -> None:
        self.servers: dict[ServicePort, asyncio.Server] = {}
        self.backends: dict[ServicePort, Backends] = {}

    async def sync(self, wanted: dict[ServicePort, list[tuple[str, int]]]) -> None:
        for key in [k for k in self.servers if k not in wanted]:
            self.servers.pop(key).close()
            self.backends.pop(key, None)
        addresses_now = {k.cluster_ip for k in self.servers}
        for ip_address in {k.cluster_ip for k in wanted} - addresses_now:
            ip("addr", "replace", f"{ip_address}/32", "dev", SERVICE_DEVICE, check=False)
        for key, endpoints in wanted.items():
            self.backends.setdefault(key, Backends()).addresses = sorted(endpoints)
            if key not in self.servers:
                try:
                    self.servers[key] = await asyncio.start_server(
                        lambda r, w, key=key: self._forward(key, r, w), key.cluster_ip, key.port
                    )
                except OSError as error:
                    log.warning("cannot listen on %s:%s: %s", key.cluster_ip, key.port, error)
        for ip_address in addresses_now - {k.cluster_ip for k in wanted}:
            ip("addr", "del", f"{ip_address}/32", "dev", SERVICE_DEVICE, check=False)

    async def _forward(self, key: ServicePort, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = self.backends.get(key, Backends()).next()
        if backend is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*backend), 5)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def service_ports(
    services: Iterable[dict], slices: Iterable[dict], apiserver: tuple[str, int]
) -> dict[ServicePort, list[tuple[str, int]]]:
    """For each ClusterIP Service port: the ready endpoints (address, port) of its EndpointSlices.

    The `kubernetes` Service of the default namespace goes to the apiserver itself (the local
    control plane runs without the endpoint reconciler, so it has no EndpointSlice).
    """
    by_service: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        svc = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
        if svc:
            by_service.setdefault((s["metadata"]["namespace"], svc), []).append(s)
    out: dict[ServicePort, list[tuple[str, int]]] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc["spec"]
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue
        for port in spec.get("ports", []):
            if port.get("protocol", "TCP") != "TCP":
                continue
            key = ServicePort(cluster_ip, int(port["port"]), port.get("name", ""))
            if (meta["namespace"], meta["name"]) == ("default", "kubernetes"):
                out[key] = [apiserver]
                continue
            endpoints = []
            for s in by_service.get((meta["namespace"], meta["name"]), []):
                target = next((p.get("port") for p in s.get("ports") or [] if p.get("name", "") == key.name), None)
                if target is None:
                    continue
                for ep in s.get("endpoints") or []:
                    if ep.get("conditions", {}).get("ready", True) is not False:
                        endpoints += [(address, int(target)) for address in ep.get("addresses", [])]
            out[key] = endpoints
    return out


def hosts_file(pod_name: str, pod_ip: str, namespace: str, services: Iterable[dict], slices: Iterable[dict]) -> str:
    """/etc/hosts for one pod: itself, then every Service by its DNS names."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{pod_ip}\t{pod_name}"]
    headless: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        svc = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
        if svc:
            headless.setdefault((s["metadata"]["namespace"], svc), []).extend(s.get("endpoints") or [])
    for svc in services:
        meta = svc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            names.append(name)
        cluster_ip = svc["spec"].get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            lines.append(f"{cluster_ip}\t{' '.join(names)}")
            continue
        for ep in headless.get((ns, name), []):
            for address in ep.get("addresses", []):
                lines.append(f"{address}\t{' '.join(names)}")
                if ep.get("hostname"):
                    lines.append(f"{address}\t{ep['hostname']}.{name}.{ns}.svc.cluster.local {ep['hostname']}.{name}")
    return "\n".join(lines) + "\n"
