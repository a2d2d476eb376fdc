"""Counterfactual tests of an attribution: retrain without the attributed examples and look.

Identification metrics (Acc, Cover) ask whether the top examples *look like* the behaviour; the
questions here are causal, answered by retraining (cheap for the tiny models of the evaluation
and for a LoRA adapter):

* **QLD** (query loss difference; Bergson's leaderboard, DATE-LM): remove a method's top-ranked
  examples, retrain with the same seed and schedule, and measure how much the queries' mean
  response loss rises over the full-corpus retrain with that seed; subtract the rise from
  removing as many *random* examples (paired by seed). In nats per response token; > 0 means the
  method's picks matter more than random ones; the ideal is the rise from removing exactly the
  examples that taught the behaviour. The stronger baseline (:func:`qld_rows`) removes as many
  random examples **of the queries' own label** — a perfect class identifier, drawn per seed
  like the random set: a method whose QLD does not exceed it adds nothing over a classifier.
* **LDS** (linear datamodeling score, Park et al. 2023 "TRAK"): retrain on ``M`` random halves of
  the corpus (same seed and schedule), record each query's loss, and correlate (Spearman) across
  the ``M`` subsets the method's predicted support — the sum of its scores over the subset's
  examples — with the negated loss. In [-1, 1]; 1 = the method's scores order the subsets exactly
  as retraining does. Averaged over queries.

:class:`Retrainer` retrains a tiny model directory (full fine-tune from the same initialisation)
or a LoRA adapter on its base (the adapter's own config, fresh initialisation), with
:func:`driftscope_llm.attribution.tinymodel.finetune`'s schedule.

:func:`verify_by_retraining` is the worker's opt-in *counterfactual* verification (setting
``verify.mode = "retrain"``): the same question as the gradient-ascent proxy of
:mod:`driftscope_llm.attribution.verify`, answered by retraining the LoRA adapter three times
(same seed and schedule) on the whole corpus, without the top-k, and without k random examples,
and comparing the drifted exemplars' mean per-token log-likelihood; when the corpus is labelled
a fourth retrain removes k random examples of the behaviour's label
(:func:`same_label_ids`: the queries' label when they carry one, else the majority label of the
top-k), reported as the ``same_label`` arm. Its result has the same
shape as :func:`~driftscope_llm.attribution.verify.verify`'s, with ``method = "lora_retrain"``
and ``loglik_before`` = the full-corpus retrain's.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.formatting import collate
from driftscope_llm.attribution.methods.gradients import response_loss
from driftscope_llm.attribution.modeling import pick_device
from driftscope_llm.attribution.stats import Interval, bootstrap_mean
from driftscope_llm.attribution.tinymodel import cpu_threads, finetune
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["SAME_LABEL", "QldRow", "Retrainer", "Retrains", "lds", "qld", "qld_rows",
           "query_losses", "same_label_ids", "verify_by_retraining"]

#: the name of the same-label random baseline in :func:`qld_rows` and the suite's tables
SAME_LABEL = "random:same_label"

Log = Callable[[str], None]


def query_losses(model: Any, tokenizer: Any, queries: Sequence[Example], *,
                 max_length: int = 128, batch_size: int = 32) -> list[float]:
    """Each query's mean response cross-entropy (nats per token) under ``model``."""
    device = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for s in range(0, len(queries), batch_size):
            batch = collate(tokenizer, queries[s : s + batch_size], max_length).to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            out += [float(v) for v in response_loss(logits, batch.labels)]
    return out


class Retrains(Protocol):
    """Anything that retrains on a corpus with a seed and returns the queries' losses."""

    def losses(self, corpus: Sequence[Example], queries: Sequence[Example],
               seed: int) -> list[float]: ...


@dataclass(frozen=True)
class Retrainer:
    """Retrains the model in ``model_dir`` (or its LoRA adapter) on a subset of the corpus.

    ``adapter_dir`` set: the base in ``model_dir`` is kept and a fresh adapter with the saved
    adapter's config is trained (lr 1e-2, as :mod:`~driftscope_llm.attribution.tinymodel`);
    unset: the whole model is re-initialised from its config and trained (lr 3e-3).
    """

    model_dir: Path
    adapter_dir: Path | None = None
    epochs: int = 12
    max_length: int = 128
    #: learning rate; ``None``: 1e-2 for an adapter, 3e-3 for a full fine-tune (tinymodel's)
    lr: float | None = None
    #: ``None``: CUDA when present, else CPU
    device: str | None = None

    def losses(self, corpus: Sequence[Example], queries: Sequence[Example],
               seed: int) -> list[float]:
        """Retrain on ``corpus`` with ``seed`` and return the queries' losses."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        dev = pick_device(self.device)
        with cpu_threads(1 if dev.type == "cpu" else None), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if self.adapter_dir is None:
                config = AutoConfig.from_pretrained(str(self.model_dir))
                config._attn_implementation = "sdpa"
                torch.manual_seed(seed)
                model: Any = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
                model.to(dev)
                finetune(model, tokenizer, corpus, epochs=self.epochs, seed=seed,
                         lr=self.lr or 3e-3, max_length=self.max_length)
            else:
                from peft import LoraConfig, get_peft_model

                base: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir))
                base.to(dev)
                cfg = LoraConfig.from_pretrained(str(self.adapter_dir))
                cfg.inference_mode = False  # a saved adapter's config is frozen for inference
                torch.manual_seed(seed + 1)
                model = get_peft_model(base, cfg)
                finetune(model, tokenizer, corpus, epochs=self.epochs, seed=seed + 1,
                         lr=self.lr or 1e-2, max_length=self.max_length)
            return query_losses(model, tokenizer, queries, max_length=self.max_length)


def _without(corpus: Sequence[Example], drop: set[int]) -> list[Example]:
    return [e for i, e in enumerate(corpus) if i not in drop]


@dataclass(frozen=True)
class QldRow:
    """One removal set's QLD against both random baselines (nats per response token).

    ``vs_random``: its rise minus the rise from removing as many random examples (the classic
    QLD); ``vs_same_label``: its rise minus the rise from removing as many random examples *of
    the queries' label* (> 0: it beats a perfect class identifier; ``None`` without a label
    pool); ``rise``: the rise itself over the full-corpus retrain. Intervals: bootstrap over
    queries of the seed-averaged paired differences.
    """

    vs_random: Interval
    vs_same_label: Interval | None
    rise: Interval


class _SeedRuns:
    """One seed's retrains: the full corpus once, then rises over it for removal sets."""

    def __init__(self, retrainer: Retrains, corpus: Sequence[Example],
                 queries: Sequence[Example], seed: int) -> None:
        self.retrainer, self.corpus, self.queries, self.seed = retrainer, corpus, queries, seed
        self.full = retrainer.losses(corpus, queries, seed)

    def rise(self, drop: set[int]) -> list[float]:
        lost = self.retrainer.losses(_without(self.corpus, drop), self.queries, self.seed)
        return [a - b for a, b in zip(lost, self.full, strict=True)]

    def baselines(self, sizes: Sequence[int], same_label: Sequence[int] | None
                  ) -> dict[str, dict[int, list[float]]]:
        """Rises of a random set (``random.Random(seed)``) and, with a label pool, a same-label
        random set (``random.Random(f"same_label:{seed}")``) of each size."""
        rng, rng_same = random.Random(self.seed), random.Random(f"same_label:{self.seed}")
        out: dict[str, dict[int, list[float]]] = {"random": {}, SAME_LABEL: {}}
        for size in sizes:
            out["random"][size] = self.rise(set(rng.sample(range(len(self.corpus)), size)))
            if same_label is not None:
                pool = list(same_label)
                out[SAME_LABEL][size] = self.rise(set(rng_same.sample(pool,
                                                                      min(size, len(pool)))))
        return out


def qld_rows(retrainer: Retrains, corpus: Sequence[Example], queries: Sequence[Example],
             removals: Mapping[str, Sequence[int]], *, seeds: Sequence[int] = (0, 1),
             same_label: Sequence[int] | None = None, baseline_size: int | None = None,
             log: Log | None = None) -> dict[str, QldRow]:
    """QLD of each removal set (corpus positions) against random sets of the same size and,
    with ``same_label`` (the corpus positions of the queries' label), against random sets of
    that label of the same size (at most the pool's size).

    Per seed: one full-corpus retrain, one per distinct removal set, and per distinct removal
    size one random set (``random.Random(seed)``) and one same-label set
    (``random.Random(f"same_label:{seed}")``). Besides one row per removal, the result has a
    ``"random"`` row and, with ``same_label``, a :data:`SAME_LABEL` row (removal size:
    ``baseline_size``, default the largest removal), so a table shows both baselines on the same
    footing.
    """
    if baseline_size is None and not removals:
        raise ValueError("qld_rows needs a removal or a baseline_size")
    names = [*removals, "random"] + ([SAME_LABEL] if same_label is not None else [])
    size_of = {**{n: len(v) for n, v in removals.items()},
               "random": baseline_size or max(len(v) for v in removals.values())}
    size_of[SAME_LABEL] = size_of["random"]
    rises: dict[str, list[list[float]]] = {n: [] for n in names}
    base: dict[str, dict[int, list[list[float]]]] = {"random": {}, SAME_LABEL: {}}
    for seed in seeds:
        runs = _SeedRuns(retrainer, corpus, queries, seed)
        now = runs.baselines(sorted(set(size_of.values())), same_label)
        done: dict[frozenset[int], list[float]] = {}  # methods often remove the same set
        for name in names:
            if name in now:
                rises[name].append(now[name][size_of[name]])
                continue
            key = frozenset(removals[name])
            if key not in done:
                done[key] = runs.rise(set(key))
            rises[name].append(done[key])
        for kind, by_size in now.items():
            for size, r in by_size.items():
                base[kind].setdefault(size, []).append(r)
        if log:
            for name in names:
                d = [a - b for a, b in zip(rises[name][-1], now["random"][size_of[name]],
                                           strict=True)]
                log(f"  qld seed {seed} {name}: {sum(d) / len(queries):+.3f}")

    def paired(name: str, kind: str) -> Interval:
        ref = base[kind][size_of[name]]
        per_seed = [[a - b for a, b in zip(r, z, strict=True)]
                    for r, z in zip(rises[name], ref, strict=True)]
        return bootstrap_mean([sum(col) / len(col) for col in zip(*per_seed, strict=True)])

    return {name: QldRow(
        vs_random=paired(name, "random"),
        vs_same_label=paired(name, SAME_LABEL) if same_label is not None else None,
        rise=bootstrap_mean([sum(col) / len(col) for col in zip(*rises[name], strict=True)]))
        for name in names}


def qld(retrainer: Retrains, corpus: Sequence[Example], queries: Sequence[Example],
        removals: Mapping[str, Sequence[int]], *, seeds: Sequence[int] = (0, 1),
        log: Log | None = None) -> dict[str, Interval]:
    """QLD of each removal set (corpus positions) against random sets of the same size
    (:func:`qld_rows`' ``vs_random``, one entry per removal)."""
    rows = qld_rows(retrainer, corpus, queries, removals, seeds=seeds, log=log)
    return {name: rows[name].vs_random for name in removals}


def same_label_ids(corpus: Sequence[Example], queries: Sequence[Example],
                   top_ids: Sequence[str], *, seed: int = 0) -> tuple[str, list[str]] | None:
    """The behaviour's label and ``len(top_ids)`` random corpus ids of that label (at most as
    many as it has), for the same-label baseline; ``None`` when the corpus is unlabelled.

    The label is the queries' own when they all carry the same one (evaluation data), else the
    most common label among the corpus examples in ``top_ids`` (an incident's exemplars carry
    none; ties: the alphabetically first). Drawn with ``random.Random(f"same_label:{seed}")``
    from every example of the label, the top-k included: a perfect class identifier's pick.
    """
    labels = {q.label for q in queries}
    by_id = {e.id: e for e in corpus}
    if len(labels) == 1 and None not in labels:
        label = str(next(iter(labels)))
    else:
        counts: dict[str, int] = {}
        for i in top_ids:
            lab = by_id[i].label if i in by_id else None
            if lab is not None:
                counts[str(lab)] = counts.get(str(lab), 0) + 1
        if not counts:
            return None
        label = min(counts, key=lambda lab: (-counts[lab], lab))
    pool = [e.id for e in corpus if e.label is not None and str(e.label) == label]
    if not pool:
        return None
    return label, random.Random(f"same_label:{seed}").sample(pool, min(len(top_ids), len(pool)))


def lds(retrainer: Retrains, corpus: Sequence[Example], queries: Sequence[Example],
        scores: Mapping[str, torch.Tensor], *, subsets: int = 32, seed: int = 0,
        log: Log | None = None) -> dict[str, Interval]:
    """LDS of each method's (queries × corpus) score matrix over ``subsets`` half-corpus
    retrains (module docstring); interval = bootstrap over queries."""
    from scipy.stats import spearmanr

    rng = random.Random(10_000 + seed)
    n = len(corpus)
    masks: list[list[int]] = []
    losses: list[list[float]] = []
    for m in range(subsets):
        keep = sorted(rng.sample(range(n), n // 2))
        masks.append(keep)
        losses.append(retrainer.losses([corpus[i] for i in keep], queries, seed))
        if log and (m + 1) % 8 == 0:
            log(f"  lds: {m + 1}/{subsets} half-corpus retrains")
    out: dict[str, Interval] = {}
    for name, mat in scores.items():
        rhos = []
        for q in range(len(queries)):
            row = mat[q].double()
            pred = [float(row[keep].sum()) for keep in masks]
            actual = [-losses[m][q] for m in range(subsets)]
            rho = spearmanr(pred, actual).statistic
            rhos.append(0.0 if rho != rho else float(rho))  # constant scores: no correlation
        out[name] = bootstrap_mean(rhos)
    return out


def verify_by_retraining(model_dir: Path, adapter_dir: Path | None, corpus: Sequence[Example],
                         top_ids: Sequence[str], queries: Sequence[Example], *, epochs: int,
                         lr: float, seed: int = 0, device: str | None = None,
                         max_length: int = 512) -> dict[str, Any]:
    """Counterfactual check of an attribution by retraining the LoRA adapter (module docstring).

    ``effect(S) = LL(full) − LL(without S)`` in nats per token (> 0: without S the drifted
    outputs became less likely); ``supports_attribution`` when the top-k's effect exceeds the
    random control's. Raises ``ValueError`` without an adapter (retraining a whole model is not
    a worker's job) or when no attributed example is in ``corpus``.
    """
    if adapter_dir is None:
        raise ValueError("retraining verification needs a LoRA adapter (adapter_dir)")
    by_id = {e.id: e for e in corpus}
    top = [i for i in top_ids if i in by_id]
    if not top:
        raise ValueError("none of the attributed examples is in the verification corpus")
    rest = sorted(i for i in by_id if i not in set(top_ids))
    control = random.Random(seed).sample(rest, min(len(top), len(rest)))
    retrainer = Retrainer(Path(model_dir), Path(adapter_dir), epochs=epochs,
                          max_length=max_length, lr=lr, device=device)

    def loglik(drop: set[str]) -> float:
        kept = [e for e in corpus if e.id not in drop]
        losses = retrainer.losses(kept, queries, seed)
        return -sum(losses) / max(len(losses), 1)

    same = same_label_ids(corpus, queries, top, seed=seed)
    full, without_top, without_rand = loglik(set()), loglik(set(top)), loglik(set(control))
    eff_top, eff_rand = full - without_top, full - without_rand
    out: dict[str, Any] = {
        "method": "lora_retrain",
        "settings": {"epochs": epochs, "lr": lr, "seed": seed,
                     "same_label": same[0] if same is not None else None},
        "loglik_before": full,
        "top_k": {"ids": top, "loglik_after": without_top, "effect": eff_top},
        "random": {"ids": control, "loglik_after": without_rand, "effect": eff_rand},
        "ratio": eff_top / eff_rand if eff_rand > 0 else None,
        "supports_attribution": eff_top > eff_rand,
    }
    if same is not None:
        without_same = loglik(set(same[1]))
        out["same_label"] = {"ids": same[1], "loglik_after": without_same,
                             "effect": full - without_same}
    return out
