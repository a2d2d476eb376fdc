"""Test-side view of the real service stack (``deploy/local/stack``).

``ensure_stack`` asks the stack script which components answer, starts the missing ones and says
which it started, so the session tears down only those. ``Prometheus`` is the small helper the
``prometheus`` fixture hands to tests: register a scrape target through file_sd, query PromQL over
the HTTP API, wait for a query to return something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Modules the tests run with ``python -m`` (the console script's and the alert receiver's).
CLI_MODULE = "driftscope_llm.services.cli.main"
ALERTS_MODULE = "driftscope_llm.services.alerts"

__all__ = [
    "STACK_SCRIPT",
    "Prometheus",
    "StackError",
    "StackInfo",
    "ensure_stack",
    "http_json",
    "run_stack",
    "stop_stack",
]

REPO = Path(__file__).resolve().parents[1]
STACK_SCRIPT = REPO / "deploy" / "local" / "stack"
HTTP_TIMEOUT = 5.0


class StackError(RuntimeError):
    """The stack could not be started or does not answer; the message carries its output."""


@dataclass(frozen=True)
class StackInfo:
    """Addresses of the running stack, from ``stack status --json`` (the same values `up` writes
    to ``stack.env``)."""

    env: Mapping[str, str]

    @property
    def kafka_bootstrap(self) -> str:
        return self.env["DRIFTSCOPE_KAFKA_BOOTSTRAP"]

    @property
    def redis_url(self) -> str:
        return self.env["DRIFTSCOPE_REDIS_URL"]

    @property
    def prometheus_url(self) -> str:
        return self.env["DRIFTSCOPE_PROMETHEUS_URL"]

    @property
    def alertmanager_url(self) -> str:
        return self.env["DRIFTSCOPE_ALERTMANAGER_URL"]

    @property
    def targets_dir(self) -> Path:
        return Path(self.env["DRIFTSCOPE_PROMETHEUS_TARGETS_DIR"])

    @property
    def rules_dir(self) -> Path:
        return Path(self.env["DRIFTSCOPE_PROMETHEUS_RULES_DIR"])


def run_stack(
    *args: str, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``deploy/local/stack ARGS`` (stdlib-only script) with this interpreter; ``env``
    entries are added to this process's environment."""
    return subprocess.run(
        [sys.executable, str(STACK_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _status() -> dict[str, Any]:
    done = run_stack("status", "--json", timeout=60)
    try:
        status: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise StackError(f"stack status failed:\n{done.stdout}{done.stderr}") from exc
    return status


def ensure_stack() -> tuple[StackInfo, list[str]]:
    """The stack's addresses, after starting whatever does not answer; also the names of the
    components started here (hand them to ``stop_stack`` at the end of the session)."""
    down = [c["name"] for c in _status()["components"] if not c["up"]]
    if down:
        done = run_stack("up", *down)
        if done.returncode != 0:
            raise StackError(
                f"`deploy/local/stack up {' '.join(down)}` failed (exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )
    status = _status()
    still = [f"{c['name']} at {c['address']}" for c in status["components"] if not c["up"]]
    if still:
        raise StackError(f"stack components do not answer: {', '.join(still)}")
    return StackInfo(status["env"]), down


def stop_stack(names: list[str]) -> None:
    if names:
        done = run_stack("down", *names, timeout=120)
        if done.returncode != 0:
            raise StackError(f"stack down failed:\n{done.stdout}{done.stderr}")


def http_json(url: str, data: Any = None, method: str | None = None) -> Any:
    """GET (or, with ``data``, POST as JSON) and decode the JSON answer."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
        text = resp.read()
    return json.loads(text) if text else None


@dataclass
class Prometheus:
    """The stack's Prometheus, seen from one test.

    ``register_target`` writes one file_sd JSON file per call into the stack's targets directory
    (Prometheus job ``driftscope`` reads every ``*.json`` there), ``add_rules`` one rule file into
    its rules directory; each is written to a temporary name and renamed so Prometheus never
    reads half a file, and ``close`` removes this helper's files.
    """

    url: str
    targets_dir: Path
    rules_dir: Path
    _files: list[Path] = field(default_factory=list)

    def register_target(self, host_port: str, labels: Mapping[str, str] | None = None) -> Path:
        group = [{"targets": [host_port], "labels": dict(labels or {})}]
        path = self.targets_dir / f"test-{uuid.uuid4().hex}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(group))
        os.replace(tmp, path)
        self._files.append(path)
        return path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (each item has ``metric`` and ``value``)."""
        qs = urllib.parse.urlencode({"query": promql})
        answer = http_json(f"{self.url}/api/v1/query?{qs}")
        if answer.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        timeout: float = 30.0,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
    ) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until ``until(result)`` (default: non-empty); AssertionError
        naming the last result after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if until(result):
                return result
            if time.monotonic() > deadline:
                targets = http_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]
                health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
                raise AssertionError(
                    f"{promql!r} gave {result} after {timeout}s; targets: {health}"
                )
            time.sleep(0.5)

    def add_rules(self, text: str) -> Path:
        """Write one Prometheus rule file (YAML ``groups: ...``) into the stack's rules directory
        and reload; ``close`` removes it (and reloads) again."""
        path = self.rules_dir / f"test-{uuid.uuid4().hex}.yml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        self._files.append(path)
        self.reload()
        return path

    def reload(self) -> None:
        """Make Prometheus re-read its config and rule files (``POST /-/reload``)."""
        req = urllib.request.Request(f"{self.url}/-/reload", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT):
            pass

    def close(self) -> None:
        had_rules = any(path.parent == self.rules_dir for path in self._files)
        for path in self._files:
            path.unlink(missing_ok=True)
        self._files.clear()
        if had_rules:
            self.reload()
