"""deploy/kubernetes: valid against Kubernetes' schemas, wired together, probing real routes.

No cluster here: every manifest is validated against the API schemas offline
(``kubernetes-validate``), the Service, probes and ConfigMap are held to the Deployment, the
container's arguments to ``aivitals serve --help``, and the probes' paths are asked of a real
``aivitals serve``.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aivitals.gateway.config import load_gateway_config

from .support.deploy import (
    GATEWAY_CONFIG,
    KUBERNETES,
    SERVE_PORT,
    flags,
    help_options,
)
from .support.gateway_processes import ServeProcess

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes still in wide support when these were written; policy/v1 and the
startup probe are older."""


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource of deploy/kubernetes by kind (one of each), the example Secret included."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, (path, document["kind"])
            found[document["kind"]] = document
    return found


def container() -> dict[str, Any]:
    (only,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    spec: dict[str, Any] = only
    return spec


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    # kubernetes-validate ships no type information: read through importlib, as Any.
    validate = importlib.import_module("kubernetes_validate").validate
    found = manifests()
    assert set(found) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret"}
    for document in found.values():
        validate(document, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    errors = importlib.import_module("kubernetes_validate").ValidationError
    deployment = manifests()["Deployment"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGett"] = probe.pop("httpGet")
    with pytest.raises(errors):
        importlib.import_module("kubernetes_validate").validate(
            deployment, KUBERNETES_VERSION, strict=True
        )


def test_the_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_the_folder() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(done.stdout)}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}


def test_the_container_runs_serve_with_real_options_on_its_port() -> None:
    spec = container()
    args = spec["args"]
    assert args[0] == "serve"
    given = flags(args[1:])
    assert set(given) <= help_options("serve"), set(given) - help_options("serve")
    assert given["--port"] == SERVE_PORT
    (port,) = spec["ports"]
    assert str(port["containerPort"]) == SERVE_PORT
    # $(VAR) in args is expanded by Kubernetes from the container's env only.
    env = {item["name"] for item in spec["env"]}
    assert given["--redis"] == "$(AIVITALS_REDIS_URL)"
    assert {"AIVITALS_REDIS_URL", "AIVITALS_STORE"} <= env


def test_the_secret_the_container_reads_has_every_key_it_asks_for() -> None:
    secret = manifests()["Secret"]
    for item in container()["env"]:
        reference = item["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"]
        assert reference["key"] in secret["stringData"]


def test_the_service_and_disruption_budget_select_the_pods_and_reach_the_port() -> None:
    found = manifests()
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = found[kind]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    (port,) = found["Service"]["spec"]["ports"]
    assert port["targetPort"] == container()["ports"][0]["name"]
    replicas = found["Deployment"]["spec"]["replicas"]
    assert found["PodDisruptionBudget"]["spec"]["minAvailable"] < replicas


def test_the_configmap_carries_the_deployment_gateway_config_and_it_parses(
    tmp_path: Path,
) -> None:
    configmap = manifests()["ConfigMap"]
    text = configmap["data"]["gateway.toml"]
    assert text == GATEWAY_CONFIG.read_text()
    volumes = manifests()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    (config_volume,) = [v for v in volumes if "configMap" in v]
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == config_volume["name"]]
    assert flags(container()["args"])["--config"] == f"{mount['mountPath']}/gateway.toml"
    written = tmp_path / "gateway.toml"
    written.write_text(text)
    assert load_gateway_config(written).upstreams[0].api_key_env == "OPENAI_API_KEY"


def probes() -> dict[str, dict[str, Any]]:
    spec = container()
    return {kind: spec[kind] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}


def test_readiness_asks_readyz_and_liveness_healthz_on_the_container_port() -> None:
    found = probes()
    assert found["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert found["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in found.values():
        assert probe["httpGet"]["port"] == container()["ports"][0]["name"]


@pytest.mark.slow
def test_every_probe_path_is_answered_by_a_real_server(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as serve:
        assert httpx.get(serve.url + "/no-such-route").status_code == 404  # a typo would fail
        for kind, probe in probes().items():
            reply = httpx.get(serve.url + probe["httpGet"]["path"])
            assert reply.status_code == 200, (kind, reply.text)
