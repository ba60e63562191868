"""The operator's copy of its children: one list+watch per kind, of the objects it manages.

Every reconcile looks at its children (Jobs, Deployments, pods, claims, Services), most of them
only to compare with their manifest before a write. Read from the apiserver, that is most of
the operator's requests, from a control plane that serves every other controller too. Here one
stream per kind (label selector: managed by us; cluster-wide or per watched namespace) keeps a
copy of each, and tells the handlers which parent to look at again: the reconcile an event
starts reads a copy at least as new as that event. The Events that say why a Job has no pods
are kept the same way, chosen by field (`KINDS`).

A copy is what the apiserver said a moment ago, not this instant. Reads ask for it explicitly
(kube/read.py, `cached=True`) where a moment's lag is harmless: comparing a child with its
manifest (our own writes update the copy at once), and progress that the next event corrects.

The streams run in threads of their own with their own connections (a watch holds one for
minutes), and hand what they see to the event loop, which alone touches the copies.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.watch.watch import iter_resp_lines

from .client import REQUEST_TIMEOUT, SERVER_BACKOFF, api_client

log = logging.getLogger(__name__)

FAILED_CREATE = "FailedCreate"
"""The reason of the Event a Job's controller records when it cannot create a pod."""


@dataclass(frozen=True)
class Kept:
    """A kind the operator keeps copies of."""

    api_version: str
    kind: str
    fields: str = ""
    """A field selector that chooses the objects instead of our labels, for a kind that carries none."""
    awaited: bool = True
    """Whether reconciles wait for its first list after a start (`Children.listed`)."""
    bookmarked: bool = True
    """Whether its watches get the apiserver's bookmark every minute. Events do not: the apiserver
    keeps no watch cache of them (by default), and a watch of them served by etcd says nothing
    until an Event matches. Their watches are ended by the apiserver before the silence that
    means a dead connection (QUIET_WATCH_SECONDS)."""


KINDS = (
    Kept("batch/v1", "Job"),
    Kept("apps/v1", "Deployment"),
    Kept("v1", "Pod"),
    Kept("v1", "PersistentVolumeClaim"),
    Kept("v1", "Service"),
    # Why a Job has no pods (a quota, an admission policy) shows only in these Events. A list of
    # them by field makes the apiserver scan every Event of the namespace: with thousands of
    # models it was its costliest request, asked by each reconcile of a Job still without pods.
    # Now it is one list per start, and one each time a quiet watch of them has fallen behind the
    # apiserver's history (every few minutes while no Event matches: their watches get no
    # bookmarks to move on with). As it can take seconds, reconciles do not wait for it, and the
    # few reads before it ends go to the apiserver.
    Kept("v1", "Event", fields=f"involvedObject.kind=Job,reason={FAILED_CREATE}", awaited=False, bookmarked=False),
)
"""The kinds kept: the children every LLMModel and FineTuneJob reconcile reads, and the Events
that say why a Job cannot create its pods."""
AWAITED = {(kept.api_version, kept.kind): kept.awaited for kept in KINDS}
PAGE = 50
"""Objects per page of a (re-)list. Parsed JSON takes about ten times the memory of its text,
and what a page's parse leaves behind, interleaved with what lives on, is mostly kept as RSS: a
start over 1,000 models grew to some 102 MiB with pages of 100, 91-93 MiB with pages of 50,
against 83 MiB for the process that had seen the same models come one by one."""
WATCH_SECONDS = 300
"""The apiserver ends each watch after this long; the next one resumes where it ended."""
SILENCE_SECONDS = 70
"""A watch that sends nothing for this long is dropped and resumed: the apiserver sends a
bookmark every minute, so silence means a dead connection (a blackholed stream)."""
QUIET_WATCH_SECONDS = 60
"""How long a watch that gets no bookmarks lasts: the apiserver ends it, quiet or not, before
SILENCE_SECONDS, and the next resumes where it began unless an event came. Once its
resourceVersion is older than the apiserver's history (minutes), the kind is listed again."""
MAX_PAUSE = 10.0
"""The longest pause before a failed stream tries again (1, 2, 4, 8, 10 s, jittered): after an
outage its copies and its parents' reconciles are at most this far behind."""


def keyed_label(key: str) -> bool:
    """Labels the copies are found by: ours (owner, component) and the one a Job gives its pods."""
    return key.startswith("llmops.dev/") or key == "job-name"


def kept_label(key: str) -> bool:
    """Labels a copy keeps beside its body: the keyed ones and the rest of the ones we set. The
    others (a pod's controller-uid and pod-template-hash, a Job's copies of them) took more memory
    than the compressed copies, and nothing selects by them."""
    return keyed_label(key) or key.startswith("app.kubernetes.io/")


def newer(version: str, than: str) -> bool:
    """resourceVersions are opaque, but etcd's are integers: a late event must not undo a newer copy."""
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    return version != than


_DICTIONARIES: dict[str, bytes] = {}
"""Per apiVersion and kind, the JSON of the first object of that kind made a copy: the text every
other object of the kind shares (keys, labels, pod templates), given to zlib as a dictionary."""


def _dictionary(api_version: str, kind: str, blob: bytes) -> bytes:
    return _DICTIONARIES.setdefault(f"{api_version}/{kind}", blob)


def compact(body: Mapping[str, Any]) -> bytes:
    """The object as compact JSON, without its managedFields: what a copy keeps of it."""
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return orjson.dumps({**body, "metadata": metadata})


@dataclass(frozen=True, slots=True)
class Copy:
    kept_labels: tuple[str, ...]
    """The labels kept (`kept_label`), flat: key, value, key, value. There is one per copy, and
    a tuple takes two thirds of what a dict of the same labels does."""
    resource_version: str
    packed: bytes
    """The object as compact JSON without managedFields, compressed against its kind's dictionary:
    about a twelfth of the JSON (a pod's 4 KB take 300 bytes), a fraction of the parsed object,
    and every read gets an object of its own to keep or change."""
    dictionary: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Copy:
        return cls.packing(compact(body), body)

    @classmethod
    def packing(cls, text: bytes, body: Mapping[str, Any]) -> Copy:
        """The copy of `body`, whose `compact` JSON is `text`."""
        dictionary = _dictionary(str(body.get("apiVersion")), str(body.get("kind")), text)
        packer = zlib.compressobj(zdict=dictionary)
        packed = packer.compress(text) + packer.flush()
        metadata = body["metadata"]
        # Interned: the children of a parent, and every child, share the same few keys and values.
        labels = (sys.intern(s) for k, v in (metadata.get("labels") or {}).items() if kept_label(k) for s in (k, v))
        return cls(tuple(labels), str(metadata.get("resourceVersion", "")), packed, dictionary)

    @property
    def labels(self) -> dict[str, str]:
        return dict(zip(self.kept_labels[::2], self.kept_labels[1::2], strict=True))

    def label(self, key: str) -> str | None:
        pairs = self.kept_labels
        return next((pairs[i + 1] for i in range(0, len(pairs), 2) if pairs[i] == key), None)

    def body(self) -> dict[str, Any]:
        unpacker = zlib.decompressobj(zdict=self.dictionary)
        parsed: dict[str, Any] = orjson.loads(unpacker.decompress(self.packed) + unpacker.flush())
        return parsed


Changed = tuple[str, Mapping[str, str]]
"""A child that changed: its namespace and labels (which say whose child it is)."""
Listed = Mapping[tuple[str, str], Copy]
"""A list's copies by namespace and name."""


def listed_copies(
    api_version: str, kind: str, page: bytes, accepts: Callable[[str], bool] = lambda namespace: True
) -> tuple[dict[tuple[str, str], Copy], dict[str, Any]]:
    """A list's page (its JSON): the copies of its items in namespaces that `accepts` takes, and
    the list's metadata (resourceVersion, continue).

    The items of a list come without apiVersion and kind (the list says them once); a watch's
    objects and our writes' answers have them, and a copy must compare equal to a manifest either
    way, or every child would be applied again after each (re)list.

    The page's objects are all let go before the first copy is made, and each copy is made from
    its item's text parsed alone, as a watch event is: made from the parsed page, the copies kept
    its strings (names, labels, versions), scattered over the memory the page had used."""
    parsed = orjson.loads(page)
    texts = [
        compact({**item, "apiVersion": api_version, "kind": kind})
        for item in parsed.get("items") or []
        if accepts(item["metadata"]["namespace"])
    ]
    metadata: dict[str, Any] = parsed.get("metadata") or {}
    del parsed
    copies = {}
    for text in texts:
        body = orjson.loads(text)
        copies[(body["metadata"]["namespace"], body["metadata"]["name"])] = Copy.packing(text, body)
    return copies, metadata


@dataclass
class Store:
    """One kind's copies by namespace and name, indexed by the labels they are found by. Pure."""

    synced: set[str | None] = field(default_factory=set)
    """Namespaces listed at least once (None: the whole cluster); elsewhere the store cannot tell."""
    objects: dict[str, dict[str, Copy]] = field(default_factory=dict)
    indexed: set[str] = field(default_factory=set)
    """The keyed labels selected by so far: only those are indexed. Of the kinds kept, only pods
    are selected by label; the others are read by name, and their index was memory for nothing."""
    by_label: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)
    """By namespace and indexed label, the names carrying each value of it. Lists, not sets: most
    hold a name or two (one parent's children of the kind), and an empty set alone takes 216
    bytes; nested, not keyed by (namespace, label, value), which took a tuple more per parent."""

    def knows(self, namespace: str) -> bool:
        return None in self.synced or namespace in self.synced

    def get(self, namespace: str, name: str) -> Copy | None:
        return self.objects.get(namespace, {}).get(name)

    def in_namespace(self, namespace: str) -> list[Copy]:
        return list(self.objects.get(namespace, {}).values())

    def select(self, namespace: str, labels: Mapping[str, str]) -> list[Copy] | None:
        """The copies carrying all these labels; None when the copies cannot tell: none of the
        labels is a keyed one, or one of them is a label the copies do not keep."""
        keyed = sorted((k, v) for k, v in labels.items() if keyed_label(k))
        if not keyed or not all(map(kept_label, labels)):
            return None
        key, value = keyed[0]
        if key not in self.indexed:
            self.indexed.add(key)
            for ns, objects in self.objects.items():
                for name, copy in objects.items():
                    self._index(ns, name, copy, key)
        names = self.by_label.get((namespace, key), {}).get(value, [])
        found = (self.objects[namespace][n] for n in sorted(names))
        return [c for c in found if all(c.label(k) == v for k, v in labels.items())]

    def is_news(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether the object at this version is newer than its copy kept, or none is kept."""
        old = self.get(namespace, name)
        return old is None or newer(resource_version, old.resource_version)

    def put(self, namespace: str, name: str, copy: Copy) -> bool:
        """Keep the copy unless a newer one is kept; True when it is news."""
        if not self.is_news(namespace, name, copy.resource_version):
            return False
        self._drop(namespace, name)
        self.objects.setdefault(namespace, {})[name] = copy
        for key in self.indexed:
            self._index(namespace, name, copy, key)
        return True

    def _index(self, namespace: str, name: str, copy: Copy, key: str) -> None:
        value = copy.label(key)
        if value is not None:
            self.by_label.setdefault((namespace, key), {}).setdefault(value, []).append(name)

    def remove(self, namespace: str, name: str, resource_version: str) -> Copy | None:
        """Forget a deleted object, unless the copy kept is newer (it was created again since)."""
        old = self.get(namespace, name)
        if old is None or newer(old.resource_version, resource_version):
            return None
        self._drop(namespace, name)
        return old

    def replace(self, scope: str | None, listed: Listed) -> list[Changed]:
        """A (re-)list of the scope (a namespace, or None: all): what changed since the copies.

        The first list of a scope reports nothing: the handlers list their parents themselves.
        """
        first = scope not in self.synced
        changed: list[Changed] = []
        namespaces = list(self.objects) if scope is None else [scope]
        for ns in namespaces:
            for name, old in list(self.objects.get(ns, {}).items()):
                if (ns, name) not in listed:
                    self._drop(ns, name)
                    changed.append((ns, old.labels))
        for (ns, name), copy in listed.items():
            kept = self.get(ns, name)
            if kept is None or kept.resource_version != copy.resource_version:
                self._drop(ns, name)
                self.put(ns, name, copy)
                changed.append((ns, copy.labels))
        self.synced.add(scope)
        return [] if first else changed

    def _drop(self, namespace: str, name: str) -> None:
        old = self.objects.get(namespace, {}).pop(name, None)
        if old is None:
            return
        if not self.objects[namespace]:
            del self.objects[namespace]
        for key in self.indexed:
            value, values = old.label(key), self.by_label.get((namespace, key))
            if value is None or values is None or name not in values.get(value, ()):
                continue
            values[value].remove(name)
            if not values[value]:
                del values[value]
            if not values:
                del self.by_label[(namespace, key)]


Listener = Callable[[str, str, Mapping[str, str]], None]
"""Called on the event loop with (kind, namespace, labels) of a child that changed."""


class Gone(Exception):
    """The watch's resourceVersion is older than the apiserver keeps: list again."""


def gone(error: Exception) -> bool:
    return isinstance(error, Gone) or (isinstance(error, ApiException) and error.status == 410)


_client_lock = threading.Lock()


@cache
def _cached_watch_client() -> DynamicClient:
    return DynamicClient(client.ApiClient(api_client().configuration))


def _watch_client() -> DynamicClient:
    """A client of its own: each watch holds a connection for minutes, the reconciles' pool must not lose them."""
    with _client_lock:  # the streams start together; one discovery serves them all
        return _cached_watch_client()


class Sink(Protocol):
    """Where a stream hands what it sees: the children's copies, or the handlers of our own kinds."""

    selector: str
    """The label selector of the objects streamed ("": all of the kind), unless the kind has fields."""

    def accepts(self, namespace: str) -> bool: ...

    def deliver(self, work: Callable[[], None]) -> None:
        """From the stream's thread: run `work` on the event loop, in the order the stream saw things."""

    def relisted(self, kind: str, scope: str | None, listed: Listed) -> None: ...

    def changed(self, kind: str, type_: str, body: Mapping[str, Any]) -> None: ...


def deliver_to(loop: asyncio.AbstractEventLoop | None, work: Callable[[], None]) -> None:
    """A sink's `deliver`, to the loop it was started on."""
    try:
        if loop is not None:
            loop.call_soon_threadsafe(work)
    except RuntimeError:
        pass  # the loop is closed: the operator is exiting


def start_streams(sink: Sink, kinds: Iterable[Kept], scopes: list[str | None]) -> list[Stream]:
    """One stream per kind and scope, started."""
    streams = [Stream(sink, kept, scope) for kept in kinds for scope in scopes]
    for stream in streams:
        stream.start()
    return streams


def stop_streams(streams: list[Stream]) -> None:
    """Ask each stream to stop (its thread ends with its watch) and let go of them."""
    for stream in streams:
        stream.stopping.set()
    streams.clear()


async def wait_until_set(event: asyncio.Event | None, timeout: float) -> None:
    """Wait, at most `timeout` seconds, for the event; at once when it is set or there is none."""
    if event is None or event.is_set():
        return
    with suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class Stream(threading.Thread):
    """List, then watch from there, for ever: one kind, one scope (a namespace, or None: the cluster)."""

    def __init__(self, sink: Sink, kept: Kept, scope: str | None) -> None:
        super().__init__(name=f"watch-{kept.kind.lower()}-{scope or 'cluster'}", daemon=True)
        self.sink, self.api_version, self.kind, self.scope = sink, kept.api_version, kept.kind, scope
        self.selectors: dict[str, str] = {}
        if kept.fields:
            self.selectors["field_selector"] = kept.fields
        elif sink.selector:
            self.selectors["label_selector"] = sink.selector
        self.watch_seconds = WATCH_SECONDS if kept.bookmarked else QUIET_WATCH_SECONDS
        self.stopping = threading.Event()
        self.failures = 0
        """Failures in a row: the pause before the next try grows with them."""
        self.version: str | None = None
        """Where the next watch begins: the last list's or event's resourceVersion (None: list
        again). Kept as each event comes, so that a watch cut short resumes after the last event
        it delivered: begun again from an earlier version, it would deliver older events again,
        and a handler without copies to compare with (an LLMModel's) would take them for news,
        such as a deleted object's body."""

    def run(self) -> None:
        while not self.stopping.is_set():
            if self.stopping.wait(SERVER_BACKOFF.left()):  # a list or a watch is a request too
                return
            try:
                if self.version is None:
                    self.version = self._list()
                self._watch()
            except Exception as error:  # a stream outlives any fault and tries again
                if gone(error):
                    self.version = None
                    continue
                if self.stopping.is_set():
                    return
                self.failures += 1
                backoff = min(MAX_PAUSE, 2.0 ** (self.failures - 1)) * random.uniform(0.5, 1)
                pause = SERVER_BACKOFF.retry_after(error) or backoff
                log.warning("watching %s (%s) failed: %s; again in %.1fs", self.kind, self.scope or "all", error, pause)
                self.stopping.wait(pause)

    def _path(self) -> str:
        resource = _watch_client().resources.get(api_version=self.api_version, kind=self.kind)
        return str(resource.path(namespace=self.scope))

    def _list(self) -> str:
        # Each page becomes copies before the next is read: a relist of thousands of objects
        # never holds them all parsed at once, only their copies (of the watched namespaces only:
        # a cluster-wide stream sees every namespace).
        listed: dict[tuple[str, str], Copy] = {}
        token: str | None = None
        while True:
            response = _watch_client().request(
                "get",
                self._path(),
                **self.selectors,
                limit=PAGE,
                _continue=token,
                _request_timeout=REQUEST_TIMEOUT,
                serialize=False,  # the body as it came: the copies are made from plain JSON
            )
            copies, metadata = listed_copies(self.api_version, self.kind, response.data, self.sink.accepts)
            listed.update(copies)
            token = metadata.get("continue")
            if not token:
                self.sink.deliver(functools.partial(self.sink.relisted, self.kind, self.scope, listed))
                self.failures = 0
                return str(metadata["resourceVersion"])

    def _watch(self) -> None:
        response = _watch_client().request(
            "get",
            self._path(),
            **self.selectors,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.version,
            timeout_seconds=self.watch_seconds,
            _request_timeout=(10, SILENCE_SECONDS),
            serialize=False,
        )
        try:
            for line in iter_resp_lines(response):
                if self.stopping.is_set():
                    break
                if not line:
                    continue
                self.failures = 0  # the stream works (an accepted request alone may still be cut at once)
                event = orjson.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error: {body.get('message') or body}")
                if kind != "BOOKMARK":
                    self.sink.deliver(functools.partial(self.sink.changed, self.kind, kind, body))
                self.version = str(body["metadata"]["resourceVersion"])
        finally:
            response.close()  # a stream cut short must not go back to the pool half read
            response.release_conn()


class Children:
    """Every kept kind: the stores, the streams that fill them, and who is told of changes."""

    def __init__(self) -> None:
        self.selector = ""
        self.stores: dict[tuple[str, str], Store] = {}
        self.listeners: list[Listener] = []
        self.accepts: Callable[[str], bool] = lambda namespace: True
        self.streams: list[Stream] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.scopes: list[str | None] = []
        self.first_lists: asyncio.Event | None = None
        """Set once every awaited kind has been listed in every scope: from then on, reads of children
        are answered by the copies."""

    def listen(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def start(
        self, loop: asyncio.AbstractEventLoop, selector: str, scopes: list[str | None], accepts: Callable[[str], bool]
    ) -> None:
        """Watch every kind in each scope; objects in namespaces that `accepts` refuses are not kept."""
        self.loop, self.selector, self.accepts, self.scopes = loop, selector, accepts, scopes
        self.first_lists = asyncio.Event()
        for kept in KINDS:
            self.stores[(kept.api_version, kept.kind)] = Store()
        self.streams = start_streams(self, KINDS, scopes)

    def stop(self) -> None:
        stop_streams(self.streams)
        self.stores.clear()
        self.loop = self.first_lists = None

    async def listed(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until every awaited kind has been listed once.

        Until then a read of a child goes to the apiserver: a start over thousands of resources,
        each reconciled at once, would read every child one GET at a time while the lists that
        bring them all in a few pages are on their way.
        """
        await wait_until_set(self.first_lists, timeout)

    def store(self, api_version: str, kind: str) -> Store | None:
        return self.stores.get((api_version, kind))

    def deliver(self, work: Callable[[], None]) -> None:
        deliver_to(self.loop, work)

    def _store_of(self, kind: str) -> tuple[str, Store] | None:
        """The kind's apiVersion and store."""
        return next(((v, s) for (v, k), s in self.stores.items() if k == kind), None)

    def relisted(self, kind: str, scope: str | None, listed: Listed) -> None:
        found = self._store_of(kind)
        if found is None:
            return
        self._tell(kind, found[1].replace(scope, listed))
        awaited = [store for key, store in self.stores.items() if AWAITED.get(key, True)]
        if self.first_lists is not None and all(s.synced.issuperset(self.scopes) for s in awaited):
            self.first_lists.set()

    def changed(self, kind: str, type_: str, body: Mapping[str, Any]) -> None:
        found = self._store_of(kind)
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        if found is None or not self.accepts(namespace):
            return
        store, version = found[1], str(meta.get("resourceVersion", ""))
        if type_ == "DELETED":
            removed = store.remove(namespace, name, version)
            if removed is not None:
                self._tell(kind, [(namespace, removed.labels)])
            return
        if not store.is_news(namespace, name, version):
            return  # most often the echo of our own write, whose answer made the copy: not made twice
        copy = Copy.of(body)
        store.put(namespace, name, copy)
        self._tell(kind, [(namespace, copy.labels)])

    def written(self, body: Any) -> None:
        """What the apiserver answered to our own write: the copy is at least that new, at once."""
        if not isinstance(body, Mapping):
            return
        store = self.store(str(body.get("apiVersion")), str(body.get("kind")))
        meta = body.get("metadata") or {}
        if store is not None and meta.get("namespace") and meta.get("name"):
            store.put(meta["namespace"], meta["name"], Copy.of(body))

    def _tell(self, kind: str, changed: list[Changed]) -> None:
        for namespace, labels in changed:
            for listener in self.listeners:
                try:
                    listener(kind, namespace, labels)
                except Exception:
                    log.exception("a listener of %s changes failed", kind)


CHILDREN = Children()
