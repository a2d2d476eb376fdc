"""Attribution throughput on one GPU: a ~1B-parameter Llama-style model in bf16.

    python benchmarks/gpu_attribution.py                 # the GPU run (defaults below)
    python benchmarks/gpu_attribution.py --tiny --device cpu   # seconds, for the test

A randomly initialised Llama-style model (defaults: 22 layers × 2,048 dims, 32 heads, 4 KV heads,
5,632 MLP dims, 32,000 words: 1.1B parameters, TinyLlama's shape) and ``--examples`` synthetic
examples of ``--seq-len`` tokens (a word-level tokenizer makes each word one token: BOS, half
the words as prompt, half as response, EOS). In one run it measures:

* the bare **forward** of the transformer (no LM head, no grad) — what RepSim runs — over the
  same batches, pre-tokenised, and its achieved TFLOP/s: ``2·N + 2·L·T·d`` FLOPs per token
  (Kaplan et al. 2020; ``N`` = non-embedding parameters, ``L`` layers, ``T`` tokens of context,
  ``d`` model width) as a share of the device's dense bf16 peak (``--peak-tflops``, else a table
  of known devices);
* a bare **forward + backward** of the whole model (every parameter requires grad, loss on the
  response tokens, ``backward()``, no optimizer step);
* ``index build`` with **repsim** and with **gradsim** (projected per-example gradients of the
  last 2 blocks, k = 16 per side) through
  :func:`driftscope_llm.attribution.index.feature_index.build_index`: tokenisation, featurizing,
  float16 shards with sha256, manifest — examples/s and tokens/s and the ratio to the matching bare
  pass.

The last line is one JSON object with every figure (``--json`` prints only that).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of the device name.
BF16_PEAK_TFLOPS = {
    "H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
    "GH200": 989.4, "B200": 2250.0, "A100": 312.0, "L40S": 362.1, "L40": 181.0, "L4": 121.0,
    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.2, "RTX 6000 Ada": 364.2,
}
TINY = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 128,
        "vocab": 400, "examples": 24, "seq_len": 32, "batch_size": 8, "dtype": "float32"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--grad-examples", type=int, default=None,
                    help="examples for the gradient index (default: --examples)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense peak for --dtype; default: known-device table")
    ap.add_argument("--baseline-batches", type=int, default=20,
                    help="timed batches of each bare pass (after one warm-up batch)")
    ap.add_argument("--tiny", action="store_true", help="a tiny config (the CPU test)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.tiny:
        for k, v in TINY.items():
            setattr(args, k, v)
    return args


def _synthetic(n: int, seq_len: int, vocab: int, seed: int) -> tuple[Any, list[Any]]:
    """A word-level tokenizer over ``vocab`` words and ``n`` examples of ``seq_len`` tokens."""
    from driftscope_llm.attribution.data import Example
    from driftscope_llm.attribution.tinymodel import build_tokenizer

    words = [f"w{i}" for i in range(vocab - 4)]  # + [PAD] [UNK] [BOS] [EOS]
    tok = build_tokenizer([" ".join(words)])
    rng = random.Random(seed)
    half = (seq_len - 2) // 2  # BOS + prompt + response + EOS = seq_len
    corpus = [Example(f"ex{i}", " ".join(rng.choices(words, k=half)),
                      " ".join(rng.choices(words, k=seq_len - 2 - half))) for i in range(n)]
    return tok, corpus


def _timed(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from driftscope_llm.attribution.formatting import collate
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.methods.gradients import response_loss
    from driftscope_llm.attribution.methods.repsim import backbone
    from driftscope_llm.attribution.modeling import LoadedModel, pick_device
    from driftscope_llm.attribution.settings import AttributionSettings

    device = pick_device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    tok, corpus = _synthetic(args.examples, args.seq_len, args.vocab, seed=0)
    config = LlamaConfig(num_hidden_layers=args.layers, hidden_size=args.hidden,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                         intermediate_size=args.intermediate, vocab_size=len(tok),
                         max_position_embeddings=max(2048, args.seq_len),
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model: Any = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight.numel() + model.lm_head.weight.numel()
    flops_tok = 2 * (n_params - embed) + 2 * args.layers * args.seq_len * args.hidden
    loaded = LoadedModel(model=model, tokenizer=tok, device=device,
                         fingerprint=f"synthetic-llama-{n_params}", model_dir="synthetic",
                         adapter_dir=None)
    tokens_per_ex = len(collate(tok, corpus[:1], args.seq_len).input_ids[0])
    batches = [collate(tok, corpus[s : s + args.batch_size], args.seq_len).to(device)
               for s in range(0, min(len(corpus), args.batch_size * (args.baseline_batches + 1)),
                              args.batch_size)]
    net = backbone(model)

    def forward() -> None:
        with torch.no_grad():
            for b in batches[1:]:
                net(input_ids=b.input_ids, attention_mask=b.attention_mask)

    def forward_backward() -> None:
        for b in batches[1:]:
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
            response_loss(logits, b.labels).sum().backward()
            model.zero_grad(set_to_none=True)

    with torch.no_grad():
        net(input_ids=batches[0].input_ids, attention_mask=batches[0].attention_mask)
    n_base = sum(int(b.input_ids.shape[0]) for b in batches[1:])
    fwd_s = _timed(forward, sync)
    for p in model.parameters():
        p.requires_grad_(True)
    logits = model(input_ids=batches[0].input_ids, attention_mask=batches[0].attention_mask).logits
    response_loss(logits, batches[0].labels).sum().backward()
    model.zero_grad(set_to_none=True)
    del logits
    fb_s = _timed(forward_backward, sync)
    for p in model.parameters():
        p.requires_grad_(False)
    batches.clear()  # free the baseline batches before the builds
    if device.type == "cuda":
        torch.cuda.empty_cache()
    fwd_ex = n_base / fwd_s
    out: dict[str, Any] = {
        "device": name, "torch": torch.__version__, "dtype": args.dtype,
        "params": n_params, "layers": args.layers, "hidden": args.hidden,
        "seq_len": args.seq_len, "tokens_per_example": tokens_per_ex,
        "batch_size": args.batch_size, "peak_tflops": peak,
        "forward": {"examples_s": fwd_ex, "tokens_s": fwd_ex * tokens_per_ex,
                    "tflops": fwd_ex * tokens_per_ex * flops_tok / 1e12},
        "forward_backward": {"examples_s": n_base / fb_s,
                             "tokens_s": n_base / fb_s * tokens_per_ex},
    }
    out["forward"]["share_of_peak"] = out["forward"]["tflops"] / peak if peak else None
    grad_n = args.grad_examples or args.examples
    with tempfile.TemporaryDirectory(prefix="driftscope-gpu-") as tmp:
        for method, n, base in (("repsim", args.examples, "forward"),
                                ("gradsim", grad_n, "forward_backward")):
            settings = AttributionSettings(method=method, max_length=args.seq_len)
            t = _timed(lambda m=method, n=n, s=settings: build_index(  # type: ignore[misc]
                loaded, corpus[:n], Path(tmp) / m, s, batch_size=args.batch_size), sync)
            out[f"{method}_build"] = {"examples": n, "seconds": t, "examples_s": n / t,
                                      "tokens_s": n / t * tokens_per_ex,
                                      "ratio_to_" + base: (n / t) / out[base]["examples_s"]}
    return out


def report(r: dict[str, Any]) -> str:
    peak = f"{r['peak_tflops']:.0f} TFLOP/s dense peak" if r["peak_tflops"] else "peak unknown"
    lines = [
        f"device: {r['device']} ({peak}), torch {r['torch']}",
        f"model: Llama-style {r['layers']} layers x {r['hidden']} ({r['params'] / 1e9:.2f}B "
        f"params, random init), {r['dtype']}, {r['tokens_per_example']} tokens/example, "
        f"batch {r['batch_size']}",
        f"{'stage':<28}{'examples/s':>12}{'tokens/s':>12}{'ratio':>8}",
    ]
    f, fb = r["forward"], r["forward_backward"]
    lines.append(f"{'forward (no LM head)':<28}{f['examples_s']:>12.1f}{f['tokens_s']:>12.0f}")
    lines.append(f"{'forward+backward (all)':<28}{fb['examples_s']:>12.1f}{fb['tokens_s']:>12.0f}")
    for method, base in (("repsim", "forward"), ("gradsim", "forward_backward")):
        b = r[f"{method}_build"]
        lines.append(f"{method + ' index build':<28}{b['examples_s']:>12.1f}"
                     f"{b['tokens_s']:>12.0f}{b['ratio_to_' + base]:>8.2f}  (vs {base}; "
                     f"{b['examples']} examples in {b['seconds']:.1f}s)")
    share = f"{f['share_of_peak']:.1%} of peak" if f["share_of_peak"] else "peak unknown"
    lines.append(f"forward achieved {f['tflops']:.1f} TFLOP/s ({share})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    result = run(args)
    if not args.json:
        print(report(result))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
