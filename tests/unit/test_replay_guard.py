"""The receiver's replay guard keys on the signed request, not on the header's spelling (issue 19,
failure 4), and a body that would make a parser recurse gets a clear 400 (failure 1).

On ec31e46 the guard hashed the raw header while verification normalised it, so each respelling
below of one used signature was accepted and relayed again (8 relays with one delivery id), and
a 50,000-deep authenticated body made the receiver drop the connection. Over real HTTP here.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from driftscope_llm.services.alerts import AlertmanagerMessage, AlertReceiver, AlertReceiverSettings
from driftscope_llm.services.alerts.signing import compute_signature, sign
from tests.unit.test_webhooks_receiver import am_message

KEY, OTHER_KEY = SecretStr("receiver-hmac-key-0123456789"), SecretStr("rotated-key-9876543210")
TOKEN = "am-bearer-token-0123456789"
NOW = 1_700_000_000


@pytest.fixture
def relayed() -> list[AlertmanagerMessage]:
    return []


@pytest.fixture
def receiver(relayed: list[AlertmanagerMessage]) -> Iterator[AlertReceiver]:
    settings = AlertReceiverSettings(port=0, bearer_token=SecretStr(TOKEN),
                                signing_secrets=[KEY, OTHER_KEY], max_body_bytes=400_000)
    with AlertReceiver(settings, relayed.append, clock=lambda: float(NOW)) as rx:
        yield rx


def _post(rx: AlertReceiver, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=10)
    try:
        conn.request("POST", "/alertmanager", body=body,
                     headers={**headers, "Content-Length": str(len(body))})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


BODY = json.dumps(am_message()).encode()
V1 = compute_signature(BODY, KEY, NOW)
V1_OTHER = compute_signature(BODY, OTHER_KEY, NOW)

RESPELLINGS: dict[str, Callable[[], str]] = {
    "upper-case hex": lambda: f"t={NOW},v1={V1.upper()}",
    "space after the comma": lambda: f"t={NOW}, v1={V1}",
    "an extra v0 part": lambda: f"t={NOW},v1={V1},v0=x",
    "parts reordered": lambda: f"v1={V1},t={NOW}",
    "v1 repeated": lambda: f"t={NOW},v1={V1},v1={V1}",
    "a second key's signature alone": lambda: f"t={NOW},v1={V1_OTHER}",
    "both keys' signatures": lambda: f"t={NOW},v1={V1_OTHER},v1={V1}",
}


@pytest.mark.parametrize("variant", list(RESPELLINGS))
def test_a_respelled_used_signature_is_a_replay(receiver: AlertReceiver,
                                                relayed: list[AlertmanagerMessage],
                                                variant: str) -> None:
    assert _post(receiver, BODY, {"X-Driftscope-Signature": sign(BODY, KEY, NOW)})[0] == 200
    status, text = _post(receiver, BODY, {"X-Driftscope-Signature": RESPELLINGS[variant]()})
    assert (status, text.strip()) == (409, "replayed")
    assert len(relayed) == 1


def test_every_respelling_verifies_on_a_fresh_receiver(relayed: list[AlertmanagerMessage]) -> None:
    """The variants are real signatures, not malformed ones: each is accepted the first time."""
    for variant, header in RESPELLINGS.items():
        settings = AlertReceiverSettings(port=0, signing_secrets=[KEY, OTHER_KEY])
        with AlertReceiver(settings, relayed.append, clock=lambda: float(NOW)) as rx:
            assert _post(rx, BODY, {"X-Driftscope-Signature": header()})[0] == 200, variant
    assert len(relayed) == len(RESPELLINGS)


def test_the_same_body_signed_at_another_second_is_a_new_request(
        receiver: AlertReceiver, relayed: list[AlertmanagerMessage]) -> None:
    assert _post(receiver, BODY, {"X-Driftscope-Signature": sign(BODY, KEY, NOW)})[0] == 200
    assert _post(receiver, BODY, {"X-Driftscope-Signature": sign(BODY, KEY, NOW - 1)})[0] == 200
    assert len(relayed) == 2


@pytest.mark.parametrize(("body", "why"), [
    (b"[" * 50_000 + b"]" * 50_000, "too_deep"),
    (b'{"version": "4", "n": ' + b"7" * 5000 + b"}", "too_large"),
])
def test_a_hostile_authenticated_body_gets_a_clear_400(receiver: AlertReceiver,
                                                        relayed: list[AlertmanagerMessage],
                                                        body: bytes, why: str) -> None:
    for headers in ({"Authorization": f"Bearer {TOKEN}"},
                    {"X-Driftscope-Signature": sign(body, KEY, NOW)}):
        status, text = _post(receiver, body, headers)
        assert status == 400 and why in text
    assert relayed == []
    assert _post(receiver, BODY, {"Authorization": f"Bearer {TOKEN}"})[0] == 200  # still serving
