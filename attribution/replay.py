"""Exact replay of a recorded fine-tune, and its metagradient (MAGIC, Ilyas & Engstrom 2025).

When a fine-tune is replayable (:mod:`driftscope_llm.attribution.recipe`: initial trainable
weights, the batches in order, loss, AdamW hyperparameters, clipping), training is a
deterministic function of per-example data weights ``w`` (all 1 in the recorded run)::

    L_t(θ, w) = (1/|B_t|) Σ_{i∈B_t} w_i ℓ_i(θ)           step t's loss (ℓ_i: example i's loss)
    θ_{t+1}, m_{t+1}, v_{t+1} = AdamW(θ_t, m_t, v_t, clip(∇_θ L_t(θ_t, w)))
    Φ(w) = (1/Q) Σ_q CE_response(q; θ_T(w))               the incident's behaviour loss

and the **metagradient** ``∂Φ/∂w_i`` is exact, computed by reverse-mode differentiation through
every optimizer step (a Hessian-vector product per step, through the clip and AdamW's moments).
The score of example ``i`` is ``−∂Φ/∂w_i``: the first-order rise of the queries' loss when
``i`` is removed (``w_i``: 1 → 0). Higher = more responsible, the convention of every other
method; nats per response token; Σ over a set predicts removing the set (to first order).

How: :meth:`Replay.run` replays the steps with a functional AdamW that matches
``torch.optim.AdamW`` (single-tensor path, what CPU training uses) bit for bit, storing the
state (θ, m, v) every ``K = ⌈√T⌉`` steps; the reverse pass walks the segments backwards,
recomputes each segment's states from its checkpoint, and back-propagates the adjoint of
(θ, m, v) through one step at a time. Memory: about ``2√T`` optimizer states instead of ``T``;
time: about one forward replay plus, per step, a forward, a backward with graph and a double
backward (reported by :class:`ReplayCost` against the recorded fine-tune's wall time). One
replay answers one incident: all its queries pooled into ``Φ``.

:class:`ReplayAttributor` is the product path (``driftscope attribution query --method magic``
and the worker's ``verify.mode = replay``): it loads the model and the recipe, refuses a
missing recipe, another corpus, a non-deterministic forward (dropout), or a replay that does not
reproduce the saved weights within ``tolerance``, and ranks the corpus. Not for fine-tunes whose
recipe is unknown (use an index method), nor for models whose per-step double backward does not
fit in memory.

Example (a two-step "fine-tune" of one weight, replayed exactly)::

    >>> import torch
    >>> from driftscope_llm.attribution.recipe import AdamWRecipe
    >>> opt = AdamWRecipe(lr=0.1)
    >>> p = [torch.tensor([1.0, -2.0])]
    >>> m, v = [torch.zeros(2)], [torch.zeros(2)]
    >>> p1, m1, v1 = adamw_step(p, [torch.tensor([0.5, 0.0])], m, v, 1, opt)
    >>> p1[0]
    tensor([ 0.9000, -2.0000])
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import ModelLoadError, ReplayError
from driftscope_llm.attribution.formatting import EncodedBatch, collate
from driftscope_llm.attribution.methods.gradients import response_loss
from driftscope_llm.attribution.recipe import AdamWRecipe, ReplayRecipe, ordered_corpus_hash
from driftscope_llm.services.errors import MissingExtraError

try:
    import torch
    from torch import Tensor
except ImportError as exc:  # pragma: no cover
    raise MissingExtraError("torch", "attribution") from exc

__all__ = ["MagicResult", "Replay", "ReplayAttributor", "ReplayCost", "adamw_step",
           "clip_grads", "recipe_from_lora_run", "verify_by_replay"]

Tensors = list[Tensor]
Log = Callable[[str], None]


@dataclass
class _State:
    params: Tensors
    exp_avg: Tensors
    exp_avg_sq: Tensors


def _example_losses(logits: Tensor, labels: Tensor) -> Tensor:
    """Each example's mean response cross-entropy: :func:`response_loss` (float32, what
    training used), kept in float64 for a float64 replay (finite-difference checks)."""
    if logits.dtype != torch.float64:
        return response_loss(logits, labels)
    logits = logits[:, :-1]
    target = labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            target.reshape(-1), ignore_index=-100,
                                            reduction="none").view(target.shape)
    return tok.sum(1) / (target != -100).sum(1).clamp_min(1)


def _sqrt0(x: Tensor) -> Tensor:
    """``sqrt(x)`` with derivative 0 where ``x == 0`` (same values): a parameter whose gradient
    has always been 0 has ``v = 0``, where sqrt's derivative is infinite and 0·∞ would be NaN."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), x)


def adamw_step(params: Tensors, grads: Tensors, exp_avg: Tensors, exp_avg_sq: Tensors,
               step: int, opt: AdamWRecipe) -> tuple[Tensors, Tensors, Tensors]:
    """One ``torch.optim.AdamW`` update, out of place (differentiable); ``step`` is 1-based.

    The same operations in the same order as torch's single-tensor AdamW, so the values are
    identical bit for bit; only the derivative of sqrt at 0 is defined as 0 (:func:`_sqrt0`).
    """
    beta1, beta2 = opt.betas
    bias_correction1 = 1 - beta1 ** float(step)
    bias_correction2 = 1 - beta2 ** float(step)
    step_size = opt.lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    out_p, out_m, out_v = [], [], []
    for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq, strict=True):
        if opt.weight_decay != 0:
            p = p * (1 - opt.lr * opt.weight_decay)
        m = torch.lerp(m, g, 1 - beta1)
        v = torch.addcmul(v * beta2, g, g, value=1 - beta2)
        denom = _sqrt0(v) / bias_correction2_sqrt + opt.eps
        out_p.append(torch.addcdiv(p, m, denom, value=-step_size))
        out_m.append(m)
        out_v.append(v)
    return out_p, out_m, out_v


def clip_grads(grads: Tensors, max_norm: float | None, *, differentiable: bool = False
               ) -> Tensors:
    """``torch.nn.utils.clip_grad_norm_``'s scaling, out of place: ``g · min(1, max_norm /
    (‖g‖ + 1e-6))`` with ``‖g‖`` the norm over all tensors. ``differentiable``: per-tensor
    ``vector_norm`` (torch's foreach kernel has no double backward); values agree with the
    foreach path (the tests check it bit for bit on CPU)."""
    if max_norm is None:
        return list(grads)
    if differentiable:
        norms = [torch.linalg.vector_norm(g, 2.0) for g in grads]
    else:
        norms = list(torch._foreach_norm(grads, 2.0))
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    return [g * coef for g in grads]


@dataclass(frozen=True)
class ReplayCost:
    """What one metagradient cost, against the recorded fine-tune.

    ``ratio`` = total replay seconds / the fine-tune's recorded seconds (``None`` when the recipe
    has none); ``state_bytes`` = the most optimizer states (θ, m, v) held at once (checkpoints +
    one recomputed segment), against ``training_state_bytes`` (one state, what the fine-tune
    held); ``peak_rss_bytes`` = the process's resident-memory high-water mark afterwards.
    """

    steps: int
    checkpoint_every: int
    forward_s: float
    reverse_s: float
    finetune_s: float | None
    state_bytes: int
    training_state_bytes: int
    peak_rss_bytes: int

    @property
    def total_s(self) -> float:
        return self.forward_s + self.reverse_s

    @property
    def ratio(self) -> float | None:
        return self.total_s / self.finetune_s if self.finetune_s else None

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "checkpoint_every": self.checkpoint_every,
                "forward_s": round(self.forward_s, 3), "reverse_s": round(self.reverse_s, 3),
                "total_s": round(self.total_s, 3), "finetune_s": self.finetune_s,
                "ratio": round(self.ratio, 2) if self.ratio is not None else None,
                "state_bytes": self.state_bytes,
                "training_state_bytes": self.training_state_bytes,
                "peak_rss_bytes": self.peak_rss_bytes}


@dataclass(frozen=True)
class MagicResult:
    """One incident's metagradient: ``scores[i] = −∂Φ/∂w_i`` for corpus position ``i``."""

    scores: Tensor
    query_loss: float
    cost: ReplayCost
    reproduction_error: float | None = None
    ids: list[str] = field(default_factory=list)

    def top(self, k: int) -> list[tuple[int, str, float]]:
        """(rank, id, score) of the ``k`` highest scores, ties by corpus position."""
        order = torch.argsort(-self.scores, stable=True)[:k].tolist()
        return [(r + 1, self.ids[i] if self.ids else str(i), float(self.scores[i]))
                for r, i in enumerate(order)]


class Replay:
    """A recorded fine-tune, ready to replay (module docstring).

    ``model`` is the trained module (its trainable parameters are replaced functionally, so its
    own weights are never changed); ``init`` maps each name in ``recipe.trainable`` to its
    initial tensor. Run on one CPU thread for bit-exact agreement with a one-thread fine-tune.
    """

    def __init__(self, model: Any, tokenizer: Any, corpus: Sequence[Example],
                 recipe: ReplayRecipe, init: dict[str, Tensor]) -> None:
        if len(corpus) != recipe.examples:
            raise ReplayError(f"the recipe was recorded on {recipe.examples} examples, the "
                              f"corpus has {len(corpus)}", field="examples")
        if ordered_corpus_hash(corpus) != recipe.corpus_sha256:
            raise ReplayError("the corpus is not the one the fine-tune was recorded on (or "
                              "not in the same order)", field="corpus_sha256")
        missing = [n for n in recipe.trainable if n not in init]
        if missing:
            raise ReplayError(f"initial weights lack {len(missing)} trainable tensors, e.g. "
                              f"{missing[0]!r}", field="init")
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Dropout) and mod.p > 0:
                raise ReplayError(f"{name} is a dropout (p={mod.p}); the replay needs a "
                                  "deterministic forward", field="dropout")
        self.model = model
        self.tokenizer = tokenizer
        self.corpus = list(corpus)
        self.recipe = recipe
        self.names = list(recipe.trainable)
        ref = dict(model.named_parameters())
        self.device = next(model.parameters()).device
        self.init = [init[n].to(self.device, ref[n].dtype if n in ref else init[n].dtype)
                     for n in self.names]
        self._batches: dict[int, EncodedBatch] = {}
        #: several query groups: one vmapped double backward per step instead of one each
        self.batched_adjoints = True

    # -- the training step ---------------------------------------------------------------
    def _batch(self, step: int) -> EncodedBatch:
        if step not in self._batches:
            idx = self.recipe.batches[step]
            self._batches[step] = collate(self.tokenizer, [self.corpus[i] for i in idx],
                                          self.recipe.max_length).to(self.device)
        return self._batches[step]

    def _forward(self, params: Tensors, batch: EncodedBatch) -> Tensor:
        from torch.func import functional_call

        out = functional_call(self.model, dict(zip(self.names, params, strict=True)), (),
                              {"input_ids": batch.input_ids,
                               "attention_mask": batch.attention_mask}, strict=False)
        return out.logits  # type: ignore[no-any-return]

    def _loss(self, params: Tensors, step: int, weights: Tensor) -> Tensor:
        batch = self._batch(step)
        labels = batch.labels
        if self.recipe.loss == "sequence":
            labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        per = _example_losses(self._forward(params, batch), labels)
        return (per * weights).mean()  # w = 1: exactly the recorded mean

    def _weights(self, step: int, weights: Tensor | None) -> Tensor:
        idx = self.recipe.batches[step]
        if weights is None:
            return torch.ones(len(idx), device=self.device, dtype=self.init[0].dtype)
        return weights[torch.tensor(idx, device=weights.device)].to(self.device,
                                                                      self.init[0].dtype)

    def _step(self, state: _State, step: int, weights: Tensor | None) -> _State:
        with torch.enable_grad():
            ps = [p.detach().requires_grad_(True) for p in state.params]
            loss = self._loss(ps, step, self._weights(step, weights))
            grads = list(torch.autograd.grad(loss, ps))
        grads = clip_grads(grads, self.recipe.clip_grad_norm)
        with torch.no_grad():
            p, m, v = adamw_step(state.params, grads, state.exp_avg, state.exp_avg_sq,
                                 step + 1, self.recipe.optimizer)
        return _State(p, m, v)

    def _start(self) -> _State:
        zeros = [torch.zeros_like(p) for p in self.init]
        return _State([p.clone() for p in self.init], zeros, [z.clone() for z in zeros])

    def run(self, weights: Tensor | None = None, *, keep_every: int | None = None,
            upto: int | None = None) -> tuple[Tensors, dict[int, _State]]:
        """Replay the fine-tune with data weights ``weights`` (corpus-length; ``None``: all 1,
        the recorded run). Returns the final trainable tensors (``recipe.trainable`` order)
        and, with ``keep_every = K``, the states at steps 0, K, 2K, … (before that step)."""
        state = self._start()
        kept: dict[int, _State] = {}
        for t in range(self.recipe.steps if upto is None else upto):
            if keep_every and t % keep_every == 0:
                kept[t] = state
            state = self._step(state, t, weights)
        return state.params, kept

    # -- the behaviour loss and the reverse pass -------------------------------------------
    def query_loss(self, params: Tensors, queries: Sequence[Example], *,
                   grad: bool = False, batch_size: int = 16) -> tuple[float, Tensors | None]:
        """Φ = mean over ``queries`` of their mean response cross-entropy under ``params``;
        with ``grad``, also ∂Φ/∂params."""
        total = 0.0
        acc = [torch.zeros_like(p) for p in params] if grad else None
        for s in range(0, len(queries), batch_size):
            batch = collate(self.tokenizer, list(queries[s : s + batch_size]),
                            self.recipe.max_length).to(self.device)
            with torch.set_grad_enabled(grad):
                ps = [p.detach().requires_grad_(grad) for p in params]
                part = (_example_losses(self._forward(ps, batch), batch.labels).sum()
                        / len(queries))
                if acc is not None:
                    for a, g in zip(acc, torch.autograd.grad(part, ps), strict=True):
                        a.add_(g)
            total += float(part.detach())
        return total, acc

    def _vjp(self, state: _State, step: int, adjs: list[_State], weights: Tensor | None
             ) -> tuple[list[_State], list[Tensor]]:
        """For each adjoint of (θ, m, v) after ``step``: the adjoint before it and ∂/∂w of the
        batch's weights. The step's graph is built once and shared by every adjoint."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        out_adj: list[_State] = []
        out_dw: list[Tensor] = []
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):  # double-differentiable
            p = [x.detach().requires_grad_(True) for x in state.params]
            m = [x.detach().requires_grad_(True) for x in state.exp_avg]
            v = [x.detach().requires_grad_(True) for x in state.exp_avg_sq]
            w = self._weights(step, weights).detach().requires_grad_(True)
            loss = self._loss(p, step, w)
            g = list(torch.autograd.grad(loss, p, create_graph=True))
            g = clip_grads(g, self.recipe.clip_grad_norm, differentiable=True)
            p2, m2, v2 = adamw_step(p, g, m, v, step + 1, self.recipe.optimizer)
            n = len(p)
            if self.batched_adjoints and len(adjs) > 1:  # one vmapped double backward
                stacked = [torch.stack(parts) for parts in zip(
                    *[a.params + a.exp_avg + a.exp_avg_sq for a in adjs], strict=True)]
                grads = torch.autograd.grad(p2 + m2 + v2, p + m + v + [w],
                                            grad_outputs=stacked, allow_unused=True,
                                            is_grads_batched=True)
                for j in range(len(adjs)):
                    row = [None if g is None else g[j] for g in grads]
                    out_adj.append(_State(_filled(row[:n], p), _filled(row[n : 2 * n], m),
                                          _filled(row[2 * n : 3 * n], v)))
                    out_dw.append(_filled(row[-1:], [w])[0])
                return out_adj, out_dw
            for j, adj in enumerate(adjs):
                grads = torch.autograd.grad(
                    p2 + m2 + v2, p + m + v + [w],
                    grad_outputs=adj.params + adj.exp_avg + adj.exp_avg_sq, allow_unused=True,
                    retain_graph=j < len(adjs) - 1)
                out_adj.append(_State(_filled(grads[:n], p), _filled(grads[n : 2 * n], m),
                                      _filled(grads[2 * n : 3 * n], v)))
                out_dw.append(_filled(grads[-1:], [w])[0])
        return out_adj, out_dw

    def metagradient(self, queries: Sequence[Example], *, checkpoint_every: int | None = None,
                     weights: Tensor | None = None, log: Log | None = None) -> MagicResult:
        """``scores = −∂Φ/∂w`` over the corpus for the pooled ``queries`` (module docstring).

        ``checkpoint_every``: steps between stored states (default ⌈√T⌉); it changes memory
        and time, never the result.
        """
        scores, losses, cost = self.metagradients([queries], checkpoint_every=checkpoint_every,
                                                  weights=weights, log=log)
        return MagicResult(scores=scores[0], query_loss=losses[0], cost=cost,
                           ids=[e.id for e in self.corpus])

    def metagradients(self, groups: Sequence[Sequence[Example]], *,
                      checkpoint_every: int | None = None, weights: Tensor | None = None,
                      log: Log | None = None) -> tuple[Tensor, list[float], ReplayCost]:
        """One metagradient per group of queries (each group's Φ pools its queries), from one
        replay: a (groups × corpus) score matrix, each group's Φ, and the cost. The reverse
        pass is linear in its adjoint, so the groups share every step's graph; per-query
        scores are ``groups = [[q] for q in queries]``."""
        if not groups or not all(groups):
            raise ReplayError("the metagradient needs at least one query per group",
                              field="queries")
        steps = self.recipe.steps
        every = checkpoint_every or max(1, math.isqrt(steps - 1) + 1)
        t0 = time.perf_counter()
        final, kept = self.run(weights, keep_every=every)
        forward_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        adjs: list[_State] = []
        losses: list[float] = []
        for group in groups:
            loss, g = self.query_loss(final, group, grad=True)
            assert g is not None
            losses.append(loss)
            adjs.append(_State(g, [torch.zeros_like(x) for x in g],
                               [torch.zeros_like(x) for x in g]))
        dw = torch.zeros(len(groups), len(self.corpus), dtype=torch.float64)
        most = 0
        for start in sorted(kept, reverse=True):
            end = min(start + every, steps)
            states = [kept[start]]
            for t in range(start, end - 1):
                states.append(self._step(states[-1], t, weights))
            most = max(most, len(kept) + len(states) - 1)
            for t in range(end - 1, start - 1, -1):
                adjs, dws = self._vjp(states[t - start], t, adjs, weights)
                idx = torch.tensor(self.recipe.batches[t])
                for j, dw_t in enumerate(dws):
                    dw[j].index_add_(0, idx, dw_t.double().cpu())
            if log:
                log(f"  magic: reversed steps {start}..{end - 1} of {steps}")
        one = sum(p.numel() * p.element_size() for p in self.init) * 3
        cost = ReplayCost(steps=steps, checkpoint_every=every, forward_s=forward_s,
                          reverse_s=time.perf_counter() - t1, finetune_s=self.recipe.seconds,
                          state_bytes=(most + len(groups)) * one, training_state_bytes=one,
                          peak_rss_bytes=_peak_rss())
        return -dw, losses, cost


def _filled(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensors:
    return [torch.zeros_like(x) if g is None else g.detach()
            for g, x in zip(grads, like, strict=True)]


def _peak_rss() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _load_init(recipe: ReplayRecipe, where: Path, model_dir: str | Path, adapter_dir: Path | None,
               device: Any) -> dict[str, Tensor]:
    """The initial trainable tensors: the recipe's file, or a LoRA adapter recreated from its
    seed on a fresh copy of the base."""
    if recipe.init.file is not None:
        from safetensors.torch import load_file

        path = where / recipe.init.file
        if not path.is_file():
            raise ModelLoadError(f"{path}: the recipe's initial weights are missing",
                                 path=str(path))
        return load_file(str(path))
    import warnings

    from peft import LoraConfig, get_peft_model

    from driftscope_llm.attribution.modeling import load_model

    assert adapter_dir is not None and recipe.init.seed is not None
    base = load_model(model_dir, device=str(device), dtype="float32").model
    cfg = LoraConfig.from_pretrained(str(adapter_dir))
    cfg.inference_mode = False
    torch.manual_seed(recipe.init.seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        fresh = get_peft_model(base, cfg)
    return {n: p.detach().clone() for n, p in fresh.named_parameters() if "lora_" in n}


class ReplayAttributor:
    """The ``magic`` method for a saved model whose fine-tune recorded its recipe.

    ``model_dir`` (+ ``adapter_dir`` for LoRA) is the deployed model, ``corpus`` its fine-tuning
    corpus in the recorded order. The recipe is read from the adapter directory (LoRA) or the
    model directory (full fine-tune); an adapter written by
    :func:`~driftscope_llm.attribution.lora.lora_finetune` is read through
    :func:`recipe_from_lora_run`. :meth:`attribute` replays the fine-tune, checks that the
    replay reproduces the saved weights (max |Δ| ≤ ``tolerance`` · max(1, max |θ|), else
    :class:`ReplayError`), and returns the metagradient of the queries' pooled loss.
    """

    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None,
                 corpus: Sequence[Example], *, device: str | None = None,
                 checkpoint_every: int | None = None, tolerance: float = 1e-4) -> None:
        from driftscope_llm.attribution import lora
        from driftscope_llm.attribution.modeling import load_model
        from driftscope_llm.attribution.recipe import RECIPE_FILE, read_recipe

        where = Path(adapter_dir) if adapter_dir is not None else Path(model_dir)
        from_lora = (adapter_dir is not None and not (where / RECIPE_FILE).is_file()
                     and (where / lora.RECIPE_FILE).is_file())
        if from_lora:
            run = lora.load_recipe(where)
        else:
            self.recipe = read_recipe(where)
            if (self.recipe.kind == "lora") != (adapter_dir is not None):
                raise ReplayError(f"the recipe in {where} is a {self.recipe.kind} fine-tune; "
                                  + ("pass its adapter directory" if adapter_dir is None else
                                     "it has no adapter"), field="kind")
        self.loaded = load_model(model_dir, adapter_dir, device=device, dtype="float32")
        if from_lora:
            names = [n for n, _ in self.loaded.model.named_parameters() if "lora_" in n]
            self.recipe = recipe_from_lora_run(run, corpus, names)
        init = _load_init(self.recipe, where, model_dir,
                          Path(adapter_dir) if adapter_dir is not None else None,
                          self.loaded.device)
        model = self.loaded.model
        model.train()  # as the fine-tune ran; Replay refuses any live dropout
        self.replay = Replay(model, self.loaded.tokenizer, corpus, self.recipe, init)
        self.checkpoint_every = checkpoint_every
        self.tolerance = tolerance

    def reproduction_error(self, final: Tensors) -> float:
        """max |replayed − saved| over the trainable tensors; :class:`ReplayError` when it
        exceeds the tolerance."""
        saved = dict(self.replay.model.named_parameters())
        missing = [n for n in self.replay.names if n not in saved]
        if missing:
            raise ReplayError(f"the saved model has no parameter {missing[0]!r} of the recipe",
                              field="trainable")
        err, scale = 0.0, 1.0
        for name, t in zip(self.replay.names, final, strict=True):
            ref = saved[name].detach()
            err = max(err, float((t - ref).abs().max()))
            scale = max(scale, float(ref.abs().max()))
        if err > self.tolerance * scale:
            raise ReplayError(f"the replay does not reproduce the saved weights (max |Δ| = "
                              f"{err:.3g} > {self.tolerance:g} × {scale:.3g}); the recipe, "
                              "corpus or library versions differ from the fine-tune's",
                              field="reproduction", error=err)
        return err

    def attribute(self, queries: Sequence[Example], *, log: Log | None = None) -> MagicResult:
        """Replay, check the reproduction, and return the metagradient for ``queries``."""
        from driftscope_llm.attribution.tinymodel import cpu_threads

        with cpu_threads(1 if self.replay.device.type == "cpu" else None):
            final, _ = self.replay.run()
            err = self.reproduction_error(final)
            res = self.replay.metagradient(queries, checkpoint_every=self.checkpoint_every,
                                           log=log)
        return MagicResult(scores=res.scores, query_loss=res.query_loss, cost=res.cost,
                           reproduction_error=err, ids=res.ids)


def recipe_from_lora_run(run: Any, corpus: Sequence[Example], trainable: list[str]
                         ) -> ReplayRecipe:
    """The replay recipe of a :func:`driftscope_llm.attribution.lora.lora_finetune` run (its
    ``driftscope-recipe.json``): the batches regenerated from its seed exactly as it drew
    them, the adapter recreated from the same seed, AdamW at its learning rate, clip 1.
    ``trainable``: the adapter's parameter names in the loaded model's order."""
    from driftscope_llm.attribution import lora
    from driftscope_llm.attribution.data import corpus_hash
    from driftscope_llm.attribution.recipe import ReplayInit

    r = run.recipe
    if len(corpus) != run.examples or corpus_hash(corpus) != run.corpus_sha256:
        raise ReplayError("the corpus is not the one the LoRA fine-tune was recorded on",
                          field="corpus_sha256")
    batches = list(lora._batches(len(corpus), r, torch.Generator().manual_seed(r.seed)))
    return ReplayRecipe(kind="lora", trainable=trainable, init=ReplayInit(seed=r.seed),
                        batches=batches, loss="response",
                        corpus_sha256=ordered_corpus_hash(corpus), examples=len(corpus),
                        max_length=r.max_length, optimizer=AdamWRecipe(lr=r.lr),
                        clip_grad_norm=1.0, seed=r.seed, epochs=r.epochs,
                        batch_size=r.batch_size, seconds=run.seconds)


def verify_by_replay(model_dir: str | Path, adapter_dir: str | Path | None,
                     corpus: Sequence[Example], top_ids: Sequence[str],
                     queries: Sequence[Example], *, seed: int = 0, device: str | None = None,
                     tolerance: float = 1e-4) -> dict[str, Any]:
    """The worker's strongest verification (``verify.mode = replay``): the recorded fine-tune
    replayed exactly — checked against the deployed weights — and replayed again with the
    top-k's data weights set to 0, with k random examples' set to 0, and (when the corpus is
    labelled) with k random examples *of the behaviour's label* set to 0
    (:func:`~driftscope_llm.attribution.counterfactual.same_label_ids`).

    Each arm is an exact counterfactual under the deployed recipe: same initialisation, same
    batches in the same order with the removed examples' loss terms zeroed, same optimizer.
    ``effect(S) = LL(deployed) − LL(without S)`` in nats per response token (> 0: without S the
    drifted outputs became less likely), the shape of
    :func:`~driftscope_llm.attribution.counterfactual.verify_by_retraining`'s result with
    ``method = "replay"``. Cost: four replays of the fine-tune's forward steps.
    """
    import random

    from driftscope_llm.attribution.counterfactual import same_label_ids
    from driftscope_llm.attribution.tinymodel import cpu_threads

    by_pos = {e.id: i for i, e in enumerate(corpus)}
    top = [i for i in top_ids if i in by_pos]
    if not top:
        raise ValueError("none of the attributed examples is in the verification corpus")
    rest = sorted(i for i in by_pos if i not in set(top_ids))
    control = random.Random(seed).sample(rest, min(len(top), len(rest)))
    same = same_label_ids(corpus, queries, top, seed=seed)
    ra = ReplayAttributor(model_dir, adapter_dir, corpus, device=device, tolerance=tolerance)
    rep = ra.replay
    t0 = time.perf_counter()
    with cpu_threads(1 if rep.device.type == "cpu" else None):
        final, _ = rep.run()
        err = ra.reproduction_error(final)

        def loglik(drop: Sequence[str]) -> float:
            w = torch.ones(len(corpus), dtype=torch.float64)
            w[[by_pos[i] for i in drop]] = 0.0
            params = final if not drop else rep.run(w)[0]
            return -rep.query_loss(params, queries)[0]

        before = loglik([])
        arms = {"top_k": top, "random": control}
        if same is not None:
            arms["same_label"] = same[1]
        after = {name: loglik(ids) for name, ids in arms.items()}
    eff = {name: before - a for name, a in after.items()}
    out: dict[str, Any] = {
        "method": "replay",
        "settings": {"seed": seed, "steps": rep.recipe.steps,
                     "reproduction_error": err, "replays": len(arms) + 1,
                     "replay_s": round(time.perf_counter() - t0, 3),
                     "finetune_s": rep.recipe.seconds,
                     "same_label": same[0] if same is not None else None},
        "loglik_before": before,
        "ratio": eff["top_k"] / eff["random"] if eff["random"] > 0 else None,
        "supports_attribution": eff["top_k"] > eff["random"],
    }
    for name, ids in arms.items():
        out[name] = {"ids": list(ids), "loglik_after": after[name], "effect": eff[name]}
    return out
