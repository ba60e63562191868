"""The reconcile loop shared by every kind: read -> observe -> plan -> apply -> status -> events.

The streams of our kinds and of their children (kube/resources.py, kube/children.py) deliver
events; this module turns them into level-triggered reconciles, one at a time per resource,
retried with back-off on error and re-run when a plan asks to look again. Nothing is stored on
the user's object except status: no annotations, no finalizers (and an earlier version's is
removed).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import pydantic

from ..api.common import API_VERSION, Condition, Resource
from ..kube import events, read, status
from ..kube.apply import ChildRejected, apply_all, patch_all
from ..kube.children import Copy, Kept, Listed
from ..kube.client import PRIORITY, Priority, PriorityGate, is_namespace_terminating
from ..kube.resources import RESOURCES
from ..metrics import RECONCILE_SECONDS, RECONCILES, WRITES
from ..plan.common import Event, Plan, set_condition
from . import peering, streams

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Resource)
MAX_BACKOFF = 300.0
CHILD_EVENTS_WINDOW = 1.0
"""Children change in bursts (a build pod is scheduled, runs and ends; its Job notes each step):
the parent is reconciled once, this many seconds after the first event of a burst, not once per
event. An event only starts the reconcile: nothing holds the event's body while the reconcile
waits its turn."""
RESYNCS_AT_ONCE = 4
"""Reconciles that only a resync timer started, in flight at once. A resync finds nothing new
almost always, so it waits for a slot, and a change a user made (a create, an edit, a child's
event) never queues behind a minute's worth of them for the apiserver and the CPU. With
thousands of resources the resyncs then stretch past their period instead of delaying changes."""
RECONCILES_AT_ONCE = 32
"""Reconciles in flight at once, every kind together; the others wait their turn by priority.
One in flight holds its resource, its children and its plan parsed, tens of KB: a burst of
2,000 creates held them all at once, and the process kept that peak as RSS for good. 32 are
twice the API requests in flight (kube/client.py), enough to keep those busy."""
RECONCILE_SLOTS_FOR_CHANGES = 8
"""Of those, the ones only a change may take: a create never waits behind follow-ups and resyncs."""
RESYNC_JITTER = 0.2
"""Each resync comes after a random 80-100% of the period: resources created together (a GitOps
sync, a restart's listing) do not stay in step and resync together every period."""


@dataclass
class Reconciler(Generic[R]):
    model: type[R]
    plan: Callable[[R, datetime], Awaitable[Plan]]
    """Gathers the observation (reads only) and calls the pure plan."""
    resync_seconds: float = 60.0
    """Every existing resource is reconciled at least this often, even without events."""
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _scheduled: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    _priority: dict[tuple[str, str], Priority] = field(default_factory=dict)
    """The priority of each pending timer's reconcile. RESYNC: the timer is a resync and nothing
    else, so it also waits for a resync slot."""
    _resync_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(RESYNCS_AT_ONCE))
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _queued: set[tuple[str, str]] = field(default_factory=set)
    """Resources with a reconcile waiting for the one that runs."""
    _seen: dict[tuple[str, str], Copy] = field(default_factory=dict)
    """The resource as its latest event showed it, kept until the next reconcile reads it."""
    _rejected: dict[tuple[str, str], int] = field(default_factory=dict)
    """The generation whose children the apiserver refused: not tried again until the spec changes."""

    @property
    def kind(self) -> str:
        return self.model.crd.kind

    async def reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        async with self._turn(key) as ours:
            if not ours:
                return
            if peering.paused():
                # Another replica leads (kopf's peering). Our streams and timers go on: hold the
                # reconcile, without reading or writing, until kopf resumes this replica
                # (`resumed` looks at it again then).
                self.schedule_resync(namespace, name)
                return
            started = time.monotonic()
            try:
                plan = await self._reconcile_once(namespace, name)
            except Exception as error:
                if is_namespace_terminating(error):
                    # Its namespace is being deleted, and it with it: nothing to create or retry.
                    log.info("%s %s/%s: its namespace is being deleted", self.kind, namespace, name)
                    self.forget(key)
                    return
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                # Back off, but never past the resync period: a failing resource is looked at no
                # less often than a healthy one, so it recovers within one period of the fault.
                delay = min(MAX_BACKOFF, self.resync_seconds, 2.0**failures)
                log.exception("reconcile of %s %s/%s failed; retrying in %.0fs", self.kind, namespace, name, delay)
                RECONCILES.labels(self.kind, "error").inc()
                self.schedule(namespace, name, delay)
                return
            finally:
                RECONCILE_SECONDS.labels(self.kind).observe(time.monotonic() - started)
            self._failures.pop(key, None)
            RECONCILES.labels(self.kind, "ok").inc()
            if plan is None:
                self.forget(key)  # deleted, or refused until its spec changes: nothing to revisit
            else:
                # The resync is a timer of our own, not a kopf timer: those put a finalizer on the
                # resource, and a finalizer would block deletion whenever the operator is down.
                soon = plan.requeue_after
                if soon is None or soon >= self.resync_seconds:
                    self.schedule_resync(namespace, name)
                else:
                    self.schedule(namespace, name, soon)

    async def _resync(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        async with self._resync_slots:
            lock = self._locks.get(key)
            if key in self._scheduled or (lock is not None and lock.locked()):
                return  # while it waited, a change set or started a reconcile, which sets the next resync
            await self.reconcile(namespace, name)

    @asynccontextmanager
    async def _turn(self, key: tuple[str, str]) -> AsyncIterator[bool]:
        """The resource's lock and a reconcile slot; False at once when another call already waits for them.

        That call reads the resource after the running reconcile ends, so it sees whatever
        this one would: a burst of events (a re-list, a Job's pods) costs one reconcile, not one each.
        """
        if key in self._queued:
            yield False
            return
        self._queued.add(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with AsyncExitStack() as held:
                try:
                    await streams.listed()  # after a start: the copies answer the reads, not a GET each
                    await lock.acquire()
                    held.callback(lock.release)
                    await held.enter_async_context(_reconcile_slots().slot(PRIORITY.get()))
                finally:
                    self._queued.discard(key)
                yield True
        finally:
            # A lock only while the resource is reconciled or waited for: thousands of resources at
            # rest would each keep one (with the queue of waiters it grew), about 1 KB apiece.
            if key not in self._queued and not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def _reconcile_once(self, namespace: str, name: str) -> Plan | None:
        with read.one_look():
            return await self._observe_plan_apply(namespace, name)

    async def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The resource: as its latest event showed it, unless a status write of ours came since.

        A reconcile an event started would otherwise read again what that event just brought:
        one GET more on every create and edit. The event is used once; a retry, a resync or a
        child's event reads the apiserver, and so does anything after our own last write, so no
        reconcile decides from a status older than the one it wrote itself.
        """
        seen = self._seen.pop((namespace, name), None)
        if seen is not None and not status.written_since(self.model.crd.plural, namespace, name, seen.resource_version):
            return seen.body()
        return await read.get(API_VERSION, self.kind, namespace, name)

    async def _observe_plan_apply(self, namespace: str, name: str) -> Plan | None:
        body = await self._read(namespace, name)
        plural = self.model.crd.plural
        if body is not None and await status.drop_legacy_finalizer(plural, namespace, name, body["metadata"]):
            WRITES.labels(self.kind, "any").inc()
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._rejected.pop((namespace, name), None)
            return None  # children go with it through their owner references
        observed_status = body.get("status") or {}
        now = datetime.now(UTC)
        key, generation = (namespace, name), int(body["metadata"].get("generation", 0))
        if self._rejected.get(key) == generation:
            return None  # its children were refused; the same spec would be refused again
        self._rejected.pop(key, None)
        try:
            resource = self.model.model_validate(body)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            await self._refuse(body, "InvalidSpec", f"invalid spec at {where}: {first['msg']}", now)
            return None
        plan = await self.plan(resource, now)
        try:
            writes = await apply_all(plan.children)
            writes += await patch_all(plan.patches)
        except ChildRejected as error:
            # The apiserver refused a child built from this spec (a value the CRD lets through
            # but a Pod, Service or label does not): retrying cannot help, a new spec can.
            log.warning("%s %s/%s: %s", self.kind, namespace, name, error)
            self._rejected[key] = generation
            await self._refuse(body, "ChildRejected", str(error), now)
            return None
        writes += await status.write_status(resource, observed_status, plan.status)
        WRITES.labels(self.kind, "any").inc(writes)
        await events.emit(resource, plan.events)
        return plan

    async def _refuse(self, body: dict[str, Any], reason: str, message: str, now: datetime) -> None:
        """A spec the apiserver accepted but the operator cannot use: say so once, do not retry."""
        # Only metadata is needed to address the status write and the event.
        shell = self.model.model_construct(kind=self.kind, metadata=body["metadata"])
        old = body.get("status") or {}
        conditions = [c for c in old.get("conditions", []) if isinstance(c, dict)]
        parsed = [Condition.model_validate(c) for c in conditions]
        before = {c.type: (c.status, c.reason) for c in parsed}
        updated = set_condition(parsed, "Degraded", "True", reason, message, now, shell.generation)
        new = {**old, "conditions": [c.wire() for c in updated], "observedGeneration": shell.generation}
        await status.write_status(shell, old, new)
        if before.get("Degraded") != ("True", reason):
            await events.emit(shell, [Event("Warning", reason, message)])

    def forget(self, key: tuple[str, str]) -> None:
        """Drop what is kept per resource, so memory does not grow with every resource ever seen.

        Not its lock: the reconcile that forgets holds it, and another may wait for it; a call
        coming after would make a new lock and run beside that one. `_turn` drops the lock once
        no one holds it or waits for it.
        """
        pending = self._scheduled.pop(key, None)
        if pending is not None:
            pending.cancel()
        self._priority.pop(key, None)
        self._seen.pop(key, None)
        self._failures.pop(key, None)
        status.forget(self.model.crd.plural, *key)

    def resource_changed(self, type_: str, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """An event of the resource itself."""
        if type_ == "DELETED":
            self._seen.pop((namespace, name), None)
            return
        version = (body.get("metadata") or {}).get("resourceVersion")
        if status.is_own_write(self.model.crd.plural, namespace, name, version):
            # Our own status write, and nothing else since: the reconcile that wrote it already
            # decided from everything this event shows. Each write would otherwise cost one more
            # reconcile (every read of it) that changes nothing.
            return
        self._seen[(namespace, name)] = Copy.of(body)
        self.schedule(namespace, name, 0, Priority.CHANGE if unobserved(body) else Priority.FOLLOW_UP)

    def relisted(self, listed: Listed) -> None:
        """Every resource of a scope, listed by our own stream (a start, a resume of it, a re-list)."""
        for (namespace, name), copy in listed.items():
            self._seen[(namespace, name)] = copy
            # The copy is parsed once more here, once per listing: a change waiting since the
            # operator stopped goes before the look at every unchanged resource.
            priority = Priority.CHANGE if unobserved(copy.body()) else Priority.FOLLOW_UP
            self.schedule(namespace, name, 0, priority)

    def resumed(self) -> None:
        """This replica leads again: what waited while it did not (every timer) is looked at now."""
        for namespace, name in list(self._scheduled):
            self.schedule(namespace, name, 0)

    def child_changed(self, namespace: str, name: str) -> None:
        """An event of one of the resource's children: reconcile it once the burst is over."""
        self.schedule(namespace, name, CHILD_EVENTS_WINDOW)

    def schedule(self, namespace: str, name: str, delay: float, priority: Priority = Priority.FOLLOW_UP) -> None:
        """Reconcile within `delay` seconds: one pending timer per resource, the one due first.

        Every reconcile reads everything afresh, so one due earlier serves a later one too, at the
        more urgent of their priorities; and a resync set when a reconcile ends must not push back
        one that an event set meanwhile.
        """
        self._set_timer(namespace, name, delay, priority)

    def schedule_resync(self, namespace: str, name: str) -> None:
        """The periodic look, in case anything was missed: after 80-100% of the period, in a resync slot."""
        delay = self.resync_seconds * (1.0 - RESYNC_JITTER * random.random())
        self._set_timer(namespace, name, delay, Priority.RESYNC)

    def _set_timer(self, namespace: str, name: str, delay: float, priority: Priority) -> None:
        key = (namespace, name)
        loop = asyncio.get_running_loop()
        pending = self._scheduled.get(key)
        if pending is not None:
            priority = min(priority, self._priority.get(key, priority))
            if pending.when() <= loop.time() + delay:
                self._priority[key] = priority
                return
            pending.cancel()

        # A bound method and its arguments, not a closure, in one empty context for all timers:
        # one timer is kept per resource.
        handle = loop.call_later(delay, self._start, namespace, name, context=_TIMERS_CONTEXT)
        self._scheduled[key] = handle
        self._priority[key] = priority

    def _start(self, namespace: str, name: str) -> None:
        """A timer is due (a cancelled one never is): start its reconcile, or its resync."""
        key = (namespace, name)
        self._scheduled.pop(key, None)
        priority = self._priority.pop(key, Priority.FOLLOW_UP)
        run = self._resync if priority is Priority.RESYNC else self.reconcile
        # A context of its own, holding only the priority of the reconcile's requests: a timer
        # keeps the context it is set in, and one set in a listener's task (or in a reconcile
        # such a timer started, and so on) would keep whatever that context held for as long as
        # the resource exists.
        context = contextvars.Context()
        context.run(PRIORITY.set, priority)
        # Keep a reference: the event loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(run(namespace, name), context=context)
        self._running.add(task)
        task.add_done_callback(self._running.discard)


_TIMERS_CONTEXT = contextvars.Context()
"""The context the timers' callbacks (`Reconciler._start`) run in: empty, and left so, as each
starts its reconcile in a context of its own. The loop runs one callback at a time, so one
context serves them all, not one more object per resource."""


@functools.cache
def _reconcile_slots() -> PriorityGate:
    return PriorityGate(RECONCILES_AT_ONCE, reserved=RECONCILE_SLOTS_FOR_CHANGES)


def unobserved(body: Mapping[str, Any]) -> bool:
    """A generation the operator has not reconciled yet: just created, or its spec just changed."""
    generation = (body.get("metadata") or {}).get("generation")
    return generation != (body.get("status") or {}).get("observedGeneration")


EventListener = Callable[..., Awaitable[None]]
_EVENT_LISTENERS: dict[str, list[EventListener]] = {}
_TELLING: set[asyncio.Task[None]] = set()


async def tell_listeners(plural: str, **kwargs: Any) -> None:
    """Call the kind's listeners in turn (in the order they were registered), each failure logged
    and the next listener called. After a start, not before the first lists: listeners look up
    the indexes (what one misses meanwhile, the first reconcile of each listed object sees)."""
    await streams.listed()
    for listener in _EVENT_LISTENERS.get(plural, []):
        try:
            await listener(**kwargs)
        except Exception:
            log.exception("%s failed on an event of %s %s", listener.__qualname__, plural, kwargs.get("name"))


def on_event(plural: str) -> Callable[[EventListener], EventListener]:
    """Listen to the events of one of our kinds (not its listings), called with the keyword
    arguments type, namespace, name and body."""

    def register(listener: EventListener) -> EventListener:
        _EVENT_LISTENERS.setdefault(plural, []).append(listener)
        return listener

    return register


class Indexed(Protocol):
    """What keeps a kind's objects from its stream besides the reconciler (handlers/indexes.py)."""

    def relisted(self, scope: str | None, listed: Listed) -> None: ...

    def changed(self, type_: str, body: Mapping[str, Any]) -> None: ...


def watch(reconciler: Reconciler[Any], plural: str, resync_seconds: float, index: Indexed | None = None) -> None:
    """Have the resource's stream and its children's reconcile it; set the resync period.

    Children are found through the label llmops.dev/<kind>=<name> that every child carries. The
    stream lists every resource when it starts, so each one gets a first reconcile and, from then
    on, its own resync timer. An index is told of each list and event before the reconciler.
    """
    reconciler.resync_seconds = resync_seconds
    owner_label = f"llmops.dev/{reconciler.kind.lower()}"

    def relisted(scope: str | None, listed: Listed) -> None:
        if index is not None:
            index.relisted(scope, listed)
        reconciler.relisted(listed)

    def changed(type_: str, body: Mapping[str, Any]) -> None:
        if index is not None:
            index.changed(type_, body)
        streamed_event(reconciler, plural, type_, body)

    def child_changed(kind: str, namespace: str, labels: Mapping[str, str]) -> None:
        if owner_label in labels:
            reconciler.child_changed(namespace, labels[owner_label])

    RESOURCES.handle(Kept(API_VERSION, reconciler.kind), relisted, changed)
    peering.when_resumed(reconciler.resumed)
    streams.listen(child_changed)


def streamed_event(reconciler: Reconciler[Any], plural: str, type_: str, body: Mapping[str, Any]) -> None:
    """An event of one of our kinds, on the event loop in the order the stream saw them.

    The reconciler is told at once, so that it keeps the latest body; the kind's listeners (other
    kinds' handlers, which may wait for reconciles of their own) in a task of the event's own.
    """
    metadata = body["metadata"]
    namespace, name = metadata.get("namespace") or "", metadata["name"]
    if not namespace:
        return
    reconciler.resource_changed(type_, namespace, name, body)
    if _EVENT_LISTENERS.get(plural):
        task = asyncio.create_task(tell_listeners(plural, type=type_, namespace=namespace, name=name, body=body))
        _TELLING.add(task)
        task.add_done_callback(_TELLING.discard)
