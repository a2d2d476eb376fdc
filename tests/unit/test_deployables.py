"""Each deployable is wired once, by ``build_<component>(settings)``: the settings reach the
component, the parts a test hands in are the ones used, and what building opened is released.
In-memory bus, store and dead-letter sink; real HTTP on 127.0.0.1 for the receivers.

(``build_worker`` is tested against the consumer loop in ``test_lifecycle.py``.)
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from driftscope_llm.services.alerts.deadletter import MemoryDeadLetterSink
from driftscope_llm.services.bus import MemoryBroker, TopicSettings
from driftscope_llm.services.collector.synthetic import Drift, StreamSpec, generate_events
from driftscope_llm.services.config import (
    AlertsSettings,
    CollectorSettings,
    IngestServiceSettings,
)
from driftscope_llm.services.deployables import (
    build_alert_receiver,
    build_collector,
    build_otlp_receiver,
)
from driftscope_llm.services.errors import ConfigError
from driftscope_llm.services.otlp_receiver.settings import OtlpReceiverSettings
from driftscope_llm.services.store import MemoryStore
from tests.fixtures.ingest.spans import export_request, genai_span
from tests.unit._webhook_sink import WebhookSink
from tests.unit.test_collector_service import SMALL
from tests.unit.test_webhooks_receiver import am_message

SECRET = "s3cret-s3cret-s3cret"
TOKEN = "am-bearer-token-0123456789"


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={**headers,
                                                       "Content-Length": str(len(body))})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _endpoint(url: str, events: list[str]) -> dict[str, Any]:
    return {"name": "ops", "url": url, "secret": SECRET, "events": events}


def test_the_collector_is_built_from_its_settings_with_the_parts_handed_in() -> None:
    broker, store, registry = MemoryBroker(), MemoryStore(), CollectorRegistry()
    topics = TopicSettings(outputs="outputs", anomalies="anomalies")
    spec = StreamSpec(n=1500, seed=3, drifts=(Drift(start=900, route="billing",
                                                    refusal_rate=0.6),))
    for event in generate_events(spec):
        broker.append(topics.outputs, json.dumps(event).encode())
    with WebhookSink() as hook:
        settings = CollectorSettings.model_validate({
            "topics": topics.model_dump(), "embedder": {"enabled": False},
            "drift": SMALL.model_dump(), "segments": {"label": "route",
                                                      "allowed": ["billing", "shipping"]},
            "webhooks": {"endpoints": [_endpoint(hook.url, ["incident.opened"])]}})
        built = build_collector(settings, store=store, bus=broker.member("c"),
                                registry=registry, dead_letters=MemoryDeadLetterSink())
        built.component.run(max_idle_s=0.0)
        built.close()
        opened = [json.loads(r.body)["incident"]["id"] for r in hook.received]
    announced = {json.loads(m.value)["incident_id"] for m in broker.messages("anomalies")}
    incidents = {i.id for i in store.list_incidents()}
    assert incidents and incidents == announced == set(opened) and len(opened) == len(incidents)
    assert registry.get_sample_value("driftscope_events_consumed_total",
                                     {"topic": "outputs"}) == spec.n


def test_without_endpoints_there_is_no_notifier_and_no_dead_letter_list() -> None:
    built = build_collector(CollectorSettings.model_validate({"embedder": {"enabled": False}}),
                            store=MemoryStore(), bus=MemoryBroker().member("c"))
    assert built.notifier is None and built.component.notify is None
    built.component.bus.close()


def test_the_otlp_receiver_publishes_through_the_publisher_it_is_given() -> None:
    broker = MemoryBroker()
    settings = IngestServiceSettings(
        topics=TopicSettings(outputs="outputs", dead_letter="outputs.dlq"),
        receiver=OtlpReceiverSettings(port=0, bearer_token=SecretStr(SECRET)))
    publisher = broker.member("ingest")
    built = build_otlp_receiver(settings, publisher=publisher)
    rx = built.component.start()
    try:
        events = list(generate_events(StreamSpec(n=3, seed=2)))
        body = export_request([genai_span(e) for e in events]).SerializeToString()
        status = _post(rx.port, "/v1/traces", body, {
            "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {SECRET}"})
    finally:
        rx.stop()
        built.close()
    assert status == 200
    assert [json.loads(m.value)["output"] for m in broker.messages("outputs")] == [
        e["output"] for e in events]
    assert [m.key for m in broker.messages("outputs")] == [e["model"].encode() for e in events]


def test_a_taken_port_is_an_os_error_after_closing_the_publisher() -> None:
    closed: list[bool] = []

    class Publisher:
        def send(self, topic: str, value: bytes, **kw: Any) -> None: ...

        def flush(self) -> None: ...

        def close(self) -> None:
            closed.append(True)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = IngestServiceSettings(receiver=OtlpReceiverSettings(port=port))
        with pytest.raises(OSError):
            build_otlp_receiver(settings, publisher=Publisher())
    assert closed == [True]


def test_the_alert_receiver_relays_to_the_endpoints_and_needs_credentials() -> None:
    with pytest.raises(ConfigError) as err:
        build_alert_receiver(AlertsSettings.model_validate({}),
                             dead_letters=MemoryDeadLetterSink())
    assert err.value.field == "receiver"
    with WebhookSink() as hook:
        settings = AlertsSettings.model_validate({
            "receiver": {"port": 0, "bearer_token": TOKEN},
            "webhooks": {"endpoints": [_endpoint(hook.url, ["alert.firing"])]}})
        built = build_alert_receiver(settings, dead_letters=MemoryDeadLetterSink())
        rx = built.component.start()
        try:
            status = _post(rx.port, "/alertmanager", json.dumps(am_message()).encode(),
                           {"Content-Type": "application/json",
                            "Authorization": f"Bearer {TOKEN}"})
        finally:
            rx.close()
            built.close()  # the relay delivers what it holds
        relayed = [(r.headers["X-Driftscope-Event"], json.loads(r.body)["event"])
                   for r in hook.received]
    assert status == 200
    assert relayed == [("alert.firing", "alert.firing")]
