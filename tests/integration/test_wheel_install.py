"""The wheel works outside the repository: ``pip install driftscope-*.whl`` into a clean virtualenv
(no extra), then the commands a new user types, run from a directory that is not the checkout.

The wheel is built once per session from this tree (a copy of the files that go into it, so a
concurrent build cannot race), into a temporary directory: nothing is cached between runs. The
virtualenv gets the wheel and its runtime dependencies from the package index, nothing else, so
every command that needs an extra must refuse with the one-line message of
``services/cli/extras.py`` (exit 2), and the others must work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftscope_llm.services.cli.deploy import asset_files
from driftscope_llm.services.cli.extras import COMMAND_NEEDS, need_message
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events

REPO = Path(__file__).resolve().parents[2]
WHEEL_SOURCES = ("pyproject.toml", "setup.py", "README.md", "services", "attribution", "deploy",
                 "grafana")
CLI_TIMEOUT_S = 300  # one command of the installed CLI (imports and a 1,600-event replay)

# pip and its downloads are set-up, not the work under test: no subprocess timeout of their own
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass
class Installed:
    venv: Path
    wheel: Path
    home: Path  # a working directory and $HOME outside the repository

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PYTHON", "DRIFTSCOPE_", "VIRTUAL_ENV"))}
        clean.update({"HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / ".cache"),
                      "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                      "COLUMNS": "80"})
        return subprocess.run([str(self.venv / "bin" / "driftscope"), *args], cwd=self.home,
                              env={**clean, **(env or {})}, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, check=False)


def _build_wheel(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in WHEEL_SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(dest / "dist"), str(src)], check=True)
    [wheel] = (dest / "dist").glob("driftscope-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(root)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True, cwd=root)
    home = root / "home"
    home.mkdir()
    return Installed(env_dir, wheel, home)


def test_the_venv_holds_the_wheel_and_no_extra(installed: Installed) -> None:
    py = str(installed.venv / "bin" / "python")
    probe = ("import importlib.util, json, driftscope_llm.services as s; print(json.dumps("
             "[s.__file__] + [m for m in ('torch', 'transformers', 'onnx', 'pytest') "
             "if importlib.util.find_spec(m)]))")
    out = subprocess.run([py, "-c", probe], cwd=installed.home, capture_output=True, text=True,
                         check=True, timeout=CLI_TIMEOUT_S, env={"PATH": os.environ["PATH"]})
    [where, *extras] = json.loads(out.stdout)
    assert Path(where).is_relative_to(installed.venv)  # the wheel, not the checkout
    assert extras == []


def test_help_lists_the_commands(installed: Installed) -> None:
    res = installed.run("--help")
    assert res.returncode == 0, res.stderr
    words = set(res.stdout.split())
    assert {"replay", "demo", "collector", "deploy", "incidents", "attribution"} <= words


def test_replay_finds_the_planted_drift_without_any_extra(installed: Installed) -> None:
    stream = installed.home / "stream.jsonl"
    events = [*generate_events(StreamSpec(n=800, seed=1)),
              *generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b",
                                          drifts=(Drift(start=0, refusal_rate=0.3),)))]
    for event in events:  # the model-level stream only: its calibration is what this costs
        event.pop("segment", None)
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    res = installed.run("replay", str(stream), "--json")
    assert res.returncode == 0, res.stderr  # 1 only with --fail-on-drift
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert ("refusal", "all") in {(r["signal"], r["segment"]) for r in records}
    assert {r["model_version"] for r in records} == {"v2"}
    # no embedder and no extra to export one: the signal is off, and stderr says how to get it
    assert "pip install 'driftscope[embedder-export]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_deploy_export_writes_the_packaged_files(installed: Installed) -> None:
    out = installed.home / "monitoring"
    res = installed.run("deploy", "export", str(out), "--json")
    assert res.returncode == 0, res.stderr
    expected = asset_files()  # the repository's files, as the dev install sees them
    assert json.loads(res.stdout)["files"] == list(expected)
    for rel, src in expected.items():
        assert (out / rel).read_bytes() == src.read_bytes(), rel


def _dirs(*names: str) -> Callable[[Path], None]:
    def make(home: Path) -> None:
        for name in names:
            (home / name).mkdir(parents=True, exist_ok=True)
            (home / name / "config.json").write_text("{}")
    return make


def _files(*names: str) -> Callable[[Path], None]:
    def make(home: Path) -> None:
        for name in names:
            (home / name).write_text('{"id": "p1", "prompt": "hi"}\n')
    return make


# command path -> (arguments that pass its parsing, files they name)
COMMAND_ARGS: dict[str, tuple[list[str], Callable[[Path], None]]] = {
    "demo": (["--out", "demo-out"], _dirs()),
    "worker": ([], _dirs()),
    "trace": (["--model", "m", "--index", "repsim=i", "--prompt", "p", "--output", "o"],
              _dirs("m", "i")),
    "attribute": (["inc-1", "--config", "worker.yaml"], _files("worker.yaml")),
    "regress": (["--baseline", "m", "--candidate", "http://127.0.0.1:9/v1", "--probes",
                 "probes.jsonl"], lambda h: (_dirs("m")(h), _files("probes.jsonl")(h))),
    "attribution index build": (["--model", "m", "--corpus", "c.jsonl", "--out", "idx"],
                                lambda h: (_dirs("m")(h), _files("c.jsonl")(h))),
    "attribution index merge": (["p0"], _dirs("p0")),
    "attribution query": (["--index", "i", "--queries", "q.jsonl"],
                          lambda h: (_dirs("i")(h), _files("q.jsonl")(h))),
    "attribution eval": ([], _dirs()),
    "models export-embedder": (["--out", "embedder"], _dirs()),
    "models fetch": (["smollm2"], _dirs()),
}


def test_every_command_that_needs_an_extra_has_arguments_here() -> None:
    assert set(COMMAND_ARGS) == set(COMMAND_NEEDS)


@pytest.mark.parametrize("command", sorted(COMMAND_ARGS))
def test_a_command_without_its_extra_says_which_to_install(installed: Installed,
                                                           command: str) -> None:
    args, make = COMMAND_ARGS[command]
    make(installed.home)
    res = installed.run(*command.split(), *args)
    assert (res.returncode, res.stdout, res.stderr) == (
        2, "", need_message(command, COMMAND_NEEDS[command].extra) + "\n")


def test_regress_between_two_endpoints_needs_no_extra(installed: Installed) -> None:
    _files("probes.jsonl")(installed.home)
    # nothing listens on port 9: the gate gets as far as its first request, with no extra
    res = installed.run("regress", "--baseline", "http://127.0.0.1:9/v1", "--candidate",
                        "http://127.0.0.1:9/v1", "--probes", "probes.jsonl", "--timeout", "2")
    assert res.returncode == 3, res.stderr  # a service could not be reached
    assert "extra" not in res.stderr and "Traceback" not in res.stderr
