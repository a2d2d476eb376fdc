"""Records that cross a package boundary are typed, never dicts read by string key (issue 26).

The records: a facet table's rows (``store.facets.facet_rows``), a drift monitor's summary
(``StreamMonitor.summary()``), the attribution index manifest (``attribution.index.manifest``)
and a typed model dumped back to a dict (the demo's last act did that to the attribution report).
:func:`string_key_reads` parses a module and follows, within each function, every value from
one of them — a call of ``facet_rows``, ``.summary()``, ``read_manifest`` or ``.model_dump``,
an ``.manifest`` attribute, a ``json.loads`` of a manifest, a parameter named ``*summary``
annotated as a dict — through assignments, loops, ``.items()``/``.values()``, ``.get`` and
subscripts, and reports each place that reads one by a string key (``x["key"]``,
``x.get("key")``). Each kind of record is read by key only in the module (or package) that owns
it. It also reports a manifest file read by hand (``json.loads`` of anything named manifest, or
``"manifest.json"`` opened or read) outside the manifest's module.

The tests run it on today's code (no findings) and on excerpts of the code before the records
were typed (a finding for each), so the check is known to catch what it is for.
"""

from __future__ import annotations

import ast
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FACET, SUMMARY, MANIFEST, DUMP = "facet row", "monitor summary", "index manifest", "dumped model"
OWNERS: dict[str, tuple[str, ...]] = {
    FACET: ("services/store/facets.py",),
    SUMMARY: ("services/drift/",),
    # the embedder's export manifest is another record, read only in its own module
    MANIFEST: ("attribution/index/manifest.py", "services/collector/embedder.py"),
    DUMP: (),
}
_ITERATORS = {"items", "values"}
_READS = {"read_text", "read_bytes", "open"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    record: str
    code: str


def _called(node: ast.AST, name: str) -> bool:
    """``node`` is a call of ``name(...)`` or ``x.name(...)``."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == name) or (
        isinstance(f, ast.Attribute) and f.attr == name)


def _mentions_manifest(node: ast.AST) -> bool:
    return "manifest" in ast.unparse(node).lower()


def _is_json_load(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("loads", "load") and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "json")


def _source_of(node: ast.AST) -> str | None:
    """The record a value comes straight from, if any."""
    if _called(node, "facet_rows"):
        return FACET
    if _called(node, "summary") and isinstance(node, ast.Call) and not node.args:
        return SUMMARY
    if _called(node, "read_manifest") or (
            isinstance(node, ast.Attribute) and node.attr == "manifest"):
        return MANIFEST
    if _is_json_load(node) and _mentions_manifest(node):
        return MANIFEST
    if _called(node, "model_dump"):
        return DUMP
    return None


class _Taint:
    """Which names of one scope (a function, or a module's top-level statements) hold (parts
    of) which record."""

    def __init__(self, tree: ast.AST) -> None:
        self.names: dict[str, str] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for a in [*fn.args.args, *fn.args.kwonlyargs]:
                    ann = "" if a.annotation is None else ast.unparse(a.annotation)
                    if a.arg.endswith("summary") and ("dict" in ann or "Mapping" in ann):
                        self.names[a.arg] = SUMMARY
        changed = True
        while changed:  # to a fixed point: names flow into names
            changed = False
            for node in ast.walk(tree):
                for target, value in self._bindings(node):
                    record = self.record(value)
                    if record is None:
                        continue
                    for name in self._target_names(target):
                        if self.names.get(name) != record:
                            self.names[name] = record
                            changed = True

    @staticmethod
    def _bindings(node: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
        if isinstance(node, ast.Assign):
            return [(t, node.value) for t in node.targets]
        if isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            return [(node.target, node.value)]
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            return [(node.target, _Taint._element(node.iter))]
        return []

    @staticmethod
    def _element(iterable: ast.AST) -> ast.AST:
        """What a loop over ``iterable`` binds: the mapping itself for ``.items()`` and
        ``.values()`` (its values are the record's parts), else ``iterable``."""
        if _called(iterable, "items") or _called(iterable, "values") or _called(
                iterable, "sorted") or _called(iterable, "enumerate"):
            assert isinstance(iterable, ast.Call)
            if isinstance(iterable.func, ast.Attribute) and iterable.func.attr in _ITERATORS:
                return iterable.func.value
            if iterable.args:
                return iterable.args[0]
        return iterable

    @staticmethod
    def _target_names(target: ast.AST) -> list[str]:
        return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]

    def record(self, node: ast.AST | None) -> str | None:
        """The record ``node`` holds (part of), or ``None``."""
        if node is None:
            return None
        direct = _source_of(node)
        if direct is not None:
            return direct
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Subscript):
            return self.record(node.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr in ("get", *_ITERATORS)):
            return self.record(node.func.value)
        if isinstance(node, ast.IfExp):
            return self.record(node.body) or self.record(node.orelse)
        if isinstance(node, ast.BoolOp):
            return next((r for r in map(self.record, node.values) if r), None)
        return None


def _string_key(node: ast.AST) -> ast.AST | None:
    """The value read by a constant string key in ``node`` (``v["k"]``, ``v.get("k")``; a
    module writing keys of a dict it is building, ``v["k"] = ...``, reads nothing)."""
    if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
        return node.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return node.func.value
    return None


def _owned(path: str, record: str) -> bool:
    return any(path == o or (o.endswith("/") and path.startswith(o)) for o in OWNERS[record])


def string_key_reads(source: str, path: str) -> list[Finding]:
    """Every read by string key, in ``source`` (the module at ``path``, relative to the
    repository), of a record that module does not own (module docstring)."""
    found: list[Finding] = []
    for scope in _scopes(ast.parse(source)):
        taint = _Taint(scope)
        for node in ast.walk(scope):
            value = _string_key(node)
            record = None if value is None else taint.record(value)
            if _hand_read_manifest(node):
                record = MANIFEST
            if record is not None and not _owned(path, record):
                found.append(Finding(path, getattr(node, "lineno", 0), record,
                                     ast.unparse(node)))
    return sorted(set(found), key=lambda f: (f.line, f.code))


def _scopes(tree: ast.Module) -> list[ast.AST]:
    """Every function (a name means one thing inside it), and the module's other statements."""
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    functions: list[ast.AST] = [n for n in ast.walk(tree)
                                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    top = ast.Module(body=[s for s in tree.body if not isinstance(s, defs)], type_ignores=[])
    return [*functions, top]


def _hand_read_manifest(node: ast.AST) -> bool:
    """``json.loads(<manifest>)`` or ``<... "manifest.json" ...>.read_text()`` and the like."""
    if _is_json_load(node) and _mentions_manifest(node):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
            node.func.attr in _READS):
        return any(isinstance(n, ast.Constant) and n.value == "manifest.json"
                   for n in ast.walk(node.func.value))
    return False


def _modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for top in ("services", "attribution")
                  for p in (ROOT / top).rglob("*.py"))


def test_no_package_reads_another_packages_records_by_string_key() -> None:
    found = [f for m in _modules() for f in string_key_reads((ROOT / m).read_text(), m)]
    assert found == []


# -- the check catches what it is for: excerpts of the code before the records were typed
#    (driftscope at ae916ef), each with the reads it must report

OLD: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("services/cli/incidents.py", '''
def _print_facets(con, inc):
    for row in facet_rows(inc.facets):
        table.add_row(e(row["segment"]), f"{row['effect_size']:.3g}", row["first_at"][:19])
''', [(FACET, "row['segment']"), (FACET, "row['effect_size']"), (FACET, "row['first_at']")]),
    ("services/report/html.py", '''
def _facets(r):
    rows = "".join(f"<td>{escape(f['signal'])}</td>" for f in facet_rows(inc.facets))
''', [(FACET, "f['signal']")]),
    ("services/regress/gate.py", '''
def _test_signal(monitor, name):
    summary = monitor.summary()["signals"][name]
    effect = summary.get("effect", {})
    for d, st in summary.get("detectors", {}).items():
        stat = st.get("statistic")
    if effect.get("size") is not None and effect["size"] < 1:
        pass
''', [(SUMMARY, "monitor.summary()['signals']"), (SUMMARY, "summary.get('effect', {})"),
      (SUMMARY, "summary.get('detectors', {})"), (SUMMARY, "st.get('statistic')"),
      (SUMMARY, "effect.get('size')"), (SUMMARY, "effect['size']")]),
    ("services/collector/metrics.py", '''
class M:
    def export_summary(self, labels, summary: dict[str, Any]) -> None:
        for signal, info in summary.get("signals", {}).items():
            if info.get("state") != "monitoring":
                continue
''', [(SUMMARY, "summary.get('signals', {})"), (SUMMARY, "info.get('state')")]),
    ("services/cli/trace.py", '''
def _parse_indexes(specs):
    manifest = Path(path) / "manifest.json"
    method = json.loads(manifest.read_text())["settings"]["method"]
''', [(MANIFEST, "json.loads(manifest.read_text())"),
      (MANIFEST, "json.loads(manifest.read_text())['settings']"),
      (MANIFEST, "json.loads(manifest.read_text())['settings']['method']")]),
    ("services/worker/aggregate.py", '''
def manifest_id(index_dir):
    data = (Path(index_dir) / "manifest.json").read_bytes()
''', [(MANIFEST, "(Path(index_dir) / 'manifest.json').read_bytes()")]),
    ("services/worker/job.py", '''
def run(index):
    return index.manifest.get("corpus", {}).get("hash")
''', [(MANIFEST, "index.manifest.get('corpus', {})"),
      (MANIFEST, "index.manifest.get('corpus', {}).get('hash')")]),
    ("attribution/index/parts.py", '''
def build_part(out):
    manifest = build_shards(out)
    rows = sum(int(e["rows"]) for e in manifest["shards"])
    return read_manifest(out, name).get("status") == "complete"
''', [(MANIFEST, "read_manifest(out, name).get('status')")]),
    ("services/demo/last_act.py", '''
def attributed_ids(report, k):
    data = report.model_dump(mode="json") if isinstance(report, BaseModel) else report
    method = data["methods"][data["primary_method"]]
    for per in method["per_exemplar"]:
        out[per["query_id"]] = None
''', [(DUMP, "data['methods']"), (DUMP, "data['primary_method']"),
      (DUMP, "method['per_exemplar']"), (DUMP, "per['query_id']")]),
]


@pytest.mark.parametrize(("path", "source", "want"), OLD, ids=[p for p, _, _ in OLD])
def test_the_check_reports_the_old_string_key_reads(path: str, source: str,
                                                    want: list[tuple[str, str]]) -> None:
    got = [(f.record, f.code) for f in string_key_reads(source, path)]
    assert sorted(got) == sorted(want)


def test_owners_may_read_their_own_records() -> None:
    source = 'def f(m):\n    return m.summary()["signals"], read_manifest(d)["dim"]\n'
    assert string_key_reads(source, "services/drift/monitor.py") == [
        Finding("services/drift/monitor.py", 2, MANIFEST, "read_manifest(d)['dim']")]
    assert string_key_reads(source, "attribution/index/manifest.py") == [
        Finding("attribution/index/manifest.py", 2, SUMMARY, "m.summary()['signals']")]


OLD_COMMIT = "ae916ef"
OLD_FILES = ["services/cli/incidents.py", "services/report/html.py", "services/regress/gate.py",
             "services/collector/metrics.py", "services/cli/trace.py",
             "services/worker/aggregate.py", "services/worker/job.py",
             "services/cli/attribution.py", "attribution/index/feature_index.py",
             "attribution/index/parts.py", "services/demo/last_act.py"]


def _old_file(path: str) -> str | None:
    try:
        out = subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


@pytest.mark.parametrize("path", OLD_FILES)
def test_the_check_fails_on_each_whole_file_before_the_records_were_typed(path: str) -> None:
    old = _old_file(path)
    if old is None:
        pytest.skip(f"{OLD_COMMIT} is not in this clone (shallow checkout)")
    assert string_key_reads(old, path), f"no string-key read found in {path} at {OLD_COMMIT}"
