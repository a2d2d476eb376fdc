"""The HTML incident report renders in a real browser: headless Chromium (Debian ``chromium``).

Everything on the page comes from the producers, never from hand-written shapes: a synthetic
stream (v1, then v2 with billing's refusals at 50 %) replayed through the collector pipeline on
default settings with the real all-MiniLM-L6-v2 embedder (the demo's ``story.detect``), the one
incident it opens, the worker's ``Attributor.run`` report over that incident's exemplars (the
worker test's tiny fine-tuned GPT-2, repsim and gradsim indexes, behavioural verification on),
and the demo's ``story.write_report``, which draws the signal series and the embedding picture
from the stream. The DOM Chromium builds must hold every plot (one ``<svg data-plot=…>`` per
drifted signal, the embedding picture, the ranking and the verification bars) and the report's
own numbers, and a screenshot must show the plotted series' colour — i.e. the SVG was laid out
and painted, not only parsed.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from driftscope_llm.attribution.data import load_corpus
from driftscope_llm.attribution.verify import VerifySettings
from driftscope_llm.services.collector.pipeline import RaisedAnomaly
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.demo import story
from driftscope_llm.services.report import ReportInputs, render_report
from driftscope_llm.services.report.svg import SERIES_COLOUR
from driftscope_llm.services.store import MemoryStore
from driftscope_llm.services.store.attribution_report import AttributedReport, Verification
from driftscope_llm.services.store.model import Incident
from driftscope_llm.services.worker.job import Attributor
from driftscope_llm.services.worker.settings import ModelTarget
from tests.integration.test_worker import TOP_K, Built, built

__all__ = ["built"]
pytestmark = pytest.mark.slow  # about a minute: a model, two indexes, a replay, a verification
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars"]


@dataclass(frozen=True)
class Produced:
    raised: list[RaisedAnomaly]
    incident: Incident  # with the worker's report attached
    report: AttributedReport  # the same report, typed
    page: Path  # story.write_report's HTML


@pytest.fixture(scope="module")
def produced(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Produced:
    stream = tmp_path_factory.mktemp("report") / "stream.jsonl"
    v1 = generate_events(StreamSpec(n=1200, seed=1))
    v2 = generate_events(StreamSpec(n=800, seed=2, model_version="v2", prefix="b",
                                    drifts=(Drift(start=0, route="billing", refusal_rate=0.5),)))
    stream.write_text("".join(json.dumps(e) + "\n" for e in [*v1, *v2]))
    store = MemoryStore()
    det = story.detect(stream, store, use_embedder=True, on_progress=lambda n: None)
    assert len({r.incident.id for r in det.raised}) == 1, [r.to_dict() for r in det.raised]
    incident = story.pick_incident(det.raised, store)
    assert incident is not None and (incident.signal, incident.segment) == (
        "refusal", "route=billing")
    target = ModelTarget(model_dir=built.model_dir, top_k=TOP_K,
                         indexes={"repsim": built.repsim, "gradsim": built.gradsim},
                         verify=VerifySettings(enabled=True, corpus=built.corpus))
    incident.attribution = Attributor(device="cpu").run(incident, "support-bot@v2", target)
    rep = incident.attribution
    assert isinstance(rep, AttributedReport), rep  # the worker attributed it (not a failure)
    page = stream.parent / "report.html"
    story.write_report(page, incident, stream, det.raised, load_corpus(built.corpus),
                       det.embedder)
    return Produced(det.raised, incident, rep, page)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # `make test` installs Debian's chromium; without it this test fails rather than skips
    assert CHROMIUM is not None, "Debian chromium is not installed (apt-get install -y chromium)"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def _png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered rows) of an 8-bit non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            hdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", hdr[:10])
    assert depth == 8 and hdr[12] == 0
    bpp = {2: 3, 6: 4}[colour]
    raw, stride = zlib.decompress(idat), width * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def test_report_plots_render_in_chromium(produced: Produced, tmp_path: Path) -> None:
    page, rep = produced.page, produced.report
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    drawn = {r.anomaly.signal for r in produced.raised
             if r.anomaly.key.segment == "route=billing" and r.anomaly.signal != "embedding"}
    assert "refusal" in drawn
    for plot in [*(f"signal-{s}" for s in sorted(drawn)), "embedding", "ranking",
                 "verification"]:
        assert f'data-plot="{plot}"' in dom, plot
    assert dom.count('class="series"') == len(drawn) and dom.count("<circle") >= 100
    for row in rep.aggregate:  # the worker's ranking, row by row
        assert f"<td>{row.rank}</td><td>{row.id}</td><td>{row.mrr:.3f}</td>" in dom, row
    v = rep.verification
    assert isinstance(v, Verification), v  # the check ran and measured both arms
    assert f"Before: {v.loglik_before:.3f}. Ratio " in dom
    assert ("supports the attribution" if v.supports_attribution
            else "does not support the attribution") in dom
    assert produced.incident.id in dom and "change point" in dom

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,4000", page.as_uri())
    width, height, bpp, px = _png_pixels(shot.read_bytes())
    target = bytes.fromhex(SERIES_COLOUR[1:])
    pixels = np.frombuffer(px, dtype=np.uint8).reshape(height * width, bpp)[:, :3]
    near = np.abs(pixels.astype(int) - np.frombuffer(target, dtype=np.uint8)) <= 8
    hits = int(near.all(axis=1).sum())
    assert hits > 500, f"only {hits} pixels of the series colour: the plots did not paint"


def test_report_without_stream_or_embeddings_says_so(produced: Produced) -> None:
    html = render_report(ReportInputs(incident=produced.incident))
    assert "No event stream was given" in html
    assert "no embedding picture" in html
    assert 'data-plot="ranking"' in html


def test_report_states_how_far_to_trust_the_attribution(produced: Produced) -> None:
    """The trust verdict the worker computed for this report is on the page, in its words."""
    trust = produced.report.trust
    assert trust is not None and trust.level in {"high", "medium", "low"}
    html = produced.page.read_text()
    assert f'<p class="trust-{trust.level}">trust: {trust.level.upper()} — ' in html
    assert trust.advice.split()[0] in html
