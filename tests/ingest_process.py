"""``driftscope ingest`` as a user runs it, as a subprocess on the real stack's Kafka (shared by
the integration tests of the OTLP receiver and of the official OpenAI instrumentation)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.collector_harness import free_port
from tests.stack import CLI_MODULE

REPO = Path(__file__).resolve().parents[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"driftscope ingest exited:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"driftscope ingest never listened:\n{log.read_text()}")


@contextmanager
def ingest_subprocess(kafka_bootstrap: str, topic: str,
                      tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Run ``driftscope ingest`` producing to ``topic`` (dead letters to ``topic.dlq``) on a free
    port; yields (port, log file). On exit it is terminated and must have exited 0."""
    port = free_port()
    env = {**os.environ, "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DRIFTSCOPE_TOPICS__OUTPUTS": topic, "DRIFTSCOPE_TOPICS__DEAD_LETTER": f"{topic}.dlq",
           "DRIFTSCOPE_METRICS__PORT": str(free_port()),
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", CLI_MODULE, "ingest", "--port", str(port)],
                                env=env, cwd=REPO, stdout=out, stderr=out)
    try:
        wait_port(port, proc, log)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
