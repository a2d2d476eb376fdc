"""``driftscope attribution …``: build indexes, query them, evaluate methods (docs/attribution.md).

Mounted by the main CLI with ``app.add_typer(attribution_app, name="attribution")``. Heavy
imports (torch, transformers) happen inside the commands so ``driftscope --help`` stays fast.
``--json`` prints only JSON lines on stdout; otherwise progress bars go to stderr and results
are a table. A user mistake (missing file, bad JSONL line, mismatched index) prints one line
``error: …`` on stderr and exits with the README's code (2 for a usage or input error, 4 for
an unknown id), through the CLI's shared :func:`~driftscope_llm.services.cli.errors.user_errors`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from driftscope_llm.services.cli.errors import user_errors
from driftscope_llm.services.cli.options import quiet_transformers
from driftscope_llm.services.cli.render import escape_text
from driftscope_llm.services.errors import DriftscopeError

__all__ = ["app", "eval_markdown"]

app = typer.Typer(name="attribution", help="Trace outputs back to fine-tuning examples.",
                  no_args_is_help=True)
index_app = typer.Typer(name="index", help="Build attribution indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")

_err = Console(stderr=True)
@contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Callable[[int, int], None]]:
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=_err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


ModelOpt = Annotated[Path, typer.Option("--model", help="Hugging Face causal-LM directory.")]
AdapterOpt = Annotated[
    Path | None, typer.Option("--adapter", help="PEFT (LoRA) adapter directory.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON lines on stdout.")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cuda / cpu; default: CUDA when present.")
]


@index_app.command("build")
def index_build(
    model: ModelOpt,
    corpus: Annotated[Path, typer.Option("--corpus", help="Corpus JSONL.")],
    out: Annotated[Path, typer.Option("--out", help="Index directory to write.")],
    method: Annotated[str | None, typer.Option(
        "--method", help="Method spec name[:variant][@layer]; default: repsim.")] = None,
    adapter: AdapterOpt = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    shard_size: Annotated[int, typer.Option(min=1)] = 4096,
    proj_dim: Annotated[int, typer.Option(help="Gradient projection side k.")] = 16,
    storage_dtype: Annotated[str, typer.Option(help="float16 or float32.")] = "float16",
    overwrite: Annotated[bool, typer.Option(help="Replace an index of another identity.")] = False,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="Build only part i/N (0-based) of the index, e.g. 0/4; the last part "
        "to finish merges all parts in --out (see 'index merge').")] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Featurize a corpus into an index directory (resumes an interrupted build)."""
    with user_errors():
        from driftscope_llm.attribution.data import load_corpus
        from driftscope_llm.attribution.index.feature_index import build_index
        from driftscope_llm.attribution.index.parts import build_part, parse_part
        from driftscope_llm.attribution.modeling import load_model
        from driftscope_llm.attribution.settings import AttributionSettings, parse_method_spec

        base = AttributionSettings(proj_dim=proj_dim, storage_dtype=storage_dtype)
        settings = parse_method_spec(method, base=base) if method else base
        part = parse_part(shard) if shard is not None else None
        examples = load_corpus(corpus)
        quiet_transformers()
        loaded = load_model(model, adapter, device=device)
        t0 = time.perf_counter()
        if part is not None:
            with _progress(not json_out, f"indexing part {shard} ({settings.spec})") as bar:
                res = build_part(loaded, examples, out, settings, part=part,
                                 batch_size=batch_size, shard_size=shard_size, progress=bar,
                                 overwrite=overwrite)
            _part_summary(res, out, settings.spec, time.perf_counter() - t0, json_out)
            return
        with _progress(not json_out, f"indexing ({settings.spec})") as bar:
            index = build_index(loaded, examples, out, settings, batch_size=batch_size,
                                shard_size=shard_size, progress=bar, overwrite=overwrite)
        secs = time.perf_counter() - t0
        summary = {"index": str(out), "method": settings.spec, "examples": index.count,
                   "dim": index.manifest.dim, "shards": len(index.manifest.shards),
                   "seconds": round(secs, 3)}
        if json_out:
            _emit(summary)
        else:
            Console().print(f"indexed {index.count} examples with {settings.spec} "
                            f"({summary['dim']} dims) into {out} in {secs:.1f}s")


def _part_summary(res: Any, out: Path, spec: str, secs: float, json_out: bool) -> None:
    summary = {"index": str(out), "method": spec, "part": f"{res.index}/{res.count}",
               "examples": res.rows, "shards": res.shards, "merged": res.merged,
               "seconds": round(secs, 3)}
    if json_out:
        _emit(summary)
        return
    merged = "; all parts done, merged" if res.merged else ""
    Console().print(f"indexed part {res.index}/{res.count}: {res.rows} examples in "
                    f"{res.shards} shards with {escape_text(spec)} into {escape_text(out)} in "
                    f"{secs:.1f}s{merged}", highlight=False)


@index_app.command("merge")
def index_merge(
    parts: Annotated[list[Path], typer.Argument(
        help="Directories holding the parts (manifest.part-*.json) of one sharded build.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Index directory to write; default: the one part directory.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Merge the parts of a sharded build (index build --shard i/N) into one index."""
    with user_errors():
        from driftscope_llm.attribution.index.manifest import read_manifest
        from driftscope_llm.attribution.index.parts import merge_parts

        path = merge_parts(parts, out)
        manifest = read_manifest(path)
        summary = {"index": str(path), "examples": manifest.corpus.count,
                   "shards": len(manifest.shards), "parts": manifest.merged_from}
        if json_out:
            _emit(summary)
        else:
            Console().print(f"merged {summary['parts']} parts ({summary['examples']} examples, "
                            f"{summary['shards']} shards) into {escape_text(path)}",
                            highlight=False)


@app.command("query")
def query(
    queries: Annotated[Path, typer.Option("--queries", help="Queries JSONL.")],
    index: Annotated[list[Path] | None, typer.Option(
        "--index", help="Index directory; repeat to compare methods (adds agreement).")] = None,
    method: Annotated[str | None, typer.Option(
        "--method", help="Score with this method (must use the index's features); 'magic': "
        "replay the recorded fine-tune (needs --model, --corpus, no --index).")] = None,
    corpus: Annotated[Path | None, typer.Option(
        "--corpus", help="--method magic: the fine-tuning corpus JSONL, in recorded order.")
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(
        "--checkpoint-every", min=1,
        help="--method magic: steps between stored states; default sqrt(steps).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1)] = 10,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model directory; default: the one named in the manifest.")] = None,
    adapter: AdapterOpt = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    ann: Annotated[str, typer.Option(
        "--ann", help="exact (default): score every row; hnsw: approximate FAISS graph for very "
        "large corpora; flat: FAISS exhaustive (needs the 'faiss' extra).")] = "exact",
) -> None:
    """Attribute each query to its most responsible corpus examples."""
    if method == "magic":
        _query_magic(queries, index, model, adapter, corpus, checkpoint_every, top_k, device,
                     json_out)
        return
    with user_errors():
        if not index:
            raise _usage("--index is required (except with --method magic)")
        from driftscope_llm.attribution.agreement import agreement
        from driftscope_llm.attribution.data import load_queries
        from driftscope_llm.attribution.index.feature_index import open_index
        from driftscope_llm.attribution.index.manifest import read_manifest
        from driftscope_llm.attribution.modeling import load_model

        qs = load_queries(queries)
        quiet_transformers()
        per_method: dict[str, list[Any]] = {}
        loaded: dict[tuple[str, str | None], Any] = {}
        for path in index:
            manifest = read_manifest(path)
            mdir = str(model) if model else manifest.model.model_dir
            if not mdir:
                raise _usage(f"index {path} names no model directory; pass --model")
            adir = str(adapter) if adapter else manifest.model.adapter_dir
            if (mdir, adir) not in loaded:
                loaded[(mdir, adir)] = load_model(mdir, adir, device=device)
            idx = open_index(path, model=loaded[(mdir, adir)], method=method)
            name = idx.settings.spec
            if name in per_method:
                name = f"{name}#{len(per_method)}"
            searcher = None
            if ann != "exact":
                from driftscope_llm.attribution.index.ann import FaissSearcher

                if ann not in ("flat", "hnsw"):
                    raise _usage(f"--ann must be exact, flat or hnsw, not {ann!r}")
                searcher = FaissSearcher(idx, kind="hnsw" if ann == "hnsw" else "flat")
            per_method[name] = idx.query(qs, top_k, batch_size=batch_size, searcher=searcher)
        agree = {a.query_id: a for a in agreement(per_method, top_k)} if len(index) > 1 else {}
        _print_query(per_method, agree, json_out)


def _query_magic(queries: Path, index: list[Path] | None, model: Path | None,
                 adapter: Path | None, corpus: Path | None, checkpoint_every: int | None,
                 top_k: int, device: str | None, json_out: bool) -> None:
    """``query --method magic``: one replay of the recorded fine-tune for all the queries
    pooled (:class:`driftscope_llm.attribution.replay.ReplayAttributor`)."""
    with user_errors():
        if index:
            raise _usage("--method magic replays the fine-tune and takes no --index")
        if model is None or corpus is None:
            raise _usage("--method magic needs --model (and --adapter for LoRA) and --corpus")
        from driftscope_llm.attribution.data import load_corpus, load_queries
        from driftscope_llm.attribution.replay import ReplayAttributor

        qs = load_queries(queries)
        cx = load_corpus(corpus)
        quiet_transformers()
        log = None if json_out else (lambda line: _err.print(line, highlight=False,
                                                              markup=False))
        res = ReplayAttributor(model, adapter, cx, device=device,
                               checkpoint_every=checkpoint_every).attribute(qs, log=log)
    top = res.top(top_k)
    if json_out:
        _emit({"method": "magic", "queries": [q.id for q in qs], "query_loss": res.query_loss,
               "reproduction_error": res.reproduction_error, "cost": res.cost.to_json(),
               "results": [{"rank": r, "id": i, "score": sc} for r, i, sc in top]})
        return
    console = Console()
    table = Table(title=f"magic — {len(qs)} queries pooled (score: loss rise if removed)")
    for col in ("rank", "id", "score"):
        table.add_column(col, justify="right" if col != "id" else "left")
    for r, i, sc in top:
        table.add_row(str(r), escape_text(i), f"{sc:.4g}")
    console.print(table)
    console.print(magic_cost_line(res), highlight=False)


def magic_cost_line(res: Any) -> str:
    """One line: what the replay cost against the fine-tune, and how exactly it reproduced."""
    c = res.cost
    mib = 1024 * 1024
    ratio = f" = {c.ratio:.1f}x the fine-tune's {c.finetune_s:.1f} s" if c.ratio else ""
    return (f"replay: {c.steps} steps, {c.total_s:.1f} s{ratio}; states held "
            f"{c.state_bytes / mib:.1f} MiB (fine-tune {c.training_state_bytes / mib:.1f} "
            f"MiB), peak RSS {c.peak_rss_bytes / mib:.0f} MiB; reproduced the saved weights "
            f"to max |diff| {res.reproduction_error:.2g}")


def _print_query(per_method: dict[str, list[Any]], agree: dict[str, Any], json_out: bool) -> None:
    if json_out:
        for name, results in per_method.items():
            for res in results:
                obj = res.to_json()
                obj["method"] = name
                if res.query_id in agree:
                    obj["agreement"] = agree[res.query_id].to_json()
                _emit(obj)
        return
    console = Console()
    for name, results in per_method.items():
        for res in results:
            table = Table(title=f"query {escape_text(res.query_id)} — {escape_text(name)}")
            for col in ("rank", "id", "score"):
                table.add_column(col, justify="right" if col != "id" else "left")
            for h in res.results:
                table.add_row(str(h.rank), escape_text(h.id), f"{h.score:.4g}")
            console.print(table)
            if res.query_id in agree and agree[res.query_id].mean_overlap is not None:
                a = agree[res.query_id]
                console.print(f"agreement across methods: overlap@{a.k}={a.mean_overlap:.2f}")


@app.command("eval")
def eval_(
    corpus: Annotated[Path | None, typer.Option(
        "--corpus", help="Labelled corpus JSONL; default: the three generated tasks.")] = None,
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="Labelled queries JSONL.")] = None,
    label_field: Annotated[str, typer.Option("--label-field")] = "label",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model directory; default: fine-tune a tiny model on the corpus.")] = None,
    adapter: AdapterOpt = None,
    methods: Annotated[str | None, typer.Option(
        "--methods", help="Comma-separated method specs; default: all of them.")] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated generated tasks.")] = (
        "harmful,class,backdoor"),
    arch: Annotated[str, typer.Option(help="Tiny model: gpt2 or llama.")] = "gpt2",
    lora: Annotated[bool, typer.Option(help="Fine-tune the tiny model with LoRA.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Tiny model fine-tuning epochs.")] = 12,
    seed: int = 0,
    workdir: Annotated[Path | None, typer.Option(help="Keep models/indexes here.")] = None,
    device: DeviceOpt = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="Print the table as Markdown (for docs).")] = False,
    json_out: JsonOpt = False,
    suite: Annotated[bool, typer.Option(
        "--suite", help="Independent task families x tiny models x seeds, with intervals, "
        "baselines and counterfactual QLD/LDS (docs/attribution.md).")] = False,
    families: Annotated[str, typer.Option(help="--suite: comma-separated families.")] = (
        "style,rule,trigger,topic"),
    configs: Annotated[str, typer.Option(
        help="--suite: comma-separated arch/full|lora, or smollm2/lora (the real model).")] = (
        "gpt2/full,gpt2/lora,llama/full,llama/lora"),
    seeds: Annotated[str, typer.Option(help="--suite: comma-separated seeds.")] = "0,1",
    counterfactual: Annotated[bool, typer.Option(
        help="--suite: retrain for QLD and LDS.")] = True,
    lds_subsets: Annotated[int, typer.Option(min=2, help="--suite: LDS retrains.")] = 32,
) -> None:
    """Measure Acc, Cover and auPRC of every method (docs/attribution.md, "Evaluation")."""
    if suite:
        _eval_suite(families, configs, seeds, methods, epochs, counterfactual, lds_subsets,
                    workdir, markdown, json_out)
        return
    with user_errors():
        from driftscope_llm.attribution.eval.evaluate import DEFAULT_EVAL_METHODS, evaluate_tasks

        quiet_transformers()
        specs = [m.strip() for m in methods.split(",")] if methods else list(DEFAULT_EVAL_METHODS)
        log = None if json_out else (lambda s: _err.print(s, highlight=False))
        with tempfile.TemporaryDirectory(prefix="driftscope-eval-") as tmp:
            work = workdir or Path(tmp)
            if corpus is None:
                if queries is not None or model is not None:
                    raise _usage("--queries and --model need --corpus")
                if arch not in ("gpt2", "llama"):
                    raise _usage("--arch must be gpt2 or llama")
                rows = evaluate_tasks(work, tasks=[t.strip() for t in tasks.split(",")],
                                      methods=specs, seed=seed, arch=arch,  # type: ignore[arg-type]
                                      lora=lora, log=log, epochs=epochs)
            else:
                rows = _eval_user(corpus, queries, label_field, model, adapter, device, specs,
                                  work, arch, lora, seed, epochs, log)
        if json_out:
            for row in rows:
                _emit(row.to_json())
        elif markdown:
            sys.stdout.write(eval_markdown(rows))
        else:
            _print_eval(rows)


def _eval_suite(families: str, configs: str, seeds: str, methods: str | None, epochs: int,
                counterfactual: bool, lds_subsets: int, workdir: Path | None, markdown: bool,
                json_out: bool) -> None:
    with user_errors():
        from driftscope_llm.attribution.eval.families import FAMILIES
        from driftscope_llm.attribution.eval.real_config import REAL_CONFIGS, RealConfig
        from driftscope_llm.attribution.eval.suite import SUITE_METHODS, Config, run_suite
        from driftscope_llm.attribution.eval.suite_report import print_suite, suite_markdown
        from driftscope_llm.attribution.eval.tasks import TASKS

        fams = [f.strip() for f in families.split(",") if f.strip()]
        unknown = [f for f in fams if f not in FAMILIES and f not in TASKS]
        if unknown or not fams:
            raise _usage(f"unknown --families {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join([*FAMILIES, *TASKS])}")
        cfgs: list[Config | RealConfig] = []
        for c in configs.split(","):
            if c.strip() in REAL_CONFIGS:
                cfgs.append(REAL_CONFIGS[c.strip()])
                continue
            arch, _, kind = c.strip().partition("/")
            if arch not in ("gpt2", "llama") or kind not in ("full", "lora"):
                raise _usage(f"bad --configs entry {c.strip()!r}; use gpt2|llama/full|lora "
                             f"or {'|'.join(REAL_CONFIGS)}")
            cfgs.append(Config(arch, kind == "lora"))  # type: ignore[arg-type]
        try:
            seed_list = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise _usage(f"--seeds must be comma-separated integers, not {seeds!r}") from None
        specs = [m.strip() for m in methods.split(",")] if methods else list(SUITE_METHODS)
        quiet_transformers()
        log = None if json_out else (lambda s: _err.print(s, highlight=False, markup=False))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="driftscope-suite-") as tmp:
            rows = run_suite(workdir or Path(tmp), families=fams, configs=cfgs, seeds=seed_list,
                             methods=specs, epochs=epochs, counterfactual=counterfactual,
                             lds_subsets=lds_subsets, log=log)
        wall = time.perf_counter() - t0
    if json_out:
        for row in rows:
            _emit(row.to_json())
    elif markdown:
        sys.stdout.write(suite_markdown(rows, wall))
    else:
        print_suite(rows, Console(), wall)


def _usage(message: str) -> DriftscopeError:
    from driftscope_llm.services.errors import ConfigError

    return ConfigError(message)


def _eval_user(corpus: Path, queries: Path | None, label_field: str, model: Path | None,
               adapter: Path | None, device: str | None, specs: list[str], work: Path,
               arch: str, lora: bool, seed: int, epochs: int, log: Any) -> list[Any]:
    from driftscope_llm.attribution.data import load_corpus, load_queries
    from driftscope_llm.attribution.eval.evaluate import evaluate
    from driftscope_llm.attribution.modeling import load_model
    from driftscope_llm.attribution.tinymodel import build_tiny_model

    if queries is None:
        raise _usage("--corpus needs --queries")
    cx, qx = load_corpus(corpus), load_queries(queries)
    if model is None:
        words = [t for q in qx for t in (q.prompt, q.response)]
        tiny = build_tiny_model(cx, work / "model", arch=arch, lora=lora, seed=seed,  # type: ignore[arg-type]
                                extra_texts=words, epochs=epochs)
        loaded = load_model(tiny.model_dir, tiny.adapter_dir, device=device)
    else:
        loaded = load_model(model, adapter, device=device)
    return evaluate(loaded, cx, qx, methods=specs, label_field=label_field, workdir=work,
                    log=log)


def eval_markdown(rows: list[Any]) -> str:
    """The evaluation rows as a Markdown table, one row per task and method."""
    lines = ["| task | method | Acc | Cover | auPRC | seconds |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.task or '-'} | {r.method} | {r.acc:.3f} | {r.cover:.3f} | "
                     f"{r.auprc:.3f} | {r.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def _print_eval(rows: list[Any]) -> None:
    table = Table(title="attribution evaluation")
    for col in ("task", "method", "acc", "cover", "auprc", "seconds"):
        table.add_column(col, justify="left" if col in ("task", "method") else "right")
    for r in rows:
        table.add_row(r.task or "-", r.method, f"{r.acc:.3f}", f"{r.cover:.3f}",
                      f"{r.auprc:.3f}", f"{r.seconds:.1f}")
    Console().print(table)
