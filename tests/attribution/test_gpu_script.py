"""The GPU benchmark script runs end to end on CPU with a tiny config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_attribution import BF16_PEAK_TFLOPS, report

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_attribution.py"


def test_tiny_run_on_cpu_reports_every_figure() -> None:
    done = subprocess.run([sys.executable, "-W", "error", str(SCRIPT), "--tiny", "--device",
                           "cpu", "--peak-tflops", "1.0"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    r = json.loads(lines[-1])
    assert r["device"] == "cpu" and r["dtype"] == "float32" and r["tokens_per_example"] == 32
    assert r["params"] > 0 and r["peak_tflops"] == 1.0
    assert r["forward"]["examples_s"] > 0 and r["forward_backward"]["examples_s"] > 0
    assert r["forward"]["tokens_s"] == r["forward"]["examples_s"] * 32
    assert 0 < r["forward"]["share_of_peak"] == r["forward"]["tflops"] / 1.0
    for method, base in (("repsim", "forward"), ("gradsim", "forward_backward")):
        build = r[f"{method}_build"]
        assert build["examples"] == 24 and build["seconds"] > 0
        assert build[f"ratio_to_{base}"] > 0
    text = "\n".join(lines[:-1])
    assert text == report(r)
    assert "repsim index build" in text and "of peak" in text


def test_peak_table_matches_device_names() -> None:
    def peak(name: str) -> float | None:
        return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)

    assert peak("NVIDIA H200") == 989.4
    assert peak("NVIDIA H100 80GB HBM3") == 989.4
    assert peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak("NVIDIA L4") == 121.0 and peak("NVIDIA L40S") == 362.1
    assert peak("cpu") is None
