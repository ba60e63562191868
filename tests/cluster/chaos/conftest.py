"""Fault-injection tests: a tally of what they did, printed at the end of the pytest run.

Tests take the ``chaos_tally`` fixture and count into it (``tally.kills += 1``) or record a
measured figure (``tally.figure("leader handover", "4.2 s")``); ``pytest_terminal_summary``
prints the tally, e.g. ``operator kills: 57``, so a run's numbers are in its output, and the
fuzzed-spec counts of test_fuzz_specs.py (``fuzzed specs: LLMModel=2000 ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.support.fuzz_specs import KIND_NAMES
from tests.support.fuzz_specs import TALLY as FUZZ_TALLY


@dataclass
class ChaosTally:
    kills: int = 0
    """SIGKILLs of operator processes, over every test of the run."""
    figures: list[tuple[str, str]] = field(default_factory=list)
    """(name, value) measured by the tests, in the order they were recorded."""

    def figure(self, name: str, value: str) -> None:
        self.figures.append((name, value))


TALLY = pytest.StashKey[ChaosTally]()


def tally_of(config: pytest.Config) -> ChaosTally:
    if TALLY not in config.stash:
        config.stash[TALLY] = ChaosTally()
    return config.stash[TALLY]


@pytest.fixture
def chaos_tally(request: pytest.FixtureRequest) -> ChaosTally:
    return tally_of(request.config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    fuzzed_specs_summary(terminalreporter)
    if TALLY not in config.stash:
        return
    tally = config.stash[TALLY]
    terminalreporter.section("chaos")
    terminalreporter.write_line(f"operator kills: {tally.kills}")
    for name, value in tally.figures:
        terminalreporter.write_line(f"{name}: {value}")


def fuzzed_specs_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = FUZZ_TALLY
    if not tally.sent:
        return
    terminalreporter.section("fuzzed specs")
    terminalreporter.write_line("fuzzed specs: " + " ".join(f"{k}={tally.sent[k]}" for k in KIND_NAMES))
    for kind in KIND_NAMES:
        if tally.sent[kind]:
            terminalreporter.write_line(f"  {kind}: {tally.summary(kind)}")
    if tally.created:
        created = " ".join(f"{k}={tally.created[k]}" for k in KIND_NAMES)
        terminalreporter.write_line(f"created with the operator running: {created}")
    terminalreporter.write_line(f"disagreements with the oracle: {tally.disagreements}")
