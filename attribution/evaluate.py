"""The evaluation harness: how well does each method find the examples behind a behaviour?

:func:`evaluate` scores every method on a labelled corpus and labelled queries with a given
model; :func:`evaluate_tasks` does it for the generated miniature tasks of
:mod:`attribution.tasks`, fine-tuning a tiny model per task first. Metrics are those of
:mod:`driftscope_llm.attribution.metrics` (Acc, Cover, auPRC), averaged over queries.

``seconds`` per method = building its index (featurizing the corpus) + featurizing the queries +
scoring them. Methods sharing features (``gradsim:*``, ``lissa``, ``datainf``) share one index;
each is charged the shared featurization time, so the column compares methods as if run alone.
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
from driftscope_llm.attribution.index import build_index, featurize
from driftscope_llm.attribution.methods.base import get_method
from driftscope_llm.attribution.metrics import average_precision, cover, top1_accuracy
from driftscope_llm.attribution.modeling import LoadedModel, load_model
from driftscope_llm.attribution.settings import AttributionSettings
from driftscope_llm.attribution.tasks import Task, make_task
from driftscope_llm.attribution.tinymodel import Arch, build_tiny_model, cpu_threads

__all__ = ["DEFAULT_EVAL_METHODS", "EvalRow", "evaluate", "evaluate_tasks"]

#: Every method and variant the default evaluation compares.
DEFAULT_EVAL_METHODS = (
    "repsim:mean_response", "repsim:last_response", "repsim:last_prompt",
    "repsim:mean_response@1", "repsim:last_response@1", "repsim:last_prompt@1",
    "gradsim:cosine", "gradsim:dot", "lissa", "datainf",
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
    counts: dict[str, int] = {}
    for lab in corpus_labels:
        counts[lab] = counts.get(lab, 0) + 1
    label_of = dict(zip([e.id for e in corpus], corpus_labels, strict=True))
    base = base or AttributionSettings()
    shared: dict[str, tuple[Any, Any, float]] = {}  # feature key -> (index, query feats, secs)
    rows = []
    for spec in methods:
        settings = spec if isinstance(spec, AttributionSettings) else base.with_method(spec)
        key = json.dumps(settings.feature_key(), sort_keys=True)
        if key not in shared:
            t0 = time.perf_counter()
            index = build_index(model, corpus, Path(workdir) / f"index-{len(shared)}", settings,
                                batch_size=batch_size, overwrite=True)
            qf = featurize(index.method, model, queries, batch_size=batch_size)
            shared[key] = (index, qf, time.perf_counter() - t0)
        index, qf, feat_secs = shared[key]
        index.method = get_method(settings)
        t0 = time.perf_counter()
        results = index.results(qf, index.count, [q.id for q in queries])
        secs = feat_secs + time.perf_counter() - t0
        accs, covers, aps = [], [], []
        for res, lab in zip(results, query_labels, strict=True):
            ranked = [label_of[h.id] for h in res.results]
            accs.append(top1_accuracy(ranked, lab))
            covers.append(cover(ranked, lab, counts.get(lab, 0)))
            aps.append(average_precision(ranked, lab))
        n = len(queries)
        row = EvalRow(settings.spec, task, sum(accs) / n, sum(covers) / n, sum(aps) / n,
                      round(secs, 3), n)
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
