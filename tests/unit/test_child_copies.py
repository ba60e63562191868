"""The operator's copies of its children: what a read gets, and which changes start a reconcile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from llmops.handlers.streams import accepts, scopes
from llmops.kube import read
from llmops.kube.children import (
    CHILDREN,
    FAILED_CREATE,
    KINDS,
    SILENCE_SECONDS,
    WATCH_SECONDS,
    Children,
    Copy,
    Store,
    Stream,
    listed_copies,
)

NS = "ns"


def pod(name: str, version: int, job: str = "b", owner: str = "m", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": str(version),
            "labels": {"job-name": job, "llmops.dev/llmmodel": owner, "controller-uid": f"uid-{job}"},
            "managedFields": [{"manager": "kubelet"}],
        },
        **extra,
    }


def page(*items: dict[str, Any], **metadata: str) -> bytes:
    """A list's answer as the apiserver sends it: the items without apiVersion and kind."""
    bare = [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in items]
    return json.dumps({"kind": "List", "metadata": {"resourceVersion": "9", **metadata}, "items": bare}).encode()


def listed(*bodies: dict[str, Any]) -> dict[tuple[str, str], Copy]:
    return listed_copies("v1", "Pod", page(*bodies))[0]


def store_of(*bodies: dict[str, Any]) -> Store:
    store = Store()
    store.replace(NS, listed(*bodies))
    return store


def test_a_copy_leaves_out_managed_fields_and_each_read_gets_its_own_object() -> None:
    store = store_of(pod("p", 1, status={"phase": "Running"}))
    copy = store.get(NS, "p")
    assert copy is not None
    first, second = copy.body(), copy.body()
    assert "managedFields" not in first["metadata"]
    first["status"]["phase"] = "Failed"
    assert second["status"]["phase"] == "Running"


def test_a_copy_keeps_beside_its_body_only_the_labels_it_is_found_and_told_by() -> None:
    copy = Copy.of(pod("p", 1))
    assert copy.labels == {"job-name": "b", "llmops.dev/llmmodel": "m"}
    assert copy.label("job-name") == "b" and copy.label("controller-uid") is None
    assert copy.body()["metadata"]["labels"]["controller-uid"] == "uid-b"


def test_a_copy_is_compressed_against_the_first_of_its_kind_and_reads_back_whole() -> None:
    spec = {
        "containers": [
            {
                "name": "trainer",
                "image": "ghcr.io/llmops/trainer:1",
                "args": [f"--option-{i}={i * 7919}" for i in range(40)],
            }
        ]
    }
    kind = {"apiVersion": "example.test/v1", "kind": "Sample"}  # a kind no other test makes copies of
    Copy.of(pod("first", 1, spec=spec, **kind))
    later = pod("later", 2, spec=spec, status={"phase": "Running"}, **kind)
    copy = Copy.of(later)
    text = json.dumps(later, separators=(",", ":")).encode()
    assert len(copy.packed) * 4 < len(text)  # the text it shares with the first pod costs next to nothing
    del later["metadata"]["managedFields"]
    assert copy.body() == later


def test_a_late_event_does_not_undo_a_newer_copy() -> None:
    store = store_of(pod("p", 5))
    assert not store.put(NS, "p", Copy.of(pod("p", 4)))
    assert store.put(NS, "p", Copy.of(pod("p", 6)))
    assert store.remove(NS, "p", "5") is None  # the deletion of an earlier object of that name
    assert store.remove(NS, "p", "7") is not None
    assert store.get(NS, "p") is None


def test_a_selection_by_labels_finds_exactly_the_objects_that_carry_them() -> None:
    store = store_of(pod("a", 1, job="b1"), pod("b", 2, job="b2"), pod("c", 3, job="b1", owner="other"))
    found = store.select(NS, {"job-name": "b1", "llmops.dev/llmmodel": "m"})
    assert [c.body()["metadata"]["name"] for c in found or []] == ["a"]
    assert store.select(NS, {"app.kubernetes.io/part-of": "llmops"}) is None  # not a label it keeps an index of
    assert store.select(NS, {"job-name": "b1", "controller-uid": "u"}) is None  # not a label a copy keeps
    store.put(NS, "a", Copy.of(pod("a", 4, job="b3")))
    assert store.select(NS, {"job-name": "b1"}) == [store.get(NS, "c")]
    store.remove(NS, "c", "5")
    assert store.select(NS, {"job-name": "b1"}) == []
    assert store.by_label == {(NS, "job-name"): {"b2": ["b"], "b3": ["a"]}}  # only what was selected by
    store.remove(NS, "a", "5")
    store.remove(NS, "b", "5")
    assert store.by_label == {}


def test_the_first_list_reports_nothing_a_relist_reports_what_changed_meanwhile() -> None:
    store = Store()
    assert not store.knows(NS)
    assert store.replace(NS, listed(pod("a", 1), pod("b", 1, owner="n"))) == []
    assert store.knows(NS) and not store.knows("other")
    changed = store.replace(NS, listed(pod("a", 2), pod("c", 3, owner="o")))  # a changed, b deleted, c created
    assert sorted(labels["llmops.dev/llmmodel"] for _, labels in changed) == ["m", "n", "o"]
    assert store.get(NS, "b") is None


def test_a_cluster_wide_list_knows_every_namespace() -> None:
    store = Store()
    store.replace(None, listed(pod("a", 1)))
    assert store.knows("anywhere")


@pytest.fixture
def children() -> Iterator[tuple[Children, list[tuple[str, str, str]]]]:
    told: list[tuple[str, str, str]] = []
    kept = Children()

    def listener(kind: str, namespace: str, labels: Mapping[str, str]) -> None:
        told.append((kind, namespace, labels["llmops.dev/llmmodel"]))

    kept.listen(listener)
    kept.stores[("v1", "Pod")] = Store()
    kept.relisted("Pod", NS, listed(pod("a", 1)))
    yield kept, told


def test_an_event_is_told_once_and_our_own_write_is_not_news(children: tuple[Children, Any]) -> None:
    kept, told = children
    kept.changed("Pod", "MODIFIED", pod("a", 2))
    kept.changed("Pod", "MODIFIED", pod("a", 2))  # the same version again (a resumed watch)
    assert told == [("Pod", NS, "m")]
    kept.written(pod("w", 7, owner="w"))  # the answer to our apply: kept at once, told to no one
    store = kept.store("v1", "Pod")
    assert store is not None
    answered = store.get(NS, "w")
    kept.changed("Pod", "ADDED", pod("w", 7, owner="w"))
    assert told == [("Pod", NS, "m")]
    assert answered is not None and store.get(NS, "w") is answered  # its echo makes no copy of its own
    kept.changed("Pod", "DELETED", pod("w", 8, owner="w"))
    assert told[-1] == ("Pod", NS, "w")


def test_a_listed_copy_names_its_kind_and_equals_a_watched_one() -> None:
    copies, metadata = listed_copies("v1", "Pod", page(pod("l", 3), pod("k", 4), **{"continue": "next"}))
    copy = copies[(NS, "l")]
    assert (copy.body()["apiVersion"], copy.body()["kind"]) == ("v1", "Pod")
    assert copy.body() == Copy.of(pod("l", 3)).body()
    assert copies[(NS, "k")].resource_version == "4"
    assert metadata == {"resourceVersion": "9", "continue": "next"}


def test_objects_outside_the_watched_namespaces_are_not_kept(children: tuple[Children, Any]) -> None:
    kept, told = children
    kept.accepts = lambda namespace: namespace == "elsewhere"
    kept.changed("Pod", "MODIFIED", pod("a", 2))
    assert told == []
    assert listed_copies("v1", "Pod", page(pod("a", 3)), kept.accepts)[0] == {}


def test_streams_per_named_namespace_else_one_for_the_cluster_filtered_as_kopf_matches() -> None:
    assert scopes([]) == [None]
    assert scopes(["b", "a"]) == ["a", "b"]
    assert scopes(["a", "test-*"]) == [None]
    assert scopes(["a, !b"]) == [None]
    assert accepts(["test-*, !test-skip"], "test-1")
    assert not accepts(["test-*, !test-skip"], "test-skip")
    assert accepts([], "anything")


@pytest.fixture
def kept_pods(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """The process-wide copies hold one namespace's pods; the apiserver answers with a marker."""
    asked: list[tuple[Any, ...]] = []
    monkeypatch.setattr(CHILDREN, "stores", {("v1", "Pod"): store_of(pod("a", 1))})

    async def call(fn: Any, *args: Any) -> Any:
        asked.append(args)
        return [] if fn is read._list else None

    monkeypatch.setattr(read, "call", call)
    yield asked


def test_a_cached_read_uses_the_copies_where_they_are_complete(kept_pods: list[tuple[Any, ...]]) -> None:
    async def reads() -> None:
        assert (await read.get("v1", "Pod", NS, "a", cached=True) or {})["metadata"]["name"] == "a"
        assert await read.get("v1", "Pod", NS, "gone", cached=True) is None
        assert len(await read.list_("v1", "Pod", NS, "job-name=b", cached=True)) == 1
        assert kept_pods == []
        await read.get("v1", "Pod", NS, "a")  # not asked for the copy
        await read.get("v1", "Pod", "not-listed-yet", "a", cached=True)
        await read.list_("v1", "Pod", NS, "job-name in (b)", cached=True)  # not a selector of equalities
        await read.get("apps/v1", "Deployment", NS, "d", cached=True)  # a kind without copies

    asyncio.run(reads())
    assert len(kept_pods) == 4


def test_an_ended_jobs_pods_come_from_the_apiserver(kept_pods: list[tuple[Any, ...]]) -> None:
    job = {"metadata": {"name": "b", "namespace": NS}, "status": {}}
    ended = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}

    async def reads() -> None:
        assert len(await read.job_pods(job)) == 1
        assert await read.job_pods(ended) == []

    asyncio.run(reads())
    assert kept_pods == [("v1", "Pod", NS, "job-name=b", "")]


def test_reads_wait_for_the_first_lists_of_every_kind_but_not_for_ever() -> None:
    async def start() -> None:
        kept = Children()
        kept.stores = {("v1", "Pod"): Store(), ("batch/v1", "Job"): Store()}
        kept.scopes, kept.first_lists = [NS], asyncio.Event()
        waiting = asyncio.create_task(kept.listed(timeout=10))
        kept.relisted("Pod", NS, listed(pod("a", 1)))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await kept.listed(timeout=0.01)  # a kind that cannot be listed holds no one for long
        kept.relisted("Job", NS, {})
        await asyncio.wait_for(waiting, 1)

    asyncio.run(start())


def test_reads_do_not_wait_for_the_first_list_of_events() -> None:
    async def start() -> None:
        kept = Children()
        kept.stores = {("v1", "Pod"): Store(), ("v1", "Event"): Store()}
        kept.scopes, kept.first_lists = [NS], asyncio.Event()
        kept.relisted("Pod", NS, listed(pod("a", 1)))
        await asyncio.wait_for(kept.listed(timeout=10), 1)

    asyncio.run(start())


def failed_create(name: str, job: str, version: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": str(version)},
        "involvedObject": {"kind": "Job", "name": job, "namespace": NS},
        "reason": FAILED_CREATE,
        "type": "Warning",
        "message": 'pods "b-x" is forbidden: exceeded quota',
    }


def test_why_a_job_has_no_pods_is_read_from_the_copies_once_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, ...]] = []

    async def call(fn: Any, *args: Any) -> Any:
        asked.append(args)
        return []

    monkeypatch.setattr(read, "call", call)
    events = Store()
    monkeypatch.setattr(CHILDREN, "stores", {("v1", "Event"): events})

    async def reads() -> None:
        assert await read.creation_failures(NS, "b") == []  # not listed yet: the apiserver answers
        answer = page(failed_create("e1", "b"), failed_create("e2", "other"))
        events.replace(NS, listed_copies("v1", "Event", answer)[0])
        found = await read.creation_failures(NS, "b")
        assert [e["metadata"]["name"] for e in found] == ["e1"]

    asyncio.run(reads())
    assert asked == [("v1", "Event", NS, "", f"involvedObject.kind=Job,involvedObject.name=b,reason={FAILED_CREATE}")]


def test_events_are_chosen_by_fields_and_children_by_our_labels() -> None:
    kept = Children()
    kept.selector = "app.kubernetes.io/managed-by=llmops-operator"
    streams = {k.kind: Stream(kept, k, NS) for k in KINDS}
    assert streams["Event"].selectors == {"field_selector": f"involvedObject.kind=Job,reason={FAILED_CREATE}"}
    assert streams["Pod"].selectors == {"label_selector": kept.selector}


def test_watches_without_bookmarks_end_before_their_silence_would_count_as_a_failure() -> None:
    kept = Children()
    streams = {k.kind: Stream(kept, k, NS) for k in KINDS}
    assert streams["Event"].watch_seconds < SILENCE_SECONDS
    assert {s.watch_seconds for kind, s in streams.items() if kind != "Event"} == {WATCH_SECONDS}
