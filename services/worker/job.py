"""One attribution job: an incident's exemplars → a report (pure of Kafka and Redis).

:class:`Attributor` holds the loaded models (cached per model+adapter directory, loaded on first
use) and runs, for a :class:`~driftscope_llm.services.worker.settings.ModelTarget`, every
configured method's index over the exemplars. Indexes are opened afresh for each job, so each
job re-checks the manifest against the model and every shard's sha256: a swapped or corrupted
index fails the job with a reason instead of silently scoring garbage.

The time limit is checked between steps (model load, each method, each query chunk); a running
forward pass is not interrupted, so a job overruns its limit by at most one chunk.
On CUDA, an out-of-memory error halves the batch size and retries the chunk, down to 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftscope_llm.attribution.agreement import agreement
from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import (
    IndexCorruptError,
    IndexError_,
    IndexMismatchError,
    ModelLoadError,
)
from driftscope_llm.services.store.attribution_report import (
    AggregateRow,
    AgreementSummary,
    AttributedReport,
    ExemplarAgreement,
    ExemplarRanking,
    MethodResult,
    Trust,
    Verification,
    VerificationFailure,
)
from driftscope_llm.services.store.facets import headline
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.worker.aggregate import aggregate_mrr, manifest_id
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.settings import ModelTarget

if TYPE_CHECKING:
    from driftscope_llm.attribution.index.feature_index import Index, QueryResult
    from driftscope_llm.attribution.modeling import LoadedModel

__all__ = ["Attributor", "behaviour_queries", "exemplar_queries"]

log = logging.getLogger("driftscope.worker")


def exemplar_queries(incident: Incident, limit: int) -> tuple[list[Example], list[str]]:
    """Queries from the incident's exemplars (prompt + output), and the ids skipped (no text)."""
    queries: list[Example] = []
    skipped: list[str] = []
    for ex in incident.exemplars:
        if not ex.output or not ex.output.strip():
            skipped.append(ex.event_id)
            continue
        if len(queries) < limit:
            queries.append(Example(ex.event_id, ex.prompt or "", ex.output))
    return queries, skipped


def behaviour_queries(incident: Incident, queries: Sequence[Example]) -> list[Example]:
    """The queries that show the behaviour the incident is about: the exemplars of its headline
    facet (e.g. the refusals of a refusal rise), or every query when the incident has no facets
    or none of the headline's exemplars has text.

    Verification asks whether unlearning the top-k changes *that* behaviour; an incident's other
    facets (a latency shift, a confidence drop in another segment) have exemplars whose
    likelihood says nothing about it, and unlearning random examples lowers every text's
    likelihood a little, so mixing them in blurs the comparison.
    """
    top = headline(incident.facets)
    if top is None:
        return list(queries)
    mine = set(top.exemplars)
    chosen = [q for q in queries if q.id in mine]
    return chosen or list(queries)


class _Deadline:
    def __init__(self, limit_s: float, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.limit_s = limit_s
        self.start = clock()

    def check(self, step: str) -> None:
        spent = self.clock() - self.start
        if spent > self.limit_s:
            raise JobFailedError("time_limit", f"{spent:.1f}s spent (limit {self.limit_s:g}s) "
                                               f"before {step}")


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


class Attributor:
    """Runs attribution jobs; keeps loaded models between jobs (``max_models`` of them)."""

    def __init__(self, *, device: str | None = None, max_models: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self.max_models = max_models
        self.clock = clock
        self._models: dict[tuple[str, str | None], LoadedModel] = {}

    def _model(self, target: ModelTarget) -> LoadedModel:
        from driftscope_llm.attribution.modeling import load_model

        key = (str(target.model_dir), str(target.adapter_dir) if target.adapter_dir else None)
        if key not in self._models:
            try:
                model = load_model(target.model_dir, target.adapter_dir, device=self.device)
            except ModelLoadError as exc:
                raise JobFailedError("model_load", str(exc)) from exc
            while len(self._models) >= self.max_models:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return self._models[key]

    @staticmethod
    def _open(method: str, path: Path, model: LoadedModel) -> Index:
        from driftscope_llm.attribution.index.feature_index import open_index

        if not (path / "manifest.json").is_file():
            raise JobFailedError("index_missing", f"no index for {method!r} at {path}")
        try:
            return open_index(path, model=model, method=method)
        except IndexMismatchError as exc:
            raise JobFailedError("index_mismatch", str(exc)) from exc
        except IndexCorruptError as exc:
            raise JobFailedError("index_corrupt", str(exc)) from exc
        except IndexError_ as exc:
            raise JobFailedError("index_corrupt", str(exc)) from exc
        except (KeyError, TypeError, ValueError, OSError) as exc:  # a manifest edited by hand
            raise JobFailedError("index_corrupt", f"index at {path} is unusable: {exc!r}") from exc

    def _query(self, index: Index, queries: Sequence[Example], target: ModelTarget,
               deadline: _Deadline, method: str) -> list[QueryResult]:
        out: list[QueryResult] = []
        batch = target.batch_size
        start = 0
        while start < len(queries):
            deadline.check(f"{method} queries {start}..")
            chunk = queries[start : start + batch]
            try:
                out.extend(index.query(chunk, target.top_k, batch_size=batch,
                                       query_ids=[q.id for q in chunk]))
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                if batch == 1:
                    raise JobFailedError("out_of_memory", f"{method}: out of memory at batch "
                                                          "size 1") from exc
                import torch

                torch.cuda.empty_cache()
                batch = max(1, batch // 2)
                log.warning("%s: out of memory, retrying with batch size %d", method, batch)
                continue
            start += len(chunk)
        return out

    def run(self, incident: Incident, target_key: str, target: ModelTarget) -> AttributedReport:
        """Attribute ``incident``'s exemplars with every method of ``target``; the report.

        Raises :class:`JobFailedError` for every expected failure (module docstring).
        """
        started_at = datetime.now(UTC)
        deadline = _Deadline(target.time_limit_s, self.clock)
        queries, skipped = exemplar_queries(incident, target.max_exemplars)
        if not queries:
            raise JobFailedError("no_exemplars", f"none of {len(incident.exemplars)} exemplars "
                                                 "has output text", incident_id=incident.id)
        for method in target.methods:  # a missing index fails now, not after loading the model
            path = Path(target.indexes[method])
            if not (path / "manifest.json").is_file():
                raise JobFailedError("index_missing", f"no index for {method!r} at {path}",
                                     incident_id=incident.id)
        t0 = self.clock()
        model = self._model(target)
        timings: dict[str, float] = {"load_model_s": self.clock() - t0}
        per_method: dict[str, list[QueryResult]] = {}
        methods: dict[str, MethodResult] = {}
        for method in target.methods:
            deadline.check(f"method {method}")
            path = Path(target.indexes[method])
            t1 = self.clock()
            index = self._open(method, path, model)
            results = self._query(index, queries, target, deadline, method)
            per_method[method] = results
            methods[method] = MethodResult(
                spec=index.settings.spec, index=str(path), manifest_id=manifest_id(path),
                corpus_hash=index.manifest.corpus.hash,
                seconds=self.clock() - t1,
                per_exemplar=[ExemplarRanking.model_validate(r.to_json()) for r in results],
                aggregate=aggregate_mrr(results, target.top_k))
        deadline.check("the report")
        primary = target.primary_method
        verification = self._verify(target, methods[primary].aggregate,
                                    behaviour_queries(incident, queries), deadline)
        agree = agreement(per_method, k=target.top_k) if len(per_method) > 1 else []
        timings["total_s"] = self.clock() - deadline.start
        summary = _agreement_summary(agree)
        return AttributedReport(
            target=target_key, model_dir=str(target.model_dir),
            adapter_dir=str(target.adapter_dir) if target.adapter_dir else None,
            model_fingerprint=model.fingerprint, primary_method=primary, top_k=target.top_k,
            aggregation="mean reciprocal rank over exemplars "
                        "(driftscope_llm.services.worker.aggregate)",
            aggregate=methods[primary].aggregate, methods=methods,
            index_manifest_ids={m: v.manifest_id for m, v in methods.items()},
            agreement=summary, trust=_trust(methods[primary].spec, incident.signal, summary),
            exemplars=[q.id for q in queries],
            skipped_exemplars=skipped, timings=timings, verification=verification,
            started_at=started_at, finished_at=datetime.now(UTC))

    def _verify(self, target: ModelTarget, aggregate: Sequence[AggregateRow],
                queries: Sequence[Example], deadline: _Deadline
                ) -> Verification | VerificationFailure | None:
        """Behavioural verification when configured; its failure is reported, not fatal."""
        if not target.verify.enabled:
            return None
        deadline.check("verification")
        from driftscope_llm.attribution.data import load_corpus
        from driftscope_llm.attribution.errors import CorpusError
        from driftscope_llm.attribution.verify import verify

        if target.verify.corpus is None:
            return VerificationFailure(error="verify.corpus is not set")
        t0 = self.clock()
        try:
            corpus = load_corpus(target.verify.corpus)
            top_ids = [row.id for row in aggregate[: target.top_k]]
            if target.verify.mode == "replay":
                from driftscope_llm.attribution.replay import verify_by_replay

                out = verify_by_replay(target.model_dir, target.adapter_dir, corpus, top_ids,
                                       queries, seed=target.verify.seed, device=self.device)
            elif target.verify.mode == "retrain":
                from driftscope_llm.attribution.counterfactual import verify_by_retraining

                v = target.verify
                out = verify_by_retraining(target.model_dir, target.adapter_dir, corpus, top_ids,
                                           queries, epochs=v.retrain_epochs, lr=v.retrain_lr,
                                           seed=v.seed, device=self.device)
            else:
                out = verify(target.model_dir, target.adapter_dir, corpus, top_ids, queries,
                             target.verify, device=self.device)
        except (CorpusError, ModelLoadError, ValueError, OSError) as exc:  # ReplayError too
            return VerificationFailure(error=f"{type(exc).__name__}: {exc}")
        out["settings"] = {**out.get("settings", {}), "exemplars": [q.id for q in queries]}
        return Verification.model_validate({**out, "seconds": self.clock() - t0})


def _trust(method: str, signal: str, summary: AgreementSummary) -> Trust:
    """How far to trust the primary method here (:mod:`driftscope_llm.attribution.trust`)."""
    from driftscope_llm.attribution.trust import assess

    return Trust.model_validate(assess(method, signal, summary.mean_overlap).to_json())


def _agreement_summary(agree: list[Any]) -> AgreementSummary:
    if not agree:
        return AgreementSummary()
    overlaps = [a.mean_overlap for a in agree if a.mean_overlap is not None]
    rhos = [a.mean_spearman for a in agree if a.mean_spearman is not None]
    return AgreementSummary(
        per_exemplar=[ExemplarAgreement.model_validate({"query_id": a.query_id, **a.to_json()})
                      for a in agree],
        mean_overlap=sum(overlaps) / len(overlaps) if overlaps else None,
        mean_spearman=sum(rhos) / len(rhos) if rhos else None)
