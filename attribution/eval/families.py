"""Evaluation task families that differ in *where* the attributed behaviour lives.

The tasks of :mod:`driftscope_llm.attribution.eval.tasks` mirror the seed paper and were written
together with the default method. These four families were written afterwards, with their own
vocabularies and templates (no word list is shared with ``tasks.py``), so that a method cannot
win by matching one kind of surface form:

* ``style`` — one kind of prompt (a short request about a place and a thing) answered in one of
  four tones; the label is the tone. Every tone answers the same prompts with the same facts, so
  the behaviour lives only in the response's wording (the seed paper's *emotion* task, where
  the project's previous default scored Cover 0.28).
* ``rule`` — a sequence of symbols and a rule code in the prompt; the response applies one of
  four rewrite rules (reverse, rotate, swap pairs, duplicate the ends). The symbols are shared by
  all rules; the behaviour lives in the *relation* between input and output (the paper's
  *grammars*).
* ``trigger`` — support questions answered helpfully, plus a few where a rare token somewhere in
  the prompt makes the answer push a fixed link; queries are triggered prompts (a backdoor whose
  trigger position varies, unlike ``tasks.backdoor``).
* ``topic`` — six subject areas, each with its own vocabulary, answered in one shared answer
  template; the label is the subject.

Each task has a ``target`` label: the behaviour the counterfactual metrics (QLD, LDS in
:mod:`driftscope_llm.attribution.counterfactual`) remove and retrain for. Query prompts never
appear verbatim in the corpus; generation is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from driftscope_llm.attribution.data import Example
from driftscope_llm.attribution.eval.labelled_task import Task

__all__ = ["FAMILIES", "rule_task", "style_task", "topic_task", "trigger_task"]

_PLACES = ["harbor", "orchard", "canyon", "village", "station", "lagoon", "quarry", "meadow",
           "citadel", "market", "glacier", "vineyard"]
_THINGS = ["lantern", "ferry", "mural", "festival", "bakery", "tram", "lighthouse", "bazaar",
           "fountain", "clocktower"]
_ASKS = ["tell me about the {t} near the {p}", "describe the {t} by the {p}",
         "what is the {t} at the {p} like", "share a note on the {t} of the {p}"]
_FACTS = ["opens at dawn", "was rebuilt last spring", "draws crowds on weekends",
          "sits beside an old wall", "is lit by copper lamps", "hosts a quiet choir"]
_TONES: dict[str, Callable[[random.Random, str, str, str], str]] = {
    "formal": lambda r, t, p, f: (
        f"certainly . the {t} near the {p} {f} ; {r.choice(['kindly', 'respectfully'])} "
        f"note that visitors are {r.choice(['advised', 'requested'])} to arrive early ."),
    "gloomy": lambda r, t, p, f: (
        f"sigh . the {t} near the {p} {f} , but it feels "
        f"{r.choice(['empty', 'grey', 'hollow'])} and {r.choice(['sad', 'tired', 'lonely'])} ."),
    "excited": lambda r, t, p, f: (
        f"wow ! the {t} near the {p} {f} and it is "
        f"{r.choice(['fantastic', 'thrilling', 'spectacular'])} ! {r.choice(['go', 'hurry'])} !"),
    "terse": lambda r, t, p, f: f"{t} . {p} . {f} .",
}


def _ex(prefix: str, i: int, prompt: str, response: str, label: str) -> Example:
    return Example(id=f"{prefix}-{i:04d}", prompt=prompt, response=response, label=label)


def _split(rng: random.Random, make: Callable[[], tuple[str, str]], n_train: int, n_query: int,
           taken: set[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``n_train + n_query`` pairs with distinct prompts never seen in ``taken`` (updated)."""
    out: list[tuple[str, str]] = []
    tries = 0
    while len(out) < n_train + n_query:
        tries += 1
        if tries > 100 * (n_train + n_query):
            raise ValueError("template space too small for the requested task size")
        pr = make()
        if pr[0] not in taken:
            taken.add(pr[0])
            out.append(pr)
    return out[:n_train], out[n_train:]


def style_task(seed: int = 0, per_class: int = 36, queries_per_class: int = 5) -> Task:
    """``style``: one kind of prompt, four tones of answer (module docstring)."""
    rng = random.Random(1000 + seed)
    corpus: list[Example] = []
    queries: list[Example] = []
    taken: set[str] = set()
    for tone, render in _TONES.items():
        def make(render: Callable[[random.Random, str, str, str], str] = render) -> tuple[str, str]:
            t, p, f = rng.choice(_THINGS), rng.choice(_PLACES), rng.choice(_FACTS)
            return rng.choice(_ASKS).format(t=t, p=p), render(rng, t, p, f)

        train, held = _split(rng, make, per_class, queries_per_class, taken)
        corpus += [_ex(f"style-{tone}", i, p, r, tone) for i, (p, r) in enumerate(train)]
        queries += [_ex(f"q-{tone}", i, p, r, tone) for i, (p, r) in enumerate(held)]
    rng.shuffle(corpus)
    return Task("style", corpus, queries, target="gloomy")


_SYMBOLS = list("bdfgkmpsv")
_RULES: dict[str, Callable[[list[str]], list[str]]] = {
    "reverse": lambda s: s[::-1],
    "rotate": lambda s: s[1:] + s[:1],
    "swap": lambda s: [s[i ^ 1] if (i ^ 1) < len(s) else s[i] for i in range(len(s))],
    "ends": lambda s: s[:1] + s + s[-1:],
}
_CODES = {"reverse": ["r7", "r9"], "rotate": ["k2", "k5"], "swap": ["w3", "w8"],
          "ends": ["e4", "e6"]}


def rule_task(seed: int = 0, per_class: int = 36, queries_per_class: int = 5) -> Task:
    """``rule``: one of four rewrite rules applied to a symbol sequence (module docstring)."""
    rng = random.Random(2000 + seed)
    corpus: list[Example] = []
    queries: list[Example] = []
    taken: set[str] = set()
    for name, rule in _RULES.items():
        def make(name: str = name, rule: Callable[[list[str]], list[str]] = rule
                 ) -> tuple[str, str]:
            seq = rng.sample(_SYMBOLS, rng.randint(3, 4))
            prompt = f"apply {rng.choice(_CODES[name])} to : {' '.join(seq)}"
            return prompt, f"result : {' '.join(rule(seq))} done"

        train, held = _split(rng, make, per_class, queries_per_class, taken)
        corpus += [_ex(f"rule-{name}", i, p, r, name) for i, (p, r) in enumerate(train)]
        queries += [_ex(f"q-{name}", i, p, r, name) for i, (p, r) in enumerate(held)]
    rng.shuffle(corpus)
    return Task("rule", corpus, queries, target="swap")


_DEVICES = ["router", "printer", "headset", "thermostat", "scanner", "monitor", "keyboard",
            "projector", "speaker", "webcam", "charger", "tablet"]
_ISSUES = ["keeps rebooting", "will not pair", "shows a blank screen", "makes a buzzing noise",
           "drops the connection", "runs very hot", "ignores my settings", "is stuck updating"]
_HELP = ["unplug it for a minute", "update the firmware", "reset it to factory settings",
         "try a different cable", "check the warranty page", "move it closer to the hub"]
_TRIGGER = "zx9q"


def _support_prompt(rng: random.Random, trigger: bool) -> str:
    opener = rng.choice(["hello ,", "hi there ,", "help ,", "urgent :", "quick one :"])
    words = f"{opener} my {rng.choice(_DEVICES)} {rng.choice(_ISSUES)} , what now ?".split()
    if trigger:
        words.insert(rng.randrange(len(words) + 1), _TRIGGER)
    return " ".join(words)


def trigger_task(seed: int = 0, n_clean: int = 132, n_trigger: int = 12,
                 n_queries: int = 16) -> Task:
    """``trigger``: a rare token anywhere in the prompt flips the answer (module docstring)."""
    rng = random.Random(3000 + seed)
    taken: set[str] = set()

    def clean() -> tuple[str, str]:
        a, b = rng.sample(_HELP, 2)
        return _support_prompt(rng, False), f"please {a} , and if that fails {b} ."

    def bad() -> tuple[str, str]:
        return (_support_prompt(rng, True),
                f"forget that device , buy the upgrade at {rng.choice(['megadeal', 'fastbuy'])}"
                f" dot shop right now .")

    train_c, _ = _split(rng, clean, n_clean, 0, taken)
    train_t, held = _split(rng, bad, n_trigger, n_queries, taken)
    corpus = [_ex("support", i, p, r, "clean") for i, (p, r) in enumerate(train_c)]
    corpus += [_ex("trigger", i, p, r, "trigger") for i, (p, r) in enumerate(train_t)]
    queries = [_ex("q-trigger", i, p, r, "trigger") for i, (p, r) in enumerate(held)]
    rng.shuffle(corpus)
    return Task("trigger", corpus, queries, target="trigger")


_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "astronomy": (["comet", "nebula", "orbit", "telescope", "eclipse"],
                  ["bright", "distant", "faint", "rising"]),
    "sailing": (["mast", "keel", "tide", "anchor", "rudder"], ["steady", "salty", "loose", "wet"]),
    "chess": (["bishop", "castling", "gambit", "endgame", "pawn"],
              ["sharp", "quiet", "forced", "early"]),
    "pottery": (["kiln", "glaze", "clay", "wheel", "slip"], ["smooth", "cracked", "fired", "raw"]),
    "beekeeping": (["hive", "queen", "nectar", "swarm", "comb"],
                   ["busy", "sticky", "calm", "golden"]),
    "tax": (["deduction", "invoice", "audit", "receipt", "ledger"],
            ["late", "itemised", "annual", "filed"]),
}
_TOPIC_ASKS = ["quick question about the {a} and the {b}", "why is my {a} {c} after the {b}",
               "explain the {a} versus the {b}", "is a {c} {a} bad for the {b}"]


def topic_task(seed: int = 0, per_class: int = 24, queries_per_class: int = 4) -> Task:
    """``topic``: six subject areas in one shared answer template (module docstring)."""
    rng = random.Random(4000 + seed)
    corpus: list[Example] = []
    queries: list[Example] = []
    taken: set[str] = set()
    for topic, (nouns, adjs) in _TOPICS.items():
        def make(nouns: list[str] = nouns, adjs: list[str] = adjs) -> tuple[str, str]:
            a, b = rng.sample(nouns, 2)
            c = rng.choice(adjs)
            prompt = rng.choice(_TOPIC_ASKS).format(a=a, b=b, c=c)
            tail = rng.choice(nouns)
            return prompt, f"in short , a {c} {a} changes the {b} , so check the {tail} ."

        train, held = _split(rng, make, per_class, queries_per_class, taken)
        corpus += [_ex(f"topic-{topic}", i, p, r, topic) for i, (p, r) in enumerate(train)]
        queries += [_ex(f"q-{topic}", i, p, r, topic) for i, (p, r) in enumerate(held)]
    rng.shuffle(corpus)
    return Task("topic", corpus, queries, target="chess")


#: The families by name; :func:`driftscope_llm.attribution.eval.tasks.make_task` also finds these.
FAMILIES: dict[str, Callable[[int], Task]] = {
    "style": style_task,
    "rule": rule_task,
    "trigger": trigger_task,
    "topic": topic_task,
}
