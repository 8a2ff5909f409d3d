"""The Kubernetes manifests: valid for a pinned Kubernetes version (kubernetes-validate, strict), and wired
together: probes on Triton's health endpoints, GPU and /dev/shm, ports, the HPA's metric = the adapter's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

kv = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (in the `test` extra)"
)

K8S = REPO / "deploy" / "k8s"
#: The Kubernetes version the manifests are validated against (the oldest minor they are meant for).
KUBERNETES_VERSION = "1.33.0"


def _docs() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[doc["kind"]] = doc
    return out


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)  # raises ValidationError with the path of the error


def test_validation_catches_a_mistake():
    bad = dict(_docs()["Deployment"])
    bad["spec"] = {**bad["spec"], "replica": 2}  # typo: strict validation refuses unknown fields
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSION, strict=True)


def test_deployment_gpu_shm_probes_and_user():
    dep = _docs()["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60, "room for the engine build"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"].endswith("Gi") and int(shm["sizeLimit"][:-2]) >= 4
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MINTIME_CONFIG_NAME"] == "production" and env["MODEL_REPOSITORY"] in mounts
    assert int(env["MINTIME_MIN_SHM_MB"]) <= int(shm["sizeLimit"][:-2]) * 1024
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_service_and_pdb_select_the_pods():
    docs = _docs()
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service",):
        assert all(labels.get(k) == v for k, v in docs[kind]["spec"]["selector"].items())
    assert all(
        labels.get(k) == v for k, v in docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
    )
    container_ports = {
        p["name"] for p in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in docs["Service"]["spec"]["ports"]} == container_ports


def test_hpa_scales_the_deployment_on_the_adapters_queue_metric():
    docs = _docs()
    hpa = docs["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": docs["Deployment"]["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    rules = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["rules"]
    (rule,) = [r for r in rules if r["name"]["as"] == metric["pods"]["metric"]["name"]]
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    query = rule["metricsQuery"]
    assert (
        "rate(nv_inference_queue_duration_us" in query
        and 'nv_inference_request_success{model="mintime"' in query
    )
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_podmonitor_scrapes_the_deployments_metrics_port():
    """kube-prometheus-stack ignores prometheus.io/* annotations: the PodMonitor must select the pods and name
    their metrics port, with the label the stack's default Prometheus selects."""
    (pm,) = [d for d in yaml.safe_load_all((K8S / "monitoring" / "podmonitor.yaml").read_text()) if d]
    assert (pm["apiVersion"], pm["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert pm["metadata"]["labels"]["release"] == "prometheus"
    dep = _docs()["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in c["ports"]} and endpoint["port"] == "metrics"
    assert endpoint["path"] == dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]


def test_deployment_asks_for_the_nvdec_driver_capability():
    (c,) = _docs()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert set(env["NVIDIA_DRIVER_CAPABILITIES"].split(",")) == {"compute", "utility", "video"}
