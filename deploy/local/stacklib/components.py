"""The four managed processes: how each is prepared, started, probed and stopped.

A component that `up` starts gets fresh data (its ``data/`` directory is recreated; `restart`
keeps it, and does not reformat Kafka's storage) and a
pidfile holding its pid and start time; `down` signals only a process whose pid *and* start time
still match, so it never touches anything it did not start, even after a pid was recycled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .configs import (
    KAFKA_LOG4J2,
    alertmanager_config,
    kafka_cluster_id,
    kafka_server_properties,
    prometheus_config,
)
from .install import ensure_kafka_libs, fresh_dir, which
from .probes import http_ok, kafka_answers, port_taken, redis_answers
from .settings import HOST, Settings

__all__ = ["ORDER", "Component", "components"]

ORDER = ("redis", "alertmanager", "prometheus", "kafka")  # start order; `down` reverses it


@dataclass
class Component:
    """One managed process."""

    name: str
    address: str
    ports: tuple[int, ...]
    directory: Path
    probe: Callable[[], bool]  # one quick attempt: does it answer?
    prepare: Callable[[bool], list[str]]  # write config, reset data unless kept; command line

    @property
    def pidfile(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid `up` recorded, when that very process still runs, else None."""
        try:
            pid_text, started = self.pidfile.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def start(self, *, keep_data: bool = False) -> int:
        taken = [p for p in self.ports if port_taken(p)]
        if taken:
            raise SystemExit(
                f"stack: cannot start {self.name}: port(s) {taken} on {HOST} are taken by a "
                "process this stack did not start; stop it or pick other ports (stack --help)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = self.prepare(keep_data)
        with self.logfile.open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.directory, start_new_session=True,
            )  # fmt: skip
        self.pidfile.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        return proc.pid

    def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` seconds; True when a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            print(f"stack: {self.name} ignored SIGTERM for {grace:.0f}s; killing it", flush=True)
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot; None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def kafka(s: Settings) -> Component:
    d = s.root / "kafka"

    def prepare(keep_data: bool) -> list[str]:
        libs = ensure_kafka_libs(s)
        formatted = keep_data and (d / "data" / "meta.properties").exists()
        data = d / "data" if formatted else fresh_dir(d / "data")
        props = _write(d / "server.properties", kafka_server_properties(s, data))
        log4j = _write(d / "log4j2.properties", KAFKA_LOG4J2)
        java = [
            which("java"), f"-Xmx{s.kafka_heap}", "-Xms64m", "-XX:+UseSerialGC",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={d}", "-cp", f"{libs}/*",
        ]  # fmt: skip
        if not formatted:
            # "--cluster-id=ID": a random id may start with "-", which as a separate argument
            # the tool would read as an option (about 1 run in 64 failed to format)
            fmt = [*java, "kafka.tools.StorageTool", "format", f"--cluster-id={kafka_cluster_id()}"]
            done = subprocess.run([*fmt, "-c", str(props)], capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise SystemExit(
                    f"stack: formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
        return [*java, "kafka.Kafka", str(props)]

    return Component(
        "kafka", f"{HOST}:{s.kafka_port}",
        tuple(p for p in (s.kafka_port, s.controller_port, s.kafka_sasl_port) if p), d,
        lambda: kafka_answers(s.kafka_port), prepare,
    )  # fmt: skip


def redis(s: Settings) -> Component:
    d = s.root / "redis"

    def prepare(keep_data: bool) -> list[str]:
        # requirepass from a file only its owner reads, never on the command line (ps shows it)
        conf = d / "redis.conf"
        conf.unlink(missing_ok=True)
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            if s.redis_password:
                fh.write(f'requirepass "{s.redis_password}"\n')
        # 256 databases: the test fixtures hand each test a database of its own
        return [
            which("redis-server"), str(conf), "--port", str(s.redis_port), "--bind", HOST,
            "--dir", str(d / "data" if keep_data else fresh_dir(d / "data")),
            "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--databases", "256", "--logfile", "",
        ]  # fmt: skip

    return Component(
        "redis", f"{HOST}:{s.redis_port}", (s.redis_port,), d,
        lambda: redis_answers(s.redis_port, s.redis_password), prepare,
    )  # fmt: skip


def prometheus(s: Settings) -> Component:
    d = s.root / "prometheus"
    url = f"http://{HOST}:{s.prometheus_port}"

    def prepare(keep_data: bool) -> list[str]:
        fresh_dir(s.targets_dir)  # targets of an earlier run point at dead exporters
        _write(s.targets_dir / "driftscope.json", "[]\n")
        s.rules_dir.mkdir(parents=True, exist_ok=True)  # kept: rules copied here survive
        cfg = _write(d / "prometheus.yml", prometheus_config(s))
        return [
            which("prometheus"), f"--config.file={cfg}",
            f"--storage.tsdb.path={d / 'data' if keep_data else fresh_dir(d / 'data')}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={HOST}:{s.prometheus_port}", "--web.enable-lifecycle",
            # re-send firing alerts every second (default 1m): an alert whose first send was
            # dropped while Alertmanager was being rediscovered after a reload arrives anyway
            "--rules.alert.resend-delay=1s",
        ]  # fmt: skip

    return Component(
        "prometheus", url, (s.prometheus_port,), d, lambda: http_ok(f"{url}/-/ready"), prepare
    )


def alertmanager(s: Settings) -> Component:
    d = s.root / "alertmanager"
    url = f"http://{HOST}:{s.alertmanager_port}"

    def prepare(keep_data: bool) -> list[str]:
        cfg = _write(d / "alertmanager.yml", alertmanager_config(s))
        return [
            which("prometheus-alertmanager", "alertmanager"), f"--config.file={cfg}",
            f"--storage.path={d / 'data' if keep_data else fresh_dir(d / 'data')}",
            f"--web.listen-address={HOST}:{s.alertmanager_port}",
            "--cluster.listen-address=",  # no gossip port: one instance, nothing to join
        ]  # fmt: skip

    return Component(
        "alertmanager", url, (s.alertmanager_port,), d, lambda: http_ok(f"{url}/-/ready"), prepare
    )


def components(s: Settings, names: list[str]) -> list[Component]:
    """The named components (all when ``names`` is empty) in start order."""
    makers = {
        "redis": redis,
        "alertmanager": alertmanager,
        "prometheus": prometheus,
        "kafka": kafka,
    }
    unknown = sorted(set(names) - set(makers))
    if unknown:
        raise SystemExit(f"stack: unknown component(s) {unknown}; known: {', '.join(ORDER)}")
    return [makers[n](s) for n in ORDER if not names or n in names]
