"""Attribution throughput: index building against bare passes, and query latency.

Run: ``.venv/bin/python benchmarks/attribution_throughput.py [--examples 512] [--quick]``

Prints, on one model and corpus measured in the same run:

* index-build examples/s for ``repsim`` vs a bare batched forward pass of the same model over the
  same pre-collated batches (target ratio >= 0.8);
* index-build examples/s for ``gradsim`` vs a bare forward+backward (all parameters requiring
  grad, ``loss.backward()``, no optimizer step) (target ratio >= 0.5);
* query latency (scoring only: method transform + blocked matmul + top-k merge) for 1 and 100
  queries against fp16 indexes of 10k and 100k examples × 1024 dims (target: 1 query over 100k
  under 100 ms), plus the per-query featurization cost of the model.

Index builds include tokenisation/collation and writing shards; the baselines do not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from driftscope_llm.attribution.eval.tasks import make_task
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.index.feature_index import (
    build_index,
    featurize,
    index_from_features,
)
from driftscope_llm.attribution.methods.base import Block, get_method
from driftscope_llm.attribution.methods.gradients import response_loss
from driftscope_llm.attribution.modeling import load_model
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.tinymodel import _config, build_tokenizer


def _model_dir(tmp: Path, corpus, layers: int, dim: int) -> Path:
    tok = build_tokenizer([t for e in corpus for t in (e.prompt, e.response)])
    torch.manual_seed(0)
    cfg = _config("gpt2", tok, layers=layers, dim=dim, max_len=128)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(tmp / "model"))
    tok.save_pretrained(str(tmp / "model"))
    return tmp / "model"


def _timed(fn, repeat: int) -> float:
    return _interleaved([fn], repeat)[0]


def _interleaved(fns, repeat: int) -> list[float]:
    """Median wall time of each function, run alternately (fair under a varying CPU load)."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, acc in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _build_rates(loaded, corpus, tmp: Path, batch: int, repeat: int) -> None:
    batches = [collate(loaded.tokenizer, corpus[s : s + batch], 512).to(loaded.device)
               for s in range(0, len(corpus), batch)]
    model = loaded.model

    def forward() -> None:
        with torch.no_grad():
            for b in batches:
                model(input_ids=b.input_ids, attention_mask=b.attention_mask)

    def forward_backward() -> None:
        for p in model.parameters():
            p.requires_grad_(True)
        for b in batches:
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
            response_loss(logits, b.labels).sum().backward()
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(False)

    n = len(corpus)
    rows = []
    for spec, base_fn, base_name, target in (
        ("repsim", forward, "forward", 0.8), ("gradsim", forward_backward, "fwd+bwd", 0.5)):
        settings = AttributionSettings().with_method(spec)
        runs = iter(range(repeat + 1))

        def build(s: AttributionSettings = settings, runs=runs) -> None:  # fresh dir: no resume
            build_index(loaded, corpus, tmp / f"idx-{s.method}-{next(runs)}", s, batch_size=batch)

        base_t, ours_t = _interleaved([base_fn, build], repeat)
        rows.append((spec, n / ours_t, base_name, n / base_t, base_t / ours_t, target))
    print(f"\nindex build ({n} examples, batch {batch}, median of {repeat}):")
    print(f"{'method':10} {'ex/s':>9} {'baseline':>9} {'ex/s':>9} {'ratio':>6} {'target':>7}")
    for spec, ours, bname, base, ratio, target in rows:
        ok = "ok" if ratio >= target else "BELOW"
        print(f"{spec:10} {ours:9.1f} {bname:>9} {base:9.1f} {ratio:6.2f} {'>=' + str(target):>7}"
              f" {ok}")


def _query_latency(tmp: Path, dim: int, sizes: list[int], repeat: int) -> None:
    settings = AttributionSettings(method="gradsim", variant="cosine")
    gen = torch.Generator().manual_seed(0)
    print(f"\nquery latency (scoring only, fp16 index, {dim} dims, median of {repeat}):")
    print(f"{'examples':>9} {'queries':>8} {'ms':>9} {'ms/query':>9}")
    for n in sizes:
        feats = torch.randn(n, dim, generator=gen)
        index = index_from_features(feats, [str(i) for i in range(n)], tmp / f"q{n}", settings,
                                    [Block("synthetic", dim, dim)], model_fingerprint="synthetic",
                                    corpus_hash_="synthetic")
        del feats
        for q in (1, 100):
            queries = torch.randn(q, dim, generator=gen)
            t = _timed(lambda qq=queries, ix=index: ix.search(qq, 10), repeat)
            flag = "  (target < 100 ms)" if q == 1 and n >= 100_000 else ""
            print(f"{n:9d} {q:8d} {t * 1e3:9.1f} {t * 1e3 / q:9.2f}{flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k-example query index only")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = (make_task("harmful").corpus + make_task("class").corpus
              + make_task("backdoor").corpus)
    corpus = (corpus * (args.examples // len(corpus) + 1))[: args.examples]
    corpus = [type(e)(f"{i}", e.prompt, e.response) for i, e in enumerate(corpus)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        loaded = load_model(_model_dir(tmp, corpus, args.layers, args.dim))
        n_params = sum(p.numel() for p in loaded.model.parameters())
        print(f"model: gpt2 {args.layers} layers x {args.dim} dims ({n_params / 1e6:.1f}M params)")
        _build_rates(loaded, corpus, tmp, args.batch, args.repeat)
        one = corpus[:1]
        for spec in ("repsim", "gradsim"):
            method = get_method(spec)
            t = _timed(lambda m=method: featurize(m, loaded, one), args.repeat)
            print(f"featurize one query with {spec}: {t * 1e3:.1f} ms")
        sizes = [10_000] if args.quick else [10_000, 100_000]
        _query_latency(tmp, 1024, sizes, args.repeat)


if __name__ == "__main__":
    main()
