"""Behavioural verification: does changing the attributed training data change the behaviour?

Attribution scores are a hypothesis; this module tests it on the model itself. For the top-k
attributed examples ``S`` and a control of k examples ``R`` drawn at random from the rest of the
corpus (``random.Random(seed)``), it starts from the deployed model twice and takes the same
number of **gradient-ascent** steps (AdamW, same learning rate and seed) on the response loss of
``S`` and of ``R`` respectively — a cheap approximation of re-fine-tuning without them
("unlearning" them) — then re-measures the drifted exemplars' mean response log-likelihood::

    LL(θ)     = −(1/Q) Σ_q CE_response(q; θ)         (mean per-token log-likelihood, ≤ 0)
    effect(S) = LL(θ₀) − LL(θ_S)                     (> 0: the behaviour became less likely)

If the attribution is right, ``effect(S)`` clearly exceeds ``effect(R)``; ``ratio`` =
effect(S) / effect(R) (``None`` when the control has no effect). With a LoRA adapter only the
adapter's weights move. On CPU use tiny models only; a 7B model needs a GPU and minutes.
Not a re-fine-tune from the base model: that is the stronger test and is not implemented here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from driftscope_llm.attribution.data import Example

__all__ = ["VerifySettings", "mean_loglik", "verify"]


class VerifySettings(BaseModel):
    """Behavioural verification (:func:`verify`); off unless ``enabled``. ``corpus`` is the
    fine-tuning corpus (JSONL) the control examples are drawn from."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    corpus: Path | None = Field(default=None, description="The fine-tuning corpus (JSONL).")
    epochs: int = Field(default=3, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    seed: int = 0
    #: ``ascent`` (this module's fast proxy), ``retrain``: retrain the LoRA adapter without
    #: the top-k and without random-k
    #: (:func:`driftscope_llm.attribution.counterfactual.verify_by_retraining`), or
    #: ``replay``: replay the recorded fine-tune exactly without them (needs the replay recipe
    #: beside the adapter or model, :func:`driftscope_llm.attribution.replay.verify_by_replay`)
    mode: Literal["ascent", "retrain", "replay"] = "ascent"
    retrain_epochs: int = Field(default=3, ge=1, description="Epochs of each adapter retrain.")
    retrain_lr: float = Field(default=1e-4, gt=0, description="Learning rate of the retrains.")


def mean_loglik(model: Any, tokenizer: Any, examples: Sequence[Example], *,
                max_length: int = 512, batch_size: int = 16) -> float:
    """Mean over ``examples`` of the mean per-token log-likelihood of the response."""
    import torch

    from driftscope_llm.attribution.formatting import collate
    from driftscope_llm.attribution.methods.gradients import response_loss

    device = next(model.parameters()).device
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            batch = collate(tokenizer, examples[s : s + batch_size], max_length).to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            total += float(response_loss(logits, batch.labels).sum())
    return -total / max(len(examples), 1)


def _ascend(model_dir: Path, adapter_dir: Path | None, device: str | None,
            removed: Sequence[Example], queries: Sequence[Example],
            settings: VerifySettings) -> float:
    import torch

    from driftscope_llm.attribution.formatting import collate
    from driftscope_llm.attribution.methods.gradients import response_loss
    from driftscope_llm.attribution.modeling import load_model

    loaded = load_model(model_dir, adapter_dir, device=device, dtype="float32")
    model = loaded.model
    for name, p in model.named_parameters():
        p.requires_grad_(adapter_dir is None or "lora_" in name)
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    batch = collate(loaded.tokenizer, list(removed), 512).to(loaded.device)
    model.train()
    for _ in range(settings.epochs):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        loss = -response_loss(logits, batch.labels).mean()  # ascent: maximise their loss
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    model.eval()
    return mean_loglik(model, loaded.tokenizer, queries)


def verify(model_dir: Path, adapter_dir: Path | None, corpus: Sequence[Example],
           top_ids: Sequence[str], queries: Sequence[Example], settings: VerifySettings, *,
           device: str | None = None) -> dict[str, Any]:
    """Effects of unlearning the top-k examples vs k random ones (module docstring)."""
    from driftscope_llm.attribution.modeling import load_model

    by_id = {e.id: e for e in corpus}
    top = [by_id[i] for i in top_ids if i in by_id]
    if not top:
        raise ValueError("none of the attributed examples is in the verification corpus")
    rest = sorted(i for i in by_id if i not in set(top_ids))
    control_ids = random.Random(settings.seed).sample(rest, min(len(top), len(rest)))
    control = [by_id[i] for i in control_ids]
    base = load_model(model_dir, adapter_dir, device=device, dtype="float32")
    before = mean_loglik(base.model, base.tokenizer, queries)
    del base
    after_top = _ascend(model_dir, adapter_dir, device, top, queries, settings)
    after_rand = _ascend(model_dir, adapter_dir, device, control, queries, settings)
    eff_top, eff_rand = before - after_top, before - after_rand
    return {
        "method": "gradient_ascent",
        "settings": settings.model_dump(mode="json"),
        "loglik_before": before,
        "top_k": {"ids": [e.id for e in top], "loglik_after": after_top, "effect": eff_top},
        "random": {"ids": control_ids, "loglik_after": after_rand, "effect": eff_rand},
        "ratio": eff_top / eff_rand if eff_rand > 0 else None,
        "supports_attribution": eff_top > eff_rand,
    }
