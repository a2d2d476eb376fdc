"""``driftscope status`` on a broker that has just started: the offsets request is answered with
a retriable coordinator error for a few seconds. The lag query retries such errors within its
window and gives up at once on any other (pure logic, a stand-in admin client; the real broker
path is in tests/integration/test_status_cli.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError

from driftscope_llm.services.bus.kafka import _group_offsets


class Admin:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def list_group_offsets(self, groups: list[str]) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {g: {} for g in groups}


def test_retriable_coordinator_errors_are_waited_out() -> None:
    admin = Admin([CoordinatorNotAvailableError(), CoordinatorNotAvailableError()])
    assert _group_offsets(admin, ["g"], wait_s=30.0) == {"g": {}}
    assert admin.calls == 3


def test_a_non_retriable_error_is_raised_at_once() -> None:
    admin = Admin([GroupAuthorizationFailedError()])
    with pytest.raises(GroupAuthorizationFailedError):
        _group_offsets(admin, ["g"], wait_s=30.0)
    assert admin.calls == 1


def test_the_window_ends_the_wait() -> None:
    admin = Admin([CoordinatorNotAvailableError()] * 100)
    with pytest.raises(CoordinatorNotAvailableError):
        _group_offsets(admin, ["g"], wait_s=0.0)
    assert admin.calls == 1
