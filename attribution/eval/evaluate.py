"""The evaluation harness: how well does each method find the examples behind a behaviour?

:func:`evaluate` scores every method on a labelled corpus and labelled queries with a given
model; :func:`evaluate_tasks` does it for the generated miniature tasks of
:mod:`attribution.eval.tasks`, fine-tuning a tiny model per task first. Metrics are those of
:mod:`driftscope_llm.attribution.eval.metrics` (Acc, Cover, auPRC), averaged over queries.

``seconds`` per method = building its index (featurizing the corpus) + featurizing the queries +
scoring them. Methods sharing features (``gradsim:*``, ``lissa``, ``datainf``) share one index;
each is charged the shared featurization time, so the column compares methods as if run alone.
``bm25`` (:mod:`~driftscope_llm.attribution.methods.bm25`) and ``random`` (uniform scores) are
baselines run beside the methods; ``fuse:A+B`` sums the per-query z-scored scores of A and B.
The evaluation over the independent task families, with intervals and counterfactual metrics,
is :mod:`driftscope_llm.attribution.eval.suite`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import CorpusError
from driftscope_llm.attribution.eval.metrics import average_precision, cover, top1_accuracy
from driftscope_llm.attribution.eval.tasks import Task, make_task
from driftscope_llm.attribution.index.feature_index import build_index, featurize
from driftscope_llm.attribution.methods.base import get_method
from driftscope_llm.attribution.modeling import LoadedModel, load_model
from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec
from driftscope_llm.attribution.tinymodel import Arch, build_tiny_model, cpu_threads
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch

    from driftscope_llm.attribution.methods.bm25 import bm25_scores
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = [
    "DEFAULT_EVAL_METHODS", "EvalRow", "canonical_spec", "evaluate", "evaluate_tasks",
    "query_metrics",
    "score_matrices",
]

#: Every method and variant the default evaluation compares.
DEFAULT_EVAL_METHODS = (
    "repsim:mean_response", "repsim:last_response", "repsim:last_prompt",
    "repsim:mean_response@1", "repsim:last_response@1", "repsim:last_prompt@1",
    "gradsim:cosine", "gradsim:dot", "lissa", "datainf", "ekfac", "trackstar", "bm25", "random",
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalRow:
    """One method on one task: Acc, Cover, auPRC in [0, 1] (higher is better) and wall time."""

    method: str
    task: str | None
    acc: float
    cover: float
    auprc: float
    seconds: float
    queries: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.task is None:
            out.pop("task")
        return out


def _labels(examples: Sequence[Example], field: str, what: str) -> list[str]:
    out = []
    for e in examples:
        v = e.field_value(field)
        if v is None:
            raise CorpusError(f"{what} example {e.id!r} has no field {field!r}", path=what)
        out.append(str(v))
    return out


def canonical_spec(spec: str) -> str:
    """The name :func:`score_matrices` reports ``spec`` under (``repsim`` ->
    ``repsim:mean_response``; baselines and fusions of canonical parts unchanged); raises
    :class:`UnknownMethodError` / :class:`SettingsError` for a spec that names nothing."""
    if spec in ("bm25", "random"):
        return spec
    if spec.startswith("fuse:"):
        return "fuse:" + "+".join(canonical_spec(p) for p in spec[len("fuse:"):].split("+"))
    return parse_method_spec(spec).spec


def _full_scores(index: Any, feats: torch.Tensor) -> torch.Tensor:
    """(Q × N) scores of every corpus row, in corpus order, from the index's search."""
    scores, idx = index.search(feats, index.count)
    out = torch.empty(scores.shape[0], index.count)
    out.scatter_(1, idx, scores)
    return out


def _zscore(m: torch.Tensor) -> torch.Tensor:
    centred = m - m.mean(dim=1, keepdim=True)
    return centred / centred.std(dim=1, keepdim=True).clamp_min(1e-12)


def score_matrices(
    model: LoadedModel,
    corpus: Sequence[Example],
    queries: Sequence[Example],
    methods: Sequence[str | AttributionSettings],
    *,
    workdir: str | Path,
    batch_size: int = 16,
    base: AttributionSettings | None = None,
    seed: int = 0,
) -> dict[str, tuple[torch.Tensor, float]]:
    """Each method's (queries × corpus) scores, corpus in the given order, with its seconds.

    Besides registered method specs, ``methods`` may hold the baselines ``bm25`` and ``random``
    and fusions ``fuse:A+B`` (sum of the per-query z-scored scores of A and B, both also run).
    A fusion is charged the seconds of its parts.
    """
    base = base or AttributionSettings()
    shared: dict[str, tuple[Any, Any, float]] = {}  # feature key -> (index, query feats, secs)
    out: dict[str, tuple[torch.Tensor, float]] = {}
    fusions = [m for m in methods if isinstance(m, str) and m.startswith("fuse:")]
    plain: list[str | AttributionSettings] = [m for m in methods if m not in fusions]
    for f in fusions:
        plain += [p for p in f[len("fuse:"):].split("+") if p not in plain]
    for spec in plain:
        t0 = time.perf_counter()
        if spec == "bm25":
            out["bm25"] = (bm25_scores(corpus, queries), time.perf_counter() - t0)
            continue
        if spec == "random":
            gen = torch.Generator().manual_seed(seed)
            out["random"] = (torch.rand(len(queries), len(corpus), generator=gen), 0.0)
            continue
        settings = spec if isinstance(spec, AttributionSettings) else base.with_method(spec)
        key = json.dumps([settings.feature_key(), settings.method], sort_keys=True)
        if key not in shared:
            index = build_index(model, corpus, Path(workdir) / f"index-{len(shared)}", settings,
                                batch_size=batch_size, overwrite=True)
            qf = featurize(index.method, model, queries, batch_size=batch_size, queries=True)
            shared[key] = (index, qf, time.perf_counter() - t0)
            t0 = time.perf_counter()
        index, qf, feat_secs = shared[key]
        index.method = get_method(settings) if index.method.settings != settings else index.method
        out[settings.spec] = (_full_scores(index, qf), feat_secs + time.perf_counter() - t0)
    for f in fusions:
        parts = f[len("fuse:"):].split("+")
        keys = [base.with_method(p).spec if p not in ("bm25", "random") else p for p in parts]
        fused = torch.zeros(len(queries), len(corpus))
        for k in keys:
            fused += _zscore(out[k][0])
        out[f] = (fused, sum(out[k][1] for k in keys))
    return out


def query_metrics(scores: torch.Tensor, query_labels: Sequence[str],
                  corpus_labels: Sequence[str]) -> list[tuple[float, float, float]]:
    """(Acc, Cover, auPRC) of each query's full ranking (ties broken by corpus order)."""
    counts: dict[str, int] = {}
    for lab in corpus_labels:
        counts[lab] = counts.get(lab, 0) + 1
    out = []
    for row, lab in zip(scores, query_labels, strict=True):
        order = torch.argsort(row, descending=True, stable=True).tolist()
        ranked = [corpus_labels[i] for i in order]
        out.append((top1_accuracy(ranked, lab), cover(ranked, lab, counts.get(lab, 0)),
                    average_precision(ranked, lab)))
    return out


def evaluate(
    model: LoadedModel,
    corpus: Sequence[Example],
    queries: Sequence[Example],
    *,
    methods: Sequence[str | AttributionSettings] = DEFAULT_EVAL_METHODS,
    label_field: str = "label",
    workdir: str | Path,
    task: str | None = None,
    batch_size: int = 16,
    base: AttributionSettings | None = None,
    log: Log | None = None,
) -> list[EvalRow]:
    """Score each method's full ranking of ``corpus`` for every query (module docstring)."""
    corpus_labels = _labels(corpus, label_field, "corpus")
    query_labels = _labels(queries, label_field, "queries")
    mats = score_matrices(model, corpus, queries, methods, workdir=workdir,
                          batch_size=batch_size, base=base)
    rows = []
    for name, (mat, secs) in mats.items():
        per = query_metrics(mat, query_labels, corpus_labels)
        n = len(per)
        row = EvalRow(name, task, sum(p[0] for p in per) / n, sum(p[1] for p in per) / n,
                      sum(p[2] for p in per) / n, round(secs, 3), n)
        if log:
            log(f"{task or 'user'} {row.method}: acc={row.acc:.3f} cover={row.cover:.3f} "
                f"auprc={row.auprc:.3f} ({row.seconds:.1f}s)")
        rows.append(row)
    return rows


def evaluate_tasks(
    workdir: str | Path,
    *,
    tasks: Sequence[str] = ("harmful", "class", "backdoor"),
    methods: Sequence[str | AttributionSettings] = DEFAULT_EVAL_METHODS,
    seed: int = 0,
    arch: Arch = "gpt2",
    lora: bool = False,
    log: Log | None = None,
    num_threads: int | None = 1,
    epochs: int = 12,
) -> list[EvalRow]:
    """Generate each task, fine-tune a tiny model on its corpus, and :func:`evaluate` it.

    Runs with ``num_threads`` CPU threads (tiny models are fastest on one; see
    :func:`driftscope_llm.attribution.tinymodel.cpu_threads`).
    """
    with cpu_threads(num_threads):
        return _evaluate_tasks(Path(workdir), tasks, methods, seed, arch, lora, log, epochs)


def _evaluate_tasks(workdir: Path, tasks: Sequence[str],
                    methods: Sequence[str | AttributionSettings], seed: int, arch: Arch,
                    lora: bool, log: Log | None, epochs: int) -> list[EvalRow]:
    rows: list[EvalRow] = []
    for name in tasks:
        task: Task = make_task(name, seed)
        tdir = Path(workdir) / name
        t0 = time.perf_counter()
        words = [t for q in task.queries for t in (q.prompt, q.response)]
        tiny = build_tiny_model(task.corpus, tdir / "model", arch=arch, lora=lora, seed=seed,
                                extra_texts=words, epochs=epochs)
        if log:
            log(f"{name}: fine-tuned tiny {arch} on {len(task.corpus)} examples "
                f"in {time.perf_counter() - t0:.1f}s")
        model = load_model(tiny.model_dir, tiny.adapter_dir)
        rows += evaluate(model, task.corpus, task.queries, methods=methods, workdir=tdir,
                         task=name, log=log)
    return rows
