"""What exact replay (MAGIC) and one counterfactual LoRA retrain cost on a real model.

Run: ``.venv/bin/python benchmarks/magic_cost.py --base PATH.gguf [--examples 40] [--epochs 1]``

On SmolLM2-135M-Instruct (``driftscope models fetch smollm2`` puts the GGUF in the model cache)
with a LoRA adapter (rank 8, q/v projections of the top ``--layers`` layers, batches of 8,
AdamW 2e-4, clipped at 1) fine-tuned on ``--examples`` examples of the ``style`` family with
:func:`driftscope_llm.attribution.tinymodel.finetune` (which records the replay recipe), then:

* the fine-tune's wall time and seconds per optimizer step — the unit a counterfactual retrain
  (QLD, LDS, ``verify.mode = retrain``) pays per step, so a table's cost is
  ``retrains × steps × s/step``;
* one ``magic`` metagradient for 3 gloomy queries pooled
  (:class:`driftscope_llm.attribution.replay.ReplayAttributor`): the check that the replay
  reproduces the saved adapter, and the replay's wall time as a ratio of the fine-tune's, the
  optimizer states it held against the fine-tune's one, and the process's peak RSS.

Both are measured in the same run on the same model, one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from driftscope_llm.attribution.eval.families import style_task
from driftscope_llm.attribution.modeling import load_model
from driftscope_llm.attribution.replay import ReplayAttributor
from driftscope_llm.attribution.tinymodel import cpu_threads, finetune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="Base model: HF directory or GGUF file.")
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--layers", type=int, default=2, help="Adapt only the top N layers.")
    args = ap.parse_args()
    from peft import LoraConfig, get_peft_model

    task = style_task(0)
    corpus = task.corpus[: args.examples]
    queries = [q for q in task.queries if q.label == task.target_label][:3]
    with cpu_threads(1), tempfile.TemporaryDirectory() as tmp:
        loaded = load_model(args.base, device="cpu", dtype="float32")
        n_layers = loaded.model.config.num_hidden_layers
        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                         layers_to_transform=list(range(n_layers - args.layers, n_layers)),
                         task_type="CAUSAL_LM")
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(loaded.model, cfg)
        adapter = Path(tmp) / "adapter"
        t0 = time.perf_counter()
        finetune(model, loaded.tokenizer, corpus, epochs=args.epochs, lr=2e-4, batch_size=8,
                 seed=0, max_length=128, recipe_dir=adapter)
        finetune_s = time.perf_counter() - t0
        model.save_pretrained(str(adapter))
        steps = args.epochs * -(-len(corpus) // 8)
        ra = ReplayAttributor(loaded.model_dir, adapter, corpus, device="cpu")
        res = ra.attribute(queries)
        top = res.top(5)
    print(json.dumps({
        "model": Path(loaded.model_dir).name, "examples": len(corpus), "steps": steps,
        "finetune_s": round(finetune_s, 2), "s_per_step": round(finetune_s / steps, 3),
        "magic": res.cost.to_json(), "reproduction_error": res.reproduction_error,
        "top5": [(i, round(s, 5), next(e.label for e in corpus if e.id == i))
                 for _, i, s in top],
    }, indent=1))


if __name__ == "__main__":
    main()
