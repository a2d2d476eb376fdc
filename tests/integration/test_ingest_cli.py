"""``driftscope ingest`` start-up errors through the real app: one clear line and the exit code
scripts rely on, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from tests.stack import CLI_MODULE


def test_a_busy_port_is_a_usage_error_naming_the_fix(kafka_bootstrap: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DRIFTSCOPE_METRICS__PORT", "0")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["ingest", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--port" in result.output and "Traceback" not in result.output


def test_unreachable_kafka_is_a_service_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again: nothing listens there
    env = {**os.environ, "DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}",
           "DRIFTSCOPE_KAFKA__REQUEST_TIMEOUT_MS": "2000", "DRIFTSCOPE_METRICS__PORT": "0"}
    # a subprocess: kafka-python leaves a failed connection's sockets to the garbage collector
    proc = subprocess.run([sys.executable, "-m", CLI_MODULE, "ingest", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert f"kafka at 127.0.0.1:{dead}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTSCOPE_RECEIVER__PORT", "not-a-port")
    result = CliRunner().invoke(app, ["ingest"])
    assert result.exit_code == 2
    assert "receiver.port" in result.stderr and "Traceback" not in result.output
