"""Put GenAI content that arrived as OTel log records back on its span, in bounded memory.

A span and the log records carrying its text leave the app separately (the SDK exports spans
every 5 s and logs every 1 s by default, in separate requests), so either may arrive first, in
another request or Kafka message. :class:`ContentJoin` holds each side for ``wait_s``, keyed by
``(trace_id, span_id)``:

* a generation span **with** content is mapped at once; its id is remembered
  (``remember_spans``) so its content records, arriving before or after it
  (``span_and_event``), are dropped as redundant and never make a second event;
* a generation span **without** content takes the content that is waiting for it, if that
  content includes the output; otherwise it waits until a content record with the output
  comes (then it is mapped with that text) or until ``wait_s`` ran out (then it is settled
  with whatever content came — the prompt alone, or nothing: ``no_content``, or an empty-output
  event with ``keep_contentless``);
* content records wait ``wait_s`` for their span and are then dropped (``expired``).

Memory is bounded by ``max_pending_spans`` (the oldest span past it is settled early, as if its
wait had run out) and ``max_pending_content_bytes`` (the oldest content past it is dropped,
``evicted``). Outcomes are counted in :attr:`ContentJoin.counts`.

The held state lives in the process's memory only: a restart of ``driftscope ingest`` or of a
collector loses what was waiting (at most ``wait_s`` of spans without content, and of content
records without their span); nothing is duplicated. Spans and their content must reach the same
process: one receiver for both signals, or, on Kafka, the same topic partitioned by trace id.

>>> from driftscope_llm.services.ingest.otlp import SpanView
>>> from driftscope_llm.services.ingest.otlp_logs import ContentEvent
>>> from driftscope_llm.services.ingest.settings import ContentJoinSettings
>>> now = [0.0]
>>> join = ContentJoin(ContentJoinSettings(wait_s=10), clock=lambda: now[0])
>>> span = SpanView("ab", "cd", "chat m", 1, 2, {"gen_ai.request.model": "m"}, {})
>>> join.offer_span(span) is None   # no content yet: it waits
True
>>> choice = ContentEvent("ab", "cd", "gen_ai.choice",
...                       {}, {"index": 0, "message": {"content": "Hi!"}}, 40)
>>> [joined] = join.offer_content([choice])
>>> joined.events[0][1]["gen_ai.output.messages"]
[{'role': 'assistant', 'content': 'Hi!'}]
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftscope_llm.services.ingest.otlp import SpanView
from driftscope_llm.services.ingest.otlp_logs import (
    CHOICE_EVENT,
    DETAILS_EVENT,
    MESSAGE_EVENTS,
    ContentEvent,
)
from driftscope_llm.services.ingest.settings import ContentJoinSettings

__all__ = ["ContentJoin", "attach_content"]

Key = tuple[str, str]


@dataclass(slots=True)
class _Content:
    since: float
    events: list[ContentEvent] = field(default_factory=list)
    size: int = 0

    @property
    def has_output(self) -> bool:
        return any(ev.has_output for ev in self.events)


class ContentJoin:
    """The join state of one process; thread-safe (the receiver serves requests on threads)."""

    def __init__(self, settings: ContentJoinSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.counts: Counter[str] = Counter()
        """``joined`` spans, ``redundant`` content records (their span carried the text),
        ``expired_spans`` / ``expired_content`` (waited ``wait_s``), ``evicted_spans`` /
        ``evicted_content`` (pushed out by the bounds)."""
        self._lock = threading.Lock()
        self._spans: OrderedDict[Key, tuple[float, SpanView]] = OrderedDict()
        self._content: OrderedDict[Key, _Content] = OrderedDict()
        self._content_bytes = 0
        self._done: OrderedDict[Key, None] = OrderedDict()
        self._settled: list[SpanView] = []

    @property
    def pending(self) -> tuple[int, int]:
        """``(spans, content records)`` held now."""
        with self._lock:
            return len(self._spans), sum(len(c.events) for c in self._content.values())

    def span_has_content(self, span: SpanView) -> None:
        """A span mapped with its own content: drop content held for it, remember its id."""
        key = (span.trace_id, span.span_id)
        with self._lock:
            self._drop_content(key, "redundant")
            self._remember(key)

    def offer_span(self, span: SpanView) -> SpanView | None:
        """A generation span without content: itself with its content attached when that is
        already here, else ``None`` (it waits; :meth:`expire` settles it later)."""
        key = (span.trace_id, span.span_id)
        with self._lock:
            content = self._content.get(key)
            if content is not None and content.has_output:
                return self._complete(key, span)
            self._spans[key] = (self.clock(), span)
            while len(self._spans) > self.settings.max_pending_spans:
                _, (_, oldest) = self._spans.popitem(last=False)
                self.counts["evicted_spans"] += 1
                self._settled.append(self._with_partial(oldest))
            return None

    def offer_content(self, events: Sequence[ContentEvent]) -> list[SpanView]:
        """The content records of one export: the waiting spans they complete (their output is
        now here), with the content attached. All records are taken in before any span is
        completed, so the choices of one export all reach their span."""
        touched: dict[Key, None] = {}
        with self._lock:
            for event in events:
                key = event.key
                if key in self._done:
                    self.counts["redundant"] += 1
                    continue
                content = self._content.get(key)
                if content is None:
                    content = self._content[key] = _Content(since=self.clock())
                content.events.append(event)
                content.size += event.size
                self._content_bytes += event.size
                touched[key] = None
            out = []
            for key in touched:
                content = self._content.get(key)
                if key in self._spans and content is not None and content.has_output:
                    _, span = self._spans.pop(key)
                    out.append(self._complete(key, span))
            while self._content_bytes > self.settings.max_pending_content_bytes:
                self._drop_content(next(iter(self._content)), "evicted_content")
            return out

    def expire(self, *, everything: bool = False) -> list[SpanView]:
        """Spans whose wait ran out (all held spans with ``everything``, at shutdown), with the
        partial content that came for them; content past its wait is dropped."""
        with self._lock:
            deadline = self.clock() - self.settings.wait_s
            out, self._settled = self._settled, []
            while self._spans:
                key, (since, span) = next(iter(self._spans.items()))
                if not everything and since > deadline:
                    break
                del self._spans[key]
                self.counts["expired_spans"] += 1
                out.append(self._with_partial(span))
            while self._content:
                key, content = next(iter(self._content.items()))
                if not everything and content.since > deadline:
                    break
                self._drop_content(key, "expired_content")
            return out

    # under the lock ------------------------------------------------------------------------------
    def _complete(self, key: Key, span: SpanView) -> SpanView:
        content = self._content.pop(key)
        self._content_bytes -= content.size
        self._remember(key)
        self.counts["joined"] += 1
        attach_content(span, content.events)
        return span

    def _with_partial(self, span: SpanView) -> SpanView:
        key = (span.trace_id, span.span_id)
        content = self._content.pop(key, None)
        if content is not None:
            self._content_bytes -= content.size
            attach_content(span, content.events)
        return span

    def _drop_content(self, key: Key, outcome: str) -> None:
        content = self._content.pop(key, None)
        if content is not None:
            self._content_bytes -= content.size
            self.counts[outcome] += len(content.events)

    def _remember(self, key: Key) -> None:
        if self.settings.remember_spans <= 0:
            return
        self._done[key] = None
        self._done.move_to_end(key)
        while len(self._done) > self.settings.remember_spans:
            self._done.popitem(last=False)


def attach_content(span: SpanView, events: list[ContentEvent]) -> None:
    """Add content records to ``span`` as the span events :mod:`.genai` reads: a details event
    and the older ``gen_ai.content.*`` events as they are; per-message records (``gen_ai.user
    .message`` …, ``gen_ai.choice``) gathered into one ``gen_ai.client.inference.operation
    .details`` event, messages in arrival order and choices by index."""
    direct = [(ev.name, ev.attributes) for ev in events if ev.name not in MESSAGE_EVENTS
              and ev.name != CHOICE_EVENT]
    inputs = [_message(MESSAGE_EVENTS[ev.name], ev.body) for ev in events
              if ev.name in MESSAGE_EVENTS]
    choices = sorted((ev.body for ev in events if ev.name == CHOICE_EVENT
                      and isinstance(ev.body, Mapping)), key=_choice_index)
    gathered: dict[str, Any] = {}
    if inputs:
        gathered["gen_ai.input.messages"] = inputs
    if choices:
        gathered["gen_ai.output.messages"] = [_choice_message(c) for c in choices]
    if gathered:
        direct.append((DETAILS_EVENT, gathered))
    span.events[:0] = direct


def _message(role: str, body: Any) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return {**body, "role": body.get("role") or role}
    return {"role": role, "content": body if isinstance(body, str) else None}


def _choice_index(choice: Mapping[str, Any]) -> int:
    index = choice.get("index")
    return index if isinstance(index, int) else 0


def _choice_message(choice: Mapping[str, Any]) -> dict[str, Any]:
    message = choice.get("message")
    out = {"role": "assistant", **(message if isinstance(message, Mapping) else {})}
    if isinstance(choice.get("finish_reason"), str):
        out["finish_reason"] = choice["finish_reason"]
    return out
