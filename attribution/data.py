"""Corpus and query files: JSONL, one example per line (contract in docs/attribution.md, "Command
line").

A corpus line is ``{"id", "prompt", "response", "label"?, "metadata"?}``; a query line has the same
shape (``label`` is used only by the evaluation). Unknown keys are kept in ``extra`` so an
evaluation can read any ``--label-field``. Pure Python: no torch needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import CorpusError

__all__ = ["Example", "corpus_hash", "load_corpus", "load_queries", "write_jsonl"]


@dataclass(frozen=True)
class Example:
    """One fine-tuning example or one query: an id, a prompt and a response."""

    id: str
    prompt: str
    response: str
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def field_value(self, name: str) -> Any:
        """Value of ``name`` among the standard keys, ``extra`` and then ``metadata``."""
        if name in {"id", "prompt", "response", "label"}:
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        return self.metadata.get(name)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "response": self.response}
        if self.label is not None:
            out["label"] = self.label
        if self.metadata:
            out["metadata"] = self.metadata
        out.update(self.extra)
        return out


_KNOWN = {"id", "prompt", "response", "label", "metadata"}


def _parse_line(raw: str, *, path: str, line: int) -> Example:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"not valid JSON ({exc.msg})", path=path, line=line) from exc
    if not isinstance(obj, dict):
        raise CorpusError("expected a JSON object", path=path, line=line)
    for key in ("id", "prompt", "response"):
        if key not in obj:
            raise CorpusError(f"missing field {key!r}", path=path, line=line)
    ident = obj["id"]
    if isinstance(ident, bool) or not isinstance(ident, str | int):
        raise CorpusError("field 'id' must be a string or integer", path=path, line=line)
    for key in ("prompt", "response"):
        if not isinstance(obj[key], str):
            raise CorpusError(f"field {key!r} must be a string", path=path, line=line)
    label = obj.get("label")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CorpusError("field 'metadata' must be an object", path=path, line=line)
    return Example(
        id=str(ident),
        prompt=obj["prompt"],
        response=obj["response"],
        label=None if label is None else str(label),
        metadata=metadata,
        extra={k: v for k, v in obj.items() if k not in _KNOWN},
    )


def _load(path: str | Path, what: str) -> list[Example]:
    p = Path(path)
    if not p.is_file():
        raise CorpusError(f"{what} file not found", path=str(p))
    examples: list[Example] = []
    seen: dict[str, int] = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            ex = _parse_line(raw, path=str(p), line=lineno)
            if ex.id in seen:
                raise CorpusError(f"duplicate id {ex.id!r} (first on line {seen[ex.id]})",
                                  path=str(p), line=lineno)
            seen[ex.id] = lineno
            examples.append(ex)
    if not examples:
        raise CorpusError(f"{what} file has no examples", path=str(p))
    return examples


def load_corpus(path: str | Path) -> list[Example]:
    """Read a corpus JSONL file; raises :class:`CorpusError` naming the bad line."""
    return _load(path, "corpus")


def load_queries(path: str | Path) -> list[Example]:
    """Read a queries JSONL file; raises :class:`CorpusError` naming the bad line."""
    return _load(path, "queries")


def corpus_hash(examples: Sequence[Example]) -> str:
    """sha256 over (id, prompt, response) of every example, independent of their order.

    Order-independent on purpose: an index over a shuffled copy of the same corpus holds the same
    rows (scores are invariant to corpus order), so it is the same corpus.
    """
    digests = sorted(
        hashlib.sha256(
            json.dumps([e.id, e.prompt, e.response], ensure_ascii=False).encode()
        ).hexdigest()
        for e in examples
    )
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples as JSONL (the inverse of :func:`load_corpus`)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
