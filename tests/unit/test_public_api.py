"""The public surface of the two import packages, ``driftscope_llm.attribution`` and the package
facades under ``driftscope_llm.services``: exactly what they mean to export, every name real, and
importing them light (no torch where the collector runs).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import driftscope_llm.services as services

ATTRIBUTION_API = {
    "DEFAULT_METHOD", "Agreement", "AttributionSettings", "EvalRow", "Example", "Hit", "Index",
    "LoadedModel", "QueryResult", "agreement", "available_methods", "build_index",
    "build_tiny_model", "evaluate", "evaluate_tasks", "finetune", "get_method", "load_corpus",
    "load_model", "load_queries", "open_index",
}
BUS_API = {
    "Bus", "ConsumerLoop", "KafkaSettings", "LoopHandler", "MemoryBroker", "MemoryBus",
    "Message", "Partition", "RebalanceHook", "TopicSettings",
}
FACADES = sorted(f"driftscope_llm.services.{m.name}" for m in pkgutil.iter_modules(
    services.__path__) if m.ispkg)


def test_attribution_exports_exactly_its_api_and_every_name_resolves() -> None:
    attribution = importlib.import_module("driftscope_llm.attribution")
    assert set(attribution.__all__) == ATTRIBUTION_API
    assert len(attribution.__all__) == len(ATTRIBUTION_API)  # no name listed twice
    for name in attribution.__all__:  # the lazy ones load their module (torch) here
        assert getattr(attribution, name) is not None, name
    with pytest.raises(AttributeError):
        _ = attribution.not_a_name


def test_the_bus_exports_exactly_its_interface() -> None:
    bus = importlib.import_module("driftscope_llm.services.bus")
    assert set(bus.__all__) == BUS_API and len(bus.__all__) == len(BUS_API)


@pytest.mark.parametrize("name", FACADES)
def test_every_services_package_has_a_small_explicit_surface(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)) and len(exported) <= 30
    for attr in exported:
        assert not attr.startswith("_") and hasattr(package, attr), f"{name}.{attr}"


def test_the_services_namespace_holds_only_packages_and_modules() -> None:
    assert {"bus", "collector", "config", "drift", "errors", "schemas", "store",
            "worker"} <= {m.name for m in pkgutil.iter_modules(services.__path__)}
    # nothing re-exported: its public attributes are its imported sub-modules only
    assert not [n for n, v in vars(services).items()
                if not n.startswith("_") and not isinstance(v, types.ModuleType)]


def test_what_the_collector_imports_does_not_load_torch() -> None:
    code = ("import sys\n"
            "import driftscope_llm.services.config, driftscope_llm.services.collector.service\n"
            "import driftscope_llm.services.bus.kafka, driftscope_llm.services.cli.main\n"
            "import driftscope_llm.attribution\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
