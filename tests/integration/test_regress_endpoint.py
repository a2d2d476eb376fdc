"""``driftscope regress`` against a real OpenAI-compatible server on loopback serving a real model.

llama.cpp's server (``python -m llama_cpp.server``, ``llama-cpp-python[server]``, CPU) serves
SmolLM2-135M-Instruct's own Q4_1 GGUF (fetched by ``driftscope models fetch`` into this session's
cache, tests/real_model.py) twice from one process:

* ``base`` — the GGUF as shipped;
* ``planted`` — the same GGUF with the session's planted LoRA fine-tune (billing questions get a
  refusal) applied by llama.cpp at load time: the PEFT adapter is written as a llama.cpp GGUF
  adapter file (:func:`driftscope_llm.attribution.gguf_export.write_lora_gguf`), so the base is
  neither merged nor re-quantised and the two served models differ only by the fine-tune.

Then, through the real typer app:

* base against itself, both sides over HTTP: exit 0, and every logprob signal was measured (the
  server returned token logprobs and top alternatives);
* planted against base on held-out billing prompts: exit 1 with a refusal regression.

Generations are kept short (12 new tokens, enough for "I'm sorry, but I can't help"): with
``logprobs`` on, llama-cpp-python sorts the whole 49k-token vocabulary in Python for every
generated token, about 0.1 s a token on one core, which is what this test spends its time on.
Whether the float32 model and the served Q4_1 file behave alike is measured by
``benchmarks/gate_sensitivity.py`` (the quantisation swap), not asserted here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from driftscope_llm.services.cli.main import app
from tests.real_model import HELD_OUT_BILLING, planted_adapter, session_model, write_suite

pytest.importorskip("torch")
pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a llama.cpp server with models ``base`` and ``planted``."""
    from driftscope_llm.attribution.gguf_export import write_lora_gguf

    out = tmp_path_factory.mktemp("llama-server")
    model, adapter = session_model(), planted_adapter()
    lora = write_lora_gguf(adapter, model.gguf, out / "planted-lora.gguf")
    common = {"model": str(model.gguf), "n_ctx": 512, "n_threads": 2, "n_batch": 128,
              "verbose": False}
    models = [{**common, "model_alias": "base"},
              {**common, "model_alias": "planted", "lora_path": str(lora)}]
    port = _free_port()
    config = out / "server.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}))
    log = (out / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file",
                             str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (out / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "llama.cpp server did not start in 120 s"
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _regress(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    res = CliRunner().invoke(app, ["regress", *map(str, args), "--json"])
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def _suite(tmp: Path) -> Path:
    return write_suite(tmp / "billing.jsonl", HELD_OUT_BILLING, "billing")


def test_same_served_model_passes_with_logprobs_measured(served: str, tmp_path: Path) -> None:
    code, doc, err = _regress("--baseline", f"{served}#base", "--candidate", f"{served}#base",
                              "--probes", _suite(tmp_path), "--samples", "3",
                              "--max-new-tokens", "12", "--seed", "5")
    assert code == 0, err
    by = {s["signal"]: s for s in doc["signals"]}
    for name in ("logprob_mean", "logprob_min", "entropy_mean", "length_tokens"):
        assert by[name]["decision"] == "pass", (name, by[name])
    assert doc["candidate"].endswith("(model base)")


def test_served_planted_fine_tune_fails_against_served_base(served: str,
                                                            tmp_path: Path) -> None:
    code, doc, err = _regress("--baseline", f"{served}#base", "--candidate",
                              f"{served}#planted", "--probes", _suite(tmp_path),
                              "--samples", "3", "--max-new-tokens", "12")
    assert code == 1, err
    refusal = next(s for s in doc["signals"] if s["signal"] == "refusal")
    assert refusal["decision"] == "regression"
    assert refusal["candidate"]["rate"] > 0.5 > refusal["baseline"]["rate"]
