"""Session fixtures on the real service stack, and the ``gpu`` marker.

Tests that take any stack fixture run against real Kafka, Redis, Prometheus and Alertmanager on
loopback. The ``stack`` fixture starts (``deploy/local/stack up``) whichever component does not
answer, so ``pytest`` alone works, and stops at the end exactly what it started. When the stack
cannot be started, every test that needs it fails with the stack's output; none is skipped.
Tests under ``tests/integration`` get the ``integration`` marker automatically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import settings as hypothesis_settings

from tests.stack import Prometheus, StackError, StackInfo, ensure_stack, stop_stack

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"

# Hypothesis: derandomized (each test draws the same examples on every run and machine, from a
# seed fixed by the test itself) and no example database carried between runs, so `make test`
# passes or fails the same way twice; an example it once found is kept as an explicit @example.
# HYPOTHESIS_PROFILE=explore draws fresh examples, to look for new failures.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, database=None,
                                     print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
REDIS_DB_COUNTER = "driftscope:tests:next-db"


def pytest_configure(config: pytest.Config) -> None:
    # Human output is wrapped by rich at the terminal width, which it reads from COLUMNS (80 when
    # unset and not a terminal). The suite sets it to 80 for itself and every subprocess, so the
    # machine's COLUMNS (40 in a tmux pane, 200 in a wide CI log) never changes what a test
    # sees; a test of another width sets its own (tests/README.md, "Human output").
    os.environ["COLUMNS"] = "80"
    os.environ.pop("LINES", None)
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text, deprecated
    # since Python 3.11; with warnings as errors every import of kafka would fail. Silence that
    # call from that module only, and the open_text warning read_text itself raises inside
    # importlib (any other caller of read_text still gets its own read_text warning). kafka is
    # imported lazily below, so these filters are in place first.
    for line in (
        "ignore:read_text is deprecated:DeprecationWarning:kafka.protocol.schemas.load_json",
        "ignore:open_text is deprecated:DeprecationWarning:importlib.resources._legacy",
    ):
        config.addinivalue_line("filterwarnings", line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None:
        return
    try:
        import torch
    except ImportError:
        pytest.skip("gpu test: torch is not installed (extra 'attribution')")
    if not torch.cuda.is_available():
        pytest.skip("gpu test: no CUDA device")


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """Addresses of the running stack; starts what is missing, stops only that afterwards."""
    try:
        info, started = ensure_stack()
    except StackError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"the service stack is not available:\n{problem}", pytrace=False)
    yield info
    stop_stack(started)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackInfo) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="driftscope-tests")
    yield admin
    admin.close()


@pytest.fixture
def new_topic(kafka_admin: KafkaAdminClient) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=1, prefix="test")`` creates a uniquely named topic, ready
    to use (every partition has a leader), and deletes it after the test."""
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        spec = {name: {"num_partitions": partitions, "replication_factor": 1}}
        kafka_admin.create_topics(spec, wait_for_metadata=True)
        created.append(name)
        return name

    yield make
    if created:
        kafka_admin.delete_topics(created)


@pytest.fixture
def redis_url(stack: StackInfo) -> Iterator[str]:
    """URL of a Redis database of this test's own, empty at start and flushed after.

    Databases 1..N-1 are handed out round-robin by a counter in database 0, so concurrent
    test processes on the same Redis do not share one.
    """
    import redis

    base_url = stack.redis_url.rsplit("/", 1)[0]
    with redis.Redis.from_url(f"{base_url}/0") as base:
        count = int(base.config_get("databases")["databases"])
        db = 1 + (int(base.incr(REDIS_DB_COUNTER)) - 1) % (count - 1)
    url = f"{base_url}/{db}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    yield url
    with redis.Redis.from_url(url) as client:
        client.flushdb()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A ``redis.Redis`` on this test's own database (see ``redis_url``)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prometheus(stack: StackInfo) -> Iterator[Prometheus]:
    """Helper on the stack's Prometheus; targets this test registers are removed after it."""
    helper = Prometheus(stack.prometheus_url, stack.targets_dir, stack.rules_dir)
    yield helper
    helper.close()


@pytest.fixture(scope="session")
def alertmanager_url(stack: StackInfo) -> str:
    return stack.alertmanager_url
