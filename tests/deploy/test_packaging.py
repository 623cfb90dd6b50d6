"""The container image, compose file and Kubernetes manifests in deploy/ are valid and safe.

Validated offline: Kubernetes manifests against the 1.31 API schemas (kubernetes-validate,
strict: an unknown field fails), the Dockerfile parsed by dockerfile-parse, the nginx config by
`nginx -t`, the compose file and endpoints by kefu's own readers. Nothing here builds an image
(the registries of container images are not reachable from the test machines).
"""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bot.shared.endpoints import load_endpoints
from bot.shared.exceptions import ConfigError
from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.31.0"
SECRET_WORDS = re.compile(r"(password|secret|token|api[_-]?key)", re.IGNORECASE)


def _manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path.name, doc))
    return docs


def _pod_specs() -> list[tuple[str, dict]]:
    specs = []
    for name, doc in _manifests():
        template = (doc.get("spec") or {}).get("template")
        if template:
            specs.append((f"{name}:{doc['kind']}/{doc['metadata']['name']}", template["spec"]))
    return specs


@pytest.mark.parametrize("name,doc", _manifests(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_manifest_is_valid_for_kubernetes_1_31_strict(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validator_rejects_an_unknown_field() -> None:
    """The check above can fail: a typo'd probe field is refused."""
    [deployment] = [doc for name, doc in _manifests() if name == "deployment.yaml"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


def test_server_probes_tell_ready_from_alive_and_drain_on_shutdown() -> None:
    [deployment] = [doc for name, doc in _manifests() if name == "deployment.yaml"]
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert "preStop" in container["lifecycle"]
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_hpa_scales_the_server_on_cpu() -> None:
    [hpa] = [doc for name, doc in _manifests() if doc["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kefu"}
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("where,spec", _pod_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_pod_runs_as_non_root_without_escalation(where: str, spec: dict) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert "limits" in container["resources"] and "requests" in container["resources"], where


def test_no_secret_is_checked_in() -> None:
    """Secrets come from the operator's `kefu-secrets` Secret; no manifest carries one."""
    for name, doc in _manifests():
        assert doc["kind"] != "Secret", name
        if doc["kind"] == "ConfigMap":
            for key, value in doc["data"].items():
                assert not SECRET_WORDS.search(key), f"{name}: {key} looks secret"
                for line in value.splitlines():  # secret-looking keys only reference ${VARIABLES}
                    if SECRET_WORDS.search(line.split(":")[0]):
                        assert re.search(r":\s*\$\{\w+\}\s*$", line), f"{name}: {line.strip()}"
    for where, spec in _pod_specs():
        for container in spec["containers"]:
            refs = [r.get("secretRef", {}).get("name") for r in container.get("envFrom", [])]
            assert "kefu-secrets" in refs, where
            for env in container.get("env", []):
                assert not (SECRET_WORDS.search(env["name"]) and "value" in env), f"{where}: {env['name']}"


def test_configmap_endpoints_match_the_cluster_endpoints_file() -> None:
    [config] = [doc for name, doc in _manifests() if doc["kind"] == "ConfigMap"]
    in_map = yaml.safe_load(config["data"]["endpoints.yml"])
    in_file = yaml.safe_load((DEPLOY / "endpoints.cluster.yml").read_text(encoding="utf-8"))
    assert in_map == in_file


CLUSTER_ENV = {
    "KEFU_DB_HOST": "127.0.0.1", "KEFU_DB_PORT": "5432", "KEFU_DB_NAME": "kefu", "KEFU_DB_USER": "kefu",
    "KEFU_DB_PASSWORD": "pw-from-env", "KEFU_REDIS_HOST": "127.0.0.1", "KEFU_REDIS_PORT": "6379",
    "KEFU_REDIS_PASSWORD": "r-from-env", "KEFU_ACTION_ENDPOINT": "http://127.0.0.1:5055/webhook",
}


def test_cluster_endpoints_read_every_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CLUSTER_ENV.items():
        monkeypatch.setenv(key, value)
    endpoints = load_endpoints(DEPLOY / "endpoints.cluster.yml")
    assert endpoints.tracker_store.kwargs["password"] == "pw-from-env"
    assert endpoints.tracker_store.url == "127.0.0.1"
    assert endpoints.lock_store.type == "redis" and endpoints.lock_store.kwargs["password"] == "r-from-env"
    assert endpoints.event_broker.type == "redis_streams"
    assert endpoints.action_endpoint.url == "http://127.0.0.1:5055/webhook"
    monkeypatch.delenv("KEFU_DB_PASSWORD")
    with pytest.raises(ConfigError, match="KEFU_DB_PASSWORD"):
        load_endpoints(DEPLOY / "endpoints.cluster.yml")


def test_dockerfile_is_multi_stage_non_root_with_a_readiness_healthcheck() -> None:
    parser = DockerfileParser(path=str(REPO_ROOT / "Dockerfile"))
    instructions = parser.structure
    froms = [i for i in instructions if i["instruction"] == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    last_from = max(i["startline"] for i in froms)
    runtime = [i for i in instructions if i["startline"] > last_from]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    [healthcheck] = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    assert "/health/ready" in healthcheck
    runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    assert "torch==2.13.0" in runs, "torch pinned to the CPU build"
    for i in instructions:
        if i["instruction"] in ("ENV", "ARG"):
            assert not SECRET_WORDS.search(i["value"]), f"Dockerfile:{i['startline'] + 1}: {i['value']}"


def test_compose_requires_every_secret_and_has_no_default_password() -> None:
    text = (DEPLOY / "compose.yml").read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    assert compose["services"]["kefu"]["deploy"]["replicas"] >= 2
    secret_refs = re.findall(r"\$\{(\w*(?:PASSWORD|TOKEN|SECRET)\w*)([^}]*)\}", text)
    assert secret_refs
    for name, modifier in secret_refs:
        assert modifier.startswith(":?"), f"${{{name}{modifier}}} must be required (':?'), not defaulted"
    nginx = compose["services"]["nginx"]
    assert nginx["ports"] == ["127.0.0.1:8080:8080"], "published on loopback unless the operator says otherwise"
    assert any("nginx/kefu.conf" in v for v in nginx["volumes"])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is installed by scripts/install.sh --test")
def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    site = (DEPLOY / "nginx" / "kefu.conf").read_text(encoding="utf-8").replace("server kefu:5005", "server 127.0.0.1:5005")
    assert "ip_hash" in site and "Upgrade $http_upgrade" in site
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n", encoding="utf-8")
    checked = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
