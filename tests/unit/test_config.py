"""Settings: a YAML file is overridden by ``DRIFTSCOPE_*`` variables, defaults fill the rest, and
every invalid setting — in the file or the environment — is one :class:`ConfigError` naming the
file and the dotted field, never a traceback or a silently kept default."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import annotated_types as at
import pytest
import yaml
from pydantic import BaseModel

from driftscope_llm.services.config import (
    AlertsSettings,
    CliSettings,
    CollectorSettings,
    IngestServiceSettings,
    WorkerSettings,
    load_settings,
)
from driftscope_llm.services.errors import ConfigError

DEPLOYABLES = (CollectorSettings, WorkerSettings, AlertsSettings, IngestServiceSettings,
               CliSettings)


@pytest.fixture(autouse=True)
def _no_driftscope_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own DRIFTSCOPE_* variables must not leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("DRIFTSCOPE_"):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "driftscope.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# -- precedence --------------------------------------------------------------------------------

def test_defaults_without_file_or_environment() -> None:
    s = load_settings(CollectorSettings)
    assert s.kafka.bootstrap_servers == CollectorSettings().kafka.bootstrap_servers
    assert s.checkpoint_every == 500
    assert s.cooldown_s == 3600.0


def test_the_file_overrides_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, {"checkpoint_every": 7, "kafka": {"bootstrap_servers": "h:1"}})
    s = load_settings(CollectorSettings, path)
    assert (s.checkpoint_every, s.kafka.bootstrap_servers) == (7, "h:1")


def test_the_environment_overrides_the_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, {"checkpoint_every": 7, "cooldown_s": 5.0,
                             "kafka": {"bootstrap_servers": "from-file:1"}})
    monkeypatch.setenv("DRIFTSCOPE_CHECKPOINT_EVERY", "9")
    monkeypatch.setenv("DRIFTSCOPE_KAFKA__BOOTSTRAP_SERVERS", "from-env:2")
    s = load_settings(CollectorSettings, path)
    assert s.checkpoint_every == 9
    assert s.kafka.bootstrap_servers == "from-env:2"
    assert s.cooldown_s == 5.0  # not in the environment: the file's value stays


def test_a_nested_environment_variable_keeps_the_files_siblings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, {"redis": {"url": "redis://file:1/0", "key_prefix": "ops:"}})
    monkeypatch.setenv("DRIFTSCOPE_REDIS__URL", "redis://env:2/0")
    s = load_settings(CollectorSettings, path)
    assert s.redis.url == "redis://env:2/0"
    assert s.redis.key_prefix == "ops:"


# -- errors of the file itself -----------------------------------------------------------------

def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(CollectorSettings, tmp_path / "nope.yaml")
    assert info.value.path == str(tmp_path / "nope.yaml")


def test_invalid_yaml_and_a_non_mapping_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(CollectorSettings, bad)
    listed = _write(tmp_path, ["a", "b"])
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(CollectorSettings, listed)


def test_an_unknown_key_is_refused_with_its_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"kafka": {"bootstrap_server": "typo:1"}})
    with pytest.raises(ConfigError) as info:
        load_settings(CollectorSettings, path)
    assert info.value.field == "kafka.bootstrap_server"
    assert str(path) in str(info.value)


def test_an_invalid_environment_value_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTSCOPE_CHECKPOINT_EVERY", "zero")
    with pytest.raises(ConfigError) as info:
        load_settings(CollectorSettings)
    assert info.value.field == "checkpoint_every"


# -- every bounded setting, out of bounds ------------------------------------------------------

def _violations(field_info: Any) -> Iterator[tuple[str, Any]]:
    """Values just outside each numeric bound pydantic enforces on a field."""
    for m in field_info.metadata:
        if isinstance(m, at.Ge) and isinstance(m.ge, int | float):
            yield "ge", m.ge - (1 if isinstance(m.ge, int) and not isinstance(m.ge, bool)
                                else max(abs(m.ge) * 0.5, 0.5))
        elif isinstance(m, at.Gt) and isinstance(m.gt, int | float):
            yield "gt", m.gt
        elif isinstance(m, at.Le) and isinstance(m.le, int | float):
            yield "le", m.le + (1 if isinstance(m.le, int) else max(abs(m.le) * 0.5, 0.5))
        elif isinstance(m, at.Lt) and isinstance(m.lt, int | float):
            yield "lt", m.lt


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _bounded_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], str, Any]]:
    """(dotted path, bound, violating value) for every bounded numeric field reachable through
    sub-models that can be built from their defaults alone."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        for bound, value in _violations(info):
            if isinstance(value, float) and not math.isfinite(value):
                continue
            yield path, bound, value
        sub = _model_of(info.annotation)
        if sub is not None and not isinstance(info.annotation, type(dict[str, int])):
            try:
                sub()
            except Exception:  # a sub-model with required fields: covered by its own tests
                continue
            yield from _bounded_fields(sub, path)


def _cases() -> list[Any]:
    cases = []
    for deployable in DEPLOYABLES:
        for path, bound, value in _bounded_fields(deployable):
            cases.append(pytest.param(deployable, path, value,
                                      id=f"{deployable.__name__}.{'.'.join(path)}-{bound}"))
    return cases


CASES = _cases()


def test_the_walk_finds_the_bounded_settings() -> None:
    """Guards the parametrisation below: if the walk found nothing, that test would pass
    vacuously."""
    found = {(p.values[0].__name__, ".".join(p.values[1])) for p in CASES}
    assert ("CollectorSettings", "checkpoint_every") in found
    assert ("CollectorSettings", "max_event_bytes") in found
    assert ("WorkerSettings", "lease_ttl_s") in found
    assert ("CollectorSettings", "metrics.port") in found
    assert len(found) >= 25


@pytest.mark.parametrize(("deployable", "path", "value"), CASES)
def test_each_out_of_range_setting_is_one_error_naming_it(
        tmp_path: Path, deployable: type[BaseModel], path: tuple[str, ...], value: Any) -> None:
    data: dict[str, Any] = {}
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    file = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_settings(deployable, file)  # type: ignore[type-var]
    assert info.value.field == ".".join(path)
    assert info.value.path == str(file)
    assert str(info.value).startswith(f"invalid setting '{'.'.join(path)}' in {file}: ")


def test_an_unknown_key_deep_in_a_nested_model_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"drift": {"window_size": 300}, "embedder": {"batchsize": 4}})
    with pytest.raises(ConfigError, match=r"unknown setting .embedder\.batchsize.") as info:
        load_settings(CollectorSettings, path)
    assert info.value.field == "embedder.batchsize"


def test_an_unknown_key_in_a_mapping_of_models_names_the_entry(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": {"bot@v2": {"model_dir": "/m", "indexes": {},
                                                   "topk": 5}}})
    with pytest.raises(ConfigError) as info:
        load_settings(WorkerSettings, path)
    assert info.value.field == "models.bot@v2.topk"


def test_the_shipped_config_files_load(tmp_path: Path) -> None:
    """The deploy manifests' settings files must pass the same strict loader."""
    root = Path(__file__).resolve().parents[2]
    shipped = sorted(root.joinpath("deploy", "k8s", "config").glob("*.yaml"))
    assert shipped
    for file in shipped:
        model = {"collector": CollectorSettings, "worker": WorkerSettings,
                 "alerts": AlertsSettings, "ingest": IngestServiceSettings}.get(file.stem)
        if model is not None:
            load_settings(model, file)  # type: ignore[type-var]
