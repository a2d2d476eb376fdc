"""The in-memory bus keeps Kafka's delivery semantics, and the shared loop's idleness rule."""

from __future__ import annotations

import pytest

from driftscope_llm.services.bus import ConsumerLoop, MemoryBroker, MemoryBus, Message, Partition
from driftscope_llm.services.errors import BusError

P0 = Partition("t", 0)


def _broker(n: int, partitions: int = 1) -> MemoryBroker:
    broker = MemoryBroker(partitions=partitions)
    for i in range(n):
        broker.append("t", f"m{i}".encode(), key=f"k{i}".encode())
    return broker


def _drain(bus: MemoryBus) -> list[Message]:
    bus.subscribe(["t"])
    out: list[Message] = []
    while batch := bus.poll(0):
        out += [m for msgs in batch.values() for m in msgs]
    return out


def test_what_a_member_did_not_commit_is_delivered_again_to_the_next_member() -> None:
    broker = _broker(10)
    first = broker.member("g", max_poll_records=4)
    assert [m.offset for m in _drain(first)] == list(range(10))
    first.commit({P0: 6})
    first.close()
    assert [m.offset for m in _drain(broker.member("g"))] == [6, 7, 8, 9]
    assert [m.offset for m in _drain(broker.member("other-group"))] == list(range(10))


def test_seek_positions_and_end_offsets() -> None:
    bus = _broker(5).member("g")
    bus.subscribe(["t"])
    bus.poll(0)
    assert bus.positions() == {P0: 5} and bus.end_offsets([P0]) == {P0: 5}
    bus.seek(P0, 2)
    assert [m.value for m in bus.poll(0)[P0]] == [b"m2", b"m3", b"m4"]


def test_sends_become_visible_on_flush_and_are_lost_on_close() -> None:
    broker = MemoryBroker()
    bus = broker.member("g")
    bus.send("out", b"a", key=b"k", headers=[("h", b"1")])
    assert broker.messages("out") == []
    bus.flush()
    (m,) = broker.messages("out")
    assert (m.value, m.key, m.headers) == (b"a", b"k", (("h", b"1"),))
    bus.send("out", b"b")
    bus.close()
    assert len(broker.messages("out")) == 1
    with pytest.raises(BusError):
        bus.poll(0)


def test_keys_spread_over_partitions_and_keep_their_order() -> None:
    broker = _broker(40, partitions=3)
    parts = {m.partition for m in broker.messages("t")}
    assert len(parts) > 1
    for p in parts:
        offsets = [m.offset for m in broker.messages("t") if m.partition == p]
        assert offsets == sorted(offsets) == list(range(len(offsets)))


class _Counting:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.lags: list[dict[Partition, int]] = []

    def handle(self, batch: dict[Partition, list[Message]]) -> bool:
        self.seen += [m.offset for msgs in batch.values() for m in msgs]
        return True

    def on_idle(self) -> None:
        pass

    def on_lag(self, lag: dict[Partition, int]) -> None:
        self.lags.append(lag)


class _SlowJoin(MemoryBus):
    """Owns nothing for its first ``polls`` polls, as a member still joining its group."""

    def __init__(self, broker: MemoryBroker, polls: int) -> None:
        super().__init__(broker, "g")
        self.left = polls

    def poll(self, timeout_s: float) -> dict[Partition, list[Message]]:
        if self.left > 0:
            self.left -= 1
            return {}
        return super().poll(timeout_s)


def test_the_loop_is_idle_only_when_caught_up_with_owned_partitions() -> None:
    broker = _broker(7)
    handler = _Counting()
    bus = _SlowJoin(broker, polls=50)
    ticks = iter(range(10_000))  # a clock that moves one second a call
    loop = ConsumerLoop(bus, ["t"], handler, clock=lambda: float(next(ticks)), lag_every_s=0)
    assert loop.run(max_idle_s=3) is True
    assert bus.left == 0  # owning nothing for 50 polls (50+ s) was never taken for idleness
    assert handler.seen == list(range(7))
    assert handler.lags and handler.lags[-1] == {P0: 0}


def test_a_failing_poll_is_retried_and_a_handler_can_stop_the_loop() -> None:
    broker = _broker(3)
    bus = broker.member("g")

    class StopAtFirst(_Counting):
        def handle(self, batch: dict[Partition, list[Message]]) -> bool:
            super().handle(batch)
            return False

    broker.fail_polls = True
    loop = ConsumerLoop(bus, ["t"], StopAtFirst(), poll_timeout_s=0.01)
    calls = iter(range(3))

    def recover(_: float) -> bool:  # the broker comes back after two failed polls
        if next(calls, 2) >= 1:
            broker.fail_polls = False
        return False

    loop.stopping.wait = recover  # type: ignore[method-assign]
    assert loop.run(max_idle_s=0) is False
