"""Query latency and peak memory of a memory-mapped index against rows held in memory.

    python benchmarks/index_mmap.py [--sizes 100000,1000000] [--dim 1024] [--repeat 3]

For each size, a synthetic float16 index (random rows, shards of 65,536 rows, as
``index build`` writes them) is written once; then, in one run and each in a fresh child
process, the index is opened and queried both ways:

* ``memory`` — ``open_index(..., in_memory=True)``: every row loaded as float32 (the path before
  memory mapping; N × D × 4 bytes);
* ``mmap`` — ``open_index(...)``, the default: rows mapped block by block (``block_rows``) and
  scored in float16.

Per mode it reports the open time (sha256 check of every shard included, as by default), the
median latency of one query and of a batch of 100 queries (``repeat`` runs, warm page cache:
the sha256 check has just read the files), and the peak resident memory of the child
(``VmHWM``, reset after the imports) — open plus queries — and the ratios mmap / memory.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MB = 1 << 20


def _status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text)}


def write_synthetic(out: Path, rows: int, dim: int, *, shard_rows: int = 65536,
                    seed: int = 0) -> Path:
    """A float16 repsim-style index of ``rows`` random rows, written shard by shard."""
    import torch

    from driftscope_llm.attribution.index.feature_index import index_from_features
    from driftscope_llm.attribution.methods.base import Block
    from driftscope_llm.attribution.settings import AttributionSettings

    gen = torch.Generator().manual_seed(seed)

    def chunks() -> Iterator[torch.Tensor]:
        for start in range(0, rows, shard_rows):
            yield torch.randn(min(shard_rows, rows - start), dim, generator=gen)

    index_from_features(chunks(), [f"ex{i}" for i in range(rows)], out,
                        AttributionSettings(storage_dtype="float16"),
                        [Block("hidden_states[-1]", dim, dim)], model_fingerprint="synthetic",
                        corpus_hash_="synthetic", shard_size=shard_rows)
    return out


def child(path: str, mode: str, dim: int, repeat: int, block_rows: int,
          batches: list[int]) -> dict[str, Any]:
    """Open and query the index in this process; latency, peak and steady memory."""
    import torch

    from driftscope_llm.attribution.index.feature_index import open_index

    torch.set_num_threads(1)
    queries = {q: torch.randn(q, dim, generator=torch.Generator().manual_seed(q))
               for q in batches}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status()["VmRSS"]
    t0 = time.perf_counter()
    index = open_index(path, in_memory=mode == "memory", block_rows=block_rows)
    opened = time.perf_counter() - t0
    latency = {}
    for q, feats in queries.items():
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            index.search(feats, 10)
            times.append(time.perf_counter() - t0)
        latency[str(q)] = statistics.median(times) * 1e3
    st = _status()
    return {"mode": mode, "open_s": opened, "ms": latency,
            "peak_growth": st["VmHWM"] - before, "rows": index.count}


def measure(path: Path, mode: str, dim: int, *, repeat: int = 3, block_rows: int = 16384,
            batches: tuple[int, ...] = (1, 100)) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter (so peak memory is this mode's alone)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), mode,
           "--dim", str(dim), "--repeat", str(repeat), "--block-rows", str(block_rows),
           "--batches", ",".join(map(str, batches))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({mode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--block-rows", type=int, default=16384)
    ap.add_argument("--batches", default="1,100")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the indexes")
    ap.add_argument("--child", nargs=2, metavar=("INDEX", "MODE"))
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.dim, args.repeat,
                               args.block_rows, batches)))
        return
    import torch

    print(f"torch {torch.__version__}, 1 thread per child, block_rows {args.block_rows}, "
          f"{args.dim} dims, float16 on disk, top-10")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            t0 = time.perf_counter()
            path = write_synthetic(Path(tmp) / f"n{size}", size, args.dim)
            disk = sum(f.stat().st_size for f in path.glob("*.safetensors"))
            print(f"\n{size:,} rows: wrote {disk / MB:,.0f} MB in {time.perf_counter() - t0:.0f}s")
            print(f"{'mode':<7}{'open s':>8}" + "".join(f"{f'Q={q} ms':>12}" for q in batches)
                  + f"{'peak RSS MB':>13}")
            res = {m: measure(path, m, args.dim, repeat=args.repeat,
                              block_rows=args.block_rows, batches=tuple(batches))
                   for m in ("memory", "mmap")}
            for m, r in res.items():
                print(f"{m:<7}{r['open_s']:>8.2f}"
                      + "".join(f"{r['ms'][str(q)]:>12.1f}" for q in batches)
                      + f"{r['peak_growth'] / MB:>13.0f}")
            mem, mm = res["memory"], res["mmap"]
            print(f"{'ratio':<7}{mm['open_s'] / mem['open_s']:>8.2f}"
                  + "".join(f"{mm['ms'][str(q)] / mem['ms'][str(q)]:>12.2f}" for q in batches)
                  + f"{mm['peak_growth'] / max(mem['peak_growth'], 1):>13.3f}"
                  + "   (mmap / memory)")
            shutil_rm(path)


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
