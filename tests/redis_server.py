"""A private ``redis-server`` for tests that stop, restart or empty Redis (never the shared one).

``RedisServer(workdir, persistence="none" | "aof")`` listens on a free loopback port with its
files in ``workdir``. ``restart()`` stops it (SIGTERM) and starts it again on the same port:
without persistence it comes back empty, as the local stack's Redis or a failover to an empty
replica would; with ``aof`` (``appendfsync always``) it comes back with every acknowledged write.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

import redis

Persistence = Literal["none", "aof"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process owned by a test (module docstring)."""

    def __init__(self, workdir: Path, *, persistence: Persistence = "none") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (deploy/local/stack up installs it)")
        self.binary, self.workdir, self.persistence = binary, workdir, persistence
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", ""]
        args += (["--appendonly", "yes", "--appendfsync", "always"]
                 if self.persistence == "aof" else ["--appendonly", "no"])
        with (self.workdir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not answer: "
                             f"{(self.workdir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
