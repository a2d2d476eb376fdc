"""``driftscope regress`` against a real OpenAI-compatible server on loopback: llama.cpp's.

The demo's support bot is trained again with a byte-level BPE tokenizer (the GPT-2 kind llama.cpp
reads), v1 clean and v2 with the planted billing refusals, and both are written as GGUF files
with the ``gguf`` package (float32 tensors, the tokenizer's vocabulary and merges, and a chat
template that renders a user turn as ``prompt + "\\n"`` — the rule local models use). One
``llama_cpp.server`` process (``llama-cpp-python[server]``, CPU) serves both under the aliases
``v1`` and ``v2``. Then, through the real typer app:

* v1 against itself, both sides over HTTP: exit 0, and the logprob signals were measured (the
  server returned token logprobs and top alternatives);
* v2 against v1 on billing prompts: exit 1 with a refusal regression;
* the local Hugging Face v1 against the served v1: exit 0 — the two runtimes agree.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.cli.main import app
from driftscope_llm.services.demo import scenario as sc

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

EOS = "<|endoftext|>"
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"


def bpe_tokenizer(texts: Sequence[str]) -> Any:
    """A byte-level BPE tokenizer over ``texts`` (GPT-2's pre-tokenizer), EOS = pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=700, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   bos_token=EOS)


def train_bpe_versions(out: Path) -> tuple[Path, Path]:
    """v1 (clean) and v2 (v1 + clean and planted), as in the demo, with the BPE tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    from driftscope_llm.attribution.tinymodel import finetune

    clean, planted = sc.clean_corpus(), sc.planted_examples()
    tokenizer = bpe_tokenizer([t for e in clean + planted for t in (e.prompt, e.response)])
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128,
                        vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = AutoModelForCausalLM.from_config(config)
    finetune(model, tokenizer, clean, epochs=12, seed=0)
    dirs = []
    for name, corpus, epochs in (("v1", None, 0), ("v2", clean + planted, 8)):
        if corpus is not None:
            finetune(model, tokenizer, list[Example](corpus), epochs=epochs, lr=3e-3, seed=1)
        model.save_pretrained(str(out / name))
        tokenizer.save_pretrained(str(out / name))
        dirs.append(out / name)
    return dirs[0], dirs[1]


def write_gguf(model_dir: Path, path: Path) -> None:
    """The GPT-2 model in ``model_dir`` as a float32 GGUF file llama.cpp loads."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    backend = json.loads(tok.backend_tokenizer.to_str())
    vocab = sorted(backend["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["content"] for t in backend["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL
                       for t, _ in vocab])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m)
                        for m in backend["model"]["merges"]])
    w.add_bos_token_id(tok.eos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = gguf.TENSOR_NAMES
    T = gguf.MODEL_TENSOR

    def put(kind: Any, suffix: str, arr: np.ndarray, bid: int | None = None) -> None:
        name = names[kind].format(bid=bid) + "." + suffix
        w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

    put(T.TOKEN_EMBD, "weight", sd["transformer.wte.weight"])
    put(T.POS_EMBD, "weight", sd["transformer.wpe.weight"])
    put(T.OUTPUT_NORM, "weight", sd["transformer.ln_f.weight"])
    put(T.OUTPUT_NORM, "bias", sd["transformer.ln_f.bias"])
    put(T.OUTPUT, "weight", sd["transformer.wte.weight"])  # tied
    for b in range(cfg.n_layer):
        h = f"transformer.h.{b}."
        for kind, hf, conv in ((T.ATTN_NORM, "ln_1", False), (T.ATTN_QKV, "attn.c_attn", True),
                               (T.ATTN_OUT, "attn.c_proj", True), (T.FFN_NORM, "ln_2", False),
                               (T.FFN_UP, "mlp.c_fc", True), (T.FFN_DOWN, "mlp.c_proj", True)):
            weight = sd[h + hf + ".weight"]
            put(kind, "weight", weight.T if conv else weight, b)  # Conv1D stores (in, out)
            put(kind, "bias", sd[h + hf + ".bias"], b)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL of a llama.cpp server with models v1 and v2, local HF v1 directory)."""
    out = tmp_path_factory.mktemp("llama-server")
    v1, v2 = train_bpe_versions(out)
    models = []
    for name, d in (("v1", v1), ("v2", v2)):
        write_gguf(d, out / f"{name}.gguf")
        models.append({"model": str(out / f"{name}.gguf"), "model_alias": name, "n_ctx": 128,
                       "n_threads": 1, "n_batch": 64, "verbose": False})
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
        yield base, v1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _suite(tmp: Path, route: str) -> Path:
    subjects = sc.ROUTES[route][0]
    rows = [{"id": f"{route}-{i:02d}", "prompt": t.format(x=s)}
            for i, (t, s) in enumerate((t, s) for t in ("how do i change {x} ?",
                                                        "can you help me with {x} ?",
                                                        "something is wrong with {x} .")
                                       for s in subjects)]
    path = tmp / f"{route}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _regress(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    res = CliRunner().invoke(app, ["regress", *map(str, args), "--json"])
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def test_same_served_model_passes_with_logprobs_measured(served: tuple[str, Path],
                                                         tmp_path: Path) -> None:
    base, _ = served
    code, doc, err = _regress("--baseline", f"{base}#v1", "--candidate", f"{base}#v1",
                              "--probes", _suite(tmp_path, "billing"), "--seed", "5")
    assert code == 0, err
    by = {s["signal"]: s for s in doc["signals"]}
    for name in ("logprob_mean", "logprob_min", "entropy_mean", "length_tokens"):
        assert by[name]["decision"] != "not_tested", by[name]["reason"]
    assert doc["candidate"].endswith("(model v1)")


def test_served_v2_fails_against_served_v1(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    code, doc, err = _regress("--baseline", f"{base}#v1", "--candidate", f"{base}#v2",
                              "--probes", _suite(tmp_path, "billing"), "--samples", "6")
    assert code == 1, err
    refusal = next(s for s in doc["signals"] if s["signal"] == "refusal")
    assert refusal["decision"] == "regression"


def test_local_model_and_its_served_copy_agree(served: tuple[str, Path],
                                               tmp_path: Path) -> None:
    base, v1 = served
    code, doc, err = _regress("--baseline", v1, "--candidate", f"{base}#v1",
                              "--probes", _suite(tmp_path, "shipping"))
    assert code == 0, (err, [(s["signal"], s["decision"], s["effect"]) for s in doc["signals"]])
