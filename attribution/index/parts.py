"""Split an index build across processes, GPUs or machines, then merge the parts into one index.

**Split.** The corpus is cut into chunks of ``shard_size`` examples in corpus order, exactly as a
single-process build cuts it; chunk ``j`` becomes ``shard-{j:05d}.safetensors`` and belongs to
part ``j mod N``. So the split is deterministic (it depends only on the corpus order,
``shard_size`` and ``N``), parts are balanced to within one chunk, and a part's shards are the
very files a single-process build would write for those chunks. Every builder reads the whole
corpus (the manifest records the whole corpus's hash) and featurizes only its chunks. Choose
``shard_size`` ≤ corpus size / N, or some builders get nothing to do.

**Where parts go.** Builders may share one output directory (shared storage: the Kubernetes
Indexed Job in ``deploy/k8s/index-build-job.yaml``): each writes its shards and its own
``manifest.part-i-of-N.json``, so no two builders write the same file. Or each writes its own
directory and :func:`merge_parts` gathers them (hard links where possible, else copies).

**Resume.** Rerunning part ``i`` keeps each of its finished shards whose sha256 and ids match.

**Merge.** :func:`merge_parts` checks that all ``N`` parts are present, complete, built from the
same model, corpus and settings with the same ``shard_size``, and that their shards cover the
corpus exactly once; then it writes ``manifest.json``, which lists every shard in corpus order —
the same index a single-process build writes (scores equal up to batch composition: within the
float16 storage tolerance). By default the builder of the last part to finish merges in place.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.errors import IndexError_, IndexMismatchError, SettingsError
from driftscope_llm.attribution.index.feature_index import Progress, build_shards
from driftscope_llm.attribution.index.manifest import (
    MANIFEST,
    IndexManifest,
    ShardEntry,
    part_manifest_name,
    read_manifest,
    verify_shard,
    write_manifest,
)
from driftscope_llm.attribution.modeling import LoadedModel
from driftscope_llm.attribution.settings import AttributionSettings

__all__ = ["PartResult", "build_part", "merge_parts", "parse_part"]

_PART_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: Fields every part of one build must agree on (dotted paths into the manifest).
_SAME = ("model.fingerprint", "corpus.hash", "corpus.count", "features", "settings", "dtype",
         "shard_size", "dim", "blocks", "part.count", "state")


def parse_part(text: str) -> tuple[int, int]:
    """``"i/N"`` (0 ≤ i < N) as ``(i, N)``; a clear :class:`SettingsError` otherwise."""
    m = _PART_RE.match(text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise SettingsError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), not {text!r}",
                            field="shard")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class PartResult:
    """What one builder did: its part, rows and shards written, and whether it merged."""

    index: int
    count: int
    rows: int
    shards: int
    merged: bool


def build_part(
    model: LoadedModel,
    corpus: Sequence[Example],
    out_dir: str | Path,
    settings: AttributionSettings | None = None,
    *,
    part: tuple[int, int],
    batch_size: int = 16,
    shard_size: int = 4096,
    progress: Progress | None = None,
    overwrite: bool = False,
    merge: bool = True,
) -> PartResult:
    """Build part ``part = (i, N)`` of the index of ``corpus`` into ``out_dir`` (module doc).

    With ``merge`` (default), once every part's manifest in ``out_dir`` is complete, this
    builder writes the merged ``manifest.json`` (whichever builder finishes last does it;
    builders finishing together write the same content atomically).
    """
    i, n = part
    if not 0 <= i < n:
        raise SettingsError(f"part index {i} is not in [0, {n})", field="shard")
    out = Path(out_dir)
    name = part_manifest_name(i, n) if n > 1 else MANIFEST  # 1 part: an ordinary build
    manifest = build_shards(model, corpus, out, settings or AttributionSettings(),
                            manifest_name=name, part=(i, n),
                            batch_size=batch_size, shard_size=shard_size, progress=progress,
                            overwrite=overwrite)
    merged = False
    if merge and n > 1 and _all_complete(out, n):
        merge_parts([out])  # the last builder to finish merges; a mismatch is raised
        merged = True
    elif n == 1:
        merged = True
    return PartResult(i, n, manifest.rows, len(manifest.shards), merged)


def _all_complete(out: Path, n: int) -> bool:
    names = [part_manifest_name(j, n) for j in range(n)]
    if not all((out / name).is_file() for name in names):
        return False
    return all(read_manifest(out, name).is_complete for name in names)


def _find_parts(sources: Sequence[Path]) -> list[tuple[Path, IndexManifest]]:
    found = []
    for src in sources:
        names = sorted(p.name for p in src.glob("manifest.part-*.json")) if src.is_dir() else []
        if not names:
            raise IndexError_(f"{src} holds no part manifests (manifest.part-*.json)",
                              path=str(src))
        found += [(src, read_manifest(src, name)) for name in names]
    return found


def _check_parts(parts: list[tuple[Path, IndexManifest]], where: Path) -> int:
    """Raise unless the parts are one complete, consistent split; return N."""
    first = parts[0][1]
    for src, m in parts:
        for dotted in _SAME:
            if m.field(dotted) != first.field(dotted):
                raise IndexMismatchError(path=str(src), field=dotted,
                                         expected=first.field(dotted), found=m.field(dotted))
    seen: dict[int, Path] = {}
    n = 0
    for src, m in parts:
        if m.part is None:
            raise IndexError_(f"{src} holds a part manifest without its part number",
                              path=str(src))
        i, n = m.part.index, m.part.count
        if i in seen:
            raise IndexError_(f"part {i}/{n} appears twice ({seen[i]} and {src})", path=str(src))
        seen[i] = src
        if not m.is_complete:
            raise IndexError_(f"part {i}/{n} in {src} is still building; rerun its builder "
                              "to resume it", path=str(src))
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise IndexError_(f"parts {', '.join(f'{j}/{n}' for j in missing)} are missing from "
                          f"{', '.join(sorted({str(s) for s, _ in parts}))}", path=str(where))
    return n


def merge_parts(sources: Sequence[str | Path], out_dir: str | Path | None = None) -> Path:
    """Merge the parts found in ``sources`` into one index at ``out_dir`` (module doc).

    ``out_dir`` defaults to the single source directory (merge in place); shards from other
    directories are hard-linked into ``out_dir`` (copied across filesystems). Every shard's
    sha256 is checked. Returns the index directory.
    """
    srcs = [Path(s) for s in sources]
    if out_dir is None and len(srcs) != 1:
        raise SettingsError("merging parts from several directories needs an output directory",
                            field="out")
    out = Path(out_dir) if out_dir is not None else srcs[0]
    parts = _find_parts(srcs)
    _check_parts(parts, out)
    first = parts[0][1]
    count, size = first.corpus.count, first.shard_size
    sourced: list[tuple[ShardEntry, Path]] = []
    for src, m in parts:
        for entry in m.shards:
            verify_shard(src, entry)
            sourced.append((entry, src))
    sourced.sort(key=lambda es: es[0].start)
    shards = tuple(e for e, _ in sourced)
    expected = [(s, min(size, count - s)) for s in range(0, count, size)]
    if [(e.start, e.rows) for e in shards] != expected:
        raise IndexError_(f"the parts' shards do not cover the corpus's {count} examples exactly "
                          "once; rebuild the parts with the same --shard-size", path=str(out))
    out.mkdir(parents=True, exist_ok=True)
    files = [(e.file, src) for e, src in sourced]
    if first.state is not None:  # fitted method state (e.g. EK-FAC factors), same in every part
        verify_shard(parts[0][0], first.state)
        files.append((first.state.file, parts[0][0]))
    for name, src in files:
        if src.resolve() != out.resolve():
            _place(src / name, out / name)
    merged = first.model_copy(update={
        "part": None, "status": "complete", "shards": shards,
        "created": max(m.created for _, m in parts), "merged_from": len(parts)})
    write_manifest(out, merged, MANIFEST)
    return out


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (copy across filesystems), replacing what is there."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
