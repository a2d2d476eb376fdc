"""What a webhook carries: the versioned generic JSON payload and the Slack rendering.

Generic payload (``Content-Type: application/json``), schema ``driftscope.incident.v1``::

    {
      "schema": "driftscope.incident.v1",
      "event": "incident.opened" | "incident.updated" | "incident.attributed",
      "delivery_id": "dlv-…",          stable for one notification; receivers dedupe on it
      "sent_at": "RFC 3339 UTC",       when the first attempt was made
      "incident": { driftscope_llm.services.store.model.Incident as JSON; exemplar prompt/output
      text only
                    when the endpoint sets include_text }
    }

and ``driftscope.alert.v1`` for Prometheus alerts relayed by the receiver::

    {"schema": "driftscope.alert.v1", "event": "alert.firing" | "alert.resolved",
     "delivery_id": "…", "sent_at": "…",
     "group": {"key": …, "labels": {…}, "common_labels": {…}, "common_annotations": {…},
               "external_url": …},
     "alerts": [{"status", "labels", "annotations", "starts_at", "ends_at", "generator_url",
                 "fingerprint"}]}

A new field may appear within a schema version; a field is never removed or changes meaning
without a new version (``…v2``). The Slack rendering is a ``{"text", "blocks"}`` message for an
incoming webhook (Block Kit); it is for people, not for parsing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from driftscope_llm.services.alerts.alertmanager import AlertmanagerMessage
from driftscope_llm.services.alerts.settings import EventKind
from driftscope_llm.services.store.model import Incident

__all__ = [
    "ALERT_SCHEMA",
    "INCIDENT_SCHEMA",
    "Notification",
    "alert_notification",
    "incident_notification",
    "render",
]

INCIDENT_SCHEMA = "driftscope.incident.v1"
ALERT_SCHEMA = "driftscope.alert.v1"
INCIDENT_EVENTS = (
    EventKind.INCIDENT_OPENED, EventKind.INCIDENT_UPDATED, EventKind.INCIDENT_ATTRIBUTED,
)  # fmt: skip


class Notification:
    """One thing to tell every endpoint: its kind, a stable delivery id, and both renderings'
    inputs. Built once per ``notify`` call, rendered per endpoint."""

    def __init__(self, event: EventKind, delivery_id: str, subject: str,
                 incident: Incident | None = None,
                 alerts: AlertmanagerMessage | None = None) -> None:
        self.event = event
        self.delivery_id = delivery_id
        self.subject = subject  # incident id or alert group key: names it in dead letters
        self.incident = incident
        self.alerts = alerts


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def incident_notification(event: EventKind, incident: Incident) -> Notification:
    """The notification for ``event`` on ``incident``. The delivery id is a function of the
    incident's id, update count, state and event kind, so a redelivered anomaly (same incident
    state) yields the same id and a receiver can drop the duplicate."""
    if event not in INCIDENT_EVENTS:
        raise ValueError(f"{event.value} is not an incident event")
    did = "dlv-" + _digest(event.value, incident.id, str(incident.updates), incident.state.value)
    return Notification(event, did, incident.id, incident=incident)


def alert_notification(message: AlertmanagerMessage) -> Notification:
    """The notification relaying one Alertmanager group message."""
    event = EventKind.ALERT_FIRING if message.status == "firing" else EventKind.ALERT_RESOLVED
    alerts = sorted(f"{a.fingerprint}@{a.status}@{a.starts_at.isoformat()}" for a in message.alerts)
    parts = [message.group_key, message.status, *alerts]
    return Notification(event, "dlv-" + _digest(*parts), message.group_key, alerts=message)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _incident_json(incident: Incident, include_text: bool) -> dict[str, Any]:
    data = incident.model_dump(mode="json")
    if not include_text:
        data["exemplars"] = [{"event_id": e.event_id} for e in incident.exemplars]
    return data


def _alerts_json(m: AlertmanagerMessage) -> dict[str, Any]:
    return {
        "group": {
            "key": m.group_key, "labels": m.group_labels, "common_labels": m.common_labels,
            "common_annotations": m.common_annotations, "external_url": m.external_url,
            "truncated_alerts": m.truncated_alerts,
        },
        "alerts": [
            {
                "status": a.status, "labels": a.labels, "annotations": a.annotations,
                "starts_at": _iso(a.starts_at),
                "ends_at": _iso(a.ends_at) if a.ends_at is not None else None,
                "generator_url": a.generator_url, "fingerprint": a.fingerprint,
            }
            for a in m.alerts
        ],
    }  # fmt: skip


def generic_payload(n: Notification, sent_at: datetime, include_text: bool) -> dict[str, Any]:
    """The documented JSON object (see the module docstring)."""
    body: dict[str, Any] = {
        "schema": INCIDENT_SCHEMA if n.incident is not None else ALERT_SCHEMA,
        "event": n.event.value,
        "delivery_id": n.delivery_id,
        "sent_at": _iso(sent_at),
    }
    if n.incident is not None:
        body["incident"] = _incident_json(n.incident, include_text)
    elif n.alerts is not None:
        body.update(_alerts_json(n.alerts))
    return body


_TITLES = {
    EventKind.INCIDENT_OPENED: "Drift incident opened",
    EventKind.INCIDENT_UPDATED: "Drift incident updated",
    EventKind.INCIDENT_ATTRIBUTED: "Drift incident attributed",
    EventKind.ALERT_FIRING: "Alert firing",
    EventKind.ALERT_RESOLVED: "Alert resolved",
}


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_incident(inc: Incident, title: str) -> dict[str, Any]:
    e = _mrkdwn_escape
    fields = [
        ("Model", f"{inc.model}@{inc.model_version}"), ("Segment", inc.segment),
        ("Signal / detector", f"{inc.signal} / {inc.detector}"),
        ("Statistic / threshold", f"{inc.statistic:.4g} / {inc.threshold:.4g}"),
        ("Effect size", f"{inc.effect_size:.3g}"), ("State", inc.state.value),
    ]  # fmt: skip
    text = f"{title}: {inc.model}@{inc.model_version} [{inc.segment}] {inc.signal}/{inc.detector}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{k}*\n{e(v)}"} for k, v in fields
        ]},
    ]  # fmt: skip
    # the report's aggregate ranking, best first (a failed report has none)
    top = inc.attribution.top(5) if inc.attribution is not None else []
    if top:
        ids = ", ".join(e(row.id) for row in top)
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": f"*Most responsible examples:* {ids}"}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"incident `{e(inc.id)}` · updates {inc.updates}"}
    ]})  # fmt: skip
    return {"text": text, "blocks": blocks}


def _slack_alerts(m: AlertmanagerMessage, title: str) -> dict[str, Any]:
    e = _mrkdwn_escape
    name = m.common_labels.get("alertname") or m.group_labels.get("alertname") or "alert"
    lines = []
    for a in m.alerts[:10]:
        summary = a.annotations.get("summary") or a.labels.get("alertname", "")
        lines.append(f"• *{e(a.status)}* {e(summary)}")
    if len(m.alerts) > 10:
        lines.append(f"… and {len(m.alerts) - 10} more")
    return {
        "text": f"{title}: {name} ({len(m.alerts)})",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{title}: {name}"[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
        ],
    }


def render(n: Notification, fmt: str, sent_at: datetime, include_text: bool) -> bytes:
    """The request body for one endpoint: ``fmt`` is ``generic`` or ``slack``."""
    if fmt == "generic":
        obj = generic_payload(n, sent_at, include_text)
    elif fmt == "slack":
        title = _TITLES[n.event]
        if n.incident is not None:
            obj = _slack_incident(n.incident, title)
        else:
            assert n.alerts is not None
            obj = _slack_alerts(n.alerts, title)
    else:
        raise ValueError(f"unknown webhook format {fmt!r}")
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
