"""The fault suite's report: a `fault_report` fixture that opens one record per scenario,
the test's outcome as the record's result, and the markdown written when the session ends
(only when a scenario ran)."""

from __future__ import annotations

import logging
import shlex

import fault_report as report
import pytest

log = logging.getLogger(__name__)

_SCENARIOS = pytest.StashKey[list]()
_OF_ITEM = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SCENARIOS] = []


@pytest.fixture
def fault_report(request: pytest.FixtureRequest):
    """`fault_report(number, injected)` -> a report.Scenario to fill in; the test's outcome
    decides its result."""
    def open_scenario(number: int, injected: str) -> report.Scenario:
        scenario = report.Scenario(number, injected)
        request.config.stash[_SCENARIOS].append(scenario)
        request.node.stash.setdefault(_OF_ITEM, []).append(scenario)
        return scenario

    return open_scenario


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    result = yield
    if result.when == "call" or result.failed:
        for scenario in item.stash.get(_OF_ITEM, []):
            scenario.finish(result.passed)
    return result


def pytest_sessionfinish(session: pytest.Session) -> None:
    scenarios = session.config.stash.get(_SCENARIOS, [])
    if not scenarios:
        return
    command = shlex.join(["python", "-m", "pytest", *session.config.invocation_params.args])
    path = report.write(scenarios, command)
    log.info("fault report written to %s", path)
    session.config.get_terminal_writer().line(f"fault report: {path}")
