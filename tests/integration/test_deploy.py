"""The deployment files, validated with what runs offline here.

Kubernetes manifests: every object against the Kubernetes 1.30 OpenAPI schemas in strict mode
(unknown fields refused), with the schemas the ``kubernetes-validate`` package ships (kubeconform
needs to download its schemas, which this machine cannot). Compose: structure, mounts that exist,
and Prometheus' compose config through ``promtool check config``. Both: every ``DRIFTSCOPE_*``
variable they set names a real settings field of the deployable it configures, and the scrape
jobs are the ones the alert rules expect.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from driftscope_llm.services.config import (
    AlertsSettings,
    CollectorSettings,
    IngestServiceSettings,
    WorkerSettings,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"
RULE_JOBS = {"driftscope-collector", "driftscope-worker"}
# Applied by hand when wanted, never by `kubectl apply -k` (a Job starts work when applied).
ON_DEMAND = {"index-build-job.yaml"}


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_docs() if d["kind"] == kind}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def settings_field_exists(model: type[BaseModel], env_name: str) -> bool:
    """Does ``DRIFTSCOPE_A__B`` name field ``a.b`` of ``model``?"""
    parts = env_name.removeprefix("DRIFTSCOPE_").lower().split("__")
    cls: Any = model
    for part in parts:
        fields = getattr(cls, "model_fields", None)
        if fields is None or part not in fields:
            return False
        cls = fields[part].annotation
        if not isinstance(cls, type):  # Optional[...] and friends: take the model member
            members = [a for a in getattr(cls, "__args__", ()) if isinstance(a, type)]
            cls = next((a for a in members if issubclass(a, BaseModel)), None)
    return True


DEPLOYABLES: dict[str, type[BaseModel]] = {
    "driftscope-collector": CollectorSettings,
    "driftscope-worker": WorkerSettings,
    "driftscope-alert-receiver": AlertsSettings,
    "collector": CollectorSettings,
    "worker": WorkerSettings,
    "alert-receiver": AlertsSettings,
    "driftscope-ingest": IngestServiceSettings,
    "ingest": IngestServiceSettings,
}


# ---- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "doc"),
                         [d for d in k8s_docs() if d[1]["kind"] != "Kustomization"],
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_manifests_validate_strictly_against_the_kubernetes_schemas(file: str,
                                                                    doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_refuses_unknown_and_mistyped_fields() -> None:
    deployment = by_kind("Deployment")["driftscope-collector"]
    typo = copy.deepcopy(deployment)
    typo["spec"]["replica"] = 3
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    for bad in (typo, mistyped):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_its_config() -> None:
    kz = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kz["resources"]) == manifests - ON_DEMAND
    for name in ON_DEMAND:  # applied alone, so it must name its namespace itself
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            assert doc["metadata"]["namespace"] == kz["namespace"], name
    for gen in kz["configMapGenerator"]:
        for entry in gen["files"]:
            assert (K8S / entry.split("=", 1)[-1]).is_file(), entry
    # the collector config it ships is one the collector accepts
    load_settings(CollectorSettings, K8S / "config" / "collector.yaml")


def test_pods_are_scraped_on_their_metrics_port_under_the_jobs_the_rules_use() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) >= RULE_JOBS
    for name, d in deployments.items():
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == name  # becomes `job`
        port = pod["metadata"]["annotations"]["prometheus.io/port"]
        [container] = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DRIFTSCOPE_METRICS__PORT"] == port, name
        assert env["DRIFTSCOPE_METRICS__HOST"] == "0.0.0.0", name
        assert int(port) in {p["containerPort"] for p in container["ports"]}, name
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
    scrape = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())["scrape_configs"][0]
    to_job = [r for r in scrape["relabel_configs"] if r.get("target_label") == "job"]
    assert to_job[0]["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]


def test_collector_scales_within_the_partitions_and_worker_gets_a_gpu() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["driftscope-collector"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "driftscope-collector"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert by_kind("Deployment")["driftscope-collector"]["spec"]["replicas"] >= \
        hpa["spec"]["minReplicas"]
    [worker] = by_kind("Deployment")["driftscope-worker"]["spec"]["template"]["spec"][
        "containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_k8s_environment_names_real_settings() -> None:
    for name, d in by_kind("Deployment").items():
        for container in d["spec"]["template"]["spec"]["containers"]:
            for e in container["env"]:
                if e["name"].startswith("DRIFTSCOPE_"):
                    assert settings_field_exists(DEPLOYABLES[name], e["name"]), (name, e["name"])


def test_the_receiver_settings_load_from_the_k8s_environment(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    [container] = by_kind("Deployment")["driftscope-alert-receiver"]["spec"]["template"]["spec"][
        "containers"]
    for e in container["env"]:
        value = e.get("value")
        if value is None:  # from the Secret: a stand-in of the right shape
            value = {"DRIFTSCOPE_WEBHOOKS__ENDPOINTS": "[]"}.get(e["name"], "s" * 32)
        monkeypatch.setenv(e["name"], value)
    settings = load_settings(AlertsSettings)
    assert settings.receiver.host == "0.0.0.0" and settings.receiver.port == 9466
    assert settings.receiver.bearer_token is not None


# ---- Compose ----------------------------------------------------------------------------------


def test_compose_services_are_complete() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "prometheus", "alertmanager", "grafana", "collector", "worker",
            "alert-receiver"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    worker = services["worker"]
    assert worker["build"]["args"]["EXTRAS"] == "attribution"
    gpu = yaml.safe_load((DEPLOY / "compose.gpu.yaml").read_text())["services"]["worker"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_compose_mounts_exist_and_environment_names_real_settings() -> None:
    c = compose()
    for name, svc in c["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(".") and "/secrets/" not in source:
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        env = svc.get("environment", {})
        for key in env:
            if key.startswith("DRIFTSCOPE_") and name in DEPLOYABLES:
                assert settings_field_exists(DEPLOYABLES[name], key), (name, key)
    for secret in c["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # git-ignored; made by the operator
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*",
                                                                                 "!.gitignore"]


def test_alertmanager_reaches_the_receiver_by_a_name_compose_knows() -> None:
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    urls = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    receiver = compose()["services"]["alert-receiver"]
    names = {"alert-receiver", *receiver["networks"]["default"]["aliases"]}
    for url in urls:
        host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
        assert host in names and port == receiver["environment"]["DRIFTSCOPE_RECEIVER__PORT"]


def test_compose_prometheus_config_is_valid_and_scrapes_the_rule_jobs() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    path = DEPLOY / "prometheus" / "prometheus.yml"
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs >= RULE_JOBS


def test_dockerfile_builds_a_non_root_image_of_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M)
    assert 'ENTRYPOINT ["driftscope"]' in text
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        for part in copied.split():
            assert (REPO / part).exists(), part
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore and "!services/**" in ignore and "!attribution/**" in ignore
