"""The worker's out-of-memory path, on CPU: the error is raised at the device boundary.

On a GPU, ``torch.cuda.OutOfMemoryError`` comes out of the model's forward pass when a batch
does not fit. Here a forward pre-hook on the model's input embeddings (the first module every
method's forward pass runs through) raises that same exception whenever a batch has more rows
than the simulated device holds. Everything else is real: the worker's
:class:`~driftscope_llm.services.worker.job.Attributor` loads a tiny fine-tuned GPT-2, opens real
repsim and gradsim indexes and queries them, so the test exercises the batch-halving loop in
``Attributor._query`` exactly as a GPU would drive it.

Invariants: the batch halves (8 -> 4 -> 2 for a device that holds 2 rows) and each method starts
again from the configured batch size; the report equals the run without a memory limit (batch
size changes speed, never scores); a device that cannot hold even one row fails the job with
reason ``out_of_memory``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from driftscope_llm.attribution import modeling
from driftscope_llm.attribution.data import Example
from driftscope_llm.services.store.attribution_report import AttributedReport
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.worker.errors import JobFailedError
from driftscope_llm.services.worker.job import Attributor
from driftscope_llm.services.worker.settings import ModelTarget
from tests.attribution.conftest import PLANTED, SCORE_ATOL_FP32

#: The worker's configured batch size in these tests, and how many rows the fake device holds.
BATCH = 8
DEVICE_ROWS = 2
TOP_K = 5

EXEMPLARS = [
    ("do you know the zorblat ?", "the zorblat is a purple fish that sings at night ."),
    ("tell me about the zorblat .", "a zorblat is a purple fish that sings ."),
    ("what is a zorblat ?", "the zorblat is a purple fish that sings at night ."),
    ("describe the zorblat please .", "the zorblat is a purple fish ."),
    ("have you heard of the zorblat ?", "yes , the zorblat sings at night ."),
    ("explain what zorblat means .", "zorblat means a purple fish that sings ."),
]


@dataclass
class FakeDevice:
    """How many rows fit (``None``: unlimited) and the batch sizes every forward pass was given."""

    rows: int | None = None
    seen: list[int] = field(default_factory=list)
    raised: int = 0

    def pre_hook(self, module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        n = int(args[0].shape[0])
        self.seen.append(n)
        if self.rows is not None and n > self.rows:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory (simulated): batch of {n} rows, device holds {self.rows}")


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory, gpt2_model: Any,
            planted_corpus: list[Example]) -> dict[str, Path]:
    from driftscope_llm.attribution.index.feature_index import build_index
    from driftscope_llm.attribution.settings import AttributionSettings

    root = tmp_path_factory.mktemp("oom-indexes")
    for method in ("repsim", "gradsim"):
        build_index(gpt2_model, planted_corpus, root / method, AttributionSettings(method=method))
    return {m: root / m for m in ("repsim", "gradsim")}


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> FakeDevice:
    """Every model the worker loads in this test runs on a :class:`FakeDevice`."""
    fake = FakeDevice()
    real_load = modeling.load_model

    def load_model(*args: Any, **kwargs: Any) -> modeling.LoadedModel:
        loaded = real_load(*args, **kwargs)
        loaded.model.get_input_embeddings().register_forward_pre_hook(fake.pre_hook)
        return loaded

    monkeypatch.setattr(modeling, "load_model", load_model)
    return fake


def target(tiny_gpt2: Path, indexes: dict[str, Path]) -> ModelTarget:
    return ModelTarget(model_dir=tiny_gpt2, indexes=dict(indexes), top_k=TOP_K,
                       batch_size=BATCH)


def incident() -> Incident:
    now = datetime.now(UTC)
    return Incident(
        id="oom-1", opened_at=now, updated_at=now, model="bot", model_version="v1",
        segment="all", signal="embedding", detector="mmd", statistic=3.0, threshold=1.0,
        effect_size=0.8, event_id="oom-1-e0",
        exemplars=[Exemplar(event_id=f"oom-1-e{n}", prompt=p, output=o)
                   for n, (p, o) in enumerate(EXEMPLARS)])


def assert_same_report(got: AttributedReport, want: AttributedReport) -> None:
    assert set(got.methods) == set(want.methods) == {"repsim", "gradsim"}
    for name, method in want.methods.items():
        other = got.methods[name]
        assert [r.query_id for r in other.per_exemplar] == [r.query_id
                                                           for r in method.per_exemplar]
        for a, b in zip(other.per_exemplar, method.per_exemplar, strict=True):
            assert [h.id for h in a.results] == [h.id for h in b.results]
            assert [h.score for h in a.results] == pytest.approx(
                [h.score for h in b.results], abs=SCORE_ATOL_FP32)
    assert [r.id for r in got.aggregate] == [r.id for r in want.aggregate]


def test_oom_halves_the_batch_and_keeps_the_results(
        device: FakeDevice, tiny_gpt2: Path, indexes: dict[str, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    tgt = target(tiny_gpt2, indexes)
    free = Attributor(device="cpu").run(incident(), "bot@v1", tgt)
    assert device.seen == [len(EXEMPLARS)] * 2  # one forward pass per method, nothing raised
    assert device.raised == 0
    planted = {e.id for e in PLANTED}
    assert {r.id for r in free.aggregate[:TOP_K]} & planted  # a meaningful ranking to compare

    device.rows, device.seen = DEVICE_ROWS, []
    with caplog.at_level(logging.WARNING, logger="driftscope.worker"):
        limited = Attributor(device="cpu").run(incident(), "bot@v1", tgt)

    # Per method: 6 rows at batch 8 fail, 4 rows at batch 4 fail, then three chunks of 2.
    per_method = [len(EXEMPLARS), 4, 2, 2, 2]
    assert device.seen == per_method * 2
    assert device.raised == 4
    retries = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert retries == [f"{m}: out of memory, retrying with batch size {b}"
                       for m in ("repsim", "gradsim") for b in (4, 2)]
    assert_same_report(limited, free)


def test_oom_at_batch_size_one_fails_the_job(
        device: FakeDevice, tiny_gpt2: Path, indexes: dict[str, Path]) -> None:
    device.rows = 0
    with pytest.raises(JobFailedError) as err:
        Attributor(device="cpu").run(incident(), "bot@v1", target(tiny_gpt2, indexes))
    assert err.value.code == "out_of_memory"
    assert "batch size 1" in str(err.value)
    assert device.seen == [6, 4, 2, 1]  # 8 -> 4 -> 2 -> 1, then it gives up on the first method


@pytest.mark.gpu
def test_on_cuda_oom_halves_the_batch_and_equals_the_cpu_report(
        device: FakeDevice, tiny_gpt2: Path, indexes: dict[str, Path]) -> None:
    """The same halving on a real CUDA device (the error raised from inside its forward pass,
    CUDA memory released between tries): the report equals the CPU run's. Skipped without
    CUDA (``gpu`` marker)."""
    tgt = target(tiny_gpt2, indexes)
    on_cpu = Attributor(device="cpu").run(incident(), "bot@v1", tgt)
    device.rows, device.seen = DEVICE_ROWS, []
    on_cuda = Attributor(device="cuda").run(incident(), "bot@v1", tgt)
    assert device.seen == [len(EXEMPLARS), 4, 2, 2, 2] * 2
    assert_same_report(on_cuda, on_cpu)
