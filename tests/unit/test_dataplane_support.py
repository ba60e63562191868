"""The pure parts of the rollout data-plane harness: route weights, backend choice, timings."""

from __future__ import annotations

import random

import pytest

from tests.support.loadgen import LoadReport, WeightChange, pick_backend, route_weights, share
from tests.support.prometheus import Target, first_rise, first_value, scrape_config


def route(*refs: dict[str, object]) -> dict[str, object]:
    return {"spec": {"rules": [{"backendRefs": list(refs)}, {"backendRefs": [{"name": "other", "weight": 5}]}]}}


def test_route_weights_read_the_first_rule_and_default_to_one() -> None:
    assert route_weights(route({"name": "stable"})) == {"stable": 1}
    assert route_weights(route({"name": "stable", "weight": 80}, {"name": "canary", "weight": 20})) == {
        "stable": 80,
        "canary": 20,
    }
    assert route_weights({"spec": {}}) == {}


def test_pick_backend_follows_the_weights() -> None:
    weights = {"stable": 80, "canary": 20}
    assert pick_backend(weights, 0.0) == "stable"
    assert pick_backend(weights, 0.79) == "stable"
    assert pick_backend(weights, 0.8) == "canary"
    assert pick_backend(weights, 0.999999) == "canary"
    assert pick_backend({"stable": 100, "canary": 0}, 0.999) == "stable"
    assert pick_backend({"stable": 0, "canary": 0}, 0.5) is None
    draws = random.Random(1)
    picks = [pick_backend(weights, draws.random()) for _ in range(10_000)]
    assert picks.count("canary") / len(picks) == pytest.approx(0.2, abs=0.02)


def test_share_of_a_backend() -> None:
    assert share({"stable": 1}, "stable") == 1.0
    assert share({"stable": 0, "canary": 100}, "stable") == 0.0
    assert share({"stable": 50, "canary": 50}, "canary") == 0.5
    assert share({}, "stable") == 0.0


def test_first_weights_counts_the_weights_in_force_at_the_start() -> None:
    report = LoadReport(
        requests=[],
        weights=[
            WeightChange(10.0, {"stable": 1}),
            WeightChange(20.0, {"stable": 80, "canary": 20}),
            WeightChange(30.0, {"stable": 100, "canary": 0}),
        ],
    )
    all_stable = lambda w: share(w, "stable") == 1.0  # noqa: E731
    assert report.first_weights(all_stable, after=12.0) == 12.0
    assert report.first_weights(all_stable, after=21.0) == 30.0
    assert report.first_weights(lambda w: share(w, "canary") == 1.0) is None


def test_prometheus_answers_and_the_first_rise_of_a_counter() -> None:
    assert first_value({"data": {"resultType": "scalar", "result": [1.0, "0.5"]}}) == 0.5
    assert first_value({"data": {"resultType": "vector", "result": [{"value": [1.0, "3"]}]}}) == 3.0
    assert first_value({"data": {"resultType": "vector", "result": []}}) is None
    samples = {"a": [(1.0, 0.0), (2.0, 0.0), (3.0, 2.0)], "b": [(1.5, 0.0), (2.5, 1.0)]}
    assert first_rise(samples) == 2.5
    assert first_rise({"a": [(1.0, 0.0)]}) is None


def test_scrape_config_labels_each_target_as_its_pods() -> None:
    config = scrape_config([Target("127.0.0.1:9000", {"namespace": "ns", "llmops_dev_llmmodel": "m"})])
    job = config["scrape_configs"][0]
    assert config["global"]["scrape_interval"] == "1s"
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9000"], "labels": {"namespace": "ns", "llmops_dev_llmmodel": "m"}}
    ]
