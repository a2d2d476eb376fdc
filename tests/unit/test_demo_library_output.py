"""The demo keeps libraries' output off its story (``services/demo/library_output.py``).

Whatever a library writes — ``print``, a logging handler made before or during the block, a
Python warning, native code writing to descriptor 2 — lands in the log file, and the story alone
on standard error; ``show=True`` (``-v``) captures nothing. Run in a subprocess, with real file
descriptors, as ``make demo`` runs; and in-process under the tests' runner, where only
Python-level output can be caught.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from driftscope_llm.services.demo.library_output import library_output

NOISE = textwrap.dedent("""
    import logging, os, sys, warnings
    from pathlib import Path
    from driftscope_llm.services.demo.library_output import library_output

    early = logging.getLogger("torch.onnx")  # a library's handler made at its import
    early.addHandler(logging.StreamHandler(sys.stderr))
    early.propagate = False
    with library_output(Path(sys.argv[1]), show=sys.argv[2] == "show") as story:
        print("story: step 1", file=story)
        print("[torch.onnx] Run decompositions...")
        early.warning("W1207 torchvision is not installed. Skipping torchvision::nms")
        late = logging.getLogger("transformers")
        late.addHandler(logging.StreamHandler(sys.stderr))
        late.warning("late handler")
        warnings.warn("a library warning", UserWarning, stacklevel=1)
        os.write(2, b"native stderr\\n")
        os.write(1, b"native stdout\\n")
        print("story: step 2", file=story)
    print("after", file=sys.stderr)
    early.warning("early handler after the block")
    late.warning("late handler after the block")
""")
LIBRARY_LINES = ["[torch.onnx] Run decompositions...",
                 "W1207 torchvision is not installed. Skipping torchvision::nms",
                 "late handler", "a library warning", "native stderr", "native stdout"]


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "library-output.log"
    proc = subprocess.run([sys.executable, "-c", NOISE, str(log), mode], capture_output=True,
                          text=True, timeout=120, check=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "default"})
    return proc, log.read_text() if log.exists() else ""


def test_library_output_goes_to_the_log_and_the_story_to_stderr(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, "capture")
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == ["story: step 1", "story: step 2", "after",
                                        "early handler after the block",
                                        "late handler after the block"]
    for line in LIBRARY_LINES:
        assert line in log, line


def test_show_captures_nothing(tmp_path: Path) -> None:
    proc, log = _run(tmp_path, "show")
    assert log == ""
    shown = proc.stdout + proc.stderr
    for line in ["story: step 1", "story: step 2", *LIBRARY_LINES]:
        assert line in shown, line


def test_without_real_descriptors_python_output_is_caught(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    # capsys stands in for CliRunner: sys.stderr is not descriptor 2 here
    lib = logging.getLogger("test_demo_library_output.lib")
    handler = logging.StreamHandler(sys.stderr)
    lib.addHandler(handler)
    lib.propagate = False
    try:
        log = tmp_path / "library-output.log"
        with library_output(log, show=False) as story:
            print("story line", file=story)
            print("library print")
            lib.warning("library log")
        lib.warning("after the block")
        out, err = capsys.readouterr()
        assert (out, err.splitlines()) == ("", ["story line", "after the block"])
        assert log.read_text().splitlines() == ["library print", "library log"]
    finally:
        lib.removeHandler(handler)
