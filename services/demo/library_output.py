"""Keep what libraries print off the demo's story, in a log file beside its results.

torch, transformers, peft and the ONNX exporter write warnings and progress of their own: Python
``warnings``, loggers with handlers of their own (the exporter's ``W1207 … torchvision is not
installed`` lines), ``print`` (``[torch.onnx] Run decompositions... ✅``) and native code writing
to file descriptors 1 and 2. While :func:`library_output` is active all of that goes to
``log_path``; the story is told on the stream it yields, which is the terminal's standard error.
With ``show=True`` (the demo's ``-v``) nothing is captured.

Where the process has real standard streams (a terminal, a pipe, ``make demo``), descriptors 1
and 2 are pointed at the log, so native output is caught too, and the story gets a duplicate of
the original standard error. Where they are not file descriptors (the tests' ``CliRunner``, an
embedded interpreter) only Python-level output can be caught: ``sys.stdout``/``sys.stderr`` and
the logging handlers that write to them are pointed at the log, and put back afterwards.

Not for the services: they log on stderr on purpose. Errors raised inside the block are reported
after it has ended, on the real standard error.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

__all__ = ["library_output"]


@contextmanager
def library_output(log_path: Path, *, show: bool) -> Iterator[TextIO]:
    """Send library output to ``log_path`` (appended) unless ``show``; yield the story stream."""
    if show:
        yield sys.stderr
        return
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        if _real_std_streams():
            with _descriptors_to(log) as story:
                yield story
        else:
            with _python_streams_to(log) as story:
                yield story


def _real_std_streams() -> bool:
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False


@contextmanager
def _descriptors_to(log: IO[str]) -> Iterator[TextIO]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    story = os.fdopen(os.dup(saved_err), "w", buffering=1, encoding=sys.stderr.encoding,
                      errors="replace")
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield story
    finally:
        story.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        story.close()


def _stream_handlers() -> list[logging.StreamHandler]:  # type: ignore[type-arg]
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


@contextmanager
def _python_streams_to(log: IO[str]) -> Iterator[TextIO]:
    story, old_out = sys.stderr, sys.stdout
    std = {id(story), id(old_out), id(sys.__stderr__), id(sys.__stdout__)}
    moved = [(h, h.stream) for h in _stream_handlers() if id(h.stream) in std]
    for handler, _ in moved:
        handler.setStream(log)
    sys.stdout = sys.stderr = log
    try:
        yield story
    finally:
        sys.stdout, sys.stderr = old_out, story
        for handler, stream in moved:
            handler.setStream(stream)
        for handler in _stream_handlers():  # made inside the block: bound to the log, soon closed
            if handler.stream is log:
                handler.setStream(story)
