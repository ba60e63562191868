"""A fault-injecting HTTPS proxy on loopback between one client (the operator) and the apiserver.

The proxy terminates TLS with a self-signed certificate made for it (openssl), which the
kubeconfig it writes (``FaultProxy.kubeconfig``) trusts; it reaches the apiserver as the cluster
admin, with the client certificate of the cluster's kubeconfig. Terminating TLS (rather than
passing it through at TCP level) lets every fault work per HTTP request: status codes with
``Retry-After``, resets, latency, a request that is never answered, and a watch stream that is
accepted and then sends nothing.

Every request is recorded (:class:`Request`: when, which client by User-Agent, method, path,
what was answered), so a test can count requests per second, see whether a client waited as
long as ``Retry-After`` asked before asking again, and count writes per identity — one proxy
per operator replica tells the replicas apart.

Faults are set with :meth:`FaultProxy.set_faults` (a :class:`Faults`, applied to each new
request) and :meth:`FaultProxy.blackhole_watches` (for a while, every watch stream that is open
or opens freezes: it delivers nothing more, ever, and never ends on its own — what a half-open
connection looks like to the client). The proxy runs its own event loop in a thread, so it
works beside blocking test code.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te", "trailer"}
)
# kopf's peering heartbeats are written by every replica, leader or not.
PEERING_PATH = "/apis/kopf.dev/"


@dataclass(frozen=True)
class Faults:
    """What happens to each new request, by chance; the rest pass through."""

    too_many_requests: float = 0.0
    """Share answered 429 with ``Retry-After: retry_after``."""
    retry_after: int = 2
    server_error: float = 0.0
    """Share answered 500."""
    unavailable: float = 0.0
    """Share answered 503 (without Retry-After)."""
    reset: float = 0.0
    """Share whose connection is reset (TCP RST) instead of an answer."""
    latency: float = 0.0
    """Share delayed by latency_s before anything else happens."""
    latency_s: tuple[float, float] = (0.5, 2.0)
    stall: float = 0.0
    """Share of non-watch requests read and never answered (the client's timeout must end them)."""
    watches: bool = True
    """Whether watch requests get faults too (their first answer; an open stream is not cut)."""
    methods: frozenset[str] | None = None
    """Only requests with these methods get faults (e.g. WRITE_METHODS); None: all."""

    def any(self) -> bool:
        return any((self.too_many_requests, self.server_error, self.unavailable, self.reset, self.latency, self.stall))


NO_FAULTS = Faults()


@dataclass
class Request:
    started: float
    """time.time() when the request arrived."""
    client: str
    """The User-Agent: kopf's own aiohttp client, or the kubernetes client of the operator's kube layer."""
    method: str
    path: str
    query: str
    watch: bool
    answer: str = ""
    """The status code sent (from upstream or injected), or reset / stall / blackhole / error."""
    injected: bool = False
    retry_after: int | None = None
    ended: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Same client, same call: a retry of this request would have the same key."""
        return self.client, self.method, self.path, self.query

    @property
    def write(self) -> bool:
        return self.method in WRITE_METHODS and not self.path.startswith(PEERING_PATH)


@dataclass(eq=False)
class _Stream:
    """An open watch stream; frozen ones forward nothing more."""

    record: Request
    frozen: bool = False

    def freeze(self) -> None:
        if not self.frozen:
            self.frozen = True
            self.record.answer += ", then blackhole"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = directory / "proxy.crt", directory / "proxy.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=llmops-faultproxy",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class FaultProxy:
    """Start with :meth:`start` (or as a context manager); give the client :attr:`kubeconfig`."""

    def __init__(self, upstream_kubeconfig: str, workdir: Path, name: str = "proxy", seed: int = 1) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.requests: list[Request] = []
        self._faults = NO_FAULTS
        self._blackhole_until = 0.0
        self._streams: set[_Stream] = set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._open_transports: set[asyncio.BaseTransport] = set()
        self.on_answered: Callable[[Request], None] | None = None
        """Called (in the proxy's thread) when the apiserver has answered a request, before the
        client gets the answer: a test can kill the client right after a write took effect."""

        config = yaml.safe_load(Path(upstream_kubeconfig).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.upstream = cluster["server"].rstrip("/")
        self._upstream_ssl = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        client_cert, client_key = self.workdir / "client.crt", self.workdir / "client.key"
        client_cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        client_key.write_bytes(base64.b64decode(user["client-key-data"]))
        client_key.chmod(0o600)
        self._upstream_ssl.load_cert_chain(client_cert, client_key)

        cert, key = self_signed_certificate(self.workdir)
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(cert, key)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        # The client's kubeconfig: the same user, the proxy's address and certificate.
        cluster["server"] = f"https://127.0.0.1:{self.port}"
        cluster["certificate-authority-data"] = base64.b64encode(cert.read_bytes()).decode()
        cluster.pop("certificate-authority", None)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))

    # ---- control (from any thread) -------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
        if faults.reset:
            self.reset_open_connections()

    @contextmanager
    def faults(self, faults: Faults) -> Iterator[None]:
        self.set_faults(faults)
        try:
            yield
        finally:
            self.set_faults(NO_FAULTS)

    def blackhole_watches(self, seconds: float) -> None:
        """From now on for `seconds`: open watch streams freeze, new ones are accepted and frozen."""
        with self._lock:
            self._blackhole_until = time.monotonic() + seconds
            for stream in self._streams:
                stream.freeze()

    def blackholed(self) -> bool:
        return time.monotonic() < self._blackhole_until

    def reset_open_connections(self) -> None:
        """Reset every client connection open now (watch streams included)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._reset_all)

    def dump(self, path: Path) -> Path:
        """Every request recorded, one JSON object a line (for looking into a failed run)."""
        with self._lock:
            lines = [json.dumps(dataclasses.asdict(r)) for r in self.requests]
        path.write_text("\n".join(lines) + "\n")
        return path

    def since(self, started: float) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.started >= started]

    # ---- life cycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"faultproxy-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"fault proxy {self.name} did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(30)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._serve())
        ready.set()
        loop.run_forever()
        loop.close()

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._upstream_ssl, limit=0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._server_ssl).start()

    async def _shutdown(self) -> None:
        self._reset_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        # Requests still held (stalled, blackholed) end with the proxy.
        held = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)

    # ---- the proxy -------------------------------------------------------------------------

    def _decide(self, faults: Faults, method: str, watch: bool) -> tuple[float, str | None]:
        """(latency, fault) for one request: fault is 429, 500, 503, reset, stall or None."""
        with self._lock:
            roll = self._rng.random
            delay = self._rng.uniform(*faults.latency_s) if roll() < faults.latency else 0.0
            if (watch and not faults.watches) or (faults.methods is not None and method not in faults.methods):
                return delay, None
            for share, fault in (
                (faults.too_many_requests, "429"),
                (faults.server_error, "500"),
                (faults.unavailable, "503"),
                (faults.reset, "reset"),
                (0.0 if watch else faults.stall, "stall"),
            ):
                if share and roll() < share:
                    return delay, fault
            return delay, None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        record = Request(
            started=time.time(),
            client=request.headers.get("User-Agent", ""),
            method=request.method,
            path=request.path,
            query=request.query_string,
            watch=watch,
        )
        with self._lock:
            self.requests.append(record)
            faults = self._faults
        transport = request.transport
        if transport is not None:
            self._open_transports.add(transport)
        try:
            return await self._answer(request, record, faults, watch)
        finally:
            record.ended = time.time()
            if transport is not None:
                self._open_transports.discard(transport)

    async def _answer(self, request: web.Request, record: Request, faults: Faults, watch: bool) -> web.StreamResponse:
        body = await request.read()
        delay, fault = self._decide(faults, request.method, watch)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            record.injected = True
            record.answer = fault
        if fault == "reset":
            self._reset(request.transport)
            raise asyncio.CancelledError  # nothing to answer: the connection is gone
        if fault == "stall":
            await self._until_closed(request)
            raise asyncio.CancelledError
        if fault in ("429", "500", "503"):
            code = int(fault)
            headers = {"Content-Type": "application/json"}
            details: dict[str, Any] = {}
            if code == 429:
                headers["Retry-After"] = str(faults.retry_after)
                details = {"retryAfterSeconds": faults.retry_after}
                record.retry_after = faults.retry_after
            status = {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code,
                "reason": {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}[code],
                "message": f"injected by the fault proxy ({fault})", "details": details,
            }  # fmt: skip
            return web.Response(status=code, headers=headers, body=json.dumps(status).encode())

        stream = _Stream(record, frozen=watch and self.blackholed())
        if stream.frozen:
            record.answer = "blackhole"
            await self._until_closed(request)
            raise asyncio.CancelledError

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=None if watch else 120, sock_connect=10)
        try:
            upstream = await self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body or None, timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            record.answer = "error"
            return web.Response(status=502, text=f"fault proxy: upstream failed: {error}")
        record.answer = str(upstream.status)
        if self.on_answered is not None and not watch:
            self.on_answered(record)
        try:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
            )
            if not watch:
                body = await upstream.read()
                await response.prepare(request)
                await response.write(body)
                await response.write_eof()
                return response
            await response.prepare(request)
            with self._lock:
                self._streams.add(stream)
            try:
                async for chunk in upstream.content.iter_any():
                    if stream.frozen:
                        await self._until_closed(request)
                        break
                    await response.write(chunk)
            finally:
                with self._lock:
                    self._streams.discard(stream)
            await response.write_eof()
            return response
        except (ConnectionError, aiohttp.ClientError):
            # the client went away (killed, or it gave up): nobody to answer
            raise asyncio.CancelledError from None
        finally:
            upstream.release()
            upstream.close()

    async def _until_closed(self, request: web.Request) -> None:
        """Hold the request without answering until the client gives up (or the proxy stops)."""
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.5)

    def _reset_all(self) -> None:
        for transport in list(self._open_transports):
            self._reset(transport)
        self._open_transports.clear()

    @staticmethod
    def _reset(transport: asyncio.BaseTransport | None) -> None:
        """Close with SO_LINGER 0: the client gets a TCP RST, not a clean close."""
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


# ---- reading the record ----------------------------------------------------------------------


def per_second(requests: list[Request], start: float, end: float) -> float:
    """Requests started in [start, end), per second."""
    count = sum(1 for r in requests if start <= r.started < end)
    return count / max(end - start, 1e-9)


def peak_per_second(requests: list[Request], start: float, end: float, window: float = 1.0) -> int:
    """The most requests started in any `window`-second bucket of [start, end)."""
    buckets = Counter(int((r.started - start) // window) for r in requests if start <= r.started < end)
    return max(buckets.values(), default=0)


def early_retries(requests: list[Request], tolerance: float = 0.25) -> list[tuple[Request, Request]]:
    """Pairs (a 429 with Retry-After, the same client's same call again) sooner than it asked.

    The call again is the first one sent after the 429 was answered: one already on its way
    then (another caller's, at the same moment) had not been told to wait."""
    ordered = sorted(requests, key=lambda r: r.started)
    early = []
    for i, throttled in enumerate(ordered):
        if throttled.retry_after is None:
            continue
        answered = throttled.ended or throttled.started
        not_before = answered + throttled.retry_after - tolerance
        again = next((r for r in ordered[i + 1 :] if r.key == throttled.key and r.started >= answered), None)
        if again is not None and again.started < not_before:
            early.append((throttled, again))
    return early


def writes_by(requests: list[Request]) -> Counter[str]:
    """Writes (not kopf's peering heartbeats) by method and path."""
    return Counter(f"{r.method} {r.path}" for r in requests if r.write)


__all__ = [
    "NO_FAULTS",
    "FaultProxy",
    "Faults",
    "Request",
    "early_retries",
    "peak_per_second",
    "per_second",
    "writes_by",
]
