"""Probe suites: the prompts a regression gate asks both models, as JSONL with ids.

A suite line is ``{"id": str, "prompt": str, "source"?: str, "group"?: str, "metadata"?: {...}}``.
``id`` must be unique in the file — :func:`read_suite` refuses a suite whose ids repeat, because a
probe's verdict, its JUnit test case and its line in the report are all keyed by it. ``source``
says where the probe came from (``exemplar``, ``corpus``, ``traffic``, ``perturbation:<kind>``);
``group`` ties the variants of one behaviour together (a perturbed probe keeps its parent's group).

Suites are plain files meant to live under version control next to the model's training code;
three generators write them:

* :func:`stratified_sample` — a sample of a fine-tuning corpus with the same number of prompts
  from each stratum (label, or a metadata field such as ``route``), so a rare segment is probed
  as often as a common one;
* :func:`perturb` — seeded, documented variations of each probe (below), to test that a fix
  generalises beyond the exact strings of an incident;
* :mod:`driftscope_llm.services.regress.incident_probes` — an incident's drifted prompts and their
neighbours.

Perturbations (each deterministic given the seed and the probe id):

==================  ===============================================================================
``paraphrase``      the prompt wrapped in one of :data:`PARAPHRASE_TEMPLATES` ("could you tell me:
                    {prompt}") — a request-framing change, not a semantic paraphrase
``casing``          every word's case flipped with probability 0.3 (upper/lower/title)
``punctuation``     the final punctuation dropped or replaced, and one space doubled or removed
``context``         one of :data:`CONTEXT_PREFIXES` (an irrelevant preamble) put before the prompt
==================  ===============================================================================

They do not cover meaning-preserving rewrites a language model would produce, other languages,
typos inside words, or adversarial prompts; ``docs/regression.md`` says more.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from driftscope_llm.services.regress.errors import ProbeSuiteError

__all__ = [
    "CONTEXT_PREFIXES",
    "PARAPHRASE_TEMPLATES",
    "PERTURBATIONS",
    "Probe",
    "perturb",
    "read_suite",
    "stratified_sample",
    "write_suite",
]

MAX_PROMPT_CHARS = 20_000

PARAPHRASE_TEMPLATES: tuple[str, ...] = (
    "could you tell me : {prompt}",
    "quick question . {prompt}",
    "{prompt} thanks in advance .",
    "hi , {prompt}",
    "please answer this : {prompt}",
)
CONTEXT_PREFIXES: tuple[str, ...] = (
    "i have been a customer for a few years .",
    "i am writing from my phone .",
    "my colleague asked me to check this .",
    "this is my second message today .",
)
PERTURBATIONS: tuple[str, ...] = ("paraphrase", "casing", "punctuation", "context")


class Probe(BaseModel):
    """One prompt of a suite. ``id`` is unique within its suite."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    source: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude_defaults=True) | {
            "id": self.id, "prompt": self.prompt}


def read_suite(path: Path) -> list[Probe]:
    """The probes of a JSONL suite, in file order.

    Raises :class:`ProbeSuiteError` (with ``path`` and ``line``) for a line that is not a JSON
    object with a non-empty string ``id`` and ``prompt``, for unknown keys, for an id seen on an
    earlier line, and for a file without probes.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeSuiteError(f"cannot read the probe suite: {exc}", path=str(p)) from exc
    probes: list[Probe] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        probe = _parse(raw, str(p), lineno)
        if probe.id in first_line:
            raise ProbeSuiteError(
                f"probe id {probe.id!r} repeats (first on line {first_line[probe.id]}); ids must "
                "be unique", path=str(p), line=lineno, probe_id=probe.id)
        first_line[probe.id] = lineno
        probes.append(probe)
    if not probes:
        raise ProbeSuiteError("the suite has no probes", path=str(p))
    return probes


def _parse(raw: str, path: str, line: int) -> Probe:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProbeSuiteError(f"not valid JSON ({exc.msg})", path=path, line=line) from exc
    if not isinstance(obj, dict):
        raise ProbeSuiteError("expected a JSON object with 'id' and 'prompt'", path=path,
                              line=line)
    try:
        return Probe.model_validate(obj, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "probe"
        raise ProbeSuiteError(f"{where}: {err['msg']}", path=path, line=line,
                              probe_id=obj.get("id") if isinstance(obj.get("id"), str)
                              else None) from exc


def write_suite(path: Path, probes: Iterable[Probe]) -> int:
    """Write ``probes`` as JSONL (refusing repeated ids, like :func:`read_suite`); return the
    number written."""
    seen: set[str] = set()
    lines = []
    for probe in probes:
        if probe.id in seen:
            raise ProbeSuiteError(f"probe id {probe.id!r} repeats", path=str(path),
                                  probe_id=probe.id)
        seen.add(probe.id)
        lines.append(json.dumps(probe.to_json(), ensure_ascii=False) + "\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def _rng(seed: int, *parts: str) -> random.Random:
    text = "\x1f".join((str(seed), *parts))
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _casing(prompt: str, rng: random.Random) -> str:
    words = prompt.split(" ")
    out = []
    for w in words:
        r = rng.random()
        out.append(w.upper() if r < 0.1 else w.title() if r < 0.2 else w.lower() if r < 0.3
                   else w)
    return " ".join(out)


def _punctuation(prompt: str, rng: random.Random) -> str:
    body = prompt.rstrip(" ?.!")
    end = rng.choice(("", " ?", "?", " .", "!", " ??"))
    text = body + end
    spaces = [i for i, c in enumerate(text) if c == " "]
    if spaces:
        i = rng.choice(spaces)
        text = text[:i] + ("  " if rng.random() < 0.5 else "") + text[i + 1:]
    return text


def _variant(kind: str, prompt: str, rng: random.Random) -> str:
    if kind == "paraphrase":
        return rng.choice(PARAPHRASE_TEMPLATES).format(prompt=prompt)
    if kind == "casing":
        return _casing(prompt, rng)
    if kind == "punctuation":
        return _punctuation(prompt, rng)
    if kind == "context":
        return f"{rng.choice(CONTEXT_PREFIXES)} {prompt}"
    raise ProbeSuiteError(f"unknown perturbation {kind!r} (known: {', '.join(PERTURBATIONS)})")


def perturb(probes: Sequence[Probe], kinds: Sequence[str] = PERTURBATIONS, *, per_kind: int = 1,
            seed: int = 0, keep_originals: bool = True) -> list[Probe]:
    """The originals (unless ``keep_originals`` is false) followed by ``per_kind`` variants of
    each probe for each kind (module docstring). Variant ids are ``<id>~<kind><n>``; a variant
    that came out identical to its prompt (e.g. casing on a one-word prompt) is dropped."""
    for kind in kinds:
        if kind not in PERTURBATIONS:
            raise ProbeSuiteError(
                f"unknown perturbation {kind!r} (known: {', '.join(PERTURBATIONS)})")
    out = list(probes) if keep_originals else []
    for probe in probes:
        seen = {probe.prompt}
        for kind in kinds:
            for n in range(per_kind):
                text = _variant(kind, probe.prompt, _rng(seed, probe.id, kind, str(n)))
                if text in seen or len(text) > MAX_PROMPT_CHARS:
                    continue
                seen.add(text)
                out.append(Probe(id=f"{probe.id}~{kind}{n}", prompt=text,
                                 source=f"perturbation:{kind}", group=probe.group or probe.id,
                                 metadata=dict(probe.metadata)))
    return out


def stratified_sample(rows: Sequence[tuple[str, str, str]], per_stratum: int, *,
                      seed: int = 0) -> list[Probe]:
    """Up to ``per_stratum`` prompts from each stratum of ``rows`` = ``(id, prompt, stratum)``
    (e.g. a corpus example's id, prompt and label), drawn without replacement with a seeded RNG;
    repeated prompts count once. Strata come out in sorted order, each in its sampled order."""
    by: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen: set[str] = set()
    for rid, prompt, stratum in rows:
        if prompt in seen:
            continue
        seen.add(prompt)
        by[stratum].append((rid, prompt))
    out: list[Probe] = []
    for stratum in sorted(by):
        items = by[stratum]
        chosen = _rng(seed, "stratum", stratum).sample(items, min(per_stratum, len(items)))
        out.extend(Probe(id=f"corpus:{rid}", prompt=prompt, source="corpus", group=stratum,
                         metadata={"stratum": stratum}) for rid, prompt in chosen)
    return out
