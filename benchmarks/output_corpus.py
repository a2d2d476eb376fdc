"""A varied corpus of real-looking LLM outputs, for embedder fidelity and throughput checks.

Seeded and self-contained (every phrase below was written for this file). It mixes the shapes a
production assistant emits, in proportions that keep each kind well represented:

* chat answers of one to several sentences on everyday topics, sometimes in several paragraphs
  (past the embedder's 128 word pieces);
* refusals and safety redirections in many phrasings;
* code (Python, JavaScript, SQL, shell) in fenced blocks with a line of prose;
* numbered and bulleted lists, markdown tables, JSON objects;
* short replies ("Yes.", "Done!"), numbers, URLs and emoji;
* other languages (French, Spanish, German, Italian, Portuguese, Dutch, Japanese, Chinese,
  Russian, Arabic) alone or mixed with English.

Not a benchmark of the model's quality: a spread of inputs on which an approximation of the
embedder (int8) must stay close to the original (fp32) everywhere, not only on average.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

__all__ = ["KINDS", "corpus"]

_SUBJECTS = ("your order", "the invoice", "the new plan", "your password", "the router",
             "the meeting", "this recipe", "the quarterly report", "your flight", "the lease",
             "the warranty", "the dentist appointment", "the export", "the battery", "the API key")
_VERBS = ("was updated", "ships tomorrow", "can be changed in settings", "expires next month",
          "needs a restart", "is covered until March", "takes about ten minutes",
          "was moved to Thursday", "is ready to download", "should be charged overnight")
_FOLLOW = ("Let me know if you need anything else.", "Is there anything else I can help with?",
           "I hope that helps!", "Feel free to ask if something is unclear.",
           "You will also get a confirmation by email.", "")
_FACTS = ("Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
          "The Treaty of Westphalia in 1648 ended the Thirty Years' War.",
          "A prime number has exactly two divisors: one and itself.",
          "Interest compounds when earned interest is added to the principal.",
          "Mount Kilimanjaro is the highest mountain in Africa at 5,895 metres.",
          "TCP retransmits segments that are not acknowledged within a timeout.",
          "Sourdough rises thanks to wild yeast and lactic acid bacteria.",
          "The mitochondrion produces most of a cell's chemical energy.",
          "Inflation measures how fast the general price level rises.",
          "A haiku has three lines of five, seven and five syllables.")
_REFUSALS = ("I'm sorry, but I can't help with that request.",
             "I can't assist with that. If you're in danger, please contact local emergency "
             "services.",
             "That's not something I can do, but I can explain how the process works in general.",
             "I'm unable to provide medical dosing advice; please ask a pharmacist or doctor.",
             "As an AI, I don't have access to your personal account details.",
             "I must decline to write that, as it could be used to harm someone.",
             "Sorry, I won't generate content that targets a real person.",
             "I'm afraid I cannot share those credentials.")
_CODE = {
    "python": ("def {f}(items):\n    total = 0\n    for x in items:\n        total += x * {n}\n"
               "    return total\n", "import json\n\nwith open('{f}.json') as fh:\n"
               "    data = json.load(fh)\nprint(len(data))\n"),
    "javascript": ("const {f} = (xs) => xs.filter(x => x > {n}).map(x => x * 2);\n"
                   "console.log({f}([1, 5, 9]));\n",
                   "async function {f}(url) {{\n  const res = await fetch(url);\n"
                   "  return res.json();\n}}\n"),
    "sql": ("SELECT customer_id, SUM(amount) AS total\nFROM orders\nWHERE created_at > "
            "NOW() - INTERVAL '{n} days'\nGROUP BY customer_id\nORDER BY total DESC;\n",),
    "bash": ("for f in *.log; do\n  gzip \"$f\"\ndone\nls -lh | head -n {n}\n",),
}
_STEPS = ("Open the app", "Go to Settings", "Tap Account", "Choose Security",
          "Enter your current password", "Pick a new password", "Confirm the change",
          "Restart the device", "Check the status light", "Contact support if it blinks red",
          "Preheat the oven to 180 °C", "Whisk the eggs and sugar", "Fold in the flour",
          "Bake for 25 minutes")
_FOREIGN = ("Votre commande a été expédiée et arrivera jeudi.",
            "Lo siento, no puedo ayudarte con eso.",
            "Die Rechnung finden Sie unter Einstellungen > Abrechnung.",
            "Il volo è stato spostato alle 18:40.", "Sua senha foi redefinida com sucesso.",
            "Het pakket wordt morgen bezorgd.", "ご注文は明日発送されます。",
            "您的密码已成功重置。", "Ваш заказ уже в пути.", "تم تحديث طلبك بنجاح.",
            "Merci pour votre patience, nous revenons vers vous rapidement.",
            "Puedes cambiar tu plan desde la página de perfil.")
_SHORT = ("Yes.", "No.", "Done!", "42", "Sure, here you go.", "Thanks!", "OK 👍",
          "https://example.com/help/returns", "3.14159", "👋 Hi! How can I help?")


def _answer(rng: random.Random) -> str:
    n = rng.randint(1, 4)
    parts = [f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)}." for _ in range(n)]
    if rng.random() < 0.5:
        parts.append(rng.choice(_FACTS))
    return " ".join([*parts, rng.choice(_FOLLOW)]).strip()


def _long(rng: random.Random) -> str:
    paras = [" ".join(rng.sample(_FACTS, rng.randint(2, 4))) for _ in range(rng.randint(2, 5))]
    return "\n\n".join(paras)


def _code(rng: random.Random) -> str:
    lang = rng.choice(sorted(_CODE))
    body = rng.choice(_CODE[lang]).format(f=rng.choice(("total", "load", "scale", "fetchAll")),
                                          n=rng.randint(2, 90))
    intro = rng.choice(("Here's how you can do it:", "Try this:", "This should work:",
                        f"A short {lang} example:"))
    return f"{intro}\n\n```{lang}\n{body}```\n" + rng.choice(("", "It runs in linear time."))


def _list(rng: random.Random) -> str:
    steps = rng.sample(_STEPS, rng.randint(3, 7))
    if rng.random() < 0.5:
        return "\n".join(f"{i}. {s}." for i, s in enumerate(steps, 1))
    return "Steps:\n" + "\n".join(f"- {s}" for s in steps)


def _table(rng: random.Random) -> str:
    rows = [f"| {rng.choice(('Basic', 'Pro', 'Team', 'Enterprise'))} | {rng.randint(5, 99)} € |"
            f" {rng.randint(1, 50)} GB |" for _ in range(rng.randint(2, 5))]
    return "| Plan | Price | Storage |\n|---|---|---|\n" + "\n".join(rows)


def _json(rng: random.Random) -> str:
    return json.dumps({"status": rng.choice(("ok", "pending", "error")),
                       "items": [rng.randint(1, 999) for _ in range(rng.randint(1, 6))],
                       "message": rng.choice(_VERBS)}, ensure_ascii=False)


def _foreign(rng: random.Random) -> str:
    text = rng.choice(_FOREIGN)
    return text if rng.random() < 0.6 else f"{text} {_answer(rng)}"


KINDS: dict[str, Callable[[random.Random], str]] = {
    "answer": _answer, "long": _long, "refusal": lambda rng: rng.choice(_REFUSALS),
    "code": _code, "list": _list, "table": _table, "json": _json, "foreign": _foreign,
    "short": lambda rng: rng.choice(_SHORT),
}
"""Each kind of output and how one is drawn."""


def corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (kind, text) pairs, kinds in turn so that every kind is equally represented."""
    rng = random.Random(seed)
    names = list(KINDS)
    return [(names[i % len(names)], KINDS[names[i % len(names)]](rng)) for i in range(n)]
