"""The HTML incident report renders in a real browser: headless Chromium (Debian ``chromium``).

The DOM Chromium builds must hold every plot (one ``<svg data-plot=…>`` per drifted signal, the
embedding picture, the ranking and the verification bars), and a screenshot must show the plotted
series' colour — i.e. the SVG was laid out and painted, not only parsed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from driftscope_llm.attribution.data import Example
from driftscope_llm.services.report import ReportInputs, SignalSeries, project_2d, render_report
from driftscope_llm.services.report.svg import SERIES_COLOUR
from driftscope_llm.services.store.model import Exemplar, Incident
from driftscope_llm.services.store.report import AgreementSummary
from tests.attribution_reports import attributed_report, verification

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars"]


def _incident() -> Incident:
    now = datetime(2025, 1, 6, 10, tzinfo=UTC)
    inc = Incident(id="inc-demo", opened_at=now, updated_at=now, model="support-bot",
                   model_version="v2", segment="billing", signal="refusal",
                   detector="two_proportion", statistic=5.1, threshold=3.2, effect_size=0.2,
                   event_id="e-260", exemplars=[Exemplar(event_id="e-250", prompt="my card ?",
                                                         output="i am unable to help")])
    inc.attribution = attributed_report(
        ["planted-00", "billing-001"], exemplar="e-250", methods=("repsim", "gradsim"),
        agreement=AgreementSummary(mean_overlap=0.5, mean_spearman=0.3),
        verification=verification(3.0, 1.0))
    return inc


def _inputs() -> ReportInputs:
    rng = np.random.default_rng(0)
    refusals = [float(x) for x in (rng.random(400) < np.r_[np.full(200, 0.01),
                                                          np.full(200, 0.25)])]
    logprob = list(rng.normal(-0.3, 0.05, 200)) + list(rng.normal(-0.6, 0.05, 200))
    series = [SignalSeries("refusal", list(refusals), 200, change_index=205, alarm_index=260,
                           version_starts={"v1": 0, "v2": 200}),
              SignalSeries("logprob_mean", [float(x) for x in logprob], 200, change_index=201,
                           version_starts={"v1": 0, "v2": 200})]
    emb = project_2d(rng.normal(0, 1, (50, 8)).astype(np.float32),
                     rng.normal(1, 1, (50, 8)).astype(np.float32), "test embeddings")
    corpus = {"planted-00": Example("planted-00", "my card ?", "i am unable to help",
                                    label="planted")}
    return ReportInputs(incident=_incident(), series=series, embedding=emb, corpus=corpus)


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


def test_report_plots_render_in_chromium(tmp_path: Path) -> None:
    html = render_report(_inputs())
    assert "<script" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")
    page = tmp_path / "report.html"
    page.write_text(html)
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    for plot in ("signal-refusal", "signal-logprob_mean", "embedding", "ranking",
                 "verification"):
        assert f'data-plot="{plot}"' in dom, plot
    assert dom.count('class="series"') == 2 and dom.count("<circle") >= 100
    assert "change point" in dom and "planted-00" in dom

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1400", page.as_uri())
    width, height, bpp, px = _png_pixels(shot.read_bytes())
    target = bytes.fromhex(SERIES_COLOUR[1:])
    hits = sum(1 for i in range(0, width * height * bpp, bpp)
               if all(abs(px[i + k] - target[k]) <= 8 for k in range(3)))
    assert hits > 500, f"only {hits} pixels of the series colour: the plots did not paint"


def test_report_without_stream_or_embeddings_says_so() -> None:
    html = render_report(ReportInputs(incident=_incident()))
    assert "No event stream was given" in html
    assert "no embedding picture" in html
    assert 'data-plot="ranking"' in html


def test_report_states_how_far_to_trust_the_attribution() -> None:
    """The trust verdict the worker computes (attribution.trust.assess) is on the page."""
    from driftscope_llm.attribution.trust import assess
    from driftscope_llm.services.store.report import AttributedReport, Trust

    inc = _incident()
    assert isinstance(inc.attribution, AttributedReport)
    assessed = assess("repsim:mean_response", inc.signal, 0.5)
    trust = Trust.model_validate(assessed.to_json())
    inc.attribution = inc.attribution.model_copy(update={"trust": trust})
    html = render_report(ReportInputs(incident=inc))
    assert f'<p class="trust-{trust.level}">trust: {trust.level.upper()} — ' in html
    assert trust.advice.split()[0] in html
