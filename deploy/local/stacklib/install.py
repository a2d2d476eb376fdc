"""Installing what the stack needs: Debian packages (apt-get) and the Kafka broker's jars (Maven).

The jars are fetched once per Kafka version into ``$XDG_CACHE_HOME/driftscope/kafka-V/libs`` by
``maven-dependency-plugin:copy-dependencies`` on ``deploy/local/kafka-pom.xml``; a later start finds
the ``.complete`` marker and downloads nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .settings import Settings

__all__ = ["KAFKA_POM", "ensure_installed", "ensure_kafka_libs", "file_lock", "fresh_dir", "which"]

KAFKA_POM = Path(__file__).resolve().parent.parent / "kafka-pom.xml"

# component -> [(programs, any of which will do, Debian package that brings one)]
APT_PACKAGES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "redis": [(("redis-server",), "redis-server")],
    "prometheus": [(("prometheus",), "prometheus")],
    "alertmanager": [(("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager")],
    "kafka": [(("java",), "openjdk-17-jre-headless")],
}
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=600"]  # wait for a running apt instead of failing


def which(*names: str) -> str:
    """The first of ``names`` found on PATH."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"stack: none of {names} found on PATH")


def fresh_dir(path: Path) -> Path:
    """``path`` as a new, empty directory (whatever was there is deleted)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent `stack` calls take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def apt_install(packages: list[str]) -> None:
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        raise SystemExit(f"stack: missing {packages}; as root run: apt-get install -y {packages}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [*sudo, "apt-get", *APT_LOCK_WAIT, "install", "-y", "--no-install-recommends", *packages]
    print(f"stack: installing {' '.join(packages)} with apt-get", flush=True)
    if subprocess.run(cmd, env=env, check=False).returncode == 0:
        return
    subprocess.run([*sudo, "apt-get", *APT_LOCK_WAIT, "update"], env=env, check=False)
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        raise SystemExit(f"stack: apt-get install {' '.join(packages)} failed")


def java_major() -> int:
    out = subprocess.run(
        [which("java"), "-version"], capture_output=True, text=True, check=False
    ).stderr
    found = re.search(r'version "(\d+)', out)
    return int(found.group(1)) if found else 0


def ensure_installed(s: Settings, names: list[str]) -> None:
    """apt-get install the packages of ``names`` whose programs are missing (Maven only while
    the Kafka jars are not cached); refuse a Java older than 17 (Kafka 4 needs 17)."""
    wanted = {
        pkg
        for n in names
        for progs, pkg in APT_PACKAGES[n]
        if not any(shutil.which(prog) for prog in progs)
    }
    if "kafka" in names and not (s.kafka_libs / ".complete").exists() and not shutil.which("mvn"):
        wanted.add("maven")
    if wanted:
        apt_install(sorted(wanted))
    if "kafka" in names and java_major() < 17:
        raise SystemExit(f"stack: Kafka {s.kafka_version} needs Java 17 or newer on PATH")


def ensure_kafka_libs(s: Settings) -> Path:
    """The broker classpath directory, downloaded once per Kafka version into the user cache."""
    libs = s.kafka_libs
    with file_lock(libs.parent / ".lock"):
        if (libs / ".complete").exists():
            return libs
        staging = fresh_dir(libs.parent / "libs.partial")
        print(f"stack: downloading Kafka {s.kafka_version} jars into {libs}", flush=True)
        cmd = [
            which("mvn"), "-B", "-q", "-Dstyle.color=never", "-f", str(KAFKA_POM),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}", f"-Dkafka.version={s.kafka_version}",
            f"-Dlog4j.version={s.log4j_version}",
        ]  # fmt: skip
        mvn_log = libs.parent / "maven.log"
        with mvn_log.open("wb") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            tail = "\n".join(mvn_log.read_text(errors="replace").splitlines()[-30:])
            raise SystemExit(f"stack: Maven could not fetch Kafka {s.kafka_version} jars:\n{tail}")
        (staging / ".complete").write_text(s.kafka_version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs
