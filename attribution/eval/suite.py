"""The evaluation that one task family cannot win: families × models × seeds, with intervals
and counterfactual metrics.

:func:`run_suite` generates each task family (:mod:`driftscope_llm.attribution.eval.families`,
and optionally the seed paper's tasks of :mod:`driftscope_llm.attribution.eval.tasks`) for
several seeds, fine-tunes a tiny model per (family, seed, configuration) — GPT-2 or
Llama-style, full fine-tune or LoRA — and scores every method and baseline
(:func:`driftscope_llm.attribution.eval.evaluate.score_matrices`):

* **Acc / Cover / auPRC** per query, pooled over seeds and configurations, with a bootstrap 95%
  interval over those queries (:mod:`driftscope_llm.attribution.stats`); ``worst`` is the lowest
  per-configuration mean Cover (a method good on average but broken on LoRA shows here);
* **QLD and LDS** (:mod:`driftscope_llm.attribution.counterfactual`) on the first configuration
  and first seed's model, for the family's *target* queries: QLD removes each method's top-k
  (k = half the target's count in the corpus; the union over target queries ranked by summed
  per-query rank) and retrains ``cf_seeds`` times; LDS retrains on ``lds_subsets`` random halves.
  Two random baselines sit beside the methods: ``random`` (k random examples) and
  ``random:same_label`` (k random examples *of the target's label*, a perfect class identifier;
  its score matrix ranks each query's own label first in random order, so its Acc and Cover are
  1 by construction). Each method's QLD is reported against both (``qld``, ``qld_same``).

``magic`` (:mod:`driftscope_llm.attribution.replay`) is not an index method: the suite replays
each tiny model's recorded fine-tune and computes one metagradient per query (one replay per
model, the queries sharing every reverse step), so its Acc/Cover/LDS rows are per query like
every other method's; its ``seconds`` are the replays' wall time.

Cost is dominated by retraining: per family, ``(methods + 2) × cf_seeds + lds_subsets`` tiny
fine-tunes; docs/attribution.md records the wall time of the documented run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.counterfactual import SAME_LABEL, Retrainer, lds, qld_rows
from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import SettingsError
from driftscope_llm.attribution.eval.evaluate import canonical_spec, query_metrics, score_matrices
from driftscope_llm.attribution.eval.labelled_task import Task
from driftscope_llm.attribution.eval.real_config import (
    RealConfig,
    build_real_model,
    counterfactual_cost,
)
from driftscope_llm.attribution.eval.tasks import make_task
from driftscope_llm.attribution.modeling import LoadedModel, load_model
from driftscope_llm.attribution.stats import Interval, bootstrap_mean
from driftscope_llm.attribution.tinymodel import Arch, TinyModel, build_tiny_model, cpu_threads
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["SUITE_CONFIGS", "SUITE_FAMILIES", "SUITE_METHODS", "SUITE_ONLY", "Config",
           "SuiteRow", "magic_matrix", "run_suite", "same_label_matrix"]

Log = Callable[[str], None]

SUITE_FAMILIES = ("style", "rule", "trigger", "topic")
#: every index method, the three baselines, and two fusions of RepSim with a curvature method
#: (``magic`` is left out of the default: one replay per model costs ~10-70x a fine-tune)
SUITE_METHODS = (
    "repsim:mean_response", "repsim:last_response", "repsim:last_prompt", "gradsim:cosine",
    "gradsim:dot", "lissa", "datainf", "ekfac", "trackstar", "bm25", "random", SAME_LABEL,
    "fuse:repsim:mean_response+ekfac", "fuse:repsim:mean_response+trackstar",
)


#: methods the suite computes itself (not through an index): the same-label random baseline and
#: exact replay
SUITE_ONLY = (SAME_LABEL, "magic")


@dataclass(frozen=True)
class Config:
    """A tiny-model configuration: architecture and whether the fine-tune is LoRA."""

    arch: Arch
    lora: bool

    @property
    def name(self) -> str:
        return f"{self.arch}/{'lora' if self.lora else 'full'}"


SUITE_CONFIGS = (Config("gpt2", False), Config("gpt2", True), Config("llama", False),
                 Config("llama", True))


@dataclass(frozen=True)
class SuiteRow:
    """One method on one family; intervals pooled over seeds and configurations."""

    family: str
    method: str
    acc: Interval
    cover: Interval
    auprc: Interval
    worst_cover: float
    cover_by_config: dict[str, float]
    seconds: float
    queries: int
    qld: Interval | None = None
    lds: Interval | None = None
    removed: int | None = field(default=None)
    #: QLD against the same-label random baseline (> 0: beats a perfect class identifier)
    qld_same: Interval | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family, "method": self.method, "acc": self.acc.to_json(),
            "cover": self.cover.to_json(), "auprc": self.auprc.to_json(),
            "worst_cover": self.worst_cover, "cover_by_config": self.cover_by_config,
            "qld": self.qld.to_json() if self.qld else None,
            "lds": self.lds.to_json() if self.lds else None, "removed": self.removed,
            "qld_same": self.qld_same.to_json() if self.qld_same else None,
            "seconds": round(self.seconds, 3), "queries": self.queries,
        }


def _removal(mat: torch.Tensor, k: int) -> list[int]:
    """Top-k corpus positions by summed per-query rank (rank 0 = best)."""
    ranks = torch.argsort(torch.argsort(mat, dim=1, descending=True, stable=True), dim=1)
    return torch.argsort(ranks.sum(0).double(), stable=True)[:k].tolist()


def same_label_matrix(query_labels: Sequence[str], corpus_labels: Sequence[str],
                      seed: int) -> torch.Tensor:
    """Scores of the perfect class identifier: 1 + U[0, 1) for a corpus example of the query's
    label, U[0, 1) otherwise (``torch.Generator(seed)``): its own label first, in random order."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(len(query_labels), len(corpus_labels), generator=gen)
    same = torch.tensor([[float(c == q) for c in corpus_labels] for q in query_labels])
    return same + noise


def magic_matrix(tiny: TinyModel, corpus: Sequence[Example], queries: Sequence[Example]
                 ) -> tuple[torch.Tensor, float]:
    """(queries × corpus) metagradient scores of a tiny model's recorded fine-tune, one row per
    query, from one replay (checked against the saved weights); and its wall time."""
    from driftscope_llm.attribution.replay import ReplayAttributor

    t0 = time.perf_counter()
    ra = ReplayAttributor(tiny.model_dir, tiny.adapter_dir, corpus, device="cpu")
    ra.reproduction_error(ra.replay.run()[0])
    scores, _, _ = ra.replay.metagradients([[q] for q in queries])
    return scores.float(), time.perf_counter() - t0


def run_suite(
    workdir: str | Path,
    *,
    families: Sequence[str] = SUITE_FAMILIES,
    configs: Sequence[Config | RealConfig] = SUITE_CONFIGS,
    seeds: Sequence[int] = (0, 1),
    methods: Sequence[str] = SUITE_METHODS,
    epochs: int = 12,
    counterfactual: bool = True,
    cf_seeds: Sequence[int] = (0, 1),
    lds_subsets: int = 32,
    log: Log | None = None,
) -> list[SuiteRow]:
    """Run the evaluation grid (module docstring); one row per (family, method)."""
    methods = list(dict.fromkeys(m if m in SUITE_ONLY else canonical_spec(m)
                                 for m in methods))
    real = [c.name for c in configs if isinstance(c, RealConfig)]
    if real and "magic" in methods:
        raise SettingsError(f"magic replays tiny fine-tunes only; drop it or {real[0]}",
                            field="methods")
    with cpu_threads(1):
        return [row for fam in families
                for row in _family(Path(workdir) / fam, fam, configs, seeds, methods, epochs,
                                   counterfactual, cf_seeds, lds_subsets, log)]


def _family(work: Path, family: str, configs: Sequence[Config | RealConfig], seeds: Sequence[int],
            methods: Sequence[str], epochs: int, counterfactual: bool,
            cf_seeds: Sequence[int], lds_subsets: int, log: Log | None) -> list[SuiteRow]:
    per: dict[str, dict[str, list[tuple[float, float, float]]]] = {m: {} for m in methods}
    secs: dict[str, float] = {m: 0.0 for m in methods}
    cf_input: tuple[Any, ...] | None = None
    for cfg in configs:
        for seed in seeds:
            run = work / f"{cfg.name.replace('/', '-')}-{seed}"
            t0 = time.perf_counter()
            task, model, tiny = _model(cfg, family, seed, run, epochs, counterfactual,
                                       (len(methods), len(cf_seeds), lds_subsets), log)
            corpus_labels = [str(e.label) for e in task.corpus]
            query_labels = [str(q.label) for q in task.queries]
            mats = score_matrices(model, task.corpus, task.queries,
                                  [m for m in methods if m not in SUITE_ONLY], workdir=run,
                                  seed=seed)
            if SAME_LABEL in methods:
                mats[SAME_LABEL] = (same_label_matrix(query_labels, corpus_labels, seed), 0.0)
            if "magic" in methods and tiny is not None:  # refused with a real config above
                mats["magic"] = magic_matrix(tiny, task.corpus, task.queries)
            for name in methods:
                mat, s = mats[name]
                per[name].setdefault(cfg.name, []).extend(
                    query_metrics(mat, query_labels, corpus_labels))
                secs[name] += s
            if log:
                best = max(methods, key=lambda m: sum(x[1] for x in per[m][cfg.name]))
                log(f"{family} {cfg.name} seed {seed}: {time.perf_counter() - t0:.0f}s; "
                    f"best cover so far {best}")
            if cf_input is None and tiny is not None:
                cf_input = (task, tiny, mats)
    cf = _counterfactual(family, cf_input, methods, epochs, cf_seeds, lds_subsets, log) \
        if counterfactual and cf_input is not None else {}
    rows = []
    for name in methods:
        pooled = [x for vals in per[name].values() for x in vals]
        by_cfg = {c: sum(x[1] for x in v) / len(v) for c, v in per[name].items()}
        q, ld, k, qs = cf.get(name, (None, None, None, None))
        rows.append(SuiteRow(
            family, name, bootstrap_mean([x[0] for x in pooled]),
            bootstrap_mean([x[1] for x in pooled]), bootstrap_mean([x[2] for x in pooled]),
            min(by_cfg.values()), by_cfg, secs[name], len(pooled), q, ld, k, qs))
    return rows


def _model(cfg: Config | RealConfig, family: str, seed: int, run: Path, epochs: int,
           counterfactual: bool, cf_shape: tuple[int, int, int], log: Log | None
           ) -> tuple[Task, LoadedModel, TinyModel | None]:
    """The task and fine-tuned model of one (configuration, family, seed); the tiny model's
    directories too (``None`` for a real configuration: no replay, no retrains)."""
    if isinstance(cfg, RealConfig):
        real = build_real_model(cfg, family, seed, run, log=log)
        if counterfactual and log:
            n, secs = counterfactual_cost(real.run.seconds, *cf_shape)
            log(f"{family} {cfg.name}: QLD/LDS not run; they would need {n} LoRA retrains "
                f"(~{secs / 60:.0f} min at {real.run.seconds:.0f}s per fine-tune)")
        return real.task, real.model, None
    task = make_task(family, seed)
    words = [t for q in task.queries for t in (q.prompt, q.response)]
    tiny = build_tiny_model(task.corpus, run / "model", arch=cfg.arch, lora=cfg.lora,
                            seed=seed, extra_texts=words, epochs=epochs)
    return task, load_model(tiny.model_dir, tiny.adapter_dir, device="cpu"), tiny


def _counterfactual(family: str, cf_input: tuple[Any, ...], methods: Sequence[str],
                    epochs: int, cf_seeds: Sequence[int], lds_subsets: int, log: Log | None
                    ) -> dict[str, tuple[Interval, Interval, int, Interval | None]]:
    task, tiny, mats = cf_input
    target = task.target_label
    sel = [i for i, q in enumerate(task.queries) if str(q.label) == target]
    queries = [task.queries[i] for i in sel]
    k = max(1, sum(1 for e in task.corpus if str(e.label) == target) // 2)
    retrainer = Retrainer(tiny.model_dir, tiny.adapter_dir, epochs=epochs)
    t0 = time.perf_counter()
    removals = {m: _removal(mats[m][0][sel], k) for m in methods
                if m not in ("random", SAME_LABEL)}
    pool = [i for i, e in enumerate(task.corpus) if str(e.label) == target]
    q = qld_rows(retrainer, task.corpus, queries, removals, seeds=cf_seeds, same_label=pool,
                 log=log)
    ld = lds(retrainer, task.corpus, queries, {m: mats[m][0][sel] for m in methods},
             subsets=lds_subsets, log=log)
    if log:
        log(f"{family}: counterfactual metrics in {time.perf_counter() - t0:.0f}s")
    return {m: (q[m].vs_random, ld[m], k, q[m].vs_same_label) for m in methods}
